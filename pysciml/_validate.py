"""Input checks for ``solve``: each raises :class:`InputError` naming the argument and the fix.

:class:`SolveOptions` carries ``solve``'s keywords, as given, to whichever path runs the solve (native engine,
continuous adjoint, checkpointed discrete adjoint, Julia engine); :func:`check_solve` is the one validation
they all run; :func:`solve_message` the one wording of how a solve ended.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .algorithms import (
    Algorithm,
    ESDIRKAlgorithm,
    ExplicitAlgorithm,
    IMEXAlgorithm,
    ImplicitAlgorithm,
    KenCarp4,
    RosenbrockAlgorithm,
    Tsit5,
)
from .algorithms_bdf import BDFAlgorithm
from .algorithms_firk import FIRKAlgorithm
from .algorithms_symplectic import SymplecticAlgorithm, check_symplectic
from .callbacks import CallbackSet, as_callback_set
from .errors import InputError, warn_caller
from .linsolve_options import GMRES, SparseLU
from .problem import ODEProblem, SplitODEProblem

Tensor = torch.Tensor


@dataclass(frozen=True)
class SolveOptions:
    """The keywords of :func:`pysciml.solve` that say how to solve, as given (checked by :func:`check_solve`).
    The defaults are ``solve``'s."""

    rtol: float = 1e-3
    atol: float | Tensor = 1e-6
    saveat: Any = None
    dt: float | None = None
    adaptive: bool | None = None
    maxiters: int = 100_000
    dtmin: float = 0.0
    dtmax: float | None = None
    dense: bool | None = None
    throw: bool = False
    unsplit: bool = False
    controller: Any = None
    tstops: Any = None
    compile: bool = False
    #: events: a ``ContinuousCallback``, ``DiscreteCallback`` or ``CallbackSet`` (:mod:`pysciml.callbacks`)
    callback: Any = None
    #: per-step hooks for the native single-trajectory loop (``engine.step_hooks.StepHooks``); set by ``odeint``
    #: only (torchdiffeq's callbacks, norm, jump_t), never a keyword of ``solve``
    hooks: Any = None

    def replace(self, **changes: Any) -> SolveOptions:
        """A copy with some keywords changed; an unknown keyword is an :class:`InputError`."""
        if not changes:
            return self
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise InputError(f"unknown solve keyword(s) {unknown}; accepted: {names}")
        return dataclasses.replace(self, **changes)

    def on_piece(self, t_a: float, t_b: float, tstops: Sequence[float] | None) -> SolveOptions:
        """The options of a solve over the piece ``[t_a, t_b]`` of the span (a checkpoint segment, a re-solved
        forward piece, an adjoint interval): the checked ``tstops`` inside it, and ``dtmin`` only where the piece
        is longer than it (a piece shorter than ``dtmin`` is one short step of the whole solve, not a failure)."""
        lo, hi = min(t_a, t_b), max(t_a, t_b)
        inside = [v for v in tstops or () if lo <= v <= hi]
        dtmin = self.dtmin if self.dtmin < hi - lo else 0.0
        return dataclasses.replace(self, tstops=inside or None, dtmin=dtmin)


@dataclass(frozen=True)
class CheckedSolve:
    """:class:`SolveOptions` after :func:`check_solve`: the values the engines use."""

    alg: Algorithm
    rtol: float
    atol: Tensor  #: ``(1, n)``, or ``(B, n)`` for a batched problem with per-trajectory tolerances
    save_times: Tensor | None  #: ``None``: save every step
    adaptive: bool
    dt: float | None  #: ``|dt|``
    dense: bool
    tstops: list[float] | None  #: sorted in the direction of integration
    callbacks: CallbackSet | None = None  #: ``callback`` as a set, ``None`` for none


