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

from .._validate import (
    advice,
    check_algorithm,
    check_method_tolerance,
    check_saveat,
    check_steps,
    check_tolerances,
)
from ..algorithms import Algorithm, ImplicitAlgorithm, KenCarp4, Tsit5
from ..engine.rhs import RHS
from ..errors import InputError, SolverError
from ..problem import ODEProblem, SplitODEProblem
from ..solution import ODESolution, ReturnCode, Stats
from ._arguments import atol_row, check_consistent_u0, solve_ode_call
from ._callbacks import TorchCallbacks, reraise_callback_error, to_julia
from ._cuda import ensure_cuda
from ._mapping import julia_algorithm
from ._retcodes import retcode_from_julia
from ._startup import start

__all__ = ["JuliaDense", "SolvePlan", "TrajectoryCall", "plan_solve", "retcode_from_julia", "solve_julia",
           "stats_from_julia"]

Tensor = torch.Tensor


def stats_from_julia(counts: Any) -> Stats:
    """SciMLBase ``DEStats`` ``(nf, nf2, nw, nsolve, njacs, nnonliniter, nnonlinconvfail, naccept, nreject)``
    -> :class:`Stats` (``nlu`` counts W-matrix factorizations ``nw``; ``nloop = naccept + nreject``)."""
    nf, nf2, nw, nsolve, njacs, nnl, nnlfail, nacc, nrej = (max(int(c), 0) for c in counts)
    return Stats(nf=nf + nf2, njac=njacs, nlu=nw, nsolve=nsolve, naccept=nacc, nreject=nrej,
                 nnonliniter=nnl, nnonlinconvfail=nnlfail, nloop=nacc + nrej)


class JuliaDense:
    """Dense output of a Julia solve, in the form :class:`~pysciml.ODESolution` expects.

    Calling it with times ``t`` (shape ``(M,)``) returns ``(M, B, n)``: PySciML.jl's ``interpolate`` per
    trajectory (the method's own continuous extension), on the problem's dtype and device.
    """

    def __init__(self, pkg: Any, solutions: list[Any], ends: list[float], n: int, dtype: torch.dtype,
                 device: torch.device, direction: float) -> None:
        self._pkg = pkg
        self._solutions = solutions
        self._ends = ends
        self._n = n
        self._dtype = dtype
        self._device = device
        self._direction = direction

    def __call__(self, t: Tensor) -> Tensor:
        tq = t.detach().to(device="cpu", dtype=self._dtype).contiguous()
        cols = []
        for b, (sol, end) in enumerate(zip(self._solutions, self._ends, strict=True)):
            if tq.numel() and bool((self._direction * (tq - end) > 0).any()):
                raise InputError(f"trajectory {b} stopped at t={end:.6g}; there is no dense output beyond it")
            vals = self._pkg.interpolate(sol, to_julia(tq))  # (M, n), Julia memory
            cols.append(vals.to(self._device))
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


def plan_solve(
    prob: ODEProblem,
    alg: Algorithm | None = None,
    *,
    rtol: float = 1e-3,
    atol: float | Tensor = 1e-6,
    saveat: Any = None,
    dt: float | None = None,
    adaptive: bool | None = None,
    maxiters: int = 100_000,
    dense: bool | None = None,
    dtmin: float = 0.0,
    dtmax: float | None = None,
    unsplit: bool = False,
) -> SolvePlan:
    """Validate the input (the native engine's checks, plus a consistent ``u0`` under a singular mass
    matrix) and build the ``solve_ode`` call of every trajectory. Pure Python: Julia is not started.

    Raises:
        InputError: invalid input.
    """
    if alg is None:
        alg = KenCarp4() if isinstance(prob, SplitODEProblem) else Tsit5()
    alg = check_algorithm(alg, prob, unsplit)
    julia_algorithm(alg)
    rtol_f, atol_t = check_tolerances(rtol, atol, prob)
    save_times = check_saveat(saveat, prob)
    adaptive_b, dt_f = check_steps(alg, adaptive, dt, maxiters, dtmin, dtmax, abs(prob.tspan[1] - prob.tspan[0]))
    check_method_tolerance(alg, rtol_f, adaptive_b)
    if dense is None:
        dense = save_times is None
    if save_times is None and prob.batched:
        save_times = torch.tensor(prob.tspan, dtype=prob.u0.dtype, device=prob.u0.device)
    options: dict[str, Any] = dict(adaptive=adaptive_b, maxiters=int(maxiters), dtmin=float(dtmin))
    if dt_f is not None:  # signed in the direction of integration (Julia's fixed-step loop wants that)
        options["dt"] = dt_f if prob.tspan[1] > prob.tspan[0] else -dt_f
    if dtmax is not None:
        options["dtmax"] = float(dtmax)
    calls = []
    for b in range(prob.batch_size) if prob.batched else [None]:
        sub = _trajectory_problem(prob, b)
        cb, ecb = _callbacks(sub, alg, unsplit)
        row = atol_row(atol_t, b)
        check_consistent_u0(cb, sub, row)
        args, kwargs = solve_ode_call(cb, ecb, sub, alg, rtol=rtol_f, atol=row, save_times=save_times,
                                      dense=bool(dense), options=options)
        calls.append(TrajectoryCall(args, kwargs, (cb, ecb), sub.u0.device))
    return SolvePlan(alg, save_times, bool(dense), calls)


