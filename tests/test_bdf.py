"""FBDF and QNDF (variable-order BDF / NDF, pysciml/engine/bdf.py, bdf_flc.py, bdf_loop.py): coefficients,
observed orders, stiff references, work against SciPy's BDF, dense output, an index-1 DAE, batches, gradients,
failures, bad input.

Errors are weighted by the tolerance: ``max_i |u_i - ref_i| / (atol + rtol |ref_i|)``. A multistep method controls
the local error per step; its global error at the end of these spans is several times the tolerance (SciPy's
BDF, run alongside, lands in the same range), so the stiff cases pin the measured error in a band
(``[measured / 3, 3 x measured]``) rather than under 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fd import check_gradient
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml import problems
from pysciml.algorithms_bdf import QBDF
from pysciml.engine.bdf import NDF_KAPPA, coefficients, interpolation_matrix, rescale_matrix
from pysciml.problem import call_f

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


def weighted_error(u: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float) -> float:
    return float(((u - ref).abs() / (atol + rtol * ref.abs())).max())


# ----------------------------------------------------------------------------------------------- coefficients
def test_coefficients_match_shampine_reichelt():
    """NDF error constants kappa gamma + 1/(k+1) (Shampine & Reichelt 1997); kappa = 0 gives BDF's 1/(k+1)."""
    bdf = coefficients((0.0,) * 5)
    ndf = coefficients(NDF_KAPPA)
    assert bdf.error_const[1:6] == pytest.approx([1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6], abs=1e-15)
    assert ndf.error_const[1:5] == pytest.approx([0.315, 1 / 3 - 1.5 / 9, 0.25 - 0.0823 * 11 / 6,
                                                   0.2 - 0.0415 * 25 / 12], abs=1e-12)
    assert ndf.alpha[2] == pytest.approx((1 + 1 / 9) * 1.5)
    # the corrector in the engine's form, gamma_k d + sum_j gamma_j D[j] = h f(t_{n+1}) with D the differences at
    # t_n and d = y_{n+1} - sum_j D[j], is the BDF of order k: exact on polynomials of degree <= k
    for k in range(1, 6):
        ts = np.arange(-k - 1, 0.0)  # t_{n-k} .. t_n, spacing h = 1; t_{n+1} = 0
        for deg in range(k + 1):
            y = ts**deg
            level, D = y[::-1], []
            for _ in range(k + 1):
                D.append(level[0])
                level = level[:-1] - level[1:]
            d = 0.0**deg - sum(D)
            lhs = bdf.gamma[k] * d + sum(bdf.gamma[j] * D[j] for j in range(1, k + 1))
            assert lhs == pytest.approx(float(deg == 1), abs=1e-10)  # h y'(0) for y = t^deg


def test_rescale_and_interpolation_keep_the_polynomial():
    """Rescaling the differences re-expresses the same polynomial on the new spacing; the interpolation matrix
    evaluates it between the last two points."""
    rng = np.random.default_rng(0)
    for k in range(1, 6):
        c = rng.standard_normal(k + 1)
        p = np.polynomial.Polynomial(c)

        def diffs(h: float, p=p, k=k) -> np.ndarray:
            vals = p(-h * np.arange(k + 1))  # y_n, y_{n-1}, ... at spacing h, t_n = 0
            out = [vals]
            for _ in range(k):
                out.append(out[-1][:-1] - out[-1][1:])
            return np.array([o[0] for o in out])

        h, factor = 0.3, 1.7
        assert rescale_matrix(k, factor) @ diffs(h) == pytest.approx(diffs(factor * h), abs=1e-12)
        theta = np.linspace(0, 1, 7)
        P = interpolation_matrix(k)
        vals = np.array([sum(th**q * (P[q] @ diffs(h)) for q in range(k + 1)) for th in theta])
        assert vals == pytest.approx(p(h * (theta - 1)), abs=1e-12)  # the step runs from -h to 0


# ----------------------------------------------------------------------------------------------- orders
ORDER_GRIDS = {1: (40, 80), 2: (40, 80), 3: (80, 160), 4: (80, 160), 5: (40, 80)}


