"""Sparse Jacobians: patterns, column colouring, compressed Jacobians, pattern detection.

A pattern is held as a SciPy ``csr_array`` of booleans ``(n, n)``; a Jacobian on it as its nonzero values
``(B, nnz)`` in the pattern's CSR order (``rows``, ``cols``). Columns that share no row (structurally orthogonal)
get the same colour (:func:`column_coloring`: ``networkx.greedy_color`` on the column intersection graph, the
pattern of ``A^T A``), so one Jacobian-vector product per colour recovers every entry (Curtis, Powell & Reid
1974; Coleman & More 1983): :func:`decompress`. SciPy and networkx are imported inside the functions that use
them (``pip install pysciml[sparse]``), so ``import pysciml`` needs neither.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..problem import call_f, takes_params

Tensor = torch.Tensor

__all__ = ["Structure", "as_pattern", "column_coloring", "decompress", "max_row_count", "seeds",
           "sparsity_pattern", "structure_of", "torch_sparse_entries"]

_COLORINGS: dict[tuple[bytes, str], tuple[np.ndarray, int]] = {}  # (pattern digest, strategy) -> colouring


def _scipy_sparse() -> Any:
    try:
        import scipy.sparse as sp
    except ImportError as exc:  # pragma: no cover - scipy is in every extra that uses this
        raise InputError("sparse Jacobians need SciPy: pip install pysciml[sparse]") from exc
    return sp


def as_pattern(proto: Any, n: int, name: str = "jac_prototype") -> Any:
    """The boolean ``csr_array (n, n)`` of ``proto``: a scipy.sparse matrix or array (its stored entries, zeros
    included: SciPy's convention for ``jac_sparsity``), a torch sparse tensor (COO/CSR/CSC/BSR: its stored
    entries), a dense torch tensor or numpy array (its nonzeros; a boolean mask). The diagonal is not added."""
    sp = _scipy_sparse()
    if sp.issparse(proto):
        m = sp.csr_array(proto)
        m = sp.csr_array((np.ones(m.nnz, dtype=bool), m.indices, m.indptr), shape=m.shape)
    elif isinstance(proto, Tensor):
        if proto.layout != torch.strided:
            rows, cols, _ = torch_sparse_entries(proto, n, name)
            m = sp.csr_array((np.ones(rows.size, dtype=bool), (rows, cols)), shape=tuple(proto.shape))
        else:
            m = sp.csr_array(proto.detach().cpu().numpy() != 0)
    elif isinstance(proto, np.ndarray):
        m = sp.csr_array(proto != 0)
    else:
        raise InputError(f"{name} must be a scipy.sparse matrix, a torch sparse tensor or a boolean (n, n) mask, "
                         f"got {type(proto).__name__}")
    if m.shape != (n, n):
        raise InputError(f"{name} must have shape ({n}, {n}) for a state of {n} values, got {m.shape}")
    m.sum_duplicates()
    m.sort_indices()
    return m


def torch_sparse_entries(J: Tensor, n: int, name: str = "jac") -> tuple[np.ndarray, np.ndarray, Tensor]:
    """``(rows, cols, values)`` of a 2-D torch sparse tensor, in CSR (row-major) order; ``values`` keeps the
    tensor's autograd graph."""
    if J.ndim != 2 or tuple(J.shape) != (n, n):
        raise InputError(f"{name} must be a sparse ({n}, {n}) tensor for a state of {n} values, got shape "
                         f"{tuple(J.shape)} (batched problems: return a dense (B, n, n) Jacobian)")
    if J.layout == torch.sparse_csr:
        crow, col = J.crow_indices(), J.col_indices()
        rows = np.repeat(np.arange(n), np.diff(crow.cpu().numpy()))
        return rows, col.cpu().numpy(), J.values()
    coo = (J if J.layout == torch.sparse_coo else J.to_sparse_coo()).coalesce()  # coalesce: row-major order
    idx = coo.indices().cpu().numpy()
    return idx[0], idx[1], coo.values()


def max_row_count(pattern: Any) -> int:
    """The most nonzeros in one row: a lower bound on the number of colours of any column colouring."""
    return int(np.diff(pattern.indptr).max()) if pattern.nnz else 0


