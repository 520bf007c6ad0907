"""Ensembles: many trajectories of one problem (SciML's ``EnsembleProblem``), solved one by one
(:class:`EnsembleSerial`), stacked into batched solves streamed batch by batch (:class:`EnsembleBatched`, the
default), or shared among the ranks of a ``torch.distributed`` group (:class:`EnsembleDistributed`); and the
statistics over trajectories (:mod:`pysciml.ensemble.summary`). Guide: ``docs/guide/distributed.md``.
"""

from __future__ import annotations

from .backends import EnsembleAlgorithm, EnsembleBatched, EnsembleSerial
from .distributed import DistributedEnsembleError, EnsembleDistributed
from .problem import EnsembleProblem
from .solution import EnsembleSolution, TrajectorySolution
from .summary import (
    EnsembleSummary,
    MeanVarReduction,
    RunningMoments,
    timeseries_steps_mean,
    timeseries_steps_meanvar,
    timeseries_steps_quantile,
    timestep_mean,
    timestep_meanvar,
    timestep_quantile,
)

__all__ = [
    "EnsembleProblem", "EnsembleSolution", "TrajectorySolution", "EnsembleAlgorithm", "EnsembleSerial",
    "EnsembleBatched", "EnsembleDistributed", "DistributedEnsembleError", "EnsembleSummary", "MeanVarReduction",
    "RunningMoments", "timeseries_steps_mean", "timeseries_steps_meanvar", "timeseries_steps_quantile",
    "timestep_mean", "timestep_meanvar", "timestep_quantile",
]
