"""Low-order (E)SDIRK methods: implicit Euler, the trapezoidal rule, SDIRK2, Alexander's SDIRK and TR-BDF2.

They run on the ARK stepper (:mod:`pysciml.engine.ark`), which treats stage 1 as explicit (``aI[0] == (0.0,)``,
``k_1 = f(t_n, u_n)``, already known from the previous step). A method whose first stage is implicit (implicit
Euler, SDIRK2, Alexander's method) is written with one extra stage in front: an explicit stage at ``c = 0`` with
zero weight in every row and in ``b``, so the stepper's first implicit stage is the method's first stage and the
numbers are the method's own. The extra stage costs nothing (``f(t_n, u_n)`` is cached) and the error estimate
may use it (implicit Euler). Rows follow :class:`~pysciml.engine.tableaus._base.ARKTableau` and ``btilde`` is
``b - b_hat`` (OrdinaryDiffEq.jl stores ``b_hat - b``). Order conditions and stability are checked in
``tests/test_tableaus_more.py``.

None of these is in :data:`~pysciml.engine.tableaus.ark.ARK_TABLEAUS` (whose tests check the KenCarp/Kvaerno
structure ``c_2 = 2 gamma``); each is an implicit-only method (``aE = None``).
"""

from __future__ import annotations

import math

from ._base import ARKTableau

__all__ = ["ALEXANDER2", "IMPLICIT_EULER", "SDIRK2", "SDIRK_TABLEAUS", "TRAPEZOID", "TRBDF2"]

_ODE_JL = "OrdinaryDiffEq.jl lib/OrdinaryDiffEqSDIRK/src/imex_tableaus.jl"
_SQRT2 = math.sqrt(2.0)

# Implicit Euler U = u + h f(t + h, U), u1 = U. The estimate is the difference to the trapezoidal rule on the
# same two slopes, b_hat = (1/2, 1/2): err = h/2 (f(t1, u1) - f(t0, u0)) ~ h^2/2 u'', the method's local error.
# (OrdinaryDiffEq's ImplicitEuler estimates the same h^2/2 u'' by divided differences over two steps.)
IMPLICIT_EULER = ARKTableau(
    name="ImplicitEuler",
    reference=(
        "Backward Euler (Hairer-Wanner, Solving ODEs II, IV.3), with a zero-weight explicit first stage; "
        "error estimate against the trapezoidal rule, b_hat = (1/2, 1/2). " + _ODE_JL
        + " ImplicitEulerESDIRKIMEXTableau: A = (1), b = (1), c = (1)."
    ),
    gamma=1.0,
    c=(0.0, 1.0),
    aI=((0.0,), (0.0, 1.0)),
    aE=None,
    b=(0.0, 1.0),
    btilde=(-1 / 2, 1 / 2),
    order=1,
    embedded_order=2,
)

# Trapezoidal rule (Crank-Nicolson) in its ESDIRK form. Two slopes allow only a first-order companion:
# b_hat = (0, 1), err = h/2 (f(t0, u0) - f(t1, u1)), which controls the step conservatively.
# (OrdinaryDiffEq's Trapezoid estimates its h^3 u'''/12 term by divided differences over three steps instead.)
TRAPEZOID = ARKTableau(
    name="Trapezoid",
    reference=(
        "Trapezoidal rule / Crank-Nicolson (Hairer-Wanner, Solving ODEs II, IV.3); " + _ODE_JL
        + " TrapezoidESDIRKIMEXTableau: c = (0, 1), A = [0 0; 1/2 1/2], b = (1/2, 1/2). Embedded first-order "
        "formula b_hat = (0, 1)."
    ),
    gamma=1 / 2,
    c=(0.0, 1.0),
    aI=((0.0,), (1 / 2, 1 / 2)),
    aE=None,
    b=(1 / 2, 1 / 2),
    btilde=(1 / 2, -1 / 2),
    order=2,
    embedded_order=1,
)

