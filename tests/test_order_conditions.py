"""Tests of the rooted-tree machinery in :mod:`pysciml.analysis.order_conditions`."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from pysciml.analysis.order_conditions import (
    ark_order_residuals,
    continuous_order_residuals,
    format_tree,
    max_order_satisfied,
    rk_order_residuals,
    rooted_trees,
    tree_density,
    tree_order,
)

EULER = ([[0.0]], [1.0])
HEUN = ([[0.0, 0.0], [1.0, 0.0]], [0.5, 0.5])
MIDPOINT = ([[0.0, 0.0], [0.5, 0.0]], [0.0, 1.0])
TRAPEZOID = ([[0.0, 0.0], [0.5, 0.5]], [0.5, 0.5])  # implicit trapezoidal rule (Lobatto IIIA, 2 stages)
RK4 = (
    [[0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
    [1 / 6, 1 / 3, 1 / 3, 1 / 6],
)


# ------------------------------------------------------------------------ brute-force tree enumeration
def _canonical_string(children: dict[int, list[int]], colors: tuple[int, ...], node: int) -> str:
    """AHU-style canonical string of the subtree at ``node`` (independent of the tuple form under test)."""
    subs = sorted(_canonical_string(children, colors, ch) for ch in children[node])
    return f"({colors[node]}{''.join(subs)})"


def _brute_force_trees(n: int, colors: int) -> set[str]:
    """Every coloured rooted tree with ``n`` vertices: all parent arrays ``parent[i] < i``, all colourings.

    Relabelling any rooted tree in breadth-first order gives such a parent array, so all trees appear.
    """
    found: set[str] = set()
    for parents in itertools.product(*[range(i) for i in range(1, n)]):
        children: dict[int, list[int]] = {i: [] for i in range(n)}
        for child, parent in enumerate(parents, start=1):
            children[parent].append(child)
        for coloring in itertools.product(range(colors), repeat=n):
            found.add(_canonical_string(children, coloring, 0))
    return found


def _tuple_to_string(t) -> str:
    return f"({t[0]}{''.join(sorted(_tuple_to_string(ch) for ch in t[1]))})"


# ---------------------------------------------------------------------------------------------- trees
def test_tree_counts_one_color() -> None:
    counts = Counter(tree_order(t) for t in rooted_trees(7))
    assert [counts[n] for n in range(1, 8)] == [1, 1, 2, 4, 9, 20, 48]


@pytest.mark.parametrize("colors, max_order", [(1, 7), (2, 5), (3, 4)])
def test_trees_match_brute_force(colors: int, max_order: int) -> None:
    trees = rooted_trees(max_order, colors=colors)
    assert len(set(trees)) == len(trees)  # each exactly once
    for n in range(1, max_order + 1):
        ours = {_tuple_to_string(t) for t in trees if tree_order(t) == n}
        assert ours == _brute_force_trees(n, colors)
    if colors == 2:
        counts = Counter(tree_order(t) for t in trees)
        assert [counts[n] for n in range(1, 6)] == [2, 4, 14, 52, 214]


def test_trees_are_canonical_and_hashable() -> None:
    for t in rooted_trees(6, colors=2):
        assert isinstance(hash(t), int)
        stack = [t]
        while stack:
            node = stack.pop()
            assert list(node[1]) == sorted(node[1])
            stack.extend(node[1])
    assert rooted_trees(0) == []
    assert rooted_trees(1) == [(0, ())]


def test_density_and_format() -> None:
    trees = rooted_trees(4)
    expected = [".", "[.]", "[.,.]", "[[.]]", "[.,.,.]", "[.,[.]]", "[[.,.]]", "[[[.]]]"]
    assert [format_tree(t) for t in trees] == expected
    assert [tree_density(t) for t in trees] == [1, 2, 3, 6, 4, 8, 12, 24]
    assert format_tree((1, ((0, ()), (1, ())))) == "[.,.1]1"


# ----------------------------------------------------------------------------------------- RK orders
@pytest.mark.parametrize("method, order", [(EULER, 1), (HEUN, 2), (MIDPOINT, 2), (TRAPEZOID, 2), (RK4, 4)])
def test_classic_orders(method, order: int) -> None:
    residuals = rk_order_residuals(*method, order + 2)
    assert max_order_satisfied(residuals) == order
    assert any(abs(r) > 1e-3 for t, r in residuals.items() if tree_order(t) == order + 1)


def test_rk4_order_five_residuals_nonzero() -> None:
    res5 = [r for t, r in rk_order_residuals(*RK4, 5).items() if tree_order(t) == 5]
    assert len(res5) == 9
    assert sum(abs(r) > 1e-6 for r in res5) >= 1


@pytest.mark.parametrize("stages", [2, 3, 4])
def test_gauss_legendre_order_2s(stages: int) -> None:
    """Implicit (full A) Gauss collocation: order exactly 2s, an independent check of the densities."""
    nodes = (np.polynomial.legendre.leggauss(stages)[0] + 1) / 2
    A = np.zeros((stages, stages))
    b = np.zeros(stages)
    for j in range(stages):
        lagrange = np.polynomial.Polynomial.fromroots(np.delete(nodes, j))
        lagrange = lagrange / lagrange(nodes[j])
        integral = lagrange.integ()
        A[:, j] = integral(nodes) - integral(0.0)
        b[j] = integral(1.0) - integral(0.0)
    assert max_order_satisfied(rk_order_residuals(A, b, 2 * stages + 1), tol=1e-11) == 2 * stages


def test_max_order_satisfied_edge_cases() -> None:
    assert max_order_satisfied(rk_order_residuals([[0.0]], [0.5], 3)) == 0  # not even consistent
    assert max_order_satisfied({}) == 0
    assert max_order_satisfied(rk_order_residuals(*RK4, 3)) == 3  # capped by the trees supplied


# ---------------------------------------------------------------------------------------------- ARK
def test_ark_one_color_equals_rk() -> None:
    assert ark_order_residuals([RK4[0]], [RK4[1]], 5) == rk_order_residuals(*RK4, 5)


def test_ark_coupling_conditions_detected() -> None:
    """Heun + midpoint are each order 2, but sum b^[1]_i c^[2]_i = 1/4 != 1/2: the pair is order 1."""
    mixed = ark_order_residuals([HEUN[0], MIDPOINT[0]], [HEUN[1], MIDPOINT[1]], 3)
    assert max_order_satisfied(mixed) == 1
    same = ark_order_residuals([HEUN[0], HEUN[0]], [HEUN[1], HEUN[1]], 3)
    assert max_order_satisfied(same) == 2
    # explicit Heun + implicit trapezoid share b and c: an order-2 IMEX pair
    imex = ark_order_residuals([TRAPEZOID[0], HEUN[0]], [TRAPEZOID[1], HEUN[1]], 3)
    assert max_order_satisfied(imex) == 2
    assert len(mixed) == 2 + 4 + 14


def test_ark_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        ark_order_residuals([HEUN[0]], [HEUN[1], HEUN[1]], 2)
    with pytest.raises(ValueError):
        rk_order_residuals(RK4[0], [1.0], 2)


# ----------------------------------------------------------------------------------- continuous output
def test_continuous_residuals() -> None:
    """b(theta) = theta * b is only a first-order extension, except at theta = 1 where it is the method."""
    A, b = RK4
    dense = [b]
    assert max_order_satisfied(continuous_order_residuals(A, dense, 0.5, 4)) == 1
    at_one = continuous_order_residuals(A, dense, 1.0, 4)
    assert at_one == pytest.approx(rk_order_residuals(A, b, 4), abs=1e-15)
    # Euler's linear interpolant has order 1 everywhere
    assert max_order_satisfied(continuous_order_residuals(EULER[0], [EULER[1]], 0.3, 2)) == 1
    with pytest.raises(ValueError):
        continuous_order_residuals(*EULER, 0.3, 2)  # dense must be (q, s)
