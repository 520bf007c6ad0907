"""Tiny runs of the benchmark scripts, so they cannot rot: tables come out with finite numbers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])-?\d+\.?\d*(?:e[-+]?\d+)?(?![\w.])", text)]


def table_rows(text: str, prefix: str) -> list[list[str]]:
    """The cells of the markdown table rows starting with ``| prefix``."""
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith(f"| {prefix}")]


@pytest.mark.heavy
@pytest.mark.timeout(1500)  # its compiled rows compile for minutes on a cold cache (495 s in all at load 11)
def test_stiff_benchmark_smoke():
    pytest.importorskip("scipy")
    from benchmarks import stiff

    text = stiff.main("smoke")
    sweep = text[text.index("## Per problem"):]
    ours, scipy = table_rows(sweep, "pysciml "), table_rows(sweep, "SciPy ")
    # Rodas5P (analytic and autodiff J, each eager and compiled), Rodas4, KenCarp4, Rosenbrock23
    assert len(ours) == 7 and len(scipy) == 3
    for row in ours + scipy:  # solver | rtol | time | runs | error | nf | accepted | rejected | Jacobians | LUs
        assert float(row[1]) == 1e-6 and 0 < float(row[2]) < 1e4 and int(row[5]) > 0 and int(row[6]) > 0
    errors = {row[0]: float(row[4]) for row in ours}
    assert errors["pysciml Rodas5P"] < 1e-4  # rtol 1e-6 on Brusselator N=8 to t = 1: measured 2.7e-8
    for other in ("pysciml Rodas5P (autodiff J)", "pysciml Rodas5P compiled", "pysciml Rodas5P compiled (autodiff J)"):
        assert abs(errors[other] - errors["pysciml Rodas5P"]) < 1e-10  # same steps, same J to round-off
    assert max(errors.values()) < 1e-3  # Rosenbrock23 (order 2) measured 2.2e-5
    compiled = {row[1]: float(row[2]) for row in table_rows(text, "Brusselator")
                if row[1].startswith("pysciml Rodas5P compiled")}  # the compile-time table
    assert len(compiled) == 2 and all(s > 0 for s in compiled.values())  # compile time, reported apart
    repeats = {row[1]: row for row in table_rows(text, "ROBER")}  # 3 solves with perturbed rate constants
    # problem | solver | total | compile | per solve | error | failed
    for name in ("SciPy Radau", "pysciml Rodas5P compiled (autodiff J)", "pysciml Rodas5P compiled"):
        assert float(repeats[name][2]) > 0 and float(repeats[name][5]) < 1e-4 and int(repeats[name][6]) == 0
    assert float(repeats["pysciml Rodas5P compiled"][3]) > 0  # cache cleared: it compiled (measured 8.4 s)
    assert all(v == v for v in numbers(text))  # no NaN


@pytest.mark.heavy
def test_ensemble_benchmark_smoke():
    pytest.importorskip("scipy")
    from benchmarks import ensemble

    text = ensemble.main("smoke")
    rows = {row[0]: row for row in table_rows(text, "")[1:]}
    ours = rows["pysciml Rodas5P, one batched solve (cpu)"]
    assert 0 < float(ours[1]) and float(ours[4]) < 1e-5  # rtol 1e-6, 8 instances to t = 40: measured 1.0e-7
    for method in ("BDF", "Radau"):
        row = rows[f"SciPy {method}, Python loop"]
        assert float(row[1]) > 0 and float(row[4]) < 1e-4
    agree = float(re.search(r"agrees with SciPy Radau \(rtol 1e-12, atol 1e-16\) to (\S+) ", text)[1])
    assert agree < 1e-9  # the tight pysciml reference vs SciPy Radau at rtol 1e-12
    assert all(v == v for v in numbers(text))


def test_benchmark_problems_match_pysciml():
    """The NumPy right-hand sides and Jacobians SciPy gets are pysciml.problems' equations."""
    from benchmarks.stiff_problems import make_cases, torch_rhs_agrees

    for case in make_cases("full") + make_cases("smoke"):
        assert torch_rhs_agrees(case) < 1e-13, case.key


