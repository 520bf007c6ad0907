"""Compiled programs are cached by the identity of the user's function, so an ``f`` (or a second-order problem's
acceleration) remade as a new lambda or closure for every solve compiles a new program each time. Every compiled
family says so once, after ``FRESH_F_WARNING`` such functions of one signature: the Rosenbrock/RK/FIRK steps
(``tests/test_compiled.py``, exhaustive), the BDF loop program and the splitting programs (here). The programs run
uncompiled here: the warning comes from their cache, before anything is compiled."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from loop_programs import run_loops_uncompiled

import pysciml as ps
from pysciml.engine import (
    compiled_bdf_qndf,
    compiled_bdf_step,
    compiled_loop_bdf,
    compiled_loop_symplectic,
    compiled_parts,
)

F64 = torch.float64


def _solves(make: Any, solve: Any) -> list[ps.ODESolution]:
    return [solve(make()) for _ in range(compiled_parts.FRESH_F_WARNING)]


def test_bdf_loop_warns_when_f_is_recreated(monkeypatch: pytest.MonkeyPatch) -> None:
    run_loops_uncompiled(monkeypatch, compiled_loop_bdf, compiled_bdf_step, compiled_bdf_qndf)

    def make() -> Any:
        return lambda t, u: -2.0 * u  # a new function object per call

    u0 = torch.tensor([1.0, 0.5], dtype=F64)
    with pytest.warns(RuntimeWarning, match=r"f \(.*\) is a new function object at each solve"):
        sols = _solves(make, lambda f: ps.solve(ps.ODEProblem(f, u0, (0.0, 1.0)), ps.FBDF(), saveat=[1.0],
                                                 rtol=1e-6, atol=1e-9, compile=True))
    for sol in sols:
        torch.testing.assert_close(sol.u[-1], u0 * torch.exp(torch.tensor(-2.0, dtype=F64)), rtol=1e-4, atol=0.0)


def test_splitting_loop_warns_when_the_acceleration_is_recreated(monkeypatch: pytest.MonkeyPatch) -> None:
    run_loops_uncompiled(monkeypatch, compiled_loop_symplectic)

    def make() -> Any:
        return lambda t, x, v: -x

    x0, v0 = torch.tensor([1.0], dtype=F64), torch.tensor([0.0], dtype=F64)
    with pytest.warns(RuntimeWarning, match=r"the acceleration \(.*\) is a new function object at each solve"):
        sols = _solves(make, lambda a: ps.solve(ps.SecondOrderODEProblem(a, x0, v0, (0.0, 1.0)), ps.VelocityVerlet(),
                                                 dt=0.01, saveat=[1.0], compile=True))
    for sol in sols:
        assert abs(float(sol.u[-1, 0]) - float(torch.cos(torch.tensor(1.0, dtype=F64)))) < 1e-4


def test_a_function_defined_once_does_not_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    run_loops_uncompiled(monkeypatch, compiled_loop_bdf, compiled_bdf_step, compiled_bdf_qndf)

    def f(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return -3.0 * u

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _solves(lambda: f, lambda g: ps.solve(ps.ODEProblem(g, torch.tensor([1.0], dtype=F64), (0.0, 1.0)),
                                              ps.FBDF(), saveat=[1.0], compile=True))
