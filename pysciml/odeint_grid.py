"""Fixed-grid solves for :func:`pysciml.odeint`, with torchdiffeq's ``FixedGridODESolver`` semantics.

A fixed-step method steps on a grid: ``t`` itself by default, a uniform grid of ``step_size`` from ``t[0]`` (its
last point moved onto ``t[-1]``), or ``grid_constructor(func, y0, t)``. Output times between grid points are
interpolated linearly (``interp="linear"``) or by the cubic Hermite polynomial through both ends
(``interp="cubic"``, one extra ``f`` evaluation per output time). With ``perturb=True`` the stage at a step's
start is evaluated at the next representable time after it and a stage at its end at the one before it (so a
``func`` with jumps at grid points sees the right side of each). Each step is one step of pysciml's stepper
for the method; gradients flow through the steps (including to ``t``, through the grid). The stepper's fixed-step
check (:mod:`pysciml.engine.fixed_step_check`, what ``solve`` turns into ``ReturnCode.Unstable``) runs on the
steps too; here it only warns, since torchdiffeq returns such results silently and ``odeint`` keeps its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._lru import LRU
from ._validate import SolveOptions, check_solve
from .algorithms import Algorithm
from .engine.compiled import compile_stepper
from .engine.compiled_grid import grid_solve
from .engine.fixed_step_check import describe
from .engine.interpolation import hermite_value
from .errors import InputError, SolverError, warn_caller
from .native import make_stepper
from .odeint_options import GridSettings
from .problem import ODEProblem
from .solution import ReturnCode, Stats

__all__ = ["integrate_grid", "make_grid", "grid_until_event"]

Tensor = torch.Tensor


def make_grid(settings: GridSettings, func: Any, y0: Any, t: Tensor) -> Tensor:
    """The time grid of a fixed-grid solve (torchdiffeq's rules); checked to start at ``t[0]``, end at ``t[-1]``
    and run in ``t``'s direction."""
    if settings.grid_constructor is not None:
        grid = settings.grid_constructor(func, y0, t)
        if not isinstance(grid, Tensor) or grid.ndim != 1 or len(grid) < 1:
            raise InputError("grid_constructor(func, y0, t) must return a 1-D tensor of times")
    elif settings.step_size is not None:
        direction = 1.0 if len(t) < 2 or float(t[-1].detach()) >= float(t[0].detach()) else -1.0
        start, end = direction * t[0], direction * t[-1]  # torchdiffeq steps in negated time when t decreases
        niters = torch.ceil((end - start) / settings.step_size + 1).item()
        grid = torch.arange(0, niters, dtype=t.dtype, device=t.device) * settings.step_size + start
        grid = torch.cat([grid[:-1], end.reshape(1)]) * direction
    else:
        grid = t
    if grid[0] != t[0] or grid[-1] != t[-1]:
        raise InputError(f"the time grid must start at t[0] and end at t[-1]; got {float(grid[0].detach()):g} .. "
                         f"{float(grid[-1].detach()):g} for t from {float(t[0].detach()):g} to "
                         f"{float(t[-1].detach()):g}")
    steps = grid[1:] - grid[:-1]
    if len(t) > 1 and not bool(((steps * torch.sign(t[-1] - t[0])) >= 0).all()):
        raise InputError("the time grid must be monotone in the direction of t")
    return grid


class _GridFunc:
    """``func`` on the current grid step ``[t0, t1]``: with ``perturb``, evaluated just after ``t0`` for a stage at
    the start and just before ``t1`` for a stage at the end (torchdiffeq's ``Perturb.NEXT`` / ``PREV``)."""

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], perturb: bool) -> None:
        self.func, self.perturb = func, perturb
        self.t0: Tensor | None = None
        self.t1: Tensor | None = None

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        if self.perturb and self.t0 is not None and self.t1 is not None:
            t0, t1 = self.t0.detach().to(t.dtype), self.t1.detach().to(t.dtype)
            span = float(t1 - t0)
            theta = 0.0 if span == 0.0 else float(t.detach() - t0) / span
            if theta <= 1e-9:
                target = torch.nextafter(t0, t1 if span != 0.0 else t0 + 1).detach()
                t = t + (target - t).detach()  # the value moves, the derivative stays d/dt (as torchdiffeq's)
            elif theta >= 1.0 - 1e-9:
                t = t + (torch.nextafter(t1, t0).detach() - t).detach()
        return self.func(t, y)


