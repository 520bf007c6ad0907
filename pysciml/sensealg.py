"""Sensitivity algorithms: how gradients of a solve are computed (SciMLSensitivity's names and meaning).

Options only; the machinery lives in ``pysciml.sensitivity``. Ranked for typical use:

* :class:`InterpolatingAdjoint` (stiff default, with ``checkpointing=True``): solves the adjoint ODE backwards
  using the forward solution's dense output (or checkpoints re-solved piecewise). Stable on stiff problems
  when the adjoint is solved by a stiff method.
* :class:`QuadratureAdjoint`: the adjoint for ``lambda`` only, then the parameter gradient by quadrature of
  the stored ``lambda``; cheap for many parameters when the forward dense output is kept.
* :class:`GaussAdjoint`: like QuadratureAdjoint but accumulates the parameter integral by Gauss-Kronrod
  quadrature while solving backwards (Julia engine only).
* :class:`DiscreteAdjoint` (non-stiff default for small problems): backpropagation through the solver's
  own steps; the exact gradient of the discrete solution, memory grows with the steps unless checkpointed.
* :class:`BacksolveAdjoint`: re-solves the state backwards with the adjoint; O(1) memory but unstable on
  stiff or dissipative problems (the backward state solve blows up). Offered, not recommended there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "SensitivityAlgorithm", "CheckpointingAdjoint", "DiscreteAdjoint", "BacksolveAdjoint", "InterpolatingAdjoint",
    "QuadratureAdjoint", "GaussAdjoint",
]


@dataclass(frozen=True)
class SensitivityAlgorithm:
    """Base class. ``julia_name`` is the SciMLSensitivity type it maps to ("" if none)."""

    julia_name: ClassVar[str] = ""

    @property
    def name(self) -> str:
        return type(self).__name__


class CheckpointingAdjoint:
    """Capability marker: a continuous adjoint with a ``checkpointing`` option (re-solve the forward problem
    between save points during the backward pass instead of keeping its dense output). Not a dataclass:
    each adjoint declares the field with its own default."""

    checkpointing: bool


@dataclass(frozen=True)
class DiscreteAdjoint(SensitivityAlgorithm):
    """Backpropagate through the steps taken. ``checkpoints``: store the state only at this many points and
    recompute each segment during the backward pass (bounds memory); ``None`` keeps the whole graph."""

    checkpoints: int | None = None


@dataclass(frozen=True)
class BacksolveAdjoint(SensitivityAlgorithm, CheckpointingAdjoint):
    """Continuous adjoint solved backwards together with the state (unstable on stiff problems)."""

    julia_name: ClassVar[str] = "BacksolveAdjoint"
    checkpointing: bool = True


@dataclass(frozen=True)
class InterpolatingAdjoint(SensitivityAlgorithm, CheckpointingAdjoint):
    """Continuous adjoint solved backwards using the forward solution's interpolant.

    ``checkpointing=True`` stores only the states at save points and re-solves each interval forwards
    during the backward pass, so memory does not grow with the number of steps."""

    julia_name: ClassVar[str] = "InterpolatingAdjoint"
    checkpointing: bool = False


@dataclass(frozen=True)
class QuadratureAdjoint(SensitivityAlgorithm):
    """Adjoint for ``lambda`` backwards, then ``dL/dp = int lambda^T df/dp dt`` by quadrature."""

    julia_name: ClassVar[str] = "QuadratureAdjoint"
    abstol: float = 1e-8
    reltol: float = 1e-6


@dataclass(frozen=True)
class GaussAdjoint(SensitivityAlgorithm, CheckpointingAdjoint):
    """SciMLSensitivity's GaussAdjoint (Julia engine only)."""

    julia_name: ClassVar[str] = "GaussAdjoint"
    checkpointing: bool = False
