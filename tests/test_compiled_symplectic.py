"""``compile=True`` for the explicit symplectic (splitting) methods (pysciml/engine/compiled_symplectic.py).

The default run executes the program's Python function against the eager solve (the same arithmetic: equal values
and counters); a HamiltonianProblem compiles too (``tests/test_compiled_hamiltonian.py``). The exhaustive tests
compile.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from loop_programs import assert_compiled_matches_eager

import pysciml as ps
from pysciml.engine import compiled_loop_symplectic, compiled_parts
from pysciml.engine.compiled_symplectic import CompiledSplittingStepper
from pysciml.solution import Stats

F64 = torch.float64
COUNTS = ("nf", "naccept", "nreject", "nloop")


def counts(sol: ps.ODESolution) -> dict[str, int]:
    return {k: getattr(sol.stats, k) for k in COUNTS}


def pendulum(t: torch.Tensor, x: torch.Tensor, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return -p[..., :1] * torch.sin(x)


def kepler(t: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return -x / (r * r * r)


def pendulum_problem(batched: bool = False, t1: float = 4.0) -> ps.SecondOrderODEProblem:
    x0, v0, g = torch.tensor([1.0], dtype=F64), torch.tensor([0.0], dtype=F64), torch.tensor([2.0], dtype=F64)
    if batched:
        scale = torch.linspace(0.5, 1.5, 3, dtype=F64)[:, None]
        x0, v0, g = x0 * scale, v0 + 0.1 * scale, g * scale
    return ps.SecondOrderODEProblem(pendulum, x0, v0, (0.0, t1), g, batched=batched)


def kepler_problem(e: float = 0.5) -> ps.SecondOrderODEProblem:
    """A Kepler orbit of eccentricity ``e`` (period 2 pi) from its pericentre."""
    x0 = torch.tensor([1.0 - e, 0.0], dtype=F64)
    v0 = torch.tensor([0.0, ((1 + e) / (1 - e)) ** 0.5], dtype=F64)
    return ps.SecondOrderODEProblem(kepler, x0, v0, (0.0, 8 * torch.pi))


def kepler_energy(u: torch.Tensor) -> torch.Tensor:
    x, v = u[..., :2], u[..., 2:]
    return 0.5 * (v * v).sum(-1) - 1.0 / torch.linalg.vector_norm(x, dim=-1)


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Programs run as their Python functions; fallback warnings are errors; the per-step program, not the whole-loop
    one (tests/test_compiled_loop_symplectic.py)."""
    monkeypatch.setattr(compiled_loop_symplectic, "ENABLED", False)

    def run(self: Any, variant: str, stats: Stats, *args: Any) -> Any:
        return self.raw[variant](*args)

    monkeypatch.setattr(compiled_parts._Program, "run", run)
    # nothing handed to Dynamo
    monkeypatch.setattr(compiled_parts, "_own_code", lambda fn, tag, backend=None, per_solve=False: fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


CASES = [(ps.VelocityVerlet(), "every-step"), (ps.VelocityVerlet(), "saveat"), (ps.VelocityVerlet(), "dense"),
         (ps.VelocityVerlet(), "batched"), (ps.Yoshida4(), "saveat"), (ps.Yoshida4(), "batched"),
         (ps.Leapfrog(), "every-step"), (ps.McAte5(), "dense")]


@pytest.mark.parametrize("alg,case", CASES, ids=[f"{a.name}-{c}" for a, c in CASES])
def test_uncompiled_program_equals_eager(uncompiled: None, alg: ps.Algorithm, case: str) -> None:
    """The program's step in the eager fixed-step loops (saving, the Hermite interpolant, the oscillation check):
    the eager values exactly and the eager counters (the evaluations the step skips by first-same-as-last)."""
    prob = pendulum_problem(batched=case == "batched")
    kw: dict[str, Any] = {"dt": 0.05}
    if case == "saveat":
        kw["saveat"] = torch.linspace(0.0, 4.0, 7, dtype=F64)
    if case == "dense":
        kw["dense"] = True
    eager = ps.solve(prob, alg, **kw)
    prog = ps.solve(prob, alg, compile=True, **kw)
    assert eager.success and prog.success
    assert counts(prog) == counts(eager)
    torch.testing.assert_close(prog.u, eager.u, rtol=0, atol=0)
    if case == "dense":
        tq = torch.tensor([0.33, 3.71], dtype=F64)
        torch.testing.assert_close(prog(tq), eager(tq), rtol=0, atol=0)


def test_uncompiled_kepler_energy_drift_is_eagers(uncompiled: None) -> None:
    """Four Kepler orbits (e = 0.5) by Yoshida4: the energy error stays bounded (no drift) exactly as eagerly."""
    prob = kepler_problem()
    kw = {"dt": 0.05, "saveat": torch.linspace(0.0, 8 * torch.pi, 81, dtype=F64)}
    eager = ps.solve(prob, ps.Yoshida4(), **kw)
    prog = ps.solve(prob, ps.Yoshida4(), compile=True, **kw)
    drift = (kepler_energy(prog.u) - kepler_energy(prog.u[0])).abs()
    torch.testing.assert_close(drift, (kepler_energy(eager.u) - kepler_energy(eager.u[0])).abs(), rtol=0, atol=0)
    assert float(drift.max()) < 1e-3 and float(drift[-20:].max()) < 2 * float(drift[:20].max())


def test_splitting_solves_take_the_program() -> None:
    prob = pendulum_problem()
    from pysciml.engine.compiled import compile_stepper
    from pysciml.native import make_stepper

    stats = Stats()
    atol = torch.full((1, 2), 1e-6, dtype=F64)
    stepper = compile_stepper(make_stepper(ps.VelocityVerlet(), prob, stats, atol, 1e-3, False), stats, 1, atol,
                              1e-3, False, prob.u0.reshape(1, 2))
    assert isinstance(stepper, CompiledSplittingStepper)


@pytest.mark.exhaustive  # compiles its own programs (CI runs it: .ci/run)
@pytest.mark.timeout(1200)  # compiling is minutes on a loaded machine
@pytest.mark.parametrize("batched", [False, True], ids=["one", "batched"])
def test_compiled_splitting_equals_eager(batched: bool) -> None:
    """Compiled VelocityVerlet and Yoshida4: no fallback, the eager counters, values to round-off."""
    prob = pendulum_problem(batched)
    kw = {"dt": 0.05, "saveat": torch.linspace(0.0, 4.0, 7, dtype=F64)}
    assert_compiled_matches_eager(prob, (ps.VelocityVerlet(), ps.Yoshida4()), **kw)


def branchy(t: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if float(x.sum()) > 0:  # data-dependent Python: no single graph
        return -x
    return -2.0 * x


@pytest.mark.exhaustive  # a failed trace: seconds
def test_untraceable_acceleration_falls_back_once() -> None:
    prob = ps.SecondOrderODEProblem(branchy, torch.tensor([1.0], dtype=F64), torch.tensor([0.0], dtype=F64),
                                    (0.0, 1.0), velocity_independent=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = ps.solve(prob, ps.VelocityVerlet(), dt=0.1, compile=True)
    mine = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(mine) == 1 and "compiling the VelocityVerlet step failed" in str(mine[0].message)
    eager = ps.solve(prob, ps.VelocityVerlet(), dt=0.1)
    assert counts(sol) == counts(eager)
    torch.testing.assert_close(sol.u, eager.u, rtol=0, atol=0)


@pytest.mark.exhaustive  # compiles a forward and a backward program
@pytest.mark.timeout(1200)  # compiling is minutes on a loaded machine
def test_compiled_splitting_gradients_equal_eager() -> None:
    """Gradients through the compiled steps (AOTAutograd's backward) in the gravity ``p`` and ``x0``: eager's to
    round-off (the eager solve differentiates through its steps too)."""
    results = []
    for comp in (False, True):
        g = torch.tensor([2.0], dtype=F64, requires_grad=True)
        x0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
        prob = ps.SecondOrderODEProblem(pendulum, x0, torch.tensor([0.0], dtype=F64), (0.0, 2.0), g)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            sol = ps.solve(prob, ps.Yoshida4(), dt=0.05, saveat=torch.linspace(0.0, 2.0, 5, dtype=F64), compile=comp)
        results.append((sol, torch.autograd.grad(sol.u.pow(2).sum(), (g, x0))))
    (eager, g_eager), (comp, g_comp) = results
    assert counts(comp) == counts(eager)
    torch.testing.assert_close(comp.u.detach(), eager.u.detach(), rtol=1e-12, atol=1e-12)
    for a, b in zip(g_comp, g_eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_warmup_compiles_what_a_solve_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pysciml.warmup`` runs the program from both states a solve's steps start from (after ``init``, and after a
    step: the force unknown where the method ends with a drift), so a later solve compiles nothing (programs run
    uncompiled here; the patterns of known velocity and force are recorded)."""
    seen: list[tuple[bool, bool]] = []

    def run(self: Any, variant: str, stats: Stats, *args: Any) -> Any:
        seen.append((args[4] is None, args[5] is None))
        return self.raw[variant](*args)

    monkeypatch.setattr(compiled_parts._Program, "run", run)
    monkeypatch.setattr(compiled_parts, "_own_code", lambda fn, tag, backend=None, per_solve=False: fn)
    monkeypatch.setattr(compiled_loop_symplectic, "ENABLED", False)
    prob = pendulum_problem()
    for alg in (ps.VelocityVerlet(), ps.Yoshida4(), ps.McAte5()):
        ps.warmup(prob, alg, dt=0.05)
        warmed = set(seen)
        seen.clear()
        ps.solve(prob, alg, dt=0.05, saveat=torch.linspace(0.0, 4.0, 7, dtype=F64), compile=True)
        assert set(seen) == warmed and len(warmed) == 2  # each method's solve starts steps from both states
        seen.clear()
