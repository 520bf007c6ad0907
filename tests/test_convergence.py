"""Observed convergence order of every algorithm (fixed steps) within +-0.3 of its nominal order, and errors
in bands around measured values (fixed-step errors are a property of the tableau: [0.5x, 2x]; adaptive
errors depend on step control too: [1/3 x, 3x]). Re-measure and update the tables with any deliberate change."""

from __future__ import annotations

import pytest
import torch
from helpers import kepler_problem, nonlinear_problem, observed_order, split_problem

import pysciml as ps

# (algorithm, numbers of steps over [0, 3] on the Kepler problem), chosen by a scan so errors sit inside the
# asymptotic range and well above round-off. Vern7 has no such range on Kepler in float64 (pre-asymptotic
# down to 1e-13), so it is measured on the oscillatory scalar pair instead (steps over [0, 2]).
CASES = [
    (ps.Euler(), [240, 320, 480]),
    (ps.AdaptiveHeun(), [60, 120, 240]),
    (ps.Ralston(), [60, 120, 240]),
    (ps.Midpoint(), [60, 120, 240]),
    (ps.Heun(), [60, 120, 240]),
    (ps.RK4(), [40, 80, 160]),
    (ps.BS3(), [40, 80, 160]),
    (ps.Tsit5(), [40, 80, 160]),
    (ps.DP5(), [80, 160, 320]),
    (ps.Vern7(), [40, 60, 80]),
    (ps.Rosenbrock23(), [60, 120, 240]),
    (ps.ROS3P(), [80, 160, 320]),
    (ps.Rodas4(), [160, 320, 640]),
    # round-off (its coefficients reach 300) flattens the error at 640 steps, and on an AVX-512 machine already at
    # 320: 3.5e-11 there against 1.0e-11 on earlier ones (40 -> 80 -> 160 steps: orders 5.07 and 5.05)
    (ps.Rodas5(), [40, 80, 160]),
    (ps.Rodas5P(), [160, 320, 640]),
    (ps.KenCarp3(), [80, 160, 320]),
    (ps.KenCarp4(), [80, 160, 320]),
    (ps.KenCarp5(), [80, 160, 320]),
    (ps.Kvaerno3(), [80, 160, 320]),
    (ps.Kvaerno5(), [80, 160, 320]),
    (ps.ImplicitEuler(), [240, 320, 480]),
    (ps.Trapezoid(), [60, 120, 240]),
    (ps.SDIRK2(), [60, 120, 240]),
    (ps.TRBDF2(), [60, 120, 240]),
]


# max-norm error at the finest step of each CASES row (measured; float64 CPU)
FINEST_ERROR = {
    "Euler": 8.096e-2, "Midpoint": 3.691e-4, "Heun": 1.615e-3, "RK4": 9.294e-8, "BS3": 2.862e-6, "Tsit5": 8.514e-11,
    "DP5": 2.822e-12, "Vern7": 1.86e-13, "Rosenbrock23": 5.974e-4, "ROS3P": 1.604e-5, "Rodas4": 8.101e-11,
    "Rodas5": 3.289e-10, "Rodas5P": 1.969e-12, "KenCarp3": 2.482e-6, "KenCarp4": 9.555e-10, "KenCarp5": 1.51e-11,
    "Kvaerno3": 2.314e-6, "Kvaerno5": 5.969e-11, "AdaptiveHeun": 1.615e-3, "Ralston": 7.824e-4,
    "ImplicitEuler": 9.087e-2, "Trapezoid": 4.423e-4, "SDIRK2": 1.55e-3, "TRBDF2": 2.139e-4,
}


def test_every_algorithm_has_a_convergence_case():
    from pysciml.algorithms import ALGORITHMS

    assert {a.name for a, _ in CASES} == set(ALGORITHMS) and set(FINEST_ERROR) == set(ALGORITHMS)


def test_every_tableau_runs_as_an_algorithm_of_its_name():
    """Each algorithm names its tableau directly (the constant, carrying the algorithm's name), and every tableau
    of the engine's tables belongs to an algorithm (no orphans)."""
    from pysciml.algorithms import ALGORITHMS
    from pysciml.algorithms_native import NATIVE_ALGORITHMS
    from pysciml.engine.tableaus.ark import ARK_TABLEAUS, IMEX2_TABLEAUS
    from pysciml.engine.tableaus.explicit import EXPLICIT_TABLEAUS
    from pysciml.engine.tableaus.rosenbrock import ROSENBROCK_TABLEAUS
    from pysciml.engine.tableaus.sdirk import SDIRK_TABLEAUS

    classes = {**ALGORITHMS, **NATIVE_ALGORITHMS}
    for name, cls in classes.items():
        assert cls().tableau.name == name
    tables = (EXPLICIT_TABLEAUS, ROSENBROCK_TABLEAUS, ARK_TABLEAUS, IMEX2_TABLEAUS, SDIRK_TABLEAUS)
    tableaus = {id(tab): tab.name for table in tables for tab in table.values()}
    assert tableaus == {id(cls().tableau): name for name, cls in classes.items()}