@pytest.mark.parametrize(("alg_cls", "k"), [(ps.FBDF, k) for k in range(1, 6)] + [(ps.QNDF, k) for k in range(1, 5)])
def test_fixed_order_convergence(alg_cls, k):
    """Fixed steps at a forced order k (started by k Rodas5P steps) converge at order k (+-0.2) on a nonlinear,
    non-autonomous problem with a closed-form solution (QNDF's order 5 is BDF5)."""
    prob, exact = problems.nonlinear_exact((0.0, 2.0))
    errs = []
    for n in ORDER_GRIDS[k]:
        sol = ps.solve(prob, alg_cls(max_order=k, max_newton_iters=12), adaptive=False, dt=2.0 / n, rtol=1e-10,
                       atol=1e-10, saveat=[2.0])
        assert sol.retcode == ps.ReturnCode.Success, sol.message
        errs.append(float((sol.u[-1] - exact(2.0)).abs().max()))
    observed = math.log2(errs[0] / errs[1])
    assert abs(observed - k) <= 0.2, (k, errs, observed)


# ----------------------------------------------------------------------------------------------- stiff classics
CASES = {
    "rober": (lambda: problems.rober(), 1e5, {}, 1e-4),  # atol = rtol * factor
    "hires": (lambda: problems.hires(), 321.8122, {}, 1.0),
    "van_der_pol": (lambda: problems.van_der_pol(1e3), 6.3, {"mu": 1e3}, 1.0),
    "oregonator": (lambda: problems.oregonator(), 360.0, {}, 1.0),
}
# (problem, method, rtol) -> weighted error at the final time, measured (CPU, float64) with the Newton rate floor
# (engine/bdf.py FIRST_RATE_FLOOR); SciPy 1.17 BDF (its default NDF formulas, analytic Jacobian) measured on the same
# cases: rober 6.15 / 13.1, hires 10.4 / 10.4, van_der_pol 0.209 / 1.68, oregonator 57.7 / 144 at rtol 1e-6 / 1e-8.
MEASURED = {
    ("rober", "FBDF", 1e-6): 4.21, ("rober", "FBDF", 1e-8): 9.26,
    ("rober", "QNDF", 1e-6): 6.06, ("rober", "QNDF", 1e-8): 19.0,
    ("hires", "FBDF", 1e-6): 10.3, ("hires", "FBDF", 1e-8): 7.19,
    ("hires", "QNDF", 1e-6): 15.4, ("hires", "QNDF", 1e-8): 11.5,
    ("van_der_pol", "FBDF", 1e-6): 1.86, ("van_der_pol", "FBDF", 1e-8): 0.648,
    ("van_der_pol", "QNDF", 1e-6): 0.224, ("van_der_pol", "QNDF", 1e-8): 0.679,
}
# The Oregonator's final error swings by 10x with the last bits of the step sequence (measured 3.85 and 34.5 for
# FBDF at 1e-6 before and after a change that only reordered additions): bounded by 3x SciPy BDF's error instead.
OREGONATOR_CEILING = {1e-6: 3 * 57.7, 1e-8: 3 * 144.0}
# 1-7 s each on the shared machine: exhaustive runs only (the default run keeps rtol 1e-6 and Van der Pol)
SLOW = {("oregonator", 1e-6), ("oregonator", 1e-8), ("rober", 1e-8), ("hires", 1e-8)}


def _scipy_bdf(prob, t1: float, rtol: float, atol: float):
    def f(t, y):
        return call_f(prob.f, prob.f_takes_p, prob.p, torch.tensor(t, dtype=F64), torch.from_numpy(y)).numpy()

    def jac(t, y):
        return call_f(prob.jac, prob.jac_takes_p, prob.p, torch.tensor(t, dtype=F64), torch.from_numpy(y)).numpy()

    return solve_ivp(f, (0.0, t1), prob.u0.numpy(), method="BDF", rtol=rtol, atol=atol, jac=jac)


def _stiff_params():
    out = []
    for name in CASES:
        for alg in ("FBDF", "QNDF"):
            for rtol in (1e-6, 1e-8):
                slow = (name, rtol) in SLOW or (name, alg) in SLOW
                marks = [pytest.mark.exhaustive] if slow else []
                out.append(pytest.param(name, alg, rtol, marks=marks, id=f"{name}-{alg}-{rtol:g}"))
    return out


