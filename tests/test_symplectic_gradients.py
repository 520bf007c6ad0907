"""Gradients through symplectic rollouts: backpropagation through the steps and ``DiscreteAdjoint(checkpoints=K)``
against central finite differences (float64), for the initial state and for the parameters of an ``nn.Module``
Hamiltonian; the explicit splitting methods and ``ImplicitMidpoint`` (whose converged stage carries the derivative
of the exact stage equation, so its gradient does not depend on how far Newton iterated).

Each check projects the whole gradient on one seeded random direction (``tests/fd.py``); the finite difference is
Richardson-extrapolated, so agreement to ~1e-8 relative is the float64 round-off of the difference quotient.
"""

from __future__ import annotations

import pytest
import torch
from fd import check_gradient
from torch import nn

import pysciml as ps

DT = torch.float64
TSPAN = (0.0, 2.0)
SAVE = [0.5, 1.0, 1.5, 2.0]


class SeparableNet(nn.Module):
    """``H(q, p) = |p|^2 / 2 + V(q)``, ``V`` a small tanh network: separable, kinetic energy quadratic."""

    def __init__(self, n: int = 2, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.v = nn.Sequential(nn.Linear(n, width), nn.Tanh(), nn.Linear(width, 1)).to(DT)

    def forward(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return 0.5 * (p**2).sum(-1) + self.v(q).squeeze(-1) + 0.5 * (q**2).sum(-1)


class MixedNet(nn.Module):
    """A non-separable network ``H(q, p)`` (for ``ImplicitMidpoint``), with a confining quadratic part."""

    def __init__(self, n: int = 1, width: int = 6) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.h = nn.Sequential(nn.Linear(2 * n, width), nn.Tanh(), nn.Linear(width, 1)).to(DT)

    def forward(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        x = torch.cat([q, p], -1)
        return 0.5 * (x**2).sum(-1) + 0.3 * self.h(x).squeeze(-1)


def _field_params(H: nn.Module) -> list[torch.Tensor]:
    """The parameters the vector field depends on (the output bias only shifts H by a constant)."""
    return [w for name, w in H.named_parameters() if not name.endswith("2.bias")]


def _loss_fn(H: nn.Module, q0: torch.Tensor, p0: torch.Tensor, alg: ps.Algorithm, dt: float,
             sensealg: object = None, separable: bool = True):
    def loss() -> torch.Tensor:
        prob = ps.HamiltonianProblem(H, q0, p0, TSPAN, separable=separable)
        sol = ps.solve(prob, alg, dt=dt, saveat=SAVE, sensealg=sensealg)
        assert sol.retcode == ps.ReturnCode.Success, sol.message
        w = torch.linspace(0.5, 1.5, sol.u[1:].numel(), dtype=DT).reshape(sol.u[1:].shape)
        return (w * sol.u[1:]).sum() + (sol.u[-1] ** 2).sum()
    return loss


@pytest.mark.parametrize("alg", [ps.VelocityVerlet(), ps.Leapfrog(), ps.Yoshida4(), ps.McAte5(), ps.Yoshida6()],
                         ids=lambda a: a.name)
@pytest.mark.parametrize("sensealg", [None, ps.DiscreteAdjoint(checkpoints=3)], ids=["backprop", "checkpointed"])
def test_explicit_rollout_gradients_match_finite_differences(alg: ps.Algorithm, sensealg: object) -> None:
    """d(loss)/d(q0, p0, every network parameter): autograd through the rollout = central FD to 1e-7."""
    H = SeparableNet()
    q0 = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=DT, requires_grad=True)  # a batch of two trajectories
    p0 = torch.tensor([[0.1, 0.4], [-0.3, 0.0]], dtype=DT, requires_grad=True)
    loss = _loss_fn(H, q0, p0, alg, 0.1, sensealg)
    res = check_gradient(loss, [q0, p0, *_field_params(H)], h=1e-4, richardson=True)
    assert res.rel < 1e-7, str(res)


def test_checkpointed_gradient_equals_plain_backprop() -> None:
    """DiscreteAdjoint(checkpoints=K) takes the same steps (restarted at the segment boundaries, which are save
    times on the step grid): its values and gradients equal plain backprop's to round-off."""
    H = SeparableNet()
    q0 = torch.tensor([0.3, -0.2], dtype=DT, requires_grad=True)
    p0 = torch.tensor([0.1, 0.4], dtype=DT, requires_grad=True)
    params = [q0, p0, *_field_params(H)]
    grads, values = [], []
    for sensealg in (None, ps.DiscreteAdjoint(checkpoints=4)):
        value = _loss_fn(H, q0, p0, ps.Yoshida4(), 0.05, sensealg)()
        grads.append(torch.autograd.grad(value, params))
        values.append(float(value.detach()))
    assert values[0] == pytest.approx(values[1], rel=1e-13)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sensealg", [None, ps.DiscreteAdjoint(checkpoints=2)], ids=["backprop", "checkpointed"])
def test_implicit_midpoint_gradients_match_finite_differences(sensealg: object) -> None:
    """ImplicitMidpoint on a non-separable network H: the implicit-function-theorem stage derivative gives the
    gradient of the discrete solution (FD of the converged solve) to 1e-7."""
    H = MixedNet()
    q0 = torch.tensor([[0.4], [-0.7]], dtype=DT, requires_grad=True)
    p0 = torch.tensor([[0.2], [0.5]], dtype=DT, requires_grad=True)
    loss = _loss_fn(H, q0, p0, ps.ImplicitMidpoint(), 0.1, sensealg, separable=False)
    res = check_gradient(loss, [q0, p0, *_field_params(H)], h=1e-4, richardson=True)
    assert res.rel < 1e-7, str(res)


def test_second_order_parameter_gradient_matches_finite_differences() -> None:
    """A tensor in ``p`` of a SecondOrderODEProblem (stiffness and a forcing amplitude, time-dependent force)."""
    k = torch.tensor([2.0, 0.5], dtype=DT, requires_grad=True)
    x0 = torch.tensor([1.0, -0.5], dtype=DT, requires_grad=True)
    v0 = torch.tensor([0.0, 0.3], dtype=DT)

    def accel(t: torch.Tensor, x: torch.Tensor, v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return -k[0] * x + k[1] * torch.sin(t) * torch.ones_like(x)

    def loss() -> torch.Tensor:
        prob = ps.SecondOrderODEProblem(accel, x0, v0, TSPAN, k)
        sol = ps.solve(prob, ps.McAte5(), dt=0.1, saveat=SAVE)
        return (sol.u[1:] ** 2).sum()

    res = check_gradient(loss, [k, x0], h=1e-4, richardson=True)
    assert res.rel < 1e-7, str(res)


def test_batched_gradient_equals_gradients_one_by_one() -> None:
    """Leading dimensions are independent trajectories: the gradient of a summed batch loss with respect to each
    row of ``q0`` equals that row's gradient from its own solve."""
    H = SeparableNet()
    q0 = torch.tensor([[0.3, -0.2], [1.0, 0.5], [-0.4, 0.8]], dtype=DT, requires_grad=True)
    p0 = torch.zeros(3, 2, dtype=DT)
    sol = ps.solve(ps.HamiltonianProblem(H, q0, p0, TSPAN, separable=True), ps.VelocityVerlet(), dt=0.1,
                   saveat=[2.0])
    (g_batch,) = torch.autograd.grad((sol.u[-1] ** 2).sum(), q0)
    for i in range(3):
        qi = q0[i].detach().clone().requires_grad_(True)
        si = ps.solve(ps.HamiltonianProblem(H, qi, p0[i], TSPAN, separable=True), ps.VelocityVerlet(), dt=0.1,
                      saveat=[2.0])
        (gi,) = torch.autograd.grad((si.u[-1] ** 2).sum(), qi)
        assert torch.allclose(g_batch[i], gi, rtol=1e-13, atol=1e-15)
