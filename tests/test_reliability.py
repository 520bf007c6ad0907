"""Regression tests for answers that used to come back wrong while nothing said so (issue 10).

Each test names the failure it guards against: an estimator that cannot control the step (ROS3P), steps that no
longer move time, fixed steps that go unstable but stay finite, an ``f`` that writes into its input, a
finite-difference ``df/dt`` far too coarse at large ``t``, tolerances below what a method is for, and save-time
semantics that differed from SciML's.
"""

from __future__ import annotations

import math

import pytest
import torch

import pysciml as ps

F64 = torch.float64
ADAPTIVE = [ps.Tsit5(), ps.DP5(), ps.BS3(), ps.Vern7(), ps.Rosenbrock23(), ps.Rodas4(), ps.Rodas5P(), ps.KenCarp3(),
            ps.KenCarp4(), ps.KenCarp5(), ps.Kvaerno5()]


def decay(lam: float = -1.0, u0: float = 1.0, t1: float = 10.0, batch: int | None = None) -> ps.ODEProblem:
    u = torch.full((batch, 1) if batch else (1,), u0, dtype=F64)
    return ps.ODEProblem(lambda t, u, p: lam * u, u, (0.0, t1), batched=batch is not None)


def blowup(batch: int | None = None) -> ps.ODEProblem:
    """u' = u^2, u(0) = 1: u = 1/(1 - t) blows up at t = 1."""
    u = torch.ones((batch, 1) if batch else (1,), dtype=F64)
    return ps.ODEProblem(lambda t, u, p: u**2, u, (0.0, 2.0), batched=batch is not None)


# ------------------------------------------------------------------------------------------------ ROS3P
def test_ros3p_estimate_is_blind_on_linear_problems_so_adaptivity_is_refused():
    """Its published embedded formula has R_hat == R: on u' = -u at rtol 1e-12 the old adaptive run returned
    Success in 8 steps with relative error 53. Now adaptive use is refused, with the reason."""
    with pytest.raises(ps.InputError, match="same stability function"):
        ps.solve(decay(), ps.ROS3P(), rtol=1e-12, adaptive=True)
    with pytest.raises(ps.InputError, match=r"ROS3P\(\) is fixed-step only"):
        ps.solve(decay(), ps.ROS3P(), rtol=1e-12)
    sol = ps.solve(decay(), ps.ROS3P(), dt=0.01, adaptive=False)
    assert sol.retcode == ps.ReturnCode.Success
    assert abs(float(sol.u[-1, 0]) / math.exp(-10.0) - 1) < 1e-6  # third order at dt = 0.01: measured 1.2e-7


# ------------------------------------------------------------------------------------------------ time stops
@pytest.mark.parametrize("alg", ADAPTIVE, ids=lambda a: a.name)
def test_blowup_stops_where_time_stops_moving(alg):
    """Past the singularity of u' = u^2 the step falls below the resolution of t; the old loop kept accepting
    steps with t + dt == t (3,700-34,000 of them, u up to 1e154). Measured: 37-197 accepted steps."""
    sol = ps.solve(blowup(), alg)
    assert sol.retcode in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable), sol.message
    assert sol.stats.nloop < 600, sol.stats
    assert abs(float(sol.message.split("at t=")[1].split()[0]) - 1.0) < 5e-3
    assert bool(torch.isfinite(sol.u).all()) and float(sol.u.abs().max()) < 1e17
    assert len(set(sol.t.tolist())) == len(sol.t)  # every saved time is new


def test_blowup_stops_in_a_batch_too():
    sol = ps.solve(blowup(batch=3), ps.Rodas5P())
    assert all(c in (ps.ReturnCode.DtLessThanMin, ps.ReturnCode.Unstable) for c in sol.retcodes)
    assert sol.stats.nloop < 600


# ------------------------------------------------------------------------------------------------ fixed steps
@pytest.mark.parametrize("alg", [ps.RK4(), ps.Euler(), ps.Midpoint(), ps.Tsit5(), ps.BS3(), ps.DP5(), ps.Vern7()],
                         ids=lambda a: a.name)
