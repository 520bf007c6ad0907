"""``EnsembleDistributed``: an ensemble's batches shared out among the ranks of a ``torch.distributed``
process group (gloo on CPUs, NCCL on GPUs; processes started by ``torchrun``, on one node or many).

Assignment is deterministic and does not depend on the number of ranks: the trajectories are cut into the
same consecutive batches of ``batch_size`` as in one process, and batch ``k`` goes to rank ``k mod R``. Each rank
solves its batches exactly as :class:`~pysciml.ensemble.EnsembleBatched` would (so every trajectory gets the
same numbers as in one process, bit for bit). The work proceeds in rounds: in round ``j`` the ranks solve batches
``jR .. jR+R-1`` at once, then ``all_gather_object`` hands every rank those batches' outputs, return codes and
work counts, and every rank folds them with the reduction in batch order -- the same calls, in the same order,
as in one process. So every rank ends with the same :class:`~pysciml.ensemble.EnsembleSolution`, memory stays
bounded by ``R`` batches of outputs, and an early ``converged=True`` stops every rank after the same round.

Failures: an exception on one rank (a bad ``prob_func`` output, an ``f`` that raises) is caught there and sent
with that round's results, so every rank raises it (an :class:`InputError` stays one, naming the rank and the
trajectories) instead of waiting for a rank that will never answer. A rank that dies or hangs makes the others'
collective fail after ``timeout`` seconds (or at once, when its connections close), raised on each of them as a
:class:`DistributedEnsembleError` naming the round.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .backends import (
    DEFAULT_BATCH_SIZE,
    BatchResult,
    EnsembleAlgorithm,
    EnsembleBatched,
    SolveOne,
    batches,
    fold,
    solve_batch,
)
from .problem import EnsembleProblem
from .solution import EnsembleSolution, TrajectorySolution

__all__ = ["EnsembleDistributed", "DistributedEnsembleError"]

Tensor = torch.Tensor


class DistributedEnsembleError(RuntimeError):
    """A rank of a distributed ensemble failed (its error, raised on every rank) or a collective failed or
    timed out (a rank died or hung)."""


class _Array:
    """A CPU tensor carried as a NumPy array: pickling 1,000 small tensors took 1.3 s and loading them 1.9 s on
    this (loaded) machine, the same data as arrays a few milliseconds."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _walk(x: Any, convert: Callable[[Any], Any], depth: int = 0) -> Any:
    """``x`` with ``convert`` applied to its tensors and :class:`_Array`s (lists, tuples, dicts and solutions are
    entered; a solution loses its ``prob``)."""
    if isinstance(x, (Tensor, _Array)):
        return convert(x)
    if isinstance(x, TrajectorySolution):
        return dataclasses.replace(x, t=convert(x.t), u=convert(x.u), prob=None)
    if depth > 8:
        return x
    if type(x) in (list, tuple):
        return type(x)(_walk(v, convert, depth + 1) for v in x)
    if type(x) is dict:
        return {k: _walk(v, convert, depth + 1) for k, v in x.items()}
    return x


def _to_wire(x: Any) -> Any:
    """A tensor detached, on the CPU and (where NumPy has its dtype) as an :class:`_Array`."""
    if not isinstance(x, Tensor):
        return x
    x = x.detach().cpu().resolve_conj().resolve_neg()
    return x if x.dtype in (torch.bfloat16, torch.complex32) or x.is_quantized else _Array(x.numpy())


def _from_wire(x: Any) -> Any:
    return torch.from_numpy(x.array) if isinstance(x, _Array) else x


def _pack(outputs: list[Any]) -> Any:
    """A batch's outputs for the trip: tensors of one shape and dtype (``output_func`` returning e.g.
    ``sol.u[-1]``) as one stacked array, anything else item by item (:func:`_to_wire`)."""
    first = outputs[0] if outputs else None
    if (isinstance(first, Tensor) and first.dtype not in (torch.bfloat16, torch.complex32) and not first.is_quantized
            and all(isinstance(x, Tensor) and x.shape == first.shape and x.dtype == first.dtype for x in outputs)):
        return _to_wire(torch.stack([x.detach().cpu() for x in outputs]))
    return _walk(outputs, _to_wire)


def _unpack(packed: Any) -> list[Any]:
    """The inverse of :func:`_pack`."""
    if isinstance(packed, _Array):
        return list(torch.from_numpy(packed.array).unbind(0))
    return _walk(packed, _from_wire)


