"""``solve(prob, FBDF(), compile=True)`` as one compiled loop program (pysciml/engine/compiled_loop_bdf.py).

The program must take the eager FBDF solve's steps: the same accepted and rejected steps, orders, Jacobians,
factorizations, Newton iterations and f calls, and the same values to round-off. Compiling takes minutes on a
loaded 2-core CPU, so every test that compiles is ``exhaustive``; the default run checks the dispatch, the
fallbacks and runs the program uncompiled (its ``while_loop`` calls as Python), which checks its
bookkeeping (the carried history, order, factorization and counters) without inductor.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from loop_programs import counts, run_loops_uncompiled, solve_through, vdp_batch_problem

import pysciml as ps
from pysciml._validate import SolveOptions, check_solve
from pysciml.algorithms_bdf import QBDF
from pysciml.engine import (
    compiled,
    compiled_bdf_qndf,
    compiled_bdf_rules,
    compiled_bdf_step,
    compiled_loop_bdf,
    compiled_parts,
)
from pysciml.native import _bdf_method, _loop_options
from pysciml.problems import brusselator_1d, hires, rober
from pysciml.solution import Stats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

F64 = torch.float64


def why_eager(prob: ps.ODEProblem, alg: ps.Algorithm | None = None, **kw) -> str | None:
    """:func:`compiled_loop_bdf.unsupported` for ``solve(prob, alg, compile=True, **kw)`` (compiles nothing)."""
    opts = SolveOptions(compile=True, **kw)
    c = check_solve(prob, alg or ps.FBDF(), opts)
    method, u0 = _bdf_method(c.alg, prob, c, Stats())
    return compiled_loop_bdf.unsupported(method, _loop_options(prob, c, opts, False), u0)


def solve_taking_loop(prob: ps.ODEProblem, alg: ps.Algorithm | None = None, **kw) -> ps.ODESolution:
    """``solve(prob, alg, compile=True)`` (``FBDF()`` by default) that must run through the loop program (no
    fallback warning)."""
    return solve_through(compiled_loop_bdf, "integrate", prob, alg or ps.FBDF(), strict=True, **kw)


def assert_equals_eager(prob: ps.ODEProblem, sol: ps.ODESolution, units: float = 1e-3,
                        alg: ps.Algorithm | None = None, **kw) -> None:
    """The eager counters and return code, and values within ``units`` tolerance units ``atol + rtol |u|``."""
    eager = ps.solve(prob, alg or ps.FBDF(), **kw)
    assert eager.retcode == sol.retcode
    assert counts(sol) == counts(eager)
    torch.testing.assert_close(sol.t, eager.t, rtol=0.0, atol=0.0)
    assert sol.u.shape == eager.u.shape and sol.u.dtype == eager.u.dtype
    if eager.u.numel():
        off = float(((sol.u - eager.u).abs() / (kw["atol"] + kw["rtol"] * eager.u.abs())).max())
        assert off <= units, off


def run_uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop programs (FBDF's, QNDF's) as Python: their while_loops as Python loops."""
    run_loops_uncompiled(monkeypatch, compiled_loop_bdf, compiled_bdf_step, compiled_bdf_qndf)


def test_dispatch() -> None:
    """Which compiled BDF solves run as the loop program: FBDF, QNDF and QBDF, one trajectory or a batch,
    float32 or float64 (the only dtypes the BDFs accept), saving at fixed times or every step, with tstops and dense
    output (test_compiled_loop_bdf_record.py); not fixed steps, GMRES, finite differences or gradients (each says
    why)."""
    prob = rober((0.0, 1.0))
    kw = {"rtol": 1e-6, "atol": 1e-10}
    assert why_eager(prob, saveat=[1.0], **kw) is None
    assert why_eager(prob, saveat=[0.0, 0.5, 1.0], tstops=[0.3], **kw) is None
    assert why_eager(vdp_batch_problem(), saveat=[3.0], **kw) is None
    assert why_eager(prob, ps.QNDF(), saveat=[1.0], **kw) is None
    assert why_eager(prob, QBDF(), saveat=[1.0], tstops=[0.3], **kw) is None
    assert why_eager(prob, **kw) is None
    assert why_eager(prob, ps.QNDF(), dense=True, saveat=[1.0], **kw) is None
    assert "fixed steps" in why_eager(prob, adaptive=False, dt=1e-3, saveat=[1.0], **kw)
    assert "GMRES" in why_eager(prob, ps.FBDF(linsolve=ps.GMRES()), saveat=[1.0], **kw)
    no_jac = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
    assert "finite-difference" in why_eager(no_jac, ps.FBDF(autodiff=False), saveat=[1.0], **kw)
    f32 = ps.ODEProblem(prob.f, prob.u0.float(), prob.tspan, prob.p.float())
    assert why_eager(f32, saveat=[1.0], rtol=1e-4, atol=1e-6) is None
    assert why_eager(f32, ps.QNDF(), saveat=[1.0], rtol=1e-4, atol=1e-6) is None
    grad = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p.clone().requires_grad_(True))
    assert "differentiated" in why_eager(grad, saveat=[1.0], **kw)


