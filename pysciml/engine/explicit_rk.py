"""The generic explicit Runge-Kutta step (Tsit5, DP5, BS3, Vern7, RK4, ...): one step for all tableaus."""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from .controller import error_norm
from .fixed_step_check import real_stability_boundary
from .interpolation import dense_output_matrix, polynomial_coefficients
from .rhs import RHS
from .stages import StageSum
from .stepper import Stepper, StepResult
from .tableaus._base import ExplicitRKTableau

Tensor = torch.Tensor


def combined_error_scale(n5: Tensor, n3: Tensor) -> Tensor:
    """DOP853's factor ``(B,)`` on the first error estimate, from the RMS norms ``n5``, ``n3`` ``(B,)`` of the two
    estimates: ``n5 / sqrt(n5**2 + 0.01 n3**2)`` (1 where both are 0). The eager step and the compiled explicit-RK
    program (:mod:`.compiled`) both use it."""
    deno = torch.sqrt(n5 * n5 + 0.01 * n3 * n3)
    return torch.where(deno > 0, n5 / torch.where(deno > 0, deno, torch.ones_like(deno)), torch.ones_like(deno))


class ExplicitRKStepper(Stepper):
    """``k_i = f(t + c_i dt, u + dt sum_j a_ij k_j)``; error ``dt sum_i btilde_i k_i``.

    A tableau whose continuous extension needs extra stages (``extra_c``/``extra_a``, e.g. Vern7) has them
    evaluated lazily in :meth:`interpolant`, i.e. only for steps the loop interpolates (dense output or a
    save point inside the step); they go through ``self.rhs`` and are counted like every other call.

    A tableau with a second set of error weights (``btilde3``, DP8) gets DOP853's combined estimate: with ``e5``
    and ``e3`` the RMS norms (``atol``, ``rtol``) of ``dt sum btilde_i k_i`` and ``dt sum btilde3_i k_i``, the
    error vector is the first estimate scaled by ``e5 / sqrt(e5**2 + 0.01 e3**2)``, so that its RMS norm is
    Hairer's ``e5**2 / sqrt(e5**2 + 0.01 e3**2)``; such a tableau needs the tolerances.
    """

    def __init__(self, tab: ExplicitRKTableau, rhs: RHS, *, atol: Tensor | None = None,
                 rtol: float | None = None) -> None:
        super().__init__(rhs)
        self.tab = tab
        self.name = tab.name
        self.stability_boundary = real_stability_boundary(tab)
        self.order = tab.order
        self.adaptive = tab.btilde is not None
        if tab.btilde3 is not None:
            if atol is None or rtol is None:
                raise ValueError(f"{tab.name}'s combined error estimate needs atol and rtol")
            self.atol, self.rtol = atol, rtol
        k = _constants(tab, rhs.dtype, torch.device(rhs.device), torch.is_inference_mode_enabled())
        if k.dense is not None:
            self.dense_matrix = k.dense
        self._end_stage, self._rows, self._b, self._btilde = k.end_stage, k.rows, k.b, k.btilde
        self._btilde3, self._extra, self._c = k.btilde3, k.extra, k.c

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        tab = self.tab
        assert self.f0 is not None
        h = dt[:, None]
        tc = torch.addcmul(t, self._c, dt).unbind(0)  # stage times t + c_i dt, (B,) each
        ks = [self.f0]
        ui = u
        for i in range(1, tab.stages):
            (acc,) = self._rows[i](ks)
            ui = u if acc is None else torch.addcmul(u, h, acc)
            ks.append(self.rhs(tc[i], ui))
        if tab.fsal:
            u_new, f_end = ui, ks[-1]
        else:
            (acc,) = self._b(ks)
            assert acc is not None
            u_new, f_end = torch.addcmul(u, h, acc), None
        err = None
        if self._btilde3 is not None:
            err = self._combined_error(ks, h, u, u_new)
        elif self._btilde is not None:
            (e,) = self._btilde(ks)
            err = h * e if e is not None else torch.zeros_like(u)
        return StepResult(u_new=u_new, err=err, ok=None, stages=ks, f_start=self.f0, f_end=f_end, stage_scale=h,
                          t_start=t)

    def _combined_error(self, ks: list[Tensor], h: Tensor, u: Tensor, u_new: Tensor) -> Tensor:
        """DOP853's estimate (class docstring) as a vector whose RMS norm is ``e5**2 / sqrt(e5**2 + 0.01 e3**2)``."""
        assert self._btilde3 is not None
        e5, e3 = (h * e for e in self._btilde3(ks))
        with torch.no_grad():  # a step-size decision: the scale factor carries no gradient
            n5 = error_norm(e5, u, u_new, self.atol, self.rtol)
            n3 = error_norm(e3, u, u_new, self.atol, self.rtol)
            scale = combined_error_scale(n5, n3)
        return e5 * scale[:, None]

    def interpolant(self, u: Tensor, dt: Tensor, res: StepResult) -> Tensor:
        """Dense-output coefficients ``(q+1, B, n)``; evaluates the tableau's extra stages first, if any."""
        tab = self.tab
        if not tab.extra_c or self.dense_matrix is None:
            return super().interpolant(u, dt, res)
        assert res.t_start is not None and self.f0 is not None
        h = dt[:, None]
        ks = list(res.stages)
        for j, cj in enumerate(tab.extra_c):
            if self._end_stage[j]:
                ks.append(self.f0)  # f(t + dt, u_new), refreshed by accept()
                continue
            (acc,) = self._extra[j](ks)
            ui = u if acc is None else torch.addcmul(u, h, acc)
            ks.append(self.rhs(res.t_start + cj * dt, ui))
        return polynomial_coefficients(u, self.dense_matrix, torch.stack(ks) * h)


