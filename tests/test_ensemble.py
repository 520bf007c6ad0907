"""Ensembles in one process: EnsembleBatched equals the same trajectories solved one by one (EnsembleSerial and
plain solves), reductions equal the same statistics computed afterwards, streaming keeps peak memory flat as
the number of trajectories grows, reruns and per-trajectory return codes, and bad input refused clearly."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest
import torch

import pysciml as ps
from pysciml import problems
from pysciml.ensemble import (
    EnsembleBatched,
    EnsembleDistributed,
    EnsembleProblem,
    EnsembleSerial,
    EnsembleSummary,
    MeanVarReduction,
    timeseries_steps_mean,
    timeseries_steps_meanvar,
    timeseries_steps_quantile,
    timestep_meanvar,
    timestep_quantile,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (tests/conftest.py)


def oscillator(t, u, p):
    """Damped oscillator acting row by row (``...`` indexing), ``p = (omega^2, damping)``."""
    return torch.stack((u[..., 1], -p[..., 0] * u[..., 0] - p[..., 1] * u[..., 1]), dim=-1)


def oscillator_one(t, u, p):
    """The same field written for one trajectory only (``u[0]``): it mixes a stacked batch."""
    return torch.stack((u[1], -p[0] * u[0] - p[1] * u[1]))


def osc_ensemble(f=oscillator, **kw) -> EnsembleProblem:
    base = ps.ODEProblem(f, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 3.0), torch.tensor([4.0, 0.1], dtype=F64))

    def prob_func(prob, i, repeat):
        return prob.remake(u0=torch.tensor([1.0 + 0.1 * i, -0.05 * i], dtype=F64),
                           p=torch.tensor([4.0 + 0.3 * i, 0.1 + 0.01 * i], dtype=F64))

    return EnsembleProblem(base, prob_func=prob_func, **kw)


def test_batched_equals_serial_and_plain_solves_rober():
    """Stiff: 4 perturbed ROBER trajectories, batches of 3 (a partial last batch), equal to one-by-one solves."""
    k0 = torch.tensor([0.04, 3e7, 1e4], dtype=F64)
    eprob = EnsembleProblem(problems.rober((0.0, 2.0)),
                            prob_func=lambda prob, i, rep: prob.remake(p=k0 * (1 + 0.02 * (i - 3))))
    kw = dict(rtol=1e-6, atol=1e-10, saveat=[0.0, 0.1, 2.0])
    batched = ps.solve(eprob, ps.Rodas5P(), trajectories=4, ensemble=EnsembleBatched(batch_size=3), **kw)
    serial = ps.solve(eprob, ps.Rodas5P(), trajectories=4, ensemble=EnsembleSerial(), **kw)
    assert batched.success and batched.trajectories == 4 and len(batched) == 4
    for i in range(4):
        plain = ps.solve(problems.rober((0.0, 2.0), k=tuple((k0 * (1 + 0.02 * (i - 3))).tolist())), ps.Rodas5P(),
                         **kw)
        torch.testing.assert_close(serial[i].u, plain.u, rtol=0, atol=0)
        torch.testing.assert_close(batched[i].u, plain.u, rtol=1e-9, atol=1e-15)
        assert batched[i].index == i and batched[i].t.shape == (3,)
    assert batched.stats.naccept == serial.stats.naccept  # the same steps, counted per trajectory


def test_vmap_runs_a_single_trajectory_f_and_rowwise_check_refuses_it():
    kw = dict(rtol=1e-8, atol=1e-10, saveat=[0.0, 1.5, 3.0])
    ref = ps.solve(osc_ensemble(), ps.Tsit5(), trajectories=5, ensemble=EnsembleSerial(), **kw)
    mapped = ps.solve(osc_ensemble(oscillator_one), ps.Tsit5(), trajectories=5,
                      ensemble=EnsembleBatched(batch_size=3, vmap=True), **kw)
    for a, b in zip(ref.u, mapped.u, strict=True):
        torch.testing.assert_close(b.u, a.u, rtol=1e-10, atol=1e-12)
    with pytest.raises(ps.InputError, match="f mixes the batch|failed on a stacked batch|vmap=True"):
        ps.solve(osc_ensemble(oscillator_one), ps.Tsit5(), trajectories=5, ensemble=EnsembleBatched(batch_size=2),
                 **kw)


def test_streamed_reductions_equal_post_hoc_statistics():
    kw = dict(rtol=1e-8, atol=1e-10, saveat=0.5)
    kept = ps.solve(osc_ensemble(), ps.Tsit5(), trajectories=23, ensemble=EnsembleBatched(batch_size=5), **kw)
    t, mean, var = timeseries_steps_meanvar(kept)
    U = torch.stack([s.u for s in kept.u])  # (23, 7, 2)
    torch.testing.assert_close(mean, U.mean(0))
    torch.testing.assert_close(timeseries_steps_mean(kept)[1], mean)
    streamed = ps.solve(osc_ensemble(output_func=lambda sol, i: (sol.u, False), reduction=MeanVarReduction()),
                        ps.Tsit5(), trajectories=23, ensemble=EnsembleBatched(batch_size=5), **kw)
    assert streamed.u.count == 23
    torch.testing.assert_close(streamed.u.mean, mean, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(streamed.u.var, var, rtol=1e-11, atol=1e-15)
    summary = EnsembleSummary.of(kept, quantiles=(0.1, 0.9))
    torch.testing.assert_close(summary.qlow, torch.quantile(U, 0.1, dim=0))
    torch.testing.assert_close(summary.v, var)
    torch.testing.assert_close(timeseries_steps_quantile(kept, 0.5)[1], U.median(0).values)
    torch.testing.assert_close(timestep_meanvar(kept, -1)[1], U[:, -1].var(0))
    torch.testing.assert_close(timestep_quantile(kept, 0.9, 2), torch.quantile(U[:, 2], 0.9, dim=0))
    torch.testing.assert_close(t, torch.arange(7, dtype=F64) * 0.5)


def test_reduction_batches_and_early_convergence():
    """SciML's reduction: called per batch with the index range, in order; converged=True stops the ensemble."""
    seen = []

    def reduction(u, batch, indices):
        seen.append(indices)
        u = u + sum(float(x) for x in batch)
        return u, indices.stop >= 6

    eprob = osc_ensemble(output_func=lambda sol, i: (sol.u[-1, 0], False), reduction=reduction, u_init=0.0)
    sol = ps.solve(eprob, ps.Tsit5(), trajectories=10, ensemble=EnsembleBatched(batch_size=3), rtol=1e-8,
                   atol=1e-10)
    assert seen == [range(0, 3), range(3, 6)] and sol.converged and sol.trajectories == 6
    serial = ps.solve(osc_ensemble(output_func=lambda sol, i: (sol.u[-1, 0], False)), ps.Tsit5(), trajectories=6,
                      ensemble=EnsembleSerial(), rtol=1e-8, atol=1e-10)
    assert sol.u == pytest.approx(sum(float(x) for x in serial.u), rel=1e-12)


