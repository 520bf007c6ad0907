"""Separable Hamiltonian neural networks: the plain HNN against the seven combinations of the three biases.

Reproduces Khoo, Wu, Low & Bressan, "Separable Hamiltonian Neural Networks" (arXiv 2309.01069; the authors'
code is github.com/zykhoo/SeparableNNs). Protocol, as in the paper and its code:

* data: 512 states uniform in the system's box with their exact vector field, float64, no noise; 80/20
  train/validation split (``fit_vector_field``), seeds 0, 1, ... (the seed draws the samples, the split, the
  minibatch order and the network's initialisation; every variant of one seed sees the same data and split);
* networks: two-hidden-layer softplus MLPs, the paper's widths (``HamiltonianSystem.hnn_width`` for the HNN and
  the O/L/LO variants, ``sep_width`` per branch for the inductive ones) and learning rates (``.lr``); the loss
  anchors the constant, ``(H(0) - H_true(0))^2`` (the authors' code); Adam, minibatches of n_train/5, gradient
  norm clipped at 1, early stopping on the validation loss (delta 1e-5) with the best weights restored;
* biases: O = one cyclic-shift augmented copy of the training split (the authors' scripts), L = penalty
  ``1.0 * mean |d2H/dq dp|^2``, I = ``H = V(q) + T(p)`` by two conjoined branches (placement "body");
* metrics: mean relative L2 vector-field error and MSE of ``H`` (up to the constant) on the 10-point-per-
  dimension grid of the box (the full 10^d grid for d <= 4; for d = 6 a scrambled Sobol sample of 1e5 points of
  the same box by default, the full 10^6 grid with ``--full``), training time and epochs; mean (standard error)
  over seeds and the improvement over the HNN in percent, as in the paper's tables.

Run (reduced: 5 seeds, at most 200 epochs, patience 50; about 5 minutes on 2 idle CPU cores; ``--cache`` keeps
each finished run so that several processes can share the work, e.g. one per ``--systems``):
    python examples/separable_hnn.py
The paper's size (20 seeds, 150,001 epochs, patience 4,000, full 10^6 grid for d = 6; days on a CPU):
    python examples/separable_hnn.py --full
Writes docs/results/separable_hnn.md and docs/results/separable_hnn.png (``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hnn_common import (  # noqa: E402
    Stopwatch,
    add_common_flags,
    command_line,
    machine_line,
    md_table,
    mean_sem_str,
    pyplot,
    write_text,
)

from pysciml.analysis.hamiltonian import hamiltonian_mse, mean_sem, vector_field_error  # noqa: E402
from pysciml.models import HNN, SeparableHNN  # noqa: E402
from pysciml.models.hnn_training import fit_vector_field  # noqa: E402
from pysciml.problems.hamiltonian import HamiltonianSystem, hamiltonian_system  # noqa: E402

CACHE = Path(__file__).resolve().parent / "output" / "separable_hnn_runs"
VARIANTS = ("HNN", "O", "L", "I", "OI", "LO", "IL", "OLI")
SYSTEMS = ("pendulum", "henon_heiles", "toda3", "spring_chain3")
METRICS = ("vf_error", "h_mse")


def make_model(system: HamiltonianSystem, variant: str) -> HNN:
    """The network of one variant with the paper's width, anchored at ``x = 0``."""
    zero = torch.zeros(system.dim, dtype=torch.float64)
    anchor = (zero, float(system.H(zero)))
    if variant == "HNN":
        return HNN(system.dim, (system.hnn_width,) * 2, anchor=anchor)
    width = system.sep_width if "I" in variant else system.hnn_width
    return SeparableHNN(system.n, (width,) * 2, biases=variant, anchor=anchor)


def evaluate(model: HNN, system: HamiltonianSystem, grid_max: int) -> dict[str, float]:
    return {"vf_error": vector_field_error(model.vector_field, system, max_points=grid_max),
            "h_mse": hamiltonian_mse(model.hamiltonian, system, max_points=grid_max)}


