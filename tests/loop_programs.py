"""What the compiled-loop tests share: the compiled stepper and loop options a solve would get (nothing compiled),
a counter of a module function's calls under which fallback warnings are errors, and loop programs run
uncompiled (their ``while_loop`` as a Python loop)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest
import torch

import pysciml as ps
from pysciml._validate import SolveOptions, check_solve
from pysciml.engine import compiled_parts
from pysciml.engine.compiled import compile_stepper
from pysciml.engine.loop_records import LoopOptions
from pysciml.native import _loop_options, make_stepper
from pysciml.solution import Stats

COUNTS = ("nf", "njac", "nlu", "nsolve", "naccept", "nreject", "nloop", "nnonliniter", "nnonlinconvfail")


def counts(sol: ps.ODESolution) -> dict[str, int]:
    """The work counters a compiled solve must share with the eager one."""
    return {k: getattr(sol.stats, k) for k in COUNTS}


def vdp_batched(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Van der Pol on a ``(B, 2)`` state with a ``(B, 1)`` ``mu``."""
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x), dim=-1)


def vdp_batch_problem(t1: float = 3.0) -> ps.ODEProblem:
    """Van der Pol, three trajectories with mu = 10, 30, 100: different stiffness, so they reject, refresh their
    Jacobians and hold their steps at different times."""
    u0 = torch.tensor([[2.0, 0.0], [2.0, -0.5], [1.5, 0.0]], dtype=torch.float64)
    p = torch.tensor([[10.0], [30.0], [100.0]], dtype=torch.float64)
    return ps.ODEProblem(vdp_batched, u0, (0.0, t1), p, batched=True)


def compiled_setup(prob: ps.ODEProblem, alg: ps.Algorithm, **kw: Any) -> tuple[Any, LoopOptions, torch.Tensor]:
    """The stepper ``solve(prob, alg, compile=True, **kw)`` compiles (nothing compiled yet), its loop options and
    its ``(B, n)`` initial state, to ask a loop module's dispatch."""
    opts = SolveOptions(compile=True, **kw)
    c = check_solve(prob, alg, opts)
    u0 = prob.u0.reshape(prob.u0.shape[0] if prob.batched else 1, -1)
    stats = Stats()
    stepper = compile_stepper(make_stepper(alg, prob, stats, c.atol, c.rtol, False), stats, u0.shape[0], c.atol,
                              c.rtol, bool(c.dense), u0)
    return stepper, _loop_options(prob, c, opts, False), u0


@contextmanager
def counting_calls(module: ModuleType, name: str) -> Iterator[list[int]]:
    """Counts calls of ``module.name`` (one ``1`` per call) while ``RuntimeWarning``s (the fallbacks') are errors."""
    calls: list[int] = []
    real = getattr(module, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    setattr(module, name, counting)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            yield calls
    finally:
        setattr(module, name, real)


def python_while(cond: Any, body: Any, carried: tuple) -> tuple:
    """``torch.while_loop`` as a Python loop (for programs run uncompiled)."""
    while bool(cond(*carried)):
        carried = tuple(body(*carried))
    return carried


def run_loops_uncompiled(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> None:
    """Loop programs run as their Python functions, and ``while_loop`` in ``modules`` as a Python loop (torch's
    eager ``while_loop`` traces its body first: tens of seconds); other programs still compile."""
    real = compiled_parts._Program.run

    def uncompiled(self: Any, variant: str, stats: Stats, *args: Any) -> Any:
        return self.raw[variant](*args) if variant == "loop" else real(self, variant, stats, *args)

    monkeypatch.setattr(compiled_parts._Program, "run", uncompiled)
    for module in modules:
        monkeypatch.setattr(module, "while_loop", python_while)


def solve_through(module: ModuleType, name: str, prob: ps.ODEProblem, alg: ps.Algorithm, *,
                  strict: bool = False, **kw: Any) -> ps.ODESolution:
    """``solve(prob, alg, compile=True, **kw)`` that must run through the loop program ``module.name``: it returns a
    result (``None`` would be a fallback) and fallback ``RuntimeWarning``s are errors (``UserWarning``s too with
    ``strict``)."""
    results: list[bool] = []
    real = getattr(module, name)

    def spy(*args: Any) -> Any:
        out = real(*args)
        results.append(out is not None)
        return out

    setattr(module, name, spy)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            if strict:
                warnings.simplefilter("error", UserWarning)
            sol = ps.solve(prob, alg, compile=True, **kw)
    finally:
        setattr(module, name, real)
    assert results == [True]
    return sol


def assert_compiled_matches_eager(prob: ps.ODEProblem, algs: tuple[ps.Algorithm, ...], **kw: Any) -> None:
    """Each of ``algs`` solved eagerly and with ``compile=True`` (a fallback ``RuntimeWarning`` is an error): the
    compiled solve succeeds with the eager counters (:func:`counts`) and values to 1e-12."""
    for alg in algs:
        eager = ps.solve(prob, alg, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            comp = ps.solve(prob, alg, compile=True, **kw)
        assert comp.success and counts(comp) == counts(eager), alg.name
        torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)
