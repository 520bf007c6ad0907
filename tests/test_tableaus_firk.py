"""Fully implicit RK tableaus (Gauss-Legendre 4/6, Radau IIA 3/5): order conditions, simplifying assumptions,
structure (stiffly accurate, symmetric), stability at infinity, the embedded estimates, the collocation
interpolant, and the transformation that block-diagonalises ``A^{-1}``.

The coefficients are closed forms in ``sqrt(3)``, ``sqrt(6)``, ``sqrt(15)``, so every identity holds to round-off
(observed <= 3e-16); ``TOL = 1e-13`` catches any transcription error in a single coefficient.
"""

from __future__ import annotations

import numpy as np
import pytest

from pysciml.analysis.order_conditions import continuous_order_residuals, max_order_satisfied, rk_order_residuals
from pysciml.engine.firk_blocks import transformation
from pysciml.engine.tableaus.firk import (
    FIRK_TABLEAUS,
    GAUSS_LEGENDRE4,
    GAUSS_LEGENDRE6,
    RADAU_IIA3,
    RADAU_IIA5,
    FIRKTableau,
)

TOL = 1e-13
TABS = list(FIRK_TABLEAUS.values())
IDS = list(FIRK_TABLEAUS)


def arrays(tab: FIRKTableau) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.array(tab.a), np.array(tab.b), np.array(tab.c)


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_order_exactly(tab):
    """Every rooted tree up to the claimed order holds, and some tree of the next order fails."""
    A, b, _ = arrays(tab)
    res = rk_order_residuals(A, b, tab.order + 1)
    assert max_order_satisfied(res, TOL) == tab.order


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_row_sums_and_quadrature(tab):
    """c = A 1; B(p): the weights integrate polynomials of degree < order exactly (2s for Gauss, 2s - 1 Radau)."""
    A, b, c = arrays(tab)
    assert np.abs(A.sum(axis=1) - c).max() <= TOL
    for k in range(1, tab.order + 1):
        assert abs(b @ c ** (k - 1) - 1 / k) <= TOL
    k = tab.order + 1
    assert abs(b @ c ** (k - 1) - 1 / k) > 1e-6


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_stage_order(tab):
    """C(q): sum_j a_ij c_j^(k-1) = c_i^k / k for k <= q = s (collocation), and not for k = s + 1."""
    A, _, c = arrays(tab)
    s = tab.stages
    assert tab.stage_order == s
    for k in range(1, s + 1):
        assert np.abs(A @ c ** (k - 1) - c**k / k).max() <= TOL
    assert np.abs(A @ c**s - c ** (s + 1) / (s + 1)).max() > 1e-6


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_d_condition(tab):
    """D(r): sum_i b_i c_i^(k-1) a_ij = b_j (1 - c_j^k) / k, r = s for Gauss and s - 1 for Radau IIA."""
    A, b, c = arrays(tab)
    r = tab.stages if tab.symmetric else tab.stages - 1
    for k in range(1, r + 1):
        assert np.abs((b * c ** (k - 1)) @ A - b * (1 - c**k) / k).max() <= TOL


def test_radau_stiffly_accurate_and_nodes():
    for tab in (RADAU_IIA3, RADAU_IIA5):
        A, b, c = arrays(tab)
        assert tab.stiffly_accurate and not tab.symmetric
        assert np.abs(A[-1] - b).max() == 0.0 and c[-1] == 1.0
        # Radau right points: the zeros of P_s - P_{s-1} on [0, 1], i.e. of d^(s-1)/dx^(s-1) (x^(s-1) (x-1)^s)
        s = tab.stages
        poly = np.polynomial.Polynomial([0, 1]) ** (s - 1) * np.polynomial.Polynomial([-1, 1]) ** s
        assert np.allclose(np.sort(poly.deriv(s - 1).roots().real), c, atol=1e-13)