class _Constants(NamedTuple):
    """A tableau's per-step constants on one dtype and device (:func:`_constants`)."""

    dense: Tensor | None
    end_stage: list[bool]
    rows: list[StageSum]
    b: StageSum
    btilde: StageSum | None
    btilde3: StageSum | None
    extra: list[StageSum]
    c: Tensor


@functools.lru_cache(maxsize=64)
def _constants(tab: ExplicitRKTableau, dtype: torch.dtype, device: torch.device, inference: bool) -> _Constants:
    """The stage rows as prepared sums, the nodes as a column ``(s, 1)``, the dense-output matrix, on ``dtype`` and
    ``device``: built once per (tableau, dtype, device) and shared by every stepper (none of them writes to these
    tensors). ``inference``: whether inference mode is on (its tensors cannot be saved for backward outside it, so
    they are kept apart)."""
    s = tab.stages
    # An extra stage at c = 1 whose row is b is f(t + dt, u_new): after accept() that is self.f0 for
    # every accepted trajectory, the only ones whose interpolant is used (rejected steps are recorded
    # with zero width and never saved from), so it costs no further f call.
    end_stage = [cj == 1.0 and tuple(row[:s]) == tuple(tab.b) and not any(row[s:])
                 for cj, row in zip(tab.extra_c, tab.extra_a, strict=True)]
    return _Constants(
        dense=dense_output_matrix(tab.dense, dtype, device) if tab.dense is not None else None,
        end_stage=end_stage,
        rows=[StageSum(tab.a[i], dtype=dtype, device=device) for i in range(s)],
        b=StageSum(tab.b, dtype=dtype, device=device),
        btilde=StageSum(tab.btilde, dtype=dtype, device=device) if tab.btilde is not None else None,
        btilde3=StageSum(tab.btilde, tab.btilde3, dtype=dtype, device=device) if tab.btilde3 is not None else None,
        extra=[StageSum(row, dtype=dtype, device=device) for row in tab.extra_a],
        c=torch.tensor([[float(c)] for c in tab.c], dtype=dtype, device=device),
    )
