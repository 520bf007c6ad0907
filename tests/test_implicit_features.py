"""Implicit-method machinery: Jacobian sources, mass matrices (DAE), Newton-Krylov, linear implicit parts."""

from __future__ import annotations

import warnings

import pytest
import torch

import pysciml as ps
from pysciml import problems
from pysciml.engine.linsolve import gmres
from pysciml.engine.rhs import RHS


def test_jacobian_autodiff_fd_and_analytic_agree():
    prob = problems.rober((0.0, 1.0))
    u = torch.tensor([[0.9, 2e-5, 0.1]], dtype=torch.float64)
    t = torch.zeros(1, dtype=torch.float64)
    stats = ps.Stats()
    analytic = RHS(prob.f, prob.f_takes_p, prob, stats, jac=prob.jac).jac(t, u)
    ad = RHS(prob.f, prob.f_takes_p, prob, stats, autodiff=True).jac(t, u)
    fd = RHS(prob.f, prob.f_takes_p, prob, stats, autodiff=False).jac(t, u)
    torch.testing.assert_close(ad, analytic, rtol=1e-13, atol=1e-10)
    torch.testing.assert_close(fd, analytic, rtol=1e-3, atol=1e-3)  # forward differences: O(sqrt(eps))


@pytest.mark.parametrize("autodiff", [True, False])
def test_solution_independent_of_jacobian_source(autodiff):
    prob = problems.rober((0.0, 1e3))
    ref = ps.solve(prob, ps.Rodas5P(), rtol=1e-8, atol=1e-12, saveat=[1e3])
    nojac = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
    sol = ps.solve(nojac, ps.Rodas5P(autodiff=autodiff), rtol=1e-8, atol=1e-12, saveat=[1e3])
    torch.testing.assert_close(sol.u, ref.u, rtol=1e-6, atol=1e-12)
    assert sol.stats.njac > 0


def test_non_functional_f_falls_back_to_finite_differences_with_a_warning():
    def f(t, u, p):  # a detour through NumPy breaks torch.func (no storage behind its tensors)
        return -50.0 * torch.as_tensor(u.detach().numpy()) + 0.0 * u

    prob = ps.ODEProblem(f, torch.ones(2, dtype=torch.float64), (0.0, 1.0))
    with pytest.warns(RuntimeWarning, match="finite-difference Jacobians"):
        sol = ps.solve(prob, ps.Rodas5P(), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(sol.u[-1], torch.full((2,), torch.exp(torch.tensor(-50.0)).item(),
                                                     dtype=torch.float64), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("alg", [ps.Rodas5P(), ps.Rodas4(), ps.Rosenbrock23()], ids=lambda a: a.name)
def test_rober_as_dae_with_singular_mass_matrix(alg):
    """ROBER with the conservation law as an algebraic equation: M = diag(1, 1, 0)."""

    def f(t, u, p):
        k1, k2, k3 = 0.04, 3e7, 1e4
        y1, y2, y3 = u
        return torch.stack((-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2**2, y1 + y2 + y3 - 1.0))

    M = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    prob = ps.ODEProblem(f, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), (0.0, 1e5), mass_matrix=M)
    sol = ps.solve(prob, alg, rtol=1e-6, atol=1e-10, saveat=[1e5])
    assert sol.retcode, sol.message
    ref = problems.reference("rober", 1e5)
    err = ((sol.u[-1] - ref).abs() / (1e-10 + 1e-6 * ref.abs())).max()
    assert err < 10 if not isinstance(alg, ps.Rosenbrock23) else err < 100


def test_gmres_matches_direct_solve():
    g = torch.Generator().manual_seed(0)
    A = torch.eye(20, dtype=torch.float64) * 3 + 0.3 * torch.randn(4, 20, 20, generator=g, dtype=torch.float64)
    b = torch.randn(4, 20, generator=g, dtype=torch.float64)
    x, ok = gmres(lambda v: (A @ v[:, :, None])[:, :, 0], b, rtol=1e-12, restart=20, maxiter=5)
    assert bool(ok.all())
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-10)


@pytest.mark.heavy
@pytest.mark.parametrize("alg", [ps.Rodas5P(linsolve=ps.GMRES()), ps.KenCarp4(linsolve=ps.GMRES())],
                         ids=lambda a: a.name)
