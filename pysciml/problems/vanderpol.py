"""Van der Pol oscillator, stiff for large ``mu`` (unscaled form, SciML's ``prob_ode_vanderpol_stiff``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..problem import ODEProblem
from ._reference import Reference, autonomous, register

__all__ = ["van_der_pol"]

Tensor = torch.Tensor


def _f(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    mu = p[..., 0]
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, mu * ((1 - x * x) * y) - x), dim=-1)


def _jac(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    mu = p[..., 0]
    x, y = u[..., 0], u[..., 1]
    z = torch.zeros_like(x)
    rows = (
        torch.stack((z, torch.ones_like(x)), dim=-1),
        torch.stack((-2 * mu * x * y - 1, (mu * (1 - x * x)).expand_as(x)), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def van_der_pol(
    mu: float | Tensor = 1e3,
    tspan: tuple[float, float] | None = None,
    *,
    u0: Sequence[float] | Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem:
    r"""The Van der Pol oscillator ``x'' - mu (1 - x^2) x' + x = 0`` in its unscaled first-order form

    .. math::
        u_1' = u_2, \qquad u_2' = \mu (1 - u_1^2) u_2 - u_1,

    with ``u(0) = (sqrt(3), 0)`` and ``tspan = (0, 6.3)`` by default. These equations and ``u0`` are those of
    SciML's ODEProblemLibrary (``prob_ode_vanderpol_stiff``, ``mu = 1e6``). Note: SciMLBenchmarks'
    ``StiffODE/VanDerPol`` uses the *scaled* (Lienard) form ``x' = y, y' = mu((1 - x^2) y - x)`` from
    ``(y, x) = (0, 2)``, whose O(1)-period relaxation oscillations are much harder; this is *not* that problem.
    Here the solution starts next to the slow manifold ``u2 ~ u1 / (mu (1 - u1^2))`` and drifts slowly over
    ``(0, 6.3)`` (the relaxation period is about ``1.61 mu``), after an initial layer of width ``~1/mu``.
    Source: B. van der Pol (1926); Hairer & Wanner II, Sec. IV.10 (VDPOL, scaled form).

    Args:
        mu: stiffness parameter (``1e3`` and ``1e6`` have references); a float or a 0-d/``(1,)`` tensor.
        tspan: ``(t0, t1)``, default ``(0, 6.3)``.
        u0: initial state, default ``(sqrt(3), 0)``.
        dtype, device: of ``u0`` and ``p``.

    Returns:
        ``ODEProblem`` with state ``(2,)``, ``p = tensor([mu])`` and the analytic ``jac``.

    References (``reference("van_der_pol", 6.3, mu=...)``): ``mu = 1e3`` and ``mu = 1e6`` at ``t = 6.3``,
    SciPy Radau at rtol 1e-13, confirmed by Radau at rtol 3e-14 and BDF / LSODA at rtol 1e-13 (all within
    1.1e-13); relative accuracy 1e-12 (see the literals below).
    """
    if isinstance(mu, Tensor):
        p = mu.to(dtype=dtype, device=device).reshape(1)
    else:
        p = torch.tensor([float(mu)], dtype=dtype, device=device)
    if u0 is None:
        u0 = (math.sqrt(3.0), 0.0)
    u0t = u0.to(dtype=dtype, device=device) if isinstance(u0, Tensor) else torch.tensor(u0, dtype=dtype,
                                                                                       device=device)
    return ODEProblem(_f, u0t, (0.0, 6.3) if tspan is None else tspan, p, jac=_jac, tgrad=autonomous)


# ----------------------------------------------------------------------------------------------- references
# Computed 2026-11-22 by scripts/compute_references.py (SciPy 1.17.1, float64): solve_ivp(method="Radau",
# rtol=1e-13, atol=rtol*(1e-3, 1e-6) for mu=1e3 and rtol*(1e-3, 1e-9) for mu=1e6, analytic Jacobian).
# Both are well defined: the solution stays on the slow manifold after the initial layer (u2 ~ -8.7e-4 and
# ~ -8.7e-7 at t = 6.3); every check agrees. Checks (max componentwise relative difference):
#   mu = 1e3: Radau rtol 3e-14: 1.4e-15; Radau rtol 1e-12: 7.5e-15; BDF rtol 1e-13: 1.1e-13; LSODA rtol 1e-13: 7.7e-14
#   mu = 1e6: Radau rtol 3e-14: 2.3e-14; Radau rtol 1e-12: 6.2e-14; BDF rtol 1e-13: 6.9e-14; LSODA rtol 1e-13: 9.3e-14
_SOURCE = "van der Pol (1926); Hairer & Wanner II, IV.10; SciML ODEProblemLibrary prob_ode_vanderpol_stiff"
_METHOD = "SciPy Radau rtol=1e-13, analytic Jacobian, float64; 2026-11-22"
register(
    Reference(name="van_der_pol", t=6.3, params={"mu": 1e3}, values=(1.7265779814751063, -0.0008715369811991857),
              method=_METHOD, accuracy=1e-12, source=_SOURCE,
              agreement="Radau rtol 3e-14: 1.4e-15; Radau rtol 1e-12: 7.5e-15; "
              "BDF rtol 1e-13: 1.1e-13; LSODA rtol 1e-13: 7.7e-14"),
    defaults={"mu": 1e3},
)
register(
    Reference(name="van_der_pol", t=6.3, params={"mu": 1e6}, values=(1.7320453515921288, -8.660308597994238e-07),
              method=_METHOD, accuracy=1e-12, source=_SOURCE,
              agreement="Radau rtol 3e-14: 2.3e-14; Radau rtol 1e-12: 6.2e-14; "
              "BDF rtol 1e-13: 6.9e-14; LSODA rtol 1e-13: 9.3e-14"),
)
