"""Empirical NTKs (pysciml.analysis.ntk): against explicit Jacobian products, an analytic kernel, each other,
for operator outputs (a second derivative of the network), and the cheap trace against brute force."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import grad, vmap

from pysciml.analysis.ntk import empirical_ntk, jacobian_matrix, network_function, ntk_trace, parameters_of
from pysciml.errors import InputError

DT = torch.float64


def mlp(d_in: int = 2, width: int = 8, d_out: int = 1) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, d_out)).to(DT)


def explicit_jacobian(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Rows d out_i / d theta by one autograd call per output (the brute-force reference)."""
    out = net(x).reshape(-1)
    rows = []
    for i in range(out.numel()):
        gs = torch.autograd.grad(out[i], list(net.parameters()), retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(rows)


def second_derivative(x, u_fn):
    """u''(x) of a scalar function of 1-D points (N, 1) -> (N,), by torch.func (composable with jacrev/vmap)."""
    def u_scalar(xi):
        return u_fn(xi.reshape(1, 1)).reshape(())

    return vmap(grad(grad(u_scalar)))(x[:, 0])


def test_kernel_equals_explicit_jacobian_product_and_is_symmetric_psd():
    net = mlp()
    x = torch.rand(12, 2, dtype=DT)
    params = parameters_of(net)
    k = empirical_ntk(network_function(net), None, params, x)
    j = explicit_jacobian(net, x)
    assert k.shape == (12, 12)
    torch.testing.assert_close(k, j @ j.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(k, k.T, rtol=0, atol=1e-13)
    eig = torch.linalg.eigvalsh(k)
    assert eig.min() > -1e-10 * eig.max()


def test_linear_model_kernel_is_analytic():
    # f(x) = w . x + b: J = [x, 1], so K(x1, x2) = x1 x2^T + 1 exactly
    net = nn.Linear(3, 1).to(DT)
    x1, x2 = torch.randn(5, 3, dtype=DT), torch.randn(7, 3, dtype=DT)
    k = empirical_ntk(network_function(net), None, parameters_of(net), x1, x2)
    torch.testing.assert_close(k, x1 @ x2.T + 1, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("method,pointwise", [("jacobian", False), ("ntk_vp", True), ("autograd", True)])
def test_methods_agree(method, pointwise):
    net = mlp(d_out=1)
    f = network_function(net)
    x1, x2 = torch.rand(6, 2, dtype=DT), torch.rand(4, 2, dtype=DT)
    ref = empirical_ntk(f, None, parameters_of(net), x1, x2)
    k = empirical_ntk(f, None, parameters_of(net), x1, x2, method=method, pointwise=pointwise)
    torch.testing.assert_close(k, ref, rtol=1e-12, atol=1e-12)


def test_operator_kernel_blocks_agree_across_methods_and_with_brute_force():
    net = mlp(d_in=1, width=10)
    params = parameters_of(net)
    f_res = network_function(net, second_derivative)   # r(x) = u''(x)
    f_u = network_function(net)
    xr, xb = torch.rand(7, 1, dtype=DT), torch.tensor([[0.0], [1.0]], dtype=DT)
    k_rr = empirical_ntk(f_res, None, params, xr)
    k_rb = empirical_ntk(f_res, f_u, params, xr, xb)
    assert k_rr.shape == (7, 7) and k_rb.shape == (7, 2)
    for method in ("ntk_vp", "autograd"):
        torch.testing.assert_close(empirical_ntk(f_res, None, params, xr, method=method), k_rr,
                                   rtol=1e-11, atol=1e-11)
        torch.testing.assert_close(empirical_ntk(f_res, f_u, params, xr, xb, method=method), k_rb,
                                   rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(empirical_ntk(f_res, None, params, xr, pointwise=False), k_rr, rtol=1e-12,
                               atol=1e-12)
    # brute force: rows of d u''(x_i) / d theta by double backward with create_graph
    rows = []
    for xi in xr:
        xi = xi.reshape(1, 1).clone().requires_grad_(True)
        u = net(xi).sum()
        (du,) = torch.autograd.grad(u, xi, create_graph=True)
        (d2u,) = torch.autograd.grad(du.sum(), xi, create_graph=True)
        gs = torch.autograd.grad(d2u.sum(), list(net.parameters()), allow_unused=True)  # the last bias: unused
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                               for p, g in zip(net.parameters(), gs, strict=True)]))
    j = torch.stack(rows)
    torch.testing.assert_close(k_rr, j @ j.T, rtol=1e-11, atol=1e-11)


def test_trace_equals_brute_force_trace():
    net = mlp()
    x = torch.rand(20, 2, dtype=DT)
    params = parameters_of(net)
    j = explicit_jacobian(net, x)
    brute = torch.trace(j @ j.T)
    for method in ("jacobian", "autograd"):
        tr = ntk_trace(network_function(net), params, x, method=method)
        assert abs(float(tr - brute)) <= 1e-10 * float(brute)
    tr_op = ntk_trace(network_function(mlp(d_in=1), second_derivative), parameters_of(mlp(d_in=1)),
                      torch.rand(9, 1, dtype=DT))
    k_op = empirical_ntk(network_function(mlp(d_in=1), second_derivative), None, parameters_of(mlp(d_in=1)),
                         torch.rand(9, 1, dtype=DT))
    assert tr_op > 0 and k_op.shape == (9, 9)


def test_matrix_outputs_have_blocked_shape():
    net = mlp(d_out=3)
    x1, x2 = torch.rand(4, 2, dtype=DT), torch.rand(5, 2, dtype=DT)
    k = empirical_ntk(network_function(net), None, parameters_of(net), x1, x2)
    assert k.shape == (4, 3, 5, 3)
    j1, s1 = jacobian_matrix(network_function(net), parameters_of(net), x1)
    assert s1 == (4, 3) and j1.shape == (12, sum(p.numel() for p in net.parameters()))
    torch.testing.assert_close(k.reshape(12, 15), explicit_jacobian(net, x1) @ explicit_jacobian(net, x2).T,
                               rtol=1e-12, atol=1e-12)
    kv = empirical_ntk(network_function(net), None, parameters_of(net), x1, x2, method="ntk_vp")
    torch.testing.assert_close(kv, k, rtol=1e-12, atol=1e-12)


def test_subset_of_parameters():
    net = mlp()
    x = torch.rand(5, 2, dtype=DT)
    last = {k: v for k, v in parameters_of(net).items() if k.startswith("4.")}
    k = empirical_ntk(network_function(net), None, last, x)
    feats = net[:4](x)  # the last layer's inputs: K = phi phi^T + 1
    torch.testing.assert_close(k, feats @ feats.T + 1, rtol=1e-12, atol=1e-12)


def test_bad_input():
    net = mlp()
    f = network_function(net)
    x = torch.rand(3, 2, dtype=DT)
    with pytest.raises(InputError, match="method"):
        empirical_ntk(f, None, parameters_of(net), x, method="nope")
    with pytest.raises(InputError, match="params"):
        empirical_ntk(f, None, {}, x)
    with pytest.raises(InputError, match="x"):
        ntk_trace(f, parameters_of(net), torch.zeros(0, 2, dtype=DT))
    with pytest.raises(InputError, match="net"):
        network_function("not a module")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ntk_vp"):
        ntk_trace(f, parameters_of(net), x, method="ntk_vp")


def test_pinn_blocks_through_the_derivative_helpers_agree_across_methods():
    import math

    from pysciml.pinn.conditions import DirichletBC
    from pysciml.pinn.derivatives import laplacian
    from pysciml.pinn.geometry import Interval
    from pysciml.pinn.pinn import PINN

    def residual(x, u):
        return -laplacian(u, x) - math.pi**2 * torch.sin(math.pi * x[:, 0])

    pinn = PINN(mlp(d_in=1), residual, Interval(0, 1), [DirichletBC(points=torch.tensor([[0.0], [1.0]], dtype=DT))],
                n_interior=10)
    terms = pinn.ntk_terms()
    params = pinn.network_parameters()
    for (f1, x1), (f2, x2) in [(terms["residual"], terms["residual"]), (terms["residual"], terms["dirichlet"])]:
        ref = empirical_ntk(f1, f2, params, x1, x2)
        assert ref.shape == (x1.shape[0], x2.shape[0])
        for kw in ({"method": "ntk_vp"}, {"pointwise": False}):
            torch.testing.assert_close(empirical_ntk(f1, f2, params, x1, x2, **kw), ref, rtol=1e-12, atol=1e-12)
