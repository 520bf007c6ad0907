"""Shared pieces of the Hamiltonian-network reproductions (``separable_hnn.py``, ``hnn_greydanus.py``,
``hnn_long_rollout.py``): where results go, the common command-line flags, number formatting, markdown tables
and a matplotlib import that works without a display.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pysciml.analysis.hamiltonian import mean_sem

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """``--full`` (the paper's size), ``--out`` (results folder), ``--threads`` (torch threads)."""
    parser.add_argument("--full", action="store_true", help="the paper's sizes (hours on a CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the markdown and png results")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small networks: 1 is fastest and leaves the other cores free)")


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sci(x: float, digits: int = 2) -> str:
    """``1.23e-04`` style; ``nan`` stays ``nan``."""
    return "nan" if not math.isfinite(x) else f"{x:.{digits}e}"


def mean_sem_str(values: Sequence[float], digits: int = 2) -> str:
    """``mean (sem)`` as in Khoo et al.'s tables; one value: the value alone."""
    m, s = mean_sem(list(values))
    return sci(m, digits) if not math.isfinite(s) else f"{sci(m, digits)} ({sci(s, 1)})"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (creating the folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def machine_line(seconds: float) -> str:
    """One line on where and how long a run took (the seconds are rough on a shared machine)."""
    return (f"Wall time of this run: {seconds:,.0f} s on {torch.get_num_threads()} torch thread(s), "
            f"torch {torch.__version__}, CPU.")


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
