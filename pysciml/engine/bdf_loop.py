"""The integration loop of the multistep BDF/NDF methods (:mod:`.bdf`): the same :class:`LoopOptions` in and
:class:`LoopResult` out as the one-step loops (:mod:`.loop`), with the step-size and order rules of a
variable-order multistep method.

Rules (Shampine & Reichelt 1997, Sec. 2; the same as SciPy's ``BDF`` and MATLAB's ``ode15s``):

* start at order 1 with Hairer & Wanner's initial step (:func:`.controller.initial_dt`, order 1);
* a step whose Newton iteration fails (after one fresh Jacobian) is retried with half the step; a step whose
  error estimate exceeds 1 is retried with ``max(0.2, safety err^(-1/(k+1)))`` times the step, ``safety = 0.9
  (2 m + 1) / (2 m + iters)`` for ``m`` Newton iterations at most;
* after two error-test failures in a row the order drops by one, after three to order 1 (CVODE's rule; without
  it the estimate of orders >= 2 need not vanish as the step shrinks on a DAE's switch, as on the transistor
  amplifier, and the step collapsed);
* after ``k + 1`` accepted steps of one size the order moves by at most one (to the order allowing the largest
  step) and the step grows by at most 10x;
* steps land on ``tstops`` and ``t1`` by rescaling the differences; after a shortened step at a ``tstop`` the
  step returns to its previous size (at most 10x);
* a proposed step below ``dtmin`` or ``eps |t|`` ends the solve with ``DtLessThanMin`` (``Unstable`` when the
  last failures were NaN/Inf), ``maxiters`` loop iterations with ``MaxIters``.

Fixed steps (``adaptive=False``) run at order ``max_order`` throughout: the first ``max_order`` steps are taken by a
one-step starter (Rodas5P, order 5, supplied by the caller), whose values start the differences; a Newton failure
ends the solve with ``ConvergenceFailure``. A batch shares the step size and the order (error norm: the largest over
the batch), so its trajectories take the same steps.
"""

from __future__ import annotations

import math
import sys

import torch

from ..solution import ReturnCode, Stats
from .bdf import MAX_FACTOR, MIN_FACTOR, BDFMethod
from .controller import initial_dt
from .interpolation import DenseOutput, evaluate
from .loop_records import LoopOptions, LoopResult, save_time_list
from .progress import make_progress
from .stepper import Stepper

Tensor = torch.Tensor
EPS = sys.float_info.epsilon


class _Recorder:
    """Save points (every step, or ``saveat`` from the step's interpolant) and the dense output."""

    def __init__(self, opts: LoopOptions, u0: Tensor, direction: float) -> None:
        self.direction = direction
        self.every = opts.saveat is None
        self.save_t = save_time_list(opts)
        self.saveat = opts.saveat
        self.dense = DenseOutput(direction) if opts.dense else None
        self.ts: list[float] = [opts.t0]
        self.vals: list[Tensor] = [u0]
        self.idx = 0
        if not self.every:
            self.vals = []
            while self.idx < len(self.save_t) and self.save_t[self.idx] == opts.t0:
                self.vals.append(u0)
                self.idx += 1

    def needs_coeffs(self, t: float) -> bool:
        """Whether the step ending at ``t`` must be interpolated (dense output, or a save time inside it)."""
        return self.dense is not None or (
            self.idx < len(self.save_t) and self.direction * self.save_t[self.idx] < self.direction * t)

    def record(self, t_prev: float, t: float, u: Tensor, coeffs: Tensor | None) -> None:
        bsz = u.shape[0]
        if self.dense is not None:
            assert coeffs is not None
            self.dense.record(u.new_full((bsz,), t_prev), u.new_full((bsz,), t), coeffs)
        if self.every:
            self.ts.append(t)
            self.vals.append(u)
            return
        d = self.direction
        while self.idx < len(self.save_t) and d * self.save_t[self.idx] <= d * t:
            ts = self.save_t[self.idx]
            if ts == t:
                self.vals.append(u)
            else:
                assert coeffs is not None
                self.vals.append(evaluate(coeffs, u.new_full((bsz,), (ts - t_prev) / (t - t_prev))))
            self.idx += 1

    def result(self, u0: Tensor, code: ReturnCode, fail: tuple[float, float] | None, reason: str,
               dt_next: float) -> LoopResult:
        if self.dense is not None:
            self.dense.finalize()
        bsz = u0.shape[0]
        if self.every:
            t_out = torch.tensor(self.ts, dtype=u0.dtype, device=u0.device)
        else:
            assert self.saveat is not None
            t_out = self.saveat
            missing = len(self.save_t) - len(self.vals)
            self.vals += [torch.full_like(u0, float("nan"))] * missing
        u_out = torch.stack(self.vals)
        dt_out: float | Tensor = dt_next if bsz == 1 else u0.new_full((bsz,), dt_next)
        return LoopResult(t=t_out, u=u_out, status=[code] * bsz, fail_info=[fail] * bsz, reasons=[reason] * bsz,
                          dense=self.dense, dt_next=dt_out)


