"""Rosenbrock / Rodas coefficient data in the transformed (Hairer-Wanner IV.7, eq. 7.25) form of ``_base``.

Every constant follows :class:`~pysciml.engine.tableaus._base.RosenbrockTableau` exactly::

    W = M / (gamma h) - J,   u_i = u + sum_j a_ij k_j,
    W k_i = f(t + c_i h, u_i) + sum_j (C_ij / h) M k_j + d_i h f_t,
    u1 = u + sum_i b_i k_i,  err = sum_i btilde_i k_i,
    u(theta) = u + sum_j theta**(j+1) sum_i dense[j][i] k_i.

Mapping from the sources (derived in the comments below, proved by ``tests/test_tableaus_rosenbrock.py``):

* Hairer's ``rodas.f`` and OrdinaryDiffEq.jl's ``RodasTableau`` (``A, C, gamma, c, d, H, b, btilde``) use the
  same stage equation: OrdinaryDiffEq forms ``W_jl = J - M/(gamma h)`` and solves ``k_i = W_jl \\ -(rhs_i)``,
  i.e. ``(M/(gamma h) - J) k_i = rhs_i``, with ``rhs_i = f(...) + h d_i f_t + M sum_j (C_ij/h) k_j``.
  Hence ``a = A``, ``C = C`` (same sign, not scaled by h), ``d = d``, ``b``, ``btilde`` unchanged.
* Their dense output (``rodas.f`` CONTRO, OrdinaryDiffEq ``_ode_interpolant``) with ``m = len(H)`` rows is
  ``u(th) = (1-th) u0 + th (u1 + (1-th)(h_1 + th h_2 + ... + th**(m-1) h_m))``, ``h_j = sum_i H[j][i] k_i``
  (``H`` is *not* scaled by ``h``: the ``k_i`` are increments).  With ``u1 - u0 = sum_i b_i k_i`` this is
  ``u0 + th (b + H_1) + th**2 (H_2 - H_1) + ... + th**m (H_m - H_{m-1}) - th**(m+1) H_m``, which
  :func:`_rodas_dense` returns as our ``(m+1, s)`` polynomial matrix.
* Stiffly accurate Rodas methods: ``b = (a[s-1][:], 1)`` (the last stage's argument plus ``k_s``) and the
  error is ``k_s`` alone, ``btilde = e_s``, so the embedded solution is the last stage's argument.
"""

from __future__ import annotations

import math

from ._base import RosenbrockTableau, Rows


def _rodas_dense(b: tuple[float, ...], H: Rows) -> Rows:
    """Convert a Rodas-style Hermite correction matrix ``H`` (see module docstring) to ``dense`` rows."""
    m, s = len(H), len(b)
    rows = [tuple(b[i] + H[0][i] for i in range(s))]
    rows += [tuple(H[j][i] - H[j - 1][i] for i in range(s)) for j in range(1, m)]
    rows.append(tuple(-H[m - 1][i] for i in range(s)))
    return tuple(rows)


def _unit(s: int, i: int) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(s))


# Coefficient tables keep their row layout:
# fmt: off
# --------------------------------------------------------------------------------------------------------
# Rosenbrock23 (MATLAB ode23s).  Shampine & Reichelt, "The MATLAB ODE Suite", SIAM J. Sci. Comput. 18
# (1997) 1-22, ode23s formulas: W = I - h d J, d = 1/(2+sqrt 2), e32 = 6 + sqrt 2,
#   k1 = W^-1 (F0 + h d T),  F1 = f(t+h/2, y+h/2 k1),  k2 = W^-1 (F1 - k1) + k1,  ynew = y + h k2,
#   F2 = f(t+h, ynew),  k3 = W^-1 (F2 - e32 (k2 - F1) - 2 (k1 - F0) + h d T),  err = h/6 (k1 - 2 k2 + k3),
#   y(th) = y + h (th(1-th)/(1-2d) k1 + th(th-2d)/(1-2d) k2).
# Rewriting (our W = (I - h d J)/(d h), gamma = d; K_i our increments):
#   K1 = d h k1;  K2 = d h (k2 - k1)  [W(k2-k1) = F1 - k1 = F1 - K1/(d h)]  -> a21 = 1/(2d), C21 = -1/d, d2 = 0;
#   h k2 = (K1 + K2)/d -> b = (1/d, 1/d, 0), a3 = (1/d, 1/d), c3 = 1.
#   From the stage equations: k1 - F0 = h d (J k1 + T),  k2 - F1 = h d J (k2 - k1),  and h d J v = v - W v, so
#   k3 = e32 (k2-k1) + 2 k1 + W^-1 (F2 - e32 (k2-k1) - 2 k1 - h d T); K3 = d h (k3 - e32 (k2-k1) - 2 k1)
#   -> C31 = -2/d, C32 = -e32/d, d3 = -d;  ode23s err = (K1 + (e32-2) K2 + K3) / (6d) = y3 - ynew, where
#   y3 = y + h/6 (k1 + 4 k2 + k3) is the 3rd-order companion, so in our sign convention
#   (btilde = b - b_embedded, err = u1 - u_embedded) btilde = -(1, e32-2, 1)/(6d) and b - btilde is y3;
#   dense: y + [th ((1-2d) K1 - 2d K2) + th**2 K2] / (d (1-2d)).
# Checked against a direct implementation of the ode23s formulas in the tests (agreement to 1e-13).
# --------------------------------------------------------------------------------------------------------
_D = 1.0 / (2.0 + math.sqrt(2.0))
_E32 = 6.0 + math.sqrt(2.0)

