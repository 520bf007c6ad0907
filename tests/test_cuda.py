"""The engine on CUDA tensors: same answers as on the CPU, dtype and device kept. Skipped without a GPU."""

from __future__ import annotations

import math

import pytest
import torch

import pysciml as ps
from pysciml import problems

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


@pytest.mark.parametrize("alg", [ps.Rosenbrock23(), ps.Rodas5P(), ps.KenCarp4()], ids=lambda a: a.name)
def test_rober_on_cuda_matches_cpu(alg):
    cpu = ps.solve(problems.rober((0.0, 1e3)), alg, rtol=1e-6, atol=1e-10, saveat=[1.0, 1e3])
    gpu = ps.solve(problems.rober((0.0, 1e3), device="cuda"), alg, rtol=1e-6, atol=1e-10, saveat=[1.0, 1e3])
    assert gpu.u.device.type == "cuda" and gpu.u.dtype == torch.float64
    # GPU and CPU round differently (cuSOLVER vs LAPACK LU) and the step sequences drift apart: the high-order
    # methods still agree far below the tolerance; second-order Rosenbrock23 only to within its tolerance
    tol = dict(rtol=1e-6, atol=1e-10) if isinstance(alg, ps.Rosenbrock23) else dict(rtol=1e-8, atol=1e-11)
    torch.testing.assert_close(gpu.u.cpu(), cpu.u, **tol)


def test_batched_rober_on_cuda_and_gradients():
    gen = torch.Generator().manual_seed(0)
    k_cpu = torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64).repeat(64, 1)
    k_cpu = k_cpu * (1 + 0.1 * torch.rand(k_cpu.shape, generator=gen, dtype=torch.float64))

    def run(device):
        k = k_cpu.to(device).requires_grad_(True)
        sol = ps.solve(problems.rober((0.0, 1e2), k=k, device=device), ps.Rodas5P(), rtol=1e-6, atol=1e-10,
                       saveat=[1e2])
        sol.u[-1, :, 0].sum().backward()
        return sol, k.grad

    sol, g = run("cuda")
    sol_cpu, g_cpu = run("cpu")
    assert all(r is ps.ReturnCode.Success for r in sol.retcodes)
    assert sol.u.shape == (1, 64, 3) and sol.u.device.type == "cuda"
    torch.testing.assert_close(sol.u[-1].sum(dim=-1), torch.ones(64, dtype=torch.float64, device="cuda"))
    torch.testing.assert_close(sol.u.detach().cpu(), sol_cpu.u.detach(), rtol=1e-9, atol=1e-14)
    assert g.device.type == "cuda" and (g[:, 0] < 0).all()  # a faster first reaction leaves less species 1
    torch.testing.assert_close(g.cpu(), g_cpu, rtol=1e-7, atol=1e-20)


def test_float32_dtype_and_device_kept_on_cuda():
    prob = ps.ODEProblem(lambda t, u: -u * torch.tensor([1.0, 10.0], device=u.device),
                         torch.tensor([1.0, 2.0], dtype=torch.float32, device="cuda"), (0.0, 1.0))
    for alg in (ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()):
        sol = ps.solve(prob, alg, rtol=1e-5, atol=1e-7)
        assert sol.u.dtype == torch.float32 and sol.u.device.type == "cuda"
        exact = torch.tensor([math.exp(-1.0), 2 * math.exp(-10.0)], device="cuda")
        torch.testing.assert_close(sol.u[-1], exact, rtol=1e-4, atol=1e-5)
        assert sol(0.5).device.type == "cuda"  # dense output stays on the device


def test_split_brusselator_and_gmres_on_cuda_match_cpu():
    kw = dict(rtol=1e-6, atol=1e-8, saveat=[2.0])
    for split, alg in ((True, ps.KenCarp4()), (False, ps.KenCarp4(linsolve=ps.GMRES())),
                       (False, ps.Rodas5P())):
        cpu = ps.solve(problems.brusselator_1d(8, tspan=(0.0, 2.0), split=split), alg, **kw)
        gpu = ps.solve(problems.brusselator_1d(8, tspan=(0.0, 2.0), split=split, device="cuda"), alg, **kw)
        assert gpu.retcode is ps.ReturnCode.Success and gpu.u.device.type == "cuda"
        torch.testing.assert_close(gpu.u.cpu(), cpu.u, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("sensealg", [ps.DiscreteAdjoint(), ps.InterpolatingAdjoint(checkpointing=True),
                                      ps.QuadratureAdjoint()], ids=lambda s: s.name)
def test_gradients_on_cuda_match_cpu(sensealg):
    def grad(device):
        k = torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64, device=device, requires_grad=True)
        sol = ps.solve(problems.rober((0.0, 1.0), k=k, device=device), ps.Rodas5P(), rtol=1e-8, atol=1e-12,
                       saveat=[0.1, 1.0], sensealg=sensealg)
        (sol.u[:, 0].sum() + 1e4 * sol.u[:, 1].sum()).backward()
        return k.grad

    g_gpu, g_cpu = grad("cuda"), grad("cpu")
    assert g_gpu.device.type == "cuda" and torch.isfinite(g_gpu).all() and (g_gpu != 0).all()
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-6, atol=0.0)


