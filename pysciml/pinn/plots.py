"""Plots for PINNs: solution and error maps, loss curves against iterations and against time.

matplotlib is imported inside the functions, on first use, and drives a bare :class:`matplotlib.figure.Figure`
with the Agg canvas (no pyplot state, no display needed). Every function returns the figure and, given
``path``, also writes a PNG there.

* :func:`plot_solution`: on a 2-D domain (or a 2-D slice of a higher-dimensional one) heat maps of the
  prediction, of the exact solution and of the pointwise error ``|u - u*|``; on a 1-D domain the curves and
  the error. Grid points outside the domain are blank.
* :func:`plot_error`: the error map alone (log colour scale by default).
* :func:`plot_loss`: total loss (and each term for one run) against iterations, time, or both; several runs
  (``{"PINN": result, "LySep": other}``) are overlaid for comparison.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from .geometry import Domain
from .training import TrainResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_solution", "plot_error", "plot_loss"]

Tensor = torch.Tensor
Model = Callable[[Tensor], Tensor]


def _figure(ncols: int, size: tuple[float, float]) -> tuple[Figure, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=110)
    return fig


def _evaluate(model: Model, x: Tensor, component: int | None) -> Tensor:
    """``model(x)`` without a graph, as ``(N,)`` (one output, or ``component``)."""
    dtype = x.dtype
    if isinstance(model, torch.nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            x = x.to(dtype=p.dtype, device=p.device)
    with torch.no_grad():
        u = model(x)
    if u.dim() == 2:
        if component is None and u.shape[1] != 1:
            raise InputError(f"component: the model returns {u.shape[1]} outputs; choose one")
        u = u[:, component or 0]
    return u.detach().to(device="cpu", dtype=dtype)


def _grid(domain: Domain, resolution: int, axes: tuple[int, int], fixed: Mapping[int, float] | None
          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Points of a ``resolution^2`` grid over the bounding box in ``axes`` (others at ``fixed`` or mid-box), the
    two coordinate vectors and the inside mask."""
    low, high = domain.bounds()
    a, b = axes
    if not (0 <= a < domain.dim and 0 <= b < domain.dim and a != b):
        raise InputError(f"axes: two different coordinates of a {domain.dim}-D domain, got {axes}")
    ga = torch.linspace(float(low[a]), float(high[a]), resolution, dtype=torch.float64)
    gb = torch.linspace(float(low[b]), float(high[b]), resolution, dtype=torch.float64)
    mid = (low + high) / 2
    for k, v in dict(fixed or {}).items():
        mid[k] = float(v)
    pa, pb = torch.meshgrid(ga, gb, indexing="xy")
    x = mid.repeat(resolution * resolution, 1)
    x[:, a], x[:, b] = pa.reshape(-1), pb.reshape(-1)
    return x, ga, gb, domain.contains(x, tol=domain.default_tol(torch.float64))


