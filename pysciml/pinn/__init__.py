"""Physics-informed networks: derivative helpers, domains and sampling, conditions, loss weights, training, LySep.

Names are imported from their modules on first access (PEP 562), so ``import pysciml.pinn`` is cheap and a
module is loaded only when one of its names is used:

* :mod:`~pysciml.pinn.derivatives`: ``gradient``, ``jacobian``, ``divergence``, ``laplacian`` (exact or
  Hutchinson), ``partial`` (any order, mixed), ``hessian``, ``hvp``: batched over points with ``torch.func``;
* :mod:`~pysciml.pinn.geometry`: ``Box``, ``Interval``, ``Ball``, ``Disk`` and their unions ``|``, differences
  ``-`` and intersections ``&``, with interior and boundary sampling, normals and volumes;
* :mod:`~pysciml.pinn.sampling`: ``qmc_points`` (uniform, Latin hypercube, Sobol', Halton) and
  ``residual_adaptive_refinement``;
* :mod:`~pysciml.pinn.conditions`, :mod:`~pysciml.pinn.pinn`, :mod:`~pysciml.pinn.weights`,
  :mod:`~pysciml.pinn.training`, :mod:`~pysciml.pinn.plots`, :mod:`~pysciml.pinn.lysep`: boundary and initial
  conditions, the ``PINN`` model, loss weights, the Adam + L-BFGS trainer, plots and the layer-separation model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # derivatives
    "gradient": "derivatives", "jacobian": "derivatives", "divergence": "derivatives", "laplacian": "derivatives",
    "partial": "derivatives", "hessian": "derivatives", "hvp": "derivatives",
    # geometry
    "Domain": "geometry", "Box": "geometry", "Interval": "geometry", "Ball": "geometry", "Disk": "geometry",
    "Union": "geometry", "Difference": "geometry", "Intersection": "geometry",
    # sampling
    "qmc_points": "sampling", "residual_adaptive_refinement": "sampling",
    # conditions and the model
    "DirichletBC": "conditions", "NeumannBC": "conditions", "PeriodicBC": "conditions",
    "InitialCondition": "conditions", "HardConstraint": "conditions", "PointData": "conditions", "PINN": "pinn",
    # loss weights, training, plots
    "FixedWeights": "weights", "GradNormWeights": "weights", "NTKWeights": "weights", "LossWeights": "weights",
    "train": "training", "TrainResult": "training",
    "plot_solution": "plots", "plot_error": "plots", "plot_loss": "plots",
    # layer separation
    "LySep": "lysep", "LinearPDE": "lysep_ops", "LySepResult": "lysep_results", "LySepConsistency": "lysep_results",
}
"""Public name -> the submodule of :mod:`pysciml.pinn` that defines it."""

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them when first used
    from .conditions import DirichletBC, HardConstraint, InitialCondition, NeumannBC, PeriodicBC, PointData  # noqa: F401
    from .derivatives import divergence, gradient, hessian, hvp, jacobian, laplacian, partial  # noqa: F401
    from .geometry import Ball, Box, Difference, Disk, Domain, Intersection, Interval, Union  # noqa: F401
    from .lysep import LySep  # noqa: F401
    from .lysep_ops import LinearPDE  # noqa: F401
    from .lysep_results import LySepConsistency, LySepResult  # noqa: F401
    from .pinn import PINN  # noqa: F401
    from .plots import plot_error, plot_loss, plot_solution  # noqa: F401
    from .sampling import qmc_points, residual_adaptive_refinement  # noqa: F401
    from .training import TrainResult, train  # noqa: F401
    from .weights import FixedWeights, GradNormWeights, LossWeights, NTKWeights  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