@pytest.mark.parametrize(("name", "alg_name", "rtol"), _stiff_params())
def test_stiff_reference_and_work_vs_scipy(name, alg_name, rtol):
    make, t1, ref_params, atol_factor = CASES[name]
    prob = make()
    atol = rtol * atol_factor
    sol = ps.solve(prob, getattr(ps, alg_name)(), rtol=rtol, atol=atol, saveat=[t1], maxiters=200_000)
    assert sol.retcode == ps.ReturnCode.Success, sol.message
    err = weighted_error(sol.u[-1], problems.reference(name, t1, **ref_params), rtol, atol)
    if name == "oregonator":
        assert err <= OREGONATOR_CEILING[rtol], err
    else:
        measured = MEASURED[(name, alg_name, rtol)]
        assert measured / 3 <= err <= 3 * measured, (err, measured)
    if name != "oregonator":  # SciPy on the same problem, tolerances and analytic Jacobian
        ref_run = _scipy_bdf(prob, t1, rtol, atol)
        assert sol.stats.nf <= 2 * ref_run.nfev, (sol.stats.nf, ref_run.nfev)
    # Jacobians and factorizations are reused across steps
    assert sol.stats.njac < sol.stats.naccept / 3 and sol.stats.nlu < sol.stats.naccept / 2, sol.stats


# ----------------------------------------------------------------------------------------------- dense output
@pytest.mark.parametrize("alg", [ps.FBDF(), ps.QNDF()])
def test_dense_output_as_accurate_as_the_steps(alg):
    prob, exact = problems.nonlinear_exact((0.0, 2.0), lam=50.0)
    sol = ps.solve(prob, alg, rtol=1e-7, atol=1e-7, dense=True)
    assert sol.retcode == ps.ReturnCode.Success
    ts = torch.linspace(0.0, 2.0, 1001, dtype=F64)
    e_dense = float((sol(ts) - exact(ts)).abs().max())
    e_steps = float((sol.u - exact(sol.t)).abs().max())
    assert e_dense <= 1.5 * e_steps and e_dense < 2e-5, (e_dense, e_steps)
    assert torch.allclose(sol(sol.t), sol.u, rtol=0, atol=1e-13)  # continuous: the interpolant hits the steps
    # saveat between steps comes from the same interpolant
    sv = ps.solve(prob, alg, rtol=1e-7, atol=1e-7, saveat=ts[::50])
    assert torch.allclose(sv.u, sol(ts[::50]), rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------------------------- DAE
def _rober_dae() -> ps.ODEProblem:
    def f(t, u, p):
        k1, k2, k3 = p[0], p[1], p[2]
        y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
        return torch.stack((-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 * y2 - k3 * y2 * y3, y1 + y2 + y3 - 1), dim=-1)

    def jac(t, u, p):
        k1, k2, k3 = float(p[0]), float(p[1]), float(p[2])
        y2, y3 = float(u[1]), float(u[2])
        return torch.tensor([[-k1, k3 * y3, k3 * y2], [k1, -2 * k2 * y2 - k3 * y3, -k3 * y2], [1.0, 1.0, 1.0]],
                            dtype=F64)

    mass = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=F64))
    return ps.ODEProblem(f, torch.tensor([1.0, 0.0, 0.0], dtype=F64), (0.0, 1e5),
                         torch.tensor([0.04, 3e7, 1e4], dtype=F64), jac=jac, mass_matrix=mass)


@pytest.mark.parametrize("alg", [ps.FBDF(), ps.QNDF()])
def test_rober_as_index1_dae(alg):
    """ROBER with y3 from the algebraic equation y1 + y2 + y3 = 1 (M = diag(1, 1, 0)): the reference at 1e5 as
    closely as the ODE form (measured 5.78 / 6.13 at rtol 1e-6), and the constraint at every step."""
    rtol, atol = 1e-6, 1e-10
    sol = ps.solve(_rober_dae(), alg, rtol=rtol, atol=atol)
    assert sol.retcode == ps.ReturnCode.Success, sol.message
    err = weighted_error(sol.u[-1], problems.reference("rober", 1e5), rtol, atol)
    assert err <= 20.0, err
    assert float((sol.u.sum(dim=1) - 1).abs().max()) < 1e-12


