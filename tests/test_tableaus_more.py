"""The low-order methods added for torchdiffeq's method strings (issue 18): AdaptiveHeun, Ralston, RKF12, Heun3
(explicit; their tableau data is also checked in tests/test_tableaus_explicit.py) and ImplicitEuler, Trapezoid,
SDIRK2, Alexander2, TRBDF2 (the (E)SDIRK tableaus of :mod:`pysciml.engine.tableaus.sdirk`).

Order conditions to round-off for the method and its embedded formula, stability functions, and, through the
torch engine: the measured convergence order of fixed-step solves, the global error of adaptive solves on a
linear problem, and large steps on a stiff linear problem.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pysciml as ps
from pysciml.analysis.order_conditions import max_order_satisfied, rk_order_residuals, tree_order
from pysciml.engine.tableaus._base import ARKTableau, dense_matrix
from pysciml.engine.tableaus.sdirk import SDIRK_TABLEAUS

TABS = list(SDIRK_TABLEAUS.values())
IDS = list(SDIRK_TABLEAUS)


def _mats(tab: ARKTableau) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    A = np.array(dense_matrix(tab.aI, tab.stages, diagonal=True))
    b = np.array(tab.b)
    return A, b, b - np.array(tab.btilde)


def _worst(residuals: dict) -> dict[int, float]:
    out: dict[int, float] = {}
    for t, r in residuals.items():
        out[tree_order(t)] = max(out.get(tree_order(t), 0.0), abs(r))
    return out


def _stability(tab: ARKTableau, z: complex) -> complex:
    A, b, _ = _mats(tab)
    s = tab.stages
    return complex(1 + z * b @ np.linalg.solve(np.eye(s) - z * A, np.ones(s)))


# ------------------------------------------------------------------------------------------ tableau data
@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_structure(tab: ARKTableau) -> None:
    """Zero-weight explicit first stage, constant diagonal gamma, nodes = row sums, references given."""
    A, b, _ = _mats(tab)
    assert tab.aI[0] == (0.0,) and tab.c[0] == 0.0 and tab.aE is None
    assert all(row[-1] == tab.gamma for row in tab.aI[1:])
    np.testing.assert_allclose(A.sum(axis=1), tab.c, rtol=0, atol=1e-15)
    assert tab.stiffly_accurate == (tab.aI[-1] == tab.b and tab.c[-1] == 1.0)
    assert tab.reference.strip() and tab.name in ps.__all__


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_order_conditions(tab: ARKTableau) -> None:
    """Every condition up to the order holds to round-off (1e-14); some of the next order fail by far."""
    A, b, b_hat = _mats(tab)
    for weights, p in ((b, tab.order), (b_hat, tab.embedded_order)):
        res = rk_order_residuals(A, weights, p + 1)
        assert max_order_satisfied(res, 1e-14) == p, _worst(res)
        assert _worst(res)[p + 1] > 1e-3, _worst(res)


def test_published_values() -> None:
    """gamma and TR-BDF2's error weights as OrdinaryDiffEq.jl stores them (b_hat - b, negated here)."""
    assert SDIRK_TABLEAUS["TRBDF2"].c[1] == pytest.approx(2 - math.sqrt(2), abs=1e-16)
    ode_jl = ((1 - math.sqrt(2)) / 3, 1 / 3, (math.sqrt(2) - 2) / 3)
    np.testing.assert_allclose(SDIRK_TABLEAUS["TRBDF2"].btilde, [-x for x in ode_jl], rtol=0, atol=1e-16)
    assert SDIRK_TABLEAUS["Alexander2"].gamma == pytest.approx((2 - math.sqrt(2)) / 2, abs=1e-16)
    assert SDIRK_TABLEAUS["SDIRK2"].gamma == SDIRK_TABLEAUS["ImplicitEuler"].gamma == 1.0


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_stability_function(tab: ARKTableau) -> None:
    """A-stable (|R| <= 1 on the imaginary axis and the negative real axis); L-stable ones vanish at infinity;
    R(-inf) is -1 for the trapezoidal rule and -1/2 for SDIRK2."""
    ys = np.logspace(-3, 6, 300)
    assert max(abs(_stability(tab, 1j * y)) for y in ys) <= 1 + 1e-12
    assert max(abs(_stability(tab, -x)) for x in ys) <= 1 + 1e-12
    at_inf = _stability(tab, -1e9).real
    expected = {"Trapezoid": -1.0, "SDIRK2": -0.5}.get(tab.name, 0.0)
    assert at_inf == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------------ convergence
