"""SINODE on viscous Burgers: diffusion implicit (FD matrix), the advection term learned by a network.

    u_t = nu u_xx - u u_x   on [0, 1), periodic, nu = 8e-4

After the SINODE paper's Burgers experiment (Zhang, Liu & Maulik 2025; their code uses N = 1024, 100
initial conditions sampled every 0.1 over [0, 5], 80/20 train/test split, an MLP with 4 hidden layers of
width 9N/8, one-window training pairs, IMEX step 0.05 vs explicit step 0.001): the diffusion matrix
``nu D2`` is known and implicit, ``N_theta(u)`` replaces ``-u u_x`` and is explicit. The data are generated
by pysciml (KenCarp4 at a fixed h = 0.0025) from random smooth initial conditions. Reduced default:
N = 256, 16 initial conditions, 5 epochs, the explicit run cut to a few iterations (its per-epoch numbers
are extrapolated, the table says so). ``--full``: N = 1024, 100 initial conditions, 20 epochs, batch 200.

Differences from the paper, forced by the reduced grid: central differences need a cell Peclet number
``max|u| dx / nu < 2``, so the initial amplitudes are ~0.3 (at N = 128 and amplitude 1 the semi-discrete
system blows up); the IMEX step is 0.025 (explicit advection CFL ~2). At nu = 8e-4 the diffusion's
spectral radius ``4 nu N^2`` is 210 at N = 256 (3.4e3 at N = 1024): RK4 at the IMEX step is unstable
(h rho = 5.2 > 2.79) while the IMEX methods are not limited by it.

    python examples/sinode_burgers.py [--full] [--epochs E] [--explicit-iters K]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sinode_common import OUT, Setup, compare, ddx, periodic_d2, plot_rollouts, report  # noqa: E402

import pysciml as ps  # noqa: E402

NU, WINDOW, T_END = 8e-4, 0.1, 5.0
SHORT = 1.0  # short-horizon test error (time units)
H_IMEX = 0.025  # IMEX step: advective CFL max|u| h / dx ~ 2 at N = 256


def random_fields(k: int, n: int, seed: int) -> torch.Tensor:
    """Smooth periodic initial conditions: the first 3 Fourier modes with random amplitudes, ``(k, n)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(n, dtype=torch.float64) / n
    modes = torch.arange(1, 4, dtype=torch.float64)
    a = torch.randn(k, 3, 2, dtype=torch.float64, generator=g) / modes[None, :, None]
    arg = 2 * math.pi * modes[None, :, None] * x[None, None, :]
    return 0.15 * (a[..., 0:1] * torch.cos(arg) + a[..., 1:2] * torch.sin(arg)).sum(dim=1)


def simulate(u0: torch.Tensor) -> torch.Tensor:
    """True trajectories ``(S, k, n)`` every WINDOW on [0, T_END]."""
    n = u0.shape[-1]
    L = NU * periodic_d2(n, 1.0 / n)
    prob = ps.SplitODEProblem(L, lambda t, u: -u * ddx(u, 1.0 / n), u0, (0.0, T_END), batched=True)
    t = torch.linspace(0.0, T_END, round(T_END / WINDOW) + 1, dtype=torch.float64)
    return ps.solve(prob, ps.KenCarp4(), dt=0.0025, adaptive=False, saveat=t, throw=True).u


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the paper's sizes (hours on a CPU)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--explicit-iters", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no contention on a shared CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, n_ic, batch, epochs, ex_iters = (1024, 100, 200, 20, None) if args.full else (256, 16, 50, 5, 3)
    epochs = args.epochs or epochs
    ex_iters = args.explicit_iters if args.explicit_iters is not None else ex_iters

    print(f"generating data: {n_ic} initial conditions, N = {n} (KenCarp4, h = 0.0025) ...")
    traj = simulate(random_fields(n_ic, n, seed=2))  # (S, k, n)
    n_train = int(0.8 * n_ic)
    train_traj, test = traj[:, :n_train], traj[:, n_train]
    pairs = (train_traj[:-1].reshape(-1, n), train_traj[1:].reshape(-1, n))
    t_test = torch.linspace(0.0, T_END, traj.shape[0], dtype=torch.float64)
    print(f"{len(pairs[0])} training pairs; test: rollout over [0, {T_END:g}] from a held-out initial condition")
    still = float(((pairs[0] - pairs[1]) ** 2).mean())  # the loss of predicting "no change" over a window
    print(f"baseline: the loss of u(t + {WINDOW}) = u(t) is {still:.3e}")

    setup = Setup(NU * periodic_d2(n, 1.0 / n), pairs, test, t_test, width=n * 9 // 8, window=WINDOW,
                  epochs=epochs, batch=batch, short=SHORT)
    runs = [("imex:IMEXSSP2", H_IMEX, None), ("imex:KenCarp4", H_IMEX, None), ("explicit:RK4", 0.001, ex_iters)]
    results, preds, stab = compare(setup, runs, unstable=("explicit:RK4", H_IMEX))
    print(f"(diffusion spectral radius 4 nu N^2 = {4 * NU * n**2:.3g}; RK4 is stable for h * rho < 2.79)")
    x = torch.arange(n, dtype=torch.float64) / n
    png = OUT / ("sinode_burgers_rollout.png" if not args.full else "sinode_burgers_rollout_full.png")
    plot_rollouts(png, x, t_test, test, preds, f"viscous Burgers (nu = {NU:g}, N = {n}): truth vs SINODE rollouts")
    line = (f"N = {n}, nu = {NU:g}, window = {WINDOW}, {len(pairs[0])} training pairs, batch {batch}, MLP 4 x "
            f"{setup.width} ReLU, Adam 1e-3, float64, discrete adjoint; test: relative L2 error of the rollout over "
            f"[0, {T_END:g}] from a held-out initial condition; diffusion spectral radius {4 * NU * n**2:.3g}. "
            f"CPU, shared (noisy times). Baseline: predicting no change over a window gives loss {still:.3e}.")
    report(OUT / ("sinode_burgers.md" if args.full else "sinode_burgers_reduced.md"),
           f"SINODE: viscous Burgers ({'full' if args.full else 'reduced'} run)", line, setup, results, stab, png)

if __name__ == "__main__":
    main()