@pytest.mark.parametrize("alg", [ps.FBDF(), ps.QNDF()])
def test_singular_mass_matrix_without_zero_rows(alg):
    """M = [[1, 1], [1, 1]] is singular with no zero row: the rows' difference is the constraint 0 = f_1 - f_2 =
    u_1 - u_2, their sum s = u_1 + u_2 obeys s' = -s. The start slope comes from M's SVD (it raised LinAlgError
    before); the solution is u_1 = u_2 = e^{-t} / 2, within 10 tolerance units at t = 1 (the transistor amplifier
    test, heavy, is the large case)."""
    mass = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=F64)

    def f(t, u):
        s = -(u[0] + u[1])
        return torch.stack((s, s - (u[0] - u[1])))

    prob = ps.ODEProblem(f, torch.tensor([0.5, 0.5], dtype=F64), (0.0, 1.0), mass_matrix=mass)
    rtol, atol = 1e-6, 1e-9
    sol = ps.solve(prob, alg, rtol=rtol, atol=atol)
    assert sol.retcode == ps.ReturnCode.Success, sol.message
    exact = torch.full((2,), 0.5 * math.exp(-1.0), dtype=F64)
    assert weighted_error(sol.u[-1], exact, rtol, atol) < 10.0
    assert float((sol.u[:, 0] - sol.u[:, 1]).abs().max()) < 1e-9


def test_inconsistent_algebraic_start_is_corrected():
    """u0 violating 0 = f_a: the algebraic components are solved for first (Newton, the others fixed), the solve
    starts and saves the consistent state."""
    mass = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=F64))
    prob = ps.ODEProblem(lambda t, u: torch.stack((-u[0], -2 * u[1], u[0] + u[1] - u[2])),
                         torch.tensor([1.0, 1.0, 5.0], dtype=F64), (0.0, 1.0), mass_matrix=mass)
    sol = ps.solve(prob, ps.FBDF(), rtol=1e-8, atol=1e-10)
    assert sol.retcode == ps.ReturnCode.Success, sol.message
    assert float(sol.u[0, 2]) == pytest.approx(2.0, abs=1e-12)
    exact = torch.tensor([math.exp(-1), math.exp(-2), math.exp(-1) + math.exp(-2)], dtype=F64)
    assert float((sol.u[-1] - exact).abs().max()) < 1e-6


# ----------------------------------------------------------------------------------------------- batches, stops
def test_batch_shares_steps_and_matches_single_solves():
    """A batch takes one step sequence (the largest error over the batch decides), so every trajectory is at least
    as accurate as its own solve: compared with tight single solves at the end of the span."""
    k = torch.tensor([[0.04, 3e7, 1e4], [0.05, 2e7, 1e4], [0.03, 3e7, 2e4]], dtype=F64)
    rtol, atol = 1e-5, 1e-9
    batch = ps.solve(problems.rober((0.0, 1.0), k=k), ps.FBDF(), rtol=rtol, atol=atol, saveat=[1.0])
    assert all(c == ps.ReturnCode.Success for c in batch.retcodes)
    assert batch.stats.naccept == 3 * (batch.stats.nloop - batch.stats.nreject // 3)  # summed over trajectories
    for b in range(3):
        single = ps.solve(problems.rober((0.0, 1.0), k=k[b]), ps.FBDF(), rtol=1e-8, atol=1e-12, saveat=[1.0])
        assert weighted_error(batch.u[-1, b], single.u[-1], rtol, atol) < 10.0


def test_dtmax_bounds_every_step():
    prob, exact = problems.nonlinear_exact((0.0, 2.0))
    sol = ps.solve(prob, ps.QNDF(), rtol=1e-6, atol=1e-8, dtmax=0.05)
    assert sol.retcode == ps.ReturnCode.Success
    assert float((sol.t[1:] - sol.t[:-1]).max()) <= 0.05 * (1 + 1e-12)


def test_sparse_lu_takes_the_same_steps_as_dense_lu():
    """The multistep method runs on any of the linear solvers: SparseLU (SuperLU on the analytic sparse Jacobian)
    gives the dense LU's steps and values on the 2-D Brusselator (8 x 8 grid, 128 states)."""
    from pysciml.problems.pde2d import brusselator_2d

    prob = brusselator_2d(N=8, tspan=(0.0, 0.5))
    sparse = ps.solve(prob, ps.FBDF(linsolve=ps.SparseLU()), rtol=1e-5, atol=1e-7, saveat=[0.5])
    dense = ps.solve(prob, ps.FBDF(), rtol=1e-5, atol=1e-7, saveat=[0.5])
    assert sparse.retcode == dense.retcode == ps.ReturnCode.Success
    assert sparse.stats.naccept == dense.stats.naccept and sparse.stats.nf == dense.stats.nf
    assert float((sparse.u - dense.u).abs().max()) < 1e-10


def test_tstops_are_landed_on():
    prob, _ = problems.nonlinear_exact((0.0, 2.0))
    sol = ps.solve(prob, ps.FBDF(), rtol=1e-6, atol=1e-8, tstops=[0.7, 1.3])
    assert sol.retcode == ps.ReturnCode.Success
    assert 0.7 in sol.t.tolist() and 1.3 in sol.t.tolist()


def test_float32_in_float32_out():
    prob = problems.rober((0.0, 10.0), dtype=torch.float32)
    sol = ps.solve(prob, ps.QNDF(), rtol=1e-4, atol=1e-8)
    assert sol.retcode == ps.ReturnCode.Success and sol.u.dtype == torch.float32
    ref = ps.solve(problems.rober((0.0, 10.0)), ps.QNDF(), rtol=1e-7, atol=1e-11)
    assert weighted_error(sol.u[-1].double(), ref.u[-1], 1e-4, 1e-8) < 10.0


# ----------------------------------------------------------------------------------------------- gradients
def _rober_loss(k: torch.Tensor, u0: torch.Tensor, sensealg=None, rtol: float = 1e-8) -> torch.Tensor:
    base = problems.rober((0.0, 0.5), k=k)
    prob = ps.ODEProblem(base.f, u0, base.tspan, k, jac=base.jac)
    sol = ps.solve(prob, ps.FBDF(), rtol=rtol, atol=rtol * 1e-4, saveat=[0.1, 0.5], sensealg=sensealg)
    return (sol.u * torch.tensor([1.0, 1e4, 2.0], dtype=F64)).sum()


@pytest.mark.parametrize(("sensealg", "rtol", "bound"), [(None, 1e-8, 1e-6), (ps.InterpolatingAdjoint(), 1e-6, 1e-4)],
                         ids=["discrete", "interpolating"])
def test_gradients_match_finite_differences(sensealg, rtol, bound):
    """Backprop through the FBDF steps (discrete adjoint; the corrector gets the implicit-function derivative) and
    the interpolating adjoint solved by FBDF, against central differences (along a random direction in (k, u0))
    of tighter solves."""
    k = torch.tensor([0.04, 3e7, 1e4], dtype=F64, requires_grad=True)
    u0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64, requires_grad=True)
    kf, uf = k.detach().clone(), u0.detach().clone()
    res = check_gradient(lambda: _rober_loss(k, u0, sensealg, rtol), [k, u0], h=1e-6,
                         fd_loss=lambda: _rober_loss(kf, uf, rtol=1e-10), fd_tensors=[kf, uf])
    assert res.rel < bound, res


