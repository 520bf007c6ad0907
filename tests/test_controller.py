"""The PI step-size controller with exact numbers: gains, clamps, the stored previous error, the rule after a
rejection, and the step sequence a scripted error sequence produces through the loop (all three loop paths)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from helpers import LOOP_PATHS, Script, StubStepper, loop_options, run_loop

import pysciml as ps
from pysciml.engine.controller import PIController

REL = 1e-12


def close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


# --- the rule on its own ------------------------------------------------------------------------------------------


def test_defaults_are_ordinarydiffeq_s() -> None:
    c = PIController()
    assert (c.qmin, c.qmax, c.gamma, c.qoldinit) == (0.2, 10.0, 0.9, 1e-4)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 7])
def test_default_gains(order: int) -> None:
    b1, b2 = PIController().gains(order)
    assert close(b1, 0.7 / order) and close(b2, 0.4 / order)


def test_explicit_gains_override_either_default() -> None:
    assert PIController(beta1=0.3, beta2=0.0).gains(5) == (0.3, 0.0)
    assert PIController(beta1=0.3).gains(2) == (0.3, 0.2)
    assert PIController(beta2=0.05).gains(2) == (0.35, 0.05)


def test_accepted_step_follows_the_pi_formula() -> None:
    # order 2: beta1 = 0.35, beta2 = 0.2; dt_new = dt gamma qold^beta2 / eest^beta1, inside [qmin dt, qmax dt]
    dt, qold = PIController().propose_scalar(0.1, 0.5, 0.25, True, 2)
    assert close(dt, 0.1 * 0.9 * 0.25**0.2 / 0.5**0.35)
    assert qold == 0.5
    # a larger previous error allows a larger step (the integral term), a larger current error a smaller one
    assert PIController().propose_scalar(0.1, 0.5, 0.9, True, 2)[0] > dt
    assert PIController().propose_scalar(0.1, 0.8, 0.25, True, 2)[0] < dt


def test_growth_is_clamped_by_qmax() -> None:
    for eest in (0.0, 1e-12, 1e-6):
        dt, _ = PIController().propose_scalar(0.1, eest, 1.0, True, 1)
        assert close(dt, 1.0)  # qmax = 10
        dt, _ = PIController(qmax=3.0).propose_scalar(0.1, eest, 1.0, True, 1)
        assert close(dt, 0.3)
    # just inside the clamp: 0.9 / eest^0.7 = 9.5
    eest = (0.9 / 9.5) ** (1 / 0.7)
    assert close(PIController().propose_scalar(0.1, eest, 1.0, True, 1)[0], 0.95)


def test_shrink_of_an_accepted_step_is_clamped_by_qmin() -> None:
    # eest = 1 with the initial qold = 1e-4: 0.9 * 1e-4^0.4 / 1 = 0.0226 is below qmin
    dt, qold = PIController().propose_scalar(0.1, 1.0, 1e-4, True, 1)
    assert close(dt, 0.02) and qold == 1.0
    dt, _ = PIController(qmin=0.5).propose_scalar(0.1, 1.0, 1e-4, True, 1)
    assert close(dt, 0.05)


def test_stored_error_is_floored_at_qoldinit_and_kept_on_rejection() -> None:
    c = PIController()
    assert c.propose_scalar(0.1, 0.3, 0.7, True, 3)[1] == 0.3
    assert c.propose_scalar(0.1, 1e-9, 0.7, True, 3)[1] == 1e-4
    assert c.propose_scalar(0.1, 0.0, 0.7, True, 3)[1] == 1e-4
    assert PIController(qoldinit=1e-2).propose_scalar(0.1, 1e-3, 0.7, True, 3)[1] == 1e-2
    assert c.propose_scalar(0.1, 5.0, 0.7, False, 3)[1] == 0.7  # rejected: qold unchanged


def test_rejected_step_has_no_integral_term_and_only_shrinks() -> None:
    c = PIController()
    for qold in (1e-4, 0.3, 1.0):
        dt, _ = c.propose_scalar(0.1, 2.0, qold, False, 2)
        assert close(dt, 0.1 * 0.9 / 2.0**0.35)  # qold plays no part
    for eest in (1.0000001, 1.5, 3.0, 100.0):
        assert c.propose_scalar(0.1, eest, 1.0, False, 5)[0] < 0.1
    # gamma = 1: the shrink factor is exactly eest^-beta1, below 1 for any eest > 1
    assert close(PIController(gamma=1.0).propose_scalar(0.1, 1.5, 1.0, False, 1)[0], 0.1 / 1.5**0.7)
    # the shrink is at most 1/qmin per rejection, NaN/Inf estimates included
    for eest in (1e6, 1e12, math.inf):
        assert close(c.propose_scalar(0.1, eest, 1.0, False, 1)[0], 0.02)
        assert close(PIController(qmin=0.5).propose_scalar(0.1, eest, 1.0, False, 1)[0], 0.05)


CONTROLLERS = [PIController(), PIController(qmin=0.5, qmax=3.0, gamma=0.8),
               PIController(beta1=0.3, beta2=0.0, qoldinit=1e-2), PIController(beta2=0.08, qmax=1.5)]


@pytest.mark.parametrize("ctrl", CONTROLLERS, ids=str)
def test_propose_and_propose_scalar_agree(ctrl: PIController) -> None:
    cases = list(itertools.product([0.0, 1e-10, 0.01, 0.5, 1.0, 1.7, 40.0, 1e12, math.inf],
                                   [1e-4, 0.01, 0.6, 1.0], [True, False], [1, 3, 5]))
    cases = [c for c in cases if c[2] or c[0] > 1.0]  # the loop accepts exactly the estimates <= 1
    for order in (1, 3, 5):
        sub = [c for c in cases if c[3] == order]
        dt = torch.tensor([0.1 * (1 + i % 3) * (-1) ** i for i in range(len(sub))], dtype=torch.float64)
        eest = torch.tensor([c[0] for c in sub], dtype=torch.float64)
        qold = torch.tensor([c[1] for c in sub], dtype=torch.float64)
        acc = torch.tensor([c[2] for c in sub])
        dt_new, qold_new = ctrl.propose(dt, eest, qold, acc, order)
        for i, (e, q, a, _) in enumerate(sub):
            ds, qs = ctrl.propose_scalar(float(dt[i]), e, q, a, order)
            assert close(float(dt_new[i]), ds), (e, q, a, order)
            assert float(qold_new[i]) == qs, (e, q, a, order)


@pytest.mark.parametrize("kw", [dict(qmax=1.0), dict(qmax=0.5), dict(qmin=0.0), dict(qmin=1.5), dict(gamma=1.2),
                                dict(gamma=0.0), dict(beta1=-0.1), dict(beta2=-0.1), dict(qoldinit=0.0),
                                dict(qmax=math.inf), dict(beta1=math.nan)], ids=str)
def test_parameters_that_break_the_rule_are_refused(kw: dict) -> None:
    with pytest.raises(ps.InputError):
        PIController(**kw)


# --- the exact step sequence of a scripted error through the loop ----------------------------------------------------

# every branch: accepted shrinking on the tiny initial qold (qmin clamp), a PI step, a rejection, growth clamped at
# qmax, eest = 0, a huge estimate (qmin clamp on rejection), eest = 1 exactly (accepted), just above 1 (rejected)
SCRIPT = (0.5, 0.5, 2.0, 1e-6, 0.0, 1e12, 1.0, 1.0000001, 0.25)


def reference_attempts(errors: tuple[float, ...], dt: float, t1: float, beta1: float, beta2: float, qmin: float,
                       qmax: float, gamma: float, qoldinit: float) -> list[tuple[float, float, bool]]:
    """The PI rule written out: each attempt's (t, dt, accepted) from t = 0 until a step ends on t1."""
    t, qold, out = 0.0, qoldinit, []
    for k in range(10_000):
        e = errors[min(k, len(errors) - 1)]
        last = t1 - t <= dt * (1 + 1e-12)
        step = t1 - t if last else dt
        accepted = e <= 1.0
        out.append((t, step, accepted))
        if accepted:
            if last:
                return out
            t += step
            grow = gamma * qold**beta2 / e**beta1 if e > 0 else math.inf
            dt = step * min(max(grow, qmin), qmax)
            qold = max(e, qoldinit)
        else:
            dt = step * max(gamma / e**beta1, qmin)
    raise AssertionError("the reference never reached t1")


