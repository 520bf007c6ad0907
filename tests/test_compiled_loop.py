"""The whole loop as one compiled ``torch.while_loop`` program for Rosenbrock and ARK (engine/compiled_loop.py).

The tests that solve compile programs of their own (minutes each on a cold inductor cache on a small, loaded
CPU), so they are ``exhaustive`` (``pytest -m exhaustive tests/test_compiled_loop.py``); the default run checks
which solves take the loop program. The eager loops are the reference: values, step counts and statistics
(Jacobians and LUs included: the loop carries the Jacobian and evaluates a new one only after a step with an
acceptance, as the eager steppers do).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from loop_programs import compiled_setup, counting_calls, counts, run_loops_uncompiled

import pysciml as ps
from pysciml.engine import compiled, compiled_loop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

F64, F32 = torch.float64, torch.float32
SAVEAT = [0.0, 0.3, 1.0, 1.02, 2.2, 4.0]  # at t0, inside steps, two in one step, at t1


def vdp(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Van der Pol with ``mu = p[..., 0]`` (batched or not): one function, so its programs are shared."""
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x), dim=-1)


def forced(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Van der Pol with a time-dependent forcing: Rosenbrock's ``df/dt`` term (finite difference) is used."""
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x + torch.sin(3.0 * t)), dim=-1)


