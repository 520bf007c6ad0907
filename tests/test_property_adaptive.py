"""Property test of adaptive step control: on random linear systems, Success means an accurate answer.

Systems: ``u' = A u`` with ``A = Q diag(-lambda) Q^T``, ``Q`` a random orthogonal matrix, ``lambda``
log-uniform, ``n = 2..10``, ``u0`` standard normal, integrated over ``[0, 10]``; system ``k`` is drawn from
``numpy.random.default_rng(k)``. Implicit methods get ``lambda`` in ``[1e-2, 1e6]`` (stiff); explicit ones
``lambda`` in ``[1e-2, 1e2]``, because an explicit method needs ~``lambda_max T / 3`` steps (3e6 at 1e6).
The exact solution is ``Q diag(exp(-lambda t)) Q^T u0`` (the matrix exponential, through the
eigendecomposition the system was built from; :func:`test_exact_solution_matches_expm` checks it against
SciPy's ``expm``). The exact Jacobian is given, so the test measures step control, not Jacobian cost.

Error measure, in units of the tolerance: at each of ``t = 1e-3, 1e-2, 0.1, 1, 10`` (``tstops`` make steps
land there, so it is the steps' error, not the interpolant's)

    ratio(t) = max_i |u_i(t) - x_i(t)| / (atol + rtol * max_i |x_i(t)|),      atol = 1e-3 * rtol

i.e. the max-norm error relative to the solution's max-norm at that time (components of ``x`` that cross
zero do not inflate it; the tiny atol matters only once every mode has decayed). Property, for every
adaptive method and rtol in {1e-4, 1e-6, 1e-8}: a Success retcode implies ``max_t ratio(t) <= 100``;
anything else must be a failure retcode. A method that cannot meet the bound at a tolerance must warn
(``alg.min_rtol``) and is exempt there only (``EXEMPT``).

``test_success_means_accurate_between_steps`` asks the same of values interpolated by the dense output
(no tstops), on a few seeds.

A seeded subset runs by default (``FAST_SEEDS``, the first seeds plus the hardest seed per method found in the
full run); the full 200 systems per (method, rtol) are marked ``exhaustive`` (``pytest -m exhaustive``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import pysciml as ps
from pysciml.algorithms import ALGORITHMS

RTOLS = (1e-4, 1e-6, 1e-8)
ATOL_FACTOR = 1e-3
BOUND = 100.0
T1 = 10.0
T_CHECK = (1e-3, 1e-2, 1e-1, 1.0, T1)
STIFF = (1e-2, 1e6)
NONSTIFF = (1e-2, 1e2)
N_FULL = 200

# Second- and first-order methods are left out: at rtol 1e-8 on [0, 10] they need more than maxiters steps per
# system (SDIRK2 and Trapezoid take ~15,000 steps at 1e-6). Measured on seeds 0-3 and 140 (worst ratio):
# AdaptiveHeun, Ralston, SDIRK2, Trapezoid <= 0.9 at 1e-4 and 1e-6; TRBDF2 23 / 110 at 1e-4 / 1e-6 and 50 at
# 1e-5 over seeds 0-19, 23, 81, 140, 158 (hence its min_rtol = 1e-5); ImplicitEuler 296 / 2930 at 1e-4 / 1e-6 and
# 97 at 1e-3 over those 24 seeds (min_rtol = 1e-3). tests/test_tableaus_more.py covers their adaptive solves.
LOW_ORDER = {"AdaptiveHeun", "Ralston", "ImplicitEuler", "Trapezoid", "SDIRK2", "TRBDF2"}
ADAPTIVE = [cls() for cls in ALGORITHMS.values() if cls().is_adaptive and cls.__name__ not in LOW_ORDER]


def exempt(alg: ps.Algorithm, rtol: float) -> bool:
    """Where ``solve`` warns that rtol is below what the method is meant for (``rtol < alg.min_rtol``)."""
    return alg.min_rtol is not None and rtol < alg.min_rtol


# The exemptions as measured and documented; test_exemptions_are_documented keeps them equal to what
# min_rtol implies, so raising a min_rtol to hide a failure shows up here. Rosenbrock23 (order 2) at 1e-8:
# 78 of 200 systems over 100x (worst 516x, seed 140), error accumulation rather than a bad estimate.
# At 1e-6: 3 of 200 over 100x (seed 140 111x, 158 102x, 81 100.2x; u' = -u/2 to t = 10 gives 95x); at 1e-5 the
# worst of 200 is 51x, hence Rosenbrock23's min_rtol = 1e-5.
EXEMPT = {("Rosenbrock23", 1e-6), ("Rosenbrock23", 1e-8)}

# Known failures of the property, marked xfail(strict=True) until fixed in the library (none at present; the
# last one, Rosenbrock23 at 1e-6 without a warning, was fixed by raising its min_rtol):
KNOWN_FAILURES: dict[tuple[str, float], str] = {}


def lambda_range(alg: ps.Algorithm) -> tuple[float, float]:
    return STIFF if alg.is_implicit else NONSTIFF


def random_system(seed: int, lam_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lambda, Q, u0)`` of system ``seed``: the same ``n``, ``Q``, ``u0`` for both lambda ranges."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 11))
    lam = np.exp(rng.uniform(math.log(lam_range[0]), math.log(lam_range[1]), n))
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))  # Haar-distributed orthogonal matrix
    u0 = rng.standard_normal(n)
    return lam, q, u0


def exact(lam: np.ndarray, q: np.ndarray, u0: np.ndarray, t: float) -> np.ndarray:
    return q @ (np.exp(-lam * t) * (q.T @ u0))


def solve_system(alg: ps.Algorithm, seed: int, rtol: float,
                 land: bool = True) -> tuple[ps.ReturnCode, float, list[str], int]:
    """Solve system ``seed``; returns (retcode, worst ratio over T_CHECK, warning messages, accepted steps).
    ``land=False`` drops the tstops: the values at T_CHECK then come from the dense-output interpolant."""
    lam, q, u0 = random_system(seed, lambda_range(alg))
    a = torch.tensor((q * -lam) @ q.T)
    atol = ATOL_FACTOR * rtol
    prob = ps.ODEProblem(lambda t, u: a @ u, torch.tensor(u0), (0.0, T1), jac=lambda t, u, p: a)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = ps.solve(prob, alg, rtol=rtol, atol=atol, saveat=list(T_CHECK),
                       tstops=list(T_CHECK[:-1]) if land else None, maxiters=100_000)
    messages = [str(w.message) for w in caught]
    if sol.retcode != ps.ReturnCode.Success:
        return sol.retcode, math.nan, messages, sol.stats.naccept
    worst = 0.0
    for i, t in enumerate(T_CHECK):
        x = exact(lam, q, u0, t)
        err = float(np.abs(sol.u[i].numpy() - x).max())
        worst = max(worst, err / (atol + rtol * float(np.abs(x).max())))
    return sol.retcode, worst, messages, sol.stats.naccept


def warns_low_order(alg: ps.Algorithm, messages: list[str]) -> bool:
    return any(f"below what {alg.name}() is meant for" in m for m in messages)


def check(alg: ps.Algorithm, rtol: float, seeds, land: bool = True) -> tuple[int, float]:
    """Assert the property over ``seeds``; returns (failure retcodes, worst ratio over successes)."""
    is_exempt = exempt(alg, rtol)
    failures, worst, bad = 0, 0.0, []
    for seed in seeds:
        code, ratio, messages, _ = solve_system(alg, seed, rtol, land)
        assert warns_low_order(alg, messages) == is_exempt, (alg.name, rtol, messages)
        if is_exempt:
            return 0, math.nan  # the warning is the contract here; accuracy is not promised
        if code != ps.ReturnCode.Success:
            failures += 1
            continue
        worst = max(worst, ratio)
        if ratio > BOUND:
            bad.append((seed, ratio))
    assert not bad, f"{alg.name} rtol={rtol:g}: Success with error > {BOUND:g} x tol (seed, ratio): {bad}"
    # guard against passing by failing: every full-run solve succeeded (measured), allow 2 %
    assert failures <= 0.02 * len(seeds), (alg.name, rtol, failures)
    return failures, worst


# The default subset: seeds 0-3 and, per method, the seeds with the largest ratio in the full run (the worst
# seed at each rtol). Full run (200 systems per cell; failures / worst ratio; a dash: no failure retcode):
#
#                rtol 1e-4        rtol 1e-6        rtol 1e-8
#   Tsit5        - / 0.86 (168)   - / 1.34 (1)     - / 0.92 (38)
#   DP5          - / 0.61 (198)   - / 0.84 (158)   - / 0.94 (108)
#   BS3          - / 2.14 (24)    - / 2.69 (188)   - / 3.31 (61)
#   Vern7        - / 0.073 (115)  - / 0.062 (43)   - / 0.044 (73)
#   Rosenbrock23 - / 23.3 (140)   - / 111 (140)    warns; 78 over 100, worst 516 (140)
#   Rodas4       - / 0.17 (140)   - / 0.20 (140)   - / 0.20 (140)
#   Rodas5       - / 0.052 (23)   - / 0.061 (140)  - / 0.076 (140)
#   Rodas5P      - / 0.011 (23)   - / 0.0093 (160) - / 0.045 (105)
#   KenCarp3     - / 6.5 (140)    - / 7.8 (140)    - / 8.1 (140)
#   KenCarp4     - / 2.3 (23)     - / 4.0 (140)    - / 4.8 (140)
#   KenCarp5     - / 1.6 (140)    - / 7.8 (23)     - / 28.8 (140)
#   Kvaerno3     - / 0.58 (140)   - / 0.63 (140)   - / 0.63 (140)
#   Kvaerno5     - / 0.78 (23)    - / 1.06 (140)   - / 1.48 (140)
FAST_SEEDS = tuple(range(4))  # with each method's hardest seeds; the full 200 run with -m exhaustive
HARD_SEEDS: dict[str, tuple[int, ...]] = {
    "Tsit5": (168, 38), "DP5": (198, 158, 108), "BS3": (24, 188, 61), "Vern7": (115, 43, 73),
    "Rosenbrock23": (140, 158, 81), "Rodas4": (140, 158, 81), "Rodas5": (23, 140, 158), "Rodas5P": (23, 160, 105, 140),
    "KenCarp3": (140, 158, 81), "KenCarp4": (23, 140, 158), "KenCarp5": (140, 23, 158), "Kvaerno3": (140, 158, 81),
    "Kvaerno5": (23, 140, 81),
}
# Cells too slow for the default run, covered by the exhaustive one only: Kvaerno3 (order 3, ~1,000 steps per
# system at 1e-6 and ~5,000 at 1e-8, 1-4 s per solve; interpolated values measured over seeds 0-5, 77, 140,
# 160: worst 0.61 / 0.63 / 0.63 of the tolerance).
SLOW_CELLS = {("Kvaerno3", 1e-6), ("Kvaerno3", 1e-8)}
# 20-25 s each on a loaded 2-core machine: out of the default run, in CI's heavy step
HEAVY_CELLS = {("KenCarp3", 1e-8)}


def fast_seeds(alg: ps.Algorithm) -> tuple[int, ...]:
    return FAST_SEEDS + HARD_SEEDS[alg.name]


def cases(known=KNOWN_FAILURES):
    for alg in ADAPTIVE:
        for rtol in RTOLS:
            reason = known.get((alg.name, rtol))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            if (alg.name, rtol) in SLOW_CELLS:
                marks.append(pytest.mark.exhaustive)
            if (alg.name, rtol) in HEAVY_CELLS:
                marks.append(pytest.mark.heavy)
            yield pytest.param(alg, rtol, id=f"{alg.name}-rtol{rtol:g}", marks=marks)


@pytest.mark.parametrize(("alg", "rtol"), list(cases()))
def test_success_means_accurate(alg, rtol):
    check(alg, rtol, fast_seeds(alg))


@pytest.mark.exhaustive
@pytest.mark.timeout(3600)
@pytest.mark.parametrize(("alg", "rtol"), list(cases()))
def test_success_means_accurate_full(alg, rtol):
    check(alg, rtol, range(N_FULL))


# Between steps: the same property for values interpolated by the dense output (saveat without tstops), on
# seeds 0-5 and the systems whose interpolated values were worst in a scan of seeds 0-199 (KenCarp5) and 140.
INTERP_SEEDS = (0, 1, 2, 3, 4, 5, 77, 140, 160)
# KenCarp5's third-order dense output (Kennedy-Carpenter's p* = 3) was far less accurate than its fifth-order
# steps on stiff transients: saveat values between steps up to 311x rtol at 1e-6 (6 of 200 systems over 100x)
# and 1350x at 1e-8 (69 of 200) while the step values stayed under 29x. solve now lands the steps of methods
# whose interpolant is two orders below the method (KenCarp5, Kvaerno5) on the save times.
KNOWN_INTERP_FAILURES = KNOWN_FAILURES


@pytest.mark.parametrize(("alg", "rtol"), list(cases(KNOWN_INTERP_FAILURES)))
def test_success_means_accurate_between_steps(alg, rtol):
    check(alg, rtol, INTERP_SEEDS, land=False)


def test_every_adaptive_method_is_covered():
    names = {a.name for a in ADAPTIVE}
    assert names == {"Tsit5", "DP5", "BS3", "Vern7", "Rosenbrock23", "Rodas4", "Rodas5", "Rodas5P", "KenCarp3",
                     "KenCarp4", "KenCarp5", "Kvaerno3", "Kvaerno5"}
    assert not ps.ROS3P().is_adaptive  # fixed-step only: its estimate vanishes on exactly these systems
    assert set(HARD_SEEDS) == names
    assert {name for name, cls in ALGORITHMS.items() if cls().is_adaptive} == names | LOW_ORDER


def test_exemptions_are_documented():
    """The (method, rtol) cells exempt through min_rtol are exactly the documented ones."""
    assert {(a.name, r) for a in ADAPTIVE for r in RTOLS if exempt(a, r)} == EXEMPT


def test_exact_solution_matches_expm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    for seed in (0, 1, 2):
        lam, q, u0 = random_system(seed, STIFF)
        a = (q * -lam) @ q.T
        for t in (1e-3, 1.0):
            ref = scipy_linalg.expm(a * t) @ u0
            x = exact(lam, q, u0, t)
            assert np.abs(ref - x).max() <= 1e-9 * np.abs(x).max(), (seed, t)


def test_systems_span_the_ranges():
    """The draws cover what the docstring says: n from 2 to 10 and lambda over the whole stiff range."""
    ns, lams = [], []
    for seed in range(N_FULL):
        lam, q, _ = random_system(seed, STIFF)
        ns.append(len(lam))
        lams.extend(lam)
        assert np.abs(q.T @ q - np.eye(len(lam))).max() < 1e-12
    assert min(ns) == 2 and max(ns) == 10
    assert min(lams) < 2e-2 and max(lams) > 5e5
