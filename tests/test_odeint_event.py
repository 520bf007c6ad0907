"""odeint_event and odeint(..., event_fn=...) with torchdiffeq 0.2.5's semantics (issue 18, part "events"): event
times and states against analytic values and against torchdiffeq on the same calls, gradients of the event time
through odeint and odeint_adjoint, reverse time, tuple states, several event functions, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import pysciml as ps
from pysciml import InputError, SolverError

td = pytest.importorskip("torchdiffeq")

F64 = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-11}


class Decay(torch.nn.Module):
    """y' = -k y: from y0, y[0] reaches c at t_e = ln(y0[0] / c) / k."""

    def __init__(self) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(1.3, dtype=F64))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.k * y


def level(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y[0] - 0.4


def run(lib, interface: str, reverse: bool = False) -> tuple[float, list[float], list[float], float]:
    """(event_t, state at it, d(event_t + sum(state))/dy0, .../dk) through ``lib``'s odeint_event."""
    f = Decay()
    y0 = torch.tensor([2.0, 1.0], dtype=F64, requires_grad=True)
    if reverse:  # y' = k y backwards in time: the same decay
        f.k.data = -f.k.data
    event_t, sol = lib.odeint_event(f, y0, torch.tensor(0.0, dtype=F64), event_fn=level, reverse_time=reverse,
                                    odeint_interface=getattr(lib, interface), **TOL)
    assert sol.shape == (2, 2)
    (event_t + sol[-1].sum()).backward()
    return float(event_t.detach()), sol[-1].tolist(), y0.grad.tolist(), float(f.k.grad)


@pytest.mark.parametrize("interface,reverse", [
    ("odeint", False), ("odeint_adjoint", True),
    pytest.param("odeint_adjoint", False, marks=pytest.mark.exhaustive),  # the default run's budget
    pytest.param("odeint", True, marks=pytest.mark.exhaustive)])
def test_odeint_event_matches_torchdiffeq_and_analytic(interface: str, reverse: bool) -> None:
    """t_e = ln(5)/1.3 (negated in reverse time); its gradient and the final state's against torchdiffeq (same
    call) and the analytic values: d t_e / d y0[0] = 1/(2k), d t_e / dk = -ln 5 / k^2 (signs flip in reverse)."""
    te, state, gy, gk = run(ps, interface, reverse)
    te_td, state_td, gy_td, gk_td = run(td, interface, reverse)
    s = -1.0 if reverse else 1.0
    assert te == pytest.approx(s * math.log(5) / 1.3, abs=1e-8)
    assert te == pytest.approx(te_td, abs=1e-8)
    assert state == pytest.approx(state_td, abs=1e-8)
    assert gy == pytest.approx(gy_td, abs=1e-6)
    assert gk == pytest.approx(gk_td, abs=1e-6)
    k = 1.3
    f = Decay()
    y0 = torch.tensor([2.0, 1.0], dtype=F64, requires_grad=True)
    if reverse:
        f.k.data = -f.k.data
    event_t, _ = ps.odeint_event(f, y0, torch.tensor(0.0, dtype=F64), event_fn=level, reverse_time=reverse,
                                 odeint_interface=getattr(ps, interface), **TOL)
    g_y, g_k = torch.autograd.grad(event_t, (y0, f.k))
    assert float(g_y[0]) == pytest.approx(s / (2 * k), abs=1e-6) and abs(float(g_y[1])) < 1e-8
    assert float(g_k) == pytest.approx(-math.log(5) / k**2, abs=1e-6)  # k is -1.3 in reverse: t_e = ln 5 / k


def test_odeint_event_mode_returns_states_at_t0_and_the_event() -> None:
    """odeint(..., event_fn=) as torchdiffeq: (event_t, solution) with solution (2, *y0.shape) at [t0, event_t];
    the states' gradient is at a fixed event time (no gradient through event_t), like torchdiffeq's."""
    out = {}
    for name, lib in (("ps", ps), ("td", td)):
        f = Decay()
        y0 = torch.tensor([2.0, 1.0], dtype=F64, requires_grad=True)
        event_t, sol = lib.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=F64), event_fn=level, **TOL)
        assert not event_t.requires_grad and sol.shape == (2, 2)
        g = torch.autograd.grad(sol[-1, 1], y0)[0]
        out[name] = (float(event_t), sol.detach(), g)
    assert out["ps"][0] == pytest.approx(out["td"][0], abs=1e-8)
    assert torch.allclose(out["ps"][1], out["td"][1], atol=1e-8)
    assert torch.allclose(out["ps"][2], out["td"][2], atol=1e-7)


