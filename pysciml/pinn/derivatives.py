"""Derivatives of a network with respect to its inputs, batched over collocation points (``torch.func``).

Every helper takes ``f``, a callable from points ``x`` of shape ``(N, d)`` to values of shape ``(N,)`` or ``(N, 1)``
(or ``(N, m)`` with ``component=`` choosing one output), and returns one derivative per point. They are exact (up to
round-off: no finite differences), differentiable with respect to whatever ``f`` closes over (a network's parameters),
so they can sit inside a training loss, and they run on the dtype and device of ``x``.

How: ``f`` is wrapped as a function of one point, ``g(p) = f(p[None])[0]`` (a scalar), and ``torch.func.vmap`` maps
the derivative of ``g`` over the ``N`` points, so ``f`` must be composable with ``torch.func`` (the usual
``torch.nn`` layers are; in-place updates of captured tensors, ``.item()`` and data-dependent Python control flow
are not). Each point is evaluated on its own, so ``f`` need not be row-wise (no "sum trick").

Costs, with ``C`` the cost of evaluating ``f`` at the ``N`` points (rough operation counts, not measurements; the
measured ones are in the guide, docs/guide/pinn.md):

============================  =========================================================  ==========================
helper                        method                                                     cost (time)
============================  =========================================================  ==========================
``gradient``                  reverse mode (``grad``)                                   ~3 C
``jacobian``                  reverse mode, one pass per output (``jacrev``)             ~3 m C
``divergence``                forward mode, one JVP per input direction (``jacfwd``)     ~3 d C
``hvp``                       forward-over-reverse (``jvp`` of ``grad``)                 ~8 C
``hessian``                   forward-over-reverse, one HVP per direction               ~8 d C
``laplacian`` trace           trace of the forward-over-reverse Hessian, one vmapped
                              HVP per basis vector (no Python loop over ``d``)           ~8 d C
``laplacian`` forward         value, Jacobian, Laplacian pushed through an MLP's layers  ~3 d C
``laplacian`` hutchinson      ``samples`` Rademacher HVPs ``v^T H v``, averaged          ~8 samples C
``partial`` of order ``k``    ``k`` nested forward-mode JVPs along basis vectors         ~3^k C
============================  =========================================================  ==========================

Memory follows time for the vmapped helpers: the exact Laplacian and Hessian hold ``d`` tangents per point at once
(``chunk_size=`` bounds that). ``laplacian(method="exact")`` takes the forward path for an ``nn.Sequential`` of
``nn.Linear`` layers and elementwise activations, the trace otherwise. The Hutchinson Laplacian is unbiased, with
variance ``2 sum_{i != j} H_ij^2 / samples`` per point; it pays when ``samples << d`` (``d >= 100``, say) and the
noise is acceptable in a loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.func import grad, jacfwd, jacrev, jvp, vmap

from ..errors import InputError
from .forward_laplacian import forward_laplacian, supported_layers

__all__ = ["divergence", "gradient", "hessian", "hvp", "jacobian", "laplacian", "partial", "quadratic_forms",
           "rademacher"]

Fn = Callable[[torch.Tensor], torch.Tensor]


def _check_points(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape (N, d), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"{name} must have shape (N, d) (one point per row), got {tuple(x.shape)}; "
                         "reshape a single point p to p[None]")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert with x.double()")


def _check_fn(f: object, name: str = "f") -> None:
    if not callable(f):
        raise InputError(f"{name} must be callable (a network or function of points (N, d)), got {type(f).__name__}")


def _pointwise(f: Fn, component: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``g(p)``: ``f`` at the one point ``p`` (shape ``(d,)``), as a 0-d tensor (output ``component`` if given)."""

    def g(p: torch.Tensor) -> torch.Tensor:
        out = f(p.unsqueeze(0))
        if not isinstance(out, torch.Tensor):
            raise InputError(f"f must return a torch.Tensor, got {type(out).__name__}")
        if out.ndim == 1 and out.shape[0] == 1:
            m, out = 1, out.reshape(1)
        elif out.ndim == 2 and out.shape[0] == 1:
            m, out = out.shape[1], out[0]
        else:
            raise InputError(f"f must map points of shape (N, d) to values of shape (N,), (N, 1) or (N, m); at one "
                             f"point (input (1, d)) it returned shape {tuple(out.shape)}")
        if component is None:
            if m != 1:
                raise InputError(f"f returns {m} outputs per point: pass component=i (0 <= i < {m}) to choose one")
            return out[0]
        if not 0 <= component < m:
            raise InputError(f"component={component} is out of range: f returns {m} output(s) per point")
        return out[component]

    return g


