"""Vector-Jacobian products of the right-hand side, the building block of every continuous adjoint.

``a^T df/du`` and ``a^T df/dp`` come from one reverse pass of torch autograd through ``f``; ``df/du`` itself
(needed as ``-J^T`` by implicit adjoint solves) from forward-mode autodiff, the problem's ``jac``, or finite
differences, exactly like the forward solve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import InputError

Tensor = torch.Tensor


def call_f(f: Callable[..., Tensor], takes_p: bool, p: object, t: Tensor, u: Tensor) -> Tensor:
    return f(t, u, p) if takes_p else f(t, u)


def vjp(f: Callable[..., Tensor], takes_p: bool, p: object, t: Tensor, y: Tensor, a: Tensor,
        params: Sequence[Tensor], *, need_t: bool = False) -> tuple[Tensor, Tensor, list[Tensor | None], Tensor | None]:
    """``(f(t, y), a^T df/dy, [a^T df/dp_k], a^T df/dt)`` with ``y`` shaped like the state.

    Parameters that ``f`` does not use get ``None`` (their gradient is not silently zero: the caller decides).
    """
    with torch.enable_grad():
        yv = y.detach().requires_grad_(True)
        tv = t.detach().requires_grad_(need_t)
        out = call_f(f, takes_p, p, tv, yv)
        inputs = [yv, *params] + ([tv] if need_t else [])
        grads = torch.autograd.grad(out, inputs, a, allow_unused=True)
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


def discover_params(f: Callable[..., Tensor], takes_p: bool, p: object, t: Tensor, y: Tensor,
                    given: Sequence[Tensor] | None) -> list[Tensor]:
    """The tensors a continuous adjoint must differentiate: ``given`` (adjoint_params) or, if ``None``, every
    leaf tensor requiring grad that ``f`` uses (found from one evaluation's autograd graph). Leaves used by
    ``f`` but left out of an explicit ``given`` get a warning: their gradient will be ``None``."""
    import warnings

    with torch.enable_grad():
        out = call_f(f, takes_p, p, t.detach(), y.detach())
        found = graph_leaves(out) if isinstance(out, Tensor) else []
    if given is None:
        return found
    given = check_params(given)
    missing = [x for x in found if all(x is not g for g in given)]
    if missing:
        warnings.warn(
            f"func uses {len(missing)} tensor(s) that require grad but are not in adjoint_params; they will get "
            "no gradient (pass adjoint_params=None to differentiate everything func uses)", UserWarning,
            stacklevel=3,
        )
    return given
