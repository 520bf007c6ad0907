"""Task 1: stiff work-precision diagrams. ROBER, HIRES, Van der Pol (mu = 1e3), Oregonator, Brusselator-1D
(N = 64, 256).

Solvers, each at rtol = 1e-4 .. 1e-8 with atol = 1e-4 * rtol:
- pysciml Rodas5P, Rodas4, Rosenbrock23 (analytic Jacobian) and KenCarp4 (IMEX on the Brusselator's split:
  diffusion implicit, reaction explicit; fully implicit elsewhere); Rodas5P again without the analytic
  Jacobian ("autodiff J": pysciml's default autodiff Jacobian, as a user who writes only ``f`` calls it);
  both Rodas5P rows once more with ``compile=True`` ("compiled": saving only ``t1``, the whole loop is one
  ``torch.while_loop`` program, engine/compiled_loop.py, faster per step than one program per step on ROBER,
  the Oregonator, HIRES and Van der Pol, ``benchmarks/stiff_loop.py``; ``pysciml.warmup`` compiles before the
  warm-up solve, the compile time is reported apart, not in the times);
- SciPy ``solve_ivp`` Radau, BDF, LSODA with the same analytic Jacobian (dense, as pysciml's);
- diffrax Kvaerno5 and KenCarp4 (same split; ``MultiTerm(0, f)`` elsewhere; root finder optimistix.Newton,
  see ``peers.DiffraxSolver``), jitted, 64-bit, Jacobians by ``jax.jacfwd``; compile time reported
  separately, the jitted solve timed.
Error: ``max_i |u_i(t1) - ref_i| / |ref_i|`` against ``stiff_problems.reference``. Times: the process's CPU time
(``time.process_time``; wall time beside it: on a shared machine wall time carries the other jobs' load), medians
after one warm-up solve per (problem, solver), 5 runs (3 for runs over 0.5 s, 1 over 2 s; the table says how
many); after a run over ``SLOW_CAP`` (5 s) a solver skips the tighter tolerances (listed in the report).
Which loop the compiled rows ran (the whole-loop program, or the per-step programs after a failed loop compile)
is counted (``stiff_loop.loop_route``) and reported. Torch runs on one thread. Summary: Rodas5P's CPU time
(analytic and autodiff Jacobian; eager and compiled) at its own errors vs the peers' times interpolated (log-log)
to the same error on their curves; and 100 solves of ROBER and the Oregonator with perturbed parameters, compile
included (:mod:`benchmarks.stiff_repeat`).
Sizes: ``full``; ``small`` (no Brusselator N = 256, rtol 1e-5 .. 1e-7, only the four Rodas5P rows and SciPy, no
diffrax, at most 3 runs);
``smoke`` (Brusselator N = 8 to t = 1, rtol 1e-6, no diffrax; 3 perturbed ROBER solves).
``python -m benchmarks.stiff SIZE --rows LABEL [LABEL ...] [--problems KEY ...]``: only those pysciml rows (and
SciPy), no repeated solves; written to ``stiff_rows[_SIZE].md`` (the full task's file is left as it was).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import pysciml as ps
from pysciml.devtools import BENCHMARK_TIMING, time_at_error

from .common import RESULTS, environment, markdown_table, one_thread, result_name, write_result
from .peers import DiffraxSolver, Outcome, jax_modules, pysciml_solver, scipy_solver
from .stiff_loop import loop_route, route_name, timed
from .stiff_problems import StiffCase, make_cases, max_rel_err, reference
from .stiff_repeat import repeat_section

RTOLS = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
ATOL_PER_RTOL = 1e-4
PYSCIML = (ps.Rodas5P(), ps.Rodas4(), ps.KenCarp4(), ps.Rosenbrock23())
RODAS5P, RODAS5P_AD = "pysciml Rodas5P", "pysciml Rodas5P (autodiff J)"
RODAS5P_C, RODAS5P_C_AD = "pysciml Rodas5P compiled", "pysciml Rodas5P compiled (autodiff J)"  # compile=True
FBDF_C_AD = "pysciml FBDF compiled (autodiff J)"  # compile=True, FBDF's loop program; only when selected by --rows
QNDF_C_AD = "pysciml QNDF compiled (autodiff J)"  # compile=True, QNDF's loop program; only when selected by --rows
QNDF_AD = "pysciml QNDF (autodiff J)"  # eager QNDF beside it; only when selected by --rows
SUMMARY_ROWS = (RODAS5P, RODAS5P_AD, RODAS5P_C, RODAS5P_C_AD)  # the rows the summary compares with SciPy
SELECTABLE_ROWS = (FBDF_C_AD, QNDF_C_AD, QNDF_AD)  # run and summarised only when ``rows`` names them
PYSCIML_ROWS = ("pysciml Rodas4", "pysciml KenCarp4", "pysciml KenCarp4 (IMEX)", "pysciml Rosenbrock23")
SCIPY = ("Radau", "BDF", "LSODA")
DIFFRAX = ("Kvaerno5", "KenCarp4")
SLOW_CAP = BENCHMARK_TIMING.slow_cap  # 5 s: a solver whose run took longer skips the tighter tolerances (12-min budget)


@dataclass
class Run:
    """One (solver, rtol) point of a work-precision curve (``time``: CPU seconds, ``wall``: wall seconds)."""

    solver: str
    rtol: float
    time: float
    runs: int
    err: float
    out: Outcome
    wall: float


def solvers(case: StiffCase, jaxmods, size: str = "full", rows: tuple[str, ...] | None = None
            ) -> list[tuple[str, Callable[[float, float], Outcome]]]:
    """The ``(label, (rtol, atol) -> Outcome)`` of every solver on ``case`` (diffrax only when installed; at
    size ``"small"`` pysciml's Rodas5P rows only; ``rows``: only those pysciml labels, and SciPy)."""
    out = []
    for alg in PYSCIML[:1] if size == "small" else PYSCIML:
        split = alg.name == "KenCarp4" and case.torch_split is not None
        out.append((f"pysciml {alg.name}" + (" (IMEX)" if split else ""), pysciml_solver(case, alg, split)))
        if alg.name == "Rodas5P":
            out.append((RODAS5P_AD, pysciml_solver(case, alg, autodiff_jac=True)))
            out.append((RODAS5P_C, pysciml_solver(case, alg, compile=True)))
            out.append((RODAS5P_C_AD, pysciml_solver(case, alg, autodiff_jac=True, compile=True)))
    if rows is not None and FBDF_C_AD in rows:
        out.append((FBDF_C_AD, pysciml_solver(case, ps.FBDF(), autodiff_jac=True, compile=True)))
    if rows is not None and QNDF_AD in rows:
        out.append((QNDF_AD, pysciml_solver(case, ps.QNDF(), autodiff_jac=True)))
    if rows is not None and QNDF_C_AD in rows:
        out.append((QNDF_C_AD, pysciml_solver(case, ps.QNDF(), autodiff_jac=True, compile=True)))
    out += [(f"SciPy {m}", scipy_solver(case, m)) for m in SCIPY]
    if jaxmods is not None:
        for name in DIFFRAX:
            imex = name == "KenCarp4" and case.split is not None
            label = f"diffrax {name}" + (" (IMEX, Newton)" if imex else " (Newton)" if name == "KenCarp4" else "")
            out.append((label, DiffraxSolver(case, name, jaxmods)))
    return [(label, fn) for label, fn in out if rows is None or label in rows or label.startswith("SciPy")]


def sweep(case: StiffCase, rtols: tuple[float, ...], jaxmods, max_runs: int, skipped: list[str], size: str = "full",
          rows: tuple[str, ...] | None = None) -> tuple[list[Run], list[list]]:
    """Every solver over ``rtols``; returns the runs and the compile-time rows (diffrax, pysciml compiled; for
    pysciml, with the loop its solves ran). Once a solver's run takes over ``SLOW_CAP`` CPU seconds its tighter
    tolerances are skipped (appended to ``skipped``)."""
    ref, _ = reference(case)
    runs, compile_rows = [], []
    for label, fn in solvers(case, jaxmods, size, rows):
        t_start = time.perf_counter()
        with loop_route() as route:
            warm = fn(rtols[0], ATOL_PER_RTOL * rtols[0])  # warm-up (for diffrax and compile=True: the compilation)
            crow = None
            if warm.compile_time is not None:
                crow = [case.title, label, warm.compile_time, "pysciml.warmup + the warm-up solve's "
                        "sol.stats.compile_time"]
                compile_rows.append(crow)
            solver_runs = sweep_solver(case.title, label, fn, rtols, max_runs, ref, skipped, compile_rows)
        if crow is not None:
            crow.append(route_name(route))
        runs += solver_runs
        print(f"  {case.key}: {label} done in {time.perf_counter() - t_start:.1f} s", file=sys.stderr, flush=True)
    return runs, compile_rows


def sweep_solver(title: str, label: str, fn: Callable[[float, float], Outcome], rtols: tuple[float, ...],
                 max_runs: int, ref: np.ndarray, skipped: list[str], compile_rows: list[list]) -> list[Run]:
    """One solver (warmed up) over ``rtols``."""
    runs: list[Run] = []
    for rtol in rtols:
        if runs and runs[-1].time > SLOW_CAP:
            skipped.append(f"{label} at rtol {rtol:g}")  # a tighter tolerance would take longer still
            continue
        atol = ATOL_PER_RTOL * rtol
        wall, cpu, n, out = timed(lambda fn=fn, rtol=rtol, atol=atol: fn(rtol, atol), max_runs)
        if isinstance(fn, DiffraxSolver) and out.ok:
            out.nf = fn.count_nf(rtol, atol)
            if rtol == rtols[0]:
                compile_rows.append([title, label, fn.first_call - wall, "first call - timed run (wall)", "-"])
        if (out.compile_time or 0.0) > 0.01:  # a timed run compiled again: say so, do not hide it
            compile_rows.append([title, label, out.compile_time, f"recompiled in a timed run, rtol {rtol:g}", "-"])
        runs.append(Run(label, rtol, cpu, n, max_rel_err(out.u, ref) if out.ok else float("nan"), out, wall))
    return runs


def curve(runs: list[Run], solver: str) -> list[tuple[float, float]]:
    """``(error, time)`` points of ``solver`` (finite errors only), sorted by error."""
    return sorted((r.err, r.time) for r in runs if r.solver == solver and np.isfinite(r.err) and r.err > 0)


def matched(runs: list[Run], solver: str = RODAS5P) -> tuple[list[list], float | None, float | None]:
    """``solver`` vs SciPy at ``solver``'s own errors: rows, and the median time ratios solver / best(Radau, BDF)
    and solver / LSODA over the errors both reach (``None`` if none)."""
    peers = {m: curve(runs, f"SciPy {m}") for m in SCIPY}
    rows, r_best, r_lsoda = [], [], []
    for r in runs:
        if r.solver != solver or not np.isfinite(r.err):
            continue
        at = {m: time_at_error(pts, r.err) for m, pts in peers.items()}
        best = min((t for m, t in at.items() if m != "LSODA" and t is not None), default=None)
        rb = None if best is None else r.time / best
        rl = None if at["LSODA"] is None else r.time / at["LSODA"]
        r_best += [rb] if rb is not None else []
        r_lsoda += [rl] if rl is not None else []
        rows.append([r.rtol, r.err, r.time * 1e3] + [fmt_ms(at[m]) for m in SCIPY] + [fmt_x(rb), fmt_x(rl)])
    return rows, median_or_none(r_best), median_or_none(r_lsoda)


def median_or_none(v: list[float]) -> float | None:
    return float(np.median(v)) if v else None


def met(ratio: float | None, target: float) -> str:
    return "-" if ratio is None else "yes" if ratio <= target else "no"


def fmt_ms(t: float | None) -> str:
    return "outside its range" if t is None else f"{t * 1e3:.3g}"


def fmt_x(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def run_rows(runs: list[Run]) -> list[list]:
    def c(v):
        return "-" if v is None else v

    def per_step(r: Run) -> float | str:
        steps = (r.out.naccept or 0) + (r.out.nreject or 0)
        return r.time * 1e3 / steps if steps else "-"

    return [[r.solver, r.rtol, r.time * 1e3, r.runs, r.err if r.out.ok else "failed", c(r.out.nf),
             c(r.out.naccept), c(r.out.nreject), c(r.out.njac), c(r.out.nlu), per_step(r), r.wall * 1e3] for r in runs]


RUN_HEADERS = ["solver", "rtol", "CPU [ms]", "runs", "max rel. error", "f evals", "accepted steps", "rejected",
               "Jacobians", "LUs", "CPU ms / step", "wall [ms]"]


def plot_case(case: StiffCase, runs: list[Run], path: Path, rtols: tuple[float, ...] = RTOLS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    draw(axes[0], runs, "time")
    draw(axes[1], runs, "nf")
    axes[0].set_ylabel("CPU time [ms]")
    axes[1].set_ylabel("f evaluations")
    for ax in axes:
        ax.set_xlabel(f"max relative error at t = {case.t1:g}")
    axes[1].legend(fontsize="x-small", loc="best")
    fig.suptitle(f"{case.title}: rtol {rtols[0]:g}..{rtols[-1]:g}, atol = {ATOL_PER_RTOL:g} rtol")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


STYLE = {"pysciml": "o-", "SciPy": "s--", "diffrax": "^:"}


def draw(ax, runs: list[Run], what: str) -> None:
    for name in dict.fromkeys(r.solver for r in runs):
        pts = sorted((r.err, r.time * 1e3 if what == "time" else r.out.nf) for r in runs
                     if r.solver == name and np.isfinite(r.err) and r.err > 0 and r.out.nf is not None)
        if pts:
            e, y = zip(*pts, strict=True)
            style = STYLE[name.split()[0]]
            style = ("D" if "compiled" in name else style[0]) + ("--" if "autodiff" in name else style[1:])
            ax.loglog(e, y, style, label=name, markersize=4)
    ax.grid(True, which="both", alpha=0.3)


def plot_overview(results: list[tuple[StiffCase, list[Run]]], path: Path, rtols: tuple[float, ...] = RTOLS
                  ) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(results))
    rows = (len(results) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    for ax, (case, runs) in zip(axes.flat, results, strict=False):
        draw(ax, runs, "time")
        ax.set_title(case.title, fontsize="small")
        ax.set_xlabel("max rel. error")
        ax.set_ylabel("CPU time [ms]")
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", fontsize="small")
    fig.suptitle(f"Stiff work-precision (rtol {rtols[0]:g}..{rtols[-1]:g}, atol = {ATOL_PER_RTOL:g} rtol)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SIZES = {  # size -> (tolerances, most runs per point, with diffrax)
    "full": (RTOLS, 5, True),
    "small": ((1e-5, 1e-6, 1e-7), 3, False),
    "smoke": ((1e-6,), 1, False),
}


def matched_table(runs: list[Run], solver: str) -> str:
    """The matched-error table of ``solver`` (one of the Rodas5P rows) against SciPy."""
    name = solver.removeprefix("pysciml ")
    mrows, _, _ = matched(runs, solver)
    return (f"{name} at matched error (peer CPU times log-log interpolated on their curves to its error):\n\n"
            + markdown_table(["rtol", "error", "CPU [ms]"] + [f"SciPy {m} CPU [ms]" for m in SCIPY]
                             + ["/ best(Radau, BDF)", "/ LSODA"], mrows))


def main(size: str = "full", device: str = "cpu", rows: tuple[str, ...] | None = None,
         problems: tuple[str, ...] | None = None) -> str:
    """Run task 1 at ``size`` ``"full"`` (6 problems, 5 tolerances), ``"small"`` (5 problems, 3 tolerances,
    the Rodas5P rows and SciPy) or ``"smoke"`` (Brusselator N=8 to t=1, rtol 1e-6, no diffrax);
    write ``benchmarks/results/stiff[_small|_smoke].md`` and PNGs; return the markdown. ``rows`` (pysciml labels)
    and ``problems`` (case keys) restrict the run: then no repeated solves, and the files are ``stiff_rows*``.
    The results file is rewritten after each problem, so a run stopped early leaves what it measured."""
    if device != "cpu":
        return "Task 1 (stiff work-precision) is single-trajectory CPU work; it is not run with --device cuda.\n"
    one_thread()
    start = Start(time.perf_counter(), time.process_time(), os.getloadavg()[0])
    task = "stiff" if rows is None and problems is None else "stiff_rows"
    suffix = ("" if size == "full" else f"_{size}") if task == "stiff" else f"_rows_{size}"
    rtols, max_runs, with_diffrax = SIZES[size]
    jaxmods = jax_modules() if with_diffrax else None  # a diffrax compile alone takes seconds per solver
    summary_rows = tuple(r for r in SUMMARY_ROWS + SELECTABLE_ROWS if rows is None and r in SUMMARY_ROWS
                         or rows is not None and r in rows)
    results, compile_rows, sections, summary = [], [], [], []
    text = ""
    for case in make_cases(size):
        if problems is not None and case.key not in problems:
            continue
        print(f"stiff: {case.title}", file=sys.stderr, flush=True)
        _, ref_how = reference(case)
        skipped: list[str] = []
        runs, crows = sweep(case, rtols, jaxmods, max_runs, skipped, size, rows)
        results.append((case, runs))
        compile_rows += crows
        png = RESULTS / f"stiff_{case.key}{suffix}.png"
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot_case(case, runs, png, rtols)
        compiled = {row[1]: row[2] for row in crows if row[1].startswith("pysciml")}
        for solver in summary_rows:
            _, rb, rl = matched(runs, solver)
            compile_s = compiled.get(solver)
            summary.append([case.title, solver.removeprefix("pysciml "), fmt_x(rb), met(rb, 0.5), fmt_x(rl),
                            met(rl, 2.0), "-" if compile_s is None else f"{compile_s:.1f}"])
        sections.append(
            f"### {case.title}\n\nReference: {ref_how}.\n\n![{case.key}]({png.name})\n\n"
            f"{markdown_table(RUN_HEADERS, run_rows(runs))}\n\n"
            + (f"Skipped (the previous tolerance took > {SLOW_CAP:g} s): {'; '.join(skipped)}.\n\n" if skipped else "")
            + "\n\n".join(matched_table(runs, solver) for solver in summary_rows))
        overview = RESULTS / f"stiff_work_precision{suffix}.png"
        plot_overview(results, overview, rtols)
        repeat = repeat_section(size) if task == "stiff" and case.key == make_cases(size)[-1].key else ""
        text = report(size, (rtols, max_runs, jaxmods, rows), summary, compile_rows, sections, overview, repeat,
                      start)
        write_result(result_name(task, size, device), text)
    return text


@dataclass
class Start:
    """When the run started: wall and CPU clocks, the 1-minute load average."""

    wall: float
    cpu: float
    load: float


def report(size: str, setup: tuple, summary: list[list], compile_rows: list[list], sections: list[str],
           overview: Path, repeat: str, start: Start) -> str:
    """The markdown report (``setup``: tolerances, most runs, the jax modules or ``None``, the row filter)."""
    rtols, max_runs, jaxmods, rows = setup
    peers_note = ("" if jaxmods is not None else f" diffrax skipped at {size} size (compile time)." if size != "full"
                  else " diffrax/jax not installed: diffrax skipped.")
    only = ("" if rows is None else " Only the pysciml rows " + ", ".join(f"`{r}`" for r in rows)
            + " and SciPy were run; the repeated solves are in `stiff_repeat*.md`.")
    compile_txt = markdown_table(["problem", "solver", "compile time [s]", "measured as", "loop taken"],
                                 compile_rows)
    return (
        f"# Task 1: stiff work-precision ({size}{'' if rows is None else ', selected rows'})\n\n"
        f"Machine: {environment()}. Torch limited to 1 thread.{peers_note}{only} Shared machine: load average "
        f"{start.load:.1f} at the start of this run, {os.getloadavg()[0]:.1f} when this file was written; times "
        "are the process's CPU time (wall time beside it).\n\n"
        f"rtol {', '.join(f'{r:g}' for r in rtols)}; atol = {ATOL_PER_RTOL:g} * rtol (scalar) for every solver. "
        "Analytic Jacobian for pysciml and SciPy (dense), except the rows `... (autodiff J)`: the "
        "problem without its `jac`, so pysciml's default autodiff Jacobian; diffrax differentiates f with "
        "jax.jacfwd. `compiled` rows: `solve(..., compile=True)`, compiled before the warm-up solve "
        "(`pysciml.warmup`), so the timed runs exclude the compile time (reported apart below, with the loop "
        "the solves ran: `whole loop` = one `torch.while_loop` program per solve). Error: "
        "max componentwise relative error at t1. Times: median CPU time of `runs` runs after one warm-up solve per "
        "(problem, solver): 5 runs, 3 when a run takes > 0.5 s, 1 when > 2 s (at most "
        f"{max_runs}); after a run over "
        f"{SLOW_CAP:g} s a solver skips the tighter tolerances (listed per problem). f evals: each library's counter "
        "(diffrax: host-callback count in a separate untimed run, a jacfwd Jacobian counting as one call; "
        "pysciml's autodiff Jacobians are counted as Jacobians, not f evals). ms / step: CPU time over "
        "accepted + rejected steps.\n\n"
        f"![overview]({overview.name})\n\n"
        "## Summary: pysciml Rodas5P CPU time at matched error (median over its tolerances; target <= 0.5x best of "
        "SciPy Radau/BDF, <= 2x LSODA; SciPy given the analytic Jacobian), eager and `compile=True`, with the "
        "analytic and with the autodiff Jacobian; compile time excluded from the solve times, given apart\n\n"
        + markdown_table(["problem", "pysciml", "/ best(Radau, BDF)", "<= 0.5x?", "/ LSODA", "<= 2x?",
                          "compile [s]"], summary)
        + (f"\n\n{repeat}" if repeat else "") + f"\n\n## Compile times\n\n{compile_txt}\n\n## Per problem\n\n"
        + "\n\n".join(sections)
        + f"\n\nTotal benchmark wall time so far: {time.perf_counter() - start.wall:.0f} s (CPU time of this "
        f"process: {time.process_time() - start.cpu:.0f} s).\n"
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.stiff", description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", default="full", choices=tuple(SIZES))
    parser.add_argument("--rows", nargs="+",
                        help=f"pysciml row labels, any of {SUMMARY_ROWS + PYSCIML_ROWS + SELECTABLE_ROWS}")
    parser.add_argument("--problems", nargs="+", help="case keys: rober hires vdp oregonator bruss64 bruss256")
    args = parser.parse_args()
    print(main(args.size, "cpu", tuple(args.rows) if args.rows else None,
               tuple(args.problems) if args.problems else None))
