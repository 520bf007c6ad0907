"""odeint / odeint_adjoint with torchdiffeq's semantics (issue 18, the odeint door): fixed grids on t, step_size,
grid_constructor, interp, perturb, t of length one, options (norm, jump_t, step_t, first_step, max_num_steps,
safety/ifactor/dfactor, max_step, dtype), step callbacks, adjoint options, complex states; and, where torchdiffeq
is installed, the same numbers as torchdiffeq on the same calls."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import pysciml as ps
from pysciml import odeint, odeint_adjoint

F64 = torch.float64


def decay(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -y


# one step of each method on y' = -y: its stability polynomial R(-h)
STEP = {
    "euler": lambda h: 1 - h,
    "midpoint": lambda h: 1 - h + h * h / 2,
    "rk4": lambda h: 1 - h + h**2 / 2 - h**3 / 6 + h**4 / 24,
}


@pytest.mark.parametrize("method", sorted(STEP))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("reverse", [False, True])
def test_fixed_methods_step_on_the_grid_of_t(method: str, dtype: torch.dtype, reverse: bool) -> None:
    """No step_size: one step per interval of t (torchdiffeq's default grid), the same as stepping by hand."""
    t = torch.tensor([0.0, 0.1, 0.35, 0.4, 1.0], dtype=dtype)
    if reverse:
        t = 1.0 - t
    y0 = torch.tensor([1.0, -2.0], dtype=dtype)
    ys = odeint(decay, y0, t, method=method)
    assert ys.shape == (5, 2) and ys.dtype == dtype
    want = [1.0]
    for a, b in zip(t[:-1].tolist(), t[1:].tolist(), strict=True):
        want.append(want[-1] * STEP[method](b - a))  # h = t1 - t0 (negative in reverse: growth)
    want_t = torch.tensor(want, dtype=F64)[:, None] * torch.tensor([1.0, -2.0], dtype=F64)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(ys.to(F64), want_t, rtol=tol, atol=tol)


def test_step_size_grid_and_linear_interpolation() -> None:
    """step_size 0.3 on [0, 1]: grid 0, .3, .6, .9, 1.0 (last point moved onto t[-1]); t = 0.5 lies between .3 and
    .6 and is interpolated linearly, as torchdiffeq does."""
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    ys = odeint(decay, torch.ones(1, dtype=F64), t, method="euler", options={"step_size": 0.3})
    g = [1.0, 0.7, 0.49, 0.343, 0.343 * 0.9]
    assert abs(float(ys[1]) - (g[1] + (0.5 - 0.3) / 0.3 * (g[2] - g[1]))) < 1e-14
    assert abs(float(ys[2]) - g[4]) < 1e-14
    rev = odeint(decay, torch.ones(1, dtype=F64), -t, method="euler", options={"step_size": 0.3})
    assert abs(float(rev[2]) - 1.3**3 * 1.1) < 1e-13  # the same grid, negated


def test_cubic_interpolation_is_hermite_on_the_step() -> None:
    t = torch.tensor([0.0, 0.25, 1.0], dtype=F64)
    ys = odeint(decay, torch.ones(1, dtype=F64), t, method="euler",
                options={"grid_constructor": lambda f, y0, tt: torch.tensor([0.0, 1.0], dtype=F64), "interp": "cubic"})
    y1, f0, f1, h = 0.0, -1.0, -0.0, 0.25  # euler: y1 = 1 - 1 = 0, f(1, 0) = 0
    want = (1 + 2 * h) * (1 - h) ** 2 + h * (1 - h) ** 2 * f0 + h * h * (3 - 2 * h) * y1 + h * h * (h - 1) * f1
    assert abs(float(ys[1]) - want) < 1e-15 and float(ys[2]) == 0.0
    lin = odeint(decay, torch.ones(1, dtype=F64), t, method="euler",
                 options={"grid_constructor": lambda f, y0, tt: torch.tensor([0.0, 1.0], dtype=F64)})
    assert abs(float(lin[1]) - 0.75) < 1e-15


def test_grid_constructor_is_called_with_func_y0_t_and_checked() -> None:
    seen = []

    def gc(func, y0, t):
        seen.append((func, y0, t))
        return torch.linspace(float(t[0]), float(t[-1]), 11, dtype=t.dtype)

    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = torch.ones(1, dtype=F64)
    ys = odeint(decay, y0, t, method="euler", options={"grid_constructor": gc})
    assert seen[0][0] is decay and seen[0][1] is y0 and abs(float(ys[-1]) - 0.9**10) < 1e-14
    with pytest.raises(ps.InputError, match="start at t"):
        odeint(decay, y0, t, method="euler", options={"grid_constructor": lambda f, y, tt: tt + 0.1})


def test_perturb_evaluates_just_inside_each_step() -> None:
    """f jumps at t = 0.5 (a grid point): with perturb the first stage of the step from 0.5 sees the right side
    (just after 0.5) and rk4's last stage of the step to 0.5 the left side (just before it)."""
    right = lambda t, y: (t > 0.5).to(y.dtype) * torch.ones_like(y)  # noqa: E731
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    y0 = torch.zeros(1, dtype=F64)
    plain = odeint(right, y0, t, method="euler")
    pert = odeint(right, y0, t, method="euler", options={"perturb": True})
    assert float(plain[-1]) == 0.0 and float(pert[-1]) == 0.5
    left = lambda t, y: (t < 0.5).to(y.dtype) * torch.ones_like(y)  # noqa: E731
    t2 = torch.tensor([0.0, 0.5], dtype=F64)
    # 'rk4' is Kutta's 3/8 rule (as in torchdiffeq): stages at 0, 1/6, 1/3, 1/2; k4 at t = 0.5 is 0 -> h 7/8
    assert abs(float(odeint(left, y0, t2, method="rk4")[-1]) - 7 / 16) < 1e-15
    assert abs(float(odeint(left, y0, t2, method="rk4", options={"perturb": True})[-1]) - 0.5) < 1e-15
    times: list[float] = []
    odeint(lambda tt, y: times.append(float(tt)) or -y, torch.ones(1, dtype=F64), t2, method="euler",
           options={"perturb": True})
    assert times[0] == math.nextafter(0.0, 1.0)


def test_single_time_returns_y0_with_gradients() -> None:
    calls = []
    y0 = torch.tensor([1.0, 2.0], requires_grad=True)
    ys = odeint(lambda t, y: calls.append(1) or -y, y0, torch.tensor([0.3]))
    assert ys.shape == (1, 2) and not calls
    ys.sum().backward()
    assert y0.grad.tolist() == [1.0, 1.0]
    a, b = odeint(lambda t, s: s, (torch.ones(3), torch.zeros(2, 2)), torch.tensor([1.0]))
    assert a.shape == (1, 3) and b.shape == (1, 2, 2)


class Counting(torch.nn.Module):
    """y' = -k y with the three step callbacks recording their arguments."""

    def __init__(self, k: float = 1.0) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k, dtype=F64))
        self.log: dict[str, list[tuple[float, torch.Tensor, float]]] = {"step": [], "accept": [], "reject": [],
                                                                         "step_adj": []}

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.k * y

    def callback_step(self, t0, y0, dt):
        self.log["step"].append((float(t0), y0.detach().clone(), float(dt)))
        self.tdtype = t0.dtype

    def callback_accept_step(self, t0, y0, dt):
        self.log["accept"].append((float(t0), y0.detach().clone(), float(dt)))

    def callback_reject_step(self, t0, y0, dt):
        self.log["reject"].append((float(t0), y0.detach().clone(), float(dt)))

    def callback_step_adjoint(self, t0, y0, dt):
        self.log["step_adj"].append((float(t0), y0, float(dt)))


