"""``EnsembleProblem``: many trajectories of one problem (SciML's ``EnsembleProblem``).

A base problem plus three user functions with SciML's meaning: ``prob_func(prob, i, repeat)`` makes
trajectory ``i``'s problem, ``output_func(sol, i) -> (value, rerun)`` turns its solution into what is kept, and
``reduction(u, batch, I) -> (u, converged)`` folds each batch of kept values into an accumulator. This module
holds the container and the calls of those functions (each checked, with errors naming trajectory ``i``); the
back ends that solve the trajectories are in :mod:`pysciml.ensemble.backends` and
:mod:`pysciml.ensemble.distributed`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import InputError
from ..problem import ODEProblem

__all__ = ["EnsembleProblem", "MAX_REPEATS"]

#: Most attempts of one trajectory (``output_func`` answering ``rerun=True``) before the ensemble stops with an
#: :class:`InputError`: an ``output_func`` that always asks to rerun would otherwise loop forever.
MAX_REPEATS = 100


def _default_prob_func(prob: ODEProblem, i: int, repeat: int) -> ODEProblem:
    return prob


def _default_output_func(sol: Any, i: int) -> tuple[Any, bool]:
    return sol, False


#: Attribute by which a safety copy's clone names its original and its version counter at cloning: a clone
#: still at that version is an unchanged copy, which the batched back ends pass once like the original
#: (:func:`pysciml.ensemble.stacking.shared_origin`) instead of stacking equal copies.
ORIGIN_ATTR = "_pysciml_origin"


def _clone(x: torch.Tensor) -> torch.Tensor:
    c = x.clone()
    if not c.is_inference():  # an inference tensor keeps no version counter: it stays a copy of its own
        setattr(c, ORIGIN_ATTR, (x, c._version))
    return c


def _copy_problem(prob: ODEProblem) -> ODEProblem:
    """A shallow copy of ``prob`` whose ``u0`` and the tensors in ``p`` (at the top level or in a tuple, list
    or dict) are clones: a ``prob_func`` may change them in place without touching the base problem."""
    out = object.__new__(type(prob))  # copy.copy's generic path costs ~0.1 ms per trajectory here
    out.__dict__.update(prob.__dict__)
    out.u0 = prob.u0.clone()
    p = prob.p
    if isinstance(p, torch.Tensor):
        out.p = _clone(p)
    elif isinstance(p, (tuple, list)):
        out.p = type(p)(_clone(x) if isinstance(x, torch.Tensor) else x for x in p)
    elif isinstance(p, dict):
        out.p = {k: _clone(v) if isinstance(v, torch.Tensor) else v for k, v in p.items()}
    return out


class EnsembleProblem:
    """Trajectories ``0 .. N-1`` of a base problem, solved by ``pysciml.solve(eprob, alg, trajectories=N)``.

    Args:
        prob: the base :class:`~pysciml.ODEProblem` (or ``SplitODEProblem``), unbatched.
        prob_func: ``prob_func(prob, i, repeat) -> ODEProblem``, trajectory ``i``'s problem (``i`` counts from 0,
            Python's convention; ``repeat`` from 1, SciML's: it is 2 on the first rerun). Usually
            ``prob.remake(u0=..., p=...)``. Default: the base problem for every ``i``. For the batched back ends
            every trajectory's problem must have the same ``f`` (the same object), the same state shape, dtype,
            device and ``tspan``; ``u0`` and the tensors in ``p`` are stacked (see
            :class:`~pysciml.ensemble.EnsembleBatched`).
        output_func: ``output_func(sol, i) -> (value, rerun)`` as in SciML: ``value`` is what the ensemble keeps
            for trajectory ``i`` (``sol`` is a :class:`~pysciml.ensemble.TrajectorySolution`: ``t (S,)``,
            ``u (S, *state)``, ``retcode``); ``rerun=True`` solves trajectory ``i`` again with ``repeat + 1``
            (at most :data:`MAX_REPEATS` attempts). It must return that pair (a bare value is refused, so that
            a tuple value is never mistaken for one). Default: ``(sol, False)``.
        reduction: ``reduction(u, batch, I) -> (u, converged)``: folds ``batch`` (the list of values of the
            trajectories ``I``, a ``range``, in index order) into the accumulator ``u``; ``converged=True`` stops
            the ensemble after this batch (``EnsembleSolution.converged``). Default: append the batch to a list
            (so ``EnsembleSolution.u`` is the list of all values). With a reduction the values of a batch are
            dropped once folded, so memory stays bounded by a batch whatever the number of trajectories.
        u_init: the accumulator's initial value (default: a new empty list, as in SciML).
        safetycopy: hand ``prob_func`` a copy of the base problem whose ``u0`` and tensors in ``p`` are clones
            (``f``, ``jac`` and other objects are shared), so that changing them in place does not leak into
            other trajectories (SciML's ``safetycopy``; default ``True``; ``False`` skips the copies).

    Raises:
        InputError: ``prob`` is not an unbatched problem, or a function is not callable.
    """

    def __init__(self, prob: ODEProblem, prob_func: Callable[[ODEProblem, int, int], ODEProblem] | None = None,
                 output_func: Callable[[Any, int], tuple[Any, bool]] | None = None,
                 reduction: Callable[[Any, list[Any], range], tuple[Any, bool]] | None = None, *,
                 u_init: Any = None, safetycopy: bool = True) -> None:
        if not isinstance(prob, ODEProblem):
            raise InputError(f"EnsembleProblem needs an ODEProblem (or SplitODEProblem) as prob, got "
                             f"{type(prob).__name__}")
        if prob.batched:
            raise InputError("EnsembleProblem's prob must be unbatched (one trajectory): the ensemble stacks the "
                             "trajectories itself; pass prob with batched=False and make trajectory i in prob_func")
        for name, fn in (("prob_func", prob_func), ("output_func", output_func), ("reduction", reduction)):
            if fn is not None and not callable(fn):
                raise InputError(f"{name} must be callable or None, got {type(fn).__name__}")
        self.prob = prob
        self.prob_func = prob_func if prob_func is not None else _default_prob_func
        self.output_func = output_func if output_func is not None else _default_output_func
        self.reduction = reduction
        self.u_init = u_init
        self.safetycopy = bool(safetycopy)

    def initial_accumulator(self) -> Any:
        """``u_init``, or a new empty list when none was given."""
        return [] if self.u_init is None else self.u_init

    def make_problem(self, i: int, repeat: int) -> ODEProblem:
        """Trajectory ``i``'s problem from ``prob_func`` (checked: an unbatched ``ODEProblem``)."""
        base = _copy_problem(self.prob) if self.safetycopy else self.prob
        prob = self.prob_func(base, i, repeat)
        if not isinstance(prob, ODEProblem):
            raise InputError(f"prob_func returned {type(prob).__name__} for trajectory {i}; it must return an "
                             "ODEProblem (e.g. prob.remake(u0=..., p=...))")
        if prob.batched:
            raise InputError(f"prob_func returned a batched problem for trajectory {i}; return one trajectory's "
                             "problem (batched=False): the ensemble back end does the batching")
        return prob

    def output(self, sol: Any, i: int) -> tuple[Any, bool]:
        """``output_func(sol, i)``, checked to be a ``(value, rerun)`` pair."""
        out = self.output_func(sol, i)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], bool)):
            raise InputError(f"output_func must return a pair (value, rerun) with rerun a bool, as in SciML; for "
                             f"trajectory {i} it returned {type(out).__name__}. Write e.g. "
                             "output_func=lambda sol, i: (sol.u[-1], False)")
        return out

    def reduce(self, u: Any, batch: Sequence[Any], indices: range) -> tuple[Any, bool]:
        """``reduction(u, batch, I)`` (or the default: append), checked to be a ``(u, converged)`` pair."""
        if self.reduction is None:
            u.extend(batch)
            return u, False
        out = self.reduction(u, list(batch), indices)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], bool)):
            raise InputError(f"reduction must return a pair (u, converged) with converged a bool, as in SciML; for "
                             f"trajectories {indices.start}..{indices.stop - 1} it returned {type(out).__name__}")
        return out

    def __repr__(self) -> str:
        red = "" if self.reduction is None else f", reduction={getattr(self.reduction, '__name__', self.reduction)}"
        return f"EnsembleProblem({self.prob!r}{red})"
