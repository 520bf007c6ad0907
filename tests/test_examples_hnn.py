"""Smoke runs of the three Hamiltonian-network reproductions in examples/ at a tiny size, through their main()
functions, asserting on the numbers they return (and that they write their markdown and png)."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import hnn_greydanus  # noqa: E402
import hnn_long_rollout  # noqa: E402
import separable_hnn  # noqa: E402


def _written(out: Path, stem: str) -> None:
    md = out / f"{stem}.md"
    assert md.read_text().startswith("# ")
    assert (out / f"{stem}.png").stat().st_size > 1000


def test_separable_hnn_smoke(tmp_path):
    summary = separable_hnn.main(["--systems", "henon_heiles", "--variants", "HNN", "I", "IL", "--seeds", "2",
                                  "--epochs", "25", "--patience", "25", "--out", str(tmp_path), "--name", "s"])
    _written(tmp_path, "s")
    for v in ("HNN", "I", "IL"):
        r = summary[("henon_heiles", v)]
        # 25 epochs at the paper's lr 1e-2 cut the vector-field error of the untrained network (about 1) by half
        assert r["vf_error"] < 0.5 * r["vf_error_init"], (v, r)
        assert r["h_mse"] > 0 and r["epochs"] == 25
    # with the inductive bias the learning-bias penalty is identically zero: IL trains exactly as I
    assert summary[("henon_heiles", "IL")]["vf_error"] == pytest.approx(summary[("henon_heiles", "I")]["vf_error"],
                                                                       rel=1e-9)
    assert math.isfinite(summary[("henon_heiles", "I")]["vf_error_gain"])


@pytest.mark.heavy
def test_long_rollout_smoke(tmp_path):
    out = hnn_long_rollout.main(["--steps", "1000", "--dt", "0.2", "--epochs", "150", "--patience", "150",
                                 "--batch", "3", "--points", "60", "--out", str(tmp_path), "--name", "r"])
    _written(tmp_path, "r")
    yosh, tsit, tsit2 = out["Yoshida4"], out["Tsit5, same cost"], out["Tsit5, 2 dt"]
    for r in out.values():  # the cost accounting of the docstring: 6 network gradients per step for both
        assert 5.95 <= r["nf"] / r["steps"] <= 6.3  # (+ a few hundred calls outside the steps for Yoshida4)
    assert yosh["nf"] == pytest.approx(tsit["nf"], rel=0.05)
    assert tsit2["nf"] == pytest.approx(tsit["nf"] / 2, rel=0.02)
    # symplectic: the learned energy error stays bounded; Tsit5's grows (secular drift)
    assert yosh["growth"] < 2.0
    assert tsit["growth"] > 10.0 and tsit2["growth"] > 10.0


@pytest.mark.heavy
def test_greydanus_smoke(tmp_path):
    out = hnn_greydanus.main(["--tasks", "mass_spring", "--n-traj", "10", "--steps", "150", "--traj-iters", "20",
                              "--trials", "3", "--out", str(tmp_path), "--name", "g"])
    _written(tmp_path, "g")
    mse = out["mass_spring"]
    assert set(mse) == set(hnn_greydanus.MODELS)
    assert all(math.isfinite(v) and v >= 0 for v in mse.values())
    # the HNN conserves its learned energy: far below the plain MLP's energy error even after 150 steps
    assert mse["HNN"] < 0.3 * mse["baseline"]
    # the same HNN rolled out by two accurate integrators (Tsit5 at 1e-10, ImplicitMidpoint dt = 0.05)
    assert mse["HNN, ImplicitMidpoint"] == pytest.approx(mse["HNN"], rel=0.2)
