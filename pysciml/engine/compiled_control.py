"""Batched compiled solves with the step control inside the program: one host round trip per step.

:func:`integrate_batched_compiled` is :func:`~.loop.integrate_batched` (adaptive steps) for a
:class:`~.compiled.CompiledStepper`: the same rules and the same arithmetic, but everything the batched loop
does with ``(B,)`` tensors around the step (the step clipped to the next ``tstop``, the accept mask, the merged
``t`` and ``u``, the PI controller's new step and ``qold``, the step-size failure test and the return codes, the
FSAL update of ``f(t, u)``, the per-trajectory step counters and how many ``saveat`` points each accepted step
passed) is traced with the family's step into one program per signature. The program returns a small control
row (any trajectory still running, any step accepted, the most ``saveat`` points one step passed, whether one
lies strictly inside a step), which the loop reads with one ``.tolist()`` per step; the eager batched loop
made up to four host round trips per step (the loop test, the Jacobian-freshness test in ``accept``, the save
test, the failure test) and ran the controller as a few dozen separately dispatched tensor operations.
Saving writes the passed points with masks, without further synchronisation.

The time (``t``, the step sizes, ``qold``, the save and stop times) has its own dtype in ``L`` and ``C``: the
state's for a batch, as the eager batched loop keeps it, and float64 for one trajectory (the whole loop,
:mod:`.compiled_loop`, with ``_start(..., scalar=True)``), as the scalar loop keeps it in Python floats. The step
then sees ``t`` and its step size cast to the state's dtype, and its error norm comes back cast to the time's, at
exactly the places :func:`~.loop_scalar.integrate_single` casts (``vec(t)``, ``vec(dt)``, ``float(eest)``), so a
float32 trajectory takes the scalar loop's steps.

The eager loop stays the reference (``tests/test_compiled.py`` compares values, step counts and statistics);
fixed steps, the progress bar, ``save_everystep`` and step hooks keep the eager loop around the compiled step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from ..errors import warn_caller
from ..solution import Stats
from .ark import ARKStepper
from .compiled import CompiledStepper, CompileFailure, _Program, _user_f
from .controller import initial_dt
from .explicit_rk import ExplicitRKStepper
from .fixed_step_check import describe
from .interpolation import DenseOutput, evaluate
from .loop_records import LoopOptions, LoopResult, save_time_list
from .loop_saver import _CODES, DTMIN, MAXITERS, RUNNING, SUCCESS, UNSTABLE, _Saver
from .rosenbrock import RosenbrockStepper

__all__ = ["integrate_batched_compiled", "handles", "warm", "finish", "loop_result"]

Tensor = torch.Tensor
REACH = 1.0 + 1e-12  # as in engine/loop.py: a step within this factor of the remaining span ends on the stop


def handles(stepper: Any, opts: LoopOptions) -> bool:
    """Whether :func:`integrate_batched_compiled` runs this batched solve (else the eager loop does)."""
    return (isinstance(stepper, CompiledStepper) and stepper.compiled and options_ok(opts)
            and not (isinstance(stepper.inner, ARKStepper) and stepper.inner.linear))  # its factors are eager


def options_ok(opts: LoopOptions) -> bool:
    """Whether the solve's options allow a compiled loop: adaptive steps, no progress bar, no step hooks, not
    every step saved."""
    return opts.adaptive and not opts.progress and not opts.save_everystep and getattr(opts, "hooks", None) is None


def _padded(values: list[float], fill: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``values`` padded with ``fill`` to a power-of-two length, at least 8: a new count of stops or save times
    recompiles only when it crosses a power of two above 8 (shapes are static in the program)."""
    n = max(8, 1 << max(0, len(values) - 1).bit_length())
    return torch.tensor(values + [fill] * (n - len(values)), dtype=dtype, device=device)


def _fsal(inner: Any) -> bool:
    """Whether the step returns ``f`` at its end (else ``accept`` evaluates it where steps were accepted)."""
    return bool(inner.tab.fsal if isinstance(inner, ExplicitRKStepper) else inner.fsal)


def _fused_program(stepper: CompiledStepper, opts: LoopOptions, direction: float, n_stops: int) -> _Program:
    """The stepper's program with the batched loop's control around the step (cached on the step's program)."""
    base = stepper.program
    key = (direction, n_stops > 1, opts.saveat is not None, opts.dtmin > 0.0, opts.dtmax is not None,
           opts.controller, stepper.order)
    prog = base.fused.get(key)
    if prog is not None:
        return prog
    prog = _Program(f"{base.tag}c{len(base.fused)}")
    if isinstance(stepper.inner, (ARKStepper, RosenbrockStepper)):
        prog.with_variants(controlled_step_fn(stepper, opts, direction, n_stops))
    else:
        prog.add("step", controlled_step_fn(stepper, opts, direction, n_stops))
    base.fused[key] = prog
    return prog


