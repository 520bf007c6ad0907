"""``solve(prob, alg, sensealg=...)`` with a continuous adjoint: gradients to ``u0`` and the tensors in ``p``."""

from __future__ import annotations

from typing import Any

import torch

from .._validate import check_saveat
from ..algorithms import Algorithm
from ..errors import InputError
from ..problem import ODEProblem, SplitODEProblem, tensors_in
from ..sensealg import GaussAdjoint, SensitivityAlgorithm
from ..solution import ODESolution, ReturnCode
from .continuous import AdjointSetup, ContinuousAdjoint
from .vjp import discover_params, graph_leaves

Tensor = torch.Tensor


def problem_params(prob: ODEProblem) -> list[Tensor]:
    """The leaf tensors of a problem that gradients can flow to: those in ``p`` (a tensor, or nested sequences
    and dicts of them) and a matrix implicit part when they require grad, or the leaves behind them when they are
    computed from others."""
    found = tensors_in(prob.p)
    if isinstance(prob, SplitODEProblem) and prob.linear_operator is not None:
        found.append(prob.linear_operator)
    leaves: list[Tensor] = []
    for x in found:  # leaves only: a non-leaf (A.reshape(2, 2)) stands for the leaves behind it, which the
        if x.requires_grad:  # vector-Jacobian products reach through it (differentiating both counted it twice)
            leaves += [q for q in ([x] if x.is_leaf else graph_leaves(x)) if all(q is not r for r in leaves)]
    return leaves


def solve_with_adjoint(prob: ODEProblem, alg: Algorithm, sensealg: SensitivityAlgorithm, *, saveat: Any,
                       **kw: Any) -> ODESolution:
    if not isinstance(sensealg, SensitivityAlgorithm):
        raise InputError(f"sensealg must be an object from pysciml.sensealg, got {type(sensealg).__name__}")
    if isinstance(sensealg, GaussAdjoint):
        raise InputError("GaussAdjoint runs on the Julia engine only; use QuadratureAdjoint() with backend='torch'")
    if prob.batched:
        raise InputError(f"{sensealg.name} does not support batched problems yet; use DiscreteAdjoint() "
                         "(sensealg=None) or loop over trajectories")
    if prob.mass_matrix is not None:  # its adjoint is M^T a' = -J^T a (an index-1 DAE when M is singular)
        raise InputError(f"{sensealg.name} does not support a mass matrix yet (the adjoint would need M^T a' = "
                         "-J^T a); use sensealg=DiscreteAdjoint() (or None), which differentiates the Rosenbrock "
                         "steps exactly, M included")
    save_t = check_saveat(saveat, prob)
    if save_t is None:
        raise InputError(f"{sensealg.name} needs saveat (the times at which the loss sees the solution)")
    t0 = torch.tensor([prob.tspan[0]], dtype=save_t.dtype, device=save_t.device)
    starts_at_t0 = bool(save_t[0] == t0[0])
    times = save_t if starts_at_t0 else torch.cat((t0, save_t))
    kw = {k: v for k, v in kw.items() if v is not None}
    unsplit = kw.pop("unsplit", False)
    if isinstance(prob, SplitODEProblem) and unsplit:
        prob = ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
    params = problem_params(prob)
    t0v = torch.tensor(prob.tspan[0], dtype=prob.u0.dtype, device=prob.u0.device)
    t1v = torch.tensor(prob.tspan[1], dtype=prob.u0.dtype, device=prob.u0.device)
    params += [x for x in discover_params(prob.f, prob.f_takes_p, prob.p, t0v, prob.u0, None, t1v)
               if all(x is not q for q in params)]
    setup = AdjointSetup(prob=prob, alg=alg, adj_alg=alg, sensealg=sensealg, save_t=times, params=params,
                         solve_kw=kw, adj_kw={k: kw[k] for k in ("rtol", "atol", "maxiters") if k in kw},
                         discovered=True)
    ys = ContinuousAdjoint.apply(setup, prob.u0, times, *params)
    if not starts_at_t0:
        ys = ys[1:]
    message = f"{alg!r}: Success (continuous adjoint {sensealg.name}; forward statistics are not kept)"
    return ODESolution(save_t, ys, (ReturnCode.Success,), message, setup.stats, alg, prob, None)
