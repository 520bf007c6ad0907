"""The linear algebra of a fully implicit RK step: Hairer & Wanner's transformation of the stage system.

Simplified Newton on the ``s n`` stage equations ``M Z_i = h sum_j a_ij f(t + c_j h, u + Z_j)`` needs solves with
``I (x) M - h A (x) J``. Multiplying by ``(h A)^{-1}`` and changing variables ``W = (T^{-1} (x) I) Z`` with
``T^{-1} A^{-1} T = Lambda`` block diagonal (Solving ODEs II, IV.8, eq. (8.14)-(8.16)) splits it into one
``n x n`` system per real eigenvalue ``lambda`` of ``A^{-1}``, ``(lambda / h) M - J``, and one complex ``n x n``
system per complex pair: the 2 x 2 block ``[[alpha, beta], [-beta, alpha]]`` acting on ``(W_k, W_{k+1})`` is
``((alpha - i beta) / h) M - J`` acting on ``W_k + i W_{k+1}``. Radau IIA 5 and Gauss-Legendre 6 have one real
eigenvalue and one pair, Radau IIA 3 and Gauss-Legendre 4 one pair: ``s n x s n`` never has to be factored.

``T`` is computed here from the tableau's ``A`` (``numpy.linalg.eig``, float64) instead of transcribed, and
:func:`transformation` checks ``T^{-1} A^{-1} T`` is the block form to 1e-12. Complex factorizations use
``torch.linalg.lu_factor_ex`` on complex tensors (complex128 for float64 states, complex64 for float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..solution import Stats
from .rhs import RHS

Tensor = torch.Tensor


@dataclass(frozen=True)
class Transformation:
    """``T``, ``T^{-1}``, ``Lambda = T^{-1} A^{-1} T`` (``(s, s)`` float64 arrays) and its blocks: ``(k, mu)`` with
    ``mu`` real (a 1 x 1 block at row ``k``) or complex (the pair at rows ``k, k + 1``)."""

    T: np.ndarray
    Tinv: np.ndarray
    Lam: np.ndarray
    Ainv: np.ndarray
    blocks: tuple[tuple[int, complex | float], ...]


def transformation(a: tuple[tuple[float, ...], ...]) -> Transformation:
    """Block-diagonalise ``A^{-1}`` for the stage matrix ``a`` (rows of the tableau)."""
    A = np.array(a, dtype=np.float64)
    Ainv = np.linalg.inv(A)
    w, V = np.linalg.eig(Ainv)
    cols: list[np.ndarray] = []
    blocks: list[tuple[int, complex | float]] = []
    for k in np.argsort(np.abs(w.imag)):  # real eigenvalues first
        lam, v = w[k], V[:, k]
        if abs(lam.imag) <= 1e-12 * abs(lam):
            blocks.append((len(cols), float(lam.real)))
            cols.append(v.real / np.abs(v.real).max())
        elif lam.imag > 0:  # one of each conjugate pair: columns (Re v, Im v)
            blocks.append((len(cols), complex(lam.real, -lam.imag)))
            cols += [v.real, v.imag]
    T = np.column_stack(cols)
    Tinv = np.linalg.inv(T)
    Lam = Tinv @ Ainv @ T
    want = np.zeros_like(Lam)
    for k, mu in blocks:
        if isinstance(mu, float):
            want[k, k] = mu
        else:
            want[k:k + 2, k:k + 2] = [[mu.real, -mu.imag], [mu.imag, mu.real]]
    if not np.allclose(Lam, want, rtol=0.0, atol=1e-12 * np.abs(Ainv).max()):
        raise ValueError("A^{-1} could not be block-diagonalised (repeated eigenvalues?)")
    return Transformation(T, Tinv, want, Ainv, tuple(blocks))


class BlockFactors:
    """The factorizations ``mu / h M - J`` of one step, batched over trajectories: ``(B, n, n)`` LU each.

    For ``n <= SMALL`` the inverse is formed once per factorization (one batched ``lu_solve`` with the identity),
    so a solve is one batched mat-vec: for tiny systems the call overhead of ``lu_solve`` dominates. The Jacobian
    is dense ``(B, n, n)`` (:meth:`jacobian`); :class:`~.firk_sparse.SparseBlockFactors` keeps it sparse.
    """

    SMALL = 8

    def __init__(self, stats: Stats, mass: Tensor | None) -> None:
        self.stats = stats
        self.mass = mass
        self.factors: dict[complex | float, tuple[Tensor, Tensor | None, Tensor | None]] = {}
        self.ok: Tensor | None = None

    def jacobian(self, rhs: RHS, t: Tensor, u: Tensor, f0: Tensor | None = None) -> Tensor:
        """``J`` at ``(t, u)`` without a graph: ``(B, n, n)``."""
        return rhs.jac(t, u, f0).detach()

    def stage_solve(self, a: tuple[tuple[float, ...], ...], h: Tensor, Js: list[Tensor], G: Tensor) -> Tensor:
        """``K^{-1} G`` for ``G (B, s, n)`` with ``K = I (x) M - h (A (x) I) diag(J_j)`` (the stage equations'
        derivative at the converged stages, ``Js[j]`` from :meth:`jacobian`): one dense ``s n x s n`` solve,
        differentiable in ``G`` (``K`` is a constant)."""
        s, (bsz, _, n) = len(a), G.shape
        with torch.no_grad():
            M = torch.eye(n, dtype=G.dtype, device=G.device) if self.mass is None else self.mass
            K = torch.zeros(bsz, s * n, s * n, dtype=G.dtype, device=G.device)
            for i in range(s):
                for j in range(s):
                    blk = -(h * a[i][j])[:, None, None] * Js[j]
                    if i == j:
                        blk = blk + M
                    K[:, i * n:(i + 1) * n, j * n:(j + 1) * n] = blk
        return torch.linalg.solve(K, G.reshape(bsz, s * n)).reshape(bsz, s, n)

    def factor(self, mus: list[complex | float], J: Tensor, h: Tensor) -> Tensor:
        """Factor ``mu / h M - J`` for every ``mu``; returns ``(B,)`` True where all are nonsingular."""
        b, n, _ = J.shape
        self.factors = {}
        ok = torch.ones(b, dtype=torch.bool, device=J.device)
        eye = torch.eye(n, dtype=J.dtype, device=J.device) if self.mass is None else self.mass
        for mu in mus:
            if isinstance(mu, complex):
                ctype = torch.complex128 if J.dtype == torch.float64 else torch.complex64
                mat = (mu / h.to(ctype))[:, None, None] * eye.to(ctype) - J.to(ctype)
            else:
                mat = (mu / h)[:, None, None] * eye - J
            self.stats.nlu += 1
            lu, piv, info = torch.linalg.lu_factor_ex(mat)
            diag = lu.diagonal(dim1=-2, dim2=-1)
            ok = ok & (info == 0) & torch.isfinite(diag).all(dim=1) & (diag != 0).all(dim=1)
            inverse = None
            if n <= self.SMALL:
                ident = torch.eye(n, dtype=mat.dtype, device=mat.device).expand(b, n, n)
                inverse = torch.linalg.lu_solve(lu, piv, ident)
            self.factors[mu] = (lu, piv, inverse)
        self.ok = ok
        return ok

    def solve(self, mu: complex | float, rhs: Tensor) -> Tensor:
        """``(mu / h M - J)^{-1} rhs`` for ``rhs (B, n)`` (complex for a complex ``mu``)."""
        self.stats.nsolve += 1
        lu, piv, inverse = self.factors[mu]
        rhs = rhs.to(lu.dtype)
        if inverse is not None:
            return torch.bmm(inverse, rhs.unsqueeze(2)).squeeze(2)
        return torch.linalg.lu_solve(lu, piv, rhs.unsqueeze(2)).squeeze(2)

    def solve_transformed(self, tr: Transformation, R: Tensor) -> Tensor:
        """Solve the block-diagonal system ``(Lambda / h (x) M - I (x) J) X = R`` for ``R (B, s, n)``."""
        out = torch.empty_like(R)
        for k, mu in tr.blocks:
            if isinstance(mu, complex):
                x = self.solve(mu, torch.complex(R[:, k], R[:, k + 1]))
                out[:, k], out[:, k + 1] = x.real, x.imag
            else:
                out[:, k] = self.solve(mu, R[:, k])
        return out
