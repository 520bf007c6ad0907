"""pysciml.pinn.derivatives: against analytic derivatives, against plain autograd loops, against each other, and
through a loss to the network's parameters (vs finite differences)."""

from __future__ import annotations

import math

import pytest
import torch

from pysciml.errors import InputError
from pysciml.pinn import derivatives as D
from pysciml.pinn.forward_laplacian import supported_layers

DT = torch.float64



pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)

def f_analytic(x: torch.Tensor) -> torch.Tensor:
    """f = sin(x0) exp(x1) x2^3, shape (N,)."""
    return torch.sin(x[:, 0]) * torch.exp(x[:, 1]) * x[:, 2] ** 3


def grad_analytic(x):
    s, c, e, z = torch.sin(x[:, 0]), torch.cos(x[:, 0]), torch.exp(x[:, 1]), x[:, 2]
    return torch.stack([c * e * z**3, s * e * z**3, 3 * s * e * z**2], dim=1)


def hess_analytic(x):
    s, c, e, z = torch.sin(x[:, 0]), torch.cos(x[:, 0]), torch.exp(x[:, 1]), x[:, 2]
    H = torch.empty(x.shape[0], 3, 3, dtype=x.dtype)
    H[:, 0, 0], H[:, 1, 1], H[:, 2, 2] = -s * e * z**3, s * e * z**3, 6 * s * e * z
    H[:, 0, 1] = H[:, 1, 0] = c * e * z**3
    H[:, 0, 2] = H[:, 2, 0] = 3 * c * e * z**2
    H[:, 1, 2] = H[:, 2, 1] = 3 * s * e * z**2
    return H


@pytest.fixture
def x():
    return torch.randn(17, 3, dtype=DT, generator=torch.Generator().manual_seed(0))


def mlp(d: int = 3, width: int = 16, out: int = 1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                               torch.nn.Tanh(), torch.nn.Linear(width, out)).to(DT)


def autograd_hessian(f, x):
    """Reference: one autograd.grad per row of the Hessian (a Python loop over d)."""
    x = x.detach().requires_grad_(True)
    g = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    return torch.stack([torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0] for i in range(x.shape[1])], 1)


def test_analytic_gradient_hessian_laplacian(x):
    assert torch.allclose(D.gradient(f_analytic, x), grad_analytic(x), rtol=1e-13, atol=1e-13)
    H = hess_analytic(x)
    assert torch.allclose(D.hessian(f_analytic, x), H, rtol=1e-13, atol=1e-12)
    lap = H.diagonal(dim1=1, dim2=2).sum(-1)
    assert torch.allclose(D.laplacian(f_analytic, x), lap, rtol=1e-13, atol=1e-12)
    assert torch.allclose(D.laplacian(f_analytic, x, chunk_size=2), lap, rtol=1e-13, atol=1e-12)
    v = torch.randn(17, 3, dtype=DT)
    assert torch.allclose(D.hvp(f_analytic, x, v), (H @ v.unsqueeze(-1)).squeeze(-1), rtol=1e-13, atol=1e-12)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=DT)  # one direction for all points
    assert torch.allclose(D.hvp(f_analytic, x, w), H @ w, rtol=1e-13, atol=1e-12)


def test_analytic_partials_up_to_fourth_order(x):
    s, c, e, z = torch.sin(x[:, 0]), torch.cos(x[:, 0]), torch.exp(x[:, 1]), x[:, 2]
    cases = {
        (): s * e * z**3,
        (0,): c * e * z**3,
        (0, 0, 1): -s * e * z**3,  # d3 f / dx0 dx0 dx1
        (2, 2, 2): 6 * s * e,
        (2, 2, 2, 2): torch.zeros_like(s),
        (0, 0, 0, 0): s * e * z**3,
        (0, 1, 2, 2): 6 * c * e * z,  # 4th-order mixed
        (1, 0, 2, 0): -3 * s * e * z**2,
    }
    for index, ref in cases.items():
        assert torch.allclose(D.partial(f_analytic, x, index), ref, rtol=1e-12, atol=1e-12), index
    # the order of differentiation does not matter
    assert torch.allclose(D.partial(f_analytic, x, (2, 1, 0, 2)), D.partial(f_analytic, x, (0, 1, 2, 2)), atol=1e-12)


