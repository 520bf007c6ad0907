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
# # A neural ODE learns a damped pendulum
#
# We observe a damped pendulum, $\theta'' = -\sin\theta - 0.25\,\theta'$, at 51 times and fit a neural ODE
# $y' = f_\theta(y)$, $y = (\theta, \omega)$, whose right-hand side is a small MLP. The data come from
# pysciml's own solver (`Tsit5` at a tight tolerance); the model is `pysciml.models.NeuralODE`, trained with
# Adam through the solver (the discrete adjoint: backpropagation through the steps, the default for
# explicit methods).

# %%
import matplotlib.pyplot as plt
import torch
from torch import nn

import pysciml as ps
from pysciml.models import NeuralODE

torch.manual_seed(0)

# %% [markdown]
# ## Data


# %%
def pendulum(t, y):
    theta, omega = y
    return torch.stack((omega, -torch.sin(theta) - 0.25 * omega))


t = torch.linspace(0.0, 10.0, 51, dtype=torch.float64)
y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
truth = ps.solve(ps.ODEProblem(pendulum, y0, (0.0, 10.0)), ps.Tsit5(), rtol=1e-9, atol=1e-11, saveat=t)
data = truth.u
print(truth.retcode, data.shape)

# %% [markdown]
# ## The model
#
# `NeuralODE(vector_field, alg)` wraps any `nn.Module` called as `vector_field(t, y)`; calling the model with
# `(y0, t)` returns the states at the times `t`, shaped `(len(t), *y0.shape)`.


# %%
class Field(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 2)).double()

    def forward(self, t, y):
        return self.net(y)


model = NeuralODE(Field(), ps.Tsit5(), rtol=1e-5, atol=1e-7)
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)

with torch.no_grad():
    before = model(y0, t)
print("relative error before training:", float((before - data).norm() / data.norm()))

# %% [markdown]
# ## Training
#
# Fitting a long oscillating trajectory from a random start is easier when the horizon grows: the first
# iterations see the first 11 observations, then 5 more every 10 iterations, up to all 51.

# %%
losses = []
for it in range(200):
    n = min(len(t), 11 + (it // 10) * 5)
    optimizer.zero_grad()
    pred = model(data[0], t[:n])
    loss = (pred - data[:n]).pow(2).mean()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    if it % 50 == 0:
        print(f"iteration {it:3d}: {n} observations, loss {loss.item():.2e}, {model.nfe} f evaluations")

with torch.no_grad():
    fitted = model(y0, t)
rel_error = float((fitted - data).norm() / data.norm())
print(f"relative error of the trained model: {rel_error:.3f}")
print("last forward solve:", model.last_solution.stats)

# %% [markdown]
# ## Result

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.plot(t, data[:, 0], "k.", label="data: theta")
ax1.plot(t, fitted[:, 0], label="neural ODE: theta")
ax1.plot(t, data[:, 1], "k+", label="data: omega")
ax1.plot(t, fitted[:, 1], label="neural ODE: omega")
ax1.set_xlabel("t")
ax1.legend()
ax2.semilogy(losses)
ax2.set_xlabel("iteration")
ax2.set_ylabel("loss (on the current horizon)")
plt.show()

# %% [markdown]
# The same model runs with any pysciml algorithm and sensitivity algorithm, e.g. a stiff field with
# `NeuralODE(field, ps.Rodas5P(), sensealg=ps.InterpolatingAdjoint(checkpointing=True))`;
# `examples/stiff_neural_ode.py` trains such a model on ROBER.
