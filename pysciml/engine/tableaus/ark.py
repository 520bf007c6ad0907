"""Additive Runge-Kutta (ESDIRK implicit + explicit) and pure ESDIRK coefficient data for the native engine.

Every constant follows :class:`~pysciml.engine.tableaus._base.ARKTableau` exactly::

    U_i = u + h sum_{j<=i} aI[i][j] kI_j + h sum_{j<i} aE[i][j] kE_j,
    u1  = u + h sum_i b[i] (kI_i + kE_i),     err = h sum_i btilde[i] (kI_i + kE_i),
    u(theta) = u + sum_j theta**(j+1) sum_i dense[j][i] h (kI_i + kE_i).

Mapping from the sources (proved by ``tests/test_tableaus_ark.py``):

* Kennedy & Carpenter print the implicit rows with the diagonal, ``a_{21} = gamma`` and ``c_2 = 2 gamma``;
  stage indices 1..s become our 0..s-1 and ``aI[0] == (0.0,)`` (explicit first stage).  All three
  KenCarp methods use the same ``b`` and ``b_hat`` for both parts (so ``bE``/``btildeE`` stay ``None``).
* The paper and PETSc give the embedded weights ``b_hat``; OrdinaryDiffEq.jl stores ``btilde = b_hat - b``
  (its comments say ``bhat1 - a41``).  Ours is ``btilde = b - b_hat`` (``_base`` convention), computed
  below from ``b`` and ``b_hat`` by :func:`_minus`, i.e. the negative of OrdinaryDiffEq's numbers.
* The paper's dense output is ``b*_i(theta) = sum_{j=1}^{p*} b*_ij theta**j``; our ``dense[j][i]`` is
  ``b*_{i,j+1}`` (transposed, powers starting at ``theta**1``), applied to ``h (kI_i + kE_i)``.
* Kvaerno's methods are stiffly accurate and FSAL: ``b`` is the last row of ``aI`` and the embedded method
  is the row before it (whose node is also 1).  OrdinaryDiffEq stores ``btilde = a_{s-1,:} - a_{s,:}``;
  ours is ``b - b_hat = a_{s,:} - a_{s-1,:}`` (padded with ``gamma`` in the last place).
"""

from __future__ import annotations

from ._base import ARKTableau, Rows

_K_C_2003 = (
    "C. A. Kennedy, M. H. Carpenter, Additive Runge-Kutta schemes for convection-diffusion-reaction "
    "equations, Appl. Numer. Math. 44 (2003) 139-181"
)
_KVAERNO_2004 = (
    "A. Kvaerno, Singly diagonally implicit Runge-Kutta methods with an explicit first stage, BIT 44 (2004) 489-502"
)


def _esdirk(gamma: float, lower: Rows) -> Rows:
    """Implicit rows from their strictly-lower parts: ``(0.0,)`` then ``(*lower[i-1], gamma)``."""
    return ((0.0,), *(tuple(row) + (gamma,) for row in lower))


def _explicit(lower: Rows) -> Rows:
    """Explicit rows: an empty first row, then the strictly-lower parts."""
    return ((), *lower)


def _minus(b: tuple[float, ...], b_hat: tuple[float, ...]) -> tuple[float, ...]:
    """Error weights ``b - b_hat``."""
    return tuple(x - y for x, y in zip(b, b_hat, strict=True))


# Coefficient tables keep their row layout:
# fmt: off
# --------------------------------------------------------------------------------------------------------
# KenCarp3 = ARK3(2)4L[2]SA, Kennedy & Carpenter (2003): ERK, ESDIRK, b, b_hat and the dense-output b*_ij
# (p* = 2).  Rationals as printed there; identical in OrdinaryDiffEq.jl (KenCarp3Tableau, sdirk_tableaus.jl)
# and PETSc (TSARKIMEX3, including binterpt = the b*_ij).
_G3 = 1767732205903 / 4055673282236
_B3 = (1471266399579 / 7840856788654, -4482444167858 / 7529755066697, 11266239266428 / 11593286722821, _G3)
_BHAT3 = (2756255671327 / 12835298489170, -10771552573575 / 22201958757719,
          9247589265047 / 10645013368117, 2193209047091 / 5459859503100)