def test_output_shapes_n_and_n1_agree(x):
    f1 = lambda y: f_analytic(y).unsqueeze(1)  # noqa: E731  (N, 1)
    for fn in (D.gradient, D.laplacian, D.hessian):
        assert torch.equal(fn(f_analytic, x), fn(f1, x))
    assert torch.equal(D.partial(f1, x, (0, 2)), D.partial(f_analytic, x, (0, 2)))
    assert D.gradient(f1, x).shape == (17, 3) and D.laplacian(f1, x).shape == (17,)
    assert D.partial(f1, x, (0,)).shape == (17,) and D.hessian(f1, x).shape == (17, 3, 3)


def test_vector_outputs_component_jacobian_divergence(x):
    def F(y):  # (N, 3): a vector field with known Jacobian and divergence
        return torch.stack([y[:, 0] ** 2 * y[:, 1], torch.sin(y[:, 1] * y[:, 2]), torch.exp(y[:, 0] + y[:, 2])], 1)

    a, b, c = x[:, 0], x[:, 1], x[:, 2]
    J = torch.zeros(17, 3, 3, dtype=DT)
    J[:, 0, 0], J[:, 0, 1] = 2 * a * b, a**2
    J[:, 1, 1], J[:, 1, 2] = c * torch.cos(b * c), b * torch.cos(b * c)
    J[:, 2, 0] = J[:, 2, 2] = torch.exp(a + c)
    assert torch.allclose(D.jacobian(F, x), J, rtol=1e-13, atol=1e-13)
    assert torch.allclose(D.divergence(F, x), J.diagonal(dim1=1, dim2=2).sum(-1), rtol=1e-13, atol=1e-13)
    for k in range(3):
        assert torch.allclose(D.gradient(F, x, component=k), J[:, k], rtol=1e-13, atol=1e-13)
    # Laplacian of component 1: -(b^2 + c^2) sin(bc)
    assert torch.allclose(D.laplacian(F, x, component=1), -(b**2 + c**2) * torch.sin(b * c), atol=1e-12)
    assert torch.allclose(D.partial(F, x, (0, 0), component=0), 2 * b, atol=1e-13)


def test_mlp_against_autograd_loops(x):
    net = mlp()
    H_ref = autograd_hessian(net, x)
    xr = x.detach().requires_grad_(True)
    g_ref = torch.autograd.grad(net(xr).sum(), xr)[0]
    assert torch.allclose(D.gradient(net, x), g_ref, rtol=1e-12, atol=1e-14)
    H = D.hessian(net, x)
    assert torch.allclose(H, H_ref, rtol=1e-11, atol=1e-13)
    assert torch.allclose(H, H.transpose(1, 2), atol=1e-13)
    lap = D.laplacian(net, x)
    assert torch.allclose(lap, H_ref.diagonal(dim1=1, dim2=2).sum(-1), rtol=1e-11, atol=1e-13)
    # a third-order mixed partial: the derivative of the Hessian entry (0, 1) along x2, by autograd
    g = torch.autograd.grad(net(xr).sum(), xr, create_graph=True)[0]
    h01 = torch.autograd.grad(g[:, 0].sum(), xr, create_graph=True)[0][:, 1]
    d3 = torch.autograd.grad(h01.sum(), xr)[0][:, 2]
    assert torch.allclose(D.partial(net, x, (0, 1, 2)), d3, rtol=1e-10, atol=1e-13)


