"""Fully implicit RK solvers (RadauIIA5, RadauIIA3, GaussLegendre4, GaussLegendre6): convergence orders, stiff
references, batching, a mass-matrix DAE, Newton failure, Jacobian reuse, gradients, odeint strings, bad input.

Measured numbers (float64, CPU) are pinned in bands: weighted errors ``max_i |u_i - ref_i| / (atol + rtol |ref_i|)``
at most 3x the measured value and never above 10 (the tolerance's order), observed orders within +-0.2.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import kepler_problem, nonlinear_problem, observed_order, rober_dae

import pysciml as ps
from pysciml import problems
from pysciml.errors import InputError

FIRK = [ps.RadauIIA3(), ps.RadauIIA5(), ps.GaussLegendre4(), ps.GaussLegendre6()]

# steps over [0, 3] on the Kepler problem (e = 0.5 from perihelion), chosen by a scan so both errors are asymptotic
# (one more halving changes the observed order by < 0.02) and above round-off
KEPLER_STEPS = {"RadauIIA3": [80, 160], "RadauIIA5": [60, 120], "GaussLegendre4": [60, 120],
                "GaussLegendre6": [40, 80]}


def weighted_error(u: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float) -> float:
    return float(((u - ref).abs() / (atol + rtol * ref.abs())).max())


@pytest.mark.parametrize("alg", FIRK, ids=lambda a: a.name)
def test_fixed_step_order_kepler(alg):
    prob, exact = kepler_problem()
    t1 = prob.tspan[1]
    dts = [t1 / n for n in KEPLER_STEPS[alg.name]]
    errors = []
    for dt in dts:
        # rtol/atol set Newton's tolerance: tight, so the discretisation error dominates
        sol = ps.solve(prob, alg, adaptive=False, dt=dt, rtol=1e-13, atol=1e-13)
        assert sol.retcode == ps.ReturnCode.Success
        errors.append(float((sol.u[-1] - exact(t1)).abs().max()))
    assert min(errors) > 1e-12, errors
    assert abs(observed_order(dts, errors) - alg.order) <= 0.2, (alg.name, errors)


@pytest.mark.parametrize(("alg", "steps"), [(ps.RadauIIA5(), (80, 160)), (ps.GaussLegendre4(), (40, 80))],
                         ids=["RadauIIA5", "GaussLegendre4"])
def test_fixed_step_order_non_autonomous(alg, steps):
    """Stage times t + c_i h matter: a non-autonomous nonlinear problem with a closed-form solution. (Coarser steps
    end in ConvergenceFailure: Newton cannot reach rtol 1e-13 in 7 iterations with the Jacobian of t = 0.)"""
    prob, exact = nonlinear_problem()
    dts = [2.0 / n for n in steps]
    errors = [float((ps.solve(prob, alg, adaptive=False, dt=dt, rtol=1e-13, atol=1e-13).u[-1] - exact(2.0))
                    .abs().max()) for dt in dts]
    assert min(errors) > 1e-13, errors
    assert abs(observed_order(dts, errors) - alg.order) <= 0.2, errors


# (problem, rtol) -> measured weighted error of RadauIIA5 at the final time (CPU, float64; atol = 1e-4 rtol, and
# atol = rtol for Van der Pol, whose slow drift the method follows to ~1e-11 at every tolerance here)
STIFF = {("rober", 1e-6): 0.0023, ("hires", 1e-6): 0.0765, ("van_der_pol", 1e-6): 0.00114,
         ("van_der_pol", 1e-8): 2.79e-5}
STIFF_SLOW = {("rober", 1e-8): 0.00364, ("rober", 1e-10): 0.0225, ("hires", 1e-8): 0.0906, ("hires", 1e-10): 0.0314,
              ("van_der_pol", 1e-10): 1.79e-5}
T1 = {"rober": 1e5, "hires": 321.8122, "van_der_pol": 6.3}


def _stiff_case(name: str, rtol: float, measured: float) -> ps.ODESolution:
    prob = {"rober": lambda: problems.rober((0.0, 1e5)), "hires": problems.hires,
            "van_der_pol": lambda: problems.van_der_pol(mu=1e3)}[name]()
    atol = rtol if name == "van_der_pol" else rtol * 1e-4
    t1 = T1[name]
    sol = ps.solve(prob, ps.RadauIIA5(), rtol=rtol, atol=atol, saveat=[t1], maxiters=100_000)
    assert sol.retcode == ps.ReturnCode.Success, sol.message
    err = weighted_error(sol.u[-1], problems.reference(name, t1), rtol, atol)
    assert err <= min(3 * measured, 10.0), (name, rtol, err)
    return sol


@pytest.mark.parametrize(("name", "rtol"), list(STIFF), ids=[f"{n}-{r:g}" for n, r in STIFF])
def test_radau5_stiff_references(name, rtol):
    sol = _stiff_case(name, rtol, STIFF[(name, rtol)])
    assert sol.stats.njac < sol.stats.naccept  # Jacobians reused across steps where Newton converged fast


@pytest.mark.exhaustive
@pytest.mark.parametrize(("name", "rtol"), list(STIFF_SLOW), ids=[f"{n}-{r:g}" for n, r in STIFF_SLOW])
def test_radau5_stiff_references_tight(name, rtol):
    _stiff_case(name, rtol, STIFF_SLOW[(name, rtol)])


def test_radau3_adaptive_van_der_pol():
    sol = ps.solve(problems.van_der_pol(mu=1e3), ps.RadauIIA3(), rtol=1e-6, atol=1e-6)
    assert sol.retcode == ps.ReturnCode.Success
    assert weighted_error(sol.u[-1], problems.reference("van_der_pol", 6.3), 1e-6, 1e-6) <= 1.0


@pytest.mark.exhaustive
def test_radau3_adaptive_hires():
    """RadauIIA3's derived 2nd-order estimate controls the 3rd-order solution: HIRES within 6x the tolerance
    (measured 4.13 at rtol 1e-4, 5.8 at 1e-6: the filtered estimate is optimistic on the moderately stiff
    components)."""
    prob = problems.hires()
    sol = ps.solve(prob, ps.RadauIIA3(), rtol=1e-4, atol=1e-8, saveat=[321.8122])
    assert sol.retcode == ps.ReturnCode.Success
    assert weighted_error(sol.u[-1], problems.reference("hires", 321.8122), 1e-4, 1e-8) <= 6.0


def test_rober_as_index1_dae_with_singular_mass():
    """Robertson with its conservation law as the algebraic equation: M = diag(1, 1, 0), f3 = y1 + y2 + y3 - 1."""
    prob = rober_dae()
    rtol = 1e-6
    sol = ps.solve(prob, ps.RadauIIA5(), rtol=rtol, atol=rtol * 1e-4, saveat=[1e4, 1e5])
    assert sol.retcode == ps.ReturnCode.Success, sol.message
    assert weighted_error(sol.u[-1], problems.reference("rober", 1e5), rtol, rtol * 1e-4) <= 0.01  # measured 6e-4
    assert float((sol.u.sum(dim=-1) - 1).abs().max()) <= 1e-12  # the constraint holds at every saved point


@pytest.mark.parametrize("alg", FIRK, ids=lambda a: a.name)
def test_constant_mass_matrix_keeps_the_order(alg):
    """M u' = A u with a nonsingular, non-symmetric M: the exact solution is exp(t M^-1 A) u0."""
    M = torch.tensor([[2.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    A = torch.tensor([[-1.0, 0.3], [0.2, -2.0]], dtype=torch.float64)
    u0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    prob = ps.ODEProblem(lambda t, u: A @ u, u0, (0.0, 1.0), mass_matrix=M)
    exact = torch.linalg.matrix_exp(torch.linalg.solve(M, A)) @ u0
    errs = [float((ps.solve(prob, alg, dt=1 / n, adaptive=False, rtol=1e-13, atol=1e-13).u[-1] - exact).abs().max())
            for n in (10, 20)]
    assert abs(math.log2(errs[0] / errs[1]) - alg.order) <= 0.2, errs


def test_radau3_dae():
    prob = rober_dae()
    sol = ps.solve(prob, ps.RadauIIA3(), rtol=1e-5, atol=1e-9, saveat=[1e5])
    assert sol.retcode == ps.ReturnCode.Success
    assert weighted_error(sol.u[-1], problems.reference("rober", 1e5), 1e-5, 1e-9) <= 1.0  # measured 0.18


def test_batched_equals_separate():
    k = torch.tensor([[0.04, 3e7, 1e4], [0.05, 2e7, 1e4]], dtype=torch.float64)
    opts = dict(rtol=1e-6, atol=1e-10, saveat=[1.0, 10.0])
    batch = ps.solve(problems.rober((0.0, 10.0), k=k), ps.RadauIIA5(), **opts)
    steps = 0
    for i in range(2):
        one = ps.solve(problems.rober((0.0, 10.0), k=k[i]), ps.RadauIIA5(), **opts)
        # Jacobian refreshes, Newton's rate, predictors are per row: the separate solve's steps and numbers, to the
        # last bits (MKL's batched solve_ex and bmm round by batch position: measured 3.4e-16 relative apart)
        torch.testing.assert_close(batch.u[:, i], one.u, rtol=1e-14, atol=0.0)
        steps += one.stats.naccept
    assert batch.stats.naccept == steps


def test_batched_newton_failures_per_row_equal_separate():
    """With two Newton iterations at most, rows fail Newton at different steps: some retry with a fresh Jacobian
    (the second pass merged into the first per row), some fail before their first increment; each row still takes
    its separate solve's steps and values."""
    k = torch.tensor([[0.04, 3e7, 1e4], [0.4, 3e5, 1e2]], dtype=torch.float64)
    opts = dict(rtol=1e-6, atol=1e-10, saveat=[1.0, 10.0])
    alg = ps.RadauIIA5(max_newton_iters=2)
    batch = ps.solve(problems.rober((0.0, 10.0), k=k), alg, **opts)
    assert batch.success and batch.stats.nnonlinconvfail > 0
    steps = 0
    for i in range(2):
        one = ps.solve(problems.rober((0.0, 10.0), k=k[i]), alg, **opts)
        torch.testing.assert_close(batch.u[:, i], one.u, rtol=1e-13, atol=0.0)
        steps += one.stats.naccept
    assert batch.stats.naccept == steps


def test_dense_output_is_the_collocation_polynomial():
    """Fixed steps of GaussLegendre6: the interpolant between steps converges at the stage order 3 (and is exact
    at the steps: the method's order 6)."""
    prob, exact = nonlinear_problem(t1=1.0)
    errs = []
    for n in (20, 40):
        sol = ps.solve(prob, ps.GaussLegendre6(), adaptive=False, dt=1.0 / n, rtol=1e-13, atol=1e-13, dense=True)
        tq = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # mid-steps
        errs.append(float((sol(tq) - torch.stack([exact(float(t)) for t in tq])).abs().max()))
    assert 3.0 - 0.3 <= math.log2(errs[0] / errs[1]) <= 4.0 + 0.3, errs  # at least the stage order


def test_newton_failure_rejects_then_fails_with_convergence_failure():
    prob, _ = kepler_problem()
    fixed = ps.solve(prob, ps.RadauIIA5(), adaptive=False, dt=0.15, rtol=1e-13, atol=1e-13)
    assert fixed.retcode == ps.ReturnCode.ConvergenceFailure
    assert "ConvergenceFailure at t=" in fixed.message and "dt=" in fixed.message
    adaptive = ps.solve(prob, ps.RadauIIA5(max_newton_iters=2), rtol=1e-6, atol=1e-6)
    assert adaptive.retcode == ps.ReturnCode.Success
    assert adaptive.stats.nnonlinconvfail > 0 and adaptive.stats.nreject > 0


def test_jacobian_counted_honestly():
    prob = problems.van_der_pol(mu=1e3)
    calls = []

    def jac(t, u, p):
        calls.append(1)
        return prob.jac(t, u, p)

    counted = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p, jac=jac)
    sol = ps.solve(counted, ps.RadauIIA5(), rtol=1e-6, atol=1e-6)
    assert sol.stats.njac == len(calls) and 1 <= len(calls) < sol.stats.naccept
    every = ps.solve(counted, ps.RadauIIA5(jac_reuse=0.0), rtol=1e-6, atol=1e-6)
    assert every.stats.njac >= every.stats.naccept  # a Jacobian at every accepted point


def _toy(p: torch.Tensor) -> ps.ODEProblem:
    def f(t, u, p):
        return torch.stack((-p[0] * u[0] + u[1] ** 2, -p[1] * u[1] * u[0]))

    return ps.ODEProblem(f, torch.tensor([1.0, 0.5], dtype=torch.float64), (0.0, 2.0), p)


@pytest.mark.parametrize(("alg", "kw"), [
    (ps.RadauIIA5(), dict(rtol=1e-8, atol=1e-10, sensealg=ps.DiscreteAdjoint())),
    (ps.GaussLegendre4(), dict(adaptive=False, dt=0.1, rtol=1e-12, atol=1e-12, sensealg=ps.DiscreteAdjoint())),
    pytest.param(ps.RadauIIA5(), dict(rtol=1e-9, atol=1e-11, sensealg=ps.InterpolatingAdjoint()),
                 marks=pytest.mark.exhaustive),
], ids=["radau5-discrete", "gl4-discrete", "radau5-interpolating"])
def test_gradients_match_finite_differences(alg, kw):
    p = torch.tensor([1.5, 0.7], dtype=torch.float64, requires_grad=True)

    def loss(pp):
        return (ps.solve(_toy(pp), alg, saveat=[2.0], **kw).u[-1] ** 2).sum()

    (g,) = torch.autograd.grad(loss(p), p)
    fd = []
    with torch.no_grad():
        for i in range(2):
            e = torch.zeros(2, dtype=torch.float64)
            e[i] = 1e-6
            fd.append(float(loss(p + e) - loss(p - e)) / 2e-6)
    torch.testing.assert_close(g, torch.tensor(fd, dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_radau5_as_the_adjoint_solver_of_odeint_adjoint():
    """A Tsit5 forward solve with RadauIIA5 solving the continuous adjoint backwards (odeint_adjoint's
    adjoint_method), against the discrete adjoint of the same forward solve."""
    p = torch.tensor([1.5, 0.7], dtype=torch.float64, requires_grad=True)
    u0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)

    class Field(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(p.detach().clone())

        def forward(self, t, u):
            return torch.stack((-self.p[0] * u[0] + u[1] ** 2, -self.p[1] * u[1] * u[0]))

    field = Field()
    y = ps.odeint_adjoint(field, u0, t, method="tsit5", adjoint_method="radauIIA5", rtol=1e-8, atol=1e-10,
                          adjoint_rtol=1e-8, adjoint_atol=1e-10)
    (g,) = torch.autograd.grad((y[-1] ** 2).sum(), field.p)
    ref = ps.solve(_toy(p), ps.Tsit5(), rtol=1e-8, atol=1e-10, saveat=[2.0], sensealg=ps.DiscreteAdjoint())
    (g_ref,) = torch.autograd.grad((ref.u[-1] ** 2).sum(), p)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("method", "order"), [("radauIIA3", 3), ("radauIIA5", 5), ("gl4", 4), ("gl6", 6)])
def test_odeint_strings_step_on_the_grid(method, order):
    """torchdiffeq's fixed-grid strings: one step per interval of t; error ratio 2^order when t is refined."""
    errs = []
    for n in (10, 20):
        t = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
        y = ps.odeint(lambda t, y: torch.cos(t) * y, torch.tensor([1.0], dtype=torch.float64), t, method=method,
                      rtol=1e-12, atol=1e-12)
        errs.append(float((y[:, 0] - torch.exp(torch.sin(t))).abs().max()))
    assert abs(math.log2(errs[0] / errs[1]) - order) <= 0.3, errs
    # gradients through the grid steps: for y' = -y the discrete map is linear, so dy(1)/dy0 = y(1)/y0
    y0 = torch.ones(1, dtype=torch.float64, requires_grad=True)
    ys = ps.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 0.2, 0.3, 1.0], dtype=torch.float64), method=method)
    (g,) = torch.autograd.grad(ys[-1].sum(), y0)
    assert abs(float(g) - float(ys[-1].detach())) <= 1e-14


