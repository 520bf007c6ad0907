"""Compiled fixed-step splitting solves, CPU time per step: eager vs the per-step program vs the whole-loop program.

``python -m benchmarks symplectic_loop`` (writes ``benchmarks/results/symplectic_loop.md``): the pendulum
(``x'' = -2 sin x``) and a Kepler orbit (e = 0.5) of
``tests/test_compiled_symplectic.py``, one trajectory in float64, 2,000 steps of 0.01 by VelocityVerlet and
Yoshida4, saving at the two ends (``saveat``), ``compile=True`` with :mod:`pysciml.engine.compiled_loop_symplectic`'s
``ENABLED`` off (the per-step program in the eager loop) and on (the loop program). Each solve is timed after a
warm-up solve of its own (compiling there), as process CPU time (``time.process_time``) divided by the steps,
the median of ``ROUNDS`` rounds that run every variant once.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

import pysciml as ps
from pysciml.engine import compiled_loop_symplectic

from .common import environment, start_task, write_result

F64 = torch.float64
ROUNDS = 5


def pendulum(t: torch.Tensor, x: torch.Tensor, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return -p[..., :1] * torch.sin(x)


def kepler(t: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return -x / (r * r * r)


def problems() -> dict[str, ps.SecondOrderODEProblem]:
    e = 0.5
    return {
        "pendulum": ps.SecondOrderODEProblem(pendulum, torch.tensor([1.0], dtype=F64), torch.tensor([0.0], dtype=F64),
                                             (0.0, 20.0), torch.tensor([2.0], dtype=F64)),
        "Kepler": ps.SecondOrderODEProblem(kepler, torch.tensor([1.0 - e, 0.0], dtype=F64),
                                           torch.tensor([0.0, ((1 + e) / (1 - e)) ** 0.5], dtype=F64), (0.0, 20.0)),
    }


def solve(prob: ps.SecondOrderODEProblem, alg: ps.Algorithm, variant: str) -> ps.ODESolution:
    compiled_loop_symplectic.ENABLED = variant == "loop program"
    try:
        return ps.solve(prob, alg, dt=0.01, saveat=torch.tensor(prob.tspan, dtype=F64),
                        compile=variant != "eager")
    finally:
        compiled_loop_symplectic.ENABLED = True


def main(size: str = "full", device: str = "cpu") -> str:
    """Run the comparison (CPU only; ``size`` is ignored); write and return the markdown report."""
    if device != "cpu":
        return "# symplectic_loop: CPU only\n"
    start_task("symplectic_loop", device)
    load0 = os.getloadavg()[0]
    variants = ("eager", "per-step program", "loop program")
    rows = []
    for name, prob in problems().items():
        for alg in (ps.VelocityVerlet(), ps.Yoshida4()):
            first = {}
            for v in variants:
                start = time.perf_counter()
                ref = solve(prob, alg, v)
                first[v] = time.perf_counter() - start
            times: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(ROUNDS):
                for v in variants:
                    start = time.process_time()
                    sol = solve(prob, alg, v)
                    times[v].append((time.process_time() - start) / sol.stats.nloop)
                    assert sol.stats.nloop == ref.stats.nloop == 2000
            med = {v: 1e6 * statistics.median(times[v]) for v in variants}
            rows.append(f"| {name} | {alg.name} | " + " | ".join(f"{med[v]:.1f}" for v in variants)
                        + f" | {first['loop program']:.0f} |")
    head = ("| problem | method | eager us/step | per-step program us/step | loop program us/step | first loop solve s "
            "(compiling) |\n|---|---|---|---|---|---|")
    text = (f"# Compiled fixed-step splitting solves: CPU time per step\n\nMachine: {environment()}. Load average "
            f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (shared machine).\n\n"
            + " ".join(__doc__.split("\n\n")[1].split("\n")).strip() + "\n\n" + head + "\n" + "\n".join(rows)
            + "\n")
    write_result("symplectic_loop", text)
    return text


if __name__ == "__main__":
    print(main())
