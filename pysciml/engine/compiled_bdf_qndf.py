"""The whole adaptive QNDF/QBDF loop as one compiled program (``solve(prob, QNDF(), compile=True)``).

:func:`~.bdf_loop.integrate_bdf` with :class:`~.bdf.BDFMethod` (the quasi-constant step-size form), traced into one
``torch.while_loop`` per signature, as FBDF's program (:mod:`.compiled_loop_bdf`, whose dispatch, compile-failure
fallback and result assembly it uses): each iteration is one loop iteration of the eager solve (or its second try
with a fresh Jacobian, :func:`.compiled_bdf_rules.hold`). What differs from FBDF is the method's state, the array
``D`` of backward differences ``(MAX_ORDER + 3, B, n)``, and what the eager method does with it:

* the prediction ``D[0] + ... + D[k]`` and ``psi`` (the weights ``gamma_j / alpha_k`` of order ``k`` from a table
  with zeros beyond ``k``);
* the error estimate ``error_const_k d`` and, after ``k + 1`` steps of one size, the estimates of orders ``k - 1``
  and ``k + 1`` from ``D[k]`` and ``D[k + 2]`` (:meth:`~.bdf.BDFMethod.choose_order`);
* the update of the differences with an accepted correction (:meth:`~.bdf.BDFMethod.accept`, the reversed
  cumulative sum written as a masked sum over the fixed rows);
* the re-expression of the differences on a new spacing at every step-size change (:func:`rescale`: the
  :func:`~.bdf.rescale_matrix` product ``(R U)^T`` built on a fixed ``(K + 1) x (K + 1)`` grid, ``K = max_order``,
  with the rows and columns beyond the current order masked to the identity);
* the save points from the step's interpolating polynomial (:func:`~.bdf.interpolation_matrix` of the step's
  order, from a zero-padded table).

Newton, the Jacobian and the factorization are FBDF's (:func:`~.compiled_bdf_step.attempt`), the loop rules
:mod:`.compiled_bdf_rules`. Values are the eager solve's to round-off, counters equal where no decision sits at its
threshold (``tests/test_compiled_loop_qndf.py``): the eager rescaling matrix is a NumPy (BLAS) product whose last
bits differ from the program's torch product in about half the cases; the prediction, ``psi`` and the update of
the differences give the eager bits (their masked rows add exact zeros), and with NumPy's matrix in place of
:func:`rescale` the program run uncompiled gave the eager values bit for bit on ROBER, the Brusselator with saves
and tstops, and a Van der Pol batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch._higher_order_ops.while_loop import while_loop

from . import compiled_bdf_record as record
from . import compiled_bdf_rules as rules
from . import compiled_bdf_step as step
from .bdf import MAX_FACTOR, MAX_ORDER, BDFMethod, _difference_map, interpolation_matrix
from .compiled_parts import _user_f, jacobian_fn
from .interpolation import evaluate
from .loop_records import LoopOptions

__all__ = ["OUT", "loop_fn", "rescale", "start"]

Tensor = torch.Tensor
T64 = torch.float64
ROWS = MAX_ORDER + 3
"""The rows of ``D`` (:class:`~.bdf.BDFMethod`: orders up to 5 and the two differences above for the order
change)."""
OUT = 14
"""The index of the save array in the program's carry."""


def rescale(D: Tensor, order: Tensor, factor: Tensor, U: Tensor) -> Tensor:
    """:meth:`~.bdf.BDFMethod.rescale` by ``factor`` (0-d float64) at ``order`` (0-d long): ``D[:order + 1]``
    re-expressed on the spacing ``factor h``, the other rows as they are. ``U``: ``_difference_map(K, 1)``, ``(K +
    1, K + 1)`` float64; ``R`` is built as the eager code builds it (a cumulative product down each column), its
    columns beyond ``order`` set to 0 so ``R U`` sums the eager terms."""
    K1 = U.shape[0]
    i = torch.arange(K1, dtype=T64, device=D.device)[:, None]
    j = torch.arange(K1, dtype=T64, device=D.device)[None, :]
    terms = torch.where(i == 0, 1.0, (i - 1 - factor * j) / torch.clamp(i, min=1.0))
    used = torch.arange(K1, device=D.device) <= order
    R = torch.where(used[None, :], torch.cumprod(terms, dim=0), 0.0)
    both = used[:, None] & used[None, :]
    A = torch.where(both, (R @ U).mT, torch.eye(K1, dtype=T64, device=D.device))
    head = torch.einsum("ij,jbn->ibn", A.to(D.dtype), D[:K1])
    return torch.cat((head, D[K1:]))


