"""The fixed-step splitting loop as one program (pysciml/engine/compiled_loop_symplectic.py).

The default run executes the loop program's Python function (its ``while_loop`` as a Python loop) against the eager
solve: the same values (1e-14) and counters, for one trajectory and a batch, with save times inside steps and a last
step that does not divide the span; and which solves it takes. The exhaustive test compiles it.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from loop_programs import compiled_setup, run_loops_uncompiled, solve_through
from test_compiled_symplectic import kepler_problem, pendulum_problem

import pysciml as ps
from pysciml.engine import compiled_loop_symplectic as cls
from pysciml.engine import compiled_parts

F64 = torch.float64
COUNTS = ("nf", "naccept", "nreject", "nloop")


def counts(sol: ps.ODESolution) -> dict[str, int]:
    return {k: getattr(sol.stats, k) for k in COUNTS}


def compare(prob: ps.SecondOrderODEProblem, alg: ps.Algorithm, **kw: Any) -> tuple[ps.ODESolution, ps.ODESolution]:
    eager = ps.solve(prob, alg, **kw)
    comp = solve_through(cls, "integrate_whole", prob, alg, **kw)
    assert counts(comp) == counts(eager)
    assert str(comp.retcode) == str(eager.retcode)
    torch.testing.assert_close(comp.t, eager.t, rtol=0, atol=0)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-14, atol=1e-14, equal_nan=True)
    return comp, eager


SAVES = [0.0, 0.37, 1.0, 2.05, 3.3, 3.99]
CASES = [(ps.VelocityVerlet(), False), (ps.VelocityVerlet(), True), (ps.Yoshida4(), False), (ps.Yoshida4(), True),
         (ps.Leapfrog(), True), (ps.McAte5(), False)]


@pytest.mark.parametrize("alg,batched", CASES, ids=[f"{a.name}-{'batch' if b else 'one'}" for a, b in CASES])
def test_uncompiled_loop_equals_eager(monkeypatch: pytest.MonkeyPatch, alg: ps.Algorithm, batched: bool) -> None:
    """Inner save times (some strictly inside steps: Hermite values, end fields counted in nf), 0.07 does not
    divide 4 (a shortened last step), 58 steps: three oscillation checks plus the last step's."""
    run_loops_uncompiled(monkeypatch, cls)
    prob = pendulum_problem(batched=batched)
    comp, _ = compare(prob, alg, dt=0.07, saveat=torch.tensor(SAVES, dtype=F64))
    assert comp.stats.nloop == 58


def test_uncompiled_loop_kepler_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch saving only its ends (no saveat, no dense output), Kepler orbits in 2-D."""
    run_loops_uncompiled(monkeypatch, cls)
    prob = kepler_problem()
    u0 = prob.u0
    batch = ps.SecondOrderODEProblem(lambda t, x, v: -x / torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 3,
                                     u0[None, :2].repeat(2, 1), u0[None, 2:].repeat(2, 1) * torch.tensor(
                                         [[1.0], [0.9]], dtype=F64), (0.0, 3.0), batched=True)
    compare(batch, ps.Yoshida4(), dt=0.013, dense=False)


def test_uncompiled_loop_unstable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step beyond Verlet's limit (dt omega = 2.5 on a harmonic oscillator): Unstable with the eager message,
    counters and values (NaN after the failure)."""
    run_loops_uncompiled(monkeypatch, cls)
    x0, v0 = torch.tensor([1e-3], dtype=F64), torch.tensor([0.0], dtype=F64)
    prob = ps.SecondOrderODEProblem(lambda t, x, v, p: -p * x, x0, v0, (0.0, 400.0),
                                    torch.tensor([6.25], dtype=F64))
    comp, eager = compare(prob, ps.VelocityVerlet(), dt=1.0, saveat=torch.linspace(0, 400, 9, dtype=F64))
    assert str(comp.retcode).endswith("Unstable") and comp.stats.nloop < 400
    assert comp.message == eager.message


@pytest.mark.parametrize("change,takes", [({}, True), ({"dense": True}, False), ({"saveat": None}, False),
                                          ({"saveat": None, "dense": False}, False)])
def test_dispatch(change: dict[str, Any], takes: bool) -> None:
    """The loop takes fixed-step solves saving at fixed times; one trajectory saving every step, dense output and
    float32 time for one trajectory keep the per-step program, as does ``ENABLED = False``."""
    kw: dict[str, Any] = {"dt": 0.1, "saveat": torch.tensor([0.0, 1.0], dtype=F64), **change}
    kw = {k: v for k, v in kw.items() if v is not None}
    stepper, opts, u0 = compiled_setup(pendulum_problem(), ps.VelocityVerlet(), **kw)
    assert cls.handles(stepper.inner, opts, u0) is takes
    if takes:
        one = pendulum_problem()
        prob32 = ps.SecondOrderODEProblem(one.accel, one.u0[:1].float(), one.u0[1:].float(), (0.0, 4.0), one.p.float())
        stepper32, opts32, u32 = compiled_setup(prob32, ps.VelocityVerlet(), **kw)
        assert not cls.handles(stepper32.inner, opts32, u32)
        cls.ENABLED = False
        try:
            assert not cls.handles(stepper.inner, opts, u0)
        finally:
            cls.ENABLED = True


