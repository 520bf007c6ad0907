"""Vector-Jacobian products of the right-hand side, the building block of every continuous adjoint.

``a^T df/du`` and ``a^T df/dp`` come from one reverse pass of torch autograd through ``f``; ``df/du`` itself
(needed as ``-J^T`` by implicit adjoint solves) from forward-mode autodiff, the problem's ``jac``, or finite
differences, exactly like the forward solve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
