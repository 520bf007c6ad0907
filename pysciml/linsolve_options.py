"""Linear-solver choices for implicit methods (options only; the solvers live in ``engine.linsolve``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DenseLU", "GMRES", "LinearSolver"]


@dataclass(frozen=True)
class DenseLU:
    """Batched dense LU (``torch.linalg.lu_factor``), factored once per step and reused by every stage."""


@dataclass(frozen=True)
class GMRES:
    """Matrix-free restarted GMRES on Jacobian-vector products (Newton-Krylov), for large systems.

    The Jacobian is never formed: ``W v = M v / (gamma dt) - J v`` with ``J v`` from forward-mode autodiff
    (or a finite-difference directional derivative when ``autodiff=False``).

    Args:
        rtol: relative residual at which GMRES stops (per trajectory); raised to 100 eps of the state's dtype
            where it is below that (float32: 1.2e-5), since a smaller residual cannot be certified there.
        restart: Krylov subspace size before a restart.
        maxiter: restarts allowed; a linear solve that does not converge rejects the step.
    """

    rtol: float = 1e-10
    restart: int = 30
    maxiter: int = 10


LinearSolver = DenseLU | GMRES
