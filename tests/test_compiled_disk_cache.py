"""A whole-loop program compiled in one process is loaded from inductor's disk cache by the next
(``compiled_parts._CACHEABLE_HOPS``), and a program whose loop body differs (another ``f``) is not.

Each solve runs in a fresh Python process with its own ``TORCHINDUCTOR_CACHE_DIR`` under ``tmp_path`` (empty at the
start), as a user's second run of a script would."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from torch._dynamo.utils import counters
    import pysciml as ps

    k = float(sys.argv[1])
    ns = {}
    exec(f"def f(t, u):\\n    return -{k} * u\\n", ns)  # the rate is a constant of f's body, not an input
    prob = ps.ODEProblem(ns["f"], torch.ones(2, dtype=torch.float64), (0.0, 1.0))
    sol = ps.solve(prob, ps.Tsit5(), rtol=1e-10, atol=1e-12, saveat=[1.0], compile=True)
    print(json.dumps({"u": sol.u[-1].tolist(), "naccept": sol.stats.naccept, "loop": sol.stats.nloop,
                      "hit": counters["inductor"].get("fxgraph_cache_hit", 0),
                      "bypass": counters["inductor"].get("fxgraph_cache_bypass", 0),
                      "aot_hit": counters["aot_autograd"].get("autograd_cache_hit", 0)}))
""")


def _solve_in_new_process(k: float, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(k)], env=env, capture_output=True, text=True, check=True,
                         timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.heavy
def test_second_process_loads_the_loop_program_and_another_f_misses(tmp_path) -> None:
    cache = str(tmp_path / "inductor")
    first = _solve_in_new_process(1.0, cache)
    second = _solve_in_new_process(1.0, cache)
    other = _solve_in_new_process(2.0, cache)
    assert first["hit"] == 0 and first["bypass"] == 0      # compiled and stored, not skipped as a while_loop graph
    assert second["hit"] >= 1 and second["aot_hit"] >= 1   # loaded: no lowering, no AOTAutograd trace
    assert second["u"] == first["u"] and second["naccept"] == first["naccept"]
    assert other["hit"] == 0                                 # f's body is part of the loop body's cache key
    for sol, k in ((first, 1.0), (other, 2.0)):
        assert sol["u"][0] == pytest.approx(math.exp(-k), rel=1e-8)
