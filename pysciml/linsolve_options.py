"""Linear-solver choices for implicit methods (options only; the solvers live in ``engine.linsolve`` and
``engine.linsolve_sparse``)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

__all__ = ["DenseLU", "GMRES", "SparseLU", "LinearSolver", "LINEAR_SOLVERS"]

PRECONDITIONERS = (None, "jacobi", "ilu", "amg")


@dataclass(frozen=True)
class DenseLU:
    """Batched dense LU (``torch.linalg.lu_factor``), factored once per step and reused by every stage."""


@dataclass(frozen=True)
class SparseLU:
    """Sparse direct LU of ``W = M/(gamma dt) - J`` (SciPy's SuperLU, ``scipy.sparse.linalg.splu``), CPU only.

    The Jacobian's sparsity comes from the problem: ``ODEProblem(..., jac_prototype=pattern)`` (a scipy.sparse
    matrix, a torch sparse tensor or a boolean mask; :func:`pysciml.sparsity_pattern` detects one), a ``jac``
    returning a torch sparse tensor, or a sparse ``SplitODEProblem`` matrix. With a pattern and no ``jac`` the
    Jacobian is compressed by column colouring: one forward-mode JVP per colour (finite differences per colour
    with ``autodiff=False``). A batch ``(B, n)`` is factored trajectory by trajectory (``B`` SuperLU
    factorizations per step; one when a constant operator and one step size are shared). Gradients flow: the
    solve's backward is a solve with ``W^T`` through the same factors. Needs SciPy (``pip install
    pysciml[sparse]``); CUDA tensors are refused (no tested GPU sparse solve here: use
    ``GMRES(precondition="jacobi")`` there).

    Args:
        permc_spec: SuperLU's column ordering: ``"MMD_AT_PLUS_A"`` (the default: minimum degree on the pattern of
            ``W + W^T``, suited to the structurally symmetric Jacobians of discretised PDEs; on the 2-D
            Brusselator at N = 128, 32,768 states, it halved both the fill and the factorization time of
            SciPy's default ``"COLAMD"``), ``"COLAMD"`` (better for strongly unsymmetric patterns),
            ``"MMD_ATA"``, ``"NATURAL"``.
    """

    permc_spec: str = "MMD_AT_PLUS_A"

    def __post_init__(self) -> None:
        if self.permc_spec not in ("COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"):
            raise InputError(f"SparseLU(permc_spec={self.permc_spec!r}) is unknown; use 'COLAMD', "
                             "'MMD_AT_PLUS_A', 'MMD_ATA' or 'NATURAL'")


@dataclass(frozen=True)
class GMRES:
    """Matrix-free restarted GMRES on Jacobian-vector products (Newton-Krylov), for large systems.

    Without a preconditioner the Jacobian is never formed: ``W v = M v / (gamma dt) - J v`` with ``J v`` from
    forward-mode autodiff (or a finite-difference directional derivative when ``autodiff=False``). With one, the
    sparse Jacobian the preconditioner forms also gives ``J v``, by one sparse multiply per product.

    Args:
        rtol: relative residual at which GMRES stops (per trajectory); raised to 100 eps of the state's dtype
            where it is below that (float32: 1.2e-5), since a smaller residual cannot be certified there.
        restart: Krylov subspace size before a restart.
        maxiter: restarts allowed; a linear solve that does not converge rejects the step.
        precondition: ``None`` (default), ``"jacobi"`` (right preconditioning by the diagonal of ``W``) or
            ``"ilu"`` (right preconditioning by SciPy's incomplete LU, ``scipy.sparse.linalg.spilu`` of ``W``,
            CPU only) or ``"amg"`` (one V-cycle of algebraic multigrid: pyamg's Ruge-Stuben hierarchy of ``W``,
            CPU only, needs ``pip install pyamg``; for ``W`` dominated by a diffusion operator, where its GMRES
            iteration counts stay flat as the grid is refined). ILU and AMG are rebuilt whenever ``W`` is
            re-formed. All need the sparse Jacobian (a ``jac_prototype``, a sparse or dense ``jac``, or a
            matrix implicit part), formed once per Jacobian by colouring. Right preconditioning keeps the
            residual that ``rtol`` tests the true one.
    """

    rtol: float = 1e-10
    restart: int = 30
    maxiter: int = 10
    precondition: str | None = None

    def __post_init__(self) -> None:
        if self.precondition not in PRECONDITIONERS:
            raise InputError(f"GMRES(precondition={self.precondition!r}) is unknown; use None, 'jacobi', 'ilu' "
                             "or 'amg'")


LinearSolver = DenseLU | GMRES | SparseLU
#: the option types, for ``isinstance`` checks
LINEAR_SOLVERS = (DenseLU, GMRES, SparseLU)
