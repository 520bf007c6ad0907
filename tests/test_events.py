"""Events (issue 18, part "events"): ContinuousCallback / DiscreteCallback / CallbackSet through solve on the native
engine: event times against analytic values (levels, zeros, both directions, forward and reverse time), affect
(bouncing ball), terminal events and what is saved, several events in one step, batches against single solves,
explicit / Rosenbrock / ESDIRK methods, gradients of event times, bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import pysciml as ps
from pysciml import CallbackSet, ContinuousCallback, DiscreteCallback, InputError, ReturnCode

F64 = torch.float64
ALGS = [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()]
SLOW = pytest.mark.exhaustive  # kept out of the default run (its budget); the same checks run there on other methods


def some(*algs, slow=()):
    """``algs`` in the default run, ``slow`` ones exhaustive only."""
    return [*algs, *[pytest.param(a, marks=SLOW) for a in slow]]
TIGHT = {"rtol": 1e-9, "atol": 1e-11}
G = 9.81


def decay(t, u):
    return -u


def oscillator(t, u):  # x = cos t, v = -sin t from (1, 0)
    return torch.stack((u[1], -u[0]))


def ball(t, u):
    return torch.stack((u[1], torch.full_like(u[1], -G)))


def bounce(t, u):
    return torch.stack((u[0], -0.9 * u[1]))


def bounce_times(h0: float, n: int, e: float = 0.9) -> list[float]:
    """Analytic bounce times of a ball dropped from rest at height ``h0``, restitution ``e``."""
    t = math.sqrt(2 * h0 / G)
    v, out = G * t, [t]
    for _ in range(n - 1):
        v *= e
        t += 2 * v / G
        out.append(t)
    return out


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.name)
def test_terminal_level_crossing_of_exponential_decay(alg) -> None:
    """u' = -u from 1 reaches 0.5 at ln 2: retcode Terminated (a success), sol.t ends there at u = 0.5."""
    prob = ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 5.0))
    sol = ps.solve(prob, alg, **TIGHT, callback=ContinuousCallback(lambda t, u: u[0] - 0.5, terminal=True))
    assert sol.retcode is ReturnCode.Terminated and sol.success and bool(sol.retcode)
    assert ps.solve(prob, alg, **TIGHT, throw=True, callback=ContinuousCallback(lambda t, u: u[0] - 0.5,
                                                                               terminal=True)).success
    assert "Terminated" in sol.message
    assert abs(float(sol.t[-1]) - math.log(2)) < 1e-7
    assert abs(float(sol.t_events[0][0]) - math.log(2)) < 1e-7
    assert abs(float(sol.u[-1, 0]) - 0.5) < 1e-7
    assert sol.u_events[0].shape == (1, 1)
    assert float(sol(torch.tensor(0.5 * math.log(2)))[0]) == pytest.approx(2 ** -0.5, abs=1e-7)


def test_zeros_of_the_harmonic_oscillator_by_direction() -> None:
    """x = cos t crosses zero downward at pi/2, 5pi/2 and upward at 3pi/2, 7pi/2 (a CallbackSet: one callback per
    direction); recording events do not cut steps, so the solve runs to t1 with Success."""
    prob = ps.ODEProblem(oscillator, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 12.0))
    directions = {"down": [0.5, 2.5], "up": [1.5, 3.5], "both": [0.5, 1.5, 2.5, 3.5]}
    cbs = CallbackSet(*[ContinuousCallback(lambda t, u: u[0], direction=d) for d in directions])
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, callback=cbs)
    assert sol.retcode is ReturnCode.Success and float(sol.t[-1]) == 12.0
    for k, expected in enumerate(directions.values()):
        times = sol.t_events[k]
        assert times.shape == (len(expected),)
        assert torch.allclose(times, torch.tensor(expected, dtype=F64) * math.pi, atol=1e-8)
        assert torch.allclose(sol.u_events[k][:, 0], torch.zeros(len(expected), dtype=F64), atol=1e-8)