SEQUENCES = {  # (controller, stub order, its gains written out)
    "default-p1": (PIController(), 1, (0.7, 0.4, 0.2, 10.0, 0.9, 1e-4)),
    "default-p4": (PIController(), 4, (0.175, 0.1, 0.2, 10.0, 0.9, 1e-4)),
    "I-controller": (PIController(beta1=0.3, beta2=0.0, qmin=0.5, qmax=3.0, gamma=0.8, qoldinit=1e-2), 3,
                     (0.3, 0.0, 0.5, 3.0, 0.8, 1e-2)),
}


@pytest.mark.parametrize("path", LOOP_PATHS)
@pytest.mark.parametrize("name", SEQUENCES)
def test_scripted_errors_give_the_exact_step_sequence(name: str, path: str) -> None:
    ctrl, order, gains = SEQUENCES[name]
    expected = reference_attempts(SCRIPT, 0.05, 1.0, *gains)
    stub = StubStepper(Script(errors=SCRIPT), order=order)
    res, stats = run_loop(stub, path, loop_options(dt=0.05, controller=ctrl))
    bsz = 3 if path == "batch3" else 1
    assert res.status == [ps.ReturnCode.Success] * bsz
    assert len(stub.log) == stats.nloop == len(expected)
    n_acc = sum(a for _, _, a in expected)
    assert (stats.naccept, stats.nreject) == (bsz * n_acc, bsz * (len(expected) - n_acc))
    for b in range(bsz):
        got = stub.attempts(b)
        for k, ((t, dt, _), (tg, dtg)) in enumerate(zip(expected, got, strict=True)):
            assert close(tg, t) and close(dtg, dt), (k, (t, dt), (tg, dtg))
    assert res.t[-1].item() == 1.0
    accepted_ends = [t + dt for t, dt, a in expected if a]
    assert torch.allclose(res.t[1:], torch.tensor(accepted_ends, dtype=torch.float64), rtol=REL, atol=0)


def test_scripted_sequence_by_hand() -> None:
    """The first attempts of the default order-1 sequence, by hand (beta1 = 0.7, beta2 = 0.4)."""
    stub = StubStepper(Script(errors=SCRIPT), order=1)
    run_loop(stub, "scalar", loop_options(dt=0.05))
    dts = [dt for _, dt in stub.attempts()]
    d1 = 0.05 * 0.2  # 0.9 * 1e-4^0.4 / 0.5^0.7 = 0.036 < qmin
    d2 = d1 * 0.9 * 0.5**0.4 / 0.5**0.7
    d3 = d2 * 0.9 / 2.0**0.7  # rejected
    d4 = d3 * 10.0  # eest = 1e-6: growth clamped at qmax
    d5 = d4 * 10.0  # eest = 0
    d6 = d5 * 0.2  # eest = 1e12, rejected: qmin
    expected = [0.05, d1, d2, d3, d4, d5, d6]
    assert all(close(a, b) for a, b in zip(dts[:7], expected, strict=True)), (dts[:7], expected)
    assert close(stub.attempts()[6][0], 0.05 + d1 + d3 + d4)  # the time of the attempt after the rejection
