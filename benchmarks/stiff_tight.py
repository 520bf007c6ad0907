"""Stiff problems at tight tolerances: pysciml RadauIIA5, FBDF and QNDF against pysciml Rodas5P, SciPy's Radau
(analytic Jacobian) and diffrax Kvaerno5 on ROBER (t1 = 1e5), HIRES, Van der Pol (mu = 1e3) and the Oregonator.

RadauIIA5, FBDF and QNDF run at rtol 1e-8, 1e-9, 1e-10; Rodas5P, SciPy Radau and diffrax Kvaerno5 at 1e-7 ... 1e-11
(RadauIIA5 reaches errors far below its tolerance, so the peers need a wider range for matched-error comparisons);
atol = 1e-4 rtol throughout. diffrax (``peers.DiffraxSolver``): jitted, 64-bit, its default root finder, Jacobians
by ``jax.jacfwd``; its compile time (first call minus a second call at the warm-up tolerance) is reported apart and
its f calls are counted in a separate untimed run; skipped with a note when jax/diffrax are not installed.
Each (problem, solver): one untimed warm-up solve at rtol 1e-6, then one timed solve per tolerance (wall time and
the process's CPU time, torch on one thread; on a shared machine the CPU time is the steadier of the two), its
error ``max_i |u_i(t1) - ref_i| / |ref_i|`` against ``stiff_problems.reference`` and its counters. Summaries: for
each RadauIIA5 run, Rodas5P's f calls and CPU time, SciPy Radau's and Kvaerno5's CPU time at the same error
(log-log interpolation along each peer's points; ``-`` outside them) and the ratios; the same for each FBDF / QNDF
run against RadauIIA5, Rodas5P and SciPy Radau. Issue targets: RadauIIA5 with fewer f calls than Rodas5P at
matched error, and time at most 1x SciPy Radau's (eager) and 0.5x with compiled steps.
``pysciml RadauIIA5 compile``: ``solve(..., compile=True)`` with one compiled program per step
(``engine/compiled_firk.py``) in the eager loop (``compiled_loop_firk.ENABLED = False``); ``pysciml RadauIIA5 whole
loop``: the same solve as one compiled program for the whole loop (``engine/compiled_loop_firk.py``, the default for
``compile=True``). Their warm-up solves compile the programs; the seconds spent compiling are reported apart, not in
their times.
Sizes: ``full`` and ``small`` (the same); ``smoke`` (Van der Pol only, RadauIIA5 / FBDF / QNDF at 1e-8, peers at
1e-7 .. 1e-9, no diffrax). ``python -m benchmarks.stiff_tight --solvers radau,radau_compile,radau_whole,scipy``
runs a subset (keys: :data:`SOLVER_KEYS`) and writes ``stiff_tight_<keys>.md``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pysciml as ps
from pysciml.engine import compiled_loop_firk

from .common import environment, markdown_table, one_thread, write_result
from .peers import DiffraxSolver, Outcome, jax_modules, pysciml_solver, scipy_solver
from .stiff_bdf import _at_error
from .stiff_problems import StiffCase, make_cases, max_rel_err, reference

ATOL_PER_RTOL = 1e-4
RADAU_RTOLS = (1e-8, 1e-9, 1e-10)  # RadauIIA5, FBDF, QNDF: the range
PEER_RTOLS = (1e-7, 1e-8, 1e-9, 1e-10, 1e-11)  # Rodas5P, SciPy Radau, diffrax Kvaerno5
WARMUP_RTOL = 1e-6
RADAU, RODAS, SCIPY = "pysciml RadauIIA5", "pysciml Rodas5P", "SciPy Radau"
RADAU_C = "pysciml RadauIIA5 compile"
RADAU_W = "pysciml RadauIIA5 whole loop"
FBDF, QNDF, KVAERNO = "pysciml FBDF", "pysciml QNDF", "diffrax Kvaerno5"
OWN_RANGE = (RADAU, RADAU_C, RADAU_W, FBDF, QNDF)  # the solvers run at RADAU_RTOLS
SOLVER_KEYS = {"radau": RADAU, "radau_compile": RADAU_C, "radau_whole": RADAU_W, "fbdf": FBDF, "qndf": QNDF,
               "rodas": RODAS, "scipy": SCIPY, "kvaerno": KVAERNO}
"""``--solvers`` names (``python -m benchmarks.stiff_tight --solvers radau,radau_compile,rodas,scipy``)."""

Runs = dict[str, list[tuple[float, float, Outcome, float]]]  # label -> [(rtol, error, outcome, CPU s)]


def _cases(size: str) -> tuple[list[StiffCase], tuple[float, ...], tuple[float, ...]]:
    cases = [c for c in make_cases("small") if c.key in ("rober", "hires", "vdp", "oregonator")]
    if size == "smoke":
        return [c for c in cases if c.key == "vdp"], RADAU_RTOLS[:1], PEER_RTOLS[:3]
    return cases, RADAU_RTOLS, PEER_RTOLS


def _solvers(case: StiffCase, jaxmods: tuple | None,
             only: set[str] | None = None) -> list[tuple[str, Callable[[float, float], Outcome]]]:
    """The solvers to run (``only``: those labels, default all), each as ``(label, (rtol, atol) -> Outcome)``."""
    makers: list[tuple[str, Callable[[], Callable[[float, float], Outcome]]]] = [
        (RADAU, lambda: pysciml_solver(case, ps.RadauIIA5())),
        (RADAU_C, lambda: _per_step(pysciml_solver(case, ps.RadauIIA5(), compile=True))),
        (RADAU_W, lambda: pysciml_solver(case, ps.RadauIIA5(), compile=True)),
        (FBDF, lambda: pysciml_solver(case, ps.FBDF())), (QNDF, lambda: pysciml_solver(case, ps.QNDF())),
        (RODAS, lambda: pysciml_solver(case, ps.Rodas5P())), (SCIPY, lambda: scipy_solver(case, "Radau"))]
    if jaxmods is not None:
        makers.append((KVAERNO, lambda: DiffraxSolver(case, "Kvaerno5", jaxmods)))
    return [(label, make()) for label, make in makers if only is None or label in only]


def _per_step(fn: Callable[[float, float], Outcome]) -> Callable[[float, float], Outcome]:
    """``fn`` with the FIRK whole-loop program off (``compiled_loop_firk.ENABLED``): the per-step program in the
    eager scalar loop, warm-up included."""

    def run(rtol: float, atol: float) -> Outcome:
        compiled_loop_firk.ENABLED = False
        try:
            return fn(rtol, atol)
        finally:
            compiled_loop_firk.ENABLED = True

    return run


def _timed(fn: Callable[[float, float], Outcome], rtol: float) -> tuple[float, float, Outcome]:
    """``(wall seconds, CPU seconds of this process, outcome)`` of one solve."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(rtol, ATOL_PER_RTOL * rtol)
    return time.perf_counter() - t0, time.process_time() - c0, out


