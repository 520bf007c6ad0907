"""The fixed-step check of the explicit symplectic (splitting) methods: growth beyond their stability limit.

A splitting method applied to ``q'' = -omega^2 q`` is stable only for ``dt * omega`` below a limit (2 for
Verlet, about 1.57 for Yoshida4, found from the tableau by :func:`oscillation_stability_limit`); beyond it the
numerical solution grows geometrically while staying finite, so without a check a fixed-step solve would end
with ``Success`` and a meaningless state. :class:`fixed_step_check.FixedStepCheck`'s growth test cannot see
this: the field of an oscillator is skew, its Rayleigh quotient along the increment is zero. Instead, along the
step's increments ``dq``, ``dp`` the force's stiffness and the velocity's inverse mass are the Rayleigh quotients

    ``kappa = -<F(end) - F(start), dq> / <dq, dq>``,  ``mu = <v(end) - v(start), dp> / <dp, dp>``

(``omega^2 = kappa mu`` exactly on a harmonic oscillator of any mass), and a trajectory whose increments keep
growing while ``dt^2 kappa mu`` exceeds the method's limit squared (by the factor :data:`MARGIN` on
``dt * omega``) at :data:`PERSIST` consecutive checks is ended as ``Unstable``. The rate is stored as
``z = -dt^2 kappa mu`` so that the base class's comparison ``z < limit`` applies unchanged.

Checks run after steps 1 and 2 (the first check only records the increment; without them the first two checks
came at steps 16 and 32, and a rollout shorter than ``2 CHECK_EVERY + PERSIST - 1 = 37`` steps went unchecked),
every :data:`CHECK_EVERY` steps, after every step while growth beyond the limit is being confirmed, and on the last
step; each needs the velocity and force at both ends of the step, which costs up to two velocity and two force
evaluations when they are not already known (counted in ``stats.nf``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import torch

from .fixed_step_check import BEYOND_OSCILLATION, FixedStepCheck
from .tableaus.symplectic import SymplecticTableau

Tensor = torch.Tensor

__all__ = ["CHECK_EVERY", "OscillationCheck", "oscillation_stability_limit"]

CHECK_EVERY = 16
MARGIN = 1.0
"""``dt * omega`` must exceed the limit by this factor. None: growth is geometric just past the limit (Yoshida4 at
1.02 times its limit multiplies the state by ~1.5 per step), and the estimate is exact on linear oscillators;
persistent growth (:data:`PERSIST`) is what keeps a stable nonlinear run near the limit from being flagged."""
PERSIST = 6
"""Consecutive checks with growing increments beyond the limit before a trajectory is ended. After a check that
finds ``dt * omega`` beyond the limit, the next one runs after the next step (not :data:`CHECK_EVERY` later), so
these are consecutive steps: a stable oscillation, even near the limit, does not grow for six steps in a row."""


@cache
def oscillation_stability_limit(tab: SymplecticTableau) -> float:
    """The largest ``x = dt * omega`` such that the method is stable on ``q'' = -omega^2 q`` for all of ``(0, x]``
    (the one-step map has determinant 1; it is stable while ``|trace| <= 2``), to 1e-6; ``inf`` if beyond 20."""

    def trace(x: float) -> float:
        m = np.eye(2)
        for a, b in zip(tab.drift, tab.kick, strict=True):
            m = np.array([[1.0, 0.0], [-b * x * x, 1.0]]) @ np.array([[1.0, a], [0.0, 1.0]]) @ m
        return float(m[0, 0] + m[1, 1])

    grid = np.arange(1, 20001) * 1e-3
    first = next((float(x) for x in grid if abs(trace(float(x))) > 2.0 + 1e-9), None)
    if first is None:
        return math.inf
    lo, hi = first - 1e-3, first
    while hi - lo > 1e-7:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if abs(trace(mid)) > 2.0 + 1e-9 else (mid, hi)
    return lo


class OscillationCheck(FixedStepCheck):
    """:class:`FixedStepCheck` for partitioned states: the growth test on ``-dt^2 kappa mu`` (module docstring).

    Args:
        bsz: trajectories; limit: the method's :func:`oscillation_stability_limit`; atol, dtype, device: as for
            :class:`FixedStepCheck`; split: maps engine-layout ``(B, N)`` tensors to their position and momentum
            halves, each flattened to ``(B, N/2)``.
    """

    growth_kind = BEYOND_OSCILLATION

    def __init__(self, bsz: int, limit: float, atol: Tensor, dtype: torch.dtype, device: torch.device,
                 split: Callable[[Tensor], tuple[Tensor, Tensor]]) -> None:
        super().__init__(bsz, limit, atol, dtype, device)
        self.limit = None if not math.isfinite(limit) else -((MARGIN * limit) ** 2)
        self.every = CHECK_EVERY
        self.persist = PERSIST
        # steps 1 (the increment to compare with) and 2 are checked, so that a streak can begin at once; while it
        # lasts every step is checked: a rollout of PERSIST + 1 steps is confirmed (it needed 37)
        self.first = 2
        self.split = split
        self._streaking = False

    def due(self, nloop: int) -> bool:
        """After steps 1 and 2, every :data:`CHECK_EVERY` steps, and after every step while a trajectory's streak
        has begun."""
        return self.scheduled(nloop) or self.streak_one > 0 or self._streaking

    def check(self, u: Tensor, u_new: Tensor, f_start: Tensor, f_end: Tensor, dt: Tensor,
              err: Tensor | None) -> tuple[Tensor, Tensor]:
        kind, z = super().check(u, u_new, f_start, f_end, dt, err)
        self._streaking = bool((self.streak > 0).any())  # one transfer per check, not one per step in due()
        return kind, z

    def _products(self, u: Tensor, u_new: Tensor, f_start: Tensor, f_end: Tensor, err: Tensor | None) -> Tensor:
        """Rows ``<d, d>, <dq, dq>, <dF, dq>, <dp, dp>, <dv, dp>`` per trajectory (``(5, B)``)."""
        dq, dp = self.split(u_new - u)
        dv, df = self.split(f_end - f_start)
        prods = torch.linalg.vecdot(torch.stack([dq, df, dp, dv]), torch.stack([dq, dq, dp, dp]))
        return torch.cat([(prods[0] + prods[2])[None], prods])

    def _rate(self, prods: Tensor, dt: Tensor) -> Tensor:
        qq, fq, pp, vp = prods[1], prods[2], prods[3], prods[4]
        ok = (qq > 0) & (pp > 0) & (fq < 0) & (vp > 0)
        tiny = torch.finfo(qq.dtype).tiny
        z = -(dt * dt) * (-fq / qq.clamp(min=tiny)) * (vp / pp.clamp(min=tiny))
        return torch.where(ok, z, torch.zeros_like(z))

    def _rate_one(self, prods: list[float], dt: float) -> float:
        qq, fq, pp, vp = prods[1], prods[2], prods[3], prods[4]
        if qq > 0 and pp > 0 and fq < 0 and vp > 0:
            return -(dt * dt) * (-fq / qq) * (vp / pp)
        return 0.0
