"""What an ensemble solve returns: one :class:`TrajectorySolution` per solved trajectory (handed to
``output_func``) and the :class:`EnsembleSolution` of the whole ensemble."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..solution import ReturnCode, Stats

__all__ = ["TrajectorySolution", "EnsembleSolution", "CODES"]

Tensor = torch.Tensor

#: Return codes in the order of their ``uint8`` codes in :attr:`EnsembleSolution.codes`.
CODES: tuple[ReturnCode, ...] = tuple(ReturnCode)
_CODE_OF = {c: k for k, c in enumerate(CODES)}
_FAILED = torch.tensor([not c for c in CODES], dtype=torch.bool)


@dataclass
class TrajectorySolution:
    """One trajectory's solution, as ``output_func(sol, i)`` receives it.

    Attributes:
        t: save times, ``(S,)`` (``saveat`` of the ensemble solve; ``(t0, t1)`` when none was given).
        u: states at ``t``, ``(S, *state)``; the trajectory's own storage (not a view of a batch), so keeping it
            keeps nothing else alive.
        retcode: the trajectory's :class:`~pysciml.ReturnCode`.
        index: the trajectory index ``i``.
        repeat: the attempt (1 first, SciML's ``repeat``).
        message: the solve's message when the trajectory failed (for a batched solve, the batch's message,
            which names the failed trajectories by their position in the batch); ``""`` on success.
        stats: the :class:`~pysciml.Stats` of this trajectory's own solve (``EnsembleSerial``); ``None`` in
            the batched back ends, whose work is counted per batch (``EnsembleSolution.stats`` has the total).
        prob: the trajectory's problem (not pickled: it holds ``f``; ``None`` after a trip between processes).
    """

    t: Tensor
    u: Tensor
    retcode: ReturnCode
    index: int
    repeat: int = 1
    message: str = ""
    stats: Stats | None = None
    prob: Any = field(default=None, repr=False)

    @property
    def success(self) -> bool:
        """``Success``, or ``Terminated`` by a terminal callback (both successful, as in SciML)."""
        return bool(self.retcode)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["prob"] = None
        return state


class EnsembleSolution:
    """The result of ``pysciml.solve(EnsembleProblem, alg, trajectories=N, ensemble=...)``.

    Attributes:
        u: without a reduction, the list of ``output_func`` values in trajectory order (by default the
            :class:`TrajectorySolution` of each trajectory); with one, the final accumulator.
        codes: ``uint8`` tensor ``(M,)`` of the solved trajectories' return codes (index ``k`` means
            ``CODES[k]``; ``M = N`` unless the reduction converged early). One byte per trajectory, so ``10^7``
            trajectories cost 10 MB; :attr:`retcodes` decodes them.
        stats: :class:`~pysciml.Stats` summed over every solve of the ensemble (batched solves count per batch).
        converged: whether the reduction answered ``converged=True`` (and stopped the ensemble early).
        trajectories: ``M``, the number of trajectories solved.
        reruns: solves repeated because ``output_func`` asked for it.
        elapsed: wall-clock seconds of the ensemble solve.
        ensemble: the back end object that ran it.
    """

    def __init__(self, u: Any, codes: Tensor, stats: Stats, converged: bool, reruns: int, elapsed: float,
                 ensemble: Any) -> None:
        self.u, self.codes, self.stats, self.converged = u, codes, stats, converged
        self.reruns, self.elapsed, self.ensemble = reruns, elapsed, ensemble
        self.trajectories = int(codes.shape[0])

    @staticmethod
    def encode(retcodes: list[ReturnCode]) -> Tensor:
        """``uint8`` codes of ``retcodes`` (see :data:`CODES`)."""
        return torch.tensor([_CODE_OF[r] for r in retcodes], dtype=torch.uint8)

    @property
    def retcodes(self) -> tuple[ReturnCode, ...]:
        """Per-trajectory return codes, in trajectory order."""
        return tuple(CODES[k] for k in self.codes.tolist())

    @property
    def failures(self) -> list[int]:
        """Indices of the trajectories that did not succeed (``Terminated`` by a terminal callback succeeds)."""
        return torch.nonzero(_FAILED[self.codes.long()]).reshape(-1).tolist()

    @property
    def retcode(self) -> ReturnCode:
        """``Success`` if every trajectory succeeded (or was ``Terminated``), else the first failed trajectory's
        code."""
        bad = self.failures
        return CODES[int(self.codes[bad[0]])] if bad else ReturnCode.Success

    @property
    def success(self) -> bool:
        return not self.failures

    def __len__(self) -> int:
        return len(self.u) if isinstance(self.u, list) else self.trajectories

    def __getitem__(self, i: int) -> Any:
        return self.u[i]

    def __repr__(self) -> str:
        kept = f"{len(self.u)} outputs" if isinstance(self.u, list) else f"reduced: {type(self.u).__name__}"
        return (f"EnsembleSolution(trajectories={self.trajectories}, retcode={self.retcode.value}, "
                f"failures={len(self.failures)}, {kept}, converged={self.converged}, elapsed={self.elapsed:.3g} s)")
