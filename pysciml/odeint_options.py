"""torchdiffeq's ``options`` dictionary and step callbacks, translated for :func:`pysciml.odeint`.

:func:`translate_options` turns ``options`` into ``solve`` keywords (and the fixed-grid settings);
:class:`OdeintHooks` is the :class:`~pysciml.engine.step_hooks.StepHooks` object that carries torchdiffeq's
step callbacks (``callback_step``, ``callback_accept_step``, ``callback_reject_step`` on ``func``), a custom
``norm`` and the ``jump_t`` restarts into the native loop; :func:`adjoint_hooks` does the same for the backward
solves of the continuous adjoints (the ``_adjoint`` callbacks and ``adjoint_options["norm"]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from .algorithms import Algorithm
from .algorithms_adams import AdamsBashforth, AdamsBashforthMoulton
from .engine.controller import PIController
from .engine.step_hooks import StepHooks
from .engine.stepper import Stepper
from .errors import InputError, warn_caller
from .native import default_controller

__all__ = ["FIXED_GRID_METHODS", "GridSettings", "OdeintHooks", "translate_options", "callbacks_of", "adjoint_hooks",
           "mixed_norm"]

Tensor = torch.Tensor

#: torchdiffeq's options of its adaptive RK solvers, and of its fixed-grid solvers
ADAPTIVE_KEYS = frozenset({"first_step", "max_num_steps", "min_step", "max_step", "norm", "jump_t", "step_t",
                           "dtype", "safety", "ifactor", "dfactor"})
GRID_KEYS = frozenset({"step_size", "grid_constructor", "interp", "perturb", "norm"})
#: torchdiffeq's options of its Adams solvers ('explicit_adams', 'implicit_adams', 'fixed_adams')
ADAMS_KEYS = frozenset({"max_order", "max_iters", "implicit"})
#: pysciml's own additions (``step_size`` with an adaptive method: fixed steps of that size; dtmin/dtmax)
EXTRA_KEYS = frozenset({"dtmin", "dtmax"})
#: every key :func:`translate_options` accepts
KNOWN_KEYS = ADAPTIVE_KEYS | GRID_KEYS | EXTRA_KEYS | ADAMS_KEYS | {"step_size"}
CALLBACKS = ("callback_step", "callback_accept_step", "callback_reject_step")
#: torchdiffeq's method strings whose solvers step on a fixed grid (``FixedGridODESolver``): with ``odeint`` they
#: step on ``t``'s grid even where pysciml's algorithm of that name is adaptive (``implicit_euler``, ``trapezoid``)
FIXED_GRID_METHODS = frozenset({"euler", "midpoint", "rk4", "heun2", "heun3", "explicit_adams", "implicit_adams",
                                "fixed_adams", "implicit_euler", "implicit_midpoint", "trapezoid", "sdirk2", "trbdf2",
                                "radauiia3", "radauiia5", "gl4", "gl6"})


@dataclass
class GridSettings:
    """A fixed-grid solve (torchdiffeq's ``FixedGridODESolver``): ``step_size`` or ``grid_constructor`` (else
    the grid is ``t``), ``interp`` (``"linear"`` or ``"cubic"``) and ``perturb``."""

    step_size: float | None = None
    grid_constructor: Callable[..., Tensor] | None = None
    interp: str = "linear"
    perturb: bool = False


@dataclass(frozen=True)
class MinStepController(PIController):
    """The PI controller with torchdiffeq's ``min_step`` floor: no proposed step is shorter than ``min_step`` (the
    loop's hooks accept a step at the floor whatever its error, :class:`OdeintHooks`)."""

    min_step: float = 0.0

    def propose(self, dt: Tensor, eest: Tensor, qold: Tensor, accept: Tensor, order: int) -> tuple[Tensor, Tensor]:
        dt_new, qold = super().propose(dt, eest, qold, accept, order)
        return torch.sign(dt_new) * dt_new.abs().clamp(min=self.min_step), qold

    def propose_scalar(self, dt: float, eest: float, qold: float, accept: bool, order: int) -> tuple[float, float]:
        dt_new, qold = super().propose_scalar(dt, eest, qold, accept, order)
        return math.copysign(max(abs(dt_new), self.min_step), dt_new), qold


@dataclass
class Translated:
    """What :func:`translate_options` made of ``options``."""

    solve_kw: dict[str, Any] = field(default_factory=dict)  #: ``solve`` keywords
    grid: GridSettings | None = None  #: set for fixed-grid methods
    norm: Callable[..., Any] | None = None
    jump_t: list[float] = field(default_factory=list)
    time_dtype: torch.dtype = torch.float64
    alg: Algorithm | None = None  #: the algorithm rebuilt with its options (Adams methods), else ``None``
    min_step: float = 0.0  #: torchdiffeq's ``min_step`` (0: none)


