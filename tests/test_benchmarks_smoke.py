"""Tiny runs of the benchmark scripts, so they cannot rot: tables come out with finite numbers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])-?\d+\.?\d*(?:e[-+]?\d+)?(?![\w.])", text)]


def test_rober_benchmark_smoke():
    pytest.importorskip("scipy")
    from benchmarks import rober

    text = rober.main("smoke")
    assert "SciPy BDF" in text and "pysciml Rodas5P" in text
    rows = [line for line in text.splitlines() if line.startswith("| pysciml Rodas5P |")]
    assert rows
    err = float(rows[0].split("|")[-2])
    assert err < 1e-4  # rtol 1e-6: Rodas5P's error at t = 1e5 stays near the tolerance
    assert all(v == v for v in numbers(text))  # no NaN


def test_neural_ode_benchmark_smoke():
    from benchmarks import neural_ode

    text = neural_ode.main("smoke")
    row = next(line for line in text.splitlines() if line.startswith("| pysciml |"))
    cells = [c.strip() for c in row.split("|")[2:-1]]
    assert float(cells[0]) > 0 and float(cells[1]) > 0 and float(cells[3]) < 1.0
