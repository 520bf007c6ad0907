"""Order conditions of Rosenbrock (and W-) methods given in the transformed form of ``RosenbrockTableau``.

**Classical form** (Hairer & Wanner, Solving ODEs II, IV.7, eq. 7.4), with ``J = f'(y0)`` exact::

    k_i = h f(y0 + sum_{j<i} alpha_ij k_j) + h J sum_{j<=i} gamma_ij k_j,   gamma_ii = gamma,
    y1  = y0 + sum_i b_i k_i.

**Transformation** (HW eq. 7.25; derived again here).  Put ``u = Gamma k`` (stage-wise), ``Gamma`` the lower
triangular matrix ``(gamma_ij)``.  Then ``y0 + sum alpha_ij k_j = y0 + sum (alpha Gamma^-1)_ij u_j`` and, from
``(Gamma^-1 u)_i = u_i / gamma + sum_{j<i} (Gamma^-1)_ij u_j = h f(.) + h J u_i``::

    (I/(gamma h) - J) u_i = f(.) + sum_{j<i} (C_ij / h) u_j,
    a = alpha Gamma^-1,   C = diag(1/gamma) - Gamma^-1,   m = b Gamma^-1  (``tab.b``),
    d_i = gamma_i = sum_{j<=i} gamma_ij,   c_i = alpha_i = sum_{j<i} alpha_ij.

So ``Gamma = (diag(1/gamma) - C)^-1``, ``alpha = a Gamma``, ``b = m Gamma``, ``bhat = (m - btilde) Gamma``.

**B-series** (exact Jacobian).  Writing ``k_i = sum_t h^|t| / sigma(t) phi_i(t) F(t)(y0)``, the ``f`` part
gives, for ``t = [t_1, ..., t_m]``, ``prod_l (alpha phi(t_l))_i``; the ``h J (Gamma k)`` part contributes only to
trees whose root has exactly one child, ``t = [u]``, giving ``(Gamma phi(u))_i`` (diagonal included).  Hence::

    phi_i(.) = 1,   phi_i([u]) = sum_{j<=i} beta_ij phi_j(u)   with beta = alpha + Gamma (diagonal gamma),
    phi_i([t_1..t_m]) = prod_l sum_{j<i} alpha_ij phi_j(t_l)     (m >= 2),

and order ``p`` holds iff ``sum_i b_i phi_i(t) = 1/density(t)`` for every rooted tree with ``|t| <= p``.
Moving the diagonal ``gamma`` terms to the right-hand side gives HW Table 7.1 (strictly lower
``beta'_ij = alpha_ij + gamma_ij``, right-hand sides polynomial in ``gamma``); :func:`table71_residuals`
evaluates that table so the tests can check both forms agree.

**W-methods** (``J`` replaced by an arbitrary matrix ``A``): bicoloured trees, colour 1 an ``A`` vertex that
has exactly one child, weight ``(Gamma phi(u))_i``; the exact solution has no ``A`` terms, so trees with any
colour-1 vertex must give 0 (:func:`w_order_residuals`).
"""

from __future__ import annotations

import numpy as np

from pysciml.analysis.order_conditions import Tree, max_order_satisfied, rooted_trees, tree_density, tree_order
from pysciml.engine.tableaus._base import RosenbrockTableau, dense_matrix

__all__ = [
    "canonical",
    "classical_coefficients",
    "max_order_satisfied",
    "rosenbrock_dense_residuals",
    "rosenbrock_order_residuals",
    "table71_residuals",
    "w_order_residuals",
]