_PLAIN: LRU[_GridFunc] = LRU(16)  # each holds its func, so an id is not reused while cached


def _plain(func: Callable[[Tensor, Tensor], Tensor]) -> _GridFunc:
    """``func`` as ``f(t, y)`` without ``perturb``: the same object for the same ``func`` (a compiled step is cached by
    its function's identity), and two arguments whatever ``func``'s signature (no ``p`` is passed to it)."""
    return _PLAIN.get(id(func), lambda: _GridFunc(func, False), lambda wrapped: wrapped.func is func)


def _linear(t0: Tensor, t1: Tensor, y0: Tensor, y1: Tensor, t: Tensor) -> Tensor:
    if bool(t == t0):
        return y0
    if bool(t == t1):
        return y1
    return y0 + ((t - t0) / (t1 - t0)).to(y0.dtype) * (y1 - y0)


class _GridRun:
    """One fixed-grid solve's stepper, stepped grid step by grid step (:meth:`step`), with the fixed-step check
    warning once."""

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], y0: Tensor, tspan: tuple[float, float],
                 alg: Algorithm, settings: GridSettings, rtol: float, atol: Any, t_first: Tensor,
                 t_second: Tensor, compile: bool = False) -> None:
        self.real = y0.real.dtype if y0.is_complex() else y0.dtype
        self.wrapped = _GridFunc(func, True) if settings.perturb else _plain(func)
        self.perturb = settings.perturb
        prob = ODEProblem(self.wrapped, y0, tspan)
        span = abs(tspan[1] - tspan[0])
        checked = check_solve(prob, alg, SolveOptions(rtol=rtol, atol=atol, adaptive=False, dt=span or 1.0))
        self.stats = stats = Stats()
        self.stepper = make_stepper(checked.alg, prob, stats, checked.atol, checked.rtol, False)
        if compile:
            self.stepper = compile_stepper(self.stepper, stats, 1, checked.atol, checked.rtol, False,
                                           y0.reshape(1, -1))
        self.check = self.stepper.fixed_step_check(1, checked.atol, self.real, y0.device)
        self.wrapped.t0, self.wrapped.t1 = t_first, t_second
        self.stepper.init(t_first.reshape(1), y0.reshape(1, -1))

    def step(self, i: int, t0: Tensor, t1: Tensor, t_after: Tensor, u: Tensor, last: bool) -> tuple[Tensor, Tensor]:
        """Step ``u`` (``(1, n)``) from grid time ``t0`` to ``t1`` (the ``i``-th step; ``t_after`` the grid time after
        ``t1``, for ``perturb``): the new state ``(1, n)`` and ``f`` at the step's start ``(1, n)``."""
        self.wrapped.t0, self.wrapped.t1 = t0, t1
        res = self.stepper.step(t0.reshape(1), u, (t1 - t0).reshape(1))
        if res.ok is not None and not bool(res.ok.all()):
            a, b = float(t0.detach()), float(t1.detach())
            raise SolverError(f"{self.stepper.name}: the implicit stage solve failed on the grid step from t={a:g} to "
                              f"t={b:g}; use a finer grid (options step_size or grid_constructor)",
                              ReturnCode.ConvergenceFailure)
        u1 = res.u_new
        self.wrapped.t0, self.wrapped.t1 = t1, t_after
        self.stepper.accept(True, t1.reshape(1), u1, res)
        if self.perturb and res.f_end is not None:  # an FSAL end stage was taken just before t1
            self.stepper.f0 = self.stepper.f_total(t1.reshape(1), u1)
        if self.check is not None and (self.check.due(i + 1) or last):
            f_start, f_end = self.stepper.check_fields(u, res)
            self._check(u, u1, f_start, f_end, t0, t1, res.err)
        return u1, res.f_start

    def _check(self, u: Tensor, u1: Tensor, f_start: Tensor, f_end: Tensor, t0: Tensor, t1: Tensor,
               err: Tensor | None) -> None:
        """The fixed-step check of the step from ``t0`` to ``t1`` (rows ``(1, n)``): a warning, then no more."""
        assert self.check is not None
        kind, z = self.check.check_one(u.detach(), u1.detach(), f_start.detach(), f_end.detach(),
                                       float((t1 - t0).detach()), None if err is None else err.detach())
        if kind:  # torchdiffeq returns such numbers silently; pysciml returns them too (same numbers), warned
            why = describe(kind, z, self.stepper.name, self.stepper.stability_boundary)
            warn_caller(f"odeint: the fixed-grid solve is unreliable from t={float(t1.detach()):.6g}: {why} "
                        "(odeint: a finer grid, options step_size, or an adaptive method)", RuntimeWarning)
            self.check = None

    def check_taken(self, gt: Tensor, U: Tensor, Fs: Tensor, E: Tensor | None) -> None:
        """The fixed-step check on the steps of a whole compiled grid solve (states and ``f`` rows ``U``, ``Fs``,
        errors ``E``), at the steps where :meth:`step` runs it."""
        for i in range(len(U) - 1):
            if self.check is None:
                return
            if self.check.due(i + 1) or i + 2 == len(gt):
                self._check(U[i:i + 1], U[i + 1:i + 2], Fs[i:i + 1], Fs[i + 1:i + 2], gt[i], gt[i + 1],
                            None if E is None else E[i:i + 1])


