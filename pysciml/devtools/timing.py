"""The timing rule of the work-precision sweeps (the one the stiff benchmarks use).

Per solver: ``warmup`` untimed calls first (at the loosest tolerance: imports, caches, compilation). Per
tolerance: the median wall time of 5 runs when the first run takes at most 0.5 s, of 3 when it takes at most
2 s, else the single run (at most ``max_runs``). Once a run takes longer than ``slow_cap`` seconds the solver
skips its tighter tolerances (they would take longer still); the skipped points are reported.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

__all__ = ["TimingRule", "median_time"]


@dataclass(frozen=True)
class TimingRule:
    """How :func:`~pysciml.devtools.work_precision` times its runs.

    Attributes:
        warmup: untimed calls per solver before its first timed one.
        max_runs: the most timed runs per point (the median is reported); 1 times a single run.
        slow_cap: seconds; after a run longer than this the solver's tighter tolerances are skipped
            (``math.inf``: never skip).
    """

    warmup: int = 1
    max_runs: int = 5
    slow_cap: float = 5.0

    def __post_init__(self) -> None:
        if not (isinstance(self.warmup, int) and self.warmup >= 0):
            raise InputError(f"TimingRule.warmup must be an int >= 0, got {self.warmup!r}")
        if not (isinstance(self.max_runs, int) and self.max_runs >= 1):
            raise InputError(f"TimingRule.max_runs must be an int >= 1, got {self.max_runs!r}")
        if not (self.slow_cap > 0 or math.isinf(self.slow_cap)):
            raise InputError(f"TimingRule.slow_cap must be positive seconds (math.inf: never skip), got "
                             f"{self.slow_cap!r}")


def median_time(fn: Callable[[], Any], max_runs: int = 5) -> tuple[float, int, Any]:
    """Median wall time of ``fn()`` (the caller has warmed it up): 5 runs when the first takes <= 0.5 s, 3 when
    it takes <= 2 s, 1 otherwise; at most ``max_runs``. Returns ``(median seconds, runs, last result)``."""
    t0 = time.perf_counter()
    out = fn()
    runs = [time.perf_counter() - t0]
    extra = min(max_runs - 1, 4 if runs[0] <= 0.5 else 2 if runs[0] <= 2.0 else 0)
    for _ in range(extra):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), len(runs), out
