"""Lotka-Volterra predator-prey model (the SciML tutorial problem)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..problem import ODEProblem

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

    Reference (``reference("lotka_volterra", 10.0)``, default ``p`` and ``u0``): SciPy DOP853 at rtol 1e-13
    checked against Radau at rtol 1e-13/1e-14; estimated relative accuracy 1e-11.
    """
    pt = p.to(dtype=dtype, device=device) if isinstance(p, Tensor) else torch.tensor(p, dtype=dtype, device=device)
    u0t = u0.to(dtype=dtype, device=device) if isinstance(u0, Tensor) else torch.tensor(u0, dtype=dtype,
                                                                                       device=device)
    return ODEProblem(_f, u0t, tspan, pt, jac=_jac)
