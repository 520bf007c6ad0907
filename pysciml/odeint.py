"""``odeint`` / ``odeint_adjoint``: torchdiffeq's calls, answered by pysciml's solvers and sensitivities.

``odeint(func, y0, t)`` returns ``(len(t), *y0.shape)`` (a tuple of such tensors for tuple states) and is
differentiable with respect to ``y0``, ``func``'s parameters (or ``adjoint_params``) and ``t``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._validate import CheckedTimes, SolveOptions, check_times_ends
from ._validate import adjoint_atol as backward_atol  # odeint's own adjoint_atol is a keyword
from .algorithms import (
    BS3,
    DP5,
    TRBDF2,
    AdaptiveHeun,
    Algorithm,
    Euler,
    Heun,
    ImplicitAlgorithm,
    ImplicitEuler,
    Midpoint,
    Trapezoid,
    Tsit5,
    Vern7,
)
from .algorithms_adams import AdamsBashforth, AdamsBashforthMoulton
from .algorithms_firk import GaussLegendre4, GaussLegendre6, RadauIIA3, RadauIIA5
from .algorithms_native import DP8, RK38, RKF12, Alexander2, Heun3
from .algorithms_symplectic import ImplicitMidpoint
from .errors import InputError, warn_caller
from .odeint_grid import integrate_grid, make_grid
from .odeint_options import (
    FIXED_GRID_METHODS,
    GridSettings,
    JumpAwareFunc,
    OdeintHooks,
    adjoint_hooks,
    callbacks_of,
    translate_options,
)
from .odeint_scipy import check_scipy_call, odeint_scipy
from .odeint_until_event import until_event
from .problem import ODEProblem
from .sensealg import (
    BacksolveAdjoint,
    DiscreteAdjoint,
    GaussAdjoint,
    InterpolatingAdjoint,
    SensitivityAlgorithm,
)
from .sensitivity.continuous import AdjointSetup, ContinuousAdjoint
from .sensitivity.discrete import checkpoint_count
from .sensitivity.vjp import discover_params
from .solve import _solve_checked

__all__ = ["odeint", "odeint_adjoint", "METHOD_ALIASES", "default_sensealg"]

Tensor = torch.Tensor

METHOD_ALIASES: dict[str, type[Algorithm]] = {
    "dopri5": DP5, "tsit5": Tsit5, "bosh3": BS3, "vern7": Vern7, "rk4": RK38, "euler": Euler,
    "midpoint": Midpoint, "dopri8": DP8, "fehlberg2": RKF12, "adaptive_heun": AdaptiveHeun, "heun2": Heun,
    "heun3": Heun3, "implicit_euler": ImplicitEuler, "trapezoid": Trapezoid, "sdirk2": Alexander2,
    "trbdf2": TRBDF2, "implicit_midpoint": ImplicitMidpoint,
    "radauiia3": RadauIIA3, "radauiia5": RadauIIA5, "gl4": GaussLegendre4, "gl6": GaussLegendre6,
    "explicit_adams": AdamsBashforth, "implicit_adams": AdamsBashforthMoulton, "fixed_adams": AdamsBashforthMoulton,
}
_UNAVAILABLE = {
    "scipy_solver": "it runs scipy forward only, through odeint(..., method='scipy_solver') (no odeint_adjoint, no "
                    "alg objects): for gradients use a pysciml method (method='dopri5', alg=Rodas5P())",
}


def default_sensealg(alg: Algorithm) -> SensitivityAlgorithm:
    """Stiff (implicit) methods: ``InterpolatingAdjoint(checkpointing=True)``; others: ``DiscreteAdjoint()``."""
    return InterpolatingAdjoint(checkpointing=True) if isinstance(alg, ImplicitAlgorithm) else DiscreteAdjoint()


def _resolve_alg(method: str | Algorithm | None, alg: Algorithm | None) -> Algorithm:
    if alg is not None and method is not None:
        raise InputError("give either method= (a torchdiffeq string) or alg= (an algorithm object), not both")
    choice = alg if alg is not None else method
    if choice is None:
        return DP5()
    if isinstance(choice, Algorithm):
        return choice
    if isinstance(choice, type) and issubclass(choice, Algorithm):
        raise InputError(f"alg must be an algorithm object: write {choice.__name__}() with parentheses")
    if isinstance(choice, str):
        key = choice.lower()
        if key in METHOD_ALIASES:
            return METHOD_ALIASES[key]()
        if key in _UNAVAILABLE:
            raise InputError(f"method={choice!r} is not available in pysciml: {_UNAVAILABLE[key]}")
        raise InputError(f"unknown method={choice!r}; choose one of {sorted(METHOD_ALIASES)} or pass alg=Rodas5P()")
    raise InputError(f"method/alg must be a string or an algorithm object, got {type(choice).__name__}")


_FLAT: OrderedDict[tuple, tuple[Any, Callable[..., Tensor], Callable]] = OrderedDict()
"""The flattened right-hand side made for each ``func`` and tuple of shapes (the 16 most recent; each entry holds its
``func``, so an ``id`` is never reused while cached): the same function object at every call, so a compiled solve
(``compile=True``, cached by the identity of ``f``) compiles once."""


def _flatten_tuple(func: Callable[..., Any], y0: Sequence[Tensor]) -> tuple[Callable[..., Tensor], Tensor, Callable]:
    shapes = tuple(tuple(y.shape) for y in y0)
    key = (id(func), shapes)
    if key not in _FLAT:
        _FLAT[key] = (func, *_flat_func(func, shapes))
        while len(_FLAT) > 16:
            _FLAT.popitem(last=False)
    _FLAT.move_to_end(key)
    _, f, unflatten = _FLAT[key]
    return f, torch.cat([y.reshape(-1) for y in y0]), unflatten


def _flat_func(func: Callable[..., Any], shapes: tuple[tuple[int, ...], ...]) -> tuple[Callable[..., Tensor], Callable]:
    sizes = [math.prod(s) for s in shapes]

    def unflatten(flat: Tensor) -> tuple[Tensor, ...]:
        lead = flat.shape[:-1]
        return tuple(p.reshape((*lead, *s)) for p, s in zip(torch.split(flat, sizes, dim=-1), shapes, strict=True))

    def f(t: Tensor, y: Tensor) -> Tensor:
        return torch.cat([d.reshape(-1) for d in func(t, unflatten(y))])

    return f, unflatten


def odeint(
    func: Callable[..., Any],
    y0: Tensor | tuple[Tensor, ...],
    t: Tensor | Sequence[float],
    *,
    rtol: float = 1e-7,
    atol: Any = 1e-9,
    method: str | Algorithm | None = None,
    options: dict[str, Any] | None = None,
    alg: Algorithm | None = None,
    sensealg: SensitivityAlgorithm | None = None,
    adjoint_params: Sequence[Tensor] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_alg: Algorithm | None = None,
    adjoint_options: dict[str, Any] | None = None,
    backend: str = "torch",
    event_fn: Any = None,
    progress: bool = False,
    compile: bool = False,
) -> Tensor | tuple[Tensor, ...]:
    """Solve ``dy/dt = func(t, y)`` and return ``y`` at the times ``t`` (torchdiffeq's ``odeint``).

    Args:
        func: ``func(t, y)``, an ``nn.Module`` or callable; ``t`` is a 0-d tensor, ``y`` shaped like ``y0``. If it
            defines torchdiffeq's step callbacks ``callback_step(t0, y0, dt)``, ``callback_accept_step`` and
            ``callback_reject_step`` they are called as torchdiffeq calls them (see ``docs/guide/gradients.md``):
            ``callback_step`` before every attempted step, the others after it; fixed-grid methods call
            ``callback_step`` only (and warn about the others, as torchdiffeq does).
        y0: initial state (any shape), or a tuple of tensors.
        t: 1-D increasing or decreasing save times; ``t[0]`` is the initial time. ``len(t) == 1`` returns
            ``y0[None]`` without integrating.
        rtol, atol: tolerances (torchdiffeq's defaults, 1e-7 and 1e-9); for a tuple state ``atol`` may be a
            tuple (one tolerance per part).
        method: a torchdiffeq method string (``METHOD_ALIASES``; 'dopri5' default) or an algorithm object; alg:
            an algorithm object (``Rodas5P()``, ``KenCarp4()``, ...). torchdiffeq's fixed-grid strings ('euler',
            'midpoint', 'rk4', 'heun2', 'heun3', 'implicit_euler', 'implicit_midpoint', 'trapezoid', 'sdirk2',
            'trbdf2', ...) step on a fixed grid, as there, even where pysciml's algorithm is adaptive.
        options: torchdiffeq's options (details and the differences from torchdiffeq: ``docs/guide/gradients.md``).
            Fixed-step methods step on ``t``'s grid unless ``step_size`` (a uniform grid from ``t[0]``, its last
            point moved onto ``t[-1]``) or ``grid_constructor(func, y0, t)`` says otherwise, interpolate between
            grid points by ``interp`` ('linear' or 'cubic') and honour ``perturb``. Adaptive methods: ``norm``
            (of the scaled error; default the RMS norm over all components, tuple states included: torchdiffeq's
            tuple default is ``pysciml.odeint_options.mixed_norm``), ``jump_t`` (steps land on them, ``f``
            re-evaluated just after each), ``step_t`` (steps land on them), ``first_step``, ``max_num_steps``
            (times ``len(t) - 1`` in all; torchdiffeq's bound is per output interval), ``max_step`` /
            ``dtmax``, ``dtmin``, ``safety``, ``ifactor``, ``dfactor`` (the PI controller's safety factor and
            largest growth and shrink factors), ``dtype`` (of the callbacks' times; step control runs in
            float64), ``step_size`` (pysciml's: fixed steps of the adaptive tableau).
        sensealg: how gradients are computed (``pysciml.sensealg``); default :func:`default_sensealg` (with
            ``backend="julia"``, :func:`~pysciml.julia.odeint_julia`'s). Fixed-grid solves always differentiate
            through their steps.
        adjoint_params: tensors the continuous adjoints differentiate (default: every tensor requiring grad
            that ``func`` uses: the parameters of an ``nn.Module`` func, and the tensors in its autograd graph at
            ``t[0]`` and ``t[-1]``; a tensor used only at other times is refused in the backward pass).
            DiscreteAdjoint always differentiates every tensor ``func`` uses; with either, an entry ``func``
            never uses gets a zero gradient. Under ``torch.no_grad()`` every sensealg is a plain solve.
        adjoint_rtol, adjoint_atol, adjoint_alg: the backward (adjoint) solve's settings (default: the
            forward ones). adjoint_options: ``norm`` (``"seminorm"``: the error of the state and adjoint only,
            not of the parameter-gradient integrals; or a callable of the flat scaled error), ``max_num_steps``,
            ``max_step``; ``func``'s ``callback_*_adjoint`` callbacks run on the backward solves (given their
            flat state).
        backend: ``"torch"`` or ``"julia"`` (SciMLSensitivity: ``options`` other than ``max_num_steps``, the
            ``adjoint_*`` settings, callbacks and gradients with respect to ``t`` are refused).
        event_fn: torchdiffeq's event mode: ``event_fn(t, y)`` (a scalar, or a tensor whose first zero of any entry
            counts); integrate from ``t[0]`` (``t`` holds two times, ``t[1]`` giving only the direction) until it
            reaches zero and return ``(event_t, solution)``, the states at ``[t[0], event_t]``. The event is located
            without gradients, then ``odeint`` runs on ``[t[0], event_t]`` with the sensitivity asked for (so the
            states' gradients are at a fixed ``event_t``); :func:`pysciml.odeint_event` adds the gradient through
            ``event_t``. Native engine only. Fixed-grid methods need ``options={"step_size": dt}`` and locate the
            event on each grid step's interpolant, as torchdiffeq's do.
        progress: a tqdm bar over ``t`` (see :func:`pysciml.solve`); with the discrete adjoint only.
        compile: run the steps as compiled programs (see :func:`pysciml.solve`'s ``compile``), the backward
            solves of the explicit continuous adjoints too (``docs/guide/compile.md``); fixed-grid methods run each
            grid step as one program (not with ``perturb``). Native engine only; with ``norm`` or ``jump_t`` (and,
            adaptive, step callbacks) the steps run eagerly after a warning.

    Returns:
        ``(len(t), *y0.shape)`` tensor (a tuple of them for tuple ``y0``), dtype and device of ``y0``.
    """
    if event_fn is not None:  # torchdiffeq's event mode: until event_fn(t, y) = 0 (pysciml/odeint_until_event.py)
        return until_event(odeint, func, y0, t, event_fn, _resolve_alg(method, alg), method=method, rtol=rtol,
                           atol=atol, options=options, alg=alg, sensealg=sensealg, adjoint_params=adjoint_params,
                           adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, adjoint_alg=adjoint_alg,
                           adjoint_options=adjoint_options, backend=backend, progress=progress, compile=compile)
    if isinstance(method, str) and method.lower() == "scipy_solver":  # torchdiffeq's scipy wrapper, forward only
        check_scipy_call(alg=alg is not None, sensealg=sensealg is not None, adjoint_params=adjoint_params is not None,
                         adjoint_rtol=adjoint_rtol is not None, adjoint_atol=adjoint_atol is not None,
                         adjoint_alg=adjoint_alg is not None, adjoint_options=bool(adjoint_options),
                         backend=backend != "torch", event_fn=event_fn is not None, progress=progress, compile=compile)
        return odeint_scipy(func, y0, torch.as_tensor(t), rtol=rtol, atol=atol, options=options)
    algorithm = _resolve_alg(method, alg)
    if _single_time(t):
        return tuple(y[None] for y in y0) if isinstance(y0, tuple) else _check_y0(y0)[None]
    user_func, user_y0 = func, y0
    unflatten = None
    if isinstance(y0, tuple):
        atol = _tuple_atol(atol, y0)
        func, y0, unflatten = _flatten_tuple(func, y0)
    y0 = _check_y0(y0)
    complex_shape = y0.shape if y0.is_complex() else None
    if complex_shape is not None:  # solved as real pairs: (*shape, 2)
        func, y0 = _as_real(func), torch.view_as_real(y0)
    t, t_first, t_last = check_times_ends(t, y0)
    save_t = CheckedTimes(t.detach(), t_first, t_last)  # checked here: solve's check_saveat takes them as they are
    if sensealg is not None and not isinstance(sensealg, SensitivityAlgorithm):
        raise InputError(f"sensealg must be an object from pysciml.sensealg, got {type(sensealg).__name__}")
    if progress and (backend != "torch" or (torch.is_grad_enabled() and not _plain_discrete(sensealg, algorithm))):
        raise InputError("progress=True is supported by odeint on the native engine with the discrete adjoint "
                         "without checkpoints (the default for explicit methods) only; pass "
                         "sensealg=DiscreteAdjoint() or drop progress=")
    callbacks = callbacks_of(user_func)
    if backend == "julia":
        from .julia import odeint_julia

        refused = [name for name, given in (
            ("compile=True", compile),
            ("options other than max_num_steps", set(options or {}) - {"max_num_steps"}),
            ("adjoint_rtol", adjoint_rtol is not None), ("adjoint_atol", adjoint_atol is not None),
            ("adjoint_alg", adjoint_alg is not None), ("adjoint_options", bool(adjoint_options)),
            ("step callbacks", bool(callbacks)), ("complex states", complex_shape is not None),
            ("gradients with respect to t", t.requires_grad)) if given]
        if refused:
            raise InputError(f"odeint(backend='julia') cannot honour {', '.join(refused)} (SciMLSensitivity's adjoint "
                             "takes the forward settings only and no time gradients); drop them or use backend='torch'")
        ys = odeint_julia(func, y0, t, rtol=rtol, atol=atol, alg=algorithm, sensealg=sensealg,
                          adjoint_params=adjoint_params, maxiters=int((options or {}).get("max_num_steps", 100_000)))
        return unflatten(ys) if unflatten is not None else ys
    if backend != "torch":
        raise InputError(f"backend must be 'torch' or 'julia', got {backend!r}")
    if isinstance(sensealg, GaussAdjoint):
        raise InputError("GaussAdjoint runs on the Julia engine only; use QuadratureAdjoint() with backend='torch'")
    shape = complex_shape if complex_shape is not None else y0.shape
    base = unflatten if unflatten is not None else (lambda row: row.reshape(shape))
    to_user = base if complex_shape is None else (lambda row: base(torch.view_as_complex(row.reshape(-1, 2))))
    finish = _finisher(unflatten, complex_shape)
    fixed_grid = isinstance(method, str) and method.lower() in FIXED_GRID_METHODS
    tr = translate_options(algorithm, options, rtol, atol, t, fixed_grid)
    algorithm = tr.alg or algorithm  # an Adams method's max_order / max_iters / implicit options
    if tr.grid is not None:
        if progress:
            warn_caller(f"odeint: {algorithm.name}() steps on a fixed grid without a progress bar; progress= is "
                        "ignored", RuntimeWarning)
        if compile and tr.grid.perturb:
            warn_caller(f"odeint: {algorithm.name}() on a fixed grid with perturb=True moves each stage's time on "
                        "the host; its steps run eagerly (compile= is ignored)", RuntimeWarning)
            compile = False
        ys = _fixed_grid(func, y0, t, algorithm, tr.grid, rtol, atol, callbacks, to_user, user_func, user_y0,
                         compile)
        if adjoint_params is not None and torch.is_grad_enabled():
            ys = _ZeroGradients.apply(ys, *[q for q in adjoint_params if isinstance(q, Tensor) and q.requires_grad])
        return finish(ys)
    if sensealg is None:
        sensealg = default_sensealg(algorithm)
    kw = tr.solve_kw
    direction = 1.0 if t_last > t_first else -1.0
    real = y0.real.dtype if y0.is_complex() else y0.dtype
    norm = tr.norm
    scaled = norm is not None or tr.min_step > 0.0  # the hooks compute the scaled error (OdeintHooks.error_norm)
    scale_atol = torch.as_tensor(atol, dtype=real, device=y0.device).reshape(-1) if scaled else None
    hooks = OdeintHooks(callbacks, to_user, norm, scale_atol, rtol, tr.jump_t,
                        torch.promote_types(tr.time_dtype, real), direction, tr.min_step)
    if hooks.active():
        if compile:
            warn_caller("odeint: step callbacks, norm and jump_t run on the eager loop; compile=True is ignored",
                        RuntimeWarning)
            compile = False
        if tr.jump_t:
            func = JumpAwareFunc(func, hooks)
        kw["hooks"] = hooks
    if progress:
        kw["progress"] = True
    if compile:
        kw["compile"] = True
    prob = ODEProblem(func, y0, (t_first, t_last))
    if isinstance(sensealg, DiscreteAdjoint) or not torch.is_grad_enabled():  # no gradient wanted: plain solve
        if t.requires_grad:  # y0 + eps f(t0, y0) with eps = 0 carries dL/dt0 (see _StartTimeProbe)
            f0 = prob.rhs(t[0].detach(), y0.detach()).detach()
            prob = prob.remake(u0=y0 + _StartTimeProbe.apply(t) * f0)
        discrete = sensealg if isinstance(sensealg, DiscreteAdjoint) else DiscreteAdjoint()
        ys = _discrete_solve(prob, algorithm, discrete, save_t, kw)
        ys = _TimeGradient.apply(ys, t, prob) if t.requires_grad else ys
        if adjoint_params is not None and torch.is_grad_enabled():  # entries f never uses: zero, not None
            ys = _ZeroGradients.apply(ys, *[q for q in adjoint_params if isinstance(q, Tensor) and q.requires_grad])
    else:
        params = discover_params(prob.f, prob.f_takes_p, prob.p, t[0], y0, adjoint_params, t[-1])
        forward = SolveOptions().replace(**kw)
        back_atol = backward_atol(atol) if adjoint_atol is None else adjoint_atol
        back_rtol = adjoint_rtol or rtol
        adj_kw = _adjoint_settings(adjoint_options, len(t), forward)
        keep = (2 if isinstance(sensealg, BacksolveAdjoint) else 1) * y0.numel()
        adj_hooks = adjoint_hooks(user_func, adj_kw.pop("norm", None), keep, back_atol, back_rtol,
                                  torch.promote_types(tr.time_dtype, real), -direction)
        backward = SolveOptions(rtol=back_rtol, atol=back_atol, maxiters=adj_kw.get("maxiters", forward.maxiters),
                                adaptive=forward.adaptive, dt=forward.dt if forward.adaptive is False else None,
                                dtmax=adj_kw.get("dtmax"), hooks=adj_hooks)
        setup = AdjointSetup(prob=prob, alg=algorithm, adj_alg=adjoint_alg or algorithm, sensealg=sensealg,
                             save_t=t.detach(), params=params, options=forward, adj_options=backward,
                             discovered=adjoint_params is None, tstops=kw.get("tstops"))
        ys = ContinuousAdjoint.apply(setup, y0, t, *params)
    hooks.callbacks = {}  # forward pieces re-solved in the backward pass (checkpoints) call no forward callbacks
    if hooks.forced:
        warn_caller(f"odeint: {hooks.forced} steps at options['min_step'] = {tr.min_step:g} were accepted with an "
                    "error estimate above the tolerance (torchdiffeq's min_step rule): the result may miss "
                    "rtol/atol; lower min_step, or drop it to let the step shrink", RuntimeWarning)
    return finish(ys)


def _as_real(func: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """A complex ``func`` on the real view ``(*shape, 2)`` of its state."""
    def f(t: Tensor, y: Tensor) -> Tensor:
        return torch.view_as_real(func(t, torch.view_as_complex(y.contiguous())))

    return f


def _finisher(unflatten: Callable | None, complex_shape: Any) -> Callable[[Tensor], Any]:
    """``(len(t), *state)`` engine output -> the user's form: complex again, split into the tuple's parts."""
    def finish(ys: Tensor) -> Any:
        if complex_shape is not None:
            ys = torch.view_as_complex(ys.contiguous())
        return unflatten(ys) if unflatten is not None else ys

    return finish


def _single_time(t: Any) -> bool:
    """``t`` holds one time: torchdiffeq returns ``y0[None]`` without integrating."""
    if isinstance(t, Tensor):
        return t.ndim == 1 and t.shape[0] == 1
    return isinstance(t, Sequence) and len(t) == 1


def _check_y0(y0: Any) -> Tensor:
    if not isinstance(y0, Tensor):
        raise InputError(f"y0 must be a torch.Tensor or a tuple of tensors, got {type(y0).__name__}")
    return y0


def _tuple_atol(atol: Any, y0: tuple[Tensor, ...]) -> Any:
    """torchdiffeq's tuple ``atol`` (one per part) as one tolerance per component of the flat state."""
    if not isinstance(atol, (tuple, list)):
        return atol
    if len(atol) != len(y0):
        raise InputError(f"a tuple atol needs one entry per part of y0 ({len(y0)}), got {len(atol)}")
    return torch.cat([torch.as_tensor(a, dtype=y.real.dtype if y.is_complex() else y.dtype, device=y.device)
                      .expand(y.shape).reshape(-1) for a, y in zip(atol, y0, strict=True)])


def _plain_discrete(sensealg: SensitivityAlgorithm | None, alg: Algorithm) -> bool:
    """Whether gradients go through the steps of one native solve (the discrete adjoint without checkpoints)."""
    chosen = sensealg or default_sensealg(alg)
    return isinstance(chosen, DiscreteAdjoint) and checkpoint_count(chosen) <= 1


def _discrete_solve(prob: ODEProblem, alg: Algorithm, discrete: DiscreteAdjoint, save_t: CheckedTimes,
                    kw: dict[str, Any]) -> Tensor:
    """The solution at the checked times ``save_t`` through the discrete adjoint: ``solve``'s native path entered
    behind its keyword checks (:func:`~pysciml.solve._solve_checked`), ``odeint`` having made its own."""
    opts = SolveOptions(saveat=save_t, throw=True, **{k: v for k, v in kw.items() if k != "progress"})  # kw: solve's
    return _solve_checked(prob, alg, opts, discrete, bool(kw.get("progress"))).u


def _adjoint_settings(adjoint_options: dict[str, Any] | None, n_times: int, forward: SolveOptions) -> dict[str, Any]:
    """``adjoint_options`` as backward-solve settings: ``norm``, ``max_num_steps``, ``max_step`` / ``dtmax``."""
    opts = dict(adjoint_options or {})
    known = {"norm", "max_num_steps", "max_step", "dtmax"}
    ignored = sorted(set(opts) - known)
    if ignored:
        warn_caller(f"odeint: adjoint_options {ignored} are ignored (the backward solves take the forward solve's "
                    f"step settings); honoured: {sorted(known)}")
    out: dict[str, Any] = {}
    if opts.get("norm") is not None:
        out["norm"] = opts["norm"]
    if "max_num_steps" in opts:
        out["maxiters"] = int(opts["max_num_steps"]) * max(n_times - 1, 1)
    step = opts.get("max_step", opts.get("dtmax"))
    out["dtmax"] = float(step) if step is not None and math.isfinite(float(step)) else forward.dtmax
    return out


def _fixed_grid(func: Callable[..., Tensor], y0: Tensor, t: Tensor, alg: Algorithm, grid: GridSettings, rtol: float,
                atol: Any, callbacks: dict[str, Callable[..., Any]], to_user: Callable[[Tensor], Any],
                user_func: Any, user_y0: Any, compile: bool = False) -> Tensor:
    """A fixed-step method on its grid (:mod:`pysciml.odeint_grid`), with torchdiffeq's ``callback_step``;
    ``compile``: each step as a compiled program."""
    others = sorted(set(callbacks) - {"callback_step"})
    if others:
        warn_caller(f"Solver {alg.name}() steps on a fixed grid and does not support callbacks {others}")
    cb = callbacks.get("callback_step")
    callback = None if cb is None else (lambda t0, row, dt: cb(t0, to_user(row), dt))
    times = make_grid(grid, user_func, user_y0, t)
    return integrate_grid(func, y0, t, alg, grid, rtol=rtol, atol=atol, grid=times, callback=callback,
                          compile=compile)


def odeint_adjoint(func: Callable[..., Any], y0: Tensor | tuple[Tensor, ...], t: Tensor, *, rtol: float = 1e-7,
                   atol: Any = 1e-9, method: str | Algorithm | None = None, options: dict[str, Any] | None = None,
                   adjoint_rtol: float | None = None, adjoint_atol: float | None = None,
                   adjoint_method: str | Algorithm | None = None, adjoint_options: dict[str, Any] | None = None,
                   adjoint_params: Sequence[Tensor] | None = None, **kwargs: Any) -> Tensor | tuple[Tensor, ...]:
    """torchdiffeq's ``odeint_adjoint``: O(1)-memory backsolve adjoint for explicit adaptive methods; for
    implicit (stiff) methods the checkpointed interpolating adjoint, since backsolve is unstable on stiff
    problems. Fixed-grid methods differentiate through their steps. ``adjoint_options`` as in :func:`odeint`."""
    alg = kwargs.pop("alg", None)
    algorithm = _resolve_alg(method, alg)
    adj_alg = _resolve_alg(adjoint_method, None) if adjoint_method is not None else None
    sensealg = kwargs.pop("sensealg", None) or (
        InterpolatingAdjoint(checkpointing=True) if isinstance(algorithm, ImplicitAlgorithm) else BacksolveAdjoint())
    return odeint(func, y0, t, rtol=rtol, atol=atol, method=method, alg=alg, options=options, sensealg=sensealg,
                  adjoint_params=adjoint_params, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                  adjoint_alg=adj_alg, adjoint_options=adjoint_options, **kwargs)


class _TimeGradient(torch.autograd.Function):
    """Pass ``ys`` through; add ``dL/dt_i = <dL/dy_i, f(t_i, y_i)>`` for ``i >= 1`` and ``<dL/dy_0, f_0>`` for
    ``t_0`` (completed by :class:`_StartTimeProbe` to ``dL/dt_0 = -<a(t_0), f(t_0, y_0)>``)."""

    @staticmethod
    def forward(ctx: Any, ys: Tensor, t: Tensor, prob: ODEProblem) -> Tensor:
        ctx.prob = prob
        ctx.save_for_backward(ys.detach(), t.detach())
        return ys.view_as(ys)

    @staticmethod
    def backward(ctx: Any, grad_ys: Tensor) -> tuple[Tensor | None, ...]:
        ys, t = ctx.saved_tensors
        with torch.no_grad():
            fs = torch.stack([ctx.prob.rhs(ti, yi) for ti, yi in zip(t, ys, strict=True)])
            grad_t = (grad_ys * fs).reshape(len(t), -1).sum(dim=1)
        return grad_ys, grad_t, None


class _StartTimeProbe(torch.autograd.Function):
    """A zero scalar ``eps`` whose gradient ``dL/deps`` (with ``u0 = y0 + eps f(t0, y0)``) is the sensitivity
    of the solution to shifting the start: ``dL/dt_0`` receives ``-dL/deps`` (d Phi / d t0 = -Phi_y0 f_0)."""

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        ctx.n = t.shape[0]
        return t.new_zeros(())

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        grad_t = g.new_zeros(ctx.n)
        grad_t[0] = -g
        return grad_t


class _ZeroGradients(torch.autograd.Function):
    """Pass ``ys`` through and give each of ``params`` a zero gradient, so an ``adjoint_params`` entry that ``f``
    never uses gets zeros (as with the continuous adjoints and torchdiffeq), while the ones it uses keep their
    gradient from the solve's own graph."""

    @staticmethod
    def forward(ctx: Any, ys: Tensor, *params: Tensor) -> Tensor:
        ctx.shapes = [(q.shape, q.dtype, q.device) for q in params]
        return ys.view_as(ys)

    @staticmethod
    def backward(ctx: Any, grad_ys: Tensor) -> tuple[Tensor | None, ...]:
        return (grad_ys, *[torch.zeros(s, dtype=d, device=v) for s, d, v in ctx.shapes])
