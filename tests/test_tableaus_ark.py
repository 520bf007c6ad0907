"""ARK / ESDIRK tableau data: structure, order and coupling conditions, dense output, stability, convergence.

Everything numerical uses the tableaus through the ``_base.ARKTableau`` convention only, with a small numpy
reference step (independent of the torch engine).

Tolerance of the algebraic checks: the Kennedy-Carpenter rationals (~13-digit numerators and denominators)
and Kvaerno's 17-digit decimals satisfy every order, coupling and dense-output condition to round-off
(observed <= 6e-15), so ``TOL = 1e-13`` is used throughout.  It is tight enough that a one-digit change in
a single denominator (diffrax's ``7827059040719`` for ``7827059040749`` in KenCarp5) is detected (2e-12).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pytest

from pysciml.analysis.order_conditions import (
    ark_order_residuals,
    elementary_weights,
    max_order_satisfied,
    rk_order_residuals,
    rooted_trees,
    tree_density,
    tree_order,
)
from pysciml.engine.tableaus._base import ARKTableau, dense_matrix
from pysciml.engine.tableaus.ark import ARK_TABLEAUS, KENCARP5

TOL = 1e-13
TABS = list(ARK_TABLEAUS.values())
IDS = list(ARK_TABLEAUS)
ADDITIVE = [t for t in TABS if t.aE is not None]
DENSE = [t for t in TABS if t.dense is not None]

Vec = np.ndarray
RHS = Callable[[float, Vec], Vec]


# ------------------------------------------------------------------------------------------ helpers
def mats(tab: ARKTableau) -> tuple[Vec, Vec | None]:
    """Full ``s x s`` implicit and explicit coefficient matrices (explicit ``None`` if absent)."""
    s = tab.stages
    AI = np.array(dense_matrix(tab.aI, s, diagonal=True))
    AE = None if tab.aE is None else np.array(dense_matrix(tab.aE, s))
    return AI, AE


def weights(tab: ARKTableau) -> tuple[Vec, Vec, Vec, Vec]:
    """``(b, b_hat, bE, bE_hat)`` with ``b_hat = b - btilde`` (explicit ones default to the implicit)."""
    b = np.array(tab.b)
    bhat = b - np.array(tab.btilde)
    bE = b if tab.bE is None else np.array(tab.bE)
    bEhat = bE - np.array(tab.btilde if tab.btildeE is None else tab.btildeE)
    return b, bhat, bE, bEhat


def stability(tab: ARKTableau, z: complex) -> complex:
    """``R(z) = 1 + z b^T (I - z A)^{-1} 1`` of the implicit (ESDIRK) part."""
    AI, _ = mats(tab)
    s = tab.stages
    return complex(1 + z * np.array(tab.b) @ np.linalg.solve(np.eye(s) - z * AI, np.ones(s)))


# ------------------------------------------------------------------------------------------ structure
@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_shapes_and_ragged_rows(tab: ARKTableau) -> None:
    s = tab.stages
    assert len(tab.aI) == s and len(tab.b) == s and len(tab.btilde) == s
    assert all(len(row) == i + 1 for i, row in enumerate(tab.aI))
    if tab.aE is not None:  # strictly lower: row i has exactly i entries
        assert len(tab.aE) == s and all(len(row) == i for i, row in enumerate(tab.aE))
    for w in (tab.bE, tab.btildeE):
        assert w is None or len(w) == s
    if tab.dense is not None:
        assert tab.dense_order is not None and all(len(row) == s for row in tab.dense)
    assert tab.order > tab.embedded_order >= 2
    assert all(isinstance(x, float) for row in tab.aI for x in row)


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_esdirk_diagonal_and_nodes(tab: ARKTableau) -> None:
    assert tab.aI[0] == (0.0,)
    assert all(row[-1] == tab.gamma for row in tab.aI[1:])
    assert tab.c[0] == 0.0 and tab.c[1] == pytest.approx(2 * tab.gamma, abs=1e-15)  # a21 = gamma
    AI, AE = mats(tab)
    np.testing.assert_allclose(AI.sum(axis=1), tab.c, rtol=0, atol=TOL)
    if AE is not None:
        np.testing.assert_allclose(AE.sum(axis=1), tab.c, rtol=0, atol=TOL)


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_stiffly_accurate(tab: ARKTableau) -> None:
    assert tab.stiffly_accurate
    assert tab.aI[-1] == tab.b
    assert tab.c[-1] == 1.0


def test_published_gammas() -> None:
    expected = {
        "KenCarp3": 1767732205903 / 4055673282236,
        "KenCarp4": 0.25,
        "KenCarp5": 41 / 200,
        "Kvaerno3": 0.4358665215,
        "Kvaerno5": 0.26,
    }
    assert {name: t.gamma for name, t in ARK_TABLEAUS.items()} == expected
    assert all(name == t.name for name, t in ARK_TABLEAUS.items())
    assert [t.stages for t in TABS] == [4, 6, 8, 4, 7]


# ------------------------------------------------------------------------------------------ order conditions
@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_implicit_part_order(tab: ARKTableau) -> None:
    AI, _ = mats(tab)
    b, bhat, _, _ = weights(tab)
    assert max_order_satisfied(rk_order_residuals(AI, b, tab.order + 1), TOL) == tab.order
    assert max_order_satisfied(rk_order_residuals(AI, bhat, tab.embedded_order + 1), TOL) == tab.embedded_order


@pytest.mark.parametrize("tab", ADDITIVE, ids=[t.name for t in ADDITIVE])
def test_explicit_part_order(tab: ARKTableau) -> None:
    _, AE = mats(tab)
    _, _, bE, bEhat = weights(tab)
    assert max_order_satisfied(rk_order_residuals(AE, bE, tab.order + 1), TOL) == tab.order
    assert max_order_satisfied(rk_order_residuals(AE, bEhat, tab.embedded_order + 1), TOL) == tab.embedded_order


@pytest.mark.parametrize("tab", ADDITIVE, ids=[t.name for t in ADDITIVE])
def test_coupling_conditions(tab: ARKTableau) -> None:
    """Two-coloured trees (colour 0 implicit, 1 explicit): main method to ``order``, embedded to its order."""
    AI, AE = mats(tab)
    b, bhat, bE, bEhat = weights(tab)
    res = ark_order_residuals([AI, AE], [b, bE], tab.order)
    assert len(res) == len(rooted_trees(tab.order, colors=2))
    assert max(abs(r) for r in res.values()) <= TOL
    res_hat = ark_order_residuals([AI, AE], [bhat, bEhat], tab.embedded_order)
    assert max(abs(r) for r in res_hat.values()) <= TOL


def test_btilde_sign_convention() -> None:
    """``btilde = b - b_hat`` (the ``_base`` convention).

    Order conditions are affine in the weights, so ``b + btilde = 2 b - b_hat`` has the embedded order too and
    cannot tell the sign; instead: Kvaerno's embedded method is the second-last stage (``b_hat`` = that row of
    ``aI`` padded with 0), and the KenCarp values are the negatives of OrdinaryDiffEq.jl's stored
    ``btilde = b_hat - b`` (a few entries, exact rationals from ``sdirk_tableaus.jl``).
    """
    for tab in (ARK_TABLEAUS["Kvaerno3"], ARK_TABLEAUS["Kvaerno5"]):
        _, bhat, _, _ = weights(tab)
        np.testing.assert_allclose(bhat, (*tab.aI[-2], 0.0), rtol=0, atol=1e-16)
    ode_jl = {  # name -> {stage index: OrdinaryDiffEq's btilde (= b_hat - b)}
        "KenCarp3": {
            0: 681815649026867975666107 / 25159934323302256049469295,
            3: -47289384293135913063989 / 1383962894467812063558225,
        },
        "KenCarp4": {
            0: -31666707 / 9881966720,
            1: 0.0,
            2: 256875 / 105007616,
            3: 2768025 / 128864768,
            4: -169839 / 3864644,
            5: 5247 / 225920,
        },
        "KenCarp5": {0: -360431431567533808054934 / 89473089856732078284381229, 7: 45448919757 / 3715198317040},
    }
    for name, entries in ode_jl.items():
        tab = ARK_TABLEAUS[name]
        for i, value in entries.items():
            assert tab.btilde[i] == pytest.approx(-value, rel=1e-12, abs=1e-17), (name, i)


def test_tolerance_catches_a_one_digit_typo() -> None:
    AI, _ = mats(KENCARP5)
    AI[6, 5] = -4269925059573 / 7827059040719  # diffrax's denominator
    res = rk_order_residuals(AI, np.array(KENCARP5.b), KENCARP5.order)
    assert max_order_satisfied(res, TOL) < KENCARP5.order


# ------------------------------------------------------------------------------------------ dense output
@pytest.mark.parametrize("tab", DENSE, ids=[t.name for t in DENSE])
def test_dense_output_endpoint(tab: ARKTableau) -> None:
    assert tab.dense is not None
    np.testing.assert_allclose(np.array(tab.dense).sum(axis=0), tab.b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("tab", DENSE, ids=[t.name for t in DENSE])
@pytest.mark.parametrize("theta", [0.2, 0.5, 0.8, 1.0])
def test_dense_output_conditions(tab: ARKTableau, theta: float) -> None:
    """``b(theta) . Phi(t) = theta**|t| / gamma(t)`` for all two-coloured trees up to ``dense_order``
    (both parts share ``b(theta)``), and fails for some tree of order ``dense_order + 1``."""
    assert tab.dense is not None and tab.dense_order is not None
    AI, AE = mats(tab)
    bt = (theta ** np.arange(1, len(tab.dense) + 1)) @ np.array(tab.dense)
    q = tab.dense_order
    trees = rooted_trees(q + 1, colors=2)
    phi = elementary_weights([AI, AE], trees)
    res = {t: float(bt @ phi[t]) - theta ** tree_order(t) / tree_density(t) for t in trees}
    assert max_order_satisfied(res, TOL) >= q
    if theta != 1.0:  # at theta = 1 the dense output is the order-`order` solution
        assert max_order_satisfied(res, TOL) == q


# ------------------------------------------------------------------------------------------ stability
@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_l_stability(tab: ARKTableau) -> None:
    assert abs(stability(tab, -1e8)) < 1e-6
    ys = np.concatenate([np.linspace(0.0, 20.0, 401), np.logspace(-3, 6, 400)])
    worst = max(abs(stability(tab, 1j * y)) for y in ys)
    assert worst <= 1.0 + 1e-12
    assert all(abs(stability(tab, x)) <= 1.0 + 1e-12 for x in -np.logspace(-3, 6, 100))


# ------------------------------------------------------------------------------------------ convergence
LIN = np.array([[-2.0, 1.0], [1.0, -2.0]])
U0 = np.array([1.0, 0.5])
T1 = 1.0


def f_lin(t: float, u: Vec) -> Vec:
    """Stiff-ish linear part (implicit)."""
    return LIN @ u


def f_nl(t: float, u: Vec) -> Vec:
    """Non-stiff nonlinear, non-autonomous part (explicit)."""
    return np.array([np.sin(t) - u[0] ** 2, u[0] * u[1] - np.cos(t)])


def j_nl(t: float, u: Vec) -> Vec:
    return np.array([[-2.0 * u[0], 0.0], [u[1], u[0]]])


@lru_cache(maxsize=1)
def reference() -> Vec:
    from scipy.integrate import solve_ivp

    sol = solve_ivp(
        lambda t, u: f_lin(t, u) + f_nl(t, u),
        (0.0, T1),
        U0,
        method="Radau",
        rtol=1e-13,
        atol=1e-14,
        jac=lambda t, u: LIN + j_nl(t, u),
    )
    assert sol.success
    return sol.y[:, -1]


def ark_step(tab: ARKTableau, fI: RHS, jI: RHS, fE: RHS | None, t: float, u: Vec, h: float, w: Vec) -> Vec:
    """One step of the ``_base`` ARK convention with weights ``w`` (``b`` or ``b_hat``); Newton per stage.

    ``fE is None`` (or ``tab.aE is None``) treats everything implicitly.  With ``fI`` linear Newton ends after
    one linear solve (the second iterate only confirms it).
    """
    AI, AE = mats(tab)
    kI: list[Vec] = []
    kE: list[Vec] = []
    for i in range(tab.stages):
        ti = t + tab.c[i] * h
        rhs = u + h * sum((AI[i, j] * kI[j] for j in range(i)), np.zeros_like(u))
        if fE is not None and AE is not None:
            rhs = rhs + h * sum((AE[i, j] * kE[j] for j in range(i)), np.zeros_like(u))
        U = rhs + h * AI[i, i] * kI[-1] if i > 0 else rhs  # predictor from the previous stage
        if AI[i, i] != 0.0:
            for _ in range(50):
                g = U - rhs - h * AI[i, i] * fI(ti, U)
                dU = np.linalg.solve(np.eye(u.size) - h * AI[i, i] * jI(ti, U), g)
                U = U - dU
                if np.max(np.abs(dU)) <= 1e-15 * (1 + np.max(np.abs(U))):
                    break
        kI.append(fI(ti, U))
        kE.append(fE(ti, U) if fE is not None else np.zeros_like(u))
    return u + h * sum(wi * (a + e) for wi, a, e in zip(w, kI, kE, strict=True))


def solve_fixed(tab: ARKTableau, n: int, embedded: bool = False) -> Vec:
    """Integrate to ``T1`` with ``n`` equal steps; ARK split for additive methods, whole RHS otherwise."""
    b, bhat, _, _ = weights(tab)
    w = bhat if embedded else b
    h = T1 / n
    u = U0.copy()
    for k in range(n):
        if tab.aE is not None:
            u = ark_step(tab, f_lin, lambda t, v: LIN, f_nl, k * h, u, h, w)
        else:
            u = ark_step(
                tab, lambda t, v: f_lin(t, v) + f_nl(t, v), lambda t, v: LIN + j_nl(t, v), None, k * h, u, h, w
            )
    return u


def fitted_order(ns: list[int], errs: list[float]) -> float:
    """Least-squares slope of ``log err`` against ``log h``."""
    return float(np.polyfit(np.log(1.0 / np.array(ns)), np.log(errs), 1)[0])


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_convergence_order(tab: ARKTableau) -> None:
    ref = reference()
    ns = [8, 16, 32]
    errs = [float(np.max(np.abs(solve_fixed(tab, n) - ref))) for n in ns]
    assert errs[-1] > 1e-12, "errors must stay above the reference's accuracy"
    assert abs(fitted_order(ns, errs) - tab.order) <= 0.3, errs


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_embedded_convergence_order(tab: ARKTableau) -> None:
    ref = reference()
    ns = [32, 64, 128]  # the embedded methods reach their asymptotic rate later
    errs = [float(np.max(np.abs(solve_fixed(tab, n, embedded=True) - ref))) for n in ns]
    assert abs(fitted_order(ns, errs) - tab.embedded_order) <= 0.3, errs
