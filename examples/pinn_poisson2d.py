"""Issue 14 (a): 2-D elliptic problems, PINN (Adam + L-BFGS) against LySep (layer separation), several seeds.

Problems on the unit square, exact solution ``u* = sin(pi x) sin(pi y)`` (Dirichlet data ``g = u*`` = 0):

* ``poisson``: ``-Lap u = 2 pi^2 u*``;
* ``variable``: ``-div(a grad u) = f`` with ``a(x, y) = 1 + x^2 + y^2`` and ``f = 2 pi^2 a u* - 2x u*_x - 2y u*_y``.

Both methods see the same points (per seed: 400 scrambled-Sobol' interior points and 160 uniform boundary points),
the same network ``[2, 20, 20, 1]`` tanh with the same Xavier initialisation (``pysciml.pinn.lysep.mlp(seed)``),
float64, and the same objective ``J_e = mean r^2 + 10 mean (u - g)^2``:

* PINN: ``pysciml.pinn.PINN`` + ``train``: Adam (lr 1e-3) then L-BFGS (strong Wolfe);
* LySep: ``pysciml.pinn.lysep.LySep`` with the settings of docs/lysep.md's examples (penalties 1, grown by 1.1
  per sweep up to 1e4, self-adaptive layer weights), no pretraining, a fixed number of sweeps.

Reported per method: final ``J_e`` of the plain network, relative L2 error on a 51 x 51 grid, wall time; mean,
standard deviation, min and max over seeds; loss against iterations and against time (png). LySep's "iteration"
is one sweep over all layers (closed-form solves), a PINN iteration is one optimiser step: the time axis is the
fair one.

Run (reduced: 10 seeds, 500 Adam + 200 L-BFGS iterations, 50 LySep sweeps; measured 70 s to 15 minutes on a
shared 2-core CPU, depending on its load):
    python examples/pinn_poisson2d.py
Larger budgets (10 seeds, 5000 Adam + 2000 L-BFGS, 300 sweeps):
    python examples/pinn_poisson2d.py --full
Writes docs/results/pinn_poisson2d.md and .png (``--out`` to change the folder).
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
    grid,
    machine_line,
    md_table,
    plot_histories,
    points,
    pyplot,
    run_lysep,
    run_pinn,
    sci,
    spread,
    write_text,
)

from pysciml.pinn import Box, gradient, laplacian  # noqa: E402
from pysciml.pinn.lysep import LinearPDE  # noqa: E402

PI = math.pi
WIDTHS = (2, 20, 20, 1)
BOUNDARY_WEIGHT = 10.0


def exact(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(PI * x[:, 0]) * torch.sin(PI * x[:, 1])


def exact_grad(x: torch.Tensor) -> torch.Tensor:
    sx, sy, cx, cy = (torch.sin(PI * x[:, 0]), torch.sin(PI * x[:, 1]), torch.cos(PI * x[:, 0]),
                      torch.cos(PI * x[:, 1]))
    return PI * torch.stack([cx * sy, sx * cy], 1)


def diffusion(x: torch.Tensor) -> torch.Tensor:
    return 1 + x[:, 0] ** 2 + x[:, 1] ** 2


def variable_source(x: torch.Tensor) -> torch.Tensor:
    return 2 * PI**2 * diffusion(x) * exact(x) - (2 * x * exact_grad(x)).sum(1)


def poisson_residual(x: torch.Tensor, u: object) -> torch.Tensor:
    return -laplacian(u, x).reshape(-1) - 2 * PI**2 * exact(x)


def variable_residual(x: torch.Tensor, u: object) -> torch.Tensor:
    lap = laplacian(u, x).reshape(-1)
    grad = gradient(u, x).reshape(x.shape[0], -1)
    return -(diffusion(x) * lap + (2 * x * grad).sum(1)) - variable_source(x)


def problems() -> dict[str, Problem]:
    box = Box([0.0, 0.0], [1.0, 1.0])
    return {
        "poisson": Problem("poisson", 2, exact, LinearPDE.poisson(lambda x: 2 * PI**2 * exact(x)), poisson_residual,
                           box),
        "variable": Problem("variable", 2, exact,
                            LinearPDE(variable_source, diffusion=diffusion, diffusion_grad=lambda x: 2 * x),
                            variable_residual, box),
    }


def run_seed(problem: Problem, seed: int, args: argparse.Namespace) -> tuple[Run, Run]:
    xi, xb = points(problem, args.n_interior, args.n_boundary, seed)
    x_test = grid([0.0, 0.0], [1.0, 1.0], 51)
    pinn = run_pinn(problem, WIDTHS, xi, xb, x_test, seed=seed, adam_iters=args.adam, lbfgs_iters=args.lbfgs,
                    boundary_weight=BOUNDARY_WEIGHT, log_every=10)
    lysep = run_lysep(problem, WIDTHS, xi, xb, x_test, seed=seed, iterations=args.sweeps,
                      boundary_weight=BOUNDARY_WEIGHT, penalty_growth=1.1)
    return pinn, lysep


def report(runs: dict[str, dict[str, list[Run]]], args: argparse.Namespace, elapsed: float) -> str:
    rows = []
    for pname, by_method in runs.items():
        for method, rs in by_method.items():
            rows.append([pname, method, len(rs), spread([r.loss for r in rs]), spread([r.rel_l2 for r in rs]),
                         f"{spread([r.seconds for r in rs], 1)}"])
    cons = []
    for pname, by_method in runs.items():
        ly = by_method["LySep"]
        cons.append([pname, sci(max(r.extra["max_mismatch"] for r in ly)),
                     sci(max(r.extra["residual_difference_rms"] for r in ly))])
    dips = []
    for pname, by_method in runs.items():
        ly = by_method["LySep"]
        best = [min(ly_run.history, key=lambda h: h["loss"]) for ly_run in ly]
        t_end = [r.history[-1]["time"] for r in ly]
        pinn_at = [min((h["loss"] for h in p.history if h["time"] <= t), default=p.history[0]["loss"])
                   for p, t in zip(by_method["PINN"], t_end, strict=True)]
        dips.append(f"{pname}: LySep's lowest J_e along the run {spread([b['loss'] for b in best])} at sweep "
                    f"{sorted(b['iter'] for b in best)[len(best) // 2]:.0f} (median), final "
                    f"{spread([r.loss for r in ly])}; "
                    f"the PINN's best J_e within LySep's wall time {spread(pinn_at)}")
    wins = []
    for pname, by_method in runs.items():
        p, q = by_method["PINN"], by_method["LySep"]
        n = sum(1 for a, b in zip(p, q, strict=True) if b.rel_l2 < a.rel_l2)
        wins.append(f"{pname}: LySep has the lower error in {n} of {len(p)} seeds")
    verdicts = []
    for pname, by_method in runs.items():
        mp = sum(r.rel_l2 for r in by_method["PINN"]) / len(by_method["PINN"])
        ml = sum(r.rel_l2 for r in by_method["LySep"]) / len(by_method["LySep"])
        lp = sum(r.loss for r in by_method["PINN"]) / len(by_method["PINN"])
        ll = sum(r.loss for r in by_method["LySep"]) / len(by_method["LySep"])
        verdicts.append(f"{pname}: mean error PINN {sci(mp)} vs LySep {sci(ml)}, mean J_e PINN {sci(lp)} vs "
                        f"LySep {sci(ll)} ({'LySep' if ml < mp else 'PINN'} lower error)")
    size = "--full" if args.full else "reduced size"
    lines = [
        "# PINN vs LySep on 2-D elliptic problems (issue 14, example a)",
        "",
        f"Produced by `python examples/pinn_poisson2d.py{' --full' if args.full else ''}` ({size}). "
        f"Unit square, u* = sin(pi x) sin(pi y); `poisson`: -Lap u = f; `variable`: -div((1 + x^2 + y^2) grad u) = f. "
        f"Network {list(WIDTHS)} tanh, float64, same Xavier initialisation and points for both methods per seed "
        f"({args.n_interior} Sobol' interior, {args.n_boundary} boundary points); objective J_e = mean r^2 + "
        f"{BOUNDARY_WEIGHT:g} mean (u - g)^2. PINN: {args.adam} Adam (lr 1e-3) + {args.lbfgs} L-BFGS iterations. "
        f"LySep: {args.sweeps} sweeps, penalties 1 grown x1.1 per sweep (cap 1e4), self-adaptive layer weights, "
        "no pretraining. Relative L2 error on a 51 x 51 grid. Entries: mean ± std [min, max] over seeds.",
        "",
        md_table(["problem", "method", "seeds", "final J_e", "relative L2", "time [s]"], rows),
        "",
        "LySep consistency after training (largest over seeds): network vs auxiliary variables, and rms of the "
        "difference of the network's and the auxiliaries' PDE residuals.",
        "",
        md_table(["problem", "max mismatch", "rms residual difference"], cons),
        "",
        "- " + "; ".join(wins) + ".",
        "- J_e along the runs (the PINN's is logged every 10 iterations): " + "; ".join(dips) + ".",
        "- What we see: " + "; ".join(verdicts) + ". The paper reports LySep below the PINN in loss and error; "
        "docs/lysep.md states how its formulation was reconstructed. Loss curves: "
        f"{args.name}.png.",
        "",
        machine_line(elapsed),
        "",
    ]
    return "\n".join(lines)


def plot(runs: dict[str, dict[str, list[Run]]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 4 * len(runs)), squeeze=False)
    for row, (pname, by_method) in enumerate(runs.items()):
        ax_it, ax_t = axes[row]
        plot_histories(ax_it, ax_t, by_method["PINN"], "tab:blue", "PINN (Adam + L-BFGS)")
        plot_histories(ax_it, ax_t, by_method["LySep"], "tab:red", "LySep (sweeps)")
        ax_it.set_xlabel("iteration (PINN: optimiser step; LySep: sweep)")
        ax_t.set_xlabel("wall time [s]")
        for ax in (ax_it, ax_t):
            ax.set_ylabel("J_e of the network")
            ax.set_title(pname)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(p)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--adam", type=int, default=None, help="Adam iterations (500; 5000 with --full)")
    p.add_argument("--lbfgs", type=int, default=None, help="L-BFGS iterations (200; 2000 with --full)")
    p.add_argument("--sweeps", type=int, default=None, help="LySep sweeps (50; 300 with --full)")
    p.add_argument("--n-interior", type=int, default=400)
    p.add_argument("--n-boundary", type=int, default=160)
    p.add_argument("--problems", default="poisson,variable")
    p.add_argument("--name", default="pinn_poisson2d", help="file stem of the results")
    args = p.parse_args(argv)
    args.adam = args.adam if args.adam is not None else (5000 if args.full else 500)
    args.lbfgs = args.lbfgs if args.lbfgs is not None else (2000 if args.full else 200)
    args.sweeps = args.sweeps if args.sweeps is not None else (300 if args.full else 50)
    return args


def main(argv: list[str] | None = None) -> dict[str, dict[str, list[Run]]]:
    """Run the comparison; returns ``{problem: {"PINN": [Run per seed], "LySep": [...]}}``."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    probs = problems()
    runs: dict[str, dict[str, list[Run]]] = {}
    for pname in args.problems.split(","):
        runs[pname] = {"PINN": [], "LySep": []}
        for seed in range(args.seeds):
            pinn, lysep = run_seed(probs[pname], seed, args)
            runs[pname]["PINN"].append(pinn)
            runs[pname]["LySep"].append(lysep)
            print(f"{pname} seed {seed}: PINN J_e {pinn.loss:.2e} err {pinn.rel_l2:.2e} ({pinn.seconds:.1f} s) | "
                  f"LySep J_e {lysep.loss:.2e} err {lysep.rel_l2:.2e} ({lysep.seconds:.1f} s)", flush=True)
    text = report(runs, args, time.perf_counter() - start)
    write_text(args.out / f"{args.name}.md", text)
    plot(runs, args.out / f"{args.name}.png")
    print(text)
    return runs


if __name__ == "__main__":
    main()
