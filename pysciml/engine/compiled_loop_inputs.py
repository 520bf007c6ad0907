"""The whole loop's inputs and final state that depend only on the solve's options (:mod:`.compiled_loop`).

The control state travels packed in two loop carries (:func:`pack_control`); an explicit-RK loop program's inputs
that do not depend on ``u0``'s values, ``p`` or ``f`` (the packed first control state, the control's constants, the
padded save times, ``maxiters``, the prologue's span and ``rtol``) are built once per signature
(:func:`constants`) and shared by the calls of a training loop; the final state comes back to Python in two host
reads (:func:`final_state`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple

import torch

from .compiled import CompiledStepper
from .compiled_control import _padded, _start, initial_span
from .loop_records import LoopOptions
from .loop_saver import MAXITERS, RUNNING, SUCCESS

__all__ = ["pack_control", "unpack_control", "constants", "built", "final_state", "nan_rows"]

Tensor = torch.Tensor


def pack_control(L: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """The control state ``L`` (:func:`~.compiled_control._start`'s twelve ``(B,)`` tensors) as two loop carries:
    ``(5, B)`` in the time's dtype (``t, dt, qold, fail_t, fail_dt``) and ``(7, B)`` long (``active, seen, stop,
    status, n_acc, n_att, sidx``, the flags as 0/1). Every carry costs the loop program per iteration (the Python
    wrapper's size checks and buffers, a stacked copy for the backward) and per call (guards, the runtime wrapper's
    per-tensor work), so the whole loop carries these two, not twelve."""
    t, dt, qold, active, seen, stop, status, fail_t, fail_dt, n_acc, n_att, sidx = L
    return (torch.stack((t, dt, qold, fail_t, fail_dt)),
            torch.stack((active.long(), seen.long(), stop, status, n_acc, n_att, sidx)))


def unpack_control(times: Tensor, ints: Tensor) -> tuple[Tensor, ...]:
    """:func:`pack_control`'s inverse: the twelve tensors of ``L``, in its order (the same values)."""
    return (times[0], times[1], times[2], ints[0] != 0, ints[1] != 0, ints[2], ints[3], times[3], times[4], ints[4],
            ints[5], ints[6])


class Constants(NamedTuple):
    """The loop program's inputs that depend only on the solve's options and ``u0``'s shape, dtype and
    device (:func:`constants`): built by :func:`~.compiled_control._start` once per such signature, then shared
    by the calls (the program reads them, nothing writes them)."""

    P: tuple[Tensor, Tensor]  #: the packed first control state (:func:`pack_control`)
    C: tuple[Tensor, ...]  #: the control's constants (stops, last stop, keyed save times, step-size limits)
    padded: Tensor  #: the save times, padded with inf
    maxiters: Tensor  #: ``(1,)`` long: the most loop iterations
    t: Tensor  #: ``(B,)`` the start time in the time's dtype (``L[0]``)
    span: Tensor | None  #: the prologue's ``initial_dt`` span (``None``: no prologue, or a given ``dt``)
    rtol: Tensor | None  #: ``(1,)`` ``rtol`` in the state's dtype, beside ``span``
    first: int  #: how many leading save points are ``t0``'s (they hold ``u0``)
    #: the NaN rows of the output buffer after those, ``(len(padded) - first, B, n)``; ``None`` where larger than
    #: :data:`TAIL_CACHED` elements (made at each call: the cache should not hold output-sized buffers)
    tail: Tensor | None


TAIL_CACHED = 1 << 16
"""The largest NaN tail of the output buffer (elements) a :class:`Constants` entry holds."""


