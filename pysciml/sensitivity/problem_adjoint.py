"""``solve(prob, alg, sensealg=...)`` with a continuous adjoint: gradients to ``u0`` and the tensors in ``p``."""

from __future__ import annotations

import torch

from .._validate import SolveOptions, adjoint_atol, check_solve
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


def wants_gradient(prob: ODEProblem) -> bool:
    """Whether a solve of ``prob`` must be differentiable: grad mode is on and ``u0``, a tensor of
    :func:`problem_params`, or something ``f``'s output depends on at ``t0`` or ``t1`` requires grad (two calls of
    ``f``, made only when nothing else decides)."""
    if not torch.is_grad_enabled():
        return False
    if prob.u0.requires_grad or problem_params(prob):
        return True
    for tv in prob.tspan:
        u0 = prob.u0.detach().clone()  # a copy: an f that writes into u must not change the caller's u0
        t = torch.full((prob.u0.shape[0],) if prob.batched else (), tv, dtype=u0.dtype, device=u0.device)
        try:
            out = prob.rhs(t, u0)
        except Exception:  # the solve calls f again and reports the error with its context
            return False
        if isinstance(out, Tensor) and out.requires_grad:
            return True
    return False


def adjoint_parameters(prob: ODEProblem) -> list[Tensor]:
    """Every tensor a continuous adjoint of ``solve`` differentiates: :func:`problem_params`, then what ``f``
    uses besides (the parameters of the ``nn.Module`` behind it, the leaves of its graph at ``t0`` and ``t1``).
    Also checks, once per function, that ``f`` is differentiable by autograd."""
    params = problem_params(prob)
    t0, t1 = (torch.tensor(v, dtype=prob.u0.dtype, device=prob.u0.device) for v in prob.tspan)
    return params + [x for x in discover_params(prob.f, prob.f_takes_p, prob.p, t0, prob.u0, None, t1)
                     if all(x is not q for q in params)]


def solve_with_adjoint(prob: ODEProblem, alg: Algorithm | None, sensealg: SensitivityAlgorithm,
                       opts: SolveOptions) -> ODESolution:
    """``solve(prob, alg, sensealg=<continuous adjoint>, ...)``: the values at ``saveat``, differentiable in
    ``u0`` and :func:`adjoint_parameters` through the adjoint ODE.

    Every keyword of ``solve`` is honoured: ``dtmin``, ``dtmax``, ``controller`` and ``tstops`` apply to the
    forward solve and to the backward ones (a piece shorter than ``dtmin`` is solved without it); a failed
    forward solve raises with ``throw=True`` and otherwise comes back with its return code and the save times it
    reached, and its backward pass refuses. ``dense=True`` is refused: the result holds no dense output.
    """
    if isinstance(sensealg, GaussAdjoint):
        raise InputError("GaussAdjoint runs on the Julia engine only; use QuadratureAdjoint() with backend='torch'")
    if prob.batched:
        raise InputError(f"{sensealg.name} does not support batched problems yet; use DiscreteAdjoint() "
                         "(sensealg=None) or loop over trajectories")
    if prob.mass_matrix is not None:  # its adjoint is M^T a' = -J^T a (an index-1 DAE when M is singular)
        raise InputError(f"{sensealg.name} does not support a mass matrix yet (the adjoint would need M^T a' = "
                         "-J^T a); use sensealg=DiscreteAdjoint() (or None), which differentiates the Rosenbrock "
                         "steps exactly, M included")
    if opts.dense:
        raise InputError(f"dense=True cannot be honoured with {sensealg.name}: its result holds the values at "
                         "saveat only, no dense output for sol(t); pass saveat with the times you need, or use "
                         "sensealg=DiscreteAdjoint() (or None) for sol(t)")
    checked = check_solve(prob, alg, opts)
    save_t = checked.save_times
    if save_t is None:
        raise InputError(f"{sensealg.name} needs saveat (the times at which the loss sees the solution)")
    t0 = torch.tensor([prob.tspan[0]], dtype=save_t.dtype, device=save_t.device)
    starts_at_t0 = bool(save_t[0] == t0[0])
    times = save_t if starts_at_t0 else torch.cat((t0, save_t))
    if isinstance(prob, SplitODEProblem) and opts.unsplit:
        prob = ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
    params = adjoint_parameters(prob)
    forward = opts.replace(saveat=None, dense=None, throw=False, unsplit=False)
    fixed = {} if checked.adaptive else {"adaptive": False, "dt": checked.dt}  # the backward solve's steps too
    backward = SolveOptions(rtol=opts.rtol, atol=adjoint_atol(opts.atol), maxiters=opts.maxiters, dtmin=opts.dtmin,
                            dtmax=opts.dtmax, controller=opts.controller, **fixed)
    setup = AdjointSetup(prob=prob, alg=checked.alg, adj_alg=checked.alg, sensealg=sensealg, save_t=times,
                         params=params, options=forward, discovered=True, adj_options=backward,
                         tstops=checked.tstops, throw=opts.throw)
    ys = ContinuousAdjoint.apply(setup, prob.u0, times, *params)
    if setup.failed is not None:
        sol, reached = setup.failed
        keep = slice(0 if starts_at_t0 else 1, None)
        return ODESolution(reached[keep], ys[keep], sol.retcodes, f"{sol.message} (forward solve of "
                           f"{sensealg.name}: no gradient)", sol.stats, checked.alg, prob, None)
    if not starts_at_t0:
        ys = ys[1:]
    message = (f"{checked.alg!r}: Success (continuous adjoint {sensealg.name}; stats: the forward solve, and the "
               "backward pass's solves once it has run)")
    return ODESolution(save_t, ys, (ReturnCode.Success,), message, setup.stats, checked.alg, prob, None)
