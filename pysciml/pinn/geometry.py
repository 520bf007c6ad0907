"""Domains for collocation: boxes, balls (disks) and their unions, differences and intersections.

Every domain is described by a signed distance ``s(x)``: negative inside, zero on the boundary, positive outside.
For :class:`Box` and :class:`Ball` it is the exact Euclidean signed distance. Set operations compose it the usual
way (constructive solid geometry): ``a | b`` is ``min(s_a, s_b)``, ``a & b`` is ``max(s_a, s_b)`` and ``a - b`` is
``max(s_a, -s_b)``. The composed function has the right sign and the right zero set (the boundary of the result),
but its magnitude is only a bound on the distance near corners and inside holes. The outward normal is the
gradient of ``s``: the normal of the piece of boundary the point lies on (on a hole's boundary, ``a - b``, the
normal of ``b`` flipped, pointing into the hole).

Sampling:

* inside a :class:`Box` or :class:`Ball`: a map of unit-cube points (any method of
  :func:`~pysciml.pinn.sampling.qmc_points`), so every point is accepted;
* inside a set operation: rejection from the bounding box. The acceptance rate is the volume fraction of the
  domain in its box (``pi/4`` for a disk, 0.5 for the square minus four disks of radius 0.2 ... and
  ``pi^(d/2) / (2^d Gamma(d/2 + 1))`` for a ``d``-ball, 0.25% at ``d = 10``): batches are oversampled by the
  rate observed so far, and a domain that keeps rejecting everything raises :class:`~pysciml.errors.InputError`.
  Quasi-random points thinned by rejection keep most, not all, of their evenness;
* on a :class:`Box` boundary: faces chosen in proportion to their areas; on a :class:`Ball` boundary: normalised
  Gaussian vectors (Gaussians from the unit-cube points by the inverse normal CDF);
* on the boundary of a set operation: each primitive's boundary sampled in proportion to its measure, keeping the
  points on the boundary of the result, then a seeded random subset of the requested size (uniform on the result's
  boundary).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..errors import InputError
from .sampling import PointStream, check_count, check_dtype, check_method, check_seed, oversampled

__all__ = ["Ball", "Box", "Difference", "Disk", "Domain", "Intersection", "Interval", "Union"]

_MAX_CANDIDATES = 1_000_000  # rejection sampling gives up (InputError) after this many candidates without success
_MAX_BATCH = 2**20  # candidates per rejection round
Device = torch.device | str | None


def _seed(seed: int, *stream: int) -> int:
    """A seed for a sub-stream, derived from the user's seed (independent streams for different ``stream``)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint32)[0])


