"""Latent coordinates for multiscale forecasting (issue 16): a fully connected ``Autoencoder``, a
``ConvAutoencoder`` for periodic 1-D fields, and their linear baseline ``PCA`` (principal components by
``torch.linalg.svd``).

Both map states ``x`` of shape ``(..., n_in)`` to latent coordinates ``z`` of shape ``(..., latent)`` with
``encode`` and back with ``decode``; ``forward`` is the reconstruction ``decode(encode(x))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import InputError
from .hnn import _positive_int, mlp

__all__ = ["Autoencoder", "ConvAutoencoder", "PCA"]

Tensor = torch.Tensor


def _widths(hidden: object) -> tuple[int, ...]:
    try:
        widths = tuple(int(h) for h in hidden)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise InputError(f"hidden must be a sequence of layer widths such as (64, 32), got {hidden!r}") from None
    if any(w < 1 for w in widths):
        raise InputError(f"hidden widths must be positive, got {hidden!r}")
    return widths


def _check_states(x: object, n: int, name: str, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != n:
        raise InputError(f"{name} must have shape (..., {n}) ({what}), got {tuple(x.shape)}")
    return x


class Autoencoder(nn.Module):
    """Fully connected autoencoder ``x -> z -> x_hat``.

    The encoder is ``Linear -> activation`` per width of ``hidden``, then ``Linear`` to ``latent``; the
    decoder mirrors it (widths reversed) back to ``n_in``. Latent and output layers are linear.

    Args:
        n_in: size of a state ``x``.
        latent: size of the latent coordinates ``z``.
        hidden: encoder hidden widths (the decoder uses them reversed); ``()`` gives a linear autoencoder.
        activation: ``nn.Module`` class (called with no arguments) placed after each hidden layer.
        dtype: parameter dtype (float64 by default); inputs must have it.

    Example:
        >>> ae = Autoencoder(120, 8, hidden=(64, 32))
        >>> ae(torch.zeros(5, 120, dtype=torch.float64)).shape
        torch.Size([5, 120])
    """

    def __init__(self, n_in: int, latent: int, hidden: Sequence[int] = (64, 32),
                 activation: Callable[[], nn.Module] = nn.ReLU, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.n_in = _positive_int(n_in, "n_in")
        self.latent = _positive_int(latent, "latent")
        widths = _widths(hidden)
        self.encoder = mlp(self.n_in, widths, self.latent, activation, dtype)
        self.decoder = mlp(self.latent, widths[::-1], self.n_in, activation, dtype)

    def encode(self, x: Tensor) -> Tensor:
        """Latent coordinates ``(..., latent)`` of states ``x`` of shape ``(..., n_in)``."""
        return self.encoder(_check_states(x, self.n_in, "x", "n_in states"))

    def decode(self, z: Tensor) -> Tensor:
        """States ``(..., n_in)`` from latent coordinates ``z`` of shape ``(..., latent)``."""
        return self.decoder(_check_states(z, self.latent, "z", "latent coordinates"))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction ``decode(encode(x))``, same shape as ``x``."""
        return self.decode(self.encode(x))


