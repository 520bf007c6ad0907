"""Sparse Jacobians (patterns, colouring, detection), SparseLU and preconditioned GMRES, the 2-D problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import count_matvecs, periodic_tridiagonal, rober_dae

import pysciml as ps
from pysciml.engine.linsolve import KrylovSolver
from pysciml.engine.linsolve_sparse import SparseLUSolver, _cpu_only
from pysciml.engine.rhs import RHS
from pysciml.engine.sparsity import as_pattern, decompress, max_row_count, seeds, structure_of
from pysciml.errors import InputError
from pysciml.problems import brusselator_2d, gray_scott_2d
from pysciml.solution import Stats

pytest.importorskip("scipy")
pytest.importorskip("networkx")

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


def banded_f(n: int, bw: int):
    """A nonlinear field whose Jacobian is banded with half-bandwidth ``bw`` (every band entry nonzero)."""
    w = torch.linspace(0.5, 1.5, 2 * bw + 1, dtype=F64)

    def f(t, u):
        z = torch.zeros(bw, dtype=u.dtype)
        padded = torch.cat([z, torch.sin(u), z])
        return sum(w[k] * padded[k:k + n] for k in range(2 * bw + 1)) * (1.0 + u**2)

    mask = torch.zeros(n, n, dtype=torch.bool)
    for o in range(-bw, bw + 1):
        mask |= torch.diag(torch.ones(n - abs(o), dtype=torch.bool), o)
    return f, mask


def random_sparse_f(n: int, density: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=F64) * (torch.rand(n, n, generator=g) < density)
    A.fill_diagonal_(1.0)

    def f(t, u):
        return A @ torch.sin(u) + 0.1 * u**3

    return f, A != 0


def compressed_jacobian(f, u, mask):
    s = structure_of(as_pattern(mask, u.numel()))
    prods = torch.func.vmap(lambda v: torch.func.jvp(lambda x: f(0.0, x), (u,), (v,))[1])(seeds(s, u.dtype, "cpu"))
    vals = decompress(prods[:, None, :], s)[0]
    J = torch.zeros(u.numel(), u.numel(), dtype=u.dtype)
    J[torch.as_tensor(s.rows), torch.as_tensor(s.cols)] = vals
    return J, s


@pytest.mark.parametrize("case", ["banded", "random"])
def test_colouring_recovers_exact_jacobian(case):
    n = 60
    f, mask = banded_f(n, 2) if case == "banded" else random_sparse_f(n, 0.06, 1)
    u = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(3))
    J, s = compressed_jacobian(f, u, mask)
    dense = torch.func.jacfwd(lambda x: f(0.0, x))(u)
    assert torch.allclose(J, dense, rtol=0, atol=1e-13 * dense.abs().max())
    lower = max_row_count(as_pattern(mask, n))
    assert lower <= s.ncolors <= 2 * lower, (s.ncolors, lower)
    if case == "banded":
        assert s.ncolors == 5  # bandwidth 5: the optimum


def test_colouring_finite_differences_through_rhs():
    n = 40
    f, mask = banded_f(n, 1)
    u0 = torch.rand(n, dtype=F64)
    prob = ps.ODEProblem(f, u0, (0.0, 1.0), jac_prototype=mask)
    stats = Stats()
    solver = SparseLUSolver(stats, None, ps.SparseLU())
    rhs = RHS(prob.f, prob.f_takes_p, prob, stats, autodiff=False)
    t, u = torch.zeros(1, dtype=F64), u0[None]
    solver.set_jacobian(rhs, t, u, rhs(t, u))
    dense = torch.func.jacfwd(lambda x: f(0.0, x))(u0)
    s = solver.jac.structure
    assert torch.allclose(solver.jvals[0], dense[s.rows, s.cols], atol=1e-6)
    assert stats.nf == 1 + s.ncolors  # f0 plus one call per colour


def test_pattern_detection_finds_true_pattern():
    n = 50
    f, mask = random_sparse_f(n, 0.08, 2)
    found = ps.sparsity_pattern(f, torch.rand(n, dtype=F64))
    assert np.array_equal(found.toarray(), mask.numpy())
    fb, maskb = banded_f(n, 2)
    assert np.array_equal(ps.sparsity_pattern(fb, torch.zeros(n, dtype=F64), chunk=7).toarray(), maskb.numpy())


def test_pattern_detection_reports_a_missed_branch():
    # d f_1 / d u_0 = u_1 where u_0 > 0.5 and 0 elsewhere: zero at probe points near u0 = 0, not at every check point
    def f(t, u):
        return torch.cat([-u[:1], torch.relu(u[:1] - 0.5) * u[1:2]])

    with pytest.raises(InputError, match="disagrees"):
        for seed in range(20):  # some seed puts the probe below 0.5 and the check point above
            ps.sparsity_pattern(f, torch.zeros(2, dtype=F64), probes=1, scale=0.3, seed=seed)


def periodic_problem(n=24, **kw):
    def f(t, u):
        return 50.0 * (torch.roll(u, 1) - 2 * u + torch.roll(u, -1)) - u**3 + torch.sin(t)

    mask = periodic_tridiagonal(n)
    return ps.ODEProblem(f, torch.linspace(0.0, 1.0, n, dtype=F64), (0.0, 1.0), jac_prototype=mask, **kw)


@pytest.mark.parametrize("alg", [ps.Rodas5P, ps.KenCarp4])
def test_sparse_and_dense_paths_agree(alg):
    prob = periodic_problem().remake(tspan=(0.0, 0.3))
    dense = ps.solve(prob, alg(), rtol=1e-8, atol=1e-10)
    sparse = ps.solve(prob, alg(linsolve=ps.SparseLU()), rtol=1e-8, atol=1e-10)
    assert sparse.retcode == ps.ReturnCode.Success
    assert sparse.stats.naccept == dense.stats.naccept
    assert torch.allclose(sparse.u[-1], dense.u[-1], rtol=0, atol=1e-10)


def test_batched_sparse_matches_dense():
    n = 20
    mask = periodic_tridiagonal(n)

    def f(t, u):
        return 30.0 * (torch.roll(u, 1, -1) - 2 * u + torch.roll(u, -1, -1)) - u**3

    u0 = torch.rand(3, n, dtype=F64, generator=torch.Generator().manual_seed(0))
    prob = ps.ODEProblem(f, u0, (0.0, 1.0), batched=True, jac_prototype=mask)
    dense = ps.solve(prob, ps.Rodas5P(), rtol=1e-8, atol=1e-10)
    sparse = ps.solve(prob, ps.Rodas5P(linsolve=ps.SparseLU()), rtol=1e-8, atol=1e-10)
    assert torch.allclose(sparse.u[-1], dense.u[-1], rtol=0, atol=1e-10)


def test_split_sparse_matrix_operator():
    n = 30
    T = (-2 * torch.eye(n) + torch.diag(torch.ones(n - 1), 1) + torch.diag(torch.ones(n - 1), -1)).to(F64) * 100
    u0 = torch.sin(torch.linspace(0, 3, n, dtype=F64))
    prob_d = ps.SplitODEProblem(T, lambda t, u: -u**3, u0, (0.0, 1.0))
    prob_s = ps.SplitODEProblem(T.to_sparse(), lambda t, u: -u**3, u0, (0.0, 1.0))
    dense = ps.solve(prob_d, ps.KenCarp4(), rtol=1e-8, atol=1e-10)
    sparse = ps.solve(prob_s, ps.KenCarp4(linsolve=ps.SparseLU()), rtol=1e-8, atol=1e-10)
    assert torch.allclose(sparse.u[-1], dense.u[-1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("make", [brusselator_2d, gray_scott_2d])
def test_problems_2d_analytic_jacobians(make):
    prob = make(N=6)
    u = prob.u0 + 0.1 * torch.rand(prob.u0.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor(1.5, dtype=F64)
    J = prob.jac(t, u).to_dense()
    assert torch.allclose(J, torch.func.jacfwd(lambda x: prob.f(t, x))(u), rtol=0, atol=1e-12)
    pattern = as_pattern(prob.jac_prototype, prob.state_size).toarray()
    assert not ((J != 0).numpy() & ~pattern).any()  # every nonzero inside the prototype
    assert int(pattern.sum(axis=1).max()) == 6  # 5-point stencil + the other species at the point


def test_brusselator_2d_sparse_lu_matches_dense():
    prob = brusselator_2d(N=16, tspan=(1.0, 1.2))  # across the forcing's switch-on at t = 1.1
    kw = dict(rtol=1e-5, atol=1e-7, tstops=[1.1])
    dense = ps.solve(prob, ps.Rodas5P(), **kw)
    sparse = ps.solve(prob, ps.Rodas5P(linsolve=ps.SparseLU()), **kw)
    scale = dense.u[-1].abs().max()
    assert sparse.retcode == ps.ReturnCode.Success
    assert sparse.stats.naccept == dense.stats.naccept
    assert (sparse.u[-1] - dense.u[-1]).abs().max() <= 1e-10 * scale


@pytest.mark.exhaustive  # ~4 s on the shared machine; the colouring path is also checked by the tests above
def test_brusselator_2d_colouring_jacobian_matches_analytic():
    prob = brusselator_2d(N=8, tspan=(1.0, 1.2))
    kw = dict(rtol=1e-5, atol=1e-7, tstops=[1.1])
    analytic = ps.solve(prob, ps.KenCarp4(linsolve=ps.SparseLU()), **kw)
    colour = ps.solve(prob.remake(jac=None), ps.KenCarp4(linsolve=ps.SparseLU()), **kw)
    assert (colour.u[-1] - analytic.u[-1]).abs().max() <= 1e-10 * analytic.u[-1].abs().max()


def _gmres_matvecs(prob, precondition):
    stats = Stats()
    rhs = RHS(prob.f, prob.f_takes_p, prob, stats, jac=prob.jac, jac_takes_p=prob.jac_takes_p)
    solver = KrylovSolver(stats, None, ps.GMRES(rtol=1e-10, restart=60, maxiter=20, precondition=precondition))
    t, u = torch.zeros(1, dtype=F64), prob.u0[None]
    solver.set_jacobian(rhs, t, u, rhs(t, u))
    solver.factor(torch.tensor([1.0 / (0.25 * 1e-2)], dtype=F64))
    count = count_matvecs(solver)
    b = torch.sin(torch.arange(prob.state_size, dtype=F64))[None]
    x, ok = solver.solve(b)
    assert bool(ok.all())
    J = torch.func.jacfwd(lambda x: prob.f(t[0], x))(prob.u0)
    W = torch.eye(prob.state_size, dtype=F64) / (0.25 * 1e-2) - J
    assert torch.allclose(W @ x[0], b[0], atol=1e-8 * b.norm())
    return count[0]


def varying_rates_problem(n=64):
    """``u' = D u_xx - k_i u`` (periodic) with rates ``k_i`` from 1 to 1e4: ``W``'s diagonal varies over four
    decades. Written as a matrix product (forward-mode JVPs of it are cheap)."""
    k = torch.logspace(0, 4, n, dtype=F64)
    eye = torch.eye(n, dtype=F64)
    A = 100.0 * (torch.roll(eye, 1, 0) - 2 * eye + torch.roll(eye, -1, 0)) - torch.diag(k)

    def f(t, u):
        return A @ u

    return ps.ODEProblem(f, torch.ones(n, dtype=F64), (0.0, 1.0), jac_prototype=A != 0)


def test_preconditioned_gmres_needs_fewer_iterations():
    # W's diagonal varies (rates over four decades): both preconditioners help, ILU most
    prob = varying_rates_problem()
    plain, jacobi, ilu = (_gmres_matvecs(prob, pre) for pre in (None, "jacobi", "ilu"))
    assert ilu < jacobi < plain, (plain, jacobi, ilu)
    # the Brusselator's diagonal is nearly constant: Jacobi is a rescaling there and saves nothing; ILU does
    bruss = brusselator_2d(N=10)
    plain_b, jacobi_b, ilu_b = (_gmres_matvecs(bruss, pre) for pre in (None, "jacobi", "ilu"))
    assert ilu_b < plain_b / 2 and jacobi_b <= plain_b, (plain_b, jacobi_b, ilu_b)


def test_preconditioned_gmres_solve_matches_dense():
    prob = varying_rates_problem(n=8).remake(tspan=(0.0, 1e-3))
    dense = ps.solve(prob, ps.Rodas5P(), rtol=1e-6, atol=1e-8)
    for pre in ("jacobi", "ilu"):
        sol = ps.solve(prob, ps.Rodas5P(linsolve=ps.GMRES(precondition=pre)), rtol=1e-6, atol=1e-8)
        assert sol.stats.naccept == dense.stats.naccept
        assert torch.allclose(sol.u[-1], dense.u[-1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("alg", [ps.Rodas5P, ps.KenCarp4])
def test_gradients_through_sparse_lu_match_finite_differences(alg):
    n = 6
    mask = periodic_tridiagonal(n)

    def f(t, u, p):
        return p[0] * (torch.roll(u, 1) - 2 * u + torch.roll(u, -1)) - p[1] * u**3

    def loss(p):
        prob = ps.ODEProblem(f, torch.linspace(0.1, 1, n, dtype=F64), (0.0, 0.2), p, jac_prototype=mask)
        sol = ps.solve(prob, alg(linsolve=ps.SparseLU()), rtol=1e-6, atol=1e-8, sensealg=ps.DiscreteAdjoint())
        return (sol.u[-1] ** 2).sum()

    p = torch.tensor([20.0, 1.0], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(loss(p), p)
    h = 1e-6
    with torch.no_grad():
        fd = torch.stack([(loss(p + h * e) - loss(p - h * e)) / (2 * h) for e in torch.eye(2, dtype=F64)])
    assert torch.allclose(g, fd, rtol=1e-4, atol=1e-7), (g, fd)


def test_singular_w_is_reported_not_solved():
    stats = Stats()
    L = torch.zeros(4, 4, dtype=F64).to_sparse()
    prob = ps.SplitODEProblem(L, lambda t, u: u, torch.ones(4, dtype=F64), (0.0, 1.0))
    rhs = RHS(prob.f_implicit, prob.f_implicit_takes_p, prob, stats, linear=prob.linear_operator)
    solver = SparseLUSolver(stats, torch.zeros(4, 4, dtype=F64), ps.SparseLU())
    t, u = torch.zeros(1, dtype=F64), torch.ones(1, 4, dtype=F64)
    solver.set_jacobian(rhs, t, u, u)
    assert not bool(solver.factor(torch.ones(1, dtype=F64)).any())


def test_bad_input():
    f = lambda t, u: -u  # noqa: E731
    u0 = torch.ones(5, dtype=F64)
    with pytest.raises(InputError, match=r"shape \(5, 5\)"):
        ps.ODEProblem(f, u0, (0.0, 1.0), jac_prototype=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(InputError, match="jac_prototype must be"):
        ps.ODEProblem(f, u0, (0.0, 1.0), jac_prototype=[[1, 0], [0, 1]])
    with pytest.raises(InputError, match="jac_prototype="):
        ps.solve(ps.ODEProblem(f, u0, (0.0, 1.0)), ps.Rodas5P(linsolve=ps.SparseLU()))
    with pytest.raises(InputError, match="precondition"):
        ps.GMRES(precondition="multigrid")
    with pytest.raises(InputError, match="permc_spec"):
        ps.SparseLU(permc_spec="metis")
    with pytest.raises(InputError, match="CPU"):
        _cpu_only(torch.empty(1, device="meta"), "SparseLU()")
    with pytest.raises(InputError, match="probes"):
        ps.sparsity_pattern(f, u0, probes=0)
    assert ps.Rodas5P(linsolve="sparselu").linsolve == ps.SparseLU()


def test_sparse_jac_structure_must_not_change():
    calls = [0]

    def jac(t, u):
        calls[0] += 1
        d = torch.diag(-torch.ones(3, dtype=F64))
        if calls[0] > 1:
            d[0, 2] = 1.0  # a new entry on the second call
        return d.to_sparse()

    prob = ps.ODEProblem(lambda t, u: -u, torch.ones(3, dtype=F64), (0.0, 1.0), jac=jac)
    stats = Stats()
    rhs = RHS(prob.f, prob.f_takes_p, prob, stats, jac=prob.jac, jac_takes_p=prob.jac_takes_p)
    solver = SparseLUSolver(stats, None, ps.SparseLU())
    t, u = torch.zeros(1, dtype=F64), torch.ones(1, 3, dtype=F64)
    solver.set_jacobian(rhs, t, u, u)
    with pytest.raises(InputError, match="structure differs"):
        solver.set_jacobian(rhs, t, u, u)


def test_sparse_lu_with_a_singular_mass_matrix():
    # ROBER as an index-1 DAE (M = diag(1, 1, 0)): the mass matrix's pattern joins W's
    prob = rober_dae(1.0, jac_prototype=torch.ones(3, 3, dtype=torch.bool))
    dense = ps.solve(prob, ps.Rodas5P(), rtol=1e-8, atol=1e-10)
    sparse = ps.solve(prob, ps.Rodas5P(linsolve=ps.SparseLU()), rtol=1e-8, atol=1e-10)
    assert sparse.stats.naccept == dense.stats.naccept
    assert torch.allclose(sparse.u[-1], dense.u[-1], rtol=0, atol=1e-11)


def test_compile_with_sparse_lu_says_why_and_solves_eagerly() -> None:
    """SuperLU runs on the host: compile=True warns naming the sparse solver (not GMRES) and gives the eager answer."""
    prob = brusselator_2d(6)
    eager = ps.solve(prob, ps.Rodas5P(linsolve=ps.SparseLU()), rtol=1e-5, atol=1e-7)
    with pytest.warns(RuntimeWarning, match="sparse linear solver"):
        compiled = ps.solve(prob, ps.Rodas5P(linsolve=ps.SparseLU()), rtol=1e-5, atol=1e-7, compile=True)
    assert compiled.retcode is ps.ReturnCode.Success
    torch.testing.assert_close(compiled.u, eager.u, rtol=0, atol=0)


@pytest.mark.parametrize("pre", ["jacobi", "ilu"])
def test_preconditioned_gmres_products_use_the_formed_jacobian(pre):
    """With a preconditioner, GMRES's products ``J v`` come from the sparse Jacobian the preconditioner forms (no
    JVP through ``f``); the solution equals the dense solve's, and gradients through it match finite differences."""
    n = 6
    mask = periodic_tridiagonal(n)

    def f(t, u, p):
        return p[0] * (torch.roll(u, 1) - 2 * u + torch.roll(u, -1)) - p[1] * u**3

    def loss(p, linsolve):
        prob = ps.ODEProblem(f, torch.linspace(0.1, 1, n, dtype=F64), (0.0, 0.2), p, jac_prototype=mask)
        sol = ps.solve(prob, ps.Rodas5P(linsolve=linsolve), rtol=1e-6, atol=1e-8, sensealg=ps.DiscreteAdjoint())
        return (sol.u[-1] ** 2).sum(), sol

    p = torch.tensor([20.0, 1.0], dtype=F64, requires_grad=True)
    value, _ = loss(p, ps.GMRES(precondition=pre))
    _, sol = loss(p.detach(), ps.GMRES(precondition=pre))
    _, dense = loss(p.detach(), ps.DenseLU())
    _, sparse = loss(p.detach(), ps.SparseLU())  # the same f calls: stages and the colouring's JVPs
    assert sol.stats.naccept == dense.stats.naccept
    torch.testing.assert_close(sol.u[-1], dense.u[-1], rtol=0.0, atol=1e-9)
    assert sol.stats.nf == sparse.stats.nf  # no GMRES product went through f
    (g,) = torch.autograd.grad(value, p)
    h = 1e-6
    with torch.no_grad():
        gm = ps.GMRES(precondition=pre)
        fd = torch.stack([(loss(p + h * e, gm)[0] - loss(p - h * e, gm)[0]) / (2 * h) for e in torch.eye(2, dtype=F64)])
    assert torch.allclose(g, fd, rtol=1e-4, atol=1e-7), (g.tolist(), fd.tolist(), (g - fd).tolist())
