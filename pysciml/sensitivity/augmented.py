"""The augmented system of an explicit continuous adjoint as one right-hand side ``F(t, z, P)``.

Between two save times the explicit adjoints (``InterpolatingAdjoint``, ``BacksolveAdjoint`` with an explicit
method) integrate ``z = [a, g]`` (or ``[y, a, g]`` for Backsolve) backwards::

    y' = f(t, y)          (Backsolve only; otherwise y(t) from the forward solve's dense output)
    a' = -a^T df/dy
    g' = -a^T df/dp

:class:`AugmentedField` is that right-hand side. Everything that changes between backward passes travels in
``P = (p, dense, params)``: the problem's ``p``, the forward dense output (padded to a fixed number of steps, see
:func:`padded_dense`; for checkpointed solves a callable ``y(t)``, eager only) and the differentiated tensors. One
field serves every backward pass of the same ``f`` and signature (:func:`field_for`), so that ``compile=True``
compiles the backward solves once, like the forward solve: on the eager path the vector-Jacobian product is
:func:`.vjp.vjp` (one reverse pass of autograd, which also refuses a tensor requiring grad that ``f`` uses but
that is not differentiated); while Dynamo traces, it is ``torch.func.vjp`` of ``f`` made functional in the
differentiated tensors (``torch.func.functional_call`` for an ``nn.Module``'s parameters, the leaves of ``p``
replaced in place), the same arithmetic. The traced form needs every differentiated tensor to be a parameter of
the module behind ``f`` or a leaf of ``p`` (:func:`traceable_slots`); a tensor a closure captures leaves the
backward solves eager.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from .._lru import LRU
from ..engine.graph_check import owner_of
from ..engine.interpolation import interpolate
from ..problem import ODEProblem, SplitODEProblem, call_f
from .vjp import vjp

Tensor = torch.Tensor
Slot = tuple[str, Any]  # ("module", parameter name) or ("p", index of the leaf in p's flattening)

CACHE_SIZE = 16
"""Fields kept for compiled backward solves (least recently used dropped first); each holds its ``f``."""

_FIELDS: LRU[AugmentedField] = LRU(CACHE_SIZE)
PAD_MIN = 16
"""The forward dense output is padded to ``max(PAD_MIN, next power of two)`` steps: a new number of forward steps
compiles anew only when it crosses a power of two."""


class _Call(torch.nn.Module):
    """``f(t, y, p)`` as a module whose submodule ``owner`` holds ``f``'s parameters, for ``functional_call``."""

    def __init__(self, owner: torch.nn.Module, f: Callable[..., Tensor], takes_p: bool) -> None:
        super().__init__()
        self.owner = owner
        self.call = (f, takes_p)  # a tuple: f (often the owner itself) is not registered as a second submodule

    def forward(self, t: Tensor, y: Tensor, p: Any) -> Tensor:
        f, takes_p = self.call
        return call_f(f, takes_p, p, t, y)


