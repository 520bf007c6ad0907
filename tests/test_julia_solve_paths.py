"""``solve(..., backend="julia")`` honours or refuses every keyword, and never drops a gradient: checked on what
would be sent to Julia (``plan_solve``, ``plan_solve_adjoint``), without Julia, as ``test_julia_arguments.py``.

* ``tstops`` reach ``solve_ode`` (sorted in the direction of integration) and match its Julia signature;
* a solve that must be differentiable goes through SciMLSensitivity with the native adjoints' parameters (leaves,
  closure tensors included), refusing ``DiscreteAdjoint`` and the options its backward solve cannot follow;
* the vector-Jacobian products handed to SciMLSensitivity are the native adjoints' own.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from test_julia_arguments import STEP_KEYS, assert_matches_julia, tensor_of

import pysciml as ps
from pysciml._validate import SolveOptions
from pysciml.errors import InputError, JuliaNotAvailableError
from pysciml.julia._adjoint import plan_solve_adjoint
from pysciml.julia._solve import plan_solve
from pysciml.sensitivity.problem_adjoint import wants_gradient

F64 = torch.float64


def decay(t, u, p):
    return -p * u


def problem(**kw) -> ps.ODEProblem:
    return ps.ODEProblem(decay, torch.tensor([1.0, 2.0], dtype=F64), (0.0, 1.0), torch.tensor(0.5, dtype=F64), **kw)


# ------------------------------------------------------------------------------------------- tstops
def test_tstops_reach_solve_ode_sorted():
    (call,) = plan_solve(problem(), ps.Tsit5(), tstops=[0.7, 0.3, 0.7]).calls
    assert set(call.kwargs) == STEP_KEYS | {"tstops"}
    assert_matches_julia("solve_ode", call.args, call.kwargs)
    assert tensor_of(call.kwargs["tstops"]).tolist() == [0.3, 0.7]
    (back,) = plan_solve(problem().remake(tspan=(1.0, 0.0)), ps.Tsit5(), tstops=[0.3, 0.7]).calls
    assert tensor_of(back.kwargs["tstops"]).tolist() == [0.7, 0.3]
    assert "tstops" not in plan_solve(problem(), ps.Tsit5()).calls[0].kwargs


@pytest.mark.parametrize("kw,match", [(dict(tstops=[1.5]), "tstops time 1.5 lies outside"),
                                      (dict(controller=ps.PIController()), "controller= applies to the native"),
                                      (dict(tolerance=1e-3), "unknown solve keyword")],
                         ids=["outside", "controller", "unknown"])
def test_julia_plan_refusals(kw, match):
    with pytest.raises(InputError, match=match):
        plan_solve(problem(), ps.Tsit5(), **kw)


# ----------------------------------------------------------------------------- differentiable solves
def test_differentiable_solve_plans_the_native_adjoints_parameters():
    mu = torch.tensor(0.5, dtype=F64, requires_grad=True)
    c = torch.tensor(2.0, dtype=F64, requires_grad=True)  # used by f through its closure, not in p
    prob = ps.ODEProblem(lambda t, u, p: -p * u + c, torch.tensor([1.0, 2.0], dtype=F64), (0.0, 1.0),
                         mu.reshape(1))
    assert wants_gradient(prob)
    run, starts = plan_solve_adjoint(prob, ps.Rodas5P(), None, SolveOptions(saveat=[0.5, 1.0], rtol=1e-7))
    assert not starts and run.t.tolist() == [0.0, 0.5, 1.0]  # t0 prepended for Julia, dropped afterwards
    assert len(run.params) == 2 and run.params[0] is mu and run.params[1] is c  # leaves: mu, not its view
    assert run.sensealg_name == "QuadratureAdjoint"  # odeint_julia's default for implicit methods
    args, kwargs = run.forward_call()
    assert_matches_julia("solve_ode", args, kwargs)
    assert set(kwargs) == {"reltol", "abstol", "saveat", "dense", "maxiters", "params", "linsolve"}
    assert tensor_of(kwargs["params"]).tolist() == [0.5, 2.0] and kwargs["reltol"] == 1e-7
    adj_args, adj_kwargs = run.adjoint_call("<julia solution>", torch.ones(3, 2, dtype=F64))
    assert_matches_julia("adjoint_gradients", adj_args, adj_kwargs)


@pytest.mark.parametrize("kw,match", [
    (dict(dt=0.1), "dt"), (dict(adaptive=False, dt=0.1), "adaptive=False"), (dict(dtmin=1e-6), "dtmin"),
    (dict(dtmax=0.1), "dtmax"), (dict(tstops=[0.5]), "tstops"), (dict(dense=True), "dense=True"),
    (dict(controller=ps.PIController()), "controller"), (dict(saveat=None), "no saveat"),
], ids=["dt", "fixed", "dtmin", "dtmax", "tstops", "dense", "controller", "no-saveat"])
def test_differentiable_solve_refuses_what_its_backward_solve_cannot_follow(kw, match):
    opts = SolveOptions(**{"saveat": [1.0], **kw})
    with pytest.raises(InputError, match=f"backend='julia'.*cannot honour.*{match}"):
        plan_solve_adjoint(problem(), ps.Tsit5(), ps.InterpolatingAdjoint(), opts)


def test_differentiable_solve_refuses_problems_it_cannot_differentiate():
    opts = SolveOptions(saveat=[1.0])
    with pytest.raises(InputError, match="DiscreteAdjoint differentiates the native engine's steps"):
        plan_solve_adjoint(problem(), ps.Tsit5(), ps.DiscreteAdjoint(), opts)
    batched = ps.ODEProblem(decay, torch.ones(2, 2, dtype=F64), (0.0, 1.0), 0.5, batched=True)
    with pytest.raises(InputError, match="batched=True"):
        plan_solve_adjoint(batched, ps.Tsit5(), None, opts)
    with pytest.raises(InputError, match="mass_matrix"):
        plan_solve_adjoint(problem(mass_matrix=torch.eye(2, dtype=F64)), ps.Rodas5P(), None, opts)
    L = torch.tensor([[-2.0, 1.0], [1.0, -2.0]], dtype=F64, requires_grad=True)
    split = ps.SplitODEProblem(L, lambda t, u, p: torch.sin(u), torch.ones(2, dtype=F64), (0.0, 1.0))
    with pytest.raises(InputError, match="SplitODEProblem.*unsplit=True"):
        plan_solve_adjoint(split, ps.KenCarp4(), None, opts)
    run, _ = plan_solve_adjoint(split, ps.Rodas5P(), None, SolveOptions(saveat=[1.0], unsplit=True))
    assert run.params == (L,)  # the matrix implicit part is differentiated through the summed f


def test_solve_with_julia_refuses_before_julia_starts():
    """These used to run a plain Julia solve whose values carried no gradient (silently lost)."""
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    prob = ps.ODEProblem(decay, y0, (0.0, 1.0), 0.5)
    with pytest.raises(InputError, match="DiscreteAdjoint"):
        ps.solve(prob, ps.Tsit5(), saveat=[1.0], backend="julia", sensealg=ps.DiscreteAdjoint())
    with pytest.raises(InputError, match="cannot honour dtmax"):
        ps.solve(prob, ps.Tsit5(), saveat=[1.0], backend="julia", dtmax=0.1)
    with pytest.raises(InputError, match="cannot honour dense=True"):
        ps.solve(problem(), ps.Tsit5(), backend="julia", sensealg=ps.QuadratureAdjoint(), dense=True)


def test_what_needs_a_gradient():
    assert not wants_gradient(problem())
    assert wants_gradient(problem().remake(u0=torch.ones(2, dtype=F64, requires_grad=True)))
    w = torch.tensor(1.0, dtype=F64, requires_grad=True)
    closure = ps.ODEProblem(lambda t, u: -w * u, torch.ones(2, dtype=F64), (0.0, 1.0))
    assert wants_gradient(closure)
    with torch.no_grad():
        assert not wants_gradient(closure)


# --------------------------------------------------------------------------------- VJP callbacks
def test_vjp_callbacks_are_the_native_adjoints_products():
    k = torch.tensor([0.5, 1.5], dtype=F64, requires_grad=True)

    def f(t, u, p):
        return torch.stack((-p[0] * u[0] * u[1], p[1] * torch.sin(u[0]) + t))

    prob = ps.ODEProblem(f, torch.tensor([1.0, 2.0], dtype=F64), (0.0, 1.0), k)
    run, _ = plan_solve_adjoint(prob, ps.Tsit5(), None, SolveOptions(saveat=[0.0, 1.0]))
    u, lam = torch.tensor([0.3, -1.2], dtype=F64), torch.tensor([2.0, -0.5], dtype=F64)
    x = u.clone().requires_grad_(True)
    gu, gk = torch.autograd.grad(f(torch.tensor(0.25, dtype=F64), x, k), (x, k), lam)
    out_u, out_p = torch.empty(2, dtype=F64), torch.empty(2, dtype=F64)
    run.callbacks.vjp(out_u, lam, u, 0.25)
    run.callbacks.vjp_p(out_p, lam, u, 0.25)
    assert torch.allclose(out_u, gu, rtol=1e-15) and torch.allclose(out_p, gk, rtol=1e-15)


def test_vjp_callbacks_refuse_a_tensor_the_parameters_missed():
    late = torch.tensor(3.0, dtype=F64, requires_grad=True)  # f uses it only after t = 0.5

    def f(t, u, p):
        return -p * u * (late if float(t) > 0.5 else 1.0)

    prob = ps.ODEProblem(f, torch.ones(2, dtype=F64), (0.0, 1.0), torch.tensor(0.5, dtype=F64, requires_grad=True))
    run, _ = plan_solve_adjoint(prob.remake(tspan=(0.0, 0.4)), ps.Tsit5(), None, SolveOptions(saveat=[0.4]))
    out = torch.empty(2, dtype=F64)
    with pytest.raises(InputError, match="adjoint_params|put the tensor in p"):
        run.callbacks.vjp(out, torch.ones(2, dtype=F64), torch.ones(2, dtype=F64), 0.9)
    assert run.callbacks.error is not None


# ------------------------------------------------------------------------------------- odeint
@pytest.mark.parametrize("kw,match", [(dict(options={"step_size": 0.1}), "options other than max_num_steps"),
                                      (dict(adjoint_rtol=1e-8), "adjoint_rtol"),
                                      (dict(adjoint_alg=ps.Rodas5P()), "adjoint_alg")],
                         ids=["options", "adjoint_rtol", "adjoint_alg"])
def test_odeint_with_julia_refuses_what_it_used_to_drop(kw, match):
    with pytest.raises(InputError, match=f"odeint\\(backend='julia'\\) cannot honour {match}"):
        ps.odeint(lambda t, y: -y, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), backend="julia",
                  **kw)
    t = torch.tensor([0.0, 1.0], dtype=F64, requires_grad=True)
    with pytest.raises(InputError, match="gradients with respect to t"):
        ps.odeint(lambda t, y: -y, torch.ones(2, dtype=F64), t, backend="julia")


@pytest.mark.skipif(importlib.util.find_spec("juliacall") is not None, reason="Julia could start here")
def test_odeint_with_julia_defaults_to_a_julia_sensealg():
    """odeint's native default for explicit methods, DiscreteAdjoint, has no Julia counterpart: with
    backend='julia' the default is odeint_julia's, so the call gets as far as starting Julia."""
    with pytest.raises(JuliaNotAvailableError):
        ps.odeint(lambda t, y: -y, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), backend="julia")