def test_float32_keeps_dtype():
    prob = problems.van_der_pol(mu=1e3, dtype=torch.float32)
    sol = ps.solve(prob, ps.RadauIIA5(), rtol=1e-4, atol=1e-4)
    assert sol.retcode == ps.ReturnCode.Success and sol.u.dtype == torch.float32
    ref = problems.reference("van_der_pol", 6.3, dtype=torch.float32)
    assert float((sol.u[-1] - ref).abs().max()) <= 1e-3


def test_bad_input():
    prob, _ = kepler_problem()
    with pytest.raises(InputError, match="cannot choose its own steps"):
        ps.solve(prob, ps.GaussLegendre4(), adaptive=True)
    with pytest.raises(InputError, match="needs a step size: pass dt"):
        ps.solve(prob, ps.GaussLegendre6())
    with pytest.raises(InputError, match=r"\(dense or sparse\) LU only"):
        ps.RadauIIA5(linsolve=ps.GMRES())
    with pytest.raises(InputError, match="max_newton_iters"):
        ps.RadauIIA5(max_newton_iters=0)
    with pytest.raises(InputError, match="newton_kappa"):
        ps.RadauIIA3(newton_kappa=2.0)
    M = torch.eye(prob.state_size, dtype=torch.float64)
    massed = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p, mass_matrix=M)
    with pytest.raises(InputError, match="RadauIIA5"):
        ps.solve(massed, ps.Tsit5())