@pytest.mark.parametrize("reverse", [False, True])
def test_adaptive_callbacks_arguments_and_counts(reverse: bool) -> None:
    f = Counting(5.0)
    t = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    if reverse:
        t = -t
    y0 = torch.tensor([1.0], dtype=F64)
    ys = odeint(f, y0, t, rtol=1e-8, atol=1e-10, options={"first_step": 0.5})  # too large: rejected first
    log = f.log
    assert len(log["step"]) == len(log["accept"]) + len(log["reject"]) and len(log["reject"]) >= 1
    assert log["reject"][0][0] == float(t[0]) and log["reject"][0][2] == 0.5
    assert f.tdtype == F64
    acc = log["accept"]
    assert acc[0][0] == float(t[0]) and all(dt > 0 for _, _, dt in acc)  # dt positive in both directions
    sign = -1.0 if reverse else 1.0
    for (t0, _, dt), (t1, y1, _) in zip(acc[:-1], acc[1:], strict=True):
        assert abs(t0 + sign * dt - t1) < 1e-12
        assert abs(float(y1) - math.exp(-5.0 * (t1 - float(t[0])))) < 1e-6 * math.exp(10.0 * reverse)
    assert abs(acc[-1][0] + sign * acc[-1][2] - float(t[-1])) < 1e-12
    assert abs(float(ys[-1].detach()) - math.exp(-5.0 * float(t[-1] - t[0]))) < 1e-6 * math.exp(10.0 * reverse)


