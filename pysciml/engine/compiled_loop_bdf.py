"""The whole adaptive FBDF loop as one compiled program (``solve(prob, FBDF(), compile=True)``).

:func:`~.bdf_loop.integrate_bdf` with :class:`~.bdf_flc.FLCMethod`, traced into one ``torch.while_loop`` per
signature: each iteration is one loop iteration of the eager solve (clip the step onto the next stop, predict,
Newton with the reused Jacobian and factorization, :mod:`.compiled_bdf_step`; the error test, the reject rules with
CVODE's order drops, the acceptance into the history, the save points passed, the next order and step by the FLC
rules), or the second try of one with a fresh Jacobian after Newton failed with an old one (the step's carries kept,
``nloop`` not counted: :func:`.compiled_bdf_rules.hold`), with everything the eager loop keeps on the host carried
as tensors: the time, step, stop and save indices, the counts of equal steps and of failures in a row, the order,
the past times and values (a fixed ``HISTORY``-long array and its fill), the Jacobian, the LU factors and the ``c``
they were made with, the Jacobian's freshness, Newton's rate estimate, the return code and the ``sol.stats``
counters. The Jacobian and the factorization (``while_loop`` calls of zero or one iteration) are computed only where
the eager method computes them, so a solve makes the eager solve's ``njac`` and ``nlu``, not one per step. What runs
before the program is the eager solve's own start: the consistent initial value, ``f(t0, u0)``, the first Jacobian
and the initial step (:meth:`~.bdf_flc.FLCMethod.start`, :func:`~.controller.initial_dt`).

The rules that do not depend on the method's form (the stops, the error test, the rejections, the save points,
the next step or the end) and the start are :mod:`.compiled_bdf_rules`, shared with QNDF's and QBDF's program
(:mod:`.compiled_bdf_qndf`, the quasi-constant form), which this module dispatches to.

Covered: FBDF, QNDF and QBDF (dense LU, autodiff or supplied Jacobian, a constant mass matrix, so far checked with
the program run uncompiled only, or none), float64 and float32 (times, steps and every step-size decision in
float64, as the eager loop's Python floats; FBDF's past times as it reads them back from the state's dtype), one
trajectory or a batch (which shares the step and the order, as the eager loop), adaptive steps, saving at
``saveat`` (values inside a step from its interpolating polynomial), saving every step and dense output (the
accepted steps recorded in a buffer the host empties when full, running the program on: :mod:`.compiled_bdf_record`),
``tstops``, ``dtmin``/``dtmax``, ``maxiters``. Everything else (fixed steps, the progress bar, sparse or GMRES
linear solvers, finite-difference Jacobians, gradients) runs the eager loop after one warning that says why
(:func:`unsupported`); a program that fails to compile does too (one warning per signature). Values are the eager
solve's to round-off (the weights' last bits differ, :mod:`.compiled_bdf_step`), counters equal where no decision
sits at its threshold (``tests/test_compiled_loop_bdf.py``, ``tests/test_compiled_loop_qndf.py``). In float32 the
program's autodiff Jacobian (forward mode) rounds differently from the eager one (reverse mode), which can move a
decision (run uncompiled with a supplied ``jac`` the counters are the eager ones); compiled, inductor's float32
arithmetic can too (FBDF on ROBER at ``rtol = 1e-4``: 84 loop iterations against 89, the end values 2.7 tolerance
units apart; QNDF there took the eager steps).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from ..errors import warn_caller
from ..solution import Stats
from . import compiled_bdf_qndf as qndf
from . import compiled_bdf_record as record
from . import compiled_bdf_rules as rules
from . import compiled_bdf_step as step
from .bdf import MAX_FACTOR, MIN_FACTOR, BDFMethod
from .bdf_flc import HISTORY, KEEP, FLCMethod
from .compiled_parts import (
    CompileFailure,
    _Program,
    _user_f,
    cached_program,
    jacobian_fn,
    note_fresh_f,
    python_lifted_backend,
    tracks_grad,
)
from .interpolation import evaluate
from .linsolve import DenseLUSolver
from .loop_records import LoopOptions, LoopResult
from .loop_saver import _CODES, MAXITERS, SUCCESS

__all__ = ["integrate", "unsupported", "warm"]

Tensor = torch.Tensor
T64 = torch.float64
COUNTERS = ("njac", "nlu", "nnonliniter", "nf", "nsolve", "naccept", "nreject", "nnonlinconvfail")
"""The ``Stats`` fields the program counts (its ``counts`` carry, in this order)."""

OUT = 16
"""Where the save array sits in FBDF's carry (after :func:`.compiled_bdf_rules.loop_head`'s 12 and ``nhist, ts, ys,
u``); QNDF's is :data:`.compiled_bdf_qndf.OUT`."""


