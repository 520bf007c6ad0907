"""``solve(prob, alg, backend="julia")``: the same problem, algorithm and ODESolution as the native engine.

Input is validated by the same checks as the native solve (``pysciml._validate``). Each trajectory of a
batched problem is its own Julia solve (own step sizes, error control and return code, as natively):
``f`` then sees a batch of one, with ``p[b:b+1]`` when ``p`` is a tensor with a leading batch dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .._validate import SolveOptions, check_solve, solve_message
from ..algorithms import Algorithm, ImplicitAlgorithm
from ..engine.rhs import RHS
from ..errors import InputError
from ..problem import ODEProblem, SplitODEProblem
from ..sensealg import DiscreteAdjoint, SensitivityAlgorithm
from ..sensitivity.problem_adjoint import wants_gradient
from ..solution import ODESolution, ReturnCode, Stats, raise_if_failed
from ._adjoint import solve_adjoint_julia
from ._arguments import atol_row, check_consistent_u0, solve_ode_call
from ._callbacks import TorchCallbacks, reraise_callback_error, to_julia
from ._cuda import ensure_cuda
from ._mapping import check_julia_solve, julia_algorithm
from ._retcodes import failure_part, retcode_from_julia, stats_from_julia
from ._startup import start

__all__ = ["JuliaDense", "SolvePlan", "TrajectoryCall", "plan_solve", "retcode_from_julia", "solve_julia",
           "stats_from_julia"]

Tensor = torch.Tensor


@dataclass(eq=False)
class JuliaDense:
    """Dense output of a Julia solve, in the form :class:`~pysciml.ODESolution` expects.

    Calling it with times ``t`` (shape ``(M,)``) returns ``(M, B, n)``: PySciML.jl's ``interpolate`` per
    trajectory (the method's own continuous extension), on the problem's dtype and device. ``ends``: where
    each trajectory's solve stopped; ``direction``: the sign of ``t1 - t0``.
    """

    pkg: Any
    solutions: list[Any]
    ends: list[float]
    n: int
    dtype: torch.dtype
    device: torch.device
    direction: float

    def __call__(self, t: Tensor) -> Tensor:
        tq = t.detach().to(device="cpu", dtype=self.dtype).contiguous()
        cols = []
        for b, (sol, end) in enumerate(zip(self.solutions, self.ends, strict=True)):
            if tq.numel() and bool((self.direction * (tq - end) > 0).any()):
                raise InputError(f"trajectory {b} stopped at t={end:.6g}; there is no dense output beyond it")
            vals = self.pkg.interpolate(sol, to_julia(tq))  # (M, n), Julia memory
            cols.append(vals.to(self.device))
        return torch.stack(cols, dim=1)


@dataclass
class _Result:
    t: Tensor
    u: Tensor  # (S, n)
    code: str
    stats: Stats
    sol: Any


def _trajectory_problem(prob: ODEProblem, b: int | None) -> ODEProblem:
    if b is None:
        return prob
    p = prob.p
    bsz = prob.batch_size
    if isinstance(p, Tensor) and p.ndim >= 1 and p.shape[0] == bsz:
        p = p[b:b + 1]
    return prob.remake(u0=prob.u0[b:b + 1], p=p)


def _callbacks(prob: ODEProblem, alg: Algorithm, unsplit: bool) -> tuple[TorchCallbacks, TorchCallbacks | None]:
    autodiff = alg.autodiff if isinstance(alg, ImplicitAlgorithm) else True
    stats = Stats()  # Julia counts the calls; the engine layer just needs somewhere to write
    if isinstance(prob, SplitODEProblem) and not unsplit:
        imp = RHS(prob.f_implicit, prob.f_implicit_takes_p, prob, stats, jac=prob.jac,
                  jac_takes_p=prob.jac_takes_p, linear=prob.linear_operator, autodiff=autodiff,
                  name="f_implicit")
        exp = RHS(prob.f_explicit, prob.f_explicit_takes_p, prob, stats, name="f_explicit")
        return TorchCallbacks(imp), TorchCallbacks(exp)
    # an unsplit SplitODEProblem's jac is only that of f_implicit: differentiate the sum instead
    jac = None if isinstance(prob, SplitODEProblem) else prob.jac
    rhs = RHS(prob.f, prob.f_takes_p, prob, stats, jac=jac, jac_takes_p=prob.jac_takes_p,
              tgrad=prob.tgrad, autodiff=autodiff)
    return TorchCallbacks(rhs), None


@dataclass
class TrajectoryCall:
    """One ``PySciML.solve_ode`` call: its arguments and the Python callbacks Julia will call."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    callbacks: tuple[TorchCallbacks, TorchCallbacks | None]
    device: torch.device


@dataclass
class SolvePlan:
    """Everything :func:`solve_julia` hands to Julia, validated and built without starting it."""

    alg: Algorithm
    save_times: Tensor | None
    dense: bool
    calls: list[TrajectoryCall]
    throw: bool = False


def plan_solve(prob: ODEProblem, alg: Algorithm | None = None, options: SolveOptions | None = None,
               **changes: Any) -> SolvePlan:
    """Validate the input (the native engine's checks, :func:`~pysciml._validate.check_solve`, plus a consistent
    ``u0`` under a singular mass matrix) and build the ``solve_ode`` call of every trajectory. ``options`` (or
    :func:`pysciml.solve`'s keywords in ``changes``) are ``solve``'s. Pure Python: Julia is not started.

    Raises:
        InputError: invalid input, ``controller`` (the Julia engine uses OrdinaryDiffEq's controllers), or what
            OrdinaryDiffEq would solve differently (:func:`~pysciml.julia._mapping.check_julia_solve`).
    """
    opts = (options or SolveOptions()).replace(**changes)
    if opts.controller is not None:
        raise InputError("controller= applies to the native engine only; the Julia engine uses its own defaults")
    c = check_solve(prob, alg, opts)
    julia_algorithm(c.alg)
    check_julia_solve(c.alg, adaptive=c.adaptive, mass_matrix=prob.mass_matrix is not None)
    save_times = c.save_times
    if save_times is None and prob.batched:
        save_times = torch.tensor(prob.tspan, dtype=prob.u0.dtype, device=prob.u0.device)
    steps: dict[str, Any] = dict(adaptive=c.adaptive, maxiters=int(opts.maxiters), dtmin=float(opts.dtmin))
    if c.dt is not None:  # signed in the direction of integration (Julia's fixed-step loop wants that)
        steps["dt"] = c.dt if prob.tspan[1] > prob.tspan[0] else -c.dt
    if opts.dtmax is not None:
        steps["dtmax"] = float(opts.dtmax)
    if c.tstops is not None:
        steps["tstops"] = to_julia(torch.tensor(c.tstops, dtype=torch.float64))
    calls = []
    for b in range(prob.batch_size) if prob.batched else [None]:
        sub = _trajectory_problem(prob, b)
        cb, ecb = _callbacks(sub, c.alg, opts.unsplit)
        row = atol_row(c.atol, b)
        check_consistent_u0(cb, sub, row)
        args, kwargs = solve_ode_call(cb, ecb, sub, c.alg, rtol=c.rtol, atol=row, save_times=save_times,
                                      dense=c.dense, options=steps)
        calls.append(TrajectoryCall(args, kwargs, (cb, ecb), sub.u0.device))
    return SolvePlan(c.alg, save_times, c.dense, calls, bool(opts.throw))


def _run(pkg: Any, call: TrajectoryCall) -> _Result:
    try:
        t, u, code, counts, sol = pkg.solve_ode(*call.args, **call.kwargs)
    except Exception as exc:
        reraise_callback_error(exc, *call.callbacks)
        raise
    return _Result(t.to(call.device), u, str(code), stats_from_julia(counts), sol)


def solve_julia(prob: ODEProblem, alg: Algorithm | None = None, options: SolveOptions | None = None, *,
                sensealg: SensitivityAlgorithm | None = None, **changes: Any) -> ODESolution:
    """Solve ``prob`` with DifferentialEquations.jl (``solve(..., backend="julia")`` lands here).

    The arguments mean what they mean for :func:`pysciml.solve`: ``options`` (or ``changes``) are its keywords
    (see :func:`plan_solve`, which checks them; ``controller`` is refused). ``u0`` must be float32 or float64, on
    the CPU or a CUDA device (then CUDA.jl must have been added beforehand, :func:`pysciml.julia.add_cuda`,
    and the solve runs on CuArrays; unexercised, see ``docs/julia.md``). Tensors cross to Julia and back
    without copies (DLPack). With a singular mass matrix, ``u0`` must satisfy the algebraic equations: the
    solve starts from it unchanged.

    Gradients: when grad mode is on and ``sensealg`` is a continuous adjoint, or ``u0``, a tensor in ``p`` or
    anything ``f`` depends on requires grad, the solve is differentiable through SciMLSensitivity
    (:func:`~pysciml.julia._adjoint.solve_adjoint_julia`; ``sensealg=None`` picks :func:`odeint_julia`'s default)
    and refuses what that path cannot honour (``DiscreteAdjoint``, step options, batches, ...), never returning
    values whose gradient would be silently lost. Otherwise ``sensealg`` is not needed and is ignored, as for
    the native engine under ``torch.no_grad()``.

    Returns:
        :class:`~pysciml.ODESolution` with ``engine="julia"``: ``t (S,)``, ``u (S, *u0.shape)`` on the
        problem's dtype and device, per-trajectory return codes, summed :class:`~pysciml.Stats`, and
        ``sol(t)`` through the Julia method's own dense output when ``dense``.

    Raises:
        JuliaNotAvailableError: Julia cannot start here (the message says what is missing).
        InputError: invalid input (the same checks as the native engine, and an inconsistent DAE ``u0``).
        SolverError: numerical failure with ``throw=True``.
    """
    opts = (options or SolveOptions()).replace(**changes)
    continuous = sensealg is not None and not isinstance(sensealg, DiscreteAdjoint)
    if torch.is_grad_enabled() and isinstance(prob, ODEProblem) and (continuous or wants_gradient(prob)):
        return solve_adjoint_julia(prob, alg, sensealg, opts)
    plan = plan_solve(prob, alg, opts)
    pkg = start()
    if prob.u0.is_cuda:
        ensure_cuda(pkg, prob.u0.device)
    results = [_run(pkg, call) for call in plan.calls]
    return _package(pkg, prob, plan, results)


def _package(pkg: Any, prob: ODEProblem, plan: SolvePlan, results: list[_Result]) -> ODESolution:
    alg, save_times = plan.alg, plan.save_times
    stats = sum((r.stats for r in results), Stats())
    codes = tuple(retcode_from_julia(r.code) for r in results)
    if prob.batched:
        assert save_times is not None
        s = save_times.shape[0]
        padded = []
        for r in results:  # a trajectory that stopped early has NaN at the save points it never reached
            fill = r.u.new_full((s - r.u.shape[0], r.u.shape[1]), math.nan)
            padded.append(torch.cat((r.u, fill)) if r.u.shape[0] < s else r.u)
        t, u = save_times, torch.stack(padded, dim=1).reshape(s, *prob.u0.shape)
    else:
        t, u = results[0].t, results[0].u.reshape(results[0].u.shape[0], *prob.state_shape)
    failed = [(b, failure_part(r.code, r.t))
              for b, (r, c) in enumerate(zip(results, codes, strict=True)) if c is not ReturnCode.Success]
    first = next((c for c in codes if c is not ReturnCode.Success), None)
    message = solve_message(alg, stats, failed, first and first.value, batched=prob.batched,
                            label=f"{alg!r} (Julia {julia_algorithm(alg)})")
    dense_out = None
    if plan.dense:
        ends = [float(r.t[-1]) if r.t.numel() else float(prob.tspan[0]) for r in results]
        if save_times is not None:  # the solve itself covered tspan up to where it stopped
            ends = [float(prob.tspan[1]) if c is ReturnCode.Success else e for c, e in zip(codes, ends, strict=True)]
        direction = 1.0 if prob.tspan[1] > prob.tspan[0] else -1.0
        dense_out = JuliaDense(pkg, [r.sol for r in results], ends, prob.state_size, prob.u0.dtype,
                               prob.u0.device, direction)
    sol = ODESolution(t, u, codes, message, stats, alg, prob, dense_out, engine="julia")
    return raise_if_failed(sol) if plan.throw else sol