@pytest.mark.parametrize("batch", [None, 3], ids=["single", "batch"])
def test_fixed_step_beyond_stability_is_unstable(alg, batch):
    """u' = -50 u with dt = 0.1 (dt * lambda = -5): RK4 used to return Success with 5e22 (exact 4e-44)."""
    sol = ps.solve(decay(-50.0, t1=2.0, batch=batch), alg, adaptive=False, dt=0.1)
    assert sol.retcode == ps.ReturnCode.Unstable, sol.message
    assert "stability region" in sol.message or "error estimate" in sol.message
    assert sol.stats.naccept <= 3 * 20  # noticed within a few checks, not at the end


def fast_decay(t, u, p):
    return -50.0 * u


@pytest.mark.parametrize("steps", [3, 4, 7])
@pytest.mark.parametrize("path", ["eager", "compiled step", "compiled loop"])
def test_a_short_fixed_grid_beyond_stability_is_unstable(steps, path):
    """The first check only records the increment, and the check ran every 4 steps: grids shorter than 12 steps
    returned an amplified solution as Success (Euler on u' = -50 u, dt = 0.25: 1.7e4 where the solution is 1.9e-22).
    The first steps are each checked now, so from 3 steps on the growth is confirmed: by the eager loop, the
    per-step compiled programs' loop (saving every step) and the whole-loop program (saving at fixed times)."""
    prob = ps.ODEProblem(fast_decay, torch.ones(2, dtype=F64), (0.0, 0.25 * steps))
    kw = {"compile": path != "eager"} | ({"saveat": [0.25 * steps]} if path == "compiled loop" else {})
    sol = ps.solve(prob, ps.Euler(), adaptive=False, dt=0.25, **kw)
    assert sol.retcode == ps.ReturnCode.Unstable, sol.message
    with pytest.warns(RuntimeWarning, match="stability region"):
        ps.odeint(lambda t, y: -50.0 * y, torch.ones(2, dtype=F64),
                  torch.linspace(0.0, 0.25 * steps, steps + 1, dtype=F64), method="euler")


@pytest.mark.parametrize("steps", [2, 3, 4, 7])
def test_a_short_stable_fixed_grid_is_not_flagged(steps):
    """The same short grids inside the stability interval (dt * lambda = -1.5 for Euler, -2 for RK4, which
    contracts but overshoots) or forced to grow (u' = -20 (u - exp(3 t))): no false alarm."""
    decaying = ps.ODEProblem(lambda t, u, p: -50.0 * u, torch.ones(2, dtype=F64), (0.0, 0.03 * steps))
    assert ps.solve(decaying, ps.Euler(), adaptive=False, dt=0.03).retcode == ps.ReturnCode.Success
    forced = ps.ODEProblem(lambda t, u, p: -20.0 * (u - torch.exp(3 * t)), torch.ones(1, dtype=F64),
                           (0.0, 0.1 * steps))
    assert ps.solve(forced, ps.RK4(), adaptive=False, dt=0.1).retcode == ps.ReturnCode.Success


@pytest.mark.parametrize("alg", [ps.Rodas5P(), ps.Rosenbrock23(), ps.KenCarp4(), ps.Kvaerno5()],
                         ids=lambda a: a.name)
def test_fixed_step_across_a_singularity_is_unstable(alg):
    """Fixed-step Rodas5P across t = 1 of u' = u^2 used to return Success with 4.9e32."""
    sol = ps.solve(blowup(), alg, adaptive=False, dt=0.1)
    assert sol.retcode in (ps.ReturnCode.Unstable, ps.ReturnCode.ConvergenceFailure), sol.message
    assert float(sol.message.split("at t=")[1].split()[0]) <= 1.2


