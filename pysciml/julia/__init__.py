"""The Python half of pysciml's Julia engine (DifferentialEquations.jl and SciMLSensitivity via juliacall).

Nothing here starts Julia on import, and this package imports neither torch nor juliacall at import
time (``pysciml/__init__.py`` may import it before torch to honour ``PYSCIML_JULIA_EAGER=1``). Julia
starts on the first call that needs it: :func:`solve_julia` (reached through
``pysciml.solve(prob, alg, backend="julia")``) or :func:`odeint_julia`.

Public names:

* :func:`solve_julia`, :func:`odeint_julia`: the engine's solve and differentiable solve;
* :func:`julia_status`, :func:`require_julia`, :func:`start`: availability check and start-up;
* :func:`add_cuda`: add CUDA.jl to the Julia environment (once, before Julia starts) for CUDA tensors;
* :data:`JULIA_ALGORITHMS`, :data:`JULIA_SENSEALGS`, :data:`JULIA_UNSUPPORTED_SENSEALGS`: name maps.

See ``docs/julia.md`` for installation, the first-start cost and the torch/juliacall import order.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._startup import (
    ENV_EAGER,
    JULIA_ENTRY_POINTS,
    JuliaStatus,
    add_cuda,
    configure_juliacall,
    julia_status,
    maybe_start_eagerly,
    require_julia,
    start,
)

__all__ = [
    "ENV_EAGER", "JULIA_ENTRY_POINTS", "JuliaStatus", "add_cuda", "configure_juliacall", "julia_status",
    "maybe_start_eagerly", "require_julia", "start",
    "JULIA_ALGORITHMS", "JULIA_SENSEALGS", "JULIA_UNSUPPORTED_SENSEALGS",
    "solve_julia", "odeint_julia", "JuliaDense",
]

# Loaded on first access (PEP 562) so that importing this package stays torch-free.
_LAZY = {
    "JULIA_ALGORITHMS": "._mapping",
    "JULIA_SENSEALGS": "._mapping",
    "JULIA_UNSUPPORTED_SENSEALGS": "._mapping",
    "solve_julia": "._solve",
    "JuliaDense": "._solve",
    "odeint_julia": "._adjoint",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
