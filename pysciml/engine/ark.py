"""The generic additive Runge-Kutta step (KenCarp3/4/5 IMEX, Kvaerno5 and KenCarp* fully implicit).

Each implicit stage ``U = psi + gamma h f_I(t_i, U)`` is solved for ``z = U - psi`` by simplified Newton
with the step's single factorization of ``W = I/(gamma h) - J_I`` (the diagonal is constant). Newton stops
on Hairer & Wanner's rate-based test (``eta * ||dz|| <= kappa``, Solving ODEs II, IV.8) and a stage that
diverges or exhausts ``max_newton_iters`` marks the step failed: the loop rejects it and shrinks ``dt``.
A linear implicit part (``SplitODEProblem`` with a matrix) needs one solve per stage, no iteration.
With ``smooth_est=True`` the error estimate is filtered by ``(I - gamma h J)^{-1}`` (Shampine's smoothing,
OrdinaryDiffEq's default): fewer steps on very stiff problems, but it underestimates the error of the
moderately stiff components (HIRES with KenCarp4: global error 10-20x the tolerance with it, under 1x
without), so the default here is the raw estimate.
"""

from __future__ import annotations

import torch

from ..solution import Stats
from .controller import error_norm
from .interpolation import dense_output_matrix
from .linsolve import DenseLUSolver, KrylovSolver
from .rhs import RHS
from .stage_gradient import attach_stage_gradient
from .stages import StageSum
from .stepper import Stepper, StepResult, any_true, select
from .tableaus._base import ARKTableau

Tensor = torch.Tensor


