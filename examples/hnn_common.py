"""Shared pieces of the Hamiltonian-network reproductions (``separable_hnn.py``, ``hnn_greydanus.py``,
``hnn_long_rollout.py``): where results go, the common command-line flags, number formatting, markdown tables
and a matplotlib import that works without a display.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from report import RESULTS, add_common_flags, machine_line, md_table, pyplot, sci, write_text  # noqa: F401 (re-exported)

from pysciml.analysis.hamiltonian import mean_sem


def mean_sem_str(values: Sequence[float], digits: int = 2) -> str:
    """``mean (sem)`` as in Khoo et al.'s tables; one value: the value alone."""
    m, s = mean_sem(list(values))
    return sci(m, digits) if not math.isfinite(s) else f"{sci(m, digits)} ({sci(s, 1)})"





class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.start


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that produced a results file: ``python examples/<script> <arguments>``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", f"examples/{script}", *args])
