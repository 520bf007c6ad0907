"""Fixed-step solves that went wrong but stayed finite: the check that turns them into ``Unstable``.

An adaptive solve rejects steps whose error estimate exceeds the tolerance; a fixed-step solve takes every
step it is given, so a step far beyond the method's stability region (``dt * lambda = -5`` for RK4 returns
``5e22`` where the solution is ``4e-44``) or across a singularity returns a finite, meaningless number. Two
signs, checked after each of the first ``PERSIST + 1`` steps, then every :data:`CHECK_EVERY` steps (explicit
methods), and on the last step (a few tensor operations each time):

* **Error estimate as large as the solution** (methods with an embedded estimator; implicit methods check
  every step, their steps being expensive anyway): the estimate's 2-norm, relative to the solution's
  (``|atol| + max(|u_n|, |u_{n+1}|)``: the solution itself, not the tolerance, which fixed-step users rarely
  set; norm-wise, so a component passing through zero does not count as a large relative error), exceeds
  :data:`MAX_RELATIVE_ERROR` on a step where the solution grows. Coarse but stable fixed steps stay orders of
  magnitude below (a Tsit5 step of one radian on a rotation: 4e-4); a decaying stiff transient, where a crude
  embedded method (IMEXSSP2's first-order one) can estimate 50% while the step is fine, does not grow.
* **Growth against a contracting field** (explicit methods): along the step's increment
  ``delta = u_{n+1} - u_n`` the field's rate is the Rayleigh quotient
  ``z = dt <f(u_{n+1}) - f(u_n), delta> / <delta, delta>`` (exactly ``dt * lambda`` on ``u' = lambda u``).
  If ``z`` lies beyond the method's real stability interval ``[-x_s, 0]`` (by the factor
  :data:`STABILITY_MARGIN`) while the increments keep growing, at :data:`PERSIST` consecutive checks, the
  solution is being amplified by the method, not by the ODE: the field contracts along that direction.
  A forced but stable run (``z`` inside the interval) never trips it, however fast its increments grow.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
import torch

from .tableaus._base import ExplicitRKTableau, dense_matrix

Tensor = torch.Tensor

CHECK_EVERY = 4
MAX_RELATIVE_ERROR = 0.5
STABILITY_MARGIN = 1.2
PERSIST = 2

NONE, TOO_COARSE, BEYOND_STABILITY, BEYOND_OSCILLATION = 0, 1, 2, 3


@cache
def real_stability_boundary(tab: ExplicitRKTableau) -> float:
    """``x_s > 0`` such that ``|R(x)| <= 1`` on ``[-x_s, 0]`` for the stability function
    ``R(z) = 1 + z b^T (I - z A)^{-1} 1`` of an explicit tableau (2 for Euler, 2.785 for RK4), to 1e-6."""
    s = tab.stages
    A = np.array(dense_matrix(tab.a, s))
    b = np.array(tab.b, dtype=float)

    def unstable(x: float) -> bool:
        z = -x
        return abs(1.0 + z * b @ np.linalg.solve(np.eye(s) - z * A, np.ones(s))) > 1.0 + 1e-12

    grid = np.arange(1, 5001) * 1e-2  # scan [0, 50] for the first unstable point, then bisect
    first = next((x for x in grid if unstable(float(x))), None)
    if first is None:
        return math.inf
    lo, hi = float(first) - 1e-2, float(first)
    while hi - lo > 1e-6:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if unstable(mid) else (mid, hi)
    return lo


def describe(kind: int, z: float, alg_name: str, boundary: float | None) -> str:
    """The sentence a failed solve's message carries for a fixed-step failure ``kind``."""
    if kind == TOO_COARSE:
        return (f"a fixed step's error estimate exceeds {MAX_RELATIVE_ERROR:.0%} of the growing solution itself (a "
                "singularity, an instability or a step far too large): use adaptive=True or a smaller dt")
    if kind == BEYOND_STABILITY:
        return (f"the fixed step is beyond {alg_name}()'s stability region: dt * lambda ~ {z:.3g} along the "
                f"solution, outside its real stability interval [-{boundary:.3g}, 0], and the solution is being "
                "amplified by the method: use a smaller dt, adaptive=True, or an implicit method (Rodas5P())")
    if kind == BEYOND_OSCILLATION:
        return (f"the fixed step is beyond {alg_name}()'s stability limit for oscillations: dt * omega ~ "
                f"{math.sqrt(max(-z, 0.0)):.3g} along the solution, above its limit {boundary:.3g}, and the solution "
                "is being amplified by the method: use a smaller dt (or ImplicitMidpoint(), stable for any dt)")
    return ""


