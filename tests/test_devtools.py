"""pysciml.devtools: fitted orders through the public ``convergence`` (every fixed-step-capable built-in method within
+-0.2 of its theory; a representative set in the default run, the rest ``exhaustive``), user callables of known
order, work-precision tables monotone in the tolerance, the reference helper against the stored certified
references, CSV round trips and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import kepler_problem, nonlinear_problem

import pysciml as ps
from pysciml import problems as P
from pysciml.devtools import (
    TimingRule,
    convergence,
    fit_order,
    read_csv,
    reference_solution,
    work_precision,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


def _at(exact):
    """A closed-form solution ``exact(float)`` as the reference callable ``t -> (S, n)``."""
    return lambda ts: torch.stack([exact(float(t)) for t in ts])


def kepler(steps):
    prob, exact = kepler_problem()
    return prob, [prob.tspan[1] / n for n in steps], _at(exact)


def smooth(dts):  # the Stuart-Landau oscillator of pysciml.problems (closed form, non-autonomous)
    prob, exact = P.nonlinear_exact()
    return prob, dts, exact


def scalar_pair(steps):  # tests/helpers' oscillatory scalar pair (Vern7 is pre-asymptotic on Kepler in float64)
    prob, exact = nonlinear_problem()
    return prob, [prob.tspan[1] / n for n in steps], _at(exact)


def rotation(dts):  # u'' = -u: a linear problem with a clean h^8 range for DP8
    prob, exact = P.linear([[0.0, 1.0], [-1.0, 0.0]], [1.0, 0.0], (0.0, 10.0))
    return prob, dts, exact


# (algorithm, problem builder, its argument): the step sizes chosen (measured) inside each method's asymptotic range
DEFAULT = [
    (ps.Euler(), kepler, [240, 320, 480]),
    (ps.Midpoint(), kepler, [60, 120, 240]),
    (ps.RK4(), kepler, [40, 80, 160]),
    (ps.RK38(), kepler, [80, 160, 320]),
    (ps.Tsit5(), kepler, [40, 80, 160]),
    (ps.Vern7(), scalar_pair, [40, 60, 80]),
    (ps.Rodas5P(), smooth, [0.2, 0.1, 0.05]),
    (ps.KenCarp4(), smooth, [0.2, 0.1, 0.05]),
]
EXHAUSTIVE = [
    (ps.Heun(), kepler, [60, 120, 240]), (ps.AdaptiveHeun(), kepler, [60, 120, 240]),
    (ps.Ralston(), kepler, [60, 120, 240]), (ps.BS3(), kepler, [40, 80, 160]), (ps.DP5(), kepler, [80, 160, 320]),
    (ps.RKF12(), kepler, [80, 160, 320]), (ps.Heun3(), kepler, [80, 160, 320]), (ps.DP8(), rotation, [1.0, 0.5, 0.25]),
    (ps.Rosenbrock23(), kepler, [60, 120, 240]), (ps.ROS3P(), kepler, [80, 160, 320]),
    (ps.Rodas4(), kepler, [160, 320, 640]),
    # Rodas5 at 320 steps reaches round-off (3.5e-11 on an AVX-512 machine, fitted order 4.14): 40/80/160 give 5.06
    (ps.Rodas5(), kepler, [40, 80, 160]),
    (ps.KenCarp3(), kepler, [80, 160, 320]), (ps.KenCarp5(), kepler, [80, 160, 320]),
    (ps.Kvaerno3(), kepler, [80, 160, 320]), (ps.Kvaerno5(), kepler, [80, 160, 320]),
    (ps.ImplicitEuler(), smooth, [0.01, 0.005, 0.0025]), (ps.Trapezoid(), kepler, [60, 120, 240]),
    (ps.SDIRK2(), kepler, [60, 120, 240]), (ps.TRBDF2(), kepler, [60, 120, 240]),
    (ps.Alexander2(), kepler, [80, 160, 320]), (ps.IMEXSSP2(), kepler, [80, 160, 320]),
    (ps.ARS222(), kepler, [80, 160, 320]),
    (ps.RadauIIA5(), smooth, [0.1, 0.05, 0.025]), (ps.RadauIIA3(), smooth, [0.05, 0.025, 0.0125]),
    (ps.GaussLegendre4(), smooth, [0.1, 0.05, 0.025]), (ps.GaussLegendre6(), smooth, [0.1, 0.05, 0.025]),
    (ps.AB3(), smooth, [0.02, 0.01, 0.005]), (ps.AB4(), smooth, [0.02, 0.01, 0.005]),
    (ps.AB5(), smooth, [0.02, 0.01, 0.005]), (ps.ABM32(), smooth, [0.02, 0.01, 0.005]),
    (ps.ABM43(), smooth, [0.02, 0.01, 0.005]), (ps.ABM54(), rotation, [0.1, 0.05, 0.025]),
    (ps.FBDF(), smooth, [0.02, 0.01, 0.005]), (ps.QNDF(), smooth, [0.02, 0.01, 0.005]),
]
# torchdiffeq's variable-order Adams methods ('adams', 'implicit_adams') change their order as they go: no fixed order
NOT_FIXED_ORDER = {"AdamsBashforth", "AdamsBashforthMoulton"}


def _check_order(alg, build, arg):
    prob, dts, ref = build(arg)
    c = convergence(alg, prob, dts, reference=ref, error="max")
    assert not c.failures and min(c.errors) > 1e-13, c  # above round-off
    assert c.expected == alg.order
    assert abs(c.order - alg.order) <= 0.2, c
    return c


@pytest.mark.parametrize(("alg", "build", "arg"), DEFAULT, ids=[a.name for a, _, _ in DEFAULT])
def test_fitted_order_of_representative_methods(alg, build, arg):
    _check_order(alg, build, arg)


@pytest.mark.exhaustive
@pytest.mark.parametrize(("alg", "build", "arg"), EXHAUSTIVE, ids=[a.name for a, _, _ in EXHAUSTIVE])
def test_fitted_order_of_every_other_method(alg, build, arg):
    _check_order(alg, build, arg)


def test_the_lists_cover_every_fixed_step_capable_algorithm():
    from pysciml.algorithms import ALGORITHMS
    from pysciml.algorithms_adams import ADAMS_ALGORITHMS
    from pysciml.algorithms_firk import FIRK_ALGORITHMS
    from pysciml.algorithms_native import NATIVE_ALGORITHMS

    covered = {a.name for a, _, _ in DEFAULT + EXHAUSTIVE}
    every = {*ALGORITHMS, *NATIVE_ALGORITHMS, *FIRK_ALGORITHMS, *ADAMS_ALGORITHMS, "FBDF", "QNDF"}
    assert covered == every - NOT_FIXED_ORDER, every - NOT_FIXED_ORDER - covered


@pytest.mark.exhaustive
@pytest.mark.parametrize(("alg", "dts"), [
    (ps.VelocityVerlet(), [0.1, 0.05, 0.025]), (ps.Leapfrog(), [0.1, 0.05, 0.025]), (ps.Yoshida4(), [0.2, 0.1, 0.05]),
    (ps.McAte5(), [0.4, 0.2, 0.1]), (ps.Yoshida6(), [0.5, 0.25, 0.125]), (ps.ImplicitMidpoint(), [0.1, 0.05, 0.025]),
], ids=lambda x: getattr(x, "name", ""))
def test_fitted_order_of_symplectic_methods(alg, dts):
    """The harmonic oscillator H = (p^2 + q^2) / 2 as a HamiltonianProblem (state (q, p))."""
    q0, p0 = torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    prob = ps.HamiltonianProblem(lambda q, p: 0.5 * (p**2).sum(-1) + 0.5 * (q**2).sum(-1), q0, p0, (0.0, 5.0),
                                 separable=True)

    def exact(ts):
        return torch.stack([torch.cat([q0 * math.cos(t) + p0 * math.sin(t), -q0 * math.sin(t) + p0 * math.cos(t)])
                            for t in ts.tolist()])

    c = convergence(alg, prob, dts, reference=exact)
    assert abs(c.order - alg.order) <= 0.2, c


# --------------------------------------------------------------------------------------------- user solvers


def euler_solver(prob, saveat, dt):
    """A user's forward Euler on [t0, t1] (saves at t0 and t1: convergence's default save times)."""
    t0, t1 = prob.tspan
    n = max(1, round((t1 - t0) / dt))
    h, u = (t1 - t0) / n, prob.u0.clone()
    for k in range(n):
        u = u + h * prob.rhs(torch.tensor(t0 + k * h, dtype=u.dtype), u)
    return torch.stack([prob.u0, u])


def heun_solver(prob, saveat, dt):
    """A user's Heun method (explicit trapezoidal rule), returning its step count too."""
    t0, t1 = prob.tspan
    n = max(1, round((t1 - t0) / dt))
    h, u = (t1 - t0) / n, prob.u0.clone()
    for k in range(n):
        t = torch.tensor(t0 + k * h, dtype=u.dtype)
        k1 = prob.rhs(t, u)
        k2 = prob.rhs(t + h, u + h * k1)
        u = u + 0.5 * h * (k1 + k2)
    return torch.stack([prob.u0, u]), {"steps": n}


