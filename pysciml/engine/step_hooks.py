"""Optional per-step hooks of the single-trajectory loop (:mod:`.loop_scalar`).

The loop calls a :class:`StepHooks` object, when one is set in ``LoopOptions.hooks``, around every attempted
step: before it (:meth:`StepHooks.attempt`), for its error norm (:meth:`StepHooks.error_norm`) and after the
accept/reject decision (:meth:`StepHooks.after`). With no hooks set (every ``solve``) the loop runs exactly as
without them. ``odeint`` uses them for torchdiffeq's step callbacks, custom error norms and ``jump_t``.
"""

from __future__ import annotations

import torch

from .stepper import Stepper

Tensor = torch.Tensor


class StepHooks:
    """No-op base class: subclasses override what they need. Times and step sizes are Python floats (the
    scalar loop's control), states are engine-layout ``(1, n)`` tensors."""

    def attempt(self, t: float, u: Tensor, dt: float, stepper: Stepper | None = None) -> None:
        """Called before each attempted step from ``(t, u)`` of size ``dt`` (signed); may replace
        ``stepper.f0`` (the cached ``f`` at ``(t, u)``, the step's first stage)."""

    def error_norm(self, err: Tensor, u: Tensor, u_new: Tensor) -> float | None:
        """The step's scaled error norm (accept when ``<= 1``), or ``None`` for the loop's own RMS norm."""
        return None

    def after(self, accepted: bool, t_prev: float, u_prev: Tensor, dt: float, t: float, u: Tensor,
              stepper: Stepper) -> None:
        """Called once the step from ``(t_prev, u_prev)`` of size ``dt`` was accepted (now at ``(t, u)``) or
        rejected, after ``stepper.accept`` (before the step's interpolant is built)."""
