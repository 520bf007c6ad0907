"""A trustworthy reference solution: two different high-order methods at a tight tolerance, and their agreement.

``reference_solution(prob)`` solves ``prob`` with SciPy's Radau IIA (order 5, implicit collocation) and pysciml's
Rodas5P (order 5, Rosenbrock) at ``rtol=1e-12`` by default: two independent families and implementations, so a
bug or an accuracy problem in one shows up as disagreement. The values returned are the first method's; the
largest relative difference between the two is reported as ``agreement`` (an estimate of the reference's error
when the two are independent).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..algorithms import Rodas5P
from ..errors import InputError
from ..problem import ODEProblem
from .adapter import Difference, check_solver, describe, difference, reference_values, run_solver, save_times

__all__ = ["ReferenceSolution", "reference_solution", "resolve_reference"]

Tensor = torch.Tensor


@dataclass
class ReferenceSolution:
    """Result of :func:`reference_solution`.

    Attributes:
        t: save times ``(S,)`` (float64, CPU).
        u: the reference states ``(S, *u0.shape)`` (float64, CPU): the first method's solution.
        methods: the labels of the methods used, in order.
        agreement: the largest difference between the two solutions (relative difference floored by ``atol``).
        rtol, atol: the tolerances of both solves.
        seconds: label -> wall time of its solve.
        solutions: label -> its states ``(S, *u0.shape)``.
    """

    t: Tensor
    u: Tensor
    methods: list[str]
    agreement: Difference
    rtol: float
    atol: float | Tensor
    seconds: dict[str, float] = field(default_factory=dict)
    solutions: dict[str, Tensor] = field(default_factory=dict)

    @property
    def final(self) -> Tensor:
        """The reference at the last save time, ``u0.shape``."""
        return self.u[-1]

    def __str__(self) -> str:
        return (f"reference by {self.methods[0]} (rtol {self.rtol:g}); agreement with {self.methods[1]}: "
                f"{self.agreement}")


def reference_solution(
    prob: ODEProblem,
    rtol: float = 1e-12,
    atol: float | Tensor | None = None,
    *,
    saveat: Any = None,
    methods: Sequence[Any] = ("Radau", Rodas5P()),
) -> ReferenceSolution:
    """Solve ``prob`` with two different high-order methods at a tight tolerance and compare them.

    Args:
        prob: an unbatched problem (the SciPy methods take one trajectory).
        rtol: relative tolerance of both solves (SciPy clips below about 2.2e-14).
        atol: absolute tolerance (a float, or a tensor shaped like ``u0`` for per-component values); default
            ``1e-3 * rtol``. It also floors the relative agreement of components near zero.
        saveat: the save times (as ``solve`` reads them); default ``[t0, t1]``.
        methods: exactly two solvers, each a SciPy method name, a pysciml algorithm or a callable
            ``solver(prob, saveat, rtol=, atol=)``; default SciPy Radau and pysciml Rodas5P.

    Returns:
        A :class:`ReferenceSolution` (``.u``, ``.final``, ``.agreement``).

    Raises:
        InputError: bad arguments; pysciml.SolverError: a method failed (its message says where).
    """
    from ..errors import SolverError

    if not isinstance(prob, ODEProblem):
        raise InputError(f"prob must be an ODEProblem, got {type(prob).__name__}")
    if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise InputError(f"rtol must be a number in (0, 1), got {rtol!r}")
    if len(methods) != 2:
        raise InputError(f"methods must name exactly two solvers to compare, got {len(methods)}")
    for m in methods:
        check_solver(m, "methods")
    atol_ = 1e-3 * rtol if atol is None else atol
    ts = save_times(saveat, prob, default=2)
    solutions: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    for m in methods:
        label = describe(m)
        began = time.perf_counter()
        out = run_solver(m, prob, ts, label, rtol=float(rtol), atol=atol_)
        seconds[label] = time.perf_counter() - began
        if out.u is None:
            raise SolverError(f"reference_solution: {label} failed at rtol {rtol:g}: {out.message}")
        solutions[label] = out.u
    (la, a), (lb, b) = solutions.items()
    floor = float(atol_.abs().min()) if isinstance(atol_, Tensor) else float(atol_)
    agree = difference(a.reshape(len(ts), -1), b.reshape(len(ts), -1), ts, floor)
    return ReferenceSolution(ts, a, [la, lb], agree, float(rtol), atol_, seconds, solutions)


def resolve_reference(reference: Any, prob: ODEProblem, ts: Tensor) -> tuple[Tensor, str]:
    """The reference of :func:`~pysciml.devtools.convergence` / :func:`~pysciml.devtools.work_precision` as
    float64 ``(S, N)`` (or ``(1, N)``: final time only) with its label; ``None`` computes one."""
    if reference is None:
        reference = reference_solution(prob, saveat=ts)
    if isinstance(reference, ReferenceSolution):
        label = f"{reference.methods[0]} reference (rtol {reference.rtol:g})"
        if reference.t.shape == ts.shape and torch.equal(reference.t, ts):
            return reference.u.reshape(len(ts), -1), label
        if math.isclose(float(reference.t[-1]), float(ts[-1]), rel_tol=1e-14, abs_tol=1e-300):
            return reference.final.reshape(1, -1), label + " at the final time"
        raise InputError("reference: this ReferenceSolution was computed at other save times; compute it with "
                         "saveat equal to the save times here, or at the same final time")
    values, label = reference_values(reference, prob, ts)
    assert values is not None
    return values, label
