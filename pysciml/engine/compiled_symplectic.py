"""The compiled step of the explicit symplectic (splitting) methods (``solve(..., compile=True)`` with
``VelocityVerlet()``, ``Leapfrog()``, ``Yoshida4()``, ``McAte5()``, ... on a :class:`~pysciml.SecondOrderODEProblem`).

A splitting step (:func:`~.symplectic.drift_kick`: the drifts ``q += a h v``, the kicks ``p += b h F`` with the user's
acceleration at each kick) is traced into one program per signature (method, batch and state shape, dtype, device, the
acceleration function), with the velocity and force known at the step's start as inputs (Dynamo compiles one graph for
each pattern of known and missing ones: after the first step, both are known). A solve saving at fixed times without
dense output runs the whole fixed-step loop as one program instead (:func:`whole_loop`,
:mod:`.compiled_loop_symplectic`); for the others the fixed-step loops stay the eager ones around the step
(:class:`CompiledSplittingStepper`, a :class:`~.compiled_wrapper.ProgramStepper`): saving, the oscillation check
(:mod:`.symplectic_check`) and the Hermite interpolant use the wrapped eager stepper, which computes the end fields the
step did not, eagerly and counted, as in an eager solve. The step's evaluations are counted in ``stats.nf`` as the eager
step counts them (found once per pattern by running :func:`drift_kick` on Python floats).

A separable :class:`~pysciml.HamiltonianProblem` compiles too (an HNN's learned ``H`` included): its velocity and
force are gradients of ``H``, by ``torch.func.grad`` while Dynamo traces (it does not trace ``torch.autograd.grad``).
An acceleration or ``H`` that does not trace (data-dependent Python) falls back at its first step with
:class:`~.compiled_wrapper.ProgramStepper`'s warning.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..problem_dynamical import HamiltonianProblem, SecondOrderODEProblem
from ..solution import Stats
from . import compiled_loop_symplectic
from .compiled_loop_symplectic import evaluations, field_function, splitting_fields
from .compiled_parts import _Program, cached_program, note_fresh_f
from .compiled_wrapper import ProgramStepper
from .loop_records import LoopOptions, LoopResult
from .stepper import StepResult
from .symplectic import SplittingStepper, drift_kick

__all__ = ["CompiledSplittingStepper", "compile_splitting", "splitting_unsupported", "warm_whole_loop", "whole_loop"]

Tensor = torch.Tensor


def splitting_unsupported(stepper: SplittingStepper) -> str | None:
    """Why ``stepper``'s solve has no compiled step (``None``: it has one)."""
    if isinstance(stepper.prob, (SecondOrderODEProblem, HamiltonianProblem)):
        return None
    return f"{stepper.name} on a {type(stepper.prob).__name__} has no compiled splitting step"


def _splitting_program(stepper: SplittingStepper, tag: str) -> _Program:
    split, velocity, force = splitting_fields(stepper)
    batched, shape, plan = stepper.batched, stepper.shape, stepper._plan

    def splitting_step(params: Any, t: Tensor, u: Tensor, dt: Tensor, v: Tensor | None,
                       f: Tensor | None) -> tuple[Any, ...]:
        x, w = split(u)
        h = dt.reshape(dt.shape[0], *([1] * len(shape))) if batched else dt[0]
        x, w, ends = drift_kick(plan, t, dt, h, x, w, v, f, velocity, lambda tt, q, p: force(params, tt, q, p))
        return torch.cat([x, w], dim=-1).reshape(u.shape[0], -1), ends

    prog = _Program(tag)
    prog.add("step", splitting_step)
    return prog


def _loop_stepper(stepper: Any, u0: Tensor, opts: LoopOptions) -> SplittingStepper | None:
    """The eager splitting stepper whose solve :mod:`.compiled_loop_symplectic` runs as one loop program, else
    ``None``."""
    if not isinstance(stepper, CompiledSplittingStepper) or not stepper.compiled:
        return None
    return stepper.inner if compiled_loop_symplectic.handles(stepper.inner, opts, u0) else None


def whole_loop(stepper: Any, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult | None:
    """The fixed-step solve of a compiled splitting stepper as one loop program (:mod:`.compiled_loop_symplectic`);
    ``None`` where that module does not handle the solve or its program failed to compile (the eager loops then run
    the per-step program)."""
    inner = _loop_stepper(stepper, u0, opts)
    return None if inner is None else compiled_loop_symplectic.integrate_whole(inner, u0, opts, stats)


def warm_whole_loop(stepper: Any, u0: Tensor, opts: LoopOptions) -> bool:
    """Compile the loop program :func:`whole_loop` would run (for :func:`pysciml.warmup`); ``False`` where that solve
    has none or it failed to compile (then warm the per-step program)."""
    inner = _loop_stepper(stepper, u0, opts)
    return inner is not None and compiled_loop_symplectic.warm(inner, u0, opts)


def compile_splitting(stepper: SplittingStepper, stats: Stats, bsz: int, atol: Tensor,
                      rtol: float) -> CompiledSplittingStepper:
    """``stepper`` with its step compiled (the program cached by signature); ``splitting_unsupported`` must be
    ``None``."""
    prob = stepper.prob
    u0 = prob.u0
    signature = ("Splitting", stepper.name, bsz, stepper.shape, stepper.batched, stepper.n, u0.dtype,
                 str(u0.device), type(prob).__name__)
    fn, identity, name = field_function(prob)
    key = (*signature, *identity)
    start = time.perf_counter()

    def make(tag: str) -> _Program:
        note_fresh_f(fn, signature, name)
        return _splitting_program(stepper, tag)

    prog = cached_program(key, make)
    stats.compile_time += time.perf_counter() - start
    return CompiledSplittingStepper(stepper, prog, stats, atol, rtol)


class CompiledSplittingStepper(ProgramStepper):
    """A :class:`~.symplectic.SplittingStepper` (``inner``) whose steps run the compiled program; ``inner`` keeps
    the velocity and force known at the current state and the step's end fields, and does everything else."""

    def _step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        inner = self.inner
        assert isinstance(inner, SplittingStepper)
        v, f = inner._v, inner._f
        u_new, ends = self.program.run("step", self.stats, inner.prob.p, t, u, dt, v, f)
        n_velocity, n_force, _ = evaluations(tuple(inner._plan), v is not None, f is not None)
        self.stats.nf += n_velocity * inner.count_velocity + n_force
        inner._step, inner._t_end = tuple(ends), t + dt
        return StepResult(u_new=u_new, err=None, ok=None, stages=[], f_start=u.new_empty(0), t_start=t)

    def warm(self, t: Tensor, u: Tensor, dt: Tensor) -> None:
        """Compile the step ahead of a solve (:func:`pysciml.warmup`): two throw-away steps from ``(t, u)`` by
        ``dt``, the first from a state with the velocity and force known (after ``init``), the second from the state
        a step leaves (its force unknown where the method ends with a drift)."""
        self.init(t, u)
        for _ in range(2):
            res = self.step(t, u, dt)
            t, u = t + dt, res.u_new.detach()
            self.accept(True, t, u, res)
