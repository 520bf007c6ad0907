"""The whole loop of an adaptive fully implicit RK solve (RadauIIA5, RadauIIA3) as one compiled program.

:mod:`.compiled_loop` runs the loop as one ``torch.while_loop`` for the explicit RK, Rosenbrock and ARK families
through a ``_Family`` adapter; :class:`_FIRKFamily` is that adapter for :class:`~.compiled_firk.CompiledFIRKStepper`,
so an adaptive ``compile=True`` solve by RadauIIA5 or RadauIIA3 (one trajectory in float64, or a batch), saving at
fixed times without dense output, the progress bar or step hooks, runs without a host round trip until it ends
(Gauss-Legendre solves, fixed-step, keep the eager loop). Steps land on ``tstops`` (the loop's multi-stop control;
inner save times are stops for these methods, whose interpolant is two or more orders below the method:
``pysciml.native._land_on_saves``). The loop, its control
(:func:`~.compiled_control.controlled_step_fn`, with radau5's predictive controller) and the saving are
:mod:`.compiled_loop`'s; the step is :func:`~.compiled_firk.firk_program`'s traced step, called as
:meth:`~.compiled_firk.CompiledFIRKStepper._step` calls it, with everything that method and
:meth:`~.firk.FIRKStepper.accept` keep on the host carried as tensors between iterations:

* ``f(t, u)``, the Jacobian and the per-trajectory flags: recompute its row (``need``), the row is at the step's
  start (``at_start``), a previous accepted step exists (``have``, for the collocation predictor), refine the
  error estimate (``refine``); Newton's ``faccon`` and ``theta``; the last accepted step's collocation polynomial
  and step size;
* the Jacobian count and the count and step sizes of the last factorization (radau5 refactors when ``J`` or
  ``h`` changed: the held steps of :class:`~.firk_control.PredictiveController` reuse it);
* the counters ``njac, nlu, nnonliniter, nf, nsolve, nnonlinconvfail``, so ``sol.stats`` is the eager solve's.

Each loop iteration runs the step in an inner ``while_loop`` of one or two attempts: the first for every
trajectory, a second (only when some trajectory needs it, as in the eager step) for the trajectories whose Newton
failed with a Jacobian from an earlier point (radau5 retries at the same ``h`` with a fresh one), its rows merged
there. (Two calls of the step in one body, i.e. two sibling Newton ``while_loop`` calls, came out wrong with torch
2.13's C++ wrapper: carries of the one read as the other's; the Python wrapper got them right.) As in the
per-step program, the Jacobian and the factorization are computed at every attempt and kept where the eager
stepper would compute them (``torch.where``), and counted only there; a ``torch.cond`` that skips them was not
tried. ``f`` at an accepted step's end is evaluated at the merged ``(t, u)``, as :meth:`~.stepper.Stepper.accept`
does. Values are the eager solve's to round-off; the step's program applies the eager fused Newton matrix with the
eager kernels (:mod:`.compiled_firk`), but the loop's control rounds its error norm's scale otherwise (the last bit
of a step size), so a decision at its threshold can still flip: on the Oregonator at rtol 1e-8 one Jacobian-reuse
test does (7,153 Newton iterations and 1,258 Jacobians against eager's 7,154 and 1,259, every other counter equal;
``tests/test_compiled_loop_firk.py``, ``tests/firk_counts.py``).

``ENABLED = False`` keeps FIRK solves on the per-step program (for comparisons; ``compiled_loop.ENABLED = False``
does too). A loop program that fails to compile falls back to the per-step program, with one warning.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from ..solution import Stats
from . import compiled_loop
from .compiled_control import options_ok
from .compiled_firk import CompiledFIRKStepper
from .compiled_parts import tracks_grad
from .loop_records import LoopOptions, LoopResult

__all__ = ["handles", "integrate_whole", "warm"]

Tensor = torch.Tensor

ENABLED = True
"""FIRK solves through the whole-loop program (the default); ``False``: the per-step program in the eager loop."""

COUNTERS = ("njac", "nlu", "nnonliniter", "nf", "nsolve", "nnonlinconvfail")
"""The ``Stats`` fields the loop counts on the device (the carried ``counts`` row, in this order)."""


def handles(stepper: Any, opts: LoopOptions, u0: Tensor) -> bool:
    """Whether :func:`integrate_whole` runs this solve (else the eager loop around the per-step program)."""
    if not (ENABLED and compiled_loop.ENABLED) or not isinstance(stepper, CompiledFIRKStepper):
        return False
    if not stepper.compiled or not options_ok(opts) or opts.dense or opts.saveat is None or opts.events is not None:
        return False
    if u0.shape[0] == 1 and u0.dtype != torch.float64:  # the scalar loop keeps time in Python floats (float64)
        return False
    return not (u0.requires_grad or tracks_grad(stepper.rhs))  # the per-step program refuses these too


class _View:
    """``stepper`` as :mod:`.compiled_loop` and :mod:`.compiled_control` read a compiled stepper: its ``inner``
    shows the right-hand side, the dense-output matrix and ``fsal = False`` (the control evaluates ``f`` at the
    merged ``(t, u)`` after an acceptance, as the eager ``accept``); everything else is the stepper's."""

    def __init__(self, stepper: CompiledFIRKStepper) -> None:
        self.stepper = stepper
        inner = stepper.inner
        self.inner = SimpleNamespace(rhs=inner.rhs, fsal=False, dense_matrix=inner.dense_matrix, mass=inner.mass)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stepper, name)


