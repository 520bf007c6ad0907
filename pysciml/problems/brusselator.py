"""BRUSS: the 1-D Brusselator with diffusion (Hairer, Norsett & Wanner I, Sec. I.1; Hairer & Wanner II, IV.10)."""

from __future__ import annotations

import math

import torch

from ..problem import ODEProblem, SplitODEProblem

__all__ = ["brusselator_1d"]

Tensor = torch.Tensor


def _diffusion_matrix(N: int, c: float, dtype: torch.dtype, device: str | torch.device) -> Tensor:
    """``c * blockdiag(T, T)`` with ``T = tridiag(1, -2, 1)`` of size N: the Laplacian without boundary terms."""
    T = -2.0 * torch.eye(N, dtype=dtype, device=device)
    T = T + torch.diag(torch.ones(N - 1, dtype=dtype, device=device), 1)
    T = T + torch.diag(torch.ones(N - 1, dtype=dtype, device=device), -1)
    return c * torch.block_diag(T, T)


def brusselator_1d(
    N: int = 32,
    alpha: float = 1 / 50,
    tspan: tuple[float, float] = (0.0, 10.0),
    *,
    split: bool = False,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem | SplitODEProblem:
    r"""The Brusselator reaction with 1-D diffusion, method of lines on ``N`` interior points (BRUSS).

    .. math::
        u_i' &= 1 + u_i^2 v_i - 4 u_i + c\,(u_{i-1} - 2 u_i + u_{i+1}) \\
        v_i' &= 3 u_i - u_i^2 v_i + c\,(v_{i-1} - 2 v_i + v_{i+1}), \qquad c = \alpha (N + 1)^2,

    ``i = 1..N``, ``x_i = i / (N + 1)``, boundary values ``u_0 = u_{N+1} = 1``, ``v_0 = v_{N+1} = 3``, initial
    values ``u_i(0) = 1 + sin(2 pi x_i)``, ``v_i(0) = 3``. Sources: Hairer, Norsett & Wanner, *Solving ODEs I*,
    Sec. I.1 (Brusselator with diffusion); Hairer & Wanner, *Solving ODEs II*, Sec. IV.10 (BRUSS).

    **State ordering**: a flat vector of ``2N`` values, ``[u_1, ..., u_N, v_1, ..., v_N]`` (blocked, not
    interleaved), so the diffusion matrix is ``blockdiag(c T, c T)`` with ``T = tridiag(1, -2, 1)``.

    Args:
        N: number of interior grid points (state size ``2N``).
        alpha: diffusion coefficient (default ``1/50``); stiffness grows like ``4 alpha (N + 1)^2``.
        tspan: ``(t0, t1)``, default ``(0, 10)``.
        split: ``False``: an ``ODEProblem`` with the analytic (dense ``(2N, 2N)``) ``jac``. ``True``: a
            ``SplitODEProblem`` whose implicit part is the diffusion matrix (a dense ``(2N, 2N)`` tensor,
            exactly linear) and whose explicit part is the reaction plus the constant boundary terms
            ``c (u_0, 0, ..., 0, u_{N+1})`` and ``c (v_0, 0, ..., 0, v_{N+1})`` (affine, so kept explicit).
        dtype, device: of ``u0`` and the matrix.

    Returns:
        The problem, with ``p = None`` (``f(t, u)``); state ``(2N,)``.

    References (``reference("brusselator_1d", 10.0, N=32)`` and ``N=64``, default ``alpha``): SciPy Radau at
    rtol 1e-13 with the analytic Jacobian, checked against Radau at rtol 1e-14 and DOP853 at rtol 1e-13;
    estimated relative accuracy 1e-11.
    """
    if N < 2:
        raise ValueError(f"N must be >= 2, got {N}")
    c = float(alpha) * (N + 1) ** 2
    x = torch.arange(1, N + 1, dtype=torch.float64) / (N + 1)
    u0 = torch.cat((1.0 + torch.sin(2 * math.pi * x), torch.full((N,), 3.0, dtype=torch.float64)))
    u0 = u0.to(dtype=dtype, device=device)
    L = _diffusion_matrix(N, c, dtype, device)
    bnd = torch.zeros(2 * N, dtype=dtype, device=device)
    bnd[0] = bnd[N - 1] = c * 1.0
    bnd[N] = bnd[2 * N - 1] = c * 3.0

    def reaction(u: Tensor) -> Tensor:
        a, b = u[..., :N], u[..., N:]
        a2b = a * a * b
        return torch.cat((1.0 + a2b - 4.0 * a, 3.0 * a - a2b), dim=-1)

    def f_explicit(t: Tensor, u: Tensor) -> Tensor:
        return reaction(u) + bnd.to(u.dtype)

    def f(t: Tensor, u: Tensor) -> Tensor:
        a, b = u[..., :N], u[..., N:]
        one, three = torch.ones_like(a[..., :1]), torch.full_like(b[..., :1], 3.0)
        ap = torch.cat((one, a, one), dim=-1)
        bp = torch.cat((three, b, three), dim=-1)
        lap = torch.cat((ap[..., :-2] - 2 * a + ap[..., 2:], bp[..., :-2] - 2 * b + bp[..., 2:]), dim=-1)
        return reaction(u) + c * lap

    def jac(t: Tensor, u: Tensor) -> Tensor:
        a, b = u[..., :N], u[..., N:]
        ab2, a2 = 2 * a * b, a * a
        top = torch.cat((torch.diag_embed(ab2 - 4.0), torch.diag_embed(a2)), dim=-1)
        bottom = torch.cat((torch.diag_embed(3.0 - ab2), torch.diag_embed(-a2)), dim=-1)
        return torch.cat((top, bottom), dim=-2) + L.to(u.dtype)

    if split:
        return SplitODEProblem(L, f_explicit, u0, tspan)
    return ODEProblem(f, u0, tspan, jac=jac)
