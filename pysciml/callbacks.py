"""Events: :class:`ContinuousCallback`, :class:`DiscreteCallback` and :class:`CallbackSet` (SciML's names).

Pass one of them as ``solve(prob, alg, callback=...)``. The native engine checks them after every accepted step
(:mod:`pysciml.engine.events`); the guide is ``docs/guide/events.md``.

Shapes, as ``f`` sees them: for an unbatched problem ``t`` is a 0-d tensor and ``u`` has ``u0``'s shape; a
``ContinuousCallback``'s condition returns a scalar (one event function) or a 1-D tensor of ``m`` event functions,
a ``DiscreteCallback``'s condition a bool (or a 0-d bool tensor). For a batched problem ``t`` is ``(B,)``, ``u`` is
``(B, *state)``, conditions return ``(B,)`` or ``(B, m)`` (discrete ones a ``(B,)`` bool tensor), and ``affect``
is called on the whole batch: its result is used for the trajectories that hit the event only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from .errors import InputError
from .problem import takes_params

__all__ = ["ContinuousCallback", "DiscreteCallback", "CallbackSet", "as_callback_set"]

_DIRECTIONS = {"both": 0, "up": 1, "down": -1}


def _takes_p(fn: Callable[..., Any], name: str) -> bool:
    return takes_params(fn, name, 2, "(t, u, p) or (t, u)", f". Wrap it, e.g. lambda t, u, p: {name}(t, u)")


class ContinuousCallback:
    """An event where ``condition(t, u[, p])`` crosses zero, located on the step's dense interpolant.

    Args:
        condition: ``condition(t, u)`` or ``condition(t, u, p)``; a scalar per trajectory, or ``m`` of them (a
            vector: each component is an event function of its own, the earliest crossing in a step wins).
        affect: ``affect(t, u[, p]) -> new u`` applied at the event (e.g. a bouncing ball's velocity flip); the
            integration restarts there. ``None``: the event is only recorded (or ends the solve if ``terminal``).
        direction: ``"both"``, ``"up"`` (from negative to non-negative) or ``"down"`` (from positive to
            non-positive).
        terminal: end the trajectory at the event with ``ReturnCode.Terminated`` (a success).
        rootfind_tol: absolute tolerance of the event time (in units of ``t``; bounded below by the resolution of
            the step's own float arithmetic).
        save_positions: ``(before, after)``: with every-step saving (unbatched, ``saveat=None``), whether the output
            holds the state just before and just after ``affect`` at the event time. Save times (``saveat``) are
            saved as asked and no more.
        interp_points: how many equal parts of each step the condition is sampled on (SciML's ``interp_points``,
            default 10): a sign change between two samples is found even if the step's ends have the same sign
            (a ball that rises and falls within one step). Each event function's first sign change in a step
            counts.
        event_gradient: for a terminal event of a solve differentiated through its steps, attach the implicit
            function theorem's gradient to the event time and to the state at the event (one Newton correction
            with the graph attached); ``odeint`` turns it off to follow torchdiffeq's semantics.
    """

    def __init__(self, condition: Callable[..., Any], affect: Callable[..., Any] | None = None, *,
                 direction: str = "both", terminal: bool = False, rootfind_tol: float = 1e-12,
                 save_positions: tuple[bool, bool] = (True, True), interp_points: int = 10,
                 event_gradient: bool = True) -> None:
        self.condition = condition
        self.condition_takes_p = _takes_p(condition, "condition")
        if affect is not None and not callable(affect):
            raise InputError(f"affect must be callable as affect(t, u[, p]) -> new u, or None; got "
                             f"{type(affect).__name__}")
        self.affect = affect
        self.affect_takes_p = _takes_p(affect, "affect") if affect is not None else False
        if direction not in _DIRECTIONS:
            raise InputError(f"direction must be 'both', 'up' or 'down', got {direction!r}")
        self.direction = direction
        self.sign = _DIRECTIONS[direction]
        self.terminal = _flag(terminal, "terminal")
        if isinstance(rootfind_tol, bool) or not isinstance(rootfind_tol, (int, float)) or not (
                math.isfinite(rootfind_tol) and rootfind_tol > 0):
            raise InputError(f"rootfind_tol must be a positive finite number (a tolerance in t), got {rootfind_tol!r}")
        self.rootfind_tol = float(rootfind_tol)
        if (not isinstance(save_positions, (tuple, list)) or len(save_positions) != 2
                or not all(isinstance(s, bool) for s in save_positions)):
            raise InputError(f"save_positions must be a pair of bools (before, after), got {save_positions!r}")
        self.save_positions = (bool(save_positions[0]), bool(save_positions[1]))
        if isinstance(interp_points, bool) or not isinstance(interp_points, int) or interp_points < 1:
            raise InputError(f"interp_points must be a positive integer (samples per step), got {interp_points!r}")
        self.interp_points = interp_points
        self.event_gradient = _flag(event_gradient, "event_gradient")

    def __repr__(self) -> str:
        return (f"ContinuousCallback(direction={self.direction!r}, terminal={self.terminal}, "
                f"affect={'yes' if self.affect is not None else 'no'})")


class DiscreteCallback:
    """``affect`` applied after every accepted step where ``condition(t, u[, p])`` is true (at the step's end).

    Args:
        condition: ``condition(t, u[, p])`` -> bool (a ``(B,)`` bool tensor for a batched problem).
        affect: ``affect(t, u[, p]) -> new u`` (the integration restarts there), or ``None`` with ``terminal=True``.
        terminal: end the trajectory there with ``ReturnCode.Terminated``.
    """

    def __init__(self, condition: Callable[..., Any], affect: Callable[..., Any] | None = None, *,
                 terminal: bool = False) -> None:
        self.condition = condition
        self.condition_takes_p = _takes_p(condition, "condition")
        if affect is not None and not callable(affect):
            raise InputError(f"affect must be callable as affect(t, u[, p]) -> new u, or None; got "
                             f"{type(affect).__name__}")
        self.terminal = _flag(terminal, "terminal")
        if affect is None and not self.terminal:
            raise InputError("DiscreteCallback needs an affect(t, u[, p]) -> new u, or terminal=True (a callback "
                             "that neither changes u nor ends the solve does nothing)")
        self.affect = affect
        self.affect_takes_p = _takes_p(affect, "affect") if affect is not None else False
        self.save_positions = (True, True)

    def __repr__(self) -> str:
        return f"DiscreteCallback(terminal={self.terminal}, affect={'yes' if self.affect is not None else 'no'})"


Callback = ContinuousCallback | DiscreteCallback


class CallbackSet:
    """Several callbacks checked together (nested sets are flattened, the order kept): ``sol.t_events[k]`` is the
    ``k``-th callback's."""

    def __init__(self, *callbacks: Callback | CallbackSet) -> None:
        flat: list[Callback] = []
        for c in callbacks:
            if isinstance(c, CallbackSet):
                flat.extend(c.callbacks)
            elif isinstance(c, (ContinuousCallback, DiscreteCallback)):
                flat.append(c)
            else:
                raise InputError(f"CallbackSet takes ContinuousCallback, DiscreteCallback or CallbackSet objects, got "
                                 f"{type(c).__name__}")
        self.callbacks: tuple[Callback, ...] = tuple(flat)

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def __repr__(self) -> str:
        return f"CallbackSet({', '.join(map(repr, self.callbacks))})"


def as_callback_set(callback: Any) -> CallbackSet | None:
    """``solve``'s ``callback`` as a :class:`CallbackSet` (``None`` for none or an empty set); anything else is an
    :class:`InputError` naming what is accepted."""
    if callback is None:
        return None
    if isinstance(callback, (list, tuple)):
        callback = CallbackSet(*callback)
    if isinstance(callback, (ContinuousCallback, DiscreteCallback)):
        callback = CallbackSet(callback)
    if not isinstance(callback, CallbackSet):
        raise InputError(f"callback must be a ContinuousCallback, DiscreteCallback or CallbackSet, got "
                         f"{type(callback).__name__}")
    return callback if len(callback) else None


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value
