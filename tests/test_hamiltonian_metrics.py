"""pysciml.analysis.hamiltonian: the grid metrics, energy errors along rollouts, mean and standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pysciml import InputError
from pysciml.analysis import energy_drift, energy_mse, hamiltonian_mse, mean_sem, vector_field_error
from pysciml.problems import SYSTEMS, HamiltonianSystem, trajectories

F64 = torch.float64


@pytest.mark.parametrize("name", ["pendulum", "logarithmic", "henon_heiles", "spring_chain10", "two_body"])
def test_vector_field_error_is_zero_for_the_exact_field_and_0_1_for_a_scaled_one(name):
    s = SYSTEMS[name]
    kw = {"max_points": 4096}
    assert vector_field_error(s.vector_field, s, **kw) == 0.0
    assert vector_field_error(lambda x: 1.1 * s.vector_field(x), name, **kw) == pytest.approx(0.1, abs=1e-13)
    assert vector_field_error(lambda x: -s.vector_field(x), s, **kw) == pytest.approx(2.0, abs=1e-13)


def test_vector_field_error_matches_the_papers_formula():
    # Khoo et al.'s evaluation: numpy meshgrid of linspace(lo, hi, 10) per dimension, error summed / 10^d
    s = SYSTEMS["pendulum"]
    qs, ps_ = np.meshgrid(np.linspace(-2 * np.pi, 2 * np.pi, 10), np.linspace(-1.2, 1.2, 10))
    q, p = qs.ravel(), ps_.ravel()
    f = np.stack([p, -np.sin(q)])
    f_hat = np.stack([p + 0.1 * np.cos(q), -np.sin(q) + 0.05 * p**2])
    expected = np.sum(np.sqrt(np.sum((f - f_hat) ** 2, 0)) / np.sqrt(np.sum(f**2, 0))) / 10**2

    def field(x):
        q_, p_ = x[:, 0], x[:, 1]
        return torch.stack((p_ + 0.1 * torch.cos(q_), -torch.sin(q_) + 0.05 * p_**2), dim=-1)

    assert vector_field_error(field, s) == pytest.approx(expected, rel=1e-13)


def test_vector_field_error_of_an_autograd_field():
    # an HNN-like callable that needs autograd inside: grad of the exact H, rotated
    s = SYSTEMS["toda3"]

    def field(x):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(s.H(x).sum(), x)
        return torch.cat((g[:, 3:], -g[:, :3]), dim=-1)

    assert vector_field_error(field, s, max_points=2048) < 1e-15


def test_points_where_the_field_vanishes_are_left_out():
    s = SYSTEMS["mass_spring"]
    grid = s.grid(points_per_dim=11)
    assert bool((grid == 0).all(-1).any())  # the origin, where f = 0
    assert vector_field_error(lambda x: 1.1 * s.vector_field(x), s, points_per_dim=11) == pytest.approx(0.1, abs=1e-13)
    flat = HamiltonianSystem(name="flat", n=1, low=(0.0, 0.0), high=(1.0, 1.0), separable=True,
                             hamiltonian=lambda q, p: 0 * q[..., 0], field_qp=lambda q, p: (0 * p, 0 * q))
    with pytest.raises(InputError, match="vanishes"):
        vector_field_error(lambda x: x, flat)


def test_vector_field_error_in_float32():
    s = SYSTEMS["arctan"]
    field = torch.nn.Linear(2, 2).to(torch.float32)
    with torch.no_grad():
        field.weight.zero_()
        field.bias.zero_()
    assert vector_field_error(field, s, dtype=torch.float32) == pytest.approx(1.0, abs=1e-6)  # f_hat = 0
    assert vector_field_error(lambda x: 1.1 * s.vector_field(x), s, dtype=torch.float32) == pytest.approx(
        0.1, abs=1e-6)


def test_hamiltonian_mse_ignores_the_offset():
    s = SYSTEMS["henon_heiles"]
    assert hamiltonian_mse(lambda x: s.H(x) + 3.0, s) < 1e-28
    assert hamiltonian_mse(lambda x: (s.H(x) - 1.0).unsqueeze(-1), s) < 1e-28  # (N, 1) outputs too
    # H_hat = 1.1 H: MSE = 0.01 Var_grid(H)
    h = s.H(s.grid())
    expected = 0.01 * float(((h - h.mean()) ** 2).mean())
    assert hamiltonian_mse(lambda x: 1.1 * s.H(x), s) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(InputError, match=r"\(N,\)"):
        hamiltonian_mse(lambda x: x, s)


def test_energy_drift_and_mse_along_rollouts():
    s = SYSTEMS["mass_spring"]
    _, x, _ = trajectories(s, 3, (0.0, 3.0), 30, seed=0)
    drift = energy_drift(s, x)
    assert drift.shape == (3, 30) and float(drift.max()) < 1e-9 and float(drift[:, 0].abs().max()) == 0.0
    # a rollout whose radius grows by 1% per step: H(x_k) = (1.01^2)^k H(x_0)
    x0 = torch.tensor([0.6, 0.8], dtype=F64)
    k = torch.arange(5, dtype=F64)
    traj = x0 * (1.01**k)[:, None]
    h = 1.0201**k
    assert torch.allclose(energy_drift(s.H, traj), h - 1, rtol=1e-13, atol=0)
    assert torch.allclose(energy_drift("mass_spring", 2 * traj, relative=True), h - 1, rtol=1e-13, atol=0)
    # energy_mse: x_pred = sqrt(2) x_true doubles H, so the MSE is mean_t H_true^2, per trajectory
    mse = energy_mse(s, math.sqrt(2) * x, x)
    assert mse.shape == (3,)
    assert torch.allclose(mse, (s.H(x) ** 2).mean(-1), rtol=1e-13)
    assert float(energy_mse(s.H, x[0], x[0])) == 0.0
    with pytest.raises(InputError, match="same shape"):
        energy_mse(s, x, x[:, :5])


def test_energy_metrics_are_differentiable():
    s = SYSTEMS["ideal_pendulum"]
    x = torch.tensor([[[0.3, 0.1], [0.31, 0.12], [0.33, 0.15]]], dtype=F64, requires_grad=True)
    loss = energy_mse(s, x, x.detach() * 0.9).sum() + energy_drift(s, x).sum()
    (g,) = torch.autograd.grad(loss, x)
    assert g.shape == x.shape and float(g.abs().max()) > 0


def test_mean_sem_on_known_numbers():
    mean, sem = mean_sem([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and sem == pytest.approx(math.sqrt(5 / 3) / 2, rel=1e-15)  # std (ddof 1) / sqrt(n)
    mean, sem = mean_sem(torch.tensor([2.0, 2.0, 2.0]))
    assert (mean, sem) == (2.0, 0.0)
    mean, sem = mean_sem([7.0])
    assert mean == 7.0 and math.isnan(sem)
    with pytest.raises(InputError, match="non-empty"):
        mean_sem([])
    with pytest.raises(InputError, match="1-d"):
        mean_sem([[1.0, 2.0]])
    with pytest.raises(InputError, match="1-d"):
        mean_sem("abc")