def _times(name: str, value: Any) -> list[float]:
    times = value if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.float64)
    vals = times.detach().reshape(-1).tolist()
    if not all(math.isfinite(v) for v in vals):
        raise InputError(f"options[{name!r}] must hold finite times")
    return [float(v) for v in vals]


def translate_options(alg: Algorithm, options: dict[str, Any] | None, rtol: float, atol: Any,
                      t: Tensor, fixed_grid: bool = False) -> Translated:
    """torchdiffeq's ``options`` for ``alg`` on the output times ``t`` (``fixed_grid``: a fixed-grid solve, as for
    every non-adaptive ``alg`` and torchdiffeq's fixed-grid method strings). Keys of torchdiffeq's other solver kind
    (``perturb`` with ``dopri5``, ``first_step`` with ``rk4``) are ignored with a warning, as torchdiffeq does;
    keys torchdiffeq does not know are an :class:`InputError`."""
    opts = dict(options or {})
    unknown = set(opts) - KNOWN_KEYS
    if unknown:
        raise InputError(f"unknown options {sorted(unknown)}; accepted keys: {sorted(KNOWN_KEYS)}")
    out = Translated(solve_kw={"rtol": rtol, "atol": atol})
    adams = isinstance(alg, (AdamsBashforth, AdamsBashforthMoulton))
    if adams:
        out.alg = _adams_with_options(alg, opts)
    if fixed_grid or not alg.is_adaptive:
        ignored = sorted(set(opts) - GRID_KEYS - (ADAMS_KEYS if adams else frozenset()))
        if ignored:
            warn_caller(f"{alg.name}() steps on a fixed grid here: options {ignored} are ignored (as torchdiffeq "
                        "ignores them)")
        if opts.get("step_size") is not None and opts.get("grid_constructor") is not None:
            raise InputError("step_size and grid_constructor are mutually exclusive options")
        interp = opts.get("interp", "linear")
        if interp not in ("linear", "cubic"):
            raise InputError(f"options['interp'] must be 'linear' or 'cubic', got {interp!r}")
        step = opts.get("step_size")
        if step is not None and not float(step) > 0:
            raise InputError(f"options['step_size'] must be > 0, got {step!r}")
        gc = opts.get("grid_constructor")
        if gc is not None and not callable(gc):
            raise InputError("options['grid_constructor'] must be a callable grid_constructor(func, y0, t)")
        out.grid = GridSettings(None if step is None else float(step), gc, interp, bool(opts.get("perturb", False)))
        out.norm = opts.get("norm")  # accepted and unused by fixed grids, as in torchdiffeq
        return out
    ignored = sorted(set(opts) & (GRID_KEYS - {"norm", "step_size"} | ADAMS_KEYS))
    if ignored:
        warn_caller(f"{alg.name}() is adaptive: options {ignored} are for fixed-grid methods and are ignored "
                    "(as torchdiffeq ignores them)")
    kw = out.solve_kw
    if "step_size" in opts:  # pysciml's extension: fixed steps of an adaptive method's tableau
        kw.update(adaptive=False, dt=float(opts["step_size"]))
    if opts.get("first_step") is not None:
        kw["dt"] = float(opts["first_step"])
    if "max_num_steps" in opts:  # torchdiffeq bounds the steps between two output times
        kw["maxiters"] = int(opts["max_num_steps"]) * max(len(t) - 1, 1)
    for key, target in (("dtmin", "dtmin"), ("dtmax", "dtmax"), ("max_step", "dtmax")):
        if opts.get(key) is not None and math.isfinite(float(opts[key])):
            kw[target] = float(opts[key])
    if {"safety", "ifactor", "dfactor"} & set(opts):
        base = default_controller(alg)
        kw["controller"] = PIController(beta1=base.beta1, beta2=base.beta2,
                                        gamma=float(opts.get("safety", base.gamma)),
                                        qmax=float(opts.get("ifactor", base.qmax)),
                                        qmin=float(opts.get("dfactor", base.qmin)))
    min_step = float(opts.get("min_step", 0.0))
    if not 0.0 <= min_step < math.inf:
        raise InputError(f"options['min_step'] must be a finite number >= 0, got {opts['min_step']!r}")
    if min_step > 0.0:  # torchdiffeq: steps never shorter than min_step, and accepted there whatever their error
        base = kw.get("controller") or default_controller(alg)
        if not isinstance(base, PIController):
            raise InputError(f"options['min_step'] needs a PI step-size controller; {alg.name}() has "
                             f"{type(base).__name__}")
        kw["controller"] = MinStepController(**{f.name: getattr(base, f.name) for f in fields(PIController)},
                                             min_step=min_step)
        out.min_step = min_step
    if "dtype" in opts:
        dt = opts["dtype"]
        if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
            raise InputError(f"options['dtype'] must be a floating torch dtype, got {dt!r}")
        out.time_dtype = dt
    stops: list[float] = []
    lo = hi = 0.0
    if opts.get("step_t") is not None or opts.get("jump_t") is not None:  # two host reads, only where needed
        ta, tb = float(t[0].detach()), float(t[-1].detach())
        lo, hi = min(ta, tb), max(ta, tb)
    for key in ("step_t", "jump_t"):
        if opts.get(key) is not None:
            vals = [v for v in _times(key, opts[key]) if lo < v < hi]  # torchdiffeq ignores times outside
            stops += vals
            if key == "jump_t":
                out.jump_t = vals
    if len(set(stops)) != len(stops):
        raise InputError("step_t and jump_t must not have any repeated elements between them")
    if stops:
        kw["tstops"] = sorted(stops)
    out.norm = opts.get("norm")
    if out.norm is not None and not callable(out.norm):
        raise InputError("options['norm'] must be a callable norm(state) -> scalar")
    return out


