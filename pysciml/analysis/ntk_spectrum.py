"""Spectra of (operator) NTKs: eigenvalues, power-law decay fits with their range, traces, plots.

* :func:`eigenvalues`: all eigenvalues of a symmetric kernel by ``torch.linalg.eigvalsh`` (``method="dense"``),
  or the ``k`` largest by Lanczos iteration (``method="lanczos"``: :func:`scipy.sparse.linalg.eigsh` with a
  ``LinearOperator``, so the kernel may also be given as a matrix-vector product; scipy is imported lazily and
  is not a runtime dependency of pysciml).
* :func:`fit_decay`: the exponent ``alpha`` of ``lambda_k ~ C k^(-alpha)`` by least squares on log-log axes
  over an index range that is always reported (the range matters: NTK spectra of smooth networks are not pure
  power laws, and eigenvalues below ``rtol * lambda_1`` are round-off, not spectrum).
* :func:`trace`, :func:`plot_spectra`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._lstsq import lstsq
from ..errors import InputError

Tensor = torch.Tensor

__all__ = ["eigenvalues", "DecayFit", "fit_decay", "trace", "plot_spectra"]


def _square(k: object, name: str = "K") -> Tensor:
    if not isinstance(k, Tensor) or k.dim() != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise InputError(f"{name}: expected a square (N, N) tensor, got "
                         f"{tuple(k.shape) if isinstance(k, Tensor) else type(k).__name__}")
    return k


def eigenvalues(K: Tensor | Callable[[np.ndarray], np.ndarray], *, k: int | None = None, method: str = "auto",
                n: int | None = None, tol: float = 0.0, seed: int = 0) -> Tensor:
    """Eigenvalues of a symmetric kernel, largest first.

    Args:
        K: an ``(N, N)`` symmetric tensor (symmetrised as ``(K + K^T) / 2`` for ``"dense"``), or, for
            ``"lanczos"``, a function ``v -> K v`` on numpy vectors of length ``n``.
        k: how many of the largest to return (``None``: all, dense only).
        method: ``"dense"`` (``eigvalsh``, float64 on the CPU), ``"lanczos"`` (top ``k`` by
            :func:`scipy.sparse.linalg.eigsh`, ``which="LA"``) or ``"auto"`` (Lanczos when ``k`` is given and
            ``k < N / 10``, else dense).
        n: the size when ``K`` is a function.
        tol: Lanczos relative tolerance (0: machine precision).
        seed: seed of Lanczos' starting vector.

    Returns:
        1-D float64 CPU tensor, descending (length ``N`` or ``k``).

    Raises:
        InputError: not square, bad ``k``/``method``; ImportError naming the extra when Lanczos needs scipy.
    """
    if method not in ("auto", "dense", "lanczos"):
        raise InputError(f"method: expected 'auto', 'dense' or 'lanczos', got {method!r}")
    matvec = callable(K) and not isinstance(K, Tensor)
    if matvec:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError("n: a kernel given as a matrix-vector product needs its size n (a positive int)")
        size = n
    else:
        size = _square(K).shape[0]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= size):
        raise InputError(f"k: expected None or an int in [1, {size}], got {k!r}")
    if method == "auto":
        method = "lanczos" if matvec or (k is not None and k < size / 10) else "dense"
    if method == "dense":
        if matvec:
            raise InputError("method: 'dense' needs K as a tensor; use method='lanczos' with a matvec")
        km = K.detach().to("cpu", torch.float64)  # type: ignore[union-attr]
        ev = torch.linalg.eigvalsh(0.5 * (km + km.T)).flip(0)
        return ev if k is None else ev[:k]
    if k is None:
        raise InputError("k: Lanczos computes the k largest eigenvalues; pass k (or method='dense')")
    if k >= size - 1:
        raise InputError(f"k: Lanczos needs k < N - 1 = {size - 1}; use method='dense'")
    try:
        from scipy.sparse.linalg import LinearOperator, eigsh
    except ImportError as err:  # pragma: no cover - scipy is in the test extra
        raise ImportError("eigenvalues(method='lanczos') needs scipy: pip install 'pysciml[pinn]' (or scipy)") \
            from err
    if matvec:
        mv = K
    else:
        km = K.detach().to("cpu", torch.float64).numpy()  # type: ignore[union-attr]

        def mv(v: np.ndarray) -> np.ndarray:
            return km @ v
    op = LinearOperator((size, size), matvec=mv, dtype=np.float64)  # type: ignore[arg-type]
    v0 = np.random.default_rng(seed).standard_normal(size)
    vals = eigsh(op, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return torch.from_numpy(np.sort(vals)[::-1].copy())


@dataclass(frozen=True)
class DecayFit:
    """A power-law fit ``lambda_k ~ prefactor * k^(-exponent)`` over the 1-based indices ``start..stop``.

    Attributes:
        exponent: the decay exponent ``alpha`` (positive for decaying spectra).
        prefactor: ``C``.
        start, stop: the fitted index range (inclusive, 1-based).
        r2: coefficient of determination of the log-log line (1 = a clean power law).
    """

    exponent: float
    prefactor: float
    start: int
    stop: int
    r2: float

    def __str__(self) -> str:
        return f"alpha = {self.exponent:.3g} (k = {self.start}..{self.stop}, R^2 = {self.r2:.3f})"


def fit_decay(eigs: Tensor | np.ndarray, *, start: int = 1, stop: int | None = None,
              rtol: float = 1e-10) -> DecayFit:
    """Fit ``log lambda_k = log C - alpha log k`` by least squares.

    Args:
        eigs: eigenvalues (any order: sorted descending inside).
        start: first index (1-based) of the fit.
        stop: last index (1-based, inclusive); ``None``: the last ``k`` with ``lambda_k > rtol * lambda_1``
            (smaller ones are dominated by round-off in float64 kernels).
        rtol: the relative floor used when ``stop`` is ``None``.

    Returns:
        :class:`DecayFit` with the range actually used.

    Raises:
        InputError: fewer than 3 positive eigenvalues in the range, or a bad range.
    """
    ev = torch.as_tensor(np.asarray(eigs), dtype=torch.float64).reshape(-1)
    ev = torch.sort(ev, descending=True).values
    if ev.numel() < 3 or not float(ev[0]) > 0:
        raise InputError("eigs: expected at least 3 eigenvalues with a positive largest one")
    if stop is None:
        stop = int((ev > rtol * ev[0]).sum())
    if isinstance(start, bool) or not isinstance(start, int) or start < 1 or stop > ev.numel() or stop - start < 2:
        raise InputError(f"start/stop: expected 1 <= start, start + 2 <= stop <= {ev.numel()}, got {start}..{stop}")
    sel = ev[start - 1:stop]
    if not bool((sel > 0).all()):
        raise InputError(f"eigs: non-positive eigenvalues in the fit range {start}..{stop}; lower stop")
    lk = torch.log(torch.arange(start, stop + 1, dtype=torch.float64))
    ll = torch.log(sel)
    a = torch.stack([torch.ones_like(lk), lk], 1)
    coef = lstsq(a, ll[:, None])[:, 0]
    pred = a @ coef
    ss_res = float(((ll - pred) ** 2).sum())
    ss_tot = float(((ll - ll.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return DecayFit(-float(coef[1]), math.exp(float(coef[0])), start, stop, r2)


def trace(K: Tensor) -> float:
    """``tr K`` as a float (for a kernel given by Jacobians use :func:`pysciml.analysis.ntk.ntk_trace`)."""
    return float(torch.trace(_square(K)))


def plot_spectra(spectra: Mapping[str, Tensor | np.ndarray], *, normalize: bool = True, ax: Any = None,
                 path: str | None = None, title: str | None = None) -> Any:
    """Eigenvalues against their index on log-log axes (matplotlib, imported lazily).

    Args:
        spectra: ``{label: eigenvalues}``.
        normalize: divide each spectrum by its largest eigenvalue.
        ax: a matplotlib ``Axes`` to draw on (``None``: a new figure).
        path: save the figure there (``None``: do not save).
        title: the axes title.

    Returns:
        The ``Axes``.
    """
    try:
        import matplotlib

        if ax is None and path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover
        raise ImportError("plot_spectra needs matplotlib: pip install matplotlib") from err
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    for label, ev in spectra.items():
        e = torch.as_tensor(np.asarray(ev), dtype=torch.float64)
        e = torch.sort(e, descending=True).values
        e = e[e > 0]
        if normalize and e.numel():
            e = e / e[0]
        ax.loglog(np.arange(1, e.numel() + 1), e.numpy(), label=label)
    ax.set_xlabel("index k")
    ax.set_ylabel("eigenvalue" + (" / largest" if normalize else ""))
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120)
    return ax