def test_first_order_user_solver_is_reported_as_first_order():
    prob, exact = P.nonlinear_exact()
    c = convergence(euler_solver, prob, [0.01, 0.005, 0.0025], reference=exact)
    assert abs(c.order - 1.0) <= 0.05 and c.fit.high < 1.5, c
    assert c.expected is None and c.name == "euler_solver"
    assert [r["nf"] for r in c.records] == [200, 400, 800]  # prob.f calls counted: one per Euler step
    decay = ps.ODEProblem(lambda t, u: -u, torch.ones(2, dtype=torch.float64), (0.0, 1.0))  # f without p
    d = convergence(euler_solver, decay, [0.1, 0.05], reference=lambda ts: torch.exp(-ts)[:, None].expand(-1, 2))
    assert [r["nf"] for r in d.records] == [10, 20] and abs(d.order - 1.0) < 0.1


def test_second_order_user_callable_is_reported_as_second_order():
    prob, exact = P.nonlinear_exact()
    c = convergence(heun_solver, prob, [0.05, 0.025, 0.0125], reference=exact)
    assert abs(c.order - 2.0) <= 0.1 and c.fit.low > 1.5, c
    assert [r["steps"] for r in c.records] == [40, 80, 160]
    assert [r["nf"] for r in c.records] == [80, 160, 320]


