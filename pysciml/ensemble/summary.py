"""Statistics over an ensemble's trajectories at each save time (SciML's ``EnsembleAnalysis``): from the kept
outputs (:func:`timeseries_steps_mean`, :func:`timeseries_steps_meanvar`, :func:`timeseries_steps_quantile`,
:func:`timestep_mean`, ..., :class:`EnsembleSummary`), or streamed batch by batch in bounded memory
(:class:`MeanVarReduction`, a ``reduction`` for :class:`~pysciml.ensemble.EnsembleProblem`).

Variances are the unbiased sample variances (divide by ``M - 1``, as Julia's ``var``); quantiles are
``torch.quantile``'s linear interpolation (Julia's default ``quantile`` definition too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from .solution import EnsembleSolution

__all__ = ["stack_outputs", "timestep_mean", "timestep_meanvar", "timestep_quantile", "timeseries_steps_mean",
           "timeseries_steps_meanvar", "timeseries_steps_quantile", "EnsembleSummary", "RunningMoments",
           "MeanVarReduction"]

Tensor = torch.Tensor


def _series(value: Any, i: int) -> tuple[Tensor | None, Tensor]:
    if isinstance(value, Tensor):
        return None, value
    if hasattr(value, "t") and hasattr(value, "u"):
        return value.t, value.u
    raise InputError(f"output {i} is a {type(value).__name__}; the ensemble summaries need outputs that are "
                     "solutions (the default output_func) or tensors (S, *state)")


def stack_outputs(sim: EnsembleSolution | Sequence[Any]) -> tuple[Tensor | None, Tensor]:
    """``(t (S,), U (M, S, *state))`` from the kept outputs (solutions on common save times, or tensors).

    Raises:
        InputError: the ensemble was reduced, or the outputs have different save times or shapes.
    """
    outputs = sim.u if isinstance(sim, EnsembleSolution) else sim
    if not isinstance(outputs, list) or not outputs:
        raise InputError("the summaries need the kept outputs (an ensemble solved without a reduction); for a "
                         "streamed ensemble use reduction=MeanVarReduction() instead")
    t0, u0 = _series(outputs[0], 0)
    us = []
    for i, value in enumerate(outputs):
        t, u = _series(value, i)
        if u.shape != u0.shape or (t0 is not None and (t is None or not torch.equal(t, t0))):
            raise InputError(f"output {i} has other save times or another shape than output 0; the summaries need "
                             "every trajectory saved at the same times (pass saveat= to solve)")
        us.append(u)
    return t0, torch.stack(us)


def timeseries_steps_mean(sim: EnsembleSolution | Sequence[Any]) -> tuple[Tensor | None, Tensor]:
    """``(t, mean)``: the mean over trajectories at every save time, ``mean (S, *state)``."""
    t, U = stack_outputs(sim)
    return t, U.mean(dim=0)


def timeseries_steps_meanvar(sim: EnsembleSolution | Sequence[Any]) -> tuple[Tensor | None, Tensor, Tensor]:
    """``(t, mean, var)`` over trajectories at every save time (unbiased variance; needs two trajectories)."""
    t, U = stack_outputs(sim)
    return t, U.mean(dim=0), U.var(dim=0, correction=1)


def timeseries_steps_quantile(sim: EnsembleSolution | Sequence[Any], q: float) -> tuple[Tensor | None, Tensor]:
    """``(t, quantile)``: the ``q`` quantile (``0 <= q <= 1``) over trajectories at every save time."""
    if not 0.0 <= q <= 1.0:
        raise InputError(f"q must lie in [0, 1], got {q}")
    t, U = stack_outputs(sim)
    return t, torch.quantile(U, q, dim=0)


def _at(sim: EnsembleSolution | Sequence[Any], k: int) -> Tensor:
    _, U = stack_outputs(sim)
    if not -U.shape[1] <= k < U.shape[1]:
        raise InputError(f"save index k={k} out of range for {U.shape[1]} save times")
    return U[:, k]


def timestep_mean(sim: EnsembleSolution | Sequence[Any], k: int) -> Tensor:
    """Mean over trajectories of the state at save index ``k``."""
    return _at(sim, k).mean(dim=0)


def timestep_meanvar(sim: EnsembleSolution | Sequence[Any], k: int) -> tuple[Tensor, Tensor]:
    """Mean and unbiased variance over trajectories of the state at save index ``k``."""
    x = _at(sim, k)
    return x.mean(dim=0), x.var(dim=0, correction=1)


def timestep_quantile(sim: EnsembleSolution | Sequence[Any], q: float, k: int) -> Tensor:
    """The ``q`` quantile over trajectories of the state at save index ``k``."""
    if not 0.0 <= q <= 1.0:
        raise InputError(f"q must lie in [0, 1], got {q}")
    return torch.quantile(_at(sim, k), q, dim=0)


@dataclass
class EnsembleSummary:
    """SciML's ``EnsembleSummary``: mean, variance and two quantiles over trajectories at every save time.

    Build it with ``EnsembleSummary.of(sim, quantiles=(0.05, 0.95))``.

    Attributes:
        t: save times ``(S,)`` (``None`` for outputs that are bare tensors).
        u: mean ``(S, *state)``.
        v: unbiased variance ``(S, *state)``.
        qlow, qhigh: the two quantiles ``(S, *state)``.
        num_trajectories: how many trajectories the statistics cover.
    """

    t: Tensor | None
    u: Tensor
    v: Tensor
    qlow: Tensor
    qhigh: Tensor
    num_trajectories: int

    @classmethod
    def of(cls, sim: EnsembleSolution | Sequence[Any], quantiles: tuple[float, float] = (0.05, 0.95)
           ) -> EnsembleSummary:
        if len(quantiles) != 2 or not all(0.0 <= q <= 1.0 for q in quantiles):
            raise InputError(f"quantiles must be two numbers in [0, 1], got {quantiles!r}")
        t, U = stack_outputs(sim)
        q = torch.quantile(U, torch.tensor(quantiles, dtype=U.dtype, device=U.device), dim=0)
        return cls(t, U.mean(dim=0), U.var(dim=0, correction=1), q[0], q[1], int(U.shape[0]))


@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations (``m2``) over the trajectories folded so far."""

    count: int
    mean: Tensor
    m2: Tensor

    @property
    def var(self) -> Tensor:
        """Unbiased variance ``m2 / (count - 1)`` (NaN for fewer than two trajectories)."""
        return self.m2 / (self.count - 1) if self.count > 1 else torch.full_like(self.m2, float("nan"))


