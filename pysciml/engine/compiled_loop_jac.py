"""The Jacobian a differentiated Rosenbrock loop program evaluates (:mod:`.compiled_loop`): reverse mode, traced
to plain tensor operations before the loop is traced.

Why not the Jacobian the other programs use (:func:`~.compiled_parts.jacobian_fn`): inside the body of a
``torch.while_loop`` whose result is differentiated, torch 2.13 cannot use autodiff transforms (measured on a
2-8-2 tanh MLP ``f`` and a 2-state ``tanh(y A + b)``, the loop eager or under ``torch.compile``):

- forward mode (``torch.func.jvp``, vmapped) gives the right forward values, but the backward's trace of the body
  fails: "Nested forward mode AD is not supported" (and in the same process, forward-mode Jacobians outside any
  loop then fail the same way: the failed trace leaves forward-AD state behind);
- reverse mode (``torch.func.vjp`` vmapped or looped over the unit vectors, ``torch.func.jacrev``) runs, but the
  Jacobian comes out as zeros, silently: the body is traced below autograd, where the inner VJPs record
  nothing. The loop then takes steps as a Rosenbrock method with ``J = 0`` (stable, but many more of them): this
  was the cause of last session's "values 1.2e-7 and gradients 1.3e-2 off the eager solve";
- ``torch.autograd.grad`` inside the body is refused by Dynamo.

So :class:`ReverseJacobian` traces the reverse-mode Jacobian (``f`` once, one VJP per unit vector, vmapped) with
``make_fx`` *outside* the loop, once per program, into a graph of ordinary tensor operations (``tanh_backward``,
``mm``, ...) whose inputs are ``f``'s parameters (an ``nn.Module``'s parameters and buffers, through
``torch.func.functional_call``), ``p``, ``t`` and ``u``. The loop body calls that graph; ``while_loop``'s autograd
differentiates it like any other operation, so the discrete adjoint includes the Jacobian's own derivatives in
``u`` and the parameters, as the eager solve's ``create_graph`` Jacobian does
(``tests/test_compiled_loop_grad.py`` reproduces the zero Jacobian in plain torch and checks the traced one).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import tree_leaves, tree_map

from .compiled_parts import _user_f
from .rhs import RHS

__all__ = ["ReverseJacobian", "unsupported"]

Tensor = torch.Tensor


def unsupported(rhs: RHS) -> str | None:
    """Why a differentiated Rosenbrock solve of ``rhs`` cannot take the loop program (``None``: it can)."""
    if rhs.user_jac is not None or rhs.user_tgrad is not None:
        return "a supplied jac or tgrad"
    if not rhs.autodiff:
        return "finite-difference Jacobians"
    if not all(x is None or isinstance(x, Tensor) for x in tree_leaves(rhs.p)):
        return "a p holding Python numbers (the traced Jacobian would keep their values)"
    return None


class _Bound(torch.nn.Module):
    """``F(p, t, u)`` as a module holding ``f`` (so ``functional_call`` can swap ``f``'s parameters)."""

    def __init__(self, f: torch.nn.Module, F: Any) -> None:
        super().__init__()
        self.f, self.F = f, F

    def forward(self, p: Any, t: Tensor, u: Tensor) -> Tensor:
        return self.F(p, t, u)


def _signature(xs: list[Tensor]) -> tuple:
    return tuple((tuple(x.shape), x.dtype, x.device) for x in xs)


class ReverseJacobian:
    """``J(p, t, u)``, ``(B, n, n)`` (rows ``df_i/du``), as a traced graph of tensor operations; :meth:`prepare`
    traces it for the shapes of a solve (again only when those change), before the loop program is traced."""

    def __init__(self, rhs: RHS) -> None:
        F, self.dtype = _user_f(rhs), rhs.dtype
        f = rhs.f
        self.module = _Bound(f, F) if isinstance(f, torch.nn.Module) else None
        self.F = F
        self.graph: Any = None
        self.key: tuple | None = None

    def _state(self) -> dict[str, Tensor]:
        if self.module is None:
            return {}
        return {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}

    def _jacobian(self, state: dict[str, Tensor], p: Any, t: Tensor, u: Tensor) -> Tensor:
        b, n = u.shape
        if self.module is None:
            def G(x: Tensor) -> Tensor:
                return self.F(p, t, x)
        else:
            module = self.module

            def G(x: Tensor) -> Tensor:
                return torch.func.functional_call(module, state, (p, t, x))
        basis = torch.eye(n, dtype=u.dtype, device=u.device)[:, None, :].expand(n, b, n)
        _, pullback = torch.func.vjp(G, u)
        rows = torch.func.vmap(lambda v: pullback(v)[0])(basis)  # (n_i, B, n_j) = dF_i/du_j
        # row-major strides even where B = 1 (a loop carry must keep the initial value's strides)
        return rows.permute(1, 0, 2).reshape(-1).view(b, n, n).to(self.dtype)

    def prepare(self, p: Any, t: Tensor, u: Tensor) -> None:
        """Trace the graph for these shapes (``t``: ``(B,)``, ``u``: ``(B, n)``), unless already traced."""
        state = self._state()
        key = _signature([*state.values(), *(x for x in tree_leaves(p) if x is not None), t, u])
        if key == self.key:
            return
        ex_state, ex_p = tree_map(lambda x: x if x is None else x.detach().clone(), (state, p))  # examples

        def jacobian(state: dict[str, Tensor], p: Any, t: Tensor, u: Tensor) -> Tensor:
            return self._jacobian(state, p, t, u)

        self.graph = make_fx(jacobian)(ex_state, ex_p, t.detach().clone(), u.detach().clone())
        self.key = key

    def __call__(self, p: Any, t: Tensor, u: Tensor) -> Tensor:
        return self.graph(self._state(), p, t, u)
