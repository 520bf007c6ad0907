"""Symplectic methods on HamiltonianProblem / SecondOrderODEProblem: order, energy, invariants, batches, dense output,
tableau conditions and the refusals (gradients: tests/test_symplectic_gradients.py)."""

from __future__ import annotations

import math

import pytest
import torch

import pysciml as ps
from pysciml import (
    DP5,
    HamiltonianProblem,
    ImplicitMidpoint,
    InputError,
    Leapfrog,
    McAte5,
    ODEProblem,
    Rodas5P,
    SecondOrderODEProblem,
    Tsit5,
    VelocityVerlet,
    Vern7,
    Yoshida4,
    Yoshida6,
    solve,
)
from pysciml.engine.tableaus.symplectic import IMPLICIT_MIDPOINT, SYMPLECTIC_TABLEAUS

D = torch.float64
T_END = 5.0


def oscillator(q, p):
    return 0.5 * (p**2).sum(-1) + 0.5 * (q**2).sum(-1)


def pendulum(q, p):
    return 0.5 * (p**2).sum(-1) + (1.0 - torch.cos(q)).sum(-1)


Q0, P0 = torch.tensor([1.0], dtype=D), torch.tensor([0.5], dtype=D)


def exact_oscillator(t):
    return torch.cat([Q0 * math.cos(t) + P0 * math.sin(t), -Q0 * math.sin(t) + P0 * math.cos(t)])


_PENDULUM_REF = {}


def pendulum_reference(t):
    if t not in _PENDULUM_REF:
        prob = ODEProblem(lambda s, u: torch.stack([u[1], -torch.sin(u[0])]), torch.cat([Q0, P0]), (0.0, t))
        _PENDULUM_REF[t] = solve(prob, Vern7(), rtol=1e-13, atol=1e-14, saveat=[t]).u[-1]
    return _PENDULUM_REF[t]


# method, order, the two step sizes whose error ratio gives the observed order
ORDERS = [
    (VelocityVerlet(), 2, (0.05, 0.025)),
    (Leapfrog(), 2, (0.05, 0.025)),
    (Yoshida4(), 4, (0.1, 0.05)),
    (McAte5(), 5, (0.2, 0.1)),
    (Yoshida6(), 6, (0.25, 0.125)),
    (ImplicitMidpoint(), 2, (0.05, 0.025)),
]


def _error(H, exact, alg, dt):
    prob = HamiltonianProblem(H, Q0, P0, (0.0, T_END), separable=True)
    sol = solve(prob, alg, dt=dt, saveat=[T_END])
    assert sol.success, sol.message
    return float((sol.u[-1] - exact).abs().max())


@pytest.mark.parametrize("H,name", [(oscillator, "oscillator"), (pendulum, "pendulum")])
@pytest.mark.parametrize("alg,order,dts", ORDERS, ids=[a.name for a, _, _ in ORDERS])
def test_observed_order(H, name, alg, order, dts):
    exact = exact_oscillator(T_END) if name == "oscillator" else pendulum_reference(T_END)
    e1, e2 = (_error(H, exact, alg, dt) for dt in dts)
    observed = math.log(e1 / e2) / math.log(dts[0] / dts[1])
    assert abs(observed - order) <= 0.2, (alg.name, name, e1, e2, observed)


def test_second_order_problem_matches_hamiltonian_and_orders():
    """x'' = -sin x as a SecondOrderODEProblem: the same numbers as the pendulum Hamiltonian (T = p^2/2), and the
    velocity is free (fewer counted evaluations)."""
    second = SecondOrderODEProblem(lambda t, x, v: -torch.sin(x), Q0, P0, (0.0, T_END))
    assert second.velocity_independent
    ham = HamiltonianProblem(pendulum, Q0, P0, (0.0, T_END), separable=True)
    for alg in (VelocityVerlet(), Yoshida4(), McAte5(), Yoshida6()):
        a = solve(second, alg, dt=0.1, saveat=[T_END])
        b = solve(ham, alg, dt=0.1, saveat=[T_END])
        torch.testing.assert_close(a.u, b.u, rtol=1e-13, atol=1e-13)
        assert a.stats.nf < b.stats.nf
    exact = pendulum_reference(T_END)
    errs = [float((solve(second, McAte5(), dt=dt, saveat=[T_END]).u[-1] - exact).abs().max()) for dt in (0.2, 0.1)]
    assert abs(math.log2(errs[0] / errs[1]) - 5) <= 0.2


