"""Variable-step, variable-order BDF in the fixed-leading-coefficient (FLC) form, orders 1-5 (``FBDF``).

The method state is the solution at the actual past times ``t_n, t_{n-1}, ...`` (unequal spacing), newest first.
A step of order ``k`` and size ``h`` to ``t_{n+1} = t_n + h``

* predicts ``y_pred = P(t_{n+1})`` with ``P`` the polynomial of degree ``k`` through the last ``k + 1`` points
  (Lagrange weights at the actual times, :func:`lagrange_weights`);
* corrects with the corrector polynomial ``Q = P + d phi``, ``d = y_{n+1} - y_pred``, ``phi`` of degree ``k`` with
  ``phi(t_{n+1}) = 1`` and ``phi(t_{n+1} - j h) = 0`` for ``j = 1..k`` (``Q`` agrees with the predictor at equally
  spaced points behind ``t_{n+1}``); collocation ``M Q'(t_{n+1}) = f(t_{n+1}, Q(t_{n+1}))`` is
  ``M (alpha_k / h d + P'(t_{n+1})) = f(t_{n+1}, y_pred + d)`` with the constant-step leading coefficient
  ``alpha_k = phi'(t_{n+1}) h = 1 + 1/2 + ... + 1/k`` whatever the step history. So the Newton matrix
  ``M - (h / alpha_k) J`` changes only with ``h`` and ``k``, and its factorization is reused across steps exactly as
  in the quasi-constant form (:class:`.bdf.BDFMethod`, whose Newton iteration this class inherits with ``psi =
  (h / alpha_k) P'(t_{n+1})``);
* estimates the local error from ``d``: with ``C = y^{(k+1)} / (k+1)!``, ``W = prod_{j=0..k} (t_{n+1} - t_{n-j})``
  and ``S = sum_{j=0..k} 1 / (t_{n+1} - t_{n-j})``, the predictor's error is ``y(t_{n+1}) - y_pred = C W`` and
  its derivative's ``C W S``; the corrector then gives ``d = (h / alpha_k) C W S`` and the local error
  ``y_{n+1} - y(t_{n+1}) = d - C W = (1 - alpha_k / (h S)) d`` (leading terms, past values exact, the
  non-stiff limit). At constant steps ``h S = alpha_{k+1}`` and the constant is ``1 / ((k + 1) alpha_{k+1})``
  (1/3 for backward Euler: ``d = 3/2 h^2 y''`` against the local error ``h^2 y'' / 2``). The same expression at
  orders ``k - 1`` and ``k + 1``, with ``C`` from the divided difference of order ``q + 1`` of the points
  including ``y_{n+1}`` (:meth:`FLCMethod.order_error`; at order ``k`` it equals the estimate from ``d``), drives
  the order selection;
* chooses the next step after every accepted step (the histories are at actual times: nothing is re-expressed):
  the order moves down when order ``k - 1`` allows a larger step, up after ``k + 2`` steps at order ``k`` when
  order ``k + 1`` does; the step doubles when ``safety err^(-1/(k+1))`` is at least 2, is kept while the error
  estimate is at most 1, and otherwise shrinks by ``safety err^(-1/(k+1))`` (at least ``MIN_FACTOR``) as in DASSL
  (with a factorization reused while ``h`` stays within 20 %).

The dense output of a step is the polynomial of degree ``k`` through ``y_{n+1}`` and the ``k`` points before it.
The first step (one point) uses the initial slope instead of a second point (``P(t) = y_0 + (t - t_0) y'_0``).

Sources: the FLC form, K. R. Jackson and R. Sacks-Davis, "An alternative implementation of variable step-size
multistep formulas for stiff ODEs", ACM TOMS 6(3), 1980; K. E. Brenan, S. L. Campbell and L. R. Petzold,
*Numerical Solution of Initial-Value Problems in DAEs*, SIAM 1996, Sec. 5.2 (DASSL's predictor, corrector and
error estimate in the same form); OrdinaryDiffEq.jl's ``FBDF`` (lib/OrdinaryDiffEqBDF: the history at actual
times, Lagrange weights, order decreases checked every step and increases after ``k + 2`` steps, a step kept
within a deadband), read to learn the design; the code and the error-constant derivation above are our own.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..solution import Stats
from .bdf import BDF_KAPPA, MAX_ORDER, MIN_FACTOR, BDFMethod, rms_max
from .linsolve import LinearSolverImpl
from .rhs import RHS

Tensor = torch.Tensor

#: the step grows only when the estimate allows this factor (safety included), and then by this factor (DASSL's
#: doubling rule; measured on ROBER and HIRES at rtol 1e-6: growths by 1.2-2x or up to 5x whenever allowed cost
#: 1.3-2.2x the LU factorizations and 2-8x the rejected steps)
FLC_MAX_GROWTH = 2.0
KEEP = 2.0
#: the history kept: order k + 1's estimate needs k + 3 points
HISTORY = MAX_ORDER + 3


def lagrange_weights(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(l, dl)`` with ``P(0) = sum_j l_j y_j`` and ``P'(0) = sum_j dl_j y_j`` for the polynomial through
    ``(x_j, y_j)`` (distinct nodes, none at 0)."""
    n = x.size
    ell, dell = np.empty(n), np.empty(n)
    for j in range(n):
        others = np.delete(x, j)
        ell[j] = np.prod(-others / (x[j] - others))
        dell[j] = ell[j] * np.sum(1.0 / (0.0 - others))
    return ell, dell


