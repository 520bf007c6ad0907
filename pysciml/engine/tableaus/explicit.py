"""Explicit Runge-Kutta tableaus (coefficient data only; conventions in :mod:`._base`).

Rationals are written as Python ``p / q`` (correctly rounded to float64); decimals keep every digit the
source gives.  ``btilde = b - b_hat`` throughout: several sources (OrdinaryDiffEq.jl among them) store
``b_hat - b`` instead, and those values were negated here.  Each tableau's orders, embedded order, FSAL
structure and continuous extension are verified with the rooted-tree conditions of
:mod:`pysciml.analysis.order_conditions` in ``tests/test_tableaus_explicit.py``.
"""

from __future__ import annotations

from ._base import ExplicitRKTableau
from .dp8 import DP8
from .vern7 import VERN7

__all__ = [
    "ADAPTIVE_HEUN", "BS3", "DP5", "DP8", "EULER", "EXPLICIT_TABLEAUS", "HEUN", "HEUN3", "MIDPOINT", "RALSTON", "RK4",
    "RK38", "RKF12", "TSIT5", "VERN7",
]

# --------------------------------------------------------------------------------------------- Tsit5
# Stage 7 is f(t + dt, u1) (FSAL), so b7 = 0; the embedded 4th-order weights use it (b_hat_7 = 1/66).
# Dense output: b_i(theta) = sum_j r_ij theta**j (the paper's continuous extension), so dense[j-1][i] = r_ij.
# The theta-coefficient of b_1 is exactly 1 (first-order condition of the extension); OrdinaryDiffEq.jl
# lists it as 0.999999999999999974283..., i.e. 1 to the digits given.
TSIT5 = ExplicitRKTableau(
    name="Tsit5",
    reference=(
        "Ch. Tsitouras, Runge-Kutta pairs of order 5(4) satisfying only the first column simplifying "
        "assumption, Comput. Math. Appl. 62 (2011) 770-775: the new 5(4) pair and the b_i(theta) of its "
        "4th-order continuous extension. Digits from (and checked against) OrdinaryDiffEq.jl "
        "lib/OrdinaryDiffEqTsit5/src/tsit_tableaus.jl, high-precision (BigFloat) branch: "
        "Tsit5ConstantCacheActual and Tsit5Interp; btilde there is b_hat - b and is negated here."
    ),
    c=(
        0.0,
        161 / 1000,
        327 / 1000,
        9 / 10,
        0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604,
        1.0,
        1.0,
    ),
    a=(
        (),
        (161 / 1000,),
        (
            -0.8480655492356988544426874250230774675121177393430391537369234245294192976164141156943e-2,
            0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569,
        ),
        (
            2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
            -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
            4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077,
        ),
        (
            5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
            -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
            7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
            -0.9249506636175524925650207933207191611349983406029535244034750452930469056411389539635e-1,
        ),
        (
            5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
            -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
            8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
            -0.7158497328140099722453054252582973869127213147363544882721139659546372402303777878835e-1,
            -0.2826905039406838290900305721271224146717633626879770007617876201276764571291579142206e-1,
        ),
        (
            0.9646076681806522951816731316512876333711995238157997181903319145764851595234062815396e-1,
            1 / 100,
            0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
            1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
            -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
            2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841,
        ),
    ),
    b=(
        0.9646076681806522951816731316512876333711995238157997181903319145764851595234062815396e-1,
        1 / 100,
        0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
        1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
        -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
        2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841,
        0.0,
    ),
    btilde=(
        1.780011052225771443378550607539534775944678804333659557637450799792588061629796e-03,
        8.164344596567469032236360633546862401862537590159047610940604670770447527463931e-04,
        -7.880878010261996010314727672526304238628733777103128603258129604952959142646516e-03,
        1.44711007173262907537165147972635116720922712343167677619514233896760819649515e-01,
        -5.823571654525552250199376106520421794260781239567387797673045438803694038950012e-01,
        4.580821059291869466616365188325542974428047279788398179474684434732070620889539e-01,
        -1 / 66,
    ),
    order=5,
    embedded_order=4,
    fsal=True,
    dense=(
        (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (
            -2.763706197274825911336735930481400260916070804192,
            0.13169999999999999727,
            3.93029623689475152850687446709813398,
            -12.411077166933676983734381540685453484102414134010752,
            37.50931341651103919496903965334519631242339792120440212,
            -27.896526289197287805948263144598643896,
            1.5,
        ),
        (
            2.91325546182191274375068099306808,
            -0.22339999999999999818,
            -5.94103387213150473470249202589458001,
            30.3381886302823215981729903691836576,
            -88.1789048947664011014276693541209817,
            65.09189467479367152629021928716553658,
            -4.0,
        ),
        (
            -1.0530884977290216,
            0.1017,
            2.490627285651252793,
            -16.54810288924490272,
            47.37952196281928122,
            -34.87065786149660974,
            2.5,
        ),
    ),
    dense_order=4,
)

# ----------------------------------------------------------------------------------------------- DP5
# Dense output (Shampine 1986; HNW I, II.6; Hairer's DOPRI5 CONTD5) in the form
#   u(theta) = u0 + theta R2 + theta(1-theta) R3 + theta^2(1-theta) R4 + theta^2(1-theta)^2 R5,
#   R2 = sum b_i K_i, R3 = K1 - R2, R4 = 2 R2 - K1 - K7, R5 = sum d_i K_i with
#   d = (-12715105075/11282082432, 0, 87487479700/32700410799, -10690763975/1880347072,
#        701980252875/199316789632, -1453857185/822651844, 69997945/29380423),
# expanded exactly (rational arithmetic) into powers of theta:
#   dense[0] = e1, dense[1] = 3b - 2e1 - e7 + d, dense[2] = -2b + e1 + e7 - 2d, dense[3] = d.
DP5 = ExplicitRKTableau(
    name="DP5",
    reference=(
        "J. R. Dormand, P. J. Prince, A family of embedded Runge-Kutta formulae, J. Comput. Appl. Math. 6 "
        "(1980) 19-26 (RK5(4)7M); also Hairer-Norsett-Wanner, Solving ODEs I, II.5 (DOPRI5 table). Dense "
        "output: L. F. Shampine, Some practical Runge-Kutta formulas, Math. Comp. 46 (1986) 135-150, in the "
        "form of HNW I II.6 / Hairer's dopri5.f (coefficients d_i). Digits checked against OrdinaryDiffEq.jl "
        "lib/OrdinaryDiffEqLowOrderRK/src/low_order_rk_tableaus.jl (DP5ConstantCache, DP5_dense_ds, "
        "rational branch; its btilde is b_hat - b and is negated here)."
    ),
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    btilde=(71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40),
    order=5,
    embedded_order=4,
    fsal=True,
    dense=(
        (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (
            -8048581381 / 2820520608,
            0.0,
            131558114200 / 32700410799,
            -1754552775 / 470086768,
            127303824393 / 49829197408,
            -282668133 / 205662961,
            40617522 / 29380423,
        ),
        (
            8663915743 / 2820520608,
            0.0,
            -68118460800 / 10900136933,
            14199869525 / 1410260304,
            -318862633887 / 49829197408,
            2019193451 / 616988883,
            -110615467 / 29380423,
        ),
        (
            -12715105075 / 11282082432,
            0.0,
            87487479700 / 32700410799,
            -10690763975 / 1880347072,
            701980252875 / 199316789632,
            -1453857185 / 822651844,
            69997945 / 29380423,
        ),
    ),
    dense_order=4,
)

# ----------------------------------------------------------------------------------------------- BS3
BS3 = ExplicitRKTableau(
    name="BS3",
    reference=(
        "P. Bogacki, L. F. Shampine, A 3(2) pair of Runge-Kutta formulas, Appl. Math. Lett. 2 (1989) "
        "321-325. Embedded weights b_hat = (7/24, 1/4, 1/3, 1/8). Digits checked against OrdinaryDiffEq.jl "
        "lib/OrdinaryDiffEqLowOrderRK/src/low_order_rk_tableaus.jl (BS3ConstantCache, rational branch; its "
        "btilde is b_hat - b and is negated here). No dense matrix: Hermite interpolation is 3rd order here."
    ),
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    btilde=(-5 / 72, 1 / 12, 1 / 9, -1 / 8),
    order=3,
    embedded_order=2,
    fsal=True,
)

# ------------------------------------------------------------------------------ low-order embedded pairs
# Second-order pairs with a first-order embedded estimate; they advance the second-order solution (local
# extrapolation). Hermite interpolation (3rd order) is above their order, so none carries a dense matrix.
ADAPTIVE_HEUN = ExplicitRKTableau(
    name="AdaptiveHeun",
    reference=(
        "Heun's method (K. Heun 1900; Hairer-Norsett-Wanner, Solving ODEs I, II.1) with forward Euler as the "
        "embedded first-order method, b_hat = (1, 0): the Heun-Euler 2(1) pair of torchdiffeq's "
        "'adaptive_heun' (adaptive_heun.py) and of OrdinaryDiffEq.jl's adaptive Heun (OrdinaryDiffEqLowOrderRK)."
    ),
    c=(0.0, 1.0),
    a=((), (1.0,)),
    b=(1 / 2, 1 / 2),
    btilde=(-1 / 2, 1 / 2),
    order=2,
    embedded_order=1,
)

RALSTON = ExplicitRKTableau(
    name="Ralston",
    reference=(
        "A. Ralston, Runge-Kutta methods with minimum error bounds, Math. Comp. 16 (1962) 431-437: the "
        "second-order method with c_2 = 2/3, b = (1/4, 3/4). Embedded forward Euler, b_hat = (1, 0), as in "
        "OrdinaryDiffEq.jl's Ralston (OrdinaryDiffEqLowOrderRK, 'uses embedded Euler method for adaptivity')."
    ),
    c=(0.0, 2 / 3),
    a=((), (2 / 3,)),
    b=(1 / 4, 3 / 4),
    btilde=(-3 / 4, 3 / 4),
    order=2,
    embedded_order=1,
)

# Fehlberg's RK1(2): the first-order formula b_hat = (1/256, 255/256, 0) is the third stage's row (Fehlberg
# advanced with it, FSAL); torchdiffeq's 'fehlberg2' (fehlberg2.py) advances the second-order formula
# b = (1/512, 255/256, 1/512) instead, and so does this tableau (not FSAL then: b_3 != 0).
RKF12 = ExplicitRKTableau(
    name="RKF12",
    reference=(
        "E. Fehlberg, Low-order classical Runge-Kutta formulas with stepsize control and their application to "
        "some heat transfer problems, NASA TR R-315 (1969), the RK1(2) pair; advancing the second-order "
        "solution as torchdiffeq's 'fehlberg2' (fehlberg2.py, c_sol and c_error)."
    ),
    c=(0.0, 1 / 2, 1.0),
    a=((), (1 / 2,), (1 / 256, 255 / 256)),
    b=(1 / 512, 255 / 256, 1 / 512),
    btilde=(1 / 512 - 1 / 256, 0.0, 1 / 512),
    order=2,
    embedded_order=1,
)

# ------------------------------------------------------------------------------------ fixed-step methods
RK4 = ExplicitRKTableau(
    name="RK4",
    reference="W. Kutta (1901), the classical 4th-order method; Hairer-Norsett-Wanner, Solving ODEs I, II.1.",
    c=(0.0, 1 / 2, 1 / 2, 1.0),
    a=((), (1 / 2,), (0.0, 1 / 2), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    btilde=None,
    order=4,
    embedded_order=None,
)

RK38 = ExplicitRKTableau(
    name="RK38",
    reference=(
        "W. Kutta, Beitrag zur naeherungsweisen Integration totaler Differentialgleichungen, Z. Math. Phys. 46 "
        "(1901) 435-453: the 3/8 rule; Hairer-Norsett-Wanner, Solving ODEs I, II.1, Table 1.2 (right); "
        "torchdiffeq's fixed-grid 'rk4' (same tableau)."
    ),
    c=(0.0, 1 / 3, 2 / 3, 1.0),
    a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
    b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
    btilde=None,
    order=4,
    embedded_order=None,
)

MIDPOINT = ExplicitRKTableau(
    name="Midpoint",
    reference="Explicit midpoint rule (C. Runge 1895); Hairer-Norsett-Wanner, Solving ODEs I, II.1.",
    c=(0.0, 1 / 2),
    a=((), (1 / 2,)),
    b=(0.0, 1.0),
    btilde=None,
    order=2,
    embedded_order=None,
)

HEUN = ExplicitRKTableau(
    name="Heun",
    reference=(
        "Heun's method (explicit trapezoidal rule, K. Heun 1900); "
        "Hairer-Norsett-Wanner, Solving ODEs I, II.1."
    ),
    c=(0.0, 1.0),
    a=((), (1.0,)),
    b=(1 / 2, 1 / 2),
    btilde=None,
    order=2,
    embedded_order=None,
)

HEUN3 = ExplicitRKTableau(
    name="Heun3",
    reference=(
        "Heun's third-order method (K. Heun, Neue Methode zur approximativen Integration der "
        "Differentialgleichungen einer unabhaengigen Veraenderlichen, Z. Math. Phys. 45 (1900) 23-38); "
        "Hairer-Norsett-Wanner, Solving ODEs I, II.1, Table 1.1; torchdiffeq's 'heun3' (same tableau)."
    ),
    c=(0.0, 1 / 3, 2 / 3),
    a=((), (1 / 3,), (0.0, 2 / 3)),
    b=(1 / 4, 0.0, 3 / 4),
    btilde=None,
    order=3,
    embedded_order=None,
)

EULER = ExplicitRKTableau(
    name="Euler",
    reference="Forward Euler (L. Euler 1768); Hairer-Norsett-Wanner, Solving ODEs I, I.7.",
    c=(0.0,),
    a=((),),
    b=(1.0,),
    btilde=None,
    order=1,
    embedded_order=None,
)

EXPLICIT_TABLEAUS: dict[str, ExplicitRKTableau] = {
    tab.name: tab
    for tab in (TSIT5, DP5, BS3, VERN7, DP8, RK4, RK38, MIDPOINT, HEUN, EULER, ADAPTIVE_HEUN, RALSTON, RKF12,
                HEUN3)
}
"""Every explicit tableau of this module, keyed by its ``name`` (``"Tsit5"``, ``"DP5"``, ...)."""