def _run(pkg: Any, call: TrajectoryCall) -> _Result:
    try:
        t, u, code, counts, sol = pkg.solve_ode(*call.args, **call.kwargs)
    except Exception as exc:
        reraise_callback_error(exc, *call.callbacks)
        raise
    return _Result(t.to(call.device), u, str(code), stats_from_julia(counts), sol)


def solve_julia(prob: ODEProblem, alg: Algorithm | None = None, *, throw: bool = False, **options: Any) -> ODESolution:
    """Solve ``prob`` with DifferentialEquations.jl (``solve(..., backend="julia")`` lands here).

    The arguments mean what they mean for :func:`pysciml.solve`; ``options`` are its keywords ``rtol``,
    ``atol``, ``saveat``, ``dt``, ``adaptive``, ``maxiters``, ``dense``, ``dtmin``, ``dtmax`` and ``unsplit``
    (see :func:`plan_solve`, which checks them). ``u0`` must be float32 or float64, on
    the CPU or a CUDA device (then CUDA.jl must have been added beforehand, :func:`pysciml.julia.add_cuda`,
    and the solve runs on CuArrays; unexercised, see ``docs/julia.md``). Tensors cross to Julia and back
    without copies (DLPack). With a singular mass matrix, ``u0`` must satisfy the algebraic equations: the
    solve starts from it unchanged.

    Returns:
        :class:`~pysciml.ODESolution` with ``engine="julia"``: ``t (S,)``, ``u (S, *u0.shape)`` on the
        problem's dtype and device, per-trajectory return codes, summed :class:`~pysciml.Stats`, and
        ``sol(t)`` through the Julia method's own dense output when ``dense``.

    Raises:
        JuliaNotAvailableError: Julia cannot start here (the message says what is missing).
        InputError: invalid input (the same checks as the native engine, and an inconsistent DAE ``u0``).
        SolverError: numerical failure with ``throw=True``.
    """
    plan = plan_solve(prob, alg, **options)
    pkg = start()
    if prob.u0.is_cuda:
        ensure_cuda(pkg, prob.u0.device)
    results = [_run(pkg, call) for call in plan.calls]
    return _package(pkg, prob, plan.alg, results, plan.save_times, plan.dense, throw)


def _package(pkg: Any, prob: ODEProblem, alg: Algorithm, results: list[_Result], save_times: Tensor | None,
             dense: bool, throw: bool) -> ODESolution:
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
    name = julia_algorithm(alg)
    failed = [(b, r) for b, r in enumerate(results) if retcode_from_julia(r.code) is not ReturnCode.Success]
    if not failed:
        message = (f"{alg!r} (Julia {name}): Success ({stats.naccept} accepted, {stats.nreject} rejected steps)")
    else:
        parts = []
        for b, r in failed[:3]:
            who = f"trajectory {b}: " if prob.batched else ""
            t_end = float(r.t[-1]) if r.t.numel() else float("nan")
            parts.append(f"{who}ReturnCode.{r.code} after the last saved t={t_end:.6g}")
        more = f" (and {len(failed) - 3} more trajectories)" if len(failed) > 3 else ""
        code = retcode_from_julia(failed[0][1].code)
        message = (f"{alg!r} (Julia {name}) failed: " + "; ".join(parts) + more
                   + f" after {stats.naccept} accepted and {stats.nreject} rejected steps. " + advice(alg, code.value))
        if throw:
            raise SolverError(message, code)
    dense_out = None
    if dense:
        ends = [float(r.t[-1]) if r.t.numel() else float(prob.tspan[0]) for r in results]
        if save_times is not None:  # the solve itself covered tspan up to where it stopped
            ends = [float(prob.tspan[1]) if c is ReturnCode.Success else e for c, e in zip(codes, ends, strict=True)]
        direction = 1.0 if prob.tspan[1] > prob.tspan[0] else -1.0
        dense_out = JuliaDense(pkg, [r.sol for r in results], ends, prob.state_size, prob.u0.dtype,
                               prob.u0.device, direction)
    return ODESolution(t, u, codes, message, stats, alg, prob, dense_out, engine="julia")
