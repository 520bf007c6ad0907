"""dtmax, dtmin, tstops and controller= through ``solve`` (real methods, tiny problems), single and batched, and
bounds on accepted steps and f calls: bands of +-20% around the values measured when the tests were written
(torch 2.13, CPU, float64), not orders-of-magnitude slack."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from helpers import nonlinear_problem

import pysciml as ps
from pysciml.native import default_controller

F64 = torch.float64
TOL = dict(rtol=1e-6, atol=1e-6)


def decay(u0: torch.Tensor, tspan: tuple[float, float] = (0.0, 1.0), batched: bool = False) -> ps.ODEProblem:
    return ps.ODEProblem(lambda t, u, p: -u, u0, tspan, batched=batched)


def one() -> torch.Tensor:
    return torch.tensor([1.0], dtype=F64)


def three() -> torch.Tensor:
    return torch.ones(3, 1, dtype=F64)


def within(value: int, measured: int, band: float = 0.2) -> bool:
    return (1 - band) * measured <= value <= (1 + band) * measured


# --- work bounds ---------------------------------------------------------------------------------------------------

# (accepted steps, f calls) measured at rtol = atol = 1e-6: u' = -u on (0, 1), and helpers.nonlinear_problem
WORK = {
    "decay": {"Tsit5": (6, 38), "DP5": (6, 38), "Vern7": (5, 77), "BS3": (34, 104), "Rodas5P": (7, 65),
              "KenCarp4": (10, 61)},
    "nonlinear": {"Tsit5": (22, 140), "DP5": (23, 152), "Vern7": (19, 287), "BS3": (174, 524),
                  "Rodas5P": (42, 380), "KenCarp4": (38, 427)},
}
MAX_REJECT = {"decay": 0, "nonlinear": 4}  # measured: none on u' = -u, at most 2 (DP5) on the nonlinear problem


@pytest.mark.parametrize("problem", WORK)
@pytest.mark.parametrize("alg", ["Tsit5", "DP5", "Vern7", "BS3", "Rodas5P", "KenCarp4"])
def test_accepted_steps_and_f_calls_within_measured_band(problem: str, alg: str) -> None:
    prob = decay(one()) if problem == "decay" else nonlinear_problem()[0]
    sol = ps.solve(prob, getattr(ps, alg)(), **TOL)
    assert sol.retcode is ps.ReturnCode.Success
    steps, nf = WORK[problem][alg]
    assert within(sol.stats.naccept, steps), (sol.stats.naccept, steps)
    assert within(sol.stats.nf, nf), (sol.stats.nf, nf)
    assert sol.stats.nreject <= MAX_REJECT[problem]


@pytest.mark.parametrize("alg", ["Tsit5", "Rodas5P", "KenCarp4"])
def test_batched_work_is_per_trajectory_work(alg: str) -> None:
    """A batch of three equal trajectories: three times the steps, the same number of (batched) f calls."""
    single = ps.solve(decay(one()), getattr(ps, alg)(), **TOL)
    batch = ps.solve(decay(three(), batched=True), getattr(ps, alg)(), **TOL)
    assert batch.retcodes == (ps.ReturnCode.Success,) * 3
    assert batch.stats.naccept == 3 * single.stats.naccept and batch.stats.nreject == 3 * single.stats.nreject
    assert batch.stats.nloop == single.stats.naccept + single.stats.nreject
    assert batch.stats.nf == single.stats.nf
    assert torch.allclose(batch.u[-1, :, 0], single.u[-1, 0].expand(3), rtol=1e-12, atol=0)


# --- dtmax ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["Tsit5", "Rodas5P", "KenCarp4"])
@pytest.mark.parametrize("tspan", [(0.0, 1.0), (1.0, 0.0)], ids=["forward", "backward"])
def test_dtmax_bounds_every_step(alg: str, tspan: tuple[float, float]) -> None:
    sol = ps.solve(decay(one(), tspan), getattr(ps, alg)(), dtmax=0.05, **TOL)
    assert sol.retcode is ps.ReturnCode.Success
    steps = torch.diff(sol.t).abs()
    assert float(steps.max()) <= 0.05 * (1 + 1e-12)
    assert 20 <= sol.stats.naccept <= 21  # without dtmax: 6 to 10 steps
    assert float(steps[1:-1].min()) >= 0.05 * (1 - 1e-12)  # the controller wants more: the steps sit on dtmax


@pytest.mark.parametrize("alg", ["Tsit5", "KenCarp4"])
def test_dtmax_bounds_every_step_batched(alg: str) -> None:
    single = ps.solve(decay(one()), getattr(ps, alg)(), dtmax=0.05, **TOL)
    batch = ps.solve(decay(three(), batched=True), getattr(ps, alg)(), dtmax=0.05, **TOL)
    assert batch.retcodes == (ps.ReturnCode.Success,) * 3
    assert batch.stats.naccept == 3 * single.stats.naccept
    assert 3 * 20 <= batch.stats.naccept <= 3 * 21
    assert torch.allclose(batch.u[-1, :, 0], single.u[-1, 0].expand(3), rtol=1e-12, atol=0)


def test_dtmax_bounds_a_given_first_step() -> None:
    sol = ps.solve(decay(one()), ps.Tsit5(), dt=0.5, dtmax=0.1, **TOL)
    assert float(sol.t[1]) == pytest.approx(0.1, rel=1e-14)
    assert float(torch.diff(sol.t).max()) <= 0.1 * (1 + 1e-12)


# --- dtmin ---------------------------------------------------------------------------------------------------------


def blowup(u0: torch.Tensor, t1: float = 2.0, batched: bool = False) -> ps.ODEProblem:
    """u' = u^2: u = u0 / (1 - u0 t), infinite at t = 1 / u0."""
    return ps.ODEProblem(lambda t, u, p: u * u, u0, (0.0, t1), batched=batched)


