"""pysciml.problems.hamiltonian: analytic fields vs autograd, separability, samplers, grids, trajectories."""

from __future__ import annotations

import math

import pytest
import torch

from pysciml import InputError
from pysciml.problems import SYSTEMS, HamiltonianSystem, hamiltonian_system, trajectories
from pysciml.problems.hamiltonian_systems import DAMPING

F64 = torch.float64
NAMES = sorted(SYSTEMS)
NONSEPARABLE = {"tao_nonseparable"}


def autograd_field(system: HamiltonianSystem, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(system.H(x).sum(), x)
    return torch.cat((g[:, system.n:], -g[:, : system.n]), dim=-1)


@pytest.mark.parametrize("name", NAMES)
def test_analytic_field_equals_autograd_of_H(name):
    s = SYSTEMS[name]
    x, _ = s.sample(256, seed=3)
    f, ref = s.vector_field(x), autograd_field(s, x)
    if not s.conservative:  # damped_pendulum: Hamiltonian field of the energy plus friction -gamma p in dp/dt
        ref = ref + torch.cat((torch.zeros_like(x[:, :1]), -DAMPING * x[:, 1:]), dim=-1)
    rel = float((f - ref).abs().max() / ref.abs().max())
    assert rel < 1e-12, f"{name}: analytic field differs from autograd by {rel:.2e}"
    assert f.shape == x.shape and f.dtype == F64


@pytest.mark.parametrize("name", NAMES)
def test_separable_flag_matches_mixed_hessian(name):
    s = SYSTEMS[name]
    x, _ = s.sample(64, seed=5)
    x = x.requires_grad_(True)
    (g,) = torch.autograd.grad(s.H(x).sum(), x, create_graph=True)
    # d/dq of dH/dp, row by row of p
    mixed = torch.stack([torch.autograd.grad(g[:, s.n + j].sum(), x, retain_graph=True)[0][:, : s.n]
                         for j in range(s.n)], dim=-1)
    if name in NONSEPARABLE:
        assert not s.separable and float(mixed.abs().max()) > 0.1
        with pytest.raises(InputError, match="not separable"):
            s.T(x[:, s.n:])
        with pytest.raises(InputError, match="not separable"):
            s.V(x[:, : s.n])
    else:
        assert s.separable
        assert float(mixed.abs().max()) == 0.0  # exactly: T(p) + V(q) has no q-p term in its graph
        q, p = s.split(x.detach())
        assert torch.equal(s.T(p) + s.V(q), s.H(x.detach()))


def test_every_registered_system_but_tao_is_separable():
    assert {n for n, s in SYSTEMS.items() if not s.separable} == NONSEPARABLE
    assert {n for n, s in SYSTEMS.items() if not s.conservative} == {"damped_pendulum"}


def test_paper_settings_and_constants():
    widths = {n: (s.hnn_width, s.sep_width, s.lr) for n, s in SYSTEMS.items() if s.hnn_width is not None}
    assert widths == {
        "pendulum": (16, 11, 1e-3), "trigonometric": (16, 11, 1e-3), "arctan": (16, 11, 1e-3),
        "logarithmic": (16, 11, 1e-3), "anisotropic_oscillator": (32, 22, 1e-2), "henon_heiles": (32, 22, 1e-2),
        "toda3": (31, 22, 1e-2), "spring_chain3": (31, 22, 1e-2), "spring_chain10": (44, 32, 1e-2),
    }
    dims = {n: s.dim for n, s in SYSTEMS.items()}
    assert dims["spring_chain10"] == 20 and dims["two_body"] == 8 and dims["toda3"] == 6
    # the offsets of the authors' H: zero at the origin (logarithmic: H(1, 1) = 2, their H0)
    for name in ("pendulum", "trigonometric", "arctan", "anisotropic_oscillator", "henon_heiles", "toda3",
                 "spring_chain3", "mass_spring", "ideal_pendulum"):
        s = SYSTEMS[name]
        assert float(s.H(torch.zeros(s.dim, dtype=F64))) == 0.0, name
    assert float(SYSTEMS["logarithmic"].H(torch.ones(2, dtype=F64))) == 2.0
    # spot values: Henon-Heiles at (q, p) = (0.1, 0.2, 0.3, 0.4); two-body at unit separation and rest
    hh = SYSTEMS["henon_heiles"].H(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64))
    assert float(hh) == pytest.approx(0.125 + 0.025 + 0.002 - 0.008 / 3, rel=1e-14)
    tb = SYSTEMS["two_body"].H(torch.tensor([0.5, 0, -0.5, 0, 0, 0, 0, 0], dtype=F64))
    assert float(tb) == -1.0
    assert SYSTEMS["pendulum"].low == (-2 * math.pi, -1.2) and SYSTEMS["logarithmic"].high == (3.0, 3.0)


