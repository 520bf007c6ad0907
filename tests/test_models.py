"""pysciml.models: NeuralODE and SemiImplicitNeuralODE as nn.Modules (batching, layouts, errors, training)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pysciml as ps
from pysciml.models import NeuralODE, SemiImplicitNeuralODE

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


class MLP(nn.Module):
    def __init__(self, n: int, width: int = 16, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(n, width), nn.Tanh(), nn.Linear(width, n)).to(F64)

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.net(u)


def lap(n: int, k: float = 20.0) -> torch.Tensor:
    eye = torch.eye(n, dtype=F64)
    return k * (torch.roll(eye, 1, 1) - 2 * eye + torch.roll(eye, -1, 1)) - eye


T = torch.linspace(0.0, 1.0, 5, dtype=F64)
Y0 = torch.randn(3, 6, dtype=F64, generator=torch.Generator().manual_seed(1))


def test_neural_ode_batched_equals_loop() -> None:
    model = NeuralODE(MLP(6), ps.Tsit5(), rtol=1e-7, atol=1e-9, batched=True)
    ys = model(Y0, T)
    assert ys.shape == (5, 3, 6) and model.nfe == model.last_solution.stats.nf > 0
    single = NeuralODE(model.vector_field, ps.Tsit5(), rtol=1e-7, atol=1e-9)
    loop = torch.stack([single(Y0[b], T) for b in range(3)], dim=1)
    torch.testing.assert_close(ys, loop, rtol=0, atol=1e-10)  # BLAS round-off of batched matmuls


def test_neural_ode_matches_torchdiffeq_fixed_euler() -> None:
    """Same fixed-step method, same numbers (torchdiffeq's "rk4" is the 3/8 rule, so Euler is compared)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    f = MLP(6)
    ours = NeuralODE(f, ps.Euler(), dt=0.05)(Y0, T)
    theirs = torchdiffeq.odeint(f, Y0, T, method="euler", options={"step_size": 0.05})
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sensealg", [None, ps.InterpolatingAdjoint()], ids=["discrete", "interpolating"])
def test_neural_ode_gradient_vs_finite_differences(sensealg: ps.sensealg.SensitivityAlgorithm | None) -> None:
    model = NeuralODE(MLP(6), ps.Rodas5P(), rtol=1e-9, atol=1e-11, sensealg=sensealg)
    w = model.vector_field.net[2].weight
    y0 = Y0[0]
    g = torch.autograd.grad(model(y0, T)[-1].sum(), w)[0]
    eps = 1e-5
    for idx in [(0, 0), (5, 15)]:
        with torch.no_grad():
            w[idx] += eps
            up = float(model(y0, T)[-1].sum())
            w[idx] -= 2 * eps
            down = float(model(y0, T)[-1].sum())
            w[idx] += eps
        assert float(g[idx]) == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7)


def test_sinode_rows_in_lock_step_equal_single_solves() -> None:
    """``L (n, n)`` acting on the last dim of a ``(B, n)`` state: the lock-step batched solve (one LU)
    equals B separate solves, and the adaptive matrix-free fallback agrees to its tolerance."""
    L = lap(6)
    fixed = SemiImplicitNeuralODE(L, MLP(6), ps.KenCarp4(), dt=0.02)
    ys = fixed(Y0, T)
    assert ys.shape == (5, 3, 6) and fixed.last_solution.stats.nlu == 1
    # 50 steps, 6 explicit stages each (stage 1 at the new point), and the 3 calls of the one-time check that
    # the network is differentiable by autograd (this is the model's first solve with gradients)
    assert fixed.nfe_explicit == 6 * 50 + 1 + 3
    loop = torch.stack([fixed(Y0[b], T) for b in range(3)], dim=1)
    torch.testing.assert_close(ys, loop, rtol=0, atol=1e-10)  # BLAS round-off of batched matmuls
    adaptive = SemiImplicitNeuralODE(L, fixed.nonlinear, ps.KenCarp4(), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(adaptive(Y0, T), ys, rtol=0, atol=1e-4)
    assert adaptive.last_solution.stats.nlu == 0 and adaptive.nfe_implicit > 0  # GMRES, no LU


def test_sinode_sparse_and_callable_linear_agree() -> None:
    L = lap(6)
    net = MLP(6)
    dense = SemiImplicitNeuralODE(L, net, ps.KenCarp3(), dt=0.05)(Y0[0], T)
    sparse = SemiImplicitNeuralODE(L.to_sparse(), net, ps.KenCarp3(), dt=0.05)(Y0[0], T)
    free = SemiImplicitNeuralODE(lambda u: L @ u, net, ps.KenCarp3(), dt=0.05, rtol=1e-10, atol=1e-12)(Y0[0], T)
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-12)
    torch.testing.assert_close(free, dense, rtol=0, atol=1e-8)


