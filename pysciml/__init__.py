"""pysciml: stiff ODE solvers on PyTorch tensors, with adjoint gradients and an optional Julia engine.

The public API, re-exported explicitly; implementation modules are private. The subpackages
:mod:`~pysciml.models`, :mod:`~pysciml.pinn`, :mod:`~pysciml.problems`, :mod:`~pysciml.analysis`,
:mod:`~pysciml.datasets`, :mod:`~pysciml.sensitivity` and :mod:`~pysciml.julia` are attributes too
(``ps.models.NeuralODE``), each imported on first access (PEP 562) so that ``import pysciml`` does not pay for
the ones it does not use. :mod:`~pysciml.devtools` (convergence orders, work-precision, reference solutions) is
an attribute as well; it is loaded with :func:`crossvalidate`, which shares its solver adapter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .julia import _eager  # noqa: F401  (first: starts Julia before torch if PYSCIML_JULIA_EAGER=1)

# isort: split
from .algorithms import (
    BS3,
    DP5,
    RK4,
    ROS3P,
    SDIRK2,
    TRBDF2,
    AdaptiveHeun,
    Algorithm,
    Euler,
    Heun,
    ImplicitEuler,
    KenCarp3,
    KenCarp4,
    KenCarp5,
    Kvaerno3,
    Kvaerno5,
    Midpoint,
    Ralston,
    Rodas4,
    Rodas5,
    Rodas5P,
    Rosenbrock23,
    Trapezoid,
    Tsit5,
    Vern7,
)
from .algorithms_adams import (
    AB3,
    AB4,
    AB5,
    ABM32,
    ABM43,
    ABM54,
    AdamsAlgorithm,
    AdamsBashforth,
    AdamsBashforthMoulton,
)
from .algorithms_bdf import FBDF, QNDF, BDFAlgorithm
from .algorithms_firk import GaussLegendre4, GaussLegendre6, RadauIIA3, RadauIIA5
from .algorithms_native import ARS222, DP8, IMEXSSP2, RK38, RKF12, Alexander2, Heun3
from .algorithms_symplectic import (
    ImplicitMidpoint,
    Leapfrog,
    McAte5,
    SymplecticAlgorithm,
    VelocityVerlet,
    Yoshida4,
    Yoshida6,
)
from .analysis.crossvalidate import CrossValidation, crossvalidate
from .callbacks import CallbackSet, ContinuousCallback, DiscreteCallback
from .engine.controller import PIController
from .engine.sparsity import sparsity_pattern
from .ensemble import (
    EnsembleBatched,
    EnsembleDistributed,
    EnsembleProblem,
    EnsembleSerial,
    EnsembleSolution,
    EnsembleSummary,
)
from .errors import InputError, JuliaNotAvailableError, RHSError, SolverError
from .linsolve_options import GMRES, DenseLU, SparseLU
from .native import warmup
from .odeint import odeint, odeint_adjoint
from .odeint_event import odeint_event
from .problem import ODEProblem, SplitODEProblem
from .problem_dynamical import HamiltonianProblem, SecondOrderODEProblem
from .sensealg import (
    BacksolveAdjoint,
    DiscreteAdjoint,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
)
from .solution import ODESolution, ReturnCode, Stats
from .solve import solve

__version__ = "0.1.0.dev0"

__all__ = [
    "Algorithm", "BS3", "DP5", "Euler", "Heun", "KenCarp3", "KenCarp4", "KenCarp5", "Kvaerno3", "Kvaerno5",
    "Midpoint", "RK4", "ROS3P", "Rodas4", "Rodas5", "Rodas5P", "Rosenbrock23", "Tsit5", "Vern7", "IMEXSSP2",
    "ARS222", "DP8", "AdaptiveHeun", "Ralston", "RKF12", "Heun3", "RK38", "ImplicitEuler", "Trapezoid", "SDIRK2",
    "TRBDF2", "Alexander2", "RadauIIA5", "RadauIIA3", "GaussLegendre4", "GaussLegendre6",
    "BDFAlgorithm", "FBDF", "QNDF",
    "AdamsAlgorithm", "AB3", "AB4", "AB5", "ABM32", "ABM43", "ABM54", "AdamsBashforth", "AdamsBashforthMoulton",
    "SymplecticAlgorithm", "VelocityVerlet", "Leapfrog", "Yoshida4", "Yoshida6", "McAte5", "ImplicitMidpoint",
    "HamiltonianProblem", "SecondOrderODEProblem",
    "PIController", "DenseLU", "GMRES", "SparseLU", "sparsity_pattern", "crossvalidate", "CrossValidation",
    "InputError", "SolverError", "RHSError", "JuliaNotAvailableError",
    "ODEProblem", "SplitODEProblem", "ODESolution", "ReturnCode", "Stats", "solve", "odeint", "odeint_adjoint",
    "EnsembleProblem", "EnsembleSolution", "EnsembleSerial", "EnsembleBatched", "EnsembleDistributed",
    "EnsembleSummary",
    "ContinuousCallback", "DiscreteCallback", "CallbackSet", "odeint_event",
    "warmup", "DiscreteAdjoint", "BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint",
]

_SUBPACKAGES = ("analysis", "datasets", "julia", "models", "pinn", "problems", "sensitivity")
"""Subpackages reachable as attributes of :mod:`pysciml`, imported on first access."""

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them when first used
    from . import analysis, datasets, julia, models, pinn, problems, sensitivity  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)  # the import also sets it as an attribute here
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES))
