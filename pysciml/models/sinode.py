"""``SemiImplicitNeuralODE`` (SINODE): ``du/dt = L u + N_theta(t, u)`` with ``L`` implicit, ``N`` explicit.

Zhang, Liu & Maulik, "Semi-Implicit Neural Ordinary Differential Equations", AAAI 2025 (arXiv 2412.11301):
an IMEX additive Runge-Kutta method on the split problem lets the step size be set by the accuracy of the
network term instead of the stability limit of the stiff linear term, and each implicit stage is a linear
solve with ``I - gamma h L`` only.

How ``L`` reaches the engine (``n`` = its size):

* a matrix whose size is the whole state (``y0.numel()``, or one trajectory's with ``batched=True``): the
  matrix implicit part of a :class:`~pysciml.SplitODEProblem` (dense LU of ``I/(gamma h) - L``, factored
  once and reused while the step size stays the same: one factorization per solve with fixed steps);
* a matrix acting on the last dimension of a larger state (``y0`` of shape ``(..., n)``, e.g. a batch of
  discretised fields): with fixed steps and the discrete adjoint each row becomes one trajectory of a batched
  solve, all rows advancing in lock step (``N`` still sees the whole state, so it may couple rows); otherwise
  ``L`` is applied row-wise matrix-free and solved by GMRES (adaptive steps would give rows different steps);
* an ``nn.Module`` or a plain callable ``u -> L u``: matrix-free, GMRES on Jacobian-vector products.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..algorithms import Algorithm, IMEXAlgorithm, KenCarp4
from ..errors import InputError
from ..linsolve_options import GMRES, DenseLU, LinearSolver
from ..problem import OWNER_ATTR, SplitODEProblem
from ..sensealg import DiscreteAdjoint, SensitivityAlgorithm
from ..solution import ODESolution
from .neural_ode import CallCounter, make_solve_kwargs, output_times, solve_at

__all__ = ["SemiImplicitNeuralODE"]

Tensor = torch.Tensor


class SemiImplicitNeuralODE(nn.Module):
    """Semi-implicit neural ODE ``du/dt = L u + N_theta(t, u)`` solved by an IMEX additive RK method.

    Args:
        linear: ``L``: a dense or sparse ``(n, n)`` tensor (fixed; an ``nn.Parameter`` is learnable), an
            ``nn.Module`` called as ``linear(u) -> L u`` (learnable, matrix-free) or a plain callable
            ``u -> L u`` (fixed, matrix-free). ``n`` is the state size or the size of its last dimension.
        nonlinear: ``nn.Module`` called as ``nonlinear(t, u) -> du`` (same shape, dtype and device as ``u``).
        alg: an IMEX algorithm: ``KenCarp4()`` (default), ``KenCarp3()``, ``KenCarp5()``, ``IMEXSSP2()``,
            ``ARS222()`` (fixed steps).
        dt, adaptive: ``dt`` with ``adaptive=None`` means fixed steps of size ``dt`` (the paper's setting).
        rtol, atol: tolerances of adaptive steps (and of Newton for a matrix-free ``L``).
        sensealg: ``DiscreteAdjoint()`` (default; ``DiscreteAdjoint(checkpoints=K)``, the paper's choice, bounds
            memory) or a continuous adjoint (``InterpolatingAdjoint()``, ``QuadratureAdjoint()``,
            ``BacksolveAdjoint()``; unbatched only).
        linsolve: ``DenseLU()`` or ``GMRES(...)``; default: LU for a matrix, GMRES for a matrix-free ``L``.
        batched: ``y0``'s leading dimension indexes independent trajectories (own steps, own return code);
            ``nonlinear`` then gets ``t`` of shape ``(B,)``.
        compile: ``pysciml.solve(..., compile=True)``: with a matrix ``L`` solved by LU, each step (the stages'
            solves with the eager factorization of ``I/(gamma h) - L``, the network's calls, the stage sums and
            the error) is one compiled program, cached across forwards; a matrix-free ``L`` (GMRES) solves
            eagerly after a ``RuntimeWarning``. ``nfe_explicit`` and ``nfe_implicit`` are then ``None`` (a
            counter inside the program would recompile it at every call); ``last_solution.stats.nf`` counts
            both parts' calls.
        **solve_kwargs: passed to :func:`pysciml.solve` (``maxiters``, ``dtmax`` ...).

    Attributes:
        last_solution: :class:`ODESolution` of the last forward (``stats``: ``nlu`` factorizations,
            ``nsolve`` linear solves, ``naccept`` steps ...).
        nfe_explicit: calls of ``nonlinear`` in the last forward (``None`` with ``compile=True``).
        nfe_implicit: applications of ``L`` in the last forward (``None`` when a continuous adjoint with a
            matrix ``L`` keeps no forward statistics, and with ``compile=True``); linear solves are in
            ``last_solution.stats.nsolve``.
    """

    def __init__(self, linear: Tensor | nn.Module | Callable[[Tensor], Tensor], nonlinear: nn.Module,
                 alg: Algorithm | None = None, *, dt: float | None = None, adaptive: bool | None = None,
                 rtol: float = 1e-3, atol: float = 1e-6, sensealg: SensitivityAlgorithm | None = None,
                 linsolve: LinearSolver | None = None, batched: bool = False, compile: bool = False,
                 **solve_kwargs: Any) -> None:
        super().__init__()
        if alg is None:
            alg = KenCarp4()
        if not isinstance(alg, IMEXAlgorithm):
            raise InputError(f"alg must be an IMEX algorithm (KenCarp3/4/5(), IMEXSSP2(), ARS222()), got {alg!r}: "
                             "the linear part is implicit and the network explicit")
        if linsolve is not None and not isinstance(linsolve, (DenseLU, GMRES)):
            raise InputError(f"linsolve must be DenseLU() or GMRES(...), got {linsolve!r}")
        if sensealg is None:
            sensealg = DiscreteAdjoint()
        if not isinstance(sensealg, SensitivityAlgorithm):
            raise InputError(f"sensealg must be an object from pysciml.sensealg, got {sensealg!r}")
        if not callable(nonlinear):
            raise InputError(f"nonlinear must be an nn.Module called as nonlinear(t, u), got "
                             f"{type(nonlinear).__name__}")
        self.is_matrix = isinstance(linear, Tensor)
        if isinstance(linear, Tensor):
            if linear.ndim != 2 or linear.shape[0] != linear.shape[1]:
                raise InputError(f"linear given as a tensor must be a square (n, n) matrix, got shape "
                                 f"{tuple(linear.shape)}")
            if isinstance(linear, nn.Parameter):
                self.linear = linear
            else:
                self.register_buffer("linear", linear, persistent=False)
        elif callable(linear):
            self.linear = linear  # an nn.Module is registered (its parameters are trained)
        else:
            raise InputError(f"linear must be an (n, n) tensor, an nn.Module or a callable u -> L u, got "
                             f"{type(linear).__name__}")
        self.nonlinear = nonlinear
        self.alg = alg
        self.sensealg = sensealg
        self.linsolve = linsolve
        self.batched = bool(batched)
        self.kw = make_solve_kwargs(dt, adaptive, rtol, atol, {**solve_kwargs, "compile": bool(compile)})
        self.last_solution: ODESolution | None = None
        self.nfe_explicit: int | None = 0
        self.nfe_implicit: int | None = 0
        self._rows: dict[tuple[int, ...], _Rows] = {}  # compiled: the row-wise network per state shape

    # ------------------------------------------------------------------------------------------ set-up
    def _matrix(self) -> Tensor | None:
        return self.linear if self.is_matrix else None  # the registered (device-moved) tensor

    def _with_linsolve(self, default: LinearSolver) -> Algorithm:
        choice = self.linsolve if self.linsolve is not None else default
        return dataclasses.replace(self.alg, linsolve=choice)  # type: ignore[type-var]

    def _fixed_discrete(self) -> bool:
        return self.kw.get("adaptive") is False and isinstance(self.sensealg, DiscreteAdjoint)

    def _problem(self, y0: Tensor, t: Tensor, n_calls: CallCounter, l_calls: _LinearPart
                 ) -> tuple[SplitODEProblem, Algorithm, Callable[[Tensor], Tensor]]:
        """The split problem, the algorithm with its linear solver, and how to shape the result back."""
        tspan = (float(t[0]), float(t[-1]))
        L = self._matrix()
        same: Callable[[Tensor], Tensor] = lambda ys: ys  # noqa: E731
        if L is None:  # matrix-free
            return (SplitODEProblem(l_calls, n_calls, y0, tspan, batched=self.batched),
                    self._with_linsolve(GMRES()), same)
        n = L.shape[0]
        L = L.to(dtype=y0.dtype, device=y0.device) if not L.requires_grad else L
        state = y0[0].numel() if self.batched else y0.numel()
        default: LinearSolver = DenseLU() if n <= 4096 else GMRES()
        compiled = bool(self.kw.get("compile"))
        if n == state:
            explicit = self.nonlinear if compiled else n_calls  # compiled: the same function at every forward
            return SplitODEProblem(L, explicit, y0, tspan, batched=self.batched), self._with_linsolve(default), same
        if y0.shape[-1] != n or self.batched:
            raise InputError(f"linear is ({n}, {n}) but the state has shape {tuple(y0.shape)}: L must act on the "
                             f"whole state ({state} values) or on its last dimension (size {y0.shape[-1]})")
        if self._fixed_discrete():  # rows advance in lock step as trajectories of one batched solve
            shape = tuple(y0.shape)
            rows: Callable[[Tensor, Tensor], Tensor]
            if compiled:  # one function per state shape, kept: a compiled program is cached by its identity
                rows = self._rows.get(shape) or self._rows.setdefault(shape, _Rows(self.nonlinear, shape))
            else:
                rows = _Rows(n_calls, shape)
            prob = SplitODEProblem(L, rows, y0.reshape(-1, n), tspan, batched=True)
            return prob, self._with_linsolve(default), lambda ys: ys.reshape(ys.shape[0], *shape)
        l_calls.fn = lambda u: u @ L.transpose(0, 1)  # row-wise, matrix-free
        return (SplitODEProblem(l_calls, n_calls, y0, tspan, batched=False), self._with_linsolve(GMRES()), same)

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, y0: Tensor, t: Tensor) -> Tensor:
        """Solution at the times ``t`` (``(T,)``, ``t[0]`` is ``y0``'s time): shape ``(T, *y0.shape)``."""
        t = output_times(t, y0)
        n_calls = CallCounter(lambda tt, u: self.nonlinear(tt, u), wraps=self.nonlinear)
        l_calls = _LinearPart(lambda u: self.linear(u))
        prob, alg, reshape = self._problem(y0, t, n_calls, l_calls)
        ys, sol = solve_at(prob, alg, t, self.sensealg, self.kw)
        self.last_solution = sol
        if self.kw.get("compile"):
            self.nfe_explicit = self.nfe_implicit = None
        else:
            self._count_calls(prob, sol, n_calls, l_calls)
        return reshape(ys)

    def _count_calls(self, prob: SplitODEProblem, sol: ODESolution, n_calls: CallCounter,
                     l_calls: _LinearPart) -> None:
        self.nfe_explicit = n_calls.count
        if prob.linear_operator is None:
            self.nfe_implicit = l_calls.count
        elif isinstance(self.sensealg, DiscreteAdjoint):
            self.nfe_implicit = sol.stats.nf - n_calls.count
        else:
            self.nfe_implicit = None

    def extra_repr(self) -> str:
        kind = "matrix" if self.is_matrix else "matrix-free"
        return f"linear={kind}, alg={self.alg!r}, sensealg={self.sensealg!r}, batched={self.batched}"


class _Rows:
    """The network on a state of shape ``shape`` seen as rows of the last dimension (trajectories of one batched
    solve, advancing in lock step): ``fn(t[0], u.reshape(shape))`` back as rows."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], shape: tuple[int, ...]) -> None:
        self.fn, self.shape = fn, shape
        setattr(self, OWNER_ATTR, fn)

    def __call__(self, tb: Tensor, u: Tensor) -> Tensor:
        return self.fn(tb[0], u.reshape(self.shape)).reshape(-1, self.shape[-1])


class _LinearPart:
    """``f_implicit(t, u) = fn(u) = L u`` for a matrix-free ``L``, counting its calls."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn = fn
        self.count = 0

    def __call__(self, t: Tensor, u: Tensor) -> Tensor:
        self.count += 1
        return self.fn(u)
