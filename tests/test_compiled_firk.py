"""``solve(..., compile=True)`` with RadauIIA5/RadauIIA3: the compiled FIRK step (pysciml/engine/compiled_firk.py).

The compiled step must take the eager stepper's steps: the same accepted and rejected steps, factorizations within
1 %, the same Newton iterations, f calls and Jacobians but where tests/firk_counts.py says, and the same values to
round-off (float64). Compiling one program takes tens of seconds on a loaded 2-core CPU, so every test that compiles
is ``exhaustive``; the default run checks the traced graph (no graph break, by ``torch._dynamo.explain``, which does
not run inductor) and the eager fallbacks.
"""

from __future__ import annotations

import pytest
import torch
from firk_counts import assert_firk_counts
from helpers import rober_dae
from loop_programs import counts, vdp_batch_problem

import pysciml as ps
from pysciml._validate import SolveOptions, check_solve
from pysciml.engine import compiled
from pysciml.engine.compiled import compile_stepper
from pysciml.engine.compiled_firk import CompiledFIRKStepper
from pysciml.native import make_stepper
from pysciml.problems import brusselator_1d, hires, oregonator, rober, van_der_pol
from pysciml.solution import Stats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

F64 = torch.float64


def assert_compiled_equals_eager(prob: ps.ODEProblem, alg: ps.Algorithm, slack: int = 0, **kw) -> None:
    """The eager counters (``nlu`` within 1 %, Newton's iterations and Jacobians within ``slack``:
    tests/firk_counts.py) and values within 100 tolerance units ``atol + rtol |u|`` at every saved step. The
    program's kernels differ from the eager ones in the last bits (tests/firk_counts.py); through the error estimate
    this moves step sizes by ~1e-11 relative, with the same accept/reject decisions, and the trajectories then drift
    apart by up to (measured, rtol 1e-8) 6 tolerance units mid-run on ROBER, whose end values still agree to 1e-15,
    and 37 on the oscillating Oregonator. On the ROBER DAE such a shift once moved radau5's step hold (keep ``h``
    and the factorization when the proposal grows it by less than 1.2x): 498 LUs against eager's 496, and steps at
    other times from there on (the same number of steps), so only the end values are compared there (measured 6e-15
    apart)."""
    eager = ps.solve(prob, alg, **kw)
    comp = ps.solve(prob, alg, compile=True, **kw)
    assert eager.success and comp.success
    assert_firk_counts(comp, eager, alg, nlu_share=0.01, slack=slack)
    rtol, atol = kw["rtol"], kw["atol"]
    if comp.t.shape == eager.t.shape and torch.allclose(comp.t, eager.t, rtol=1e-9, atol=0.0):
        units = float(((comp.u - eager.u).abs() / (atol + rtol * eager.u.abs())).max())
        assert units <= 100.0, units
    else:  # a flipped step hold changed the step sequence (the DAE): the saved points lie at other times
        torch.testing.assert_close(comp.u[-1], eager.u[-1], rtol=0.0, atol=1e-9 * float(eager.u.abs().max()))


def compiled_stepper(prob: ps.ODEProblem, alg: ps.Algorithm) -> tuple[CompiledFIRKStepper, torch.Tensor,
                                                                       torch.Tensor]:
    stats = Stats()
    c = check_solve(prob, alg, SolveOptions())
    u = prob.u0.reshape(prob.u0.shape[0] if prob.batched else 1, -1)
    stepper = compile_stepper(make_stepper(alg, prob, stats, c.atol, c.rtol, False), stats, u.shape[0], c.atol,
                              c.rtol, False, u)
    assert isinstance(stepper, CompiledFIRKStepper)
    t = torch.zeros(u.shape[0], dtype=F64)
    stepper.init(t, u)
    return stepper, t, u


@pytest.mark.parametrize(("prob", "alg"), [
    (rober((0.0, 1.0)), ps.RadauIIA5()),
    pytest.param(van_der_pol(10.0), ps.RadauIIA3(), marks=pytest.mark.exhaustive),
    # autodiff Jacobian, n = 8 (the small path)
    pytest.param(ps.ODEProblem(hires().f, hires().u0, hires().tspan), ps.RadauIIA5(), marks=pytest.mark.exhaustive),
    # n = 12: a real LU per block, the complex pair as its real 2n x 2n form
    pytest.param(brusselator_1d(6), ps.RadauIIA5(), marks=pytest.mark.exhaustive),
    pytest.param(rober_dae(1.0), ps.RadauIIA5(), marks=pytest.mark.exhaustive),  # a singular mass matrix
], ids=["rober-radau5", "vdp-radau3", "hires-autodiff", "bruss-large-n", "rober-dae"])
def test_no_graph_break(prob: ps.ODEProblem, alg: ps.Algorithm) -> None:
    """The whole step traces into one graph (Dynamo only: inductor does not run here; 8-16 s per case under
    load, so one case runs by default)."""
    stepper, t, u = compiled_stepper(prob, alg)
    args = stepper.program_args(t, u, torch.full_like(t, 1e-4), [True] * u.shape[0])
    report = torch._dynamo.explain(stepper.program.raw["step"])(*args)
    assert report.graph_break_count == 0 and report.graph_count == 1, report.break_reasons


