"""pysciml.models.LagrangianNN: Euler-Lagrange accelerations against analytic ones (pendulum, double pendulum),
batched == looped, gradients against finite differences, use as a right-hand side, and input errors."""

from __future__ import annotations

import pytest
import torch
from fd import check_gradient

import pysciml as ps
from pysciml.models import LagrangianNN, NeuralODE, fit_vector_field

F64 = torch.float64
G = 9.81
M1, M2, L1, L2 = 1.0, 2.0, 1.0, 1.5


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


def pendulum_L(q: torch.Tensor, qd: torch.Tensor, m: float = 1.3, length: float = 0.7) -> torch.Tensor:
    return 0.5 * m * length**2 * qd[..., 0] ** 2 + m * G * length * torch.cos(q[..., 0])


def double_pendulum_L(q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
    t1, t2 = q.unbind(-1)
    w1, w2 = qd.unbind(-1)
    kinetic = (0.5 * (M1 + M2) * L1**2 * w1**2 + 0.5 * M2 * L2**2 * w2**2
               + M2 * L1 * L2 * w1 * w2 * torch.cos(t1 - t2))
    potential = -(M1 + M2) * G * L1 * torch.cos(t1) - M2 * G * L2 * torch.cos(t2)
    return kinetic - potential


def double_pendulum_accel(u: torch.Tensor) -> torch.Tensor:
    """The closed form (e.g. Goldstein-style derivation; the standard two-mass, two-rod result)."""
    t1, t2, w1, w2 = u.unbind(-1)
    d = t1 - t2
    den = 2 * M1 + M2 - M2 * torch.cos(2 * d)
    a1 = (-G * (2 * M1 + M2) * torch.sin(t1) - M2 * G * torch.sin(t1 - 2 * t2)
          - 2 * torch.sin(d) * M2 * (w2**2 * L2 + w1**2 * L1 * torch.cos(d))) / (L1 * den)
    a2 = (2 * torch.sin(d) * (w1**2 * L1 * (M1 + M2) + G * (M1 + M2) * torch.cos(t1)
                              + w2**2 * L2 * M2 * torch.cos(d))) / (L2 * den)
    return torch.stack([a1, a2], -1)


def states(*shape: int, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    return scale * (torch.rand(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed)) - 0.5)


def test_pendulum_acceleration_is_analytic() -> None:
    model = LagrangianNN(1, lagrangian=pendulum_L)
    u = states(40, 2)
    du = model(torch.tensor(0.0), u)
    assert torch.equal(du[:, 0], u[:, 1])
    exact = -G / 0.7 * torch.sin(u[:, 0])
    assert float((du[:, 1] - exact).abs().max()) < 1e-10 * float(exact.abs().max())


def test_double_pendulum_acceleration_is_analytic_and_batched() -> None:
    model = LagrangianNN(2, lagrangian=double_pendulum_L)
    u = states(3, 10, 4, seed=1)
    acc = model.acceleration(u)
    assert acc.shape == (3, 10, 2)
    exact = double_pendulum_accel(u)
    assert float((acc - exact).abs().max()) < 1e-10 * float(exact.abs().max())
    looped = torch.stack([model.acceleration(ui) for ui in u.reshape(-1, 4)]).reshape(3, 10, 2)
    assert float((looped - acc).abs().max()) < 1e-13 * float(exact.abs().max())
    with torch.no_grad():
        assert float((model.acceleration(u) - exact).abs().max()) < 1e-10 * float(exact.abs().max())


def test_network_lagrangian_gradients_match_finite_differences() -> None:
    torch.manual_seed(0)
    model = LagrangianNN(2, hidden=(12, 12))
    u = states(16, 4, seed=2, scale=1.0)
    du = torch.cat([u[:, 2:], double_pendulum_accel(u)], 1)
    params = list(model.parameters())[:-1]  # L's output bias does not enter the dynamics
    res = check_gradient(lambda: model.loss(u, du), params, h=1e-5, richardson=True)
    assert res.rel < 1e-7, str(res)
    # the accelerations' input derivatives (what a solver's Jacobian needs) match finite differences too
    ur = u.clone().requires_grad_(True)
    res = check_gradient(lambda: model.acceleration(ur).sum(), [ur], h=1e-5, richardson=True)
    assert res.rel < 1e-7, str(res)


def test_lnn_is_a_right_hand_side() -> None:
    model = LagrangianNN(2, lagrangian=double_pendulum_L)
    u0 = torch.tensor([[0.3, -0.2, 0.1, 0.4], [1.0, 0.5, -0.3, 0.0]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    ys = ps.odeint(model, u0, t, rtol=1e-8, atol=1e-10)

    def exact_rhs(tt: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.cat([u[..., 2:], double_pendulum_accel(u)], -1)

    ref = ps.odeint(exact_rhs, u0, t, rtol=1e-8, atol=1e-10)
    assert float((ys - ref).abs().max()) < 1e-6 and float((ys[-1] - u0).abs().max()) > 0.1
    yn = NeuralODE(model, ps.Tsit5(), rtol=1e-8, atol=1e-10)(u0, t)
    assert float((yn - ref).abs().max()) < 1e-6


def test_lnn_trains() -> None:
    torch.manual_seed(0)
    u = states(200, 2, seed=3)
    du = torch.stack([u[:, 1], -torch.sin(u[:, 0])], 1)
    model = LagrangianNN(1, hidden=(16, 16))
    with torch.no_grad():
        before = float(model.loss(u, du))
    res = fit_vector_field(model, u, du, epochs=60, lr=1e-2, seed=0)
    assert res.best_loss < 0.1 * before, (before, res.best_loss)


def test_bad_inputs() -> None:
    with pytest.raises(ps.InputError, match="n must be a positive int"):
        LagrangianNN(0)
    with pytest.raises(ps.InputError, match="lagrangian must be a callable"):
        LagrangianNN(1, lagrangian=3.0)
    with pytest.raises(ps.InputError, match=r"u must be a tensor of shape \(\.\.\., 2\)"):
        LagrangianNN(1)(None, torch.zeros(3, 4, dtype=F64))
    with pytest.raises(ps.InputError, match="dtype"):
        LagrangianNN(1).acceleration(torch.zeros(3, 2))
