"""Memory held for the backward pass: continuous adjoints with checkpoints (and backsolve) do not grow with
the number of steps the way DiscreteAdjoint without checkpoints does.

Measured as the bytes of every tensor autograd keeps for backward (``saved_tensors_hooks`` sees the step
graph of DiscreteAdjoint and everything the adjoint Function saves), at two step counts."""

from __future__ import annotations

import pytest
import torch

import pysciml as ps
from pysciml.sensealg import BacksolveAdjoint, DiscreteAdjoint, InterpolatingAdjoint


def saved_bytes(sensealg, t_end: float) -> tuple[int, int]:
    total = [0]

    def pack(x: torch.Tensor) -> torch.Tensor:
        total[0] += x.numel() * x.element_size()
        return x

    A = torch.tensor([[0.0, 1.0], [-1.0, -0.01]], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, t_end], dtype=torch.float64)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        ys = ps.odeint(lambda s, y: A @ y, y0, t, alg=ps.Tsit5(), sensealg=sensealg, rtol=1e-8, atol=1e-10)
    steps = ps.solve(ps.ODEProblem(lambda s, y: A.detach() @ y, y0.detach(), (0.0, t_end)), ps.Tsit5(),
                     rtol=1e-8, atol=1e-10).stats.naccept
    ys.sum().backward()  # the memory is really used: backward works
    assert y0.grad is not None and A.grad is not None
    return total[0], steps


@pytest.mark.heavy
def test_memory_growth_with_steps():
    short_d, n_short = saved_bytes(DiscreteAdjoint(), 20.0)
    long_d, n_long = saved_bytes(DiscreteAdjoint(), 80.0)
    assert n_long > 3.5 * n_short
    assert long_d > 3 * short_d  # the whole step graph: grows with the steps
    short_b, _ = saved_bytes(BacksolveAdjoint(), 20.0)
    long_b, _ = saved_bytes(BacksolveAdjoint(), 80.0)
    assert long_b == short_b  # only the save-time states
    short_c, _ = saved_bytes(InterpolatingAdjoint(checkpointing=True), 20.0)
    long_c, _ = saved_bytes(InterpolatingAdjoint(checkpointing=True), 80.0)
    assert long_c < 0.02 * long_d  # one state per 50 steps
    assert long_c - short_c < 0.02 * (long_d - short_d)
