"""Exact derivatives of implicit stages for the discrete adjoint (implicit function theorem).

An ESDIRK stage solves ``z = gamma h f(t_i, psi + z)`` by simplified Newton with a Jacobian frozen at the start
of the step. Backpropagating through those iterations differentiates the iteration, not the stage: its
gradient is only as accurate as the Newton solve (about the tolerance). Instead the iterations run without a
graph, and the converged ``z*`` gets the derivative of the exact stage solution:

    (I - gamma h J(U*)) dz = dr,     r(theta) = gamma h f(t_i, psi + z*; theta) - z*,   U* = psi + z*,

so ``dz/dtheta = (I - gamma h J*)^{-1} dr/dtheta`` with ``J*`` the Jacobian at the converged stage (formed
densely for the dense-LU path; applied through JVPs / VJPs with GMRES for the matrix-free path). The forward
value stays ``z*`` exactly (the correction enters as ``dz - dz.detach()``), so gradients and no-gradient
solves take the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..linsolve_options import GMRES
from .linsolve import gmres
from .rhs import RHS

Tensor = torch.Tensor


class _KrylovSolve(torch.autograd.Function):
    """``x = A^{-1} r`` by GMRES, differentiable in ``r`` (backward: ``A^{-T} g`` by GMRES on VJPs)."""

    @staticmethod
    def forward(ctx: Any, r: Tensor, matvec: Callable[[Tensor], Tensor], rmatvec: Callable[[Tensor], Tensor],
                opts: GMRES) -> Tensor:
        ctx.rmatvec, ctx.opts = rmatvec, opts
        x, _ = gmres(matvec, r, rtol=opts.rtol, restart=opts.restart, maxiter=opts.maxiter)
        return x

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None]:
        opts = ctx.opts
        with torch.no_grad():
            w, _ = gmres(ctx.rmatvec, g, rtol=opts.rtol, restart=opts.restart, maxiter=opts.maxiter)
        return w, None, None, None


def attach_stage_gradient(rhs: RHS, t_i: Tensor, psi: Tensor, z_star: Tensor, gh: Tensor,
                          krylov: GMRES | None) -> Tensor:
    """Return ``z*`` carrying the exact stage derivative with respect to ``psi``, ``gh`` and ``f``'s parameters.

    Args:
        rhs: the implicit right-hand side (engine layout).
        t_i: ``(B,)`` stage times; psi: ``(B, n)`` stage base (with graph); z_star: ``(B, n)`` converged
            increment (no graph); gh: ``(B, 1)`` ``gamma * h``.
        krylov: GMRES options for the matrix-free path, ``None`` for a dense solve with the formed Jacobian.
    """
    r = gh * rhs(t_i, psi + z_star) - z_star
    if not r.requires_grad:
        return z_star
    u_star = (psi + z_star).detach()
    ghd = gh.detach()
    tt = t_i.detach()
    if krylov is None:
        with torch.no_grad():
            J = rhs.jac(tt, u_star).detach()
            n = J.shape[-1]
            A = torch.eye(n, dtype=J.dtype, device=J.device) - ghd[:, :, None] * J
        dz = torch.linalg.solve(A, r)
    else:
        _, pullback = torch.func.vjp(lambda x: rhs.raw(tt, x), u_star)

        def matvec(v: Tensor) -> Tensor:
            return v - ghd * rhs.jvp(tt, u_star, v)

        def rmatvec(w: Tensor) -> Tensor:
            return w - pullback(ghd * w)[0].detach()

        dz = _KrylovSolve.apply(r, matvec, rmatvec, krylov)
    return z_star + (dz - dz.detach())