class AugmentedField:
    """``F(t, z, P)`` of the augmented adjoint system; ``P = (p, dense, params)``, ``z`` flat ``(n_z,)``.

    ``dense``: ``(t_start (N, 1), t_end (N, 1), coeffs (N, q+1, 1, n), last (0-d int64))`` from
    :func:`padded_dense`, or a callable ``y(t)`` (eager only), or ``None`` for Backsolve. ``slots``: where each
    differentiated tensor sits (:func:`traceable_slots`), ``None`` where the field is never traced."""

    def __init__(self, prob: ODEProblem, sizes: Sequence[int], backsolve: bool, strict: bool, direction: float,
                 slots: list[Slot] | None) -> None:
        self.f, self.takes_p = prob.f, prob.f_takes_p
        self.shape, self.n = prob.state_shape, prob.state_size
        self.sizes = list(sizes)
        self.backsolve, self.strict, self.direction = backsolve, strict, direction
        self.slots = slots
        owner = owner_of(prob.f)
        self.module = _Call(owner, prob.f, prob.f_takes_p) if isinstance(owner, torch.nn.Module) else None

    def __call__(self, t: Tensor, z: Tensor, P: tuple[Any, Any, tuple[Tensor, ...]]) -> Tensor:
        p, dense, params = P
        n, shape = self.n, self.shape
        offset = 2 * n if self.backsolve else n
        if self.backsolve:
            y = z[:n].reshape(shape)
        elif callable(dense):
            y = dense(t)
        else:
            y = interpolate(*dense[:3], self.direction, t.reshape(1), dense[3])[0, 0].reshape(shape)
        a = z[offset - n: offset].reshape(shape)
        if torch.compiler.is_compiling():
            fy, gy, gp = self._traced_vjp(t, y, a, p, params)
        else:
            fy, gy, gp_or_none, _ = vjp(self.f, self.takes_p, p, t, y, a, params,
                                        known=params if self.strict else None)
            gp = [torch.zeros_like(q) if g is None else g for g, q in zip(gp_or_none, params, strict=True)]
        parts = [fy.reshape(-1)] if self.backsolve else []
        parts.append(-gy.reshape(-1))
        parts += [-g.reshape(-1) for g in gp]
        return torch.cat(parts)

    def _traced_vjp(self, t: Tensor, y: Tensor, a: Tensor, p: Any, params: tuple[Tensor, ...]
                    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        slots = self.slots
        assert slots is not None, "traced without slots: field_for gives such a field no compiled solve"
        leaves, spec = tree_flatten(p) if any(kind == "p" for kind, _ in slots) else (None, None)

        def f_of(yy: Tensor, *qs: Tensor) -> Tensor:
            pp = p
            if leaves is not None:
                new = list(leaves)
                for (kind, key), q in zip(slots, qs, strict=True):
                    if kind == "p":
                        new[key] = q
                pp = tree_unflatten(new, spec)
            named = {key: q for (kind, key), q in zip(slots, qs, strict=True) if kind == "module"}
            if named:
                assert self.module is not None
                return torch.func.functional_call(self.module, named, (t, yy, pp))
            return call_f(self.f, self.takes_p, pp, t, yy)

        fy, pull = torch.func.vjp(f_of, y, *params)
        gy, *gp = pull(a)
        return fy, gy, list(gp)


class CoreField:
    """``F(t, a, P) = -(a^T df/dy)(t, y(t))`` of the implicit adjoints' ``a`` system (``P = (p, dense)``, ``a`` flat
    ``(n,)``; ``dense`` as for :class:`AugmentedField`): autograd's VJP eagerly (``known``: the tensors whose use
    is allowed, see :func:`.vjp.vjp`), ``torch.func.vjp`` while Dynamo traces. Its Jacobian: :class:`CoreJacobian`."""

    def __init__(self, prob: ODEProblem, direction: float, known: list[Tensor] | None) -> None:
        self.f, self.takes_p = prob.f, prob.f_takes_p
        self.shape, self.direction, self.known = prob.state_shape, direction, known

    def y(self, t: Tensor, dense: Any) -> Tensor:
        """``y(t)`` shaped like the state, from the forward dense output (or a callable, eagerly)."""
        if callable(dense):
            return dense(t)
        return interpolate(*dense[:3], self.direction, t.reshape(1), dense[3])[0, 0].reshape(self.shape)

    def __call__(self, t: Tensor, a: Tensor, P: tuple[Any, Any]) -> Tensor:
        p, dense = P
        y, aa = self.y(t, dense), a.reshape(self.shape)
        if torch.compiler.is_compiling():
            gy = torch.func.vjp(lambda yy: call_f(self.f, self.takes_p, p, t, yy), y)[1](aa)[0]
        else:
            gy = vjp(self.f, self.takes_p, p, t, y, aa, [], known=self.known)[1]
        return -gy.reshape(-1)


class CoreJacobian:
    """``-J(t, y(t))^T`` ``(n, n)``, the Jacobian of :class:`CoreField`'s (linear) system: the problem's ``jac``
    (not a split problem's, which covers its implicit part only), else forward-mode autodiff while Dynamo traces,
    and eagerly the forward solve's own Jacobian source (``jac``, autodiff or finite differences)."""

    def __init__(self, field: CoreField, prob: ODEProblem, eager_jacobian: Callable[[Tensor, Tensor], Tensor]
                 ) -> None:
        self.field, self.eager = field, eager_jacobian
        split = isinstance(prob, SplitODEProblem)
        self.jac, self.jac_takes_p = (None, True) if split else (prob.jac, prob.jac_takes_p)
        self.n = prob.state_size

    def __call__(self, t: Tensor, a: Tensor, P: tuple[Any, Any]) -> Tensor:
        p, dense = P
        y = self.field.y(t, dense)
        if not torch.compiler.is_compiling():
            return -self.eager(t, y.reshape(-1)).T
        f, takes_p, shape = self.field.f, self.field.takes_p, self.field.shape
        if self.jac is not None:
            J = call_f(self.jac, self.jac_takes_p, p, t, y).reshape(self.n, self.n)
        else:
            J = torch.func.jacfwd(lambda yf: call_f(f, takes_p, p, t, yf.reshape(shape)).reshape(-1))(y.reshape(-1))
        return -J.T


_CORE: LRU[tuple[CoreField, CoreJacobian]] = LRU(CACHE_SIZE)


def core_for(prob: ODEProblem, direction: float, known: list[Tensor] | None,
             eager_jacobian: Callable[[Tensor, Tensor], Tensor], compiled: bool) -> tuple[CoreField, CoreJacobian]:
    """The ``a`` system's field and Jacobian for ``prob``: with ``compiled``, one pair per ``f`` and signature (kept,
    least recently used dropped after :data:`CACHE_SIZE`), else a pair for this backward pass."""
    if not compiled:
        field = CoreField(prob, direction, known)
        return field, CoreJacobian(field, prob, eager_jacobian)
    key = (id(prob.f), prob.f_takes_p, id(prob.jac), prob.state_shape, direction, known is None,
           isinstance(prob, SplitODEProblem))

    def make() -> tuple[CoreField, CoreJacobian]:
        field = CoreField(prob, direction, known)
        return field, CoreJacobian(field, prob, eager_jacobian)

    pair = _CORE.get(key, make, lambda old: old[0].f is prob.f and old[1].jac is (None if key[-1] else prob.jac))
    field, jac = pair
    field.known, jac.eager = known, eager_jacobian  # this pass's (eager-only) settings
    return pair


def traceable_slots(prob: ODEProblem, params: Sequence[Tensor]) -> list[Slot] | None:
    """Where each of ``params`` sits: a parameter of the ``nn.Module`` behind ``f`` (its name under
    :class:`_Call`) or a tensor leaf of ``p`` (its index); ``None`` if one is neither (a tensor captured by a
    closure) or the problem is split (its two functions)."""
    if isinstance(prob, SplitODEProblem):
        return None
    owner = owner_of(prob.f)
    names = ({id(q): f"owner.{name}" for name, q in owner.named_parameters()}
             if isinstance(owner, torch.nn.Module) else {})
    leaves = tree_flatten(prob.p)[0] if prob.f_takes_p else []
    where = {id(x): i for i, x in enumerate(leaves) if isinstance(x, Tensor)}
    slots: list[Slot] = []
    for q in params:
        if id(q) in where:
            slots.append(("p", where[id(q)]))
        elif id(q) in names:
            slots.append(("module", names[id(q)]))
        else:
            return None
    return slots


def field_for(prob: ODEProblem, params: Sequence[Tensor], backsolve: bool, strict: bool, direction: float,
              compiled: bool) -> tuple[AugmentedField, bool]:
    """The augmented field of ``prob`` and whether its solves may be compiled: with ``compiled`` and traceable
    slots, one cached field per ``f`` and signature (a compiled program is cached by its ``f``'s identity);
    otherwise a field for this backward pass only."""
    sizes = [q.numel() for q in params]
    slots = traceable_slots(prob, params) if compiled else None
    if slots is None:
        return AugmentedField(prob, sizes, backsolve, strict, direction, None), False
    key = (id(prob.f), prob.f_takes_p, prob.state_shape, tuple(sizes), tuple(slots), backsolve, strict, direction)
    field = _FIELDS.get(key, lambda: AugmentedField(prob, sizes, backsolve, strict, direction, slots),
                        lambda old: old.f is prob.f)
    return field, True


def padded_dense(*denses: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Single-trajectory :class:`~pysciml.engine.interpolation.DenseOutput` arrays (one, or consecutive pieces of
    one solve, joined in order) padded to a fixed number of steps (:data:`PAD_MIN`, powers of two): the pads repeat
    the last end time with zero width (a query past the end finds them and is sent back to the last real step by
    ``last``) and zero coefficients."""
    for dense in denses:
        if dense.coeffs is None:
            dense.finalize()
    q = max(d.coeffs.shape[1] for d in denses)
    t_start = torch.cat([d.t_start for d in denses])
    t_end = torch.cat([d.t_end for d in denses])
    coeffs = torch.cat([torch.cat((d.coeffs, d.coeffs.new_zeros((d.coeffs.shape[0], q - d.coeffs.shape[1],
                                                                  *d.coeffs.shape[2:]))), 1) for d in denses])
    steps = t_end.shape[0]
    size = max(PAD_MIN, 1 << (steps - 1).bit_length())
    last = torch.tensor(steps - 1, device=t_end.device)
    if size == steps:
        return t_start, t_end, coeffs, last
    pad = size - steps
    end = t_end[-1:].expand(pad, -1)
    return (torch.cat((t_start, end)), torch.cat((t_end, end)),
            torch.cat((coeffs, coeffs.new_zeros((pad, *coeffs.shape[1:])))), last)
