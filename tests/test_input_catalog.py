"""The catalog of bad inputs: each raises at once (InputError, naming the argument and the fix) or warns with
what it does instead; one test per case, so none regresses. Numerical failures are in test_retcodes.py and
test_reliability.py."""

from __future__ import annotations

import math

import pytest
import torch

import pysciml as ps


def f(t, u, p):
    return -u


U0 = torch.tensor([1.0, 2.0], dtype=torch.float64)


def test_nonfinite_u0():
    with pytest.raises(ps.InputError, match="u0 contains NaN"):
        ps.ODEProblem(f, torch.tensor([1.0, math.nan]), (0.0, 1.0))


def test_integer_u0():
    with pytest.raises(ps.InputError, match="floating dtype"):
        ps.ODEProblem(f, torch.tensor([1, 2]), (0.0, 1.0))


def test_nonfinite_p():
    with pytest.raises(ps.InputError, match="p contains NaN"):
        ps.ODEProblem(f, U0, (0.0, 1.0), torch.tensor([math.inf]))


def test_tspan_equal():
    with pytest.raises(ps.InputError, match="t0 == t1"):
        ps.ODEProblem(f, U0, (1.0, 1.0))


def test_tspan_nonfinite():
    with pytest.raises(ps.InputError, match="tspan must be finite"):
        ps.ODEProblem(f, U0, (0.0, math.inf))


def test_tspan_wrong_length():
    with pytest.raises(ps.InputError, match="pair"):
        ps.ODEProblem(f, U0, (0.0, 1.0, 2.0))


def test_f_signature():
    with pytest.raises(ps.InputError, match=r"\(t, u, p\) or \(t, u\)"):
        ps.ODEProblem(lambda u: -u, U0, (0.0, 1.0))


@pytest.mark.parametrize("rtol", [0.0, -1e-3, math.nan])
def test_rtol_not_positive(rtol):
    with pytest.raises(ps.InputError, match="rtol must be a positive"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), rtol=rtol)


@pytest.mark.parametrize("atol", [-1e-6, math.nan, math.inf])
def test_atol_negative_or_nonfinite(atol):
    with pytest.raises(ps.InputError, match="atol must be finite and >= 0"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), atol=atol)


def test_atol_zero_is_pure_relative_control():
    """SciPy and OrdinaryDiffEq accept atol=0; a component that is exactly 0 must not divide by zero."""
    u0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    sol = ps.solve(ps.ODEProblem(f, u0, (0.0, 1.0)), ps.Tsit5(), rtol=1e-8, atol=0.0)
    assert sol.retcode == ps.ReturnCode.Success
    assert abs(float(sol.u[-1, 0]) - math.exp(-1.0)) < 1e-7 and float(sol.u[-1, 1]) == 0.0


def test_atol_wrong_shape():
    with pytest.raises(ps.InputError, match="atol must be a scalar or have the state's shape"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), atol=torch.ones(3))


def test_saveat_outside_tspan():
    with pytest.raises(ps.InputError, match="outside tspan"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), saveat=[0.5, 1.5])


def test_saveat_unsorted():
    with pytest.raises(ps.InputError, match="strictly increasing"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), saveat=[0.5, 0.2])


def test_f_returns_non_tensor():
    prob = ps.ODEProblem(lambda t, u, p: [0.0, 0.0], U0, (0.0, 1.0))
    with pytest.raises(ps.InputError, match="must return a torch.Tensor"):
        ps.solve(prob, ps.Tsit5())


def test_f_returns_wrong_shape():
    prob = ps.ODEProblem(lambda t, u, p: torch.cat((u, u)), U0, (0.0, 1.0))
    with pytest.raises(ps.InputError, match=r"returned shape \(4,\) but u has shape \(2,\)"):
        ps.solve(prob, ps.Tsit5())


def test_f_returns_wrong_dtype():
    prob = ps.ODEProblem(lambda t, u, p: (-u).float(), U0, (0.0, 1.0))
    with pytest.raises(ps.InputError, match="dtype"):
        ps.solve(prob, ps.Tsit5())


