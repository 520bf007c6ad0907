"""The integration loop shared by every method family: :func:`integrate` picks the single-trajectory loop
(:mod:`.loop_scalar`, control on Python floats) or the batched one here (:func:`integrate_batched`).

Both follow the same rules, and ``tests/test_loop.py`` runs every stub test on both. In a batch each trajectory
has its own time, step size, error norm, accept/reject decision, next ``tstop`` and status; a finished or failed
trajectory stops changing while the others go on, so a batched solve gives the same numbers as a loop of single
solves. The loops own saving (``saveat`` answered by each step's interpolant, never by shortening steps; steps
land on ``tstops``), dense-output recording, step control, the progress bar and the numerical-failure return
codes.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from ..solution import ReturnCode, Stats
from . import compiled_control, compiled_loop, compiled_loop_firk, compiled_loop_fixed, compiled_symplectic
from .controller import initial_dt, scaled_error_norm
from .events import BatchEvents, rescale
from .fixed_step_check import describe
from .interpolation import DenseOutput
from .loop_records import LoopOptions, LoopResult, finite_rows, fixed_step_count
from .loop_saver import _CODES, CONVFAIL, DTMIN, MAXITERS, RUNNING, SUCCESS, TERMINATED, UNSTABLE, _Saver
from .loop_scalar import integrate_single
from .progress import make_progress
from .stepper import Stepper

Tensor = torch.Tensor



def integrate(stepper: Stepper, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult:
    """Integrate ``u0`` (``(B, n)``) from ``opts.t0`` to ``opts.t1`` with ``stepper``: one trajectory
    (``B == 1``) on the scalar loop, a batch on :func:`integrate_batched`."""
    if compiled_loop.handles_whole(stepper, opts, u0):  # the whole loop as one compiled program
        result = compiled_loop.integrate_batched_whole(stepper, u0, opts, stats)
        if result is not None:
            return result
        stepper = stepper.inner  # no program compiles (an f Dynamo cannot trace): the eager loops
    if compiled_loop_firk.handles(stepper, opts, u0):  # the FIRK family's whole loop (None: it failed to compile)
        result = compiled_loop_firk.integrate_whole(stepper, u0, opts, stats)
        if result is not None:
            return result
    if compiled_loop_fixed.handles(stepper, opts, u0):  # fixed explicit-RK steps (None: it failed to compile)
        result = compiled_loop_fixed.integrate_whole(stepper, u0, opts, stats)
        if result is not None:
            return result
    result = compiled_symplectic.whole_loop(stepper, u0, opts, stats)  # a fixed-step splitting loop program
    if result is not None:
        return result
    if u0.shape[0] == 1:
        return integrate_single(stepper, u0, opts, stats)
    if compiled_control.handles(stepper, opts):  # compiled steps with the control inside the program
        result = compiled_control.integrate_batched_compiled(stepper, u0, opts, stats)
        if result is not None:
            return result
        stepper = stepper.inner
    return integrate_batched(stepper, u0, opts, stats)


def integrate_batched(stepper: Stepper, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult:
    """The loop with tensor control: ``t``, ``dt``, error norms and statuses are ``(B,)`` tensors."""
    bsz = u0.shape[0]
    n_fixed = fixed_step_count(opts) if not opts.adaptive else 0
    dtype, device = u0.dtype, u0.device
    direction = 1.0 if opts.t1 > opts.t0 else -1.0
    t = torch.full((bsz,), opts.t0, dtype=dtype, device=device)
    t1 = torch.full_like(t, opts.t1)
    u = u0
    stepper.init(t, u)
    assert stepper.f0 is not None

    if opts.adaptive and opts.dt is None:
        with torch.no_grad():  # step-size control is never differentiated
            dt = initial_dt(stepper.f_total, t, u, stepper.f0, t1 - t, stepper.order, opts.atol, opts.rtol)
    else:
        assert opts.dt is not None
        dt = torch.full_like(t, direction * abs(opts.dt))
    if opts.dtmax is not None:
        dt = direction * dt.abs().clamp(max=opts.dtmax)
    qold = torch.full_like(t, opts.controller.qoldinit)
    status = torch.zeros(bsz, dtype=torch.long, device=device)
    # Per-step work is a few dozen tiny tensor ops: each is written to cost as few dispatches as possible
    # (no host syncs besides the loop test and the save test, counters summed at the end).
    active = torch.ones(bsz, dtype=torch.bool, device=device)
    nonfinite_seen = torch.zeros(bsz, dtype=torch.bool, device=device)
    n_accepted = torch.zeros(bsz, dtype=torch.long, device=device)
    n_attempted = torch.zeros(bsz, dtype=torch.long, device=device)
    fail_t = torch.zeros_like(t)
    fail_dt = torch.zeros_like(t)
    inf = torch.full_like(t, math.inf)
    root_n = math.sqrt(u0.shape[1])
    atol_n, rtol_n = opts.atol * root_n, opts.rtol * root_n
    reach = 1.0 + 1e-12  # a step within this factor of the remaining span ends on t1

    eps_t = torch.finfo(dtype).eps  # time has the state's dtype here: a step below eps |t| no longer moves it
    check = None if opts.adaptive else stepper.fixed_step_check(bsz, opts.atol, dtype, device)
    fail_kind = torch.zeros(bsz, dtype=torch.long, device=device)
    fail_z = torch.zeros_like(t)

    dense = DenseOutput(direction) if opts.dense else None
    saver = _Saver(opts, u0, direction)
    # steps land on each tstop, the last stop being t1; `stop` is each trajectory's next one
    stop_list = [s for s in (opts.tstops or []) if direction * opts.t0 < direction * s < direction * opts.t1]
    n_stops = len(stop_list) + 1
    stops = torch.tensor([*stop_list, opts.t1], dtype=dtype, device=device)
    stop = torch.zeros(bsz, dtype=torch.long, device=device)
    target = t1
    bar = make_progress(opts.progress, opts.t0, opts.t1, stepper.name)
    events = None if opts.events is None else BatchEvents(opts.events, stepper, t, u)  # None: no event work

    while bool(active.any()):
        if stats.nloop >= opts.maxiters:
            fail_t = torch.where(active, t, fail_t)
            fail_dt = torch.where(active, dt, fail_dt)
            status = torch.where(active, MAXITERS, status)
            break
        stats.nloop += 1
        if n_stops > 1:
            target = stops[stop.clamp(max=n_stops - 1)]
        remaining = target - t
        if opts.adaptive:
            at_stop = active & ((remaining <= dt * reach) if direction > 0 else (remaining >= dt * reach))
            last = at_stop & (stop == n_stops - 1) if n_stops > 1 else at_stop
        else:
            last = at_stop = active if stats.nloop >= n_fixed else torch.zeros_like(active)
        dt_step = torch.where(at_stop, remaining, dt)
        res = stepper.step(t, u, dt_step)

        u_new = _nograd(res.u_new)
        control = res.control  # a compiled step computed the checks and the error norm
        finite = finite_rows(u_new) if control is None else control[:, 1] == 1.0
        seen = nonfinite_seen | ~finite
        ok = finite if res.ok is None else finite & res.ok
        if opts.adaptive:
            assert res.err is not None
            if control is None:
                eest = scaled_error_norm(_nograd(res.err), _nograd(u), u_new, atol_n, rtol_n)
                eest = torch.where(ok, eest, inf).nan_to_num_(nan=math.inf, posinf=math.inf)
            else:
                eest = control[:, 0]
            accepted = active & (eest <= 1.0)
        else:
            eest = None
            accepted = active & ok

        t_prev, u_prev = t, u
        t = torch.where(accepted, torch.where(at_stop, target, t + dt_step), t)
        if n_stops > 1:
            stop = stop + (accepted & at_stop)
        u = torch.where(accepted[:, None], res.u_new, u)
        stepper.accept(accepted, t, u, res)
        n_accepted += accepted
        n_attempted += active

        coeffs = hit = None
        if events is not None:  # events acting in this step cut it, change u or end trajectories (engine/events.py)
            hit = events.after_step(accepted, t_prev, u_prev, t, u, dt_step,
                                    partial(stepper.interpolant, u_prev, dt_step, res))
            if hit is not None:
                t, u, coeffs = hit.t, hit.u_pre, hit.coeffs
                stop = stop - (hit.cut & at_stop).long()
                last = last & ~hit.cut & ~hit.terminal
        if dense is not None:
            coeffs = stepper.interpolant(u_prev, dt_step, res) if coeffs is None else coeffs
            dense.record(t_prev, t, coeffs if hit is None else rescale(coeffs, hit.ratio))
        if saver.everystep or saver.wants(accepted, t):
            saver.save(accepted, t_prev, t, dt_step, u,
                       coeffs if coeffs is not None else partial(stepper.interpolant, u_prev, dt_step, res))
        if hit is not None:
            u = hit.u_post
            status = torch.where(hit.terminal, TERMINATED, status)
            active = active & ~hit.terminal

        active = active ^ (accepted & last)  # finished trajectories stop (their status is set at the end)
        if bar is not None:
            bar.update(t, active)
        if opts.adaptive:
            assert eest is not None
            dt_new, qold = opts.controller.propose(dt_step, eest, qold, accepted, stepper.order)
            if n_stops > 1:  # a step shortened to land on a tstop says nothing about the next one
                dt_new = torch.where(accepted & at_stop, direction * torch.maximum(dt_new.abs(), dt.abs()), dt_new)
            if opts.dtmax is not None:
                dt_new = direction * dt_new.abs().clamp(max=opts.dtmax)
            failed = dt_new.abs() <= eps_t * t.abs()
            if opts.dtmin > 0.0:
                failed = failed | (dt_new.abs() < opts.dtmin)
            failed = failed & active
            dt = torch.where(active, dt_new, dt)
            fail_code, fail_step = DTMIN, dt_new
        else:
            failed = active & ~ok
            fail_code, fail_step = CONVFAIL, dt_step
            if check is not None and (check.due(stats.nloop) or stats.nloop >= n_fixed):
                f_start, f_end = stepper.check_fields(u_prev, res)
                kind, z = check.check(_nograd(u_prev), u_new, _nograd(f_start), _nograd(f_end), dt_step,
                                      None if res.err is None else _nograd(res.err))
                flagged = accepted & (kind > 0)
                fail_kind, fail_z = torch.where(flagged, kind, fail_kind), torch.where(flagged, z, fail_z)
                status = torch.where(flagged, UNSTABLE, status)
                fail_t = torch.where(flagged, t, fail_t)
                fail_dt = torch.where(flagged, dt_step, fail_dt)
                active = active & ~flagged
        if bool(failed.any()):
            code = torch.where(seen, UNSTABLE, fail_code)
            status = torch.where(failed, code, status)
            fail_t = torch.where(failed, t, fail_t)
            fail_dt = torch.where(failed, fail_step, fail_dt)
            active = active & ~failed
        nonfinite_seen = seen & ~accepted

    if bar is not None:
        bar.close()
    status = torch.where((status == RUNNING) & ~active, SUCCESS, status)
    stats.naccept += int(n_accepted.sum())
    stats.nreject += int(n_attempted.sum()) - int(n_accepted.sum())
    if dense is not None:
        dense.finalize()
    codes = [_CODES[int(s)] for s in status.tolist()]
    infos: list[tuple[float, float] | None] = [
        None if c is ReturnCode.Success else (float(a), float(b))
        for c, a, b in zip(codes, fail_t.tolist(), fail_dt.tolist(), strict=True)
    ]
    reasons = [describe(k, z, stepper.name, stepper.stability_boundary)
               for k, z in zip(fail_kind.tolist(), fail_z.tolist(), strict=True)]
    ts, us = saver.result(u)
    return LoopResult(t=ts, u=us, status=codes, fail_info=infos, reasons=reasons, dense=dense, dt_next=dt.abs(),
                      events=None if events is None else events.record)


def _nograd(x: Tensor) -> Tensor:
    return x.detach() if x.requires_grad else x
