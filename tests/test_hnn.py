"""pysciml.models HNN, SeparableHNN (the three biases), augment and fit_vector_field: derivatives against
analytic ones and autograd, exact separability, the penalty's values, augmentation's exactness, gradients
against finite differences, use as a right-hand side, a short training run, and the input errors."""

from __future__ import annotations

import math

import pytest
import torch
from fd import check_gradient
from torch import nn

import pysciml as ps
from pysciml.models import HNN, NeuralODE, SeparableHNN, augment, fit_vector_field

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


def henon_heiles(x: torch.Tensor) -> torch.Tensor:
    q1, q2, p1, p2 = x.unbind(-1)
    return 0.5 * (p1**2 + p2**2) + 0.5 * (q1**2 + q2**2) + q1**2 * q2 - q2**3 / 3


def henon_heiles_field(x: torch.Tensor) -> torch.Tensor:
    q1, q2, p1, p2 = x.unbind(-1)
    return torch.stack([p1, p2, -(q1 + 2 * q1 * q2), -(q2 + q1**2 - q2**2)], -1)


def separable_H(x: torch.Tensor) -> torch.Tensor:
    """n = 2: relativistic kinetic energy plus a cosine potential, H = T(p) + V(q)."""
    q, p = x[..., :2], x[..., 2:]
    return torch.sqrt(p**2 + 1).sum(-1) + torch.cos(q).sum(-1)


def separable_field(x: torch.Tensor) -> torch.Tensor:
    q, p = x[..., :2], x[..., 2:]
    return torch.cat([p / torch.sqrt(p**2 + 1), torch.sin(q)], -1)


class Analytic(nn.Module):
    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def states(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed)) - 0.5


def test_vector_field_equals_analytic_hamiltonian_field() -> None:
    model = HNN(4, net=henon_heiles)
    x = states(3, 7, 4)
    field = model.vector_field(x)
    assert field.shape == x.shape
    assert float((field - henon_heiles_field(x)).abs().max()) < 1e-15
    assert torch.allclose(model.hamiltonian(x), henon_heiles(x), rtol=0, atol=0)


@pytest.mark.parametrize("builtin", [True, False], ids=["mlp", "user-net"])
def test_vector_field_matches_autograd_and_batched_equals_looped(builtin: bool) -> None:
    torch.manual_seed(0)
    mlp = HNN(4, hidden=(16, 16))
    model = mlp if builtin else HNN(4, net=mlp.net)  # same weights, vmap(grad) path
    x = states(5, 4, seed=1)
    xr = x.clone().requires_grad_()
    g = torch.autograd.grad(mlp.net(xr).sum(), xr)[0]
    ref = torch.cat([g[:, 2:], -g[:, :2]], 1)
    batched = model.vector_field(x)
    looped = torch.stack([model.vector_field(xi) for xi in x])
    assert float((batched - ref).abs().max()) < 1e-15
    assert float((looped - batched).abs().max()) < 1e-15
    with torch.no_grad():  # torch.func ignores the enclosing no_grad
        assert float((model.vector_field(x) - ref).abs().max()) < 1e-15
    assert float((model(torch.tensor(0.3, dtype=F64), x) - ref).abs().max()) < 1e-15


def test_custom_poisson_structure() -> None:
    torch.manual_seed(0)
    A = torch.randn(3, 3, dtype=F64)
    J = A - A.T
    model = HNN(3, J=J)
    x = states(6, 3)
    xr = x.clone().requires_grad_()
    g = torch.autograd.grad(model.hamiltonian(xr).sum(), xr)[0]
    assert float((model.vector_field(x) - g @ J.T).abs().max()) < 1e-15
    # a skew J conserves H: dH/dt = grad H . J grad H = 0
    assert float((g * model.vector_field(x)).sum(-1).abs().max()) < 1e-15
    with pytest.raises(ps.InputError, match="J must be skew-symmetric"):
        HNN(3, J=A)


