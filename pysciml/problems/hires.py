"""HIRES: "High Irradiance RESponse" of photomorphogenesis (Schafer 1975; Hairer & Wanner II, IV.10)."""

from __future__ import annotations

import torch

from ..problem import ODEProblem
from ._reference import Reference, autonomous, register

__all__ = ["hires"]

Tensor = torch.Tensor

# Constant part of the Jacobian (row = equation); the y6*y8 terms are added in _jac.
_J0 = (
    (-1.71, 0.43, 8.32, 0.0, 0.0, 0.0, 0.0, 0.0),
    (1.71, -8.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (0.0, 0.0, -10.03, 0.43, 0.035, 0.0, 0.0, 0.0),
    (0.0, 8.32, 1.71, -1.12, 0.0, 0.0, 0.0, 0.0),
    (0.0, 0.0, 0.0, 0.0, -1.745, 0.43, 0.43, 0.0),
    (0.0, 0.0, 0.0, 0.69, 1.71, -0.43, 0.69, 0.0),
    (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.81, 0.0),
    (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.81, 0.0),
)


def _f(t: Tensor, u: Tensor) -> Tensor:
    y1, y2, y3, y4, y5, y6, y7, y8 = u.unbind(-1)
    r = 280.0 * y6 * y8
    return torch.stack(
        (
            -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
            1.71 * y1 - 8.75 * y2,
            -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
            8.32 * y2 + 1.71 * y3 - 1.12 * y4,
            -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
            -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
            r - 1.81 * y7,
            -r + 1.81 * y7,
        ),
        dim=-1,
    )


def _jac(t: Tensor, u: Tensor) -> Tensor:
    j0 = torch.tensor(_J0, dtype=u.dtype, device=u.device)
    # d(280 y6 y8)/dy6 = 280 y8 (column 6), d/dy8 = 280 y6 (column 8), entering rows 6, 7, 8 as -, +, -.
    e6 = torch.zeros(8, 8, dtype=u.dtype, device=u.device)
    e8 = torch.zeros(8, 8, dtype=u.dtype, device=u.device)
    e6[5:, 5] = torch.tensor([-280.0, 280.0, -280.0], dtype=u.dtype, device=u.device)
    e8[5:, 7] = e6[5:, 5]
    return j0 + u[..., 7, None, None] * e6 + u[..., 5, None, None] * e8


def hires(
    tspan: tuple[float, float] = (0.0, 321.8122),
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem:
    r"""HIRES, 8 chemical reactions of photomorphogenesis (a mildly stiff classic).

    .. math::
        y_1' &= -1.71 y_1 + 0.43 y_2 + 8.32 y_3 + 0.0007 \\
        y_2' &= 1.71 y_1 - 8.75 y_2 \\
        y_3' &= -10.03 y_3 + 0.43 y_4 + 0.035 y_5 \\
        y_4' &= 8.32 y_2 + 1.71 y_3 - 1.12 y_4 \\
        y_5' &= -1.745 y_5 + 0.43 y_6 + 0.43 y_7 \\
        y_6' &= -280 y_6 y_8 + 0.69 y_4 + 1.71 y_5 - 0.43 y_6 + 0.69 y_7 \\
        y_7' &= 280 y_6 y_8 - 1.81 y_7 \\
        y_8' &= -280 y_6 y_8 + 1.81 y_7

    with ``y(0) = (1, 0, 0, 0, 0, 0, 0, 0.0057)`` on ``(0, 321.8122)``. Sources: R. Schafer (1975);
    Hairer & Wanner, *Solving ODEs II*, Sec. IV.10; Mazzia & Magherini, *Test Set for IVP Solvers* (Bari).

    Args:
        tspan: ``(t0, t1)``, default ``(0, 321.8122)``.
        dtype, device: of ``u0``.

    Returns:
        ``ODEProblem`` with state ``(8,)``, ``p = None``, ``f(t, u)`` and the analytic ``jac(t, u)``.

    Reference (``reference("hires", 321.8122)``): the published Bari test-set value (RADAU5 in ~19-digit
    arithmetic, rtol = atol = 1.1e-18), confirmed by SciPy Radau and DOP853 (rtol 1e-13) to 3e-13 and LSODA
    to 3e-12 relative; certified accuracy 1e-11.
    """
    u0 = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057], dtype=dtype, device=device)
    return ODEProblem(_f, u0, tspan, jac=_jac, tgrad=autonomous)


# ----------------------------------------------------------------------------------------------- reference
# Transcribed from the Bari IVP test set (F. Mazzia, C. Magherini, "Test Set for Initial Value Problem
# Solvers", release 2.4, 2008, problem HIRES, subroutine `hiressol`): "computed using true double precision
# RADAU5 on Cray C90, uround = 1.01d-19, rtol = atol = h0 = 1.1d-18". Checked 2026-11-22 by
# scripts/compute_references.py (float64, atol = 1e-6 rtol, analytic Jacobian), max componentwise relative
# difference: SciPy Radau rtol 1e-13: 3.1e-13; Radau rtol 3e-14: 5.1e-13 (round-off over 17000 steps);
# DOP853 rtol 1e-13: 1.9e-13; LSODA rtol 1e-13: 2.7e-12. Certified here: 1e-11.
HIRES_REF = Reference(
    name="hires",
    t=321.8122,
    values=(
        0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4, 0.1175651343283149e-2,
        0.2386356198831331e-2, 0.6238968252742796e-2, 0.2849998395185769e-2, 0.2850001604814231e-2,
    ),
    method="published (Bari IVP test set: RADAU5, uround 1.01e-19, rtol = atol = 1.1e-18); confirmed with "
    "SciPy Radau rtol 1e-13 (float64, analytic Jacobian) on 2026-11-22",
    accuracy=1e-11,
    source="Schafer (1975); Hairer & Wanner II, IV.10; Mazzia & Magherini, Test Set for IVP Solvers (Bari)",
    agreement="SciPy Radau rtol 1e-13: 3.1e-13; Radau rtol 3e-14: 5.1e-13; DOP853 rtol 1e-13: 1.9e-13; "
    "LSODA rtol 1e-13: 2.7e-12 (max componentwise relative difference)",
)
register(HIRES_REF, defaults={})
