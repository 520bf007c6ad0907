"""Differentiable Julia solves: a ``torch.autograd.Function`` whose backward pass is SciMLSensitivity.

Forward: a dense Julia solve with the flattened parameters as ``p``, values at the requested times by
the method's interpolant. Backward: ``adjoint_sensitivities`` with the incoming gradients as the
discrete loss and every vector-Jacobian product supplied by torch through the ``ODEFunction``'s
``vjp``/``vjp_p`` hooks (without them SciMLSensitivity would try to differentiate the Python callback
with Julia AD and silently return zeros).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from .._validate import (
    SolveOptions,
    adjoint_atol,
    check_algorithm,
    check_solve,
    check_times,
    check_tolerances,
    solve_message,
)
from ..algorithms import Algorithm, ImplicitAlgorithm, Tsit5
from ..engine.rhs import RHS
from ..errors import InputError, SolverError
from ..problem import ODEProblem, SplitODEProblem, tensors_in
from ..sensealg import DiscreteAdjoint, InterpolatingAdjoint, QuadratureAdjoint, SensitivityAlgorithm
from ..sensitivity.problem_adjoint import adjoint_parameters
from ..solution import ODESolution, ReturnCode, Stats
from ._arguments import adjoint_call, adjoint_settings, solve_ode_call
from ._callbacks import TorchCallbacks, reraise_callback_error
from ._cuda import ensure_cuda
from ._mapping import julia_algorithm
from ._retcodes import failure_part, retcode_from_julia, stats_from_julia
from ._startup import start

__all__ = ["odeint_julia", "plan_odeint", "plan_solve_adjoint", "solve_adjoint_julia"]

Tensor = torch.Tensor


def _differentiable(p: Any, func: Any, adjoint_params: Iterable[Tensor] | None) -> tuple[Tensor, ...]:
    """Tensors requiring grad that the solution depends on: those in ``p`` and ``adjoint_params``
    (default: ``func.parameters()`` when ``func`` is an ``nn.Module``), without duplicates."""
    extra = list(adjoint_params) if adjoint_params is not None else (
        list(func.parameters()) if isinstance(func, torch.nn.Module) else [])
    seen: set[int] = set()
    out = []
    for x in [*tensors_in(p), *extra]:
        if x.requires_grad and id(x) not in seen:
            seen.add(id(x))
            out.append(x)
    return tuple(out)


class _Run:
    """One differentiable solve: the forward Julia solve, then its adjoint on demand.

    Both calls are built by :mod:`pysciml.julia._arguments` (:meth:`forward_call`, :meth:`adjoint_call`);
    the sensitivity algorithm and its tolerances are settled here, before Julia starts. ``strict``: the
    parameters were discovered, so a tensor requiring grad outside them is refused in a vector-Jacobian
    product. ``throw=False``: a failed forward solve returns the save times it reached (``reached``, with its
    ``code`` and ``stats``) instead of raising, and the backward pass refuses.
    """

    def __init__(self, prob: ODEProblem, t: Tensor, alg: Algorithm, sensealg: SensitivityAlgorithm,
                 rtol: float, atol: Tensor, params: tuple[Tensor, ...], maxiters: int, *, strict: bool = False,
                 throw: bool = True) -> None:
        self.prob, self.t, self.alg, self.params = prob, t, alg, params
        self.rtol, self.atol, self.maxiters, self.throw = rtol, atol[0], maxiters, throw
        rhs = RHS(prob.f, prob.f_takes_p, prob, Stats(), jac=prob.jac, jac_takes_p=prob.jac_takes_p,
                  tgrad=prob.tgrad, autodiff=alg.autodiff if isinstance(alg, ImplicitAlgorithm) else True)
        self.callbacks = TorchCallbacks(rhs, params, strict=strict)
        self.sensealg_name, self.sensealg_options = adjoint_settings(
            sensealg, n_params=self.callbacks.n_params, rtol=rtol, atol=self.atol)
        self.pkg: Any = None
        self.sol: Any = None
        self.code, self.stats, self.reached = ReturnCode.Success, Stats(), t
        self.failure: SolverError | None = None

    @property
    def label(self) -> str:
        """How messages name this solve."""
        return f"{self.alg!r} (Julia {julia_algorithm(self.alg)}, gradients by {self.sensealg_name})"

    def forward_call(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments of the forward ``solve_ode``: dense, with the flattened parameters as ``p``."""
        u0 = self.prob.u0
        theta = (torch.cat([p.detach().reshape(-1).to(u0.dtype) for p in self.params]).to(u0.device)
                 if self.params else None)
        return solve_ode_call(self.callbacks, None, self.prob, self.alg, rtol=self.rtol, atol=self.atol,
                              save_times=self.t, dense=True, options={"maxiters": self.maxiters}, params=theta)

    def adjoint_call(self, sol: Any, grads: Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments of ``adjoint_gradients`` for the incoming gradients ``grads (S, n)``."""
        return adjoint_call(sol, self.t, grads, self.alg, self.sensealg_name, self.sensealg_options)

    def forward(self) -> Tensor:
        self.pkg = start()
        if self.prob.u0.is_cuda:
            ensure_cuda(self.pkg, self.prob.u0.device)
        args, kwargs = self.forward_call()
        try:
            t, u, code, counts, self.sol = self.pkg.solve_ode(*args, **kwargs)
        except Exception as exc:
            reraise_callback_error(exc, self.callbacks)
            raise
        self.code, self.stats = retcode_from_julia(str(code)), stats_from_julia(counts)
        if u.shape[0] != self.t.shape[0] and self.code is ReturnCode.Success:
            self.code = ReturnCode.ConvergenceFailure  # short of the last save time: never a success
        if self.code is not ReturnCode.Success:
            self.failure = SolverError(solve_message(self.alg, self.stats, [(0, failure_part(str(code), t))],
                                                     self.code.value, batched=False, label=self.label)
                                       + " No gradient of a failed solve.", self.code)
            if self.throw:
                raise self.failure
            self.reached = t.to(self.t.device)
        return u.reshape(u.shape[0], *self.prob.state_shape)

    def backward(self, grad_out: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(dL/du0, [dL/dparam ...])`` for ``dL/du(t)`` = ``grad_out`` (shape ``(S, *state)``)."""
        if self.failure is not None:
            raise SolverError(str(self.failure), self.code)
        s, n = self.t.shape[0], self.prob.state_size
        grads = grad_out.detach().reshape(s, n).to(self.prob.u0.dtype)
        args, kwargs = self.adjoint_call(self.sol, grads)
        try:
            du0, dp = self.pkg.adjoint_gradients(*args, **kwargs)
        except Exception as exc:
            reraise_callback_error(exc, self.callbacks)
            raise
        dparams: list[Tensor] = []
        if self.params:
            flat = dp.to(self.prob.u0.device)
            offset = 0
            for p in self.params:
                dparams.append(flat[offset:offset + p.numel()].reshape(p.shape).to(p.dtype))
                offset += p.numel()
        return du0.reshape(self.prob.state_shape), dparams


class _JuliaAdjoint(torch.autograd.Function):
    """``u(t) = solve(u0, params)``; backward by SciMLSensitivity with torch-supplied VJPs."""

    @staticmethod
    def forward(ctx: Any, run: _Run, u0: Tensor, *params: Tensor) -> Tensor:
        ctx.run = run
        return run.forward()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Any, ...]:
        du0, dparams = ctx.run.backward(grad_out)
        return (None, du0.to(grad_out.dtype), *dparams)