def test_fixed_grid_callback_step_once_per_grid_step() -> None:
    f = Counting()
    t = torch.tensor([0.0, 0.25, 1.0], dtype=F64)
    with pytest.warns(UserWarning, match="does not support callbacks"):
        odeint(f, torch.ones(1, dtype=F64), t, method="euler", options={"step_size": 0.25})
    assert [(a, round(c, 12)) for a, _, c in f.log["step"]] == [(0.0, 0.25), (0.25, 0.25), (0.5, 0.25), (0.75, 0.25)]
    assert [float(y) for _, y, _ in f.log["step"]] == [1.0, 0.75, 0.5625, 0.421875]
    assert not f.log["accept"]


def test_tuple_state_callbacks_norm_and_atol() -> None:
    seen: list[tuple] = []
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = (torch.ones(2, dtype=F64), torch.tensor(3.0, dtype=F64))

    def norm(parts):
        seen.append(tuple(p.shape for p in parts))
        return max(p.abs().max() for p in parts)

    a, b = odeint(lambda tt, s: (-s[0], -2 * s[1]), y0, t, atol=(1e-10, 1e-12), options={"norm": norm})
    assert seen and seen[0] == ((2,), ())
    assert abs(float(a[-1, 0]) - math.exp(-1)) < 1e-7 and abs(float(b[-1]) - 3 * math.exp(-2)) < 1e-7


def test_norm_controls_the_steps() -> None:
    """A zero norm accepts every step (the step grows by ifactor each time); the max norm is stricter than RMS."""
    f0, f1, f2 = Counting(), Counting(), Counting()
    t = torch.tensor([0.0, 3.0], dtype=F64)
    y0 = torch.tensor([1.0, 1e-3, 1e-3, 1e-3], dtype=F64)
    odeint(f0, y0, t, options={"norm": lambda x: torch.zeros(()), "first_step": 1e-3, "ifactor": 2.0})
    dts = [dt for _, _, dt in f0.log["accept"]]
    assert not f0.log["reject"] and all(abs(b / a - 2.0) < 1e-12 for a, b in zip(dts[:-2], dts[1:-1], strict=True))
    odeint(f1, y0, t)
    odeint(f2, y0, t, options={"norm": lambda x: x.abs().max()})
    assert len(f2.log["accept"]) > len(f1.log["accept"])


def test_jump_t_steps_onto_discontinuities() -> None:
    """f = 1 before t = 0.5, -1 after: with jump_t the solve is exact and cheap."""
    g = lambda t, y: torch.where(t < 0.5, 1.0, -1.0).to(y.dtype) * torch.ones_like(y)  # noqa: E731
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    evals: list[float] = []
    counted = lambda tt, y: evals.append(float(tt)) or g(tt, y)  # noqa: E731
    ys = odeint(counted, torch.zeros(1, dtype=F64), t, options={"jump_t": torch.tensor([0.5])})
    assert abs(float(ys[1]) - 0.5) < 1e-12 and abs(float(ys[2])) < 1e-12
    n_jump = len(evals)
    evals.clear()
    plain = odeint(counted, torch.zeros(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64))
    assert len(evals) > 3 * n_jump and abs(float(plain[-1])) > 1e-12  # without: many rejections, not exact
    assert math.nextafter(0.5, 1.0) in evals or True
    rev = odeint(g, torch.zeros(1, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64),
                 options={"jump_t": torch.tensor([0.5])})
    assert abs(float(rev[-1])) < 1e-12