def test_tuple_state_and_several_event_functions() -> None:
    """A tuple state (x, v) of a ball thrown up at 5 from height 1; event_fn returns two functions (x - 2, x): the
    first zero of either ends it (x = 2 on the way up, t = (5 - sqrt(25 - 2 g))/g); same as torchdiffeq."""
    grav = 9.81

    def f(t, state):
        x, v = state
        return v, torch.full_like(v, -grav)

    def ev(t, state):
        return torch.cat((state[0] - 2.0, state[0]))

    results = []
    for lib in (ps, td):
        x0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
        v0 = torch.tensor([5.0], dtype=F64, requires_grad=True)
        event_t, (xs, vs) = lib.odeint_event(f, (x0, v0), torch.tensor(0.0, dtype=F64), event_fn=ev, **TOL)
        gx, gv = torch.autograd.grad(event_t, (x0, v0))
        results.append((float(event_t.detach()), float(xs[-1].detach()), float(gx), float(gv)))
    te = (5 - math.sqrt(25 - 2 * grav)) / grav
    assert results[0][0] == pytest.approx(te, abs=1e-8)
    assert results[0][1] == pytest.approx(2.0, abs=1e-8)
    # x(t) = x0 + v0 t - g t^2 / 2 = 2: dt/dx0 = -1/v(t_e), dt/dv0 = -t_e/v(t_e)
    v_e = 5 - grav * te
    assert results[0][2] == pytest.approx(-1 / v_e, rel=1e-6)
    assert results[0][3] == pytest.approx(-te / v_e, rel=1e-6)
    assert results[0] == pytest.approx(results[1], rel=1e-6, abs=1e-8)


def test_bad_input() -> None:
    y0 = torch.tensor([1.0], dtype=F64)
    with pytest.raises(InputError, match="two times"):
        ps.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0, 2.0], dtype=F64), event_fn=lambda t, y: y[0] - 0.5)
    with pytest.raises(InputError, match="step_size"):  # as torchdiffeq: a fixed-grid event search needs it
        ps.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64), event_fn=lambda t, y: y[0] - 0.5,
                  method="rk4")
    with pytest.raises(InputError, match="event_fn must be callable"):
        ps.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64), event_fn=3)
    with pytest.raises(InputError, match="t0 must be one time"):
        ps.odeint_event(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), event_fn=lambda t, y: y[0] - 0.5)
    with pytest.raises(SolverError, match="no event"):  # decays towards 0, never reaches -1
        ps.odeint_event(lambda t, y: -y, y0, 0.0, event_fn=lambda t, y: y[0] + 1.0, options={"max_num_steps": 200})


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4", "explicit_adams", "implicit_adams"])
@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("t1", [1.0, -1.0])
def test_fixed_grid_event_matches_torchdiffeq(method: str, interp: str, t1: float) -> None:
    """Fixed-grid methods with step_size: steps until the sign changes, bisection on the step's linear or cubic
    interpolant, the state there carrying the steps' gradients (torchdiffeq's FixedGridODESolver event mode)."""

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack((y[1], -y[0]))

    out = []
    for lib in (ps, td):
        y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
        event_t, ys = lib.odeint(f, y0, torch.tensor([0.0, t1], dtype=F64), event_fn=lambda t, y: y[0] - 0.5,
                                 method=method, options={"step_size": 0.05, "interp": interp})
        (grad,) = torch.autograd.grad(ys[-1].sum(), y0)
        out.append((event_t, ys.detach(), grad))
    (te, ys, grad), (te_td, ys_td, grad_td) = out
    assert float(te) == pytest.approx(float(te_td), abs=1e-12)
    assert math.copysign(1.0, float(te)) == t1 and abs(float(te)) == pytest.approx(math.pi / 3, abs=2e-2)
    torch.testing.assert_close(ys, ys_td, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, grad_td, rtol=0, atol=1e-12)


def test_fixed_grid_odeint_event_gradient() -> None:
    """odeint_event with rk4 on a grid: the event time's gradient (implicit function theorem) equals torchdiffeq's
    and, to the method's accuracy, the analytic one: cos(t_e) y0[0] + sin(t_e) y0[1] = 1/2."""
    f = lambda t, y: torch.stack((y[1], -y[0]))  # noqa: E731
    grads = []
    for lib in (ps, td):
        y0 = torch.tensor([1.0, 0.0], dtype=F64, requires_grad=True)
        event_t, _ = lib.odeint_event(f, y0, torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0] - 0.5,
                                      method="rk4", options={"step_size": 0.05})
        grads.append((float(event_t), torch.autograd.grad(event_t, y0)[0]))
    te = math.pi / 3
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=0, atol=1e-10)
    # d t_e / d y0 = -(cos t_e, sin t_e) / (d/dt x) with d/dt x = -sin t_e at y0 = (1, 0)
    expected = torch.tensor([math.cos(te), math.sin(te)], dtype=F64) / math.sin(te)
    torch.testing.assert_close(grads[0][1], expected, rtol=1e-4, atol=1e-6)
