"""Building blocks of the layer-separation model (:mod:`pysciml.pinn.lysep`): smooth activations with their
first two derivatives, the linear PDE operator LySep solves, fully connected networks as weight lists, and
the layer-by-layer chain rule that carries values, gradients and Laplacians through such a network.

Everything here is plain torch; nothing is imported beyond torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "Sine",
    "LinearPDE",
    "LayerValues",
    "mlp",
    "network_layers",
    "propagate",
]


@dataclass(frozen=True)
class Activation:
    """A smooth scalar activation s with s' and s'' (all elementwise, any shape, dtype and device kept)."""

    name: str
    s: Callable[[Tensor], Tensor]
    ds: Callable[[Tensor], Tensor]
    d2s: Callable[[Tensor], Tensor]

    def all(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(s(z), s'(z), s''(z)), sharing the work where the formulas allow."""
        if self.name == "tanh":
            t = torch.tanh(z)
            d = 1 - t * t
            return t, d, -2 * t * d
        if self.name == "sigmoid":
            g = torch.sigmoid(z)
            d = g * (1 - g)
            return g, d, d * (1 - 2 * g)
        return self.s(z), self.ds(z), self.d2s(z)


def _tanh_d1(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return 1 - t * t


def _tanh_d2(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return -2 * t * (1 - t * t)


def _sigmoid_d1(z: Tensor) -> Tensor:
    g = torch.sigmoid(z)
    return g * (1 - g)


def _sigmoid_d2(z: Tensor) -> Tensor:
    g = torch.sigmoid(z)
    return g * (1 - g) * (1 - 2 * g)


ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation("tanh", torch.tanh, _tanh_d1, _tanh_d2),
    "sigmoid": Activation("sigmoid", torch.sigmoid, _sigmoid_d1, _sigmoid_d2),
    "sin": Activation("sin", torch.sin, torch.cos, lambda z: -torch.sin(z)),
    "softplus": Activation("softplus", nn.functional.softplus, torch.sigmoid, _sigmoid_d1),
}


class Sine(nn.Module):
    """sin as an ``nn.Module``, so that a network with sine activations can be an ``nn.Sequential``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


def _activation_of(module: nn.Module) -> Activation:
    if isinstance(module, nn.Tanh):
        return ACTIVATIONS["tanh"]
    if isinstance(module, nn.Sigmoid):
        return ACTIVATIONS["sigmoid"]
    if isinstance(module, Sine):
        return ACTIVATIONS["sin"]
    if isinstance(module, nn.Softplus) and module.beta == 1 and module.threshold >= 20:
        return ACTIVATIONS["softplus"]
    raise InputError(
        f"network: activation {type(module).__name__} is not supported by LySep; use nn.Tanh, nn.Sigmoid, "
        "nn.Softplus() (beta=1) or pysciml.pinn.lysep.Sine (smooth activations whose s' and s'' are known)")


def activation(name: str) -> Activation:
    """The :class:`Activation` called ``name`` (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise InputError(f"activation: unknown {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


_MODULES: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "sin": Sine, "softplus": nn.Softplus}


def mlp(widths: Sequence[int], activation: str = "tanh", *, seed: int = 0,
        dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> nn.Sequential:
    """A fully connected network ``Linear, act, ..., Linear`` with Xavier-normal weights and zero biases.

    Args:
        widths: layer widths from input to output, e.g. ``[2, 20, 20, 1]`` (at least two entries).
        activation: one of ``"tanh"``, ``"sigmoid"``, ``"sin"``, ``"softplus"``.
        seed: seed of a private generator (the global RNG is untouched).
        dtype, device: of the parameters.

    Returns:
        ``nn.Sequential`` mapping (N, widths[0]) to (N, widths[-1]).
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise InputError(f"widths: need at least [d_in, d_out] with positive entries, got {widths}")
    if activation not in _MODULES:
        raise InputError(f"activation: unknown {activation!r}; choose one of {sorted(_MODULES)}")
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        lin = nn.Linear(n_in, n_out, dtype=dtype, device=device)
        std = (2.0 / (n_in + n_out)) ** 0.5
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n_out, n_in, generator=gen, dtype=dtype) * std)
            lin.bias.zero_()
        layers.append(lin)
        if k < len(widths) - 2:
            layers.append(_MODULES[activation]())
    return nn.Sequential(*layers)


def network_layers(network: nn.Module) -> tuple[list[Tensor], list[Tensor], list[Activation]]:
    """Weights, biases and hidden activations of ``Linear, act, Linear, act, ..., Linear``.

    Returns:
        (weights, biases, activations): ``weights[k]`` (n_k, n_{k-1}) and ``biases[k]`` (n_k,) are detached
        copies; ``activations`` has one entry per hidden layer (one fewer than the linear layers).
    """
    if not isinstance(network, nn.Sequential) or len(network) == 0:
        raise InputError("network: LySep needs an nn.Sequential of Linear layers with an activation between "
                         "consecutive Linear layers (build one with pysciml.pinn.lysep.mlp)")
    mods = list(network)
    if len(mods) % 2 == 0:
        raise InputError("network: expected Linear, act, Linear, ..., Linear (odd length, Linear first and last)")
    weights, biases, acts = [], [], []
    for k, m in enumerate(mods):
        if k % 2 == 0:
            if not isinstance(m, nn.Linear):
                raise InputError(f"network[{k}]: expected nn.Linear, got {type(m).__name__}")
            weights.append(m.weight.detach().clone())
            b = m.bias.detach().clone() if m.bias is not None else torch.zeros_like(m.weight[:, 0])
            biases.append(b)
        else:
            acts.append(_activation_of(m))
    for k in range(1, len(weights)):
        if weights[k].shape[1] != weights[k - 1].shape[0]:
            raise InputError(f"network: layer {k} expects {weights[k].shape[1]} inputs but layer {k - 1} gives "
                             f"{weights[k - 1].shape[0]}")
    if weights[-1].shape[0] != 1:
        raise InputError(f"network: LySep solves a scalar PDE; the last Linear must have 1 output, got "
                         f"{weights[-1].shape[0]}")
    return weights, biases, acts


@dataclass
class LayerValues:
    """Every layer's pre-activation z_k and post-activation a_k with their spatial derivatives.

    ``z[k]`` (N, n_k) for k = 0..L-1 (``z[L-1]`` is the output u, shape (N, 1)); ``a[k]`` (N, n_k) for the
    L-1 hidden layers; ``dz``/``da`` (M, n_k, d): first derivatives d/dx_j at the first M points (empty list
    at order 0); ``lz``/``la`` (M, n_k): Laplacians (empty list below order 2).
    """

    z: list[Tensor]
    a: list[Tensor]
    dz: list[Tensor]
    da: list[Tensor]
    lz: list[Tensor]
    la: list[Tensor]


def propagate(weights: Sequence[Tensor], biases: Sequence[Tensor], activations: Sequence[Activation], x: Tensor,
              *, order: int = 2, n_derivative: int | None = None) -> LayerValues:
    """Forward pass with the layer-wise chain rule for gradients and Laplacians.

    With a_{-1} = x, Da_{-1} = I, La_{-1} = 0:
    ``z_k = W_k a_{k-1} + b_k``, ``Dz_k = W_k Da_{k-1}``, ``Lz_k = W_k La_{k-1}``, and for hidden layers
    ``a_k = s(z_k)``, ``Da_k = s'(z_k) Dz_k``, ``La_k = s''(z_k) |Dz_k|^2 + s'(z_k) Lz_k``.

    Args:
        weights, biases, activations: as returned by :func:`network_layers`.
        x: points (N, d).
        order: 0 (values), 1 (and gradients) or 2 (and Laplacians).
        n_derivative: derivatives only at the first ``n_derivative`` points (default all N).

    Returns:
        :class:`LayerValues`, differentiable w.r.t. the weights if they require grad.
    """
    m = x.shape[0] if n_derivative is None else n_derivative
    a, z_all, a_all, dz_all, da_all, lz_all, la_all = x, [], [], [], [], [], []
    da = torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand(m, -1, -1) if order >= 1 else None
    la = torch.zeros(m, x.shape[1], dtype=x.dtype, device=x.device) if order >= 2 else None
    n_layers = len(weights)
    for k in range(n_layers):
        w = weights[k]
        z = torch.addmm(biases[k], a, w.T)
        dz = torch.einsum("ij,njk->nik", w, da) if da is not None else None
        lz = la @ w.T if la is not None else None
        z_all.append(z)
        if dz is not None:
            dz_all.append(dz)
        if lz is not None:
            lz_all.append(lz)
        if k == n_layers - 1:
            break
        s, s1, s2 = activations[k].all(z)
        a = s
        a_all.append(a)
        if dz is not None:
            da = s1[:m, :, None] * dz
            da_all.append(da)
        if lz is not None:
            la = s2[:m] * (dz * dz).sum(-1) + s1[:m] * lz
            la_all.append(la)
    return LayerValues(z_all, a_all, dz_all, da_all, lz_all, la_all)


Coefficient = Callable[[Tensor], Tensor] | float | None


class LinearPDE:
    """A scalar linear PDE of order <= 2 with isotropic diffusion,

        -div(a(x) grad u) + beta(x) . grad u + c(x) u = f(x)   in Omega,

    i.e. residual r = -a Lap(u) + (beta - grad a) . grad u + c u - f. Special cases: ``poisson(f)``
    (-Lap u = f), first-order transport (``diffusion=None``, ``advection=beta``), plain fitting (only
    ``reaction=1``: u = f at the points).

    Args:
        source: f, callable (N, d) -> (N,) or (N, 1), or a number.
        diffusion: a(x) > 0, callable or number, or None (no second-order term).
        diffusion_grad: grad a, callable (N, d) -> (N, d); default: autograd of ``diffusion``.
        advection: beta(x), callable (N, d) -> (N, d), a length-d sequence, or None.
        reaction: c(x), callable or number, or None.
    """

    def __init__(self, source: Coefficient, *, diffusion: Coefficient = None,
                 diffusion_grad: Callable[[Tensor], Tensor] | None = None,
                 advection: Callable[[Tensor], Tensor] | Sequence[float] | None = None,
                 reaction: Coefficient = None) -> None:
        if source is None:
            raise InputError("source: give f(x) (a callable or a number; 0 for a homogeneous equation)")
        if diffusion is None and advection is None and reaction is None:
            raise InputError("LinearPDE: give at least one of diffusion, advection, reaction")
        for name, val in (("source", source), ("diffusion", diffusion), ("reaction", reaction)):
            if val is not None and not callable(val) and not isinstance(val, (int, float)):
                raise InputError(f"{name}: expected a callable or a number, got {type(val).__name__}")
        if diffusion_grad is not None and diffusion is None:
            raise InputError("diffusion_grad: given without diffusion")
        self.source, self.diffusion, self.diffusion_grad = source, diffusion, diffusion_grad
        self.advection, self.reaction = advection, reaction

    @classmethod
    def poisson(cls, source: Coefficient) -> LinearPDE:
        """-Lap u = f."""
        return cls(source, diffusion=1.0)

    @property
    def order(self) -> int:
        """Highest derivative order in the operator (0, 1 or 2)."""
        if self.diffusion is not None:
            return 2
        return 1 if self.advection is not None else 0

    @staticmethod
    def _scalar(val: Coefficient, x: Tensor, name: str) -> Tensor:
        if val is None:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if not callable(val):
            return torch.full((x.shape[0],), float(val), dtype=x.dtype, device=x.device)
        out = torch.as_tensor(val(x), dtype=x.dtype, device=x.device)
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (x.shape[0],):
            raise InputError(f"{name}: must return shape (N,) or (N, 1) for points (N, d); got {tuple(out.shape)}")
        return out

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(a, v, c, f) at points x (N, d): shapes (N,), (N, d), (N,), (N,), so that
        r = -a * Lap u + (v * grad u).sum(-1) + c * u - f; v = beta - grad a."""
        n, d = x.shape
        a = self._scalar(self.diffusion, x, "diffusion")
        c = self._scalar(self.reaction, x, "reaction")
        f = self._scalar(self.source, x, "source")
        v = torch.zeros(n, d, dtype=x.dtype, device=x.device)
        if self.advection is not None:
            if callable(self.advection):
                beta = torch.as_tensor(self.advection(x), dtype=x.dtype, device=x.device)
            else:
                beta = torch.as_tensor(list(self.advection), dtype=x.dtype, device=x.device).expand(n, -1)
            if beta.shape != (n, d):
                raise InputError(f"advection: must give shape (N, d) = {(n, d)}; got {tuple(beta.shape)}")
            v = v + beta
        if callable(self.diffusion):
            if self.diffusion_grad is not None:
                ga = torch.as_tensor(self.diffusion_grad(x), dtype=x.dtype, device=x.device)
            else:
                with torch.enable_grad():
                    xr = x.detach().requires_grad_(True)
                    (ga,) = torch.autograd.grad(self._scalar(self.diffusion, xr, "diffusion").sum(), xr)
            if ga.shape != (n, d):
                raise InputError(f"diffusion_grad: must give shape (N, d) = {(n, d)}; got {tuple(ga.shape)}")
            v = v - ga
        return a.detach(), v.detach(), c.detach(), f.detach()