# OrdinaryDiffEq's SDIRK2: gamma = 1, A = [1 0; -1 1], b = (1/2, 1/2), c = (1, 0); the embedded method is the
# first stage (implicit Euler), b_hat = (1, 0). Not stiffly accurate; its stability function tends to -1/2 at
# infinity (A-stable, not L-stable).
SDIRK2 = ARKTableau(
    name="SDIRK2",
    reference=(
        "SDIRK2 of OrdinaryDiffEq.jl (docstring: A-B-L stable 2nd order SDIRK; reference A. C. Hindmarsh et al., "
        "SUNDIALS, ACM TOMS 31 (2005) 363-396), " + _ODE_JL + " SDIRK2ESDIRKIMEXTableau, with a zero-weight "
        "explicit first stage; its btilde (b_hat - b) = (1/2, -1/2) is negated here."
    ),
    gamma=1.0,
    c=(0.0, 1.0, 0.0),
    aI=((0.0,), (0.0, 1.0), (0.0, -1.0, 1.0)),
    aE=None,
    b=(0.0, 1 / 2, 1 / 2),
    btilde=(0.0, -1 / 2, 1 / 2),
    order=2,
    embedded_order=1,
    stiffly_accurate=False,
)

# Alexander's two-stage L-stable SDIRK, gamma = 1 - 1/sqrt(2) (torchdiffeq's 'sdirk2'): A = [g 0; 1-g g],
# b = (1-g, g), c = (g, 1), stiffly accurate. The paper gives no embedded formula; the one here,
# b_hat = (0, 1, 0) (the first stage's slope alone), makes err = h g (k_3 - k_2): first order, and it uses
# only the implicit stages, whose slopes stay bounded on stiff components.
_GA = (2.0 - _SQRT2) / 2.0  # = 1 - 1/sqrt(2), written as torchdiffeq computes it
ALEXANDER2 = ARKTableau(
    name="Alexander2",
    reference=(
        "R. Alexander, Diagonally implicit Runge-Kutta methods for stiff O.D.E.'s, SIAM J. Numer. Anal. 14 (1977) "
        "1006-1021, the 2-stage L-stable method (gamma = 1 - 1/sqrt(2)); the tableau of torchdiffeq's 'sdirk2' "
        "(fixed_grid_implicit.py). Zero-weight explicit first stage; embedded b_hat = (0, 1, 0) is pysciml's."
    ),
    gamma=_GA,
    c=(0.0, _GA, 1.0),
    aI=((0.0,), (0.0, _GA), (0.0, 1.0 - _GA, _GA)),
    aE=None,
    b=(0.0, 1.0 - _GA, _GA),
    btilde=(0.0, -_GA, _GA),
    order=2,
    embedded_order=1,
)

# TR-BDF2 in the one-step ESDIRK form of Hosea & Shampine: c = (0, gamma_tr, 1) with gamma_tr = 2 - sqrt(2),
# A = [0 0 0; d d 0; w w d], d = gamma_tr/2 = 1 - sqrt(2)/2, w = sqrt(2)/4, b = (w, w, d) (stiffly accurate,
# L-stable), and the third-order companion b_hat = ((1-w)/3, (3w+1)/3, d/3).
_D = 1.0 - _SQRT2 / 2.0
_W = _SQRT2 / 4.0
TRBDF2 = ARKTableau(
    name="TRBDF2",
    reference=(
        "R. E. Bank, W. M. Coughran, W. Fichtner, E. H. Grosse, D. J. Rose, R. K. Smith, Transient simulation of "
        "silicon devices and circuits, IEEE Trans. CAD 4 (1985) 436-451; M. E. Hosea, L. F. Shampine, Analysis "
        "and implementation of TR-BDF2, Appl. Numer. Math. 20 (1996) 21-37 (ESDIRK form and the 3rd-order "
        "embedded formula). Checked against OrdinaryDiffEq.jl lib/OrdinaryDiffEqSDIRK/src/sdirk_tableaus.jl "
        "TRBDF2Tableau (btilde = b_hat - b = ((1-sqrt 2)/3, 1/3, (sqrt 2-2)/3), negated here) and torchdiffeq's "
        "'trbdf2'."
    ),
    gamma=_D,
    c=(0.0, 2.0 - _SQRT2, 1.0),
    aI=((0.0,), (_D, _D), (_W, _W, _D)),
    aE=None,
    b=(_W, _W, _D),
    btilde=(-(1.0 - _SQRT2) / 3.0, -1 / 3, -(_SQRT2 - 2.0) / 3.0),
    order=2,
    embedded_order=3,
)

SDIRK_TABLEAUS: dict[str, ARKTableau] = {
    t.name: t for t in (IMPLICIT_EULER, TRAPEZOID, SDIRK2, ALEXANDER2, TRBDF2)
}
"""The low-order (E)SDIRK tableaus of this module by name (implicit only, run by the ARK stepper)."""
