"""What the Python side hands to PySciML.jl: the positional arguments and the exact keywords of each call.

Pure Python, no Julia: :mod:`pysciml.julia._solve` and :mod:`pysciml.julia._adjoint` call ``pkg.solve_ode`` and
``pkg.adjoint_gradients`` with what these functions build, and ``tests/test_julia_arguments.py`` checks the
keyword sets and the shapes of the tensors against the signatures parsed from PySciML.jl's source.

Tolerances of the adjoint (:func:`adjoint_settings`): SciMLSensitivity hands one ``abstol``/``reltol`` pair to
the backward solve, whose state is not the forward state (``n + np`` unknowns for InterpolatingAdjoint,
``2n + np`` for BacksolveAdjoint, ``n`` in units of ``dL/du`` for QuadratureAdjoint and GaussAdjoint), to the
forward re-solves of checkpointing (state ``n``) and, for QuadratureAdjoint, to ``quadgk`` (scalar ``atol``).
A per-component ``atol`` of length ``n`` fits none of them together, so the adjoint always gets scalars:

* QuadratureAdjoint: its own ``abstol``/``reltol`` (SciMLSensitivity's meaning: the backward solve of ``lambda``
  and the quadrature); ``odeint_julia`` builds its default QuadratureAdjoint from the forward tolerances;
* the others: the forward ``rtol`` and the smallest component of ``atol`` (the tightest; a scalar ``atol``
  is passed unchanged).
"""

from __future__ import annotations

from typing import Any

import torch

from .._validate import adjoint_atol
from ..algorithms import Algorithm
from ..errors import InputError
from ..problem import ODEProblem
from ..sensealg import QuadratureAdjoint, SensitivityAlgorithm
from ._callbacks import DLPackView, TorchCallbacks, to_julia
from ._mapping import algorithm_options, julia_algorithm, julia_sensealg

__all__ = [
    "abstol_argument", "adjoint_call", "adjoint_settings", "atol_row", "check_consistent_u0", "solve_ode_call",
]

Tensor = torch.Tensor
Call = tuple[tuple[Any, ...], dict[str, Any]]


def atol_row(atol: Tensor, b: int | None) -> Tensor:
    """The ``(n,)`` absolute tolerances of trajectory ``b`` (``None``: unbatched) from ``check_tolerances``'
    ``(1, n)`` or ``(B, n)``."""
    return atol[0 if b is None or atol.shape[0] == 1 else b]


def abstol_argument(row: Tensor) -> float | DLPackView:
    """``abstol`` of the forward solve: a float when every component shares it, else the ``(n,)`` row."""
    if bool((row == row[0]).all()):
        return float(row[0])
    return to_julia(row)


def solve_ode_call(callbacks: TorchCallbacks, explicit: TorchCallbacks | None, prob: ODEProblem, alg: Algorithm, *,
                   rtol: float, atol: Tensor, save_times: Tensor | None, dense: bool, options: dict[str, Any],
                   params: Tensor | None = None) -> Call:
    """Arguments of ``PySciML.solve_ode`` for one trajectory (``prob`` unbatched, ``atol`` its ``(n,)`` row).

    Keywords: ``reltol``, ``abstol``, ``saveat``, ``dense``, the step ``options`` (``adaptive``,
    ``maxiters``, ``dtmin``, ``dt``, ``dtmax``, as given), the algorithm's options
    (:func:`~pysciml.julia._mapping.algorithm_options`), and only where they exist ``explicit`` (the
    explicit part of a split problem), ``mass`` (``M.T``, contiguous: Julia's column-major view reads
    ``M``) and ``params`` (the flat parameters of a differentiable solve).
    """
    u0 = prob.u0.reshape(-1)
    kwargs: dict[str, Any] = {
        "reltol": float(rtol), "abstol": abstol_argument(atol),
        "saveat": None if save_times is None else to_julia(save_times.cpu()), "dense": bool(dense),
        **options, **algorithm_options(alg, torch.finfo(u0.dtype).eps),
    }
    if explicit is not None:
        kwargs["explicit"] = explicit
    if prob.mass_matrix is not None:
        kwargs["mass"] = to_julia(prob.mass_matrix.T)
    if params is not None:
        kwargs["params"] = to_julia(params)
    args = (callbacks, to_julia(u0), float(prob.tspan[0]), float(prob.tspan[1]), julia_algorithm(alg))
    return args, kwargs


