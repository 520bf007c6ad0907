"""Tensor constants inside the whole-loop program (engine/loop_constants.py): a ``f`` or ``jac`` that builds a
tensor from literals, as HIRES's analytic ``jac`` does, compiles inside ``torch.while_loop`` with inductor's C++
wrapper (in torch 2.13 the constant was left undeclared in the loop body and the C++ build failed, so such
solves fell back to the per-step programs).

The default run checks the graph pass on a hand-built loop graph (no compile); compiling even a tiny loop took
about 45 s on the loaded machine this was written on, and the HIRES solve compiles a whole Rodas5P loop (about
two minutes on a cold inductor cache), so those two are ``exhaustive``.
"""

from __future__ import annotations

import operator
import warnings

import pytest
import torch
from torch._higher_order_ops.while_loop import while_loop

import pysciml as ps
from pysciml.engine import compiled, compiled_loop, compiled_parts
from pysciml.engine.loop_constants import lift_loop_constants
from pysciml.problems import hires

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

F64 = torch.float64


def looped(x: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``n`` steps of ``x <- x A + b`` with ``A`` and ``b`` built from literals in the body, and a bound built from
    a literal in the condition: three tensor constants inside the loop's graphs."""

    def cond(k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (k < n) & (x.abs().max() < torch.tensor([1e6], dtype=x.dtype)[0])

    def body(k: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        A = torch.tensor([[0.5, -0.25], [0.125, 1.0625]], dtype=x.dtype)
        b = torch.tensor([0.75, -1.5], dtype=x.dtype)
        return k + 1, x @ A + b

    return tuple(while_loop(cond, body, (torch.zeros((), dtype=torch.long), x)))


def loop_graph() -> torch.fx.GraphModule:
    """:func:`looped` as the graph inductor's post-grad passes see (built by hand: no compile): the loop's
    condition and body are submodules, each constant a ``get_attr`` of a tensor inside them."""

    def sub(constants: dict[str, torch.Tensor], build) -> torch.fx.GraphModule:
        root, g = torch.nn.Module(), torch.fx.Graph()
        for name, value in constants.items():
            root.register_buffer(name, value)
        k, x, n = g.placeholder("k"), g.placeholder("x"), g.placeholder("n")
        g.output(build(g, k, x, n, {name: g.get_attr(name) for name in constants}))
        return torch.fx.GraphModule(root, g)

    def cond(g, k, x, n, c):
        below = g.call_function(torch.lt, (g.call_function(torch.amax, (g.call_function(torch.abs, (x,)),)),
                                           c["bound"]))
        return g.call_function(torch.logical_and, (g.call_function(torch.lt, (k, n)), below))

    def body(g, k, x, n, c):
        return (g.call_function(torch.add, (k, 1)),
                g.call_function(torch.add, (g.call_function(torch.mm, (x, c["A"])), c["b"])))

    root, g = torch.nn.Module(), torch.fx.Graph()
    root.cond = sub({"bound": torch.tensor(1e6, dtype=F64)}, cond)
    root.body = sub({"A": torch.tensor([[0.5, -0.25], [0.125, 1.0625]], dtype=F64),
                     "b": torch.tensor([0.75, -1.5], dtype=F64)}, body)
    k, x, n = g.placeholder("k"), g.placeholder("x"), g.placeholder("n")
    loop = g.call_function(torch.ops.higher_order.while_loop, (g.get_attr("cond"), g.get_attr("body"), (k, x), (n,)))
    g.output((g.call_function(operator.getitem, (loop, 0)), g.call_function(operator.getitem, (loop, 1))))
    return torch.fx.GraphModule(root, g)


def test_pass_moves_loop_constants_out_and_keeps_the_arithmetic():
    """After the pass no tensor constant is left inside the loop's graphs: the three are buffers of the outer
    module, passed as ``additional_inputs`` after the existing one; the rewritten graph computes the same."""
    gm = loop_graph()
    k0, x0, n = torch.zeros((), dtype=torch.long), torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=F64), torch.tensor(7)
    before = gm(k0, x0, n)
    lift_loop_constants()(gm.graph)
    (loop,) = [node for node in gm.graph.nodes if node.target is torch.ops.higher_order.while_loop]
    assert [a.op for a in loop.args[3]] == ["placeholder", "get_attr", "get_attr", "get_attr"]
    for attr in loop.args[:2]:
        inner = getattr(gm, attr.target)
        assert not [c for c in inner.graph.nodes if c.op == "get_attr"]
        assert len([c for c in inner.graph.nodes if c.op == "placeholder"]) == 2 + 1 + 3
    after = gm(k0, x0, n)
    assert int(after[0]) == int(before[0]) == 7
    torch.testing.assert_close(after[1], before[1], rtol=0.0, atol=0.0)
    assert isinstance(lift_loop_constants().uuid(), bytes)  # inductor's FX graph cache keys on it


@pytest.mark.exhaustive
def test_pass_lets_the_cpp_wrapper_compile_the_loop():
    """pysciml's backend (C++ wrapper with the pass) compiles :func:`looped`, whose loop graphs hold three tensor
    constants (without the pass: a C++ compile error, the constant undeclared); the result equals eager. (About
    45 s on the loaded 2-core machine this was written on, most of it inductor's start-up.)"""
    torch._dynamo.reset()
    try:
        fn = torch.compile(looped, fullgraph=True, dynamic=False, backend=compiled_parts._backend)
        x, n = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=F64), torch.tensor(7)
        k, y = fn(x, n)
    finally:
        torch._dynamo.reset()
    k_ref, y_ref = looped(x, n)
    assert int(k) == int(k_ref) == 7
    torch.testing.assert_close(y, y_ref, rtol=1e-15, atol=0.0)


def failed_loops() -> set[int]:
    """The whole-loop programs that failed to compile (``_Program.failed``), by identity."""
    return {id(prog) for base in compiled._CACHE.values() for key, prog in base.fused.items()
            if key[0] == "whole" and prog.failed is not None}


@pytest.mark.exhaustive
def test_hires_with_its_analytic_jacobian_takes_the_whole_loop():
    """HIRES (analytic ``jac`` with ``torch.tensor`` constants), Rodas5P, one float64 trajectory: the solve runs
    ``integrate_batched_whole`` without falling back, with the eager solve's step counts and statistics; its
    values differ from eager by round-off grown over 295 steps (measured 6.8e-11 absolute, 8.4e-8 relative in the
    smallest component, below the solve's rtol 1e-6)."""
    prob = hires()
    kw = {"rtol": 1e-6, "atol": 1e-10, "saveat": [0.0, 100.0, 321.8122]}
    calls: list[int] = []
    real_whole = compiled_loop.integrate_batched_whole

    def counting(*args, **kwargs):
        calls.append(1)
        return real_whole(*args, **kwargs)

    compiled_loop.integrate_batched_whole = counting
    failed_before = failed_loops()  # other tests in this process may have failed loops on purpose
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # the fallback warns
            sol = ps.solve(prob, ps.Rodas5P(), compile=True, **kw)
    finally:
        compiled_loop.integrate_batched_whole = real_whole
    assert calls == [1] and sol.retcode == ps.ReturnCode.Success
    assert failed_loops() == failed_before
    eager = ps.solve(prob, ps.Rodas5P(), **kw)
    for name in ("nf", "njac", "nlu", "nsolve", "naccept", "nreject", "nloop"):
        assert getattr(sol.stats, name) == getattr(eager.stats, name), name
    torch.testing.assert_close(sol.u, eager.u, rtol=1e-6, atol=1e-12)  # measured: 8.4e-8 relative (y8, t = 100)
    ref = ps.problems.reference("hires", 321.8122)
    err = float(((sol.u[-1] - ref).abs() / ref.abs()).max())
    assert err < 1e-3  # rtol 1e-6 on HIRES: the solve is right, not only equal to eager
