"""The native engine's solve: validate once, build the stepper, run the loop, package the solution.

:func:`pysciml.solve` dispatches here (and to the Julia engine, and to the continuous adjoints); the
sensitivity code calls :func:`solve_native` directly, so it never reaches back up to the public dispatcher.
"""

from __future__ import annotations

from typing import Any

import torch

from ._validate import (
    advice,
    check_algorithm,
    check_controller,
    check_method_tolerance,
    check_saveat,
    check_steps,
    check_tolerances,
    check_tstops,
)
from .algorithms import Algorithm, ESDIRKAlgorithm, ExplicitAlgorithm, ImplicitAlgorithm, RosenbrockAlgorithm
from .engine.ark import ARKStepper
from .engine.controller import PIController
from .engine.explicit_rk import ExplicitRKStepper
from .engine.linsolve import make_linear_solver
from .engine.loop import integrate
from .engine.loop_records import LoopOptions, LoopResult
from .engine.rhs import RHS
from .engine.rosenbrock import RosenbrockStepper
from .engine.stepper import Stepper
from .errors import SolverError
from .problem import ODEProblem, SplitODEProblem
from .solution import ODESolution, ReturnCode, Stats

__all__ = ["solve_native", "default_controller", "make_stepper"]

Tensor = torch.Tensor


def solve_native(
    prob: ODEProblem,
    alg: Algorithm,
    *,
    rtol: float = 1e-3,
    atol: float | Tensor = 1e-6,
    saveat: Any = None,
    dt: float | None = None,
    adaptive: bool | None = None,
    maxiters: int = 100_000,
    dtmin: float = 0.0,
    dtmax: float | None = None,
    dense: bool | None = None,
    throw: bool = False,
    unsplit: bool = False,
    controller: PIController | None = None,
    tstops: Any = None,
    progress: bool = False,
) -> ODESolution:
    """:func:`pysciml.solve` on the native engine, without gradients through a continuous adjoint (the
    arguments mean the same; ``alg`` is required)."""
    alg = check_algorithm(alg, prob, unsplit)
    rtol_f, atol_t = check_tolerances(rtol, atol, prob)
    save_times = check_saveat(saveat, prob)
    adaptive_b, dt_f = check_steps(alg, adaptive, dt, maxiters, dtmin, dtmax, abs(prob.tspan[1] - prob.tspan[0]))
    check_method_tolerance(alg, rtol_f, adaptive_b)
    check_controller(controller)
    stops = _land_on_saves(alg, prob, adaptive_b, save_times, check_tstops(tstops, prob, adaptive_b))
    if dense is None:
        dense = save_times is None
    save_everystep = save_times is None and not prob.batched
    if save_times is None and prob.batched:
        save_times = torch.tensor(prob.tspan, dtype=prob.u0.dtype, device=prob.u0.device)

    stats = Stats()
    stepper = make_stepper(alg, prob, stats, atol_t, rtol_f, unsplit)
    opts = LoopOptions(
        t0=prob.tspan[0], t1=prob.tspan[1], adaptive=adaptive_b, dt=dt_f, atol=atol_t, rtol=rtol_f,
        maxiters=maxiters, dtmin=float(dtmin), dtmax=dtmax, saveat=save_times, save_everystep=save_everystep,
        dense=bool(dense), controller=controller or default_controller(alg), tstops=stops,
        progress=bool(progress),
    )
    u0 = prob.u0.reshape(prob.u0.shape[0] if prob.batched else 1, prob.state_size)
    result = integrate(stepper, u0, opts, stats)
    return _package(result, prob, alg, stats, throw)


def _land_on_saves(alg: Algorithm, prob: ODEProblem, adaptive: bool, save_times: Tensor | None,
                   stops: list[float] | None) -> list[float] | None:
    """Steps of a method whose interpolant is two or more orders below the method (KenCarp5, Kvaerno5: cubic
    for order 5) land on the save times, so saved values are step values: interpolated ones were up to 1000x
    rtol off on stiff transients at rtol 1e-8 while the steps met it."""
    if save_times is None or not adaptive or alg.interpolant_order >= alg.order - 1:
        return stops
    direction = 1.0 if prob.tspan[1] > prob.tspan[0] else -1.0
    return sorted(set(stops or []) | set(save_times.tolist()), key=lambda v: direction * v)


def default_controller(alg: Algorithm) -> PIController:
    """OrdinaryDiffEq's PI gains for ``alg``: ``beta1 = 7/(10 p)``, ``beta2 = 2/(5 p)``, except where the
    algorithm names its own ``beta2`` (DP5, Tsit5: 0.04, with ``beta1 = 1/p - 3 beta2 / 4``)."""
    b2 = alg.default_beta2
    return PIController() if b2 is None else PIController(beta1=1.0 / alg.order - 0.75 * b2, beta2=b2)


def make_stepper(alg: Algorithm, prob: ODEProblem, stats: Stats, atol: Tensor, rtol: float,
                  unsplit: bool) -> Stepper:
    autodiff = alg.autodiff if isinstance(alg, ImplicitAlgorithm) else True
    split = isinstance(prob, SplitODEProblem) and not unsplit
    if isinstance(alg, ExplicitAlgorithm):
        return ExplicitRKStepper(alg.tableau, RHS(prob.f, prob.f_takes_p, prob, stats, name="f"))
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
                if c is not ReturnCode.Success]
    if not failures:
        message = f"{alg!r}: Success ({stats.naccept} accepted, {stats.nreject} rejected steps)"
    else:
        parts = []
        for b, code, info in failures[:3]:
            tf, dtf = info if info is not None else (float("nan"), float("nan"))
            who = f"trajectory {b}: " if prob.batched else ""
            why = f" ({result.reasons[b]})" if result.reasons[b] else ""
            parts.append(f"{who}{code.value} at t={tf:.6g} with dt={dtf:.3g}{why}")
        more = f" (and {len(failures) - 3} more trajectories)" if len(failures) > 3 else ""
        b0, code0, _ = failures[0]
        message = (f"{alg!r} failed: " + "; ".join(parts) + more +
                   f" after {stats.naccept} accepted and {stats.nreject} rejected steps."
                   + ("" if result.reasons[b0] else " " + advice(alg, code0.value)))
        if throw:
            raise SolverError(message, failures[0][1])
    if not prob.batched:
        u = u[:, 0]
        if failures and result.dense is None and t.shape[0] and bool(torch.isnan(u).any()):
            keep = ~torch.isnan(u.reshape(u.shape[0], -1)).any(dim=1)
            t, u = t[keep], u[keep]
        u = u.reshape(u.shape[0], *prob.state_shape)
    else:
        u = u.reshape(u.shape[0], *prob.u0.shape)
    sol = ODESolution(t, u, tuple(result.status), message, stats, alg, prob, result.dense)
    sol.dt_next = result.dt_next
    return sol
