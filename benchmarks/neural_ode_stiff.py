"""Task 4, stiff part: training the MLP-corrected ROBER surrogate of ``examples/stiff_neural_ode.py``.

Same model, data and loss as the example (rate constants learned in log space, started 50% off, plus a 3-16-3
tanh MLP correction; 30 log-spaced observations on ``[1e-5, T]``; Adam, lr 0.05; rtol 1e-6, atol 1e-10,
float64). pysciml runs Rodas5P with ``DiscreteAdjoint()`` (the fastest of its adjoints here), eager and with
``compile=True``, and with the example's ``InterpolatingAdjoint(checkpointing=True)`` (full size, one
iteration: ~30 s); at sizes full and small also Kvaerno5 + ``DiscreteAdjoint()``, eager and compiled. diffrax
runs Kvaerno5 with ``RecursiveCheckpointAdjoint`` (:mod:`benchmarks.neural_ode_stiff_jax`, jit compile time
reported apart). torchdiffeq runs dopri5 (stiff-capable solvers it has none) with odeint and odeint_adjoint.
The model is as stiff as ROBER, so dopri5's step is bounded by stability, not accuracy: each torchdiffeq run
gets a wall-clock budget and is aborted when it runs out; the table then says how far the first forward pass
got (``t`` reached, f calls made), and the ratio is a lower bound. Sizes: ``full`` T = 100, 10 pysciml
iterations, 20 s budgets; ``small`` T = 100, 4 iterations, 5 s budgets; ``smoke`` T = 0.01, 2 iterations,
1 s budgets.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

import pysciml as ps

from .common import markdown_table, one_thread

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "stiff_neural_ode.py"


def example() -> ModuleType:
    """``examples/stiff_neural_ode.py`` as a module (the model, the data and pysciml's training loop)."""
    spec = importlib.util.spec_from_file_location("stiff_neural_ode_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = sys.modules.get(spec.name)
    if mod is None:  # registered, so that torch.compile (Dynamo) can import the module its model lives in
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return mod


class _OutOfTime(Exception):
    pass


class _Budgeted(torch.nn.Module):
    """The surrogate with a deadline: raises once the wall clock passes it; remembers the last ``t`` seen."""

    def __init__(self, model: torch.nn.Module, deadline: float) -> None:
        super().__init__()
        self.model = model
        self.deadline = deadline
        self.t_reached = 0.0
        self.phase = "forward"

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if time.perf_counter() > self.deadline:
            raise _OutOfTime
        if self.phase == "forward":
            self.t_reached = max(self.t_reached, float(t))
        return self.model(t, y)


def pysciml_runs(ex: ModuleType, iters: int, t_end: float, sensealg: Any, alg: ps.Algorithm | None = None
                 ) -> dict[str, Any]:
    """The example's own training loop with ``alg`` (default Rodas5P) and ``sensealg``."""
    r = ex.train(iters=iters, t_end=t_end, alg=alg or ps.Rodas5P(), sensealg=sensealg, verbose=False)
    timed = r["times"][1:] or r["times"]  # the first iteration warms up
    return {"time": statistics.median(timed), "iters": len(r["times"]), "nfe_f": statistics.mean(r["nfe_f"]),
            "nfe_b": statistics.mean(r["nfe_b"]), "loss": r["losses"][-1], "done": True}


def start_model(ex: ModuleType, t_end: float, quiet: bool = False) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``(t, data, model)`` as the example's ``train`` makes them (seed 0, rates 50% off). ``quiet``: the model
    without its call counter (a Python counter in a compiled ``f`` is a guard that changes at every call, so
    the step would recompile until Dynamo's limit; its ``calls`` then read 0)."""
    torch.manual_seed(0)
    t, data = ex.make_data(t_end)
    cls = ex.RoberSurrogate
    if quiet:
        cls = type("QuietRoberSurrogate", (cls,), {"calls": property(lambda self: 0, lambda self, v: None)})
    return t, data, cls(tuple(k * 1.5 for k in ex.K_TRUE))


def train_loop(ex: ModuleType, iters: int, t_end: float, solve: Any, budget_s: float | None = None,
               quiet: bool = False) -> dict[str, Any]:
    """Up to ``iters`` Adam iterations of ``solve(field, y0, t)`` (within ``budget_s`` seconds of wall time, if
    given: the field is then a :class:`_Budgeted` one). Time per iteration: median after the first (a warm-up;
    for compiled solves, the compile) unless there is only one; ``first``: the first iteration's time."""
    t, data, model = start_model(ex, t_end, quiet)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    field = model if budget_s is None else _Budgeted(model, time.perf_counter() + budget_s)
    budgeted = isinstance(field, _Budgeted)
    times, cpu, nfe_f, nfe_b, loss = [], [], [], [], float("nan")
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        model.calls = 0
        try:
            opt.zero_grad()
            pred = solve(field, data[0], t)
            fwd = model.calls
            if budgeted:
                field.phase = "backward"
            lossv = ((pred - data) * ex.SCALE).pow(2).mean()
            lossv.backward()
            opt.step()
        except _OutOfTime:
            return {"done": False, "iters": len(times), "elapsed": time.perf_counter() - t0, "calls": model.calls,
                    "t_reached": field.t_reached, "t_end": t_end, "phase": field.phase}
        if budgeted:
            field.phase = "forward"
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        nfe_f.append(fwd)
        nfe_b.append(model.calls - fwd)
        loss = float(lossv.detach())
    return {"time": statistics.median(times[1:] or times), "first": times[0], "iters": len(times),
            "cpu": statistics.median(cpu[1:] or cpu), "first_cpu": cpu[0],
            "nfe_f": statistics.mean(nfe_f), "nfe_b": statistics.mean(nfe_b), "loss": loss, "done": True}


def torchdiffeq_run(ex: ModuleType, iters: int, t_end: float, budget_s: float, adjoint: bool) -> dict[str, Any]:
    """Up to ``iters`` Adam iterations with torchdiffeq dopri5 within ``budget_s`` seconds of wall time."""
    import torchdiffeq

    fn = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    return train_loop(ex, iters, t_end, lambda f, y0, t: fn(f, y0, t, method="dopri5", rtol=1e-6, atol=1e-10),
                      budget_s)


def pysciml_compiled_run(ex: ModuleType, iters: int, t_end: float, alg: ps.Algorithm) -> dict[str, Any]:
    """``alg`` + ``DiscreteAdjoint()`` with ``compile=True`` (the model without its counter: NFE read 0)."""
    def solve(f: Any, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ps.odeint(f, y0, t, alg=alg, sensealg=ps.DiscreteAdjoint(), rtol=1e-6, atol=1e-10, compile=True)

    return train_loop(ex, iters, t_end, solve, quiet=True)


def diffrax_run(ex: ModuleType, iters: int, t_end: float) -> dict[str, Any]:
    from .neural_ode_stiff_jax import train_stiff_diffrax

    return train_stiff_diffrax(ex, start_model(ex, t_end)[2], iters, t_end)


SIZES = {  # size -> (T, torchdiffeq budget [s], pysciml iterations, with the InterpolatingAdjoint / Kvaerno5 rows)
    "full": (100.0, 20.0, 10, True),
    "small": (100.0, 5.0, 4, True),
    "smoke": (0.01, 1.0, 2, False),
}
DISCRETE, COMPILED = "pysciml Rodas5P + DiscreteAdjoint", "pysciml Rodas5P + DiscreteAdjoint, compile=True"
KVAERNO, KVAERNO_COMPILED = "pysciml Kvaerno5 + DiscreteAdjoint", "pysciml Kvaerno5 + DiscreteAdjoint, compile=True"
DIFFRAX = "diffrax Kvaerno5 + RecursiveCheckpointAdjoint (jit)"


def guarded(fn: Any) -> dict[str, Any]:
    """``fn()``, or ``{"skipped": why}`` when a peer is missing or the run fails (the table says which)."""
    try:
        return fn()
    except ImportError as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # e.g. a compiled backward failing: reported, the task goes on
        first = str(exc).splitlines()[0]
        return {"skipped": f"failed: {type(exc).__name__}: {first[:100]}{' ...' if len(first) > 100 else ''}"}


def stiff_surrogate(size: str, device: str) -> str:
    """The markdown section (CPU only: a 3-state model gains nothing from a GPU)."""
    if device != "cpu":
        return "## Stiff surrogate\n\nCPU only (3 states): skipped with --device cuda.\n"
    ex = example()
    t_end, budget, iters, more = SIZES[size]
    runs: dict[str, dict[str, Any]] = {DISCRETE: pysciml_runs(ex, iters, t_end, ps.DiscreteAdjoint())}
    runs[COMPILED] = guarded(lambda: pysciml_compiled_run(ex, iters, t_end, ps.Rodas5P()))
    if more:  # diffrax's method in pysciml, eager and compiled (an ARK program compiles for ~30-60 s)
        runs[KVAERNO] = pysciml_runs(ex, iters, t_end, ps.DiscreteAdjoint(), ps.Kvaerno5())
        runs[KVAERNO_COMPILED] = guarded(lambda: pysciml_compiled_run(ex, iters, t_end, ps.Kvaerno5()))
    runs[DIFFRAX] = guarded(lambda: diffrax_run(ex, iters, t_end))
    if size == "full":  # one iteration (~30 s): its continuous adjoint makes ~2e4 VJP calls per backward pass here
        runs["pysciml Rodas5P + InterpolatingAdjoint(checkpointing=True)"] = pysciml_runs(
            ex, 1, t_end, ps.InterpolatingAdjoint(checkpointing=True))
    for adjoint in (False, True):
        name = f"torchdiffeq dopri5 {'odeint_adjoint' if adjoint else 'odeint'}"
        runs[name] = guarded(lambda adjoint=adjoint: torchdiffeq_run(ex, 3 if size == "full" else 2, t_end, budget,
                                                                     adjoint))
    rows = []
    for name, r in runs.items():
        if "skipped" in r:
            rows.append([name, r["skipped"] if r["skipped"].startswith("failed") else "skipped: " + r["skipped"],
                         "", "", "", "", ""])
        elif r["done"]:
            nfe = (f"{r['steps']:.0f} steps", "n/a") if "steps" in r else (r["nfe_f"], r["nfe_b"])
            if name in (COMPILED, KVAERNO_COMPILED):
                nfe = ("-", "-")  # its model has no call counter (see start_model)
            first = r["compile"] if "compile" in r else r.get("first", "")
            rows.append([name, r["iters"], r["time"], *nfe, r["loss"], first])
        else:
            where = (f"in the forward pass at t = {r['t_reached']:.3g} of {r['t_end']:g}" if r["phase"] == "forward"
                     else "in the backward pass")
            rows.append([name, r["iters"], f"> {r['elapsed']:.3g} (aborted at the {budget:g} s budget {where}, "
                         f"after {r['calls']} f calls)", "", "", "", ""])
    table = markdown_table(["solver", "iterations", "time / iter [s]", "NFE fwd", "NFE bwd", "final loss",
                            "first iteration (diffrax: compile) [s]"], rows)
    return (f"## Stiff surrogate (MLP-corrected ROBER, T = {t_end:g})\n\nTime per iteration: median after the "
            f"first (warm-up; for `compile=True` and diffrax the compile, given in the last column: diffrax's as "
            f"first call - median). Same start, data and loss for every solver.\n\n{table}\n\n"
            + verdicts(runs) + "\n")


def verdicts(runs: dict[str, dict[str, Any]]) -> str:
    """Speed-ups over torchdiffeq, and issue 17's target: pysciml no slower per iteration than diffrax."""
    best = runs[DISCRETE]["time"]
    ratios = []
    for name in ("torchdiffeq dopri5 odeint", "torchdiffeq dopri5 odeint_adjoint"):
        r = runs.get(name, {})
        if r.get("done"):
            ratios.append(f"{name}: {r['time'] / best:.1f}x")
        elif "elapsed" in r:
            ratios.append(f"{name}: > {r['elapsed'] / best:.1f}x (lower bound: it did not finish one iteration)")
    text = "Speed-up per iteration of pysciml (Rodas5P + DiscreteAdjoint) over " + "; ".join(ratios) + "."
    dx = runs[DIFFRAX]
    if not dx.get("done"):
        return text + f" Target (no slower than {DIFFRAX}): not measured ({dx.get('skipped', 'did not finish')})."
    for name in (DISCRETE, COMPILED, KVAERNO, KVAERNO_COMPILED):
        if name not in runs:
            continue
        r = runs[name]
        if r.get("done"):
            ratio = r["time"] / dx["time"]
            text += (f" Target, {name} per iteration no slower than {DIFFRAX}: {ratio:.2f}x its time "
                     f"({'met' if ratio <= 1.0 else 'missed'}).")
        else:
            text += f" Target, {name}: not measured ({r.get('skipped', 'did not finish')})."
    return text


def eager_run(ex: ModuleType, iters: int, t_end: float, alg: ps.Algorithm) -> dict[str, Any]:
    """``alg`` + ``DiscreteAdjoint()`` eagerly, through :func:`train_loop` (as the compiled row, with CPU time)."""
    def solve(f: Any, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ps.odeint(f, y0, t, alg=alg, sensealg=ps.DiscreteAdjoint(), rtol=1e-6, atol=1e-10)

    return train_loop(ex, iters, t_end, solve)


def compile_vs_diffrax(iters: int, t_end: float) -> str:
    """Issue 17's stiff neural-ODE target alone: Rodas5P + ``DiscreteAdjoint()`` eager and with ``compile=True``
    (one float64 trajectory: the whole loop and its backward as ``torch.while_loop`` programs) against diffrax
    Kvaerno5 + ``RecursiveCheckpointAdjoint`` in one process, one after the other; per-iteration wall and
    process CPU time (median after the first iteration, which compiles), the compile apart."""
    ex = example()
    runs = {DISCRETE: eager_run(ex, iters, t_end, ps.Rodas5P()),
            COMPILED: guarded(lambda: pysciml_compiled_run(ex, iters, t_end, ps.Rodas5P())),
            DIFFRAX: guarded(lambda: diffrax_run(ex, iters, t_end))}
    rows = []
    for name, r in runs.items():
        if not r.get("done"):
            rows.append([name, r.get("skipped", "did not finish"), "", "", "", "", ""])
            continue
        first = r["compile"] if "compile" in r else r["first"]
        first_cpu = r["compile_cpu"] if "compile_cpu" in r else r["first_cpu"]
        rows.append([name, r["iters"], 1e3 * r["time"], 1e3 * r["cpu"], r["loss"], first, first_cpu])
    table = markdown_table(["solver", "iterations", "wall / iter [ms]", "CPU / iter [ms]", "final loss",
                            "first iteration (diffrax: compile) wall [s]", "same, CPU [s]"], rows)
    dx = runs[DIFFRAX]
    lines = []
    for name in (DISCRETE, COMPILED):
        r = runs[name]
        if r.get("done") and dx.get("done"):
            ratio = r["cpu"] / dx["cpu"]
            lines.append(f"- {name}: {ratio:.2f}x diffrax's CPU time per iteration "
                         f"({r['time'] / dx['time']:.2f}x its wall time): target {'met' if ratio <= 1 else 'missed'}")
    return (f"## Stiff surrogate: compiled Rodas5P vs diffrax (MLP-corrected ROBER, T = {t_end:g}, {iters} "
            f"iterations)\n\n{table}\n\n" + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.neural_ode_stiff [--iters N] [--t-end T]``: :func:`compile_vs_diffrax`, written to
    ``benchmarks/results/neural_ode_stiff_compile.md`` with the machine's description and load."""
    import argparse
    import os

    from .common import environment, write_result

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--t-end", type=float, default=100.0)
    args = parser.parse_args(argv)
    one_thread()
    load = os.getloadavg()
    text = compile_vs_diffrax(args.iters, args.t_end)
    after = os.getloadavg()
    text = (f"# Stiff neural ODE: compiled Rodas5P vs diffrax\n\n{environment()}\n\nLoad average (1 min) "
            f"{load[0]:.1f} before, {after[0]:.1f} after (2 cores, shared).\n\n" + text)
    print(text)
    write_result("neural_ode_stiff_compile", text)


if __name__ == "__main__":
    main()
