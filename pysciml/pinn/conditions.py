"""Boundary, initial and data conditions of a PINN, and hard constraints by an output transform.

A *soft* condition is a pointwise operator ``c(x, u_fn) -> (N,)`` or ``(N, k)`` that is zero where the condition
holds; the PINN adds ``mean(c^2)`` over the condition's points to its loss, under the condition's name
(``"dirichlet"``, ``"neumann"``, ``"periodic"``, ``"initial"``, ``"data"``, numbered ``"dirichlet_1"``, ... when a
kind repeats, or the ``name=`` given). ``u_fn(y)`` evaluates the (constrained) network at points ``y`` of shape
``(N, d)`` and returns ``(N,)``, ``(N, 1)`` or ``(N, m)``; ``component=`` picks one output of a multi-output
network.

Where the points come from (``where=``, the first argument of the boundary conditions):

* ``None``: the whole boundary of the PINN's domain;
* a :class:`~pysciml.pinn.geometry.Domain`: that domain's boundary (e.g. one hole of a domain with holes);
* a callable ``where(x) -> (N,) bool``: the part of the PINN domain's boundary where it is true (e.g.
  ``lambda x: x[:, 0] < 1e-9`` for the face ``x_0 = 0``); boundary points are drawn and filtered;
* ``points=``: a fixed ``(N, d)`` tensor (never resampled).

Time-dependent problems take time as the **last** input coordinate (``x = (x_0, ..., x_{d-2}, t)``) and a
space-time domain, e.g. ``Box([0, 0], [1, T])`` for one space dimension; :class:`InitialCondition` holds at
``t = t0`` (default: the domain's lowest time). A boundary condition on such a domain should usually exclude the
initial face: ``where=lambda x: x[:, -1] > t0``.

A *hard* constraint, :class:`HardConstraint`, changes the network's output instead: ``u(x) = g(x) + l(x) N(x)``
with ``l = 0`` on the Dirichlet boundary satisfies ``u = g`` there exactly, whatever the network ``N`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import InputError
from .derivatives import gradient, partial
from .geometry import Box, Domain
from .sampling import oversampled

__all__ = ["Condition", "DirichletBC", "NeumannBC", "PeriodicBC", "InitialCondition", "PointData",
           "HardConstraint"]

Tensor = torch.Tensor
UFn = Callable[[Tensor], Tensor]
Value = Callable[[Tensor], Tensor] | float | int

_MAX_DRAWS = 20
_MAX_EMPTY = 100_000  # boundary points drawn without one passing the mask: give up


def field(u: Tensor, component: int | None) -> Tensor:
    """A network output ``(N,)``, ``(N, 1)`` or ``(N, m)`` as ``(N,)`` (one component) or ``(N, m)``."""
    if u.dim() == 1:
        if component not in (None, 0):
            raise InputError(f"component={component}: the network has one output")
        return u
    if u.dim() != 2:
        raise InputError(f"the network must return (N,), (N, 1) or (N, m) values, got shape {tuple(u.shape)}")
    if component is not None:
        if not 0 <= component < u.shape[1]:
            raise InputError(f"component={component} is out of range: the network returns {u.shape[1]} outputs")
        return u[:, component]
    return u[:, 0] if u.shape[1] == 1 else u


def _values(value: Value, x: Tensor, like: Tensor, what: str) -> Tensor:
    """``value(x)`` (or a constant) shaped like ``like`` (``(N,)`` or ``(N, m)``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.full_like(like, float(value))
    g = value(x)
    if not isinstance(g, Tensor):
        raise InputError(f"{what}: the value function must return a tensor, got {type(g).__name__}")
    if g.shape == like.shape:
        return g
    if like.dim() == 1 and g.shape == (like.shape[0], 1):
        return g[:, 0]
    if like.dim() == 2 and like.shape[1] == 1 and g.shape == (like.shape[0],):
        return g[:, None]
    raise InputError(f"{what}: the value function returned shape {tuple(g.shape)} at {x.shape[0]} points; expected "
                     f"{tuple(like.shape)} (the constrained output's shape)")


def _check_value(value: object, name: str) -> None:
    if isinstance(value, bool) or not (callable(value) or isinstance(value, (int, float))):
        raise InputError(f"{name}: expected a function of the points x (N, d) or a number, got {value!r}")


class Condition:
    """Base of the soft conditions: where the points come from, how many, and the pointwise residual.

    Args:
        where: ``None``, a :class:`Domain` or a callable mask (see the module docstring).
        points: fixed ``(N, d)`` points instead of sampling.
        n: number of points (``None``: the PINN's ``n_boundary``).
        method: sampler (``None``: the PINN's).
        name: the loss term's name (``None``: the kind, numbered if it repeats).
        component: which output of a multi-output network the condition constrains.
    """

    kind = "condition"

    def __init__(self, where: Domain | Callable[[Tensor], Tensor] | None = None, *, points: Tensor | None = None,
                 n: int | None = None, method: str | None = None, name: str | None = None,
                 component: int | None = None) -> None:
        if where is not None and not isinstance(where, Domain) and not callable(where):
            raise InputError(f"where: expected None, a Domain or a callable mask where(x) -> (N,) bool, got "
                             f"{type(where).__name__}")
        if points is not None and (not isinstance(points, Tensor) or points.dim() != 2 or points.shape[0] == 0):
            raise InputError("points: expected a non-empty (N, d) tensor of condition points")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise InputError(f"n: expected a positive int (points of this condition), got {n!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise InputError(f"name: expected a non-empty string, got {name!r}")
        if component is not None and (isinstance(component, bool) or not isinstance(component, int)):
            raise InputError(f"component: expected None or an int output index, got {component!r}")
        self.where, self.fixed_points, self.n, self.method = where, points, n, method
        self.name, self.component = name, component
        self.domain: Domain | None = None

    def bind(self, domain: Domain) -> None:
        """Attach the PINN's domain (normals, boundary); called by the PINN."""
        self.domain = domain
        if self.fixed_points is not None and self.fixed_points.shape[1] != domain.dim:
            raise InputError(f"points: expected (N, {domain.dim}) points for this domain, got "
                             f"{tuple(self.fixed_points.shape)}")

    def sample(self, n: int, *, method: str, seed: int, dtype: torch.dtype, device: Any = None) -> Tensor:
        """The condition's points: ``(n, d)`` (or the fixed ones), dtype ``dtype``."""
        if self.fixed_points is not None:
            return self.fixed_points.to(dtype=dtype, device=device)
        n, method = self.n or n, self.method or method
        return self._sample(n, method, seed, dtype).to(device=device)

    def _sample(self, n: int, method: str, seed: int, dtype: torch.dtype) -> Tensor:
        return _boundary_points(self.where, self._bound_domain(), n, method, seed, dtype)

    def _bound_domain(self) -> Domain:
        if self.domain is None:
            raise InputError(f"{type(self).__name__} is not attached to a domain: pass it to a PINN")
        return self.domain

    def residual(self, x: Tensor, u_fn: UFn) -> Tensor:  # pragma: no cover - overridden
        """Pointwise residual ``(N,)`` or ``(N, k)``, zero where the condition holds."""
        raise NotImplementedError

    def features(self, x: Tensor) -> Tensor | None:
        """Per-point data the residual needs besides ``x`` and ``u`` (``None``: none), computed outside any
        :mod:`torch.func` transform and passed back as ``residual(x, u_fn, features=...)``: e.g. the normals of
        :class:`NeumannBC`, whose computation (data-dependent branches) ``vmap`` cannot trace."""
        return None


def _boundary_points(where: Domain | Callable[[Tensor], Tensor] | None, domain: Domain, n: int, method: str,
                     seed: int, dtype: torch.dtype) -> Tensor:
    if isinstance(where, Domain):
        if where.dim != domain.dim:
            raise InputError(f"where: a {where.dim}-D domain for a {domain.dim}-D problem")
        return where.sample_boundary(n, method=method, seed=seed, dtype=dtype)
    if where is None:
        return domain.sample_boundary(n, method=method, seed=seed, dtype=dtype)
    kept, have, drawn, m = [], 0, 0, max(2 * n, 64)
    for k in range(_MAX_DRAWS):
        x = domain.sample_boundary(m, method=method, seed=seed + 7919 * k, dtype=dtype)
        mask = where(x)
        if not isinstance(mask, Tensor) or mask.shape != (m,) or mask.dtype != torch.bool:
            raise InputError("where: the mask function must return a (N,) bool tensor for (N, d) points")
        kept.append(x[mask])
        have, drawn = have + int(mask.sum()), drawn + m
        if have >= n:
            return torch.cat(kept)[:n]
        if have == 0 and drawn >= _MAX_EMPTY:
            break
        m = min(oversampled(n - have, have / drawn) if have else 8 * m, 2**18)
    raise InputError(f"where: only {have} of the boundary points drawn satisfy the mask (wanted {n}); check that it "
                     "selects part of the boundary (use a tolerance, e.g. x[:, 0] < 1e-9, not x[:, 0] == 0)")


class DirichletBC(Condition):
    """``u(x) = g(x)`` on (part of) the boundary.

    Args:
        where: see the module docstring (``None``: the whole boundary).
        value: ``g(x) -> (N,)`` (or ``(N, m)`` for all outputs), or a constant.
        **kwargs: ``points``, ``n``, ``method``, ``name``, ``component`` of :class:`Condition`.
    """

    kind = "dirichlet"

    def __init__(self, where: Domain | Callable[[Tensor], Tensor] | None = None, value: Value = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(where, **kwargs)
        _check_value(value, "value")
        self.value = value

    def residual(self, x: Tensor, u_fn: UFn) -> Tensor:
        u = field(u_fn(x), self.component)
        return u - _values(self.value, x, u, "DirichletBC")


class NeumannBC(Condition):
    """``du/dn(x) = grad u(x) . n(x) = g(x)`` on (part of) the boundary, ``n`` the outward unit normal of the
    PINN's domain (at a hole, pointing into the hole), from
    :meth:`~pysciml.pinn.geometry.Domain.boundary_normal`; the gradient is exact
    (:func:`~pysciml.pinn.derivatives.gradient`).

    Args:
        where: see the module docstring.
        value: ``g(x) -> (N,)`` or a constant.
        **kwargs: ``points``, ``n``, ``method``, ``name``, ``component``.
    """

    kind = "neumann"

    def __init__(self, where: Domain | Callable[[Tensor], Tensor] | None = None, value: Value = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(where, **kwargs)
        _check_value(value, "value")
        self.value = value

    def features(self, x: Tensor) -> Tensor:
        """The outward unit normals ``(N, d)`` at the points (checked to lie on the boundary)."""
        return self._bound_domain().boundary_normal(x.detach(), tol=1e-6 * max(1.0, float(x.abs().max())))

    def residual(self, x: Tensor, u_fn: UFn, features: Tensor | None = None) -> Tensor:
        normal = self.features(x) if features is None else features
        du = gradient(u_fn, x, component=self.component)
        dn = (du * normal.to(du.dtype)).sum(dim=1)
        return dn - _values(self.value, x, dn, "NeumannBC")


class PeriodicBC(Condition):
    """``u`` (and optionally its first derivative along the axis) equal on the two opposite faces of a box.

    The points lie on the face ``x_axis = low`` of the PINN's :class:`~pysciml.pinn.geometry.Box` domain (the other
    coordinates drawn inside the box); each is paired with its image on ``x_axis = high``. The residual is
    ``u(x_low) - u(x_high)`` for ``derivative_order=0``, and also ``d u / d x_axis`` there for ``1`` (two
    columns: a ``C^1``-periodic solution).

    Args:
        axis: the periodic coordinate.
        derivative_order: 0 (values) or 1 (values and first derivatives).
        **kwargs: ``n``, ``method``, ``name``, ``component`` (``points``: points on the low face).
    """

    kind = "periodic"

    def __init__(self, axis: int, *, derivative_order: int = 0, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise InputError(f"axis: expected an int coordinate index, got {axis!r}")
        if derivative_order not in (0, 1):
            raise InputError(f"derivative_order: expected 0 or 1, got {derivative_order!r}")
        self.axis, self.derivative_order = axis, derivative_order

    def bind(self, domain: Domain) -> None:
        if not isinstance(domain, Box):
            raise InputError(f"PeriodicBC needs a Box domain (opposite faces), got {domain!r}")
        if not -domain.dim <= self.axis < domain.dim:
            raise InputError(f"axis: {self.axis} is out of range for a {domain.dim}-D box")
        self.axis %= domain.dim
        super().bind(domain)

    def _sample(self, n: int, method: str, seed: int, dtype: torch.dtype) -> Tensor:
        box = self._bound_domain()
        x = box.sample_interior(n, method=method, seed=seed, dtype=dtype)
        x[:, self.axis] = float(box.low[self.axis])
        return x

    def residual(self, x: Tensor, u_fn: UFn) -> Tensor:
        box = self._bound_domain()
        shift = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
        shift[self.axis] = float(box.high[self.axis] - box.low[self.axis])
        x_high = x + shift
        diff = field(u_fn(x), self.component) - field(u_fn(x_high), self.component)
        if self.derivative_order == 0:
            return diff
        if diff.dim() != 1:
            raise InputError("PeriodicBC(derivative_order=1) needs one output: pass component=")
        index = (self.axis,)
        d_low = partial(u_fn, x, index, component=self.component)
        d_high = partial(u_fn, x_high, index, component=self.component)
        return torch.stack([diff, d_low - d_high], dim=1)


class InitialCondition(Condition):
    """``u(x, t0) = h(x)`` (``derivative_order=0``) or ``du/dt(x, t0) = h(x)`` (``1``); time is the last input
    coordinate (``time_axis=-1``).

    The points are drawn inside the space-time domain and moved to ``t = t0`` (so the domain's cross-section at
    ``t0`` must be its spatial domain, as for a :class:`~pysciml.pinn.geometry.Box` or a cylinder).

    Args:
        value: ``h(x) -> (N,)`` (``x`` the full space-time points, ``t = t0``) or a constant.
        t0: initial time (``None``: the lower bound of the domain along ``time_axis``).
        time_axis: the time coordinate (default: the last).
        derivative_order: 0 or 1.
        **kwargs: ``points``, ``n``, ``method``, ``name``, ``component``.
    """

    kind = "initial"

    def __init__(self, value: Value = 0.0, *, t0: float | None = None, time_axis: int = -1,
                 derivative_order: int = 0, **kwargs: Any) -> None:
        super().__init__(None, **kwargs)
        _check_value(value, "value")
        if derivative_order not in (0, 1):
            raise InputError(f"derivative_order: expected 0 or 1, got {derivative_order!r}")
        self.value, self.t0, self.time_axis, self.derivative_order = value, t0, time_axis, derivative_order

    def bind(self, domain: Domain) -> None:
        if not -domain.dim <= self.time_axis < domain.dim:
            raise InputError(f"time_axis: {self.time_axis} is out of range for a {domain.dim}-D domain")
        self.time_axis %= domain.dim
        if self.t0 is None:
            self.t0 = float(domain.bounds()[0][self.time_axis])
        super().bind(domain)

    def _sample(self, n: int, method: str, seed: int, dtype: torch.dtype) -> Tensor:
        x = self._bound_domain().sample_interior(n, method=method, seed=seed, dtype=dtype)
        x[:, self.time_axis] = float(self.t0)
        return x

    def residual(self, x: Tensor, u_fn: UFn) -> Tensor:
        if self.derivative_order == 0:
            u = field(u_fn(x), self.component)
        else:
            u = partial(u_fn, x, (self.time_axis,), component=self.component)
        return u - _values(self.value, x, u, "InitialCondition")


class PointData(Condition):
    """Observations ``u(x_i) = y_i`` at fixed points (inverse problems, measured data).

    Args:
        points: ``(N, d)`` observation points.
        values: ``(N,)`` (or ``(N, m)``) observed values.
        **kwargs: ``name`` (default ``"data"``), ``component``.
    """

    kind = "data"

    def __init__(self, points: Tensor, values: Tensor, **kwargs: Any) -> None:
        super().__init__(None, points=points, **kwargs)
        if not isinstance(values, Tensor) or values.shape[0] != points.shape[0]:
            raise InputError(f"values: expected a tensor with one row per point ({points.shape[0]}), got "
                             f"{tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__}")
        self.values = values

    def residual(self, x: Tensor, u_fn: UFn) -> Tensor:
        u = field(u_fn(x), self.component)
        y = self.values.to(dtype=u.dtype, device=u.device)
        return u - (y[:, 0] if u.dim() == 1 and y.dim() == 2 and y.shape[1] == 1 else y)


class HardConstraint:
    """An output transform ``u(x) = transform(x, N(x))`` that builds conditions into the network.

    The usual form is :meth:`dirichlet`: ``u(x) = g(x) + l(x) N(x)`` with ``l = 0`` exactly on the Dirichlet
    boundary (and nonzero inside), so ``u = g`` there for any network ``N``: no loss term, no weight to tune.

    Args:
        transform: ``transform(x, n) -> u``, ``x`` the ``(N, d)`` points, ``n`` the raw network output (``(N, 1)`` or
            ``(N, m)``); returns the constrained output, same shape as ``n``. It must be differentiable (torch ops),
            and composable with :mod:`torch.func` (no in-place updates of captured tensors).
    """

    def __init__(self, transform: Callable[[Tensor, Tensor], Tensor]) -> None:
        if not callable(transform):
            raise InputError(f"transform: expected a callable transform(x, n) -> u, got {type(transform).__name__}")
        self.transform = transform

    @classmethod
    def dirichlet(cls, value: Value, distance: Callable[[Tensor], Tensor]) -> HardConstraint:
        """``u(x) = g(x) + l(x) N(x)``: ``value`` is ``g`` (a function ``(N, d) -> (N,)`` or a constant, extended
        smoothly inside), ``distance`` is ``l`` (``(N, d) -> (N,)``, zero on the boundary, e.g. ``x (1 - x)`` on
        ``[0, 1]``)."""
        _check_value(value, "value")
        if not callable(distance):
            raise InputError("distance: expected a function l(x) -> (N,) that vanishes on the boundary")

        def transform(x: Tensor, n: Tensor) -> Tensor:
            lx = distance(x)
            lx = lx.reshape(-1, 1) if n.dim() == 2 else lx.reshape(-1)
            return _values(value, x, n, "HardConstraint.dirichlet") + lx * n

        return cls(transform)

    def __call__(self, x: Tensor, n: Tensor) -> Tensor:
        u = self.transform(x, n)
        if not isinstance(u, Tensor) or u.shape[0] != x.shape[0]:
            raise InputError("HardConstraint: transform(x, n) must return one value (row) per point")
        return u
