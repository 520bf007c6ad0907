"""Issue 16, reproduction (a): autoencoder vs PCA reconstruction error against latent size on
Kuramoto-Sivashinsky (KS) and FitzHugh-Nagumo (FHN) lattice data.

Hamid et al. (arXiv 2407.00011), KS notebook: 120-point state, latent size 8, autoencoder reconstruction MSE
3.0e-4 vs PCA 3.9e-2. Here both are measured on held-out trajectories for latent sizes 1..10.

Choices (all printed into the results file):

* Data from pysciml's own solvers (``ks_dataset``: KenCarp4 IMEX, finite differences, L = 22;
  ``fhn_dataset``: Rodas5P, 101 nodes, L = 20, the issue's parameters). Random smooth initial conditions per
  trajectory; a transient is dropped for KS (chaotic attractor); FHN keeps its transient (the relaxation is the
  dynamics of interest).
* Train/test split by trajectory: the last ``--test-traj`` trajectories are never seen by PCA or the AE.
* Each state is scaled by one scalar (mean and std of the training snapshots) before fitting; errors are
  reported in the original units: ``MSE = mean over test snapshots and grid values of (x_hat - x)^2``, and
  relative: that MSE over the test data's variance.
* Autoencoder: ``pysciml.models.Autoencoder`` (fully connected, ReLU, widths ``--hidden``), float32, Adam with
  learning rate ``--lr`` and a cosine decay over ``--epochs`` epochs, mini-batches of ``--batch``, seed per
  latent size. PCA: ``pysciml.models.PCA`` on the same training snapshots.

Reduced default (a few minutes on one CPU thread): 40 trajectories per system (32 train, 8 test); KS with N = 64
sampled every 0.5 for 100 steps after a transient of 40; FHN (202 states) every 2.0 for 100 steps from t = 0; AE
encoder widths (256, 128), 100 epochs, lr 1e-3, batch 64. ``--full``: KS with N = 120 and dt = 0.01 as in the paper's
notebook (16 training trajectories of 5,121 snapshots, 4 test), FHN sampled every 0.5 for 2,000 steps; same
networks and epochs, so many more optimiser steps (hours on a CPU; not run here). The convolutional
``ConvAutoencoder`` is not used in this comparison.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hnn_common import (  # noqa: E402
    Stopwatch,
    add_common_flags,
    command_line,
    machine_line,
    md_table,
    pyplot,
    sci,
    write_text,
)
from report import run_systems  # noqa: E402

from pysciml.models import PCA, Autoencoder  # noqa: E402
from pysciml.problems import fhn_dataset, ks_dataset  # noqa: E402

PAPER = {"ks": {8: (3.0e-4, 3.9e-2)}}  # latent -> (AE MSE, PCA MSE), Hamid et al. KS notebook, N = 120


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_flags(p)
    p.add_argument("--latents", type=int, nargs="+", default=list(range(1, 11)), help="latent sizes")
    p.add_argument("--systems", nargs="+", default=["ks", "fhn"], choices=["ks", "fhn"])
    p.add_argument("--traj", type=int, default=None, help="trajectories per system (train + test)")
    p.add_argument("--test-traj", type=int, default=None, help="held-out trajectories")
    p.add_argument("--ks-n", type=int, default=None, help="KS grid points")
    p.add_argument("--ks-dt", type=float, default=None, help="KS snapshot spacing")
    p.add_argument("--ks-steps", type=int, default=None, help="KS snapshots per trajectory after the first")
    p.add_argument("--ks-transient", type=float, default=None, help="KS time dropped before sampling")
    p.add_argument("--fhn-nodes", type=int, default=101)
    p.add_argument("--fhn-dt", type=float, default=None)
    p.add_argument("--fhn-steps", type=int, default=None)
    p.add_argument("--hidden", type=int, nargs="*", default=None, help="AE encoder widths")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="do not write the markdown/png (tests)")
    return p


def _defaults(a: argparse.Namespace) -> argparse.Namespace:
    full = a.full
    fill = {
        "traj": 20 if full else 40, "test_traj": 4 if full else 8,
        "ks_n": 120 if full else 64, "ks_dt": 0.01 if full else 0.5, "ks_steps": 5120 if full else 100,
        "ks_transient": 50.0 if full else 40.0,
        "fhn_dt": 0.5 if full else 2.0, "fhn_steps": 2000 if full else 100,
        "hidden": [256, 128], "epochs": 100,
    }
    for k, v in fill.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.test_traj >= a.traj:
        raise SystemExit("--test-traj must be smaller than --traj")
    return a


def make_data(system: str, a: argparse.Namespace) -> tuple[torch.Tensor, dict[str, Any]]:
    """Trajectories ``(n_traj, n_t, n)`` float64 and the generator's parameters."""
    if system == "ks":
        d = ks_dataset(a.traj, N=a.ks_n, L=22.0, dt=a.ks_dt, n_steps=a.ks_steps, transient=a.ks_transient,
                       seed=a.seed)
    else:
        d = fhn_dataset(a.traj, n_nodes=a.fhn_nodes, dt=a.fhn_dt, n_steps=a.fhn_steps, seed=a.seed)
    return d["u"], d["params"]