def odeint_julia(
    func: Callable[..., Tensor],
    y0: Tensor,
    t: Tensor | Sequence[float],
    *,
    p: Any = None,
    alg: Algorithm | None = None,
    sensealg: SensitivityAlgorithm | None = None,
    rtol: float = 1e-6,
    atol: float | Tensor = 1e-8,
    adjoint_params: Iterable[Tensor] | None = None,
    jac: Callable[..., Tensor] | None = None,
    tgrad: Callable[..., Tensor] | None = None,
    maxiters: int = 100_000,
) -> Tensor:
    """Solve ``dy/dt = func(t, y, p)`` with DifferentialEquations.jl, differentiably (SciMLSensitivity).

    Args:
        func: ``func(t, y, p)`` or ``func(t, y)``, may be an ``nn.Module``.
        y0: initial state, float32/float64 tensor of any (unbatched) shape, CPU or CUDA.
        t: save times, shape ``(S,)``, strictly monotone; the solve runs from ``t[0]`` to ``t[-1]``.
        p: passed to ``func``; tensors in it that require grad are differentiated.
        alg: the method (default ``Tsit5()``); the adjoint ODE is solved backwards by the same method.
        sensealg: ``InterpolatingAdjoint()`` (default for explicit methods), ``QuadratureAdjoint()``
            (default for implicit ones, with ``abstol``/``reltol`` from ``atol``/``rtol``: its adjoint ODE has
            ``n`` unknowns, not ``n + n_params``, so its finite-difference Jacobian is cheap),
            ``GaussAdjoint()`` or ``BacksolveAdjoint()``. A given ``QuadratureAdjoint(abstol, reltol)`` sets
            the tolerances of its backward solve and of its quadrature (SciMLSensitivity's meaning). Without
            differentiable parameters ``GaussAdjoint()`` runs as ``QuadratureAdjoint`` (the same adjoint ODE).
        rtol, atol: tolerances of the forward solve; the other adjoints solve backwards with ``rtol`` and
            the smallest component of ``atol`` (the adjoint state is not the forward state, so a
            per-component ``atol`` cannot be carried over).
        adjoint_params: further tensors to differentiate (default: ``func.parameters()`` for modules).
        jac, tgrad: optional analytic Jacobian / time derivative of ``func`` (as for ``ODEProblem``).
        maxiters: most steps of each solve.

    Returns:
        ``y(t)`` of shape ``(S, *y0.shape)``, dtype and device of ``y0``, differentiable with respect to
        ``y0``, the tensors in ``p`` and ``adjoint_params``.

    Raises:
        JuliaNotAvailableError: Julia cannot start here.
        InputError: invalid input or a sensitivity algorithm with no Julia counterpart (``DiscreteAdjoint``).
        SolverError: the forward solve failed.
    """
    run = plan_odeint(func, y0, t, p=p, alg=alg, sensealg=sensealg, rtol=rtol, atol=atol,
                      adjoint_params=adjoint_params, jac=jac, tgrad=tgrad, maxiters=maxiters)
    return _JuliaAdjoint.apply(run, y0, *run.params)


