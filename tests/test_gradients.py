"""Gradients: every sensealg against central finite differences and against each other (float64)."""

from __future__ import annotations

import pytest
import torch
from fd import central_fd, rel, richardson_fd

import pysciml as ps
from pysciml import odeint, odeint_adjoint, problems
from pysciml.sensealg import (
    BacksolveAdjoint,
    DiscreteAdjoint,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
)

SENSEALGS = [DiscreteAdjoint(), DiscreteAdjoint(checkpoints=2), InterpolatingAdjoint(),
             InterpolatingAdjoint(checkpointing=True), QuadratureAdjoint(), BacksolveAdjoint()]
IDS = ["discrete", "discrete-ckpt", "interp", "interp-ckpt", "quadrature", "backsolve"]


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.tensor([[-0.3, 1.5], [-1.5, -0.2]], dtype=torch.float64))

    def forward(self, t, y):
        return self.A @ y


class LotkaVolterra(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.tensor([1.5, 1.0, 3.0, 1.0], dtype=torch.float64))

    def forward(self, t, y):
        a, b, c, d = self.p
        return torch.stack((a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]))


@pytest.mark.parametrize("sensealg", SENSEALGS, ids=IDS)
@pytest.mark.parametrize("system", ["linear", "lotka_volterra"])
def test_nonstiff_gradients_match_finite_differences(system, sensealg):
    func = Linear() if system == "linear" else LotkaVolterra()
    y0 = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 6, dtype=torch.float64)
    weights = torch.linspace(0.5, 1.5, 12, dtype=torch.float64).reshape(6, 2)

    def loss(sa=sensealg):
        return (odeint(func, y0, t, alg=ps.Tsit5(), sensealg=sa, rtol=1e-11, atol=1e-12) * weights).sum()

    params = list(func.parameters())
    grads = torch.autograd.grad(loss(), [y0, *params])
    with torch.no_grad():
        fds = [central_fd(lambda: loss(DiscreteAdjoint()), x, 1e-6) for x in [y0, *params]]
    for g, fd in zip(grads, fds, strict=True):
        assert rel(g, fd) < 1e-6, (g, fd)


ROBER_SAVE = torch.tensor([1.0, 10.0, 1e3], dtype=torch.float64)
ROBER_W = torch.tensor([[1.0, 1e4, 0.5]], dtype=torch.float64)


def rober_loss(k: torch.Tensor, sensealg, alg, rtol: float) -> torch.Tensor:
    sol = ps.solve(problems.rober((0.0, 1e3), k=k), alg, rtol=rtol, atol=rtol * 1e-4, saveat=ROBER_SAVE,
                   sensealg=sensealg)
    return (sol.u * ROBER_W).sum()


@pytest.fixture(scope="module")
def rober_fd_gradient():
    """Reference d(loss)/dk: central differences of Rodas5P solves at rtol 1e-10 with relative steps 1e-4 and
    2e-4, Richardson-extrapolated (plain central differences at 1e-4 carry a 1.3e-6 truncation error here)."""
    k = torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64)
    with torch.no_grad():
        return richardson_fd(lambda: rober_loss(k, None, ps.Rodas5P(), 1e-10), k, 1e-4)


@pytest.mark.heavy
@pytest.mark.parametrize(("alg", "sensealgs"), [
    (ps.Rodas5P(), [None, InterpolatingAdjoint(checkpointing=True), QuadratureAdjoint(), InterpolatingAdjoint()]),
    (ps.KenCarp4(), [None, InterpolatingAdjoint(checkpointing=True)]),
], ids=["Rodas5P", "KenCarp4"])
def test_stiff_rober_gradients(alg, sensealgs, rober_fd_gradient):
    """ROBER to t = 1e3 at rtol 1e-8: gradient of a weighted sum of the states at three times w.r.t. the rate
    constants, each sensealg (None = the discrete adjoint; the continuous adjoints solved stiffly by the same
    method) within 1e-6 of central differences. KenCarp4's discrete adjoint differentiates the exact stage
    equations (implicit function theorem), not the simplified-Newton iterations."""
    grads = []
    for sa in sensealgs:
        k = torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(rober_loss(k, sa, alg, 1e-8), [k])
        assert rel(g, rober_fd_gradient) < 1e-6, (sa, g, rober_fd_gradient)
        grads.append(g)
    for g in grads[1:]:  # and with each other
        assert rel(g, grads[0]) < 1e-6


