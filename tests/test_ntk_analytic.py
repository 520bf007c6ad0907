"""Infinite-width kernels (pysciml.analysis.ntk_analytic): closed forms at depth 1 (Williams' arcsine kernel,
Cho & Saul's arc-cosine kernels), Monte Carlo expectations at depth 1, empirical kernels of wide networks
approaching the limit (error falling with width, for the plain and the Laplacian kernel), operators on the
kernel function against finite differences, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from pysciml.analysis.ntk_analytic import NTKNetwork, analytic_nngp, analytic_ntk
from pysciml.analysis.ntk_blocks import laplacian_op, operator, operator_ntk
from pysciml.errors import InputError

DT = torch.float64


def points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.rand(n, d, dtype=DT, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_erf_depth1_closed_form() -> None:
    """Williams (1997): for h = w . x / sqrt(d) + b sigma_b, E[erf(h(x)) erf(h(y))] = 2/pi arcsin(2 s_xy /
    sqrt((1 + 2 s_xx)(1 + 2 s_yy))); the NTK adds s_xy E[erf' erf'] = s_xy 4/pi / sqrt((1+2s_xx)(1+2s_yy) - 4s_xy^2)."""
    x, y = points(6, 3, 0), points(5, 3, 1)
    sw, sb = 1.3, 0.4
    s = lambda a, b: sw ** 2 * (a @ b.T) / 3 + sb ** 2  # noqa: E731
    sxx, syy, sxy = s(x, x).diag()[:, None], s(y, y).diag()[None, :], s(x, y)
    prod = (1 + 2 * sxx) * (1 + 2 * syy)
    nngp = sw ** 2 * 2 / math.pi * torch.arcsin(2 * sxy / prod.sqrt()) + sb ** 2
    ntk = sxy * sw ** 2 * 4 / math.pi / (prod - 4 * sxy ** 2).sqrt() + nngp
    kw = dict(activation="erf", depth=1, sigma_w=sw, sigma_b=sb)
    assert torch.allclose(analytic_nngp(x, y, **kw), nngp, rtol=1e-14)
    assert torch.allclose(analytic_ntk(x, y, **kw), ntk, rtol=1e-14)


def test_relu_depth1_closed_form() -> None:
    """Cho & Saul (2009), sigma_b = 0: NNGP = |x||y| / d * J_1(t) / (2 pi), J_1 = sin t + (pi - t) cos t, and
    the NTK adds (x . y / d) (pi - t) / (2 pi), t the angle between x and y."""
    x, y = points(6, 3, 2), points(4, 3, 3)
    nx, ny = x.norm(dim=1)[:, None], y.norm(dim=1)[None, :]
    t = torch.arccos(torch.clamp((x @ y.T) / (nx * ny), -1, 1))
    nngp = nx * ny / 3 * (torch.sin(t) + (math.pi - t) * torch.cos(t)) / (2 * math.pi)
    ntk = (x @ y.T) / 3 * (math.pi - t) / (2 * math.pi) + nngp
    assert torch.allclose(analytic_nngp(x, y, activation="relu"), nngp, rtol=1e-13, atol=1e-15)
    assert torch.allclose(analytic_ntk(x, y, activation="relu"), ntk, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_depth1_monte_carlo(activation: str) -> None:
    """The NNGP and NTK of one hidden layer as sample means over 400,000 hidden units (within 5 standard errors)."""
    x = torch.tensor([[0.3, -0.8], [0.9, 0.5]], dtype=DT)
    sw, sb = 1.0, 0.5
    gen = torch.Generator().manual_seed(0)
    m = 400_000
    w = torch.randn(m, 2, dtype=DT, generator=gen)
    b = torch.randn(m, dtype=DT, generator=gen)
    h = sw * (x @ w.T) / math.sqrt(2) + sb * b  # (2, m)
    phi = torch.relu(h) if activation == "relu" else torch.erf(h)
    dphi = (h > 0).to(DT) if activation == "relu" else 2 / math.sqrt(math.pi) * torch.exp(-h * h)
    s1 = sw ** 2 * (x @ x.T) / 2 + sb ** 2
    samples_nngp = sw ** 2 * phi[0] * phi[1] + sb ** 2
    samples_ntk = s1[0, 1] * sw ** 2 * dphi[0] * dphi[1] + samples_nngp
    kw = dict(activation=activation, depth=1, sigma_w=sw, sigma_b=sb)
    for samples, exact in ((samples_nngp, analytic_nngp(x, **kw)[0, 1]), (samples_ntk, analytic_ntk(x, **kw)[0, 1])):
        se = float(samples.std()) / math.sqrt(m)
        assert abs(float(samples.mean()) - float(exact)) < 5 * se


def _rel_error(width: int, activation: str, depth: int, op: object, x: torch.Tensor, seeds: int = 2) -> float:
    ref = analytic_ntk(x, activation=activation, depth=depth, sigma_b=0.5, op1=op, op2=op)  # type: ignore[arg-type]
    errs = []
    for seed in range(seeds):
        net = NTKNetwork(x.shape[1], width, depth, activation, sigma_b=0.5,
                         generator=torch.Generator().manual_seed(seed))
        k = operator_ntk(net, x, op1=op)  # type: ignore[arg-type]
        errs.append(float((k - ref).norm() / ref.norm()))
    return sum(errs) / len(errs)


@pytest.mark.parametrize(("activation", "depth", "op_name"),
                         [("erf", 1, None), ("relu", 2, None), ("erf", 1, "laplacian"), ("erf", 2, "d/dx")])
def test_wide_network_approaches_the_analytic_kernel(activation: str, depth: int, op_name: str | None) -> None:
    """Relative Frobenius error of the empirical (operator) NTK against the limit, mean of 2 initialisations:
    falls with the width (~ width^-1/2) and is small at the widest."""
    x = points(8, 1, 4) if op_name else points(8, 2, 4)
    op = operator(op_name) if op_name else None
    widths = (64, 1024, 8192) if depth == 1 else (32, 256, 2048)
    errs = [_rel_error(w, activation, depth, op, x) for w in widths]
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < (0.06 if depth == 1 else 0.12), errs
    assert errs[0] / errs[2] > 4, errs  # ~ sqrt(128) = 11 expected (depth 1), sqrt(64) = 8 (depth 2)


def test_operator_on_kernel_function_matches_finite_differences() -> None:
    """d/dx d/dy Theta and Lap_x Lap_y Theta (erf, depth 3) against central differences of Theta in 1-D."""
    x = torch.linspace(-0.8, 0.9, 5, dtype=DT)[:, None]
    y = torch.linspace(-0.6, 0.7, 4, dtype=DT)[:, None]
    kw = dict(activation="erf", depth=3, sigma_b=0.3)
    theta = lambda a, b: analytic_ntk(a, b, **kw)  # noqa: E731
    h = 1e-4
    fd = (theta(x + h, y + h) - theta(x + h, y - h) - theta(x - h, y + h) + theta(x - h, y - h)) / (4 * h * h)
    dd = analytic_ntk(x, y, op1=operator("d/dx"), op2=operator("d/dx"), **kw)
    assert float((dd - fd).abs().max() / dd.abs().max()) < 1e-6
    h = 1e-2
    c = (1.0, -2.0, 1.0)
    fd2 = sum(c[i] * c[j] * theta(x + (i - 1) * h, y + (j - 1) * h) for i in range(3) for j in range(3)) / h ** 4
    ll = analytic_ntk(x, y, op1=laplacian_op(), op2=laplacian_op(), **kw)
    assert float((ll - fd2).abs().max() / ll.abs().max()) < 1e-3
    # mixed: one operator per argument
    mixed = analytic_ntk(x, y, op1=laplacian_op(), **kw)
    fd3 = sum(c[i] * theta(x + (i - 1) * h, y) for i in range(3)) / h ** 2
    assert float((mixed - fd3).abs().max() / mixed.abs().max()) < 1e-3


@pytest.mark.parametrize("op_name", [None, "d/dx", "laplacian"])
def test_analytic_kernels_symmetric_psd(op_name: str | None) -> None:
    x = torch.linspace(-1, 1, 30, dtype=DT)[:, None]
    op = operator(op_name) if op_name else None
    k = analytic_ntk(x, activation="erf", depth=2, sigma_b=0.2, op1=op, op2=op, chunk_size=7)
    assert torch.allclose(k, k.T, rtol=1e-12, atol=1e-12 * float(k.abs().max()))
    ev = torch.linalg.eigvalsh(0.5 * (k + k.T))
    assert float(ev.min()) > -1e-9 * float(ev.max())


def test_network_shapes_and_bad_input() -> None:
    net = NTKNetwork(3, 16, 2, "tanh")
    assert net(torch.rand(5, 3, dtype=DT)).shape == (5,)
    assert sum(p.numel() for p in net.parameters()) == 3 * 16 + 16 + 16 * 16 + 16 + 16 + 1
    x = points(3, 1, 0)
    with pytest.raises(InputError, match="activation"):
        analytic_ntk(x, activation="tanh")
    with pytest.raises(InputError, match="depth"):
        analytic_ntk(x, depth=0)
    with pytest.raises(InputError, match="ReLU"):
        analytic_ntk(x, activation="relu", op1=laplacian_op())
    with pytest.raises(InputError, match="x2"):
        analytic_ntk(x, points(2, 2, 0))
    with pytest.raises(InputError, match="width"):
        NTKNetwork(1, 0, 1)
    with pytest.raises(InputError, match="sigma_w"):
        NTKNetwork(1, 4, 1, sigma_w=-1.0)
