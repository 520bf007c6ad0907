"""Long rollouts of a learned separable Hamiltonian: Yoshida4 keeps the energy error bounded, Tsit5 drifts.

A :class:`~pysciml.models.SeparableHNN` with the inductive bias (``H = V(q) + T(p)`` exactly) is trained on the
Separable-HNN protocol's data (512 uniform samples of the pendulum box, 80/20 split, float64, the paper's
branch width and learning rate, early stopping), then the learned ``H`` is rolled out for ``--steps`` fixed steps
(1e5 by default) from a batch of librating initial states, in one batched solve per method:

* ``Yoshida4`` (4th-order symplectic composition) at step ``dt``;
* ``Tsit5`` (5th-order explicit Runge-Kutta, not symplectic) at the **same cost**, fixed steps.

Cost accounting (measured, ``sol.stats.nf``): every right-hand-side call of a ``HamiltonianProblem`` is one
gradient of the network (one forward and one backward pass). Yoshida4 makes 3 kicks (``dH/dq``) and 3 drifts
(``dH/dp``) per step, **6 calls**; a learned kinetic energy ``T(p)`` is not free, unlike ``p/m`` for a known
one. Tsit5 has 7 stages with the first same as the last, **6 calls** per step. So equal cost means equal ``dt``
(the "Tsit5, same cost" line). Counting only force evaluations (3 per Yoshida4 step, as for a known ``T``) gives
Tsit5 twice Yoshida4's step: the "Tsit5, 2 dt" line shows that accounting too.

Plotted: ``|H_learned(x_t) - H_learned(x_0)|`` (the quantity the symplectic method nearly conserves) and
``|H_true(x_t) - H_true(x_0)|`` (the physical energy error of the rollout, which also contains the model error),
mean over the batch, against ``t`` on log-log axes.

Run (reduced, a few minutes on a CPU):
    python examples/hnn_long_rollout.py
Longer training (the paper's epoch cap and patience):
    python examples/hnn_long_rollout.py --full
Writes docs/results/hnn_rollout.md and docs/results/hnn_rollout.png.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hnn_common import Stopwatch, add_common_flags, command_line, machine_line, md_table, pyplot, write_text  # noqa: E402

import pysciml as ps  # noqa: E402
from pysciml.analysis.hamiltonian import energy_drift, hamiltonian_mse, vector_field_error  # noqa: E402
from pysciml.models import SeparableHNN  # noqa: E402
from pysciml.models.hnn_training import fit_vector_field  # noqa: E402
from pysciml.problems.hamiltonian import HamiltonianSystem, hamiltonian_system  # noqa: E402


def train(system: HamiltonianSystem, epochs: int, patience: int, seed: int) -> tuple[SeparableHNN, dict[str, float]]:
    """The inductive-bias network on the Separable-HNN protocol's data, with its grid errors."""
    x, dx = system.sample(512, seed=seed)
    torch.manual_seed(seed)
    zero = torch.zeros(system.dim, dtype=torch.float64)
    model = SeparableHNN(system.n, (system.sep_width or 32,) * 2, biases="I", anchor=(zero, float(system.H(zero))))
    fit = fit_vector_field(model, x, dx, epochs=epochs, lr=system.lr or 1e-3, patience=patience, seed=seed)
    info = {"vf_error": vector_field_error(model.vector_field, system),
            "h_mse": hamiltonian_mse(model.hamiltonian, system), "epochs": fit.epochs, "seconds": fit.seconds}
    return model, info


def initial_states(system: HamiltonianSystem, batch: int) -> torch.Tensor:
    """``(batch, 2n)`` states at rest with positions spread over the inner 40% of the box, so that the
    trajectories stay inside the training box (for the pendulum: librations with amplitude <= 1.26 rad and
    |p| <= 1.18)."""
    low, high = system.box()
    n = system.n
    frac = torch.linspace(0.1, 0.4, batch, dtype=torch.float64)[:, None]
    q = 0.5 * (low[:n] + high[:n]) + frac * (high[:n] - low[:n])
    return torch.cat([q, torch.zeros_like(q)], dim=-1)