def column_coloring(pattern: Any, strategy: str = "largest_first") -> tuple[np.ndarray, int]:
    """Colours ``(n,)`` (int64) and their count: columns sharing a row get different colours.

    ``networkx.greedy_color`` with ``strategy`` on the column intersection graph (the off-diagonal pattern of
    ``A^T A``). Cached per pattern and strategy for the process (a solve per step size reuses it)."""
    key = (hashlib.blake2b(pattern.indptr.tobytes() + pattern.indices.tobytes(), digest_size=16).digest()
           + str(pattern.shape).encode(), strategy)
    hit = _COLORINGS.get(key)
    if hit is not None:
        return hit
    try:
        import networkx as nx
    except ImportError as exc:
        raise InputError("column colouring needs networkx: pip install pysciml[sparse]") from exc
    sp = _scipy_sparse()
    n = pattern.shape[1]
    a = sp.csr_array((np.ones(pattern.nnz, dtype=np.int8), pattern.indices, pattern.indptr), shape=pattern.shape)
    gram = sp.coo_array(a.T @ a)
    off = gram.row < gram.col
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(gram.row[off].tolist(), gram.col[off].tolist(), strict=True))
    found = nx.greedy_color(graph, strategy=strategy)
    colors = np.fromiter((found[j] for j in range(n)), dtype=np.int64, count=n)
    out = (colors, int(colors.max()) + 1 if n else 0)
    _COLORINGS[key] = out
    return out


@dataclass(frozen=True)
class Structure:
    """A Jacobian's pattern in the engine: CSR-ordered ``rows``, ``cols`` (int64 numpy) and, for compressed
    evaluation, the column ``colors`` and their count."""

    n: int
    rows: np.ndarray
    cols: np.ndarray
    colors: np.ndarray | None = None
    ncolors: int = 0

    @property
    def nnz(self) -> int:
        return int(self.rows.size)


def structure_of(pattern: Any, colour: bool = True) -> Structure:
    """:class:`Structure` of a boolean csr pattern, coloured unless ``colour=False``."""
    rows = np.repeat(np.arange(pattern.shape[0], dtype=np.int64), np.diff(pattern.indptr))
    cols = pattern.indices.astype(np.int64)
    if not colour:
        return Structure(pattern.shape[0], rows, cols)
    colors, k = column_coloring(pattern)
    return Structure(pattern.shape[0], rows, cols, colors, k)


