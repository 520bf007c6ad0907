"""The explicit-RK loop program without save points inside the span (engine/compiled_loop.py, engine/compiled.py).

Saving only at ``t0`` and ``t1`` (the per-step overhead benchmark saves only ``t1``), the loop program carries no
save buffer: the points at ``t1`` are written once after the loop from the final state, those a trajectory did
not reach stay NaN. The compiled explicit step sums its stages by scaled adds (not a stack and a matrix product;
but DP8's).
Both run here uncompiled (the ``while_loop`` as a Python loop: seconds, no compiler) against the eager loop:
values to round-off, step counts and statistics equal.
"""

from __future__ import annotations

import math

import pytest
import torch
from loop_programs import counts, run_loops_uncompiled, solve_through

import pysciml as ps
from pysciml.engine import compiled_loop

F64 = torch.float64


def vdp(t: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Van der Pol on a ``(B, 2)`` state with a ``(B, 1)`` ``mu``."""
    x, y = u[..., 0], u[..., 1]
    return torch.stack((y, p[..., 0] * (1 - x * x) * y - x), dim=-1)


def batch(tspan: tuple[float, float] = (0.0, 3.0)) -> ps.ODEProblem:
    """Three trajectories with mu = 0.5, 1.5, 3: they take different numbers of steps, so they reach ``t1`` at
    different loop iterations (the early ones stand still in the later iterations)."""
    u0 = torch.tensor([[2.0, 0.0], [1.0, -0.5], [0.5, 1.0]], dtype=F64)
    p = torch.tensor([[0.5], [1.5], [3.0]], dtype=F64)
    return ps.ODEProblem(vdp, u0, tspan, p, batched=True)


def both(monkeypatch: pytest.MonkeyPatch, prob: ps.ODEProblem, alg: ps.Algorithm,
         **kw) -> tuple[ps.ODESolution, ps.ODESolution]:
    """The eager solve and the loop program's, run uncompiled."""
    run_loops_uncompiled(monkeypatch, compiled_loop)
    eager = ps.solve(prob, alg, **kw)
    whole = solve_through(compiled_loop, "run_whole", prob, alg, **kw)
    return eager, whole


@pytest.mark.parametrize("alg", [ps.Tsit5(), ps.DP5(), ps.BS3(), ps.DP8()], ids=lambda a: type(a).__name__)
@pytest.mark.parametrize("saveat", [[3.0], [0.0, 3.0]], ids=["t1", "t0-t1"])
def test_saving_at_the_ends_equals_eager(monkeypatch: pytest.MonkeyPatch, alg: ps.Algorithm,
                                         saveat: list[float]) -> None:
    """Tsit5, DP5, BS3 (their long stage rows summed by scaled adds) and DP8 (two error estimates; its sums kept as
    the eager step's, engine/compiled.py says why) give the eager values and counters; the save points at ``t1``
    hold each trajectory's final state."""
    eager, whole = both(monkeypatch, batch(), alg, rtol=1e-6, atol=1e-8, saveat=saveat)
    assert eager.success and whole.success
    assert counts(whole) == counts(eager)
    assert eager.stats.nloop >= 15  # steps enough for the trajectories to reach t1 at different iterations
    torch.testing.assert_close(whole.t, eager.t)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-10, atol=1e-10)
    assert not torch.isnan(whole.u).any()


def test_backward_in_time_equals_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Integrated from 3 back to 0, saving at both ends: the point at ``t1 = 0`` is the final state."""
    eager, whole = both(monkeypatch, batch((3.0, 0.0)), ps.Tsit5(), rtol=1e-6, atol=1e-8, saveat=[3.0, 0.0])
    assert eager.success and whole.success
    assert counts(whole) == counts(eager)
    torch.testing.assert_close(whole.u, eager.u, rtol=1e-10, atol=1e-10)


def test_stopped_by_maxiters_leaves_t1_unsaved(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop stopped by ``maxiters`` before some trajectories reach ``t1``: their ``t1`` point stays NaN, as in the
    eager solve; the one that got there (the least stiff) has its final state there."""
    eager, whole = both(monkeypatch, batch(), ps.Tsit5(), rtol=1e-6, atol=1e-8, saveat=[0.0, 3.0], maxiters=40)
    assert [str(r) for r in whole.retcodes] == [str(r) for r in eager.retcodes]
    assert counts(whole) == counts(eager)
    reached = ~torch.isnan(eager.u[-1, :, 0])
    assert 0 < int(reached.sum()) < 3
    assert torch.equal(~torch.isnan(whole.u[-1, :, 0]), reached)
    torch.testing.assert_close(whole.u[:, reached], eager.u[:, reached], rtol=1e-10, atol=1e-10)
    assert math.isnan(float(whole.u[-1, ~reached].sum()))


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=str)
def test_traced_scaled_sums_equal_stage_sums(dtype: torch.dtype) -> None:
    """The compiled explicit step's stage sums (engine/compiled.py ``_scaled_sums``), traced by Dynamo (its
    ``eager`` backend: no inductor), equal :class:`~pysciml.engine.stages.StageSum`'s matrix form to round-off on
    every Tsit5 row, its solution and its error weights; run untraced they are StageSum's, bit for bit."""
    from pysciml.engine.compiled import _scaled_sums
    from pysciml.engine.explicit_rk import _constants
    from pysciml.engine.tableaus.explicit import TSIT5

    k = _constants(TSIT5, dtype, torch.device("cpu"), False)
    sums = [*k.rows[1:], k.b, k.btilde]
    gen = torch.Generator().manual_seed(1)
    ks = [torch.randn(64, 3, generator=gen, dtype=dtype) for _ in range(TSIT5.stages)]
    traced = torch.compile(lambda v: [_scaled_sums(s)(v)[0] for s in sums], backend="eager", fullgraph=True)
    eps = torch.finfo(dtype).eps
    for got, s in zip(traced(ks), sums, strict=True):
        want = s(ks)[0]
        assert want is not None and got is not None
        torch.testing.assert_close(got, want, rtol=64 * eps, atol=64 * eps)
    for s in sums:
        assert torch.equal(_scaled_sums(s)(ks)[0], s(ks)[0])
