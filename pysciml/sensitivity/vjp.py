"""Vector-Jacobian products of the right-hand side, the building block of every continuous adjoint.

``a^T df/du`` and ``a^T df/dp`` come from one reverse pass of torch autograd through ``f``; ``df/du`` itself
(needed as ``-J^T`` by implicit adjoint solves) from forward-mode autodiff, the problem's ``jac``, or finite
differences, exactly like the forward solve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..engine.graph_check import ensure_differentiable, owner_of
from ..errors import InputError, warn_caller
from ..problem import call_f

Tensor = torch.Tensor


def vjp(f: Callable[..., Tensor], takes_p: bool, p: object, t: Tensor, y: Tensor, a: Tensor,
        params: Sequence[Tensor], *, need_t: bool = False, known: Sequence[Tensor] | None = None
        ) -> tuple[Tensor, Tensor, list[Tensor | None], Tensor | None]:
    """``(f(t, y), a^T df/dy, [a^T df/dp_k], a^T df/dt)`` with ``y`` shaped like the state.

    Parameters that ``f`` does not use get ``None`` (their gradient is not silently zero: the caller decides).
    ``known``: every tensor whose gradient the adjoint computes; if given, an ``f`` that uses another tensor
    requiring grad here is refused (:func:`refuse_new_leaves`).
    """
    with torch.enable_grad():
        yv = y.detach().requires_grad_(True)
        tv = t.detach().requires_grad_(need_t)
        out = call_f(f, takes_p, p, tv, yv)
        if known is not None:
            refuse_new_leaves(out, [yv, tv, *known], t)
        inputs = [yv, *params] + ([tv] if need_t else [])
        # retain_graph: a parameter may sit behind a graph made outside f (k = exp(log_k) captured by f), which
        # every vector-Jacobian product traverses; this call's own nodes still go when `out` does
        grads = torch.autograd.grad(out, inputs, a, allow_unused=True, retain_graph=True)
    gy = grads[0] if grads[0] is not None else torch.zeros_like(y)
    gp = list(grads[1: 1 + len(params)])
    gt = grads[-1] if need_t else None
    return out.detach(), gy, gp, gt


def check_params(params: Sequence[Tensor]) -> list[Tensor]:
    out = []
    for i, q in enumerate(params):
        if not isinstance(q, Tensor):
            raise InputError(f"adjoint_params[{i}] must be a torch.Tensor, got {type(q).__name__}")
        out.append(q)
    return out


def graph_leaves(out: Tensor, exclude: Sequence[Tensor] = ()) -> list[Tensor]:
    """Leaf tensors requiring grad that ``out`` depends on (walking its autograd graph), minus ``exclude``."""
    # seen keeps the node objects alive: Python wrappers of autograd nodes are created on access, and the id
    # of a freed wrapper can be reused by the next one, which would then be skipped as already seen
    seen: dict[int, Any] = {}
    leaves: list[Tensor] = []
    skip = {id(x) for x in exclude}
    stack = [out.grad_fn] if out.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        var = getattr(node, "variable", None)
        if var is not None:
            if id(var) not in skip and all(var is not x for x in leaves):
                leaves.append(var)
            continue
        stack.extend(n for n, _ in node.next_functions)
    return leaves


def refuse_new_leaves(out: Tensor, known: Sequence[Tensor], t: Tensor) -> None:
    """Raise :class:`InputError` if ``out`` depends on a tensor requiring grad outside ``known``: one that
    ``f`` did not use when the adjoint's parameters were discovered, whose gradient can no longer be added."""
    extra = graph_leaves(out, known) if isinstance(out, Tensor) else []
    if extra:
        shapes = ", ".join(str(tuple(x.shape)) for x in extra[:4])
        tv = float(t.detach().reshape(-1)[0])
        raise InputError(
            f"f uses {len(extra)} tensor(s) requiring grad (shapes {shapes}) at t={tv:.6g} that it did not use "
            "where the adjoint looked for parameters (t0, t1 and the module's parameters), so their gradient "
            "cannot be computed. With odeint pass adjoint_params=[...] listing every tensor f uses; with solve put "
            "the tensor in p; or use DiscreteAdjoint()"
        )


def discover_params(f: Callable[..., Tensor], takes_p: bool, p: object, t: Tensor, y: Tensor,
                    given: Sequence[Tensor] | None, t_end: Tensor | None = None) -> list[Tensor]:
    """The tensors a continuous adjoint must differentiate: ``given`` (adjoint_params) or, if ``None``, every
    tensor requiring grad that ``f`` uses: the parameters of the ``nn.Module`` behind ``f`` (all of them, used
    or not, as torchdiffeq does) and the leaves of ``f``'s autograd graph at ``t`` and ``t_end``. A tensor
    ``f`` uses only at other times is caught during the backward pass (:func:`refuse_new_leaves`).
    Leaves used by ``f`` but left out of an explicit ``given`` get a warning: their gradient will be ``None``.

    Also checks, once per function, that ``f`` is differentiable by autograd with respect to the state
    (:func:`~pysciml.engine.graph_check.ensure_differentiable`) when gradients are requested."""

    owner = owner_of(f)
    module = [q for q in owner.parameters() if q.requires_grad] if isinstance(owner, torch.nn.Module) else []
    used: list[Tensor] = []
    with torch.enable_grad():
        for tt in (t, t_end) if t_end is not None else (t,):
            out = call_f(f, takes_p, p, tt.detach(), y.detach().clone())  # a copy: f may write into u
            if isinstance(out, Tensor):
                used += graph_leaves(out, used)
    found = module + [x for x in used if all(x is not q for q in module)]
    if torch.is_grad_enabled() and (y.requires_grad or found or given):
        ensure_differentiable(f, lambda tt, yy: call_f(f, takes_p, p, tt, yy), t.detach(), y.detach())
    if given is None:
        return found
    given = check_params(given)
    missing = [x for x in used if all(x is not g for g in given)]
    if missing:
        warn_caller(
            f"func uses {len(missing)} tensor(s) that require grad but are not in adjoint_params; they will get "
            "no gradient (pass adjoint_params=None to differentiate everything func uses)", UserWarning,
        )
    return given