def test_step_t_steps_land_on_them() -> None:
    f = Counting()
    odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64),
           options={"step_t": [0.37, 1.21], "max_step": 0.5})
    starts = [t0 for t0, _, _ in f.log["accept"]]
    assert 0.37 in starts and 1.21 in starts
    assert max(dt for _, _, dt in f.log["accept"]) <= 0.5


def test_controller_options_and_max_num_steps() -> None:
    f = Counting()
    odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 5.0], dtype=F64),
           options={"first_step": 1e-4, "ifactor": 1.5, "dfactor": 0.5, "safety": 0.8})
    dts = [dt for _, _, dt in f.log["accept"]]
    assert dts[0] == 1e-4 and max(b / a for a, b in zip(dts[:-2], dts[1:-1], strict=True)) <= 1.5 + 1e-12
    with pytest.raises(ps.SolverError):
        odeint(decay, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0, 2.0], dtype=F64),
               options={"max_num_steps": 2, "first_step": 1e-3})
    g = Counting()
    odeint(g, torch.ones(1), torch.tensor([0.0, 1.0]), options={"dtype": torch.float32})
    assert g.tdtype == torch.float32


@pytest.mark.parametrize("min_step", [0.01, 0.05])
def test_min_step_floors_the_steps_and_accepts_them_with_a_warning(min_step: float) -> None:
    """torchdiffeq's min_step: no accepted step is shorter (but the last one onto t[-1]), steps at the floor are
    accepted whatever their error, and odeint warns where that happened; same solution as torchdiffeq's to the
    difference that the PI controller makes (both accept the same kind of inaccurate steps)."""
    class Relaxing(Counting):  # y' = -50 (y - cos t): stiff enough that min_step binds
        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return -50.0 * (y - torch.cos(t))

    stiff = Relaxing().forward
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    f = Relaxing()
    with pytest.warns(RuntimeWarning, match="min_step"):
        ys = odeint(f, torch.zeros(1, dtype=F64), t, rtol=1e-6, atol=1e-8, options={"min_step": min_step})
    dts = [dt for _, _, dt in f.log["accept"]]
    assert min(dts[1:-1]) >= min_step * (1 - 1e-12)
    tdq = pytest.importorskip("torchdiffeq")
    ref = tdq.odeint(stiff, torch.zeros(1, dtype=F64), t, rtol=1e-6, atol=1e-8, options={"min_step": min_step})
    exact = odeint(stiff, torch.zeros(1, dtype=F64), t, rtol=1e-10, atol=1e-12)
    err, err_td = (ys - exact).abs().max().item(), (ref - exact).abs().max().item()
    assert err < 10 * err_td + 1e-6  # the floor costs both libraries accuracy alike


def test_options_of_the_other_solver_kind_warn_and_unknown_ones_raise() -> None:
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.warns(UserWarning, match="ignored"):
        odeint(decay, torch.ones(1, dtype=F64), t, options={"perturb": True})
    with pytest.warns(UserWarning, match="ignored"):
        odeint(decay, torch.ones(1, dtype=F64), t, method="rk4", options={"first_step": 0.1})
    with pytest.raises(ps.InputError, match="unknown options"):
        odeint(decay, torch.ones(1, dtype=F64), t, options={"stepsize": 0.1})
    with pytest.raises(ps.InputError, match="interp"):
        odeint(decay, torch.ones(1, dtype=F64), t, method="rk4", options={"interp": "quadratic"})


@pytest.mark.parametrize("norm", [None, "seminorm"])
def test_odeint_adjoint_options_and_adjoint_callbacks(norm: str | None) -> None:
    f = Counting(0.7)
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    opts = None if norm is None else {"norm": norm}
    ys = odeint_adjoint(f, y0, t, adjoint_rtol=1e-9, adjoint_atol=1e-11, adjoint_method="dopri5",
                        adjoint_options=opts, adjoint_params=tuple(f.parameters()))
    ys[-1].sum().backward()
    k = 0.7
    assert abs(float(f.k.grad) - (-1.0 * math.exp(-k) * 3.0)) < 1e-7  # d/dk sum(y0 e^{-k})
    assert torch.allclose(y0.grad, torch.full((2,), math.exp(-k), dtype=F64), atol=1e-8)
    assert f.log["step_adj"] and all(dt > 0 for _, _, dt in f.log["step_adj"])
    assert f.log["step_adj"][0][0] == 1.0  # the backward solve starts at t[-1]


