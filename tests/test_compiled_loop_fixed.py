"""The fixed-step explicit-RK loop program (pysciml/engine/compiled_loop_fixed.py) against the eager fixed-step loops.

Run uncompiled (its ``while_loop`` as a Python loop), the program must give the eager solve's values, counters and
return codes: one trajectory (the scalar loop) and a batch (the batched loop), save points inside steps and at their
ends, a span that is not a whole number of steps, backward in time, a step beyond the stability region (``Unstable``
with the eager reason and failure point) and a state that overflows. Compiled (exhaustive): RK4 and Tsit5 to 1e-12.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from loop_programs import counts, run_loops_uncompiled, solve_through

import pysciml as ps
from pysciml.engine import compiled, compiled_loop_fixed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

F64 = torch.float64


def vdp(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Van der Pol, batched or not, ``mu = p[..., 0]``."""
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x), dim=-1)


def problem(batched: bool, tspan: tuple[float, float] = (0.0, 3.0), mu: float = 1.0) -> ps.ODEProblem:
    if batched:
        u0 = torch.tensor([[2.0, 0.0], [1.0, 0.5], [0.5, -1.0]], dtype=F64)
        p = torch.tensor([[mu], [2 * mu], [0.5 * mu]], dtype=F64)
        return ps.ODEProblem(vdp, u0, tspan, p, batched=True)
    return ps.ODEProblem(vdp, torch.tensor([2.0, 0.0], dtype=F64), tspan, torch.tensor([mu], dtype=F64))


def both(prob: ps.ODEProblem, alg: ps.Algorithm, **kw: object) -> tuple[ps.ODESolution, ps.ODESolution]:
    eager = ps.solve(prob, alg, adaptive=False, **kw)
    comp = solve_through(compiled_loop_fixed, "integrate_whole", prob, alg, adaptive=False, **kw)
    return eager, comp


def assert_same(eager: ps.ODESolution, comp: ps.ODESolution, tol: float = 0.0) -> None:
    assert counts(comp) == counts(eager)
    assert comp.retcodes == eager.retcodes
    torch.testing.assert_close(comp.t, eager.t, rtol=0, atol=0)
    torch.testing.assert_close(comp.u, eager.u, rtol=tol, atol=tol, equal_nan=True)


CASES = [  # algorithm, dt, save times (inside steps, at step ends, at t0 and t1)
    (ps.RK4(), 0.05, [0.0, 0.125, 1.0, 2.2, 3.0]),
    (ps.Tsit5(), 0.1, [0.33, 1.5, 3.0]),  # FSAL, an embedded estimate (the error check), its own interpolant
    (ps.Midpoint(), 0.07, [0.0, 0.5, 2.99, 3.0]),  # 3 / 0.07 is not whole: the last step is shortened
    (ps.DP5(), 0.1, [3.0]),  # only the end: the program makes no interpolant
]


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
@pytest.mark.parametrize(("alg", "dt", "saveat"), CASES, ids=[c[0].name for c in CASES])
def test_uncompiled_equals_eager(monkeypatch: pytest.MonkeyPatch, alg: ps.Algorithm, dt: float, saveat: list[float],
                                 batched: bool) -> None:
    run_loops_uncompiled(monkeypatch, compiled_loop_fixed)
    eager, comp = both(problem(batched), alg, dt=dt, saveat=saveat)
    assert eager.success
    assert_same(eager, comp)


