"""A right-hand side that cannot be traced (data-dependent Python): ``compile=True`` falls back to the eager solve.

The first solve of the signature warns (the whole-loop program, then the step program failed) and gives the eager
solve's values and counters; later solves of the same signature run eagerly at once: no warning and no second trace
of ``f`` (each failed trace cost 0.1-2 s, every solve, before the failure was remembered on the program). KenCarp4's
fallback after the whole loop failed used to run the program's functions uncompiled, whose Newton ``torch.while_loop``
Dynamo traces even outside a compile: the solve raised ``UserError`` instead of solving.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import pysciml as ps

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

F64 = torch.float64
COUNTS = ("nf", "njac", "nlu", "nsolve", "naccept", "nreject", "nloop", "nnonliniter", "nnonlinconvfail")
TRACED = [0]  # calls of f while Dynamo traces it


def branchy(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A damped rotation behind a data-dependent branch (a host read of ``u``: no single graph)."""
    if torch.compiler.is_compiling():
        TRACED[0] += 1
    if float(u.sum()) > -1e30:
        x, y = u[..., 0], u[..., 1]
        return torch.stack((-0.5 * x + y, -x - 0.5 * y), dim=-1)
    return u


@pytest.mark.parametrize("alg,batched", [
    (ps.KenCarp4(), False), (ps.Rodas5P(), True),
    pytest.param(ps.KenCarp4(), True, marks=pytest.mark.exhaustive),
    pytest.param(ps.Rodas5P(), False, marks=pytest.mark.exhaustive),
    pytest.param(ps.Tsit5(), False, marks=pytest.mark.exhaustive),
    pytest.param(ps.RadauIIA5(), False, marks=pytest.mark.exhaustive)],
    ids=["KenCarp4", "Rodas5P-batch", "KenCarp4-batch", "Rodas5P", "Tsit5", "RadauIIA5"])
def test_untraceable_f_solves_eagerly_and_fails_once(alg: ps.algorithms.Algorithm, batched: bool) -> None:
    u0 = torch.tensor([[1.0, 0.5], [0.25, -1.0]] if batched else [1.0, 0.5], dtype=F64)
    prob = ps.ODEProblem(branchy, u0, (0.0, 2.0), batched=batched)
    kw = {"rtol": 1e-7, "atol": 1e-9, "saveat": [0.5, 1.0, 2.0]}
    ref = ps.solve(prob, alg, **kw)
    with pytest.warns(RuntimeWarning, match="failed"):
        first = ps.solve(prob, alg, compile=True, **kw)
    traced = TRACED[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the failure was said at the first solve
        second = ps.solve(prob, alg, compile=True, **kw)
    assert TRACED[0] == traced, "the failed program was traced again"
    for sol in (first, second):
        assert sol.success
        torch.testing.assert_close(sol.u, ref.u, rtol=0, atol=0)
        assert {k: getattr(sol.stats, k) for k in COUNTS} == {k: getattr(ref.stats, k) for k in COUNTS}
