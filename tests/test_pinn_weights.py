"""Loss weights: fixed; gradient-norm balancing (both rules) against hand computations, the scaling law of a
rescaled term and the direction of the change; NTK weights against brute-force J J^T traces."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pysciml.errors import InputError
from pysciml.pinn.conditions import DirichletBC
from pysciml.pinn.derivatives import laplacian
from pysciml.pinn.geometry import Interval
from pysciml.pinn.pinn import PINN
from pysciml.pinn.training import train
from pysciml.pinn.weights import FixedWeights, GradNormWeights, NTKWeights

DT = torch.float64
PI = math.pi
ENDS = torch.tensor([[0.0], [1.0]], dtype=DT)


def mlp(width: int = 12, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, 1)).to(DT)


def stiff_residual(x, u):
    """-u'' = (4 pi)^2 sin(4 pi x): a residual whose gradients dwarf the boundary term's."""
    return -laplacian(u, x) - (4 * PI) ** 2 * torch.sin(4 * PI * x[:, 0])


class ScaledDirichlet(DirichletBC):
    """A Dirichlet condition whose residual is multiplied by ``scale`` (a badly scaled term)."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def residual(self, x, u_fn):
        return self.scale * super().residual(x, u_fn)


def make(weights, scale: float = 1.0, seed: int = 0) -> PINN:
    return PINN(mlp(seed=seed), stiff_residual, Interval(0, 1),
                [ScaledDirichlet(scale, points=ENDS, value=0.3, name="bc")], n_interior=32, weights=weights)


def term_grads(pinn: PINN) -> dict[str, torch.Tensor]:
    params = list(pinn.net.parameters())
    out = {}
    for name, value in pinn.losses().items():
        gs = torch.autograd.grad(value, params, allow_unused=True)
        out[name] = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                               for p, g in zip(params, gs, strict=True)])
    return out


def test_fixed_weights():
    pinn = make({"bc": 7.0})
    assert pinn.weights.values == {"residual": 1.0, "bc": 7.0}
    assert not pinn.weights.update(pinn, 0)
    losses = pinn.losses()
    torch.testing.assert_close(pinn.loss(), losses["residual"] + 7.0 * losses["bc"])
    with pytest.raises(InputError, match="weights"):
        FixedWeights({"bc": -1.0})


def test_gradnorm_max_mean_matches_hand_computation_and_moves_the_right_way():
    w = GradNormWeights(mode="max_mean", every=1, alpha=0.0)
    pinn = make(w)
    g = term_grads(pinn)
    expected = float(g["residual"].abs().max() / g["bc"].abs().mean())
    assert w.update(pinn, 0)
    assert w["residual"] == 1.0
    assert math.isclose(w["bc"], expected, rel_tol=1e-12)
    assert w["bc"] > 10.0  # the boundary term's gradient is the small one: it gets the large weight


def test_gradnorm_weight_follows_the_scale_of_a_term():
    # scaling a term's residual by s scales its loss gradient by s^2: the weight by 1 / s^2
    weights = {}
    for s in (1.0, 0.1):
        w = GradNormWeights(mode="max_mean", every=1, alpha=0.0)
        pinn = make(w, scale=s)
        w.update(pinn, 0)
        weights[s] = w["bc"]
    assert math.isclose(weights[0.1] / weights[1.0], 100.0, rel_tol=1e-10)


def test_gradnorm_norm_mode_balances_the_gradient_norms():
    w = GradNormWeights(mode="norm", every=1, alpha=0.0)
    pinn = make(w, scale=0.1)
    g = term_grads(pinn)
    w.update(pinn, 0)
    scaled = [w[name] * float(torch.linalg.vector_norm(g[name])) for name in ("residual", "bc")]
    assert math.isclose(scaled[0], scaled[1], rel_tol=1e-12)  # balanced: lambda_i ||g_i|| all equal
    assert w["bc"] > w["residual"]


def test_gradnorm_moving_average_and_schedule():
    w = GradNormWeights(mode="max_mean", every=3, alpha=0.9)
    pinn = make(w)
    g = term_grads(pinn)
    hat = float(g["residual"].abs().max() / g["bc"].abs().mean())
    assert not w.update(pinn, 1) and not w.update(pinn, 2)
    assert w.update(pinn, 3)
    assert math.isclose(w["bc"], 0.9 * 1.0 + 0.1 * hat, rel_tol=1e-12)
    assert w.updates == 1
    with pytest.raises(InputError, match="mode"):
        GradNormWeights(mode="nope")
    with pytest.raises(InputError, match="alpha"):
        GradNormWeights(alpha=1.0)
    with pytest.raises(InputError, match="reference"):
        make(GradNormWeights(reference="interior"))


def brute_force_trace(pinn: PINN, name: str) -> float:
    """tr(J J^T) with J's rows d r_i / d theta from one double-backward autograd call per point."""
    x = pinn.points[name]
    params = list(pinn.net.parameters())
    total = 0.0
    for i in range(x.shape[0]):
        r = pinn.terms({**pinn.points, name: x[i:i + 1]})[name].reshape(-1)
        for rk in r:
            gs = torch.autograd.grad(rk, params, retain_graph=True, allow_unused=True)
            total += sum(float(gg.square().sum()) for gg in gs if gg is not None)
    return total


