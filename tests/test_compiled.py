"""``solve(..., compile=True)``: whole steps as compiled programs (pysciml/engine/compiled.py).

Compiling is slow (seconds per program on a small CPU), so the tests share programs through the module-level
cache: the same right-hand-side functions, shapes and dtypes recur, and each signature compiles once per run.
No timings are asserted; the measured speed-ups are in docs/guide/compile.md.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import pysciml as ps
from pysciml._validate import SolveOptions, check_solve
from pysciml.engine import compiled
from pysciml.engine.compiled import CompiledStepper, compile_stepper
from pysciml.native import make_stepper
from pysciml.problems import hires, lotka_volterra, rober, van_der_pol
from pysciml.sensealg import SensitivityAlgorithm
from pysciml.solution import Stats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

F64, F32 = torch.float64, torch.float32
COUNTS = ("nf", "njac", "nlu", "nsolve", "naccept", "nreject", "nloop", "nnonliniter", "nnonlinconvfail")


def vdp(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Van der Pol with ``mu = p[..., 0]`` (batched or not): one function, so its programs are shared."""
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x), dim=-1)


def vdp_problem(dtype: torch.dtype, batched: bool, *, mu: float = 1.5, tspan: tuple[float, float] = (0.0, 4.0),
                requires_grad: bool = False, tgrad: bool = False) -> ps.ODEProblem:
    u0 = torch.tensor([2.0, 0.0], dtype=dtype)
    p = torch.tensor([mu], dtype=dtype)
    if batched:
        u0 = u0 * torch.linspace(1.0, 1.2, 3, dtype=dtype)[:, None]
        p = p * torch.linspace(1.0, 2.0, 3, dtype=dtype)[:, None]
    u0.requires_grad_(requires_grad)
    p.requires_grad_(requires_grad)
    extra = {"tgrad": lambda t, u, p: torch.zeros_like(u)} if tgrad else {}
    return ps.ODEProblem(vdp, u0, tspan, p, batched=batched, **extra)


def both(prob: ps.ODEProblem, alg: ps.Algorithm, **kw) -> tuple[ps.ODESolution, ps.ODESolution]:
    return ps.solve(prob, alg, **kw), ps.solve(prob, alg, compile=True, **kw)


def assert_same_counts(a: ps.ODESolution, b: ps.ODESolution) -> None:
    assert {k: getattr(a.stats, k) for k in COUNTS} == {k: getattr(b.stats, k) for k in COUNTS}


@pytest.mark.parametrize("dtype,batched", [
    (F64, False), pytest.param(F64, True, marks=pytest.mark.exhaustive),
    pytest.param(F32, False, marks=pytest.mark.exhaustive), pytest.param(F32, True, marks=pytest.mark.exhaustive)],
    ids=["float64-unbatched", "float64-batched", "float32-unbatched", "float32-batched"])
def test_tsit5_matches_eager(dtype: torch.dtype, batched: bool) -> None:
    prob = vdp_problem(dtype, batched)
    tol = {"rtol": 1e-6, "atol": 1e-8} if dtype == F64 else {"rtol": 1e-4, "atol": 1e-6}
    a, b = both(prob, ps.Tsit5(), **tol)
    assert a.success and b.success and b.u.dtype == dtype
    if dtype == F64:
        assert_same_counts(a, b)
        # the error estimate is a difference of O(1) stages (cancellation): its round-off moves dt by ~1e-10 per
        # step, and the controller carries it on: step times 2.8e-8 apart (0.03 tolerance units) on an AVX-512
        # machine, where inductor's vectorized kernels round differently from eager's
        torch.testing.assert_close(b.t, a.t, rtol=1e-7, atol=1e-12)
        torch.testing.assert_close(b.u, a.u, rtol=1e-7, atol=1e-8)  # 8.2e-9 apart there, near u = 0
    else:  # float32 round-off may move one accept decision near EEst = 1
        assert abs(a.stats.naccept - b.stats.naccept) <= 2
        torch.testing.assert_close(b.u[-1], a.u[-1], rtol=2e-3, atol=1e-4)
    t_mid = torch.tensor(1.3, dtype=dtype)  # dense output computed inside the program
    torch.testing.assert_close(b(t_mid), a(t_mid), rtol=1e-3 if dtype == F32 else 1e-9, atol=1e-5)


