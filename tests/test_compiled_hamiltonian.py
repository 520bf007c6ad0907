"""``compile=True`` on a :class:`~pysciml.HamiltonianProblem` (an HNN's learned ``H`` included).

Its vector field is a gradient of ``H``: ``torch.autograd.grad`` eagerly, ``torch.func.grad`` while Dynamo traces
(it does not trace the first). Three torch 2.13 limits shape what compiles, each checked here on a small case:

- ``torch.func.grad`` inside a ``while_loop`` whose closure parameters require grad gives wrong values, under the
  ``aot_eager`` backend too (values 0.04 apart on the repro below): pysciml's backend refuses such programs, so a
  differentiated solve runs the per-step programs (the splitting methods, explicit RK) or eagerly (Rosenbrock);
- a JVP of ``torch.func.grad`` inside a ``while_loop`` body fails to trace: compiled autodiff Jacobians of a
  HamiltonianProblem use reverse mode;
- a trace that failed inside a JVP left torch's forward-AD level entered, and the eager fallback then failed with
  "Nested forward mode AD is not supported": :func:`~pysciml.engine.compiled_parts._exit_dual_levels`.

The default run checks the pieces without inductor; the heavy tests compile (seconds each).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from loop_programs import python_while
from torch._higher_order_ops.while_loop import while_loop

import pysciml as ps
from pysciml.engine import compiled_parts
from pysciml.engine.compiled import _unsupported
from pysciml.solution import Stats

F64 = torch.float64
COUNTS = ("nf", "naccept", "nreject")


def mlp(n_in: int, width: int = 16, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(n_in, width), torch.nn.Tanh(), torch.nn.Linear(width, 1)).double()


class Energy(torch.nn.Module):
    """A learned, non-separable ``H(q, p)`` (one degree of freedom)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(2)

    def forward(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([q, p], -1)).squeeze(-1) + 0.5 * (q * q + p * p).sum(-1)


