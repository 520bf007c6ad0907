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
* estimates the local error as DASSL does, ``err = M ||d||`` with ``M = max(a_{k+1}, |a_{k+1} + a_s - a^0|)``,
  ``a_i = h / (t_{n+1} - t_{n+1-i})``, ``a^0 = -(a_1 + ... + a_k)``, ``a_s = -alpha_k`` (Brenan, Campbell &
  Petzold, Sec. 5.2; DASSL's ``DDASTP``): at equal spacing ``M = 1 / (k + 1)``, the BDF's error constant with
  ``d = nabla^{k+1} y_{n+1}`` (SciPy's ``BDF``, ``QNDF`` with ``kappa = 0``); the second term grows with the
  spread of the step history, where the FLC formula departs from the variable-coefficient one. Derivation of the
  scale: with ``C = y^{(k+1)} / (k+1)!``, ``W = prod_{j=0..k} (t_{n+1} - t_{n-j})`` and ``S = sum_j 1 / (t_{n+1} -
  t_{n-j})``, past values on the local solution give ``d = (h / alpha_k) C W S`` and the local error ``(1 -
  alpha_k / (h S)) d``, ``d / ((k + 1) alpha_{k+1})`` at equal spacing: there ``M d`` is ``alpha_{k+1}`` = 1.5 to 2.45
  times that local error (as SciPy's estimate), a bound rather than a measure (``tests/test_bdf_flc.py`` checks
  it on unequal steps). Orders ``k - 1`` and ``k + 1`` get the same estimate from their predictors' misses
  (:meth:`FLCMethod.order_error`), which drive the order selection;
* keeps the step and the order for ``k + 1`` steps unless the error estimate exceeds 1 (then the step shrinks at
  once: nothing is re-expressed, the points stay at their times), then takes the order among ``k - 1, k, k + 1``
  that allows the largest step and changes the step when that gain is at least ``KEEP`` = 1.5, by at most 10x
  (CVODE's rules for its fixed-leading-coefficient BDF).

The dense output of a step is the polynomial of degree ``k`` through ``y_{n+1}`` and the ``k`` points before it.
The first step (one point) uses the initial slope instead of a second point (``P(t) = y_0 + (t - t_0) y'_0``).

Sources: the FLC form, K. R. Jackson and R. Sacks-Davis, "An alternative implementation of variable step-size
multistep formulas for stiff ODEs", ACM TOMS 6(3), 1980; K. E. Brenan, S. L. Campbell and L. R. Petzold,
*Numerical Solution of Initial-Value Problems in DAEs*, SIAM 1996, Sec. 5.2 (DASSL's predictor, corrector and
error estimate in the same form); the step and order rules of CVODE (A. C. Hindmarsh et al., "SUNDIALS: suite of
nonlinear and differential/algebraic equation solvers", ACM TOMS 31(3), 2005, Sec. 3: changes considered after
``q + 1`` steps, a step kept for gains below 1.5); OrdinaryDiffEq.jl's ``FBDF`` (lib/OrdinaryDiffEqBDF: the
history at actual times, Lagrange weights), read to learn the design; the code and the error-constant derivation
above are our own.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..solution import Stats
from .bdf import BDF_KAPPA, MAX_FACTOR, MAX_ORDER, MIN_FACTOR, BDFMethod, rms_max
from .linsolve import LinearSolverImpl
from .rhs import RHS

Tensor = torch.Tensor

#: a step grows only by at least this factor (CVODE's threshold: smaller gains do not pay for a new factorization;
#: measured on the N = 32 Brusselator at rtol 1e-4 / 1e-6, with the error estimate of an earlier version: 37 / 53
#: LUs against 49 / 72 with DASSL's rule of doubling whenever the estimate allows it)
KEEP = 1.5

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


def error_constant(dist: np.ndarray, h: float, order: int) -> float:
    """DASSL's error constant ``max(a_{k+1}, |a_{k+1} + a_s - a^0|)`` of an order-``k`` step of size ``h`` whose
    predictor nodes lie at ``dist = t_{n+1} - t_{n-j}``, ``j = 0..k``: ``a_i = h / dist[i-1]``, ``a^0 = -(a_1 + ... +
    a_k)``, ``a_s = -(1 + 1/2 + ... + 1/k)``; ``1 / (k + 1)`` at equal spacing."""
    a = h / dist
    a_next = float(a[order])
    a_s = -sum(1.0 / j for j in range(1, order + 1))
    a_0 = -float(np.sum(a[:order]))
    return max(a_next, abs(a_next + a_s - a_0))


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
        self.order = 1
        return self.slope0

    def set_history(self, points: list[Tensor], times: list[float]) -> None:
        """Start at order ``len(points) - 1`` from solution values at ``times`` (oldest first)."""
        self.ts = list(reversed(times))[:HISTORY]
        self.ys = torch.stack(list(reversed(points))[:HISTORY])
        self.order = len(points) - 1

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
            dist = np.array([h, 2.0 * h])  # the same P through (t0 - h, y0 - h y0'): the error constant's nodes
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
        const = error_constant(dist, h, self.order)
        scale = self.atol + self.rtol * y_new.detach().abs()
        return rms_max(const * d.detach(), scale)

    def accept(self, d: Tensor) -> None:
        """Add ``y_{n+1} = y_pred + d`` at ``t_{n+1}`` to the history."""
        assert self._pending is not None and self.ys is not None
        tn1, _, y_pred, _ = self._pending
        self.ts = [tn1, *self.ts][:HISTORY]
        self.ys = torch.cat(((y_pred + d)[None], self.ys))[:HISTORY]
        self.jac_current = False
        self._pending = None

    def order_error(self, q: int, y_new: Tensor) -> float:
        """The error estimate order ``q`` would have made on the step just accepted (``inf`` when the history has
        fewer than ``q + 2`` points): its predictor's miss ``y_{n+1} - P_q(t_{n+1})`` (the divided difference of
        order ``q + 1`` through ``y_{n+1}, ..., y_{n-q}`` times ``prod_j (t_{n+1} - t_{n-j})``; at ``q = k`` this is
        ``d``) times :func:`error_constant` of order ``q`` on the same nodes."""
        assert self.ys is not None
        if len(self.ts) < q + 2:
            return math.inf
        h = self.ts[0] - self.ts[1]
        x = (np.array(self.ts[: q + 2]) - self.ts[0]) / h  # x_0 = 0 at t_{n+1}
        dd = np.array([1.0 / np.prod(x[j] - np.delete(x, j)) for j in range(q + 2)])
        dist = -x[1:]  # (t_{n+1} - t_{n-j}) / h
        w = dd * np.prod(dist) * error_constant(dist, 1.0, q)
        ys = self.ys[: q + 2].detach()
        scale = self.atol + self.rtol * y_new.detach().abs()
        return rms_max(torch.tensordot(ys.new_tensor(w), ys, dims=1), scale)

    def next_factor(self, y_new: Tensor, error_norm: float, iters: int, n_equal: int) -> tuple[float, int]:
        """After an accepted step, the ``n_equal``-th at its size and order: the next step's factor and count.

        Before ``k + 1`` such steps the step is kept unless the estimate exceeds 1 (then it shrinks by ``safety
        err^(-1/(k+1))``); after them the order with the largest admissible step among ``k - 1, k, k + 1`` is taken
        and the step changes when that factor is at least ``KEEP`` (at most ``MAX_FACTOR``) or below 1."""
        k = self.order
        safety = self.safety(iters)
        raw_k = error_norm ** (-1.0 / (k + 1)) if error_norm > 0 else math.inf
        if n_equal < k + 1:
            if raw_k >= 1.0:
                return 1.0, n_equal
            return max(MIN_FACTOR, safety * raw_k), 0
        errs = {k: error_norm}
        if k > 1:
            errs[k - 1] = self.order_error(k - 1, y_new)
        if k < self.max_order:
            errs[k + 1] = self.order_error(k + 1, y_new)
        raw = {q: e ** (-1.0 / (q + 1)) if e > 0 else math.inf for q, e in errs.items()}
        best = max(raw, key=lambda q: (raw[q], q == k))
        changed, self.order = best != k, best
        factor = safety * raw[best]
        if raw[best] >= 1.0 and factor < KEEP:
            return 1.0, 0 if changed else n_equal
        return min(MAX_FACTOR, max(MIN_FACTOR, factor)), 0

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
