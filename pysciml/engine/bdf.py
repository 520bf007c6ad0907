"""Variable-order backward differentiation formulas (BDF) and numerical differentiation formulas (NDF), orders 1-5.

The method state is the array of backward differences ``D`` of the interpolating polynomial through the last
``k + 1`` solution points at equal spacing ``h`` (quasi-constant step size form): ``D[0] = y_n``, ``D[j] =
nabla^j y_n``. A step of order ``k``

* predicts ``y_pred = D[0] + ... + D[k]`` (the polynomial extrapolated to ``t_n + h``);
* corrects: finds ``d = y_{n+1} - y_pred`` with ``M (psi + d) = c f(t_{n+1}, y_pred + d)``, ``c = h / alpha_k``,
  ``psi = (gamma_1 D[1] + ... + gamma_k D[k]) / alpha_k``, by simplified Newton with the matrix ``M - c J`` (``J``
  and its factorization are reused across steps: the factorization is renewed when ``c`` has moved by more than
  ``REFACTOR`` relative, the Jacobian when Newton fails or converges slowly);
* estimates the local error as ``error_const_k d`` and, after ``k + 1`` steps of one size, the errors orders
  ``k - 1`` and ``k + 1`` would make (``error_const_{k-1} D[k]``, ``error_const_{k+1} nabla^{k+2} y``) to pick
  the order and the next step with the largest admissible size;
* changes the step size by re-expressing the same polynomial on the new spacing (:func:`rescale_matrix`).

The coefficients: ``gamma_j = 1 + 1/2 + ... + 1/j``, ``alpha_k = (1 - kappa_k) gamma_k`` and ``error_const_k =
kappa_k gamma_k + 1/(k + 1)``. ``kappa = 0`` gives the BDFs; the NDFs of Shampine & Reichelt use ``kappa =
(-0.1850, -1/9, -0.0823, -0.0415, 0)`` for orders 1-5 (L. F. Shampine and M. W. Reichelt, "The MATLAB ODE
Suite", SIAM J. Sci. Comput. 18(1), 1997, Table 1), which lower the error constant at little cost in stability.
Sources (the references SciPy's ``BDF`` cites for the same scheme): the variable-order framework, G. D. Byrne and
A. C. Hindmarsh, "A polyalgorithm for the numerical solution of ordinary differential equations", ACM TOMS 1(1),
1975; the quasi-constant step size (re-expressing the differences) and the NDFs, Shampine & Reichelt (1997),
Sec. 2; the error estimates of the constant-step formulas, Hairer, Norsett & Wanner, *Solving ODEs I*, Sec. III.2.

The dense output of a step is the interpolating polynomial itself, of degree ``k``, through ``y_{n+1}`` and the
``k`` points before it (:func:`interpolation_matrix`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from .._lstsq import lstsq
from ..solution import Stats
from .linsolve import KrylovSolver, LinearSolverImpl
from .rhs import RHS
from .stage_gradient import attach_stage_gradient

Tensor = torch.Tensor

MAX_ORDER = 5
#: the NDF coefficients of Shampine & Reichelt (1997), Table 1, for orders 1..5
NDF_KAPPA = (-0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0)
BDF_KAPPA = (0.0,) * MAX_ORDER
#: renew the factorization of ``M - c J`` when ``c`` has moved by more than this (relative)
REFACTOR = 0.2
#: the largest step growth after an accepted step, and the smallest factor after a rejected one
MAX_FACTOR = 10.0
MIN_FACTOR = 0.2
#: the smallest convergence-rate estimate ``eta = rate / (1 - rate)`` a step's first Newton iteration is tested with
#: (the estimate carried from the last step, Hairer & Wanner's ``max(eta, eps)^0.8``, is used when larger). The rates
#: measured on the last steps can be 1e-6 and below while the next step's is 0.01-0.12 (the Oregonator and HIRES at
#: rtol 1e-9): without a floor, one-iteration stops then left iteration errors of up to 1-2 tolerance units. With it
#: a step stops after one iteration only when the first update is within ``newton_tol / 0.005`` (order of 0.1 unit
#: of the error test at rtol 1e-6).
FIRST_RATE_FLOOR = 5e-3


@dataclass(frozen=True)
class Coefficients:
    """``gamma``, ``alpha`` and ``error_const`` indexed by the order ``0 .. MAX_ORDER + 1`` (index 0 unused)."""

    gamma: tuple[float, ...]
    alpha: tuple[float, ...]
    error_const: tuple[float, ...]


def coefficients(kappa: tuple[float, ...]) -> Coefficients:
    """The formula coefficients for ``kappa`` (one value per order 1..5; order 6 is only an error estimate)."""
    kap = (0.0,) + tuple(kappa) + (0.0,)
    gamma = tuple(sum(1.0 / i for i in range(1, j + 1)) for j in range(MAX_ORDER + 2))
    alpha = tuple((1.0 - kap[j]) * gamma[j] for j in range(MAX_ORDER + 2))
    error_const = tuple(kap[j] * gamma[j] + 1.0 / (j + 1) for j in range(MAX_ORDER + 2))
    return Coefficients(gamma, alpha, error_const)


def _difference_map(order: int, ratio: float) -> np.ndarray:
    """``R[i, j] = prod_{l=1..i} (l - 1 - ratio j) / l`` for ``i, j = 0..order``: applied to the differences at
    spacing ``h`` it gives the values of the polynomial's divided-difference basis at spacing ``ratio h``."""
    out = np.zeros((order + 1, order + 1))
    for j in range(order + 1):
        acc = 1.0
        out[0, j] = 1.0
        for i in range(1, order + 1):
            acc *= (i - 1 - ratio * j) / i
            out[i, j] = acc
    return out