class FixedStepCheck:
    """Per-trajectory state of the two checks above for one fixed-step solve (batched: ``(B,)`` tensors).

    ``boundary`` is the explicit method's real stability interval ``x_s`` (``None``: no growth check, e.g.
    for A-stable implicit methods); ``atol`` the absolute tolerance, ``(1, n)`` or ``(B, n)``."""

    growth_kind = BEYOND_STABILITY

    def __init__(self, bsz: int, boundary: float | None, atol: Tensor, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.limit = None if boundary is None or not math.isfinite(boundary) else -STABILITY_MARGIN * boundary
        self.boundary = boundary
        self.every = 1 if boundary is None else CHECK_EVERY  # check after every step, or every few
        self.atol_norm = torch.linalg.vector_norm(atol, dim=1)
        self.prev_dd = torch.full((bsz,), math.inf, dtype=dtype, device=device)
        self.streak = torch.zeros(bsz, dtype=torch.long, device=device)
        self.atol_scalar = float(self.atol_norm[0])
        self.prev_dd_one, self.streak_one = math.inf, 0  # check_one's state
        self.persist = PERSIST
        # the first steps are each checked: the first check only sets the increment to compare with, so a grid of a
        # few steps would otherwise return an amplified solution unchecked (odeint on 4 output times, say)
        self.first = PERSIST + 1

    def _products(self, u: Tensor, u_new: Tensor, f_start: Tensor, f_end: Tensor, err: Tensor | None) -> Tensor:
        """The inner products the checks need, per trajectory, in one reduction: ``(k, B)`` with rows
        ``<d, d>, <f_end - f_start, d>`` (growth check) then ``|u|^2, |u_new|^2, |err|^2`` (error check)."""
        d = u_new - u
        left: list[Tensor] = [d, f_end - f_start] if self.limit is not None else []
        right: list[Tensor] = [d, d] if self.limit is not None else []
        if err is not None:
            left += [u, u_new, err]
            right += [u, u_new, err]
        return torch.linalg.vecdot(torch.stack(left), torch.stack(right))

    def check(self, u: Tensor, u_new: Tensor, f_start: Tensor, f_end: Tensor, dt: Tensor,
              err: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(kind, z)`` per trajectory after one accepted fixed step from ``u`` to ``u_new`` (all detached,
        ``(B, n)``; ``dt`` ``(B,)``): ``kind`` is :data:`NONE`, :data:`TOO_COARSE` or :data:`BEYOND_STABILITY`."""
        kind, z, self.prev_dd, self.streak = self.update(self.prev_dd, self.streak, u, u_new, f_start, f_end, dt, err)
        return kind, z

    def update(self, prev_dd: Tensor, streak: Tensor, u: Tensor, u_new: Tensor, f_start: Tensor, f_end: Tensor,
               dt: Tensor, err: Tensor | None,
               atol_norm: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`check`'s arithmetic with its state passed in and returned, ``(kind, z, prev_dd, streak)``: no
        side effect, so a loop program (:mod:`.compiled_loop_fixed`) can carry the state; ``atol_norm``: the
        program's input in place of this check's own (a program serves solves with other tolerances)."""
        prods = self._products(u, u_new, f_start, f_end, err)
        kind = torch.zeros_like(streak)
        z = torch.zeros_like(dt)
        if err is not None:
            before, after, e2 = prods[-3:].sqrt()
            rel = e2 / ((self.atol_norm if atol_norm is None else atol_norm) + torch.maximum(before, after))
            kind = torch.where((rel > MAX_RELATIVE_ERROR) & (after > before), TOO_COARSE, kind)
        if self.limit is not None:
            dd = prods[0]
            z = self._rate(prods, dt)
            bad = (z < self.limit) & (dd > prev_dd)
            streak = torch.where(bad, streak + 1, 0)
            prev_dd = dd
            kind = torch.where((streak >= self.persist) & (kind == NONE), self.growth_kind, kind)
        return kind, z, prev_dd, streak

    def scheduled(self, k: Any) -> Any:
        """Whether the schedule alone puts a check after step ``k`` (an ``int``, or a loop program's tensor): each
        of the first :attr:`first` steps, then every :attr:`every`."""
        return (k % self.every == 0) | (k <= self.first)

    def due(self, nloop: int) -> bool:
        """Whether the loop runs the check after its step number ``nloop`` (the last step is always checked)."""
        return self.scheduled(nloop)

    def _rate(self, prods: Tensor, dt: Tensor) -> Tensor:
        """``dt`` times the Rayleigh quotient of the field's change along the increment (rows 0 and 1)."""
        return dt * prods[1] / prods[0]

    def _rate_one(self, prods: list[float], dt: float) -> float:
        """:meth:`_rate` on Python floats (one trajectory)."""
        return dt * prods[1] / prods[0]

    def check_one(self, u: Tensor, u_new: Tensor, f_start: Tensor, f_end: Tensor, dt: float,
                  err: Tensor | None) -> tuple[int, float]:
        """:meth:`check` for one trajectory (``(1, n)`` tensors), the logic on Python floats after a single
        transfer of the inner products: the unbatched loop's cheaper path."""
        prods = [row[0] for row in self._products(u, u_new, f_start, f_end, err).tolist()]
        kind, z = NONE, 0.0
        if err is not None:
            before, after, e = (math.sqrt(x) for x in prods[-3:])
            if after > before and e > MAX_RELATIVE_ERROR * (self.atol_scalar + after):
                kind = TOO_COARSE
        if self.limit is not None:
            dd = prods[0]
            z = self._rate_one(prods, dt) if dd > 0 else 0.0
            self.streak_one = self.streak_one + 1 if z < self.limit and dd > self.prev_dd_one else 0
            self.prev_dd_one = dd
            if kind == NONE and self.streak_one >= self.persist:
                kind = self.growth_kind
        return kind, z
