"""What :meth:`pysciml.pinn.lysep.LySep.fit` and :meth:`~pysciml.pinn.lysep.LySep.consistency` return."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LySepResult", "LySepConsistency"]


@dataclass
class LySepResult:
    """What :meth:`LySep.fit` returns.

    Attributes:
        history: one dict per recorded iteration (iteration 0 = before training) with ``iter``, ``time``
            (seconds since the start), ``loss_network`` (J_e: the PINN loss of the plain network with the
            current weights), ``residual_network``, ``boundary_network`` (its two terms), ``loss_lysep``
            (the auxiliary-variable loss), ``penalty`` (its coupling part), and ``rel_l2`` when a
            reference solution was given.
        seconds: wall time of the whole fit.
        iterations: outer iterations done.
        stop_reason: ``"max_iter"``, ``"tol"`` (relative decrease of the LySep loss below ``tol``),
            ``"time_limit"`` or ``"callback"``.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0
    stop_reason: str = "max_iter"


@dataclass
class LySepConsistency:
    """How well the plain network with LySep's weights reproduces LySep's auxiliary variables.

    Attributes:
        max_mismatch: max |network - auxiliary| over all layers, points and kinds.
        mismatch: the same per kind (``"value"``, ``"gradient"``, ``"laplacian"``), relative to nothing.
        residual_network_rms: root mean square PDE residual of the plain network at the interior points.
        residual_lysep_rms: the same on the output layer's auxiliary variables.
        residual_difference_rms: rms of the pointwise difference of the two residuals.
        boundary_difference_max: max |u_network - u_auxiliary| at the boundary points.
    """

    max_mismatch: float
    mismatch: dict[str, float]
    residual_network_rms: float
    residual_lysep_rms: float
    residual_difference_rms: float
    boundary_difference_max: float