# ----------------------------------------------------------------------------------------------- failures, input
def test_blow_up_returns_a_failure_code_with_t_and_dt():
    prob = ps.ODEProblem(lambda t, u: u * u, torch.tensor([1.0], dtype=F64), (0.0, 2.0))
    sol = ps.solve(prob, ps.FBDF(), rtol=1e-3, atol=1e-6)
    assert sol.retcode in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable), sol.message
    assert "at t=" in sol.message and "dt=" in sol.message
    assert 0.9 < float(sol.t[-1]) <= 1.0  # the singularity is at t = 1
    short = ps.solve(prob, ps.FBDF(), rtol=1e-6, atol=1e-8, maxiters=5)
    assert short.retcode == ps.ReturnCode.MaxIters


@pytest.mark.parametrize(("make", "match"), [
    (lambda: ps.FBDF(max_order=6), "max_order"),
    (lambda: ps.QNDF(max_order=0), "max_order"),
    (lambda: ps.FBDF(max_newton_iters=0), "max_newton_iters"),
])
def test_bad_options(make, match):
    with pytest.raises(ps.InputError, match=match):
        make()


def test_bad_solve_keywords():
    prob = problems.rober((0.0, 1.0))
    with pytest.raises(ps.InputError, match="controller"):
        ps.solve(prob, ps.FBDF(), controller=ps.PIController())
    with pytest.raises(ps.InputError, match="dt"):
        ps.solve(prob, ps.FBDF(), adaptive=False)
    with pytest.raises(ps.InputError, match="Julia"):  # FBDF and QNDF are routed to OrdinaryDiffEq; QBDF is not
        ps.solve(prob, QBDF(), backend="julia")
    with pytest.raises(ps.InputError, match="mass matrix"):  # other families still refuse M
        ps.solve(ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p, mass_matrix=torch.eye(3, dtype=F64)),
                 ps.KenCarp4())
