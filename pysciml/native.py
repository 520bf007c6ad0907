"""The native engine's solve: validate once, build the stepper, run the loop, package the solution.

:func:`pysciml.solve` dispatches here (and to the Julia engine, and to the continuous adjoints); the
sensitivity code calls :func:`solve_native` directly, so it never reaches back up to the public dispatcher.
"""

from __future__ import annotations

from typing import Any

import torch

from ._validate import SolveOptions, check_solve, solve_message
from .algorithms import Algorithm, ESDIRKAlgorithm, ExplicitAlgorithm, ImplicitAlgorithm, RosenbrockAlgorithm
from .algorithms_adams import AdamsAlgorithm, AdamsBashforthMoulton
from .algorithms_bdf import BDFAlgorithm
from .algorithms_firk import FIRKAlgorithm
from .algorithms_symplectic import ExplicitSymplecticAlgorithm, ImplicitMidpoint
from .engine import (
    compiled_control,
    compiled_loop,
    compiled_loop_bdf,
    compiled_loop_firk,
    compiled_loop_fixed,
    compiled_symplectic,
)
from .engine.adams import AdamsStepper
from .engine.ark import ARKStepper
from .engine.bdf import BDFMethod
from .engine.bdf_flc import FLCMethod
from .engine.bdf_loop import integrate_bdf
from .engine.compiled import CompiledStepper, compile_stepper
from .engine.compiled_wrapper import ProgramStepper
from .engine.controller import PIController
from .engine.events import EventSpec
from .engine.explicit_rk import ExplicitRKStepper
from .engine.firk import FIRKStepper
from .engine.firk_control import PredictiveController
from .engine.linsolve import make_linear_solver
from .engine.loop import integrate
from .engine.loop_records import LoopOptions, LoopResult
from .engine.rhs import RHS
from .engine.rosenbrock import RosenbrockStepper
from .engine.stepper import Stepper
from .engine.symplectic import ImplicitMidpointStepper, SplittingStepper
from .engine.tableaus.rosenbrock import RODAS5P
from .errors import warn_caller
from .problem import ODEProblem, SplitODEProblem
from .problem_dynamical import SecondOrderODEProblem
from .solution import ODESolution, ReturnCode, Stats, raise_if_failed

__all__ = ["solve_native", "default_controller", "make_stepper", "warmup"]

Tensor = torch.Tensor


def solve_native(prob: ODEProblem, alg: Algorithm | None = None, options: SolveOptions | None = None, *,
                 progress: bool = False, **changes: Any) -> ODESolution:
    """:func:`pysciml.solve` on the native engine, without gradients through a continuous adjoint: ``options``
    (with ``solve``'s keywords in ``changes`` applied on top) mean what they mean there."""
    opts = (options or SolveOptions()).replace(**changes)
    c = check_solve(prob, alg, opts)
    alg = c.alg
    stats = Stats()
    if isinstance(alg, BDFAlgorithm):  # multistep: its own loop, the same LoopResult
        return _package(_solve_bdf(alg, prob, c, opts, stats, bool(progress)), prob, alg, stats, opts.throw)
    stepper = make_stepper(alg, prob, stats, c.atol, c.rtol, opts.unsplit)
    loop = _loop_options(prob, c, opts, bool(progress))
    u0 = prob.u0.reshape(prob.u0.shape[0] if prob.batched else 1, prob.state_size)
    if opts.compile and c.callbacks is not None:
        warn_caller("solve: callbacks run on the eager loop; compile=True is ignored for this solve", RuntimeWarning)
    elif opts.compile:
        stepper = compile_stepper(stepper, stats, u0.shape[0], c.atol, c.rtol, c.dense, u0)
    result = integrate(stepper, u0, loop, stats)
    if isinstance(stepper, CompiledStepper):
        stepper.finish()
    return _package(result, prob, alg, stats, opts.throw)


