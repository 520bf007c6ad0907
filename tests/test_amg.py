"""GMRES(precondition="amg"): pyamg's Ruge-Stuben V-cycle as GMRES's preconditioner (engine/amg.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers import count_matvecs

import pysciml as ps
from pysciml.engine.linsolve import KrylovSolver
from pysciml.engine.rhs import RHS
from pysciml.errors import InputError
from pysciml.problems import brusselator_2d
from pysciml.solution import Stats

pytest.importorskip("scipy")
pytest.importorskip("networkx")
pyamg = pytest.importorskip("pyamg")

F64 = torch.float64
AMG = ps.GMRES(precondition="amg")

pytestmark = pytest.mark.usefixtures("one_thread")


def heat_2d(N: int, p: torch.Tensor, t1: float = 0.02) -> ps.ODEProblem:
    """``u' = p0 N^2 Lap u - p1 u^3`` on an ``N x N`` periodic grid (``N^2`` states), with its 5-point pattern."""
    idx = torch.arange(N * N).reshape(N, N)
    mask = torch.zeros(N * N, N * N, dtype=torch.bool)
    for s in (idx, *(torch.roll(idx, k, d) for k in (1, -1) for d in (0, 1))):
        mask[idx.reshape(-1), s.reshape(-1)] = True

    def f(t, u, p):
        g = u.reshape(*u.shape[:-1], N, N)
        lap = sum(torch.roll(g, k, d) for k in (1, -1) for d in (-1, -2)) - 4 * g
        return p[0] * N * N * lap.reshape(u.shape) - p[1] * u**3

    xs = torch.linspace(0, 1, N, dtype=F64)
    u0 = (torch.sin(2 * torch.pi * xs)[:, None] * torch.cos(2 * torch.pi * xs)[None] + 1.0).reshape(-1)
    return ps.ODEProblem(f, u0, (0.0, t1), p, jac_prototype=mask)


def _rhs(prob: ps.ODEProblem) -> RHS:
    """The problem's right-hand side in engine form, with its analytic sparse ``jac``."""
    return RHS(prob.f, prob.f_takes_p, prob, Stats(), jac=prob.jac, jac_takes_p=prob.jac_takes_p)


def _matvecs_per_solve(prob: ps.ODEProblem, pre: str, c: float = 1e-2, solves: int = 3) -> float:
    """Mean GMRES products per solve of ``(I/c - J) x = b`` at ``u0`` (each solve's count includes GMRES's
    residual checks, a fixed 2-3 products)."""
    rhs = _rhs(prob)
    t = torch.zeros(1, dtype=F64)
    u = prob.u0[None]
    solver = KrylovSolver(Stats(), None, ps.GMRES(precondition=pre))
    solver.set_jacobian(rhs, t, u, rhs(t, u))
    solver.factor(torch.full((1,), 1.0 / c, dtype=F64))
    count = count_matvecs(solver)
    g = torch.Generator().manual_seed(0)
    for _ in range(solves):
        x, ok = solver.solve(torch.randn(1, prob.state_size, generator=g, dtype=F64))
        assert bool(ok.all())
    return count[0] / solves