class EnsembleDistributed(EnsembleAlgorithm):
    """Batches of trajectories shared among the ranks of a ``torch.distributed`` process group, each rank
    solving its batches as :class:`~pysciml.ensemble.EnsembleBatched` does; every rank returns the whole result.

    Initialise the process group first (``torch.distributed.init_process_group("gloo")`` or ``"nccl"``, in a
    script started by ``torchrun``); every rank calls ``solve`` with the same ensemble problem, algorithm and
    options. See ``docs/guide/distributed.md`` for the commands.

    Args:
        batch_size: trajectories per batched solve and per reduction call (default 10,000). Batch ``k`` goes to
            rank ``k mod R``: for ``N`` trajectories on ``R`` ranks keep ``N / batch_size`` a multiple of ``R``
            (or much larger than it), or ranks idle.
        vmap: as for :class:`~pysciml.ensemble.EnsembleBatched`.
        timeout: seconds a rank waits in a collective for the others before raising (a dead or hung rank);
            applies to a process group made for the ensemble from ``group``'s ranks. ``None`` uses ``group`` as
            it is, with its own timeout (``init_process_group``'s, 30 minutes by default for gloo).
        group: the process group (default: the whole world).

    Outputs travel by ``all_gather_object`` (pickle): tensors in them are detached and moved to the CPU first
    (gradients do not cross processes: train across processes with ``DistributedDataParallel``), and a
    :class:`~pysciml.ensemble.TrajectorySolution` travels without its ``prob``. The reduction runs on every rank
    on the same batches in the same order, so it must be deterministic (no random numbers of its own).

    Raises:
        InputError: no process group is initialised, or (on every rank) a rank's input error.
        DistributedEnsembleError: (on every rank) another error of a rank, or a failed or timed-out collective.
    """

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE, *, vmap: bool = False, timeout: float | None = 600.0,
                 group: Any = None) -> None:
        super().__init__(batch_size)
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InputError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self.local = EnsembleBatched(batch_size, vmap=vmap)
        self.timeout = timeout
        self.group = group

    def _group(self) -> tuple[Any, bool]:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            raise InputError("EnsembleDistributed needs an initialised torch.distributed process group: start the "
                             "script with torchrun and call torch.distributed.init_process_group('gloo') (CPU) or "
                             "('nccl') (GPU) before solve; in one process use EnsembleBatched()")
        group = self.group if self.group is not None else dist.group.WORLD
        if self.timeout is None:
            return group, False
        ranks = dist.get_process_group_ranks(group)
        try:
            return dist.new_group(ranks=ranks, timeout=datetime.timedelta(seconds=self.timeout)), True
        except Exception as exc:  # noqa: BLE001 -- a rank missing at the start: say so on the ranks that came
            raise DistributedEnsembleError(
                f"EnsembleDistributed: rank {dist.get_rank()} of {dist.get_world_size()}: making the ensemble's "
                f"process group failed ({type(exc).__name__}: {exc}); another rank died, hung or raised before "
                "reaching solve (every rank must call solve with the same ensemble)") from exc

    def run(self, eprob: EnsembleProblem, trajectories: int, solve_one: SolveOne) -> EnsembleSolution:
        dist = torch.distributed
        group, made = self._group()
        try:
            sol = fold(eprob, self._rounds(eprob, trajectories, solve_one, group), self)
        finally:
            if made:
                dist.destroy_process_group(group)
        return sol

    def _rounds(self, eprob: EnsembleProblem, trajectories: int, solve_one: SolveOne, group: Any
                ) -> Iterator[BatchResult]:
        dist = torch.distributed
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        ranges = list(batches(trajectories, self.batch_size))
        state: dict[str, Any] = {}
        for j in range(math.ceil(len(ranges) / size)):
            k = j * size + rank
            payload: tuple[Any, ...] = ("idle",)
            if k < len(ranges):
                try:
                    res = solve_batch(self.local, eprob, ranges[k], solve_one, state)
                    payload = ("ok", k, dataclasses.replace(res, outputs=_pack(res.outputs)))
                except Exception as exc:  # noqa: BLE001 -- sent to every rank, raised there (no rank left waiting)
                    r = ranges[k]
                    payload = ("error", rank, r.start, r.stop - 1, type(exc).__name__, str(exc),
                               isinstance(exc, InputError))
            gathered: list[Any] = [None] * size
            try:
                dist.all_gather_object(gathered, payload, group=group)
            except Exception as exc:  # noqa: BLE001 -- a backend error or timeout, re-raised with what happened
                raise DistributedEnsembleError(
                    f"EnsembleDistributed: rank {rank} of {size}: the gather of round {j} failed ({type(exc).__name__}:"
                    f" {exc}); another rank died, hung or raised outside the ensemble (timeout {self.timeout} s)"
                ) from exc
            for g in gathered:
                if g[0] == "error":
                    _, r, a, b, kind, msg, is_input = g
                    text = f"EnsembleDistributed: rank {r} failed on trajectories {a}..{b}: {kind}: {msg}"
                    raise (InputError(text) if is_input else DistributedEnsembleError(text))
            for g in sorted((g for g in gathered if g[0] == "ok"), key=lambda g: g[1]):
                yield dataclasses.replace(g[2], outputs=_unpack(g[2].outputs))

    def __repr__(self) -> str:
        return (f"EnsembleDistributed(batch_size={self.batch_size}, vmap={self.local.vmap}, "
                f"timeout={self.timeout})")
