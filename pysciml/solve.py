"""``solve(prob, alg, ...)``: the dispatcher. The Julia engine, a continuous adjoint, or the native solve
(:mod:`pysciml.native`)."""

from __future__ import annotations

from typing import Any

import torch

from ._validate import SolveOptions
from .algorithms import Algorithm
from .algorithms_symplectic import SymplecticAlgorithm
from .engine.controller import PIController
from .ensemble.backends import solve_ensemble
from .ensemble.problem import EnsembleProblem
from .ensemble.solution import EnsembleSolution
from .errors import InputError
from .native import solve_native
from .problem import ODEProblem
from .problem_dynamical import HamiltonianProblem, SecondOrderODEProblem
from .sensealg import DiscreteAdjoint, SensitivityAlgorithm
from .sensitivity.discrete import checkpoint_count, solve_checkpointed
from .sensitivity.problem_adjoint import solve_with_adjoint
from .solution import ODESolution

__all__ = ["solve"]

Tensor = torch.Tensor


def solve(
    prob: ODEProblem | EnsembleProblem,
    alg: Algorithm | None = None,
    *,
    rtol: float = 1e-3,
    atol: float | Tensor = 1e-6,
    saveat: Any = None,
    dt: float | None = None,
    adaptive: bool | None = None,
    maxiters: int = 100_000,
    dtmin: float = 0.0,
    dtmax: float | None = None,
    dense: bool | None = None,
    throw: bool = False,
    unsplit: bool = False,
    controller: PIController | None = None,
    sensealg: Any = None,
    tstops: Any = None,
    backend: str = "torch",
    progress: bool = False,
    compile: bool = False,
    callback: Any = None,
    trajectories: int | None = None,
    ensemble: Any = None,
) -> ODESolution | EnsembleSolution:
    """Solve an ODE problem.

    Args:
        prob: :class:`ODEProblem` or :class:`SplitODEProblem` (or an :class:`~pysciml.ensemble.EnsembleProblem`).
        alg: algorithm object (``Tsit5()``, ``Rodas5P()``, ``KenCarp4()``, ...). Default: ``Tsit5()`` for
            an ODEProblem, ``KenCarp4()`` for a SplitODEProblem.
        rtol, atol: tolerances of the RMS error norm ``err / (atol + rtol * max(|u_n|, |u_{n+1}|))``;
            ``atol`` may be a tensor of the state's shape. They also set the Newton tolerance of implicit
            stages, with fixed steps too (as in OrdinaryDiffEq): tighten them for accurate fixed-step runs.
        saveat: ``None`` (every step for unbatched problems; ``t0`` and ``t1`` for batched ones), a number
            (the spacing of the save times, SciML's meaning; ``t1`` is always saved), or a sequence of times
            inside ``tspan`` in integration order. Values are interpolated inside steps (the steps of KenCarp5
            and Kvaerno5, whose interpolants are low-order, land on them).
        dt: initial step (adaptive) or the fixed step (``adaptive=False``).
        adaptive: error-controlled steps (default if the method has an error estimator).
        maxiters: most loop iterations before returning ``ReturnCode.MaxIters``.
        dtmin, dtmax: bounds on ``|dt|``: when the controller asks for a step below ``dtmin`` (after an
            accepted or a rejected step, as in OrdinaryDiffEq), or below the resolution of ``t``
            (``eps |t|``), the solve ends with ``ReturnCode.DtLessThanMin``.
        dense: keep the continuous extension for ``sol(t)`` (default: ``True`` when saveat is not given).
        throw: raise :class:`SolverError` on numerical failure instead of returning a failed retcode.
        unsplit: allow a non-IMEX method on a SplitODEProblem by solving the summed right-hand side.
        controller: step-size controller options (:class:`PIController`).
        sensealg: how gradients flow when ``u0`` or tensors in ``p`` (or a matrix implicit part) require
            grad: ``None``/``DiscreteAdjoint()`` backpropagate through the steps; ``DiscreteAdjoint(checkpoints=K)``
            does so in ``K`` checkpointed segments ending at save times (``saveat`` needed, no dense output:
            memory of one segment's steps); ``InterpolatingAdjoint()``, ``QuadratureAdjoint()``,
            ``BacksolveAdjoint()`` solve the continuous adjoint (``saveat`` needed, ``dense=True`` refused; the step
            options and ``tstops`` apply to the forward and the backward solves). Under ``torch.no_grad()`` every
            sensealg is a plain solve. With ``backend="julia"`` gradients go through SciMLSensitivity
            (``GaussAdjoint()`` too; ``DiscreteAdjoint`` and step options refused). See ``pysciml.sensealg``.
        tstops: times the steps must land on exactly (where ``f`` has a kink or jump in ``t``); adaptive
            adaptive solves, batched ones too (each trajectory lands on every stop).
        backend: ``"torch"`` (native engine) or ``"julia"`` (DifferentialEquations.jl through juliacall).
        progress: show a tqdm bar over ``t`` (for a batch, the trajectory furthest behind); native engine
            without a continuous or checkpointed adjoint (refused elsewhere). Off by default.
        compile: run each step as one ``torch.compile`` program (explicit RK, Rosenbrock and ARK/ESDIRK methods
            with dense LU; see ``docs/guide/compile.md``): the first solve of a signature compiles (seconds, in
            ``sol.stats.compile_time``), later ones reuse it; the same numbers as the eager default to
            round-off. What has no compiled step, and a compile that fails, solve eagerly after a
            ``RuntimeWarning``.
        callback: events (:mod:`pysciml.callbacks`): a ``ContinuousCallback`` (located on the dense interpolant,
            optionally changing ``u`` or ending the solve), a ``DiscreteCallback`` (checked after each step) or a
            ``CallbackSet``; native engine, differentiated through the steps (``sensealg`` ``None`` or
            ``DiscreteAdjoint()``); they run on the eager loop (``compile=True`` warns and is ignored). The events
            are in ``sol.t_events`` / ``sol.u_events``; see ``docs/guide/events.md``.
        trajectories, ensemble: for an :class:`~pysciml.ensemble.EnsembleProblem` only: how many trajectories,
            and the back end (``EnsembleBatched()`` by default, ``EnsembleSerial()``, ``EnsembleDistributed()``).
            Every other option applies to each trajectory's solve; without ``saveat`` each trajectory saves
            ``t0`` and ``t1``. See ``docs/guide/distributed.md``.

    Raises:
        InputError: an argument the chosen path cannot honour, named with the fix (nothing is dropped).
        SolverError: numerical failure with ``throw=True``.

    Returns:
        :class:`ODESolution` on the problem's dtype and device (an :class:`~pysciml.ensemble.EnsembleSolution`
        for an ensemble problem).
    """
    if isinstance(prob, EnsembleProblem):
        if dense:
            raise InputError("dense=True with an EnsembleProblem: a trajectory's solution keeps its save points only "
                             "(TrajectorySolution has no interpolant); pass the times you need as saveat=")
        kw = dict(rtol=rtol, atol=atol, dt=dt, adaptive=adaptive, maxiters=maxiters, dtmin=dtmin, dtmax=dtmax,
                  dense=dense, throw=throw, unsplit=unsplit, controller=controller, sensealg=sensealg, tstops=tstops,
                  backend=backend, progress=progress, compile=compile, callback=callback)
        return solve_ensemble(prob, trajectories, ensemble, lambda p: solve(
            p, alg, saveat=list(p.tspan) if saveat is None else saveat, **kw))
    if trajectories is not None or ensemble is not None:
        raise InputError("trajectories= and ensemble= are for an EnsembleProblem; wrap the problem: "
                         "solve(EnsembleProblem(prob, prob_func=...), alg, trajectories=N)")
    opts = SolveOptions(rtol=rtol, atol=atol, saveat=saveat, dt=dt, adaptive=adaptive, maxiters=maxiters,
                        dtmin=dtmin, dtmax=dtmax, dense=dense, throw=throw, unsplit=unsplit, controller=controller,
                        tstops=tstops, compile=compile, callback=callback)
    if sensealg is not None and not isinstance(sensealg, SensitivityAlgorithm):
        raise InputError(f"sensealg must be an object from pysciml.sensealg (InterpolatingAdjoint(), "
                         f"DiscreteAdjoint(), ...) or None, got {type(sensealg).__name__}")
    plain_discrete = isinstance(sensealg, DiscreteAdjoint) and checkpoint_count(sensealg) <= 1
    if progress and (backend != "torch" or (sensealg is not None and torch.is_grad_enabled() and not plain_discrete)):
        raise InputError("progress=True is supported on the native engine's plain solve only (backend='torch', "
                         "sensealg None or DiscreteAdjoint()); drop progress= for this call")
    if backend == "julia" and (isinstance(prob, (HamiltonianProblem, SecondOrderODEProblem))
                               or isinstance(alg, SymplecticAlgorithm)):
        raise InputError(f"backend='julia' does not solve {type(prob).__name__} or the symplectic methods yet (they "
                         "need OrdinaryDiffEq's DynamicalODEProblem); use backend='torch' (the default)")
    if (isinstance(alg, SymplecticAlgorithm) and sensealg is not None and not isinstance(sensealg, DiscreteAdjoint)
            and torch.is_grad_enabled()):
        raise InputError(f"{sensealg!r} with {alg!r}: a continuous adjoint solves the adjoint ODE with a method of its "
                         "own and ignores the symplectic structure; differentiate a symplectic solve through its steps "
                         "with sensealg=DiscreteAdjoint() (or DiscreteAdjoint(checkpoints=K) for long rollouts)")
    if compile and backend != "torch":
        raise InputError("compile=True compiles the native engine's steps; the Julia engine compiles f itself: drop "
                         "compile= with backend='julia'")
    if callback is not None and (backend != "torch" or (sensealg is not None and torch.is_grad_enabled()
                                                        and not plain_discrete)):
        raise InputError("callback= runs on the native engine, differentiated through its steps: use backend='torch' "
                         "with sensealg=None or DiscreteAdjoint() (continuous and checkpointed adjoints do not "
                         "handle events yet)")
    if backend == "julia":
        from .julia import solve_julia  # lazy: importing pysciml never starts Julia

        return solve_julia(prob, alg, opts, sensealg=sensealg)
    if backend != "torch":
        raise InputError(f"backend must be 'torch' or 'julia', got {backend!r}")
    return _solve_checked(prob, alg, opts, sensealg, progress)


def _solve_checked(prob: ODEProblem, alg: Algorithm | None, opts: SolveOptions,
                   sensealg: SensitivityAlgorithm | None = None, progress: bool = False) -> ODESolution:
    """The native engine's solve once the keywords that choose the path are checked: by :func:`solve` above, or
    by ``odeint``, which hands over its own checked times (``opts.saveat`` a :class:`~._validate.CheckedTimes`)
    and its step hooks, so nothing is checked twice. The checks that need the problem (:func:`~._validate.
    check_solve`) run in each path; ``progress`` is honoured by the plain solve only (the callers refuse it
    elsewhere)."""
    if isinstance(sensealg, DiscreteAdjoint) and checkpoint_count(sensealg) > 1 and torch.is_grad_enabled():
        return solve_checkpointed(prob, alg, sensealg, opts)
    if sensealg is not None and not isinstance(sensealg, DiscreteAdjoint) and torch.is_grad_enabled():
        return solve_with_adjoint(prob, alg, sensealg, opts)
    return solve_native(prob, alg, opts, progress=progress)
