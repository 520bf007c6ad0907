"""``LatentNeuralODE``: encoder -> neural ODE in latent coordinates -> decoder, forecasting at any times.

The multiscale issue's baseline beside hierarchical time-stepping: an autoencoder (any pair of modules mapping
``(..., n) -> (..., k)`` and back, e.g. :class:`pysciml.models.hits.Autoencoder` or a PCA) gives latent
coordinates ``z = encode(x)``, a :class:`~pysciml.models.NeuralODE` integrates ``dz/dt = f_theta(z)`` with any
pysciml algorithm and sensitivity algorithm, and ``decode`` maps the latent trajectory back. Everything is
differentiable, so the three parts can be trained jointly (:meth:`LatentNeuralODE.loss`) or the autoencoder
first and the latent dynamics after (pass ``train_autoencoder=False``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..algorithms import Algorithm
from ..errors import InputError
from ..sensealg import SensitivityAlgorithm
from .neural_ode import NeuralODE

__all__ = ["LatentNeuralODE"]

Tensor = torch.Tensor


class _Autonomous(nn.Module):
    """``f(t, z) = net(z)``: the latent field ignores time."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.net(z)


class LatentNeuralODE(nn.Module):
    """Forecast states ``x`` (``(B, n)``) by ``decode(NeuralODE(encode(x0), t))``.

    Args:
        encoder, decoder: modules ``(..., n) -> (..., k)`` and ``(..., k) -> (..., n)``.
        latent_field: module ``(..., k) -> (..., k)``, the latent dynamics ``dz/dt`` (autonomous).
        alg: pysciml algorithm of the latent solve (``Tsit5()`` by default; ``Rodas5P()`` or ``KenCarp4()`` when
            the latent dynamics are stiff).
        sensealg, rtol, atol, dt, adaptive, batched, **solve_kwargs: as for :class:`~pysciml.models.NeuralODE`
            (``batched=True``: each trajectory of the batch gets its own adaptive steps).
        train_autoencoder: ``False`` freezes the encoder and decoder (their parameters get no gradient): the
            two-stage training of the HiTS papers' latent models.

    Shapes: :meth:`forward` maps ``x0`` ``(B, n)`` and times ``t`` ``(T,)`` to ``(T, B, n)``;
    :meth:`latent` returns the ``(T, B, k)`` latent trajectory of the last forward.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_field: nn.Module,
                 alg: Algorithm | None = None, *, sensealg: SensitivityAlgorithm | None = None,
                 rtol: float = 1e-6, atol: float = 1e-8, dt: float | None = None, adaptive: bool | None = None,
                 batched: bool = False, train_autoencoder: bool = True, **solve_kwargs: Any) -> None:
        super().__init__()
        for name, m in (("encoder", encoder), ("decoder", decoder), ("latent_field", latent_field)):
            if not isinstance(m, nn.Module):
                raise InputError(f"{name} must be an nn.Module, got {type(m).__name__}")
        self.encoder, self.decoder = encoder, decoder
        self.node = NeuralODE(_Autonomous(latent_field), alg, rtol=rtol, atol=atol, dt=dt, adaptive=adaptive,
                              sensealg=sensealg, batched=batched, **solve_kwargs)
        self.train_autoencoder = bool(train_autoencoder)
        if not self.train_autoencoder:
            for p in list(encoder.parameters()) + list(decoder.parameters()):
                p.requires_grad_(False)
        self._z: Tensor | None = None

    def encode(self, x: Tensor) -> Tensor:
        """Latent coordinates of states ``(..., n)``."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """States of latent coordinates ``(..., k)``."""
        return self.decoder(z)

    def forward(self, x0: Tensor, t: Tensor) -> Tensor:
        """The forecast at times ``t`` (``t[0]`` is ``x0``'s time): ``(T, *x0.shape)``."""
        if not isinstance(x0, Tensor) or x0.dim() < 1:
            raise InputError(f"x0 must be a tensor of states (B, n) or (n,), got {type(x0).__name__}")
        z = self.node(self.encode(x0), t)
        self._z = z
        return self.decode(z)

    def latent(self) -> Tensor:
        """The latent trajectory ``(T, *z0.shape)`` of the last :meth:`forward`."""
        if self._z is None:
            raise InputError("latent(): call the model first (forward computes the latent trajectory)")
        return self._z

    def loss(self, x: Tensor, t: Tensor, *, reconstruction_weight: float = 1.0) -> Tensor:
        """Training loss on trajectories ``x`` ``(T, B, n)`` saved at ``t`` ``(T,)``: the forecast MSE from
        ``x[0]`` plus ``reconstruction_weight`` times the autoencoder's reconstruction MSE over all states."""
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise InputError(f"x must be trajectories (T, B, n) or (T, n), got {type(x).__name__}")
        forecast = self(x[0], t)
        out = (forecast - x).square().mean()
        if reconstruction_weight:
            out = out + reconstruction_weight * (self.decode(self.encode(x)) - x).square().mean()
        return out

    @property
    def nfe(self) -> int:
        """Latent right-hand-side calls of the last forward."""
        return self.node.nfe
