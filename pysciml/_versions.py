"""Tensor version counters where torch keeps them: inference tensors (made under ``torch.inference_mode()``) keep none,
and reading ``_version`` on one raises. Callers that detect in-place writes by version use :func:`version_of` and skip
the check for such tensors."""

from __future__ import annotations

import torch

__all__ = ["version_of"]


def version_of(t: torch.Tensor) -> int | None:
    """``t._version``, or ``None`` for an inference tensor (no version counter: in-place writes cannot be detected).
    Read first and excused on failure: an ordinary tensor, the common case, costs one attribute read."""
    try:
        return t._version
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None
