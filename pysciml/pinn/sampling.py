"""Point sampling in the unit cube (pseudo-random and quasi-random) and residual-based adaptive refinement.

``"uniform"`` / ``"pseudo"`` (the same thing) draw from a ``torch.Generator``; ``"lhs"``, ``"sobol"`` and
``"halton"`` come from ``scipy.stats.qmc`` (Latin hypercube, scrambled Sobol', scrambled Halton), imported only
when asked for: install the ``pinn`` extra (``pip install pysciml[pinn]``). Every sampler is seeded; the same
``seed`` gives the same points.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from ..errors import InputError

__all__ = ["METHODS", "PointStream", "qmc_points", "residual_adaptive_refinement"]

METHODS = ("uniform", "pseudo", "lhs", "sobol", "halton")
"""The accepted ``method`` names."""


class InteriorSampler(Protocol):
    """What :func:`residual_adaptive_refinement` needs of a domain (every
    :class:`~pysciml.pinn.geometry.Domain` has it)."""

    dim: int

    def sample_interior(self, n: int, *, method: str = ..., seed: int = ...,
                        dtype: torch.dtype = ...) -> torch.Tensor: ...


def check_count(n: object, name: str = "n") -> int:
    """``n`` as an int >= 1, else :class:`InputError` naming ``name``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"{name} must be a positive int (a number of points), got {n!r}")
    return int(n)


