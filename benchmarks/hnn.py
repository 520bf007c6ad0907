"""Task 6: time per training iteration of a Hamiltonian neural network, pysciml against torchdyn and plain autograd.

One iteration = the vector field ``J grad H`` of a batch of ``B = 512`` states (float64), the loss
``MSE(dH/dp - qdot) + MSE(dH/dq + pdot)`` against exact derivatives, the backward pass to the parameters and one
Adam step. The energy network is the same for every implementation: ``d -> w -> w -> 1`` with softplus (the
widths of Khoo et al.'s HNNs: ``w = 32`` for ``d = 4``, ``w = 44`` for ``d = 20``), the same initial weights.

Implementations:
- pysciml ``HNN(d, hidden=(w, w)).loss(x, dx)`` (also ``SeparableHNN`` with the inductive bias, per-branch width
  ``0.7 w`` as in the paper, and with the learning bias, whose mixed-partial penalty costs ``d/2`` more reverse
  passes, as extra rows);
- torchdyn 1.0.6 ``torchdyn.models.HNN(net)`` (``torchdyn/models/energy.py``), the peer the issue names;
- plain autograd: ``torch.autograd.grad(net(x).sum(), x, create_graph=True)`` written out by hand.

torchdyn's package ``__init__`` imports its whole stack (torchcde, torchsde, pytorch-lightning, torchvision);
its energy models need only torch, so the benchmark loads ``torchdyn/models/energy.py`` by path. Install it
without dependencies so that pip cannot replace torch: ``pip install --no-deps torchdyn==1.0.6``. Without it the
torchdyn rows are skipped with a note.

Timing goes in rounds (11 at full size): each round runs every implementation for ``k`` iterations in turn, so
load changes on a shared machine hit all alike; the table gives the median and the best per-iteration time over
the rounds. Before timing, the three HNN implementations are checked to give the same loss and gradients at the
same weights.
"""

from __future__ import annotations

import copy
import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from pysciml.models import HNN, SeparableHNN

from .common import environment, markdown_table, result_name, start_task, synced, write_result

F64 = torch.float64
WIDTHS = {4: 32, 20: 44}  # Khoo et al.'s HNN widths (anisotropic oscillator / Henon-Heiles; 10-mass chain)


@dataclass
class Size:
    batch: int
    dims: tuple[int, ...]
    rounds: int
    iters: int


SIZES = {"full": Size(512, (4, 20), 11, 30), "smoke": Size(64, (4,), 2, 2)}


