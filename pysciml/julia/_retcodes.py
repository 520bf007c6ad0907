"""What a Julia solve reports, in pysciml's terms: SciMLBase ``ReturnCode`` names -> :class:`~pysciml.ReturnCode`
(:func:`retcode_from_julia`), ``DEStats`` counters -> :class:`~pysciml.Stats` (:func:`stats_from_julia`).

Every member of SciMLBase's ``ReturnCode`` enum (SciMLBase 3.49, ``src/retcodes.jl``) is listed. The codes
SciMLBase's ``successful_retcode`` accepts map to ``Success`` (``Terminated`` to pysciml's ``Terminated``, also a
success); every other code is a failure, among them
``Default``: the enum's initial value, which a finished solve never carries (SciMLBase: "the solve is
unfinished or its outcome is unknown"). A name missing here (a future SciMLBase) is a failure as well.
The Julia name itself always stays in the solution's message.
"""

from __future__ import annotations

from typing import Any

from ..solution import ReturnCode, Stats

__all__ = ["JULIA_RETCODES", "JULIA_SUCCESS_RETCODES", "failure_part", "retcode_from_julia", "stats_from_julia"]

JULIA_SUCCESS_RETCODES = frozenset({
    "Success", "Terminated", "ExactSolutionLeft", "ExactSolutionRight", "FloatingPointLimit", "StalledSuccess",
})
"""The codes SciMLBase's ``successful_retcode`` accepts."""

JULIA_RETCODES: dict[str, ReturnCode] = {
    **{name: ReturnCode.Success for name in JULIA_SUCCESS_RETCODES},
    "Terminated": ReturnCode.Terminated,  # a terminal callback ended the solve (a success, as in SciMLBase)
    "Default": ReturnCode.ConvergenceFailure,  # never set by a finished solve: outcome unknown
    "MaxIters": ReturnCode.MaxIters,
    "MaxNumSub": ReturnCode.MaxIters,  # sub-iteration budget exhausted
    "MaxTime": ReturnCode.MaxIters,  # time budget exhausted
    "DtLessThanMin": ReturnCode.DtLessThanMin,
    "DtNaN": ReturnCode.Unstable,
    "Unstable": ReturnCode.Unstable,
    "InitialFailure": ReturnCode.ConvergenceFailure,
    "ConvergenceFailure": ReturnCode.ConvergenceFailure,
    "Failure": ReturnCode.ConvergenceFailure,
    "Infeasible": ReturnCode.ConvergenceFailure,
    "InternalLineSearchFailed": ReturnCode.ConvergenceFailure,
    "ShrinkThresholdExceeded": ReturnCode.ConvergenceFailure,
    "Stalled": ReturnCode.ConvergenceFailure,
    "InternalLinearSolveFailed": ReturnCode.ConvergenceFailure,
    "APosterioriSafetyFailure": ReturnCode.ConvergenceFailure,
}
"""Every SciMLBase ``ReturnCode`` name and the pysciml code it becomes."""


def retcode_from_julia(name: str) -> ReturnCode:
    """The pysciml :class:`~pysciml.ReturnCode` of a SciMLBase ``ReturnCode`` name (an unknown name is a
    failure: ``ConvergenceFailure``)."""
    return JULIA_RETCODES.get(str(name), ReturnCode.ConvergenceFailure)


def stats_from_julia(counts: Any) -> Stats:
    """SciMLBase ``DEStats`` ``(nf, nf2, nw, nsolve, njacs, nnonliniter, nnonlinconvfail, naccept, nreject)``
    -> :class:`Stats` (``nlu`` counts W-matrix factorizations ``nw``; ``nloop = naccept + nreject``)."""
    nf, nf2, nw, nsolve, njacs, nnl, nnlfail, nacc, nrej = (max(int(c), 0) for c in counts)
    return Stats(nf=nf + nf2, njac=njacs, nlu=nw, nsolve=nsolve, naccept=nacc, nreject=nrej,
                 nnonliniter=nnl, nnonlinconvfail=nnlfail, nloop=nacc + nrej)


def failure_part(code: str, t: Any) -> str:
    """How one Julia solve failed, for :func:`~pysciml._validate.solve_message`: its SciMLBase code and the last
    save time it reached (``t``, the times it returned)."""
    return f"ReturnCode.{code} after the last saved t={float(t[-1]) if len(t) else float('nan'):.6g}"
