"""Differentiated ``compile=True`` solves of the FIRK family (RadauIIA5/3, Gauss-Legendre): the compiled step's
program runs without a graph (its Newton iterations are not differentiated) and the converged stages then carry the
exact derivative of the stage equations, attached eagerly as the eager step attaches it
(:meth:`~pysciml.engine.firk.FIRKStepper._attach_gradient`, the implicit function theorem). So the gradients are the
eager discrete adjoint's.

The default run executes the step program's Python function (its Newton ``while_loop`` a Python loop); the
exhaustive test compiles.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from loop_programs import python_while

import pysciml as ps
from pysciml.engine import compiled_firk, compiled_parts
from pysciml.problems import van_der_pol

F64 = torch.float64
COUNTS = ("nf", "njac", "nlu", "nnonliniter", "nsolve", "naccept", "nreject", "nnonlinconvfail")


class Field(torch.nn.Module):
    """A stiff linear part and a small MLP: ``f(u) = -diag(20, 2) u + net(u)``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
        self.register_buffer("rates", torch.tensor([20.0, 2.0], dtype=F64))

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.net(u) - self.rates * u


def learned_problem(batched: bool = False) -> ps.ODEProblem:
    u0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    return ps.ODEProblem(Field(), u0, (0.0, 1.0), batched=batched)


def counters(sol: ps.ODESolution) -> dict[str, int]:
    return {k: getattr(sol.stats, k) for k in COUNTS}


def solves(prob: ps.ODEProblem, alg: ps.Algorithm, **kw: object) -> tuple[ps.ODESolution, ps.ODESolution]:
    """Eager and compiled (no fallback warning) solves, each after f's once-per-process checks have run."""
    ps.solve(prob, alg, **kw)
    eager = ps.solve(prob, alg, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        comp = ps.solve(prob, alg, compile=True, **kw)
    assert comp.success and counters(comp) == counters(eager)
    return eager, comp


def weights(prob: ps.ODEProblem) -> list[torch.Tensor]:
    assert isinstance(prob.f, torch.nn.Module)
    return list(prob.f.parameters())


def assert_same_gradients(ws: list[torch.Tensor], comp: ps.ODESolution, eager: ps.ODESolution, tol: float) -> None:
    for a, b in zip(torch.autograd.grad(comp.u[-1].square().sum(), ws),
                    torch.autograd.grad(eager.u[-1].square().sum(), ws), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FIRK step program as its Python function, its Newton ``while_loop`` a Python loop."""

    monkeypatch.setattr(compiled_parts._Program, "run", lambda self, variant, stats, *a: self.raw[variant](*a))
    monkeypatch.setattr(compiled_firk, "while_loop", python_while)


@pytest.mark.parametrize("alg", [ps.RadauIIA5(), ps.RadauIIA3(), ps.GaussLegendre4()], ids=lambda a: a.name)
@pytest.mark.parametrize("batched", [False, True], ids=["one", "batched"])
def test_uncompiled_program_gradients_equal_eager(uncompiled: None, alg: ps.Algorithm, batched: bool) -> None:
    """Parameters of an ``nn.Module`` ``f`` requiring grad: the eager counters, values to 1e-13 and the gradients
    of the end state to 1e-12 (the fixed-step Gauss-Legendre method with ``dt``)."""
    prob = learned_problem(batched)
    kw: dict = {"saveat": [0.5, 1.0]}
    kw.update({"dt": 0.05} if isinstance(alg, ps.GaussLegendre4) else {"rtol": 1e-8, "atol": 1e-10})
    eager, comp = solves(prob, alg, **kw)
    assert comp.u.requires_grad
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-13, atol=1e-13)
    assert_same_gradients(weights(prob), comp, eager, 1e-12)


def test_uncompiled_program_gradient_in_p_and_u0(uncompiled: None) -> None:
    """Van der Pol (mu = 10) with its analytic Jacobian, ``p`` and ``u0`` requiring grad: the eager gradients."""
    base = van_der_pol(10.0, (0.0, 1.0))
    p, u0 = base.p.clone().requires_grad_(True), base.u0.clone().requires_grad_(True)
    prob = ps.ODEProblem(base.f, u0, base.tspan, p, jac=base.jac)
    eager, comp = solves(prob, ps.RadauIIA5(), rtol=1e-8, atol=1e-10, saveat=[0.5, 1.0])
    for a, b in zip(torch.autograd.grad(comp.u[-1].sum(), (p, u0)), torch.autograd.grad(eager.u[-1].sum(), (p, u0)),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.exhaustive  # compiles its own programs (CI runs it: .ci/run)
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("alg", [ps.RadauIIA5(), ps.RadauIIA3()], ids=lambda a: a.name)
def test_compiled_gradients_equal_eager(alg: ps.Algorithm) -> None:
    """Compiled: the eager counters, values and gradients to 1e-12 (the program's kernels round like the eager
    ones here: measured 8e-16 and 4e-15)."""
    prob = learned_problem()
    eager, comp = solves(prob, alg, rtol=1e-8, atol=1e-10, saveat=[0.5, 1.0])
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)
    assert_same_gradients(weights(prob), comp, eager, 1e-12)