def _interpolant(settings: GridSettings, func: Callable[[Tensor, Tensor], Tensor], shape: torch.Size, t0: Tensor,
                 t1: Tensor, u0: Tensor, u1: Tensor, f0: Tensor) -> Callable[[Tensor], Tensor]:
    """``y(t)`` (a row ``(n,)``) inside the grid step ``[t0, t1]`` from rows ``u0``, ``u1``: linear, or cubic Hermite
    with ``f0`` (``(1, n)``, the step's ``f_start``; only read by the cubic) and ``f`` at ``t1`` evaluated on first use,
    once per grad mode."""
    if settings.interp != "cubic":
        return lambda tj: _linear(t0, t1, u0, u1, tj)
    f1: dict[bool, Tensor] = {}  # by grad mode: one made under no_grad (an event search) has no graph

    def cubic(tj: Tensor) -> Tensor:
        mode = torch.is_grad_enabled()
        if mode not in f1:
            f1[mode] = func(t1, u1.reshape(shape)).reshape(-1)
        start = f0[0] if f0.numel() else func(t0, u0.reshape(shape)).reshape(-1)  # a stepper without f_start
        return hermite_value(t0, u0, start, t1, u1, f1[mode], tj)
    return cubic


def integrate_grid(func: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t: Tensor, alg: Algorithm,
                   settings: GridSettings, *, rtol: float, atol: Any, grid: Tensor,
                   callback: Callable[[Tensor, Tensor, Tensor], Any] | None = None, compile: bool = False) -> Tensor:
    """``y`` at the times ``t`` (``(len(t), *y0.shape)``) by fixed steps of ``alg`` on ``grid``.

    Args:
        func: ``func(t, y)`` with ``y`` shaped like ``y0`` (a tuple state already flattened).
        callback: called as ``callback(t0, y0, dt)`` before each step (``t0`` a grid time, ``y0`` the engine row
            ``(n,)``, ``dt`` the step's size, positive in both directions as in torchdiffeq).
        compile: each step as a compiled program (:func:`~pysciml.engine.compiled.compile_stepper`: the solve's
            values and gradients; not with ``perturb``, whose stage times are moved on the host).
    """
    direction = 1.0 if float(t[-1].detach()) >= float(t[0].detach()) else -1.0
    real = y0.real.dtype if y0.is_complex() else y0.dtype
    gt = grid.to(real)
    run = _GridRun(func, y0, (float(t[0].detach()), float(t[-1].detach())), alg, settings, rtol, atol, gt[0],
                   gt[1] if len(gt) > 1 else gt[0], compile)
    u = y0.reshape(1, -1)
    if compile and callback is None and not settings.perturb:  # the whole solve as one program, where it can be
        whole = grid_solve(run.stepper, u, gt, t, settings.interp == "cubic", direction, run.stats)
        if whole is not None:
            vals, U, Fs, E = whole
            run.check_taken(gt, U, Fs, E)
            return torch.cat((u, vals)).reshape(len(t), *y0.shape)
    out = [u[0]]
    j = 1
    # the times as Python floats, read once: the sign of a difference of two floats, and their equality, are the
    # tensors' (IEEE subtraction rounds to zero only when they are equal), without a host read per comparison
    tq = t.to(real)
    grid_f, t_f = gt.detach().tolist(), tq.detach().tolist()
    n_grid, n_t = len(grid_f), len(t_f)
    linear = settings.interp != "cubic"
    for i in range(n_grid - 1):
        if j >= n_t:
            break
        t0, t1 = gt[i], gt[i + 1]
        if callback is not None:
            callback(grid[i], u[0], direction * (grid[i + 1] - grid[i]))
        u1, f0 = run.step(i, t0, t1, gt[i + 2] if i + 2 < n_grid else t1, u, i + 2 == n_grid)
        interp = None
        while j < n_t and direction * (grid_f[i + 1] - t_f[j]) >= 0:
            if linear and t_f[j] in (grid_f[i], grid_f[i + 1]):  # _linear's ends, exactly
                out.append(u[0] if t_f[j] == grid_f[i] else u1[0])
            else:
                interp = interp or _interpolant(settings, func, y0.shape, t0, t1, u[0], u1[0], f0)
                out.append(interp(tq[j]))
            j += 1
        u = u1
    if j < n_t:
        raise InputError("the time grid ended before the last output time")
    return torch.stack(out).reshape(len(t), *y0.shape)