def _check(domain: object, resolution: object) -> None:
    if not isinstance(domain, Domain):
        raise InputError(f"domain: expected a pysciml.pinn.geometry Domain, got {type(domain).__name__}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise InputError(f"resolution: expected an int >= 2 (grid points per axis), got {resolution!r}")


def plot_solution(model: Model, domain: Domain, *, exact: Model | None = None, resolution: int = 101,
                  axes: tuple[int, int] = (0, 1), fixed: Mapping[int, float] | None = None,
                  component: int | None = None, path: str | os.PathLike | None = None,
                  title: str | None = None) -> Figure:
    """The prediction (and, with ``exact``, the reference and the pointwise error) over ``domain``.

    Args:
        model: the trained model (a :class:`~pysciml.pinn.pinn.PINN`, a network, or any ``(N, d) -> (N,)`` /
            ``(N, m)`` callable); evaluated without a graph on float64 grid points (converted to the model's
            dtype and device if it is an ``nn.Module``).
        domain: the :class:`~pysciml.pinn.geometry.Domain` (its bounding box sets the grid; outside points are
            blank).
        exact: the exact solution ``(N, d) -> (N,)`` (optional).
        resolution: grid points per axis (2-D) or points (1-D).
        axes: the two coordinates shown for ``d >= 2``.
        fixed: values of the other coordinates (default: the middle of the bounding box), ``{axis: value}``.
        component: output shown for a multi-output model.
        path: write a PNG there too.
        title: figure title.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    _check(domain, resolution)
    if domain.dim == 1:
        return _plot_1d(model, domain, exact, resolution, component, path, title)
    x, ga, gb, inside = _grid(domain, resolution, axes, fixed)
    u = _evaluate(model, x, component)
    panels = [("prediction", u)]
    if exact is not None:
        ref = _evaluate(exact, x, component)
        panels += [("exact", ref), ("|error|", (u - ref).abs())]
    fig, axs = _figure(len(panels), (4.6 * len(panels), 4.0))
    for ax, (name, values) in zip(axs, panels, strict=True):
        _heatmap(fig, ax, ga, gb, values, inside, resolution, name, axes, log=False)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def _heatmap(fig: Figure, ax: Any, ga: Tensor, gb: Tensor, values: Tensor, inside: Tensor, resolution: int,
             name: str, axes: tuple[int, int], *, log: bool) -> None:
    grid = torch.where(inside, values, torch.full_like(values, math.nan)).reshape(resolution, resolution)
    kwargs: dict[str, Any] = {}
    if log:
        from matplotlib.colors import LogNorm

        finite = grid[torch.isfinite(grid) & (grid > 0)]
        if finite.numel():
            kwargs["norm"] = LogNorm(vmin=float(finite.min()), vmax=float(finite.max()))
            grid = torch.where(grid > 0, grid, torch.full_like(grid, math.nan))
    mesh = ax.pcolormesh(ga.numpy(), gb.numpy(), grid.numpy(), shading="auto", cmap="viridis", **kwargs)
    fig.colorbar(mesh, ax=ax)
    ax.set_title(name)
    ax.set_xlabel(f"x{axes[0]}")
    ax.set_ylabel(f"x{axes[1]}")
    ax.set_aspect("equal", adjustable="box")


def _plot_1d(model: Model, domain: Domain, exact: Model | None, resolution: int, component: int | None,
             path: str | os.PathLike | None, title: str | None) -> Figure:
    low, high = domain.bounds()
    x = torch.linspace(float(low[0]), float(high[0]), resolution, dtype=torch.float64)[:, None]
    u = _evaluate(model, x, component)
    fig, axs = _figure(2 if exact is not None else 1, (10.0 if exact is not None else 5.0, 3.8))
    axs[0].plot(x[:, 0].numpy(), u.numpy(), label="prediction")
    if exact is not None:
        ref = _evaluate(exact, x, component)
        axs[0].plot(x[:, 0].numpy(), ref.numpy(), "--", label="exact")
        axs[1].semilogy(x[:, 0].numpy(), (u - ref).abs().clamp(min=1e-300).numpy())
        axs[1].set_title("|error|")
        axs[1].set_xlabel("x")
    axs[0].set_xlabel("x")
    axs[0].legend()
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_error(model: Model, exact: Model, domain: Domain, *, resolution: int = 101, axes: tuple[int, int] = (0, 1),
               fixed: Mapping[int, float] | None = None, component: int | None = None, log: bool = True,
               path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """The pointwise error ``|model - exact|`` over a 2-D domain (or slice), log colour scale by default.

    Arguments as for :func:`plot_solution`; ``log=False`` for a linear scale. A 1-D domain gives the error curve.
    """
    _check(domain, resolution)
    if domain.dim == 1:
        return _plot_1d(model, domain, exact, resolution, component, path, title)
    x, ga, gb, inside = _grid(domain, resolution, axes, fixed)
    err = (_evaluate(model, x, component) - _evaluate(exact, x, component)).abs()
    fig, axs = _figure(1, (5.2, 4.2))
    _heatmap(fig, axs[0], ga, gb, err, inside, resolution, title or "|error|", axes, log=log)
    return _finish(fig, path)


def _history(run: object) -> list[Mapping[str, Any]]:
    history = run.history if isinstance(run, TrainResult) else run
    if not isinstance(history, Sequence) or not history or not all(isinstance(h, Mapping) for h in history):
        raise InputError("runs: expected a TrainResult, a non-empty history (list of dicts) or a dict of those")
    return list(history)


_RESERVED = ("iter", "phase", "time", "loss")


def plot_loss(runs: Any, *, x: str = "both", terms: bool = True, path: str | os.PathLike | None = None,
              title: str | None = None) -> Figure:
    """Loss curves (log scale) against iterations (``x="iter"``), wall time (``"time"``) or both side by side.

    Args:
        runs: a :class:`~pysciml.pinn.training.TrainResult` or its ``history`` (entries with ``"iter"``,
            ``"time"``, ``"loss"``, and per-term values), or ``{label: run}`` to compare several runs (total loss
            only).
        x: ``"iter"``, ``"time"`` or ``"both"``.
        terms: for a single run, also draw every unweighted term.
        path: write a PNG there too.
        title: figure title.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    if x not in ("iter", "time", "both"):
        raise InputError(f"x: expected 'iter', 'time' or 'both', got {x!r}")
    if isinstance(runs, Mapping):
        labelled = {str(k): _history(v) for k, v in runs.items()}
        single = False
    else:
        labelled, single = {"loss": _history(runs)}, True
    keys = ["iter", "time"] if x == "both" else [x]
    fig, axs = _figure(len(keys), (5.2 * len(keys), 3.8))
    for ax, key in zip(axs, keys, strict=True):
        for label, history in labelled.items():
            xs = [h[key] for h in history]
            ax.semilogy(xs, [h["loss"] for h in history], label=label if not single else "total (weighted)")
            if single and terms:
                names = [k for k in history[0] if k not in _RESERVED and not k.startswith("weight/")]
                for name in names:
                    ax.semilogy(xs, [h[name] for h in history], "--", linewidth=1, label=name)
            if single:
                _mark_phases(ax, history, key)
        ax.set_xlabel("iteration" if key == "iter" else "time (s)")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def _mark_phases(ax: Any, history: list[Mapping[str, Any]], key: str) -> None:
    """A dotted line where the phase changes (Adam -> L-BFGS)."""
    for prev, cur in zip(history, history[1:], strict=False):
        if prev.get("phase") != cur.get("phase"):
            ax.axvline(cur[key], color="grey", linestyle=":", linewidth=1)
