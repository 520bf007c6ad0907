"""Fully implicit RK with sparse factorisation (``linsolve=SparseLU()``): the sparse path gives the dense path's
solution, steps and counters (2-D Brusselator, a banded 1-D problem by colouring, batched trajectories), the ROBER
DAE, discrete-adjoint gradients against finite differences, and the complex SuperLU solve's backward pass."""

from __future__ import annotations

import pytest
import torch
from helpers import periodic_tridiagonal, rober_dae

import pysciml as ps
from pysciml import problems
from pysciml.engine.linsolve_sparse import WAssembly, factor_solve, superlu
from pysciml.engine.sparsity import Structure
from pysciml.errors import InputError
from pysciml.problems import brusselator_2d

pytest.importorskip("scipy")
pytest.importorskip("networkx")

F64 = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)

COUNTERS = ("nf", "njac", "nlu", "nsolve", "naccept", "nreject", "nnonliniter", "nnonlinconvfail")


def assert_same_run(sparse: ps.ODESolution, dense: ps.ODESolution, atol: float) -> None:
    """Same retcode, same counters (same steps, Jacobians, factorizations, solves), same answer to ``atol``."""
    assert sparse.retcode == dense.retcode == ps.ReturnCode.Success, sparse.message
    for name in COUNTERS:
        assert getattr(sparse.stats, name) == getattr(dense.stats, name), name
    err = float((sparse.u[-1] - dense.u[-1]).abs().max())
    assert err <= atol, err


def banded_problem(n: int = 40, bw: int = 2) -> ps.ODEProblem:
    """A stiff nonlinear 1-D problem with a banded Jacobian (half-bandwidth ``bw``), pattern given as a mask."""
    w = torch.linspace(0.5, 1.0, bw + 1, dtype=F64)
    w = torch.cat([w, w[:-1].flip(0)])
    w[bw] = -6.0  # symmetric, diagonally dominant: eigenvalues of the linear part in 50 x [-9, -3]

    def f(t, u):
        z = u.new_zeros(bw)
        padded = torch.cat([z, u, z])
        return 50.0 * sum(w[k] * padded[k:k + n] for k in range(2 * bw + 1)) - u**3 + torch.cos(t)

    mask = torch.zeros(n, n, dtype=torch.bool)
    for o in range(-bw, bw + 1):
        mask |= torch.diag(torch.ones(n - abs(o), dtype=torch.bool), o)
    return ps.ODEProblem(f, torch.linspace(-1.0, 1.0, n, dtype=F64), (0.0, 1.0), jac_prototype=mask)


def test_brusselator_2d_sparse_equals_dense():
    """RadauIIA5 on the N = 12 Brusselator (288 states, analytic sparse jac) across the forcing's switch-on."""
    prob = brusselator_2d(N=12, tspan=(1.0, 1.2))
    kw = dict(rtol=1e-6, atol=1e-8, tstops=[1.1])
    dense = ps.solve(prob, ps.RadauIIA5(), **kw)
    sparse = ps.solve(prob, ps.RadauIIA5(linsolve=ps.SparseLU()), **kw)
    assert_same_run(sparse, dense, 1e-12 * float(dense.u[-1].abs().max()))  # measured 6.4e-15 (max |u| 2.0)


@pytest.mark.exhaustive  # ~8 s on the shared machine (the dense N = 16 solve); the N = 12 case runs by default
@pytest.mark.parametrize("alg", [ps.RadauIIA5, ps.RadauIIA3], ids=lambda a: a.__name__)
def test_brusselator_2d_n16_sparse_equals_dense(alg):
    prob = brusselator_2d(N=16, tspan=(1.0, 1.15))
    kw = dict(rtol=1e-5, atol=1e-7, tstops=[1.1])
    dense = ps.solve(prob, alg(), **kw)
    sparse = ps.solve(prob, alg(linsolve=ps.SparseLU()), **kw)
    assert_same_run(sparse, dense, 1e-12 * float(dense.u[-1].abs().max()))


@pytest.mark.parametrize(("alg", "kw"), [
    (ps.RadauIIA5(), dict(rtol=1e-6, atol=1e-8)),
    (ps.RadauIIA3(), dict(rtol=1e-5, atol=1e-7)),
    (ps.GaussLegendre6(), dict(adaptive=False, dt=0.01, rtol=1e-8, atol=1e-8)),
    (ps.GaussLegendre4(), dict(adaptive=False, dt=0.01, rtol=1e-8, atol=1e-8)),
], ids=["RadauIIA5", "RadauIIA3", "GaussLegendre6", "GaussLegendre4"])
def test_banded_colouring_sparse_equals_dense(alg, kw):
    """The Jacobian by colouring (5 JVPs for the pentadiagonal pattern) on both paths' sparse side; every method
    of the family (one real block, one complex pair, or both)."""
    prob = banded_problem().remake(tspan=(0.0, 0.1))
    dense = ps.solve(prob, alg, **kw)
    sparse = ps.solve(prob, type(alg)(linsolve=ps.SparseLU()), **kw)
    assert_same_run(sparse, dense, 1e-11)


