"""Sparse factorisation for the fully implicit RK steps (``RadauIIA5(linsolve=SparseLU())`` and the others).

:class:`SparseBlockFactors` replaces :class:`~.firk_blocks.BlockFactors` when the algorithm's ``linsolve`` is
``SparseLU()``: the Jacobian is kept as values ``(B, nnz)`` on one fixed structure (:class:`~.linsolve_sparse.\
SparseJacobian`: an analytic sparse ``jac``, a dense ``jac`` read on ``jac_prototype``, or ``jac_prototype`` with
one JVP per colour), and every block system of the transformed Newton iteration, the real ``(gamma / h) M - J``
and the complex ``((alpha + i beta) / h) M - J``, is assembled in CSC on the union of ``J``'s and ``M``'s patterns
(:class:`~.linsolve_sparse.WAssembly`) and factored by SciPy's SuperLU, one factorization per trajectory and
eigenvalue (SuperLU takes complex CSC matrices: complex128 for float64 states, complex64 for float32).

The discrete adjoint's implicit-function correction (:meth:`SparseBlockFactors.stage_solve`) solves with the
``s n x s n`` stage matrix ``K = I (x) M - h (A (x) I) diag(J_j)`` assembled sparsely from the stage Jacobians'
values (``s^2`` copies of ``J``'s pattern), factored by SuperLU and applied through
:func:`~.linsolve_sparse.factor_solve` (its backward pass is a solve with ``K^T``), so no dense ``n x n`` matrix
is formed anywhere. CPU only, as every SuperLU path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..linsolve_options import SparseLU
from ..solution import Stats
from .firk_blocks import BlockFactors, Transformation
from .linsolve_sparse import SparseJacobian, WAssembly, _cpu_only, apply_factors, factor_solve, superlu
from .rhs import RHS
from .sparsity import Structure

Tensor = torch.Tensor

__all__ = ["SparseBlockFactors"]


class SparseBlockFactors(BlockFactors):
    """SuperLU factorizations of ``mu / h M - J`` per trajectory for every eigenvalue ``mu`` of ``A^{-1}``, with
    :class:`~.firk_blocks.BlockFactors`' interface (``jacobian``, ``factor``, ``solve``, ``solve_transformed``,
    ``stage_solve``) and the same counters: ``stats.nlu`` one per ``mu`` factored, ``stats.nsolve`` one per solve,
    ``stats.njac`` one per Jacobian (one per stage Jacobian in ``stage_solve``)."""

    def __init__(self, stats: Stats, mass: Tensor | None, tr: Transformation, opts: SparseLU, rhs: RHS) -> None:
        super().__init__(stats, mass, tr, rhs.dtype, rhs.device)
        _cpu_only(torch.empty(0, device=rhs.device), "SparseLU()")
        self.opts = opts
        self.sparse = SparseJacobian(rhs)
        self.w: WAssembly | None = None
        self.lu: dict[complex | float, list[Any]] = {}
        self._stage_w: tuple[int, WAssembly] | None = None

    def jacobian(self, rhs: RHS, t: Tensor, u: Tensor, f0: Tensor | None = None) -> Tensor:
        """``J``'s values at ``(t, u)`` without a graph: ``(B, nnz)`` (``(1, nnz)`` for a constant operator)."""
        vals = self.sparse.evaluate(t, u, f0).detach()
        if self.w is None:
            assert self.sparse.structure is not None
            self.w = WAssembly(self.sparse.structure, self.mass, u.dtype, u.device)
        return vals

    def factor(self, mus: list[complex | float], J: Tensor, h: Tensor) -> list[bool]:
        """Factor ``mu / h M - J`` for every ``mu`` and trajectory; per trajectory whether all are nonsingular."""
        assert self.w is not None
        ok = torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
        self.lu = {}
        self.lam_h = self.Lam / h[:, None, None]
        for mu in mus:
            if isinstance(mu, complex):
                ctype = torch.complex128 if J.dtype == torch.float64 else torch.complex64
                data = self.w.values(J.to(ctype), mu / h.to(ctype))
            else:
                data = self.w.values(J, mu / h)
            self.stats.nlu += 1
            self.lu[mu], good = superlu(self.w, data, self.opts.permc_spec)
            ok = ok & good
        self.ok, self.ok_list = ok, ok.tolist()
        return self.ok_list

    def solve(self, mu: complex | float, rhs: Tensor) -> Tensor:
        """``(mu / h M - J)^{-1} rhs`` for ``rhs (B, n)`` (complex for a complex ``mu``); no autograd (Newton and
        the error estimate run without a graph)."""
        self.stats.nsolve += 1
        if isinstance(mu, complex):
            rhs = rhs.to(torch.complex128 if rhs.dtype in (torch.float64, torch.complex128) else torch.complex64)
        return apply_factors(self.lu[mu], rhs, "N")

    def stage_solve(self, a: tuple[tuple[float, ...], ...], h: Tensor, Js: list[Tensor], G: Tensor) -> Tensor:
        """``K^{-1} G`` for ``G (B, s, n)``, ``K = I (x) M - h (A (x) I) diag(J_j)`` assembled sparsely (module
        docstring); differentiable in ``G``."""
        s, (bsz, _, n) = len(a), G.shape
        with torch.no_grad():
            w = self._stage_assembly(s, G.dtype, G.device)
            jv = torch.cat([(h * a[i][j])[:, None] * Js[j].expand(bsz, -1) for i in range(s) for j in range(s)], 1)
            data = w.values(jv, torch.ones(bsz, dtype=G.dtype, device=G.device))
            factors, _ = superlu(w, data, self.opts.permc_spec)
        return factor_solve(data, G.reshape(bsz, s * n), factors, w).reshape(bsz, s, n)

    def _stage_assembly(self, s: int, dtype: torch.dtype, device: torch.device) -> WAssembly:
        """``K``'s pattern: block ``(i, j)`` holds ``J``'s pattern, the diagonal blocks also ``M``'s (cached)."""
        if self._stage_w is None or self._stage_w[0] != s:
            st = self.sparse.structure
            assert st is not None
            n = st.n
            rows = np.concatenate([st.rows + i * n for i in range(s) for _ in range(s)])
            cols = np.concatenate([st.cols + j * n for _ in range(s) for j in range(s)])
            mass = None if self.mass is None else torch.block_diag(*([self.mass] * s))
            self._stage_w = (s, WAssembly(Structure(s * n, rows, cols), mass, dtype, device))
        return self._stage_w[1]
