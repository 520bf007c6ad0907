"""Algorithm descriptors: backend-neutral objects with SciML names and their options.

An algorithm object says *what* method to use and with which options; it holds no per-solve state. The
native engine looks up the method's tableau (``alg.tableau``); the Julia engine maps ``alg.julia_name``.
Capabilities are types, not flags to probe: :class:`ExplicitAlgorithm`, :class:`RosenbrockAlgorithm`,
:class:`ESDIRKAlgorithm` and the :class:`IMEXAlgorithm` marker (accepts a :class:`SplitODEProblem`
additively).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import ClassVar

from .engine.tableaus import ark as _ark
from .engine.tableaus import explicit as _explicit
from .engine.tableaus import rosenbrock as _rosenbrock
from .engine.tableaus import sdirk as _sdirk
from .engine.tableaus._base import Tableau
from .errors import InputError
from .linsolve_options import GMRES, LINEAR_SOLVERS, DenseLU, LinearSolver, SparseLU

__all__ = [
    "Algorithm", "ExplicitAlgorithm", "ImplicitAlgorithm", "RosenbrockAlgorithm", "ESDIRKAlgorithm",
    "IMEXAlgorithm",
    "Tsit5", "DP5", "BS3", "Vern7", "RK4", "Midpoint", "Heun", "Euler", "AdaptiveHeun", "Ralston",
    "Rosenbrock23", "ROS3P", "Rodas4", "Rodas5", "Rodas5P",
    "KenCarp3", "KenCarp4", "KenCarp5", "Kvaerno3", "Kvaerno5",
    "ImplicitEuler", "Trapezoid", "SDIRK2", "TRBDF2",
    "ALGORITHMS",
]


@dataclass(frozen=True)
class Algorithm:
    """Base of all algorithms. Concrete subclasses set ``_tableau`` (their tableau constant from
    :mod:`pysciml.engine.tableaus`) and ``julia_name``."""

    _tableau: ClassVar[Tableau | None] = None
    julia_name: ClassVar[str] = ""
    #: PI-controller beta2 when it differs from 2/(5 p) (OrdinaryDiffEq uses 0.04 for DP5 and Tsit5,
    #: with beta1 = 1/p - 3 beta2/4); ``None`` keeps the general defaults.
    default_beta2: ClassVar[float | None] = None
    #: Why the method's embedded estimate cannot control the step (the method is then fixed-step only).
    no_adaptivity_reason: ClassVar[str | None] = None
    #: The tightest ``rtol`` the method is meant for: below it the global error of a low-order method can
    #: exceed the tolerance by far (error accumulation), and ``solve`` warns.
    min_rtol: ClassVar[float | None] = None

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def tableau(self) -> Tableau:
        """The coefficient data this method runs on (a frozen tableau dataclass)."""
        tab = type(self)._tableau
        if tab is None:
            raise TypeError(f"{type(self).__name__} is an abstract algorithm class: it has no tableau")
        return tab

    @property
    def order(self) -> int:
        return int(self.tableau.order)

    @property
    def interpolant_order(self) -> int:
        """Order of the continuous extension between steps (the tableau's own, else cubic Hermite)."""
        return int(self.tableau.dense_order or 3)

    @property
    def is_adaptive(self) -> bool:
        """True if the method has an error estimator that can control the step (``adaptive=True``)."""
        return self.no_adaptivity_reason is None and self.tableau.btilde is not None

    @property
    def is_implicit(self) -> bool:
        return isinstance(self, ImplicitAlgorithm)

    def __repr__(self) -> str:  # Rodas5P() rather than a dump of every default option
        opts = []
        for fld in fields(self):
            default = fld.default_factory() if fld.default_factory is not MISSING else fld.default
            value = getattr(self, fld.name)
            if value != default:
                opts.append(f"{fld.name}={value!r}")
        return f"{self.name}({', '.join(opts)})"


@dataclass(frozen=True, repr=False)
class ExplicitAlgorithm(Algorithm):
    """Explicit Runge-Kutta method (non-stiff problems)."""


@dataclass(frozen=True, repr=False)
class ImplicitAlgorithm(Algorithm):
    """Method that needs the Jacobian ``df/du`` and linear solves.

    Args:
        autodiff: compute the Jacobian by autodiff (reverse mode; forward mode inside
            ``torch.utils.checkpoint``) when the problem gives no ``jac``; ``False`` uses finite differences.
        linsolve: ``DenseLU()`` (batched LU, the default), ``GMRES(...)`` (matrix-free Newton-Krylov on
            Jacobian-vector products, for large systems) or ``SparseLU()`` (SuperLU on a sparse Jacobian).
    """

    autodiff: bool = True
    linsolve: LinearSolver = field(default_factory=DenseLU)

    def __post_init__(self) -> None:
        if isinstance(self.linsolve, str):
            choices = {"lu": DenseLU(), "gmres": GMRES(), "sparselu": SparseLU()}
            if self.linsolve.lower() not in choices:
                raise InputError(f"linsolve={self.linsolve!r} is unknown; use DenseLU(), SparseLU() or GMRES(rtol=...)")
            object.__setattr__(self, "linsolve", choices[self.linsolve.lower()])
        if not isinstance(self.linsolve, LINEAR_SOLVERS):
            raise InputError(f"linsolve must be DenseLU(), SparseLU() or GMRES(...), got {self.linsolve!r}")


@dataclass(frozen=True, repr=False)
class RosenbrockAlgorithm(ImplicitAlgorithm):
    """Linearly implicit Rosenbrock(-Wanner) method: one LU per step, no Newton iteration."""


@dataclass(frozen=True, repr=False)
class ESDIRKAlgorithm(ImplicitAlgorithm):
    """Singly diagonally implicit RK with explicit first stage; stages solved by simplified Newton.

    Args:
        max_newton_iters: iterations per stage before the step is rejected and ``dt`` shrunk.
        newton_kappa: stop when the estimated Newton error is below ``kappa`` (in units of the tolerance).
        smooth_est: filter the error estimate by ``(I - gamma dt J)^{-1}`` (OrdinaryDiffEq's default): fewer
            rejected steps on very stiff problems, less reliable accuracy on moderately stiff ones.
    """

    max_newton_iters: int = 10
    newton_kappa: float = 0.01
    smooth_est: bool = False


@dataclass(frozen=True, repr=False)
class IMEXAlgorithm(ESDIRKAlgorithm):
    """Additive (IMEX) method: on a :class:`SplitODEProblem` the implicit part is solved by the ESDIRK
    tableau and the explicit part by the explicit tableau; on an :class:`ODEProblem` it is fully implicit."""


@dataclass(frozen=True, repr=False)
class Tsit5(ExplicitAlgorithm):
    """Tsitouras 5(4), FSAL, 4th-order free interpolant. The default non-stiff method."""

    _tableau: ClassVar[Tableau | None] = _explicit.TSIT5
    julia_name: ClassVar[str] = "Tsit5"
    default_beta2: ClassVar[float | None] = 0.04


@dataclass(frozen=True, repr=False)
class DP5(ExplicitAlgorithm):
    """Dormand-Prince 5(4) (torchdiffeq's 'dopri5'), with Shampine's 4th-order dense output."""

    _tableau: ClassVar[Tableau | None] = _explicit.DP5
    julia_name: ClassVar[str] = "DP5"
    default_beta2: ClassVar[float | None] = 0.04


@dataclass(frozen=True, repr=False)
class BS3(ExplicitAlgorithm):
    """Bogacki-Shampine 3(2) (torchdiffeq's 'bosh3'), for loose tolerances."""

    _tableau: ClassVar[Tableau | None] = _explicit.BS3
    julia_name: ClassVar[str] = "BS3"


@dataclass(frozen=True, repr=False)
class Vern7(ExplicitAlgorithm):
    """Verner's 'most efficient' 7(6) pair, for tight tolerances on non-stiff problems."""

    _tableau: ClassVar[Tableau | None] = _explicit.VERN7
    julia_name: ClassVar[str] = "Vern7"


@dataclass(frozen=True, repr=False)
class RK4(ExplicitAlgorithm):
    """Classic 4th-order Runge-Kutta, fixed step only."""

    _tableau: ClassVar[Tableau | None] = _explicit.RK4
    julia_name: ClassVar[str] = "RK4"


@dataclass(frozen=True, repr=False)
class Midpoint(ExplicitAlgorithm):
    """Explicit midpoint rule (2nd order), fixed step only."""

    _tableau: ClassVar[Tableau | None] = _explicit.MIDPOINT
    julia_name: ClassVar[str] = "Midpoint"


@dataclass(frozen=True, repr=False)
class Heun(ExplicitAlgorithm):
    """Heun's method (explicit trapezoidal rule, 2nd order), fixed step only (like ``Midpoint``; OrdinaryDiffEq's
    Heun also steps adaptively with an embedded Euler estimate, which pysciml does not offer)."""

    _tableau: ClassVar[Tableau | None] = _explicit.HEUN
    julia_name: ClassVar[str] = "Heun"


@dataclass(frozen=True, repr=False)
class AdaptiveHeun(ExplicitAlgorithm):
    """Heun's method with an embedded Euler estimate: the Heun-Euler 2(1) pair (torchdiffeq's 'adaptive_heun';
    OrdinaryDiffEq's ``Heun``, which steps adaptively this way). For loose tolerances on cheap problems."""

    _tableau: ClassVar[Tableau | None] = _explicit.ADAPTIVE_HEUN
    julia_name: ClassVar[str] = "Heun"


@dataclass(frozen=True, repr=False)
class Ralston(ExplicitAlgorithm):
    """Ralston's second-order method (minimum error bound, c2 = 2/3) with an embedded Euler estimate, 2(1),
    as OrdinaryDiffEq's ``Ralston``."""

    _tableau: ClassVar[Tableau | None] = _explicit.RALSTON
    julia_name: ClassVar[str] = "Ralston"


@dataclass(frozen=True, repr=False)
class Euler(ExplicitAlgorithm):
    """Forward Euler (1st order), fixed step only."""

    _tableau: ClassVar[Tableau | None] = _explicit.EULER
    julia_name: ClassVar[str] = "Euler"


@dataclass(frozen=True, repr=False)
class Rosenbrock23(RosenbrockAlgorithm):
    """Shampine-Reichelt ode23s: L-stable order 2(3) W-method, for loose tolerances (``rtol >= 1e-5``: at 1e-6
    its global error exceeds 100 x rtol on some stiff linear systems; ``solve`` warns below 1e-5)."""

    _tableau: ClassVar[Tableau | None] = _rosenbrock.ROSENBROCK23
    julia_name: ClassVar[str] = "Rosenbrock23"
    min_rtol: ClassVar[float | None] = 1e-5


@dataclass(frozen=True, repr=False)
class ROS3P(RosenbrockAlgorithm):
    """Lang-Verwer 3rd-order Rosenbrock method, no order reduction on parabolic problems. Fixed steps only.

    Its published embedded formula has the same stability function as the method itself, so on every linear
    constant-coefficient problem the error estimate is rounding noise and adaptive steps are not controlled
    (OrdinaryDiffEq.jl has the same defect open, issue 4291). pysciml therefore runs ROS3P with
    ``adaptive=False`` and a given ``dt`` only; use ``Rodas4()``/``Rodas5P()`` for adaptive stiff solves.
    """

    _tableau: ClassVar[Tableau | None] = _rosenbrock.ROS3P
    julia_name: ClassVar[str] = "ROS3P"
    no_adaptivity_reason: ClassVar[str | None] = (
        "its embedded formula (Lang & Verwer 2001) has the same stability function as the method, so the "
        "error estimate vanishes on linear problems and cannot control the step"
    )


@dataclass(frozen=True, repr=False)
class Rodas4(RosenbrockAlgorithm):
    """Hairer-Wanner Rodas 4(3), stiffly accurate, stiff-aware 3rd-order interpolant."""

    _tableau: ClassVar[Tableau | None] = _rosenbrock.RODAS4
    julia_name: ClassVar[str] = "Rodas4"


@dataclass(frozen=True, repr=False)
class Rodas5(RosenbrockAlgorithm):
    """Di Marzo's Rodas5 5(4), stiffly accurate, 4th-order stiff-aware interpolant (Rodas5P's predecessor)."""

    _tableau: ClassVar[Tableau | None] = _rosenbrock.RODAS5
    julia_name: ClassVar[str] = "Rodas5"


@dataclass(frozen=True, repr=False)
class Rodas5P(RosenbrockAlgorithm):
    """Steinebach's Rodas5P 5(4), stiffly accurate, 4th-order stiff-aware interpolant. The default stiff method."""

    _tableau: ClassVar[Tableau | None] = _rosenbrock.RODAS5P
    julia_name: ClassVar[str] = "Rodas5P"


@dataclass(frozen=True, repr=False)
class KenCarp3(IMEXAlgorithm):
    """Kennedy-Carpenter ARK3(2)4L[2]SA: L-stable ESDIRK + explicit pair, order 3."""

    _tableau: ClassVar[Tableau | None] = _ark.KENCARP3
    julia_name: ClassVar[str] = "KenCarp3"


@dataclass(frozen=True, repr=False)
class KenCarp4(IMEXAlgorithm):
    """Kennedy-Carpenter ARK4(3)6L[2]SA: L-stable ESDIRK + explicit pair, order 4."""

    _tableau: ClassVar[Tableau | None] = _ark.KENCARP4
    julia_name: ClassVar[str] = "KenCarp4"


@dataclass(frozen=True, repr=False)
class KenCarp5(IMEXAlgorithm):
    """Kennedy-Carpenter ARK5(4)8L[2]SA: L-stable ESDIRK + explicit pair, order 5."""

    _tableau: ClassVar[Tableau | None] = _ark.KENCARP5
    julia_name: ClassVar[str] = "KenCarp5"


@dataclass(frozen=True, repr=False)
class Kvaerno3(ESDIRKAlgorithm):
    """Kvaerno's ESDIRK 3(2) with 4 stages, L-stable, stiffly accurate (implicit only), cubic Hermite
    interpolant."""

    _tableau: ClassVar[Tableau | None] = _ark.KVAERNO3
    julia_name: ClassVar[str] = "Kvaerno3"


@dataclass(frozen=True, repr=False)
class Kvaerno5(ESDIRKAlgorithm):
    """Kvaerno's ESDIRK 5(4), L-stable, stiffly accurate (implicit only)."""

    _tableau: ClassVar[Tableau | None] = _ark.KVAERNO5
    julia_name: ClassVar[str] = "Kvaerno5"


@dataclass(frozen=True, repr=False)
class ImplicitEuler(ESDIRKAlgorithm):
    """Implicit (backward) Euler, order 1, L-stable, stiffly accurate. Adaptive: the error estimate is the
    difference to the trapezoidal rule, ``dt/2 (f(t1, u1) - f(t0, u0))`` (OrdinaryDiffEq estimates the same
    ``dt^2 u''/2`` term by divided differences over two steps), or fixed steps with ``dt``. The estimate controls
    the local error only: the global error grows with the number of steps (up to ~100 x rtol at 1e-3 on stiff
    linear systems, ~300 x at 1e-4), so ``solve`` warns below ``rtol = 1e-3``."""

    _tableau: ClassVar[Tableau | None] = _sdirk.IMPLICIT_EULER
    julia_name: ClassVar[str] = "ImplicitEuler"
    min_rtol: ClassVar[float | None] = 1e-3


@dataclass(frozen=True, repr=False)
class Trapezoid(ESDIRKAlgorithm):
    """The trapezoidal rule (Crank-Nicolson), order 2, A-stable but not L-stable (stiff components oscillate
    with a factor near -1 per step), one implicit stage per step. Adaptive with a first-order companion estimate
    (conservative: more steps than the tolerance needs), or fixed steps."""

    _tableau: ClassVar[Tableau | None] = _sdirk.TRAPEZOID
    julia_name: ClassVar[str] = "Trapezoid"


@dataclass(frozen=True, repr=False)
class SDIRK2(ESDIRKAlgorithm):
    """OrdinaryDiffEq's SDIRK2: two implicit stages with gamma = 1, order 2, A-stable (its stability function
    tends to -1/2 at infinity, so it is not L-stable), embedded implicit Euler estimate. For torchdiffeq's
    'sdirk2' (Alexander's L-stable method) see ``Alexander2``."""

    _tableau: ClassVar[Tableau | None] = _sdirk.SDIRK2
    julia_name: ClassVar[str] = "SDIRK2"


@dataclass(frozen=True, repr=False)
class TRBDF2(ESDIRKAlgorithm):
    """TR-BDF2 (Bank et al. 1985) in Hosea & Shampine's ESDIRK form: a trapezoidal stage then a BDF2 stage,
    order 2, L-stable, stiffly accurate, with their third-order embedded estimate; cubic Hermite interpolant.
    The estimate is the local error of the solution advanced (no local extrapolation), so global errors
    accumulate: up to 50 x rtol at 1e-5 on stiff linear systems, 110 x at 1e-6; ``solve`` warns below
    ``rtol = 1e-5``. For fixed large steps through stiff transients use ``smooth_est=True``."""

    _tableau: ClassVar[Tableau | None] = _sdirk.TRBDF2
    julia_name: ClassVar[str] = "TRBDF2"
    min_rtol: ClassVar[float | None] = 1e-5


ALGORITHMS: dict[str, type] = {
    c.__name__: c
    for c in (Tsit5, DP5, BS3, Vern7, RK4, Midpoint, Heun, Euler, AdaptiveHeun, Ralston, Rosenbrock23, ROS3P,
              Rodas4, Rodas5, Rodas5P, KenCarp3, KenCarp4, KenCarp5, Kvaerno3, Kvaerno5, ImplicitEuler, Trapezoid,
              SDIRK2, TRBDF2)
}
