"""Continuous adjoints (Backsolve, Interpolating, Quadrature) as one ``torch.autograd.Function``.

Between save times ``t_i`` the adjoint ``a`` solves ``a' = -(df/dy)^T a`` backwards, jumping by ``dL/dy(t_i)``
at each save time; the parameter gradient is ``int a^T df/dp dt``. What differs is where ``y(t)`` comes from:

* ``InterpolatingAdjoint()``: the forward solve's dense output; with ``checkpointing=True`` only checkpoint
  states are kept and each piece is re-solved forwards, with dense output, during the backward pass.
* ``QuadratureAdjoint()``: like Interpolating, and the parameter integral by Gauss-Legendre quadrature on
  the adjoint solution's own steps.
* ``BacksolveAdjoint()``: ``y`` is re-solved backwards together with ``a`` (O(1) memory; unstable when the
  forward problem is stiff or dissipative, as the backward state solve then blows up).

Explicit adjoint methods integrate ``[a, g]`` (or ``[y, a, g]``) as one system. Implicit ones solve only the
``n``-dimensional ``a`` (or ``[y, a]``) system, stiffly, with Jacobian ``-J^T`` (the forward Jacobian at
``y(t)``, from the problem's ``jac``, forward-mode autodiff or finite differences), and obtain ``g`` by
quadrature on its steps: the parameter part never feeds back, so it needs no implicit treatment.

With ``compile=True`` the backward solves are compiled too: their right-hand sides (and the ``a`` system's
Jacobian) are objects kept per ``f`` (:mod:`.augmented`), with ``y(t)`` an input table (the forward dense output,
or the checkpoints' re-solved pieces joined), so each signature compiles once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._validate import SolveOptions
from ..algorithms import Algorithm, ImplicitAlgorithm
from ..errors import SolverError
from ..native import solve_native as solve
from ..problem import ODEProblem, SplitODEProblem
from ..sensealg import BacksolveAdjoint, InterpolatingAdjoint, QuadratureAdjoint, SensitivityAlgorithm
from ..solution import Stats, raise_if_failed
from .augmented import core_for, field_for, padded_dense
from .vjp import refuse_new_leaves, vjp

Tensor = torch.Tensor
GAUSS_NODES = 5  # Gauss-Legendre nodes per adjoint step: exact for polynomials of degree 9


@dataclass
class AdjointSetup:
    """Everything the backward pass needs besides tensors."""

    prob: ODEProblem
    alg: Algorithm
    adj_alg: Algorithm
    sensealg: SensitivityAlgorithm
    save_t: Tensor
    params: list[Tensor]
    options: SolveOptions  #: of the forward solve (and of its re-solved pieces)
    #: the parameters were discovered, not given (adjoint_params): a tensor requiring grad that f uses only at
    #: other times is then refused in the backward pass instead of silently getting no gradient
    discovered: bool
    adj_options: SolveOptions  #: of the backward (adjoint) solves
    tstops: list[float] | None = None  #: checked ``tstops``: the forward and the backward solves land on them
    #: a failed forward solve raises; otherwise its solution and reached save times are kept in ``failed`` and
    #: the backward pass refuses (no gradient of a failed solve)
    throw: bool = True
    failed: tuple[Any, Tensor] | None = None
    checkpoint_every: int = 50
    dt_carry: float | None = None  # last step size of the previous adjoint interval
    #: the forward solve's dense output padded for the augmented field (:func:`.augmented.padded_dense`)
    dense_inputs: tuple[Tensor, ...] | None = None
    #: work of the forward solve, to which the backward pass adds that of its re-solves and adjoint solves
    stats: Stats = field(default_factory=Stats)


class ContinuousAdjoint(torch.autograd.Function):
    """``ys = ContinuousAdjoint.apply(setup, y0, t, *params)``: save-time states ``(S, *y0.shape)``."""

    @staticmethod
    def forward(ctx: Any, setup: AdjointSetup, y0: Tensor, t: Tensor, *params: Tensor) -> Tensor:
        sa = setup.sensealg
        prob0 = setup.prob.remake(u0=y0.detach())
        ctx.setup = setup
        ctx.dense = ctx.failed = None
        ckpt_t = ckpt_y = None
        if isinstance(sa, BacksolveAdjoint):
            sol = solve(prob0, setup.alg, setup.options, saveat=setup.save_t)
        else:
            sol = solve(prob0, setup.alg, setup.options, dense=True)
        if not sol.success:
            return _failed_forward(ctx, setup, sol)
        setup.stats += sol.stats
        if isinstance(sa, BacksolveAdjoint):
            ys = sol.u
        else:
            ys = sol(setup.save_t)
            if isinstance(sa, InterpolatingAdjoint) and sa.checkpointing:
                keep = sorted(set(range(0, len(sol.t), setup.checkpoint_every)) | {len(sol.t) - 1})
                ckpt_t, ckpt_y = sol.t[keep], sol.u[keep]
            else:
                ctx.dense = sol
        saved = [ys] + ([ckpt_t, ckpt_y] if ckpt_t is not None else [])
        if ctx.dense is not None:  # held until backward: count it like any saved tensor
            dense = sol._dense
            saved += [dense.t_start, dense.t_end, dense.coeffs]
        ctx.save_for_backward(*saved)
        ctx.has_ckpt = ckpt_t is not None
        ctx.pieces = {}
        return ys.clone()

    @staticmethod
    def backward(ctx: Any, grad_ys: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.failed is not None:
            raise SolverError("no gradient of a failed solve: " + ctx.failed.message, ctx.failed.retcode)
        setup: AdjointSetup = ctx.setup
        saved = ctx.saved_tensors
        ys = saved[0]
        ckpt = (saved[1], saved[2]) if ctx.has_ckpt else None
        prob, ts = setup.prob, setup.save_t
        need_t = ctx.needs_input_grad[2]
        a = grad_ys[-1].clone()
        if ctx.dense is not None and (setup.options.compile or not _quadrature(setup)):
            setup.dense_inputs = padded_dense(ctx.dense._dense)
        g: list[Tensor | None] = [None] * len(setup.params)
        grad_t = torch.zeros_like(ts) if need_t else None
        for i in range(len(ts) - 1, 0, -1):
            if grad_t is not None:
                grad_t[i] = (grad_ys[i] * prob.rhs(ts[i], ys[i])).sum()
            provider = _state_provider(ctx, setup, ckpt, ts[i - 1], ts[i])
            a, g_inc = _adjoint_interval(setup, provider, ys[i], a, ts[i], ts[i - 1])
            g = [gi if inc is None else (inc if gi is None else gi + inc) for gi, inc in zip(g, g_inc, strict=True)]
            if grad_t is not None and i == 1:
                grad_t[0] = -(a * prob.rhs(ts[0], ys[0])).sum()
            a = a + grad_ys[i - 1]
        setup.dense_inputs = None
        # a parameter f never uses has gradient exactly zero (it is an input of this Function: not None)
        grads = [torch.zeros_like(q) if gi is None else gi for gi, q in zip(g, setup.params, strict=True)]
        return (None, a, grad_t, *grads)


def _failed_forward(ctx: Any, setup: AdjointSetup, sol: Any) -> Tensor:
    """A failed forward solve: raise (``throw``), or keep it in ``setup.failed`` with the save times it reached
    and return the values there; the backward pass then refuses."""
    if setup.throw:
        raise_if_failed(sol, "forward solve for the adjoint")
    if sol.dense:  # every step up to the failure: interpolate at the save times reached
        direction = 1.0 if setup.prob.tspan[1] > setup.prob.tspan[0] else -1.0
        t = setup.save_t[direction * setup.save_t <= direction * float(sol.t[-1])]
        ys = _interpolator(sol)(t)
    else:
        t, ys = sol.t, sol.u
    ctx.failed = sol
    setup.failed = (sol, t)
    return ys.clone()


def _state_provider(ctx: Any, setup: AdjointSetup, ckpt: tuple[Tensor, Tensor] | None, t_lo: Tensor,
                    t_hi: Tensor) -> Callable[[Tensor], Tensor] | None:
    """``y(t)`` on ``[t_lo, t_hi]`` (``None`` for Backsolve, which carries ``y`` in its state)."""
    if isinstance(setup.sensealg, BacksolveAdjoint):
        return None
    if ctx.dense is not None:
        whole = _interpolator(ctx.dense)
        whole.table = setup.dense_inputs  # type: ignore[attr-defined]
        return whole
    assert ckpt is not None
    ct, cy = ckpt
    direction = 1.0 if float(ct[-1]) > float(ct[0]) else -1.0
    lo, hi = sorted((float(t_lo), float(t_hi)), key=lambda v: direction * v)
    keyed = direction * ct
    lo_t, hi_t = (torch.tensor(direction * v, dtype=ct.dtype, device=ct.device) for v in (lo, hi))
    start = int(torch.searchsorted(keyed, lo_t, right=True)) - 1
    end = int(torch.searchsorted(keyed, hi_t))
    start, end = max(start, 0), min(max(end, start + 1), len(ct) - 1)
    cache: dict[int, Any] = ctx.pieces  # re-solved pieces, shared by neighbouring save intervals
    for k in [k for k in cache if k >= end]:  # the backward pass only moves towards t0: drop what is behind
        del cache[k]
    for k in range(start, end):  # re-solve each checkpoint piece forwards, with dense output
        if k not in cache:
            a0, a1 = float(ct[k]), float(ct[k + 1])
            with torch.no_grad():
                piece = setup.prob.remake(u0=cy[k], tspan=(a0, a1))
                cache[k] = solve(piece, setup.alg, setup.options.on_piece(a0, a1, setup.tstops), dense=True)
            raise_if_failed(cache[k], f"forward re-solve from t={a0:.6g} to t={a1:.6g} for the adjoint")
            setup.stats += cache[k].stats
    pieces = [(float(ct[k]), float(ct[k + 1]), _interpolator(cache[k])) for k in range(start, end)]

    def y_of_t(tt: Tensor) -> Tensor:
        flat = tt.reshape(-1)
        out = torch.empty((flat.numel(), setup.prob.state_size), dtype=cy.dtype, device=cy.device)
        x = direction * flat
        for i, (a0, a1, interp) in enumerate(pieces):
            inside = x <= direction * a1 if i < len(pieces) - 1 else torch.ones_like(x, dtype=torch.bool)
            if i > 0:
                inside = inside & (x > direction * a0)
            if bool(inside.any()):  # a finite-difference probe past an end extrapolates the end piece
                out[inside] = interp(flat[inside]).reshape(-1, setup.prob.state_size)
        return out.reshape(*tt.shape, *setup.prob.state_shape)

    y_of_t.kinks = sorted({k for _, _, interp in pieces for k in interp.kinks})  # type: ignore[attr-defined]
    # the pieces' dense outputs as one table, for a compiled backward solve (the same values: consecutive steps)
    y_of_t.table = (padded_dense(*(cache[k]._dense for k in range(start, end)))  # type: ignore[attr-defined]
                    if setup.options.compile else None)
    return y_of_t


def _interpolator(sol: Any) -> Callable[[Tensor], Tensor]:
    """``y(t)`` from a solution's dense output without the tspan check: finite-difference probes of
    ``df/dt`` may step a hair past an end, where the end step's polynomial extrapolates smoothly."""
    dense, shape = sol._dense, sol.prob.state_shape

    def y_of_t(tt: Tensor) -> Tensor:
        flat = tt.reshape(-1).to(sol.t.dtype)
        return dense(flat)[:, 0].reshape(*tt.shape, *shape)

    y_of_t.kinks = dense.t_end[:, 0].unique().tolist()  # type: ignore[attr-defined]
    return y_of_t


