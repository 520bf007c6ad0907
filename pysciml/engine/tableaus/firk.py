"""Fully implicit Runge-Kutta (collocation) methods: Gauss-Legendre 2 and 3 stages, Radau IIA 2 and 3 stages.

Coefficients are written in closed form (``sqrt(3)``, ``sqrt(6)``, ``sqrt(15)``) as in the sources:

* Gauss-Legendre: Hairer & Wanner, *Solving ODEs II*, Table IV.5.1 (s = 2, order 4) and Table IV.5.2
  (s = 3, order 6); Butcher, *Numerical Methods for ODEs* (2008), 342; the same numbers as OrdinaryDiffEq.jl's
  ``GaussLegendre`` tableaus. A-stable, symmetric, stage order ``s``, not stiffly accurate (``|R(inf)| = 1``).
* Radau IIA: Hairer & Wanner, *Solving ODEs II*, Table IV.5.5 (s = 2, order 3) and Table IV.5.6 (s = 3,
  order 5); Ehle (1969). L-stable, stiffly accurate (the last row of ``a`` is ``b``), stage order ``s``.

The embedded error estimate of Radau IIA 5 is Hairer & Wanner's (Solving ODEs II, IV.8, eq. (8.19)-(8.20),
and their code radau5.f): with ``Z_i = U_i - u_n`` the stage increments and ``gamma0 = 1/lambda`` for the real
eigenvalue ``lambda = 3 + 3^(2/3) - 3^(1/3)`` of ``A^{-1}``,

    err = (I - gamma0 h J)^{-1} gamma0 (h f(t_n, u_n) + sum_i ez[i] Z_i),
    ez = (-(13 + 7 sqrt 6)/3, (-13 + 7 sqrt 6)/3, -1/3)      (radau5.f's DD1..DD3)

i.e. ``u_hat - u_{n+1}`` for the third-order formula ``u_hat = u_n + h (gamma0 f(t_n, u_n) + sum b_hat_i k_i)``
with ``b_hat = b + gamma0 A^T ez``, filtered by ``(I - gamma0 h J)^{-1}``. For Radau IIA 3 the same
construction gives a second-order formula: ``gamma0 + sum b_hat_i = 1``, ``sum b_hat_i c_i = 1/2`` fix
``A^T ez = (-3/2, 1/2)``, so ``ez = (-9/2, 1/2)`` for any ``gamma0``; pysciml takes ``gamma0 = 1/2`` (derived
here, not from a paper; its factorization is one extra real LU per step since ``A^{-1}`` of the 2-stage method has
no real eigenvalue). Both embedded conditions are checked in ``tests/test_tableaus_firk.py``.

Dense output is the collocation polynomial: ``u(theta) = u_n + h sum_i b_i(theta) k_i`` with
``b_i(theta) = int_0^theta l_i``, ``l_i`` the Lagrange polynomials on ``c``; :func:`collocation_dense` writes it in the
``dense`` convention of :mod:`._base` (``K_i = h k_i``), order ``s`` (the stage order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._base import Rows

__all__ = ["FIRKTableau", "GAUSS_LEGENDRE4", "GAUSS_LEGENDRE6", "RADAU_IIA3", "RADAU_IIA5", "FIRK_TABLEAUS",
           "collocation_dense"]

_HW = "Hairer & Wanner, Solving Ordinary Differential Equations II (2nd ed., 1996)"
_S3, _S6, _S15 = math.sqrt(3.0), math.sqrt(6.0), math.sqrt(15.0)


def collocation_dense(c: tuple[float, ...]) -> Rows:
    """The ``(s, s)`` dense matrix of the collocation polynomial on nodes ``c``: row ``j`` holds the coefficients
    of ``theta**(j+1)`` in ``b_i(theta) = int_0^theta l_i(x) dx`` (``l_i`` the Lagrange basis on ``c``)."""
    s = len(c)
    rows = [[0.0] * s for _ in range(s)]
    for i in range(s):
        poly = [1.0]  # coefficients of l_i in increasing powers
        for j in range(s):
            if j == i:
                continue
            denom = c[i] - c[j]
            poly = [(a - c[j] * b) / denom for a, b in zip([0.0, *poly], [*poly, 0.0], strict=True)]
        for k, coef in enumerate(poly):  # int_0^theta x**k = theta**(k+1) / (k+1)
            rows[k][i] = coef / (k + 1)
    return tuple(tuple(r) for r in rows)


@dataclass(frozen=True)
class FIRKTableau:
    """A fully implicit Runge-Kutta method ``U_i = u + h sum_j a[i][j] f(t + c_j h, U_j)``,
    ``u1 = u + h sum_i b_i f(t + c_i h, U_i)`` (``a`` full ``s x s`` rows).

    Attributes:
        order: classical order of ``b``; stage_order: the ``q`` of the simplifying condition ``C(q)``.
        stiffly_accurate: ``a[-1] == b`` (``u1 = U_s``); symmetric: ``c, b, a`` reflect onto themselves.
        gamma0, ez: the embedded estimate ``err = (I - gamma0 h J)^{-1} gamma0 (h f(t, u) + sum ez_i Z_i)`` (module
            docstring), ``None`` for a fixed-step-only method; embedded_order: the order of ``u_hat``.
        dense, dense_order: the collocation polynomial (:func:`collocation_dense`), order ``s``.
    """

    name: str
    reference: str
    c: tuple[float, ...]
    a: Rows
    b: tuple[float, ...]
    order: int
    stage_order: int
    stiffly_accurate: bool
    symmetric: bool
    gamma0: float | None = None
    ez: tuple[float, ...] | None = None
    embedded_order: int | None = None

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def btilde(self) -> tuple[float, ...] | None:
        """Non-``None`` exactly when the method has an error estimate (what ``Algorithm.is_adaptive`` asks)."""
        return self.ez

    @property
    def dense(self) -> Rows:
        return collocation_dense(self.c)

    @property
    def dense_order(self) -> int:
        return self.stages


GAUSS_LEGENDRE4 = FIRKTableau(
    name="GaussLegendre4",
    reference=_HW + ", Table IV.5.1 (Gauss methods, s = 2, order 4); Butcher (1964)",
    c=(1 / 2 - _S3 / 6, 1 / 2 + _S3 / 6),
    a=((1 / 4, 1 / 4 - _S3 / 6),
       (1 / 4 + _S3 / 6, 1 / 4)),
    b=(1 / 2, 1 / 2),
    order=4, stage_order=2, stiffly_accurate=False, symmetric=True,
)

GAUSS_LEGENDRE6 = FIRKTableau(
    name="GaussLegendre6",
    reference=_HW + ", Table IV.5.2 (Gauss methods, s = 3, order 6); Butcher (1964)",
    c=(1 / 2 - _S15 / 10, 1 / 2, 1 / 2 + _S15 / 10),
    a=((5 / 36, 2 / 9 - _S15 / 15, 5 / 36 - _S15 / 30),
       (5 / 36 + _S15 / 24, 2 / 9, 5 / 36 - _S15 / 24),
       (5 / 36 + _S15 / 30, 2 / 9 + _S15 / 15, 5 / 36)),
    b=(5 / 18, 4 / 9, 5 / 18),
    order=6, stage_order=3, stiffly_accurate=False, symmetric=True,
)

RADAU_IIA3 = FIRKTableau(
    name="RadauIIA3",
    reference=_HW + ", Table IV.5.5 (Radau IIA, s = 2, order 3); Ehle (1969). Embedded estimate: derived in "
    "this module's docstring (gamma0 = 1/2)",
    c=(1 / 3, 1.0),
    a=((5 / 12, -1 / 12),
       (3 / 4, 1 / 4)),
    b=(3 / 4, 1 / 4),
    order=3, stage_order=2, stiffly_accurate=True, symmetric=False,
    gamma0=1 / 2, ez=(-9 / 2, 1 / 2), embedded_order=2,
)

RADAU_IIA5 = FIRKTableau(
    name="RadauIIA5",
    reference=_HW + ", Table IV.5.6 (Radau IIA, s = 3, order 5); Ehle (1969). Embedded estimate: Solving ODEs "
    "II, IV.8 (8.19)-(8.20) and radau5.f (DD1..DD3, U1)",
    c=((4 - _S6) / 10, (4 + _S6) / 10, 1.0),
    a=(((88 - 7 * _S6) / 360, (296 - 169 * _S6) / 1800, (-2 + 3 * _S6) / 225),
       ((296 + 169 * _S6) / 1800, (88 + 7 * _S6) / 360, (-2 - 3 * _S6) / 225),
       ((16 - _S6) / 36, (16 + _S6) / 36, 1 / 9)),
    b=((16 - _S6) / 36, (16 + _S6) / 36, 1 / 9),
    order=5, stage_order=3, stiffly_accurate=True, symmetric=False,
    gamma0=(6 + 81 ** (1 / 3) - 9 ** (1 / 3)) / 30,
    ez=(-(13 + 7 * _S6) / 3, (-13 + 7 * _S6) / 3, -1 / 3), embedded_order=3,
)

FIRK_TABLEAUS: dict[str, FIRKTableau] = {
    t.name: t for t in (GAUSS_LEGENDRE4, GAUSS_LEGENDRE6, RADAU_IIA3, RADAU_IIA5)
}
