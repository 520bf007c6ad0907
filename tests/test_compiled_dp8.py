"""``compile=True`` for DP8 (DOP853): its combined two-estimator error norm inside the explicit-RK program.

The default run executes the programs' Python functions (per-step, batched control and the whole loop with its
``while_loop`` as a Python loop) against the eager solve; one exhaustive test compiles them.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from loop_programs import compiled_setup, counts, vdp_batch_problem

import pysciml as ps
from pysciml.engine import compiled_loop, compiled_parts
from pysciml.engine.compiled import CompiledStepper, _unsupported
from pysciml.solution import Stats

F64 = torch.float64


def vdp(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x), dim=-1)


def one_problem(dtype: torch.dtype = F64) -> ps.ODEProblem:
    return ps.ODEProblem(vdp, torch.tensor([2.0, 0.0], dtype=dtype), (0.0, 6.0), torch.tensor([4.0], dtype=dtype))


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every program runs as its Python function, ``while_loop`` as a Python loop; fallback warnings are errors."""

    def run(self: Any, variant: str, stats: Stats, *args: Any) -> Any:
        return self.raw[variant](*args)

    def python_while(cond: Any, body: Any, carried: tuple) -> tuple:
        while bool(cond(*carried)):
            carried = tuple(body(*carried))
        return carried

    monkeypatch.setattr(compiled_parts._Program, "run", run)
    # nothing handed to Dynamo
    monkeypatch.setattr(compiled_parts, "_own_code", lambda fn, tag, backend=None, per_solve=False: fn)
    monkeypatch.setattr(compiled_loop, "while_loop", python_while)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def test_dp8_has_a_compiled_step() -> None:
    """The dispatch gives DP8 the explicit-RK program and, saving at fixed times, the whole loop (nothing compiled
    by asking)."""
    stepper, opts, u0 = compiled_setup(vdp_batch_problem(), ps.DP8(), rtol=1e-8, atol=1e-10,
                                       saveat=[0.0, 1.0, 3.0])
    assert isinstance(stepper, CompiledStepper) and _unsupported(stepper.inner) is None
    assert compiled_loop.handles_whole(stepper, opts, u0)


KW = {"rtol": 1e-8, "atol": 1e-10}


