"""The Adams multistep stepper (fixed steps): AB3/4/5, ABM32/43/54 and torchdiffeq's Adams solvers.

A multistep method needs the values of ``f`` at earlier points. The loop's :class:`~.stepper.Stepper` interface
is one-step, so this stepper keeps that history itself: :meth:`AdamsStepper.accept` pushes ``f`` at the start of
each accepted step (newest first). Until ``min_steps`` values are known, a step is one step of the tableau's
``startup`` Runge-Kutta method (through an :class:`~.explicit_rk.ExplicitRKStepper` sharing the cached ``f``).

Fixed steps only: the step's ``err`` (Adams-Bashforth of order ``k`` minus order ``k - 1`` on the same history,
or corrector minus predictor; zero on startup steps) controls no step, it only feeds the fixed-step check
(:mod:`.fixed_step_check`: an estimate as large as a growing solution ends the solve as ``Unstable``), with
the real stability interval of :func:`lmm_real_stability_boundary`. Every row of a batch takes the same number
of history values, so a batch gives the numbers of separate solves; when the step changes (a last step shortened
to end on ``t1``) an OrdinaryDiffEq-style method restarts from its one-step method, while torchdiffeq's keeps the
equal-step
coefficients (as torchdiffeq does) after a warning. torchdiffeq's iterated corrector, when it has not converged
after ``max_iters`` iterations on some row, warns and forgets the oldest history value (for the whole batch).

Per step: ``f`` once (Adams-Bashforth), twice (PECE), ``1 + iterations`` (iterated corrector); the startup steps
cost what their Runge-Kutta method costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import torch

from ..errors import warn_caller
from .explicit_rk import ExplicitRKStepper
from .fixed_step_check import real_stability_boundary
from .rhs import RHS
from .stages import StageSum
from .stepper import Stepper, StepResult, any_true, select
from .tableaus.adams import AdamsTableau, adams_bashforth, adams_moulton

Tensor = torch.Tensor

#: a step differing from the previous one by more than this (relative, plus 16 ulps of ``t``) is a change of step
STEP_CHANGE = 1e-6


@cache
def lmm_real_stability_boundary(tab: AdamsTableau) -> float | None:
    """``x_s > 0`` with every root of the method's characteristic polynomial on ``y' = lambda y`` (``z = h lambda``)
    in the unit disc for ``z`` in ``[-x_s, 0)``, to 1e-6 (AB3: 6/11). Variable order: the smallest over its
    orders. ``None`` for an iterated corrector (its stability depends on how far the iteration went)."""
    if tab.corrector == "iterate":
        return None
    if tab.max_steps < tab.min_steps:  # never started: every step is the one-step method
        return real_stability_boundary(tab.startup)
    return min(_boundary(k, tab.corrector, tab.corrector_extra) for k in range(tab.min_steps, tab.max_steps + 1))


@cache
def _boundary(k: int, corrector: str, corrector_extra: int) -> float:
    beta = np.array([float(c) for c in adams_bashforth(k)])
    gamma = np.array([float(c) for c in adams_moulton(k + corrector_extra)])

    def unstable(x: float) -> bool:
        z = -x
        pred = np.zeros(k + 1)  # y_n + z sum beta_j y_{n-j}, coefficients of zeta^k .. zeta^0
        pred[1] = 1.0
        pred[1:1 + k] += z * beta
        poly = np.zeros(k + 1)
        poly[0] = 1.0
        if corrector == "none":
            poly -= pred
        else:
            poly[1] -= 1.0
            poly -= z * gamma[0] * pred
            poly[1:len(gamma)] -= z * gamma[1:]
        return float(np.max(np.abs(np.roots(poly)))) > 1.0 + 1e-9

    grid = np.arange(1, 501) * 1e-2  # scan [0, 5] for the first unstable point, then bisect
    first = next((float(x) for x in grid if unstable(float(x))), None)
    if first is None:
        return math.inf
    lo, hi = first - 1e-2, first
    while hi - lo > 1e-7:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if unstable(mid) else (mid, hi)
    return lo


class AdamsStepper(Stepper):
    """Adams-Bashforth(-Moulton) steps on a history of ``f`` values.

    Args:
        tab: the method (:class:`~.tableaus.adams.AdamsTableau`).
        rhs: the right-hand side.
        atol, rtol: the iterated corrector's tolerance (torchdiffeq's test on successive increments ``dy``:
            ``max |dy_i - dy_{i-1}| / (atol + rtol max(|dy_i|, |dy_{i-1}|)) < 1``); unused otherwise.
        max_iters: the iterated corrector's largest number of iterations.
    """

    adaptive = False

    def __init__(self, tab: AdamsTableau, rhs: RHS, *, atol: Tensor | float = 0.0, rtol: float = 0.0,
                 max_iters: int = 4) -> None:
        super().__init__(rhs)
        self.tab, self.name, self.order = tab, tab.name, tab.order
        self.atol, self.rtol, self.max_iters = atol, rtol, max_iters
        self.startup = ExplicitRKStepper(tab.startup, rhs)
        self.stability_boundary = lmm_real_stability_boundary(tab)
        dtype, device = rhs.dtype, rhs.device
        ks = range(tab.min_steps, tab.max_steps + 1)
        self._beta = {k: tuple(float(c) for c in adams_bashforth(k)) for k in ks}
        self._gamma = {k: tuple(float(c) for c in adams_moulton(k + tab.corrector_extra)) for k in ks}
        self._predict_err = {k: StageSum([float(a - b) for a, b in zip(adams_bashforth(k), (*adams_bashforth(k - 1), 0),
                                                                      strict=True)], dtype=dtype, device=device)
                             for k in ks if k > 1 and tab.corrector == "none"}
        self.history: list[Tensor] = []  # f at earlier step starts, newest first (f at the current point excluded)
        self._last_dt: Tensor | None = None
        self._drop_oldest = False
        self._warned_steps = False

    def init(self, t: Tensor, u: Tensor) -> None:
        super().init(t, u)
        self.history, self._last_dt, self._drop_oldest = [], None, False

    def _step_changed(self, t: Tensor, dt: Tensor) -> bool:
        last, self._last_dt = self._last_dt, dt.detach()
        if last is None or not self.history:
            return False
        eps = torch.finfo(dt.dtype).eps  # a grid of times rounded to dt's dtype: steps differ by a few ulps of t
        slack = STEP_CHANGE * last.abs() + 16 * eps * torch.maximum(t.detach().abs(), (t + dt).detach().abs())
        if not bool(((dt.detach() - last).abs() > slack).any()):
            return False
        if self.tab.equal_steps_only:
            if not self._warned_steps:
                self._warned_steps = True
                warn_caller(
                    f"{self.name}: the step changed from {float(last[0]):.6g} to {float(dt[0]):.6g} at "
                    f"t={float(t[0]):.6g}; torchdiffeq's Adams methods keep their equal-step coefficients (so does "
                    "this one, giving torchdiffeq's numbers), which costs accuracy: use a uniform grid "
                    "(options step_size with a span it divides), or alg=ABM43() / AB4(), which restart",
                    RuntimeWarning,
                )
            return False
        return True

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        fs = self.history_for(t, dt)
        if len(fs) < self.tab.min_steps:
            return self.startup_step(t, u, dt)
        return self.result(t, u, dt, *self.multistep(t, u, dt, fs, self.rhs))

    def history_for(self, t: Tensor, dt: Tensor) -> list[Tensor]:
        """The ``f`` values the step from ``t`` by ``dt`` uses, newest first (``f0`` first; the history restarted
        where the step changed)."""
        assert self.f0 is not None
        if self._step_changed(t, dt):
            self.history = []
        return [self.f0, *self.history][: self.tab.max_steps]

    def startup_step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        """A step of the one-step starting method (too few history values); its ``err`` is zero."""
        self.startup.f0 = self.f0
        res = self.startup.step(t, u, dt)
        res.err = torch.zeros_like(u)
        return res

    def multistep(self, t: Tensor, u: Tensor, dt: Tensor, fs: list[Tensor],
                  rhs: Callable[[Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """The Adams step on ``fs`` (``k = len(fs)`` values, newest first) with ``rhs(t, u)`` for the corrector's
        evaluations: ``(u_new, err, f_end)`` (``f_end``: ``f`` at ``u_new``, PECE only). The compiled program
        (:mod:`.compiled_adams`) traces it with the traceable ``f``."""
        k = len(fs)
        h = dt[:, None]
        dy = self._sum(self._beta[k], fs, dt)
        f_end = None
        if self.tab.corrector == "none":
            diff = self._predict_err[k](fs)[0] if k in self._predict_err else None
            err = torch.zeros_like(u) if diff is None else h * diff
        else:
            predicted, t1 = dy, t + dt
            gamma = self._gamma[k]
            delta = h * self._sum(gamma[1:], fs, None) if len(gamma) > 1 else torch.zeros_like(u)
            if self.tab.corrector == "pece":
                dy = self._sum(gamma[:1], [rhs(t1, u + dy)], dt) + delta
                f_end = rhs(t1, u + dy)
            else:
                dy = self._iterate(t1, u, dt, gamma[0], delta, dy)
            err = dy - predicted
        return u + dy, err, f_end

    def result(self, t: Tensor, u: Tensor, dt: Tensor, u_new: Tensor, err: Tensor,
               f_end: Tensor | None) -> StepResult:
        """The :class:`StepResult` of a multistep step from ``(t, u)`` by ``dt``."""
        assert self.f0 is not None
        return StepResult(u_new=u_new, err=err, ok=None, stages=[self.f0], f_start=self.f0, f_end=f_end,
                          stage_scale=dt[:, None], t_start=t)

    @staticmethod
    def _sum(coeffs: tuple[float, ...], fs: list[Tensor], dt: Tensor | None) -> Tensor:
        """``sum_j (dt c_j) f_j`` in torchdiffeq's arithmetic (``dt c_j`` rounded in float64, then to the state's
        dtype; the terms added in order), or ``sum_j c_j f_j`` with ``dt`` ``None``."""
        acc: Tensor | None = None
        for c, f in zip(coeffs, fs, strict=False):
            scale = c if dt is None else (dt.to(torch.float64) * c).to(f.dtype)[:, None]
            acc = scale * f if acc is None else acc + scale * f
        assert acc is not None
        return acc

    def _iterate(self, t1: Tensor, u: Tensor, dt: Tensor, gamma0: float, delta: Tensor, dy: Tensor) -> Tensor:
        """torchdiffeq's corrector: ``dy <- dt gamma_0 f(t1, u + dy) + delta`` until two iterates agree to the
        tolerance (per row; converged rows keep their value) or ``max_iters`` iterations."""
        active = torch.ones(u.shape[0], dtype=torch.bool, device=u.device)
        for _ in range(self.max_iters):
            new = self._sum((gamma0,), [self.rhs(t1, u + dy)], dt) + delta
            with torch.no_grad():
                scale = self.atol + self.rtol * torch.maximum(dy.abs(), new.abs())
                converged = ((dy - new).abs() / scale).amax(dim=1) < 1
            dy = select(active, new, dy)
            active = active & ~converged
            if not bool(active.any()):
                return dy
        self._drop_oldest = True
        warn_caller(f"{self.name}: the corrector's functional iteration did not converge in {self.max_iters} "
                    "iterations; the solution may be inaccurate (use a smaller step, or options max_iters)",
                    RuntimeWarning)
        return dy

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        if any_true(accepted):
            newest = res.f_start if not self.history else select(accepted, res.f_start, self.history[0])
            self.history = [newest, *self.history][: self.tab.max_steps]
            if self._drop_oldest:
                self.history.pop()
        self._drop_oldest = False
        super().accept(accepted, t, u, res)
