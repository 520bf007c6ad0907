"""Learned Hamiltonians under ``compile=True``: CPU time of a rollout and of a training step, eager vs compiled.

``python -m benchmarks hnn_compile`` (writes ``benchmarks/results/hnn_compile.md``): two learned energies in float64,
16 trajectories of one degree of freedom (the state ``(16, 2)`` as one system), to ``t = 1`` with fixed steps of 0.02
(50 steps), saving at 0.5 and 1: a separable ``H = |p|^2/2 + V(q)``, ``V`` an MLP (1-32-32-1, tanh;
``HamiltonianProblem.from_parts``), by ``VelocityVerlet`` and ``Yoshida4``; a non-separable ``H(q, p)``, an MLP
(2-32-32-1, tanh), by ``ImplicitMidpoint`` and by ``Tsit5`` (adaptive, rtol 1e-8, atol 1e-10). ``rollout``: the solve
under ``torch.no_grad()``; ``training step``: the solve, a squared-end-state loss and its backward to the MLP's
parameters. Each variant is timed after a warm-up call of its own (compiling there), as process CPU time
(``time.process_time``), the median of ``ROUNDS`` rounds that run every variant once; the compiled solve's route (the
programs it ran) is given beside it.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch

import pysciml as ps

from .common import environment, start_task, write_result

F64 = torch.float64
ROUNDS = 7
KW_FIXED = {"dt": 0.02, "saveat": [0.5, 1.0]}
KW_ADAPTIVE = {"rtol": 1e-8, "atol": 1e-10, "saveat": [0.5, 1.0]}


def mlp(n_in: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 1)).double()


class Potential(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(1, 1)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q).squeeze(-1) + 0.5 * (q * q).sum(-1)


class Energy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(2, 2)

    def forward(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([q, p], -1)).squeeze(-1) + 0.5 * (q * q + p * p).sum(-1)


def kinetic(p: torch.Tensor) -> torch.Tensor:
    return 0.5 * (p * p).sum(-1)


def problems() -> dict[str, ps.HamiltonianProblem]:
    g = torch.Generator().manual_seed(0)
    q0, p0 = torch.randn(16, 1, generator=g, dtype=F64), torch.randn(16, 1, generator=g, dtype=F64)
    return {"separable": ps.HamiltonianProblem.from_parts(kinetic, Potential(), q0, p0, (0.0, 1.0)),
            "non-separable": ps.HamiltonianProblem(Energy(), q0, p0, (0.0, 1.0))}


def cases() -> list[tuple[str, ps.HamiltonianProblem, ps.Algorithm, dict]]:
    probs = problems()
    return [("separable", probs["separable"], ps.VelocityVerlet(), KW_FIXED),
            ("separable", probs["separable"], ps.Yoshida4(), KW_FIXED),
            ("non-separable", probs["non-separable"], ps.ImplicitMidpoint(), KW_FIXED),
            ("non-separable", probs["non-separable"], ps.Tsit5(), KW_ADAPTIVE)]


def runner(prob: ps.HamiltonianProblem, alg: ps.Algorithm, kw: dict, compiled: bool,
           train: bool) -> Callable[[], ps.ODESolution]:
    weights = [w for m in prob.closure_modules() if isinstance(m, torch.nn.Module) for w in m.parameters()]

    def run() -> ps.ODESolution:
        with torch.set_grad_enabled(train):
            sol = ps.solve(prob, alg, compile=compiled, **kw)
            if train:
                torch.autograd.grad(sol.u[-1].square().sum(), weights, allow_unused=True)
        return sol

    return run


def route(run: Callable[[], ps.ODESolution]) -> str:
    """What the compiled solve ran: its fallback warnings (none: every program compiled)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    said = [str(w.message).split(" (")[0].removeprefix("compile=True: ") for w in caught
            if issubclass(w.category, RuntimeWarning)]
    return "; ".join(said) or "compiled, no fallback"


def main(size: str = "full", device: str = "cpu") -> str:
    """Run the comparison (CPU only; ``size`` is ignored); write and return the markdown report."""
    if device != "cpu":
        return "# hnn_compile: CPU only\n"
    start_task("hnn_compile", device)
    load0 = os.getloadavg()[0]
    rows = []
    for kind, prob, alg, kw in cases():
        for train in (False, True):
            eager, comp = runner(prob, alg, kw, False, train), runner(prob, alg, kw, True, train)
            start = time.perf_counter()
            note = route(comp)  # compiles
            first = time.perf_counter() - start
            eager()
            times: dict[str, list[float]] = {"eager": [], "compiled": []}
            for _ in range(ROUNDS):
                for name, fn in (("eager", eager), ("compiled", comp)):
                    t0 = time.process_time()
                    fn()
                    times[name].append(time.process_time() - t0)
            e, c = (1e3 * statistics.median(times[k]) for k in ("eager", "compiled"))
            rows.append(f"| {kind} | {alg.name} | {'training step' if train else 'rollout'} | {e:.1f} | {c:.1f} | "
                        f"{e / c:.2f}x | {first:.0f} | {note} |")
    head = ("| H | method | what | eager ms | compiled ms | eager / compiled | first compiled call s (compiling) | "
            "route |\n|---|---|---|---|---|---|---|---|")
    text = (f"# Learned Hamiltonians under compile=True: CPU time, eager vs compiled\n\nMachine: {environment()}. "
            f"Load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (shared machine).\n\n"
            + " ".join(__doc__.split("\n\n")[1].split("\n")).strip() + "\n\n" + head + "\n" + "\n".join(rows) + "\n")
    write_result("hnn_compile", text)
    return text


if __name__ == "__main__":
    print(main())
