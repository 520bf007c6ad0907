"""Validate your own solver with pysciml.devtools: its convergence order, then a work-precision diagram beside
pysciml's Rodas5P and KenCarp4 and SciPy's Radau.

The solver is a user's: the trapezoidal rule (implicit, A-stable, order 2) with a simplified Newton iteration, in
a few lines of NumPy. It plugs into the developer tools through the crossvalidate callable convention,
``solver(prob, saveat, dt=...)`` for the convergence study and ``solver(prob, saveat, rtol=..., atol=...)`` for
the work-precision sweep (a fixed-step method has no tolerance: it maps ``rtol`` to a step size).

1. Order: fixed steps on the Stuart-Landau oscillator of :func:`pysciml.problems.nonlinear_exact` (closed-form
   solution; ``lam = 10`` makes it mildly stiff).
2. Work-precision: the Brusselator-1D with N = 32 cells (64 unknowns, stiff diffusion) to t = 10, error = max
   over components of the absolute error at t1 against the stored certified reference
   (``pysciml.problems.reference``).

Writes ``docs/results/own_solver.png`` (the diagram) and ``docs/results/own_solver.md`` (the numbers)::

    python examples/own_solver.py            # a few minutes on one loaded core
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from report import add_common_flags, machine_line, md_table, sci, write_text

import pysciml as ps
from pysciml import problems as P
from pysciml.devtools import TimingRule, convergence, time_at_error, work_precision


def trapezoid(f, jac, t_save: np.ndarray, y0: np.ndarray, h: float) -> tuple[np.ndarray, int]:
    """The trapezoidal rule y1 = y0 + h/2 (f(t0, y0) + f(t1, y1)), solved by Newton with the Jacobian frozen at the
    step's start; steps of at most ``h`` between consecutive save times. Returns the states at ``t_save`` and the
    number of steps."""
    y, out, eye, steps = y0.copy(), [y0.copy()], np.eye(y0.size), 0
    for a, b in zip(t_save[:-1], t_save[1:], strict=True):
        n = max(1, math.ceil((b - a) / h - 1e-9))
        hk, steps = (b - a) / n, steps + n
        for k in range(n):
            t0, t1 = a + k * hk, a + (k + 1) * hk
            f0 = f(t0, y)
            M = eye - 0.5 * hk * jac(t0, y)
            z = y + hk * f0  # explicit Euler predictor
            for _ in range(20):
                dz = np.linalg.solve(M, z - y - 0.5 * hk * (f0 + f(t1, z)))
                z = z - dz
                if np.max(np.abs(dz)) <= 1e-12 * (1.0 + np.max(np.abs(z))):
                    break
            y = z
        out.append(y.copy())
    return np.array(out), steps


def my_solver(prob: ps.ODEProblem, saveat: torch.Tensor, dt: float | None = None, rtol: float | None = None,
              atol: float | None = None) -> tuple[torch.Tensor, dict[str, int]]:
    """The adapter: the problem's torch f and Jacobian as NumPy functions; ``rtol`` -> the fixed step
    ``sqrt(rtol) * span / 3`` (the second-order error scales like dt^2). Returns the states and the step count."""
    def f(t, y):
        return prob.rhs(torch.tensor(t, dtype=torch.float64), torch.from_numpy(y)).numpy()

    def jac(t, y):
        args = (torch.tensor(t, dtype=torch.float64), torch.from_numpy(y))
        return (prob.jac(*args, prob.p) if prob.jac_takes_p else prob.jac(*args)).numpy()

    span = abs(prob.tspan[1] - prob.tspan[0])
    h = dt if dt is not None else math.sqrt(rtol) * span / 3
    states, steps = trapezoid(f, jac, saveat.numpy(), prob.u0.numpy(), h)
    return torch.from_numpy(states), {"steps": steps}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    # 1. the order of the user's solver (and of pysciml's Trapezoid, the same method, as a check)
    prob, exact = P.nonlinear_exact(lam=10.0)
    dts = [0.02, 0.01, 0.005, 0.0025]
    mine = convergence(my_solver, prob, dts, reference=exact, name="trapezoid (NumPy, yours)")
    theirs = convergence(ps.Trapezoid(), prob, dts, reference=exact)
    print(mine, theirs, sep="\n")

    # 2. work-precision on the Brusselator-1D against the stored reference
    bruss = P.brusselator_1d(32, tspan=(0.0, 10.0))
    ref = P.reference("brusselator_1d", 10.0, N=32)
    solvers = {"trapezoid (NumPy, yours)": my_solver, "pysciml Rodas5P": ps.Rodas5P(),
               "pysciml KenCarp4": ps.KenCarp4(), "SciPy Radau": "Radau"}
    rtols = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7]
    timing = TimingRule(max_runs=3, slow_cap=30.0)
    wp = work_precision(bruss, solvers, rtols, reference=ref, atol_ratio=1e-4, timing=timing)
    print(wp)
    args.out.mkdir(parents=True, exist_ok=True)
    png = wp.plot(args.out / "own_solver.png", title="Brusselator-1D, N = 32, t1 = 10: error at t1 vs work")

    conv_rows = [[f"{d:g}", sci(a), sci(b)] for d, a, b in zip(dts, mine.errors, theirs.errors, strict=True)]
    wp_rows = [[r["solver"], f"{r['rtol']:g}", f"{r['time'] * 1e3:.3g}", r["runs"], sci(r["error"]), r["nf"],
                r["steps"]] for r in wp.records]
    tols = ", ".join(f"{r:g}" for r in rtols)
    mine_name = "trapezoid (NumPy, yours)"
    e_mine, nf_mine = wp.curve(mine_name, "nf")[0]  # the user's most accurate point
    at = {name: time_at_error(wp.curve(name, "nf"), e_mine) for name in solvers if name != mine_name}
    matched = "; ".join(f"{name}: {'outside its range' if n is None else f'{n:.0f}'}" for name, n in at.items())
    skipped = ", ".join(f"{n} at rtol {t:g}" for n, t in wp.skipped) or "none"
    text = f"""# Your own solver beside pysciml and SciPy