def test_fallbacks_warn_and_solve() -> None:
    """SparseLU and finite-difference Jacobians keep the eager stepper, after a warning (differentiated solves
    compile: tests/test_compiled_firk_grad.py)."""
    prob = van_der_pol(10.0, (0.0, 1.0))
    plain = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
    sparse = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p, jac_prototype=torch.ones(2, 2, dtype=torch.bool))
    eager = ps.solve(sparse, ps.RadauIIA5(linsolve=ps.SparseLU()), rtol=1e-6, atol=1e-9)
    with pytest.warns(RuntimeWarning, match="SparseLU.*no compiled step"):
        sol = ps.solve(sparse, ps.RadauIIA5(linsolve=ps.SparseLU()), rtol=1e-6, atol=1e-9, compile=True)
    assert sol.success and counts(sol) == counts(eager)
    torch.testing.assert_close(sol.u, eager.u, rtol=0, atol=0)
    with pytest.warns(RuntimeWarning, match="finite-difference Jacobians"):
        sol = ps.solve(plain, ps.RadauIIA5(autodiff=False), rtol=1e-6, atol=1e-9, compile=True)
    assert sol.success


@pytest.mark.exhaustive  # compiles its own programs (tens of seconds each on a loaded CPU)
@pytest.mark.parametrize(("prob", "alg", "rtol", "slack"), [
    (rober((0.0, 1e5)), ps.RadauIIA5(), 1e-8, 0),
    (van_der_pol(1e3), ps.RadauIIA5(), 1e-9, 0),
    (oregonator(), ps.RadauIIA5(), 1e-8, 1),  # one Jacobian-reuse test flips (tests/firk_counts.py)
    (van_der_pol(10.0), ps.RadauIIA3(), 1e-7, 0),
    (brusselator_1d(6), ps.RadauIIA5(), 1e-8, 0),
    (rober_dae(1e3), ps.RadauIIA5(), 1e-8, 0),
], ids=["rober", "vdp-1e3", "oregonator", "vdp-radau3", "bruss-large-n", "rober-dae"])
def test_compiled_equals_eager(prob: ps.ODEProblem, alg: ps.Algorithm, rtol: float, slack: int) -> None:
    assert_compiled_equals_eager(prob, alg, slack, rtol=rtol, atol=1e-4 * rtol)


@pytest.mark.exhaustive
def test_gauss_legendre_fixed_steps_equal_eager() -> None:
    """No error estimate (the control row's norm is 0): fixed steps."""
    assert_compiled_equals_eager(van_der_pol(10.0, (0.0, 1.0)), ps.GaussLegendre6(), adaptive=False, dt=0.01,
                                 rtol=1e-10, atol=1e-12)


@pytest.mark.exhaustive
def test_batch_equals_eager() -> None:
    """Three trajectories with their own Jacobian refreshes, holds and rejections (eager batched loop around the
    compiled step)."""
    prob = vdp_batch_problem()
    eager = ps.solve(prob, ps.RadauIIA5(), rtol=1e-8, atol=1e-10)
    assert eager.stats.nreject > 0
    assert_compiled_equals_eager(prob, ps.RadauIIA5(), rtol=1e-8, atol=1e-10)


@pytest.mark.exhaustive
def test_no_recompilation_across_tolerances_u0_p() -> None:
    prob = van_der_pol(1e3)
    ps.solve(prob, ps.RadauIIA5(), rtol=1e-6, atol=1e-9, compile=True)
    before = compiled.compile_count()
    for i, scale in enumerate((1.0, 0.9, 1.1)):
        p = prob.p * scale
        other = ps.ODEProblem(prob.f, prob.u0 * scale, prob.tspan, p, jac=prob.jac)
        rtol = 10.0 ** -(6 + i)
        sol = ps.solve(other, ps.RadauIIA5(), rtol=rtol, atol=1e-3 * rtol, compile=True)
        ref = ps.solve(other, ps.RadauIIA5(), rtol=rtol, atol=1e-3 * rtol)
        assert sol.success and counts(sol) == counts(ref)
    assert compiled.compile_count() == before


@pytest.mark.exhaustive
def test_warmup_compiles_the_firk_step() -> None:
    """``pysciml.warmup`` compiles the FIRK program (a positive compile time); the solve after it compiles
    nothing and gives the eager counters."""
    prob = van_der_pol(1e3)
    prob = ps.ODEProblem(prob.f, prob.u0 * 1.01, (0.0, 1.0), prob.p, jac=prob.jac)  # a signature of its own
    seconds = ps.warmup(prob, ps.RadauIIA3(), rtol=1e-6, atol=1e-9)
    before = compiled.compile_count()
    sol = ps.solve(prob, ps.RadauIIA3(), rtol=1e-6, atol=1e-9, compile=True)
    assert seconds > 0.0 and compiled.compile_count() == before
    assert sol.success and counts(sol) == counts(ps.solve(prob, ps.RadauIIA3(), rtol=1e-6, atol=1e-9))
