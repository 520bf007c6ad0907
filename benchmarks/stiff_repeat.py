"""Task 1, repeated solves: 100 solves of one problem with perturbed parameters, compile included.

Each rate constant / parameter of ROBER and the Oregonator is perturbed uniformly by up to +-10% (NumPy generator,
seed 0); every solver integrates each parameter set to ``t1`` at rtol 1e-6, atol 1e-10 (the stiff task's
``atol = 1e-4 rtol``), saving only ``t1``. SciPy ``solve_ivp`` Radau, BDF and LSODA get the analytic Jacobian and
solve one set at a time. pysciml runs Rodas5P in two ways:

- one solve per parameter set with ``compile=True`` (autodiff and analytic Jacobian), each set a new problem
  (``prob.remake(p=...)``, the same ``f``), so one compile serves all solves;
- what a pysciml user would write for 100 parameter sets: one batched solve (``u0`` of shape ``(100, 3)``, ``p`` of
  shape ``(100, 3)``; every trajectory keeps its own step size), eager and with ``compile=True``.

Compiled rows start from an empty program cache, either ``cold`` (inductor's on-disk caches disabled: a first
compile; torch.compile's one-time start-up in this process is already paid by earlier rows) or ``warm disk cache``
(the same solve was compiled once before, untimed, so inductor's on-disk caches hold it: what a second Python
process on the same machine sees; Dynamo traces again, and AOTAutograd's and inductor's FX graph caches return the
compiled graph, whole-loop programs included since ``compiled_parts`` marks ``while_loop`` cacheable). Inductor
compiles in this process here (``compile_threads = 1``), so the CPU times include the C++ compiler (a reaped child
process). Compile time is included in the total and also reported apart (``sol.stats.compile_time`` summed). Times:
wall and CPU (this process and its reaped children) side by side; on a shared machine wall time carries the other jobs'
load. The error is the max relative error at ``t1`` over the first ``N_REF`` parameter sets, against SciPy Radau at
rtol 1e-12, atol 1e-16.

``python -m benchmarks.stiff_repeat [SIZE]`` writes ``stiff_repeat[_SIZE].md``; :func:`repeat_section` is also the
repeated-solve section of the stiff task's report.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import pysciml as ps
from pysciml import problems
from pysciml.engine.compiled import clear_cache

from .common import environment, markdown_table, one_thread, result_name, write_result
from .peers import scipy_solver
from .stiff_loop import loop_route, route_name
from .stiff_problems import StiffCase, make_cases, max_rel_err

RTOL, ATOL = 1e-6, 1e-10
PERTURB = 0.1
N_REF = 3
SIZES = {"full": (100, ("rober", "oregonator")), "small": (100, ("rober", "oregonator")), "smoke": (3, ("rober",))}


@dataclass(frozen=True)
class Way:
    """One pysciml row: batched (one solve of all sets) or not, compiled or not, the autodiff Jacobian or the
    analytic one, and the inductor disk cache (``cold``: off; ``warm``: primed by an untimed solve)."""

    label: str
    batched: bool
    compiled: bool
    autodiff_jac: bool
    cache: str  # "cold", "warm" or "-" (eager, or smoke: caches left on)


WAYS = (
    Way("pysciml Rodas5P compiled (autodiff J)", False, True, True, "cold"),
    Way("pysciml Rodas5P compiled", False, True, False, "cold"),
    Way("pysciml Rodas5P compiled (autodiff J), warm disk cache", False, True, True, "warm"),
    Way("pysciml Rodas5P one batched solve (autodiff J)", True, False, True, "-"),
    Way("pysciml Rodas5P one batched solve, compiled (autodiff J)", True, True, True, "cold"),
    Way("pysciml Rodas5P one batched solve, compiled (autodiff J), warm disk cache", True, True, True, "warm"),
)
SCIPY = ("SciPy Radau", "SciPy BDF", "SciPy LSODA")
SOLVERS = SCIPY + tuple(w.label for w in WAYS)


def parameter_sets(case: StiffCase, n: int, seed: int = 0) -> np.ndarray:
    """``(n, len(p))``: the case's parameters, each scaled by a uniform factor in ``[0.9, 1.1]``."""
    rng = np.random.default_rng(seed)
    return case.p * (1.0 + PERTURB * rng.uniform(-1.0, 1.0, (n, len(case.p))))