def rescale_matrix(order: int, factor: float) -> np.ndarray:
    """``(order + 1, order + 1)`` matrix ``A`` such that ``A @ D[:order + 1]`` are the backward differences of
    the same polynomial at spacing ``factor h`` (``D`` at spacing ``h``)."""
    return (_difference_map(order, factor) @ _difference_map(order, 1.0)).T


@cache
def interpolation_matrix(order: int) -> np.ndarray:
    """``P`` ``(order + 1, order + 1)`` with ``y(theta) = sum_p theta^p sum_j P[p, j] D[j]`` the polynomial the
    differences ``D`` (after a step from ``t_n`` to ``t_n + h``) define, in ``theta = (t - t_n) / h``:
    ``y = D[0] + sum_{j>=1} D[j] prod_{m<j} (theta - 1 + m) / (m + 1)``."""
    out = np.zeros((order + 1, order + 1))
    poly = np.array([1.0])  # coefficients in increasing powers of theta
    out[0, 0] = 1.0
    for j in range(1, order + 1):
        m = j - 1
        poly = np.convolve(poly, np.array([m - 1.0, 1.0])) / (m + 1)
        out[: poly.size, j] = poly
    return out


def rms_max(x: Tensor, scale: Tensor) -> float:
    """The RMS norm of ``x / scale`` per trajectory (``(B, n)``), the largest over the batch, as a float."""
    return float(torch.linalg.vector_norm(x / scale, dim=1).max()) / math.sqrt(x.shape[1])


