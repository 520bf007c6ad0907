"""Pieces every example script shares: where results go, the common flags (``--full``, ``--out``, ``--threads``),
a display-free pyplot, number formatting, markdown tables and the wall-time line. Plain helpers; nothing here
is part of pysciml.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """``--full`` (the paper's sizes), ``--out`` (results folder), ``--threads`` (torch threads)."""
    parser.add_argument("--full", action="store_true", help="the paper's sizes (long on a CPU)")
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
    """``1.23e-04`` style; non-finite values as ``nan``/``inf``."""
    return str(x) if not math.isfinite(x) else f"{x:.{digits}e}"


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


def machine_line(seconds: float, note: str = "") -> str:
    """One line on where and how long a run took (``note``: e.g. that the machine was shared)."""
    return (f"Wall time of this run: {seconds:,.0f} s on {torch.get_num_threads()} torch thread(s), "
            f"torch {torch.__version__}, CPU{' (' + note + ')' if note else ''}.")


def run_systems(a: argparse.Namespace, argv: Sequence[str] | None, run: Any, write: Any) -> dict[str, Any]:
    """The multiscale scripts' ``main``: ``a.threads`` torch threads, ``run(system, a)`` for each of
    ``a.systems``, then ``write(results, a, argv, seconds)`` unless ``a.no_write``; prints the wall-time line."""
    import time

    torch.set_num_threads(a.threads)
    start = time.perf_counter()
    res = {s: run(s, a) for s in a.systems}
    seconds = time.perf_counter() - start
    if not a.no_write:
        print(f"wrote {write(res, a, argv, seconds)}")
    print(machine_line(seconds))
    return res