def _adjoint_interval(setup: AdjointSetup, y_of_t: Callable[[Tensor], Tensor] | None, y_hi: Tensor, a: Tensor,
                      t_hi: Tensor, t_lo: Tensor) -> tuple[Tensor, list[Tensor | None]]:
    """Solve the adjoint from ``t_hi`` back to ``t_lo``; returns ``a(t_lo)`` and the parameter increments."""
    if _quadrature(setup):
        return _core_then_quadrature(setup, y_of_t, y_hi, a, t_hi, t_lo)
    return _augmented_explicit(setup, y_of_t, y_hi, a, t_hi, t_lo)


def _quadrature(setup: AdjointSetup) -> bool:
    """Whether the backward pass solves ``a`` alone and ``g`` by quadrature (implicit methods, QuadratureAdjoint)."""
    return isinstance(setup.adj_alg, ImplicitAlgorithm) or isinstance(setup.sensealg, QuadratureAdjoint)


def _augmented_explicit(setup: AdjointSetup, y_of_t: Callable[[Tensor], Tensor] | None, y_hi: Tensor,
                        a: Tensor, t_hi: Tensor, t_lo: Tensor) -> tuple[Tensor, list[Tensor | None]]:
    """``[a, g]`` (Interpolating) or ``[y, a, g]`` (Backsolve) as one explicit system, torchdiffeq-style; with
    ``compile=True`` its solves are compiled where :func:`.augmented.field_for` allows."""
    prob, params = setup.prob, setup.params
    shape, n = prob.state_shape, prob.state_size
    backsolve = y_of_t is None
    offset = 2 * n if backsolve else n
    direction = 1.0 if prob.tspan[1] > prob.tspan[0] else -1.0
    table = getattr(y_of_t, "table", None)  # the forward dense output (its re-solved pieces) as arrays
    dense = None if backsolve else table if table is not None else y_of_t
    # compiled: not with a Python y(t), hooks (the eager loop) or a differentiated backward pass
    want = (setup.options.compile and not callable(dense) and setup.adj_options.hooks is None
            and not torch.is_grad_enabled())
    field, compiled = field_for(prob, params, backsolve, setup.discovered, direction, want)
    z0 = torch.cat([y_hi.reshape(-1)] * backsolve + [a.reshape(-1)] + [a.new_zeros(sum(field.sizes))])
    adj = ODEProblem(field, z0, (float(t_hi), float(t_lo)), p=(prob.p, dense, tuple(params)))
    opts = _interval_options(setup, y_of_t, t_hi, t_lo).replace(compile=compiled)
    sol = solve(adj, setup.adj_alg, opts, saveat=[float(t_lo)])
    setup.dt_carry = None if sol.dt_next is None else float(sol.dt_next)
    raise_if_failed(sol, f"backward (adjoint) solve from t={float(t_hi):.6g} to t={float(t_lo):.6g}")
    setup.stats += sol.stats
    z = sol.u[-1]
    a_lo = z[offset - n: offset].reshape(shape)
    g_inc: list[Tensor | None] = []
    pos = offset
    for sz, q in zip(field.sizes, params, strict=True):
        g_inc.append(z[pos: pos + sz].reshape(q.shape))
        pos += sz
    return a_lo, g_inc


