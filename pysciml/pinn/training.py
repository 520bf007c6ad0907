"""Training a :class:`~pysciml.pinn.pinn.PINN`: Adam, then L-BFGS with a strong-Wolfe line search.

:func:`train` runs ``adam_iters`` Adam steps and then ``lbfgs_iters`` iterations of
:class:`torch.optim.LBFGS` (``line_search_fn="strong_wolfe"``, one quasi-Newton iteration per step call, so
every iteration is logged, checkpointed and checked like an Adam one). Along the way it

* logs a history entry every ``log_every`` iterations (and at the last): iteration, phase, seconds since the
  start (monotone, also across a resume), total weighted loss, every unweighted term and every weight;
* updates adaptive loss weights (``pinn.weights.update``) and resamples / refines collocation points, in the
  Adam phase only (L-BFGS builds its curvature model on a fixed objective: weights and points are frozen when
  it starts);
* stops a phase early when the loss has not improved by the relative amount ``min_delta`` for ``patience``
  iterations (Adam then hands over to L-BFGS), when L-BFGS stops moving (converged), or when the loss
  becomes non-finite (the parameters are left at the last finite iterate and ``status`` says so);
* saves checkpoints (``torch.save``: the PINN's state dict, points, weights, optimiser states, history, RNG
  state) every ``checkpoint_every`` iterations and at the end, and resumes from one so that the run continues
  exactly as if it had not been interrupted.

A history entry's loss is the loss at the parameters *entering* that iteration (before its update).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._progress import training_bar
from ..errors import InputError

if TYPE_CHECKING:
    from .pinn import PINN

__all__ = ["train", "TrainResult"]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: one dict per logged iteration: ``iter``, ``phase`` (``"adam"``/``"lbfgs"``), ``time``
            (seconds since the start of training, including time before a resume), ``loss`` (weighted total),
            each term by name (unweighted), and ``weight/<term>``.
        seconds: wall time of the whole training (including time before a resume).
        iterations: iterations done (Adam + L-BFGS).
        status: ``"completed"``, ``"early_stopped"`` (patience ran out in the last phase), ``"converged"``
            (L-BFGS made no progress), or ``"non_finite"`` (the loss became NaN/inf).
        message: a sentence on how training ended.
        best_loss: the lowest total loss logged.
        events: notes on what changed along the way (refinements, a phase ended by patience).
    """

    history: list[dict[str, Any]]
    seconds: float
    iterations: int = 0
    status: str = "completed"
    message: str = ""
    best_loss: float = math.inf
    events: list[str] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """The loss of the last logged iteration."""
        return float(self.history[-1]["loss"]) if self.history else math.nan


def _count(value: object, name: str, *, allow_zero: bool = True) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise InputError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} int, got {value!r}")
    return value


def _optional_count(value: object, name: str) -> int | None:
    return None if value is None else _count(value, name, allow_zero=False)


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise InputError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


class _Run:
    """The mutable state of one training run (what a checkpoint holds besides the model)."""

    def __init__(self) -> None:
        self.iteration = 0  # the next iteration's index
        self.done = 0  # iterations run (an early-stopped phase skips indices)
        self.history: list[dict[str, Any]] = []
        self.elapsed_before = 0.0
        self.best = math.inf
        self.since_best = 0
        self.adam_done = False  # Adam phase ended (by count or patience)
        self.events: list[str] = []