# ------------------------------------------------------------------------------------- coefficients
def classical_coefficients(tab: RosenbrockTableau) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(alpha, Gamma, b, bhat)`` of the classical form (``Gamma`` lower triangular, diagonal gamma).

    ``Gamma = (diag(1/gamma) - C)^-1`` (forward substitution, exactly lower triangular), ``alpha = a Gamma``,
    ``b = m Gamma`` and ``bhat = (m - btilde) Gamma`` with ``m = tab.b``.
    """
    s = tab.stages
    a = np.array(dense_matrix(tab.a, s))
    C = np.array(dense_matrix(tab.C, s))
    ginv = np.diag(np.full(s, 1.0 / tab.gamma)) - C
    gamma_m = np.zeros((s, s))
    for col in range(s):  # solve ginv @ x = e_col, lower triangular
        for i in range(col, s):
            rhs = (1.0 if i == col else 0.0) - ginv[i, col:i] @ gamma_m[col:i, col]
            gamma_m[i, col] = rhs / ginv[i, i]
    alpha = np.tril(a @ gamma_m, -1)
    m = np.array(tab.b, dtype=float)
    mhat = m - np.array(tab.btilde, dtype=float)
    return alpha, gamma_m, m @ gamma_m, mhat @ gamma_m


# -------------------------------------------------------------------------------------- residuals
def _weights(
    t: Tree, alpha: np.ndarray, gamma_m: np.ndarray, cache: dict[Tree, np.ndarray], *, w_method: bool
) -> np.ndarray:
    if t in cache:
        return cache[t]
    color, children = t
    s = alpha.shape[0]
    if w_method and color == 1:  # the A vertex: A sum_{j<=i} gamma_ij k_j
        if len(children) != 1:
            raise ValueError("a W-method A vertex must have exactly one child")
        out = gamma_m @ _weights(children[0], alpha, gamma_m, cache, w_method=w_method)
    elif len(children) == 1 and not w_method:  # f'(y0) F(u) collects f'(g_i) and J Gamma: beta = alpha + Gamma
        out = (alpha + gamma_m) @ _weights(children[0], alpha, gamma_m, cache, w_method=w_method)
    else:
        out = np.ones(s)
        for ch in children:
            out = out * (alpha @ _weights(ch, alpha, gamma_m, cache, w_method=w_method))
    cache[t] = out
    return out


def rosenbrock_order_residuals(tab: RosenbrockTableau, max_order: int, *, embedded: bool = False) -> dict[Tree, float]:
    """``sum_i b_i phi_i(t) - 1/density(t)`` for every rooted tree with ``|t| <= max_order`` (exact Jacobian).

    ``embedded=True`` uses the embedded weights ``b - btilde`` (in transformed variables) instead of ``b``.
    """
    alpha, gamma_m, b, bhat = classical_coefficients(tab)
    weights = bhat if embedded else b
    cache: dict[Tree, np.ndarray] = {}
    return {
        t: float(weights @ _weights(t, alpha, gamma_m, cache, w_method=False)) - 1.0 / tree_density(t)
        for t in rooted_trees(max_order)
    }


def rosenbrock_dense_residuals(tab: RosenbrockTableau, theta: float, max_order: int) -> dict[Tree, float]:
    """Continuous-extension residuals ``b(theta) . phi(t) - theta**|t| / density(t)`` (exact Jacobian).

    ``b(theta) = m(theta) Gamma`` with ``m(theta) = sum_j theta**(j+1) dense[j]``; the dense output has order
    ``q`` at ``theta`` iff all trees with ``|t| <= q`` vanish.
    """
    if tab.dense is None:
        raise ValueError(f"{tab.name} has no dense output")
    alpha, gamma_m, _, _ = classical_coefficients(tab)
    powers = float(theta) ** np.arange(1, len(tab.dense) + 1)
    b_theta = (powers @ np.array(tab.dense, dtype=float)) @ gamma_m
    cache: dict[Tree, np.ndarray] = {}
    return {
        t: float(b_theta @ _weights(t, alpha, gamma_m, cache, w_method=False))
        - float(theta) ** tree_order(t) / tree_density(t)
        for t in rooted_trees(max_order)
    }


def w_order_residuals(tab: RosenbrockTableau, max_order: int, *, embedded: bool = False) -> dict[Tree, float]:
    """W-method residuals (arbitrary Jacobian approximation) over bicoloured trees, colour 1 = ``A`` vertex.

    Only trees whose colour-1 vertices have exactly one child occur; their exact value is 0 when any ``A``
    vertex is present, ``1/density(t)`` otherwise.
    """
    alpha, gamma_m, b, bhat = classical_coefficients(tab)
    weights = bhat if embedded else b
    cache: dict[Tree, np.ndarray] = {}
    out: dict[Tree, float] = {}
    for t in rooted_trees(max_order, colors=2):
        if not _valid_w_tree(t):
            continue
        exact = 0.0 if _has_color(t, 1) else 1.0 / tree_density(t)
        out[t] = float(weights @ _weights(t, alpha, gamma_m, cache, w_method=True)) - exact
    return out


def _valid_w_tree(t: Tree) -> bool:
    color, children = t
    return (color != 1 or len(children) == 1) and all(_valid_w_tree(ch) for ch in children)


def _has_color(t: Tree, color: int) -> bool:
    return t[0] == color or any(_has_color(ch, color) for ch in t[1])


# ------------------------------------------------------------------------- Hairer-Wanner Table 7.1
def _tree(*children: Tree) -> Tree:
    return (0, tuple(sorted(children)))


def canonical(t: Tree) -> Tree:
    """Re-sort children recursively (Python tuple order) so trees from any enumeration compare equal."""
    return (t[0], tuple(sorted(canonical(ch) for ch in t[1])))


def table71_residuals(alpha: np.ndarray, gamma_m: np.ndarray, b: np.ndarray) -> dict[Tree, float]:
    """HW IV.7 Table 7.1 (order <= 4) as printed: strictly lower ``beta'``, right-hand sides ``P_t(gamma)``.

    Keys are canonical trees (see :func:`canonical`).  Agrees with :func:`rosenbrock_order_residuals` tree by
    tree whenever all lower-order conditions hold (the two forms differ by lower-order residuals).
    """
    g = float(gamma_m[0, 0])
    beta = alpha + np.tril(gamma_m, -1)
    ones = np.ones(alpha.shape[0])
    c = alpha @ ones
    bp = beta @ ones
    leaf = _tree()
    t2 = _tree(leaf)
    return {
        leaf: float(b @ ones) - 1.0,
        t2: float(b @ bp) - (0.5 - g),
        _tree(leaf, leaf): float(b @ c**2) - 1.0 / 3.0,
        _tree(t2): float(b @ beta @ bp) - (1.0 / 6.0 - g + g**2),
        _tree(leaf, leaf, leaf): float(b @ c**3) - 0.25,
        _tree(leaf, t2): float(b @ (c * (alpha @ bp))) - (1.0 / 8.0 - g / 3.0),
        _tree(_tree(leaf, leaf)): float(b @ beta @ c**2) - (1.0 / 12.0 - g / 3.0),
        _tree(_tree(t2)): float(b @ beta @ beta @ bp) - (1.0 / 24.0 - g / 2.0 + 1.5 * g**2 - g**3),
    }
