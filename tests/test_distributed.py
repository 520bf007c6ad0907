"""Two processes on this machine (gloo on 127.0.0.1, spawned with torch.multiprocessing): EnsembleDistributed gives
the same ensemble as one process (bit for bit: the same batches, solved the same way), a rank's error is raised on
every rank, a dead rank gives the others an error instead of a hang, and NeuralODE / SemiImplicitNeuralODE under
DistributedDataParallel give the single-process full-batch gradients; examples/ddp_spiral.py under torchrun."""

from __future__ import annotations

import datetime
import gc
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed.nn.functional  # noqa: F401  before init_process_group, as examples/ddp_spiral.py explains

import pysciml as ps
from pysciml.ensemble import DistributedEnsembleError, EnsembleBatched, EnsembleDistributed, EnsembleProblem
from pysciml.models import NeuralODE, SemiImplicitNeuralODE

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from ddp_spiral import gloo_threads  # noqa: E402

TIMEOUT = 240.0  # seconds the parent waits for the workers before killing them (a hang fails, never blocks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, out: Path, nprocs: int = 2) -> None:
    """Run ``fn(rank, port, out)`` on ``nprocs`` processes; fail (killing them) if they take over TIMEOUT s.

    Spawned, not forked: a pytest worker that ran other tests first holds threads (OpenMP's, inductor's compile
    workers), and a fork copies the locks they held without them. Forked, the gloo test sometimes hung until the
    deadline (seen in earlier sessions and in one default run of 2026-12-03: the two ranks never finished)."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(fn, args=(_free_port(), str(out)), nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {nprocs} worker processes did not finish within {TIMEOUT} s")


def _init(rank: int, port: int, timeout: float = 60.0) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                         timeout=datetime.timedelta(seconds=timeout))


def oscillator(t, u, p):
    return torch.stack((u[..., 1], -p[..., 0] * u[..., 0] - p[..., 1] * u[..., 1]), dim=-1)


def ensemble_problem(fail_at: int | None = None, solutions: bool = False) -> EnsembleProblem:
    base = ps.ODEProblem(oscillator, torch.tensor([1.0, 0.0], dtype=F64), (0.0, 2.0),
                         torch.tensor([4.0, 0.1], dtype=F64))

    def prob_func(prob, i, repeat):
        shape = 3 if i == fail_at else 2
        return prob.remake(u0=torch.linspace(1.0 + 0.1 * i, -0.05 * i, shape, dtype=F64),
                           p=torch.tensor([4.0 + 0.3 * i, 0.1 + 0.01 * i], dtype=F64))

    return EnsembleProblem(base, prob_func=prob_func, output_func=None if solutions else lambda sol, i: (sol.u, False))


ENSEMBLE_KW = dict(rtol=1e-8, atol=1e-10, saveat=0.5, trajectories=11)


class Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

    def forward(self, t, y):
        return self.net(y**3)


def training_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    y0 = torch.randn(8, 2, generator=g, dtype=F64)
    return y0, torch.linspace(0.0, 0.5, 4, dtype=F64), torch.randn(4, 8, 2, generator=g, dtype=F64)


def models() -> dict[str, torch.nn.Module]:
    linear = torch.tensor([[-1.0, 0.3], [-0.3, -2.0]], dtype=F64)
    return {"NeuralODE": NeuralODE(Field(), ps.Tsit5(), rtol=1e-8, atol=1e-10, batched=True),
            "SemiImplicitNeuralODE": SemiImplicitNeuralODE(linear, Field(), ps.KenCarp4(), dt=0.05)}


def gradients(model: torch.nn.Module, y0, t, target, shard: slice) -> list[torch.Tensor]:
    """Gradient of the mean squared error on ``shard`` of the batch (the DDP-averaged one when wrapped)."""
    model.zero_grad()
    loss = ((model(y0[shard], t) - target[:, shard]) ** 2).mean()
    loss.backward()
    inner = model.module if hasattr(model, "module") else model
    return [p.grad.clone() for p in inner.parameters()]


def _worker(rank: int, port: int, out: str) -> None:
    _init(rank, port)
    result: dict = {}
    sol = ps.solve(ensemble_problem(), ps.Tsit5(), ensemble=EnsembleDistributed(batch_size=3, timeout=60.0),
                   **ENSEMBLE_KW)
    result["ensemble"] = (sol.u, sol.codes, sol.stats.naccept)
    sol = ps.solve(ensemble_problem(solutions=True), ps.Tsit5(), ensemble=EnsembleDistributed(batch_size=3),
                   **ENSEMBLE_KW)  # the default outputs: TrajectorySolutions, item by item
    result["solutions"] = [(s.index, s.t, s.u, s.retcode.value, s.prob) for s in sol.u]
    try:  # trajectory 4 is in batch 1 (3..5), rank 1's: its bad shape must reach rank 0 too
        ps.solve(ensemble_problem(fail_at=4), ps.Tsit5(), ensemble=EnsembleDistributed(batch_size=3), **ENSEMBLE_KW)
    except ps.InputError as exc:
        result["error"] = str(exc)
    result.update(_ddp_gradients(rank))
    gc.collect()  # the DDP models' cycles: the process group's last reference goes with destroy_process_group
    torch.distributed.destroy_process_group()
    result["gloo threads"] = gloo_threads()
    torch.save(result, Path(out) / f"rank{rank}.pt")


def _ddp_gradients(rank: int) -> dict[str, list[torch.Tensor]]:
    y0, t, target = training_data()
    shard = slice(4 * rank, 4 * rank + 4)
    return {name: gradients(torch.nn.parallel.DistributedDataParallel(model), y0, t, target, shard)
            for name, model in models().items()}


def test_two_gloo_processes_match_one_process(tmp_path):
    torch.set_num_threads(1)
    _spawn(_worker, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    one = ps.solve(ensemble_problem(), ps.Tsit5(), ensemble=EnsembleBatched(batch_size=3), **ENSEMBLE_KW)
    for res in ranks:  # destroy_process_group ended gloo's threads: none is left to abort the interpreter's exit
        assert res["gloo threads"] == [] or not sys.platform.startswith("linux"), res["gloo threads"]
    for res in ranks:  # every rank holds the whole ensemble, equal to one process's, bit for bit
        outputs, codes, naccept = res["ensemble"]
        assert len(outputs) == 11 and torch.equal(codes, one.codes) and naccept == one.stats.naccept
        for a, b in zip(outputs, one.u, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert "rank 1 failed on trajectories 3..5" in res["error"] and "trajectory 4" in res["error"]
        for i, (index, t, u, code, prob) in enumerate(res["solutions"]):
            assert (index, code, prob) == (i, "Success", None)
            torch.testing.assert_close(u, one.u[i], rtol=0, atol=0)
            torch.testing.assert_close(t, torch.arange(5, dtype=F64) * 0.5)
    y0, t, target = training_data()
    for name, model in models().items():
        full = gradients(model, y0, t, target, slice(None))
        for res in ranks:
            for g_ddp, g_full in zip(res[name], full, strict=True):
                torch.testing.assert_close(g_ddp, g_full, rtol=1e-10, atol=1e-14, msg=name)


def _dying_worker(rank: int, port: int, out: str) -> None:
    _init(rank, port, timeout=20.0)
    if rank == 1:
        os._exit(0)  # leaves without a word (exit code 0, so the spawner does not kill rank 0 first)
    start = time.monotonic()
    try:
        ps.solve(ensemble_problem(), ps.Tsit5(), ensemble=EnsembleDistributed(batch_size=3, timeout=10.0),
                 **ENSEMBLE_KW)
        message = "no error"
    except DistributedEnsembleError as exc:
        message = str(exc)
    (Path(out) / "rank0.txt").write_text(f"{time.monotonic() - start:.1f}\n{message}")


@pytest.mark.exhaustive
def test_a_dead_rank_gives_an_error_not_a_hang(tmp_path):
    _spawn(_dying_worker, tmp_path)
    seconds, message = (tmp_path / "rank0.txt").read_text().split("\n", 1)
    assert "EnsembleDistributed: rank 0 of 2" in message and "another rank died" in message, message
    assert float(seconds) < 60.0


@pytest.mark.exhaustive
def test_ddp_spiral_example_under_torchrun():
    """The example's own checks: rank 0's DDP gradient equals the single-process full-batch gradient, and on
    every rank destroy_process_group joined gloo's worker threads (with them still running at exit, about one
    run in ten aborted in the interpreter's shutdown; see the example's ``release``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "examples" / "ddp_spiral.py"), "--iters", "3", "--check"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "gradient check passed" in run.stdout
    assert run.stdout.count("process group released") == 2, run.stdout


@pytest.mark.exhaustive
def test_distributed_benchmark_smoke():
    """benchmarks/ensemble_distributed.py at smoke size (2,000 trajectories to t = 40, 4 processes in turn)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import ensemble_distributed

    text = ensemble_distributed.main(2_000, 500, smoke=True)
    assert "two processes equal to one process bit for bit" in text and "succeeded: True" in text