@pytest.mark.parametrize(("alg", "steps"), CASES, ids=[a.name for a, _ in CASES])
def test_fixed_step_order(alg, steps):
    prob, exact = nonlinear_problem() if isinstance(alg, ps.Vern7) else kepler_problem()
    t1 = prob.tspan[1]
    dts = [t1 / n for n in steps]
    errors = []
    for dt in dts:
        # rtol/atol set the Newton tolerance of implicit stages: tight, so discretisation error dominates
        sol = ps.solve(prob, alg, adaptive=False, dt=dt, rtol=1e-13, atol=1e-13)
        assert sol.retcode == ps.ReturnCode.Success
        assert sol.stats.naccept == round(t1 / dt)
        errors.append(float((sol.u[-1] - exact(t1)).abs().max()))
    assert min(errors) > 1e-13, errors  # above round-off
    order = observed_order(dts, errors)
    assert abs(order - alg.order) <= 0.3, (alg.name, errors, order)
    m = FINEST_ERROR[alg.name]
    assert m / 2 <= errors[-1] <= 2 * m, (alg.name, errors[-1], m)


SPLIT_FINEST_ERROR = {"KenCarp3": 1.541e-6, "KenCarp4": 2.716e-9, "KenCarp5": 8.032e-11}  # measured, dt = 0.003125


@pytest.mark.parametrize("alg", [ps.KenCarp3(), ps.KenCarp4(), ps.KenCarp5()], ids=lambda a: a.name)
def test_imex_order_on_split_problem(alg):
    prob, exact = split_problem(stiffness=10.0)  # eigenvalues -10, -30 of the implicit part
    dts = [0.0125, 0.00625, 0.003125]  # ESDIRK stage order 2: asymptotic once h |lambda| << 1
    errors = []
    for dt in dts:
        sol = ps.solve(prob, alg, adaptive=False, dt=dt, rtol=1e-13, atol=1e-13)
        errors.append(float((sol.u[-1] - exact(1.0)).abs().max()))
    order = observed_order(dts, errors)
    assert abs(order - alg.order) <= 0.3, (alg.name, errors, order)
    m = SPLIT_FINEST_ERROR[alg.name]
    assert m / 2 <= errors[-1] <= 2 * m, (alg.name, errors[-1], m)


# max-norm error / rtol at t = 2 for rtol = 1e-5, 1e-7, 1e-9 (atol = rtol), and the accepted steps (measured)
ADAPTIVE_MEASURED = {
    "Tsit5": ((0.461, 0.862, 0.142), (15, 33, 78)),
    "Rodas5P": ((0.986, 2.33, 3.54), (29, 63, 153)),
    "KenCarp4": ((5.27, 6.06, 5.03), (24, 62, 181)),
}


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()], ids=lambda a: a.name)
def test_adaptive_error_tracks_tolerance(alg):
    """Tightening rtol by 100x shrinks the global error by a large factor; error/rtol and the accepted steps
    sit in bands around the measured values ([1/3 x, 3x] and [0.8x - 2, 1.25x + 2])."""
    prob, exact = nonlinear_problem()
    errs = []
    m_ratio, m_steps = ADAPTIVE_MEASURED[alg.name]
    for i, rtol in enumerate((1e-5, 1e-7, 1e-9)):
        sol = ps.solve(prob, alg, rtol=rtol, atol=rtol)
        errs.append(float((sol.u[-1] - exact(2.0)).abs().max()))
        assert m_ratio[i] / 3 <= errs[-1] / rtol <= 3 * m_ratio[i], (alg.name, rtol, errs[-1] / rtol)
        assert 0.8 * m_steps[i] - 2 <= sol.stats.naccept <= 1.25 * m_steps[i] + 2, (alg.name, rtol, sol.stats)
    assert errs[2] < errs[0] / 100


# max-norm error at t = 2 of float32 solves at rtol 1e-5, atol 1e-6 (measured); band [1/3 x, 3x]
FLOAT32_ERROR = {"Tsit5": 1.132e-6, "Rodas5P": 5.722e-6, "KenCarp4": 1.448e-5}


def test_float32_solve_keeps_dtype_and_accuracy():
    prob, exact = nonlinear_problem(torch.float32)
    for alg in (ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()):
        sol = ps.solve(prob, alg, rtol=1e-5, atol=1e-6)
        assert sol.u.dtype == torch.float32 and sol.t.dtype == torch.float32
        assert sol(torch.tensor(1.0)).dtype == torch.float32
        err, m = float((sol.u[-1] - exact(2.0)).abs().max()), FLOAT32_ERROR[alg.name]
        assert m / 3 <= err <= 3 * m, (alg.name, err, m)
