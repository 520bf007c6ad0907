"""The fully implicit Runge-Kutta step (Radau IIA 3/5, Gauss-Legendre 4/6), after Hairer & Wanner's radau5.

One step from ``(t, u)`` with step ``h`` solves the ``s n`` stage equations for ``Z_i = U_i - u``::

    M Z_i = h sum_j a_ij f(t + c_j h, u + Z_j),      u1 = u + sum_i d_i Z_i,   d = b^T A^{-1}

(``u1 = u + Z_s`` for the stiffly accurate Radau methods) by simplified Newton with one Jacobian ``J`` at a step
start, transformed to one real or complex ``n x n`` system per eigenvalue (pair) of ``A^{-1}``
(:mod:`.firk_blocks`). As in radau5 (Solving ODEs II, IV.8):

* starting values: the previous step's collocation polynomial extrapolated to the new stages (zero on the first
  step);
* Newton stops when ``eta ||dW|| <= kappa`` with ``eta = theta / (1 - theta)`` and ``theta`` the observed
  contraction; it fails (the loop rejects the step and shrinks ``dt``) when ``theta >= 0.99``, when the
  predicted error after the remaining iterations stays above ``kappa``, or after ``max_iters`` iterations;
* the Jacobian is kept for the next step when Newton contracted fast (``theta <= jac_reuse``, radau5's 0.001)
  and recomputed after a rejected step unless it is already at the step start; the factorizations are reused
  while neither ``J`` nor ``h`` changes (fixed steps);
* the error estimate ``(M / (gamma0 h) - J)^{-1} (f(t, u) + M sum_i ez_i Z_i / h)`` (the tableau's ``gamma0``,
  ``ez``), recomputed once with ``f(t, u + err)`` in place of ``f(t, u)`` on the first step and after a rejected
  step when it is ``>= 1`` (radau5's refinement for very stiff components).

``stepper.order`` is the order the step-size controller and the initial step use: the local error order of the
estimate (``embedded_order + 1``: 4 for Radau IIA 5, 3 for Radau IIA 3), not the method's order.

Gradients (the discrete adjoint): Newton runs without a graph and the converged stages get the exact derivative
of the stage equations (implicit function theorem): ``Z = Z* - K^{-1} G(Z*)`` with ``G`` the stage residual
(recorded) and ``K = I (x) M - h (A (x) I) diag(J(U_j))`` (detached, the Jacobians at the converged stages, one
dense ``s n x s n`` solve per step), so gradients do not depend on Newton's tolerance.
"""

from __future__ import annotations

import numpy as np
import torch

from ..solution import Stats
from .controller import error_norm
from .firk_blocks import BlockFactors, transformation
from .interpolation import polynomial_coefficients
from .rhs import RHS
from .stepper import Stepper, StepResult
from .tableaus.firk import FIRKTableau

Tensor = torch.Tensor