def test_v_cycle_is_pyamgs():
    """The lean V-cycle (engine/amg.py) gives pyamg's own V-cycle, for W and for W^T's hierarchy."""
    import scipy.sparse as sp

    from pysciml.engine.amg import AMGFactor

    prob = brusselator_2d(N=16)
    t = torch.zeros(1, dtype=F64)
    J = prob.jac(t[0], prob.u0).to_dense().numpy()
    W = sp.csr_matrix(np.eye(J.shape[0]) / 1e-2 - J)
    fac = AMGFactor(W)
    assert len(fac._cycles["N"].levels) >= 3  # a real hierarchy, not one coarse solve
    b = np.random.default_rng(0).standard_normal((W.shape[0], 2))
    ref = pyamg.ruge_stuben_solver(W).aspreconditioner(cycle="V")
    ref_t = pyamg.ruge_stuben_solver(sp.csr_matrix(W.T)).aspreconditioner(cycle="V")
    np.testing.assert_allclose(fac.solve(b), np.stack([ref @ c for c in b.T], axis=1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fac.solve(b[:, 0], "T"), ref_t @ b[:, 0], rtol=1e-12, atol=1e-14)


def test_iterations_stay_flat_as_the_grid_is_refined():
    """Brusselator W = I/c - J (c = 1e-2, near FBDF's mean step at rtol 1e-4): AMG's GMRES products per solve
    stay within a factor 1.5 from N = 16 to N = 64 (4x, 16x the states; 9 at each, measured), while ILU's grow
    (25 at N = 16, 46 at N = 32, measured)."""
    amg = [_matvecs_per_solve(brusselator_2d(N=N), "amg") for N in (16, 32, 64)]
    ilu = [_matvecs_per_solve(brusselator_2d(N=N), "ilu") for N in (16, 32)]
    assert max(amg) <= 1.5 * min(amg), amg
    assert amg[1] < ilu[1] / 2 and ilu[1] > 1.5 * ilu[0], (amg, ilu)


@pytest.mark.parametrize("alg", [ps.FBDF, ps.Rodas5P])
def test_amg_matches_sparse_lu_on_the_brusselator(alg):
    prob = brusselator_2d(N=12, tspan=(0.0, 0.01))
    lu = ps.solve(prob, alg(linsolve=ps.SparseLU()), rtol=1e-4, atol=1e-6)
    sol = ps.solve(prob, alg(linsolve=AMG), rtol=1e-4, atol=1e-6)
    assert sol.retcode is ps.ReturnCode.Success
    assert sol.stats.naccept == lu.stats.naccept
    torch.testing.assert_close(sol.u[-1], lu.u[-1], rtol=0.0, atol=1e-8)


def test_batched_amg_matches_sparse_lu():
    """Two trajectories (different initial states): one hierarchy each, as ILU's factors."""
    p = torch.tensor([0.05, 1.0], dtype=F64)
    prob = heat_2d(8, p)
    u0 = torch.stack([prob.u0, 0.5 * prob.u0.flip(0)])
    prob = ps.ODEProblem(prob.f, u0, prob.tspan, p, batched=True, jac_prototype=prob.jac_prototype)
    lu = ps.solve(prob, ps.Rodas5P(linsolve=ps.SparseLU()), rtol=1e-6, atol=1e-8)
    sol = ps.solve(prob, ps.Rodas5P(linsolve=AMG), rtol=1e-6, atol=1e-8)
    assert sol.retcode is ps.ReturnCode.Success
    torch.testing.assert_close(sol.u[-1], lu.u[-1], rtol=0.0, atol=1e-9)


def test_gradient_through_amg_gmres_matches_finite_differences(monkeypatch):
    """The implicit GMRES gradient (one W^T solve per solve, preconditioned by W^T's own V-cycle) against central
    differences, on a 2-D heat equation with 64 states (a 3-level hierarchy)."""
    from pysciml.engine.amg import AMGFactor

    transposed = [0]
    solve = AMGFactor.solve

    def counted(self, b, trans="N"):
        transposed[0] += trans != "N"
        return solve(self, b, trans)

    monkeypatch.setattr(AMGFactor, "solve", counted)

    def loss(p):
        sol = ps.solve(heat_2d(8, p), ps.Rodas5P(linsolve=AMG), rtol=1e-7, atol=1e-9, sensealg=ps.DiscreteAdjoint())
        return (sol.u[-1] ** 2).sum()

    p = torch.tensor([0.05, 1.0], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(loss(p), p)
    assert transposed[0] > 0  # the backward's W^T solves went through the transposed V-cycle
    h = 1e-6
    with torch.no_grad():
        fd = torch.stack([(loss(p + h * e) - loss(p - h * e)) / (2 * h) for e in torch.eye(2, dtype=F64)])
    assert torch.allclose(g, fd, rtol=1e-5, atol=1e-8), (g.tolist(), fd.tolist())


def test_without_pyamg_the_error_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyamg", None)  # import pyamg now raises ImportError
    prob = brusselator_2d(N=4, tspan=(0.0, 0.01))
    with pytest.raises(InputError, match="pip install pyamg"):
        ps.solve(prob, ps.FBDF(linsolve=AMG))
    with pytest.raises(InputError, match="pip install pyamg"):
        ps.solve(prob, ps.Rodas5P(linsolve=AMG))