def save_times(dt: float, steps: int, points: int) -> torch.Tensor:
    """About ``points`` log-spaced multiples of ``dt`` in ``(0, steps dt]`` (steps land on them: no
    interpolation error in the saved states), plus ``t = 0``."""
    k = torch.unique(torch.logspace(0, math.log10(steps), points, dtype=torch.float64).round().long())
    return torch.cat([torch.zeros(1, dtype=torch.float64), k.to(torch.float64) * dt])


def rollout(model: SeparableHNN, x0: torch.Tensor, alg: ps.Algorithm, dt: float, steps: int,
            points: int) -> dict[str, object]:
    """One batched fixed-step solve over ``steps`` steps; the saved states ``(B, T, 2n)`` and the cost."""
    n = model.n
    t_end = steps * dt
    prob = model.as_problem(x0[:, :n], x0[:, n:], (0.0, t_end))
    t = save_times(dt, steps, points)
    with torch.no_grad(), Stopwatch() as sw:
        sol = ps.solve(prob, alg, dt=dt, adaptive=False, saveat=t, maxiters=steps + 10, throw=True)
    return {"t": sol.t, "x": sol.u.transpose(0, 1), "nf": sol.stats.nf, "steps": sol.stats.naccept,
            "seconds": sw.seconds}


def drift_stats(t: torch.Tensor, drift: torch.Tensor) -> tuple[float, float, float]:
    """Batch-mean drift: its maximum over the first 1% of the time, over the last 10%, and their ratio."""
    d = drift.mean(0)
    t_end = float(t[-1])
    early = float(d[(t > 0) & (t <= 0.01 * t_end)].max())
    late = float(d[t >= 0.9 * t_end].max())
    return early, late, late / early


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(p)
    p.add_argument("--system", default="pendulum", help="a separable registered system")
    p.add_argument("--steps", type=int, default=100_000, help="fixed steps of the Yoshida4 rollout")
    p.add_argument("--dt", type=float, default=0.2, help="Yoshida4's step")
    p.add_argument("--batch", type=int, default=8, help="initial states rolled out together")
    p.add_argument("--epochs", type=int, default=None, help="training epoch cap (3,000; 150,001 with --full)")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience (500; 4,000 with --full)")
    p.add_argument("--points", type=int, default=400, help="log-spaced save times")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="hnn_rollout", help="file stem of the results")
    args = p.parse_args(argv)
    args.command = command_line("hnn_long_rollout.py", argv)
    args.epochs = args.epochs or (150_001 if args.full else 3000)
    args.patience = args.patience or (4000 if args.full else 500)
    return args


