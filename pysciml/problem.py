"""Problem definitions: what to solve, independent of how.

An :class:`ODEProblem` holds ``du/dt = f(t, u, p)`` with its initial value and time span; a
:class:`SplitODEProblem` holds ``du/dt = f_implicit(t, u, p) + f_explicit(t, u, p)`` for IMEX methods,
where the implicit part may also be a matrix (a linear operator ``L``, so ``f_implicit = L @ u``).

Both are plain containers. Input is checked here once (types, shapes, finiteness); everything that needs
the algorithm (tolerances, save points, the first call of ``f``) is checked by :func:`pysciml.solve`.
"""

from __future__ import annotations

import inspect
import math
import types
import weakref
from collections.abc import Callable
from typing import Any

import torch

from .errors import InputError

__all__ = ["ODEProblem", "SplitODEProblem"]

Tensor = torch.Tensor

#: Attribute by which a wrapper around ``f`` made anew for every solve (a call counter, a reshaping closure)
#: names the object that does the work (a module), so that the one-time check that ``f`` is differentiable
#: by autograd, run when gradients are requested, is not repeated for every solve.
OWNER_ATTR = "_pysciml_owner"


def _as_tensor_u0(u0: Any) -> Tensor:
    if isinstance(u0, Tensor):
        t = u0
    else:
        try:
            t = torch.as_tensor(u0)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(
                f"u0 must be a torch.Tensor (or something torch.as_tensor accepts), got {type(u0).__name__}"
            ) from exc
        if not t.is_floating_point() and not t.is_complex():
            t = t.to(torch.get_default_dtype())
    if not t.is_floating_point():
        raise InputError(
            f"u0 must have a floating dtype (float32 or float64), got {t.dtype}; "
            "pass e.g. u0.to(torch.float64)"
        )
    if t.numel() == 0:
        raise InputError("u0 is empty; give at least one state component")
    if not bool(torch.isfinite(t).all()):
        raise InputError("u0 contains NaN or Inf; every initial value must be finite")
    return t


def _items(x: Any) -> list[Any]:
    if isinstance(x, Tensor):
        return [x]
    return list(x) if isinstance(x, (tuple, list)) else []


def _as_tspan(tspan: Any) -> tuple[float, float]:
    if any(isinstance(v, Tensor) and v.requires_grad for v in _items(tspan)):
        raise InputError("tspan requires grad, but a problem holds its times as numbers and solve does not "
                         "differentiate with respect to them; use pysciml.odeint(func, y0, t) for gradients "
                         "with respect to the times")
    if isinstance(tspan, Tensor):
        if tspan.numel() != 2:
            raise InputError(f"tspan must hold exactly two times (t0, t1), got {tspan.numel()} values")
        vals = [float(v) for v in tspan.detach().reshape(-1).tolist()]
    else:
        try:
            vals = [float(v) for v in tspan]
        except TypeError as exc:
            raise InputError(f"tspan must be a pair (t0, t1), got {tspan!r}") from exc
        if len(vals) != 2:
            raise InputError(f"tspan must be a pair (t0, t1), got {len(vals)} values")
    t0, t1 = vals
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise InputError(f"tspan must be finite, got ({t0}, {t1})")
    if t0 == t1:
        raise InputError(f"tspan has t0 == t1 == {t0}; give an interval of nonzero length")
    return t0, t1


def tensors_in(x: Any, depth: int = 0) -> list[Tensor]:
    """The tensors inside ``p``: a tensor, or nested tuples/lists/dicts of them (``nn.Module``s excluded)."""
    if isinstance(x, Tensor):
        return [x]
    if depth > 8:
        return []
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (tuple, list)) else ()
    return [t for item in items for t in tensors_in(item, depth + 1)]


def call_f(f: Callable[..., Tensor], takes_p: bool, p: Any, t: Tensor, u: Tensor) -> Tensor:
    """``f(t, u, p)``, or ``f(t, u)`` for a function that takes no parameters (``takes_p`` from its signature)."""
    return f(t, u, p) if takes_p else f(t, u)


def _check_params(p: Any) -> None:
    for x in tensors_in(p):
        if x.is_floating_point() and not bool(torch.isfinite(x.detach()).all()):
            raise InputError("p contains NaN or Inf; every parameter must be finite")
    numbers = [v for v in (p.values() if isinstance(p, dict) else p if isinstance(p, (tuple, list)) else [p])
               if isinstance(v, float)]
    if any(not math.isfinite(v) for v in numbers):
        raise InputError("p contains NaN or Inf; every parameter must be finite")


