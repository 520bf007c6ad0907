"""``compile=True`` for the fixed-step Adams methods (pysciml/engine/compiled_adams.py).

The default run executes the program's Python function against the eager solve (the same arithmetic: equal values
and counters, through the starting steps, a restart where the last step is shortened, a batch and torchdiffeq's
variable-order method); the iterated corrector falls back with one warning. The exhaustive tests compile.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from loop_programs import assert_compiled_matches_eager

import pysciml as ps
from pysciml.engine import compiled_parts
from pysciml.engine.compiled import compile_stepper
from pysciml.engine.compiled_adams import CompiledAdamsStepper
from pysciml.native import make_stepper
from pysciml.solution import Stats

F64 = torch.float64
COUNTS = ("nf", "naccept", "nreject", "nloop")
T1 = 3.005  # not a multiple of dt = 0.01: the last step is shortened and an OrdinaryDiffEq-style method restarts


def counts(sol: ps.ODESolution) -> dict[str, int]:
    return {k: getattr(sol.stats, k) for k in COUNTS}


def vdp(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x), dim=-1)


def problem(batched: bool = False) -> ps.ODEProblem:
    u0, p = torch.tensor([2.0, 0.0], dtype=F64), torch.tensor([1.5], dtype=F64)
    if batched:
        scale = torch.linspace(0.8, 1.2, 3, dtype=F64)[:, None]
        u0, p = u0 * scale, p * scale
    return ps.ODEProblem(vdp, u0, (0.0, T1), p, batched=batched)


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Programs run as their Python functions (nothing handed to Dynamo); fallback warnings are errors."""

    def run(self: Any, variant: str, stats: Stats, *args: Any) -> Any:
        return self.raw[variant](*args)

    monkeypatch.setattr(compiled_parts._Program, "run", run)
    monkeypatch.setattr(compiled_parts, "_own_code", lambda fn, tag, backend=None, per_solve=False: fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


CASES = [(ps.AB3(), False), (ps.AB5(), False), (ps.ABM32(), False), (ps.ABM54(), False), (ps.AB4(), True),
         (ps.ABM43(), True)]


@pytest.mark.parametrize("alg,batched", CASES, ids=[f"{a.name}-{'batch' if b else 'one'}" for a, b in CASES])
def test_uncompiled_program_equals_eager(uncompiled: None, alg: ps.Algorithm, batched: bool) -> None:
    """The program's step between the eager starting steps, saving and the restart: eager values exactly, eager
    counters."""
    prob = problem(batched)
    kw = {"dt": 0.01, "saveat": torch.linspace(0.0, T1, 7, dtype=F64)}
    eager = ps.solve(prob, alg, **kw)
    prog = ps.solve(prob, alg, compile=True, **kw)
    assert eager.success and prog.success
    assert counts(prog) == counts(eager)
    torch.testing.assert_close(prog.u, eager.u, rtol=0, atol=0)


def decay(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # dt * lambda = -0.002 at dt = 0.01
    return -0.2 * u + 0.1 * torch.sin(t)


def test_uncompiled_variable_order_adams_bashforth(uncompiled: None) -> None:
    """torchdiffeq's variable-order Adams-Bashforth (``AdamsBashforth()``; odeint's ``'explicit_adams'`` runs on
    odeint's own eager fixed grid): one graph per history length, the eager values and counters."""
    prob = ps.ODEProblem(decay, torch.tensor([2.0, 1.0], dtype=F64), (0.0, 3.0))  # a uniform grid: no warning
    kw = {"dt": 0.01, "saveat": torch.linspace(0.0, 3.0, 7, dtype=F64)}
    eager = ps.solve(prob, ps.AdamsBashforth(), **kw)
    prog = ps.solve(prob, ps.AdamsBashforth(), compile=True, **kw)
    assert eager.success and prog.success and eager.stats.naccept == 300
    assert counts(prog) == counts(eager)
    torch.testing.assert_close(prog.u, eager.u, rtol=0, atol=0)


def test_adams_solves_take_the_program_and_the_iterated_corrector_warns() -> None:
    prob = problem()
    stats = Stats()
    atol = torch.full((1, 2), 1e-6, dtype=F64)
    stepper = compile_stepper(make_stepper(ps.ABM43(), prob, stats, atol, 1e-3, False), stats, 1, atol, 1e-3, False,
                              prob.u0.reshape(1, 2))
    assert isinstance(stepper, CompiledAdamsStepper)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = ps.solve(prob, ps.AdamsBashforthMoulton(), dt=0.05, compile=True)
    mine = [w for w in caught if str(w.message).startswith("compile=True")]  # (the eager step-change one aside)
    assert len(mine) == 1 and "iterated corrector" in str(mine[0].message) and "solving eagerly" in str(mine[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        eager = ps.solve(prob, ps.AdamsBashforthMoulton(), dt=0.05)
    assert counts(sol) == counts(eager)
    torch.testing.assert_close(sol.u, eager.u, rtol=0, atol=0)


@pytest.mark.exhaustive  # compiles its own programs (CI runs it: .ci/run)
@pytest.mark.timeout(1200)  # compiling is minutes on a loaded machine
@pytest.mark.parametrize("batched", [False, True], ids=["one", "batched"])
def test_compiled_adams_equals_eager(batched: bool) -> None:
    """Compiled AB4 and ABM43 through the restart: no fallback, the eager counters, values to round-off."""
    prob = problem(batched)
    kw = {"dt": 0.01, "saveat": torch.linspace(0.0, T1, 7, dtype=F64)}
    assert_compiled_matches_eager(prob, (ps.AB4(), ps.ABM43()), **kw)


def test_warmup_reaches_every_history_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pysciml.warmup`` runs the program at every history length a solve uses (torchdiffeq's variable order: 3 to
    11 values), so a later solve compiles nothing (programs run uncompiled here; the variants called are recorded)."""
    seen: list[str] = []

    def run(self: Any, variant: str, stats: Stats, *args: Any) -> Any:
        seen.append(variant)
        return self.raw[variant](*args)

    monkeypatch.setattr(compiled_parts._Program, "run", run)
    monkeypatch.setattr(compiled_parts, "_own_code", lambda fn, tag, backend=None, per_solve=False: fn)
    prob = ps.ODEProblem(decay, torch.tensor([2.0, 1.0], dtype=F64), (0.0, 3.0))
    for alg in (ps.AdamsBashforth(), ps.ABM43()):
        ps.warmup(prob, alg, dt=0.01)
        warmed = set(seen)
        seen.clear()
        ps.solve(prob, alg, dt=0.01, compile=True)
        assert set(seen) <= warmed and seen
        assert warmed == ({f"k{k}" for k in range(3, 12)} if alg.name == "AdamsBashforth" else {"k4"})
        seen.clear()
