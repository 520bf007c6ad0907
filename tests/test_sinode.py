"""Second-order IMEX pairs (IMEXSSP2 = PETSc's ARKIMEX L2, ARS222) and the SemiImplicitNeuralODE solver paths.

Order conditions (implicit, explicit, coupling), L-stability, measured convergence orders through
``ps.solve`` on a split linear + nonlinear problem; one LU per fixed-step solve; explicit vs IMEX on
Kuramoto-Sivashinsky at h = 0.2; SINODE gradients against central finite differences for every sensealg.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import pysciml as ps
from pysciml.analysis.order_conditions import ark_order_residuals, max_order_satisfied, rk_order_residuals
from pysciml.engine.tableaus._base import ARKTableau, dense_matrix
from pysciml.engine.tableaus.ark import ARS222, IMEX2_TABLEAUS, IMEXSSP2
from pysciml.models import SemiImplicitNeuralODE

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)

F64 = torch.float64
TOL = 1e-14
TABS = list(IMEX2_TABLEAUS.values())
IDS = list(IMEX2_TABLEAUS)


def mats(tab: ARKTableau) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    s = tab.stages
    AI = np.array(dense_matrix(tab.aI, s, diagonal=True))
    assert tab.aE is not None
    AE = np.array(dense_matrix(tab.aE, s))
    b = np.array(tab.b)
    bE = b if tab.bE is None else np.array(tab.bE)
    return AI, AE, b, bE


# ------------------------------------------------------------------------------------------ tableaus
@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_order_conditions(tab: ARKTableau) -> None:
    """Order 2 for each part and for the coupling trees, and not order 3 (so the check can fail)."""
    AI, AE, b, bE = mats(tab)
    assert max_order_satisfied(rk_order_residuals(AI, b, 3), TOL) == 2
    assert max_order_satisfied(rk_order_residuals(AE, bE, 3), TOL) == 2
    res = ark_order_residuals([AI, AE], [b, bE], 2)
    assert len(res) == 6 and max(abs(r) for r in res.values()) <= TOL  # 2 + 4 two-coloured trees
    assert max(abs(r) for r in ark_order_residuals([AI, AE], [b, bE], 3).values()) > 1e-3
    np.testing.assert_allclose(AI.sum(axis=1), tab.c, atol=TOL)


def test_imexssp2_embedded_and_explicit_nodes() -> None:
    AI, AE, b, _ = mats(IMEXSSP2)
    assert IMEXSSP2.btilde is not None
    bhat = b - np.array(IMEXSSP2.btilde)
    assert max_order_satisfied(rk_order_residuals(AI, bhat, 2), TOL) == 1
    assert max_order_satisfied(rk_order_residuals(AE, bhat, 2), TOL) == 1
    np.testing.assert_allclose(AE.sum(axis=1), (0.0, 0.0, 1.0), atol=TOL)  # Pareschi-Russo's explicit nodes
    assert float(b @ AE.sum(axis=1)) == pytest.approx(0.5, abs=TOL)  # so evaluating at c keeps order 2


def test_ars222_stiffly_accurate_both_parts() -> None:
    AI, AE, b, bE = mats(ARS222)
    np.testing.assert_allclose(AI[-1], b, atol=0)
    np.testing.assert_allclose(np.append(AE[-1, :-1], 0.0), bE, atol=TOL)
    np.testing.assert_allclose(AE.sum(axis=1), ARS222.c, atol=TOL)
    assert ARS222.btilde is None and not ps.ARS222().is_adaptive


@pytest.mark.parametrize("tab", TABS, ids=IDS)
def test_l_stable(tab: ARKTableau) -> None:
    AI, _, b, _ = mats(tab)
    s = tab.stages

    def R(z: complex) -> complex:
        return complex(1 + z * b @ np.linalg.solve(np.eye(s) - z * AI, np.ones(s)))

    assert abs(R(-1e8)) < 1e-6
    assert max(abs(R(1j * y)) for y in np.logspace(-3, 6, 300)) <= 1 + 1e-12
    assert all(abs(R(-x)) <= 1 + 1e-12 for x in np.logspace(-3, 6, 100))


# ------------------------------------------------------------------------------------------ engine
LIN = torch.tensor([[-50.0, 1.0, 0.0], [1.0, -2.0, 1.0], [0.0, 1.0, -20.0]], dtype=F64)
U0 = torch.tensor([1.0, 0.5, -0.3], dtype=F64)


def f_nl(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.sin(t) - u[0] ** 2, u[0] * u[1] - torch.cos(t), torch.sin(u[2]) * u[1]])


@pytest.fixture(scope="module")
def split_reference() -> torch.Tensor:
    prob = ps.ODEProblem(lambda t, u: LIN @ u + f_nl(t, u), U0, (0.0, 1.0))
    return ps.solve(prob, ps.Rodas5P(), rtol=1e-10, atol=1e-12, saveat=[1.0]).u[-1]


@pytest.mark.parametrize("alg", [ps.IMEXSSP2(), ps.ARS222()], ids=["IMEXSSP2", "ARS222"])
def test_measured_order_on_split_problem(alg: ps.Algorithm, split_reference: torch.Tensor) -> None:
    """Fixed steps h = 1/16 .. 1/64 (stiffness 50 h up to ~3): fitted order 2 +- 0.25, one LU per solve."""
    prob = ps.SplitODEProblem(LIN, f_nl, U0, (0.0, 1.0))
    ns = [16, 32, 64]
    errs = []
    for n in ns:
        sol = ps.solve(prob, alg, dt=1.0 / n, adaptive=False, saveat=[1.0])
        assert sol.stats.nlu == 1 and sol.stats.naccept == n
        errs.append(float((sol.u[-1] - split_reference).abs().max()))
    order = float(np.polyfit(np.log(1.0 / np.array(ns)), np.log(errs), 1)[0])
    assert abs(order - 2.0) <= 0.25, errs


def test_imexssp2_adaptive(split_reference: torch.Tensor) -> None:
    """The first-order embedded estimate controls the error (conservatively: ~100 steps at rtol 1e-2 and
    ~900 at 1e-3 on this problem, where KenCarp4 needs ~100 at 1e-5)."""
    prob = ps.SplitODEProblem(LIN, f_nl, U0, (0.0, 1.0))
    loose = ps.solve(prob, ps.IMEXSSP2(), rtol=1e-2, atol=1e-5, saveat=[1.0])
    tight = ps.solve(prob, ps.IMEXSSP2(), rtol=1e-3, atol=1e-6, saveat=[1.0])
    e_loose = float((loose.u[-1] - split_reference).abs().max())
    e_tight = float((tight.u[-1] - split_reference).abs().max())
    assert loose.success and tight.success and tight.stats.naccept > 2 * loose.stats.naccept
    assert e_tight < e_loose / 3 and e_tight < 1e-3


def test_lu_factored_once_per_step_size() -> None:
    """Fixed dt: one LU for the whole solve (the matrix L has a constant Jacobian); adaptive: one per new dt."""
    prob = ps.SplitODEProblem(LIN, f_nl, U0, (0.0, 2.0))
    fixed = ps.solve(prob, ps.KenCarp4(), dt=0.05, adaptive=False)
    assert fixed.stats.naccept == 40 and fixed.stats.nlu == 1 and fixed.stats.njac == 1
    adaptive = ps.solve(prob, ps.KenCarp4(), rtol=1e-6)
    assert adaptive.stats.njac == 1 and 1 < adaptive.stats.nlu <= adaptive.stats.naccept + adaptive.stats.nreject


# ------------------------------------------------------------------------------------------ KS stiffness
def ks_operator(n: int = 64, length: float = 22.0) -> torch.Tensor:
    """``-(D2 + D4)``, periodic second-order central differences."""
    dx = length / n
    eye = torch.eye(n, dtype=F64)
    d2 = (torch.roll(eye, 1, 1) - 2 * eye + torch.roll(eye, -1, 1)) / dx**2
    return -(d2 + d2 @ d2)


def ks_nonlinear(n: int = 64, length: float = 22.0):  # noqa: ANN201
    dx = length / n

    def f(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return -u * (torch.roll(u, -1, -1) - torch.roll(u, 1, -1)) / (2 * dx)

    return f


def test_ks_explicit_unstable_imex_bounded() -> None:
    """h = 0.2 on KS (N = 64, L = 22; spectral radius of L ~ 1.2e3): RK4 and fixed-step Tsit5 blow up with a
    failed retcode; KenCarp4 / IMEXSSP2 stay bounded and close to a tight reference."""
    x = torch.arange(64, dtype=F64) * 22.0 / 64
    u0 = torch.cos(2 * math.pi * x / 22) * (1 + torch.sin(2 * math.pi * x / 22))
    L, N = ks_operator(), ks_nonlinear()
    split = ps.SplitODEProblem(L, N, u0, (0.0, 10.0))
    whole = ps.ODEProblem(lambda t, u: L @ u + N(t, u), u0, (0.0, 10.0))
    for alg in (ps.RK4(), ps.Tsit5()):
        sol = ps.solve(whole, alg, dt=0.2, adaptive=False)
        assert sol.retcode is not ps.ReturnCode.Success, alg
    ref = ps.solve(split, ps.KenCarp4(), rtol=1e-8, atol=1e-10, saveat=[10.0]).u[-1]
    assert float(torch.linalg.eigvalsh(L).abs().max()) > 1000
    for alg, tol in ((ps.KenCarp4(), 0.02), (ps.IMEXSSP2(), 0.25)):
        sol = ps.solve(split, alg, dt=0.2, adaptive=False, saveat=[10.0])
        assert sol.success and sol.stats.naccept == 50 and sol.stats.nlu == 1
        rel = float((sol.u[-1] - ref).norm() / ref.norm())
        assert rel < tol, (alg, rel)


# ------------------------------------------------------------------------------------------ gradients
class Net(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(n, 8), nn.Tanh(), nn.Linear(8, n)).to(F64)

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.net(u)


def _fd_check(model: nn.Module, y0: torch.Tensor, t: torch.Tensor, params: list[torch.Tensor],
              rtol: float) -> None:
    w = torch.linspace(0.5, 1.5, y0.numel() * len(t), dtype=F64).reshape(len(t), *y0.shape)

    def loss() -> torch.Tensor:
        return (model(y0, t) * w).sum()

    grads = torch.autograd.grad(loss(), params)
    eps = 1e-5
    for p, g in zip(params, grads, strict=True):
        flat = p.data.view(-1)
        for i in (0, flat.numel() - 1):
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + eps
                up = float(loss())
                flat[i] = old - eps
                down = float(loss())
                flat[i] = old
            fd = (up - down) / (2 * eps)
            assert abs(float(g.view(-1)[i]) - fd) <= rtol * (abs(fd) + 1e-3), (i, float(g.view(-1)[i]), fd)


L3 = torch.tensor([[-30.0, 2.0, 0.0], [2.0, -5.0, 1.0], [0.0, 1.0, -12.0]], dtype=F64)
T3 = torch.linspace(0.0, 0.2, 3, dtype=F64)
Y3 = torch.tensor([0.7, -0.4, 0.2], dtype=F64)


@pytest.mark.parametrize("alg", [ps.KenCarp4(), ps.IMEXSSP2(), ps.ARS222()], ids=["KenCarp4", "IMEXSSP2", "ARS222"])
def test_discrete_adjoint_gradient_learnable_L(alg: ps.Algorithm) -> None:
    """Fixed steps: the gradient is that of the discrete solution, equal to its finite differences to 1e-6
    (network weights and the learnable matrix L)."""
    L = nn.Parameter(L3.clone())
    model = SemiImplicitNeuralODE(L, Net(3), alg, dt=0.05, sensealg=ps.DiscreteAdjoint(checkpoints=2))
    _fd_check(model, Y3, T3, [L, model.nonlinear.net[0].weight, model.nonlinear.net[2].bias], 1e-6)


@pytest.mark.parametrize("sensealg", [ps.InterpolatingAdjoint(), ps.InterpolatingAdjoint(checkpointing=True),
                                      ps.QuadratureAdjoint(), ps.BacksolveAdjoint()],
                         ids=["interp", "interp-ckpt", "quadrature", "backsolve"])
def test_continuous_adjoint_gradients(sensealg: ps.sensealg.SensitivityAlgorithm) -> None:
    """Adaptive KenCarp4 at rtol 1e-8: continuous-adjoint gradients match finite differences to 1e-4."""
    L = nn.Parameter(L3.clone())
    model = SemiImplicitNeuralODE(L, Net(3), ps.KenCarp4(), rtol=1e-7, atol=1e-9, sensealg=sensealg)
    params = [model.nonlinear.net[0].weight] + ([L] if type(sensealg) is ps.InterpolatingAdjoint else [])
    _fd_check(model, Y3, T3, params, 1e-4)


def test_matrix_free_module_gradient_gmres() -> None:
    """A learnable matrix-free L (nn.Module): Newton-Krylov stages, exact stage derivatives in backward."""

    class Diffusion(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kappa = nn.Parameter(torch.tensor(3.0, dtype=F64))

        def forward(self, u: torch.Tensor) -> torch.Tensor:
            return self.kappa * (torch.roll(u, 1, -1) - 2 * u + torch.roll(u, -1, -1)) - 4.0 * u

    model = SemiImplicitNeuralODE(Diffusion(), Net(3), ps.KenCarp3(), dt=0.1, rtol=1e-10, atol=1e-12)
    _fd_check(model, Y3, T3, [model.linear.kappa, model.nonlinear.net[2].weight], 1e-5)
    assert isinstance(model.last_solution, ps.ODESolution) and model.nfe_implicit and model.nfe_implicit > 0
