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
``torch.linalg.lu_factor_ex`` on complex tensors (complex128 for float64 states, complex64 for float32); systems of
at most :attr:`BlockFactors.SMALL` equations fold the whole Newton iteration into one matrix instead
(:class:`~.firk_fused.FusedFactors`, which the compiled programs build too).
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


def transformed_matrix(lam_m: Tensor, eye_s: Tensor, J: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """``Lambda / h (x) M`` and the transformed system ``L = Lambda / h (x) M - I_s (x) J``, both ``(B, s n, s n)``
    (stage-major: the complex pair's rows form its exact real ``2n x 2n`` block), from ``lam_m = Lambda (x) M``,
    ``eye_s = I_s``, ``J (B, n, n)`` and ``h (B,)``."""
    b, n, _ = J.shape
    s = eye_s.shape[0]
    lam_mh = lam_m / h[:, None, None]  # (B, s n, s n)
    # I_s (x) J as one broadcast product (exact: every entry is J_ac * 1 or * 0), any strides of J
    eye_j = (eye_s.view(1, s, 1, s, 1) * J.view(b, 1, n, 1, n)).reshape(b, s * n, s * n)
    return lam_mh, lam_mh - eye_j


class BlockFactors:
    """The factorizations ``mu / h M - J`` of one step, batched over trajectories: ``(B, n, n)`` LU each (complex
    for a complex ``mu``); counters ``nlu`` one per ``mu``, ``nsolve`` one per block solve. The Jacobian is dense
    ``(B, n, n)`` (:meth:`jacobian`); :class:`~.firk_sparse.SparseBlockFactors` keeps it sparse. Systems of at most
    ``SMALL`` equations (where torch's cost per call dominates) use :class:`~.firk_fused.FusedFactors`.
    """

    SMALL = 8

    def __init__(self, stats: Stats, mass: Tensor | None, tr: Transformation, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.stats = stats
        self.mass = mass
        self.tr = tr
        self.Tinv = torch.tensor(tr.Tinv, dtype=dtype, device=device)
        self.Lam = torch.tensor(tr.Lam, dtype=dtype, device=device)
        self.factors: dict[complex | float, tuple[Tensor | None, Tensor | None, Tensor | None]] = {}
        self.ok: Tensor | None = None
        self.ok_list: list[bool] | None = None  # ``ok`` on the host, read once per factorization
        self.lam_h: Tensor | None = None  # Lambda / h, (B, s, s)

    def _mass(self, v: Tensor) -> Tensor:
        return v if self.mass is None else v @ self.mass.T

    def increment(self, F: Tensor, W: Tensor) -> Tensor:
        """Newton's increment ``dW = L^{-1} ((T^{-1} (x) I) F - (Lambda / h (x) M) W)`` for the stage values
        ``F = f(t + c_i h, u + Z_i)`` and the transformed stages ``W``, both ``(B, s, n)``."""
        assert self.lam_h is not None
        R = torch.matmul(self.Tinv, F) - self._mass(torch.matmul(self.lam_h, W))
        return self.solve_transformed(self.tr, R)

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

    def factor(self, mus: list[complex | float], J: Tensor, h: Tensor) -> list[bool]:
        """Factor ``mu / h M - J`` for every ``mu``; returns (and keeps as ``ok_list``) per trajectory whether all
        are nonsingular."""
        b, n, _ = J.shape
        self.factors = {}
        self.lam_h = self.Lam / h[:, None, None]
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
            self.factors[mu] = (lu, piv, None)
        self.ok, self.ok_list = ok, ok.tolist()
        return self.ok_list

    def solve(self, mu: complex | float, rhs: Tensor) -> Tensor:
        """``(mu / h M - J)^{-1} rhs`` for ``rhs (B, n)`` (complex for a complex ``mu``; real ``mu`` only on the
        small path)."""
        self.stats.nsolve += 1
        lu, piv, inverse = self.factors[mu]
        if inverse is not None:
            return torch.bmm(inverse, rhs.to(inverse.dtype).unsqueeze(2)).squeeze(2)
        assert lu is not None and piv is not None
        return torch.linalg.lu_solve(lu, piv, rhs.to(lu.dtype).unsqueeze(2)).squeeze(2)

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
