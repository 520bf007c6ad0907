"""``NeuralODE``: an ``nn.Module`` whose forward pass solves ``dy/dt = f_theta(t, y)`` with pysciml.

Also holds what both neural-ODE modules share: checking the output times, solving at them with the chosen
sensitivity algorithm (checkpointed discrete adjoint included) and counting right-hand-side calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..algorithms import Algorithm, Tsit5
from ..errors import InputError, SolverError
from ..problem import OWNER_ATTR, ODEProblem
from ..sensealg import DiscreteAdjoint, SensitivityAlgorithm
from ..solution import ODESolution, Stats
from ..solve import solve

__all__ = ["NeuralODE", "CallCounter", "check_times", "make_solve_kwargs", "solve_at"]

Tensor = torch.Tensor


class CallCounter:
    """``fn(t, u)`` that counts its calls (``.count``), for the NFE a model reports."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], wraps: Any = None) -> None:
        self.fn = fn
        self.count = 0
        setattr(self, OWNER_ATTR, fn if wraps is None else wraps)  # what computes the values (the module behind fn)

    def __call__(self, t: Tensor, u: Tensor) -> Tensor:
        self.count += 1
        return self.fn(t, u)


def check_times(t: Any, y0: Tensor) -> Tensor:
    """``t`` as a 1-D strictly monotone tensor of at least two times on ``y0``'s dtype and device."""
    if not isinstance(t, Tensor):
        raise InputError(f"t must be a 1-D torch.Tensor of output times, got {type(t).__name__}")
    if t.ndim != 1 or t.numel() < 2:
        raise InputError(f"t must be a 1-D tensor of at least two times (t[0] is y0's time), got shape "
                         f"{tuple(t.shape)}")
    t = t.detach().to(dtype=y0.dtype, device=y0.device)
    d = t[1:] - t[:-1]
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise InputError("t must be strictly increasing (or strictly decreasing); sort it and drop duplicates")
    return t


