"""The compiled step of the additive Runge-Kutta family (KenCarp3/4/5, Kvaerno3/5, IMEXSSP2, ARS222): one program.

The same step as :class:`~.ark.ARKStepper` (same tableau, stage sums, Newton rule) with the Jacobian, the LU
factorisation, every stage's simplified Newton iteration and the explicit part inside one ``torch.compile``
program. Newton's data-dependent iteration count becomes a ``torch.while_loop`` per stage that runs while some
trajectory is still iterating (at most ``max_newton_iters`` times), with converged and failed trajectories
masked exactly as the eager loop freezes them, so the iterates, the convergence decisions and the iteration
counts are the eager ones. The counts come back as a tensor and reach ``Stats`` when the solve ends (no host
synchronisation inside the step).

Under gradients (the discrete adjoint) Newton runs without a graph and each converged stage gets the exact
derivative of the stage equation by the implicit function theorem, as :mod:`.stage_gradient` gives the eager
step (dense solve with the Jacobian at the converged stage), so gradients equal the eager ones.

A linear implicit part (a matrix operator ``L``, SINODE's) has its own variant, ``linear``: each stage is one solve
with the factors of ``W = M/(gamma h) - L`` that the eager solver computes (and reuses while the step size stays the
same: once per solve with fixed steps, one factorization for the whole batch), passed in; no Newton iteration, as
in the eager step. Not compiled (the caller runs these eagerly after a warning): matrix-free GMRES,
finite-difference Jacobians.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from .ark import ARKStepper
from .compiled_parts import _control, _Program, _user_f, factor, jacobian_fn
from .interpolation import polynomial_coefficients
from .linsolve import apply_factors

__all__ = ["ark_program"]

Tensor = torch.Tensor


def ark_program(stepper: ARKStepper, dense: bool, tag: str) -> _Program:
    """The ``fresh``/``reuse`` program of an ARK stepper (see the module docstring)."""
    tab = stepper.tab
    FI = _user_f(stepper.rhs)
    FE = _user_f(stepper.rhs_e) if stepper.rhs_e is not None else None
    jacobian = jacobian_fn(stepper.rhs)
    sums, final_sum, error_sum = stepper.stage_sums, stepper.final_sum, stepper.error_sum
    D = stepper.dense_matrix if dense else None
    max_iters, kappa, smooth, fsal, s = stepper.max_iters, stepper.kappa, stepper.smooth_est, stepper.fsal, tab.stages

    def newton(p: Any, t_i: Tensor, psi: Tensor, z: Tensor, gh: Tensor, inv: Tensor, eta_state: Tensor,
               solve: Any, atol_n: Tensor, rtol_n: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`ARKStepper._newton`: ``z = gamma h f_I(t_i, psi + z)``; returns ``z``, the converged mask, the
        updated rate estimate and the number of iterations the eager loop would have run."""
        info = torch.finfo(z.dtype)
        none = torch.zeros(psi.shape[0], dtype=torch.bool, device=psi.device)

        def more(k: Tensor, z: Tensor, eta: Tensor, ndz_old: Tensor, conv: Tensor, failed: Tensor,
                 active: Tensor) -> Tensor:
            return (k < max_iters) & active.any()

        def iterate(k: Tensor, z: Tensor, eta: Tensor, ndz_old: Tensor, conv: Tensor, failed: Tensor,
                    active: Tensor) -> tuple[Tensor, ...]:
            resid = z - gh * FI(p, t_i, psi + z)
            dz = solve(-resid * inv[:, None])
            z = torch.where(active[:, None], z + dz, z)
            y = psi + z
            ndz = torch.linalg.vector_norm(dz / (atol_n + rtol_n * y.abs()), dim=1)
            theta = ndz / ndz_old.clamp(min=info.tiny)
            later = active & (k > 0)  # the rate needs a previous increment
            failed = failed | (later & ((theta > 2.0) | ~torch.isfinite(ndz)))
            eta = torch.where(later & (theta < 1.0), theta / (1.0 - theta).clamp(min=1e-12), eta)
            conv = conv | (active & ~failed & ((eta * ndz <= kappa) | (ndz <= 1e-12)))
            ndz_old = torch.where(active, ndz, ndz_old)
            return k + 1, z, eta, ndz_old, conv, failed, ~(conv | failed)

        start = (torch.zeros((), dtype=torch.int64, device=psi.device), z,
                 eta_state.clamp(min=info.eps).pow(0.8), torch.zeros_like(eta_state), none, none.clone(), ~none)
        k, z, eta, _, conv, _, _ = while_loop(more, iterate, start)
        return z, conv, torch.where(conv, eta, eta_state), k

    def stage_gradient(p: Any, t_i: Tensor, psi: Tensor, z: Tensor, gh: Tensor) -> Tensor:
        """:func:`~.stage_gradient.attach_stage_gradient`, dense: ``z*`` carrying ``(I - gamma h J*)^{-1} dr``."""
        r = gh * FI(p, t_i, psi + z) - z
        with torch.no_grad():
            Js = jacobian(p, t_i.detach(), (psi + z).detach())
            A = torch.eye(Js.shape[-1], dtype=Js.dtype, device=Js.device) - gh.detach()[:, :, None] * Js
        dz = torch.linalg.solve(A, r)
        return z + (dz - dz.detach())

    def ark_step(p: Any, t: Tensor, u: Tensor, fI0: Tensor, fE0: Tensor | None, dt: Tensor, atol_n: Tensor,
                 rtol_n: Tensor, mass: Tensor | None, eta: Tensor, J: Tensor | None, tracked: bool) -> tuple[Any, ...]:
        grad = torch.is_grad_enabled()
        with torch.no_grad():  # Newton runs without a graph; stages get their exact derivative below
            if J is None:  # the fresh variant: the Jacobian at the step's start, inside the program
                J = jacobian(p, t, u)
            inv = 1.0 / (tab.gamma * dt)
            ok, solve = factor(J, inv, mass)
        h = dt[:, None]
        gh = tab.gamma * h
        kI = [fI0]
        kE = [fE0] if fE0 is not None else []
        U = u
        iters = torch.zeros((), dtype=torch.int64, device=u.device)
        for i in range(1, s):
            (acc,) = sums[i](kI + kE)
            psi = u if acc is None else torch.addcmul(u, h, acc)
            t_i = t + tab.c[i] * dt
            with torch.no_grad():
                z, conv, eta, k = newton(p, t_i, psi, gh * kI[-1], gh, inv, eta, solve, atol_n, rtol_n)
            if grad and (tracked or psi.requires_grad):
                z = stage_gradient(p, t_i, psi, z, gh)
            ok = ok & conv
            iters = iters + k
            U = psi + z
            kI.append(z / gh)
            if FE is not None:
                kE.append(FE(p, t_i, U))
        u_new, err, ok, K, control, coeffs, k_i, k_e, counts = end(u, U, h, kI, kE, ok, solve, inv, atol_n, rtol_n,
                                                                   iters)
        return u_new, err, ok, K, control, coeffs, J, eta, k_i, k_e, counts

    def linear_step(p: Any, t: Tensor, u: Tensor, fI0: Tensor, fE0: Tensor | None, dt: Tensor, atol_n: Tensor,
                    rtol_n: Tensor, ok: Tensor, lu: Tensor, piv: Tensor, inverse: Tensor | None, shared: bool
                    ) -> tuple[Any, ...]:
        """The step on a linear implicit part ``L u``: each stage one solve with the eager factorization of
        ``W = M/(gamma h) - L`` (its factors are inputs: the eager solver factors once while the step size stays the
        same, shared by the batch), no Newton iteration; differentiable through the stages and the factors."""
        inv = 1.0 / (tab.gamma * dt)
        h = dt[:, None]
        gh = tab.gamma * h
        kI = [fI0]
        kE = [fE0] if fE0 is not None else []
        U = u

        def solve(v: Tensor) -> Tensor:
            return apply_factors(lu, piv, inverse, shared, v)

        for i in range(1, s):
            (acc,) = sums[i](kI + kE)
            psi = u if acc is None else torch.addcmul(u, h, acc)
            U = solve(psi * inv[:, None])
            kI.append((U - psi) / gh)
            if FE is not None:
                kE.append(FE(p, t + tab.c[i] * dt, U))
        none = torch.zeros((), dtype=torch.int64, device=u.device)
        u_new, err, ok, K, control, coeffs, k_i, k_e, counts = end(u, U, h, kI, kE, ok, solve, inv, atol_n, rtol_n,
                                                                   none)
        return u_new, err, ok, K, control, coeffs, None, None, k_i, k_e, counts  # ark_step's layout (no J, eta)

    def end(u: Tensor, U: Tensor, h: Tensor, kI: list[Tensor], kE: list[Tensor], ok: Tensor, solve: Any,
            inv: Tensor, atol_n: Tensor, rtol_n: Tensor, iters: Tensor) -> tuple[Any, ...]:
        """The step's end, both forms: the solution, the error (smoothed with ``smooth_est``), the control row,
        the stages, the dense coefficients, the last stages of each part and the Newton counts."""
        ks = [a + b for a, b in zip(kI, kE, strict=True)] if kE else kI
        if error_sum is not None:  # the parts have their own weights (ARS222)
            (acc,) = final_sum(kI + kE)
            (e,) = error_sum(ks)
        else:
            acc, e = final_sum(ks)
        u_new = U if fsal else (u if acc is None else torch.addcmul(u, h, acc))
        err = torch.zeros_like(u) if e is None else h * e
        if smooth:
            err = solve(err * inv[:, None])
        control = _control(err, u, u_new, ok, atol_n, rtol_n)
        K = torch.stack(ks)
        coeffs = None if D is None else polynomial_coefficients(u, D, K * h)
        counts = torch.stack((iters, (~ok).any().to(torch.int64)))
        return u_new, err, ok, K, control, coeffs, kI[-1], kE[-1] if kE else None, counts

    program = _Program(tag)
    if stepper.linear:
        program.add("linear", linear_step)
        return program
    return program.with_variants(ark_step)