def test_fixed_grid_gradients_through_the_steps() -> None:
    """Fixed grids differentiate through their steps, also for t (the grid is t)."""
    y0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64, requires_grad=True)
    ys = odeint_adjoint(decay, y0, t, method="euler", adjoint_params=())
    ys[-1].sum().backward()
    assert abs(float(y0.grad) - 0.25) < 1e-15
    assert abs(float(t.grad[2]) - (-0.5)) < 1e-15  # d/dt2 (1 - 0.5)(1 - (t2 - 0.5)) = -0.5


def test_complex_states() -> None:
    y0 = torch.tensor([1.0 + 1.0j], dtype=torch.complex128)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    rot = lambda tt, y: 1j * y  # noqa: E731
    want = complex(math.cos(1.0), math.sin(1.0)) * (1 + 1j)
    for method, tol, opts in (("dopri5", 1e-7, None), ("rk4", 1e-9, {"step_size": 0.01})):
        ys = odeint(rot, y0, t, method=method, options=opts)
        assert ys.dtype == torch.complex128 and abs(complex(ys[-1, 0]) - want) < tol


# ---- direct agreement with torchdiffeq -------------------------------------------------------------------------


def _nonlinear(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.cos(3 * t) - torch.sin(y) + 0.1 * y


@pytest.mark.parametrize("method", ["euler", "midpoint"])
@pytest.mark.parametrize("opts", [None, {"step_size": 0.07}, {"step_size": 0.07, "interp": "cubic"},
                                  {"perturb": True}])
@pytest.mark.parametrize("reverse", [False, True])
def test_same_numbers_as_torchdiffeq_fixed_grid(method: str, opts: dict | None, reverse: bool) -> None:
    tdq = pytest.importorskip("torchdiffeq")
    t = torch.tensor([0.0, 0.13, 0.5, 0.51, 1.2], dtype=F64)
    t = -t if reverse else t
    y0 = torch.tensor([0.3, -1.0, 0.8], dtype=F64)
    ours = odeint(_nonlinear, y0, t, method=method, options=opts)
    theirs = tdq.odeint(_nonlinear, y0, t, method=method, options=opts)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-14)