class ARKStepper(Stepper):
    def __init__(
        self,
        tab: ARKTableau,
        rhs_implicit: RHS,
        rhs_explicit: RHS | None,
        linsolve: DenseLUSolver | KrylovSolver,
        stats: Stats,
        *,
        atol: Tensor,
        rtol: float,
        max_iters: int,
        kappa: float,
        smooth_est: bool = False,
    ) -> None:
        super().__init__(rhs_implicit)
        self.tab = tab
        self.name = tab.name
        self.order = tab.order
        self.rhs_e = rhs_explicit
        self.linsolve = linsolve
        self.stats = stats
        self.atol, self.rtol = atol, rtol
        self.max_iters, self.kappa = max_iters, kappa
        self.smooth_est = smooth_est
        self.linear = rhs_implicit.linear is not None
        self.adaptive = tab.btilde is not None
        self.fresh = False
        self.eta: Tensor | None = None
        self.f_tracked = False
        self.fI0: Tensor | None = None
        self.fE0: Tensor | None = None
        last_e = tuple(tab.aE[-1]) + (0.0,) if tab.aE is not None else None
        self.bE = tab.bE if tab.bE is not None and rhs_explicit is not None else None
        self.fsal = (
            tab.c[-1] == 1.0 and tuple(tab.aI[-1]) == tuple(tab.b)
            and (rhs_explicit is None or last_e == tuple(self.bE or tab.b))
        )
        if tab.dense is not None:
            self.dense_matrix = dense_output_matrix(tab.dense, rhs_implicit.dtype, rhs_implicit.device)
        # Stage i sums aI[i][:i] . kI (+ aE[i] . kE); with an explicit part the two run as one sum over the
        # list kI + kE. The end of the step sums (b, btilde) . (kI + kE), or, when the parts have their own
        # weights (ARS222), (b, bE) . [kI, kE] and btilde . (kI + kE).
        dtype, device = rhs_implicit.dtype, rhs_implicit.device
        split = rhs_explicit is not None and tab.aE is not None
        self.stage_sums = [
            StageSum(_padded(tab.aI[i], i) + (_padded(tab.aE[i], i) if split else ()), dtype=dtype,
                     device=device)
            for i in range(tab.stages)
        ]
        s = tab.stages
        if self.bE is not None:
            self.final_sum = StageSum(_padded(tab.b, s) + _padded(self.bE, s), dtype=dtype, device=device)
            self.error_sum = StageSum(tab.btilde or (), dtype=dtype, device=device)
        else:
            self.final_sum = StageSum(tab.b, tab.btilde or (), dtype=dtype, device=device)
            self.error_sum = None

    def init(self, t: Tensor, u: Tensor) -> None:
        self.fI0 = self.rhs(t, u)
        self.fE0 = self.rhs_e(t, u) if self.rhs_e is not None else None
        self.f0 = self.fI0 if self.fE0 is None else self.fI0 + self.fE0
        self.eta = torch.ones(u.shape[0], dtype=u.dtype, device=u.device)
        # f_I carries a graph (its parameters or u0 require grad): stages need their exact derivatives
        self.f_tracked = bool(self.fI0.requires_grad)

    def f_total(self, t: Tensor, u: Tensor) -> Tensor:
        fi = self.rhs(t, u)
        return fi if self.rhs_e is None else fi + self.rhs_e(t, u)

    def _newton(self, t_i: Tensor, psi: Tensor, z: Tensor, gh: Tensor, inv: Tensor) -> tuple[Tensor, Tensor]:
        """Solve ``z = gamma h f_I(t_i, psi + z)``; returns ``z`` and a ``(B,)`` converged mask."""
        assert self.eta is not None
        converged = torch.zeros_like(inv, dtype=torch.bool)
        failed = torch.zeros_like(converged)
        eta = torch.clamp(self.eta, min=torch.finfo(z.dtype).eps).pow(0.8)
        ndz_old = None
        active = torch.ones_like(converged)
        y = psi + z  # the stage value of the current iterate
        for _ in range(self.max_iters):
            self.stats.nnonliniter += 1
            resid = z - gh * self.rhs(t_i, y)
            dz, lin_ok = self.linsolve.solve(-resid * inv[:, None])
            if lin_ok is not None:
                failed = failed | ~lin_ok
                active = active & lin_ok
            z = torch.where(active[:, None], z + dz, z)
            y = psi + z
            ndz = error_norm(dz, y, y, self.atol, self.rtol)
            if ndz_old is not None:
                theta = ndz / torch.clamp(ndz_old, min=torch.finfo(z.dtype).tiny)
                failed = failed | (active & ((theta > 2.0) | ~torch.isfinite(ndz)))
                eta = torch.where(active & (theta < 1.0), theta / (1.0 - theta).clamp(min=1e-12), eta)
            ok_now = active & ~failed & ((eta * ndz <= self.kappa) | (ndz <= 1e-12))
            converged = converged | ok_now
            ndz_old = torch.where(active, ndz, ndz_old if ndz_old is not None else ndz)
            active = ~(converged | failed)
            if not bool(active.any()):
                break
        self.eta = torch.where(converged, eta, self.eta)
        return z, converged

    def _stage(self, t_i: Tensor, psi: Tensor, z: Tensor, gh: Tensor, inv: Tensor) -> tuple[Tensor, Tensor]:
        """Newton solve of one implicit stage. When a graph is being recorded (the discrete adjoint), Newton
        runs without one and the converged stage gets its exact derivative (``stage_gradient``, one more call of
        ``f_I``); a plain solve, with nothing requiring grad, pays nothing for this."""
        if not (torch.is_grad_enabled() and (self.f_tracked or psi.requires_grad)):
            return self._newton(t_i, psi, z, gh, inv)  # nothing to differentiate: no extra f call
        with torch.no_grad():
            z, conv = self._newton(t_i.detach(), psi.detach(), z.detach(), gh.detach(), inv.detach())
        krylov = self.linsolve.opts if isinstance(self.linsolve, KrylovSolver) else None
        return attach_stage_gradient(self.rhs, t_i, psi, z, gh, krylov), conv

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        tab = self.tab
        assert self.fI0 is not None and self.f0 is not None
        if not self.fresh:
            self.linsolve.set_jacobian(self.rhs, t, u, self.fI0)
            self.fresh = True
        inv = 1.0 / (tab.gamma * dt)
        ok = self.linsolve.factor(inv)
        h = dt[:, None]
        gh = tab.gamma * h
        kI = [self.fI0]
        kE = [self.fE0] if self.fE0 is not None else []
        U = u
        for i in range(1, tab.stages):
            (acc,) = self.stage_sums[i](kI + kE)
            psi = u if acc is None else torch.addcmul(u, h, acc)
            t_i = t + tab.c[i] * dt
            if self.linear:
                U, lin_ok = self.linsolve.solve(psi * inv[:, None])
                if lin_ok is not None:
                    ok = ok & lin_ok
                z = U - psi
            else:
                z, conv = self._stage(t_i, psi, gh * kI[-1], gh, inv)
                ok = ok & conv
                U = psi + z
            kI.append(z / gh)
            if self.rhs_e is not None:
                kE.append(self.rhs_e(t_i, U))
        if not bool(ok.all()):
            self.stats.nnonlinconvfail += 1
        ks = [a + b for a, b in zip(kI, kE, strict=True)] if kE else kI
        if self.error_sum is not None:  # the parts have their own weights (ARS222)
            (acc,) = self.final_sum(kI + kE)
            (e,) = self.error_sum(ks)
        else:
            acc, e = self.final_sum(ks)
        u_new = U if self.fsal else (u if acc is None else torch.addcmul(u, h, acc))
        err = torch.zeros_like(u) if e is None else h * e
        if self.smooth_est:
            err, _ = self.linsolve.solve(err * inv[:, None])  # (I - gamma h J)^{-1} err
        self._last = (kI[-1], kE[-1] if kE else None)
        return StepResult(u_new=u_new, err=err, ok=ok, stages=ks, f_start=self.f0,
                          f_end=ks[-1] if self.fsal else None, stage_scale=h)

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        assert self.fI0 is not None
        if not any_true(accepted):
            return
        if self.fsal:
            fI, fE = self._last
        else:
            fI = self.rhs(t, u)
            fE = self.rhs_e(t, u) if self.rhs_e is not None else None
        self.fI0 = select(accepted, fI, self.fI0)
        if fE is not None and self.fE0 is not None:
            self.fE0 = select(accepted, fE, self.fE0)
        self.f0 = self.fI0 if self.fE0 is None else self.fI0 + self.fE0
        self.fresh = False


def _padded(row: tuple[float, ...], n: int) -> tuple[float, ...]:
    """The first ``n`` coefficients of ``row``, padded with zeros to length ``n``."""
    return tuple(row[:n]) + (0.0,) * max(0, n - len(row))
