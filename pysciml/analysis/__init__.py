"""Analysis: Butcher rooted-tree order conditions (explicit, additive, Rosenbrock) of the tableau data,
engine cross-validation, and the Hamiltonian-learning metrics of :mod:`pysciml.analysis.hamiltonian`
(``vector_field_error``, ``hamiltonian_mse``, ``energy_drift``, ``energy_mse``, ``mean_sem``).

The metrics are imported on first access (PEP 562): they need :mod:`pysciml.problems`, which
``import pysciml`` does not load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hamiltonian import energy_drift, energy_mse, hamiltonian_mse, mean_sem, vector_field_error  # noqa: F401

_LAZY = ("vector_field_error", "hamiltonian_mse", "energy_drift", "energy_mse", "mean_sem")

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(".hamiltonian", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