def plan_odeint(func: Callable[..., Tensor], y0: Tensor, t: Tensor | Sequence[float], **options: Any) -> _Run:
    """Validate the arguments of :func:`odeint_julia` (the same, by keyword) and settle the algorithm, the
    sensitivity algorithm and the tolerances, without starting Julia.

    Returns:
        The :class:`_Run` whose :meth:`~_Run.forward_call` and :meth:`~_Run.adjoint_call` build the Julia calls.

    Raises:
        InputError: invalid input or a sensitivity algorithm with no Julia counterpart.
    """
    unknown = set(options) - {"p", "alg", "sensealg", "rtol", "atol", "adjoint_params", "jac", "tgrad", "maxiters"}
    if unknown:
        raise InputError(f"unknown option(s) {sorted(unknown)} for odeint_julia")
    if not isinstance(y0, Tensor):
        raise InputError(f"y0 must be a torch.Tensor, got {type(y0).__name__}")
    tt = check_times(t, y0).detach().to(y0.dtype)
    p = options.get("p")
    prob = ODEProblem(func, y0.detach(), (float(tt[0]), float(tt[-1])), p, jac=options.get("jac"),
                      tgrad=options.get("tgrad"))
    alg = options.get("alg")
    alg = check_algorithm(Tsit5() if alg is None else alg, prob, False)
    rtol_f, atol_t = check_tolerances(options.get("rtol", 1e-6), options.get("atol", 1e-8), prob)
    sensealg = options.get("sensealg") or _default_sensealg(alg, rtol_f, atol_t)
    params = _differentiable(p, func, options.get("adjoint_params"))
    return _Run(prob, tt.to(y0.device), alg, sensealg, rtol_f, atol_t, params, int(options.get("maxiters", 100_000)))


def _default_sensealg(alg: Algorithm, rtol: float, atol: Tensor) -> SensitivityAlgorithm:
    """``QuadratureAdjoint`` with the forward tolerances for implicit methods (``n`` adjoint unknowns: a cheap
    finite-difference Jacobian), ``InterpolatingAdjoint()`` otherwise."""
    if isinstance(alg, ImplicitAlgorithm):
        return QuadratureAdjoint(abstol=adjoint_atol(atol), reltol=rtol)
    return InterpolatingAdjoint()


