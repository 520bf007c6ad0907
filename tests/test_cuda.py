"""The engine on CUDA tensors: same answers as on the CPU, dtype and device kept. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

import pysciml as ps
from pysciml import problems

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4()], ids=lambda a: a.name)
def test_rober_on_cuda_matches_cpu(alg):
    cpu = ps.solve(problems.rober((0.0, 1e3)), alg, rtol=1e-6, atol=1e-10, saveat=[1.0, 1e3],
                   maxiters=10**6)
    gpu = ps.solve(problems.rober((0.0, 1e3), device="cuda"), alg, rtol=1e-6, atol=1e-10, saveat=[1.0, 1e3],
                   maxiters=10**6)
    assert gpu.u.device.type == "cuda" and gpu.u.dtype == torch.float64
    torch.testing.assert_close(gpu.u.cpu(), cpu.u, rtol=1e-8, atol=1e-14)


def test_batched_rober_on_cuda_and_gradients():
    k = torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64, device="cuda").repeat(64, 1)
    k = k * (1 + 0.1 * torch.rand_like(k))
    sol = ps.solve(problems.rober((0.0, 1e2), k=k, device="cuda"), ps.Rodas5P(), rtol=1e-6, atol=1e-10,
                   saveat=[1e2])
    assert all(r is ps.ReturnCode.Success for r in sol.retcodes)
    assert sol.u.shape == (1, 64, 3) and sol.u.device.type == "cuda"
    torch.testing.assert_close(sol.u[-1].sum(dim=-1), torch.ones(64, dtype=torch.float64, device="cuda"))