def run_one(system: HamiltonianSystem, variant: str, seed: int, epochs: int, patience: int, grid_max: int,
            cache: Path | None = None) -> dict[str, float]:
    """Train one variant on one seed's data; errors before and after training, time and epochs. With ``cache``
    (a folder), a run with the same settings that finished before is read back instead of repeated (one JSON
    file per run, so that several processes can share the work, e.g. one per system)."""
    path = None
    if cache is not None:
        path = cache / f"{system.name}_{variant}_s{seed}_e{epochs}_p{patience}_g{grid_max}.json"
        if path.exists():
            return json.loads(path.read_text())
    start = time.perf_counter()
    x, dx = system.sample(512, seed=seed)
    torch.manual_seed(seed)
    model = make_model(system, variant)
    before = evaluate(model, system, grid_max)
    fit = fit_vector_field(model, x, dx, epochs=epochs, lr=system.lr, patience=patience, min_delta=1e-5,
                           clip=1.0, seed=seed)
    after = evaluate(model, system, grid_max)
    out = {**after, "vf_error_init": before["vf_error"], "h_mse_init": before["h_mse"], "seconds": fit.seconds,
           "epochs": fit.epochs, "best_epoch": fit.best_epoch, "wall": time.perf_counter() - start}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
    return out


def summarize(results: dict[tuple[str, str], list[dict[str, float]]]) -> dict[tuple[str, str], dict[str, float]]:
    """Mean and standard error of each metric per (system, variant), and the improvement over the HNN (%)."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key, runs in results.items():
        row: dict[str, float] = {}
        for k in (*METRICS, "vf_error_init", "seconds", "epochs"):
            row[k], row[k + "_sem"] = mean_sem([r[k] for r in runs])
        out[key] = row
    for (name, _variant), row in out.items():
        base = out.get((name, "HNN"))
        for k in METRICS:
            row[k + "_gain"] = 100.0 * (base[k] - row[k]) / base[k] if base else float("nan")
    return out


def headline(summary: dict[tuple[str, str], dict[str, float]], systems: list[str], variants: list[str]) -> list[str]:
    """Whether our numbers agree with the paper's two claims, computed from the table."""
    lines = []
    sep = [v for v in variants if v != "HNN"]
    if "HNN" in variants and sep:
        losers = [f"{v} on {s} ({m})" for s in systems for v in sep for m in METRICS
                  if summary[(s, v)][m] >= summary[(s, "HNN")][m]]
        wins = len(systems) * len(sep) * len(METRICS) - len(losers)
        lines.append(f"- Paper: every separable variant beats the HNN on both errors. Here: {wins} of "
                     f"{wins + len(losers)} (system, variant, metric) comparisons are won by the separable variant"
                     + (". Not won: " + ", ".join(losers) + "." if losers else " (all)."))
    ranks = {v: 0.0 for v in variants}
    for s in systems:
        for m in METRICS:
            vals = {v: summary[(s, v)][m] for v in variants}
            for v in variants:  # ties (IL = I, OLI = OI exactly) share the mean of their ranks
                better = sum(vals[u] < vals[v] for u in variants)
                equal = sum(vals[u] == vals[v] for u in variants)
                ranks[v] += (better + (equal + 1) / 2) / (len(systems) * len(METRICS))
    order = sorted(variants, key=ranks.get)
    best = [v for v in order if ranks[v] == ranks[order[0]]]
    lines.append("- Paper: OI is best overall. Here, mean rank over systems and both errors (1 = best): "
                 + ", ".join(f"{v} {ranks[v]:.2f}" for v in order) + f"; best: **{' = '.join(best)}**.")
    if {"I", "IL"} <= set(variants) or {"OI", "OLI"} <= set(variants):
        lines.append("- With the inductive bias the learning-bias penalty is identically zero (d2H/dq dp = 0 by "
                     "construction), so IL trains exactly as I and OLI as OI: the same errors to the last digit, "
                     "only the time differs (the penalty's second derivatives are still computed).")
    return lines