@pytest.mark.parametrize("case", ["one-every-step", "one-saveat", "batch-saveat", "batch-dense"])
def test_uncompiled_program_equals_eager(uncompiled: None, case: str) -> None:
    """The program's step with DOP853's norm, in each loop that runs it (the scalar loop's per-step calls, the whole
    loop, the batched control), against eager DP8: equal counters (rejections included); times and values to 1e-8
    (the norms' round-off moves step sizes through the controller: on the one-trajectory problem the step times
    differ by up to 1.9e-9 relative for DP8 and 1.4e-9 for Tsit5, whose program has long been in use; the values
    saved at those steps by up to 3.2e-9)."""
    prob = vdp_batch_problem(6.0) if case.startswith("batch") else one_problem()
    kw: dict[str, Any] = dict(KW)
    if case.endswith("saveat"):
        kw["saveat"] = torch.linspace(0.0, 6.0, 7, dtype=F64)
    if case.endswith("dense"):
        kw["dense"] = True
    eager = ps.solve(prob, ps.DP8(), **kw)
    prog = ps.solve(prob, ps.DP8(), compile=True, **kw)
    assert eager.success and prog.success and eager.stats.nreject > 0
    assert counts(prog) == counts(eager)
    torch.testing.assert_close(prog.t, eager.t, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(prog.u, eager.u, rtol=1e-8, atol=1e-8)  # at step times 1e-8 apart: slope x shift


def test_program_step_error_is_dop853s() -> None:
    """One program step (its Python function) gives the eager DP8 step's error vector, which differs from the
    plain 5th-order estimate (so equal counters above check DOP853's norm, not a coincidence)."""
    prob = one_problem()
    stepper, _, u0 = compiled_setup(prob, ps.DP8(), **KW)
    t, dt = torch.zeros(1, dtype=F64), torch.full((1,), 0.3, dtype=F64)
    stepper.init(t, u0)
    _, args = stepper.program_args(t, u0, dt)
    out = stepper.program.raw["step"](*args)
    res = stepper.inner.step(t, u0, dt)
    torch.testing.assert_close(out[0], res.u_new, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(out[1], res.err, rtol=1e-13, atol=1e-16)
    (e5,) = stepper.inner._btilde(res.stages)
    assert float(res.err.norm()) < 0.9 * float((dt[:, None] * e5).norm())


def test_uncompiled_odeint_dopri8_takes_the_program(uncompiled: None) -> None:
    """``odeint(..., method='dopri8', compile=True)`` runs the program (no fallback warning) with eager's values."""
    y0 = torch.tensor([2.0, 0.0], dtype=F64)
    t = torch.linspace(0.0, 6.0, 5, dtype=F64)

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack((y[1], 4.0 * (1 - y[0] * y[0]) * y[1] - y[0]))

    eager = ps.odeint(f, y0, t, method="dopri8", rtol=1e-8, atol=1e-10)
    prog = ps.odeint(f, y0, t, method="dopri8", rtol=1e-8, atol=1e-10, compile=True)
    torch.testing.assert_close(prog, eager, rtol=1e-8, atol=1e-10)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
@pytest.mark.timeout(1200)  # compiling is minutes on a loaded machine
@pytest.mark.parametrize("batched", [False, True], ids=["one", "batched"])
def test_compiled_dp8_equals_eager(batched: bool) -> None:
    """Compiled DP8 (the whole loop, saving at fixed times): no fallback, the eager counters, values to 1e-9."""
    prob = vdp_batch_problem(6.0) if batched else one_problem()
    kw = {**KW, "saveat": torch.linspace(0.0, 6.0, 7, dtype=F64)}
    eager = ps.solve(prob, ps.DP8(), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        comp = ps.solve(prob, ps.DP8(), compile=True, **kw)
    assert comp.success and comp.stats.compile_time > 0.0 or compiled_parts.compile_count() > 0
    assert counts(comp) == counts(eager)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-9, atol=1e-10)


def _differentiated_matches_eager() -> None:
    """A differentiated DP8 batch with ``compile=True`` (a fallback ``RuntimeWarning`` is an error) against the eager
    discrete adjoint: equal counters, values to 1e-8 and the gradient in ``p`` to 1e-7. The first differentiated solve
    of ``f`` in a process counts 3 more f calls (once-per-process checks, also on DP5), so a first eager solve is
    discarded."""
    results = []
    for compile_ in (False, False, True):
        prob = vdp_batch_problem(1.5)
        prob.p.requires_grad_(True)
        extra: dict[str, Any] = {"compile": True} if compile_ else {"sensealg": ps.DiscreteAdjoint()}
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            sol = ps.solve(prob, ps.DP8(), saveat=torch.linspace(0.0, 1.5, 4, dtype=F64), **extra, **KW)
        results.append((sol, torch.autograd.grad(sol.u.pow(2).sum(), prob.p)[0]))
    (eager, g_eager), (comp, g_comp) = results[1:]
    assert counts(comp) == counts(eager)
    torch.testing.assert_close(comp.u.detach(), eager.u.detach(), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(g_comp, g_eager, rtol=1e-7, atol=1e-9)


def test_uncompiled_differentiated_whole_loop_equals_eager(uncompiled: None) -> None:
    """A differentiated DP8 batch through the whole loop (uncompiled): the eager discrete adjoint's counters, values
    and gradient in ``p`` (the combined norm's factor carries no gradient in either)."""
    _differentiated_matches_eager()


@pytest.mark.exhaustive  # compiles a forward and a backward loop program
@pytest.mark.timeout(1200)  # compiling is minutes on a loaded machine
def test_compiled_differentiated_dp8_equals_eager() -> None:
    """Compiled and differentiated (the whole loop's ``while_loop`` autograd): the eager discrete adjoint's
    counters, values and gradient in ``p`` to round-off."""
    _differentiated_matches_eager()
