"""Shared pieces of the SINODE reproductions (Kuramoto-Sivashinsky, Burgers): periodic finite differences,
data generation with pysciml, the network, a counted training loop, rollout errors, plots and the table.

Counting: ``NFE/epoch`` is the number of network forward evaluations (including those recomputed by
checkpointing in the backward pass) plus the network backward passes (one vector-Jacobian product per
recorded evaluation), counted with hooks on the network itself.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import pysciml as ps
from pysciml.models import NeuralODE, SemiImplicitNeuralODE

OUT = Path(__file__).resolve().parent / "output"
# the backward hook also fires for the first stage (whose input, the data, needs no gradient): counted, on purpose
warnings.filterwarnings("ignore", message="Full backward hook is firing")


def periodic_d2(n: int, dx: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Second-order central second difference, periodic, ``(n, n)``."""
    eye = torch.eye(n, dtype=dtype)
    return (torch.roll(eye, 1, 1) - 2 * eye + torch.roll(eye, -1, 1)) / dx**2


def ddx(u: torch.Tensor, dx: float) -> torch.Tensor:
    """Central first difference along the last dimension, periodic."""
    return (torch.roll(u, -1, -1) - torch.roll(u, 1, -1)) / (2 * dx)


class CountedMLP(nn.Module):
    """``N_theta(u)``: an MLP on the whole discretised field, counting forward and backward passes."""

    def __init__(self, n: int, width: int, depth: int, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(n, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
        layers.append(nn.Linear(width, n))
        self.net = nn.Sequential(*layers).to(dtype)
        self.n_forward = 0
        self.n_backward = 0
        self.net.register_full_backward_hook(self._count_backward)

    def _count_backward(self, *_: object) -> None:
        self.n_backward += 1

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        self.n_forward += 1
        return self.net(u)


class Explicit(nn.Module):
    """``L u + N_theta(u)`` as one vector field, for explicit methods."""

    def __init__(self, L: torch.Tensor, nonlinear: nn.Module) -> None:
        super().__init__()
        self.register_buffer("L", L)
        self.nonlinear = nonlinear

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return u @ self.L.T + self.nonlinear(t, u)


def make_model(kind: str, L: torch.Tensor, net: CountedMLP, h: float) -> nn.Module:
    """``imex:<Alg>`` -> SemiImplicitNeuralODE (L implicit, fixed step h); ``explicit:<Alg>`` -> NeuralODE."""
    family, name = kind.split(":")
    alg = getattr(ps, name)()
    if family == "imex":
        return SemiImplicitNeuralODE(L, net, alg, dt=h, sensealg=ps.DiscreteAdjoint())
    return NeuralODE(Explicit(L, net), alg, dt=h, sensealg=ps.DiscreteAdjoint(checkpoints=10))


def window_times(window: float, kind: str) -> torch.Tensor:
    """Save times of one training window; the explicit runs save 11 points so that the discrete adjoint can
    checkpoint 10 segments (memory), the IMEX ones only the two ends."""
    m = 11 if kind.startswith("explicit") else 2
    return torch.linspace(0.0, window, m, dtype=torch.float64)


@dataclass
class RunResult:
    kind: str
    h: float
    epochs_run: float
    iters_run: int
    nfe_per_epoch: float
    time_per_epoch: float
    final_loss: float
    test_error: float
    short_error: float = float("nan")  # over the first ``short_horizon`` time units of the rollout
    note: str = ""


def train(kind: str, L: torch.Tensor, net: CountedMLP, pairs: tuple[torch.Tensor, torch.Tensor], *, h: float,
          window: float, epochs: int, batch: int, lr: float, max_iters: int | None = None,
          seed: int = 0) -> tuple[nn.Module, float, float, float, int]:
    """Adam on ``||model(u_k)(window) - u_{k+1}||^2``; returns the model, NFE/epoch, s/epoch, last loss and
    the iterations run (``max_iters`` stops early; per-epoch numbers are then extrapolated from them)."""
    model = make_model(kind, L, net, h)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x, y = pairs
    per_epoch = math.ceil(len(x) / batch)
    total = epochs * per_epoch if max_iters is None else min(max_iters, epochs * per_epoch)
    t = window_times(window, kind)
    g = torch.Generator().manual_seed(seed)
    net.n_forward = net.n_backward = 0
    start, done, loss_v = time.perf_counter(), 0, float("nan")
    bar = tqdm(total=total, desc=f"{kind} h={h:g}", leave=False)
    while done < total:
        for idx in torch.randperm(len(x), generator=g).split(batch):
            if done >= total:
                break
            opt.zero_grad()
            pred = model(x[idx], t)[-1]
            loss = ((pred - y[idx]) ** 2).mean()
            loss.backward()
            opt.step()
            loss_v = loss.item()
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.3e}")
    bar.close()
    elapsed = time.perf_counter() - start
    scale = per_epoch / done
    return model, (net.n_forward + net.n_backward) * scale, elapsed * scale, loss_v, done


@torch.no_grad()
def rollout(model: nn.Module, u0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Predicted trajectory ``(len(t), n)`` from ``u0 (n,)``."""
    return model(u0, t)


def relative_l2(pred: torch.Tensor, true: torch.Tensor) -> float:
    return float(torch.linalg.norm(pred - true) / torch.linalg.norm(true))


def plot_rollouts(path: Path, x: torch.Tensor, t: torch.Tensor, true: torch.Tensor,
                  preds: dict[str, torch.Tensor], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"truth": true, **preds}
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharey=True)
    vmax = float(true.abs().max())
    for ax, (name, u) in zip(axes, panels.items(), strict=True):
        im = ax.pcolormesh(x.numpy(), t.numpy(), u.numpy(), shading="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x")
    axes[0].set_ylabel("t")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: list[RunResult], short_horizon: float) -> str:
    rows = ["| run | h | iterations run | epochs (equiv.) | NFE / epoch (fwd + bwd) | s / epoch | final train loss "
            f"| test rel. L2, first {short_horizon:g} t.u. | test rel. L2, whole rollout | note |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r.kind} | {r.h:g} | {r.iters_run} | {r.epochs_run:.2f} | {r.nfe_per_epoch:,.0f} | "
                    f"{r.time_per_epoch:.2f} | {r.final_loss:.3e} | {r.short_error:.3e} | {r.test_error:.3e} | "
                    f"{r.note} |")
    return "\n".join(rows)


@dataclass
class Setup:
    """One reproduction: the known linear operator, the data and how to train and test."""

    L: torch.Tensor
    pairs: tuple[torch.Tensor, torch.Tensor]
    test: torch.Tensor  # (S, n) true test trajectory
    t_test: torch.Tensor  # (S,)
    width: int
    window: float
    epochs: int
    batch: int
    short: float  # horizon of the short-horizon test error


def compare(setup: Setup, runs: list[tuple[str, float, int | None]], unstable: tuple[str, float]
            ) -> tuple[list[RunResult], dict[str, torch.Tensor], str]:
    """Train the same initial network with each ``(kind, h, max_iters)``; test by rollout; then check whether
    ``unstable = (kind, h)`` (an explicit method at the IMEX step) survives the test rollout."""
    n = setup.L.shape[0]
    init = CountedMLP(n, setup.width, 4).state_dict()
    per_epoch = math.ceil(len(setup.pairs[0]) / setup.batch)
    k = int(round(setup.short / float(setup.t_test[1] - setup.t_test[0]))) + 1
    results, preds = [], {}
    for kind, h, max_iters in runs:
        net = CountedMLP(n, setup.width, 4)
        net.load_state_dict(init)  # the same initial network for every run
        _, nfe, sec, loss, iters = train(kind, setup.L, net, setup.pairs, h=h, window=setup.window,
                                         epochs=setup.epochs, batch=setup.batch, lr=1e-3, max_iters=max_iters)
        pred = rollout(make_model(kind, setup.L, net, h), setup.test[0], setup.t_test)
        err, short = relative_l2(pred, setup.test), relative_l2(pred[:k], setup.test[:k])
        note = "per-epoch numbers extrapolated from the iterations run" if iters < setup.epochs * per_epoch else ""
        results.append(RunResult(kind, h, iters / per_epoch, iters, nfe, sec, loss, err, short, note))
        preds[f"{kind} h={h:g} (err {err:.2f})"] = pred
        print(f"{kind:16s} h={h:<6g} NFE/epoch={nfe:10,.0f}  s/epoch={sec:8.2f}  loss={loss:.3e}  "
              f"test={short:.3e} / {err:.3e}")
    net = CountedMLP(n, setup.width, 4)
    net.load_state_dict(init)
    kind, h = unstable
    try:
        big = float(rollout(make_model(kind, setup.L, net, h), setup.test[0], setup.t_test).abs().max())
        stab = (f"{kind} at h = {h:g} on the untrained network: finished the test rollout with max |u| = "
                f"{big:.3g} (truth: {float(setup.test.abs().max()):.3g})")
    except ps.SolverError as exc:
        stab = f"{kind} at h = {h:g} on the untrained network: fails with {exc.retcode.value}"
    print(stab)
    return results, preds, stab


def report(path: Path, title: str, setup_line: str, setup: Setup, results: list[RunResult], stab: str,
           png: Path) -> None:
    """Write the markdown results and print the table."""
    tab = table(results, setup.short)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([f"# {title}", "", setup_line, "", tab, "", stab, "", f"![rollout]({png.name})", ""]))
    print("\n" + tab + f"\n\n{stab}\nwrote {path} and {png}")
