"""The whole loop's option-only inputs, cached per signature, and its final state read as lists
(engine/compiled_loop_inputs.py).

By default nothing is compiled: the cache's key is checked against every value an entry is built from (a changed
option, shape, dtype or inference mode builds a new entry, equal to one built afresh), and the final state read in
two host reads is checked against :func:`~pysciml.engine.compiled_control.finish`'s reading of the twelve control
tensors, with and without the ``maxiters`` stop. ``exhaustive``: ``odeint(compile=True)`` as the spiral benchmark
calls it, alternating save grids and inference mode, equal bit for bit to solves with the cache emptied before
each call (``pytest -m exhaustive tests/test_compiled_loop_inputs.py``).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from loop_programs import compiled_setup

import pysciml as ps
from pysciml.engine import compiled_loop_inputs as cli
from pysciml.engine.compiled_control import _CountedSaver, finish, loop_result
from pysciml.engine.loop_saver import MAXITERS
from pysciml.solution import Stats

F32, F64 = torch.float32, torch.float64


def field(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return -u


def setup(dtype: torch.dtype = F32, batch: int = 1, **kw):
    """The compiled DP5 stepper (nothing compiled), loop options and ``(B, n)`` state of a solve of ``field``."""
    u0 = torch.ones(batch, 2, dtype=dtype) if batch > 1 else torch.ones(2, dtype=dtype)
    prob = ps.ODEProblem(field, u0, (0.0, 1.0), batched=batch > 1)
    kw = {"saveat": torch.linspace(0.0, 1.0, 5, dtype=dtype), "rtol": 1e-6, "atol": 1e-8, **kw}
    return compiled_setup(prob, ps.DP5(), **kw)


def entry(opts, u0: torch.Tensor) -> cli.Constants:
    scalar = u0.shape[0] == 1
    save_t = [min(max(s, opts.t0), opts.t1) for s in opts.saveat.tolist()]
    return cli.constants(u0, opts, scalar, save_t, 100, True)


def assert_same(a: cli.Constants, b: cli.Constants) -> None:
    """Equal values, dtypes and shapes (NaN where the other has NaN), field by field."""
    for x, y in zip(a, b, strict=True):
        for p, q in zip(x if isinstance(x, tuple) else (x,), y if isinstance(y, tuple) else (y,), strict=True):
            if isinstance(p, torch.Tensor):
                assert p.dtype == q.dtype and p.shape == q.shape
                assert torch.equal(p.isnan(), q.isnan()) and torch.equal(p.nan_to_num(), q.nan_to_num())
            else:
                assert p == q


@pytest.mark.parametrize("change", ["t1", "t0", "saveat", "rtol", "dt", "dtmax", "dtmin", "tstops", "dtype",
                                    "batch", "qoldinit", "inference", "steps"])
def test_a_changed_value_builds_its_own_entry(change: str) -> None:
    """Two calls of one signature share an entry; a call that differs in any value the entry is built from gets
    its own, equal to one built afresh (``built``, no cache), while the first entry stays as it was."""
    cli._CONSTANTS.clear()
    _, opts, u0 = setup()
    first = entry(opts, u0)
    assert entry(opts, u0) is first
    steps = 100
    if change in ("dtype", "batch"):
        _, opts2, u02 = setup(F64) if change == "dtype" else setup(batch=3)
    else:
        u02 = u0
        new = {"t1": {"t1": 2.0}, "t0": {"t0": -0.5}, "rtol": {"rtol": 1e-5}, "dt": {"dt": 0.01},
               "dtmax": {"dtmax": 0.05}, "dtmin": {"dtmin": 1e-6}, "tstops": {"tstops": [0.55]},
               "saveat": {"saveat": torch.tensor([0.0, 0.2, 0.4, 0.7, 1.0], dtype=F32)},
               "qoldinit": {"controller": dataclasses.replace(opts.controller, qoldinit=1e-3)}}.get(change, {})
        opts2 = dataclasses.replace(opts, **new)
    scalar = u02.shape[0] == 1
    save_t = [min(max(s, opts2.t0), opts2.t1) for s in opts2.saveat.tolist()]
    if change == "inference":
        with torch.inference_mode():
            second = cli.constants(u02, opts2, scalar, save_t, steps, True)
        assert second.P[0].is_inference() and not first.P[0].is_inference()
    else:
        steps = 99 if change == "steps" else steps
        second = cli.constants(u02, opts2, scalar, save_t, steps, True)
    assert second is not first
    assert_same(second, cli.built(None, u02, opts2, scalar, save_t, steps, True))
    assert entry(opts, u0) is first
    assert_same(first, cli.built(None, u0, opts, True, [min(max(s, 0.0), 1.0) for s in opts.saveat.tolist()], 100,
                                 True))


def test_large_tail_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """An output buffer's NaN tail above ``TAIL_CACHED`` elements is not held by the entry."""
    cli._CONSTANTS.clear()
    _, opts, u0 = setup()
    assert entry(opts, u0).tail is not None
    monkeypatch.setattr(cli, "TAIL_CACHED", 2)
    cli._CONSTANTS.clear()
    assert entry(opts, u0).tail is None


