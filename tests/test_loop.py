"""The integration loop tested apart from the numerics, with a stub stepper (u' = -u stepped exactly, scripted
errors and failures). Every test runs on the three paths: one trajectory on the scalar fast path, one trajectory
on the batched loop, and a batch of three equal trajectories (which must give the single trajectory's numbers)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import LOOP_PATHS, Script, StubStepper, loop_options, run_loop

import pysciml as ps
from pysciml.engine.loop_records import LoopResult

REL = 1e-12
F64 = torch.float64
SUCCESS, MAXITERS, DTMIN = ps.ReturnCode.Success, ps.ReturnCode.MaxIters, ps.ReturnCode.DtLessThanMin
UNSTABLE, CONVFAIL = ps.ReturnCode.Unstable, ps.ReturnCode.ConvergenceFailure
TOLS = dict(atol=torch.full((1, 1), 1e-6, dtype=F64), rtol=1e-3)  # for Script(err_scale=...): err = scale dt^2

paths = pytest.mark.parametrize("path", LOOP_PATHS)


def close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


def nb(path: str) -> int:
    return 3 if path == "batch3" else 1


def per_trajectory(res: LoopResult, stats: ps.Stats, path: str) -> tuple[int, int]:
    """(accepted, rejected) per trajectory of a batch of equal trajectories, checking they split evenly."""
    b = nb(path)
    assert stats.naccept % b == 0 and stats.nreject % b == 0
    return stats.naccept // b, stats.nreject // b


def dts_of(stub: StubStepper, b: int = 0) -> list[float]:
    return [dt for _, dt in stub.attempts(b)]


# --- success -----------------------------------------------------------------------------------------------------


@paths
@pytest.mark.parametrize("span", [(0.0, 1.0), (1.0, 0.0)], ids=["forward", "backward"])
def test_loop_reaches_t1_exactly_and_counts(path: str, span: tuple[float, float]) -> None:
    stub = StubStepper(Script(err_scale=1.0))
    res, stats = run_loop(stub, path, loop_options(t0=span[0], t1=span[1], **TOLS))
    assert res.status == [SUCCESS] * nb(path)
    assert res.fail_info == [None] * nb(path)
    assert res.t[0].item() == span[0] and res.t[-1].item() == span[1]
    assert torch.allclose(res.u[-1, :, 0], torch.full((nb(path),), math.exp(span[0] - span[1]), dtype=F64),
                          rtol=1e-13, atol=0)
    acc, rej = per_trajectory(res, stats, path)
    assert acc + rej == len(stub.log) == stats.nloop
    assert acc == res.t.shape[0] - 1
    steps = torch.diff(res.t)
    assert bool((steps * (span[1] - span[0]) > 0).all())  # every step in the direction of integration
    # the same steps as the scalar path (initial step from initial_dt, err = dt^2, order 1)
    ref = StubStepper(Script(err_scale=1.0))
    ref_res, ref_stats = run_loop(ref, "scalar", loop_options(t0=span[0], t1=span[1], **TOLS))
    assert (stats.nloop, acc, rej) == (ref_stats.nloop, ref_stats.naccept, ref_stats.nreject)
    assert torch.allclose(res.t, ref_res.t, rtol=REL, atol=0)
    assert 20 <= acc <= 60  # error dt^2 against 1e-3: steps near 0.03


@paths
def test_loop_rejects_when_error_too_large_then_recovers(path: str) -> None:
    stub = StubStepper(Script(errors=(3.0, 2.0, 0.3)))
    res, stats = run_loop(stub, path, loop_options(dt=0.5))
    assert res.status == [SUCCESS] * nb(path)
    acc, rej = per_trajectory(res, stats, path)
    assert rej == 2 and acc == len(stub.log) - 2
    for b in range(nb(path)):
        (t0, d0), (t1, d1), (t2, d2) = stub.attempts(b)[:3]
        assert t0 == t1 == t2 == 0.0  # rejected steps leave t where it was
        assert close(d0, 0.5) and close(d1, 0.5 * 0.9 / 3.0**0.7) and close(d2, d1 * 0.9 / 2.0**0.7)
    assert close(res.t[1].item(), 0.5 * 0.9 / 3.0**0.7 * 0.9 / 2.0**0.7)
    assert res.t[-1].item() == 1.0


# --- fixed steps and saving --------------------------------------------------------------------------------------


@paths
@pytest.mark.parametrize(("dt", "n"), [(0.3, 4), (0.25, 4), (0.1, 10), (1 / 3, 3)])
def test_loop_fixed_steps_count_and_last_step(path: str, dt: float, n: int) -> None:
    stub = StubStepper(Script(err_scale=0.0))
    res, stats = run_loop(stub, path, loop_options(adaptive=False, dt=dt, **TOLS))
    assert res.status == [SUCCESS] * nb(path)
    assert per_trajectory(res, stats, path) == (n, 0)
    assert stats.nloop == n
    expected = [min(k * dt, 1.0) for k in range(n + 1)]
    assert torch.allclose(res.t, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-14)
    assert res.t[-1].item() == 1.0  # the last step ends on t1 exactly, without a sliver step after it
    assert close(dts_of(stub)[-1], 1.0 - (n - 1) * dt, rel=1e-12)
    assert all(close(d, dt) for d in dts_of(stub)[:-1])
    assert torch.allclose(res.u[-1, :, 0], torch.full((nb(path),), math.exp(-1.0), dtype=F64), rtol=1e-14, atol=0)


@paths
def test_saveat_values_come_from_the_interpolant_not_shortened_steps(path: str) -> None:
    stub = StubStepper(Script(err_scale=0.0))
    save = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=F64)
    res, stats = run_loop(stub, path, loop_options(adaptive=False, dt=0.3, saveat=save, save_everystep=False))
    assert per_trajectory(res, stats, path) == (4, 0)
    assert dts_of(stub)[:3] == pytest.approx([0.3, 0.3, 0.3], rel=1e-14)  # the save times did not cut steps
    assert torch.equal(res.t, save) and res.u.shape == (4, nb(path), 1)
    # the stub's interpolant is linear between the exact end values of the step holding each save time
    e3, e6 = math.exp(-0.3), math.exp(-0.6)
    expected = [1.0, 1 + (0.25 / 0.3) * (e3 - 1), e3 + (0.2 / 0.3) * (e6 - e3), math.exp(-1.0)]
    for b in range(nb(path)):
        assert torch.allclose(res.u[:, b, 0], torch.tensor(expected, dtype=F64), rtol=1e-14, atol=0)


@paths
def test_saveat_with_adaptive_steps_matches_the_scalar_path(path: str) -> None:
    save = torch.tensor([0.1, 0.2, 0.7, 1.0], dtype=F64)
    kw = dict(saveat=save, save_everystep=False, **TOLS)
    res, _ = run_loop(StubStepper(Script(err_scale=1.0)), path, loop_options(**kw))
    ref, _ = run_loop(StubStepper(Script(err_scale=1.0)), "scalar", loop_options(**kw))
    assert not bool(torch.isnan(res.u).any())
    for b in range(nb(path)):
        assert torch.allclose(res.u[:, b], ref.u[:, 0], rtol=REL, atol=0)
    # linear interpolation of exp(-t) over steps of about 0.03: within 2e-4 of the exact values
    assert torch.allclose(res.u[:, 0, 0], torch.exp(-save), rtol=0, atol=2e-4)
    assert res.u[-1, 0, 0].item() == pytest.approx(math.exp(-1.0), rel=1e-13)


# --- failures ----------------------------------------------------------------------------------------------------


@paths
def test_loop_maxiters_status_and_fail_info(path: str) -> None:
    stub = StubStepper(Script(errors=(0.5,)))
    res, stats = run_loop(stub, path, loop_options(dt=0.01, maxiters=3))
    assert res.status == [MAXITERS] * nb(path)
    assert stats.nloop == len(stub.log) == 3
    assert per_trajectory(res, stats, path) == (3, 0)
    grow = 0.9 * 0.5**0.4 / 0.5**0.7  # after the first step: qold = eest = 0.5
    t_end = 0.01 + 0.002 + 0.002 * grow  # first accepted step shrinks by qmin (qold starts at 1e-4)
    for info in res.fail_info:
        assert info is not None
        assert close(info[0], t_end) and close(info[1], 0.002 * grow**2)  # (t, the step it would take next)
    assert torch.allclose(res.u[-1, :, 0], torch.full((nb(path),), math.exp(-t_end), dtype=F64), rtol=1e-13)


@paths
def test_loop_dt_less_than_min_when_the_step_collapses(path: str) -> None:
    stub = StubStepper(Script(errors=(1e10,)))  # an estimate that never gets small
    res, stats = run_loop(stub, path, loop_options(t0=1.0, t1=2.0, dt=0.1))
    assert res.status == [DTMIN] * nb(path)
    acc, rej = per_trajectory(res, stats, path)
    assert acc == 0 and rej == stats.nloop == len(stub.log)
    assert 10 <= rej <= 30  # 0.1 / 5^k falls below eps |t| after 22 rejections
    for info in res.fail_info:
        assert info is not None and info[0] == 1.0 and 0 < info[1] < 1e-12


@paths
def test_loop_dtmin_stops_a_step_below_it(path: str) -> None:
    # 1e2 rejects dt = 0.1; the next try is 0.1 * max(0.9 / 100^0.7, qmin) = 0.02
    res, stats = run_loop(StubStepper(Script(errors=(100.0, 0.5))), path, loop_options(dt=0.1, dtmin=0.03))
    assert res.status == [DTMIN] * nb(path)
    assert stats.nloop == 1
    for info in res.fail_info:
        assert info is not None and info[0] == 0.0 and close(info[1], 0.02)
    # dtmin bounds every proposal, as in OrdinaryDiffEq: after the accepted 0.02 step the controller (qold still
    # qoldinit = 1e-4) asks for 0.02 / 5 = 0.004, below 0.01 ...
    stub = StubStepper(Script(errors=(100.0, 0.5)))
    res, stats = run_loop(stub, path, loop_options(dt=0.1, dtmin=0.01))
    assert res.status == [DTMIN] * nb(path) and stats.nloop == 2
    for info in res.fail_info:
        assert info is not None and close(info[0], 0.02) and close(info[1], 0.004)
    # ... and above 0.001
    stub = StubStepper(Script(errors=(100.0, 0.5)))
    res, stats = run_loop(stub, path, loop_options(dt=0.1, dtmin=0.001))
    assert res.status == [SUCCESS] * nb(path)
    assert close(dts_of(stub)[1], 0.02) and per_trajectory(res, stats, path)[1] == 1


@paths
def test_loop_fixed_step_convergence_failure(path: str) -> None:
    stub = StubStepper(Script(err_scale=0.0, fail_calls=(2,)))  # the third step's StepResult.ok is False
    res, stats = run_loop(stub, path, loop_options(adaptive=False, dt=0.3))
    assert res.status == [CONVFAIL] * nb(path)
    assert per_trajectory(res, stats, path) == (2, 1)
    for info in res.fail_info:
        assert info is not None and close(info[0], 0.6) and close(info[1], 0.3)
    assert torch.allclose(res.t, torch.tensor([0.0, 0.3, 0.6], dtype=F64), atol=1e-15)


@paths
def test_loop_unstable_when_the_step_gives_nan(path: str) -> None:
    stub = StubStepper(Script(err_scale=1.0, nan_after=0.5))  # a singularity at t = 0.5
    res, stats = run_loop(stub, path, loop_options(**TOLS))
    assert res.status == [UNSTABLE] * nb(path)
    for info in res.fail_info:
        assert info is not None and 0.5 - 1e-9 < info[0] <= 0.5 and abs(info[1]) < 1e-9
    assert not bool(torch.isnan(res.u).any())  # no NaN step was accepted
    assert res.t[-1].item() <= 0.5


@paths
def test_loop_fixed_step_nan_is_unstable(path: str) -> None:
    res, stats = run_loop(StubStepper(Script(err_scale=0.0, nan_after=0.5)), path,
                          loop_options(adaptive=False, dt=0.3))
    assert res.status == [UNSTABLE] * nb(path)
    assert per_trajectory(res, stats, path) == (1, 1)
    for info in res.fail_info:
        assert info is not None and close(info[0], 0.3) and close(info[1], 0.3)


# --- step bounds -------------------------------------------------------------------------------------------------


@paths
@pytest.mark.parametrize("direction", [1.0, -1.0], ids=["forward", "backward"])
def test_loop_dtmax_bounds_every_step(path: str, direction: float) -> None:
    # eest = 1e-6 asks for qmax = 10 times larger steps each time: 0.01, 0.1, then dtmax
    stub = StubStepper(Script(errors=(1e-6,)))
    res, stats = run_loop(stub, path, loop_options(t1=direction, dt=0.01, dtmax=0.15))
    assert res.status == [SUCCESS] * nb(path)
    expected = [0.01, 0.1] + [0.15] * 5 + [1.0 - 0.11 - 5 * 0.15]
    for b in range(nb(path)):
        assert dts_of(stub, b) == pytest.approx([direction * d for d in expected], rel=1e-12)
    assert per_trajectory(res, stats, path) == (8, 0)
    # a first step above dtmax is cut to it
    stub = StubStepper(Script(errors=(1e-6,)))
    run_loop(stub, path, loop_options(t1=direction, dt=0.5, dtmax=0.15))
    assert dts_of(stub)[:2] == pytest.approx([direction * 0.15] * 2, rel=1e-15)
    assert max(abs(d) for d in dts_of(stub)) <= 0.15


@paths
def test_loop_dtmax_bounds_the_automatic_initial_step(path: str) -> None:
    # atol 1, rtol 0, u' = -u, order 1: Hairer-Wanner's starting step is sqrt(0.01 / 1) = 0.1
    stub = StubStepper(Script(errors=(0.5,)))
    run_loop(stub, path, loop_options())
    assert dts_of(stub)[0] == pytest.approx(0.1, rel=1e-6)
    stub = StubStepper(Script(errors=(0.5,)))
    run_loop(stub, path, loop_options(dtmax=0.05))
    assert dts_of(stub)[0] == 0.05
    assert max(dts_of(stub)) <= 0.05


@paths
@pytest.mark.parametrize("span", [(0.0, 1.0), (1.0, 0.0)], ids=["forward", "backward"])
def test_loop_steps_land_on_tstops(path: str, span: tuple[float, float]) -> None:
    stub = StubStepper(Script(errors=(1e-6,)))
    stops = [0.123, 0.5] if span[0] == 0.0 else [0.877, 0.5]
    d = 1.0 if span[1] > span[0] else -1.0
    res, stats = run_loop(stub, path, loop_options(t0=span[0], t1=span[1], dt=0.01, tstops=stops))
    assert res.status == [SUCCESS] * nb(path)
    for stop in stops:
        assert stop in res.t.tolist()
    attempts = [(t, dt) for t, dt in stub.attempts()][: per_trajectory(res, stats, path)[0]]
    assert close(sum(attempts[2]), stops[0])  # 0.01, 0.1, then a step cut short to end on the stop
    for stop in stops:  # no attempted step straddles a stop
        assert not any(d * t < d * stop - 1e-12 and d * (t + dt) > d * stop + 1e-12 for t, dt in attempts)


@paths
def test_loop_dt_next_is_the_step_planned_before_t1(path: str) -> None:
    stub = StubStepper(Script(errors=(1e-6,)))  # tiny errors: each step may grow by qmax = 10
    res, _ = run_loop(stub, path, loop_options(dt=0.3))
    assert [round(dt, 12) for _, dt in stub.attempts()] == [0.3, 0.7]  # 3.0 planned, clipped to end on t1
    dt_next = [res.dt_next] if path == "scalar" else res.dt_next.tolist()
    assert len(dt_next) == nb(path) and all(close(v, 3.0) for v in dt_next)


# --- batches whose trajectories differ ---------------------------------------------------------------------------


def single(script: Script, **kw: object) -> tuple[LoopResult, StubStepper]:
    stub = StubStepper(script)
    res, _ = run_loop(stub, "scalar", loop_options(**kw))
    return res, stub


def assert_rows_match_single_runs(scripts: list[Script], res: LoopResult, stub: StubStepper, **kw: object) -> None:
    for b, script in enumerate(scripts):
        one, one_stub = single(script, **kw)
        assert res.status[b] == one.status[0], b
        if one.fail_info[0] is None:
            assert res.fail_info[b] is None
        else:
            got = res.fail_info[b]
            assert got is not None and close(got[0], one.fail_info[0][0]) and close(got[1], one.fail_info[0][1]), b
        n = len(one_stub.log)  # the batch keeps stepping a finished row: compare the row's own attempts
        for (t, dt), (tb, dtb) in zip(one_stub.attempts(), stub.attempts(b)[:n], strict=True):
            assert close(t, tb) and close(dt, dtb), b
        if kw.get("saveat") is not None:
            assert torch.allclose(res.u[:, b], one.u[:, 0], rtol=REL, atol=0, equal_nan=True), b


def test_batch_trajectories_finish_independently() -> None:
    save = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    atol = torch.tensor([[1e-2], [1e-4], [1e-6]], dtype=F64)
    stub = StubStepper(Script(err_scale=1.0))
    res, stats = run_loop(stub, "batch3", loop_options(atol=atol, rtol=1e-12, saveat=save, save_everystep=False))
    assert res.status == [SUCCESS] * 3
    assert torch.allclose(res.u[-1, :, 0], torch.full((3,), math.exp(-1.0), dtype=F64), rtol=1e-13)
    for b in range(3):
        one, one_stub = single(Script(err_scale=1.0), atol=atol[b:b + 1], rtol=1e-12, saveat=save,
                               save_everystep=False)
        n = len(one_stub.log)
        assert [x for x in one_stub.attempts()] == pytest.approx(stub.attempts(b)[:n], rel=REL)
        assert torch.allclose(res.u[:, b], one.u[:, 0], rtol=REL, atol=0)
    assert len(one_stub.log) > 2 * len(single(Script(err_scale=1.0), atol=atol[:1], rtol=1e-12)[1].log)


def test_batch_one_trajectory_fails_the_others_succeed() -> None:
    scripts = [Script(err_scale=1.0), Script(err_scale=1.0, nan_after=0.5), Script(err_scale=100.0)]
    kw = dict(saveat=torch.tensor([0.25, 0.75, 1.0], dtype=F64), save_everystep=False, **TOLS)
    stub = StubStepper(*scripts)
    res, _ = run_loop(stub, "batch3", loop_options(**kw))
    assert res.status == [SUCCESS, UNSTABLE, SUCCESS]
    assert res.fail_info[0] is None and res.fail_info[2] is None
    assert torch.allclose(res.u[-1, [0, 2], 0], torch.full((2,), math.exp(-1.0), dtype=F64), rtol=1e-13)
    assert bool(torch.isnan(res.u[1:, 1]).all()) and not bool(torch.isnan(res.u[0, 1]).any())
    assert_rows_match_single_runs(scripts, res, stub, **kw)


def test_batch_each_trajectory_gets_its_own_failure_code() -> None:
    # row 0 finishes; row 1's estimate never gets small (dtmin); row 2's steps shrink by 0.9 (sum < 1): MaxIters
    scripts = [Script(errors=(0.5,)), Script(errors=(1e10,)), Script(errors=(1.0,))]
    kw = dict(dt=0.1, dtmin=1e-6, maxiters=40)
    stub = StubStepper(*scripts)
    res, stats = run_loop(stub, "batch3", loop_options(**kw))
    assert res.status == [SUCCESS, DTMIN, MAXITERS]
    assert stats.nloop == 40
    info = res.fail_info[2]
    assert info is not None and info[0] < 0.31
    assert_rows_match_single_runs(scripts, res, stub, **kw)


def test_batch_fixed_steps_each_trajectory_gets_its_own_failure_code() -> None:
    scripts = [Script(err_scale=0.0), Script(err_scale=0.0, fail_calls=(2,)), Script(err_scale=0.0, nan_after=0.5)]
    kw = dict(adaptive=False, dt=0.3)
    stub = StubStepper(*scripts)
    res, stats = run_loop(stub, "batch3", loop_options(**kw))
    assert res.status == [SUCCESS, CONVFAIL, UNSTABLE]
    assert stats.naccept == 4 + 2 + 1 and stats.nreject == 2
    assert res.t[-1].item() == 1.0 and res.u[-1, 0, 0].item() == pytest.approx(math.exp(-1.0), rel=1e-14)
    assert_rows_match_single_runs(scripts, res, stub, **kw)


def test_batch_tstops_each_trajectory_lands_on_them_as_alone() -> None:
    scripts = [Script(errors=(1e-6,)), Script(err_scale=1.0), Script(errors=(1e-9, 2e-6, 5e-7, 1e-9))]
    kw = dict(**TOLS, tstops=[0.123, 0.5, 0.75])
    kw["atol"] = torch.full((3, 1), 1e-6, dtype=F64)
    stub = StubStepper(*scripts)
    res, _ = run_loop(stub, "batch3", loop_options(**kw))
    assert res.status == [SUCCESS] * 3
    for b in range(3):  # each row has a step ending on each stop
        ends = [t + dt for t, dt in stub.attempts(b)]
        assert all(any(close(e, s) for e in ends) for s in (0.123, 0.5, 0.75)), b
    kw["atol"] = TOLS["atol"]
    assert_rows_match_single_runs(scripts, res, stub, **kw)


@pytest.mark.parametrize("bsz", [1, 3])
def test_huge_finite_states_are_not_taken_for_overflow(bsz: int) -> None:
    """Finiteness is tested per element on both loops: a state whose sum overflows (2 x 1e308) is still finite
    (the scalar loop summed the state before and failed such a solve as Unstable)."""
    u0 = torch.full((bsz, 2) if bsz > 1 else (2,), 1e308, dtype=F64)
    prob = ps.ODEProblem(lambda t, u, p: -1e-3 * u, u0, (0.0, 1.0), batched=bsz > 1)
    sol = ps.solve(prob, ps.Tsit5())
    assert sol.retcodes == (SUCCESS,) * bsz
    assert float(sol.u[-1].flatten()[0]) == pytest.approx(1e308 * math.exp(-1e-3), rel=1e-6)


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp5(), ps.RadauIIA5(), ps.FBDF()],
                         ids=lambda a: a.name)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("tspan", [(0.0, 6.3), (6.3, 0.1)])
def test_float32_save_times_at_the_ends_of_tspan_are_saved(alg: ps.Algorithm, batched: bool,
                                                              tspan: tuple[float, float]) -> None:
    """float32(6.3) lies past 6.3: a save time at tspan's end, held in the state's dtype, is still saved (it came back
    NaN with Success on the single-trajectory and BDF loops), and equals the float64 solve's value to float32
    accuracy."""
    def f(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x, v = u[..., 0], u[..., 1]
        return torch.stack((v, (1 - x**2) * v - x), dim=-1)

    out = []
    for dtype in (torch.float32, F64):
        u0 = torch.tensor([2.0, 0.0], dtype=dtype)
        u0 = u0.repeat(2, 1) if batched else u0
        sol = ps.solve(ps.ODEProblem(f, u0, tspan, batched=batched), alg, saveat=[tspan[0], 1.1, tspan[1]],
                       rtol=1e-5, atol=1e-7)
        assert sol.retcode is SUCCESS
        out.append(sol.u.to(F64))
    assert bool(torch.isfinite(out[0]).all())
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=5e-3)