def forced_tgrad(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``df/dt`` of :func:`forced`."""
    x = u[..., 0]
    return torch.stack((torch.zeros_like(x), 3.0 * torch.cos(3.0 * t) * torch.ones_like(x)), dim=-1)


def problem(dtype: torch.dtype, batched: bool, *, mu: float = 4.0, f=vdp, tspan=(0.0, 4.0),
            **extra) -> ps.ODEProblem:
    u0 = torch.tensor([2.0, 0.0], dtype=dtype)
    p = torch.tensor([mu], dtype=dtype)
    if batched:
        u0 = u0 * torch.linspace(1.0, 1.2, 3, dtype=dtype)[:, None]
        p = p * torch.linspace(1.0, 2.0, 3, dtype=dtype)[:, None]
    return ps.ODEProblem(f, u0, tspan, p, batched=batched, **extra)


def whole_programs() -> int:
    """Whole-loop programs that have run (engine/compiled_loop.py: cached under a "whole" key)."""
    return sum(key[0] == "whole" and "loop" in prog.ran for base in compiled._CACHE.values()
               for key, prog in base.fused.items())


def three(prob: ps.ODEProblem, alg: ps.Algorithm, **kw) -> tuple[ps.ODESolution, ...]:
    """Eager, compiled per step (whole loop off) and compiled whole loop; no fallback warning."""
    eager = ps.solve(prob, alg, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        compiled_loop.ENABLED = False
        try:
            per_step = ps.solve(prob, alg, compile=True, **kw)
        finally:
            compiled_loop.ENABLED = True
        before = whole_programs()
        whole = ps.solve(prob, alg, compile=True, **kw)
    assert whole_programs() >= before  # (a program that ran before is not counted twice)
    return eager, per_step, whole


def assert_whole_taken(prob: ps.ODEProblem, alg: ps.Algorithm, **kw) -> ps.ODESolution:
    """A compiled solve that must run through the whole-loop program: ``integrate_batched_whole`` is called once
    and does not fall back (its fallback warns: an error here), and a loop program has run. (The program may come
    from the cache: an earlier test in the process can have compiled the same signature.)"""
    with counting_calls(compiled_loop, "integrate_batched_whole") as calls:
        sol = ps.solve(prob, alg, compile=True, **kw)
    assert calls == [1] and whole_programs() >= 1
    return sol


def takes_whole_loop(prob: ps.ODEProblem, alg: ps.Algorithm, **kw) -> bool:
    """Whether ``solve(prob, alg, compile=True, **kw)`` would run the whole-loop program (nothing compiled)."""
    return compiled_loop.handles_whole(*compiled_setup(prob, alg, **kw))


def test_whole_loop_dispatch() -> None:
    """Which compiled solves run as one loop program: Rosenbrock and ARK batches, and one trajectory (float64 or
    float32: time kept in float64 as the scalar loop keeps it), saving at fixed times, with or without tstops
    (Kvaerno5's inner save times among them; tests/test_compiled_loop_tstops.py); not with dense output, gradients
    (ARK), a family without a loop program, or with ``ENABLED`` off. (Decides only: compiles nothing.)"""
    batch, one, one32 = problem(F64, True), problem(F64, False), problem(F32, False)
    kw = {"rtol": 1e-6, "atol": 1e-8, "saveat": SAVEAT}
    for alg in (ps.Rodas5P(), ps.Rodas4(), ps.Rosenbrock23(), ps.KenCarp4(), ps.Kvaerno3(), ps.Tsit5()):
        assert takes_whole_loop(batch, alg, **kw) and takes_whole_loop(one, alg, **kw), alg
    assert not takes_whole_loop(one, ps.Rodas5P(), rtol=1e-6)  # every step saved (and dense output)
    assert not takes_whole_loop(batch, ps.Rodas5P(), dense=True, **kw)
    assert takes_whole_loop(batch, ps.Rodas5P(), tstops=[1.5], **kw)
    # Kvaerno5's cubic interpolant is two orders below the method: its steps land on inner save times (tstops)
    assert takes_whole_loop(batch, ps.Kvaerno5(), **kw)
    assert takes_whole_loop(batch, ps.Kvaerno5(), rtol=1e-6, atol=1e-8, saveat=[0.0, 4.0])
    assert takes_whole_loop(one32, ps.Rodas5P(), **kw) and takes_whole_loop(one32, ps.DP5(), **kw)
    assert takes_whole_loop(one32, ps.DP5(), tstops=[1.5], **kw)
    assert takes_whole_loop(problem(F32, True), ps.Rodas5P(), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "has no compiled step": runs eagerly
        assert not takes_whole_loop(batch, ps.RadauIIA5(), **kw)
    grad = problem(F64, True)
    grad.p.requires_grad_(True)
    assert not takes_whole_loop(grad, ps.KenCarp4(), **kw)
    compiled_loop.ENABLED = False
    try:
        assert not takes_whole_loop(batch, ps.Rodas5P(), **kw)
    finally:
        compiled_loop.ENABLED = True


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache
def test_rodas5p_batched_whole_loop_matches_eager() -> None:
    """A batched Rodas5P solve saving inside steps runs one while_loop program with the
    same values, step counts, Jacobians and LUs as the eager batched loop (rejections included)."""
    prob = problem(F64, True, mu=60.0)
    kw = {"rtol": 1e-6, "atol": 1e-8, "saveat": SAVEAT}
    eager = ps.solve(prob, ps.Rodas5P(), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        whole = assert_whole_taken(prob, ps.Rodas5P(), **kw)
    assert eager.success and whole.success and eager.stats.nreject > 0
    assert counts(whole) == counts(eager)
    assert eager.stats.njac < eager.stats.nlu  # steps after a rejection reused the Jacobian
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-9, atol=1e-12)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache
@pytest.mark.parametrize("alg", [ps.Rodas5P(), ps.Rodas4(), ps.Rodas5(), ps.Rosenbrock23(), ps.KenCarp4(),
                                 ps.Kvaerno3()], ids=lambda a: a.name)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one"])
def test_whole_loop_matches_eager_float64(alg: ps.Algorithm, batched: bool) -> None:
    """Every Rosenbrock tableau and two ESDIRKs (KenCarp4 with its dense output, Kvaerno3 with the Hermite
    interpolant), a batch and one trajectory: values, steps and statistics equal to the eager solve's."""
    prob = problem(F64, batched, mu=60.0)
    kw = {"rtol": 1e-5 if alg.name == "Rosenbrock23" else 1e-6, "atol": 1e-8, "saveat": SAVEAT}
    eager = ps.solve(prob, alg, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        whole = assert_whole_taken(prob, alg, **kw)
    assert eager.success and whole.success
    assert counts(whole) == counts(eager)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-9, atol=1e-12)
    assert [str(r) for r in whole.retcodes] == [str(r) for r in eager.retcodes]


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache
def test_whole_loop_time_dependent_rosenbrock() -> None:
    """A non-autonomous f: the carried df/dt is refreshed with J. With the problem's tgrad the three solves
    agree to round-off; with the default forward difference (its increment scaled by the step, so its own
    round-off is ~1e-8 relative and differs between eager and compiled arithmetic) an accept decision near
    EEst = 1 may move, so there the steps may differ by a few and the values by the tolerance."""
    prob = problem(F64, True, mu=20.0, f=forced, tgrad=forced_tgrad)
    eager, per_step, whole = three(prob, ps.Rodas5P(), rtol=1e-7, atol=1e-9, saveat=SAVEAT)
    assert counts(whole) == counts(eager) == counts(per_step)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-9, atol=1e-12)
    prob = problem(F64, True, mu=20.0, f=forced)
    eager, per_step, whole = three(prob, ps.Rodas5P(), rtol=1e-7, atol=1e-9, saveat=SAVEAT)
    assert abs(whole.stats.nloop - eager.stats.nloop) <= 3 and abs(whole.stats.njac - eager.stats.njac) <= 3
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-5, atol=1e-7)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache
@pytest.mark.parametrize("alg", [ps.Rodas5P(), ps.KenCarp4()], ids=lambda a: a.name)
def test_whole_loop_float32_batched(alg: ps.Algorithm) -> None:
    """float32: the whole loop equals the per-step compiled program; the eager solve is within round-off (a
    decision near EEst = 1 may move, so a few steps' difference is allowed there)."""
    prob = problem(F32, True)
    eager, per_step, whole = three(prob, alg, rtol=1e-4, atol=1e-6, saveat=SAVEAT)
    assert whole.success and whole.u.dtype == F32
    assert counts(whole) == counts(per_step)
    torch.testing.assert_close(whole.u, per_step.u, rtol=1e-5, atol=1e-6)
    assert abs(whole.stats.naccept - eager.stats.naccept) <= 4
    torch.testing.assert_close(whole.u, eager.u, rtol=2e-3, atol=1e-4)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache
