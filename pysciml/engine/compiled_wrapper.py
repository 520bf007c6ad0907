"""The base of the per-step compiled steppers: an eager stepper (``inner``) wrapped so that :meth:`step` runs a
compiled program.

:class:`ProgramStepper` holds what :class:`~.compiled.CompiledStepper` (explicit RK, Rosenbrock, ARK) and
:class:`~.compiled_firk.CompiledFIRKStepper` (RadauIIA, Gauss-Legendre) share: the wrapped stepper keeps the
per-solve state (``f0``, the Jacobian's freshness) and does ``accept``, the fixed-step checks and the interpolant;
the scaled tolerances are kept as tensors the program takes as arguments; a failed compile hands the rest of the
solve to the eager stepper with one warning. Subclasses implement ``_step`` (one program call) and may extend
:meth:`on_compile_failure`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import warn_caller
from ..solution import Stats
from .compiled_parts import CompileFailure, _Program
from .stepper import Stepper, StepResult

__all__ = ["ProgramStepper"]

Tensor = torch.Tensor


class ProgramStepper(Stepper):
    """An eager stepper ``inner`` whose steps run ``program``; ``atol`` ``(B, n)`` and ``rtol`` give the
    program's scaled tolerances ``atol_n = atol sqrt(n)`` ``(B, n)`` and ``rtol_n`` ``(1,)``, on ``atol``'s dtype
    and device."""

    def __init__(self, inner: Stepper, program: _Program, stats: Stats, atol: Tensor, rtol: float) -> None:
        super().__init__(inner.rhs)
        self.inner, self.program, self.stats = inner, program, stats
        self.order, self.adaptive, self.name = inner.order, inner.adaptive, inner.name
        self.dense_matrix, self.stability_boundary = inner.dense_matrix, inner.stability_boundary
        self.checks_fixed_steps = inner.checks_fixed_steps
        root_n = math.sqrt(atol.shape[1])
        self.atol_n = atol * root_n
        # (1,), not 0-d: Dynamo turns a 0-d tensor input into a Python float and restarts its analysis
        self.rtol_n = torch.full((1,), rtol * root_n, dtype=atol.dtype, device=atol.device)
        self.compiled = program.failed is None  # a signature that failed to compile before: eager, said then

    @property  # type: ignore[override]
    def f0(self) -> Tensor | None:
        return self.inner.f0

    @f0.setter
    def f0(self, value: Tensor | None) -> None:
        inner = self.__dict__.get("inner")  # absent while Stepper.__init__ runs
        if inner is not None:
            inner.f0 = value

    def init(self, t: Tensor, u: Tensor) -> None:
        self.inner.init(t, u)  # eager: f's first-call checks run here, before anything is traced

    def f_total(self, t: Tensor, u: Tensor) -> Tensor:
        return self.inner.f_total(t, u)

    def _step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        raise NotImplementedError

    def on_compile_failure(self) -> None:
        """Called once when the program fails to compile, before the eager stepper takes over."""
        self.compiled = False

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        if self.compiled:
            try:
                return self._step(t, u, dt)
            except CompileFailure as exc:
                self.on_compile_failure()
                warn_caller(f"compile=True: compiling the {self.name} step failed ({exc}); solving eagerly",
                            RuntimeWarning)
        return self.inner.step(t, u, dt)

    def warm(self, t: Tensor, u: Tensor, dt: Tensor) -> None:
        """Compile the step ahead of a solve (:func:`pysciml.warmup`): one step from ``(t, u)`` by ``dt``
        ``(B,)``, its result discarded (the stepper is a throw-away one)."""
        self.init(t, u)
        self.step(t, u, dt)

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        self.inner.accept(accepted, t, u, res)

    def fixed_step_check(self, bsz: int, atol: Tensor, dtype: torch.dtype, device: torch.device) -> Any:
        return self.inner.fixed_step_check(bsz, atol, dtype, device)

    def check_fields(self, u: Tensor, res: StepResult) -> tuple[Tensor, Tensor]:
        return self.inner.check_fields(u, res)

    def interpolant(self, u: Tensor, dt: Tensor, res: StepResult) -> Tensor:
        return self.inner.interpolant(u, dt, res)
