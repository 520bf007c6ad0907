"""``NeuralODE``: an ``nn.Module`` whose forward pass solves ``dy/dt = f_theta(t, y)`` with pysciml.

Also holds what both neural-ODE modules share: checking the output times, solving at them with the chosen
sensitivity algorithm (through :func:`pysciml.solve`, checkpointed discrete adjoint included) and counting
right-hand-side calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._validate import check_times
from ..algorithms import Algorithm, Tsit5
from ..errors import InputError
from ..problem import OWNER_ATTR, ODEProblem
from ..sensealg import SensitivityAlgorithm
from ..solution import ODESolution, raise_if_failed
from ..solve import solve

__all__ = ["NeuralODE", "CallCounter", "make_solve_kwargs", "output_times", "solve_at"]

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


def make_solve_kwargs(dt: float | None, adaptive: bool | None, rtol: float, atol: float,
                      extra: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :func:`pysciml.solve`: ``dt`` given with ``adaptive=None`` means fixed steps."""
    for bad in ("saveat", "sensealg", "dense"):
        if bad in extra:
            raise InputError(f"{bad}= is set by the model (saveat from forward's t, sensealg from the model's "
                             "sensealg=); remove it from the keyword arguments")
    if adaptive is None and dt is not None:
        adaptive = False
    kw = dict(extra)
    kw.update(dt=dt, adaptive=adaptive, rtol=rtol, atol=atol)
    return kw


def solve_at(prob: ODEProblem, alg: Algorithm, t: Tensor, sensealg: SensitivityAlgorithm | None,
             kw: dict[str, Any]) -> tuple[Tensor, ODESolution]:
    """Solve ``prob`` saving at ``t`` (``t[0]`` is the initial time) with ``sensealg`` (see :func:`pysciml.solve`,
    which runs ``DiscreteAdjoint(checkpoints=K)`` as ``K`` checkpointed segments); returns ``(ys, solution)``,
    ``ys`` of shape ``(len(t), *prob.u0.shape)``. Raises :class:`SolverError` when the solve fails (a training
    loop must not silently continue on garbage)."""
    sol = raise_if_failed(solve(prob, alg, saveat=t, sensealg=sensealg, **kw), "the neural ODE solve")
    return sol.u, sol


def output_times(t: Any, y0: Tensor) -> Tensor:
    """The models' output times: :func:`~pysciml._validate.check_times`, detached, on ``y0``'s dtype and
    device."""
    if not isinstance(y0, Tensor):
        raise InputError(f"y0 must be a torch.Tensor, got {type(y0).__name__}")
    return check_times(t, y0).detach().to(dtype=y0.dtype, device=y0.device)


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
        compile: run the steps as compiled programs (``pysciml.solve(..., compile=True)``: explicit RK and
            Rosenbrock methods; the first forward compiles, later ones reuse the program; ``nfe`` is then the
            solver's count ``last_solution.stats.nf``).
        **solve_kwargs: passed to :func:`pysciml.solve` (``maxiters``, ``dtmax``, ``controller`` ...).

    Attributes:
        last_solution: the :class:`ODESolution` of the last forward (``stats`` has the solver's work).
        nfe: calls of ``vector_field`` made by the last forward.
    """

    def __init__(self, vector_field: nn.Module, alg: Algorithm | None = None, *, rtol: float = 1e-6,
                 atol: float = 1e-8, dt: float | None = None, adaptive: bool | None = None,
                 sensealg: SensitivityAlgorithm | None = None, batched: bool = False, compile: bool = False,
                 **solve_kwargs: Any) -> None:
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
        self.kw = make_solve_kwargs(dt, adaptive, rtol, atol, {**solve_kwargs, "compile": bool(compile)})
        self._counter = CallCounter(lambda t, y: self.vector_field(t, y), wraps=vector_field)
        self.last_solution: ODESolution | None = None
        self.nfe = 0

    def forward(self, y0: Tensor, t: Tensor) -> Tensor:
        """Solution at the times ``t`` (``(T,)``, ``t[0]`` is ``y0``'s time): shape ``(T, *y0.shape)``."""
        t = output_times(t, y0)
        self._counter.count = 0
        # a compiled solve traces vector_field itself (a counter inside the program would recompile every call)
        f = self.vector_field if self.kw["compile"] else self._counter
        prob = ODEProblem(f, y0, (float(t[0]), float(t[-1])), batched=self.batched)
        ys, self.last_solution = solve_at(prob, self.alg, t, self.sensealg, self.kw)
        self.nfe = self.last_solution.stats.nf if self.kw["compile"] else self._counter.count
        return ys

    def extra_repr(self) -> str:
        return f"alg={self.alg!r}, sensealg={self.sensealg!r}, batched={self.batched}"
