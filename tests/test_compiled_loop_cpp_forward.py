"""The forward graph of a differentiated ``while_loop`` program on inductor's C++ wrapper
(engine/compiled_cpp_loop.py, through compiled_parts.split_wrapper_backend).

torch 2.13's C++ wrapper cannot generate ``while_loop_stack_output``, the forward of ``while_loop``'s autograd;
pysciml's backend generates it while it compiles such a program. These tests compile with inductor's disk caches
off (a cached program would skip the compile they inspect) and read the generated code each forward graph got:
the C++ form (its per-iteration ``std::vector`` of rows), and inductor's Python wrapper (``while should_loop``)
where the C++ form declines, the fallback. Values and gradients must equal eager
``while_loop``'s, also for a loop that never turns (its stack is the initial carries). The last test, ``exhaustive``
(a whole DP5 loop program: minutes on a cold cache), checks an ``odeint`` solve as the spiral benchmark runs it.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch._higher_order_ops.while_loop import while_loop

import pysciml as ps
from pysciml.engine import compiled_cpp_loop, compiled_parts

F64 = torch.float64


@contextlib.contextmanager
def forward_sources() -> Iterator[list[str]]:
    """The generated code of each forward graph compiled inside (inductor's disk caches off)."""
    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config

    sources: list[str] = []
    inner = compiled_parts._cpp_backward_inner

    def spy(gm: torch.fx.GraphModule, example_inputs: list[Any], **kwargs: Any) -> Any:
        out = inner(gm, example_inputs, **kwargs)
        if not kwargs.get("is_backward"):
            sources.append(out.source_code)
        return out

    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
        compiled_parts._cpp_backward_inner = spy
        try:
            yield sources
        finally:
            compiled_parts._cpp_backward_inner = inner


def _cpp_stacked(source: str) -> bool:
    return "std::vector<RAIIAtenTensorHandle>" in source and "aoti_torch_cpu_cat" in source


def _loop(y0: torch.Tensor, A: torch.Tensor, b: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``y_n`` for ``y_{k+1} = y_k + 0.1 tanh(y_k A + b)``, ``n`` steps (a tensor: one program for every ``n``)."""
    def body(k: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return k + 1, y + 0.1 * torch.tanh(y @ A + b)

    return while_loop(lambda k, y: k < n[0], body, (torch.zeros((), dtype=torch.long), y0))[1]


def _values_and_grads(fn: Any, y0: torch.Tensor, A: torch.Tensor, b: torch.Tensor,
                      n: int) -> list[torch.Tensor]:
    leaves = [x.detach().clone().requires_grad_() for x in (y0, A, b)]  # clone keeps y0's strides
    y = fn(*leaves, torch.tensor([n]))
    y.pow(2).sum().backward()
    return [y.detach(), *(x.grad if x.grad is not None else torch.zeros_like(x) for x in leaves)]


def _compare(y0: torch.Tensor, tag: str) -> list[str]:
    """Values and gradients of ``_loop`` compiled (a code object of its own, ``tag``: Dynamo keeps compiled entries
    per code object) and eager, for 5, 1 and 0 iterations; returns the forward graphs' generated code."""
    gen = torch.Generator().manual_seed(0)
    A, b = torch.randn(2, 2, dtype=F64, generator=gen), torch.randn(2, dtype=F64, generator=gen)
    code = _loop.__code__.replace(co_name=f"_loop_{tag}")
    fn = types.FunctionType(code, _loop.__globals__, code.co_name, _loop.__defaults__, _loop.__closure__)
    compiled = torch.compile(fn, backend=compiled_parts.split_wrapper_backend, fullgraph=True, dynamic=False)
    with forward_sources() as sources:
        for n in (5, 1, 0):  # 0: the loop never turns
            got, want = _values_and_grads(compiled, y0, A, b, n), _values_and_grads(_loop, y0, A, b, n)
            for a, e in zip(got, want, strict=True):
                torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)
    return sources


@pytest.mark.timeout(900)
def test_differentiated_while_loop_forward_on_cpp_wrapper() -> None:
    """Contiguous carries: one forward graph, on the C++ wrapper, for 5, 1 and 0 iterations; values and
    gradients equal eager ``while_loop``'s."""
    gen = torch.Generator().manual_seed(1)
    sources = _compare(torch.randn(3, 2, dtype=F64, generator=gen), "cpp")
    assert len(sources) == 1 and _cpp_stacked(sources[0])


@pytest.mark.timeout(900)
def test_declined_forward_falls_back_to_python_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the C++ form declines (here: every carry taken for non-contiguous, as one would be), the forward
    graph compiles on the Python wrapper, with the same values and gradients. (A carry that is really not
    contiguous fails in torch 2.13's Python wrapper too: its ``torch.stack`` keeps the carry's strides, where the
    graph expects contiguous ones.)"""
    monkeypatch.setattr(compiled_cpp_loop, "_contiguous", lambda size, stride: False)
    gen = torch.Generator().manual_seed(1)
    sources = _compare(torch.randn(3, 2, dtype=F64, generator=gen), "declined")
    assert len(sources) == 1 and not _cpp_stacked(sources[0]) and "while should_loop" in sources[0]


@pytest.mark.timeout(900)
def test_cpp_forward_off_keeps_python_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CPP_FORWARD = False``: the forward graph on the Python wrapper (the comparison setting)."""
    monkeypatch.setattr(compiled_parts, "CPP_FORWARD", False)
    gen = torch.Generator().manual_seed(2)
    sources = _compare(torch.randn(3, 2, dtype=F64, generator=gen), "off")
    assert len(sources) == 1 and not _cpp_stacked(sources[0])


class _Field(torch.nn.Module):
    """The spiral benchmark's vector field, ``net(y^3)`` with a 2-16-2 tanh MLP."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y**3)


@pytest.mark.exhaustive
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_odeint_loop_program_forward_on_cpp_wrapper(dtype: torch.dtype) -> None:
    """``odeint(..., compile=True)`` as the spiral benchmark calls it (one trajectory of 10 starts x 2, dopri5,
    10 times): the loop program's forward graph is C++, and the solution and the parameter and ``y0`` gradients
    equal the eager solve's to round-off (measured: float64 within 1.5e-15, float32 within 2.4e-7, absolute)."""
    field = _Field().to(dtype)
    gen = torch.Generator().manual_seed(3)
    y0 = torch.randn(10, 2, generator=gen).to(dtype)
    t = torch.linspace(0.0, 2.0, 10, dtype=dtype)

    def run(compile: bool) -> list[torch.Tensor]:
        field.zero_grad()
        y = y0.clone().requires_grad_()
        sol = ps.odeint(field, y, t, method="dopri5", compile=compile)
        sol.abs().mean().backward()
        return [sol.detach(), y.grad, *(p.grad for p in field.parameters())]

    eager = run(False)
    with forward_sources() as sources:
        whole = run(True)
    assert len(sources) == 1 and _cpp_stacked(sources[0])
    tol = 1e-12 if dtype == F64 else 1e-6
    for a, e in zip(whole, eager, strict=True):
        torch.testing.assert_close(a, e, rtol=tol, atol=tol)
