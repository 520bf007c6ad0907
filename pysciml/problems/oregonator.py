"""The Oregonator: Field and Noyes' model of the Belousov-Zhabotinsky reaction (Hairer & Wanner II, IV.10)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..problem import ODEProblem
from ._reference import Reference, rate_problem, register

__all__ = ["oregonator"]

Tensor = torch.Tensor


def _f(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    s, w, q = p[..., 0], p[..., 1], p[..., 2]
    y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
    return torch.stack((s * (y2 + y1 * (1 - q * y1 - y2)), (y3 - (1 + y1) * y2) / s, w * (y1 - y3)), dim=-1)


def _jac(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    s, w, q = (c.expand_as(u[..., 0]) for c in (p[..., 0], p[..., 1], p[..., 2]))
    y1, y2 = u[..., 0], u[..., 1]
    z = torch.zeros_like(y1)
    rows = (
        torch.stack((s * (1 - 2 * q * y1 - y2), s * (1 - y1), z), dim=-1),
        torch.stack((-y2 / s, -(1 + y1) / s, 1 / s), dim=-1),
        torch.stack((w, z, -w), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def oregonator(
    tspan: tuple[float, float] = (0.0, 360.0),
    *,
    p: Sequence[float] | Tensor = (77.27, 0.161, 8.375e-6),
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem:
    r"""The Oregonator (OREGO), a stiff chemical oscillator with sharp relaxation fronts.

    .. math::
        y_1' &= s \, (y_2 + y_1 (1 - q y_1 - y_2)) \\
        y_2' &= (y_3 - (1 + y_1) y_2) / s \\
        y_3' &= w \, (y_1 - y_3)

    with ``(s, w, q) = (77.27, 0.161, 8.375e-6)``, ``y(0) = (1, 2, 3)``, ``tspan = (0, 360)`` (about one
    period of the limit cycle; ``y2`` swings between ~1 and ~1.8e3). Sources: R. J. Field and R. M. Noyes
    (1974), "Oscillations in chemical systems IV: limit cycle behavior in a model of a real chemical
    reaction"; Hairer & Wanner, *Solving ODEs II*, Sec. IV.10 (OREGO).

    Args:
        tspan: ``(t0, t1)``.
        p: ``(s, w, q)`` as a sequence or a ``(3,)`` tensor; a ``(B, 3)`` tensor gives a batched problem
            (``u0`` of shape ``(B, 3)``, Jacobian ``(B, 3, 3)``). A tensor ``p`` is kept in the autograd graph.
        dtype, device: of ``u0`` and ``p``.

    Returns:
        ``ODEProblem`` with state ``(3,)`` (or ``(B, 3)``), ``p`` as a tensor, the analytic ``jac`` and
        ``tgrad = 0``.

    Reference (``reference("oregonator", 360.0)``, default ``p`` only): SciPy Radau at rtol 1e-13, confirmed by
    Radau at rtol 3e-14 and 1e-12 and BDF / LSODA at rtol 1e-13; details next to the literal below.
    """
    return rate_problem(_f, _jac, (1.0, 2.0, 3.0), tspan, p, "p", dtype, device)


# ----------------------------------------------------------------------------------------------- references
_SOURCE = "Field & Noyes (1974); Hairer & Wanner II, IV.10 (OREGO)"
_P = {"s": 77.27, "w": 0.161, "q": 8.375e-6}

# t = 360: computed 2026-12-01 by scripts/compute_references.py (SciPy, float64): solve_ivp(method="Radau",
# rtol=1e-13, atol=1e-16, analytic Jacobian of this module; 56,883 steps). Checks (max componentwise relative
# difference): Radau rtol 3e-14: 1.3e-14; Radau rtol 1e-12: 3.5e-14; LSODA rtol 1e-13: 6.4e-11; BDF rtol 1e-11:
# 4.4e-9 (BDF fails at rtol 1e-13: "step size less than spacing between numbers"). Certified: 1e-10 relative.
OREGONATOR_360 = Reference(
    name="oregonator", t=360.0, params=dict(_P),
    values=(1.0008148703185227, 1228.1785215498933, 132.05549428465477),
    method="SciPy Radau rtol=1e-13, atol=1e-16, analytic Jacobian, float64; 2026-12-01",
    accuracy=1e-10, source=_SOURCE,
    agreement="Radau rtol 3e-14: 1.3e-14; Radau rtol 1e-12: 3.5e-14; LSODA rtol 1e-13: 6.4e-11; "
    "BDF rtol 1e-11: 4.4e-9 (BDF fails at rtol 1e-13)",
)
register(OREGONATOR_360, defaults=_P)