@pytest.mark.parametrize("alg", some(ps.Tsit5(), slow=(ps.Rodas5P(), ps.KenCarp4())), ids=lambda a: a.name)
def test_reverse_time_linear_motion(alg) -> None:
    """x' = 2 backwards from t = 0: x = 2t reaches -3 at t = -1.5, going down in the direction of integration."""
    prob = ps.ODEProblem(lambda t, u: torch.full_like(u, 2.0), torch.tensor([0.0], dtype=F64), (0.0, -10.0))
    cond = lambda t, u: u[0] + 3.0  # noqa: E731
    down = ps.solve(prob, alg, **TIGHT, callback=ContinuousCallback(cond, direction="down", terminal=True))
    assert down.retcode is ReturnCode.Terminated
    assert abs(float(down.t[-1]) + 1.5) < 1e-10
    up = ps.solve(prob, alg, **TIGHT, callback=ContinuousCallback(cond, direction="up", terminal=True))
    assert up.retcode is ReturnCode.Success and float(up.t[-1]) == -10.0 and up.t_events[0].numel() == 0


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P()], ids=lambda a: a.name)
def test_bouncing_ball_bounce_times(alg) -> None:
    """Restitution 0.9: the bounce times match the analytic ones; the output holds the states just before
    (v < 0) and just after (v > 0) each bounce at the same time."""
    prob = ps.ODEProblem(ball, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 3.0))
    cb = ContinuousCallback(lambda t, u: u[0], bounce, direction="down")
    sol = ps.solve(prob, alg, rtol=1e-10, atol=1e-12, callback=cb)
    expected = torch.tensor(bounce_times(1.0, 4), dtype=F64)
    assert sol.retcode is ReturnCode.Success
    assert torch.allclose(sol.t_events[0], expected, atol=1e-8)
    first = int((sol.t == sol.t_events[0][0]).nonzero()[0])
    assert float(sol.t[first + 1]) == float(sol.t[first])
    assert float(sol.u[first, 1]) < 0 < float(sol.u[first + 1, 1])
    assert float(sol.u[first + 1, 1]) == pytest.approx(-0.9 * float(sol.u[first, 1]), rel=1e-12)
    assert float(sol.u[:, 0].min()) > -1e-8  # never through the floor


def test_save_positions_off_and_saveat_with_a_terminal_event() -> None:
    """save_positions=(False, False) keeps the event out of every-step output; with saveat, a terminal event ends
    sol.t: the save times before it, then the event."""
    prob = ps.ODEProblem(ball, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 3.0))
    cb = ContinuousCallback(lambda t, u: u[0], bounce, direction="down", save_positions=(False, False))
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, callback=cb)
    assert not bool(torch.isin(sol.t, sol.t_events[0]).any())
    prob = ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 5.0))
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, saveat=0.25, callback=ContinuousCallback(lambda t, u: u[0] - 0.5,
                                                                                         terminal=True))
    assert torch.allclose(sol.t[:-1], torch.tensor([0.0, 0.25, 0.5], dtype=F64))
    assert abs(float(sol.t[-1]) - math.log(2)) < 1e-8
    assert torch.allclose(sol.u[:, 0], torch.exp(-sol.t), atol=1e-8)


def test_discrete_callback_at_a_tstop_and_terminal() -> None:
    """A kick u += 1 at t = 1 (a tstop, SciML's idiom): u(2) = (e^-1 + 1) e^-1. A terminal DiscreteCallback ends
    the solve at the end of the first step where it holds."""
    prob = ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 2.0))
    kick = DiscreteCallback(lambda t, u: bool(t == 1.0), lambda t, u: u + 1.0)
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, tstops=[1.0], callback=kick)
    assert abs(float(sol.u[-1, 0]) - (math.exp(-1) + 1) * math.exp(-1)) < 1e-8
    assert sol.t_events[0].tolist() == [1.0]
    stop = DiscreteCallback(lambda t, u: bool(u[0] < 0.5), terminal=True)
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, callback=stop)
    assert sol.retcode is ReturnCode.Terminated
    assert float(sol.u[-1, 0]) < 0.5 < float(sol.u[-2, 0]) and float(sol.t[-1]) > math.log(2)


