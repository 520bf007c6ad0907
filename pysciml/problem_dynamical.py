"""Problems with a partitioned state: :class:`HamiltonianProblem` and :class:`SecondOrderODEProblem`.

Both are :class:`~pysciml.problem.ODEProblem` subclasses whose state is ``u = cat([q, p], -1)`` (positions first,
then momenta; for a second-order problem ``u = cat([x, v], -1)``), so every solver of pysciml solves them as
first-order systems; the symplectic methods of :mod:`pysciml.algorithms_symplectic` use the partition through
:meth:`HamiltonianProblem.velocity` and :meth:`HamiltonianProblem.force`. Leading dimensions of ``q0``/``p0``
are batch dimensions: ``H`` and the acceleration must treat them independently (as a network applied row-wise
does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .errors import InputError
from .problem import ODEProblem, _as_tensor_u0, takes_params

__all__ = ["HamiltonianProblem", "SecondOrderODEProblem", "hamiltonian_gradient"]

Tensor = torch.Tensor

_HOOKS = "saved tensor hooks"  # torch.func's refusal inside torch.utils.checkpoint


def _takes_params(fn: Callable[..., Any], name: str, base: int) -> bool:
    """Whether ``fn`` takes ``base + 1`` positional arguments (the last being the parameters) or ``base``."""
    return takes_params(fn, name, base, f"{base} or {base + 1} positional arguments (the last being the parameters p)")


def _forward_mode_grad(fn: Callable[..., Tensor], args: tuple[Tensor, ...], argnums: tuple[int, ...]
                       ) -> tuple[Tensor, ...]:
    """Per-sample gradients of ``fn`` (returning one value per leading index) by forward mode, one JVP per
    component of the last dimension: what works inside ``torch.utils.checkpoint``, where torch.func's reverse mode
    is refused (it does not support saved-tensor hooks), and under forward-mode Jacobians."""
    out = []
    for k in argnums:
        x = args[k]
        m = x.shape[-1]

        def along(y: Tensor, k: int = k) -> Tensor:
            return fn(*args[:k], y, *args[k + 1:])

        cols = []
        for j in range(m):
            e = torch.zeros(m, dtype=x.dtype, device=x.device)
            e[j] = 1.0
            cols.append(torch.func.jvp(along, (x,), (e.expand_as(x),))[1])
        out.append(torch.stack(cols, dim=-1))
    return tuple(out)


def _reaches_other_leaf(value: Tensor, ours: list[Tensor]) -> bool:
    """Whether ``value``'s autograd graph reaches a leaf requiring grad other than ``ours`` (a parameter of ``H``);
    stops at the first one found."""
    own = {id(x) for x in ours}
    stack, seen = [value.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # AccumulateGrad
        if leaf is not None:
            if id(leaf) not in own:
                return True
            continue
        stack.extend(nxt for nxt, _ in node.next_functions)
    return False


class _NeedsFunctorch(Exception):
    """``H`` depends on tensors requiring grad (parameters) while an argument does not: torch.func.grad keeps only
    the parameters in the result's graph."""


def _autograd_grad(fn: Callable[..., Tensor], args: tuple[Tensor, ...], argnums: tuple[int, ...]
                   ) -> tuple[Tensor, ...]:
    """Per-sample gradients by ``torch.autograd.grad`` of the sum. In grad mode, with ``create_graph`` when the
    arguments or tensors ``fn`` closes over (an ``nn.Module``'s parameters) require grad, so the result is
    differentiable with respect to them; otherwise without a graph (a plain solve keeps no step graph)."""
    graph = torch.is_grad_enabled()
    with torch.enable_grad():
        xs = list(args)
        fresh = []
        for k in argnums:
            if not (graph and xs[k].requires_grad):
                xs[k] = xs[k].detach().requires_grad_(True)
                fresh.append(xs[k])
        value = fn(*xs).sum()
        if graph:
            graph = any(x.requires_grad for x in args) or _reaches_other_leaf(value, fresh)
            if graph and fresh:  # the result would keep our stand-in leaves in its graph: adjoints would see them
                raise _NeedsFunctorch
        grads = torch.autograd.grad(value, [xs[k] for k in argnums], create_graph=graph, allow_unused=True)
    return tuple(torch.zeros_like(xs[k]) if g is None else g for k, g in zip(argnums, grads, strict=True))