def test_time_dependent_force_keeps_the_order():
    """x'' = -x + cos(2t): the kicks are evaluated at the drifted times, so the order survives a forcing in t."""
    f = lambda t, x, v: -x + torch.cos(2 * t)  # noqa: E731
    x0, v0 = torch.tensor([0.3], dtype=D), torch.tensor([0.0], dtype=D)
    ref_prob = ODEProblem(lambda t, u: torch.stack([u[1], -u[0] + torch.cos(2 * t)]), torch.cat([x0, v0]), (0, 3.0))
    ref = solve(ref_prob, Vern7(), rtol=1e-13, atol=1e-14, saveat=[3.0]).u[-1]
    prob = SecondOrderODEProblem(f, x0, v0, (0.0, 3.0))
    for alg, order, dts in ORDERS[:-1]:
        e1, e2 = (float((solve(prob, alg, dt=dt, saveat=[3.0]).u[-1] - ref).abs().max()) for dt in dts)
        assert abs(math.log(e1 / e2) / math.log(dts[0] / dts[1]) - order) <= 0.2, alg.name


def test_force_evaluations_per_step():
    """Velocity Verlet reuses the last force (one force per step); Yoshida6 needs seven; second-order velocity is
    free. nf counts velocities and forces (gradients of H, or calls of the acceleration), including those of the
    stability check (engine/symplectic_check.py: after the last step here, the forces at both ends of the step when
    the method's last substep is a drift: 2 for Leapfrog and Yoshida4, one for McAte5; after steps 1 and 2, the
    force at each one's end for those two, the force at step 1's end serving as step 2's start)."""
    prob = SecondOrderODEProblem(lambda t, x, v: -torch.sin(x), Q0, P0, (0.0, 1.0))
    # the force at u0 (computed once at the start) serves the first kick when it comes before any drift
    cases = ((VelocityVerlet(), 1, 11), (Leapfrog(), 1, 11 + 2 + 2), (Yoshida4(), 3, 31 + 2 + 2), (McAte5(), 6, 60 + 1),
             (Yoshida6(), 7, 71))
    for alg, forces, total in cases:
        sol = solve(prob, alg, dt=0.1, saveat=[1.0])
        assert sol.stats.nf == total, (alg.name, sol.stats.nf)
        assert alg.tableau.force_evaluations == forces


@pytest.mark.heavy
def test_energy_error_bounded_over_1e4_steps():
    """10^4 steps of the pendulum at dt = 0.5: the symplectic methods' energy error oscillates without growing
    (the last tenth of the run is no worse than the first), Tsit5 with the same fixed step drifts away."""
    q0, p0 = torch.tensor([1.5], dtype=D), torch.tensor([0.0], dtype=D)
    hamiltonian = HamiltonianProblem(pendulum, q0, p0, (0.0, 5000.0), separable=True)
    second_order = SecondOrderODEProblem(lambda t, x, v: -torch.sin(x), q0, p0, (0.0, 5000.0))
    h0 = float(pendulum(q0, p0))

    def energy_error(prob, alg):
        with torch.no_grad():
            sol = solve(prob, alg, dt=0.5, adaptive=False, saveat=0.5)
        assert sol.success and sol.u.shape[0] == 10_001
        err = (pendulum(sol.u[:, :1], sol.u[:, 1:]) - h0).abs()
        return float(err[:1000].max()), float(err[-1000:].max())

    # measured max |H - H0| in the first and the last 1000 steps: Verlet 4.9e-2 / 4.9e-2, Yoshida4 2.2e-3 / 2.2e-3,
    # Yoshida6 1.0e-4 / 1.0e-4; Tsit5 1.1e-3 / 1.1e-2
    for prob, alg, bound in ((hamiltonian, VelocityVerlet(), 0.1), (second_order, Yoshida4(), 0.01),
                             (second_order, Yoshida6(), 1e-3)):
        first, last = energy_error(prob, alg)
        assert last < bound and last <= 1.5 * first, (alg.name, first, last)
    first, last = energy_error(second_order, Tsit5())
    assert last > 5 * first and last > 0.005, (first, last)  # linear drift: 1.1e-3 -> 1.1e-2


