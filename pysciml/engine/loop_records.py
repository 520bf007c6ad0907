"""The records both integration loops share: what the loop is asked to do (:class:`LoopOptions`), what it
returns (:class:`LoopResult`), and the small rules both apply the same way (fixed-step count, finiteness)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..solution import ReturnCode
from .controller import PIController
from .interpolation import DenseOutput

Tensor = torch.Tensor


@dataclass
class LoopOptions:
    """Everything the loop needs besides the stepper; validated by ``solve`` beforehand."""

    t0: float
    t1: float
    adaptive: bool
    dt: float | None
    atol: Tensor  # (1, n) or (B, n)
    rtol: float
    maxiters: int
    dtmin: float
    dtmax: float | None
    saveat: Tensor | None  # (S,), sorted in the direction of integration
    save_everystep: bool
    dense: bool
    controller: PIController
    tstops: list[float] | None = None  # times every trajectory's steps land on, in integration order
    progress: bool = False  # a tqdm bar over t (see engine/progress.py)
    hooks: Any = None  # a step_hooks.StepHooks (single-trajectory loop only; odeint's callbacks, norm, jump_t)
    events: Any = None  # an events.EventSpec (solve's callback=), None for none: the loops then do no event work


@dataclass
class LoopResult:
    """``t`` ``(S,)`` and ``u`` ``(S, B, n)`` at the save points, per-trajectory return codes, where each failed
    trajectory stopped (``(t, dt)``) and why, beyond its code (``""`` when the code says it all)."""

    t: Tensor
    u: Tensor
    status: list[ReturnCode]
    fail_info: list[tuple[float, float] | None]
    reasons: list[str]
    dense: DenseOutput | None
    dt_next: float | Tensor | None = None  # |dt| planned before the last step was clipped to t1: a float for one
    # trajectory, a (B,) tensor for a batch
    events: Any = None  # the events.EventRecord of a solve with callbacks


def fixed_step_count(opts: LoopOptions) -> int:
    """How many fixed steps of ``opts.dt`` cover ``[t0, t1]``: ``round`` when the span is a whole number of steps
    (to 1e-9 relative), else one more (the last step is shortened to end on ``t1``)."""
    assert opts.dt is not None
    ratio = abs(opts.t1 - opts.t0) / abs(opts.dt)
    n = int(round(ratio))
    return n if abs(ratio - n) <= 1e-9 * max(ratio, 1.0) else int(ratio) + 1


def save_time_list(opts: LoopOptions) -> list[float]:
    """``opts.saveat`` as Python floats, clamped onto ``[t0, t1]``: a save time held in the state's dtype may round
    past tspan's ends (``float32(6.3) > 6.3``), and would then never be reached by a loop running in float64 time."""
    if opts.saveat is None:
        return []
    lo, hi = min(opts.t0, opts.t1), max(opts.t0, opts.t1)
    return [min(max(s, lo), hi) for s in opts.saveat.tolist()]


def finite_rows(u: Tensor) -> Tensor:
    """``(B,)`` bool: whether row ``b`` of ``u`` (``(B, n)``) is free of inf and NaN (a step that produced either
    is rejected, and its trajectory fails as ``Unstable`` if the step size then collapses).

    ``u * 0.0`` is ``0`` for every finite entry and NaN for inf or NaN, so its row sums are exactly ``0`` or NaN
    (no overflow, unlike summing ``u``), in three tensor operations rather than ``isfinite``'s five."""
    return (u * 0.0).sum(dim=1) == 0.0


def all_finite(u: Tensor) -> bool:
    """Whether every entry of ``u`` is finite: :func:`finite_rows` for one trajectory, reduced to a bool."""
    return float((u * 0.0).sum()) == 0.0
