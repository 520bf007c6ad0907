"""The generic explicit Runge-Kutta step (Tsit5, DP5, BS3, Vern7, RK4, ...): one step for all tableaus."""

from __future__ import annotations

import torch

from .rhs import RHS
from .stepper import Stepper, StepResult, lincomb
from .tableaus._base import ExplicitRKTableau, as_tensor

Tensor = torch.Tensor


class ExplicitRKStepper(Stepper):
    """``k_i = f(t + c_i dt, u + dt sum_j a_ij k_j)``; error ``dt sum_i btilde_i k_i``."""

    def __init__(self, tab: ExplicitRKTableau, rhs: RHS) -> None:
        super().__init__(rhs)
        self.tab = tab
        self.order = tab.order
        self.adaptive = tab.btilde is not None
        if tab.dense is not None:
            self.dense_matrix = as_tensor(tab.dense, rhs.dtype, rhs.device)

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        tab = self.tab
        assert self.f0 is not None
        h = dt[:, None]
        ks = [self.f0]
        ui = u
        for i in range(1, tab.stages):
            acc = lincomb(tab.a[i], ks)
            ui = u if acc is None else torch.addcmul(u, h, acc)
            ks.append(self.rhs(t + tab.c[i] * dt, ui))
        if tab.fsal:
            u_new, f_end = ui, ks[-1]
        else:
            acc = lincomb(tab.b, ks)
            assert acc is not None
            u_new, f_end = torch.addcmul(u, h, acc), None
        err = None
        if tab.btilde is not None:
            e = lincomb(tab.btilde, ks)
            err = h * e if e is not None else torch.zeros_like(u)
        return StepResult(u_new=u_new, err=err, ok=None, stages=ks, f_start=self.f0, f_end=f_end, stage_scale=h)
