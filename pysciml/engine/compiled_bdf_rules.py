"""The loop rules both compiled BDF programs share (FBDF's :mod:`.compiled_loop_bdf`, QNDF's and QBDF's
:mod:`.compiled_bdf_qndf`): :func:`~.bdf_loop.integrate_bdf`'s rules that do not depend on the method's form, as
traceable tensor code on 0-d tensors (landing on the next stop, the error test, the reject rules with CVODE's order
drops, the save points passed, the next step or the end of the solve), and the inputs both programs start from
(:func:`start`): the eager solve's own start, the save and stop times, the Newton state.

Times, steps and every step-size decision are float64 0-d tensors whatever the state's dtype, as the eager loop
keeps them in Python floats; error norms come back from :func:`~.compiled_bdf_step.rms_max` in float64 too.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import compiled_bdf_step as step
from .bdf import MAX_FACTOR, MIN_FACTOR, BDFMethod
from .bdf_loop import first_step
from .linsolve import DenseLUSolver
from .loop_records import LoopOptions, save_time_list
from .loop_saver import DTMIN, RUNNING, SUCCESS, UNSTABLE

__all__ = ["Start", "error_test", "hold", "loop_head", "next_or_end", "on_reject", "onto_stop", "running", "safety",
           "save", "start", "theta"]

Tensor = torch.Tensor
EPS = sys.float_info.epsilon
T64 = torch.float64


def running(maxiters: Tensor, rec: Any, out_at: int) -> Callable[..., Tensor]:
    """Both loop programs' condition on their carries ``X``: the solve runs (``X[7]``), below ``maxiters`` loop
    iterations (``X[0]``), with room in the record buffer where it records (its count at ``X[out_at + 2]``)."""
    def more(*X: Tensor) -> Tensor:
        go = X[7] & (X[0] < maxiters)
        return go if rec is None else go & (X[out_at + 2] < rec.cap)

    return more


def onto_stop(stops: Tensor, si: Tensor, t: Tensor, h: Tensor, n_equal: Tensor, d: float
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The step onto the next stop: ``(at_stop, h, n_equal, t_new)``, the step shortened to land on the stop (and
    the count of equal steps restarted) when it would reach it within ``1e-12`` relative."""
    target = step.pick(stops, si)
    remaining = target - t
    at_stop = d * remaining <= d * h * (1.0 + 1e-12)
    clip = at_stop & (remaining != h)
    h = torch.where(clip, remaining, h)
    return at_stop, h, torch.where(clip, 0, n_equal), torch.where(at_stop, target, t + h)


def safety(iters: Tensor, max_iters: int) -> Tensor:
    """:meth:`~.bdf.BDFMethod.safety` of ``iters`` Newton iterations (float64), divided as the eager Python floats
    are (``float / tensor`` would multiply by the reciprocal: 0.81 for 0.8099999999999999 at 4 and 2 iterations)."""
    m = max_iters
    denom = 2 * m + iters.to(T64)
    return torch.full_like(denom, 0.9 * (2 * m + 1)) / denom