def test_sinode_training_lowers_loss() -> None:
    """Learn the nonlinear term of du/dt = L u + N(u) (N(u) = sin(u) roll(u) + 1/2) from 8 trajectories:
    40 Adam steps of a KenCarp3 SINODE at dt = 0.1 lower the loss by more than 10x (measured 27x)."""
    n = 8
    L = lap(n, 10.0)

    def n_true(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.sin(u) * torch.roll(u, 1, -1) + 0.5

    g = torch.Generator().manual_seed(0)
    y0 = torch.randn(8, n, dtype=F64, generator=g)
    t = torch.linspace(0.0, 0.5, 6, dtype=F64)
    with torch.no_grad():
        data = SemiImplicitNeuralODE(L, n_true, ps.KenCarp4(), dt=0.01)(y0, t)
    model = SemiImplicitNeuralODE(L, MLP(n, 32), ps.KenCarp3(), dt=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = ((model(y0, t) - data) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


# ------------------------------------------------------------------------------------------ errors
def test_bad_inputs_are_named() -> None:
    net = MLP(6)
    with pytest.raises(ps.InputError, match="square"):
        SemiImplicitNeuralODE(torch.zeros(6, 5, dtype=F64), net)
    with pytest.raises(ps.InputError, match="IMEX"):
        SemiImplicitNeuralODE(lap(6), net, ps.Rodas5P())
    with pytest.raises(ps.InputError, match="linear must be"):
        SemiImplicitNeuralODE("L", net)  # type: ignore[arg-type]
    with pytest.raises(ps.InputError, match="last dimension"):
        SemiImplicitNeuralODE(lap(4), net, dt=0.1)(Y0, T)
    with pytest.raises(ps.InputError, match="strictly increasing"):
        SemiImplicitNeuralODE(lap(6), net, dt=0.1)(Y0[0], torch.tensor([0.0, 0.5, 0.5], dtype=F64))
    with pytest.raises(ps.InputError, match="1-D"):
        NeuralODE(net)(Y0, T[None])
    with pytest.raises(ps.InputError, match="saveat"):
        NeuralODE(net, saveat=T)
    with pytest.raises(ps.InputError, match="linsolve"):
        SemiImplicitNeuralODE(lap(6), net, linsolve="lu")  # type: ignore[arg-type]
    with pytest.raises(ps.InputError, match="shape"):
        SemiImplicitNeuralODE(lap(6), lambda t, u: u[..., :3], dt=0.1)(Y0[0], T)


def test_explicit_blow_up_raises_solver_error() -> None:
    """A stiff L (eigenvalues down to -321) with RK4 at dt = 0.1 grows by ~4e4 per step, overflows before
    t = 10: SolverError with the retcode; KenCarp4 at the same dt stays finite."""
    L = lap(6, 80.0)
    model = NeuralODE(_Split(L, MLP(6)), ps.RK4(), dt=0.1)
    with pytest.raises(ps.SolverError) as info:
        model(Y0[0], torch.linspace(0.0, 10.0, 3, dtype=F64))
    assert info.value.retcode is not ps.ReturnCode.Success
    imex = SemiImplicitNeuralODE(L, model.vector_field.nonlinear, ps.KenCarp4(), dt=0.1)
    assert bool(torch.isfinite(imex(Y0[0], torch.linspace(0.0, 10.0, 3, dtype=F64))).all())


class _Split(nn.Module):
    def __init__(self, L: torch.Tensor, nonlinear: nn.Module) -> None:
        super().__init__()
        self.L, self.nonlinear = L, nonlinear

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return u @ self.L.T + self.nonlinear(t, u)