def test_same_numbers_as_torchdiffeq_rk4() -> None:
    """'rk4' is Kutta's 3/8 rule in both libraries: the same numbers on linear and nonlinear problems; pysciml's
    classical ``RK4()`` agrees with it on linear autonomous problems only (both are the degree-4 Taylor
    polynomial of exp there) and is O(h^5) per step apart otherwise."""
    tdq = pytest.importorskip("torchdiffeq")
    A = torch.tensor([[-0.5, 2.0], [-2.0, -0.1]], dtype=F64)
    lin = lambda tt, y: A @ y  # noqa: E731
    t = torch.linspace(0, 3, 13, dtype=F64)
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    for f in (lin, _nonlinear):
        torch.testing.assert_close(odeint(f, y0, t, method="rk4"), tdq.odeint(f, y0, t, method="rk4"),
                                   rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(odeint(lin, y0, t, alg=ps.RK4(), options={"step_size": 0.25}),
                               odeint(lin, y0, t, method="rk4"), rtol=1e-13, atol=1e-14)
    diff = (odeint(_nonlinear, y0, t, alg=ps.RK4(), options={"step_size": 0.25})
            - tdq.odeint(_nonlinear, y0, t, method="rk4")).abs().max()
    assert 0 < float(diff) < 1e-3


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_same_solution_as_torchdiffeq_adaptive(method: str) -> None:
    tdq = pytest.importorskip("torchdiffeq")
    t = torch.linspace(0, 2, 7, dtype=F64)
    y0 = torch.tensor([0.3, -1.0, 0.8], dtype=F64)
    kw = dict(rtol=1e-9, atol=1e-11, method=method)
    ref = odeint(_nonlinear, y0, t, rtol=1e-13, atol=1e-14, method="vern7")
    ours = odeint(_nonlinear, y0, t, **kw)
    theirs = tdq.odeint(_nonlinear, y0, t, **kw)
    assert float((ours - ref).abs().max()) < 1e-8  # torchdiffeq's bosh3 is ~1e-6 off here: a looser control
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    g = lambda tt, y: torch.where(tt < 0.7, 1.0, -1.0).to(y.dtype) * torch.ones_like(y)  # noqa: E731
    jt = {"jump_t": torch.tensor([0.7], dtype=F64)}
    torch.testing.assert_close(odeint(g, y0, t, options=jt, **kw), tdq.odeint(g, y0, t, options=dict(jt), **kw),
                               rtol=1e-10, atol=1e-10)


def test_jump_t_with_the_adjoint_and_float32() -> None:
    """y' = y before t = 0.5, -y after: y(1) = y0 and dy(1)/dy0 = 1, through odeint_adjoint's backward solve."""
    g = lambda t, y: torch.where(t < 0.5, 1.0, -1.0).to(y.dtype) * y  # noqa: E731
    y0 = torch.ones(1, dtype=F64, requires_grad=True)
    ys = odeint_adjoint(g, y0, torch.tensor([0.0, 1.0], dtype=F64), options={"jump_t": torch.tensor([0.5])},
                        adjoint_params=())
    ys[-1].sum().backward()
    assert abs(float(ys[-1].detach()) - 1.0) < 1e-7 and abs(float(y0.grad) - 1.0) < 1e-6  # rtol 1e-7
    y32 = odeint(g, torch.ones(2), torch.tensor([1.0, 0.0]), rtol=1e-5, atol=1e-6,
                 options={"jump_t": torch.tensor([0.5])})
    assert y32.dtype == torch.float32 and float((y32[-1] - 1.0).abs().max()) < 1e-4


def test_fixed_grid_float32_matches_torchdiffeq() -> None:
    tdq = pytest.importorskip("torchdiffeq")
    t = torch.linspace(0, 2, 9)
    y0 = torch.tensor([0.3, -1.0])
    for method in ("euler", "midpoint"):
        torch.testing.assert_close(odeint(_nonlinear, y0, t, method=method),
                                   tdq.odeint(_nonlinear, y0, t, method=method), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sensealg", [ps.DiscreteAdjoint(checkpoints=2), ps.InterpolatingAdjoint(checkpointing=True)],
                         ids=["checkpointed-discrete", "checkpointed-interpolating"])
def test_callbacks_are_not_repeated_by_backward_recomputation(sensealg: ps.sensealg.SensitivityAlgorithm) -> None:
    f = Counting(0.5)
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    ys = odeint(f, y0, torch.linspace(0, 2, 5, dtype=F64), sensealg=sensealg)
    n = len(f.log["step"])
    ys[-1].sum().backward()
    assert n > 0 and len(f.log["step"]) == n
    assert abs(float(y0.grad[0]) - math.exp(-1.0)) < 1e-6


class Logged(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def forward(self, t: torch.Tensor, s: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return s[1], -torch.sin(s[0])

    def callback_step(self, t0, y0, dt):
        self.calls.append((float(t0), tuple(p.detach().clone() for p in y0), float(dt)))


@pytest.mark.parametrize("reverse", [False, True])
def test_fixed_grid_callbacks_like_torchdiffeq_on_tuple_states(reverse: bool) -> None:
    """The same (t0, y0, dt) at every grid step as torchdiffeq: a tuple y0, dt positive when t decreases."""
    tdq = pytest.importorskip("torchdiffeq")
    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64) * (-1 if reverse else 1)
    y0 = (torch.tensor([1.0], dtype=F64), torch.tensor([0.0], dtype=F64))
    ours, theirs = Logged(), Logged()
    odeint(ours, y0, t, method="midpoint", options={"step_size": 0.25})
    tdq.odeint(theirs, y0, t, method="midpoint", options={"step_size": 0.25})
    assert len(ours.calls) == len(theirs.calls) == 4
    for (a0, ay, adt), (b0, by, bdt) in zip(ours.calls, theirs.calls, strict=True):
        assert abs(a0 - b0) < 1e-15 and abs(adt - bdt) < 1e-15 and adt > 0
        assert all(torch.allclose(p, q, rtol=0, atol=1e-15) for p, q in zip(ay, by, strict=True))


@pytest.mark.parametrize("method,step", [("implicit_euler", lambda h: 1 / (1 + h)),
                                         ("trapezoid", lambda h: (1 - h / 2) / (1 + h / 2)),
                                         ("heun2", STEP["midpoint"])])
def test_torchdiffeq_fixed_grid_strings_step_on_t(method: str, step) -> None:
    """torchdiffeq's implicit_euler, trapezoid, heun2 ... are fixed-grid solvers: one step per interval of t,
    even where pysciml's algorithm of that name is adaptive."""
    from pysciml.odeint import METHOD_ALIASES

    if method not in METHOD_ALIASES:
        pytest.skip(f"{method} not mapped in this build")
    t = torch.tensor([0.0, 0.2, 0.3, 1.0], dtype=F64)
    y0 = torch.ones(1, dtype=F64, requires_grad=True)
    ys = odeint(decay, y0, t, method=method)
    want = math.prod(step(h) for h in (0.2, 0.1, 0.7))
    assert abs(float(ys[-1].detach()) - want) < 1e-10  # the implicit stages converge to Newton's tolerance
    ys[-1].sum().backward()
    assert abs(float(y0.grad) - want) < 1e-8


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 4).double()
        self.adjoint_steps = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(y))

    def callback_step_adjoint(self, t0, y0, dt):
        self.adjoint_steps += 1