def test_lookup_and_aliases():
    assert hamiltonian_system("henon_heiles") is SYSTEMS["henon_heiles"]
    assert hamiltonian_system("todalattice") is SYSTEMS["toda3"]
    assert hamiltonian_system("coupledoscillator10") is SYSTEMS["spring_chain10"]
    with pytest.raises(InputError, match="pendulum"):
        hamiltonian_system("pendulm")


@pytest.mark.parametrize("name", ["pendulum", "logarithmic", "toda3", "two_body"])
def test_samples_in_box_and_reproducible(name):
    s = SYSTEMS[name]
    x, dx = s.sample(1000, seed=11)
    x2, dx2 = s.sample(1000, seed=11)
    x3, _ = s.sample(1000, seed=12)
    assert torch.equal(x, x2) and torch.equal(dx, dx2) and not torch.equal(x, x3)
    low, high = s.box()
    assert bool((x >= low).all() and (x <= high).all())
    # the draws fill the box: per-coordinate extremes within 2% of its edges
    width = high - low
    assert bool(((x.min(0).values - low) < 0.02 * width).all() and ((high - x.max(0).values) < 0.02 * width).all())
    assert torch.equal(dx, s.vector_field(x))
    x32, _ = s.sample(10, seed=11, dtype=torch.float32)
    assert x32.dtype == torch.float32


def test_sample_noise_is_on_dx_with_the_given_std():
    s = SYSTEMS["henon_heiles"]
    x, dx = s.sample(20_000, seed=1, noise=0.05)
    resid = dx - s.vector_field(x)
    assert abs(float(resid.std()) - 0.05) < 0.002 and abs(float(resid.mean())) < 0.002


def test_full_grid_matches_the_paper_grid():
    s = SYSTEMS["henon_heiles"]
    g = s.grid()
    assert g.shape == (10**4, 4)
    for i in range(4):
        vals = torch.unique(g[:, i])
        assert torch.allclose(vals, torch.linspace(-0.5, 0.5, 10, dtype=F64), rtol=0, atol=1e-15)
    assert len({tuple(r) for r in g.tolist()}) == 10**4
    assert SYSTEMS["pendulum"].grid(points_per_dim=7).shape == (49, 2)


def test_grid_falls_back_to_sobol_when_too_large():
    s = SYSTEMS["spring_chain10"]
    g = s.grid(max_points=4096, seed=2)
    assert g.shape == (4096, 20)
    low, high = s.box()
    assert bool((g >= low).all() and (g <= high).all())
    assert torch.equal(g, s.grid(max_points=4096, seed=2)) and not torch.equal(g, s.grid(max_points=4096, seed=3))
    # quasi-uniform: coordinate means and variances near those of U(-0.5, 0.5) (0 and 1/12)
    assert float(g.mean(0).abs().max()) < 5e-3
    assert float((g.var(0) - 1 / 12).abs().max()) < 5e-3
    assert SYSTEMS["toda3"].grid().shape == (100_000, 6)  # 10^6 > max_points


@pytest.mark.parametrize("name", ["mass_spring", "ideal_pendulum", "two_body", "henon_heiles", "toda3",
                                  "anisotropic_oscillator", "tao_nonseparable"])
def test_trajectories_conserve_H(name):
    s = SYSTEMS[name]
    t_span, n_points = s.traj_t_span or (0.0, 5.0), s.traj_points or 20
    t, x, dx = trajectories(s, 4, t_span, n_points, seed=0)
    assert t.shape == (n_points,) and x.shape == (4, n_points, s.dim) and dx.shape == x.shape
    assert float(t[0]) == t_span[0] and float(t[-1]) == t_span[1]
    assert torch.equal(dx, s.vector_field(x))
    h = s.H(x)
    drift = float((h - h[:, :1]).abs().max() / h.abs().max().clamp_min(1.0))
    assert drift < 1e-8, f"{name}: H drifts by {drift:.1e} along Vern7 trajectories"