def test_rodas5p_rober_matches_eager() -> None:
    prob = rober((0.0, 1e5))
    a, b = both(prob, ps.Rodas5P(), rtol=1e-6, atol=1e-10)
    assert a.success and b.success
    assert_same_counts(a, b)  # rejections included: the program reusing the Jacobian runs too
    torch.testing.assert_close(b.u[-1], a.u[-1], rtol=1e-9, atol=1e-14)
    for tq in (1.0, 100.0, 1e4):  # step times differ by round-off amplified through the controller, not values
        torch.testing.assert_close(b(tq), a(tq), rtol=1e-5, atol=1e-10)
    assert b.stats.compile_time >= 0.0 and a.stats.compile_time == 0.0


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_rodas5p_batched_float32() -> None:
    """ROBER in float32 with atol 1e-7, below float32's resolution of y1 ~ 1 (1.2e-7): accept decisions turn on
    round-off, and compiled arithmetic rounds otherwise than eager, so step counts agree within 5%. Measured: eager
    103, compiled 107 accepted steps (float64: 97). Before Rosenbrock's float32 stage sums were formed in float64,
    both took 117 steps: Rodas5P's error estimate then carried a floor of 6e-7 h |f| from its coefficients'
    rounding, the same in both paths."""
    k = torch.tensor([0.04, 3e7, 1e4], dtype=F32) * torch.tensor([[1.0], [1.5], [0.7]], dtype=F32)
    prob = rober((0.0, 40.0), k=k, dtype=F32)
    a, b = both(prob, ps.Rodas5P(), rtol=1e-4, atol=1e-7)
    assert a.success and b.success and b.u.dtype == F32
    assert abs(a.stats.naccept - b.stats.naccept) <= 0.05 * a.stats.naccept
    torch.testing.assert_close(b.u[-1], a.u[-1], rtol=1e-3, atol=1e-6)


@pytest.mark.heavy
def test_kencarp4_rober_matches_eager() -> None:
    """ESDIRK: Newton's iterations in a while_loop inside the program, the same iterates and counts as eager."""
    prob = rober((0.0, 1e5))
    a, b = both(prob, ps.KenCarp4(), rtol=1e-6, atol=1e-10)
    assert a.success and b.success and a.stats.nnonliniter > 0
    assert_same_counts(a, b)
    torch.testing.assert_close(b.u[-1], a.u[-1], rtol=1e-9, atol=1e-14)


def stiff_part(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return -p[..., :1] * u * u * u


def soft_part(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return torch.sin(u) * p[..., 1:2]


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_imex_split_batched_float32_matches_eager() -> None:
    u0 = torch.tensor([[1.0, 0.5], [0.3, 2.0], [1.5, 1.0]], dtype=F32)
    p = torch.tensor([[5.0, 1.0], [20.0, 0.5], [50.0, 2.0]], dtype=F32)
    prob = ps.SplitODEProblem(stiff_part, soft_part, u0, (0.0, 2.0), p, batched=True)
    a, b = both(prob, ps.KenCarp4(), rtol=1e-4, atol=1e-6)
    assert a.success and b.success and b.u.dtype == F32
    assert abs(a.stats.naccept - b.stats.naccept) <= 3
    torch.testing.assert_close(b.u[-1], a.u[-1], rtol=1e-4, atol=1e-6)


def rober_dae(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    y1, y2, y3 = u[0], u[1], u[2]
    return torch.stack((-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2 * y2, y1 + y2 + y3 - 1.0))


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
@pytest.mark.parametrize("alg", [ps.Rosenbrock23(), ps.Rodas5P(), ps.FBDF()], ids=lambda a: a.name)
def test_mass_matrix_whole_loop_matches_eager(alg: ps.Algorithm) -> None:
    """ROBER as an index-1 DAE (``M = diag(1, 1, 0)``): the mass matrix enters the compiled ``W`` and stages, and
    the whole loop compiles without a warning. Its products were ``v @ mass.T``, whose view inside the loop body was
    a second ``while_loop`` input aliasing ``mass``: torch refused it, and these solves fell back (Rosenbrock to the
    per-step programs, FBDF to the eager loop) with a warning."""
    M = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=F64))
    prob = ps.ODEProblem(rober_dae, torch.tensor([1.0, 0.0, 0.0], dtype=F64), (0.0, 1e3), mass_matrix=M)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="compile=True")
        a, b = both(prob, alg, rtol=1e-4, atol=1e-8, saveat=[1.0, 1e3])
    assert a.success and b.success
    assert_same_counts(a, b)
    torch.testing.assert_close(b.u, a.u, rtol=1e-8, atol=1e-12)


