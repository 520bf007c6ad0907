"""Bad input raises InputError at once, naming the argument and the fix (one test per case)."""

from __future__ import annotations

import math

import pytest
import torch

import pysciml as ps
from pysciml.engine.rhs import RHSError


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

    with pytest.raises(RHSError, match=r"raised ValueError at t=0\.\d+: boom") as info:
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
