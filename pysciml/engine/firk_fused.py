"""A small system's whole Newton iteration of the fully implicit RK step as one matrix (``n <= BlockFactors.SMALL``).

For tiny systems torch's cost per call, not arithmetic, is what a step of :class:`~.firk.FIRKStepper` costs. With
``J`` and ``h`` fixed, everything one simplified Newton iteration produces is linear in
``x = [F_1 .. F_s, Z_1 .. Z_s, u, f0]`` (``f`` at the stage values ``U_i = u + Z_i``, the stage increments, the
step's start and ``f`` there; ``(B, (2 s + 2) n)``), so each factorization builds one matrix ``P`` whose product
with ``x`` gives, in ``n``-row slots (:class:`FusedFactors` names their indices):

    dW_i  = [L^{-1} ((T^{-1} (x) I) F - (Lambda / h (x) M) (T^{-1} (x) I) Z)]_i   Newton's transformed increment
    Z'_i  = Z_i + [(T (x) I) dW]_i                                                   the new stage increments
    U'_i  = u + Z'_i                                                                 the new stage values
    V     = sum_i ez_i M Z'_i                                                        the estimate's stage sum
    u                                                                                the step's start (copied)
    C_k   = sum_i D_ki Z'_i                                                          the collocation polynomial
    err   = (mu_e / h M - J)^{-1} (f0 + V / h)                                       the filtered estimate

with ``L = Lambda / h (x) M - I_s (x) J`` the transformed stage system (:mod:`.firk_blocks`; block diagonal, the
complex pair as its exact real ``2n x 2n`` form), ``D`` the dense matrix times ``A^{-1}`` and ``mu_e = 1 / gamma0``
(Hairer & Wanner, Solving ODEs II, IV.8). A Newton iteration is then one ``cat`` and one batched mat-vec, the
stage values for the next calls of ``f`` come out of the product, and the last product also holds the estimate
and the dense-output coefficients ``[u, C_1 .. C_q]`` (adjacent slots). Building ``P`` takes one
``torch.linalg.solve_ex`` of ``L`` against constant right-hand sides scaled by ``1 / h`` (measured cheaper than
``torch.linalg.inv_ex`` of ``L`` and two products, and than a complex ``n x n`` LU with its solves per iteration at
``n = 3``), one ``baddbmm`` and the estimate's ``n x n`` block of ``L^{-1}`` (the real eigenvalue's block for Radau
IIA 5; an own ``n x n`` inverse for Radau IIA 3, whose ``mu_e`` is no eigenvalue of ``A^{-1}``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..solution import Stats
from .firk_blocks import BlockFactors, Transformation

Tensor = torch.Tensor

__all__ = ["FusedFactors"]


class FusedFactors(BlockFactors):
    """The factorization of a small system's step as the matrix ``P`` ``(B, slots n, (2 s + 2) n)`` (module
    docstring), with :class:`~.firk_blocks.BlockFactors`' counters (``nlu`` one per ``mu``) and its ``jacobian``,
    ``stage_solve`` and ``solve`` (``solve(mu_e, .)`` for the estimate's refinement).

    Args: ``ez`` the estimate's weights (``None``: no estimate, Gauss-Legendre); ``err_mu`` its ``mu_e``;
    ``dense_ainv`` ``(q, s)`` the collocation polynomial's coefficients from ``Z``; ``n`` the state size."""

    def __init__(self, stats: Stats, mass: Tensor | None, tr: Transformation, dtype: torch.dtype,
                 device: torch.device, *, n: int, ez: np.ndarray | None, err_mu: float | None,
                 dense_ainv: np.ndarray) -> None:
        super().__init__(stats, mass, tr, dtype, device)
        s, q = tr.T.shape[0], dense_ainv.shape[0]
        self.n, self.s = n, s
        # the output slots
        self.DW, self.Z, self.U, self.V, self.UROW, self.C = 0, s, 2 * s, 3 * s, 3 * s + 1, 3 * s + 2
        self.ERR = 3 * s + 2 + q if ez is not None else None
        self.slots = 3 * s + 2 + q + (ez is not None)
        self.err_mu = err_mu
        self.err_block = next((k for k, mu in tr.blocks if isinstance(mu, float) and mu == err_mu), None)
        self.P: Tensor | None = None
        self._build_constants(dtype, device, ez, dense_ainv, mass)

    def _build_constants(self, dtype: torch.dtype, device: torch.device, ez: np.ndarray | None,
                         dense_ainv: np.ndarray, mass: Tensor | None) -> None:
        n, s, tr = self.n, self.s, self.tr
        sn, k = s * n, (2 * s + 2) * n
        eye_n = np.eye(n)
        M = eye_n if mass is None else mass.detach().cpu().numpy().astype(np.float64)
        ti, tk = np.kron(tr.Tinv, eye_n), np.kron(tr.T, eye_n)
        lam_m = np.kron(tr.Lam, M)
        u_sel = np.zeros((n, k))
        u_sel[:, 2 * sn:2 * sn + n] = eye_n
        f0_sel = np.zeros((n, k))
        f0_sel[:, 2 * sn + n:] = eye_n
        stack_u = np.kron(np.ones((s, 1)), eye_n) @ u_sel  # u in every stage's rows
        z_sel = np.zeros((sn, k))
        z_sel[:, sn:2 * sn] = np.eye(sn)
        ez_m = np.kron(np.zeros((1, s)) if ez is None else ez[None], M)  # (n, s n)
        dense = np.kron(dense_ainv, eye_n)
        # the solve's right-hand sides, A0 + C0 / h: [T^{-1} (x) I | -(Lambda (x) M)(T^{-1} (x) I) / h | 0 | 0]
        # and, for the estimate's block k of L^{-1}, the unit columns of block k
        extra = self.err_block is not None
        a0 = np.zeros((sn, k + n * extra))
        a0[:, :sn] = ti
        if extra:
            a0[self.err_block * n:(self.err_block + 1) * n, k:] = eye_n
        c0 = np.zeros_like(a0)
        c0[:, :k] = -lam_m @ ti @ z_sel
        # P's rows but the estimate's: off + Q @ Y with Y = L^{-1} (A0 + C0 / h)[:, :k]
        q_rows = np.vstack([np.eye(sn), tk, tk, ez_m @ tk, np.zeros((n, sn)), dense @ tk])
        off = np.vstack([np.zeros((sn, k)), z_sel, z_sel + stack_u, ez_m @ z_sel, u_sel, dense @ z_sel])

        def tens(x: np.ndarray) -> Tensor:
            return torch.tensor(x, dtype=dtype, device=device)

        self._a0, self._c0, self._q, self._off, self._f0_sel = tens(a0), tens(c0), tens(q_rows), tens(off), tens(f0_sel)
        self._lam_m, self._neg_eye = tens(lam_m), -torch.eye(s, dtype=dtype, device=device).view(1, s, 1, s, 1)
        self._mass = torch.eye(n, dtype=dtype, device=device) if mass is None else mass
        self._k = k
        self._qb: Tensor | None = None  # _q expanded to the batch

    def constants(self) -> tuple[Tensor, ...]:
        """The tensors :meth:`build` reads, as one tuple (the compiled programs take them as inputs)."""
        return self._a0, self._c0, self._q, self._off, self._f0_sel, self._lam_m, self._neg_eye, self._mass

    def build(self, consts: tuple[Tensor, ...], J: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None, list[Tensor]]:
        """``P`` ``(B, slots n, (2 s + 2) n)`` for ``J (B, n, n)`` and ``h (B,)`` from :meth:`constants` (its
        ``q`` may come expanded to the batch), the estimate's ``(mu_e / h M - J)^{-1}`` ``(B, n, n)`` (``None``
        without an estimate) and the ``(B,)`` info codes of the solves; no host synchronisation (the compiled
        programs trace it)."""
        a0, c0, q, off, f0_sel, lam_m, neg_eye, mass = consts
        b, n, _ = J.shape
        s, k = self.s, self._k
        hv = h.view(b, 1, 1)
        neg_ij = (neg_eye * J.view(b, 1, n, 1, n)).reshape(b, s * n, s * n)  # -(I_s (x) J), exact
        L = torch.addcdiv(neg_ij, lam_m, hv)
        Y, info = torch.linalg.solve_ex(L, torch.addcdiv(a0, c0, hv))
        infos = [info]
        qb = q.expand(b, -1, -1) if q.dim() == 2 else q
        main = torch.baddbmm(off, qb, Y[..., :k] if self.err_block is not None else Y)
        if self.ERR is None:
            return main, None, infos
        if self.err_block is not None:  # the real block of L^{-1}: (mu_e / h M - J)^{-1}
            e0 = self.err_block * n
            e_inv = Y[:, e0:e0 + n, k:]
        else:  # mu_e is no block's (Radau IIA 3): its own inverse
            assert self.err_mu is not None
            e_inv, e_info = torch.linalg.inv_ex(torch.addcdiv(-J, self.err_mu * mass, hv))
            infos.append(e_info)
        v = main[:, self.V * n:(self.V + 1) * n]
        return torch.cat((main, torch.bmm(e_inv, torch.addcdiv(f0_sel, v, hv))), 1), e_inv, infos

    def factor(self, mus: list[complex | float], J: Tensor, h: Tensor) -> list[bool]:
        """Build ``P`` for ``J (B, n, n)`` and ``h (B,)`` (:meth:`build`); returns (and keeps as ``ok_list``) per
        trajectory whether every block is nonsingular and ``P`` finite."""
        b = J.shape[0]
        if self._qb is None or self._qb.shape[0] != b:
            self._qb = self._q.expand(b, -1, -1)
        consts = self.constants()
        P, e_inv, infos = self.build((*consts[:2], self._qb, *consts[3:]), J, h)
        self.factors = {}
        if e_inv is not None:
            assert self.err_mu is not None
            self.factors[self.err_mu] = (None, None, e_inv)
        self.P = P
        self.stats.nlu += len(mus)
        size = torch.linalg.vector_norm(P, float("inf"), dim=(1, 2)).tolist()
        codes = [i.tolist() for i in infos]
        self.ok_list = [math.isfinite(x) and all(c[r] == 0 for c in codes) for r, x in enumerate(size)]
        return self.ok_list

    def start(self, U: Tensor, u_col: Tensor) -> Tensor:
        """The product's layout ``(B, slots, n)`` holding only the stage values ``U`` ``(B, s, n)`` and increments
        ``U - u_col`` (zeros elsewhere): the rows of a Newton iteration that failed before its first move."""
        b, s, n = U.shape
        y = U.new_zeros(b, self.slots, n)
        y[:, self.Z:self.Z + s] = U - u_col
        y[:, self.U:self.U + s] = U
        return y
