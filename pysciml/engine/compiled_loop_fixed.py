"""The whole fixed-step loop of an explicit Runge-Kutta method as one compiled program (``torch.while_loop``).

It runs a solve that :func:`handles` accepts: ``compile=True``, fixed steps (``dt``, ``adaptive=False``) of an explicit
Runge-Kutta method whose interpolant needs no extra stages, saving at fixed times (``saveat``) without dense output,
the progress bar, hooks or events, not differentiated, in float64 (one trajectory or a batch). Before it, such a
solve ran the per-step program inside the eager fixed-step loop, one host round trip per step (RK4 on Van der Pol:
109 us CPU per step eager, 90 us so, 11.2 us as this program; docs/guide/compile.md). Each iteration does what an
iteration of the eager loops does (:func:`~.loop.integrate_batched`, and :func:`~.loop_scalar.integrate_single` for
one trajectory):

* the step times: ``n`` steps of ``dt`` (:func:`~.loop_records.fixed_step_count`), the last one ending on ``t1``
  (its size ``t1 - t``), all trajectories in lock step;
* the step: the family's step as compiled (:mod:`.compiled`), ``f`` at the step's end merged where it was accepted
  (the last stage of an FSAL tableau, else one more call, as the eager stepper's ``accept``);
* the save points the step passed, on its interpolant (the tableau's dense output, else the cubic Hermite one; the
  step's end value where a point is the step's end);
* the fixed-step stability check (:mod:`.fixed_step_check`, its arithmetic :meth:`~.fixed_step_check.FixedStepCheck.
  update`, the state carried by the loop) at the steps :meth:`~.fixed_step_check.FixedStepCheck.due` says and on the
  last step: a
  trajectory it flags ends ``Unstable`` with the eager reason; one whose state turns non-finite ``Unstable`` too. One
  trajectory keeps the scalar loop's order (the flagged step's save points are not written), a batch the batched
  loop's (they are);
* the counters: ``nf``, ``naccept``, ``nreject`` and ``nloop`` as the eager loops count them.

``ENABLED = False`` keeps these solves on the per-step program. A loop program that fails to compile falls back to it
(one warning per signature).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from ..solution import Stats
from .compiled import CompiledStepper, _Program, _user_f
from .compiled_control import _fsal, _padded, save_times
from .compiled_parts import tracks_grad
from .explicit_rk import ExplicitRKStepper
from .fixed_step_check import NONE, FixedStepCheck, describe
from .interpolation import evaluate, hermite_coefficients, polynomial_coefficients
from .loop_records import LoopOptions, LoopResult, fixed_step_count
from .loop_saver import _CODES, MAXITERS, RUNNING, SUCCESS, UNSTABLE, _Saver

__all__ = ["ENABLED", "handles", "integrate_whole", "warm"]

Tensor = torch.Tensor

ENABLED = True
"""Fixed-step explicit-RK solves through the whole-loop program (the default); ``False``: the per-step program."""

def handles(stepper: Any, opts: LoopOptions, u0: Tensor) -> bool:
    """Whether :func:`integrate_whole` runs this solve (see the module docstring)."""
    if not ENABLED or not isinstance(stepper, CompiledStepper) or not stepper.compiled:
        return False
    inner = stepper.inner
    return (isinstance(inner, ExplicitRKStepper) and not inner.tab.extra_c and not opts.adaptive
            and opts.dt is not None and opts.saveat is not None and not opts.dense and not opts.progress
            and not opts.save_everystep and opts.hooks is None and opts.events is None
            and u0.dtype == torch.float64 and not u0.requires_grad and not tracks_grad(stepper.rhs, u0)
            and inner.checks_fixed_steps)


def _program(stepper: CompiledStepper, check: FixedStepCheck, scalar: bool, direction: float,
             interior: bool) -> _Program:
    """The loop program of this stepper's signature (cached on its step program); ``interior``: some save time
    lies strictly inside the span (else a step's save points are its end: no interpolant is made)."""
    base, inner = stepper.program, stepper.inner
    key = ("fixed", scalar, direction, check.limit, check.every, check.first, interior)
    prog = base.fused.get(key)
    if prog is not None:
        return prog
    step, F, D, fsal = base.raw["step"], _user_f(inner.rhs), inner.dense_matrix, _fsal(inner)

    def fixed_loop(p: Any, u: Tensor, f0: Tensor, t: Tensor, dt: Tensor, t1: Tensor, counts: Tensor,
                   saveat: Tensor, out: Tensor, sidx: Tensor, atol_n: Tensor, rtol_n: Tensor,
                   prev_dd: Tensor, atol_norm: Tensor) -> tuple[Tensor, ...]:
        """``counts``: ``(2,)`` long, the steps and the most loop iterations; ``saveat``: the save times padded
        with ``direction * inf``, in the time's dtype; ``out``: the ``(S, B, n)`` save buffer; ``sidx``: each
        trajectory's next save point; ``prev_dd``: the check's first state; ``atol_norm``: its ``|atol|`` per
        trajectory (the check object is the first solve's: only its constants are read)."""
        rows = torch.arange(saveat.shape[0], device=u.device)[:, None]
        keyed = direction * saveat
        bsz = u.shape[0]
        longs = torch.zeros(bsz, dtype=torch.long, device=u.device)

        def more(k: Tensor, n_any: Tensor, t: Tensor, u: Tensor, f0: Tensor, out: Tensor, sidx: Tensor,
                 active: Tensor, *rest: Tensor) -> Tensor:
            return (k < counts[1]) & active.any()  # (counts indexed here: a view made outside aliases an input)

        def body(k: Tensor, n_any: Tensor, t: Tensor, u: Tensor, f0: Tensor, out: Tensor, sidx: Tensor,
                 active: Tensor, status: Tensor, fail_t: Tensor, fail_dt: Tensor, kind: Tensor, z: Tensor,
                 prev_dd: Tensor, streak: Tensor, n_acc: Tensor, n_att: Tensor) -> tuple[Tensor, ...]:
            k = k + 1
            last = active & (k >= counts[0])
            dt_step = torch.where(last, t1 - t, dt)
            u_new, err, f_end, ks, control, _ = step(p, t, u, f0, dt_step, atol_n, rtol_n)
            accepted = active & (control[:, 1] == 1.0)
            t_new = torch.where(accepted, torch.where(last, t1, t + dt_step), t)
            u_out = torch.where(accepted[:, None], u_new, u)
            if not fsal or f_end is None:
                f_end = F(p, t_new, u_out)
            f0_new = torch.where(accepted[:, None], f_end, f0)
            # the check, where it is due (its state changes only then, for every trajectory, as eagerly)
            due = check.scheduled(k) | (k >= counts[0])
            kind_now, z_now, dd, streak_now = check.update(prev_dd, streak, u, u_new, f0, f0_new, dt_step, err,
                                                           atol_norm)
            prev_dd = torch.where(due, dd, prev_dd)
            streak = torch.where(due, streak_now, streak)
            flagged = accepted & due & (kind_now > NONE)
            # save points passed (one trajectory: not those of a flagged step, as the scalar loop breaks first)
            saving = accepted & ~flagged if scalar else accepted
            n_cross = ((keyed <= (direction * t_new)[:, None]).sum(1) - sidx).clamp(min=0) * saving
            passed = (rows >= sidx) & (rows < sidx + n_cross)  # (S, B)
            vals = u_new
            if interior:
                coeffs = polynomial_coefficients(u, D, ks * dt_step[:, None]) if D is not None else \
                    hermite_coefficients(u, u_new, f0, f0_new, dt_step)
                theta = torch.where(passed, (saveat[:, None] - t) / dt_step, 0.0)
                vals = torch.where((saveat[:, None] == t_new)[..., None], u_new, evaluate(coeffs, theta))
            out = torch.where(passed[..., None], vals, out)
            sidx = sidx + n_cross
            # the step's end: finished, flagged and non-finite trajectories stop
            failed = active & ~accepted  # a non-finite state: Unstable (fixed steps have no other failure)
            stop = flagged | failed
            status = torch.where(stop, UNSTABLE, status)
            fail_t = torch.where(stop, t_new, fail_t)  # t_new = t where the step was not accepted
            fail_dt = torch.where(stop, dt_step, fail_dt)
            kind = torch.where(flagged, kind_now, kind)
            z = torch.where(flagged, z_now, z)
            n_acc = n_acc + accepted
            n_att = n_att + active
            n_any = n_any + accepted.any().long()
            active = active & ~(accepted & last) & ~flagged & ~failed
            return (k, n_any, t_new, u_out, f0_new, out, sidx, active, status, fail_t, fail_dt, kind, z, prev_dd,
                    streak, n_acc, n_att)

        zero = torch.zeros((), dtype=torch.long, device=u.device)
        active = torch.ones(bsz, dtype=torch.bool, device=u.device)
        return tuple(while_loop(more, body, (zero, zero.clone(), t, u, f0, out, sidx, active, longs.clone(),
                                             torch.zeros_like(t), torch.zeros_like(t), longs.clone(),
                                             torch.zeros_like(prev_dd), prev_dd, longs.clone(), longs.clone(),
                                             longs.clone())))

    prog = _Program(f"{base.tag}x{len(base.fused)}")
    prog.add("loop", fixed_loop, per_solve=True)
    base.fused[key] = prog
    return prog


def _inputs(stepper: CompiledStepper, u0: Tensor, opts: LoopOptions, steps: int) -> tuple[Any, ...]:
    """The loop program, its arguments (at most ``steps`` loop iterations), the saver and the check."""
    assert opts.saveat is not None and opts.dt is not None
    bsz, scalar = u0.shape[0], u0.shape[0] == 1
    dtype, device = u0.dtype, u0.device
    direction = 1.0 if opts.t1 > opts.t0 else -1.0
    check = stepper.fixed_step_check(bsz, opts.atol, dtype, device)
    save_t = save_times(opts, scalar)
    prog = _program(stepper, check, scalar, direction, any(s != opts.t0 and s != opts.t1 for s in save_t))
    t = torch.full((bsz,), opts.t0, dtype=dtype, device=device)
    stepper.init(t, u0)  # f(t0, u0), eagerly (f's first-call checks)
    first = next((i for i, s in enumerate(save_t) if s != opts.t0), len(save_t))
    saveat = _padded(save_t, direction * math.inf, dtype, device)  # padding: never passed (direction * inf)
    out = torch.cat((u0[None].expand(first, *u0.shape),
                     torch.full((saveat.shape[0] - first, *u0.shape), math.nan, dtype=dtype, device=device)))
    saver = _Saver(opts, u0, direction, first, out[: len(save_t)])
    counts = torch.tensor([fixed_step_count(opts), steps], dtype=torch.long, device=device)
    args = (stepper.rhs.p, u0, stepper.f0, t, torch.full_like(t, direction * abs(opts.dt)),
            torch.full_like(t, opts.t1), counts, saveat, out, torch.full((bsz,), first, dtype=torch.long,
                                                                              device=device),
            stepper.atol_n, stepper.rtol_n, check.prev_dd, check.atol_norm)
    return prog, args, saver


def _run(stepper: CompiledStepper, prog: _Program, stats: Stats, args: tuple[Any, ...]) -> tuple[Tensor, ...] | None:
    """The program's outputs, or ``None`` where it does not compile (:meth:`_Program.attempt`)."""
    return prog.attempt("loop", stats, *args, what=f"the whole fixed-step {stepper.name} loop as one program",
                        instead="running the per-step compiled programs")


def integrate_whole(stepper: CompiledStepper, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult | None:
    """The solve as one loop program (see the module docstring); ``None`` (``stats`` as they were, one warning per
    signature) when it fails to compile, for the caller's per-step loops."""
    before = dict(vars(stats))
    prog, args, saver = _inputs(stepper, u0, opts, opts.maxiters - stats.nloop)
    outs = _run(stepper, prog, stats, args)
    if outs is None:
        vars(stats).update(before)
        return None
    k, n_any, t, u, f0, out, _, active, status, fail_t, fail_dt, kind, z, _, _, n_acc, n_att = outs
    inner = stepper.inner
    assert isinstance(inner, ExplicitRKStepper)
    steps, with_acceptance = int(k), int(n_any)
    stats.nloop += steps
    stats.nf += (inner.tab.stages - 1) * steps + (0 if _fsal(inner) else 1) * with_acceptance
    inner.f0 = f0
    # still active: the loop ran out of iterations (MaxIters at the trajectory's t and dt, as eagerly)
    status = torch.where(active, MAXITERS, torch.where(status == RUNNING, SUCCESS, status))
    fail_t = torch.where(active, t, fail_t)
    fail_dt = torch.where(active, args[4], fail_dt)
    n_accepted = int(n_acc.sum())
    stats.naccept += n_accepted
    stats.nreject += int(n_att.sum()) - n_accepted
    codes = [_CODES[s] for s in status.tolist()]
    infos = [None if c is _CODES[SUCCESS] else (float(a), float(b))
             for c, a, b in zip(codes, fail_t.tolist(), fail_dt.tolist(), strict=True)]
    reasons = [describe(kk, zz, stepper.name, stepper.stability_boundary)
               for kk, zz in zip(kind.tolist(), z.tolist(), strict=True)]
    saver.out = out[: opts.saveat.shape[0]]
    ts, us = saver.result(u)
    return LoopResult(t=ts, u=us, status=codes, fail_info=infos, reasons=reasons, dense=None,
                      dt_next=abs(opts.dt) if u0.shape[0] == 1 else torch.full_like(t, abs(opts.dt)))


def warm(stepper: CompiledStepper, u0: Tensor, opts: LoopOptions) -> bool:
    """Compile the loop program ahead of a solve (:func:`pysciml.warmup`): one step, discarded; ``False`` (one
    warning) when it fails to compile."""
    prog, args, _ = _inputs(stepper, u0, opts, 1)
    return _run(stepper, prog, stepper.stats, args) is not None