def _predict(D: Tensor, order: Tensor, weights: Tensor, K: int) -> tuple[Tensor, Tensor]:
    """:meth:`~.bdf.BDFMethod.predict`: ``(D[0] + ... + D[k], psi)`` (the rows beyond ``k`` summed as zeros: torch's
    sum then groups the terms as the eager ``D[:k + 1].sum(0)`` does)."""
    used = (torch.arange(K + 1, device=D.device) <= order)[:, None, None]
    return torch.where(used, D[:K + 1], 0.0).sum(dim=0), torch.tensordot(step.pick(weights, order), D[1:K + 1], dims=1)


def _accept(D: Tensor, order: Tensor, d: Tensor) -> Tensor:
    """:meth:`~.bdf.BDFMethod.accept`: ``D[i] = D[i] + ... + D[k] + d`` for ``i <= k`` (summed from ``d`` up, as the
    eager reversed cumulative sum, in float64 for a float32 state as torch's CPU ``cumsum`` accumulates), ``D[k + 1] =
    d``, ``D[k + 2] = d - D[k + 1]``, the rows above as they are."""
    acc = d.to(T64) if d.dtype == torch.float32 else d
    rows = []
    for i in range(D.shape[0] - 1, -1, -1):
        acc = torch.where(order >= i, acc + D[i], acc)
        rows.append(torch.where(order >= i, acc.to(d.dtype), torch.where(
            order + 1 == i, d, torch.where(order + 2 == i, d - D[max(i - 1, 0)], D[i]))))
    # torch.stack, not compiled_bdf_step.stacked: built as a where, the rows reached the rescaling product another
    # way, whose last bits moved a Newton decision on bruss64 at rtol 1e-5 (2 iterations at the 11th step where
    # the eager solve and this stack take 1; the solve then made 400 f evaluations to the eager 408)
    return torch.stack(rows[::-1])


def _choose_order(D: Tensor, order: Tensor, err: Tensor, scale: Tensor, ec: Tensor, max_order: int
                  ) -> tuple[Tensor, Tensor]:
    """:meth:`~.bdf.BDFMethod.choose_order`: ``(order, growth)`` of the order among ``k - 1, k, k + 1`` allowing the
    largest step (the first of equals)."""
    k = order
    e_m = torch.where(k > 1, step.rms_max(step.pick(ec, k - 1) * step.pick(D, k), scale), torch.inf)
    e_p = torch.where(k < max_order, step.rms_max(step.pick(ec, k + 1) * step.pick(D, k + 2), scale), torch.inf)
    f = [torch.where(e > 0, e.pow(-1.0 / (k + i).to(T64)), torch.inf) for i, e in enumerate((e_m, err, e_p))]
    to_m = (f[0] >= f[1]) & (f[0] >= f[2])
    to_k = ~to_m & (f[1] >= f[2])
    best = torch.where(to_m, k - 1, torch.where(to_k, k, k + 1))
    return best, torch.where(to_m, f[0], torch.where(to_k, f[1], f[2]))


