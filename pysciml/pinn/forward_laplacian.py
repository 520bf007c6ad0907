"""The exact Laplacian of a multilayer perceptron in one forward pass ("forward Laplacian").

For ``f`` an ``nn.Sequential`` of ``nn.Linear`` layers and elementwise activations, the value ``h``, the Jacobian
``J = dh/dx`` (shape ``(N, width, d)``) and the Laplacian ``L = Delta h`` (shape ``(N, width)``) of every layer's
output are propagated together (Li et al., "A computational framework for neural network-based variational Monte
Carlo with Forward Laplacian", Nature Machine Intelligence 2024):

* linear ``h' = W h + b``: ``J' = W J``, ``L' = W L``;
* elementwise ``h' = s(h)``: ``J' = s'(h) J``, ``L' = s'(h) L + s''(h) sum_j J_j^2`` (sum over the ``d`` inputs),

with ``s'`` and ``s''`` in closed form for ``Tanh`` and ``Sigmoid`` and from two nested forward-mode JVPs of the
activation along a tangent of ones for the others (valid because they are elementwise). It costs about one batched
JVP along all ``d`` directions (the ``W J`` products) and no reverse pass, where the Hessian trace (forward-over-
reverse) costs a JVP and a VJP per direction; it is differentiable with respect to the parameters by ordinary
autograd. Memory: the Jacobians, ``N x width x d`` numbers per layer, are kept for the backward pass (the
Hessian-trace path keeps as much); split the points into batches if that is too much. Only modules known to be
elementwise are accepted, so any other network (or a plain function) goes to the general Hessian-trace path of
:func:`~pysciml.pinn.derivatives.laplacian`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import jvp

from .lysep_ops import ACTIVATIONS

__all__ = ["ELEMENTWISE", "forward_laplacian", "supported_layers"]

ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Softplus, nn.GELU, nn.ELU, nn.CELU, nn.SELU, nn.Mish, nn.Softsign,
    nn.LogSigmoid, nn.Tanhshrink, nn.Identity,
)
"""Activations known to act elementwise and be twice differentiable almost everywhere (ReLU-type kinks are
excluded: their second derivative is a Dirac mass that no pointwise rule captures)."""


def supported_layers(f: object) -> list[nn.Module] | None:
    """The flat list of layers when ``f`` is an ``nn.Sequential`` (nested ones flattened; not a subclass, whose
    ``forward`` may differ) of ``nn.Linear`` and :data:`ELEMENTWISE` modules with at least one ``nn.Linear`` and no
    forward hooks, else ``None``."""
    if type(f) is not nn.Sequential or _hooked(f):
        return None
    layers: list[nn.Module] = []
    for m in f:
        if isinstance(m, nn.Sequential):
            inner = supported_layers(m)
            if inner is None:
                return None
            layers += inner
        elif (type(m) is nn.Linear or type(m) in ELEMENTWISE) and not _hooked(m):
            layers.append(m)
        else:
            return None
    return layers if any(type(m) is nn.Linear for m in layers) else None


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _activation(layer: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``s(h)``, ``s'(h)``, ``s''(h)`` of an elementwise activation: closed forms for ``Tanh`` and ``Sigmoid``
    (the common cases, without the overhead of forward mode), nested JVPs along ones for the others."""
    if type(layer) is nn.Tanh:
        return ACTIVATIONS["tanh"].all(h)
    if type(layer) is nn.Sigmoid:
        return ACTIVATIONS["sigmoid"].all(h)
    ones = torch.ones_like(h)

    def slope(z: torch.Tensor) -> torch.Tensor:
        return jvp(layer, (z,), (ones,))[1]

    s1, s2 = jvp(slope, (h,), (ones,))
    return layer(h), s1, s2


def forward_laplacian(layers: list[nn.Module], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and Laplacians of every output of the layers at the points ``x``.

    Args:
        layers: the output of :func:`supported_layers`.
        x: points ``(N, d)``.

    Returns:
        ``(values, laplacians)``, both ``(N, m)`` for ``m`` outputs.
    """
    h, J, L = x, None, None  # J None: the identity (the input itself); L None: zero
    for layer in layers:
        if type(layer) is nn.Linear:
            W = layer.weight
            J = W.expand(x.shape[0], *W.shape) if J is None else torch.matmul(W, J)
            L = None if L is None else L @ W.T
            h = layer(h)
            continue
        h, s1, s2 = _activation(layer, h)
        if J is None:  # an activation applied to the inputs themselves
            J, L = torch.diag_embed(s1), s2
            continue
        curvature = s2 * J.square().sum(-1)
        L = curvature if L is None else s1 * L + curvature
        J = s1.unsqueeze(-1) * J
    if L is None:  # affine network
        L = torch.zeros_like(h)
    return h, L