def test_odeint_neural_ode_on_cuda():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)).cuda()
    y0 = torch.randn(16, 2, device="cuda")
    t = torch.linspace(0, 1, 5, device="cuda")
    ys = ps.odeint(lambda t, y: net(y), y0, t, method="dopri5", rtol=1e-5, atol=1e-6)
    assert ys.shape == (5, 16, 2) and ys.device.type == "cuda" and ys.dtype == torch.float32
    ys_cpu = ps.odeint(lambda t, y: net.cpu()(y), y0.cpu(), t.cpu(), method="dopri5", rtol=1e-5, atol=1e-6)
    net.cuda()
    torch.testing.assert_close(ys.cpu(), ys_cpu, rtol=1e-4, atol=1e-5)
    ys.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_odeint_adjoint_finds_module_parameters_on_cuda():
    """odeint_adjoint (backsolve) discovers the module's parameters from the autograd graph on CUDA too (a
    graph walk keyed on ids of transient node wrappers once lost them there)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 50), torch.nn.Tanh(), torch.nn.Linear(50, 2)).cuda()

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y**3)

    y0 = torch.randn(20, 2, device="cuda")
    t = torch.linspace(0, 0.5, 10, device="cuda")
    for _ in range(3):
        ys = ps.odeint_adjoint(Field(), y0, t, method="dopri5")
        assert ys.requires_grad
        ys.abs().mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
        net.zero_grad()


# ------------------------------------------------------------------------------------ issue 10 checks on CUDA
def test_fixed_step_instability_flagged_per_trajectory_on_cuda():
    """dt * lambda = -5 for two of three trajectories (RK4's interval is [-2.79, 0]): those two Unstable."""
    lam = torch.tensor([[-50.0], [-1.0], [-50.0]], dtype=torch.float64, device="cuda")
    prob = ps.ODEProblem(lambda t, u, p: lam * u, torch.ones(3, 1, dtype=torch.float64, device="cuda"), (0.0, 2.0),
                         batched=True)
    sol = ps.solve(prob, ps.RK4(), adaptive=False, dt=0.1)
    assert sol.retcodes == (ps.ReturnCode.Unstable, ps.ReturnCode.Success, ps.ReturnCode.Unstable)
    assert abs(float(sol.u[-1, 1, 0]) - math.exp(-2.0)) < 1e-6


def test_blowup_stops_at_the_time_resolution_in_float32_on_cuda():
    prob = ps.ODEProblem(lambda t, u, p: u**2, torch.ones(4, 1, dtype=torch.float32, device="cuda"), (0.0, 2.0),
                         batched=True)
    sol = ps.solve(prob, ps.Tsit5(), rtol=1e-4, atol=1e-6)
    assert all(c in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable) for c in sol.retcodes)
    assert sol.stats.nloop < 600


def test_graph_and_aliasing_checks_on_cuda():
    y0 = torch.ones(2, dtype=torch.float64, device="cuda", requires_grad=True)
    with pytest.raises(ps.InputError, match="not differentiable by autograd"):
        ps.odeint(lambda t, y: -y * y.sum().item(), y0, torch.tensor([0.0, 1.0], device="cuda"))

    def inplace(t, u, p):
        return u.mul_(-1.0)

    u0 = torch.ones(2, dtype=torch.float64, device="cuda")
    with pytest.raises(ps.InputError, match="in place"):
        ps.solve(ps.ODEProblem(inplace, u0, (0.0, 1.0)), ps.Rodas5P())
    assert u0.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("sensealg", [ps.InterpolatingAdjoint(), ps.QuadratureAdjoint()], ids=lambda s: s.name)
def test_backward_time_parameter_gradient_on_cuda(sensealg):
    """y' = -k y from t = 1 back to t = 0: y(0) = exp(k), dy(0)/dk = exp(k) (the sign that was wrong)."""
    k = torch.tensor(0.7, dtype=torch.float64, device="cuda", requires_grad=True)
    ys = ps.odeint(lambda t, y: -k * y, torch.ones(1, dtype=torch.float64, device="cuda"),
                   torch.tensor([1.0, 0.0], dtype=torch.float64, device="cuda"), alg=ps.Rodas5P(),
                   sensealg=sensealg, rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad(ys[-1].sum(), k)
    assert abs(float(g) / math.exp(0.7) - 1) < 1e-6