def test_fit_order_slope_and_interval():
    dts = [0.1, 0.05, 0.025, 0.0125]
    fit = fit_order(dts, [3.0 * d**2 for d in dts])
    assert fit.order == pytest.approx(2.0, abs=1e-12) and fit.stderr == pytest.approx(0.0, abs=1e-10)
    noisy = fit_order(dts, [d**2 * (1.0 + 0.3 * (-1) ** i) for i, d in enumerate(dts)])
    assert noisy.low < noisy.order < noisy.high and noisy.n == 4
    two = fit_order(dts[:2], [1e-2, 2.5e-3])
    assert two.order == pytest.approx(2.0) and math.isnan(two.stderr)
    assert fit_order(dts, [math.nan, 0.0, 1e-3, math.inf]).n == 1  # not finite/positive: left out


# ----------------------------------------------------------------------------------------- work-precision


def test_work_precision_is_monotone_in_tolerance():
    """Tsit5, Rodas5P and SciPy DOP853 on the smooth oscillator: every error decreases as rtol decreases
    (no non-monotonicity allowed for these well-behaved methods on this problem)."""
    prob, exact = P.nonlinear_exact()
    wp = work_precision(prob, {"Tsit5": ps.Tsit5(), "Rodas5P": ps.Rodas5P(), "DOP853": "DOP853"},
                        [1e-8, 1e-4, 1e-6], reference=exact, timing=None)
    assert wp.tolerances == [1e-4, 1e-6, 1e-8]
    for name in wp.names:
        errs = wp.errors(name)
        assert all(math.isfinite(e) for e in errs) and errs[0] > errs[1] > errs[2], (name, errs)
        for r in wp.rows(name):
            assert r["success"] and r["nf"] > 0 and r["steps"] > 0 and r["time"] > 0 and r["atol"] == r["rtol"]
    assert wp.errors("Tsit5")[-1] < 1e-7
    pts = wp.curve("Tsit5")
    assert wp.time_at_error("Tsit5", pts[0][0]) == pytest.approx(pts[0][1])
    assert wp.time_at_error("Tsit5", pts[-1][0] * 10) is None


