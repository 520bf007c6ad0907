"""Butcher rooted-tree order conditions for Runge-Kutta and additive (multi-coloured) Runge-Kutta methods.

Theory (J. C. Butcher; Hairer, Norsett & Wanner, *Solving ODEs I*, II.2 and II.15; Kennedy & Carpenter 2003,
section 3), written out here from the B-series expansion.

**Trees.**  A rooted tree is stored as ``(color, children)`` with ``children`` a *sorted* tuple of trees, so
equal trees compare (and hash) equal.  ``.`` below is the single vertex ``(0, ())`` and ``[t1, ..., tm]`` the
tree whose root has the subtrees ``t1 .. tm``.  ``order(t)`` is the number of vertices and the density is
``gamma(.) = 1``, ``gamma([t1..tm]) = order(t) * prod gamma(tk)``.

**Elementary weights.**  For an explicit or implicit RK method ``(A, b)`` with ``c = A 1``::

    Phi_i(.) = 1,     Phi_i([t1..tm]) = prod_k (A Phi(tk))_i,

and the method has order ``p`` iff ``b . Phi(t) = 1/gamma(t)`` for every tree with ``order(t) <= p``.

**Additive RK** ``u1 = u0 + h sum_nu sum_i b_i^[nu] f^[nu](U_i)``, ``U_i = u0 + h sum_nu sum_j a_ij^[nu]
f^[nu](U_j)``: the exact solution's B-series runs over trees whose vertices are coloured by the term
``f^[nu]`` they stand for, every coloured tree with weight ``1/gamma(t)``.  The numerical weight uses the root
colour's ``b`` and, for each edge parent -> child, the *child's* colour's ``A``::

    Phi_i(t) = prod_k (A^[color(tk)] Phi(tk))_i,     condition  b^[color(t)] . Phi(t) = 1/gamma(t).

With one colour this is the classical set.  The same weights give the conditions of a continuous extension
``u(theta) = u0 + h sum_i b_i(theta) k_i`` of order ``q``: ``b(theta) . Phi(t) = theta**order(t) / gamma(t)``
for every tree with ``order(t) <= q``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache

import numpy as np

Tree = tuple[int, tuple["Tree", ...]]
"""``(color, children)``, children sorted; the single vertex of colour ``c`` is ``(c, ())``."""

__all__ = [
    "Tree",
    "ark_order_residuals",
    "continuous_order_residuals",
    "elementary_weights",
    "format_tree",
    "max_order_satisfied",
    "rk_order_residuals",
    "rooted_trees",
    "tree_density",
    "tree_order",
]


# ------------------------------------------------------------------------------------------------- trees
def _forests(total: int, start: int, pool: Sequence[tuple[Tree, int]]) -> Iterator[tuple[Tree, ...]]:
    """Every multiset of trees from ``pool`` (sorted by order) with ``total`` vertices, each exactly once.

    A multiset is produced as a non-decreasing index sequence into ``pool`` starting at ``start``.
    """
    if total == 0:
        yield ()
        return
    for idx in range(start, len(pool)):
        tree, k = pool[idx]
        if k > total:  # pool is sorted by order: nothing further fits
            break
        for rest in _forests(total - k, idx, pool):
            yield (tree, *rest)


@lru_cache(maxsize=32)
def _trees_by_order(max_order: int, colors: int) -> tuple[tuple[Tree, ...], ...]:
    by_order: list[tuple[Tree, ...]] = [(), tuple((c, ()) for c in range(colors))]
    for n in range(2, max_order + 1):
        pool = [(t, k) for k in range(1, n) for t in by_order[k]]
        new = [(c, tuple(sorted(forest))) for forest in _forests(n - 1, 0, pool) for c in range(colors)]
        by_order.append(tuple(sorted(new)))
    return tuple(by_order[: max_order + 1])


def rooted_trees(max_order: int, colors: int = 1) -> list[Tree]:
    """All rooted trees with ``1..max_order`` vertices coloured ``0..colors-1``, each exactly once.

    Ordered by number of vertices, then lexicographically by the canonical form.  The counts for one colour
    are 1, 1, 2, 4, 9, 20, 48, 115 (OEIS A000081); for two colours 2, 4, 14, 52, 214, 916 (A000151).
    """
    if max_order < 0 or colors < 1:
        raise ValueError(f"need max_order >= 0 and colors >= 1, got {max_order}, {colors}")
    return [t for level in _trees_by_order(int(max_order), int(colors)) for t in level]


@lru_cache(maxsize=4096)
def tree_order(t: Tree) -> int:
    """Number of vertices of ``t``."""
    return 1 + sum(tree_order(ch) for ch in t[1])


@lru_cache(maxsize=4096)
def tree_density(t: Tree) -> int:
    """Density ``gamma(t) = order(t) * prod gamma(children)``; the exact B-series weight is ``1/gamma(t)``."""
    out = tree_order(t)
    for ch in t[1]:
        out *= tree_density(ch)
    return out


def format_tree(t: Tree) -> str:
    """Bracket notation: ``.`` a vertex, ``[t1,t2]`` a root with subtrees; a colour > 0 as suffix (``.1``)."""
    color, children = t
    mark = "" if color == 0 else str(color)
    if not children:
        return "." + mark
    return "[" + ",".join(format_tree(ch) for ch in children) + "]" + mark


# --------------------------------------------------------------------------------------- weights
def _as_matrices(As: Sequence[object], bs: Sequence[object]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(As) == 0 or len(As) != len(bs):
        raise ValueError(f"need one (A, b) per colour, got {len(As)} A and {len(bs)} b")
    mats = [np.asarray(A, dtype=np.float64) for A in As]
    vecs = [np.asarray(b, dtype=np.float64) for b in bs]
    s = vecs[0].shape[0]
    for A, b in zip(mats, vecs, strict=True):
        if A.shape != (s, s) or b.shape != (s,):
            raise ValueError(f"every A must be {s}x{s} and every b of length {s}; got {A.shape}, {b.shape}")
    return mats, vecs


def _phi(t: Tree, As: Sequence[np.ndarray], cache: dict[Tree, np.ndarray]) -> np.ndarray:
    out = cache.get(t)
    if out is None:
        out = np.ones(As[0].shape[0])
        for ch in t[1]:
            out = out * (As[ch[0]] @ _phi(ch, As, cache))
        cache[t] = out
    return out


def elementary_weights(As: Sequence[object], trees: Sequence[Tree]) -> dict[Tree, np.ndarray]:
    """Stage vectors ``Phi(t)`` (length ``s``) for each tree; ``As[c]`` is the ``A`` of colour ``c``."""
    mats = [np.asarray(A, dtype=np.float64) for A in As]
    cache: dict[Tree, np.ndarray] = {}
    return {t: _phi(t, mats, cache) for t in trees}


def ark_order_residuals(As: Sequence[object], bs: Sequence[object], max_order: int) -> dict[Tree, float]:
    """Additive RK residuals ``b^[color(t)] . Phi(t) - 1/gamma(t)`` over all ``len(As)``-coloured trees.

    Args:
        As: one ``s x s`` coefficient matrix per colour (component of the right-hand side).
        bs: one weight vector (length ``s``) per colour.
        max_order: largest number of vertices.

    Returns:
        ``{tree: residual}`` for every coloured tree with ``1..max_order`` vertices.
    """
    mats, vecs = _as_matrices(As, bs)
    cache: dict[Tree, np.ndarray] = {}
    return {
        t: float(vecs[t[0]] @ _phi(t, mats, cache)) - 1.0 / tree_density(t)
        for t in rooted_trees(max_order, colors=len(mats))
    }


def rk_order_residuals(A: object, b: object, max_order: int) -> dict[Tree, float]:
    """Residuals ``b . Phi(t) - 1/gamma(t)`` for every tree with ``1..max_order`` vertices (``c = A 1``)."""
    return ark_order_residuals([A], [b], max_order)


def continuous_order_residuals(A: object, dense: object, theta: float, max_order: int) -> dict[Tree, float]:
    """Residuals of a continuous extension at ``theta``: ``b(theta) . Phi(t) - theta**order(t) / gamma(t)``.

    ``dense`` is the ``(q, s)`` matrix of the tableau convention:
    ``b_i(theta) = sum_j theta**(j+1) * dense[j][i]``.
    """
    D = np.asarray(dense, dtype=np.float64)
    if D.ndim != 2:
        raise ValueError(f"dense must be a (q, s) matrix, got shape {D.shape}")
    powers = float(theta) ** np.arange(1, D.shape[0] + 1)
    b_theta = powers @ D
    mats, _ = _as_matrices([A], [b_theta])
    cache: dict[Tree, np.ndarray] = {}
    return {
        t: float(b_theta @ _phi(t, mats, cache)) - float(theta) ** tree_order(t) / tree_density(t)
        for t in rooted_trees(max_order)
    }


def max_order_satisfied(residuals: Mapping[Tree, float], tol: float = 1e-12) -> int:
    """Largest ``p`` such that every tree with ``order <= p`` in ``residuals`` has ``|residual| <= tol``.

    ``p`` never exceeds the largest tree order present in ``residuals``; ``0`` if even consistency fails.
    """
    worst: dict[int, float] = {}
    for t, r in residuals.items():
        k = tree_order(t)
        worst[k] = max(worst.get(k, 0.0), abs(float(r)))
    p = 0
    while p + 1 in worst and worst[p + 1] <= tol:
        p += 1
    return p
