"""Explicit symplectic splitting methods for separable ``H(q, p) = T(p) + V(q)`` (and ``x'' = a(t, x)``).

Convention (the stepper in :mod:`pysciml.engine.symplectic` relies on exactly this): a step of size ``h`` applies,
for ``i = 1 .. s`` in order, a *drift* then a *kick*::

    q <- q + drift[i] * h * v(p)          (v = dT/dp, the velocity)
    p <- p + kick[i]  * h * F(t_i, q)     (F = -dV/dq, the force; t_i = t + (drift[1] + ... + drift[i]) h)

Zero coefficients are skipped. ``sum(drift) == sum(kick) == 1`` (consistency). A method is *symmetric* (its
adjoint is itself, so its order is even) when the sequence of non-zero sub-steps reads the same backwards.
Coefficients are plain floats (float64); the composition methods are built here from their cited weights, the
others are listed as published.

Sources:

* Stormer-Verlet: Hairer, Lubich & Wanner, *Geometric Numerical Integration*, 2nd ed., Springer 2006, Sec. I.3 and
  VI.3 (velocity Verlet = kick-drift-kick, leapfrog = drift-kick-drift; both order 2, symmetric).
* Yoshida 4 (triple jump): H. Yoshida, "Construction of higher order symplectic integrators", Phys. Lett. A 150
  (1990) 262-268, eq. (4.14): ``w1 = 1/(2 - 2^(1/3))``, ``w0 = -2^(1/3)/(2 - 2^(1/3))``; the same method was found
  by E. Forest & R. D. Ruth, Physica D 43 (1990) 105, and J. Candy & W. Rozmus, J. Comput. Phys. 92 (1991) 230
  (OrdinaryDiffEq's ``CandyRoz4``).
* Yoshida 6: the same paper, Table 1, solution A (``w1, w2, w3``; ``w0 = 1 - 2 (w1 + w2 + w3)``), a 7-fold
  composition of velocity Verlet (kick-drift-kick), as OrdinaryDiffEq's ``Yoshida6`` (its ``a``/``b`` read kick
  first, the reading under which its McAte5 has order 5); Yoshida 4 composes leapfrog (drift-kick-drift), as
  ``CandyRoz4`` does.
* McAte5: R. I. McLachlan & P. Atela, "The accuracy of symplectic integrators", Nonlinearity 5 (1992) 541-562,
  the optimised 6-stage 5th-order method for ``T`` quadratic in ``p`` (Runge-Kutta-Nystrom case); coefficients
  to 19 digits as tabulated in OrdinaryDiffEq.jl (``McAte5ConstantCache``, ``a`` and ``b``), applied kick first:
  ``K(b_1) D(a_1) ... K(b_6) D(a_6)``, the one assignment and order of the two lists under which the method measures
  5th order (``tests/test_symplectic.py``; the three others measure 1st or 3rd order on the pendulum). With a
  kinetic energy that is not quadratic in ``p`` its order drops to 3 (measured), hence
  ``quadratic_kinetic_only``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SymplecticTableau", "VELOCITY_VERLET", "LEAPFROG", "YOSHIDA4", "YOSHIDA6", "MCATE5", "compose_leapfrog",
           "compose_velocity_verlet", "SYMPLECTIC_TABLEAUS", "GaussTableau", "IMPLICIT_MIDPOINT"]


@dataclass(frozen=True)
class SymplecticTableau:
    """A splitting method ``D(drift[0]) K(kick[0]) ... D(drift[s-1]) K(kick[s-1])`` (module docstring).

    Attributes:
        name: SciML-style name; reference: where the coefficients come from.
        order: classical order; symmetric: whether the method is its own adjoint.
        drift, kick: the coefficients (same length ``s``; zeros are skipped).
        quadratic_kinetic_only: the stated order needs ``T`` quadratic in ``p`` (a Runge-Kutta-Nystrom method):
            true of every second-order problem ``x'' = a(t, x)``, not of every separable Hamiltonian.
        btilde, dense, dense_order: no error estimator (fixed steps only) and no own continuous extension (the
            engine's cubic Hermite interpolant is used); present so these tableaus answer the same questions as
            the Runge-Kutta ones.
    """

    name: str
    reference: str
    order: int
    symmetric: bool
    drift: tuple[float, ...]
    kick: tuple[float, ...]
    quadratic_kinetic_only: bool = False
    btilde: None = None
    dense: None = None
    dense_order: int = 3

    def __post_init__(self) -> None:
        if len(self.drift) != len(self.kick):
            raise ValueError(f"{self.name}: drift and kick need the same length")

    @property
    def stages(self) -> int:
        return len(self.drift)

    @property
    def force_evaluations(self) -> int:
        """Force evaluations per step in a run of steps (a kick at the step's start reuses the previous step's
        last force when no drift separates them: first-same-as-last)."""
        kicks = sum(1 for b in self.kick if b != 0.0)
        fsal = self.drift[0] == 0.0 and self.kick[-1] != 0.0
        return kicks - (1 if fsal else 0)

    def substeps(self) -> list[tuple[str, float]]:
        """The non-zero sub-steps in order, as ``("drift" | "kick", coefficient)``."""
        out: list[tuple[str, float]] = []
        for a, b in zip(self.drift, self.kick, strict=True):
            if a != 0.0:
                out.append(("drift", a))
            if b != 0.0:
                out.append(("kick", b))
        return out


def _merged_halves(weights: tuple[float, ...]) -> tuple[float, ...]:
    """``w_1/2, (w_1+w_2)/2, ..., (w_{m-1}+w_m)/2, w_m/2``: the half sub-steps of a composition of symmetric
    steps, adjacent halves merged."""
    m = len(weights)
    return (weights[0] / 2, *((weights[i] + weights[i + 1]) / 2 for i in range(m - 1)), weights[-1] / 2)


def compose_velocity_verlet(weights: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Drift and kick coefficients of the composition ``V(w_1 h) ... V(w_m h)`` of kick-drift-kick (velocity
    Verlet) steps (adjacent half kicks merged): drifts ``0, w_1, ..., w_m``, kicks ``w_1/2, (w_1+w_2)/2, ...,
    w_m/2``."""
    return (0.0, *weights), _merged_halves(weights)


def compose_leapfrog(weights: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Drift and kick coefficients of the composition ``L(w_1 h) ... L(w_m h)`` of drift-kick-drift leapfrog steps
    (adjacent half drifts merged): drifts ``w_1/2, (w_1+w_2)/2, ..., w_m/2``, kicks ``w_1, ..., w_m, 0``."""
    return _merged_halves(weights), (*weights, 0.0)


_C = 2.0 ** (1.0 / 3.0)
_Y4_W1 = 1.0 / (2.0 - _C)
_Y4_W0 = -_C / (2.0 - _C)
_Y6_W1, _Y6_W2, _Y6_W3 = -1.17767998417887, 0.235573213359357, 0.784513610477560  # Yoshida (1990) Table 1, A
_Y6_W0 = 1.0 - 2.0 * (_Y6_W1 + _Y6_W2 + _Y6_W3)

VELOCITY_VERLET = SymplecticTableau(
    name="VelocityVerlet", order=2, symmetric=True, drift=(0.0, 1.0), kick=(0.5, 0.5),
    reference="Hairer, Lubich & Wanner, Geometric Numerical Integration (2006), Sec. I.3: kick-drift-kick Verlet",
)
LEAPFROG = SymplecticTableau(
    name="Leapfrog", order=2, symmetric=True, drift=(0.5, 0.5), kick=(1.0, 0.0),
    reference="Hairer, Lubich & Wanner, Geometric Numerical Integration (2006), Sec. I.3: drift-kick-drift Verlet",
)
_y4 = compose_leapfrog((_Y4_W1, _Y4_W0, _Y4_W1))
YOSHIDA4 = SymplecticTableau(
    name="Yoshida4", order=4, symmetric=True, drift=_y4[0], kick=_y4[1],
    reference="Yoshida, Phys. Lett. A 150 (1990) 262, eq. (4.14) (= Forest-Ruth 1990 = Candy-Rozmus 1991)",
)
_y6 = compose_velocity_verlet((_Y6_W3, _Y6_W2, _Y6_W1, _Y6_W0, _Y6_W1, _Y6_W2, _Y6_W3))
YOSHIDA6 = SymplecticTableau(
    name="Yoshida6", order=6, symmetric=True, drift=_y6[0], kick=_y6[1],
    reference="Yoshida, Phys. Lett. A 150 (1990) 262, Table 1 solution A (7-fold velocity Verlet composition)",
)
_MCATE5_A = (0.339839625839110000, -0.088601336903027329, 0.5858564768259621188, -0.603039356536491888,
             0.3235807965546976394, 0.4423637942197494587)
_MCATE5_B = (0.1193900292875672758, 0.6989273703824752308, -0.1713123582716007754, 0.4012695022513534480,
             0.0107050818482359840, -0.0589796254980311632)
MCATE5 = SymplecticTableau(
    name="McAte5", order=5, symmetric=False, quadratic_kinetic_only=True,
    drift=(0.0, *_MCATE5_A), kick=(*_MCATE5_B, 0.0),
    reference="McLachlan & Atela, Nonlinearity 5 (1992) 541, optimised 5th-order RKN method (6 stages)",
)

SYMPLECTIC_TABLEAUS = (VELOCITY_VERLET, LEAPFROG, YOSHIDA4, YOSHIDA6, MCATE5)


@dataclass(frozen=True)
class GaussTableau:
    """A Gauss (collocation) Runge-Kutta method: symplectic for every Hamiltonian, implicit.

    Attributes: name, reference, order; ``c``, ``a`` (full rows), ``b`` the Butcher tableau; ``btilde``/``dense``
    ``None`` and ``dense_order`` 3 (fixed steps, cubic Hermite dense output), as for :class:`SymplecticTableau`.
    """

    name: str
    reference: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    symmetric: bool = True
    btilde: None = None
    dense: None = None
    dense_order: int = 3


IMPLICIT_MIDPOINT = GaussTableau(
    name="ImplicitMidpoint", order=2, c=(0.5,), a=((0.5,),), b=(1.0,),
    reference="Hairer, Lubich & Wanner, Geometric Numerical Integration (2006), Sec. II.1.3 (1-stage Gauss)",
)