KENCARP3 = ARKTableau(
    name="KenCarp3",
    reference=_K_C_2003 + ", ARK3(2)4L[2]SA",
    gamma=_G3,
    c=(0.0, 1767732205903 / 2027836641118, 3 / 5, 1.0),
    aI=_esdirk(_G3, (
        (_G3,),
        (2746238789719 / 10658868560708, -640167445237 / 6845629431997),
        _B3[:3],
    )),
    aE=_explicit((
        (1767732205903 / 2027836641118,),
        (5535828885825 / 10492691773637, 788022342437 / 10882634858940),
        (6485989280629 / 16251701735622, -4246266847089 / 9704473918619, 10755448449292 / 10357097424841),
    )),
    b=_B3,
    btilde=_minus(_B3, _BHAT3),
    order=3,
    embedded_order=2,
    dense=(
        (4655552711362 / 22874653954995, -18682724506714 / 9892148508045,
         34259539580243 / 13192909600954, 584795268549 / 6622622206610),
        (-215264564351 / 13552729205753, 17870216137069 / 13817060693119,
         -28141676662227 / 17317692491321, 2508943948391 / 7218656332882),
    ),
    dense_order=2,
)

# --------------------------------------------------------------------------------------------------------
# KenCarp4 = ARK4(3)6L[2]SA, Kennedy & Carpenter (2003), with its third-order dense output (p* = 3).
# Same rationals in OrdinaryDiffEq.jl (KenCarp4Tableau) and PETSc (TSARKIMEX4, binterpt).
_G4 = 1 / 4
_B4 = (82889 / 524892, 0.0, 15625 / 83664, 69875 / 102672, -2260 / 8211, _G4)
_BHAT4 = (4586570599 / 29645900160, 0.0, 178811875 / 945068544, 814220225 / 1159782912,
          -3700637 / 11593932, 61727 / 225920)

KENCARP4 = ARKTableau(
    name="KenCarp4",
    reference=_K_C_2003 + ", ARK4(3)6L[2]SA",
    gamma=_G4,
    c=(0.0, 1 / 2, 83 / 250, 31 / 50, 17 / 20, 1.0),
    aI=_esdirk(_G4, (
        (_G4,),
        (8611 / 62500, -1743 / 31250),
        (5012029 / 34652500, -654441 / 2922500, 174375 / 388108),
        (15267082809 / 155376265600, -71443401 / 120774400, 730878875 / 902184768, 2285395 / 8070912),
        _B4[:5],
    )),
    aE=_explicit((
        (1 / 2,),
        (13861 / 62500, 6889 / 62500),
        (-116923316275 / 2393684061468, -2731218467317 / 15368042101831, 9408046702089 / 11113171139209),
        (-451086348788 / 2902428689909, -2682348792572 / 7519795681897, 12662868775082 / 11960479115383,
         3355817975965 / 11060851509271),
        (647845179188 / 3216320057751, 73281519250 / 8382639484533, 552539513391 / 3454668386233,
         3354512671639 / 8306763924573, 4040 / 17871),
    )),
    b=_B4,
    btilde=_minus(_B4, _BHAT4),
    order=4,
    embedded_order=3,
    dense=(
        (6943876665148 / 7220017795957, 0.0, 7640104374378 / 9702883013639,
         -20649996744609 / 7521556579894, 8854892464581 / 2390941311638, -11397109935349 / 6675773540249),
        (-54480133 / 30881146, 0.0, -11436875 / 14766696,
         174696575 / 18121608, -12120380 / 966161, 3843 / 706),
        (6818779379841 / 7100303317025, 0.0, 2173542590792 / 12501825683035,
         -31592104683404 / 5083833661969, 61146701046299 / 7138195549469, -17219254887155 / 4939391667607),
    ),
    dense_order=3,
)

