"""Adams multistep methods: the coefficients (computed exactly from their definition) and the method data.

With equal steps ``h`` and ``f_j = f(t_j, y_j)``:

* Adams-Bashforth, ``k`` steps (explicit, order ``k``): ``y_{n+1} = y_n + h sum_{j=0}^{k-1} beta_j f_{n-j}``,
  ``beta_j = int_0^1 l_j(s) ds`` with ``l_j`` the Lagrange polynomial on the nodes ``s = 0, -1, ..., -(k-1)``
  that is 1 at ``s = -j`` (Hairer-Norsett-Wanner, Solving ODEs I, 2nd ed., III.1, eq. (1.5) and Table 1.1).
* Adams-Moulton with ``m`` coefficients (implicit, ``m - 1`` steps, order ``m``):
  ``y_{n+1} = y_n + h sum_{j=0}^{m-1} gamma_j f_{n+1-j}``, ``gamma_j = int_0^1 l_j(s) ds`` on the nodes
  ``s = 1, 0, ..., -(m-2)`` (ibid., eq. (1.8) and Table 1.2).

The coefficients are exact :class:`fractions.Fraction` values; ``tests/test_adams.py`` checks the order
conditions of both families and compares them with torchdiffeq's tables.

Methods (OrdinaryDiffEq.jl's ``OrdinaryDiffEqAdamsBashforthMoulton``, fixed steps, whose documentation cites
Hairer-Norsett-Wanner I): ``AB3``, ``AB4``, ``AB5`` (Adams-Bashforth) and ``ABM32``, ``ABM43``, ``ABM54``
(Adams-Bashforth predictor, one Adams-Moulton correction of the same order with one fewer step, then ``f`` at
the corrected value: PECE), started by Ralston's second-order method (AB3, ABM32) or the classical RK4 (the
others). ``torchdiffeq_adams``: torchdiffeq 0.2.5's ``AdamsBashforth`` / ``AdamsBashforthMoulton``
(``torchdiffeq/_impl/fixed_adams.py``): the order grows with the history from 3 to ``max_order - 1``
after two 3/8-rule steps, the corrector (Adams-Moulton one order higher) is iterated to a tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache

from ._base import ExplicitRKTableau
from .explicit import RALSTON, RK4, RK38

__all__ = ["AdamsTableau", "adams_bashforth", "adams_moulton", "AB3", "AB4", "AB5", "ABM32", "ABM43", "ABM54",
           "torchdiffeq_adams"]


def _integral_of_lagrange(nodes: tuple[int, ...], j: int) -> Fraction:
    """``int_0^1 prod_{i != j} (s - nodes[i]) / (nodes[j] - nodes[i]) ds``, exactly."""
    poly = [Fraction(1)]  # coefficients in increasing powers of s
    denom = Fraction(1)
    for i, xi in enumerate(nodes):
        if i == j:
            continue
        poly = [Fraction(0), *poly]  # times s
        for p in range(len(poly) - 1):
            poly[p] -= xi * poly[p + 1]
        denom *= nodes[j] - xi
    return sum((c / (p + 1) for p, c in enumerate(poly)), Fraction(0)) / denom


@cache
def adams_bashforth(k: int) -> tuple[Fraction, ...]:
    """The ``k``-step Adams-Bashforth weights ``beta_0 .. beta_{k-1}`` (of ``f_n, ..., f_{n-k+1}``)."""
    if k < 1:
        raise ValueError(f"Adams-Bashforth needs k >= 1 steps, got {k}")
    nodes = tuple(-j for j in range(k))
    return tuple(_integral_of_lagrange(nodes, j) for j in range(k))


@cache
def adams_moulton(m: int) -> tuple[Fraction, ...]:
    """The Adams-Moulton weights ``gamma_0 .. gamma_{m-1}`` (of ``f_{n+1}, f_n, ..., f_{n+2-m}``), order ``m``."""
    if m < 1:
        raise ValueError(f"Adams-Moulton needs m >= 1 coefficients, got {m}")
    nodes = tuple(1 - j for j in range(m))
    return tuple(_integral_of_lagrange(nodes, j) for j in range(m))


@dataclass(frozen=True)
class AdamsTableau:
    """An Adams method as data.

    Attributes:
        name: SciML name (or ``"AdamsBashforth"`` / ``"AdamsBashforthMoulton"`` for torchdiffeq's).
        reference: where the method is defined.
        order: the order once started (torchdiffeq's: the order of its first Adams steps, 3).
        min_steps, max_steps: Adams-Bashforth steps once ``min_steps`` values of ``f`` are known (before that,
            ``startup`` steps); the number of steps grows with the history up to ``max_steps``.
        corrector: ``"none"`` (Adams-Bashforth), ``"pece"`` (one Adams-Moulton correction, then ``f`` at the
            corrected value) or ``"iterate"`` (torchdiffeq's: fixed-point iteration of the corrector).
        corrector_extra: the corrector has ``k + corrector_extra`` coefficients after a ``k``-step predictor
            (0: the same order, OrdinaryDiffEq's ABM; 1: one order higher, torchdiffeq's).
        startup: the one-step method of the first steps.
        equal_steps_only: ``True`` (torchdiffeq's): the coefficients stay those of equal steps when the step
            changes (a warning says so); ``False``: a changed step restarts the method (``startup`` again).
        btilde, dense_order: no error estimator (fixed steps only); dense output is cubic Hermite.
    """

    name: str
    reference: str
    order: int
    min_steps: int
    max_steps: int
    corrector: str
    corrector_extra: int
    startup: ExplicitRKTableau
    equal_steps_only: bool = False
    btilde: None = None
    dense_order: int = 3


_HNW = ("E. Hairer, S. P. Norsett, G. Wanner, Solving Ordinary Differential Equations I, 2nd ed., Springer (1993), "
        "III.1 (Adams methods, Tables 1.1 and 1.2)")


def _sciml(name: str, k: int, corrector: str, startup: ExplicitRKTableau) -> AdamsTableau:
    reference = f"{_HNW}; OrdinaryDiffEq.jl's {name} (OrdinaryDiffEqAdamsBashforthMoulton)"
    return AdamsTableau(name=name, reference=reference, order=k, min_steps=k, max_steps=k, corrector=corrector,
                        corrector_extra=0, startup=startup)


AB3 = _sciml("AB3", 3, "none", RALSTON)
AB4 = _sciml("AB4", 4, "none", RK4)
AB5 = _sciml("AB5", 5, "none", RK4)
ABM32 = _sciml("ABM32", 3, "pece", RALSTON)
ABM43 = _sciml("ABM43", 4, "pece", RK4)
ABM54 = _sciml("ABM54", 5, "pece", RK4)


@cache
def torchdiffeq_adams(implicit: bool, max_order: int) -> AdamsTableau:
    """torchdiffeq 0.2.5's fixed-grid Adams solvers (``fixed_adams.py``): ``max_order`` is its option (the
    largest Adams-Moulton order; Adams-Bashforth runs up to ``max_order - 1`` steps)."""
    name = "AdamsBashforthMoulton" if implicit else "AdamsBashforth"
    return AdamsTableau(
        name=name, reference=f"torchdiffeq 0.2.5 {name} (torchdiffeq/_impl/fixed_adams.py); coefficients: {_HNW}",
        order=3, min_steps=3, max_steps=max_order - 1, corrector="iterate" if implicit else "none",
        corrector_extra=1, startup=RK38, equal_steps_only=True)
