# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A semi-implicit neural ODE learns a reaction term under stiff diffusion
#
# The Allen-Cahn equation on a periodic interval, $u_t = \nu u_{xx} + u - u^3$, discretised on 32 points, is
# stiff: the diffusion matrix $L$ has eigenvalues down to $-104$. We know $L$ and learn the reaction
# $N_\theta(u) \approx u - u^3$ from trajectories, with a **semi-implicit neural ODE** (SINODE; Zhang, Liu &
# Maulik, AAAI 2025): $u' = L u + N_\theta(u)$, with $L$ treated implicitly and the network explicitly by an
# IMEX Runge-Kutta method. The step size is then set by the network term, not by the stiffness of $L$.

# %%
import math

import matplotlib.pyplot as plt
import torch
from torch import nn

import pysciml as ps
from pysciml.models import SemiImplicitNeuralODE

torch.manual_seed(0)

# %% [markdown]
# ## The stiff linear part and the data
#
# Training data: 16 trajectories from random smooth initial fields, solved by pysciml with the true
# reaction as a `SplitODEProblem` (`L` implicit, the reaction explicit), batched, at a tight tolerance.

# %%
n, nu = 32, 1.0
dx = 2 * math.pi / n
x = torch.arange(n, dtype=torch.float64) * dx
eye = torch.eye(n, dtype=torch.float64)
L = nu * (torch.roll(eye, 1, 1) - 2 * eye + torch.roll(eye, -1, 1)) / dx**2
print("most negative eigenvalue of L:", float(torch.linalg.eigvalsh(L).min()))


def reaction(t, u):
    return u - u**3


def initial_fields(count, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(count, 3, generator=g, dtype=torch.float64)
    return 0.5 * (a[:, :1] * torch.sin(x) + a[:, 1:2] * torch.cos(2 * x) + a[:, 2:3] * torch.sin(3 * x))


def simulate(u0):
    prob = ps.SplitODEProblem(L, reaction, u0, (0.0, 2.0), batched=True)
    return ps.solve(prob, ps.KenCarp4(), rtol=1e-8, atol=1e-10, saveat=t).u


t = torch.linspace(0.0, 2.0, 21, dtype=torch.float64)
train = simulate(initial_fields(16, seed=0))     # (21 times, 16 fields, 32 points)
test = simulate(initial_fields(4, seed=1))
print(train.shape, test.shape)
print(f"training values of u lie in [{train.min():.2f}, {train.max():.2f}]")

# %% [markdown]
# ## An explicit method at this step size fails
#
# With steps of 0.1, `dt * |lambda_max| = 10.4` is far beyond RK4's stability interval (about 2.8): pysciml
# returns `Unstable` instead of numbers. The IMEX method is stable at the same step.

# %%
split = ps.SplitODEProblem(L, reaction, test[0], (0.0, 2.0), batched=True)
print("RK4, dt = 0.1:     ", ps.solve(split, ps.RK4(), dt=0.1, adaptive=False, unsplit=True).retcode)
print("KenCarp4, dt = 0.1:", ps.solve(split, ps.KenCarp4(), dt=0.1, adaptive=False).retcode)

# %% [markdown]
# ## The model
#
# `SemiImplicitNeuralODE(L, network, alg, dt=...)`: `L` as a matrix acting on the last dimension of the state
# (each field is a row), the network applied pointwise, fixed steps of 0.1 with `KenCarp4`. With fixed steps
# the LU of $I/(\gamma h) - L$ is factored once per solve; gradients come from the discrete adjoint.


# %%
class Pointwise(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, 1)).double()

    def forward(self, t, u):
        return self.net(u.unsqueeze(-1)).squeeze(-1)


model = SemiImplicitNeuralODE(L, Pointwise(), ps.KenCarp4(), dt=0.1)
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)

losses = []
for it in range(150):
    optimizer.zero_grad()
    loss = (model(train[0], t) - train).pow(2).mean()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    if it % 50 == 0:
        print(f"iteration {it:3d}: loss {loss.item():.2e}")
print("last solve:", model.last_solution.stats, f"({model.nfe_explicit} network calls)")

# %% [markdown]
# ## Held-out fields

# %%
with torch.no_grad():
    pred = model(test[0], t)
test_error = float((pred - test).norm() / test.norm())
print(f"test relative error (IMEX, dt = 0.1): {test_error:.3f}")

u_grid = torch.linspace(-2.0, 2.0, 100, dtype=torch.float64)
with torch.no_grad():
    learned = model.nonlinear(None, u_grid)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.plot(x, test[-1, 0], "k", label="truth, t = 2")
ax1.plot(x, pred[-1, 0], "--", label="SINODE, t = 2")
ax1.plot(x, test[0, 0], ":", color="gray", label="t = 0")
ax1.set_xlabel("x")
ax1.legend()
ax2.plot(u_grid, u_grid - u_grid**3, "k", label="u - u^3")
ax2.plot(u_grid, learned, "--", label="learned N(u)")
ax2.set_xlabel("u")
ax2.legend()
plt.show()

# %% [markdown]
# The learned reaction is only trustworthy for the values of $u$ the training fields visit (printed with
# the data above); outside them nothing constrains the network. `examples/sinode_*.py` reproduce the
# paper's Kuramoto-Sivashinsky, Burgers and graph experiments at reduced size.