def test_rerun_and_per_trajectory_retcodes():
    """u' = u^2 from u0 = +1 blows up at t = 1 (fails), from -1 it decays: each trajectory has its own code;
    output_func asks to rerun trajectory 2 once, which prob_func answers with a decaying start."""
    base = ps.ODEProblem(lambda t, u: u * u, torch.tensor([1.0], dtype=F64), (0.0, 2.0))

    def prob_func(prob, i, repeat):
        sign = -1.0 if (i % 2 == 0 and repeat > 1) or i % 3 == 0 else 1.0
        return prob.remake(u0=torch.tensor([sign], dtype=F64))

    def output_func(sol, i):
        return (sol.retcode, sol.repeat), i == 2 and sol.repeat == 1

    eprob = EnsembleProblem(base, prob_func=prob_func, output_func=output_func)
    kw = dict(rtol=1e-6, atol=1e-8)
    batched = ps.solve(eprob, ps.Tsit5(), trajectories=5, ensemble=EnsembleBatched(batch_size=5), **kw)
    serial = ps.solve(eprob, ps.Tsit5(), trajectories=5, ensemble=EnsembleSerial(), **kw)
    ok, bad = ps.ReturnCode.Success, ps.ReturnCode.DtLessThanMin
    assert batched.retcodes == serial.retcodes == (ok, bad, ok, ok, bad)
    assert [r for _, r in batched.u] == [1, 1, 2, 1, 1] and batched.reruns == 1
    assert batched.failures == [1, 4] and batched.retcode is bad and not batched.success


