"""One attempted FBDF step as traceable tensor code, for the compiled FBDF loop (:mod:`.compiled_loop_bdf`).

The arithmetic of :class:`~.bdf_flc.FLCMethod` and the Newton iteration it inherits from :class:`~.bdf.BDFMethod`,
with everything those keep on the host (the order, the past times and values, the factorization's ``c``, the
Jacobian's freshness, Newton's rate estimate) as tensors, and every variable-length piece (the ``k + 1`` predictor
nodes of order ``k``, the ``q + 2`` nodes of order ``q``'s error estimate, the interpolant's ``k + 1`` points)
computed on the fixed ``HISTORY``-long arrays with the unused entries masked (a product's factor set to 1, a sum's
term to 0, so the used ones combine in the same order as the eager code's). Values equal the eager ones to
round-off: the eager weights come from NumPy, whose reductions group terms differently in the last bits.

:func:`attempt` is one try of :meth:`~.bdf.BDFMethod.attempt`: a fresh Jacobian when it is stale, the
factorization of ``M/c - J`` renewed only when ``c`` has moved by more than ``REFACTOR``, simplified Newton (its first
iteration in line, the others a ``torch.while_loop``). The second try with a fresh Jacobian after a failure with an
old one is one more iteration of the loop program (:func:`.compiled_bdf_rules.hold` keeps the step's carries), not a
loop of tries inside the step: a ``while_loop`` level less per step. The two renewals are ``while_loop`` calls of zero
or one iteration (computed only when due): a loop that does not run hands its carries on as they are, where a
``torch.cond`` branch that kept the Jacobian or the factors had to return copies of the ``(n, n)`` tensors (a branch
may not return its inputs), two copies per attempt. (Two calls of one Newton loop in a body came out wrong with
torch 2.13's C++ wrapper, :mod:`.compiled_loop_firk`; these sibling loops have bodies of their own, and the compiled
Brusselator solve gives the values and counters of the ``cond`` version bit for bit.) ``while_loop`` is a module name
so the tests can run the code as plain Python.

What a compiled step costs beyond its arithmetic (measured on the 128-state Brusselator, C++ wrapper): every carry
of a ``while_loop`` is a buffer allocated anew, with new tensor handles, at every iteration, and so is every alias
that inductor's ``stack``/``cat`` makes of its pieces (``malloc``/``free`` were ~38% of the step's time), so the
loops carry their 0-d scalars packed in one float64 vector (:func:`packed_while_loop`), vectors of scalars are built
by :func:`stacked` (one ``where``, no aliases), and a step runs no loop of tries and its first Newton iteration in
line (above): 1048 ``malloc`` calls per loop iteration before these three, 587 after; and a ``lu_solve`` per Newton
iteration costs ~13 us of dispatch, pivot checks and copies, so systems up to :data:`INVERSE_MAX` equations solve
with ``W^{-1}``, made once per factorization (values then differ from the eager ``lu_solve`` in the last bits only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch._higher_order_ops.while_loop import while_loop

from .bdf import FIRST_RATE_FLOOR, REFACTOR
from .compiled_parts import lu_apply, lu_parts, mass_times
from .linsolve import DenseLUSolver

__all__ = ["INVERSE_MAX", "attempt", "coefficients", "error_constant", "lagrange", "order_error", "packed_while_loop",
           "pick", "pushed", "rms_max", "stacked", "uses_inverse"]

Tensor = torch.Tensor


def pick(x: Tensor, i: Tensor) -> Tensor:
    """``x[i]`` for a 0-d index tensor, without reading ``i`` on the host (a traced ``x[i]`` would)."""
    return x.index_select(0, i.reshape(1)).squeeze(0)


def rms_max(x: Tensor, scale: Tensor) -> Tensor:
    """:func:`~.bdf.rms_max` as a 0-d float64 tensor (the eager code divides the state dtype's norm by ``sqrt(n)``
    in a Python float)."""
    return torch.linalg.vector_norm(x / scale, dim=1).max().to(torch.float64) / math.sqrt(x.shape[1])


def stacked(xs: Sequence[Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """``torch.stack(xs)`` (tensors of one shape, cast to ``dtype``) as one elementwise ``where`` over the row index.
    Inductor lowers a ``stack`` or ``cat`` to a buffer of which every piece is an alias, and the C++ wrapper makes a
    tensor handle for each alias at every loop iteration (on the 128-state Brusselator, 90 of a compiled FBDF
    step's ~150 handles); the ``where`` makes none. Exact: each entry is selected, not computed."""
    xs = [x if dtype is None else x.to(dtype) for x in xs]
    shape = xs[0].shape
    row = torch.arange(len(xs), device=xs[0].device).reshape(-1, *[1] * len(shape))
    out = xs[-1].expand(len(xs), *shape)
    for i in range(len(xs) - 2, -1, -1):
        out = torch.where(row == i, xs[i], out)
    return out


def pushed(x: Tensor, history: Tensor) -> Tensor:
    """``torch.cat((x[None], history[:-1]))``, the newest first, as :func:`stacked` builds it (no aliases)."""
    row = torch.arange(history.shape[0], device=history.device).reshape(-1, *[1] * x.dim())
    return torch.where(row == 0, x, history.roll(1, 0))


def _seq_sum(terms: list[Tensor], use: list[Tensor]) -> Tensor:
    out = torch.zeros_like(terms[0])
    for x, m in zip(terms, use, strict=True):
        out = out + torch.where(m, x, 0.0)
    return out


def _seq_prod(terms: list[Tensor], use: list[Tensor]) -> Tensor:
    out = torch.ones_like(terms[0])
    for x, m in zip(terms, use, strict=True):
        out = out * torch.where(m, x, 1.0)
    return out


def lagrange(x: Tensor, k: Tensor, K: int) -> tuple[Tensor, Tensor]:
    """:func:`~.bdf_flc.lagrange_weights` of the nodes ``x[0..k]`` (``x`` of length ``>= K + 1``), as two
    ``(K + 1,)`` tensors with zeros beyond ``k``."""
    used = [k >= m for m in range(K + 1)]
    ell, dell = [], []
    for j in range(K + 1):
        others = [m for m in range(K + 1) if m != j]
        use = [used[m] for m in others]
        e = _seq_prod([-x[m] / (x[j] - x[m]) for m in others], use)
        s = _seq_sum([1.0 / (0.0 - x[m]) for m in others], use)
        ell.append(torch.where(used[j], e, 0.0))
        dell.append(torch.where(used[j], e * s, 0.0))
    return stacked(ell), stacked(dell)


def error_constant(dist: Tensor, h: Tensor, q: Tensor, a_s: Tensor) -> Tensor:
    """:func:`~.bdf_flc.error_constant` of order ``q`` (0-d long) on the distances ``dist`` (``a_s``: the table
    ``-(1 + ... + 1/q)`` indexed by ``q``)."""
    a = h / dist
    a_next = pick(a, q)
    a_0 = -_seq_sum(list(a.unbind()), [q > j for j in range(a.shape[0])])
    return torch.maximum(a_next, (a_next + pick(a_s, q) - a_0).abs())


def order_error(ts: Tensor, ys: Tensor, nhist: Tensor, q: Tensor, scale: Tensor, a_s: Tensor) -> Tensor:
    """:meth:`~.bdf_flc.FLCMethod.order_error`: order ``q``'s error estimate on the step just accepted (``ts``,
    ``ys`` newest first, ``nhist`` of them used); ``inf`` when fewer than ``q + 2`` points are known."""
    H = ts.shape[0]
    h = ts[0] - ts[1]
    x = (ts - ts[0]) / h
    used = [q + 2 > m for m in range(H)]
    dd = []
    for j in range(H):
        others = [m for m in range(H) if m != j]
        dd.append(torch.where(used[j], 1.0 / _seq_prod([x[j] - x[m] for m in others], [used[m] for m in others]),
                              0.0))
    dist = -x[1:]
    prod = _seq_prod(list(dist.unbind()), used[1:])
    w = stacked(dd) * prod * error_constant(torch.where(stacked(used[1:]), dist, 1.0), ts.new_ones(()), q,
                                                a_s)
    est = rms_max(torch.tensordot(w.to(ys.dtype), ys, dims=1), scale)
    return torch.where(nhist < q + 2, math.inf, est)


def coefficients(ts: Tensor, ys: Tensor, order: Tensor, nhist: Tensor, K: int) -> Tensor:
    """:meth:`~.bdf_flc.FLCMethod.interpolant`: the coefficients ``(K + 1, B, n)`` in ``theta`` of the polynomial
    through the newest ``k + 1`` points (``k = min(order, nhist - 1)``), zero beyond degree ``k``."""
    k = torch.minimum(order, nhist - 1)
    h = ts[0] - ts[1]
    th = (ts[: K + 1] - ts[1]) / h
    used = torch.arange(K + 1, device=ts.device) <= k
    powers = [torch.ones_like(th)]
    for _ in range(K):
        powers.append(powers[-1] * th)
    V = torch.stack(powers, 1)  # V[j, p] = theta_j^p
    both = used[:, None] & used[None, :]
    V = torch.where(both, V, torch.eye(K + 1, dtype=V.dtype, device=V.device))
    inv = torch.where(both, torch.linalg.inv_ex(V)[0], 0.0)
    return torch.einsum("pj,jbn->pbn", inv.to(ys.dtype), ys[: K + 1])


def _again(go: Tensor, *rest: Tensor) -> Tensor:
    """The condition of a ``while_loop`` of zero or one iteration (its body sets ``go`` to ``False``)."""
    return go.clone()


def _copies(*xs: Tensor) -> tuple[Tensor, ...]:
    """New row-major tensors: a ``while_loop`` body may not return its inputs, and must give its carries' strides
    (the LU factors come column-major: carried as their transpose, ``lu.mT``)."""
    return tuple(x.clone(memory_format=torch.contiguous_format) for x in xs)


_PACKED = (torch.long, torch.bool, torch.float64)


def packed_while_loop(cond: Callable[..., Tensor], body: Callable[..., tuple[Tensor, ...]],
                      carries: tuple[Tensor, ...], loop: Callable[..., Any] | None = None) -> tuple[Tensor, ...]:
    """``while_loop(cond, body, carries)`` with its 0-d long, bool and float64 carries packed into one float64
    vector (exact: the longs are counts and indices far below ``2^53``), so ``cond`` and ``body`` see and return
    them as before. Compiled, each carry of a ``while_loop`` is a buffer allocated anew (and a tensor handle made)
    at every iteration: on the 128-state Brusselator, memory allocation was ~38% of a compiled FBDF step's time.
    ``loop``: the ``while_loop`` to call (default this module's; the tests swap a module's for a Python loop)."""
    kinds = [x.dtype if x.dim() == 0 and x.dtype in _PACKED else None for x in carries]
    packed = [i for i, k in enumerate(kinds) if k is not None]
    kept = [i for i, k in enumerate(kinds) if k is None]

    def pack(xs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (stacked([xs[i] for i in packed], torch.float64), *[xs[i] for i in kept])

    def unpack(v: Tensor, *rest: Tensor, fresh: bool = False) -> tuple[Tensor, ...]:
        out: list[Tensor] = [*[v] * len(carries)]
        for j, i in enumerate(packed):
            out[i] = v[j] != 0.0 if kinds[i] == torch.bool else v[j].to(kinds[i], copy=fresh)
        for x, i in zip(rest, kept, strict=True):
            out[i] = x
        return tuple(out)

    def cond_p(v: Tensor, *rest: Tensor) -> Tensor:
        return cond(*unpack(v, *rest))

    def body_p(v: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        return pack(tuple(body(*unpack(v, *rest))))

    # the results as tensors of their own: views of one vector would alias, which a loop body may not return
    return unpack(*(loop or while_loop)(cond_p, body_p, pack(carries)), fresh=True)


INVERSE_MAX = 128
"""Systems of up to this many equations solve Newton's corrections with ``W^{-1}`` (made once per factorization by
``n`` solves) instead of one ``lu_solve`` per iteration: on the 128-state Brusselator a ``lu_solve`` costs ~13 us
(dispatch, pivot checks, copies), the product ~2.5 us, the inverse ~110 us per factorization (which that solve
reuses for ~23 Newton iterations); the inverse's cost grows as ``n^3``, the saving per iteration does not."""


def uses_inverse(n: int) -> bool:
    """Whether the program solves with ``W^{-1}`` (its ``inverse`` carry is ``(B, n, n)``, else ``(B, 1, 1)``)."""
    return n <= INVERSE_MAX


def _solve(lu: Tensor, piv: Tensor, inverse: Tensor, v: Tensor, with_inverse: bool, small: bool) -> Tensor:
    """``W^{-1} v`` (``(B, n)``) from the carried factors (``lu`` transposed) or ``inverse``. One trajectory's
    product is an ``mm`` of the row ``v`` (a library call): inductor turns a matrix-vector ``bmm`` on the CPU into a
    reduction it fuses with what makes ``v``, and so evaluated ``f`` once per row of ``W^{-1}`` (9 us a product on
    the 128-state Brusselator)."""
    if not with_inverse:
        return lu_apply(lu.mT, piv, None, v)
    if v.shape[0] == 1 and not small:
        return v @ inverse[0].mT
    return lu_apply(lu.mT, piv, inverse, v)


def attempt(F: Callable[..., Tensor], jacobian: Callable[..., Tensor], p: Any, t_new: Tensor, y_pred: Tensor,
            psi: Tensor, c: Tensor, mass: Tensor | None, atol: Tensor, rtol: Tensor, tol: Tensor, max_iters: int,
            S: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """One try of :meth:`~.bdf.BDFMethod.attempt` for the step to ``t_new`` (``(B,)``) from the prediction
    ``(y_pred, psi)`` with ``c = h / alpha_k``. ``S = (J, lu, piv, inverse, c_lu, jac_stale, jac_current, eta,
    counts)`` is the method's state (``c_lu`` NaN: no usable factorization; ``counts``: ``njac, nlu, nnonliniter,
    nf, nsolve`` and three more, left alone). Returns ``(converged, retry, y_new, d, iters, finite, *S)``:
    ``retry`` where Newton failed with a Jacobian that was not fresh in this step, for which the eager method
    tries the same step again at once with a fresh one (``jac_stale`` is then set): the loop programs run that
    second try as one more iteration of their loop, the step's carries kept (:func:`.compiled_bdf_rules.hold`),
    not as a loop of tries here (a ``while_loop`` level per step less: each level costs a condition and a handle
    per carry per iteration in the C++ wrapper)."""
    b, n = y_pred.shape
    small, with_inverse = n <= DenseLUSolver.SMALL, uses_inverse(n)
    scale = atol + rtol * y_pred.abs()
    eps = torch.finfo(y_pred.dtype).eps
    inv_c = 1.0 / c

    def more(it: Tensor, y: Tensor, d: Tensor, norm_old: Tensor, eta: Tensor, status: Tensor,
             finite: Tensor) -> Tensor:
        return (status == 0) & (it < max_iters)

    def newton(lu: Tensor, piv: Tensor, inverse: Tensor, ok: Tensor, eta0: Tensor) -> tuple[Tensor, ...]:
        """BDFMethod._newton after the factorization: ``(status, y, d, iters, finite, eta)``."""
        def iterate(it: Tensor, y: Tensor, d: Tensor, norm_old: Tensor, eta: Tensor, status: Tensor,
                    finite: Tensor) -> tuple[Tensor, ...]:
            f = F(p, t_new, y)
            lag = mass_times(psi + d, mass)
            dy = _solve(lu, piv, inverse, (c * f - lag) * inv_c, with_inverse, small)
            norm = rms_max(dy, scale)
            rate = norm / norm_old
            later = it > 0
            diverged = later & ((rate >= 1.0) | (rate.pow((max_iters - it).to(rate.dtype)) / (1.0 - rate) * norm
                                                  > tol))
            eta = torch.where(later & ~diverged, rate / (1.0 - rate), eta)
            bad = ~torch.isfinite(norm)
            fail = diverged | bad
            finite = torch.where(fail, ~bad, finite)
            conv = ~fail & ((norm == 0.0) | (eta * norm < tol))
            y = torch.where(fail, y, y + dy)
            d = torch.where(fail, d, d + dy)
            status = torch.where(fail, -1, torch.where(conv, 1, status))
            return it + 1, y, d, norm, eta, status, finite

        eta = torch.clamp(torch.clamp(eta0, min=eps).pow(0.8), min=FIRST_RATE_FLOOR)
        zero = torch.zeros((), dtype=torch.long, device=c.device)
        status = torch.where(ok, zero, zero - 1)
        start = (zero, y_pred, torch.zeros_like(y_pred), torch.ones_like(c), eta, status, torch.ones_like(ok))
        # the first iteration (every try with usable factors makes one) outside the loop: a loop iteration less
        go = more(*start)
        first = tuple(torch.where(go, x, x0) for x, x0 in zip(iterate(*start), start, strict=True))
        it, y, d, _, eta, status, finite = packed_while_loop(more, iterate, first)
        return status, y, d, it, finite, eta

    J, lu, piv, inverse, c_lu, jac_stale, jac_current, eta, counts = S

    # the renewals: while_loops of zero or one iteration (not torch.cond, whose keeping branch copied J or LU)
    def renew_jac(go: Tensor, J: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(go), *_copies(jacobian(p, t_new, y_pred))

    _, J = while_loop(_again, renew_jac, (jac_stale.clone(), J))
    c_lu = torch.where(jac_stale, math.nan, c_lu)
    jac_current = jac_current | jac_stale
    refactor = torch.isnan(c_lu) | ((c / c_lu - 1.0).abs() > REFACTOR)

    def renew_lu(go: Tensor, lu: Tensor, piv: Tensor, inverse: Tensor, ok: Tensor) -> tuple[Tensor, ...]:
        ok, lu_new, piv_new, inv_new = lu_parts(J, inv_c.to(J.dtype).expand(b), mass, INVERSE_MAX)
        return (torch.zeros_like(go), *_copies(lu_new.mT, piv_new, inv_new if with_inverse else inverse),
                ok.all())

    _, lu, piv, inverse, ok = while_loop(_again, renew_lu, (refactor, lu, piv, inverse, torch.ones_like(refactor)))
    c_lu = torch.where(refactor, torch.where(ok, c, math.nan), c_lu)
    status, y_new, d, iters, finite, eta_new = newton(lu, piv, inverse, ok, eta)
    # njac, nlu, nnonliniter, nf, nsolve
    zero = torch.zeros_like(iters)
    counts = counts + stacked((jac_stale.long(), refactor.long(), iters, iters, iters,
                               *[zero] * (counts.shape[0] - 5)))
    conv = status == 1
    eta = torch.where(conv, eta_new, eta)
    retry = ~conv & ~jac_current
    jac_stale = retry | (conv & (eta_new > 1.0))  # a fresh Jacobian now, or for the next step (slow Newton)
    return conv, retry, y_new, d, iters, finite, J, lu, piv, inverse, c_lu, jac_stale, jac_current, eta, counts
