"""What the batched loops share (:mod:`.loop`, :mod:`.compiled_control`, :mod:`.compiled_loop`): the per-trajectory
status codes and :class:`_Saver`, which collects the solution at ``saveat`` or at every step."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..solution import ReturnCode
from .interpolation import evaluate
from .loop_records import LoopOptions

Tensor = torch.Tensor

RUNNING = 0
_CODES = [None, ReturnCode.Success, ReturnCode.MaxIters, ReturnCode.DtLessThanMin, ReturnCode.Unstable,
          ReturnCode.ConvergenceFailure, ReturnCode.Terminated]
SUCCESS, MAXITERS, DTMIN, UNSTABLE, CONVFAIL, TERMINATED = 1, 2, 3, 4, 5, 6


class _Saver:
    """Collects the solution at ``saveat`` (interpolated inside each accepted step) or at every step."""

    def __init__(self, opts: LoopOptions, u0: Tensor, direction: float, first: int | None = None,
                 out: Tensor | None = None) -> None:
        """``first``: the number of leading save points that are ``t0``'s, when the caller has decided it (the
        compiled loop of one trajectory, whose float64 time compares as the scalar loop's does); else found here.
        ``out``: the ``(S, B, n)`` output buffer, made by the caller (with ``first``) and already holding ``u0`` in
        its first ``first`` rows and NaN in the others (the whole loop's, :mod:`.compiled_loop`)."""
        self.direction = direction
        self.everystep = opts.save_everystep
        self.saveat = opts.saveat
        listed = self.saveat is None  # the lists hold the output only without save times
        self.ts_list = [torch.tensor(opts.t0, dtype=u0.dtype, device=u0.device)] if listed else []
        self.us_list = [u0] if listed else []
        if self.saveat is not None:
            s = self.saveat.shape[0]
            bsz = u0.shape[0]
            if out is not None:  # filled by the caller
                assert first is not None
                self.out = out
            else:
                self.out = torch.full((s, bsz, u0.shape[1]), float("nan"), dtype=u0.dtype, device=u0.device)
                if first is None:
                    at_start = (self.saveat == opts.t0).nonzero().flatten()
                    if at_start.numel():
                        self.out[at_start] = u0[None].expand(at_start.numel(), -1, -1)
                    first = int(at_start.max()) + 1 if at_start.numel() else 0
                else:
                    self.out[:first] = u0[None]
            self.idx = torch.full((bsz,), first, dtype=torch.long, device=u0.device)
            self._track()

    def _track(self) -> None:
        """Start tracking each trajectory's next save time for :meth:`wants` and :meth:`save`."""
        assert self.saveat is not None
        self.keyed = self.direction * self.saveat
        self._update_next()

    def _update_next(self) -> None:
        """``next_keyed`` (``(B,)``): each trajectory's next save time times ``direction``, inf when done."""
        assert self.saveat is not None
        s = self.saveat.shape[0]
        nxt = self.keyed[self.idx.clamp(max=s - 1)]
        self.next_keyed = torch.where(self.idx < s, nxt, math.inf)

    def wants(self, accepted: Tensor, t: Tensor) -> bool:
        """Whether some trajectory's accepted step passed its next save time (it needs the interpolant)."""
        if self.saveat is None:
            return False
        return bool((accepted & (self.next_keyed <= (t if self.direction > 0 else -t))).any())

    def save(self, accepted: Tensor, t_prev: Tensor, t: Tensor, dt: Tensor, u: Tensor,
             coeffs: Tensor | Callable[[], Tensor]) -> None:
        """Store the save points passed by this step's accepted trajectories. ``coeffs``: the step's
        interpolant, or a function computing it (called only if some save point lies strictly inside)."""
        if self.everystep:
            if bool(accepted.any()):
                self.ts_list.append(t[0])
                self.us_list.append(u)
            return
        if self.saveat is None:
            return
        s = self.saveat.shape[0]
        bidx = torch.arange(u.shape[0], device=u.device)
        while True:
            ci = self.idx.clamp(max=s - 1)
            ts = self.saveat[ci]
            mask = accepted & (self.next_keyed <= self.direction * t)
            if not bool(mask.any()):
                return
            at_end = ts == t
            if bool((mask & ~at_end).any()):
                if callable(coeffs):
                    coeffs = coeffs()
                vals = torch.where(at_end[:, None], u, evaluate(coeffs, (ts - t_prev) / dt))
            else:
                vals = u
            sel = mask.nonzero().flatten()
            self.out[ci[sel], bidx[sel]] = vals[sel]
            self.idx = self.idx + mask.long()
            self._update_next()

    def result(self, u_final: Tensor) -> tuple[Tensor, Tensor]:
        if self.saveat is not None:
            return self.saveat, self.out
        return torch.stack(self.ts_list), torch.stack(self.us_list)