def _solve_bdf(alg: BDFAlgorithm, prob: ODEProblem, c: Any, opts: SolveOptions, stats: Stats,
               progress: bool) -> LoopResult:
    """FBDF / QNDF on :func:`~.engine.bdf_loop.integrate_bdf`; fixed steps start with Rodas5P steps; ``compile=True``
    FBDF, QNDF and QBDF solves on :mod:`~.engine.compiled_loop_bdf` where it covers them (else one warning says
    why)."""
    method, u0 = _bdf_method(alg, prob, c, stats)
    loop = _loop_options(prob, c, opts, progress)
    if opts.compile:
        why = compiled_loop_bdf.unsupported(method, loop, u0)
        if why is not None:
            warn_caller(f"compile=True: {alg.name}() runs eagerly: {why}")
        elif (result := compiled_loop_bdf.integrate(method, u0, loop, stats)) is not None:
            return result
    starter = None if c.adaptive else RosenbrockStepper(RODAS5P, method.rhs,
                                                        make_linear_solver(alg.linsolve, stats, method.mass),
                                                        method.mass)
    return integrate_bdf(method, u0, loop, stats, name=alg.name, starter=starter)


def _bdf_method(alg: BDFAlgorithm, prob: ODEProblem, c: Any, stats: Stats) -> tuple[BDFMethod, Tensor]:
    """The multistep method of a checked solve ``c`` and its ``(B, n)`` initial state."""
    rhs = RHS(prob.f, prob.f_takes_p, prob, stats, jac=prob.jac, jac_takes_p=prob.jac_takes_p, tgrad=prob.tgrad,
              tgrad_takes_p=prob.tgrad_takes_p, autodiff=alg.autodiff)
    mass = prob.mass_matrix
    linsolve = make_linear_solver(alg.linsolve, stats, mass)
    method = FLCMethod(rhs, linsolve, mass, alg.max_order, alg.max_newton_iters, c.atol, c.rtol, stats) \
        if alg.fixed_leading_coefficient else \
        BDFMethod(rhs, linsolve, mass, alg.kappa, alg.max_order, alg.max_newton_iters, c.atol, c.rtol, stats)
    return method, prob.u0.reshape(prob.u0.shape[0] if prob.batched else 1, prob.state_size)


def _loop_options(prob: ODEProblem, c: Any, opts: SolveOptions, progress: bool) -> LoopOptions:
    """What the loop is asked to do, from the checked solve ``c`` (:func:`~._validate.check_solve`)."""
    stops = _land_on_saves(c.alg, prob, c.adaptive, c.save_times, c.tstops)
    save_times = c.save_times
    save_everystep = save_times is None and not prob.batched
    if save_times is None and prob.batched:
        save_times = torch.tensor(prob.tspan, dtype=prob.u0.dtype, device=prob.u0.device)
    return LoopOptions(
        t0=prob.tspan[0], t1=prob.tspan[1], adaptive=c.adaptive, dt=c.dt, atol=c.atol, rtol=c.rtol,
        maxiters=opts.maxiters, dtmin=float(opts.dtmin), dtmax=opts.dtmax, saveat=save_times,
        save_everystep=save_everystep, dense=c.dense, controller=opts.controller or default_controller(c.alg),
        tstops=stops, progress=progress, hooks=opts.hooks,
        events=None if c.callbacks is None else EventSpec(c.callbacks, prob),
    )


