"""Test helpers: problems with closed-form solutions and the observed-order fit."""

from __future__ import annotations

import math

import torch

import pysciml as ps


def observed_order(dts: list[float], errors: list[float]) -> float:
    """Least-squares slope of log(error) against log(dt)."""
    xs = [math.log(d) for d in dts]
    ys = [math.log(e) for e in errors]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def kepler_exact(t: float, e: float) -> list[float]:
    """Kepler orbit (a = 1, mean motion 1) from perihelion: solve M = E - e sin E by Newton, then (q, p)."""
    E = t
    for _ in range(50):
        E -= (E - e * math.sin(E) - t) / (1 - e * math.cos(E))
    r = 1 - e * math.cos(E)
    s = math.sqrt(1 - e * e)
    return [math.cos(E) - e, s * math.sin(E), -math.sin(E) / r, s * math.cos(E) / r]


def kepler_problem(t1: float = 3.0, e: float = 0.3, dtype: torch.dtype = torch.float64):
    """Kepler's two-body problem (closed-form solution through Kepler's equation), a coupled nonlinear system,
    plus a non-autonomous component u4' = cos(t) u4 (u4 = exp(sin t)) so df/dt matters for Rosenbrock methods."""

    def f(t, u, p):
        q1, q2, p1, p2, w = u.unbind()
        r3 = (q1 * q1 + q2 * q2) ** 1.5
        return torch.stack((p1, p2, -q1 / r3, -q2 / r3, torch.cos(t) * w))

    def exact(t: float) -> torch.Tensor:
        return torch.tensor([*kepler_exact(t, e), math.exp(math.sin(t))], dtype=dtype)

    return ps.ODEProblem(f, exact(0.0), (0.0, t1)), exact


def nonlinear_problem(dtype: torch.dtype = torch.float64, t1: float = 2.0, omega: float = 3.0):
    """Smooth, nonlinear, non-autonomous, with closed-form solution:
    u0' = omega cos(omega t) u0  (u0 = exp(sin(omega t))),  u1' = -2 omega^2 t u1^2  (u1 = 1/(1 + (omega t)^2))."""

    def f(t, u, p):
        return torch.stack((omega * torch.cos(omega * t) * u[0], -2 * omega**2 * t * u[1] ** 2))

    def exact(t: float) -> torch.Tensor:
        return torch.tensor([math.exp(math.sin(omega * t)), 1 / (1 + (omega * t) ** 2)], dtype=dtype)

    return ps.ODEProblem(f, exact(0.0), (0.0, t1)), exact


def split_problem(stiffness: float = 10.0) -> tuple[ps.SplitODEProblem, object]:
    """u' = L u + g(t, u) with exact solution (cos t, sin t); L implicit (matrix), g explicit and nonlinear.

    g = u*'(t) - L u*(t) + 0.5 (|u|^2 - 1) (1, 1): the nonlinear term vanishes on the exact solution only."""
    L = stiffness * torch.tensor([[-2.0, 1.0], [1.0, -2.0]], dtype=torch.float64)

    def star(t):
        return torch.stack((torch.cos(t), torch.sin(t))), torch.stack((-torch.sin(t), torch.cos(t)))

    def g(t, u, p):
        us, dus = star(t)
        return dus - L @ us + 0.5 * (u.pow(2).sum() - 1.0) * torch.ones_like(u)

    def exact(t: float) -> torch.Tensor:
        return torch.tensor([math.cos(t), math.sin(t)], dtype=torch.float64)

    return ps.SplitODEProblem(L, g, torch.tensor([1.0, 0.0], dtype=torch.float64), (0.0, 1.0)), exact