def check_solve(prob: ODEProblem, alg: Any, opts: SolveOptions) -> CheckedSolve:
    """Every check of ``solve``'s input that does not need a call of ``f`` (the native and Julia engines and the
    adjoints run the same ones); ``alg=None`` is ``solve``'s default (``Tsit5()``, ``KenCarp4()`` for a split
    problem). Raises :class:`InputError` naming the argument and the fix."""
    if alg is None:
        alg = KenCarp4() if isinstance(prob, SplitODEProblem) else Tsit5()
    alg = check_algorithm(alg, prob, opts.unsplit)
    rtol, atol = check_tolerances(opts.rtol, opts.atol, prob)
    save_times = check_saveat(opts.saveat, prob)
    adaptive, dt = check_steps(alg, opts.adaptive, opts.dt, opts.maxiters, opts.dtmin, opts.dtmax,
                               abs(prob.tspan[1] - prob.tspan[0]))
    check_method_tolerance(alg, rtol, adaptive)
    check_controller(opts.controller)
    if isinstance(alg, BDFAlgorithm):
        check_multistep(alg, opts)
    tstops = check_tstops(opts.tstops, prob, adaptive)
    dense = save_times is None if opts.dense is None else bool(opts.dense)
    return CheckedSolve(alg, rtol, atol, save_times, adaptive, dt, dense, tstops, as_callback_set(opts.callback))


def solve_message(alg: Algorithm, stats: Any, failures: Sequence[tuple[int, str]], code: str | None, *,
                  batched: bool, label: str | None = None, advise: bool = True) -> str:
    """How a solve ended: ``"<label>: Success (N accepted, M rejected steps)"``, or ``"<label> failed: "`` with
    the first three ``(trajectory, what happened)`` failures, the step counts and :func:`advice` for ``code``
    (the first failure's ReturnCode value). ``label`` defaults to ``repr(alg)``."""
    label = repr(alg) if label is None else label
    if not failures:
        return f"{label}: Success ({stats.naccept} accepted, {stats.nreject} rejected steps)"
    parts = [(f"trajectory {b}: " if batched else "") + what for b, what in failures[:3]]
    more = f" (and {len(failures) - 3} more trajectories)" if len(failures) > 3 else ""
    text = (f"{label} failed: " + "; ".join(parts) + more
            + f" after {stats.naccept} accepted and {stats.nreject} rejected steps.")
    return text + (" " + advice(alg, code) if advise and code is not None else "")


def adjoint_atol(atol: Any) -> Any:
    """The ``atol`` of a backward (adjoint) solve from the forward one: the adjoint state is not the forward state
    (``[a, g]``, ``[y, a, g]``: other sizes), so a per-component ``atol`` becomes its smallest component, the
    tightest (SciMLSensitivity's choice too); a number is kept."""
    if isinstance(atol, Tensor):
        return float(atol.detach().min())
    if isinstance(atol, (list, tuple)):
        return float(min(atol))
    return atol


def check_times(t: Any, like: Tensor) -> Tensor:
    """Output times (``odeint``'s and the models' ``t``): a 1-D tensor of at least two finite, strictly monotone
    times. A sequence becomes a tensor on ``like``'s dtype and device, an integer tensor takes ``like``'s dtype;
    ``t`` is not detached (``odeint`` differentiates the times)."""
    return check_times_ends(t, like)[0]