ROSENBROCK23 = RosenbrockTableau(
    name="Rosenbrock23",
    reference=(
        "Shampine & Reichelt 1997, 'The MATLAB ODE Suite', SIAM J. Sci. Comput. 18:1-22 (ode23s), "
        "rewritten in transformed form (gamma = d = 1/(2+sqrt(2)), e32 = 6+sqrt(2)); equivalence to the "
        "original formulas verified in tests/test_tableaus_rosenbrock.py"
    ),
    gamma=_D,
    a=((), (1.0 / (2.0 * _D),), (1.0 / _D, 1.0 / _D)),
    C=((), (-1.0 / _D,), (-2.0 / _D, -_E32 / _D)),
    b=(1.0 / _D, 1.0 / _D, 0.0),
    btilde=(-1.0 / (6.0 * _D), (2.0 - _E32) / (6.0 * _D), -1.0 / (6.0 * _D)),
    c=(0.0, 0.5, 1.0),
    d=(_D, 0.0, -_D),
    order=2,
    embedded_order=3,
    stiffly_accurate=False,
    dense=(
        (1.0 / _D, -2.0 / (1.0 - 2.0 * _D), 0.0),
        (0.0, 1.0 / (_D * (1.0 - 2.0 * _D)), 0.0),
    ),
    dense_order=2,
)

# --------------------------------------------------------------------------------------------------------
# ROS3P.  Lang & Verwer, "ROS3P - an accurate third-order Rosenbrock solver designed for parabolic
# problems", BIT 41 (2001) 731-738, coefficient table of the transformed form (gamma, a_ij, c_ij, alpha_i,
# gamma_i, m_i, mhat_i).  Digits cross-checked against OrdinaryDiffEq.jl ROS3PRodasTableau, which builds the
# same values from gamma = 1/2 + sqrt(3)/6 (a21 = a31 = 1/gamma, C21 = -1/gamma^2, C31 = -2 sqrt 3,
# C32 = -sqrt 3, m = (2, 1/sqrt 3, ...)).  btilde = m - mhat.  No dense output is documented (Hermite).
# --------------------------------------------------------------------------------------------------------
_ROS3P_M = (2.0, 0.5773502691896258, 0.4226497308103742)
_ROS3P_MHAT = (2.113248654051871, 1.0, 0.4226497308103742)

ROS3P = RosenbrockTableau(
    name="ROS3P",
    reference=(
        "Lang & Verwer 2001, 'ROS3P - an accurate third-order Rosenbrock solver designed for parabolic "
        "problems', BIT 41:731-738 (transformed-form coefficient table); digits cross-checked against "
        "OrdinaryDiffEq.jl ROS3PRodasTableau (closed forms in gamma = 1/2 + sqrt(3)/6)"
    ),
    gamma=0.7886751345948129,
    a=((), (1.267949192431123,), (1.267949192431123, 0.0)),
    C=((), (-1.607695154586736,), (-3.464101615137755, -1.732050807568877)),
    b=_ROS3P_M,
    btilde=tuple(m - mh for m, mh in zip(_ROS3P_M, _ROS3P_MHAT, strict=True)),
    c=(0.0, 1.0, 1.0),
    d=(0.7886751345948129, -0.2113248654051871, -1.077350269189626),
    order=3,
    embedded_order=2,
    stiffly_accurate=False,
)