def warmup(prob: ODEProblem, alg: Algorithm | None = None, **solve_kwargs: Any) -> float:
    """Compile the steps ``solve(prob, alg, compile=True, **solve_kwargs)`` will run, without solving: one
    throw-away step from ``prob.u0`` per program (a Rosenbrock method has two, with and without a fresh
    Jacobian). Later solves of the same signature (algorithm, ``u0``'s shape, dtype and device, ``f``, dense output
    or not, grad mode) start at once, whatever their ``u0``, ``p``, ``tspan`` and tolerances.

    Returns:
        seconds spent compiling (0.0 when the programs were already compiled; families without a compiled
        step warn and return 0.0).
    """
    opts = SolveOptions().replace(**solve_kwargs, compile=True)
    c = check_solve(prob, alg, opts)
    stats = Stats()
    if isinstance(c.alg, BDFAlgorithm):  # the BDF loop programs (engine/compiled_loop_bdf.py)
        method, u0 = _bdf_method(c.alg, prob, c, stats)
        loop = _loop_options(prob, c, opts, False)
        why = compiled_loop_bdf.unsupported(method, loop, u0)
        if why is not None:
            warn_caller(f"{c.alg.name}() has no compiled program for this solve ({why}): nothing to warm up")
        else:
            compiled_loop_bdf.warm(method, u0, loop, stats)
        return stats.compile_time
    stepper = make_stepper(c.alg, prob, stats, c.atol, c.rtol, opts.unsplit)
    u0 = prob.u0.reshape(prob.u0.shape[0] if prob.batched else 1, prob.state_size)
    compiled = compile_stepper(stepper, stats, u0.shape[0], c.atol, c.rtol, c.dense, u0)
    loop = _loop_options(prob, c, opts, False)
    if compiled_loop.handles_whole(compiled, loop, u0):  # the loop's own programs
        compiled_loop.warm_whole(compiled, u0, loop)
    elif compiled_loop_firk.handles(compiled, loop, u0) and compiled_loop_firk.warm(compiled, u0, loop):
        pass  # the FIRK loop program (after a failed compile, the per-step program below)
    elif compiled_loop_fixed.handles(compiled, loop, u0) and compiled_loop_fixed.warm(compiled, u0, loop):
        pass  # the fixed-step explicit-RK loop program (after a failed compile, the per-step program below)
    elif compiled_symplectic.warm_whole_loop(compiled, u0, loop):
        pass  # the fixed-step splitting loop program (after a failed compile, the per-step program below)
    elif u0.shape[0] > 1 and compiled_control.handles(compiled, loop):
        compiled_control.warm(compiled, u0, loop)
    elif isinstance(compiled, ProgramStepper):  # per-step programs (CompiledStepper, CompiledFIRKStepper)
        t0 = torch.full((u0.shape[0],), prob.tspan[0], dtype=u0.dtype, device=u0.device)
        span = prob.tspan[1] - prob.tspan[0]
        compiled.warm(t0, u0, torch.full_like(t0, c.dt if c.dt is not None else 1e-3 * span))
    return stats.compile_time


def _land_on_saves(alg: Algorithm, prob: ODEProblem, adaptive: bool, save_times: Tensor | None,
                   stops: list[float] | None) -> list[float] | None:
    """Steps of a method whose interpolant is two or more orders below the method (KenCarp5, Kvaerno5: cubic
    for order 5) land on the save times, so saved values are step values: interpolated ones were up to 1000x
    rtol off on stiff transients at rtol 1e-8 while the steps met it."""
    if save_times is None or not adaptive or alg.interpolant_order >= alg.order - 1:
        return stops
    direction = 1.0 if prob.tspan[1] > prob.tspan[0] else -1.0
    ends = torch.tensor(prob.tspan, dtype=save_times.dtype).tolist()  # tspan's ends as the save times hold them
    inner = [s for s in save_times.tolist() if s not in ends]  # float32(0.1) != 0.1: not a stop of its own
    return sorted(set(stops or []) | set(inner), key=lambda v: direction * v)


def default_controller(alg: Algorithm) -> PIController:
    """OrdinaryDiffEq's PI gains for ``alg``: ``beta1 = 7/(10 p)``, ``beta2 = 2/(5 p)``, except where the
    algorithm names its own ``beta2`` (DP5, Tsit5: 0.04, with ``beta1 = 1/p - 3 beta2 / 4``); the fully implicit
    RK methods get radau5's predictive controller with its step hold."""
    if isinstance(alg, FIRKAlgorithm):  # radau5's predictive controller (engine/firk_control.py)
        return PredictiveController()
    b2 = alg.default_beta2
    return PIController() if b2 is None else PIController(beta1=1.0 / alg.order - 0.75 * b2, beta2=b2)


