"""Linear solves with ``W = M / (gamma dt) - J`` for Rosenbrock and ESDIRK steps, batched.

:class:`DenseLUSolver` forms ``W`` from the Jacobian and factors it once per step (``torch.linalg``);
:class:`KrylovSolver` never forms ``J``: restarted GMRES on ``W v = M v / (gamma dt) - J v`` with ``J v`` from
:meth:`RHS.jvp`. Both report per-trajectory failure (singular ``W``, GMRES not converged) so the loop can
reject the step and shrink ``dt`` instead of carrying on with a wrong stage. Sparse solves (SuperLU, GMRES's
preconditioners) live in ``linsolve_sparse.py``; :func:`make_linear_solver` picks the solver for an option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._lstsq import lstsq
from ..errors import warn_caller
from ..linsolve_options import GMRES, DenseLU, SparseLU
from ..solution import Stats
from .linsolve_sparse import Preconditioner, SparseLUSolver
from .rhs import RHS

Tensor = torch.Tensor


class DenseLUSolver:
    """Batched dense LU of ``W``; ``factor`` once per step, ``solve`` per stage.

    For tiny systems (``n <= SMALL``) the factorization is turned into ``W^{-1}`` once per step (``n`` solves
    with the LU factors, one call) so each stage costs a single batched mat-vec: the per-call overhead of
    ``lu_solve`` dominates there, and the accuracy is that of the LU solve to within a small factor.

    A constant linear operator (``SplitODEProblem`` with a matrix) is the same for every trajectory: while
    all trajectories share one step size (fixed steps, or one trajectory), ``W`` is factored once as a single
    ``(n, n)`` matrix and every stage is one solve with ``B`` right-hand sides, instead of ``B`` copies.
    """

    SMALL = 8

    def __init__(self, stats: Stats, mass: Tensor | None) -> None:
        self.stats = stats
        self.mass = mass
        self.lu: tuple[Tensor, Tensor] | None = None
        self.J: Tensor | None = None
        self.inverse: Tensor | None = None
        self._factored_at: Tensor | None = None  # inv_gamma_dt of the current factorization
        self._ok: Tensor | None = None
        self.shared = False  # one factorization for the whole batch (constant operator, one step size)

    def set_jacobian(self, rhs: RHS, t: Tensor, u: Tensor, f0: Tensor) -> None:
        if rhs.linear is not None:
            if self.J is None:  # constant linear operator: one (1, n, n) Jacobian for the whole solve
                self.J = rhs.jac(t[:1], u[:1])
            return
        self.J = rhs.jac(t, u, f0)
        self._factored_at = None

    def factor(self, inv_gamma_dt: Tensor) -> Tensor:
        """Factor ``W = M inv_gamma_dt - J``; returns ``(B,)`` True where ``W`` is usable.

        Reuses the previous factorization when neither ``J`` nor the step size changed (fixed steps on a
        linear implicit part factor once)."""
        assert self.J is not None
        if (self._factored_at is not None and self._ok is not None
                and self._factored_at.shape == inv_gamma_dt.shape
                and torch.allclose(self._factored_at, inv_gamma_dt, rtol=1e-13, atol=0.0)):
            return self._ok
        J, inv = self.J, inv_gamma_dt
        shared = J.shape[0] == 1 and bool((inv == inv[0]).all())
        if shared:
            inv = inv[:1]
        elif J.shape[0] == 1:
            J = J.expand(inv.shape[0], -1, -1)
        b, n, _ = J.shape
        if self.mass is None:
            W = torch.diag_embed(inv[:, None].expand(b, n)) - J
        else:
            W = inv[:, None, None] * self.mass - J
        self.stats.nlu += 1
        lu, piv, info = torch.linalg.lu_factor_ex(W)
        self.lu = (lu, piv)
        self.inverse = None
        if n <= self.SMALL:
            eye = torch.eye(n, dtype=W.dtype, device=W.device).expand(b, n, n)
            self.inverse = torch.linalg.lu_solve(lu, piv, eye)
        diag = lu.diagonal(dim1=-2, dim2=-1)
        ok = (info == 0) & torch.isfinite(diag).all(dim=1) & (diag != 0).all(dim=1)
        self._ok = ok.expand(inv_gamma_dt.shape[0]) if shared else ok
        self.shared = shared
        self._factored_at = inv_gamma_dt
        return self._ok

    def solve(self, rhs_vec: Tensor) -> tuple[Tensor, Tensor | None]:
        assert self.lu is not None
        self.stats.nsolve += 1
        return apply_factors(self.lu[0], self.lu[1], self.inverse, self.shared, rhs_vec), None


def apply_factors(lu: Tensor, piv: Tensor, inverse: Tensor | None, shared: bool, v: Tensor) -> Tensor:
    """``W^{-1} v`` ``(B, n)`` from :class:`DenseLUSolver`'s factors (``shared``: one ``(1, n, n)`` factorization
    for every row of ``v``); traceable, for the compiled ARK step on a linear implicit part too."""
    if shared:  # one (n, n) factorization, B right-hand sides
        if inverse is not None:
            return v @ inverse[0].T
        return torch.linalg.lu_solve(lu[0], piv[0], v.T).T
    if inverse is not None:
        return torch.bmm(inverse, v.unsqueeze(2)).squeeze(2)
    return torch.linalg.lu_solve(lu, piv, v.unsqueeze(2)).squeeze(2)


class KrylovSolver:
    """Matrix-free restarted GMRES (Saad & Schultz 1986) on ``W v``, one Krylov space per trajectory.

    With ``GMRES(precondition=...)`` it solves ``W P y = b`` and returns ``x = P y`` (right preconditioning:
    the residual GMRES tests is the true ``b - W x``); ``P`` (:class:`~.linsolve_sparse.Preconditioner`) is
    built from the sparse Jacobian, formed once per Jacobian, and refreshed at every ``factor``. That formed
    Jacobian then also gives the products ``J v`` (one sparse multiply instead of a JVP through ``f``, at the same
    point)."""

    def __init__(self, stats: Stats, mass: Tensor | None, opts: GMRES) -> None:
        self.stats = stats
        self.mass = mass
        self.opts = opts
        self.matvec: Callable[[Tensor], Tensor] | None = None
        self._point: tuple[RHS, Tensor, Tensor, Tensor] | None = None
        self._inv: Tensor | None = None
        self._w_graph = True
        self.precond = Preconditioner(opts.precondition, mass) if opts.precondition is not None else None

    def set_jacobian(self, rhs: RHS, t: Tensor, u: Tensor, f0: Tensor) -> None:
        self._point = (rhs, t, u, f0)
        if self.precond is not None:
            self.precond.set_jacobian(rhs, t, u, f0)

    def factor(self, inv_gamma_dt: Tensor) -> Tensor:
        assert self._point is not None
        rhs, t, u, f0 = self._point
        mass = self.mass

        jac_v = self.precond.jac_product() if self.precond is not None else None

        def matvec(v: Tensor) -> Tensor:
            mv = v if mass is None else v @ mass.T
            return inv_gamma_dt[:, None] * mv - (rhs.jvp(t, u, v, f0) if jac_v is None else jac_v(v))

        self.matvec = matvec
        self._inv = inv_gamma_dt.detach()
        # whether W can carry a graph: known without a product where the formed J gives them (else: a JVP may)
        live = None if self.precond is None else self.precond.live
        self._w_graph = jac_v is None or inv_gamma_dt.requires_grad or (live is not None and live.requires_grad)
        if self.precond is not None:
            self.precond.factor(inv_gamma_dt)
        return torch.ones_like(inv_gamma_dt, dtype=torch.bool)

    def _gmres(self, matvec: Callable[[Tensor], Tensor], precond: Callable[[Tensor], Tensor] | None,
               b: Tensor) -> tuple[Tensor, Tensor]:
        # a residual below ~100 eps cannot be certified in the state's dtype (float32: 1e-10 never converges)
        rtol = max(self.opts.rtol, 100 * torch.finfo(b.dtype).eps)
        kw = dict(rtol=rtol, restart=self.opts.restart, maxiter=self.opts.maxiter)
        if precond is None:
            return gmres(matvec, b, **kw)
        y, converged = gmres(lambda v: matvec(precond(v)), b, **kw)
        return precond(y), converged

    def solve(self, rhs_vec: Tensor) -> tuple[Tensor, Tensor | None]:
        """``W^{-1} b`` per row of ``b (B, n)`` and a converged mask. Under autograd the iterations run without a
        graph and the result is differentiated implicitly: ``x - S(W x - b)`` with ``S`` zero forward and
        ``W^{-T}`` backward (:class:`_ImplicitSolve`, one transposed GMRES solve), so gradients are those of
        ``W^{-1} b`` itself, not of a truncated Krylov iteration (which missed 1 % of a parameter gradient with
        the ILU preconditioner, where GMRES converges in one or two iterations)."""
        assert self.matvec is not None
        self.stats.nsolve += 1
        matvec = self.matvec
        if not torch.is_grad_enabled() or not (self._w_graph or rhs_vec.requires_grad):
            return self._gmres(matvec, self.precond, rhs_vec)
        with torch.no_grad():
            x, converged = self._gmres(matvec, self.precond, rhs_vec)
        residual = matvec(x) - rhs_vec  # ~0: carries the graph of W (J's values or the JVP) and of b
        if not residual.requires_grad:
            return x, converged
        return x - _ImplicitSolve.apply(residual, self), converged

    def frozen_transposed(self) -> Callable[[Tensor], Tensor]:
        """``g -> W^{-T} g`` (no graph) for the current ``W``, kept for the backward (the solver moves on to other
        steps' ``W`` before it runs): GMRES on ``W^T v = M^T v / (gamma dt) - J^T v``, with ``J^T v`` from the
        formed sparse Jacobian and ``P^T`` preconditioning where a preconditioner formed one, else a VJP through
        ``f`` at the Jacobian's point."""
        assert self._point is not None and self._inv is not None
        rhs, t, u, _ = self._point
        mass, inv, precond = self.mass, self._inv, self.precond
        jt = precond.jac_product(transpose=True) if precond is not None else None
        pt = None if precond is None else precond.transposed_now()

        def solve_t(g: Tensor) -> Tensor:
            jt_v = jt
            if jt_v is None:
                with torch.enable_grad():
                    uu = u.detach().requires_grad_(True)
                    out = rhs.raw(t.detach(), uu)

                def jt_v(v: Tensor) -> Tensor:
                    (g_u,) = torch.autograd.grad(out, uu, v, retain_graph=True)
                    return g_u

            def matvec_t(v: Tensor) -> Tensor:
                mv = v if mass is None else v @ mass
                return inv[:, None] * mv - jt_v(v)

            with torch.no_grad():
                lam, converged = self._gmres(matvec_t, pt, g)
            if not bool(converged.all()):
                warn_caller("GMRES: the transposed solve of the backward did not reach its rtol for "
                            f"{int((~converged).sum())} trajectories, so gradients through this step are "
                            "approximate; raise GMRES(maxiter=...) or use SparseLU()", RuntimeWarning)
            return lam

        return solve_t


class _ImplicitSolve(torch.autograd.Function):
    """Zero forward (the residual ``W x - b`` it receives is at GMRES's tolerance), ``W^{-T} g`` backward: the
    implicit-function derivative of a linear solve (see :meth:`KrylovSolver.solve`). ``W`` is frozen at the
    forward (:meth:`KrylovSolver.frozen_transposed`): the solver has moved on to later steps by the backward."""

    @staticmethod
    def forward(ctx: Any, residual: Tensor, solver: Any) -> Tensor:
        ctx.transposed = solver.frozen_transposed()
        return torch.zeros_like(residual)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:
        return ctx.transposed(g), None


def gmres(matvec: Callable[[Tensor], Tensor], b: Tensor, *, rtol: float, restart: int,
          maxiter: int) -> tuple[Tensor, Tensor]:
    """Solve ``A x = b`` for each row of ``b (B, n)``; returns ``x`` and a ``(B,)`` converged mask.

    Arnoldi with modified Gram-Schmidt; the small least-squares problem is solved per trajectory with
    ``_lstsq.lstsq``. Converged trajectories stop changing (their columns get zero weight).
    """
    bsz, n = b.shape
    x = torch.zeros_like(b)
    bnorm = b.norm(dim=1)
    target = rtol * bnorm
    tiny = torch.finfo(b.dtype).tiny
    m = min(restart, n)
    done = bnorm <= tiny
    for _ in range(maxiter):
        r = b - matvec(x)
        beta = r.norm(dim=1)
        done = done | (beta <= target)
        if bool(done.all()):
            break
        V = [r / beta.clamp(min=tiny)[:, None]]
        cols: list[Tensor] = []
        y = None
        for j in range(m):
            w = matvec(V[j])
            hcol = []
            for vi in V:
                hij = (w * vi).sum(dim=1)
                w = w - hij[:, None] * vi
                hcol.append(hij)
            hnext = w.norm(dim=1)
            hcol.append(hnext)
            cols.append(torch.stack(hcol + [torch.zeros_like(hnext)] * (m - j - 1), dim=1))
            V.append(w / hnext.clamp(min=tiny)[:, None])
            H = torch.stack(cols, dim=2)[:, : j + 2, :]  # (B, j+2, j+1)
            rhs = torch.zeros(bsz, j + 2, dtype=b.dtype, device=b.device)
            rhs[:, 0] = beta
            y = lstsq(H, rhs[:, :, None])[:, :, 0]
            res = (rhs - (H @ y[:, :, None])[:, :, 0]).norm(dim=1)
            if bool(((res <= target) | done).all()) or bool((hnext <= tiny * 1e3).all()):
                break
        assert y is not None
        update = torch.stack(V[: y.shape[1]], dim=2) @ y[:, :, None]
        x = torch.where(done[:, None], x, x + update[:, :, 0])
    converged = done | ((b - matvec(x)).norm(dim=1) <= 10 * target)
    return x, converged


LinearSolverImpl = DenseLUSolver | KrylovSolver | SparseLUSolver


def make_linear_solver(opts: DenseLU | GMRES | SparseLU, stats: Stats, mass: Tensor | None) -> LinearSolverImpl:
    """The solver for an option: every implicit family (Rosenbrock, ESDIRK/IMEX, and any other) builds its
    linear solver here and calls ``set_jacobian(rhs, t, u, f0)`` at each new Jacobian point, ``factor(inv)``
    with ``inv = 1/(gamma dt)`` per step size (returns a ``(B,)`` usable mask), ``solve(b)`` per stage (returns
    ``x`` and a ``(B,)`` converged mask or ``None``)."""
    if isinstance(opts, GMRES):
        return KrylovSolver(stats, mass, opts)
    if isinstance(opts, SparseLU):
        return SparseLUSolver(stats, mass, opts)
    return DenseLUSolver(stats, mass)