@pytest.mark.parametrize("placement", ["body", "last_layer"])
def test_inductive_bias_mixed_partial_is_exactly_zero(placement: str) -> None:
    torch.manual_seed(0)
    model = SeparableHNN(3, hidden=(8, 8), biases="I", placement=placement)
    x = states(20, 6)
    mixed = model.mixed_hessian(x)
    assert mixed.shape == (20, 3, 3)
    assert bool((mixed == 0.0).all())
    assert float(model.penalty(x)) == 0.0
    # H really is V(q) + T(p) (with the last layer's weights): swapping p between samples moves T only
    v, t = model.parts(x)
    lin = model.net.combine
    a, b, c = (1.0, 1.0, 0.0) if lin is None else (float(lin.weight[0, 0]), float(lin.weight[0, 1]), float(lin.bias))
    assert float((model.hamiltonian(x) - (a * v + b * t + c)).abs().max()) < 1e-14
    # while a plain MLP's mixed partial is not zero
    plain = SeparableHNN(3, hidden=(8, 8), biases="")
    assert float(plain.mixed_hessian(x).abs().min()) > 0.0


def test_learning_penalty_values() -> None:
    x = states(16, 4, seed=3)
    model = SeparableHNN(2, biases="L")
    model.net = Analytic(separable_H)
    assert float(model.penalty(x)) == 0.0

    def coupled(z: torch.Tensor) -> torch.Tensor:  # H = (q . p)^2 / 2: d2H/dq_i dp_j = p_i q_j + delta_ij (q . p)
        return 0.5 * (z[..., :2] * z[..., 2:]).sum(-1) ** 2

    model.net = Analytic(coupled)
    q, p = x[:, :2], x[:, 2:]
    exact = p[:, :, None] * q[:, None, :] + (q * p).sum(-1)[:, None, None] * torch.eye(2, dtype=F64)
    assert float((model.mixed_hessian(x) - exact).abs().max()) < 1e-15
    assert float(model.penalty(x)) == pytest.approx(float((exact**2).mean()), rel=1e-13)
    assert float(model.penalty(x)) > 1e-4
    # the loss adds penalty_weight * penalty; without "L" it does not
    dx = separable_field(x)
    weighted = SeparableHNN(2, biases="L", penalty_weight=2.5)
    weighted.net = Analytic(coupled)
    base = HNN(4, net=coupled).loss(x, dx)
    assert float(weighted.loss(x, dx) - base) == pytest.approx(2.5 * float((exact**2).mean()), rel=1e-12)


def test_augment_preserves_exact_separable_field() -> None:
    x = states(50, 4, seed=4) * 4
    dx = separable_field(x)
    for gen in (None, torch.Generator().manual_seed(1)):
        xa, dxa = augment(x, dx, copies=7, generator=gen)
        assert xa.shape == (400, 4) and dxa.shape == (400, 4)
        assert torch.equal(separable_field(xa), dxa)  # the recombined states' exact field, to the last bit
        assert len(torch.unique(xa, dim=0)) == 400  # 7 new pairings, no repeats
    xa, _ = augment(x, dx, copies=1)
    assert torch.equal(xa[:50], x) and torch.equal(xa[50:, :2], torch.roll(x[:, :2], -1, 0))
    # for a non-separable system the recombined field is wrong: the check above can fail
    def coupled_field(z: torch.Tensor) -> torch.Tensor:  # H = (q . p)^2 / 2 is not separable
        qp = (z[:, :2] * z[:, 2:]).sum(-1, keepdim=True)
        return torch.cat([qp * z[:, :2], -qp * z[:, 2:]], 1)

    hx, hdx = augment(x, coupled_field(x), copies=1)
    assert float((coupled_field(hx) - hdx).abs().max()) > 0.1


def test_augment_is_exact_on_the_library_systems() -> None:
    """The separable systems of pysciml.problems.hamiltonian (Khoo et al.'s): recombined samples carry their
    exact field; the non-separable ones (a check that the test can fail) do not."""
    from pysciml.problems.hamiltonian import SYSTEMS, hamiltonian_system

    checked = 0
    for name in SYSTEMS:
        system = hamiltonian_system(name)
        if not system.conservative:
            continue
        x, dx = system.sample(40, seed=0)
        xa, dxa = augment(x, dx, copies=3)
        err = float((system.vector_field(xa) - dxa).abs().max() / dx.abs().max())
        if system.separable:
            assert err < 1e-15, (name, err)
            checked += 1
        else:
            assert err > 1e-3, (name, err)
    assert checked >= 8


