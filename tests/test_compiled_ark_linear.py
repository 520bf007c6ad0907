"""``compile=True`` for IMEX methods on a linear implicit part ``L`` (a matrix; SINODE's setting).

The program's ``linear`` variant (:mod:`pysciml.engine.compiled_ark`) solves each stage with the eager solver's
factors of ``W = I/(gamma h) - L``, which the eager solver makes and reuses as it does without ``compile``. The
default run checks the dispatch; the heavy tests compile and compare values, counters and gradients (in ``u0``,
``L`` and the network's weights) with the eager solves, and train a ``SemiImplicitNeuralODE`` both ways.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import pysciml as ps
from pysciml.engine import compiled_parts
from pysciml.engine.compiled import _key, _unsupported
from pysciml.models.sinode import SemiImplicitNeuralODE
from pysciml.native import make_stepper
from pysciml.solution import Stats

F64 = torch.float64
N = 10
COUNTS = ("nf", "nsolve", "nlu", "njac", "naccept", "nreject", "nnonliniter", "nnonlinconvfail")


def operator(n: int = N, seed: int = 0) -> torch.Tensor:
    """A stiff, symmetric negative definite ``L`` (eigenvalues about -1 .. -200)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=F64)
    return -(a @ a.T) * 5.0 - torch.eye(n, dtype=F64)


class Net(torch.nn.Module):
    def __init__(self, n: int = N, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(n, 16), torch.nn.Tanh(), torch.nn.Linear(16, n)).double()

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.net(u)


def stepper_of(prob: ps.SplitODEProblem, alg: ps.Algorithm) -> object:
    return make_stepper(alg, prob, Stats(), torch.tensor(1e-8, dtype=F64), 1e-6, False)


def test_linear_part_has_a_compiled_step_and_one_key() -> None:
    """A matrix ``L`` with LU compiles (no reason given); two problems with other ``L`` and ``u0`` but the same
    network and signature share one program key (the program never calls the problems' own ``L u``)."""
    net = Net()
    a = ps.SplitODEProblem(operator(seed=0), net, torch.ones(N, dtype=F64), (0.0, 1.0))
    b = ps.SplitODEProblem(operator(seed=1), net, torch.zeros(N, dtype=F64), (0.0, 2.0))
    sa, sb = stepper_of(a, ps.KenCarp4()), stepper_of(b, ps.KenCarp4())
    assert _unsupported(sa) is None
    assert _key(sa, 1, False) == _key(sb, 1, False)
    free = ps.SplitODEProblem(lambda t, u: -u, net, torch.ones(N, dtype=F64), (0.0, 1.0))
    assert _key(stepper_of(free, ps.KenCarp4()), 1, False) != _key(sa, 1, False)
    gmres = stepper_of(a, ps.KenCarp4(linsolve=ps.GMRES()))
    assert "GMRES" in (_unsupported(gmres) or "")


def test_matrix_free_sinode_warns_and_solves_eagerly() -> None:
    """SINODE with a matrix-free ``L`` (GMRES) has no compiled step: one warning, then the eager solve's values (to
    round-off: the solve with ``compile=True`` may take the batched loop where the eager one takes the scalar loop)."""
    L = operator()
    y0 = torch.randn(2, N, dtype=F64)
    t = torch.tensor([0.0, 0.2], dtype=F64)
    eager = SemiImplicitNeuralODE(lambda u: u @ L.T, Net(), dt=0.05)
    compiled = SemiImplicitNeuralODE(lambda u: u @ L.T, Net(), dt=0.05, compile=True)
    with pytest.warns(RuntimeWarning, match="GMRES"):
        out = compiled(y0, t)
    torch.testing.assert_close(out, eager(y0, t), rtol=1e-13, atol=1e-14)


# ---------------------------------------------------------------------------------------------------- heavy
@pytest.mark.heavy  # compiles four programs (seconds each from a warm inductor cache, about a minute cold)
@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
@pytest.mark.parametrize("steps", ["fixed", "adaptive"])
def test_linear_ark_matches_eager(batched: bool, steps: str) -> None:
    """KenCarp4 on ``L u + net(u)``: values to 1e-13, every counter equal, gradients in ``u0``, ``L`` and the
    weights to 1e-12 (fixed steps factor once per solve, for the whole batch; adaptive ones at each new step)."""
    net = Net()
    L = operator()
    gen = torch.Generator().manual_seed(3)
    u0 = torch.randn(4, N, generator=gen, dtype=F64) if batched else torch.randn(N, generator=gen, dtype=F64)
    kw = {"dt": 0.05, "adaptive": False} if steps == "fixed" else {"rtol": 1e-6, "atol": 1e-8}
    runs = []
    for flag in (False, False, True):  # the first eager solve pays the one-time graph check's f calls
        Lr, u0r = L.clone().requires_grad_(True), u0.clone().requires_grad_(True)
        prob = ps.SplitODEProblem(Lr, net, u0r, (0.0, 1.0), batched=batched)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback
            sol = ps.solve(prob, ps.KenCarp4(), saveat=[0.5, 1.0], compile=flag, **kw)
        runs.append((sol, torch.autograd.grad(sol.u.pow(2).sum(), [u0r, Lr, *net.parameters()])))
    (eager, g_eager), (comp, g_comp) = runs[1], runs[2]
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-13, atol=1e-13)
    assert {c: getattr(comp.stats, c) for c in COUNTS} == {c: getattr(eager.stats, c) for c in COUNTS}
    for gc, ge in zip(g_comp, g_eager, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-12, atol=1e-12)


@pytest.mark.heavy
def test_sinode_trains_compiled_as_eager() -> None:
    """A ``SemiImplicitNeuralODE`` on a batch of fields (``L`` on the last dimension, fixed steps: the rows are one
    batched solve) trained five Adam steps with ``compile=True`` ends with the eager model's weights (to 1e-12);
    the forwards after the first compile nothing, and the call counters are ``None``."""
    L = operator(16)
    gen = torch.Generator().manual_seed(5)
    data = [(torch.randn(6, 16, generator=gen, dtype=F64) * 0.3, torch.randn(6, 16, generator=gen, dtype=F64) * 0.3)
            for _ in range(5)]
    t = torch.tensor([0.0, 0.2], dtype=F64)
    weights = []
    for flag in (False, True):
        model = SemiImplicitNeuralODE(L, Net(16), ps.KenCarp4(), dt=0.05, compile=flag)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for i, (x, y) in enumerate(data):
            if i == 1:
                before = compiled_parts.compile_count()
            opt.zero_grad()
            (model(x, t)[-1] - y).pow(2).mean().backward()
            opt.step()
        assert compiled_parts.compile_count() == before
        assert (model.nfe_explicit is None) == flag and (model.nfe_implicit is None) == flag
        weights.append([q.detach().clone() for q in model.parameters()])
    for wc, we in zip(weights[1], weights[0], strict=True):
        torch.testing.assert_close(wc, we, rtol=1e-12, atol=1e-12)