@pytest.mark.heavy  # imports and jit-compiles JAX: 9 s on a quiet machine (CI runs it)
def test_diffrax_kencarp4_runner_smoke():
    pytest.importorskip("diffrax")
    from benchmarks.peers import DiffraxSolver, jax_modules
    from benchmarks.stiff_problems import make_cases, max_rel_err, reference

    case = make_cases("smoke")[0]  # Brusselator N=8 to t = 1: the IMEX split as a MultiTerm
    solve = DiffraxSolver(case, "KenCarp4", jax_modules())
    out = solve(1e-6, 1e-10)
    assert out.ok and out.naccept > 0
    assert max_rel_err(out.u, reference(case)[0]) < 1e-4  # measured 7.0e-7


@pytest.mark.heavy
@pytest.mark.timeout(1500)  # its compile rows compile the differentiated whole loops now: 300 s was too short at load 5
def test_neural_ode_benchmark_smoke():
    from benchmarks import neural_ode

    text = neural_ode.main("smoke", "cpu")
    rows = {row[0]: row[1:] for row in table_rows(text, "")}
    for name in ("pysciml", "pysciml-adjoint"):  # time / iter | NFE fwd | NFE bwd | final loss | first iteration
        assert float(rows[name][0]) > 0 and float(rows[name][1]) > 0 and float(rows[name][3]) < 0.2
        compiled = rows[f"{name} compile"]  # same batches, same start: the same training to round-off
        assert float(compiled[0]) > 0 and abs(float(compiled[3]) - float(rows[name][3])) < 1e-5
    if "torchdiffeq" in rows and not rows["torchdiffeq"][0].startswith("skipped"):
        # same batches, same start, same tolerances: the losses agree (measured equal to 3 digits)
        assert abs(float(rows["pysciml"][3]) - float(rows["torchdiffeq"][3])) < 1e-2
    stiff = rows["pysciml Rodas5P + DiscreteAdjoint"]  # iterations | time / iter | NFE fwd | NFE bwd | loss
    assert int(stiff[0]) == 2 and float(stiff[1]) > 0 and float(stiff[2]) > 0 and float(stiff[4]) < 1e-2
    diffrax = rows.get("diffrax Kvaerno5 + RecursiveCheckpointAdjoint (jit)")
    if diffrax is not None and not diffrax[0].startswith(("skipped", "failed")):  # same model, start and data
        assert int(diffrax[0]) == 2 and float(diffrax[1]) > 0 and float(diffrax[5]) > 0
        assert abs(float(diffrax[4]) - float(stiff[4])) < 1e-2 * float(stiff[4])  # 3 digits shown; measured 1.8e-5


def test_hnn_benchmark_smoke():
    from benchmarks import hnn

    text = hnn.main("smoke", "cpu")
    rows = {r[0]: r for r in table_rows(text, "")[1:]}
    for name in ("pysciml HNN", "plain autograd"):
        assert 0 < float(rows[name][3]) < 1e3  # ms per training iteration
    assert float(re.search(r"agree to (\S+) \(relative\)", text)[1]) < 1e-12  # same loss and gradients
    assert all(v == v for v in numbers(text))


def test_fshare_benchmark_measures_the_rhs_share():
    """``benchmarks/stiff_fshare.py``: all three solves reach the reference, the clocks count every call, and SciPy
    on pysciml's torch functions takes the same steps as on the NumPy ones (the same equations)."""
    pytest.importorskip("scipy")
    from benchmarks import stiff_fshare
    from benchmarks.stiff_problems import make_cases

    case = next(c for c in make_cases("small") if c.key == "vdp")
    own, scipy_np, scipy_torch = stiff_fshare.measure(case, 1e-6)
    for run in (own, scipy_np, scipy_torch):
        assert run.err < 1e-6, (run.label, run.err)
        assert run.clock.nf > 50 and run.clock.njac >= 1
        assert 0.0 < run.clock.f + run.clock.jac < run.cpu
    assert scipy_torch.clock.nf == scipy_np.clock.nf and scipy_torch.clock.njac == scipy_np.clock.njac
    assert abs(scipy_torch.err - scipy_np.err) < 1e-9
