"""Task 5: solver overhead over the floor: an MLP right-hand side, Tsit5 and Rodas5P, batched.

The right-hand side is ``f(t, u) = MLP(u) - D u`` per trajectory: a ``n -> width -> n`` tanh MLP (torch's default
initialisation, seed 0, parameters frozen) plus a linear decay ``D = diag(linspace(1, 10, n))`` that keeps the
solutions bounded; ``B`` trajectories from random ``u0`` (float64), ``tspan = (0, 1)``, rtol 1e-6, atol 1e-8.

Every piece of the floor is timed in the same run, on the same batch, by the same calls the engine makes:
``t_f`` one call of ``f`` on ``(B, n)``; ``t_jac`` one batched Jacobian by the engine's own
:meth:`pysciml.engine.rhs.RHS.jac` (``(B, n, n)``: reverse mode, one vmapped VJP per output); ``t_lu`` one
``torch.linalg.lu_factor_ex`` of ``W = I / (gamma dt) - J``; ``t_solve`` one ``lu_solve`` with one right-hand
side. Then

    ratio = total / (nf t_f + njac t_jac + nlu t_lu)           (the issue's floor; target <= 1.15)

and, stricter, the ratio with the ``nsolve t_solve`` triangular solves added to the floor (the Rosenbrock stages'
own linear algebra). The difference between total and floor is the solver's bookkeeping: stage combinations,
error norms, step control, saving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import pysciml as ps
from pysciml.engine.rhs import RHS
from pysciml.solution import Stats

from .common import environment, markdown_table, result_name, start_task, synced, time_call, write_result

RTOL, ATOL = 1e-6, 1e-8


@dataclass
class Size:
    batch: int
    n: int
    width: int
    repeats: int


SIZES = {("full", "cpu"): Size(512, 16, 256, 5), ("smoke", "cpu"): Size(64, 8, 256, 2),
         ("full", "cuda"): Size(32768, 16, 256, 5), ("smoke", "cuda"): Size(512, 8, 256, 2)}


class MLPField(torch.nn.Module):
    """``f(t, u) = MLP(u) - D u`` on ``u (B, n)``; ``t`` unused. Parameters are frozen (a forward benchmark)."""

    def __init__(self, n: int, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n, width), torch.nn.Tanh(), torch.nn.Linear(width, n))
        self.register_buffer("decay", torch.linspace(1.0, 10.0, n))
        self.requires_grad_(False)

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.net(u) - self.decay * u


@dataclass
class Measured:
    alg: str
    total: float
    nf: int
    njac: int
    nlu: int
    nsolve: int
    naccept: int
    nreject: int
    t_f: float
    t_jac: float
    t_lu: float
    t_solve: float

    @property
    def floor(self) -> float:
        return self.nf * self.t_f + self.njac * self.t_jac + self.nlu * self.t_lu

    @property
    def floor_with_solves(self) -> float:
        return self.floor + self.nsolve * self.t_solve


def _per_call(fn: Callable[[], object], calls: int, repeats: int, device: str) -> float:
    """Seconds per ``fn()``: median over ``repeats`` loops of ``calls`` calls (after one warm-up loop)."""

    def loop() -> None:
        for _ in range(calls):
            fn()

    timing, _ = time_call(synced(loop, device), repeats=repeats)
    return timing.median / calls


def measure(size: Size, device: str) -> tuple[list[Measured], float]:
    """The two solves and the floor's pieces; also the max difference of the Tsit5 and Rodas5P end states
    (a check that both solved the same problem to their tolerance)."""
    torch.manual_seed(0)
    field = MLPField(size.n, size.width).double().to(device)
    u0 = torch.rand(size.batch, size.n, dtype=torch.float64, device=device) * 2.0 - 1.0
    prob = ps.ODEProblem(field, u0, (0.0, 1.0), batched=True)
    t = torch.zeros(size.batch, dtype=torch.float64, device=device)

    # the floor's pieces, on this batch, by the engine's own calls
    rhs = RHS(field, False, prob, Stats())
    jac = rhs.jac(t, u0)
    t_f = _per_call(lambda: field(t, u0), 50, size.repeats, device)
    t_jac = _per_call(lambda: rhs.jac(t, u0), 10, size.repeats, device)
    eye = torch.eye(size.n, dtype=torch.float64, device=device)
    w = eye * 50.0 - jac  # 1 / (gamma dt) for dt ~ 0.05, the order of Rodas5P's steps here
    lu, piv, _ = torch.linalg.lu_factor_ex(w)
    t_lu = _per_call(lambda: torch.linalg.lu_factor_ex(w), 20, size.repeats, device)
    rhs_vec = u0.unsqueeze(2)
    t_solve = _per_call(lambda: torch.linalg.lu_solve(lu, piv, rhs_vec), 20, size.repeats, device)

    out, ends = [], []
    for alg in (ps.Tsit5(), ps.Rodas5P()):
        def run(alg: ps.Algorithm = alg) -> ps.ODESolution:
            return ps.solve(prob, alg, rtol=RTOL, atol=ATOL, saveat=[1.0])

        timing, sol = time_call(synced(run, device), repeats=size.repeats)
        s = sol.stats
        if sol.retcode != ps.ReturnCode.Success:
            raise RuntimeError(f"{alg!r} failed on the MLP problem: {sol.retcode}")
        out.append(Measured(type(alg).__name__, timing.median, s.nf, s.njac, s.nlu, s.nsolve, s.naccept, s.nreject,
                            t_f, t_jac, t_lu, t_solve))
        ends.append(sol.u[-1])
    return out, float((ends[0] - ends[1]).abs().max())


def report(rows: list[Measured], size: Size, device: str, accuracy: float) -> str:
    table = markdown_table(
        ["algorithm", "total [ms]", "nf", "njac", "nlu", "nsolve", "accepted / rejected (all trajectories)",
         "floor [ms]", "ratio (issue floor)", "ratio (+ solves)"],
        [[r.alg, r.total * 1e3, r.nf, r.njac, r.nlu, r.nsolve, f"{r.naccept} / {r.nreject}", r.floor * 1e3,
          r.total / r.floor, r.total / r.floor_with_solves] for r in rows])
    r0 = rows[0]
    pieces = markdown_table(["piece", "time per call [us]"],
                            [["f (B, n)", r0.t_f * 1e6], ["Jacobian (B, n, n)", r0.t_jac * 1e6],
                             ["lu_factor_ex (B, n, n)", r0.t_lu * 1e6], ["lu_solve (B, n, 1)", r0.t_solve * 1e6]])
    verdict = "; ".join(f"{r.alg} {r.total / r.floor:.3f} ({'met' if r.total / r.floor <= 1.15 else 'missed'})"
                        for r in rows)
    return (f"# Task 5: solver overhead over the floor (MLP right-hand side)\n\n"
            f"Machine: {environment()}. Device {device}, torch threads {torch.get_num_threads()}.\n\n"
            f"f = MLP({size.n} -> {size.width} -> {size.n}, tanh) - D u, batch {size.batch}, float64, tspan (0, 1), "
            f"rtol {RTOL:g}, atol {ATOL:g}; medians of {size.repeats} runs after a warm-up.\n\n{table}\n\n"
            f"Pieces of the floor (same run):\n\n{pieces}\n\n"
            f"Target: ratio <= 1.15 against the issue's floor (nf t_f + njac t_jac + nlu t_lu): {verdict}. "
            f"Tsit5 and Rodas5P agree to {accuracy:.2g} (max abs difference at t = 1).\n")


def main(size: str = "full", device: str = "cpu") -> str:
    skip = start_task("Task 5 (floor)", device)
    if skip is not None:
        return skip
    cfg = SIZES[(size, device)]
    t0 = time.perf_counter()
    rows, accuracy = measure(cfg, device)
    text = report(rows, cfg, device, accuracy)
    text += f"\n(run took {time.perf_counter() - t0:.1f} s)\n"
    write_result(result_name("floor", size, device), text)
    return text


if __name__ == "__main__":
    print(main())