def test_terminated_by_a_callback_counts_as_success():
    """u' = -1 from u0 = 0.1, 0.4, 0.7 to t = 0.4: a terminal callback at u = 0.2 ends only the middle trajectory
    (at t = 0.2, Terminated, a success); the ensemble succeeds."""
    base = ps.ODEProblem(lambda t, u: -torch.ones_like(u), torch.tensor([0.0], dtype=F64), (0.0, 0.4))
    eprob = EnsembleProblem(base, prob_func=lambda prob, i, rep: prob.remake(
        u0=torch.tensor([0.3 * i + 0.1], dtype=F64)))
    stop = ps.ContinuousCallback(lambda t, u: u[..., 0] - 0.2, terminal=True)
    sol = ps.solve(eprob, ps.Tsit5(), trajectories=3, callback=stop, rtol=1e-8, atol=1e-10)
    T, S = ps.ReturnCode.Terminated, ps.ReturnCode.Success
    assert sol.retcodes == (S, T, S) and sol.success and sol.failures == [] and sol.retcode is S
    assert all(s.success for s in sol.u)


def test_params_stacked_leaf_by_leaf():
    """p = (shared matrix, per-trajectory rate as a float): the matrix passes once, the floats become (B,)."""
    A = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=F64)

    def f(t, u, p):
        mat, rate = p
        rate = torch.as_tensor(rate, dtype=u.dtype)
        return u @ mat.T - rate[..., None] * u if rate.ndim else u @ mat.T - rate * u

    base = ps.ODEProblem(f, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 1.0), (A, 0.0))
    eprob = EnsembleProblem(base, prob_func=lambda prob, i, rep: prob.remake(p=(A, 0.1 * i)))
    sol = ps.solve(eprob, ps.Tsit5(), trajectories=4, ensemble=EnsembleBatched(batch_size=4), rtol=1e-10,
                   atol=1e-12)
    for i in range(4):  # rotation times exp(-rate t)
        exact = math.exp(-0.1 * i) * torch.tensor([math.cos(1.0), -math.sin(1.0)], dtype=F64)
        torch.testing.assert_close(sol[i].u[-1], exact, rtol=1e-8, atol=1e-10)
    # the default prob_func on safety copies: the clones of A are unchanged, so A still passes once (u @ A.T
    # on a stacked (B, 2, 2) copy would fail the row-wise check)
    rotation = ps.ODEProblem(lambda t, u, p: u @ p.T, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 1.0), A)
    sol = ps.solve(EnsembleProblem(rotation), ps.Tsit5(), trajectories=3, rtol=1e-10, atol=1e-12)
    exact = torch.tensor([math.cos(1.0), -math.sin(1.0)], dtype=F64)
    assert all(torch.allclose(s.u[-1], exact, rtol=1e-8, atol=1e-10) for s in sol.u)


def test_bad_input_is_refused_with_the_trajectory_named():
    def wrong_shape(prob, i, rep):
        return prob.remake(u0=torch.zeros(3 if i == 4 else 2, dtype=F64))

    base = osc_ensemble().prob
    with pytest.raises(ps.InputError, match=r"trajectory 4 a problem with u0 of shape \(3,\)"):
        ps.solve(EnsembleProblem(base, prob_func=wrong_shape), ps.Tsit5(), trajectories=6)
    with pytest.raises(ps.InputError, match="tspan"):
        ps.solve(EnsembleProblem(base, prob_func=lambda prob, i, rep: prob.remake(tspan=(0.0, 1.0 + i))),
                 ps.Tsit5(), trajectories=2)
    with pytest.raises(ps.InputError, match="must return an ODEProblem"):
        ps.solve(EnsembleProblem(base, prob_func=lambda prob, i, rep: prob.u0), ps.Tsit5(), trajectories=2)
    with pytest.raises(ps.InputError, match=r"pair \(value, rerun\)"):
        ps.solve(EnsembleProblem(base, output_func=lambda sol, i: sol.u[-1]), ps.Tsit5(), trajectories=2)
    with pytest.raises(ps.InputError, match=r"pair \(u, converged\)"):
        ps.solve(EnsembleProblem(base, reduction=lambda u, b, idx: u), ps.Tsit5(), trajectories=2)
    with pytest.raises(ps.InputError, match="trajectories must be a positive int"):
        ps.solve(EnsembleProblem(base), ps.Tsit5(), trajectories=0)
    with pytest.raises(ps.InputError, match="ensemble must be"):
        ps.solve(EnsembleProblem(base), ps.Tsit5(), trajectories=2, ensemble="batched")
    with pytest.raises(ps.InputError, match="dense=True"):
        ps.solve(EnsembleProblem(base), ps.Tsit5(), trajectories=2, dense=True)
    with pytest.raises(ps.InputError, match="for an EnsembleProblem"):
        ps.solve(base, ps.Tsit5(), trajectories=2)
    with pytest.raises(ps.InputError, match="batch_size"):
        EnsembleBatched(batch_size=0)
    with pytest.raises(ps.InputError, match="init_process_group"):
        ps.solve(EnsembleProblem(base), ps.Tsit5(), trajectories=2, ensemble=EnsembleDistributed())
    with pytest.raises(ps.InputError, match="unbatched"):
        EnsembleProblem(problems.rober(k=torch.ones(2, 3, dtype=F64)))