def _keep(x: Tensor) -> Tensor:
    return x


def _saved_tensor_hooks_active() -> bool:
    """Whether saved-tensor hooks are installed (inside ``torch.utils.checkpoint``'s forward)."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    if top is None:  # pragma: no cover  (older/newer torch without the query: keep the reverse-mode path)
        return False
    return top(False) is not None


def hamiltonian_gradient(fn: Callable[..., Tensor], args: tuple[Tensor, ...], argnums: tuple[int, ...]
                         ) -> tuple[Tensor, ...]:
    """Gradients of ``fn(*args)`` (shape ``(...,)``, one value per leading index) with respect to ``args[k]`` for
    ``k`` in ``argnums``, each shaped like that argument (per-sample gradients: ``fn`` must not mix leading indices).

    ``torch.autograd.grad`` of the sum (with ``create_graph`` in grad mode when the state or tensors ``fn`` closes
    over, such as an ``nn.Module``'s parameters, require grad, so the result stays differentiable with respect to
    them); ``torch.func.grad`` where parameters require grad but the state does not (autograd would leave stand-in
    leaves in the result's graph) or inside a torch.func transform that refuses autograd (forward mode); inside
    ``torch.utils.checkpoint`` (where a backward pass would recompute the segment and torch.func's reverse mode is
    refused) forward mode, one JVP per component of the last dimension."""
    if torch.compiler.is_compiling():  # Dynamo traces torch.func.grad, not torch.autograd.grad (compile=True)
        return _functorch_grad(fn, args, argnums)
    hooks = _saved_tensor_hooks_active()
    if hooks and torch.is_grad_enabled():
        # a backward pass inside a checkpointed forward would unpack the segment's saved tensors, i.e. recompute the
        # segment up to here at every call (quadratic cost); torch.func's reverse mode refuses outright
        return _forward_mode_grad(fn, args, argnums)
    try:
        if hooks:  # no graph leaves this call: keep its own saved tensors as they are (no checkpoint packing)
            with torch.autograd.graph.saved_tensors_hooks(_keep, _keep):
                return _autograd_grad(fn, args, argnums)
        return _autograd_grad(fn, args, argnums)
    except _NeedsFunctorch:
        pass
    except RuntimeError as exc:
        if "functorch" not in str(exc) and "torch.func" not in str(exc):
            raise
    try:
        return _functorch_grad(fn, args, argnums)
    except RuntimeError as exc:
        if _HOOKS not in str(exc):
            raise
        return _forward_mode_grad(fn, args, argnums)


def _functorch_grad(fn: Callable[..., Tensor], args: tuple[Tensor, ...], argnums: tuple[int, ...]
                    ) -> tuple[Tensor, ...]:
    """Per-sample gradients by ``torch.func.grad`` of the sum (differentiable with respect to what ``fn`` closes
    over; traced by Dynamo)."""
    g = torch.func.grad(lambda *a: fn(*a).sum(), argnums=argnums)(*args)
    return g if isinstance(g, tuple) else (g,)


def _split_state(name0: str, name1: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    x = _as_tensor_u0(a)
    y = _as_tensor_u0(b)
    if x.ndim == 0 or y.ndim == 0:
        raise InputError(f"{name0} and {name1} must have at least one dimension (the degrees of freedom last), "
                         f"got shapes {tuple(x.shape)} and {tuple(y.shape)}; use e.g. torch.tensor([1.0])")
    if x.shape != y.shape:
        raise InputError(f"{name0} and {name1} must have the same shape (..., n), got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if x.dtype != y.dtype or x.device != y.device:
        raise InputError(f"{name0} and {name1} must share dtype and device, got {x.dtype}/{x.device} and "
                         f"{y.dtype}/{y.device}")
    return x, y


def _randn_like(x: Tensor, gen: torch.Generator) -> Tensor:
    """Standard normal draws shaped like ``x`` (its dtype and device) from the CPU generator ``gen`` (float64 draws,
    so the numbers do not depend on ``x``'s dtype)."""
    return torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.dtype).to(x.device)


def _perturbed_points(x: Tensor, y: Tensor, count: int) -> list[tuple[Tensor, Tensor]]:
    """``(x, y)`` and ``count`` random perturbations of it (fixed seed: the check is reproducible)."""
    gen = torch.Generator(device="cpu").manual_seed(13)
    pts = [(x, y)]
    for _ in range(count):
        rx = _randn_like(x, gen)
        ry = _randn_like(y, gen)
        pts.append((x + 0.3 * (1 + x.abs()) * rx, y + 0.3 * (1 + y.abs()) * ry))
    return pts


def _tolerance(dtype: torch.dtype) -> float:
    return math.sqrt(torch.finfo(dtype).eps)


def _remake_halves(prob: Any, changes: dict[str, Any], first: str, second: str, fn: str) -> tuple[Any, Any]:
    """``remake``'s new initial halves (from ``u0``, split at ``n``, or from ``first``/``second``), after refusing
    keywords the problem does not have; pops the state keywords from ``changes``."""
    allowed = {"u0", first, second, "tspan", "p", "batched", fn}
    unknown = set(changes) - allowed
    if unknown:
        raise InputError(f"{type(prob).__name__}.remake does not take {sorted(unknown)}; it takes {sorted(allowed)}")
    a, b = getattr(prob, first), getattr(prob, second)
    if "u0" in changes:
        u0 = changes.pop("u0")
        a, b = u0[..., : prob.n], u0[..., prob.n:]
    return changes.pop(first, a), changes.pop(second, b)


class HamiltonianProblem(ODEProblem):
    """``dq/dt = dH/dp``, ``dp/dt = -dH/dq`` from ``(q0, p0)``: a Hamiltonian system as an :class:`ODEProblem`.

    The state is ``u = cat([q, p], -1)`` of shape ``(..., 2n)``; the right-hand side is computed by autograd
    (per-sample gradients of ``H``: :func:`hamiltonian_gradient`), differentiable with respect to the parameters of
    ``H`` (an ``nn.Module`` or tensors in ``p``), so gradients flow through every solve. Every pysciml solver
    solves it; the symplectic methods (``VelocityVerlet()``, ``Leapfrog()``, ``Yoshida4()``, ``Yoshida6()``,
    ``McAte5()``) need ``separable=True``; ``ImplicitMidpoint()`` is symplectic for any ``H``.

    Note the argument order ``(q0, p0)``: Julia's ``HamiltonianProblem(H, p0, q0, tspan)`` takes momenta first,
    and its ``H(p, q, params, t)`` too. Here ``H`` takes ``(q, p)``.

    Args:
        H: ``H(q, p) -> (...,)`` or ``H(q, p, params) -> (...,)``: one energy per leading index of ``q``/``p``
            (shape ``(..., n)``); a scalar for 1-D ``q``. Must be differentiable by autograd and torch.func (its
            Jacobians for the implicit methods) and must not mix leading (batch) indices. Autonomous (no ``t``).
        q0, p0: initial positions and momenta, tensors of the same shape ``(..., n)``, dtype and device.
        tspan: ``(t0, t1)``.
        p: parameters handed to ``H`` as its third argument (when it takes one).
        separable: assert ``H(q, p) = T(p) + V(q)``; verified at construction (the mixed derivative
            ``d2H/dq dp`` must vanish at ``(q0, p0)`` and two random perturbations of it, to ``sqrt(eps)``
            relative to the other second derivatives), :class:`InputError` otherwise.
        batched: treat the leading dimension of ``q0`` as independent trajectories of the engine (each with its
            own step control and return code; see :class:`ODEProblem`). With fixed steps, both choices give the same
            numbers; ``batched=True`` keeps ``ImplicitMidpoint``'s Newton matrices per trajectory (``(B, 2n, 2n)``
            instead of one for the whole state).

    Attributes:
        n: degrees of freedom (the last dimension of ``q0``).
        H, separable, q0, p0: as given (``q0``, ``p0`` as tensors).
    """

    #: compiled programs differentiate this vector field (itself a gradient of ``H``) by reverse mode
    reverse_jacobian = True

    def __init__(self, H: Callable[..., Tensor], q0: Any, p0: Any, tspan: Any, p: Any = None, *,
                 separable: bool = False, batched: bool = False) -> None:
        self.H = H
        self.H_takes_p = _takes_params(H, "H", 2)
        q0t, p0t = _split_state("q0", "p0", q0, p0)
        self.q0, self.p0 = q0t, p0t
        self.n = int(q0t.shape[-1])
        self._parts: tuple[Any, bool, Any, bool] | None = None  # (T, takes params, V, takes params): from_parts
        super().__init__(self._vector_field, torch.cat([q0t, p0t], dim=-1), tspan, p, batched=batched)
        self._check_energy_shape()
        self.separable = bool(separable)
        self._quadratic_kinetic: bool | None = None
        if self.separable:
            self._check_separable()

    def closure_modules(self) -> tuple[Any, ...]:
        """The callables the vector field calls (``H``, or ``T`` and ``V``): compiled solves look for parameters
        requiring grad among them (an HNN's ``nn.Module``) to compile a differentiated program."""
        return (self.H,) if self._parts is None else (self._parts[0], self._parts[2])

    # ------------------------------------------------------------------ the physics
    def hamiltonian(self, q: Tensor, p: Tensor) -> Tensor:
        """``H(q, p)`` (with the problem's parameters when ``H`` takes them)."""
        return self.H(q, p, self.p) if self.H_takes_p else self.H(q, p)

    def _energy(self, params: Any) -> Callable[[Tensor, Tensor], Tensor]:
        if self.H_takes_p:
            return lambda q, p: self.H(q, p, params)
        return self.H

    @classmethod
    def from_parts(cls, T: Callable[..., Tensor], V: Callable[..., Tensor], q0: Any, p0: Any, tspan: Any,
                   p: Any = None, *, batched: bool = False) -> HamiltonianProblem:
        """A separable ``H(q, p) = T(p) + V(q)`` given by its two parts: ``T(p)`` or ``T(p, params)`` and ``V(q)``
        or ``V(q, params)``, each returning one value per leading index. Separable by construction (no check), and
        cheaper: a velocity evaluates and differentiates ``T`` only, a force ``V`` only (with ``H`` alone each
        evaluation runs both parts forward)."""
        t_takes, v_takes = _takes_params(T, "T", 1), _takes_params(V, "V", 1)

        def H(q: Tensor, mom: Tensor, params: Any) -> Tensor:
            return (T(mom, params) if t_takes else T(mom)) + (V(q, params) if v_takes else V(q))

        prob = cls(H, q0, p0, tspan, p, separable=False, batched=batched)
        prob.separable = True
        prob._parts = (T, t_takes, V, v_takes)
        return prob

    def _part(self, which: int, params: Any) -> Callable[[Tensor], Tensor]:
        assert self._parts is not None
        fn, takes = self._parts[2 * which], self._parts[2 * which + 1]
        return (lambda x: fn(x, params)) if takes else fn

    def _vector_field(self, t: Tensor, u: Tensor, params: Any) -> Tensor:
        n = self.n
        q, p = u[..., :n], u[..., n:]
        if self._parts is not None:
            hp = hamiltonian_gradient(self._part(0, params), (p,), (0,))[0]
            hq = hamiltonian_gradient(self._part(1, params), (q,), (0,))[0]
        else:
            hq, hp = hamiltonian_gradient(self._energy(params), (q, p), (0, 1))
        return torch.cat([hp, -hq], dim=-1)

    def velocity(self, t: Tensor, q: Tensor, p: Tensor) -> Tensor:
        """``dq/dt = dH/dp`` at ``(q, p)`` (shape of ``p``); ``t`` is unused (``H`` is autonomous)."""
        return self.velocity_with(self.p, q, p)

    def force(self, t: Tensor, q: Tensor, p: Tensor) -> Tensor:
        """``dp/dt = -dH/dq`` at ``(q, p)`` (shape of ``q``); ``t`` is unused."""
        return self.force_with(self.p, q, p)

    def velocity_with(self, params: Any, q: Tensor, p: Tensor) -> Tensor:
        """:meth:`velocity` with the parameters ``params`` (a compiled program's input) for the problem's own."""
        if self._parts is not None:
            return hamiltonian_gradient(self._part(0, params), (p,), (0,))[0]
        return hamiltonian_gradient(self._energy(params), (q, p), (1,))[0]

    def force_with(self, params: Any, q: Tensor, p: Tensor) -> Tensor:
        """:meth:`force` with the parameters ``params`` for the problem's own."""
        if self._parts is not None:
            return -hamiltonian_gradient(self._part(1, params), (q,), (0,))[0]
        return -hamiltonian_gradient(self._energy(params), (q, p), (0,))[0]

    def _check_energy_shape(self) -> None:
        """``H(q0, p0)`` must be a tensor of one value per leading index: shape ``q0.shape[:-1]`` (or with a
        trailing 1), in the state's dtype."""
        with torch.no_grad():
            h = self.hamiltonian(self.q0.detach(), self.p0.detach())
        want = tuple(self.q0.shape[:-1])
        if not isinstance(h, Tensor) or tuple(h.shape) not in (want, (*want, 1)):
            got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise InputError(f"H(q, p) must return one energy per leading index of q (shape {want} for q0 of shape "
                             f"{tuple(self.q0.shape)}), got {got}; sum over the degrees of freedom, e.g. "
                             "0.5 * (p**2).sum(-1) + V(q).sum(-1)")
        if h.dtype != self.q0.dtype:
            raise InputError(f"H returned dtype {h.dtype} but q0 is {self.q0.dtype}; keep the state's dtype")

    def _check_separable(self) -> None:
        energy = self._energy(self.p)

        def grad_p(q: Tensor, p: Tensor) -> Tensor:
            return hamiltonian_gradient(energy, (q, p), (1,))[0]

        def grad_q(q: Tensor, p: Tensor) -> Tensor:
            return hamiltonian_gradient(energy, (q, p), (0,))[0]

        gen = torch.Generator(device="cpu").manual_seed(7)
        with torch.no_grad():
            for q, p in _perturbed_points(self.q0.detach(), self.p0.detach(), 2):
                wq = _randn_like(q, gen)
                wp = _randn_like(p, gen)
                mixed = torch.func.jvp(lambda x, p=p: grad_p(x, p), (q,), (wq,))[1]  # H_pq wq
                hqq = torch.func.jvp(lambda x, p=p: grad_q(x, p), (q,), (wq,))[1]
                hpp = torch.func.jvp(lambda y, q=q: grad_p(q, y), (p,), (wp,))[1]
                scale = float(hqq.abs().max() + hpp.abs().max()) + torch.finfo(q.dtype).tiny
                if float(mixed.abs().max()) > _tolerance(q.dtype) * max(scale, 1.0):
                    raise InputError(
                        "separable=True, but H is not separable: the mixed derivative d2H/dq dp is "
                        f"{float(mixed.abs().max()):.3g} (other second derivatives {scale:.3g}) near (q0, p0); H "
                        "must be T(p) + V(q) for the explicit symplectic methods. Pass separable=False and solve "
                        "with ImplicitMidpoint() (symplectic for any H) or a general method (Tsit5(), Vern7())")

    def kinetic_is_quadratic(self) -> bool:
        """Whether ``d2H/dp2`` is the same at ``(q0, p0)`` and two random momenta (``T`` quadratic in ``p``, as
        McAte5's order needs); checked along one random direction, to ``sqrt(eps)``, once per problem (kept by
        :meth:`remake`)."""
        if self._quadratic_kinetic is None:
            self._quadratic_kinetic = self._check_quadratic_kinetic()
        return self._quadratic_kinetic

    def _check_quadratic_kinetic(self) -> bool:
        energy = self._energy(self.p)
        gen = torch.Generator(device="cpu").manual_seed(11)
        with torch.no_grad():
            q = self.q0.detach()
            w = _randn_like(q, gen)
            vals = [torch.func.jvp(lambda y, q=q: hamiltonian_gradient(energy, (q, y), (1,))[0], (p,), (w,))[1]
                    for _, p in _perturbed_points(q, self.p0.detach(), 2)]
        scale = max(float(v.abs().max()) for v in vals) + torch.finfo(q.dtype).tiny
        return all(float((v - vals[0]).abs().max()) <= _tolerance(q.dtype) * scale for v in vals[1:])

    def remake(self, **changes: Any) -> HamiltonianProblem:
        """A copy with some fields replaced: ``u0`` (split into ``q0``, ``p0``), ``q0``, ``p0``, ``tspan``, ``p``,
        ``batched``, ``H``. The separability asserted here is kept (not checked again) unless ``H`` changes (then
        it is checked for the new ``H``)."""
        q0, p0 = _remake_halves(self, changes, "q0", "p0", "H")
        new_h = "H" in changes
        new = HamiltonianProblem(changes.get("H", self.H), q0, p0, changes.get("tspan", self.tspan),
                                 changes.get("p", self.p), separable=self.separable and new_h,
                                 batched=changes.get("batched", self.batched))
        if not new_h:
            new.separable = self.separable
            new._parts = self._parts
            if "p" not in changes:
                new._quadratic_kinetic = self._quadratic_kinetic
        return new


class SecondOrderODEProblem(ODEProblem):
    """``x'' = f(t, x, x')`` from ``(x0, v0)``, as the first-order system ``u = cat([x, v], -1)``, ``u' = (v, a)``.

    Every pysciml solver solves it; the explicit symplectic (Nystrom-type) methods need the acceleration to be
    independent of the velocity (``velocity_independent``), ``ImplicitMidpoint()`` does not. Julia's
    ``SecondOrderODEProblem(f, dx0, x0, tspan)`` takes the velocities first and ``f(dv, v, x, p, t)``; here positions
    come first everywhere: ``(x0, v0)``, ``f(t, x, v)`` and ``u = cat([x, v], -1)``.

    Args:
        f: the acceleration ``f(t, x, v) -> a`` or ``f(t, x, v, p) -> a``, shaped like ``x`` (``(..., n)``).
        x0, v0: initial positions and velocities, tensors of the same shape ``(..., n)``, dtype and device.
        tspan: ``(t0, t1)``; p: parameters handed to ``f``.
        velocity_independent: whether ``f`` ignores ``v``. ``None`` (default): decided by a check at
            construction (``df/dv`` along random directions at ``(x0, v0)`` and two random perturbations of it is
            zero to ``sqrt(eps)``); ``True``: asserted, verified by the same check (:class:`InputError` if it
            fails); ``False``: the explicit symplectic methods are refused for this problem.
        batched: as for :class:`HamiltonianProblem`.

    Attributes:
        n: degrees of freedom; velocity_independent: the decision above.
    """

    def __init__(self, f: Callable[..., Tensor], x0: Any, v0: Any, tspan: Any, p: Any = None, *,
                 velocity_independent: bool | None = None, batched: bool = False) -> None:
        self.accel = f
        self.accel_takes_p = _takes_params(f, "f", 3)
        x0t, v0t = _split_state("x0", "v0", x0, v0)
        self.x0, self.v0 = x0t, v0t
        self.n = int(x0t.shape[-1])
        super().__init__(self._first_order, torch.cat([x0t, v0t], dim=-1), tspan, p, batched=batched)
        self._check_acceleration_shape()
        if velocity_independent is False:
            self.velocity_independent = False
        else:
            found = self._check_velocity_independent()
            if velocity_independent and not found:
                raise InputError(
                    "velocity_independent=True, but the acceleration f(t, x, v) changes with v near (x0, v0); the "
                    "explicit symplectic methods need a = f(t, x). Pass velocity_independent=False and solve with "
                    "ImplicitMidpoint() or a general method (Tsit5(), Vern7())")
            self.velocity_independent = found

    def acceleration(self, t: Tensor, x: Tensor, v: Tensor) -> Tensor:
        """``f(t, x, v[, p])``."""
        return self.accel(t, x, v, self.p) if self.accel_takes_p else self.accel(t, x, v)

    def _first_order(self, t: Tensor, u: Tensor, params: Any) -> Tensor:
        n = self.n
        x, v = u[..., :n], u[..., n:]
        a = self.accel(t, x, v, params) if self.accel_takes_p else self.accel(t, x, v)
        return torch.cat([v, a], dim=-1)

    def velocity(self, t: Tensor, x: Tensor, v: Tensor) -> Tensor:
        """``dx/dt = v``."""
        return v

    def force(self, t: Tensor, x: Tensor, v: Tensor) -> Tensor:
        """``dv/dt = f(t, x, v[, p])``: the acceleration."""
        return self.acceleration(t, x, v)

    def _t0(self) -> Tensor:
        t0 = torch.tensor(self.tspan[0], dtype=self.u0.dtype, device=self.u0.device)
        return t0.expand(self.u0.shape[0]) if self.batched else t0

    def _check_acceleration_shape(self) -> None:
        with torch.no_grad():
            a = self.acceleration(self._t0(), self.x0.detach(), self.v0.detach())
        if not isinstance(a, Tensor) or a.shape != self.x0.shape:
            got = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
            raise InputError(f"f(t, x, v) must return the acceleration shaped like x {tuple(self.x0.shape)}, got {got}")
        if a.dtype != self.x0.dtype:
            raise InputError(f"f returned dtype {a.dtype} but x0 is {self.x0.dtype}; keep the state's dtype")

    def _check_velocity_independent(self) -> bool:
        t0 = self._t0()
        gen = torch.Generator(device="cpu").manual_seed(5)
        try:
            with torch.no_grad():
                for x, v in _perturbed_points(self.x0.detach(), self.v0.detach(), 2):
                    w = _randn_like(v, gen)
                    a, dv = torch.func.jvp(lambda y, x=x: self.acceleration(t0, x, y), (v,), (w,))
                    dx = torch.func.jvp(lambda y, v=v: self.acceleration(t0, y, v), (x,), (w,))[1]
                    scale = float(a.abs().max() + dx.abs().max()) + torch.finfo(v.dtype).tiny
                    if float(dv.abs().max()) > _tolerance(v.dtype) * max(scale, 1.0):
                        return False
        except InputError:
            raise
        except Exception:  # noqa: BLE001  (f not differentiable by torch.func: undecided means dependent)
            return False
        return True

    def kinetic_is_quadratic(self) -> bool:
        """Always true: ``x' = v`` is the velocity of the kinetic energy ``|v|^2 / 2``."""
        return True

    def remake(self, **changes: Any) -> SecondOrderODEProblem:
        """A copy with some fields replaced: ``u0`` (split into ``x0``, ``v0``), ``x0``, ``v0``, ``tspan``, ``p``,
        ``batched``, ``f``. The velocity independence decided here is kept (not checked again) unless ``f`` changes
        (then it is decided again, as at construction)."""
        x0, v0 = _remake_halves(self, changes, "x0", "v0", "f")
        new_f = "f" in changes
        new = SecondOrderODEProblem(changes.get("f", self.accel), x0, v0, changes.get("tspan", self.tspan),
                                    changes.get("p", self.p), velocity_independent=None if new_f else False,
                                    batched=changes.get("batched", self.batched))
        if not new_f:
            new.velocity_independent = self.velocity_independent
        return new
