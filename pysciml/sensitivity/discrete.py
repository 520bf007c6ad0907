"""DiscreteAdjoint: backpropagation through the solver's own steps (the exact gradient of the discrete solution).

Without checkpoints the whole step graph is kept until backward (memory grows with the number of steps): that
is the native solve itself. With ``checkpoints=K``, :func:`solve_checkpointed` splits the save times into ``K``
segments (boundaries at save times); each segment is solved under ``torch.utils.checkpoint``, so only its start
state is kept and its steps are recomputed, identically, during backward. An adaptive segment starts with the
step size the previous one planned (``ODESolution.dt_next``), as one continuous solve would. Step-size control is
never differentiated (step sizes are constants of the discrete solution).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .._validate import CheckedSolve, SolveOptions, check_solve
from ..algorithms import Algorithm
from ..errors import InputError
from ..native import solve_native
from ..problem import ODEProblem
from ..sensealg import DiscreteAdjoint
from ..solution import ODESolution, Stats, raise_if_failed

__all__ = ["checkpoint_count", "solve_checkpointed"]

Tensor = torch.Tensor


def checkpoint_count(sensealg: DiscreteAdjoint) -> int:
    """The number of segments ``DiscreteAdjoint(checkpoints=K)`` asks for (``None``, 0 and 1: one, no
    checkpointing)."""
    k = sensealg.checkpoints
    if k is None:
        return 1
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InputError(f"DiscreteAdjoint(checkpoints={k!r}): checkpoints is the number of segments, a positive "
                         "integer (or None for no checkpointing)")
    return max(k, 1)


class _Segments:
    """The segment solves of one checkpointed solve. What a segment's first run decides (its initial ``dt``, its
    solution) is recorded, so that its recomputation during backward repeats exactly the same steps."""

    def __init__(self, prob: ODEProblem, checked: CheckedSolve, opts: SolveOptions) -> None:
        self.prob, self.checked, self.opts = prob, checked, opts
        self.dts: list[float | None] = []
        self.budgets: list[int] = []  # maxiters bounds the loop iterations of all segments together
        self.solutions: list[ODESolution] = []

    def _first_dt(self, k: int) -> float | None:
        if k == 0 or not self.checked.adaptive:
            return self.opts.dt
        carried = self.solutions[k - 1].dt_next
        return carried if isinstance(carried, float) else self.opts.dt  # batched solves plan one dt per row

    def solve(self, y0: Tensor, seg_t: Tensor, k: int) -> Tensor:
        if k == len(self.dts):
            self.dts.append(self._first_dt(k))
            self.budgets.append(max(1, self.opts.maxiters - sum(s.stats.nloop for s in self.solutions)))
        a, b = float(seg_t[0]), float(seg_t[-1])
        piece = self.prob.remake(u0=y0, tspan=(a, b))
        opts = self.opts.on_piece(a, b, self.checked.tstops)
        sol = solve_native(piece, self.checked.alg, opts, saveat=seg_t, dt=self.dts[k], maxiters=self.budgets[k],
                           dense=False, throw=False)
        if k == len(self.solutions):
            self.solutions.append(sol)
        return sol.u


def solve_checkpointed(prob: ODEProblem, alg: Algorithm | None, sensealg: DiscreteAdjoint,
                       opts: SolveOptions) -> ODESolution:
    """``solve(prob, alg, sensealg=DiscreteAdjoint(checkpoints=K), ...)``: the values at the save times,
    differentiable by autograd through every step, with the step graph of one segment alive at a time.

    The solution has no dense output; its ``stats`` are the forward work summed over the segments (the
    recomputation during backward repeats it once more); ``maxiters`` bounds them all together. A failed segment
    ends the solve there: the solution has that segment's return code and message and the save times reached
    (``throw=True`` raises instead).

    Raises:
        InputError: no ``saveat`` (the segments end at save times) or ``dense=True``, besides ``solve``'s checks.
    """
    checked = check_solve(prob, alg, opts)
    k = checkpoint_count(sensealg)
    if checked.save_times is None:
        raise InputError(f"{sensealg!r} needs saveat: the segments end at save times; pass the times the loss "
                         "uses (saveat=[...] or a spacing)")
    if opts.dense:
        raise InputError(f"dense=True cannot be honoured with {sensealg!r}: each segment is recomputed during "
                         "backward, so no dense output is kept; pass saveat with the times you need, or use "
                         "sensealg=DiscreteAdjoint() for sol(t)")
    times = checked.save_times
    starts_at_t0 = float(times[0]) == prob.tspan[0]
    points = times if starts_at_t0 else torch.cat((times.new_tensor([prob.tspan[0]]), times))
    bounds = torch.linspace(0, len(points) - 1, min(k, len(points) - 1) + 1).round().long().unique().tolist()
    run = _Segments(prob, checked, opts)
    pieces, reached, y = [prob.u0[None]], [points[:1]], prob.u0
    for k_seg, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        ys = checkpoint(run.solve, y, points[lo: hi + 1], k_seg, use_reentrant=False)
        pieces.append(ys[1:])
        reached.append(run.solutions[k_seg].t[1:])
        if not run.solutions[k_seg].success:
            break
        y = ys[-1]
    last = run.solutions[-1]
    t, u = torch.cat(reached), torch.cat(pieces)
    if not starts_at_t0:
        t, u = t[1:], u[1:]
    n_seg, stats = len(bounds) - 1, sum((s.stats for s in run.solutions), Stats())
    if last.success:
        message = (f"{checked.alg!r}: Success ({stats.naccept} accepted, {stats.nreject} rejected steps in {n_seg} "
                   "checkpointed segments)")
    else:
        message = (f"checkpointed segment {len(run.solutions)} of {n_seg} (t={last.prob.tspan[0]:.6g} to "
                   f"{last.prob.tspan[1]:.6g}): {last.message}")
    sol = ODESolution(t, u, last.retcodes, message, stats, checked.alg, prob, None)
    sol.dt_next = last.dt_next
    return raise_if_failed(sol) if opts.throw else sol