class BDFMethod:
    """The per-solve state of a variable-order BDF/NDF solve: differences, Jacobian, factorization, order.

    Batched states ``(B, n)`` share the step size and the order (the error norm is the largest over the batch).

    Args:
        rhs: the right-hand side in engine layout; ``linsolve``: solves ``(M/c - J) x = b`` (dense or sparse LU, GMRES).
        mass: constant mass matrix ``(n, n)`` or ``None``; ``kappa``: per-order NDF coefficients.
        max_order: highest order used (1..5); ``max_iters``: Newton iterations per attempt.
        atol ``(1 or B, n)``, rtol: the tolerances (error scale ``atol + rtol |y|``).
    """

    def __init__(self, rhs: RHS, linsolve: LinearSolverImpl, mass: Tensor | None,
                 kappa: tuple[float, ...], max_order: int, max_iters: int, atol: Tensor, rtol: float,
                 stats: Stats) -> None:
        self.rhs, self.linsolve, self.mass, self.stats = rhs, linsolve, mass, stats
        self.coef = coefficients(kappa)
        self.max_order, self.max_iters = max_order, max_iters
        self.atol, self.rtol = atol, rtol
        eps = torch.finfo(rhs.dtype).eps
        self.newton_tol = max(10 * eps / rtol, min(0.03, rtol**0.5))
        self.order = 1
        self.D: Tensor | None = None  # (MAX_ORDER + 3, B, n)
        self.c_lu: float | None = None  # c of the current factorization
        self.jac_current = False  # J computed at the point of the current attempt
        self.jac_stale = True  # compute J before the next attempt
        self.eta = 1.0  # Newton's last rate estimate rate / (1 - rate), carried to the next step
        self.tracked = False  # f or u0 carry a graph: the corrector gets exact derivatives
        self._psi_weights: dict[int, Tensor] = {}  # order -> gamma_1..gamma_k / alpha_k as a tensor

    # ------------------------------------------------------------------ start
    def start(self, t: Tensor, u: Tensor) -> Tensor:
        """Differences for order 1 from ``(t, u)`` at spacing 1 (:meth:`rescale` by the first step ``h`` next):
        ``D[0] = u`` (its algebraic components made consistent first, :meth:`consistent`), ``D[1] = y'(t0)``;
        computes the first Jacobian. Returns ``y'(t0)`` ``(B, n)``; the start state is ``D[0]``."""
        u = self.consistent(t, u)
        f0 = self.rhs(t, u)
        self.tracked = bool(f0.requires_grad or u.requires_grad)
        self.linsolve.set_jacobian(self.rhs, t, u.detach(), f0.detach())
        self.jac_stale, self.jac_current = False, True
        slope = self.slope(t, u, f0)
        D = u.new_zeros((MAX_ORDER + 3, *u.shape))
        self.D = torch.cat((u[None], slope[None], D[2:]))
        self.order = 1
        return slope

    def consistent(self, t: Tensor, u: Tensor, max_iters: int = 10) -> Tensor:
        """``u`` with its algebraic components solving ``0 = f_a(t, u)``: the equations are the zero rows of ``M``,
        the unknowns the components whose columns of ``M`` are zero (as many: a semi-explicit index-1 DAE; else
        ``u`` is returned as given). Newton on those components with the others fixed (what OrdinaryDiffEq's
        ``BrownFullBasicInit`` does); a ``u`` already consistent to 1e-3 of the tolerance costs one ``f`` call and
        one Jacobian and comes back unchanged. The correction carries no gradient (the steps after it enforce the
        equations)."""
        if self.mass is None:
            return u
        rows = (self.mass == 0).all(dim=1).nonzero().squeeze(1)
        cols = (self.mass == 0).all(dim=0).nonzero().squeeze(1)
        if rows.numel() == 0 or rows.numel() != cols.numel():
            return u
        x = u.detach()
        with torch.no_grad():
            for it in range(max_iters):
                f = self.rhs(t, x)
                J = self.rhs.jac(t, x, f)[:, rows][:, :, cols]
                delta = torch.linalg.solve(J, -f[:, rows])
                small = rms_max(delta, self.atol[:, cols] + self.rtol * x[:, cols].abs()) <= 1e-3
                if small and it == 0:
                    return u  # consistent as given
                x = x.index_add(1, cols, delta)
                if small:
                    break
        return u + (x - u.detach())

    def slope(self, t: Tensor, u: Tensor, f0: Tensor) -> Tensor:
        """``y'`` from ``M y' = f``: ``f`` itself without a mass matrix. With a singular ``M`` (``M = U S V^T``, the
        columns of ``U`` whose singular values vanish span its left null space ``N``), the equations ``N^T M y' =
        N^T f`` read ``0 = N^T f``: algebraic constraints, replaced by their derivative along the solution, ``N^T J
        y' = -N^T df/dt``, so the start is consistent for index-1 problems. Zero rows of ``M`` (``0 = f_i``) are
        the simplest case; the transistor amplifier's ``M`` is singular without one (its constraints are sums of
        rows). The rotated system is solved by least squares."""
        if self.mass is None:
            return f0
        M = self.mass
        U, S, _ = torch.linalg.svd(M)
        null = S <= S.max() * M.shape[0] * torch.finfo(M.dtype).eps
        if not bool(null.any()):
            return torch.linalg.solve(M.expand(u.shape[0], -1, -1), f0)
        with torch.no_grad():
            J = self.rhs.jac(t, u.detach(), f0.detach())
            ft = self.rhs.tgrad(t, u.detach(), f0.detach())
        Ut = U.mT
        A = torch.where(null[None, :, None], Ut @ J, (Ut @ M).expand_as(J))
        b = torch.where(null[None, :], -(ft @ U), f0 @ U)
        return lstsq(A, b[:, :, None])[:, :, 0]

    @property
    def state(self) -> Tensor:
        """The current solution value ``y_n`` ``(B, n)``."""
        assert self.D is not None
        return self.D[0]

    def set_history(self, points: list[Tensor], times: list[float]) -> None:
        """Start at order ``len(points) - 1`` from equally spaced solution values (oldest first, ``(B, n)`` each, at
        ``times``): ``D[j]`` becomes the ``j``-th backward difference at the last point (fixed-step solves start
        this way)."""
        assert self.D is not None
        diffs = [points[-1]]
        level = points
        for _ in range(len(points) - 1):
            level = [b - a for a, b in zip(level[:-1], level[1:], strict=True)]
            diffs.append(level[-1])
        self.order = len(points) - 1
        self.D = torch.cat((torch.stack(diffs), self.D[len(points):]))

    # ------------------------------------------------------------------ step-size and order changes
    def rescale(self, factor: float) -> None:
        """Re-express the current polynomial on the spacing ``factor h``."""
        assert self.D is not None
        k = self.order
        if factor == 1.0:
            return
        A = torch.as_tensor(rescale_matrix(k, factor), dtype=self.D.dtype, device=self.D.device)
        head = torch.einsum("ij,jbn->ibn", A, self.D[: k + 1])
        self.D = torch.cat((head, self.D[k + 1:]))

    # ------------------------------------------------------------------ one attempt
    def attempt(self, t_new: Tensor, h: float) -> tuple[bool, Tensor, Tensor, int, bool]:
        """Predict and correct a step of size ``h`` to ``t_new`` (``(B,)``) at the current order.

        Returns ``(converged, y_new, d, newton iterations, finite)``; on a failed Newton the Jacobian is renewed
        once (when it was not already fresh) and the attempt repeated."""
        y_pred, psi = self.predict(t_new, h)
        c = h / self.coef.alpha[self.order]
        while True:
            if self.jac_stale:
                with torch.no_grad():  # autodiff needs no f value; finite differences compute it
                    self.linsolve.set_jacobian(self.rhs, t_new, y_pred.detach(), None)  # type: ignore[arg-type]
                self.jac_stale, self.jac_current, self.c_lu = False, True, None
            converged, y_new, d, iters, finite = self._correct(t_new, y_pred, psi, c)
            if converged or self.jac_current:
                return converged, y_new, d, iters, finite
            self.jac_stale = True

    def predict(self, t_new: Tensor, h: float) -> tuple[Tensor, Tensor]:
        """``(y_pred, psi)`` of a step of size ``h`` to ``t_new``: the polynomial extrapolated, and ``psi`` with the
        corrector ``M (psi + d) = c f(t_new, y_pred + d)``, ``c = h / alpha_k``."""
        assert self.D is not None
        k, cf, D = self.order, self.coef, self.D
        w = self._psi_weights.get(k)
        if w is None:
            w = self._psi_weights[k] = D.new_tensor([g / cf.alpha[k] for g in cf.gamma[1: k + 1]])
        return D[: k + 1].sum(dim=0), torch.tensordot(w, D[1: k + 1], dims=1)

    def _factor(self, c: float, bsz: int) -> bool:
        """Factor ``M/c - J`` unless the current factorization's ``c`` is within ``REFACTOR`` of ``c``."""
        if self.c_lu is not None and abs(c / self.c_lu - 1.0) <= REFACTOR:
            return True
        ok = self.linsolve.factor(torch.full((bsz,), 1.0 / c, dtype=self.rhs.dtype, device=self.rhs.device))
        self.c_lu = c
        if not bool(ok.all()):
            self.c_lu = None
            return False
        return True

    def _correct(self, t_new: Tensor, y_pred: Tensor, psi: Tensor, c: float
                 ) -> tuple[bool, Tensor, Tensor, int, bool]:
        grad = torch.is_grad_enabled() and (self.tracked or y_pred.requires_grad or psi.requires_grad)
        exact = grad and self.mass is None
        if exact:  # Newton without a graph; the converged corrector gets the implicit function's derivative
            with torch.no_grad():
                out = self._newton(t_new, y_pred.detach(), psi.detach(), c)
            converged, y_new, d, iters, finite = out
            if not converged:
                return out
            base = y_pred - psi  # y = base + z with z = c f(t, base + z)
            gh = torch.full((y_pred.shape[0], 1), c, dtype=y_pred.dtype, device=y_pred.device)
            krylov = self.linsolve.opts if isinstance(self.linsolve, KrylovSolver) else None
            z = attach_stage_gradient(self.rhs, t_new, base, (d + psi.detach()), gh, krylov)
            return True, base + z, z - psi, iters, finite
        return self._newton(t_new, y_pred, psi, c)

    def _newton(self, t_new: Tensor, y_pred: Tensor, psi: Tensor, c: float
                ) -> tuple[bool, Tensor, Tensor, int, bool]:
        """Simplified Newton for ``d``; stops on the rate-based test (``eta |dy| < newton_tol``, ``eta`` carried
        from the previous step for the first iteration, at least ``FIRST_RATE_FLOOR``), fails on divergence or a
        non-finite ``f``."""
        if not self._factor(c, y_pred.shape[0]):
            return False, y_pred, torch.zeros_like(y_pred), 0, True
        scale = self.atol + self.rtol * y_pred.detach().abs()
        y, d = y_pred, torch.zeros_like(y_pred)
        tol, eta = self.newton_tol, max(max(self.eta, torch.finfo(y.dtype).eps) ** 0.8, FIRST_RATE_FLOOR)
        norm_old = None
        inv_c = 1.0 / c
        for it in range(self.max_iters):
            self.stats.nnonliniter += 1
            f = self.rhs(t_new, y)  # a NaN/Inf in f makes the increment's norm non-finite: caught below
            lag = psi + d if self.mass is None else (psi + d) @ self.mass.T
            dy, ok = self.linsolve.solve((c * f - lag) * inv_c)
            if ok is not None and not bool(ok.all()):
                return False, y, d, it + 1, True
            norm = rms_max(dy.detach(), scale)
            if norm_old is not None:
                rate = norm / norm_old
                if rate >= 1.0 or rate ** (self.max_iters - it) / (1.0 - rate) * norm > tol:
                    return False, y, d, it + 1, math.isfinite(norm)
                eta = rate / (1.0 - rate)
            if not math.isfinite(norm):
                return False, y, d, it + 1, False
            y, d = y + dy, d + dy
            if norm == 0.0 or eta * norm < tol:
                self.eta = eta
                if eta > 1.0:  # slow: a fresh Jacobian for the next step
                    self.jac_stale = True
                return True, y, d, it + 1, True
            norm_old = norm
        return False, y, d, self.max_iters, True

    # ------------------------------------------------------------------ error, acceptance, order
    def error_norm(self, d: Tensor, y_new: Tensor) -> float:
        scale = self.atol + self.rtol * y_new.detach().abs()
        return rms_max(self.coef.error_const[self.order] * d.detach(), scale)

    def accept(self, d: Tensor) -> None:
        """Update the differences with the accepted correction ``d``: ``D`` then holds ``y_{n+1}`` and its
        backward differences up to ``nabla^{k+2}`` (the last two for the order change)."""
        assert self.D is not None
        k, D = self.order, self.D
        # new D[i] = old D[i] + ... + old D[k] + d for i <= k + 1: a reversed cumulative sum
        head = torch.cat((D[: k + 1], d[None])).flip(0).cumsum(0).flip(0)
        self.D = torch.cat((head, (d - D[k + 1])[None], D[k + 3:]))
        self.jac_current = False

    def safety(self, iters: int) -> float:
        """The step-size safety factor after ``iters`` Newton iterations: ``0.9 (2 m + 1) / (2 m + iters)``."""
        return 0.9 * (2 * self.max_iters + 1) / (2 * self.max_iters + iters)

    def next_factor(self, y_new: Tensor, error_norm: float, iters: int, n_equal: int) -> tuple[float, int]:
        """After an accepted step (the ``n_equal``-th of its size): the next step's size factor and the new count.
        Quasi-constant form: the step and the order change only after ``k + 1`` steps of one size
        (:meth:`choose_order`), by at most ``MAX_FACTOR``."""
        if n_equal < self.order + 1:
            return 1.0, n_equal
        return min(MAX_FACTOR, self.safety(iters) * self.choose_order(y_new, error_norm)), 0

    def choose_order(self, y_new: Tensor, error_norm: float) -> float:
        """After ``k + 1`` steps of one size: the order (``k - 1``, ``k`` or ``k + 1``) that allows the largest next
        step; sets it and returns that step's growth factor estimate (before safety and limits)."""
        assert self.D is not None
        k, ec = self.order, self.coef.error_const
        scale = self.atol + self.rtol * y_new.detach().abs()
        D = self.D.detach()
        err_m = rms_max(ec[k - 1] * D[k], scale) if k > 1 else math.inf
        err_p = rms_max(ec[k + 1] * D[k + 2], scale) if k < self.max_order else math.inf
        factors = [e ** (-1.0 / (k + i)) if e > 0 else math.inf for i, e in enumerate((err_m, error_norm, err_p))]
        best = max(range(3), key=lambda i: factors[i])
        self.order = k + best - 1
        return factors[best]

    def interpolant(self) -> Tensor:
        """Dense-output coefficients ``(k + 1, B, n)`` in ``theta`` of the step just accepted (call after
        :meth:`accept`, before any rescaling)."""
        assert self.D is not None
        k = self.order
        P = torch.as_tensor(interpolation_matrix(k), dtype=self.D.dtype, device=self.D.device)
        return torch.einsum("pj,jbn->pbn", P, self.D[: k + 1])