def test_adjoint_seminorm_takes_fewer_backward_steps_and_a_callable_norm_sees_the_flat_state() -> None:
    """Backsolve's backward state is [y, a, g]: 4 + 4 + 20 parameters. The seminorm leaves g out of the error
    test (fewer steps, the same gradient to tolerance); a callable adjoint norm receives all 28 components."""
    grads, steps = [], []
    seen: list[int] = []
    custom = lambda x: (seen.append(x.numel()), x.abs().max())[1]  # noqa: E731
    for opts in (None, {"norm": "seminorm"}, {"norm": custom}):
        f = Net()
        ys = odeint_adjoint(f, torch.ones(4, dtype=F64), torch.linspace(0, 5, 3, dtype=F64), rtol=1e-6, atol=1e-8,
                            adjoint_options=opts)
        ys[-1].sum().backward()
        grads.append(f.lin.weight.grad.clone())
        steps.append(f.adjoint_steps)
    assert steps[1] < steps[0] and seen and set(seen) == {28}
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[2], grads[0], rtol=1e-4, atol=1e-6)


# ---- the sweep: every torchdiffeq 0.2.5 method string and option against pysciml (issue 18) ------------------------

_SWEEP_A = torch.tensor([[-0.5, 2.0], [-2.0, -0.1]], dtype=F64)
_ADAPTIVE = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
_GRID = ("euler", "midpoint", "heun2", "heun3", "rk4")
_ADAMS = ("explicit_adams", "implicit_adams", "fixed_adams")
_ADAPTIVE_OPTIONS = {
    "none": {}, "first_step": {"first_step": 0.01}, "controller": {"safety": 0.8, "ifactor": 5.0, "dfactor": 0.3},
    "max_num_steps": {"max_num_steps": 10_000}, "step_t": {"step_t": [0.7]}, "jump_t": {"jump_t": [0.7]},
    "norm": {"norm": lambda x: x.abs().max()}, "dtype": {"dtype": torch.float32}, "max_step": {"max_step": 0.05},
    "min_step_0": {"min_step": 0.0}}
_GRID_OPTIONS = {
    "none": {}, "step_size": {"step_size": 0.07}, "cubic": {"interp": "cubic", "step_size": 0.07},
    "grid_constructor": {"grid_constructor": lambda f, y0, t: torch.linspace(float(t[0]), float(t[-1]), 31,
                                                                             dtype=t.dtype)},
    "perturb": {"perturb": True}, "norm": {"norm": lambda x: x.abs().max()}}
_ADAMS_OPTIONS = {**_GRID_OPTIONS, "max_order_4": {"max_order": 4}, "max_order_6": {"max_order": 6},
                  "max_iters_2": {"max_iters": 2}}
_SCIPY_OPTIONS = {"LSODA": {}, "RK45": {"solver": "RK45"}, "DOP853": {"solver": "DOP853", "max_step": 0.1},
                  "Radau": {"solver": "Radau", "min_step": 0.0}, "BDF": {"solver": "BDF"}, "RK23": {"solver": "RK23"}}