def test_several_events_in_one_step_earliest_wins() -> None:
    """One fixed step of 1 on u' = -u passes u = 0.6 (t = ln 5/3) and u = 0.5 (t = ln 2): a vector condition ends at
    the earlier; a recording event before a terminal one is recorded, one after it is not."""
    prob = ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 3.0))
    fixed = {"adaptive": False, "dt": 1.0}
    both = ContinuousCallback(lambda t, u: torch.stack((u[0] - 0.5, u[0] - 0.6)), terminal=True)
    sol = ps.solve(prob, ps.Tsit5(), **fixed, callback=both)
    assert sol.stats.naccept == 1 and sol.t_events[0].shape == (1,)
    assert abs(float(sol.t_events[0][0]) - math.log(5 / 3)) < 1e-3
    early_record = CallbackSet(ContinuousCallback(lambda t, u: u[0] - 0.6),
                               ContinuousCallback(lambda t, u: u[0] - 0.5, terminal=True))
    sol = ps.solve(prob, ps.Tsit5(), **fixed, callback=early_record)
    assert sol.t_events[0].shape == (1,) and sol.t_events[1].shape == (1,)
    late_record = CallbackSet(ContinuousCallback(lambda t, u: u[0] - 0.5),
                              ContinuousCallback(lambda t, u: u[0] - 0.6, terminal=True))
    sol = ps.solve(prob, ps.Tsit5(), **fixed, callback=late_record)
    assert sol.t_events[0].numel() == 0 and abs(float(sol.t[-1]) - math.log(5 / 3)) < 1e-3


@pytest.mark.parametrize("alg", some(ps.Tsit5(), slow=(ps.Rodas5P(),)), ids=lambda a: a.name)
def test_batch_each_trajectory_stops_at_its_own_event(alg) -> None:
    """Decays from 1, 2, 4 reach 0.5 at ln 2, ln 4, ln 8: each trajectory terminates there, its later save times
    stay NaN, and every number equals the single-trajectory solve's."""
    starts = [1.0, 2.0, 4.0]
    save = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    cb = ContinuousCallback(lambda t, u: u[..., 0] - 0.5, terminal=True)
    prob = ps.ODEProblem(decay, torch.tensor(starts, dtype=F64)[:, None], (0.0, 5.0), batched=True)
    sol = ps.solve(prob, alg, **TIGHT, saveat=save, callback=cb)
    assert sol.retcodes == (ReturnCode.Terminated,) * 3 and sol.retcode is ReturnCode.Terminated
    for b, a in enumerate(starts):
        t_e = float(sol.t_events[0][b][0])
        assert abs(t_e - math.log(a / 0.5)) < 1e-7
        after = torch.tensor(save, dtype=F64) > t_e
        assert bool(torch.isnan(sol.u[after, b, 0]).all()) and not bool(torch.isnan(sol.u[~after, b, 0]).any())
        one = ps.solve(ps.ODEProblem(decay, torch.tensor([a], dtype=F64), (0.0, 5.0)), alg, **TIGHT, saveat=save,
                       callback=ContinuousCallback(lambda t, u: u[0] - 0.5, terminal=True))
        assert float(one.t_events[0][0]) == pytest.approx(t_e, abs=1e-12)
        assert torch.allclose(one.u[:-1, 0], sol.u[~after, b, 0], atol=1e-12, rtol=0)