def _core_then_quadrature(setup: AdjointSetup, y_of_t: Callable[[Tensor], Tensor] | None, y_hi: Tensor,
                          a: Tensor, t_hi: Tensor, t_lo: Tensor) -> tuple[Tensor, list[Tensor | None]]:
    """Solve the ``a`` (or ``[y, a]``) system stiffly with dense output, then ``g`` by quadrature on its steps."""
    prob = setup.prob
    shape, n = prob.state_shape, prob.state_size
    backsolve = y_of_t is None
    jac_rhs = _forward_jacobian(prob)
    # tensors f uses only at some times: with parameters, the quadrature's graph shows them; without, the
    # adjoint's own f evaluations are watched
    watch = [] if setup.discovered and not setup.params else None
    opts = _interval_options(setup, y_of_t, t_hi, t_lo)
    adj_alg = setup.adj_alg
    if backsolve:
        def rhs(t: Tensor, z: Tensor) -> Tensor:
            y, aa = z[:n].reshape(shape), z[n:].reshape(shape)
            fy, gy, _, _ = vjp(prob.f, prob.f_takes_p, prob.p, t, y, aa, [], known=watch)
            return torch.cat([fy.reshape(-1), -gy.reshape(-1)])

        if isinstance(adj_alg, ImplicitAlgorithm):
            adj_alg = type(adj_alg)(autodiff=False)  # vjp inside forward-mode AD is not supported by torch.func
        adj = ODEProblem(rhs, torch.cat([y_hi.reshape(-1), a.reshape(-1)]), (float(t_hi), float(t_lo)))
    else:  # the a-system, linear: its Jacobian is -J(t, y(t))^T; compiled like any solve where it can be
        table = getattr(y_of_t, "table", None)
        compiled = (setup.options.compile and table is not None and setup.adj_options.hooks is None
                    and not torch.is_grad_enabled())
        direction = 1.0 if prob.tspan[1] > prob.tspan[0] else -1.0
        field, jac = core_for(prob, direction, watch, jac_rhs, compiled)
        adj = ODEProblem(field, a.reshape(-1), (float(t_hi), float(t_lo)), p=(prob.p, table if compiled else y_of_t),
                         jac=jac)
        opts = opts.replace(compile=compiled)
    with torch.no_grad():
        sol = solve(adj, adj_alg, opts, dense=True)
    setup.dt_carry = sol.dt_next
    raise_if_failed(sol, f"backward (adjoint) solve from t={float(t_hi):.6g} to t={float(t_lo):.6g}")
    setup.stats += sol.stats
    a_lo = sol.u[-1][n:].reshape(shape) if backsolve else sol.u[-1].reshape(shape)
    if not setup.params:
        return a_lo, []
    nodes, weights = _gauss_nodes(sol)
    zs = _interpolator(sol)(nodes)
    ys = zs[:, :n].reshape(-1, *shape) if backsolve else y_of_t(nodes)
    aas = (zs[:, n:] if backsolve else zs).reshape(-1, *shape)
    return a_lo, _weighted_param_vjp(prob, nodes, ys, aas, weights, setup.params, setup.discovered,
                                     setup.options.compile)


