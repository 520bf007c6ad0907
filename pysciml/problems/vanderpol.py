"""Van der Pol oscillator, stiff for large ``mu`` (unscaled form, SciML's ``prob_ode_vanderpol_stiff``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..problem import ODEProblem

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
    Here the solution starts on the slow manifold ``u2 ~ u1 / (mu (1 - u1^2))`` and drifts slowly over
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
    SciPy Radau at rtol 1e-13 checked against Radau at rtol 1e-14 and BDF / LSODA; estimated relative
    accuracy 1e-11 (see the literals below).
    """
    if isinstance(mu, Tensor):
        p = mu.to(dtype=dtype, device=device).reshape(1)
    else:
        p = torch.tensor([float(mu)], dtype=dtype, device=device)
    if u0 is None:
        u0 = (math.sqrt(3.0), 0.0)
    u0t = u0.to(dtype=dtype, device=device) if isinstance(u0, Tensor) else torch.tensor(u0, dtype=dtype,
                                                                                       device=device)
    return ODEProblem(_f, u0t, (0.0, 6.3) if tspan is None else tspan, p, jac=_jac)