def test_batch_bouncing_balls_match_single_solves() -> None:
    """Balls dropped from 1, 2 and 0.5: each bounces at its own analytic times (affect per trajectory, the
    stepper restarted for those rows only); the batch equals single solves."""
    heights = [1.0, 2.0, 0.5]
    u0 = torch.tensor([[h, 0.0] for h in heights], dtype=F64)

    def ball_b(t, u):
        return torch.stack((u[:, 1], torch.full_like(u[:, 1], -G)), dim=1)

    cb = ContinuousCallback(lambda t, u: u[:, 0], lambda t, u: torch.stack((u[:, 0], -0.9 * u[:, 1]), dim=1),
                            direction="down")
    save = torch.linspace(0.0, 2.0, 9, dtype=F64)
    sol = ps.solve(ps.ODEProblem(ball_b, u0, (0.0, 2.0), batched=True), ps.Tsit5(), rtol=1e-10, atol=1e-12,
                   saveat=save, callback=cb)
    for b, h in enumerate(heights):
        times = sol.t_events[0][b]
        assert torch.allclose(times, torch.tensor(bounce_times(h, times.numel()), dtype=F64), atol=1e-8)
        assert times.numel() >= 2
        one = ps.solve(ps.ODEProblem(ball, u0[b], (0.0, 2.0)), ps.Tsit5(), rtol=1e-10, atol=1e-12, saveat=save,
                       callback=ContinuousCallback(lambda t, u: u[0], bounce, direction="down"))
        assert torch.allclose(one.t_events[0], times, atol=1e-12, rtol=0)
        assert torch.allclose(one.u, sol.u[:, b], atol=1e-10, rtol=0)


@pytest.mark.parametrize("alg", some(ps.Tsit5(), ps.Rodas5P(), slow=(ps.KenCarp4(),)), ids=lambda a: a.name)
def test_event_time_gradient_matches_analytic(alg) -> None:
    """u' = -k u from a reaches c at t_e = ln(a/c)/k: dt_e/da = 1/(a k), dt_e/dk = -ln(a/c)/k^2 (implicit function
    theorem through the steps); the state at the event, c, does not move: its gradient is 0."""
    a = torch.tensor([2.0], dtype=F64, requires_grad=True)
    k = torch.tensor(1.5, dtype=F64, requires_grad=True)
    prob = ps.ODEProblem(lambda t, u, p: -p * u, a, (0.0, 5.0), k)
    sol = ps.solve(prob, alg, **TIGHT, callback=ContinuousCallback(lambda t, u: u[0] - 0.5, terminal=True))
    t_e = sol.t_events[0][0]
    assert float(t_e.detach()) == float(sol.t[-1])  # the gradient is attached, the located value kept
    ga, gk = torch.autograd.grad(t_e, (a, k), retain_graph=True)
    assert float(ga) == pytest.approx(1 / 3.0, abs=1e-6)
    assert float(gk) == pytest.approx(-math.log(4) / 1.5**2, abs=1e-6)
    da, dk = torch.autograd.grad(sol.u[-1, 0], (a, k))
    assert abs(float(da)) < 1e-6 and abs(float(dk)) < 1e-6


@SLOW
def test_event_time_gradient_matches_finite_differences_on_van_der_pol() -> None:
    """Van der Pol (mu as a parameter): the first time x crosses -1 downward; its gradient with respect to x0 and
    mu against central differences of the event time."""
    def vdp(t, u, p):
        return torch.stack((u[1], p * (1 - u[0] ** 2) * u[1] - u[0]))

    cb = ContinuousCallback(lambda t, u: u[0] + 1.0, direction="down", terminal=True)

    def t_event(u0: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        sol = ps.solve(ps.ODEProblem(vdp, u0, (0.0, 10.0), mu), ps.Tsit5(), rtol=1e-11, atol=1e-13, callback=cb)
        return sol.t_events[0][0]

    u0 = torch.tensor([2.0, 0.0], dtype=F64, requires_grad=True)
    mu = torch.tensor(1.0, dtype=F64, requires_grad=True)
    gu, gm = torch.autograd.grad(t_event(u0, mu), (u0, mu))
    h = 1e-5
    with torch.no_grad():
        fd_x0 = (t_event(u0 + torch.tensor([h, 0.0], dtype=F64), mu) - t_event(u0 - torch.tensor([h, 0.0], dtype=F64),
                                                                                 mu)) / (2 * h)
        fd_mu = (t_event(u0, mu + h) - t_event(u0, mu - h)) / (2 * h)
    assert float(gu[0]) == pytest.approx(float(fd_x0), rel=1e-5, abs=1e-6)
    assert float(gm) == pytest.approx(float(fd_mu), rel=1e-5, abs=1e-6)


def test_compile_true_with_callbacks_runs_eagerly_after_a_warning() -> None:
    prob = ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 5.0))
    cb = ContinuousCallback(lambda t, u: u[0] - 0.5, terminal=True)
    with pytest.warns(RuntimeWarning, match="callbacks run on the eager loop"):
        sol = ps.solve(prob, ps.Tsit5(), **TIGHT, callback=cb, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eager = ps.solve(prob, ps.Tsit5(), **TIGHT, callback=cb)
    assert torch.equal(sol.t, eager.t) and torch.equal(sol.u, eager.u)


def test_no_callback_leaves_event_fields_empty() -> None:
    sol = ps.solve(ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 1.0)), ps.Tsit5())
    assert sol.t_events is None and sol.u_events is None and sol.retcode is ReturnCode.Success