class MeanVarReduction:
    """A ``reduction`` that keeps only the running mean and variance of the outputs (tensors of one shape, or
    solutions, whose ``u`` is used): memory of one batch, whatever the number of trajectories. Batches are
    merged by Chan et al.'s pairwise update (each batch's mean and ``m2`` computed in one tensor operation),
    which agrees with the two-pass statistics of the kept outputs to round-off (tested).

    Use with ``u_init`` left at its default; the ensemble's ``u`` is then a :class:`RunningMoments`.
    """

    def __call__(self, acc: Any, batch: list[Any], indices: range) -> tuple[RunningMoments, bool]:
        x = torch.stack([_series(v, i)[1] for v, i in zip(batch, indices, strict=True)])
        n_b = x.shape[0]
        mean_b = x.mean(dim=0)
        m2_b = ((x - mean_b) ** 2).sum(dim=0)
        if acc is None or (isinstance(acc, list) and not acc):
            return RunningMoments(n_b, mean_b, m2_b), False
        if not isinstance(acc, RunningMoments):
            raise InputError(f"MeanVarReduction starts from the default u_init (an empty list), got "
                             f"{type(acc).__name__}; drop u_init")
        n = acc.count + n_b
        delta = mean_b - acc.mean
        mean = acc.mean + delta * (n_b / n)
        m2 = acc.m2 + m2_b + delta**2 * (acc.count * n_b / n)
        return RunningMoments(n, mean, m2), False
