"""The fixed-step check of the explicit symplectic methods (engine/symplectic_check.py): a step beyond the method's
stability limit for oscillations ends the solve as ``Unstable`` instead of returning a huge finite state as
``Success``; stable runs, even just below the limit and on nonlinear problems, are not flagged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pysciml as ps
from pysciml.engine.symplectic_check import oscillation_stability_limit
from pysciml.engine.tableaus.symplectic import LEAPFROG, MCATE5, VELOCITY_VERLET, YOSHIDA4, YOSHIDA6

D = torch.float64
METHODS = (ps.VelocityVerlet(), ps.Leapfrog(), ps.Yoshida4(), ps.Yoshida6(), ps.McAte5())


def _oscillator(omega: float, t1: float = 200.0) -> ps.HamiltonianProblem:
    def H(q, p):
        return 0.5 * (p**2).sum(-1) + 0.5 * omega**2 * (q**2).sum(-1)

    return ps.HamiltonianProblem(H, torch.tensor([1.0], dtype=D), torch.tensor([0.0], dtype=D), (0.0, t1),
                                 separable=True)


def test_limits_from_the_tableaus():
    """Verlet's limit is 2 (trace 2 - x^2 of its one-step map); Yoshida4's is the known 1.5734 (Forest-Ruth);
    every limit is the first point where |trace| exceeds 2, the trace being within 2 just below it."""
    assert oscillation_stability_limit(VELOCITY_VERLET) == pytest.approx(2.0, abs=1e-6)
    assert oscillation_stability_limit(LEAPFROG) == pytest.approx(2.0, abs=1e-6)
    assert oscillation_stability_limit(YOSHIDA4) == pytest.approx(1.5734, abs=1e-4)
    for tab in (VELOCITY_VERLET, YOSHIDA4, YOSHIDA6, MCATE5):
        x = oscillation_stability_limit(tab)
        m_lo, m_hi = np.eye(2), np.eye(2)
        for a, b in zip(tab.drift, tab.kick, strict=True):
            for m, y in ((m_lo, 0.999 * x), (m_hi, 1.001 * x)):
                m[:] = np.array([[1.0, 0.0], [-b * y * y, 1.0]]) @ np.array([[1.0, a], [0.0, 1.0]]) @ m
        assert abs(np.trace(m_lo)) <= 2.0 and abs(np.trace(m_hi)) > 2.0, tab.name


def _trace(tab, x: float) -> float:
    m = np.eye(2)
    for a, b in zip(tab.drift, tab.kick, strict=True):
        m = np.array([[1.0, 0.0], [-b * x * x, 1.0]]) @ np.array([[1.0, a], [0.0, 1.0]]) @ m
    return float(np.trace(m))


@pytest.mark.parametrize("alg", METHODS, ids=lambda a: a.name)
def test_beyond_the_limit_is_unstable_below_it_success(alg):
    """On u'' = -omega^2 u: the most unstable dt * omega within 10% above the limit (the state grows
    geometrically; Yoshida6's unstable window is narrow, 2.27-2.33, stable again after it) ends as Unstable with
    the message naming dt * omega; 0.95 x the limit runs to the end, the state bounded by its modified-energy
    ellipse."""
    limit = oscillation_stability_limit(alg.tableau)
    grid = np.linspace(1.001 * limit, 1.1 * limit, 200)
    worst = float(grid[np.argmax([abs(_trace(alg.tableau, float(x))) for x in grid])])
    assert abs(_trace(alg.tableau, worst)) > 2.005
    for omega in (1.0, 10.0):
        bad = ps.solve(_oscillator(omega), alg, dt=worst / omega)
        assert str(bad.retcode) == "Unstable" and "dt * omega" in bad.message, (alg.name, bad.message)
        good = ps.solve(_oscillator(omega), alg, dt=0.95 * limit / omega)
        assert str(good.retcode) == "Success", (alg.name, good.message)
        assert float(good.u[-1].abs().max()) < 20.0


@pytest.mark.parametrize("steps", [7, 10, 20])
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled loop"])
def test_a_short_rollout_beyond_the_limit_is_unstable(steps, compile):
    """The first check ran after step 16 and only recorded the increment, so a rollout of fewer than 37 steps was
    never confirmed: Verlet at dt * omega = 3 (the state x 6.9 per step) returned Success with 8.8e16 after 20
    steps. Checking after steps 1 and 2 confirms it after PERSIST + 1 = 7 steps (six growing increments in a row;
    a 6-step rollout is still not flagged). The whole-loop program (saving at fixed times) does the same."""
    prob = _oscillator(3.0, t1=float(steps))
    kw = {"compile": True, "saveat": [float(steps)]} if compile else {}
    sol = ps.solve(prob, ps.VelocityVerlet(), dt=1.0, **kw)
    assert str(sol.retcode) == "Unstable" and "dt * omega" in sol.message, sol.message
    assert "at t=7 " in sol.message, sol.message


@pytest.mark.parametrize("alg", METHODS, ids=lambda a: a.name)
def test_nonlinear_stable_runs_are_not_flagged(alg):
    """A batch of pendulums up to amplitude 3 (local omega^2 = cos q <= 1) at 0.97 x the limit for 2,000 time
    units: no trajectory is stopped, and the small-amplitude ones keep their energy to 1e-2. (Large amplitudes at
    such steps can gain energy by numerical resonance and end up rotating: inaccurate, not unstable, and not what
    this check is for.)"""
    limit = oscillation_stability_limit(alg.tableau)
    q0 = torch.tensor([[0.1], [1.0], [2.5], [3.0]], dtype=D)

    def H(q, p):
        return 0.5 * (p**2).sum(-1) + (1.0 - torch.cos(q)).sum(-1)

    prob = ps.HamiltonianProblem(H, q0, torch.zeros_like(q0), (0.0, 2000.0), separable=True, batched=True)
    sol = ps.solve(prob, alg, dt=0.97 * limit, saveat=[2000.0])
    assert all(str(r) == "Success" for r in sol.retcodes), alg.name
    energy = H(sol.u[-1][:, :1], sol.u[-1][:, 1:])  # u: (times, batch, 2)
    assert bool(torch.isfinite(sol.u).all())
    assert float((energy - H(q0, torch.zeros_like(q0)))[0].abs()) < 1e-2


def test_second_order_problem_and_batch_members_fail_alone():
    """x'' = -omega_b^2 x for a batch with omega = 1 and omega = 30 at dt = 0.1: only the stiff member (dt * omega
    = 3 > 2 for Verlet) ends as Unstable; the other reaches t1 and matches cos(t) to O(dt^2)."""
    omega = torch.tensor([[1.0], [30.0]], dtype=D)
    prob = ps.SecondOrderODEProblem(lambda t, x, v: -(omega**2) * x, torch.ones(2, 1, dtype=D),
                                    torch.zeros(2, 1, dtype=D), (0.0, 20.0), batched=True)
    sol = ps.solve(prob, ps.VelocityVerlet(), dt=0.1, saveat=[20.0])
    assert [str(r) for r in sol.retcodes] == ["Success", "Unstable"]
    assert "dt * omega ~ 3" in sol.message
    assert abs(float(sol.u[-1, 0, 0]) - math.cos(20.0)) < 0.05