def test_bad_input() -> None:
    cond = lambda t, u: u[0]  # noqa: E731
    with pytest.raises(InputError, match="direction"):
        ContinuousCallback(cond, direction="sideways")
    with pytest.raises(InputError, match="affect"):
        ContinuousCallback(cond, affect=3)
    with pytest.raises(InputError, match="condition"):
        ContinuousCallback(lambda t: t)
    with pytest.raises(InputError, match="rootfind_tol"):
        ContinuousCallback(cond, rootfind_tol=-1.0)
    with pytest.raises(InputError, match="save_positions"):
        ContinuousCallback(cond, save_positions=(True,))
    with pytest.raises(InputError, match="terminal"):
        ContinuousCallback(cond, terminal="yes")
    with pytest.raises(InputError, match="terminal=True"):
        DiscreteCallback(cond)
    with pytest.raises(InputError, match="CallbackSet takes"):
        CallbackSet(cond)
    prob = ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 1.0))
    with pytest.raises(InputError, match="callback must be"):
        ps.solve(prob, ps.Tsit5(), callback=42)
    with pytest.raises(InputError, match="callback= runs on the native engine"):
        ps.solve(prob.remake(u0=prob.u0.clone().requires_grad_()), ps.Tsit5(), saveat=[1.0],
                 sensealg=ps.InterpolatingAdjoint(), callback=ContinuousCallback(cond))
    with pytest.raises(InputError, match="callback= runs on the native engine"):
        ps.solve(prob, ps.Tsit5(), backend="julia", callback=ContinuousCallback(cond))
    with pytest.raises(InputError, match="scalar or a 1-D"):
        ps.solve(prob, ps.Tsit5(), callback=ContinuousCallback(lambda t, u: u[None, None]))
    with pytest.raises(InputError, match="affect.*must return the new state"):
        ps.solve(prob, ps.Tsit5(), callback=ContinuousCallback(lambda t, u: u[0] - 0.5, lambda t, u: u[0]))


def test_batch_discrete_kick_and_float32() -> None:
    """A DiscreteCallback in a batch: a kick u += 1 at the tstop t = 1 for every trajectory (u(2) = (u0 e^-1 + 1)
    e^-1); a terminal one only for the trajectory where it holds. float32 in, float32 event times out."""
    u0 = torch.tensor([[1.0], [3.0]], dtype=F64)
    prob = ps.ODEProblem(decay, u0, (0.0, 2.0), batched=True)
    kick = DiscreteCallback(lambda t, u: t == 1.0, lambda t, u: u + 1.0)
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, tstops=[1.0], callback=kick)
    expected = (u0[:, 0] * math.exp(-1) + 1) * math.exp(-1)
    assert torch.allclose(sol.u[-1, :, 0], expected, atol=1e-8)
    assert [ts.tolist() for ts in sol.t_events[0]] == [[1.0], [1.0]]
    stop = DiscreteCallback(lambda t, u: u[:, 0] > 2.0, terminal=True)  # only the second trajectory, at once
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, callback=stop)
    assert sol.retcodes == (ReturnCode.Success, ReturnCode.Terminated)
    assert bool(torch.isnan(sol.u[-1, 1]).all()) and float(sol.u[-1, 0, 0]) == pytest.approx(math.exp(-2), abs=1e-8)
    p32 = ps.ODEProblem(decay, torch.tensor([1.0]), (0.0, 5.0))
    sol = ps.solve(p32, ps.Tsit5(), rtol=1e-5, atol=1e-7,
                   callback=ContinuousCallback(lambda t, u: u[0] - 0.5, terminal=True, rootfind_tol=1e-6))
    assert sol.t_events[0].dtype == torch.float32 and sol.u.dtype == torch.float32
    assert abs(float(sol.t_events[0][0]) - math.log(2)) < 1e-4


