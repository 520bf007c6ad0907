"""``compile=True`` with a continuous adjoint: the backward (augmented adjoint) solves compiled too.

:class:`~pysciml.sensitivity.augmented.AugmentedField` is one right-hand side for every backward pass of the same
``f``: eagerly its vector-Jacobian product is autograd's (:func:`~pysciml.sensitivity.vjp.vjp`), while Dynamo traces
it is ``torch.func.vjp`` of ``f`` made functional in the differentiated tensors. The default run checks the traced
arithmetic eagerly (``torch.func`` runs without Dynamo), the padding of the forward dense output and the cases that
stay eager; the heavy tests compile (seconds each) and compare gradients with the eager adjoint's and with finite
differences.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from fd import check_gradient

import pysciml as ps
from pysciml.engine import compiled_parts
from pysciml.engine.interpolation import DenseOutput, interpolate
from pysciml.sensitivity.augmented import (
    PAD_MIN,
    AugmentedField,
    CoreField,
    CoreJacobian,
    field_for,
    padded_dense,
    traceable_slots,
)

F64 = torch.float64


class Field(torch.nn.Module):
    """A small MLP vector field ``net(y) - 0.1 y`` on a state of shape ``(2, 3)``."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y) - 0.1 * y


def scaled(t: torch.Tensor, u: torch.Tensor, p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    k, c = p
    return -k * u + c * torch.sin(t) * u.flip(0)


Y0 = torch.tensor([[1.0, 0.5, -0.3], [0.2, 0.1, 0.4]], dtype=F64)


def grads_of(field: torch.nn.Module, y0: torch.Tensor, t: torch.Tensor, sensealg: ps.SensitivityAlgorithm,
             compile_: bool) -> list[torch.Tensor]:
    y0 = y0.clone().requires_grad_(True)
    out = ps.odeint(field, y0, t, method="dopri5", rtol=1e-8, atol=1e-10, sensealg=sensealg, compile=compile_)
    return list(torch.autograd.grad(out.pow(2).sum(), [y0, *field.parameters()]))


# ---------------------------------------------------------------------------------------------------- default run
@pytest.mark.parametrize("backsolve", [False, True])
def test_traced_vjp_equals_autograd_module(backsolve: bool) -> None:
    """The traced form's arithmetic (``torch.func.vjp`` through ``functional_call``), run eagerly, equals the
    eager field's autograd form on random states, adjoints and times."""
    field = Field()
    params = [q for q in field.parameters()]
    prob = ps.ODEProblem(field, Y0, (0.0, 1.0))
    slots = traceable_slots(prob, params)
    assert slots is not None and all(kind == "module" for kind, _ in slots)
    aug = AugmentedField(prob, [q.numel() for q in params], backsolve, True, 1.0, slots)
    gen = torch.Generator().manual_seed(1)
    extra = sum(q.numel() for q in params)
    for _ in range(5):
        t = torch.rand((), generator=gen, dtype=F64)
        y = torch.randn(2, 3, generator=gen, dtype=F64)
        a = torch.randn(2, 3, generator=gen, dtype=F64)
        z = torch.cat([y.reshape(-1)] * backsolve + [a.reshape(-1), torch.zeros(extra, dtype=F64)])
        dense = None if backsolve else (lambda tt, y=y: y)
        eager = aug(t, z, (None, dense, tuple(params)))
        fy, gy, gp = aug._traced_vjp(t, y, a, None, tuple(params))
        traced = torch.cat([fy.reshape(-1)] * backsolve + [-gy.reshape(-1)] + [-g.reshape(-1) for g in gp])
        torch.testing.assert_close(traced, eager, rtol=1e-13, atol=1e-14)


def test_traced_vjp_equals_autograd_p_leaves() -> None:
    """Differentiated tensors that are leaves of ``p`` are replaced there (no module)."""
    k = torch.tensor(0.7, dtype=F64, requires_grad=True)
    c = torch.tensor([0.3, -0.2, 0.5], dtype=F64, requires_grad=True)
    prob = ps.ODEProblem(scaled, Y0, (0.0, 1.0), p=(k, c))
    slots = traceable_slots(prob, [c, k])
    assert slots == [("p", 1), ("p", 0)]
    aug = AugmentedField(prob, [3, 1], False, True, 1.0, slots)
    t = torch.tensor(0.4, dtype=F64)
    y = torch.randn(2, 3, dtype=F64)
    a = torch.randn(2, 3, dtype=F64)
    z = torch.cat([a.reshape(-1), torch.zeros(4, dtype=F64)])
    eager = aug(t, z, ((k, c), lambda tt: y, (c, k)))
    _, gy, gp = aug._traced_vjp(t, y, a, (k, c), (c, k))
    torch.testing.assert_close(torch.cat([-gy.reshape(-1)] + [-g.reshape(-1) for g in gp]), eager)


def test_captured_tensor_keeps_backward_eager() -> None:
    """A differentiated tensor captured by a closure is neither a module parameter nor a leaf of ``p``: the
    backward solves stay eager (no field is cached for them), and the gradient is the eager adjoint's."""
    k = torch.tensor(0.7, dtype=F64, requires_grad=True)

    def f(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return -k * u

    prob = ps.ODEProblem(f, Y0, (0.0, 1.0))
    assert traceable_slots(prob, [k]) is None
    field, compiled = field_for(prob, [k], False, True, 1.0, True)
    assert not compiled and field.slots is None
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    out = ps.odeint(f, Y0, t, method="dopri5", rtol=1e-10, atol=1e-12, sensealg=ps.InterpolatingAdjoint())
    (g,) = torch.autograd.grad(out[-1].sum(), [k])
    exact = -(Y0 * torch.exp(-k.detach())).sum()  # d/dk sum(Y0 exp(-k))
    torch.testing.assert_close(g, exact, rtol=1e-7, atol=0)


def test_field_cache_keyed_by_f() -> None:
    """One field per ``f`` and signature (a compiled program is cached by its ``f``): the same module gives the
    same field, another module another."""
    a, b = Field(0), Field(1)
    pa, pb = list(a.parameters()), list(b.parameters())
    fa1, ca = field_for(ps.ODEProblem(a, Y0, (0.0, 1.0)), pa, False, True, 1.0, True)
    fa2, _ = field_for(ps.ODEProblem(a, Y0 + 1, (0.0, 2.0)), pa, False, True, 1.0, True)
    fb, _ = field_for(ps.ODEProblem(b, Y0, (0.0, 1.0)), pb, False, True, 1.0, True)
    assert ca and fa1 is fa2 and fb is not fa1
    f_back, _ = field_for(ps.ODEProblem(a, Y0, (0.0, 1.0)), pa, True, True, 1.0, True)
    assert f_back is not fa1


@pytest.mark.parametrize("steps", [1, 5, 16, 17, 40])
def test_padded_dense_interpolates_like_dense_output(steps: int) -> None:
    """The padded arrays give the dense output's values at random times inside the span, at step ends and past
    both ends (extrapolation from the first and last step), forwards and backwards in time."""
    gen = torch.Generator().manual_seed(steps)
    for direction in (1.0, -1.0):
        dense = DenseOutput(direction)
        edges = direction * torch.cumsum(torch.rand(steps + 1, generator=gen, dtype=F64) + 0.1, 0)
        for i in range(steps):
            dense.record(edges[i:i + 1], edges[i + 1:i + 2], torch.randn(5, 1, 4, generator=gen, dtype=F64))
        dense.finalize()
        padded = padded_dense(dense)
        assert padded[0].shape[0] == max(PAD_MIN, 1 << (steps - 1).bit_length()) and int(padded[3]) == steps - 1
        lo, hi = sorted((float(edges[0]), float(edges[-1])))
        t = torch.cat([lo + (hi - lo) * torch.rand(20, generator=gen, dtype=F64), edges,
                       torch.tensor([lo - 0.3, hi + 0.3], dtype=F64)])
        torch.testing.assert_close(interpolate(*padded[:3], direction, t, padded[3]), dense(t), rtol=0, atol=0)


def test_pieces_join_into_one_table() -> None:
    """Consecutive pieces of a solve's dense output (the re-solved checkpoint pieces) padded as one table give each
    piece's values inside it, the join's end value at the joint (the earlier piece's, as the eager pieces' lookup
    picks it) and extrapolation past both ends."""
    gen = torch.Generator().manual_seed(7)
    edges = torch.cumsum(torch.rand(12, generator=gen, dtype=F64) + 0.1, 0)
    pieces = []
    for lo, hi in ((0, 4), (4, 9), (9, 11)):
        dense = DenseOutput(1.0)
        for i in range(lo, hi):
            dense.record(edges[i:i + 1], edges[i + 1:i + 2], torch.randn(5, 1, 3, generator=gen, dtype=F64))
        dense.finalize()
        pieces.append(dense)
    table = padded_dense(*pieces)
    assert table[0].shape[0] == PAD_MIN and int(table[3]) == 10
    for k, (lo, hi) in enumerate(((0, 4), (4, 9), (9, 11))):
        inside = edges[lo] + (edges[hi] - edges[lo]) * torch.rand(6, generator=gen, dtype=F64)
        torch.testing.assert_close(interpolate(*table[:3], 1.0, inside, table[3]), pieces[k](inside), rtol=0, atol=0)
        end = edges[hi:hi + 1]
        torch.testing.assert_close(interpolate(*table[:3], 1.0, end, table[3]), pieces[k](end), rtol=0, atol=0)
    outside = torch.stack([edges[0] - 0.2, edges[11] + 0.2])
    want = torch.cat([pieces[0](outside[:1]), pieces[2](outside[1:])])
    torch.testing.assert_close(interpolate(*table[:3], 1.0, outside, table[3]), want, rtol=0, atol=0)


def test_core_field_and_jacobian_traced_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    """The implicit adjoints' ``a`` system: its traced branch (``torch.func.vjp``, ``jacfwd``; run eagerly by making
    ``torch.compiler.is_compiling`` answer yes) equals the eager one (autograd's VJP; the forward solve's autodiff
    Jacobian) on random points, with ``y(t)`` from a padded table; and the field is its Jacobian times ``a``."""
    from pysciml.sensitivity.continuous import _forward_jacobian

    prob = ps.ODEProblem(Field(), Y0, (0.0, 1.0))
    core = CoreField(prob, 1.0, None)
    jac = CoreJacobian(core, prob, _forward_jacobian(prob))
    gen = torch.Generator().manual_seed(2)
    dense = DenseOutput(1.0)
    dense.record(torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64), torch.randn(4, 1, 6, generator=gen, dtype=F64))
    P = (None, padded_dense(dense))
    for _ in range(3):
        t = torch.rand((), generator=gen, dtype=F64)
        a = torch.randn(6, generator=gen, dtype=F64)
        eager_f, eager_j = core(t, a, P), jac(t, a, P)
        with monkeypatch.context() as m:
            m.setattr(torch.compiler, "is_compiling", lambda: True)
            traced_f, traced_j = core(t, a, P), jac(t, a, P)
        torch.testing.assert_close(traced_f, eager_f, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(traced_j, eager_j, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(eager_j @ a, eager_f, rtol=1e-12, atol=1e-13)  # the system is linear in a


# ---------------------------------------------------------------------------------------------------- heavy
@pytest.mark.heavy  # compiles the forward and backward programs (about 5-40 s)
@pytest.mark.parametrize("sensealg", [ps.BacksolveAdjoint(), ps.InterpolatingAdjoint()], ids=["backsolve", "interp"])
def test_compiled_backward_matches_eager(sensealg: ps.SensitivityAlgorithm) -> None:
    """Gradients (``y0`` and every weight) of the compiled forward and backward solves equal the eager adjoint's to
    round-off on several ``y0``, time grids and spans; repeating those solves with new values compiles nothing (a
    backward interval with forward step ends inside and one without are two programs, as for any solve with and
    without ``tstops``)."""
    field = Field()
    for round_ in range(2):
        before = compiled_parts.compile_count()
        for i, span in enumerate((1.5, 1.0, 2.0, 0.7)):
            y0 = Y0 * (1.0 + 0.1 * i + 0.01 * round_)
            ti = torch.linspace(0.0, span, 4 + i, dtype=F64)
            for ge, gc in zip(grads_of(field, y0, ti, sensealg, False), grads_of(field, y0, ti, sensealg, True),
                              strict=True):
                torch.testing.assert_close(gc, ge, rtol=1e-11, atol=1e-13)
    assert compiled_parts.compile_count() == before


@pytest.mark.heavy
def test_compiled_backward_against_finite_differences() -> None:
    """The compiled backsolve gradient in ``y0`` and every weight against a central difference along a random
    direction (the difference of tighter eager solves: its own solver error stays below the tolerance)."""
    field = Field(2)
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    y0 = Y0.clone().requires_grad_(True)
    tensors = [y0, *field.parameters()]

    def loss() -> torch.Tensor:
        return ps.odeint(field, y0, t, method="dopri5", rtol=1e-8, atol=1e-10, sensealg=ps.BacksolveAdjoint(),
                         compile=True).pow(2).sum()

    def tight() -> torch.Tensor:
        return ps.odeint(field, y0, t, method="dopri5", rtol=1e-12, atol=1e-14).pow(2).sum()

    result = check_gradient(loss, tensors, h=1e-5, fd_loss=tight, fd_tensors=tensors)
    assert result.rel < 1e-6, str(result)


class Branchy(Field):
    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if float(y.sum()) > 100:  # data-dependent Python: no single graph
            return -y
        return super().forward(t, y)


@pytest.mark.heavy
def test_untraceable_f_warns_and_keeps_gradient() -> None:
    """An ``f`` Dynamo cannot trace whole: the forward and backward solves fall back to eager with warnings, and the
    gradient is the eager adjoint's."""
    field = Branchy()
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    eager = grads_of(field, Y0, t, ps.BacksolveAdjoint(), False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = grads_of(field, Y0, t, ps.BacksolveAdjoint(), True)
    assert any("compil" in str(w.message) for w in caught)
    for ge, gc in zip(eager, compiled, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-12, atol=1e-14)


@pytest.mark.heavy
def test_compiled_backward_subset_and_reversed_time() -> None:
    """``adjoint_params`` naming some of the module's parameters (the others are constants of the backward solves),
    and a solve backwards in time: the eager adjoint's gradients to round-off."""
    field = Field(3)
    subset = [field.net[0].weight, field.net[2].bias]
    for t, params in ((torch.linspace(0.0, 1.0, 4, dtype=F64), subset),
                      (torch.linspace(1.2, 0.0, 4, dtype=F64), None)):
        grads = []
        for flag in (False, True):
            y0 = Y0.clone().requires_grad_(True)
            out = ps.odeint_adjoint(field, y0, t, method="dopri5", rtol=1e-8, atol=1e-10, adjoint_params=params,
                                    compile=flag)
            grads.append(torch.autograd.grad(out.pow(2).sum(), [y0, *(params or field.parameters())]))
        for gc, ge in zip(grads[1], grads[0], strict=True):
            torch.testing.assert_close(gc, ge, rtol=1e-11, atol=1e-13)


class StiffField(torch.nn.Module):
    """ROBER's kinetics plus a small MLP correction (the stiff surrogate's shape): stiff, three states."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b, c = y[..., 0], y[..., 1], y[..., 2]
        base = torch.stack([-0.04 * a + 1e4 * b * c, 0.04 * a - 1e4 * b * c - 3e7 * b * b, 3e7 * b * b], -1)
        return base + 0.01 * self.net(y)


@pytest.mark.heavy  # compiles the stiff backward programs (about 30 s each)
@pytest.mark.parametrize("alg", [ps.Rodas5P(), ps.KenCarp4()], ids=["Rodas5P", "KenCarp4"])
def test_compiled_stiff_adjoint_matches_eager(alg: ps.Algorithm) -> None:
    """``odeint_adjoint`` with an implicit method (checkpointed InterpolatingAdjoint, the ``a`` system solved stiffly,
    the parameter gradient by quadrature): the compiled backward's gradients equal the eager one's to 1e-8 relative
    (the traced Jacobian's last bits can move a step decision of the adaptive backward solve), and a second round
    with another ``y0`` compiles nothing."""
    field = StiffField()
    t = torch.tensor([0.0, 0.1, 1.0, 10.0], dtype=F64)
    for round_ in range(2):
        if round_ == 1:
            before = compiled_parts.compile_count()
        grads = []
        for flag in (False, True):
            y0 = torch.tensor([1.0, 0.0, 0.01 * round_], dtype=F64, requires_grad=True)
            out = ps.odeint_adjoint(field, y0, t, alg=alg, rtol=1e-6, atol=1e-9, compile=flag)
            grads.append(torch.autograd.grad(out.pow(2).sum(), [y0, *field.parameters()]))
        for gc, ge in zip(grads[1], grads[0], strict=True):
            torch.testing.assert_close(gc, ge, rtol=1e-8, atol=1e-10 * float(ge.abs().max()))
    assert compiled_parts.compile_count() == before


@pytest.mark.heavy
@pytest.mark.parametrize("sensealg", [ps.InterpolatingAdjoint(checkpointing=True), ps.QuadratureAdjoint()],
                         ids=["checkpointed", "quadrature"])
def test_compiled_explicit_checkpointed_and_quadrature(sensealg: ps.SensitivityAlgorithm) -> None:
    """With an explicit method: the checkpointed adjoint (its re-solved pieces joined into one table) and the
    quadrature adjoint (the ``a`` system compiled, ``f`` at the quadrature nodes by one vmap call) give the eager
    gradients to round-off."""
    field = Field(5)
    t = torch.linspace(0.0, 1.5, 6, dtype=F64)
    eager = grads_of(field, Y0, t, sensealg, False)
    compiled = grads_of(field, Y0, t, sensealg, True)
    for gc, ge in zip(compiled, eager, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-11, atol=1e-13)

