"""The whole fixed-step loop of a splitting method (VelocityVerlet, Leapfrog, Yoshida4, McAte*) as one compiled
program (``torch.while_loop``), for ``solve(..., compile=True)`` on a :class:`~pysciml.SecondOrderODEProblem`.

It runs a solve that :func:`handles` accepts: fixed steps (``dt``), saving at fixed times (``saveat``, or a batch's two
ends with ``dense=False``), without dense output, the progress bar, hooks, callbacks, ``tstops`` or gradients, one
trajectory in float64 or a batch. Everything else (one trajectory saving every step, dense output, ...) keeps the
per-step program of :mod:`.compiled_symplectic` inside the eager loops. Each iteration does what an iteration of the
eager loops does (:func:`~.loop.integrate_batched`, and :func:`~.loop_scalar.integrate_single` for one trajectory):

* the step times: ``n`` fixed steps of ``dt`` (:func:`~.loop_records.fixed_step_count`), the last one shortened or
  lengthened to end on ``t1`` (fixed steps never land on save times: those are interpolated);
* the step: :func:`~.symplectic.drift_kick` with the velocity at its start passed in (``v`` itself on a
  second-order problem: free), and the force too where the plan starts with a kick: evaluated at the previous
  step's end ``(t + dt, q, p)``, where the eager stepper, not knowing it, evaluates it at the step's start, the
  same point (the last step, which ends on ``t1`` exactly, has no next step);
* the step's end fields, needed for the save points strictly inside a step (cubic Hermite, as
  :meth:`~.symplectic.SplittingStepper.interpolant`) and for the oscillation check (:mod:`.symplectic_check`,
  after steps 1 and 2, every :data:`~.symplectic_check.CHECK_EVERY` steps, after every step while growth
  is confirmed, and on the last step), computed in a ``while_loop`` of zero or one iteration where the plan leaves a
  force missing; a trajectory the check flags ends ``Unstable`` with the eager reason, one whose state turns
  non-finite ``Unstable`` too;
* the counters: ``nf`` is counted as the eager stepper counts it (which velocities and forces each step
  evaluates depends on whether the previous step's end fields were computed: three patterns, found once per plan
  by running :func:`~.symplectic.drift_kick` on Python floats), ``naccept``, ``nreject`` and ``nloop`` as the
  eager loops count them.

``ENABLED = False`` keeps every splitting solve on the per-step program. A loop program that fails to compile falls
back to the per-step program (one warning per signature, ``stats`` as they were).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from ..problem_dynamical import HamiltonianProblem, SecondOrderODEProblem
from ..solution import Stats
from .compiled_parts import (
    _leaves_require_grad,
    _Program,
    cached,
    cached_program,
    note_fresh_f,
)
from .fixed_step_check import describe
from .interpolation import evaluate, hermite_coefficients
from .loop_records import LoopOptions, LoopResult, finite_rows, fixed_step_count, save_time_list
from .loop_saver import _CODES, MAXITERS, RUNNING, SUCCESS, UNSTABLE, _Saver
from .symplectic import SplittingStepper, drift_kick
from .symplectic_check import OscillationCheck

__all__ = ["ENABLED", "evaluations", "handles", "integrate_whole", "splitting_fields", "warm"]

Tensor = torch.Tensor

ENABLED = True
"""Fixed-step splitting solves through the whole-loop program (the default); ``False``: the per-step program."""


def splitting_fields(stepper: SplittingStepper) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """The traceable pieces of a splitting step on a second-order or separable Hamiltonian problem: ``split(u)``
    (engine layout to the user's ``(q, p)``), ``velocity(t, q, p)`` (``p`` itself; ``dH/dp``) and
    ``force(params, t, q, p)`` (the acceleration; ``-dH/dq``), ``t`` in engine layout ``(B,)``."""
    prob = stepper.prob
    n, batched, shape = stepper.n, stepper.batched, stepper.shape

    def split(u: Tensor) -> tuple[Tensor, Tensor]:  # SplittingStepper's layout (_split, _join, _scalar, _time)
        x = u.reshape(u.shape[0], *shape) if batched else u[0].reshape(shape)
        return x[..., :n], x[..., n:]

    if isinstance(prob, HamiltonianProblem):  # gradients of H (torch.func.grad while Dynamo traces); autonomous
        def hamiltonian_force(params: Any, tt: Tensor, x: Tensor, w: Tensor) -> Tensor:
            return prob.force_with(params, x, w)

        return split, lambda tt, x, w: prob.velocity(tt, x, w), hamiltonian_force
    accel, takes_p = prob.accel, prob.accel_takes_p

    def velocity(tt: Tensor, x: Tensor, w: Tensor) -> Tensor:  # SecondOrderODEProblem.velocity: v itself
        return w

    def force(params: Any, tt: Tensor, x: Tensor, w: Tensor) -> Tensor:  # SecondOrderODEProblem.force
        tu = tt if batched else tt[0]
        return accel(tu, x, w, params) if takes_p else accel(tu, x, w)

    return split, velocity, force


@cache
def evaluations(plan: tuple[tuple[float, float, float], ...], v_known: bool,
                f_known: bool) -> tuple[int, int, tuple[bool, ...]]:
    """How many velocity and force evaluations a step from a state with the velocity / force known makes, and
    which of its end fields ``(v_start, f_start, v_end, f_end)`` it leaves unknown."""
    calls = [0, 0]

    def velocity(*args: Any) -> float:
        calls[0] += 1
        return 0.0

    def force(*args: Any) -> float:
        calls[1] += 1
        return 0.0

    _, _, ends = drift_kick(list(plan), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0 if v_known else None,
                            0.0 if f_known else None, velocity, force)
    return calls[0], calls[1], tuple(e is None for e in ends)


# the eager stepper's knowledge at a step's start: after a step (STEADY), after init or a step whose end fields
# were computed (FRESH: both known), after a step part of a batch took (NONE: neither)
STEADY, FRESH, NONE = 0, 1, 2


def _counts(stepper: SplittingStepper) -> tuple[list[int], list[int]]:
    """``nf`` of a step and of its end fields, per start pattern (``STEADY, FRESH, NONE``)."""
    plan, cv = tuple(stepper._plan), int(stepper.count_velocity)
    _, _, (_, _, v_miss, f_miss) = evaluations(plan, True, True)
    steps, ends = [], []
    for vk, fk in ((not v_miss, not f_miss), (True, True), (False, False)):
        nv, nf, missing = evaluations(plan, vk, fk)
        steps.append(cv * nv + nf)
        ends.append(cv * (missing[0] + missing[2]) + missing[1] + missing[3])
    return steps, ends


def field_function(prob: Any) -> tuple[Any, tuple[Any, ...], str]:
    """A splitting problem's user function (the acceleration; ``H``, or ``V``), its identity in program keys (the
    ids of the functions and whether each takes the parameters) and its name in the fresh-function warning."""
    if isinstance(prob, HamiltonianProblem):
        fns = prob.closure_modules()
        takes = (prob.H_takes_p,) if prob._parts is None else (prob._parts[1], prob._parts[3])
        return fns[-1], (*map(id, fns), *takes), "H" if prob._parts is None else "V"
    return prob.accel, (id(prob.accel), prob.accel_takes_p), "the acceleration"


def _differentiated(prob: Any, u0: Tensor) -> bool:
    """Whether a solve may be differentiated: grad mode, and ``u0``, a tensor in ``p`` or a parameter of an
    ``nn.Module`` the problem's functions are (an HNN's ``H``) requiring grad."""
    f = prob.f if isinstance(prob, HamiltonianProblem) else prob.accel  # prob.f: its own field, H's modules seen
    return torch.is_grad_enabled() and (u0.requires_grad or _leaves_require_grad(f, prob.p))


def handles(stepper: Any, opts: LoopOptions, u0: Tensor) -> bool:
    """Whether :func:`integrate_whole` may run this solve (``stepper``: a compiled splitting stepper's ``inner``)."""
    if not ENABLED or not isinstance(stepper, SplittingStepper) or \
            not isinstance(stepper.prob, (SecondOrderODEProblem, HamiltonianProblem)):
        return False
    if opts.adaptive or opts.dt is None or opts.saveat is None or opts.save_everystep or opts.dense:
        return False
    if opts.progress or opts.hooks is not None or opts.events is not None:
        return False
    stops = [s for s in (opts.tstops or []) if min(opts.t0, opts.t1) < s < max(opts.t0, opts.t1)]
    if stops or (u0.shape[0] == 1 and u0.dtype != torch.float64):  # the scalar loop keeps time in float64
        return False
    if _differentiated(stepper.prob, u0):
        return False
    prog = cached(_key(stepper, opts, u0))
    return prog is None or prog.failed is None  # a failed compile is remembered on its program (_Program.failed)


def _signature(stepper: SplittingStepper, opts: LoopOptions, u0: Tensor) -> tuple:
    """The loop program's key less the user function's identity."""
    assert opts.saveat is not None
    return ("SplittingLoop", stepper.name, tuple(u0.shape), stepper.shape, stepper.batched, u0.dtype,
            str(u0.device), type(stepper.prob).__name__, opts.t1 > opts.t0, _padded_len(opts.saveat.shape[0]))


def _key(stepper: SplittingStepper, opts: LoopOptions, u0: Tensor) -> tuple:
    return (*_signature(stepper, opts, u0), *field_function(stepper.prob)[1])


def _padded_len(s: int) -> int:
    return max(8, 1 << max(0, s - 1).bit_length())


def _loop_fn(stepper: SplittingStepper, check: OscillationCheck, scalar: bool, direction: float) -> Callable[..., Any]:
    """The loop program's function (see the module docstring)."""
    split, velocity, force = splitting_fields(stepper)
    plan, batched, shape = stepper._plan, stepper.batched, stepper.shape
    first_kick = next(a == 0.0 for a, b, _ in plan if a != 0.0 or b != 0.0)  # the plan needs f at its start
    _, _, (_, f0_miss, _, f1_miss) = evaluations(tuple(plan), True, first_kick)
    step_nf, end_nf = _counts(stepper)
    limit, persist, growth_kind = check.limit, check.persist, check.growth_kind

    def by_pattern(pattern: Tensor, values: list[int]) -> Tensor:  # values[pattern], without a data-dependent index
        return torch.where(pattern == STEADY, values[STEADY], torch.where(pattern == FRESH, values[FRESH],
                                                                           values[NONE]))

    def join(a: Tensor, b: Tensor, bsz: int) -> Tensor:
        return torch.cat([a, b], dim=-1).reshape(bsz, -1)

    def loop(params: Any, u: Tensor, v: Tensor, f: Tensor, t: Tensor, dt: Tensor, t1: Tensor, n_fixed: Tensor,
             max_steps: Tensor, saveat: Tensor, keyed: Tensor, out: Tensor, sidx: Tensor) -> tuple[Tensor, ...]:
        bsz = u.shape[0]
        dev = u.device
        rows = torch.arange(saveat.shape[0], device=dev)[:, None]
        longs = torch.zeros(bsz, dtype=torch.long, device=dev)
        zero = torch.zeros((), dtype=torch.long, device=dev)

        def more(k: Tensor, pattern: Tensor, streaking: Tensor, active: Tensor, *rest: Tensor) -> Tensor:
            return (k < max_steps) & active.any()

        def body(k: Tensor, pattern: Tensor, streaking: Tensor, active: Tensor, u: Tensor, v: Tensor, f: Tensor,
                 t: Tensor, out: Tensor, sidx: Tensor, status: Tensor, fail_t: Tensor, fail_dt: Tensor,
                 fail_kind: Tensor, fail_z: Tensor, prev_dd: Tensor, streak: Tensor, n_acc: Tensor,
                 n_att: Tensor, nf: Tensor) -> tuple[Tensor, ...]:
            k = k + 1
            was_active = active
            last = k >= n_fixed
            at_stop = active & last
            dt_step = torch.where(at_stop, t1 - t, dt)
            x, w = split(u)
            h = dt_step.reshape(bsz, *([1] * len(shape))) if batched else dt_step[0]
            x1, w1, (vs, fs, ve, fe) = drift_kick(plan, t, dt_step, h, x, w, v, f if first_kick else None, velocity,
                                                  lambda tt, q, p: force(params, tt, q, p))
            t_end = t + dt_step
            u_new = join(x1, w1, bsz)
            accepted = active & finite_rows(u_new)
            t_new = torch.where(accepted, torch.where(at_stop, t1, t_end), t)
            u_next = torch.where(accepted[:, None], u_new, u)
            # save points passed (S, B); those strictly inside the step need the interpolant
            passed = accepted[None] & (rows >= sidx[None]) & (keyed[:, None] <= direction * t_new[None])
            at_end = saveat[:, None] == t_new[None]
            due = check.scheduled(k) | streaking | last
            if scalar:
                due = due & accepted.any()
            need = (passed & ~at_end).any() | due
            v0 = velocity(t, x, w) if vs is None else vs
            v1 = velocity(t_end, x1, w1) if ve is None else ve
            f0 = fs
            f1 = force(params, t_end, x1, w1) if fe is None and first_kick else fe
            if f0 is None or f1 is None:  # computed only where needed (a while_loop of zero or one iteration)
                def more_ends(i: Tensor, a: Tensor, b: Tensor) -> Tensor:
                    return i < need.long()

                def ends(i: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
                    a = force(params, t, x, w) if f0_miss else a
                    b = force(params, t_end, x1, w1) if f1_miss else b
                    return i + 1, a, b

                _, f0, f1 = while_loop(more_ends, ends, (zero.clone(), torch.zeros_like(x) if f0 is None else f0,
                                                         torch.zeros_like(x) if f1 is None else f1))
            nf = nf + by_pattern(pattern, step_nf) + need.long() * by_pattern(pattern, end_nf)
            f_a, f_b = join(v0, f0, bsz), join(v1, f1, bsz)
            coeffs = hermite_coefficients(u, u_new, f_a, f_b, dt_step)
            theta = (saveat[:, None] - t[None]) / dt_step[None]
            vals = torch.where(at_end[..., None], u_next[None], evaluate(coeffs, theta))
            out = torch.where(passed[..., None], vals, out)
            sidx = sidx + passed.long().sum(0)

            active = active ^ (accepted & last)
            if limit is not None:  # OscillationCheck.check, applied where due
                prods = check._products(u, u_new, f_a, f_b, None)
                z = check._rate(prods, dt_step)
                dd = prods[0]
                bad = (z < limit) & (dd > prev_dd)
                streak = torch.where(due, torch.where(bad, streak + 1, 0), streak)
                prev_dd = torch.where(due, dd, prev_dd)
                flagged = due & accepted & (streak >= persist)
                fail_kind = torch.where(flagged, growth_kind, fail_kind)
                fail_z = torch.where(flagged, z, fail_z)
                status = torch.where(flagged, UNSTABLE, status)
                fail_t = torch.where(flagged, t_new, fail_t)
                fail_dt = torch.where(flagged, dt_step, fail_dt)
                active = active & ~flagged
                streaking = torch.where(due, (streak > 0).any(), streaking)
            failed = active & ~accepted
            status = torch.where(failed, UNSTABLE, status)
            fail_t = torch.where(failed, t_new, fail_t)
            fail_dt = torch.where(failed, dt_step, fail_dt)
            active = active & ~failed
            n_acc = n_acc + accepted.long()
            n_att = n_att + was_active.long()
            everyone, someone = accepted.all(), accepted.any()
            pattern = torch.where(everyone, torch.where(need, FRESH, STEADY), torch.where(someone, NONE, pattern))
            v, f = v1, f1
            return (k, pattern, streaking, active, u_next, v, f, t_new, out, sidx, status, fail_t, fail_dt,
                    fail_kind, fail_z, prev_dd, streak, n_acc, n_att, nf)

        dtype = u.dtype
        start = (zero.clone(), zero + FRESH, torch.zeros((), dtype=torch.bool, device=dev),
                 torch.ones(bsz, dtype=torch.bool, device=dev), u, v, f, t, out, sidx, longs.clone(),
                 torch.zeros_like(t), torch.zeros_like(t), longs.clone(), torch.zeros_like(t),
                 torch.full((bsz,), math.inf, dtype=dtype, device=dev), longs.clone(), longs.clone(), longs.clone(),
                 zero.clone())
        return tuple(while_loop(more, body, start))

    return loop


def integrate_whole(stepper: SplittingStepper, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult | None:
    """The solve as one loop program (``handles`` must be true); ``None`` after a failed compile (one warning,
    ``stats`` as they were), for the eager loop around the per-step program."""
    assert opts.saveat is not None and opts.dt is not None
    bsz, dtype, device = u0.shape[0], u0.dtype, u0.device
    scalar = bsz == 1
    direction = 1.0 if opts.t1 > opts.t0 else -1.0
    key = _key(stepper, opts, u0)
    nf_before = stats.nf
    t = torch.full((bsz,), opts.t0, dtype=dtype, device=device)
    stepper.init(t, u0)
    assert stepper._v is not None and stepper._f is not None
    check = stepper.fixed_step_check(bsz, opts.atol, dtype, device)
    assert isinstance(check, OscillationCheck)

    def make(tag: str) -> _Program:
        fn, _, name = field_function(stepper.prob)
        note_fresh_f(fn, _signature(stepper, opts, u0), name)
        prog = _Program(tag)
        prog.add("loop", _loop_fn(stepper, check, scalar, direction), per_solve=True)
        return prog

    prog = cached_program(key, make)
    save_t = save_time_list(opts) if scalar else opts.saveat.tolist()
    first = next((i for i, s in enumerate(save_t) if s != opts.t0), len(save_t)) if scalar else None
    saver = _Saver(opts, u0, direction, first)
    s, s_pad = len(save_t), _padded_len(len(save_t))
    saveat = torch.tensor(save_t + [math.inf] * (s_pad - s), dtype=dtype, device=device)
    keyed = torch.tensor([direction * x for x in save_t] + [math.inf] * (s_pad - s), dtype=dtype, device=device)
    out = torch.full((s_pad, bsz, u0.shape[1]), math.nan, dtype=dtype, device=device)
    out[:s] = saver.out
    n_fixed = fixed_step_count(opts)
    dt = torch.full((bsz,), direction * abs(opts.dt), dtype=dtype, device=device)

    # separate tensors (the velocity is a view of u0; while_loop refuses carries that alias each other)
    args = (stepper.prob.p, u0.clone(), stepper._v.clone(), stepper._f.clone(), t, dt, torch.full_like(t, opts.t1),
            torch.tensor(n_fixed, device=device), torch.tensor(opts.maxiters - stats.nloop, device=device), saveat,
            keyed, out, saver.idx.clone())
    with torch.no_grad():  # a failed compile is remembered on the program: handles() is False from now on
        res = prog.attempt("loop", stats, *args, what=f"the whole {stepper.name} loop as one program",
                           instead="running the per-step program")
    if res is None:
        stats.nf = nf_before
        return None
    (k, _, _, active, u, v, f, t, out, _, status, fail_t, fail_dt, fail_kind, fail_z, _, _, n_acc, n_att,
     nf) = res
    steps = int(k)
    stats.nloop += steps
    stats.nf += int(nf)
    stats.naccept += int(n_acc.sum())
    stats.nreject += int(n_att.sum()) - int(n_acc.sum())
    status = torch.where(active, MAXITERS, status)
    fail_t, fail_dt = torch.where(active, t, fail_t), torch.where(active, dt, fail_dt)
    status = torch.where((status == RUNNING) & ~active, SUCCESS, status)
    codes = [_CODES[int(c)] for c in status.tolist()]
    infos = [None if c is _CODES[SUCCESS] else (float(a), float(b))
             for c, a, b in zip(codes, fail_t.tolist(), fail_dt.tolist(), strict=True)]
    reasons = [describe(kd, z, stepper.name, stepper.stability_boundary)
               for kd, z in zip(fail_kind.tolist(), fail_z.tolist(), strict=True)]
    stepper._v, stepper._f = v, f
    return LoopResult(t=opts.saveat, u=out[:s], status=codes, fail_info=infos, reasons=reasons, dense=None,
                      dt_next=abs(opts.dt) if scalar else dt.abs())


def warm(stepper: SplittingStepper, u0: Tensor, opts: LoopOptions) -> bool:
    """Compile the loop program ahead of a solve (for :func:`pysciml.warmup`): a throw-away solve of two steps (the
    step count is an input, so later solves of any span reuse the program); ``False`` when it failed to compile."""
    return integrate_whole(stepper, u0, replace(opts, maxiters=2), Stats()) is not None
