"""Least squares that give the same answer on every call.

``torch.linalg.lstsq``'s CPU default, LAPACK's ``gelsy`` (QR with column pivoting) as linked into torch's wheels
(MKL), rounds differently with the operands' alignment in memory: the same ``A`` and ``b`` solved twice in one
process can differ in the last digits (28 distinct answers in 200 calls on an 8 x 8 system, measured here), and a
stiff solver's step-size sequence amplifies that into visibly different solutions from run to run. The SVD driver
``gelsd`` gave one answer in every call; CUDA has only ``gels`` (QR, no pivoting), which assumes full rank.
"""

from __future__ import annotations

import torch
from torch import Tensor


def lstsq(A: Tensor, B: Tensor) -> Tensor:
    """The least-squares solution ``X`` of ``A X = B`` (``A`` ``(*, m, n)``, ``B`` ``(*, m, k)``; batched as
    ``torch.linalg.lstsq``; same dtype and device): the minimum-norm one on the CPU (``gelsd``), ``gels`` on CUDA."""
    driver = "gelsd" if A.device.type == "cpu" else None
    return torch.linalg.lstsq(A, B, driver=driver).solution
