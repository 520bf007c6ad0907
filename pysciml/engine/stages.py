"""Stage sums, the one linear-combination helper of every stepper family.

Each step of a Runge-Kutta, Rosenbrock or additive method forms fixed linear combinations of its stage
vectors: ``sum_j a[i][j] k_j`` for stage ``i``, ``sum_j b[j] k_j`` for the solution, ``sum_j btilde[j] k_j``
for the error. The coefficients are the tableau's, known before the first step, so :class:`StageSum`
prepares them once (per stepper) and each step pays only for the tensor operations:

* one row with at most :data:`SCALED_ADD_TERMS` nonzero coefficients: scaled adds, zeros skipped;
* longer rows, or several rows of the same vectors (Rosenbrock's ``a`` and ``C`` rows, a solution and its
  error estimate): one stack and one matrix product, so a sum costs three tensor operations whatever its
  length. A single row of a state larger than :data:`STACK_LIMIT` numbers (memory-bound: stacking is a copy)
  falls back to scaled adds.

A row whose coefficients are all zero gives ``None`` (the caller skips the update), never a zero tensor.

``wide=True`` forms the sums of a float32 (or narrower) state in float64 (:func:`wide_dtype`), rounding once at the
end: for coefficients whose rounding to float32 breaks the method's conditions by far more than float32's
epsilon. Rodas5P's ``C`` rows rounded to float32 move ``sum_j b_j k_j`` on a constant field by 2.4e-6 of ``h f``
(20 epsilons, in every step and in its error estimate); Rodas5's and Rodas4's by 1e-7.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["SCALED_ADD_TERMS", "STACK_LIMIT", "StageSum", "fixed_product", "wide_dtype"]

Tensor = torch.Tensor

STACK_LIMIT = 1 << 16
"""States of more numbers than this sum a single row by scaled adds instead of stacking (a copy)."""

SCALED_ADD_TERMS = 3
"""A single row with at most this many nonzero coefficients is summed by scaled adds."""


_WIDER = {torch.float32: torch.float64, torch.float16: torch.float64, torch.bfloat16: torch.float64,
          torch.complex64: torch.complex128}


def wide_dtype(dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """The dtype in which fixed coefficient sums of a ``dtype`` state are formed where round-off matters: float64
    (complex128) for narrower states, ``dtype`` itself otherwise and on MPS (no float64 there)."""
    return dtype if torch.device(device).type == "mps" else _WIDER.get(dtype, dtype)


def fixed_product(matrix: Tensor, flat: Tensor) -> Tensor:
    """``matrix @ flat`` for a coefficient matrix ``(r, m)`` and stacked vectors ``(m, N)``, in the vectors' dtype:
    formed in the matrix's dtype and rounded once where that is wider (:func:`wide_dtype`)."""
    if matrix.dtype == flat.dtype:
        return matrix @ flat
    return (matrix @ flat.to(matrix.dtype)).to(flat.dtype)


class StageSum:
    """``out[k] = sum_j rows[k][j] * vectors[j]`` for fixed coefficient rows, prepared once.

    Args:
        rows: one or more coefficient rows (any float sequences; shorter rows are padded with zeros).
        dtype, device: of the stage vectors (the matrix form of the coefficients is built for them).
        wide: form the sums of a narrow ``dtype`` in :func:`wide_dtype` (module docstring); the results keep
            ``dtype``.

    Calling it with a list of ``(B, n)`` stage vectors (at least as many as the longest row's last nonzero
    coefficient needs; extra vectors are ignored) returns a tuple with one entry per row: the ``(B, n)``
    sum, or ``None`` for a row of zeros. Everything is out-of-place, so gradients flow through it.
    """

    __slots__ = ("matrix", "m", "r", "terms", "zero_rows", "all_zero", "work")

    def __init__(self, *rows: Sequence[float], dtype: torch.dtype, device: torch.device | str,
                 wide: bool = False) -> None:
        if not rows:
            raise ValueError("StageSum needs at least one coefficient row")
        coeffs = [tuple(float(c) for c in row) for row in rows]
        self.r = len(coeffs)
        self.terms = [tuple((j, c) for j, c in enumerate(row) if c != 0.0) for row in coeffs]
        self.m = max((t[-1][0] + 1 for t in self.terms if t), default=0)  # vectors actually used
        self.zero_rows = tuple(k for k, t in enumerate(self.terms) if not t)
        self.all_zero = self.m == 0
        work = wide_dtype(dtype, device) if wide else dtype
        self.work = work if work != dtype else None  # None: the vectors' own dtype
        stacked = not self.all_zero and (self.r > 1 or len(self.terms[0]) > SCALED_ADD_TERMS)
        self.matrix = (
            torch.tensor([[*row[: self.m], *([0.0] * (self.m - len(row)))] for row in coeffs],
                         dtype=work, device=device)
            if stacked else None
        )

    def __call__(self, vectors: list[Tensor]) -> tuple[Tensor | None, ...]:
        if self.all_zero:
            return (None,) * self.r
        if self.matrix is None or (self.r == 1 and vectors[0].numel() > STACK_LIMIT):
            return self.by_adds(vectors)
        m, shape = self.m, vectors[0].shape
        stacked = torch.stack(vectors[:m]) if m > 1 else vectors[0][None]
        flat = fixed_product(self.matrix, stacked.reshape(m, -1))
        if self.r == 1:
            return (flat.reshape(shape),)
        out: list[Tensor | None] = list(flat.reshape(self.r, *shape).unbind(0))
        for k in self.zero_rows:
            out[k] = None
        return tuple(out)

    def by_adds(self, vectors: list[Tensor]) -> tuple[Tensor | None, ...]:
        """The same sums as chains of scaled adds, never a stacked matrix product (what a traced step wants:
        inductor fuses the adds into the stage kernels; run eagerly they round differently from the product)."""
        return tuple(_scaled_adds(t, vectors, self.work) for t in self.terms)


def _scaled_adds(terms: tuple[tuple[int, float], ...], vectors: list[Tensor],
                 work: torch.dtype | None = None) -> Tensor | None:
    """``sum c * vectors[j]`` over the ``(j, c)`` pairs (nonzero ``c``), formed in ``work`` (default: the vectors'
    dtype); ``None`` for no terms."""
    acc: Tensor | None = None
    for j, c in terms:
        v = vectors[j] if work is None else vectors[j].to(work)
        acc = v * c if acc is None else acc.add(v, alpha=c)
    return acc if acc is None or work is None else acc.to(vectors[0].dtype)