def test_packed_while_loop_gives_the_carries_back() -> None:
    """``compiled_bdf_step.packed_while_loop`` packs the 0-d long, bool and float64 carries into one float64
    vector: the loop sees and ends with the values and dtypes a plain loop gives (exactly, NaN included), and the
    other carries (a vector, a float32 scalar) pass as they are."""
    def python_while(cond, body, carried):
        while bool(cond(*carried)):
            carried = tuple(body(*carried))
        return carried

    def cond(i, t, flag, y, w):
        return i < 7

    def body(i, t, flag, y, w):
        assert i.dtype == torch.long and t.dtype == F64 and flag.dtype == torch.bool and w.dtype == torch.float32
        return i + 1, t * 1.1 + 1.0 / 3.0, ~flag, y * t, w + 0.5

    start = (torch.tensor(0), torch.tensor(0.1, dtype=F64), torch.tensor(True), torch.ones(2, 3, dtype=F64),
             torch.tensor(1.0))
    plain = python_while(cond, body, start)
    packed = compiled_bdf_step.packed_while_loop(cond, body, start, loop=python_while)
    for x, y in zip(plain, packed, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=0.0, atol=0.0)
    assert int(packed[0]) == 7 and not bool(packed[2])
    two = compiled_bdf_step.packed_while_loop(lambda i, a, b: i < 2, lambda i, a, b: (i + 1, a * 2.0, b + a),
                                             (torch.tensor(0), torch.tensor(1.0, dtype=F64),
                                              torch.tensor(0.5, dtype=F64)), loop=python_while)
    assert [float(x) for x in two[1:]] == [4.0, 3.5]
    # the results are tensors of their own, not views of one vector (which a loop body could not return)
    assert two[1].untyped_storage().data_ptr() != two[2].untyped_storage().data_ptr()
    nan = compiled_bdf_step.packed_while_loop(lambda i, c: i < 1, lambda i, c: (i + 1, c + math.nan),
                                             (torch.tensor(0), torch.tensor(1.0, dtype=F64)), loop=python_while)
    assert math.isnan(float(nan[1]))


def test_stacked_and_pushed_equal_stack_and_cat() -> None:
    """``compiled_bdf_step.stacked`` (a ``where`` over the row index, which inductor lowers without an alias per
    piece) gives ``torch.stack``'s values bit for bit (NaN, infinities, -0.0, bools, longs cast to float64, rows of
    a history), and ``pushed`` gives ``torch.cat((x[None], history[:-1]))``."""
    xs = [torch.tensor(v, dtype=F64) for v in (1.0 / 3.0, math.nan, -math.inf, -0.0, 2.5e-300)]
    got = compiled_bdf_step.stacked(xs)
    assert got.shape == (5,) and got.dtype == F64
    assert torch.equal(got.isnan(), torch.stack(xs).isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(torch.stack(xs)))
    assert math.copysign(1.0, float(got[3])) == -1.0
    mixed = [torch.tensor(True), torch.tensor(7), torch.tensor(0.1, dtype=F64)]
    assert compiled_bdf_step.stacked(mixed, F64).tolist() == [1.0, 7.0, 0.1]
    assert compiled_bdf_step.stacked([torch.tensor(False), torch.tensor(True)]).tolist() == [False, True]
    gen = torch.Generator().manual_seed(5)
    rows = [torch.randn(2, 4, dtype=F64, generator=gen) for _ in range(3)]
    assert torch.equal(compiled_bdf_step.stacked(rows), torch.stack(rows))
    history = torch.randn(7, 2, 4, dtype=F64, generator=gen)
    assert torch.equal(compiled_bdf_step.pushed(rows[0], history), torch.cat((rows[0][None], history[:-1])))
    ts = torch.randn(7, dtype=F64, generator=gen)
    assert torch.equal(compiled_bdf_step.pushed(xs[0], ts), torch.cat((xs[0][None], ts[:-1])))