def _ratio(a: float, b: float | None) -> str:
    return "-" if b is None else f"{a / b:.2f}"


def _ms(t: float | None) -> str:
    return "-" if t is None else f"{t * 1e3:.4g}"


def _cpu_curve(runs: Runs, label: str) -> list[tuple[float, float]]:
    return [(e, s) for _, e, _, s in runs.get(label, [])]


def _nf_curve(runs: Runs, label: str) -> list[tuple[float, float]]:
    return [(e, float(o.nf or 0)) for _, e, o, _ in runs.get(label, [])]


def _radau_rows(title: str, runs: Runs) -> list[list]:
    """RadauIIA5's runs (eager and compiled) against Rodas5P (f calls, CPU), SciPy Radau and Kvaerno5 (CPU) at the
    same error."""
    rows = []
    for label in (RADAU, RADAU_C, RADAU_W):
        for rtol, err, out, secs in runs.get(label, []):
            nf_ro = _at_error(_nf_curve(runs, RODAS), err)
            t_ro, t_sp, t_kv = (_at_error(_cpu_curve(runs, peer), err) for peer in (RODAS, SCIPY, KVAERNO))
            rows.append([title, label.removeprefix("pysciml "), rtol, err, secs * 1e3, out.nf,
                         "-" if nf_ro is None else f"{nf_ro:.0f}", _ratio(float(out.nf or 0), nf_ro), _ms(t_ro),
                         _ratio(secs, t_ro), _ms(t_sp), _ratio(secs, t_sp), _ms(t_kv), _ratio(secs, t_kv)])
    return rows


