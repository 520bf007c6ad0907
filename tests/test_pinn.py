"""PINN toolkit: conditions (exact residuals, sampling), hard constraints, the PINN model, and the Adam + L-BFGS
trainer (1-D Poisson to relative L2 < 1e-3, L-BFGS after Adam, Neumann and periodic problems, checkpoints,
early stopping, history)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pysciml.errors import InputError
from pysciml.pinn.conditions import (
    DirichletBC,
    HardConstraint,
    InitialCondition,
    NeumannBC,
    PeriodicBC,
    PointData,
)
from pysciml.pinn.derivatives import laplacian, partial
from pysciml.pinn.geometry import Ball, Box, Interval
from pysciml.pinn.pinn import PINN
from pysciml.pinn.training import train

DT = torch.float64
PI = math.pi
ENDS = torch.tensor([[0.0], [1.0]], dtype=DT)


def mlp(d_in: int = 1, width: int = 20, d_out: int = 1, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, d_out)).to(DT)


def poisson_residual(x, u):
    """-u'' = pi^2 sin(pi x): exact solution sin(pi x) with u(0) = u(1) = 0."""
    return -laplacian(u, x) - PI**2 * torch.sin(PI * x[:, 0])


def grid(n: int = 201) -> torch.Tensor:
    return torch.linspace(0, 1, n, dtype=DT)[:, None]


# ---- the headline test ---------------------------------------------------------------------------------------------
def test_poisson_1d_adam_then_lbfgs_reaches_1e_3():
    pinn = PINN(mlp(), poisson_residual, Interval(0, 1), [DirichletBC(points=ENDS)], n_interior=64)
    result = train(pinn, adam_iters=500, lr=1e-2, lbfgs_iters=300, log_every=10)
    err = pinn.relative_l2(lambda x: torch.sin(PI * x[:, 0]), grid())
    assert err < 1e-3, result.message  # measured 6e-6
    adam = [h for h in result.history if h["phase"] == "adam"]
    lbfgs = [h for h in result.history if h["phase"] == "lbfgs"]
    assert adam and lbfgs
    # L-BFGS lowers the loss after Adam, by orders of magnitude on this smooth problem
    assert min(h["loss"] for h in lbfgs) < 1e-2 * adam[-1]["loss"]
    times = [h["time"] for h in result.history]
    assert all(b >= a for a, b in zip(times, times[1:], strict=False)) and times[-1] <= result.seconds
    assert [h["iter"] for h in result.history] == sorted(h["iter"] for h in result.history)
    assert set(result.history[0]) >= {"iter", "phase", "time", "loss", "residual", "dirichlet",
                                      "weight/residual", "weight/dirichlet"}
    assert result.status in ("completed", "converged") and result.best_loss <= result.final_loss


# ---- hard constraints ----------------------------------------------------------------------------------------------
def test_hard_constraint_is_exact_on_the_boundary():
    box = Box([0.0, 0.0], [1.0, 2.0])

    def g(x):
        return x[:, 0] ** 2 + torch.sin(x[:, 1])

    def dist(x):
        return x[:, 0] * (1 - x[:, 0]) * x[:, 1] * (2 - x[:, 1])

    hard = HardConstraint.dirichlet(g, dist)
    pinn = PINN(mlp(d_in=2), lambda x, u: laplacian(u, x), box, [hard], n_interior=16)
    xb = box.sample_boundary(400, seed=3, dtype=DT)
    u = pinn.predict(xb)
    assert u.shape == (400, 1)
    assert float((u[:, 0] - g(xb)).abs().max()) == 0.0  # exact: l(x) = 0 there, not just small
    xi = box.sample_interior(50, seed=4, dtype=DT)
    assert float((pinn.predict(xi)[:, 0] - g(xi)).abs().min()) > 0  # the network acts inside
    assert pinn.term_names == ("residual",)


@pytest.mark.heavy
def test_hard_constrained_poisson_trains_without_boundary_terms():
    hard = HardConstraint.dirichlet(0.0, lambda x: x[:, 0] * (1 - x[:, 0]))
    pinn = PINN(mlp(width=16), poisson_residual, Interval(0, 1), [hard], n_interior=48)
    result = train(pinn, adam_iters=200, lr=1e-2, lbfgs_iters=150, log_every=50)
    assert set(pinn.losses()) == {"residual"}
    assert pinn.relative_l2(lambda x: torch.sin(PI * x[:, 0]), grid()) < 1e-3, result.message
    assert float(pinn.predict(ENDS).abs().max()) == 0.0


def test_general_transform_and_bad_transform():
    hard = HardConstraint(lambda x, n: 2.0 * n)
    net = mlp()
    pinn = PINN(net, poisson_residual, Interval(0, 1), [hard, DirichletBC(points=ENDS)], n_interior=8)
    torch.testing.assert_close(pinn.predict(ENDS), 2.0 * net(ENDS).detach())
    with pytest.raises(InputError, match="at most one HardConstraint"):
        PINN(mlp(), poisson_residual, Interval(0, 1), [hard, hard], n_interior=8)
    with pytest.raises(InputError, match="transform"):
        HardConstraint("not callable")  # type: ignore[arg-type]


# ---- condition residuals on known functions (exact) -------------------------------------------------------------
def test_neumann_residual_is_exact_on_a_known_function():
    box = Box([0.0, 0.0], [1.0, 1.0])
    cond = NeumannBC(None, value=lambda x: _normal_derivative(x))
    cond.bind(box)
    x = cond.sample(300, method="uniform", seed=1, dtype=DT)
    assert bool(box.on_boundary(x).all())
    r = cond.residual(x, lambda y: (y[:, 0] ** 2 + 3 * y[:, 1] + y[:, 0] * y[:, 1])[:, None])
    assert float(r.abs().max()) < 1e-13


def _normal_derivative(x):
    """du/dn of u = x0^2 + 3 x1 + x0 x1 on the unit square's faces (outward normals +-e0, +-e1)."""
    gx, gy = 2 * x[:, 0] + x[:, 1], 3 + x[:, 0]
    tol = 1e-12
    return torch.where(x[:, 0] < tol, -gx, torch.where(x[:, 0] > 1 - tol, gx,
                                                      torch.where(x[:, 1] < tol, -gy, gy)))


