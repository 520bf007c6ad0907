"""Adams multistep methods (issue 18): exact coefficients and their order conditions, observed orders of
AB3/4/5 and ABM32/43/54, restarts, batches, gradients vs finite differences, the fixed-step check, bad input;
and odeint's 'explicit_adams' / 'implicit_adams' / 'fixed_adams' against torchdiffeq 0.2.5 itself."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import pytest
import torch
from fd import check_gradient
from helpers import PROBLEMS

import pysciml as ps
from pysciml import ODEProblem, odeint, solve
from pysciml.engine.adams import lmm_real_stability_boundary
from pysciml.engine.tableaus.adams import adams_bashforth, adams_moulton
from pysciml.odeint import METHOD_ALIASES

F64 = torch.float64
SCIML = [ps.AB3, ps.AB4, ps.AB5, ps.ABM32, ps.ABM43, ps.ABM54]


# ---- coefficients -------------------------------------------------------------------------------------------------


def _residual(coeffs: tuple[Fraction, ...], first_node: int, q: int) -> Fraction:
    """``C_q`` of ``y_{n+1} - y_n = h sum_j c_j f(t_{n + first_node - j})`` (``h = 1``, ``t_n = 0``) on ``y = t^q``:
    ``1 - sum_j c_j q (first_node - j)^(q-1)``; zero for ``q = 1 .. p`` exactly when the order is ``p``."""
    return 1 - sum((c * q * Fraction(first_node - j) ** (q - 1) for j, c in enumerate(coeffs)), Fraction(0))


@pytest.mark.parametrize("k", range(1, 9))
def test_adams_coefficients_meet_the_order_conditions_exactly(k: int) -> None:
    ab, am = adams_bashforth(k), adams_moulton(k)
    assert all(_residual(ab, 0, q) == 0 for q in range(1, k + 1)) and _residual(ab, 0, k + 1) != 0
    assert all(_residual(am, 1, q) == 0 for q in range(1, k + 1)) and _residual(am, 1, k + 1) != 0


def test_adams_coefficients_equal_hairer_and_torchdiffeq_tables() -> None:
    assert adams_bashforth(4) == (Fraction(55, 24), Fraction(-59, 24), Fraction(37, 24), Fraction(-9, 24))
    assert adams_moulton(4) == (Fraction(9, 24), Fraction(19, 24), Fraction(-5, 24), Fraction(1, 24))
    fa = pytest.importorskip("torchdiffeq._impl.fixed_adams")
    for k in range(2, 21):  # torchdiffeq's tables as integers over a common divisor (its order-1 Moulton row is unused)
        assert adams_bashforth(k) == tuple(Fraction(b, fa._DIVISOR[k]) for b in fa._BASHFORTH_COEFFICIENTS[k])
        assert adams_moulton(k) == tuple(Fraction(m, fa._DIVISOR[k]) for m in fa._MOULTON_COEFFICIENTS[k])


def test_real_stability_intervals_of_adams_bashforth() -> None:
    """Hairer-Wanner II, V.1 (Fig. 1.1): AB3 [-6/11, 0], AB4 [-3/10, 0], AB5 [-90/551, 0]."""
    for alg, want in ((ps.AB3(), 6 / 11), (ps.AB4(), 3 / 10), (ps.AB5(), 90 / 551)):
        assert abs(lmm_real_stability_boundary(alg.tableau) - want) < 1e-6
    for alg in (ps.ABM32(), ps.ABM43(), ps.ABM54()):  # a corrector widens the interval
        assert lmm_real_stability_boundary(alg.tableau) > 0.9


# ---- solve() ------------------------------------------------------------------------------------------------------


def _forced(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.stack([u[..., 1], -u[..., 0]], dim=-1) + 0.1 * torch.cos(t)[..., None] * u


U0 = torch.tensor([1.0, 0.0], dtype=F64)


@pytest.fixture(scope="module")
def forced_reference() -> torch.Tensor:
    return solve(ODEProblem(_forced, U0, (0.0, 5.0)), ps.Vern7(), rtol=1e-13, atol=1e-13).u[-1]


@pytest.mark.parametrize("alg_type", SCIML)
def test_observed_order(alg_type: type, forced_reference: torch.Tensor) -> None:
    alg = alg_type()
    errs = [float((solve(ODEProblem(_forced, U0, (0.0, 5.0)), alg, dt=5.0 / n).u[-1] - forced_reference).norm())
            for n in (100, 200)]
    assert abs(math.log2(errs[0] / errs[1]) - alg.order) < 0.2


@pytest.mark.parametrize("alg_type", [ps.AB4, ps.ABM54])
def test_a_shortened_last_step_restarts_and_keeps_the_order(alg_type: type, forced_reference: torch.Tensor) -> None:
    """dt does not divide the span: the last step is shorter; the method restarts there (one startup step)."""
    alg = alg_type()
    errs = [float((solve(ODEProblem(_forced, U0, (0.0, 5.0)), alg, dt=dt).u[-1] - forced_reference).norm())
            for dt in (5.0 / 100.3, 5.0 / 200.6)]
    assert abs(math.log2(errs[0] / errs[1]) - alg.order) < 0.3


def test_function_evaluations_per_step() -> None:
    prob = ODEProblem(_forced, U0, (0.0, 1.0))
    n = 20
    # init 1 + (startup: 3 more per RK4 step, 1 per Ralston... ) + 1 refresh per step; PECE one more per Adams step
    ab4 = solve(prob, ps.AB4(), dt=1.0 / n).stats.nf
    abm43 = solve(prob, ps.ABM43(), dt=1.0 / n).stats.nf
    assert ab4 == 1 + n + 3 * 3  # three RK4 startup steps add three stages each
    assert abm43 == ab4 + (n - 3)  # PECE: one more f per Adams step


def test_batch_equals_separate_solves_and_saveat() -> None:
    u0 = torch.tensor([[1.0, 0.0], [0.3, -0.5]], dtype=F64)
    prob = ODEProblem(_forced, u0, (0.0, 1.0), batched=True)
    save = torch.tensor([0.0, 0.55, 0.8, 1.0], dtype=F64)
    for alg in (ps.ABM43(), ps.AdamsBashforthMoulton()):
        batch = solve(prob, alg, dt=0.05, saveat=save).u
        for b in range(2):
            one = solve(ODEProblem(_forced, u0[b], (0.0, 1.0)), alg, dt=0.05, saveat=save).u
            torch.testing.assert_close(batch[:, b], one, rtol=1e-13, atol=1e-13)


def test_gradients_through_the_steps_match_finite_differences() -> None:
    p = torch.tensor([0.7, -0.3], dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)

    def f(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.stack([u[1] * p[0], -torch.sin(u[0]) + p[1] * u[1]])

    for alg in (ps.AB4(), ps.ABM32(), ps.AdamsBashforthMoulton(max_order=6)):
        def loss(alg=alg) -> torch.Tensor:
            return solve(ODEProblem(f, y0, (0.0, 1.5), p), alg, dt=0.05).u[-1].pow(2).sum()

        r = check_gradient(loss, [y0, p], h=1e-6)
        assert r.rel < 1e-7, (alg, r)


def test_fixed_step_check_ends_an_unstable_solve() -> None:
    sol = solve(ODEProblem(lambda t, u: -50 * u, torch.ones(1, dtype=F64), (0.0, 1.0)), ps.AB4(), dt=0.05)
    assert sol.retcode == ps.ReturnCode.Unstable and "stability" in sol.message
    # torchdiffeq's AdamsBashforth grows to order 11, unstable on an oscillation (torchdiffeq returns ~1e3 there)
    sol = solve(ODEProblem(_forced, U0, (0.0, 5.0)), ps.AdamsBashforth(), dt=0.05)
    assert sol.retcode == ps.ReturnCode.Unstable
    assert solve(ODEProblem(_forced, U0, (0.0, 5.0)), ps.AdamsBashforth(max_order=5), dt=0.05).retcode == "Success"


def test_bad_input() -> None:
    prob = ODEProblem(_forced, U0, (0.0, 1.0))
    with pytest.raises(ps.InputError, match="fixed steps only"):
        solve(prob, ps.AB4(), adaptive=True, dt=0.1)
    with pytest.raises(ps.InputError, match="needs a step size"):
        solve(prob, ps.ABM43())
    with pytest.raises(ps.InputError, match="max_order"):
        ps.AdamsBashforth(max_order=13)
    with pytest.raises(ps.InputError, match="max_iters"):
        ps.AdamsBashforthMoulton(max_iters=0)
    t = torch.linspace(0, 1, 5, dtype=F64)
    with pytest.raises(ps.InputError, match="implicit"):
        odeint(_forced, U0, t, method="explicit_adams", options={"implicit": True})
    with pytest.raises(ps.InputError, match="scipy_solver"):
        ps.odeint_adjoint(_forced, U0, t, method="scipy_solver")


# ---- odeint against torchdiffeq ------------------------------------------------------------------------------------

ADAMS_STRINGS = ["explicit_adams", "implicit_adams", "fixed_adams"]


def test_fixed_adams_is_implicit_adams() -> None:
    """torchdiffeq maps both strings to AdamsBashforthMoulton; so does pysciml."""
    assert METHOD_ALIASES["fixed_adams"] is METHOD_ALIASES["implicit_adams"]
    assert METHOD_ALIASES["implicit_adams"] is ps.AdamsBashforthMoulton
    assert METHOD_ALIASES["explicit_adams"] is ps.AdamsBashforth


@pytest.mark.parametrize("method", ADAMS_STRINGS[:2])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_adams_strings_give_torchdiffeq_numbers(method: str, problem: str, dtype: torch.dtype) -> None:
    tdq = pytest.importorskip("torchdiffeq")
    f, y0 = PROBLEMS[problem]
    y0 = torch.tensor(y0, dtype=dtype)
    for reverse in (False, True):
        t = torch.linspace(0.0, 2.0, 41, dtype=dtype)
        t = 2.0 - t if reverse else t
        with warnings.catch_warnings():  # explicit_adams's default order 12 is unstable on some: warned, same numbers
            warnings.simplefilter("ignore", RuntimeWarning)
            ours, theirs = odeint(f, y0, t, method=method), tdq.odeint(f, y0, t, method=method)
        assert ours.dtype == dtype
        tol = 1e-12 if dtype == F64 else 2e-5
        torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


@pytest.mark.parametrize("opts", [{"step_size": 0.07}, {"step_size": 0.05, "interp": "cubic"}, {"perturb": True},
                                  {"max_order": 5}, {"max_order": 3}, {"max_iters": 1}, {"implicit": False}])
@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_adams_options_give_torchdiffeq_numbers(opts: dict, method: str) -> None:
    tdq = pytest.importorskip("torchdiffeq")
    if method == "explicit_adams" and "implicit" in opts:
        pytest.skip("torchdiffeq refuses 'implicit' with explicit_adams (tested in test_bad_input)")
    f = lambda t, y: torch.cos(2 * t) - torch.sin(y) - 0.3 * y  # noqa: E731
    y0 = torch.tensor([0.3, -1.0], dtype=F64)
    t = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0], dtype=F64)  # uniform, so no step-change warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchdiffeq's and ours: non-converged corrector, max_order < 4
        ours, theirs = odeint(f, y0, t, method=method, options=opts), tdq.odeint(f, y0, t, method=method, options=opts)
    # explicit_adams with its default max_order (12) is unstable at these steps (torchdiffeq's run reaches |y| = 60 as
    # ours does): the two runs' round-off differences (1e-17) grow with it, to 1e-10 at the end
    tol = 1e-9 if method == "explicit_adams" and "max_order" not in opts else 1e-12
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


def test_an_unstable_grid_solve_warns_and_keeps_torchdiffeq_numbers() -> None:
    """Decay run backwards in time (y' = 0.8 y from t = 2 to 0, dt = 0.05): torchdiffeq's default explicit_adams
    (order up to 11) returns 34 where the solution is 0.2; odeint returns the same number, with a warning from the
    fixed-step check; max_order=5 is stable there and silent."""
    tdq = pytest.importorskip("torchdiffeq")
    f = PROBLEMS["exponential"][0]
    y0 = torch.tensor([1.0, 2.0], dtype=F64)
    t = 2.0 - torch.linspace(0.0, 2.0, 41, dtype=F64)
    with pytest.warns(RuntimeWarning, match="unreliable from t=.*stability region"):
        ours = odeint(f, y0, t, method="explicit_adams")
    torch.testing.assert_close(ours, tdq.odeint(f, y0, t, method="explicit_adams"), rtol=1e-12, atol=1e-12)
    assert float(ours[-1, 0]) > 10 * math.exp(-1.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        good = odeint(f, y0, t, method="explicit_adams", options={"max_order": 5})
    torch.testing.assert_close(good[-1], y0 * math.exp(-1.6), rtol=1e-6, atol=0)


def test_non_uniform_grid_warns_and_still_gives_torchdiffeq_numbers() -> None:
    tdq = pytest.importorskip("torchdiffeq")
    f = PROBLEMS["linear"][0]
    y0 = torch.tensor([1.0, 0.5], dtype=F64)
    t = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.75], dtype=F64)
    for method in ADAMS_STRINGS:
        with pytest.warns(RuntimeWarning, match="equal-step coefficients"):
            ours = odeint(f, y0, t, method=method)
        torch.testing.assert_close(ours, tdq.odeint(f, y0, t, method=method), rtol=1e-12, atol=1e-12)


def test_corrector_not_converging_warns_like_torchdiffeq() -> None:
    tdq = pytest.importorskip("torchdiffeq")
    f = lambda t, y: -20 * y + torch.sin(t)  # noqa: E731
    y0 = torch.tensor([1.0], dtype=F64)
    t = torch.linspace(0, 1, 21, dtype=F64)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        ours = odeint(f, y0, t, method="implicit_adams", options={"max_iters": 2})
    with pytest.warns(UserWarning):
        theirs = tdq.odeint(f, y0, t, method="implicit_adams", options={"max_iters": 2})
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_adams_strings_on_tuple_and_complex_states() -> None:
    tdq = pytest.importorskip("torchdiffeq")
    t = torch.linspace(0, 1, 11, dtype=F64)
    y0 = (torch.tensor([1.0, 0.5], dtype=F64), torch.tensor([[0.2]], dtype=F64))
    f = lambda t, y: (-y[0] * y[1][0, 0], y[0].sum().reshape(1, 1) * 0.1)  # noqa: E731
    for method in ADAMS_STRINGS:
        for a, b in zip(odeint(f, y0, t, method=method), tdq.odeint(f, y0, t, method=method), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    z0 = torch.tensor([1.0 + 0.5j], dtype=torch.complex128)
    rot = lambda t, y: (1j - 0.1) * y  # noqa: E731
    for method in ADAMS_STRINGS:
        ours = odeint(rot, z0, t, method=method)
        assert ours.dtype == torch.complex128
        # the corrector's convergence test sees real and imaginary parts (torchdiffeq: the modulus), so the number of
        # iterations may differ: the results then differ within the corrector's tolerance (atol 1e-9)
        tol = 1e-12 if method == "explicit_adams" else 1e-9
        torch.testing.assert_close(ours, tdq.odeint(rot, z0, t, method=method), rtol=tol, atol=tol)


def test_odeint_adams_gradients_match_finite_differences() -> None:
    w = torch.tensor([0.5, -1.2], dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.2], dtype=F64, requires_grad=True)
    t = torch.linspace(0, 1, 21, dtype=F64, requires_grad=True)
    f = lambda tt, y: torch.tanh(w * y) + torch.sin(tt)  # noqa: E731
    opts = {"max_order": 6}  # the default 12 is unstable at this step (the solution grows to 60, as in torchdiffeq)
    # rtol: the corrector's iteration count is a discrete decision; at rtol 1e-7 the finite differences cross
    # count changes (value jumps of ~rtol |dy|), at 1e-3 they do not
    for method in ADAMS_STRINGS:
        with warnings.catch_warnings():  # perturbing t makes the grid non-uniform (the step-change warning)
            warnings.simplefilter("ignore", RuntimeWarning)
            r = check_gradient(lambda m=method: odeint(f, y0, t, method=m, options=opts, rtol=1e-3)[-1].pow(2).sum(),
                               [y0, w, t], h=1e-6)
        assert r.rel < 1e-7, (method, r)


def test_odeint_adams_evaluates_f_where_torchdiffeq_does() -> None:
    """On t's grid: the same evaluation times as torchdiffeq (3/8-rule stages in the first two steps, then the grid
    points; implicit_adams adds the corrector's at each step's end), plus f at t[-1], which pysciml's stepper
    evaluates after the last step (torchdiffeq does not)."""
    tdq = pytest.importorskip("torchdiffeq")
    t = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], dtype=F64)
    for method in ("explicit_adams", "implicit_adams"):
        seen: dict[str, list[float]] = {"ours": [], "theirs": []}
        for who, run in (("ours", odeint), ("theirs", tdq.odeint)):
            def f(tt: torch.Tensor, y: torch.Tensor, times: list[float] = seen[who]) -> torch.Tensor:
                times.append(round(float(tt), 12))
                return -y
            run(f, torch.ones(1, dtype=F64), t, method=method)
        assert sorted(set(seen["ours"])) == sorted(set(seen["theirs"]) | {0.5})
        assert len(seen["ours"]) == len(seen["theirs"]) + 1