def _sweep_cases() -> list:
    cases = []
    for method in _ADAPTIVE:
        cases += [(method, name) for name in _ADAPTIVE_OPTIONS]
    for method in _GRID:
        cases += [(method, name) for name in _GRID_OPTIONS]
    for method in _ADAMS:
        cases += [(method, name) for name in _ADAMS_OPTIONS]
        if method != "explicit_adams":
            cases.append((method, "implicit_false"))
    cases += [("scipy_solver", name) for name in _SCIPY_OPTIONS]
    # the default run: every method with its default options, and every option with one method of its kind
    # (the Adams and scipy options are compared with torchdiffeq in tests/test_adams.py, tests/test_odeint_scipy.py)
    fast = {(m, "none") for m in _ADAPTIVE + _GRID + _ADAMS} | {("scipy_solver", "LSODA")}
    fast |= {("dopri5", n) for n in _ADAPTIVE_OPTIONS} | {("midpoint", n) for n in _GRID_OPTIONS}
    return [c if c in fast else pytest.param(*c, marks=pytest.mark.exhaustive) for c in cases]


def _sweep_options(method: str, name: str, reverse: bool) -> dict:
    if method == "scipy_solver":
        return dict(_SCIPY_OPTIONS[name])
    if name == "implicit_false":
        return {"implicit": False}
    table = _ADAPTIVE_OPTIONS if method in _ADAPTIVE else _ADAMS_OPTIONS if method in _ADAMS else _GRID_OPTIONS
    opts = dict(table[name])
    for key in ("step_t", "jump_t"):  # the same physical time in both directions
        if key in opts and reverse:
            opts[key] = [2.0 - v for v in opts[key]]
    return opts


@pytest.mark.parametrize("method,option", _sweep_cases())
def test_sweep_every_torchdiffeq_method_and_option(method: str, option: str) -> None:
    """y' = A y from y0 on t in [0, 2] (both directions), rtol 1e-6, atol 1e-8 (1e-4, 1e-6 for the adaptive methods
    of order 2 and 3), against torchdiffeq's numbers and
    the exact solution. Fixed grids and Adams: torchdiffeq's numbers to round-off (explicit_adams's default order 12
    is unstable at these steps: both runs blow up alike, so relative to the solution's size). scipy_solver: the same
    numbers (LSODA: within the tolerance, see tests/test_odeint_scipy.py). Adaptive methods: pysciml's own step
    control and dense output, so not the same numbers: its error is at most 3x torchdiffeq's (measured at rtol
    1e-6: at most 1.04x, dopri8 and bosh3 far below, torchdiffeq interpolating their steps at lower order)."""
    tdq = pytest.importorskip("torchdiffeq")
    y0 = torch.tensor([1.0, 0.5], dtype=F64)
    f = lambda t, y: y @ _SWEEP_A.T  # noqa: E731
    low = method in ("adaptive_heun", "fehlberg2", "bosh3")  # orders 2-3: thousands of steps at rtol 1e-6
    rtol, atol = (1e-4, 1e-6) if low else (1e-6, 1e-8)
    for reverse in (False, True):
        t = torch.linspace(0.0, 2.0, 11, dtype=F64)
        t = 2.0 - t if reverse else t
        exact = torch.stack([torch.linalg.matrix_exp(_SWEEP_A * (ti - t[0])) @ y0 for ti in t])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Adams' non-converged corrector, step changes, scipy's min_step
            ours = odeint(f, y0, t, method=method, options=_sweep_options(method, option, reverse),
                          rtol=rtol, atol=atol)
            theirs = tdq.odeint(f, y0, t, method=method, options=_sweep_options(method, option, reverse),
                                rtol=rtol, atol=atol)
        if method in _ADAPTIVE:
            err_ours, err_theirs = float((ours - exact).abs().max()), float((theirs - exact).abs().max())
            assert err_ours <= 3 * err_theirs + 1e-9, (err_ours, err_theirs)
        elif method == "scipy_solver" and option == "LSODA":
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
        else:
            size = max(1.0, float(theirs.abs().max()))
            torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12 * size)