@pytest.mark.parametrize("alg", [ps.FBDF(), ps.QNDF()], ids=["FBDF", "QNDF"])
def test_retry_is_one_more_program_iteration(monkeypatch: pytest.MonkeyPatch, alg: ps.Algorithm) -> None:
    """After Newton fails with an old Jacobian the eager method tries the same step again with a fresh one in the
    same loop iteration; the program runs that try as one more iteration of its loop with the step's carries held
    (``compiled_bdf_rules.hold``): ROBER makes such retries, and the solve still gives the eager counters
    (``nloop`` included), return code and values (the program run uncompiled)."""
    run_uncompiled(monkeypatch)
    retries: list[bool] = []
    real = compiled_bdf_rules.hold

    def spy(retry: torch.Tensor, before: tuple, after: tuple) -> tuple:
        retries.append(bool(retry))
        return real(retry, before, after)

    monkeypatch.setattr(compiled_bdf_rules, "hold", spy)
    prob, kw = UNCOMPILED["rober"]
    sol = solve_through(compiled_loop_bdf, "integrate", prob, alg, strict=True, **kw)
    assert sum(retries) >= 2  # measured: 4 for FBDF and for QNDF
    assert len(retries) == sol.stats.nloop + sum(retries)
    assert_equals_eager(prob, sol, alg=alg, **kw)


def test_newton_solves_with_the_inverse_up_to_inverse_max() -> None:
    """Up to ``INVERSE_MAX`` equations the program's Newton corrections are ``W^{-1} v`` (an ``mm`` of the row for
    one trajectory, a ``bmm`` for a batch): equal to the LU solve to round-off."""
    assert compiled_bdf_step.uses_inverse(compiled_bdf_step.INVERSE_MAX)
    assert not compiled_bdf_step.uses_inverse(compiled_bdf_step.INVERSE_MAX + 1)
    gen = torch.Generator().manual_seed(3)
    for b, n in ((1, 40), (3, 40), (2, 5)):
        W = torch.randn(b, n, n, dtype=F64, generator=gen) + 8.0 * torch.eye(n, dtype=F64)
        v = torch.randn(b, n, dtype=F64, generator=gen)
        lu, piv = torch.linalg.lu_factor(W)
        inverse = torch.linalg.inv(W)
        want = torch.linalg.solve(W, v)
        for with_inverse in (True, False):
            got = compiled_bdf_step._solve(lu.mT.contiguous(), piv, inverse, v, with_inverse, n <= 8)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_eager_warning_says_why() -> None:
    """A solve the program does not cover warns once, with the reason, and gives the eager solve."""
    prob = rober((0.0, 1.0))
    kw = {"rtol": 1e-6, "atol": 1e-10, "saveat": [1.0]}
    gmres = ps.QNDF(linsolve=ps.GMRES())
    with pytest.warns(UserWarning, match=r"QNDF\(\) runs eagerly: only the dense LU"):
        sol = ps.solve(prob, gmres, compile=True, **kw)
    assert counts(sol) == counts(ps.solve(prob, gmres, **kw))
    with pytest.warns(UserWarning, match="nothing to warm up"):
        assert ps.warmup(prob, ps.FBDF(), rtol=1e-6, atol=1e-10, adaptive=False, dt=1e-3) == 0.0  # fixed steps


