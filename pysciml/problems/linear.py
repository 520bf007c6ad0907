"""Problems with closed-form solutions: linear systems (matrix exponential) and a smooth nonlinear one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..problem import ODEProblem

__all__ = ["linear", "nonlinear_exact"]

Tensor = torch.Tensor
Exact = Callable[[float | Tensor], Tensor]

#: Default matrix of :func:`linear`: a decaying rotation (eigenvalues -0.5 +- 2i) feeding a fast mode (-20).
DEFAULT_A = ((-0.5, 2.0, 0.0), (-2.0, -0.5, 0.0), (0.0, 1.0, -20.0))
DEFAULT_U0 = (1.0, 0.0, 0.5)


def _as_time(t: float | Tensor, dtype: torch.dtype, device: str | torch.device) -> Tensor:
    return t.to(dtype=dtype, device=device) if isinstance(t, Tensor) else torch.tensor(float(t), dtype=dtype,
                                                                                      device=device)


def _lin_f(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    return (p @ u.unsqueeze(-1)).squeeze(-1)


def _lin_jac(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    n = u.shape[-1]
    return p.expand(*u.shape[:-1], n, n)


def linear(
    A: Sequence[Sequence[float]] | Tensor | None = None,
    u0: Sequence[float] | Tensor | None = None,
    tspan: tuple[float, float] = (0.0, 1.0),
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> tuple[ODEProblem, Exact]:
    r"""The linear system ``u' = A u``, ``u(t0) = u0``, with exact solution ``u(t) = exp((t - t0) A) u0``.

    Args:
        A: ``(n, n)`` matrix; default :data:`DEFAULT_A` (eigenvalues ``-0.5 +- 2i`` and ``-20``, non-normal).
        u0: ``(n,)`` initial value; default :data:`DEFAULT_U0`.
        tspan: ``(t0, t1)``.
        dtype, device: of ``u0`` and ``p = A``.

    Returns:
        ``(problem, exact)``: an ``ODEProblem`` with state ``(n,)``, ``p = A`` and ``jac = A``; and
        ``exact(t)`` for a float or a tensor of times (shape ``(*t.shape, n)``), by ``torch.linalg.matrix_exp``.
    """
    At = A if isinstance(A, Tensor) else torch.tensor(DEFAULT_A if A is None else A, dtype=dtype)
    At = At.to(dtype=dtype, device=device)
    u0t = u0 if isinstance(u0, Tensor) else torch.tensor(DEFAULT_U0 if u0 is None else u0, dtype=dtype)
    u0t = u0t.to(dtype=dtype, device=device)
    n = u0t.shape[-1]
    if At.shape != (n, n) or u0t.ndim != 1:
        raise ValueError(f"A must be (n, n) and u0 (n,); got {tuple(At.shape)} and {tuple(u0t.shape)}")
    prob = ODEProblem(_lin_f, u0t, tspan, At, jac=_lin_jac)
    t0 = prob.tspan[0]

    def exact(t: float | Tensor) -> Tensor:
        tau = _as_time(t, dtype, device) - t0
        E = torch.linalg.matrix_exp(tau[..., None, None] * At)
        return (E @ u0t).to(dtype)

    return prob, exact


def _omega(t: Tensor) -> tuple[Tensor, Tensor]:
    """Frequency ``w(t) = 2 + cos t`` and its derivative."""
    return 2.0 + torch.cos(t), -torch.sin(t)


def _nl_f(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    lam = p[..., 0]
    w, _ = _omega(t)
    x, y = u[..., 0], u[..., 1]
    g = lam * (1 - x * x - y * y)
    return torch.stack((g * x - w * y, w * x + g * y), dim=-1)


def _nl_jac(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    lam = p[..., 0]
    w, _ = _omega(t)
    x, y = u[..., 0], u[..., 1]
    g = lam * (1 - x * x - y * y)
    rows = (
        torch.stack((g - 2 * lam * x * x, -2 * lam * x * y - w), dim=-1),
        torch.stack((w - 2 * lam * x * y, g - 2 * lam * y * y), dim=-1),
    )
    return torch.stack(rows, dim=-2)


def _nl_tgrad(t: Tensor, u: Tensor, p: Tensor) -> Tensor:
    _, dw = _omega(t)
    return torch.stack((-dw * u[..., 1], dw * u[..., 0]), dim=-1)


def nonlinear_exact(
    tspan: tuple[float, float] = (0.0, 2.0),
    *,
    lam: float = 1.0,
    r0: float = 0.5,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> tuple[ODEProblem, Exact]:
    r"""A smooth nonlinear, non-autonomous, coupled 2-D system with a closed-form solution (for order tests).

    A Stuart-Landau oscillator with time-dependent frequency ``w(t) = 2 + cos t``:

    .. math::
        x' = \lambda (1 - x^2 - y^2) x - w(t) y, \qquad y' = w(t) x + \lambda (1 - x^2 - y^2) y,

    ``(x, y)(t0) = (r0, 0)``. In polar form ``r' = lambda r (1 - r^2)``, ``theta' = w(t)``, so

    .. math::
        r(t) = r_0 / \sqrt{r_0^2 + (1 - r_0^2) e^{-2 \lambda (t - t_0)}}, \qquad
        \theta(t) = 2 (t - t_0) + \sin t - \sin t_0,

    and ``(x, y) = r (cos theta, sin theta)``. All derivatives are bounded; ``lam`` sets the (mild) stiffness.

    Args:
        tspan: ``(t0, t1)``, default ``(0, 2)``.
        lam: relaxation rate ``lambda > 0`` towards the unit circle.
        r0: initial radius (``0 < r0``).
        dtype, device: of ``u0`` and ``p``.

    Returns:
        ``(problem, exact)``: an ``ODEProblem`` with state ``(2,)``, ``p = tensor([lam])``, analytic ``jac``
        and ``tgrad``; and ``exact(t)`` for a float or a tensor of times (shape ``(*t.shape, 2)``).
    """
    p = torch.tensor([float(lam)], dtype=dtype, device=device)
    u0 = torch.tensor([float(r0), 0.0], dtype=dtype, device=device)
    prob = ODEProblem(_nl_f, u0, tspan, p, jac=_nl_jac, tgrad=_nl_tgrad)
    t0 = prob.tspan[0]

    def exact(t: float | Tensor) -> Tensor:
        tt = _as_time(t, torch.float64, device)
        tau = tt - t0
        r = r0 / torch.sqrt(r0 * r0 + (1 - r0 * r0) * torch.exp(-2 * lam * tau))
        th = 2 * tau + torch.sin(tt) - torch.sin(torch.tensor(t0, dtype=torch.float64, device=device))
        return torch.stack((r * torch.cos(th), r * torch.sin(th)), dim=-1).to(dtype)

    return prob, exact
