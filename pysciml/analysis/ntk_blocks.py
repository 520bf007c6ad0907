"""Operator NTKs of networks, chunked, and the PINN kernel blocks ``K_uu``, ``K_ur``, ``K_rr``.

For a network ``u(x; theta)`` and linear operators ``T1``, ``T2`` (a PDE residual, a boundary operator, a
derivative...), the operator NTK is

    ``K_{T1,T2}(x, y) = J_{T1}(x) J_{T2}(y)^T``,  ``J_T(x) = d T[u](x) / d theta``,

which for linear ``T`` equals ``T1_x T2_y K(x, y)`` applied to the network's NTK ``K`` (Gan, Li, Lin & Shi,
*Neural tangent kernel of neural networks with loss informed by differential operators*, arXiv 2503.11029).
The Jacobians are those of :func:`pysciml.analysis.ntk.jacobian_matrix` (the one module that computes NTKs);
this module adds

* operators by name, built on :mod:`pysciml.pinn.derivatives` (:func:`identity_op`, :func:`partial_op`,
  :func:`laplacian_op`, :func:`biharmonic_op`, :func:`advection_op`, :func:`operator`); any user function
  ``op(x, u_fn) -> (N,)`` that is linear in ``u`` works the same way;
* :func:`operator_ntk`: the kernel in row and column chunks of points, so that a 5,000 x 5,000 operator
  kernel is formed with bounded memory (only ``chunk x P`` Jacobian blocks at a time, ``P`` = parameters,
  unless all Jacobians of the columns fit in ``max_bytes``, when they are formed once and reused);
* :func:`pinn_ntk_blocks`: the kernel of a PINN with boundary points ``x_b`` (operator ``B``, default the
  identity: ``u``) and residual points ``x_r`` (operator ``R``), as in Wang, Yu & Perdikaris, *When and why
  PINNs fail to train: a neural tangent kernel perspective*, J. Comput. Phys. 449 (2022) 110768, eq. (3.4):
  ``K = [[K_uu, K_ur], [K_ru, K_rr]]`` with ``K_ru = K_ur^T``, and their trace-rule weights.

Shapes: points are ``(N, d)``; operator outputs are scalar fields ``(N,)`` (an ``(N, k)`` output gives ``N k``
kernel rows, point-major). Kernels are detached tensors on the parameters' dtype and device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ..pinn import derivatives as D
from .ntk import empirical_ntk, jacobian_matrix, network_function, parameters_of

Tensor = torch.Tensor
UFn = Callable[[Tensor], Tensor]
Operator = Callable[[Tensor, UFn], Tensor]

__all__ = ["identity_op", "partial_op", "laplacian_op", "biharmonic_op", "advection_op", "operator",
           "operator_ntk", "NTKBlocks", "pinn_ntk_blocks"]


def identity_op() -> Operator:
    """``T[u] = u``."""

    def op(x: Tensor, u_fn: UFn) -> Tensor:
        return u_fn(x).reshape(x.shape[0], -1).squeeze(-1)

    return op


def partial_op(index: int | Sequence[int]) -> Operator:
    """``T[u] = d^k u / dx_{i1} ... dx_{ik}`` (``index = i`` or a tuple of input indices; any order)."""
    idx = (index,) if isinstance(index, int) and not isinstance(index, bool) else tuple(index)  # type: ignore[arg-type]
    if not idx or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in idx):
        raise InputError(f"index: expected an input index or a non-empty tuple of them, got {index!r}")

    def op(x: Tensor, u_fn: UFn) -> Tensor:
        return D.partial(u_fn, x, idx)

    return op


def laplacian_op() -> Operator:
    """``T[u] = sum_i d^2 u / dx_i^2`` (exact, :func:`pysciml.pinn.derivatives.laplacian`)."""

    def op(x: Tensor, u_fn: UFn) -> Tensor:
        return D.laplacian(u_fn, x)

    return op


def biharmonic_op() -> Operator:
    """``T[u] = Delta^2 u = sum_{i, j} d^4 u / dx_i^2 dx_j^2`` (in 1-D: ``u''''``), by nested forward-mode
    partials (``d^2`` terms, each ``~81`` network evaluations)."""

    def op(x: Tensor, u_fn: UFn) -> Tensor:
        d = x.shape[1]
        return sum(D.partial(u_fn, x, (i, i, j, j)) for i in range(d) for j in range(d))  # type: ignore[return-value]

    return op


def advection_op(a: Sequence[float] | Tensor | Callable[[Tensor], Tensor]) -> Operator:
    """``T[u] = a . grad u`` with a constant velocity ``a`` (``(d,)``) or a field ``a(x) -> (N, d)``."""
    if not callable(a):
        a_vec = torch.as_tensor(a, dtype=torch.float64)
        if a_vec.dim() != 1 or a_vec.numel() == 0:
            raise InputError(f"a: expected a velocity vector (d,) or a callable a(x) -> (N, d), got {a!r}")

    def op(x: Tensor, u_fn: UFn) -> Tensor:
        g = D.gradient(u_fn, x)
        vel = a(x) if callable(a) else a_vec.to(dtype=x.dtype, device=x.device).expand_as(g)
        if vel.shape != g.shape:
            raise InputError(f"a: expected {tuple(g.shape)} velocities at the points, got {tuple(vel.shape)}")
        return (vel * g).sum(-1)

    return op


_NAMED = {"identity": identity_op, "laplacian": laplacian_op, "biharmonic": biharmonic_op}


def operator(name: str, d: int = 1) -> Operator:
    """An operator by name: ``"identity"``, ``"d/dx"`` (= ``d/dx_0``), ``"d/dx_i"``, ``"laplacian"``,
    ``"biharmonic"``, ``"advection"`` (``a = (1, ..., 1)`` in ``d`` dimensions)."""
    if name in _NAMED:
        return _NAMED[name]()
    if name == "d/dx":
        return partial_op(0)
    if name.startswith("d/dx_") and name[5:].isdigit():
        return partial_op(int(name[5:]))
    if name == "advection":
        return advection_op([1.0] * d)
    raise InputError(f"name: expected one of 'identity', 'd/dx', 'd/dx_<i>', 'laplacian', 'biharmonic', "
                     f"'advection', got {name!r}")


def _check_op(op: object, name: str) -> None:
    if op is not None and not callable(op):
        raise InputError(f"{name}: expected None (identity) or an operator op(x, u_fn), got {type(op).__name__}")


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected a positive int, got {value!r}")
    return value


def operator_ntk(net: nn.Module, x1: Tensor, x2: Tensor | None = None, *, op1: Operator | None = None,
                 op2: Operator | None = None, same_op: bool | None = None,
                 params: Mapping[str, Tensor] | None = None,
                 transform: Callable[[Tensor, Tensor], Tensor] | None = None, chunk: int = 512,
                 vmap_chunk: int | None = 64, method: str = "jacobian", max_bytes: int = 2 ** 30) -> Tensor:
    """The empirical operator NTK ``K[i, j] = J_{op1}(x1[i]) . J_{op2}(x2[j])`` of ``net``, in chunks.

    Args:
        net: the network (an ``nn.Module`` from ``(N, d)`` points to ``(N,)`` or ``(N, 1)`` values).
        x1: ``(N1, d)`` points of the rows.
        x2: ``(N2, d)`` points of the columns (``None``: ``x1``).
        op1: operator of the rows, ``op1(x, u_fn) -> (N,)`` (``None``: identity, the plain NTK).
        op2: operator of the columns (``None``: ``op1`` if ``same_op`` else identity).
        same_op: whether ``op2`` is ``op1``; default: ``op2 is None`` (so ``operator_ntk(net, x, op1=T)``
            is ``K_T``, symmetric PSD).
        params: ``{name: tensor}`` to differentiate (default: all trainable parameters of ``net``).
        transform: output transform ``transform(x, n) -> u`` (a hard constraint) applied before the operators.
        chunk: points per row/column block (bounds the Jacobian blocks to ``chunk x P``).
        vmap_chunk: points per vmapped Jacobian call inside a block (``None``: the whole block at once).
        method: ``"jacobian"`` (per-point Jacobians, :func:`~pysciml.analysis.ntk.jacobian_matrix`) or
            ``"ntk_vp"`` (NTK-vector products per block pair, :func:`~pysciml.analysis.ntk.empirical_ntk`:
            no Jacobian is stored, slower).
        max_bytes: if all column Jacobians fit in this many bytes they are formed once and reused for every
            row block; otherwise each column block is recomputed per row block (time ``~ N1 N2 / chunk``
            Jacobian rows instead of ``N1 + N2``, memory ``~ 2 chunk P``).

    Returns:
        ``(N1, N2)`` tensor (rows point-major ``N1 k1`` for ``(N, k1)`` operator outputs), detached, on the
        parameters' dtype and device. With ``x2 is None`` and the same operator only the upper block
        triangle is computed and mirrored (and the diagonal blocks symmetrised): the result is exactly symmetric.

    Raises:
        InputError: bad network, points, operators, chunk sizes or method.
    """
    if not isinstance(net, nn.Module):
        raise InputError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
    if not isinstance(x1, Tensor) or x1.dim() != 2 or x1.shape[0] == 0:
        raise InputError("x1: expected a tensor of points of shape (N1, d)")
    if x2 is not None and (not isinstance(x2, Tensor) or x2.dim() != 2 or x2.shape[1] != x1.shape[1]):
        raise InputError(f"x2: expected a tensor of points of shape (N2, {x1.shape[1]}) like x1")
    _check_op(op1, "op1")
    _check_op(op2, "op2")
    chunk = _positive(chunk, "chunk")
    if vmap_chunk is not None:
        _positive(vmap_chunk, "vmap_chunk")
    if method not in ("jacobian", "ntk_vp"):
        raise InputError(f"method: expected 'jacobian' or 'ntk_vp', got {method!r}")
    same_op = (op2 is None) if same_op is None else bool(same_op)
    op2 = op1 if same_op else op2
    symmetric = x2 is None and same_op
    x2 = x1 if x2 is None else x2
    p = parameters_of(net) if params is None else {k: v.detach() for k, v in params.items()}
    f1 = network_function(net, op1, transform=transform)
    f2 = f1 if same_op else network_function(net, op2, transform=transform)
    blocks1 = [slice(s, min(s + chunk, len(x1))) for s in range(0, len(x1), chunk)]
    blocks2 = [slice(s, min(s + chunk, len(x2))) for s in range(0, len(x2), chunk)]

    if method == "ntk_vp":
        def block(i: int, j: int) -> Tensor:
            k = empirical_ntk(f1, f2, p, x1[blocks1[i]], x2[blocks2[j]], method="ntk_vp", chunk_size=vmap_chunk)
            if k.dim() != 2:
                raise InputError("method: 'ntk_vp' here takes scalar-field operators (N,); use 'jacobian'")
            return k
    else:
        def jac(fn: Callable[[dict[str, Tensor], Tensor], Tensor], x: Tensor) -> Tensor:
            return jacobian_matrix(fn, p, x, chunk_size=vmap_chunk)[0]

        n_params = sum(v.numel() for v in p.values())
        itemsize = next(iter(p.values())).element_size()
        cached: list[Tensor] | None = None
        if len(x2) * n_params * itemsize <= max_bytes:
            cached = [jac(f2, x2[b]) for b in blocks2]

        row_jac: dict[int, Tensor] = {}  # the current row block's Jacobian, formed once per row block

        def block(i: int, j: int) -> Tensor:
            if symmetric and cached is not None:
                j1 = cached[i]
            else:
                if i not in row_jac:
                    row_jac.clear()
                    row_jac[i] = jac(f1, x1[blocks1[i]])
                j1 = row_jac[i]
            j2 = cached[j] if cached is not None else jac(f2, x2[blocks2[j]])
            return j1 @ j2.T

    out: Tensor | None = None
    starts1, starts2 = [0], [0]
    for i in range(len(blocks1)):
        for j in range(i if symmetric else 0, len(blocks2)):
            k = block(i, j).detach()
            if symmetric and i == j:
                k = 0.5 * (k + k.T)  # a Gram block in floating point is symmetric only to round-off
            if out is None:  # the row/column counts per point are known after the first block
                r1, r2 = k.shape[0] // (blocks1[0].stop - blocks1[0].start), \
                    k.shape[1] // (blocks2[0].stop - blocks2[0].start)
                starts1 = [b.start * r1 for b in blocks1] + [len(x1) * r1]
                starts2 = [b.start * r2 for b in blocks2] + [len(x2) * r2]
                out = k.new_empty(starts1[-1], starts2[-1])
            out[starts1[i]:starts1[i + 1], starts2[j]:starts2[j + 1]] = k
            if symmetric and j > i:
                out[starts1[j]:starts1[j + 1], starts2[i]:starts2[i + 1]] = k.T
    assert out is not None
    return out


@dataclass
class NTKBlocks:
    """The NTK of a PINN with boundary (``u``) and residual (``r``) points.

    Attributes:
        K_uu: ``(N_b, N_b)`` kernel of the boundary operator.
        K_ur: ``(N_b, N_r)`` cross kernel (``K_ru = K_ur.T``).
        K_rr: ``(N_r, N_r)`` kernel of the residual operator.
    """

    K_uu: Tensor
    K_ur: Tensor
    K_rr: Tensor

    @property
    def K_ru(self) -> Tensor:
        return self.K_ur.T

    def full(self) -> Tensor:
        """``[[K_uu, K_ur], [K_ru, K_rr]]``, ``(N_b + N_r, N_b + N_r)``."""
        return torch.cat([torch.cat([self.K_uu, self.K_ur], 1), torch.cat([self.K_ru, self.K_rr], 1)], 0)

    def traces(self) -> dict[str, float]:
        """``{"u": tr K_uu, "r": tr K_rr}``."""
        return {"u": float(torch.trace(self.K_uu)), "r": float(torch.trace(self.K_rr))}

    def weights(self) -> dict[str, float]:
        """The trace rule of Wang, Yu & Perdikaris (2022), Algorithm 1: ``lambda_u = tr K / tr K_uu``,
        ``lambda_r = tr K / tr K_rr`` with ``tr K = tr K_uu + tr K_rr``."""
        tr = self.traces()
        total = tr["u"] + tr["r"]
        return {k: total / v for k, v in tr.items()}


def pinn_ntk_blocks(net: nn.Module, residual: Operator, x_r: Tensor, x_b: Tensor, *,
                    boundary: Operator | None = None, params: Mapping[str, Tensor] | None = None,
                    transform: Callable[[Tensor, Tensor], Tensor] | None = None, chunk: int = 512,
                    vmap_chunk: int | None = 64) -> NTKBlocks:
    """The PINN kernel blocks ``K_uu``, ``K_ur``, ``K_rr`` (Wang, Yu & Perdikaris 2022, eq. (3.4)).

    Args:
        net: the network.
        residual: the residual's *linear part* ``R(x, u_fn) -> (N,)`` (the forcing term does not change the
            Jacobian, so a residual ``R[u] - f`` gives the same kernel).
        x_r: ``(N_r, d)`` residual points.
        x_b: ``(N_b, d)`` boundary points.
        boundary: boundary operator (``None``: identity, a Dirichlet condition).
        params, transform, chunk, vmap_chunk: as in :func:`operator_ntk`.

    Returns:
        :class:`NTKBlocks`.
    """
    _check_op(residual, "residual")
    if residual is None:
        raise InputError("residual: expected an operator R(x, u_fn)")
    b_op = identity_op() if boundary is None else boundary
    kw = dict(params=params, transform=transform, chunk=chunk, vmap_chunk=vmap_chunk)
    k_uu = operator_ntk(net, x_b, op1=b_op, **kw)  # type: ignore[arg-type]
    k_rr = operator_ntk(net, x_r, op1=residual, **kw)  # type: ignore[arg-type]
    k_ur = operator_ntk(net, x_b, x_r, op1=b_op, op2=residual, same_op=False, **kw)  # type: ignore[arg-type]
    return NTKBlocks(k_uu, k_ur, k_rr)
