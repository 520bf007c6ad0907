"""``benchmarks/stiff_loop.loop_route`` names the loop program a compiled solve ran, for every family with a whole-
loop program: the benchmarks' ``loop taken`` columns come from it. The programs run uncompiled here (their
``while_loop`` calls as Python loops), which takes the same dispatch as a compiled solve without inductor."""

from __future__ import annotations

import pytest
from loop_programs import run_loops_uncompiled

import pysciml as ps
from benchmarks.stiff_loop import loop_route, route_name
from pysciml.engine import (
    compiled_bdf_qndf,
    compiled_bdf_step,
    compiled_firk,
    compiled_loop,
    compiled_loop_bdf,
    compiled_loop_firk,
)
from pysciml.problems import van_der_pol


@pytest.mark.parametrize(("alg", "name"), [(ps.RadauIIA5(), "RadauIIA whole loop (2 solves)"),
                                           (ps.FBDF(), "BDF whole loop (2 solves)")])
def test_route_counts_firk_and_bdf_loops(monkeypatch: pytest.MonkeyPatch, alg: ps.Algorithm, name: str) -> None:
    run_loops_uncompiled(monkeypatch, compiled_firk, compiled_loop, compiled_loop_firk, compiled_loop_bdf,
                         compiled_bdf_step, compiled_bdf_qndf)
    prob = van_der_pol(10.0, (0.0, 0.5))
    with loop_route() as route:
        for _ in range(2):
            sol = ps.solve(prob, alg, rtol=1e-5, atol=1e-8, saveat=[0.5], compile=True)
            assert sol.success
    assert route_name(route) == name
    assert compiled_loop_firk.integrate_whole.__name__ == "integrate_whole"  # restored after the block
    assert compiled_loop_bdf.integrate.__name__ == "integrate"
