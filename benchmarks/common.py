"""Shared benchmark utilities: timing (median of repeats after a warm-up), environment, markdown tables."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    median: float
    runs: list[float] = field(default_factory=list)


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[Timing, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs; returns the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return Timing(statistics.median(runs), runs), out


def environment() -> str:
    import numpy
    import scipy
    import torch

    return (f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"numpy {numpy.__version__}, scipy {scipy.__version__}, date {time.strftime('%Y-%m-%d')}")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    return path
