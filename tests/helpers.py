"""Test helpers: problems with closed-form solutions, the observed-order fit, and stub steppers for the loop."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

import pysciml as ps
from pysciml.engine.controller import PIController
from pysciml.engine.loop import integrate_batched
from pysciml.engine.loop_records import LoopOptions, LoopResult
from pysciml.engine.loop_scalar import integrate_single
from pysciml.engine.stepper import Stepper, StepResult


def observed_order(dts: list[float], errors: list[float]) -> float:
    """Least-squares slope of log(error) against log(dt)."""
    xs = [math.log(d) for d in dts]
    ys = [math.log(e) for e in errors]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def kepler_exact(t: float, e: float) -> list[float]:
    """Kepler orbit (a = 1, mean motion 1) from perihelion: solve M = E - e sin E by Newton, then (q, p)."""
    E = t
    for _ in range(50):
        E -= (E - e * math.sin(E) - t) / (1 - e * math.cos(E))
    r = 1 - e * math.cos(E)
    s = math.sqrt(1 - e * e)
    return [math.cos(E) - e, s * math.sin(E), -math.sin(E) / r, s * math.cos(E) / r]


def kepler_problem(t1: float = 3.0, e: float = 0.3, dtype: torch.dtype = torch.float64):
    """Kepler's two-body problem (closed-form solution through Kepler's equation), a coupled nonlinear system,
    plus a non-autonomous component u4' = cos(t) u4 (u4 = exp(sin t)) so df/dt matters for Rosenbrock methods."""

    def f(t, u, p):
        q1, q2, p1, p2, w = u.unbind()
        r3 = (q1 * q1 + q2 * q2) ** 1.5
        return torch.stack((p1, p2, -q1 / r3, -q2 / r3, torch.cos(t) * w))

    def exact(t: float) -> torch.Tensor:
        return torch.tensor([*kepler_exact(t, e), math.exp(math.sin(t))], dtype=dtype)

    return ps.ODEProblem(f, exact(0.0), (0.0, t1)), exact


def nonlinear_problem(dtype: torch.dtype = torch.float64, t1: float = 2.0, omega: float = 3.0):
    """Smooth, nonlinear, non-autonomous, with closed-form solution:
    u0' = omega cos(omega t) u0  (u0 = exp(sin(omega t))),  u1' = -2 omega^2 t u1^2  (u1 = 1/(1 + (omega t)^2))."""

    def f(t, u, p):
        return torch.stack((omega * torch.cos(omega * t) * u[0], -2 * omega**2 * t * u[1] ** 2))

    def exact(t: float) -> torch.Tensor:
        return torch.tensor([math.exp(math.sin(omega * t)), 1 / (1 + (omega * t) ** 2)], dtype=dtype)

    return ps.ODEProblem(f, exact(0.0), (0.0, t1)), exact


def split_problem(stiffness: float = 10.0) -> tuple[ps.SplitODEProblem, object]:
    """u' = L u + g(t, u) with exact solution (cos t, sin t); L implicit (matrix), g explicit and nonlinear.

    g = u*'(t) - L u*(t) + 0.5 (|u|^2 - 1) (1, 1): the nonlinear term vanishes on the exact solution only."""
    L = stiffness * torch.tensor([[-2.0, 1.0], [1.0, -2.0]], dtype=torch.float64)

    def star(t):
        return torch.stack((torch.cos(t), torch.sin(t))), torch.stack((-torch.sin(t), torch.cos(t)))

    def g(t, u, p):
        us, dus = star(t)
        return dus - L @ us + 0.5 * (u.pow(2).sum() - 1.0) * torch.ones_like(u)

    def exact(t: float) -> torch.Tensor:
        return torch.tensor([math.cos(t), math.sin(t)], dtype=torch.float64)

    return ps.SplitODEProblem(L, g, torch.tensor([1.0, 0.0], dtype=torch.float64), (0.0, 1.0)), exact


# --- stub steppers for the integration loop (tests/test_loop.py, tests/test_controller.py) ---

LOOP_PATHS = ("scalar", "batched1", "batch3")  # one trajectory (fast path), one on the batched loop, three


@dataclass
class Script:
    """What one trajectory of a :class:`StubStepper` does. ``errors``: the error norm of the k-th attempted step
    (the last value repeats; with ``atol=1, rtol=0`` the loop's norm of the returned ``err`` is exactly this
    value); ``None``: ``err_scale * dt**2``. ``fail_calls``: attempts whose ``StepResult.ok`` is False.
    ``nan_after``: ``u_new`` is NaN for a step ending beyond this time."""

    errors: tuple[float, ...] | None = None
    err_scale: float = 1.0
    fail_calls: tuple[int, ...] = ()
    nan_after: float | None = None


