"""Numerical failure: a retcode with t, dt and advice (throw=True raises instead); never silent."""

from __future__ import annotations

import pytest
import torch

import pysciml as ps


def blowup():
    """u' = u^2, u(0) = 1: u = 1/(1 - t) blows up at t = 1."""
    return ps.ODEProblem(lambda t, u, p: u**2, torch.ones(1, dtype=torch.float64), (0.0, 2.0))


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()], ids=lambda a: a.name)
def test_blowup_reports_where(alg):
    sol = ps.solve(blowup(), alg, rtol=1e-6, atol=1e-8)
    assert sol.retcode in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable)
    assert not sol.success
    tfail = float(sol.message.split("at t=")[1].split()[0])
    assert abs(tfail - 1.0) < 1e-3
    assert "dt=" in sol.message
    assert float(sol.t[-1]) < 1.001 and bool(torch.isfinite(sol.u).all())


def test_stiff_problem_with_explicit_method_says_try_stiff_solver():
    A = torch.tensor([[-1e5, 0.0], [0.0, -1.0]], dtype=torch.float64)
    prob = ps.ODEProblem(lambda t, u, p: A @ u, torch.ones(2, dtype=torch.float64), (0.0, 10.0))
    sol = ps.solve(prob, ps.Tsit5(), maxiters=500)
    assert sol.retcode == ps.ReturnCode.MaxIters
    assert "looks stiff" in sol.message and "Rodas5P()" in sol.message
    ok = ps.solve(prob, ps.Rodas5P())
    assert ok.retcode == ps.ReturnCode.Success and ok.stats.naccept < 100


def test_throw_raises_solver_error():
    with pytest.raises(ps.SolverError, match="at t=") as info:
        ps.solve(blowup(), ps.Tsit5(), throw=True)
    assert info.value.retcode in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable)


def test_fixed_step_newton_failure_is_convergence_failure():
    """Implicit Euler-like stage on u' = u^3 - ... with a huge fixed step: Newton diverges -> ConvergenceFailure."""
    prob = ps.ODEProblem(lambda t, u, p: 50 * u**3, torch.ones(1, dtype=torch.float64), (0.0, 1.0))
    sol = ps.solve(prob, ps.KenCarp4(), adaptive=False, dt=0.5)
    assert sol.retcode in (ps.ReturnCode.ConvergenceFailure, ps.ReturnCode.Unstable)
    assert "at t=0" in sol.message


def test_newton_failure_rejects_and_shrinks_dt():
    """The adaptive run of the same problem up to just before the blow-up t = 0.01 succeeds, and Newton failures
    show up as rejected steps, never as accepted garbage."""
    prob = ps.ODEProblem(lambda t, u, p: 50 * u**3, torch.ones(1, dtype=torch.float64), (0.0, 0.0099))
    sol = ps.solve(prob, ps.KenCarp4(), rtol=1e-8, atol=1e-10, dt=0.005)
    assert sol.retcode == ps.ReturnCode.Success
    exact = (1 - 100 * 0.0099) ** -0.5
    assert abs(float(sol.u[-1, 0]) - exact) / exact < 1e-5
    assert sol.stats.nreject >= 1