def clock() -> tuple[float, float]:
    """``(wall, CPU)`` seconds now; CPU: this process and its reaped children (the C++ compiler)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Result:
    wall: float
    cpu: float
    compile_s: float | None
    outs: list[np.ndarray]
    failed: int
    route: str = "-"


def scipy_runs(case: StiffCase, method: str, params: np.ndarray) -> Result:
    """One ``solve_ivp`` per parameter set (no compile: ``None``)."""
    outs, failed = [], 0
    w0, c0 = clock()
    for p in params:
        out = scipy_solver(case, method, p)(RTOL, ATOL)
        outs.append(out.u)
        failed += not out.ok
    w1, c1 = clock()
    return Result(w1 - w0, c1 - c0, None, outs, failed)


def _problem(case: StiffCase, params: np.ndarray, autodiff_jac: bool) -> ps.ODEProblem:
    """The case's problem for one parameter set (``(k,)``) or a batch of them (``(n, k)``: a batched problem)."""
    p = torch.tensor(params, dtype=torch.float64)
    if params.ndim == 1:
        prob = case.torch_problem().remake(p=p)
    elif case.key == "rober":
        prob = problems.rober((0.0, case.t1), k=p)
    else:
        prob = problems.oregonator((0.0, case.t1), p=p)
    if autodiff_jac:
        prob = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p, tgrad=prob.tgrad, batched=prob.batched)
    return prob


def _solve(case: StiffCase, params: np.ndarray, way: Way) -> tuple[list[np.ndarray], int, float]:
    """Every parameter set solved the row's way: ``(u(t1) per set, failures, compile seconds)``."""
    if way.batched:
        sol = ps.solve(_problem(case, params, way.autodiff_jac), ps.Rodas5P(), rtol=RTOL, atol=ATOL,
                       saveat=[case.t1], compile=way.compiled)
        failed = sum(r is not ps.ReturnCode.Success for r in sol.retcodes)
        return list(sol.u[-1].detach().numpy()), failed, sol.stats.compile_time
    outs, failed, compile_s = [], 0, 0.0
    base = _problem(case, params[0], way.autodiff_jac)
    for p in params:
        sol = ps.solve(base.remake(p=torch.tensor(p, dtype=torch.float64)), ps.Rodas5P(), rtol=RTOL, atol=ATOL,
                       saveat=[case.t1], compile=way.compiled)
        compile_s += sol.stats.compile_time
        outs.append(sol.u[-1].detach().numpy())
        failed += sol.retcode != ps.ReturnCode.Success
    return outs, failed, compile_s


def pysciml_runs(case: StiffCase, way: Way, params: np.ndarray) -> Result:
    """The row's solves of every parameter set, the program cache cleared first (and inductor's disk caches off
    when ``cold``; primed by one untimed solve when ``warm``)."""
    if way.cache == "warm":  # the same programs compiled once, untimed: inductor's disk cache holds them
        clear_cache()
        _solve(case, params if way.batched else params[:1], way)  # (a batch's program is specific to its size)
    clear_cache()
    cold = way.cache == "cold"
    caches = torch._inductor.config.patch(force_disable_caches=True) if cold else contextlib.nullcontext()
    with caches, torch._inductor.config.patch(compile_threads=1), loop_route() as route:
        w0, c0 = clock()
        outs, failed, compile_s = _solve(case, params, way)
        w1, c1 = clock()
    return Result(w1 - w0, c1 - c0, compile_s if way.compiled else None, outs, failed,
                  route_name(route) if way.compiled else "-")


def references(case: StiffCase, params: np.ndarray) -> list[np.ndarray]:
    """SciPy Radau at rtol 1e-12, atol 1e-16 (analytic Jacobian) for each parameter set."""
    from scipy.integrate import solve_ivp

    f = case.rhs(np)
    return [solve_ivp(f, (0.0, case.t1), case.u0, method="Radau", rtol=1e-12, atol=1e-16, jac=case.jac,
                      args=(p,)).y[:, -1] for p in params]


