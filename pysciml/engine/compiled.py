"""Compiled steps (``solve(..., compile=True)``): a stepper's whole step as one ``torch.compile`` program.

A step of a small stiff system is a few thousand flops spread over hundreds of tiny tensor operations, each paying
torch's fixed dispatch cost. Here the whole step of an explicit Runge-Kutta, a Rosenbrock or an additive
Runge-Kutta method (the user's ``f`` at every stage, the autodiff or user Jacobian and ``df/dt``, the LU
factorisation and the stage solves or Newton iterations, the stage sums, the error norm, the finiteness test and,
with dense output, the interpolant's coefficients) is traced into ONE program with static shapes,
``fullgraph=True`` (no graph break) and no host synchronisation inside. The single-trajectory loop
(``loop_scalar.py``) reads the step's ``control`` row (error norm, finiteness, solver success) with one host round
trip per step and decides acceptance and the next step size on the host, as for eager steps; batched adaptive
solves trace the batched loop's control into the program (:mod:`.compiled_control`), or the whole loop
(:mod:`.compiled_loop`, saving at fixed times). The ARK program, with Newton as a
``torch.while_loop``, is in :mod:`.compiled_ark`.

Same tableau, same arithmetic as the eager steppers (:mod:`.explicit_rk`, :mod:`.rosenbrock`, :mod:`.ark`),
which stay the reference and the default. What stays outside the program: counters (added per step from the
known number of evaluations; ARK's Newton counts are summed on the device and added by :meth:`finish`), the
first-call checks of ``f`` (the eager ``init`` call), the accept bookkeeping and the loop.

Programs are cached at module level by signature (family, tableau, batch and state shape, dtype, device, ``f``
and its Jacobian functions, grad mode): tolerances, times, ``u0`` and the tensors in ``p`` are inputs, so a
parameter sweep compiles once. Each program gets its own code object, hence its own Dynamo cache. A compile
that fails (data-dependent Python in ``f``, a graph break) falls back to the eager stepper with one
``RuntimeWarning`` that says why; what has no compiled step (torchdiffeq's iterated Adams corrector, GMRES,
finite-difference Jacobians) runs eagerly after one warning too. The explicit
symplectic splitting step has its own program and stepper in :mod:`.compiled_symplectic`; the fixed-step Adams
methods' multistep step, in :mod:`.compiled_adams`; the implicit midpoint rule's stage solve, in
:mod:`.compiled_midpoint`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ..errors import warn_caller
from ..solution import Stats
from .adams import AdamsStepper
from .ark import ARKStepper
from .compiled_adams import CompiledAdamsStepper, adams_program, adams_unsupported
from .compiled_ark import ark_program
from .compiled_firk import CompiledFIRKStepper, firk_program, firk_unsupported
from .compiled_midpoint import CompiledMidpointStepper, midpoint_program, midpoint_unsupported
from .compiled_parts import (  # noqa: F401  (re-exported: the other compiled modules and tests use them here)
    _CACHE,
    _COUNT,
    CACHE_SIZE,
    FRESH_F_WARNING,
    CompileFailure,
    _backend,
    _control,
    _first_line,
    _own_code,
    _Program,
    _user_call,
    _user_f,
    cached_program,
    clear_cache,
    compile_count,
    factor,
    jacobian_fn,
    mass_times,
    note_fresh_f,
    tgrad_fn,
    tracks_grad,
)
from .compiled_symplectic import compile_splitting, splitting_unsupported
from .compiled_wrapper import ProgramStepper
from .explicit_rk import ExplicitRKStepper, combined_error_scale
from .firk import FIRKStepper
from .interpolation import polynomial_coefficients
from .linsolve import DenseLUSolver
from .linsolve_sparse import SparseLUSolver
from .rosenbrock import RosenbrockStepper
from .stages import StageSum
from .stepper import Stepper, StepResult
from .symplectic import ImplicitMidpointStepper, SplittingStepper

__all__ = ["CompiledStepper", "compile_stepper", "compile_count", "clear_cache", "CACHE_SIZE"]

Tensor = torch.Tensor


def _scaled_sums(stage_sum: StageSum | None) -> Callable[[list[Tensor]], tuple[Tensor | None, ...]] | None:
    """``stage_sum`` (its rows, the same coefficients) as scaled adds where the step is being compiled: inductor fuses
    them into the stage kernels, where :class:`~.stages.StageSum`'s stack and matrix product of a long row are a
    separate BLAS call and a stacked copy of the stages per row (Tsit5's whole-loop program on Van der Pol, batch
    256: about a fifth less CPU time, measured A/B on a loaded machine, the same steps and values). Run eagerly (a
    loop program run uncompiled, as the default tests run them) it is ``stage_sum`` itself, so the uncompiled step
    is the eager step to the bit: scaled adds run eagerly round differently (``Tensor.add``'s ``alpha``), which
    moved a float32 trajectory's accept decisions (27 steps for the eager 25)."""
    if stage_sum is None:
        return None

    def sums(vectors: list[Tensor]) -> tuple[Tensor | None, ...]:
        return stage_sum.by_adds(vectors) if torch.compiler.is_compiling() else stage_sum(vectors)

    return sums


def _explicit_program(stepper: ExplicitRKStepper, dense: bool, tag: str) -> _Program:
    tab, F = stepper.tab, _user_f(stepper.rhs)
    # DP8 keeps the eager sums: its large cancelling coefficients, summed by scaled adds (run eagerly), moved the
    # solution by ~3e-9 relative to eager (tests/test_compiled_loop_ends.py's Van der Pol batch at rtol 1e-6)
    adds = _scaled_sums if stepper._btilde3 is None else (lambda stage_sum: stage_sum)
    rows = [adds(r) for r in stepper._rows]
    b_sum, bt_sum = adds(stepper._b), adds(stepper._btilde)
    bt3_sum = stepper._btilde3  # DOP853's two estimators (DP8): combined as the eager step combines them
    c_col = stepper._c
    D = stepper.dense_matrix if dense and not tab.extra_c else None
    s = tab.stages

    def explicit_step(p: Any, t: Tensor, u: Tensor, f0: Tensor, dt: Tensor, atol_n: Tensor,
                      rtol_n: Tensor) -> tuple[Any, ...]:
        h = dt[:, None]
        tc = torch.addcmul(t, c_col, dt).unbind(0)
        ks = [f0]
        ui = u
        for i in range(1, s):
            (acc,) = rows[i](ks)
            ui = u if acc is None else torch.addcmul(u, h, acc)
            ks.append(F(p, tc[i], ui))
        if tab.fsal:
            u_new, f_end = ui, ks[-1]
        else:
            (acc,) = b_sum(ks)
            assert acc is not None
            u_new, f_end = torch.addcmul(u, h, acc), None
        err = None
        if bt3_sum is not None:
            e5, e3 = (h * e for e in bt3_sum(ks))
            ud, nd = u.detach(), u_new.detach()
            scale = atol_n + rtol_n * torch.maximum(ud.abs(), nd.abs())
            n5, n3 = (torch.linalg.vector_norm(e.detach() / scale, dim=1) for e in (e5, e3))
            err = e5 * combined_error_scale(n5, n3)[:, None]
        elif bt_sum is not None:
            (e,) = bt_sum(ks)
            err = h * e if e is not None else torch.zeros_like(u)
        control = _control(err, u, u_new, None, atol_n, rtol_n)
        K = torch.stack(ks)
        coeffs = None if D is None else polynomial_coefficients(u, D, K * h)
        return u_new, err, f_end, K, control, coeffs

    prog = _Program(tag)
    prog.add("step", explicit_step)
    return prog



def _rosenbrock_program(stepper: RosenbrockStepper, dense: bool, tag: str) -> _Program:
    tab, rhs = stepper.tab, stepper.rhs
    F, jacobian, time_derivative = _user_f(rhs), jacobian_fn(rhs), tgrad_fn(rhs)
    sums, final_sum, D = stepper.stage_sums, stepper.final_sum, stepper.dense_matrix if dense else None
    needs_tgrad = stepper.needs_tgrad

    def rosenbrock_step(p: Any, t: Tensor, u: Tensor, f0: Tensor, dt: Tensor, atol_n: Tensor, rtol_n: Tensor,
                        mass: Tensor | None, J: Tensor | None, ft: Tensor | None) -> tuple[Any, ...]:
        if J is None:  # the fresh variant: Jacobian (and df/dt) at the step's start, inside the program
            J = jacobian(p, t, u)
            if needs_tgrad:
                ft = time_derivative(p, t, u, dt)
        ok, solve = factor(J, 1.0 / (tab.gamma * dt), mass)
        inv_dt = (1.0 / dt)[:, None]
        ks: list[Tensor] = []
        f_last = f0
        for i in range(tab.stages):
            if i == 0:
                rhs_i = f0
            else:
                a_k, c_k = sums[i](ks)
                f_last = F(p, t + tab.c[i] * dt, u if a_k is None else u + a_k)
                if c_k is None:
                    rhs_i = f_last
                else:
                    rhs_i = torch.addcmul(f_last, inv_dt, mass_times(c_k, mass))
            if needs_tgrad and tab.d[i] != 0.0:
                assert ft is not None
                rhs_i = torch.addcmul(rhs_i, (tab.d[i] * dt)[:, None], ft)
            ks.append(solve(rhs_i))
        b_k, err = final_sum(ks)
        u_new = u if b_k is None else u + b_k
        control = _control(err, u, u_new, ok, atol_n, rtol_n)
        K = torch.stack(ks)
        coeffs = None if D is None else polynomial_coefficients(u, D, K)
        return u_new, err, ok, f_last, K, control, coeffs, J, ft

    return _Program(tag).with_variants(rosenbrock_step)


# ---------------------------------------------------------------------------------------------------- stepper
def _linsolve_reason(linsolve: object) -> str:
    """Why a linear solver other than dense LU has no compiled step."""
    if isinstance(linsolve, SparseLUSolver):  # SciPy's SuperLU runs on the host, outside any program
        return "the sparse linear solver (SparseLU, SciPy's SuperLU) has no compiled step"
    return "the matrix-free GMRES linear solver has no compiled step yet"


def _unsupported(stepper: Stepper) -> str | None:
    """Why ``stepper`` has no compiled step (``None``: it has one)."""
    if isinstance(stepper, ExplicitRKStepper):
        return None
    if isinstance(stepper, RosenbrockStepper):
        if not isinstance(stepper.linsolve, DenseLUSolver):
            return _linsolve_reason(stepper.linsolve)
        if stepper.rhs.user_jac is None and not stepper.rhs.autodiff:
            return "finite-difference Jacobians (autodiff=False) have no compiled step yet; give the problem a jac"
        return None
    if isinstance(stepper, ARKStepper):
        if not isinstance(stepper.linsolve, DenseLUSolver):
            return _linsolve_reason(stepper.linsolve)
        if not stepper.linear and stepper.rhs.user_jac is None and not stepper.rhs.autodiff:
            return "finite-difference Jacobians (autodiff=False) have no compiled step yet; give the problem a jac"
        return None
    if isinstance(stepper, FIRKStepper):
        return firk_unsupported(stepper)
    if isinstance(stepper, SplittingStepper):
        return splitting_unsupported(stepper)
    if isinstance(stepper, AdamsStepper):
        return adams_unsupported(stepper)
    if isinstance(stepper, ImplicitMidpointStepper):
        return midpoint_unsupported(stepper)
    return f"the {type(stepper).__name__.removesuffix('Stepper')} family has no compiled step yet"


def _key(stepper: Stepper, bsz: int, dense: bool) -> tuple:
    rhs = stepper.rhs
    ids = (id(rhs.f), rhs.takes_p, id(rhs.user_jac), rhs.jac_takes_p, id(rhs.user_tgrad), rhs.tgrad_takes_p)
    if isinstance(stepper, ARKStepper) and stepper.linear:  # the program never calls L u (each problem's own method)
        ids = ("linear",)
    if isinstance(stepper, ARKStepper):  # the explicit part, and the Newton options baked into the program
        rhs_e = stepper.rhs_e
        ids += (id(rhs_e.f) if rhs_e is not None else None, stepper.max_iters, stepper.kappa, stepper.smooth_est)
    if isinstance(stepper, FIRKStepper):  # Newton's options baked into the program (kappa is an input)
        ids += (stepper.max_iters, stepper.jac_reuse)
    if isinstance(stepper, ImplicitMidpointStepper):
        ids += (stepper.max_iters, stepper.tol)
    mass = _mass(stepper) is not None
    return (type(stepper).__name__, stepper.name, bsz, rhs.shape, rhs.batched, rhs.dtype, str(rhs.device), dense,
            mass, ids)


def _mass(stepper: Stepper) -> Tensor | None:
    if isinstance(stepper, (RosenbrockStepper, FIRKStepper)):
        return stepper.mass
    if isinstance(stepper, ARKStepper) and isinstance(stepper.linsolve, DenseLUSolver):
        return stepper.linsolve.mass
    return None


def _program(stepper: Stepper, bsz: int, dense: bool) -> _Program:
    key = _key(stepper, bsz, dense)

    def make(tag: str) -> _Program:
        explicit = stepper.rhs_e if isinstance(stepper, ARKStepper) and stepper.linear else None
        note_fresh_f((explicit or stepper.rhs).f, key[:-1])  # the key less the functions' identities; on a linear
        # L, the explicit part's function (the program never calls L u)
        if isinstance(stepper, RosenbrockStepper):
            return _rosenbrock_program(stepper, dense, tag)
        if isinstance(stepper, ARKStepper):
            return ark_program(stepper, dense, tag)
        if isinstance(stepper, FIRKStepper):
            return firk_program(stepper, tag)
        if isinstance(stepper, AdamsStepper):
            return adams_program(stepper, tag)
        if isinstance(stepper, ImplicitMidpointStepper):
            return midpoint_program(stepper, tag)
        assert isinstance(stepper, ExplicitRKStepper)
        return _explicit_program(stepper, dense, tag)

    return cached_program(key, make)


def compile_stepper(stepper: Stepper, stats: Stats, bsz: int, atol: Tensor, rtol: float, dense: bool,
                    u0: Tensor | None = None) -> Stepper:
    """``stepper`` with its step compiled (a :class:`CompiledStepper`), or ``stepper`` itself after one
    ``RuntimeWarning`` where its family or options have no compiled step. ``u0``: the initial state, to tell
    whether the solve may be differentiated."""
    why = _unsupported(stepper)
    eager_why = None  # differentiated Rosenbrock: only the whole-loop program (engine/compiled_loop.py) is compiled
    if why is None and isinstance(stepper, RosenbrockStepper) and tracks_grad(stepper.rhs, u0):
        eager_why = ("the backward pass of compiled Rosenbrock steps fails in inductor when f is an nn.Module "
                     "(an open bug), so differentiated Rosenbrock solves are compiled only as the whole loop (saving "
                     "at fixed times, no dense output, autodiff Jacobian, no tgrad, tensors in p)")
        why = eager_why if dense else None
    if why is not None:
        warn_caller(f"compile=True: {why}; solving eagerly", RuntimeWarning)
        return stepper
    if isinstance(stepper, SplittingStepper):  # its own program and stepper (engine/compiled_symplectic.py)
        return compile_splitting(stepper, stats, bsz, atol, rtol)
    start = time.perf_counter()
    program = _program(stepper, bsz, dense)  # a new one imports and sets up torch.compile: compile time too
    stats.compile_time += time.perf_counter() - start
    if isinstance(stepper, FIRKStepper):  # its own stepper: the loops around it stay the eager ones
        return CompiledFIRKStepper(stepper, program, stats, atol, rtol)
    if isinstance(stepper, AdamsStepper):  # engine/compiled_adams.py: the multistep step only
        return CompiledAdamsStepper(stepper, program, stats, atol, rtol)
    if isinstance(stepper, ImplicitMidpointStepper):  # engine/compiled_midpoint.py: the stage solve only
        return CompiledMidpointStepper(stepper, program, stats, atol, rtol)
    compiled = CompiledStepper(stepper, program, stats, atol, rtol)
    if eager_why is not None:  # the whole loop may take it; any other loop steps eagerly (warning at its first step)
        compiled.compiled, compiled.eager_why, compiled.whole_only = False, eager_why, True
    return compiled


class CompiledStepper(ProgramStepper):
    """A stepper whose :meth:`step` runs the compiled program of its wrapped eager stepper (``inner``), which
    keeps the per-solve state (``f0``, the Jacobian's freshness) and does everything else; on a failed compile
    the eager stepper takes over for the rest of the solve."""

    def __init__(self, inner: Stepper, program: _Program, stats: Stats, atol: Tensor, rtol: float) -> None:
        super().__init__(inner, program, stats, atol, rtol)
        self._J: Tensor | None = None
        self._ft: Tensor | None = None
        self._pending: Tensor | None = None  # ARK: Newton iterations and failures not yet in stats
        self.eager_why: str | None = None  # why steps run eagerly (said at the first one) outside the whole loop
        self.whole_only = False  # only the whole-loop program (engine/compiled_loop.py) may run compiled

    def finish(self) -> None:
        """Add the counts kept on the device during the solve (ARK's Newton iterations) to ``stats``."""
        if self._pending is not None:
            iters, failures = self._pending.tolist()
            self._pending = None
            stats = self.stats
            stats.nf += iters
            stats.nsolve += iters
            stats.nnonliniter += iters
            stats.nnonlinconvfail += failures

    def on_compile_failure(self) -> None:
        super().on_compile_failure()
        if isinstance(self.inner, (RosenbrockStepper, ARKStepper)):
            self.inner.fresh = False

    def program_args(self, t: Tensor, u: Tensor, dt: Tensor) -> tuple[str, tuple[Any, ...]]:
        """Which variant of the program the next step from ``(t, u)`` runs, and its arguments."""
        inner = self.inner
        args = (self.rhs.p, t, u, inner.f0, dt, self.atol_n, self.rtol_n)
        if isinstance(inner, RosenbrockStepper):
            fresh = not inner.fresh
            J, ft = (None, None) if fresh else (self._J, self._ft)
            return ("fresh" if fresh else "reuse"), (*args, inner.mass, J, ft)
        if isinstance(inner, ARKStepper) and inner.linear:  # the eager factorization (reused as it is eagerly)
            ls = inner.linsolve
            assert isinstance(ls, DenseLUSolver)
            if not inner.fresh:
                ls.set_jacobian(inner.rhs, t, u, inner.fI0)
                inner.fresh = True
            ok = ls.factor(1.0 / (inner.tab.gamma * dt))
            assert ls.lu is not None
            return "linear", (self.rhs.p, t, u, inner.fI0, inner.fE0, dt, self.atol_n, self.rtol_n, ok, *ls.lu,
                              ls.inverse, ls.shared)
        if isinstance(inner, ARKStepper):
            fresh = not inner.fresh
            args = (self.rhs.p, t, u, inner.fI0, inner.fE0, dt, self.atol_n, self.rtol_n, _mass(inner), inner.eta,
                    None if fresh else self._J, inner.f_tracked)
            return ("fresh" if fresh else "reuse"), args
        return "step", args

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        if self.eager_why is not None:
            warn_caller(f"compile=True: {self.eager_why}; solving eagerly", RuntimeWarning)
            self.eager_why = None
        return super().step(t, u, dt)

    def _step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        variant, args = self.program_args(t, u, dt)
        return self.absorb(variant, self.program.run(variant, self.stats, *args), t, u, dt)

    def absorb(self, variant: str, out: tuple[Any, ...], t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        """The :class:`StepResult` of a program's outputs ``out`` (the step from ``(t, u)`` by ``dt``), with the
        stepper's state (Jacobian, Newton's rate) and the counters updated."""
        inner, stats = self.inner, self.stats
        f0 = inner.f0
        assert f0 is not None
        if isinstance(inner, RosenbrockStepper):
            fresh = variant == "fresh"
            u_new, err, ok, f_last, ks, control, coeffs, J, ft = out
            self._J, self._ft = J, ft
            inner.fresh = True
            s = inner.tab.stages
            stats.nf += s - 1 + (fresh and inner.needs_tgrad and self.rhs.user_tgrad is None)
            stats.njac += fresh
            stats.nlu += 1
            stats.nsolve += s
            return StepResult(u_new=u_new, err=err, ok=ok, stages=list(ks.unbind(0)), f_start=f0,
                              f_end=f_last if inner.fsal else None, control=control, coeffs=coeffs)
        if isinstance(inner, ARKStepper):
            u_new, err, ok, ks, control, coeffs, J, eta, kI, kE, counts = out
            inner._last = (kI, kE)
            self._pending = counts if self._pending is None else self._pending + counts
            implicit_stages = inner.tab.stages - 1
            if inner.rhs_e is not None:
                stats.nf += implicit_stages
            if variant == "linear":  # the factorization was counted where it was made (program_args)
                stats.nsolve += implicit_stages + inner.smooth_est
            else:
                self._J, inner.eta = J, eta
                stats.njac += variant == "fresh"
                inner.fresh = True
                stats.nlu += 1
                stats.nsolve += inner.smooth_est
                if torch.is_grad_enabled() and (inner.f_tracked or u.requires_grad):  # each stage's exact derivative
                    stats.nf += implicit_stages
                    stats.njac += implicit_stages
            return StepResult(u_new=u_new, err=err, ok=ok, stages=list(ks.unbind(0)), f_start=f0,
                              f_end=ks[-1] if inner.fsal else None, stage_scale=dt[:, None], control=control,
                              coeffs=coeffs)
        assert isinstance(inner, ExplicitRKStepper)
        u_new, err, f_end, ks, control, coeffs = out
        stats.nf += inner.tab.stages - 1
        return StepResult(u_new=u_new, err=err, ok=None, stages=list(ks.unbind(0)), f_start=f0, f_end=f_end,
                          stage_scale=dt[:, None], t_start=t, control=control, coeffs=coeffs)

    def warm(self, t: Tensor, u: Tensor, dt: Tensor) -> None:
        """Compile every variant of the step ahead of a solve (:func:`pysciml.warmup`): one step from ``(t, u)``
        (Rosenbrock: with a fresh Jacobian, then reusing it), results discarded."""
        self.init(t, u)
        self.step(t, u, dt)
        if self.compiled and isinstance(self.inner, (RosenbrockStepper, ARKStepper)):
            self.step(t, u, dt)
        self._pending = None

    def interpolant(self, u: Tensor, dt: Tensor, res: StepResult) -> Tensor:
        if res.coeffs is not None:
            return res.coeffs
        return self.inner.interpolant(u, dt, res)
