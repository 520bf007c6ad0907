"""CUDA tensors with ``backend="julia"``: load CUDA.jl (installed beforehand) and check that memory is shared.

Unexercised: this path has not run on a GPU with Julia. It relies on DLPack.jl's CUDA extension, which
identifies device memory by ``CUDA.Mem.DeviceBuffer`` (deprecated since CUDA.jl 5.4), so instead of trusting
it, the first CUDA solve on each device checks both directions: PySciML.jl's ``enable_cuda`` asks DLPack.jl to
describe a ``CuArray``, and :func:`ensure_cuda` sends a CUDA tensor through ``zero_copy_roundtrip`` and compares
pointers and values. Any failure is a :class:`~pysciml.JuliaNotAvailableError` that says what to do instead.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import JuliaNotAvailableError
from ._callbacks import to_julia
from ._startup import CUDA_MISSING, _summary

__all__ = ["ensure_cuda"]

_READY: set[str] = set()

_ALTERNATIVES = "Solve on the CPU (u0.cpu()), or use backend='torch', which runs on CUDA natively."


def ensure_cuda(pkg: Any, device: torch.device) -> None:
    """Make CUDA tensors on ``device`` work in Julia: load CUDA.jl (never installing anything while Julia
    runs) and check zero-copy sharing both ways. Done once per device and process.

    Raises:
        JuliaNotAvailableError: CUDA.jl is not installed (the message says how to add it), sees no GPU, or
            DLPack.jl cannot share CUDA memory with torch.
    """
    key = str(device)
    if key in _READY:
        return
    try:
        installed = bool(pkg.cuda_installed())
        if installed:
            pkg.enable_cuda()
    except Exception as exc:
        raise JuliaNotAvailableError(
            f"backend='julia' with CUDA tensors: loading CUDA.jl failed ({type(exc).__name__}: {_summary(exc)}). "
            + _ALTERNATIVES
        ) from exc
    if not installed:
        raise JuliaNotAvailableError(CUDA_MISSING)
    _check_sharing(pkg, device)
    _READY.add(key)


def _check_sharing(pkg: Any, device: torch.device) -> None:
    """Send a CUDA tensor to Julia and a CuArray back; both must be views of the same device memory."""
    x = torch.arange(4, dtype=torch.float64, device=device)
    try:
        jl_ptr, y, y_ptr = pkg.zero_copy_roundtrip(to_julia(x))
        shared = (int(jl_ptr) == x.data_ptr() and isinstance(y, torch.Tensor) and y.device == x.device
                  and int(y_ptr) == y.data_ptr() and torch.equal(y, x + 1))
        why = "the pointers or values did not match"
    except Exception as exc:
        shared, why = False, f"{type(exc).__name__}: {_summary(exc, 6)}"
    if not shared:
        raise JuliaNotAvailableError(
            f"backend='julia' with CUDA tensors: DLPack.jl could not share CUDA memory between torch and CUDA.jl "
            f"({why}). Its CUDA extension relies on CUDA.Mem.DeviceBuffer, deprecated since CUDA.jl 5.4; this "
            "path has not been exercised on a GPU. " + _ALTERNATIVES
        )
