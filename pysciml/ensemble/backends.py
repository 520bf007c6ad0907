"""Ensemble back ends in one process: :class:`EnsembleSerial` (one solve per trajectory, the reference) and
:class:`EnsembleBatched` (batches of trajectories stacked into one batched solve), and the streaming driver
both share with :class:`~pysciml.ensemble.EnsembleDistributed`.

The trajectories ``0 .. N-1`` are cut into consecutive batches of ``batch_size``. Each batch is solved
(:func:`solve_batch`: problems from ``prob_func``, a solve, ``output_func`` per trajectory, reruns) and then
folded by the reduction before the next batch starts, so a run holds one batch of outputs at a time (plus the
accumulator and one byte of return code per trajectory). The batches, and the reduction calls, are the same in
every back end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from ..problem import ODEProblem
from ..solution import ODESolution, ReturnCode, Stats
from .problem import MAX_REPEATS, EnsembleProblem
from .solution import EnsembleSolution, TrajectorySolution
from .stacking import check_rowwise, stack_problems

__all__ = ["EnsembleAlgorithm", "EnsembleSerial", "EnsembleBatched", "BatchResult", "solve_batch",
           "solve_ensemble", "batches", "fold"]

#: ``solve_one(prob) -> ODESolution``: ``pysciml.solve`` with the ensemble call's options bound.
SolveOne = Callable[[ODEProblem], ODESolution]

DEFAULT_BATCH_SIZE = 10_000


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int (trajectories per batch), got {batch_size!r}")
    return batch_size


@dataclass
class BatchResult:
    """One batch: the outputs of trajectories ``indices`` (in order), their return codes (``uint8``, see
    :data:`~pysciml.ensemble.solution.CODES`), the work done and the reruns."""

    indices: range
    outputs: list[Any]
    codes: torch.Tensor
    stats: Stats = field(default_factory=Stats)
    reruns: int = 0


class EnsembleAlgorithm:
    """Base class of the ensemble back ends: ``batch_size`` trajectories per batch (and per reduction call)."""

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.batch_size = _check_batch_size(batch_size)

    def solve_trajectories(self, probs: list[ODEProblem], indices: list[int], repeats: list[int],
                           solve_one: SolveOne, state: dict[str, Any]) -> tuple[list[TrajectorySolution], Stats]:
        """Solve the problems of trajectories ``indices``; one :class:`TrajectorySolution` each, and the work."""
        raise NotImplementedError

    def run(self, eprob: EnsembleProblem, trajectories: int, solve_one: SolveOne) -> EnsembleSolution:
        """Solve trajectories ``0 .. trajectories-1`` batch by batch, folding each batch as it is done."""
        state: dict[str, Any] = {}
        results = (solve_batch(self, eprob, r, solve_one, state) for r in batches(trajectories, self.batch_size))
        return fold(eprob, results, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size})"


class EnsembleSerial(EnsembleAlgorithm):
    """One ``pysciml.solve`` per trajectory, in index order: the reference the other back ends are tested
    against, and the back end for trajectories that cannot be stacked (different ``tspan``, shapes or ``f``).

    Args:
        batch_size: trajectories per reduction call (default 10,000).
    """

    def solve_trajectories(self, probs: list[ODEProblem], indices: list[int], repeats: list[int],
                           solve_one: SolveOne, state: dict[str, Any]) -> tuple[list[TrajectorySolution], Stats]:
        sols, stats = [], Stats()
        for prob, i, rep in zip(probs, indices, repeats, strict=True):
            sol = solve_one(prob)
            stats += sol.stats
            sols.append(TrajectorySolution(sol.t, sol.u, sol.retcode, i, rep, "" if sol.retcode else sol.message,
                                           sol.stats, prob))
        return sols, stats


class EnsembleBatched(EnsembleAlgorithm):
    """Batches of trajectories stacked into one batched solve each (the default back end); CPU or CUDA (the
    problems' device).

    Args:
        batch_size: most trajectories per batched solve, and per reduction call (default 10,000). Memory grows
            with it, time per trajectory shrinks with it (fewer, larger tensor operations).
        vmap: wrap ``f`` (and ``jac``, ``tgrad``) in ``torch.func.vmap`` so that a function written for one
            trajectory runs on the stacked batch. With ``False`` (default) ``f`` gets ``t (B,)``,
            ``u (B, *state)`` and the stacked ``p`` and must act row by row (checked on the first batch).

    The trajectories of a batch must be stackable (see :mod:`pysciml.ensemble.stacking`): same ``f``, state
    shape, dtype, device and ``tspan``; differing ones are refused with an :class:`InputError` naming them.
    Each trajectory keeps its own step size and return code; the results equal one-by-one solves to round-off
    (tested against :class:`EnsembleSerial`).
    """

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE, *, vmap: bool = False) -> None:
        super().__init__(batch_size)
        self.vmap = bool(vmap)

    def solve_trajectories(self, probs: list[ODEProblem], indices: list[int], repeats: list[int],
                           solve_one: SolveOne, state: dict[str, Any]) -> tuple[list[TrajectorySolution], Stats]:
        batched = stack_problems(probs, indices, self.vmap)
        if not self.vmap and not state.get("rowwise_checked"):
            check_rowwise(batched, probs, indices)
            state["rowwise_checked"] = True
        sol = solve_one(batched)
        sols = []
        for j, (prob, i, rep) in enumerate(zip(probs, indices, repeats, strict=True)):
            code = sol.retcodes[j]
            msg = "" if code else sol.message
            sols.append(TrajectorySolution(sol.t, sol.u[:, j].clone(), code, i, rep, msg, None, prob))
        return sols, sol.stats

    def __repr__(self) -> str:
        return f"EnsembleBatched(batch_size={self.batch_size}, vmap={self.vmap})"


def batches(trajectories: int, batch_size: int) -> Iterator[range]:
    """Consecutive index ranges of at most ``batch_size`` covering ``0 .. trajectories-1``."""
    for start in range(0, trajectories, batch_size):
        yield range(start, min(start + batch_size, trajectories))


def solve_batch(backend: EnsembleAlgorithm, eprob: EnsembleProblem, indices: range, solve_one: SolveOne,
                state: dict[str, Any]) -> BatchResult:
    """Solve trajectories ``indices`` with ``backend``, apply ``output_func`` and rerun where it asks."""
    outputs: dict[int, Any] = {}
    codes: dict[int, ReturnCode] = {}
    stats, reruns = Stats(), 0
    pending, repeats = list(indices), [1] * len(indices)
    while pending:
        probs = [eprob.make_problem(i, rep) for i, rep in zip(pending, repeats, strict=True)]
        sols, work = backend.solve_trajectories(probs, pending, repeats, solve_one, state)
        stats += work
        again, again_rep = [], []
        for sol, i, rep in zip(sols, pending, repeats, strict=True):
            value, rerun = eprob.output(sol, i)
            if not rerun:
                outputs[i], codes[i] = value, sol.retcode
                continue
            if rep >= MAX_REPEATS:
                raise InputError(f"output_func asked to rerun trajectory {i} {MAX_REPEATS} times; return "
                                 "rerun=False once a result is acceptable (or change prob_func for later repeats)")
            again.append(i)
            again_rep.append(rep + 1)
        reruns += len(again)
        pending, repeats = again, again_rep
    order = list(indices)
    return BatchResult(indices, [outputs[i] for i in order], EnsembleSolution.encode([codes[i] for i in order]),
                       stats, reruns)


def fold(eprob: EnsembleProblem, results: Iterator[BatchResult], backend: Any) -> EnsembleSolution:
    """Fold batch results, in order, with the ensemble's reduction (stopping when it converges)."""
    start = time.perf_counter()
    u = eprob.initial_accumulator()
    codes, stats, reruns, converged = [], Stats(), 0, False
    for res in results:
        u, converged = eprob.reduce(u, res.outputs, res.indices)
        codes.append(res.codes)
        stats += res.stats
        reruns += res.reruns
        if converged:
            break
    all_codes = torch.cat(codes) if codes else torch.zeros(0, dtype=torch.uint8)
    return EnsembleSolution(u, all_codes, stats, converged, reruns, time.perf_counter() - start, backend)


def solve_ensemble(eprob: EnsembleProblem, trajectories: Any, ensemble: Any, solve_one: SolveOne) -> EnsembleSolution:
    """The ensemble entry point of :func:`pysciml.solve` (which supplies ``solve_one``)."""
    if isinstance(trajectories, bool) or not isinstance(trajectories, int) or trajectories < 1:
        raise InputError(f"trajectories must be a positive int (how many trajectories to solve), got "
                         f"{trajectories!r}: solve(eprob, alg, trajectories=N)")
    if ensemble is None:
        ensemble = EnsembleBatched()
    if not isinstance(ensemble, EnsembleAlgorithm):
        raise InputError(f"ensemble must be EnsembleBatched(), EnsembleSerial() or EnsembleDistributed() (from "
                         f"pysciml.ensemble), got {type(ensemble).__name__}")
    return ensemble.run(eprob, trajectories, solve_one)
