"""Every pysciml warning points at the user's line (errors.warn_caller): the first frame outside pysciml and
torch, whichever path led to it (solve, odeint, a model through nn.Module.__call__, a compiled solve's fallback)."""

from __future__ import annotations

import warnings

import pytest
import torch

import pysciml as ps
from pysciml.callbacks import ContinuousCallback
from pysciml.models import NeuralODE

F64 = torch.float64


def decay(t, u, p):
    return -u


class Decay(torch.nn.Module):
    def forward(self, t, y):
        return -y


def _caught(call) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return caught


CASES = {
    # solve: the callbacks' eager fallback of compile=True (native.py)
    "solve compile with callbacks": (
        lambda: ps.solve(ps.ODEProblem(decay, torch.tensor([1.0], dtype=F64), (0.0, 1.0)), ps.Tsit5(),
                         callback=ContinuousCallback(lambda t, u: u[0] - 0.5), compile=True),
        "callbacks run on the eager loop"),
    # odeint: an adaptive method's fixed-grid options, ignored (odeint_options.py)
    "odeint ignored options": (
        lambda: ps.odeint(Decay(), torch.ones(2, dtype=F64), torch.linspace(0, 1, 3, dtype=F64), method="dopri5",
                          options={"perturb": True}),
        "are for fixed-grid methods"),
    # odeint's fixed grid beyond the stability region, found while stepping (odeint_grid.py, six frames down)
    "odeint unstable grid": (
        lambda: ps.odeint(lambda t, y: -50.0 * y, torch.ones(1, dtype=F64), torch.linspace(0, 1, 21, dtype=F64),
                          method="euler"),
        "unreliable"),
    # a model's forward, reached through torch's nn.Module.__call__ (_validate's rtol check)
    "model forward": (
        lambda: NeuralODE(Decay(), ps.Tsit5(), rtol=1e-20)(torch.ones(3, 2, dtype=F64),
                                                           torch.linspace(0, 1, 3, dtype=F64)),
        "below the resolution"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_warning_points_at_the_callers_line(case: str) -> None:
    call, text = CASES[case]
    caught = [w for w in _caught(call) if text in str(w.message)]
    assert caught, f"{case}: no warning matching {text!r}"
    for w in caught:
        assert w.filename == __file__, f"{case}: attributed to {w.filename}:{w.lineno}"