def test_gauss_symmetric_and_nodes():
    for tab in (GAUSS_LEGENDRE4, GAUSS_LEGENDRE6):
        A, b, c = arrays(tab)
        s = tab.stages
        assert tab.symmetric and not tab.stiffly_accurate
        P = np.eye(s)[::-1]
        assert np.abs(P @ c - (1 - c)).max() <= TOL and np.abs(P @ b - b).max() <= TOL
        assert np.abs(P @ A @ P + A - np.outer(np.ones(s), b)).max() <= TOL
        # symplectic: b_i a_ij + b_j a_ji = b_i b_j
        assert np.abs(b[:, None] * A + (b[:, None] * A).T - np.outer(b, b)).max() <= TOL
        # Gauss points: the zeros of the shifted Legendre polynomial P_s(2x - 1)
        roots = (np.polynomial.legendre.legroots([0] * s + [1]) + 1) / 2
        assert np.abs(np.sort(roots) - c).max() <= TOL


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_stability_at_infinity(tab):
    """R(z) = 1 + z b^T (I - z A)^{-1} 1 -> 1 - b^T A^{-1} 1: 0 for Radau IIA (L-stable), (-1)^s for Gauss; A-stable:
    |R(iy)| <= 1 on the imaginary axis (= 1 for Gauss)."""
    A, b, _ = arrays(tab)
    s = tab.stages
    r_inf = 1 - b @ np.linalg.solve(A, np.ones(s))
    assert abs(r_inf - (0.0 if tab.stiffly_accurate else (-1.0) ** s)) <= 1e-12
    for y in np.linspace(-50, 50, 101):
        z = 1j * y
        R = 1 + z * b @ np.linalg.solve(np.eye(s) - z * A, np.ones(s))
        assert abs(R) <= 1 + 1e-12
        if tab.symmetric:
            assert abs(abs(R) - 1) <= 1e-12


@pytest.mark.parametrize("tab", [RADAU_IIA3, RADAU_IIA5], ids=["RadauIIA3", "RadauIIA5"])
def test_embedded_estimate(tab):
    """u_hat = u + h (gamma0 f(u) + b_hat . k) with b_hat = b + gamma0 A^T ez has the embedded order exactly
    (the quadrature conditions with the node 0 carrying gamma0; for RadauIIA5 these are radau5.f's DD1..DD3)."""
    A, b, c = arrays(tab)
    g = tab.gamma0
    bh = b + g * A.T @ np.array(tab.ez)
    nodes, weights = np.concatenate(([0.0], c)), np.concatenate(([g], bh))
    q = tab.embedded_order
    for k in range(1, q + 1):
        assert abs(weights @ nodes ** (k - 1) - 1 / k) <= TOL
    assert abs(weights @ nodes**q - 1 / (q + 1)) > 1e-4
    if tab is RADAU_IIA5:  # gamma0 = 1 / (the real eigenvalue of A^{-1}): the real block's LU filters the estimate
        assert abs(1 / g - max(np.linalg.eigvals(np.linalg.inv(A)).real)) <= 1e-12


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_collocation_dense_output(tab):
    """The collocation polynomial: order s at every theta (order s + ... at theta = 1 where it is the method)."""
    A, _, _ = arrays(tab)
    for theta in (0.25, 0.6):
        assert max_order_satisfied(continuous_order_residuals(A, tab.dense, theta, tab.stages + 1), TOL) == tab.stages
    assert max_order_satisfied(continuous_order_residuals(A, tab.dense, 1.0, tab.order), TOL) == tab.order
    assert tab.dense_order == tab.stages


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_transformation_block_diagonalises(tab):
    """T^{-1} A^{-1} T is block diagonal: one real block per real eigenvalue, a 2 x 2 rotation block per pair."""
    tr = transformation(tab.a)
    A = np.array(tab.a)
    assert np.abs(tr.Tinv @ np.linalg.inv(A) @ tr.T - tr.Lam).max() <= 1e-12
    reals = [mu for _, mu in tr.blocks if isinstance(mu, float)]
    pairs = [mu for _, mu in tr.blocks if isinstance(mu, complex)]
    assert len(reals) + 2 * len(pairs) == tab.stages
    assert len(reals) == tab.stages % 2  # Radau IIA 5, Gauss 6: one real; the 2-stage methods: a pair only
