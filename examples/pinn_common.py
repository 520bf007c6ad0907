"""Shared pieces of the PINN examples of issue 14 (``pinn_poisson2d.py``, ``pinn_highdim.py``, ``pinn_holes.py``,
``pinn_rober_inverse.py``): command-line flags, a PINN run and a LySep run on the same points, statistics and
markdown tables. Plain helpers around the public API of :mod:`pysciml.pinn`; nothing here is part of pysciml.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from report import RESULTS, add_common_flags, md_table, pyplot, sci, write_text  # noqa: F401 (re-exported)
from report import machine_line as _machine_line

from pysciml.pinn import PINN, DirichletBC, train
from pysciml.pinn.lysep import LinearPDE, LySep, mlp

Tensor = torch.Tensor
Fn = Callable[[Tensor], Tensor]





def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    vals = [float(v) for v in values]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± std [min, max]`` of a list of numbers (one value: the value)."""
    vals = [float(v) for v in values]
    if len(vals) == 1:
        return sci(vals[0], digits)
    m, s = mean_std(vals)
    return f"{sci(m, digits)} ± {sci(s, 1)} [{sci(min(vals), 1)}, {sci(max(vals), 1)}]"





def machine_line(seconds: float) -> str:
    """The wall-time line of these examples, which ran on a shared machine."""
    return _machine_line(seconds, "a shared, loaded 2-core machine: times are rough")


def rel_l2(u: Tensor, ref: Tensor) -> float:
    """``||u - ref|| / ||ref||`` over matching flattened tensors."""
    u, ref = u.reshape(-1), ref.reshape(-1).to(u)
    return float(torch.linalg.vector_norm(u - ref) / torch.linalg.vector_norm(ref))


@dataclass
class Problem:
    """A linear elliptic Dirichlet problem with a known solution, as both methods need it.

    Attributes:
        name: label.
        d: dimension.
        exact: u*(x) (N, d) -> (N,).
        pde: the :class:`~pysciml.pinn.lysep.LinearPDE` (LySep's operator and source).
        residual: ``residual(x, u_fn) -> (N,)`` of the same operator for :class:`~pysciml.pinn.PINN`.
        domain: a :mod:`pysciml.pinn.geometry` domain.
    """

    name: str
    d: int
    exact: Fn
    pde: LinearPDE
    residual: Callable[[Tensor, Fn], Tensor]
    domain: Any


@dataclass
class Run:
    """One training run: loss history (``iter``, ``time``, ``loss`` = J_e), final error and wall time."""

    method: str
    seed: int
    history: list[dict[str, float]] = field(default_factory=list)
    rel_l2: float = math.nan
    loss: float = math.nan
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def points(problem: Problem, n_interior: int, n_boundary: int, seed: int) -> tuple[Tensor, Tensor]:
    """Interior (Sobol', scrambled with ``seed``) and boundary (uniform) points of ``problem.domain``, float64."""
    xi = problem.domain.sample_interior(n_interior, method="sobol", seed=seed)
    xb = problem.domain.sample_boundary(n_boundary, method="uniform", seed=seed + 7919)
    return xi, xb


def run_pinn(problem: Problem, widths: Sequence[int], xi: Tensor, xb: Tensor, x_test: Tensor, *, seed: int,
             adam_iters: int, lbfgs_iters: int, lr: float = 1e-3, boundary_weight: float = 1.0,
             log_every: int = 10) -> Run:
    """A PINN on fixed points, loss ``mean r^2 + boundary_weight * mean (u - g)^2`` (LySep's J_e), Adam then
    L-BFGS; relative L2 error at ``x_test``."""
    net = mlp(list(widths), "tanh", seed=seed)
    pinn = PINN(net, problem.residual, problem.domain, [DirichletBC(None, problem.exact, points=xb)],
                interior_points=xi, weights={"residual": 1.0, "dirichlet": boundary_weight}, seed=seed)
    res = train(pinn, adam_iters=adam_iters, lr=lr, lbfgs_iters=lbfgs_iters, log_every=log_every)
    hist = [{"iter": h["iter"], "time": h["time"], "loss": h["loss"]} for h in res.history]
    err = pinn.relative_l2(problem.exact, x_test)
    with torch.no_grad():
        final = float(pinn.loss())
    hist.append({"iter": res.iterations, "time": res.seconds, "loss": final})
    return Run("PINN", seed, hist, err, final, res.seconds, {"status": res.status})


def run_lysep(problem: Problem, widths: Sequence[int], xi: Tensor, xb: Tensor, x_test: Tensor, *, seed: int,
              iterations: int, boundary_weight: float = 1.0, penalty: float = 1.0, penalty_growth: float = 1.0,
              pretrain: int = 0, record_every: int = 1, time_limit: float | None = None) -> Run:
    """LySep on the same points and initial network; J_e of the plain network recorded per sweep."""
    net = mlp(list(widths), "tanh", seed=seed)
    t0 = time.perf_counter()
    model = LySep(net, problem.pde, xi, xb, problem.exact, boundary_weight=boundary_weight, penalty=penalty,
                  activation_penalty=penalty)
    if pretrain:
        model.pretrain(pretrain, lr=1e-3)
    setup = time.perf_counter() - t0
    res = model.fit(iterations, penalty_growth=penalty_growth, penalty_max=1e4, record_every=record_every,
                    time_limit=time_limit)
    hist = [{"iter": h["iter"], "time": h["time"] + setup, "loss": h["loss_network"]} for h in res.history]
    out = model.to_network()
    with torch.no_grad():
        err = rel_l2(out(x_test)[:, 0], problem.exact(x_test))
    cons = model.consistency()
    return Run("LySep", seed, hist, err, hist[-1]["loss"], res.seconds + setup,
               {"max_mismatch": cons.max_mismatch, "residual_difference_rms": cons.residual_difference_rms,
                "stop": res.stop_reason})


def grid(low: Sequence[float], high: Sequence[float], n: int) -> Tensor:
    """An ``n x n`` grid of a 2-D box, ``(n^2, 2)`` float64."""
    a = torch.linspace(low[0], high[0], n, dtype=torch.float64)
    b = torch.linspace(low[1], high[1], n, dtype=torch.float64)
    ga, gb = torch.meshgrid(a, b, indexing="ij")
    return torch.stack([ga.reshape(-1), gb.reshape(-1)], 1)


def plot_histories(ax_it: Any, ax_t: Any, runs: Sequence[Run], color: str, label: str) -> None:
    """Loss curves of several runs against iterations and against time (one label for the group)."""
    for k, run in enumerate(runs):
        it = [h["iter"] for h in run.history]
        t = [h["time"] for h in run.history]
        loss = [h["loss"] for h in run.history]
        lab = label if k == 0 else None
        ax_it.semilogy(it, loss, color=color, alpha=0.6, lw=1, label=lab)
        ax_t.semilogy(t, loss, color=color, alpha=0.6, lw=1, label=lab)
