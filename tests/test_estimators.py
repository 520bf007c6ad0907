"""The embedded error estimators, one step at a time: orders, stability functions, and how well they track.

Every tableau with error weights ``btilde`` is driven directly through its stepper (built as ``solve``
builds it). One step of size ``h`` from a point on the exact solution gives the main solution ``u1``, the
estimate ``err = sum btilde_i k_i`` and the embedded solution ``u1_hat = u1 - err``. The estimate is
``u1 - u1_hat``, i.e. (to leading order) the local error of the *lower-order* of the two solutions: the
embedded one, except for Rosenbrock23 whose main solution has order 2 and embedded one order 3.

Implicit stages are solved with tolerances 1e-13 so Newton's error is far below the local errors measured.
"""

from __future__ import annotations

import cmath
import math

import pytest
import torch
from helpers import kepler_exact, split_problem

import pysciml as ps
from pysciml.algorithms import ALGORITHMS, IMEXAlgorithm
from pysciml.native import make_stepper as _make_stepper
from pysciml.solution import Stats

F64 = torch.float64
ESTIMATED = [cls() for cls in ALGORITHMS.values() if cls().tableau.btilde is not None]
IDS = [a.name for a in ESTIMATED]
IMEX = [a for a in ESTIMATED if isinstance(a, IMEXAlgorithm)]


def one_step(alg: ps.Algorithm, prob, h: float, unsplit: bool = False):
    """``(u1, err, u1_hat)`` of one step of size ``h`` from ``(prob.tspan[0], prob.u0)``.

    ``u1`` and ``err`` are the stepper's; ``u1_hat`` is recomputed here from the tableau's weights
    ``b_hat = b - btilde`` and the step's stages (``u + sum_i b_hat_i K_i``, ``K_i`` the stage increments:
    ``h k_i`` for RK families, ``k_i`` for Rosenbrock), so a stepper whose ``err`` is wrongly scaled or
    combined disagrees with the true error of ``u1_hat``."""
    atol = torch.full((1, prob.state_size), 1e-14, dtype=F64)
    stepper = _make_stepper(alg, prob, Stats(), atol, 1e-13, unsplit)
    t = torch.tensor([prob.tspan[0]], dtype=F64)
    u = prob.u0.reshape(1, -1)
    stepper.init(t, u)
    res = stepper.step(t, u, torch.tensor([h], dtype=F64))
    assert res.err is not None and (res.ok is None or bool(res.ok.all()))
    tab = alg.tableau
    increments = torch.stack(res.stages)[:, 0]
    if res.stage_scale is not None:
        increments = increments * res.stage_scale[0]
    b_hat = torch.tensor(tab.b, dtype=F64) - torch.tensor(tab.btilde, dtype=F64)
    u_hat = u[0] + b_hat @ increments
    return res.u_new[0], res.err[0], u_hat


def lower_order_error(alg, u1, u_hat, x) -> torch.Tensor:
    """The true local error of the lower-order solution (the one the estimate estimates)."""
    tab = alg.tableau
    return u1 - x if tab.order < tab.embedded_order else u_hat - x


def slope(hs, values) -> float:
    return math.log(values[0] / values[-1]) / math.log(hs[0] / hs[-1])


# ------------------------------------------------------------------ problems (exact solution at t0 + h)
A3 = torch.tensor([[-1.0, 2.0, 0.3], [-0.5, -2.0, 1.0], [0.2, 0.1, -3.0]], dtype=F64)  # non-normal
U3 = torch.tensor([1.0, -0.5, 0.25], dtype=F64)


def linear_problem():
    return ps.ODEProblem(lambda t, u: A3 @ u, U3, (0.0, 1.0)), lambda h: torch.linalg.matrix_exp(A3 * h) @ U3


def kepler_problem(t0: float = 0.5, e: float = 0.3):
    """Autonomous, coupled and nonlinear (so no ``df/dt`` enters the Rosenbrock steps)."""

    def f(t, u):
        q1, q2, p1, p2 = u.unbind()
        r3 = (q1 * q1 + q2 * q2) ** 1.5
        return torch.stack((p1, p2, -q1 / r3, -q2 / r3))

    def exact(h: float) -> torch.Tensor:
        return torch.tensor(kepler_exact(t0 + h, e), dtype=F64)

    return ps.ODEProblem(f, exact(0.0), (t0, t0 + 1.0)), exact


def split_linear_problem():
    """u' = L u + B u, L (stiffish, implicit part) and B (explicit part) not commuting."""
    L = torch.tensor([[-4.0, 1.0], [1.0, -6.0]], dtype=F64)
    B = torch.tensor([[0.0, 1.5], [-1.0, 0.5]], dtype=F64)
    u0 = torch.tensor([1.0, 0.5], dtype=F64)
    prob = ps.SplitODEProblem(L, lambda t, u: B @ u, u0, (0.0, 1.0))
    return prob, lambda h: torch.linalg.matrix_exp((L + B) * h) @ u0