def test_neural_ode_sensealgs_agree_with_each_other_and_a_directional_fd():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

    def func(t, y):
        return net(y)

    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    params = list(net.parameters())
    results = []
    for sa in SENSEALGS:
        ys = odeint(func, y0, t, alg=ps.Tsit5(), sensealg=sa, rtol=1e-10, atol=1e-12, adjoint_params=params)
        results.append(torch.autograd.grad((ys**2).sum(), params))
    flat = [torch.cat([g.reshape(-1) for g in r]) for r in results]
    for other in flat[1:]:
        assert rel(other, flat[0]) < 1e-6
    direction = [torch.randn_like(q) for q in params]
    h = 1e-6
    with torch.no_grad():
        def loss_at(s):
            for q, d in zip(params, direction, strict=True):
                q.add_(s * d)
            val = float((odeint(func, y0, t, alg=ps.Tsit5(), rtol=1e-12, atol=1e-13) ** 2).sum())
            for q, d in zip(params, direction, strict=True):
                q.sub_(s * d)
            return val

        fd = (loss_at(h) - loss_at(-h)) / (2 * h)
    dd = sum(float((g * d).sum()) for g, d in zip(results[0], direction, strict=True))
    assert abs(dd - fd) / abs(fd) < 1e-6


@pytest.mark.heavy
def test_split_problem_with_matrix_implicit_part_is_differentiable():
    """IMEX KenCarp4 on u' = L u + w sin(u) + 0.1 cos(t): gradients to the matrix L, to w and to u0."""
    L = (10 * torch.tensor([[-2.0, 1.0], [1.0, -2.0]], dtype=torch.float64)).requires_grad_()
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    u0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)

    def loss(sa, rtol=1e-10):
        prob = ps.SplitODEProblem(L, lambda t, u, p: p * torch.sin(u) + 0.1 * torch.cos(t), u0, (0.0, 1.0), w)
        sol = ps.solve(prob, ps.KenCarp4(), rtol=rtol, atol=rtol * 1e-2, saveat=[0.5, 1.0], sensealg=sa)
        return (sol.u ** 2).sum()

    with torch.no_grad():  # differences of tighter solves: at rtol 1e-10 they carry ~1e-6 of solver noise
        fds = [central_fd(lambda: loss(None, 1e-12), x, 1e-4) for x in (L, w, u0)]
    fd = torch.cat([x.reshape(-1) for x in fds])
    grads = []
    for sa in (None, InterpolatingAdjoint(), QuadratureAdjoint(), BacksolveAdjoint()):
        g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss(sa), (L, w, u0))])
        assert rel(g, fd) < 1e-6, (sa, g, fd)
        grads.append(g)
    for g in grads[1:]:
        assert rel(g, grads[0]) < 1e-7


def test_time_gradients_match_finite_differences():
    func = Linear()
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64, requires_grad=True)

    def loss(sa):
        return (odeint(lambda s, y: func(s, y) + 0.1 * torch.sin(s), y0, t, alg=ps.Tsit5(), sensealg=sa,
                       rtol=1e-11, atol=1e-12) ** 2).sum()

    with torch.no_grad():
        fd = central_fd(lambda: loss(DiscreteAdjoint()), t, 1e-6)
    for sa in (DiscreteAdjoint(), InterpolatingAdjoint(), BacksolveAdjoint()):
        (g,) = torch.autograd.grad(loss(sa), [t])
        assert rel(g, fd) < 1e-6, (sa, g, fd)


def test_gradcheck_fixed_step_discrete():
    """With fixed steps the discrete adjoint is the exact derivative of the computed map: gradcheck holds."""
    def fn(y0, A):
        return odeint(lambda t, y: A @ y, y0, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), method="rk4",
                      options={"step_size": 0.1})

    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (y0, A), eps=1e-6, atol=1e-8)
    stiff = lambda y0, A: odeint(lambda t, y: A @ y, y0, torch.tensor([0.0, 1.0], dtype=torch.float64),  # noqa: E731
                                 alg=ps.Rodas5P(), options={"step_size": 0.1})
    assert torch.autograd.gradcheck(stiff, (y0, A), eps=1e-6, atol=1e-8)


