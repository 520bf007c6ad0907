"""Names and options of algorithms and sensitivity algorithms on the Julia side.

Built from the ``julia_name`` of every class, so the mapping is complete by construction; a class
without a Julia counterpart must be listed in :data:`JULIA_UNSUPPORTED_SENSEALGS` with the reason
(tests check both). Torch-free.
"""

from __future__ import annotations

import inspect
from typing import Any

from .. import sensealg as _sensealg
from ..algorithms import ALGORITHMS, Algorithm, ESDIRKAlgorithm, ImplicitAlgorithm
from ..errors import InputError
from ..linsolve_options import GMRES
from ..sensealg import SensitivityAlgorithm

__all__ = [
    "JULIA_ALGORITHMS", "JULIA_SENSEALGS", "JULIA_UNSUPPORTED_SENSEALGS", "SENSEALG_CLASSES",
    "algorithm_options", "julia_algorithm", "julia_sensealg",
]

JULIA_ALGORITHMS: dict[str, str] = {name: cls.julia_name for name, cls in ALGORITHMS.items()}
"""pysciml algorithm class name -> OrdinaryDiffEq algorithm name."""

SENSEALG_CLASSES: dict[str, type[SensitivityAlgorithm]] = {
    name: cls for name, cls in inspect.getmembers(_sensealg, inspect.isclass)
    if issubclass(cls, SensitivityAlgorithm) and cls is not SensitivityAlgorithm
}
"""Every sensitivity algorithm class of :mod:`pysciml.sensealg`, by name."""

JULIA_SENSEALGS: dict[str, str] = {
    name: cls.julia_name for name, cls in SENSEALG_CLASSES.items() if cls.julia_name
}
"""pysciml sensitivity algorithm class name -> SciMLSensitivity type name."""

JULIA_UNSUPPORTED_SENSEALGS: dict[str, str] = {
    "DiscreteAdjoint": (
        "DiscreteAdjoint backpropagates through the solver's own steps, which for the Julia engine are "
        "Julia code calling a Python f: SciMLSensitivity's discrete adjoints (ReverseDiffAdjoint, "
        "ZygoteAdjoint, ...) differentiate Julia code and cannot see through Python. Use a continuous "
        "adjoint (InterpolatingAdjoint, QuadratureAdjoint, GaussAdjoint, BacksolveAdjoint) with "
        "backend='julia', or DiscreteAdjoint with backend='torch'"
    ),
}
"""Sensitivity algorithms without a Julia-engine counterpart, with the reason."""


def julia_algorithm(alg: Algorithm) -> str:
    """The OrdinaryDiffEq name of ``alg`` (raises :class:`InputError` if it has none)."""
    name = getattr(type(alg), "julia_name", "")
    if not name:
        raise InputError(f"{alg!r} has no Julia counterpart; use backend='torch'")
    return name


def algorithm_options(alg: Algorithm) -> dict[str, Any]:
    """Keyword options of PySciML.jl's ``make_algorithm`` for ``alg``.

    ``linsolve``/``restart`` for implicit methods (``DenseLU()`` -> LU, ``GMRES(restart=...)`` ->
    ``KrylovJL_GMRES``), ``newton_kappa``/``max_newton_iters`` for ESDIRK methods (``NLNewton``).
    ``autodiff`` needs no mapping: Julia never differentiates the Python function, the Jacobian comes
    from torch (forward-mode autodiff or, with ``autodiff=False``, finite differences in torch).
    """
    opts: dict[str, Any] = {}
    if isinstance(alg, ImplicitAlgorithm):
        if isinstance(alg.linsolve, GMRES):
            opts.update(linsolve="gmres", restart=int(alg.linsolve.restart))
        else:
            opts["linsolve"] = "lu"
    if isinstance(alg, ESDIRKAlgorithm):
        opts.update(newton_kappa=float(alg.newton_kappa), max_newton_iters=int(alg.max_newton_iters))
    return opts


def julia_sensealg(sensealg: SensitivityAlgorithm) -> tuple[str, dict[str, Any]]:
    """The SciMLSensitivity name and PySciML.jl ``adjoint_gradients`` options for ``sensealg``.

    Raises:
        InputError: ``sensealg`` has no Julia counterpart (the message says why and what to use).
    """
    if not isinstance(sensealg, SensitivityAlgorithm):
        raise InputError(
            f"sensealg must be a pysciml sensitivity algorithm such as InterpolatingAdjoint(), got "
            f"{type(sensealg).__name__}"
        )
    cls_name = type(sensealg).__name__
    if cls_name in JULIA_UNSUPPORTED_SENSEALGS:
        raise InputError(f"{cls_name}() is not available with backend='julia': "
                         f"{JULIA_UNSUPPORTED_SENSEALGS[cls_name]}")
    name = type(sensealg).julia_name
    if not name:
        raise InputError(f"{cls_name}() has no SciMLSensitivity counterpart; use backend='torch'")
    opts: dict[str, Any] = {}
    if hasattr(sensealg, "checkpointing"):
        opts["checkpointing"] = bool(sensealg.checkpointing)
    if hasattr(sensealg, "abstol"):
        opts.update(quad_abstol=float(sensealg.abstol), quad_reltol=float(sensealg.reltol))
    return name, opts