def test_float32_in_float32_out() -> None:
    x = states(5, 4).float()
    for model in (HNN(4, dtype=torch.float32), SeparableHNN(2, dtype=torch.float32, biases="LI")):
        assert model.vector_field(x).dtype == torch.float32 and model.loss(x, x).dtype == torch.float32
    assert SeparableHNN(2, dtype=torch.float32, biases="L").penalty(x).dtype == torch.float32


def test_loss_gradients_match_finite_differences() -> None:
    torch.manual_seed(0)
    x = states(32, 4, seed=5)
    dx = henon_heiles_field(x)
    for model in (HNN(4, hidden=(8, 8), anchor=(0.0, 0.0)),
                  SeparableHNN(2, hidden=(6, 6), biases="OLI", placement="last_layer", anchor=(0.1, 0.2)),
                  SeparableHNN(2, hidden=(6, 6), biases="L", penalty_weight=3.0, anchor=(0.0, 0.5))):
        # (the anchor makes every parameter count: without it the output biases do not enter the loss)
        params = list(model.parameters())
        res = check_gradient(lambda m=model: m.loss(x, dx), params, h=1e-5, richardson=True)
        assert res.rel < 1e-8, (type(model).__name__, str(res))


def test_anchor_fixes_the_constant() -> None:
    model = HNN(2, net=lambda z: 0.5 * z[..., 1] ** 2 + 1 - torch.cos(z[..., 0]) + 0.7, anchor=(0.0, 0.0))
    x = states(10, 2)
    dx = model.vector_field(x)
    assert float(model.loss(x, dx)) == pytest.approx(0.49, rel=1e-14)


def test_hnn_is_a_right_hand_side_for_solve_odeint_and_neural_ode() -> None:
    torch.manual_seed(0)
    model = HNN(2, hidden=(16, 16))
    x0 = torch.tensor([0.4, -0.3], dtype=F64)
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    sol = ps.solve(ps.ODEProblem(model, x0, (0.0, 2.0)), ps.Tsit5(), rtol=1e-10, atol=1e-12, saveat=t)
    ys = ps.odeint(model, x0, t, rtol=1e-10, atol=1e-12)
    yn = NeuralODE(model, ps.Tsit5(), rtol=1e-10, atol=1e-12)(x0, t)
    assert float((sol.u - ys).abs().max()) < 1e-9 and float((yn - ys).abs().max()) < 1e-9
    with torch.no_grad():
        energy = model.hamiltonian(ys)
    assert float((energy - energy[0]).abs().max()) < 1e-8  # the flow of J grad H conserves H
    assert float((ys[-1] - x0).abs().max()) > 1e-3  # and it moved
    # batched trajectories and the gradient through the solve
    y0 = states(3, 2, seed=6)
    out = ps.odeint(model, y0, t, rtol=1e-8, atol=1e-10)
    assert out.shape == (5, 3, 2)
    w = model.net[0].weight
    g = torch.autograd.grad(out[-1].sum(), w)[0]
    assert bool(torch.isfinite(g).all()) and float(g.abs().max()) > 0


def test_jacobian_inside_torch_func_and_implicit_solver() -> None:
    """Inside torch.func transforms (how solvers take Jacobians) the field's Jacobian is J times the Hessian."""
    model = HNN(4, net=henon_heiles)
    x = states(6, 4, seed=8)
    jac = torch.func.vmap(torch.func.jacfwd(model.vector_field))(x)
    q1, q2 = x[:, 0], x[:, 1]
    hess = torch.zeros(6, 4, 4, dtype=F64)
    hess[:, 0, 0], hess[:, 0, 1], hess[:, 1, 0], hess[:, 1, 1] = 1 + 2 * q2, 2 * q1, 2 * q1, 1 - 2 * q2
    hess[:, 2, 2] = hess[:, 3, 3] = 1.0
    assert float((jac - model.J @ hess).abs().max()) < 1e-14
    assert float((torch.func.vmap(torch.func.jacrev(model.vector_field))(x) - jac).abs().max()) < 1e-14
    torch.manual_seed(0)
    learned = HNN(2, hidden=(8, 8))
    x0 = torch.tensor([0.4, -0.3], dtype=F64)
    stiff = ps.solve(ps.ODEProblem(learned, x0, (0.0, 1.0)), ps.Rodas5P(), rtol=1e-10, atol=1e-12)
    ref = ps.solve(ps.ODEProblem(learned, x0, (0.0, 1.0)), ps.Vern7(), rtol=1e-11, atol=1e-13)
    assert float((stiff.u[-1] - ref.u[-1]).abs().max()) < 1e-8