def train(pinn: PINN, *, adam_iters: int = 1000, lr: float = 1e-3, lbfgs_iters: int = 0, lbfgs_lr: float = 1.0,
          lbfgs_history: int = 50, adam_options: Mapping[str, Any] | None = None,
          lbfgs_options: Mapping[str, Any] | None = None, progress: bool = False,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
          resume: str | os.PathLike | None = None, patience: int | None = None, min_delta: float = 0.0,
          log_every: int = 1, resample_every: int | None = None, refine_every: int | None = None,
          refine: tuple[int, int] = (1000, 10)) -> TrainResult:
    """Train ``pinn`` (all its trainable parameters: network, unknowns, residual module) in place.

    Args:
        pinn: the :class:`~pysciml.pinn.pinn.PINN`.
        adam_iters: Adam iterations (first phase).
        lr: Adam learning rate.
        lbfgs_iters: L-BFGS iterations (second phase; each may evaluate the loss several times in its line
            search).
        lbfgs_lr: L-BFGS initial step length (1 with a line search).
        lbfgs_history: L-BFGS memory (pairs kept).
        adam_options: more keyword arguments of :class:`torch.optim.Adam` (``betas``, ``weight_decay``...).
        lbfgs_options: more keyword arguments of :class:`torch.optim.LBFGS` (``tolerance_grad``,
            ``tolerance_change``, ``max_eval``: loss evaluations per iteration, default 25); ``max_iter`` stays 1
            (one iteration per logged step).
        progress: show a tqdm bar (needs tqdm).
        checkpoint: file to save checkpoints to (``None``: none); a ``{iteration}`` field in the name keeps one
            file per save (``"ckpt_{iteration}.pt"``), else each save replaces the last.
        checkpoint_every: save every this many iterations (``None``: only at the end).
        resume: checkpoint file to resume from (give the same phase lengths as the interrupted run).
        patience: stop a phase after this many iterations without improvement (``None``: never).
        min_delta: relative improvement that counts (``loss < best * (1 - min_delta)``).
        log_every: history entry every this many iterations (and at the last).
        resample_every: redraw all collocation points every this many Adam iterations (``None``: never).
        refine_every: residual-based adaptive refinement every this many Adam iterations (``None``: never),
            with ``refine = (n_candidates, n_add)``.

    Returns:
        :class:`TrainResult`.

    Raises:
        InputError: bad arguments, or a checkpoint that does not match ``pinn``.
    """
    adam_iters, lbfgs_iters = _count(adam_iters, "adam_iters"), _count(lbfgs_iters, "lbfgs_iters")
    lr, lbfgs_lr = _positive(lr, "lr"), _positive(lbfgs_lr, "lbfgs_lr")
    lbfgs_history, log_every = _count(lbfgs_history, "lbfgs_history", allow_zero=False), \
        _count(log_every, "log_every", allow_zero=False)
    checkpoint_every, patience = _optional_count(checkpoint_every, "checkpoint_every"), \
        _optional_count(patience, "patience")
    resample_every, refine_every = _optional_count(resample_every, "resample_every"), \
        _optional_count(refine_every, "refine_every")
    if not isinstance(min_delta, (int, float)) or not 0 <= min_delta < 1:
        raise InputError(f"min_delta: expected a relative improvement in [0, 1), got {min_delta!r}")
    if checkpoint_every is not None and checkpoint is None:
        raise InputError("checkpoint_every: give checkpoint= (the file to save to) as well")
    total = adam_iters + lbfgs_iters
    params = [p for p in pinn.parameters() if p.requires_grad]
    if not params:
        raise InputError("pinn: it has no trainable parameters")
    adam = torch.optim.Adam(params, lr=lr, **dict(adam_options or {}))
    lbfgs_kwargs = {"history_size": lbfgs_history, "line_search_fn": "strong_wolfe", **dict(lbfgs_options or {})}
    lbfgs_kwargs["max_iter"] = 1
    lbfgs_kwargs.setdefault("max_eval", 25)  # per iteration; torch's default (5/4 max_iter) would forbid a line search
    lbfgs = torch.optim.LBFGS(params, lr=lbfgs_lr, **lbfgs_kwargs)
    run = _Run()
    if resume is not None:
        _load(Path(resume), pinn, adam, lbfgs, run)
    bar = training_bar(progress, total, "PINN", "it", run.iteration)
    start = time.perf_counter()
    status, message = "completed", f"ran {total} iterations ({adam_iters} Adam, {lbfgs_iters} L-BFGS)"

    def now() -> float:
        return run.elapsed_before + time.perf_counter() - start

    try:
        while run.iteration < total:
            it = run.iteration
            in_adam = it < adam_iters and not run.adam_done
            if not in_adam and it < adam_iters:  # Adam stopped early: skip to L-BFGS
                run.iteration = it = adam_iters
                if it >= total:
                    break
            phase = "adam" if in_adam else "lbfgs"
            if in_adam:
                _adapt(pinn, it, resample_every, refine_every, refine, run)
                losses, loss = _adam_step(pinn, adam)
            else:
                losses, loss, moved, snapshot = _lbfgs_step(pinn, lbfgs, params)
            value = float(loss)
            if not math.isfinite(value) or (not in_adam and not _finite(params)):
                if not in_adam:
                    _restore(params, snapshot)
                status = "non_finite"
                message = (f"the loss became {value} at iteration {it} ({'Adam' if in_adam else 'L-BFGS'}); "
                           "training stopped with finite parameters (no step into the non-finite region): lower "
                           "lr, rescale the terms or the domain")
                _log(run, pinn, it, phase, losses, value, now())
                break
            run.iteration, run.done = it + 1, run.done + 1
            stop_phase = _patience(run, value, patience, min_delta, it == adam_iters - 1)
            if not in_adam and not moved:
                status = "converged"
                message = (f"L-BFGS stopped moving at iteration {it} (gradient below tolerance_grad, or no step "
                           "satisfied the line search)")
                run.iteration = total
            elif stop_phase:
                run.events.append(f"patience ran out at iteration {it}")
                if in_adam:
                    run.adam_done = True
                    run.best, run.since_best = math.inf, 0
                    if lbfgs_iters == 0:
                        status, message = "early_stopped", f"Adam stopped at iteration {it} (patience {patience})"
                        run.iteration = total
                else:
                    status, message = "early_stopped", f"L-BFGS stopped at iteration {it} (patience {patience})"
                    run.iteration = total
            if it % log_every == 0 or run.iteration >= total:
                _log(run, pinn, it, phase, losses, value, now())
            if bar is not None:
                bar.update(1)
                if it % log_every == 0:
                    bar.set_postfix(loss=f"{value:.3e}", phase=phase)
            if checkpoint is not None and checkpoint_every is not None and run.iteration % checkpoint_every == 0:
                _save(_checkpoint_path(checkpoint, run.iteration), pinn, adam, lbfgs, run, now())
    finally:
        if bar is not None:
            bar.close()
    seconds = now()
    if checkpoint is not None:
        _save(_checkpoint_path(checkpoint, run.iteration), pinn, adam, lbfgs, run, seconds)
    best = min((h["loss"] for h in run.history), default=math.inf)
    return TrainResult(history=run.history, seconds=seconds, iterations=run.done, status=status,
                       message=message, best_loss=best, events=list(run.events))