# --------------------------------------------------------------------------------------------------------
# RODAS4.  Hairer & Wanner, Solving ODEs II (2nd ed. 1996), Sec. IV.7, code rodas.f, subroutine ROCOEF
# (METH = 1): A21..A54, C21..C65, GAMMA = 0.25, C2..C4, D1..D4 and dense-output D21..D35.  Digits taken
# from rodas.f (as redistributed with KPP's RODAS integrator) and identical to OrdinaryDiffEq.jl RODAS4A/C/c/d/H.
# Stage 6 argument = stage 5 argument + k5 (A6j = A5j, A65 = 1); b = (A5j, 1, 1); err = k6.
# --------------------------------------------------------------------------------------------------------
_RODAS4_A: Rows = (
    (),
    (1.544,),
    (0.9466785280815826, 0.2557011698983284),
    (3.314825187068521, 2.896124015972201, 0.9986419139977817),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0),
)
_RODAS4_B = (*_RODAS4_A[-1], 1.0)
_RODAS4_H: Rows = (
    (10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823, 1.025137723295662, 0.0),
    (-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386, -6.594389125716872, 0.0),
)

RODAS4 = RosenbrockTableau(
    name="Rodas4",
    reference=(
        "Hairer & Wanner, Solving ODEs II (1996), IV.7, rodas.f ROCOEF METH=1 (coefficients and dense "
        "output D2j, D3j); digits identical to OrdinaryDiffEq.jl Rodas4Tableau"
    ),
    gamma=0.25,
    a=_RODAS4_A,
    C=(
        (),
        (-5.6688,),
        (-2.430093356833875, -0.2063599157091915),
        (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
        (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616),
        (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054),
    ),
    b=_RODAS4_B,
    btilde=_unit(6, 5),
    c=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    d=(0.25, -0.1043, 0.1035, -0.03620000000000023, 0.0, 0.0),
    order=4,
    embedded_order=3,
    stiffly_accurate=True,
    dense=_rodas_dense(_RODAS4_B, _RODAS4_H),
    dense_order=3,
)

# --------------------------------------------------------------------------------------------------------
# RODAS5P.  Steinebach, "Construction of Rosenbrock-Wanner method Rodas5P and numerical benchmarks within
# the Julia Differential Equations package", BIT 63 (2023) 27.  Digits from OrdinaryDiffEq.jl
# (lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_tableaus.jl: RODAS5PA, RODAS5PC, RODAS5Pc, RODAS5Pd,
# RODAS5PH, gamma), the implementation accompanying the paper; verified here by the order conditions
# (order 5, embedded 4, to ~1e-12) and the dense-output convergence test.
# --------------------------------------------------------------------------------------------------------
_RODAS5P_A: Rows = (
    (),
    (3.0,),
    (2.849394379747939, 0.45842242204463923),
    (-6.954028509809101, 2.489845061869568, -10.358996098473584),
    (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
    (-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946),
    (-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946,
     1.0),
    (-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946,
     1.0, 1.0),
)
_RODAS5P_B = (*_RODAS5P_A[-1], 1.0)
_RODAS5P_H: Rows = (
    (25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204, 0.524948541321073,
     1.1241088310450404, 0.4272876194431874, -0.17202221070155493),
    (-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796, 20.176138334709044,
     15.98066361424651, -6.789040303419874, -6.710236069923372),
    (11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643, -52.072871366152654,
     -59.78993625266729, -0.15582684282751913, 4.883087185713722),
)

RODAS5P = RosenbrockTableau(
    name="Rodas5P",
    reference=(
        "Steinebach 2023, 'Construction of Rosenbrock-Wanner method Rodas5P and numerical benchmarks within "
        "the Julia Differential Equations package', BIT 63:27; digits from OrdinaryDiffEq.jl "
        "(RODAS5PA/C/c/d/H), verified by order conditions and dense-output convergence"
    ),
    gamma=0.21193756319429014,
    a=_RODAS5P_A,
    C=(
        (),
        (-14.155112264123755,),
        (-17.97296035885952, -2.859693295451294),
        (147.12150275711716, -1.41221402718213, 71.68940251302358),
        (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
        (24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125, -0.6610691825249471),
        (30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783, -19.097331116725623,
         -28.087943162872662),
        (37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047, -40.06618937091002,
         -54.66780262877968, -9.48861652309627),
    ),
    b=_RODAS5P_B,
    btilde=_unit(8, 7),
    c=(0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664, 1.0, 1.0, 1.0),
    d=(0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734, 2.325825639765069,
       0.0, 0.0, 0.0),
    order=5,
    embedded_order=4,
    stiffly_accurate=True,
    dense=_rodas_dense(_RODAS5P_B, _RODAS5P_H),
    dense_order=4,
)

# --------------------------------------------------------------------------------------------------------
# RODAS5.  Di Marzo, "RODAS5(4) - Methodes de Rosenbrock d'ordre 5(4) adaptees aux problemes
# differentiels-algebriques", Diploma thesis, Univ. Geneve (1993).  Digits from OrdinaryDiffEq.jl
# (lib/OrdinaryDiffEqRosenbrockTableaus: RODAS5A/C/c/d/H; the H rows are OrdinaryDiffEq's own dense output),
# verified by the order conditions and the dense-output test.
# --------------------------------------------------------------------------------------------------------
_RODAS5_A: Rows = (
    (),
    (2.0,),
    (3.040894194418781, 1.041747909077569),
    (2.576417536461461, 1.62208306077664, -0.9089668560264532),
    (2.760842080225597, 1.446624659844071, -0.3036980084553738, 0.2877498600325443),
    (-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405, 24.13215229196062),
    (-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405, 24.13215229196062, 1.0),
    (-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405, 24.13215229196062, 1.0,
     1.0),
)
_RODAS5_B = (*_RODAS5_A[-1], 1.0)
_RODAS5_H: Rows = (
    (27.354592673333357, -6.925207756232857, 26.40037733258859, 0.5635230501052979, -4.699151156849391,
     -1.6008677469422725, -1.5306074446748028, -1.3929872940716344),
    (44.19024239501722, 1.3677947663381929e-13, 202.93261852171622, -35.5669339789154, -181.91095152160645,
     3.4116351403665033, 2.5793540257308067, 2.2435122582734066),
    (-44.0988150021747, -5.755396159656812e-13, -181.26175034586677, 56.99302194811676, 183.21182741427398,
     -7.480257918273637, -5.792426076169686, -5.32503859794143),
)

RODAS5 = RosenbrockTableau(
    name="Rodas5",
    reference=(
        "Di Marzo 1993, 'RODAS5(4) - Methodes de Rosenbrock d'ordre 5(4) adaptees aux problemes "
        "differentiels-algebriques', Univ. Geneve; digits from OrdinaryDiffEq.jl (RODAS5A/C/c/d/H), "
        "verified by order conditions and dense-output convergence"
    ),
    gamma=0.19,
    a=_RODAS5_A,
    C=(
        (),
        (-10.31323885133993,),
        (-21.04823117650003, -7.234992135176716),
        (32.22751541853323, -4.943732386540191, 19.44922031041879),
        (-20.69865579590063, -8.816374604402768, 1.260436877740897, -0.7495647613787146),
        (-46.22004352711257, -17.49534862857472, -289.6389582892057, 93.60855400400906, 318.3822534212147),
        (34.20013733472935, -14.1553540271769, 57.823356409884, 25.83362985412365, 1.408950972071624,
         -6.551835421242162),
        (42.57076742291101, -13.80770672017997, 93.98938432427124, 18.77919633714503, -31.5835918722337,
         -6.685968952921985, -5.810979938412932),
    ),
    b=_RODAS5_B,
    btilde=_unit(8, 7),
    c=(0.0, 0.38, 0.3878509998321533, 0.483971893787384, 0.457047700881958, 1.0, 1.0, 1.0),
    d=(0.19, -0.1823079225333714636, -0.319231832186874912, 0.3449828624725343, -0.377417564392089818,
       0.0, 0.0, 0.0),
    order=5,
    embedded_order=4,
    stiffly_accurate=True,
    dense=_rodas_dense(_RODAS5_B, _RODAS5_H),
    dense_order=4,
)

# fmt: on

ROSENBROCK_TABLEAUS: dict[str, RosenbrockTableau] = {
    tab.name: tab for tab in (ROSENBROCK23, ROS3P, RODAS4, RODAS5, RODAS5P)
}

__all__ = ["RODAS4", "RODAS5", "RODAS5P", "ROS3P", "ROSENBROCK23", "ROSENBROCK_TABLEAUS"]