def plan_solve_adjoint(prob: ODEProblem, alg: Algorithm | None, sensealg: SensitivityAlgorithm | None,
                       opts: SolveOptions) -> tuple[_Run, bool]:
    """Validate a differentiable ``solve(prob, alg, backend="julia", ...)`` and build its :class:`_Run` (and
    whether ``saveat`` starts at ``t0``; otherwise ``t0`` is prepended for Julia and dropped again), without
    starting Julia. The parameters are those of the native continuous adjoints
    (:func:`~pysciml.sensitivity.problem_adjoint.adjoint_parameters`); ``sensealg=None`` is
    :func:`odeint_julia`'s default.

    Raises:
        InputError: what this path cannot honour: ``DiscreteAdjoint`` (it differentiates the native steps),
            batched problems, mass matrices, split problems (unless ``unsplit=True``), ``dense=True``, no
            ``saveat``, and the step options ``dt``, ``adaptive=False``, ``dtmin``, ``dtmax``, ``tstops``,
            ``controller`` (the adjoint's backward solve would not follow them).
    """
    if isinstance(sensealg, DiscreteAdjoint):
        raise InputError("DiscreteAdjoint differentiates the native engine's steps and has no Julia counterpart; "
                         "with backend='julia' use InterpolatingAdjoint(), QuadratureAdjoint(), GaussAdjoint() or "
                         "BacksolveAdjoint(), or use backend='torch'")
    c = check_solve(prob, alg, opts)
    julia_algorithm(c.alg)
    name = repr(sensealg or _default_sensealg(c.alg, c.rtol, c.atol))
    why = {
        "batched=True": prob.batched, "mass_matrix": prob.mass_matrix is not None, "dense=True": opts.dense is True,
        "a SplitODEProblem (pass unsplit=True to differentiate the summed f)":
            isinstance(prob, SplitODEProblem) and not opts.unsplit,
        "dt": opts.dt is not None, "adaptive=False": not c.adaptive, "dtmin": opts.dtmin > 0,
        "dtmax": opts.dtmax is not None, "tstops": c.tstops is not None, "controller": opts.controller is not None,
    }
    refused = [k for k, bad in why.items() if bad]
    if refused or c.save_times is None:
        what = ", ".join(refused) if refused else "no saveat (the times at which the loss sees the solution)"
        raise InputError(f"a differentiable solve with backend='julia' ({name} through SciMLSensitivity) cannot "
                         f"honour {what} (the result holds the values at saveat, and SciMLSensitivity's backward "
                         "solve takes no step options); drop it, or use backend='torch'")
    params = tuple(adjoint_parameters(prob))
    if isinstance(prob, SplitODEProblem):  # unsplit: the sum (its jac is f_implicit's only)
        prob = ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
    t0 = c.save_times.new_tensor([prob.tspan[0]])
    starts = bool(c.save_times[0] == t0[0])
    times = c.save_times if starts else torch.cat((t0, c.save_times))
    run = _Run(prob, times, c.alg, sensealg or _default_sensealg(c.alg, c.rtol, c.atol), c.rtol, c.atol, params,
               int(opts.maxiters), strict=True, throw=bool(opts.throw))
    return run, starts


def solve_adjoint_julia(prob: ODEProblem, alg: Algorithm | None, sensealg: SensitivityAlgorithm | None,
                        opts: SolveOptions) -> ODESolution:
    """A differentiable ``solve(..., backend="julia")`` (:func:`plan_solve_adjoint`): values at ``saveat``,
    gradients to ``u0`` and the adjoint parameters by SciMLSensitivity. A failed forward solve raises with
    ``throw=True``; otherwise the solution has its return code and the save times reached, and backward refuses.
    """
    run, starts = plan_solve_adjoint(prob, alg, sensealg, opts)
    ys = _JuliaAdjoint.apply(run, prob.u0, *run.params)
    keep = slice(0 if starts else 1, None)
    message = str(run.failure) if run.failure else solve_message(run.alg, run.stats, [], None, batched=False,
                                                                 label=run.label)
    return ODESolution(run.reached[keep], ys[keep], (run.code,), message, run.stats, run.alg, prob, None,
                       engine="julia")