def load_torchdyn_energy() -> ModuleType | None:
    """torchdyn's ``models/energy.py`` loaded by path (it needs only torch), or ``None`` when torchdyn is absent."""
    spec = importlib.util.find_spec("torchdyn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / "energy.py"
    mod_spec = importlib.util.spec_from_file_location("_torchdyn_models_energy", path)
    if mod_spec is None or mod_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def torchdyn_version() -> str:
    try:
        from importlib.metadata import version

        return version("torchdyn")
    except Exception:  # noqa: BLE001
        return "?"


def data(d: int, batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """States uniform in ``[-0.5, 0.5]^d`` and a smooth exact field (a coupled oscillator chain's)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, d, dtype=F64, generator=gen) - 0.5
    n = d // 2
    q, p = x[:, :n], x[:, n:]
    lap = 2 * q - torch.roll(q, 1, 1) - torch.roll(q, -1, 1)
    dx = torch.cat([p, -lap - 0.1 * q**3], 1)
    return x.to(device), dx.to(device)


def vf_loss(field: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    return 2.0 * ((field - dx) ** 2).mean()


Steps = dict[str, tuple[nn.Module, Callable[..., torch.Tensor]]]


def make_steps(d: int, device: str, energy: ModuleType | None) -> Steps:
    """name -> (module holding the parameters, loss(x, dx)); the HNNs share their initial weights."""
    w = WIDTHS[d]
    torch.manual_seed(0)
    ours = HNN(d, hidden=(w, w)).to(device)
    plain_net = copy.deepcopy(ours.net)

    def plain_loss(x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(plain_net(xr).sum(), xr, create_graph=True)
        n = d // 2
        return vf_loss(torch.cat([g[:, n:], -g[:, :n]], 1), dx)

    steps: Steps = {
        "pysciml HNN": (ours, ours.loss),
        "plain autograd": (plain_net, plain_loss),
    }
    if energy is not None:
        dyn = energy.HNN(copy.deepcopy(ours.net)).to(device)
        steps["torchdyn HNN"] = (dyn, lambda x, dx: vf_loss(dyn(x.detach()), dx))
    sep_w = max(1, round(0.7 * w))
    torch.manual_seed(0)
    sep = SeparableHNN(d // 2, hidden=(sep_w, sep_w), biases="I").to(device)
    steps[f"pysciml SeparableHNN I (branch width {sep_w})"] = (sep, sep.loss)
    torch.manual_seed(0)
    sep_l = SeparableHNN(d // 2, hidden=(w, w), biases="L").to(device)
    steps["pysciml SeparableHNN L (penalty: d/2 more passes)"] = (sep_l, sep_l.loss)
    return steps


def agreement(steps: Steps, x: torch.Tensor, dx: torch.Tensor) -> float:
    """Largest relative difference of loss and parameter gradients between the HNN implementations (same
    weights), before any training step."""
    ref = None
    worst = 0.0
    for name in ("pysciml HNN", "plain autograd", "torchdyn HNN"):
        if name not in steps:
            continue
        module, loss_fn = steps[name]
        loss = loss_fn(x, dx)
        grads = torch.autograd.grad(loss, [p for p in module.parameters()][:-1])  # H's output bias is inert
        flat = torch.cat([loss.reshape(1)] + [g.reshape(-1) for g in grads]).detach()
        if ref is None:
            ref = flat
        else:
            worst = max(worst, float((flat - ref).abs().max() / ref.abs().max()))
    return worst


Summary = dict[int, dict[str, tuple[float, float]]]  # d -> implementation -> (median, best) seconds


def measure(cfg: Size, device: str) -> tuple[list[list[object]], dict[int, float], Summary]:
    energy = load_torchdyn_energy()
    rows: list[list[object]] = []
    agree: dict[int, float] = {}
    summary: Summary = {}
    for d in cfg.dims:
        x, dx = data(d, cfg.batch, device)
        steps = make_steps(d, device, energy)
        agree[d] = agreement(steps, x, dx)
        runners = {}
        for name, (module, loss_fn) in steps.items():
            opt = torch.optim.Adam(module.parameters(), lr=1e-3)

            def iteration(loss_fn: Callable[..., torch.Tensor] = loss_fn, opt: torch.optim.Optimizer = opt,
                          x: torch.Tensor = x, dx: torch.Tensor = dx) -> None:
                opt.zero_grad()
                loss_fn(x, dx).backward()
                opt.step()

            runners[name] = synced(iteration, device)
            for _ in range(3):  # warm-up
                runners[name]()
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(cfg.rounds):
            for name, run in runners.items():
                t0 = time.perf_counter()
                for _ in range(cfg.iters):
                    run()
                times[name].append((time.perf_counter() - t0) / cfg.iters)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        summary[d] = {name: (med[name], min(ts)) for name, ts in times.items()}
        base = med["pysciml HNN"]
        for name, ts in times.items():
            rows.append([name, d, WIDTHS[d], med[name] * 1e3, min(ts) * 1e3, med[name] / base])
    return rows, agree, summary


def ratio(summary: dict[str, tuple[float, float]], name: str) -> str:
    """``name``'s time over pysciml HNN's: median (best)."""
    (m, b), (m0, b0) = summary[name], summary["pysciml HNN"]
    return f"{m / m0:.2f} ({b / b0:.2f})"


def report(rows: list[list[object]], agree: dict[int, float], summary: Summary, cfg: Size, device: str,
           seconds: float) -> str:
    lines = [
        "# HNN training iteration: pysciml vs torchdyn vs plain autograd",
        "",
        f"Batch {cfg.batch}, float64, energy MLP d -> w -> w -> 1 (softplus), one iteration = vector field + loss + "
        f"backward + Adam step; median and best of {cfg.rounds} interleaved rounds of {cfg.iters} iterations. "
        f"Device: {device}.",
        "",
        markdown_table(["implementation", "d", "w", "median [ms/iter]", "best [ms/iter]", "median / pysciml HNN"],
                       rows),
        "",
    ]
    for d, per in summary.items():
        parts = [f"plain autograd / pysciml = {ratio(per, 'plain autograd')}"]
        if "torchdyn HNN" in per:
            parts.insert(0, f"torchdyn / pysciml = {ratio(per, 'torchdyn HNN')}")
        lines.append(f"- d = {d}: " + ", ".join(parts) + " (time ratios of the medians, of the best rounds in "
                     f"parentheses; > 1 means pysciml is faster); loss and gradients of the three HNNs agree to "
                     f"{agree[d]:.1e} (relative).")
    if not any(r[0] == "torchdyn HNN" for r in rows):
        lines.append("- torchdyn is not installed: its rows are skipped (`pip install --no-deps torchdyn==1.0.6`).")
    else:
        lines.append(f"- torchdyn {torchdyn_version()} (models/energy.py loaded by path).")
    lines += ["", f"Environment: {environment()}", f"(run took {seconds:.1f} s)", ""]
    return "\n".join(lines)


def main(size: str = "full", device: str = "cpu") -> str:
    skip = start_task("Task 6 (hnn)", device)
    if skip is not None:
        return skip
    cfg = SIZES[size]
    t0 = time.perf_counter()
    rows, agree, summary = measure(cfg, device)
    text = report(rows, agree, summary, cfg, device, time.perf_counter() - t0)
    write_result(result_name("hnn", size, device), text)
    return text


if __name__ == "__main__":
    print(main())
