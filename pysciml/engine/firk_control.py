"""Gustafsson's predictive step-size controller with radau5's step hold (RadauIIA5's and RadauIIA3's default).

Hairer & Wanner, Solving ODEs II, IV.8, eq. (8.25) and radau5.f: with ``k = 1 / p`` (``p`` the local order of the
error estimate, ``stepper.order``),

    q     = clamp(err^k / gamma, 1/qmax, 1/qmin)                               (the standard factor)
    q_gus = (h_prev / h) (err^2 / err_prev)^k / gamma                           (Gustafsson's prediction)
    h_new = h / max(q, clamp(q_gus, 1/qmax, 1/qmin))                            (accepted steps)

and the step is kept when ``1 <= h_new / h <= hold`` (radau5's ``QUOT2 = 1.2``), so the factorizations of the
previous step are reused (:class:`~pysciml.engine.firk.FIRKStepper` refactors only when ``J`` or ``h`` changed).
The loop carries one number per trajectory between steps (``qold``): here ``|h_prev| max(err_prev, 0.01)^(-k)``,
negative before the first accepted step (no prediction yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError
from .controller import PIController

Tensor = torch.Tensor


@dataclass(frozen=True)
class PredictiveController(PIController):
    """Gustafsson's predictive controller (radau5). ``qmin = 1/5``, ``qmax = 8``, ``gamma = 0.9`` as in radau5;
    ``hold``: keep ``h`` when the proposal grows it by less than this factor; ``failed``: the factor ``h`` shrinks
    by after a step without an error estimate (Newton failed: radau5 halves it). ``beta1``/``beta2``/``qoldinit``
    are not used (the exponent is ``1 / order``; ``qoldinit`` is the negative "no step yet" marker)."""

    qmax: float = 8.0
    qoldinit: float = -1.0
    hold: float = 1.2
    failed: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.qmin <= 1 or not 1 < self.qmax < math.inf or not 0 < self.gamma <= 1:
            raise InputError(f"PredictiveController needs 0 < qmin <= 1 < qmax < inf and 0 < gamma <= 1, got "
                             f"qmin={self.qmin}, qmax={self.qmax}, gamma={self.gamma}")
        if not 1 < self.failed < math.inf:
            raise InputError(f"PredictiveController(failed={self.failed}): failed must be a finite factor > 1")
        if not 1 <= self.hold < self.qmax:
            raise InputError(f"PredictiveController(hold={self.hold}): hold must lie in [1, qmax)")

    def propose_scalar(self, dt: float, eest: float, qold: float, accept: bool, order: int) -> tuple[float, float]:
        k, lo, hi = 1.0 / order, 1.0 / self.qmax, 1.0 / self.qmin
        q = min(max(eest**k / self.gamma, lo), hi) if math.isfinite(eest) else self.failed
        if not accept:
            return dt / q, qold
        if qold > 0:
            gus = qold / abs(dt) * eest ** (2 * k) / self.gamma
            q = max(q, min(max(gus, lo), hi))
        dt_new = dt / q
        if 1.0 <= dt_new / dt <= self.hold:
            dt_new = dt
        return dt_new, abs(dt) * max(eest, 1e-2) ** (-k)

    def propose(self, dt: Tensor, eest: Tensor, qold: Tensor, accept: Tensor, order: int) -> tuple[Tensor, Tensor]:
        k, lo, hi = 1.0 / order, 1.0 / self.qmax, 1.0 / self.qmin
        finite = torch.isfinite(eest)
        e = torch.where(finite, eest, torch.ones_like(eest))
        q = torch.where(finite, (e.pow(k) / self.gamma).clamp(lo, hi), torch.full_like(e, self.failed))
        gus = (qold.clamp(min=0.0) / dt.abs() * e.pow(2 * k) / self.gamma).clamp(lo, hi)
        q_acc = torch.where(qold > 0, torch.maximum(q, gus), q)
        dt_acc = dt / q_acc
        ratio = dt_acc / dt
        dt_acc = torch.where((ratio >= 1.0) & (ratio <= self.hold), dt, dt_acc)
        dt_new = torch.where(accept, dt_acc, dt / q)
        qold = torch.where(accept, dt.abs() * e.clamp(min=1e-2).pow(-k), qold)
        return dt_new, qold
