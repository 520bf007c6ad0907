"""Fixed-step convergence: errors over a sweep of step sizes and the fitted order with its uncertainty.

``convergence(ps.RK4(), prob, [0.1, 0.05, 0.025], reference=exact)`` runs the solver at each fixed ``dt``,
measures the error against the reference and fits ``log(error) = order * log(dt) + c`` by least squares
(:func:`scipy.stats.linregress`). The result carries the slope, its standard error and a 95% interval
(Student's t with ``n - 2`` degrees of freedom), the local orders between neighbouring steps, a log-log plot and
CSV/records export.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..algorithms import Algorithm
from ..errors import InputError
from ..problem import ODEProblem
from .adapter import check_solver, describe, run_solver, save_times
from .records import ErrorMeasure, Records, check_measure, measure_error
from .reference import resolve_reference

__all__ = ["Convergence", "OrderFit", "convergence", "fit_order"]

Tensor = torch.Tensor


@dataclass(frozen=True)
class OrderFit:
    """Least-squares slope of ``log(error)`` against ``log(dt)``.

    Attributes:
        order: the slope.
        stderr: its standard error (``nan`` with two points: a line through two points has no residual).
        low, high: the 95% confidence interval ``order -+ t(0.975, n - 2) * stderr`` (``nan`` with two points).
        intercept: ``c`` in ``log(error) = order * log(dt) + c``.
        n: the number of points fitted.
    """

    order: float
    stderr: float
    low: float
    high: float
    intercept: float
    n: int

    def __str__(self) -> str:
        if self.n < 2:
            return f"no order: {self.n} finite positive error(s), two are needed"
        if math.isnan(self.stderr):
            return f"order {self.order:.3f} (two points: no interval)"
        return f"order {self.order:.3f} +- {self.stderr:.1e} (95%: [{self.low:.3f}, {self.high:.3f}], n={self.n})"


def fit_order(dts: Sequence[float], errors: Sequence[float]) -> OrderFit:
    """The fitted order of ``errors`` against ``dts`` (points with an error that is not finite and positive are
    left out; fewer than two left gives ``nan`` everywhere)."""
    from scipy.stats import linregress, t

    pts = [(math.log(d), math.log(e)) for d, e in zip(dts, errors, strict=True) if math.isfinite(e) and e > 0]
    n = len(pts)
    if n < 2:
        return OrderFit(math.nan, math.nan, math.nan, math.nan, math.nan, n)
    x, y = zip(*pts, strict=True)
    fit = linregress(x, y)
    if n == 2:
        return OrderFit(float(fit.slope), math.nan, math.nan, math.nan, float(fit.intercept), n)
    half = float(t.ppf(0.975, n - 2)) * float(fit.stderr)
    return OrderFit(float(fit.slope), float(fit.stderr), float(fit.slope) - half, float(fit.slope) + half,
                    float(fit.intercept), n)


@dataclass
class Convergence(Records):
    """Result of :func:`convergence`.

    Attributes:
        name: the solver's label.
        dts: the step sizes, in the order given.
        errors: the error at each step size (``nan`` where the solve failed).
        fit: the :class:`OrderFit` over the finite errors.
        expected: the method's theoretical order when known (a pysciml algorithm), else ``None``.
        error_measure: how the errors were measured (``"final"``, ``"l2"``, ``"max"`` or ``"callable"``).
        reference_label: what the errors are measured against.
        failures: ``dt`` -> the solver's message, for failed solves.
        records: one dict per step size (``solver, dt, error, nf, steps, success, local_order``).
    """

    name: str
    dts: list[float]
    errors: list[float]
    fit: OrderFit
    expected: int | None
    error_measure: str
    reference_label: str
    failures: dict[float, str] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def order(self) -> float:
        """The fitted order (the least-squares slope)."""
        return self.fit.order

    def local_orders(self) -> list[float]:
        """``log(e_i / e_{i+1}) / log(dt_i / dt_{i+1})`` between neighbouring step sizes (``nan`` where undefined)."""
        out = []
        for (d0, e0), (d1, e1) in zip(zip(self.dts, self.errors, strict=True),
                                      zip(self.dts[1:], self.errors[1:], strict=True), strict=False):
            ok = all(math.isfinite(e) and e > 0 for e in (e0, e1)) and d0 != d1
            out.append(math.log(e0 / e1) / math.log(d0 / d1) if ok else math.nan)
        return out

    def table(self) -> str:
        """A readable report: one line per step size, then the fit."""
        lines = [f"convergence of {self.name} (error: {self.error_measure} vs {self.reference_label})",
                 f"  {'dt':>12}  {'error':>12}  {'local order':>11}"]
        local = [math.nan, *self.local_orders()]
        for d, e, lo in zip(self.dts, self.errors, local, strict=True):
            note = f"  failed: {self.failures[d]}" if d in self.failures else ""
            lines.append(f"  {d:12.5g}  {e:12.4e}  {lo:11.3f}{note}")
        expect = "" if self.expected is None else f"; theory {self.expected}"
        lines.append(f"  fitted {self.fit}{expect}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | Path) -> Path:
        """Write a log-log PNG of error against ``dt`` with the fitted line. Returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        fig = Figure(figsize=(5.5, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        pts = [(d, e) for d, e in zip(self.dts, self.errors, strict=True) if math.isfinite(e) and e > 0]
        if pts:
            d, e = zip(*sorted(pts), strict=True)
            ax.loglog(d, e, "o", label=f"{self.name} ({self.error_measure} error)")
            if math.isfinite(self.fit.order):
                line = [math.exp(self.fit.intercept + self.fit.order * math.log(x)) for x in (d[0], d[-1])]
                ax.loglog([d[0], d[-1]], line, "--", label=f"fit: {self.fit}")
        ax.set_xlabel("dt")
        ax.set_ylabel("error")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        return path


def _check_dts(dts: Any, prob: ODEProblem) -> list[float]:
    try:
        out = [float(d) for d in dts]
    except (TypeError, ValueError):
        raise InputError(f"dts must be a sequence of step sizes, got {dts!r}") from None
    span = abs(prob.tspan[1] - prob.tspan[0])
    if len(set(out)) < 2:
        raise InputError(f"dts needs at least two different step sizes to fit an order, got {out}")
    bad = [d for d in out if not (math.isfinite(d) and 0 < d <= span)]
    if bad:
        raise InputError(f"dts must be positive, finite and at most the span |t1 - t0| = {span:g}; got {bad[0]!r}")
    return out


def convergence(
    solver: Any,
    prob: ODEProblem,
    dts: Sequence[float],
    reference: Any = None,
    *,
    saveat: Any = None,
    error: ErrorMeasure = "final",
    solve_options: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Convergence:
    """Solve ``prob`` with fixed steps ``dts`` and fit the order of the errors.

    Args:
        solver: a pysciml algorithm (run with ``adaptive=False, dt=dt`` and Newton tolerances 1e-13), or a callable
            ``solver(prob, saveat, dt=dt) -> (S, *u0.shape)`` (see :mod:`pysciml.devtools.adapter`).
        prob: the problem (unbatched or batched; errors are taken over all components).
        dts: at least two different step sizes, each at most ``|t1 - t0|``.
        reference: the true solution: a tensor ``(S, *u0.shape)`` at the save times or ``u0.shape`` at the final
            time, a callable ``t -> (S, *u0.shape)``, a :class:`~pysciml.devtools.ReferenceSolution`, or ``None``
            to compute one with :func:`~pysciml.devtools.reference_solution` (rtol 1e-12).
        saveat: the save times (as ``solve`` reads them); default ``[t0, t1]``.
        error: ``"final"``, ``"l2"``, ``"max"`` (see :data:`~pysciml.devtools.records.ERROR_MEASURES`) or a
            callable ``error(u, ref) -> float`` on ``(S, N)`` float64 tensors.
        solve_options: further keywords of :func:`pysciml.solve` for an algorithm.
        name: the label in tables and plots (default: the algorithm's repr or the callable's name).

    Returns:
        A :class:`Convergence` (print it for a table; ``.order``, ``.fit``, ``.plot(path)``, ``.to_csv(path)``).
    """
    if not isinstance(prob, ODEProblem):
        raise InputError(f"prob must be an ODEProblem, got {type(prob).__name__}")
    check_solver(solver, "solver", fixed_step=True)
    check_measure(error)
    steps = _check_dts(dts, prob)
    ts = save_times(saveat, prob, default=2)
    ref, label = resolve_reference(reference, prob, ts)
    label_ = name or describe(solver)
    errors, failures, records = [], {}, []
    for dt in steps:
        out = run_solver(solver, prob, ts, label_, dt=dt, solve_options=solve_options)
        err = measure_error(out.u.reshape(len(ts), -1), ref, error) if out.u is not None else math.nan
        if not out.success:
            failures[dt] = out.message
        errors.append(err)
        records.append({"solver": label_, "dt": dt, "error": err, "nf": out.nf, "steps": out.steps,
                        "success": out.success})
    result = Convergence(label_, steps, errors, fit_order(steps, errors),
                         solver.order if isinstance(solver, Algorithm) else None,
                         error if isinstance(error, str) else "callable", label, failures, records)
    for r, lo in zip(records, [math.nan, *result.local_orders()], strict=True):
        r["local_order"] = lo
    return result