@SLOW  # matplotlib's import is most of its 3 s
def test_bouncing_ball_example(tmp_path) -> None:
    """examples/bouncing_ball.py runs: every analytic bounce found, within 1e-10."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "bouncing_ball.py"
    spec = importlib.util.spec_from_file_location("bouncing_ball", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(out=tmp_path / "ball.png", t_end=3.0)
    assert out["bounces"] == out["analytic"] == 4 and out["max_error"] < 1e-10
    assert (tmp_path / "ball.png").stat().st_size > 0


def test_dense_output_ends_at_a_terminal_event() -> None:
    prob = ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 5.0))
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, callback=ContinuousCallback(lambda t, u: u[0] - 0.5, terminal=True))
    assert float(sol(sol.t[-1])[0]) == pytest.approx(0.5, abs=1e-8)
    with pytest.raises(InputError, match="terminal event ended it"):
        sol(torch.tensor(1.0, dtype=F64))


@SLOW  # about 5 s on the shared machine (autodiff Jacobians of the implicit part)
def test_imex_split_problem_bounces() -> None:
    """A SplitODEProblem (gravity explicit, a stiff decay of a third component implicit) with KenCarp4: affect and
    restart of the ARK stepper's two parts; the bounce times are the analytic ones."""
    def f_implicit(t, u):
        return torch.stack((torch.zeros_like(u[0]), torch.zeros_like(u[1]), -50.0 * u[2]))

    def f_explicit(t, u):
        return torch.stack((u[1], torch.full_like(u[1], -G), torch.zeros_like(u[2])))

    prob = ps.SplitODEProblem(f_implicit, f_explicit, torch.tensor([1.0, 0.0, 1.0], dtype=F64), (0.0, 1.5))
    cb = ContinuousCallback(lambda t, u: u[0], lambda t, u: torch.stack((u[0], -0.9 * u[1], u[2])),
                            direction="down")
    sol = ps.solve(prob, ps.KenCarp4(), rtol=1e-6, atol=1e-8, callback=cb)  # the fall is a quadratic: exact
    assert torch.allclose(sol.t_events[0], torch.tensor(bounce_times(1.0, 2), dtype=F64), atol=1e-10)
    assert abs(float(sol.u[-1, 2])) < 1e-6


def test_batch_terminal_event_time_gradients() -> None:
    """In a batch each trajectory's terminal event time carries its own implicit-function-theorem gradient:
    t_e,b = ln(a_b / c) / k, so d(sum t_e)/da_b = 1/(a_b k) and d(sum t_e)/dk = -sum ln(a_b / c) / k^2."""
    a = torch.tensor([[1.0], [2.0], [4.0]], dtype=F64, requires_grad=True)
    k = torch.tensor(1.5, dtype=F64, requires_grad=True)
    prob = ps.ODEProblem(lambda t, u, p: -p * u, a, (0.0, 5.0), k, batched=True)
    sol = ps.solve(prob, ps.Tsit5(), **TIGHT, saveat=[0.0, 0.5],
                   callback=ContinuousCallback(lambda t, u: u[:, 0] - 0.5, terminal=True))
    t_e = torch.stack([ts[0] for ts in sol.t_events[0]])
    ga, gk = torch.autograd.grad(t_e.sum(), (a, k))
    a0 = a.detach()[:, 0]
    assert torch.allclose(ga[:, 0], 1 / (a0 * 1.5), atol=1e-7)
    assert float(gk) == pytest.approx(float(-torch.log(a0 / 0.5).sum() / 1.5**2), abs=1e-6)