# measured (dtmin = 1e-3): Tsit5 fails at t = 0.9951 after 27 accepted steps, KenCarp4 at 0.99566 after 29,
# Rodas5P at 0.98948 after 50 (it never rejects here: dtmin bounds accepted steps' proposals too, as in
# OrdinaryDiffEq; it used to accept 352 steps down to dt ~ 2e-16); with dtmin = 0 they go on to t = 1 +- 2e-5
@pytest.mark.parametrize(("alg", "steps"), [("Tsit5", 27), ("KenCarp4", 29), ("Rodas5P", 50)])
def test_dtmin_ends_the_solve_when_a_step_would_need_less(alg: str, steps: int) -> None:
    sol = ps.solve(blowup(one()), getattr(ps, alg)(), dtmin=1e-3, **TOL)
    assert sol.retcode is ps.ReturnCode.DtLessThanMin
    assert within(sol.stats.naccept, steps)
    assert 0.985 < float(sol.t[-1]) < 0.999  # the step needed near t = 1 - dtmin is about dtmin
    assert "DtLessThanMin" in sol.message
    free = ps.solve(blowup(one()), getattr(ps, alg)(), **TOL)
    assert free.retcode is ps.ReturnCode.DtLessThanMin
    assert free.stats.naccept > 4 * sol.stats.naccept and float(free.t[-1]) > 0.9999


def test_dtmin_below_every_step_changes_nothing() -> None:
    free = ps.solve(decay(one()), ps.Tsit5(), **TOL)
    bounded = ps.solve(decay(one()), ps.Tsit5(), dtmin=1e-3, **TOL)
    assert bounded.retcode is ps.ReturnCode.Success
    assert torch.equal(free.t, bounded.t) and torch.equal(free.u, bounded.u)


def test_dtmin_batched_fails_only_the_trajectory_that_needs_it() -> None:
    u0 = torch.tensor([[1.0], [-1.0], [0.5]], dtype=F64)  # blow-up at t = 1; no blow-up; blow-up at t = 2
    sol = ps.solve(blowup(u0, t1=1.5, batched=True), ps.Tsit5(), dtmin=1e-3, **TOL)
    assert sol.retcodes == (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Success, ps.ReturnCode.Success)
    assert "trajectory 0: DtLessThanMin" in sol.message
    assert sol.u[-1, 1, 0].item() == pytest.approx(-1 / 2.5, rel=1e-5)
    assert sol.u[-1, 2, 0].item() == pytest.approx(0.5 / 0.25, rel=1e-5)
    assert math.isnan(sol.u[-1, 0, 0].item())  # t1 never reached
    for b in (1, 2):  # the surviving trajectories give the numbers of their own solves
        alone = ps.solve(blowup(u0[b], t1=1.5), ps.Tsit5(), dtmin=1e-3, **TOL)
        assert sol.u[-1, b, 0].item() == pytest.approx(alone.u[-1, 0].item(), rel=1e-12)
    alone = ps.solve(blowup(u0[0], t1=1.5), ps.Tsit5(), dtmin=1e-3, **TOL)
    assert alone.retcode is ps.ReturnCode.DtLessThanMin
    assert f"at t={float(alone.t[-1]):.6g}" in sol.message  # the batch fails where the lone solve does


# --- tstops --------------------------------------------------------------------------------------------------------

KINKS = (0.3, 0.7123)


