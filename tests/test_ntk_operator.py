"""Operator NTKs and PINN blocks (pysciml.analysis.ntk_blocks): against explicitly formed Jacobians of the operator
outputs (plain autograd, nested torch.autograd.grad), against finite differences of the plain kernel in both
arguments (K_T = T_x T_y K), symmetry and positive semi-definiteness, chunked = unchunked, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pysciml.analysis.ntk_blocks import (
    NTKBlocks,
    advection_op,
    biharmonic_op,
    identity_op,
    laplacian_op,
    operator,
    operator_ntk,
    partial_op,
    pinn_ntk_blocks,
)
from pysciml.errors import InputError

DT = torch.float64


def mlp(d_in: int, width: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, 1)).to(DT)


def _d(y: torch.Tensor, x: torch.Tensor, i: int) -> torch.Tensor:
    """d y / d x_i for a scalar y of one point x (d,), keeping the graph (plain autograd)."""
    return torch.autograd.grad(y, x, create_graph=True)[0][i]


def explicit_operator_jacobian(net: nn.Module, x: torch.Tensor, which: str) -> torch.Tensor:
    """Rows d T[u](x_n) / d theta, each T[u](x_n) formed by nested torch.autograd.grad at one point (the reference,
    independent of torch.func and of pysciml.pinn.derivatives)."""
    params = list(net.parameters())
    rows = []
    for xn in x:
        p = xn.clone().requires_grad_(True)
        u = net(p[None]).reshape(())
        d = p.shape[0]
        if which == "identity":
            t = u
        elif which == "d/dx_1":
            t = _d(u, p, 1)
        elif which == "laplacian":
            t = sum(_d(_d(u, p, i), p, i) for i in range(d))
        elif which == "biharmonic":
            t = sum(_d(_d(_d(_d(u, p, i), p, i), p, j), p, j) for i in range(d) for j in range(d))
        elif which == "advection":
            g = torch.autograd.grad(u, p, create_graph=True)[0]
            t = (torch.tensor([0.5, -2.0], dtype=DT) * g).sum()
        else:  # pragma: no cover
            raise ValueError(which)
        gs = torch.autograd.grad(t, params, retain_graph=True, allow_unused=True)  # the output bias drops out
        rows.append(torch.cat([(torch.zeros_like(q) if g is None else g).reshape(-1)
                               for q, g in zip(params, gs, strict=True)]))
    return torch.stack(rows)


OPS = {"identity": identity_op(), "d/dx_1": partial_op(1), "laplacian": laplacian_op(),
       "biharmonic": biharmonic_op(), "advection": advection_op([0.5, -2.0])}


@pytest.mark.parametrize("which", list(OPS))
def test_operator_ntk_equals_explicit_jacobian_product(which: str) -> None:
    net = mlp(2)
    x = torch.rand(7, 2, dtype=DT, generator=torch.Generator().manual_seed(3)) * 2 - 1
    j = explicit_operator_jacobian(net, x, which)
    k = operator_ntk(net, x, op1=OPS[which], chunk=3)
    ref = j @ j.T
    assert k.shape == (7, 7)
    assert torch.allclose(k, ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max()))


def test_cross_kernel_equals_explicit_jacobian_product() -> None:
    net = mlp(2)
    x1 = torch.rand(5, 2, dtype=DT, generator=torch.Generator().manual_seed(4))
    x2 = torch.rand(6, 2, dtype=DT, generator=torch.Generator().manual_seed(5))
    ref = explicit_operator_jacobian(net, x1, "identity") @ explicit_operator_jacobian(net, x2, "laplacian").T
    for kw in ({}, {"max_bytes": 0}, {"method": "ntk_vp"}):
        k = operator_ntk(net, x1, x2, op1=identity_op(), op2=laplacian_op(), chunk=2, **kw)
        assert torch.allclose(k, ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max())), kw


def _plain_kernel(net: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return operator_ntk(net, a, b, same_op=False)


def test_operator_kernel_is_derivative_of_plain_kernel_in_both_arguments() -> None:
    """K_{d/dx}(x, y) = d/dx d/dy K(x, y) and K_{Lap}(x, y) = d2/dx2 d2/dy2 K(x, y) in 1-D, by central
    differences of the plain NTK (h = 1e-3: O(h^2) ~ 1e-6; h = 1e-2 for the fourth mixed difference)."""
    net = mlp(1, width=16)
    x = torch.linspace(-0.9, 0.8, 6, dtype=DT)[:, None]
    y = torch.linspace(-0.7, 0.9, 5, dtype=DT)[:, None]
    h = 1e-3
    fd1 = (_plain_kernel(net, x + h, y + h) - _plain_kernel(net, x + h, y - h)
           - _plain_kernel(net, x - h, y + h) + _plain_kernel(net, x - h, y - h)) / (4 * h * h)
    k1 = operator_ntk(net, x, y, op1=operator("d/dx"), same_op=True)
    assert float((k1 - fd1).abs().max() / k1.abs().max()) < 1e-5
    h = 1e-2
    c = torch.tensor([1.0, -2.0, 1.0], dtype=DT)
    fd2 = sum(c[i] * c[j] * _plain_kernel(net, x + (i - 1) * h, y + (j - 1) * h)
              for i in range(3) for j in range(3)) / h ** 4
    k2 = operator_ntk(net, x, y, op1=laplacian_op(), same_op=True)
    assert float((k2 - fd2).abs().max() / k2.abs().max()) < 1e-3


@pytest.mark.parametrize("which", ["identity", "d/dx_1", "laplacian", "advection"])
def test_operator_kernels_symmetric_psd(which: str) -> None:
    net = mlp(2, width=12)
    x = torch.rand(40, 2, dtype=DT, generator=torch.Generator().manual_seed(6))
    k = operator_ntk(net, x, op1=OPS[which], chunk=16)
    assert torch.equal(k, k.T)  # mirrored blocks: exactly symmetric
    ev = torch.linalg.eigvalsh(k)
    assert float(ev.min()) > -1e-10 * float(ev.max())
    assert float(ev.max()) > 0


def test_chunked_equals_unchunked() -> None:
    net = mlp(2, width=12)
    x = torch.rand(23, 2, dtype=DT, generator=torch.Generator().manual_seed(7))
    full = operator_ntk(net, x, op1=laplacian_op(), chunk=1000, vmap_chunk=None)
    for kw in ({"chunk": 5}, {"chunk": 4, "max_bytes": 0}, {"chunk": 7, "vmap_chunk": 3},
               {"chunk": 6, "method": "ntk_vp"}):
        k = operator_ntk(net, x, op1=laplacian_op(), **kw)
        assert torch.allclose(k, full, rtol=1e-12, atol=1e-12 * float(full.abs().max())), kw


def test_pinn_blocks_assemble_the_kernel_of_the_stacked_outputs() -> None:
    """K = J J^T with J = [J_u; J_r] (boundary rows then residual rows), and the trace-rule weights."""
    net = mlp(1, width=16)
    x_b = torch.tensor([[0.0], [1.0]], dtype=DT).repeat(3, 1)
    x_r = torch.linspace(0, 1, 9, dtype=DT)[:, None]
    blocks = pinn_ntk_blocks(net, laplacian_op(), x_r, x_b, chunk=4)
    assert isinstance(blocks, NTKBlocks)
    j = torch.cat([explicit_operator_jacobian(net, x_b, "identity"), explicit_operator_jacobian(net, x_r, "laplacian")])
    ref = j @ j.T
    full = blocks.full()
    assert full.shape == (15, 15)
    assert torch.allclose(full, ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max()))
    assert torch.equal(blocks.K_ru, blocks.K_ur.T)
    tr = blocks.traces()
    w = blocks.weights()
    assert w["u"] == pytest.approx((tr["u"] + tr["r"]) / tr["u"], rel=1e-14)
    assert w["r"] == pytest.approx((tr["u"] + tr["r"]) / tr["r"], rel=1e-14)
    assert tr["u"] == pytest.approx(float((j[:6] ** 2).sum()), rel=1e-10)


def test_hard_constraint_transform_is_differentiated() -> None:
    """u = x (1 - x) N(x): the kernel of u equals diag(g) K_N diag(g)."""
    net = mlp(1, width=8)
    x = torch.linspace(0.1, 0.9, 5, dtype=DT)[:, None]
    g = (x * (1 - x))[:, 0]
    k = operator_ntk(net, x, transform=lambda y, n: (y * (1 - y)).reshape(n.shape) * n)
    k_n = operator_ntk(net, x)
    assert torch.allclose(k, g[:, None] * k_n * g[None, :], rtol=1e-12)


def test_bad_input() -> None:
    net = mlp(1)
    x = torch.rand(4, 1, dtype=DT)
    with pytest.raises(InputError, match="net"):
        operator_ntk("net", x)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="x1"):
        operator_ntk(net, x[0])
    with pytest.raises(InputError, match="x2"):
        operator_ntk(net, x, torch.rand(3, 2, dtype=DT))
    with pytest.raises(InputError, match="chunk"):
        operator_ntk(net, x, chunk=0)
    with pytest.raises(InputError, match="method"):
        operator_ntk(net, x, method="svd")
    with pytest.raises(InputError, match="op1"):
        operator_ntk(net, x, op1="laplacian")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="name"):
        operator("curl")
    with pytest.raises(InputError, match="index"):
        partial_op(())
    with pytest.raises(InputError, match="a:"):
        advection_op([[1.0]])
