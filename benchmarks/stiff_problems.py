"""The stiff benchmark problems in three forms: pysciml (torch), NumPy (SciPy, with the analytic Jacobian) and
JAX (diffrax), plus the reference solution each error is measured against.

The right-hand sides are written once against an array module ``xp`` (``numpy`` or ``jax.numpy``) so SciPy and
diffrax integrate the same equations as ``pysciml.problems`` (a test checks that they agree at random states).
Every right-hand side has the signature ``f(t, y, p)`` with ``p`` a parameter array (``None`` when the problem has
none), as both ``solve_ivp(..., args=(p,))`` and ``diffrax.ODETerm`` call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch

from pysciml import problems
from pysciml.problems.hires import _J0 as HIRES_J0

Array = Any  # numpy.ndarray or jax.Array
Rhs = Callable[[Any, Array, Array | None], Array]

ROBER_K = (0.04, 3e7, 1e4)
OREGONATOR_P = (77.27, 0.161, 8.375e-6)
HIRES_T1 = 321.8122


def rober_rhs(xp: ModuleType) -> Rhs:
    """ROBER ``f(t, y, k)`` with rate constants ``k = (k1, k2, k3)`` (see ``pysciml.problems.rober``)."""

    def f(t, y, k):
        r1, r2, r3 = k[0] * y[0], k[1] * y[1] * y[1], k[2] * y[1] * y[2]
        return xp.stack([-r1 + r3, r1 - r2 - r3, r2])

    return f


def rober_jac(t: float, y: np.ndarray, k: np.ndarray) -> np.ndarray:
    k1, k2, k3 = k
    return np.array([[-k1, k3 * y[2], k3 * y[1]], [k1, -2 * k2 * y[1] - k3 * y[2], -k3 * y[1]], [0, 2 * k2 * y[1], 0]])


def hires_rhs(xp: ModuleType) -> Rhs:
    """HIRES ``f(t, y, None)`` (see ``pysciml.problems.hires``)."""

    def f(t, y, p):
        y1, y2, y3, y4, y5, y6, y7, y8 = (y[i] for i in range(8))
        r = 280.0 * y6 * y8
        return xp.stack([
            -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007, 1.71 * y1 - 8.75 * y2,
            -10.03 * y3 + 0.43 * y4 + 0.035 * y5, 8.32 * y2 + 1.71 * y3 - 1.12 * y4,
            -1.745 * y5 + 0.43 * y6 + 0.43 * y7, -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
            r - 1.81 * y7, -r + 1.81 * y7,
        ])

    return f


def hires_jac(t: float, y: np.ndarray, p: None) -> np.ndarray:
    J = np.array(HIRES_J0, dtype=np.float64)  # the constant part, shared with pysciml.problems.hires
    J[5:, 5] += np.array([-280.0, 280.0, -280.0]) * y[7]
    J[5:, 7] += np.array([-280.0, 280.0, -280.0]) * y[5]
    return J


def vdp_rhs(xp: ModuleType) -> Rhs:
    """Van der Pol ``f(t, y, mu)`` in the unscaled form of ``pysciml.problems.van_der_pol``."""

    def f(t, y, p):
        return xp.stack([y[1], p[0] * (1 - y[0] * y[0]) * y[1] - y[0]])

    return f


def vdp_jac(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    mu = p[0]
    return np.array([[0.0, 1.0], [-2 * mu * y[0] * y[1] - 1, mu * (1 - y[0] * y[0])]])


def oregonator_rhs(xp: ModuleType) -> Rhs:
    """Oregonator ``f(t, y, p)`` with ``p = (s, w, q)`` (see ``pysciml.problems.oregonator``)."""

    def f(t, y, p):
        s, w, q = p[0], p[1], p[2]
        return xp.stack([s * (y[1] + y[0] * (1 - q * y[0] - y[1])), (y[2] - (1 + y[0]) * y[1]) / s,
                         w * (y[0] - y[2])])

    return f


def oregonator_jac(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    s, w, q = p
    return np.array([[s * (1 - 2 * q * y[0] - y[1]), s * (1 - y[0]), 0.0], [-y[1] / s, -(1 + y[0]) / s, 1 / s],
                     [w, 0.0, -w]])


def bruss_parts(xp: ModuleType, N: int, alpha: float = 1 / 50) -> tuple[Rhs, Rhs]:
    """Brusselator-1D as ``(diffusion, reaction)``: the linear stiff part ``c (u_{i-1} - 2 u_i + u_{i+1})`` with
    zero boundary values, and the reaction plus the constant boundary terms (``pysciml.problems.brusselator_1d``'s
    split; state ``[u_1..u_N, v_1..v_N]``). Their sum is the full right-hand side."""
    c = alpha * (N + 1) ** 2
    bnd = np.zeros(2 * N)
    bnd[0], bnd[N - 1], bnd[N], bnd[2 * N - 1] = c, c, 3 * c, 3 * c
    bnd = xp.asarray(bnd)

    def diffusion(t, y, p):
        z = xp.zeros(1, dtype=y.dtype)
        a = xp.concatenate([z, y[:N], z])
        b = xp.concatenate([z, y[N:], z])
        return c * xp.concatenate([a[:-2] - 2 * a[1:-1] + a[2:], b[:-2] - 2 * b[1:-1] + b[2:]])

    def reaction(t, y, p):
        u, v = y[:N], y[N:]
        u2v = u * u * v
        return xp.concatenate([1.0 + u2v - 4.0 * u, 3.0 * u - u2v]) + bnd

    return diffusion, reaction


def bruss_jac(N: int, alpha: float = 1 / 50) -> Callable[[float, np.ndarray, None], np.ndarray]:
    """The dense analytic ``(2N, 2N)`` Jacobian of the full Brusselator-1D right-hand side."""
    c = alpha * (N + 1) ** 2
    T = -2.0 * np.eye(N) + np.eye(N, k=1) + np.eye(N, k=-1)
    L = c * np.kron(np.eye(2), T)
    idx = np.arange(N)

    def jac(t, y, p):
        u, v = y[:N], y[N:]
        J = L.copy()
        J[idx, idx] += 2 * u * v - 4.0
        J[idx, idx + N] += u * u
        J[idx + N, idx] += 3.0 - 2 * u * v
        J[idx + N, idx + N] -= u * u
        return J

    return jac


def summed(parts: tuple[Rhs, Rhs]) -> Rhs:
    a, b = parts

    def f(t, y, p):
        return a(t, y, p) + b(t, y, p)

    return f


@dataclass
class StiffCase:
    """One benchmark problem in every form the peers need.

    Attributes:
        key, title: short name (file names) and a label for tables.
        t1: final time (the span is ``(0, t1)``); the error is measured at ``t1``.
        torch_problem: the pysciml ``ODEProblem`` (analytic ``jac``); ``torch_split``: its ``SplitODEProblem``
            (implicit part = the stiff linear diffusion) or ``None`` where the problem has no natural split.
        rhs: ``xp -> f(t, y, p)``; ``split``: ``xp -> (f_implicit, f_explicit)`` or ``None``.
        jac: NumPy analytic Jacobian ``jac(t, y, p)`` for SciPy. ``p``: parameters (NumPy) or ``None``.
        ref_name, ref_params: key of ``pysciml.problems.reference``; when absent (other spans, N = 256) the
            reference is computed by :func:`reference` with SciPy Radau at rtol 1e-12.
    """

    key: str
    title: str
    t1: float
    torch_problem: Callable[[], Any]
    torch_split: Callable[[], Any] | None
    rhs: Callable[[ModuleType], Rhs]
    split: Callable[[ModuleType], tuple[Rhs, Rhs]] | None
    jac: Callable[[float, np.ndarray, Any], np.ndarray]
    u0: np.ndarray
    p: np.ndarray | None = None
    ref_name: str = ""
    ref_params: dict[str, float] = field(default_factory=dict)
    _ref: tuple[np.ndarray, str] | None = None


def make_cases(size: str) -> list[StiffCase]:
    """Task 1's problems at their classic spans (``size="full"``; ``"small"``: all but Brusselator N = 256), or
    one short, small one (``"smoke"``)."""
    def bruss(N: int, t1: float) -> StiffCase:
        return StiffCase(
            f"bruss{N}", f"Brusselator-1D N={N} (n={2 * N}), t1={t1:g}", t1,
            lambda: problems.brusselator_1d(N, tspan=(0.0, t1)),
            lambda: problems.brusselator_1d(N, tspan=(0.0, t1), split=True),
            lambda xp: summed(bruss_parts(xp, N)), lambda xp: bruss_parts(xp, N), bruss_jac(N),
            problems.brusselator_1d(N).u0.numpy(), None, "brusselator_1d", {"N": N})

    def rober(t1: float) -> StiffCase:
        return StiffCase("rober", f"ROBER, t1={t1:g}", t1, lambda: problems.rober((0.0, t1)), None, rober_rhs, None,
                         rober_jac, np.array([1.0, 0.0, 0.0]), np.array(ROBER_K), "rober")

    if size == "smoke":
        return [bruss(8, 1.0)]
    return [
        rober(1e5),
        StiffCase("hires", f"HIRES, t1={HIRES_T1}", HIRES_T1, lambda: problems.hires((0.0, HIRES_T1)), None,
                  hires_rhs, None, hires_jac, problems.hires().u0.numpy(), None, "hires"),
        StiffCase("vdp", "Van der Pol mu=1e3, t1=6.3", 6.3, lambda: problems.van_der_pol(1e3, (0.0, 6.3)), None,
                  vdp_rhs, None, vdp_jac, np.array([math.sqrt(3.0), 0.0]), np.array([1e3]), "van_der_pol",
                  {"mu": 1e3}),
        StiffCase("oregonator", "Oregonator, t1=360", 360.0, lambda: problems.oregonator((0.0, 360.0)), None,
                  oregonator_rhs, None, oregonator_jac, np.array([1.0, 2.0, 3.0]), np.array(OREGONATOR_P),
                  "oregonator"),
        bruss(64, 10.0),
    ] + ([bruss(256, 10.0)] if size == "full" else [])


def reference(case: StiffCase) -> tuple[np.ndarray, str]:
    """``(u(t1), how it was obtained)``: the registered ``pysciml.problems.reference`` when there is one, else
    SciPy Radau at rtol 1e-12, atol 1e-16 with the analytic Jacobian (sparse, for speed), computed here."""
    if case._ref is None:
        try:
            rec = problems.reference_record(case.ref_name, case.t1, **case.ref_params)
            case._ref = (np.array(rec.values), f"pysciml.problems.reference ({rec.method}; accuracy {rec.accuracy:g})")
        except KeyError:
            from scipy.integrate import solve_ivp
            from scipy.sparse import csc_matrix

            f = case.rhs(np)
            sol = solve_ivp(f, (0.0, case.t1), case.u0, method="Radau", rtol=1e-12, atol=1e-16, args=(case.p,),
                            jac=lambda t, y, p: csc_matrix(case.jac(t, y, p)))
            case._ref = (sol.y[:, -1].copy(), "SciPy Radau rtol=1e-12, atol=1e-16, analytic Jacobian, computed "
                                              "in this run")
    return case._ref


def max_rel_err(u: np.ndarray, ref: np.ndarray) -> float:
    """``max_i |u_i - ref_i| / |ref_i|`` (every reference component is nonzero on these problems)."""
    return float(np.max(np.abs(np.asarray(u) - ref) / np.abs(ref)))


def torch_rhs_agrees(case: StiffCase, seed: int = 0) -> float:
    """Max relative difference of the NumPy right-hand side and Jacobian from pysciml's at a random state."""
    prob = case.torch_problem()
    y = case.u0 * (1 + 0.1 * np.random.default_rng(seed).random(case.u0.shape)) + 1e-3
    t, yt = torch.tensor(0.0, dtype=torch.float64), torch.from_numpy(y)
    args = (t, yt) if prob.p is None else (t, yt, prob.p)
    f_t, j_t = prob.f(*args).numpy(), prob.jac(*args).numpy()
    f_n, j_n = case.rhs(np)(0.0, y, case.p), case.jac(0.0, y, case.p)
    return max(float(np.max(np.abs(f_n - f_t)) / np.max(np.abs(f_t))),
               float(np.max(np.abs(j_n - j_t)) / np.max(np.abs(j_t))))