def repeat_case(case: StiffCase, n: int, ways: tuple[Way, ...]) -> tuple[list[list], list[list]]:
    """The table rows of every solver on ``n`` parameter sets of ``case``, and its summary rows (ratios)."""
    print(f"stiff: {n} solves of {case.title} with perturbed parameters", file=sys.stderr, flush=True)
    params = parameter_sets(case, n)
    refs = references(case, params[:N_REF])
    rows, totals = [], {}
    for label in SCIPY + tuple(w.label for w in ways):
        t_start = time.perf_counter()
        way = next((w for w in ways if w.label == label), None)
        res = scipy_runs(case, label.removeprefix("SciPy "), params) if way is None else pysciml_runs(case, way, params)
        totals[label] = res
        err = max(max_rel_err(u, ref) for u, ref in zip(res.outs, refs, strict=False))
        compile_s = res.compile_s or 0.0
        rows.append([case.title, label, res.wall, "-" if res.compile_s is None else f"{compile_s:.1f}",
                     (res.wall - compile_s) / n * 1e3, err, res.failed, res.cpu, "-" if way is None else way.cache,
                     res.route])
        print(f"  {label}: wall {res.wall:.1f} s, CPU {res.cpu:.1f} s, compile {compile_s:.1f} s "
              f"({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
    best_wall = min(totals["SciPy Radau"].wall, totals["SciPy BDF"].wall)
    best_cpu = min(totals["SciPy Radau"].cpu, totals["SciPy BDF"].cpu)
    summary = []
    for way in ways:
        r = totals[way.label]
        rb, rbc = r.wall / best_wall, r.cpu / best_cpu
        summary.append([case.title, way.label.removeprefix("pysciml "), f"{rb:.2f}x", "yes" if rb <= 0.5 else "no",
                        f"{r.wall / totals['SciPy LSODA'].wall:.2f}x", f"{rbc:.2f}x", "yes" if rbc <= 0.5 else "no",
                        f"{r.cpu / totals['SciPy LSODA'].cpu:.2f}x"])
    return rows, summary


def repeat_section(size: str, ways: tuple[Way, ...] | None = None,
                   written: Callable[[str], None] | None = None, keys: tuple[str, ...] | None = None) -> str:
    """The markdown section: per problem, SciPy's and pysciml's total time for the parameter sets (``ways``:
    the pysciml rows, default all; at smoke size inductor's disk caches stay on). ``written`` gets the section
    so far after each problem; ``keys``: the problems (default the size's)."""
    n, default_keys = SIZES[size]
    keys = default_keys if keys is None else keys
    ways = WAYS if ways is None else ways
    if size == "smoke":  # no warm-cache or batched compiled rows (each a compile more in the test suite)
        ways = tuple(Way(w.label, w.batched, w.compiled, w.autodiff_jac, "-") for w in ways
                     if w.cache != "warm" and not (w.batched and w.compiled))
    rows, summary = [], []
    text = ""
    for case in (c for c in make_cases("small") if c.key in keys):
        r, s = repeat_case(case, n, ways)
        rows += r
        summary += s
        text = section_text(n, rows, summary)
        if written is not None:
            written(text)
    return text


def section_text(n: int, rows: list[list], summary: list[list]) -> str:
    return (f"## {n} solves with perturbed parameters (compile included)\n\n"
            f"Each parameter scaled by a uniform factor in [{1 - PERTURB:g}, {1 + PERTURB:g}] (seed 0), rtol {RTOL:g}, "
            f"atol {ATOL:g}, to t1. SciPy: one solve per parameter set. pysciml Rodas5P: one `compile=True` solve per "
            "set, or one batched solve of all sets (eager, compiled); compiled rows start from an empty program "
            "cache, `cold` = inductor's disk caches disabled (a first compile), `warm` = the same solve compiled once "
            "before, untimed (inductor's disk caches hold the compiled graphs; Dynamo traces again). Error: max "
            f"relative error at t1 over the first {N_REF} sets against SciPy Radau at rtol 1e-12. CPU: this process "
            "and its reaped children (inductor compiles in-process here, `compile_threads = 1`, so the C++ compiler "
            "is counted).\n\n"
            + markdown_table(["problem", "solver", f"total wall, {n} sets [s]", "of which compile [s]",
                              "per set, compile excluded [ms wall]", "max rel. error", "failed", "total CPU [s]",
                              "inductor disk cache", "loop taken"], rows)
            + "\n\nTarget: pysciml's total (compile included) <= 0.5x SciPy's best of Radau/BDF.\n\n"
            + markdown_table(["problem", "pysciml", "wall / best(Radau, BDF)", "<= 0.5x (wall)?", "wall / LSODA",
                              "CPU / best(Radau, BDF)", "<= 0.5x (CPU)?", "CPU / LSODA"], summary))


def main(size: str = "small", device: str = "cpu", labels: tuple[str, ...] | None = None,
         keys: tuple[str, ...] | None = None) -> str:
    """The repeated-solve section on its own (``labels``: the pysciml rows to run, default all; ``keys``: the
    problems); writes ``benchmarks/results/stiff_repeat[_SIZE][_KEY...].md`` after each problem."""
    one_thread()
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    ways = None if labels is None else tuple(w for w in WAYS if w.label in labels)

    def write(section: str) -> str:
        text = (f"# Task 1: repeated stiff solves ({size})\n\n"
                f"Machine: {environment()}. Torch limited to 1 thread. Shared machine: load average {load0:.1f} at "
                f"the start of this run, {os.getloadavg()[0]:.1f} when this file was written "
                f"({time.perf_counter() - t0:.0f} s wall so far).\n\n" + section + "\n")
        write_result(result_name("stiff_repeat", size, device) + "".join(f"_{k}" for k in keys or ()), text)
        return text

    return write(repeat_section(size, ways, write, keys))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.stiff_repeat", description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", default="small", choices=tuple(SIZES))
    parser.add_argument("--rows", nargs="+", help=f"pysciml rows, any of {[w.label for w in WAYS]}")
    parser.add_argument("--problems", nargs="+", help="rober, oregonator")
    args = parser.parse_args()
    print(main(args.size, "cpu", tuple(args.rows) if args.rows else None,
               tuple(args.problems) if args.problems else None))
