"""One solve of a :class:`~benchmarks.stiff_problems.StiffCase` by pysciml, SciPy or diffrax, with its counters,
and the timing rule of the stiff benchmarks (``time_runs``: :func:`pysciml.devtools.median_time`).

Every solver returns an :class:`Outcome`: the state at ``t1`` plus what the solver reports about its work. The
counters are each library's own: SciPy's ``nfev`` includes finite-difference columns (none here: the analytic
Jacobian is given), pysciml's ``nf`` counts one call per right-hand-side evaluation, and diffrax's f evaluations
are counted by a host callback in a separate, untimed run (its Jacobians come from ``jax.jacfwd``, each counted
as one call).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

import pysciml as ps
from pysciml.devtools import median_time as time_runs  # noqa: F401 (the benchmarks' timing rule, public)

from .stiff_problems import StiffCase

MAX_STEPS = 100_000  # diffrax's loop bound (its default, 4096, is too few for ROBER at rtol 1e-8)


@dataclass
class Outcome:
    """The end state of one solve and its work counters (``None`` where the library does not report one)."""

    u: np.ndarray
    ok: bool
    nf: int | None = None
    naccept: int | None = None
    nreject: int | None = None
    njac: int | None = None
    nlu: int | None = None
    compile_time: float | None = None  # pysciml compile=True: seconds spent compiling in this call


# ------------------------------------------------------------------------------------------------- pysciml


def pysciml_solver(case: StiffCase, alg: ps.algorithms.Algorithm, split: bool = False, autodiff_jac: bool = False,
                   compile: bool = False) -> Callable[[float, float], Outcome]:
    """``(rtol, atol) -> Outcome`` for ``alg`` on the case's (split, if ``split``) problem, saving only ``t1``.
    ``autodiff_jac``: the problem without its analytic ``jac`` (pysciml's default autodiff Jacobian), as a user
    who writes only ``f`` calls it. ``compile``: ``solve(..., compile=True)``; the first call compiles every
    variant of the step first (``pysciml.warmup``), so no later (timed) call compiles; ``Outcome.compile_time``
    is the seconds this call spent compiling."""
    prob = case.torch_split() if split else case.torch_problem()
    if autodiff_jac:
        prob = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p, tgrad=prob.tgrad, batched=prob.batched)
    warm = [not compile]

    def run(rtol: float, atol: float) -> Outcome:
        spent = 0.0
        if not warm[0]:
            spent, warm[0] = ps.warmup(prob, alg, rtol=rtol, atol=atol, saveat=[case.t1]), True
        sol = ps.solve(prob, alg, rtol=rtol, atol=atol, saveat=[case.t1], compile=compile)
        s = sol.stats
        return Outcome(sol.u[-1].detach().cpu().numpy(), sol.retcode == ps.ReturnCode.Success, s.nf, s.naccept,
                       s.nreject, s.njac, s.nlu, spent + s.compile_time if compile else None)

    return run


# --------------------------------------------------------------------------------------------------- SciPy


def scipy_solver(case: StiffCase, method: str, p: np.ndarray | None = None) -> Callable[[float, float], Outcome]:
    """``(rtol, atol) -> Outcome`` for ``solve_ivp(method=...)`` with the analytic Jacobian (LSODA, Radau, BDF),
    with the parameters ``p`` (default: the case's)."""
    from scipy.integrate import solve_ivp

    f = case.rhs(np)
    p = case.p if p is None else p

    def run(rtol: float, atol: float) -> Outcome:
        sol = solve_ivp(f, (0.0, case.t1), case.u0, method=method, rtol=rtol, atol=atol, jac=case.jac,
                        args=(p,))
        return Outcome(sol.y[:, -1].copy(), bool(sol.success), sol.nfev, len(sol.t) - 1, None, sol.njev, sol.nlu)

    return run


# ------------------------------------------------------------------------------------------------- diffrax


def jax_modules() -> tuple[ModuleType, ModuleType, ModuleType] | None:
    """``(jax, jax.numpy, diffrax)`` with 64-bit floats enabled, or ``None`` if they are not installed."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    try:
        import diffrax
    except ImportError:
        return None
    return jax, jax.numpy, diffrax


def diffrax_terms(case: StiffCase, solver: str, jnp: ModuleType, dfx: ModuleType,
                  wrap: Callable[[Callable], Callable] = lambda f: f) -> Any:
    """The diffrax term(s): an ``ODETerm`` for Kvaerno5; for KenCarp4 a ``MultiTerm(explicit, implicit)`` of the
    case's split (Brusselator: reaction explicit, diffusion implicit) or ``(0, f)`` where there is no split."""
    if solver == "Kvaerno5":
        return dfx.ODETerm(wrap(case.rhs(jnp)))
    if case.split is not None:
        implicit, explicit = case.split(jnp)
        return dfx.MultiTerm(dfx.ODETerm(wrap(explicit)), dfx.ODETerm(wrap(implicit)))
    return dfx.MultiTerm(dfx.ODETerm(lambda t, y, p: jnp.zeros_like(y)), dfx.ODETerm(wrap(case.rhs(jnp))))


class DiffraxSolver:
    """A jitted ``diffeqsolve`` of one case with ``Kvaerno5`` (default root finder, VeryChord) or ``KenCarp4``
    with ``optimistix.Newton`` as root finder (diffrax 0.7.2's default VeryChord stalls at tiny steps until
    ``max_steps`` on ROBER, HIRES, VdP at rtol 1e-8 and the Brusselator). PID controller with diffrax's default
    I-control coefficients; rtol and atol are traced arguments, so one compilation serves every tolerance.
    Call it as ``(rtol, atol) -> Outcome``; ``first_call`` is the first call's wall time (compilation included;
    the caller subtracts a timed run). ``count_nf`` counts f calls with a host callback."""

    def __init__(self, case: StiffCase, solver: str, mods: tuple[ModuleType, ModuleType, ModuleType]) -> None:
        self.case, self.solver, self.mods = case, solver, mods
        self._solve = self._build(lambda f: f)
        self._counting: Callable | None = None
        self.first_call: float | None = None
        self.calls = 0

    def _build(self, wrap: Callable[[Callable], Callable]) -> Callable:
        jax, jnp, dfx = self.mods
        case, solver = self.case, getattr(dfx, self.solver)()
        if self.solver == "KenCarp4":  # the default VeryChord root finder hits max_steps on every problem here
            import optimistix as optx

            solver = dfx.KenCarp4(root_finder=dfx.with_stepsize_controller_tols(optx.Newton)())
        terms = diffrax_terms(case, self.solver, jnp, dfx, wrap)

        @jax.jit
        def solve(y0, p, rtol, atol):
            sol = dfx.diffeqsolve(terms, solver, 0.0, case.t1, None, y0, args=p, saveat=dfx.SaveAt(t1=True),
                                  stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol), max_steps=MAX_STEPS,
                                  throw=False)
            ok = sol.result == dfx.RESULTS.successful
            return sol.ys[-1], ok, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]

        return solve

    def __call__(self, rtol: float, atol: float) -> Outcome:
        jax, jnp, _ = self.mods
        t0 = time.perf_counter()
        p = None if self.case.p is None else jnp.asarray(self.case.p)
        y, ok, na, nr = jax.block_until_ready(self._solve(jnp.asarray(self.case.u0), p, jnp.float64(rtol),
                                                          jnp.float64(atol)))
        if self.first_call is None:
            self.first_call = time.perf_counter() - t0
        return Outcome(np.asarray(y), bool(ok), None, int(na), int(nr))

    def count_nf(self, rtol: float, atol: float) -> int:
        """Right-hand-side calls of one (untimed) solve, counted on the host."""
        jax, jnp, _ = self.mods
        if self._counting is None:
            def bump(*_: Any) -> None:
                self.calls += 1

            def wrap(f: Callable) -> Callable:
                def counted(t, y, p):
                    jax.debug.callback(bump, t)
                    return f(t, y, p)

                return counted

            self._counting = self._build(wrap)
        self.calls = 0
        p = None if self.case.p is None else jnp.asarray(self.case.p)
        jax.block_until_ready(self._counting(jnp.asarray(self.case.u0), p, jnp.float64(rtol), jnp.float64(atol)))
        jax.effects_barrier()
        return self.calls
