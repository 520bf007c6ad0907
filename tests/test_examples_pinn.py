"""Smoke runs of issue 14's PINN examples (examples/pinn_*.py) on tiny budgets, asserting on the numbers their
``main`` returns, and the finite-element reference's convergence order (examples/pinn_holes.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))


def test_poisson2d_smoke(tmp_path: Path) -> None:
    import pinn_poisson2d

    runs = pinn_poisson2d.main(["--seeds", "1", "--adam", "60", "--lbfgs", "10", "--sweeps", "4",
                                "--problems", "poisson,variable", "--n-interior", "100", "--n-boundary", "40",
                                "--out", str(tmp_path)])
    for by_method in runs.values():
        for method in ("PINN", "LySep"):
            (run,) = by_method[method]
            assert run.history[-1]["loss"] < 0.5 * run.history[0]["loss"], (method, run.history[0], run.history[-1])
            assert math.isfinite(run.rel_l2)
    assert (tmp_path / "pinn_poisson2d.md").exists() and (tmp_path / "pinn_poisson2d.png").exists()


def test_highdim_smoke(tmp_path: Path) -> None:
    import pinn_highdim

    runs = pinn_highdim.main(["--dims", "3", "--adam", "80", "--lbfgs", "10", "--sweeps", "3", "--n-interior", "100",
                              "--n-boundary", "60", "--out", str(tmp_path)])
    (pinn,), (lysep,) = runs[3]["PINN"], runs[3]["LySep"]
    assert pinn.history[-1]["loss"] < 0.1 * pinn.history[0]["loss"]
    assert lysep.history[-1]["loss"] < lysep.history[0]["loss"]
    assert pinn.rel_l2 < 0.3  # u* = sum sin(pi x_i / 2) is O(1); the untrained network is off by ~100 %
    assert "| 3 | PINN |" in (tmp_path / "pinn_highdim.md").read_text()


def test_fem_reference_converges_at_p1_orders() -> None:
    pytest.importorskip("skfem")
    import pinn_holes

    rows = pinn_holes.fem_convergence([0.08, 0.04, 0.02])
    # measured: L2 orders 1.97, 1.93; H1 orders 1.00, 0.96 (square minus a disk, u = log r + x y)
    for row in rows[1:]:
        assert 1.8 < row["order_l2"] < 2.2, rows
        assert 0.85 < row["order_h1"] < 1.15, rows
    assert rows[-1]["l2"] < 5e-4


def test_holes_reference_is_a_discrete_harmonic_function_between_0_and_1() -> None:
    pytest.importorskip("skfem")
    import numpy as np
    import pinn_holes

    basis, u, _ = pinn_holes.reference(0.04)
    assert u.min() >= -1e-12 and u.max() <= 1 + 1e-12  # discrete maximum principle (Delaunay P1 mesh)
    p = basis.mesh.p
    centre = int(np.argmin(np.hypot(p[0], p[1])))  # the centre is far from the holes: u there lies inside (0, 1)
    assert 0.2 < u[centre] < 1.0


def test_holes_smoke_adaptive_weights_move(tmp_path: Path) -> None:
    pytest.importorskip("skfem")
    import pinn_holes

    out = pinn_holes.main(["--adam", "40", "--lbfgs", "5", "--n-interior", "150", "--n-boundary", "40",
                           "--h", "0.04", "--conv-h", "0.08,0.04", "--out", str(tmp_path)])
    runs = out["runs"]
    for variant in ("fixed", "gradnorm", "ntk"):
        (run,) = runs[variant]
        assert run.history[-1]["unweighted"] < run.history[0]["unweighted"], variant
        assert 0 < run.rel_l2 < 2
    assert runs["fixed"][0].weights == {"residual": 1.0, "outer": 1.0, "holes": 1.0}
    assert runs["gradnorm"][0].weights != runs["fixed"][0].weights
    assert runs["ntk"][0].weights != runs["fixed"][0].weights
    assert set(out["checks"]) == {"smooth_pinn_rel_l2", "regression_rel_l2"}
    assert all(math.isfinite(v) for v in out["checks"].values())


def test_rober_pinn_smoke(tmp_path: Path) -> None:
    import pinn_rober_inverse as rob
    import torch

    t, y, y_obs = rob.observations(12, 0.01, 0)
    # the data: Rodas5P keeps y1 + y2 + y3 = 1; the noise is 1 % of each species' scale
    assert torch.allclose(y.sum(1), torch.ones(12, dtype=torch.float64), atol=1e-8)
    assert 1e-5 < float(rob.misfit(y, y_obs)) < 1e-3
    args = rob.parse(["--adam", "30", "--lbfgs", "3", "--n-colloc", "40"])
    fit = rob.fit_pinn(t, y_obs, args)
    hist = fit["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert fit["k"].shape == (3,) and torch.isfinite(fit["k"]).all()


@pytest.mark.slow
@pytest.mark.heavy
def test_rober_adjoint_fit_lowers_the_misfit() -> None:
    import pinn_rober_inverse as rob

    t, _, y_obs = rob.observations(8, 0.01, 0)
    fit = rob.fit_adjoint(t, y_obs, 2)
    hist = fit["history"]
    assert fit["misfit"] < 0.5 * hist[0]["loss"], (hist, fit["misfit"])


def test_pinn_benchmark_smoke() -> None:
    import importlib.util

    root = str(EXAMPLES.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks import pinn

    text = pinn.main("smoke", "cpu")
    assert "| pysciml |" in text
    if importlib.util.find_spec("deepxde") is not None:
        assert "| DeepXDE |" in text
        assert "initial errors agree to 0.0e+00" in text  # same network function at the start
    else:
        assert "DeepXDE is not installed" in text