def controlled_step_fn(stepper: CompiledStepper, opts: LoopOptions, direction: float, n_stops: int,
                       step: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """The traceable ``controlled_step(L, C, *step_args)``: ``step`` (default: the family's step as compiled, the
    step size at the family's position in its arguments) with the batched loop's control around it."""
    inner, base = stepper.inner, stepper.program
    controller, order = opts.controller, stepper.order
    multi_stop, saving = n_stops > 1, opts.saveat is not None
    has_dtmin, has_dtmax = opts.dtmin > 0.0, opts.dtmax is not None
    ark = isinstance(inner, ARKStepper)
    rosenbrock = isinstance(inner, RosenbrockStepper)
    if step is None:
        step = base.raw["fresh" if (ark or rosenbrock) else "step"]
    dt_i, ctl_i = (5, 4) if ark else (4, 5 if rosenbrock else 4)
    F = _user_f(inner.rhs)
    FE = _user_f(inner.rhs_e) if ark and inner.rhs_e is not None else None
    fsal = _fsal(inner)

    def merged_f0(p: Any, t: Tensor, u: Tensor, accepted: Tensor, out: tuple[Any, ...],
                  args: tuple[Any, ...]) -> tuple[Tensor | None, ...]:
        """``Stepper.accept``'s update of ``f(t, u)`` (and ARK's parts), masked by ``accepted``."""
        acc = accepted[:, None]
        if ark:
            fI0, fE0 = args[3], args[4]
            fI, fE = (out[8], out[9]) if fsal else (F(p, t, u), FE(p, t, u) if FE is not None else None)
            fI0 = torch.where(acc, fI, fI0)
            if fE is not None and fE0 is not None:
                fE0 = torch.where(acc, fE, fE0)
            return fI0, fE0, fI0 if fE0 is None else fI0 + fE0
        f_end = out[3] if rosenbrock else out[2]
        if not fsal or f_end is None:
            f_end = F(p, t, u)
        return None, None, torch.where(acc, f_end, args[3])

    def controlled_step(L: tuple[Tensor, ...], C: tuple[Tensor, ...], *args: Any) -> tuple[Any, ...]:
        t, dt, qold, active, seen, stop, status, fail_t, fail_dt, n_acc, n_att, sidx = L
        stops, last_stop, keyed, lims = C
        p, u = args[0], args[2]
        sd = u.dtype  # the step's dtype; the time's may be wider (float64 for one trajectory: see the docstring)
        target = stops[torch.minimum(stop, last_stop)]
        remaining = target - t
        at_stop = active & ((remaining <= dt * REACH) if direction > 0 else (remaining >= dt * REACH))
        last = at_stop & (stop == last_stop)
        dt_step = torch.where(at_stop, remaining, dt)
        out = step(p, t.to(sd), *args[2:dt_i], dt_step.to(sd), *args[dt_i + 1:])
        control = out[ctl_i]
        seen = seen | ~(control[:, 1] == 1.0)
        eest = control[:, 0].to(t.dtype)
        accepted = active & (eest <= 1.0)
        t_new = torch.where(accepted, torch.where(at_stop, target, t + dt_step), t)
        if multi_stop:
            stop = stop + (accepted & at_stop)
        u_out = torch.where(accepted[:, None], out[0], u)
        f0s = merged_f0(p, t_new.to(sd), u_out, accepted, out, args)
        n_acc = n_acc + accepted
        n_att = n_att + active
        active = active ^ (accepted & last)
        dt_new, qold = controller.propose(dt_step, eest, qold, accepted, order)
        if multi_stop:  # a step shortened to land on a tstop says nothing about the next one
            dt_new = torch.where(accepted & at_stop, direction * torch.maximum(dt_new.abs(), dt.abs()), dt_new)
        if has_dtmax:
            dt_new = direction * dt_new.abs().clamp(max=lims[1])
        failed = dt_new.abs() <= torch.finfo(t.dtype).eps * t_new.abs()
        if has_dtmin:
            failed = failed | (dt_new.abs() < lims[0])
        failed = failed & active
        dt = torch.where(active, dt_new, dt)
        status = torch.where(failed, torch.where(seen, UNSTABLE, DTMIN), status)
        fail_t = torch.where(failed, t_new, fail_t)
        fail_dt = torch.where(failed, dt_new, fail_dt)
        active = active & ~failed
        seen = seen & ~accepted
        zero = torch.zeros_like(stop)
        n_cross, n_inside = zero, zero
        if saving:  # save points passed: keyed (direction * saveat, sorted, padded with inf) up to direction * t
            key_t = (direction * t_new)[:, None]  # counts by comparison, as searchsorted on the sorted keys, but
            n_cross = ((keyed <= key_t).sum(1) - sidx).clamp(min=0) * accepted  # fused into the step's kernels
            n_inside = ((keyed < key_t).sum(1) - sidx).clamp(min=0) * accepted
        summary = torch.stack((active.any().long(), accepted.any().long(), n_cross.max(), n_inside.max()))
        state = (t_new, dt, qold, active, seen, stop, status, fail_t, fail_dt, n_acc, n_att, sidx + n_cross)
        return out, state, u_out, f0s, dt_step, n_cross, summary

    return controlled_step


class _CountedSaver(_Saver):
    """:class:`~.loop_saver._Saver` told by the program how many save points each trajectory's step passed."""

    def _track(self) -> None:
        """Nothing: the program counts the save points passed (``_Saver``'s next-save tracking is not used)."""

    def save_counted(self, most: int, inside: bool, n_cross: Tensor, idx: Tensor, t_prev: Tensor, t: Tensor,
                     dt: Tensor, u: Tensor, coeffs: Tensor | Callable[[], Tensor]) -> None:
        assert self.saveat is not None
        s = self.saveat.shape[0]
        bidx = torch.arange(u.shape[0], device=u.device)
        if inside and callable(coeffs):
            coeffs = coeffs()
        for j in range(most):
            ci = (idx + j).clamp(max=s - 1)
            ts = self.saveat[ci]
            if inside:
                assert not callable(coeffs)
                vals = torch.where((ts == t)[:, None], u, evaluate(coeffs, (ts - t_prev) / dt))
            else:
                vals = u
            keep = self.out[ci, bidx]
            self.out[ci, bidx] = torch.where((j < n_cross)[:, None], vals, keep)


def save_times(opts: LoopOptions, scalar: bool) -> list[float]:
    """The save times as the loop compares them: the scalar loop's Python floats (clamped onto ``tspan``,
    :func:`~.loop_records.save_time_list`) for one trajectory in float64 time, else ``saveat``'s values."""
    assert opts.saveat is not None
    return save_time_list(opts) if scalar else opts.saveat.tolist()


def initial_span(opts: LoopOptions, t: Tensor, scalar: bool) -> Tensor:
    """``t1 - t0`` ``(B,)`` in ``t``'s dtype (the state's), as the loop that keeps time hands it to
    :func:`~.controller.initial_dt`: the scalar loop's Python difference for one trajectory, else ``t1 - t``."""
    return torch.full_like(t, opts.t1 - opts.t0) if scalar else torch.full_like(t, opts.t1) - t


def _start(stepper: CompiledStepper, u0: Tensor, opts: LoopOptions, scalar: bool = False,
           eager_setup: bool = True, program: bool = True) -> tuple[Any, ...]:
    """The loop's first state ``L``, its constants ``C``, the per-step program (``None`` with ``program=False``:
    the whole loop, :mod:`.compiled_loop`, runs its own), the saver and the direction. ``scalar``:
    time in float64, as :func:`~.loop_scalar.integrate_single` keeps it (one trajectory, the whole loop).
    ``eager_setup=False``: ``f(t0, u0)`` and the first step size are left to the program (the whole loop's
    prologue, :mod:`.compiled_loop`): ``stepper.f0`` is not set and ``L``'s step size is a placeholder where
    ``opts.dt`` is ``None``."""
    bsz = u0.shape[0]
    dtype, device = u0.dtype, u0.device
    tdt = torch.float64 if scalar else dtype
    direction = 1.0 if opts.t1 > opts.t0 else -1.0
    if not eager_setup:
        dt = torch.full((bsz,), direction * abs(opts.dt) if opts.dt is not None else math.nan, dtype=tdt,
                        device=device)
    else:
        t = torch.full((bsz,), opts.t0, dtype=dtype, device=device)
        stepper.init(t, u0)
        assert stepper.f0 is not None
        if opts.dt is None:
            with torch.no_grad():
                dt = initial_dt(stepper.f_total, t, u0, stepper.f0, initial_span(opts, t, scalar), stepper.order,
                                opts.atol, opts.rtol).to(tdt)
        else:
            dt = torch.full((bsz,), direction * abs(opts.dt), dtype=tdt, device=device)
    t = torch.full((bsz,), opts.t0, dtype=tdt, device=device)  # not t.to(tdt): float32(t0) may differ from t0
    if opts.dtmax is not None:
        dt = direction * dt.abs().clamp(max=opts.dtmax)

    stop_list = [s for s in (opts.tstops or []) if direction * opts.t0 < direction * s < direction * opts.t1]
    n_stops = len(stop_list) + 1
    longs = partial(torch.zeros, bsz, dtype=torch.long, device=device)
    bools = partial(torch.zeros, bsz, dtype=torch.bool, device=device)
    keyed = torch.zeros(1, dtype=tdt, device=device)
    first = None
    if opts.saveat is not None:
        save_t = save_times(opts, scalar)
        if scalar:  # the points saved at t0 as the scalar loop finds them (a float32 save time may round past t0)
            first = next((i for i, s in enumerate(save_t) if s != opts.t0), len(save_t))
        keyed = _padded([direction * s for s in save_t], math.inf, tdt, device)
    saver = _CountedSaver(opts, u0, direction, first)
    C = (_padded([*stop_list, opts.t1], opts.t1, tdt, device), torch.full((1,), n_stops - 1, device=device), keyed,
         torch.tensor([opts.dtmin, opts.dtmax if opts.dtmax is not None else math.inf], dtype=tdt, device=device))
    L = (t, dt, torch.full_like(t, opts.controller.qoldinit), torch.ones(bsz, dtype=torch.bool, device=device),
         bools(), longs(), longs(), torch.zeros_like(t), torch.zeros_like(t), longs(), longs(),
         saver.idx if opts.saveat is not None else longs())
    return L, C, _fused_program(stepper, opts, direction, n_stops) if program else None, saver, direction


def _failed(stepper: CompiledStepper, exc: CompileFailure) -> None:
    warn_caller(f"compile=True: compiling the {stepper.name} step failed ({exc}); solving eagerly", RuntimeWarning)


def warm(stepper: Any, u0: Tensor, opts: LoopOptions) -> None:
    """Compile the batched loop's programs ahead of a solve (:func:`pysciml.warmup`): one step from ``u0`` per
    variant (Rosenbrock and ARK: with a fresh Jacobian, then reusing it), results discarded."""
    assert isinstance(stepper, CompiledStepper)
    L, C, prog, _, _ = _start(stepper, u0, opts)
    for _ in range(2 if isinstance(stepper.inner, (RosenbrockStepper, ARKStepper)) else 1):
        variant, args = stepper.program_args(L[0], u0, L[1])
        try:
            out = prog.run(variant, stepper.stats, L, C, *args)[0]
        except CompileFailure as exc:
            _failed(stepper, exc)
            break
        stepper.absorb(variant, out, L[0], u0, L[1])
    stepper._pending = None


def integrate_batched_compiled(stepper: Any, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult | None:
    """The adaptive batched loop with the control inside the compiled program (see the module docstring);
    ``stepper`` is a :class:`~.compiled.CompiledStepper` (:func:`handles`). ``None`` where the program fails to
    compile at the first step (one warning per signature): the caller runs the eager loops (:func:`_give_up`)."""
    assert isinstance(stepper, CompiledStepper)
    inner = stepper.inner
    u = u0
    before = dict(vars(stats))
    L, C, prog, saver, direction = _start(stepper, u0, opts)
    if prog.failed is not None:  # an earlier solve of the signature failed to compile it (and said why)
        return _give_up(stepper, stats, before)
    eager = False  # after a failed compile past the first step: the same function, uncompiled
    dense = DenseOutput(direction) if opts.dense else None
    f_evals = 0 if _fsal(inner) else 1 + (isinstance(inner, ARKStepper) and inner.rhs_e is not None)

    running = True
    while running:
        if stats.nloop >= opts.maxiters:
            t, dt, active = L[0], L[1], L[3]
            L = (*L[:6], torch.where(active, MAXITERS, L[6]), torch.where(active, t, L[7]),
                 torch.where(active, dt, L[8]), *L[9:])
            break
        stats.nloop += 1
        t = L[0]
        variant, args = stepper.program_args(t, u, L[1])
        if eager:
            result = prog.raw[variant](L, C, *args)
        else:
            try:
                result = prog.run(variant, stats, L, C, *args)
            except CompileFailure as exc:
                _failed(stepper, exc)
                if stats.nloop == before["nloop"] + 1:  # the first step: the eager loop from the start
                    stepper.program.failed = prog.failed  # the step alone would fail as well: not traced again
                    return _give_up(stepper, stats, before)
                eager = True
                result = prog.raw[variant](L, C, *args)
        out, state, u_new, (fI0, fE0, f0), dt_step, n_cross, summary = result
        res = stepper.absorb(variant, out, t, u, dt_step)
        running, any_accepted, most, inside = summary.tolist()  # the one host round trip of the step
        if any_accepted:  # Stepper.accept: f(t, u) where steps were accepted, a fresh Jacobian next
            stats.nf += f_evals
            inner.f0 = f0
            if isinstance(inner, ARKStepper):
                inner.fI0, inner.fE0 = fI0, fE0
            if isinstance(inner, (RosenbrockStepper, ARKStepper)):
                inner.fresh = False
        u_prev, u = u, u_new
        coeffs = None
        if dense is not None:
            coeffs = stepper.interpolant(u_prev, dt_step, res)
            dense.record(t, state[0], coeffs)
        if most:
            saver.save_counted(most, bool(inside), n_cross, L[11], t, state[0], dt_step, u,
                               coeffs if coeffs is not None else partial(stepper.interpolant, u_prev, dt_step, res))
        L = state

    return finish(stepper, L, saver, u, dense, stats)


def _give_up(stepper: CompiledStepper, stats: Stats, before: dict[str, Any]) -> None:
    """When the program fails to compile at the first step: the counters set back to ``before`` (as the solve found
    them) and the stepper marked eager, for the caller to run the eager loops with ``stepper.inner``
    (:func:`~.loop.integrate`). Not the program's functions run uncompiled: an ARK step's Newton iteration is a
    ``torch.while_loop``, which torch traces with Dynamo even outside a compile, so an ``f`` that failed to trace
    fails there too."""
    vars(stats).update(before)
    stepper.on_compile_failure()


def finish(stepper: CompiledStepper, L: tuple[Tensor, ...], saver: _CountedSaver, u: Tensor,
           dense: DenseOutput | None, stats: Stats) -> LoopResult:
    """The loop's result from its last state ``L``: return codes, failure points, counters, saved values."""
    t, dt, _, active, _, _, status, fail_t, fail_dt, n_acc, n_att, _ = L
    status = torch.where((status == RUNNING) & ~active, SUCCESS, status)
    return loop_result(stepper, status.tolist(), int(n_acc.sum()), int(n_att.sum()), fail_t, fail_dt, saver, u,
                       dense, stats, dt.abs())


def loop_result(stepper: CompiledStepper, raw: list[int], n_accepted: int, n_attempted: int,
                fail_t: Tensor | list[float], fail_dt: Tensor | list[float], saver: _CountedSaver, u: Tensor,
                dense: DenseOutput | None, stats: Stats, dt_next: Any) -> LoopResult:
    """:func:`finish`'s result from the final return codes ``raw`` (one per trajectory), the accepted and
    attempted steps of all trajectories and where each stopped (``fail_t``, ``fail_dt``: read only for failed
    trajectories); the whole loop (:mod:`.compiled_loop`) hands them as Python lists, read in one go."""
    stats.naccept += n_accepted
    stats.nreject += n_attempted - n_accepted
    if dense is not None:
        dense.finalize()
    codes: list[Any]
    infos: list[tuple[float, float] | None]
    if raw.count(SUCCESS) == len(raw):  # the common case: no per-trajectory lists built in Python
        codes, infos = [_CODES[SUCCESS]] * len(raw), [None] * len(raw)
    else:
        codes = [_CODES[s] for s in raw]
        ft = fail_t.tolist() if isinstance(fail_t, Tensor) else fail_t
        fdt = fail_dt.tolist() if isinstance(fail_dt, Tensor) else fail_dt
        infos = [None if c is _CODES[SUCCESS] else (float(a), float(b)) for c, a, b in zip(codes, ft, fdt, strict=True)]
    reason = describe(0, 0.0, stepper.name, stepper.stability_boundary)
    ts, us = saver.result(u)
    return LoopResult(t=ts, u=us, status=codes, fail_info=infos, reasons=[reason] * len(codes), dense=dense,
                      dt_next=dt_next)
