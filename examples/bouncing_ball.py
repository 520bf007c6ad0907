"""A bouncing ball: a ContinuousCallback flips the velocity where the height crosses zero going down.

Ball dropped from rest at height 1 under gravity g = 9.81, restitution 0.9 (the speed after a bounce is 0.9 times
the speed before). Between bounces the motion is exact for any Runge-Kutta method (a quadratic), so the bounce
times are the analytic ones up to the root finder's tolerance:

    t_1 = sqrt(2 h / g),   t_{k+1} = t_k + 2 v_k / g,   v_1 = g t_1,  v_{k+1} = 0.9 v_k.

Run:  python examples/bouncing_ball.py   (writes docs/results/bouncing_ball.png, prints the bounce times)
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pysciml as ps  # noqa: E402

G = 9.81
RESTITUTION = 0.9


def fall(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """u = (height, velocity)."""
    return torch.stack((u[1], torch.full_like(u[1], -G)))


def floor(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return u[0]


def bounce(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.stack((u[0], -RESTITUTION * u[1]))


def analytic_bounces(h0: float, t_end: float) -> list[float]:
    t = math.sqrt(2 * h0 / G)
    v, out = G * t, []
    while t <= t_end:
        out.append(t)
        v *= RESTITUTION
        t += 2 * v / G
    return out


OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "bouncing_ball.png"


def main(out: Path = OUT, t_end: float = 5.0) -> dict[str, float]:
    prob = ps.ODEProblem(fall, torch.tensor([1.0, 0.0], dtype=torch.float64), (0.0, t_end))
    cb = ps.ContinuousCallback(floor, bounce, direction="down")
    sol = ps.solve(prob, ps.Tsit5(), rtol=1e-10, atol=1e-12, callback=cb)
    times = sol.t_events[0]
    exact = torch.tensor(analytic_bounces(1.0, t_end), dtype=torch.float64)
    print(f"{sol.retcode.value}: {sol.stats}")
    print(" bounce   t (pysciml)          t (analytic)         difference")
    for k, (a, b) in enumerate(zip(times.tolist(), exact.tolist(), strict=False)):
        print(f"  {k + 1:>3}   {a:.15f}   {b:.15f}   {a - b:+.2e}")
    n = min(times.numel(), exact.numel())
    worst = float((times[:n] - exact[:n]).abs().max())
    print(f"{times.numel()} bounces found, {exact.numel()} analytic; largest difference {worst:.2e}")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ts = torch.linspace(0.0, t_end, 2000, dtype=torch.float64)
    ax.plot(ts, sol(ts)[:, 0], label="height (dense output)")
    ax.plot(times, torch.zeros_like(times), "o", ms=4, label="bounces (sol.t_events)")
    ax.set_xlabel("t")
    ax.set_title(f"Bouncing ball, restitution {RESTITUTION}, Tsit5 + ContinuousCallback")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    return {"bounces": float(times.numel()), "analytic": float(exact.numel()), "max_error": worst}


if __name__ == "__main__":
    main()