def check_times_ends(t: Any, like: Tensor) -> tuple[Tensor, float, float]:
    """:func:`check_times`, also returning the first and last time as floats. Up to :data:`LISTED_TIMES` times are
    checked as one list of Python floats (one tensor operation; the same comparisons), more as tensors."""
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"t must be a 1-D tensor (or sequence) of output times, got {type(t).__name__}") from exc
    if t.ndim != 1 or t.numel() < 2:
        raise InputError(f"t must be a 1-D tensor of at least two times (t[0] is the initial time), got shape "
                         f"{tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(like.dtype)
    if t.numel() <= LISTED_TIMES:
        vals = t.detach().tolist()
        finite = all(math.isfinite(v) for v in vals)
        pairs = list(zip(vals[:-1], vals[1:], strict=True))
        monotone = all(a < b for a, b in pairs) or all(a > b for a, b in pairs)
        first, last = vals[0], vals[-1]
    else:
        finite = bool(torch.isfinite(t).all())
        d = t[1:] - t[:-1]
        monotone = finite and (bool((d > 0).all()) or bool((d < 0).all()))
        first, last = float(t[0].detach()), float(t[-1].detach())
    if not finite:
        raise InputError("t contains NaN or Inf")
    if not monotone:
        raise InputError("t must be strictly increasing or strictly decreasing; sort it and drop duplicates")
    return t, first, last


LISTED_TIMES = 4096
""":func:`check_times_ends` checks at most this many times as a Python list."""


@dataclass(frozen=True)
class CheckedTimes:
    """Save times that :func:`check_times_ends` has checked (1-D, finite, strictly monotone), with their ends as
    floats: ``odeint`` hands them to :func:`pysciml.solve._solve_checked` as ``saveat``, and :func:`check_saveat`
    takes them as they are when they suit the problem (dtype, device, ends inside ``tspan`` in its direction), so the
    times are not checked twice. An internal value: ``solve``'s users pass plain times."""

    times: Tensor  #: detached
    first: float
    last: float


def check_algorithm(alg: Any, prob: ODEProblem, unsplit: bool) -> Algorithm:
    if isinstance(alg, type) and issubclass(alg, Algorithm):
        raise InputError(f"alg must be an algorithm object: write {alg.__name__}() with parentheses")
    if isinstance(alg, str):
        raise InputError(
            f"alg={alg!r} is a string; pass an algorithm object such as Tsit5() or Rodas5P() "
            "(torchdiffeq method strings are accepted by pysciml.odeint)"
        )
    if not isinstance(alg, Algorithm):
        raise InputError(f"alg must be a pysciml algorithm such as Rodas5P(), got {type(alg).__name__}")
    if not isinstance(prob, ODEProblem):
        raise InputError(f"prob must be an ODEProblem or SplitODEProblem, got {type(prob).__name__}")
    if isinstance(prob, SplitODEProblem) and not isinstance(alg, IMEXAlgorithm) and not unsplit:
        raise InputError(
            f"{alg.name}() cannot treat a SplitODEProblem additively; use an IMEX method (KenCarp3(), KenCarp4(), "
            "KenCarp5()), or pass unsplit=True to solve the sum f_implicit + f_explicit as one function"
        )
    if prob.mass_matrix is not None and not isinstance(alg, (RosenbrockAlgorithm, FIRKAlgorithm, BDFAlgorithm)):
        raise InputError(
            f"{alg.name}() does not support a mass matrix; use a Rosenbrock method (Rodas5P(), Rodas4(), "
            "ROS3P(), Rosenbrock23()), RadauIIA5(), FBDF() or QNDF()"
        )
    check_symplectic(alg, prob)
    if isinstance(alg, ImplicitAlgorithm) and prob.u0.dtype in (torch.float16, torch.bfloat16):
        raise InputError(
            f"{alg.name}() needs float32 or float64: its linear solves (LU) have no {prob.u0.dtype} kernels in "
            "torch; solve in float32 (u0.float()) or use an explicit method (Tsit5())"
        )
    if (isinstance(alg, ImplicitAlgorithm) and prob.u0.device.type != "cpu"
            and (isinstance(alg.linsolve, SparseLU)
                 or (isinstance(alg.linsolve, GMRES) and alg.linsolve.precondition == "ilu"))):
        raise InputError(
            f"{alg.linsolve!r} runs on the CPU (SciPy's SuperLU / spilu) but u0 is on {prob.u0.device}; a CUDA "
            "sparse solve is not wired in (it could not be tested). Use GMRES(precondition='jacobi') or DenseLU() "
            "on the GPU, or solve on the CPU")
    if isinstance(alg, ESDIRKAlgorithm):
        if alg.max_newton_iters < 1:
            raise InputError(f"max_newton_iters must be >= 1, got {alg.max_newton_iters}")
        if not 0 < alg.newton_kappa < 1:
            raise InputError(f"newton_kappa must lie in (0, 1), got {alg.newton_kappa}")
    return alg


_SCALAR_ATOL: dict[tuple[float, torch.dtype, torch.device, bool], Tensor] = {}
""":func:`check_tolerances`' ``(1, 1)`` tensor for a number ``atol``, per (value, dtype, device, inference mode): the
number's checks and conversion done once (nothing writes to these tensors; each solve gets its own expanded view)."""


def check_tolerances(rtol: Any, atol: Any, prob: ODEProblem) -> tuple[float, Tensor]:
    """Returns ``rtol`` as a float and ``atol`` as ``(1, n)`` or ``(B, n)``.

    ``atol = 0`` (pure relative control, as in SciPy and OrdinaryDiffEq) is kept as the dtype's smallest
    normal number, so a component that is exactly zero never divides by zero in the error norm."""
    dtype, device = prob.u0.dtype, prob.u0.device
    if isinstance(rtol, Tensor):
        if rtol.numel() != 1:
            raise InputError("rtol must be a scalar; give per-component scales through atol")
        rtol = float(rtol)
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not math.isfinite(rtol) or rtol <= 0:
        raise InputError(f"rtol must be a positive finite number, got {rtol!r}")
    finfo = torch.finfo(dtype)
    if rtol < 0.5 * finfo.eps:  # odeint's default 1e-7 on float32 is within rounding of eps: no warning
        warn_caller(f"rtol={rtol:g} is below the resolution of {dtype} (eps={finfo.eps:.2g}); using "
                    f"rtol={finfo.eps:.2g}. Use float64 for tighter tolerances.")
        rtol = finfo.eps
    if isinstance(atol, bool):
        raise InputError(f"atol must be a number or a tensor, got {atol!r}")
    n = prob.state_size
    key = (float(atol), dtype, device, torch.is_inference_mode_enabled()) if isinstance(atol, (int, float)) else None
    known = _SCALAR_ATOL.get(key) if key is not None else None
    if known is not None:  # a number checked before, on this dtype and device, without a warning
        return float(rtol), known.expand(1, n)
    raw = torch.as_tensor(atol, dtype=torch.float64).detach().cpu()
    if not bool(torch.isfinite(raw).all()) or bool((raw < 0).any()):
        raise InputError(f"atol must be finite and >= 0 everywhere, got {atol!r}")
    a = raw.to(dtype=dtype, device=device)
    if bool(((raw > 0) & (a.cpu() == 0)).any()):
        warn_caller(f"atol={atol!r} underflows to 0 in {dtype}; using atol={finfo.tiny:.3g} (the smallest normal "
                    f"number). Pass an atol representable in {dtype} or solve in float32/float64.")
        key = None  # warns at every solve: not remembered
    a = a.clamp(min=finfo.tiny)
    if a.numel() == 1:
        if key is not None:
            if len(_SCALAR_ATOL) >= 64:
                _SCALAR_ATOL.clear()
            _SCALAR_ATOL[key] = a.reshape(1, 1)
        return float(rtol), a.reshape(1, 1).expand(1, n)
    if tuple(a.shape) == prob.state_shape:
        return float(rtol), a.reshape(1, n)
    if prob.batched and tuple(a.shape) == tuple(prob.u0.shape):
        return float(rtol), a.reshape(prob.u0.shape[0], n)
    raise InputError(
        f"atol must be a scalar or have the state's shape {prob.state_shape}, got shape {tuple(a.shape)}"
    )


def check_method_tolerance(alg: Algorithm, rtol: float, adaptive: bool) -> None:
    """Warn when ``rtol`` is tighter than a low-order method is meant for (its global error then exceeds
    the tolerance by far through error accumulation, although each step meets it)."""
    if adaptive and alg.min_rtol is not None and rtol < alg.min_rtol:
        warn_caller(
            f"rtol={rtol:g} is below what {alg.name}() is meant for (rtol >= {alg.min_rtol:g}): a method of order "
            f"{alg.order} accumulates a global error that can exceed rtol many times over; use Rodas5P() "
            "(stiff) or Vern7() (non-stiff) for tight tolerances")


def check_saveat(saveat: Any, prob: ODEProblem) -> Tensor | None:
    """Save times as a 1-D tensor, or ``None`` (save every step). SciML's meaning: a number is a spacing
    (``saveat=10`` on ``(0, 100)`` saves at 0, 10, ..., 100; ``t1`` is always saved), a sequence lists the
    times."""
    if saveat is None:
        return None
    t0, t1 = prob.tspan
    dtype, device = prob.u0.dtype, prob.u0.device
    if isinstance(saveat, bool):
        raise InputError(f"saveat={saveat!r} is ambiguous; pass a spacing (saveat=0.1), a list of times, or None "
                         "(every step)")
    if isinstance(saveat, Tensor) and saveat.requires_grad:
        raise InputError("saveat requires grad, but solve does not differentiate with respect to save times; "
                         "use pysciml.odeint(func, y0, t) for gradients with respect to t")
    if isinstance(saveat, (int, float)):
        return _spaced_times(float(saveat), t0, t1, dtype, device)
    if isinstance(saveat, CheckedTimes):
        ends, saveat = (saveat.first, saveat.last), saveat.times
        if saveat.dtype == dtype and saveat.device == device and min(t0, t1) <= min(ends) \
                and max(ends) <= max(t0, t1) and (ends[1] - ends[0]) * (t1 - t0) > 0:
            return saveat  # finite and strictly monotone (check_times_ends), its ends inside tspan
    return _check_listed_saveat(torch.as_tensor(saveat, dtype=dtype, device=device).detach(), t0, t1)


def _check_listed_saveat(s: Tensor, t0: float, t1: float) -> Tensor:
    """:func:`check_saveat` for listed times ``s`` on the problem's dtype and device: 1-D, finite, inside ``tspan``,
    strictly monotone in the direction of integration."""
    if s.ndim == 0:
        raise InputError(f"saveat is a 0-d tensor ({float(s):g}); pass a Python number for a spacing or "
                         f"[{float(s):g}] for a single save time")
    if s.ndim != 1 or s.numel() == 0:
        raise InputError(f"saveat must be a 1-D sequence of times, got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise InputError("saveat contains NaN or Inf")
    lo, hi = min(t0, t1), max(t0, t1)
    if bool(((s < lo) | (s > hi)).any()):
        bad = s[(s < lo) | (s > hi)][0].item()
        raise InputError(f"saveat time {bad:g} lies outside tspan ({t0:g}, {t1:g}); every save time must be inside")
    direction = 1.0 if t1 > t0 else -1.0
    if s.numel() > 1 and not bool((direction * (s[1:] - s[:-1]) > 0).all()):
        order = "increasing" if direction > 0 else "decreasing (t1 < t0)"
        raise InputError(f"saveat must be strictly {order}, in the direction of integration")
    return s


def _spaced_times(step: float, t0: float, t1: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``t0, t0 +- step, ...`` inside ``tspan``, then ``t1`` (a last grid point within rounding of ``t1`` is
    ``t1``)."""
    span = abs(t1 - t0)
    if not math.isfinite(step) or step <= 0:
        raise InputError(f"saveat as a number is the spacing of the save times and must be positive, got {step!r}")
    count = math.floor(span / step * (1 + 1e-12))
    if count > 10_000_000:
        raise InputError(f"saveat={step:g} on a span of {span:g} asks for {count} save times; pass a larger spacing")
    direction = 1.0 if t1 > t0 else -1.0
    ks = torch.arange(count + 1, dtype=torch.float64)
    times = t0 + direction * step * ks
    if abs(float(times[-1]) - t1) <= 1e-12 * max(span, abs(t1)):
        times[-1] = t1
    else:
        times = torch.cat((times, torch.tensor([t1], dtype=torch.float64)))
    return times.to(dtype=dtype, device=device)


def check_tstops(tstops: Any, prob: ODEProblem, adaptive: bool) -> list[float] | None:
    if tstops is None:
        return None
    if not adaptive:
        raise InputError("tstops needs adaptive=True (with fixed steps, choose dt so steps hit the stops)")
    vals = torch.as_tensor(tstops, dtype=torch.float64).detach().reshape(-1)
    if not bool(torch.isfinite(vals).all()):
        raise InputError("tstops contains NaN or Inf")
    t0, t1 = prob.tspan
    lo, hi = min(t0, t1), max(t0, t1)
    outside = [float(v) for v in vals if not lo <= float(v) <= hi]
    if outside:
        raise InputError(f"tstops time {outside[0]:g} lies outside tspan ({t0:g}, {t1:g}); every stop must be "
                         "inside (the integration never reaches it)")
    direction = 1.0 if t1 > t0 else -1.0
    return sorted({float(v) for v in vals}, key=lambda v: direction * v)


def check_steps(alg: Algorithm, adaptive: bool | None, dt: Any, maxiters: Any, dtmin: Any,
                dtmax: Any, span: float | None = None) -> tuple[bool, float | None]:
    """Returns ``(adaptive, |dt|)``. ``span`` (``|t1 - t0|``) lets ``dtmin`` be checked against it."""
    if adaptive is None:
        adaptive = alg.is_adaptive
    fixed_why = alg.no_adaptivity_reason or "it has no error estimator"
    if adaptive and not alg.is_adaptive:
        raise InputError(f"{alg.name}() cannot choose its own steps: {fixed_why}; pass adaptive=False with a "
                         "fixed dt, or use an adaptive method (Rodas5P(), Tsit5())")
    if dt is not None:
        if isinstance(dt, Tensor):
            dt = float(dt)
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt == 0:
            raise InputError(f"dt must be a nonzero finite number, got {dt!r}")
        dt = abs(float(dt))
    elif not adaptive:
        why = "" if alg.is_adaptive else f" ({alg.name}() is fixed-step only: {fixed_why})"
        raise InputError(f"{alg.name}() with adaptive=False needs a step size: pass dt=...{why}")
    if isinstance(maxiters, bool) or not isinstance(maxiters, int) or maxiters < 1:
        raise InputError(f"maxiters must be a positive integer, got {maxiters!r}")
    if isinstance(dtmin, bool) or not isinstance(dtmin, (int, float)) or dtmin < 0 or not math.isfinite(dtmin):
        raise InputError(f"dtmin must be a finite number >= 0, got {dtmin!r}")
    if dtmax is not None and (isinstance(dtmax, bool) or not isinstance(dtmax, (int, float)) or not dtmax > 0):
        raise InputError(f"dtmax must be a positive number, got {dtmax!r}")
    if dtmax is not None and dtmin > dtmax:
        raise InputError(f"dtmin={dtmin:g} is larger than dtmax={dtmax:g}; no step size satisfies both")
    if span is not None and dtmin >= span:
        raise InputError(f"dtmin={dtmin:g} is not smaller than the span |t1 - t0| = {span:g}; every step would be "
                         "below the minimum (dtmin bounds rejected steps: use a value well below the span)")
    return bool(adaptive), dt


def check_multistep(alg: BDFAlgorithm, opts: SolveOptions) -> None:
    """What a multistep method (FBDF, QNDF) cannot honour: a step controller, odeint's per-step hooks, events."""
    if opts.controller is not None:
        raise InputError(f"controller= does not apply to {alg.name}(): it chooses its steps and orders by its own "
                         "rule (error estimates at orders k-1, k, k+1); drop the controller")
    if opts.hooks is not None:
        raise InputError(f"odeint's callbacks, norm and jump_t are not supported with {alg.name}(); use a one-step "
                         "method (Rodas5P(), KenCarp4()) with them, or drop them")
    if opts.callback is not None:
        raise InputError(f"callback= (events) is not supported with {alg.name}() yet; use a one-step method "
                         "(Rodas5P(), KenCarp4()) for solves with events")


def check_controller(controller: Any) -> None:
    from .engine.controller import PIController

    if controller is not None and not isinstance(controller, PIController):
        raise InputError(f"controller must be a PIController(...), got {type(controller).__name__}")


def advice(alg: Algorithm, code: str) -> str:
    """What to try next after a numerical failure with ``code`` (a ReturnCode value)."""
    explicit = isinstance(alg, ExplicitAlgorithm)
    if code == "MaxIters":
        if explicit:
            return ("Many tiny steps with an explicit method: the problem looks stiff; try Rodas5P() or "
                    "KenCarp4(). Otherwise increase maxiters.")
        return "Increase maxiters, loosen rtol/atol, or check whether the solution blows up."
    if code == "ConvergenceFailure":
        if isinstance(alg, SymplecticAlgorithm):
            return "Newton did not converge with the fixed step: use a smaller dt (the method has fixed steps only)."
        return "Newton did not converge with the fixed step: use a smaller dt or adaptive=True."
    if code == "Unstable":
        return ("The solution became NaN/Inf: check f near this t (division by zero, overflow, a finite-time "
                "blow-up) or tighten rtol.")
    tail = " If the solution stays bounded there, the problem may be stiff: try Rodas5P()." if explicit else ""
    return ("The step size collapsed: f likely has a singularity or the solution blows up near this t; check f "
            "or loosen rtol/atol." + tail)