def split_nonlinear_problem():
    """helpers.split_problem: L u implicit, a nonlinear g explicit; exact solution (cos t, sin t)."""
    prob, exact = split_problem(stiffness=10.0)
    return prob, lambda h: exact(h)


# ------------------------------------------------------------------ stability functions on u' = z u
def stability_pair(alg, z: complex) -> tuple[complex, complex]:
    """``(R(z), R_hat(z))``: one step of size 1 on u' = z u, written as a real 2x2 rotation-dilation."""
    a = torch.tensor([[z.real, -z.imag], [z.imag, z.real]], dtype=F64)
    prob = ps.ODEProblem(lambda t, u: a @ u, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 1.0))
    u1, _, uh = one_step(alg, prob, 1.0)
    return complex(float(u1[0]), float(u1[1])), complex(float(uh[0]), float(uh[1]))


# Points where R - R_hat is compared with the true error of the lower-order solution, e^z - R_low. (Avoid
# z = -1: BS3's R - R_hat = z^3 (1/6 - c3 - c4 z) happens to vanish there.)
Z_PROBE = (-0.5, complex(-0.5, 2.0), complex(0.0, 1.0), -2.0)
Z_ALL = (*Z_PROBE, -1.0, complex(-1.0, 1.0), -1e3, -1e6)


@pytest.mark.parametrize("alg", ESTIMATED, ids=IDS)
def test_stability_functions_differ(alg):
    """R_hat != R on u' = z u, so the estimate sees the error of linear problems; ROS3P is the exception.

    Measured |R - R_hat| / |e^z - R_low| at Z_PROBE: 0.6-7.7 for most methods, KenCarp3 0.18-0.36, KenCarp4
    0.18-1.7, KenCarp5 0.09-0.15 (its embedded weights satisfy the fifth-order condition b_hat^T A^4 1 =
    1/120 to 2e-8, so R_hat agrees with e^z one order further than the embedded order 4 says and R - R_hat
    is dominated by the small z^6 terms). ROS3P: |R - R_hat| <= 4.5e-16 at every z, stiff ones included."""
    if isinstance(alg, ps.ROS3P):
        for z in Z_ALL:
            r, rh = stability_pair(alg, complex(z))
            assert abs(r - rh) <= 1e-14 * max(1.0, abs(r)), (z, r, rh)
        assert not alg.is_adaptive  # which is why ROS3P runs with fixed steps only
        with pytest.raises(ps.InputError):
            prob, _ = linear_problem()
            ps.solve(prob, alg, adaptive=True, dt=0.1)
        return
    tab = alg.tableau
    for z in Z_PROBE:
        r, rh = stability_pair(alg, complex(z))
        low = r if tab.order < tab.embedded_order else rh
        ratio = abs(r - rh) / abs(cmath.exp(z) - low)
        assert ratio >= 0.05, (alg.name, z, ratio)


@pytest.mark.parametrize("alg", ESTIMATED, ids=IDS)
def test_estimate_is_main_minus_embedded(alg):
    """The stepper's ``err`` is ``u1 - u1_hat`` with ``u1_hat`` from the tableau's own weights (to round-off)."""
    prob, _ = kepler_problem()
    u1, err, u_hat = one_step(alg, prob, 0.1)
    assert float(err.norm()) > 1e-9  # a real error, far above round-off
    assert float((err - (u1 - u_hat)).abs().max()) <= 1e-13, (alg.name, err, u1 - u_hat)


# Step sizes for the order test, per method: asymptotic range on the Kepler problem and above round-off.
ORDER_H = {"Vern7": 0.1, "KenCarp5": 0.05, "Kvaerno5": 0.05, "Rodas5": 0.05, "Rodas5P": 0.05, "Tsit5": 0.05,
           "DP5": 0.05}


@pytest.mark.parametrize("alg", ESTIMATED, ids=IDS)
def test_local_orders(alg):
    """Local errors on the nonlinear Kepler problem over h, h/2, h/4: the estimate scales as h^(q+1),
    q = min(order, embedded_order), the main solution as h^(order+1) (faster). Since u1_hat - x =
    (u1 - x) - err, the embedded solution then has order exactly q when order > embedded_order; for
    Rosenbrock23 (order 2 < embedded 3) the embedded solution's own error is fitted (h^4).
    Measured slopes: estimate within 0.05 of q+1 for every method, main solution within 0.25 of order+1."""
    tab = alg.tableau
    prob, exact = kepler_problem()
    h0 = ORDER_H.get(alg.name, 0.1)
    hs = [h0, h0 / 2, h0 / 4]
    est, main, emb = [], [], []
    for h in hs:
        u1, err, u_hat = one_step(alg, prob, h)
        x = exact(h)
        est.append(float(err.norm()))
        main.append(float((u1 - x).norm()))
        emb.append(float((u_hat - x).norm()))
    q = min(tab.order, tab.embedded_order)
    assert abs(slope(hs, est) - (q + 1)) <= 0.15, (alg.name, est)
    assert abs(slope(hs, main) - (tab.order + 1)) <= 0.4, (alg.name, main)
    if tab.order < tab.embedded_order:
        assert abs(slope(hs, emb) - (tab.embedded_order + 1)) <= 0.15, (alg.name, emb)
    else:
        assert slope(hs, main) >= slope(hs, est) + 0.5  # the main error dies faster: u1_hat has order q


