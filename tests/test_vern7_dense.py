"""Vern7's own 7th-order continuous extension (6 lazily evaluated extra stages) through the real engine."""

from __future__ import annotations

import torch
from helpers import nonlinear_problem, observed_order

import pysciml as ps

TS = torch.linspace(0.0, 2.0, 301, dtype=torch.float64)


def _max_error(ts, us, exact) -> float:
    return max(float((u - exact(float(t))).abs().max()) for t, u in zip(ts, us, strict=True))


def test_dense_error_comparable_to_step_error():
    """u0 = exp(sin 3t), u1 = 1/(1 + 9t^2) on [0, 2]: between Vern7's large steps the interpolant is as
    accurate as the steps themselves (cubic Hermite was ~1e5 times worse than the steps here)."""
    prob, exact = nonlinear_problem()
    sol = ps.solve(prob, ps.Vern7(), rtol=1e-10, atol=1e-12)
    assert sol.retcode
    step_err = _max_error(sol.t, sol.u, exact)
    dense_err = _max_error(TS, sol(TS), exact)
    assert step_err < 1e-9
    assert dense_err <= 10 * step_err, (step_err, dense_err)
    torch.testing.assert_close(sol(sol.t), sol.u, rtol=1e-12, atol=1e-14)  # hits the step ends


def test_saveat_equals_dense_values():
    prob, _ = nonlinear_problem()
    dense = ps.solve(prob, ps.Vern7(), rtol=1e-10, atol=1e-12)
    saved = ps.solve(prob, ps.Vern7(), rtol=1e-10, atol=1e-12, saveat=TS)
    assert saved.stats.naccept == dense.stats.naccept  # saveat does not change the steps
    torch.testing.assert_close(saved.u, dense(TS), rtol=1e-13, atol=1e-14)


def test_extra_stages_are_lazy_and_counted():
    """Only interpolated steps pay for the extra stages: 5 f calls each (the 6th, f(t1, u1), is the cached
    derivative the next step starts from)."""
    prob, _ = nonlinear_problem()
    plain = ps.solve(prob, ps.Vern7(), rtol=1e-8, atol=1e-10, dense=False)
    dense = ps.solve(prob, ps.Vern7(), rtol=1e-8, atol=1e-10)
    assert plain.stats.naccept == dense.stats.naccept and plain.stats.nreject == dense.stats.nreject
    assert dense.stats.nf - plain.stats.nf == 5 * dense.stats.naccept


def test_batched_matches_single_solves():
    """The batched loop interpolates rejected and finished rows too; only accepted rows may be used."""
    omegas = (2.0, 3.0, 5.0)

    def f(t, u, p):
        w = p[:, 0]
        return torch.stack((w * torch.cos(w * t) * u[:, 0], -2 * w**2 * t * u[:, 1] ** 2), dim=1)

    u0 = torch.ones(len(omegas), 2, dtype=torch.float64)
    p = torch.tensor(omegas, dtype=torch.float64)[:, None]
    batched = ps.solve(ps.ODEProblem(f, u0, (0.0, 2.0), p=p, batched=True), ps.Vern7(), rtol=1e-9, atol=1e-11,
                       dense=True)
    vals = batched(TS)
    for b, omega in enumerate(omegas):
        prob, exact = nonlinear_problem(omega=omega)
        single = ps.solve(prob, ps.Vern7(), rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(vals[:, b], single(TS), rtol=1e-10, atol=1e-12)
        step_err = _max_error(single.t, single.u, exact)
        assert _max_error(TS, vals[:, b], exact) <= 10 * step_err


def test_fixed_step_local_interpolation_order():
    """One step of size dt from the exact state: the error at theta = 1/2 falls like dt^8.

    The step sizes sit in the asymptotic range (errors 3e-9 .. 8e-13, well above round-off) and the start
    times avoid t ~ 0.5-1, where for this problem the dt^8 term nearly cancels at theta = 1/2 and the
    observed slope is ~9.5 at these sizes."""
    prob, exact = nonlinear_problem(omega=1.0)
    dts = [0.25 * 2 ** (-k / 2) for k in range(4)]
    errors = []
    for dt in dts:
        worst = 0.0
        for t0 in (0.3, 1.5, 3.0):
            one_step = ps.ODEProblem(prob.f, exact(t0), (t0, t0 + dt))
            sol = ps.solve(one_step, ps.Vern7(), dt=dt, adaptive=False)
            assert sol.stats.naccept == 1
            mid = t0 + 0.5 * dt
            err = float((sol(torch.tensor([mid], dtype=torch.float64))[0] - exact(mid)).abs().max())
            worst = max(worst, err)
        errors.append(worst)
    assert min(errors) > 1e-13, errors
    assert abs(observed_order(dts, errors) - 8.0) <= 0.5, errors
