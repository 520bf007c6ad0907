"""Stacking the trajectories' problems of one batch into one batched problem (``EnsembleBatched``).

Rules (checked, with an :class:`InputError` naming the trajectory that breaks them):

- every problem has the same class and the same functions (``f`` -- or ``f_implicit``/``f_explicit``/the
  matrix of a split problem -- ``jac``, ``tgrad``: the same objects), the same ``mass_matrix``, ``u0`` shape,
  dtype and device, and the same ``tspan`` (one batched solve has one time span: solve trajectories with
  different spans with ``EnsembleSerial()``, or move the time dependence into ``p``);
- ``u0`` is stacked to ``(B, *state)``;
- ``p`` is stacked leaf by leaf (a tensor, or tuples, lists and dicts of leaves): a leaf that is the same object
  in every trajectory (or an unchanged safety copy of it) is passed once, as it is; tensors that differ are
  stacked along a new leading dimension (same shapes needed); numbers that differ become a ``(B,)`` tensor of
  ``u0``'s dtype; other differing objects are refused.

With ``vmap=False`` the batched problem calls the user's ``f`` itself on ``t (B,)``, ``u (B, *state)`` and the
stacked ``p``: ``f`` must act row by row (``u[..., 0]``, ``p[..., 1]``), which :func:`check_rowwise` verifies
on the first batch. With ``vmap=True`` ``f`` (and ``jac``, ``tgrad``) are wrapped in ``torch.func.vmap``, so a
function written for one trajectory works unchanged (it must be vmappable: no ``.item()``, no in-place
changes of its inputs, no data-dependent Python control flow).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import InputError
from ..problem import ODEProblem, SplitODEProblem, call_f
from .problem import ORIGIN_ATTR

__all__ = ["stack_problems", "check_rowwise"]

Tensor = torch.Tensor


def _functions(prob: ODEProblem) -> tuple[Any, ...]:
    if isinstance(prob, SplitODEProblem):
        return (prob.f_implicit if prob.linear_operator is None else prob.linear_operator, prob.f_explicit,
                prob.jac, prob.tgrad)
    return prob.f, prob.jac, prob.tgrad


def _check_same(base: ODEProblem, prob: ODEProblem, i: int, i0: int) -> None:
    def refuse(what: str, a: Any, b: Any) -> InputError:
        return InputError(f"prob_func returned for trajectory {i} a problem with {what} {b}, but trajectory {i0} "
                          f"of the same batch has {a}; EnsembleBatched stacks a batch into one solve, which needs "
                          "the same f, state shape, dtype, device and tspan in every trajectory (vary u0 and p "
                          "only), or use EnsembleSerial()")

    if type(prob) is not type(base):
        raise refuse("type", type(base).__name__, type(prob).__name__)
    if any(a is not b for a, b in zip(_functions(base), _functions(prob), strict=True)):
        raise refuse("functions (f, jac, tgrad)", "other function objects", "different function objects")
    if prob.u0.shape != base.u0.shape:
        raise refuse("u0 of shape", tuple(base.u0.shape), tuple(prob.u0.shape))
    if prob.u0.dtype != base.u0.dtype or prob.u0.device != base.u0.device:
        raise refuse("u0 on", f"{base.u0.dtype}/{base.u0.device}", f"{prob.u0.dtype}/{prob.u0.device}")
    if prob.tspan != base.tspan:
        raise refuse("tspan", base.tspan, prob.tspan)
    ma, mb = base.mass_matrix, prob.mass_matrix
    if ma is not mb and (ma is None or mb is None or not torch.equal(ma, mb)):
        raise refuse("mass_matrix", "another mass matrix", "a different one")


def shared_origin(v: Any) -> Any:
    """The original of an unchanged safety-copy clone (see :data:`pysciml.ensemble.problem.ORIGIN_ATTR`),
    else ``v`` itself."""
    origin = getattr(v, ORIGIN_ATTR, None) if isinstance(v, Tensor) else None
    return origin[0] if origin is not None and v._version == origin[1] else v


def _stack_leaf(values: list[Any], u0: Tensor, where: str) -> tuple[Any, int | None]:
    first = shared_origin(values[0])
    if all(shared_origin(v) is first for v in values):
        return first, None
    if all(isinstance(v, Tensor) for v in values):
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise InputError(f"p{where} has different shapes across the trajectories of a batch ({sorted(shapes)}); "
                             "EnsembleBatched stacks p, which needs the same shape in every trajectory")
        return torch.stack(values), 0
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return torch.tensor([float(v) for v in values], dtype=u0.dtype, device=u0.device), 0
    if all(v == first for v in values):
        return first, None
    raise InputError(f"p{where} differs across the trajectories of a batch and is neither a tensor nor a number; "
                     "EnsembleBatched can stack only those (or use EnsembleSerial())")


def stack_params(ps: list[Any], u0: Tensor, where: str = "") -> tuple[Any, Any]:
    """Stacked ``p`` of a batch and its ``vmap`` ``in_dims`` (0 for stacked leaves, ``None`` for shared ones)."""
    first = ps[0]
    if isinstance(first, (tuple, list)) and all(type(p) is type(first) and len(p) == len(first) for p in ps):
        parts = [stack_params([p[k] for p in ps], u0, f"{where}[{k}]") for k in range(len(first))]
        return type(first)(a for a, _ in parts), type(first)(d for _, d in parts)
    if isinstance(first, dict) and all(isinstance(p, dict) and p.keys() == first.keys() for p in ps):
        parts = {k: stack_params([p[k] for p in ps], u0, f"{where}[{k!r}]") for k in first}
        return {k: a for k, (a, _) in parts.items()}, {k: d for k, (_, d) in parts.items()}
    return _stack_leaf(ps, u0, where)


def _vmapped(fn: Callable[..., Tensor], takes_p: bool, p_dims: Any) -> Callable[[Tensor, Tensor, Any], Tensor]:
    """``fn`` (written for one trajectory) mapped over the batch by ``torch.func.vmap``."""
    if takes_p:
        mapped = torch.func.vmap(fn, in_dims=(0, 0, p_dims))
    else:
        mapped_tu = torch.func.vmap(fn, in_dims=(0, 0))

        def mapped(t: Tensor, u: Tensor, p: Any) -> Tensor:
            return mapped_tu(t, u)

    def batched(t: Tensor, u: Tensor, p: Any) -> Tensor:
        return mapped(t, u, p)

    return batched


def stack_problems(probs: Sequence[ODEProblem], indices: Sequence[int], vmap: bool) -> ODEProblem:
    """One batched problem (``batched=True``, ``u0 (B, *state)``) solving ``probs`` (trajectories ``indices``)."""
    base = probs[0]
    for prob, i in zip(probs[1:], indices[1:], strict=True):
        _check_same(base, prob, i, indices[0])
    u0 = torch.stack([p.u0 for p in probs])
    p, p_dims = stack_params([q.p for q in probs], base.u0)
    changes: dict[str, Any] = dict(u0=u0, p=p, batched=True)
    if vmap:
        if isinstance(base, SplitODEProblem):
            if base.linear_operator is None:
                changes["f_implicit"] = _vmapped(base.f_implicit, base.f_implicit_takes_p, p_dims)
            changes["f_explicit"] = _vmapped(base.f_explicit, base.f_explicit_takes_p, p_dims)
        else:
            changes["f"] = _vmapped(base.f, base.f_takes_p, p_dims)
        if base.jac is not None:
            changes["jac"] = _vmapped(base.jac, base.jac_takes_p, p_dims)
        if base.tgrad is not None:
            if isinstance(base, SplitODEProblem):
                raise InputError("vmap=True with a SplitODEProblem that has tgrad is not supported; drop tgrad")
            changes["tgrad"] = _vmapped(base.tgrad, base.tgrad_takes_p, p_dims)
    return base.remake(**changes)


def check_rowwise(batched: ODEProblem, probs: Sequence[ODEProblem], indices: Sequence[int]) -> None:
    """Check that the batched ``f`` acts row by row: its rows at ``t0`` for the first and the last trajectory
    of the batch equal ``f`` called on those trajectories alone. An ``f`` written for one trajectory (``u[0]``
    meaning the first component) would otherwise mix the batch silently."""
    t0 = batched.u0.new_full((batched.u0.shape[0],), batched.tspan[0])
    advice = ("write f to act on the last dimensions (u[..., k], p[..., k]) so that a leading batch dimension "
              "passes through, or use EnsembleBatched(vmap=True)")
    with torch.no_grad():
        try:
            rows = call_f(batched.f, batched.f_takes_p, batched.p, t0, batched.u0)
        except Exception as exc:  # noqa: BLE001 -- any failure of the user's f on a stacked batch
            raise InputError(f"f failed on a stacked batch of {t0.shape[0]} trajectories ({type(exc).__name__}: "
                             f"{exc}); {advice}") from exc
        if not isinstance(rows, Tensor) or rows.shape != batched.u0.shape:
            got = tuple(rows.shape) if isinstance(rows, Tensor) else type(rows).__name__
            raise InputError(f"f returned {got} on a stacked batch with u of shape {tuple(batched.u0.shape)}; {advice}")
        for j in sorted({0, len(probs) - 1}):
            one = probs[j].rhs(t0[j], probs[j].u0)
            scale = float(one.abs().max()) if one.numel() else 0.0
            if not torch.allclose(rows[j], one, rtol=1e-6, atol=1e-12 * max(scale, 1.0)):
                raise InputError(f"f on the stacked batch gives trajectory {indices[j]} a different derivative than "
                                 f"f on that trajectory alone: f mixes the batch; {advice}")
