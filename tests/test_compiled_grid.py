"""``odeint(..., compile=True)`` with torchdiffeq's fixed-grid methods: each grid step one compiled program.

The grid loop (:mod:`pysciml.odeint_grid`: the grid, the linear or cubic output between grid points, the fixed-step
check, ``callback_step``) stays eager around the compiled step of the method's stepper, so the values and the
gradients are the eager ones. ``perturb=True`` moves each stage's time on the host: those steps stay eager after a
warning. The default run checks that case; the heavy tests compile.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import pysciml as ps
from pysciml.engine import compiled_grid, compiled_parts
from pysciml.engine.compiled_grid import output_steps

F64 = torch.float64


class Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y**3) + torch.sin(t) * y


Y0 = torch.tensor([[2.0, 0.0], [0.5, -1.0], [1.0, 1.0]], dtype=F64)
T = torch.tensor([0.0, 0.13, 0.5, 0.77, 1.0], dtype=F64)  # output times between grid points too


def test_output_steps_follow_the_eager_loop() -> None:
    """Which grid step each output time is written from: the eager loop's rule (the first step whose end is not
    before it, in the solve's direction), on random grids and times forwards and backwards, outputs on grid points
    included; ``-1`` past the grid's end."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        grid = torch.cumsum(torch.rand(8, generator=gen, dtype=F64) + 0.05, 0).tolist()
        times = sorted(torch.rand(5, generator=gen, dtype=F64).mul(grid[-1] - grid[0]).add(grid[0]).tolist())
        times = [grid[0], *times, grid[3]]
        times.sort()
        for direction in (1.0, -1.0):
            g = grid if direction > 0 else [-x for x in grid]
            ts = times if direction > 0 else [-x for x in times]
            got = output_steps(g, ts, direction)
            for tj, k in zip(ts[1:], got, strict=True):
                assert direction * (g[k + 1] - tj) >= 0 and (k == 0 or direction * (g[k] - tj) < 0)
    assert output_steps([0.0, 1.0], [0.0, 0.5, 2.0], 1.0) == [0, -1]


def test_perturb_stays_eager_with_a_warning() -> None:
    field = Field()
    opts = {"step_size": 0.1, "perturb": True}
    eager = ps.odeint(field, Y0, T, method="rk4", options=opts)
    with pytest.warns(RuntimeWarning, match="perturb=True.*compile= is ignored"):
        out = ps.odeint(field, Y0, T, method="rk4", options=opts, compile=True)
    torch.testing.assert_close(out, eager, rtol=0, atol=0)


@pytest.mark.heavy  # compiles a program per method (seconds each)
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_grid_steps_compiled_match_eager(method: str, interp: str) -> None:
    """Values to 1e-13 and gradients (``y0`` and every weight) to 1e-12 of the eager grid solve (the whole solve as
    one program; with ``callback_step``, whose calls are the eager ones, the per-step programs), no warning;
    another ``y0`` and time grid with as many grid steps and outputs compile nothing new."""
    field = Field()
    opts = {"step_size": 0.1, "interp": interp}
    runs = []
    for flag, callback in ((False, False), (True, False), (False, True), (True, True)):
        calls: list[float] = []
        if callback:
            field.callback_step = lambda t0, y, dt, calls=calls: calls.append(float(t0))  # type: ignore[attr-defined]
        y0 = Y0.clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            out = ps.odeint(field, y0, T, method=method, options=opts, compile=flag)
        grads = torch.autograd.grad(out.pow(2).sum(), [y0, *field.parameters()])
        runs.append((out.detach(), grads, calls))
    del field.callback_step
    for (ve, ge, ce), (vc, gc, cc) in (runs[:2], runs[2:]):
        torch.testing.assert_close(vc, ve, rtol=1e-13, atol=1e-13)
        for a, b in zip(gc, ge, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert cc == ce
    assert len(runs[3][2]) == 10
    before = compiled_parts.compile_count()
    y1, t1 = (Y0 * 0.5).requires_grad_(True), T + 0.5  # as many grid steps (10) and outputs
    other = ps.odeint(field, y1, t1, method=method, options=opts, compile=True)
    torch.testing.assert_close(other, ps.odeint(field, y1, t1, method=method, options=opts), rtol=1e-13, atol=1e-13)
    assert compiled_parts.compile_count() == before


@pytest.mark.heavy
def test_long_grid_takes_the_per_step_programs() -> None:
    """A grid longer than ``MAX_STEPS`` is stepped by the per-step programs: the eager values and gradients."""
    field = Field()
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    opts = {"step_size": 1.0 / (compiled_grid.MAX_STEPS + 4)}
    outs = []
    for flag in (False, True):
        y0 = Y0.clone().requires_grad_(True)
        out = ps.odeint(field, y0, t, method="rk4", options=opts, compile=flag)
        outs.append((out.detach(), torch.autograd.grad(out.sum(), y0)[0]))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-12, atol=1e-12)

