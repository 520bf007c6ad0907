"""LatentNeuralODE: exact on a linear system with a known linear latent structure, gradients flow to every part
(or not to a frozen autoencoder), and a short training run beats the untrained model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pysciml as ps
from pysciml.models.latent_ode import LatentNeuralODE

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)

D = torch.float64




def _linear(n_in: int, n_out: int, weight: torch.Tensor | None = None) -> nn.Linear:
    m = nn.Linear(n_in, n_out, bias=False).to(D)
    if weight is not None:
        with torch.no_grad():
            m.weight.copy_(weight)
    return m


def test_exact_linear_latent_dynamics():
    """x = P z with P orthonormal (n = 6, k = 2), z' = A z: with encoder P^T, decoder P and latent field A the
    forecast equals P expm(A t) P^T x0 to the solver's tolerance (measured 1e-9 at rtol 1e-10)."""
    torch.manual_seed(0)
    P, _ = torch.linalg.qr(torch.randn(6, 2, dtype=D))
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=D)
    model = LatentNeuralODE(_linear(6, 2, P.T), _linear(2, 6, P), _linear(2, 2, A), ps.Tsit5(), rtol=1e-10,
                            atol=1e-12)
    x0 = (P @ torch.randn(2, 3, dtype=D)).T  # three states on the latent plane
    t = torch.linspace(0.0, 2.0, 5, dtype=D)
    with torch.no_grad():
        xs = model(x0, t)
    exact = torch.stack([(P @ torch.linalg.matrix_exp(A * s) @ P.T @ x0.T).T for s in t])
    assert xs.shape == (5, 3, 6)
    assert float((xs - exact).abs().max()) < 1e-8
    assert model.latent().shape == (5, 3, 2) and model.nfe > 0


def test_gradients_reach_every_part_or_not_a_frozen_autoencoder():
    torch.manual_seed(1)
    enc, dec, field = _linear(4, 2), _linear(2, 4), nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).to(D)
    x = torch.randn(3, 2, 4, dtype=D)
    t = torch.linspace(0, 1, 3, dtype=D)
    LatentNeuralODE(enc, dec, field, ps.Tsit5()).loss(x, t).backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0
               for m in (enc, dec, field) for p in m.parameters())
    enc2, dec2 = _linear(4, 2), _linear(2, 4)
    field2 = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).to(D)
    LatentNeuralODE(enc2, dec2, field2, ps.Tsit5(), train_autoencoder=False).loss(x, t).backward()
    assert all(p.grad is None for m in (enc2, dec2) for p in m.parameters())
    assert all(p.grad is not None for p in field2.parameters())


def test_gradient_matches_finite_differences():
    """d loss / d (one latent-field weight) by backprop through Tsit5 vs central differences (float64)."""
    torch.manual_seed(2)
    model = LatentNeuralODE(_linear(4, 2), _linear(2, 4), _linear(2, 2), ps.Tsit5(), rtol=1e-10, atol=1e-12)
    x = torch.randn(3, 2, 4, dtype=D)
    t = torch.linspace(0, 1, 3, dtype=D)
    w = model.node.vector_field.net.weight
    model.loss(x, t).backward()
    g = float(w.grad[0, 1])
    h = 1e-6
    with torch.no_grad():
        w[0, 1] += h
        up = float(model.loss(x, t))
        w[0, 1] -= 2 * h
        down = float(model.loss(x, t))
        w[0, 1] += h
    assert abs(g - (up - down) / (2 * h)) < 1e-6 * max(1.0, abs(g))


def test_training_beats_the_untrained_model():
    """Data from a damped rotation embedded in 8 dimensions; 150 Adam steps of the joint loss lower it by > 10x."""
    torch.manual_seed(3)
    P, _ = torch.linalg.qr(torch.randn(8, 2, dtype=D))
    A = torch.tensor([[-0.2, 1.5], [-1.5, -0.2]], dtype=D)
    t = torch.linspace(0.0, 2.0, 9, dtype=D)
    z0 = torch.randn(16, 2, dtype=D)
    x = torch.stack([z0 @ torch.linalg.matrix_exp(A * s).T @ P.T for s in t])  # (T, B, 8)
    model = LatentNeuralODE(_linear(8, 2), _linear(2, 8), _linear(2, 2), ps.Tsit5(), rtol=1e-6, atol=1e-8)
    with torch.no_grad():
        before = float(model.loss(x, t))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = model.loss(x, t)
        loss.backward()
        opt.step()
    final = float(loss.detach())
    assert final < before / 10, (before, final)


def test_bad_inputs():
    with pytest.raises(ps.InputError, match="encoder must be an nn.Module"):
        LatentNeuralODE(lambda x: x, _linear(2, 4), _linear(2, 2))
    model = LatentNeuralODE(_linear(4, 2), _linear(2, 4), _linear(2, 2))
    with pytest.raises(ps.InputError, match="call the model first"):
        model.latent()
    with pytest.raises(ps.InputError, match="x must be trajectories"):
        model.loss(torch.zeros(4, dtype=D), torch.linspace(0, 1, 2, dtype=D))