def make_solve_kwargs(dt: float | None, adaptive: bool | None, extra: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :func:`pysciml.solve`: ``dt`` given with ``adaptive=None`` means fixed steps."""
    for bad in ("saveat", "sensealg", "dense"):
        if bad in extra:
            raise InputError(f"{bad}= is set by the model (saveat from forward's t, sensealg from the model's "
                             "sensealg=); remove it from the keyword arguments")
    if adaptive is None and dt is not None:
        adaptive = False
    kw = dict(extra)
    kw.update(dt=dt, adaptive=adaptive)
    return kw


def _add_stats(total: Stats, part: Stats) -> None:
    for f in fields(Stats):
        setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))


def solve_at(prob: ODEProblem, alg: Algorithm, t: Tensor, sensealg: SensitivityAlgorithm | None,
             kw: dict[str, Any]) -> tuple[Tensor, ODESolution]:
    """Solve ``prob`` saving at ``t`` (``t[0]`` is the initial time); returns ``(ys, solution)``.

    ``ys`` has shape ``(len(t), *prob.u0.shape)`` and is differentiable according to ``sensealg``:
    ``None``/``DiscreteAdjoint()`` backpropagate through the steps (``checkpoints=K``: ``K`` segments, each
    recomputed in the backward pass), the continuous adjoints solve the adjoint ODE. With checkpoints the
    returned solution holds the states at ``t`` and the work summed over the segments. Raises
    :class:`SolverError` when the solve fails (a training loop must not silently continue on garbage).
    """
    k = sensealg.checkpoints if isinstance(sensealg, DiscreteAdjoint) else None
    if not k or k <= 1 or len(t) <= 2:
        sens = None if isinstance(sensealg, DiscreteAdjoint) else sensealg
        sol = solve(prob, alg, saveat=t, sensealg=sens, **kw)
        _raise_on_failure(sol)
        return sol.u, sol
    bounds = torch.linspace(0, len(t) - 1, min(k, len(t) - 1) + 1).round().long().unique().tolist()
    pieces, sols = [prob.u0[None]], []
    y = prob.u0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        seg_t = t[lo: hi + 1]

        def segment(y_start: Tensor, seg_t: Tensor = seg_t) -> Tensor:
            sol = solve(prob.remake(u0=y_start, tspan=(float(seg_t[0]), float(seg_t[-1]))), alg, saveat=seg_t, **kw)
            _raise_on_failure(sol)
            sols.append(sol)  # recomputation in backward appends again; only the first len(bounds)-1 are read
            return sol.u

        ys = checkpoint(segment, y, use_reentrant=False)
        pieces.append(ys[1:])
        y = ys[-1]
    ys = torch.cat(pieces)
    stats = Stats()
    for s in sols[: len(bounds) - 1]:
        _add_stats(stats, s.stats)
    first = sols[0]
    summary = ODESolution(t, ys.detach(), tuple(sols[len(bounds) - 2].retcodes), first.message, stats, alg,
                          prob, None)
    return ys, summary


def _raise_on_failure(sol: ODESolution) -> None:
    if not sol.success:
        raise SolverError("the neural ODE solve failed: " + sol.message, sol.retcode)


class NeuralODE(nn.Module):
    """``dy/dt = vector_field(t, y)`` solved by a pysciml algorithm, differentiable in ``y0`` and the field's
    parameters (a drop-in for ``torchdiffeq.odeint`` inside a model).

    Args:
        vector_field: ``nn.Module`` called as ``vector_field(t, y) -> dy`` (same shape, dtype and device as
            ``y``); ``t`` is a 0-d tensor (a ``(B,)`` tensor of per-trajectory times with ``batched=True``).
        alg: any pysciml algorithm (``Tsit5()`` default; ``Rodas5P()``, ``KenCarp4()`` for stiff fields).
        rtol, atol: tolerances (adaptive steps; they also set the Newton tolerance of implicit methods).
        dt, adaptive: ``dt`` with ``adaptive=None`` means fixed steps of size ``dt``; ``adaptive=True`` makes
            ``dt`` the initial step.
        sensealg: ``None``/``DiscreteAdjoint(checkpoints=K)`` (backpropagation through the steps),
            ``InterpolatingAdjoint()``, ``QuadratureAdjoint()``, ``BacksolveAdjoint()`` (continuous adjoints;
            unbatched problems only).
        batched: ``y0``'s leading dimension indexes independent trajectories, each with its own adaptive
            steps and return code (``vector_field`` must not mix them). With ``False`` (torchdiffeq's
            semantics) the whole ``y0`` is one state with one step size.
        **solve_kwargs: passed to :func:`pysciml.solve` (``maxiters``, ``dtmax``, ``controller`` ...).

    Attributes:
        last_solution: the :class:`ODESolution` of the last forward (``stats`` has the solver's work).
        nfe: calls of ``vector_field`` made by the last forward.
    """

    def __init__(self, vector_field: nn.Module, alg: Algorithm | None = None, *, rtol: float = 1e-6,
                 atol: float = 1e-8, dt: float | None = None, adaptive: bool | None = None,
                 sensealg: SensitivityAlgorithm | None = None, batched: bool = False, **solve_kwargs: Any) -> None:
        super().__init__()
        if not callable(vector_field):
            raise InputError(f"vector_field must be an nn.Module called as vector_field(t, y), got "
                             f"{type(vector_field).__name__}")
        if alg is None:
            alg = Tsit5()
        if not isinstance(alg, Algorithm):
            raise InputError(f"alg must be a pysciml algorithm object such as ps.Tsit5(), got {alg!r}")
        if sensealg is not None and not isinstance(sensealg, SensitivityAlgorithm):
            raise InputError(f"sensealg must be None or an object from pysciml.sensealg, got {sensealg!r}")
        self.vector_field = vector_field
        self.alg = alg
        self.sensealg = sensealg
        self.batched = bool(batched)
        self.kw = make_solve_kwargs(dt, adaptive, solve_kwargs)
        self.kw.update(rtol=rtol, atol=atol)
        self._counter = CallCounter(lambda t, y: self.vector_field(t, y), wraps=vector_field)
        self.last_solution: ODESolution | None = None
        self.nfe = 0

    def forward(self, y0: Tensor, t: Tensor) -> Tensor:
        """Solution at the times ``t`` (``(T,)``, ``t[0]`` is ``y0``'s time): shape ``(T, *y0.shape)``."""
        if not isinstance(y0, Tensor):
            raise InputError(f"y0 must be a torch.Tensor, got {type(y0).__name__}")
        t = check_times(t, y0)
        self._counter.count = 0
        prob = ODEProblem(self._counter, y0, (float(t[0]), float(t[-1])), batched=self.batched)
        ys, self.last_solution = solve_at(prob, self.alg, t, self.sensealg, self.kw)
        self.nfe = self._counter.count
        return ys

    def extra_repr(self) -> str:
        return f"alg={self.alg!r}, sensealg={self.sensealg!r}, batched={self.batched}"