class StubStepper(Stepper):
    """Steps u' = -u exactly (``u exp(-dt)``) with scripted errors and failures; logs every attempt's ``(t, dt)``
    per trajectory. ``scripts``: one per trajectory, or one for all."""

    def __init__(self, *scripts: Script, order: int = 1) -> None:
        self.scripts = scripts or (Script(),)
        self.order = order
        self.f0: torch.Tensor | None = None
        self.log: list[tuple[list[float], list[float]]] = []

    def script(self, b: int) -> Script:
        return self.scripts[b if len(self.scripts) > 1 else 0]

    def init(self, t: torch.Tensor, u: torch.Tensor) -> None:
        self.f0 = -u

    def f_total(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return -u

    def step(self, t: torch.Tensor, u: torch.Tensor, dt: torch.Tensor) -> StepResult:
        k = len(self.log)
        self.log.append((t.tolist(), dt.tolist()))
        u_new = u * torch.exp(-dt)[:, None]
        errs, oks = [], []
        for b in range(u.shape[0]):
            s = self.script(b)
            errs.append(s.errors[min(k, len(s.errors) - 1)] if s.errors is not None else s.err_scale * dt[b] ** 2)
            oks.append(k not in s.fail_calls)
            if s.nan_after is not None and float(t[b] + dt[b]) > s.nan_after:
                u_new[b] = math.nan
        err = torch.stack([torch.as_tensor(e, dtype=u.dtype) for e in errs])[:, None].expand_as(u).clone()
        ok = torch.tensor(oks) if not all(oks) else None
        return StepResult(u_new=u_new, err=err, ok=ok, stages=[], f_start=self.f0)

    def accept(self, accepted: torch.Tensor | bool, t: torch.Tensor, u: torch.Tensor, res: StepResult) -> None:
        self.f0 = -u

    def interpolant(self, u: torch.Tensor, dt: torch.Tensor, res: StepResult) -> torch.Tensor:
        return torch.stack((u, res.u_new - u))  # linear: exact at both ends, enough for bookkeeping checks

    def attempts(self, b: int = 0) -> list[tuple[float, float]]:
        """Trajectory ``b``'s attempted steps ``(t, dt)`` in order (a batch keeps stepping finished rows: callers
        cut the list at that trajectory's own count)."""
        return [(ts[b], dts[b]) for ts, dts in self.log]


def loop_options(**kw: Any) -> LoopOptions:
    """The loop's options for u' = -u on (0, 1) with the tolerances of ``Script.errors`` (atol 1, rtol 0)."""
    base: dict[str, Any] = dict(
        t0=0.0, t1=1.0, adaptive=True, dt=None, atol=torch.ones((1, 1), dtype=torch.float64), rtol=0.0,
        maxiters=10_000, dtmin=0.0, dtmax=None, saveat=None, save_everystep=True, dense=False,
        controller=PIController())
    base.update(kw)
    return LoopOptions(**base)


def run_loop(stepper: Stepper, path: str, opts: LoopOptions, u0: float = 1.0) -> tuple[LoopResult, ps.Stats]:
    """Integrate with the stub on one of :data:`LOOP_PATHS` (``batch3``: three equal trajectories)."""
    bsz = 3 if path == "batch3" else 1
    stats = ps.Stats()
    loop = integrate_single if path == "scalar" else integrate_batched
    res = loop(stepper, torch.full((bsz, 1), u0, dtype=torch.float64), opts, stats)
    return res, stats


#: torchdiffeq comparisons' problems: name -> (func(t, y), y0 as a list); constant, linear (A), sine, exponential
A = torch.tensor([[-0.3, 1.0], [-1.0, -0.2]], dtype=torch.float64)
PROBLEMS = {
    "constant": (lambda t, y: torch.full_like(y, 0.5), [1.0, -2.0]),
    "linear": (lambda t, y: y @ A.T.to(y.dtype), [1.0, 0.5]),
    "sine": (lambda t, y: torch.sin(3 * t).to(y.dtype) * torch.ones_like(y), [0.0, 1.0]),
    "exponential": (lambda t, y: 0.8 * y, [1.0, 2.0]),
}


def rober_dae(t1: float = 1e5, **problem_kwargs) -> ps.ODEProblem:
    """Robertson as an index-1 DAE: ``M = diag(1, 1, 0)``, the third equation ``y1 + y2 + y3 - 1 = 0`` (the
    conservation law), from ``(1, 0, 0)`` to ``t1`` in float64; ``problem_kwargs`` go to ``ODEProblem``."""

    def f(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        y1, y2, y3 = u[0], u[1], u[2]
        return torch.stack((-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 3e7 * y2 * y2 - 1e4 * y2 * y3, y1 + y2 + y3 - 1))

    M = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    return ps.ODEProblem(f, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), (0.0, t1), mass_matrix=M,
                         **problem_kwargs)


def periodic_tridiagonal(n: int) -> torch.Tensor:
    """The ``(n, n)`` boolean pattern of a periodic 1-D three-point stencil (the sparse tests' banded problems)."""
    eye = torch.eye(n, dtype=torch.bool)
    return eye | torch.roll(eye, 1, 0) | torch.roll(eye, -1, 0)


def count_matvecs(solver: Any) -> list[int]:
    """Wrap ``solver.matvec`` (a Krylov solver's ``W v``) to count its calls; the returned one-element list holds
    the count."""
    count = [0]
    inner = solver.matvec

    def counted(v: torch.Tensor) -> torch.Tensor:
        count[0] += 1
        return inner(v)

    solver.matvec = counted
    return count
