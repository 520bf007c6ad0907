"""Compiled stiff solves per step: eager vs one compiled program per step vs the whole loop as one program.

ROBER (t1 = 1e5), the Oregonator (t1 = 360), HIRES (t1 = 321.8122) and Van der Pol (mu = 1e3, t1 = 6.3), each
at rtol 1e-6, atol 1e-10, saving only ``t1``, by Rodas5P with pysciml's autodiff Jacobian (the problem without
its ``jac``, as a user who writes only ``f`` calls it), float64, on one trajectory and on a batch of 256
(every parameter, or for HIRES the nonzero initial values, scaled by a factor in ``[0.99, 1.01]``, seed 0). Three ways:

- ``eager``: ``compile=False``;
- ``per-step compiled``: ``compile=True`` with the whole-loop programs switched off
  (``pysciml.engine.compiled_loop.ENABLED = False``): the step and, on a batch, the loop's control are one
  program called once per step, with one host round trip per step (:mod:`pysciml.engine.compiled_control`);
- ``whole loop``: ``compile=True`` as it runs by default here: the whole loop as one ``torch.while_loop``
  program (:mod:`pysciml.engine.compiled_loop`).

Time per step: the median CPU time of the process per solve (after ``pysciml.warmup`` and one warm-up solve;
5 runs, 3 over 0.5 s, 1 over 2 s; wall time beside it: on the shared machine this was written on, wall time
carried the other jobs' load) over the loop's iterations (``sol.stats.nloop``: accepted plus rejected steps,
of the batch as a whole). Compile time (``pysciml.warmup`` plus the warm-up solve's ``stats.compile_time``) is
reported apart. The step counts and statistics of the three are compared (they should be equal). Torch on one thread.
Sizes: ``full`` (all of the above), ``smoke`` (ROBER only, to t1 = 1, batch 4).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

import pysciml as ps
from pysciml.engine import compiled_control, compiled_loop, compiled_loop_bdf, compiled_loop_firk

from .common import environment, markdown_table, one_thread, result_name, write_result

RTOL, ATOL = 1e-6, 1e-10
COUNTS = ("naccept", "nreject", "nloop", "njac", "nlu", "nf")
WAYS = ("eager", "per-step compiled", "whole loop")
T = TypeVar("T")


def _factors(b: int, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return 1.0 + 0.02 * (torch.rand(b, n, generator=gen, dtype=torch.float64) - 0.5)


def cases(size: str) -> list[tuple[str, Callable[[int], ps.ODEProblem]]]:
    """``(title, batch -> problem)``; batch 1 is one trajectory (state ``(n,)``), else ``(batch, n)``."""
    from pysciml import problems

    def autodiff(prob: ps.ODEProblem) -> ps.ODEProblem:
        return ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p, batched=prob.batched)

    def rates(make: Callable[..., ps.ODEProblem], key: str, p: tuple[float, ...], **kw: object) -> Callable:
        def build(b: int) -> ps.ODEProblem:
            if b == 1:
                return autodiff(make(**kw))
            return autodiff(make(**kw, **{key: torch.tensor(p, dtype=torch.float64) * _factors(b, len(p))}))
        return build

    def hires(b: int) -> ps.ODEProblem:
        prob = problems.hires()
        if b == 1:
            return autodiff(prob)
        return ps.ODEProblem(prob.f, prob.u0 * _factors(b, 8), prob.tspan, batched=True)

    def vdp(b: int) -> ps.ODEProblem:
        prob = autodiff(problems.van_der_pol(1e3, (0.0, 6.3)))
        if b == 1:
            return prob
        u0 = prob.u0.expand(b, 2).clone()
        return ps.ODEProblem(prob.f, u0, prob.tspan, prob.p * _factors(b, 1), batched=True)

    rober_k = (0.04, 3e7, 1e4)
    if size == "smoke":
        return [("ROBER, t1=1", rates(problems.rober, "k", rober_k, tspan=(0.0, 1.0)))]
    return [("ROBER, t1=1e5", rates(problems.rober, "k", rober_k, tspan=(0.0, 1e5))),
            ("Oregonator, t1=360", rates(problems.oregonator, "p", (77.27, 0.161, 8.375e-6))),
            ("HIRES, t1=321.8122", hires),
            ("Van der Pol mu=1e3, t1=6.3", vdp)]


@contextlib.contextmanager
def loop_route() -> Iterator[dict[str, int]]:
    """Count which compiled loop the solves inside the block run: ``{"whole": calls of
    compiled_loop.integrate_batched_whole, "per-step": calls of compiled_control.integrate_batched_compiled,
    "bdf": calls of compiled_loop_bdf.integrate (the FBDF/QNDF/QBDF loop program), "bdf-eager": those of them
    that returned no result (a failed compile: the eager BDF loop solved), "firk" and "firk-eager": the same for
    compiled_loop_firk.integrate_whole (the RadauIIA loop program)}``. A solve that took the whole loop adds
    1 to ``whole`` only; one that fell back to the per-step programs (a failed loop compile) adds 1 to both; one
    the whole loop does not handle, 1 to ``per-step`` only."""
    calls = {"whole": 0, "per-step": 0, "bdf": 0, "bdf-eager": 0, "firk": 0, "firk-eager": 0}
    real_whole, real_step = compiled_loop.integrate_batched_whole, compiled_control.integrate_batched_compiled
    real_bdf, real_firk = compiled_loop_bdf.integrate, compiled_loop_firk.integrate_whole

    def whole(*args, **kwargs):
        calls["whole"] += 1
        return real_whole(*args, **kwargs)

    def step(*args, **kwargs):
        calls["per-step"] += 1
        return real_step(*args, **kwargs)

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def program(*args, **kwargs):
            calls[name] += 1
            result = real(*args, **kwargs)
            calls[f"{name}-eager"] += result is None
            return result
        return program

    compiled_loop.integrate_batched_whole, compiled_control.integrate_batched_compiled = whole, step
    compiled_loop_bdf.integrate = counted("bdf", real_bdf)
    compiled_loop_firk.integrate_whole = counted("firk", real_firk)
    try:
        yield calls
    finally:
        compiled_loop.integrate_batched_whole, compiled_control.integrate_batched_compiled = real_whole, real_step
        compiled_loop_bdf.integrate, compiled_loop_firk.integrate_whole = real_bdf, real_firk


def route_name(calls: dict[str, int]) -> str:
    """What :func:`loop_route`'s counts say: ``whole loop``, ``BDF whole loop``, ``per-step programs``, or both,
    with the counts."""
    for key, family in (("bdf", "BDF"), ("firk", "RadauIIA")):
        if calls.get(key):
            eager = calls.get(f"{key}-eager", 0)
            if not eager:
                return f"{family} whole loop ({calls[key]} solves)"
            return f"{family} whole loop tried {calls[key]}x, eager {family} loop {eager}x (fell back)"
    if not calls["whole"] and not calls["per-step"]:
        return "scalar loop (per-step programs)"
    if calls["whole"] and not calls["per-step"]:
        return f"whole loop ({calls['whole']} solves)"
    if calls["per-step"] and not calls["whole"]:
        return f"per-step programs ({calls['per-step']} solves)"
    return f"whole loop tried {calls['whole']}x, per-step programs {calls['per-step']}x (fell back)"


def timed(fn: Callable[[], T], max_runs: int = 5) -> tuple[float, float, int, T]:
    """Median wall and CPU seconds of ``fn()`` (warmed up): 5 runs, 3 over 0.5 s, 1 over 2 s (CPU time), at most
    ``max_runs``; and the last result."""
    walls, cpus = [], []
    while True:
        w, c = time.perf_counter(), time.process_time()
        sol = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        if len(cpus) >= min(max_runs, 5 if cpus[0] <= 0.5 else 3 if cpus[0] <= 2.0 else 1):
            return statistics.median(walls), statistics.median(cpus), len(cpus), sol


def measure(prob: ps.ODEProblem, way: str) -> tuple[float, float, int, float | None, ps.ODESolution]:
    """Wall and CPU seconds per solve (medians), runs, compile seconds, the last solution."""
    kw = {"rtol": RTOL, "atol": ATOL, "saveat": [prob.tspan[1]]}
    compile_ = way != "eager"
    compiled_loop.ENABLED = way != "per-step compiled"
    try:
        spent = ps.warmup(prob, ps.Rodas5P(), **kw) if compile_ else 0.0
        warm = ps.solve(prob, ps.Rodas5P(), compile=compile_, **kw)
        spent += warm.stats.compile_time
        wall, cpu, runs, sol = timed(lambda: ps.solve(prob, ps.Rodas5P(), compile=compile_, **kw))
    finally:
        compiled_loop.ENABLED = True
    return wall, cpu, runs, (spent if compile_ else None), sol


def main(size: str = "full", device: str = "cpu") -> str:
    one_thread()
    batches = (1, 4) if size == "smoke" else (1, 256)
    rows, compile_rows, ratio_rows = [], [], []
    text = ""
    for title, build in cases(size):
        for b in batches:
            per_step: dict[str, float] = {}
            counts: dict[str, tuple] = {}
            for way in WAYS:
                prob = build(b)
                t0 = time.perf_counter()
                wall, cpu, runs, spent, sol = measure(prob, way)
                s = sol.stats
                per_step[way] = cpu / s.nloop
                counts[way] = tuple(getattr(s, k) for k in COUNTS)
                ok = sol.success if b == 1 else all(r is ps.ReturnCode.Success for r in sol.retcodes)
                rows.append([title, b, way, cpu * 1e3, wall * 1e3, runs, s.nloop, s.naccept, s.nreject, s.njac,
                             s.nlu, 1e6 * per_step[way], "yes" if ok else "NO"])
                if spent is not None:
                    compile_rows.append([title, b, way, spent])
                print(f"{title} batch {b} {way}: CPU {cpu * 1e3:.1f} ms, wall {wall * 1e3:.1f} ms, "
                      f"{1e6 * per_step[way]:.1f} us/step ({time.perf_counter() - t0:.0f} s)", flush=True)
            same = "yes" if len(set(counts.values())) == 1 else "NO: " + "; ".join(
                f"{w} {dict(zip(COUNTS, c, strict=True))}" for w, c in counts.items())
            e, c, w = (per_step[x] for x in WAYS)
            ratio_rows.append([title, b, 1e6 * e, 1e6 * c, 1e6 * w, f"{e / w:.1f}x", f"{c / w:.2f}x", same])
            # written after each problem and batch, so that a run stopped early leaves the rows it measured
            text = report(size, device, ratio_rows, rows, compile_rows)
    return text


def report(size: str, device: str, ratio_rows: list, rows: list, compile_rows: list) -> str:
    """The markdown report of the rows so far, also written to the results file."""
    text = (
        f"# Compiled stiff solves: eager vs per-step compiled vs whole loop ({size})\n\n"
        f"Machine: {environment()}. Torch limited to 1 thread. Times are the process's CPU time (median of "
        "the runs; wall time in the second table): on a shared machine wall time carries the other jobs' load "
        f"(load average at the end of this run: {os.getloadavg()[0]:.1f}).\n\n"
        f"Rodas5P, autodiff Jacobian, float64, rtol {RTOL:g}, atol {ATOL:g}, saving only t1. Batches: every "
        "parameter (HIRES: nonzero initial value) scaled by a factor in [0.99, 1.01]. Time per step = median "
        "solve CPU time / loop iterations (accepted + rejected; a batch's iterations, not per trajectory). "
        "Compile time apart.\n\n"
        "## Per step\n\n"
        + markdown_table(["problem", "batch", "eager [CPU us/step]", "per-step compiled [CPU us/step]",
                          "whole loop [CPU us/step]", "eager / whole", "per-step / whole", "same steps and stats?"],
                         ratio_rows)
        + "\n\n## Solves\n\n"
        + markdown_table(["problem", "batch", "way", "CPU time [ms]", "wall time [ms]", "runs", "loop steps",
                          "accepted", "rejected", "Jacobians", "LUs", "CPU us/step", "success"], rows)
        + "\n\n## Compile times\n\n"
        + markdown_table(["problem", "batch", "way", "compile [s] (warmup + warm-up solve)"], compile_rows)
        + "\n"
    )
    write_result(result_name("stiff_loop", size, device), text)
    return text


if __name__ == "__main__":
    import sys

    print(main(sys.argv[1] if len(sys.argv) > 1 else "full"))
