"""Step-size control: the error norm, the PI controller and the automatic initial step (per trajectory).

Both follow OrdinaryDiffEq.jl's documented defaults: the RMS norm of ``err / (atol + rtol max(|u|, |u1|))``;
the PI controller ``q = EEst^beta1 / qold^beta2`` with ``beta1 = 7/(10 p)``, ``beta2 = 2/(5 p)``,
``qmin = 1/5``, ``qmax = 10``, safety ``gamma = 9/10``; and Hairer & Wanner's initial step
(Solving ODEs I, II.4), all vectorised over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import InputError

Tensor = torch.Tensor


def error_norm(err: Tensor, u0: Tensor, u1: Tensor, atol: Tensor, rtol: float) -> Tensor:
    """RMS norm per trajectory of the scaled error: ``(B, n) -> (B,)``."""
    root_n = math.sqrt(err.shape[1])
    return scaled_error_norm(err, u0, u1, atol * root_n, rtol * root_n)


def scaled_error_norm(err: Tensor, u0: Tensor, u1: Tensor, atol_n: Tensor, rtol_n: float) -> Tensor:
    """:func:`error_norm` with the tolerances premultiplied by ``sqrt(n)`` (the loops do it once per solve),
    so the RMS norm is one vector 2-norm of ``err / (atol_n + rtol_n max(|u0|, |u1|))``. Passing the same tensor
    twice (Newton's increment norm) scales by ``|u0|`` without the maximum."""
    size = u0.abs() if u0 is u1 else torch.maximum(u0.abs(), u1.abs())
    scale = torch.add(atol_n, size, alpha=rtol_n)
    return torch.linalg.vector_norm(err / scale, dim=1)


@dataclass(frozen=True)
class PIController:
    """Proportional-integral step-size controller (Gustafsson; Hairer-Wanner II, IV.2).

    ``beta1``/``beta2`` default to ``7/(10 p)`` and ``2/(5 p)`` for a method of order ``p``.
    """

    beta1: float | None = None
    beta2: float | None = None
    qmin: float = 0.2
    qmax: float = 10.0
    gamma: float = 0.9
    qoldinit: float = 1e-4

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> InputError:
            return InputError(f"PIController({name}={getattr(self, name)!r}): {name} must be {want}")

        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or not 0 <= value < math.inf):
                raise bad(name, "a finite number >= 0 (a negative gain grows the step when the error grows)")
        if not 0 < self.qmin <= 1:
            raise bad("qmin", "in (0, 1]: the largest factor a rejected or accepted step may shrink by is 1/qmin")
        if not 1 < self.qmax < math.inf:
            raise bad("qmax", "a finite number > 1 (with qmax <= 1 the step could never grow)")
        if not 0 < self.gamma <= 1:
            raise bad("gamma", "a safety factor in (0, 1]")
        if not 0 < self.qoldinit <= 1:
            raise bad("qoldinit", "in (0, 1]")

    def gains(self, order: int) -> tuple[float, float]:
        b1 = self.beta1 if self.beta1 is not None else 7.0 / (10.0 * order)
        b2 = self.beta2 if self.beta2 is not None else 2.0 / (5.0 * order)
        return b1, b2

    def propose(self, dt: Tensor, eest: Tensor, qold: Tensor, accept: Tensor, order: int) -> tuple[Tensor, Tensor]:
        """Next step sizes and updated ``qold`` for each trajectory (accepted or not)."""
        b1, b2 = self.gains(order)
        q11 = eest.pow(b1) * (1.0 / self.gamma)
        q_acc = (q11 / qold.pow(b2)).clamp(1.0 / self.qmax, 1.0 / self.qmin)
        q_rej = q11.clamp(max=1.0 / self.qmin)
        dt_new = dt / torch.where(accept, q_acc, q_rej)
        qold = torch.where(accept, eest.clamp(min=self.qoldinit), qold)
        return dt_new, qold

    def propose_scalar(self, dt: float, eest: float, qold: float, accept: bool, order: int) -> tuple[float, float]:
        """The same rule as :meth:`propose` for one trajectory, on Python floats (the unbatched fast path)."""
        b1, b2 = self.gains(order)
        q11 = eest**b1 * (1.0 / self.gamma) if eest != float("inf") else float("inf")
        if accept:
            q = min(max(q11 / qold**b2, 1.0 / self.qmax), 1.0 / self.qmin)
            return dt / q, max(eest, self.qoldinit)
        return dt / min(1.0 / self.qmin, q11), qold


def initial_dt(
    f: Callable[[Tensor, Tensor], Tensor],
    t0: Tensor,
    u0: Tensor,
    f0: Tensor,
    span: Tensor,
    order: int,
    atol: Tensor,
    rtol: float,
) -> Tensor:
    """Hairer-Wanner starting step (signed like ``span = t1 - t0``), one per trajectory: ``(B,)``."""
    sk = atol + rtol * u0.abs()

    def rms(x: Tensor) -> Tensor:
        return (x / sk).pow(2).mean(dim=1).sqrt()

    d0, d1 = rms(u0), rms(f0)
    direction = torch.sign(span)
    tiny = (d0 < 1e-5) | (d1 < 1e-5)
    dt0 = torch.where(tiny, torch.full_like(d0, 1e-6), 0.01 * d0 / torch.clamp(d1, min=1e-300))
    dt0 = torch.minimum(dt0, span.abs())
    u1 = u0 + (direction * dt0)[:, None] * f0
    f1 = f(t0 + direction * dt0, u1)
    d2 = rms(f1 - f0) / dt0
    dmax = torch.maximum(d1, d2)
    dt1 = torch.where(
        dmax <= 1e-15,
        torch.clamp(dt0 * 1e-3, min=1e-6),
        (0.01 / torch.clamp(dmax, min=1e-300)).pow(1.0 / (order + 1)),
    )
    dt = torch.minimum(torch.minimum(100 * dt0, dt1), span.abs())
    dt = torch.where(torch.isfinite(dt) & (dt > 0), dt, torch.full_like(dt, 1e-6) * span.abs())
    return direction * dt
