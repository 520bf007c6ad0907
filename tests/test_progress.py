"""solve(..., progress=True): a tqdm bar over t on both loops, off by default, refused where it cannot show."""

from __future__ import annotations

import re

import pytest
import torch

import pysciml as ps

F64 = torch.float64


def decay(batched: bool) -> ps.ODEProblem:
    u0 = torch.ones((3, 2) if batched else (2,), dtype=F64)
    return ps.ODEProblem(lambda t, u, p: -u, u0, (0.0, 2.0), batched=batched)


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
def test_progress_bar_reaches_t1(batched: bool, capsys: pytest.CaptureFixture[str]) -> None:
    sol = ps.solve(decay(batched), ps.Tsit5(), rtol=1e-8, atol=1e-10, progress=True)
    err = capsys.readouterr().err
    assert sol.retcodes == (ps.ReturnCode.Success,) * (3 if batched else 1)
    assert "Tsit5" in err
    shown = [float(v) for v in re.findall(r"t0\| = ([0-9.e+-]+)/2 ", err)]
    assert shown and shown[-1] == pytest.approx(2.0)  # the bar ends at t1
    quiet = ps.solve(decay(batched), ps.Tsit5(), rtol=1e-8, atol=1e-10)
    assert capsys.readouterr().err == ""  # off by default
    torch.testing.assert_close(quiet.u, sol.u, rtol=0, atol=0)  # the bar changes nothing


def test_progress_refused_where_it_cannot_show() -> None:
    prob = decay(False)
    with pytest.raises(ps.InputError, match="progress"):
        ps.solve(prob, ps.Tsit5(), backend="julia", progress=True)
    u0 = prob.u0.clone().requires_grad_(True)
    with pytest.raises(ps.InputError, match="progress"):
        ps.solve(ps.ODEProblem(prob.f, u0, prob.tspan), ps.Tsit5(), saveat=[2.0],
                 sensealg=ps.InterpolatingAdjoint(), progress=True)


def test_progress_on_odeint_and_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    t = torch.linspace(0, 2, 5, dtype=F64)
    y0 = torch.ones(2, dtype=F64)
    ys = ps.odeint(lambda t, y: -y, y0, t, progress=True)
    assert "|t - t0| = 2/2" in capsys.readouterr().err
    torch.testing.assert_close(ys[-1], torch.exp(-t[-1]) * y0, rtol=1e-6, atol=0)
    from pysciml.models import NeuralODE

    class Field(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2).double()

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.lin(y)

    model = NeuralODE(Field(), progress=True)
    out = model(y0, t)
    assert out.shape == (5, 2) and "|t - t0| = 2/2" in capsys.readouterr().err
    with pytest.raises(ps.InputError, match="progress"):
        ps.odeint(lambda t, y: -y, y0.clone().requires_grad_(True), t, sensealg=ps.InterpolatingAdjoint(),
                  progress=True)
