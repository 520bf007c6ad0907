"""Algebraic multigrid for GMRES: one V-cycle of pyamg's classical (Ruge-Stuben) hierarchy of ``W`` as ``P ~ W^{-1}``.

:class:`AMGFactor` has the interface of a SciPy factor object (``solve(b, trans)``), so
:class:`~.linsolve_sparse.Preconditioner` forms, applies and falls back on it as it does on ``spilu``'s factors:
one hierarchy per trajectory, rebuilt whenever ``W`` is re-formed (each ``factor`` call). One application is one
V-cycle from a zero initial guess (pyamg's defaults: symmetric Gauss-Seidel pre- and post-smoothing, a dense
pseudo-inverse on the coarsest level), a fixed linear map, as right-preconditioned GMRES needs. The transposed map
for the implicit gradient's ``W^T`` solve is a V-cycle of a second hierarchy, built on ``W^T`` on its first use.

Why Ruge-Stuben and not smoothed aggregation: on the 2-D Brusselator's ``W = I/c - J`` (``c`` = 1e-3, 1e-2; N =
32, 64, 128; SciPy GMRES to 1e-10, restart 30; measured 2026-12-01) Ruge-Stuben took 6-7 iterations at every N,
while pyamg's default smoothed aggregation took 21-186, growing with N and with ``c``. pyamg (``pip install
pyamg``, BSD-3) is optional: asking for AMG without it raises an :class:`~pysciml.errors.InputError` naming the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["AMGFactor", "require_pyamg"]


def require_pyamg() -> Any:
    """The ``pyamg`` module, or an :class:`InputError` saying how to get it."""
    try:
        import pyamg
    except ImportError as exc:
        raise InputError(
            "GMRES(precondition='amg') needs pyamg (algebraic multigrid), which is not installed: pip install pyamg "
            "(or pip install 'pysciml[sparse]'); without it use precondition='ilu' or SparseLU()") from exc
    return pyamg


class _VCycle:
    """One V-cycle from ``x = 0`` on a pyamg hierarchy, the same arithmetic as pyamg's own
    (``MultilevelSolver.aspreconditioner(cycle="V")``: one symmetric Gauss-Seidel sweep before and after each
    coarse-grid correction, the coarsest level's pseudo-inverse), called level by level on pyamg's Gauss-Seidel
    kernel (``pyamg.amg_core.gauss_seidel``). pyamg's wrapper checks and converts its arguments at every sweep and
    tests a residual norm after the cycle: on the 2-D Brusselator's ``W`` this cycle took 0.80 against pyamg's
    1.08 ms at N = 32 (2,048 states) and 6.5 against 7.7 ms at N = 128 (one thread, loaded machine, 2026-12-01),
    with equal results (tests/test_amg.py)."""

    def __init__(self, ml: Any, core: Any) -> None:
        self._gs = core.gauss_seidel
        self.levels = [(lv.A, lv.R, lv.P) for lv in ml.levels[:-1]]
        self.coarse = np.linalg.pinv(ml.levels[-1].A.toarray())

    def _smooth(self, a: Any, x: np.ndarray, b: np.ndarray) -> None:
        n = x.shape[0]
        self._gs(a.indptr, a.indices, a.data, x, b, 0, n, 1)
        self._gs(a.indptr, a.indices, a.data, x, b, n - 1, -1, -1)

    def __call__(self, b: np.ndarray) -> np.ndarray:
        return self._cycle(0, np.ascontiguousarray(b, dtype=np.float64))

    def _cycle(self, lvl: int, b: np.ndarray) -> np.ndarray:
        if lvl == len(self.levels):
            return self.coarse @ b
        a, r, p = self.levels[lvl]
        x = np.zeros_like(b)
        self._smooth(a, x, b)
        x += p @ self._cycle(lvl + 1, r @ (b - a @ x))
        self._smooth(a, x, b)
        return x


class AMGFactor:
    """One V-cycle of a Ruge-Stuben hierarchy of the real sparse matrix ``a`` ``(n, n)`` (any SciPy format).

    ``solve(b, trans)``: ``P b`` (``trans="N"``) or the V-cycle of ``a^T``'s hierarchy (``"T"``, ``"H"``) for ``b``
    ``(n,)`` or ``(n, k)`` (columns one by one), float64 NumPy in and out. A setup that fails (pyamg raises on
    some degenerate matrices) raises ``RuntimeError``, which the preconditioner turns into no preconditioning
    for that trajectory, as for a failed ``spilu``."""

    def __init__(self, a: Any) -> None:
        import scipy.sparse as sp

        self._pyamg = require_pyamg()
        self.a = sp.csr_matrix(a, dtype=np.float64)
        self._cycles: dict[str, _VCycle] = {"N": self._hierarchy(self.a)}

    def _hierarchy(self, a: Any) -> _VCycle:
        try:
            return _VCycle(self._pyamg.ruge_stuben_solver(a), self._pyamg.amg_core)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            raise RuntimeError(f"pyamg could not build a hierarchy: {exc}") from exc

    def solve(self, b: np.ndarray, trans: str = "N") -> np.ndarray:
        key = "N" if trans == "N" else "T"
        cycle = self._cycles.get(key)
        if cycle is None:
            import scipy.sparse as sp

            cycle = self._cycles[key] = self._hierarchy(sp.csr_matrix(self.a.T))
        if b.ndim == 1:
            return cycle(b)
        return np.stack([cycle(col) for col in b.T], axis=1)
