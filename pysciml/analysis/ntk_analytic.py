"""Infinite-width NTK and NNGP kernels of fully connected networks, and operators applied to them.

The network (:class:`NTKNetwork`, *NTK parameterisation*, Jacot, Gabriel & Hongler, NeurIPS 2018) with ``L``
hidden layers of width ``n``, input dimension ``d`` and all weights and biases drawn i.i.d. ``N(0, 1)``:

    ``h^1 = sigma_w / sqrt(d) W^1 x + sigma_b b^1``,
    ``h^(l+1) = sigma_w / sqrt(n) W^(l+1) phi(h^l) + sigma_b b^(l+1)``  (``l = 1..L``),  ``f(x) = h^(L+1)``.

As ``n -> infinity`` its output is a Gaussian process with covariance ``Sigma^(L+1)`` (the NNGP kernel) and its
empirical NTK ``J J^T`` tends to the deterministic ``Theta^(L+1)``, by the recursion of Jacot et al. (2018) as
written in Arora, Du, Hu, Li, Salakhutdinov & Wang, *On exact computation with an infinitely wide neural net*,
NeurIPS 2019, eq. (4)-(5):

    ``Sigma^1(x, y) = sigma_w^2 x . y / d + sigma_b^2``,  ``Theta^1 = Sigma^1``,
    ``Sigma^(l+1) = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2``,  ``Sigma_dot^(l+1) = sigma_w^2 E[phi'(u) phi'(v)]``,
    ``Theta^(l+1) = Theta^l Sigma_dot^(l+1) + Sigma^(l+1)``,

with ``(u, v) ~ N(0, [[Sigma^l(x, x), Sigma^l(x, y)], [Sigma^l(x, y), Sigma^l(y, y)]])``. The Gaussian
expectations are closed forms for two activations:

* ``"relu"``: the arc-cosine kernels of Cho & Saul, *Kernel methods for deep learning*, NeurIPS 2009, degree 1
  and 0: with ``cos t = c / sqrt(a b)``, ``E[relu(u) relu(v)] = sqrt(a b) (sin t + (pi - t) cos t) / (2 pi)``
  and ``E[step(u) step(v)] = (pi - t) / (2 pi)``;
* ``"erf"``: the arcsine kernel of Williams, *Computing with infinite networks*, NeurIPS 1997:
  ``E[erf(u) erf(v)] = (2 / pi) arcsin(2 c / sqrt((1 + 2 a)(1 + 2 b)))``, and, with ``erf'(u) = 2 exp(-u^2) /
  sqrt(pi)``, ``E[erf'(u) erf'(v)] = (4 / pi) / sqrt((1 + 2 a)(1 + 2 b) - 4 c^2)``.

Operators. For a linear operator ``T`` acting on functions of ``x`` (written ``T(x, u_fn)`` as everywhere in
pysciml, e.g. the ones of :mod:`pysciml.analysis.ntk_blocks`), the kernel that governs a loss on ``T[f]`` is
``K_T(x, y) = T_x T_y K(x, y)`` (Gan, Li, Lin & Shi, arXiv 2503.11029). :func:`analytic_ntk` applies ``T``
to the kernel *function* by automatic differentiation (:mod:`torch.func`), first in ``x``, then in ``y``. The
erf kernels are smooth, so any operator is exact; the ReLU kernels are not differentiable where ``x`` and ``y``
are parallel (``t = 0``), so ReLU accepts only the identity (an ``InputError`` says so). Cost: the derivatives
are nested forward-mode passes through the whole recursion, in both arguments; first- and second-order
operators take seconds for a hundred points, but a fourth-order one (the biharmonic: eighth order in total)
took about a minute for 4 points on this project's CPU: use the empirical kernel of a wide network there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import vmap

from ..errors import InputError

Tensor = torch.Tensor
UFn = Callable[[Tensor], Tensor]
Operator = Callable[[Tensor, UFn], Tensor]

__all__ = ["NTKNetwork", "analytic_ntk", "analytic_nngp", "ANALYTIC_ACTIVATIONS", "ACTIVATIONS"]

ANALYTIC_ACTIVATIONS = ("relu", "erf")
"""Activations with a closed-form infinite-width kernel here."""


def _relu_power(k: int) -> Callable[[Tensor], Tensor]:
    def act(z: Tensor) -> Tensor:
        return torch.relu(z) ** k

    return act


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "erf": torch.erf,
    "tanh": torch.tanh,
    "softplus": torch.nn.functional.softplus,
    "relu2": _relu_power(2),
    "relu3": _relu_power(3),
    "relu5": _relu_power(5),
}
"""Activations of :class:`NTKNetwork` by name (``"reluK"`` = ``relu(z)^K``, smooth enough for derivatives of
order ``< K``)."""


def _check_activation(activation: object, allowed: Sequence[str]) -> str:
    if activation not in allowed:
        raise InputError(f"activation: expected one of {tuple(allowed)}, got {activation!r}")
    return str(activation)


def _check_arch(depth: object, sigma_w: object, sigma_b: object) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise InputError(f"depth: expected the number of hidden layers, an int >= 1, got {depth!r}")
    for name, v in (("sigma_w", sigma_w), ("sigma_b", sigma_b)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise InputError(f"{name}: expected a finite float >= 0, got {v!r}")


class NTKNetwork(nn.Module):
    """A fully connected network in NTK parameterisation (module docstring), scalar output.

    Args:
        d_in: input dimension ``d``.
        width: hidden width ``n``.
        depth: number of hidden layers ``L`` (``>= 1``).
        activation: a name of :data:`ACTIVATIONS`.
        sigma_w, sigma_b: weight and bias scales.
        dtype: parameter dtype (default float64).
        generator: a ``torch.Generator`` for the ``N(0, 1)`` initialisation (``None``: the global one).

    Calling it on ``(N, d)`` points returns ``(N,)`` values (dtype and device of the parameters).
    """

    def __init__(self, d_in: int, width: int, depth: int, activation: str = "erf", *, sigma_w: float = 1.0,
                 sigma_b: float = 0.0, dtype: torch.dtype = torch.float64,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, v in (("d_in", d_in), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name}: expected a positive int, got {v!r}")
        _check_arch(depth, sigma_w, sigma_b)
        self.activation = _check_activation(activation, tuple(ACTIVATIONS))
        self.phi = ACTIVATIONS[self.activation]
        self.sigma_w, self.sigma_b = float(sigma_w), float(sigma_b)
        sizes = [d_in] + [width] * depth + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            self.weights.append(nn.Parameter(torch.randn(fan_out, fan_in, dtype=dtype, generator=generator)))
            self.biases.append(nn.Parameter(torch.randn(fan_out, dtype=dtype, generator=generator)))

    def forward(self, x: Tensor) -> Tensor:
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = self.sigma_w / math.sqrt(w.shape[1]) * (h @ w.T) + self.sigma_b * b
            if i < last:
                h = self.phi(h)
        return h.squeeze(-1)


# ---------------------------------------------------------------------------------------------------------------
# Gaussian expectations: (a, b, c) = (Var u, Var v, Cov(u, v)) -> (E[phi phi], E[phi' phi'])


def _relu_expect(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    ab = torch.sqrt(a * b)
    cos = torch.clamp(c / ab, -1.0, 1.0)
    t = torch.arccos(cos)
    e_phi = ab * (torch.sin(t) + (math.pi - t) * cos) / (2 * math.pi)
    e_dphi = (math.pi - t) / (2 * math.pi)
    return e_phi, e_dphi


def _erf_expect(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    prod = (1 + 2 * a) * (1 + 2 * b)
    e_phi = (2 / math.pi) * torch.arcsin(2 * c / torch.sqrt(prod))
    e_dphi = (4 / math.pi) / torch.sqrt(prod - 4 * c * c)
    return e_phi, e_dphi


_EXPECT = {"relu": _relu_expect, "erf": _erf_expect}


def _pair_kernels(x: Tensor, y: Tensor, activation: str, depth: int, sigma_w: float,
                  sigma_b: float) -> tuple[Tensor, Tensor]:
    """``(NNGP, NTK)`` of the pairs ``(x[..., :], y[..., :])`` (broadcast over leading dims): shape ``(...)``."""
    d = x.shape[-1]
    sw2, sb2 = sigma_w ** 2, sigma_b ** 2
    a = sw2 * (x * x).sum(-1) / d + sb2
    b = sw2 * (y * y).sum(-1) / d + sb2
    c = sw2 * (x * y).sum(-1) / d + sb2
    theta = c
    expect = _EXPECT[activation]
    for _ in range(depth):
        e_c, e_dc = expect(a, b, c)
        e_a, _ = expect(a, a, a)
        e_b, _ = expect(b, b, b)
        c_next = sw2 * e_c + sb2
        theta = theta * sw2 * e_dc + c_next
        a, b, c = sw2 * e_a + sb2, sw2 * e_b + sb2, c_next
    return c, theta


def _check_points(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] == 0 or not x.is_floating_point():
        raise InputError(f"{name}: expected a floating tensor of points of shape (N, d)")
    return x


def _kernel(x1: Tensor, x2: Tensor | None, which: int, activation: str, depth: int, sigma_w: float,
            sigma_b: float, op1: Operator | None, op2: Operator | None, chunk_size: int | None) -> Tensor:
    _check_activation(activation, ANALYTIC_ACTIVATIONS)
    _check_arch(depth, sigma_w, sigma_b)
    x1 = _check_points(x1, "x1")
    x2 = x1 if x2 is None else _check_points(x2, "x2")
    if x1.shape[1] != x2.shape[1]:
        raise InputError(f"x2: expected {x1.shape[1]} coordinates per point like x1, got {x2.shape[1]}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise InputError(f"chunk_size: expected None or a positive int, got {chunk_size!r}")
    for name, op in (("op1", op1), ("op2", op2)):
        if op is not None and not callable(op):
            raise InputError(f"{name}: expected None or an operator op(x, u_fn), got {type(op).__name__}")
    if activation == "relu" and (op1 is not None or op2 is not None):
        raise InputError("op1/op2: the ReLU (arc-cosine) kernels are not differentiable where x and y are "
                         "parallel, so operators cannot be applied to them; use activation='erf'")

    def pair(x: Tensor, y: Tensor) -> Tensor:
        return _pair_kernels(x, y, activation, depth, sigma_w, sigma_b)[which]

    if op1 is None and op2 is None:
        rows = [pair(x1[s:s + (chunk_size or len(x1)), None, :], x2[None, :, :])
                for s in range(0, len(x1), chunk_size or len(x1))]
        return torch.cat(rows, 0)

    def t_first(xi: Tensor, y: Tensor) -> Tensor:
        """``T1_x k(x, y)`` at the one point ``xi`` (``(d,)``), for one ``y`` (``(d,)``): a 0-d tensor."""
        if op1 is None:
            return pair(xi, y)
        out = op1(xi.unsqueeze(0), lambda pts: pair(pts, y.expand_as(pts)))
        return out.reshape(-1)[0]

    def row(xi: Tensor) -> Tensor:
        def g(ys: Tensor) -> Tensor:  # ys (M, d) -> (M,): y -> T1_x k(xi, y)
            return vmap(lambda y: t_first(xi, y))(ys)

        out = g(x2) if op2 is None else op2(x2, g)
        return out.reshape(-1)

    return vmap(row, chunk_size=chunk_size)(x1)


def analytic_nngp(x1: Tensor, x2: Tensor | None = None, *, activation: str = "erf", depth: int = 1,
                  sigma_w: float = 1.0, sigma_b: float = 0.0, op1: Operator | None = None,
                  op2: Operator | None = None, chunk_size: int | None = None) -> Tensor:
    """The infinite-width NNGP kernel ``Sigma^(L+1)`` (output covariance at initialisation) of
    :class:`NTKNetwork`, optionally with operators applied in each argument.

    Args and returns as :func:`analytic_ntk`.
    """
    return _kernel(x1, x2, 0, activation, depth, sigma_w, sigma_b, op1, op2, chunk_size)


def analytic_ntk(x1: Tensor, x2: Tensor | None = None, *, activation: str = "erf", depth: int = 1,
                 sigma_w: float = 1.0, sigma_b: float = 0.0, op1: Operator | None = None,
                 op2: Operator | None = None, chunk_size: int | None = None) -> Tensor:
    """The infinite-width NTK ``Theta^(L+1)`` of :class:`NTKNetwork`, and ``T1_x T2_y Theta(x, y)``.

    Args:
        x1: ``(N1, d)`` points (floating; the result has their dtype and device).
        x2: ``(N2, d)`` points (``None``: ``x1``).
        activation: ``"relu"`` or ``"erf"``.
        depth: hidden layers ``L >= 1``.
        sigma_w, sigma_b: weight and bias scales (as in :class:`NTKNetwork`).
        op1: operator ``op1(x, u_fn) -> (N,)`` applied in the first argument (``None``: identity), e.g.
            :func:`pysciml.analysis.ntk_blocks.laplacian_op` (built on :mod:`pysciml.pinn.derivatives`).
            It must act pointwise (its value at ``x[i]`` depends on ``u`` near ``x[i]`` only) and be
            composable with :mod:`torch.func`.
        op2: operator in the second argument (``None``: identity; pass the same as ``op1`` for ``K_T``).
        chunk_size: rows of ``x1`` per vmapped chunk (bounds memory).

    Returns:
        ``(N1, N2)`` tensor: ``K[i, j] = op1_x op2_y Theta(x1[i], x2[j])``.

    Raises:
        InputError: unknown activation, bad depth/scales, bad points, or an operator with ``"relu"``.
    """
    return _kernel(x1, x2, 1, activation, depth, sigma_w, sigma_b, op1, op2, chunk_size)