def batched_fused_programs() -> int:
    """How many batched-loop programs (control inside, engine/compiled_control.py) the cache holds."""
    return sum(len(prog.fused) for prog in compiled._CACHE.values())


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Vern7(), ps.Rodas5P(), ps.KenCarp4()],
                         ids=["tsit5", "vern7", "rodas5p", "kencarp4"])
def test_batched_control_in_program_matches_eager(alg: ps.Algorithm) -> None:
    """Batched compiled solves run the step control inside the program (one host round trip per step): the same
    values, step counts and statistics as the eager batched loop, with saveat (at t0, inside steps, two in one step),
    tstops, dtmax and dense output; FSAL (Tsit5, Rodas5P, KenCarp4) and not (Vern7)."""
    prob = vdp_problem(F64, True, mu=4.0)
    kw = {"rtol": 1e-6, "atol": 1e-8, "saveat": [0.0, 0.3, 1.0, 1.02, 2.2, 4.0], "tstops": [1.5, 2.7],
          "dtmax": 0.4, "dense": True}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback: every program compiled (no graph break)
        a, b = both(prob, alg, **kw)
    assert a.success and b.success and batched_fused_programs() > 0
    assert_same_counts(a, b)
    torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-12)
    t_mid = torch.tensor(1.3, dtype=F64)
    torch.testing.assert_close(b(t_mid), a(t_mid), rtol=1e-9, atol=1e-12)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_batched_control_in_program_failure_codes() -> None:
    """Per-trajectory return codes and failure points (dtmin, maxiters, backwards) as in the eager loop."""
    prob = vdp_problem(F64, True, mu=60.0)
    for kw in ({"dtmin": 1e-3}, {"maxiters": 15}):
        a, b = both(prob, ps.Tsit5(), rtol=1e-8, atol=1e-10, **kw)
        assert not a.success and [str(r) for r in b.retcodes] == [str(r) for r in a.retcodes]
        assert_same_counts(a, b)
        torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-12, equal_nan=True)
    # backwards in time (the faster trajectories blow up: DtLessThanMin)
    a, b = both(vdp_problem(F64, True, tspan=(1.0, 0.0)), ps.Rodas5P(), rtol=1e-6, atol=1e-8, saveat=[0.5, 0.25])
    assert [str(r) for r in b.retcodes] == [str(r) for r in a.retcodes] and a.retcodes[0] is ps.ReturnCode.Success
    assert_same_counts(a, b)
    torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_batched_whole_loop_matches_eager() -> None:
    """An explicit RK batch (or one float64 trajectory) saving at fixed times without dense output runs the whole
    loop as one while_loop program (engine/compiled_loop.py): the same values, counts and return codes as the
    eager loops; warmup compiles it."""
    kw = {"rtol": 1e-6, "atol": 1e-8, "saveat": [0.0, 0.3, 1.0, 1.02, 2.2, 4.0], "dtmax": 0.4}
    prob = vdp_problem(F64, True, mu=4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        ps.warmup(prob, ps.Tsit5(), **kw)
        before = compiled.compile_count()
        a, b = both(prob, ps.Tsit5(), **kw)
    assert compiled.compile_count() == before
    assert any(key[0] == "whole" for prog in compiled._CACHE.values() for key in prog.fused)
    assert a.success and b.success
    assert_same_counts(a, b)
    torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-12)
    a, b = both(vdp_problem(F64, True, mu=60.0), ps.Tsit5(), maxiters=15, **kw)  # stopped by maxiters
    assert [str(r) for r in b.retcodes] == [str(r) for r in a.retcodes] and not a.success
    assert_same_counts(a, b)
    torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-12, equal_nan=True)
    loops = sum(key[0] == "whole" for prog in compiled._CACHE.values() for key in prog.fused)
    a, b = both(vdp_problem(F64, False, mu=4.0), ps.Tsit5(), **kw)  # one trajectory: instead of the scalar loop
    assert a.success and b.success
    assert sum(key[0] == "whole" for prog in compiled._CACHE.values() for key in prog.fused) == loops + 1
    assert_same_counts(a, b)
    torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-12)
    grads = []  # while_loop has no backward: a differentiated solve keeps the per-step program
    for flag in (False, True):
        prob = vdp_problem(F64, True, mu=4.0, requires_grad=True)
        sol = ps.solve(prob, ps.Tsit5(), compile=flag, **kw)
        grads.append(torch.autograd.grad(sol.u[1:].pow(2).sum(), (prob.u0, prob.p)))
    for ge, gc in zip(*grads, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-10, atol=1e-12)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_loop_features_with_compiled_steps() -> None:
    """tstops with saveat (the whole-loop program) and fixed steps (the fixed-step loop program,
    ``engine/compiled_loop_fixed.py``) agree with the eager solve."""
    prob = vdp_problem(F64, False)
    a, b = both(prob, ps.Tsit5(), rtol=1e-6, atol=1e-8, tstops=[0.7, 2.5], saveat=[0.5, 1.0, 3.0])
    assert_same_counts(a, b)
    torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-9)
    a, b = both(prob, ps.Tsit5(), dt=0.05, adaptive=False, saveat=[1.0, 4.0])
    assert a.success and b.success and b.stats.naccept == a.stats.naccept == 80
    torch.testing.assert_close(b.u, a.u, rtol=1e-12, atol=1e-12)