def _bdf_rows(title: str, runs: Runs) -> list[list]:
    """FBDF's and QNDF's runs against RadauIIA5, Rodas5P, SciPy Radau and Kvaerno5 (CPU) at the same error."""
    rows = []
    for label in (FBDF, QNDF):
        for rtol, err, out, secs in runs.get(label, []):
            peers = [_at_error(_cpu_curve(runs, peer), err) for peer in (RADAU, RODAS, SCIPY, KVAERNO)]
            rows.append([title, label.removeprefix("pysciml "), rtol, err, secs * 1e3, out.nf]
                        + [cell for t in peers for cell in (_ms(t), _ratio(secs, t))])
    return rows


def _sweep(case: StiffCase, jaxmods: tuple | None, own: tuple[float, ...], peer: tuple[float, ...],
           only: set[str] | None = None) -> tuple[Runs, list[list], list[list]]:
    """Every solver (or those in ``only``) on ``case``: ``(runs, table rows, compile-time rows)``."""
    ref, _ = reference(case)
    runs: Runs = {}
    rows, compile_rows = [], []
    for label, fn in _solvers(case, jaxmods, only):
        start = time.perf_counter()
        first = fn(WARMUP_RTOL, ATOL_PER_RTOL * WARMUP_RTOL)  # warm-up (diffrax, compiled steps: their compilation)
        if first.compile_time is not None:  # pysciml compile=True: the seconds that solve spent compiling
            compile_rows.append([case.title, label, first.compile_time, time.perf_counter() - start])
        if isinstance(fn, DiffraxSolver):
            wall, _, _ = _timed(fn, WARMUP_RTOL)
            compile_rows.append([case.title, label, (fn.first_call or 0.0) - wall, "-"])
        for rtol in own if label in OWN_RANGE else peer:
            wall, secs, out = _timed(fn, rtol)
            err = max_rel_err(out.u, ref) if out.ok else float("nan")
            if isinstance(fn, DiffraxSolver) and out.ok:
                out.nf = fn.count_nf(rtol, ATOL_PER_RTOL * rtol)  # untimed
            runs.setdefault(label, []).append((rtol, err, out, secs))
            rows.append([case.title, label, rtol, err if out.ok else "failed", wall * 1e3, secs * 1e3,
                         *("-" if v is None else v for v in (out.nf, out.naccept, out.nreject, out.njac, out.nlu))])
        print(f"  stiff_tight {case.key}: {label} done", file=sys.stderr, flush=True)
    return runs, rows, compile_rows


