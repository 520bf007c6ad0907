"""Two-species reaction-diffusion on an ``N x N`` periodic grid, with analytic sparse Jacobians.

:func:`brusselator_2d` (the stiff one: SciML's "brusselator 2D") and :func:`gray_scott_2d` (Pearson 1993).
Both are method-of-lines problems with the 5-point Laplacian; the state is a flat vector of ``2 N^2`` values,
``[u, v]`` with ``u[i * N + j] = u(x_i, y_j)`` (row-major, blocked by species). ``f`` is vectorised torch
(``torch.roll`` for the periodic neighbours; batched states ``(..., 2 N^2)`` work); ``jac`` returns a
coalesced ``torch.sparse_coo_tensor`` ``(2N^2, 2N^2)`` (6 entries per row: the 5-point stencil and the other species at
the same point) and the problem carries the same pattern as ``jac_prototype``, so ``SparseLU()`` uses the
analytic values and ``DenseLU()`` densifies them. :func:`sparse_operators` gives the structure as SciPy
matrices for peers (SciPy ``solve_ivp``'s ``jac_sparsity``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..problem import ODEProblem

__all__ = ["ReactionDiffusion2D", "brusselator_2d", "gray_scott_2d"]

Tensor = torch.Tensor
# the reaction's Jacobian per grid point: (d fu/du, d fu/dv, d fv/du, d fv/dv), each shaped like u
ReactionJac = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]


@dataclass
class ReactionDiffusion2D:
    """The discretisation shared by the 2-D problems: ``du = Du Lap u + R_u(u, v)``, ``dv = Dv Lap v + R_v``.

    ``Du``, ``Dv`` already divided by ``dx^2``. ``rows``/``cols``: the Jacobian's CSR pattern (numpy int64);
    ``base``: the Laplacian's values on it; ``pos``: positions of the four reaction blocks' entries."""

    N: int
    Du: float
    Dv: float
    rows: np.ndarray
    cols: np.ndarray
    crow: np.ndarray
    base: np.ndarray
    pos: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

    @classmethod
    def build(cls, N: int, Du: float, Dv: float) -> ReactionDiffusion2D:
        if N < 3:
            raise ValueError(f"N must be >= 3 (distinct periodic neighbours), got {N}")
        m = N * N
        n = 2 * m
        i, j = np.divmod(np.arange(m), N)
        neighbours = [((i + di) % N) * N + (j + dj) % N for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))]
        r_parts, c_parts, v_parts = [], [], []
        for s, d in ((0, Du), (1, Dv)):
            q = np.arange(m) + s * m
            r_parts += [q] * 5
            c_parts += [q] + [nb + s * m for nb in neighbours]
            v_parts += [np.full(m, -4.0 * d)] + [np.full(m, d)] * 4
        q = np.arange(m)
        blocks = ((q, q), (q, q + m), (q + m, q), (q + m, q + m))  # (uu, uv, vu, vv) at each point
        r_all = np.concatenate(r_parts + [b[0] for b in blocks])
        c_all = np.concatenate(c_parts + [b[1] for b in blocks])
        keys = np.unique(r_all * n + c_all)  # row-major: CSR order
        rows, cols = keys // n, keys % n
        base = np.zeros(keys.size)
        np.add.at(base, np.searchsorted(keys, np.concatenate(r_parts) * n + np.concatenate(c_parts)),
                  np.concatenate(v_parts))
        pos = tuple(np.searchsorted(keys, r * n + c) for r, c in blocks)
        crow = np.searchsorted(rows, np.arange(n + 1))
        return cls(N, Du, Dv, rows, cols, crow, base, pos)  # type: ignore[arg-type]

    @property
    def n(self) -> int:
        return 2 * self.N * self.N

    def laplacian(self, w: Tensor) -> Tensor:
        """Periodic 5-point Laplacian (without ``1/dx^2``) of grids ``(..., N, N)``."""
        return (torch.roll(w, 1, -2) + torch.roll(w, -1, -2) + torch.roll(w, 1, -1) + torch.roll(w, -1, -1)
                - 4.0 * w)

    def split(self, y: Tensor) -> tuple[Tensor, Tensor]:
        N = self.N
        grid = y.reshape(*y.shape[:-1], 2, N, N)
        return grid[..., 0, :, :], grid[..., 1, :, :]

    def rhs(self, y: Tensor, reaction: tuple[Tensor, Tensor]) -> Tensor:
        u, v = self.split(y)
        du = self.Du * self.laplacian(u) + reaction[0]
        dv = self.Dv * self.laplacian(v) + reaction[1]
        return torch.stack((du, dv), dim=-3).reshape(y.shape)

    def jacobian(self, y: Tensor, rjac: ReactionJac) -> Tensor:
        """``df/dy`` as a coalesced ``torch.sparse_coo_tensor`` (row-major entries) for one state ``(2 N^2,)``;
        differentiable in its values."""
        u, v = self.split(y)
        values = torch.as_tensor(self.base, dtype=y.dtype, device=y.device)
        for p, block in zip(self.pos, rjac(u, v), strict=True):
            values = values.index_add(0, torch.as_tensor(p, device=y.device), block.reshape(-1))
        return torch.sparse_coo_tensor(self._indices(y.device), values, (self.n, self.n), is_coalesced=True,
                                       check_invariants=False)

    def _indices(self, device: torch.device | str) -> Tensor:
        return torch.as_tensor(np.stack((self.rows, self.cols)), device=device)

    def pattern(self) -> Tensor:
        """The Jacobian's pattern as a boolean coalesced ``torch.sparse_coo_tensor`` (the problems'
        ``jac_prototype``)."""
        ones = torch.ones(self.rows.size, dtype=torch.bool)
        return torch.sparse_coo_tensor(self._indices("cpu"), ones, (self.n, self.n), is_coalesced=True,
                                       check_invariants=False)

    def sparse_operators(self) -> tuple[object, object]:
        """``(pattern, laplacian)`` as SciPy ``csr_array``s: the pattern (booleans, for ``jac_sparsity``) and the
        constant diffusion part with ``Du``, ``Dv`` (the base values), for numpy peers."""
        import scipy.sparse as sp

        shape = (self.n, self.n)
        pattern = sp.csr_array((np.ones(self.rows.size, dtype=bool), self.cols, self.crow), shape=shape)
        return pattern, sp.csr_array((self.base, self.cols, self.crow), shape=shape)


def brusselator_2d(
    N: int = 32,
    tspan: tuple[float, float] = (0.0, 11.5),
    *,
    A: float = 3.4,
    B: float = 1.0,
    alpha: float = 10.0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem:
    r"""The 2-D Brusselator with diffusion on an ``N x N`` periodic grid, as in SciML's tutorial "Solving Large
    Stiff Equations" (DifferentialEquations.jl docs, ``brusselator_2d_loop``) and SciMLBenchmarks'
    ``Brusselator`` (2-D) problem:

    .. math::
        u' &= \frac{\alpha}{\Delta x^2} \Delta_h u + B + u^2 v - (A + 1) u + f(x, y, t), \\
        v' &= \frac{\alpha}{\Delta x^2} \Delta_h v + A u - u^2 v,

    ``x_i = y_i = i / (N - 1)``, ``i = 0..N-1`` (``\Delta x = 1/(N - 1)``), neighbours wrapping periodically
    (index ``N`` is ``0``, as the tutorial's ``limit``), forcing ``f = 5`` where ``(x - 0.3)^2 + (y - 0.6)^2 <=
    0.1^2`` and ``t >= 1.1``, else 0; ``u(0) = 22 (y (1 - y))^{3/2}``, ``v(0) = 27 (x (1 - x))^{3/2}``. The forcing
    switches on at ``t = 1.1``: pass ``tstops=[1.1]`` to step onto it. Stiffness grows like
    ``8 alpha (N - 1)^2``.

    Args:
        N: grid points per side (state ``2 N^2``: N = 32, 64, 128 give 2,048, 8,192, 32,768 values).
        tspan: default ``(0, 11.5)``, the tutorial's.
        A, B, alpha: the tutorial's ``A = 3.4``, ``B = 1``, ``alpha = 10``.
        dtype, device: of ``u0``.

    Returns:
        An ``ODEProblem`` ``f(t, u)`` with ``jac`` (sparse COO), ``jac_prototype`` and ``tgrad = 0`` (the forcing
        is piecewise constant in ``t``).
    """
    dx = 1.0 / (N - 1)
    grid = ReactionDiffusion2D.build(N, alpha / dx**2, alpha / dx**2)
    xs = torch.linspace(0.0, 1.0, N, dtype=torch.float64)
    x, y = xs[:, None].expand(N, N), xs[None, :].expand(N, N)
    u0 = torch.cat(((22.0 * (y * (1 - y)) ** 1.5).reshape(-1), (27.0 * (x * (1 - x)) ** 1.5).reshape(-1)))
    spot = (((x - 0.3) ** 2 + (y - 0.6) ** 2) <= 0.1**2).to(dtype=dtype, device=device) * 5.0

    def f(t: Tensor, y_: Tensor) -> Tensor:
        u, v = grid.split(y_)
        u2v = u * u * v
        on = (t >= 1.1).to(y_.dtype)
        on = on.reshape(*on.shape, *([1] * (u.ndim - on.ndim)))
        return grid.rhs(y_, (B + u2v - (A + 1.0) * u + on * spot, A * u - u2v))

    def rjac(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        uv2, u2 = 2.0 * u * v, u * u
        return uv2 - (A + 1.0), u2, A - uv2, -u2

    def jac(t: Tensor, y_: Tensor) -> Tensor:
        return grid.jacobian(y_, rjac)

    return ODEProblem(f, u0.to(dtype=dtype, device=device), tspan, jac=jac, tgrad=_zero_tgrad,
                      jac_prototype=grid.pattern())


def gray_scott_2d(
    N: int = 64,
    tspan: tuple[float, float] = (0.0, 200.0),
    *,
    Du: float = 2e-5,
    Dv: float = 1e-5,
    F: float = 0.04,
    k: float = 0.06,
    L: float = 2.5,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> ODEProblem:
    r"""The Gray-Scott model on an ``N x N`` periodic grid of side ``L`` (Pearson, "Complex patterns in a simple
    system", Science 261, 1993: ``Du = 2e-5``, ``Dv = 1e-5``, ``L = 2.5``, periodic):

    .. math::
        u' = D_u \Delta u - u v^2 + F (1 - u), \qquad v' = D_v \Delta v + u v^2 - (F + k) v,

    ``x_i = i L / N``. Initial state as Pearson's: ``u = 1``, ``v = 0``, except a central square of side
    ``20 L / 256`` (his 20 of 256 points) where ``u = 1/2``, ``v = 1/4``; his 1% random perturbation is left out,
    so the problem is deterministic (and the pattern stays symmetric). ``F``, ``k``: one of his parameter pairs
    by default. Only mildly stiff at these sizes (diffusion eigenvalues ``8 Du N^2 / L^2``: 0.42 at N = 128); the
    stiff test is :func:`brusselator_2d`.

    Returns:
        An ``ODEProblem`` ``f(t, u)`` with ``jac`` (sparse COO), ``jac_prototype`` and ``tgrad = 0``.
    """
    dx = L / N
    grid = ReactionDiffusion2D.build(N, Du / dx**2, Dv / dx**2)
    xs = torch.arange(N, dtype=torch.float64) * dx
    inside = ((xs - L / 2).abs() <= 10 * L / 256)
    square = inside[:, None] & inside[None, :]
    u0 = torch.where(square, 0.5, 1.0).reshape(-1)
    v0 = torch.where(square, 0.25, 0.0).reshape(-1)

    def f(t: Tensor, y_: Tensor) -> Tensor:
        u, v = grid.split(y_)
        uv2 = u * v * v
        return grid.rhs(y_, (F * (1.0 - u) - uv2, uv2 - (F + k) * v))

    def rjac(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        v2, uv = v * v, 2.0 * u * v
        return -v2 - F, -uv, v2, uv - (F + k)

    def jac(t: Tensor, y_: Tensor) -> Tensor:
        return grid.jacobian(y_, rjac)

    return ODEProblem(f, torch.cat((u0, v0)).to(dtype=dtype, device=device), tspan, jac=jac,
                      tgrad=_zero_tgrad, jac_prototype=grid.pattern())


def _zero_tgrad(t: Tensor, u: Tensor) -> Tensor:
    return torch.zeros_like(u)


def grid_of(N: int, problem: str = "brusselator") -> ReactionDiffusion2D:
    """The discretisation of :func:`brusselator_2d` (default parameters) or :func:`gray_scott_2d` at ``N``, for
    peers that need the pattern or the Laplacian as SciPy matrices (``sparse_operators``)."""
    if problem == "brusselator":
        return ReactionDiffusion2D.build(N, 10.0 * (N - 1) ** 2, 10.0 * (N - 1) ** 2)
    dx = 2.5 / N
    return ReactionDiffusion2D.build(N, 2e-5 / dx**2, 1e-5 / dx**2)

