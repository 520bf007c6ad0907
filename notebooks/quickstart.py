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
# # Quick start: a stiff problem, its solution, a plot and a gradient
#
# Robertson's chemical kinetics (ROBER) is the classic stiff test problem: three species whose rate
# constants $k_1 = 0.04$, $k_2 = 3 \cdot 10^7$, $k_3 = 10^4$ are eleven orders of magnitude apart,
#
# $$y_1' = -k_1 y_1 + k_3 y_2 y_3, \qquad y_2' = k_1 y_1 - k_2 y_2^2 - k_3 y_2 y_3, \qquad y_3' = k_2 y_2^2.$$
#
# This notebook solves it with `Rodas5P`, pysciml's default stiff method, checks the answer against a
# stored reference, plots it, and differentiates a result with respect to the rate constants.

# %%
import matplotlib.pyplot as plt
import torch

import pysciml as ps
from pysciml import problems

# %% [markdown]
# ## The problem and the solve
#
# The right-hand side is a plain function of `(t, u, p)` on torch tensors. The state is float64: stiff
# problems at tight tolerances need it.


# %%
def rober(t, u, p):
    k1, k2, k3 = p
    y1, y2, y3 = u
    return torch.stack((-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2**2 - k3 * y2 * y3, k2 * y2**2))


u0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
prob = ps.ODEProblem(rober, u0, (0.0, 1e5), (0.04, 3e7, 1e4))
sol = ps.solve(prob, ps.Rodas5P(), rtol=1e-6, atol=1e-10)
print(sol.retcode)
print(sol.stats)

# %% [markdown]
# `sol.t` and `sol.u` hold every accepted step; `sol.stats` counts the work: right-hand-side calls,
# Jacobians (forward-mode autodiff here, since we gave none), LU factorizations and steps.
#
# `pysciml.problems` stores a reference solution at $t = 10^5$ (SciPy Radau at rtol 1e-13):

# %%
ref = problems.reference("rober", 1e5)
error = float(((sol.u[-1] - ref) / ref).abs().max())
print(f"max relative error vs reference: {error:.2e}")

# %% [markdown]
# ## Dense output and a plot
#
# `sol(t)` interpolates between steps with Rodas5P's stiff-aware interpolant. $y_2$ is tiny, so we scale it
# by $10^4$ to see it next to the others.

# %%
ts = torch.logspace(-6, 5, 300, dtype=torch.float64)
us = sol(ts)
fig, ax = plt.subplots(figsize=(7, 4))
for i, (name, scale) in enumerate((("y1", 1.0), ("y2 x 1e4", 1e4), ("y3", 1.0))):
    ax.semilogx(ts, us[:, i] * scale, label=name)
ax.plot(sol.t[1:], sol.u[1:, 0], "k.", markersize=3, label="steps (y1)")
ax.set_xlabel("t")
ax.legend()
ax.set_title(f"ROBER, Rodas5P: {sol.stats.naccept} steps")
plt.show()

# %% [markdown]
# ## A gradient
#
# How does $y_1$ at $t = 10$ depend on the rate constants? Put them in `p` as a tensor that requires grad
# (in log space, where they are comparable), solve with a sensitivity algorithm and call `backward`. The
# checkpointed interpolating adjoint solves the adjoint equation backwards with the same stiff method.


# %%
def rober_log(t, u, logk):
    return rober(t, u, logk.exp())


logk = torch.log(torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64)).requires_grad_()
prob_k = ps.ODEProblem(rober_log, u0, (0.0, 10.0), logk)
sol_k = ps.solve(prob_k, ps.Rodas5P(), rtol=1e-8, atol=1e-12, saveat=[10.0],
                 sensealg=ps.InterpolatingAdjoint(checkpointing=True))
y1 = sol_k.u[-1, 0]
y1.backward()
print("y1(10) =", y1.item())
print("d y1(10) / d log k =", logk.grad)

# %% [markdown]
# Central finite differences of tight solves agree:

# %%
with torch.no_grad():
    def y1_at(lk):
        return ps.solve(prob_k.remake(p=lk), ps.Rodas5P(), rtol=1e-10, atol=1e-14, saveat=[10.0]).u[-1, 0]

    h = 1e-6
    fd = torch.stack([(y1_at(logk + h * e) - y1_at(logk - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)])
gradient_error = float(((logk.grad - fd) / fd).abs().max())
print("finite differences  =", fd)
print(f"max relative difference of the adjoint gradient: {gradient_error:.2e}")

# %% [markdown]
# ## Many trajectories at once
#
# A batch of rate constants, one vectorised solve, each trajectory with its own steps and return code:

# %%
torch.manual_seed(0)
k = torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64) * (1 + 0.1 * torch.rand(16, 3, dtype=torch.float64))
ensemble = ps.solve(problems.rober((0.0, 1e5), k=k), ps.Rodas5P(), rtol=1e-6, atol=1e-10)
print(ensemble.u.shape, all(ensemble.retcodes))
print("y3(1e5) over the batch:", ensemble.u[-1, :, 2].min().item(), "...", ensemble.u[-1, :, 2].max().item())
