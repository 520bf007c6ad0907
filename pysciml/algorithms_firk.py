"""Fully implicit Runge-Kutta (collocation) algorithms: RadauIIA5, RadauIIA3, GaussLegendre4, GaussLegendre6.

==============  =====  ========  =======================================  ================================
method          order  adaptive  stability                                notes
==============  =====  ========  =======================================  ================================
RadauIIA5       5      yes       L-stable, stiffly accurate               radau5's estimate; mass matrices
RadauIIA3       3      yes       L-stable, stiffly accurate               2nd-order embedded estimate
GaussLegendre4  4      no (dt=)  A-stable, symmetric, ``|R(inf)| = 1``    symplectic, not for stiff decay
GaussLegendre6  6      no (dt=)  A-stable, symmetric, ``|R(inf)| = 1``    symplectic, not for stiff decay
==============  =====  ========  =======================================  ================================

Every step solves all stages at once by simplified Newton, one real ``n x n`` LU per real eigenvalue of ``A^{-1}``
and one complex ``n x n`` LU per complex pair (:mod:`pysciml.engine.firk`): dense LU (``DenseLU()``, the default) or
SciPy's SuperLU on the sparse Jacobian (``linsolve=SparseLU()`` with the problem's ``jac_prototype`` or a sparse
``jac``: :mod:`pysciml.engine.firk_sparse`; the same steps and answers as dense LU to round-off, tested);
``linsolve=GMRES()`` is refused. A constant mass matrix (``ODEProblem(..., mass_matrix=M)``, ``M`` may be singular:
index-1 DAEs) is solved by every method here (tested: each keeps its order with a nonsingular ``M``; RadauIIA5 and
RadauIIA3 on the Robertson DAE). Adaptive solves use radau5's predictive controller with its 1.2x step hold
(:class:`~pysciml.engine.firk_control.PredictiveController`) unless ``controller=`` is given. Dense output is the
collocation polynomial (order ``s``), so adaptive RadauIIA5 solves land their steps on ``saveat`` times.
Tableaus: :mod:`pysciml.engine.tableaus.firk`. ``backend='julia'`` runs OrdinaryDiffEqFIRK's RadauIIA5, RadauIIA3
and ``GaussLegendre(num_stages = 2 or 3)`` (the same collocation methods; options as
:func:`pysciml.julia._mapping.algorithm_options` says); it refuses GaussLegendre4/6 with a mass matrix, which
OrdinaryDiffEq's GaussLegendre does not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .algorithms import ImplicitAlgorithm
from .engine.tableaus import firk as _firk
from .engine.tableaus._base import Tableau
from .errors import InputError
from .linsolve_options import GMRES

__all__ = ["FIRKAlgorithm", "RadauIIA5", "RadauIIA3", "GaussLegendre4", "GaussLegendre6", "FIRK_ALGORITHMS"]

_GAUSS_FIXED = ("the Gauss-Legendre methods have no embedded estimate (pysciml derives none); "
                "use RadauIIA5() for adaptive stiff solves")


@dataclass(frozen=True, repr=False)
class FIRKAlgorithm(ImplicitAlgorithm):
    """A fully implicit Runge-Kutta method: all ``s`` stages coupled, solved together by simplified Newton.

    Args:
        max_newton_iters: Newton iterations per step before the step is rejected (radau5's default 7).
        newton_kappa: stop Newton when the predicted error ``theta / (1 - theta) ||dW||`` is below ``kappa`` (in
            units of the tolerance); ``None``: radau5's ``max(10 eps / rtol, min(0.03, sqrt(rtol)))``.
        jac_reuse: keep the Jacobian for the next step when Newton's contraction ``theta`` was at most this
            (radau5's 0.001); ``0`` computes a Jacobian at every accepted step.
    """

    max_newton_iters: int = 7
    newton_kappa: float | None = None
    jac_reuse: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.linsolve, GMRES):
            raise InputError(f"{self.name}() solves its stages with (dense or sparse) LU only; drop linsolve=GMRES() "
                             "(or use linsolve=SparseLU() with jac_prototype=...), or use KenCarp4(linsolve=GMRES()) "
                             "for matrix-free Newton-Krylov")
        if isinstance(self.max_newton_iters, bool) or not isinstance(self.max_newton_iters, int) \
                or self.max_newton_iters < 1:
            raise InputError(f"max_newton_iters must be an integer >= 1, got {self.max_newton_iters!r}")
        if self.newton_kappa is not None and not 0 < self.newton_kappa < 1:
            raise InputError(f"newton_kappa must lie in (0, 1) or be None, got {self.newton_kappa!r}")
        if not 0 <= self.jac_reuse < 1:
            raise InputError(f"jac_reuse must lie in [0, 1), got {self.jac_reuse!r}")

    @property
    def order(self) -> int:
        return int(self.tableau.order)


@dataclass(frozen=True, repr=False)
class RadauIIA5(FIRKAlgorithm):
    """Radau IIA, 3 stages, order 5 (Hairer & Wanner's radau5): L-stable, stiffly accurate, adaptive with the
    embedded third-order estimate filtered by ``(I - gamma0 h J)^{-1}``. For stiff problems at tight tolerances
    (``rtol <= 1e-6``) and index-1 DAEs with a constant mass matrix."""

    _tableau: ClassVar[Tableau | None] = _firk.RADAU_IIA5  # type: ignore[assignment]
    julia_name: ClassVar[str] = "RadauIIA5"


@dataclass(frozen=True, repr=False)
class RadauIIA3(FIRKAlgorithm):
    """Radau IIA, 2 stages, order 3: L-stable, stiffly accurate, adaptive with a second-order embedded estimate
    (derived for pysciml, see :mod:`pysciml.engine.tableaus.firk`). For loose tolerances."""

    _tableau: ClassVar[Tableau | None] = _firk.RADAU_IIA3  # type: ignore[assignment]
    julia_name: ClassVar[str] = "RadauIIA3"


@dataclass(frozen=True, repr=False)
class GaussLegendre4(FIRKAlgorithm):
    """Gauss-Legendre collocation, 2 stages, order 4: A-stable, symmetric and symplectic; fixed steps (``dt=``)
    only."""

    _tableau: ClassVar[Tableau | None] = _firk.GAUSS_LEGENDRE4  # type: ignore[assignment]
    julia_name: ClassVar[str] = "GaussLegendre"
    no_adaptivity_reason: ClassVar[str | None] = _GAUSS_FIXED


@dataclass(frozen=True, repr=False)
class GaussLegendre6(FIRKAlgorithm):
    """Gauss-Legendre collocation, 3 stages, order 6: A-stable, symmetric and symplectic; fixed steps (``dt=``)
    only."""

    _tableau: ClassVar[Tableau | None] = _firk.GAUSS_LEGENDRE6  # type: ignore[assignment]
    julia_name: ClassVar[str] = "GaussLegendre"
    no_adaptivity_reason: ClassVar[str | None] = _GAUSS_FIXED


FIRK_ALGORITHMS: dict[str, type] = {c.__name__: c for c in (RadauIIA5, RadauIIA3, GaussLegendre4, GaussLegendre6)}
