"""The whole batched loop as one compiled program (``torch.while_loop``): no host round trip until it ends.

For the simplest common case, an adaptive solve with ``compile=True`` (a batch, or one trajectory in float64,
where it replaces the scalar loop) by an explicit Runge-Kutta method
whose interpolant needs no extra stages, saving at fixed times (``saveat``, or only the ends), without dense
output, ``tstops``, the progress bar or step hooks, :func:`integrate_batched_whole` runs
:mod:`.compiled_control`'s controlled step (the step with the batched loop's control) inside a
``torch.while_loop`` that turns while some trajectory is running and fewer than ``maxiters`` steps were taken.
Save points are filled inside the program: each accepted step writes the points it passed, evaluated on its
interpolant (its end value where a point is the step's end), as :class:`~.loop_saver._Saver` does. The counters
come back with the result (steps, steps with an acceptance, per-trajectory accepted and attempted steps), so
``sol.stats`` is the eager solve's.

Everything else (Rosenbrock and ARK, whose Jacobian is recomputed only after an accepted step, dense output,
``tstops``, solves that may be differentiated: ``while_loop`` has no backward) keeps the per-step design of
:mod:`.compiled_control`; a loop program that fails to compile falls back to it too, once per signature.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import fields
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from ..solution import Stats
from .compiled import CompiledStepper, CompileFailure, _Program
from .compiled_control import _fsal, _fused_program, _padded, _start, finish, handles
from .compiled_parts import tracks_grad
from .explicit_rk import ExplicitRKStepper
from .interpolation import evaluate, polynomial_coefficients
from .loop_records import LoopOptions, LoopResult
from .loop_saver import MAXITERS

__all__ = ["handles_whole", "integrate_batched_whole", "warm_whole"]

Tensor = torch.Tensor


_FAILED: weakref.WeakSet[_Program] = weakref.WeakSet()  # loop programs that failed to compile: not retried


def _tracks_grad(stepper: CompiledStepper) -> bool:
    """Whether the solve may be differentiated: ``while_loop`` has no backward, so those keep the per-step
    programs (a parameter captured by a closure in ``f`` is found by the failed compile, once per signature)."""
    return tracks_grad(stepper.rhs)


def handles_whole(stepper: Any, opts: LoopOptions, u0: Tensor) -> bool:
    """Whether :func:`integrate_batched_whole` runs this batched solve."""
    if not handles(stepper, opts) or opts.dense or opts.saveat is None or u0.requires_grad or _tracks_grad(stepper):
        return False
    if u0.shape[0] == 1 and u0.dtype != torch.float64:  # the scalar loop keeps time in Python floats (float64)
        return False
    inner = stepper.inner
    stops = [s for s in (opts.tstops or []) if min(opts.t0, opts.t1) < s < max(opts.t0, opts.t1)]
    return isinstance(inner, ExplicitRKStepper) and not inner.tab.extra_c and not stops


def _loop_program(stepper: CompiledStepper, opts: LoopOptions, direction: float, interior: bool) -> _Program:
    """The while_loop around the controlled step (cached on the step's program)."""
    base = stepper.program
    key = ("whole", interior, direction, opts.dtmin > 0.0, opts.dtmax is not None, opts.controller, stepper.order)
    prog = base.fused.get(key)
    if prog is not None:
        return prog
    step = _fused_program(stepper, opts, direction, 1).raw["step"]
    D = stepper.inner.dense_matrix

    def whole_loop(L: tuple[Tensor, ...], C: tuple[Tensor, ...], saveat: Tensor, out: Tensor, p: Any, u: Tensor,
                   f0: Tensor, atol_n: Tensor, rtol_n: Tensor, maxiters: Tensor) -> tuple[Tensor, ...]:
        rows = torch.arange(saveat.shape[0], device=saveat.device)[:, None]

        def more(k: Tensor, n_any: Tensor, u: Tensor, f0: Tensor, out: Tensor, *L: Tensor) -> Tensor:
            return (k < maxiters[0]) & L[3].any()

        def body(k: Tensor, n_any: Tensor, u: Tensor, f0: Tensor, out: Tensor, *L: Tensor) -> tuple[Tensor, ...]:
            t, sidx = L[0], L[11]
            res, state, u_new, f0s, dt_step, n_cross, summary = step(L, C, p, t, u, f0, L[1], atol_n, rtol_n)
            passed = (rows >= sidx) & (rows < sidx + n_cross)  # (S, B): the save points this step passed
            at_end = saveat[:, None] == state[0]
            if interior:
                assert D is not None
                coeffs = polynomial_coefficients(u, D, res[3] * dt_step[:, None])
                vals = torch.where(at_end[..., None], u_new, evaluate(coeffs, (saveat[:, None] - t) / dt_step))
            else:
                vals = u_new.expand(saveat.shape[0], -1, -1)
            out = torch.where(passed[..., None], vals, out)
            state = tuple(x.clone() if x is y else x for x, y in zip(state, L, strict=True))  # no aliasing
            return (k + 1, n_any + summary[1], u_new, f0s[2], out, *state)

        zero = torch.zeros((), dtype=torch.long, device=u.device)
        return tuple(while_loop(more, body, (zero, zero.clone(), u, f0, out, *L)))

    prog = _Program(f"{base.tag}w{len(base.fused)}")
    prog.add("loop", whole_loop)
    base.fused[key] = prog
    return prog


def _inputs(stepper: CompiledStepper, u0: Tensor, opts: LoopOptions, steps: int) -> tuple[Any, ...]:
    """The loop program, its arguments (at most ``steps`` steps) and the saver."""
    assert opts.saveat is not None
    L, C, _, saver, direction = _start(stepper, u0, opts)
    saveat = opts.saveat
    interior = bool(((saveat != opts.t0) & (saveat != opts.t1)).any())
    prog = _loop_program(stepper, opts, direction, interior)
    padded = _padded(saveat.tolist(), math.inf, u0.dtype, u0.device)
    out = torch.full((padded.shape[0], *saver.out.shape[1:]), math.nan, dtype=u0.dtype, device=u0.device)
    out[: saveat.shape[0]] = saver.out
    maxiters = torch.full((1,), steps, dtype=torch.long, device=u0.device)
    args = (L, C, padded, out, stepper.rhs.p, u0, stepper.inner.f0, stepper.atol_n, stepper.rtol_n, maxiters)
    return prog, args, saver


def warm_whole(stepper: Any, u0: Tensor, opts: LoopOptions) -> None:
    """Compile the loop program ahead of a solve (:func:`pysciml.warmup`): it runs one step, discarded."""
    assert isinstance(stepper, CompiledStepper)
    prog, args, _ = _inputs(stepper, u0, opts, 1)
    try:
        if prog in _FAILED:
            raise CompileFailure("failed before")
        prog.run("loop", stepper.stats, *args)
    except CompileFailure:  # the solve will fall back to the per-step programs: compile those
        _FAILED.add(prog)
        from .compiled_control import warm

        warm(stepper, u0, opts)


def integrate_batched_whole(stepper: Any, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult:
    """The batched loop as one compiled program (see the module docstring); on a failed compile, the per-step
    design (:func:`~.compiled_control.integrate_batched_compiled`) from the start."""
    from .compiled_control import integrate_batched_compiled

    assert isinstance(stepper, CompiledStepper) and opts.saveat is not None
    before = {f.name: getattr(stats, f.name) for f in fields(stats)}
    prog, args, saver = _inputs(stepper, u0, opts, opts.maxiters - stats.nloop)
    try:
        if prog in _FAILED:
            raise CompileFailure("failed before")
        k, n_any, u, f0, out, *state = prog.run("loop", stats, *args)
    except CompileFailure:
        _FAILED.add(prog)
        for name, value in before.items():
            setattr(stats, name, value)
        return integrate_batched_compiled(stepper, u0, opts, stats)
    steps, with_acceptance = int(k), int(n_any)
    stats.nloop += steps
    stats.nf += (stepper.inner.tab.stages - 1) * steps + (0 if _fsal(stepper.inner) else with_acceptance)
    stepper.inner.f0 = f0
    if stats.nloop >= opts.maxiters:  # the loop stopped on maxiters: the running trajectories fail there
        active = state[3]
        state[6] = torch.where(active, MAXITERS, state[6])
        state[7] = torch.where(active, state[0], state[7])
        state[8] = torch.where(active, state[1], state[8])
    saver.out = out[: opts.saveat.shape[0]]
    result = finish(stepper, tuple(state), saver, u, None, stats)
    if u0.shape[0] == 1:  # as the scalar loop returns it
        result.dt_next = float(state[1].abs()[0])
    return result
