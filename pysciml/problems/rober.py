"""ROBER: Robertson's chemical kinetics problem (Robertson 1966; Hairer & Wanner II, Sec. IV.10)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..problem import ODEProblem
from ._reference import Reference, rate_problem, register

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

    References (``reference("rober", t)``, default ``k`` only): ``t = 1e5``, SciPy Radau at rtol 1e-13
    (relative accuracy 1e-11, confirmed by BDF and LSODA at rtol 1e-13); ``t = 1e11``, the published Bari
    test-set value, confirmed by float64 SciPy solves to 1e-7 relative on every component (``y2 ~ 8e-14``
    included; float64 round-off limits any float64 solve there). Details next to the literals below.
    """
    return rate_problem(_f, _jac, (1.0, 0.0, 0.0), tspan, k, "k", dtype, device)


# ----------------------------------------------------------------------------------------------- references
_SOURCE = "Robertson (1966); Hairer & Wanner II, IV.10; Mazzia & Magherini, Test Set for IVP Solvers (Bari)"
_K = {"k1": 0.04, "k2": 3e7, "k3": 1e4}

# t = 1e5: computed 2026-11-22 by scripts/compute_references.py (SciPy 1.17.1, float64): solve_ivp(
# method="Radau", rtol=1e-13, atol=rtol*(1e-3, 1e-8, 1e-3), analytic Jacobian of this module).
# Checks (max componentwise relative difference):
#   Radau rtol 3e-14: 1.3e-14; Radau rtol 1e-12: 9.8e-15; BDF rtol 1e-13: 7.6e-12; LSODA rtol 1e-13: 8.7e-12
ROBER_1E5 = Reference(
    name="rober", t=1e5, params=dict(_K),
    values=(0.017865921142099915, 7.274751468436517e-08, 0.9821340061103838),
    method="SciPy Radau rtol=1e-13, atol=rtol*(1e-3, 1e-8, 1e-3), analytic Jacobian, float64; 2026-11-22",
    accuracy=1e-11, source=_SOURCE,
    agreement="Radau rtol 3e-14: 1.3e-14; Radau rtol 1e-12: 9.8e-15; "
    "BDF rtol 1e-13: 7.6e-12; LSODA rtol 1e-13: 8.7e-12",
)
register(ROBER_1E5, defaults=_K)

# t = 1e11: transcribed from the Bari IVP test set (problem ROBER, subroutine `robersol`; computed there in
# extended precision). Checked 2026-11-22 by scripts/compute_references.py. Float64 solves cannot certify y1, y2
# much beyond 1e-8 relative here: on the late slow manifold f1 = -k1 y1 + k3 y2 y3 is a difference of two
# ~8e-10 terms, so a step of size h ~ 1e10 adds a round-off of up to ~eps k1 h ~ 1e-7 relative to y1 (and y2,
# which follows y1 quasi-statically). SciPy solves (atol = rtol * (1e-2, 1e-8, 1e-2), analytic Jacobian),
# max relative difference to the published value (in y1 and y2; y3 within 1.5e-14):
#   Radau rtol 1e-13: 8.6e-9; Radau rtol 1e-12: 6.3e-9; LSODA rtol 1e-13: 4.0e-8; BDF rtol 1e-13: 1.7e-7.
# Certified here: 1e-7 relative on every component (y2 ~ 8.3e-14 included); Radau alone supports ~1e-8.
ROBER_1E11 = Reference(
    name="rober", t=1e11, params=dict(_K),
    values=(0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050),
    method="published (Bari IVP test set, extended precision); checked against SciPy Radau/LSODA/BDF float64 "
    "solves at rtol 1e-12/1e-13 on 2026-11-22 (float64 round-off limits those to ~1e-8)",
    accuracy=1e-7, source=_SOURCE,
    agreement="Radau rtol 1e-13: 8.6e-9; Radau rtol 1e-12: 6.3e-9; LSODA rtol 1e-13: 4.0e-8; BDF rtol 1e-13: "
    "1.7e-7 (max relative difference, in y1 and y2; y3 within 1.5e-14)",
)
register(ROBER_1E11, defaults=_K)