def _check_component(component: object) -> None:
    if component is not None and (isinstance(component, bool) or not isinstance(component, int)):
        raise InputError(f"component must be None or an int index of f's outputs, got {component!r}")


def _prepare(f: Fn, x: torch.Tensor, component: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    _check_fn(f)
    _check_points(x)
    _check_component(component)
    return _pointwise(f, component)


def _hvp_point(g: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(p, v) -> H(p) v`` by forward-over-reverse: the JVP of ``grad g`` along ``v``."""

    def hv(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return jvp(grad(g), (p,), (v,))[1]

    return hv


def _quadratic_point(g: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(p, v) -> v^T H(p) v`` (one forward-over-reverse HVP and a dot product)."""
    hv = _hvp_point(g)

    def quad(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (hv(p, v) * v).sum()

    return quad


def _check_chunk(chunk_size: object) -> None:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise InputError(f"chunk_size must be None or a positive int, got {chunk_size!r}")


def _over_directions(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, V: torch.Tensor,
                     chunk_size: int | None) -> torch.Tensor:
    """``fn(x_n, v)`` for every point and every direction: ``V`` is ``(K, d)`` (the same for all points) or
    ``(N, K, d)``; the result is ``(N, K, ...)``. One vmapped call over points and directions, or one per
    ``chunk_size`` directions (a Python loop over ``K / chunk_size`` chunks, bounding memory)."""
    per_point = V.ndim == 3
    K = V.shape[-2]
    size = K if chunk_size is None else min(chunk_size, K)

    def directions(p: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        return vmap(lambda v: fn(p, v))(vs)

    outs = [vmap(directions, in_dims=(0, 0 if per_point else None))(x, V[..., s:s + size, :])
            for s in range(0, K, size)]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


def gradient(f: Fn, x: torch.Tensor, *, component: int | None = None) -> torch.Tensor:
    """The gradient of ``f`` with respect to its input at each point.

    Args:
        f: callable from ``(N, d)`` points to ``(N,)`` or ``(N, 1)`` values (or ``(N, m)`` with ``component``).
        x: points, shape ``(N, d)``, floating dtype, any device.
        component: which output of ``f`` to differentiate when it returns ``m > 1`` values per point.

    Returns:
        ``(N, d)`` tensor, row ``n`` = grad f(x_n), same dtype and device as ``x``.

    Raises:
        InputError: ``x`` not a floating ``(N, d)`` tensor, ``f``'s output not of a supported shape, or
            ``component`` missing or out of range.
    """
    g = _prepare(f, x, component)
    return vmap(grad(g))(x)


def jacobian(f: Fn, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian of a vector-valued ``f`` at each point (reverse mode, one pass per output).

    Args:
        f: callable from ``(N, d)`` points to ``(N, m)`` values (or ``(N,)``, read as ``m = 1``).
        x: points, shape ``(N, d)``, floating dtype.

    Returns:
        ``(N, m, d)`` tensor with ``[n, i, j] = d f_i / d x_j`` at ``x_n``.
    """
    _check_fn(f)
    _check_points(x)

    def vec(p: torch.Tensor) -> torch.Tensor:
        out = f(p.unsqueeze(0))
        if not isinstance(out, torch.Tensor) or out.ndim not in (1, 2) or out.shape[0] != 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(f"f must map points (N, d) to values (N,) or (N, m); at one point it returned {shape}")
        return out.reshape(-1)

    return vmap(jacrev(vec))(x)


def divergence(F: Fn, x: torch.Tensor) -> torch.Tensor:
    """The divergence ``sum_i d F_i / d x_i`` of a vector field at each point.

    Args:
        F: callable from ``(N, d)`` points to ``(N, d)`` vectors (as many outputs as inputs).
        x: points, shape ``(N, d)``, floating dtype.

    Returns:
        ``(N,)`` tensor.

    Raises:
        InputError: ``F`` does not return ``(N, d)`` for ``(N, d)`` input.
    """
    _check_fn(F, "F")
    _check_points(x)
    d = x.shape[1]

    def vec(p: torch.Tensor) -> torch.Tensor:
        out = F(p.unsqueeze(0))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, d):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(f"F must map points (N, {d}) to vectors (N, {d}) for a divergence; at one point it "
                             f"returned {shape}")
        return out[0]

    return vmap(jacfwd(vec))(x).diagonal(dim1=-2, dim2=-1).sum(-1)


def hvp(f: Fn, x: torch.Tensor, v: torch.Tensor, *, component: int | None = None) -> torch.Tensor:
    """Hessian-vector products ``H f(x_n) v_n`` (forward-over-reverse; the Hessian is never formed).

    Args:
        f: callable from ``(N, d)`` points to ``(N,)`` or ``(N, 1)`` values (``(N, m)`` with ``component``).
        x: points, shape ``(N, d)``.
        v: directions, shape ``(N, d)`` (one per point) or ``(d,)`` (the same for all), dtype of ``x``.
        component: output of ``f`` to use when it returns several.

    Returns:
        ``(N, d)`` tensor.
    """
    g = _prepare(f, x, component)
    if not isinstance(v, torch.Tensor) or v.shape not in (x.shape, x.shape[1:]):
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise InputError(f"v must have shape (N, d) = {tuple(x.shape)} or (d,) = ({x.shape[1]},), got {shape}")
    v = v.to(dtype=x.dtype, device=x.device)
    return vmap(_hvp_point(g), in_dims=(0, 0 if v.ndim == 2 else None))(x, v)


def hessian(f: Fn, x: torch.Tensor, *, component: int | None = None, chunk_size: int | None = None) -> torch.Tensor:
    """The Hessian of ``f`` with respect to its input at each point (forward-over-reverse).

    Args:
        f: callable from ``(N, d)`` points to ``(N,)`` or ``(N, 1)`` values (``(N, m)`` with ``component``).
        x: points, shape ``(N, d)``.
        component: output of ``f`` to use when it returns several.
        chunk_size: at most this many basis directions at once (bounds memory for large ``d``); ``None``: all.

    Returns:
        ``(N, d, d)`` tensor (symmetric up to round-off).
    """
    g = _prepare(f, x, component)
    _check_chunk(chunk_size)
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return _over_directions(_hvp_point(g), x, eye, chunk_size)


def laplacian(f: Fn, x: torch.Tensor, *, method: str = "exact", samples: int = 64,
              generator: torch.Generator | None = None, component: int | None = None,
              chunk_size: int | None = None) -> torch.Tensor:
    """The Laplacian ``sum_i d^2 f / d x_i^2`` at each point, exact or by Hutchinson's estimator.

    Methods:

    * ``"trace"``: the trace of the Hessian, ``e_i^T H e_i`` for every basis vector ``e_i`` with the HVPs vmapped
      over the basis (forward-over-reverse, no Python loop over ``d``); any ``f``; cost ~``8 d`` evaluations of f.
    * ``"forward"``: the forward Laplacian of :mod:`~pysciml.pinn.forward_laplacian`, for ``f`` an
      ``nn.Sequential`` of ``nn.Linear`` and elementwise activations (``Tanh``, ``SiLU``, ``GELU``, ...): value,
      Jacobian and Laplacian pushed through the layers in one pass, about 3x faster than ``"trace"``.
    * ``"exact"`` (default): ``"forward"`` where it applies (and ``chunk_size`` is ``None``), else ``"trace"``;
      both give the same numbers up to round-off.
    * ``"hutchinson"``: the mean of ``v^T H v`` over ``samples`` Rademacher vectors ``v`` drawn independently for
      every point: unbiased, variance ``2 sum_{i != j} H_ij^2 / samples``, cost ~``8 samples`` evaluations; for high
      dimensions (``d >= 100``) where ``samples << d``.

    Args:
        f: callable from ``(N, d)`` points to ``(N,)`` or ``(N, 1)`` values (``(N, m)`` with ``component``).
        x: points, shape ``(N, d)``.
        method: ``"exact"``, ``"trace"``, ``"forward"`` or ``"hutchinson"``.
        samples: number of Rademacher probes per point (Hutchinson only).
        generator: ``torch.Generator`` for the probes (Hutchinson only; a CPU one gives the same probes for
            points on any device); ``None``: torch's global generator.
        component: output of ``f`` to use when it returns several.
        chunk_size: at most this many directions at once per point (bounds memory; ``"trace"`` and
            ``"hutchinson"``); ``None``: all.

    Returns:
        ``(N,)`` tensor, dtype and device of ``x``.

    Raises:
        InputError: unknown ``method``, ``"forward"`` for an unsupported ``f``, ``samples`` not a positive int, or
            the checks of :func:`gradient`.
    """
    g = _prepare(f, x, component)
    _check_chunk(chunk_size)
    if method in ("exact", "forward"):
        layers = supported_layers(f)
        if layers is not None and (method == "forward" or chunk_size is None):
            return _pick_output(*forward_laplacian(layers, x), component)
        if method == "forward":
            raise InputError("method='forward' needs f to be an nn.Sequential of nn.Linear layers and elementwise "
                             "activations (pysciml.pinn.forward_laplacian.ELEMENTWISE); use method='exact'")
        method = "trace"
    if method == "trace":
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        return _over_directions(_quadratic_point(g), x, eye, chunk_size).sum(dim=1)
    if method == "hutchinson":
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InputError(f"samples must be a positive int (Rademacher probes per point), got {samples!r}")
        probes = rademacher((x.shape[0], samples, x.shape[1]), x, generator)
        return quadratic_forms(f, x, probes, component=component, chunk_size=chunk_size).mean(dim=1)
    raise InputError(f"method must be 'exact', 'trace', 'forward' or 'hutchinson', got {method!r}")


def _pick_output(values: torch.Tensor, laplacians: torch.Tensor, component: int | None) -> torch.Tensor:
    """The Laplacian of output ``component`` (the only one when ``None``) from ``(N, m)`` tensors."""
    m = values.shape[1]
    if component is None:
        if m != 1:
            raise InputError(f"f returns {m} outputs per point: pass component=i (0 <= i < {m}) to choose one")
        return laplacians[:, 0]
    if not 0 <= component < m:
        raise InputError(f"component={component} is out of range: f returns {m} output(s) per point")
    return laplacians[:, component]


def rademacher(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Independent +-1 entries with equal probability, dtype and device of ``like`` (drawn on the generator's
    device, so a CPU generator gives the same probes for CPU and GPU points)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    device = like.device if generator is None else generator.device
    bits = torch.randint(0, 2, tuple(shape), generator=generator, device=device)
    return (2 * bits - 1).to(dtype=like.dtype, device=like.device)


def quadratic_forms(f: Fn, x: torch.Tensor, v: torch.Tensor, *, component: int | None = None,
                    chunk_size: int | None = None) -> torch.Tensor:
    """``v_ns^T H f(x_n) v_ns`` for ``S`` directions per point (the terms of Hutchinson's estimator).

    Args:
        f: as for :func:`laplacian`.
        x: points, shape ``(N, d)``.
        v: directions, shape ``(N, S, d)``.

    Returns:
        ``(N, S)`` tensor; its mean over ``S`` estimates the Laplacian when ``v`` has independent Rademacher
        (or standard normal) entries.
    """
    g = _prepare(f, x, component)
    _check_chunk(chunk_size)
    if not isinstance(v, torch.Tensor) or v.ndim != 3 or v.shape[0] != x.shape[0] or v.shape[2] != x.shape[1]:
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise InputError(f"v must have shape (N, S, d) with (N, d) = {tuple(x.shape)}, got {shape}")
    return _over_directions(_quadratic_point(g), x, v.to(dtype=x.dtype, device=x.device), chunk_size)


def partial(f: Fn, x: torch.Tensor, index: Sequence[int], *, component: int | None = None) -> torch.Tensor:
    """A partial derivative of any order: ``index = (0, 0, 1)`` gives ``d^3 f / (d x_0 d x_0 d x_1)``.

    Computed by nesting one forward-mode JVP along the basis vector ``e_i`` per entry of ``index`` (cost ~``3^k``
    evaluations of ``f`` for order ``k``); the order of the entries does not matter for smooth ``f``.

    Args:
        f: callable from ``(N, d)`` points to ``(N,)`` or ``(N, 1)`` values (``(N, m)`` with ``component``).
        x: points, shape ``(N, d)``.
        index: input indices, each in ``[0, d)``; an empty tuple returns ``f`` itself.
        component: output of ``f`` to use when it returns several.

    Returns:
        ``(N,)`` tensor.

    Raises:
        InputError: ``index`` not a sequence of ints in ``[0, d)``, or the checks of :func:`gradient`.
    """
    g = _prepare(f, x, component)
    d = x.shape[1]
    if isinstance(index, int) or not isinstance(index, Sequence):
        raise InputError(f"index must be a tuple of input indices, e.g. (0, 0, 1) for d3f/dx0dx0dx1, got {index!r}; "
                         "a first derivative is (i,)")
    for i in index:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < d:
            raise InputError(f"index entries must be ints in [0, {d}) (the input dimension), got {tuple(index)!r}")
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    h = g
    for i in index:
        h = _directional(h, eye[i])
    return vmap(h)(x)


def _directional(h: Callable[[torch.Tensor], torch.Tensor], e: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def dh(p: torch.Tensor) -> torch.Tensor:
        return jvp(h, (p,), (e,))[1]

    return dh
