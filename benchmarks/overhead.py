"""Task 2: per-step solver overhead on Van der Pol (mu = 2), a batch of trajectories, rtol = atol = 1e-5.

Every solver integrates the same ``B`` initial states (uniform in ``[-2, 2]^2``, seed 0) over ``[0, 10]`` in
float64 and returns the states at ``t = 10``. In the same run the right-hand side alone is timed on the same
batch. Timing goes in rounds (5 at full size), each running every solver once and then ``f`` alone, so load
changes on a shared machine hit all alike; totals are medians over the rounds, ``t_f`` the median per call, and

    overhead per step = (total time - nf * t_f) / steps

where ``steps`` are the solver's loop iterations over the batch (each costs 6 calls of ``f`` for the FSAL
5(4) pairs used here) and ``nf`` counts calls of ``f`` on the whole batch. Each time is taken twice, as wall time
and as the process's CPU time (``time.process_time``; on a shared machine wall time carries the other jobs'
load). ``t_f`` is the eager ``f``'s time for the torch solvers (a compiled solver that fuses ``f`` into its
program pays less per call, so its overhead comes out smaller, or negative: total time per step is given too)
and the jitted ``f``'s for diffrax.

How each library steps the batch:
- pysciml ``solve(ODEProblem(..., batched=True), Tsit5())``: per trajectory (own ``t``, ``dt``, error norm,
  accept/reject); one loop iteration evaluates ``f`` on the whole batch. Also with ``compile=True``: saving
  only ``t1`` without dense output, the whole adaptive loop (steps, f, control, saving) is one compiled
  ``torch.while_loop`` program (:mod:`pysciml.engine.compiled_loop`; the note says which loop the solves ran,
  counted by ``stiff_loop.loop_route``); the first call compiles (its time is noted), counters from
  ``sol.stats``.
- pysciml ``odeint`` / torchdiffeq ``odeint`` (dopri5; 0.2.5 has no tsit5): the ``(B, 2)`` state is one
  system with one ``dt`` and one RMS error norm over all ``2 B`` components.
- torchode ``Tsit5`` + ``IntegralController`` (eager, and ``torch.compile``d): per trajectory, like pysciml.
- diffrax ``Tsit5`` + ``PIDController`` under ``jax.vmap`` of ``jit``: per trajectory (the vmapped while loop
  runs until the last trajectory finishes); compile time is reported separately. f calls are derived:
  ``6 * steps + 2`` (FSAL start + the initial-step trial), the same count the torch solvers report.

``--device cuda``: the torch solvers on the GPU with ``B = 100_000`` (diffrax is CPU-only here and skipped);
timings synchronise the device around every run.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import pysciml as ps

from .common import environment, markdown_table, result_name, start_task, synced, write_result
from .stiff_loop import loop_route, route_name

MU = 2.0
OURS, COMPILED = "pysciml Tsit5 (solve, batched)", "pysciml Tsit5 (solve, batched, compile=True)"
TORCHODE_COMPILED, DIFFRAX = "torchode Tsit5 (torch.compile)", "diffrax Tsit5 (jit, vmap)"
T1 = 10.0
TOL = 1e-5


@dataclass
class Size:
    batch: int
    t1: float
    repeats: int
    compile_torchode: bool
    with_diffrax: bool


SIZES = {("full", "cpu"): Size(256, T1, 5, True, True), ("smoke", "cpu"): Size(16, 2.0, 2, False, False),
         ("full", "cuda"): Size(100_000, T1, 5, True, False), ("smoke", "cuda"): Size(1024, 2.0, 2, False, False)}


def vdp(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Van der Pol, batched: ``u (B, 2) -> (B, 2)``, ``(u2, mu (1 - u1^2) u2 - u1)``; ``t`` is unused."""
    x, y = u[:, 0], u[:, 1]
    return torch.stack((y, MU * (1.0 - x * x) * y - x), dim=1)