def test_f_returns_wrong_device():
    prob = ps.ODEProblem(lambda t, u, p: torch.empty(2, dtype=u.dtype, device="meta"), U0, (0.0, 1.0))
    with pytest.raises(ps.InputError, match="device"):
        ps.solve(prob, ps.Tsit5())


def test_f_raising_is_reraised_with_t():
    def bad(t, u, p):
        if t > 0.5:
            raise ValueError("boom")
        return -u

    with pytest.raises(ps.RHSError, match=r"raised ValueError at t=0\.\d+: boom") as info:
        ps.solve(ps.ODEProblem(bad, U0, (0.0, 1.0)), ps.Tsit5())
    assert 0.5 < float(str(info.value).split("at t=")[1].split(":")[0]) < 1.0


def test_jac_wrong_shape():
    prob = ps.ODEProblem(f, U0, (0.0, 1.0), jac=lambda t, u, p: torch.eye(3, dtype=u.dtype))
    with pytest.raises(ps.InputError, match=r"jac must return a tensor of shape \(2, 2\)"):
        ps.solve(prob, ps.Rodas5P())


def test_explicit_method_on_split_problem():
    prob = ps.SplitODEProblem(-torch.eye(2, dtype=torch.float64), f, U0, (0.0, 1.0))
    with pytest.raises(ps.InputError, match="unsplit=True"):
        ps.solve(prob, ps.Tsit5())
    sol = ps.solve(prob, ps.Tsit5(), unsplit=True, rtol=1e-8, atol=1e-10)
    assert torch.allclose(sol.u[-1], U0 * math.exp(-2.0), rtol=1e-6)


def test_algorithm_class_instead_of_instance():
    with pytest.raises(ps.InputError, match=r"write Rodas5P\(\) with parentheses"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Rodas5P)


def test_algorithm_string():
    with pytest.raises(ps.InputError, match="algorithm object"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), "dopri5")


def test_fixed_step_needs_dt():
    with pytest.raises(ps.InputError, match="needs a step size"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), adaptive=False)


def test_adaptive_without_error_estimator():
    with pytest.raises(ps.InputError, match="no error estimator"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.RK4(), adaptive=True)


def test_mass_matrix_needs_rosenbrock():
    prob = ps.ODEProblem(f, U0, (0.0, 1.0), mass_matrix=torch.eye(2, dtype=torch.float64))
    with pytest.raises(ps.InputError, match="mass matrix"):
        ps.solve(prob, ps.KenCarp4())


def test_mass_matrix_wrong_shape():
    with pytest.raises(ps.InputError, match=r"mass_matrix must be a \(2, 2\)"):
        ps.ODEProblem(f, U0, (0.0, 1.0), mass_matrix=torch.eye(3))


def test_linear_operator_wrong_shape():
    with pytest.raises(ps.InputError, match=r"must have shape \(2, 2\)"):
        ps.SplitODEProblem(torch.eye(3), f, U0, (0.0, 1.0))


def test_sol_call_without_dense():
    sol = ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), saveat=[0.0, 1.0])
    with pytest.raises(ps.InputError, match="dense=True"):
        sol(0.5)


def test_sol_call_outside_tspan():
    sol = ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5())
    with pytest.raises(ps.InputError, match="inside tspan"):
        sol(2.0)


def test_batched_needs_batch_dim():
    with pytest.raises(ps.InputError, match="batched=True needs u0"):
        ps.ODEProblem(f, U0, (0.0, 1.0), batched=True)


def test_unknown_backend():
    with pytest.raises(ps.InputError, match="backend must be"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), backend="jax")


def test_float32_rtol_below_eps_warns():
    prob = ps.ODEProblem(f, U0.float(), (0.0, 1.0))
    with pytest.warns(UserWarning, match="below the resolution of torch.float32"):
        ps.solve(prob, ps.Tsit5(), rtol=1e-9)