def test_laplacian_is_trace_of_hessian_in_100_dimensions():
    net = mlp(d=100, width=32)
    x = torch.randn(8, 100, dtype=DT, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(D.laplacian(net, x), D.hessian(net, x).diagonal(dim1=1, dim2=2).sum(-1),
                          rtol=1e-12, atol=1e-14)
    assert torch.allclose(D.laplacian(net, x, chunk_size=7), D.laplacian(net, x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("act", [torch.nn.Tanh, torch.nn.SiLU, torch.nn.GELU, torch.nn.Softplus, torch.nn.Sigmoid])
def test_forward_laplacian_equals_hessian_trace(act):
    torch.manual_seed(0)
    inner = torch.nn.Sequential(torch.nn.Linear(12, 10), act())
    net = torch.nn.Sequential(act(), inner, torch.nn.Linear(10, 10), act(), torch.nn.Linear(10, 3)).to(DT)
    x = torch.randn(9, 12, dtype=DT, generator=torch.Generator().manual_seed(6))
    assert supported_layers(net) is not None
    for k in range(3):
        fwd = D.laplacian(net, x, method="forward", component=k)
        assert torch.allclose(fwd, D.laplacian(net, x, method="trace", component=k), rtol=1e-12, atol=1e-13)
        assert torch.equal(D.laplacian(net, x, component=k), fwd)  # "exact" takes the forward path here
    with pytest.raises(InputError, match="component"):
        D.laplacian(net, x)


def test_forward_laplacian_only_for_plain_mlps(x):
    relu = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).to(DT)
    hooked = mlp()
    hooked[1].register_forward_hook(lambda m, i, o: 2 * o)

    class Scaled(torch.nn.Sequential):
        def forward(self, y):
            return 2 * super().forward(y)

    for f in (relu, hooked, Scaled(*mlp()), lambda y: mlp()(y), torch.nn.Sequential(torch.nn.Tanh())):
        assert supported_layers(f) is None
        with pytest.raises(InputError, match="method='forward'"):
            D.laplacian(f, x, method="forward")
    ref = autograd_hessian(hooked, x).diagonal(dim1=1, dim2=2).sum(-1)  # the hook is respected (trace path)
    assert torch.allclose(D.laplacian(hooked, x), ref, rtol=1e-11, atol=1e-13)
    affine = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)).to(DT)
    assert torch.equal(D.laplacian(affine, x), torch.zeros(17, dtype=DT))


def test_hutchinson_unbiased_within_three_standard_errors():
    d = 100
    net = mlp(d=d, width=32)
    x = torch.randn(6, d, dtype=DT, generator=torch.Generator().manual_seed(2))
    exact = D.laplacian(net, x)
    gen = torch.Generator().manual_seed(3)
    probes = D.rademacher((6, 4000, d), x, gen)
    terms = D.quadratic_forms(net, x, probes)  # (N, S): v^T H v
    mean, se = terms.mean(1), terms.std(1) / math.sqrt(terms.shape[1])
    z = (mean - exact) / se
    assert bool((z.abs() < 3).all()), z
    # the variance matches the theory for Rademacher probes: 2 sum_{i != j} H_ij^2
    H = D.hessian(net, x)
    var = 2 * (H.pow(2).sum((1, 2)) - H.diagonal(dim1=1, dim2=2).pow(2).sum(-1))
    assert torch.allclose(terms.var(1), var, rtol=0.15)
    # the public entry point: seeded, reproducible, and its error shrinks like 1/sqrt(samples)
    est = D.laplacian(net, x, method="hutchinson", samples=256, generator=torch.Generator().manual_seed(4))
    again = D.laplacian(net, x, method="hutchinson", samples=256, generator=torch.Generator().manual_seed(4))
    assert torch.equal(est, again)
    assert bool(((est - exact).abs() < 4 * (var / 256).sqrt()).all())