@pytest.mark.parametrize("alg,dt", [(ps.RK4(), 0.5), (ps.Euler(), 0.01), (ps.Tsit5(), 1.0), (ps.BS3(), 1.0),
                                    (ps.Rodas5P(), 1.0), (ps.Rosenbrock23(), 1.0), (ps.KenCarp4(), 1.0)],
                         ids=lambda x: getattr(x, "name", str(x)))
def test_coarse_but_stable_fixed_steps_are_not_flagged(alg, dt):
    """A rotation with a step of up to one radian: inaccurate, but stable; no false alarm."""
    prob = ps.ODEProblem(lambda t, u, p: torch.stack((u[1], -u[0])), torch.tensor([1.0, 0.0], dtype=F64),
                         (0.0, 40.0))
    sol = ps.solve(prob, alg, adaptive=False, dt=dt)
    assert sol.retcode == ps.ReturnCode.Success, sol.message


def test_fast_forcing_inside_the_stability_interval_is_not_flagged():
    """u' = -20 (u - exp(3 t)) with RK4 at dt = 0.1 (dt * lambda = -2, inside [-2.79, 0]): the increments grow
    by exp(0.3) per step because of the forcing, not the method; the growth check must not fire."""
    prob = ps.ODEProblem(lambda t, u, p: -20.0 * (u - torch.exp(3 * t)), torch.ones(1, dtype=F64), (0.0, 3.0))
    sol = ps.solve(prob, ps.RK4(), adaptive=False, dt=0.1)
    assert sol.retcode == ps.ReturnCode.Success, sol.message
    exact_like = math.exp(9.0)  # the slow manifold u ~ exp(3t) (1 + O(3/20))
    assert abs(float(sol.u[-1, 0]) / exact_like - 1) < 0.2


def test_stiff_component_going_through_zero_is_not_flagged():
    """A first-order embedded estimate on components that decay through zero (IMEXSSP2, fixed steps): the
    relative check is norm-wise, so tiny components do not count as large relative errors."""
    L = torch.tensor([[-50.0, 1.0], [1.0, -2.0]], dtype=F64)
    prob = ps.SplitODEProblem(L, lambda t, u: torch.stack((torch.sin(t) - u[0] ** 2, -torch.cos(t) * u[1])),
                              torch.tensor([1.0, 0.5], dtype=F64), (0.0, 1.0))
    sol = ps.solve(prob, ps.IMEXSSP2(), adaptive=False, dt=1 / 16)
    assert sol.retcode == ps.ReturnCode.Success, sol.message


# ------------------------------------------------------------------------------------------------ aliasing
@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()], ids=lambda a: a.name)
def test_f_writing_into_u_is_refused_and_u0_is_untouched(alg):
    """Such an f made KenCarp4 return Success with the sign flipped and Tsit5/Rodas5P run 100,000 steps."""
    u0 = torch.tensor([1.0, 2.0], dtype=F64)

    def f(t, u, p):
        u.mul_(-1.0)
        return u

    with pytest.raises(ps.InputError, match="modified its input u in place"):
        ps.solve(ps.ODEProblem(f, u0, (0.0, 1.0)), alg)
    assert u0.tolist() == [1.0, 2.0]


def test_f_refilling_one_buffer_is_refused():
    buf = torch.zeros(2, dtype=F64)

    def f(t, u, p):
        buf.copy_(-u)
        return buf

    with pytest.raises(ps.InputError, match="changed a tensor it returned earlier"):
        ps.solve(ps.ODEProblem(f, torch.ones(2, dtype=F64), (0.0, 1.0)), ps.Tsit5())