class Potential(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(1, seed=1)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.net(q).squeeze(-1) + 0.5 * (q * q).sum(-1)


def kinetic(p: torch.Tensor) -> torch.Tensor:
    return 0.5 * (p * p).sum(-1)


def start(b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(b, 1, generator=g, dtype=F64), torch.randn(b, 1, generator=g, dtype=F64)


def learned_problem() -> ps.HamiltonianProblem:
    return ps.HamiltonianProblem(Energy(), *start(), (0.0, 1.0))


def separable_problem() -> ps.HamiltonianProblem:
    return ps.HamiltonianProblem.from_parts(kinetic, Potential(), *start(), (0.0, 1.0))


def counts(sol: ps.ODESolution) -> dict[str, int]:
    return {k: getattr(sol.stats, k) for k in COUNTS}


def parameters(prob: ps.HamiltonianProblem) -> list[torch.Tensor]:
    return [w for m in prob.closure_modules() if isinstance(m, torch.nn.Module) for w in m.parameters()
            if w.ndim == 2]  # the weights (the last layer's bias has no effect on the dynamics)


def assert_same_gradients(prob: ps.HamiltonianProblem, comp: ps.ODESolution, eager: ps.ODESolution,
                          tol: float) -> None:
    """The gradients of ``|u(t1)|^2`` with respect to ``H``'s weights agree to ``tol``."""
    ws = parameters(prob)
    for a, b in zip(torch.autograd.grad(comp.u[-1].square().sum(), ws),
                    torch.autograd.grad(eager.u[-1].square().sum(), ws), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_vector_field_traces_with_func_grad() -> None:
    """The vector field under ``torch.compile(fullgraph=True)`` (Dynamo only): the eager values and parameter
    gradients to round-off; before, ``torch.autograd.grad`` broke the graph."""
    for prob in (learned_problem(), separable_problem()):
        u = prob.u0.clone()
        eager = prob.f(torch.tensor(0.0, dtype=F64), u, prob.p)
        traced = torch.compile(prob.f, backend="eager", fullgraph=True)(torch.tensor(0.0, dtype=F64), u, prob.p)
        torch.testing.assert_close(traced, eager, rtol=1e-14, atol=1e-14)
        ws = parameters(prob)
        g_eager = torch.autograd.grad(eager.square().sum(), ws)
        g_traced = torch.autograd.grad(traced.square().sum(), ws)
        for a, b in zip(g_traced, g_eager, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_exit_dual_levels_frees_a_leaked_level_only() -> None:
    """A forward-AD level left entered in torch's C++ state (as a failed trace left it) is exited, so JVPs work
    again; a caller's own level stays."""
    from torch.autograd import forward_ad

    torch._C._enter_dual_level()
    with pytest.raises(RuntimeError, match="Nested forward mode"):
        torch.func.jvp(torch.sin, (torch.ones(2),), (torch.ones(2),))
    compiled_parts._exit_dual_levels(-1)
    _, tangent = torch.func.jvp(torch.sin, (torch.ones(2),), (torch.ones(2),))
    torch.testing.assert_close(tangent, torch.cos(torch.ones(2)))
    compiled_parts._exit_dual_levels(-1)  # none held: nothing to do
    with forward_ad.dual_level():
        compiled_parts._exit_dual_levels(forward_ad._current_level)
        dual = forward_ad.make_dual(torch.ones(2), torch.ones(2))
        assert forward_ad.unpack_dual(dual * 3).tangent.tolist() == [3.0, 3.0]


def test_backend_error_message_names_the_reason() -> None:
    """A backend's failure is reported with the line after "... raised:" (the reason), not that line alone."""
    exc = RuntimeError("backend='python_wrapper_backend' raised:\nNotImplementedError: the reason\n\nmore")
    assert compiled_parts._first_line(exc) == "backend='python_wrapper_backend' raised: NotImplementedError: the reason"
    assert compiled_parts._first_line(RuntimeError("one\ntwo")) == "one"


def test_splitting_on_a_hamiltonian_problem_has_a_compiled_step() -> None:
    prob = separable_problem()
    stepper = ps.native.make_stepper(ps.Yoshida4(), prob, Stats(), torch.ones(1, 2), 1e-3, False)
    assert _unsupported(stepper) is None


def gradient_field(x: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
    g = torch.func.grad(lambda y: net(y).sum())(x)
    return torch.cat([g[..., 1:], -g[..., :1]], -1)


def loop_with_grad(u: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
    def body(i: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return i + 1, x + 0.1 * gradient_field(x, net)

    return while_loop(lambda i, x: i < 3, body, (torch.tensor(0), u))[1]


@pytest.mark.heavy
def test_func_grad_in_a_differentiated_loop_is_refused() -> None:
    """The torch limit behind the refusal, and the refusal: the repro's loop compiled by pysciml's backend fails
    (with the reason) instead of returning wrong values; without gradients it compiles and is right."""
    net, u = mlp(2), torch.randn(4, 2, dtype=F64)
    x = u
    for _ in range(3):
        x = x + 0.1 * gradient_field(x, net)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="torch.func.grad inside a differentiated while_loop"):
        torch.compile(loop_with_grad, backend=compiled_parts._backend, fullgraph=True)(u, net)
    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(loop_with_grad, backend=compiled_parts._backend, fullgraph=True)(u, net)
    torch.testing.assert_close(out, x.detach(), rtol=1e-13, atol=1e-13)


@pytest.mark.heavy
@pytest.mark.timeout(900)
@pytest.mark.parametrize("alg", [ps.VelocityVerlet(), ps.Yoshida4()], ids=lambda a: a.name)
def test_compiled_splitting_equals_eager(alg: ps.Algorithm) -> None:
    """A separable learned ``H``: without gradients, the whole fixed-step loop program; with them, the per-step
    program. No fallback warning; the eager counters, values to 1e-12 and parameter gradients to 1e-10."""
    prob = separable_problem()
    kw = {"dt": 0.02, "saveat": [0.5, 1.0]}
    with torch.no_grad():
        eager = ps.solve(prob, alg, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            comp = ps.solve(prob, alg, compile=True, **kw)
    assert comp.success and counts(comp) == counts(eager)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)
    eager = ps.solve(prob, alg, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        comp = ps.solve(prob, alg, compile=True, **kw)
    assert counts(comp) == counts(eager)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)
    assert_same_gradients(prob, comp, eager, 1e-10)


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_learned_hamiltonian_adaptive_solves_equal_eager() -> None:
    """A non-separable learned ``H``. Tsit5 with gradients: the differentiated loop is refused (one warning that
    names the reason), the per-step programs give the eager values and gradients. Rodas5P without gradients: the
    whole loop, its autodiff Jacobian by reverse mode, the eager steps; with gradients it solves eagerly after one
    warning (its per-step programs' backward does not compile), and gives the eager values."""
    prob = learned_problem()
    kw = {"rtol": 1e-8, "atol": 1e-10, "saveat": [0.5, 1.0]}
    ps.solve(prob, ps.Tsit5(), **kw)  # f's differentiability check, once per f and process: 3 counted f calls
    eager = ps.solve(prob, ps.Tsit5(), **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comp = ps.solve(prob, ps.Tsit5(), compile=True, **kw)
    why = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(why) == 1 and "torch.func.grad inside a differentiated while_loop" in why[0], why
    assert counts(comp) == counts(eager)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)
    assert_same_gradients(prob, comp, eager, 1e-10)

    with torch.no_grad():
        eager = ps.solve(prob, ps.Rodas5P(), **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            comp = ps.solve(prob, ps.Rodas5P(), compile=True, **kw)
    assert comp.success and counts(comp) == counts(eager)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-9, atol=1e-11)
    eager = ps.solve(prob, ps.Rodas5P(), **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comp = ps.solve(prob, ps.Rodas5P(), compile=True, **kw)
    assert comp.success and comp.u.requires_grad
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)


MIDPOINT_COUNTS = ("nf", "njac", "nlu", "nnonliniter", "nsolve", "nnonlinconvfail", "naccept")


def midpoint_solves(prob: ps.HamiltonianProblem, grad: bool) -> tuple[ps.ODESolution, ps.ODESolution]:
    """``ImplicitMidpoint`` eagerly and with ``compile=True`` (a fallback warning is an error)."""
    kw = {"dt": 0.05, "saveat": [0.5, 1.0]}
    with torch.set_grad_enabled(grad):
        ps.solve(prob, ps.ImplicitMidpoint(), **kw)  # f's differentiability check, once per f and process: 3 f calls
        eager = ps.solve(prob, ps.ImplicitMidpoint(), **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            comp = ps.solve(prob, ps.ImplicitMidpoint(), compile=True, **kw)
    assert comp.success
    assert {k: getattr(comp.stats, k) for k in MIDPOINT_COUNTS} == {k: getattr(eager.stats, k) for k in MIDPOINT_COUNTS}
    return eager, comp


@pytest.mark.parametrize("grad", [False, True], ids=["values", "gradients"])
def test_midpoint_program_uncompiled_equals_eager(monkeypatch: pytest.MonkeyPatch, grad: bool) -> None:
    """The implicit midpoint rule's stage-solve program run as its Python function (its ``while_loop`` a Python
    loop): the eager counters (every Newton iteration, Jacobian, LU), values and parameter gradients to 1e-13."""
    from pysciml.engine import compiled_midpoint

    monkeypatch.setattr(compiled_parts._Program, "run", lambda self, variant, stats, *a: self.raw[variant](*a))
    monkeypatch.setattr(compiled_midpoint, "while_loop", python_while)
    prob = learned_problem()
    eager, comp = midpoint_solves(prob, grad)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-13, atol=1e-13)
    assert eager.stats.nnonliniter > eager.stats.naccept  # Newton iterated
    if grad:
        assert_same_gradients(prob, comp, eager, 1e-12)


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_compiled_midpoint_equals_eager() -> None:
    """``ImplicitMidpoint`` compiled on a non-separable learned ``H``: no fallback, the eager counters, values to
    1e-12, and with gradients (the stage derivative attached eagerly around the program) the eager parameter
    gradients to 1e-10."""
    prob = learned_problem()
    eager, comp = midpoint_solves(prob, False)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)
    eager, comp = midpoint_solves(prob, True)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-12, atol=1e-12)
    assert_same_gradients(prob, comp, eager, 1e-10)


@pytest.mark.heavy
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("alg", [ps.KenCarp4(), ps.RadauIIA5(), ps.FBDF()], ids=lambda a: a.name)
def test_implicit_families_compile_a_learned_hamiltonian(alg: ps.Algorithm) -> None:
    """ARK, FIRK and BDF programs on a non-separable learned ``H`` without gradients (their autodiff Jacobians by
    reverse mode): no fallback, the eager steps, values to 1e-10."""
    prob = learned_problem()
    kw = {"rtol": 1e-7, "atol": 1e-9, "saveat": [0.5, 1.0]}
    with torch.no_grad():
        eager = ps.solve(prob, alg, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            comp = ps.solve(prob, alg, compile=True, **kw)
    assert comp.success and comp.stats.naccept == eager.stats.naccept and comp.stats.nreject == eager.stats.nreject
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-10, atol=1e-10)
