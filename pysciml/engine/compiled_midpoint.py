"""The compiled step of the implicit midpoint rule (``solve(..., compile=True)`` with ``ImplicitMidpoint()``, the
symplectic method for any Hamiltonian, an HNN's learned non-separable ``H`` included).

The stage solve of :class:`~.symplectic.ImplicitMidpointStepper` (the Jacobian at ``u_n``, the factorization of
``I - h/2 J``, simplified Newton with its per-trajectory convergence test) is one program per signature, Newton as a
``torch.while_loop`` that stops when every trajectory has converged or after ``max_iters`` iterations, as the eager
loop does; the same operations in the same order, so the same iterates. What stays eager, in the wrapped stepper:
the step around the stage (the exact stage derivative attached under gradients,
:func:`~.stage_gradient.attach_stage_gradient`), ``accept``, the fixed-step checks, the Hermite interpolant and the
fixed-step loops. The counters are the eager step's, from the iteration count the program returns (one host round
trip per step, which the eager step makes too).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from .compiled_parts import _Program, _user_f, jacobian_fn
from .compiled_wrapper import ProgramStepper
from .stepper import StepResult
from .symplectic import ImplicitMidpointStepper

__all__ = ["CompiledMidpointStepper", "midpoint_program", "midpoint_unsupported"]

Tensor = torch.Tensor


def midpoint_unsupported(stepper: ImplicitMidpointStepper) -> str | None:
    """Why ``stepper`` has no compiled step (``None``: it has one)."""
    if stepper.rhs.user_jac is None and not stepper.rhs.autodiff:
        return "finite-difference Jacobians (autodiff=False) have no compiled step yet; give the problem a jac"
    return None


def midpoint_program(stepper: ImplicitMidpointStepper, tag: str) -> _Program:
    """The program of the stage solve: ``(p, t_mid, u, gh) -> (y, converged, iterations)``, ``t_mid`` ``(B,)``,
    ``u`` ``(B, n)``, ``gh = h/2`` ``(B, 1)``; ``y`` ``(B, n)``, ``converged`` ``(B,)`` bool, ``iterations`` 0-d."""
    F, jacobian = _user_f(stepper.rhs), jacobian_fn(stepper.rhs)
    tol, stop, max_iters = stepper.tol, max(stepper.tol, stepper.floor), stepper.max_iters

    def midpoint_newton(p: Any, tm: Tensor, u: Tensor, gh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        eye = torch.eye(u.shape[1], dtype=u.dtype, device=u.device)
        lu, piv = torch.linalg.lu_factor(eye - gh[:, :, None] * jacobian(p, tm, u))
        tiny = torch.finfo(u.dtype).tiny

        def more(k: Tensor, y: Tensor, done: Tensor, eta_prev: Tensor) -> Tensor:
            return (k < max_iters) & ~done.all()

        def iteration(k: Tensor, y: Tensor, done: Tensor, eta_prev: Tensor) -> tuple[Tensor, ...]:
            g = y - u - gh * F(p, tm, y)
            dy = -torch.linalg.lu_solve(lu, piv, g[..., None])[..., 0]
            y = torch.where(done[:, None], y, y + dy)
            eta = dy.abs().amax(dim=1) / y.abs().amax(dim=1).clamp(min=tiny)
            theta = eta / eta_prev
            remaining = torch.where(torch.isfinite(eta_prev) & (theta < 1), eta * theta / (1 - theta), math.inf)
            done = done | ((eta <= stop) | (remaining <= tol)) & torch.isfinite(eta)
            return k + 1, y, done, eta

        start = (torch.zeros((), dtype=torch.long, device=u.device), u.clone(),
                 torch.zeros(u.shape[0], dtype=torch.bool, device=u.device),
                 torch.full((u.shape[0],), math.inf, dtype=u.dtype, device=u.device))
        k, y, done, _ = while_loop(more, iteration, start)
        return y, done, k

    prog = _Program(tag)
    prog.add("newton", midpoint_newton)
    return prog


class CompiledMidpointStepper(ProgramStepper):
    """An :class:`~.symplectic.ImplicitMidpointStepper` (``inner``) whose stage solve runs the compiled program."""

    def _newton(self, tm: Tensor, u: Tensor, gh: Tensor) -> tuple[Tensor, Tensor]:
        y, done, k = self.program.run("newton", self.stats, self.rhs.p, tm, u, gh)
        iters, stats = int(k), self.stats
        stats.njac += 1  # as the eager step counts: one Jacobian, one LU, one f call and one solve per iteration
        stats.nlu += 1
        stats.nf += iters
        stats.nnonliniter += iters
        stats.nsolve += iters
        stats.nnonlinconvfail += int((~done).sum())
        return y, done

    def _step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        inner = self.inner
        assert isinstance(inner, ImplicitMidpointStepper)
        return inner.step_with(self._newton, t, u, dt)