def test_whole_loop_no_recompilation() -> None:
    """After warmup, 10 solves with different u0, p, tspan and tolerances compile nothing."""
    base = problem(F64, True)
    kw = {"rtol": 1e-6, "atol": 1e-8}
    ps.warmup(base, ps.Rodas5P(), saveat=[4.0], **kw)
    before = compiled.compile_count()
    for i in range(10):
        prob = base.remake(u0=base.u0 * (1.0 + 0.03 * i), p=base.p * (1.0 + 0.1 * i), tspan=(0.0, 3.0 + 0.2 * i))
        sol = ps.solve(prob, ps.Rodas5P(), compile=True, rtol=10.0 ** -(5 + i % 3), atol=1e-9, saveat=[3.0 + 0.2 * i])
        assert sol.success
    assert compiled.compile_count() == before


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache
def test_whole_loop_failure_codes() -> None:
    """maxiters inside the loop and a failing trajectory: per-trajectory codes and failure points as eager."""
    prob = problem(F64, True, mu=60.0)
    kw = {"rtol": 1e-6, "atol": 1e-8, "saveat": SAVEAT}
    eager, per_step, whole = three(prob, ps.Rodas5P(), maxiters=12, **kw)
    assert not eager.success and [str(r) for r in whole.retcodes] == [str(r) for r in eager.retcodes]
    assert counts(whole) == counts(eager)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-9, atol=1e-12, equal_nan=True)
    eager, _, whole = three(prob, ps.Rodas5P(), dtmin=1e-2, **kw)
    assert [str(r) for r in whole.retcodes] == [str(r) for r in eager.retcodes]
    assert counts(whole) == counts(eager)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache
def test_whole_loop_fallbacks() -> None:
    """What the whole loop does not take keeps the per-step design: dense output, a differentiated implicit
    solve; results still equal eager."""
    prob = problem(F64, True)
    kw = {"rtol": 1e-6, "atol": 1e-8, "saveat": SAVEAT}
    before = whole_programs()
    a, b = ps.solve(prob, ps.Rodas5P(), dense=True, **kw), ps.solve(prob, ps.Rodas5P(), compile=True, dense=True, **kw)
    assert counts(a) == counts(b)
    torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-12)
    assert whole_programs() == before
    grad = problem(F64, True)
    grad.p.requires_grad_(True)
    sols = [ps.solve(grad, ps.KenCarp4(), compile=flag, **kw) for flag in (False, True)]
    gs = [torch.autograd.grad(s.u[-1].sum(), grad.p)[0] for s in sols]
    torch.testing.assert_close(gs[1], gs[0], rtol=1e-9, atol=1e-12)
    assert whole_programs() == before


