"""The eager RadauIIA5/3 step's cost in dispatched torch operations (issue 19: its fixed per-step cost is what
separates it from SciPy's Radau on small stiff systems).

A ``TorchDispatchMode`` counts every aten operation of a ROBER solve except those inside the user's ``f`` and
``jac`` (paused there), per attempted step, on ROBER to t1 = 100 (RadauIIA5 at rtol 1e-7, 146 steps; RadauIIA3 at
1e-5, 143 steps; atol = 1e-4 rtol). Measured before the issue-19 speed-up (commit c0bbd7d): 185.6 and 192.1 per
step; after it: 123.3 and 129.7 (the loop's own operations and the RHS wrapper's included); with the small-system
Newton iteration as one matrix (engine/firk_fused.py): 90.8 and 85.9. The bounds sit a little above the new counts,
so a return towards the old cost fails; counting is deterministic (no timing).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pysciml as ps
from pysciml import problems


class _OpCounter(TorchDispatchMode):
    """Counts dispatched aten operations while ``paused`` is False."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if not self.paused:
            self.count += 1
        return func(*args, **(kwargs or {}))


T1 = 1e2


def _rober_uncounted(counter: _OpCounter) -> ps.ODEProblem:
    """ROBER (``pysciml.problems.rober``, t1 = ``T1``) whose ``f`` and ``jac`` run with the counter paused."""
    base = problems.rober((0.0, T1))

    def paused(fn):  # noqa: ANN001, ANN202
        def call(t, u, p):  # noqa: ANN001, ANN202
            counter.paused = True
            try:
                return fn(t, u, p)
            finally:
                counter.paused = False
        return call

    return ps.ODEProblem(paused(base.f), base.u0, base.tspan, base.p, jac=paused(base.jac))


# (algorithm, rtol, bound on solver operations per attempted step); measured: 90.8 and 85.9 (module docstring)
CASES = [(ps.RadauIIA5(), 1e-7, 95), (ps.RadauIIA3(), 1e-5, 90)]


@pytest.mark.parametrize("alg,rtol,bound", CASES, ids=lambda x: getattr(x, "name", str(x)))
def test_eager_firk_ops_per_step(alg, rtol, bound):
    counter = _OpCounter()
    prob = _rober_uncounted(counter)
    kw = dict(rtol=rtol, atol=1e-4 * rtol, saveat=[T1])
    ref = ps.solve(prob, alg, **kw)  # uncounted: the mode must not change the solve
    with counter:
        sol = ps.solve(prob, alg, **kw)
    s = sol.stats
    assert (s.naccept, s.nreject, s.nf, s.njac, s.nlu) == (ref.stats.naccept, ref.stats.nreject, ref.stats.nf,
                                                         ref.stats.njac, ref.stats.nlu)
    assert torch.equal(sol.u[-1], ref.u[-1])
    steps = s.naccept + s.nreject
    assert steps > 100  # enough steps that the solve's setup does not weigh in the average
    per_step = counter.count / steps
    assert per_step <= bound, f"{alg.name}: {per_step:.1f} torch ops per step (bound {bound})"
