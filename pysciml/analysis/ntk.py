"""Empirical neural tangent kernels (NTK) of networks and of linear operators applied to them.

The one module of pysciml that computes NTKs: the PINN loss weights of :class:`pysciml.pinn.weights.NTKWeights`
use it, and the operator-NTK analysis builds on it. A *function of the parameters* is any callable

    ``fn(params, x) -> out``,  ``params``: ``dict[str, Tensor]``, ``x``: ``(N, d)``, ``out``: ``(N,)`` or ``(N, k)``

written with :func:`torch.func.functional_call`; :func:`network_function` builds one from an ``nn.Module`` and,
optionally, a linear operator ``operator(x, u_fn)`` applied to it (for a PINN the residual ``L[u](x)``, or a
boundary operator). With ``J(x) = d out / d theta`` (the Jacobian of the flattened output with respect to all
parameters), the empirical NTK is

    ``K(x1, x2) = J1(x1) J2(x2)^T``,

of shape ``out1.shape + out2.shape`` (``(N1, N2)`` for vector outputs, ``(N1, k1, N2, k2)`` for matrix ones;
an ``(N, 1)`` output counts as the scalar field ``(N,)``).
For ``f1 = f2`` and ``x1 = x2`` it is symmetric positive semi-definite, and its trace is the sum of squared
per-output gradient norms, which :func:`ntk_trace` computes without forming ``K``.

Three ways to compute ``J`` / ``K`` (``method=``):

* ``"jacobian"`` (default): :func:`torch.func.jacrev` over the parameters. With ``pointwise=True`` (the
  output at point ``i`` depends only on ``x[i]``: true for networks and for differential operators applied
  to them pointwise) one single-point Jacobian is vmapped over the points, so the cost grows like ``N``; with
  ``pointwise=False`` the whole batch output is differentiated (any operator, including ones that couple
  points), at a cost growing like ``N^2``.
* ``"ntk_vp"``: NTK-vector products, ``K e_j = J1 (J2^T e_j)`` by one reverse (vjp) and one forward (jvp) pass
  per column, vmapped over the columns; never stores a Jacobian (helps when the parameter count is large).
* ``"autograd"``: one :func:`torch.autograd.grad` call per output entry (slow, a plain Python loop): for
  functions that torch.func cannot transform (e.g. ones using ``torch.autograd.grad`` inside).

All results are float tensors on the parameters' device and dtype; nothing keeps a graph to the parameters
(the kernels are analysis quantities, not losses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ..errors import InputError

Tensor = torch.Tensor
ParamFunction = Callable[[dict[str, Tensor], Tensor], Tensor]
"""``fn(params, x) -> out``: the output as a function of the parameter dict (see the module docstring)."""

__all__ = ["network_function", "parameters_of", "empirical_ntk", "ntk_trace", "jacobian_matrix"]

_METHODS = ("jacobian", "ntk_vp", "autograd")


def parameters_of(module: nn.Module, *, trainable_only: bool = True) -> dict[str, Tensor]:
    """The module's parameters as a detached ``{name: tensor}`` dict, the ``params`` argument of this module's
    functions (names as in ``module.named_parameters()``; ``trainable_only`` skips ``requires_grad=False`` ones).
    """
    if not isinstance(module, nn.Module):
        raise InputError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad or not trainable_only}


def network_function(net: nn.Module, operator: Callable[[Tensor, Callable[[Tensor], Tensor]], Tensor] | None = None,
                     *, transform: Callable[[Tensor, Tensor], Tensor] | None = None) -> ParamFunction:
    """``fn(params, x)`` evaluating ``net`` (or ``operator(x, u_fn)`` applied to it) with the given parameters.

    Args:
        net: the network, mapping ``(N, d)`` points to ``(N,)``, ``(N, 1)`` or ``(N, m)`` outputs.
        operator: optional ``operator(x, u_fn) -> (N,) or (N, k)``, where ``u_fn(y)`` evaluates the network
            (after ``transform``) at points ``y`` with the given parameters; e.g. a PDE residual written with the
            derivative helpers of :mod:`pysciml.pinn.derivatives`. Linear in ``u`` for a kernel in the strict
            NTK sense, but any differentiable operator is accepted.
        transform: optional output transform ``transform(x, n) -> u`` (a hard constraint), applied to the raw
            network output ``n`` before ``operator``.

    Returns:
        ``fn(params, x)``; ``params`` may hold a subset of the network's parameters (the others keep their
        current values, as with :func:`torch.func.functional_call`).
    """
    if not isinstance(net, nn.Module):
        raise InputError(f"net: expected a torch.nn.Module, got {type(net).__name__}")

    def fn(params: dict[str, Tensor], x: Tensor) -> Tensor:
        def u_fn(y: Tensor) -> Tensor:
            out = functional_call(net, params, (y,))
            return out if transform is None else transform(y, out)

        return u_fn(x) if operator is None else operator(x, u_fn)

    return fn


def _check(fn: object, params: object, x: object, method: str, name: str = "fn") -> None:
    if not callable(fn):
        raise InputError(f"{name}: expected a callable fn(params, x), got {type(fn).__name__}")
    if not isinstance(params, Mapping) or not params or not all(isinstance(v, Tensor) for v in params.values()):
        raise InputError("params: expected a non-empty dict {name: tensor} (use parameters_of(net))")
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise InputError("x: expected a tensor of points with a leading, non-empty point dimension (N, d)")
    if method not in _METHODS:
        raise InputError(f"method: expected one of {_METHODS}, got {method!r}")


def _detached(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in params.items()}


def _flatten_jac(jac: Mapping[str, Tensor], n_out: int, names: list[str]) -> Tensor:
    """``{name: (*out, *p_shape)}`` -> ``(n_out, P)`` with the parameters in ``names`` order."""
    return torch.cat([jac[name].reshape(n_out, -1) for name in names], dim=1)


def jacobian_matrix(fn: ParamFunction, params: Mapping[str, Tensor], x: Tensor, *, method: str = "jacobian",
                    pointwise: bool = True, chunk_size: int | None = None) -> tuple[Tensor, torch.Size]:
    """The Jacobian of ``fn(params, x)`` with respect to all parameters, as one matrix.

    Args:
        fn: ``fn(params, x) -> out`` (see the module docstring).
        params: ``{name: tensor}``; the columns follow this dict's order, each parameter flattened.
        x: ``(N, d)`` points (any tensor with a leading point dimension).
        method: ``"jacobian"`` or ``"autograd"`` (``"ntk_vp"`` builds no Jacobian: use :func:`empirical_ntk`).
        pointwise: with ``"jacobian"``, vmap a single-point Jacobian over the points (output ``i`` must depend
            only on ``x[i]``); else differentiate the whole batch output.
        chunk_size: points (or outputs) per vmap chunk, to bound memory; ``None`` = all at once.

    Returns:
        ``(J, out_shape)``: ``J`` of shape ``(out.numel(), P)``, ``P`` the total parameter count, and the shape
        of ``out``; same dtype and device as the parameters.
    """
    _check(fn, params, x, method)
    if method == "ntk_vp":
        raise InputError("method: 'ntk_vp' forms no Jacobian; use 'jacobian' or 'autograd' here")
    p = _detached(params)
    names = list(p)
    if method == "autograd":
        leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
        with torch.enable_grad():
            out = fn(leaves, x)
            flat = out.reshape(-1)
            rows = []
            for i in range(flat.numel()):
                grads = torch.autograd.grad(flat[i], [leaves[k] for k in names], retain_graph=True,
                                            allow_unused=True)
                rows.append(torch.cat([(torch.zeros_like(leaves[k]) if g is None else g).reshape(-1)
                                       for k, g in zip(names, grads, strict=True)]))
        return torch.stack(rows).detach(), _scalar_field(out.shape)
    if pointwise:
        def single(params_: dict[str, Tensor], xi: Tensor) -> Tensor:
            return fn(params_, xi.unsqueeze(0)).squeeze(0)

        jac = vmap(jacrev(single), in_dims=(None, 0), chunk_size=chunk_size)(p, x)
    else:
        jac = jacrev(fn, chunk_size=chunk_size)(p, x)
    out_shape = next(iter(jac.values())).shape[:_out_rank(jac, p)]
    n_out = 1
    for s in out_shape:
        n_out *= s
    return _flatten_jac(jac, n_out, names), _scalar_field(out_shape)


def _scalar_field(shape: torch.Size) -> torch.Size:
    """``(N, 1)`` -> ``(N,)``: a one-component output is a scalar field."""
    return shape[:1] if len(shape) == 2 and shape[1] == 1 else shape


def _out_rank(jac: Mapping[str, Tensor], params: Mapping[str, Tensor]) -> int:
    name = next(iter(params))
    return jac[name].dim() - params[name].dim()


def empirical_ntk(f1: ParamFunction, f2: ParamFunction | None, params: Mapping[str, Tensor], x1: Tensor,
                  x2: Tensor | None = None, *, method: str = "jacobian", pointwise: bool = True,
                  chunk_size: int | None = None) -> Tensor:
    """The empirical NTK ``K(x1, x2) = J1(x1) J2(x2)^T`` of two functions of the same parameters.

    Args:
        f1: ``f1(params, x) -> out1`` (e.g. the network, or a residual operator applied to it:
            :func:`network_function`).
        f2: the second function (``None``: ``f1``); e.g. ``f1`` = residual and ``f2`` = boundary operator give
            the off-diagonal block ``K_rb`` of a PINN.
        params: ``{name: tensor}``, the parameters both functions take (detached inside).
        x1: ``(N1, d)`` points of ``f1``.
        x2: ``(N2, d)`` points of ``f2`` (``None``: ``x1``).
        method: ``"jacobian"``, ``"ntk_vp"`` or ``"autograd"`` (module docstring).
        pointwise: see :func:`jacobian_matrix` (ignored by ``"ntk_vp"`` and ``"autograd"``).
        chunk_size: vmap chunk size (``None``: all at once).

    Returns:
        ``K`` of shape ``out1.shape + out2.shape`` (``(N1, N2)`` for ``(N,)`` outputs), on the parameters'
        device and dtype, without a graph.
    """
    f2 = f1 if f2 is None else f2
    x2 = x1 if x2 is None else x2
    _check(f1, params, x1, method, "f1")
    _check(f2, params, x2, method, "f2")
    if method == "ntk_vp":
        return _ntk_vp(f1, f2, _detached(params), x1, x2, chunk_size)
    j1, s1 = jacobian_matrix(f1, params, x1, method=method, pointwise=pointwise, chunk_size=chunk_size)
    if f2 is f1 and x2 is x1:
        j2, s2 = j1, s1
    else:
        j2, s2 = jacobian_matrix(f2, params, x2, method=method, pointwise=pointwise, chunk_size=chunk_size)
    return (j1 @ j2.T).reshape(s1 + s2)


def _ntk_vp(f1: ParamFunction, f2: ParamFunction, params: dict[str, Tensor], x1: Tensor, x2: Tensor,
            chunk_size: int | None) -> Tensor:
    """``K`` column by column: ``K[..., j] = J1 (J2^T e_j)`` (a vjp of ``f2``, then a jvp of ``f1``)."""
    out2, vjp_fn = vjp(lambda p: f2(p, x2), params)

    def column(e: Tensor) -> Tensor:
        (tangent,) = vjp_fn(e)
        return jvp(lambda p: f1(p, x1), (params,), (tangent,))[1]

    m = out2.numel()
    basis = torch.eye(m, dtype=out2.dtype, device=out2.device).reshape(m, *out2.shape)
    cols = vmap(column, chunk_size=chunk_size)(basis)  # (M2, *out1)
    s1 = _scalar_field(cols.shape[1:])
    return cols.reshape(m, -1).T.reshape(s1 + _scalar_field(out2.shape)).detach()


def ntk_trace(fn: ParamFunction, params: Mapping[str, Tensor], x: Tensor, *, method: str = "jacobian",
              pointwise: bool = True, chunk_size: int | None = None) -> Tensor:
    """``trace K(x, x)`` of ``fn``'s empirical NTK without forming ``K``: the sum over all output entries of
    the squared norm of their parameter gradient, ``sum_i ||d out_i / d theta||^2 = ||J||_F^2``.

    Args:
        fn: ``fn(params, x) -> out`` (module docstring).
        params: ``{name: tensor}``.
        x: ``(N, d)`` points.
        method: ``"jacobian"`` or ``"autograd"`` (``"ntk_vp"`` is not offered: it would form ``K``).
        pointwise: with ``"jacobian"``, per-point gradients by vmap (cost ~ ``N``); else the batch Jacobian.
        chunk_size: vmap chunk size.

    Returns:
        A 0-d tensor (parameters' dtype and device), the trace; divide by ``out.numel()`` for the mean
        per-point trace.
    """
    if method == "ntk_vp":
        raise InputError("method: ntk_trace takes 'jacobian' or 'autograd' ('ntk_vp' would form all of K)")
    j, _ = jacobian_matrix(fn, params, x, method=method, pointwise=pointwise, chunk_size=chunk_size)
    return (j * j).sum()
