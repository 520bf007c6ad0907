"""Is ``f`` differentiable by autograd? One directional check, run once per function before gradients flow.

A right-hand side that leaves torch's autograd graph (numpy inside ``f``, ``.item()``, ``float(...)``,
``.detach()``) still returns the right values, so the solve looks fine, but every gradient through it is
wrong (the discrete adjoint then differentiates only the ``u + dt * k`` skeleton of the steps) or missing.
The check compares ``w^T J v`` from one reverse pass with central finite differences along a random
direction ``v`` (and a random output weight ``w``), at the first call of ``f`` with gradients requested:
three extra calls of ``f`` and one backward pass, once per function (cached: a module, the instance behind a
bound method, what a wrapper names as its owner, or a plain function's code together with the identities of
what it captures, so a lambda remade for every solve of a training loop is checked once).

A deterministic smooth ``f`` agrees to ~1e-10 (float64); a ReLU network agrees unless a kink falls within
the tiny probe step of one of its units (it then differs by that unit's share only, far below the
tolerance); an ``f`` that returns different values for the same input (dropout, sampling) cannot be
checked and is skipped.
"""

from __future__ import annotations

import inspect
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from ..errors import InputError
from ..problem import OWNER_ATTR

Tensor = torch.Tensor

_VERIFIED: weakref.WeakSet[Any] = weakref.WeakSet()
# plain functions made anew for every solve (``odeint(lambda t, y: model(y), ...)`` in a training loop) are
# identified by their code and the identities of what they capture (closure, defaults, the globals they name);
# bounded, least recently used first out
_VERIFIED_FUNCTIONS: OrderedDict[tuple[int, ...], types.CodeType] = OrderedDict()
_MAX_FUNCTIONS = 4096


def _function_key(f: Any) -> tuple[int, ...] | None:
    if not isinstance(f, types.FunctionType):
        return None
    captured = [c.cell_contents for c in f.__closure__ or () if _filled(c)] + list(f.__defaults__ or ())
    captured += [f.__globals__[n] for n in f.__code__.co_names if n in f.__globals__]  # rebinding a global shows
    return (id(f.__code__), *(id(x) for x in captured))


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell
        return False
    return True


def owner_of(f: Any) -> Any:
    """What identifies ``f`` across solves: the object named by its ``OWNER_ATTR`` chain (the models' call
    counters, made for every solve, name the module they call), then the instance behind a bound method."""
    while hasattr(f, OWNER_ATTR):
        f = getattr(f, OWNER_ATTR)
    return f.__self__ if inspect.ismethod(f) else f


def ensure_differentiable(f: Any, call: Callable[[Tensor, Tensor], Tensor], t: Tensor, u: Tensor,
                          name: str = "f") -> None:
    """Raise :class:`InputError` if ``call(t, u)`` (``f`` in any layout) is not differentiable by autograd
    with respect to ``u``: its reverse-mode directional derivative disagrees with finite differences."""
    key = owner_of(f)
    fkey = _function_key(key)
    if fkey is not None and fkey in _VERIFIED_FUNCTIONS:
        _VERIFIED_FUNCTIONS.move_to_end(fkey)
        return
    try:
        if key in _VERIFIED:
            return
    except TypeError:  # not weak-referenceable: check every time
        key = None
    if u.dtype not in (torch.float32, torch.float64) or u.numel() == 0:
        return
    # identity saved-tensor hooks: the check's own graph must stay invisible to an enclosing
    # torch.utils.checkpoint region, whose recomputation (with f already verified) skips the check
    with torch.autograd.graph.saved_tensors_hooks(lambda x: x, lambda x: x):
        _check(call, t, u, name)
    if fkey is not None:
        _VERIFIED_FUNCTIONS[fkey] = key.__code__  # holding the code keeps its id from being reused
        if len(_VERIFIED_FUNCTIONS) > _MAX_FUNCTIONS:
            _VERIFIED_FUNCTIONS.popitem(last=False)
    elif key is not None:
        _VERIFIED.add(key)


def _check(call: Callable[[Tensor, Tensor], Tensor], t: Tensor, u: Tensor, name: str) -> None:
    x = u.detach()
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        out = call(t, xg)
    gen = torch.Generator().manual_seed(20261130)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    w = torch.randn(out.shape, generator=gen, dtype=x.dtype).to(x.device)
    if out.requires_grad:
        (g,) = torch.autograd.grad(out, xg, w, allow_unused=True)
        ad = 0.0 if g is None else float((g * v).sum())
    else:
        ad = 0.0
    eps = torch.finfo(x.dtype).eps
    h = eps ** (1 / 3) * (1.0 + float(x.abs().max())) / float(v.abs().max())
    with torch.no_grad():
        up, down = call(t, x + h * v), call(t, x - h * v)
    fd = float((w * (up - down)).sum()) / (2 * h)
    noise = 100 * eps * float((w.abs() * (up.abs() + down.abs())).sum()) / h
    tol = 1e-3 if x.dtype == torch.float64 else 3e-2
    if abs(ad - fd) > tol * max(abs(ad), abs(fd)) + noise:
        with torch.no_grad():
            if not torch.equal(call(t, x), out.detach()):
                return  # nondeterministic f (dropout, sampling): no check is possible
        raise InputError(
            f"{name} is not differentiable by autograd: its derivative along a random direction is {ad:.6g} by "
            f"autograd but {fd:.6g} by finite differences, so gradients through the solve would be wrong. "
            f"{name} leaves torch's autograd graph somewhere (numpy, .item(), float(), .detach(), or a "
            "tensor rebuilt from values); write it with torch operations on u, or solve under torch.no_grad() "
            "if no gradient is needed"
        )
