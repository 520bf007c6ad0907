"""Every path of ``solve`` honours its keywords or refuses them by name (issue 12, "one way through the code").

* ``DiscreteAdjoint(checkpoints=K)`` through ``solve``: values and gradients as without checkpoints, recomputation
  exact, memory bounded, failures reported, the models on the same path;
* the continuous adjoints through ``solve``: ``dtmax``, ``controller``, ``dtmin``, ``tstops`` and ``throw`` have an
  observable effect on the forward and the backward solves; ``dense=True`` is refused;
* the helpers every path shares (``Stats +``, ``raise_if_failed``, ``check_times``, ``SolveOptions``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import pysciml as ps
import pysciml.sensitivity.discrete as discrete
from pysciml._validate import SolveOptions, check_times
from pysciml.models import NeuralODE
from pysciml.solution import raise_if_failed

F64 = torch.float64
SAVEAT = torch.linspace(0.2, 5.0, 25, dtype=F64)


def f(t, u, p):
    return torch.stack((-p[0] * u[0] + u[1] * torch.sin(t), -p[1] * u[1] + 0.1 * u[0] ** 2))


def leaves() -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([0.7, 1.3], dtype=F64, requires_grad=True),
            torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True))


def solve_and_grad(sensealg, tspan=(0.0, 5.0), saveat=SAVEAT, **kw):
    k, y0 = leaves()
    sol = ps.solve(ps.ODEProblem(f, y0, tspan, k), kw.pop("alg", ps.Tsit5()), saveat=saveat, sensealg=sensealg,
                   **{"rtol": 1e-9, "atol": 1e-12, **kw})
    return sol, torch.autograd.grad((sol.u ** 2).sum(), (k, y0))


def max_diff(a, b) -> float:
    return max(float((x - y).detach().abs().max()) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------ checkpointed discrete
def test_checkpointed_solve_matches_the_plain_one_and_recomputes_exactly(monkeypatch):
    plain, g_plain = solve_and_grad(None)
    ckpt, g_ckpt = solve_and_grad(ps.DiscreteAdjoint(checkpoints=4))
    assert ckpt.success and "4 checkpointed segments" in ckpt.message
    assert torch.equal(ckpt.t, SAVEAT) and ckpt.u.shape == plain.u.shape
    assert max_diff([ckpt.u], [plain.u]) < 1e-9  # other steps (segments restart), same tolerance
    assert max_diff(g_ckpt, g_plain) < 1e-9
    monkeypatch.setattr(discrete, "checkpoint", lambda fn, *args, **kw: fn(*args))  # the same segments, kept
    _, g_kept = solve_and_grad(ps.DiscreteAdjoint(checkpoints=4))
    assert max_diff(g_kept, g_ckpt) == 0.0  # backward's recomputation repeats every step exactly


def test_checkpointed_fixed_steps_equal_the_plain_solve():
    saveat = torch.linspace(0.0, 2.0, 9, dtype=F64)  # on the grid of dt = 0.05
    kw = dict(alg=ps.RK4(), dt=0.05, adaptive=False, tspan=(0.0, 2.0), saveat=saveat)
    plain, g_plain = solve_and_grad(None, **kw)
    ckpt, g_ckpt = solve_and_grad(ps.DiscreteAdjoint(checkpoints=3), **kw)
    assert max_diff([ckpt.u], [plain.u]) < 1e-13 and max_diff(g_ckpt, g_plain) < 1e-12
    assert ckpt.stats.naccept == plain.stats.naccept == 40


@pytest.mark.parametrize("tspan,saveat", [((0.0, 5.0), [1.0, 2.5, 4.0, 5.0]), ((2.0, 0.0), [1.5, 1.0, 0.5, 0.0])],
                         ids=["saveat-after-t0", "backward-time"])
def test_checkpointed_solve_without_t0_and_backwards(tspan, saveat):
    plain, g_plain = solve_and_grad(None, tspan=tspan, saveat=saveat)
    ckpt, g_ckpt = solve_and_grad(ps.DiscreteAdjoint(checkpoints=3), tspan=tspan, saveat=saveat)
    assert ckpt.t.tolist() == saveat and max_diff([ckpt.u], [plain.u]) < 1e-9
    assert max_diff(g_ckpt, g_plain) < 1e-8


def test_checkpointed_batched_solve():
    k = torch.tensor([[0.7, 1.3], [0.4, 2.0]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.5], [0.2, 1.0]], dtype=F64, requires_grad=True)

    def fb(t, u, p):
        return torch.stack((-p[:, 0] * u[:, 0] + u[:, 1] * torch.sin(t), -p[:, 1] * u[:, 1]), dim=1)

    def run(sensealg):
        sol = ps.solve(ps.ODEProblem(fb, y0, (0.0, 2.0), k, batched=True), ps.Tsit5(), rtol=1e-9, atol=1e-12,
                       saveat=torch.linspace(0.0, 2.0, 9, dtype=F64), sensealg=sensealg)
        return sol, torch.autograd.grad(sol.u.square().sum(), (k, y0))

    plain, g_plain = run(None)
    ckpt, g_ckpt = run(ps.DiscreteAdjoint(checkpoints=4))
    assert ckpt.u.shape == plain.u.shape == (9, 2, 2) and max_diff([ckpt.u], [plain.u]) < 1e-9
    assert max_diff(g_ckpt, g_plain) < 1e-8


def test_adaptive_segments_carry_the_step_size():
    """Each segment starts with the step the previous one planned (dt_next), not a fresh small guess."""
    plain, _ = solve_and_grad(None, rtol=1e-6, atol=1e-9)
    ckpt, _ = solve_and_grad(ps.DiscreteAdjoint(checkpoints=12), rtol=1e-6, atol=1e-9)
    assert ckpt.stats.naccept <= plain.stats.naccept + 2 * 12  # measured: 38 for 24 (49 without the carry)
    assert ckpt.dt_next is not None


def test_checkpointed_solve_keeps_less_for_backward():
    def saved_bytes(sensealg) -> int:
        total = [0]

        def pack(x):
            total[0] += x.numel() * x.element_size()
            return x

        A = torch.tensor([[0.0, 1.0], [-1.0, -0.01]], dtype=F64, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            sol = ps.solve(ps.ODEProblem(lambda t, y, p: p @ y, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 60.0), A),
                           ps.Tsit5(), rtol=1e-8, atol=1e-10, saveat=torch.linspace(0, 60, 31, dtype=F64),
                           sensealg=sensealg)
        sol.u.sum().backward()
        assert A.grad is not None
        return total[0]

    assert saved_bytes(ps.DiscreteAdjoint(checkpoints=10)) < 0.15 * saved_bytes(ps.DiscreteAdjoint())


def blow_up(t, u, p):
    return u * u * p


def test_checkpointed_failure_is_reported_or_raised():
    p = torch.tensor(1.0, dtype=F64, requires_grad=True)
    prob = ps.ODEProblem(blow_up, torch.ones(1, dtype=F64), (0.0, 2.0), p)
    saveat = torch.linspace(0.1, 2.0, 20, dtype=F64)
    sol = ps.solve(prob, ps.Tsit5(), saveat=saveat, sensealg=ps.DiscreteAdjoint(checkpoints=4))
    assert sol.retcode is ps.ReturnCode.DtLessThanMin and "checkpointed segment 2 of 4" in sol.message
    assert len(sol.t) == len(sol.u) and float(sol.t[-1]) < 1.0 and torch.equal(sol.t, saveat[: len(sol.t)])
    with pytest.raises(ps.SolverError, match="DtLessThanMin"):
        ps.solve(prob, ps.Tsit5(), saveat=saveat, sensealg=ps.DiscreteAdjoint(checkpoints=4), throw=True)


class Field(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


def test_neural_ode_runs_the_checkpointed_solve_of_solve():
    torch.manual_seed(0)
    field = Field()
    y0, t = torch.tensor([1.0, -0.5], dtype=F64), torch.linspace(0.0, 1.0, 11, dtype=F64)
    grads = []
    for sensealg in (None, ps.DiscreteAdjoint(checkpoints=5)):
        model = NeuralODE(field, ps.RK4(), dt=0.05, sensealg=sensealg)
        field.zero_grad()
        model(y0, t).square().sum().backward()
        grads.append([q.grad.clone() for q in field.parameters()])
    assert max_diff(grads[0], grads[1]) < 1e-12
    assert model.last_solution is not None and "5 checkpointed segments" in model.last_solution.message


# ------------------------------------------------------------------------------- continuous adjoints
def forward_then_backward(**kw) -> tuple[int, int, ps.ODESolution]:
    """Accepted steps of the forward solve, then of the backward pass (the solution's stats after each)."""
    k, y0 = leaves()
    sol = ps.solve(ps.ODEProblem(f, y0, (0.0, 5.0), k), ps.Tsit5(), saveat=SAVEAT, sensealg=ps.InterpolatingAdjoint(),
                   **{"rtol": 1e-6, "atol": 1e-9, **kw})
    forward = sol.stats.naccept
    (sol.u ** 2).sum().backward()
    return forward, sol.stats.naccept - forward, sol


def test_continuous_adjoint_honours_dtmax_and_controller():
    fwd, bwd, _ = forward_then_backward()
    fwd_max, bwd_max, _ = forward_then_backward(dtmax=0.05)
    assert fwd < 50 and fwd_max >= 100 and bwd_max >= 100 > bwd  # measured: 24/75 and 101/126
    fwd_c, _, _ = forward_then_backward(controller=ps.PIController(qmax=1.2))
    assert fwd_c > fwd  # the step grows by at most 20 % a step: 33 steps for 24


def test_continuous_adjoint_lands_on_tstops_forward_and_backward():
    seen: list[float] = []
    stop = 1.234567

    def g(t, u, p):
        seen.append(float(t))
        return -p * u

    p = torch.tensor(0.8, dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(g, torch.ones(2, dtype=F64), (0.0, 3.0), p), ps.Tsit5(), saveat=[1.0, 3.0],
                   sensealg=ps.InterpolatingAdjoint(), tstops=[stop])
    assert stop in seen
    seen.clear()
    sol.u.sum().backward()
    assert stop in seen and p.grad is not None


def test_continuous_adjoint_dtmin_and_throw():
    p = torch.tensor(1.0, dtype=F64, requires_grad=True)
    prob = ps.ODEProblem(blow_up, torch.ones(1, dtype=F64), (0.0, 2.0), p)
    saveat = torch.linspace(0.1, 2.0, 20, dtype=F64)
    free = ps.solve(prob, ps.Tsit5(), saveat=saveat, sensealg=ps.QuadratureAdjoint())
    sol = ps.solve(prob, ps.Tsit5(), saveat=saveat, sensealg=ps.QuadratureAdjoint(), dtmin=1e-3)
    assert free.retcode is sol.retcode is ps.ReturnCode.DtLessThanMin
    assert sol.stats.naccept < 20 < 40 < free.stats.naccept  # dtmin stops it early: 12 steps for 64
    assert len(sol.t) == len(sol.u) and torch.allclose(sol.t, saveat[:9])  # the save times up to 0.9
    with pytest.raises(ps.SolverError, match="no gradient of a failed solve"):
        sol.u.sum().backward()
    for sensealg in (ps.InterpolatingAdjoint(checkpointing=True), ps.BacksolveAdjoint()):
        with pytest.raises(ps.SolverError, match="forward solve for the adjoint failed: .*DtLessThanMin"):
            ps.solve(prob, ps.Tsit5(), saveat=saveat, sensealg=sensealg, throw=True)


def test_continuous_adjoint_refuses_dense_output():
    k, y0 = leaves()
    prob = ps.ODEProblem(f, y0, (0.0, 1.0), k)
    with pytest.raises(ps.InputError, match="dense=True cannot be honoured with InterpolatingAdjoint"):
        ps.solve(prob, ps.Tsit5(), saveat=[1.0], sensealg=ps.InterpolatingAdjoint(), dense=True)
    sol = ps.solve(prob, ps.Tsit5(), saveat=[1.0], sensealg=ps.InterpolatingAdjoint(), dense=False)
    assert sol.success and not sol.dense


def test_solve_refuses_a_sensealg_that_is_not_one():
    with pytest.raises(ps.InputError, match="sensealg must be an object from pysciml.sensealg"):
        ps.solve(ps.ODEProblem(f, torch.ones(2, dtype=F64), (0.0, 1.0), torch.ones(2, dtype=F64)), ps.Tsit5(),
                 sensealg="adjoint")


# ---------------------------------------------------------------------------------- shared helpers
def test_stats_add_up():
    a, b = ps.Stats(nf=3, naccept=2), ps.Stats(nf=4, nreject=1)
    total = a + b
    assert (total.nf, total.naccept, total.nreject) == (7, 2, 1) and a.nf == 3  # + makes a new Stats
    a += b
    assert a == total and sum([b, b], ps.Stats()).nf == 8


def test_raise_if_failed_and_the_shared_message():
    ok = ps.solve(ps.ODEProblem(lambda t, u: -u, torch.ones(1, dtype=F64), (0.0, 1.0)), ps.Tsit5())
    assert raise_if_failed(ok) is ok
    bad = ps.solve(ps.ODEProblem(blow_up, torch.ones(1, dtype=F64), (0.0, 2.0), 1.0), ps.Tsit5())
    with pytest.raises(ps.SolverError, match=r"^the test solve failed: Tsit5\(\) failed: DtLessThanMin at t=") as info:
        raise_if_failed(bad, "the test solve")
    assert info.value.retcode is ps.ReturnCode.DtLessThanMin


@pytest.mark.parametrize("t,match", [([0.0], "at least two"), ([[0.0, 1.0]], "1-D"), ([0.0, 1.0, 1.0], "strictly"),
                                     ([0.0, float("nan")], "NaN"), ("abc", "t must be")],
                         ids=["one", "2-d", "repeated", "nan", "string"])
def test_check_times(t, match):
    with pytest.raises(ps.InputError, match=match):
        check_times(t, torch.ones(1, dtype=F64))
    assert check_times([0, 1, 2], torch.ones(1, dtype=F64)).dtype == F64


def test_solve_options():
    with pytest.raises(ps.InputError, match=r"unknown solve keyword\(s\) \['tol'\]"):
        SolveOptions().replace(tol=1e-3)
    piece = SolveOptions(dtmin=0.3).on_piece(1.0, 1.2, [0.5, 1.1, 1.2, 3.0])
    assert piece.tstops == [1.1, 1.2] and piece.dtmin == 0.0  # a piece shorter than dtmin is one short step
    assert SolveOptions(dtmin=0.1).on_piece(2.0, 1.0, None) == SolveOptions(dtmin=0.1)


def test_checkpointed_segments_share_maxiters():
    plain, _ = solve_and_grad(None, rtol=1e-6, atol=1e-9)
    budget = plain.stats.nloop // 2
    sol, _ = solve_and_grad(ps.DiscreteAdjoint(checkpoints=4), rtol=1e-6, atol=1e-9, maxiters=budget)
    assert sol.retcode is ps.ReturnCode.MaxIters and sol.stats.nloop <= budget
    assert len(sol.t) < len(SAVEAT)


@pytest.mark.parametrize("sensealg", [ps.InterpolatingAdjoint(), ps.QuadratureAdjoint(), ps.BacksolveAdjoint()],
                         ids=lambda s: s.name)
def test_continuous_adjoint_after_fixed_steps(sensealg):
    """The backward solve takes the forward's fixed steps: RK4 (fixed-step only) used to fail in backward."""
    k = torch.tensor(0.5, dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(lambda t, u, p: -p * u, torch.ones(1, dtype=F64), (0.0, 1.0), k), ps.RK4(),
                   adaptive=False, dt=0.1, saveat=[0.5, 1.0], sensealg=sensealg)
    (g,) = torch.autograd.grad(sol.u.sum(), k)
    exact = -(0.5 * math.exp(-0.25) + math.exp(-0.5))
    assert abs(float(g) / exact - 1) < 1e-6 and sol.stats.naccept == 20  # 10 steps forward, 10 backward


@pytest.mark.parametrize("sensealg", [ps.InterpolatingAdjoint(), ps.QuadratureAdjoint(), ps.BacksolveAdjoint()],
                         ids=lambda s: s.name)
def test_continuous_adjoint_with_per_component_atol(sensealg):
    """The backward state ([a, g], [y, a, g]) is not the forward state: it gets the smallest atol component
    (Interpolating and Backsolve used to fail in backward, 'atol must ... have the state's shape (3,)')."""
    k = torch.tensor(0.5, dtype=F64, requires_grad=True)
    sol = ps.solve(ps.ODEProblem(lambda t, u, p: -p * u, torch.ones(2, dtype=F64), (0.0, 1.0), k), ps.Tsit5(),
                   saveat=[1.0], sensealg=sensealg, atol=torch.tensor([1e-6, 1e-8], dtype=F64))
    (g,) = torch.autograd.grad(sol.u.sum(), k)
    assert abs(float(g) / (-2 * math.exp(-0.5)) - 1) < 1e-5
