"""Issue 14 (b): high-dimensional Poisson, PINN (Adam + L-BFGS) against LySep.

``-Lap u = (pi^2 / 4) sum_i sin(pi x_i / 2)`` on ``[0, 1]^d`` with ``u = u*`` on the boundary, exact solution
``u* = sum_i sin(pi x_i / 2)``, for ``d = 5, 10, 20`` (``--full``: also ``d = 100``).

Both methods: the same points (scrambled Sobol' interior, uniform on the faces of the cube), the same network
``[d, 50, 50, 1]`` tanh with the same initialisation, float64, objective ``J_e = mean r^2 + 10 mean (u - g)^2``.
The PINN's Laplacian is exact (``pysciml.pinn.laplacian``, the forward Laplacian through the MLP); LySep carries
gradients (``d`` numbers per neuron and point) and Laplacians as auxiliary variables. Relative L2 error on 4096
uniform random test points; wall time.

Run (reduced: d = 5, 10, 20; 1 seed; 500 interior / 200 boundary points; 300 Adam + 100 L-BFGS; 20 sweeps;
30 s on an idle, 4 minutes on a loaded 2-core CPU):
    python examples/pinn_highdim.py
``--full``: d = 5, 10, 20, 100; 3 seeds; 4000 / 2000 points; 5000 Adam + 2000 L-BFGS; 200 sweeps (long).
Writes docs/results/pinn_highdim.md (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pinn_common import (  # noqa: E402
    Problem,
    Run,
    add_common_flags,
    machine_line,
    md_table,
    points,
    run_lysep,
    run_pinn,
    sci,
    spread,
    write_text,
)

from pysciml.pinn import Box, laplacian  # noqa: E402
from pysciml.pinn.lysep import LinearPDE  # noqa: E402

PI = math.pi
BOUNDARY_WEIGHT = 10.0
HIDDEN = (50, 50)


def exact(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(PI * x / 2).sum(1)


def source(x: torch.Tensor) -> torch.Tensor:
    return PI**2 / 4 * exact(x)


def residual(x: torch.Tensor, u: object) -> torch.Tensor:
    return -laplacian(u, x).reshape(-1) - source(x)


def problem(d: int) -> Problem:
    return Problem(f"d={d}", d, exact, LinearPDE.poisson(source), residual, Box([0.0] * d, [1.0] * d))


def run_dim(d: int, seed: int, args: argparse.Namespace) -> tuple[Run, Run]:
    prob = problem(d)
    xi, xb = points(prob, args.n_interior, args.n_boundary, seed)
    x_test = torch.rand(4096, d, dtype=torch.float64, generator=torch.Generator().manual_seed(10_000 + seed))
    widths = (d, *HIDDEN, 1)
    pinn = run_pinn(prob, widths, xi, xb, x_test, seed=seed, adam_iters=args.adam, lbfgs_iters=args.lbfgs,
                    boundary_weight=BOUNDARY_WEIGHT, log_every=50)
    lysep = run_lysep(prob, widths, xi, xb, x_test, seed=seed, iterations=args.sweeps,
                      boundary_weight=BOUNDARY_WEIGHT, penalty_growth=1.1, record_every=5)
    return pinn, lysep


def report(runs: dict[int, dict[str, list[Run]]], args: argparse.Namespace, elapsed: float) -> str:
    rows = []
    for d, by_method in runs.items():
        for method, rs in by_method.items():
            rows.append([d, method, len(rs), spread([r.loss for r in rs]), spread([r.rel_l2 for r in rs]),
                         spread([r.seconds for r in rs], 1)])
    verdicts = []
    for d, by_method in runs.items():
        ep = sum(r.rel_l2 for r in by_method["PINN"]) / len(by_method["PINN"])
        el = sum(r.rel_l2 for r in by_method["LySep"]) / len(by_method["LySep"])
        verdicts.append(f"d = {d}: {'LySep' if el < ep else 'PINN'} lower error (PINN {sci(ep)}, LySep {sci(el)})")
    lines = [
        "# High-dimensional Poisson: PINN vs LySep (issue 14, example b)",
        "",
        f"Produced by `python examples/pinn_highdim.py{' --full' if args.full else ''}`. u* = sum_i sin(pi x_i / 2) "
        f"on [0, 1]^d, -Lap u = (pi^2/4) u*, Dirichlet data u*. Network [d, {', '.join(map(str, HIDDEN))}, 1] tanh, "
        f"float64, same initialisation and points for both ({args.n_interior} Sobol' interior, {args.n_boundary} "
        f"boundary points); J_e = mean r^2 + {BOUNDARY_WEIGHT:g} mean (u - g)^2. PINN: {args.adam} Adam (lr 1e-3) + "
        f"{args.lbfgs} L-BFGS iterations, exact Laplacian. LySep: {args.sweeps} sweeps, penalties 1 grown x1.1 per "
        f"sweep, self-adaptive weights. Relative L2 error on 4096 uniform test points. Seeds: {args.seeds} "
        "(entries: mean ± std [min, max] when more than one).",
        "",
        md_table(["d", "method", "seeds", "final J_e", "relative L2", "time [s]"], rows),
        "",
        "- What we see: " + "; ".join(verdicts) + ". The paper reports LySep ahead on high-dimensional PDEs.",
        "",
        machine_line(elapsed),
        "",
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(p)
    p.add_argument("--dims", default=None, help="comma-separated dimensions (5,10,20; 5,10,20,100 with --full)")
    p.add_argument("--seeds", type=int, default=None, help="seeds (1; 3 with --full)")
    p.add_argument("--adam", type=int, default=None)
    p.add_argument("--lbfgs", type=int, default=None)
    p.add_argument("--sweeps", type=int, default=None)
    p.add_argument("--n-interior", type=int, default=None)
    p.add_argument("--n-boundary", type=int, default=None)
    p.add_argument("--name", default="pinn_highdim")
    a = p.parse_args(argv)
    full = a.full
    a.dims = [int(v) for v in (a.dims or ("5,10,20,100" if full else "5,10,20")).split(",")]
    a.seeds = a.seeds or (3 if full else 1)
    a.adam = a.adam if a.adam is not None else (5000 if full else 300)
    a.lbfgs = a.lbfgs if a.lbfgs is not None else (2000 if full else 100)
    a.sweeps = a.sweeps if a.sweeps is not None else (200 if full else 20)
    a.n_interior = a.n_interior or (4000 if full else 500)
    a.n_boundary = a.n_boundary or (2000 if full else 200)
    return a


def main(argv: list[str] | None = None) -> dict[int, dict[str, list[Run]]]:
    """Run the comparison; returns ``{d: {"PINN": [Run per seed], "LySep": [...]}}``."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    runs: dict[int, dict[str, list[Run]]] = {}
    for d in args.dims:
        runs[d] = {"PINN": [], "LySep": []}
        for seed in range(args.seeds):
            pinn, lysep = run_dim(d, seed, args)
            runs[d]["PINN"].append(pinn)
            runs[d]["LySep"].append(lysep)
            print(f"d={d} seed {seed}: PINN J_e {pinn.loss:.2e} err {pinn.rel_l2:.2e} ({pinn.seconds:.1f} s) | "
                  f"LySep J_e {lysep.loss:.2e} err {lysep.rel_l2:.2e} ({lysep.seconds:.1f} s)", flush=True)
    text = report(runs, args, time.perf_counter() - start)
    write_text(args.out / f"{args.name}.md", text)
    print(text)
    return runs


if __name__ == "__main__":
    main()
