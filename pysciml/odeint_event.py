"""``odeint_event``: torchdiffeq's call that integrates until an event and differentiates through its time.

``event_t, solution = odeint_event(func, y0, t0, event_fn=...)`` integrates from ``t0`` until ``event_fn(t, y)``
reaches zero (``odeint``'s event mode, :mod:`pysciml.odeint_until_event`) and links the gradient of ``event_t``
(and of the final state) to ``y0`` and ``func``'s parameters by the implicit function theorem: with
``g(t_e, y(t_e; theta)) = 0``, ``dt_e/dtheta = -(dg/dy . dy/dtheta) / (dg/dt + dg/dy . f)``. The states' own
gradients come from whichever sensitivity ``odeint_interface`` computes (``odeint``: the discrete adjoint for
explicit methods; ``odeint_adjoint``: a continuous adjoint), so the event time's gradient does too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .errors import InputError
from .odeint import odeint
from .odeint_until_event import flat_state

__all__ = ["odeint_event"]

Tensor = torch.Tensor


def odeint_event(func: Callable[..., Any], y0: Tensor | tuple[Tensor, ...], t0: Tensor | float, *,
                 event_fn: Callable[..., Any], reverse_time: bool = False,
                 odeint_interface: Callable[..., Any] = odeint, **kwargs: Any) -> tuple[Tensor, Any]:
    """Integrate ``dy/dt = func(t, y)`` from ``t0`` until ``event_fn(t, y) = 0`` (torchdiffeq's ``odeint_event``).

    Args:
        func: ``func(t, y)``; ``y`` shaped like ``y0`` (a tuple of tensors allowed).
        y0: initial state.
        t0: start time (a number or a 0-d / one-element tensor; may require grad).
        event_fn: ``event_fn(t, y)`` -> a scalar tensor, or a tensor of several event functions (the first zero of
            any of them is the event, as in torchdiffeq).
        reverse_time: integrate towards decreasing ``t``.
        odeint_interface: :func:`pysciml.odeint` (default) or :func:`pysciml.odeint_adjoint`.
        **kwargs: passed to ``odeint_interface`` (``rtol``, ``atol``, ``method``, ``options``, ``alg``, ...).

    Returns:
        ``(event_t, solution)``: ``event_t`` a 0-d tensor, differentiable with respect to ``y0`` and ``func``'s
        parameters (through the states, not through parameters that only ``event_fn`` uses, as in torchdiffeq);
        ``solution`` the states at ``[t0, event_t]``, ``(2, *y0.shape)`` (a tuple of them for tuple ``y0``), whose
        last entry's gradient includes the motion of ``event_t``.
    """
    if "event_fn" in kwargs or "t" in kwargs:
        raise InputError("odeint_event takes the start time t0 and event_fn= itself; drop t= from the keywords")
    like = y0 if isinstance(y0, Tensor) else y0[0] if isinstance(y0, tuple) and y0 else None
    if like is None:
        raise InputError(f"y0 must be a tensor or a non-empty tuple of tensors, got {type(y0).__name__}")
    t0 = torch.as_tensor(t0, dtype=like.dtype, device=like.device) if not isinstance(t0, Tensor) else t0
    if t0.numel() != 1:
        raise InputError(f"t0 must be one time (a number or a one-element tensor), got shape {tuple(t0.shape)}")
    start = t0.reshape(-1)
    t = torch.cat((start, start.detach() + (-1.0 if reverse_time else 1.0)))
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    f, g, flat0, unflat = flat_state(func, event_fn, y0)
    with torch.no_grad():
        sign0 = torch.sign(torch.as_tensor(g(start[0].detach(), flat0.detach())))
    parts = solution if isinstance(solution, tuple) else (solution,)
    state_t = torch.cat([s[-1].reshape(-1) for s in parts])
    event_t, state_t = _EventTimeGradient.apply(f, g, sign0, event_t, state_t)
    ends = unflat(state_t)
    ends = ends if isinstance(ends, tuple) else (ends,)
    out = tuple(torch.cat((s[:-1], e[None])) for s, e in zip(parts, ends, strict=True))
    return event_t, out if isinstance(solution, tuple) else out[0]


class _EventTimeGradient(torch.autograd.Function):
    """Pass ``(event_t, state_t)`` through; in the backward pass route the event time's gradient (and the final
    state's, which moves with the event time along ``f``) into ``state_t`` by the implicit function theorem."""

    @staticmethod
    def forward(ctx: Any, f: Callable[..., Tensor], g: Callable[..., Tensor], sign0: Tensor, event_t: Tensor,
                state_t: Tensor) -> tuple[Tensor, Tensor]:
        ctx.f, ctx.g = f, g
        ctx.save_for_backward(sign0, event_t.detach(), state_t.detach())
        return event_t.detach().clone(), state_t.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad_t: Tensor, grad_state: Tensor) -> tuple[Tensor | None, ...]:
        sign0, event_t, state_t = ctx.saved_tensors
        with torch.enable_grad():
            te = event_t.clone().requires_grad_(True)
            y = state_t.clone().requires_grad_(True)
            c = torch.as_tensor(ctx.g(te, y))
            c = (c * sign0).min() if c.numel() > 1 else c.reshape(())  # torchdiffeq's combination of several
            dc_dt, dc_dy = torch.autograd.grad(c, (te, y), allow_unused=True)
        with torch.no_grad():
            fy = ctx.f(te.detach(), state_t)
            dc_dy = torch.zeros_like(state_t) if dc_dy is None else dc_dy
            slope = (dc_dy * fy).sum() + (0.0 if dc_dt is None else dc_dt)
            total_t = grad_t + (grad_state * fy).sum()  # the final state moves with the event time
            grad_y = grad_state - dc_dy * (total_t / slope)
        return None, None, None, None, grad_y
