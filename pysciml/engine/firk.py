"""The fully implicit Runge-Kutta step (Radau IIA 3/5, Gauss-Legendre 4/6), after Hairer & Wanner's radau5.

One step from ``(t, u)`` with step ``h`` solves the ``s n`` stage equations for ``Z_i = U_i - u``::

    M Z_i = h sum_j a_ij f(t + c_j h, u + Z_j),      u1 = u + sum_i d_i Z_i,   d = b^T A^{-1}

(``u1 = u + Z_s`` for the stiffly accurate Radau methods) by simplified Newton with one Jacobian ``J`` at a step
start, transformed to one real or complex ``n x n`` system per eigenvalue (pair) of ``A^{-1}``
(:mod:`.firk_blocks`; for ``n <= 8`` a whole iteration is one product with a matrix built per factorization,
:mod:`.firk_fused`). As in radau5 (Solving ODEs II, IV.8):

* starting values: the previous step's collocation polynomial extrapolated to the new stages (zero on the first
  step);
* Newton stops when ``eta ||dW|| <= kappa`` with ``eta = theta / (1 - theta)`` and ``theta`` the observed
  contraction; it fails (the loop rejects the step and shrinks ``dt``) when ``theta >= 0.99``, when the
  predicted error after the remaining iterations stays above ``kappa``, or after ``max_iters`` iterations,
  unless the increment is already at round-off level (``100 eps`` of the stage values: at ``rtol`` near
  ``1e-13`` the contraction of round-off noise is ~1 and would otherwise read as divergence);
* the Jacobian is kept for the next step when Newton contracted fast (``theta <= jac_reuse``, radau5's 0.001)
  and recomputed after a rejected step unless it is already at the step start, per trajectory; the
  factorizations are reused while neither ``J`` nor ``h`` changes (fixed steps, and the steps that
  :class:`~.firk_control.PredictiveController` holds);
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

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..linsolve_options import DenseLU, SparseLU
from ..solution import Stats
from .controller import error_norm
from .firk_blocks import BlockFactors, transformation
from .firk_fused import FusedFactors
from .firk_sparse import SparseBlockFactors
from .rhs import RHS
from .stepper import Stepper, StepResult
from .tableaus.firk import FIRKTableau

Tensor = torch.Tensor


def _plain(x: Tensor) -> Tensor:
    """``x`` without autograd history (``x`` itself when it has none: a detach is a dispatched op)."""
    return x.detach() if x.requires_grad else x


@dataclass
class FIRKStepResult(StepResult):
    """A FIRK step's result; ``poly``: the collocation polynomial's coefficients ``(B, q+1, n)`` where the fused
    small-system step computed them (then ``stages`` is empty: :meth:`FIRKStepper.interpolant` reads ``poly``)."""

    poly: Tensor | None = None


class _Rate:
    """radau5's rate control of one simplified Newton solve (Solving ODEs II, IV.8), per trajectory on Python floats:
    one transfer of the ``(B,)`` increment norms per iteration instead of a dozen tensor operations.

    ``state``: 0 iterating, 1 converged, -1 failed, 2 not asked to iterate (``rows`` False)."""

    def __init__(self, stepper: FIRKStepper, bsz: int, rows: list[bool] | None) -> None:
        self.eps = torch.finfo(stepper.rhs.dtype).eps
        self.max_iters, self.kappa = stepper.max_iters, stepper.kappa
        self.root = 1.0 / math.sqrt(stepper.tab.stages * stepper.rhs.n)  # the RMS norm's factor
        self.faccon = [max(f, self.eps) ** 0.8 for f in stepper.faccon]
        self.theta = [stepper.jac_reuse] * bsz
        self.dynold, self.thqold = [1.0] * bsz, [1.0] * bsz
        self.state = [0 if rows is None or r else 2 for r in (rows or [True] * bsz)]

    def noise(self, u_col: Tensor, Z: Tensor, weight: Tensor) -> list[float]:
        """The norm of the stage values' round-off, ``100 eps ||(|u| + |Z|) weight||``, per trajectory."""
        mag = (u_col.abs() + Z.abs()) * weight
        return (torch.linalg.vector_norm(mag, dim=(1, 2)) * (100 * self.eps * self.root)).tolist()

    def update(self, it: int, raw: list[float], noise: Callable[[], list[float]]) -> list[bool]:
        """Iteration ``it``'s test on the increments' weighted norms ``raw`` (times :attr:`root`: RMS); returns
        which trajectories take the increment (``noise()`` is asked only when one would fail)."""
        move = [False] * len(raw)
        levels: list[float] | None = None
        for b, st in enumerate(self.state):
            if st:
                continue
            dyno = raw[b] * self.root
            bad = not math.isfinite(dyno)
            if it >= 1 and not bad:
                thq = dyno / self.dynold[b]
                self.theta[b] = thq if it == 1 else math.sqrt(thq * self.thqold[b])
                self.thqold[b] = thq
                if self.theta[b] >= 0.99:
                    bad = True
                else:
                    self.faccon[b] = self.theta[b] / (1.0 - self.theta[b])
                    bad = self.faccon[b] * dyno * self.theta[b] ** (self.max_iters - 1 - it) >= self.kappa
            self.dynold[b] = max(dyno, self.eps)
            if bad and math.isfinite(dyno):  # increments at round-off level contract no further: converged
                levels = noise() if levels is None else levels
                bad = dyno > levels[b]
            if bad:
                self.state[b] = -1
                continue
            move[b] = True
            if self.faccon[b] * dyno <= self.kappa:
                self.state[b] = 1
        return move

    def done(self) -> bool:
        return all(self.state)

    def finish(self, stepper: FIRKStepper) -> list[bool]:
        """Which trajectories converged; their rate memory goes to ``stepper`` (``faccon``, ``theta``)."""
        conv = [st == 1 for st in self.state]
        stepper.faccon = [fc if ok else old for fc, ok, old in zip(self.faccon, conv, stepper.faccon, strict=True)]
        stepper.theta = [th if ok else old for th, ok, old in zip(self.theta, conv, stepper.theta, strict=True)]
        return conv