@pytest.mark.exhaustive
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("alg", [ps.VelocityVerlet(), ps.Yoshida4()], ids=lambda a: a.name)
def test_compiled_loop_equals_eager(alg: ps.Algorithm) -> None:
    """Compiled: values to 1e-12 and the eager counters, one trajectory and a batch."""
    for batched in (False, True):
        prob = pendulum_problem(batched=batched)
        kw: dict[str, Any] = {"dt": 0.07, "saveat": torch.tensor(SAVES, dtype=F64)}
        eager = ps.solve(prob, alg, **kw)
        comp = solve_through(cls, "integrate_whole", prob, alg, **kw)
        assert comp.success and counts(comp) == counts(eager)
        torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)


def test_warm_builds_the_program_solves_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """``warm`` (for ``pysciml.warmup``) runs the loop program of two steps; the program is cached under the key a
    solve of another span and other save times (as many) looks up."""
    run_loops_uncompiled(monkeypatch, cls)
    kw: dict[str, Any] = {"dt": 0.1, "saveat": torch.tensor([0.0, 1.0], dtype=F64)}
    stepper, opts, u0 = compiled_setup(pendulum_problem(), ps.VelocityVerlet(), **kw)
    assert cls.warm(stepper.inner, u0, opts)
    other, opts2, _ = compiled_setup(pendulum_problem(t1=2.5), ps.VelocityVerlet(), dt=0.1,
                                     saveat=torch.tensor([0.5, 2.0], dtype=F64))
    assert cls._key(other.inner, opts2, u0) == cls._key(stepper.inner, opts, u0)
    assert cls._key(stepper.inner, opts, u0) in compiled_parts._CACHE


def test_pysciml_warmup_builds_the_loop_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pysciml.warmup`` of a solve the loop program runs builds that program (run uncompiled here), under the key the
    solve looks up."""
    run_loops_uncompiled(monkeypatch, cls)
    kw: dict[str, Any] = {"dt": 0.1, "saveat": torch.tensor([0.0, 1.0], dtype=F64)}
    prob = pendulum_problem()
    stepper, opts, u0 = compiled_setup(prob, ps.VelocityVerlet(), **kw)
    key = cls._key(stepper.inner, opts, u0)
    compiled_parts._CACHE.pop(key, None)
    ps.warmup(prob, ps.VelocityVerlet(), **kw)
    assert key in compiled_parts._CACHE


def harmonic(t: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return -x


def test_failed_compile_falls_back_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop program that fails to compile: one warning, then the per-step program (run uncompiled here) gives the
    eager values and counters (the loop's eager ``init`` not counted twice); the next solve goes there directly."""
    def run(self: Any, variant: str, stats: Any, *args: Any) -> Any:
        if variant == "loop":
            self.failed = "no"  # as _Program.run remembers a failed compile
            raise compiled_parts.CompileFailure("no")
        return self.raw[variant](*args)

    monkeypatch.setattr(compiled_parts._Program, "run", run)
    monkeypatch.setattr(compiled_parts, "_own_code", lambda fn, tag, backend=None, per_solve=False: fn)
    monkeypatch.setattr(compiled_parts, "_CACHE", type(compiled_parts._CACHE)())  # its failed program goes too
    prob = ps.SecondOrderODEProblem(harmonic, torch.tensor([1.0], dtype=F64), torch.tensor([0.0], dtype=F64),
                                    (0.0, 2.0))
    kw: dict[str, Any] = {"dt": 0.1, "saveat": torch.tensor([0.0, 0.55, 2.0], dtype=F64)}
    eager = ps.solve(prob, ps.VelocityVerlet(), **kw)
    for expected in (1, 0):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sol = ps.solve(prob, ps.VelocityVerlet(), compile=True, **kw)
        mine = [w for w in caught if "loop as one program failed" in str(w.message)]
        assert len(mine) == expected
        assert counts(sol) == counts(eager)
        torch.testing.assert_close(sol.u, eager.u, rtol=0, atol=0)


def test_uncompiled_loop_backward_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Integrating from t = 4 back to 0 (a batch; save times in the direction of integration)."""
    run_loops_uncompiled(monkeypatch, cls)
    fwd = pendulum_problem(batched=True)
    prob = ps.SecondOrderODEProblem(fwd.accel, fwd.u0[:, :1], fwd.u0[:, 1:], (4.0, 0.0), fwd.p, batched=True)
    compare(prob, ps.Yoshida4(), dt=0.07, saveat=torch.tensor(SAVES[::-1], dtype=F64))
