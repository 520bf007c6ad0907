"""Dense output: piecewise polynomials in ``theta = (t - t_n) / dt``, recorded step by step.

Every family's continuous extension is stored the same way: for each attempted step the coefficients
``P[0..q]`` of ``u(theta) = sum_j theta**j P[j]`` (``P[0] = u_n``), shape ``(q+1, B, n)``. Rejected
steps and finished trajectories are recorded with zero width, so each trajectory's step ends stay sorted
and a single batched ``searchsorted`` finds the step that holds a query time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .stages import fixed_product, wide_dtype

Tensor = torch.Tensor


def hermite_coefficients(u0: Tensor, u1: Tensor, f0: Tensor, f1: Tensor, dt: Tensor) -> Tensor:
    """Cubic Hermite interpolant through ``(u0, dt f0)`` and ``(u1, dt f1)``: ``(4, B, n)`` coefficients."""
    h = dt[:, None]
    du = u1 - u0
    hf0 = h * f0
    hf1 = h * f1
    return torch.stack((u0, hf0, 3 * du - 2 * hf0 - hf1, hf0 + hf1 - 2 * du))


def hermite_value(t0: Tensor, y0: Tensor, f0: Tensor, t1: Tensor, y1: Tensor, f1: Tensor, t: Tensor) -> Tensor:
    """The cubic Hermite interpolant through ``(t0, y0, f0)`` and ``(t1, y1, f1)`` at ``t`` (torchdiffeq's fixed-grid
    ``interp="cubic"`` arithmetic); the times broadcast against the values (``(M, 1)`` times for ``(M, n)`` rows)."""
    h = ((t - t0) / (t1 - t0)).to(y0.dtype)
    dt = (t1 - t0).to(y0.dtype)
    h00 = (1 + 2 * h) * (1 - h) * (1 - h)
    h10 = h * (1 - h) * (1 - h)
    h01 = h * h * (3 - 2 * h)
    h11 = h * h * (h - 1)
    return h00 * y0 + h10 * dt * f0 + h01 * y1 + h11 * dt * f1


def dense_output_matrix(values: Sequence[Sequence[float]], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A tableau's dense-output matrix ``(q, s)`` for states of ``dtype`` on ``device``: held in float64
    (complex128) for a narrower state, so :func:`polynomial_coefficients` forms the coefficients there.

    The monomial coefficients ``P_j = sum_i D_ji k_i`` cancel: Vern7's ``sum |D|`` is 17,509, Rodas5's 1,920,
    Rodas5P's 793. Formed in float32 (with ``D`` rounded to float32, whose rows then no longer sum exactly), an
    interpolated value carried about ``sum |D| * eps * |h f|`` of round-off (Vern7: 1e-4 on ``u' = 1/2`` over a unit
    span); formed in float64 and rounded once, it carries what the stages' own round-off gives, weighted by the
    interpolant's weights ``b_i(theta)``. MPS has no float64: there the state's dtype is kept."""
    return torch.as_tensor(np.asarray(values, dtype=np.float64), device=device).to(wide_dtype(dtype, device))


def polynomial_coefficients(u0: Tensor, dense: Tensor, stages: Tensor) -> Tensor:
    """Coefficients ``(q+1, B, n)`` from a tableau's dense matrix ``(q, s)`` (:func:`dense_output_matrix`) and stage
    increments ``(s, B, n)``, in the stages' dtype (formed in float64 for a float32 state: ``fixed_product``)."""
    s, b, n = stages.shape
    terms = fixed_product(dense, stages.reshape(s, b * n))
    return torch.cat((u0[None], terms.reshape(dense.shape[0], b, n)))


def evaluate(coeffs: Tensor, theta: Tensor) -> Tensor:
    """Horner evaluation: ``coeffs (q+1, ..., n)``, ``theta`` broadcastable to ``coeffs.shape[1:-1]``."""
    out = coeffs[-1]
    th = theta[..., None]
    for j in range(coeffs.shape[0] - 2, -1, -1):
        out = out * th + coeffs[j]
    return out


