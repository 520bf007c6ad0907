"""``HiTS``: hierarchical time-stepping with residual flow maps (Liu, Kutz, Brunton, "Hierarchical deep learning
of multiscale differential equation time-steppers", arXiv 2008.09768; used in latent coordinates by Hamid et
al., arXiv 2407.00011).

Level ``m`` is a map ``x_{n+k} = x_n + s_m NN_m(x_n)`` with ``k = 2**m`` base steps ``dt`` (``s_m``: a fixed scale
of the level's increments, set from the data when the level is trained; the scale is our choice, not the
papers'). The multiscale
forecast runs the coarsest map to set anchor points, then each finer map fills in between the points already
known, all anchors and all trajectories as one batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .._progress import training_bar
from ..errors import InputError
from .autoencoder import _widths
from .hnn import _positive_int, mlp

__all__ = ["HiTS"]

Tensor = torch.Tensor


def _check_trajectories(x: object, dim: int, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != dim:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{name} must be a tensor of shape (n_traj, T, {dim}) sampled at the base dt, got {got}")
    return x


def _roll(x0: Tensor, step: Callable[[Tensor], Tensor], n: int) -> Tensor:
    """``x0`` and ``n`` applications of ``step``, stacked on dimension ``-2``: ``(..., n + 1, dim)``."""
    out = [x0]
    for _ in range(n):
        out.append(step(out[-1]))
    return torch.stack(out, dim=-2)


class HiTS(nn.Module):
    """A hierarchy of residual flow maps, one per step size ``2**m`` base steps, ``m`` in ``levels``.

    Args:
        dim: state size (full state or latent coordinates).
        levels: the levels ``m >= 0`` (step ``2**m * dt``), e.g. ``range(0, 5)``.
        hidden: hidden widths of each level's MLP; ``()`` makes each map linear (``x + W x + b``).
        activation: ``nn.Module`` class placed after each hidden layer.
        dtype: parameter dtype (float64 by default); states must have it.

    Attributes:
        maps: ``nn.ModuleDict`` from ``str(m)`` to the network ``NN_m`` (input and output ``(..., dim)``).
        scale_<m>: the increment scale ``s_m`` of level ``m`` (a 0-d buffer; 1 until :meth:`fit_level` sets it).
        levels: the sorted levels.

    Example:
        >>> hits = HiTS(2, levels=range(3), hidden=(32,))
        >>> hits.forecast(torch.zeros(4, 2, dtype=torch.float64), 10).shape
        torch.Size([4, 11, 2])
    """

    def __init__(self, dim: int, levels: Iterable[int] = range(0, 5), hidden: Sequence[int] = (64, 64),
                 activation: Callable[[], nn.Module] = nn.ReLU, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.dim = _positive_int(dim, "dim")
        try:
            lv = sorted({int(m) for m in levels})
        except (TypeError, ValueError):
            raise InputError(f"levels must be an iterable of ints such as range(0, 5), got {levels!r}") from None
        if not lv or lv[0] < 0:
            raise InputError(f"levels must list at least one level m >= 0 (step 2**m dt), got {levels!r}")
        self.levels = lv
        widths = _widths(hidden)
        self.maps = nn.ModuleDict({str(m): mlp(self.dim, widths, self.dim, activation, dtype) for m in lv})
        for m in lv:  # the increment scale s_m of each level (1 until fit_level measures it; saved in state_dict)
            self.register_buffer(f"scale_{m}", torch.ones((), dtype=dtype))

    # --- one level -------------------------------------------------------------------------------------
    def _level(self, m: object) -> int:
        if isinstance(m, bool) or not isinstance(m, int) or m not in self.levels:
            raise InputError(f"level {m!r} is not one of this model's levels {self.levels}")
        return m

    def step(self, x: Tensor, m: int) -> Tensor:
        """One step of level ``m``: ``x + s_m NN_m(x)``, i.e. ``2**m`` base steps; ``x`` of shape ``(..., dim)``."""
        return self._stepper(self._level(m))(x)

    def _stepper(self, m: int) -> Callable[[Tensor], Tensor]:
        net, scale = self.maps[str(m)], getattr(self, f"scale_{m}")
        return lambda x: x + scale * net(x)

    def rollout(self, x0: Tensor, m: int, n: int) -> Tensor:
        """``n`` steps of level ``m`` from ``x0`` ``(..., dim)``; returns ``(..., n + 1, dim)`` (``x0`` first)."""
        return _roll(x0, self._stepper(self._level(m)), n)

    def fit_level(self, m: int, trajectories: Tensor, *, n_forward: int = 5, epochs: int = 200, lr: float = 1e-3,
                  batch_size: int | None = None, seed: int = 0, progress: bool = False,
                  scale_increments: bool = True) -> list[float]:
        """Train level ``m`` (Adam) with the multi-step rollout loss of Liu et al.

        Every window ``x_i, x_{i+k}, ..., x_{i+n_forward k}`` (``k = 2**m``) of every trajectory is a sample;
        the loss is the mean over ``j = 1..n_forward`` and over components of ``(rollout_j(x_i) - x_{i+jk})**2``.

        Args:
            m: the level to train (one of ``levels``).
            trajectories: ``(n_traj, T, dim)`` states sampled at the base ``dt``; needs ``T > n_forward * k``.
            n_forward: rollout length of the loss, in steps of this level.
            epochs: passes over all windows.
            lr: Adam learning rate.
            batch_size: windows per optimiser step (``None``: all at once).
            seed: seeds the window shuffling.
            progress: show a tqdm bar over the epochs, with the last epoch's loss.
            scale_increments: set the level's increment scale ``s_m`` (the map is ``x + s_m NN_m(x)``) to the
                root-mean-square of the data's increments ``x_{i+k} - x_i`` before training, so the network
                outputs values of order one whatever the step (a fine level's increments are tiny next to the
                state, and an unscaled network learns little more than the identity); ``False`` keeps
                ``s_m`` as it is (1 for a new model).

        Returns:
            The mean training loss of each epoch (length ``epochs``).
        """
        m = self._level(m)
        x = _check_trajectories(trajectories, self.dim, "trajectories").detach()
        n_forward = _positive_int(n_forward, "n_forward")
        epochs = _positive_int(epochs, "epochs")
        if not (isinstance(lr, float | int) and lr > 0):
            raise InputError(f"lr must be a positive number, got {lr!r}")
        k = 2**m
        n_start = x.shape[1] - n_forward * k
        if n_start < 1:
            raise InputError(f"trajectories of length T={x.shape[1]} are too short for level {m} with "
                             f"n_forward={n_forward}: need T > n_forward * 2**m = {n_forward * k}; lower "
                             "n_forward or give longer trajectories")
        idx = torch.arange(n_start)[:, None] + k * torch.arange(n_forward + 1)  # (n_start, n_forward+1)
        windows = x[:, idx].reshape(-1, n_forward + 1, self.dim)  # (n_traj * n_start, n_forward+1, dim)
        n_win = windows.shape[0]
        bs = n_win if batch_size is None else _positive_int(batch_size, "batch_size")
        net = self.maps[str(m)]
        if scale_increments:
            rms = (windows[:, 1] - windows[:, 0]).square().mean().sqrt()
            getattr(self, f"scale_{m}").fill_(float(rms) if rms > 0 else 1.0)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        history = []
        bar = training_bar(progress, epochs, f"HiTS level {m}", "epoch")
        for _ in range(epochs):
            perm = torch.randperm(n_win, generator=gen) if bs < n_win else torch.arange(n_win)
            total = 0.0
            for b in range(0, n_win, bs):
                w = windows[perm[b:b + bs]]
                pred = self.rollout(w[:, 0], m, n_forward)[:, 1:]
                loss = ((pred - w[:, 1:]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * w.shape[0]
            history.append(total / n_win)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]:.3e}", refresh=False)
        if bar is not None:
            bar.close()
        return history

    def fit(self, trajectories: Tensor, *, levels: Iterable[int] | None = None, **fit_kwargs: Any
            ) -> dict[int, list[float]]:
        """Train every level in ``levels`` (``None``: all) one after the other with :meth:`fit_level`; the
        levels are independent, so the order does not matter. ``fit_kwargs`` go to :meth:`fit_level` (the
        same for every level). Returns each level's loss history."""
        use = self.levels if levels is None else sorted({self._level(m) for m in levels})
        return {m: self.fit_level(m, trajectories, **fit_kwargs) for m in use}

    # --- multiscale forecast ---------------------------------------------------------------------------
    def forecast(self, x0: Tensor, n_steps: int, levels: Iterable[int] | None = None,
                 fine_step: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Vectorised multiscale forecast from ``x0`` ``(B, dim)``; returns ``(B, n_steps + 1, dim)`` at every
        base step (``x0`` first).

        The coarsest level ``M`` steps from ``x0`` to set anchors every ``2**M`` base steps; each finer level
        then steps once less than ``2**(m_prev - m)`` times from every point already known (all anchors and
        trajectories in one batch), filling in the grid at spacing ``2**m``. The grid is run past ``n_steps``
        to a multiple of ``2**M`` and cut. If the finest level used is ``m > 0``, the base steps between its
        grid points are linear interpolation in time.

        Args:
            x0: initial states, ``(B, dim)``.
            n_steps: number of base steps to forecast (``>= 0``).
            levels: the levels to use (a subset of ``self.levels``, e.g. a band from ``select_levels``);
                ``None`` uses all.
            fine_step: hybrid mode: a callable advancing states ``(N, dim)`` by one base ``dt`` (e.g. a pysciml
                solve over ``dt``, batched over its rows), used as the finest level below the networks: it
                fills in every base step between the finest network level's points, so no interpolation is
                needed. The networks used must then all be levels ``>= 1``.
        """
        if not isinstance(x0, Tensor) or x0.ndim != 2 or x0.shape[1] != self.dim or x0.shape[0] == 0:
            got = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
            raise InputError(f"x0 must be a tensor of shape (B, {self.dim}) with B >= 1, got {got}")
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
            raise InputError(f"n_steps must be an int >= 0, got {n_steps!r}")
        use = self.levels if levels is None else sorted({self._level(m) for m in levels})
        if not use:
            raise InputError("levels must name at least one level (or be None for all)")
        steps: list[tuple[int, Callable[[Tensor], Tensor]]] = [(m, self._stepper(m)) for m in use]
        if fine_step is not None:
            if not callable(fine_step):
                raise InputError(f"fine_step must be a callable x -> x after one base dt, got {fine_step!r}")
            if use[0] == 0:
                raise InputError("fine_step replaces level 0: pass levels without 0 (e.g. the band (1, hi))")
            steps.insert(0, (0, fine_step))
        coarse, coarse_step = steps[-1]
        n_anchor = -(-n_steps // 2**coarse)  # ceil
        grid = _roll(x0, coarse_step, n_anchor)  # (B, n_anchor + 1, dim), spacing 2**coarse
        spacing = 2**coarse
        for m, step in reversed(steps[:-1] if n_anchor else []):
            ratio = spacing // 2**m
            start = grid[:, :-1]  # every known point but the last starts a fill-in run
            fill = _roll(start.reshape(-1, self.dim), step, ratio - 1)  # (B * n, ratio, dim)
            fill = fill.reshape(grid.shape[0], -1, self.dim)  # points at spacing 2**m, last one excluded
            grid = torch.cat([fill, grid[:, -1:]], dim=1)
            spacing = 2**m
        if spacing > 1:  # linear interpolation to every base step
            w = torch.arange(spacing, dtype=grid.dtype, device=grid.device) / spacing  # (spacing,)
            w = w[:, None]
            inner = grid[:, :-1, None] * (1 - w) + grid[:, 1:, None] * w  # (B, n, spacing, dim)
            grid = torch.cat([inner.reshape(grid.shape[0], -1, self.dim), grid[:, -1:]], dim=1)
        return grid[:, :n_steps + 1]

    def band_errors(self, val_trajectories: Tensor) -> dict[tuple[int, int], float]:
        """Validation MSE of the multiscale forecast for every contiguous band ``(lo, hi)`` of ``levels``.

        Each validation trajectory ``(n_traj, T, dim)`` is forecast from its first state over ``T - 1`` base
        steps with the levels ``lo..hi`` (contiguous in ``self.levels``); the error is the mean over all
        trajectories, steps ``1..T-1`` and components of the squared difference. Single levels are the bands
        ``(m, m)``.
        """
        x = _check_trajectories(val_trajectories, self.dim, "val_trajectories").detach()
        if x.shape[1] < 2:
            raise InputError(f"val_trajectories need T >= 2 states, got T={x.shape[1]}")
        errors = {}
        with torch.no_grad():
            for band in self.bands():
                pred = self.forecast(x[:, 0], x.shape[1] - 1, band)
                errors[(band[0], band[-1])] = ((pred[:, 1:] - x[:, 1:]) ** 2).mean().item()
        return errors

    def bands(self) -> list[list[int]]:
        """Every contiguous run of ``levels`` (finest first, then narrower first): the bands that
        :meth:`band_errors` scores."""
        return [self.levels[i:j + 1]
                for i, j in itertools.combinations_with_replacement(range(len(self.levels)), 2)]

    def select_levels(self, val_trajectories: Tensor) -> tuple[int, int]:
        """The contiguous band ``(lo, hi)`` whose multiscale forecast has the lowest validation MSE (see
        :meth:`band_errors`); a tie goes to the band listed first (finer ``lo``, then narrower)."""
        errors = self.band_errors(val_trajectories)
        return min(errors, key=lambda b: errors[b])