def test_work_precision_timing_rule_and_budget():
    prob, exact = P.nonlinear_exact()
    wp = work_precision(prob, {"BS3": ps.BS3()}, [1e-3, 1e-4], reference=exact,
                        timing=TimingRule(warmup=1, max_runs=2, slow_cap=math.inf), atol=1e-9)
    assert [r["runs"] for r in wp.records] == [2, 2] and all(r["atol"] == 1e-9 for r in wp.records)
    capped = work_precision(prob, {"BS3": ps.BS3()}, [1e-3, 1e-4, 1e-5], reference=exact,
                            timing=TimingRule(warmup=0, max_runs=1, slow_cap=1e-9))
    assert [r["rtol"] for r in capped.records] == [1e-3] and capped.skipped == [("BS3", 1e-4), ("BS3", 1e-5)]


def test_user_callable_in_work_precision_and_error_measures():
    """A fixed-step user solver maps the tolerance to a step size; l2 and max need the reference everywhere."""
    prob, exact = P.nonlinear_exact()

    def heun_tol(prob, saveat, rtol, atol):
        states, info = heun_solver(prob, saveat, dt=math.sqrt(rtol))
        return states, info

    wp = work_precision(prob, {"heun": heun_tol}, [1e-4, 1e-6], reference=exact, error="max", timing=None)
    assert [r["steps"] for r in wp.records] == [200, 2000]  # span 2, dt = sqrt(rtol)
    errs = wp.errors("heun")
    assert errs[1] < errs[0] / 50  # second order: 10x smaller dt, ~100x smaller error


# ------------------------------------------------------------------------------------------------ reference


def test_reference_solution_agrees_with_stored_certified_reference():
    """Van der Pol (mu = 1e3) to t = 6.3: SciPy Radau and pysciml Rodas5P at rtol 1e-10 (per-component atol as in
    scripts/compute_references.py) agree with each other and with the stored reference (accuracy 1e-12)."""
    prob = P.van_der_pol(1e3, (0.0, 6.3))
    rtol = 1e-10
    ref = reference_solution(prob, rtol=rtol, atol=rtol * torch.tensor([1e-3, 1e-6], dtype=torch.float64))
    stored = P.reference("van_der_pol", 6.3, mu=1e3)
    assert ref.methods == ["SciPy Radau", "Rodas5P()"]
    assert ref.agreement.max_rel < 1e-8
    for u in ref.solutions.values():
        assert float(((u[-1] - stored).abs() / stored.abs()).max()) < 1e-8
    assert float(((ref.final - stored).abs() / stored.abs()).max()) < 1e-10
    # used as the reference of a work-precision sweep
    wp = work_precision(prob, {"Rodas5P": ps.Rodas5P()}, [1e-4], reference=ref, atol_ratio=1e-3, timing=None)
    assert wp.reference_label.startswith("SciPy Radau reference") and wp.errors("Rodas5P")[0] < 1e-2


@pytest.mark.exhaustive
@pytest.mark.parametrize(("name", "t1", "scale"), [("lotka_volterra", 10.0, 1e-3), ("hires", 321.8122, 1e-6)])
def test_reference_solution_agrees_with_more_stored_references(name, t1, scale):
    prob = getattr(P, name)().remake(tspan=(0.0, t1))
    ref = reference_solution(prob, rtol=1e-10, atol=1e-10 * scale)
    stored = P.reference(name, t1)
    assert ref.agreement.max_rel < 1e-8
    assert float(((ref.final - stored).abs() / stored.abs()).max()) < 1e-9