def test_neumann_on_a_disk_uses_outward_normals():
    disk = Ball([0.0, 0.0], 2.0)
    cond = NeumannBC(None, value=lambda x: 2 * x.square().sum(1) / 2.0)  # u = |x|^2: du/dn = 2 r = 4 at r = 2
    cond.bind(disk)
    x = cond.sample(100, method="uniform", seed=0, dtype=DT)
    r = cond.residual(x, lambda y: y.square().sum(1))
    assert float(r.abs().max()) < 1e-12


def test_periodic_residual_is_exact_on_known_functions():
    box = Box([0.0, -1.0], [2.0, 1.0])
    cond = PeriodicBC(0, derivative_order=1)
    cond.bind(box)
    x = cond.sample(50, method="uniform", seed=0, dtype=DT)
    assert bool((x[:, 0] == 0).all()) and bool(box.contains(x).all())
    periodic = cond.residual(x, lambda y: torch.cos(PI * y[:, 0]) + y[:, 1] ** 3)
    assert periodic.shape == (50, 2) and float(periodic.abs().max()) < 1e-13
    drift = cond.residual(x, lambda y: y[:, 0] + y[:, 1])  # u(2, y) - u(0, y) = 2, same slope
    torch.testing.assert_close(drift, torch.tensor([-2.0, 0.0], dtype=DT).expand(50, 2))


def test_initial_condition_points_and_residuals():
    box = Box([0.0, 0.5], [1.0, 2.0])  # (x, t), t0 = 0.5
    ic = InitialCondition(lambda x: torch.sin(PI * x[:, 0]))
    ic.bind(box)
    x = ic.sample(40, method="uniform", seed=0, dtype=DT)
    assert bool((x[:, 1] == 0.5).all()) and ic.t0 == 0.5
    u = lambda y: torch.sin(PI * y[:, 0]) * torch.exp(-(y[:, 1] - 0.5))  # noqa: E731
    assert float(ic.residual(x, u).abs().max()) < 1e-14
    vel = InitialCondition(lambda x: -torch.sin(PI * x[:, 0]), derivative_order=1)
    vel.bind(box)
    assert float(vel.residual(x, u).abs().max()) < 1e-14