# --------------------------------------------------------------------------------------------------------
# KenCarp5 = ARK5(4)8L[2]SA, Kennedy & Carpenter (2003), with its third-order dense output (p* = 3).
# Same rationals in OrdinaryDiffEq.jl (KenCarp5Tableau) and PETSc (TSARKIMEX5, binterpt).  Note
# aI[6][5] = -4269925059573/7827059040749 (diffrax's kencarp5.py has the denominator ...40719, a typo: it
# breaks the order conditions at ~1e-12 and disagrees with the other sources).
_G5 = 41 / 200
_B5 = (-872700587467 / 9133579230613, 0.0, 0.0, 22348218063261 / 9555858737531,
       -1143369518992 / 8141816002931, -39379526789629 / 19018526304540, 32727382324388 / 42900044865799, _G5)
_BHAT5 = (-975461918565 / 9796059967033, 0.0, 0.0, 78070527104295 / 32432590147079,
          -548382580838 / 3424219808633, -33438840321285 / 15594753105479, 3629800801594 / 4656183773603,
          4035322873751 / 18575991585200)

KENCARP5 = ARKTableau(
    name="KenCarp5",
    reference=_K_C_2003 + ", ARK5(4)8L[2]SA",
    gamma=_G5,
    c=(0.0, 41 / 100, 2935347310677 / 11292855782101, 1426016391358 / 7196633302097,
       92 / 100, 24 / 100, 3 / 5, 1.0),
    aI=_esdirk(_G5, (
        (_G5,),
        (41 / 400, -567603406766 / 11931857230679),
        (683785636431 / 9252920307686, 0.0, -110385047103 / 1367015193373),
        (3016520224154 / 10081342136671, 0.0, 30586259806659 / 12414158314087,
         -22760509404356 / 11113319521817),
        (218866479029 / 1489978393911, 0.0, 638256894668 / 5436446318841,
         -1179710474555 / 5321154724896, -60928119172 / 8023461067671),
        (1020004230633 / 5715676835656, 0.0, 25762820946817 / 25263940353407,
         -2161375909145 / 9755907335909, -211217309593 / 5846859502534, -4269925059573 / 7827059040749),
        _B5[:7],
    )),
    aE=_explicit((
        (41 / 100,),
        (367902744464 / 2072280473677, 677623207551 / 8224143866563),
        (1268023523408 / 10340822734521, 0.0, 1029933939417 / 13636558850479),
        (14463281900351 / 6315353703477, 0.0, 66114435211212 / 5879490589093,
         -54053170152839 / 4284798021562),
        (14090043504691 / 34967701212078, 0.0, 15191511035443 / 11219624916014,
         -18461159152457 / 12425892160975, -281667163811 / 9011619295870),
        (19230459214898 / 13134317526959, 0.0, 21275331358303 / 2942455364971,
         -38145345988419 / 4862620318723, -1 / 8, -1 / 8),
        (-19977161125411 / 11928030595625, 0.0, -40795976796054 / 6384907823539,
         177454434618887 / 12078138498510, 782672205425 / 8267701900261,
         -69563011059811 / 9646580694205, 7356628210526 / 4942186776405),
    )),
    b=_B5,
    btilde=_minus(_B5, _BHAT5),
    order=5,
    embedded_order=4,
    dense=(
        (-17674230611817 / 10670229744614, 0.0, 0.0, 65168852399939 / 7868540260826,
         15494834004392 / 5936557850923, -99329723586156 / 26959484932159,
         -19024464361622 / 5461577185407, -6511271360970 / 6095937251113),
        (43486358583215 / 12773830924787, 0.0, 0.0, -91478233927265 / 11067650958493,
         -79368583304911 / 10890268929626, -12239297817655 / 9152339842473,
         115839755401235 / 10719374521269, 5843115559534 / 2180450260947),
        (-9257016797708 / 5021505065439, 0.0, 0.0, 26096422576131 / 11239449250142,
         92396832856987 / 20362823103730, 30029262896817 / 10175596800299,
         -26136350496073 / 3983972220547, -5289405421727 / 3760307252460),
    ),
    dense_order=3,
)