def first_step(method: BDFMethod, u0: Tensor, opts: LoopOptions, direction: float) -> tuple[Tensor, float]:
    """Start ``method`` at ``opts.t0`` from ``u0`` (``(B, n)``) and choose the first step of an adaptive solve
    without ``dt``: Hairer & Wanner's initial step for order 1, the smallest over the batch, signed by
    ``direction``. Returns the start state (a DAE's algebraic components made consistent) and the step."""
    vec = u0.new_full((u0.shape[0],), opts.t0)
    slope = method.start(vec, u0)
    u = method.state
    with torch.no_grad():
        f_slope = (lambda tt, uu: method.slope(tt, uu, method.rhs(tt, uu))) if method.mass is not None \
            else method.rhs
        h0 = initial_dt(f_slope, vec, u.detach(), slope.detach(), vec.new_full(vec.shape, opts.t1 - opts.t0), 1,
                        opts.atol, opts.rtol)
    return u, direction * float(h0.abs().min())


def integrate_bdf(method: BDFMethod, u0: Tensor, opts: LoopOptions, stats: Stats, *, name: str,
                  starter: Stepper | None = None) -> LoopResult:
    """Integrate ``u0`` (``(B, n)``) from ``opts.t0`` to ``opts.t1`` with ``method``.

    ``starter`` (fixed steps only): the one-step method whose first ``method.max_order`` steps start the
    differences."""
    bsz = u0.shape[0]
    direction = 1.0 if opts.t1 > opts.t0 else -1.0

    def vec(x: float) -> Tensor:
        return u0.new_full((bsz,), x)

    t, u = opts.t0, u0
    use_starter = not opts.adaptive and starter is not None and method.max_order > 1
    if opts.adaptive and opts.dt is None:
        u, h = first_step(method, u, opts, direction)
    else:
        assert opts.dt is not None
        h = direction * abs(opts.dt)
        if not use_starter:
            method.start(vec(t), u)
            u = method.state
    if opts.dtmax is not None:
        h = direction * min(abs(h), opts.dtmax)
    if not use_starter:
        method.rescale(h)

    rec = _Recorder(opts, u, direction)
    bar = make_progress(opts.progress, opts.t0, opts.t1, name)
    stops = [s for s in (opts.tstops or []) if direction * opts.t0 < direction * s < direction * opts.t1]
    stops.append(opts.t1)
    si = 0
    code, fail, reason = ReturnCode.Success, None, ""
    nonfinite, n_fail = False, 0  # n_fail: error-test failures in a row
    n_equal = 0
    slack = 1e-12 if opts.adaptive else 1e-9

    if use_starter:
        assert starter is not None
        t, u, state = _start_fixed(method, starter, u0, opts, stats, rec, h, direction, bar)
        if state != "running":
            _close(bar)
            failed = state == "failed"
            return rec.result(u0, ReturnCode.ConvergenceFailure if failed else ReturnCode.Success,
                              (t, h) if failed else None, f"the {starter.name} start step failed" if failed else "",
                              abs(h))

    while True:
        if stats.nloop >= opts.maxiters:
            code, fail = ReturnCode.MaxIters, (t, h)
            break
        stats.nloop += 1
        target = stops[si]
        remaining = target - t
        at_stop = direction * remaining <= direction * h * (1.0 + slack)
        h_before = h
        if at_stop and remaining != h:
            method.rescale(remaining / h)
            h, n_equal = remaining, 0
        t_new = target if at_stop else t + h
        converged, y_new, d, iters, finite = method.attempt(vec(t_new), h)
        nonfinite = nonfinite or not finite
        err = 0.0
        if converged and opts.adaptive:
            err = method.error_norm(d, y_new)
            if not math.isfinite(err):
                err, nonfinite = math.inf, True
        if not converged or err > 1.0:
            stats.nreject += bsz  # summed over the trajectories (Stats), which share the step
            if not converged:
                stats.nnonlinconvfail += 1
            if not opts.adaptive:
                code = ReturnCode.Unstable if nonfinite else ReturnCode.ConvergenceFailure
                fail = (t, h)
                reason = "Newton did not converge"
                break
            if converged:
                factor = max(MIN_FACTOR, method.safety(iters) * err ** (-1.0 / (method.order + 1))) \
                    if err < math.inf else MIN_FACTOR
                n_fail += 1
                if n_fail >= 2:  # repeated error-test failures: lower the order (CVODE's rule; order 1 at the third)
                    method.order = 1 if n_fail >= 3 else max(1, method.order - 1)
            else:
                factor = 0.5
            if _too_small(h * factor, t, opts):
                code = ReturnCode.Unstable if nonfinite else ReturnCode.DtLessThanMin
                fail = (t, h * factor)
                break
            method.rescale(factor)
            h, n_equal = h * factor, 0
            continue

        stats.naccept += bsz
        nonfinite, n_fail = False, 0
        method.accept(d)
        t_prev, t, u = t, t_new, y_new
        si += at_stop
        n_equal += 1
        last = at_stop and si == len(stops)
        coeffs = method.interpolant() if rec.needs_coeffs(t) else None
        rec.record(t_prev, t, u, coeffs)
        if bar is not None:
            bar.update(t)
        if last:
            break
        if not opts.adaptive:
            continue
        factor, n_equal = method.next_factor(y_new, err, iters, n_equal)
        if at_stop and h != h_before:  # a step shortened to land on a tstop: back to the size before it
            factor *= min(MAX_FACTOR, h_before / h)
        if opts.dtmax is not None and abs(h * factor) > opts.dtmax:
            factor = opts.dtmax / abs(h)
        if factor != 1.0:
            if _too_small(h * factor, t, opts):
                code, fail = ReturnCode.DtLessThanMin, (t, h * factor)
                break
            method.rescale(factor)
            h, n_equal = h * factor, 0

    _close(bar)
    return rec.result(u0, code, fail, reason, abs(h))


