"""pysciml.problems: right-hand sides, analytic Jacobians, split/batched forms, exact solutions, references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pysciml as ps
from pysciml import problems

F64 = torch.float64

# name -> builder(dtype) returning an ODEProblem; a scale for random states around u0
BUILDERS = {
    "rober": lambda dtype: problems.rober(dtype=dtype),
    "van_der_pol_1e3": lambda dtype: problems.van_der_pol(1e3, dtype=dtype),
    "van_der_pol_1e6": lambda dtype: problems.van_der_pol(1e6, dtype=dtype),
    "hires": lambda dtype: problems.hires(dtype=dtype),
    "oregonator": lambda dtype: problems.oregonator(dtype=dtype),
    "brusselator_1d": lambda dtype: problems.brusselator_1d(N=8, dtype=dtype),
    "brusselator_1d_split": lambda dtype: problems.brusselator_1d(N=8, split=True, dtype=dtype),
    "lotka_volterra": lambda dtype: problems.lotka_volterra(dtype=dtype),
    "linear": lambda dtype: problems.linear(dtype=dtype)[0],
    "nonlinear_exact": lambda dtype: problems.nonlinear_exact(dtype=dtype)[0],
}


def call(fn, takes_p: bool, prob: ps.ODEProblem, t, u):
    return fn(t, u, prob.p) if takes_p else fn(t, u)


def rhs(prob: ps.ODEProblem, t, u):
    return call(prob.f, prob.f_takes_p, prob, t, u)


def jac(prob: ps.ODEProblem, t, u):
    return call(prob.jac, prob.jac_takes_p, prob, t, u)


def random_state(prob: ps.ODEProblem) -> torch.Tensor:
    u0 = prob.u0
    return u0 + 0.2 * (u0.abs() + 0.1) * torch.rand(u0.shape, dtype=u0.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_rhs_shape_and_dtype(name, dtype):
    prob = BUILDERS[name](dtype)
    assert prob.u0.dtype == dtype and not prob.batched
    t = torch.tensor(prob.tspan[0], dtype=dtype)
    du = rhs(prob, t, prob.u0)
    assert du.shape == prob.u0.shape and du.dtype == dtype
    assert bool(torch.isfinite(du).all())
    if prob.jac is not None:
        J = jac(prob, t, prob.u0)
        n = prob.state_size
        assert J.shape == (n, n) and J.dtype == dtype


@pytest.mark.parametrize("name", [n for n in BUILDERS if not n.endswith("split")])
def test_analytic_jacobian_matches_autodiff(name):
    prob = BUILDERS[name](F64)
    u = random_state(prob)
    t = torch.tensor(0.7, dtype=F64)
    J = jac(prob, t, u)
    Jad = torch.func.jacrev(lambda x: rhs(prob, t, x))(u)
    scale = float(Jad.abs().max())
    torch.testing.assert_close(J, Jad, rtol=1e-10, atol=1e-10 * scale)


def test_nonlinear_exact_tgrad_matches_autodiff():
    prob, _ = problems.nonlinear_exact()
    u = random_state(prob)
    t = torch.tensor(0.7, dtype=F64)
    dt = torch.func.jacrev(lambda s: rhs(prob, s, u))(t)
    torch.testing.assert_close(prob.tgrad(t, u, prob.p), dt, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("N", [2, 5, 16])
def test_split_brusselator_parts(N):
    split = problems.brusselator_1d(N=N, split=True)
    full = problems.brusselator_1d(N=N)
    assert isinstance(split, ps.SplitODEProblem) and split.linear_operator is not None
    L = split.linear_operator
    assert L.shape == (2 * N, 2 * N) and not L.is_sparse
    t = torch.tensor(0.3, dtype=F64)
    u = random_state(full)
    total = split.f_implicit(t, u, None) + split.f_explicit(t, u)
    torch.testing.assert_close(total, full.f(t, u), rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(split.f(t, u, None), full.f(t, u), rtol=1e-13, atol=1e-12)
    # L is exactly the Jacobian of the implicit (diffusion) part: J_full - J_explicit = L, and L u = f_implicit
    J_expl = torch.func.jacrev(lambda x: split.f_explicit(t, x))(u)
    torch.testing.assert_close(full.jac(t, u) - J_expl, L, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(torch.func.jacrev(lambda x: split.f_implicit(t, x, None))(u), L)
    # the implicit part is linear: no affine (boundary) term
    assert float(split.f_implicit(t, torch.zeros_like(u), None).abs().max()) == 0.0


def test_brusselator_ordering_and_initial_value():
    N = 4
    prob = problems.brusselator_1d(N=N)
    x = torch.arange(1, N + 1, dtype=F64) / (N + 1)
    torch.testing.assert_close(prob.u0[:N], 1 + torch.sin(2 * math.pi * x))
    torch.testing.assert_close(prob.u0[N:], torch.full((N,), 3.0, dtype=F64))
    # a spatially constant state at the boundary values: only the reaction term remains
    u = torch.cat((torch.ones(N, dtype=F64), torch.full((N,), 3.0, dtype=F64)))
    torch.testing.assert_close(prob.f(torch.tensor(0.0), u), torch.cat((torch.zeros(N), torch.zeros(N))).to(F64))


def test_batched_rober_equals_loop():
    g = torch.Generator().manual_seed(3)
    base = torch.tensor([0.04, 3e7, 1e4], dtype=F64)
    k = base * (1 + 0.2 * (torch.rand(5, 3, generator=g, dtype=F64) - 0.5))
    prob = problems.rober((0.0, 1e3), k=k)
    assert prob.batched and prob.u0.shape == (5, 3) and prob.p.shape == (5, 3)
    u = torch.rand(5, 3, generator=g, dtype=F64) * torch.tensor([1.0, 1e-4, 1.0], dtype=F64)
    t = torch.zeros(5, dtype=F64)
    F, J = prob.f(t, u, prob.p), prob.jac(t, u, prob.p)
    assert F.shape == (5, 3) and J.shape == (5, 3, 3)
    for b in range(5):
        single = problems.rober((0.0, 1e3), k=tuple(k[b].tolist()))
        torch.testing.assert_close(F[b], single.f(t[b], u[b], single.p), rtol=1e-15, atol=0)
        torch.testing.assert_close(J[b], single.jac(t[b], u[b], single.p), rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", [n for n in BUILDERS if not n.endswith("split")])
def test_rhs_and_jacobian_broadcast_over_a_batch(name):
    """Every f / jac indexes the state with ``...``: a (B, n) state with shared p gives the rows of singles."""
    prob = BUILDERS[name](F64)
    u = torch.stack([random_state(prob) for _ in range(3)])
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    F, J = rhs(prob, t, u), jac(prob, t, u)
    assert F.shape == u.shape and J.shape == (3, prob.state_size, prob.state_size)
    for b in range(3):
        torch.testing.assert_close(F[b], rhs(prob, t[b], u[b]), rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(J[b], jac(prob, t[b], u[b]), rtol=1e-14, atol=1e-14)


def test_rober_k_tensor_keeps_graph():
    k = torch.tensor([0.04, 3e7, 1e4], dtype=F64, requires_grad=True)
    prob = problems.rober(k=k)
    assert not prob.batched and prob.p.requires_grad
    prob.f(torch.tensor(0.0), torch.tensor([0.5, 1e-5, 0.5], dtype=F64), prob.p).sum().backward()
    assert k.grad is not None
    with pytest.raises(ValueError):
        problems.rober(k=torch.ones(2, 2, 3))


@pytest.mark.parametrize("which", ["linear", "nonlinear_exact", "linear_custom"])
def test_exact_solutions_satisfy_the_ode(which):
    if which == "linear_custom":
        A = torch.tensor([[-1.0, 3.0], [-3.0, -1.0]], dtype=F64)
        prob, exact = problems.linear(A, torch.tensor([0.3, -1.0], dtype=F64), (0.5, 2.0))
    else:
        prob, exact = getattr(problems, which)()
    t0, t1 = prob.tspan
    torch.testing.assert_close(exact(t0), prob.u0, rtol=1e-14, atol=1e-14)
    h = 1e-5
    for t in np.linspace(t0 + 0.1, t1, 5):
        fd = (exact(t + h) - exact(t - h)) / (2 * h)
        torch.testing.assert_close(fd, rhs(prob, torch.tensor(t, dtype=F64), exact(t)), rtol=1e-6, atol=1e-6)
    ts = torch.linspace(t0, t1, 4, dtype=F64)
    many = exact(ts)
    assert many.shape == (4, prob.state_size)
    torch.testing.assert_close(many[2], exact(float(ts[2])))


def test_reference_lookup():
    assert torch.equal(problems.reference("van_der_pol", 6.3), problems.reference("van_der_pol", 6.3, mu=1e3))
    assert problems.reference("brusselator_1d", 10.0).shape == (64,)
    assert problems.reference("brusselator_1d", 10.0, N=64).shape == (128,)
    assert problems.reference("rober", 1e5, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(KeyError, match="available"):
        problems.reference("rober", 3.0)
    with pytest.raises(KeyError):
        problems.reference("van_der_pol", 6.3, mu=5.0)
    recs = problems.references()
    assert len(recs) == 10
    for r in recs:
        assert r.method and r.source and r.agreement and 0 < r.accuracy < 1e-6
        assert all(math.isfinite(v) for v in r.values)


def test_published_references_transcribed():
    hires = problems.reference("hires", 321.8122)
    assert hires[0].item() == 0.7371312573325668e-3 and hires[7].item() == 0.2850001604814231e-2
    rober = problems.reference("rober", 1e11)
    assert rober.tolist() == [0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050]


# ------------------------------------------------------------------------- references vs a fresh SciPy solve
# (name, t1, params, builder, atol / rtol). ROBER at t = 1e11 (a 6 s re-solve) and Brusselator N = 64 are
# checked offline by scripts/compute_references.py only.
REF_CASES = {
    "rober-1e5": ("rober", 1e5, {}, lambda: problems.rober((0.0, 1e5)), [1e-4, 1e-9, 1e-4]),
    "vdp-mu1e3": ("van_der_pol", 6.3, {"mu": 1e3}, lambda: problems.van_der_pol(1e3), [1e-4, 1e-7]),
    "vdp-mu1e6": ("van_der_pol", 6.3, {"mu": 1e6}, lambda: problems.van_der_pol(1e6), [1e-4, 1e-10]),
    "hires": ("hires", 321.8122, {}, problems.hires, 1e-7),
    "oregonator": ("oregonator", 360.0, {}, problems.oregonator, 1e-4),
    "lotka_volterra": ("lotka_volterra", 10.0, {}, problems.lotka_volterra, 1e-4),
    "bruss-N32": ("brusselator_1d", 10.0, {"N": 32}, lambda: problems.brusselator_1d(N=32), 1e-4),
}


@pytest.mark.parametrize("name,t1,params,build,atol_scale", list(REF_CASES.values()), ids=list(REF_CASES))
def test_reference_agrees_with_scipy_radau(name, t1, params, build, atol_scale):
    scipy_integrate = pytest.importorskip("scipy.integrate")
    prob = build()

    def f(t, y):
        return rhs(prob, torch.tensor(t, dtype=F64), torch.from_numpy(y)).numpy()

    def J(t, y):
        return jac(prob, torch.tensor(t, dtype=F64), torch.from_numpy(y)).numpy()

    rtol = 1e-8
    sol = scipy_integrate.solve_ivp(f, (0.0, t1), prob.u0.numpy(), method="Radau", rtol=rtol,
                                    atol=rtol * np.asarray(atol_scale), jac=J)
    assert sol.success, sol.message
    ref = problems.reference(name, t1, **params).numpy()
    err = np.abs(sol.y[:, -1] - ref) / np.abs(ref)
    assert err.max() < 1e-7, err  # observed: 1e-14 .. 4e-10
    assert err.max() > 0.0  # an independent solve, not a copy
