"""SINODE on Kuramoto-Sivashinsky: learn the nonlinear term with an IMEX neural ODE (Zhang, Liu & Maulik 2025).

    u_t = -u u_x - u_xx - u_xxxx   on [0, 22), periodic, N = 64 points

The linear part ``L = -(D2 + D4)`` (second-order central differences; spectral radius ~1.2e3, so explicit
RK4 needs h ~ 2e-3) is known and treated implicitly; ``N_theta(u)`` (an MLP, 4 hidden layers x 200 ReLU, the
paper's) replaces ``-u u_x`` and is treated explicitly. Training data come from pysciml itself: the exact
semi-discrete KS system solved by KenCarp4 at a fixed h = 0.02 (4e-8 relative difference from an adaptive
rtol 1e-6 solve over 10 time units) from random smooth initial conditions after a transient, sampled every
0.2; the model is trained on one-window pairs ``(u(t), u(t + 0.2))``.

Compared on the same network: IMEX at h = 0.2 (IMEXSSP2 = PETSc's ARKIMEX "l2", and KenCarp4 = "4", two of
the paper's choices) against explicit RK4 at h = 0.001 (the paper's explicit step). By default the sizes are
reduced to run in a few minutes on a CPU, and the explicit run does only a few iterations: its per-epoch
NFE and time are extrapolated from them (it says so in the table). ``--full`` uses the paper's sizes
(50,000 pairs, batch 256, 200 epochs): hours on a CPU.

    python examples/sinode_kuramoto_sivashinsky.py [--full] [--epochs E] [--explicit-iters K]
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

LENGTH, N, WINDOW = 22.0, 64, 0.2
SHORT = 2.0  # short-horizon test error (time units)
DX = LENGTH / N


def ks_linear() -> torch.Tensor:
    d2 = periodic_d2(N, DX)
    return -(d2 + d2 @ d2)


def ks_nonlinear(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return -u * ddx(u, DX)


def random_fields(k: int, seed: int) -> torch.Tensor:
    """``k`` smooth periodic fields: random combinations of the first 4 Fourier modes, ``(k, N)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(N, dtype=torch.float64) * DX
    modes = torch.arange(1, 5, dtype=torch.float64)
    a = torch.randn(k, 4, 2, dtype=torch.float64, generator=g) / modes[None, :, None]
    arg = 2 * math.pi * modes[None, :, None] * x[None, None, :] / LENGTH
    return (a[..., 0:1] * torch.cos(arg) + a[..., 1:2] * torch.sin(arg)).sum(dim=1)


def simulate(u0: torch.Tensor, transient: float, span: float) -> torch.Tensor:
    """True trajectories ``(S, k, N)`` sampled every WINDOW over ``span`` after ``transient``."""
    L = ks_linear()
    prob = ps.SplitODEProblem(L, ks_nonlinear, u0, (0.0, transient), batched=True)
    start = ps.solve(prob, ps.KenCarp4(), dt=0.02, adaptive=False, throw=True).u[-1]
    steps = round(span / WINDOW)
    t = torch.linspace(0.0, steps * WINDOW, steps + 1, dtype=torch.float64)
    sol = ps.solve(prob.remake(u0=start, tspan=(0.0, float(t[-1]))), ps.KenCarp4(), dt=0.02, adaptive=False,
                   saveat=t, throw=True)
    return sol.u


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="paper-sized data and training (hours on a CPU)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--explicit-iters", type=int, default=None, help="iterations of the explicit h=0.001 run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no contention on a shared CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.full:
        n_ic, span, transient, batch, epochs, ex_iters, test_span = 10, 1000.0, 100.0, 256, 200, None, 40.0
    else:
        n_ic, span, transient, batch, epochs, ex_iters, test_span = 3, 40.0, 60.0, 64, 15, 3, 10.0
    epochs = args.epochs or epochs
    ex_iters = args.explicit_iters if args.explicit_iters is not None else ex_iters

    print(f"generating data: {n_ic} trajectories x {span:g} time units (KenCarp4, h = 0.02) ...")
    traj = simulate(random_fields(n_ic, seed=1), transient, span)  # (S, k, N)
    pairs = (traj[:-1].reshape(-1, N), traj[1:].reshape(-1, N))
    test = simulate(random_fields(1, seed=99), transient, test_span)[:, 0]  # (S, N)
    t_test = torch.linspace(0.0, test_span, test.shape[0], dtype=torch.float64)
    print(f"{len(pairs[0])} training pairs, test rollout of {test_span:g} time units")

    setup = Setup(ks_linear(), pairs, test, t_test, width=200, window=WINDOW, epochs=epochs, batch=batch,
                  short=SHORT)
    runs = [("imex:IMEXSSP2", 0.2, None), ("imex:KenCarp4", 0.2, None), ("explicit:RK4", 0.001, ex_iters)]
    results, preds, stab = compare(setup, runs, unstable=("explicit:RK4", 0.2))
    x = torch.arange(N, dtype=torch.float64) * DX
    png = OUT / ("sinode_ks_rollout.png" if not args.full else "sinode_ks_rollout_full.png")
    plot_rollouts(png, x, t_test, test, preds, "Kuramoto-Sivashinsky (N=64, L=22): truth vs SINODE rollouts")
    line = (f"N = {N}, L = {LENGTH:g}, window = {WINDOW}, {len(pairs[0])} training pairs, batch {batch}, "
            f"MLP 4 x 200 ReLU, Adam 1e-3, float64, discrete adjoint; test: relative L2 error of a "
            f"{test_span:g}-time-unit rollout from an unseen initial condition. CPU, shared (noisy times).")
    report(OUT / ("sinode_ks.md" if args.full else "sinode_ks_reduced.md"),
           f"SINODE: Kuramoto-Sivashinsky ({'full' if args.full else 'reduced'} run)", line, setup, results, stab, png)

if __name__ == "__main__":
    main()
