"""Cross-validation of solvers: the same problem through several engines and algorithms, compared.

``crossvalidate(prob, [Rodas5P(), KenCarp4()], backends=("torch", "julia"), solvers={"mine": f})``
solves ``prob`` with every (backend, algorithm) pair and every user solver, at the same save points,
and reports the largest pairwise differences and the errors against a reference. An engine that is
not available here (Julia without juliacall, say) is skipped with the reason, never an exception; a
solve that fails numerically is reported with its message. A user solver is any
``solver(prob, saveat) -> Tensor`` returning the states at ``saveat`` with shape ``(S, *u0.shape)``:
that is the "cross-validate an in-house solver" use.

Differences between two results ``a`` and ``b`` are measured per save point and component as
``|a - b|`` (absolute) and ``|a - b| / (max(|a|, |b|) + atol)`` (relative, with ``atol`` as the floor
that keeps components near zero from dominating); the table reports the maxima and where they occur.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..algorithms import Algorithm
from ..devtools.adapter import Difference, as_states, difference, reference_values, save_times
from ..errors import InputError, JuliaNotAvailableError
from ..problem import ODEProblem
from ..solve import solve

__all__ = ["CrossValidation", "Difference", "crossvalidate"]

Tensor = torch.Tensor
Solver = Callable[[ODEProblem, Tensor], Any]


@dataclass
class CrossValidation:
    """Result of :func:`crossvalidate`.

    Attributes:
        t: save times ``(S,)`` (float64, CPU).
        solutions: engine name -> states ``(S, *u0.shape)`` (float64, CPU).
        pairwise: ``(name_a, name_b)`` -> :class:`Difference`, for every pair of solved engines.
        errors: engine name -> :class:`Difference` against the reference (empty without one).
        reference_label: what the errors are measured against.
        skipped: engine name -> why it did not run here (e.g. Julia not installed).
        failed: engine name -> the solver's message (numerical failure).
        seconds: engine name -> wall-clock time of its solve.
        atol: the floor of the relative differences.
        reference_values: the reference at every save point, ``(S, N)`` flat (``None`` if it was given
            at the final time only, or not at all).
    """

    t: Tensor
    solutions: dict[str, Tensor]
    pairwise: dict[tuple[str, str], Difference]
    errors: dict[str, Difference]
    reference_label: str
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    atol: float = 0.0
    reference_values: Tensor | None = None

    def max_difference(self) -> float:
        """The largest pairwise relative difference (0 with fewer than two solved engines)."""
        return max((d.max_rel for d in self.pairwise.values()), default=0.0)

    def table(self) -> str:
        """A readable report: engines, pairwise differences, errors, skipped and failed engines."""
        t0, t1 = float(self.t[0]), float(self.t[-1])
        lines = [f"crossvalidate: {len(self.t)} save points in [{t0:.4g}, {t1:.4g}], "
                 f"relative differences floored by atol={self.atol:.1e}"]
        width = max((len(n) for n in [*self.solutions, *self.skipped, *self.failed]), default=8)
        lines.append("engines:" if self.solutions else "engines: none solved")
        for name in self.solutions:
            lines.append(f"  {name:<{width}}  solved in {self.seconds.get(name, math.nan):.3g} s")
        if self.pairwise:
            lines.append("pairwise max differences:")
            for (a, b), d in self.pairwise.items():
                lines.append(f"  {a:<{width}} vs {b:<{width}}  {d}")
        if self.errors:
            lines.append(f"errors vs {self.reference_label}:")
            for name, d in self.errors.items():
                lines.append(f"  {name:<{width}}  {d}")
        for title, notes in (("skipped", self.skipped), ("failed", self.failed)):
            if notes:
                lines.append(f"{title}:")
                lines.extend(f"  {name:<{width}}  {why}" for name, why in notes.items())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: the solutions (left) and each engine's relative difference from the baseline
        (the reference, else the first engine) over time (right, log scale). Returns the path."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        fig = Figure(figsize=(11, 4.2))
        FigureCanvasAgg(fig)
        ax_u, ax_d = fig.subplots(1, 2)
        t = self.t.numpy()
        styles = ("-", "--", ":", "-.")
        for k, (name, u) in enumerate(self.solutions.items()):
            flat = u.reshape(len(t), -1)
            for j in range(min(flat.shape[1], 6)):
                ax_u.plot(t, flat[:, j].numpy(), styles[k % len(styles)], color=f"C{j}",
                          label=name if j == 0 else None)
        ax_u.set_xlabel("t")
        ax_u.set_ylabel("u (first components)")
        ax_u.legend(fontsize=7)
        baseline_name, baseline = self._baseline()
        if baseline is not None:
            for name, u in self.solutions.items():
                if name == baseline_name:
                    continue
                a, b = u.reshape(len(t), -1), baseline.reshape(len(t), -1)
                rel = ((a - b).abs() / (torch.maximum(a.abs(), b.abs()) + self.atol)).amax(dim=1)
                ax_d.semilogy(t, rel.clamp(min=1e-18).numpy(), label=name)
            ax_d.set_title(f"relative difference from {baseline_name}", fontsize=9)
            ax_d.legend(fontsize=7)
        ax_d.set_xlabel("t")
        notes = [f"skipped {n}" for n in self.skipped] + [f"failed {n}" for n in self.failed]
        if notes:
            fig.text(0.01, 0.01, "; ".join(notes), fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        return path

    def _baseline(self) -> tuple[str, Tensor | None]:
        if self.reference_values is not None:
            return self.reference_label, self.reference_values
        if self.solutions:
            name = next(iter(self.solutions))
            return name, self.solutions[name]
        return "", None


def _julia_skip_reason() -> str | None:
    from ..julia import julia_status

    status = julia_status()
    return None if status.available else status.reason


def crossvalidate(
    prob: ODEProblem,
    algs: Algorithm | Sequence[Algorithm],
    backends: Iterable[str] = ("torch", "julia"),
    *,
    solvers: Mapping[str, Solver] | None = None,
    saveat: float | Sequence[float] | Tensor | None = None,
    reference: Tensor | Callable[[Tensor], Any] | str | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    solve_options: Mapping[str, Any] | None = None,
    plot: str | Path | None = None,
) -> CrossValidation:
    """Solve ``prob`` with each backend and algorithm (and each user solver) and compare the results.

    Args:
        prob: the problem (any dtype/device; results are compared in float64 on the CPU).
        algs: one algorithm or several; each runs on every backend in ``backends``.
        backends: engines to use, ``"torch"`` and/or ``"julia"``; an unavailable one is skipped with a note.
        solvers: user solvers, name -> ``solver(prob, saveat) -> (S, *u0.shape)`` (``saveat`` a float64
            CPU tensor). Exceptions they raise propagate.
        saveat: the save times, or a number: their spacing (SciML's meaning, as in :func:`pysciml.solve`);
            default 21 equally spaced points.
        reference: the true solution, as a tensor ``(S, *u0.shape)`` at the save points or
            ``u0.shape`` at the final save time only, a callable ``t -> (S, *u0.shape)``, or the name of
            one of the engines; ``None`` for pairwise differences only.
        rtol, atol: tolerances of every solve; ``atol`` is also the floor of relative differences.
        solve_options: further keywords of :func:`pysciml.solve` for the engines (``maxiters``, ``dt``, ...).
        plot: if given, where to write the PNG of :meth:`CrossValidation.plot`.

    Returns:
        A :class:`CrossValidation` (print it for a table).
    """
    if not isinstance(prob, ODEProblem):
        raise InputError(f"prob must be an ODEProblem, got {type(prob).__name__}")
    alg_list = [algs] if isinstance(algs, Algorithm) else list(algs)
    backend_list = list(backends)
    for b in backend_list:
        if b not in ("torch", "julia"):
            raise InputError(f"backends must contain 'torch' and/or 'julia', got {b!r}")
    ts = save_times(saveat, prob)
    s = ts.shape[0]
    solutions: dict[str, Tensor] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for backend in backend_list:
        reason = _julia_skip_reason() if backend == "julia" else None
        for alg in alg_list:
            name = f"{alg!r}[{backend}]"
            if reason is not None:
                skipped[name] = reason
                continue
            began = time.perf_counter()
            try:
                sol = solve(prob, alg, rtol=rtol, atol=atol, saveat=ts.to(prob.u0.dtype), backend=backend,
                            **dict(solve_options or {}))
            except JuliaNotAvailableError as exc:
                skipped[name] = str(exc).splitlines()[0]
                continue
            seconds[name] = time.perf_counter() - began
            if not sol.success or sol.u.shape[0] != s:
                failed[name] = sol.message
                continue
            solutions[name] = as_states(sol.u, name, prob, s)
    for name, solver in (solvers or {}).items():
        began = time.perf_counter()
        values = solver(prob, ts.clone())
        seconds[name] = time.perf_counter() - began
        solutions[name] = as_states(values, name, prob, s)

    flat = {name: u.reshape(s, -1) for name, u in solutions.items()}
    names = list(flat)
    pairwise = {(a, b): difference(flat[a], flat[b], ts, atol)
                for i, a in enumerate(names) for b in names[i + 1:]}
    ref_values, label = reference_values(reference, prob, ts, solutions)
    errors: dict[str, Difference] = {}
    if ref_values is not None:
        for name, u in flat.items():
            if name == label:
                continue
            if ref_values.shape[0] == s:
                errors[name] = difference(u, ref_values, ts, atol)
            else:  # final time only
                errors[name] = difference(u[-1:], ref_values, ts[-1:], atol)
    at_points = ref_values if ref_values is not None and ref_values.shape[0] == s else None
    result = CrossValidation(ts, solutions, pairwise, errors, label, skipped, failed, seconds, float(atol),
                             at_points)
    if plot is not None:
        result.plot(plot)
    return result