def test_gradient_through_a_checkpointed_solve() -> None:
    """DiscreteAdjoint(checkpoints=K) recomputes segments under saved-tensor hooks, which torch.func.grad
    refuses; the HNN's reverse-mode gradient works there and gives the plain backprop gradient."""
    torch.manual_seed(0)
    model = HNN(2, hidden=(8, 8))
    x0 = torch.tensor([0.4, -0.3], dtype=F64)
    t = torch.linspace(0.0, 1.0, 6, dtype=F64)
    params = list(model.parameters())[:-1]  # H's output bias (a constant) does not enter the field

    def grads(sensealg: ps.sensealg.SensitivityAlgorithm | None) -> list[torch.Tensor]:
        sol = ps.solve(ps.ODEProblem(model, x0, (0.0, 1.0)), ps.Tsit5(), dt=0.05, adaptive=False, saveat=t,
                       sensealg=sensealg)
        return torch.autograd.grad((sol.u**2).sum(), params)

    plain, ckpt = grads(None), grads(ps.DiscreteAdjoint(checkpoints=2))
    for a, b in zip(plain, ckpt, strict=True):
        assert float((a - b).abs().max()) < 1e-13 * max(1.0, float(a.abs().max()))
    assert max(float(a.abs().max()) for a in plain) > 1e-3


def test_short_training_beats_untrained_by_10x() -> None:
    gen = torch.Generator().manual_seed(0)
    lo = torch.tensor([-2 * math.pi, -1.2], dtype=F64)
    x = lo + (-2 * lo) * torch.rand(300, 2, dtype=F64, generator=gen)
    dx = torch.stack([x[:, 1], -torch.sin(x[:, 0])], 1)
    grid = torch.stack(torch.meshgrid(torch.linspace(-2 * math.pi, 2 * math.pi, 25, dtype=F64),
                                      torch.linspace(-1.2, 1.2, 25, dtype=F64), indexing="ij"), -1).reshape(-1, 2)
    exact = torch.stack([grid[:, 1], -torch.sin(grid[:, 0])], 1)

    def error(m: HNN) -> float:
        with torch.no_grad():
            return float((m.vector_field(grid) - exact).norm() / exact.norm())  # relative L2 over the grid

    torch.manual_seed(0)
    model = HNN(2, hidden=(16, 16))
    before = error(model)
    res = fit_vector_field(model, x, dx, epochs=300, lr=1e-2, patience=100, seed=0)
    after = error(model)
    assert res.n_train == 240 and res.n_val == 60
    assert after * 10 <= before, (before, after)  # measured: 1.00 -> 0.028 (36x)
    assert res.best_loss == min(res.val_loss) and res.best_epoch == res.val_loss.index(res.best_loss)


def test_fit_restores_best_weights_and_stops_early() -> None:
    torch.manual_seed(1)
    x = states(60, 4, seed=7)
    dx = separable_field(x)
    model = SeparableHNN(2, hidden=(6, 6), biases="OI", augment_copies=2)
    res = fit_vector_field(model, x, dx, epochs=40, lr=0.3, patience=3, min_delta=0.0, seed=2)  # lr too large
    assert res.n_train == 3 * 48 and res.n_val == 12
    assert res.stopped_early and res.epochs < 40
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        val = float(model.loss(x[perm[:12]], dx[perm[:12]]))
    assert val == pytest.approx(res.best_loss, rel=1e-12) and res.best_loss == min(res.val_loss)
    # a plain vector-field MLP (no .loss) trains too
    mlp = nn.Sequential(nn.Linear(4, 16, dtype=F64), nn.Tanh(), nn.Linear(16, 4, dtype=F64))
    res = fit_vector_field(mlp, x, dx, epochs=60, lr=1e-2)
    assert res.val_loss[res.best_epoch] < 0.5 * res.val_loss[0]


