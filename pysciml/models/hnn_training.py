"""``fit_vector_field``: train a model of a vector field on samples ``(x, dx/dt)`` with the protocol of
Khoo et al. ("Separable Hamiltonian Neural Networks", arXiv 2309.01069, and the authors' code
zykhoo/SeparableNNs): a random train/validation split (80/20), Adam, minibatches of a fifth of the training
set, gradient-norm clipping at 1, early stopping on the validation loss with the best weights restored.

Works for :class:`~pysciml.models.HNN`, :class:`~pysciml.models.SeparableHNN`,
:class:`~pysciml.models.LagrangianNN` (anything with a ``loss(x, dx)`` method) and for a plain vector-field
network called as ``model(x)`` (an ``nn.Sequential`` MLP baseline).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError
from .hnn import _positive_int as _positive_int_strict
from .hnn import augment, vector_field_loss

__all__ = ["FitResult", "fit_vector_field"]

Tensor = torch.Tensor


@dataclass
class FitResult:
    """What :func:`fit_vector_field` did.

    Attributes:
        train_loss: mean training loss per epoch (over its minibatches).
        val_loss: validation loss per epoch (empty when ``val_fraction == 0``).
        best_epoch: epoch (0-based) whose weights were restored: the lowest validation loss (training loss
            without a validation split).
        best_loss: that epoch's monitored loss.
        epochs: epochs run.
        stopped_early: whether the patience ran out before ``epochs``.
        seconds: wall time of the training loop.
        n_train: training samples per epoch (after augmentation); ``n_val``: validation samples.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_loss: float = math.inf
    epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0


def _loss(model: nn.Module, x: Tensor, dx: Tensor) -> Tensor:
    loss = getattr(model, "loss", None)
    if callable(loss):
        return loss(x, dx)
    return vector_field_loss(model(x), dx)


def _positive_int(value: object, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    return _positive_int_strict(value, name)


def fit_vector_field(model: nn.Module, x: Tensor, dx: Tensor, *, epochs: int = 1000, lr: float = 1e-3,
                     batch_size: int | None = None, val_fraction: float = 0.2, patience: int | None = None,
                     min_delta: float = 1e-5, clip: float | None = 1.0, seed: int = 0,
                     augment_copies: int | None = None, log_every: int | None = None) -> FitResult:
    """Fit ``model`` to the vector field samples ``dx`` at states ``x``; the model ends with its best weights.

    Args:
        model: an ``nn.Module`` with ``loss(x, dx) -> 0-d tensor`` (HNN, SeparableHNN, LagrangianNN), or one
            called as ``model(x) -> dx`` (then the loss is
            :func:`~pysciml.models.hnn.vector_field_loss`, the same scale as the HNN loss).
        x: states ``(N, d)`` in the model's dtype and on its device.
        dx: their time derivatives ``(N, d)``.
        epochs: maximum number of epochs (passes over the training split).
        lr: Adam's learning rate (the paper: 1e-3 for 2-dimensional systems, 1e-2 for larger).
        batch_size: minibatch size; default ``max(1, n_train // 5)`` with ``n_train`` the training split
            before augmentation (the paper's choice, kept when augmentation multiplies the data).
        val_fraction: fraction of the samples held out for validation, in ``[0, 1)``; 0 monitors the training
            loss instead.
        patience: stop after this many epochs without an improvement of more than ``min_delta`` in the
            monitored loss (the paper: 4000); ``None`` runs all ``epochs``.
        min_delta: the improvement that resets the patience (absolute; the paper's 1e-5). The weights restored at
            the end are those of the lowest monitored loss, improvement threshold or not.
        clip: gradient-norm clipping threshold (the paper's 1); ``None`` disables it.
        seed: seeds the split, the minibatch shuffling and the augmentation's random order (the model's
            initialisation is the caller's).
        augment_copies: observational augmentation of the training split with
            :func:`~pysciml.models.augment` (separable systems only); default: the model's ``augment_copies``
            attribute (set by ``SeparableHNN(biases="O...")``), else none.
        log_every: print the losses every this many epochs; ``None`` is silent.

    Returns:
        A :class:`FitResult` (loss histories, best epoch, time).
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, v in (("x", x), ("dx", dx)):
        if not isinstance(v, Tensor) or v.ndim != 2:
            raise InputError(f"{name} must be a (N, d) tensor, got "
                             f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
    if dx.shape != x.shape:
        raise InputError(f"dx must have x's shape {tuple(x.shape)}, got {tuple(dx.shape)}")
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size", allow_none=True)
    patience = _positive_int(patience, "patience", allow_none=True)
    log_every = _positive_int(log_every, "log_every", allow_none=True)
    if not (isinstance(val_fraction, (int, float)) and 0 <= val_fraction < 1):
        raise InputError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise InputError(f"lr must be a positive number, got {lr!r}")
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        raise InputError(f"clip must be a positive number or None, got {clip!r}")
    if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
        raise InputError(f"min_delta must be a number >= 0, got {min_delta!r}")
    if augment_copies is None:
        augment_copies = getattr(model, "augment_copies", None)

    gen = torch.Generator().manual_seed(int(seed))
    N = x.shape[0]
    n_val = int(round(val_fraction * N))
    if val_fraction > 0 and not 1 <= n_val <= N - 2:
        raise InputError(f"val_fraction={val_fraction} leaves {n_val} of N={N} samples for validation; give more "
                         "samples or another fraction (at least 1 validation and 2 training samples)")
    perm = torch.randperm(N, generator=gen).to(x.device)
    x_val, dx_val = x[perm[:n_val]], dx[perm[:n_val]]
    x_tr, dx_tr = x[perm[n_val:]], dx[perm[n_val:]]
    n_train0 = x_tr.shape[0]
    if augment_copies is not None:
        x_tr, dx_tr = augment(x_tr, dx_tr, augment_copies, generator=gen)
    bs = batch_size if batch_size is not None else max(1, n_train0 // 5)

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    params = [p for p in model.parameters() if p.requires_grad]
    result = FitResult(n_train=x_tr.shape[0], n_val=n_val)
    best_state = copy.deepcopy(model.state_dict())
    reference = math.inf  # the loss an improvement must beat by min_delta
    waited = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(x_tr.shape[0], generator=gen).to(x.device)
        total, batches = 0.0, 0
        for start in range(0, x_tr.shape[0], bs):
            idx = order[start:start + bs]
            opt.zero_grad()
            loss = _loss(model, x_tr[idx], dx_tr[idx])
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            total += float(loss.detach())
            batches += 1
        result.train_loss.append(total / batches)
        if n_val:
            with torch.no_grad():  # torch.func derivatives inside the loss still work
                monitored = float(_loss(model, x_val, dx_val))
            result.val_loss.append(monitored)
        else:
            monitored = result.train_loss[-1]
        result.epochs = epoch + 1
        if not math.isfinite(monitored):
            break
        if monitored < result.best_loss:
            result.best_loss, result.best_epoch = monitored, epoch
            best_state = copy.deepcopy(model.state_dict())
        if monitored < reference - min_delta:
            reference, waited = monitored, 0
        else:
            waited += 1
        if log_every is not None and epoch % log_every == 0:
            print(f"epoch {epoch}: train {result.train_loss[-1]:.4e}"
                  + (f", validation {monitored:.4e}" if n_val else ""))
        if patience is not None and waited >= patience:
            result.stopped_early = True
            break
    model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - t0
    return result
