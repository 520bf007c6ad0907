"""``odeint(..., method='scipy_solver')``: torchdiffeq's wrapper of :func:`scipy.integrate.solve_ivp`.

The solve runs in scipy, forward only: ``func`` is called under ``torch.no_grad()`` on tensors made from scipy's
float64 (or complex128) arrays, and the result is a new tensor with ``y0``'s dtype and device that carries no
gradient, whatever requires grad (torchdiffeq 0.2.5 does the same). As in torchdiffeq, decreasing ``t`` is
solved in negated time (``s = -t``, ``dy/ds = -func(-s, y)``), tuple states as one flat vector (``atol`` / ``rtol``
may then be tuples, one tolerance per part), and complex states directly (scipy's 'RK23', 'RK45', 'DOP853',
'Radau' and 'BDF' take complex ``y``; 'LSODA' does not). ``func`` receives ``t`` as a 0-d tensor of the real
dtype of ``y0`` (torchdiffeq gives it ``y0``'s dtype, complex for complex states).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .errors import InputError, SolverError, warn_caller
from .solution import ReturnCode

__all__ = ["odeint_scipy", "SCIPY_OPTIONS", "check_scipy_call"]

Tensor = torch.Tensor

#: the options torchdiffeq's ``scipy_solver`` takes (``norm``, ``grid_points`` and ``eps`` it accepts and ignores)
SCIPY_OPTIONS = frozenset({"solver", "min_step", "max_step"})
_IGNORED = frozenset({"norm", "grid_points", "eps"})
_OTHER_SOLVERS = frozenset({"first_step", "max_num_steps", "jump_t", "step_t", "dtype", "safety", "ifactor",
                            "dfactor", "step_size", "grid_constructor", "interp", "perturb", "max_order",
                            "max_iters", "implicit"})
_SOLVERS = ("RK23", "RK45", "DOP853", "Radau", "BDF", "LSODA")


def check_scipy_call(**given: Any) -> None:
    """Refuse what a scipy forward solve cannot honour: ``given`` maps each such ``odeint`` argument's name to
    whether it was set (``alg``, ``sensealg``, ``backend``, ``event_fn``, ``compile``, ``progress``, the
    ``adjoint_*`` settings)."""
    refused = [name for name, on in given.items() if on]
    if refused:
        raise InputError(f"method='scipy_solver' runs scipy.integrate.solve_ivp forward, without gradients (as in "
                         f"torchdiffeq); it cannot honour {', '.join(refused)}: drop them, or use a pysciml method "
                         "(method='dopri5', alg=Rodas5P()) for gradients")


def _options(options: dict[str, Any] | None) -> tuple[str, float, float]:
    opts = dict(options or {})
    unknown = set(opts) - SCIPY_OPTIONS - _IGNORED - _OTHER_SOLVERS
    if unknown:
        raise InputError(f"unknown options {sorted(unknown)} for method='scipy_solver'; accepted keys: "
                         f"{sorted(SCIPY_OPTIONS)}")
    other = sorted(set(opts) & _OTHER_SOLVERS)
    if other:
        warn_caller(f"scipy_solver: options {other} are for other solvers and are ignored (as torchdiffeq ignores "
                    "them)")
    solver = opts.get("solver", "LSODA")
    if not (isinstance(solver, str) and solver in _SOLVERS) and not isinstance(solver, type):
        raise InputError(f"options['solver'] must be one of {list(_SOLVERS)} (scipy.integrate.solve_ivp's "
                         f"methods) or an OdeSolver class, got {solver!r}")
    min_step, max_step = float(opts.get("min_step", 0.0)), float(opts.get("max_step", math.inf))
    if not (min_step >= 0 and max_step > 0) or min_step > max_step:
        raise InputError(f"options min_step (>= 0) and max_step (> 0, >= min_step) got {min_step!r}, {max_step!r}")
    return solver, min_step, max_step


def _tolerance(name: str, tol: Any, parts: tuple[Tensor, ...] | None) -> Any:
    """A scalar tolerance as is; a tensor as numpy; a tuple (one per part of a tuple state) expanded per element."""
    if parts is not None and isinstance(tol, (tuple, list)):
        if len(tol) != len(parts):
            raise InputError(f"a tuple {name} needs one entry per part of y0 ({len(parts)}), got {len(tol)}")
        return np.concatenate([np.broadcast_to(np.asarray(torch.as_tensor(v).detach().cpu(), dtype=float),
                                               tuple(p.shape)).reshape(-1) for v, p in zip(tol, parts, strict=True)])
    if isinstance(tol, Tensor):
        return tol.detach().cpu().numpy().astype(float)
    return tol


def odeint_scipy(func: Callable[..., Any], y0: Tensor | tuple[Tensor, ...], t: Tensor, *, rtol: Any, atol: Any,
                 options: dict[str, Any] | None) -> Tensor | tuple[Tensor, ...]:
    """``y`` at the times ``t`` by :func:`scipy.integrate.solve_ivp` (torchdiffeq's ``scipy_solver``).

    Args:
        func: ``func(t, y)`` with ``y`` shaped like ``y0`` (a tuple for tuple states).
        y0: a tensor (real or complex) or a tuple of tensors.
        t: 1-D increasing or decreasing times (``t[0]`` the initial time).
        rtol, atol: solve_ivp's tolerances (tuples per part for tuple states).
        options: ``solver`` (solve_ivp's ``method``: 'LSODA' default, 'RK45', 'DOP853', 'Radau', 'BDF', 'RK23'),
            ``min_step`` (LSODA only), ``max_step``.

    Returns:
        ``(len(t), *y0.shape)`` (a tuple of them for tuple ``y0``) with ``y0``'s dtype and device, no gradient.

    Raises:
        SolverError: scipy's integration failed (its message, and the output times it failed between).
    """
    solver, min_step, max_step = _options(options)
    parts = y0 if isinstance(y0, tuple) else None
    if parts is not None:
        if not parts or not all(isinstance(p, Tensor) for p in parts):
            raise InputError("a tuple y0 must hold tensors")
        flat = torch.cat([p.reshape(-1) for p in parts])
    elif isinstance(y0, Tensor):
        flat = y0.reshape(-1)
    else:
        raise InputError(f"y0 must be a torch.Tensor or a tuple of tensors, got {type(y0).__name__}")
    t = torch.as_tensor(t)
    if t.ndim != 1 or len(t) < 1:
        raise InputError(f"t must be a 1-D sequence of times, got shape {tuple(t.shape)}")
    dtype, device = flat.dtype, flat.device
    real = flat.real.dtype if flat.is_complex() else flat.dtype
    sizes = [p.numel() for p in parts] if parts is not None else None

    def to_user(row: Tensor) -> Any:
        """Flat ``(..., n)`` -> the user's shapes ``(..., *y0.shape)`` (a tuple for tuple states)."""
        lead = row.shape[:-1]
        if parts is None:
            return row.reshape(*lead, *y0.shape)  # type: ignore[union-attr]
        return tuple(q.reshape(*lead, *p.shape) for q, p in zip(torch.split(row, sizes, dim=-1), parts, strict=True))

    if len(t) == 1:
        return to_user(flat.detach()[None].clone())
    times = t.detach().cpu().numpy().astype(float)
    sign = -1.0 if times[0] > times[1] else 1.0  # torchdiffeq solves decreasing t in negated time
    times = sign * times
    if np.any(np.diff(times) <= 0):
        raise InputError("t must be strictly increasing or strictly decreasing")

    def rhs(s: float, y: np.ndarray) -> np.ndarray:
        ts = torch.tensor(sign * s, dtype=real, device=device)
        yt = torch.as_tensor(y).to(device=device, dtype=dtype)
        with torch.no_grad():
            out = func(ts, to_user(yt))
            dy = torch.cat([o.reshape(-1) for o in out]) if parts is not None else out.reshape(-1)
        return sign * dy.detach().cpu().numpy()

    kwargs: dict[str, Any] = {"max_step": max_step}
    if solver == "LSODA" or min_step != 0.0:
        kwargs["min_step"] = min_step
    y_start = flat.detach().cpu().numpy()
    from scipy.integrate import solve_ivp  # here, not at import: scipy.integrate takes 1-2 s to import

    try:
        sol = solve_ivp(rhs, (times[0], times[-1]), y_start, method=solver, t_eval=times,
                        rtol=_tolerance("rtol", rtol, parts), atol=_tolerance("atol", atol, parts), **kwargs)
    except ValueError as exc:  # scipy's own checks of y0, tolerances and method
        raise InputError(f"scipy.integrate.solve_ivp refused the problem: {exc}") from exc
    if sol.status != 0 or sol.y.shape[1] != len(times):
        done = sol.y.shape[1]  # output times reached
        raise SolverError(f"scipy_solver ({solver}) failed between t={sign * times[done - 1]:.6g} and "
                          f"t={sign * times[done]:.6g} (output times): {sol.message}; try another options['solver'] "
                          "(e.g. 'Radau' or 'BDF' for stiff problems) or looser rtol/atol", ReturnCode.DtLessThanMin)
    ys = torch.as_tensor(sol.y.T).to(device=device, dtype=dtype)
    return to_user(ys)