def test_no_recompilation_across_solves() -> None:
    ps.solve(rober((0.0, 1e3)), ps.Rodas5P(), rtol=1e-6, atol=1e-10, compile=True)  # compiled (or cached)
    before = compiled.compile_count()
    for i in range(10):
        k = torch.tensor([0.04, 3e7, 1e4], dtype=F64) * (1.0 + 0.05 * i)
        prob = rober((0.0, 1e3 * (1 + i)), k=k).remake(u0=torch.tensor([1.0 - 0.01 * i, 0.0, 0.01 * i],
                                                                        dtype=F64))
        sol = ps.solve(prob, ps.Rodas5P(), rtol=10.0 ** -(5 + i % 3), atol=10.0 ** -(9 + i % 2), compile=True)
        assert sol.success and sol.stats.compile_time < 1.0
    assert compiled.compile_count() == before


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_batched_no_recompilation_across_solves() -> None:
    """Batched loop programs: times, tolerances, maxiters and the number of tstops or save times are inputs."""
    prob = vdp_problem(F64, True)
    ps.solve(prob, ps.Tsit5(), rtol=1e-6, tstops=[1.0, 2.0], compile=True)
    ps.solve(prob, ps.Tsit5(), rtol=1e-6, saveat=[1.0, 2.0], compile=True)
    before = compiled.compile_count()
    for i, times in enumerate(([1.0, 2.0], [1.5, 2.5, 3.0], [0.5], [0.1 * k for k in range(1, 8)])):
        p = prob.remake(tspan=(0.0, 4.0 + i))
        assert ps.solve(p, ps.Tsit5(), rtol=10.0 ** -(5 + i), tstops=times, compile=True).success
        assert ps.solve(p, ps.Tsit5(), rtol=10.0 ** -(5 + i), saveat=times, maxiters=1000 + i, compile=True).success
    assert compiled.compile_count() == before