class _FIRKFamily:
    """The FIRK step and its carried state ``X`` for :func:`~.compiled_loop._loop_program` (the ``_Family``
    interface): ``X = (f0, J, need, at_start, have, refine, faccon, theta, prev, dt_old, n_jac, n_factored,
    h_factored, counts)``; the loop's constant input is ``(atol, rtol, kappa, tableau tensors)``."""

    grad = False

    def __init__(self, view: _View) -> None:
        stepper = view.stepper
        inner = stepper.inner
        raw = stepper.program.raw["step"]
        s, n_mus, n_blocks = inner.tab.stages, len(inner.mus), len(inner.tr.blocks)
        estimate, jac_reuse = inner.err_mu is not None, inner.jac_reuse

        def firk_loop_step(p: Any, t: Tensor, u: Tensor, f0: Tensor, h: Tensor, atol_n: Tensor, rtol_n: Tensor,
                           K: tuple[Any, ...], X: tuple[Tensor, ...]) -> tuple[Any, ...]:
            atol, rtol, kappa, consts = K
            _, J, need, at_start, have, refine, faccon, theta, prev, dt_old, n_jac, n_fact, h_fact, counts = X
            zero = torch.zeros_like(n_jac)

            def more(k: Tensor, J: Tensor, need: Tensor, rows: Tensor, *rest: Tensor) -> Tensor:
                return (k < 2) & rows.any()

            def attempt(k: Tensor, J: Tensor, need: Tensor, rows: Tensor, at_start: Tensor, faccon: Tensor,
                        theta: Tensor, n_jac: Tensor, n_fact: Tensor, counts: Tensor,
                        *done: Tensor) -> tuple[Tensor, ...]:
                """CompiledFIRKStepper._call for ``rows``: a fresh Jacobian's rows where ``need``, the
                factorization counted when ``J`` or ``h`` changed, Newton; the retry rows for the next one."""
                out = raw(p, t, u, f0, h, atol_n, rtol_n, atol, rtol, kappa, consts, J, need, rows, faccon, prev,
                          dt_old, have, refine)
                info = out[8]
                fresh = need.any()
                n_jac = n_jac + fresh
                at_start = at_start | need
                refactor = (n_fact != n_jac) | (h_fact != h).any()
                conv = info[:, 0] == 1.0
                faccon = torch.where(conv, info[:, 2], faccon)
                theta = torch.where(conv, info[:, 3], theta)
                merged = [torch.where(rows.view(-1, *([1] * (a.ndim - 1))), a, b)
                          for a, b in zip((*out[:6], info), done, strict=True)]
                iters = info[0, 5].to(counts.dtype)
                counts = counts + torch.stack((fresh.long(), n_mus * refactor.long(), iters, s * iters,
                                               n_blocks * iters, zero))
                retry = rows & ~conv & ~at_start  # FIRKStepper.step: again with a fresh Jacobian, the same h
                return (k + 1, out[7].contiguous(), retry, retry.clone(), at_start, faccon, theta, n_jac,
                        n_jac.clone(), counts, *merged)

            # one while_loop (one or two attempts), not two calls: torch 2.13's C++ wrapper mixed up the carries of
            # two sibling while_loops (Newton's) in one loop body
            b, n = u.shape
            done = (torch.zeros_like(u), torch.zeros_like(u), torch.zeros_like(need), u.new_zeros(b, s, n),
                    u.new_zeros(b, 3), u.new_zeros(b, s + 1, n), u.new_zeros(b, 6))
            start = (zero.clone(), J, need, torch.ones_like(need), at_start, faccon, theta, n_jac, n_fact, counts,
                     *done)
            _, J, _, _, at_start, faccon, theta, n_jac, n_fact, counts, *merged = while_loop(more, attempt, start)
            u_new, err, good, K_, control, coeffs, info = merged
            refined = (info[:, 4] == 1.0).any() if estimate else torch.zeros_like(need[0])
            failed = ~((info[:, 0] == 1.0) & (info[:, 1] == 1.0)).all()
            counts = counts + torch.stack((zero, zero, zero, refined.long(), estimate + refined.long(),
                                           failed.long()))
            Xmid = (J, at_start, faccon, theta, n_jac, n_fact, h.clone(), counts)
            return u_new, err, good, K_, control, coeffs, h, Xmid

        self.step = firk_loop_step
        self.jac_reuse = jac_reuse
        self.shape = (s + 1, inner.rhs.n)

    def start(self, view: _View, u0: Tensor) -> tuple[Tensor, ...]:
        inner = view.stepper.inner
        b, n = u0.shape
        def flags(value: bool) -> Tensor:  # separate tensors: while_loop refuses carries that alias each other
            return torch.full((b,), value, dtype=torch.bool, device=u0.device)

        ones = torch.ones(b, dtype=u0.dtype, device=u0.device)
        zero = torch.zeros((), dtype=torch.long, device=u0.device)
        return (inner.f0, u0.new_zeros(b, n, n), flags(True), flags(False), flags(False), flags(True), ones,
                ones * 0.0, u0.new_zeros(b, *self.shape), ones.clone(), zero, zero - 1, ones * 0.0,
                torch.zeros(len(COUNTERS), dtype=torch.long, device=u0.device))

    def constants(self, view: _View) -> tuple[Any, ...]:
        stepper = view.stepper
        return stepper.inner.atol, stepper.rtol, stepper.kappa, stepper.consts

    def args(self, p: Any, t: Tensor, u: Tensor, dt: Tensor, atol_n: Tensor, rtol_n: Tensor, K: Any,
             X: tuple[Tensor, ...]) -> tuple[Any, ...]:
        return (p, t, u, X[0], dt, atol_n, rtol_n, K, X)

    def after(self, X: tuple[Tensor, ...], out: tuple[Any, ...], f0s: tuple[Any, ...], summary: Tensor,
              accepted: Tensor) -> tuple[Tensor, ...]:
        """FIRKStepper.accept on tensors: the predictor's polynomial, the flags, the next Jacobian's rows."""
        J, at_start, faccon, theta, n_jac, n_fact, h_fact, counts = out[7]
        coeffs, h = out[5], out[6]
        prev = torch.where(accepted[:, None, None], coeffs, X[8])
        dt_old = torch.where(accepted, h, X[9])
        have = X[4] | accepted
        stale = theta > self.jac_reuse if self.jac_reuse > 0.0 else torch.ones_like(accepted)
        need = torch.where(accepted, stale, ~at_start)
        at_start = at_start & ~accepted
        counts = torch.cat((counts[:3], counts[3:4] + summary[1], counts[4:]))  # accept's f(t, u)
        return (f0s[2], J, need, at_start, have, ~accepted, faccon, theta, prev, dt_old, n_jac, n_fact, h_fact,
                counts)

    def f_start(self, X: tuple[Tensor, ...]) -> Tensor:
        return X[0]

    def stages(self, out: tuple[Any, ...], dt: Tensor) -> Tensor:
        """The stage increments ``h k_i`` as ``(s, B, n)`` for the tableau's dense matrix."""
        return out[3].transpose(0, 1)

    def count(self, view: _View, stats: Stats, steps: int, with_acceptance: int, X: tuple[Tensor, ...]) -> None:
        for name, value in zip(COUNTERS, X[13].tolist(), strict=True):
            setattr(stats, name, getattr(stats, name) + value)
        view.stepper.inner.f0 = X[0]


def integrate_whole(stepper: CompiledFIRKStepper, u0: Tensor, opts: LoopOptions, stats: Stats) -> LoopResult | None:
    """The FIRK solve as one compiled loop program; ``None`` after a failed compile (one warning; ``stats`` as they
    were), for the eager loop around the per-step program."""
    return compiled_loop.run_whole(_View(stepper), u0, opts, stats, _FIRKFamily)


def warm(stepper: CompiledFIRKStepper, u0: Tensor, opts: LoopOptions) -> bool:
    """Compile the loop program ahead of a solve (:func:`pysciml.warmup`); ``False`` when it failed to compile
    (one warning), so the caller warms the per-step program instead."""
    return compiled_loop.warm_program(_View(stepper), u0, opts, _FIRKFamily)
