"""The transistor amplifier DAE (Bari test set ``transamp``; pysciml.problems.transistor).

Default run: the problem as published (consistent initial values, the test set's own initial derivatives, the rank
of ``M``), its analytic Jacobian and time derivative, and short solves over one period of the input in which the
algebraic equations hold and RadauIIA5 and Rodas5P agree. Exhaustive: the full interval ``[0, 0.2]`` against the
published reference (each solve takes about a minute on a loaded 2-core machine: thousands of steps of an 8-state
problem).
"""

from __future__ import annotations

import pytest
import torch

import pysciml as ps
from pysciml.problems import TRANSISTOR_PARAMS, reference, transistor_amplifier
from pysciml.problems.transistor import _f, _jac, _tgrad

F64 = torch.float64
PAIRS = ((0, 1), (3, 4), (6, 7))  # the row pairs of M whose sums are the algebraic equations


def algebraic_residuals(f: torch.Tensor) -> torch.Tensor:
    """``(f_1 + f_2, f_4 + f_5, f_7 + f_8)`` over the last dimension: zero on the solution."""
    return torch.stack([f[..., i] + f[..., j] for i, j in PAIRS], dim=-1)


def test_mass_matrix_is_the_published_singular_tridiagonal_one():
    M = transistor_amplifier().mass_matrix
    assert M.shape == (8, 8) and torch.equal(M, M.T)
    assert int(torch.linalg.matrix_rank(M)) == 5  # 3 algebraic equations
    assert not bool((M == 0).all(dim=1).any())  # no zero row: the equations are row sums
    for i, j in PAIRS:
        assert torch.equal(M[i] + M[j], torch.zeros(8, dtype=F64))
    assert M[0, 1] == TRANSISTOR_PARAMS["C1"] and M[2, 2] == -TRANSISTOR_PARAMS["C2"] and M[7, 7] == -5e-6


def test_initial_values_are_consistent():
    """The algebraic equations hold at t0 to round-off, and the test set's initial derivatives (given there to
    7-9 digits, ``transamp.f``, subroutine ``init``) solve ``M u'(0) = f(0, u0)`` to their printed precision."""
    prob = transistor_amplifier()
    assert prob.u0.tolist() == [0.0, 3.0, 3.0, 6.0, 3.0, 3.0, 6.0, 0.0]
    f0 = _f(torch.tensor(0.0, dtype=F64), prob.u0)
    assert float(algebraic_residuals(f0).abs().max()) <= 1e-18  # f ~ 3e-4, eps * f ~ 7e-20
    r3 = 9000.0
    yprime = torch.tensor([51.338775, 51.338775, -3.0 / (2e-6 * r3), -24.9757667, -24.9757667, -3.0 / (4e-6 * r3),
                           -10.00564453, -10.00564453], dtype=F64)
    residual = prob.mass_matrix @ yprime - f0
    assert float(residual.abs().max()) < 1e-6 * float(f0.abs().max())


def test_jacobian_and_time_derivative_match_autograd():
    t = torch.tensor(0.0123, dtype=F64)
    for u in (torch.tensor([0.01, 3.1, 2.9, 5.0, 2.8, 2.7, 4.5, 1.0], dtype=F64), transistor_amplifier().u0):
        J = torch.autograd.functional.jacobian(lambda x: _f(t, x), u)
        assert torch.allclose(_jac(t, u), J, rtol=1e-13, atol=1e-18)
        ft = torch.autograd.functional.jacobian(lambda s, x=u: _f(s, x), t)
        assert torch.allclose(_tgrad(t, u), ft, rtol=1e-13, atol=1e-18)
    batch = torch.stack((transistor_amplifier().u0, torch.full((8,), 2.0, dtype=F64)))
    assert torch.allclose(_jac(t, batch)[1], _jac(t, batch[1]), rtol=1e-15, atol=0.0)


@pytest.fixture(scope="module")
def short_solves():
    """RadauIIA5 and Rodas5P over one period of the input, ``[0, 0.01]``, at rtol 1e-7."""
    prob = transistor_amplifier((0.0, 0.01))
    saveat = torch.linspace(0.0, 0.01, 11, dtype=F64)
    return {name: ps.solve(prob, alg, rtol=1e-7, atol=1e-9, saveat=saveat)
            for name, alg in (("RadauIIA5", ps.RadauIIA5()), ("Rodas5P", ps.Rodas5P()))}


