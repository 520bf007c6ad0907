"""Train a neural ODE on a stiff problem: an MLP-corrected ROBER model, Rodas5P + InterpolatingAdjoint.

Data: ROBER (Robertson 1966) with k = (0.04, 3e7, 1e4) observed at 30 log-spaced times in [1e-5, T] (our own
Rodas5P solve at rtol 1e-10 generates it). Model: mass-action kinetics with the three rate constants learned
in log space (started 50% off), plus an MLP correction (3-16-3, tanh, scaled by 1e-3). The model is as stiff as
ROBER itself (eigenvalues down to about -1e4), so explicit solvers need ~1e4+ steps per solve; Rodas5P needs
about a hundred, and the checkpointed interpolating adjoint solves the adjoint stiffly too.

Run:  python examples/stiff_neural_ode.py [--iters 60] [--t-end 100]
Writes examples/output/stiff_neural_ode.png (fit and loss curve).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pysciml as ps  # noqa: E402
from pysciml import problems  # noqa: E402

K_TRUE = (0.04, 3e7, 1e4)
SCALE = torch.tensor([1.0, 1e4, 1.0], dtype=torch.float64)  # y2 lives around 1e-5: weigh it up


class RoberSurrogate(torch.nn.Module):
    """``dy/dt = mass_action(y; exp(logk)) + 1e-3 * MLP(y)``."""

    def __init__(self, k0: tuple[float, float, float]) -> None:
        super().__init__()
        self.logk = torch.nn.Parameter(torch.log(torch.tensor(k0, dtype=torch.float64)))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
        torch.nn.init.zeros_(self.mlp[2].weight)
        torch.nn.init.zeros_(self.mlp[2].bias)
        self.calls = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        k1, k2, k3 = torch.exp(self.logk)
        r1, r2, r3 = k1 * y[0], k2 * y[1] ** 2, k3 * y[1] * y[2]
        kinetics = torch.stack((-r1 + r3, r1 - r2 - r3, r2))
        return kinetics + 1e-3 * self.mlp(y * SCALE)


def make_data(t_end: float, n: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.cat((torch.zeros(1, dtype=torch.float64),
                   torch.logspace(-5, math.log10(t_end), n - 1, dtype=torch.float64)))
    sol = ps.solve(problems.rober((0.0, t_end)), ps.Rodas5P(), rtol=1e-10, atol=1e-14, saveat=t)
    return t, sol.u


def train(iters: int = 60, t_end: float = 100.0, lr: float = 0.05, seed: int = 0,
          alg: ps.Algorithm | None = None, sensealg=None, verbose: bool = True) -> dict:
    torch.manual_seed(seed)
    t, data = make_data(t_end)
    model = RoberSurrogate(tuple(k * 1.5 for k in K_TRUE))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    alg = alg or ps.Rodas5P()
    sensealg = sensealg or ps.InterpolatingAdjoint(checkpointing=True)
    y0 = data[0]
    losses, times, nfe_f, nfe_b = [], [], [], []
    for it in range(iters):
        t0 = time.perf_counter()
        opt.zero_grad()
        model.calls = 0
        pred = ps.odeint(model, y0, t, alg=alg, sensealg=sensealg, rtol=1e-6, atol=1e-10)
        fwd = model.calls
        loss = ((pred - data) * SCALE).pow(2).mean()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        nfe_f.append(fwd)
        nfe_b.append(model.calls - fwd)
        losses.append(float(loss))
        if verbose and (it % 10 == 0 or it == iters - 1):
            k = torch.exp(model.logk).tolist()
            print(f"iter {it:3d}  loss {losses[-1]:.3e}  k = ({k[0]:.4g}, {k[1]:.4g}, {k[2]:.4g})  "
                  f"NFE fwd/bwd {fwd}/{model.calls - fwd}  {times[-1]:.2f}s")
    return {"model": model, "t": t, "data": data, "losses": losses, "times": times, "nfe_f": nfe_f,
            "nfe_b": nfe_b}


def plot(result: dict, out: Path) -> Path:
    model, t, data, losses = result["model"], result["t"], result["data"], result["losses"]
    with torch.no_grad():
        tt = torch.cat((torch.zeros(1, dtype=torch.float64),
                        torch.logspace(-5, math.log10(float(t[-1])), 200, dtype=torch.float64)))
        fit = ps.odeint(model, data[0], tt, alg=ps.Rodas5P(), rtol=1e-8, atol=1e-12)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for i, name in enumerate(("y1", "y2 x 1e4", "y3")):
        ax1.semilogx(t[1:], (data[1:, i] * SCALE[i]), "o", ms=4, label=f"data {name}")
        ax1.semilogx(tt[1:], (fit[1:, i] * SCALE[i]), "-", label=f"model {name}")
    ax1.set_xlabel("t")
    ax1.set_title("ROBER surrogate after training (Rodas5P + InterpolatingAdjoint)")
    ax1.legend(fontsize="small", ncol=2)
    ax2.semilogy(losses)
    ax2.set_xlabel("Adam iteration")
    ax2.set_ylabel("loss")
    ax2.set_title("training loss")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--t-end", type=float, default=100.0)
    args = parser.parse_args()
    result = train(args.iters, args.t_end)
    out = plot(result, Path(__file__).parent / "output" / "stiff_neural_ode.png")
    print(f"loss {result['losses'][0]:.3e} -> {result['losses'][-1]:.3e}; wrote {out}")


if __name__ == "__main__":
    main()
