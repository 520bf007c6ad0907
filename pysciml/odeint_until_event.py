"""``odeint(..., event_fn=...)``: torchdiffeq's event mode (integrate until ``event_fn(t, y)`` reaches zero).

:func:`until_event` is what :func:`pysciml.odeint` runs when given ``event_fn``: it locates the event time with a
solve under ``torch.no_grad()`` (a terminal :class:`~pysciml.callbacks.ContinuousCallback`, root on the dense
interpolant), then calls ``odeint`` itself on ``[t0, event_t]``, so the returned states carry the gradients of
whichever sensitivity ``odeint`` was asked for (discrete or continuous adjoint), at a fixed event time, as
torchdiffeq's ``odeint`` does. :func:`pysciml.odeint_event` adds the gradient through the event time. Kept apart
from :mod:`pysciml.odeint_event` so that neither module imports the other's importer (``odeint`` is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .algorithms import Algorithm
from .callbacks import ContinuousCallback
from .errors import InputError, SolverError
from .odeint_grid import grid_until_event
from .odeint_options import FIXED_GRID_METHODS, translate_options
from .problem import ODEProblem
from .solution import ReturnCode
from .solve import solve

__all__ = ["until_event", "flat_state", "HORIZON"]

Tensor = torch.Tensor

#: how far (times ``max(1, |t[1] - t[0]|)``) the search runs past ``t[0]`` before giving up with a ``SolverError``
HORIZON = 1e6


def flat_state(func: Callable[..., Any], event_fn: Callable[..., Any], y0: Tensor | tuple[Tensor, ...]
               ) -> tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor, Tensor], Tensor], Tensor,
                          Callable[[Tensor], Any]]:
    """``func`` and ``event_fn`` on the flat state (a tuple ``y0`` concatenated), the flat ``y0`` and the map back
    to the user's form."""
    if isinstance(y0, Tensor):
        shape = y0.shape

        def unflat(y: Tensor) -> Any:
            return y.reshape(shape)
        flat = y0.reshape(-1)
    elif isinstance(y0, tuple) and all(isinstance(y, Tensor) for y in y0):
        shapes = [y.shape for y in y0]
        sizes = [math.prod(s) for s in shapes]

        def unflat(y: Tensor) -> Any:
            return tuple(p.reshape(s) for p, s in zip(torch.split(y, sizes), shapes, strict=True))
        flat = torch.cat([y.reshape(-1) for y in y0])
    else:
        raise InputError(f"y0 must be a tensor or a tuple of tensors, got {type(y0).__name__}")

    def f(t: Tensor, y: Tensor) -> Tensor:
        out = func(t, unflat(y))
        return torch.cat([o.reshape(-1) for o in out]) if isinstance(out, tuple) else out.reshape(-1)

    def g(t: Tensor, y: Tensor) -> Tensor:
        return event_fn(t, unflat(y))

    return f, g, flat, unflat


def until_event(odeint: Callable[..., Any], func: Callable[..., Any], y0: Tensor | tuple[Tensor, ...], t: Any,
                event_fn: Callable[..., Any], algorithm: Algorithm, *, method: Any, rtol: float, atol: Any,
                options: dict[str, Any] | None, **odeint_kwargs: Any) -> tuple[Tensor, Any]:
    """torchdiffeq's event mode: ``(event_t, solution)`` with ``solution`` the states at ``[t[0], event_t]``
    (``(2, *y0.shape)``, a tuple of them for tuple states). ``t`` holds two times: ``t[0]`` the start, ``t[1]``
    only the direction. ``event_t`` has no gradient (use :func:`pysciml.odeint_event` for one)."""
    if not callable(event_fn):
        raise InputError(f"event_fn must be callable as event_fn(t, y) -> tensor, got {type(event_fn).__name__}")
    like = y0 if isinstance(y0, Tensor) else y0[0] if isinstance(y0, tuple) and y0 else None
    if like is None or like.is_complex():
        raise InputError("event_fn needs a real tensor y0 (or a tuple of them)")
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim != 1 or t.shape[0] != 2:
        raise InputError(f"with event_fn, t must hold two times [t0, t1] (t0 the start, t1 only the direction, as in "
                         f"torchdiffeq), got shape {tuple(t.shape)}")
    t0, t1 = float(t[0].detach()), float(t[1].detach())
    if t1 == t0:
        raise InputError("with event_fn, t[1] must differ from t[0] (it gives the direction of integration)")
    direction = 1.0 if t1 > t0 else -1.0
    f, g, flat, unflat = flat_state(func, event_fn, y0)
    if odeint_kwargs.get("backend", "torch") != "torch":
        raise InputError("event_fn runs on the native engine; drop backend= (or use backend='torch')")
    if (isinstance(method, str) and method.lower() in FIXED_GRID_METHODS) or not algorithm.is_adaptive:
        settings = translate_options(algorithm, options, rtol, atol, t, True)
        assert settings.grid is not None
        event_t, rows = grid_until_event(f, flat, t[0], direction, settings.alg or algorithm, settings.grid, g,
                                         rtol=rtol, atol=float(min(atol) if isinstance(atol, (tuple, list)) else atol))
        parts = [unflat(row) for row in rows]
        if isinstance(y0, tuple):
            return event_t.to(t.dtype), tuple(torch.stack(c) for c in zip(*parts, strict=True))
        return event_t.to(t.dtype), torch.stack(parts)
    search_atol = min(float(a) for a in atol) if isinstance(atol, (tuple, list)) else atol
    far = t0 + direction * HORIZON * max(1.0, abs(t1 - t0))
    maxiters = int((options or {}).get("max_num_steps", 100_000))
    with torch.no_grad():
        prob = ODEProblem(f, flat.detach(), (t0, far))
        sol = solve(prob, algorithm, rtol=rtol, atol=search_atol, dense=False, maxiters=maxiters,
                    callback=ContinuousCallback(g, terminal=True, event_gradient=False))
    if sol.retcode is not ReturnCode.Terminated:
        raise SolverError(f"odeint: no event before t={float(sol.t[-1]):.6g}: {sol.message}", sol.retcode)
    event_t = sol.t[-1].to(t.dtype)
    solution = odeint(func, y0, torch.stack((t[0], event_t)), rtol=rtol, atol=atol, method=method, options=options,
                      **odeint_kwargs)
    return event_t, solution
