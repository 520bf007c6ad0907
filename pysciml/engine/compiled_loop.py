"""The whole batched loop as one compiled program (``torch.while_loop``): no host round trip until it ends.

For the common case, an adaptive solve with ``compile=True`` (a batch, or one trajectory, where it replaces the scalar
loop and keeps time in float64 as that loop does, whatever the state's dtype) by an explicit Runge-Kutta method whose
interpolant needs no extra stages, a Rosenbrock method (every :class:`~.rosenbrock.RosenbrockStepper` tableau) or an
ARK/ESDIRK method with a callable implicit part, saving at fixed times (``saveat``, or only the ends), without dense
output, the progress bar or step hooks (differentiated or not, for explicit RK and Rosenbrock; not
differentiated for the other families), :func:`integrate_batched_whole` runs :mod:`.compiled_control`'s controlled step
(the step with the batched loop's control) inside a ``torch.while_loop`` that turns while some trajectory is running and
fewer than ``maxiters`` steps were taken. Steps land on ``tstops`` (the control's multi-stop form, as in the eager
loops: a step that would pass the next stop is shortened to end on it, and the step after it is at least the step
size before the cut); the stop times are an input, padded as the save times are, but a solve with stops inside the
span and one without are two programs. Save points are filled inside the program: each accepted step writes the
points it passed, evaluated on its interpolant (the tableau's dense output, else the cubic Hermite one; its end value
where a point is the step's end), as :class:`~.loop_saver._Saver` does; without save points strictly inside the
span (saving only ``t0`` and ``t1``) the save buffer is no loop carry: the points at ``t1`` are written once after the
loop, from the final state (about a tenth of the program's CPU time on the per-step overhead benchmark, Tsit5 on Van
der Pol, batch 256). The counters come back with the result (steps,
steps with an acceptance, per-trajectory accepted and attempted steps, fresh Jacobians; ARK's Newton counts), so
``sol.stats`` is the eager solve's. An explicit-RK loop program also computes what the eager set-up did before the
loop, ``f(t0, u0)`` and the first step size (:func:`~.controller.initial_dt`, the same arithmetic), in a prologue
(``PROLOGUE``; ``f``'s eager first-call checks run once per program, at its first solve): on the spiral benchmark,
where a solve takes about 4 steps, that eager work was about 1 ms of a 16 ms training iteration.

Rosenbrock and ARK steppers evaluate the Jacobian only at the start of a step that follows an accepted one (in a
batch: one where some trajectory was accepted). The loop carries the Jacobian (and Rosenbrock's ``df/dt``, ARK's
Newton rate and ``f`` parts) as loop state with a 0-d ``fresh`` flag; each iteration evaluates a Jacobian and
keeps it only where ``fresh`` is set (``torch.where``), so the steps, values and counts (``njac``, ``nlu``) are the
eager ones to round-off (a finite-difference ``df/dt``, for a time-dependent ``f`` without ``tgrad``, carries
~1e-8 relative round-off that can move an accept decision near ``EEst = 1``, as in the per-step programs); the
discarded evaluations (one per step after a rejection) are not counted in ``sol.stats``. That forward difference
``(f(t + h, u) - f(t, u)) / h`` takes both values from the program, not ``f(t, u)`` from the carried ``f0`` (the
eager ``f(t0, u0)`` at the start, then the step's): the two differ in their last bits where inductor fuses ``f``
differently (an ``nn.Module``'s ``addmm``), and divided by ``h ~ 1.5e-8 dt`` that ulp gave an autonomous ``f`` a
``df/dt`` of ~1e-8 ``|f| / dt`` where the eager steppers get exactly 0 (issue 17: one Rodas5P trajectory of a
3-16-3 tanh MLP at rtol 1e-6 took 18 steps, 21 differentiated, for the eager 17). The extra ``f`` call is not
counted either (``nf`` counts the eager solve's one call per ``df/dt``).

Gradients (explicit RK and Rosenbrock; the discrete adjoint, as eager direct backpropagation gives it): ``while_loop``'s
autograd stacks every iteration's carries in the forward pass and runs a reverse ``while_loop`` of the body's
vector-Jacobian products in the backward pass, so memory grows as iterations x carry size (the state, the save buffer
``(S, B, n)`` with ``S`` padded to a power of two where a save time lies inside the span, ``f(t, u)`` and the control's
``(B,)`` rows; measured about 0.74 kB per iteration for a batch of 3 states of 2 with 5 save times, 0.43x the eager
solve's saved tensors: ``docs/guide/compile.md``). The step control is detached inside the body, as the eager loop
treats step sizes as constants, and a save time the step did not pass is evaluated at ``theta = 0``, not at the
padding's ``inf`` (without these two, the gradients came out NaN). Two torch 2.13 limits shape this: the C++ wrapper
has no ``while_loop_stack_output`` (explicit RK's programs get it from :mod:`.compiled_cpp_loop`, forward and backward
graphs on the C++ wrapper, :func:`~.compiled_parts.split_wrapper_backend`, ``CPP_BACKWARD``: the backward 0.9 ms of
a 12.8 ms spiral training iteration, the forward 19 % of a 4.1-4.9 ms one; Rosenbrock's keep inductor's Python
wrapper), and the backward differentiates a carry only where its initial value requires grad,
dropping the cotangents of later iterations otherwise (a parameter gradient then kept only the last step's share), so
:func:`_requiring_grad` hands the loop carries that require grad. A differentiated
solve is recognised by ``u0``, a tensor in ``p``, a parameter of an ``nn.Module`` ``f`` or a tensor ``f`` reads from
a closure cell or a global requiring grad (:func:`~.compiled_parts.tracks_grad`); a tensor reached otherwise is not,
and its solve finds out by one failed compile (the C++ wrapper) and runs the per-step programs. A differentiated
Rosenbrock loop evaluates its Jacobian by a reverse-mode graph traced before the loop
(:mod:`.compiled_loop_jac`: autodiff transforms inside the differentiated body fail in torch 2.13, forward mode in the
backward's trace, reverse mode silently with a zero Jacobian); its dispatch compiles the program
(:func:`_rosenbrock_grad_ready`), since its fallback is the eager loop, the per-step programs' backward failing in
inductor. ARK solves that may be differentiated keep the per-step programs.

Everything else (dense output) keeps the per-step design of :mod:`.compiled_control`; a loop program
that fails to compile falls back to it too, once per signature, with one warning. Tensor constants that ``f`` or
``jac`` creates (``torch.tensor(...)`` of literals, as HIRES's analytic ``jac`` does), which torch 2.13's C++
wrapper leaves undeclared inside a ``while_loop`` body, are lifted out of it by :mod:`.loop_constants`.
``ENABLED = False`` switches the whole-loop programs off, ``GRADIENTS = False``
those of differentiated solves (for comparisons).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from ..solution import Stats
from . import compiled_parts
from .ark import ARKStepper
from .compiled import CompiledStepper, _mass, _Program
from .compiled_control import (
    _CountedSaver,
    _fsal,
    controlled_step_fn,
    handles,
    loop_result,
    options_ok,
    save_times,
)
from .compiled_loop_inputs import built, constants, final_state, nan_rows, pack_control, unpack_control
from .compiled_loop_jac import ReverseJacobian, unsupported
from .compiled_parts import (
    _user_f,
    jacobian_fn,
    python_wrapper_backend,
    split_wrapper_backend,
    tgrad_fn,
    tracks_grad,
)
from .controller import initial_dt
from .explicit_rk import ExplicitRKStepper
from .interpolation import evaluate, hermite_coefficients, polynomial_coefficients
from .loop_records import LoopOptions, LoopResult
from .rosenbrock import RosenbrockStepper

__all__ = ["handles_whole", "integrate_batched_whole", "warm_whole"]

Tensor = torch.Tensor


ENABLED = True
"""Whole-loop programs on (the default). ``False`` keeps every compiled solve on the per-step design, for
comparisons (``benchmarks/stiff_loop.py`` times both)."""


GRADIENTS = True
"""Differentiated solves through the whole loop (``while_loop``'s autograd; see the module docstring). ``False``
keeps them on the per-step programs (for comparisons)."""


PROLOGUE = True
"""Explicit RK loop programs compute ``f(t0, u0)`` and the first step size (:func:`~.controller.initial_dt`) inside
the program (the default) rather than eagerly before it (``False``, for comparisons): about 0.7 ms of eager work per
solve on the spiral benchmark's 2-50-2 MLP, where a solve takes about 4 steps."""


CPP_BACKWARD = True
"""A differentiated explicit-RK loop program's backward graph on inductor's C++ wrapper, and its forward graph too
with :data:`~.compiled_parts.CPP_FORWARD` (whose ``while_loop_stack_output`` torch 2.13's C++ wrapper cannot generate:
:mod:`.compiled_cpp_loop` does): the default. ``False``: both on the Python wrapper (for comparisons; the key of the
program cache holds it, and ``CPP_FORWARD``)."""


GRADIENT_FAMILIES: tuple[type, ...] = (ExplicitRKStepper, RosenbrockStepper)
"""The stepper families whose differentiated solves take the loop program (the ones tested). Rosenbrock's take it
with the autodiff Jacobian traced ahead of the loop (:mod:`.compiled_loop_jac`, which says why), not with a
supplied ``jac``/``tgrad`` or a ``p`` holding Python numbers; those, and a loop that fails to compile, solve
eagerly after a warning (:class:`~.compiled.CompiledStepper` with ``eager_why``)."""


def handles_whole(stepper: Any, opts: LoopOptions, u0: Tensor) -> bool:
    """Whether :func:`integrate_batched_whole` runs this batched solve."""
    whole_only = getattr(stepper, "whole_only", False)  # differentiated Rosenbrock: no per-step programs
    if not ENABLED or not (handles(stepper, opts) or whole_only and options_ok(opts)) or opts.dense \
            or opts.saveat is None:
        return False
    inner = stepper.inner
    differentiated = u0.requires_grad or tracks_grad(stepper.rhs)
    if differentiated and not (GRADIENTS and isinstance(inner, GRADIENT_FAMILIES)):
        return False
    if differentiated and isinstance(inner, RosenbrockStepper) and not _rosenbrock_grad_ready(stepper, opts, u0):
        return False
    if isinstance(inner, ExplicitRKStepper):
        return not inner.tab.extra_c
    return isinstance(inner, (RosenbrockStepper, ARKStepper))


def _rosenbrock_grad_ready(stepper: CompiledStepper, opts: LoopOptions, u0: Tensor) -> bool:
    """Whether a differentiated Rosenbrock solve takes the loop program: its fallback is the eager loop (the
    per-step programs' backward fails in inductor, :mod:`.compiled`), which only this function's caller can choose,
    so a program not yet run is compiled here (one step, discarded; ``stats`` left as they were but for the compile
    time). A failed compile warns once and the solve runs eagerly."""
    if unsupported(stepper.rhs) is not None:
        return False
    stats = stepper.stats
    before = {f.name: getattr(stats, f.name) for f in fields(stats) if f.name != "compile_time"}
    try:
        prog, args, _ = _inputs(stepper, u0, opts, 1)
        if "loop" in prog.ran:
            return True
        if prog.attempt("loop", stats, *args, what=f"the whole {stepper.name} loop with gradients as one program",
                        instead="solving eagerly") is None:
            stepper.eager_why = None  # the one warning was that
            return False
        return True
    finally:
        for name, value in before.items():
            setattr(stats, name, value)


class _Family:
    """What the loop carries besides ``(t, u)`` and the control for one family (``X``, a tuple of tensors), the
    step it traces (``None``: the family's step as compiled) and how ``X`` enters and leaves a step.

    Explicit RK: ``X = (f0,)``. Rosenbrock: ``(f0, fresh, n_fresh, J[, ft])``, ``J`` as ``(B n, n)`` where the
    loop is differentiated (inductor's differentiated ``while_loop`` compares the strides of a ``(1, n, n)`` carry,
    which are ambiguous, and failed on ``(36, 6, 1)`` against ``(6, 6, 1)``). ARK: ``(fI0, eta, J, fresh,
    n_fresh, counts[, fE0])``. ``fresh`` (0-d bool): the previous step accepted some trajectory, so this step
    evaluates the Jacobian (and ``df/dt``) at its start, as the eager steppers' ``accept`` asks; the Jacobian is
    evaluated at every iteration and selected by ``torch.where``, which gives the eager numbers (a step after a
    rejection reuses the carried one). ``prologue`` (explicit RK): the program computes ``X``'s ``f(t0, u0)`` and the
    first step size itself (:func:`_loop_program`), so ``X`` enters the program without its first entry."""

    def __init__(self, stepper: CompiledStepper) -> None:
        inner, base = stepper.inner, stepper.program
        self.kind = "ark" if isinstance(inner, ARKStepper) else "ros" if isinstance(inner, RosenbrockStepper) else "erk"
        self.step: Any = None
        self.grad = False  # the loop may be differentiated (set by _loop_program)
        self.has_e = isinstance(inner, ARKStepper) and inner.rhs_e is not None
        self.tgrad = isinstance(inner, RosenbrockStepper) and inner.needs_tgrad
        self.prologue = PROLOGUE and self.kind == "erk"  # f(t0, u0) and the first step size in the program
        if self.kind == "erk":
            return
        raw, jacobian, tgrad = base.raw["fresh"], jacobian_fn(inner.rhs), tgrad_fn(inner.rhs)
        needs_tgrad = self.tgrad
        self.reverse = ReverseJacobian(inner.rhs) if self.kind == "ros" else None  # differentiated: see _inputs

        def rosenbrock_step(p: Any, t: Tensor, u: Tensor, f0: Tensor, dt: Tensor, atol_n: Tensor, rtol_n: Tensor,
                            mass: Tensor | None, J: Tensor, ft: Tensor | None, fresh: Tensor) -> tuple[Any, ...]:
            jac = self.reverse if self.grad else jacobian  # self.grad: set before the loop is traced
            J = torch.where(fresh, jac(p, t, u), J).contiguous()  # the carry keeps its strides
            if needs_tgrad:  # f(t, u) from this program, not the carried f0: see the module docstring
                ft = torch.where(fresh, tgrad(p, t, u, dt), ft).contiguous()
            return raw(p, t, u, f0, dt, atol_n, rtol_n, mass, J, ft)

        def ark_step(p: Any, t: Tensor, u: Tensor, fI0: Tensor, fE0: Tensor | None, dt: Tensor, atol_n: Tensor,
                     rtol_n: Tensor, mass: Tensor | None, eta: Tensor, J: Tensor, tracked: bool,
                     fresh: Tensor) -> tuple[Any, ...]:
            with torch.no_grad():
                J = torch.where(fresh, jacobian(p, t, u), J).contiguous()
            return raw(p, t, u, fI0, fE0, dt, atol_n, rtol_n, mass, eta, J, tracked)

        self.step = ark_step if self.kind == "ark" else rosenbrock_step

    def start(self, stepper: CompiledStepper, u0: Tensor) -> tuple[Tensor, ...]:
        inner = stepper.inner
        if self.kind == "erk":
            return (inner.f0,)
        b, n = u0.shape
        J = torch.zeros(b, n, n, dtype=u0.dtype, device=u0.device)
        fresh = torch.ones((), dtype=torch.bool, device=u0.device)
        n_fresh = torch.zeros((), dtype=torch.long, device=u0.device)
        if self.kind == "ros":
            J = J.flatten(0, 1) if self.grad else J  # (B n, n): see the class docstring
            return (inner.f0, fresh, n_fresh, J, *((torch.zeros_like(u0),) if self.tgrad else ()))
        counts = torch.zeros(2, dtype=torch.long, device=u0.device)
        return (inner.fI0, inner.eta, J, fresh, n_fresh, counts, *((inner.fE0,) if self.has_e else ()))

    def args(self, p: Any, t: Tensor, u: Tensor, dt: Tensor, atol_n: Tensor, rtol_n: Tensor, mass: Tensor | None,
             X: tuple[Tensor, ...]) -> tuple[Any, ...]:
        """The step's arguments from the carried ``X``."""
        if self.kind == "erk":
            return (p, t, u, X[0], dt, atol_n, rtol_n)
        if self.kind == "ros":
            J = X[3].unflatten(0, (-1, X[3].shape[1])) if self.grad else X[3]
            return (p, t, u, X[0], dt, atol_n, rtol_n, mass, J, X[4] if self.tgrad else None, X[1])
        return (p, t, u, X[0], X[6] if self.has_e else None, dt, atol_n, rtol_n, mass, X[1], X[2], False, X[3])

    def after(self, X: tuple[Tensor, ...], out: tuple[Any, ...], f0s: tuple[Any, ...], summary: Tensor,
              accepted: Tensor) -> tuple[Tensor, ...]:
        """``X`` after a step (``f0s``: the merged ``f(t, u)`` parts; ``summary[1]``: some step accepted;
        ``accepted``: ``(B,)``, which)."""
        if self.kind == "erk":
            return (f0s[2],)
        fresh = summary[1] > 0
        if self.kind == "ros":
            J = out[7].flatten(0, 1) if self.grad else out[7]
            return (f0s[2], fresh, X[2] + X[1], J, *((out[8],) if self.tgrad else ()))
        return (f0s[0], out[7], out[6], fresh, X[4] + X[3], X[5] + out[10], *((f0s[1],) if self.has_e else ()))

    def constants(self, stepper: Any) -> Any:
        """The loop program's constant input besides the tolerances (here the mass matrix or ``None``)."""
        return _mass(stepper.inner)

    def f_start(self, X: tuple[Tensor, ...]) -> Tensor:
        """``f(t, u)`` at the step's start (the Hermite interpolant's first slope)."""
        return X[0] + X[6] if self.has_e else X[0]

    def stages(self, out: tuple[Any, ...], dt: Tensor) -> Tensor:
        """The step's stage increments ``(s, B, n)`` for the tableau's dense matrix."""
        return out[4] if self.kind == "ros" else out[3] * dt[:, None]

    def count(self, stepper: CompiledStepper, stats: Stats, steps: int, with_acceptance: int,
              X: tuple[Tensor, ...]) -> None:
        """What :meth:`~.compiled.CompiledStepper.absorb` and the loop's ``accept`` add to ``stats``, for the
        whole loop; the stepper keeps the state the loop ended with."""
        inner = stepper.inner
        accept_f = 0 if _fsal(inner) else 1 + self.has_e
        if self.kind == "erk":
            assert isinstance(inner, ExplicitRKStepper)
            stats.nf += (inner.tab.stages - 1) * steps + accept_f * with_acceptance
            inner.f0 = X[0]
            return
        n_fresh = int(X[4] if self.kind == "ark" else X[2])
        stats.njac += n_fresh
        stats.nlu += steps
        stats.nf += accept_f * with_acceptance
        if isinstance(inner, RosenbrockStepper):
            s = inner.tab.stages
            stats.nf += (s - 1) * steps + n_fresh * (self.tgrad and inner.rhs.user_tgrad is None)
            stats.nsolve += s * steps
            inner.f0 = X[0]
            return
        assert isinstance(inner, ARKStepper)
        stats.nsolve += inner.smooth_est * steps
        stats.nf += (inner.tab.stages - 1) * steps * self.has_e
        inner.fI0, inner.eta = X[0], X[1]
        inner.fE0 = X[6] if self.has_e else None
        inner.f0 = self.f_start(X)
        stepper._pending = X[5]


def _loop_program(stepper: CompiledStepper, opts: LoopOptions, direction: float, interior: bool,
                  u0: Tensor, family_type: Any = _Family) -> _Program:
    """The while_loop around the controlled step (cached on the step's program); ``family_type``: the
    :class:`_Family`-like adapter to build (:mod:`.compiled_loop_firk` gives its own)."""
    base = stepper.program
    grad = tracks_grad(stepper.rhs, u0)
    stops = any(direction * opts.t0 < direction * s < direction * opts.t1 for s in opts.tstops or [])  # FIRK's
    key = ("whole", interior, direction, opts.dtmin > 0.0, opts.dtmax is not None, opts.controller, stepper.order,
           grad, stops, opts.dt is None, PROLOGUE, CPP_BACKWARD, compiled_parts.CPP_FORWARD)
    prog = base.fused.get(key)
    if prog is not None:
        return prog
    family = family_type(stepper)
    step = controlled_step_fn(stepper, opts, direction, 2 if stops else 1, family.step)
    D = stepper.inner.dense_matrix
    prologue, first_dt, has_dtmax = getattr(family, "prologue", False), opts.dt is None, opts.dtmax is not None
    F, order = _user_f(stepper.inner.rhs), stepper.order

    def start(L: tuple[Tensor, ...], C: tuple[Tensor, ...], p: Any, u: Tensor, S: tuple[Tensor, ...],
              X: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """The prologue: ``f(t0, u0)`` first in ``X`` and, without a given ``dt``, the first step size in ``L``
        (``S``: the span and the unscaled tolerances), as :func:`~.compiled_control._start` computes them eagerly."""
        t = L[0].to(u.dtype)  # the state's dtype, as the eager f(t0, u0) sees it
        f0 = F(p, t, u)
        if first_dt:
            span, atol, rtol = S
            with torch.no_grad():  # the step control is not differentiated (as eager)
                dt = initial_dt(lambda tt, uu: F(p, tt, uu), t, u, f0, span, order, atol, rtol).to(L[1].dtype)
            if has_dtmax:
                dt = direction * dt.abs().clamp(max=C[3][1])
            L = (L[0], dt, *L[2:])
        return L, (f0, *X)

    def whole_loop(P: tuple[Tensor, Tensor], C: tuple[Tensor, ...], saveat: Tensor, out: Tensor, p: Any,
                   u: Tensor, atol_n: Tensor, rtol_n: Tensor, maxiters: Tensor, mass: Tensor | None,
                   X: tuple[Tensor, ...], S: tuple[Tensor, ...] = ()) -> tuple[Tensor, ...]:
        L = unpack_control(*P)
        if prologue:
            L, X = start(L, C, p, u, S, X)
            P = pack_control(L)
        rows = torch.arange(saveat.shape[0], device=saveat.device)[:, None]
        carried = 1 if interior else 0  # the save buffer is a carry only with save points inside

        def more(k: Tensor, n_any: Tensor, u: Tensor, *rest: Tensor) -> Tensor:
            return (k < maxiters[0]) & (rest[carried + 1][0] != 0).any()  # some trajectory active

        def body(k: Tensor, n_any: Tensor, u: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
            out, PX = (rest[0] if interior else None), rest[carried:]
            # the control is not differentiated (as eager)
            L, X = unpack_control(PX[0].detach(), PX[1].detach()), PX[2:]
            t, sidx = L[0], L[11]
            args = family.args(p, t, u, L[1], atol_n, rtol_n, mass, X)
            res, state, u_new, f0s, dt_step, n_cross, summary = step(L, C, *args)
            h = dt_step.to(u.dtype)  # the step size as the step saw it (time may be float64: compiled_control)
            X_new = family.after(X, res, f0s, summary, state[9] > L[9])  # n_acc grew: accepted
            saved: tuple[Tensor, ...] = ()
            if interior:
                passed = (rows >= sidx) & (rows < sidx + n_cross)  # (S, B): the save points this step passed
                at_end = saveat[:, None] == state[0]
                if D is not None:
                    coeffs = polynomial_coefficients(u, D, family.stages(res, h))
                else:
                    coeffs = hermite_coefficients(u, u_new, family.f_start(X), family.f_start(X_new), h)
                theta = torch.where(passed, (saveat[:, None] - t) / dt_step, 0.0)  # finite: no NaN in a backward
                theta = theta.to(u.dtype)
                vals = torch.where(at_end[..., None], u_new, evaluate(coeffs, theta))
                saved = (torch.where(passed[..., None], vals, out),)
            X_new = tuple(x.clone() if x is y else x for x, y in zip(X_new, X, strict=True))  # no aliasing
            return (k + 1, n_any + summary[1], u_new, *saved, *(x.detach() for x in pack_control(state)), *X_new)

        zero = torch.zeros((), dtype=torch.long, device=u.device)
        if interior:
            return tuple(while_loop(more, body, (zero, zero.clone(), u, out, *P, *X)))
        k, n_any, u_end, *PX = while_loop(more, body, (zero, zero.clone(), u, *P, *X))
        # no save point inside the span: a point a step passed lies at t1, that step's end, where the trajectory
        # stops, so it holds the final state; the passed ones run from sidx's first value to its last
        passed = (rows >= L[11]) & (rows < PX[1][6])
        return (k, n_any, u_end, torch.where(passed[..., None], u_end, out), *PX)

    prog = _Program(f"{base.tag}w{len(base.fused)}")
    backend = split_wrapper_backend if CPP_BACKWARD and getattr(family, "kind", None) == "erk" else \
        python_wrapper_backend
    prog.add("loop", whole_loop, backend if grad else None, per_solve=True)
    family.grad = grad
    prog.family = family
    base.fused[key] = prog
    return prog


def _requiring_grad(x: Tensor) -> Tensor:
    """``x``, or a leaf copy that requires grad where a floating ``x`` does not: torch 2.13's ``while_loop``
    backward differentiates a carry at every iteration only where its initial value requires grad (else the
    cotangents that reach it from later iterations are dropped: a parameter gradient keeps only the last step's
    share). The copy's own gradient is never read."""
    if not x.is_floating_point() or x.requires_grad:
        return x
    return x.detach().requires_grad_()


def _inputs(stepper: CompiledStepper, u0: Tensor, opts: LoopOptions, steps: int,
            family_type: Any = _Family) -> tuple[Any, ...]:
    """The loop program, its arguments (at most ``steps`` steps) and the saver; an explicit-RK program's inputs
    that depend only on the options are built once per signature (:func:`~.compiled_loop_inputs.constants`)."""
    assert opts.saveat is not None
    scalar = u0.shape[0] == 1  # time in float64, as the scalar loop keeps it
    direction = 1.0 if opts.t1 > opts.t0 else -1.0
    save_t = save_times(opts, scalar)
    tdt = torch.float64 if scalar else u0.dtype
    if tdt == torch.float64:  # Python floats compare as float64
        interior = any(s != opts.t0 and s != opts.t1 for s in save_t)
    else:  # compared in the time's dtype
        times = torch.tensor(save_t, dtype=tdt)
        interior = bool(((times != opts.t0) & (times != opts.t1)).any())
    prog = _loop_program(stepper, opts, direction, interior, u0, family_type)
    prologue = getattr(prog.family, "prologue", False)
    if prologue and "loop" not in prog.ran:  # f's first-call checks (once per program: f is in its signature)
        # their graph is not the solve's: kept out of enclosing saved-tensor hooks, which torch.utils.checkpoint
        # counts (its recomputation, a later call of this program, makes no such checks)
        with torch.autograd.graph.saved_tensors_hooks(lambda x: x, lambda x: x):
            stepper.init(torch.full((u0.shape[0],), opts.t0, dtype=u0.dtype, device=u0.device), u0)
        stepper.stats.nf -= 1  # counted below, with the program's
    # explicit RK (the prologue): the inputs of this signature, cached; else f(t0, u0) and dt eagerly, each call
    k = constants(u0, opts, scalar, save_t, steps, prologue) if prologue else \
        built(stepper, u0, opts, scalar, save_t, steps, prologue)
    # the output buffer: u0 at the save points at t0 (saveat is sorted: they lead), NaN after them
    tail = k.tail if k.tail is not None else nan_rows((k.padded.shape[0] - k.first, *u0.shape), u0)
    out = torch.cat((u0[None].expand(k.first, *u0.shape), tail))
    saver = _CountedSaver(opts, u0, direction, k.first, out[: opts.saveat.shape[0]])
    X = prog.family.start(stepper, u0)
    S: tuple[Tensor, ...] = ()
    if prologue:  # the eager set-up's f calls, made in the program: f(t0, u0) and initial_dt's
        X = X[1:]
        stepper.stats.nf += 1 + (opts.dt is None)
        if opts.dt is None:
            assert k.span is not None and k.rtol is not None
            S = (k.span, opts.atol, k.rtol)
    u = u0
    if prog.family.grad and prog.family.kind == "ros":  # the traced reverse-mode Jacobian, for these shapes
        prog.family.reverse.prepare(stepper.rhs.p, k.t, u0)
    if prog.family.grad:  # see _requiring_grad
        u, X = _requiring_grad(u0), tuple(_requiring_grad(x) for x in X)
        if not out.requires_grad:  # a fresh tensor of this call: made a leaf in place
            out.requires_grad_()
    args = (k.P, k.C, k.padded, out, stepper.rhs.p, u, stepper.atol_n, stepper.rtol_n, k.maxiters,
            prog.family.constants(stepper), X, S)
    return prog, args, saver


def _scalar_fallback(u0: Tensor) -> bool:
    """One trajectory outside float64 falls back to the scalar loop (its time in Python floats), not to the per-step
    control programs (time in the state's dtype); a float64 one takes those (the same numbers)."""
    return u0.shape[0] == 1 and u0.dtype != torch.float64


def _attempt(stepper: CompiledStepper, prog: _Program, stats: Stats, args: tuple[Any, ...]) -> Any | None:
    """The loop program's outputs, or ``None`` where it does not compile (:meth:`_Program.attempt`; the callers
    fall back to the per-step compiled programs)."""
    return prog.attempt("loop", stats, *args, what=f"the whole {stepper.name} loop as one program",
                        instead="running the per-step compiled programs")


def warm_program(stepper: Any, u0: Tensor, opts: LoopOptions, family_type: Any = _Family) -> bool:
    """Compile the loop program: it runs one step, discarded; ``False`` (one warning) when it fails to compile."""
    prog, args, _ = _inputs(stepper, u0, opts, 1, family_type)
    return _attempt(stepper, prog, stepper.stats, args) is not None


def warm_whole(stepper: Any, u0: Tensor, opts: LoopOptions) -> None:
    """Compile the loop program ahead of a solve (:func:`pysciml.warmup`): it runs one step, discarded."""
    assert isinstance(stepper, CompiledStepper)
    if not warm_program(stepper, u0, opts):  # the solve will fall back to the per-step programs: compile those
        from .compiled_control import warm

        if _scalar_fallback(u0):
            t0 = torch.full((1,), opts.t0, dtype=u0.dtype, device=u0.device)
            stepper.warm(t0, u0, torch.full_like(t0, opts.dt if opts.dt is not None else 1e-3 * (opts.t1 - opts.t0)))
        else:
            warm(stepper, u0, opts)


def integrate_batched_whole(stepper: Any, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult | None:
    """The batched loop as one compiled program (see the module docstring); on a failed compile, the per-step
    design (:func:`~.compiled_control.integrate_batched_compiled`) from the start, and ``None`` where that fails to
    compile too (the caller runs the eager loops)."""
    from .compiled_control import integrate_batched_compiled

    assert isinstance(stepper, CompiledStepper)
    result = run_whole(stepper, u0, opts, stats)
    if result is None:
        if _scalar_fallback(u0):
            from .loop_scalar import integrate_single

            return integrate_single(stepper, u0, opts, stats)
        return integrate_batched_compiled(stepper, u0, opts, stats)
    return result


def run_whole(stepper: Any, u0: Tensor, opts: LoopOptions, stats: Stats,
              family_type: Any = _Family) -> LoopResult | None:
    """The loop program's solve; ``None`` (``stats`` as they were, one warning per signature) when it fails to
    compile, for the caller's fallback."""
    assert opts.saveat is not None
    before = dict(vars(stats))  # the counters, restored on a failed compile
    prog, args, saver = _inputs(stepper, u0, opts, opts.maxiters - stats.nloop, family_type)
    outs = _attempt(stepper, prog, stats, args)
    if outs is None:
        vars(stats).update(before)
        return None
    k, n_any, u, out, times, ints, *X = outs
    steps, with_acceptance = int(k), int(n_any)
    stats.nloop += steps
    prog.family.count(stepper, stats, steps, with_acceptance, tuple(X))
    raw, n_acc, n_att, fail_t, fail_dt, dt = final_state(times, ints, stats.nloop >= opts.maxiters)
    saver.out = out[: opts.saveat.shape[0]]
    # one trajectory: |dt| as a float, as the scalar loop returns it; a batch: the (B,) tensor
    dt_next = abs(dt[0]) if u0.shape[0] == 1 else times[1].abs()
    return loop_result(stepper, raw, n_acc, n_att, fail_t, fail_dt, saver, u, None, stats, dt_next)