# --------------------------------------------------------------------------------------------------------
# Kvaerno5: Kvaerno (2004), the 7-stage ESDIRK 5(4), gamma = 0.26; decimals as given (17 significant
# digits) and as in OrdinaryDiffEq.jl (Kvaerno5Tableau) and diffrax (kvaerno5.py).  Stage 6 (c = 1) is the
# embedded 4th-order solution, stage 7 the 5th-order one.  a62 = a72 = 0.
_GK5 = 0.26
_K5_ROW6 = (0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676)
_K5_ROW7 = (0.13659751177640291, 0.0, -0.05496908796538376, -0.04118626728321046, 0.62993304899016403,
            0.06962479448202728)

KVAERNO5 = ARKTableau(
    name="Kvaerno5",
    reference=_KVAERNO_2004 + ", ESDIRK 5(4) with 7 stages",
    gamma=_GK5,
    c=(0.0, 0.52, 1.230333209967908, 0.895765984350076, 0.436393609858648, 1.0, 1.0),
    aI=_esdirk(_GK5, (
        (_GK5,),
        (0.13, 0.84033320996790809),
        (0.22371961478320505, 0.47675532319799699, -0.06470895363112615),
        (0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998),
        _K5_ROW6,
        _K5_ROW7,
    )),
    aE=None,
    b=(*_K5_ROW7, _GK5),
    btilde=_minus((*_K5_ROW7, _GK5), (*_K5_ROW6, _GK5, 0.0)),
    order=5,
    embedded_order=4,
    notes="implicit only: split problems are solved as f_implicit + f_explicit",
)

# --------------------------------------------------------------------------------------------------------
# Kvaerno3: Kvaerno (2004), the 4-stage ESDIRK 3(2), gamma = 0.4358665215 (10 digits, as printed; the
# L-stable value is the root 0.43586652150845899... of a cubic).  The other digits fit this gamma (order
# conditions hold to ~1e-14), but |R(-inf)| is ~1.5e-8, not 0.  Decimals as in OrdinaryDiffEq.jl
# (Kvaerno3Tableau); diffrax (kvaerno3.py) builds the same rows from the paper's formulas in gamma.  Stage 3
# (c = 1) is the embedded 2nd-order solution.  (Kvaerno4 is left out: OrdinaryDiffEq's digits pair the
# gamma of the paper's "3/4" variant with advancing by the last stage, whose R(-inf) is 0.72, not 0.)
_GK3 = 0.4358665215
_K3_ROW3 = (0.490563388419108, 0.073570090080892)
_K3_ROW4 = (0.308809969973036, 1.490563388254106, -1.235239879727145)

KVAERNO3 = ARKTableau(
    name="Kvaerno3",
    reference=_KVAERNO_2004 + ", ESDIRK 3(2) with 4 stages",
    gamma=_GK3,
    c=(0.0, 2 * _GK3, 1.0, 1.0),
    aI=_esdirk(_GK3, ((_GK3,), _K3_ROW3, _K3_ROW4)),
    aE=None,
    b=(*_K3_ROW4, _GK3),
    btilde=_minus((*_K3_ROW4, _GK3), (*_K3_ROW3, _GK3, 0.0)),
    order=3,
    embedded_order=2,
    notes="implicit only: split problems are solved as f_implicit + f_explicit",
)
# fmt: on

ARK_TABLEAUS: dict[str, ARKTableau] = {t.name: t for t in (KENCARP3, KENCARP4, KENCARP5, KVAERNO3, KVAERNO5)}
"""All additive / ESDIRK tableaus by SciML name."""