def unsupported(method: Any, opts: LoopOptions, u0: Tensor) -> str | None:
    """Why this BDF solve has no compiled program (``None``: :func:`integrate` runs it)."""
    if not isinstance(method.linsolve, DenseLUSolver):
        return "only the dense LU linear solver is compiled (not sparse LU or GMRES)"
    if method.rhs.user_jac is None and not method.rhs.autodiff:
        return "finite-difference Jacobians (autodiff=False) are not compiled; give the problem a jac"
    if not opts.adaptive:
        return "fixed steps are not compiled"
    if opts.progress or opts.hooks is not None or opts.events is not None:
        return "the progress bar, step hooks and callbacks are not compiled"
    if u0.requires_grad or tracks_grad(method.rhs, u0):
        return "differentiated solves are not compiled"
    return None


def _program(method: BDFMethod, bsz: int, direction: float, interior: bool, rec: record.Plan | None) -> _Program:
    """The loop program of this signature (cached with the other compiled programs): FBDF's, or QNDF's/QBDF's
    (:mod:`.compiled_bdf_qndf`, keyed by their ``kappa``)."""
    rhs = method.rhs
    form = "FBDF-loop" if isinstance(method, FLCMethod) else ("QNDF-loop", method.coef.error_const)
    signature = (form, bsz, rhs.shape, rhs.batched, rhs.dtype, str(rhs.device), method.mass is not None,
                 rhs.takes_p, rhs.jac_takes_p, method.max_order, method.max_iters, direction, interior, rec)
    key = (*signature, id(rhs.f), id(rhs.user_jac))

    def make(tag: str) -> _Program:
        note_fresh_f(rhs.f, signature)
        prog = _Program(tag)
        # a recording loop on inductor's Python wrapper (compiled_bdf_record's docstring says why)
        prog.add("loop", _loop_fn(method, direction, interior, rec) if isinstance(method, FLCMethod) else
                 qndf.loop_fn(method, direction, interior, rec), python_lifted_backend if rec is not None else None,
                 per_solve=True)
        return prog

    return cached_program(key, make, "bdf")


