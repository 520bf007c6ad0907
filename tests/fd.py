"""The shared finite-difference helper for gradient tests: random projections of whole tensors.

For a scalar loss ``L(theta_1, ..., theta_k)`` and seeded random directions ``v_i`` (each shaped like
``theta_i``), :func:`check_gradient` compares the autograd projection ``sum_i <dL/dtheta_i, v_i>`` with the
central difference of ``s -> L(theta + s v)`` at ``s = 0`` (optionally Richardson-extrapolated). One
projection tests every entry of every tensor at once (a wrong entry changes the projection unless it is
exactly orthogonal to a random direction), for two or four loss evaluations instead of two per entry.

The tensors are perturbed in place (``copy_`` of the data inside ``torch.no_grad()``) and restored exactly
from a saved copy, so parameters of modules, tensors captured by closures, ``y0`` and ``t`` all work without
rebuilding anything. float32 and float64 both work; for float32 the finite difference can instead be taken on
a float64 twin of the loss (``fd_loss`` / ``fd_tensors``), the accurate reference a float32 gradient is
measured against.

A gradient that autograd reports as ``None`` (lost) fails the check unless ``allow_none=True`` (then it counts
as zero): "silently missing" is one of the faults these tests exist to catch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

__all__ = ["FDResult", "random_directions", "autograd_projection", "fd_projection", "check_gradient",
           "central_fd", "richardson_fd", "rel"]


@dataclass(frozen=True)
class FDResult:
    """``ad``: autograd's projection; ``fd``: the finite-difference one; ``rel``: ``|ad - fd| / |fd|``."""

    ad: float
    fd: float
    rel: float

    def __str__(self) -> str:
        return f"autograd {self.ad:.12g}, finite differences {self.fd:.12g}, relative difference {self.rel:.3g}"


def random_directions(tensors: Sequence[Tensor], seed: int = 0, scale: str = "relative") -> list[Tensor]:
    """Seeded standard-normal directions shaped like each tensor (drawn in float64, then cast to its dtype).

    ``scale="relative"`` multiplies each entry by ``max(|theta|, 1)`` (or ``|theta|`` where that is larger:
    rate constants of 3e7 get steps proportional to themselves); ``"absolute"`` leaves them unscaled."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for x in tensors:
        v = torch.randn(tuple(x.shape), generator=gen, dtype=torch.float64)
        if scale == "relative":
            v = v * x.detach().double().cpu().abs().clamp(min=1.0)
        elif scale != "absolute":
            raise ValueError(f"scale must be 'relative' or 'absolute', got {scale!r}")
        out.append(v.to(dtype=x.dtype, device=x.device))
    return out


def autograd_projection(loss: Callable[[], Tensor], tensors: Sequence[Tensor], directions: Sequence[Tensor],
                        allow_none: bool = False) -> float:
    """``sum_i <dL/dtheta_i, v_i>`` from one reverse pass of ``loss()`` (accumulated in float64)."""
    with torch.enable_grad():
        value = loss()
        grads = torch.autograd.grad(value, list(tensors), allow_unused=True)
    total = 0.0
    for i, (g, v) in enumerate(zip(grads, directions, strict=True)):
        if g is None:
            assert allow_none, f"autograd gave no gradient (None) for tensor {i} of shape {tuple(v.shape)}"
            continue
        total += float((g.double() * v.double()).sum())
    return total


def fd_projection(loss: Callable[[], Tensor], tensors: Sequence[Tensor], directions: Sequence[Tensor], h: float,
                  richardson: bool = False) -> float:
    """Central difference of ``s -> loss(theta + s v)`` at 0 with step ``h`` (``richardson``: ``(4 D(h) -
    D(2h)) / 3``, truncation error O(h^4) instead of O(h^2)). ``loss`` runs under ``torch.no_grad()``; the
    tensors are restored bit for bit afterwards, even if ``loss`` raises."""
    saved = [x.detach().clone() for x in tensors]

    def at(s: float) -> float:
        with torch.no_grad():
            for x, x0, v in zip(tensors, saved, directions, strict=True):
                x.copy_(x0 + s * v.to(x.dtype))
            try:
                return float(loss())
            finally:
                for x, x0 in zip(tensors, saved, strict=True):
                    x.copy_(x0)

    def central(step: float) -> float:
        return (at(step) - at(-step)) / (2 * step)

    d1 = central(h)
    return (4 * d1 - central(2 * h)) / 3 if richardson else d1


def check_gradient(loss: Callable[[], Tensor], tensors: Sequence[Tensor], *, h: float = 1e-6,
                   richardson: bool = False, seed: int = 0, scale: str = "relative",
                   fd_loss: Callable[[], Tensor] | None = None, fd_tensors: Sequence[Tensor] | None = None,
                   allow_none: bool = False) -> FDResult:
    """Autograd against finite differences along one seeded random direction in the space of all ``tensors``.

    ``fd_loss`` / ``fd_tensors``: take the finite difference of another loss (a float64 twin of a float32
    one, or the same loss with a tighter solve) whose tensors correspond one to one with ``tensors``; the
    same directions are used (cast to their dtype)."""
    tensors = list(tensors)
    directions = random_directions(tensors, seed, scale)
    ad = autograd_projection(loss, tensors, directions, allow_none)
    fd_t = list(fd_tensors) if fd_tensors is not None else tensors
    fd_dirs = [v.to(dtype=x.dtype, device=x.device) for v, x in zip(directions, fd_t, strict=True)]
    fd = fd_projection(fd_loss or loss, fd_t, fd_dirs, h, richardson)
    return FDResult(ad, fd, abs(ad - fd) / max(abs(fd), 1e-300))


def central_fd(fn: Callable[[], Tensor], x: Tensor, h: float) -> Tensor:
    """Central differences of the scalar ``fn()`` with respect to every entry of ``x``, each perturbed by
    ``h max(|x_i|, 1)`` in place and restored exactly (for small tensors where the whole gradient is wanted)."""
    g = torch.zeros_like(x)
    flat, gflat = x.data.view(-1), g.view(-1)
    for i in range(flat.numel()):
        old = flat[i].clone()
        step = h * max(abs(float(old)), 1.0)
        try:
            flat[i] = old + step
            up = float(fn())
            flat[i] = old - step
            down = float(fn())
        finally:
            flat[i] = old
        gflat[i] = (up - down) / (2 * step)
    return g


def richardson_fd(fn: Callable[[], Tensor], x: Tensor, h: float) -> Tensor:
    """Central differences at steps ``h`` and ``2h``, Richardson-extrapolated: truncation error O(h^4)."""
    return (4 * central_fd(fn, x, h) - central_fd(fn, x, 2 * h)) / 3


def rel(a: Tensor, b: Tensor) -> float:
    """``||a - b|| / ||b||``."""
    return float((a - b).norm() / b.norm().clamp(min=1e-300))