def test_predictive_controller():
    """radau5's rule: no prediction before the first accepted step, the step held when it would grow by < 1.2x,
    and the batched rule equal to the scalar one."""
    from pysciml.engine.firk_control import PredictiveController

    c = PredictiveController()
    assert c.propose_scalar(0.1, 0.6, -1.0, True, 4)[0] == 0.1  # 0.6^(1/4) / 0.9 = 0.978: would grow 2%, held
    assert c.propose_scalar(0.1, 1e-6, -1.0, True, 4)[0] == pytest.approx(0.8)  # growth capped at 8x
    assert c.propose_scalar(0.1, 4.0, -1.0, False, 4)[0] == pytest.approx(0.1 * 0.9 / 4.0**0.25)
    # Gustafsson: a previous step with a much smaller error predicts a faster error growth: a smaller step
    plain, _ = c.propose_scalar(0.1, 0.05, -1.0, True, 4)
    predicted, _ = c.propose_scalar(0.1, 0.05, 0.1 * 0.001 ** -0.25, True, 4)
    assert predicted < plain
    cases = [(0.1, 0.5, -1.0, True), (0.1, 0.05, 0.3, True), (0.1, 3.0, 0.3, False), (-0.2, 0.2, 0.5, True),
             (0.1, float("inf"), 0.3, False)]
    for dt, e, q, acc in cases:
        d1, q1 = c.propose_scalar(dt, e, q, acc, 4)
        d2, q2 = c.propose(torch.tensor([dt]), torch.tensor([e]), torch.tensor([q]), torch.tensor([acc]), 4)
        assert d1 == pytest.approx(float(d2)) and q1 == pytest.approx(float(q2)), (dt, e, q, acc)