@pytest.mark.heavy
def test_no_graph_break_on_builtin_problems() -> None:
    cases = [(rober((0.0, 1.0)), ps.Rodas5P()), (hires(), ps.Rodas5P()), (van_der_pol(10.0), ps.Rodas5P()),
             (lotka_volterra(), ps.Tsit5()), (van_der_pol(1.0), ps.Tsit5()), (rober((0.0, 1.0)), ps.KenCarp4()),
             (hires(), ps.Kvaerno5())]
    try:
        from pysciml.problems import oregonator

        cases.append((oregonator(), ps.Rodas5P()))
    except ImportError:
        pass
    for prob, alg in cases:
        for use_jac in (True, False):  # the problem's analytic Jacobian, and autodiff inside the program
            if not use_jac:
                prob = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
            stats = Stats()
            c = check_solve(prob, alg, SolveOptions())
            stepper = compile_stepper(make_stepper(alg, prob, stats, c.atol, c.rtol, False), stats, 1, c.atol,
                                      c.rtol, True)
            assert isinstance(stepper, CompiledStepper)
            t = torch.zeros(1, dtype=F64)
            u = prob.u0.reshape(1, -1)
            stepper.init(t, u)
            variant, args = stepper.program_args(t, u, torch.full_like(t, 1e-4))
            report = torch._dynamo.explain(stepper.program.raw[variant])(*args)
            assert report.graph_break_count == 0 and report.graph_count == 1, (prob, alg, report.break_reasons)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_gradients_match_eager() -> None:
    """Tsit5 and KenCarp4 (exact stage derivatives in the program) differentiate through compiled steps;
    differentiated Rosenbrock solves run eagerly after a warning (inductor's backward fails on an nn.Module f)."""
    for alg in (ps.Tsit5(), ps.Rosenbrock23(), ps.KenCarp4()):
        grads = []
        for flag in (False, True):
            # tgrad given: the forward-difference df/dt amplifies round-off differences by 1/sqrt(eps)
            prob = vdp_problem(F64, False, tspan=(0.0, 2.0), requires_grad=True, tgrad=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sol = ps.solve(prob, alg, rtol=1e-6, atol=1e-8, saveat=[1.0, 2.0], compile=flag)
            eager_warned = any("differentiated Rosenbrock" in str(w.message) for w in caught)
            assert eager_warned == (flag and isinstance(alg, ps.Rosenbrock23))
            grads.append(torch.autograd.grad(sol.u.pow(2).sum(), (prob.u0, prob.p)))
        for ge, gc in zip(*grads, strict=True):
            torch.testing.assert_close(gc, ge, rtol=1e-11, atol=1e-12)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
@pytest.mark.parametrize("sensealg", [ps.DiscreteAdjoint(checkpoints=2), ps.InterpolatingAdjoint()],
                         ids=["checkpointed", "interpolating"])
def test_other_sensealgs_match_eager(sensealg: SensitivityAlgorithm) -> None:
    """Checkpointed segments (compiled without and with grad) and a continuous adjoint's compiled forward."""
    grads = []
    for flag in (False, True):
        prob = vdp_problem(F64, False, tspan=(0.0, 2.0), requires_grad=True)
        sol = ps.solve(prob, ps.Tsit5(), rtol=1e-6, atol=1e-8, saveat=[1.0, 2.0], sensealg=sensealg, compile=flag)
        grads.append(torch.autograd.grad(sol.u.pow(2).sum(), (prob.u0, prob.p)))
    for ge, gc in zip(*grads, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-11, atol=1e-12)


def branchy(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    if float(u.sum()) > 0:  # data-dependent Python: a host sync, no single graph
        return -u
    return u


def test_failed_compile_warns_and_solves() -> None:
    prob = ps.ODEProblem(branchy, torch.tensor([1.0, 2.0], dtype=F64), (0.0, 1.0))
    with pytest.warns(RuntimeWarning, match="compiling the Tsit5 step failed"):
        sol = ps.solve(prob, ps.Tsit5(), compile=True)
    ref = ps.solve(prob, ps.Tsit5())
    assert sol.success
    torch.testing.assert_close(sol.u, ref.u)
    assert_same_counts(ref, sol)


def test_unsupported_cases_warn_and_solve() -> None:
    L = torch.tensor([[-100.0, 1.0], [0.0, -50.0]], dtype=F64)
    prob = ps.SplitODEProblem(L, lambda t, u: torch.sin(u), torch.tensor([1.0, 2.0], dtype=F64), (0.0, 1.0))
    with pytest.warns(RuntimeWarning, match="GMRES linear solver has no compiled step"):
        sol = ps.solve(prob, ps.KenCarp4(linsolve=ps.GMRES()), compile=True)
    assert sol.success
    torch.testing.assert_close(sol.u, ps.solve(prob, ps.KenCarp4(linsolve=ps.GMRES())).u)
    with pytest.warns(RuntimeWarning, match="finite-difference Jacobians"):
        sol = ps.solve(vdp_problem(F64, False), ps.Rodas5P(autodiff=False), compile=True)
    assert sol.success


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_warns_when_f_is_recreated_per_solve() -> None:
    def make() -> object:
        return lambda t, u: -0.5 * u * u  # a new function object per call: a new program per solve

    u0 = torch.tensor([1.0, 2.0, 3.0], dtype=F64)  # a shape no other test uses
    with pytest.warns(RuntimeWarning, match="new function object at each solve"):
        for _ in range(compiled.FRESH_F_WARNING):
            assert ps.solve(ps.ODEProblem(make(), u0, (0.0, 1.0)), ps.Tsit5(), compile=True).success


def decay(t: torch.Tensor, u: torch.Tensor, p: tuple[float, float]) -> torch.Tensor:
    return -p[0] * u + p[1]


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_python_numbers_in_p_recompile_then_fall_back() -> None:
    """Python numbers are constants to the tracer: each new value recompiles; past Dynamo's limit the solve
    warns, says to keep such parameters in tensors, and goes on eagerly."""
    u0 = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64)  # a shape no other test uses
    limit = 2  # Dynamo's default is 8; a lower one keeps the test short
    with torch._dynamo.config.patch(recompile_limit=limit), \
            pytest.warns(RuntimeWarning, match="keep what changes between solves in tensors"):
        for i in range(limit + 1):
            sol = ps.solve(ps.ODEProblem(decay, u0, (0.0, 1.0), (1.0 + i, 0.5)), ps.Tsit5(), compile=True)
            assert sol.success
    ref = ps.solve(ps.ODEProblem(decay, u0, (0.0, 1.0), (1.0 + limit, 0.5)), ps.Tsit5())
    torch.testing.assert_close(sol.u, ref.u)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
def test_warmup_then_solve_compiles_nothing(batched: bool) -> None:
    prob = vdp_problem(F64, batched, mu=3.0, tspan=(0.0, 1.0))
    ps.warmup(prob, ps.Tsit5(), rtol=1e-6, atol=1e-8)
    before = compiled.compile_count()
    sol = ps.solve(prob, ps.Tsit5(), rtol=1e-6, atol=1e-8, compile=True)
    assert sol.success and compiled.compile_count() == before and sol.stats.compile_time < 1.0
    assert ps.warmup(prob, ps.Tsit5(), rtol=1e-6, atol=1e-8) < 1.0  # cached
    if batched:  # the batched loop's program, with a fresh and with a reused Jacobian
        ps.warmup(prob, ps.Rodas5P(), rtol=1e-6, atol=1e-8)
        before = compiled.compile_count()
        sol = ps.solve(prob, ps.Rodas5P(), rtol=1e-6, atol=1e-8, compile=True)
        assert sol.success and compiled.compile_count() == before


class Field(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_neural_ode_and_odeint_compiled() -> None:
    field = Field()
    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    eager, comp = ps.models.NeuralODE(field), ps.models.NeuralODE(field, compile=True)
    ye, yc = eager(y0, t), comp(y0, t)
    torch.testing.assert_close(yc, ye, rtol=1e-11, atol=1e-12)
    ge = torch.autograd.grad(ye.pow(2).sum(), tuple(field.parameters()))
    gc = torch.autograd.grad(yc.pow(2).sum(), tuple(field.parameters()))
    for a, b in zip(ge, gc, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert comp.nfe == comp.last_solution.stats.nf > 0
    before = compiled.compile_count()
    for scale in (0.5, 2.0):  # new initial states, same program
        with torch.no_grad():
            comp(y0 * scale, t)
    y_odeint = ps.odeint(field, y0, t, method="tsit5", compile=True, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(y_odeint, ye, rtol=1e-11, atol=1e-12)
    assert compiled.compile_count() - before <= 1  # only the no-grad forward is new


def pendulum(t: torch.Tensor, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    q, v = y
    return v, -torch.sin(q)


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_odeint_tuple_state_compiles_once() -> None:
    """odeint flattens a tuple state through one wrapper per (func, shapes), so calls share a program."""
    y0 = (torch.tensor([0.5, 1.0], dtype=F64), torch.tensor([0.0, 0.1], dtype=F64))
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    ps.odeint(pendulum, y0, t, method="tsit5", compile=True)
    before = compiled.compile_count()
    q, v = ps.odeint(pendulum, (y0[0] * 0.5, y0[1]), t, method="tsit5", compile=True)
    assert compiled.compile_count() == before
    qe, ve = ps.odeint(pendulum, (y0[0] * 0.5, y0[1]), t, method="tsit5")
    torch.testing.assert_close(q, qe, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v, ve, rtol=1e-10, atol=1e-12)


def test_compile_refused_on_julia() -> None:
    with pytest.raises(ps.InputError, match="compile"):
        ps.solve(vdp_problem(F64, False), ps.Tsit5(), compile=True, backend="julia")


@pytest.mark.exhaustive  # compiles its own programs: minutes on a cold cache (CI runs it: .ci/run)
def test_differentiated_rosenbrock_with_a_module() -> None:
    """The case whose per-step compiled backward failed in inductor (aoti mm_out): an nn.Module f with Rodas5P and
    the discrete adjoint. Saving at fixed times (odeint) it now takes the whole-loop program, without a warning,
    and its gradients equal the eager ones to round-off; with dense output (no loop program) it warns, solves
    eagerly, and its gradients equal the eager ones exactly."""
    torch.manual_seed(0)

    class F(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return -y + self.mlp(y)

    f = F()
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.linspace(0, 1, 5, dtype=F64)

    def grads(compile: bool, dense: bool) -> tuple[torch.Tensor, bool]:
        f.zero_grad()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if dense:
                sol = ps.solve(ps.ODEProblem(f, y0, (0.0, 1.0)), ps.Rodas5P(), sensealg=ps.DiscreteAdjoint(),
                               rtol=1e-6, atol=1e-10, dense=True, compile=compile)
                loss = sol(torch.tensor(0.7, dtype=F64)).sum()
            else:
                loss = ps.odeint(f, y0, t, alg=ps.Rodas5P(), sensealg=ps.DiscreteAdjoint(), rtol=1e-6, atol=1e-10,
                                 compile=compile).sum()
        loss.backward()
        warned = any("differentiated Rosenbrock" in str(w.message) for w in caught)
        return torch.cat([p.grad.flatten() for p in f.parameters()]), warned

    eager, warned = grads(False, False)
    assert not warned
    whole, warned = grads(True, False)
    assert not warned
    # round-off moves the step sizes by ~2% (the first error estimate is ~1e-9); a one-ulp change of y0 moves
    # the eager gradients by up to 1.4e-10 absolute, 3.4e-8 relative
    torch.testing.assert_close(whole, eager, rtol=1e-7, atol=1e-9)
    eager, _ = grads(False, True)
    fallback, warned = grads(True, True)
    assert warned
    torch.testing.assert_close(fallback, eager, rtol=0, atol=0)
