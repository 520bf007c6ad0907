"""Reference solutions: a small record type and the lookup ``reference(name, t, **params)``.

Each problem module registers its references (float literals) with :func:`register`; the values, how they
were computed and their estimated accuracy are documented next to the literals and in
``scripts/compute_references.py``, which recomputes them. Two helpers the problem modules share live here
too: :func:`autonomous` (``df/dt = 0``) and :func:`rate_problem` (three parameters, optionally batched).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..problem import ODEProblem

__all__ = ["Reference", "reference", "reference_record", "references", "register"]


@dataclass(frozen=True)
class Reference:
    """A reference solution ``u(t)`` of a named problem at one time.

    Attributes:
        name: problem constructor name, e.g. ``"rober"``.
        t: the time of the reference value.
        params: the problem parameters it holds for (complete, defaults filled in).
        values: the reference state (flat, in the problem's state ordering).
        method: how it was computed (solver, tolerances, date) or where it was transcribed from.
        accuracy: estimated bound on the componentwise relative error, ``max_i |ref_i - exact_i| / |ref_i|``:
            the largest disagreement with the independent checks, rounded up to a power of ten (>= 1e-12).
        source: literature source of the problem / published value.
        agreement: observed agreement with the independent check(s), as text.
    """

    name: str
    t: float
    params: dict[str, float] = field(default_factory=dict)
    values: tuple[float, ...] = ()
    method: str = ""
    accuracy: float = math.nan
    source: str = ""
    agreement: str = ""

    def tensor(self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> torch.Tensor:
        """The values as a 1-D tensor."""
        return torch.tensor(self.values, dtype=dtype, device=device)


_REGISTRY: list[Reference] = []
_DEFAULTS: dict[str, dict[str, float]] = {}


def register(ref: Reference, defaults: dict[str, float] | None = None) -> Reference:
    """Add ``ref`` to the registry; ``defaults`` are the problem's default parameters (used by the lookup)."""
    if defaults is not None:
        _DEFAULTS.setdefault(ref.name, {}).update(defaults)
    _REGISTRY.append(ref)
    return ref


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)


def references(name: str | None = None) -> list[Reference]:
    """All registered references (of problem ``name`` if given)."""
    return [r for r in _REGISTRY if name is None or r.name == name]


def reference_record(name: str, t: float, **params: float) -> Reference:
    """The :class:`Reference` of problem ``name`` at time ``t`` with parameters ``params``.

    Parameters not given take the problem's defaults (e.g. ``mu=1e3`` for ``van_der_pol``).

    Raises:
        KeyError: no such reference; the message lists the available ones.
    """
    wanted = dict(_DEFAULTS.get(name, {}))
    wanted.update(params)
    for r in _REGISTRY:
        if r.name != name or not _close(r.t, t) or set(r.params) != set(wanted):
            continue
        if all(_close(r.params[k], wanted[k]) for k in wanted):
            return r
    have = ", ".join(f"{r.name}(t={r.t:g}, {r.params})" for r in _REGISTRY) or "none"
    raise KeyError(f"no reference for {name} at t={t:g} with params {wanted}; available: {have}")


def reference(
    name: str,
    t: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    **params: float,
) -> torch.Tensor:
    """The reference solution of problem ``name`` at time ``t`` as a 1-D tensor (the flat state).

    Example: ``reference("van_der_pol", 6.3, mu=1e6)``, ``reference("brusselator_1d", 10.0, N=64)``.
    See :func:`reference_record` for how it was computed and its accuracy.
    """
    return reference_record(name, t, **params).tensor(dtype=dtype, device=device)


def autonomous(t: torch.Tensor, u: torch.Tensor, p: object) -> torch.Tensor:
    """``df/dt = 0``: given as ``tgrad`` by the autonomous problems, so Rosenbrock methods skip computing it."""
    return torch.zeros_like(u)


def rate_problem(f: Any, jac: Any, u0: tuple[float, ...], tspan: tuple[float, float], p: Any, name: str,
                 dtype: torch.dtype, device: str | torch.device) -> ODEProblem:
    """An autonomous ``ODEProblem`` with analytic ``jac`` whose three parameters ``p`` (a sequence or a ``(3,)``
    tensor) may come as a ``(B, 3)`` tensor: then the problem is batched, ``u0`` repeated ``B`` times. A tensor
    ``p`` is kept in the autograd graph. ``name``: the keyword ``p`` came as (for the error message)."""
    pt = (p.to(dtype=dtype, device=device) if isinstance(p, torch.Tensor)
          else torch.tensor([float(v) for v in p], dtype=dtype, device=device))
    if pt.shape[-1:] != (3,) or pt.ndim > 2:
        raise ValueError(f"{name} must have shape (3,) or (B, 3), got {tuple(pt.shape)}")
    batched = pt.ndim == 2
    u = torch.tensor(u0, dtype=dtype, device=device)
    return ODEProblem(f, u.repeat(pt.shape[0], 1) if batched else u, tspan, pt, jac=jac, tgrad=autonomous,
                      batched=batched)