def test_as_problem_rolls_out_the_learned_hamiltonian() -> None:
    torch.manual_seed(0)
    model = SeparableHNN(1, hidden=(8, 8), biases="I")
    q0, p0 = torch.tensor([[0.3], [-0.8]], dtype=F64), torch.tensor([[0.1], [0.5]], dtype=F64)
    prob = model.as_problem(q0, p0, (0.0, 2.0))
    assert isinstance(prob, ps.HamiltonianProblem) and prob.separable
    assert not HNN(2).as_problem(q0, p0, (0.0, 2.0)).separable
    sol = ps.solve(prob, ps.Yoshida4(), dt=0.02)
    t = torch.tensor([0.0, 2.0], dtype=F64)
    ref = ps.odeint(model, torch.cat([q0, p0], -1), t, rtol=1e-11, atol=1e-13)
    assert sol.u.shape == (101, 2, 2)
    err = float((sol.u[-1] - ref[-1]).abs().max())
    assert err < 1e-7 and float((ref[-1] - ref[0]).abs().max()) > 1e-3, err
    with torch.no_grad():
        energy = model.hamiltonian(sol.u)
    assert float((energy - energy[0]).abs().max()) < 1e-7  # symplectic: bounded energy error


def test_bad_inputs_name_the_argument() -> None:
    cases = [
        (lambda: HNN(3), "dim must be even"),
        (lambda: HNN(0), "dim must be a positive int"),
        (lambda: HNN(4, J=torch.eye(3)), r"J must have shape \(4, 4\)"),
        (lambda: HNN(2, hidden=()), "hidden must list"),
        (lambda: HNN(2, dtype=torch.int64), "dtype must be"),
        (lambda: HNN(2).vector_field(torch.zeros(5, 3, dtype=F64)), r"x must have shape \(\.\.\., 2\)"),
        (lambda: HNN(2).vector_field(torch.zeros(5, 2)), "dtype torch.float32"),
        (lambda: HNN(2).loss(torch.zeros(5, 2, dtype=F64), torch.zeros(4, 2, dtype=F64)), "dx must have"),
        (lambda: HNN(2, J=torch.tensor([[0.0, 1.0], [-1.0, 0.0]])).as_problem(None, None, (0, 1)), "canonical J"),
        (lambda: SeparableHNN(2, biases="X"), "biases must be"),
        (lambda: SeparableHNN(2, biases="II"), "biases must be"),
        (lambda: SeparableHNN(2, biases="I", placement="top"), "placement must be"),
        (lambda: SeparableHNN(2, biases="L", placement="last_layer"), "add 'I'"),
        (lambda: SeparableHNN(2, biases="I", augment_copies=3), "augment_copies is the observational"),
        (lambda: SeparableHNN(2, biases="O", augment_copies=0), "augment_copies must be"),
        (lambda: SeparableHNN(2, penalty_weight=-1.0), "penalty_weight"),
        (lambda: SeparableHNN(2, biases="L").parts(torch.zeros(1, 4, dtype=F64)), "inductive"),
        (lambda: augment(torch.zeros(5, 2), torch.zeros(5, 2), copies=5), r"copies must be an int in \[1, N - 1\]"),
        (lambda: augment(torch.zeros(5, 3), torch.zeros(5, 3)), "x must be a"),
        (lambda: augment(torch.zeros(5, 2), torch.zeros(4, 2)), "dx must have"),
        (lambda: fit_vector_field(HNN(2), torch.zeros(10, 2, dtype=F64), torch.zeros(10, 2, dtype=F64),
                                  val_fraction=1.0), "val_fraction"),
        (lambda: fit_vector_field(HNN(2), torch.zeros(10, 2, dtype=F64), torch.zeros(10, 2, dtype=F64),
                                  epochs=0), "epochs must be"),
        (lambda: fit_vector_field(HNN(2), torch.zeros(10, 2, dtype=F64), torch.zeros(9, 2, dtype=F64)),
         "dx must have"),
        (lambda: fit_vector_field(lambda z: z, torch.zeros(10, 2, dtype=F64), torch.zeros(10, 2, dtype=F64)),
         "model must be an nn.Module"),
    ]
    for fn, match in cases:
        with pytest.raises(ps.InputError, match=match):
            fn()