def loop_fn(method: BDFMethod, direction: float, interior: bool, rec: record.Plan | None) -> Any:
    """The loop program's function ``(p, C, X) -> X`` (``C``, ``X``: :func:`start`)."""
    F, jacobian = _user_f(method.rhs), jacobian_fn(method.rhs)
    K, max_iters, d = method.max_order, method.max_iters, direction

    def qndf_loop(p: Any, C: tuple[Any, ...], X: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        atol, rtol, tol, stops, n_stops, keys, saveat, maxiters, dtmin, dtmax, mass = C[:11]
        alphas, weights, ec, interp, U = C[11:]
        more = rules.running(maxiters, rec, OUT)

        def body(nloop: Tensor, t: Tensor, h: Tensor, si: Tensor, n_equal: Tensor, n_fail: Tensor,
                 nonfinite: Tensor, running: Tensor, status: Tensor, fail_t: Tensor, fail_h: Tensor, order: Tensor,
                 D: Tensor, u: Tensor, out: Tensor, sidx: Tensor, *S: Tensor) -> tuple[Tensor, ...]:
            bsz = u.shape[0]
            R, S = (S[:rec.size], S[rec.size:]) if rec is not None else ((), S)
            h_before, before = h, (nloop, t, h, si, n_equal, n_fail, nonfinite, running, status, fail_t, fail_h,
                                   order, D)
            at_stop, h, n_equal, t_new = rules.onto_stop(stops, si, t, h, n_equal, d)
            D = torch.where(h != h_before, rescale(D, order, h / h_before, U), D)
            y_pred, psi = _predict(D, order, weights, K)
            c = h / step.pick(alphas, order)
            conv, retry, y_new, dd, iters, finite, *S = step.attempt(
                F, jacobian, p, t_new.to(u.dtype).expand(bsz), y_pred, psi, c, mass, atol, rtol, tol, max_iters,
                tuple(S))
            nonfinite = nonfinite | ~finite
            scale = atol + rtol * y_new.abs()
            err, accept, nonfinite = rules.error_test(step.rms_max(step.pick(ec, order) * dd, scale), conv,
                                                      nonfinite)
            safe = rules.safety(iters, max_iters)
            f_rej, n_fail_r, order_r = rules.on_reject(err, conv, order, n_fail, safe)
            # ---- accepted: the differences, the stop index, the save points passed
            D_a = _accept(D, order, dd)
            si_a = si + at_stop.long()
            last = at_stop & (si_a == n_stops)
            inside, coeffs = None, None
            if interior or (rec is not None and rec.dense):
                coeffs = torch.einsum("pj,jbn->pbn", step.pick(interp, order), D_a[:K + 1])
            if interior:
                assert coeffs is not None
                inside = evaluate(coeffs, rules.theta(saveat, t, t_new, bsz).to(u.dtype))
            out, sidx = rules.save(out, sidx, keys, saveat, t, t_new, accept, y_new, inside, d)
            if rec is not None:
                R = record.write(rec, R, accept, t, t_new, order, y_new, coeffs)
            # ---- BDFMethod.next_factor: the order and step after k + 1 steps of one size
            n_equal_a = n_equal + 1
            early = n_equal_a < order + 1
            best, growth = _choose_order(D_a, order, err, scale, ec, K)
            f_acc = torch.where(early, 1.0, torch.clamp(safe * growth, max=MAX_FACTOR))
            order_a = torch.where(early | last, order, best)
            factor, moved, h_next, status, fail_t, fail_h, running, counts = rules.next_or_end(
                accept, conv, last, at_stop, f_acc, f_rej, t, t_new, h, h_before, nonfinite, dtmin, dtmax, status,
                fail_t, fail_h, running, S[-1], bsz)
            order_next = torch.where(accept, order_a, order_r)
            D_next = torch.where(accept, D_a, D)
            D_next = torch.where(moved, rescale(D_next, order_next, factor, U), D_next)
            J, lu, piv, inverse, c_lu, jac_stale, jac_current, eta = S[:8]
            head = rules.hold(retry, before, (
                nloop + 1, torch.where(accept, t_new, t), h_next, torch.where(accept, si_a, si),
                torch.where(accept & ~moved & early, n_equal_a, 0), torch.where(accept, 0, n_fail_r),
                nonfinite & ~accept, running, status, fail_t, fail_h, order_next, D_next))
            # (on a retry accept is False: the state and the save points stay as they were)
            return (*head, torch.where(accept, y_new, u), out, sidx, *R, J, lu, piv, inverse, c_lu, jac_stale,
                    jac_current & ~accept, eta, torch.where(retry, S[-1], counts))

        return step.packed_while_loop(more, body, tuple(X), while_loop)  # its 12 scalars as one carry

    return qndf_loop


def start(method: BDFMethod, u0: Tensor, opts: LoopOptions, n_counters: int, rec: record.Plan | None
          ) -> tuple[Any, ...]:
    """The eager solve's start (:func:`.compiled_bdf_rules.start`) and the program's inputs: ``(p, C, X, direction,
    save_t)``."""
    s = rules.start(method, u0, opts, n_counters)
    K, cf, dtype, device = method.max_order, method.coef, u0.dtype, u0.device
    alphas = torch.tensor([cf.alpha[min(max(q, 1), K)] for q in range(K + 1)], dtype=T64, device=device)
    weights = torch.tensor([[cf.gamma[j] / cf.alpha[q] if 1 <= j <= q else 0.0 for j in range(1, K + 1)]
                            for q in range(K + 1)], dtype=dtype, device=device)
    ec = torch.tensor(cf.error_const, dtype=T64, device=device)
    interp = np.zeros((K + 1, K + 1, K + 1))
    for q in range(1, K + 1):
        interp[q, : q + 1, : q + 1] = interpolation_matrix(q)
    C = (*s.shared, alphas, weights, ec, torch.tensor(interp, dtype=dtype, device=device),
         torch.tensor(_difference_map(K, 1.0), dtype=T64, device=device))
    assert method.D is not None
    X = (*rules.loop_head(opts.t0, s.h, method.order, device), method.D.detach().clone(), s.u.detach().clone(),
         s.out, torch.tensor(s.first, device=device),
         *(record.carries(rec, *u0.shape, dtype, device) if rec is not None else ()), *s.newton)
    return method.rhs.p, C, X, s.direction, s.save_t