def _peak_rss_increase_kib(run) -> int:
    """Peak resident memory during ``run()`` above the resident memory before it (Linux: VmHWM reset through
    /proc/self/clear_refs), in KiB."""
    def field(name: str) -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(name))
        return int(line.split()[1])

    gc.collect()
    before = field("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")
    run()
    return field("VmHWM:") - before


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_streaming_keeps_peak_memory_flat():
    """Mean and variance of 2,000 vs 20,000 trajectories (41 saves each), streamed in batches of 500: the peak
    memory above the start stays within 1.5x; an unchunked batched solve keeping every output needs far more."""
    kw = dict(rtol=1e-4, atol=1e-6, saveat=0.075)
    base = osc_ensemble().prob

    def prob_func(prob, i, repeat):  # in place, on the safety copy: cheaper than remake's checks
        prob.u0[0] = 1.0 + 1e-4 * i
        return prob

    streamed = EnsembleProblem(base, prob_func, lambda sol, i: (sol.u, False), MeanVarReduction())
    run = lambda n: ps.solve(streamed, ps.Tsit5(), trajectories=n, ensemble=EnsembleBatched(500), **kw)  # noqa: E731
    run(500)  # warm-up: allocator pools, first-call caches
    small = _peak_rss_increase_kib(lambda: run(2_000))
    large = _peak_rss_increase_kib(lambda: run(20_000))
    kept = _peak_rss_increase_kib(lambda: ps.solve(EnsembleProblem(base, prob_func), ps.Tsit5(), trajectories=20_000,
                                                   ensemble=EnsembleBatched(20_000), **kw))
    print(f"peak RSS increase [KiB]: streamed 2k {small}, streamed 20k {large}, unchunked 20k {kept}")
    assert large <= 1.5 * small + 1024, (small, large, kept)  # 1 MiB slack: page granularity of a small peak
    assert kept > 3 * large, (small, large, kept)


def test_split_problem_batched_and_vmapped_equal_serial():
    """A SplitODEProblem (matrix implicit part, explicit part written for one trajectory) stacks too."""
    L = torch.tensor([[-50.0, 1.0], [0.0, -2.0]], dtype=F64)
    base = ps.SplitODEProblem(L, lambda t, u, p: torch.stack((torch.sin(u[1]) * p, p * u[0] ** 2)),
                              torch.tensor([1.0, 0.5], dtype=F64), (0.0, 0.5), 1.0)
    eprob = EnsembleProblem(base, prob_func=lambda prob, i, rep: prob.remake(p=1.0 + 0.5 * i))
    kw = dict(rtol=1e-5, atol=1e-8, saveat=[0.0, 0.25, 0.5])
    serial = ps.solve(eprob, ps.KenCarp4(), trajectories=4, ensemble=EnsembleSerial(), **kw)
    mapped = ps.solve(eprob, ps.KenCarp4(), trajectories=4, ensemble=EnsembleBatched(batch_size=4, vmap=True), **kw)
    for a, b in zip(serial.u, mapped.u, strict=True):
        torch.testing.assert_close(b.u, a.u, rtol=1e-9, atol=1e-12)
