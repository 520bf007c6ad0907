"""Whole-loop programs take their 0-d CPU float64 and integer arguments as one-element views, reshaped back inside
(``compiled_parts._own_code(..., per_solve=True)``): torch 2.13's Dynamo gives such an input a symbol for its value,
and its pass that turns float symbols back into tensors then restarts the whole trace once
(``TensorifyScalarRestartAnalysis``, recorded through ``TensorifyState.specialize``), which cost the compiled FBDF
loop of the 128-state Brusselator 9.4 s of a 39 s compile."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch._dynamo.symbolic_convert import TensorifyState
from torch._dynamo.utils import counters

import pysciml as ps
from pysciml.engine import compiled_parts
from pysciml.engine.compiled_parts import _Program
from pysciml.problems import rober
from pysciml.solution import Stats

F64 = torch.float64


def specializations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The float symbols Dynamo is told to specialize from now on (each one a restarted trace)."""
    seen: list[str] = []
    real = TensorifyState.specialize.__func__  # type: ignore[attr-defined]

    def specialize(cls: type, index: str) -> None:
        seen.append(index)
        real(cls, index)

    monkeypatch.setattr(TensorifyState, "specialize", classmethod(specialize))
    return seen


def step(t: torch.Tensor, C: tuple[torch.Tensor, ...], X: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    h, n = C
    u, k = X
    return u + h * t, k + n, t * h


def inputs(t: float, h: float, n: int) -> tuple:
    return (torch.tensor(t, dtype=F64), (torch.tensor(h, dtype=F64), torch.tensor(n)),
            (torch.linspace(0.0, 1.0, 4, dtype=F64), torch.tensor(2)))


def test_per_solve_program_traces_once_and_keeps_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 0-d inputs (nested in tuples) reach the traced function as 0-d tensors, the outputs are the uncompiled
    function's to the bit, the trace is not restarted, and other values of the scalars do not recompile."""
    seen = specializations(monkeypatch)
    prog = _Program("scalars_test")
    prog.add("loop", step, "aot_eager", per_solve=True)  # AOTAutograd runs the tensorify pass; no C++ compile
    before = counters["stats"]["unique_graphs"]
    for t, h, n in ((0.5, 0.25, 3), (1.5, -2.0, 7)):
        args = inputs(t, h, n)
        out = prog.run("loop", Stats(), *args)
        expected = step(*args)
        assert [o.shape for o in out] == [e.shape for e in expected]
        for o, e in zip(out, expected, strict=True):
            torch.testing.assert_close(o, e, rtol=0, atol=0)
    assert counters["stats"]["unique_graphs"] - before == 1  # one graph for both calls
    assert seen == []


@pytest.mark.exhaustive
def test_fbdf_loop_compiles_without_a_restarted_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FBDF whole loop (18 0-d carries) compiled with the FX-graph and AOTAutograd caches off (a cached graph
    skips the pass): no float symbol specialized; the solve equals the eager one's counters."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    seen = specializations(monkeypatch)
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    monkeypatch.setattr(functorch_config, "enable_autograd_cache", False)
    compiled_parts.clear_cache()  # compiled here, not found from an earlier test
    prob = rober((0.0, 10.0))
    kw = {"rtol": 1e-5, "atol": 1e-9, "saveat": [10.0]}
    sol = ps.solve(prob, ps.FBDF(), compile=True, **kw)
    eager = ps.solve(prob, ps.FBDF(), **kw)
    assert seen == []
    assert sol.stats.compile_time > 0.0
    assert (sol.stats.naccept, sol.stats.nreject, sol.stats.nf) == (eager.stats.naccept, eager.stats.nreject,
                                                                   eager.stats.nf)


@pytest.mark.exhaustive
@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P()], ids=lambda a: a.name)
def test_differentiated_loop_with_a_scalar_p(alg: ps.Algorithm) -> None:
    """A 0-d ``p`` that requires grad reaches the differentiated whole loop as a view: the eager values and the
    gradients to ``p`` and ``u0`` (no fallback warning)."""
    def f(t, u, mu):
        return torch.stack((u[1], mu * ((1 - u[0] ** 2) * u[1]) - u[0]))

    mu = torch.tensor(2.0, dtype=F64, requires_grad=True)
    u0 = torch.tensor([2.0, 0.0], dtype=F64, requires_grad=True)
    prob = ps.ODEProblem(f, u0, (0.0, 3.0), mu)
    results = []
    for compile in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            sol = ps.solve(prob, alg, rtol=1e-7, atol=1e-9, saveat=[1.0, 3.0], compile=compile)
        results.append((sol.u.detach(), torch.autograd.grad(sol.u.pow(2).sum(), (mu, u0))))
    (u_e, g_e), (u_c, g_c) = results
    torch.testing.assert_close(u_c, u_e, rtol=1e-12, atol=1e-14)
    for a, b in zip(g_c, g_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
