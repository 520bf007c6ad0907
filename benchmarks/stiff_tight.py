"""Stiff problems at tight tolerances: pysciml RadauIIA5 against pysciml Rodas5P and SciPy's Radau (analytic
Jacobian) on ROBER (t1 = 1e5), HIRES, Van der Pol (mu = 1e3) and the Oregonator.

RadauIIA5 runs at rtol 1e-8, 1e-9, 1e-10; Rodas5P and SciPy Radau at 1e-7 ... 1e-11 (RadauIIA5 reaches errors far
below its tolerance, so the peers need a wider range for matched-error comparisons); atol = 1e-4 rtol throughout.
Each (problem, solver): one untimed warm-up solve at rtol 1e-6, then one timed solve per tolerance (wall time and
the process's CPU time, torch on one thread; on a shared machine the CPU time is the steadier of the two), its
error ``max_i |u_i(t1) - ref_i| / |ref_i|`` against ``stiff_problems.reference`` and its
counters. Summary: for each RadauIIA5 run, Rodas5P's f calls and CPU time and SciPy Radau's CPU time at the same
error (log-log interpolation along each peer's points; ``-`` outside them) and the ratios. Issue targets: fewer f calls
than Rodas5P at matched error, and time at most 1x SciPy Radau's.
Sizes: ``full`` and ``small`` (the same); ``smoke`` (Van der Pol only, RadauIIA5 at 1e-8, peers at 1e-7 .. 1e-9).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch

import pysciml as ps

from .common import environment, markdown_table, write_result
from .peers import Outcome, pysciml_solver, scipy_solver
from .stiff_bdf import _at_error
from .stiff_problems import StiffCase, make_cases, max_rel_err, reference

ATOL_PER_RTOL = 1e-4
RADAU_RTOLS = (1e-8, 1e-9, 1e-10)
PEER_RTOLS = (1e-7, 1e-8, 1e-9, 1e-10, 1e-11)
RADAU, RODAS, SCIPY = "pysciml RadauIIA5", "pysciml Rodas5P", "SciPy Radau"


def _cases(size: str) -> tuple[list[StiffCase], tuple[float, ...], tuple[float, ...]]:
    cases = [c for c in make_cases("small") if c.key in ("rober", "hires", "vdp", "oregonator")]
    if size == "smoke":
        return [c for c in cases if c.key == "vdp"], RADAU_RTOLS[:1], PEER_RTOLS[:3]
    return cases, RADAU_RTOLS, PEER_RTOLS


def _solvers(case: StiffCase) -> list[tuple[str, Callable[[float, float], Outcome]]]:
    return [(RADAU, pysciml_solver(case, ps.RadauIIA5())), (RODAS, pysciml_solver(case, ps.Rodas5P())),
            (SCIPY, scipy_solver(case, "Radau"))]


def _timed(fn: Callable[[float, float], Outcome], rtol: float) -> tuple[float, float, Outcome]:
    """``(wall seconds, CPU seconds of this process, outcome)`` of one solve."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(rtol, ATOL_PER_RTOL * rtol)
    return time.perf_counter() - t0, time.process_time() - c0, out


def _ratio(a: float, b: float | None) -> str:
    return "-" if b is None else f"{a / b:.2f}"


def main(size: str = "full", device: str = "cpu") -> str:
    """Run the comparison; write ``benchmarks/results/stiff_tight[_smoke].md``; return the markdown."""
    if device != "cpu":
        return "stiff_tight is single-trajectory CPU work; it is not run with --device cuda.\n"
    torch.set_num_threads(1)
    cases, radau_rtols, peer_rtols = _cases(size)
    rows, summary = [], []
    for case in cases:
        ref, _ = reference(case)
        runs: dict[str, list[tuple[float, float, Outcome, float]]] = {}  # label -> (rtol, error, outcome, CPU s)
        for label, fn in _solvers(case):
            fn(1e-6, ATOL_PER_RTOL * 1e-6)  # warm-up
            for rtol in radau_rtols if label == RADAU else peer_rtols:
                wall, secs, out = _timed(fn, rtol)
                err = max_rel_err(out.u, ref) if out.ok else float("nan")
                runs.setdefault(label, []).append((rtol, err, out, secs))
                rows.append([case.title, label, rtol, err, wall * 1e3, secs * 1e3, out.nf, out.naccept, out.njac,
                             out.nlu])
            print(f"  stiff_tight {case.key}: {label} done", file=sys.stderr, flush=True)
        curves = {label: ([(e, s) for _, e, _, s in runs[label]], [(e, float(o.nf or 0)) for _, e, o, _ in runs[label]])
                  for label in (RODAS, SCIPY)}
        for rtol, err, out, secs in runs[RADAU]:
            t_ro, nf_ro = _at_error(curves[RODAS][0], err), _at_error(curves[RODAS][1], err)
            t_sp = _at_error(curves[SCIPY][0], err)
            summary.append([case.title, rtol, err, secs * 1e3, out.nf,
                            "-" if nf_ro is None else f"{nf_ro:.0f}", _ratio(float(out.nf or 0), nf_ro),
                            "-" if t_ro is None else f"{t_ro * 1e3:.4g}", _ratio(secs, t_ro),
                            "-" if t_sp is None else f"{t_sp * 1e3:.4g}", _ratio(secs, t_sp)])
    text = (
        f"# Tight tolerances: RadauIIA5 vs Rodas5P and SciPy Radau ({size})\n\n"
        f"Machine: {environment()}. Torch limited to 1 thread; one timed run per point after one warm-up solve "
        "(shared, loaded machine: wall times vary several-fold run to run; CPU time is the process's "
        "time.process_time()).\n\n"
        f"RadauIIA5 at rtol {', '.join(f'{r:g}' for r in radau_rtols)}; peers at "
        f"{', '.join(f'{r:g}' for r in peer_rtols)}; atol = {ATOL_PER_RTOL:g} * rtol; analytic Jacobians. Error: "
        "max_i |u_i(t1) - ref_i| / |ref_i|.\n\n"
        + markdown_table(["problem", "solver", "rtol", "error", "wall [ms]", "CPU [ms]", "f calls", "accepted",
                          "Jacobians", "LUs"], rows)
        + "\n\n## At matched error: the peers interpolated to RadauIIA5's error\n\n"
        + markdown_table(["problem", "rtol", "error", "CPU [ms]", "f calls", "Rodas5P f calls", "f ratio",
                          "Rodas5P CPU [ms]", "CPU ratio", "SciPy Radau CPU [ms]", "vs SciPy"], summary)
        + "\n"
    )
    write_result("stiff_tight" + ("" if size != "smoke" else "_smoke"), text)
    return text