def test_dirichlet_on_a_selected_face_and_on_a_subdomain():
    box = Box([0.0, 0.0], [1.0, 1.0])
    left = DirichletBC(lambda x: x[:, 0] < 1e-12, value=1.0, n=30)
    left.bind(box)
    x = left.sample(5, method="uniform", seed=0, dtype=DT)
    assert x.shape == (30, 2) and bool((x[:, 0] == 0).all())
    hole = Ball([0.5, 0.5], 0.2)
    inner = DirichletBC(hole, value=0.0)
    inner.bind(box - hole)
    xh = inner.sample(20, method="uniform", seed=0, dtype=DT)
    torch.testing.assert_close(torch.linalg.vector_norm(xh - 0.5, dim=1), torch.full((20,), 0.2, dtype=DT))
    never = DirichletBC(lambda x: x[:, 0] == 0.5, value=0.0)
    never.bind(box)
    with pytest.raises(InputError, match="mask"):
        never.sample(5, method="uniform", seed=0, dtype=DT)


# ---- training with Neumann and periodic conditions ---------------------------------------------------------------
def test_neumann_problem_trains_to_the_right_solution():
    # -u'' = (pi/2)^2 sin(pi x / 2), u(0) = 0, u'(1) = 0: u = sin(pi x / 2)
    k = PI / 2

    def residual(x, u):
        return -laplacian(u, x) - k**2 * torch.sin(k * x[:, 0])

    conds = [DirichletBC(points=ENDS[:1]), NeumannBC(lambda x: x[:, 0] > 0.5, value=0.0, n=1)]
    pinn = PINN(mlp(width=16), residual, Interval(0, 1), conds, n_interior=48)
    assert torch.equal(pinn.points["neumann"], ENDS[1:])
    result = train(pinn, adam_iters=300, lr=1e-2, lbfgs_iters=300, log_every=50)
    err = pinn.relative_l2(lambda x: torch.sin(k * x[:, 0]), grid())
    assert err < 1e-4, (err, result.message)  # measured 5e-6


@pytest.mark.heavy
@pytest.mark.slow
def test_periodic_condition_holds_after_training():
    # -u'' = 4 pi^2 sin(2 pi x) on [0, 1], C^1-periodic, pinned by u(1/4) = 1: u = sin(2 pi x)
    def residual(x, u):
        return -laplacian(u, x) - 4 * PI**2 * torch.sin(2 * PI * x[:, 0])

    conds = [PeriodicBC(0, derivative_order=1, n=1), PointData(torch.tensor([[0.25]], dtype=DT),
                                                                torch.tensor([1.0], dtype=DT))]
    pinn = PINN(mlp(width=24), residual, Interval(0, 1), conds, n_interior=64)
    result = train(pinn, adam_iters=400, lr=1e-2, lbfgs_iters=300, log_every=50)
    gap = pinn.predict(ENDS)
    assert abs(float(gap[0, 0] - gap[1, 0])) < 5e-4, result.message  # measured 4e-5
    slope = partial(pinn, ENDS, (0,)).detach()
    assert abs(float(slope[0] - slope[1])) < 5e-3  # measured 6e-4
    assert pinn.relative_l2(lambda x: torch.sin(2 * PI * x[:, 0]), grid()) < 2e-3  # measured 2.5e-4


# ---- the trainer's machinery ---------------------------------------------------------------------------------------
def _small_pinn(seed: int = 0, **kwargs) -> PINN:
    return PINN(mlp(width=8, seed=seed), poisson_residual, Interval(0, 1), [DirichletBC(points=ENDS)],
                n_interior=16, **kwargs)


def _flat(pinn: PINN) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in pinn.parameters()])