class DenseOutput:
    """The recorded continuous solution of a (batched) solve. Call it with times to interpolate.

    Shapes: ``t_start``/``t_end`` ``(N, B)``, ``coeffs`` ``(N, q+1, B, n)`` after :meth:`finalize`.
    """

    def __init__(self, direction: float) -> None:
        self.direction = direction
        self._t0: list[Tensor] = []
        self._t1: list[Tensor] = []
        self._c: list[Tensor] = []
        self.t_start: Tensor | None = None
        self.t_end: Tensor | None = None
        self.coeffs: Tensor | None = None

    def record(self, t0: Tensor, t1: Tensor, coeffs: Tensor) -> None:
        """One step: its ends ``(B,)`` and coefficients ``(q+1, B, n)``."""
        self.record_block(t0[None], t1[None], coeffs[None])

    def record_block(self, t0: Tensor, t1: Tensor, coeffs: Tensor) -> None:
        """``N`` consecutive steps at once: ends ``(N, B)``, coefficients ``(N, q+1, B, n)`` (a compiled loop's
        record of its accepted steps)."""
        self._t0.append(t0)
        self._t1.append(t1)
        self._c.append(coeffs)

    def finalize(self) -> None:
        if self._c:
            q = max(c.shape[1] for c in self._c)
            padded = [c if c.shape[1] == q else torch.cat((c, c.new_zeros((c.shape[0], q - c.shape[1], *c.shape[2:]))),
                                                          dim=1) for c in self._c]
            self.t_start = torch.cat(self._t0)
            self.t_end = torch.cat(self._t1)
            self.coeffs = torch.cat(padded)
        self._t0, self._t1, self._c = [], [], []

    def __call__(self, t: Tensor) -> Tensor:
        """Interpolate at times ``t`` (shape ``(M,)``) for every trajectory: returns ``(M, B, n)``."""
        if self.coeffs is None:
            self.finalize()
        assert self.coeffs is not None and self.t_start is not None and self.t_end is not None
        return interpolate(self.t_start, self.t_end, self.coeffs, self.direction, t)


def interpolate(t_start: Tensor, t_end: Tensor, coeffs: Tensor, direction: float, t: Tensor,
                last: Tensor | None = None) -> Tensor:
    """:class:`DenseOutput`'s values at times ``t`` ``(M,)``: ``(M, B, n)`` from its ``t_start``/``t_end`` ``(N, B)``
    and ``coeffs`` ``(N, q+1, B, n)``. A time past the last step extrapolates it; ``last`` (a 0-d integer tensor):
    the last real step, where the arrays are padded past it (equal ends, zero width) to a fixed shape for a
    compiled program. Traceable: no host reads."""
    d = direction
    ends = (d * t_end).T.contiguous()  # (B, N), sorted per trajectory
    nb = ends.shape[0]
    tq = t.to(t_end.dtype)
    idx = torch.searchsorted(ends, (d * tq).expand(nb, -1).contiguous())  # (B, M)
    idx = idx.clamp(max=ends.shape[1] - 1) if last is None else torch.minimum(idx, last)
    b_idx = torch.arange(nb, device=idx.device)[:, None].expand_as(idx)
    t0 = t_start[idx, b_idx]
    t1 = t_end[idx, b_idx]
    width = t1 - t0
    safe = torch.where(width == 0, torch.ones_like(width), width)
    theta = torch.where(width == 0, torch.zeros_like(width), (tq[None, :] - t0) / safe)
    c = coeffs.permute(0, 2, 1, 3)[idx, b_idx]  # (B, M, q+1, n)
    vals = evaluate(c.permute(2, 0, 1, 3), theta)  # (B, M, n)
    return vals.transpose(0, 1)
