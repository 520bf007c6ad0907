"""The generic Rosenbrock step (Rosenbrock23, ROS3P, Rodas4, Rodas5P), transformed Hairer-Wanner form.

One Jacobian (and ``df/dt``) per accepted point, one factorization of ``W = M/(gamma dt) - J`` per attempted
step, one linear solve per stage; see :class:`~pysciml.engine.tableaus._base.RosenbrockTableau`.
"""

from __future__ import annotations

import torch

from .interpolation import dense_output_matrix
from .linsolve import DenseLUSolver, KrylovSolver
from .rhs import RHS
from .stages import StageSum
from .stepper import Stepper, StepResult, any_true
from .tableaus._base import RosenbrockTableau

Tensor = torch.Tensor


class RosenbrockStepper(Stepper):
    def __init__(self, tab: RosenbrockTableau, rhs: RHS, linsolve: DenseLUSolver | KrylovSolver,
                 mass: Tensor | None) -> None:
        super().__init__(rhs)
        self.tab = tab
        self.name = tab.name
        self.order = tab.order
        self.linsolve = linsolve
        self.mass = mass
        self.needs_tgrad = any(d != 0.0 for d in tab.d)
        self.fsal = tab.c[-1] == 1.0 and tuple(tab.a[-1]) == tuple(tab.b[: len(tab.a[-1])]) and tab.b[-1] == 0.0
        self.fresh = False  # Jacobian at the current point already computed
        self.ft: Tensor | None = None
        if tab.dense is not None:
            self.dense_matrix = dense_output_matrix(tab.dense, rhs.dtype, rhs.device)
        # stage i needs (a[i], C[i]) . (k_0..k_{i-1}); the end of the step needs (b, btilde) . k
        dtype, device = rhs.dtype, rhs.device
        # wide: Rodas5P's C rounded to float32 moves every float32 step and error estimate by 2.4e-6 of h f
        self.stage_sums = [StageSum(tab.a[i], tab.C[i], dtype=dtype, device=device, wide=True)
                           for i in range(tab.stages)]
        self.final_sum = StageSum(tab.b, tab.btilde, dtype=dtype, device=device, wide=True)

    def _mass_times(self, v: Tensor) -> Tensor:
        return v if self.mass is None else v @ self.mass.T

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        tab = self.tab
        f0 = self.f0
        assert f0 is not None
        if not self.fresh:
            self.linsolve.set_jacobian(self.rhs, t, u, f0)
            if self.needs_tgrad:
                self.ft = self.rhs.tgrad(t, u, f0, dt)
            self.fresh = True
        ok = self.linsolve.factor(1.0 / (tab.gamma * dt))
        inv_dt = (1.0 / dt)[:, None]
        ks: list[Tensor] = []
        f_last = f0
        for i in range(tab.stages):
            if i == 0:
                rhs_i = f0
            else:
                a_k, c_k = self.stage_sums[i](ks)
                f_last = self.rhs(t + tab.c[i] * dt, u if a_k is None else u + a_k)
                rhs_i = f_last if c_k is None else torch.addcmul(f_last, inv_dt, self._mass_times(c_k))
            if self.needs_tgrad and tab.d[i] != 0.0:
                assert self.ft is not None
                rhs_i = torch.addcmul(rhs_i, (tab.d[i] * dt)[:, None], self.ft)
            k, converged = self.linsolve.solve(rhs_i)
            if converged is not None:
                ok = ok & converged
            ks.append(k)
        b_k, err = self.final_sum(ks)
        return StepResult(
            u_new=u if b_k is None else u + b_k, err=err, ok=ok, stages=ks, f_start=f0,
            f_end=f_last if self.fsal else None,
        )

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        super().accept(accepted, t, u, res)
        if any_true(accepted):
            self.fresh = False