@pytest.mark.parametrize("stop_at", [3, 8])  # inside the Adam phase, inside the L-BFGS phase
def test_checkpoint_resume_gives_the_same_iterates(tmp_path, stop_at):
    plan = {"adam_iters": 6, "lr": 1e-2, "lbfgs_iters": 5}
    a = _small_pinn()
    full = train(a, **plan)
    b = _small_pinn()
    train(b, **plan, checkpoint=tmp_path / "ckpt_{iteration}.pt", checkpoint_every=1)
    assert torch.equal(_flat(a), _flat(b))
    c = _small_pinn(seed=5)  # another start: everything must come from the checkpoint
    resumed = train(c, **plan, resume=tmp_path / f"ckpt_{stop_at}.pt")
    assert torch.equal(_flat(c), _flat(a))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    times = [h["time"] for h in resumed.history]
    assert all(y >= x for x, y in zip(times, times[1:], strict=False))
    assert resumed.iterations == full.iterations == 11


def test_resume_rejects_foreign_files(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(InputError, match="not a checkpoint"):
        train(_small_pinn(), adam_iters=1, resume=bad)
    with pytest.raises(InputError, match="no checkpoint"):
        train(_small_pinn(), adam_iters=1, resume=tmp_path / "missing.pt")


def test_early_stopping_on_a_stalled_loss():
    pinn = _small_pinn()
    result = train(pinn, adam_iters=200, lr=1e-12, patience=5, min_delta=0.01)
    assert result.status == "early_stopped" and result.iterations == 6, result.message
    # with an L-BFGS phase, patience ends Adam and L-BFGS takes over
    result = train(_small_pinn(), adam_iters=200, lr=1e-12, lbfgs_iters=20, patience=5, min_delta=0.01,
                   log_every=1)
    phases = [h["phase"] for h in result.history]
    assert phases.count("adam") == 6 and "lbfgs" in phases
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_non_finite_loss_stops_with_finite_parameters():
    calls = {"n": 0}

    def residual(x, u):
        calls["n"] += 1
        r = poisson_residual(x, u)
        return r * math.nan if calls["n"] > 4 else r

    pinn = PINN(mlp(width=8), residual, Interval(0, 1), [DirichletBC(points=ENDS)], n_interior=8)
    result = train(pinn, adam_iters=20, lr=1e-2)
    assert result.status == "non_finite" and "iteration 4" in result.message
    assert bool(torch.isfinite(_flat(pinn)).all())


def test_resampling_refinement_and_progress_bar(capsys):
    pinn = _small_pinn()
    before = pinn.points["residual"].clone()
    result = train(pinn, adam_iters=6, lr=1e-3, resample_every=2, refine_every=5, refine=(64, 4), progress=True)
    assert pinn.points["residual"].shape == (20, 1)  # 16 resampled points + 4 refined
    assert not torch.equal(pinn.points["residual"][:16], before)
    assert any("refined to 20" in e for e in result.events)
    assert "PINN" in capsys.readouterr().err


def test_losses_weights_and_ntk_terms_agree():
    pinn = _small_pinn(weights={"dirichlet": 10.0})
    losses = pinn.losses()
    torch.testing.assert_close(pinn.loss(), losses["residual"] + 10.0 * losses["dirichlet"])
    terms = pinn.terms()
    for name, (fn, x) in pinn.ntk_terms().items():
        torch.testing.assert_close(fn(pinn.network_parameters(), x), terms[name].detach(), rtol=1e-14, atol=1e-14)


def test_two_conditions_of_a_kind_are_numbered_and_names_checked():
    conds = [DirichletBC(points=ENDS[:1]), DirichletBC(points=ENDS[1:], value=1.0)]
    pinn = PINN(mlp(), poisson_residual, Interval(0, 1), conds, n_interior=4)
    assert pinn.term_names == ("residual", "dirichlet", "dirichlet_1")
    with pytest.raises(InputError, match="two terms named"):
        PINN(mlp(), poisson_residual, Interval(0, 1), [DirichletBC(points=ENDS, name="a"),
                                                       DirichletBC(points=ENDS, name="a")])
    with pytest.raises(InputError, match="unknown term"):
        PINN(mlp(), poisson_residual, Interval(0, 1), [DirichletBC(points=ENDS)], weights={"neumann": 2.0})
    with pytest.raises(InputError, match="domain"):
        PINN(mlp(), poisson_residual, "not a domain")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="Box"):
        PINN(mlp(d_in=2), poisson_residual, Ball([0.0, 0.0], 1.0), [PeriodicBC(0)])
    with pytest.raises(InputError, match="checkpoint"):
        train(_small_pinn(), adam_iters=2, checkpoint_every=1)
    with pytest.raises(InputError, match="residual"):
        bad = PINN(mlp(), lambda x, u: u(x)[:3], Interval(0, 1), n_interior=8)
        bad.losses()


