"""pysciml: stiff ODE solvers on PyTorch tensors, with adjoint gradients and an optional Julia engine.

The public API, re-exported explicitly; implementation modules are private.
"""

from .julia import _eager  # noqa: F401  (first: starts Julia before torch if PYSCIML_JULIA_EAGER=1)

# isort: split
from .algorithms import (
    BS3,
    DP5,
    RK4,
    ROS3P,
    Algorithm,
    Euler,
    KenCarp3,
    KenCarp4,
    KenCarp5,
    Kvaerno5,
    Midpoint,
    Rodas4,
    Rodas5P,
    Rosenbrock23,
    Tsit5,
    Vern7,
)
from .algorithms_native import ARS222, IMEXSSP2
from .analysis.crossvalidate import CrossValidation, crossvalidate
from .engine.controller import PIController
from .errors import InputError, JuliaNotAvailableError, RHSError, SolverError
from .linsolve_options import GMRES, DenseLU
from .odeint import odeint, odeint_adjoint
from .problem import ODEProblem, SplitODEProblem
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
    "Algorithm", "BS3", "DP5", "Euler", "KenCarp3", "KenCarp4", "KenCarp5", "Kvaerno5", "Midpoint", "RK4",
    "ROS3P", "Rodas4", "Rodas5P", "Rosenbrock23", "Tsit5", "Vern7", "IMEXSSP2", "ARS222",
    "PIController", "DenseLU", "GMRES", "crossvalidate", "CrossValidation",
    "InputError", "SolverError", "RHSError", "JuliaNotAvailableError",
    "ODEProblem", "SplitODEProblem", "ODESolution", "ReturnCode", "Stats", "solve", "odeint", "odeint_adjoint",
    "DiscreteAdjoint", "BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint",
]