def _vector(value: object, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(f"{name} must be a sequence of numbers, got {value!r}") from err
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1 or t.numel() == 0:
        raise InputError(f"{name} must be a 1-D sequence of coordinates, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{name} must be finite, got {t.tolist()}")
    return t.clone()


class Domain(ABC):
    """A closed region of ``R^d``: the common interface of boxes, balls and their set operations.

    Subclasses provide the signed distance, the outward normal, the bounding box and the primitive samplers;
    everything else (membership, boundary tests, rejection sampling, volume estimates, ``|``, ``-``, ``&``) is here.
    """

    dim: int
    """The dimension ``d`` of the space."""

    # ---- what each kind of domain defines -------------------------------------------------------------------
    @abstractmethod
    def _sdf(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distance at validated points ``(N, d)`` -> ``(N,)``."""

    @abstractmethod
    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        """Gradient of the signed distance (outward unit normal on the boundary) ``(N, d)`` -> ``(N, d)``."""

    @abstractmethod
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The bounding box ``(low, high)``, two float64 tensors of shape ``(d,)`` on the CPU."""

    @abstractmethod
    def primitives(self) -> list[Primitive]:
        """The boxes and balls this domain is built from, in a fixed order."""

    def volume(self, *, n: int = 2**18, seed: int = 0) -> float:
        """The ``d``-dimensional volume: exact for boxes and balls, else a Monte Carlo estimate.

        Args:
            n: number of uniform points in the bounding box for the estimate (standard error
                ``sqrt(p (1 - p) / n)`` of the volume fraction ``p``: under 0.1% of the box volume at the default).
            seed: seed of the estimate.
        """
        n, seed = check_count(n), check_seed(seed)
        low, high = self.bounds()
        u = PointStream(self.dim, "uniform", seed).draw(n)
        inside = self._sdf(low + (high - low) * u) <= 0
        return float(inside.double().mean()) * float(torch.prod(high - low))

    # ---- membership and boundary ------------------------------------------------------------------------------
    def _points(self, x: object, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{name} must be a tensor of points with shape (N, {self.dim}), got {shape}")
        if not x.is_floating_point():
            raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        return x

    def default_tol(self, dtype: torch.dtype) -> float:
        """The default boundary tolerance: ``1000 eps(dtype)`` times the domain's scale (at least 1)."""
        low, high = self.bounds()
        scale = max(1.0, float(torch.maximum(low.abs(), high.abs()).max()))
        return 1000.0 * torch.finfo(dtype).eps * scale

    def _tol(self, tol: float | None, dtype: torch.dtype) -> float:
        if tol is None:
            return self.default_tol(dtype)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise InputError(f"tol must be a non-negative number (or None for the default), got {tol!r}")
        return float(tol)

    def signed_distance(self, x: torch.Tensor) -> torch.Tensor:
        """The signed distance (negative inside), differentiable in ``x``; see the module docstring for set
        operations (right sign and zero set; magnitude a bound near corners).

        Args:
            x: points ``(N, d)``, floating dtype, any device.

        Returns:
            ``(N,)`` tensor, dtype and device of ``x``.
        """
        return self._sdf(self._points(x))

    def contains(self, x: torch.Tensor, *, tol: float = 0.0) -> torch.Tensor:
        """Whether each point lies in the closed domain (boundary included, within ``tol``).

        Args:
            x: points ``(N, d)``.
            tol: slack added outside the boundary.

        Returns:
            ``(N,)`` bool tensor on ``x``'s device.
        """
        return self.signed_distance(x) <= self._tol(tol, x.dtype)

    def on_boundary(self, x: torch.Tensor, tol: float | None = None) -> torch.Tensor:
        """Whether each point lies on the boundary: ``|signed_distance(x)| <= tol``.

        Args:
            x: points ``(N, d)``.
            tol: absolute tolerance; ``None``: :meth:`default_tol` for ``x``'s dtype.

        Returns:
            ``(N,)`` bool tensor.
        """
        return self.signed_distance(x).abs() <= self._tol(tol, x.dtype)

    def boundary_normal(self, x: torch.Tensor, *, tol: float | None = None) -> torch.Tensor:
        """Outward unit normals at boundary points (at a hole's boundary: pointing into the hole).

        At an edge or corner (several pieces meet) the normal of one of them is returned.

        Args:
            x: points on the boundary ``(N, d)``.
            tol: how far from the boundary a point may be (see :meth:`on_boundary`); ``math.inf`` skips the check
                and returns the gradient of the signed distance anywhere.

        Returns:
            ``(N, d)`` tensor of unit vectors, dtype and device of ``x``.

        Raises:
            InputError: a point farther than ``tol`` from the boundary.
        """
        x = self._points(x)
        off = ~self.on_boundary(x, tol)
        if bool(off.any()):
            i = int(off.nonzero()[0, 0])
            raise InputError(f"boundary_normal needs points on the boundary; x[{i}] = {x[i].tolist()} is at signed "
                             f"distance {float(self._sdf(x[i:i + 1])[0]):.3g}; sample with sample_boundary or pass "
                             "a larger tol")
        return self._normal(x)

    # ---- sampling -------------------------------------------------------------------------------------------
    def sample_interior(self, n: int, *, method: str = "uniform", seed: int = 0, dtype: torch.dtype = torch.float64,
                        device: Device = None) -> torch.Tensor:
        """``n`` points inside the domain.

        Args:
            n: number of points.
            method: ``"uniform"``/``"pseudo"``, ``"lhs"``, ``"sobol"`` or ``"halton"`` (see
                :func:`~pysciml.pinn.sampling.qmc_points`).
            seed: non-negative int; the same seed gives the same points.
            dtype: floating dtype of the points.
            device: device of the points.

        Returns:
            ``(n, d)`` tensor.

        Raises:
            InputError: bad arguments, or a domain whose volume is (nearly) zero in its bounding box.
        """
        n, method, seed, dtype = check_count(n), check_method(method), check_seed(seed), check_dtype(dtype)
        x = self._interior(n, method, seed)
        return x.to(dtype=dtype, device=device)

    def _interior(self, n: int, method: str, seed: int) -> torch.Tensor:
        """Rejection from the bounding box (float64, CPU); primitives override with a direct map."""
        low, high = self.bounds()
        stream = PointStream(self.dim, method, seed)

        def accepted(m: int) -> torch.Tensor:
            x = low + (high - low) * stream.draw(m)
            return x[self._sdf(x) < 0]

        return _collect(n, accepted, f"{self!r} has no interior points among the candidates in its bounding box: it "
                        "is empty or much smaller than its box; check the set operation")[:n]

    def sample_boundary(self, n: int, *, method: str = "uniform", seed: int = 0, dtype: torch.dtype = torch.float64,
                        device: Device = None) -> torch.Tensor:
        """``n`` points on the boundary, uniform with respect to its surface measure.

        Args:
            n: number of points.
            method: ``"uniform"``/``"pseudo"``, ``"lhs"``, ``"sobol"`` or ``"halton"``.
            seed: non-negative int; the same seed gives the same points.
            dtype: floating dtype of the points.
            device: device of the points.

        Returns:
            ``(n, d)`` tensor (within :meth:`default_tol` of the boundary).
        """
        n, method, seed, dtype = check_count(n), check_method(method), check_seed(seed), check_dtype(dtype)
        return self._boundary(n, method, seed).to(dtype=dtype, device=device)

    def _boundary(self, n: int, method: str, seed: int) -> torch.Tensor:
        """Each primitive's boundary in proportion to its measure, kept where on this domain's boundary."""
        parts = self.primitives()
        measures = torch.tensor([p.boundary_measure() for p in parts], dtype=torch.float64)
        share = measures / measures.sum()
        streams = [PointStream(p.dim + p.extra_dims(boundary=True), method, _seed(seed, 1, k))
                   for k, p in enumerate(parts)]
        tol = self.default_tol(torch.float64)

        def accepted(m: int) -> torch.Tensor:
            found = []
            for part, stream, c in zip(parts, streams, _split(m, share), strict=True):
                if c:
                    x = part._boundary_map(stream.draw(c))
                    found.append(x[self._sdf(x).abs() <= tol])
            return torch.cat(found)

        x = _collect(n, accepted, f"{self!r}: no boundary points among the candidates; the domain looks empty")
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(_seed(seed, 2)))
        return x[order[:n]]

    # ---- set operations -------------------------------------------------------------------------------------
    def _operand(self, other: object, op: str) -> Domain:
        if not isinstance(other, Domain):
            return NotImplemented  # type: ignore[return-value]
        if other.dim != self.dim:
            raise InputError(f"cannot take {op} of domains of dimensions {self.dim} and {other.dim}")
        return other

    def __or__(self, other: Domain) -> Domain:
        other = self._operand(other, "the union")
        return other if other is NotImplemented else Union(self, other)

    def __sub__(self, other: Domain) -> Domain:
        other = self._operand(other, "the difference")
        return other if other is NotImplemented else Difference(self, other)

    def __and__(self, other: Domain) -> Domain:
        other = self._operand(other, "the intersection")
        return other if other is NotImplemented else Intersection(self, other)


def _collect(n: int, accepted: Callable[[int], torch.Tensor], empty: str) -> torch.Tensor:
    """Rejection sampling: rounds of ``accepted(m)`` (the points kept out of ``m`` candidates), each round
    oversampled by the acceptance rate seen so far, until at least ``n`` points are kept; ``InputError(empty)`` when
    nothing is kept among ``_MAX_CANDIDATES`` candidates (or too little among a hundred times more)."""
    kept: list[torch.Tensor] = []
    have, drawn, acceptance = 0, 0, 0.5
    while have < n:
        m = min(oversampled(n - have, acceptance), _MAX_BATCH)
        kept.append(accepted(m))
        have, drawn = have + kept[-1].shape[0], drawn + m
        acceptance = have / drawn
        if (have == 0 and drawn >= _MAX_CANDIDATES) or drawn >= 100 * _MAX_CANDIDATES:
            raise InputError(f"{empty} ({drawn} candidates drawn, {have} kept)")
    return torch.cat(kept)


def _split(m: int, share: torch.Tensor) -> list[int]:
    """``m`` split in proportion to ``share`` (largest remainders), so the parts sum to ``m``."""
    raw = share * m
    counts = torch.floor(raw).long()
    rest = m - int(counts.sum())
    if rest:
        counts[torch.argsort(raw - counts, descending=True)[:rest]] += 1
    return counts.tolist()


class Primitive(Domain):
    """A box or ball: exact signed distance and volume, sampled by mapping unit-cube points (no rejection)."""

    def primitives(self) -> list[Primitive]:
        return [self]

    @abstractmethod
    def boundary_measure(self) -> float:
        """The ``(d-1)``-dimensional measure of the boundary (number of end points when ``d = 1``)."""

    @abstractmethod
    def extra_dims(self, *, boundary: bool) -> int:
        """How many unit-cube coordinates beyond ``d`` one sample point uses."""

    @abstractmethod
    def _interior_map(self, u: torch.Tensor) -> torch.Tensor:
        """Unit-cube points ``(n, d + extra)`` -> uniform points inside."""

    @abstractmethod
    def _boundary_map(self, u: torch.Tensor) -> torch.Tensor:
        """Unit-cube points ``(n, d + extra)`` -> uniform points on the boundary."""

    def _interior(self, n: int, method: str, seed: int) -> torch.Tensor:
        return self._interior_map(PointStream(self.dim + self.extra_dims(boundary=False), method, seed).draw(n))

    def _boundary(self, n: int, method: str, seed: int) -> torch.Tensor:
        return self._boundary_map(PointStream(self.dim + self.extra_dims(boundary=True), method, seed).draw(n))


class Box(Primitive):
    """The axis-aligned box ``[low_0, high_0] x ... x [low_{d-1}, high_{d-1}]``.

    Args:
        low: lower corner, ``d`` numbers (a sequence or a 1-D tensor).
        high: upper corner, ``d`` numbers, each greater than the matching ``low``.

    Raises:
        InputError: different lengths, non-finite values or ``high <= low`` somewhere.
    """

    def __init__(self, low: Sequence[float] | torch.Tensor, high: Sequence[float] | torch.Tensor) -> None:
        self.low, self.high = _vector(low, "low"), _vector(high, "high")
        if self.low.shape != self.high.shape:
            raise InputError(f"low and high must have the same length, got {self.low.numel()} and {self.high.numel()}")
        if not bool((self.high > self.low).all()):
            raise InputError(f"high must exceed low in every coordinate, got low={self.low.tolist()}, "
                             f"high={self.high.tolist()}")
        self.dim = self.low.numel()

    def __repr__(self) -> str:
        return f"Box(low={self.low.tolist()}, high={self.high.tolist()})"

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.low.clone(), self.high.clone()

    def volume(self, *, n: int = 2**18, seed: int = 0) -> float:
        return float(torch.prod(self.high - self.low))

    def _centred(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.low.to(x), self.high.to(x)
        centre, half = (low + high) / 2, (high - low) / 2
        return x - centre, half

    def _sdf(self, x: torch.Tensor) -> torch.Tensor:
        r, half = self._centred(x)
        q = r.abs() - half
        outside = torch.linalg.vector_norm(q.clamp(min=0), dim=-1)
        inside = q.max(dim=-1).values.clamp(max=0)
        return outside + inside

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        r, half = self._centred(x)
        q = r.abs() - half
        sign = torch.where(r < 0, -1.0, 1.0).to(x)
        face = torch.nn.functional.one_hot(q.argmax(dim=-1), self.dim).to(x) * sign  # inside / on a face
        corner = q.clamp(min=0) * sign  # outside: towards the nearest point of the box
        norm = torch.linalg.vector_norm(corner, dim=-1, keepdim=True)
        return torch.where(norm > 0, corner / norm.clamp(min=torch.finfo(x.dtype).tiny), face)

    def face_measures(self) -> torch.Tensor:
        """Measure of each pair of opposite faces, ``(d,)``: ``prod_{j != i} (high_j - low_j)``."""
        length = self.high - self.low
        return torch.stack([torch.prod(torch.cat([length[:i], length[i + 1:]])) for i in range(self.dim)])

    def boundary_measure(self) -> float:
        return float(2 * self.face_measures().sum())

    def extra_dims(self, *, boundary: bool) -> int:
        return 0  # on the boundary, the first coordinate picks the face and the other d - 1 place the point

    def _interior_map(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * u

    def _boundary_map(self, u: torch.Tensor) -> torch.Tensor:
        faces = self.face_measures().repeat_interleave(2)  # (low_0, high_0, low_1, ...)
        cum = torch.cumsum(faces / faces.sum(), 0)
        k = torch.searchsorted(cum, u[:, 0].contiguous(), right=True).clamp(max=2 * self.dim - 1)
        axis, upper = k // 2, (k % 2).bool()
        x = torch.empty_like(u)
        for i in range(self.dim):  # on face `axis`, coordinate i != axis takes u[:, 1 + i] (i < axis) or u[:, i]
            free = u[:, i] if i + 1 == self.dim else torch.where(axis > i, u[:, i + 1], u[:, i])
            x[:, i] = torch.where(axis == i, torch.where(upper, self.high[i], self.low[i]),
                                  self.low[i] + (self.high[i] - self.low[i]) * free)
        return x


class Interval(Box):
    """The 1-D box ``[a, b]``."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__([a], [b])

    def __repr__(self) -> str:
        return f"Interval({float(self.low[0])}, {float(self.high[0])})"


class Ball(Primitive):
    """The closed ball ``|x - center| <= radius`` in any dimension (``d = 2``: a disk, ``d = 1``: an interval).

    Args:
        center: ``d`` numbers.
        radius: a positive number.

    Raises:
        InputError: non-finite values or a radius that is not positive.
    """

    def __init__(self, center: Sequence[float] | torch.Tensor, radius: float) -> None:
        self.center = _vector(center, "center")
        if isinstance(radius, torch.Tensor) and radius.numel() == 1:
            radius = float(radius.detach())
        if isinstance(radius, bool) or not isinstance(radius, (int, float, np.floating, np.integer)) \
                or not math.isfinite(radius) or radius <= 0:
            raise InputError(f"radius must be a positive finite number, got {radius!r}")
        self.radius = float(radius)
        self.dim = self.center.numel()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(center={self.center.tolist()}, radius={self.radius})"

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.center - self.radius, self.center + self.radius

    def volume(self, *, n: int = 2**18, seed: int = 0) -> float:
        d = self.dim
        return math.pi ** (d / 2) / math.gamma(d / 2 + 1) * self.radius**d

    def boundary_measure(self) -> float:
        d = self.dim
        return 2 * math.pi ** (d / 2) / math.gamma(d / 2) * self.radius ** (d - 1)

    def _sdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x - self.center.to(x), dim=-1) - self.radius

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        r = x - self.center.to(x)
        return r / torch.linalg.vector_norm(r, dim=-1, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)

    def extra_dims(self, *, boundary: bool) -> int:
        return 0 if boundary else 1  # inside: one more coordinate for the radius

    @staticmethod
    def _directions(u: torch.Tensor) -> torch.Tensor:
        """Unit-cube points -> uniform unit vectors (normalised Gaussians by the inverse normal CDF)."""
        tiny = torch.finfo(u.dtype).eps
        z = torch.special.ndtri(u.clamp(tiny, 1 - tiny))
        return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp(min=torch.finfo(u.dtype).tiny)

    def _interior_map(self, u: torch.Tensor) -> torch.Tensor:
        r = self.radius * u[:, -1:] ** (1 / self.dim)
        return self.center + r * self._directions(u[:, :-1])

    def _boundary_map(self, u: torch.Tensor) -> torch.Tensor:
        return self.center + self.radius * self._directions(u)


class Disk(Ball):
    """A disk: the 2-D :class:`Ball` (``center`` must have two coordinates)."""

    def __init__(self, center: Sequence[float] | torch.Tensor, radius: float) -> None:
        super().__init__(center, radius)
        if self.dim != 2:
            raise InputError(f"a Disk needs a 2-D center, got {self.dim} coordinates; use Ball for other dimensions")


class _SetOperation(Domain):
    """A binary set operation on two domains of the same dimension."""

    symbol = "?"

    def __init__(self, a: Domain, b: Domain) -> None:
        for name, v in (("a", a), ("b", b)):
            if not isinstance(v, Domain):
                raise InputError(f"{name} must be a Domain (Box, Ball, or a set operation), got {type(v).__name__}")
        if a.dim != b.dim:
            raise InputError(f"both domains must have the same dimension, got {a.dim} and {b.dim}")
        self.a, self.b, self.dim = a, b, a.dim

    def __repr__(self) -> str:
        return f"({self.a!r} {self.symbol} {self.b!r})"

    def primitives(self) -> list[Primitive]:
        return self.a.primitives() + self.b.primitives()

    def _pick(self, x: torch.Tensor, use_a: torch.Tensor, flip_b: bool = False) -> torch.Tensor:
        nb = self.b._normal(x)
        return torch.where(use_a.unsqueeze(-1), self.a._normal(x), -nb if flip_b else nb)


class Union(_SetOperation):
    """``a | b``: the points in ``a`` or in ``b``."""

    symbol = "|"

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        (la, ha), (lb, hb) = self.a.bounds(), self.b.bounds()
        return torch.minimum(la, lb), torch.maximum(ha, hb)

    def _sdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(self.a._sdf(x), self.b._sdf(x))

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._pick(x, self.a._sdf(x) <= self.b._sdf(x))


class Intersection(_SetOperation):
    """``a & b``: the points in both ``a`` and ``b``.

    Raises:
        InputError: the bounding boxes do not overlap (the intersection is empty).
    """

    symbol = "&"

    def __init__(self, a: Domain, b: Domain) -> None:
        super().__init__(a, b)
        low, high = self.bounds()
        if not bool((high > low).all()):
            raise InputError(f"the intersection of {a!r} and {b!r} is empty (their bounding boxes do not overlap)")

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        (la, ha), (lb, hb) = self.a.bounds(), self.b.bounds()
        return torch.maximum(la, lb), torch.minimum(ha, hb)

    def _sdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(self.a._sdf(x), self.b._sdf(x))

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._pick(x, self.a._sdf(x) >= self.b._sdf(x))


class Difference(_SetOperation):
    """``a - b``: the points of ``a`` not in the interior of ``b`` (``b``'s boundary becomes a boundary, its
    normals flipped)."""

    symbol = "-"

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a.bounds()

    def _sdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(self.a._sdf(x), -self.b._sdf(x))

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._pick(x, self.a._sdf(x) >= -self.b._sdf(x), flip_b=True)
