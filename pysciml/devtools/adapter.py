"""One way to run any solver for the developer tools: a pysciml algorithm, a SciPy method name, or a user callable.

The user-callable convention is :func:`pysciml.crossvalidate`'s: ``solver(prob, saveat) -> states`` with
``saveat`` a float64 CPU tensor ``(S,)`` and the states shaped ``(S, *u0.shape)``. The developer tools add the
keyword they sweep: ``dt=`` (a fixed step, :func:`~pysciml.devtools.convergence`) or ``rtol=, atol=``
(:func:`~pysciml.devtools.work_precision`). A callable may also return ``(states, info)`` with ``info`` a
mapping that may hold ``"steps"`` and ``"nf"``; without ``"nf"`` the calls of ``prob.f`` are counted.

The helpers shared with :mod:`pysciml.analysis.crossvalidate` live here: the save times (:func:`save_times`),
the states check (:func:`as_states`), the reference forms (:func:`reference_values`) and the largest difference
between two results (:func:`difference`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .._validate import check_saveat
from ..algorithms import Algorithm
from ..errors import InputError
from ..problem import ODEProblem
from ..solve import solve

__all__ = ["SCIPY_METHODS", "Difference", "Outcome", "as_states", "check_solver", "describe", "difference",
           "reference_values", "run_solver", "save_times"]

Tensor = torch.Tensor
SCIPY_METHODS = ("RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA")
"""The ``scipy.integrate.solve_ivp`` methods accepted by name."""


def save_times(saveat: Any, prob: ODEProblem, default: int = 21) -> Tensor:
    """float64 CPU save times: ``default`` equally spaced ones for ``saveat=None``, else as ``solve`` reads
    ``saveat`` (a number is a spacing, a sequence the times)."""
    t0, t1 = prob.tspan
    if saveat is None:
        return torch.linspace(t0, t1, default, dtype=torch.float64)
    ts = check_saveat(saveat, prob.remake(u0=prob.u0.detach().to("cpu", torch.float64)))
    assert ts is not None
    return ts


def as_states(values: Any, name: str, prob: ODEProblem, s: int) -> Tensor:
    """``values`` as float64 CPU states ``(S, *u0.shape)``; an :class:`InputError` naming ``name`` otherwise."""
    u = torch.as_tensor(values).detach().to(device="cpu", dtype=torch.float64)
    want = (s, *prob.u0.shape)
    if tuple(u.shape) != want:
        raise InputError(f"solver {name!r} returned shape {tuple(u.shape)}; it must return the states at "
                         f"the {s} save points with shape (S, *u0.shape) = {want}")
    return u


def reference_values(reference: Any, prob: ODEProblem, ts: Tensor,
                     solutions: Mapping[str, Tensor] | None = None) -> tuple[Tensor | None, str]:
    """A reference as float64 ``(S, N)`` (or ``(1, N)``: the final time only) and its label.

    ``reference``: ``None``; a tensor ``(S, *u0.shape)`` at the save times or ``u0.shape`` at the final time;
    a callable ``t -> (S, *u0.shape)``; or a name in ``solutions`` (``(S, *u0.shape)`` tensors).
    """
    s, n = ts.shape[0], prob.u0.numel()
    if reference is None:
        return None, ""
    if isinstance(reference, str):
        if solutions is None or reference not in solutions:
            raise InputError(f"reference={reference!r} is not one of the solved engines: {sorted(solutions or {})}")
        return solutions[reference].reshape(s, -1), reference
    if callable(reference) and not isinstance(reference, Tensor):
        return as_states(reference(ts.clone()), "reference", prob, s).reshape(s, -1), "reference"
    r = torch.as_tensor(reference).detach().to(device="cpu", dtype=torch.float64)
    if r.numel() == n:
        return r.reshape(1, n), f"reference at t={float(ts[-1]):.4g}"
    if r.numel() == s * n:
        return r.reshape(s, n), "reference"
    raise InputError(f"reference must have shape (S, *u0.shape) = {(s, *prob.u0.shape)} or u0.shape "
                     f"{tuple(prob.u0.shape)} (final time), got {tuple(r.shape)}")


@dataclass(frozen=True)
class Difference:
    """Largest difference between two results over all save points and components.

    Attributes:
        max_abs: ``max |a - b|``.
        max_rel: ``max |a - b| / (max(|a|, |b|) + atol)``.
        t: the save time of ``max_rel``.
    """

    max_abs: float
    max_rel: float
    t: float

    def __str__(self) -> str:
        return f"abs {self.max_abs:.2e}  rel {self.max_rel:.2e}  (t={self.t:.4g})"


def difference(a: Tensor, b: Tensor, t: Tensor, atol: float) -> Difference:
    """``a``, ``b``: ``(S, N)`` float64 on the CPU; ``t``: ``(S,)``."""
    diff = (a - b).abs()
    rel = diff / (torch.maximum(a.abs(), b.abs()) + atol)
    worst = rel.amax(dim=1)
    i = int(torch.nan_to_num(worst, nan=math.inf).argmax())
    return Difference(float(diff.max()), float(rel.max()), float(t[i]))


@dataclass
class Outcome:
    """One run of a solver: the states at the save times and its work.

    Attributes:
        u: float64 CPU states ``(S, *u0.shape)`` (``None`` when the run failed).
        success: whether the solver reported success.
        message: the solver's message on failure (empty on success).
        nf: right-hand-side calls (``None`` where unknown).
        steps: steps taken (accepted + rejected for pysciml and SciPy; ``None`` where unknown).
    """

    u: Tensor | None
    success: bool
    message: str = ""
    nf: int | None = None
    steps: int | None = None


def describe(solver: Any) -> str:
    """A short label: the algorithm's repr, ``"SciPy <method>"`` or the callable's name."""
    if isinstance(solver, Algorithm):
        return repr(solver)
    if isinstance(solver, str):
        return f"SciPy {solver}"
    return getattr(solver, "__name__", type(solver).__name__)


def check_solver(solver: Any, name: str, fixed_step: bool = False) -> None:
    """An :class:`InputError` unless ``solver`` is an algorithm, a SciPy method name (not with ``fixed_step``)
    or a callable."""
    if isinstance(solver, Algorithm):
        return
    if isinstance(solver, str):
        if solver not in SCIPY_METHODS:
            raise InputError(f"{name}={solver!r} is not a SciPy method; use one of {', '.join(SCIPY_METHODS)}, "
                             "a pysciml algorithm (e.g. ps.Rodas5P()) or a callable solver(prob, saveat, ...)")
        if fixed_step:
            raise InputError(f"{name}={solver!r}: SciPy's solve_ivp methods choose their own steps, so they have "
                             "no fixed-step convergence order; pass a pysciml algorithm or a fixed-step callable "
                             "solver(prob, saveat, dt=...)")
        return
    if not callable(solver):
        raise InputError(f"{name} must be a pysciml algorithm, a SciPy method name or a callable "
                         f"solver(prob, saveat, ...), got {type(solver).__name__}")


class _CountingF:
    """``prob.f`` with a call counter (for user callables that do not report ``nf``)."""

    def __init__(self, f: Callable[..., Tensor]) -> None:
        self.f, self.calls = f, 0

    def __call__(self, *args: Any) -> Tensor:
        self.calls += 1
        return self.f(*args)


def _counted(prob: ODEProblem) -> tuple[ODEProblem, _CountingF]:
    counter = _CountingF(prob.f)
    if prob.f_takes_p:
        return prob.remake(f=counter), counter

    def f(t: Tensor, u: Tensor) -> Tensor:  # two arguments, so the copy is called without p, like prob.f
        return counter(t, u)

    return prob.remake(f=f), counter


def run_solver(solver: Any, prob: ODEProblem, ts: Tensor, name: str, *, dt: float | None = None,
               rtol: float | None = None, atol: float | Tensor | None = None,
               solve_options: Mapping[str, Any] | None = None) -> Outcome:
    """Run ``solver`` on ``prob`` saving at ``ts`` (float64 CPU ``(S,)``): fixed step ``dt`` when given, else the
    tolerances ``rtol``/``atol``. Numerical failure gives ``success=False``; bad output an :class:`InputError`."""
    s = ts.shape[0]
    if isinstance(solver, Algorithm):
        kw: dict[str, Any] = dict(solve_options or {})
        if dt is not None:  # tight Newton tolerances, so the discretisation error dominates
            kw = {"rtol": 1e-13, "atol": 1e-13, **kw, "adaptive": False, "dt": dt}
        else:
            kw = {**kw, "rtol": rtol, "atol": atol}
        sol = solve(prob, solver, saveat=ts.to(prob.u0.dtype), **kw)
        st = sol.stats
        if not sol.success or sol.u.shape[0] != s:
            return Outcome(None, False, sol.message, st.nf, st.naccept + st.nreject)
        return Outcome(as_states(sol.u, name, prob, s), True, "", st.nf, st.naccept + st.nreject)
    if isinstance(solver, str):
        from .scipy_method import solve_ivp_states

        u, ok, message, nf, steps = solve_ivp_states(prob, solver, ts, rtol, atol, **dict(solve_options or {}))
        return Outcome(as_states(u, name, prob, s) if ok else None, ok, message, nf, steps)
    counted, counter = _counted(prob)
    out = solver(counted, ts.clone(), **({"dt": dt} if dt is not None else {"rtol": rtol, "atol": atol}))
    info: Mapping[str, Any] = {}
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        out, info = out
    u = as_states(out, name, prob, s)
    ok = bool(torch.isfinite(u).all())
    nf = info.get("nf", counter.calls)
    steps = info.get("steps")
    return Outcome(u if ok else None, ok, "" if ok else "the solver returned NaN or Inf",
                   None if nf is None else int(nf), None if steps is None else int(steps))