class FIRKStepper(Stepper):
    """Per-solve state of a fully implicit RK solve: the Jacobian, its block factorizations, Newton's rate."""

    def __init__(self, tab: FIRKTableau, rhs: RHS, stats: Stats, mass: Tensor | None, *, atol: Tensor,
                 rtol: float, max_iters: int = 7, kappa: float | None = None, jac_reuse: float = 1e-3,
                 linsolve: DenseLU | SparseLU | None = None) -> None:
        super().__init__(rhs)
        self.tab = tab
        self.name = tab.name
        self.order = tab.embedded_order + 1 if tab.embedded_order is not None else tab.order
        self.adaptive = tab.gamma0 is not None
        self.stats = stats
        self.mass = mass
        self.atol, self.rtol = atol, rtol
        self.atol_col = atol[:, None]  # (1 or B, 1, n)
        self.max_iters = max_iters
        eps = torch.finfo(rhs.dtype).eps
        self.kappa = kappa if kappa is not None else max(10 * eps / rtol, min(0.03, rtol ** 0.5))
        self.jac_reuse = jac_reuse
        dtype, device = rhs.dtype, rhs.device
        tr = transformation(tab.a)
        self.tr = tr

        def tens(x: np.ndarray) -> Tensor:
            return torch.tensor(x, dtype=dtype, device=device)

        self.T, self.Tinv, self.Ainv = tens(tr.T), tens(tr.Tinv), tens(tr.Ainv)
        self.A = tens(np.array(tab.a))
        self.c = tens(np.array(tab.c))
        self.c_col = self.c.view(1, -1, 1)
        self.c_rows = self.c.view(-1, 1)
        self.d = tens(np.array(tab.b) @ tr.Ainv)  # u1 = u + sum d_i Z_i
        self.dense_matrix = tens(np.array(tab.dense))
        self.dense_ainv = tens(np.array(tab.dense) @ tr.Ainv)  # the polynomial's coefficients from Z
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
        self.factors: BlockFactors
        if isinstance(linsolve, SparseLU):
            self.factors = SparseBlockFactors(stats, mass, tr, linsolve, rhs)
        elif rhs.n <= BlockFactors.SMALL:
            self.factors = FusedFactors(stats, mass, tr, dtype, device, n=rhs.n, err_mu=self.err_mu,
                                        ez=None if self.err_mu is None else np.array(tab.ez),
                                        dense_ainv=np.array(tab.dense) @ tr.Ainv)
        else:
            self.factors = BlockFactors(stats, mass, tr, dtype, device)
        self.J: Tensor | None = None
        self.one = torch.ones((), dtype=dtype, device=device)
        self.powers = torch.arange(tab.stages + 1, dtype=dtype, device=device)
        self._factored: tuple[int, Tensor] | None = None
        self._jac_count = 0
        self.f_tracked = False

    # ------------------------------------------------------------------ state
    def init(self, t: Tensor, u: Tensor) -> None:
        super().init(t, u)
        assert self.f0 is not None
        b = u.shape[0]
        self.f_tracked = bool(self.f0.requires_grad)
        self.faccon = [1.0] * b  # Newton's eta = theta / (1 - theta) of the last converged step, per trajectory
        self.theta = [0.0] * b  # its contraction rate
        # per trajectory, on Python bools: first step or after a rejection (refine the estimate); the row of J must
        # be recomputed; the row of J is at the current step start; a previous accepted step exists (predictor)
        self.refine, self.need_jac, self.jac_at_start, self.have = [True] * b, [True] * b, [False] * b, [False] * b
        self.prev: tuple[Tensor, Tensor] | None = None  # (coeffs (B, q+1, n), dt) of the last accepted steps
        self._pending: tuple[Tensor, Tensor] | None = None
        self.J, self._factored = None, None
        # the step's constant products as batched (B, ., .) views, so each is one bmm (torch.matmul of a 2-D
        # constant with (B, s, n) dispatches the same bmm through an expand and three reshapes)
        self.bT, self.bTinv, self.bAinv = (x.expand(b, *x.shape) for x in (self.T, self.Tinv, self.Ainv))
        self.bdense = self.dense_ainv.expand(b, *self.dense_ainv.shape)
        self.bez = self.ez.expand(b, 1, -1) if self.err_mu is not None else None
        self.all_ok = torch.ones(b, dtype=torch.bool, device=u.device)  # StepResult.ok when every row succeeded

    def _mass(self, v: Tensor) -> Tensor:
        return v if self.mass is None else v @ self.mass.T

    def _stage_f(self, t: Tensor, u: Tensor, Z: Tensor, h: Tensor, times: list[Tensor] | None = None,
                 u_col: Tensor | None = None) -> Tensor:
        """``f(t + c_i h, u + Z_i)`` for every stage: ``(B, s, n)`` (one call of ``f`` per stage); ``times``: the
        stage times and ``u_col``: ``u[:, None]``, if the caller has them."""
        if times is None:
            times = [t + c * h for c in self.tab.c]
        stages = (Z + (u[:, None] if u_col is None else u_col)).unbind(1)
        return torch.stack([self.rhs(ti, ui) for ti, ui in zip(times, stages, strict=True)], 1)

    def _predict(self, u_col: Tensor, dt: Tensor) -> Tensor:
        """Starting stage values ``U`` ``(B, s, n)``: the last accepted step's collocation polynomial at the new stage
        times (``u`` where there is none; ``u_col = u[:, None]``)."""
        b, _, n = u_col.shape
        if self.prev is None:
            return u_col.expand(b, self.tab.stages, n)
        coeffs, dt_old = self.prev  # (B, q+1, n), (B,)
        theta = torch.addcmul(self.one, self.c_col, (dt / dt_old).view(-1, 1, 1))  # (B, s, 1)
        U = torch.bmm(theta.pow(self.powers), coeffs)  # the polynomial at theta, every stage at once
        if all(self.have):
            return U
        return torch.where(torch.tensor(self.have, device=U.device)[:, None, None], U, u_col)

    # ------------------------------------------------------------------ Newton
    def _newton(self, t: Tensor, u: Tensor, f0: Tensor, h: Tensor, U0: Tensor, times: list[Tensor],
                u_col: Tensor, weight: Tensor, rows: list[bool] | None = None) -> tuple[Tensor, list[bool]]:
        """Simplified Newton on the transformed stage system, one ``n x n`` (complex) solve per block
        (:class:`~.firk_blocks.BlockFactors`); returns ``Z (B, s, n)`` and whether each trajectory converged (only
        the ``rows`` given iterate; the others are left as they are and reported False). ``U0``: the starting stage
        values; ``times``: the stage times ``t + c_i h``; ``u_col``: ``u[:, None]``; ``weight``:
        ``1 / (atol + rtol |u|)`` ``(B, 1, n)``."""
        rate = _Rate(self, u.shape[0], rows)
        Z = U0 - u_col
        W = torch.bmm(self.bTinv, Z)
        for it in range(self.max_iters):
            self.stats.nnonliniter += 1
            dW = self.factors.increment(self._stage_f(t, u, Z, h, times, u_col), W)
            move = rate.update(it, torch.linalg.vector_norm(dW * weight, dim=(1, 2)).tolist(),
                               lambda Z=Z: rate.noise(u_col, Z, weight))  # type: ignore[misc]
            if all(move):
                W = W + dW
            elif any(move):
                W = torch.where(torch.tensor(move, device=W.device)[:, None, None], W + dW, W)
            Z = torch.bmm(self.bT, W)
            if rate.done():
                break
        return Z, rate.finish(self)

    def _newton_fused(self, t: Tensor, u: Tensor, f0: Tensor, h: Tensor, U0: Tensor,
                      times: list[Tensor], u_col: Tensor, weight: Tensor,
                      rows: list[bool] | None = None) -> tuple[Tensor | None, list[bool]]:
        """:meth:`_newton` for small systems (:class:`~.firk_fused.FusedFactors`): one product with ``P`` per
        iteration gives the increments, the next stage values, the estimate and the polynomial. Returns the last
        product that moved each trajectory ``(B, slots, n)`` (``None`` if none moved) and the convergence flags."""
        fac = self.factors
        assert isinstance(fac, FusedFactors) and fac.P is not None
        bsz, s, n = U0.shape
        rate = _Rate(self, bsz, rows)
        Us, Zs = U0.unbind(1), (U0 - u_col).unbind(1)
        y: Tensor | None = None
        for it in range(self.max_iters):
            self.stats.nnonliniter += 1
            self.stats.nsolve += len(self.tr.blocks)
            x = torch.cat([*(self.rhs(ti, ui) for ti, ui in zip(times, Us, strict=True)), *Zs, u, f0], 1)
            new = torch.bmm(fac.P, x.view(bsz, -1, 1)).view(bsz, fac.slots, n)
            move = rate.update(it, torch.linalg.vector_norm(new[:, :s] * weight, dim=(1, 2)).tolist(),
                               lambda Zs=Zs: rate.noise(u_col, torch.stack(Zs, 1), weight))  # type: ignore[misc]
            if all(move):
                y = new
            elif any(move):
                y = torch.where(torch.tensor(move, device=new.device)[:, None, None], new,
                                fac.start(U0, u_col) if y is None else y)
            if rate.done():
                break
            assert y is not None  # a trajectory still iterating moved
            parts = y.unbind(1)
            Us, Zs = parts[fac.U:fac.U + s], parts[fac.Z:fac.Z + s]
        return y, rate.finish(self)

    def _attach_gradient(self, t: Tensor, u: Tensor, h: Tensor, Zs: Tensor,
                         stage_jacobians: Callable[[], list[Tensor]] | None = None) -> Tensor:
        """``Z*`` carrying the exact derivative of the stage equations (module docstring). ``stage_jacobians``:
        ``J`` at each stage point, ``[(B, n, n)] * s``, where the caller computes them (a compiled program)."""
        s = self.tab.stages
        F = self._stage_f(t, u, Zs, h)  # recorded: depends on u and f's parameters
        G = self._mass(Zs) - h[:, None, None] * torch.matmul(self.A, F)
        if not G.requires_grad:
            return Zs
        with torch.no_grad():
            Js = [self.factors.jacobian(self.rhs, t + self.tab.c[j] * h, (u + Zs[:, j]).detach()) for j in range(s)] \
                if stage_jacobians is None else stage_jacobians()
        dz = self.factors.stage_solve(self.tab.a, h, Js, G)
        return Zs - (dz - dz.detach())

    # ------------------------------------------------------------------ the step
    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        f0 = self.f0
        assert f0 is not None
        h, td, ud, f0d = _plain(dt), _plain(t), _plain(u), _plain(f0)
        self._refresh(td, ud, f0d, h)
        tracked = torch.is_grad_enabled() and (self.f_tracked or u.requires_grad)
        fused = isinstance(self.factors, FusedFactors)
        newton = self._newton_fused if fused else self._newton
        with torch.no_grad():
            u_col = ud[:, None]
            times = list(torch.addcmul(td, self.c_rows, h).unbind(0))  # t + c_i h: (B,) each
            weight = torch.add(self.atol_col, u_col.abs(), alpha=self.rtol).reciprocal()  # (B, 1, n)
            U0 = self._predict(u_col, h)
            out, conv = newton(td, ud, f0d, h, U0, times, u_col, weight)
            # as SciPy's Radau: a Newton failure with a Jacobian from an earlier point retries at the same h with a
            # fresh one (a rejection would shrink the step for what is often only a stale Jacobian)
            retry = [not c and not a for c, a in zip(conv, self.jac_at_start, strict=True)]
            if any(retry):
                self.need_jac = retry
                self._refresh(td, ud, f0d, h)
                out2, conv2 = newton(td, ud, f0d, h, U0, times, u_col, weight, rows=retry)
                out = out2 if all(retry) else self._merge(out, out2, retry, U0, u_col)
                conv = [c2 if r else c for c, c2, r in zip(conv, conv2, retry, strict=True)]
        assert self.factors.ok_list is not None
        good = [c and f for c, f in zip(conv, self.factors.ok_list, strict=True)]
        if all(good):
            ok = self.all_ok
        else:
            ok = torch.tensor(good, device=u.device)
            self.stats.nnonlinconvfail += 1
        if fused:
            return self._finish_fused(t, u, h, out, U0, u_col, ok, tracked)
        Z = out
        if tracked:
            Z = self._attach_gradient(t, u, h, Z)
        u_new = u + (Z[:, -1] if self.tab.stiffly_accurate else torch.matmul(self.d, Z))
        K = torch.bmm(self.bAinv, Z)  # h k_i
        with torch.no_grad():
            Zd = _plain(Z)
            if self.err_mu is not None:
                assert self.bez is not None
                mz = self._mass(torch.bmm(self.bez, Zd).view(Zd.shape[0], Zd.shape[2])) / h[:, None]
                err = self._refine(td, ud, u_new.detach(), self.factors.solve(self.err_mu, f0d + mz), lambda: mz)
            else:  # no estimate (Gauss): the fixed-step checks read zeros, as for ARS222
                err = torch.zeros_like(ud)
            # the collocation polynomial's coefficients (B, q+1, n), from Z through (dense A^{-1}) in one product
            self._pending = (torch.cat((u_col, torch.bmm(self.bdense, Zd)), 1), h)
        return StepResult(u_new=u_new, err=err, ok=ok, stages=list(K.unbind(1)), f_start=f0)

    def _merge(self, out: Tensor | None, out2: Tensor | None, rows: list[bool], U0: Tensor,
               u_col: Tensor) -> Tensor:
        """The second Newton pass's result on ``rows``, the first's elsewhere."""
        if isinstance(self.factors, FusedFactors):
            out = self.factors.start(U0, u_col) if out is None else out
            out2 = self.factors.start(U0, u_col) if out2 is None else out2
        assert out is not None and out2 is not None
        return torch.where(torch.tensor(rows, device=out.device)[:, None, None], out2, out)

    def _finish_fused(self, t: Tensor, u: Tensor, h: Tensor, y: Tensor | None, U0: Tensor, u_col: Tensor,
                      ok: Tensor, tracked: bool) -> StepResult:
        """:meth:`step` after a fused Newton: the new state, the estimate and the polynomial from the last product."""
        fac = self.factors
        assert isinstance(fac, FusedFactors)
        s, q1 = self.tab.stages, self.dense_ainv.shape[0] + 1
        y = fac.start(U0, u_col) if y is None else y  # Newton failed at its first iteration (the step is rejected)
        poly: Tensor | None = None
        if tracked:
            Z = self._attach_gradient(t, u, h, y[:, fac.Z:fac.Z + s])
            u_new = u + (Z[:, -1] if self.tab.stiffly_accurate else torch.matmul(self.d, Z))
            stages = list(torch.bmm(self.bAinv, Z).unbind(1))
        else:
            u_new = u + (y[:, fac.Z + s - 1] if self.tab.stiffly_accurate
                         else torch.matmul(self.d, y[:, fac.Z:fac.Z + s]))
            stages = []
        with torch.no_grad():
            if fac.ERR is None:
                err = torch.zeros_like(y[:, 0])
            else:
                assert self.err_mu is not None
                self.stats.nsolve += 1
                err = self._refine(_plain(t), _plain(u), _plain(u_new), y[:, fac.ERR],
                                   lambda: y[:, fac.V] / h[:, None])
            coeffs = y[:, fac.UROW:fac.UROW + q1]  # [u, C_1 .. C_q]: the collocation polynomial (B, q+1, n)
            self._pending = (coeffs, h)
            if not tracked:
                poly = coeffs
        return FIRKStepResult(u_new=u_new, err=err, ok=ok, stages=stages, f_start=self.f0, poly=poly)

    def interpolant(self, u: Tensor, dt: Tensor, res: StepResult) -> Tensor:
        """The step's collocation polynomial ``(q+1, B, n)``: from the fused product where the step kept it."""
        if isinstance(res, FIRKStepResult) and res.poly is not None:
            return res.poly.transpose(0, 1)
        return super().interpolant(u, dt, res)

    def _refresh(self, t: Tensor, u: Tensor, f0: Tensor, h: Tensor) -> None:
        """Recompute the rows of ``J`` that need it (one batched Jacobian) and factor when ``J`` or ``h`` changed."""
        if self.J is None or any(self.need_jac):
            J = self.factors.jacobian(self.rhs, t, u, f0)  # dense (B, n, n) or sparse values (B, nnz)
            if self.J is None or all(self.need_jac):
                self.J = J
            else:
                mask = torch.tensor(self.need_jac, device=u.device).view(-1, *([1] * (J.ndim - 1)))
                self.J = torch.where(mask, J, self.J)
            self._jac_count += 1
            self.jac_at_start = [a or b for a, b in zip(self.jac_at_start, self.need_jac, strict=True)]
            self.need_jac = [False] * len(self.need_jac)
        if (self._factored is None or self._factored[0] != self._jac_count
                or not torch.equal(self._factored[1], h)):
            self.factors.factor(self.mus, self.J, h)
            self._factored = (self._jac_count, h)

    def _refine(self, t: Tensor, u: Tensor, u_new: Tensor, err: Tensor, mz: Callable[[], Tensor]) -> Tensor:
        """The estimate ``err`` again with ``f(t, u + err)`` in place of ``f(t, u)`` (``mz()``:
        ``M sum_i ez_i Z_i / h``) for the trajectories on their first step or after a rejection whose ``err`` is
        ``>= 1``."""
        assert self.err_mu is not None
        if any(self.refine):
            big = (error_norm(err, u, u_new, self.atol, self.rtol) >= 1.0).tolist()
            again = [a and b for a, b in zip(self.refine, big, strict=True)]
            if any(again):
                err2 = self.factors.solve(self.err_mu, self.rhs(t, u + err) + mz())
                err = err2 if all(again) else torch.where(torch.tensor(again, device=u.device)[:, None], err2, err)
        return err

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        super().accept(accepted, t, u, res)
        acc = accepted.tolist() if isinstance(accepted, Tensor) else [accepted] * u.shape[0]
        assert self._pending is not None
        coeffs, h = self._pending
        if all(acc) or self.prev is None:
            if any(acc):
                self.prev = (coeffs, h)
        else:
            mask = torch.tensor(acc, device=u.device)
            old, dt_old = self.prev
            self.prev = (torch.where(mask[:, None, None], coeffs, old), torch.where(mask, h, dt_old))
        self.have = [a or b for a, b in zip(self.have, acc, strict=True)]
        self.refine = [not a for a in acc]
        # an accepted step moved the start: keep J only while Newton contracted fast (theta <= jac_reuse); a rejected
        # step retries with a Jacobian at its start
        for b, a in enumerate(acc):
            if a:
                self.need_jac[b] = self.need_jac[b] or self.jac_reuse <= 0.0 or self.theta[b] > self.jac_reuse
                self.jac_at_start[b] = False
            elif not self.jac_at_start[b]:
                self.need_jac[b] = True