def check_method(method: object) -> str:
    """``method`` if it is one of :data:`METHODS`, else :class:`InputError`."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    return str(method)


def check_seed(seed: object) -> int:
    """``seed`` as a non-negative int, else :class:`InputError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def check_dtype(dtype: object) -> torch.dtype:
    """``dtype`` if it is a floating torch dtype, else :class:`InputError`."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating torch dtype (torch.float64 or torch.float32), got {dtype!r}")
    return dtype


def _qmc():
    try:
        from scipy.stats import qmc
    except ImportError as err:  # pragma: no cover - scipy is in the test extra
        raise ImportError("the 'lhs', 'sobol' and 'halton' samplers need scipy: pip install pysciml[pinn] "
                          "(or pip install scipy>=1.11); method='uniform' needs nothing more") from err
    return qmc


def _engine(method: str, d: int, seed: int):
    qmc = _qmc()
    cls = {"lhs": qmc.LatinHypercube, "sobol": qmc.Sobol, "halton": qmc.Halton}[method]
    rng = np.random.default_rng(seed)
    # scipy >= 1.15 names the random state `rng` (SPEC 7); older versions call it `seed`
    key = "rng" if "rng" in inspect.signature(cls).parameters else "seed"
    kwargs = {} if method == "lhs" else {"scramble": True}
    return cls(d, **kwargs, **{key: rng})


class PointStream:
    """Successive batches of points in ``[0, 1)^d`` from one seeded sampler.

    Sobol' and Halton batches continue one sequence (so the first ``n`` points of several draws are the first ``n``
    of the sequence); each ``"lhs"`` draw is a fresh Latin hypercube design; ``"uniform"`` continues one
    ``torch.Generator``.

    Args:
        d: dimension.
        method: one of :data:`METHODS`.
        seed: non-negative int.
        dtype: floating torch dtype of the points.
        device: device of the points.
    """

    def __init__(self, d: int, method: str = "uniform", seed: int = 0, *, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        self.d = check_count(d, "d")
        self.method = check_method(method)
        self.seed = check_seed(seed)
        self.dtype = check_dtype(dtype)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if self.method in ("uniform", "pseudo"):
            self._gen = torch.Generator(device="cpu").manual_seed(self.seed)
            self._engine = None
        else:
            self._gen = None
            self._engine = _engine(self.method, self.d, self.seed)

    def draw(self, n: int) -> torch.Tensor:
        """The next ``n`` points, shape ``(n, d)``, in ``[0, 1)^d``."""
        n = check_count(n)
        if self._engine is None:
            u = torch.rand((n, self.d), generator=self._gen, dtype=torch.float64)
        else:
            with warnings.catch_warnings():  # Sobol' balance needs n = 2^k; other n still fill the cube evenly
                warnings.filterwarnings("ignore", message=".*balance properties of Sobol", category=UserWarning)
                u = torch.from_numpy(np.ascontiguousarray(self._engine.random(n)))
        return u.to(dtype=self.dtype, device=self.device)


def qmc_points(n: int, d: int, method: str = "sobol", seed: int = 0, *, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` points in the unit cube ``[0, 1)^d``.

    Args:
        n: number of points (Sobol' points are best balanced when ``n`` is a power of two).
        d: dimension.
        method: ``"uniform"``/``"pseudo"`` (torch pseudo-random), ``"lhs"`` (Latin hypercube), ``"sobol"``
            (scrambled Sobol'), ``"halton"`` (scrambled Halton).
        seed: non-negative int; the same seed gives the same points.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        ``(n, d)`` tensor.

    Raises:
        InputError: a bad ``n``, ``d``, ``method``, ``seed`` or ``dtype``.
        ImportError: a scipy method without scipy installed (the ``pinn`` extra).
    """
    return PointStream(d, method, seed, dtype=dtype, device=device).draw(n)


def residual_adaptive_refinement(residual: Callable[[torch.Tensor], torch.Tensor], domain: InteriorSampler,
                                 points: torch.Tensor, *, n_candidates: int, n_add: int, seed: int = 0,
                                 method: str = "uniform", batch_size: int | None = None) -> torch.Tensor:
    """Residual-based adaptive refinement (RAR, Lu et al. 2021, DeepXDE): add the worst-resolved points.

    Samples ``n_candidates`` points inside ``domain``, evaluates ``|residual|`` there (the Euclidean norm over the
    components of a ``(M, k)`` residual) and appends the ``n_add`` points where it is largest to ``points``.

    Args:
        residual: callable from points ``(M, d)`` to residuals ``(M,)`` or ``(M, k)``; it may use the derivative
            helpers (autograd works inside; the result is detached).
        domain: a :class:`~pysciml.pinn.geometry.Domain` of dimension ``d``.
        points: the current collocation points, shape ``(N, d)``.
        n_candidates: number of candidate points to evaluate.
        n_add: number of points to add, ``<= n_candidates``.
        seed: seed of the candidate sampler.
        method: sampler of the candidates (see :func:`qmc_points`).
        batch_size: evaluate the residual on at most this many candidates at a time (``None``: all at once).

    Returns:
        ``(N + n_add, d)`` tensor: ``points`` followed by the new points (dtype and device of ``points``).

    Raises:
        InputError: bad counts, ``points`` of the wrong shape, or a residual of the wrong shape or not finite.
    """
    n_candidates = check_count(n_candidates, "n_candidates")
    n_add = check_count(n_add, "n_add")
    if n_add > n_candidates:
        raise InputError(f"n_add ({n_add}) must not exceed n_candidates ({n_candidates}): raise n_candidates")
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[1] != domain.dim:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise InputError(f"points must have shape (N, {domain.dim}) for this domain, got {shape}")
    if batch_size is not None:
        batch_size = check_count(batch_size, "batch_size")
    candidates = domain.sample_interior(n_candidates, method=method, seed=seed, dtype=points.dtype)
    candidates = candidates.to(points.device)
    size = batch_size or n_candidates
    scores = []
    for start in range(0, n_candidates, size):
        chunk = candidates[start:start + size]
        r = residual(chunk)
        if not isinstance(r, torch.Tensor) or r.ndim not in (1, 2) or r.shape[0] != chunk.shape[0]:
            shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise InputError(f"residual must map points (M, d) to (M,) or (M, k); for M = {chunk.shape[0]} it "
                             f"returned {shape}")
        r = r.detach()
        scores.append(r.abs() if r.ndim == 1 else torch.linalg.vector_norm(r, dim=1))
    score = torch.cat(scores)
    if not bool(torch.isfinite(score).all()):
        raise InputError("residual returned non-finite values at candidate points; check the network and residual")
    worst = torch.topk(score, n_add).indices
    return torch.cat([points, candidates[worst]], dim=0)


def oversampled(n_needed: int, acceptance: float, minimum: int = 64) -> int:
    """How many candidates to draw to keep ``n_needed`` at acceptance rate ``acceptance``, with margin."""
    return max(minimum, math.ceil(1.25 * n_needed / max(acceptance, 1e-6)) + 16)