# ------------------------------------------------------------------------------------------------ df/dt
def test_time_derivative_is_accurate_at_large_t():
    """u' = -1e4 (u - cos(t - t0)) shifted to t0 = 1e8 cost 84,594 Rodas5P steps (a df/dt difference step of
    sqrt(eps) |t| = 1.5); with the step relative to dt it costs what t0 = 0 costs (measured 43 vs 47)."""
    counts, finals = [], []
    for t0 in (0.0, 1e8):
        prob = ps.ODEProblem(lambda t, u, p, t0=t0: -1e4 * (u - torch.cos(t - t0)), torch.ones(1, dtype=F64),
                             (t0, t0 + 10.0))
        sol = ps.solve(prob, ps.Rodas5P(), rtol=1e-6, atol=1e-8)
        assert sol.retcode == ps.ReturnCode.Success
        counts.append(sol.stats.naccept + sol.stats.nreject)
        finals.append(float(sol.u[-1, 0]))
    assert counts[1] <= 1.3 * counts[0], counts
    assert abs(finals[1] - finals[0]) < 1e-6


# ------------------------------------------------------------------------------------------------ tolerances
def test_rtol_below_what_a_low_order_method_is_for_warns():
    with pytest.warns(UserWarning, match=r"below what Rosenbrock23\(\) is meant for"):
        ps.solve(decay(), ps.Rosenbrock23(), rtol=1e-9)


# ------------------------------------------------------------------------------------------------ saveat
def test_saveat_number_is_a_spacing_as_in_sciml():
    prob = decay(t1=100.0)
    sol = ps.solve(prob, ps.Tsit5(), saveat=10)
    assert sol.t.tolist() == [float(x) for x in range(0, 101, 10)]
    sol = ps.solve(decay(t1=10.0), ps.Tsit5(), saveat=3.0)
    assert sol.t.tolist() == [0.0, 3.0, 6.0, 9.0, 10.0]  # t1 is always saved
    back = ps.ODEProblem(lambda t, u, p: -u, torch.ones(1, dtype=F64), (1.0, 0.0))
    assert ps.solve(back, ps.Tsit5(), saveat=0.25).t.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    torch.testing.assert_close(sol.u[:, 0], torch.exp(-sol.t), rtol=1e-3, atol=1e-6)


# ------------------------------------------------------------------------------------------------ save values
@pytest.mark.parametrize("alg", [ps.KenCarp5(), ps.Kvaerno5()], ids=lambda a: a.name)
@pytest.mark.parametrize("rtol", [1e-6, 1e-8])
def test_low_order_interpolants_do_not_spoil_saved_values(alg, rtol):
    """KenCarp5's saveat values between steps came from its 3rd-order interpolant: 754x rtol at 1e-6 and 3300x
    at 1e-8 on this stiff transient (steps within 29x). Its steps now land on the save times; measured 2.8x/6.7x
    (KenCarp5) and 0.27x/0.28x (Kvaerno5), for 9 more steps."""
    A = torch.diag(torch.tensor([-100.0, -0.1], dtype=F64))
    prob = ps.ODEProblem(lambda t, u, p: A @ u, torch.ones(2, dtype=F64), (0.0, 1.0))
    ts = torch.logspace(-4, 0, 13, dtype=F64)
    sol = ps.solve(prob, alg, rtol=rtol, atol=rtol * 1e-3, saveat=ts)
    exact = torch.stack((torch.exp(-100 * ts), torch.exp(-0.1 * ts)), dim=1)
    ratio = float(((sol.u - exact).abs() / (rtol * 1e-3 + rtol * exact.abs().amax(1, keepdim=True))).max())
    assert ratio < 20, ratio
    # a batch lands on them too: each trajectory gives its lone solve's numbers
    u0 = torch.tensor([[1.0, 1.0], [2.0, 0.5]], dtype=F64)
    batch = ps.solve(ps.ODEProblem(lambda t, u, p: u @ A.T, u0, (0.0, 1.0), batched=True), alg, rtol=rtol,
                     atol=rtol * 1e-3, saveat=ts)
    for b in range(2):
        alone = ps.solve(ps.ODEProblem(lambda t, u, p: A @ u, u0[b], (0.0, 1.0)), alg, rtol=rtol, atol=rtol * 1e-3,
                         saveat=ts)
        torch.testing.assert_close(batch.u[:, b], alone.u, rtol=1e-12, atol=1e-15)
