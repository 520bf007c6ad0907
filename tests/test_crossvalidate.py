"""crossvalidate: the native engine against an independent solver (SciPy's Radau, written here as a
user's in-house solver), Julia skipped with a note where it is missing, the table and the PNG plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pysciml as ps
from pysciml import problems
from pysciml.analysis.crossvalidate import CrossValidation, Difference, crossvalidate
from pysciml.errors import InputError
from pysciml.julia import julia_status

scipy_integrate = pytest.importorskip("scipy.integrate")

K1, K2, K3 = 0.04, 3e7, 1e4
T_END = 40.0


def rober_rhs(t: float, y: np.ndarray) -> list[float]:
    """ROBER in NumPy, independent of pysciml's implementation."""
    return [-K1 * y[0] + K3 * y[1] * y[2], K1 * y[0] - K2 * y[1] ** 2 - K3 * y[1] * y[2], K2 * y[1] ** 2]


def rober_jac(t: float, y: np.ndarray) -> list[list[float]]:
    return [[-K1, K3 * y[2], K3 * y[1]],
            [K1, -2 * K2 * y[1] - K3 * y[2], -K3 * y[1]],
            [0.0, 2 * K2 * y[1], 0.0]]


def radau(rtol: float, atol: float):
    """A user solver: ``solver(prob, saveat) -> (S, *u0.shape)``."""

    def solver(prob: ps.ODEProblem, saveat: torch.Tensor) -> torch.Tensor:
        res = scipy_integrate.solve_ivp(rober_rhs, prob.tspan, prob.u0.numpy(), method="Radau",
                                        t_eval=saveat.numpy(), rtol=rtol, atol=atol, jac=rober_jac)
        assert res.success, res.message
        return torch.from_numpy(res.y.T.copy())

    return solver


@pytest.fixture(scope="module")
def rober_cv(tmp_path_factory) -> tuple[CrossValidation, object]:
    prob = problems.rober((0.0, T_END))
    png = tmp_path_factory.mktemp("cv") / "rober.png"
    cv = crossvalidate(prob, ps.Rodas5P(), backends=("torch", "julia"),
                       solvers={"radau": radau(1e-10, 1e-14)}, saveat=T_END / 10, rtol=1e-8, atol=1e-12,
                       reference="radau", plot=png)
    return cv, png


def test_rodas5p_torch_agrees_with_scipy_radau_on_rober(rober_cv):
    cv, _ = rober_cv
    assert set(cv.solutions) == {"Rodas5P()[torch]", "radau"}
    d = cv.pairwise[("Rodas5P()[torch]", "radau")]
    assert isinstance(d, Difference)
    assert d.max_rel < 1e-5, d  # observed ~2e-8 at rtol 1e-8
    assert d.max_abs < 1e-8, d
    assert cv.errors["Rodas5P()[torch]"] == d  # the reference is the radau engine itself
    # the conservation law y1 + y2 + y3 = 1 holds in both results
    for u in cv.solutions.values():
        assert torch.allclose(u.sum(dim=1), torch.ones(11, dtype=torch.float64), atol=1e-9)
    assert cv.t.shape == (11,) and float(cv.t[-1]) == T_END


def test_missing_julia_is_skipped_with_a_note(rober_cv):
    cv, _ = rober_cv
    status = julia_status()
    if status.available:
        pytest.skip("Julia is available here: the Julia engine ran instead of being skipped")
    assert "Rodas5P()[julia]" in cv.skipped
    assert cv.skipped["Rodas5P()[julia]"] == status.reason
    assert "Rodas5P()[julia]" not in cv.solutions and not cv.failed
    assert "skipped:" in str(cv) and status.reason in str(cv)


def test_table_and_plot(rober_cv):
    cv, png = rober_cv
    text = str(cv)
    assert "Rodas5P()[torch] vs radau" in text and "errors vs radau" in text
    assert f"{cv.max_difference():.2e}" in text
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    again = cv.plot(png.with_name("again.png"))
    assert again.is_file()


def test_reference_at_the_final_time_and_a_loose_solver():
    """A reference given at the final time only; a deliberately loose user solver shows a larger error,
    so the comparison can fail when it should."""
    prob = problems.rober((0.0, T_END))
    tight = radau(1e-11, 1e-15)(prob, torch.tensor([0.0, T_END], dtype=torch.float64))[-1]
    cv = crossvalidate(prob, ps.Rodas5P(), backends=("torch",),
                       solvers={"loose": radau(1e-3, 1e-6)}, saveat=[0.0, 10.0, T_END], rtol=1e-8,
                       atol=1e-12, reference=tight)
    assert cv.reference_label.startswith("reference at t=40")
    good, bad = cv.errors["Rodas5P()[torch]"], cv.errors["loose"]
    assert good.t == T_END and good.max_rel < 1e-6
    assert bad.max_rel > 100 * good.max_rel
    assert not cv.skipped


def test_callable_reference_and_a_failed_engine():
    """Exact solution of u' = -u as a callable reference; a step budget that is too small makes a solve
    fail, which is reported with the solver's message, not raised."""
    prob = ps.ODEProblem(lambda t, u, p: -u, torch.ones(2, dtype=torch.float64), (0.0, 2.0))
    cv = crossvalidate(prob, [ps.Tsit5(), ps.BS3()], backends=("torch",), saveat=0.5, rtol=1e-9, atol=1e-12,
                       reference=lambda t: torch.exp(-t)[:, None].expand(-1, 2))
    assert set(cv.errors) == {"Tsit5()[torch]", "BS3()[torch]"}
    assert cv.errors["Tsit5()[torch]"].max_rel < 1e-7
    assert ("Tsit5()[torch]", "BS3()[torch]") in cv.pairwise

    stiff = problems.rober((0.0, 1e3))
    failed = crossvalidate(stiff, [ps.Tsit5(), ps.Rodas5P()], backends=("torch",), saveat=500.0, rtol=1e-6,
                           atol=1e-10, solve_options={"maxiters": 20})
    assert set(failed.failed) == {"Tsit5()[torch]", "Rodas5P()[torch]"}
    assert "MaxIters" in failed.failed["Tsit5()[torch]"]
    assert not failed.solutions and not failed.pairwise
    assert "failed:" in str(failed)


def test_bad_input_is_an_error():
    prob = problems.rober((0.0, 1.0))
    with pytest.raises(InputError, match="backends"):
        crossvalidate(prob, ps.Rodas5P(), backends=("cuda",))
    with pytest.raises(InputError, match=r"shape \(S, \*u0.shape\)"):
        crossvalidate(prob, [], backends=(), solvers={"bad": lambda p, t: torch.zeros(3)}, saveat=0.5)
    with pytest.raises(InputError, match="not one of the solved engines"):
        crossvalidate(prob, ps.Rodas5P(), backends=("torch",), saveat=0.5, reference="nope")