# --------------------------------------------------------------------------------------------------------
# Second-order L-stable IMEX pairs (the SINODE paper, Zhang, Liu & Maulik, AAAI 2025, trains with PETSc's
# TSARKIMEX types l2, 3, 4, 5; 3/4/5 are KenCarp3/4/5 above).  Neither is stiffly accurate in the sense of
# the KenCarp tests (c_2 = 2 gamma, b == last implicit row), so they are kept out of ARK_TABLEAUS and tested
# in tests/test_sinode.py.
_PR_G = 1.0 - 2.0 ** -0.5  # gamma = 1 - 1/sqrt(2)

# IMEX-SSP2(2,2,2), L. Pareschi, G. Russo, "Implicit-explicit Runge-Kutta schemes and applications to
# hyperbolic systems with relaxation", J. Sci. Comput. 25 (2005) 129-155, Table II; PETSc's TSARKIMEXL2
# (the paper's "l2"), whose embedded weights b_hat = (0, 1) give a first-order error estimate.  The method
# has two implicit SDIRK stages (A~ = [[g, 0], [1 - 2g, g]]) and an explicit part A = [[0, 0], [1, 0]],
# b = (1/2, 1/2) for both.  To fit the ESDIRK layout a zero-weight explicit first stage is prepended (its
# f values are never used).  The explicit nodes (0, 1) differ from the implicit ones (g, 1 - g); the engine
# evaluates both parts at the implicit nodes, which keeps order 2 (b.c = 1/2 for either node vector).
_PR_B = (0.0, 0.5, 0.5)
IMEXSSP2 = ARKTableau(
    name="IMEXSSP2",
    reference="L. Pareschi, G. Russo, J. Sci. Comput. 25 (2005) 129-155, IMEX-SSP2(2,2,2) (PETSc TSARKIMEXL2)",
    gamma=_PR_G,
    c=(0.0, _PR_G, 1.0 - _PR_G),
    aI=_esdirk(_PR_G, ((0.0,), (0.0, 1.0 - 2.0 * _PR_G))),
    aE=_explicit(((0.0,), (0.0, 1.0))),
    b=_PR_B,
    btilde=_minus(_PR_B, (0.0, 0.0, 1.0)),
    order=2,
    embedded_order=1,
    stiffly_accurate=False,
    notes="explicit nodes (0, 0, 1) differ from c; both parts are evaluated at c",
)

# ARS(2,2,2), U. M. Ascher, S. J. Ruuth, R. J. Spiteri, "Implicit-explicit Runge-Kutta methods for
# time-dependent partial differential equations", Appl. Numer. Math. 25 (1997) 151-167, section 2.6:
# gamma = 1 - 1/sqrt(2), delta = 1 - 1/(2 gamma).  Both parts are stiffly accurate (b = last row), so
# u_{n+1} is the last stage and the step is FSAL; the two parts have different weights (bE), and there is
# no embedded method (fixed steps only).
_ARS_D = 1.0 - 1.0 / (2.0 * _PR_G)
ARS222 = ARKTableau(
    name="ARS222",
    reference="U. M. Ascher, S. J. Ruuth, R. J. Spiteri, Appl. Numer. Math. 25 (1997) 151-167, ARS(2,2,2)",
    gamma=_PR_G,
    c=(0.0, _PR_G, 1.0),
    aI=_esdirk(_PR_G, ((0.0,), (0.0, 1.0 - _PR_G))),
    aE=_explicit(((_PR_G,), (_ARS_D, 1.0 - _ARS_D))),
    b=(0.0, 1.0 - _PR_G, _PR_G),
    bE=(_ARS_D, 1.0 - _ARS_D, 0.0),
    btilde=None,
    order=2,
    embedded_order=0,
    stiffly_accurate=True,
)

IMEX2_TABLEAUS: dict[str, ARKTableau] = {t.name: t for t in (IMEXSSP2, ARS222)}
"""Second-order IMEX pairs (not in ``ARK_TABLEAUS``: they lack the KenCarp structure its tests check)."""

__all__ = ["ARK_TABLEAUS", "ARS222", "IMEX2_TABLEAUS", "IMEXSSP2", "KENCARP3", "KENCARP4", "KENCARP5",
           "KVAERNO3", "KVAERNO5"]
