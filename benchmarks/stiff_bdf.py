"""Multistep stiff solvers: pysciml FBDF (fixed-leading-coefficient form), QNDF and QBDF (the quasi-constant
step-size form of QNDF and of FBDF before it took the FLC form) against SciPy's BDF (analytic Jacobian) and pysciml
Rodas5P on ROBER (t1 = 1e5), HIRES, Van der Pol (mu = 1e3) and the Oregonator, at rtol 1e-6, 1e-7, 1e-8 (atol =
1e-4 rtol).

Each (problem, solver, rtol): one warm-up solve, then one timed solve (wall time, torch on one thread), its error
``max_i |u_i(t1) - ref_i| / |ref_i|`` against ``stiff_problems.reference`` and its counters (f calls, accepted
steps, Jacobians, LU factorizations; SciPy's ``nfev``/``njev``/``nlu``). Summary: for each FBDF/QNDF/QBDF run, SciPy
BDF's time and f calls at the same error (log-log interpolation on SciPy's three points; ``-`` outside them).
Sizes: ``full`` and ``small`` (the same: four problems, three tolerances); ``smoke`` (ROBER to t1 = 40, rtol 1e-6);
``tight`` (issue 19's error-vs-rtol curve, ``stiff_bdf_tight.md``): the four problems at rtol 1e-6 ... 1e-10, FBDF,
FBDF without the Newton rate floor (``pysciml.engine.bdf.FIRST_RATE_FLOOR = 0``: FBDF before the floor), QNDF and
SciPy BDF, one warm-up per solver at rtol 1e-6, CPU times (``time.process_time``) next to wall times.
``full`` adds the 2-D Brusselator of ``benchmarks/stiff_sparse.py`` (N = 32, 64, 128, its runners imported):
FBDF, QNDF, QBDF and Rodas5P with ``SparseLU()`` against SciPy BDF with the sparse Jacobian, rtol 1e-4 and 1e-6.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

import pysciml as ps
from pysciml.algorithms_bdf import QBDF

from .common import environment, markdown_table, one_thread, write_result
from .peers import Outcome, pysciml_solver, scipy_solver
from .stiff_problems import StiffCase, make_cases, max_rel_err, reference
from .stiff_sparse import revision

ATOL_PER_RTOL = 1e-4
RTOLS = (1e-6, 1e-7, 1e-8)
TIGHT_RTOLS = (1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
NO_FLOOR = "pysciml FBDF, no rate floor"
SCIPY = "SciPy BDF"


def _cases(size: str) -> tuple[list[StiffCase], tuple[float, ...]]:
    cases = [c for c in make_cases("small") if c.key in ("rober", "hires", "vdp", "oregonator")]
    if size != "smoke":
        return cases, TIGHT_RTOLS if size == "tight" else RTOLS
    rober = cases[0]
    short = StiffCase("rober40", "ROBER, t1=40", 40.0, lambda: ps.problems.rober((0.0, 40.0)), None, rober.rhs,
                      None, rober.jac, rober.u0, rober.p, "rober")  # no reference at t = 40: SciPy Radau
    return [short], (1e-6,)


def _solvers(case: StiffCase, size: str = "full") -> list[tuple[str, Callable[[float, float], Outcome]]]:
    if size == "tight":
        return [("pysciml FBDF", pysciml_solver(case, ps.FBDF())), (NO_FLOOR, _no_floor(case)),
                ("pysciml QNDF", pysciml_solver(case, ps.QNDF())), (SCIPY, scipy_solver(case, "BDF"))]
    return [("pysciml FBDF", pysciml_solver(case, ps.FBDF())), ("pysciml QNDF", pysciml_solver(case, ps.QNDF())),
            ("pysciml QBDF", pysciml_solver(case, QBDF())),
            ("pysciml Rodas5P", pysciml_solver(case, ps.Rodas5P())), (SCIPY, scipy_solver(case, "BDF"))]


def _no_floor(case: StiffCase) -> Callable[[float, float], Outcome]:
    """FBDF with ``FIRST_RATE_FLOOR = 0`` during the solve (the Newton stop before the floor)."""
    from pysciml.engine import bdf

    run = pysciml_solver(case, ps.FBDF())

    def solve(rtol: float, atol: float) -> Outcome:
        floor, bdf.FIRST_RATE_FLOOR = bdf.FIRST_RATE_FLOOR, 0.0
        try:
            return run(rtol, atol)
        finally:
            bdf.FIRST_RATE_FLOOR = floor

    return solve


def _run(fn: Callable[[float, float], Outcome], rtol: float, warm: bool = True) -> tuple[float, Outcome, float]:
    """``(wall seconds, outcome, CPU seconds)`` of one timed solve (after an untimed one if ``warm``)."""
    atol = ATOL_PER_RTOL * rtol
    if warm:
        fn(rtol, atol)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(rtol, atol)
    return time.perf_counter() - t0, out, time.process_time() - c0


def _at_error(points: list[tuple[float, float]], err: float) -> float | None:
    """The value at ``err`` on a curve of ``(error, value)`` points, log-log interpolated; ``None`` outside."""
    pts = sorted(p for p in points if np.isfinite(p[0]) and p[0] > 0)
    if len(pts) < 2 or not pts[0][0] <= err <= pts[-1][0]:
        return None
    e, v = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.exp(np.interp(np.log(err), e, v)))


def _sparse_section(N: int = 32, rtols: tuple[float, ...] = (1e-4, 1e-6), ref_rtol: float = 1e-7) -> str:
    """FBDF on the sparse 2-D Brusselator through ``benchmarks.stiff_sparse``'s runners (one timed run each after
    its warm-up at the loosest tolerance); error against Rodas5P ``SparseLU()`` at ``ref_rtol``."""
    try:
        from . import stiff_sparse as sp
    except ImportError as exc:  # the sparse task is another module; without it this section is skipped
        return f"\n## 2-D Brusselator (sparse)\n\nSkipped: benchmarks.stiff_sparse not importable ({exc}).\n"
    ref, _, _ = sp.run_pysciml(N, ps.Rodas5P(linsolve=ps.SparseLU()), ref_rtol, sp.T1)
    runners = {
        "pysciml QNDF SparseLU": lambda r: _sparse_stats(sp.run_pysciml(N, ps.QNDF(linsolve=ps.SparseLU()), r, sp.T1)),
        "pysciml FBDF SparseLU": lambda r: _sparse_stats(sp.run_pysciml(N, ps.FBDF(linsolve=ps.SparseLU()), r, sp.T1)),
        "pysciml QBDF SparseLU": lambda r: _sparse_stats(sp.run_pysciml(N, QBDF(linsolve=ps.SparseLU()), r, sp.T1)),
        "pysciml Rodas5P SparseLU": lambda r: _sparse_stats(sp.run_pysciml(N, ps.Rodas5P(linsolve=ps.SparseLU()), r,
                                                                          sp.T1)),
        "SciPy BDF (sparse J)": lambda r: sp.run_scipy(N, "BDF", r, sp.T1),
    }
    rows = []
    for label, run in runners.items():
        run(rtols[0])  # warm-up
        for rtol in rtols:
            u, st, secs = run(rtol)
            rows.append([label, rtol, sp.rel_err(u, ref) if st["ok"] else float("nan"), secs, st["nf"], st["naccept"],
                         st["njac"], st["nlu"]])
        print(f"  stiff_bdf bruss2d: {label} done", file=sys.stderr, flush=True)
    return (f"\n## 2-D Brusselator N = {N} ({2 * N * N} states), sparse Jacobian, t1 = {sp.T1}\n\n"
            f"Runners of `benchmarks/stiff_sparse.py` (atol = {sp.ATOL_PER_RTOL:g} rtol, tstops at the forcing's "
            "switch-on); error max_i |u_i - ref_i| / max(|ref_i|, 1e-3) against pysciml Rodas5P SparseLU at rtol "
            f"{ref_rtol:g}.\n\n"
            + markdown_table(["solver", "rtol", "error", "time [s]", "f calls", "accepted", "Jacobians", "LUs"], rows)
            + "\n")


def _sparse_stats(out: tuple) -> tuple[np.ndarray, dict, float]:
    u, sol, secs = out
    s = sol.stats
    return u, {"nf": s.nf, "naccept": s.naccept, "njac": s.njac, "nlu": s.nlu,
               "ok": sol.retcode == ps.ReturnCode.Success}, secs


def main(size: str = "full", device: str = "cpu") -> str:
    """Run the comparison; write ``benchmarks/results/stiff_bdf[_smoke].md``; return the markdown."""
    if device != "cpu":
        return "stiff_bdf is single-trajectory CPU work; it is not run with --device cuda.\n"
    one_thread()
    cases, rtols = _cases(size)
    rows, summary = [], []
    for case in cases:
        ref, _ = reference(case)
        runs: dict[str, list[tuple[float, float, Outcome, float]]] = {}  # label -> (rtol, error, outcome, seconds)
        for label, fn in _solvers(case, size):
            for rtol in rtols:
                secs, out, cpu = _run(fn, rtol, warm=size != "tight" or rtol == rtols[0])
                err = max_rel_err(out.u, ref) if out.ok else float("nan")
                runs.setdefault(label, []).append((rtol, err, out, cpu if size == "tight" else secs))
                rows.append([case.title, label, rtol, err, f"{err / rtol:.3g}", secs * 1e3, cpu * 1e3, out.nf,
                             out.naccept, out.nreject if out.nreject is not None else "-", out.njac, out.nlu])
            print(f"  stiff_bdf {case.key}: {label} done", file=sys.stderr, flush=True)
        sp_time = [(err, secs) for _, err, _, secs in runs[SCIPY]]
        sp_nf = [(err, float(o.nf or 0)) for _, err, o, _ in runs[SCIPY]]
        for label in ("pysciml FBDF", NO_FLOOR, "pysciml QNDF", "pysciml QBDF"):
            for rtol, err, out, secs in runs.get(label, []):
                t_sp, nf_sp = _at_error(sp_time, err), _at_error(sp_nf, err)
                summary.append([case.title, label.removeprefix("pysciml "), rtol, err, secs * 1e3,
                                "-" if t_sp is None else f"{t_sp * 1e3:.3g}",
                                "-" if t_sp is None else f"{secs / t_sp:.2f}", out.nf,
                                "-" if nf_sp is None else f"{nf_sp:.0f}"])
    sparse = "".join(_sparse_section(N) for N in (32, 64, 128)) if size == "full" else ""
    timing = ("one timed run per point, after one warm-up per solver at the loosest rtol; the matched-error "
              "table uses CPU time" if size == "tight" else "one timed run after one warm-up per point; the "
              "matched-error table uses wall time")
    text = (
        f"# Multistep stiff solvers: FBDF, QNDF, QBDF vs SciPy BDF and Rodas5P ({size})\n\n"
        f"Machine: {environment()}; {revision()}. Torch limited to 1 thread; {timing} (shared machine: times vary "
        "run to run; CPU time is the process's time.process_time()).\n\n"
        f"rtol {', '.join(f'{r:g}' for r in rtols)}; atol = {ATOL_PER_RTOL:g} * rtol; analytic Jacobians. Error: "
        "max_i |u_i(t1) - ref_i| / |ref_i|.\n\n"
        + markdown_table(["problem", "solver", "rtol", "error", "error / rtol", "wall [ms]", "CPU [ms]", "f calls",
                          "accepted", "rejected", "Jacobians", "LUs"], rows)
        + "\n\n## At matched error: SciPy BDF interpolated to FBDF's / QNDF's error\n\n"
        + markdown_table(["problem", "method", "rtol", "error", "time [ms]", "SciPy BDF time [ms]", "ratio",
                          "f calls", "SciPy BDF f calls"], summary)
        + "\n" + sparse
    )
    write_result("stiff_bdf" + {"smoke": "_smoke", "tight": "_tight"}.get(size, ""), text)
    return text