def train_ae(xtr: torch.Tensor, latent: int, a: argparse.Namespace) -> Autoencoder:
    """Fit an ``Autoencoder`` (float32) to scaled training snapshots ``(n, n_in)``."""
    torch.manual_seed(a.seed + 1000 * latent)
    ae = Autoencoder(xtr.shape[1], latent, hidden=tuple(a.hidden), dtype=torch.float32)
    opt = torch.optim.Adam(ae.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
    gen = torch.Generator().manual_seed(a.seed + latent)
    for _ in range(a.epochs):
        perm = torch.randperm(xtr.shape[0], generator=gen)
        for i in range(0, xtr.shape[0], a.batch):
            xb = xtr[perm[i:i + a.batch]]
            loss = torch.mean((ae(xb) - xb) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return ae


def run_system(system: str, a: argparse.Namespace) -> dict[str, Any]:
    """Data, then PCA and AE test MSE per latent size."""
    with Stopwatch() as sw:
        u, params = make_data(system, a)
    ntr = a.traj - a.test_traj
    xtr = u[:ntr].reshape(-1, u.shape[-1])
    xte = u[ntr:].reshape(-1, u.shape[-1])
    mu, sd = xtr.mean().item(), xtr.std().item()
    var_te = xte.var().item()
    rows: dict[int, dict[str, float]] = {}
    for k in a.latents:
        pca = PCA(k).fit(xtr)
        pca_mse = torch.mean((pca(xte) - xte) ** 2).item()
        pca_tr = torch.mean((pca(xtr) - xtr) ** 2).item()
        ae = train_ae(((xtr - mu) / sd).float(), k, a)
        with torch.no_grad():
            ae_mse = torch.mean((ae(((xte - mu) / sd).float()).double() * sd + mu - xte) ** 2).item()
            ae_tr = torch.mean((ae(((xtr - mu) / sd).float()).double() * sd + mu - xtr) ** 2).item()
        rows[k] = {"pca": pca_mse, "ae": ae_mse, "pca_train": pca_tr, "ae_train": ae_tr}
        print(f"{system} latent {k:2d}: test PCA {pca_mse:.3e} AE {ae_mse:.3e} | train PCA {pca_tr:.3e} "
              f"AE {ae_tr:.3e}", flush=True)
    return {"rows": rows, "params": params, "n_train": xtr.shape[0], "n_test": xte.shape[0], "n": u.shape[-1],
            "var_test": var_te, "data_seconds": sw.seconds}


def write_results(res: dict[str, dict[str, Any]], a: argparse.Namespace, argv: Sequence[str] | None,
                  seconds: float) -> Path:
    out = Path(a.out)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(res), figsize=(5 * len(res), 3.6), squeeze=False)
    for ax, (system, r) in zip(axes[0], res.items(), strict=True):
        ks = sorted(r["rows"])
        ax.semilogy(ks, [r["rows"][k]["pca"] for k in ks], "o-", label="PCA")
        ax.semilogy(ks, [r["rows"][k]["ae"] for k in ks], "s-", label="autoencoder")
        for k, (ae_p, pca_p) in PAPER.get(system, {}).items():
            ax.semilogy([k], [pca_p], "o", mfc="none", color="C0", ms=10, label=f"paper PCA (N=120, k={k})")
            ax.semilogy([k], [ae_p], "s", mfc="none", color="C1", ms=10, label=f"paper AE (N=120, k={k})")
        ax.set_xlabel("latent size")
        ax.set_ylabel("test reconstruction MSE")
        ax.set_title(f"{system.upper()} ({r['n']} states)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    png = out / "multiscale_reconstruction.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    lines = ["# Autoencoder vs PCA reconstruction error against latent size (issue 16, reproduction a)", "",
             f"Produced by `{command_line('multiscale_reconstruction.py', argv)}`"
             f" ({'paper size' if a.full else 'reduced size'}).", "",
             "Test-set reconstruction MSE, in the data's own units, averaged over all held-out snapshots and "
             "state entries; `rel` is that MSE divided by the test data's variance; `train` columns: the same MSE "
             "on the training snapshots. Train/test split by trajectory. "
             "Paper (Hamid et al., KS notebook, N = 120, latent 8): AE 3.0e-4, PCA 3.9e-2.", ""]
    for system, r in res.items():
        p = r["params"]
        lines += [f"## {system.upper()}", "",
                  f"State size {r['n']}; {a.traj - a.test_traj} training / {a.test_traj} test trajectories "
                  f"({r['n_train']} / {r['n_test']} snapshots); test variance {sci(r['var_test'])}; data "
                  f"generation {r['data_seconds']:.0f} s.", "",
                  "Generator parameters: `" + ", ".join(f"{k}={v}" for k, v in p.items()) + "`", ""]
        header = ["latent", "PCA MSE", "AE MSE", "PCA rel", "AE rel", "AE/PCA", "PCA train", "AE train",
                  "paper PCA", "paper AE"]
        body = []
        for k in sorted(r["rows"]):
            pc, ae = r["rows"][k]["pca"], r["rows"][k]["ae"]
            paper = PAPER.get(system, {}).get(k)
            body.append([k, sci(pc), sci(ae), sci(pc / r["var_test"]), sci(ae / r["var_test"]),
                         f"{ae / pc:.2f}" if pc > 0 else "nan", sci(r["rows"][k]["pca_train"]),
                         sci(r["rows"][k]["ae_train"]),
                         sci(paper[1]) if paper else "", sci(paper[0]) if paper else ""])
        lines += [md_table(header, body), ""]
    lines += [f"Autoencoder: fully connected, ReLU, encoder widths {a.hidden} (decoder reversed), float32, Adam "
              f"lr {a.lr} with cosine decay, {a.epochs} epochs, batch {a.batch}, inputs scaled by the training "
              "mean and std (one scalar each). PCA: `pysciml.models.PCA` on the same training snapshots.", "",
              "![error vs latent size](multiscale_reconstruction.png)", "", machine_line(seconds)]
    return write_text(out / "multiscale_reconstruction.md", "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    return run_systems(_defaults(build_parser().parse_args(argv)), argv, run_system, write_results)


if __name__ == "__main__":
    main()