def _adams_with_options(alg: Algorithm, opts: dict[str, Any]) -> Algorithm:
    """torchdiffeq's Adams options on ``alg``: ``max_order``, ``max_iters`` and, for 'implicit_adams' /
    'fixed_adams' only, ``implicit`` (``False``: no corrector)."""
    max_order = opts.get("max_order", alg.max_order)  # type: ignore[attr-defined]
    implicit = isinstance(alg, AdamsBashforthMoulton)
    if "implicit" in opts:
        if not implicit:
            raise InputError("options['implicit'] is an option of 'implicit_adams' / 'fixed_adams' ('explicit_adams' "
                             "has no corrector; torchdiffeq refuses it too)")
        implicit = bool(opts["implicit"])
    if implicit:
        iters = alg.max_iters if isinstance(alg, AdamsBashforthMoulton) else 4
        return AdamsBashforthMoulton(max_order=max_order, max_iters=opts.get("max_iters", iters))
    return AdamsBashforth(max_order=max_order)


def mixed_norm(parts: tuple[Tensor, ...]) -> Tensor:
    """torchdiffeq's default norm of a tuple state: the largest RMS norm of its parts."""
    return max(p.abs().pow(2).mean().sqrt() for p in parts) if parts else torch.zeros(())


def callbacks_of(func: Any, adjoint: bool = False) -> dict[str, Callable[..., Any]]:
    """The step callbacks ``func`` defines (torchdiffeq's names; ``_adjoint`` ones with ``adjoint=True``)."""
    suffix = "_adjoint" if adjoint else ""
    found = {}
    for name in CALLBACKS:
        cb = getattr(func, name + suffix, None)
        if callable(cb):
            found[name] = cb
    return found