def test_signed_zero_keys() -> None:
    """``-0.0`` and ``0.0`` are equal floats but not equal tensors: their keys differ."""
    assert cli._floats_key((0.0, 1.0)) != cli._floats_key((-0.0, 1.0))
    assert cli._floats_key((0.0, 1.0)) == cli._floats_key((0.0, 1.0))


def test_negative_zero_start_gets_its_own_entry() -> None:
    cli._CONSTANTS.clear()
    _, opts, u0 = setup()
    a = entry(opts, u0)
    b = entry(dataclasses.replace(opts, t0=-0.0), u0)
    assert a is not b
    assert math.copysign(1.0, float(b.P[0][0, 0])) < 0.0 < math.copysign(1.0, float(a.P[0][0, 0]))


@pytest.mark.parametrize("maxiters", [False, True])
def test_final_state_equals_tensor_finish(maxiters: bool) -> None:
    """Four trajectories (finished, still running, failed on dtmin, failed unstable), read as lists by
    ``final_state`` and handed to ``loop_result``: the return codes, failure points and counters of
    :func:`~pysciml.engine.compiled_control.finish` on the twelve tensors (with ``run_whole``'s former ``maxiters``
    update of them)."""
    stepper, opts, u0 = setup(batch=4)
    times = torch.tensor([[1.0, 0.5, 0.25, 0.125], [0.1, 0.2, 0.3, 0.4], [1e-4] * 4, [0.0, 0.0, 0.3, 0.6],
                          [0.0, 0.0, 1e-9, 2e-9]], dtype=F32)
    ints = torch.tensor([[0, 1, 0, 0], [0, 1, 1, 0], [0] * 4, [0, 0, 3, 4], [7, 3, 4, 5], [9, 4, 6, 8], [5, 2, 3, 3]])
    L = list(cli.unpack_control(times, ints))
    if maxiters:  # run_whole before: the running trajectories fail there
        active = L[3]
        L[6] = torch.where(active, MAXITERS, L[6])
        L[7] = torch.where(active, L[0], L[7])
        L[8] = torch.where(active, L[1], L[8])
    results = []
    for lists in (False, True):
        stats = Stats()
        saver = _CountedSaver(opts, u0, 1.0, 1)
        if lists:
            raw, n_acc, n_att, fail_t, fail_dt, dt = cli.final_state(times, ints, maxiters)
            res = loop_result(stepper, raw, n_acc, n_att, fail_t, fail_dt, saver, u0, None, stats, times[1].abs())
        else:
            res = finish(stepper, tuple(L), saver, u0, None, stats)
        results.append((res, stats))
    (a, sa), (b, sb) = results
    assert a.status == b.status and a.fail_info == b.fail_info and a.reasons == b.reasons
    assert (sa.naccept, sa.nreject) == (sb.naccept, sb.nreject) == (19, 8)
    assert torch.equal(a.dt_next, b.dt_next)
    assert [str(s) for s in a.status].count(str(ps.ReturnCode.MaxIters)) == (1 if maxiters else 0)


class Spiral(torch.nn.Sequential):
    """The spiral benchmark's field, ``net(y^3)``, with a 2-50-2 tanh MLP."""

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(y**3)


@pytest.mark.exhaustive
@pytest.mark.parametrize("tail_cached", [cli.TAIL_CACHED, 0])
def test_odeint_spiral_calls_equal_uncached(monkeypatch: pytest.MonkeyPatch, tail_cached: int) -> None:
    """``odeint(compile=True)`` as the spiral benchmark calls it, on two save grids in turn and once under
    ``torch.inference_mode()``: values and parameter gradients equal bit for bit to the same calls with the cache
    emptied before each (with the output buffer's NaN tail cached, and made at each call)."""
    monkeypatch.setattr(cli, "TAIL_CACHED", tail_cached)
    torch.manual_seed(0)
    model = Spiral(torch.nn.Linear(2, 50), torch.nn.Tanh(), torch.nn.Linear(50, 2))
    y0 = torch.tensor([[2.0, 0.0], [1.5, 0.3]])
    grids = [torch.linspace(0.0, 0.5, 10), torch.linspace(0.0, 0.6, 10), torch.linspace(0.0, 0.5, 10)]

    def run(clear: bool) -> list[torch.Tensor]:
        outs = []
        for i, t in enumerate(grids * 2):
            if clear:
                cli._CONSTANTS.clear()
            if i == 3:
                with torch.inference_mode():
                    outs.append(ps.odeint(model, y0, t, method="dopri5", compile=True).clone())
                continue
            model.zero_grad()
            ys = ps.odeint(model, y0, t, method="dopri5", compile=True)
            ys.square().sum().backward()
            outs += [ys.detach(), *(p.grad.clone() for p in model.parameters())]
        return outs

    cached, fresh = run(False), run(True)
    assert all(torch.equal(a, b) for a, b in zip(cached, fresh, strict=True))
