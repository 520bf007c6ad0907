"""Rosenbrock tableau data: structure, order conditions, ode23s equivalence, dense output, convergence, stability.

Everything numerical here uses a small numpy reference implementation of the transformed step documented in
``pysciml/engine/tableaus/_base.py`` (exact Jacobian, ``M = I``), independent of the torch engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from pysciml.analysis import rosenbrock_conditions as rc
from pysciml.engine.tableaus._base import RosenbrockTableau, dense_matrix
from pysciml.engine.tableaus.rosenbrock import ROSENBROCK23, ROSENBROCK_TABLEAUS

TABS = list(ROSENBROCK_TABLEAUS.values())
IDS = list(ROSENBROCK_TABLEAUS)
DENSE_TABS = [t for t in TABS if t.dense is not None]

Vec = np.ndarray
F = Callable[[float, Vec], Vec]


# ------------------------------------------------------------------------------------ reference step
def ros_step(tab: RosenbrockTableau, f: F, jac: F, dfdt: F, t: float, u: Vec, h: float):
    """One transformed Rosenbrock step (``_base`` convention); returns ``(u1, err, ks)``."""
    s = tab.stages
    a, C = dense_matrix(tab.a, s), dense_matrix(tab.C, s)
    W = np.eye(u.size) / (tab.gamma * h) - jac(t, u)
    ft = dfdt(t, u)
    ks: list[Vec] = []
    for i in range(s):
        ui = u + sum((a[i][j] * ks[j] for j in range(i)), np.zeros_like(u))
        rhs = f(t + tab.c[i] * h, ui) + tab.d[i] * h * ft
        rhs = rhs + sum(((C[i][j] / h) * ks[j] for j in range(i)), np.zeros_like(u))
        ks.append(np.linalg.solve(W, rhs))
    u1 = u + sum(bi * k for bi, k in zip(tab.b, ks, strict=True))
    err = sum(ei * k for ei, k in zip(tab.btilde, ks, strict=True))
    return u1, err, ks


def dense_eval(tab: RosenbrockTableau, u: Vec, ks: list[Vec], theta: float) -> Vec:
    """``u + sum_j theta**(j+1) sum_i dense[j][i] k_i``."""
    assert tab.dense is not None
    out = u.copy()
    for j, row in enumerate(tab.dense):
        out = out + theta ** (j + 1) * sum(r * k for r, k in zip(row, ks, strict=True))
    return out


# --------------------------------------------------------------------------------- test problems
# (1) u' = -2 t u^2, u(0) = 1  ->  u = 1/(1+t^2)
def f1(t: float, u: Vec) -> Vec:
    return -2.0 * t * u**2


def j1(t: float, u: Vec) -> Vec:
    return np.array([[-4.0 * t * u[0]]])


def ft1(t: float, u: Vec) -> Vec:
    return -2.0 * u**2


def y1(t: float) -> Vec:
    return np.array([1.0 / (1.0 + t * t)])


# (2) manufactured 2-D system f(t, u) = y'(t) + N(u) - N(y(t)), exact solution y(t)
def _y2(t: float) -> Vec:
    return np.array([math.cos(t) + 0.5 * math.sin(2 * t), math.exp(-t) + 0.3 * t])


def _dy2(t: float) -> Vec:
    return np.array([-math.sin(t) + math.cos(2 * t), -math.exp(-t) + 0.3])


def _ddy2(t: float) -> Vec:
    return np.array([-math.cos(t) - 2 * math.sin(2 * t), math.exp(-t)])


def _n2(u: Vec) -> Vec:
    return np.array([-3.0 * u[0] + u[1] ** 2, u[0] * u[1] - 4.0 * u[1] - u[1] ** 3])


def _jn2(u: Vec) -> Vec:
    return np.array([[-3.0, 2.0 * u[1]], [u[1], u[0] - 4.0 - 3.0 * u[1] ** 2]])


def f2(t: float, u: Vec) -> Vec:
    return _dy2(t) + _n2(u) - _n2(_y2(t))


def j2(t: float, u: Vec) -> Vec:
    return _jn2(u)


def ft2(t: float, u: Vec) -> Vec:
    return _ddy2(t) - _jn2(_y2(t)) @ _dy2(t)


PROBLEMS = {"riccati": (f1, j1, ft1, y1), "system2d": (f2, j2, ft2, _y2)}


# ----------------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_shapes_and_ragged_rows(tab: RosenbrockTableau) -> None:
    s = tab.stages
    assert len(tab.a) == len(tab.C) == len(tab.c) == len(tab.d) == len(tab.btilde) == s
    for i in range(s):
        assert len(tab.a[i]) == i and len(tab.C[i]) == i
    assert tab.gamma > 0 and tab.c[0] == 0.0
    if tab.dense is not None:
        assert all(len(row) == s for row in tab.dense) and tab.dense_order is not None
    if tab.stiffly_accurate:
        assert tab.b == (*tab.a[-1], 1.0)
        assert tab.btilde == tuple(1.0 if i == s - 1 else 0.0 for i in range(s))


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_nodes_and_time_coefficients_consistent(tab: RosenbrockTableau) -> None:
    alpha, gamma_m, _, _ = rc.classical_coefficients(tab)
    assert np.allclose(np.diag(gamma_m), tab.gamma, rtol=0, atol=1e-14)
    assert np.array_equal(gamma_m, np.tril(gamma_m)) and np.array_equal(alpha, np.tril(alpha, -1))
    np.testing.assert_allclose(alpha.sum(axis=1), tab.c, rtol=0, atol=1e-12)  # c_i = sum_j alpha_ij
    np.testing.assert_allclose(gamma_m.sum(axis=1), tab.d, rtol=0, atol=1e-12)  # d_i = sum_{j<=i} gamma_ij


def test_w_tree_counts() -> None:
    """W-trees (colour-1 ``A`` vertices with exactly one child): 1, 2, 5, 13 for orders 1..4."""
    tab = ROSENBROCK23
    counts = [0] * 5
    for t in rc.w_order_residuals(tab, 4):
        counts[rc.tree_order(t)] += 1
    assert counts[1:] == [1, 2, 5, 13]


# ----------------------------------------------------------------------------------- order conditions
@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_order_conditions(tab: RosenbrockTableau) -> None:
    main = rc.rosenbrock_order_residuals(tab, tab.order + 1)
    assert rc.max_order_satisfied(main, tol=1e-11) == tab.order
    assert max(abs(r) for t, r in main.items() if rc.tree_order(t) == tab.order + 1) > 1e-4
    emb = rc.rosenbrock_order_residuals(tab, tab.embedded_order + 1, embedded=True)
    assert rc.max_order_satisfied(emb, tol=1e-11) == tab.embedded_order


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_table71_form_agrees(tab: RosenbrockTableau) -> None:
    """HW Table 7.1 (strict beta', polynomial rhs) = our beta-with-diagonal form once lower orders hold."""
    alpha, gamma_m, b, bhat = rc.classical_coefficients(tab)
    for weights, p, emb in ((b, tab.order, False), (bhat, tab.embedded_order, True)):
        ours = {rc.canonical(t): r for t, r in rc.rosenbrock_order_residuals(tab, 4, embedded=emb).items()}
        table = rc.table71_residuals(alpha, gamma_m, weights)
        assert set(table) == set(ours)
        for t, r in table.items():
            if rc.tree_order(t) <= p + 1:
                assert r == pytest.approx(ours[t], abs=1e-11), (tab.name, t)


def test_table71_relation_random_coefficients() -> None:
    """For arbitrary coefficients: r([.]) = r'([.]) + g r'(.), r([[.]]) = r'([[.]]) + 2g r'([.]) + g^2 r'(.)."""
    rng = np.random.default_rng(0)
    s, g = 4, 0.3
    tab = RosenbrockTableau(
        name="random",
        reference="-",
        gamma=g,
        a=tuple(tuple(rng.normal(size=i)) for i in range(s)),
        C=tuple(tuple(rng.normal(size=i)) for i in range(s)),
        b=tuple(rng.normal(size=s)),
        btilde=(0.0,) * s,
        c=(0.0,) * s,
        d=(0.0,) * s,
        order=1,
        embedded_order=1,
    )
    alpha, gamma_m, b, _ = rc.classical_coefficients(tab)
    ours = {rc.canonical(t): r for t, r in rc.rosenbrock_order_residuals(tab, 3).items()}
    hw = rc.table71_residuals(alpha, gamma_m, b)
    leaf = rc._tree()
    t2, t4 = rc._tree(leaf), rc._tree(rc._tree(leaf))
    assert ours[leaf] == pytest.approx(hw[leaf], abs=1e-12)
    assert ours[t2] == pytest.approx(hw[t2] + g * hw[leaf], abs=1e-12)
    assert ours[t4] == pytest.approx(hw[t4] + 2 * g * hw[t2] + g * g * hw[leaf], abs=1e-12)


def test_rosenbrock23_w_and_exact_jacobian_orders() -> None:
    """ode23s: b is order 2 even as a W-method (any J); the error companion b - btilde = ode23s' y3 is order 3
    only with the exact Jacobian (as a W-method it is order 2)."""
    tab = ROSENBROCK23
    assert rc.max_order_satisfied(rc.w_order_residuals(tab, 3)) == 2
    assert rc.max_order_satisfied(rc.w_order_residuals(tab, 3, embedded=True)) == 2
    assert rc.max_order_satisfied(rc.rosenbrock_order_residuals(tab, 4, embedded=True)) == 3
    for other in TABS:  # the exact-Jacobian Rodas/ROS3P methods are W-methods of order 1 or 2 only
        assert rc.max_order_satisfied(rc.w_order_residuals(other, 3)) <= 2


# ------------------------------------------------------------------------------- ode23s equivalence
def ode23s_step(f: F, jac: F, dfdt: F, t: float, y: Vec, h: float):
    """The original Shampine-Reichelt formulas (ode23s)."""
    d = 1.0 / (2.0 + math.sqrt(2.0))
    e32 = 6.0 + math.sqrt(2.0)
    W = np.eye(y.size) - h * d * jac(t, y)
    T = dfdt(t, y)
    F0 = f(t, y)
    k1 = np.linalg.solve(W, F0 + h * d * T)
    F1 = f(t + 0.5 * h, y + 0.5 * h * k1)
    k2 = np.linalg.solve(W, F1 - k1) + k1
    ynew = y + h * k2
    F2 = f(t + h, ynew)
    k3 = np.linalg.solve(W, F2 - e32 * (k2 - F1) - 2.0 * (k1 - F0) + h * d * T)
    err = h / 6.0 * (k1 - 2.0 * k2 + k3)

    def interp(theta: float) -> Vec:
        return y + h * (theta * (1 - theta) / (1 - 2 * d) * k1 + theta * (theta - 2 * d) / (1 - 2 * d) * k2)

    return ynew, err, interp


@pytest.mark.parametrize("h", [0.3, 0.05])
def test_rosenbrock23_matches_ode23s(h: float) -> None:
    t0, y0 = 0.4, np.array([0.7, 1.3])
    ynew, err, interp = ode23s_step(f2, j2, ft2, t0, y0, h)
    u1, ours_err, ks = ros_step(ROSENBROCK23, f2, j2, ft2, t0, y0, h)
    np.testing.assert_allclose(u1, ynew, rtol=0, atol=1e-13)
    # ode23s' err is y3 - ynew; ours is u1 - u_embedded = ynew - y3 (btilde = b - b_embedded)
    np.testing.assert_allclose(ours_err, -err, rtol=0, atol=1e-13)
    for theta in (0.0, 0.25, 0.5, 0.8, 1.0):
        np.testing.assert_allclose(dense_eval(ROSENBROCK23, y0, ks, theta), interp(theta), rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------- dense output
@pytest.mark.parametrize("tab", DENSE_TABS, ids=[t.name for t in DENSE_TABS])
def test_dense_endpoint_is_b(tab: RosenbrockTableau) -> None:
    assert tab.dense is not None
    np.testing.assert_allclose(np.sum(np.array(tab.dense), axis=0), tab.b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tab", DENSE_TABS, ids=[t.name for t in DENSE_TABS])
def test_dense_output_order_conditions(tab: RosenbrockTableau) -> None:
    """b(theta) . phi(t) = theta**|t| / density(t) for |t| <= dense_order (exact Jacobian), not beyond."""
    assert tab.dense_order is not None
    for theta in (0.3, 0.5, 0.8):
        res = rc.rosenbrock_dense_residuals(tab, theta, tab.dense_order + 1)
        assert rc.max_order_satisfied(res, tol=1e-11) == tab.dense_order, theta


@pytest.mark.parametrize("tab", DENSE_TABS, ids=[t.name for t in DENSE_TABS])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_dense_output_local_order(tab: RosenbrockTableau, problem: str) -> None:
    f, jac, dfdt, exact = PROBLEMS[problem]
    t0 = 0.3
    hs = [0.1 / 2**k for k in range(4)]
    errs = []
    for h in hs:
        _, _, ks = ros_step(tab, f, jac, dfdt, t0, exact(t0), h)
        errs.append(np.abs(dense_eval(tab, exact(t0), ks, 0.5) - exact(t0 + 0.5 * h)).max())
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert tab.dense_order is not None
    assert abs(rates[-1] - (tab.dense_order + 1)) <= 0.4, (errs, rates)


# ----------------------------------------------------------------------------------------- convergence
def integrate(tab: RosenbrockTableau, problem: str, t_end: float, n: int) -> float:
    f, jac, dfdt, exact = PROBLEMS[problem]
    h, t, u = t_end / n, 0.0, exact(0.0)
    for _ in range(n):
        u, _, _ = ros_step(tab, f, jac, dfdt, t, u, h)
        t += h
    return float(np.abs(u - exact(t_end)).max())


@pytest.mark.parametrize("tab", TABS, ids=IDS)
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_fixed_step_convergence(tab: RosenbrockTableau, problem: str) -> None:
    ns = {2: [40, 80, 160], 3: [40, 80, 160], 4: [40, 80, 160], 5: [20, 40, 80]}[tab.order]
    errs = [integrate(tab, problem, 2.0, n) for n in ns]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert abs(rates[-1] - tab.order) <= 0.3, (errs, rates)


# ------------------------------------------------------------------------------------------- stability
def stability_function(tab: RosenbrockTableau, z: float) -> float:
    u1, _, _ = ros_step(
        tab,
        lambda t, u: z * u,
        lambda t, u: np.array([[z]]),
        lambda t, u: np.zeros_like(u),
        0.0,
        np.array([1.0]),
        1.0,
    )
    return float(u1[0])


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_stiff_limit_of_stability_function(tab: RosenbrockTableau) -> None:
    r_inf = abs(stability_function(tab, -1e8))
    if tab.stiffly_accurate or tab is ROSENBROCK23:  # L-stable: R(-inf) = 0
        assert r_inf < 1e-6
    else:
        assert r_inf < 1.0
    for z in (-0.5, -3.0, -30.0, -300.0):  # and damped along the negative real axis
        assert abs(stability_function(tab, z)) < 1.0


def test_ros3p_digits_match_closed_forms() -> None:
    """Lang & Verwer's 16-digit table vs. the closed forms in gamma = 1/2 + sqrt(3)/6 (OrdinaryDiffEq.jl)."""
    from pysciml.engine.tableaus.rosenbrock import ROS3P

    g, r3 = 0.5 + math.sqrt(3.0) / 6.0, math.sqrt(3.0)
    expected = [
        (ROS3P.gamma, g),
        (ROS3P.a[1][0], 1 / g),
        (ROS3P.a[2][0], 1 / g),
        (ROS3P.C[1][0], -1 / g**2),
        (ROS3P.C[2][0], -2 * r3),
        (ROS3P.C[2][1], -r3),
        (ROS3P.b[1], 1 / r3),
        (ROS3P.b[2], 1 / (3 * g)),
        (ROS3P.d[0], g),
        (ROS3P.d[1], g - 1.0),
        (ROS3P.d[2], -0.5 - 1.0 / r3),
    ]
    for got, want in expected:
        assert got == pytest.approx(want, abs=2e-15)