class Counted:
    """``vdp`` with a call counter (the counted run is the untimed warm-up)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return vdp(t, u)


def initial_states(batch: int, device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(batch, 2, generator=gen, dtype=torch.float64) * 4.0 - 2.0).to(device)


@dataclass
class Row:
    solver: str
    stepping: str
    total: float  # median seconds
    steps: float  # loop iterations over the batch
    nf: float
    t_f: float
    err: float
    note: str = ""
    cpu: float = math.nan  # median CPU seconds
    t_f_cpu: float = math.nan

    @property
    def overhead(self) -> float:
        return (self.total - self.nf * self.t_f) / self.steps

    @property
    def overhead_cpu(self) -> float:
        return (self.cpu - self.nf * self.t_f_cpu) / self.steps


def f_loop(nf: int, u0: torch.Tensor) -> Callable[[], None]:
    """``nf`` calls of ``vdp`` on ``u0`` (the right-hand side alone, for ``t_f``)."""
    t = torch.zeros((), dtype=u0.dtype, device=u0.device)

    def loop() -> None:
        for _ in range(nf):
            vdp(t, u0)

    return loop


def reference(u0: torch.Tensor, t1: float) -> torch.Tensor:
    """``u(t1)`` for every trajectory by pysciml Vern7 at rtol = atol = 1e-12 (the error yardstick)."""
    prob = ps.ODEProblem(vdp, u0, (0.0, t1), batched=True)
    return ps.solve(prob, ps.Vern7(), rtol=1e-12, atol=1e-12, saveat=[t1]).u[-1]


# ----------------------------------------------------------------------------------------- torch solvers


Run = Callable[[Callable], tuple[torch.Tensor, float | None, int | None]]


@dataclass
class Prepared:
    """A solver after its warm-up run: its counts, its error, and its timed runs so far."""

    solver: str
    stepping: str
    run: Run
    steps: float
    nf: int
    err: float
    note: str = ""
    times: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)


def prepare(solver: str, stepping: str, run: Run, ref: torch.Tensor, count: bool = True) -> Prepared:
    """One untimed run with a counting ``f``: ``run(f)`` returns ``(u(t1), steps, nf)``, ``None`` where the
    library does not report them (``nf`` is then counted and ``steps = (nf - 2) / 6``). ``count=False``: the run
    gets the plain ``vdp`` (compiled solvers, whose program is specific to ``f``, report their own counts)."""
    counted = Counted()
    u1, steps, nf = run(counted if count else vdp)
    nf = nf if nf is not None else counted.calls
    return Prepared(solver, stepping, run, steps if steps is not None else (nf - 2) / 6, nf,
                    float((u1 - ref).abs().max()))


def time_rounds(cases: list[Prepared], u0: torch.Tensor, repeats: int, device: str) -> tuple[float, float]:
    """``repeats`` rounds, each timing every solver once and then ``f`` alone (``max nf`` calls), so a change in
    the machine's load hits all of them alike. Fills ``case.times`` and ``case.cpus``; returns ``t_f`` (median
    per call), wall and CPU."""
    nf = max(c.nf for c in cases)
    loop = synced(f_loop(nf, u0), device)
    per_call, per_call_cpu = [], []
    for _ in range(repeats):
        for c in cases:
            go = synced(lambda c=c: c.run(vdp), device)
            t0, c0 = time.perf_counter(), time.process_time()
            go()
            c.times.append(time.perf_counter() - t0)
            c.cpus.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        loop()
        per_call.append((time.perf_counter() - t0) / nf)
        per_call_cpu.append((time.process_time() - c0) / nf)
    return statistics.median(per_call), statistics.median(per_call_cpu)


def pysciml_solve(u0: torch.Tensor, t1: float, compile: bool = False) -> Run:
    def run(f: Callable) -> tuple[torch.Tensor, float, int]:
        prob = ps.ODEProblem(f, u0, (0.0, t1), batched=True)
        sol = ps.solve(prob, ps.Tsit5(), rtol=TOL, atol=TOL, saveat=[t1], compile=compile)
        return sol.u[-1], float(sol.stats.nloop), sol.stats.nf

    return run


def pysciml_odeint(u0: torch.Tensor, t1: float) -> Run:
    ts = torch.tensor([0.0, t1], dtype=u0.dtype, device=u0.device)
    return lambda f: (ps.odeint(f, u0, ts, method="tsit5", rtol=TOL, atol=TOL)[-1], None, None)


def torchdiffeq_odeint(u0: torch.Tensor, t1: float) -> Run:
    import torchdiffeq

    ts = torch.tensor([0.0, t1], dtype=u0.dtype, device=u0.device)
    return lambda f: (torchdiffeq.odeint(f, u0, ts, method="dopri5", rtol=TOL, atol=TOL)[-1], None, None)


def torchode_solver(u0: torch.Tensor, t1: float, compiled: bool = False) -> Run:
    """torchode Tsit5 + IntegralController, steps and f calls from its own stats (the loop runs until the
    slowest trajectory is done: ``max`` over the batch). ``compiled``: the solve under ``torch.compile``,
    always with the plain ``f`` (a counting wrapper would force recompilation); the first call compiles."""
    import torchode as to

    t_eval = torch.tensor([0.0, t1], dtype=u0.dtype, device=u0.device).expand(u0.shape[0], 2)
    problem = to.InitialValueProblem(y0=u0, t_eval=t_eval)
    term = to.ODETerm(vdp)
    adj = to.AutoDiffAdjoint(to.Tsit5(term=term), to.IntegralController(atol=TOL, rtol=TOL, term=term))
    solve = torch.compile(adj.solve) if compiled else adj.solve

    def run(f: Callable) -> tuple[torch.Tensor, float, int]:
        sol = solve(problem)
        return sol.ys[:, -1], float(sol.stats["n_steps"].max()), int(sol.stats["n_f_evals"].max())

    return run


# ------------------------------------------------------------------------------------------------ diffrax


def diffrax_row(u0: torch.Tensor, ref: torch.Tensor, size: Size) -> Row:
    """diffrax Tsit5 under vmap + jit on the CPU; compile time goes in the note."""
    import diffrax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def vector_field(t: Any, y: Any, args: Any) -> Any:
        return jnp.stack((y[1], MU * (1.0 - y[0] ** 2) * y[1] - y[0]))

    term = diffrax.ODETerm(vector_field)
    ctrl = diffrax.PIDController(rtol=TOL, atol=TOL)

    def one(y0: Any) -> tuple[Any, Any]:
        sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, size.t1, None, y0, stepsize_controller=ctrl,
                                  saveat=diffrax.SaveAt(t1=True), max_steps=100_000)
        return sol.ys[-1], sol.stats["num_steps"]

    solve = jax.jit(jax.vmap(one))
    y0 = jnp.asarray(u0.cpu().numpy())
    t0 = time.perf_counter()
    ys, nsteps = jax.block_until_ready(solve(y0))
    compile_s = time.perf_counter() - t0
    wall, cpu = _wall_cpu(lambda: jax.block_until_ready(solve(y0)), size.repeats)
    steps = int(nsteps.max())
    nf = 6 * steps + 2

    @jax.jit
    def f_loop(y: Any) -> Any:  # nf chained calls of the vmapped field inside one compiled loop
        vf = jax.vmap(lambda v: vector_field(0.0, v, None))
        return jax.lax.fori_loop(0, nf, lambda i, acc: vf(y + 1e-300 * acc), jnp.zeros_like(y))

    jax.block_until_ready(f_loop(y0))
    f_wall, f_cpu = _wall_cpu(lambda: jax.block_until_ready(f_loop(y0)), size.repeats)
    err = float((torch.tensor(np.array(ys)) - ref.cpu()).abs().max())
    return Row(DIFFRAX, "per trajectory", wall, steps, nf, f_wall / nf, err, f"compile {compile_s:.2f} s; nf derived",
               cpu, f_cpu / nf)


def _wall_cpu(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall and CPU (this process: JAX's threads included) seconds of ``repeats`` calls (warmed up)."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


# -------------------------------------------------------------------------------------------------- runner


def run_all(size: Size, device: str) -> list[Row | tuple[str, str]]:
    """One row per solver, or ``(solver, reason)`` where it could not run."""
    u0 = initial_states(size.batch, device)
    ref = reference(u0, size.t1)
    per, joint = "per trajectory", "joint (one dt)"
    torch_cases: list[tuple[str, str, Callable[[], Run]]] = [
        ("pysciml Tsit5 (solve, batched)", per, lambda: pysciml_solve(u0, size.t1)),
        (COMPILED, per, lambda: pysciml_solve(u0, size.t1, compile=True)),
        ("pysciml odeint tsit5", joint, lambda: pysciml_odeint(u0, size.t1)),
        ("torchdiffeq odeint dopri5", joint, lambda: torchdiffeq_odeint(u0, size.t1)),
        ("torchode Tsit5 (eager)", per, lambda: torchode_solver(u0, size.t1)),
    ]
    if size.compile_torchode:
        torch_cases.append((TORCHODE_COMPILED, per, lambda: torchode_solver(u0, size.t1, True)))
    prepared: list[Prepared] = []
    failed: list[tuple[str, str]] = []
    for name, stepping, make in torch_cases:
        try:
            t_start = time.perf_counter()
            with loop_route() as route:
                case = prepare(name, stepping, make(), ref, count=name != COMPILED)
            if "compile" in name:
                case.note = f"first call (compiles) took {time.perf_counter() - t_start:.1f} s"
            if name == COMPILED:
                case.note += f"; {route_name(route)}"
            prepared.append(case)
        except ImportError as exc:
            failed.append((name, f"skipped: {exc}"))
        except Exception as exc:  # a peer failing (e.g. torch.compile without a compiler) must not stop the run
            failed.append((name, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"))
    t_f, t_f_cpu = time_rounds(prepared, u0, size.repeats, device)
    rows: list[Row | tuple[str, str]] = [
        Row(c.solver, c.stepping, statistics.median(c.times), c.steps, c.nf, t_f, c.err, c.note,
            statistics.median(c.cpus), t_f_cpu) for c in prepared]
    rows += failed
    if device != "cpu":
        rows.append((DIFFRAX, "skipped: JAX here is CPU-only"))
    elif not size.with_diffrax:
        rows.append((DIFFRAX, "skipped at smoke size (importing JAX and compiling take ~10 s)"))
    else:
        try:
            rows.append(diffrax_row(u0, ref, size))
        except ImportError as exc:
            rows.append((DIFFRAX, f"skipped: {exc}"))
    return rows


def report(rows: list[Row | tuple[str, str]], size: Size, device: str, load: tuple[float] = (math.nan,)) -> str:
    table_rows = []
    for r in rows:
        if isinstance(r, tuple):
            table_rows.append([r[0], r[1], "", "", "", "", "", "", "", "", "", "", ""])
            continue
        table_rows.append([r.solver, r.stepping, r.total * 1e3, r.steps, r.nf, r.t_f * 1e6, r.overhead * 1e6,
                           r.err, r.note, r.cpu * 1e3, r.t_f_cpu * 1e6, r.overhead_cpu * 1e6, r.cpu / r.steps * 1e6])
    table = markdown_table(["solver", "stepping", "total [ms]", "steps", "nf", "t_f [us]", "overhead / step [us]",
                            "max error at t1", "note", "CPU total [ms]", "CPU t_f [us]", "CPU overhead / step [us]",
                            "CPU total / step [us]"], table_rows)
    by = {r.solver: r for r in rows if isinstance(r, Row)}
    lines = []
    for name in (OURS, COMPILED):
        ours = by.get(name)
        peers = [p for p in ("torchdiffeq odeint dopri5", "torchode Tsit5 (eager)", TORCHODE_COMPILED, DIFFRAX)
                 if p in by and ours is not None]
        if peers:
            lines.append(f"\nRatios ({name}):")
        for peer in peers:
            p = by[peer]
            lines.append(f"- vs {peer}: total time {p.total / ours.total:.2f}x (CPU {p.cpu / ours.cpu:.2f}x), overhead "
                         f"per step {p.overhead / ours.overhead:.2f}x (CPU {p.overhead_cpu / ours.overhead_cpu:.2f}x) "
                         "(peer / pysciml; > 1 means pysciml is faster)")
    lines.append("\n" + targets(by))
    threads = torch.get_num_threads()
    return (f"# Task 2: per-step solver overhead, Van der Pol mu = {MU:g}\n\n"
            f"Machine: {environment()}. Device {device}, torch threads {threads}. Shared machine: load average "
            f"{load[0]:.1f} at the start of this run, {os.getloadavg()[0]:.1f} at its end; wall and CPU "
            "(`time.process_time`) times side by side.\n\n"
            f"Batch {size.batch}, tspan (0, {size.t1:g}), float64, rtol = atol = {TOL:g}; medians of {size.repeats} "
            f"runs after a warm-up. overhead / step = (total - nf t_f) / steps (t_f: the eager f for the torch rows, "
            "the jitted f for diffrax); errors against Vern7 at 1e-12.\n\n"
            f"{table}\n" + "\n".join(lines) + "\n")


def targets(by: dict[str, Row]) -> str:
    """Issue 17's targets for the compiled row: overhead per step below torchode under torch.compile, within 2x
    diffrax's. Judged on total time per step (f included), wall and CPU: the compiled programs fuse f, so
    subtracting the eager f's time (the overhead column) does not isolate their overhead; that ratio is given
    beside it."""
    ours = by.get(COMPILED)
    if ours is None:
        return "Targets (issue 17): no compiled pysciml row."
    out = []
    for peer, bound, what in ((TORCHODE_COMPILED, 1.0, "below torchode under torch.compile"),
                              (DIFFRAX, 2.0, "within 2x diffrax")):
        if peer not in by:
            out.append(f"{what}: not measured ({peer} not run)")
            continue
        p = by[peer]
        r, rc = ours.overhead / p.overhead, ours.overhead_cpu / p.overhead_cpu
        step, step_cpu = (ours.total / ours.steps) / (p.total / p.steps), (ours.cpu / ours.steps) / (p.cpu / p.steps)
        verdict = "met" if step <= bound and step_cpu <= bound else "missed"
        out.append(f"{what}: pysciml compiled / peer = {step:.2f}x in total time per step (CPU {step_cpu:.2f}x; "
                   f"{verdict}); overhead per step {r:.2f}x wall, {rc:.2f}x CPU (a negative ratio: the compiled "
                   "program's fused f costs less than the eager f subtracted)")
    return "Targets (issue 17): " + "; ".join(out) + "."


def main(size: str = "full", device: str = "cpu") -> str:
    skip = start_task("Task 2 (overhead)", device)
    if skip is not None:
        return skip
    cfg = SIZES[(size, device)]
    load = (os.getloadavg()[0],)
    text = report(run_all(cfg, device), cfg, device, load)
    write_result(result_name("overhead", size, device), text)
    return text


def summary_numbers(text: str) -> dict[str, float]:
    """Overhead per step [us] by solver, parsed back from a report (for tests)."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 9 and cells[6] and cells[6][0].isdigit():
            out[cells[0]] = float(cells[6])
    return out


if __name__ == "__main__":
    print(main())
