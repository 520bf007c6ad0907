"""A matrix of gradients against finite differences (issue 10): every implicit method, the checkpointed discrete
adjoint on a stiff problem, float32, batches, mass matrices (incl. an index-1 DAE), backward time for every
sensealg, and the fixed-step ROS3P / IMEXSSP2 / ARS222 discrete gradients.

Every check is one directional derivative along a seeded random direction in the space of all inputs
(``tests/fd.py``): autograd's ``sum_i <dL/dtheta_i, v_i>`` against the Richardson-extrapolated central difference
(relative step 1e-3, truncation O(h^4)) of a tighter solve (Rodas5P or Vern7 at rtol 1e-12: noise ~1e-9 relative),
computed once per problem. Bounds are in units of the solve's rtol, set from measured errors (in the docstrings;
2-core CPU, torch 2.13): the discrete adjoint is the exact derivative of the discrete solution, which differs
from the true gradient by about the solution's own error (<< rtol here); a continuous adjoint adds its backward
solve's error (~rtol). "Right" is 10 x rtol unless a docstring says why a case needs more.

Run with ``-s`` to see every measured error.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from fd import autograd_projection, fd_projection, random_directions

import pysciml as ps
from pysciml.sensealg import BacksolveAdjoint, DiscreteAdjoint, InterpolatingAdjoint, QuadratureAdjoint

F64, F32 = torch.float64, torch.float32
IMPLICIT = [ps.Rosenbrock23(), ps.Rodas4(), ps.Rodas5P(), ps.KenCarp3(), ps.KenCarp4(), ps.KenCarp5(), ps.Kvaerno5()]
SENSEALGS = [DiscreteAdjoint(), DiscreteAdjoint(checkpoints=2), InterpolatingAdjoint(),
             InterpolatingAdjoint(checkpointing=True), QuadratureAdjoint(), BacksolveAdjoint()]
SA_IDS = ["discrete", "discrete-ckpt", "interp", "interp-ckpt", "quadrature", "backsolve"]
CONTINUOUS = SENSEALGS[2:]
CONTINUOUS_IDS = SA_IDS[2:]


def _name(x: object) -> str:
    return getattr(x, "name", str(x))


def relative(ad: float, fd: float) -> float:
    return abs(ad - fd) / abs(fd)


def report(what: str, ad: float, fd: float) -> float:
    err = relative(ad, fd)
    print(f"\n[gradient] {what}: relative error {err:.2e} (autograd {ad:.12g}, finite differences {fd:.12g})")
    return err


class Reference:
    """Finite-difference directional derivatives, computed once per problem and direction (module-level cache)."""

    cache: dict[tuple, float] = {}

    @classmethod
    def get(cls, key: str, loss: Callable[[], torch.Tensor], tensors: list[torch.Tensor],
            directions: list[torch.Tensor], h: float = 1e-3) -> float:
        full = (key, h, tuple(tuple(v.double().flatten().tolist()) for v in directions))
        if full not in cls.cache:
            cls.cache[full] = fd_projection(loss, tensors, directions, h=h, richardson=True)
        return cls.cache[full]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


# --------------------------------------------------------------------------------- every implicit method
# Van der Pol, mu = 100, on (0, 1) from (2, 0): the fast initial layer then the slow manifold, eigenvalues down
# to about -300. The parameter mu is a leaf tensor in p (f written out here: problems.van_der_pol(mu=tensor)
# builds p = mu.reshape(1), a non-leaf view, which the continuous adjoints count twice; see
# test_gradient_property.py). Loss: a weighted sum of both states at t = 0.25, 0.5, 1.
VDP_SAVE = [0.25, 0.5, 1.0]
VDP_W = torch.tensor([[1.0, 0.3], [-0.7, 0.2], [0.5, 0.1]], dtype=F64)


def vdp_f(t, u, p):
    return torch.stack((u[1], p[0] * ((1 - u[0] ** 2) * u[1]) - u[0]))


def vdp_tensors(dtype=F64) -> list[torch.Tensor]:
    return [torch.tensor([100.0], dtype=dtype, requires_grad=True),
            torch.tensor([2.0, 0.0], dtype=dtype, requires_grad=True)]


def vdp_loss(tensors, alg, sensealg, rtol, atol=None) -> Callable[[], torch.Tensor]:
    mu, u0 = tensors

    def loss() -> torch.Tensor:
        prob = ps.ODEProblem(vdp_f, u0, (0.0, 1.0), mu)
        sol = ps.solve(prob, alg, rtol=rtol, atol=rtol if atol is None else atol, saveat=VDP_SAVE,
                       sensealg=sensealg)
        return (sol.u * VDP_W.to(u0.dtype)).sum()
    return loss


def vdp_reference(directions) -> float:
    tensors = vdp_tensors()
    return Reference.get("vdp", vdp_loss(tensors, ps.Rodas5P(), None, 1e-12), tensors, directions)


def vdp_rtol(alg) -> float:
    """rtol 1e-8 (1e-6 for Rosenbrock23, an order-2 method that warns below 1e-5 and needs ~10x the steps)."""
    return 1e-6 if isinstance(alg, ps.Rosenbrock23) else 1e-8


# Measured relative errors / rtol (rtol 1e-8; Rosenbrock23 1e-6): discrete <= 0.14 (KenCarp3), Rosenbrock23 0.04;
# continuous (every variant takes the same stiff quadrature path: a-system solved by the method itself, the
# parameter integral by 5-node Gauss on its steps) Rosenbrock23 1.1, Rodas4 0.02, Rodas5P 0.002, KenCarp3 0.09,
# KenCarp4 0.05, Kvaerno5 0.7, KenCarp5 16: its third-order dense output, which supplies y(t) to the adjoint, is
# the least accurate (cf. test_property_adaptive), hence 100 x rtol for it; 10 x rtol for the rest.
def vdp_bound(alg, sensealg) -> float:
    loose = isinstance(alg, ps.KenCarp5) and not isinstance(sensealg, DiscreteAdjoint | None)
    return (100 if loose else 10) * vdp_rtol(alg)


def _implicit_cases(sensealgs, ids, exhaustive_from: int):
    for alg in IMPLICIT:
        for k, (sa, sid) in enumerate(zip(sensealgs, ids, strict=True)):
            marks = [pytest.mark.exhaustive] if k >= exhaustive_from else []
            yield pytest.param(alg, sa, id=f"{alg.name}-{sid}", marks=marks)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:rtol=.*is below what:UserWarning")
@pytest.mark.parametrize(("alg", "sensealg"), list(_implicit_cases(
    [DiscreteAdjoint(), InterpolatingAdjoint(checkpointing=True), InterpolatingAdjoint(), QuadratureAdjoint()],
    ["discrete", "interp-ckpt", "interp", "quadrature"], exhaustive_from=2)))
def test_implicit_methods_stiff_van_der_pol(alg, sensealg):
    """Every implicit method with the discrete adjoint and the stiff default (checkpointed interpolating), by
    default; plain interpolating and quadrature behind the exhaustive marker (same stiff quadrature path)."""
    tensors = vdp_tensors()
    directions = random_directions(tensors, seed=1)
    ad = autograd_projection(vdp_loss(tensors, alg, sensealg, vdp_rtol(alg)), tensors, directions)
    err = report(f"VdP {alg.name} {_name(sensealg)}", ad, vdp_reference(directions))
    assert err < vdp_bound(alg, sensealg)


# ------------------------------------------------------------------------- checkpointed discrete, stiff
# These go through odeint with f closing over the parameters (ps.solve runs the same checkpointed segments,
# pysciml/sensitivity/discrete.py). Before 5c68894 the implicit methods' autodiff Jacobian failed inside
# torch.utils.checkpoint and fell back to finite differences, which the ESDIRK discrete adjoint's implicit-function
# step then used: ROBER KenCarp4 5.3e-6, Kvaerno5 1.5e-5 relative error (now 1.2e-7 and 1e-8).
# A fallback to finite-difference Jacobians (slow, and inexact ESDIRK gradients) fails these tests:
NO_FD_JACOBIAN = "error:.*autodiff of f failed:RuntimeWarning"
ROBER_T = torch.tensor([0.0, 1.0, 10.0, 100.0, 1e3], dtype=F64)
ROBER_W = torch.tensor([1.0, 1e4, 0.5], dtype=F64)


def rober_tensors() -> list[torch.Tensor]:
    return [torch.tensor([0.04, 3e7, 1e4], dtype=F64, requires_grad=True)]


def rober_loss(tensors, alg, sensealg, rtol) -> Callable[[], torch.Tensor]:
    (k,) = tensors

    def f(t, u):
        y1, y2, y3 = u
        return torch.stack((-k[0] * y1 + k[2] * y2 * y3, k[0] * y1 - k[2] * y2 * y3 - k[1] * y2**2, k[1] * y2**2))

    def loss() -> torch.Tensor:
        u0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
        ys = ps.odeint(f, u0, ROBER_T, alg=alg, rtol=rtol, atol=rtol * 1e-4, sensealg=sensealg)
        return (ys[1:] * ROBER_W).sum()
    return loss


@pytest.mark.slow
@pytest.mark.filterwarnings(NO_FD_JACOBIAN)
@pytest.mark.parametrize(("alg", "rtol", "factor"), [
    pytest.param(ps.Rodas5P(), 1e-8, 10, id="Rodas5P", marks=pytest.mark.exhaustive),  # test_gradients covers it
    pytest.param(ps.KenCarp4(), 1e-8, 30, id="KenCarp4", marks=pytest.mark.heavy),
    pytest.param(ps.Kvaerno5(), 1e-8, 10, id="Kvaerno5", marks=pytest.mark.exhaustive),
])
def test_checkpointed_discrete_adjoint_on_stiff_rober(alg, rtol, factor):
    """ROBER to t = 1e3 (stiffness ratio ~1e11), gradient of states at t = 1, 10, 100, 1e3 with respect to the
    three rate constants (relative steps), DiscreteAdjoint(checkpoints=3): three segments re-solved during the
    backward pass. Reference: Rodas5P at rtol 1e-10 (1.5e-8 from Rodas5P at 1e-11 and from its discrete
    gradient). Measured: Rodas5P 1.5e-8, Kvaerno5 1e-8, KenCarp4 1.2e-7: 30 x rtol for KenCarp4, whose discrete
    gradient without checkpoints is 0.9e-7 off too (its own solution error on ROBER), 10 x rtol for the others."""
    tensors = rober_tensors()
    directions = random_directions(tensors, seed=2)
    ref_t = rober_tensors()
    fd = Reference.get("rober", rober_loss(ref_t, ps.Rodas5P(), None, 1e-10), ref_t, directions)
    ad = autograd_projection(rober_loss(tensors, alg, DiscreteAdjoint(checkpoints=3), rtol), tensors, directions)
    assert report(f"ROBER {alg.name} DiscreteAdjoint(checkpoints=3)", ad, fd) < factor * rtol


@pytest.mark.slow
@pytest.mark.filterwarnings(NO_FD_JACOBIAN)
@pytest.mark.parametrize("alg", [ps.Rodas5P(), ps.KenCarp4(), ps.Kvaerno5()], ids=_name)
@pytest.mark.parametrize("k", [2, 4])
def test_checkpointed_discrete_adjoint_on_stiff_van_der_pol(alg, k):
    """Van der Pol mu = 100 (as above) through odeint, DiscreteAdjoint(checkpoints=k), rtol 1e-8, with respect to
    mu, y0 and the save times. Measured <= 1e-9."""
    mu, u0 = vdp_tensors()
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=F64, requires_grad=True)
    w = torch.linspace(-1.0, 1.0, 10, dtype=F64).reshape(5, 2)

    def make(tensors, sa, alg, rtol):
        mu, u0, t = tensors

        def loss():
            ys = ps.odeint(lambda s, u: vdp_f(s, u, mu), u0, t, alg=alg, sensealg=sa, rtol=rtol, atol=rtol)
            return (ys * w).sum()
        return loss

    directions = random_directions([mu, u0, t], seed=3)
    ref_t = [*vdp_tensors(), t.detach().clone()]
    fd = Reference.get("vdp-odeint", make(ref_t, None, ps.Rodas5P(), 1e-12), ref_t, directions)
    ad = autograd_projection(make([mu, u0, t], DiscreteAdjoint(checkpoints=k), alg, 1e-8), [mu, u0, t], directions)
    assert report(f"VdP odeint {alg.name} DiscreteAdjoint(checkpoints={k})", ad, fd) < 10 * 1e-8


# ------------------------------------------------------------------------------------------------ float32
# float32 gradients against the float64 finite difference of a float64 twin (same f, same values, same
# direction): the float32 solve cannot resolve rtol below ~1e-6 (eps = 1.2e-7, accumulated over hundreds of
# steps), and a float32 finite difference would be dominated by rounding (eps / h ~ 1e-4). So rtol 1e-5 and a
# bound of 10 x rtol = 1e-4 (measured in the docstring).
@pytest.mark.parametrize("sensealg", [DiscreteAdjoint(), InterpolatingAdjoint(checkpointing=True),
                                      QuadratureAdjoint()], ids=["discrete", "interp-ckpt", "quadrature"])
@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()], ids=_name)
def test_float32_gradients(alg, sensealg):
    """Van der Pol with mu = 5 (Tsit5 too) in float32 at rtol 1e-5. Measured: <= 2e-5."""
    t32 = [torch.tensor([5.0], dtype=F32, requires_grad=True), torch.tensor([2.0, 0.0], dtype=F32, requires_grad=True)]
    t64 = [torch.tensor([5.0], dtype=F64, requires_grad=True), torch.tensor([2.0, 0.0], dtype=F64, requires_grad=True)]
    directions = random_directions(t32, seed=4)
    ad = autograd_projection(vdp_loss(t32, alg, sensealg, 1e-5, 1e-6), t32, directions)
    fd = Reference.get("vdp5", vdp_loss(t64, ps.Rodas5P(), None, 1e-12), t64, [v.double() for v in directions])
    assert report(f"float32 VdP(5) {alg.name} {sensealg}", ad, fd) < 1e-4


# ---------------------------------------------------------------------------------------------- batched
# B = 3 Van der Pol trajectories with their own mu (p of shape (3, 1)) and u0 ((3, 2)), batched=True: the
# discrete adjoint through the batched loop, against the finite difference of three unbatched tight solves.
BATCH_MU = [[5.0], [10.0], [20.0]]
BATCH_U0 = [[2.0, 0.0], [1.5, -0.5], [-1.0, 1.0]]


def vdp_batched_f(t, u, p):
    return torch.stack((u[:, 1], p[:, 0] * ((1 - u[:, 0] ** 2) * u[:, 1]) - u[:, 0]), dim=-1)


def batch_tensors() -> list[torch.Tensor]:
    return [torch.tensor(BATCH_MU, dtype=F64, requires_grad=True),
            torch.tensor(BATCH_U0, dtype=F64, requires_grad=True)]


def batched_loss(tensors, alg, sensealg, rtol) -> Callable[[], torch.Tensor]:
    mu, u0 = tensors

    def loss():
        prob = ps.ODEProblem(vdp_batched_f, u0, (0.0, 1.0), mu, batched=True)
        sol = ps.solve(prob, alg, rtol=rtol, atol=rtol, saveat=VDP_SAVE, sensealg=sensealg)
        return (sol.u * VDP_W[:, None]).sum()  # sol.u: (S, B, 2)
    return loss


def unbatched_reference_loss(tensors) -> Callable[[], torch.Tensor]:
    mu, u0 = tensors
    return lambda: sum(vdp_loss([mu[b], u0[b]], ps.Rodas5P(), None, 1e-12)() for b in range(len(mu)))


@pytest.mark.heavy
@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()], ids=_name)
def test_batched_discrete_adjoint(alg):
    """rtol 1e-8. (1) The batched gradient equals the sum of the three unbatched solves' discrete gradients with
    the same method and rtol (per-trajectory step control: the same steps); measured <= 1e-11, bound 1e-9.
    (2) Against finite differences: measured Tsit5 9.2e-8, Rodas5P 4.8e-8, KenCarp4 1.3e-6, all equal to the
    unbatched solves' errors (KenCarp4's own loss is 2e-7 = 20 x rtol off on this mildly stiff batch). Bound
    20 x rtol, 300 x rtol for KenCarp4."""
    tensors = batch_tensors()
    directions = random_directions(tensors, seed=5)
    ref_t = batch_tensors()
    # relative step 1e-4: at 1e-3 (a step of 0.02 in mu = 20) the Richardson truncation is ~1e-6 here
    fd = Reference.get("batched", unbatched_reference_loss(ref_t), ref_t, directions, h=1e-4)
    ad = autograd_projection(batched_loss(tensors, alg, DiscreteAdjoint(), 1e-8), tensors, directions)
    mu, u0 = tensors
    one_by_one = autograd_projection(lambda: sum(vdp_loss([mu[b], u0[b]], alg, None, 1e-8)() for b in range(3)),
                                     tensors, directions)
    assert report(f"batched VdP {alg.name} discrete vs unbatched", ad, one_by_one) < 1e-9
    bound = (300 if isinstance(alg, ps.KenCarp4) else 20) * 1e-8
    assert report(f"batched VdP {alg.name} discrete", ad, fd) < bound


def test_batched_result_layout_is_what_the_reference_assumes():
    """sol.u of a batched solve is (S, B, n): the batched loss above weights time and state like the unbatched."""
    mu, u0 = batch_tensors()
    with torch.no_grad():
        sol = ps.solve(ps.ODEProblem(vdp_batched_f, u0, (0.0, 1.0), mu, batched=True), ps.Rodas5P(), rtol=1e-10,
                       atol=1e-10, saveat=VDP_SAVE[1:])
        one = ps.solve(ps.ODEProblem(vdp_f, u0[1], (0.0, 1.0), mu[1]), ps.Rodas5P(), rtol=1e-10, atol=1e-10,
                       saveat=VDP_SAVE[1:])
    assert tuple(sol.u.shape) == (2, 3, 2)
    torch.testing.assert_close(sol.u[:, 1], one.u, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("sensealg", CONTINUOUS, ids=CONTINUOUS_IDS)
def test_continuous_adjoints_refuse_batched_problems(sensealg):
    mu, u0 = batch_tensors()
    with pytest.raises(ps.InputError, match="batched"):
        batched_loss([mu, u0], ps.Tsit5(), sensealg, 1e-6)()


# ------------------------------------------------------------------------------------------ mass matrices
# M du/dt = f with a constant M, Rosenbrock methods. Nonsingular M (the gradient also flows to M itself), and
# a singular one: the index-1 DAE x' = -k0 x + z, 0 = z - k1 x^2 (so x' = -k0 x + k1 x^2), u0 made consistent
# from the leaf x0 inside the loss.
MASS = [[2.0, 0.5], [0.5, 1.0]]
# The continuous adjoints ignored M before 5c68894 (they solved a' = -J^T a instead of M^T a' = -J^T a: relative
# errors 0.07 and 0.6 here, and None for a mass matrix requiring grad); they now refuse a mass matrix.


def mass_f(t, u, k):
    return torch.stack((-k[0] * u[0] + u[1] ** 2, -10 * k[1] * u[1] + u[0]))


def dae_f(t, u, k):
    return torch.stack((-k[0] * u[0] + u[1], u[1] - k[1] * u[0] ** 2))


def mass_tensors(singular: bool) -> list[torch.Tensor]:
    k = torch.tensor([1.5, 0.8], dtype=F64, requires_grad=True)
    if singular:
        return [k, torch.tensor([1.0], dtype=F64, requires_grad=True)]
    return [k, torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True),
            torch.tensor(MASS, dtype=F64, requires_grad=True)]


def mass_loss(tensors, alg, sensealg, rtol, singular: bool) -> Callable[[], torch.Tensor]:
    def loss():
        if singular:
            k, x0 = tensors
            u0 = torch.cat((x0, k[1:] * x0**2))
            prob = ps.ODEProblem(dae_f, u0, (0.0, 1.0), k, mass_matrix=torch.diag(torch.tensor([1.0, 0.0],
                                                                                                 dtype=F64)))
        else:
            k, u0, M = tensors
            prob = ps.ODEProblem(mass_f, u0, (0.0, 1.0), k, mass_matrix=M)
        sol = ps.solve(prob, alg, rtol=rtol, atol=rtol, saveat=[0.3, 1.0], sensealg=sensealg)
        return (sol.u * torch.tensor([1.0, 0.7], dtype=F64)).sum()
    return loss


ROSENBROCK = [ps.Rodas5P(), ps.Rodas4(), ps.Rosenbrock23()]


def _mass_cases():
    for singular in (False, True):
        for alg in ROSENBROCK:
            for sa, sid in [(DiscreteAdjoint(), "discrete"), (InterpolatingAdjoint(checkpointing=True), "interp-ckpt"),
                            (QuadratureAdjoint(), "quadrature"), (BacksolveAdjoint(), "backsolve")]:
                marks = []
                if not isinstance(sa, DiscreteAdjoint) and not isinstance(alg, ps.Rodas5P):
                    marks.append(pytest.mark.exhaustive)
                if singular and isinstance(alg, ps.Rosenbrock23):
                    marks.append(pytest.mark.exhaustive)  # ~30 s: order 2 on the DAE at rtol 1e-6
                yield pytest.param(singular, alg, sa, id=f"{'dae' if singular else 'mass'}-{alg.name}-{sid}",
                                   marks=marks)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:rtol=.*is below what:UserWarning")
@pytest.mark.parametrize(("singular", "alg", "sensealg"), list(_mass_cases()))
def test_mass_matrix_gradients(singular, alg, sensealg):
    """Right, or (continuous adjoints only) refused with an InputError naming the mass matrix.

    Measured (discrete): nonsingular M, to (k, u0, M): Rodas5P 1.4e-9, Rodas4 2.6e-9 at rtol 1e-8, Rosenbrock23
    1.7e-5 at rtol 1e-6; DAE, to (k, x0): Rodas5P 1.7e-9, Rodas4 2.0e-7 (rtol 1e-8; Rodas4 is order 3 on the
    algebraic part), Rosenbrock23 5.5e-7 (rtol 1e-6). Bound 10 x rtol, 30 x for Rodas4 on the DAE and 50 x for
    Rosenbrock23 (order 2: its global error accumulates to ~17 x rtol here, cf. its rtol warning)."""
    rtol = 1e-6 if isinstance(alg, ps.Rosenbrock23) else 1e-8
    tensors = mass_tensors(singular)
    directions = random_directions(tensors, seed=6)
    ref_t = mass_tensors(singular)
    key = "dae" if singular else "mass"
    fd = Reference.get(key, mass_loss(ref_t, ps.Rodas5P(), None, 1e-12, singular), ref_t, directions)
    try:
        ad = autograd_projection(mass_loss(tensors, alg, sensealg, rtol, singular), tensors, directions)
    except ps.InputError as err:  # refusing a mass matrix is acceptable for a continuous adjoint
        assert not isinstance(sensealg, DiscreteAdjoint) and "mass" in str(err).lower(), err
        return
    factor = 50 if isinstance(alg, ps.Rosenbrock23) else 30 if singular and isinstance(alg, ps.Rodas4) else 10
    bound = factor * rtol
    assert report(f"{key} {alg.name} {sensealg}", ad, fd) < bound


# ---------------------------------------------------------------------------------------------- backward time
# y' = A y + c sin(y) integrated from t = 1 down to t = 0. A has eigenvalues with real parts 5 and 0.5, so the
# backward solve is stable (it decays as t decreases; for Rodas5P / KenCarp4 the rate-5 mode is the stiff one).
# The continuous adjoints' parameter gradient had the wrong sign here (relative error exactly 2.00): the
# quadrature's weights must carry the orientation of the forward solve.
BACK_T = torch.tensor([1.0, 0.75, 0.5, 0.0], dtype=F64)
BACK_W = torch.tensor([[0.0, 0.0], [1.0, -0.4], [0.3, 0.8], [-0.6, 0.5]], dtype=F64)


def back_tensors() -> list[torch.Tensor]:
    return [torch.tensor([0.8, -0.6], dtype=F64, requires_grad=True),
            torch.tensor([[5.0, 1.0], [-1.0, 0.5]], dtype=F64, requires_grad=True),
            torch.tensor([0.4, -0.7], dtype=F64, requires_grad=True),
            BACK_T.clone().requires_grad_()]


def back_loss(tensors, alg, sensealg, rtol, api: str) -> Callable[[], torch.Tensor]:
    y0, A, c, t = tensors

    def loss():
        if api == "odeint":
            ys = ps.odeint(lambda s, y: A @ y + c * torch.sin(y), y0, t, alg=alg, sensealg=sensealg, rtol=rtol,
                           atol=rtol)
        else:
            prob = ps.ODEProblem(lambda s, u, p: p[0] @ u + p[1] * torch.sin(u), y0, (1.0, 0.0), (A, c))
            ys = ps.solve(prob, alg, rtol=rtol, atol=rtol, saveat=BACK_T, sensealg=sensealg).u
        return (ys * BACK_W).sum()
    return loss


BACK_ALGS = [(ps.Tsit5(), 1e-10), (ps.Rodas5P(), 1e-8), (ps.KenCarp4(), 1e-8)]


def _back_cases():
    for alg, rtol in BACK_ALGS:
        for sa, sid in zip(SENSEALGS, SA_IDS, strict=True):
            for api in ("odeint", "solve"):
                marks = [pytest.mark.exhaustive] if api == "solve" and sid in ("discrete-ckpt", "interp") else []
                yield pytest.param(alg, rtol, sa, api, id=f"{alg.name}-{sid}-{api}", marks=marks)


@pytest.mark.slow
@pytest.mark.filterwarnings(NO_FD_JACOBIAN)
@pytest.mark.parametrize(("alg", "rtol", "sensealg", "api"), list(_back_cases()))
def test_backward_time_gradients(alg, rtol, sensealg, api):
    """Decreasing t (odeint: gradients to y0, A, c and the times t) and decreasing tspan (solve: to y0, A, c).
    Measured: <= 3e-10 (Tsit5, rtol 1e-10) and <= 6e-9 (Rodas5P, KenCarp4, rtol 1e-8); the sign bug gave 2.00
    on the parameter part. Bound 10 x rtol."""
    tensors = back_tensors()
    if api == "solve":
        tensors = tensors[:3]
    # seeds where the projection does not nearly cancel (|<g, v>| >= 0.3 sum_i |g_i| |v_i|; seed 7 on the solve
    # case gives 0.05, which inflates relative errors 20x)
    directions = random_directions(tensors, seed=7 if api == "odeint" else 8)
    ref_t = back_tensors()[: len(tensors)]
    fd = Reference.get(f"back-{api}", back_loss(ref_t + back_tensors()[len(tensors):], ps.Vern7(), None, 1e-12, api),
                       ref_t, directions)
    full = tensors + back_tensors()[len(tensors):]
    ad = autograd_projection(back_loss(full, alg, sensealg, rtol, api), tensors, directions)
    assert report(f"backward {api} {alg.name} {sensealg}", ad, fd) < 10 * rtol


# ----------------------------------------------------------------------------------------- fixed steps
# ROS3P (fixed-step Rosenbrock) on Van der Pol mu = 100, and the fixed-step IMEX methods IMEXSSP2 / ARS222 on a
# split problem with a learnable matrix implicit part: the discrete adjoint is the exact derivative of the
# fixed-step map, so it is compared with finite differences of the same fixed-step solve (no solver error
# between them). Measured <= 2e-10; bound 1e-8 (Richardson truncation and rounding of the differences).
def test_ros3p_fixed_step_discrete_gradient():
    tensors = vdp_tensors()
    directions = random_directions(tensors, seed=8)

    def loss():
        mu, u0 = tensors
        prob = ps.ODEProblem(vdp_f, u0, (0.0, 1.0), mu)
        sol = ps.solve(prob, ps.ROS3P(), adaptive=False, dt=0.01, saveat=VDP_SAVE, rtol=1e-10, atol=1e-10)
        return (sol.u * VDP_W).sum()

    ad = autograd_projection(loss, tensors, directions)
    fd = fd_projection(loss, tensors, directions, h=1e-3, richardson=True)
    assert report("ROS3P fixed dt 0.01", ad, fd) < 1e-8
    assert relative(ad, vdp_reference(directions)) < 1e-2  # and near the true gradient (order 3, dt = 0.01)


@pytest.mark.parametrize("alg", [ps.IMEXSSP2(), ps.ARS222()], ids=_name)
def test_fixed_step_imex_discrete_gradient(alg):
    tensors = [torch.tensor([[-20.0, 5.0], [5.0, -30.0]], dtype=F64, requires_grad=True),
               torch.tensor([0.7, -0.3], dtype=F64, requires_grad=True),
               torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)]
    directions = random_directions(tensors, seed=9)

    def loss():
        L, w, u0 = tensors
        prob = ps.SplitODEProblem(L, lambda t, u, p: p * torch.sin(u) + 0.1 * torch.cos(t), u0, (0.0, 1.0), w)
        sol = ps.solve(prob, alg, adaptive=False, dt=0.01, saveat=[0.5, 1.0], rtol=1e-10, atol=1e-12)
        return (sol.u * torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=F64)).sum()

    ad = autograd_projection(loss, tensors, directions)
    fd = fd_projection(loss, tensors, directions, h=1e-3, richardson=True)
    assert report(f"{alg.name} fixed dt 0.01", ad, fd) < 1e-8


# ------------------------------------------------------------------------- the adjoint's parameter integral
# dL/dp = int a^T df/dp dt. QuadratureAdjoint computes it by 5-node Gauss-Legendre on the adjoint's own steps;
# InterpolatingAdjoint with an explicit method integrates it as part of an augmented ODE. f = A y + c sin(3t)
# cos(y): the integrand varies on the time scale of the solution itself, so a low-order quadrature shows.
# Only the parameters (A, c) are perturbed: the y0 part of a projection does not involve the integral and
# would hide its error. Measured error / rtol (5 nodes): Tsit5 <= 0.6, Vern7 <= 0.05, DP5 <= 1.7; with 2
# nodes (the injected fault) QuadratureAdjoint gives Tsit5 5.6 / 11 / 41, Vern7 14 / 3 / 71, DP5 21 / 66 / 92
# at rtol 1e-6 / 1e-8 / 1e-10. Bound 10 x rtol.
def quad_tensors() -> list[torch.Tensor]:
    return [torch.tensor([[-0.5, 1.2], [-1.1, -0.3]], dtype=F64, requires_grad=True),
            torch.tensor([0.4, -0.7], dtype=F64, requires_grad=True)]


def quad_loss(tensors, alg, sensealg, rtol) -> Callable[[], torch.Tensor]:
    A, c = tensors
    y0 = torch.tensor([1.0, -0.5], dtype=F64)
    t = torch.linspace(0.0, 2.0, 3, dtype=F64)
    w = torch.linspace(0.5, 1.5, 6, dtype=F64).reshape(3, 2)
    return lambda: (ps.odeint(lambda s, y: A @ y + c * torch.sin(3 * s) * torch.cos(y), y0, t, alg=alg,
                              sensealg=sensealg, rtol=rtol, atol=rtol) * w).sum()


@pytest.mark.parametrize("rtol", [1e-6, 1e-8, 1e-10])
@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.DP5(), ps.Vern7()], ids=_name)
@pytest.mark.parametrize("sensealg", [QuadratureAdjoint(), InterpolatingAdjoint()], ids=["quadrature", "interp"])
def test_parameter_integral_of_the_adjoint(sensealg, alg, rtol):
    tensors = quad_tensors()
    directions = random_directions(tensors, seed=0)
    ref_t = quad_tensors()
    fd = Reference.get("quad", quad_loss(ref_t, ps.Vern7(), None, 1e-13), ref_t, directions)
    ad = autograd_projection(quad_loss(tensors, alg, sensealg, rtol), tensors, directions)
    assert report(f"parameter integral {alg.name} rtol {rtol:g} {sensealg}", ad, fd) < 10 * rtol