def kinked() -> tuple[ps.ODEProblem, object]:
    """u' = -u + 10 (t - a)_+ - 10 (t - b)_+: f continuous, its t-derivative jumps at a and b."""
    a, b = KINKS

    def f(t, u, p):
        return -u + 10 * torch.relu(t - a) - 10 * torch.relu(t - b)

    def ramp(t: float, c: float) -> float:  # v' = -v + 10 (t - c)_+, v(0) = 0
        s = t - c
        return 10 * (s - 1 + math.exp(-s)) if s > 0 else 0.0

    def exact(t: float) -> float:
        return math.exp(-t) + ramp(t, a) - ramp(t, b)

    return ps.ODEProblem(f, one(), (0.0, 1.0)), exact


def max_error(sol: ps.ODESolution, exact) -> float:
    return max(abs(float(u[0]) - exact(float(t))) for t, u in zip(sol.t, sol.u, strict=True))


# measured at rtol = atol = 1e-6 with tstops: (accepted, max error); without them each takes 13-21 accepted and
# 12-23 rejected steps with errors 2e-5 to 1e-4
TSTOP_RUNS = {"Tsit5": (8, 3.7e-8), "Vern7": (6, 8.3e-11), "Rodas5P": (11, 1.9e-10), "KenCarp4": (13, 2.0e-7)}


@pytest.mark.parametrize("alg", TSTOP_RUNS)
def test_tstops_steps_land_on_them(alg: str) -> None:
    prob, exact = kinked()
    sol = ps.solve(prob, getattr(ps, alg)(), tstops=list(KINKS), **TOL)
    assert sol.retcode is ps.ReturnCode.Success
    times = sol.t.tolist()
    assert KINKS[0] in times and KINKS[1] in times  # exactly, not approximately
    steps, err = TSTOP_RUNS[alg]
    assert within(sol.stats.naccept, steps, band=0.25) and sol.stats.nreject <= 1
    assert max_error(sol, exact) <= 2 * err
    free = ps.solve(prob, getattr(ps, alg)(), **TOL)
    assert KINKS[0] not in free.t.tolist()
    assert free.stats.nreject >= 10 and max_error(free, exact) > 50 * err


def test_tstops_backward_and_as_a_tensor() -> None:
    prob = decay(one(), (1.0, 0.0))
    sol = ps.solve(prob, ps.Tsit5(), tstops=torch.tensor([0.7123, 0.3], dtype=F64), **TOL)
    assert sol.retcode is ps.ReturnCode.Success
    times = sol.t.tolist()
    assert 0.3 in times and 0.7123 in times
    assert times.index(0.7123) < times.index(0.3)  # visited in the direction of integration
    assert sol.u[-1, 0].item() == pytest.approx(math.e, rel=1e-5)


def test_tstops_on_a_smooth_problem_cost_at_most_one_step_each() -> None:
    free = ps.solve(decay(one()), ps.Tsit5(), **TOL)
    stops = [0.1, 0.2, 0.5]
    sol = ps.solve(decay(one()), ps.Tsit5(), tstops=stops, **TOL)
    assert all(s in sol.t.tolist() for s in stops)
    assert sol.stats.naccept <= free.stats.naccept + len(stops) and sol.stats.nreject == 0
    assert sol.u[-1, 0].item() == pytest.approx(math.exp(-1.0), rel=1e-6)


@pytest.mark.parametrize("alg", ["Tsit5", "Rodas5P", "KenCarp4"])
def test_tstops_in_a_batch_each_trajectory_as_alone(alg: str) -> None:
    prob, exact = kinked()
    u0 = torch.tensor([[1.0], [0.5], [2.0]], dtype=F64)
    def f_batch(t, u, p):  # t is (B,) in a batch
        return prob.f(t[:, None] if t.ndim else t, u, p)

    batch = ps.solve(ps.ODEProblem(f_batch, u0, (0.0, 1.0), batched=True), getattr(ps, alg)(), tstops=list(KINKS),
                     saveat=torch.linspace(0, 1, 11, dtype=F64), **TOL)
    assert batch.retcodes == (ps.ReturnCode.Success,) * 3
    for b in range(3):
        alone = ps.solve(ps.ODEProblem(prob.f, u0[b], (0.0, 1.0)), getattr(ps, alg)(), tstops=list(KINKS),
                         saveat=torch.linspace(0, 1, 11, dtype=F64), **TOL)
        # 1e-9: a batch and a single trajectory run MKL kernels of other shapes: 2.8e-10 apart on an AVX-512 machine
        torch.testing.assert_close(batch.u[:, b], alone.u, rtol=1e-9, atol=1e-14)
    _, exact1 = kinked()
    assert abs(float(batch.u[-1, 0, 0]) - exact1(1.0)) <= 2 * TSTOP_RUNS[alg][1] + 1e-7