# ------------------------------------------------------------------------------------------------ issue 10
def test_rhs_error_is_exported():
    from pysciml.engine.rhs import RHSError

    assert ps.RHSError is RHSError and issubclass(ps.RHSError, RuntimeError)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("alg", [ps.Rodas5P(), ps.KenCarp4()], ids=lambda a: a.name)
def test_half_precision_with_implicit_method(dtype, alg):
    with pytest.raises(ps.InputError, match="needs float32 or float64"):
        ps.solve(ps.ODEProblem(f, U0.to(dtype), (0.0, 1.0)), alg)


def test_half_precision_default_tolerances_warn_and_work():
    """odeint's defaults (rtol 1e-7, atol 1e-9) are below float16's resolution: both are raised, with a warning,
    instead of an atol that silently underflows to 0."""
    with pytest.warns(UserWarning) as record:
        ys = ps.odeint(lambda t, y: -y, U0.half(), torch.tensor([0.0, 1.0]))
    messages = " ".join(str(w.message) for w in record)
    assert "underflows to 0 in torch.float16" in messages and "below the resolution of torch.float16" in messages
    assert abs(float(ys[-1, 0]) - math.exp(-1.0)) < 5e-3


def test_tgrad_wrong_shape():
    prob = ps.ODEProblem(lambda t, u, p: -u * t, U0, (0.0, 1.0), tgrad=lambda t, u, p: torch.zeros(3, dtype=u.dtype))
    with pytest.raises(ps.InputError, match=r"tgrad must return df/dt shaped like u \(2,\)"):
        ps.solve(prob, ps.Rodas5P())


def test_tgrad_wrong_signature():
    with pytest.raises(ps.InputError, match="tgrad must take"):
        ps.ODEProblem(f, U0, (0.0, 1.0), tgrad=lambda u: u)


def test_tgrad_two_argument_form_is_accepted():
    """u' = -u + cos t with tgrad(t, u) = -sin t: u = (cos t + sin t)/2 + (u0 - 1/2) exp(-t)."""
    prob = ps.ODEProblem(lambda t, u, p: -u + torch.cos(t), U0, (0.0, 1.0),
                         tgrad=lambda t, u: -torch.sin(t) * torch.ones_like(u))
    sol = ps.solve(prob, ps.Rodas5P(), rtol=1e-8, atol=1e-10)
    exact = (math.cos(1.0) + math.sin(1.0)) / 2 + (U0 - 0.5) * math.exp(-1.0)
    torch.testing.assert_close(sol.u[-1], exact, rtol=1e-7, atol=0)


@pytest.mark.parametrize("which", ["jac", "tgrad"])
def test_raising_jac_or_tgrad_is_wrapped_like_f(which):
    def boom(t, u, p):
        raise ZeroDivisionError("bad")

    prob = ps.ODEProblem(lambda t, u, p: -u * t, U0, (0.0, 1.0), **{which: boom})
    with pytest.raises(ps.RHSError, match=rf"{which}\(t, u, p\) raised ZeroDivisionError at t=0: bad"):
        ps.solve(prob, ps.Rodas5P())


def test_jac_nan_at_the_start():
    prob = ps.ODEProblem(f, U0, (0.0, 1.0), jac=lambda t, u, p: torch.full((2, 2), math.nan, dtype=u.dtype))
    with pytest.raises(ps.InputError, match="jac returned NaN or Inf at t=0"):
        ps.solve(prob, ps.Rodas5P())


@pytest.mark.parametrize("kw,match", [
    (dict(qmax=0.5), "qmax must be a finite number > 1"), (dict(qmax=math.inf), "qmax"),
    (dict(gamma=1.5), "gamma must be a safety factor"), (dict(gamma=0.0), "gamma"),
    (dict(beta1=-0.1), "beta1 must be a finite number >= 0"), (dict(beta2=-0.04), "beta2"),
    (dict(qmin=0.0), "qmin must be in"), (dict(qmin=2.0), "qmin"), (dict(qoldinit=0.0), "qoldinit"),
], ids=lambda x: str(x))
def test_controller_parameters(kw, match):
    with pytest.raises(ps.InputError, match=match):
        ps.PIController(**kw)


