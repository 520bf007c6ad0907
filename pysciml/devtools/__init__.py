"""Developer tools for validating solvers (DiffEqDevTools-like): convergence orders, work-precision, references.

- :func:`convergence` (``convergence.py``): errors over a sweep of fixed step sizes, the fitted order with its
  standard error and 95% interval, a log-log plot.
- :func:`work_precision` (``work_precision.py``): time, error, f calls and steps of several solvers over a
  tolerance sweep, timed like the benchmarks (:class:`TimingRule`: warm-up, medians, a time budget), and the
  work-precision plot.
- :func:`reference_solution` (``reference.py``): a reference from two different high-order methods at a tight
  tolerance, with their agreement.

A solver is a pysciml algorithm, a SciPy ``solve_ivp`` method name (``"Radau"``, ``"BDF"``, ``"LSODA"``,
``"DOP853"``, ...) or a callable ``solver(prob, saveat, **kw)`` (the :func:`pysciml.crossvalidate` convention plus
``dt=`` or ``rtol=, atol=``; see ``adapter.py``). Results export ``to_records()`` and ``to_csv(path)``
(:func:`read_csv` reads them back).

The functions share their modules' names, so they are imported here eagerly (a lazy ``__getattr__`` would be
shadowed by the submodule once it is imported). SciPy and matplotlib are imported only inside the functions
that use them.
"""

from __future__ import annotations

from .convergence import Convergence, OrderFit, convergence, fit_order
from .records import read_csv
from .reference import ReferenceSolution, reference_solution
from .timing import TimingRule, median_time
from .work_precision import BENCHMARK_TIMING, WorkPrecision, time_at_error, work_precision

__all__ = [
    "Convergence", "OrderFit", "convergence", "fit_order", "read_csv", "ReferenceSolution", "reference_solution",
    "TimingRule", "median_time", "BENCHMARK_TIMING", "WorkPrecision", "time_at_error", "work_precision",
]