def _interval_options(setup: AdjointSetup, y_of_t: Any, t_hi: Tensor, t_lo: Tensor) -> SolveOptions:
    """The backward solve's options on ``[t_lo, t_hi]``: its steps land on the forward step times behind an
    interpolated ``y(t)`` (only C0 across them; OrdinaryDiffEq does the same) and on the user's ``tstops``; it
    starts with the step the previous interval ended with (as one continuous solve with jumps would), instead of
    a fresh initial-step guess. After a fixed-step forward solve it takes the same fixed steps."""
    span = abs(float(t_hi) - float(t_lo))
    if setup.adj_options.adaptive is False:  # fixed steps, as the forward solve took: no stops to land on
        return setup.adj_options.on_piece(float(t_hi), float(t_lo), None).replace(
            dt=min(float(setup.adj_options.dt), span))
    stops = [*getattr(y_of_t, "kinks", []), *(setup.tstops or [])]
    opts = setup.adj_options.on_piece(float(t_hi), float(t_lo), stops)
    if setup.dt_carry is None:
        return opts
    return opts.replace(dt=min(setup.dt_carry, span))


def _gauss_nodes(sol: Any) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on every accepted step of ``sol`` (weights include the oriented step/2)."""
    dense = sol._dense
    t0, t1 = dense.t_start[:, 0], dense.t_end[:, 0]
    real = t1 != t0
    t0, t1 = t0[real], t1[real]
    x, w = np.polynomial.legendre.leggauss(GAUSS_NODES)
    x = torch.as_tensor(x, dtype=t0.dtype, device=t0.device)
    w = torch.as_tensor(w, dtype=t0.dtype, device=t0.device)
    half = (t1 - t0) / 2
    nodes = (t0[:, None] + half[:, None] * (x[None, :] + 1)).reshape(-1)
    # the adjoint runs against the forward direction: each of its steps contributes the integral oriented
    # like the forward solve, i.e. -(t1 - t0) (positive for a forward solve in increasing t, negative backwards)
    weights = (-half[:, None] * w[None, :]).reshape(-1)
    return nodes, weights


def _weighted_param_vjp(prob: ODEProblem, ts: Tensor, ys: Tensor, aas: Tensor, weights: Tensor,
                        params: list[Tensor], strict: bool, vectorized: bool = False) -> list[Tensor | None]:
    """``sum_k w_k a_k^T df/dp (t_k, y_k)``: all nodes in one graph, one reverse pass (which also shows, with
    ``strict``, any tensor requiring grad that f uses at these nodes but that is not among ``params``).
    ``vectorized`` (``compile=True``): ``f`` at every node in one ``torch.func.vmap`` call where it vectorizes (one
    call of ``f`` instead of one per node; a Python counter in ``f`` then counts one), else node by node."""
    with torch.enable_grad():
        values = _node_values(prob, ts, ys.detach()) if vectorized else None
        if values is not None:
            total = (weights.reshape(-1, *([1] * (values.ndim - 1))) * aas * values).sum()
        else:
            total = ts.new_zeros(())
            for tk, yk, ak, wk in zip(ts, ys, aas, weights, strict=True):
                total = total + wk * (ak * prob.rhs(tk, yk.detach())).sum()
        if strict:
            refuse_new_leaves(total, params, ts[0])
        grads = torch.autograd.grad(total, params, allow_unused=True, retain_graph=True)  # see vjp()
    return list(grads)


def _node_values(prob: ODEProblem, ts: Tensor, ys: Tensor) -> Tensor | None:
    """``f(t_k, y_k)`` for every node ``k`` by one ``torch.func.vmap`` call, ``(N, *state)``; ``None`` where ``f``
    does not vectorize (data-dependent Python, an operation vmap lacks)."""
    try:
        return torch.func.vmap(prob.rhs)(ts, ys)
    except Exception:  # noqa: BLE001 - any failure of vmap: node by node, as without it
        return None


def _forward_jacobian(prob: ODEProblem) -> Callable[[Tensor, Tensor], Tensor]:
    """``J(t, y)`` of the forward problem, ``(n, n)``, from its jac / forward-mode AD / finite differences."""
    from ..engine.rhs import RHS

    split = isinstance(prob, SplitODEProblem)  # its jac is the implicit part's only: differentiate the sum
    rhs = RHS(prob.f, prob.f_takes_p, prob, Stats(), jac=None if split else prob.jac,
              jac_takes_p=prob.jac_takes_p)

    def jac(t: Tensor, y_flat: Tensor) -> Tensor:
        with torch.no_grad():
            return rhs.jac(t.reshape(1), y_flat.reshape(1, -1))[0]

    return jac