def rigid_body(t, m):
    inertia = torch.tensor([2.0, 1.0, 2.0 / 3.0], dtype=m.dtype)
    return torch.linalg.cross(m, m / inertia)


def test_implicit_midpoint_conserves_quadratic_invariants_to_roundoff():
    """Euler's free rigid body on a plain ODEProblem: |m|^2 and the kinetic energy are quadratic invariants, kept
    by the implicit midpoint rule to round-off; an explicit method of the same order drifts."""
    m0 = torch.tensor([math.cos(1.1), 0.0, math.sin(1.1)], dtype=D)
    prob = ODEProblem(rigid_body, m0, (0.0, 50.0))
    inertia = torch.tensor([2.0, 1.0, 2.0 / 3.0], dtype=D)
    sol = solve(prob, ImplicitMidpoint(), dt=0.1)
    assert sol.success
    casimir = (sol.u**2).sum(-1)
    energy = (sol.u**2 / inertia).sum(-1)
    assert float((casimir / casimir[0] - 1).abs().max()) < 1e-13
    assert float((energy / energy[0] - 1).abs().max()) < 1e-13
    heun = solve(prob, ps.Heun(), dt=0.1)
    assert float(((heun.u**2).sum(-1) / casimir[0] - 1).abs().max()) > 1e-5
    assert sol.stats.nnonliniter >= 500 and sol.stats.nlu == 500


def test_implicit_midpoint_nonseparable_hamiltonian():
    """H = (1 + q^2)(1 + p^2) / 2 is not separable: ImplicitMidpoint keeps its energy error bounded (H is not
    quadratic, so O(h^2), without drift over 1000 steps); the explicit methods are refused."""
    H = lambda q, p: 0.5 * ((1 + q**2) * (1 + p**2)).sum(-1)  # noqa: E731
    prob = HamiltonianProblem(H, Q0, P0, (0.0, 100.0))
    sol = solve(prob, ImplicitMidpoint(), dt=0.1)
    energy = H(sol.u[:, :1], sol.u[:, 1:])
    err = (energy - energy[0]).abs()
    assert float(err.max()) < 1e-2 and float(err[-100:].max()) <= 1.5 * float(err[:100].max())
    with pytest.raises(InputError, match="separable=False"):
        solve(prob, Yoshida4(), dt=0.1)
    with pytest.raises(InputError, match="not separable"):
        HamiltonianProblem(H, Q0, P0, (0.0, 1.0), separable=True)


def test_implicit_midpoint_nonconvergence_is_a_retcode():
    """A step far too large for Newton: ConvergenceFailure with advice, not a silent number; throw=True raises."""
    prob = ODEProblem(lambda t, u: u**2, torch.tensor([1.0], dtype=D), (0.0, 2.0))
    sol = solve(prob, ImplicitMidpoint(max_newton_iters=3), dt=1.5)
    assert sol.retcode is ps.ReturnCode.ConvergenceFailure
    assert "smaller dt" in sol.message and sol.stats.nnonlinconvfail >= 1
    with pytest.raises(ps.SolverError):
        solve(prob, ImplicitMidpoint(max_newton_iters=3), dt=1.5, throw=True)


def test_general_solvers_match_yoshida6():
    """A HamiltonianProblem is an ODEProblem: Tsit5 and Rodas5P (adaptive, tight) agree with Yoshida6 at small dt."""
    prob = HamiltonianProblem(pendulum, Q0, P0, (0.0, 3.0), separable=True)
    sy = solve(prob, Yoshida6(), dt=0.01, saveat=[1.0, 3.0]).u
    for alg in (Tsit5(), Rodas5P()):
        s = solve(prob, alg, rtol=1e-10, atol=1e-12, saveat=[1.0, 3.0]).u
        torch.testing.assert_close(s, sy, rtol=0, atol=1e-8)


