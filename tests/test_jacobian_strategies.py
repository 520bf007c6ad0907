"""Autodiff Jacobians of engine/rhs.RHS: the default (one recorded f call, one batched backward pass) and its
fallbacks equal the analytic Jacobian to round-off, batched and unbatched, float32 and float64; the counters
are what RHS.jac's docstring says; the result is differentiable where gradients flow; checkpointed regions get
forward mode; an f that leaves autograd's graph gets finite differences with a warning."""

from __future__ import annotations

import warnings

import pytest
import torch

import pysciml as ps
from pysciml import problems
from pysciml.engine.rhs import JAC_MODES, RHS
from pysciml.solution import Stats

F64 = torch.float64
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}  # relative to max |J|
B = 4


class Field(torch.nn.Module):
    """A random smooth vector field (MLP): n = 5."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.w1 = torch.nn.Parameter(torch.randn(5, 16, generator=g, dtype=dtype) / 2)
        self.w2 = torch.nn.Parameter(torch.randn(16, 5, generator=g, dtype=dtype) / 4)

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(u @ self.w1) @ self.w2 - 0.1 * u * u


def field_jac(net: Field, u: torch.Tensor) -> torch.Tensor:
    """The field's Jacobian by hand: ``w2^T diag(1 - tanh^2) w1^T - 0.2 diag(u)``, per row of ``u``."""
    s = 1 - torch.tanh(u @ net.w1) ** 2  # (..., 16)
    J = torch.einsum("hj,...h,ih->...ji", net.w2, s, net.w1)
    return J - 0.2 * torch.diag_embed(u)


def build(name: str, dtype: torch.dtype, batched: bool) -> tuple[ps.ODEProblem, torch.Tensor, object]:
    """``(problem, engine-layout state (B, n), analytic Jacobian at it (B, n, n))``."""
    g = torch.Generator().manual_seed(3)
    rows = B if batched else 1
    if name == "field":
        net = Field(dtype)
        u = torch.randn(rows, 5, generator=g, dtype=F64).to(dtype)
        prob = ps.ODEProblem(net, u if batched else u[0], (0.0, 1.0), batched=batched)
        return prob, u, field_jac(net, u).detach()
    base = torch.tensor([0.04, 3e7, 1e4] if name == "rober" else [77.27, 0.161, 8.375e-6], dtype=F64)
    p = base * (1 + 0.1 * torch.rand(rows, 3, generator=g, dtype=F64)) if batched else base
    prob = (problems.rober(k=p, dtype=dtype) if name == "rober" else problems.oregonator(p=p, dtype=dtype))
    scale = torch.tensor([1.0, 1e-4, 1.0] if name == "rober" else [10.0, 100.0, 10.0], dtype=F64)
    u = (torch.rand(rows, 3, generator=g, dtype=F64) * scale + 1e-3).to(dtype)
    t = torch.zeros(rows, dtype=dtype)
    J = prob.jac(t if batched else t[0], u if batched else u[0], prob.p)
    return prob, u, J.reshape(rows, 3, 3)


def engine_rhs(prob: ps.ODEProblem, **kw) -> RHS:
    return RHS(prob.f, prob.f_takes_p, prob, Stats(), **kw)


def close(J: torch.Tensor, ref: torch.Tensor) -> None:
    assert J.shape == ref.shape and J.dtype == ref.dtype
    err = float((J - ref).detach().abs().max() / ref.abs().max())
    assert err <= TOL[ref.dtype], err


CASES = [(n, d, b) for n in ("rober", "oregonator", "field") for d in (F64, torch.float32) for b in (False, True)]
IDS = [f"{n}-{str(d)[6:]}-{'batched' if b else 'single'}" for n, d, b in CASES]


