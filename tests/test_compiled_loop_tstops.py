"""``tstops`` in the whole-loop program of explicit RK and Rosenbrock solves (engine/compiled_loop.py, issue 17).

The loop's control lands each step on the next stop (:func:`~pysciml.engine.compiled_control.controlled_step_fn`
with more than one stop), as the eager loops do; the save points a step passes are interpolated on the step that
landed. The default run runs the loop program uncompiled (its ``while_loop`` as a Python loop,
``tests/loop_programs.py``) against the eager solve: values and counters, one trajectory (float64 and float32) and
a batch, forward and differentiated, on a Van der Pol oscillator with a forcing that switches on at a tstop (a kink
in ``t``, so landing on it matters: without the stop the eager solution moves by 4e-8 to 4e-5). The compiled
programs (minutes each on a cold inductor cache on a small, loaded CPU) are ``exhaustive``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from loop_programs import compiled_setup, counts, run_loops_uncompiled, solve_through

import pysciml as ps
from pysciml.engine import compiled_loop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

F64 = torch.float64
KINK = 1.3
KW = {"rtol": 1e-6, "atol": 1e-8, "saveat": [0.0, 0.5, KINK, 2.0, 3.0], "tstops": [KINK, 2.5]}


def kinked(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Van der Pol (``mu = p[..., 0]``) with a forcing ``5 max(t - KINK, 0)``: ``f`` has a kink in ``t`` at KINK."""
    x, y = u[..., 0], u[..., 1]
    force = 5.0 * torch.clamp(t - KINK, min=0.0)
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x + force), dim=-1)