def nan_rows(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """NaN of ``shape`` in ``like``'s dtype and on its device."""
    return torch.full(shape, math.nan, dtype=like.dtype, device=like.device)


_CONSTANTS: OrderedDict[tuple, Constants] = OrderedDict()
""":func:`constants`' entries (the 32 most recent), by every value they are built from."""


def _floats_key(values: list[float] | tuple[float, ...]) -> tuple:
    """``values`` as a cache key that also tells ``-0.0`` from ``0.0`` (equal as floats, not as the tensors
    built from them). A NaN (refused by ``solve``'s checks) matches only itself as the same object: an entry
    it finds was built from a NaN there too."""
    return tuple(values), tuple(i for i, v in enumerate(values) if v == 0.0 and math.copysign(1.0, v) < 0.0)


def constants(u0: Tensor, opts: LoopOptions, scalar: bool, save_t: list[float], steps: int,
              prologue: bool) -> Constants:
    """The inputs of a loop program call that do not depend on ``u0``'s values, ``p`` or ``f``: cached per the
    options and ``u0``'s batch size, dtype and device, so a training loop's repeated solves of one signature skip
    :func:`~.compiled_control._start`'s two dozen small tensor operations (a spiral benchmark solve's set-up)."""
    assert opts.saveat is not None
    key = (tuple(u0.shape), u0.dtype, u0.device, scalar, steps, prologue, opts.saveat.dtype,
           torch.is_inference_mode_enabled(),  # inference tensors cannot be saved for a later backward
           _floats_key((opts.t0, opts.t1, opts.rtol, opts.dtmin, opts.controller.qoldinit)),
           opts.dt is None, opts.dtmax is None, _floats_key([v for v in (opts.dt, opts.dtmax) if v is not None]),
           _floats_key(list(opts.tstops or [])), _floats_key(save_t))
    hit = _CONSTANTS.get(key)
    if hit is not None:
        _CONSTANTS.move_to_end(key)
        return hit
    entry = _CONSTANTS[key] = built(None, u0, opts, scalar, save_t, steps, prologue)
    while len(_CONSTANTS) > 32:
        _CONSTANTS.popitem(last=False)
    return entry


def built(stepper: CompiledStepper | None, u0: Tensor, opts: LoopOptions, scalar: bool, save_t: list[float],
          steps: int, prologue: bool) -> Constants:
    """The :class:`Constants` of a call, built by :func:`~.compiled_control._start`; with a ``stepper`` and
    without a ``prologue``, ``_start`` computes ``f(t0, u0)`` (``stepper.f0``) and the first step size eagerly (a
    Rosenbrock or ARK loop: then they depend on ``u0``'s values and ``f``, and are not cached)."""
    L, C, _, saver, _ = _start(stepper, u0, opts, scalar, eager_setup=not prologue,  # type: ignore[arg-type]
                               program=False)
    span = rtol = None
    if prologue and opts.dt is None:
        t_state = torch.full((u0.shape[0],), opts.t0, dtype=u0.dtype, device=u0.device)
        span = initial_span(opts, t_state, scalar)
        rtol = torch.full((1,), opts.rtol, dtype=u0.dtype, device=u0.device)
    first = int(saver.idx[0]) if u0.shape[0] else 0
    padded = _padded(save_t, math.inf, L[0].dtype, u0.device)
    shape = (padded.shape[0] - first, *u0.shape)
    tail = nan_rows(shape, u0) if math.prod(shape) <= TAIL_CACHED else None
    return Constants(pack_control(L), C, padded, torch.full((1,), steps, dtype=torch.long, device=u0.device), L[0],
                     span, rtol, first, tail)


def final_state(times: Tensor, ints: Tensor,
                maxiters: bool) -> tuple[list[int], int, int, list[float], list[float], list[float]]:
    """The loop's final packed control state (:func:`pack_control`'s rows: ``t, dt, qold, fail_t, fail_dt``;
    ``active, seen, stop, status, n_acc, n_att, sidx``) read in one go, as :func:`~.compiled_control.finish` reads
    its twelve tensors: the return codes (a finished trajectory still running is a success; with ``maxiters``, the
    loop stopped on it: the running ones fail there), the accepted and attempted steps of all trajectories, where
    each stopped (``fail_t``, ``fail_dt``) and each one's last step size."""
    t, dt, _, fail_t, fail_dt = times.tolist()
    active, _, _, status, n_acc, n_att, _ = ints.tolist()
    if maxiters:
        status = [MAXITERS if a else s for a, s in zip(active, status, strict=True)]
        fail_t = [tb if a else f for a, tb, f in zip(active, t, fail_t, strict=True)]
        fail_dt = [db if a else f for a, db, f in zip(active, dt, fail_dt, strict=True)]
    raw = [SUCCESS if s == RUNNING and not a else s for a, s in zip(active, status, strict=True)]
    return raw, sum(n_acc), sum(n_att), fail_t, fail_dt, dt
