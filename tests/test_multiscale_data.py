"""Multiscale data generators (issue 16): KS and FitzHugh-Nagumo problems, seeded data sets, npz storage."""

from __future__ import annotations

import math

import pytest
import torch

from pysciml import IMEXSSP2, InputError, KenCarp4, Kvaerno5, ReturnCode, Rodas5P, solve
from pysciml.problems import (
    fhn_dataset,
    fitzhugh_nagumo_lattice,
    ks_dataset,
    ks_operators,
    kuramoto_sivashinsky,
    load_dataset,
    save_dataset,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


def _modes(N: int, L: float, m: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    x = torch.arange(N, dtype=torch.float64) * (L / N)
    k = 2 * math.pi * m / L
    return torch.cos(k * x), torch.sin(k * x), k


def test_fd_operator_symbol_on_fourier_modes():
    N, L = 64, 22.0
    dx = L / N
    D2, D4 = ks_operators(N, L, "fd")
    A = -D2 - D4
    for m in (1, 2, 3, 5):
        c, s, k = _modes(N, L, m)
        s2 = math.sin(k * dx / 2) ** 2
        lam_discrete = 4 / dx**2 * s2 - 16 / dx**4 * s2**2
        for v in (c, s):  # exact eigenvectors of the circulant matrix, with the discrete symbol
            assert torch.allclose(A @ v, lam_discrete * v, atol=1e-10 * (1 + abs(lam_discrete)))
        lam = k**2 - k**4
        # second-order consistency: the error is O(k^4 (k dx)^2)
        assert abs(lam_discrete - lam) <= 0.2 * (k**2 + k**4) * (k * dx) ** 2
    # m = 1: k = 0.2856, k^2 - k^4 = 0.07490; the discrete value differs by under 1e-3
    c, _, k = _modes(N, L, 1)
    assert abs(float(c @ (A @ c)) / float(c @ c) - (k**2 - k**4)) < 1e-3


def test_spectral_operator_is_exact_on_resolved_modes():
    N, L = 32, 22.0
    D2, D4 = ks_operators(N, L, "spectral")
    for m in (1, 4, 9, 15):
        c, s, k = _modes(N, L, m)
        for v in (c, s):
            assert torch.allclose(D2 @ v, -(k**2) * v, atol=1e-10)
            assert torch.allclose(D4 @ v, k**4 * v, atol=1e-9 * k**4)


@pytest.mark.parametrize("scheme", ["fd", "spectral"])
def test_ks_dataset_matches_tight_rodas5p(scheme):
    # the generator's batched KenCarp4 (rtol 1e-8) against Rodas5P on the unsplit sum at rtol 1e-10
    data = ks_dataset(2, N=32, dt=0.1, n_steps=15, seed=3, scheme=scheme, rtol=1e-8, atol=1e-10)
    assert data["u"].shape == (2, 16, 32) and data["t"].shape == (16,) and data["x"].shape == (32,)
    prob = kuramoto_sivashinsky(32, 22.0, scheme=scheme, u0=data["u"][:, 0], tspan=(0.0, 1.5))
    ref = solve(prob, Rodas5P(), rtol=1e-10, atol=1e-12, saveat=data["t"].tolist(), unsplit=True)
    assert ref.retcode == ReturnCode.Success
    err = float((ref.u.transpose(0, 1) - data["u"]).abs().max())
    assert err < 2e-7  # measured 2.8e-8 (fd) and 2.3e-8 (spectral) over t in [0, 2]
    assert float(data["u"].abs().max()) > 0.5  # a real, non-decaying signal


def test_ks_dataset_fixed_step_imexssp2_is_second_order():
    ref = ks_dataset(2, N=32, dt=0.1, n_steps=10, seed=4, rtol=1e-9, atol=1e-11)
    errs = []
    for step in (0.005, 0.0025):
        data = ks_dataset(2, N=32, dt=0.1, n_steps=10, seed=4, alg=IMEXSSP2(), step=step)
        assert data["params"]["step"] == step and "IMEXSSP2" in data["params"]["alg"]
        errs.append(float((data["u"] - ref["u"]).abs().max()))
    assert errs[0] < 1e-5  # measured 1.6e-6
    assert 3.0 < errs[0] / errs[1] < 5.0  # measured 3.96: second order


def test_fd_converges_to_spectral_at_second_order():
    # same seed -> same random Fourier initial condition on every grid; fd - spectral over t in [0, 2]
    diffs = []
    for N in (32, 64):
        fd = ks_dataset(1, N=N, dt=0.5, n_steps=4, seed=1, scheme="fd")
        sp = ks_dataset(1, N=N, dt=0.5, n_steps=4, seed=1, scheme="spectral")
        diffs.append(float((fd["u"] - sp["u"]).abs().max()))
    assert diffs[1] < 0.02  # measured 0.044 (N = 32), 0.011 (N = 64)
    assert 3.0 < diffs[0] / diffs[1] < 5.0


def test_ks_transient_is_dropped_and_seeded():
    a = ks_dataset(2, N=16, dt=0.5, n_steps=3, transient=2.0, seed=7)
    b = ks_dataset(2, N=16, dt=0.5, n_steps=3, transient=0.0, seed=7)
    assert torch.equal(a["t"], b["t"])
    # continuing b (which starts at the same initial state) by 2.0 lands on a's first sample
    prob = kuramoto_sivashinsky(16, 22.0, u0=b["u"][:, 0], tspan=(0.0, 2.0))
    ref = solve(prob, KenCarp4(), rtol=1e-9, atol=1e-11, saveat=[2.0])
    assert float((ref.u[-1] - a["u"][:, 0]).abs().max()) < 1e-5
    c = ks_dataset(2, N=16, dt=0.5, n_steps=3, transient=2.0, seed=7)
    assert torch.equal(a["u"], c["u"])
    assert a["params"]["transient"] == 2.0 and a["params"]["seed"] == 7


def test_fhn_stiff_solve_success_and_second_method():
    data = fhn_dataset(2, n_nodes=101, dt=1.0, n_steps=20, seed=1, rtol=1e-8, atol=1e-10)
    assert data["u"].shape == (2, 21, 202)
    prob = fitzhugh_nagumo_lattice(u0=data["u"][:, 0], tspan=(0.0, 20.0))
    ref = solve(prob, Kvaerno5(), rtol=1e-10, atol=1e-12, saveat=data["t"].tolist())
    assert ref.retcode == ReturnCode.Success
    err = float((ref.u.transpose(0, 1) - data["u"]).abs().max())
    assert err < 1e-6  # measured 1.1e-8
    stiff = solve(prob, Rodas5P(), rtol=1e-6, atol=1e-8, saveat=[20.0])
    assert stiff.retcode == ReturnCode.Success
    assert float((stiff.u[-1] - ref.u[-1]).abs().max()) < 1e-4


def test_fhn_jacobian_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    prob = fitzhugh_nagumo_lattice(n_nodes=7, length=3.0)
    y = torch.randn(14, generator=gen, dtype=torch.float64)
    t = torch.tensor(0.0, dtype=torch.float64)
    J = prob.jac(t, y)
    J_ad = torch.autograd.functional.jacobian(lambda z: prob.f(t, z), y)
    assert torch.allclose(J, J_ad, atol=1e-12)
    # stiff: the most negative eigenvalue of the default 101-node Jacobian is near -4 D_v / h^2 = -400 (measured
    # -400.01), while the reaction's eigenvalues are O(1) and O(eps)
    big = fitzhugh_nagumo_lattice()
    ev = torch.linalg.eigvals(big.jac(t, big.u0)).real
    assert abs(float(ev.min()) + 400.0) < 4.0 and float(ev.max()) < 2.0


def test_npz_round_trip_is_exact(tmp_path):
    data = ks_dataset(2, N=16, dt=0.2, n_steps=4, seed=2, noise=0.05)
    path = save_dataset(tmp_path / "ks", data)
    assert path.suffix == ".npz" and path.exists()
    back = load_dataset(path)
    assert set(back) == set(data)
    for key in ("u", "u_clean", "t", "x"):
        assert back[key].dtype == data[key].dtype and torch.equal(back[key], data[key])
    assert back["params"] == data["params"]


def test_noise_level_is_measured_and_seeded():
    data = ks_dataset(3, N=32, dt=0.1, n_steps=20, seed=5, noise=0.1)
    clean, noisy = data["u_clean"], data["u"]
    ratio = float((noisy - clean).std() / clean.std())
    assert abs(ratio - 0.1) < 0.005  # 2016 samples: about 1.6 % standard error
    again = ks_dataset(3, N=32, dt=0.1, n_steps=20, seed=5, noise=0.1)
    assert torch.equal(again["u"], noisy)
    assert "u_clean" not in ks_dataset(1, N=16, dt=0.1, n_steps=2)
    assert math.isclose(data["params"]["noise_sigma"], 0.1 * float(clean.std()))


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: ks_dataset(1, N=16, n_steps=2, noise=0.3), "noise"),
        (lambda: ks_dataset(0, N=16, n_steps=2), "n_traj"),
        (lambda: ks_dataset(1, N=16, n_steps=2, dt=-0.1), "dt"),
        (lambda: ks_dataset(1, N=16, n_steps=2, transient=float("nan")), "transient"),
        (lambda: ks_dataset(1, N=16, n_steps=2, step=0.0), "step"),
        (lambda: kuramoto_sivashinsky(16, scheme="chebyshev"), "scheme"),
        (lambda: kuramoto_sivashinsky(3), "N"),
        (lambda: kuramoto_sivashinsky(16, u0=torch.zeros(15)), "u0"),
        (lambda: fitzhugh_nagumo_lattice(n_nodes=5, u0=torch.zeros(9)), "u0"),
        (lambda: fitzhugh_nagumo_lattice(eps=0.0), "eps"),
        (lambda: fhn_dataset(1, n_nodes=2, n_steps=2), "n_nodes"),
        (lambda: save_dataset("x.npz", {"u": torch.zeros(2)}), "params"),
        (lambda: load_dataset("/nonexistent/file.npz"), "path"),
    ],
)
def test_bad_inputs_raise_input_error(call, word):
    with pytest.raises(InputError, match=word):
        call()
