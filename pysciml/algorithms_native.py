"""Algorithms of the native (torch) engine that have no OrdinaryDiffEq counterpart, so no Julia mapping.

They live apart from :mod:`pysciml.algorithms`, whose every class maps to a Julia solver (checked by the
Julia mapping tests). Both are second-order L-stable IMEX additive Runge-Kutta pairs, the low-order end of
what the SINODE paper (Zhang, Liu & Maulik, AAAI 2025) trains with; KenCarp3/4/5 are the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .algorithms import IMEXAlgorithm
from .engine.tableaus import ark as _ark
from .engine.tableaus._base import Tableau

__all__ = ["IMEXSSP2", "ARS222", "NATIVE_ALGORITHMS"]


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


NATIVE_ALGORITHMS: dict[str, type] = {c.__name__: c for c in (IMEXSSP2, ARS222)}