def test_tstops_refused_where_they_cannot_be_honoured() -> None:
    with pytest.raises(ps.InputError, match="tstops"):
        ps.solve(decay(one()), ps.Tsit5(), adaptive=False, dt=0.1, tstops=[0.5])
    with pytest.raises(ps.InputError, match="outside"):
        ps.solve(decay(one()), ps.Tsit5(), tstops=[1.5])


# --- controller= ---------------------------------------------------------------------------------------------------

TSIT5 = default_controller(ps.Tsit5())  # beta1 = 0.17, beta2 = 0.04
# accepted steps measured from dt = 1e-6 (so growth is limited by qmax at first) on u' = -u and nonlinear_problem
CONTROLLERS = {
    "default": (None, 10, 27),
    "qmax=1.5": (dataclasses.replace(TSIT5, qmax=1.5), 33, 47),
    "I beta2=0": (ps.PIController(beta1=0.2, beta2=0.0), 9, 25),
    "gamma=0.5": (dataclasses.replace(TSIT5, gamma=0.5), 15, 53),
}


def ratios(sol: ps.ODESolution) -> torch.Tensor:
    """Ratios of consecutive accepted steps (the last one, cut to t1, left out)."""
    d = torch.diff(sol.t)
    return d[1:-1] / d[:-2]


@pytest.mark.parametrize("name", CONTROLLERS)
def test_controller_step_counts(name: str) -> None:
    ctrl, n_decay, n_nonlinear = CONTROLLERS[name]
    for prob, n in ((decay(one()), n_decay), (nonlinear_problem()[0], n_nonlinear)):
        sol = ps.solve(prob, ps.Tsit5(), dt=1e-6, controller=ctrl, **TOL)
        assert sol.retcode is ps.ReturnCode.Success
        assert within(sol.stats.naccept, n), (sol.stats.naccept, n)


def test_controller_qmax_bounds_step_growth() -> None:
    prob = decay(one())
    default = ps.solve(prob, ps.Tsit5(), dt=1e-6, **TOL)
    assert float(ratios(default).max()) == pytest.approx(10.0, rel=1e-9)  # the default qmax, reached from 1e-6
    for qmax in (1.5, 3.0):
        sol = ps.solve(prob, ps.Tsit5(), dt=1e-6, controller=dataclasses.replace(TSIT5, qmax=qmax), **TOL)
        assert float(ratios(sol).max()) == pytest.approx(qmax, rel=1e-9)
        assert sol.stats.naccept > default.stats.naccept
    assert ps.solve(prob, ps.Tsit5(), dt=1e-6, controller=dataclasses.replace(TSIT5, qmax=1.5),
                    **TOL).stats.naccept >= 3 * default.stats.naccept


def test_controller_default_is_the_algorithm_s_and_is_used() -> None:
    prob = nonlinear_problem()[0]
    implicit = ps.solve(prob, ps.Tsit5(), **TOL)
    explicit = ps.solve(prob, ps.Tsit5(), controller=TSIT5, **TOL)
    assert torch.equal(implicit.t, explicit.t)
    generic = ps.solve(prob, ps.Tsit5(), controller=ps.PIController(), **TOL)  # gains 0.14, 0.08 instead
    assert generic.t.shape != implicit.t.shape or not torch.equal(generic.t, implicit.t)


def test_integral_controller_ignores_the_stored_error() -> None:
    """With beta2 = 0 the previous error (and its initial value qoldinit) plays no part; with beta2 > 0 it does."""
    prob = nonlinear_problem()[0]
    sols = [ps.solve(prob, ps.Tsit5(), controller=ps.PIController(beta1=0.2, beta2=beta2, qoldinit=q), **TOL)
            for beta2 in (0.0, 0.04) for q in (1e-4, 0.5)]
    assert torch.equal(sols[0].t, sols[1].t)
    assert not torch.equal(sols[2].t[:3], sols[3].t[:3])


@pytest.mark.parametrize("name", CONTROLLERS)
def test_controller_batched_gives_the_single_trajectory_steps(name: str) -> None:
    ctrl = CONTROLLERS[name][0]
    single = ps.solve(decay(one()), ps.Tsit5(), dt=1e-6, controller=ctrl, **TOL)
    batch = ps.solve(decay(three(), batched=True), ps.Tsit5(), dt=1e-6, controller=ctrl, **TOL)
    assert batch.stats.naccept == 3 * single.stats.naccept and batch.stats.nf == single.stats.nf
    assert within(batch.stats.naccept // 3, CONTROLLERS[name][1])
    assert torch.allclose(batch.u[-1, :, 0], single.u[-1, 0].expand(3), rtol=1e-12, atol=0)