def test_ntk_weights_equal_trace_ratios_of_brute_force_kernels():
    w = NTKWeights(every=1, n_points=None)
    pinn = make(w, scale=0.1)
    tr = {name: brute_force_trace(pinn, name) for name in pinn.term_names}
    assert w.update(pinn, 0)
    for name in pinn.term_names:
        assert math.isclose(w.traces[name], tr[name], rel_tol=1e-10)
        assert math.isclose(w[name], sum(tr.values()) / tr[name], rel_tol=1e-10)
    assert w["bc"] > w["residual"]  # the term with the small kernel gets the large weight


def test_ntk_weight_follows_the_scale_of_a_term_and_normalisation():
    ratio = {}
    for s in (1.0, 0.1):
        w = NTKWeights(every=1, n_points=None, normalize="mean")
        pinn = make(w, scale=s)
        w.update(pinn, 0)
        ratio[s] = w.traces["bc"]
    assert math.isclose(ratio[0.1] / ratio[1.0], 0.01, rel_tol=1e-10)  # K_bb scales with s^2
    mean = NTKWeights(every=1, n_points=None, normalize="mean")
    total = NTKWeights(every=1, n_points=None, normalize="sum")
    pinn_m, pinn_s = make(mean), make(total)
    mean.update(pinn_m, 0)
    total.update(pinn_s, 0)
    assert math.isclose(total.traces["residual"], 32 * mean.traces["residual"], rel_tol=1e-12)
    assert math.isclose(total.traces["bc"], 2 * mean.traces["bc"], rel_tol=1e-12)


def test_ntk_weights_on_a_subsample_estimate_the_full_trace():
    w = NTKWeights(every=1, n_points=16, seed=3)
    pinn = make(w)
    w.update(pinn, 0)
    full = NTKWeights(every=1, n_points=None)
    full.update(make(full), 0)
    assert 0.5 < w.traces["residual"] / full.traces["residual"] < 2.0
    assert w.traces["bc"] == full.traces["bc"]  # 2 points < 16: all of them


def test_adaptive_weights_during_training_are_logged_and_frozen_for_lbfgs():
    w = GradNormWeights(every=5)
    pinn = make(w)
    result = train(pinn, adam_iters=20, lr=1e-3, lbfgs_iters=5)
    adam_w = [h["weight/bc"] for h in result.history if h["phase"] == "adam"]
    lbfgs_w = [h["weight/bc"] for h in result.history if h["phase"] == "lbfgs"]
    assert len(set(adam_w)) == 4 and adam_w[0] > 1.0  # updated at 0, 5, 10, 15
    assert len(set(lbfgs_w)) == 1 and lbfgs_w[0] == adam_w[-1]
    assert w.updates == 4
    n = NTKWeights(every=10, n_points=8)
    pinn = make(n)
    result = train(pinn, adam_iters=12, lr=1e-3)
    assert result.history[-1]["weight/bc"] > 1.0 and n.updates == 2


def test_ntk_weights_with_a_neumann_condition_match_brute_force():
    # Neumann normals are computed outside torch.func (they branch on the data) and ride along as features
    from pysciml.pinn.conditions import NeumannBC
    from pysciml.pinn.geometry import Box

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 10), nn.Tanh(), nn.Linear(10, 1)).to(DT)
    w = NTKWeights(every=1, n_points=None)
    conds = [NeumannBC(lambda x: x[:, 0] > 1 - 1e-9, value=1.0), DirichletBC(lambda x: x[:, 0] < 1 - 1e-9)]
    pinn = PINN(net, lambda x, u: laplacian(u, x), Box([0.0, 0.0], [1.0, 1.0]), conds, n_interior=12,
                n_boundary=6, weights=w)
    fn, xa = pinn.ntk_terms()["neumann"]
    assert xa.shape == (6, 4) and torch.equal(xa[:, 2:], torch.tensor([1.0, 0.0], dtype=DT).expand(6, 2))
    w.update(pinn, 0)
    for name in pinn.term_names:
        assert math.isclose(w.traces[name], brute_force_trace(pinn, name), rel_tol=1e-10)


def test_a_term_without_parameter_dependence_skips_the_update():
    # a condition that ignores the network: zero gradient, zero kernel -> no infinite weight
    class Constant(DirichletBC):
        def residual(self, x, u_fn):
            return torch.ones(x.shape[0], dtype=x.dtype)

    for w in (GradNormWeights(every=1, alpha=0.0), GradNormWeights(mode="norm", every=1),
              NTKWeights(every=1, n_points=None)):
        pinn = PINN(mlp(), stiff_residual, Interval(0, 1), [Constant(points=ENDS, name="bc")], n_interior=8,
                    weights=w)
        assert not w.update(pinn, 0)
        assert w.skipped == 1 and w.values == {"residual": 1.0, "bc": 1.0}
