"""Streamed and distributed ensembles: N perturbed ROBER trajectories (default 100,000) to t = 1e5.

``python -m benchmarks.ensemble_distributed [--n N] [--batch-size B] [--smoke]`` writes
``benchmarks/results/ensemble_distributed[_smoke].md``.

The problem is task 3's (:mod:`benchmarks.ensemble`): ROBER with the rate constants perturbed uniformly by up to
+-10% (NumPy seed 0), ``Rodas5P``, rtol 1e-6, atol 1e-10, analytic Jacobian, float64. The ensemble keeps the
final state of every trajectory only through ``MeanVarReduction`` (mean and variance over trajectories);
``prob_func`` writes trajectory ``i``'s rates into the safety copy's ``p`` in place. Three runs, each in fresh
processes with one torch thread per process:

- **one process**: ``EnsembleBatched(batch_size)``, streamed batch by batch;
- **two processes**: ``EnsembleDistributed(batch_size)`` on a 2-rank gloo group on 127.0.0.1 (spawned by
  torch.multiprocessing), timed on rank 0 from a barrier after the warm-up to the result;
- **unchunked**: one batched solve of all N (``problems.rober(k=(N, 3))``, only ``t1`` saved), the memory
  baseline a streamed ensemble avoids.

Memory: the peak resident set during the solve above the resident set before it (Linux: ``VmHWM`` reset through
``/proc/self/clear_refs`` after the warm-up). Each process solves a small ensemble first (warm-up, not timed).
The machine's load average is recorded before and after each run: on a shared machine the speed-up is distorted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch

import pysciml as ps
from pysciml import problems
from pysciml.ensemble import EnsembleBatched, EnsembleDistributed, EnsembleProblem, MeanVarReduction

from .common import environment, markdown_table, write_result
from .ensemble import ATOL, RTOL, T1, rate_constants

SMOKE_T1 = 40.0


def ensemble_problem(k: torch.Tensor, t1: float) -> EnsembleProblem:
    """Trajectory ``i`` has rates ``k[i]``; the ensemble keeps the running mean and variance of ``u(t1)``."""
    def prob_func(prob, i, repeat):
        prob.p.copy_(k[i])  # the safety copy's own p (a clone): cheaper than remake's checks
        return prob

    return EnsembleProblem(problems.rober((0.0, t1)), prob_func, lambda sol, i: (sol.u[-1], False),
                           MeanVarReduction())


def _rss(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) * 1024


def _measured(run) -> tuple[Any, float, float, float | None]:
    """``run()``'s value, wall seconds, CPU seconds of this process, and peak resident bytes above the start
    (None off Linux)."""
    before = None
    if Path("/proc/self/clear_refs").exists():
        before = _rss("VmRSS:")
        Path("/proc/self/clear_refs").write_text("5")
    start, cpu = time.perf_counter(), time.process_time()
    value = run()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return value, seconds, cpu, None if before is None else _rss("VmHWM:") - before


def _solve(eprob: EnsembleProblem, n: int, ensemble: Any):
    return ps.solve(eprob, ps.Rodas5P(), trajectories=n, ensemble=ensemble, rtol=RTOL, atol=ATOL)


def _one_process(mode: str, n: int, batch_size: int, t1: float, out: str) -> None:
    torch.set_num_threads(1)
    k = torch.from_numpy(rate_constants(n))
    if mode == "streamed":
        eprob = ensemble_problem(k, t1)
        _solve(eprob, min(n, 64), EnsembleBatched(64))  # warm-up
        sol, seconds, cpu, peak = _measured(lambda: _solve(eprob, n, EnsembleBatched(batch_size)))
        mean, var, ok = sol.u.mean.tolist(), sol.u.var.tolist(), sol.success
    else:
        warm = problems.rober((0.0, t1), k=k[:64])
        ps.solve(warm, ps.Rodas5P(), rtol=RTOL, atol=ATOL, saveat=[t1])
        sol, seconds, cpu, peak = _measured(lambda: ps.solve(problems.rober((0.0, t1), k=k), ps.Rodas5P(), rtol=RTOL,
                                                        atol=ATOL, saveat=[t1]))
        end = sol.u[-1]
        mean, var, ok = end.mean(0).tolist(), end.var(0).tolist(), sol.success
    Path(out).write_text(json.dumps(dict(seconds=seconds, cpu=cpu, peak=peak, mean=mean, var=var, success=ok)))


def _rank(rank: int, port: int, n: int, batch_size: int, t1: float, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                         timeout=datetime.timedelta(minutes=30))
    k = torch.from_numpy(rate_constants(n))
    eprob = ensemble_problem(k, t1)
    _solve(eprob, min(n, 64), EnsembleBatched(64))  # warm-up
    torch.distributed.barrier()
    sol, seconds, cpu, peak = _measured(lambda: _solve(eprob, n, EnsembleDistributed(batch_size, timeout=1800.0)))
    if rank == 0:
        Path(out).write_text(json.dumps(dict(seconds=seconds, cpu=cpu, peak=peak, mean=sol.u.mean.tolist(),
                                             var=sol.u.var.tolist(), success=sol.success)))
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(fn, args: tuple, nprocs: int, out: Path) -> dict[str, Any]:
    import torch.multiprocessing as mp

    load = os.getloadavg()[0]
    mp.start_processes(fn, args=args, nprocs=nprocs, start_method="spawn")
    res = json.loads(out.read_text())
    res["load"] = (load, os.getloadavg()[0])
    return res


def main(n: int = 100_000, batch_size: int = 10_000, smoke: bool = False) -> str:
    t1 = SMOKE_T1 if smoke else T1
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"pysciml_ens_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    one = _run(_spawned_one, ("streamed", n, batch_size, t1, str(tmp / "one.json")), 1, tmp / "one.json")
    two = _run(_rank, (_free_port(), n, batch_size, t1, str(tmp / "two.json")), 2, tmp / "two.json")
    flat = _run(_spawned_one, ("unchunked", n, batch_size, t1, str(tmp / "flat.json")), 1, tmp / "flat.json")
    mib = lambda b: "-" if b is None else f"{b / 2**20:.1f}"  # noqa: E731
    rows = [[f"one process, EnsembleBatched({batch_size})", one["seconds"], 1.0, one["cpu"], mib(one["peak"]),
             "{:.2f} -> {:.2f}".format(*one["load"])],
            [f"two processes (gloo), EnsembleDistributed({batch_size})", two["seconds"],
             one["seconds"] / two["seconds"], f"{two['cpu']:.3g} (rank 0)", mib(two["peak"]) + " (rank 0)",
             "{:.2f} -> {:.2f}".format(*two["load"])],
            [f"one unchunked batched solve of {n}", flat["seconds"], one["seconds"] / flat["seconds"], flat["cpu"],
             mib(flat["peak"]), "{:.2f} -> {:.2f}".format(*flat["load"])]]
    same = one["mean"] == two["mean"] and one["var"] == two["var"]
    rel = max(abs(a - b) / abs(b) for a, b in zip(one["mean"], flat["mean"], strict=True))
    table = markdown_table(["run", "wall time [s]", "wall-time speed-up vs one process", "CPU time [s]",
                            "peak memory above start [MiB]",
                            "load average (1 min) before -> after"], rows)
    text = (
        f"# Streamed and distributed ensemble ({'smoke' if smoke else 'full'})\n\n"
        f"Machine: {environment()}. One torch thread per process; the machine is shared with other jobs (load "
        f"averages in the table), so wall times measure the share of the cores the processes got; the CPU time of "
        f"one process (rank 0 for the two-process run) is the work it did.\n\n"
        f"{n} ROBER trajectories to t = {t1:g}, rates perturbed by up to +-10% (seed 0), Rodas5P, rtol {RTOL:g}, "
        f"atol {ATOL:g}; the ensemble folds u(t1) into its mean and variance batch by batch "
        f"(MeanVarReduction), batches of {batch_size}.\n\n{table}\n\n"
        f"All trajectories succeeded: {one['success'] and two['success'] and flat['success']}. Mean and variance "
        f"of u(t1): two processes {'equal to' if same else 'DIFFERENT from'} one process bit for bit; the "
        f"unchunked solve's mean agrees to {rel:.1e} (relative).\n\n"
        f"Total benchmark wall time: {time.perf_counter() - start:.0f} s.\n"
    )
    write_result("ensemble_distributed_smoke" if smoke else "ensemble_distributed", text)
    return text


def _spawned_one(rank: int, *args: Any) -> None:
    _one_process(*args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="2,000 trajectories to t = 40, batches of 500")
    a = parser.parse_args()
    n = a.n or (2_000 if a.smoke else 100_000)
    print(main(n, a.batch_size or (500 if a.smoke else 10_000), a.smoke))