def test_short_solves_keep_the_algebraic_equations_and_agree(short_solves):
    for name, sol in short_solves.items():
        assert sol.success, sol.message
        f = _f(sol.t, sol.u)
        scale = float(f.abs().max())
        assert float(algebraic_residuals(f).abs().max()) < 1e-6 * scale, name
    a, b = short_solves["RadauIIA5"].u, short_solves["Rodas5P"].u
    assert float(((a - b).abs() / (1e-9 + 1e-7 * b.abs())).max()) < 1.0  # within the tolerance of each other


# Measured 2026-12-01 (atol = 1e-2 rtol), error in units of atol + rtol |ref| against the published reference:
# RadauIIA5 rtol 1e-6: 0.02 (2115 steps), 1e-8: 0.05 (6629); Rodas5P 1e-6: 0.02 (4747), 1e-8: 0.06 (14115).
@pytest.mark.exhaustive
@pytest.mark.parametrize("alg", [ps.RadauIIA5(), ps.Rodas5P()], ids=repr)
@pytest.mark.parametrize("rtol", [1e-6, 1e-8])
def test_full_interval_against_the_published_reference(alg, rtol):
    prob = transistor_amplifier()
    atol = 1e-2 * rtol
    sol = ps.solve(prob, alg, rtol=rtol, atol=atol, saveat=[0.2], dense=False)
    assert sol.success, sol.message
    ref = reference("transistor_amplifier", 0.2)
    assert float(((sol.u[-1] - ref).abs() / (atol + rtol * ref.abs())).max()) < 1.0


@pytest.mark.heavy
@pytest.mark.parametrize("cls", [ps.FBDF, ps.QNDF])
def test_bdf_on_the_transistor_amplifier(cls):
    """The multistep methods start on this singular ``M`` without zero rows (the constraints are row sums: the
    start slope rotates them out of ``M``'s SVD) and pass the input's switching by lowering the order after
    repeated error-test failures. Measured at rtol 1e-6, atol 1e-8 (2026-12-02, this 2-core Xeon): error /
    tolerance 1.04 (FBDF, 3,968 steps) and 0.34 (QNDF, 3,723 steps); with torch's unvectorised kernels
    (``ATEN_CPU_CAPABILITY=default``) 0.29 and 0.07. The bound is 3 tolerance units, as the BDF tests elsewhere allow
    for a multistep method's global error (RadauIIA5 and Rodas5P stay under 1: test above). Before the consistent
    start's least squares were made deterministic (``pysciml._lstsq``) the same run gave anything from 0.8 to 3.3 for
    FBDF: the test below keeps that fixed."""
    prob = transistor_amplifier()
    sol = ps.solve(prob, cls(), rtol=1e-6, atol=1e-8, saveat=[0.2], dense=False)
    assert sol.success, sol.message
    ref = reference("transistor_amplifier", 0.2)
    assert float(((sol.u[-1] - ref).abs() / (1e-8 + 1e-6 * ref.abs())).max()) < 3.0


def test_bdf_dae_solves_repeat_to_the_bit():
    """The first step of a DAE solve comes from the consistent start slope (least squares on the rotated system);
    LAPACK's pivoted-QR driver rounded that differently with the operands' alignment, so two identical solves in
    one process took different step sequences. Ten identical 100-step solves, with allocations of varying sizes
    between them, must now return the same times and values to the bit."""
    prob = transistor_amplifier((0.0, 0.005))
    runs, ballast = [], []
    for k in range(10):
        ballast.append(torch.empty(k * 7 + 1, dtype=F64))  # moves the next allocations' alignment
        sol = ps.solve(prob, ps.FBDF(), rtol=1e-6, atol=1e-8, dense=False)
        assert sol.success, sol.message
        runs.append(sol)
    assert len(runs[0].t) > 50
    for sol in runs[1:]:
        assert torch.equal(sol.t, runs[0].t) and torch.equal(sol.u, runs[0].u)
