"""Task 1, repeated solves: 100 solves of one problem with perturbed parameters, compile included.

Each rate constant / parameter of ROBER and the Oregonator is perturbed uniformly by up to +-10% (NumPy generator,
seed 0); every solver integrates each parameter set once to ``t1`` at rtol 1e-6, atol 1e-10 (the stiff task's
``atol = 1e-4 rtol``), saving only ``t1``. SciPy ``solve_ivp`` Radau, BDF and LSODA get the analytic Jacobian.
pysciml runs Rodas5P with ``compile=True`` (autodiff and analytic Jacobian), each parameter set a new problem
(``prob.remake(p=...)``, the same ``f``), so one compile serves all solves: its program cache is cleared first
and, at sizes ``small`` / ``full``, inductor's on-disk caches are disabled for the measurement (a cold compile;
torch.compile's one-time start-up in this process is already paid by the sweep). Compile time is included in the
total and also reported apart (``sol.stats.compile_time`` summed). The error is the max relative error at ``t1``
over the first ``N_REF`` parameter sets, against SciPy Radau at rtol 1e-12, atol 1e-16.
"""

from __future__ import annotations

import contextlib
import sys
import time

import numpy as np
import torch

import pysciml as ps
from pysciml.engine.compiled import clear_cache

from .common import markdown_table
from .peers import scipy_solver
from .stiff_problems import StiffCase, make_cases, max_rel_err

RTOL, ATOL = 1e-6, 1e-10
PERTURB = 0.1
N_REF = 3
SIZES = {"full": (100, ("rober", "oregonator")), "small": (100, ("rober", "oregonator")), "smoke": (3, ("rober",))}


def parameter_sets(case: StiffCase, n: int, seed: int = 0) -> np.ndarray:
    """``(n, len(p))``: the case's parameters, each scaled by a uniform factor in ``[0.9, 1.1]``."""
    rng = np.random.default_rng(seed)
    return case.p * (1.0 + PERTURB * rng.uniform(-1.0, 1.0, (n, len(case.p))))


Result = tuple[float, float | None, list[np.ndarray], int]  # seconds, compile seconds, u(t1) per set, failures


def scipy_runs(case: StiffCase, method: str, params: np.ndarray) -> Result:
    """One ``solve_ivp`` per parameter set (no compile: ``None``)."""
    outs, failed = [], 0
    t0 = time.perf_counter()
    for p in params:
        out = scipy_solver(case, method, p)(RTOL, ATOL)
        outs.append(out.u)
        failed += not out.ok
    return time.perf_counter() - t0, None, outs, failed


def pysciml_runs(case: StiffCase, autodiff_jac: bool, params: np.ndarray, cold: bool) -> Result:
    """One compiled Rodas5P solve per parameter set, the
    program cache cleared first (and inductor's disk caches off when ``cold``)."""
    base = case.torch_problem()
    if autodiff_jac:
        base = ps.ODEProblem(base.f, base.u0, base.tspan, base.p, tgrad=base.tgrad)
    clear_cache()
    caches = (torch._inductor.config.patch(force_disable_caches=True) if cold else contextlib.nullcontext())
    outs, failed, compile_s = [], 0, 0.0
    with caches:
        t0 = time.perf_counter()
        for p in params:
            prob = base.remake(p=torch.tensor(p, dtype=base.u0.dtype))
            sol = ps.solve(prob, ps.Rodas5P(), rtol=RTOL, atol=ATOL, saveat=[case.t1], compile=True)
            compile_s += sol.stats.compile_time
            outs.append(sol.u[-1].detach().numpy())
            failed += sol.retcode != ps.ReturnCode.Success
        total = time.perf_counter() - t0
    return total, compile_s, outs, failed


def references(case: StiffCase, params: np.ndarray) -> list[np.ndarray]:
    """SciPy Radau at rtol 1e-12, atol 1e-16 (analytic Jacobian) for each parameter set."""
    from scipy.integrate import solve_ivp

    f = case.rhs(np)
    return [solve_ivp(f, (0.0, case.t1), case.u0, method="Radau", rtol=1e-12, atol=1e-16, jac=case.jac,
                      args=(p,)).y[:, -1] for p in params]


SOLVERS = ("SciPy Radau", "SciPy BDF", "SciPy LSODA", "pysciml Rodas5P compiled (autodiff J)",
           "pysciml Rodas5P compiled")


def repeat_case(case: StiffCase, n: int, cold: bool) -> tuple[list[list], list[list]]:
    """The table rows of every solver on ``n`` parameter sets of ``case``, and its summary rows (ratios)."""
    print(f"stiff: {n} solves of {case.title} with perturbed parameters", file=sys.stderr, flush=True)
    params = parameter_sets(case, n)
    refs = references(case, params[:N_REF])
    rows, totals = [], {}
    for label in SOLVERS:
        if label.startswith("SciPy"):
            total, compile_s, outs, failed = scipy_runs(case, label.removeprefix("SciPy "), params)
        else:
            total, compile_s, outs, failed = pysciml_runs(case, "autodiff" in label, params, cold)
        totals[label] = total
        err = max(max_rel_err(u, ref) for u, ref in zip(outs, refs, strict=False))
        rows.append([case.title, label, total, "-" if compile_s is None else f"{compile_s:.1f}",
                     (total - (compile_s or 0.0)) / n * 1e3, err, failed])
    best = min(totals["SciPy Radau"], totals["SciPy BDF"])
    summary = []
    for label in SOLVERS[3:]:
        rb, rl = totals[label] / best, totals[label] / totals["SciPy LSODA"]
        summary.append([case.title, label.removeprefix("pysciml "), f"{rb:.2f}x", "yes" if rb <= 0.5 else "no",
                        f"{rl:.2f}x"])
    return rows, summary


def repeat_section(size: str) -> str:
    """The markdown section: per problem, SciPy's and pysciml's (compiled) total time for the parameter sets."""
    n, keys = SIZES[size]
    cold = size != "smoke"
    rows, summary = [], []
    for case in (c for c in make_cases("small") if c.key in keys):
        r, s = repeat_case(case, n, cold)
        rows += r
        summary += s
    disk = ("inductor's disk caches disabled (a cold compile)" if cold
            else "inductor's disk caches left on (smoke size)")
    return (f"## {n} solves with perturbed parameters (compile included)\n\n"
            f"Each parameter scaled by a uniform factor in [{1 - PERTURB:g}, {1 + PERTURB:g}] (seed 0), rtol {RTOL:g}, "
            f"atol {ATOL:g}, one solve per parameter set to t1. pysciml: Rodas5P with `compile=True`, its program "
            f"cache cleared before each row, {disk}; one compile serves every solve. Error: max relative error at "
            f"t1 over the first {N_REF} sets against SciPy Radau at rtol 1e-12.\n\n"
            + markdown_table(["problem", "solver", f"total, {n} solves [s]", "of which compile [s]",
                              "per solve, compile excluded [ms]", "max rel. error", "failed"], rows)
            + "\n\nTarget: pysciml's total (compile included) <= 0.5x SciPy's best of Radau/BDF.\n\n"
            + markdown_table(["problem", "pysciml", "/ best(Radau, BDF)", "<= 0.5x?", "/ LSODA"], summary))