def error_constant(dist: np.ndarray, h: float, alpha: float) -> float:
    """``1 - alpha / (h S)``, ``S = sum 1 / dist``: the local error of the FLC step as a multiple of ``d``, for the
    predictor nodes at ``dist = t_{n+1} - t_{n-j}``."""
    return 1.0 - alpha / (h * float(np.sum(1.0 / dist)))


class FLCMethod(BDFMethod):
    """The per-solve state of an FLC BDF solve: past points at their times, Jacobian, factorization, order.

    Same constructor as :class:`.bdf.BDFMethod` without ``kappa`` (the FLC form here is the BDFs); batched states
    share the step size and the order.
    """

    def __init__(self, rhs: RHS, linsolve: LinearSolverImpl, mass: Tensor | None, max_order: int, max_iters: int,
                 atol: Tensor, rtol: float, stats: Stats) -> None:
        super().__init__(rhs, linsolve, mass, BDF_KAPPA, max_order, max_iters, atol, rtol, stats)
        self.ts: list[float] = []  # the past times, newest first
        self.ys: Tensor | None = None  # (len(ts), B, n), newest first
        self.slope0: Tensor | None = None  # y'(t0), used while only one point is known
        self.since_change = 0  # accepted steps at the current order
        self._pending: tuple[float, float, Tensor, np.ndarray] | None = None  # t_new, h, y_pred, distances

    @property
    def state(self) -> Tensor:
        assert self.ys is not None
        return self.ys[0]

    def start(self, t: Tensor, u: Tensor) -> Tensor:
        """One point ``(t, u)`` (its algebraic components made consistent) and the slope ``y'(t0)``; computes the
        first Jacobian. Returns ``y'(t0)`` ``(B, n)``."""
        u = self.consistent(t, u)
        f0 = self.rhs(t, u)
        self.tracked = bool(f0.requires_grad or u.requires_grad)
        self.linsolve.set_jacobian(self.rhs, t, u.detach(), f0.detach())
        self.jac_stale, self.jac_current = False, True
        self.slope0 = self.slope(t, u, f0)
        self.ts, self.ys = [float(t[0])], u[None]
        self.order, self.since_change = 1, 0
        return self.slope0

    def set_history(self, points: list[Tensor], times: list[float]) -> None:
        """Start at order ``len(points) - 1`` from solution values at ``times`` (oldest first)."""
        self.ts = list(reversed(times))[:HISTORY]
        self.ys = torch.stack(list(reversed(points))[:HISTORY])
        self.order, self.since_change = len(points) - 1, 0

    def rescale(self, factor: float) -> None:
        """Nothing to re-express: the points stay at their times (the next :meth:`predict` uses the new ``h``)."""

    def predict(self, t_new: Tensor, h: float) -> tuple[Tensor, Tensor]:
        assert self.ys is not None and self.slope0 is not None
        k = self.order
        tn1 = float(t_new[0])
        alpha = self.coef.alpha[k]
        if len(self.ts) == 1:  # P(t) = y0 + (t - t0) y0': a double node at t0
            y_pred = self.ys[0] + h * self.slope0
            psi = (h / alpha) * self.slope0
            dist = np.array([h, h])
        else:
            dist = tn1 - np.array(self.ts[: k + 1])
            ell, dell = lagrange_weights(-dist / h)  # nodes in units of h, t_{n+1} at 0
            ys = self.ys[: k + 1]
            y_pred = torch.tensordot(ys.new_tensor(ell), ys, dims=1)
            psi = torch.tensordot(ys.new_tensor(dell / alpha), ys, dims=1)  # (h / alpha) P'(t_{n+1})
        self._pending = (tn1, h, y_pred, dist)
        return y_pred, psi

    def error_norm(self, d: Tensor, y_new: Tensor) -> float:
        assert self._pending is not None
        _, h, _, dist = self._pending
        const = error_constant(dist, h, self.coef.alpha[self.order])
        scale = self.atol + self.rtol * y_new.detach().abs()
        return rms_max(const * d.detach(), scale)

    def accept(self, d: Tensor) -> None:
        """Add ``y_{n+1} = y_pred + d`` at ``t_{n+1}`` to the history."""
        assert self._pending is not None and self.ys is not None
        tn1, _, y_pred, _ = self._pending
        self.ts = [tn1, *self.ts][:HISTORY]
        self.ys = torch.cat(((y_pred + d)[None], self.ys))[:HISTORY]
        self.since_change += 1
        self.jac_current = False
        self._pending = None

    def order_error(self, q: int, y_new: Tensor) -> float:
        """The local error order ``q`` would have made on the step just accepted (``inf`` when the history has
        fewer than ``q + 2`` points): ``C W_q (h S_q / alpha_q - 1)`` with ``C`` the divided difference of order
        ``q + 1`` through ``y_{n+1}, ..., y_{n-q}``."""
        assert self.ys is not None
        if len(self.ts) < q + 2:
            return math.inf
        h = self.ts[0] - self.ts[1]
        x = (np.array(self.ts[: q + 2]) - self.ts[0]) / h  # x_0 = 0 at t_{n+1}
        dd = np.array([1.0 / np.prod(x[j] - np.delete(x, j)) for j in range(q + 2)])
        dist = -x[1:]  # (t_{n+1} - t_{n-j}) / h
        w = dd * np.prod(dist) * (float(np.sum(1.0 / dist)) / self.coef.alpha[q] - 1.0)
        ys = self.ys[: q + 2].detach()
        scale = self.atol + self.rtol * y_new.detach().abs()
        return rms_max(torch.tensordot(ys.new_tensor(w), ys, dims=1), scale)

    def next_factor(self, y_new: Tensor, error_norm: float, iters: int, n_equal: int) -> tuple[float, int]:
        """After every accepted step: the order (down when ``k - 1`` allows a larger step; up after ``k + 2`` steps
        at order ``k`` when ``k + 1`` does) and the step factor (2, 1, or a shrink: the module docstring)."""
        k = self.order
        errs = {k: error_norm}
        if k > 1:
            errs[k - 1] = self.order_error(k - 1, y_new)
        if k < self.max_order and self.since_change >= k + 2:
            errs[k + 1] = self.order_error(k + 1, y_new)
        raw = {q: e ** (-1.0 / (q + 1)) if e > 0 else math.inf for q, e in errs.items()}
        best = max(raw, key=lambda q: (raw[q], q == k))
        if best != k:
            self.order, self.since_change = best, 0
        factor = self.safety(iters) * raw[best]
        if raw[best] >= 1.0 and factor < KEEP:
            return 1.0, n_equal
        return min(FLC_MAX_GROWTH, max(MIN_FACTOR, factor)), 0

    def interpolant(self) -> Tensor:
        """Dense-output coefficients ``(k + 1, B, n)`` in ``theta = (t - t_n) / (t_{n+1} - t_n)``: the polynomial
        through ``y_{n+1}`` and the ``k`` points before it (call after :meth:`accept`)."""
        assert self.ys is not None
        k = min(self.order, len(self.ts) - 1)
        h = self.ts[0] - self.ts[1]
        theta = (np.array(self.ts[: k + 1]) - self.ts[1]) / h
        inv = np.linalg.inv(np.vander(theta, k + 1, increasing=True))  # coeffs = V^-1 y
        ys = self.ys[: k + 1]
        return torch.einsum("pj,jbn->pbn", ys.new_tensor(inv), ys)
