"""Stiff classics against reference solutions: error at the final time within 10x the requested rtol."""

from __future__ import annotations

import pytest
import torch

import pysciml as ps
from pysciml import problems


def weighted_error(u: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float) -> float:
    """max_i |u_i - ref_i| / (atol + rtol |ref_i|): the error in units of the requested tolerance."""
    return float(((u - ref).abs() / (atol + rtol * ref.abs())).max())


STIFF_ALGS = [ps.Rodas5P(), ps.Rodas4(), ps.KenCarp4()]  # ROS3P is fixed-step only (its estimator)


def _check(prob, name, t1, alg, rtol, atol, **ref_params):
    sol = ps.solve(prob, alg, rtol=rtol, atol=atol, saveat=[t1], maxiters=200_000)
    assert sol.retcode == ps.ReturnCode.Success, sol.message
    ref = problems.reference(name, t1, **ref_params)
    err = weighted_error(sol.u[-1], ref, rtol, atol)
    assert err <= 10, (alg.name, rtol, err, sol.stats)
    return sol


def sol_conserves(prob, alg, rtol) -> bool:
    """ROBER conserves y1 + y2 + y3 = 1; every method here preserves linear invariants up to round-off."""
    sol = ps.solve(prob, alg, rtol=rtol, atol=rtol * 1e-4, saveat=prob.tspan[1] / 20)
    return bool((sol.u.sum(dim=-1) - 1.0).abs().max() < 1e-10)


@pytest.mark.parametrize("rtol", [1e-6, 1e-8])
@pytest.mark.parametrize("alg", STIFF_ALGS, ids=lambda a: a.name)
def test_rober_1e5(alg, rtol):
    prob = problems.rober((0.0, 1e5))
    _check(prob, "rober", 1e5, alg, rtol, atol=rtol * 1e-4)
    assert sol_conserves(prob, alg, rtol)


def test_rober_1e11_stress():
    prob = problems.rober((0.0, 1e11))
    _check(prob, "rober", 1e11, ps.Rodas5P(), 1e-6, atol=1e-14)


@pytest.mark.parametrize("rtol", [1e-6, 1e-8])
@pytest.mark.parametrize("alg", STIFF_ALGS, ids=lambda a: a.name)
def test_vdp_mu_1e6(alg, rtol):
    prob = problems.van_der_pol(mu=1e6)
    _check(prob, "van_der_pol", 6.3, alg, rtol, atol=rtol, mu=1e6)


@pytest.mark.parametrize("rtol", [1e-6, 1e-8])
@pytest.mark.parametrize("alg", STIFF_ALGS, ids=lambda a: a.name)
def test_hires(alg, rtol):
    prob = problems.hires()
    _check(prob, "hires", 321.8122, alg, rtol, atol=rtol * 1e-4)
