"""Algorithms of the native (torch) engine that the Julia engine does not offer, so no Julia mapping.

They live apart from :mod:`pysciml.algorithms`, whose every class maps to a Julia solver (checked by the
Julia mapping tests). IMEXSSP2 and ARS222 are second-order L-stable IMEX additive Runge-Kutta pairs, the
low-order end of what the SINODE paper (Zhang, Liu & Maulik, AAAI 2025) trains with; KenCarp3/4/5 are the rest.
RKF12, Heun3, RK38 and Alexander2 are torchdiffeq's 'fehlberg2', 'heun3', 'rk4' and 'sdirk2'. DP8 has an OrdinaryDiffEq
counterpart of the same name, in OrdinaryDiffEqHighOrderRK, a package PySciML.jl does not load yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .algorithms import ESDIRKAlgorithm, ExplicitAlgorithm, IMEXAlgorithm
from .engine.tableaus import ark as _ark
from .engine.tableaus import explicit as _explicit
from .engine.tableaus import sdirk as _sdirk
from .engine.tableaus._base import Tableau

__all__ = ["IMEXSSP2", "ARS222", "DP8", "RKF12", "Heun3", "RK38", "Alexander2", "NATIVE_ALGORITHMS"]


@dataclass(frozen=True, repr=False)
class IMEXSSP2(IMEXAlgorithm):
    """Pareschi-Russo IMEX-SSP2(2,2,2): L-stable SDIRK + SSP explicit pair, order 2, with a first-order
    embedded estimate (adaptive or fixed steps). PETSc's ``TSARKIMEXL2``, the SINODE paper's "l2"."""

    _tableau: ClassVar[Tableau | None] = _ark.IMEXSSP2


@dataclass(frozen=True, repr=False)
class ARS222(IMEXAlgorithm):
    """Ascher-Ruuth-Spiteri ARS(2,2,2): L-stable, stiffly accurate in both parts, order 2, two implicit
    stages and two new explicit evaluations per step (FSAL). No error estimate: fixed steps (``dt=``) only."""

    _tableau: ClassVar[Tableau | None] = _ark.ARS222


@dataclass(frozen=True, repr=False)
class DP8(ExplicitAlgorithm):
    """Dormand-Prince 8(5,3), the method of Hairer's DOP853 (torchdiffeq's 'dopri8'): 12 stages of order 8 with
    DOP853's combined 5th- and 3rd-order error estimate, for tight tolerances on non-stiff problems. Dense output
    is cubic Hermite (DOP853's 7th-order interpolant is not included), so adaptive solves land steps on the save
    times. Under ``compile=True`` the compiled step uses the 5th-order estimate alone."""

    _tableau: ClassVar[Tableau | None] = _explicit.DP8


@dataclass(frozen=True, repr=False)
class RKF12(ExplicitAlgorithm):
    """Fehlberg's RK1(2) pair advancing its second-order solution, 2(1), three stages (torchdiffeq's
    'fehlberg2'). Its estimate is the error of Fehlberg's first-order formula, whose error constant is tiny, so it
    underestimates the error of the solution advanced: global errors of 40-120 x rtol on a linear test
    (tests/test_tableaus_more.py). Prefer ``BS3()`` when the tolerance matters."""

    _tableau: ClassVar[Tableau | None] = _explicit.RKF12


@dataclass(frozen=True, repr=False)
class Heun3(ExplicitAlgorithm):
    """Heun's third-order method (three stages), fixed step only (torchdiffeq's 'heun3')."""

    _tableau: ClassVar[Tableau | None] = _explicit.HEUN3


@dataclass(frozen=True, repr=False)
class RK38(ExplicitAlgorithm):
    """Kutta's 3/8 rule (four stages, order 4), fixed step only: torchdiffeq's 'rk4' (pysciml's ``RK4`` is the
    classical method; the two agree on linear autonomous problems and differ by O(h^5) per step otherwise)."""

    _tableau: ClassVar[Tableau | None] = _explicit.RK38


@dataclass(frozen=True, repr=False)
class Alexander2(ESDIRKAlgorithm):
    """Alexander's two-stage SDIRK, gamma = 1 - 1/sqrt(2): order 2, L-stable, stiffly accurate (torchdiffeq's
    'sdirk2'), with a first-order embedded estimate ``dt gamma (k_2 - k_1)`` on its two implicit stages."""

    _tableau: ClassVar[Tableau | None] = _sdirk.ALEXANDER2


NATIVE_ALGORITHMS: dict[str, type] = {c.__name__: c for c in (IMEXSSP2, ARS222, DP8, RKF12, Heun3, RK38, Alexander2)}
