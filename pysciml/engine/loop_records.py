"""The records both integration loops share: what the loop is asked to do and what it returns."""

from __future__ import annotations

from dataclasses import dataclass

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
    tstops: list[float] | None = None  # times steps must land on (unbatched solves)


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
    dt_next: float | None = None  # the step size planned before the last step was clipped to t1 (unbatched)
