"""Recompute and check the reference solutions stored in ``pysciml/problems`` (offline; SciPy needed).

For every reference: a primary solve (SciPy ``solve_ivp(method="Radau", rtol=1e-13)`` with the package's own
``f`` and analytic ``jac``, float64) and independent checks (Radau at the tightest rtol SciPy accepts, 3e-14
(it clips anything below 100 eps ~ 2.2e-14), Radau at 1e-12, BDF / LSODA at rtol 1e-13, DOP853 at rtol 1e-13
for the non-stiff or mildly stiff ones). It prints each result, the maximum componentwise relative difference
to the primary solve, and the difference to the value stored in the package. For the two published values
(HIRES, ROBER at t = 1e11; Bari IVP test set, computed in ~19-digit arithmetic) every solve is a check.

Usage::

    python scripts/compute_references.py                 # everything (about 10 minutes)
    python scripts/compute_references.py --only hires    # one problem
    python scripts/compute_references.py --emit          # also print the values as Python float literals

Used on 2026-11-22 with SciPy 1.17.1, torch 2.13 (CPU), NumPy; the observed agreements are recorded next to
the literals in the problem modules.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.integrate import solve_ivp

from pysciml import ODEProblem
from pysciml import problems as P

Solver = tuple[str, float]  # (SciPy method, rtol)
TIGHT = [("Radau", 3e-14), ("Radau", 1e-12), ("BDF", 1e-13), ("LSODA", 1e-13)]


@dataclass
class Case:
    """One reference: how to build the problem, where to evaluate, and which solves to run."""

    name: str
    t1: float
    build: Callable[[], ODEProblem]
    atol_scale: float | list[float]  # atol = rtol * atol_scale (vector: per component)
    params: dict[str, float] = field(default_factory=dict)
    primary: Solver | None = ("Radau", 1e-13)  # None: the stored value is a published one
    checks: list[Solver] = field(default_factory=lambda: list(TIGHT))


CASES = [
    Case("rober", 1e5, lambda: P.rober((0.0, 1e5)), [1e-3, 1e-8, 1e-3]),
    Case("rober", 1e11, lambda: P.rober((0.0, 1e11)), [1e-2, 1e-8, 1e-2], primary=None,
         checks=[("Radau", 1e-13), ("Radau", 1e-12), ("BDF", 1e-13), ("LSODA", 1e-13)]),
    Case("van_der_pol", 6.3, lambda: P.van_der_pol(1e3), [1e-3, 1e-6], {"mu": 1e3}),
    Case("van_der_pol", 6.3, lambda: P.van_der_pol(1e6), [1e-3, 1e-9], {"mu": 1e6}),
    Case("hires", 321.8122, P.hires, 1e-6, primary=None,
         checks=[("Radau", 1e-13), ("Radau", 3e-14), ("LSODA", 1e-13), ("DOP853", 1e-13)]),
    Case("oregonator", 360.0, P.oregonator, 1e-3,  # BDF fails at rtol 1e-13 (step below spacing)
         checks=[("Radau", 3e-14), ("Radau", 1e-12), ("LSODA", 1e-13), ("BDF", 1e-11)]),
    Case("lotka_volterra", 10.0, P.lotka_volterra, 1e-3, checks=[("Radau", 3e-14), ("DOP853", 1e-13),
                                                                 ("LSODA", 1e-13)]),
    Case("brusselator_1d", 10.0, lambda: P.brusselator_1d(N=32), 1e-3, {"N": 32},
         checks=[("Radau", 3e-14), ("Radau", 1e-12), ("DOP853", 1e-13), ("BDF", 1e-13)]),
    Case("brusselator_1d", 10.0, lambda: P.brusselator_1d(N=64), 1e-3, {"N": 64},
         checks=[("Radau", 3e-14), ("Radau", 1e-12), ("DOP853", 1e-13), ("BDF", 1e-13)]),
]


def numpy_rhs(prob: ODEProblem) -> tuple[Callable, Callable]:
    """NumPy wrappers of the problem's own torch ``f`` and ``jac`` (float64)."""

    def call(fn: Callable, takes_p: bool, t: float, y: np.ndarray) -> np.ndarray:
        tt, yy = torch.tensor(t, dtype=torch.float64), torch.from_numpy(np.ascontiguousarray(y))
        return (fn(tt, yy, prob.p) if takes_p else fn(tt, yy)).numpy()

    return (lambda t, y: call(prob.f, prob.f_takes_p, t, y)), (lambda t, y: call(prob.jac, prob.jac_takes_p, t, y))


def scipy_solve(prob: ODEProblem, t1: float, method: str, rtol: float, atol_scale) -> tuple[np.ndarray, int]:
    """``u(t1)`` by ``solve_ivp``; returns the value and the number of steps."""
    f, jac = numpy_rhs(prob)
    kw = {"jac": jac} if method in ("Radau", "BDF", "LSODA") else {}
    atol = rtol * np.asarray(atol_scale, dtype=np.float64)
    sol = solve_ivp(f, (prob.tspan[0], t1), prob.u0.numpy(), method=method, rtol=rtol, atol=atol, **kw)
    if not sol.success:
        raise RuntimeError(f"{method} rtol={rtol}: {sol.message}")
    return sol.y[:, -1], sol.t.size - 1


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


def run_case(case: Case, emit: bool) -> None:
    prob = case.build()
    try:
        stored: np.ndarray | None = P.reference(case.name, case.t1, **case.params).numpy()
    except KeyError:  # not stored yet (first run): print the computed values instead
        stored, emit = None, True
    label = f"{case.name} t={case.t1:g} {case.params}"
    print(f"\n== {label}", flush=True)
    base = stored
    if case.primary is None and stored is None:
        raise KeyError(f"{label}: the published value must be stored in the package first")
    if case.primary is not None:
        t = time.perf_counter()
        base, n = scipy_solve(prob, case.t1, *case.primary, case.atol_scale)
        vs = "not stored yet" if stored is None else f"{rel(stored, base):.1e}"
        print(f"  primary {case.primary}: {n} steps, {time.perf_counter() - t:.1f} s; stored vs recomputed: {vs}",
              flush=True)
    else:
        print("  stored value is published (Bari IVP test set); all solves below are checks", flush=True)
    for method, rtol in case.checks:
        t = time.perf_counter()
        y, n = scipy_solve(prob, case.t1, method, rtol, case.atol_scale)
        per = np.abs(y - base) / np.abs(base)
        print(f"  check {method:6s} rtol={rtol:.0e}: {n:6d} steps, {time.perf_counter() - t:5.1f} s; "
              f"max rel diff {per.max():.1e} (componentwise {np.array2string(per, precision=1)})", flush=True)
    if emit:
        print("  values = (" + ", ".join(repr(float(v)) for v in base) + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="problem names to run (default: all)")
    ap.add_argument("--emit", action="store_true", help="print the values as float literals")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for case in CASES:
        if args.only and case.name not in args.only:
            continue
        run_case(case, args.emit)


if __name__ == "__main__":
    main()
