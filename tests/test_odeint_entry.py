"""``odeint`` enters ``solve`` behind its keyword checks (``pysciml.solve._solve_checked``): its times are checked once
(by ``odeint``), bad input still gets the error that names the argument, and the answer is ``solve``'s."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

import pysciml as ps
import pysciml._validate as validate
from pysciml.errors import InputError

odeint_module = importlib.import_module("pysciml.odeint")  # the package's odeint is the function


def _counting(monkeypatch, module, name):
    calls = [0]
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def f(t, y):
    return torch.stack((y[1], -y[0] - 0.1 * y[1]))


@pytest.mark.parametrize("sensealg", [None, ps.DiscreteAdjoint(checkpoints=2)])
def test_odeint_checks_its_times_once_and_gives_solves_answer(monkeypatch, sensealg):
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    times = _counting(monkeypatch, odeint_module, "check_times_ends")
    listed = _counting(monkeypatch, validate, "_check_listed_saveat")
    ys = ps.odeint(f, y0, t, method="dopri5", rtol=1e-8, atol=1e-10, sensealg=sensealg)
    by_odeint = listed[0]
    sol = ps.solve(ps.ODEProblem(f, y0, (0.0, 3.0)), ps.DP5(), rtol=1e-8, atol=1e-10, saveat=t, sensealg=sensealg)
    by_solve = listed[0] - by_odeint
    # odeint checks t once; solve checks its saveat, which odeint's times skip (a checkpointed solve's segments
    # check their own pieces, in both)
    assert times[0] == 1 and by_odeint == by_solve - 1 and by_odeint == (0 if sensealg is None else 2)
    assert torch.equal(ys, sol.u)  # the same steps, the same values
    exact = torch.exp(-0.05 * t) * (torch.cos(math.sqrt(1 - 0.0025) * t)
                                    + 0.05 / math.sqrt(1 - 0.0025) * torch.sin(math.sqrt(1 - 0.0025) * t))
    assert torch.allclose(ys[:, 0], exact, rtol=0, atol=1e-7)


def test_odeint_gradient_is_solves():
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    (g_odeint,) = torch.autograd.grad(ps.odeint(f, y0, t, method="tsit5", rtol=1e-9, atol=1e-12)[-1, 0], y0)
    sol = ps.solve(ps.ODEProblem(f, y0, (0.0, 2.0)), ps.Tsit5(), rtol=1e-9, atol=1e-12, saveat=t)
    (g_solve,) = torch.autograd.grad(sol.u[-1, 0], y0)
    assert torch.equal(g_odeint, g_solve)


@pytest.mark.parametrize(("t", "match"), [
    (torch.tensor([0.0, float("nan"), 1.0]), "t contains NaN or Inf"),
    (torch.tensor([0.0, 1.0, 0.5]), "t must be strictly increasing or strictly decreasing"),
    (torch.tensor([[0.0, 1.0]]), "t must be a 1-D tensor"),
])
def test_bad_times_still_named(t, match):
    with pytest.raises(InputError, match=match):
        ps.odeint(f, torch.ones(2), t)


def test_bad_keywords_still_named():
    t = torch.linspace(0.0, 1.0, 3)
    with pytest.raises(InputError, match="rtol must be a positive finite number"):
        ps.odeint(f, torch.ones(2), t, rtol=-1.0)
    with pytest.raises(InputError, match="sensealg must be an object from pysciml.sensealg"):
        ps.odeint(f, torch.ones(2), t, sensealg="adjoint")
    with pytest.raises(InputError, match="progress=True is supported by odeint .* without checkpoints"):
        ps.odeint(f, torch.ones(2, requires_grad=True), t, progress=True,
                  sensealg=ps.DiscreteAdjoint(checkpoints=2))
