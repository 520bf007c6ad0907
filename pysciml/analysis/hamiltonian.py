r"""Error metrics for learned Hamiltonians and vector fields, and the mean with its standard error over seeds.

- :func:`vector_field_error`: mean pointwise relative L2 error ``||f - f_hat|| / ||f||`` over an evaluation grid
  (Khoo et al., arXiv:2309.01069, the ``error`` of their ``evaluation/Exp*.py``).
- :func:`hamiltonian_mse`: MSE of ``H`` over the same grid after removing the mean offset (``H`` is only defined
  up to an additive constant).
- :func:`energy_drift` and :func:`energy_mse`: energy errors along rollouts (Greydanus et al., NeurIPS 2019,
  "energy MSE" of their README: mean over time of ``(H(x_pred) - H(x_true))^2``).
- :func:`mean_sem`: mean and standard error of the mean over seeds (how both papers report results).

``field`` / ``H_model`` arguments are callables on ``(N, 2n)`` tensors (an ``nn.Module`` or a function),
returning ``(N, 2n)`` resp. ``(N,)`` or ``(N, 1)``. They are called outside ``torch.no_grad()`` (an HNN needs
autograd to produce its field); the results are detached.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..errors import InputError
from ..problems.hamiltonian import HamiltonianSystem, hamiltonian_system

__all__ = ["vector_field_error", "hamiltonian_mse", "energy_drift", "energy_mse", "mean_sem"]

Tensor = torch.Tensor

ZERO_FIELD_RTOL = 1e-10
"""Grid points with ``||f|| <= ZERO_FIELD_RTOL * max_grid ||f||`` are left out of :func:`vector_field_error`."""


def _system(system: HamiltonianSystem | str) -> HamiltonianSystem:
    if isinstance(system, str):
        return hamiltonian_system(system)
    if not isinstance(system, HamiltonianSystem):
        raise InputError(f"system must be a HamiltonianSystem or a registered name, got {type(system).__name__}.")
    return system


def _grid(system: HamiltonianSystem | str, points_per_dim: int, max_points: int, seed: int, dtype: torch.dtype,
          device: str | torch.device) -> tuple[HamiltonianSystem, Tensor]:
    """The system and its evaluation grid, shared by :func:`vector_field_error` and :func:`hamiltonian_mse`."""
    sys_ = _system(system)
    return sys_, sys_.grid(points_per_dim, max_points, seed, dtype=dtype, device=device)


def _call(fn: Callable[[Tensor], Tensor], x: Tensor, name: str) -> Tensor:
    if not callable(fn):
        raise InputError(f"{name} must be a callable on (N, 2n) tensors (a function or an nn.Module), got {fn!r}.")
    out = fn(x)
    if not isinstance(out, Tensor):
        raise InputError(f"{name} must return a tensor, got {type(out).__name__}.")
    return out.detach()


def _energy(H: Callable[[Tensor], Tensor] | HamiltonianSystem | str, x: Tensor, name: str) -> Tensor:
    """``H`` evaluated on ``x`` of shape ``(..., 2n)`` as ``(...)``, calling ``H`` on one flat ``(N, 2n)`` batch."""
    fn = _system(H).H if isinstance(H, (HamiltonianSystem, str)) else H
    if not callable(fn):
        raise InputError(f"H must be a callable on (N, 2n) tensors or a HamiltonianSystem, got {H!r}.")
    if not isinstance(x, Tensor) or x.ndim < 1:
        raise InputError(f"{name} must be a tensor of shape (..., 2n), got {type(x).__name__}.")
    lead = x.shape[:-1]
    e = fn(x.reshape(-1, x.shape[-1]))
    if not isinstance(e, Tensor):
        raise InputError(f"H must return a tensor, got {type(e).__name__}.")
    if e.ndim == 2 and e.shape[-1] == 1:
        e = e[:, 0]
    if tuple(e.shape) != (x[..., 0].numel(),):
        raise InputError(f"H must map (N, 2n) to (N,) or (N, 1); got {tuple(e.shape)} for N = {x[..., 0].numel()}.")
    return e.reshape(lead)


def vector_field_error(
    field: Callable[[Tensor], Tensor],
    system: HamiltonianSystem | str,
    *,
    points_per_dim: int = 10,
    max_points: int = 100_000,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> float:
    """Mean relative L2 error of a vector field over the system's evaluation grid (Khoo et al.'s metric).

    ``mean_i ||f(x_i) - f_hat(x_i)|| / ||f(x_i)||`` over ``system.grid(points_per_dim, max_points, seed)`` (the
    full ``points_per_dim^(2n)`` grid, or a Sobol sample of ``max_points`` points when that is too many).

    Points where the exact field vanishes: the relative error is undefined there, so grid points with
    ``||f|| <= 1e-10 * max ||f||`` (:data:`ZERO_FIELD_RTOL`) are left out of the mean. The default 10-point
    grids of the registered systems contain no such point (equilibria sit between grid nodes); a grid made only
    of such points raises InputError.

    Args:
        field: callable ``(N, 2n) -> (N, 2n)``, the learned ``dx/dt``.
        system: a :class:`~pysciml.problems.hamiltonian.HamiltonianSystem` or its name.
        points_per_dim, max_points, seed: the grid (see ``HamiltonianSystem.grid``).
        dtype, device: of the grid handed to ``field`` (the paper: float64).

    Returns:
        The mean relative error as a Python float (``0.0`` for the exact field; ``0.1`` for ``1.1 f``).
    """
    sys_, x = _grid(system, points_per_dim, max_points, seed, dtype, device)
    f = sys_.vector_field(x)
    f_hat = _call(field, x, "field")
    if f_hat.shape != f.shape:
        raise InputError(f"field must map (N, 2n) to (N, 2n); got {tuple(f_hat.shape)} for input {tuple(x.shape)}.")
    norm = torch.linalg.vector_norm(f, dim=-1)
    keep = norm > ZERO_FIELD_RTOL * norm.max()
    if not bool(keep.any()):
        raise InputError(f"the exact field of {sys_.name!r} vanishes on the whole grid; choose another grid.")
    err = torch.linalg.vector_norm(f_hat.to(f.dtype) - f, dim=-1)
    return float((err[keep] / norm[keep]).mean())


def hamiltonian_mse(
    H_model: Callable[[Tensor], Tensor],
    system: HamiltonianSystem | str,
    *,
    points_per_dim: int = 10,
    max_points: int = 100_000,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> float:
    """MSE of a learned Hamiltonian over the evaluation grid, up to the additive constant.

    ``mean_i (e_i - mean(e))^2`` with ``e_i = H_model(x_i) - H(x_i)``: the best constant offset is removed
    first, because ``H`` is defined up to a constant (a shifted exact ``H`` scores 0). Khoo et al. instead
    anchor the constant in training (a ``(H(x0) - H0)^2`` loss term) and report the plain MSE; with an
    anchored model the two differ by the squared mean offset.

    Args:
        H_model: callable ``(N, 2n) -> (N,)`` or ``(N, 1)``.
        system, points_per_dim, max_points, seed, dtype, device: as in :func:`vector_field_error`.

    Returns:
        The offset-free MSE as a Python float.
    """
    sys_, x = _grid(system, points_per_dim, max_points, seed, dtype, device)
    e = _energy(lambda y: _call(H_model, y, "H_model"), x, "x").to(torch.float64) - sys_.H(x).to(torch.float64)
    return float(((e - e.mean()) ** 2).mean())


def energy_drift(
    H: Callable[[Tensor], Tensor] | HamiltonianSystem | str, x_traj: Tensor, *, relative: bool = False
) -> Tensor:
    """Energy error along trajectories, ``|H(x_t) - H(x_0)|``.

    Args:
        H: callable ``(N, 2n) -> (N,)`` (or ``(N, 1)``), or a system (its exact ``H``) or its name.
        x_traj: states of shape ``(..., T, 2n)``, time along dimension ``-2``.
        relative: divide by ``|H(x_0)|`` (``inf``/``nan`` where ``H(x_0) = 0``).

    Returns:
        Tensor of shape ``(..., T)`` (dtype and device of ``H``'s output), differentiable; the first entry of
        each trajectory is 0.
    """
    if not isinstance(x_traj, Tensor) or x_traj.ndim < 2:
        raise InputError("x_traj must be a tensor of shape (..., T, 2n) (time along dimension -2).")
    e = _energy(H, x_traj, "x_traj")
    drift = (e - e[..., :1]).abs()
    return drift / e[..., :1].abs() if relative else drift


def energy_mse(H: Callable[[Tensor], Tensor] | HamiltonianSystem | str, x_pred: Tensor, x_true: Tensor) -> Tensor:
    """Greydanus et al.'s energy MSE: the mean over time of ``(H(x_pred) - H(x_true))^2``, per trajectory.

    Use the true ``H`` (pass the system) to judge a rollout; the mean over trajectories is
    ``energy_mse(...).mean()`` (or :func:`mean_sem` for the error bar). Greydanus et al.'s analysis notebooks
    computed the "energy" of their pendulum rollouts as ``q^2 + p^2``; this uses the given ``H``.

    Args:
        H: callable ``(N, 2n) -> (N,)``, or a system or its name.
        x_pred, x_true: predicted and true states, same shape ``(..., T, 2n)``.

    Returns:
        Tensor of shape ``(...)`` (0-d for one trajectory), differentiable.
    """
    if not isinstance(x_pred, Tensor) or not isinstance(x_true, Tensor) or x_pred.shape != x_true.shape:
        raise InputError("x_pred and x_true must be tensors of the same shape (..., T, 2n).")
    if x_pred.ndim < 2:
        raise InputError(f"x_pred and x_true must have shape (..., T, 2n), got {tuple(x_pred.shape)}.")
    return ((_energy(H, x_pred, "x_pred") - _energy(H, x_true, "x_true")) ** 2).mean(-1)


def mean_sem(values: Sequence[float] | Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean, ``std(values, ddof=1) / sqrt(len(values))``.

    As pandas' ``sem`` used by Khoo et al. (Greydanus et al.'s ``+/-`` is instead a bootstrap over 5 splits).

    Args:
        values: a non-empty 1-d sequence or tensor of numbers (e.g. one error per seed).

    Returns:
        ``(mean, sem)`` as floats; ``sem`` is ``nan`` for a single value (undefined).
    """
    try:
        v = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"values must be a 1-d sequence of numbers, got {type(values).__name__}.") from None
    if v.ndim != 1 or v.numel() == 0:
        raise InputError(f"values must be a non-empty 1-d sequence of numbers, got shape {tuple(v.shape)}.")
    mean = float(v.mean())
    if v.numel() == 1:
        return mean, math.nan
    return mean, float(v.std(correction=1) / math.sqrt(v.numel()))
