"""``compile=True`` on CUDA tensors: the whole-loop programs (Rosenbrock batch, FBDF) and a per-step program (dense
output) give the eager CUDA solve's counters and values, without a fallback warning. Skipped without a GPU; written
before a GPU was lent to run them (``.ci/device`` runs every CUDA test)."""

from __future__ import annotations

import warnings

import pytest
import torch

import pysciml as ps
from pysciml import problems

pytestmark = [pytest.mark.cuda, pytest.mark.exhaustive,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]

F64 = torch.float64


def counters(sol: ps.ODESolution) -> tuple[int, ...]:
    s = sol.stats
    return s.naccept, s.nreject, s.nf, s.njac, s.nlu


def compiled_and_eager(prob: ps.ODEProblem, alg: ps.Algorithm, **kw) -> tuple[ps.ODESolution, ps.ODESolution]:
    """The compiled solve (a fallback warning is an error) and the eager one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        comp = ps.solve(prob, alg, compile=True, **kw)
    return comp, ps.solve(prob, alg, **kw)


def test_rodas5p_batch_whole_loop_on_cuda() -> None:
    """64 ROBER trajectories with perturbed rates, saving at two times: the whole loop as one program."""
    gen = torch.Generator().manual_seed(1)
    k = torch.tensor([0.04, 3e7, 1e4], dtype=F64).repeat(64, 1)
    k = (k * (1 + 0.1 * torch.rand(k.shape, generator=gen, dtype=F64))).cuda()
    prob = problems.rober((0.0, 1e3), k=k, device="cuda")
    comp, eager = compiled_and_eager(prob, ps.Rodas5P(), rtol=1e-6, atol=1e-10, saveat=[1.0, 1e3])
    assert comp.u.device.type == "cuda" and all(r is ps.ReturnCode.Success for r in comp.retcodes)
    assert counters(comp) == counters(eager)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-9, atol=1e-14)


def test_fbdf_whole_loop_on_cuda() -> None:
    """One ROBER trajectory to t = 1e4 with FBDF (the BDF loop program, its Jacobian and LU renewals)."""
    prob = problems.rober((0.0, 1e4), device="cuda")
    comp, eager = compiled_and_eager(prob, ps.FBDF(), rtol=1e-6, atol=1e-10, saveat=[1e4])
    assert comp.retcode is ps.ReturnCode.Success and comp.u.device.type == "cuda"
    assert counters(comp) == counters(eager)
    torch.testing.assert_close(comp.u, eager.u, rtol=1e-8, atol=1e-14)


def test_tsit5_dense_per_step_program_on_cuda() -> None:
    """A batch of Van der Pol trajectories with dense output (the per-step program in the eager loop)."""
    u0 = torch.tensor([2.0, 0.0], dtype=F64, device="cuda") * torch.linspace(0.9, 1.1, 16, dtype=F64,
                                                                            device="cuda")[:, None]
    prob = ps.ODEProblem(lambda t, u, p: torch.stack((u[:, 1], p * (1 - u[:, 0] ** 2) * u[:, 1] - u[:, 0]), -1),
                         u0, (0.0, 5.0), torch.tensor([1.0], dtype=F64, device="cuda"), batched=True)
    comp, eager = compiled_and_eager(prob, ps.Tsit5(), rtol=1e-6, atol=1e-8)
    assert counters(comp)[:3] == counters(eager)[:3]
    ts = torch.linspace(0.0, 5.0, 11, dtype=F64, device="cuda")
    torch.testing.assert_close(comp(ts), eager(ts), rtol=1e-9, atol=1e-12)
