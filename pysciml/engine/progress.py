"""``progress=True``: a tqdm bar over the integration time, shared by both loops.

The bar shows how far ``t`` has come from ``t0`` towards ``t1`` (for a batch, the trajectory that is furthest
behind). It is created only when asked for; the loops hold ``None`` otherwise, so a solve without a bar pays one
``is None`` test per step.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class Progress:
    """A tqdm bar from ``t0`` to ``t1``; :meth:`update` takes the current time (a float, or a ``(B,)`` tensor of
    times with the mask of trajectories still running)."""

    def __init__(self, t0: float, t1: float, desc: str) -> None:
        self.t0, self.span = t0, abs(t1 - t0)
        self.direction = 1.0 if t1 >= t0 else -1.0
        self.done = 0.0
        from tqdm import tqdm  # lazy: only a solve that asks for a bar imports it

        self.bar = tqdm(total=self.span, desc=desc, unit="t", unit_scale=False, dynamic_ncols=True, leave=True,
                        bar_format="{l_bar}{bar}| |t - t0| = {n:.4g}/{total:.4g} [{elapsed}<{remaining}]",
                        mininterval=0.2)

    def update(self, t: float | Tensor, active: Tensor | None = None) -> None:
        if isinstance(t, Tensor):  # the least advanced running trajectory (a host sync: only with a bar)
            gone = self.direction * (t - self.t0)
            if active is not None:
                gone = torch.where(active, gone, self.span)
            done = float(gone.min())
        else:
            done = self.direction * (t - self.t0)
        done = min(max(done, 0.0), self.span)
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        self.bar.close()


def make_progress(on: bool, t0: float, t1: float, desc: str) -> Progress | None:
    """A :class:`Progress` bar when ``on``, else ``None`` (what the loops test each step)."""
    return Progress(t0, t1, desc) if on else None