def error_test(err: Tensor, conv: Tensor, nonfinite: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(err, accept, nonfinite)``: the error estimate (0 after a failed Newton, ``inf`` when not finite), whether
    the attempt is accepted, and the non-finite flag updated."""
    err = torch.where(conv, err, 0.0)
    bad = conv & ~torch.isfinite(err)
    return torch.where(bad, math.inf, err), conv & (err <= 1.0), nonfinite | bad


def on_reject(err: Tensor, conv: Tensor, order: Tensor, n_fail: Tensor, safe: Tensor
              ) -> tuple[Tensor, Tensor, Tensor]:
    """After a rejected attempt: ``(factor, n_fail, order)``: half the step after a failed Newton, else ``max(0.2,
    safety err^(-1/(k+1)))`` with the error-test failures counted and the order dropped by one after two in a row,
    to 1 after three."""
    f_rej = torch.where(conv, torch.where(err < math.inf, torch.clamp(
        safe * err.pow(-1.0 / (order + 1).to(T64)), min=MIN_FACTOR), MIN_FACTOR), 0.5)
    n_fail = n_fail + conv.long()
    order = torch.where(conv & (n_fail >= 2), torch.where(n_fail >= 3, 1, torch.clamp(order - 1, min=1)), order)
    return f_rej, n_fail, order


def save(out: Tensor, sidx: Tensor, keys: Tensor, saveat: Tensor, t: Tensor, t_new: Tensor, accept: Tensor,
         y_new: Tensor, inside: Tensor | None, d: float) -> tuple[Tensor, Tensor]:
    """The save points an accepted step to ``t_new`` passed: ``y_new`` at ``t_new``, else ``inside`` (``(S, B, n)``,
    the step's interpolant at every save time; ``None``: no save time lies inside a step). Returns ``(out,
    sidx)``."""
    rows = torch.arange(saveat.shape[0], device=saveat.device)[:, None]
    passed = (rows >= sidx) & (keys[:, None] <= d * t_new) & accept
    if inside is None:
        vals = y_new.expand(saveat.shape[0], -1, -1)
    else:
        vals = torch.where((saveat == t_new)[:, None, None], y_new, inside)
    return torch.where(passed[..., None], vals, out), sidx + passed.sum()


def theta(saveat: Tensor, t: Tensor, t_new: Tensor, bsz: int) -> Tensor:
    """The save times as fractions of the step from ``t`` to ``t_new``, ``(S, B)`` (float64)."""
    return ((saveat - t) / (t_new - t))[:, None].expand(-1, bsz)


def next_or_end(accept: Tensor, conv: Tensor, last: Tensor, at_stop: Tensor, f_acc: Tensor, f_rej: Tensor,
                t: Tensor, t_new: Tensor, h: Tensor, h_before: Tensor, nonfinite: Tensor, dtmin: Tensor,
                dtmax: Tensor, status: Tensor, fail_t: Tensor, fail_h: Tensor, running: Tensor, counts: Tensor,
                bsz: int) -> tuple[Tensor, ...]:
    """The next step or the end of the solve after the attempt of ``h`` to ``t_new``: back to the size before a step
    shortened onto a stop, capped by ``dtmax``, ended by a step below ``dtmin`` or ``eps |t|``, by reaching
    ``t1``. ``f_acc``/``f_rej``: the factors the method's rules chose after an accepted/rejected attempt. Returns
    ``(factor, moved, h_next, status, fail_t, fail_h, running, counts)``: ``moved`` where the step changes by
    ``factor`` (the differences of the quasi-constant form are re-expressed then), ``counts`` with ``naccept`` and
    ``nreject`` (``bsz`` each: summed over the trajectories, as :class:`~.solution.Stats`) and ``nnonlinconvfail``,
    the last three of :data:`~.compiled_loop_bdf.COUNTERS`, updated."""
    f_acc = torch.where(at_stop & (h != h_before), f_acc * torch.clamp(h_before / h, max=MAX_FACTOR), f_acc)
    f_acc = torch.where((h * f_acc).abs() > dtmax, dtmax / h.abs(), f_acc)
    change = f_acc != 1.0
    factor = torch.where(accept, f_acc, f_rej)
    h_cand = h * factor
    t_ref = torch.where(accept, t_new, t)
    tiny = (h_cand.abs() < dtmin) | (h_cand.abs() <= EPS * t_ref.abs())
    fail_now = torch.where(accept, ~last & change & tiny, tiny)
    code = torch.where(accept | ~nonfinite, DTMIN, UNSTABLE)
    moved = ~fail_now & ~(accept & (last | ~change))
    ended = accept & last
    zero = torch.zeros_like(accept, dtype=counts.dtype)
    counts = counts + step.stacked((*[zero] * 5, accept.long() * bsz, (~accept).long() * bsz, (~conv).long()))
    return (factor, moved, torch.where(moved, h_cand, h), torch.where(ended, SUCCESS, torch.where(fail_now, code,
            status)), torch.where(fail_now, t_ref, fail_t), torch.where(fail_now, h_cand, fail_h),
            running & ~ended & ~fail_now, counts)


def hold(retry: Tensor, before: tuple[Tensor, ...], after: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The carries ``after`` the attempt, or ``before`` it where the attempt is tried again with a fresh Jacobian
    (:func:`~.compiled_bdf_step.attempt`'s ``retry``): the next loop iteration repeats the same step (the same stop,
    prediction and ``c``; ``nloop`` not counted, as the eager loop's second try is in the same iteration)."""
    return tuple(a if a is b else torch.where(retry, b, a) for b, a in zip(before, after, strict=True))


@dataclass
class Start:
    """What both programs start from: the eager start (the start value ``u``, the first step ``h``), the save times
    (``keys``: signed, padded with ``inf``; ``out``: the save array with the points at ``t0`` filled, ``first`` of
    them), the stops, the constants shared by both programs' ``C`` and the Newton state ``(J, lu, piv, inverse,
    c_lu, jac_stale, jac_current, eta, counts)`` that ends both carries."""

    direction: float
    u: Tensor
    h: float
    save_t: list[float]
    first: int
    out: Tensor
    shared: tuple[Tensor | None, ...]  # atol, rtol, tol, stops, n_stops, keys, saveat, maxiters, dtmin, dtmax, mass
    newton: tuple[Tensor, ...]


def start(method: BDFMethod, u0: Tensor, opts: LoopOptions, n_counters: int) -> Start:
    """The eager solve's start (:func:`~.bdf_loop.integrate_bdf`: the method's start and Jacobian, the first step,
    the differences rescaled onto it) and the inputs both programs share."""
    bsz, n = u0.shape
    dtype, device = u0.dtype, u0.device
    direction = 1.0 if opts.t1 > opts.t0 else -1.0
    if opts.dt is None:
        u, h = first_step(method, u0, opts, direction)
    else:
        h = direction * abs(opts.dt)
        method.start(u0.new_full((bsz,), opts.t0), u0)
        u = method.state
    if opts.dtmax is not None:
        h = direction * min(abs(h), opts.dtmax)
    method.rescale(h)

    def f64(x: float) -> Tensor:
        return torch.tensor(x, dtype=T64, device=device)

    save_t = save_time_list(opts)
    S = max(8, 1 << max(0, len(save_t) - 1).bit_length())  # padded: fewer recompiles (compiled_control._padded)
    keys = torch.tensor([direction * s for s in save_t] + [math.inf] * (S - len(save_t)), dtype=T64, device=device)
    saveat = torch.tensor(save_t + [opts.t1] * (S - len(save_t)), dtype=T64, device=device)
    out = torch.full((S, bsz, n), math.nan, dtype=dtype, device=device)
    first = next((i for i, s in enumerate(save_t) if s != opts.t0), len(save_t))
    out[:first] = u.detach()[None]
    stop_list = [s for s in (opts.tstops or []) if direction * opts.t0 < direction * s < direction * opts.t1]
    stop_list.append(opts.t1)
    n_stops = len(stop_list)
    stops = torch.tensor(stop_list + [opts.t1] * (max(8, 1 << (n_stops - 1).bit_length()) - n_stops),
                         dtype=T64, device=device)
    long = torch.zeros((), dtype=torch.long, device=device)
    false = torch.zeros((), dtype=torch.bool, device=device)
    assert isinstance(method.linsolve, DenseLUSolver) and method.linsolve.J is not None
    J = method.linsolve.J.detach().expand(bsz, n, n).clone(memory_format=torch.contiguous_format)  # strides as cond's
    lu = torch.zeros(bsz, n, n, dtype=dtype, device=device)  # the LU factors, transposed (compiled_bdf_step)
    piv = torch.zeros(bsz, n, dtype=torch.int32, device=device)
    inverse = torch.zeros(bsz, n, n, dtype=dtype, device=device) if step.uses_inverse(n) else lu.new_zeros(bsz, 1, 1)
    shared = (method.atol, f64(method.rtol), f64(method.newton_tol), stops, long + n_stops, keys, saveat,
              long + opts.maxiters, f64(opts.dtmin), f64(opts.dtmax if opts.dtmax is not None else math.inf),
              method.mass)
    newton = (J, lu, piv, inverse, f64(math.nan), false.clone(), ~false, f64(method.eta),
              torch.zeros(n_counters, dtype=torch.long, device=device))
    return Start(direction, u, h, save_t, first, out, shared, newton)


def loop_head(t: float, h: float, order: int, device: torch.device) -> tuple[Tensor, ...]:
    """The carries both programs open with: ``(nloop, t, h, si, n_equal, n_fail, nonfinite, running, status,
    fail_t, fail_h, order)``."""
    long = torch.zeros((), dtype=torch.long, device=device)
    false = torch.zeros((), dtype=torch.bool, device=device)

    def f64(x: float) -> Tensor:
        return torch.tensor(x, dtype=T64, device=device)

    return (long.clone(), f64(t), f64(h), long.clone(), long.clone(), long.clone(), false.clone(), ~false,
            long + RUNNING, f64(0.0), f64(0.0), long + order)