def seeds(s: Structure, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """The ``(ncolors, n)`` seed matrix: row ``c`` is the indicator of the columns of colour ``c``."""
    assert s.colors is not None
    out = torch.zeros(s.ncolors, s.n, dtype=dtype, device=device)
    out[torch.as_tensor(s.colors, device=device), torch.arange(s.n, device=device)] = 1.0
    return out


def decompress(products: Tensor, s: Structure) -> Tensor:
    """Jacobian values ``(B, nnz)`` from the compressed products ``(ncolors, B, n)`` (``J`` times each seed):
    entry ``(i, j)`` is row ``i`` of the product of ``j``'s colour (no other column of that colour touches row
    ``i``). Differentiable (indexing)."""
    assert s.colors is not None
    device = products.device
    color_of = torch.as_tensor(s.colors[s.cols], device=device)
    rows = torch.as_tensor(s.rows, device=device)
    return products[color_of, :, rows].T


def _jacobian_columns(fn: Callable[[Tensor], Tensor], u: Tensor, cols: Tensor) -> Tensor:
    """``J[:, cols]`` as ``(len(cols), n)`` by vmapped forward-mode JVPs on the unit vectors."""
    basis = torch.zeros(cols.numel(), u.numel(), dtype=u.dtype, device=u.device)
    basis[torch.arange(cols.numel(), device=u.device), cols] = 1.0
    return torch.func.vmap(lambda v: torch.func.jvp(fn, (u,), (v,))[1])(basis)


def sparsity_pattern(
    f: Callable[..., Tensor],
    u0: Tensor,
    p: Any = None,
    *,
    t: float = 0.0,
    probes: int = 2,
    scale: float = 0.1,
    checks: int = 2,
    chunk: int = 256,
    seed: int = 0,
) -> Any:
    """Detect the sparsity pattern of ``df/du`` from Jacobians at random points near ``u0``.

    At each of ``probes`` points ``u0 + scale (1 + |u0|) z`` (``z`` standard normal, seeded) the Jacobian's
    columns are taken by forward-mode autodiff, ``chunk`` unit-vector JVPs at a time (``n`` JVPs per point,
    ``chunk * n`` values of memory); the pattern is the union of their nonzeros. Then ``checks`` random dense
    probes ``v`` at another random point compare ``J v`` (one JVP) with the product of the Jacobian recovered
    on the detected pattern by colouring; a mismatch means an entry was missed and raises
    :class:`~pysciml.InputError`.

    What it can miss: an entry that is zero at every probe point while not identically zero (a branch such as
    ``relu``/``max``/``where`` inactive near ``u0``, or a derivative vanishing on a set that contains every
    probe); for smooth ``f`` an accidental zero at a random point has probability zero, and the dense-probe
    check catches misses unless ``J v`` cancels by chance. Structural zeros are therefore certain only up to
    that cancellation probability. It never adds entries that are zero everywhere.

    Args:
        f: ``f(t, u, p)`` or ``f(t, u)`` on an unbatched state shaped like ``u0``.
        u0: a state (any shape, floating); ``n = u0.numel()``.
        p: parameters for ``f``.
        t: the time at which ``f`` is evaluated.
        probes: random points whose Jacobians are united (at least 1).
        scale: relative size of the random perturbation of ``u0``.
        checks: random dense probes in the final check (0 skips it).
        chunk: unit vectors per vmapped JVP call.
        seed: seed of the random points and probes.

    Returns:
        A ``scipy.sparse.csr_array`` of booleans ``(n, n)``, usable as ``jac_prototype`` (and as SciPy's
        ``jac_sparsity``).
    """
    sp = _scipy_sparse()
    if not isinstance(u0, Tensor) or not u0.is_floating_point():
        raise InputError(f"u0 must be a floating torch.Tensor, got {type(u0).__name__}")
    if probes < 1 or chunk < 1 or checks < 0:
        raise InputError(f"probes and chunk must be >= 1 and checks >= 0, got {probes}, {chunk}, {checks}")
    takes_p = takes_params(f, "f", 2, "(t, u, p) or (t, u)")
    shape, n = u0.shape, u0.numel()
    tt = torch.tensor(t, dtype=u0.dtype, device=u0.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    base = u0.detach().reshape(-1)

    def fn(x: Tensor) -> Tensor:
        return call_f(f, takes_p, p, tt, x.reshape(shape)).reshape(-1)

    def point() -> Tensor:
        z = torch.randn(n, generator=gen, dtype=u0.dtype).to(u0.device)
        return base + scale * (1.0 + base.abs()) * z

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    with torch.no_grad():
        for _ in range(probes):
            x = point()
            for start in range(0, n, chunk):
                js = torch.arange(start, min(start + chunk, n), device=u0.device)
                block = _jacobian_columns(fn, x, js)  # (k, n): block[c] = column js[c]
                c_idx, r_idx = torch.nonzero(block, as_tuple=True)
                rows.append(r_idx.cpu().numpy())
                cols.append(js[c_idx].cpu().numpy())
        r, c = np.concatenate(rows), np.concatenate(cols)
        pattern = sp.csr_array((np.ones(r.size, dtype=bool), (r, c)), shape=(n, n))
        pattern.sum_duplicates()
        pattern.sort_indices()
        if checks:
            _check_pattern(fn, point(), pattern, checks, gen)
    return pattern


def _check_pattern(fn: Callable[[Tensor], Tensor], x: Tensor, pattern: Any, checks: int,
                   gen: torch.Generator) -> None:
    """Compare ``J v`` with the colour-recovered Jacobian on ``pattern`` times ``v`` for random dense ``v``."""
    s = structure_of(pattern)
    n = s.n
    vals = torch.zeros(0, dtype=x.dtype, device=x.device)
    if s.ncolors:
        prods = torch.func.vmap(lambda v: torch.func.jvp(fn, (x,), (v,))[1])(seeds(s, x.dtype, x.device))
        vals = decompress(prods[:, None, :], s)[0]
    rows = torch.as_tensor(s.rows, device=x.device)
    cols = torch.as_tensor(s.cols, device=x.device)
    eps = torch.finfo(x.dtype).eps
    for _ in range(checks):
        v = torch.randn(n, generator=gen, dtype=x.dtype).to(x.device)
        exact = torch.func.jvp(fn, (x,), (v,))[1]
        approx = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, rows, vals * v[cols])
        scale = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, rows, (vals * v[cols]).abs())
        bad = (exact - approx).abs() > 1e3 * eps * (scale + exact.abs()) + torch.finfo(x.dtype).tiny
        if bool(bad.any()):
            which = torch.nonzero(bad).reshape(-1)[:5].tolist()
            raise InputError(
                f"sparsity_pattern: a random dense probe disagrees with the detected pattern in rows {which}: an "
                "entry was zero at every probe point but not here (a branch such as relu/max/where); raise "
                "probes or scale, or give the pattern yourself")
