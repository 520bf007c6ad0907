"""Eigenvalue decay of operator NTKs K_T = T_x T_y K, with and without T, and the lazy-training check.

Issue 15, reproduction (a), after Gan, Li, Lin & Shi, "Neural tangent kernel of neural networks with loss informed
by differential operators", arXiv 2503.11029: the paper proves that K_T converges at initialisation and stays close
during training for wide networks, and finds that in most cases T does not make the eigenvalues decay faster.

Three measurements (networks: :class:`pysciml.analysis.NTKNetwork`, NTK parameterisation, sigma_w = 1,
sigma_b = 1, float64; kernels: :func:`pysciml.analysis.operator_ntk`):

1. Decay exponents: T in {identity, d/dx, Laplacian, biharmonic (4th order)}, 1-D points (``N1`` uniform in
   [-1, 1]) and 2-D points (a ``G x G`` grid of [-1, 1]^2; d/dx = d/dx_0 there), activations tanh, erf, softplus
   and ReLU^5 (``relu5``: ReLU^k with k = 5 so that fourth derivatives exist), width 256, 2 hidden layers
   (the 2-D biharmonic, whose four fourth-order partials dominate the run time, only with ``--full``).
   ``alpha`` of ``lambda_k ~ C k^-alpha`` is fitted on two ranges: the fixed ``k = 2..16`` (the same for every
   kernel, so the operators are compared on equal terms) and the automatic range (up to the last eigenvalue above
   ``1e-10 lambda_1``), both stated with R^2; plus the infinite-width erf kernels (:func:`analytic_ntk`, not
   for the biharmonic: its eighth-order nested forward-mode derivatives take minutes).
2. Width and depth: tanh, 1-D, widths 64, 256, 1024 (and 4096 with ``--full``) at 2 hidden layers, depths 2, 3, 4
   hidden layers at width 256 (the biharmonic for width x depth <= 512 only, unless ``--full``).
3. Lazy training: the network of 2. (tanh, 2 hidden layers) trained by full-batch gradient descent on the PINN
   loss of ``u'' = -pi^2 sin(pi x)``, ``u(+-1) = 0`` (``N1`` residual points, the two boundary points) for
   ``--steps`` steps at ``lr = 1 / (2 lambda_max(K_rr) / N_r + lambda_max(K_bb))`` (an upper bound of the largest
   Gauss-Newton curvature of the loss at initialisation, so the steps stay below the edge of stability); reported:
   ``||K_T(end) - K_T(0)||_F / ||K_T(0)||_F`` for T = identity and Laplacian, against the width (the theory:
   falling like ``width^-1/2``).

Run:  python examples/ntk_spectra.py [--full]   (default: about 10 minutes on 2 CPU cores)
Writes docs/results/ntk_spectra.md and docs/results/ntk_spectra.png.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from pysciml.analysis.ntk_analytic import NTKNetwork, analytic_ntk
from pysciml.analysis.ntk_blocks import operator, operator_ntk
from pysciml.analysis.ntk_spectrum import eigenvalues, fit_decay

DT = torch.float64
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
OPS = ("identity", "d/dx", "laplacian", "biharmonic")
ACTS = ("tanh", "erf", "softplus", "relu5")
FIXED = (2, 16)


def points(dim: int, n1: int, grid: int) -> torch.Tensor:
    if dim == 1:
        return torch.linspace(-1, 1, n1, dtype=DT)[:, None]
    g = torch.linspace(-1, 1, grid, dtype=DT)
    return torch.cartesian_prod(g, g)


def net_for(d: int, width: int, depth: int, act: str, seed: int = 0) -> NTKNetwork:
    return NTKNetwork(d, width, depth, act, sigma_w=1.0, sigma_b=1.0, generator=torch.Generator().manual_seed(seed))


def chunk_for(width: int, depth: int) -> tuple[int, int]:
    """(chunk, max_bytes): keep Jacobian blocks under ~400 MB."""
    p = width * width * (depth - 1) + 3 * width
    return max(4, min(512, int(4e8 / (8 * p)))), int(1.5e9)


def fits(ev: torch.Tensor) -> tuple[str, str]:
    """alpha on the fixed range (cut at the round-off floor if the spectrum reaches it earlier: the range used is
    then stated) and on the automatic range."""
    floor = int((ev > 1e-10 * ev[0]).sum())
    if floor < FIXED[0] + 2:
        return "n/a (rank < 4)", "n/a"
    stop = min(FIXED[1], floor)
    a = fit_decay(ev, start=FIXED[0], stop=stop)
    b = fit_decay(ev, rtol=1e-10)
    cut = "" if stop == FIXED[1] else f", k = {FIXED[0]}..{stop}"
    return (f"{a.exponent:.2f} ({a.r2:.2f}{cut})", f"{b.exponent:.2f} (k = {b.start}..{b.stop}, {b.r2:.2f})")


def decay_table(n1: int, grid: int, log: list[str], full: bool,
                width: int = 256) -> tuple[list[str], dict[str, torch.Tensor]]:
    rows, spectra = [], {}
    for dim in (1, 2):
        x = points(dim, n1, grid)
        for act in ACTS:
            net = net_for(dim, width, 2, act)
            chunk, max_bytes = chunk_for(width, 2)
            for name in OPS:
                if dim == 2 and name == "biharmonic" and not full:
                    rows.append(f"| {dim}-D ({len(x)} pts) | {act} | {name} | (with --full) | | |")
                    continue
                t0 = time.perf_counter()
                k = operator_ntk(net, x, op1=operator(name), chunk=chunk, max_bytes=max_bytes, vmap_chunk=32)
                ev = eigenvalues(k)
                f_fixed, f_auto = fits(ev)
                rows.append(f"| {dim}-D ({len(x)} pts) | {act} | {name} | {float(ev[0]):.3g} | {f_fixed} | {f_auto} |")
                if dim == 1 and act == "tanh":
                    spectra[f"tanh, {name}"] = ev
                log.append(f"decay {dim}-D {act} {name}: {time.perf_counter() - t0:.1f} s")
                print(log[-1], flush=True)
        if dim == 1:
            for name in OPS[:3]:
                op = None if name == "identity" else operator(name)
                k = analytic_ntk(x, activation="erf", depth=2, sigma_b=1.0, op1=op, op2=op, chunk_size=25)
                ev = eigenvalues(k)
                f_fixed, f_auto = fits(ev)
                rows.append(f"| 1-D ({len(x)} pts) | erf, infinite width | {name} | {float(ev[0]):.3g} | {f_fixed} | "
                            f"{f_auto} |")
                spectra[f"erf limit, {name}"] = ev
    return rows, spectra


def width_depth_table(n1: int, widths: tuple[int, ...], log: list[str], full: bool) -> list[str]:
    x = points(1, n1, 0)
    rows = []
    cases = [(w, 2) for w in widths] + [(widths[min(1, len(widths) - 1)], 3), (widths[min(1, len(widths) - 1)], 4)]
    for width, depth in cases:
        net = net_for(1, width, depth, "tanh")
        chunk, max_bytes = chunk_for(width, depth)
        cells = []
        for name in OPS:
            if name == "biharmonic" and width * depth > 512 and not full:
                cells.append("(with --full)")
                continue
            t0 = time.perf_counter()
            ev = eigenvalues(operator_ntk(net, x, op1=operator(name), chunk=chunk, max_bytes=max_bytes,
                                          vmap_chunk=8))
            cells.append(fits(ev)[0])
            log.append(f"width {width} depth {depth} {name}: {time.perf_counter() - t0:.1f} s")
            print(log[-1], flush=True)
        rows.append(f"| {width} | {depth} | " + " | ".join(cells) + " |")
    return rows


def lazy_training(n1: int, widths: tuple[int, ...], steps: int,
                  log: list[str]) -> list[tuple[int, float, float, float]]:
    """(width, rel. change of K, of K_Lap, final loss)."""
    x_r = points(1, n1, 0)
    x_b = torch.tensor([[-1.0], [1.0]], dtype=DT)
    f = -math.pi ** 2 * torch.sin(math.pi * x_r[:, 0])
    lap = operator("laplacian")
    out = []
    for width in widths:
        t0 = time.perf_counter()
        net = net_for(1, width, 2, "tanh")
        chunk, max_bytes = chunk_for(width, 2)
        k0 = operator_ntk(net, x_r, chunk=chunk, max_bytes=max_bytes)
        kl0 = operator_ntk(net, x_r, op1=lap, chunk=chunk, max_bytes=max_bytes)
        kb = operator_ntk(net, x_b)
        # Gauss-Newton Hessian of L = mean(r^2) + mean(b^2) is (2/N_r) J_r^T J_r + (2/N_b) J_b^T J_b; its largest
        # eigenvalue is at most the sum of the two terms' (2/N) lambda_max: lr = 1 / that sum stays below the
        # edge of stability 2 / lambda_max (larger steps "catapult", which changes the kernels by itself)
        lr = 1.0 / (float(eigenvalues(kl0)[0]) * 2 / n1 + float(eigenvalues(kb)[0]))
        params = list(net.parameters())
        loss = torch.tensor(0.0)
        for _ in range(steps):
            xr = x_r.clone().requires_grad_(True)
            u = net(xr)
            (du,) = torch.autograd.grad(u.sum(), xr, create_graph=True)
            (d2u,) = torch.autograd.grad(du.sum(), xr, create_graph=True)
            loss = ((d2u[:, 0] - f) ** 2).mean() + (net(x_b) ** 2).mean()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p -= lr * g
        k1 = operator_ntk(net, x_r, chunk=chunk, max_bytes=max_bytes)
        kl1 = operator_ntk(net, x_r, op1=lap, chunk=chunk, max_bytes=max_bytes)
        out.append((width, float((k1 - k0).norm() / k0.norm()), float((kl1 - kl0).norm() / kl0.norm()),
                    loss.item()))
        log.append(f"lazy width {width}: {time.perf_counter() - t0:.1f} s, loss {loss.item():.3g}")
        print(log[-1], flush=True)
    return out


def plot(spectra: dict[str, torch.Tensor], lazy: list[tuple[int, float, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pysciml.analysis.ntk_spectrum import plot_spectra

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_spectra(spectra, ax=axes[0], title="1-D spectra (width 256, 2 hidden layers)")
    w = [r[0] for r in lazy]
    axes[1].loglog(w, [r[1] for r in lazy], "o-", label="K (identity)")
    axes[1].loglog(w, [r[2] for r in lazy], "s-", label="K_Laplacian")
    axes[1].loglog(w, [lazy[0][2] * (wi / w[0]) ** -0.5 for wi in w], "k:", label="width^-1/2")
    axes[1].set_xlabel("width")
    axes[1].set_ylabel("||K(end) - K(0)||_F / ||K(0)||_F")
    axes[1].set_title("change of the kernels during training")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="widths up to 4,096")
    ap.add_argument("--n1", type=int, default=64, help="1-D points")
    ap.add_argument("--grid", type=int, default=8, help="2-D grid side")
    ap.add_argument("--steps", type=int, default=200, help="gradient-descent steps of the lazy-training check")
    ap.add_argument("--widths", type=int, nargs="*", default=None, help="widths of the sweep (the second one is "
                    "also used for depths 3 and 4)")
    ap.add_argument("--width", type=int, default=256, help="width of the decay table")
    ap.add_argument("--out", default=str(RESULTS / "ntk_spectra"))
    args = ap.parse_args(argv)
    widths = tuple(args.widths) if args.widths else ((64, 256, 1024, 4096) if args.full else (64, 256, 1024))
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    t0 = time.perf_counter()
    log: list[str] = []
    decay_rows, spectra = decay_table(args.n1, args.grid, log, args.full, args.width)
    wd_rows = width_depth_table(args.n1, widths, log, args.full)
    lazy = lazy_training(args.n1, widths, args.steps, log)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(spectra, lazy, out.with_suffix(".png"))
    text = "\n".join([
        "# Eigenvalue decay of operator NTKs (issue 15, reproduction a)",
        "",
        f"`python examples/ntk_spectra.py{' --full' if args.full else ''}` ({time.perf_counter() - t0:.0f} s). "
        f"NTK parameterisation, sigma_w = sigma_b = 1, float64, one initialisation (seed 0). 1-D: {args.n1} uniform "
        f"points of [-1, 1]; 2-D: a {args.grid} x {args.grid} grid of [-1, 1]^2. alpha: fitted exponent of "
        f"lambda_k ~ C k^-alpha, with R^2 of the log-log line; fixed range k = {FIXED[0]}..{FIXED[1]}, automatic "
        "range up to the last eigenvalue above 1e-10 lambda_1.",
        "",
        "## Decay exponents, width 256, 2 hidden layers",
        "",
        f"| points | activation | T | lambda_1 | alpha, k = {FIXED[0]}..{FIXED[1]} (R^2) | "
        "alpha, automatic range (R^2) |",
        "|---|---|---|---|---|---|",
        *decay_rows,
        "",
        f"## Width and depth (tanh, 1-D): alpha on k = {FIXED[0]}..{FIXED[1]} (R^2)",
        "",
        "| width | hidden layers | " + " | ".join(OPS) + " |",
        "|---|---|" + "---|" * len(OPS),
        *wd_rows,
        "",
        f"## Lazy training: relative change of the kernels after {args.steps} gradient-descent steps on the PINN "
        "loss (tanh, 2 hidden layers)",
        "",
        "| width | K (identity) | K_Laplacian | final loss |",
        "|---|---|---|---|",
        *[f"| {w} | {a:.3g} | {b:.3g} | {c:.3g} |" for w, a, b, c in lazy],
        "",
        "![spectra and kernel change](ntk_spectra.png)",
        "",
        "Timings: " + "; ".join(log),
        "",
    ])
    out.with_suffix(".md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