def _finite(params: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def _restore(params: list[torch.Tensor], snapshot: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, s in zip(params, snapshot, strict=True):
            p.copy_(s)


def _adapt(pinn: PINN, it: int, resample_every: int | None, refine_every: int | None, refine: tuple[int, int],
           run: _Run) -> None:
    """Points and weights change only in the Adam phase (see the module docstring)."""
    if resample_every is not None and it > 0 and it % resample_every == 0:
        pinn.resample(it)
    if refine_every is not None and it > 0 and it % refine_every == 0:
        n = pinn.refine(refine[0], refine[1], seed=it)
        run.events.append(f"refined to {n} interior points at iteration {it}")
    pinn.weights.update(pinn, it)


def _adam_step(pinn: PINN, adam: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    adam.zero_grad(set_to_none=True)
    losses = pinn.losses()
    loss = pinn.loss(losses)
    if torch.isfinite(loss):
        loss.backward()
        adam.step()
    return losses, loss.detach()


def _lbfgs_step(pinn: PINN, lbfgs: torch.optim.LBFGS, params: list[torch.Tensor]
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, bool, list[torch.Tensor]]:
    first: dict[str, Any] = {}

    def closure() -> torch.Tensor:
        lbfgs.zero_grad(set_to_none=True)
        losses = pinn.losses()
        loss = pinn.loss(losses)
        if not first:
            first["losses"], first["loss"] = {k: v.detach() for k, v in losses.items()}, loss.detach()
        loss.backward()
        return loss

    snapshot = [p.detach().clone() for p in params]
    lbfgs.step(closure)
    moved = any(not torch.equal(p, s) for p, s in zip(params, snapshot, strict=True))
    return first["losses"], first["loss"], moved, snapshot


def _log(run: _Run, pinn: PINN, it: int, phase: str, losses: Mapping[str, torch.Tensor], value: float,
         t: float) -> None:
    entry: dict[str, Any] = {"iter": it, "phase": phase, "time": t, "loss": value}
    entry.update({name: float(v.detach()) for name, v in losses.items()})
    entry.update({f"weight/{name}": w for name, w in pinn.weights.values.items()})
    run.history.append(entry)


def _patience(run: _Run, value: float, patience: int | None, min_delta: float, last_adam: bool) -> bool:
    if value < run.best * (1.0 - min_delta) or run.best == math.inf:
        run.best, run.since_best = value, 0
    else:
        run.since_best += 1
    if last_adam:  # the L-BFGS phase keeps its own count
        run.best, run.since_best = math.inf, 0
        return False
    return patience is not None and run.since_best >= patience


def _checkpoint_path(checkpoint: str | os.PathLike, iteration: int) -> Path:
    name = os.fspath(checkpoint)
    return Path(name.format(iteration=iteration) if "{iteration}" in name else name)


def _save(path: Path, pinn: PINN, adam: torch.optim.Optimizer, lbfgs: torch.optim.Optimizer, run: _Run,
          elapsed: float) -> None:
    state = {
        "format": "pysciml.pinn.train/1",
        "iteration": run.iteration, "done": run.done, "elapsed": elapsed, "best": run.best,
        "since_best": run.since_best,
        "adam_done": run.adam_done, "history": run.history, "events": run.events,
        "model": pinn.state_dict(), "points": {k: v.detach().cpu() for k, v in pinn.points.items()},
        "weights": pinn.weights.state_dict(), "adam": adam.state_dict(), "lbfgs": lbfgs.state_dict(),
        "rng": torch.get_rng_state(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-save leaves the previous checkpoint


def _load(path: Path, pinn: PINN, adam: torch.optim.Optimizer, lbfgs: torch.optim.Optimizer, run: _Run) -> None:
    if not path.is_file():
        raise InputError(f"resume: no checkpoint file at {str(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file format (plain containers)
    if not isinstance(state, dict) or state.get("format") != "pysciml.pinn.train/1":
        raise InputError(f"resume: {str(path)!r} is not a checkpoint written by pysciml.pinn.train")
    if set(state["points"]) != set(pinn.points):
        raise InputError(f"resume: the checkpoint's terms {sorted(state['points'])} differ from this PINN's "
                         f"{sorted(pinn.points)}")
    try:
        pinn.load_state_dict(state["model"])
    except RuntimeError as err:
        raise InputError(f"resume: the checkpoint does not fit this PINN's network: {err}") from err
    pinn.points = {k: v.to(dtype=pinn.dtype, device=pinn.device) for k, v in state["points"].items()}
    pinn.weights.load_state_dict(state["weights"])
    adam.load_state_dict(state["adam"])
    lbfgs.load_state_dict(state["lbfgs"])
    torch.set_rng_state(state["rng"])
    run.iteration, run.done, run.elapsed_before = int(state["iteration"]), int(state["done"]), float(state["elapsed"])
    run.best, run.since_best, run.adam_done = float(state["best"]), int(state["since_best"]), bool(state["adam_done"])
    run.history, run.events = list(state["history"]), list(state["events"])