def test_mass_spring_trajectories_match_the_exact_solution():
    # H = q^2 + p^2: q(t) = q0 cos 2t + p0 sin 2t, p(t) = p0 cos 2t - q0 sin 2t
    t, x, _ = trajectories("mass_spring", 5, (0.0, 3.0), 30, seed=4)
    q0, p0 = x[:, 0, 0:1], x[:, 0, 1:2]
    c, s_ = torch.cos(2 * t), torch.sin(2 * t)
    exact = torch.stack((q0 * c + p0 * s_, p0 * c - q0 * s_), dim=-1)
    assert float((x - exact).abs().max()) < 1e-8
    radius = torch.linalg.vector_norm(x[:, 0], dim=-1)  # Greydanus's ring: radius uniform in [0.1, 1]
    assert bool((radius >= 0.1).all() and (radius <= 1.0).all())


def test_two_body_initial_states_are_near_circular_orbits():
    s = SYSTEMS["two_body"]
    x0 = s.initial_states(200, seed=7)
    q, p = s.split(x0)
    assert float((q[:, :2] + q[:, 2:]).abs().max()) == 0.0 and float((p[:, :2] + p[:, 2:]).abs().max()) == 0.0
    r = torch.linalg.vector_norm(q[:, :2], dim=-1)
    speed = torch.linalg.vector_norm(p[:, :2], dim=-1)
    ratio = speed * 2 * r.sqrt()  # circular orbit: speed = 1 / (2 sqrt r), then scaled by 1 + 0.05 N(0, 1)
    assert abs(float(ratio.mean()) - 1.0) < 0.02 and 0.03 < float(ratio.std()) < 0.07
    assert float((q[:, :2] * p[:, :2]).sum(-1).abs().max()) < 1e-14  # velocity perpendicular to radius


def test_damped_pendulum_loses_energy_at_the_friction_rate():
    s = SYSTEMS["damped_pendulum"]
    t, x, _ = trajectories(s, 3, (0.0, 20.0), 401, seed=1)
    e = s.H(x)
    assert bool((e[:, 1:] <= e[:, :-1] + 1e-12).all()) and bool((e[:, -1] < 0.5 * e[:, 0]).all())
    # dE/dt = -2 gamma p^2: integrate by the trapezoidal rule and compare with the energy lost
    rate = -2 * DAMPING * x[..., 1] ** 2
    lost = torch.trapezoid(rate, t, dim=-1)
    assert float((lost - (e[:, -1] - e[:, 0])).abs().max()) < 1e-3


def test_trajectory_noise_is_on_x_and_seeds_reproduce():
    s = SYSTEMS["ideal_pendulum"]
    _, clean, dx = trajectories(s, 50, (0.0, 3.0), 45, seed=2)
    _, noisy, dx2 = trajectories(s, 50, (0.0, 3.0), 45, seed=2, noise=0.05)
    assert torch.equal(dx, dx2)  # derivatives of the clean states, as in Greydanus et al.
    assert abs(float((noisy - clean).std()) - 0.05) < 0.003
    _, again, _ = trajectories(s, 50, (0.0, 3.0), 45, seed=2, noise=0.05)
    assert torch.equal(noisy, again)


def test_trajectories_from_given_x0():
    s = SYSTEMS["henon_heiles"]
    x0 = torch.tensor([[0.1, 0.0, 0.0, 0.3], [0.0, -0.2, 0.1, 0.0]], dtype=F64)
    t, x, _ = trajectories(s, 2, (0.0, 2.0), 5, seed=0, x0=x0)
    assert torch.equal(x[:, 0], x0)
    with pytest.raises(InputError, match="x0"):
        trajectories(s, 3, (0.0, 2.0), 5, seed=0, x0=x0)


def test_bad_input_is_refused():
    s = SYSTEMS["pendulum"]
    with pytest.raises(InputError, match=r"\(\.\.\., 2\)"):
        s.H(torch.zeros(3, 4, dtype=F64))
    with pytest.raises(InputError, match="seed"):
        s.sample(10, seed=1.5)
    with pytest.raises(InputError, match="noise"):
        s.sample(10, seed=1, noise=-1.0)
    with pytest.raises(InputError, match="n_samples"):
        s.sample(0, seed=1)
    with pytest.raises(InputError, match="points_per_dim"):
        s.grid(points_per_dim=1)
    with pytest.raises(InputError, match="dtype"):
        s.sample(4, seed=1, dtype=torch.int64)
    with pytest.raises(InputError, match="t_span"):
        trajectories(s, 2, (1.0, 1.0), 5, seed=0)
    with pytest.raises(InputError, match="system"):
        trajectories(42, 2, (0.0, 1.0), 5, seed=0)
    with pytest.raises(InputError, match="p must be"):
        s.T(torch.zeros(3, 2, dtype=F64))