def test_unused_adjoint_params_get_a_zero_gradient():
    """An adjoint_params entry f never uses is differentiated: its gradient is exactly zero (torchdiffeq's
    odeint_adjoint gives zeros too), never a missing None."""
    unused = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    A = torch.tensor([[-1.0]], dtype=torch.float64, requires_grad=True)
    for sa in (InterpolatingAdjoint(), QuadratureAdjoint(), BacksolveAdjoint()):
        ys = odeint(lambda t, y: A @ y, torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 1.0]),
                    sensealg=sa, adjoint_params=[A, unused])
        gA, gu = torch.autograd.grad(ys.sum(), [A, unused], allow_unused=True)
        assert gu is not None and float(gu) == 0.0
        assert abs(float(gA) - torch.exp(torch.tensor(-1.0)).item()) < 1e-6  # d/dA e^{A} at A = -1


def test_odeint_torchdiffeq_compatibility():
    y0 = (torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    t = torch.linspace(0, 1, 3, dtype=torch.float64)

    def func(t, state):
        y, z = state
        return torch.stack((y[1], -y[0])), -z

    y, z = odeint(func, y0, t, method="dopri5")
    assert y.shape == (3, 2) and z.shape == (3,)
    assert abs(float(y[-1, 0]) - float(torch.cos(torch.tensor(1.0)))) < 1e-7
    assert abs(float(z[-1]) - 0.5 * float(torch.exp(torch.tensor(-1.0)))) < 1e-7
    for m in ("tsit5", "bosh3", "vern7"):
        out = odeint(lambda t, y: -y, torch.ones(2, 3, dtype=torch.float64), t, method=m)
        assert out.shape == (3, 2, 3)
    out = odeint(lambda t, y: -y, torch.ones(2), t, method="euler", options={"step_size": 0.01})
    assert out.dtype == torch.float32 and abs(float(out[-1, 0]) - 0.99**100) < 1e-5
    ya = odeint_adjoint(Linear(), torch.ones(2, dtype=torch.float64), t)
    assert ya.shape == (3, 2)


def test_odeint_bad_input():
    t = torch.linspace(0, 1, 3)
    with pytest.raises(ps.InputError, match="unknown method"):
        odeint(lambda t, y: -y, torch.ones(1), t, method="nope")
    with pytest.raises(ps.InputError, match="not available in pysciml: it runs scipy forward only"):
        ps.odeint_adjoint(lambda t, y: -y, torch.ones(1), t, method="scipy_solver")
    with pytest.raises(ps.InputError, match="unknown options"):
        odeint(lambda t, y: -y, torch.ones(1), t, options={"stepsize": 0.1})
    with pytest.raises(ps.InputError, match="strictly increasing or strictly decreasing"):
        odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ps.InputError, match="Julia engine only"):
        odeint(lambda t, y: -y, torch.ones(1), t, sensealg=GaussAdjoint())
    with pytest.raises(ps.InputError, match="step_size and grid_constructor"):
        odeint(lambda t, y: -y, torch.ones(1), t, method="rk4",
               options={"step_size": 0.1, "grid_constructor": lambda f, y0, t: t})


@pytest.mark.heavy
def test_discrete_adjoint_through_matrix_free_newton_matches_dense():
    """KenCarp4 with GMRES: the exact stage derivative is applied by GMRES on JVPs (forward) and VJPs
    (backward); it must give the dense-LU path's gradient, itself checked against finite differences above."""
    mu = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64, requires_grad=True)

    def grads(linsolve):
        prob = ps.ODEProblem(lambda t, y, m: torch.stack((y[1], m * ((1 - y[0] ** 2) * y[1]) - y[0])), y0,
                             (0.0, 1.0), mu)
        sol = ps.solve(prob, ps.KenCarp4(linsolve=linsolve), rtol=1e-8, atol=1e-10, saveat=[0.5, 1.0])
        return torch.autograd.grad(sol.u.sum(), [mu, y0])

    dense = grads(ps.DenseLU())
    krylov = grads(ps.GMRES(rtol=1e-12))
    for a, b in zip(krylov, dense, strict=True):
        assert rel(a, b) < 1e-8, (a, b)
    assert dense[0].abs() > 1e-3  # a real dependence on mu, not a vacuous agreement
