"""The compiled step of the fully implicit RK family (RadauIIA5, RadauIIA3, GaussLegendre4/6): one program per step.

The same step as :class:`~.firk.FIRKStepper` (Hairer & Wanner's radau5 scheme) with everything between the step's
start and its control row inside one ``torch.compile`` program, no host synchronisation inside:

* the Jacobian (the problem's ``jac`` or forward-mode autodiff), kept per trajectory only where the eager stepper
  would recompute it (``need``), else the carried one;
* the factorization of the transformed stage system ``L = Lambda / h (x) M - I_s (x) J`` (:mod:`.firk_blocks`).
  Inductor handles complex LU poorly, so the complex block is never formed: for ``n <= BlockFactors.SMALL``
  the program builds the eager stepper's matrix ``P`` (:meth:`~.firk_fused.FusedFactors.build`, the same
  operations), whose product with ``[F, Z, u, f0]`` gives a Newton iteration's increments, stage values, the
  filtered estimate and the collocation polynomial; above, each diagonal block of ``L`` gets a real LU, the
  complex pair's being its exact real ``2n x 2n`` form ``[[alpha/h M - J, beta/h M], [-beta/h M, alpha/h M - J]]``
  (the rows of ``L`` for that pair);
* the starting values from the last accepted step's collocation polynomial;
* simplified Newton as a ``torch.while_loop`` that runs while a trajectory iterates (at most ``max_iters``
  times), with radau5's rate control and divergence tests per trajectory as masks: the same theta, ``faccon``,
  predicted-error and round-off tests as :meth:`~.firk.FIRKStepper._newton` (:func:`_rate`); for small systems
  one iteration is ``f`` at the stage values, one ``cat`` and one product with ``P``, as
  :meth:`~.firk.FIRKStepper._newton_fused`, its carry that product's rows (the last one that moved each
  trajectory: stage values, estimate and polynomial are read from it after the loop);
* the error estimate with the stiff filter and its refinement ``f(t, u + err)`` for the trajectories that ask
  for it (the extra ``f`` call is made for all trajectories inside the program and kept where the eager stepper
  makes it); the control row (error norm, finiteness, success), the dense-output coefficients and ``f`` at the
  step's end (what ``Stepper.accept`` would evaluate eagerly after an acceptance; counted only then).

What stays on the host, as in the eager stepper: the per-trajectory flags (Jacobian freshness, refine, the last
accepted step), the counters and the retry with a fresh Jacobian after a Newton failure with a stale one (a second
call of the same program for those trajectories, rows merged; rare). The program returns one small ``(B, 6)``
info tensor read with one transfer per call (converged, factor ok, Newton's rate, refinement used, iterations).
Counters are the eager ones: ``njac``/``nlu`` count the Jacobians and factorizations the eager stepper makes (the
program evaluates the Jacobian and factors at every call and keeps them where the eager stepper would compute them).
Values agree with the eager solve to round-off per step (inductor's kernels sum and fuse in their own order); the
last bits reach the error estimate and move step sizes by ~1e-11 relative, so trajectories can drift apart by a
few tolerance units over a long stiff solve with the same accept/reject decisions, and a step-hold decision at its
threshold can flip (``tests/test_compiled_firk.py``).

One step graph per signature: the flags are tensors, ``kappa`` (which depends on ``rtol``) and the tolerances are
inputs, so tolerances, ``u0`` and ``p`` do not recompile. A differentiated step runs that program without a graph
(Newton is not differentiated) and attaches the exact stage derivative after it, as the eager step does, with the
stage Jacobians from a second program (``stage_jacobians``). Not compiled (eager after one warning):
:class:`~pysciml.SparseLU` and finite-difference Jacobians. This stepper is not a :class:`~.compiled.CompiledStepper`:
the loops around it are the eager ones (the batched control-in-program and whole-loop designs carry no FIRK state).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from ..solution import Stats
from .compiled_parts import _control, _Program, _user_f, jacobian_fn
from .compiled_wrapper import ProgramStepper
from .firk import FIRKStepper
from .firk_blocks import transformed_matrix
from .firk_fused import FusedFactors
from .firk_sparse import SparseBlockFactors
from .stepper import StepResult, any_true

__all__ = ["firk_program", "firk_unsupported", "CompiledFIRKStepper"]

Tensor = torch.Tensor


def firk_unsupported(stepper: FIRKStepper) -> str | None:
    """Why ``stepper`` has no compiled step (``None``: it has one)."""
    if isinstance(stepper.factors, SparseBlockFactors):
        return "the sparse linear solver (SparseLU, SciPy's SuperLU) has no compiled step"
    if stepper.rhs.user_jac is None and not stepper.rhs.autodiff:
        return "finite-difference Jacobians (autodiff=False) have no compiled step yet; give the problem a jac"
    return None


def _constants(stepper: FIRKStepper) -> tuple[Any, ...]:
    """The tableau's tensors the program reads (inputs, not captured constants); last, the fused matrix's
    (:meth:`~.firk_fused.FusedFactors.constants`, empty above ``BlockFactors.SMALL``)."""
    n, dtype, device = stepper.rhs.n, stepper.rhs.dtype, stepper.rhs.device
    s = stepper.tab.stages
    eye_n = torch.eye(n, dtype=dtype, device=device)
    M = eye_n if stepper.mass is None else stepper.mass
    lam = torch.tensor(stepper.tr.Lam, dtype=dtype, device=device)
    ez = stepper.ez if stepper.err_mu is not None else torch.zeros(s, dtype=dtype, device=device)
    fac = stepper.factors
    fused = fac.constants() if isinstance(fac, FusedFactors) else ()
    return (stepper.T, stepper.Tinv, lam, stepper.c, stepper.d, stepper.dense_ainv, stepper.Ainv, stepper.powers,
            torch.kron(lam, M), torch.eye(s, dtype=dtype, device=device), M, ez, fused)


def _lu_blocks(blocks: tuple[tuple[int, complex | float], ...], n: int, L: Tensor,
               ok: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """A real LU of each diagonal block of ``L`` (the complex pair's as its ``2n x 2n`` form) and ``ok`` and-ed
    with their success per trajectory."""
    lus = []
    for k, mu in blocks:
        w = n if isinstance(mu, float) else 2 * n
        lu, piv, info = torch.linalg.lu_factor_ex(L[:, k * n:k * n + w, k * n:k * n + w])
        diag = lu.diagonal(dim1=-2, dim2=-1)
        ok = ok & (info == 0) & torch.isfinite(diag).all(dim=1) & (diag != 0).all(dim=1)
        lus.append((lu, piv))
    return lus, ok


def _rate(k: Tensor, dyno: Tensor, noise: Tensor, kappa: Tensor, max_iters: int, eps: float,
          carry: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
    """radau5's rate control of one Newton iteration as masks (:class:`~.firk._Rate`'s ``update``): from the
    increments' RMS norms ``dyno`` and the stage values' round-off ``noise`` (``(B,)`` each) and the carried
    ``(faccon, theta, dynold, thqold, state)``, which trajectories take the increment and the new carry."""
    faccon, theta, dynold, thqold, state = carry
    active = state == 0
    finite = torch.isfinite(dyno)
    upd = active & finite & (k >= 1)
    thq = dyno / dynold
    theta = torch.where(upd, torch.where(k == 1, thq, torch.sqrt(thq * thqold)), theta)
    thqold = torch.where(upd, thq, thqold)
    diverged = theta >= 0.99
    faccon = torch.where(upd & ~diverged, theta / (1.0 - theta), faccon)
    rest = (max_iters - 1 - k).to(theta.dtype)
    slow = faccon * dyno * theta.pow(rest) >= kappa
    bad = ~finite | (upd & (diverged | slow))
    dynold = torch.where(active, dyno.clamp(min=eps), dynold)
    bad = bad & ~(finite & (dyno <= noise))  # increments at round-off level: converged
    move = active & ~bad
    state = torch.where(active & bad, -1, torch.where(move & (faccon * dyno <= kappa), 1, state))
    return move, (faccon, theta, dynold, thqold, state)


def firk_program(stepper: FIRKStepper, tag: str) -> _Program:
    """The one-variant (``step``) program of a FIRK stepper (see the module docstring)."""
    tab, rhs = stepper.tab, stepper.rhs
    F, jacobian = _user_f(rhs), jacobian_fn(rhs)
    s, n = tab.stages, rhs.n
    fac = stepper.factors if isinstance(stepper.factors, FusedFactors) else None
    has_mass = stepper.mass is not None
    blocks = stepper.tr.blocks
    err_mu = stepper.err_mu
    err_block = next((k for k, mu in blocks if isinstance(mu, float) and mu == err_mu), None)
    max_iters, jac_reuse, stiffly = stepper.max_iters, stepper.jac_reuse, tab.stiffly_accurate
    eps = torch.finfo(rhs.dtype).eps
    root = 1.0 / math.sqrt(s * n)

    def stage_f(p: Any, times: list[Tensor], U: Tensor) -> list[Tensor]:
        return [F(p, ti, U[:, i]) for i, ti in enumerate(times)]

    def firk_step(p: Any, t: Tensor, u: Tensor, f0: Tensor, dt: Tensor, atol_n: Tensor, rtol_n: Tensor,
                  atol: Tensor, rtol: Tensor, kappa: Tensor, consts: tuple[Any, ...], J_old: Tensor, need: Tensor,
                  rows: Tensor, faccon_in: Tensor, prev: Tensor, dt_old: Tensor, have: Tensor,
                  refine: Tensor) -> tuple[Any, ...]:
        T, Tinv, lam, c, d, dense_ainv, Ainv, powers, lam_m, eye_s, M, ez, fused = consts
        bsz = u.shape[0]
        h = dt
        J = torch.where(need[:, None, None], jacobian(p, t, u), J_old)

        # ---- factorization (no host synchronisation)
        e_inv: Tensor | None = None
        if fac is not None:  # the eager stepper's matrix P (firk_fused)
            P, e_inv, infos = fac.build(fused, J, h)
            ok = (P * 0 == 0).flatten(1).all(dim=1)  # x * 0 == 0: x finite, in 2 ops (isfinite takes 5)
            for info in infos:
                ok = ok & (info == 0)
            lus: list[tuple[Tensor, Tensor]] = []
        else:
            lam_mh, L = transformed_matrix(lam_m, eye_s, J, h)
            lus, ok = _lu_blocks(blocks, n, L, torch.ones(bsz, dtype=torch.bool, device=u.device))
            if err_block is not None:
                e_lu, e_piv = lus[[k for k, _ in blocks].index(err_block)]
            elif err_mu is not None:  # an estimate mu that is no block's: its own n x n matrix, as eager
                E = (err_mu / h)[:, None, None] * M - J
                e_lu, e_piv, e_info = torch.linalg.lu_factor_ex(E)
                e_diag = e_lu.diagonal(dim1=-2, dim2=-1)
                ok = ok & (e_info == 0) & torch.isfinite(e_diag).all(dim=1) & (e_diag != 0).all(dim=1)
        lam_h = lam / h[:, None, None]

        def solve_err(v: Tensor) -> Tensor:
            if e_inv is not None:  # baddbmm: the eager bmm's kernel (see iterate)
                return torch.baddbmm(v.unsqueeze(2), e_inv, v.unsqueeze(2), beta=0.0).squeeze(2)
            return torch.linalg.lu_solve(e_lu, e_piv, v.unsqueeze(2)).squeeze(2)

        # ---- starting values: the last accepted step's collocation polynomial (u where there is none)
        theta_t = torch.addcmul(torch.ones_like(c)[None, :, None], c[None, :, None], (h / dt_old)[:, None, None])
        u_col = u[:, None]
        U0 = torch.where(have[:, None, None], torch.matmul(theta_t.pow(powers), prev), u_col)
        Z0 = U0 - u_col

        # ---- simplified Newton (FIRKStepper._newton / _newton_fused, tensorised)
        times = [t + c[i] * h for i in range(s)]
        weight = (atol + rtol * u.abs()).reciprocal()[:, None]  # (B, 1, n)
        mag_u = u.abs()[:, None]
        ones = torch.ones_like(faccon_in)
        # state: 0 iterating, 1 converged, -1 failed, 2 not asked to iterate
        state0 = torch.where(rows, torch.zeros_like(rows, dtype=torch.int64), torch.full_like(rows, 2,
                                                                                              dtype=torch.int64))
        rate0 = (faccon_in.clamp(min=eps).pow(0.8), ones * jac_reuse, ones, ones.clone(), state0)
        k0 = torch.zeros((), dtype=torch.int64, device=u.device)

        def rms(v: Tensor) -> Tensor:
            return torch.linalg.vector_norm(v * weight, dim=(1, 2)) * root

        def more(k: Tensor, *carry: Tensor) -> Tensor:
            return (k < max_iters) & (carry[-1] == 0).any()

        if fac is not None:
            def iterate(k: Tensor, y: Tensor, *carry: Tensor) -> tuple[Tensor, ...]:
                Z = y[:, fac.Z:fac.Z + s]
                x = torch.cat((*stage_f(p, times, y[:, fac.U:fac.U + s]), Z.reshape(bsz, s * n), u, f0), 1)
                # baddbmm with beta = 0 is the eager bmm's kernel (BLAS), which inductor calls as is; its bmm with
                # a single column becomes a multiply and a sum that rounds otherwise
                new = torch.baddbmm(no_col, P, x.view(bsz, -1, 1), beta=0.0).view(bsz, fac.slots, n)
                noise = torch.linalg.vector_norm((mag_u + Z.abs()) * weight, dim=(1, 2)) * (100 * eps * root)
                move, carry = _rate(k, rms(new[:, :s]), noise, kappa, max_iters, eps, carry)
                return k + 1, torch.where(move[:, None, None], new, y), *carry

            no_col = u.new_zeros(bsz, fac.slots * n, 1)
            y0 = torch.cat((torch.zeros_like(Z0), Z0, U0, u.new_zeros(bsz, fac.slots - 3 * s, n)), 1)
            iters, y, faccon, theta, _, _, state = while_loop(more, iterate, (k0, y0, *rate0))
            Z = y[:, fac.Z:fac.Z + s]
        else:
            def increment(Fz: Tensor, W: Tensor) -> Tensor:
                LW = torch.matmul(lam_h, W)
                R = torch.matmul(Tinv, Fz) - (LW @ M.T if has_mass else LW)
                parts = []
                for (k, mu), (lu, piv) in zip(blocks, lus, strict=True):
                    w = 1 if isinstance(mu, float) else 2
                    x = torch.linalg.lu_solve(lu, piv, R[:, k:k + w].reshape(bsz, w * n, 1))
                    parts.append(x.view(bsz, w, n))
                return torch.cat(parts, 1)

            def iterate(k: Tensor, W: Tensor, Z: Tensor, *carry: Tensor) -> tuple[Tensor, ...]:
                dW = increment(torch.stack(stage_f(p, times, Z + u_col), 1), W)
                noise = torch.linalg.vector_norm((mag_u + Z.abs()) * weight, dim=(1, 2)) * (100 * eps * root)
                move, carry = _rate(k, rms(dW), noise, kappa, max_iters, eps, carry)
                W = torch.where(move[:, None, None], W + dW, W)
                return k + 1, W, torch.matmul(T, W), *carry

            iters, _, Z, faccon, theta, _, _, state = while_loop(more, iterate,
                                                                 (k0, torch.matmul(Tinv, Z0), Z0, *rate0))
        conv = state == 1
        good = conv & ok

        # ---- the new state, the estimate, the control row
        u_new = u + (Z[:, -1] if stiffly else torch.matmul(d, Z))
        K = torch.matmul(Ainv, Z)
        again = torch.zeros_like(refine)
        if err_mu is None:
            err = torch.zeros_like(u)
        else:
            if fac is not None:
                assert fac.ERR is not None
                err, mz = y[:, fac.ERR], y[:, fac.V] / h[:, None]
            else:
                mz = torch.matmul(ez, Z)
                mz = (mz @ M.T if has_mass else mz) / h[:, None]
                err = solve_err(f0 + mz)
            size = torch.maximum(u.abs(), u_new.abs())
            big = torch.linalg.vector_norm(err / (atol_n + rtol_n * size), dim=1) >= 1.0
            again = refine & big
            err2 = solve_err(F(p, t, u + err) + mz)
            err = torch.where(again[:, None], err2, err)
        control = _control(err, u, u_new, good, atol_n, rtol_n)
        if fac is not None:
            coeffs = y[:, fac.UROW:fac.UROW + dense_ainv.shape[0] + 1]
        else:
            coeffs = torch.cat((u_col, torch.matmul(dense_ainv, Z)), 1)
        info = torch.stack((conv.to(u.dtype), ok.to(u.dtype), faccon, theta, again.to(u.dtype),
                            iters.to(u.dtype).expand(bsz)), 1)
        f_end = F(p, t + h, u_new)  # Stepper.accept's f(t + h, u_new), kept only where the step is accepted
        return u_new, err, good, K, control, coeffs, f_end, J, info, Z

    def stage_jacobians(p: Any, t: Tensor, u: Tensor, h: Tensor, Z: Tensor) -> Tensor:
        """``J`` at every stage point ``(t + c_j h, u + Z_j)``, ``(B, s, n, n)``: for the stage derivative of a
        differentiated step (:meth:`~.firk.FIRKStepper._attach_gradient`)."""
        return torch.stack([jacobian(p, t + c * h, u + Z[:, j]) for j, c in enumerate(tab.c)], 1)

    prog = _Program(tag)
    prog.add("step", firk_step)
    prog.add("stage_jacobians", stage_jacobians)
    return prog


class CompiledFIRKStepper(ProgramStepper):
    """A FIRK stepper whose :meth:`step` runs the compiled program; the wrapped eager stepper (``inner``) keeps the
    per-trajectory state and does ``accept`` and the interpolant; after a failed compile it takes over."""

    def __init__(self, inner: FIRKStepper, program: _Program, stats: Stats, atol: Tensor, rtol: float) -> None:
        super().__init__(inner, program, stats, atol, rtol)
        dtype, device = atol.dtype, atol.device
        self.rtol = torch.full((1,), rtol, dtype=dtype, device=device)
        self.kappa = torch.full((1,), inner.kappa, dtype=dtype, device=device)
        self.consts = _constants(inner)

    def program_args(self, t: Tensor, u: Tensor, h: Tensor, rows: list[bool]) -> tuple[Any, ...]:
        """The program's arguments for the step from ``(t, u)`` by ``h``, Newton iterating on ``rows``: the eager
        stepper's host flags become ``(B,)`` tensors."""
        inner = self.inner
        bsz, n = u.shape
        need = [True] * bsz if inner.J is None else list(inner.need_jac)
        J_old = inner.J if inner.J is not None else u.new_zeros(bsz, n, n)
        if inner.prev is None:
            prev, dt_old = u.new_zeros(bsz, inner.tab.stages + 1, n), torch.ones_like(h)
        else:
            prev, dt_old = inner.prev
        flags = torch.tensor([need, rows, inner.have, inner.refine], dtype=torch.bool, device=u.device)
        faccon = torch.tensor(inner.faccon, dtype=u.dtype, device=u.device)
        return (self.rhs.p, t, u, inner.f0, h, self.atol_n, self.rtol_n, inner.atol, self.rtol, self.kappa,
                self.consts, J_old, flags[0], flags[1], faccon, prev, dt_old, flags[2], flags[3])

    def _call(self, t: Tensor, u: Tensor, h: Tensor, rows: list[bool]) -> tuple[Any, ...]:
        """One run of the program for the trajectories ``rows``, with the eager stepper's ``_refresh`` and
        ``_newton`` bookkeeping on the host; returns the program's outputs and the info rows as lists."""
        inner, stats = self.inner, self.stats
        bsz = u.shape[0]
        fresh = inner.J is None or any(inner.need_jac)
        need = [True] * bsz if inner.J is None else list(inner.need_jac)
        out = self.program.run("step", stats, *self.program_args(t, u, h, rows))
        J, info = out[7], out[8].tolist()
        # FIRKStepper._refresh's counters and state
        if fresh:
            stats.njac += 1
            inner._jac_count += 1
            inner.jac_at_start = [a or b for a, b in zip(inner.jac_at_start, need, strict=True)]
            inner.need_jac = [False] * bsz
        inner.J = J
        if (inner._factored is None or inner._factored[0] != inner._jac_count
                or not torch.equal(inner._factored[1], h)):
            stats.nlu += len(inner.mus)
            inner._factored = (inner._jac_count, h)
        # FIRKStepper._newton's counters and rate memory
        iters = int(info[0][5])
        conv = [r[0] == 1.0 for r in info]
        stats.nnonliniter += iters
        stats.nf += inner.tab.stages * iters
        stats.nsolve += len(inner.tr.blocks) * iters
        inner.faccon = [r[2] if ok else old for r, ok, old in zip(info, conv, inner.faccon, strict=True)]
        inner.theta = [r[3] if ok else old for r, ok, old in zip(info, conv, inner.theta, strict=True)]
        return out, info, conv

    def _step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        inner, stats = self.inner, self.stats
        f0 = inner.f0
        assert f0 is not None
        h = dt.detach()
        bsz = u.shape[0]
        # under gradients the program runs without a graph (Newton is not differentiated; its own graph would be)
        tracked = torch.is_grad_enabled() and (inner.f_tracked or u.requires_grad)
        with torch.no_grad() if tracked else contextlib.nullcontext():
            out, info, conv = self._call(t, u, h, [True] * bsz)
            retry = [not c and not a for c, a in zip(conv, inner.jac_at_start, strict=True)]
            if any(retry):  # FIRKStepper.step: a fresh Jacobian and the same h for those trajectories
                inner.need_jac = retry
                out2, info2, conv2 = self._call(t, u, h, retry)
                mask = torch.tensor(retry, device=u.device)
                merged = [torch.where(mask.view(-1, *([1] * (a.ndim - 1))), b, a)
                          for a, b in zip((*out[:7], out[9]), (*out2[:7], out2[9]), strict=True)]
                out = (*merged[:7], out2[7], out2[8], merged[7])
                info = [r2 if r else r1 for r1, r2, r in zip(info, info2, retry, strict=True)]
        u_new, err, good, K, control, coeffs, f_end, _, _, Z = out
        if tracked:  # FIRKStepper.step: the converged stages carry the exact derivative of the stage equations
            Z = inner._attach_gradient(t, u, h, Z, lambda: self._stage_jacobians(t, u, h, Z))
            u_new = u + (Z[:, -1] if inner.tab.stiffly_accurate else torch.matmul(inner.d, Z))
            K = torch.bmm(inner.bAinv, Z)
        if not all(r[0] == 1.0 and r[1] == 1.0 for r in info):
            stats.nnonlinconvfail += 1
        if inner.err_mu is not None:
            stats.nsolve += 1
            if any(r[4] == 1.0 for r in info):
                stats.nf += 1
                stats.nsolve += 1
        inner._pending = (coeffs, h)
        return StepResult(u_new=u_new, err=err, ok=good, stages=list(K.unbind(1)), f_start=f0, f_end=f_end,
                          control=control)

    def _stage_jacobians(self, t: Tensor, u: Tensor, h: Tensor, Z: Tensor) -> list[Tensor]:
        """The stage Jacobians by the program (counted as the eager step counts its ``s`` Jacobians there)."""
        Js = self.program.run("stage_jacobians", self.stats, self.rhs.p, t.detach(), u.detach(), h, Z.detach())
        self.stats.njac += self.inner.tab.stages
        return list(Js.unbind(1))

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        if res.f_end is not None and any_true(accepted):  # the eager stepper's f(t, u) here, counted as it
            self.stats.nf += 1
        self.inner.accept(accepted, t, u, res)