OMEGA = 3.0
T_END = 1.0


def _f(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Nonlinear and non-autonomous; exact solution ``(exp(sin(omega t)), 1 / (1 + (omega t)^2))``."""
    return torch.stack([OMEGA * u[0] * torch.cos(OMEGA * t), -2.0 * OMEGA**2 * t * u[1] ** 2])


def _exact(t: float) -> torch.Tensor:
    return torch.tensor([math.exp(math.sin(OMEGA * t)), 1.0 / (1.0 + (OMEGA * t) ** 2)], dtype=torch.float64)


NEW = [ps.AdaptiveHeun(), ps.Ralston(), ps.RKF12(), ps.Heun3(), ps.RK38(), ps.ImplicitEuler(), ps.Trapezoid(),
       ps.SDIRK2(), ps.Alexander2(), ps.TRBDF2()]


def _fixed_error(alg: ps.Algorithm, n: int) -> float:
    prob = ps.ODEProblem(_f, _exact(0.0), (0.0, T_END))
    sol = ps.solve(prob, alg, dt=T_END / n, adaptive=False)
    exact = torch.stack([_exact(float(t)) for t in sol.t])
    return float((sol.u - exact).abs().max())  # over the whole run: the error at one time can cancel


@pytest.mark.parametrize("alg", NEW, ids=[a.name for a in NEW])
def test_measured_order(alg: ps.Algorithm) -> None:
    """Fixed-step errors at n, 2n, 4n steps: the fitted slope is within 0.2 of the nominal order (measured:
    2.00, 2.04, 1.97, 2.97, 4.05 (RK38) explicit; 1.00, 2.02, 1.99, 2.03, 2.01 implicit)."""
    steps = np.array([64, 128, 256])
    errors = np.array([_fixed_error(alg, int(n)) for n in steps])
    assert np.all(errors > 1e-12), errors
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - alg.order) <= 0.2, (slope, errors)


# ------------------------------------------------------------------------------------------ adaptive solves
A_LIN = torch.tensor([[-1.0, 2.0], [-2.0, -1.0]], dtype=torch.float64)
U0_LIN = torch.tensor([1.0, 0.5], dtype=torch.float64)

# Largest global error / tol measured at tol = 1e-3, 1e-4, 1e-5 (rtol = atol; ImplicitEuler, whose min_rtol is
# 1e-3: 1e-2, 1e-3) on the damped rotation, and the bound asserted. Methods that advance the higher-order
# solution (local extrapolation) stay below the tolerance; ImplicitEuler and TRBDF2 control the local error of
# the solution they advance, so their global error grows like (number of steps) x tol (measured 6-24x and
# 3-18x); RKF12's estimate is Fehlberg's first-order formula, whose error constant is tiny, so it
# underestimates (measured 38-116x), as torchdiffeq's fehlberg2 does.
ADAPTIVE_BOUND = {"AdaptiveHeun": 1.0, "Ralston": 1.0, "Trapezoid": 1.0, "SDIRK2": 1.0, "Alexander2": 1.0,
                  "TRBDF2": 30.0, "ImplicitEuler": 40.0, "RKF12": 200.0}
ADAPTIVE = [a for a in NEW if a.is_adaptive]


@pytest.mark.parametrize("alg", ADAPTIVE, ids=[a.name for a in ADAPTIVE])
def test_adaptive_error_on_a_linear_problem(alg: ps.Algorithm) -> None:
    assert {a.name for a in ADAPTIVE} == set(ADAPTIVE_BOUND)
    exact = torch.linalg.matrix_exp(2.0 * A_LIN) @ U0_LIN
    ratios, steps = [], []
    for tol in (1e-2, 1e-3) if alg.name == "ImplicitEuler" else (1e-3, 1e-4, 1e-5):
        sol = ps.solve(ps.ODEProblem(lambda t, u: A_LIN @ u, U0_LIN, (0.0, 2.0)), alg, rtol=tol, atol=tol)
        assert sol.retcode == ps.ReturnCode.Success
        ratios.append(float((sol.u[-1] - exact).abs().max()) / tol)
        steps.append(len(sol.t))
    assert max(ratios) <= ADAPTIVE_BOUND[alg.name], ratios
    assert steps == sorted(set(steps)), steps  # tighter tolerances take more steps


# ------------------------------------------------------------------------------------------ stiff problems
IMPLICIT = [a for a in NEW if a.is_implicit]


LAM = -1e4


def _stiff(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``u' = lambda (u - cos t) - sin t``: solution ``cos t`` plus a transient ``exp(lambda t)``."""
    return LAM * (u - torch.cos(t)) - torch.sin(t)


def _stiff_fixed(alg: ps.Algorithm, u0: float) -> tuple[ps.ODESolution, torch.Tensor]:
    prob = ps.ODEProblem(_stiff, torch.tensor([u0], dtype=torch.float64), (0.0, 1.0))
    sol = ps.solve(prob, alg, dt=0.05, adaptive=False)  # dt * lambda = -500; explicit limits are ~2e-4
    return sol, (sol.u[:, 0] - torch.cos(sol.t)).abs()


@pytest.mark.parametrize("alg", IMPLICIT, ids=[a.name for a in IMPLICIT])
def test_stiff_linear_large_steps(alg: ps.Algorithm) -> None:
    """On the slow solution (u0 = 1) every method takes dt = 0.05 stably (measured end errors 1e-8 to 1.4e-6)."""
    sol, err = _stiff_fixed(alg, 1.0)
    assert sol.retcode == ps.ReturnCode.Success
    assert float(err.max()) <= 1e-5, err


@pytest.mark.parametrize("alg", [ps.ImplicitEuler(), ps.SDIRK2(), ps.Alexander2(), ps.TRBDF2(smooth_est=True)],
                         ids=["ImplicitEuler", "SDIRK2", "Alexander2", "TRBDF2"])
def test_stiff_transient_damped(alg: ps.Algorithm) -> None:
    """From u0 = 2 (a transient of size 1) the damping methods kill the transient in a step or two (|R(-500)|
    <= 1/2) and end within 1e-5. TRBDF2 needs ``smooth_est=True`` (OrdinaryDiffEq's default) here: its raw
    estimate includes ``f(t_n, u_n)`` of the first step, which the fixed-step check reads as a blow-up."""
    sol, err = _stiff_fixed(alg, 2.0)
    assert sol.retcode == ps.ReturnCode.Success
    assert float(err[-1]) <= 1e-5, err
    assert float(err[5]) <= 0.05, err  # SDIRK2 halves it per step (R(-500) ~ -1/2), the others damp it at once


def test_trapezoid_does_not_damp_a_stiff_transient() -> None:
    """R(-500) = -0.996: the trapezoidal rule keeps the transient alive (alternating sign, error ~0.99) and the
    fixed-step check ends the solve as Unstable, with the error still near 1."""
    sol, err = _stiff_fixed(ps.Trapezoid(), 2.0)
    assert sol.retcode == ps.ReturnCode.Unstable
    assert float(err[-1]) >= 0.9, err


def test_stiff_adaptive_takes_large_steps() -> None:
    """Adaptive solves cross the stiff transient and then step far beyond the explicit limit 2e-4 (measured
    64-395 steps on [0, 2], end errors below 4e-6)."""
    for alg in (ps.TRBDF2(), ps.Alexander2(), ps.ImplicitEuler(), ps.SDIRK2(), ps.Trapezoid()):
        prob = ps.ODEProblem(_stiff, torch.tensor([2.0], dtype=torch.float64), (0.0, 2.0))
        sol = ps.solve(prob, alg, rtol=1e-4, atol=1e-6)
        assert sol.retcode == ps.ReturnCode.Success
        assert len(sol.t) < 400, (alg.name, len(sol.t))
        assert float((sol.u[-1, 0] - math.cos(2.0)).abs()) < 1e-5, alg.name


# ------------------------------------------------------------------------------------------ DP8
def test_dp8_orders_of_its_three_formulas() -> None:
    """DOP853's weights: b of order 8, b - btilde (Hairer's er) of order 5, b - btilde3 (bhh) of order 3, each
    to round-off (1e-13) and failing the next order by far."""
    from pysciml.engine.tableaus.dp8 import DP8

    A = np.array(dense_matrix(DP8.a, DP8.stages))
    b = np.array(DP8.b)
    for weights, p in ((b, 8), (b - np.array(DP8.btilde), 5), (b - np.array(DP8.btilde3), 3)):
        res = rk_order_residuals(A, weights, p + 1)
        assert max_order_satisfied(res, 1e-13) == p, _worst(res)
        assert _worst(res)[p + 1] > 1e-6, _worst(res)
    assert DP8.order == 8 and DP8.embedded_order == 5 and DP8.btilde3_order == 3


def test_dp8_combined_error_estimate() -> None:
    """One step: the RMS norm of the stepper's error is DOP853's e5^2 / sqrt(e5^2 + 0.01 e3^2), computed here from
    the stages with numpy, and differs from e5 alone (so the second estimator is really used)."""
    from pysciml.native import make_stepper
    from pysciml.solution import Stats

    prob = ps.ODEProblem(_f, _exact(0.1), (0.1, 1.0))
    atol = torch.full((1, 2), 1e-6, dtype=torch.float64)
    rtol = 1e-5
    stepper = make_stepper(ps.DP8(), prob, Stats(), atol, rtol, False)
    t, u = torch.tensor([0.1], dtype=torch.float64), prob.u0.reshape(1, -1)
    stepper.init(t, u)
    h = 0.2
    res = stepper.step(t, u, torch.tensor([h], dtype=torch.float64))
    k = torch.stack(res.stages)[:, 0].numpy()
    tab = ps.DP8().tableau
    y0, y1 = u[0].numpy(), res.u_new[0].numpy()
    scale = 1e-6 + rtol * np.maximum(np.abs(y0), np.abs(y1))

    def rms(v: np.ndarray) -> float:
        return float(np.sqrt(np.mean((v / scale) ** 2)))

    e5, e3 = rms(h * np.array(tab.btilde) @ k), rms(h * np.array(tab.btilde3) @ k)
    expected = e5 * e5 / math.sqrt(e5 * e5 + 0.01 * e3 * e3)
    got = rms(res.err[0].numpy())
    assert got == pytest.approx(expected, rel=1e-12)
    assert abs(got - e5) > 0.01 * e5, (got, e5, e3)


def test_dp8_adaptive_error() -> None:
    """Global error / tol on the damped rotation: measured 0.0015 (1e-6) to 0.022 (1e-12), in fewer steps than
    Vern7 (9-32 against 13-61)."""
    exact = torch.linalg.matrix_exp(2.0 * A_LIN) @ U0_LIN
    steps = []
    for tol in (1e-6, 1e-8, 1e-10, 1e-12):
        sol = ps.solve(ps.ODEProblem(lambda t, u: A_LIN @ u, U0_LIN, (0.0, 2.0)), ps.DP8(), rtol=tol, atol=tol)
        assert sol.retcode == ps.ReturnCode.Success
        assert float((sol.u[-1] - exact).abs().max()) <= 0.1 * tol
        steps.append(len(sol.t))
    assert steps == sorted(set(steps)) and steps[-1] <= 40, steps


# ------------------------------------------------------------------------------------------ odeint strings
ODEINT_STRINGS = {"dopri8": "DP8", "fehlberg2": "RKF12", "adaptive_heun": "AdaptiveHeun", "heun2": "Heun",
                  "heun3": "Heun3", "implicit_euler": "ImplicitEuler", "trapezoid": "Trapezoid",
                  "sdirk2": "Alexander2", "trbdf2": "TRBDF2", "implicit_midpoint": "ImplicitMidpoint"}


@pytest.mark.parametrize("method", list(ODEINT_STRINGS))
def test_odeint_method_strings(method: str) -> None:
    """Each torchdiffeq string names its class, and a fixed-step odeint run equals solve with that algorithm
    (same numbers) and is accurate to its order: error at step 0.05 on the rotation below 2 * 0.05^p."""
    from pysciml.odeint import METHOD_ALIASES

    cls = METHOD_ALIASES[method]
    assert cls.__name__ == ODEINT_STRINGS[method]
    t = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([y[1], -y[0]])

    ys = ps.odeint(f, y0, t, method=method, options={"step_size": 0.05}, rtol=1e-10, atol=1e-12)
    sol = ps.solve(ps.ODEProblem(f, y0, (0.0, 1.0)), cls(), dt=0.05, adaptive=False, saveat=t, rtol=1e-10,
                   atol=1e-12)
    torch.testing.assert_close(ys, sol.u, rtol=0, atol=1e-12)
    exact = torch.stack([torch.cos(t), -torch.sin(t)], dim=-1)
    assert float((ys - exact).abs().max()) <= 2 * 0.05 ** cls().order
