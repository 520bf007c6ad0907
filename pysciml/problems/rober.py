"""ROBER: Robertson's chemical kinetics problem (Robertson 1966; Hairer & Wanner II, Sec. IV.10)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..problem import ODEProblem

__all__ = ["rober"]

Tensor = torch.Tensor


def _f(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    k1, k2, k3 = p[..., 0], p[..., 1], p[..., 2]
    y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
    r1, r2, r3 = k1 * y1, k2 * y2 * y2, k3 * y2 * y3
    return torch.stack((-r1 + r3, r1 - r2 - r3, r2), dim=-1)


def _jac(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    k1, k2, k3 = p[..., 0], p[..., 1], p[..., 2]
    y2, y3 = u[..., 1], u[..., 2]
    z = torch.zeros_like(y2)
    k1 = k1.expand_as(y2)
    rows = (
        torch.stack((-k1, k3 * y3, k3 * y2), dim=-1),
        torch.stack((k1, -2 * k2 * y2 - k3 * y3, -k3 * y2), dim=-1),
        torch.stack((z, 2 * k2 * y2, z), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def rober(
    tspan: tuple[float, float] = (0.0, 1e5),
    *,
    k: Sequence[float] | Tensor = (0.04, 3e7, 1e4),
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem:
    r"""Robertson's autocatalytic reaction, the classic stiff test problem.

    .. math::
        y_1' &= -k_1 y_1 + k_3 y_2 y_3 \\
        y_2' &= k_1 y_1 - k_2 y_2^2 - k_3 y_2 y_3 \\
        y_3' &= k_2 y_2^2

    with ``k = (k1, k2, k3) = (0.04, 3e7, 1e4)``, ``y(0) = (1, 0, 0)``. ``y1 + y2 + y3 = 1`` is conserved.
    Sources: H. H. Robertson (1966), "The solution of a set of reaction rate equations"; Hairer & Wanner,
    *Solving ODEs II*, Sec. IV.10 (ROBER); Mazzia & Magherini, *Test Set for IVP Solvers* (Bari).

    Args:
        tspan: ``(t0, t1)``; the classic spans are ``(0, 40)``, ``(0, 1e5)`` and ``(0, 1e11)``.
        k: rate constants ``(k1, k2, k3)`` as a sequence or a ``(3,)`` tensor; a ``(B, 3)`` tensor gives a
            batched problem (``u0`` of shape ``(B, 3)``, ``p = k`` of shape ``(B, 3)``, Jacobian
            ``(B, 3, 3)``) for ensembles of perturbed rates. A tensor ``k`` is kept in the autograd graph.
        dtype, device: of ``u0`` and ``p``.

    Returns:
        ``ODEProblem`` with state ``(3,)`` (or ``(B, 3)``), ``p = k`` as a tensor, and the analytic ``jac``.

    References (``reference("rober", t)``, default ``k`` only): ``t = 1e5`` and ``t = 1e11``, computed with
    SciPy Radau at rtol 1e-13/1e-14; estimated relative accuracy 1e-11 (t = 1e5) and 1e-10 (t = 1e11, all
    components, ``y2 ~ 8e-14`` included); the ``t = 1e11`` value agrees with the Bari test-set value.
    Details next to the literals in this module.
    """
    if isinstance(k, Tensor):
        kt = k.to(dtype=dtype, device=device)
    else:
        kt = torch.tensor([float(v) for v in k], dtype=dtype, device=device)
    if kt.shape[-1:] != (3,) or kt.ndim > 2:
        raise ValueError(f"k must have shape (3,) or (B, 3), got {tuple(kt.shape)}")
    u0 = torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=device)
    batched = kt.ndim == 2
    if batched:
        u0 = u0.repeat(kt.shape[0], 1)
    return ODEProblem(_f, u0, tspan, kt, jac=_jac, batched=batched)


