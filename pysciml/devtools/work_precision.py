"""Work-precision: time, error, f calls and steps of several solvers over a sweep of tolerances.

``work_precision(prob, {"Rodas5P": ps.Rodas5P(), "Radau": "Radau", "mine": my_solver}, [1e-4, 1e-6, 1e-8])``
runs every solver at every tolerance (``atol = atol_ratio * rtol`` unless ``atol`` is given), timed by
:class:`~pysciml.devtools.TimingRule` (the stiff benchmarks' rule: a warm-up per solver, medians of up to 5 runs,
tighter tolerances skipped after a run over the time budget), and measures each error against one reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..problem import ODEProblem
from .adapter import check_solver, run_solver, save_times
from .records import ErrorMeasure, Records, check_measure, measure_error
from .reference import resolve_reference
from .timing import TimingRule, median_time

__all__ = ["BENCHMARK_TIMING", "WorkPrecision", "time_at_error", "work_precision"]

Tensor = torch.Tensor
BENCHMARK_TIMING = TimingRule()
"""The default rule: one warm-up per solver, medians of up to 5 runs, a 5 s budget per run."""


def time_at_error(points: Sequence[tuple[float, float]], err: float) -> float | None:
    """A solver's time at error ``err``, log-log interpolated between its ``(error, time)`` points (sorted by
    error); ``None`` outside them."""
    if not points or not points[0][0] <= err <= points[-1][0]:
        return None
    e, t = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.exp(np.interp(np.log(err), e, t)))


@dataclass
class WorkPrecision(Records):
    """Result of :func:`work_precision`.

    Attributes:
        names: the solvers' names, in the order given.
        tolerances: the rtols, loosest first.
        error_measure: ``"final"``, ``"l2"``, ``"max"`` or ``"callable"``.
        reference_label: what the errors are measured against.
        timing: the :class:`TimingRule` used (``None``: a single timed run per point, no warm-up).
        skipped: ``(name, rtol)`` of the points skipped by the time budget.
        records: one dict per (solver, rtol): ``solver, rtol, atol, time, runs, error, nf, steps, success,
            message`` (``None`` on success); ``time`` in seconds (median), ``error`` ``nan`` for failed runs.
    """

    names: list[str]
    tolerances: list[float]
    error_measure: str
    reference_label: str
    timing: TimingRule | None
    skipped: list[tuple[str, float]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The records of solver ``name``, loosest tolerance first."""
        if name not in self.names:
            raise InputError(f"no solver named {name!r}; the solvers are {self.names}")
        return [r for r in self.records if r["solver"] == name]

    def errors(self, name: str) -> list[float]:
        """The errors of solver ``name``, loosest tolerance first (skipped points left out)."""
        return [r["error"] for r in self.rows(name)]

    def curve(self, name: str, work: str = "time") -> list[tuple[float, float]]:
        """``(error, work)`` points of ``name`` with a finite positive error, sorted by error; ``work`` is
        ``"time"``, ``"nf"`` or ``"steps"``."""
        return sorted((r["error"], r[work]) for r in self.rows(name)
                      if math.isfinite(r["error"]) and r["error"] > 0 and r[work] is not None)

    def time_at_error(self, name: str, err: float) -> float | None:
        """The time ``name`` needs for error ``err`` (log-log interpolated; ``None`` outside its curve)."""
        return time_at_error(self.curve(name), err)

    def table(self) -> str:
        """A readable table: one line per (solver, tolerance)."""
        width = max((len(n) for n in self.names), default=6)
        lines = [f"work-precision (error: {self.error_measure} vs {self.reference_label})",
                 f"  {'solver':<{width}}  {'rtol':>8}  {'time [ms]':>10}  {'error':>10}  {'f calls':>8}  {'steps':>7}"]
        for r in self.records:
            nf = "-" if r["nf"] is None else r["nf"]
            steps = "-" if r["steps"] is None else r["steps"]
            note = "" if r["success"] else f"  failed: {r['message']}"
            lines.append(f"  {r['solver']:<{width}}  {r['rtol']:8.1e}  {r['time'] * 1e3:10.3g}  {r['error']:10.2e}  "
                         f"{nf!s:>8}  {steps!s:>7}{note}")
        if self.skipped:
            lines.append("  skipped (time budget): " + ", ".join(f"{n} at rtol {t:g}" for n, t in self.skipped))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | Path, title: str = "") -> Path:
        """Write a PNG: time against error (left) and f calls against error (right), log-log. Returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        fig = Figure(figsize=(11, 4.4))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        for ax, work, label in ((axes[0], "time", "wall time [s]"), (axes[1], "nf", "f calls")):
            for k, name in enumerate(self.names):
                pts = self.curve(name, work)
                if pts:
                    e, y = zip(*pts, strict=True)
                    ax.loglog(e, y, "os^Dv<>"[k % 7] + "-", label=name, markersize=4)
            ax.set_xlabel(f"error ({self.error_measure})")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
        axes[1].legend(fontsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        return path


def _check_tolerances(tolerances: Any) -> list[float]:
    try:
        tols = [float(t) for t in tolerances]
    except (TypeError, ValueError):
        raise InputError(f"tolerances must be a sequence of rtols, got {tolerances!r}") from None
    if not tols:
        raise InputError("tolerances is empty; pass rtols such as [1e-4, 1e-6, 1e-8]")
    bad = [t for t in tols if not 0 < t < 1]
    if bad:
        raise InputError(f"every tolerance must be an rtol in (0, 1), got {bad[0]!r}")
    return sorted(set(tols), reverse=True)


def work_precision(
    prob: ODEProblem,
    solvers: Mapping[str, Any],
    tolerances: Sequence[float],
    reference: Any = None,
    *,
    atol: float | Callable[[float], float] | None = None,
    atol_ratio: float = 1.0,
    error: ErrorMeasure = "final",
    timing: TimingRule | None = BENCHMARK_TIMING,
    saveat: Any = None,
    solve_options: Mapping[str, Any] | None = None,
) -> WorkPrecision:
    """Run every solver at every tolerance; time it, count its work and measure its error.

    Args:
        prob: the problem (SciPy methods need it unbatched).
        solvers: name -> a pysciml algorithm, a SciPy method name (``"Radau"``, ``"BDF"``, ``"LSODA"``,
            ``"DOP853"``, ...) or a callable ``solver(prob, saveat, rtol=, atol=) -> (S, *u0.shape)`` (it may
            return ``(states, {"steps": ..., "nf": ...})``; otherwise its calls of ``prob.f`` are counted).
        tolerances: the rtols (run loosest first).
        reference: as in :func:`~pysciml.devtools.convergence`; ``None`` computes one with
            :func:`~pysciml.devtools.reference_solution`.
        atol: a fixed absolute tolerance, or a function ``rtol -> atol``; default ``atol_ratio * rtol``.
        atol_ratio: see ``atol``.
        error: ``"final"``, ``"l2"``, ``"max"`` or a callable ``error(u, ref) -> float`` on ``(S, N)`` tensors.
        timing: a :class:`TimingRule`; ``None`` times one run per point with no warm-up (quick looks only).
        saveat: the save times (as ``solve`` reads them); default ``[t0, t1]``.
        solve_options: further keywords of :func:`pysciml.solve` for the algorithms.

    Returns:
        A :class:`WorkPrecision` (print it for a table; ``.plot(path)``, ``.to_records()``, ``.to_csv(path)``).
    """
    if not isinstance(prob, ODEProblem):
        raise InputError(f"prob must be an ODEProblem, got {type(prob).__name__}")
    if not isinstance(solvers, Mapping) or not solvers:
        raise InputError("solvers must be a non-empty dict name -> solver, e.g. {'Rodas5P': ps.Rodas5P()}")
    for name, s in solvers.items():
        check_solver(s, f"solvers[{name!r}]")
    tols = _check_tolerances(tolerances)
    check_measure(error)
    if timing is not None and not isinstance(timing, TimingRule):
        raise InputError(f"timing must be a pysciml.devtools.TimingRule or None, got {type(timing).__name__}")
    if not (atol is None or callable(atol) or isinstance(atol, (int, float))):
        raise InputError(f"atol must be a number, a function rtol -> atol, or None, got {type(atol).__name__}")
    rule = timing or TimingRule(warmup=0, max_runs=1, slow_cap=math.inf)
    ts = save_times(saveat, prob, default=2)
    ref, label = resolve_reference(reference, prob, ts)

    def atol_of(rtol: float) -> float:
        if atol is None:
            return atol_ratio * rtol
        return float(atol(rtol)) if callable(atol) else float(atol)

    result = WorkPrecision(list(solvers), tols, error if isinstance(error, str) else "callable", label, timing)
    for name, solver in solvers.items():
        def run(rtol: float, solver: Any = solver, name: str = name) -> Any:
            return run_solver(solver, prob, ts, name, rtol=rtol, atol=atol_of(rtol), solve_options=solve_options)

        for _ in range(rule.warmup):
            run(tols[0])
        last = 0.0
        for rtol in tols:
            if last > rule.slow_cap:
                result.skipped.append((name, rtol))
                continue
            seconds, runs, out = median_time(lambda rtol=rtol, run=run: run(rtol), rule.max_runs)
            last = seconds
            err = measure_error(out.u.reshape(len(ts), -1), ref, error) if out.u is not None else math.nan
            result.records.append({"solver": name, "rtol": rtol, "atol": atol_of(rtol), "time": seconds,
                                   "runs": runs, "error": err, "nf": out.nf, "steps": out.steps,
                                   "success": out.success, "message": out.message or None})
    return result