class OdeintHooks(StepHooks):
    """torchdiffeq's callbacks, ``norm`` and ``jump_t`` restarts for one ``odeint`` solve.

    Args:
        callbacks: the ``callback_*`` functions, called as torchdiffeq calls them: ``(t0, y0, dt)`` with ``t0``
            the step's start (a 0-d tensor of ``time_dtype``), ``y0`` the state there in the user's shape (a tuple
            for tuple states) and ``dt`` the step's size, positive in both time directions (torchdiffeq steps
            in negated time when ``t`` decreases).
        to_user: engine row ``(n,)`` -> the user's state (tensor or tuple).
        norm: ``norm(state) -> scalar`` of the scaled error ``err / (atol + rtol max(|y0|, |y1|))``, or ``None``.
        atol, rtol: the tolerances of the scale.
        jumps: ``jump_t`` times: the cached ``f`` is re-evaluated just after each (the FSAL restart).
        time_dtype: dtype of the callback times.
    """

    def __init__(self, callbacks: dict[str, Callable[..., Any]], to_user: Callable[[Tensor], Any],
                 norm: Callable[..., Any] | None, atol: Any, rtol: float, jumps: list[float],
                 time_dtype: torch.dtype, direction: float, min_step: float = 0.0) -> None:
        self.callbacks, self.to_user, self.norm = callbacks, to_user, norm
        self.min_step = min_step
        self.forced = 0  #: steps at ``min_step`` accepted with a scaled error above 1
        self._dt = math.inf
        self.atol, self.rtol = atol, rtol
        self.jumps = set(jumps)
        self.time_dtype, self.direction = time_dtype, direction
        self.pending_restart: float | None = None
        self.restarting = False

    def _call(self, name: str, t: float, u: Tensor, dt: float) -> None:
        cb = self.callbacks.get(name)
        if cb is not None:
            tt = torch.tensor(t, dtype=self.time_dtype, device=u.device)
            cb(tt, self.to_user(u[0]), torch.tensor(abs(dt), dtype=self.time_dtype, device=u.device))

    def attempt(self, t: float, u: Tensor, dt: float, stepper: Stepper | None = None) -> None:
        if self.pending_restart is not None and stepper is not None:
            tj = torch.full((1,), self.pending_restart, dtype=u.dtype, device=u.device)
            self.restarting = True
            try:  # f on the far side of the jump, as torchdiffeq's Perturb.NEXT
                stepper.f0 = stepper.f_total(torch.nextafter(tj, tj + self.direction), u)
            finally:
                self.restarting = False
            self.pending_restart = None
        self._dt = dt
        self._call("callback_step", t, u, dt)

    def error_norm(self, err: Tensor, u: Tensor, u_new: Tensor) -> float | None:
        if self.norm is None and self.min_step == 0.0:
            return None
        scaled = err / (torch.maximum(u.abs(), u_new.abs()) * self.rtol + self.atol)
        if self.norm is not None:
            value = float(torch.as_tensor(self.norm(self.to_user(scaled[0]))).abs())
        else:  # the loop's own RMS norm
            value = float(torch.linalg.vector_norm(scaled) / math.sqrt(scaled.numel()))
        if value > 1.0 and abs(self._dt) <= self.min_step * (1.0 + 1e-12):  # torchdiffeq: accepted at the floor
            self.forced += 1
            return 0.0
        return value

    def after(self, accepted: bool, t_prev: float, u_prev: Tensor, dt: float, t: float, u: Tensor,
              stepper: Stepper) -> None:
        self._call("callback_accept_step" if accepted else "callback_reject_step", t_prev, u_prev, dt)
        if accepted and t in self.jumps:
            self.pending_restart = t

    def active(self) -> bool:
        """Whether the hooks do anything (else the solve runs without them)."""
        return bool(self.callbacks) or self.norm is not None or bool(self.jumps) or self.min_step > 0.0


class JumpAwareFunc:
    """``func`` evaluated just before a ``jump_t`` time when a stage lands on it (the end of the step that
    stops there; torchdiffeq's ``Perturb.PREV``); the restart after it goes through :class:`OdeintHooks`."""

    def __init__(self, func: Callable[..., Any], hooks: OdeintHooks) -> None:
        self.func, self.hooks = func, hooks
        self.jumps = sorted(hooks.jumps)

    def __call__(self, t: Tensor, y: Any) -> Any:
        if not self.hooks.restarting:
            tv = float(t.detach())
            tol = 8 * torch.finfo(t.dtype).eps
            for j in self.jumps:
                if abs(tv - j) <= tol * max(abs(j), 1.0):
                    tj = torch.full_like(t, j)
                    t = t + (torch.nextafter(tj, tj - self.hooks.direction) - t).detach()
                    break
        return self.func(t, y)


def adjoint_hooks(func: Any, norm: Any, keep: int, atol: Any, rtol: float, time_dtype: torch.dtype,
                  direction: float) -> OdeintHooks | None:
    """Hooks of the backward (adjoint) solves: ``func``'s ``callback_*_adjoint`` functions (given the adjoint
    solve's flat state) and ``adjoint_options["norm"]``: ``"seminorm"`` measures the error of the first ``keep``
    components only (the state and adjoint, not the parameter-gradient integrals), a callable gets the scaled
    error as one flat tensor."""
    callbacks = callbacks_of(func, adjoint=True)
    custom: Callable[..., Any] | None
    if norm is None:
        custom = None
    elif norm == "seminorm":
        def custom(x: Tensor) -> Tensor:
            return x[:keep].abs().pow(2).mean().sqrt()
    elif callable(norm):
        custom = norm
    else:
        raise InputError(f"adjoint_options['norm'] must be 'seminorm' or a callable, got {norm!r}")
    hooks = OdeintHooks(callbacks, lambda row: row, custom, atol, rtol, [], time_dtype, direction)
    return hooks if hooks.active() else None
