"""Smoke runs of the NTK reproductions in examples/ (ntk_spectra, ntk_poisson1d) at a tiny size, through their
main(): they run end to end, write their tables and figures, and the numbers they print are finite."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


@pytest.mark.slow
def test_ntk_poisson1d_smoke(tmp_path: Path) -> None:
    import ntk_poisson1d

    text = ntk_poisson1d.main(["--iters", "200", "--every", "50", "--out", str(tmp_path / "p")])
    errors = [float(m) for m in re.findall(r"\| (?:plain|NTK weights) \| ([0-9.e+-]+) \|", text)]
    assert len(errors) == 2 and all(math.isfinite(e) for e in errors)
    assert (tmp_path / "p.md").exists() and (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.heavy  # 12 s on a quiet machine: the default run stays inside its 10 minutes (CI runs it)
def test_ntk_spectra_smoke(tmp_path: Path) -> None:
    import ntk_spectra

    text = ntk_spectra.main(["--n1", "12", "--grid", "3", "--widths", "8", "16", "--width", "8", "--steps", "3",
                             "--out", str(tmp_path / "s")])
    assert "## Lazy training" in text and "nan" not in text
    assert (tmp_path / "s.png").stat().st_size > 1000