def test_batched_equals_one_by_one():
    """Leading dimensions are trajectories: one solve of a (3, 2) state (or batched=True) gives the numbers of three
    separate solves."""
    q0 = torch.tensor([[0.5, 0.1], [1.0, -0.2], [2.0, 0.3]], dtype=D)
    p0 = torch.tensor([[0.0, 0.1], [0.3, 0.0], [-0.1, 0.2]], dtype=D)
    for alg in (Yoshida4(), McAte5(), ImplicitMidpoint()):
        together = solve(HamiltonianProblem(pendulum, q0, p0, (0.0, 2.0), separable=True), alg, dt=0.1,
                         saveat=[1.0, 2.0]).u
        batched = solve(HamiltonianProblem(pendulum, q0, p0, (0.0, 2.0), separable=True, batched=True), alg, dt=0.1,
                        saveat=[1.0, 2.0]).u
        for i in range(3):
            one = solve(HamiltonianProblem(pendulum, q0[i], p0[i], (0.0, 2.0), separable=True), alg, dt=0.1,
                        saveat=[1.0, 2.0]).u
            torch.testing.assert_close(together[:, i], one, rtol=1e-13, atol=1e-14)
            torch.testing.assert_close(batched[:, i], one, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("alg,order", [(VelocityVerlet(), 2), (Yoshida6(), 4), (ImplicitMidpoint(), 2)])
def test_dense_output_order(alg, order):
    """sol(t) between steps is cubic Hermite from the vector field at the step ends: order min(p, 4)."""
    probe = torch.tensor([0.33, 1.71, 2.46], dtype=D)
    errs = []
    for dt in (0.2, 0.1):
        prob = HamiltonianProblem(oscillator, Q0, P0, (0.0, 3.0), separable=True)
        sol = solve(prob, alg, dt=dt)
        exact = torch.stack([exact_oscillator(float(t)) for t in probe])
        errs.append(float((sol(probe) - exact).abs().max()))
    assert abs(math.log2(errs[0] / errs[1]) - order) <= 0.3, errs


def test_saveat_inside_steps_equals_dense_output():
    prob = HamiltonianProblem(pendulum, Q0, P0, (0.0, 2.0), separable=True)
    dense = solve(prob, McAte5(), dt=0.2)
    saved = solve(prob, McAte5(), dt=0.2, saveat=[0.3, 1.1, 2.0])
    torch.testing.assert_close(saved.u, dense(torch.tensor([0.3, 1.1, 2.0], dtype=D)), rtol=1e-12, atol=1e-14)


def test_float32_in_float32_out():
    prob = HamiltonianProblem(pendulum, Q0.float(), P0.float(), (0.0, 1.0), separable=True)
    for alg in (Yoshida4(), ImplicitMidpoint()):
        sol = solve(prob, alg, dt=0.1, saveat=[1.0])
        assert sol.u.dtype == torch.float32 and sol.success
        assert float((sol.u[-1].double() - pendulum_reference(1.0)).abs().max()) < 1e-3


# ---------------------------------------------------------------------------------------------- tableau conditions
def _bch_order_two(tab) -> float:
    """Second-order condition of a splitting method: sum_{i<=j} a_i b_j - 1/2 (zero for order >= 2), with the
    drifts a applied before the kicks b of the same stage."""
    total = 0.0
    for j, b in enumerate(tab.kick):
        total += b * sum(tab.drift[: j + 1])
    return total - 0.5


@pytest.mark.parametrize("tab", SYMPLECTIC_TABLEAUS, ids=[t.name for t in SYMPLECTIC_TABLEAUS])
def test_tableau_conditions(tab):
    assert abs(sum(tab.drift) - 1) < 1e-14 and abs(sum(tab.kick) - 1) < 1e-14
    assert abs(_bch_order_two(tab)) < 1e-14
    subs = tab.substeps()
    palindrome = all(k1 == k2 and abs(c1 - c2) < 1e-14 for (k1, c1), (k2, c2) in zip(subs, reversed(subs),
                                                                                       strict=True))
    assert palindrome == tab.symmetric
    assert tab.reference and tab.btilde is None
    if tab.symmetric:
        assert tab.order % 2 == 0


def test_implicit_midpoint_tableau():
    t = IMPLICIT_MIDPOINT
    assert t.b == (1.0,) and t.a == ((0.5,),) and t.c == (0.5,)
    # symplecticity of an RK method: b_i a_ij + b_j a_ji - b_i b_j = 0
    assert t.b[0] * t.a[0][0] * 2 - t.b[0] ** 2 == 0.0


# ---------------------------------------------------------------------------------------------------- refusals
def test_input_errors():
    sep = HamiltonianProblem(pendulum, Q0, P0, (0.0, 1.0), separable=True)
    with pytest.raises(InputError, match="pass dt"):
        solve(sep, Yoshida4())
    with pytest.raises(InputError, match="constant step"):
        solve(sep, Yoshida4(), dt=0.1, adaptive=True)
    plain = ODEProblem(lambda t, u: -u, torch.ones(2, dtype=D), (0.0, 1.0))
    with pytest.raises(InputError, match="HamiltonianProblem"):
        solve(plain, VelocityVerlet(), dt=0.1)
    assert solve(plain, ImplicitMidpoint(), dt=0.1).success
    with pytest.raises(InputError, match="same shape"):
        HamiltonianProblem(pendulum, torch.ones(2, dtype=D), torch.ones(3, dtype=D), (0.0, 1.0))
    with pytest.raises(InputError, match="backend='torch'"):
        solve(sep, Yoshida4(), dt=0.1, backend="julia")
    with pytest.raises(InputError, match="backend='torch'"):
        solve(sep, Tsit5(), backend="julia")
    with pytest.raises(InputError, match="DiscreteAdjoint"):
        solve(sep.remake(u0=sep.u0.clone().requires_grad_()), Yoshida4(), dt=0.1, saveat=[1.0],
              sensealg=ps.InterpolatingAdjoint())
    with pytest.raises(InputError, match="tstops"):
        solve(sep, Yoshida4(), dt=0.1, tstops=[0.5])
    with pytest.raises(InputError, match="newton_tol"):
        ImplicitMidpoint(newton_tol=2.0)


def test_mcate5_refuses_a_nonquadratic_kinetic_energy():
    rel = HamiltonianProblem(lambda q, p: torch.sqrt(1 + p**2).sum(-1) + (1 - torch.cos(q)).sum(-1), Q0, P0,
                             (0.0, 1.0), separable=True)
    with pytest.raises(InputError, match="quadratic"):
        solve(rel, McAte5(), dt=0.1)
    assert solve(rel, Yoshida6(), dt=0.1).success


def test_velocity_dependent_acceleration():
    damped = SecondOrderODEProblem(lambda t, x, v: -x - 0.1 * v, Q0, P0, (0.0, 1.0))
    assert not damped.velocity_independent
    with pytest.raises(InputError, match="depend on the velocity"):
        solve(damped, VelocityVerlet(), dt=0.1)
    with pytest.raises(InputError, match="changes with v"):
        SecondOrderODEProblem(lambda t, x, v: -x - 0.1 * v, Q0, P0, (0.0, 1.0), velocity_independent=True)
    assert damped.remake(f=lambda t, x, v: -x).velocity_independent  # a new f is examined again
    assert not damped.remake(u0=damped.u0 * 2).velocity_independent
    with pytest.raises(InputError, match="does not take"):
        damped.remake(mass_matrix=None)
    sol = solve(damped, ImplicitMidpoint(), dt=0.01, saveat=[1.0])
    ref = solve(damped, DP5(), rtol=1e-10, atol=1e-12, saveat=[1.0])
    torch.testing.assert_close(sol.u, ref.u, rtol=0, atol=1e-4)


def test_problem_accessors_and_params():
    """H(q, p, params) takes the problem's p; velocity and force are dH/dp and -dH/dq."""
    k = torch.tensor(3.0, dtype=D)
    prob = HamiltonianProblem(lambda q, p, k: 0.5 * (p**2).sum(-1) + 0.5 * k * (q**2).sum(-1), Q0, P0, (0.0, 1.0),
                              k, separable=True)
    assert prob.n == 1 and prob.u0.shape == (2,)
    t = torch.tensor(0.0, dtype=D)
    torch.testing.assert_close(prob.velocity(t, Q0, P0), P0)
    torch.testing.assert_close(prob.force(t, Q0, P0), -3.0 * Q0)
    torch.testing.assert_close(prob.f(t, prob.u0, k), torch.cat([P0, -3.0 * Q0]))
    sol = solve(prob, Yoshida6(), dt=0.01, saveat=[1.0])
    w = math.sqrt(3.0)
    exact = torch.cat([Q0 * math.cos(w) + P0 / w * math.sin(w), -w * Q0 * math.sin(w) + P0 * math.cos(w)])
    torch.testing.assert_close(sol.u[-1], exact, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------ the vector field's graph
class _CountingH(torch.nn.Module):
    """A small network Hamiltonian ``|p|^2/2 + |q|^2/2 + 0.3 net(q, p)`` that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(D)
        self.calls = 0

    def forward(self, q, p):
        self.calls += 1
        return 0.5 * (p**2).sum(-1) + 0.5 * (q**2).sum(-1) + 0.3 * self.net(torch.cat([q, p], -1)).squeeze(-1)


def test_plain_solve_keeps_no_graph():
    """In grad mode, a solve whose state and H need no gradient builds no step graph (autograd's double backward
    is used only where something requires grad)."""
    prob = HamiltonianProblem(pendulum, Q0, P0, (0.0, 1.0), separable=True)
    assert not solve(prob, Yoshida4(), dt=0.1).u.requires_grad
    H = _CountingH()
    assert solve(HamiltonianProblem(H, Q0, P0, (0.0, 1.0)), ImplicitMidpoint(), dt=0.1).u.requires_grad


def test_checkpointed_forward_does_not_recompute():
    """Inside torch.utils.checkpoint a backward pass of the vector field would recompute the segment so far at every
    call: the checkpointed forward calls H about as often as the plain one (forward-mode gradients: one call per
    component), not a multiple growing with the segment length."""
    H = _CountingH()
    prob = HamiltonianProblem(H, Q0, P0, (0.0, 2.0))
    for alg in (Tsit5(), ImplicitMidpoint()):
        H.calls = 0
        solve(prob, alg, dt=0.05, adaptive=False, saveat=[0.5, 1.0, 1.5, 2.0])
        plain = H.calls
        H.calls = 0
        sol = solve(prob, alg, dt=0.05, adaptive=False, saveat=[0.5, 1.0, 1.5, 2.0],
                    sensealg=ps.DiscreteAdjoint(checkpoints=4))
        assert sol.u.requires_grad and H.calls <= 4 * plain, (alg.name, plain, H.calls)


def test_continuous_adjoints_of_a_general_method_match_the_discrete_gradient():
    """A HamiltonianProblem solved by Tsit5: the continuous adjoints (which differentiate the vector field, a
    gradient of H, once more) agree with backpropagation through the steps, for u0 and the network's parameters."""
    H = _CountingH()

    def gradient(sensealg):
        u0 = torch.cat([Q0, P0]).requires_grad_()
        prob = HamiltonianProblem(H, u0[:1], u0[1:], (0.0, 2.0))
        sol = solve(prob, Tsit5(), rtol=1e-10, atol=1e-10, saveat=[1.0, 2.0], sensealg=sensealg)
        params = [H.net[0].weight, H.net[0].bias, H.net[2].weight]
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(sol.u.pow(2).sum(), [u0, *params])])

    reference = gradient(ps.DiscreteAdjoint())
    for sensealg in (ps.InterpolatingAdjoint(), ps.QuadratureAdjoint(), ps.BacksolveAdjoint()):
        torch.testing.assert_close(gradient(sensealg), reference, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("alg", [VelocityVerlet(), Leapfrog(), Yoshida4(), Yoshida6(), ImplicitMidpoint()],
                         ids=lambda a: a.name)
def test_symmetric_methods_are_time_reversible(alg):
    """A symmetric method run forward to T and back (t1 < t0) with the same step returns to the initial state, to
    round-off; McAte5 (not symmetric) does not."""
    prob = HamiltonianProblem(pendulum, Q0, P0, (0.0, 3.0), separable=True)
    there = solve(prob, alg, dt=0.25, saveat=[3.0]).u[-1]
    back = solve(prob.remake(u0=there, tspan=(3.0, 0.0)), alg, dt=0.25, saveat=[0.0]).u[-1]
    torch.testing.assert_close(back, torch.cat([Q0, P0]), rtol=0, atol=1e-13)
    if alg.name == "Yoshida4":
        there = solve(prob, McAte5(), dt=0.25, saveat=[3.0]).u[-1]
        back = solve(prob.remake(u0=there, tspan=(3.0, 0.0)), McAte5(), dt=0.25, saveat=[0.0]).u[-1]
        assert float((back - torch.cat([Q0, P0])).abs().max()) > 1e-9


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("alg", [Yoshida4(), ImplicitMidpoint()], ids=lambda a: a.name)
def test_on_cuda_matches_cpu(alg):
    q0 = torch.tensor([[0.5, 0.1], [1.0, -0.2]], dtype=D)
    p0 = torch.tensor([[0.0, 0.1], [0.3, 0.0]], dtype=D)
    cpu = solve(HamiltonianProblem(pendulum, q0, p0, (0.0, 2.0), separable=True), alg, dt=0.1, saveat=[1.0, 2.0])
    gpu = solve(HamiltonianProblem(pendulum, q0.cuda(), p0.cuda(), (0.0, 2.0), separable=True), alg, dt=0.1,
                saveat=[1.0, 2.0])
    assert gpu.u.device.type == "cuda" and gpu.u.dtype == D
    torch.testing.assert_close(gpu.u.cpu(), cpu.u, rtol=1e-12, atol=1e-13)


def test_wrong_shapes_are_named():
    with pytest.raises(InputError, match="one energy per leading index"):
        HamiltonianProblem(lambda q, p: q**2 + p**2, torch.ones(3, 2, dtype=D), torch.ones(3, 2, dtype=D), (0, 1))
    with pytest.raises(InputError, match="shaped like x"):
        SecondOrderODEProblem(lambda t, x, v: x.sum(), torch.ones(2, dtype=D), torch.ones(2, dtype=D), (0, 1))
    with pytest.raises(InputError, match="must take 2 or 3"):
        HamiltonianProblem(lambda x: x.sum(), Q0, P0, (0, 1))


def test_from_parts_evaluates_each_part_alone():
    """HamiltonianProblem.from_parts(T, V, ...): the same solution as H = T + V, a velocity runs T only and a force V
    only; remake keeps the parts, and a new non-separable H given to remake is checked."""
    calls = {"T": 0, "V": 0}

    def T(p):
        calls["T"] += 1
        return 0.5 * (p**2).sum(-1)

    def V(q, k):
        calls["V"] += 1
        return k * (1.0 - torch.cos(q)).sum(-1)

    k = torch.tensor(1.0, dtype=D)
    parts = HamiltonianProblem.from_parts(T, V, Q0, P0, (0.0, 2.0), k)
    whole = HamiltonianProblem(pendulum, Q0, P0, (0.0, 2.0), separable=True)
    assert parts.separable
    a = solve(parts, Yoshida4(), dt=0.1, saveat=[1.0, 2.0])
    torch.testing.assert_close(a.u, solve(whole, Yoshida4(), dt=0.1, saveat=[1.0, 2.0]).u, rtol=1e-14, atol=1e-14)
    calls.update(T=0, V=0)
    a = solve(parts, Yoshida4(), dt=0.1, saveat=[2.0])  # no interpolation: 3 forces and 3 velocities per step
    # plus the stability check's after steps 16 and 20 (engine/symplectic_check.py): the force at both ends
    # (the method ends on a drift; the velocities at both ends are known); after steps 1 and 2: the force at
    # each one's end (step 1's end is step 2's start)
    assert calls["T"] + calls["V"] == a.stats.nf
    assert calls["V"] == 1 + 20 * 3 + 2 * 2 + 2 and calls["T"] == 1 + 20 * 3
    piece = parts.remake(u0=parts.u0 * 0.5, tspan=(0.0, 1.0))
    assert piece._parts is parts._parts and piece.separable
    with pytest.raises(InputError, match="not separable"):
        whole.remake(H=lambda q, p: 0.5 * ((1 + q**2) * (1 + p**2)).sum(-1))
