"""Analysis: Butcher rooted-tree order conditions (explicit, additive, Rosenbrock) of the tableau data,
engine cross-validation, and the Hamiltonian-learning metrics of :mod:`pysciml.analysis.hamiltonian`
(``vector_field_error``, ``hamiltonian_mse``, ``energy_drift``, ``energy_mse``, ``mean_sem``), and the
empirical neural tangent kernels of :mod:`pysciml.analysis.ntk` (``empirical_ntk``, ``ntk_trace``,
``network_function``, ``parameters_of``).

These are imported on first access (PEP 562): the metrics need :mod:`pysciml.problems` and the kernels
:mod:`torch.func`, which ``import pysciml`` does not load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hamiltonian import energy_drift, energy_mse, hamiltonian_mse, mean_sem, vector_field_error  # noqa: F401
    from .ntk import empirical_ntk, network_function, ntk_trace, parameters_of  # noqa: F401

_LAZY = ("vector_field_error", "hamiltonian_mse", "energy_drift", "energy_mse", "mean_sem")
_LAZY_NTK = ("empirical_ntk", "ntk_trace", "network_function", "parameters_of")

__all__ = list(_LAZY) + list(_LAZY_NTK)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(".hamiltonian", __name__), name)
    if name in _LAZY_NTK:
        return getattr(importlib.import_module(".ntk", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_NTK))