class MLPField(torch.nn.Module):
    """``-y + mlp(y)``, a 3-16-3 tanh MLP in float64 (issue 17's neural ODE: autonomous, ``f`` an ``nn.Module``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -y + self.mlp(y)


def mlp_case() -> tuple[ps.ODEProblem, dict]:
    prob = ps.ODEProblem(MLPField(), torch.tensor([1.0, 0.0, 0.0], dtype=F64), (0.0, 1.0))
    return prob, {"rtol": 1e-6, "atol": 1e-10, "saveat": torch.linspace(0, 1, 5, dtype=F64)}


def test_uncompiled_one_trajectory_ignores_carried_f0_roundoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: the loop program run uncompiled (its while_loop as a Python loop) on one Rodas5P trajectory of an
    MLP field, with the carried ``f(t, u)`` moved by one ulp at the start, as inductor's arithmetic moves it (the
    eager ``f(t0, u0)``, the compiled step's ``f``): the forward-difference ``df/dt`` divides by ``h ~ 1.5e-8 dt``,
    so with the carried ``f0`` in it that ulp became a ``df/dt`` of ~1e-8 |f| / dt for an autonomous ``f`` (18
    steps compiled, 21 differentiated); the loop differences two of its own ``f`` values and takes the eager
    solve's 17 steps and counters."""
    start = compiled_loop._Family.start

    def one_ulp_off(self, stepper, u0):
        X = start(self, stepper, u0)
        return (torch.nextafter(X[0], torch.full_like(X[0], math.inf)), *X[1:])

    results: list[bool] = []
    run_whole = compiled_loop.run_whole

    def spy(*args, **kwargs):
        out = run_whole(*args, **kwargs)
        results.append(out is not None)
        return out

    run_loops_uncompiled(monkeypatch, compiled_loop)
    monkeypatch.setattr(compiled_loop._Family, "start", one_ulp_off)
    monkeypatch.setattr(compiled_loop, "run_whole", spy)
    prob, kw = mlp_case()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        eager = ps.solve(prob, ps.Rodas5P(), **kw)
        whole = ps.solve(prob, ps.Rodas5P(), compile=True, **kw)
    assert results == [True]  # the loop program ran, no fallback
    assert eager.success and whole.success and eager.stats.naccept == 17
    assert counts(whole) == counts(eager)
    # 1.9e-9 apart on an AVX-512 machine (MKL's kernels for the MLP's batch of one and the eager shapes differ)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-8, atol=1e-12)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache
def test_one_trajectory_module_rosenbrock_matches_eager() -> None:
    """Issue 17 compiled: one Rodas5P trajectory of the MLP field, undifferentiated and differentiated (the
    parameters require grad: the traced reverse-mode Jacobian), takes the eager solve's 17 steps and counters
    (before the fix: 18 and 21). Values and gradients agree within what one ulp of ``u0`` moves the eager solve
    (measured: values 3e-11, gradients 1.4e-10 absolute; the first step's error estimate, ~2e-9, is round-off)."""
    prob, kw = mlp_case()
    f = prob.f
    ps.solve(prob, ps.Rodas5P(), sensealg=ps.DiscreteAdjoint(), **kw)  # the one-time graph check's f calls
    sols, grads = [], []
    for flag in (False, True):
        with torch.no_grad():
            sols.append(ps.solve(prob, ps.Rodas5P(), compile=flag, **kw))
        f.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            sol = ps.solve(prob, ps.Rodas5P(), compile=flag, sensealg=ps.DiscreteAdjoint(), **kw)
        sol.u.sum().backward()
        sols.append(sol)
        grads.append(torch.cat([p.grad.flatten() for p in f.parameters()]))
    eager, eager_grad, whole, whole_grad = sols
    assert eager.success and eager.stats.naccept == 17 and eager_grad.stats.naccept == 17
    assert counts(whole) == counts(eager) and counts(whole_grad) == counts(eager_grad)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(whole_grad.u.detach(), eager_grad.u.detach(), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-7, atol=1e-9)
