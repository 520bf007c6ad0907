"""Dense output and saving every step in the compiled BDF loops (:mod:`.compiled_loop_bdf`,
:mod:`.compiled_bdf_qndf`).

The eager loop (:class:`~.bdf_loop._Recorder`) keeps, for every accepted step, its end value (saving every step,
``saveat=None``) and its interpolating polynomial (``dense=True``). The programs write the same rows into a
fixed-size buffer carried by the ``while_loop``: row ``rn`` of ``(cap, 3)`` times (start, end, the polynomial's
degree), of ``(cap, B, n)`` end values and/or of ``(cap, K + 1, B, n)`` coefficients, ``rn`` counting up. The loop
also stops when the buffer is full; the host then appends the rows to the solution, sets ``rn`` back to 0 and runs
the same program on from where it stopped (every other carry as it was: the step, the order, the history, the
Jacobian and its factors), so a solve of any length makes one host round trip per ``cap`` accepted steps, and the
program's shapes do not depend on it. ``cap`` is as many steps as fit in :data:`BUDGET` elements, at most
:data:`MAX_CAP`.

Each iteration writes its row with ``index_copy`` (a rejected step's row too: the next accepted step overwrites it).
A recording program runs on inductor's Python wrapper (with the loop constants lifted, as for the C++ wrapper:
:func:`~.compiled_parts.python_lifted_backend`), not on the C++ wrapper the other loop programs use: there (torch
2.13) the program with the record buffers as more carries took other steps than the same program run uncompiled,
which took the eager ones: FBDF on HIRES ended with ``DtLessThanMin`` after 11 steps, with the buffers written or
not, wherever in the carries they sat; FBDF on ROBER at rtol 1e-6, with the rows written by a ``where`` over the
buffer, took 289 accepted steps against the eager 286 (identical to the bit up to the 71st, 1.6e-2 apart there).
The cause inside inductor was not found. On the Python wrapper both take the eager steps; it costs time: FBDF on
ROBER (rtol 1e-6, 287 steps) 40 ms against 111 ms eager and 10 ms for the C++-wrapper program saving only the end
(best of 7, wall time, one thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .interpolation import DenseOutput
from .loop_records import LoopOptions

Tensor = torch.Tensor
T64 = torch.float64
BUDGET = 1 << 16
"""Elements of the value buffer (values x steps) the program carries, at most."""
MAX_CAP = 64
"""Accepted steps per host round trip, at most."""


@dataclass(frozen=True)
class Plan:
    """What a solve records: the end values (``every``), the polynomials' ``K + 1`` coefficients (``dense``), both
    (the end value first), ``cap`` steps per round trip. Part of the program's signature."""

    every: bool
    dense: bool
    K: int
    cap: int

    @property
    def size(self) -> int:
        """The program's carries for the buffer: the count, the times, one or two value buffers."""
        return 2 + int(self.every) + int(self.dense)


def plan(opts: LoopOptions, K: int, bsz: int, n: int) -> Plan | None:
    """The recording a solve with ``opts`` needs (``None``: only ``saveat``)."""
    every, dense = opts.saveat is None, bool(opts.dense)
    if not (every or dense):
        return None
    rows = int(every) + (K + 1) * int(dense)  # per step
    fit = max(1, BUDGET // (rows * bsz * n))
    return Plan(every, dense, K, min(MAX_CAP, 1 << (fit.bit_length() - 1)))


def carries(p: Plan, bsz: int, n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
    """The buffer's carries ``(rn, times, [ends], [coeffs])``, empty."""
    ends = [torch.zeros(p.cap, bsz, n, dtype=dtype, device=device)] if p.every else []
    coeffs = [torch.zeros(p.cap, p.K + 1, bsz, n, dtype=dtype, device=device)] if p.dense else []
    return (torch.zeros((), dtype=torch.long, device=device), torch.zeros(p.cap, 3, dtype=T64, device=device), *ends,
            *coeffs)


def write(p: Plan, R: tuple[Tensor, ...], accept: Tensor, t: Tensor, t_new: Tensor, degree: Tensor, y_new: Tensor,
          coeffs: Tensor | None) -> tuple[Tensor, ...]:
    """``R`` with the accepted step from ``t`` to ``t_new`` in row ``rn`` (unchanged on a rejection): its end value
    ``y_new`` ``(B, n)`` and/or its ``coeffs`` ``(K + 1, B, n)`` of ``degree`` (0-d long)."""
    rn, times, *bufs = R
    at = rn.clamp(max=p.cap - 1)[None]  # written on a rejection too: the next accepted step overwrites the row
    news = ([y_new] if p.every else []) + ([coeffs] if p.dense else [])
    stamp = torch.stack((t, t_new, degree.to(T64)))
    return (rn + accept.long(), times.index_copy(0, at, stamp[None]),
            *[buf.index_copy(0, at, new[None]) for new, buf in zip(news, bufs, strict=True)])


@dataclass
class Drain:
    """The host side: the rows each run of the program recorded, appended in order (the eager
    :class:`~.bdf_loop._Recorder`'s ``ts``/``vals`` and :class:`~.interpolation.DenseOutput`)."""

    p: Plan
    direction: float
    t0: float
    u_start: Tensor
    ts: list[float] = field(default_factory=list)
    vals: list[Tensor] = field(default_factory=list)
    dense: DenseOutput | None = None

    def __post_init__(self) -> None:
        if self.p.every:
            self.ts, self.vals = [self.t0], [self.u_start[None]]
        if self.p.dense:
            self.dense = DenseOutput(self.direction)

    def take(self, R: tuple[Tensor, ...]) -> bool:
        """Append the rows of ``R``; whether the buffer was full (the program stopped for it)."""
        rn, times, *bufs = R
        m = int(rn)
        if m:
            stamps = times[:m]
            if self.p.every:
                self.ts += stamps[:, 1].tolist()
                self.vals.append(bufs[0][:m])
            if self.dense is not None:
                coeffs = bufs[-1]
                q = int(stamps[:, 2].max()) + 1
                ends = stamps[:, :2].to(coeffs.dtype)[:, :, None].expand(-1, -1, coeffs.shape[2])
                self.dense.record_block(ends[:, 0], ends[:, 1], coeffs[:m, :q])
        return m == self.p.cap

    def saved(self) -> tuple[Tensor, Tensor]:
        """Every step's times ``(S,)`` (the state's dtype) and values ``(S, B, n)``, the start included."""
        u = self.u_start
        return torch.tensor(self.ts, dtype=u.dtype, device=u.device), torch.cat(self.vals)


def reset(X: tuple[Tensor, ...], at: int) -> tuple[Tensor, ...]:
    """The carries ``X`` with the buffer's count (``X[at]``) back at 0, to run on."""
    return (*X[:at], torch.zeros_like(X[at]), *X[at + 1:])