def _check_finite_matrix(M: Tensor, name: str) -> None:
    values = M.coalesce().values() if M.is_sparse else M
    if not bool(torch.isfinite(values.detach()).all()):
        raise InputError(f"{name} contains NaN or Inf; every entry must be finite")


def _check_prototype(proto: Any, n: int) -> Any:
    """``jac_prototype`` as given, after checking its kind and its shape ``(n, n)`` (read by the sparse solvers)."""
    if proto is None:
        return None
    kind = type(proto).__module__.split(".")[0]
    if not (isinstance(proto, Tensor) or kind in ("scipy", "numpy")) or not hasattr(proto, "shape"):
        raise InputError(f"jac_prototype must be a scipy.sparse matrix, a torch sparse tensor or a boolean (n, n) "
                         f"mask, got {type(proto).__name__}")
    if tuple(proto.shape) != (n, n):
        raise InputError(f"jac_prototype must have shape ({n}, {n}) for a state of {n} values (the Jacobian's "
                         f"pattern), got {tuple(proto.shape)}")
    return proto


def takes_params(fn: Callable[..., Any], name: str, base: int, usage: str, hint: str = "") -> bool:
    """Whether ``fn`` takes ``base + 1`` positional arguments (the last being the parameters) rather than ``base``,
    from its signature (an ``nn.Module``'s ``forward``); ``usage`` (e.g. ``"f(t, u, p) or f(t, u)"``) is what the
    errors say it should look like. Undecidable signatures (builtins, ``*args``) count as taking parameters.
    The answer for a Python function (or a method of one) is remembered (``_SIGNATURES``) while its code, defaults
    and ``__signature__`` stay the same objects."""
    if not callable(fn):
        raise InputError(f"{name} must be callable, taking {usage}; got {type(fn).__name__}")
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    func = target.__func__ if isinstance(target, types.MethodType) else target
    if not isinstance(func, types.FunctionType) or hasattr(func, "__wrapped__"):  # signature read elsewhere too
        return _takes_params(target, name, base, usage, hint)
    key = (func is not target, base)
    stamp = _signature_stamp(func)
    known = _SIGNATURES.get(func, {}).get(key)
    if known is not None and _same_stamp(known[0], stamp):
        return known[1]
    answer = _takes_params(target, name, base, usage, hint)  # raises for a wrong signature: never remembered
    _SIGNATURES.setdefault(func, {})[key] = (stamp, answer)
    return answer


_SIGNATURES: weakref.WeakKeyDictionary[types.FunctionType, dict[tuple[bool, int], tuple[tuple, bool]]] = (
    weakref.WeakKeyDictionary())
""":func:`takes_params`'s answers, per Python function (weakly held: a closure is not kept alive by the cache) and
per (called as a bound method, ``base``), with the function's :func:`_signature_stamp` at the time."""


def _signature_stamp(func: types.FunctionType) -> tuple:
    """What ``inspect.signature`` reads of ``func`` (a function without ``__wrapped__``): its code, its defaults
    and the ``__signature__`` it may carry; a cached answer stands only while each is the very same object."""
    return func.__code__, func.__defaults__, func.__kwdefaults__, getattr(func, "__signature__", None)


def _same_stamp(a: tuple, b: tuple) -> bool:
    return all(x is y for x, y in zip(a, b, strict=True))