def test_inverse_problem_unknown_is_trained():
    # -a u'' = pi^2 sin(pi x) with data from u = sin(pi x): a = 1
    pinn_ref = {}

    def residual(x, u):
        return -pinn_ref["p"].unknowns["a"] * laplacian(u, x) - PI**2 * torch.sin(PI * x[:, 0])

    xd = torch.linspace(0.05, 0.95, 10, dtype=DT)[:, None]
    conds = [DirichletBC(points=ENDS), PointData(xd, torch.sin(PI * xd[:, 0]))]
    pinn = PINN(mlp(width=16), residual, Interval(0, 1), conds, n_interior=48,
                unknowns={"a": nn.Parameter(torch.tensor(0.3, dtype=DT))})
    pinn_ref["p"] = pinn
    train(pinn, adam_iters=300, lr=1e-2, lbfgs_iters=200, log_every=50)
    assert abs(pinn.unknowns["a"].item() - 1.0) < 2e-3  # measured 1.1e-4


# ---- plots -----------------------------------------------------------------------------------------------------------
def test_solution_error_and_loss_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from pysciml.pinn.plots import plot_error, plot_loss, plot_solution

    box = Box([0.0, 0.0], [1.0, 1.0]) - Ball([0.5, 0.5], 0.25)
    net = mlp(d_in=2, width=8)

    def exact(x):
        return torch.sin(PI * x[:, 0]) * x[:, 1]

    fig = plot_solution(net, box, exact=exact, resolution=41, path=tmp_path / "sol.png", title="t")
    assert (tmp_path / "sol.png").stat().st_size > 1000
    assert len(fig.axes) == 6  # three panels and their colour bars
    shown = fig.axes[2].collections[0].get_array()  # the error panel: |net - exact| on the grid, blank in the hole
    g = torch.linspace(0, 1, 41, dtype=DT)
    px, py = torch.meshgrid(g, g, indexing="xy")
    x = torch.stack([px.reshape(-1), py.reshape(-1)], dim=1)
    err = (net(x)[:, 0] - exact(x)).abs().detach()
    inside = box.contains(x, tol=1e-12)
    assert int(shown.mask.sum()) == int((~inside).sum()) > 0
    assert abs(float(shown.max()) - float(err[inside].max())) < 1e-12
    fig = plot_error(net, exact, box, resolution=21, path=tmp_path / "err.png")
    assert (tmp_path / "err.png").is_file() and len(fig.axes) == 2
    line = plot_solution(mlp(), Interval(0, 1), exact=lambda x: torch.sin(PI * x[:, 0]), resolution=50)
    assert len(line.axes) == 2
    pinn = _small_pinn()
    result = train(pinn, adam_iters=5, lr=1e-3, lbfgs_iters=3)
    fig = plot_loss(result, path=tmp_path / "loss.png")
    assert len(fig.axes) == 2 and (tmp_path / "loss.png").is_file()
    assert len(fig.axes[0].get_lines()) == 3 + 1  # total, two terms, the phase marker
    fig = plot_loss({"a": result, "b": result.history}, x="time")
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2
    with pytest.raises(InputError, match="x"):
        plot_loss(result, x="epochs")
    with pytest.raises(InputError, match="runs"):
        plot_loss([])
    with pytest.raises(InputError, match="domain"):
        plot_solution(net, "square")  # type: ignore[arg-type]


def test_float32_network_gives_float32_points_losses_and_history():
    net = mlp(width=8).float()
    pinn = PINN(net, poisson_residual, Interval(0, 1), [DirichletBC(points=ENDS)], n_interior=16)
    assert all(p.dtype == torch.float32 for p in pinn.points.values())
    assert all(v.dtype == torch.float32 for v in pinn.losses().values())
    result = train(pinn, adam_iters=20, lr=1e-2, lbfgs_iters=5)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert pinn.predict(ENDS).dtype == torch.float32
