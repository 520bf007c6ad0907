"""``solve(..., compile=True)`` with RadauIIA5/RadauIIA3 as one compiled loop program
(pysciml/engine/compiled_loop_firk.py).

The loop program must take the eager solve's steps: the same accepted and rejected steps, Jacobians, factorizations
and failures, Newton iterations and f calls (equal but where tests/firk_counts.py says), and the same values to
round-off. Compiling the program takes about 1.5 minutes on a loaded 2-core CPU, so every test that compiles is
``exhaustive``; the default run checks the dispatch and runs the loop program uncompiled (its ``while_loop`` calls
as Python loops), which checks its bookkeeping (the carried flags, counters and retries) without inductor.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from firk_counts import assert_firk_counts
from loop_programs import compiled_setup, run_loops_uncompiled, solve_through, vdp_batch_problem

import pysciml as ps
from pysciml.engine import compiled, compiled_firk, compiled_loop, compiled_loop_firk
from pysciml.problems import hires, oregonator, rober, van_der_pol

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

F64 = torch.float64


def takes_loop(prob: ps.ODEProblem, alg: ps.Algorithm, **kw) -> bool:
    """Whether ``solve(prob, alg, compile=True, **kw)`` would run the FIRK loop program (nothing compiled)."""
    return compiled_loop_firk.handles(*compiled_setup(prob, alg, **kw))


def solve_taking_loop(prob: ps.ODEProblem, alg: ps.Algorithm, **kw) -> ps.ODESolution:
    """``solve(..., compile=True)`` that must run through the loop program: ``integrate_whole`` returns a result
    (no fallback; its warning would be an error here)."""
    return solve_through(compiled_loop_firk, "integrate_whole", prob, alg, **kw)


def assert_equals_eager(prob: ps.ODEProblem, alg: ps.Algorithm, sol: ps.ODESolution, slack: int = 0,
                        **kw) -> None:
    """The eager counters (Newton's iterations and Jacobians within ``slack``: tests/firk_counts.py), and values
    within 100 tolerance units ``atol + rtol |u|`` at the saved times (the last bits of the compiled kernels move
    step sizes by ~1e-11 relative: compiled_loop_firk's docstring)."""
    eager = ps.solve(prob, alg, **kw)
    assert eager.success and sol.success
    assert_firk_counts(sol, eager, alg, slack=slack)
    torch.testing.assert_close(sol.t, eager.t, rtol=0.0, atol=0.0)
    units = float(((sol.u - eager.u).abs() / (kw["atol"] + kw["rtol"] * eager.u.abs())).max())
    assert units <= 100.0, units


def test_dispatch() -> None:
    """Which compiled FIRK solves run as one loop program: one float64 trajectory or a batch, saving at fixed
    times (inner ones are tstops for RadauIIA5: the loop lands on them); not with dense output, every step saved,
    a float32 trajectory, gradients, or ``ENABLED`` off. (Decides only: compiles nothing.)"""
    vdp = van_der_pol(10.0, (0.0, 1.0))
    kw = {"rtol": 1e-6, "atol": 1e-9}
    for alg in (ps.RadauIIA5(), ps.RadauIIA3()):
        assert takes_loop(vdp, alg, saveat=[1.0], **kw)
        assert takes_loop(vdp, alg, saveat=[0.0, 0.25, 0.5, 1.0], **kw)  # inner save times: tstops
        assert takes_loop(vdp_batch_problem(), alg, saveat=[0.0, 1.0, 3.0], **kw)
    assert not takes_loop(vdp, ps.RadauIIA5(), **kw)  # every step saved
    assert not takes_loop(vdp, ps.RadauIIA5(), dense=True, saveat=[1.0], **kw)
    one32 = ps.ODEProblem(vdp.f, vdp.u0.float(), vdp.tspan, vdp.p.float(), jac=vdp.jac)
    assert not takes_loop(one32, ps.RadauIIA5(), saveat=[1.0], rtol=1e-4, atol=1e-6)
    grad = ps.ODEProblem(vdp.f, vdp.u0, vdp.tspan, vdp.p.clone().requires_grad_(True), jac=vdp.jac)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # differentiated FIRK solves run eagerly
        assert not takes_loop(grad, ps.RadauIIA5(), saveat=[1.0], **kw)
    compiled_loop_firk.ENABLED = False
    try:
        assert not takes_loop(vdp, ps.RadauIIA5(), saveat=[1.0], **kw)
    finally:
        compiled_loop_firk.ENABLED = True


def test_uncompiled_loop_program_equals_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop program's function run without compiling (its while_loops as Python loops) gives the eager counters
    and values: a batch whose trajectories reject, hold steps and refresh their Jacobians at different times, with
    inner save times the steps land on."""
    run_loops_uncompiled(monkeypatch, compiled_firk, compiled_loop, compiled_loop_firk)
    kw = {"rtol": 1e-4, "atol": 1e-6, "saveat": [0.0, 0.3, 0.6]}
    prob = vdp_batch_problem(0.6)
    sol = solve_taking_loop(prob, ps.RadauIIA5(), **kw)
    assert sol.stats.nreject > 0
    assert_equals_eager(prob, ps.RadauIIA5(), sol, **kw)


CASES = {
    "rober": (rober((0.0, 1e5)), ps.RadauIIA5(), 1e-8),
    "vdp-1e3": (van_der_pol(1e3), ps.RadauIIA5(), 1e-9),
    "oregonator": (oregonator(), ps.RadauIIA5(), 1e-8),
    "hires": (hires(), ps.RadauIIA5(), 1e-8),  # analytic jac creating tensor constants
    "vdp-radau3": (van_der_pol(10.0), ps.RadauIIA3(), 1e-7),
}


@pytest.mark.exhaustive  # compiles its own programs (about 1.5 minutes each on a loaded CPU)
@pytest.mark.parametrize("case", list(CASES))
def test_loop_program_equals_eager(case: str) -> None:
    prob, alg, rtol = CASES[case]
    kw = {"rtol": rtol, "atol": 1e-4 * rtol, "saveat": [prob.tspan[1]]}
    slack = 1 if case == "oregonator" else 0  # one Jacobian-reuse test flips (tests/firk_counts.py)
    assert_equals_eager(prob, alg, solve_taking_loop(prob, alg, **kw), slack, **kw)


@pytest.mark.exhaustive
def test_batch_with_inner_saves_equals_eager() -> None:
    prob = vdp_batch_problem()
    kw = {"rtol": 1e-8, "atol": 1e-10, "saveat": torch.linspace(0.0, 3.0, 7, dtype=F64)}
    sol = solve_taking_loop(prob, ps.RadauIIA5(), **kw)
    assert sol.stats.nreject > 0
    assert_equals_eager(prob, ps.RadauIIA5(), sol, **kw)


@pytest.mark.exhaustive
def test_no_recompilation_across_tolerances_u0_p() -> None:
    """After warmup, solves at other tolerances, ``u0`` and ``p`` compile nothing and give the eager counters."""
    prob = van_der_pol(1e3)
    seconds = ps.warmup(prob, ps.RadauIIA5(), rtol=1e-6, atol=1e-9, saveat=[prob.tspan[1]])
    before = compiled.compile_count()
    for i, scale in enumerate((1.0, 0.9, 1.1)):
        other = ps.ODEProblem(prob.f, prob.u0 * scale, prob.tspan, prob.p * scale, jac=prob.jac)
        rtol = 10.0 ** -(6 + i)
        kw = {"rtol": rtol, "atol": 1e-3 * rtol, "saveat": [prob.tspan[1]]}
        assert_equals_eager(other, ps.RadauIIA5(), solve_taking_loop(other, ps.RadauIIA5(), **kw), **kw)
    assert compiled.compile_count() == before
    assert seconds >= 0.0
