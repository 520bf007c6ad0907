"""``LatentHiTS``: hierarchical time-stepping in an autoencoder's latent coordinates ("latent HiTS", Hamid et
al., arXiv 2407.00011).

States ``x`` are encoded once, ``z0 = encode(x0)``; a :class:`~pysciml.models.HiTS` hierarchy forecasts the
latent trajectory with its vectorised multiscale scheme; the decoder maps the whole latent trajectory back at
the end. The autoencoder is trained first (on snapshots) and frozen; the flow maps are then trained on the
encoded training trajectories (:meth:`LatentHiTS.fit`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .hits import HiTS, _check_trajectories

__all__ = ["LatentHiTS"]

Tensor = torch.Tensor


class LatentHiTS(nn.Module):
    """Forecast states ``(B, n)`` by ``decode(HiTS.forecast(encode(x0)))``.

    Args:
        encoder, decoder: modules ``(..., n) -> (..., k)`` and ``(..., k) -> (..., n)`` (e.g. the ``encode`` and
            ``decode`` of a trained :class:`~pysciml.models.Autoencoder` or :class:`~pysciml.models.PCA`, or the
            modules ``ae.encoder``/``ae.decoder``); they are not trained here.
        hits: a :class:`~pysciml.models.HiTS` whose ``dim`` is the latent size ``k``.

    Shapes and dtypes: ``x0`` ``(B, n)`` in the autoencoder's dtype; the latent coordinates are cast to the
    flow maps' dtype and back, so a float32 autoencoder can drive a float64 hierarchy.
    """

    def __init__(self, encoder: Callable[[Tensor], Tensor], decoder: Callable[[Tensor], Tensor], hits: HiTS) -> None:
        super().__init__()
        for name, fn in (("encoder", encoder), ("decoder", decoder)):
            if not callable(fn):
                raise InputError(f"{name} must be a module or callable mapping tensors, got {type(fn).__name__}")
        if not isinstance(hits, HiTS):
            raise InputError(f"hits must be a pysciml.models.HiTS on the latent coordinates, got {type(hits).__name__}")
        self.encoder, self.decoder, self.hits = encoder, decoder, hits
        self._dtype = next(hits.parameters()).dtype

    def encode(self, x: Tensor) -> Tensor:
        """Latent coordinates ``(..., k)`` of states ``(..., n)``, in the flow maps' dtype (no gradient)."""
        with torch.no_grad():
            z = self.encoder(x)
        if not isinstance(z, Tensor) or z.shape[-1] != self.hits.dim:
            got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise InputError(f"the encoder must map states to ({self.hits.dim},) latent coordinates (the HiTS dim), "
                             f"got {got}")
        return z.to(self._dtype)

    def decode(self, z: Tensor, like: Tensor) -> Tensor:
        """States of latent coordinates ``(..., k)``, in ``like``'s dtype (no gradient)."""
        with torch.no_grad():
            return self.decoder(z.to(like.dtype))

    def fit(self, trajectories: Tensor, *, levels: Iterable[int] | None = None, **fit_kwargs: Any
            ) -> dict[int, list[float]]:
        """Encode training trajectories ``(n_traj, T, n)`` (sampled at the base ``dt``) and train the flow maps
        on them with :meth:`HiTS.fit` (``fit_kwargs``: ``n_forward``, ``epochs``, ``lr``, ``batch_size``, ``seed``,
        ``progress``). Returns each level's loss history (losses in latent units)."""
        if not isinstance(trajectories, Tensor) or trajectories.ndim != 3:
            got = tuple(trajectories.shape) if isinstance(trajectories, Tensor) else type(trajectories).__name__
            raise InputError(f"trajectories must be a tensor (n_traj, T, n) sampled at the base dt, got {got}")
        z = self.encode(trajectories)
        return self.hits.fit(_check_trajectories(z, self.hits.dim, "encoded trajectories"), levels=levels,
                             **fit_kwargs)

    def forecast(self, x0: Tensor, n_steps: int, levels: Iterable[int] | None = None,
                 fine_step: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """States ``(B, n_steps + 1, n)`` at every base step from ``x0`` ``(B, n)``: encode, the multiscale
        latent forecast (:meth:`HiTS.forecast`, with ``levels`` and ``fine_step`` acting on latent coordinates),
        decode. The first row is ``decode(encode(x0))``, not ``x0``."""
        if not isinstance(x0, Tensor) or x0.ndim != 2:
            got = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
            raise InputError(f"x0 must be a tensor of shape (B, n), got {got}")
        with torch.no_grad():
            z = self.hits.forecast(self.encode(x0), n_steps, levels, fine_step)
        return self.decode(z, x0)

    def band_errors(self, val_trajectories: Tensor) -> dict[tuple[int, int], float]:
        """Validation MSE, in state units, of the decoded latent forecast for every contiguous band ``(lo, hi)``
        of the flow maps' levels (see :meth:`HiTS.band_errors`): each trajectory ``(n_traj, T, n)`` is forecast
        from its first state over ``T - 1`` base steps and compared with its states ``1..T-1``."""
        if not isinstance(val_trajectories, Tensor) or val_trajectories.ndim != 3 or val_trajectories.shape[1] < 2:
            got = tuple(val_trajectories.shape) if isinstance(val_trajectories, Tensor) else type(val_trajectories)
            raise InputError(f"val_trajectories must be a tensor (n_traj, T >= 2, n), got {got}")
        x = val_trajectories
        errors = {}
        for band in self.hits.bands():
            pred = self.forecast(x[:, 0], x.shape[1] - 1, band)
            errors[(band[0], band[-1])] = ((pred[:, 1:] - x[:, 1:]) ** 2).mean().item()
        return errors

    def select_levels(self, val_trajectories: Tensor) -> tuple[int, int]:
        """The band ``(lo, hi)`` with the lowest :meth:`band_errors` (ties: the band listed first)."""
        errors = self.band_errors(val_trajectories)
        return min(errors, key=lambda b: errors[b])