@pytest.mark.parametrize("name", ["RADAU_IIA5", "RADAU_IIA3", "GAUSS_LEGENDRE4", "GAUSS_LEGENDRE6"])
@pytest.mark.parametrize("massed", [False, True], ids=["identity", "mass"])
def test_small_systems_fused_step_equals_blockwise_lu(name, massed):
    """``n <= BlockFactors.SMALL``: one product with the fused matrix (engine/firk_fused.py) gives the blockwise LU
    path's Newton increment, the new stage increments and values, the filtered error estimate and the collocation
    polynomial's coefficients (to round-off), with the same ``nlu``."""
    import numpy as np

    from pysciml.engine.firk_blocks import BlockFactors, transformation
    from pysciml.engine.firk_fused import FusedFactors
    from pysciml.engine.tableaus import firk as tableaus
    from pysciml.solution import Stats

    tab = getattr(tableaus, name)
    tr = transformation(tab.a)
    g = torch.Generator().manual_seed(7)
    b, n, s = 2, 5, tab.stages
    J = torch.randn(b, n, n, generator=g, dtype=torch.float64).transpose(1, 2) * 10  # strided, as vmapped jacobians
    M = torch.diag(torch.tensor([1.0, 2.0, 0.5, 1.0, 0.0], dtype=torch.float64)) if massed else None
    h = torch.tensor([0.01, 0.3], dtype=torch.float64)
    err_mu = None if tab.gamma0 is None else 1.0 / tab.gamma0
    mus = [mu for _, mu in tr.blocks] + ([err_mu] if err_mu is not None else [])
    dense = np.array(tab.dense) @ tr.Ainv
    F, Z = torch.randn(2, b, s, n, generator=g, dtype=torch.float64)
    u, f0 = torch.randn(2, b, n, generator=g, dtype=torch.float64)
    mass = (lambda v: v) if M is None else (lambda v: v @ M.T)
    # the blockwise path, by hand
    s_lu, s_fu = Stats(), Stats()
    bf = BlockFactors(s_lu, M, tr, torch.float64, torch.device("cpu"))
    assert all(bf.factor(mus, J, h))
    Ti, T = (torch.tensor(x, dtype=torch.float64) for x in (tr.Tinv, tr.T))
    dW = bf.increment(F, torch.matmul(Ti, Z))
    Z1 = Z + torch.matmul(T, dW)
    want = [dW, Z1, u[:, None] + Z1, torch.matmul(torch.tensor(dense, dtype=torch.float64), Z1)]
    ff = FusedFactors(s_fu, M, tr, torch.float64, torch.device("cpu"), n=n, err_mu=err_mu, dense_ainv=dense,
                      ez=None if err_mu is None else np.array(tab.ez))
    assert all(ff.factor(mus, J, h))
    x = torch.cat((F.flatten(1), Z.flatten(1), u, f0), 1)
    y = torch.bmm(ff.P, x[:, :, None]).view(b, ff.slots, n)
    got = [y[:, ff.DW:ff.DW + s], y[:, ff.Z:ff.Z + s], y[:, ff.U:ff.U + s], y[:, ff.C:ff.C + dense.shape[0]]]
    if err_mu is not None:
        mz = mass(torch.einsum("i,bin->bn", torch.tensor(tab.ez, dtype=torch.float64), Z1)) / h[:, None]
        want.append(bf.solve(err_mu, f0 + mz))
        got.append(y[:, ff.ERR])
    assert torch.equal(y[:, ff.UROW], u)
    for w, g_ in zip(want, got, strict=True):
        assert torch.allclose(g_, w, rtol=1e-11, atol=1e-11 * float(w.abs().max())), (w - g_).abs().max()
    assert s_lu.nlu == s_fu.nlu == len(mus)