def plot(runs: dict[str, dict[str, object]], path: Path, title: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    for label, r in runs.items():
        t = r["t"][1:]
        axes[0].loglog(t, r["drift_learned"].mean(0)[1:], label=label)
        axes[1].loglog(t, r["drift_true"].mean(0)[1:], label=label)
    axes[0].set_title("|H_learned(x_t) - H_learned(x_0)|, mean over the batch")
    axes[1].set_title("|H_true(x_t) - H_true(x_0)|, mean over the batch")
    for ax in axes:
        ax.set_xlabel("t")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Train, roll out, write the results; returns per method ``{"early", "late", "growth", "true_late", "nf",
    "seconds", ...}`` (``early``/``late``: batch-mean learned-energy drift over the first 1% / last 10% of time)."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    system = hamiltonian_system(args.system)
    with Stopwatch() as total:
        model, info = train(system, args.epochs, args.patience, args.seed)
        print(f"trained {system.name}: vector-field error {info['vf_error']:.3e}, H MSE {info['h_mse']:.3e}, "
              f"{info['epochs']} epochs in {info['seconds']:.1f} s", flush=True)
        x0 = initial_states(system, args.batch)
        methods = {"Yoshida4": (ps.Yoshida4(), args.dt, args.steps),
                   "Tsit5, same cost": (ps.Tsit5(), args.dt, args.steps),
                   "Tsit5, 2 dt": (ps.Tsit5(), 2 * args.dt, args.steps // 2)}
        runs: dict[str, dict[str, object]] = {}
        for label, (alg, dt, steps) in methods.items():
            r = rollout(model, x0, alg, dt, steps, args.points)
            with torch.no_grad():  # the network's H needs no graph here
                r["drift_learned"] = energy_drift(model.hamiltonian, r["x"]).detach()
                r["drift_true"] = energy_drift(system, r["x"]).detach()
            r["dt"], r["alg"] = dt, alg
            runs[label] = r
            print(f"{label:18s} dt={dt:g} steps={r['steps']} nf={r['nf']} ({r['nf'] / r['steps']:.2f}/step) "
                  f"{r['seconds']:.1f} s; final learned drift {float(r['drift_learned'].mean(0)[-1]):.3e}", flush=True)
    out: dict[str, dict[str, float]] = {}
    rows = []
    for label, r in runs.items():
        early, late, growth = drift_stats(r["t"], r["drift_learned"])
        t_early, t_late, t_growth = drift_stats(r["t"], r["drift_true"])
        out[label] = {"early": early, "late": late, "growth": growth, "true_early": t_early, "true_late": t_late,
                      "nf": float(r["nf"]), "steps": float(r["steps"]), "seconds": r["seconds"], "dt": r["dt"]}
        rows.append([label, f"{r['dt']:g}", f"{r['steps']:,}", f"{r['nf']:,}", f"{r['nf'] / r['steps']:.2f}",
                     f"{r['seconds']:.0f}", f"{early:.2e}", f"{late:.2e}", f"{growth:.3g}", f"{t_early:.2e}",
                     f"{t_late:.2e}"])
    t_end = args.steps * args.dt
    header = ["method", "dt", "steps", "RHS calls (nf)", "nf / step", "wall s", "learned-H drift, first 1% of t",
              "learned-H drift, last 10%", "growth (last / first)", "true-H error, first 1%", "true-H error, last 10%"]
    text = "\n".join([
        f"# Long rollouts of a learned separable H ({system.name}): Yoshida4 vs Tsit5 at the same cost", "",
        f"Produced by `{args.command}`. Model: SeparableHNN with "
        f"the inductive bias, branch width {system.sep_width}, trained on 512 uniform samples of the "
        f"{system.name} box (Separable-HNN protocol, epoch cap {args.epochs:,}, patience {args.patience:,}): "
        f"{info['epochs']} epochs, grid vector-field error {info['vf_error']:.3e}, H MSE {info['h_mse']:.3e}.", "",
        f"Rollout: {args.batch} initial states at rest (positions over the inner 40% of the box, so the orbits stay "
        f"in the training box), one batched fixed-step solve per method over t = [0, {t_end:g}], "
        f"{args.steps:,} Yoshida4 steps of dt = {args.dt:g}, float64, no gradients. Drifts are batch means; "
        "'first 1%' / 'last 10%' are their maxima over those parts of the time span.", "",
        "Cost: nf counts right-hand-side calls, each one gradient (forward + backward) of the network. Yoshida4: "
        "3 kicks (dH/dq) + 3 drifts (dH/dp) = 6 per step (the learned T(p) is a network, so the drift is not free); "
        "Tsit5: 7 stages, first same as last, 6 per step. Equal cost is therefore equal dt ('Tsit5, same cost'); "
        "'Tsit5, 2 dt' is the accounting that counts only force evaluations (3 per Yoshida4 step).", "",
        md_table(header, rows), "",
        "Learned-H drift: " + "; ".join(f"{k} grows by {v['growth']:.3g}x from the first 1% to the last 10% of the "
                                        "time" for k, v in out.items()) + ".", "",
        machine_line(total.seconds), "",
        "![energy error vs time](hnn_rollout.png)", "",
    ])
    md = write_text(args.out / f"{args.name}.md", text)
    png = args.out / f"{args.name}.png"
    plot(runs, png, f"learned {system.name} H, {args.steps:,} Yoshida4 steps (dt = {args.dt:g}) vs Tsit5 at equal nf")
    print(text)
    print(f"wrote {md} and {png}")
    return out


if __name__ == "__main__":
    main()
