"""``PINN``: a network, a PDE residual, a domain, conditions, collocation points and the weighted loss.

The loss is ``sum_i lambda_i L_i`` over named terms: ``"residual"``, ``L = mean r(x)^2`` over the interior
collocation points (mean over points and components of an ``(N, k)`` residual), and one term per soft
condition (:mod:`pysciml.pinn.conditions`), each ``mean c(x)^2`` over its own points. The weights ``lambda_i``
come from a :mod:`pysciml.pinn.weights` object. Train it with :func:`pysciml.pinn.training.train`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ..errors import InputError
from .conditions import Condition, HardConstraint
from .geometry import Domain
from .sampling import check_count, check_method, check_seed, residual_adaptive_refinement
from .weights import LossWeights, as_weights

__all__ = ["PINN"]

Tensor = torch.Tensor
UFn = Callable[[Tensor], Tensor]
Residual = Callable[[Tensor, UFn], Tensor]

_SEED_STRIDE = 1_000_003  # seeds of the interior and of each condition, kept apart


class PINN(nn.Module):
    """A physics-informed neural network problem: what to fit, where, and with which weights.

    Args:
        net: the network, ``(N, d)`` points -> ``(N,)``, ``(N, 1)`` or ``(N, m)`` outputs (an ``nn.Module``).
        residual: ``residual(x, u_fn) -> (N,) or (N, k)``, the PDE residual at interior points ``x`` (``(N, d)``),
            zero for the exact solution; ``u_fn(y)`` evaluates the (constrained) network, to be differentiated
            with :mod:`pysciml.pinn.derivatives` (e.g. ``-laplacian(u_fn, x) - f(x)``). If it is an
            ``nn.Module`` (e.g. it holds unknown PDE coefficients of an inverse problem), its parameters are
            trained with the network's.
        domain: the :class:`~pysciml.pinn.geometry.Domain` (space, or space-time with time last).
        conditions: soft conditions (:class:`~pysciml.pinn.conditions.DirichletBC`, ``NeumannBC``,
            ``PeriodicBC``, ``InitialCondition``, ``PointData``) and at most one
            :class:`~pysciml.pinn.conditions.HardConstraint` (an output transform).
        n_interior: interior collocation points.
        n_boundary: points per condition (unless the condition sets ``n``).
        sampler: ``"uniform"``, ``"lhs"``, ``"sobol"`` or ``"halton"`` (the last three need scipy).
        weights: ``None`` (all 1), a dict ``{term: weight}``, or a :class:`~pysciml.pinn.weights.LossWeights`.
        unknowns: extra trainable parameters ``{name: nn.Parameter}`` (inverse problems), reachable as
            ``pinn.unknowns[name]``.
        interior_points: fixed ``(N, d)`` interior points instead of sampling (``resample`` then keeps them).
        seed: base seed of all point sets.

    Attributes:
        points: ``{term: (N_i, d) tensor}``, the current points of every term (dtype and device of ``net``).
        term_names: ``("residual", *condition names)``.
    """

    def __init__(self, net: nn.Module, residual: Residual, domain: Domain, conditions: Sequence[Any] = (), *,
                 n_interior: int = 1000, n_boundary: int = 100, sampler: str = "uniform",
                 weights: LossWeights | Mapping[str, float] | None = None,
                 unknowns: Mapping[str, nn.Parameter] | None = None, interior_points: Tensor | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise InputError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
        if not callable(residual):
            raise InputError("residual: expected a callable residual(x, u_fn) -> (N,) or (N, k)")
        if not isinstance(domain, Domain):
            raise InputError(f"domain: expected a pysciml.pinn.geometry Domain (Box, Ball, ...), got "
                             f"{type(domain).__name__}")
        self.net = net
        self.residual_fn = residual  # an nn.Module residual registers as a submodule (its parameters train)
        self.domain = domain
        self.unknowns = nn.ParameterDict(dict(unknowns or {}))
        self.n_interior, self.n_boundary = check_count(n_interior, "n_interior"), check_count(n_boundary, "n_boundary")
        self.sampler, self.seed = check_method(sampler), check_seed(seed)
        self.hard_constraint: HardConstraint | None = None
        self.conditions: dict[str, Condition] = {}
        self._add_conditions(conditions)
        if interior_points is not None and (not isinstance(interior_points, Tensor) or interior_points.dim() != 2
                                            or interior_points.shape[1] != domain.dim):
            raise InputError(f"interior_points: expected a (N, {domain.dim}) tensor")
        self.fixed_interior = interior_points
        self.term_names: tuple[str, ...] = ("residual", *self.conditions)
        self.weights = as_weights(weights)
        self.weights.bind(self.term_names)
        self.points: dict[str, Tensor] = {}
        self.resample(0)

    def _add_conditions(self, conditions: Iterable[Any]) -> None:
        if isinstance(conditions, (Condition, HardConstraint)):
            conditions = [conditions]
        for cond in conditions:
            if isinstance(cond, HardConstraint):
                if self.hard_constraint is not None:
                    raise InputError("conditions: at most one HardConstraint (compose the transforms in one)")
                self.hard_constraint = cond
                continue
            if not isinstance(cond, Condition):
                raise InputError(f"conditions: expected Condition or HardConstraint objects, got {type(cond).__name__}")
            name = cond.name or cond.kind
            if cond.name is None and any(k == name or k.startswith(name + "_") for k in self.conditions):
                name = f"{name}_{sum(1 for c in self.conditions.values() if c.kind == cond.kind)}"
            if name in self.conditions or name == "residual":
                raise InputError(f"conditions: two terms named {name!r}; give one a different name=")
            cond.bind(self.domain)
            self.conditions[name] = cond

    # ---- evaluation ---------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the network's first parameter (the points follow it)."""
        return next(self.net.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def forward(self, x: Tensor) -> Tensor:
        """The (constrained) network output at points ``x`` ``(N, d)``: ``(N, 1)`` / ``(N, m)`` as ``net`` gives."""
        n = self.net(x)
        return n if self.hard_constraint is None else self.hard_constraint(x, n)

    @property
    def u_fn(self) -> Callable[[Tensor], Tensor]:
        """What the residual and the conditions differentiate: the network itself when there is no hard
        constraint (so an ``nn.Sequential`` MLP gets :mod:`~pysciml.pinn.derivatives`' forward Laplacian), else
        this module (network plus output transform)."""
        return self.net if self.hard_constraint is None else self

    def predict(self, x: Tensor) -> Tensor:
        """:meth:`forward` without a graph, at points converted to the network's dtype and device."""
        x = torch.as_tensor(x).to(dtype=self.dtype, device=self.device)
        with torch.no_grad():
            return self(x)

    def relative_l2(self, exact: Callable[[Tensor], Tensor], x: Tensor) -> float:
        """``||u - u*|| / ||u*||`` over points ``x`` (``exact(x)`` shaped like the prediction, or ``(N,)``
        for a one-output network)."""
        u = self.predict(x)
        ref = exact(torch.as_tensor(x).to(dtype=self.dtype, device=self.device))
        ref = ref.reshape(u.shape) if ref.numel() == u.numel() else ref
        return float(torch.linalg.vector_norm(u - ref) / torch.linalg.vector_norm(ref))

    # ---- points --------------------------------------------------------------------------------------------------
    def resample(self, seed: int | None = None) -> None:
        """Draw new interior and condition points (fixed ones stay); ``seed`` offsets the base seed."""
        s = self.seed + (0 if seed is None else check_seed(seed))
        dtype, device = self.dtype, self.device
        if self.fixed_interior is not None:
            self.points["residual"] = self.fixed_interior.to(dtype=dtype, device=device)
        else:
            self.points["residual"] = self.domain.sample_interior(self.n_interior, method=self.sampler, seed=s,
                                                                  dtype=dtype, device=device)
        for k, (name, cond) in enumerate(self.conditions.items(), start=1):
            self.points[name] = cond.sample(self.n_boundary, method=self.sampler, seed=s + k * _SEED_STRIDE,
                                            dtype=dtype, device=device)

    def refine(self, n_candidates: int, n_add: int, *, seed: int = 0) -> int:
        """Residual-based adaptive refinement: add the ``n_add`` candidate points (out of ``n_candidates`` drawn
        inside the domain) with the largest ``|residual|`` to the interior points; returns the new count."""
        def res(x: Tensor) -> Tensor:
            return self.residual_fn(x, self.u_fn)

        self.points["residual"] = residual_adaptive_refinement(res, self.domain, self.points["residual"],
                                                               n_candidates=n_candidates, n_add=n_add,
                                                               seed=self.seed + seed, method=self.sampler)
        return self.points["residual"].shape[0]

    # ---- the loss ------------------------------------------------------------------------------------------------
    def _check_term(self, name: str, out: object, n: int) -> Tensor:
        if not isinstance(out, Tensor) or out.dim() not in (1, 2) or out.shape[0] != n:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InputError(f"{name}: the residual must return (N,) or (N, k) for N = {n} points, got {shape}")
        return out

    def terms(self, points: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The pointwise residuals of every term at ``points`` (default: the current points), unweighted."""
        pts = self.points if points is None else points
        u = self.u_fn
        out = {"residual": self._check_term("residual", self.residual_fn(pts["residual"], u),
                                            pts["residual"].shape[0])}
        for name, cond in self.conditions.items():
            out[name] = self._check_term(name, cond.residual(pts[name], u), pts[name].shape[0])
        return out

    def losses(self) -> dict[str, Tensor]:
        """``{term: mean of squares}``, unweighted, each a 0-d tensor with a graph to the parameters."""
        return {name: r.square().mean() for name, r in self.terms().items()}

    def loss(self, losses: Mapping[str, Tensor] | None = None) -> Tensor:
        """``sum_i lambda_i L_i`` with the current weights (of ``losses`` if given, else of :meth:`losses`)."""
        losses = self.losses() if losses is None else losses
        return sum(self.weights[name] * value for name, value in losses.items())

    # ---- for NTK weights and analysis -------------------------------------------------------------------------
    def network_parameters(self) -> dict[str, Tensor]:
        """The network's trainable parameters, detached, ``{name: tensor}`` (as ``net.named_parameters()``)."""
        return {k: p.detach() for k, p in self.net.named_parameters() if p.requires_grad}

    def ntk_terms(self) -> dict[str, tuple[Callable[[dict[str, Tensor], Tensor], Tensor], Tensor]]:
        """``{term: (fn, points)}`` with ``fn(params, x)`` the term's pointwise residual as a function of the
        network parameters (for :mod:`pysciml.analysis.ntk`); the hard constraint is applied. A condition with
        per-point features (:meth:`~pysciml.pinn.conditions.Condition.features`, e.g. Neumann normals) gets
        points ``(N, d + f)``: the coordinates, then the features."""
        def u_with(params: dict[str, Tensor]) -> UFn:
            def u_fn(y: Tensor) -> Tensor:
                n = functional_call(self.net, params, (y,))
                return n if self.hard_constraint is None else self.hard_constraint(y, n)

            return u_fn

        def make(op: Callable[[Tensor, UFn], Tensor]) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
            return lambda params, x: op(x, u_with(params))

        out = {"residual": (make(self.residual_fn), self.points["residual"])}
        for name, cond in self.conditions.items():
            x = self.points[name]
            feats = cond.features(x)
            if feats is None:
                out[name] = (make(cond.residual), x)
            else:  # per-point data rides along as extra columns, so subsets and vmap keep rows aligned
                out[name] = (make(_with_features(cond, x.shape[1])), torch.cat([x, feats.to(x.dtype)], dim=1))
        return out

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{k}: {v.shape[0]}" for k, v in self.points.items())
        return f"domain={self.domain!r}, points=({sizes}), weights={self.weights!r}"


def _with_features(cond: Condition, d: int) -> Callable[[Tensor, UFn], Tensor]:
    """``op(xa, u_fn)`` for points ``xa = [x, features]``: the condition's residual with the features given."""
    def op(xa: Tensor, u_fn: UFn) -> Tensor:
        return cond.residual(xa[:, :d], u_fn, features=xa[:, d:])

    return op