# Small steps for the tracking test, found by a scan over h = 0.1 * 2^-k: the ratio has settled near 1 and
# the lower-order local error is well above round-off (1e-7..1e-13). Per (method, problem); default 0.0125.
TRACK_H_DEFAULT = 0.0125
TRACK_H = {
    ("Vern7", "linear"): 0.025, ("Vern7", "kepler"): 0.025,  # at 0.0125 the error is at round-off
    # ratio 0.43 at h = 0.0125, 0.59 / 0.74 / 0.85 at h/2, h/4, h/8: converges to 1 slowly (O(h) term)
    ("KenCarp3", "split_nonlinear"): 0.1 / 64,
    # the embedded error crosses near zero around h = 0.0125 (ratio 10.1 there, 1.93 / 1.33 / 1.14 below)
    ("KenCarp5", "split_nonlinear"): 0.1 / 64,
}
# (method, problem) -> (low, high) where the default band does not apply, with the reason.
TRACK_BAND = (0.67, 1.5)
TRACK_EXCEPTIONS = {
    # b_hat^T A^4 1 = 1/120 to 2e-8 (see test_stability_functions_differ): on linear constant-coefficient
    # problems the estimate is ~0.1 x the true local error at every practical step (measured 0.097-0.108
    # for h = 0.2 .. 0.0125); it tends to 1 only for h |lambda| < ~1e-3.
    ("KenCarp5", "linear"): (0.05, 0.2),
}
PROBLEMS = {"linear": linear_problem, "kepler": kepler_problem}


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("alg", ESTIMATED, ids=IDS)
def test_estimate_tracks_local_error(alg, problem):
    """At a small step the estimate equals the lower-order solution's true local error within a factor
    (ratio ||err|| / ||e_low|| -> 1 as h -> 0, the next term being O(h) relative).

    Measured ratios at h = 0.0125 (Vern7 0.025), linear / kepler: Tsit5 1.004/0.999, DP5 1.013/1.024,
    BS3 0.949/1.021, Vern7 0.998/1.000, Rosenbrock23 1.001/1.000, Rodas4 1.005/0.999, Rodas5P 1.000/1.001,
    KenCarp3 0.902/1.041, KenCarp4 1.142/1.015, KenCarp5 0.098/0.701, Kvaerno5 1.069/1.018; ROS3P 0/1.006.
    Band [0.67, 1.5]: the measured spread plus margin; an estimate off by 2x (or scaled by 0.1) fails."""
    prob, exact = PROBLEMS[problem]()
    h = TRACK_H.get((alg.name, problem), TRACK_H_DEFAULT)
    u1, err, u_hat = one_step(alg, prob, h)
    e_low = lower_order_error(alg, u1, u_hat, exact(h))
    ratio = float(err.norm() / e_low.norm())
    if isinstance(alg, ps.ROS3P) and problem == "linear":
        assert ratio <= 1e-6, ratio  # the estimate vanishes on linear problems: fixed-step only
        return
    lo, hi = TRACK_EXCEPTIONS.get((alg.name, problem), TRACK_BAND)
    assert lo <= ratio <= hi, (alg.name, problem, h, ratio)


SPLIT_PROBLEMS = {"split_linear": split_linear_problem, "split_nonlinear": split_nonlinear_problem}


@pytest.mark.parametrize("problem", list(SPLIT_PROBLEMS))
@pytest.mark.parametrize("alg", IMEX, ids=[a.name for a in IMEX])
def test_imex_estimate_tracks_local_error(alg, problem):
    """The IMEX pairs (implicit part + explicit part sharing the error weights) on split problems.

    Measured ratios (h = 0.0125; split_nonlinear of KenCarp3/5 at h = 0.1/64), split_linear /
    split_nonlinear: KenCarp3 0.85/0.85, KenCarp4 1.16/1.25, KenCarp5 1.01/1.14. Band as above."""
    prob, exact = SPLIT_PROBLEMS[problem]()
    h = TRACK_H.get((alg.name, problem), TRACK_H_DEFAULT)
    u1, err, u_hat = one_step(alg, prob, h)
    e_low = lower_order_error(alg, u1, u_hat, exact(h))
    ratio = float(err.norm() / e_low.norm())
    assert TRACK_BAND[0] <= ratio <= TRACK_BAND[1], (alg.name, problem, ratio)