Produced by `python examples/own_solver.py` (see its docstring): a user's trapezoidal rule with Newton, in NumPy,
checked with `pysciml.devtools`. The machine was shared with other jobs and loaded while this ran: the times are
indicative only; the errors, f calls and steps do not depend on the load.

## Convergence order (Stuart-Landau oscillator, lam = 10, closed-form solution, error at t = 2)

Fitted order of the user's solver: **{mine.fit}** (theory 2); pysciml's `Trapezoid()` (the same
method): {theirs.fit}.

{md_table(["dt", "yours: error", "pysciml Trapezoid: error"], conv_rows)}

## Work-precision on the Brusselator-1D (N = 32, t1 = 10)

Reference: `pysciml.problems.reference("brusselator_1d", 10.0, N=32)`. rtol {tols}, atol = 1e-4 rtol;
the user's solver maps rtol to the fixed step sqrt(rtol) x span / 3. Error: max over components of
|u(t1) - ref|. Time: median of up to 3 runs after one warm-up per solver
(`TimingRule(max_runs=3, slow_cap=30.0)`: 3 runs when the first takes <= 2 s, else 1); points skipped by the
30 s budget: {skipped}. f calls: pysciml's and SciPy's counters; for the user's solver the calls of `prob.f`
(counted by the devtools).

![work-precision](own_solver.png)

At the user's most accurate point (error {sci(e_mine)}, {nf_mine} f calls) the others' f calls at the same error,
log-log interpolated on their curves (`pysciml.devtools.time_at_error` on the `(error, f calls)` points):
{matched}.

{md_table(["solver", "rtol", "time [ms]", "runs", "error", "f calls", "steps"], wp_rows)}

{machine_line(time.perf_counter() - began, "shared and loaded")}
"""
    write_text(args.out / "own_solver.md", text)
    print(f"wrote {png} and {args.out / 'own_solver.md'}")


if __name__ == "__main__":
    main()
