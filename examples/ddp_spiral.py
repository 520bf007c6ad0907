"""Train the spiral neural ODE on several processes with DistributedDataParallel.

    torchrun --standalone --nproc_per_node 2 examples/ddp_spiral.py            # 2 processes on this machine
    torchrun --standalone --nproc_per_node 2 examples/ddp_spiral.py --check    # + the gradient check below

The task is benchmarks/neural_ode.py's spiral (torchdiffeq's ode_demo: ``dy/dt = y^3 A``, a 2-50-2 tanh MLP on
``y^3``, batches of 20 random starts x 10 times, Adam lr 1e-3, dopri5 at rtol 1e-7, atol 1e-9, float32). Every
rank draws the same batches (seeded); rank ``r`` of ``R`` takes the contiguous share ``[rB/R, (r+1)B/R)`` of each
batch. ``NeuralODE(batched=True)`` gives every trajectory its own steps, so a share's solve computes the same rows
as the full batch's, and DDP's average of the ranks' mean losses' gradients is the gradient of the full batch's
mean loss. ``--check`` verifies that at the first iteration on rank 0 against one process's full-batch gradient,
and that ``destroy_process_group`` released the process group (see ``release``). Gloo on CPUs; with CUDA,
``--backend nccl`` puts rank ``LOCAL_RANK`` on ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.nn.functional  # noqa: F401  before init_process_group: see release()
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks/ holds the task

import pysciml as ps  # noqa: E402
from benchmarks.neural_ode import spiral_batches, spiral_model  # noqa: E402
from pysciml.models import NeuralODE  # noqa: E402


def make_model(device: torch.device) -> NeuralODE:
    """The spiral field (seeded initialisation, the same on every rank) in a batched neural ODE."""
    return NeuralODE(spiral_model(0).to(device), ps.DP5(), rtol=1e-7, atol=1e-9, batched=True)


def loss_fn(model: torch.nn.Module, y0: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (model(y0, t) - y).abs().mean()


def check_gradient(ddp: DistributedDataParallel, batch: tuple, device: torch.device) -> float:
    """Largest relative difference between the DDP gradient (already averaged) and one process's full-batch
    gradient of the same model."""
    ref = make_model(device)
    ref.load_state_dict(ddp.module.state_dict())
    loss_fn(ref, *batch).backward()
    return max(float((p.grad - q.grad).norm() / q.grad.norm())
               for p, q in zip(ddp.module.parameters(), ref.parameters(), strict=True))


def gloo_threads() -> list[str]:
    """Names of this process's gloo worker threads (Linux; an empty list elsewhere)."""
    names = []
    for task in Path("/proc/self/task").glob("*/comm"):
        try:
            names.append(task.read_text().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return [name for name in names if "gloo" in name]


def release() -> None:
    """Destroy the process group while Python is alive.

    A gloo worker thread drops its last reference to a finished collective a moment after ``wait`` returns. If
    that falls in the interpreter's shutdown and the collective's tensors have Python objects, the thread cannot
    take the GIL and the process aborts ("terminate called without an active exception"; torch 2.13, in about
    one run of ten of this script on 2 cores before this function). The process group's destructor joins those
    threads, but it runs only with the group's last reference, so:

    - ``torch.distributed.nn.functional`` is imported before ``init_process_group``: DDP imports it, and its
      functions' default ``group=group.WORLD`` would otherwise hold the group for good;
    - the DDP model and optimizer have gone with ``train``'s frame, and ``gc.collect`` frees their cycles.
    """
    gc.collect()
    dist.destroy_process_group()


def train(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> None:
    model = make_model(device)
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    start = time.perf_counter()
    for it, (y0, t, y) in enumerate(spiral_batches(args.iters)):
        size = y0.shape[0]
        if size % world:
            raise SystemExit(f"the batch of {size} does not split evenly over {world} ranks")
        share = slice(rank * size // world, (rank + 1) * size // world)
        batch = (y0[share].to(device), t.to(device), y[:, share].to(device))
        opt.zero_grad()
        loss = loss_fn(ddp, *batch)
        loss.backward()  # DDP averages the gradients over the ranks here
        if args.check and it == 0 and rank == 0:
            full = (y0.to(device), t.to(device), y.to(device))
            diff = check_gradient(ddp, full, device)
            print(f"rank 0: DDP gradient vs one process's full-batch gradient: max relative difference {diff:.2e}")
            if diff > 1e-4:  # float32 sums in another order, and steps that may differ at round-off
                raise SystemExit("gradient check failed")
            print("gradient check passed")
        opt.step()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        if rank == 0 and (it % 20 == 0 or it == args.iters - 1):
            print(f"iter {it:4d}  loss {float(mean_loss) / world:.4f}  nfe {model.nfe}  "
                  f"{time.perf_counter() - start:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    parser.add_argument("--check", action="store_true", help="compare the first DDP gradient with one process's")
    args = parser.parse_args()
    dist.init_process_group(args.backend, timeout=datetime.timedelta(minutes=5))
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # one thread per process: the processes share the cores
    train(args, rank, world, device)
    release()
    if args.check and (left := gloo_threads()):
        raise SystemExit(f"rank {rank}: gloo threads still running after destroy_process_group: {left}")
    if args.check:
        print(f"rank {rank}: process group released")


if __name__ == "__main__":
    main()
