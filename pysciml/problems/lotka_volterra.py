"""Lotka-Volterra predator-prey model (the SciML tutorial problem)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..problem import ODEProblem
from ._reference import Reference, autonomous, register

__all__ = ["lotka_volterra"]

Tensor = torch.Tensor


def _f(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    a, b, c, d = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    x, y = u[..., 0], u[..., 1]
    return torch.stack((a * x - b * x * y, -c * y + d * x * y), dim=-1)


def _jac(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    a, b, c, d = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    x, y = u[..., 0], u[..., 1]
    rows = (torch.stack((a - b * y, -b * x), dim=-1), torch.stack((d * y, -c + d * x), dim=-1))
    return torch.stack(rows, dim=-2)


def lotka_volterra(
    tspan: tuple[float, float] = (0.0, 10.0),
    p: Sequence[float] | Tensor = (1.5, 1.0, 3.0, 1.0),
    *,
    u0: Sequence[float] | Tensor = (1.0, 1.0),
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem:
    r"""Lotka-Volterra: ``x' = a x - b x y``, ``y' = -c y + d x y``, the classic SciML example (non-stiff).

    Defaults ``p = (a, b, c, d) = (1.5, 1, 3, 1)``, ``u0 = (1, 1)``, ``tspan = (0, 10)`` as in the
    DifferentialEquations.jl / SciMLSensitivity tutorials. ``H = d x - c log x + b y - a log y`` is conserved.

    Args:
        tspan: ``(t0, t1)``.
        p: ``(a, b, c, d)`` as a sequence or a ``(4,)`` tensor (kept in the autograd graph).
        u0: initial ``(x, y)``.
        dtype, device: of ``u0`` and ``p``.

    Returns:
        ``ODEProblem`` with state ``(2,)``, ``p`` a ``(4,)`` tensor and the analytic ``jac``.

    Reference (``reference("lotka_volterra", 10.0)``, default ``p`` and ``u0``): SciPy Radau at rtol 1e-13,
    confirmed by DOP853 (1.0e-13) and LSODA (1.9e-12) at rtol 1e-13; relative accuracy 1e-11.
    """
    pt = p.to(dtype=dtype, device=device) if isinstance(p, Tensor) else torch.tensor(p, dtype=dtype, device=device)
    u0t = u0.to(dtype=dtype, device=device) if isinstance(u0, Tensor) else torch.tensor(u0, dtype=dtype,
                                                                                       device=device)
    return ODEProblem(_f, u0t, tspan, pt, jac=_jac, tgrad=autonomous)


# ----------------------------------------------------------------------------------------------- reference
# Computed 2026-11-22 by scripts/compute_references.py (SciPy 1.17.1, float64): solve_ivp(method="Radau",
# rtol=1e-13, atol=1e-16, analytic Jacobian). Checks (max componentwise
# relative difference): Radau rtol 3e-14: 5.6e-15; DOP853 rtol 1e-13: 1.0e-13; LSODA rtol 1e-13: 1.9e-12
_P = {"a": 1.5, "b": 1.0, "c": 3.0, "d": 1.0}
register(
    Reference(
        name="lotka_volterra", t=10.0, params=dict(_P), values=(1.0263447675750874, 0.9096910781360436),
        method="SciPy Radau rtol=1e-13, atol=1e-16, analytic Jacobian, float64; 2026-11-22",
        accuracy=1e-11, source="Lotka (1925), Volterra (1926); SciML tutorials (p = (1.5, 1, 3, 1), u0 = (1, 1))",
        agreement="Radau rtol 3e-14: 5.6e-15; DOP853 rtol 1e-13: 1.0e-13; LSODA rtol 1e-13: 1.9e-12",
    ),
    defaults=_P,
)
