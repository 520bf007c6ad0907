"""A fixed-grid solve by an explicit Runge-Kutta method as one compiled program (``odeint(..., compile=True)`` with
torchdiffeq's grid methods: ``euler``, ``midpoint``, ``rk4``, ``heun2``, ``heun3``).

:mod:`pysciml.odeint_grid` steps a grid and writes the output times between grid points from each step's ends.
Here that whole solve is traced: every grid step (the compiled explicit step, :func:`.compiled._explicit_program`'s
arithmetic, and ``f`` at the step's end, as the eager stepper's ``accept`` evaluates it) unrolled, then the outputs,
linear (``y0`` or ``y1`` exactly at a step's ends, as torchdiffeq's) or cubic Hermite, gathered from the stacked
states. A grid has a fixed number of steps per signature (a training loop's batches share it), so the program is
cached by that number and AOTAutograd differentiates it whole: one forward and one backward program per
iteration instead of one of each per step. Up to :data:`MAX_STEPS` steps; a longer grid, ``perturb``, step
callbacks, a ``t`` requiring grad and the other families keep the per-step programs. Which output falls in which
step is decided before the program, from the grid's numbers, as the eager loop decides it; steps after the last
output time are not taken (the eager loop stops there too). The fixed-step check (:mod:`.fixed_step_check`) runs
after the program on the states and ``f`` values it returns, at the steps where the eager loop runs it.
"""

from __future__ import annotations

from typing import Any

import torch

from ..solution import Stats
from .compiled import _key
from .compiled import _program as step_program
from .compiled_parts import _Program, _user_f, cached_program
from .explicit_rk import ExplicitRKStepper
from .interpolation import hermite_value

Tensor = torch.Tensor

MAX_STEPS = 16
"""The longest grid traced as one program (each step is unrolled: compile time grows with it, about 37 s for the
spiral's 9 rk4 steps with the backward on this project's CPU; longer grids run the per-step programs)."""


def output_steps(grid: list[float], times: list[float], direction: float) -> list[int]:
    """For each output time after the first, the grid step ``[grid[i], grid[i + 1]]`` the eager loop writes it
    from: the first whose end is not before it (in the solve's direction); ``-1`` where the grid ends first."""
    steps, i = [], 0
    for tj in times[1:]:
        while i < len(grid) - 1 and direction * (grid[i + 1] - tj) < 0:
            i += 1
        steps.append(i if i < len(grid) - 1 else -1)
    return steps


def _program(stepper: ExplicitRKStepper, n_steps: int, n_out: int, cubic: bool) -> _Program:
    """The grid program of this signature, in the compiled programs' cache (``clear_cache`` forgets it too)."""
    key = ("grid", _key(stepper, 1, False), n_steps, n_out, cubic)
    return cached_program(key, lambda tag: _grid_program(stepper, n_steps, cubic, tag), "grid")


def _grid_program(stepper: ExplicitRKStepper, n_steps: int, cubic: bool, tag: str) -> _Program:
    """A new grid program (:func:`_program`'s key)."""
    step = step_program(stepper, 1, False).raw["step"]  # the per-step program's traceable step
    F = _user_f(stepper.rhs)
    fsal = stepper.tab.fsal

    def grid_solve(p: Any, grid: Tensor, u0: Tensor, f0: Tensor, at: Tensor, tq: Tensor, atol_n: Tensor,
                   rtol_n: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``grid`` ``(n_steps + 1,)``; ``u0``, ``f0`` ``(1, n)``; ``at`` ``(n_out,)`` the step of each output time
        ``tq`` ``(n_out,)``. Returns the outputs ``(n_out, n)``, the states and ``f`` at the grid points
        ``(n_steps + 1, n)`` and the steps' error estimates ``(n_steps, n)`` (``None`` without an estimator)."""
        us, fs, es = [u0], [f0], []
        u, f = u0, f0
        for i in range(n_steps):
            t0, t1 = grid[i:i + 1], grid[i + 1:i + 2]
            out = step(p, t0, u, f, t1 - t0, atol_n, rtol_n)
            u = out[0]
            f = out[2] if fsal else F(p, t1, u)
            us.append(u)
            fs.append(f)
            es.append(out[1])
        U, Fs = torch.cat(us), torch.cat(fs)
        E = None if es[0] is None else torch.cat(es)
        ta, tb = grid[at], grid[at + 1]
        ya, yb = U[at], U[at + 1]
        if cubic:  # the eager grid loop's arithmetic
            vals = hermite_value(ta[:, None], ya, Fs[at], tb[:, None], yb, Fs[at + 1], tq[:, None])
        else:  # odeint_grid._linear's: the ends exactly
            w = ((tq - ta) / (tb - ta)).to(U.dtype)[:, None]
            vals = torch.where((tq == ta)[:, None], ya, torch.where((tq == tb)[:, None], yb, ya + w * (yb - ya)))
        return vals, U, Fs, E

    prog = _Program(tag)
    prog.add("grid", grid_solve, per_solve=True)
    return prog


def grid_solve(stepper: Any, u0: Tensor, grid: Tensor, t: Tensor, cubic: bool, direction: float, stats: Stats
               ) -> tuple[Tensor, Tensor, Tensor, Tensor | None] | None:
    """The outputs at ``t[1:]`` ``(len(t) - 1, n)``, the states and ``f`` at the grid points taken (rows) and the
    steps' error estimates, from ``u0`` ``(1, n)`` and the compiled ``stepper``'s ``f0`` after ``init``; ``None``
    where this solve is not one program (see the module docstring), or its compile failed (the caller then steps
    with the per-step programs; the failure warns once per signature)."""
    inner = getattr(stepper, "inner", None)
    if not isinstance(inner, ExplicitRKStepper) or inner.tab.extra_c or t.requires_grad:
        return None
    times = grid.detach().tolist()
    at = output_steps(times, t.detach().to(grid.dtype).tolist(), direction)
    if not at or min(at) < 0 or max(at) + 1 > MAX_STEPS:
        return None
    n_steps = max(at) + 1
    prog = _program(inner, n_steps, len(at), cubic)
    idx = torch.tensor(at, device=grid.device)
    return prog.attempt("grid", stats, inner.rhs.p, grid[:n_steps + 1], u0, inner.f0, idx, t[1:].to(grid.dtype),
                        stepper.atol_n, stepper.rtol_n, what=f"the whole {inner.name} grid solve as one program",
                        instead="stepping it with per-step programs")
