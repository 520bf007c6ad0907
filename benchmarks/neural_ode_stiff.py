"""Task 4, stiff part: training the MLP-corrected ROBER surrogate of ``examples/stiff_neural_ode.py``.

Same model, data and loss as the example (rate constants learned in log space, started 50% off, plus a 3-16-3
tanh MLP correction; 30 log-spaced observations on ``[1e-5, T]``; Adam, lr 0.05; rtol 1e-6, atol 1e-10,
float64). pysciml runs Rodas5P with ``DiscreteAdjoint()`` (the fastest of its adjoints here) and with the
example's ``InterpolatingAdjoint(checkpointing=True)`` (one iteration: ~30 s each); torchdiffeq runs dopri5
(stiff-capable solvers it has none) with odeint and odeint_adjoint. The model is as stiff as ROBER, so dopri5's
step is bounded by stability, not accuracy: each torchdiffeq run gets a wall-clock budget and is aborted when
it runs out; the table then says how far the first forward pass got (``t`` reached, f calls made), and the
ratio is a lower bound.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

import pysciml as ps

from .common import markdown_table

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "stiff_neural_ode.py"


def example() -> ModuleType:
    """``examples/stiff_neural_ode.py`` as a module (the model, the data and pysciml's training loop)."""
    spec = importlib.util.spec_from_file_location("stiff_neural_ode_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
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


def pysciml_runs(ex: ModuleType, iters: int, t_end: float, sensealg: Any) -> dict[str, Any]:
    r = ex.train(iters=iters, t_end=t_end, alg=ps.Rodas5P(), sensealg=sensealg, verbose=False)
    timed = r["times"][1:] or r["times"]  # the first iteration warms up
    return {"time": statistics.median(timed), "iters": len(r["times"]), "nfe_f": statistics.mean(r["nfe_f"]),
            "nfe_b": statistics.mean(r["nfe_b"]), "loss": r["losses"][-1], "done": True}


def torchdiffeq_run(ex: ModuleType, iters: int, t_end: float, budget_s: float, adjoint: bool) -> dict[str, Any]:
    """Up to ``iters`` Adam iterations with torchdiffeq dopri5 within ``budget_s`` seconds of wall time."""
    import torchdiffeq

    torch.manual_seed(0)
    t, data = ex.make_data(t_end)
    model = ex.RoberSurrogate(tuple(k * 1.5 for k in ex.K_TRUE))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    field = _Budgeted(model, time.perf_counter() + budget_s)
    solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    times, nfe_f, nfe_b, loss = [], [], [], float("nan")
    for _ in range(iters):
        t0 = time.perf_counter()
        model.calls = 0
        try:
            opt.zero_grad()
            pred = solve(field, data[0], t, method="dopri5", rtol=1e-6, atol=1e-10)
            fwd = model.calls
            field.phase = "backward"
            lossv = ((pred - data) * ex.SCALE).pow(2).mean()
            lossv.backward()
            opt.step()
        except _OutOfTime:
            return {"done": False, "iters": len(times), "elapsed": time.perf_counter() - t0, "calls": model.calls,
                    "t_reached": field.t_reached, "t_end": t_end, "phase": field.phase}
        times.append(time.perf_counter() - t0)
        nfe_f.append(fwd)
        nfe_b.append(model.calls - fwd)
        loss = float(lossv.detach())
    return {"time": statistics.median(times), "iters": len(times), "nfe_f": statistics.mean(nfe_f),
            "nfe_b": statistics.mean(nfe_b), "loss": loss, "done": True}


def stiff_surrogate(full: bool, device: str) -> str:
    """The markdown section (CPU only: a 3-state model gains nothing from a GPU)."""
    if device != "cpu":
        return "## Stiff surrogate\n\nCPU only (3 states): skipped with --device cuda.\n"
    ex = example()
    t_end = 100.0 if full else 0.01
    budget = 20.0 if full else 1.0  # per torchdiffeq run
    runs: dict[str, dict[str, Any]] = {
        "pysciml Rodas5P + DiscreteAdjoint": pysciml_runs(ex, 10 if full else 2, t_end, ps.DiscreteAdjoint())}
    if full:  # one iteration (~30 s): its continuous adjoint makes ~2e4 VJP calls per backward pass here
        runs["pysciml Rodas5P + InterpolatingAdjoint(checkpointing=True)"] = pysciml_runs(
            ex, 1, t_end, ps.InterpolatingAdjoint(checkpointing=True))
    for adjoint in (False, True):
        name = f"torchdiffeq dopri5 {'odeint_adjoint' if adjoint else 'odeint'}"
        try:
            runs[name] = torchdiffeq_run(ex, 3 if full else 2, t_end, budget, adjoint)
        except ImportError as exc:
            runs[name] = {"skipped": str(exc)}
    rows = []
    for name, r in runs.items():
        if "skipped" in r:
            rows.append([name, "skipped: " + r["skipped"], "", "", "", ""])
        elif r["done"]:
            rows.append([name, r["iters"], r["time"], r["nfe_f"], r["nfe_b"], r["loss"]])
        else:
            where = (f"in the forward pass at t = {r['t_reached']:.3g} of {r['t_end']:g}" if r["phase"] == "forward"
                     else "in the backward pass")
            rows.append([name, r["iters"], f"> {r['elapsed']:.3g} (aborted at the {budget:g} s budget {where}, "
                         f"after {r['calls']} f calls)", "", "", ""])
    table = markdown_table(["solver", "iterations", "time / iter [s]", "NFE fwd", "NFE bwd", "final loss"], rows)
    best = runs["pysciml Rodas5P + DiscreteAdjoint"]["time"]
    ratios = []
    for name in ("torchdiffeq dopri5 odeint", "torchdiffeq dopri5 odeint_adjoint"):
        r = runs.get(name, {})
        if r.get("done"):
            ratios.append(f"{name}: {r['time'] / best:.1f}x")
        elif "elapsed" in r:
            ratios.append(f"{name}: > {r['elapsed'] / best:.1f}x (lower bound: it did not finish one iteration)")
    return (f"## Stiff surrogate (MLP-corrected ROBER, T = {t_end:g})\n\n{table}\n\n"
            f"Speed-up per iteration of pysciml (Rodas5P + DiscreteAdjoint) over " + "; ".join(ratios) + ".\n")
