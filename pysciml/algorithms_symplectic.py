"""Symplectic algorithms (SciML names) for :class:`~pysciml.problem_dynamical.HamiltonianProblem` and
:class:`~pysciml.problem_dynamical.SecondOrderODEProblem`.

All run with fixed steps (``solve(prob, Yoshida4(), dt=0.01)``): a symplectic method keeps the energy error
bounded over long times only with a constant step (variable steps break the near-conservation). The capability
is a type: :class:`SymplecticAlgorithm`; the explicit splitting methods are :class:`ExplicitSymplecticAlgorithm`
(they need a separable ``H = T(p) + V(q)``, or an acceleration that does not depend on the velocity);
:class:`ImplicitMidpoint` is symplectic for every ``H`` and solves any :class:`~pysciml.problem.ODEProblem`.

==================  =====  ==================================  ======================================
method              order  force evaluations per step          needs
==================  =====  ==================================  ======================================
VelocityVerlet      2      1 (+1 velocity)                     separable H / a(t, x)
Leapfrog            2      1 (+1 velocity)                     separable H / a(t, x)
Yoshida4            4      3 (+3 velocity)                     separable H / a(t, x)
McAte5              5      6 (+6 velocity)                     separable H with T quadratic in p
Yoshida6            6      7 (+7 velocity)                     separable H / a(t, x)
ImplicitMidpoint    2      Newton: 1 Jacobian + 1 f per iter   any H, any ODEProblem
==================  =====  ==================================  ======================================

(For a second-order problem the velocity is ``v`` itself and costs nothing.)

Dense output (``sol(t)``, ``saveat`` between steps) is cubic Hermite from the vector field at both ends of each
step, computed only for the steps that are interpolated: it converges at order ``min(p, 4)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .algorithms import Algorithm, ImplicitAlgorithm
from .engine.tableaus import symplectic as _sym
from .engine.tableaus._base import Tableau
from .errors import InputError

if TYPE_CHECKING:
    from .problem import ODEProblem

__all__ = [
    "SymplecticAlgorithm", "ExplicitSymplecticAlgorithm", "VelocityVerlet", "Leapfrog", "Yoshida4", "Yoshida6",
    "McAte5", "ImplicitMidpoint", "SYMPLECTIC_ALGORITHMS", "check_symplectic",
]

_FIXED = "a symplectic method keeps the energy bounded only with a constant step; it has no error estimator"


@dataclass(frozen=True, repr=False)
class SymplecticAlgorithm(Algorithm):
    """Marker: a symplectic method (fixed steps only)."""

    no_adaptivity_reason: ClassVar[str | None] = _FIXED


@dataclass(frozen=True, repr=False)
class ExplicitSymplecticAlgorithm(SymplecticAlgorithm):
    """An explicit splitting (drift-kick) method: needs a partitioned problem with a separable ``H`` (or an
    acceleration independent of the velocity)."""


@dataclass(frozen=True, repr=False)
class VelocityVerlet(ExplicitSymplecticAlgorithm):
    """Stormer-Verlet in kick-drift-kick form (velocity Verlet), order 2, symmetric; one force evaluation per step
    (the last kick's force is the next step's first)."""

    _tableau: ClassVar[Tableau | None] = _sym.VELOCITY_VERLET  # type: ignore[assignment]
    julia_name: ClassVar[str] = "VelocityVerlet"


@dataclass(frozen=True, repr=False)
class Leapfrog(ExplicitSymplecticAlgorithm):
    """Stormer-Verlet in drift-kick-drift form, order 2, symmetric; one force evaluation per step.

    The same trajectory as :class:`VelocityVerlet` up to where the half steps sit (positions and momenta are
    staggered by half a kick), so both converge at order 2 with different error constants. OrdinaryDiffEq's
    ``VerletLeapfrog`` is kick-drift-kick and ``LeapfrogDriftKickDrift`` drift-kick-drift: this class maps to
    the latter."""

    _tableau: ClassVar[Tableau | None] = _sym.LEAPFROG  # type: ignore[assignment]
    julia_name: ClassVar[str] = "LeapfrogDriftKickDrift"


@dataclass(frozen=True, repr=False)
class Yoshida4(ExplicitSymplecticAlgorithm):
    """Yoshida's 4th-order triple-jump composition of leapfrog (1990), the same method as Forest-Ruth (1990) and
    Candy-Rozmus (1991; OrdinaryDiffEq's ``CandyRoz4``); symmetric, three force evaluations per step. Its
    negative middle weight (-1.70) makes the error constant large: prefer McAte5/Yoshida6 for accuracy."""

    _tableau: ClassVar[Tableau | None] = _sym.YOSHIDA4  # type: ignore[assignment]
    julia_name: ClassVar[str] = "CandyRoz4"


@dataclass(frozen=True, repr=False)
class Yoshida6(ExplicitSymplecticAlgorithm):
    """Yoshida's 6th-order 7-fold composition of velocity Verlet (1990, solution A; the composition OrdinaryDiffEq's
    ``Yoshida6`` uses), symmetric, seven force evaluations per step."""

    _tableau: ClassVar[Tableau | None] = _sym.YOSHIDA6  # type: ignore[assignment]
    julia_name: ClassVar[str] = "Yoshida6"


@dataclass(frozen=True, repr=False)
class McAte5(ExplicitSymplecticAlgorithm):
    """McLachlan-Atela's optimised 5th-order method (1992), six force evaluations per step, for a kinetic energy
    quadratic in ``p`` (a Runge-Kutta-Nystrom method: every second-order problem, and ``H = p^T M p / 2 + V(q)``);
    refused for a separable ``H`` whose kinetic energy is not quadratic (its order would drop)."""

    _tableau: ClassVar[Tableau | None] = _sym.MCATE5  # type: ignore[assignment]
    julia_name: ClassVar[str] = "McAte5"


@dataclass(frozen=True, repr=False)
class ImplicitMidpoint(SymplecticAlgorithm, ImplicitAlgorithm):
    """The implicit midpoint rule (1-stage Gauss method), order 2, symmetric and symplectic for every ``H``; it
    conserves every quadratic invariant of any ODE to round-off (given Newton's tolerance). Valid on a plain
    :class:`~pysciml.problem.ODEProblem` too.

    The stage ``Y = u_n + h/2 f(t_n + h/2, Y)`` is solved by simplified Newton with the Jacobian (torch.func,
    or the problem's ``jac``) at ``u_n``, factored once per step; ``u_{n+1} = 2 Y - u_n``. A stage whose Newton
    iteration does not converge in ``max_newton_iters`` ends the trajectory with ``ReturnCode.ConvergenceFailure``
    (fixed steps: nothing to retry); use a smaller ``dt``. Under the discrete adjoint the converged stage carries
    the exact derivative of the stage equation (implicit function theorem), not the iteration's.

    Args:
        newton_tol: converged when the estimated remaining error of the stage, relative to its largest component,
            is below this; ``None``: a tenth of the state's dtype epsilon (round-off: quadratic invariants are then
            conserved to round-off; an update of two epsilons also ends the iteration).
        max_newton_iters: iterations before the stage counts as not converged.
        autodiff, linsolve: as for the other implicit methods (``DenseLU()`` only).
    """

    newton_tol: float | None = None
    max_newton_iters: int = 20

    _tableau: ClassVar[Tableau | None] = _sym.IMPLICIT_MIDPOINT  # type: ignore[assignment]
    julia_name: ClassVar[str] = "ImplicitMidpoint"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.newton_tol is not None and not (0 < self.newton_tol < 1):
            raise InputError(f"ImplicitMidpoint(newton_tol={self.newton_tol!r}): give a number in (0, 1) or None "
                             "(round-off)")
        if isinstance(self.max_newton_iters, bool) or not isinstance(self.max_newton_iters, int) \
                or self.max_newton_iters < 1:
            raise InputError(f"ImplicitMidpoint(max_newton_iters={self.max_newton_iters!r}): give a positive integer")
        from .linsolve_options import DenseLU

        if not isinstance(self.linsolve, DenseLU):
            raise InputError("ImplicitMidpoint supports linsolve=DenseLU() only (a dense Newton matrix per "
                             "trajectory); use batched=True to keep the matrices per trajectory")


SYMPLECTIC_ALGORITHMS: dict[str, type] = {
    c.__name__: c for c in (VelocityVerlet, Leapfrog, Yoshida4, Yoshida6, McAte5, ImplicitMidpoint)
}


def check_symplectic(alg: Algorithm, prob: ODEProblem) -> None:
    """Refuse a symplectic algorithm on a problem it cannot solve (:class:`InputError` naming the fix)."""
    if not isinstance(alg, ExplicitSymplecticAlgorithm):
        return
    from .problem_dynamical import HamiltonianProblem, SecondOrderODEProblem  # here: this module stays torch-free

    name = alg.name
    if isinstance(prob, HamiltonianProblem):
        if not prob.separable:
            raise InputError(
                f"{name}() needs a separable Hamiltonian H = T(p) + V(q); this HamiltonianProblem has "
                "separable=False. If H is separable, pass separable=True (it is checked); otherwise solve with "
                "ImplicitMidpoint() (symplectic for any H) or a general method (Vern7(), Tsit5())")
        if alg.tableau.quadratic_kinetic_only and not prob.kinetic_is_quadratic():  # type: ignore[attr-defined]
            raise InputError(
                f"{name}() is 5th order only for a kinetic energy quadratic in p (d2H/dp2 constant), which this H "
                "is not; use Yoshida6() or Yoshida4() (any separable H)")
        return
    if isinstance(prob, SecondOrderODEProblem):
        if not prob.velocity_independent:
            raise InputError(
                f"{name}() needs an acceleration f(t, x) that does not depend on the velocity v; this "
                "SecondOrderODEProblem's f depends on v (or velocity_independent=False was given). Solve with "
                "ImplicitMidpoint() or a general method (Vern7(), Tsit5()); if f ignores v, pass "
                "velocity_independent=True")
        return
    raise InputError(
        f"{name}() is an explicit symplectic method for partitioned problems: build a HamiltonianProblem(H, q0, p0, "
        "tspan, separable=True) or a SecondOrderODEProblem(f, x0, v0, tspan); for a plain ODEProblem use "
        "ImplicitMidpoint() (symplectic for any problem) or a general method (Tsit5(), Vern7())")