#: torchdiffeq's bound on the steps of a fixed-grid search for an event
MAX_EVENT_STEPS = 20000


def grid_until_event(func: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t0: Tensor, direction: float,
                     alg: Algorithm, settings: GridSettings, event_fn: Callable[[Tensor, Tensor], Tensor], *,
                     rtol: float, atol: float) -> tuple[Tensor, Tensor]:
    """torchdiffeq's fixed-grid event mode: steps of ``settings.step_size`` from ``t0`` (in ``direction``) until
    the sign of ``event_fn(t, y)`` (a scalar) differs from its sign at ``t0``, then bisection to ``atol`` on the
    step's interpolant (``settings.interp``). Returns ``event_t`` (0-d, no gradient) and the states
    ``(2, *y0.shape)`` at ``t0`` and ``event_t`` (the second through the steps, with their gradients)."""
    if settings.step_size is None:
        raise InputError("event_fn with a fixed-grid method needs options={'step_size': dt} (as in torchdiffeq)")
    real = y0.real.dtype if y0.is_complex() else y0.dtype
    t0 = t0.detach().to(real)
    dt = direction * settings.step_size
    shape = y0.shape

    def g(tt: Tensor, row: Tensor) -> Tensor:
        value = event_fn(tt, row.reshape(shape))
        if value.numel() != 1:
            raise InputError(f"event_fn must return a scalar with a fixed-grid method, got shape {tuple(value.shape)}")
        return torch.sign(value.detach().reshape(()))

    run = _GridRun(func, y0, (float(t0), float(t0) + dt), alg, settings, rtol, atol, t0, t0 + dt)
    u = y0.reshape(1, -1)
    with torch.no_grad():
        sign0 = g(t0, u[0])
    ta = t0
    for i in range(MAX_EVENT_STEPS):
        tb = ta + dt
        u1, f0 = run.step(i, ta, tb, tb + dt, u, False)
        with torch.no_grad():
            crossed = bool(g(tb, u1[0]) != sign0)
        if crossed:
            interp = _interpolant(settings, func, shape, ta, tb, u[0], u1[0], f0)
            with torch.no_grad():
                lo, hi = ta, tb
                for _ in range(max(0, math.ceil(math.log(abs(dt) / atol, 2)))):
                    mid = (lo + hi) / 2
                    same = g(mid, interp(mid)) == sign0
                    lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
                event_t = (lo + hi) / 2
            return event_t, torch.stack((y0.reshape(-1), interp(event_t))).reshape(2, *shape)
        ta, u = tb, u1
    raise SolverError(f"odeint: no event within {MAX_EVENT_STEPS} fixed steps of {settings.step_size:g} from "
                      f"t={float(t0):g}", ReturnCode.MaxIters)