class FIRKStepper(Stepper):
    """Per-solve state of a fully implicit RK solve: the Jacobian, its block factorizations, Newton's rate."""

    def __init__(self, tab: FIRKTableau, rhs: RHS, stats: Stats, mass: Tensor | None, *, atol: Tensor,
                 rtol: float, max_iters: int = 7, kappa: float | None = None, jac_reuse: float = 1e-3) -> None:
        super().__init__(rhs)
        self.tab = tab
        self.name = tab.name
        self.order = tab.embedded_order + 1 if tab.embedded_order is not None else tab.order
        self.adaptive = tab.gamma0 is not None
        self.stats = stats
        self.mass = mass
        self.atol, self.rtol = atol, rtol
        self.max_iters = max_iters
        eps = torch.finfo(rhs.dtype).eps
        self.kappa = kappa if kappa is not None else max(10 * eps / rtol, min(0.03, rtol ** 0.5))
        self.jac_reuse = jac_reuse
        dtype, device = rhs.dtype, rhs.device
        tr = transformation(tab.a)
        self.tr = tr

        def tens(x: np.ndarray) -> Tensor:
            return torch.tensor(x, dtype=dtype, device=device)

        self.T, self.Tinv, self.Lam, self.Ainv = tens(tr.T), tens(tr.Tinv), tens(tr.Lam), tens(tr.Ainv)
        self.A = tens(np.array(tab.a))
        self.c = tens(np.array(tab.c))
        self.d = tens(np.array(tab.b) @ tr.Ainv)  # u1 = u + sum d_i Z_i
        self.dense_matrix = tens(np.array(tab.dense))
        self.mus: list[complex | float] = [mu for _, mu in tr.blocks]
        self.err_mu: float | None = None
        if tab.gamma0 is not None:
            self.err_mu = 1.0 / tab.gamma0
            reuse = [mu for mu in self.mus if isinstance(mu, float) and abs(mu - self.err_mu) <= 1e-12 * mu]
            if reuse:
                self.err_mu = reuse[0]  # radau5: the real block's factorization filters the estimate
            else:
                self.mus.append(self.err_mu)
            self.ez = tens(np.array(tab.ez))
        self.factors = BlockFactors(stats, mass)
        self.J: Tensor | None = None
        self.need_jac: Tensor | None = None  # (B,): the row of J must be recomputed before the next step
        self.jac_at_start: Tensor | None = None  # (B,): the row of J was evaluated at the current step start
        self._factored: tuple[int, Tensor] | None = None
        self._jac_count = 0
        self.f_tracked = False

    # ------------------------------------------------------------------ state
    def init(self, t: Tensor, u: Tensor) -> None:
        super().init(t, u)
        assert self.f0 is not None
        b = u.shape[0]
        self.f_tracked = bool(self.f0.requires_grad)
        self.faccon = torch.ones(b, dtype=u.dtype, device=u.device)
        self.theta = torch.zeros_like(self.faccon)
        self.refine = torch.ones(b, dtype=torch.bool, device=u.device)  # first step or after a rejection
        self.prev: tuple[Tensor, Tensor, Tensor] | None = None  # (coeffs, dt, have) of the last accepted steps
        self._pending: tuple[Tensor, Tensor] | None = None
        self.need_jac = torch.ones(b, dtype=torch.bool, device=u.device)
        self.jac_at_start = torch.zeros_like(self.need_jac)
        self.J, self._factored = None, None

    def _mass(self, v: Tensor) -> Tensor:
        return v if self.mass is None else v @ self.mass.T

    def _stage_f(self, t: Tensor, u: Tensor, Z: Tensor, h: Tensor) -> Tensor:
        """``f(t + c_i h, u + Z_i)`` for every stage: ``(B, s, n)`` (one call of ``f`` per stage)."""
        return torch.stack([self.rhs(t + self.tab.c[i] * h, u + Z[:, i]) for i in range(self.tab.stages)], dim=1)

    def _predict(self, u: Tensor, dt: Tensor) -> Tensor:
        """Starting stage increments: the last accepted step's collocation polynomial at the new stage times."""
        s = self.tab.stages
        if self.prev is None:
            return u.new_zeros((u.shape[0], s, u.shape[1]))
        coeffs, dt_old, have = self.prev
        theta = (1.0 + self.c[None, :] * (dt / dt_old)[:, None])[:, :, None]  # (B, s, 1)
        U = coeffs[-1][:, None]
        for j in range(coeffs.shape[0] - 2, -1, -1):  # Horner in theta, every stage at once
            U = U * theta + coeffs[j][:, None]
        Z = U - u[:, None]
        return torch.where(have[:, None, None], Z, torch.zeros_like(Z))

    # ------------------------------------------------------------------ Newton
    def _newton(self, t: Tensor, u: Tensor, h: Tensor, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Simplified Newton on the transformed stage system; returns ``Z (B, s, n)`` and a ``(B,)`` converged mask."""
        bsz = u.shape[0]
        eps = torch.finfo(u.dtype).eps
        scale = self.atol + self.rtol * u.abs()  # (B, n)
        W = torch.matmul(self.Tinv, Z)
        faccon = torch.clamp(self.faccon, min=eps).pow(0.8)
        theta = torch.full_like(faccon, self.jac_reuse)
        converged = torch.zeros(bsz, dtype=torch.bool, device=u.device)
        failed = torch.zeros_like(converged)
        active = ~converged
        dynold = thqold = torch.ones_like(faccon)
        for it in range(self.max_iters):
            self.stats.nnonliniter += 1
            F = self._stage_f(t, u, Z, h)
            LW = torch.matmul(self.Lam, W) / h[:, None, None]
            R = torch.matmul(self.Tinv, F) - self._mass(LW)
            dW = self.factors.solve_transformed(self.tr, R)
            dyno = torch.sqrt(((dW / scale[:, None]) ** 2).mean(dim=(1, 2)))
            bad = ~torch.isfinite(dyno)
            if it >= 1:
                thq = dyno / dynold
                theta = torch.where(active, thq if it == 1 else torch.sqrt(thq * thqold), theta)
                thqold = thq
                diverging = theta >= 0.99
                fc = theta / (1.0 - theta).clamp(min=eps)
                predicted = fc * dyno * theta.pow(self.max_iters - 1 - it) / self.kappa
                bad = bad | diverging | (predicted >= 1.0)
                faccon = torch.where(active & ~diverging, fc, faccon)
            failed = failed | (active & bad)
            dynold = torch.clamp(dyno, min=eps)
            move = active & ~failed
            W = torch.where(move[:, None, None], W + dW, W)
            Z = torch.matmul(self.T, W)
            converged = converged | (move & (faccon * dyno <= self.kappa))
            active = ~(converged | failed)
            if not bool(active.any()):
                break
        self.faccon = torch.where(converged, faccon, self.faccon)
        self.theta = torch.where(converged, theta, self.theta)
        return Z, converged

    def _attach_gradient(self, t: Tensor, u: Tensor, h: Tensor, Zs: Tensor) -> Tensor:
        """``Z*`` carrying the exact derivative of the stage equations (module docstring)."""
        s, (bsz, n) = self.tab.stages, u.shape
        F = self._stage_f(t, u, Zs, h)  # recorded: depends on u and f's parameters
        G = self._mass(Zs) - h[:, None, None] * torch.matmul(self.A, F)
        if not G.requires_grad:
            return Zs
        with torch.no_grad():
            Js = [self.rhs.jac(t + self.tab.c[j] * h, (u + Zs[:, j]).detach()).detach() for j in range(s)]
            M = torch.eye(n, dtype=u.dtype, device=u.device) if self.mass is None else self.mass
            K = torch.zeros(bsz, s * n, s * n, dtype=u.dtype, device=u.device)
            for i in range(s):
                for j in range(s):
                    blk = -(h * self.tab.a[i][j])[:, None, None] * Js[j]
                    if i == j:
                        blk = blk + M
                    K[:, i * n:(i + 1) * n, j * n:(j + 1) * n] = blk
        dz = torch.linalg.solve(K, G.reshape(bsz, s * n)).reshape(bsz, s, n)
        return Zs - (dz - dz.detach())

    # ------------------------------------------------------------------ the step
    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        f0 = self.f0
        assert f0 is not None
        assert self.need_jac is not None and self.jac_at_start is not None
        if self.J is None or bool(self.need_jac.any()):  # one batched Jacobian; only the rows that need it change
            J = self.rhs.jac(t.detach(), u.detach(), f0.detach()).detach()
            self.J = J if self.J is None else torch.where(self.need_jac[:, None, None], J, self.J)
            self._jac_count += 1
            self.jac_at_start = self.jac_at_start | self.need_jac
            self.need_jac = torch.zeros_like(self.need_jac)
        h = dt.detach()
        if (self._factored is None or self._factored[0] != self._jac_count
                or not torch.equal(self._factored[1], h)):
            self.factors.factor(self.mus, self.J, h)
            self._factored = (self._jac_count, h)
        assert self.factors.ok is not None
        tracked = torch.is_grad_enabled() and (self.f_tracked or u.requires_grad)
        with torch.no_grad():
            Z0 = self._predict(u.detach(), h)
            Z, ok = self._newton(t.detach(), u.detach(), h, Z0)
        ok = ok & self.factors.ok
        if not bool(ok.all()):
            self.stats.nnonlinconvfail += 1
        if tracked:
            Z = self._attach_gradient(t, u, h, Z)
        u_new = u + (Z[:, -1] if self.tab.stiffly_accurate else torch.matmul(self.d, Z))
        K = torch.matmul(self.Ainv, Z)  # h k_i
        err = torch.zeros_like(u_new)  # no estimate (Gauss): the fixed-step checks read zeros, as for ARS222
        if self.err_mu is not None:
            with torch.no_grad():
                err = self._estimate(t.detach(), u.detach(), u_new.detach(), h, Z.detach(), f0.detach())
        with torch.no_grad():
            self._pending = (polynomial_coefficients(u.detach(), self.dense_matrix, K.detach().transpose(0, 1)), h)
        return StepResult(u_new=u_new, err=err, ok=ok, stages=list(K.unbind(1)), f_start=f0)

    def _estimate(self, t: Tensor, u: Tensor, u_new: Tensor, h: Tensor, Z: Tensor, f0: Tensor) -> Tensor:
        assert self.err_mu is not None
        mz = self._mass(torch.matmul(self.ez, Z)) / h[:, None]
        err = self.factors.solve(self.err_mu, f0 + mz)
        if bool(self.refine.any()):
            again = self.refine & (error_norm(err, u, u_new, self.atol, self.rtol) >= 1.0)
            if bool(again.any()):
                err2 = self.factors.solve(self.err_mu, self.rhs(t, u + err) + mz)
                err = torch.where(again[:, None], err2, err)
        return err

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        super().accept(accepted, t, u, res)
        bsz = u.shape[0]
        acc = accepted if isinstance(accepted, Tensor) else torch.full((bsz,), accepted, device=u.device)
        assert self._pending is not None
        coeffs, h = self._pending
        if self.prev is None:
            self.prev = (coeffs, h, acc.clone())
        else:
            old, dt_old, have = self.prev
            self.prev = (torch.where(acc[None, :, None], coeffs, old), torch.where(acc, h, dt_old), have | acc)
        self.refine = ~acc
        assert self.need_jac is not None and self.jac_at_start is not None
        # an accepted step moved the start: keep J only while Newton contracted fast; a rejected step retries with
        # a Jacobian at its start
        slow = self.theta > self.jac_reuse if self.jac_reuse > 0.0 else torch.ones_like(acc)
        self.need_jac = self.need_jac | (acc & slow) | (~acc & ~self.jac_at_start)
        self.jac_at_start = self.jac_at_start & ~acc
