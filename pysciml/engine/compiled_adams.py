"""The compiled step of the fixed-step Adams methods (``solve(..., compile=True)`` with ``AB3``..``AB5``,
``ABM32``..``ABM54`` and torchdiffeq's ``AdamsBashforth``, odeint's ``'explicit_adams'``).

A multistep step (:meth:`~.adams.AdamsStepper.multistep`: the Adams-Bashforth sum over the history of ``f``, its
error estimate and, for PECE, the Adams-Moulton correction with its two evaluations of ``f``) is traced into one
program per signature, the history values as inputs, one compiled function (and graph) per history length ``k``
(a fixed method has one; torchdiffeq's variable-order one, up to ``max_order - 2``: 9 with its default
``max_order = 12``, each compiled when the solve first reaches it). What stays eager, in the wrapped
:class:`~.adams.AdamsStepper`: the history (pushed in ``accept``), the test for a change of step and the restart it
causes (one host round trip per step, as in the eager step), the starting steps of the one-step method while the
history is short, and the fixed-step loops around the step. ``stats.nf`` gets the eager step's count (two per PECE
step; the ``f`` at the new point that ``accept`` evaluates for Adams-Bashforth is eager and counted there).

What has no compiled step: torchdiffeq's iterated corrector (``AdamsBashforthMoulton``, odeint's
``'implicit_adams'``), whose iteration count, per-row convergence and non-convergence warning are decided on the
host at every iteration; it runs eagerly after one warning.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .adams import AdamsStepper
from .compiled_parts import _Program, _user_f
from .compiled_wrapper import ProgramStepper
from .stepper import StepResult

__all__ = ["CompiledAdamsStepper", "adams_program", "adams_unsupported"]

Tensor = torch.Tensor


def adams_unsupported(stepper: AdamsStepper) -> str | None:
    """Why ``stepper`` has no compiled step (``None``: it has one)."""
    if stepper.tab.corrector == "iterate":
        return (f"{stepper.name}'s iterated corrector (torchdiffeq's implicit_adams) decides its iterations on the "
                "host and has no compiled step yet")
    return None


def adams_program(stepper: AdamsStepper, tag: str) -> _Program:
    """The program of ``stepper``'s multistep step: variant ``"k{k}"`` for ``k`` history values,
    ``(p, t, u, dt, *fs) -> (u_new, err, f_end)``."""
    F = _user_f(stepper.rhs)
    shell = copy.copy(stepper)  # the coefficients only: no history, f or counters kept alive by the cache
    shell.history, shell.f0, shell.rhs, shell.startup = [], None, None, None  # type: ignore[assignment]

    def adams_step(p: Any, t: Tensor, u: Tensor, dt: Tensor, *fs: Tensor) -> tuple[Any, ...]:
        return shell.multistep(t, u, dt, list(fs), lambda tt, uu: F(p, tt, uu))

    prog = _Program(tag)
    for k in range(stepper.tab.min_steps, stepper.tab.max_steps + 1):  # a code object each: Dynamo's recompile
        prog.add(f"k{k}", adams_step)  # limit (8) counts per code object, and the variable-order method has up to 9
    return prog


class CompiledAdamsStepper(ProgramStepper):
    """An :class:`~.adams.AdamsStepper` (``inner``) whose multistep steps run the compiled program; ``inner`` keeps
    the history and the step-change test and takes the starting steps."""

    def _step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        inner = self.inner
        assert isinstance(inner, AdamsStepper)
        fs = inner.history_for(t, dt)
        if len(fs) < inner.tab.min_steps:
            return inner.startup_step(t, u, dt)
        u_new, err, f_end = self.program.run(f"k{len(fs)}", self.stats, self.rhs.p, t, u, dt, *fs)
        self.stats.nf += 2 * (inner.tab.corrector == "pece")
        return inner.result(t, u, dt, u_new, err, f_end)

    def warm(self, t: Tensor, u: Tensor, dt: Tensor) -> None:
        """Compile the step ahead of a solve (:func:`pysciml.warmup`): throw-away steps from ``(t, u)`` by ``dt``
        until the history is full (the eager starting steps, then the program at each history length)."""
        inner = self.inner
        assert isinstance(inner, AdamsStepper)
        self.init(t, u)
        for _ in range(inner.tab.max_steps + 1):
            res = self.step(t, u, dt)
            t, u = t + dt, res.u_new.detach()
            self.accept(True, t, u, res)
