"""The exact arguments the Python side hands to PySciML.jl, checked against the parsed Julia signatures.

No Julia runs here and nothing is mocked: ``plan_solve`` and ``plan_odeint`` are the functions
``solve(..., backend="julia")`` and ``odeint_julia`` call to build their Julia calls before starting Julia.
For every algorithm with a Julia counterpart (LU and GMRES, every ESDIRK, FIRK and BDF option), every sensitivity
algorithm, with and without
parameters, scalar and per-component ``atol``, split problems and mass matrices, the keyword set is checked
exactly, against the keywords the Julia entry point (and ``make_algorithm``, through its
``algorithm_options...`` splat) declares, and against their declared types; the tensors' shapes and layout
are checked against what the Julia side reads (flat ``u0``, ``M.T`` for ``M``, ``(S, n)`` gradients).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from test_julia_static import julia_source

import pysciml as ps
from pysciml import algorithms, sensealg
from pysciml.algorithms import ESDIRKAlgorithm, IMEXAlgorithm, ImplicitAlgorithm, RosenbrockAlgorithm
from pysciml.algorithms_bdf import BDFAlgorithm
from pysciml.algorithms_firk import FIRKAlgorithm
from pysciml.errors import InputError
from pysciml.julia._adjoint import plan_odeint
from pysciml.julia._arguments import adjoint_settings
from pysciml.julia._callbacks import DLPackView, TorchCallbacks
from pysciml.julia._mapping import ALL_ALGORITHMS, algorithm_options
from pysciml.julia._retcodes import JULIA_RETCODES, retcode_from_julia
from pysciml.julia._solve import plan_solve
from pysciml.linsolve_options import GMRES
from pysciml.solution import ReturnCode

F64 = torch.float64
JULIA_TYPES = {  # declared Julia keyword type -> what the Python value must be (PythonCall converts it)
    "Real": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Bool": lambda v: isinstance(v, bool),
    "AbstractString": lambda v: isinstance(v, str),
}
STEP_KEYS = {"reltol", "abstol", "saveat", "dense", "adaptive", "maxiters", "dtmin"}
GMRES_KEYS = {"linsolve", "restart", "gmres_rtol", "gmres_itmax"}
ESDIRK_KEYS = {"newton_kappa", "max_newton_iters", "smooth_est"}
FIRK_KEYS = {"linsolve", "max_newton_iters", "jac_reuse"}  # + newton_kappa unless None, num_stages for Gauss
BDF_KEYS = {"max_order", "max_newton_iters"}
ROUTED = [cls for cls in ALL_ALGORITHMS.values() if cls.julia_name]  # every algorithm the Julia engine runs


def julia_keywords(entry: str) -> dict:
    """Keyword parameters of a PySciML.jl entry point, with ``algorithm_options...`` expanded to the
    keywords of ``make_algorithm`` (where the Julia code forwards them)."""
    src = julia_source()
    params = dict(src.keyword_params(entry))
    if params.pop("algorithm_options...", None) is not None:
        params.update(src.keyword_params("make_algorithm"))
    return params


def assert_matches_julia(entry: str, args: tuple, kwargs: dict) -> None:
    """The call ``entry(*args; kwargs...)`` has a Julia method: arity, names, required keywords, types."""
    params = julia_keywords(entry)
    assert len(args) in julia_source().arities(entry), (entry, len(args))
    assert set(kwargs) <= set(params), f"{entry}: Julia has no keywords {set(kwargs) - set(params)}"
    missing = {k for k, v in params.items() if v.required} - set(kwargs)
    assert not missing, f"{entry}: required keywords {missing} not passed"
    for key, value in kwargs.items():
        check = JULIA_TYPES.get(params[key].type or "")
        assert check is None or check(value), f"{entry}: {key}::{params[key].type} got {value!r}"


def tensor_of(view: object) -> torch.Tensor:
    assert isinstance(view, DLPackView)
    assert view.tensor.is_contiguous() and not view.tensor.requires_grad
    return view.tensor


# --------------------------------------------------------------------------------------------- problems
def decay(t, u, p):
    return -p * u


def rober_dae(t, u, p):
    y1, y2, y3 = u.unbind()
    return torch.stack((-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 3e7 * y2 * y2 - 1e4 * y2 * y3, y1 + y2 + y3 - 1))


def plain_problem() -> ps.ODEProblem:
    return ps.ODEProblem(decay, torch.tensor([1.0, 2.0, 3.0], dtype=F64), (0.0, 1.0), torch.tensor(0.5, dtype=F64))


def split_problem() -> ps.SplitODEProblem:
    L = torch.tensor([[-2.0, 1.0], [1.0, -2.0]], dtype=F64)
    return ps.SplitODEProblem(L, lambda t, u, p: torch.sin(u), torch.tensor([1.0, 0.0], dtype=F64), (0.0, 1.0))


def dae_problem(u0: list[float]) -> ps.ODEProblem:
    M = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=F64))
    return ps.ODEProblem(rober_dae, torch.tensor(u0, dtype=F64), (0.0, 1.0), mass_matrix=M)


def variants(cls: type) -> list:
    """Default construction, and for implicit methods GMRES (not FIRK: dense LU only) and every non-default
    ESDIRK, FIRK and BDF option."""
    out = [cls()]
    if issubclass(cls, ImplicitAlgorithm) and not issubclass(cls, FIRKAlgorithm):
        out.append(cls(linsolve=GMRES(rtol=1e-8, restart=7, maxiter=3)))
    if issubclass(cls, ESDIRKAlgorithm):
        out.append(cls(smooth_est=True, newton_kappa=0.05, max_newton_iters=4))
    if issubclass(cls, FIRKAlgorithm):
        out.append(cls(newton_kappa=0.05, max_newton_iters=4, jac_reuse=0.0))
    if issubclass(cls, BDFAlgorithm):
        out.append(cls(max_order=3, max_newton_iters=6))
    return out


def expected_algorithm_keys(alg) -> set[str]:
    keys: set[str] = set()
    if isinstance(alg, ImplicitAlgorithm):
        keys |= GMRES_KEYS if isinstance(alg.linsolve, GMRES) else {"linsolve"}
    if isinstance(alg, ESDIRKAlgorithm):
        keys |= ESDIRK_KEYS
    if isinstance(alg, FIRKAlgorithm):
        keys |= FIRK_KEYS | ({"newton_kappa"} if alg.newton_kappa is not None else set())
        keys |= {"num_stages"} if alg.julia_name == "GaussLegendre" else set()
    if isinstance(alg, BDFAlgorithm):
        keys |= BDF_KEYS
    return keys


def step_kwargs(alg) -> dict:
    return {} if alg.is_adaptive else {"adaptive": False, "dt": 0.01}


ALL_VARIANTS = [alg for cls in ROUTED for alg in variants(cls)]


# ------------------------------------------------------------------------------------------- solve_ode
@pytest.mark.parametrize("alg", ALL_VARIANTS, ids=repr)
def test_solve_ode_keywords_for_every_algorithm(alg):
    prob = plain_problem()
    plan = plan_solve(prob, alg, rtol=1e-7, atol=1e-9, saveat=[0.0, 0.5, 1.0], **step_kwargs(alg))
    (call,) = plan.calls
    expected = STEP_KEYS | expected_algorithm_keys(alg) | ({"dt"} if not alg.is_adaptive else set())
    assert set(call.kwargs) == expected
    assert_matches_julia("solve_ode", call.args, call.kwargs)
    callbacks, u0, t0, t1, name = call.args
    assert isinstance(callbacks, TorchCallbacks) and name == alg.julia_name and (t0, t1) == (0.0, 1.0)
    assert torch.equal(tensor_of(u0), prob.u0) and tensor_of(u0).shape == (3,)
    saveat = tensor_of(call.kwargs["saveat"])
    assert saveat.device.type == "cpu" and saveat.shape == (3,)
    assert call.kwargs["abstol"] == 1e-9 and call.kwargs["reltol"] == 1e-7
    if "linsolve" in call.kwargs:
        assert call.kwargs["linsolve"] in ("lu", "gmres")


def test_every_algorithm_option_reaches_julia():
    """Changing any option of an algorithm (other than ``autodiff``, which selects how torch computes the
    derivatives Julia receives) changes what Julia is sent: nothing is silently dropped."""
    for cls in ROUTED:
        gmres = issubclass(cls, ImplicitAlgorithm) and not issubclass(cls, FIRKAlgorithm)
        base = cls(linsolve=GMRES()) if gmres else cls()
        for field in dataclasses.fields(cls):
            if field.name in ("autodiff", "linsolve"):
                continue
            value = getattr(base, field.name)
            if value is None:  # FIRK newton_kappa: radau5's default -> a given kappa
                other = 0.05
            elif isinstance(value, bool):
                other = not value
            elif isinstance(value, float):
                other = value * 0.5
            else:
                other = value - 1 if field.name == "max_order" else value + 1
            changed = dataclasses.replace(base, **{field.name: other})
            assert algorithm_options(changed) != algorithm_options(base), (cls.__name__, field.name)
        if gmres:
            for field in dataclasses.fields(GMRES):
                value = getattr(GMRES(), field.name)
                if field.name == "precondition":  # native only: refused, never dropped
                    with pytest.raises(InputError, match="precondition"):
                        algorithm_options(dataclasses.replace(base, linsolve=GMRES(precondition="jacobi")))
                    continue
                other = dataclasses.replace(base, linsolve=dataclasses.replace(
                    GMRES(), **{field.name: type(value)(value * 0.5 if isinstance(value, float) else value + 1)}))
                assert algorithm_options(other) != algorithm_options(base), (cls.__name__, "GMRES", field.name)
            with pytest.raises(InputError, match="sparse"):
                algorithm_options(dataclasses.replace(base, linsolve=ps.SparseLU()))
    accepted = set(julia_keywords("solve_ode"))
    sent = set().union(*(algorithm_options(alg) for alg in ALL_VARIANTS))
    assert sent == set(julia_source().keyword_params("make_algorithm")) and sent <= accepted


def test_vector_atol_and_step_options():
    prob = plain_problem()
    atol = torch.tensor([1e-6, 1e-9, 1e-12], dtype=F64)
    plan = plan_solve(prob, algorithms.Rodas5P(), atol=atol, dt=1e-3, dtmax=0.1, dtmin=1e-12, maxiters=77)
    (call,) = plan.calls
    assert set(call.kwargs) == STEP_KEYS | {"dt", "dtmax", "linsolve"}
    assert_matches_julia("solve_ode", call.args, call.kwargs)
    assert torch.equal(tensor_of(call.kwargs["abstol"]), atol)  # the forward solve takes a length-n vector
    assert call.kwargs["saveat"] is None and call.kwargs["dense"] is True
    assert (call.kwargs["dt"], call.kwargs["dtmax"], call.kwargs["maxiters"]) == (1e-3, 0.1, 77)
    backwards = plan_solve(prob.remake(tspan=(1.0, 0.0)), algorithms.Tsit5(), dt=1e-3).calls[0]
    assert backwards.kwargs["dt"] == -1e-3  # signed in the direction of integration


def test_split_problem_sends_both_parts():
    prob = split_problem()
    for alg in variants(algorithms.KenCarp4):
        (call,) = plan_solve(prob, alg).calls
        assert set(call.kwargs) == STEP_KEYS | expected_algorithm_keys(alg) | {"explicit"}
        assert_matches_julia("solve_ode", call.args, call.kwargs)
        implicit, explicit = call.args[0], call.kwargs["explicit"]
        assert isinstance(implicit, TorchCallbacks) and isinstance(explicit, TorchCallbacks)
        assert implicit is not explicit
    unsplit = plan_solve(prob, algorithms.Rodas5P(), unsplit=True).calls[0]
    assert "explicit" not in unsplit.kwargs


def test_mass_matrix_is_sent_transposed_and_contiguous():
    M = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    prob = ps.ODEProblem(rober_dae, torch.tensor([1.0, 0.0, 0.0], dtype=F64), (0.0, 1.0), mass_matrix=M)
    for alg in (algorithms.Rodas5P(), algorithms.Rosenbrock23(linsolve=GMRES())):
        (call,) = plan_solve(prob, alg, atol=1e-10).calls
        assert set(call.kwargs) == STEP_KEYS | expected_algorithm_keys(alg) | {"mass"}
        assert_matches_julia("solve_ode", call.args, call.kwargs)
        sent = tensor_of(call.kwargs["mass"])
        # row-major M.T in memory reads as the column-major M in Julia
        assert torch.equal(sent, M.T) and sent.shape == (3, 3)
        assert torch.equal(sent.reshape(-1).reshape(3, 3).T, M)


def test_batched_trajectories_get_their_own_atol_row():
    u0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    prob = ps.ODEProblem(lambda t, u, p: -u, u0, (0.0, 1.0), batched=True)
    atol = torch.tensor([[1e-6, 1e-6], [1e-8, 1e-9]], dtype=F64)
    plan = plan_solve(prob, algorithms.Tsit5(), atol=atol)
    assert len(plan.calls) == 2
    assert plan.calls[0].kwargs["abstol"] == 1e-6
    assert torch.equal(tensor_of(plan.calls[1].kwargs["abstol"]), atol[1])
    for call in plan.calls:
        assert_matches_julia("solve_ode", call.args, call.kwargs)
        assert tensor_of(call.args[1]).shape == (2,)


# ---------------------------------------------------------------------------- differentiable solves
SENSEALGS = [sensealg.InterpolatingAdjoint(), sensealg.InterpolatingAdjoint(checkpointing=True),
             sensealg.QuadratureAdjoint(), sensealg.QuadratureAdjoint(abstol=1e-11, reltol=1e-9),
             sensealg.GaussAdjoint(), sensealg.BacksolveAdjoint()]
ATOLS = [1e-9, torch.tensor([1e-6, 1e-9, 1e-12], dtype=F64)]


def run_for(sense, alg, atol, with_params: bool):
    prob = plain_problem()
    y0 = prob.u0.clone().requires_grad_(True)
    k = torch.tensor(0.5, dtype=F64, requires_grad=with_params)
    return plan_odeint(decay, y0, torch.linspace(0.0, 1.0, 4, dtype=F64), p=k, alg=alg, sensealg=sense,
                       rtol=1e-7, atol=atol)


@pytest.mark.parametrize("sense", SENSEALGS, ids=repr)
@pytest.mark.parametrize("atol", ATOLS, ids=["scalar-atol", "vector-atol"])
@pytest.mark.parametrize("with_params", [True, False], ids=["params", "no-params"])
@pytest.mark.parametrize("alg", [algorithms.Tsit5(), algorithms.KenCarp4(linsolve=GMRES())], ids=repr)
def test_adjoint_gradients_keywords(sense, atol, with_params, alg):
    run = run_for(sense, alg, atol, with_params)
    grads = torch.ones(4, 3, dtype=F64)
    args, kwargs = run.adjoint_call("<julia solution>", grads)
    assert_matches_julia("adjoint_gradients", args, kwargs)
    sol, t, g, name, alg_name = args
    assert sol == "<julia solution>" and alg_name == alg.julia_name
    assert tensor_of(t).shape == (4,) and tensor_of(g).shape == (4, 3)  # (S, n): Julia's n × S matrix
    substituted = isinstance(sense, sensealg.GaussAdjoint) and not with_params
    assert name == ("QuadratureAdjoint" if substituted else sense.julia_name)
    structural = {"checkpointing"} if hasattr(sense, "checkpointing") and not substituted else set()
    assert set(kwargs) == {"reltol", "abstol"} | structural | expected_algorithm_keys(alg)
    # the adjoint state is not the forward state: its tolerances are scalars
    assert isinstance(kwargs["abstol"], float) and isinstance(kwargs["reltol"], float)
    if isinstance(sense, sensealg.QuadratureAdjoint):
        assert (kwargs["abstol"], kwargs["reltol"]) == (sense.abstol, sense.reltol)
    else:
        smallest = float(torch.as_tensor(atol, dtype=F64).min())
        assert kwargs["abstol"] == smallest and kwargs["reltol"] == 1e-7


@pytest.mark.parametrize("with_params", [True, False], ids=["params", "no-params"])
@pytest.mark.parametrize("atol", ATOLS, ids=["scalar-atol", "vector-atol"])
def test_forward_solve_of_a_differentiable_solve(with_params, atol):
    run = run_for(sensealg.InterpolatingAdjoint(), algorithms.Rodas5P(), atol, with_params)
    args, kwargs = run.forward_call()
    assert_matches_julia("solve_ode", args, kwargs)
    assert set(kwargs) == {"reltol", "abstol", "saveat", "dense", "maxiters", "linsolve"} | (
        {"params"} if with_params else set())
    assert kwargs["dense"] is True and tensor_of(kwargs["saveat"]).shape == (4,)
    if with_params:
        assert tensor_of(kwargs["params"]).shape == (1,)
    if isinstance(atol, torch.Tensor):
        assert torch.equal(tensor_of(kwargs["abstol"]), atol)


def test_default_sensealg_of_implicit_methods_follows_the_forward_tolerances():
    atol = torch.tensor([1e-6, 1e-9, 1e-12], dtype=F64)
    run = run_for(None, algorithms.Rodas5P(), atol, True)
    assert run.sensealg_name == "QuadratureAdjoint"
    assert run.sensealg_options == {"reltol": 1e-7, "abstol": 1e-12}
    assert run_for(None, algorithms.Tsit5(), 1e-9, True).sensealg_name == "InterpolatingAdjoint"


def test_quadrature_tolerances_are_validated():
    with pytest.raises(InputError, match=r"QuadratureAdjoint\(abstol=-1.0\)"):
        adjoint_settings(sensealg.QuadratureAdjoint(abstol=-1.0), n_params=1, rtol=1e-6,
                         atol=torch.ones(2, dtype=F64))
    with pytest.raises(InputError, match="DiscreteAdjoint"):
        run_for(sensealg.DiscreteAdjoint(), algorithms.Tsit5(), 1e-9, True)


# ------------------------------------------------------------------------------- torch callbacks
def test_jvp_callback_is_the_jacobian_times_v():
    """Julia's matrix-free GMRES applies the ``jvp`` hook: it must be ``J(u) v`` (autodiff, finite
    differences with ``autodiff=False``, ``L v`` for a matrix ``f_implicit``)."""
    def f(t, u, p):
        return torch.stack((u[0] * u[1], torch.sin(u[2]) + t * u[0], u[1] ** 2))

    prob = ps.ODEProblem(f, torch.tensor([1.0, 2.0, 0.5], dtype=F64), (0.0, 1.0))
    u, v = torch.tensor([0.3, -1.2, 0.7], dtype=F64), torch.tensor([1.0, 0.5, -2.0], dtype=F64)
    exact = torch.autograd.functional.jacobian(lambda x: f(torch.tensor(0.25, dtype=F64), x, None), u) @ v
    for alg, tol in ((algorithms.Rodas5P(linsolve=GMRES()), 1e-14), (algorithms.Rodas5P(autodiff=False), 1e-6)):
        callbacks = plan_solve(prob, alg).calls[0].args[0]
        out = torch.empty(3, dtype=F64)
        callbacks.jvp(out, v, u, 0.25)
        assert torch.allclose(out, exact, rtol=tol, atol=tol), (alg, out, exact)
    split = split_problem()
    implicit = plan_solve(split, algorithms.KenCarp4(linsolve=GMRES())).calls[0].args[0]
    out = torch.empty(2, dtype=F64)
    implicit.jvp(out, torch.tensor([1.0, 3.0], dtype=F64), torch.tensor([5.0, 6.0], dtype=F64), 0.0)
    assert torch.equal(out, split.linear_operator @ torch.tensor([1.0, 3.0], dtype=F64))


def test_callback_errors_are_remembered_for_python():
    def f(t, u, p):
        if float(t) > 0.5:
            raise ZeroDivisionError("boom")
        return -u

    prob = ps.ODEProblem(f, torch.ones(2, dtype=F64), (0.0, 1.0))
    callbacks = plan_solve(prob, algorithms.Rodas5P()).calls[0].args[0]
    with pytest.raises(Exception, match="boom"):
        callbacks.jvp(torch.empty(2, dtype=F64), torch.ones(2, dtype=F64), torch.ones(2, dtype=F64), 0.9)
    assert callbacks.error is not None and "boom" in str(callbacks.error)


# ------------------------------------------------------------------------------ DAE initial values
def test_inconsistent_dae_u0_is_refused_before_julia_starts():
    """OrdinaryDiffEq v1 adjusted an inconsistent u0 and v2 raises; pysciml checks it itself (SciMLBase's
    CheckInit rule) and tells Julia to start from u0 unchanged (NoInit)."""
    with pytest.raises(InputError, match=r"u0 is inconsistent.*zero rows \[2\].*f\[2\] = -0.5"):
        ps.solve(dae_problem([0.5, 0.0, 0.0]), algorithms.Rodas5P(), backend="julia", atol=1e-8)
    plan = plan_solve(dae_problem([1.0, 0.0, 0.0]), algorithms.Rodas5P(), atol=1e-8)
    assert "mass" in plan.calls[0].kwargs
    # the residual is measured in units of atol, per component, as CheckInit does
    plan_solve(dae_problem([1.0 - 1e-9, 0.0, 0.0]), algorithms.Rodas5P(), atol=1e-8)
    with pytest.raises(InputError, match="u0 is inconsistent"):
        plan_solve(dae_problem([1.0 - 1e-9, 0.0, 0.0]), algorithms.Rodas5P(),
                   atol=torch.tensor([1e-8, 1e-8, 1e-12], dtype=F64))


def test_mass_matrix_without_algebraic_equations_is_not_checked():
    M = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=F64)
    prob = ps.ODEProblem(lambda t, u, p: torch.stack((u[0] + 100, u[1])), torch.ones(2, dtype=F64), (0.0, 1.0),
                         mass_matrix=M)
    assert "mass" in plan_solve(prob, algorithms.Rodas5P()).calls[0].kwargs


# ---------------------------------------------------------------------------------- return codes
SCIMLBASE_RETCODES = {  # SciMLBase 3.49 src/retcodes.jl: every ReturnCode and successful_retcode
    "Default": False, "Success": True, "Terminated": True, "DtNaN": False, "MaxIters": False,
    "MaxNumSub": False, "DtLessThanMin": False, "Unstable": False, "InitialFailure": False,
    "ConvergenceFailure": False, "Failure": False, "ExactSolutionLeft": True, "ExactSolutionRight": True,
    "FloatingPointLimit": True, "Infeasible": False, "MaxTime": False, "InternalLineSearchFailed": False,
    "ShrinkThresholdExceeded": False, "Stalled": False, "StalledSuccess": True,
    "InternalLinearSolveFailed": False, "APosterioriSafetyFailure": False,
}


def test_every_scimlbase_return_code_is_mapped():
    assert set(JULIA_RETCODES) == set(SCIMLBASE_RETCODES)
    for name, success in SCIMLBASE_RETCODES.items():
        assert bool(retcode_from_julia(name)) == success, name  # ReturnCode.__bool__: Success or Terminated
    assert retcode_from_julia("Terminated") is ReturnCode.Terminated


def test_default_and_unknown_return_codes_are_failures():
    assert retcode_from_julia("Default") is ReturnCode.ConvergenceFailure
    assert retcode_from_julia("SomethingNew") is ReturnCode.ConvergenceFailure
    assert retcode_from_julia("DtNaN") is ReturnCode.Unstable
    assert retcode_from_julia("MaxIters") is ReturnCode.MaxIters
    assert not retcode_from_julia("Default")  # ReturnCode.__bool__: only Success and Terminated are truthy


def test_algorithm_families_are_known():
    """The expected keyword sets above assume these families; a new family needs its own expectation."""
    for cls in ROUTED:
        if issubclass(cls, ImplicitAlgorithm):
            assert issubclass(cls, (RosenbrockAlgorithm, ESDIRKAlgorithm, FIRKAlgorithm, BDFAlgorithm)), cls
    assert all(issubclass(c, ESDIRKAlgorithm) for c in ROUTED if issubclass(c, IMEXAlgorithm))
    assert math.isclose(algorithm_options(algorithms.Kvaerno5(linsolve=GMRES()))["gmres_rtol"], 1e-10)