def make_stepper(alg: Algorithm, prob: ODEProblem, stats: Stats, atol: Tensor, rtol: float,
                  unsplit: bool) -> Stepper:
    autodiff = alg.autodiff if isinstance(alg, ImplicitAlgorithm) else True
    split = isinstance(prob, SplitODEProblem) and not unsplit
    if isinstance(alg, FIRKAlgorithm):  # a split problem reaches here only with unsplit=True: f is the sum
        rhs = RHS(prob.f, prob.f_takes_p, prob, stats, jac=prob.jac, jac_takes_p=prob.jac_takes_p, autodiff=autodiff)
        return FIRKStepper(alg.tableau, rhs, stats, prob.mass_matrix, atol=atol, rtol=rtol,  # type: ignore[arg-type]
                           max_iters=alg.max_newton_iters, kappa=alg.newton_kappa, jac_reuse=alg.jac_reuse,
                           linsolve=alg.linsolve)
    if isinstance(alg, ExplicitSymplecticAlgorithm):  # checked by check_solve: a partitioned, separable problem
        return SplittingStepper(alg.tableau, prob, stats,  # type: ignore[arg-type]
                                count_velocity=not isinstance(prob, SecondOrderODEProblem))
    if isinstance(alg, ImplicitMidpoint):
        rhs = RHS(prob.f, prob.f_takes_p, prob, stats, jac=prob.jac, jac_takes_p=prob.jac_takes_p, autodiff=autodiff)
        return ImplicitMidpointStepper(alg.tableau, rhs, stats, tol=alg.newton_tol,  # type: ignore[arg-type]
                                       max_iters=alg.max_newton_iters)
    if isinstance(alg, AdamsAlgorithm):
        return AdamsStepper(alg.tableau, RHS(prob.f, prob.f_takes_p, prob, stats, name="f"),  # type: ignore[arg-type]
                            atol=atol, rtol=rtol,
                            max_iters=alg.max_iters if isinstance(alg, AdamsBashforthMoulton) else 1)
    if isinstance(alg, ExplicitAlgorithm):
        return ExplicitRKStepper(alg.tableau, RHS(prob.f, prob.f_takes_p, prob, stats, name="f"), atol=atol, rtol=rtol)
    solver = make_linear_solver(alg.linsolve, stats, prob.mass_matrix)  # type: ignore[attr-defined]
    if isinstance(alg, RosenbrockAlgorithm):
        rhs = RHS(prob.f, prob.f_takes_p, prob, stats, jac=prob.jac, jac_takes_p=prob.jac_takes_p,
                  tgrad=prob.tgrad, tgrad_takes_p=prob.tgrad_takes_p, autodiff=autodiff)
        return RosenbrockStepper(alg.tableau, rhs, solver, prob.mass_matrix)
    assert isinstance(alg, ESDIRKAlgorithm)
    if split:
        assert isinstance(prob, SplitODEProblem)
        rhs_i = RHS(prob.f_implicit, prob.f_implicit_takes_p, prob, stats, jac=prob.jac,
                    jac_takes_p=prob.jac_takes_p, linear=prob.linear_operator, autodiff=autodiff, name="f_implicit")
        rhs_e: RHS | None = RHS(prob.f_explicit, prob.f_explicit_takes_p, prob, stats, name="f_explicit")
    else:
        rhs_i = RHS(prob.f, prob.f_takes_p, prob, stats, jac=prob.jac, jac_takes_p=prob.jac_takes_p,
                    autodiff=autodiff)
        rhs_e = None
    return ARKStepper(alg.tableau, rhs_i, rhs_e, solver, stats, atol=atol, rtol=rtol,
                      max_iters=alg.max_newton_iters, kappa=alg.newton_kappa, smooth_est=alg.smooth_est)


def _package(result: LoopResult, prob: ODEProblem, alg: Algorithm, stats: Stats, throw: bool) -> ODESolution:
    t, u = result.t, result.u  # (S,), (S, B, n)
    failures = [(b, c, info) for b, (c, info) in enumerate(zip(result.status, result.fail_info, strict=True))
                if not c.successful]
    parts = []
    for b, code, info in failures:
        tf, dtf = info if info is not None else (float("nan"), float("nan"))
        why = f" ({result.reasons[b]})" if result.reasons[b] else ""
        parts.append((b, f"{code.value} at t={tf:.6g} with dt={dtf:.3g}{why}"))
    first = failures[0] if failures else None
    message = solve_message(alg, stats, parts, first and first[1].value, batched=prob.batched,
                            advise=first is None or not result.reasons[first[0]])
    terminated = ReturnCode.Terminated in result.status
    if terminated and not failures:
        message = message.replace(": Success (", ": Terminated by a callback (", 1)
    if not prob.batched:  # (S, 1, n) -> (S, *state): one view (no select, whose backward copies into zeros)
        u = u.reshape(u.shape[0], *prob.state_shape)
        if (failures and result.dense is None or terminated) and t.shape[0] and bool(torch.isnan(u).any()):
            keep = ~torch.isnan(u.reshape(u.shape[0], -1)).any(dim=1)
            t, u = t[keep], u[keep]
    else:
        u = u.reshape(u.shape[0], *prob.u0.shape)
    sol = ODESolution(t, u, tuple(result.status), message, stats, alg, prob, result.dense)
    sol.dt_next = result.dt_next
    if result.events is not None:
        sol.t_events, sol.u_events = result.events.result(prob.batched, prob.state_shape, prob.u0)
    return raise_if_failed(sol) if throw else sol
