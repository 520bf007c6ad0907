"""Neural-ODE modules: ``NeuralODE`` (any pysciml algorithm), ``SemiImplicitNeuralODE`` (IMEX, SINODE) and
``GRAND`` (graph neural diffusion, explicit or semi-implicit)."""

from .grand import GRAND
from .neural_ode import NeuralODE
from .sinode import SemiImplicitNeuralODE

__all__ = ["GRAND", "NeuralODE", "SemiImplicitNeuralODE"]