def adjoint_settings(sensealg: SensitivityAlgorithm, *, n_params: int, rtol: float,
                     atol: Tensor) -> tuple[str, dict[str, Any]]:
    """The SciMLSensitivity name and the ``adjoint_gradients`` keywords for ``sensealg`` (module docstring).

    Without parameters GaussAdjoint becomes QuadratureAdjoint: SciMLSensitivity's GaussAdjoint takes
    ``length(p)`` of ``NullParameters``, which is not defined, while QuadratureAdjoint solves the same
    backward ODE for ``lambda`` and returns no parameter gradient.

    Raises:
        InputError: no Julia counterpart, or a QuadratureAdjoint tolerance that is not a positive number.
    """
    name, opts = julia_sensealg(sensealg)
    if name == "GaussAdjoint" and n_params == 0:
        name, opts = "QuadratureAdjoint", {}
    if isinstance(sensealg, QuadratureAdjoint):
        for field in ("abstol", "reltol"):
            value = getattr(sensealg, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise InputError(f"QuadratureAdjoint({field}={value!r}): {field} must be a positive number")
        reltol, abstol = float(sensealg.reltol), float(sensealg.abstol)
    else:
        reltol, abstol = float(rtol), adjoint_atol(atol)
    return name, {**opts, "reltol": reltol, "abstol": abstol}


def adjoint_call(sol: Any, t: Tensor, grads: Tensor, alg: Algorithm, sensealg_name: str,
                 sensealg_options: dict[str, Any]) -> Call:
    """Arguments of ``PySciML.adjoint_gradients``: the Julia solution, the save times ``t (S,)``, the incoming
    gradients ``grads (S, n)``, the names, the :func:`adjoint_settings` and the algorithm's options."""
    kwargs = {**sensealg_options, **algorithm_options(alg, torch.finfo(grads.dtype).eps)}
    return (sol, to_julia(t.cpu()), to_julia(grads), sensealg_name, julia_algorithm(alg)), kwargs


def check_consistent_u0(callbacks: TorchCallbacks, prob: ODEProblem, atol: Tensor) -> None:
    """Refuse an initial state that violates the algebraic equations of a singular mass matrix.

    The rule is SciMLBase's ``CheckInit`` (OrdinaryDiffEq v2's default): the algebraic equations are the
    rows of ``M`` that are all zero (checked only if some column is all zero too); their residual
    ``f(t0, u0)``, divided by ``atol`` per component, must have a root-mean-square norm over all ``n``
    components of at most 1. The Julia solve then starts from ``u0`` unchanged (``initializealg = NoInit()``),
    whatever OrdinaryDiffEq version resolved.

    Raises:
        InputError: ``u0`` is inconsistent (names the equations, their residuals and the fix).
    """
    mass = prob.mass_matrix
    if mass is None:
        return
    zero = mass == 0
    equations = zero.all(dim=1)
    if not bool(equations.any()) or not bool(zero.all(dim=0).any()):
        return
    u0 = prob.u0.reshape(-1)
    f0 = callbacks.evaluate(float(prob.tspan[0]), u0)
    residual = torch.where(equations, f0, torch.zeros_like(f0))
    norm = float((residual / atol).pow(2).mean().sqrt())
    if norm <= 1.0:
        return
    rows = torch.nonzero(equations).reshape(-1).tolist()
    shown = ", ".join(f"f[{i}] = {float(f0[i]):.3g}" for i in rows[:6]) + (" ..." if len(rows) > 6 else "")
    raise InputError(
        f"u0 is inconsistent with the algebraic equations of the singular mass_matrix (its zero rows {rows[:6]}"
        f"{' ...' if len(rows) > 6 else ''}): {shown} at t0 = {float(prob.tspan[0]):.6g}, a residual of {norm:.3g} "
        "in units of atol. Choose u0 so that these components of f(t0, u0) vanish (to within atol). "
        "backend='julia' does not adjust u0: OrdinaryDiffEq would reject it or change it, depending on its version."
    )