class ConvAutoencoder(Autoencoder):
    """Autoencoder for periodic 1-D fields ``(..., n_in)``: a convolutional encoder, fully connected bottleneck.

    Encoder: per entry of ``channels``, a ``Conv1d`` (circular padding, stride 2, halves the grid) and the
    activation; then flatten, the fully connected ``hidden`` layers and a ``Linear`` to ``latent``. The decoder
    mirrors it: fully connected layers back to the coarse grid, then per stage a 2x nearest upsampling, a
    circular ``Conv1d`` and the activation (none after the last, which outputs one channel). ``encode``,
    ``decode`` and ``forward`` take and return the shapes of :class:`Autoencoder`.

    Args:
        n_in: grid size of a field; must be divisible by ``2**len(channels)``.
        latent: size of the latent coordinates.
        channels: channels of the convolutional stages (non-empty).
        kernel_size: odd convolution width.
        hidden: fully connected widths between the flattened coarse grid and the latent layer.
        activation: ``nn.Module`` class placed after each hidden layer and convolution.
        dtype: parameter dtype.
    """

    def __init__(self, n_in: int, latent: int, channels: Sequence[int] = (8, 16), kernel_size: int = 5,
                 hidden: Sequence[int] = (64,), activation: Callable[[], nn.Module] = nn.ReLU,
                 dtype: torch.dtype = torch.float64) -> None:
        nn.Module.__init__(self)
        self.n_in = _positive_int(n_in, "n_in")
        self.latent = _positive_int(latent, "latent")
        chans = _widths(channels)
        widths = _widths(hidden)
        if not chans:
            raise InputError("channels must list at least one convolution stage, e.g. (8, 16)")
        k = _positive_int(kernel_size, "kernel_size")
        if k % 2 == 0:
            raise InputError(f"kernel_size must be odd (same-size circular convolution), got {kernel_size}")
        if n_in % 2 ** len(chans):
            raise InputError(f"n_in={n_in} must be divisible by 2**len(channels) = {2 ** len(chans)}; use fewer "
                             "channels stages or another grid size")
        coarse = n_in // 2 ** len(chans)
        enc: list[nn.Module] = [nn.Unflatten(-1, (1, n_in))]
        for c_in, c_out in zip((1, *chans[:-1]), chans, strict=True):
            enc += [nn.Conv1d(c_in, c_out, k, stride=2, padding=k // 2, padding_mode="circular", dtype=dtype),
                    activation()]
        enc += [nn.Flatten(-2), mlp(chans[-1] * coarse, widths, self.latent, activation, dtype)]
        dec: list[nn.Module] = [mlp(self.latent, widths[::-1], chans[-1] * coarse, activation, dtype),
                                nn.Unflatten(-1, (chans[-1], coarse))]
        outs = (*chans[::-1][1:], 1)
        for i, (c_in, c_out) in enumerate(zip(chans[::-1], outs, strict=True)):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv1d(c_in, c_out, k, padding=k // 2, padding_mode="circular", dtype=dtype)]
            if i < len(chans) - 1:
                dec.append(activation())
        dec.append(nn.Flatten(-2))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: Tensor) -> Tensor:
        """Latent coordinates ``(..., latent)`` of fields ``x`` of shape ``(..., n_in)``."""
        x = _check_states(x, self.n_in, "x", "n_in grid values")
        return self.encoder(x.reshape(-1, self.n_in)).reshape(*x.shape[:-1], self.latent)

    def decode(self, z: Tensor) -> Tensor:
        """Fields ``(..., n_in)`` from latent coordinates ``z`` of shape ``(..., latent)``."""
        z = _check_states(z, self.latent, "z", "latent coordinates")
        return self.decoder(z.reshape(-1, self.latent)).reshape(*z.shape[:-1], self.n_in)


class PCA(nn.Module):
    """Principal-component baseline: ``z = (x - mean) @ V_k``, ``x_hat = mean + z @ V_k^T``, where ``V_k``
    holds the ``latent`` leading right singular vectors of the centred data (``torch.linalg.svd``).

    Exact (to round-off) on data whose centred rank is at most ``latent``. The mean and components are
    buffers, so ``state_dict`` saves and restores a fitted PCA (load into ``PCA(latent)`` after ``fit`` or into
    one built with ``n_in=``).

    Args:
        latent: number of components kept.
        n_in: state size, if known before ``fit`` (needed to ``load_state_dict`` into an unfitted PCA).
        dtype: dtype of the buffers before ``fit`` (``fit`` uses the data's dtype).
    """

    mean: Tensor
    components: Tensor
    singular_values: Tensor

    def __init__(self, latent: int, n_in: int | None = None, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.latent = _positive_int(latent, "latent")
        n = 0 if n_in is None else _positive_int(n_in, "n_in")
        self.register_buffer("mean", torch.zeros(n, dtype=dtype))
        self.register_buffer("components", torch.zeros(n, self.latent, dtype=dtype))
        self.register_buffer("singular_values", torch.zeros(self.latent, dtype=dtype))
        self.fitted = n_in is not None

    def fit(self, x: Tensor) -> PCA:
        """Fit to samples ``x`` of shape ``(n_samples, n_in)`` (or ``(..., n_in)``, flattened); returns self.

        Raises:
            InputError: ``x`` is not a floating tensor with at least one sample, or ``latent > n_in``.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2 or x.numel() == 0:
            raise InputError(f"x must be a floating tensor of shape (n_samples, n_in), got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        data = x.detach().reshape(-1, x.shape[-1])
        if self.latent > data.shape[1]:
            raise InputError(f"latent={self.latent} exceeds the state size n_in={data.shape[1]}; use latent <= n_in")
        mean = data.mean(0)
        _, s, vh = torch.linalg.svd(data - mean, full_matrices=False)
        k = min(self.latent, vh.shape[0])
        comps = torch.zeros(data.shape[1], self.latent, dtype=data.dtype, device=data.device)
        comps[:, :k] = vh[:k].T  # fewer samples than latent: the extra components stay zero
        sv = torch.zeros(self.latent, dtype=data.dtype, device=data.device)
        sv[:k] = s[:k]
        self.mean, self.components, self.singular_values = mean, comps, sv
        self.fitted = True
        return self

    def _need_fit(self) -> None:
        if not self.fitted:
            raise InputError("this PCA is not fitted: call fit(x) first (or build it with n_in= and load a "
                             "state_dict)")

    def encode(self, x: Tensor) -> Tensor:
        """Latent coordinates ``(..., latent)`` of states ``x`` of shape ``(..., n_in)``."""
        self._need_fit()
        return (_check_states(x, self.mean.shape[0], "x", "n_in states") - self.mean) @ self.components

    def decode(self, z: Tensor) -> Tensor:
        """States ``(..., n_in)`` from latent coordinates ``z`` of shape ``(..., latent)``."""
        self._need_fit()
        return self.mean + _check_states(z, self.latent, "z", "latent coordinates") @ self.components.T

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction ``decode(encode(x))``, same shape as ``x``."""
        return self.decode(self.encode(x))