def test_failed_compile_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A program that fails to compile warns once and the eager loop solves, with the eager counters."""
    real = compiled_parts._Program.run

    def failing(self, variant, stats, *args):
        if variant == "loop" and self.tag.startswith("bdf"):
            raise compiled_parts.CompileFailure("Unsupported: a graph break (test)")
        return real(self, variant, stats, *args)

    monkeypatch.setattr(compiled_parts._Program, "run", failing)
    monkeypatch.setattr(compiled_parts, "_CACHE", OrderedDict())  # its failed program goes with the test
    prob = rober((0.0, 10.0))
    kw = {"rtol": 1e-5, "atol": 1e-9, "saveat": [10.0]}
    with pytest.warns(RuntimeWarning, match="compiling the FBDF loop failed .*a graph break"):
        sol = ps.solve(prob, ps.FBDF(), compile=True, **kw)
    assert_equals_eager(prob, sol, units=0.0, **kw)


def rober_dae(t1: float) -> ps.ODEProblem:
    """ROBER as an index-1 DAE (the third equation the conservation law, a singular mass matrix)."""
    def f(t, u, p):
        y1, y2, y3 = u[..., 0], u[..., 1], u[..., 2]
        return torch.stack((-p[0] * y1 + p[2] * y2 * y3, p[0] * y1 - p[1] * y2 * y2 - p[2] * y2 * y3,
                            y1 + y2 + y3 - 1), dim=-1)

    mass = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=F64))
    return ps.ODEProblem(f, torch.tensor([1.0, 0.0, 0.0], dtype=F64), (0.0, t1),
                         torch.tensor([0.04, 3e7, 1e4], dtype=F64), mass_matrix=mass)


UNCOMPILED = {
    "rober": (rober((0.0, 1e2)), {"rtol": 1e-6, "atol": 1e-10, "saveat": [1e2]}),
    "bruss8-saves-tstops": (brusselator_1d(8, tspan=(0.0, 4.0)),
                            {"rtol": 1e-5, "atol": 1e-8, "saveat": torch.linspace(0.0, 4.0, 5, dtype=F64),
                             "tstops": [1.1, 3.0]}),
    "vdp-batch": (vdp_batch_problem(), {"rtol": 1e-5, "atol": 1e-8, "saveat": [0.0, 1.0, 3.0]}),
    "rober-dae-mass": (rober_dae(1.0), {"rtol": 1e-6, "atol": 1e-10, "saveat": [0.0, 0.5, 1.0]}),
    "rober-maxiters-dtmax": (rober((0.0, 1e4)), {"rtol": 1e-6, "atol": 1e-10, "saveat": [1e4], "dtmax": 50.0,
                                                "maxiters": 60}),
}


@pytest.mark.parametrize("case", list(UNCOMPILED))
def test_uncompiled_program_equals_eager(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """The program's function run as Python gives the eager counters, return code and values: ROBER (Jacobian
    refreshes, order changes), the Brusselator with save points inside steps and tstops, a batch with
    rejections, ROBER as a DAE with a mass matrix (autodiff J), and a solve stopped by ``maxiters`` under
    ``dtmax``."""
    run_uncompiled(monkeypatch)
    prob, kw = UNCOMPILED[case]
    sol = solve_taking_loop(prob, **kw)
    # the DAE's algebraic component magnifies round-off, and eager FBDF alone gives two different last bits run to
    # run on it (BLAS paths vary with memory alignment): measured 1.6e-3 tolerance units off once, so 1e-2 there
    assert_equals_eager(prob, sol, units=1e-2 if case == "rober-dae-mass" else 1e-3, **kw)
    if case == "vdp-batch":
        assert sol.stats.nreject > 0
    if case == "rober-maxiters-dtmax":
        assert sol.retcode == ps.ReturnCode.MaxIters


def autodiff(prob: ps.ODEProblem) -> ps.ODEProblem:
    """``prob`` without its ``jac`` (the autodiff Jacobian, traced inside the program's Jacobian renewal)."""
    return ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)


COMPILED = {
    "rober": (rober((0.0, 1e5)), 1e-8, 1e-12),
    "hires": (hires(), 1e-7, 1e-10),  # analytic jac creating tensor constants
    "bruss32-autodiff": (autodiff(brusselator_1d(32, tspan=(0.0, 10.0))), 1e-6, 1e-8),  # LU solves, forward-mode J
}


@pytest.mark.exhaustive  # compiles its own program (minutes on a loaded CPU)
@pytest.mark.parametrize("case", list(COMPILED))
def test_compiled_program_equals_eager(case: str) -> None:
    prob, rtol, atol = COMPILED[case]
    kw = {"rtol": rtol, "atol": atol, "saveat": [prob.tspan[0], prob.tspan[1]]}
    assert_equals_eager(prob, solve_taking_loop(prob, **kw), **kw)


@pytest.mark.exhaustive
@pytest.mark.parametrize("alg", [ps.FBDF(), ps.QNDF()], ids=["FBDF", "QNDF"])
def test_no_recompilation_across_u0_p_tolerances(alg: ps.Algorithm) -> None:
    """After warmup, solves with other ``u0``, ``p``, tolerances and end times compile nothing and give the eager
    counters (FBDF's program, and QNDF's: engine/compiled_bdf_qndf.py)."""
    prob = autodiff(rober((0.0, 1e4)))  # the solves below have no jac either: one signature
    compiled.clear_cache()  # the other tests may have compiled this signature: warmup compiles it here
    seconds = ps.warmup(prob, alg, rtol=1e-6, atol=1e-10, saveat=[1e4])
    before = compiled.compile_count()
    for i, scale in enumerate((1.0, 0.9, 1.1)):
        other = ps.ODEProblem(prob.f, prob.u0 * scale, (0.0, 1e4 * scale), prob.p * scale)
        rtol = 10.0 ** -(5 + i)
        kw = {"rtol": rtol, "atol": 1e-4 * rtol, "saveat": [1e4 * scale]}
        sol = solve_taking_loop(other, alg, **kw)
        assert sol.stats.compile_time == 0.0
        assert_equals_eager(other, sol, alg=alg, **kw)
    assert compiled.compile_count() == before
    assert seconds > 0.0
