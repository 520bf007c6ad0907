"""Solves under ``torch.inference_mode()``: inference tensors keep no version counter, so the checks that detect an
``f`` writing into its input (or into a tensor it returned before) are skipped there; the solves themselves must
give the values and counters of the same solve in grad mode."""

from __future__ import annotations

import warnings

import pytest
import torch

import pysciml as ps
from pysciml import problems
from pysciml.ensemble import EnsembleBatched, EnsembleProblem

F64 = torch.float64
SAVES = torch.tensor([0.0, 0.5, 1.0], dtype=F64)


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.Rodas5P(), ps.KenCarp4(), ps.RadauIIA5(), ps.FBDF(), ps.QNDF()],
                         ids=lambda a: a.name)
def test_solve_under_inference_mode_equals_grad_mode(alg: ps.Algorithm) -> None:
    prob = problems.van_der_pol(5.0, (0.0, 1.0))
    ref = ps.solve(prob, alg, rtol=1e-7, atol=1e-9, saveat=SAVES)
    with torch.inference_mode():
        sol = ps.solve(prob, alg, rtol=1e-7, atol=1e-9, saveat=SAVES)
    assert sol.success and sol.u.is_inference()
    assert (sol.stats.nf, sol.stats.naccept, sol.stats.nreject) == (ref.stats.nf, ref.stats.naccept, ref.stats.nreject)
    torch.testing.assert_close(sol.u, ref.u, rtol=0, atol=0)
    # grad mode afterwards is unaffected, with the in-place check active again
    again = ps.solve(prob, alg, rtol=1e-7, atol=1e-9, saveat=SAVES)
    torch.testing.assert_close(again.u, ref.u, rtol=0, atol=0)


def test_odeint_and_a_batched_ensemble_under_inference_mode() -> None:
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    y0 = torch.tensor([1.0, 2.0], dtype=F64)
    with torch.inference_mode():
        y = ps.odeint(lambda t, y: -y, y0, t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y, y0 * torch.exp(-t)[:, None], rtol=1e-8, atol=1e-10)

    def osc(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.stack((u[..., 1], -p[..., 0] * u[..., 0]), -1)

    base = ps.ODEProblem(osc, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 1.0), torch.tensor([4.0], dtype=F64))
    eprob = EnsembleProblem(base, prob_func=lambda prob, i, rep: prob.remake(p=torch.tensor([4.0 + i], dtype=F64)))
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sols = ps.solve(eprob, ps.Tsit5(), trajectories=3, ensemble=EnsembleBatched(batch_size=3), rtol=1e-10,
                        atol=1e-12, saveat=[1.0])
    for i in range(3):  # u(1) = cos(w), w = sqrt(4 + i)
        w = (4.0 + i) ** 0.5
        assert abs(float(sols[i].u[-1, 0]) - torch.cos(torch.tensor(w, dtype=F64)).item()) < 1e-8


def test_in_place_f_is_still_refused_in_grad_mode() -> None:
    def bad(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        u.mul_(1.0)
        return -u

    with pytest.raises(ps.InputError, match="modified its input u in place"):
        ps.solve(ps.ODEProblem(bad, torch.ones(2, dtype=F64), (0.0, 1.0)), ps.Tsit5())