@pytest.mark.parametrize("name,dtype,batched", CASES, ids=IDS)
def test_default_jacobian_equals_analytic_and_counts(name, dtype, batched):
    prob, u, ref = build(name, dtype, batched)
    rhs = engine_rhs(prob)
    t = torch.zeros(u.shape[0], dtype=dtype)
    f0 = rhs(t, u)  # the field's parameters require grad: this first call also checks f differentiable
    nf = rhs.stats.nf
    assert nf == (4 if name == "field" else 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback, no vmap performance warning
        J = rhs.jac(t, u, f0)
        J2 = rhs.jac(t, u)
    close(J, ref)
    assert torch.equal(J, J2)
    assert rhs.jac_modes == list(JAC_MODES) and rhs.autodiff  # the default mode served
    assert rhs.stats.njac == 2 and rhs.stats.nf == nf  # autodiff Jacobians add to njac only
    assert J.requires_grad == (name == "field")  # a graph only where something (the parameters) requires grad


@pytest.mark.parametrize("name,dtype,batched", CASES, ids=IDS)
def test_fallback_modes_equal_the_default(name, dtype, batched):
    prob, u, ref = build(name, dtype, batched)
    rhs = engine_rhs(prob)
    t = torch.zeros(u.shape[0], dtype=dtype)
    close(rhs._jac_vmap_reverse(t, u), ref)
    close(rhs._jac_forward_mode(t, u), ref)


@pytest.mark.parametrize("with_f0", [True, False])
def test_finite_difference_counts(with_f0):
    prob, u, ref = build("oregonator", F64, False)
    rhs = engine_rhs(prob, autodiff=False)
    t = torch.zeros(1, dtype=F64)
    f0 = rhs(t, u)
    J = rhs.jac(t, u, f0 if with_f0 else None)
    assert rhs.stats.njac == 1 and rhs.stats.nf == 1 + 3 + (0 if with_f0 else 1)
    torch.testing.assert_close(J, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("name", ["rober", "field"])
def test_jacobian_is_differentiable_like_the_analytic_one(name):
    """Discrete adjoints differentiate through J: d(sum(W * J))/d(u, params) equals the analytic one's."""
    prob, u, _ = build(name, F64, True)
    params = [prob.p.requires_grad_(True)] if name == "rober" else list(prob.f.parameters())
    u = u.clone().requires_grad_(True)
    rhs = engine_rhs(prob)
    t = torch.zeros(B, dtype=F64)
    W = torch.randn(B, *u.shape[1:], u.shape[1], dtype=F64, generator=torch.Generator().manual_seed(1))
    J = rhs.jac(t, u, rhs(t, u))
    assert J.requires_grad and rhs.jac_modes == list(JAC_MODES)
    ref = prob.jac(t, u, prob.p) if name == "rober" else field_jac(prob.f, u)
    got = torch.autograd.grad((W * J).sum(), [u, *params])
    want = torch.autograd.grad((W * ref).sum(), [u, *params])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))


def test_checkpointed_region_gets_forward_mode():
    """Inside torch.utils.checkpoint both reverse modes are refused (each backward pass would recompute the
    segment); forward mode serves, exactly, and the gradient through the checkpoint is right."""
    prob, u, ref = build("oregonator", F64, False)
    t = torch.zeros(1, dtype=F64)
    u = u.clone().requires_grad_(True)
    made: list[RHS] = []

    def segment(x: torch.Tensor) -> torch.Tensor:  # as the checkpointed solve: a new RHS per (re)computation
        made.append(engine_rhs(prob))
        return made[-1].jac(t, x).sum(dim=-1)

    out = torch.utils.checkpoint.checkpoint(segment, u, use_reentrant=False)
    assert made[0].jac_modes == ["forward"]
    torch.testing.assert_close(out.detach(), ref.sum(dim=-1), rtol=1e-13, atol=0)
    (g,) = torch.autograd.grad(out.sum(), u)
    (g_ref,) = torch.autograd.grad(prob.jac(t[0], u[0], prob.p).sum(), u)
    torch.testing.assert_close(g, g_ref)


def test_f_leaving_the_graph_gets_finite_differences():
    def f(t, u):  # values right, derivative lost: autograd would see only the 0 * u
        return -50.0 * torch.as_tensor(u.detach().numpy()) + 0.0 * u

    prob = ps.ODEProblem(f, torch.ones(2, dtype=F64), (0.0, 1.0))
    rhs = engine_rhs(prob)
    t, u = torch.zeros(1, dtype=F64), torch.ones(1, 2, dtype=F64)
    with pytest.warns(RuntimeWarning, match="finite-difference Jacobians"):
        J = rhs.jac(t, u)
    assert not rhs.autodiff
    torch.testing.assert_close(J, -50.0 * torch.eye(2, dtype=F64)[None], rtol=1e-6, atol=1e-6)


def test_f_independent_of_u_has_zero_jacobian():
    prob = ps.ODEProblem(lambda t, u: torch.ones_like(u) * torch.cos(t), torch.ones(3, dtype=F64), (0.0, 1.0))
    rhs = engine_rhs(prob)
    J = rhs.jac(torch.zeros(1, dtype=F64), torch.ones(1, 3, dtype=F64))
    assert torch.equal(J, torch.zeros(1, 3, 3, dtype=F64)) and rhs.autodiff


def test_solve_with_autodiff_jacobian_matches_analytic():
    prob = problems.oregonator((0.0, 30.0))
    nojac = ps.ODEProblem(prob.f, prob.u0, prob.tspan, prob.p)
    a = ps.solve(prob, ps.Rodas5P(), rtol=1e-7, atol=1e-9, saveat=[30.0])
    b = ps.solve(nojac, ps.Rodas5P(), rtol=1e-7, atol=1e-9, saveat=[30.0])
    assert a.stats.naccept == b.stats.naccept and a.stats.njac == b.stats.njac
    torch.testing.assert_close(b.u[-1], a.u[-1], rtol=1e-9, atol=0)
