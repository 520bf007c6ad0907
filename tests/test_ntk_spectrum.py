"""Kernel spectra (pysciml.analysis.ntk_spectrum): decay-exponent fits recover the exponent of synthetic spectra,
the automatic fit range stops at the round-off floor, Lanczos top-k = dense, traces, plots, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from pysciml.analysis.ntk_spectrum import eigenvalues, fit_decay, plot_spectra, trace
from pysciml.errors import InputError

DT = torch.float64


def synthetic_kernel(values: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Q diag(values) Q^T with a random orthogonal Q."""
    n = values.numel()
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=DT, generator=torch.Generator().manual_seed(seed)))
    return q @ torch.diag(values) @ q.T


@pytest.mark.parametrize("alpha", [1.0, 2.5, 4.0])
def test_fit_recovers_power_law_exponent(alpha: float) -> None:
    k = torch.arange(1, 201, dtype=DT)
    K = synthetic_kernel(3.0 * k ** -alpha)
    ev = eigenvalues(K)
    assert torch.allclose(ev, 3.0 * k ** -alpha, rtol=1e-6, atol=1e-13)
    fit = fit_decay(ev)
    assert fit.exponent == pytest.approx(alpha, abs=1e-6)
    assert fit.prefactor == pytest.approx(3.0, rel=1e-5)
    assert (fit.start, fit.stop) == (1, 200)
    assert fit.r2 == pytest.approx(1.0, abs=1e-10)
    assert "k = 1..200" in str(fit)


def test_fit_range_stops_at_the_floor_and_ranges_are_honoured() -> None:
    """A power law k^-3 for k <= 60, then a floor at 1e-14 of the top (round-off-like): the default range ends
    at the last eigenvalue above rtol * lambda_1 and still recovers 3; an explicit range is used as given."""
    k = torch.arange(1, 101, dtype=DT)
    vals = torch.where(k <= 60, k ** -3.0, torch.full_like(k, 1e-14))
    fit = fit_decay(vals, rtol=1e-10)
    assert fit.stop == 60
    assert fit.exponent == pytest.approx(3.0, abs=1e-10)
    broken = torch.where(k <= 20, k ** -1.0, (20.0 ** 1.0) * k ** -2.0)  # continuous at k = 20, slope 1 then 2
    assert fit_decay(broken, start=1, stop=20).exponent == pytest.approx(1.0, abs=1e-10)
    assert fit_decay(broken, start=20, stop=100).exponent == pytest.approx(2.0, abs=1e-10)
    assert fit_decay(broken).r2 < 0.999  # a broken power law is not one line


def test_noisy_power_law_within_tolerance() -> None:
    k = torch.arange(1, 301, dtype=DT)
    noise = torch.exp(0.05 * torch.randn(300, dtype=DT, generator=torch.Generator().manual_seed(1)))
    fit = fit_decay(k ** -1.7 * noise)
    assert fit.exponent == pytest.approx(1.7, abs=0.02)


def test_lanczos_top_k_equals_dense() -> None:
    k = torch.arange(1, 301, dtype=DT)
    K = synthetic_kernel(k ** -1.5, seed=2)
    dense = eigenvalues(K, method="dense")
    top = eigenvalues(K, k=10, method="lanczos")
    assert torch.allclose(top, dense[:10], rtol=1e-9)
    auto = eigenvalues(K, k=5)  # auto: Lanczos for k < N / 10
    assert torch.allclose(auto, dense[:5], rtol=1e-9)
    km = K.numpy()
    by_matvec = eigenvalues(lambda v: km @ v, k=6, n=300)
    assert torch.allclose(by_matvec, dense[:6], rtol=1e-9)


def test_trace_and_plot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    K = synthetic_kernel(torch.arange(1, 41, dtype=DT) ** -2.0)
    assert trace(K) == pytest.approx(float(sum(1 / i ** 2 for i in range(1, 41))), rel=1e-12)
    assert trace(K) == pytest.approx(float(eigenvalues(K).sum()), rel=1e-12)
    path = tmp_path / "spectra.png"
    ax = plot_spectra({"K": eigenvalues(K), "2K": 2 * eigenvalues(K)}, path=str(path), title="test")
    assert path.stat().st_size > 1000
    assert len(ax.get_lines()) == 2
    assert math.isclose(ax.get_lines()[0].get_ydata()[0], 1.0)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="K"):
        eigenvalues(torch.zeros(3, 4, dtype=DT))
    with pytest.raises(InputError, match="method"):
        eigenvalues(torch.eye(3, dtype=DT), method="qr")
    with pytest.raises(InputError, match="k"):
        eigenvalues(torch.eye(3, dtype=DT), k=4)
    with pytest.raises(InputError, match="k"):
        eigenvalues(torch.eye(30, dtype=DT), method="lanczos")
    with pytest.raises(InputError, match="n"):
        eigenvalues(lambda v: v, k=2)
    with pytest.raises(InputError, match="eigs"):
        fit_decay(torch.tensor([1.0, 0.5]))
    with pytest.raises(InputError, match="start/stop"):
        fit_decay(torch.arange(1, 10, dtype=DT).flip(0), start=5, stop=6)
    with pytest.raises(InputError, match="non-positive"):
        fit_decay(torch.tensor([1.0, 0.5, 0.0, -1e-3]), stop=4)
