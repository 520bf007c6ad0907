"""Stiff quick start: ROBER and Van der Pol (mu = 1e3) with Rodas5P and KenCarp4, plotted.

Run:  python examples/stiff_quickstart.py   (writes examples/output/stiff_quickstart.png)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pysciml as ps  # noqa: E402
from pysciml import problems  # noqa: E402


def main(out: Path = Path(__file__).parent / "output" / "stiff_quickstart.png") -> Path:
    # ROBER: three species, rate constants 0.04, 3e7, 1e4; stiff over 11 decades of time.
    rober = problems.rober((0.0, 1e5))
    sol = ps.solve(rober, ps.Rodas5P(), rtol=1e-6, atol=1e-10)
    ref = problems.reference("rober", 1e5)
    print(f"ROBER  Rodas5P: {sol.retcode.value}, {sol.stats}")
    err = float(((sol.u[-1] - ref) / ref).abs().max())
    print(f"       u(1e5) = {sol.u[-1].tolist()}, max rel. error vs reference {err:.1e}")

    # Van der Pol, mu = 1e3: relaxation oscillations with fast jumps.
    vdp = problems.van_der_pol(mu=1e3, tspan=(0.0, 3000.0))
    sol_v = ps.solve(vdp, ps.KenCarp4(), rtol=1e-6, atol=1e-8)
    print(f"VdP    KenCarp4: {sol_v.retcode.value}, {sol_v.stats}")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    ts = torch.logspace(-6, 5, 400, dtype=torch.float64)
    us = sol(ts)
    for i, (name, scale) in enumerate((("y1", 1.0), ("y2 x 1e4", 1e4), ("y3", 1.0))):
        ax1.semilogx(ts, us[:, i] * scale, label=name)
    ax1.set_title("ROBER, Rodas5P (dense output)")
    ax1.set_xlabel("t")
    ax1.legend()
    sol_v.plot(ax2, idxs=[0], labels=["u1"])
    ax2.set_title("Van der Pol mu = 1e3, KenCarp4")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