def report(summary: dict[tuple[str, str], dict[str, float]], systems: list[str], variants: list[str],
           args: argparse.Namespace, seconds: float, grid_note: str, elapsed: float) -> str:
    rows = []
    for s in systems:
        for v in variants:
            r = summary[(s, v)]
            gain = "" if v == "HNN" else f"{r['vf_error_gain']:+.0f}% / {r['h_mse_gain']:+.0f}%"
            rows.append([s, v, f"{r['vf_error']:.3e} ({r['vf_error_sem']:.1e})",
                         f"{r['h_mse']:.3e} ({r['h_mse_sem']:.1e})", gain, f"{r['vf_error_init']:.2e}",
                         f"{r['seconds']:.1f}", f"{r['epochs']:.0f}"])
    header = ["system", "variant", "vector-field rel. L2 error", "H MSE", "improvement over HNN (vf / H)",
              "vf error untrained", "train s", "epochs"]
    size = ("the paper's size" if args.full else "reduced size")
    lines = [
        "# Separable HNN (Khoo et al., arXiv 2309.01069): HNN vs the biases O, L, I and their combinations", "",
        f"Produced by `{args.command}` ({size}): {args.seeds} seeds, "
        f"epoch cap {args.epochs:,}, early-stopping patience {args.patience:,} epochs (delta 1e-5, best weights "
        "restored). The paper: 20 seeds, 150,001 epochs, patience 4,000. Everything else as in the paper: 512 "
        "uniform samples, 80/20 split, float64, two-hidden-layer softplus MLPs of the paper's widths and learning "
        "rates, Adam, batch n_train/5, gradient clip 1, H anchored at 0; O = 1 augmented copy, L weight 1, "
        "I = body placement.", "",
        f"Errors: mean (standard error) over seeds. {grid_note} Improvement = (HNN - variant) / HNN of the means. "
        "The reduced run stops most trainings at the epoch cap, long before the paper's early stopping would, so "
        "its errors are those of shorter trainings.", "",
        md_table(header, rows), "",
        "## Agreement with the paper's headline", "",
        *headline(summary, systems, variants), "",
        machine_line(seconds).replace("Wall time of this run", "Compute of this run (sum of the wall times of "
                                      "its trainings and evaluations, which ran in one or more processes)")
        + f" The process that wrote this file ran {elapsed:,.0f} s.", "",
        "![vector-field error per variant](separable_hnn.png)", "",
    ]
    return "\n".join(lines)


def plot(summary: dict[tuple[str, str], dict[str, float]], systems: list[str], variants: list[str], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(variants)
    for ax, metric, title in zip(axes, METRICS, ("vector-field relative L2 error", "H MSE (up to a constant)"),
                                 strict=True):
        for i, v in enumerate(variants):
            xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(systems))]
            ys = [summary[(s, v)][metric] for s in systems]
            es = [summary[(s, v)][metric + "_sem"] for s in systems]
            es = [e if e == e else 0.0 for e in es]
            ax.bar(xs, ys, width, yerr=es, label=v, capsize=2)
        ax.set_yscale("log")
        ax.set_xticks(range(len(systems)), systems)
        ax.set_title(title)
    axes[0].legend(ncol=4, fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(p)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), help="registered system names")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), help="HNN and bias letters, e.g. OI")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5; 20 with --full)")
    p.add_argument("--epochs", type=int, default=None, help="epoch cap (default 200; 150,001 with --full)")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience (50; 4,000 with --full)")
    p.add_argument("--name", default="separable_hnn", help="file stem of the results")
    p.add_argument("--cache", action="store_true",
                   help=f"keep each finished run in {CACHE} and reuse it (to split the work over processes)")
    args = p.parse_args(argv)
    args.command = command_line("separable_hnn.py", argv)
    args.seeds = args.seeds or (20 if args.full else 5)
    args.epochs = args.epochs or (150_001 if args.full else 200)
    args.patience = args.patience or (4000 if args.full else 50)
    return args


def main(argv: list[str] | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """Run the comparison; returns the summary ``{(system, variant): {metric: mean, metric_sem, ...}}``."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    grid_max = 10**6 if args.full else 100_000
    systems = [hamiltonian_system(s).name for s in args.systems]
    dims = {s: hamiltonian_system(s).dim for s in systems}
    big = [s for s in systems if 10 ** dims[s] > grid_max]
    grid_note = ("Grid: the full 10^d grid" + (f" for {', '.join(s for s in systems if s not in big)}" if big else "")
                 + (f"; for {', '.join(big)} (d = 6) a scrambled Sobol sample of {grid_max:,} points of the box"
                    if big else "") + ".")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with Stopwatch() as sw:
        for name in systems:
            system = hamiltonian_system(name)
            for variant in args.variants:
                runs = [run_one(system, variant, seed, args.epochs, args.patience, grid_max,
                                CACHE if args.cache else None) for seed in range(args.seeds)]
                results[(name, variant)] = runs
                m, _ = mean_sem([r["vf_error"] for r in runs])
                print(f"{name:14s} {variant:4s} vf error {mean_sem_str([r['vf_error'] for r in runs])}  "
                      f"H MSE {mean_sem_str([r['h_mse'] for r in runs])}  "
                      f"{sum(r['seconds'] for r in runs) / len(runs):.1f} s/seed", flush=True)
    summary = summarize(results)
    compute = sum(r["wall"] for runs in results.values() for r in runs)
    text = report(summary, systems, list(args.variants), args, compute, grid_note, sw.seconds)
    md = write_text(args.out / f"{args.name}.md", text)
    png = args.out / f"{args.name}.png"
    plot(summary, systems, list(args.variants), png)
    print(text)
    print(f"wrote {md} and {png}")
    return summary


if __name__ == "__main__":
    main()