@pytest.mark.exhaustive
def test_default_reference_is_computed_when_none_is_given():
    prob, exact = P.nonlinear_exact()
    c = convergence(ps.RK4(), prob, [0.05, 0.025], reference=None)
    exact_c = convergence(ps.RK4(), prob, [0.05, 0.025], reference=exact)
    assert c.errors == pytest.approx(exact_c.errors, rel=1e-4)


# ---------------------------------------------------------------------------------------------- export


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_csv_round_trip_and_plots(tmp_path):
    prob, exact = P.nonlinear_exact()
    c = convergence(ps.Midpoint(), prob, [0.1, 0.05], reference=exact)
    wp = work_precision(prob, {"Tsit5": ps.Tsit5(), "Radau": "Radau"}, [1e-4, 1e-5], reference=exact, timing=None)
    for result in (c, wp):
        records = result.to_records()
        back = read_csv(result.to_csv(tmp_path / "r.csv"))
        assert len(back) == len(records)
        for r, s in zip(records, back, strict=True):
            assert r.keys() == s.keys() and all(_same(r[k], s[k]) for k in r), (r, s)
    assert c.plot(tmp_path / "c.png").stat().st_size > 1000
    assert wp.plot(tmp_path / "wp.png", title="t").stat().st_size > 1000
    assert "fitted order" in str(c) and "Radau" in str(wp)


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_input_raises_input_error_naming_the_argument():
    prob, exact = P.nonlinear_exact()
    cases = [
        (lambda: convergence("Radau", prob, [0.1, 0.05], exact), "fixed-step"),
        (lambda: convergence(ps.RK4(), prob, [0.1], exact), "two different"),
        (lambda: convergence(ps.RK4(), prob, [0.1, -0.05], exact), "dts"),
        (lambda: convergence(ps.RK4(), prob, [10.0, 5.0], exact), "span"),
        (lambda: convergence(ps.RK4(), prob, [0.1, 0.05], exact, error="l1"), "error="),
        (lambda: convergence(ps.RK4(), prob, [0.1, 0.05], exact(2.0), error="l2"), "every save time"),
        (lambda: convergence(42, prob, [0.1, 0.05], exact), "solver"),
        (lambda: convergence(ps.RK4(), "prob", [0.1, 0.05], exact), "prob"),
        (lambda: convergence(lambda prob, saveat, dt: prob.u0, prob, [0.1, 0.05], exact), "shape"),
        (lambda: work_precision(prob, {}, [1e-4], exact), "solvers"),
        (lambda: work_precision(prob, {"x": "RK4X"}, [1e-4], exact), "SciPy method"),
        (lambda: work_precision(prob, {"t": ps.Tsit5()}, [1e-4, 2.0], exact), "tolerance"),
        (lambda: work_precision(prob, {"t": ps.Tsit5()}, [1e-4], exact, timing=5), "timing"),
        (lambda: work_precision(prob, {"t": ps.Tsit5()}, [1e-4], torch.zeros(3)), "reference"),
        (lambda: reference_solution(prob, methods=("Radau",)), "exactly two"),
        (lambda: reference_solution(prob, rtol=0.0), "rtol"),
        (lambda: TimingRule(max_runs=0), "max_runs"),
    ]
    for call, words in cases:
        with pytest.raises(ps.InputError, match=words):
            call()


def test_failed_solve_is_reported_not_raised():
    """A solve that fails numerically (maxiters) gives a nan error and its message, never a number."""
    prob, exact = P.nonlinear_exact()
    wp = work_precision(prob, {"Tsit5": ps.Tsit5()}, [1e-6], reference=exact, timing=None,
                        solve_options={"maxiters": 3})
    r = wp.records[0]
    assert not r["success"] and math.isnan(r["error"]) and "maxiters" in r["message"].lower(), r