def _takes_params(target: Callable[..., Any], name: str, base: int, usage: str, hint: str) -> bool:
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return True
    params = list(sig.parameters.values())
    if any(q.kind == q.VAR_POSITIONAL for q in params):
        return True
    positional = [q for q in params if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
    required = [q for q in positional if q.default is q.empty]
    if len(positional) > base:
        return True
    if len(required) == base or len(positional) == base:
        return False
    raise InputError(f"{name} must take {usage}; its signature is {sig}{hint}")


def _wants_p(f: Callable[..., Any], name: str) -> bool:
    """True if ``f`` takes (t, u, p), False if it takes (t, u)."""
    return takes_params(f, name, 2, "(t, u, p) or (t, u)", f". Wrap it, e.g. lambda t, u, p: {name}(u)")


class ODEProblem:
    """``du/dt = f(t, u, p)`` on ``tspan`` from ``u0``.

    Args:
        f: right-hand side, ``f(t, u, p) -> du`` or torchdiffeq-style ``f(t, u) -> du``; may be an
            ``nn.Module``. Out of place: it returns a new tensor shaped like ``u``. For an unbatched problem
            ``t`` is a 0-d tensor and ``u`` has ``u0``'s shape. For ``batched=True`` problems ``t`` has shape
            ``(B,)`` (each trajectory has its own time) and ``u`` has shape ``(B, *state)``.
        u0: initial state, floating tensor of any shape; its dtype and device are the solve's. With
            ``batched=True`` the leading dimension indexes independent trajectories.
        tspan: ``(t0, t1)``; ``t1 < t0`` integrates backwards.
        p: parameters handed to ``f`` unchanged (a tensor, tuple, dict, or anything). For batched problems
            a tensor with a leading batch dimension gives each trajectory its own parameters.
        jac: optional Jacobian ``jac(t, u, p) -> J`` of ``f`` with respect to ``u``: shape ``(n, n)`` with
            ``n = u0.numel()`` (``(B, n, n)`` when batched, ``n`` the per-trajectory size). Without it the
            implicit methods use forward-mode autodiff (torch.func) or finite differences.
        tgrad: optional ``tgrad(t, u, p) -> df/dt`` (or ``tgrad(t, u)``; shaped like ``u``) for Rosenbrock methods on
            non-autonomous problems; otherwise computed by autodiff or finite differences.
        mass_matrix: optional constant ``M`` (``(n, n)`` tensor) for ``M du/dt = f``; may be singular
            (index-1 DAE). Rosenbrock methods only.
        jac_prototype: optional sparsity pattern of ``jac`` (SciML's name): a scipy.sparse matrix (its stored
            entries), a torch sparse tensor (its stored entries) or a dense boolean mask / matrix (its nonzeros),
            shape ``(n, n)``. Used by ``SparseLU()`` and ``GMRES(precondition=...)``, which then form the
            Jacobian by column colouring (one JVP per colour); ignored by ``DenseLU()``.
            :func:`pysciml.sparsity_pattern` detects one.
        batched: whether ``u0``'s leading dimension is a batch of independent trajectories, each with its
            own step size, error control and return code. ``f`` must not mix batch entries.
    """

    def __init__(
        self,
        f: Callable[..., Tensor],
        u0: Any,
        tspan: Any,
        p: Any = None,
        *,
        jac: Callable[..., Tensor] | None = None,
        tgrad: Callable[..., Tensor] | None = None,
        mass_matrix: Tensor | None = None,
        batched: bool = False,
        jac_prototype: Any = None,
    ) -> None:
        self.f = f
        self.f_takes_p = _wants_p(f, "f")
        self.u0 = _as_tensor_u0(u0)
        self.tspan = _as_tspan(tspan)
        _check_params(p)
        self.p = p
        if jac is not None and not callable(jac):
            raise InputError(f"jac must be callable as jac(t, u, p), got {type(jac).__name__}")
        if tgrad is not None and not callable(tgrad):
            raise InputError(f"tgrad must be callable as tgrad(t, u, p), got {type(tgrad).__name__}")
        self.jac = jac
        self.jac_takes_p = _wants_p(jac, "jac") if jac is not None else True
        self.tgrad = tgrad
        self.tgrad_takes_p = _wants_p(tgrad, "tgrad") if tgrad is not None else True
        self.batched = bool(batched)
        if self.batched and self.u0.ndim < 2:
            raise InputError(
                f"batched=True needs u0 of shape (B, *state) with at least 2 dims, got {tuple(self.u0.shape)}; "
                "add a batch dimension with u0[None] or set batched=False"
            )
        n = self.state_size
        if mass_matrix is not None:
            if not isinstance(mass_matrix, Tensor) or mass_matrix.shape != (n, n):
                got = tuple(mass_matrix.shape) if isinstance(mass_matrix, Tensor) else type(mass_matrix).__name__
                raise InputError(f"mass_matrix must be a ({n}, {n}) tensor for a state of {n} values, got {got}")
            mass_matrix = mass_matrix.to(dtype=self.u0.dtype, device=self.u0.device)
            _check_finite_matrix(mass_matrix, "mass_matrix")
        self.mass_matrix = mass_matrix
        self.jac_prototype = _check_prototype(jac_prototype, n)

    @property
    def batch_size(self) -> int | None:
        """Number of trajectories for batched problems, ``None`` otherwise."""
        return int(self.u0.shape[0]) if self.batched else None

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one trajectory's state (``u0.shape`` without the batch dimension)."""
        return tuple(self.u0.shape[1:]) if self.batched else tuple(self.u0.shape)

    @property
    def state_size(self) -> int:
        """Number of scalar unknowns of one trajectory."""
        return math.prod(self.state_shape)

    def rhs(self, t: Tensor, u: Tensor) -> Tensor:
        """``f(t, u, p)`` (or ``f(t, u)``) in the user's layout: ``t`` 0-d, ``u`` shaped like ``u0``."""
        return call_f(self.f, self.f_takes_p, self.p, t, u)

    def remake(self, **changes: Any) -> ODEProblem:
        """A copy with some fields replaced (``u0``, ``tspan``, ``p``, ...), like SciML's ``remake``."""
        fields = dict(
            f=self.f, u0=self.u0, tspan=self.tspan, p=self.p, jac=self.jac, tgrad=self.tgrad,
            mass_matrix=self.mass_matrix, batched=self.batched, jac_prototype=self.jac_prototype,
        )
        fields.update(changes)
        return ODEProblem(**fields)

    def __repr__(self) -> str:
        b = f", batch={self.batch_size}" if self.batched else ""
        return (
            f"{type(self).__name__}(state={self.state_shape}{b}, tspan={self.tspan}, "
            f"dtype={self.u0.dtype}, device={self.u0.device})"
        )


class SplitODEProblem(ODEProblem):
    """``du/dt = f_implicit(t, u, p) + f_explicit(t, u, p)``, for IMEX methods (KenCarp3/4/5).

    ``f_implicit`` is the stiff part, treated implicitly: a callable like ``f`` in :class:`ODEProblem`, or a
    matrix ``L`` of shape ``(n, n)`` (dense or sparse tensor) meaning ``f_implicit(t, u, p) = L @ u`` on the
    flattened state (a constant, exact Jacobian: Newton converges in one iteration). ``f_explicit`` is the
    non-stiff rest, treated explicitly. ``jac`` (optional) is the Jacobian of ``f_implicit`` only, and
    ``jac_prototype`` (optional) its sparsity pattern.

    Non-IMEX algorithms solve a split problem as the unsplit sum only when asked to explicitly:
    ``solve(prob, alg, unsplit=True)``.
    """

    def __init__(
        self,
        f_implicit: Callable[..., Tensor] | Tensor,
        f_explicit: Callable[..., Tensor],
        u0: Any,
        tspan: Any,
        p: Any = None,
        *,
        jac: Callable[..., Tensor] | None = None,
        batched: bool = False,
        jac_prototype: Any = None,
    ) -> None:
        self.f_explicit = f_explicit
        self.f_explicit_takes_p = _wants_p(f_explicit, "f_explicit")
        if isinstance(f_implicit, Tensor):
            self.linear_operator: Tensor | None = f_implicit
            implicit_fn: Callable[..., Tensor] = self._apply_linear
        else:
            self.linear_operator = None
            implicit_fn = f_implicit
        self.f_implicit = implicit_fn
        super().__init__(self._sum, u0, tspan, p, jac=jac, batched=batched, jac_prototype=jac_prototype)
        self.f_implicit_takes_p = _wants_p(implicit_fn, "f_implicit")
        if self.linear_operator is not None:
            n = self.state_size
            L = self.linear_operator
            if L.ndim != 2 or tuple(L.shape) != (n, n):
                raise InputError(
                    f"f_implicit given as a matrix must have shape ({n}, {n}) for a state of {n} values, "
                    f"got {tuple(L.shape)}"
                )
            _check_finite_matrix(L, "f_implicit (the matrix L)")
            self.linear_operator = L.to(dtype=self.u0.dtype, device=self.u0.device)

    def _apply_linear(self, t: Tensor, u: Tensor, p: Any) -> Tensor:
        L = self.linear_operator
        assert L is not None
        if self.batched:
            flat = u.reshape(u.shape[0], -1)
            return (L @ flat.T).T.reshape(u.shape)
        return (L @ u.reshape(-1)).reshape(u.shape)

    def _sum(self, t: Tensor, u: Tensor, p: Any) -> Tensor:
        return (call_f(self.f_implicit, self.f_implicit_takes_p, p, t, u)
                + call_f(self.f_explicit, self.f_explicit_takes_p, p, t, u))

    def remake(self, **changes: Any) -> SplitODEProblem:
        fields = dict(
            f_implicit=self.linear_operator if self.linear_operator is not None else self.f_implicit,
            f_explicit=self.f_explicit, u0=self.u0, tspan=self.tspan, p=self.p, jac=self.jac,
            batched=self.batched, jac_prototype=self.jac_prototype,
        )
        fields.update(changes)
        return SplitODEProblem(**fields)