def test_batched_trajectories_sparse_equals_dense():
    """Per-trajectory steps, Jacobian refreshes and factorizations: rows of ``J``'s values replaced by mask."""
    n = 16
    mask = periodic_tridiagonal(n)

    def f(t, u):
        return 40.0 * (torch.roll(u, 1, -1) - 2 * u + torch.roll(u, -1, -1)) - u**3

    u0 = torch.rand(3, n, dtype=F64, generator=torch.Generator().manual_seed(0)) * torch.tensor([[1.0], [2.0], [3.0]],
                                                                                                 dtype=F64)
    prob = ps.ODEProblem(f, u0, (0.0, 0.5), batched=True, jac_prototype=mask)
    kw = dict(rtol=1e-7, atol=1e-9)
    dense = ps.solve(prob, ps.RadauIIA5(), **kw)
    sparse = ps.solve(prob, ps.RadauIIA5(linsolve=ps.SparseLU()), **kw)
    assert_same_run(sparse, dense, 1e-11)


def test_rober_dae_with_sparse_lu():
    """Robertson as an index-1 DAE (M = diag(1, 1, 0)): the mass matrix's pattern joins each block's."""
    rtol = 1e-6
    prob = rober_dae(jac_prototype=torch.ones(3, 3, dtype=torch.bool))
    kw = dict(rtol=rtol, atol=rtol * 1e-4, saveat=[1e4, 1e5])
    dense = ps.solve(prob, ps.RadauIIA5(), **kw)
    sparse = ps.solve(prob, ps.RadauIIA5(linsolve=ps.SparseLU()), **kw)
    assert_same_run(sparse, dense, 1e-13)
    ref = problems.reference("rober", 1e5)
    assert float(((sparse.u[-1] - ref).abs() / (rtol * 1e-4 + rtol * ref.abs())).max()) <= 0.01  # measured 6e-4
    assert float((sparse.u.sum(dim=-1) - 1).abs().max()) <= 1e-12


def test_gradient_through_sparse_radau_matches_finite_differences():
    """Discrete adjoint through RadauIIA5 + SparseLU: the stage correction solves with the sparse ``K``."""
    n = 6
    mask = periodic_tridiagonal(n)

    def f(t, u, p):
        return p[0] * (torch.roll(u, 1) - 2 * u + torch.roll(u, -1)) - p[1] * u**3

    def loss(p, linsolve):
        prob = ps.ODEProblem(f, torch.linspace(0.1, 1, n, dtype=F64), (0.0, 0.1), p, jac_prototype=mask)
        sol = ps.solve(prob, ps.RadauIIA5(linsolve=linsolve), rtol=1e-7, atol=1e-9, sensealg=ps.DiscreteAdjoint())
        return (sol.u[-1] ** 2).sum()

    p = torch.tensor([20.0, 1.0], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(loss(p, ps.SparseLU()), p)
    (g_dense,) = torch.autograd.grad(loss(p, ps.DenseLU()), p)
    v, h = torch.tensor([0.6, -0.8], dtype=F64), 1e-6  # one central difference along a direction
    with torch.no_grad():
        fd = (loss(p + h * v, ps.SparseLU()) - loss(p - h * v, ps.SparseLU())) / (2 * h)
    assert torch.allclose(g, g_dense, rtol=1e-10, atol=0.0), (g, g_dense)
    assert abs(float(g @ v - fd)) <= 1e-6 * float(g.abs().max()), (g @ v, fd)


def test_complex_sparse_solve_backward_is_the_conjugate_transpose():
    """``factor_solve`` on a complex ``W`` (the shape of the complex Radau block): gradients w.r.t. ``W``'s values
    and ``b`` pass torch's gradcheck (``W^{-H}`` in the backward pass)."""
    n = 5
    rows = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3]).numpy()
    cols = torch.tensor([0, 1, 2, 3, 4, 1, 2, 3, 4]).numpy()
    w = WAssembly(Structure(n, rows, cols), None, F64, torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    jv = torch.complex(torch.randn(1, rows.size, generator=g, dtype=F64), torch.randn(1, rows.size, generator=g,
                                                                                         dtype=F64))
    data = w.values(jv, torch.tensor([4.0 - 1.5j], dtype=torch.complex128)).requires_grad_()
    b = torch.complex(torch.randn(1, n, generator=g, dtype=F64), torch.randn(1, n, generator=g, dtype=F64))
    b.requires_grad_()

    def solve(d, rhs):
        factors, ok = superlu(w, d.detach(), "MMD_AT_PLUS_A")
        assert bool(ok.all())
        return factor_solve(d, rhs, factors, w)

    assert torch.autograd.gradcheck(solve, (data, b))


def test_sparse_radau_needs_a_pattern():
    prob = ps.ODEProblem(lambda t, u: -u, torch.ones(4, dtype=F64), (0.0, 1.0))
    with pytest.raises(InputError, match="jac_prototype="):
        ps.solve(prob, ps.RadauIIA5(linsolve=ps.SparseLU()))
    assert ps.RadauIIA3(linsolve="sparselu").linsolve == ps.SparseLU()
