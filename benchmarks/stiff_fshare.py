"""Where eager RadauIIA5's time goes against SciPy Radau's: the right-hand side's share (issue 19's eager target).

Issue 19 asks eager ``RadauIIA5`` at rtol 1e-8..1e-10 to take at most SciPy Radau's time. The stiff benchmarks give
each library the right-hand side its users write: torch functions to pysciml, NumPy ones to SciPy. This task
measures, in one run, how much of each solve is spent inside the right-hand side and its Jacobian (process CPU
time accumulated around every call), and runs SciPy Radau a second time on pysciml's own torch functions
(``torch.from_numpy`` in, ``.numpy()`` out). Where pysciml's time inside ``f`` and ``jac`` alone exceeds SciPy's whole
solve with NumPy functions, no eager solver overhead, however small, meets the target with that ``f``.

The wrappers add one Python call per evaluation (about a microsecond) to every row alike.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp

import pysciml as ps

from .common import environment, markdown_table, start_task, write_result
from .stiff_problems import StiffCase, make_cases, max_rel_err, reference

RTOLS = (1e-8, 1e-10)
ATOL_PER_RTOL = 1e-4  # as benchmarks/stiff_tight.py


@dataclass
class _Clock:
    """Process CPU seconds spent inside the wrapped functions, and their calls."""

    f: float = 0.0
    jac: float = 0.0
    nf: int = 0
    njac: int = 0

    def wrap(self, fn: Callable[..., Any], which: str) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            start = time.process_time()
            out = fn(*args)
            spent = time.process_time() - start
            if which == "f":
                self.f += spent
                self.nf += 1
            else:
                self.jac += spent
                self.njac += 1
            return out

        return timed


@dataclass
class _Run:
    label: str
    cpu: float
    clock: _Clock
    err: float


def _pysciml(case: StiffCase, rtol: float) -> _Run:
    prob = case.torch_problem()
    clock = _Clock()
    f, jac = prob.f, prob.jac
    fw = clock.wrap(f if prob.f_takes_p else (lambda t, u, p: f(t, u)), "f")
    jw = clock.wrap(jac if prob.jac_takes_p else (lambda t, u, p: jac(t, u)), "jac")
    wrapped = ps.ODEProblem(lambda t, u, p: fw(t, u, p), prob.u0, prob.tspan, p=prob.p,
                            jac=lambda t, u, p: jw(t, u, p), tgrad=prob.tgrad)
    ends = torch.tensor(prob.tspan, dtype=prob.u0.dtype)
    kwargs = dict(rtol=rtol, atol=ATOL_PER_RTOL * rtol, saveat=ends)
    ps.solve(wrapped, ps.RadauIIA5(), **kwargs)  # warm-up (first-call checks)
    clock.__init__()  # type: ignore[misc]
    start = time.process_time()
    sol = ps.solve(wrapped, ps.RadauIIA5(), **kwargs)
    cpu = time.process_time() - start
    return _Run("pysciml RadauIIA5 (eager, torch f)", cpu, clock, max_rel_err(sol.u[-1].numpy(), reference(case)[0]))


def _scipy(case: StiffCase, rtol: float, torch_f: bool) -> _Run:
    clock = _Clock()
    if torch_f:
        prob = case.torch_problem()

        def as_torch(fn: Callable[..., torch.Tensor], takes_p: bool) -> Callable[..., np.ndarray]:
            def call(t: float, y: np.ndarray, p: Any) -> np.ndarray:
                args = (torch.tensor(t, dtype=torch.float64), torch.from_numpy(y))
                return (fn(*args, prob.p) if takes_p else fn(*args)).numpy()
            return call

        f, jac = as_torch(prob.f, prob.f_takes_p), as_torch(prob.jac, prob.jac_takes_p)
        label = "SciPy Radau (pysciml's torch f and jac)"
    else:
        f, jac = case.rhs(np), case.jac
        label = "SciPy Radau (NumPy f and jac, as in the stiff tasks)"
    start = time.process_time()
    sol = solve_ivp(clock.wrap(f, "f"), (0.0, case.t1), case.u0, method="Radau", rtol=rtol,
                    atol=ATOL_PER_RTOL * rtol, jac=clock.wrap(jac, "jac"), args=(case.p,))
    cpu = time.process_time() - start
    return _Run(label, cpu, clock, max_rel_err(sol.y[:, -1], reference(case)[0]))


def measure(case: StiffCase, rtol: float) -> list[_Run]:
    """pysciml's eager RadauIIA5, SciPy Radau with NumPy functions, SciPy Radau with pysciml's torch functions."""
    return [_pysciml(case, rtol), _scipy(case, rtol, False), _scipy(case, rtol, True)]


def main(size: str = "full", device: str = "cpu") -> str:
    """Run the comparison; write ``benchmarks/results/stiff_fshare[_smoke].md``; return the markdown."""
    if device != "cpu":
        return "# stiff_fshare: CPU only (SciPy runs on the CPU)\n"
    start_task("stiff_fshare", device)
    cases = [c for c in make_cases("small") if c.key in ("rober", "hires", "vdp", "oregonator")]
    rtols = RTOLS
    if size == "smoke":
        cases, rtols = [c for c in cases if c.key == "vdp"], (1e-6,)
    rows, verdicts = [], []
    for case in cases:
        for rtol in rtols:
            runs = measure(case, rtol)
            for r in runs:
                c = r.clock
                rows.append([case.title, rtol, r.label, f"{r.err:.2e}", f"{r.cpu * 1e3:.0f}", c.nf,
                             f"{c.f * 1e3:.0f}", f"{c.f / max(c.nf, 1) * 1e6:.1f}", c.njac, f"{c.jac * 1e3:.0f}",
                             f"{(r.cpu - c.f - c.jac) * 1e3:.0f}"])
            own, numpy_run = runs[0], runs[1]
            inside = own.clock.f + own.clock.jac
            verdicts.append([case.title, rtol, f"{inside * 1e3:.0f}", f"{numpy_run.cpu * 1e3:.0f}",
                             f"{inside / numpy_run.cpu:.2f}", f"{own.cpu / numpy_run.cpu:.2f}",
                             f"{own.cpu / runs[2].cpu:.2f}", "yes" if numpy_run.err <= own.err else "no"])
            print(f"  stiff_fshare {case.key} rtol {rtol:g} done", file=sys.stderr, flush=True)
    lines = [
        "# Where eager RadauIIA5's time goes: the right-hand side's share against SciPy Radau", "",
        f"Machine: {environment()}. Load average at the end: {os.getloadavg()[0]:.1f} (shared machine).", "",
        __doc__.split("\n\n")[1].replace("\n", " "), "",
        f"One timed solve per row after one warm-up solve (pysciml); analytic Jacobians; atol = {ATOL_PER_RTOL:g} "
        "* rtol; error: max relative error at t1 against the reference of the stiff tasks. CPU: process time.", "",
        markdown_table(["problem", "rtol", "solver", "error", "CPU [ms]", "f calls", "in f [ms]", "us per f call",
                  "jac calls", "in jac [ms]", "outside f and jac [ms]"], rows), "",
        "## The floor: pysciml's time inside f and jac against SciPy's whole solve", "",
        markdown_table(["problem", "rtol", "pysciml in f + jac [ms]", "SciPy Radau, NumPy f [ms]",
                  "(in f + jac) / SciPy", "pysciml / SciPy (NumPy f)", "pysciml / SciPy (torch f)",
                        "SciPy (NumPy f) at least as accurate"], verdicts), "",
        "Where SciPy's solve is at least as accurate as pysciml's at the same rtol, SciPy at pysciml's error would "
        "take no more time than listed, so an `(in f + jac) / SciPy` above 1 there means the target cannot be met "
        "with these torch functions whatever the solver costs outside them.",
    ]
    text = "\n".join(lines) + "\n"
    write_result("stiff_fshare" + ("_smoke" if size == "smoke" else ""), text)
    return text


if __name__ == "__main__":
    print(main(*(sys.argv[1:2] or ["full"])))
