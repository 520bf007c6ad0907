"""Analysis: Butcher rooted-tree order conditions (explicit, additive, Rosenbrock) of the tableau data,
engine cross-validation, and the Hamiltonian-learning metrics of :mod:`pysciml.analysis.hamiltonian`
(``vector_field_error``, ``hamiltonian_mse``, ``energy_drift``, ``energy_mse``, ``mean_sem``), and the
empirical neural tangent kernels of :mod:`pysciml.analysis.ntk` (``empirical_ntk``, ``ntk_trace``,
``network_function``, ``parameters_of``), with operator kernels and PINN blocks (:mod:`.ntk_blocks`), the
infinite-width kernels (:mod:`.ntk_analytic`) and spectra (:mod:`.ntk_spectrum`).

These are imported on first access (PEP 562): the metrics need :mod:`pysciml.problems` and the kernels
:mod:`torch.func`, which ``import pysciml`` does not load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hamiltonian import energy_drift, energy_mse, hamiltonian_mse, mean_sem, vector_field_error  # noqa: F401
    from .ntk import empirical_ntk, network_function, ntk_trace, parameters_of  # noqa: F401
    from .ntk_analytic import NTKNetwork, analytic_nngp, analytic_ntk  # noqa: F401
    from .ntk_blocks import NTKBlocks, operator, operator_ntk, pinn_ntk_blocks  # noqa: F401
    from .ntk_spectrum import DecayFit, eigenvalues, fit_decay, plot_spectra  # noqa: F401

_LAZY = ("vector_field_error", "hamiltonian_mse", "energy_drift", "energy_mse", "mean_sem")
_LAZY_NTK = ("empirical_ntk", "ntk_trace", "network_function", "parameters_of")
_LAZY_NTK15 = {"NTKNetwork": ".ntk_analytic", "analytic_ntk": ".ntk_analytic", "analytic_nngp": ".ntk_analytic",
               "NTKBlocks": ".ntk_blocks", "operator": ".ntk_blocks", "operator_ntk": ".ntk_blocks",
               "pinn_ntk_blocks": ".ntk_blocks", "DecayFit": ".ntk_spectrum", "eigenvalues": ".ntk_spectrum",
               "fit_decay": ".ntk_spectrum", "plot_spectra": ".ntk_spectrum"}

__all__ = list(_LAZY) + list(_LAZY_NTK) + list(_LAZY_NTK15)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(".hamiltonian", __name__), name)
    if name in _LAZY_NTK:
        return getattr(importlib.import_module(".ntk", __name__), name)
    if name in _LAZY_NTK15:
        return getattr(importlib.import_module(_LAZY_NTK15[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_NTK) | set(_LAZY_NTK15))
