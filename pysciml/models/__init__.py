"""Neural-ODE modules: ``NeuralODE`` (any pysciml algorithm), ``SemiImplicitNeuralODE`` (IMEX, SINODE),
``GRAND`` (graph neural diffusion, explicit or semi-implicit), and the energy-based models ``HNN``,
``SeparableHNN`` (with the observational ``augment``), ``LagrangianNN`` and their trainer ``fit_vector_field``;
for multiscale forecasting, ``Autoencoder``, ``ConvAutoencoder`` and ``PCA`` (latent coordinates) and ``HiTS``
(hierarchical flow maps), ``LatentHiTS`` (HiTS in latent coordinates), and ``LatentNeuralODE`` (encoder,
neural ODE in latent coordinates, decoder)."""

from .autoencoder import PCA, Autoencoder, ConvAutoencoder
from .grand import GRAND
from .hits import HiTS
from .hnn import HNN, SeparableHNN, augment
from .hnn_training import FitResult, fit_vector_field
from .latent_hits import LatentHiTS
from .latent_ode import LatentNeuralODE
from .lnn import LagrangianNN
from .neural_ode import NeuralODE
from .sinode import SemiImplicitNeuralODE

__all__ = ["GRAND", "HNN", "PCA", "Autoencoder", "ConvAutoencoder", "FitResult", "HiTS", "LagrangianNN",
           "LatentHiTS", "LatentNeuralODE", "NeuralODE", "SemiImplicitNeuralODE", "SeparableHNN", "augment",
           "fit_vector_field"]
