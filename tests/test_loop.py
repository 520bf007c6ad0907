"""The integration loop tested apart from the numerics, with a stub stepper (exact solution, scripted errors)."""

from __future__ import annotations

import math

import torch

import pysciml as ps
from pysciml.engine.controller import PIController
from pysciml.engine.loop import LoopOptions, integrate
from pysciml.engine.stepper import Stepper, StepResult


class ExactStub(Stepper):
    """Steps u' = -u exactly; the 'error' is scripted as a function of dt so accept/reject is predictable."""

    order = 1

    def __init__(self, err_scale: float = 1.0) -> None:
        self.err_scale = err_scale
        self.f0 = None
        self.calls = 0

    def init(self, t, u):
        self.f0 = -u

    def f_total(self, t, u):
        return -u

    def step(self, t, u, dt):
        self.calls += 1
        u_new = u * torch.exp(-dt)[:, None]
        err = self.err_scale * dt[:, None] ** 2 * torch.ones_like(u)
        return StepResult(u_new=u_new, err=err, ok=None, stages=[], f_start=self.f0)

    def accept(self, accepted, t, u, res):
        self.f0 = -u

    def interpolant(self, u, dt, res):
        # exact solution is not polynomial: use the linear interpolant, enough for bookkeeping checks
        return torch.stack((u, res.u_new - u))


def opts(**kw):
    base = dict(t0=0.0, t1=1.0, adaptive=True, dt=None, atol=torch.full((1, 1), 1e-6, dtype=torch.float64),
                rtol=1e-3, maxiters=10_000, dtmin=0.0, dtmax=None, saveat=None, save_everystep=True, dense=False,
                controller=PIController())
    base.update(kw)
    return LoopOptions(**base)


def test_loop_reaches_t1_exactly_and_counts():
    stats = ps.Stats()
    stub = ExactStub()
    res = integrate(stub, torch.ones(1, 1, dtype=torch.float64), opts(), stats)
    assert res.status == [ps.ReturnCode.Success]
    assert float(res.t[-1]) == 1.0
    assert abs(float(res.u[-1, 0, 0]) - math.exp(-1.0)) < 1e-14
    assert stats.naccept + stats.nreject == stub.calls == stats.nloop
    assert stats.naccept == res.t.shape[0] - 1


def test_loop_rejects_when_error_too_large_then_recovers():
    stats = ps.Stats()
    res = integrate(ExactStub(err_scale=1e2), torch.ones(1, 1, dtype=torch.float64), opts(dt=0.5), stats)
    assert stats.nreject >= 1
    assert res.status == [ps.ReturnCode.Success]


def test_loop_maxiters():
    stats = ps.Stats()
    res = integrate(ExactStub(err_scale=1e6), torch.ones(1, 1, dtype=torch.float64), opts(maxiters=5), stats)
    assert res.status == [ps.ReturnCode.MaxIters]
    assert res.fail_info[0] is not None


def test_loop_fixed_steps_count_and_last_step():
    stats = ps.Stats()
    res = integrate(ExactStub(), torch.ones(1, 1, dtype=torch.float64), opts(adaptive=False, dt=0.3), stats)
    assert stats.naccept == 4  # 0.3, 0.6, 0.9, then the short step to 1.0
    assert torch.allclose(res.t, torch.tensor([0.0, 0.3, 0.6, 0.9, 1.0], dtype=torch.float64))


def test_saveat_values_come_from_the_interpolant_not_shortened_steps():
    stats = ps.Stats()
    save = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    res = integrate(ExactStub(), torch.ones(1, 1, dtype=torch.float64),
                    opts(adaptive=False, dt=0.3, saveat=save, save_everystep=False), stats)
    assert stats.naccept == 4
    # 0.25 lies in the first step [0, 0.3]: linear interpolation of the exact endpoint values
    lin = 1 + (0.25 / 0.3) * (math.exp(-0.3) - 1)
    assert abs(float(res.u[1, 0, 0]) - lin) < 1e-14
    assert abs(float(res.u[3, 0, 0]) - math.exp(-1.0)) < 1e-14


def test_batch_trajectories_finish_independently():
    stats = ps.Stats()
    u0 = torch.ones(3, 1, dtype=torch.float64)
    atol = torch.tensor([[1e-2], [1e-4], [1e-6]], dtype=torch.float64)
    res = integrate(ExactStub(), u0, opts(atol=atol, rtol=1e-12, save_everystep=False,
                                          saveat=torch.tensor([0.0, 1.0], dtype=torch.float64)), stats)
    assert res.status == [ps.ReturnCode.Success] * 3
    assert torch.allclose(res.u[-1, :, 0], torch.full((3,), math.exp(-1.0), dtype=torch.float64), atol=1e-14)
