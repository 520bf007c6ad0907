"""The unbatched fast path of the integration loop: one trajectory, control logic on Python floats.

Same rules as :func:`pysciml.engine.loop.integrate` (the batched loop; ``tests/test_batch.py`` checks the two
agree), but time, step size, error norm and status are Python numbers, so a step costs only the stepper's
tensor work: this matters for small stiff systems, where per-step overhead dominates.
"""

from __future__ import annotations

import math
import sys
from functools import partial

import torch

from ..solution import ReturnCode, Stats
from .controller import initial_dt, scaled_error_norm
from .events import ScalarEvents
from .fixed_step_check import describe
from .interpolation import DenseOutput, evaluate
from .loop_records import LoopOptions, LoopResult, all_finite, fixed_step_count, save_time_list
from .progress import make_progress
from .stepper import Stepper

Tensor = torch.Tensor
EPS = sys.float_info.epsilon  # time is a Python float here: a step below EPS |t| no longer moves it


def integrate_single(stepper: Stepper, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult:
    """Integrate one trajectory ``u0`` (``(1, n)``) from ``opts.t0`` to ``opts.t1`` with ``stepper``."""
    n_fixed = fixed_step_count(opts) if not opts.adaptive else 0
    dtype, device = u0.dtype, u0.device
    direction = 1.0 if opts.t1 > opts.t0 else -1.0

    def vec(x: float) -> Tensor:
        return torch.full((1,), x, dtype=dtype, device=device)

    t, u = opts.t0, u0
    stepper.init(vec(t), u)
    assert stepper.f0 is not None
    if opts.adaptive and opts.dt is None:
        with torch.no_grad():  # step-size control is never differentiated
            dt = float(initial_dt(stepper.f_total, vec(t), u, stepper.f0, vec(opts.t1 - t), stepper.order,
                                  opts.atol, opts.rtol)[0])
    else:
        assert opts.dt is not None
        dt = direction * abs(opts.dt)
    if opts.dtmax is not None:
        dt = direction * min(abs(dt), opts.dtmax)
    qold = opts.controller.qoldinit
    root_n = math.sqrt(u0.shape[1])
    atol_n, rtol_n = opts.atol * root_n, opts.rtol * root_n
    code, fail, reason = ReturnCode.Success, None, ""
    nonfinite = False
    check = None if opts.adaptive else stepper.fixed_step_check(1, opts.atol, dtype, device)

    dense = DenseOutput(direction) if opts.dense else None
    saveat = opts.saveat
    save_t = save_time_list(opts)
    save_vals: list[Tensor] = [u0[0]]
    ts_every: list[float] = [opts.t0]
    idx = 0
    if saveat is not None:
        save_vals = []
        while idx < len(save_t) and save_t[idx] == opts.t0:
            save_vals.append(u0[0])
            idx += 1

    stops = [s for s in (opts.tstops or []) if direction * opts.t0 < direction * s < direction * opts.t1]
    stops.append(opts.t1)
    si = 0  # next stop: steps land exactly on each tstop (a kink or jump in f), the last one being t1
    bar = make_progress(opts.progress, opts.t0, opts.t1, stepper.name)
    hooks = opts.hooks  # optional per-step calls (engine/step_hooks.py): None for every solve() call
    events = None if opts.events is None else ScalarEvents(opts.events, stepper, t, u)  # None: no event work

    while True:
        if stats.nloop >= opts.maxiters:
            code, fail = ReturnCode.MaxIters, (t, dt)
            break
        stats.nloop += 1
        target = stops[si]
        remaining = target - t
        if opts.adaptive:
            at_stop = direction * remaining <= direction * dt * (1.0 + 1e-12)
        else:
            at_stop = stats.nloop >= n_fixed
        last = at_stop and si == len(stops) - 1
        dt_step = remaining if at_stop else dt
        dtv = vec(dt_step)
        if hooks is not None:
            hooks.attempt(t, u, dt_step, stepper)
        res = stepper.step(vec(t), u, dtv)
        if res.control is not None:  # a compiled step: error norm and checks in one transfer
            eest, finite, solved = res.control.tolist()[0]
            ok = finite == 1.0 and solved == 1.0
            nonfinite = nonfinite or finite != 1.0
        else:
            ok = all_finite(res.u_new.detach())
            nonfinite = nonfinite or not ok
            if res.ok is not None:
                ok = ok and bool(res.ok)
            eest = math.inf
            if ok and opts.adaptive:
                assert res.err is not None
                custom = None if hooks is None else hooks.error_norm(res.err.detach(), u.detach(), res.u_new.detach())
                eest = float(scaled_error_norm(res.err.detach(), u.detach(), res.u_new.detach(), atol_n, rtol_n)
                             ) if custom is None else custom
        if opts.adaptive:
            if not math.isfinite(eest):
                eest = math.inf
            accepted = eest <= 1.0
        else:
            eest, accepted = 0.0, ok

        t_prev, u_prev = t, u
        if accepted:
            t = target if at_stop else t + dt_step
            si += at_stop
            u = res.u_new
            stats.naccept += 1
        else:
            stats.nreject += 1
        stepper.accept(accepted, vec(t), u, res)
        if hooks is not None:
            hooks.after(accepted, t_prev, u_prev, dt_step, t, u, stepper)

        if check is not None and accepted and (check.due(stats.nloop) or last):
            f_start, f_end = stepper.check_fields(u_prev, res)
            kind, z = check.check_one(u_prev.detach(), u.detach(), f_start.detach(), f_end.detach(),
                                      dt_step, None if res.err is None else res.err.detach())
            if kind:
                code, fail = ReturnCode.Unstable, (t, dt_step)
                reason = describe(kind, z, stepper.name, stepper.stability_boundary)
                break
        if accepted:
            coeffs = hit = None
            if events is not None:  # an event acting in this step may cut it (engine/events.py)
                hit = events.after_step(t_prev, u_prev, t, u, dt_step, partial(stepper.interpolant, u_prev, dtv, res))
                if hit is not None:
                    t, u, coeffs = hit.t, hit.u_pre, hit.coeffs
                    if hit.theta < 1.0:
                        si, last, dt_step = si - at_stop, False, t - t_prev
                        dtv = vec(dt_step)
            # the interpolant only for dense output or a save time strictly inside the step (one at its end is u)
            inside = idx < len(save_t) and direction * save_t[idx] < direction * t
            if coeffs is None and (dense is not None or inside):
                coeffs = stepper.interpolant(u_prev, dtv, res)
            if dense is not None:
                assert coeffs is not None
                dense.record(vec(t_prev), vec(t), coeffs)
            if saveat is None and (hit is None or hit.save_pre):
                ts_every.append(t)
                save_vals.append(u[0])
            if bar is not None:
                bar.update(t)
            while idx < len(save_t) and direction * save_t[idx] <= direction * t:
                ts = save_t[idx]
                if ts == t:
                    val = u[0]
                else:
                    assert coeffs is not None
                    val = evaluate(coeffs, vec((ts - t_prev) / dt_step))[0]
                save_vals.append(val)
                idx += 1
            if hit is not None:
                if hit.terminal:
                    code = ReturnCode.Terminated
                    break
                u = hit.u_post  # the stepper restarted there (events.after_step)
                if saveat is None and hit.save_post:
                    ts_every.append(t)
                    save_vals.append(u[0])
            if last:
                break

        if opts.adaptive:
            dt_new, qold = opts.controller.propose_scalar(dt_step, eest, qold, accepted, stepper.order)
            if accepted and at_stop:  # a step shortened to land on a tstop says nothing about the next one
                dt_new = direction * max(abs(dt_new), abs(dt))
            if opts.dtmax is not None:
                dt_new = direction * min(abs(dt_new), opts.dtmax)
            if abs(dt_new) < opts.dtmin or abs(dt_new) <= EPS * abs(t):
                code = ReturnCode.Unstable if nonfinite else ReturnCode.DtLessThanMin
                fail = (t, dt_new)
                break
            if accepted:
                nonfinite = False
            dt = dt_new
        elif not accepted:
            code = ReturnCode.Unstable if nonfinite else ReturnCode.ConvergenceFailure
            fail = (t, dt_step)
            break

    if bar is not None:
        bar.close()
    if dense is not None:
        dense.finalize()
    n = u0.shape[1]
    if saveat is None:
        t_out = torch.tensor(ts_every, dtype=dtype, device=device)
        u_out = torch.stack(save_vals)[:, None, :]
    else:
        missing = len(save_t) - len(save_vals)
        if code is ReturnCode.Terminated:  # the save times before the event, then the event
            saveat = torch.cat((saveat[:len(save_vals)], vec(t)))
            save_vals.append(u[0])
        elif missing:
            save_vals += [torch.full((n,), float("nan"), dtype=dtype, device=device)] * missing
        t_out, u_out = saveat, torch.stack(save_vals)[:, None, :]
    return LoopResult(t=t_out, u=u_out, status=[code], fail_info=[fail], reasons=[reason], dense=dense,
                      dt_next=abs(dt), events=None if events is None else events.record)