def _too_small(h: float, t: float, opts: LoopOptions) -> bool:
    return abs(h) < opts.dtmin or abs(h) <= EPS * abs(t)


def _close(bar: object) -> None:
    if bar is not None:
        bar.close()  # type: ignore[attr-defined]


def _start_fixed(method: BDFMethod, starter: Stepper, u0: Tensor, opts: LoopOptions, stats: Stats,
                 rec: _Recorder, h: float, direction: float, bar: object
                 ) -> tuple[float, Tensor, str]:
    """The first ``max_order`` fixed steps by ``starter``; returns ``(t, u, state)``, ``state`` one of ``"running"``
    (the differences of order ``max_order`` set from the starter's values), ``"done"`` (``t1`` reached),
    ``"failed"`` (a starter step failed at ``t``)."""
    bsz = u0.shape[0]

    def vec(x: float) -> Tensor:
        return u0.new_full((bsz,), x)

    t, u = opts.t0, u0
    points, times = [u0], [t]
    starter.init(vec(t), u)
    for _ in range(method.max_order):
        stats.nloop += 1
        remaining = opts.t1 - t
        last = direction * remaining <= direction * h * (1.0 + 1e-9)
        dt = remaining if last else h
        res = starter.step(vec(t), u, vec(dt))
        if res.ok is not None and not bool(res.ok.all()) or not bool(torch.isfinite(res.u_new.detach()).all()):
            stats.nreject += bsz
            return t, u, "failed"
        stats.naccept += bsz
        t_prev, u_prev = t, u
        t, u = (opts.t1 if last else t + dt), res.u_new
        starter.accept(True, vec(t), u, res)
        coeffs = starter.interpolant(u_prev, vec(dt), res) if rec.needs_coeffs(t) else None
        rec.record(t_prev, t, u, coeffs)
        if bar is not None:
            bar.update(t)  # type: ignore[attr-defined]
        if last:
            return t, u, "done"
        points.append(u)
        times.append(t)
    method.start(vec(t), u)
    method.set_history(points, times)
    return t, u, "running"
