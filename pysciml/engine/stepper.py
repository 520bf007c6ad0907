"""What every method family provides to the shared loop: one step, the FSAL/cache update, the interpolant.

A stepper holds the per-solve cache (``f`` at the current point, the Jacobian and its factorization) and
the tableau as tensors; the loop (``engine.loop``) owns time, step size, acceptance and saving.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .fixed_step_check import FixedStepCheck
from .interpolation import hermite_coefficients, polynomial_coefficients
from .rhs import RHS

Tensor = torch.Tensor


@dataclass
class StepResult:
    """One attempted step for every trajectory (``B`` = batch).

    Attributes:
        u_new: proposed states ``(B, n)``.
        err: local error estimate ``(B, n)`` (``None`` for fixed-step-only methods).
        ok: ``(B,)`` False where a Newton or linear solve failed (the step must be rejected), or ``None``.
        stages: the stage vectors (a list of ``(B, n)``); times ``stage_scale`` (``(B, 1)``, the step for
            RK families, ``None`` for Rosenbrock) they are the increments the family's dense matrix expects.
        f_start: ``f(t, u)`` at the step's start ``(B, n)``; f_end: ``f(t + dt, u_new)`` if the method
            produced it (FSAL), else ``None``.
        t_start: the step's start times ``(B,)``, set by steppers whose interpolant evaluates ``f`` again
            (explicit RK with extra interpolation stages); ``None`` otherwise.
        control: ``(B, 3)`` computed inside a compiled step (:mod:`.compiled`): the scaled error norm (``inf``
            where the step is unusable), whether ``u_new`` is finite, whether the solves succeeded (1.0/0.0),
            so the loop reads them in one transfer; ``None`` for eager steps (the loop computes them).
        coeffs: the step's dense-output coefficients when a compiled step computed them, else ``None``.
    """

    u_new: Tensor
    err: Tensor | None
    ok: Tensor | None
    stages: list[Tensor]
    f_start: Tensor
    f_end: Tensor | None = None
    stage_scale: Tensor | None = None
    t_start: Tensor | None = None
    control: Tensor | None = None
    coeffs: Tensor | None = None


def select(mask: Tensor | bool, a: Tensor, b: Tensor) -> Tensor:
    """Rows of ``a`` where ``mask`` (``(B,)`` or a plain bool for the unbatched loop), else rows of ``b``."""
    if isinstance(mask, bool):
        return a if mask else b
    return torch.where(mask[:, None], a, b)


def any_true(mask: Tensor | bool) -> bool:
    return mask if isinstance(mask, bool) else bool(mask.any())


class Stepper:
    """Base class: the FSAL cache of ``f(t, u)`` and the interpolant shared by all families."""

    order: int = 1
    adaptive: bool = True
    dense_matrix: Tensor | None = None
    #: the method's name (from its tableau), for messages
    name: str = ""
    #: ``x_s`` of the real stability interval ``[-x_s, 0]`` of an explicit method; ``None`` for implicit ones
    stability_boundary: float | None = None
    #: whether fixed-step solves run ``fixed_step_check`` on this stepper (``False`` for methods with neither an
    #: error estimate nor a real stability interval, e.g. the symplectic ones)
    checks_fixed_steps: bool = True

    def __init__(self, rhs: RHS) -> None:
        self.rhs = rhs
        self.f0: Tensor | None = None

    def init(self, t: Tensor, u: Tensor) -> None:
        """Prepare for the first step from ``(t, u)``."""
        self.f0 = self.rhs(t, u)

    def f_total(self, t: Tensor, u: Tensor) -> Tensor:
        """The whole right-hand side (for split problems, the sum of the parts)."""
        return self.rhs(t, u)

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        raise NotImplementedError

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        """After the loop merged accepted steps into ``(t, u)``: refresh ``f(t, u)`` where it changed.

        ``accepted`` is a ``(B,)`` mask, or a plain bool from the unbatched loop."""
        if res.f_end is not None:
            self.f0 = select(accepted, res.f_end, res.f_start)
        elif any_true(accepted):
            self.f0 = select(accepted, self.rhs(t, u), res.f_start)
        else:
            self.f0 = res.f_start

    def fixed_step_check(self, bsz: int, atol: Tensor, dtype: torch.dtype,
                         device: torch.device) -> FixedStepCheck | None:
        """The check a fixed-step solve runs on this stepper (:mod:`.fixed_step_check`), ``None`` for none."""
        if not self.checks_fixed_steps:
            return None
        return FixedStepCheck(bsz, self.stability_boundary, atol, dtype, device)

    def check_fields(self, u: Tensor, res: StepResult) -> tuple[Tensor, Tensor]:
        """The right-hand side at the start and the end of the last accepted step from ``u`` (for the check)."""
        assert self.f0 is not None
        return res.f_start, self.f0

    def interpolant(self, u: Tensor, dt: Tensor, res: StepResult) -> Tensor:
        """Dense-output coefficients ``(q+1, B, n)`` of the step from ``u`` (call after :meth:`accept`)."""
        if self.dense_matrix is not None:
            stages = torch.stack(res.stages)
            if res.stage_scale is not None:
                stages = stages * res.stage_scale
            return polynomial_coefficients(u, self.dense_matrix, stages)
        assert self.f0 is not None
        return hermite_coefficients(u, res.u_new, res.f_start, self.f0, dt)