@pytest.mark.parametrize("method", ["exact", "trace"])
def test_parameter_gradients_through_laplacian_match_finite_differences(method):
    net = mlp(d=2, width=8)
    x = torch.rand(32, 2, dtype=DT, generator=torch.Generator().manual_seed(5))

    def loss() -> torch.Tensor:  # a Poisson residual loss
        source = 2 * math.pi**2 * torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1])
        res = D.laplacian(net, x, method=method) + source
        return res.pow(2).mean() + D.partial(net, x, (0, 1, 1)).pow(2).mean()

    w = net[2].weight
    g = torch.autograd.grad(loss(), w)[0][3, 5]
    h = 1e-5
    with torch.no_grad():
        w[3, 5] += h
        up = loss()
        w[3, 5] -= 2 * h
        down = loss()
        w[3, 5] += h
    fd = (up - down) / (2 * h)
    assert abs(float(g - fd)) <= 1e-7 * max(1.0, abs(float(fd))), (float(g), float(fd))
    # Hutchinson, gradient and HVP terms are differentiable too (same probes -> same gradient as the exact sum)
    hut = D.laplacian(net, x, method="hutchinson", samples=4, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.grad(hut.sum() + D.gradient(net, x).sum() + D.hvp(net, x, x).sum(), w)[0].abs().sum() > 0


def test_float32_and_dtype_preserved():
    net = mlp().float()
    x = torch.randn(5, 3)
    for out in (D.gradient(net, x), D.laplacian(net, x), D.partial(net, x, (0, 1)), D.hessian(net, x)):
        assert out.dtype == torch.float32


def test_bad_inputs_raise_input_error(x):
    with pytest.raises(InputError, match="shape \\(N, d\\)"):
        D.gradient(f_analytic, x[0])
    with pytest.raises(InputError, match="floating"):
        D.gradient(f_analytic, torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(InputError, match="component"):
        D.gradient(lambda y: y, x)  # (N, 3) output without component
    with pytest.raises(InputError, match="out of range"):
        D.gradient(lambda y: y, x, component=3)
    with pytest.raises(InputError, match="returned shape"):
        D.laplacian(lambda y: y.sum(), x)
    with pytest.raises(InputError, match="method must be"):
        D.laplacian(f_analytic, x, method="diagonal")
    with pytest.raises(InputError, match="samples"):
        D.laplacian(f_analytic, x, method="hutchinson", samples=0)
    with pytest.raises(InputError, match="index"):
        D.partial(f_analytic, x, 0)
    with pytest.raises(InputError, match="index entries"):
        D.partial(f_analytic, x, (0, 3))
    with pytest.raises(InputError, match="v must have shape"):
        D.hvp(f_analytic, x, torch.ones(2, dtype=DT))
    with pytest.raises(InputError, match="vectors"):
        D.divergence(f_analytic, x)
    with pytest.raises(InputError, match="callable"):
        D.gradient(3, x)
    with pytest.raises(InputError, match="chunk_size"):
        D.hessian(f_analytic, x, chunk_size=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_on_cuda_same_as_cpu():
    from pysciml.pinn import Box, Disk

    net = mlp()
    x = torch.randn(64, 3, dtype=DT, generator=torch.Generator().manual_seed(7))
    gpu, xg = mlp().cuda(), x.cuda()
    for fn in (D.gradient, D.laplacian, D.hessian, lambda f, y: D.laplacian(f, y, method="trace"),
               lambda f, y: D.partial(f, y, (0, 1, 2))):
        out = fn(gpu, xg)
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), fn(net, x), rtol=1e-10, atol=1e-12)
    hut = D.laplacian(gpu, xg, method="hutchinson", samples=8, generator=torch.Generator("cuda").manual_seed(0))
    assert hut.device.type == "cuda" and hut.shape == (64,)
    same = [D.laplacian(f, y, method="hutchinson", samples=8, generator=torch.Generator().manual_seed(0))
            for f, y in ((gpu, xg), (net, x))]  # a CPU generator: the same probes on both devices
    torch.testing.assert_close(same[0].cpu(), same[1], rtol=1e-10, atol=1e-12)
    dom = Box([0.0, 0.0], [1.0, 1.0]) - Disk([0.5, 0.5], 0.2)
    for sample in (dom.sample_interior, dom.sample_boundary):
        pts = sample(100, method="sobol", seed=0, device="cuda")
        assert pts.device.type == "cuda"
        assert torch.equal(pts.cpu(), sample(100, method="sobol", seed=0))
    b = dom.sample_boundary(100, device="cuda")
    assert dom.boundary_normal(b).device.type == "cuda" and bool(dom.on_boundary(b).all())