def main(size: str = "full", device: str = "cpu", solvers: list[str] | None = None) -> str:
    """Run the comparison; write ``benchmarks/results/stiff_tight[_smoke].md`` (with ``solvers``, a subset of
    :data:`SOLVER_KEYS`: ``stiff_tight_<keys>.md``); return the markdown."""
    if device != "cpu":
        return "stiff_tight is single-trajectory CPU work; it is not run with --device cuda.\n"
    one_thread()
    cases, own, peer = _cases(size)
    only = None if solvers is None else {SOLVER_KEYS[k] for k in solvers}
    jaxmods = jax_modules() if size != "smoke" and (only is None or KVAERNO in only) else None
    rows, radau_rows, bdf_rows, compile_rows = [], [], [], []
    for case in cases:
        runs, case_rows, case_compile = _sweep(case, jaxmods, own, peer, only)
        rows += case_rows
        compile_rows += case_compile
        radau_rows += _radau_rows(case.title, runs)
        bdf_rows += _bdf_rows(case.title, runs)
    diffrax_note = ("diffrax Kvaerno5: jitted, 64-bit, default root finder, Jacobians by jax.jacfwd; its f calls "
                    "counted by a host callback in a separate untimed run (a jacfwd Jacobian counts as one call); "
                    "compile time below, not in its times." if jaxmods is not None else
                    "diffrax Kvaerno5 not run (" + ("smoke size" if size == "smoke" else "not among --solvers"
                                                      if only is not None and KVAERNO not in only
                                                      else "jax/diffrax not installed") + ").")
    text = (
        f"# Tight tolerances: RadauIIA5, FBDF, QNDF vs Rodas5P, SciPy Radau and diffrax Kvaerno5 ({size})\n\n"
        f"Machine: {environment()}. Torch limited to 1 thread; one timed run per point after one warm-up solve "
        "(shared, loaded machine: wall times vary several-fold run to run; CPU time is the process's "
        "time.process_time()).\n\n"
        f"RadauIIA5, FBDF, QNDF at rtol {', '.join(f'{r:g}' for r in own)}; Rodas5P, SciPy Radau, Kvaerno5 at "
        f"{', '.join(f'{r:g}' for r in peer)}; atol = {ATOL_PER_RTOL:g} * rtol; analytic Jacobians (pysciml, "
        f"SciPy). {diffrax_note} Error: max_i |u_i(t1) - ref_i| / |ref_i|.\n\n"
        + markdown_table(["problem", "solver", "rtol", "error", "wall [ms]", "CPU [ms]", "f calls", "accepted",
                          "rejected", "Jacobians", "LUs"], rows)
        + "\n\n## At matched error: the peers interpolated to RadauIIA5's error\n\n"
        + markdown_table(["problem", "solver", "rtol", "error", "CPU [ms]", "f calls", "Rodas5P f calls", "f ratio",
                          "Rodas5P CPU [ms]", "CPU ratio", "SciPy Radau CPU [ms]", "vs SciPy", "Kvaerno5 CPU [ms]",
                          "vs Kvaerno5"], radau_rows)
        + "\n\n## At matched error: the others interpolated to FBDF's / QNDF's error (CPU ms, and the ratio "
          "FBDF or QNDF / it)\n\n"
        + markdown_table(["problem", "method", "rtol", "error", "CPU [ms]", "f calls", "RadauIIA5", "ratio",
                          "Rodas5P", "ratio", "SciPy Radau", "ratio", "Kvaerno5", "ratio"], bdf_rows)
        + ("\n\n## Compile time (not in the times above)\n\nCompiled RadauIIA5: the seconds its warm-up solve "
           "spent compiling (Stats.compile_time) and that solve's wall time; diffrax: its first call minus a "
           "second.\n\n" + markdown_table(["problem", "solver", "compile [s]", "warm-up solve wall [s]"],
                                           compile_rows) if compile_rows else "")
        + "\n"
    )
    name = "stiff_tight" + ("" if size != "smoke" else "_smoke")
    write_result(name + ("" if solvers is None else "_" + "_".join(solvers)), text)
    return text


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.stiff_tight", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("full", "small", "smoke"), default="full")
    parser.add_argument("--solvers", default=None,
                        help=f"comma-separated subset of {', '.join(SOLVER_KEYS)} (default: all)")
    args = parser.parse_args()
    keys = None if args.solvers is None else args.solvers.split(",")
    if keys is not None and not set(keys) <= set(SOLVER_KEYS):
        parser.error(f"--solvers: unknown {sorted(set(keys) - set(SOLVER_KEYS))}; choose from {list(SOLVER_KEYS)}")
    print(main(args.size, solvers=keys))