def test_uncompiled_backward_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    run_loops_uncompiled(monkeypatch, compiled_loop_fixed)
    eager, comp = both(problem(True, (2.0, 0.0)), ps.RK4(), dt=0.04, saveat=[2.0, 1.37, 0.0])
    assert eager.success
    assert_same(eager, comp)


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
def test_uncompiled_unstable_step_as_eager(monkeypatch: pytest.MonkeyPatch, batched: bool) -> None:
    """RK4 with dt * lambda ~ -5 on a stiff linear field (beyond its interval [-2.785, 0]): Unstable at the eager
    step, with the eager reason; in the batch one trajectory is stable and succeeds."""
    run_loops_uncompiled(monkeypatch, compiled_loop_fixed)
    lam = torch.tensor([[-100.0], [-1.0]] if batched else [-100.0], dtype=F64)

    def f(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return p * u

    u0 = torch.ones((2, 1) if batched else (1,), dtype=F64)
    prob = ps.ODEProblem(f, u0, (0.0, 1.0), lam, batched=batched)
    kw = {"dt": 0.05, "saveat": [0.0, 0.5, 1.0]}
    eager = ps.solve(prob, ps.RK4(), adaptive=False, **kw)
    comp = solve_through(compiled_loop_fixed, "integrate_whole", prob, ps.RK4(), adaptive=False, **kw)
    codes = eager.retcodes
    assert codes[0] is ps.ReturnCode.Unstable and (not batched or codes[1] is ps.ReturnCode.Success)
    assert_same(eager, comp)
    assert "stability region" in eager.message and comp.message == eager.message  # t, dt and the reason


def test_uncompiled_overflow_as_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """u' = u^2 from 1 past its blow-up at t = 1: the state turns non-finite, Unstable at the eager step."""
    run_loops_uncompiled(monkeypatch, compiled_loop_fixed)
    prob = ps.ODEProblem(lambda t, u: u * u, torch.tensor([1.0], dtype=F64), (0.0, 2.0))
    kw = {"dt": 0.01, "saveat": [0.5, 1.5, 2.0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the eager arithmetic
        eager = ps.solve(prob, ps.RK4(), adaptive=False, **kw)
    comp = solve_through(compiled_loop_fixed, "integrate_whole", prob, ps.RK4(), adaptive=False, **kw)
    assert eager.retcode is ps.ReturnCode.Unstable
    assert_same(eager, comp)


def square(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return u * u


def test_uncompiled_error_check_reads_each_solves_atol(monkeypatch: pytest.MonkeyPatch) -> None:
    """u' = u^2 across its blow-up at t = 1, Tsit5 steps of 0.13: with atol 1e-6 the error-size check stops it at
    t = 1.04 (``Unstable``, the estimate above half the growing solution); with atol 1e6 the check stays quiet and the
    state turns non-finite at t = 1.17. One program serves both solves (its check's ``|atol|`` is an input)."""
    run_loops_uncompiled(monkeypatch, compiled_loop_fixed)
    prob = ps.ODEProblem(square, torch.tensor([1.0], dtype=F64), (0.0, 2.0))
    for atol, where in ((1e-6, "t=1.04"), (1e6, "t=1.17")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the eager arithmetic
            eager = ps.solve(prob, ps.Tsit5(), adaptive=False, dt=0.13, saveat=[2.0], atol=atol)
        comp = solve_through(compiled_loop_fixed, "integrate_whole", prob, ps.Tsit5(), adaptive=False, dt=0.13,
                             saveat=[2.0], atol=atol)
        assert eager.retcode is ps.ReturnCode.Unstable and where in eager.message
        assert_same(eager, comp)
        assert comp.message == eager.message


def test_warmup_builds_the_loop_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pysciml.warmup`` of such a solve builds this program (run uncompiled here); the solve then runs it."""
    from loop_programs import counting_calls

    run_loops_uncompiled(monkeypatch, compiled_loop_fixed)
    prob = problem(True)
    kw = {"dt": 0.1, "adaptive": False, "saveat": [1.0, 3.0]}
    with counting_calls(compiled_loop_fixed, "warm") as calls:
        ps.warmup(prob, ps.RK4(), **kw)
    assert calls == [1]
    assert solve_through(compiled_loop_fixed, "integrate_whole", prob, ps.RK4(), **kw).success


def test_dispatch() -> None:
    """What the program takes: fixed explicit-RK steps in float64 saving at fixed times; not adaptive steps, dense
    output, float32, Vern7 (extra interpolation stages) or differentiated solves."""
    from loop_programs import compiled_setup

    prob = problem(False)
    assert compiled_loop_fixed.handles(*compiled_setup(prob, ps.RK4(), dt=0.1, adaptive=False, saveat=[3.0]))
    assert not compiled_loop_fixed.handles(*compiled_setup(prob, ps.RK4(), dt=0.1, adaptive=False))  # dense
    assert not compiled_loop_fixed.handles(*compiled_setup(prob, ps.Tsit5(), saveat=[3.0]))  # adaptive
    assert not compiled_loop_fixed.handles(*compiled_setup(prob, ps.Vern7(), dt=0.1, adaptive=False, saveat=[3.0]))
    p32 = ps.ODEProblem(vdp, torch.tensor([2.0, 0.0]), (0.0, 3.0), torch.tensor([1.0]))
    assert not compiled_loop_fixed.handles(*compiled_setup(p32, ps.RK4(), dt=0.1, adaptive=False, saveat=[3.0]))
    grad = ps.ODEProblem(vdp, torch.tensor([2.0, 0.0], dtype=F64, requires_grad=True), (0.0, 3.0),
                         torch.tensor([1.0], dtype=F64))
    assert not compiled_loop_fixed.handles(*compiled_setup(grad, ps.RK4(), dt=0.1, adaptive=False, saveat=[3.0]))


@pytest.mark.exhaustive  # compiles its own programs (CI runs it: .ci/run)
@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
@pytest.mark.parametrize("alg", [ps.RK4(), ps.Tsit5()], ids=["RK4", "Tsit5"])
def test_compiled_equals_eager(alg: ps.Algorithm, batched: bool) -> None:
    eager, comp = both(problem(batched), alg, dt=0.01, saveat=[0.0, 0.125, 1.0, 2.2, 3.0])
    assert eager.success
    assert_same(eager, comp, tol=1e-12)
    before = compiled.compile_count()
    again = solve_through(compiled_loop_fixed, "integrate_whole", problem(batched, (0.0, 2.0), mu=1.5), alg,
                          adaptive=False, dt=0.02, saveat=[0.5, 2.0])  # other span, dt, p, save times: no recompile
    assert again.success and compiled.compile_count() == before