def test_newton_krylov_matches_dense(alg):
    prob = problems.brusselator_1d(N=16, tspan=(0.0, 1.0))
    nojac = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
    dense = ps.solve(nojac, type(alg)(), rtol=1e-7, atol=1e-9, saveat=[1.0])
    krylov = ps.solve(nojac, alg, rtol=1e-7, atol=1e-9, saveat=[1.0])
    assert krylov.retcode and krylov.stats.njac == 0
    torch.testing.assert_close(krylov.u, dense.u, rtol=1e-6, atol=1e-7)


def test_linear_implicit_part_factors_once_with_fixed_steps():
    prob = problems.brusselator_1d(N=16, tspan=(0.0, 1.0), split=True)
    sol = ps.solve(prob, ps.KenCarp4(), adaptive=False, dt=0.01)
    assert sol.retcode
    assert sol.stats.njac == 1 and sol.stats.nlu == 1 and sol.stats.nnonliniter == 0
    ref = ps.solve(problems.brusselator_1d(N=16, tspan=(0.0, 1.0)), ps.Rodas5P(), rtol=1e-10, atol=1e-12,
                   saveat=[1.0])
    torch.testing.assert_close(sol.u[-1], ref.u[-1], rtol=1e-6, atol=1e-6)


def test_split_brusselator_imex_matches_unsplit():
    split = problems.brusselator_1d(N=32, split=True)
    full = problems.brusselator_1d(N=32)
    a = ps.solve(split, ps.KenCarp4(), rtol=1e-8, atol=1e-10, saveat=[10.0])
    b = ps.solve(full, ps.Rodas5P(), rtol=1e-8, atol=1e-10, saveat=[10.0])
    assert a.retcode and b.retcode
    torch.testing.assert_close(a.u, b.u, rtol=1e-5, atol=1e-6)
    ref = problems.reference("brusselator_1d", 10.0, N=32)
    torch.testing.assert_close(b.u[-1], ref, rtol=1e-6, atol=1e-7)


def test_no_warnings_on_plain_stiff_solve():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ps.solve(problems.rober((0.0, 10.0)), ps.Rodas5P())


def test_sparse_linear_implicit_part():
    dense = problems.brusselator_1d(N=16, tspan=(0.0, 1.0), split=True)
    sparse = ps.SplitODEProblem(dense.linear_operator.to_sparse(), dense.f_explicit, dense.u0, dense.tspan)
    a = ps.solve(dense, ps.KenCarp4(), rtol=1e-8, atol=1e-10, saveat=[1.0])
    b = ps.solve(sparse, ps.KenCarp4(), rtol=1e-8, atol=1e-10, saveat=[1.0])
    c = ps.solve(sparse, ps.KenCarp4(linsolve=ps.GMRES()), rtol=1e-8, atol=1e-10, saveat=[1.0])
    torch.testing.assert_close(b.u, a.u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c.u, a.u, rtol=1e-7, atol=1e-8)


def test_matrix_free_newton_in_float32_uses_a_reachable_gmres_tolerance():
    """GMRES's default rtol (1e-10) is below float32's resolution; the solver raises it to 100 eps so a float32
    matrix-free solve converges instead of rejecting every step, and agrees with float64 to float32 accuracy."""
    def run(dtype):
        L = torch.tensor([[-50.0, 10.0], [0.0, -80.0]], dtype=dtype)
        prob = ps.SplitODEProblem(lambda t, u: L @ u, lambda t, u: 0.5 * torch.sin(u),
                                  torch.tensor([1.0, -0.5], dtype=dtype), (0.0, 1.0))
        return ps.solve(prob, ps.KenCarp4(linsolve=ps.GMRES()), rtol=1e-4, atol=1e-6)

    s32, s64 = run(torch.float32), run(torch.float64)
    assert s32.retcode is ps.ReturnCode.Success and s32.u.dtype == torch.float32
    assert s32.stats.nreject <= s64.stats.nreject + 2
    torch.testing.assert_close(s32.u[-1].double(), s64.u[-1], rtol=1e-4, atol=1e-5)
