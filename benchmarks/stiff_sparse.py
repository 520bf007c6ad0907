"""Task: sparse stiff solves on N x N periodic grids, N = 32, 64, 128 (2,048 / 8,192 / 32,768 states).

Problems (``PROBLEMS``):
- the 2-D Brusselator (``pysciml.problems.brusselator_2d``, SciML's tutorial problem) from t = 0 to 1.5, past the
  forcing's switch-on at t = 1.1, where every solver stops (pysciml by ``tstops``, SciPy by two calls);
- the 2-D Gray-Scott model (``pysciml.problems.gray_scott_2d``) with Pearson's (Science 261, 1993) ``Du = 2e-5``,
  ``Dv = 1e-5``, ``F = 0.04``, ``k = 0.06`` and his seeded square, on a periodic square of side ``L = 0.625``
  (a quarter of his 2.5, so the grids resolve the pattern and refining them makes diffusion stiff: its largest
  eigenvalue ``8 Du N^2 / L^2`` is 0.42 / 1.7 / 6.7 at N = 32 / 64 / 128, times FBDF's mean step at rtol 1e-4 1.8 at
  N = 32 and 11 at N = 64 in the 2026-12-01 run), from t = 0 to 1000, while spots split off the seed and spread
  (``v > 0.1`` on 37 % / 41 % of the grid at t = 1000, N = 32 / 64).

Solvers, each at ``rtol`` in the problem's plan with ``atol = 1e-2 rtol``, all with the analytic sparse Jacobian:
pysciml FBDF, QNDF, KenCarp4, Rodas5P and RadauIIA5 with ``SparseLU()`` (SciPy's SuperLU), Rodas5P ``SparseLU()``
on the colouring Jacobian (no ``jac``: one JVP per colour on ``jac_prototype``; Brusselator, N <= 64), and SciPy
``solve_ivp`` BDF and Radau with the Jacobian as a ``scipy.sparse`` matrix (SuperLU inside them too). RadauIIA5
rows are skipped, with a note, where the installed pysciml refuses ``RadauIIA5(linsolve=SparseLU())``. diffrax
Kvaerno5 is not run: it forms and factors the dense Jacobian (32,768^2 float64 = 8.6 GB at N = 128).
Error: ``max_i |u_i(t1) - ref_i| / max(|ref_i|, 1e-3)`` against pysciml Rodas5P SparseLU at the plan's reference
rtol (cross-checked at the smallest N against SciPy Radau at the same rtol); references are cached in
``REF_CACHE`` (keyed by problem, N, t1 and rtol; delete it to recompute). Time: the process's CPU time
(``time.process_time``; torch on one thread) and wall time, one timed run per point after one untimed
warm-up at N = 16. Time at matched error: each solver's (error, CPU time) points interpolated log-log to
the problem's ``target_err`` (Brusselator 1e-5; Gray-Scott 1e-3: its pattern amplifies errors to about 100x
rtol); the slope of log CPU time vs log states over N per solver, at ``SLOPE_RTOL`` and at matched error
(``N^2 log N`` growth is a slope of 1.11 over N = 32..128).
Sizes: ``full`` (N = 32, 64, 128); ``smoke`` (N = 16, one tolerance, short spans). Each grid's points are kept in
``REF_CACHE/points``; grids can run as separate processes, ``python -m benchmarks.stiff_sparse --problem gray_scott
--grids 128``, and ``--report`` (with the same ``--problem``) then writes the report from the kept points of
N = 32, 64, 128 (the report lists each grid's commit). ``--solvers NAME ...`` runs only those solvers on the given
grids and adds their points to the kept ones (``KRYLOV``: FBDF on Newton-GMRES with ILU, Jacobi or algebraic-multigrid
preconditioning, run only this way).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import pysciml as ps
from pysciml.problems.pde2d import ReactionDiffusion2D, brusselator_2d, gray_scott_2d

from .common import environment, markdown_table, result_name, start_task, write_result

ATOL_PER_RTOL = 1e-2
SLOPE_RTOL = 1e-4
REF_CACHE = Path.home() / ".cache" / "pysciml-benchmarks" / "stiff_sparse"
NLOGN_SLOPE = 1 + math.log(math.log(2 * 128**2) / math.log(2 * 32**2)) / math.log(16)  # N^2 log N, N = 32..128

FBDF, QNDF, KENCARP, RODAS, RADAU = ("pysciml FBDF SparseLU", "pysciml QNDF SparseLU", "pysciml KenCarp4 SparseLU",
                                     "pysciml Rodas5P SparseLU", "pysciml RadauIIA5 SparseLU")
COLOUR = "pysciml Rodas5P SparseLU (colouring J)"
SCIPY_BDF, SCIPY_RADAU = "SciPy BDF (sparse J)", "SciPy Radau (sparse J)"
PYSCIML_ALGS: dict[str, Callable[[], ps.algorithms.Algorithm]] = {
    FBDF: lambda: ps.FBDF(linsolve=ps.SparseLU()), QNDF: lambda: ps.QNDF(linsolve=ps.SparseLU()),
    KENCARP: lambda: ps.KenCarp4(linsolve=ps.SparseLU()), RODAS: lambda: ps.Rodas5P(linsolve=ps.SparseLU()),
    RADAU: lambda: ps.RadauIIA5(linsolve=ps.SparseLU()), COLOUR: lambda: ps.Rodas5P(linsolve=ps.SparseLU()),
}
FBDF_ILU, FBDF_JACOBI = "pysciml FBDF GMRES ILU", "pysciml FBDF GMRES Jacobi"
FBDF_AMG, FBDF_AMG_LOOSE = "pysciml FBDF GMRES AMG", "pysciml FBDF GMRES(rtol 1e-6) AMG"
#: FBDF on its Krylov path (Newton-GMRES, right-preconditioned by SciPy's spilu, the diagonal of W, or one V-cycle
#: of pyamg's Ruge-Stuben AMG; GMRES at its default rtol 1e-10, or 1e-6): run on request (``--solvers``), not in
#: the plans
KRYLOV = (FBDF_ILU, FBDF_JACOBI, FBDF_AMG, FBDF_AMG_LOOSE)
PYSCIML_ALGS[FBDF_ILU] = lambda: ps.FBDF(linsolve=ps.GMRES(precondition="ilu"))
PYSCIML_ALGS[FBDF_JACOBI] = lambda: ps.FBDF(linsolve=ps.GMRES(precondition="jacobi"))
PYSCIML_ALGS[FBDF_AMG] = lambda: ps.FBDF(linsolve=ps.GMRES(precondition="amg"))
PYSCIML_ALGS[FBDF_AMG_LOOSE] = lambda: ps.FBDF(linsolve=ps.GMRES(rtol=1e-6, precondition="amg"))
CORE = (FBDF, SCIPY_BDF, QNDF, RODAS, KENCARP, RADAU)  # the target pair first: points are kept as they come
ALL = CORE + (COLOUR, SCIPY_RADAU)

# Gray-Scott: Pearson's diffusion and (F, k); the side L chosen here (see the module docstring)
GS_DU, GS_DV, GS_F, GS_K, GS_L = 2e-5, 1e-5, 0.04, 0.06, 0.625
BRUSS_A, BRUSS_B, BRUSS_ALPHA, BRUSS_SWITCH = 3.4, 1.0, 10.0, 1.1
T1 = 1.5  # the Brusselator's span end (benchmarks.stiff_bdf imports it with run_pysciml / run_scipy)

Plan = dict[int, tuple[tuple[float, ...], tuple[str, ...], float]]  # N -> (rtols, solvers, reference rtol)


@dataclass(frozen=True)
class Problem2D:
    """One benchmark problem: its pysciml builder, its NumPy twin for SciPy, span, stops and plan."""

    key: str
    title: str
    t1: float
    smoke_t1: float
    tstops: tuple[float, ...]
    build: Callable[[int, float], ps.ODEProblem]  # (N, t1) -> problem with jac and jac_prototype
    numpy_system: Callable[[int], tuple[Callable, Callable]]  # N -> (f(t, y), jac(t, y) as CSC)
    plan: Plan
    target_err: float  # the error the times are compared at


@dataclass
class Point:
    solver: str
    N: int
    rtol: float
    cpu: float
    wall: float
    err: float
    nf: int | None
    naccept: int | None
    njac: int | None
    nlu: int | None
    ok: bool


# ------------------------------------------------------------------------------------------ NumPy twins


def numpy_reaction_diffusion(grid: ReactionDiffusion2D, reaction: Callable, rjac: Callable
                             ) -> tuple[Callable, Callable]:
    """``f(t, y)`` and ``jac(t, y)`` (``scipy.sparse`` CSC) of ``du = Du Lap u + R_u``, ``dv = Dv Lap v + R_v`` in
    NumPy, in :class:`ReactionDiffusion2D`'s layout. ``reaction(t, u, v) -> (R_u, R_v)`` and ``rjac(u, v) ->
    (dR_u/du, dR_u/dv, dR_v/du, dR_v/dv)`` on ``(N, N)`` grids."""
    import scipy.sparse as sp

    N, m = grid.N, grid.N * grid.N

    def lap(w: np.ndarray) -> np.ndarray:
        return np.roll(w, 1, 0) + np.roll(w, -1, 0) + np.roll(w, 1, 1) + np.roll(w, -1, 1) - 4.0 * w

    def f(t: float, y: np.ndarray) -> np.ndarray:
        u, v = y[:m].reshape(N, N), y[m:].reshape(N, N)
        ru, rv = reaction(t, u, v)
        return np.concatenate(((grid.Du * lap(u) + ru).reshape(-1), (grid.Dv * lap(v) + rv).reshape(-1)))

    def jac(t: float, y: np.ndarray) -> object:
        vals = grid.base.copy()
        for p, blk in zip(grid.pos, rjac(y[:m].reshape(N, N), y[m:].reshape(N, N)), strict=True):
            vals[p] += blk.reshape(-1)
        return sp.csr_array((vals, grid.cols, grid.crow), shape=(grid.n, grid.n)).tocsc()

    return f, jac


def numpy_brusselator(N: int) -> tuple[Callable, Callable]:
    """:func:`brusselator_2d` (default parameters) in NumPy: ``f(t, y)``, ``jac(t, y)``."""
    grid = ReactionDiffusion2D.build(N, BRUSS_ALPHA * (N - 1) ** 2, BRUSS_ALPHA * (N - 1) ** 2)
    xs = np.linspace(0.0, 1.0, N)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    spot = 5.0 * (((x - 0.3) ** 2 + (y - 0.6) ** 2) <= 0.1**2)
    A, B = BRUSS_A, BRUSS_B

    def reaction(t: float, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u2v = u * u * v
        return B + u2v - (A + 1.0) * u + (spot if t >= BRUSS_SWITCH else 0.0), A * u - u2v

    def rjac(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
        return 2 * u * v - (A + 1.0), u * u, A - 2 * u * v, -u * u

    return numpy_reaction_diffusion(grid, reaction, rjac)


def gs_grid(N: int) -> ReactionDiffusion2D:
    dx = GS_L / N
    return ReactionDiffusion2D.build(N, GS_DU / dx**2, GS_DV / dx**2)


def numpy_gray_scott(N: int) -> tuple[Callable, Callable]:
    """:func:`gray_scott_2d` with this task's parameters in NumPy: ``f(t, y)``, ``jac(t, y)``."""
    F, k = GS_F, GS_K

    def reaction(t: float, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uv2 = u * v * v
        return F * (1.0 - u) - uv2, uv2 - (F + k) * v

    def rjac(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
        return -v * v - F, -2.0 * u * v, v * v, 2.0 * u * v - (F + k)

    return numpy_reaction_diffusion(gs_grid(N), reaction, rjac)


PROBLEMS: dict[str, Problem2D] = {
    "brusselator": Problem2D(
        "brusselator", "2-D Brusselator", T1, 1.2, (BRUSS_SWITCH,),
        lambda N, t1: brusselator_2d(N=N, tspan=(0.0, t1)), numpy_brusselator,
        {16: ((1e-6,), ALL, 1e-9), 32: ((1e-4, 1e-6), ALL, 1e-8), 64: ((1e-4, 1e-6), ALL, 1e-8),
         128: ((1e-4, 1e-6), CORE, 1e-7)}, 1e-5),
    "gray_scott": Problem2D(
        "gray_scott", "2-D Gray-Scott", 1000.0, 100.0, (),
        lambda N, t1: gray_scott_2d(N=N, tspan=(0.0, t1), Du=GS_DU, Dv=GS_DV, F=GS_F, k=GS_K, L=GS_L),
        numpy_gray_scott,
        {16: ((1e-6,), CORE + (SCIPY_RADAU,), 1e-9), 32: ((1e-4, 1e-6), CORE + (SCIPY_RADAU,), 1e-8),
         64: ((1e-4, 1e-6), CORE + (SCIPY_RADAU,), 1e-8), 128: ((1e-4, 1e-6), CORE, 1e-7)}, 1e-3),
}


# ---------------------------------------------------------------------------------------------- runners


def run_pysciml(N: int, alg: ps.algorithms.Algorithm, rtol: float, t1: float, analytic: bool = True,
                problem: str = "brusselator") -> tuple[np.ndarray, ps.ODESolution, float]:
    """``(u(t1), solution, wall seconds)`` of one pysciml solve (``analytic=False``: without ``jac``)."""
    spec = PROBLEMS[problem]
    prob = spec.build(N, t1)
    if not analytic:
        prob = prob.remake(jac=None)
    stops = [s for s in spec.tstops if s < t1]
    t0 = time.perf_counter()
    sol = ps.solve(prob, alg, rtol=rtol, atol=ATOL_PER_RTOL * rtol, saveat=[t1], **({"tstops": stops} if stops
                                                                                     else {}))
    return sol.u[-1].numpy(), sol, time.perf_counter() - t0


def run_scipy(N: int, method: str, rtol: float, t1: float, problem: str = "brusselator"
              ) -> tuple[np.ndarray, dict, float]:
    """``(u(t1), counters, wall seconds)`` of ``solve_ivp`` with the sparse Jacobian, one call per segment
    between the problem's stops."""
    from scipy.integrate import solve_ivp

    spec = PROBLEMS[problem]
    f, jac = spec.numpy_system(N)
    y0 = spec.build(N, t1).u0.numpy()
    edges = [0.0] + [s for s in spec.tstops if s < t1] + [t1]
    t0 = time.perf_counter()
    stats = {"nf": 0, "naccept": 0, "njac": 0, "nlu": 0, "ok": True}
    for a, b in zip(edges, edges[1:], strict=False):
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


def run_solver(name: str, problem: str, N: int, rtol: float, t1: float) -> tuple[np.ndarray, dict, float, float]:
    """``(u(t1), counters, CPU seconds, wall seconds)`` of solver ``name`` (a key of :data:`ALL`)."""
    c0 = time.process_time()
    if name in PYSCIML_ALGS:
        u, sol, wall = run_pysciml(N, PYSCIML_ALGS[name](), rtol, t1, name != COLOUR, problem)
        s = sol.stats
        st = {"nf": s.nf, "naccept": s.naccept, "njac": s.njac, "nlu": s.nlu,
              "ok": sol.retcode == ps.ReturnCode.Success}
    else:
        u, st, wall = run_scipy(N, "BDF" if name == SCIPY_BDF else "Radau", rtol, t1, problem)
    return u, st, time.process_time() - c0, wall


def radau_sparse_note() -> str | None:
    """``None`` if this pysciml accepts ``RadauIIA5(linsolve=SparseLU())``, else its refusal."""
    try:
        run_pysciml(8, PYSCIML_ALGS[RADAU](), 1e-3, 0.01, problem="gray_scott")
    except ps.errors.InputError as exc:
        return str(exc).splitlines()[0]
    return None


def reference(problem: str, N: int, rtol: float, t1: float) -> tuple[np.ndarray, str]:
    """Rodas5P ``SparseLU()`` at ``rtol``: ``(u(t1), how obtained)``, from :data:`REF_CACHE` when there."""
    path = REF_CACHE / f"{problem}_N{N}_t{t1:g}_rtol{rtol:g}.npy"
    if path.exists():
        return np.load(path), f"Rodas5P SparseLU rtol {rtol:g} (cached)"
    c0 = time.process_time()
    ref, _, _ = run_pysciml(N, ps.Rodas5P(linsolve=ps.SparseLU()), rtol, t1, problem=problem)
    REF_CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, ref)
    return ref, f"Rodas5P SparseLU rtol {rtol:g} ({time.process_time() - c0:.0f} s CPU)"


# ------------------------------------------------------------------------------------------------ summary


def at_target(points: list[Point], target: float) -> tuple[float, str]:
    """CPU time at error ``target`` by log-log interpolation between the bracketing points (``"~"``: extrapolated
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
        return a.cpu
    w = (math.log(target) - math.log(a.err)) / (math.log(b.err) - math.log(a.err))
    return math.exp(math.log(a.cpu) + w * (math.log(b.cpu) - math.log(a.cpu)))


def _slope(pairs: list[tuple[float, float]]) -> float:
    """Least-squares slope of log time vs log states (NaN below two points)."""
    pairs = [(n, t) for n, t in pairs if math.isfinite(t) and t > 0]
    if len(pairs) < 2:
        return math.nan
    return float(np.polyfit(np.log([n for n, _ in pairs]), np.log([t for _, t in pairs]), 1)[0])


def summary(points: list[Point], sizes: tuple[int, ...], target: float
            ) -> tuple[list[list], dict[str, tuple[float, float]]]:
    """Rows ``[solver, CPU at error target per N..., slope at SLOPE_RTOL, slope at matched error]`` and the slopes
    by solver."""
    rows, slopes = [], {}
    for name in dict.fromkeys(p.solver for p in points):
        matched = [at_target([p for p in points if p.solver == name and p.N == N], target) for N in sizes]
        fixed = _slope([(2 * p.N * p.N, p.cpu) for p in points if p.solver == name and p.rtol == SLOPE_RTOL
                        and p.ok])
        at_err = _slope([(2 * N * N, t) for N, (t, _) in zip(sizes, matched, strict=True)])
        slopes[name] = (fixed, at_err)
        rows.append([name] + [f"{mark}{t:.3g}" for t, mark in matched] + [fixed, at_err])
    return rows, slopes


def bdf_target(points: list[Point], N: int) -> list[str]:
    """Issue 19's FBDF target lines at grid ``N``: FBDF's (SparseLU; GMRES with AMG) and QNDF's CPU time over SciPy
    BDF's at their own errors (SciPy interpolated log-log between its points; ``None`` outside)."""
    lines = []
    scipy = [p for p in points if p.solver == SCIPY_BDF and p.N == N]
    for name in (FBDF, QNDF, FBDF_AMG, FBDF_AMG_LOOSE):
        for p in (q for q in points if q.solver == name and q.N == N and q.ok):
            t, mark = at_target(scipy, p.err)
            head = f"- {name} at N = {N}, rtol {p.rtol:g}: error {p.err:.2g}, CPU {p.cpu:.3g} s; "
            if not math.isfinite(t):
                lines.append(head + "SciPy BDF has fewer than two points at this N: no comparison")
                continue
            ratio = p.cpu / t
            lines.append(head + f"SciPy BDF at that error {mark}{t:.3g} s: ratio {ratio:.2f} (target <= 0.5: "
                         f"{'met' if ratio <= 0.5 else 'missed'})")
    return lines


def stiffness(problem: str, N: int) -> float:
    """The largest magnitude of the diffusion operator's eigenvalues, ``8 D / dx^2`` (the faster species)."""
    if problem == "brusselator":
        return 8.0 * BRUSS_ALPHA * (N - 1) ** 2
    return 8.0 * gs_grid(N).Du


def revision() -> str:
    """The pysciml checkout's commit and whether its ``pysciml/`` has local changes (for the report)."""
    root = Path(ps.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "pysciml"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "pysciml revision unknown (no git checkout)"
    return f"pysciml at commit {head}" + (" with local changes in pysciml/" if dirty else " (pysciml/ unmodified)")


# ---------------------------------------------------------------------------------------------------- run


def points_file(problem: str, N: int, size: str) -> Path:
    """Where one grid's points are kept between runs (``--report`` assembles them)."""
    return REF_CACHE / "points" / f"{problem}_N{N}_{size}.json"


def run_grid(problem: str, N: int, size: str, warm: bool = True, solvers: tuple[str, ...] | None = None) -> None:
    """Every solver of ``problem``'s plan on grid ``N`` (after a warm-up solve of SciPy BDF and Rodas5P unless
    ``warm`` is False); the points go to :func:`points_file`, rewritten after each one. ``solvers``: run only
    these (any of :data:`ALL` and :data:`KRYLOV`, in or out of the plan) and add their points to the grid's kept
    ones, replacing earlier points of the same solvers (the kept record then names both runs' revisions)."""
    spec = PROBLEMS[problem]
    smoke = size == "smoke"
    t1 = spec.smoke_t1 if smoke else spec.t1
    rtols, names, ref_rtol = spec.plan[N]
    rtols = rtols[:1] if smoke else rtols
    radau_note = radau_sparse_note()
    if warm:  # warm-up (imports, first calls) on a small grid
        run_solver(SCIPY_BDF, problem, 16, 1e-4, t1)
        run_solver(RODAS, problem, 16, 1e-4, t1)
    ref, how = reference(problem, N, ref_rtol, t1)
    note = f"N = {N}: {how}"
    if N <= 32 and not smoke:
        radau, _, _ = run_scipy(N, "Radau", ref_rtol, t1, problem)
        note += f", SciPy Radau rtol {ref_rtol:g} differs by {rel_err(radau, ref):.2g}"
    print(note, flush=True)
    record = {"revision": revision(), "environment": environment(), "t1": t1, "ref": note,
              "radau_note": radau_note, "points": []}
    path = points_file(problem, N, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if solvers is not None:
        names = solvers
        if path.exists():  # add to the kept points of this grid
            kept = json.loads(path.read_text())
            kept["points"] = [p for p in kept["points"] if p["solver"] not in solvers]
            added = f"{revision()} ({', '.join(solvers)}; {environment()})"
            kept["added"] = [*kept.get("added", []), added]
            record = kept
    for name in names:
        if name == RADAU and radau_note:
            continue
        for rtol in rtols:
            u, st, cpu, wall = run_solver(name, problem, N, rtol, t1)
            point = Point(name, N, rtol, cpu, wall, rel_err(u, ref) if st["ok"] else math.nan, st["nf"],
                          st["naccept"], st["njac"], st["nlu"], st["ok"])
            record["points"].append(asdict(point))
            path.write_text(json.dumps(record, indent=1))
            print(point, flush=True)


def report(problem: str, size: str, sizes: tuple[int, ...]) -> str:
    """The markdown report of ``problem`` from the kept points of each grid in ``sizes``; written to
    ``benchmarks/results/stiff_sparse[_<problem>][_smoke].md`` (the Brusselator's keeps the name ``stiff_sparse``)."""
    spec = PROBLEMS[problem]
    records = {N: json.loads(points_file(problem, N, size).read_text()) for N in sizes}
    points = [Point(**p) for N in sizes for p in records[N]["points"]]
    first = records[sizes[0]]
    runs = sorted({f"{r['environment']}; {r['revision']}" for r in records.values()}
                  | {f"N = {N}, added: {a}" for N, r in records.items() for a in r.get("added", [])})
    lines = [f"# Sparse stiff solves: {spec.title}", "", *(f"- {r}" for r in runs), "",
             "Shared, loaded 2-core machine: CPU times (time.process_time, one thread) are the comparison; wall "
             "times are given too; one timed run per point. " + ("One run per grid (each grid's solvers side by "
                                                                "side in one process)." if len(sizes) > 1 else ""),
             ""]
    if first["radau_note"]:
        lines += [f"RadauIIA5 SparseLU not run: this pysciml refuses it ({first['radau_note']}).", ""]
    rows = [[p.solver, p.N, 2 * p.N * p.N, p.rtol, p.err, p.cpu, p.wall, p.nf, p.naccept, p.njac, p.nlu,
             "" if p.ok else "failed"] for p in points]
    lines += [f"t = 0 to {first['t1']:g}; atol = {ATOL_PER_RTOL:g} rtol. References: "
              + "; ".join(r["ref"] for r in records.values()) + ".", "",
              markdown_table(["solver", "N", "states", "rtol", "max rel err", "CPU (s)", "wall (s)", "f calls",
                              "steps", "Jacobians", "LUs", ""], rows), ""]
    table, _ = summary(points, sizes, spec.target_err)
    lines += [f"CPU time (s) at max rel err {spec.target_err:g} (log-log interpolation of each solver's points at one "
              f"N; ~ = extrapolated from its nearest two; nan: one point only), and the slope of log CPU time vs log "
              f"states at rtol {SLOPE_RTOL:g} and at matched error (N^2 log N: {NLOGN_SLOPE:.2f}):", "",
              markdown_table(["solver"] + [f"N = {N}" for N in sizes] + [f"slope at rtol {SLOPE_RTOL:g}",
                                                                         "slope at matched error"], table), ""]
    steps = [f"N = {N}: |lambda|max = {stiffness(problem, N):.3g}, FBDF's mean step at rtol {SLOPE_RTOL:g} "
             f"{first['t1'] / p.naccept:.3g}, product {stiffness(problem, N) * first['t1'] / p.naccept:.3g}"
             for N in sizes for p in points if p.solver == FBDF and p.N == N and p.rtol == SLOPE_RTOL and p.naccept]
    lines += ["Stiffness: the diffusion's largest eigenvalue magnitude times FBDF's mean accepted step (an explicit "
              "method's stable steps are bounded by a few units of this product): " + "; ".join(steps) + ".", ""]
    if problem == "brusselator" and size != "smoke":
        lines += [f"Issue 19's target, FBDF <= 0.5x SciPy BDF's time at matched error at N = {max(sizes)}:", "",
                  *bdf_target(points, max(sizes)), ""]
    text = "\n".join(lines)
    write_result(result_name("stiff_sparse" + ("" if problem == "brusselator" else f"_{problem}"), size, "cpu"), text)
    return text


def run_problem(problem: str, size: str, grids: tuple[int, ...] | None = None) -> str:
    """Every grid of ``problem`` (default: the size's), then its report from the kept points of those grids."""
    sizes = grids or ((16,) if size == "smoke" else (32, 64, 128))
    for k, N in enumerate(sizes):
        run_grid(problem, N, size, warm=k == 0)
    return report(problem, size, sizes)


def main(size: str = "full", device: str = "cpu", problems: tuple[str, ...] = tuple(PROBLEMS)) -> str:
    skip = start_task("stiff_sparse", device)
    if skip is not None:
        return skip
    if device != "cpu":
        return "# stiff_sparse: skipped\n\nSparseLU runs on the CPU only (SciPy SuperLU).\n"
    return "\n\n".join(run_problem(p, size) for p in problems)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stiff_sparse")
    parser.add_argument("--problem", choices=sorted(PROBLEMS), action="append")
    parser.add_argument("--size", choices=("full", "smoke"), default="full")
    parser.add_argument("--grids", type=int, nargs="+", help="grid sizes N (default: the size's)")
    parser.add_argument("--report", action="store_true", help="only assemble the report from the kept points")
    parser.add_argument("--solvers", nargs="+", choices=ALL + KRYLOV,
                        help="run only these solvers and add their points to each grid's kept ones")
    args = parser.parse_args()
    start_task("stiff_sparse", "cpu")
    default = (16,) if args.size == "smoke" else (32, 64, 128)
    for name in args.problem or list(PROBLEMS):
        if args.report:
            print(report(name, args.size, tuple(args.grids or default)))
        else:
            for k, n in enumerate(args.grids or default):
                run_grid(name, n, args.size, warm=k == 0,
                         solvers=tuple(args.solvers) if args.solvers else None)
