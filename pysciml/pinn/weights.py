"""Loss weights of a PINN: fixed, gradient-norm balancing, and NTK-based.

A PINN's loss is ``sum_i lambda_i L_i`` over its named terms (``"residual"`` and one per condition, each
``L_i`` a mean of squares; see :class:`pysciml.pinn.pinn.PINN`). A weights object holds the ``lambda_i`` by name
and may update them during training: the trainer calls :meth:`LossWeights.update` once per iteration, and the
object decides (``every=k``) whether to recompute. Updated weights are plain floats (no graph): they scale the
terms, they are not trained.

* :class:`FixedWeights`: constants (default 1 for every term).
* :class:`GradNormWeights`: balance the parameter-gradient magnitudes of the terms, the "learning rate
  annealing" of Wang, Teng & Perdikaris, *Understanding and mitigating gradient flow pathologies in
  physics-informed neural networks*, SIAM J. Sci. Comput. 43 (2021) A3055 (``mode="max_mean"``), or the
  gradient-norm form of Wang, Wang, Sankaran & Perdikaris, *An expert's guide to training physics-informed
  neural networks*, arXiv 2308.08468 (2023) (``mode="norm"``).
* :class:`NTKWeights`: the trace rule of Wang, Yu & Perdikaris, *When and why PINNs fail to train: a neural
  tangent kernel perspective*, J. Comput. Phys. 449 (2022) 110768, with the kernels of
  :mod:`pysciml.analysis.ntk`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import InputError

__all__ = ["LossWeights", "FixedWeights", "GradNormWeights", "NTKWeights", "as_weights"]


class WeightedProblem(Protocol):
    """What the weights read from a PINN (:class:`pysciml.pinn.pinn.PINN` provides it; a protocol keeps this
    module free of an import of the model)."""

    net: nn.Module

    def losses(self) -> dict[str, torch.Tensor]: ...

    def network_parameters(self) -> dict[str, torch.Tensor]: ...

    def ntk_terms(self) -> dict[str, tuple[Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor],
                                            torch.Tensor]]: ...


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}: expected a positive int, got {value!r}")
    return value


def _unit_interval(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise InputError(f"{name}: expected a float in [0, 1), got {value!r}")
    return float(value)


class LossWeights:
    """Base class: the weights ``lambda_i`` by term name, and the update hook the trainer calls.

    ``values`` maps each term name to its current weight (a float). Subclasses override :meth:`_recompute`.
    """

    def __init__(self, initial: Mapping[str, float] | None = None, *, every: int = 1) -> None:
        self.initial = dict(initial or {})
        for name, value in self.initial.items():
            if not isinstance(name, str) or not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value) or value < 0:
                raise InputError(f"weights: expected {{term name: non-negative finite float}}, got {name!r}: "
                                 f"{value!r}")
        self.every = _positive_int(every, "every")
        self.values: dict[str, float] = {}
        self.updates = 0
        self.skipped = 0

    def bind(self, names: Iterable[str]) -> None:
        """Fix the term names (called by the PINN): every name gets its initial weight (default 1)."""
        names = list(names)
        unknown = sorted(set(self.initial) - set(names))
        if unknown:
            raise InputError(f"weights: unknown term name(s) {unknown}; the PINN's terms are {names}")
        self.values = {name: float(self.initial.get(name, 1.0)) for name in names}

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def update(self, pinn: WeightedProblem, iteration: int) -> bool:
        """Recompute the weights at iterations ``0, every, 2 every, ...``; returns whether it did (not when a
        new weight would be infinite or NaN, e.g. a term with a zero gradient: then ``skipped`` counts it)."""
        if iteration % self.every != 0 or type(self)._recompute is LossWeights._recompute:
            return False
        new = self._recompute(pinn)
        if not all(math.isfinite(v) for v in new.values()):
            self.skipped += 1  # e.g. a term whose gradient vanished: keep the old weights, not inf or nan
            return False
        self.values.update(new)
        self.updates += 1
        return True

    def _recompute(self, pinn: WeightedProblem) -> dict[str, float]:  # pragma: no cover - overridden
        return dict(self.values)

    def state_dict(self) -> dict[str, Any]:
        """The current weights and update count (for checkpoints)."""
        return {"values": dict(self.values), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.values = {k: float(v) for k, v in state["values"].items()}
        self.updates = int(state["updates"])

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.values.items())
        return f"{type(self).__name__}({shown})"


class FixedWeights(LossWeights):
    """Constant weights: ``FixedWeights({"residual": 1.0, "dirichlet": 100.0})``; unnamed terms get 1."""

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        super().__init__(weights)


def _smooth(old: float, new: float, alpha: float) -> float:
    return alpha * old + (1.0 - alpha) * new


def _ratio(a: float, b: float) -> float:
    """``a / b``, or ``inf`` for ``b = 0`` (a term that does not depend on the parameters: no update)."""
    return a / b if b > 0 else math.inf


class GradNormWeights(LossWeights):
    """Gradient-magnitude balancing of the loss terms.

    With ``g_i = grad_theta L_i`` (the unweighted term's gradient over the network parameters):

    * ``mode="max_mean"`` (Wang, Teng & Perdikaris 2021, Algorithm 1, "learning rate annealing"):
      ``lambda_hat_i = max |g_r| / mean |g_i|`` for every term ``i`` other than the reference (the residual,
      whose weight stays 1); ``max`` and ``mean`` run over all parameter entries.
    * ``mode="norm"`` (Wang et al. 2023, "An expert's guide", gradient-norm weighting):
      ``lambda_hat_i = (sum_j ||g_j||) / ||g_i||`` for every term, the reference included.

    Both then take the moving average ``lambda_i <- alpha lambda_i + (1 - alpha) lambda_hat_i`` (``alpha = 0.9``
    keeps 90 % of the old value) every ``every`` iterations. A term with a small gradient gets a large weight.

    Args:
        mode: ``"max_mean"`` or ``"norm"``.
        every: recompute at iterations ``0, every, 2 every, ...``.
        alpha: moving-average factor in ``[0, 1)`` (0: use each new estimate as is).
        reference: the term the others are scaled to in ``"max_mean"`` mode.
        initial: starting weights (default 1).
    """

    def __init__(self, *, mode: str = "max_mean", every: int = 10, alpha: float = 0.9,
                 reference: str = "residual", initial: Mapping[str, float] | None = None) -> None:
        super().__init__(initial, every=every)
        if mode not in ("max_mean", "norm"):
            raise InputError(f"mode: expected 'max_mean' (Wang et al. 2021) or 'norm' (2023), got {mode!r}")
        self.mode, self.alpha, self.reference = mode, _unit_interval(alpha, "alpha"), reference

    def bind(self, names: Iterable[str]) -> None:
        names = list(names)
        if self.mode == "max_mean" and self.reference not in names:
            raise InputError(f"reference: {self.reference!r} is not one of the PINN's terms {names}")
        super().bind(names)

    def _recompute(self, pinn: WeightedProblem) -> dict[str, float]:
        params = [p for p in pinn.net.parameters() if p.requires_grad]
        losses = pinn.losses()
        grads = {}
        for name, value in losses.items():
            gs = (torch.autograd.grad(value, params, retain_graph=True, allow_unused=True) if value.requires_grad
                  else [None] * len(params))  # a term that ignores the network
            grads[name] = torch.cat([g.reshape(-1) for g in gs if g is not None] or
                                    [torch.zeros(1, dtype=value.dtype, device=value.device)]).abs()
        new = {}
        if self.mode == "max_mean":
            top = float(grads[self.reference].max())
            for name, g in grads.items():
                if name != self.reference:
                    new[name] = _smooth(self.values[name], _ratio(top, float(g.mean())), self.alpha)
        else:
            norms = {name: float(torch.linalg.vector_norm(g)) for name, g in grads.items()}
            total = sum(norms.values())
            new = {name: _smooth(self.values[name], _ratio(total, n), self.alpha) for name, n in norms.items()}
        return new


class NTKWeights(LossWeights):
    """Weights from the traces of the empirical NTK blocks of the terms (Wang, Yu & Perdikaris 2022).

    Each term ``i`` is a pointwise operator ``r_i(x) = B_i[u](x)`` (the PDE residual, a boundary operator...) at
    its ``N_i`` points; ``K_ii = J_i J_i^T`` with ``J_i = d r_i / d theta`` over the network parameters. The
    paper's Algorithm 1 sets

        ``lambda_i = (sum_j tr K_jj) / tr K_ii``,

    so a term whose kernel is small (it learns slowly) gets a large weight. ``tr K_ii`` is computed by
    :func:`pysciml.analysis.ntk.ntk_trace` on at most ``n_points`` points of the term (a random subset, drawn
    anew at each update), scaled by ``N_i / n`` to estimate the trace of the full block (``normalize="sum"``,
    the paper's rule), or divided by the points used (``normalize="mean"``: the mean per-point trace, which
    ignores how many points each term has).

    Args:
        every: recompute at iterations ``0, every, 2 every, ...`` (the paper: every iteration or every few
            hundred; each update costs one Jacobian per term).
        n_points: at most this many points per term for the trace (``None``: all).
        normalize: ``"sum"`` or ``"mean"``.
        alpha: moving average ``lambda <- alpha lambda + (1 - alpha) lambda_hat`` (the paper: 0, none).
        seed: seed of the point subsets.
        initial: starting weights (default 1).
    """

    def __init__(self, *, every: int = 100, n_points: int | None = 256, normalize: str = "sum",
                 alpha: float = 0.0, seed: int = 0, initial: Mapping[str, float] | None = None) -> None:
        super().__init__(initial, every=every)
        if n_points is not None:
            _positive_int(n_points, "n_points")
        if normalize not in ("sum", "mean"):
            raise InputError(f"normalize: expected 'sum' (the paper's rule) or 'mean', got {normalize!r}")
        self.n_points, self.normalize = n_points, normalize
        self.alpha = _unit_interval(alpha, "alpha")
        self.generator = torch.Generator().manual_seed(int(seed))
        self.traces: dict[str, float] = {}

    def _recompute(self, pinn: WeightedProblem) -> dict[str, float]:
        from ..analysis.ntk import ntk_trace  # torch.func: loaded only when NTK weights are used

        params = pinn.network_parameters()
        traces = {}
        for name, (fn, x) in pinn.ntk_terms().items():
            n_all = x.shape[0]
            if self.n_points is not None and n_all > self.n_points:
                idx = torch.randperm(n_all, generator=self.generator)[: self.n_points].to(x.device)
                x = x[idx]
            tr = float(ntk_trace(fn, params, x))
            traces[name] = tr * n_all / x.shape[0] if self.normalize == "sum" else tr / x.shape[0]
        self.traces = traces
        total = sum(traces.values())
        return {name: _smooth(self.values[name], _ratio(total, tr), self.alpha) for name, tr in traces.items()}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])


def as_weights(weights: LossWeights | Mapping[str, float] | None) -> LossWeights:
    """``None`` -> all ones; a dict -> :class:`FixedWeights`; a :class:`LossWeights` as is."""
    if weights is None:
        return FixedWeights()
    if isinstance(weights, LossWeights):
        return weights
    if isinstance(weights, Mapping):
        return FixedWeights(weights)
    raise InputError(f"weights: expected None, a dict {{term: float}} or a LossWeights object, got "
                     f"{type(weights).__name__}")