def test_controller_wrong_type():
    with pytest.raises(ps.InputError, match="controller must be a PIController"):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), controller={"qmax": 5})


def test_nan_in_mass_matrix():
    M = torch.eye(2, dtype=torch.float64)
    M[0, 1] = math.nan
    with pytest.raises(ps.InputError, match="mass_matrix contains NaN"):
        ps.ODEProblem(f, U0, (0.0, 1.0), mass_matrix=M)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_nan_in_linear_operator(sparse):
    L = -torch.eye(2, dtype=torch.float64)
    L[1, 1] = math.inf
    with pytest.raises(ps.InputError, match="the matrix L\\) contains NaN"):
        ps.SplitODEProblem(L.to_sparse() if sparse else L, f, U0, (0.0, 1.0))


@pytest.mark.parametrize("p", [(torch.ones(2), {"k": torch.tensor([math.nan])}), [1.0, math.inf],
                               {"k": math.nan}], ids=["nested-tensor", "list-float", "dict-float"])
def test_nan_in_nested_p(p):
    with pytest.raises(ps.InputError, match="p contains NaN"):
        ps.ODEProblem(f, U0, (0.0, 1.0), p)


@pytest.mark.parametrize("kw,match", [
    (dict(dtmin=2.0), "not smaller than the span"), (dict(dtmin=0.5, dtmax=0.1), "larger than dtmax"),
    (dict(dtmax=math.nan), "dtmax must be a positive number"), (dict(maxiters=True), "maxiters"),
    (dict(dt=True), "dt must be a nonzero finite number"), (dict(tstops=[0.5, 1.5]), "tstops time 1.5 lies outside"),
], ids=lambda x: str(x))
def test_step_options(kw, match):
    with pytest.raises(ps.InputError, match=match):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), **kw)


@pytest.mark.parametrize("saveat,match", [(True, "ambiguous"), (torch.tensor(2.0), "0-d tensor"),
                                          (-1.0, "must be positive"), (0, "must be positive"),
                                          (torch.tensor([0.5], requires_grad=True), "saveat requires grad")],
                         ids=["bool", "0d", "negative", "zero", "requires-grad"])
def test_saveat_forms(saveat, match):
    with pytest.raises(ps.InputError, match=match):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), saveat=saveat)


def test_tspan_requiring_grad():
    t1 = torch.tensor(1.0, requires_grad=True)
    with pytest.raises(ps.InputError, match="tspan requires grad.*odeint"):
        ps.ODEProblem(f, U0, (0.0, t1))


def test_backsolve_backward_failure_is_named_backward():
    """It used to read 'forward solve for the adjoint failed'."""
    k = torch.tensor(50.0, dtype=torch.float64, requires_grad=True)
    ys = ps.odeint(lambda t, y: -k * y, torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 1.0]),
                   method="dopri5", sensealg=ps.BacksolveAdjoint(), options={"max_num_steps": 150},
                   adjoint_rtol=1e-13, adjoint_atol=1e-15)
    with pytest.raises(ps.SolverError, match=r"backward \(adjoint\) solve from t=1 to t=0 failed: .*MaxIters"):
        ys.sum().backward()


@pytest.mark.parametrize("kw,match", [
    (dict(saveat=None), "needs saveat"), (dict(saveat=[1.0], dense=True), "dense=True cannot be honoured"),
    (dict(saveat=[1.0], sensealg=ps.DiscreteAdjoint(checkpoints=-2)), "positive integer"),
], ids=["no-saveat", "dense", "negative"])
def test_checkpointed_solve_refuses_what_it_cannot_honour(kw, match):
    """solve used to ignore DiscreteAdjoint(checkpoints=K) without a word; it honours it now, and refuses what a
    checkpointed solve cannot give."""
    kw = {"sensealg": ps.DiscreteAdjoint(checkpoints=3), **kw}
    with pytest.raises(ps.InputError, match=match):
        ps.solve(ps.ODEProblem(f, U0, (0.0, 1.0)), ps.Tsit5(), **kw)