def kinked_tgrad(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``df/dt`` of :func:`kinked` (one-sided at KINK: 0 there): Rosenbrock's ``df/dt`` without a finite
    difference, whose round-off differs between eager and compiled arithmetic."""
    x = u[..., 0]
    slope = torch.where(t > KINK, 5.0, 0.0) * torch.ones_like(x)
    return torch.stack((torch.zeros_like(x), slope), dim=-1)


def problem(batched: bool, p_grad: bool = False, tgrad: bool = True) -> ps.ODEProblem:
    u0 = torch.tensor([2.0, 0.0], dtype=F64)
    p = torch.tensor([3.0], dtype=F64)
    if batched:
        u0 = u0 * torch.linspace(1.0, 1.2, 3, dtype=F64)[:, None]
        p = p * torch.linspace(1.0, 2.0, 3, dtype=F64)[:, None]
    return ps.ODEProblem(kinked, u0, (0.0, 3.0), p.requires_grad_(p_grad), batched=batched,
                         tgrad=kinked_tgrad if tgrad else None)


ALGS = [ps.Tsit5(), ps.Rodas5P()]
IDS = {"ids": lambda a: a.name}


def test_tstops_take_the_whole_loop() -> None:
    """Solves with tstops inside the span take the loop program (explicit RK, Rosenbrock, ARK; Kvaerno5 with
    inner save times, which are its tstops); the dispatch compiles nothing."""
    for batched in (True, False):
        for alg in (*ALGS, ps.DP5(), ps.KenCarp4()):
            assert compiled_loop.handles_whole(*compiled_setup(problem(batched), alg, **KW)), (alg, batched)
    assert compiled_loop.handles_whole(*compiled_setup(problem(True), ps.Kvaerno5(), rtol=1e-6, atol=1e-8,
                                                       saveat=[0.0, 1.0, 3.0]))


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batched"])
@pytest.mark.parametrize("alg", ALGS, **IDS)
def test_uncompiled_loop_lands_on_tstops_as_eager(monkeypatch: pytest.MonkeyPatch, alg: ps.Algorithm,
                                                  batched: bool) -> None:
    """The loop program run uncompiled: the eager solve's values (1e-9) and counters, with a tstop at the kink
    that moves the solution when the steps do not land on it."""
    run_loops_uncompiled(monkeypatch, compiled_loop)
    prob = problem(batched)
    with torch.no_grad():
        eager = ps.solve(prob, alg, **KW)
        whole = solve_through(compiled_loop, "run_whole", prob, alg, **KW)
        free = ps.solve(prob, alg, **{k: v for k, v in KW.items() if k != "tstops"})
    assert eager.success and whole.success
    assert counts(whole) == counts(eager)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-9, atol=1e-12)
    assert float((free.u - eager.u).abs().max()) > 1e-8  # landing on the kink matters (4e-8 to 4e-5 measured)


@pytest.mark.parametrize("alg", ALGS, **IDS)
def test_uncompiled_float32_trajectory_lands_on_tstops_as_scalar_loop(monkeypatch: pytest.MonkeyPatch,
                                                                      alg: ps.Algorithm) -> None:
    """One float32 trajectory (the loop keeps its time and stops in float64, as the scalar loop keeps them in Python
    floats): the scalar loop's counters, values to float32 round-off (1e-6 measured for Rodas5P, 0 for Tsit5).
    Rodas5P's float32 Jacobian, LU and solves round by the shapes they run at (a batch of one in the program), and on
    an AVX-512 machine that moved its step sequence: 40 accepted steps against the scalar loop's 42, the same 6
    rejections, values still 1.1e-6 apart (both 1.2-1.4e-6 from a float64 reference)."""
    run_loops_uncompiled(monkeypatch, compiled_loop)
    prob = ps.ODEProblem(kinked, torch.tensor([2.0, 0.0]), (0.0, 3.0), torch.tensor([3.0]), tgrad=kinked_tgrad)
    kw = {**KW, "rtol": 1e-4, "atol": 1e-6}
    with torch.no_grad():
        eager = ps.solve(prob, alg, **kw)
        whole = solve_through(compiled_loop, "run_whole", prob, alg, **kw)
    assert eager.success and whole.success and whole.u.dtype == torch.float32
    got, want = counts(whole), counts(eager)
    if isinstance(alg, ps.Rodas5P):
        assert got["nreject"] == want["nreject"] and abs(got["naccept"] - want["naccept"]) <= 2, (got, want)
    else:
        assert got == want
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alg", ALGS, **IDS)
def test_uncompiled_differentiated_loop_with_tstops(monkeypatch: pytest.MonkeyPatch, alg: ps.Algorithm) -> None:
    """A differentiated batch through the loop program (uncompiled) with tstops: values, counters and the gradient
    in ``p`` equal to the eager discrete adjoint's (1e-8: 1.2e-9 apart on an AVX-512 machine). (No ``tgrad``: the
    differentiated Rosenbrock loop takes only the autodiff Jacobian and the forward-difference ``df/dt``,
    ``compiled_loop.GRADIENT_FAMILIES``.)"""
    run_loops_uncompiled(monkeypatch, compiled_loop)
    results = []
    for through_loop in (False, True):
        prob = problem(True, p_grad=True, tgrad=False)
        sol = solve_through(compiled_loop, "run_whole", prob, alg, **KW) if through_loop else \
            ps.solve(prob, alg, sensealg=ps.DiscreteAdjoint(), **KW)
        results.append((sol, torch.autograd.grad(sol.u.pow(2).sum(), prob.p)[0]))
    (eager, g_eager), (whole, g_whole) = results
    assert counts(whole) == counts(eager)
    torch.testing.assert_close(whole.u.detach(), eager.u.detach(), rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(g_whole, g_eager, rtol=1e-8, atol=1e-12)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
@pytest.mark.timeout(1200)  # a Rodas5P compile took minutes on a loaded machine
@pytest.mark.parametrize("batched", [False, True], ids=["one", "batched"])
@pytest.mark.parametrize("alg", ALGS, **IDS)
def test_compiled_loop_with_tstops_equals_eager(alg: ps.Algorithm, batched: bool) -> None:
    """Compiled: the eager values to round-off and the eager counters."""
    prob = problem(batched)
    eager = ps.solve(prob, alg, **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        whole = solve_through(compiled_loop, "run_whole", prob, alg, **KW)
    assert eager.success and whole.success
    assert counts(whole) == counts(eager)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-9, atol=1e-12)
