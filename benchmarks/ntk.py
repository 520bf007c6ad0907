"""Task: time to form a 5,000 x 5,000 operator NTK (issue 15), on the CPU or a GPU.

The kernel: ``K_T = J_T J_T^T`` with ``T`` the Laplacian of a 2-D network (and ``T`` = identity for comparison),
``J_T`` the Jacobian of ``T[u]`` at every point with respect to all parameters, formed by
:func:`pysciml.analysis.operator_ntk` (per-point ``torch.func`` Jacobians of the operator, in chunks of points;
the Jacobian of all points is kept when it fits in ``max_bytes``, then one matrix product per block). The
network: :class:`pysciml.analysis.NTKNetwork`, 2 inputs, 3 hidden layers of 128 tanh units (33,665 parameters),
float64; the points: uniform in ``[-1, 1]^2``.

Reported: wall time of one kernel (after a small warm-up kernel), its size in memory, the peak resident memory
of the process, and a check: a 50 x 50 block against :func:`pysciml.analysis.empirical_ntk` of the same operator
(relative difference) and the smallest eigenvalue of that block over the largest (PSD to round-off).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import torch

from pysciml.analysis import NTKNetwork, empirical_ntk, network_function, operator, operator_ntk, parameters_of

from .common import environment, markdown_table, result_name, start_task, synced, write_result


@dataclass
class Size:
    n: int
    width: int
    depth: int
    chunk: int


SIZES = {"full": Size(5000, 128, 3, 500), "smoke": Size(200, 16, 2, 64)}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # kB on Linux


def measure(cfg: Size, device: str) -> tuple[list[list[object]], list[str]]:
    gen = torch.Generator().manual_seed(0)
    net = NTKNetwork(2, cfg.width, cfg.depth, "tanh", sigma_b=1.0, generator=gen).to(device)
    x = (torch.rand(cfg.n, 2, dtype=torch.float64, generator=gen) * 2 - 1).to(device)
    n_params = sum(p.numel() for p in net.parameters())
    rows: list[list[object]] = []
    notes: list[str] = []
    for name in ("identity", "laplacian"):
        op = operator(name)
        operator_ntk(net, x[:16], op1=op, chunk=8)  # warm-up (first torch.func traces)

        def form(op=op) -> torch.Tensor:  # type: ignore[no-untyped-def]
            return operator_ntk(net, x, op1=op, chunk=cfg.chunk, vmap_chunk=64, max_bytes=2 * 2 ** 30)

        t0 = time.perf_counter()
        k = synced(form, device)()
        seconds = time.perf_counter() - t0
        sub = x[:50]
        ref = empirical_ntk(network_function(net, op), None, parameters_of(net), sub)
        rel = float((k[:50, :50] - ref).abs().max() / ref.abs().max())
        ev = torch.linalg.eigvalsh(k[:50, :50].cpu())
        rows.append([name, cfg.n, n_params, seconds, k.numel() * k.element_size() / 2 ** 20, peak_rss_gib(),
                     f"{rel:.1e}", f"{float(ev[0] / ev[-1]):.1e}"])
        del k
    notes.append(f"network: NTKNetwork(2, {cfg.width}, {cfg.depth}, 'tanh'), {n_params} parameters, float64; "
                 f"blocks of {cfg.chunk} points, vmap chunks of 64 points")
    return rows, notes


def report(rows: list[list[object]], notes: list[str], cfg: Size, device: str, seconds: float) -> str:
    lines = [
        f"# Forming a {cfg.n:,} x {cfg.n:,} operator NTK",
        "",
        f"Device: {device}. " + "; ".join(notes) + ".",
        "",
        markdown_table(["T", "points", "parameters", "seconds", "kernel [MiB]", "peak RSS [GiB]",
                        "50x50 block vs empirical_ntk (rel.)", "lambda_min / lambda_max of the block"], rows),
        "",
        f"Environment: {environment()}",
        f"(run took {seconds:.1f} s)",
        "",
    ]
    return "\n".join(lines)


def main(size: str = "full", device: str = "cpu") -> str:
    skip = start_task("ntk (operator NTK formation)", device)
    if skip is not None:
        return skip
    cfg = SIZES[size]
    t0 = time.perf_counter()
    rows, notes = measure(cfg, device)
    text = report(rows, notes, cfg, device, time.perf_counter() - t0)
    write_result(result_name("ntk", size, device), text)
    return text


if __name__ == "__main__":
    print(main())
