"""The three tableau types. Coefficients are plain Python floats (float64), frozen, with their source.

Conventions (the steppers in ``pysciml.engine`` rely on exactly these):

* Ragged lower-triangular rows: ``a[i]`` holds the coefficients ``a[i][0..i-1]`` of stage ``i`` (explicit
  and Rosenbrock ``a``/``C``), or ``a[i][0..i]`` including the diagonal (ARK implicit part).
* ``btilde`` are error weights: the local error estimate is ``sum_i btilde[i] * k_i`` (times ``dt`` for RK
  families), i.e. ``btilde = b - b_embedded``.
* ``dense`` (optional) is a ``(q, s)`` matrix giving the continuous extension as a polynomial in
  ``theta = (t - t_n) / dt``:  ``u(theta) = u_n + sum_{j=0}^{q-1} theta**(j+1) * sum_i dense[j][i] * K_i``
  with ``K_i = dt * k_i`` for explicit and additive RK (``k_i`` the stage derivatives; for ARK
  ``k_i = kI_i + kE_i``) and ``K_i = k_i`` (the transformed stage increments) for Rosenbrock methods.
  ``None`` means the engine uses cubic Hermite interpolation from ``u_n, u_{n+1}, f_n, f_{n+1}``.
* Explicit RK interpolants may need extra ("lazy") stages, evaluated only when the step is interpolated:
  ``k_{s+j} = f(t_n + extra_c[j] dt, u_n + dt sum_{i<s+j} extra_a[j][i] k_i)``, row ``j`` of length
  ``s + j`` (main stages, then earlier extra stages). ``dense`` then has ``s + len(extra_c)`` columns, the
  extra stages' last; their column sums are 0, so ``u(1)`` is still ``u_{n+1}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the tableaus are plain data: importing them does not import torch
    import torch

Rows = tuple[tuple[float, ...], ...]


def dense_matrix(rows: Rows, s: int, *, diagonal: bool = False) -> list[list[float]]:
    """Ragged lower-triangular rows -> full ``s x s`` list of lists (zeros elsewhere)."""
    out = [[0.0] * s for _ in range(s)]
    for i, row in enumerate(rows):
        limit = i + 1 if diagonal else i
        if len(row) > limit:
            raise ValueError(f"row {i} has {len(row)} entries, at most {limit} allowed")
        for j, v in enumerate(row):
            out[i][j] = float(v)
    return out


@dataclass(frozen=True)
class ExplicitRKTableau:
    """Explicit Runge-Kutta method ``k_i = f(t + c_i dt, u + dt sum_j a_ij k_j)``, ``u1 = u + dt sum b_i k_i``.

    Attributes:
        name: SciML name (e.g. ``"Tsit5"``).
        reference: the paper (and table) the coefficients come from.
        c, a, b: the Butcher tableau (``a`` ragged, strictly lower).
        btilde: error weights ``b - b_hat`` or ``None`` for fixed-step-only methods.
        order: order of ``b``; embedded_order: order of ``b_hat`` (``None`` if no embedded method).
        fsal: first-same-as-last (``c[-1] == 1`` and ``a[-1] == b``): stage ``s`` is ``f(t1, u1)``.
        dense: continuous extension (see module docstring) or ``None``; dense_order its order.
            ``dense`` has ``stages + extra_stages`` columns.
        extra_c, extra_a: the interpolant's extra stages (module docstring), ``()`` when it needs none:
            ``extra_a[j]`` has ``stages + j`` entries.
        btilde3, btilde3_order: a second set of error weights (``b`` minus a formula of order ``btilde3_order``)
            for DOP853's combined estimate ``e**2 / sqrt(e**2 + 0.01 e3**2)`` of the RMS norms of both
            estimates (DP8); ``None`` for every other method.
    """

    name: str
    reference: str
    c: tuple[float, ...]
    a: Rows
    b: tuple[float, ...]
    btilde: tuple[float, ...] | None
    order: int
    embedded_order: int | None
    fsal: bool = False
    dense: Rows | None = None
    dense_order: int | None = None
    extra_c: tuple[float, ...] = ()
    extra_a: Rows = ()
    btilde3: tuple[float, ...] | None = None
    btilde3_order: int | None = None

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def extra_stages(self) -> int:
        """Number of extra stages the continuous extension needs (0 for most methods)."""
        return len(self.extra_c)


@dataclass(frozen=True)
class RosenbrockTableau:
    """Rosenbrock (W-)method in the transformed form of Hairer & Wanner (Solving ODEs II, IV.7, eq. 7.25).

    One step from ``(t, u)`` with step ``h``, Jacobian ``J = df/du``, ``f_t = df/dt`` and mass matrix ``M``
    (identity by default)::

        W   = M / (gamma * h) - J
        u_i = u + sum_{j<i} a[i][j] * k_j
        W k_i = f(t + c[i] h, u_i) + sum_{j<i} (C[i][j] / h) * M k_j + d[i] * h * f_t
        u1  = u + sum_i b[i] * k_i,      err = sum_i btilde[i] * k_i

    Attributes:
        gamma: the diagonal coefficient.
        a, C: ragged strictly-lower rows.
        b, btilde: solution and error weights in the transformed variables ``k_i``.
        c: time nodes (alpha_i); d: time-derivative coefficients (gamma_i = sum_j gamma_ij).
        order, embedded_order: orders of ``b`` and of ``b - btilde``.
        stiffly_accurate: ``u1`` equals the last stage's argument plus ``k_s``.
        dense: continuous extension (see module docstring), in the transformed ``k_i``; dense_order.
    """

    name: str
    reference: str
    gamma: float
    a: Rows
    C: Rows
    b: tuple[float, ...]
    btilde: tuple[float, ...]
    c: tuple[float, ...]
    d: tuple[float, ...]
    order: int
    embedded_order: int
    stiffly_accurate: bool = False
    dense: Rows | None = None
    dense_order: int | None = None

    @property
    def stages(self) -> int:
        return len(self.b)


@dataclass(frozen=True)
class ARKTableau:
    """Additive Runge-Kutta method: an ESDIRK part for ``f_implicit`` and an explicit part for ``f_explicit``.

    Stage ``i`` solves ``U_i = u + h sum_{j<=i} aI[i][j] kI_j + h sum_{j<i} aE[i][j] kE_j`` with
    ``kI_j = f_implicit(t + c_j h, U_j)``, ``kE_j = f_explicit(t + c_j h, U_j)``; then
    ``u1 = u + h sum_i b[i] (kI_i + kE_i)``, ``err = h sum_i btilde[i] (kI_i + kE_i)``.
    ``aI`` has a constant diagonal ``gamma`` (``aI[0][0] == 0``: explicit first stage).

    Attributes:
        aI: implicit rows (ragged, with diagonal). aE: explicit rows (strictly lower) or ``None`` for a
            purely implicit method (Kvaerno5), which then solves split problems only as their sum.
        b, btilde: weights shared by both parts (or ``bE``/``btildeE`` when they differ).
        order, embedded_order, stiffly_accurate (``b == aI[-1]``), dense, dense_order.
    """

    name: str
    reference: str
    gamma: float
    c: tuple[float, ...]
    aI: Rows
    aE: Rows | None
    b: tuple[float, ...]
    btilde: tuple[float, ...] | None  # None: no embedded method (fixed steps only)
    order: int
    embedded_order: int
    stiffly_accurate: bool = True
    bE: tuple[float, ...] | None = None
    btildeE: tuple[float, ...] | None = None
    dense: Rows | None = None
    dense_order: int | None = None
    notes: str = field(default="")

    @property
    def stages(self) -> int:
        return len(self.c)


@lru_cache(maxsize=256)
def as_tensor(values: tuple, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Coefficients as a (cached) tensor of ``dtype`` on ``device``; nested tuples become matrices."""
    import torch

    return torch.tensor(values, dtype=dtype, device=device)


Tableau = ExplicitRKTableau | RosenbrockTableau | ARKTableau
"""Any of the three tableau types (what an algorithm class names as its ``tableau``)."""