def _loop_fn(method: FLCMethod, direction: float, interior: bool, rec: record.Plan | None) -> Any:
    F, jacobian = _user_f(method.rhs), jacobian_fn(method.rhs)
    K, max_order, max_iters = method.max_order, method.max_order, method.max_iters
    m = max_iters
    d = direction

    def bdf_loop(p: Any, slope0: Tensor, C: tuple[Any, ...], X: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        atol, rtol, tol, stops, n_stops, keys, saveat, maxiters, dtmin, dtmax, mass, alphas, a_s = C
        more = rules.running(maxiters, rec, OUT)

        def body(nloop: Tensor, t: Tensor, h: Tensor, si: Tensor, n_equal: Tensor, n_fail: Tensor,
                 nonfinite: Tensor, running: Tensor, status: Tensor, fail_t: Tensor, fail_h: Tensor, order: Tensor,
                 nhist: Tensor, ts: Tensor, ys: Tensor, u: Tensor, out: Tensor, sidx: Tensor,
                 *S: Tensor) -> tuple[Tensor, ...]:
            bsz = u.shape[0]
            R, S = (S[:rec.size], S[rec.size:]) if rec is not None else ((), S)
            # ---- the step onto the next stop (integrate_bdf)
            h_before, n_equal_in = h, n_equal
            at_stop, h, n_equal, t_new = rules.onto_stop(stops, si, t, h, n_equal, d)
            # ---- FLCMethod.predict
            alpha = step.pick(alphas, order)
            first = nhist == 1
            t_hist = t_new.to(u.dtype).to(T64)  # FLCMethod keeps its times as read back from the state's dtype
            dist = t_hist - ts[: K + 1]
            ell, dell = step.lagrange(-dist / h, order, K)
            head = ys[: K + 1]
            y_pred = torch.where(first, ys[0] + h * slope0, torch.tensordot(ell.to(u.dtype), head, dims=1))
            psi = torch.where(first, (h / alpha) * slope0, torch.tensordot((dell / alpha).to(u.dtype), head, dims=1))
            lead = step.stacked((h, 2.0 * h, *[torch.ones_like(h)] * (K - 1)))
            dist = torch.where(first, lead, dist)
            c = h / alpha
            before = (nloop, t, h_before, si, n_equal_in, n_fail, nonfinite, running, status, fail_t, fail_h, order,
                      nhist)
            conv, retry, y_new, dd, iters, finite, *S = step.attempt(
                F, jacobian, p, t_new.to(u.dtype).expand(bsz), y_pred, psi, c, mass, atol, rtol, tol, max_iters,
                tuple(S))
            nonfinite = nonfinite | ~finite
            # ---- the error test, and the rules after a rejection
            scale = atol + rtol * y_new.abs()
            err, accept, nonfinite = rules.error_test(
                step.rms_max(step.error_constant(dist, h, order, a_s) * dd, scale), conv, nonfinite)
            safety = rules.safety(iters, m)
            f_rej, n_fail_r, order_r = rules.on_reject(err, conv, order, n_fail, safety)
            # ---- accepted: the history, the stop index, the save points passed (FLCMethod.accept, _Recorder)
            ts_a = step.pushed(t_hist, ts)
            ys_a = step.pushed(y_pred + dd, ys)
            nhist_a = torch.clamp(nhist + 1, max=HISTORY)
            si_a = si + at_stop.long()
            last = at_stop & (si_a == n_stops)
            n_equal_a = n_equal + 1
            # the step's polynomial, made once for the save points inside it and for the dense output
            coeffs = step.coefficients(ts_a, ys_a, order, nhist_a, K) \
                if interior or (rec is not None and rec.dense) else None
            inside = None
            if interior:
                assert coeffs is not None
                inside = evaluate(coeffs, rules.theta(saveat, t, t_new, bsz).to(u.dtype))
            out, sidx = rules.save(out, sidx, keys, saveat, t, t_new, accept, y_new, inside, d)
            if rec is not None:
                R = record.write(rec, R, accept, t, t_new, torch.minimum(order, nhist_a - 1), y_new, coeffs)
            # ---- FLCMethod.next_factor
            k = order
            raw_k = torch.where(err > 0, err.pow(-1.0 / (k + 1).to(h.dtype)), math.inf)
            early = n_equal_a < k + 1
            early_f = torch.where(raw_k >= 1.0, 1.0, torch.clamp(safety * raw_k, min=MIN_FACTOR))
            early_n = torch.where(raw_k >= 1.0, n_equal_a, 0)
            e_m = step.order_error(ts_a, ys_a, nhist_a, torch.clamp(k - 1, min=1), scale, a_s)
            e_p = step.order_error(ts_a, ys_a, nhist_a, torch.clamp(k + 1, max=max_order), scale, a_s)
            raw_m = torch.where(k > 1, torch.where(e_m > 0, e_m.pow(-1.0 / k.to(h.dtype)), math.inf), -math.inf)
            raw_p = torch.where(k < max_order, torch.where(e_p > 0, e_p.pow(-1.0 / (k + 2).to(h.dtype)), math.inf),
                                -math.inf)
            to_m = (raw_m > raw_k) & (raw_m >= raw_p)
            to_p = (raw_p > raw_k) & (raw_p > raw_m)
            best = torch.where(to_m, k - 1, torch.where(to_p, k + 1, k))
            raw_b = torch.where(to_m, raw_m, torch.where(to_p, raw_p, raw_k))
            grow = safety * raw_b
            hold = (raw_b >= 1.0) & (grow < KEEP)
            late_f = torch.where(hold, 1.0, torch.clamp(grow, min=MIN_FACTOR, max=MAX_FACTOR))
            late_n = torch.where(hold & (best == k), n_equal_a, 0)
            f_acc = torch.where(early, early_f, late_f)
            n_acc = torch.where(early, early_n, late_n)
            order_a = torch.where(early | last, k, best)
            # ---- the next step, or the end
            _, moved, h_next, status, fail_t, fail_h, running, counts = rules.next_or_end(
                accept, conv, last, at_stop, f_acc, f_rej, t, t_new, h, h_before, nonfinite, dtmin, dtmax, status,
                fail_t, fail_h, running, S[-1], bsz)
            J, lu, piv, inverse, c_lu, jac_stale, jac_current, eta = S[:8]
            jac_current = jac_current & ~accept
            head = rules.hold(retry, before, (
                nloop + 1, torch.where(accept, t_new, t), h_next, torch.where(accept, si_a, si),
                torch.where(accept & ~moved, n_acc, 0), torch.where(accept, 0, n_fail_r), nonfinite & ~accept,
                running, status, fail_t, fail_h, torch.where(accept, order_a, order_r),
                torch.where(accept, nhist_a, nhist)))
            # (on a retry accept is False: the history, the state and the save points stay as they were)
            return (*head, torch.where(accept, ts_a, ts), torch.where(accept, ys_a, ys),
                    torch.where(accept, y_new, u), out, sidx, *R, J, lu, piv, inverse, c_lu, jac_stale, jac_current,
                    eta, torch.where(retry, S[-1], counts))

        return step.packed_while_loop(more, body, tuple(X), while_loop)  # its 18 (19) scalars as one carry

    return bdf_loop


def _start(method: FLCMethod, u0: Tensor, opts: LoopOptions, rec: record.Plan | None) -> tuple[Any, ...]:
    """The eager solve's start (:func:`.compiled_bdf_rules.start`) and the program's inputs: ``(p, slope0, C, X,
    direction, save_t)``."""
    s = rules.start(method, u0, opts, len(COUNTERS))
    bsz, n = u0.shape
    dtype, device = u0.dtype, u0.device
    K, cf = method.max_order, method.coef
    a_s = torch.tensor([-sum(1.0 / j for j in range(1, q + 1)) for q in range(HISTORY)], dtype=T64, device=device)
    alphas = torch.tensor([cf.alpha[min(q, K)] for q in range(HISTORY)], dtype=T64, device=device)
    ts = torch.zeros(HISTORY, dtype=T64, device=device)
    ts[0] = u0.new_tensor(opts.t0).to(T64)  # as FLCMethod.start reads it back
    ys = torch.zeros(HISTORY, bsz, n, dtype=dtype, device=device)
    ys[0] = s.u.detach()
    long = torch.zeros((), dtype=torch.long, device=device)
    R = record.carries(rec, bsz, n, dtype, device) if rec is not None else ()
    X = (*rules.loop_head(opts.t0, s.h, method.order, device), long + 1, ts, ys, s.u.detach().clone(), s.out,
         long + s.first, *R, *s.newton)
    assert method.slope0 is not None
    return method.rhs.p, method.slope0.detach(), (*s.shared, alphas, a_s), X, s.direction, s.save_t


def _name(method: BDFMethod) -> str:
    return "FBDF" if isinstance(method, FLCMethod) else "QNDF/QBDF"


def _run(method: BDFMethod, u0: Tensor, opts: LoopOptions, stats: Stats, steps: int | None = None
         ) -> tuple[Any, ...] | None:
    """The program from the eager start, ``steps`` iterations at most, run on after every full record buffer
    (:mod:`.compiled_bdf_record`); ``(X, save_t, drain)`` (``drain``: the recorded steps, ``None`` without
    recording), or ``None`` after a failed compile (one warning per signature; ``stats`` as they were)."""
    before = dict(vars(stats))  # the counters, restored on a failed compile (as compiled_loop.run_whole)
    t_setup = time.perf_counter()
    flc = isinstance(method, FLCMethod)
    rec = record.plan(opts, method.max_order, *u0.shape)
    if flc:
        p, slope0, C, X, direction, save_t = _start(method, u0, opts, rec)
        args: tuple[Any, ...] = (p, slope0)
    else:
        p, C, X, direction, save_t = qndf.start(method, u0, opts, len(COUNTERS), rec)
        args = (p,)
    out_at = OUT if flc else qndf.OUT
    drain = record.Drain(rec, direction, opts.t0, X[out_at - 1]) if rec is not None else None
    interior = any(s not in (opts.t0, opts.t1) for s in save_t)
    prog = _program(method, u0.shape[0], direction, interior, rec)
    setup = time.perf_counter() - t_setup
    if steps is not None:
        C = (*C[:7], C[7] * 0 + steps, *C[8:])  # maxiters (compiled_bdf_rules.Start.shared)
    if prog.failed is not None:  # failed to compile before (_Program.failed): solved eagerly, silently
        return None
    try:
        X = prog.run("loop", stats, *args, C, X)
        while drain is not None and drain.take(X[out_at + 2:out_at + 2 + drain.p.size]) and bool(X[7]):
            X = prog.run("loop", stats, *args, C, record.reset(X, out_at + 2))  # the buffer was full: run on
    except CompileFailure as exc:  # remembered on the program by _Program.run (prog.failed)
        warn_caller(f"compile=True: compiling the {_name(method)} loop failed ({exc}); solving eagerly", RuntimeWarning)
        vars(stats).update(before)
        return None
    if stats.compile_time > before["compile_time"]:
        stats.compile_time += setup
    return X, save_t, drain


def integrate(method: BDFMethod, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult | None:
    """The FBDF solve as one compiled program (see the module docstring; :func:`unsupported` must be ``None``);
    ``None`` after a failed compile, for the eager loop."""
    ran = _run(method, u0, opts, stats)
    if ran is None:
        return None
    X, save_t, drain = ran
    nloop, t, h, _, _, _, _, running, status, fail_t, fail_h, *_ = X
    out, counts = X[OUT if isinstance(method, FLCMethod) else qndf.OUT], X[-1]
    stats.nloop += int(nloop)
    for name, value in zip(COUNTERS, counts.tolist(), strict=True):
        setattr(stats, name, getattr(stats, name) + value)
    code = int(status)
    fail: tuple[float, float] | None = None
    if bool(running):  # stopped on maxiters
        code, fail = MAXITERS, (float(t), float(h))
    elif code != SUCCESS:
        fail = (float(fail_t), float(fail_h))
    bsz = u0.shape[0]
    rc = _CODES[code]
    dt_next: float | Tensor = abs(float(h)) if bsz == 1 else u0.new_full((bsz,), abs(float(h)))
    if opts.saveat is None:
        assert drain is not None
        t_out, u_out = drain.saved()
    else:
        t_out, u_out = opts.saveat, out[: len(save_t)]
    dense = drain.dense if drain is not None else None
    if dense is not None:
        dense.finalize()
    return LoopResult(t=t_out, u=u_out, status=[rc] * bsz, fail_info=[fail] * bsz, reasons=[""] * bsz, dense=dense,
                      dt_next=dt_next)


def warm(method: BDFMethod, u0: Tensor, opts: LoopOptions, stats: Stats) -> bool:
    """Compile the program ahead of a solve (:func:`pysciml.warmup`): one step from ``u0``, discarded; ``False``
    when it failed to compile (one warning)."""
    return _run(method, u0, opts, stats, steps=1) is not None
