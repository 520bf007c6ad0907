"""Task: sparse stiff solves. The 2-D Brusselator (``pysciml.problems.brusselator_2d``, SciML's tutorial
problem) on N x N periodic grids, N = 32, 64, 128 (2,048 / 8,192 / 32,768 states), from t = 0 to ``T1`` = 1.5
(past the forcing's switch-on at t = 1.1, where every solver stops: pysciml by ``tstops``, SciPy by two calls).

Solvers, each at ``rtol`` in ``PLAN[N]`` with ``atol = 1e-2 rtol``:
- pysciml Rodas5P and KenCarp4 with ``SparseLU()`` (SuperLU, analytic sparse Jacobian), and Rodas5P with
  ``SparseLU()`` on the colouring Jacobian (no ``jac``: one JVP per colour on ``jac_prototype``);
- SciPy ``solve_ivp`` BDF and Radau with the analytic Jacobian as a ``scipy.sparse`` matrix (they factor it
  with SuperLU too).
diffrax Kvaerno5 is not run: it forms and factors the dense Jacobian (32,768^2 float64 = 8.6 GB at N = 128).
Error: ``max_i |u_i(T1) - ref_i| / max(|ref_i|, 1e-3)`` against pysciml Rodas5P SparseLU at the plan's reference
rtol (cross-checked at the smallest N against SciPy Radau at the same rtol). Time at matched error: each
solver's (error, time) points interpolated log-log to ``TARGET_ERR``; the slope of log time vs log states over
N is fitted per solver on the times at ``rtol = 1e-4`` (the one tolerance every N runs).
One timed run per point, after one untimed warm-up solve at the smallest N; torch on one thread. The plan fits a
shared 2-core machine: at N = 128 (a SuperLU factorization takes seconds there) SciPy Radau is left out (its
complex factorizations cost it 4.2x Rodas5P's time at N = 64, rtol 1e-6, in the 2026-12-01 run).
Sizes: ``full`` (N = 32, 64, 128); ``smoke`` (N = 16, one tolerance, to t = 1.2).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import pysciml as ps
from pysciml.problems.pde2d import brusselator_2d, grid_of

from .common import environment, markdown_table, result_name, start_task, write_result

T1 = 1.5
T_SWITCH = 1.1  # the forcing switches on here
ATOL_PER_RTOL = 1e-2
TARGET_ERR = 1e-5
ALL = ("pysciml Rodas5P SparseLU", "pysciml KenCarp4 SparseLU", "pysciml Rodas5P SparseLU (colouring J)",
       "SciPy BDF (sparse J)", "SciPy Radau (sparse J)")
#: N -> (rtols, solvers, reference rtol)
PLAN: dict[int, tuple[tuple[float, ...], tuple[str, ...], float]] = {
    16: ((1e-6,), ALL, 1e-9),
    32: ((1e-4, 1e-6), ALL, 1e-8),
    64: ((1e-4, 1e-6), ALL, 1e-8),
    128: ((1e-4, 1e-6), ALL[:4], 1e-7),
}
SLOPE_RTOL = 1e-4


@dataclass
class Point:
    solver: str
    N: int
    rtol: float
    time: float
    err: float
    nf: int | None
    naccept: int | None
    njac: int | None
    nlu: int | None
    ok: bool


def numpy_brusselator(N: int) -> tuple[Callable, Callable]:
    """``f(t, y)`` and ``jac(t, y)`` (``scipy.sparse`` CSC) of :func:`brusselator_2d` in numpy, same layout."""
    import scipy.sparse as sp

    grid = grid_of(N)
    A, B = 3.4, 1.0
    xs = np.linspace(0.0, 1.0, N)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    spot = 5.0 * (((x - 0.3) ** 2 + (y - 0.6) ** 2) <= 0.1**2)
    d = grid.Du

    def lap(w: np.ndarray) -> np.ndarray:
        return (np.roll(w, 1, 0) + np.roll(w, -1, 0) + np.roll(w, 1, 1) + np.roll(w, -1, 1) - 4.0 * w)

    def f(t: float, yv: np.ndarray) -> np.ndarray:
        u, v = yv[: N * N].reshape(N, N), yv[N * N:].reshape(N, N)
        u2v = u * u * v
        du = d * lap(u) + B + u2v - (A + 1.0) * u + (spot if t >= T_SWITCH else 0.0)
        dv = d * lap(v) + A * u - u2v
        return np.concatenate((du.reshape(-1), dv.reshape(-1)))

    def jac(t: float, yv: np.ndarray) -> object:
        u, v = yv[: N * N], yv[N * N:]
        vals = grid.base.copy()
        for p, blk in zip(grid.pos, (2 * u * v - (A + 1.0), u * u, A - 2 * u * v, -u * u), strict=True):
            vals[p] += blk
        return sp.csr_array((vals, grid.cols, grid.crow), shape=(grid.n, grid.n)).tocsc()

    return f, jac


def run_pysciml(N: int, alg: ps.algorithms.Algorithm, rtol: float, t1: float, analytic: bool = True
                ) -> tuple[np.ndarray, ps.ODESolution, float]:
    prob = brusselator_2d(N=N, tspan=(0.0, t1))
    if not analytic:
        prob = prob.remake(jac=None)
    t0 = time.perf_counter()
    sol = ps.solve(prob, alg, rtol=rtol, atol=ATOL_PER_RTOL * rtol, saveat=[t1], tstops=[T_SWITCH])
    return sol.u[-1].numpy(), sol, time.perf_counter() - t0


def run_scipy(N: int, method: str, rtol: float, t1: float) -> tuple[np.ndarray, dict, float]:
    from scipy.integrate import solve_ivp

    f, jac = numpy_brusselator(N)
    y0 = brusselator_2d(N=N).u0.numpy()
    t0 = time.perf_counter()
    stats = {"nf": 0, "naccept": 0, "njac": 0, "nlu": 0, "ok": True}
    for a, b in ((0.0, T_SWITCH), (T_SWITCH, t1)):
        sol = solve_ivp(f, (a, b), y0, method=method, rtol=rtol, atol=ATOL_PER_RTOL * rtol, jac=jac)
        y0 = sol.y[:, -1]
        stats["nf"] += sol.nfev
        stats["naccept"] += len(sol.t) - 1
        stats["njac"] += sol.njev
        stats["nlu"] += sol.nlu
        stats["ok"] = stats["ok"] and bool(sol.success)
    return y0.copy(), stats, time.perf_counter() - t0


def rel_err(u: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(u - ref) / np.maximum(np.abs(ref), 1e-3)))


SOLVERS: dict[str, Callable[[int, float, float], tuple[np.ndarray, dict, float]]] = {}


def _pysciml_entry(alg: ps.algorithms.Algorithm, analytic: bool) -> Callable:
    def run(N: int, rtol: float, t1: float) -> tuple[np.ndarray, dict, float]:
        u, sol, dt = run_pysciml(N, alg, rtol, t1, analytic)
        s = sol.stats
        return u, {"nf": s.nf, "naccept": s.naccept, "njac": s.njac, "nlu": s.nlu,
                   "ok": sol.retcode == ps.ReturnCode.Success}, dt
    return run


SOLVERS["pysciml Rodas5P SparseLU"] = _pysciml_entry(ps.Rodas5P(linsolve=ps.SparseLU()), True)
SOLVERS["pysciml KenCarp4 SparseLU"] = _pysciml_entry(ps.KenCarp4(linsolve=ps.SparseLU()), True)
SOLVERS["pysciml Rodas5P SparseLU (colouring J)"] = _pysciml_entry(ps.Rodas5P(linsolve=ps.SparseLU()), False)
SOLVERS["SciPy BDF (sparse J)"] = lambda N, rtol, t1: run_scipy(N, "BDF", rtol, t1)
SOLVERS["SciPy Radau (sparse J)"] = lambda N, rtol, t1: run_scipy(N, "Radau", rtol, t1)


def at_target(points: list[Point], target: float) -> tuple[float, str]:
    """Time at error ``target`` by log-log interpolation between the bracketing points (``"~"``: extrapolated
    from the two nearest; NaN with fewer than two points)."""
    pts = sorted((p for p in points if p.ok and p.err > 0), key=lambda p: p.err)
    if len(pts) < 2:  # one point says nothing about the time at another error
        return math.nan, ""
    for lo, hi in zip(pts, pts[1:], strict=False):
        if lo.err <= target <= hi.err:
            return _interp(lo, hi, target), ""
    near = pts[:2] if target < pts[0].err else pts[-2:]
    return _interp(near[0], near[1], target), "~"


def _interp(a: Point, b: Point, target: float) -> float:
    if a.err == b.err:
        return a.time
    w = (math.log(target) - math.log(a.err)) / (math.log(b.err) - math.log(a.err))
    return math.exp(math.log(a.time) + w * (math.log(b.time) - math.log(a.time)))


def main(size: str = "full", device: str = "cpu") -> str:
    skip = start_task("stiff_sparse", device)
    if skip is not None:
        return skip
    if device != "cpu":
        return "# stiff_sparse: skipped\n\nSparseLU runs on the CPU only (SciPy SuperLU).\n"
    smoke = size == "smoke"
    sizes = (16,) if smoke else (32, 64, 128)
    t1 = 1.2 if smoke else T1
    lines = ["# Sparse stiff solves: 2-D Brusselator", "", environment(), "",
             "Shared, loaded 2-core machine: times are indicative (one run per point).", ""]
    SOLVERS["SciPy BDF (sparse J)"](sizes[0], 1e-4, t1)  # warm-up (imports, first calls)
    SOLVERS["pysciml Rodas5P SparseLU"](sizes[0], 1e-4, t1)
    points: list[Point] = []
    refs = []
    for N in sizes:
        rtols, names, ref_rtol = PLAN[N]
        t0 = time.perf_counter()
        ref, _, _ = run_pysciml(N, ps.Rodas5P(linsolve=ps.SparseLU()), ref_rtol, t1)
        note = f"N = {N}: Rodas5P SparseLU rtol {ref_rtol:g} ({time.perf_counter() - t0:.0f} s)"
        if N == sizes[0]:
            radau, _, _ = run_scipy(N, "Radau", ref_rtol, t1)
            note += f", SciPy Radau rtol {ref_rtol:g} differs by {rel_err(radau, ref):.2g}"
        refs.append(note)
        print(note, flush=True)
        for name in names:
            for rtol in rtols:
                u, st, dt = SOLVERS[name](N, rtol, t1)
                points.append(Point(name, N, rtol, dt, rel_err(u, ref), st["nf"], st["naccept"], st["njac"],
                                    st["nlu"], st["ok"]))
                print(points[-1], flush=True)
    rows = [[p.solver, p.N, 2 * p.N * p.N, p.rtol, p.err, p.time, p.nf, p.naccept, p.njac, p.nlu,
             "" if p.ok else "failed"] for p in points]
    lines += ["References: " + "; ".join(refs) + ".", "",
              markdown_table(["solver", "N", "states", "rtol", "max rel err", "time (s)", "f calls", "steps",
                              "Jacobians", "LUs", ""], rows), ""]
    summary = []
    for name in SOLVERS:
        matched = [at_target([p for p in points if p.solver == name and p.N == N], TARGET_ERR) for N in sizes]
        fixed = [(2 * p.N * p.N, p.time) for p in points if p.solver == name and p.rtol == SLOPE_RTOL and p.ok]
        slope = (np.polyfit(np.log([n for n, _ in fixed]), np.log([t for _, t in fixed]), 1)[0]
                 if len(fixed) > 1 else math.nan)
        summary.append([name] + [f"{mark}{t:.3g}" for t, mark in matched] + [slope])
    lines += [f"Time (s) at max rel err {TARGET_ERR:g} (log-log interpolation of each solver's points at one N; ~ = "
              f"extrapolated from its nearest two; nan: one point only), and the slope of log time vs log states "
              f"at rtol {SLOPE_RTOL:g}:", "",
              markdown_table(["solver"] + [f"N = {N}" for N in sizes] + ["slope"], summary), ""]
    text = "\n".join(lines)
    write_result(result_name("stiff_sparse", size, device), text)
    return text
