"""Hamiltonian neural networks: ``HNN`` (a learned scalar ``H``, vector field ``J grad H``), ``SeparableHNN``
(``H = T(p) + V(q)`` built in by the data, the loss or the architecture) and the observational ``augment``.

State layout: ``x = cat([q, p], -1)``, shape ``(..., 2n)`` (positions first, momenta second); leading
dimensions are batch dimensions, and ``H`` must treat samples independently.

How the derivatives are taken (:func:`input_gradient`, :func:`hessian`):
- On the hot path (training, solves) ``grad H`` is one reverse pass of ``torch.autograd.grad`` over the batch
  sum, with ``create_graph`` when gradients are enabled, so losses on the vector field train the parameters.
  It also runs under ``torch.no_grad()`` (returning a detached field) and under saved-tensor hooks
  (``torch.utils.checkpoint``, which ``DiscreteAdjoint(checkpoints=K)`` uses, and which ``torch.func.grad``
  refuses), and it costs what the benchmark's "plain autograd" costs.
- Inside a ``torch.func`` transform (a solver's ``jacfwd``/``vmap`` Jacobian of the vector field), where
  ``torch.autograd.grad`` cannot run, it is ``vmap(torch.func.grad)`` (``jacfwd`` under saved-tensor hooks).
- Second derivatives (the learning bias's mixed partials, the Lagrangian's Hessian): one more reverse pass over
  the whole batch per Hessian row needed (``n`` for the mixed partials, ``2n`` for the Lagrangian; no loop over
  samples); ``vmap(jacfwd(grad))`` inside transforms. (Forward-over-forward ``jacfwd(jacfwd)`` works everywhere
  but measured 5-15x slower here.)

References:
    S. Greydanus, M. Dzamba, J. Yosinski, "Hamiltonian Neural Networks", NeurIPS 2019 (the HNN and its loss).
    Z.-Y. Khoo, D. Wu, J. S. C. Low, S. Bressan, "Separable Hamiltonian Neural Networks", arXiv 2309.01069
    (the three separability biases; the authors' code, repository zykhoo/SeparableNNs, fixes the details
    noted in :class:`SeparableHNN` and :func:`augment`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import grad, jacfwd, vmap

from ..errors import InputError
from ..problem_dynamical import HamiltonianProblem, _keep, _saved_tensor_hooks_active

__all__ = ["HNN", "SeparableHNN", "augment", "hessian", "input_gradient", "mlp", "vector_field_loss"]

Tensor = torch.Tensor


def _under_functorch(x: Tensor) -> bool:
    """Whether ``x`` is being transformed by ``torch.func`` (``vmap``, ``jacfwd``, ``grad``, ...)."""
    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check(x)) if check is not None else False


def _func_grad(energy: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Per-sample ``grad energy`` for use inside ``torch.func`` transforms: ``torch.func.grad`` (reverse
    mode), or forward mode ``jacfwd`` where saved-tensor hooks are active (``torch.func.grad`` refuses them)."""

    def g(xi: Tensor) -> Tensor:
        try:
            return grad(energy)(xi)
        except RuntimeError as exc:
            if "saved tensor hooks" not in str(exc):
                raise
            return jacfwd(energy)(xi)

    return g


def _own_saved_tensors() -> Any:
    """Identity saved-tensor hooks around the inner forward and backward passes of a derivative when other
    saved-tensor hooks are active: inside a non-reentrant ``torch.utils.checkpoint`` region
    (``DiscreteAdjoint(checkpoints=K)``) the inner backward would otherwise unpack the region's saved tensors and
    recompute the whole segment so far at every call (measured: 2.5 s instead of 0.06 s for 20 Tsit5 steps of a
    small HNN). The derivative's own graph is then kept in memory within the segment; the segment's other
    tensors are still checkpointed. Without active hooks nothing is installed (Python hooks cost ~5% of a
    training iteration)."""
    if not _saved_tensor_hooks_active():
        return contextlib.nullcontext()
    return torch.autograd.graph.saved_tensors_hooks(_keep, _keep)


def input_gradient(energy: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``d energy / dx`` for states ``x`` ``(..., d)`` whose energies ``energy(x)`` ``(...)`` are independent per
    sample: the shape of ``x``, differentiable in the parameters when gradients are enabled (see the module
    docstring for how)."""
    if _under_functorch(x):
        return _batched(vmap(_func_grad(energy)), x)
    create = torch.is_grad_enabled()
    with torch.enable_grad(), _own_saved_tensors():
        xr = x if x.requires_grad else x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(energy(xr).sum(), xr, create_graph=create)
    return g


def hessian(energy: Callable[[Tensor], Tensor], x: Tensor, rows: int | None = None) -> tuple[Tensor, Tensor]:
    """``(grad, Hessian)`` of the per-sample scalar ``energy`` at states ``x`` ``(..., d)``: shapes ``(..., d)``
    and ``(..., r, d)`` with the Hessian's first ``r = rows`` rows (all ``d`` by default). Outside ``torch.func``
    transforms: one reverse pass for the gradient and one per row over the whole batch (no loop over samples);
    inside them: ``vmap(jacfwd(grad))``. Entries that do not depend on the input are exact zeros."""
    r = x.shape[-1] if rows is None else rows
    if _under_functorch(x):
        gfun = _func_grad(energy)

        def both(xi: Tensor) -> tuple[Tensor, Tensor]:
            gi = gfun(xi)
            return gi[:r], gi

        h, g = _batched(vmap(jacfwd(both, has_aux=True)), x)
        return g, h
    create = torch.is_grad_enabled()
    with torch.enable_grad(), _own_saved_tensors():
        xr = x if x.requires_grad else x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(energy(xr).sum(), xr, create_graph=True)
        out = []
        for i in range(r):
            gi = g[..., i].sum()
            row = torch.autograd.grad(gi, xr, create_graph=create, retain_graph=True, allow_unused=True)[0] \
                if gi.requires_grad else None
            out.append(torch.zeros_like(xr) if row is None else row)
    h = torch.stack(out, dim=-2)
    return (g, h) if create else (g.detach(), h.detach())


def mlp(n_in: int, hidden: Sequence[int], n_out: int, activation: Callable[[], nn.Module] = nn.Softplus,
        dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """``Linear -> activation`` per hidden width, then a final ``Linear`` to ``n_out`` (PyTorch's default
    initialisation), parameters of ``dtype``."""
    return _layer_stack(n_in, hidden, n_out, activation, lambda a, b: nn.Linear(a, b, dtype=dtype))


def _layer_stack(n_in: int, hidden: Sequence[int], n_out: int, activation: Callable[[], nn.Module],
                 linear: Callable[[int, int], nn.Module]) -> nn.Sequential:
    """``linear(a, b) -> activation`` per hidden width, then ``linear`` to ``n_out``."""
    widths = [n_in, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [linear(a, b), activation()]
    layers.append(linear(widths[-1], n_out))
    return nn.Sequential(*layers)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_hidden(hidden: Any) -> tuple[int, ...]:
    try:
        widths = tuple(int(h) for h in hidden)
    except TypeError:
        raise InputError(f"hidden must be a sequence of layer widths such as (16, 16), got {hidden!r}") from None
    if not widths or min(widths) < 1:
        raise InputError(f"hidden must list at least one positive width, got {hidden!r}")
    return widths


def vector_field_loss(pred: Tensor, dx: Tensor) -> Tensor:
    """``2 * mean((pred - dx)**2)``: for ``x = (q, p)`` this is the HNN loss of Khoo et al.,
    ``MSE(dH/dp - qdot) + MSE(dH/dq + pdot)`` (each mean over the batch and the ``n`` components)."""
    if pred.shape != dx.shape:
        raise InputError(f"dx must have the shape of the states' vector field {tuple(pred.shape)}, got "
                         f"{tuple(dx.shape)}")
    return 2.0 * ((pred - dx) ** 2).mean()


class HNN(nn.Module):
    """A Hamiltonian neural network: a scalar ``H(x)`` (an MLP) whose vector field ``J grad H`` is the model.

    Args:
        dim: state size; ``2n`` for the canonical ``J = [[0, I], [-I, 0]]`` (then it must be even), or any size
            with a user ``J``.
        hidden: widths of the MLP's hidden layers.
        activation: the hidden layers' activation (a class or factory of ``nn.Module``); smooth ones
            (``nn.Softplus``, ``nn.Tanh``) give a smooth vector field, ``nn.ReLU`` a useless one.
        J: optional ``(dim, dim)`` skew-symmetric matrix (a Poisson structure), stored as a buffer in
            ``dtype``.
        dtype: the parameters' dtype; states must come in the same dtype (float64 by default, as in the paper).
        net: optional module or callable mapping ``(..., dim)`` states to ``(..., 1)`` or ``(...)`` energies, used
            in place of the MLP (``hidden`` and ``activation`` are then ignored): a custom architecture, or an
            analytic ``H`` for testing.
        anchor: optional ``(x0, H0)``: adds ``(H(x0) - H0)**2`` to :meth:`loss`, fixing the additive constant of
            ``H`` (the authors' code uses ``x0 = 0``, ``H0 = H(0)``); ``None`` (default) leaves it free.

    Shapes: ``hamiltonian`` maps ``(..., dim) -> (...)``; ``vector_field`` and ``forward`` keep the input shape.
    Everything runs on the device of the parameters (move the module with ``.to(device)``).
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (16, 16), activation: Callable[[], nn.Module] = nn.Softplus,
                 J: Tensor | None = None, dtype: torch.dtype = torch.float64, *,
                 net: Callable[[Tensor], Tensor] | None = None, anchor: tuple[Any, float] | None = None) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InputError(f"dim must be a positive int (the state size 2n), got {dim!r}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise InputError(f"dtype must be a floating torch.dtype such as torch.float64, got {dtype!r}")
        self.dim = dim
        self.dtype = dtype
        if J is None:
            if dim % 2:
                raise InputError(f"dim must be even (x = (q, p)) for the canonical J, got {dim}; pass J= for an "
                                 "odd-sized Poisson structure")
            self.canonical = True
            self.register_buffer("J", _canonical_J(dim // 2, dtype))
        else:
            self.canonical = False
            self.register_buffer("J", _check_J(J, dim, dtype))
        self._builtin_net = net is None
        if net is None:
            self.net = self._default_net(_check_hidden(hidden), activation, dtype)
        elif callable(net):
            self.net = net
        else:
            raise InputError(f"net must be an nn.Module or callable mapping (..., dim) states to energies, got "
                             f"{type(net).__name__}")
        self.anchor = None if anchor is None else self._check_anchor(anchor)

    def _default_net(self, hidden: tuple[int, ...], activation: Callable[[], nn.Module],
                     dtype: torch.dtype) -> nn.Module:
        return mlp(self.dim, hidden, 1, activation, dtype)

    def _check_anchor(self, anchor: Any) -> tuple[Tensor, float]:
        try:
            x0, h0 = anchor
            x0 = torch.as_tensor(x0, dtype=self.dtype).expand(self.dim).clone()
            return x0, float(h0)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"anchor must be (x0, H0) with x0 a float or a ({self.dim},) tensor and H0 a float, "
                             f"got {anchor!r}") from None

    @property
    def n(self) -> int:
        """Degrees of freedom ``n = dim // 2`` (canonical ``J``)."""
        return self.dim // 2

    def _check_x(self, x: Any, name: str = "x") -> Tensor:
        if not isinstance(x, Tensor):
            raise InputError(f"{name} must be a torch.Tensor of shape (..., {self.dim}), got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise InputError(f"{name} must have shape (..., {self.dim}) (x = cat([q, p], -1)), got {tuple(x.shape)}")
        if x.dtype != self.J.dtype:
            raise InputError(f"{name} has dtype {x.dtype} but the model's is {self.J.dtype}; convert with "
                             f"{name}.to({self.J.dtype}) (or build the model with dtype={x.dtype})")
        return x

    def _energy(self, x: Tensor) -> Tensor:
        """The network's energy of states ``(..., dim)``, shape ``(...)`` (no input checks)."""
        h = self.net(x)
        if h.shape == x.shape[:-1] + (1,):
            h = h.squeeze(-1)
        return h

    def hamiltonian(self, x: Tensor) -> Tensor:
        """``H(x)``: states ``(..., dim)`` -> energies ``(...)``, differentiable in ``x`` and the parameters."""
        x = self._check_x(x)
        h = self._energy(x)
        if h.shape != x.shape[:-1]:
            raise InputError(f"net must map (..., {self.dim}) states to (...,) or (..., 1) energies; for input "
                             f"{tuple(x.shape)} it returned {tuple(h.shape)}")
        return h

    def grad_hamiltonian(self, x: Tensor) -> Tensor:
        """``grad H(x)``, shape of ``x`` (:func:`input_gradient`)."""
        # the built-in networks' (..., 1) output is summed as is (a squeeze would add nodes to both graphs)
        return input_gradient(self.net if self._builtin_net else self._energy, self._check_x(x))

    def vector_field(self, x: Tensor) -> Tensor:
        """``J grad H(x)``, shape of ``x``; for the canonical ``J`` this is ``(dH/dp, -dH/dq)``."""
        return self._field(self.grad_hamiltonian(x))

    def _field(self, g: Tensor) -> Tensor:
        if self.canonical:
            n = self.n
            return torch.cat([g[..., n:], -g[..., :n]], dim=-1)
        return g @ self.J.transpose(0, 1)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """The right-hand side ``dx/dt = J grad H(x)`` for :func:`pysciml.solve`, :func:`pysciml.odeint` and
        :class:`pysciml.models.NeuralODE`; ``t`` (a scalar or a ``(B,)`` tensor) is ignored."""
        return self.vector_field(x)

    def loss(self, x: Tensor, dx: Tensor) -> Tensor:
        """The training loss on states ``x`` ``(N, dim)`` with observed derivatives ``dx`` ``(N, dim)``:
        :func:`vector_field_loss` of ``J grad H`` (plus the anchor term when ``anchor`` was given)."""
        dx = self._check_x(dx, "dx")
        out = vector_field_loss(self.vector_field(x), dx)
        if self.anchor is not None:
            x0, h0 = self.anchor
            out = out + (self._energy(x0.to(self.J.device)) - h0) ** 2
        return out

    def as_problem(self, q0: Tensor, p0: Tensor, tspan: Any, *, batched: bool = False) -> HamiltonianProblem:
        """A :class:`pysciml.HamiltonianProblem` for the learned ``H(q, p)`` (canonical ``J`` only), to roll it out
        with any pysciml solver, the symplectic ones included; ``separable=True`` when the architecture makes
        ``H = T(p) + V(q)`` exactly (a :class:`SeparableHNN` with the inductive bias), which the explicit
        symplectic methods (``VelocityVerlet``, ``Yoshida4``, ...) require. ``q0``, ``p0``: ``(..., n)``;
        ``batched`` is passed on (per-trajectory step control for the adaptive solvers)."""
        if not self.canonical:
            raise InputError("as_problem needs the canonical J (x = (q, p)); this model was built with a custom J")
        n = self.n
        for name, v in (("q0", q0), ("p0", p0)):
            if not isinstance(v, Tensor) or v.ndim == 0 or v.shape[-1] != n:
                raise InputError(f"{name} must be a tensor of shape (..., {n}), got "
                                 f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
        return HamiltonianProblem(_LearnedEnergy(self), q0, p0, tspan, separable=self.is_separable, batched=batched)

    @property
    def is_separable(self) -> bool:
        """Whether the architecture guarantees ``d2H/dq dp == 0`` (``False`` for the plain HNN)."""
        return False


def _batched(fn: Callable[[Tensor], Any], x: Tensor) -> Any:
    """``fn`` (vmapped over one leading dimension) applied over all leading dimensions of ``x``; a tuple of
    outputs is reshaped entry by entry."""
    lead = x.shape[:-1]
    out = fn(x.reshape(-1, x.shape[-1]))

    def back(o: Tensor) -> Tensor:
        return o.reshape(*lead, *o.shape[1:])

    return tuple(back(o) for o in out) if isinstance(out, tuple) else back(out)


def _canonical_J(n: int, dtype: torch.dtype) -> Tensor:
    eye = torch.eye(n, dtype=dtype)
    zero = torch.zeros(n, n, dtype=dtype)
    return torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


def _check_J(J: Any, dim: int, dtype: torch.dtype) -> Tensor:
    if not isinstance(J, Tensor):
        raise InputError(f"J must be a ({dim}, {dim}) torch.Tensor (skew-symmetric), got {type(J).__name__}")
    if J.shape != (dim, dim):
        raise InputError(f"J must have shape ({dim}, {dim}) to match dim={dim}, got {tuple(J.shape)}")
    J = J.detach().to(dtype)
    if not torch.isfinite(J).all():
        raise InputError("J must be finite")
    scale = float(J.abs().max()) if J.numel() else 0.0
    if float((J + J.T).abs().max()) > 1e-12 * max(scale, 1.0):
        raise InputError("J must be skew-symmetric (J == -J.T); for a Poisson structure pass (A - A.T) / 2")
    return J.clone()


class _TwinLinear(nn.Module):
    """Two independent ``Linear`` layers applied in one batched matrix product (``torch.baddbmm``) to a
    ``(2, M, in)`` input, one slice per branch: the "conjoined" layers of Khoo et al. (the branches share no
    weights, so neither sees the other's input). PyTorch's ``nn.Linear`` initialisation per branch."""

    def __init__(self, n_in: int, n_out: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2, n_in, n_out, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(2, 1, n_out, dtype=dtype))
        bound = 1.0 / math.sqrt(n_in)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class _SeparableEnergy(nn.Module):
    """``(V(q), T(p))`` by two conjoined MLPs; ``forward`` combines them into ``H`` (a sum, or the learned last
    layer)."""

    def __init__(self, n: int, hidden: tuple[int, ...], activation: Callable[[], nn.Module], dtype: torch.dtype,
                 placement: str) -> None:
        super().__init__()
        self.branches = _layer_stack(n, hidden, 1, activation, lambda a, b: _TwinLinear(a, b, dtype))
        self.combine = nn.Linear(2, 1, dtype=dtype) if placement == "last_layer" else None

    def _branches(self, x: Tensor) -> Tensor:
        """``(2, ...)``: ``V(q)`` and ``T(p)`` of states ``(..., 2n)``."""
        n = x.shape[-1] // 2
        lead = x.shape[:-1]
        qp = torch.stack([x[..., :n].reshape(-1, n), x[..., n:].reshape(-1, n)])  # (2, M, n)
        return self.branches(qp).reshape(2, *lead)

    def parts(self, x: Tensor) -> Tensor:
        """``(..., 2)``: ``V(q)`` and ``T(p)`` of states ``(..., 2n)``."""
        return torch.movedim(self._branches(x), 0, -1)

    def forward(self, x: Tensor) -> Tensor:
        v, t = self._branches(x)
        if self.combine is None:
            return v + t
        w, b = self.combine.weight[0], self.combine.bias[0]
        return w[0] * v + w[1] * t + b


class _LearnedEnergy(torch.nn.Module):
    """``H(q, p)`` of an HNN for :meth:`HNN.as_problem`: a module (holding the HNN), so that a compiled solve finds
    the parameters it is differentiated by."""

    def __init__(self, hnn: HNN) -> None:
        super().__init__()
        self.hnn = hnn

    def forward(self, q: Tensor, p: Tensor) -> Tensor:
        return self.hnn._energy(torch.cat([q, p], dim=-1))


class SeparableHNN(HNN):
    """An HNN for separable systems ``H(q, p) = T(p) + V(q)`` with any subset of the three biases of Khoo et al.

    - ``"I"`` (inductive): ``H`` is built from two sub-networks, ``V`` on ``q`` and ``T`` on ``p`` (two-hidden-layer
      MLPs of width ``hidden`` each, run as one "conjoined" batched network), so ``d2H/dq dp`` is exactly zero.
      ``placement="body"``: ``H = V(q) + T(p)`` (the split runs through the whole network, the authors'
      sHNN-I). ``placement="last_layer"``: a trainable ``Linear(2, 1)`` with bias combines the branch outputs,
      ``H = a V(q) + b T(p) + c`` (the variant trained in the authors' ``models/HNN-I_LastLayer`` as ``sepNet4``,
      the most general of their last-layer combinations; still exactly separable).
      Without ``"I"`` the network is a plain MLP on ``(q, p)``.
    - ``"L"`` (learning): :meth:`loss` adds ``penalty_weight * penalty(x)``, the mean squared mixed partial
      ``mean |d2H/dq_i dp_j|^2`` over the batch and all ``n x n`` entries. (The authors' code squares, per
      ``p_j``, the batch mean of ``sum_i |d2H/dq_i dp_j|`` and divides by ``n``; both vanish exactly when ``H`` is
      separable on the batch; ours is the plain mean square, smooth in the parameters.)
    - ``"O"`` (observational): :func:`augment` with ``augment_copies`` cyclic shifts enlarges the training data;
      :func:`pysciml.models.fit_vector_field` applies it to the training split when the model has
      ``augment_copies`` set (the authors' scripts use one shift; their sweep goes up to 400).

    Args:
        n: degrees of freedom (the state is ``x = (q, p)`` of size ``2n``).
        hidden: hidden widths (per branch with ``"I"``; the paper uses about 0.7 of the HNN's width there).
        activation: hidden activation (softplus in the paper).
        dtype: parameter dtype (float64 in the paper).
        biases: any combination of the letters ``"O"``, ``"L"``, ``"I"`` (order and case free); ``""`` gives a
            plain HNN with this class's extras (``penalty``).
        placement: ``"body"`` or ``"last_layer"`` (with ``"I"`` only).
        penalty_weight: the learning bias's weight ``c`` (the paper sweeps 0.25 to 4; 1 in the main runs).
        augment_copies: number of shifted copies for ``"O"`` (default 1 when ``"O"`` is selected).
        anchor: as in :class:`HNN`.
    """

    def __init__(self, n: int, hidden: Sequence[int] = (11, 11), activation: Callable[[], nn.Module] = nn.Softplus,
                 dtype: torch.dtype = torch.float64, *, biases: str = "OLI", placement: str = "body",
                 penalty_weight: float = 1.0, augment_copies: int | None = None,
                 anchor: tuple[Any, float] | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n must be a positive int (degrees of freedom; the state has size 2n), got {n!r}")
        if not isinstance(biases, str) or set(biases.upper()) - set("OLI") or len(set(biases.upper())) != len(biases):
            raise InputError(f"biases must be a string of distinct letters from 'O', 'L', 'I' (e.g. 'OI'), got "
                             f"{biases!r}")
        if placement not in ("body", "last_layer"):
            raise InputError(f"placement must be 'body' or 'last_layer', got {placement!r}")
        self.biases = "".join(b for b in "OLI" if b in biases.upper())
        if placement != "body" and "I" not in self.biases:
            raise InputError("placement='last_layer' places the inductive bias; add 'I' to biases or drop placement")
        self.placement = placement
        super().__init__(2 * n, hidden, activation, None, dtype, anchor=anchor)
        w = float(penalty_weight)
        if not (math.isfinite(w) and w >= 0):
            raise InputError(f"penalty_weight must be a finite number >= 0, got {penalty_weight!r}")
        self.penalty_weight = w
        if augment_copies is not None and "O" not in self.biases:
            raise InputError("augment_copies is the observational bias's setting; add 'O' to biases or drop it")
        if "O" in self.biases:
            copies = 1 if augment_copies is None else augment_copies
            if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
                raise InputError(f"augment_copies must be a positive int, got {augment_copies!r}")
            self.augment_copies: int | None = copies
        else:
            self.augment_copies = None

    def _default_net(self, hidden: tuple[int, ...], activation: Callable[[], nn.Module],
                     dtype: torch.dtype) -> nn.Module:
        if "I" in self.biases:
            return _SeparableEnergy(self.dim // 2, hidden, activation, dtype, self.placement)
        return super()._default_net(hidden, activation, dtype)

    @property
    def is_separable(self) -> bool:
        return "I" in self.biases

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(V(q), T(p))``, each of shape ``(...)``, the two sub-networks' outputs (inductive bias only; with
        ``placement="last_layer"`` ``H = a V + b T + c``, see ``net.combine``)."""
        if "I" not in self.biases:
            raise InputError("parts() needs the inductive bias (biases containing 'I')")
        vt = self.net.parts(self._check_x(x))
        return vt[..., 0], vt[..., 1]

    def mixed_hessian(self, x: Tensor) -> Tensor:
        """``d2H/dq dp``: ``(..., n, n)`` with entry ``[i, j] = d2H / dq_i dp_j`` (the block of :func:`hessian`,
        ``n`` reverse passes over the batch)."""
        n = self.n
        return hessian(self._energy, self._check_x(x), rows=n)[1][..., n:]

    def penalty(self, x: Tensor) -> Tensor:
        """The learning bias's penalty ``mean |d2H/dq dp|^2`` over the batch and the ``n x n`` entries (a
        0-d tensor, differentiable in the parameters); exactly 0 with the inductive bias."""
        return (self.mixed_hessian(x) ** 2).mean()

    def loss(self, x: Tensor, dx: Tensor) -> Tensor:
        """:meth:`HNN.loss` plus ``penalty_weight * penalty(x)`` when ``"L"`` is among the biases."""
        out = super().loss(x, dx)
        if "L" in self.biases and self.penalty_weight > 0:
            out = out + self.penalty_weight * self.penalty(x)
        return out


def augment(x: Tensor, dx: Tensor, copies: int = 1, *,
            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The observational bias: new samples of a separable system from recombined old ones.

    For ``H = T(p) + V(q)``, ``qdot = dT/dp`` depends on ``p`` only and ``pdot = -dV/dq`` on ``q`` only, so the
    state ``(q_j, p_i)`` has the exact vector field ``(qdot_i, pdot_j)``. Copy ``k`` (``k = 1 .. copies``) pairs
    sample ``i``'s ``(p, qdot)`` with sample ``(i + k) mod N``'s ``(q, pdot)``, the cyclic shifts of the authors'
    code (which uses ``k = 1``). With ``generator`` the samples are first put in a random order drawn from it,
    so the pairings are random but reproducible.

    Args:
        x: states ``(N, 2n)``, ``x = (q, p)``.
        dx: their derivatives ``(N, 2n)``, ``(qdot, pdot)``.
        copies: number of shifted copies, ``1 <= copies <= N - 1`` (more would repeat pairings).
        generator: optional ``torch.Generator`` for the random order (on CPU).

    Returns:
        ``(x_aug, dx_aug)`` of shape ``((copies + 1) N, 2n)``: the original samples first, then the copies;
        same dtype and device as ``x``. Valid only for conservative separable systems: for others it makes
        wrong data (a non-separable ``H``, or friction, whose ``-gamma p`` term puts ``p`` into ``pdot``).
    """
    for name, v in (("x", x), ("dx", dx)):
        if not isinstance(v, Tensor) or v.ndim != 2 or v.shape[1] % 2:
            raise InputError(f"{name} must be a (N, 2n) tensor of states (q, p), got "
                             f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
    if dx.shape != x.shape:
        raise InputError(f"dx must have x's shape {tuple(x.shape)}, got {tuple(dx.shape)}")
    N, n = x.shape[0], x.shape[1] // 2
    if isinstance(copies, bool) or not isinstance(copies, int) or not 1 <= copies <= N - 1:
        raise InputError(f"copies must be an int in [1, N - 1] = [1, {N - 1}] (N = {N} samples), got {copies!r}")
    if generator is not None:
        order = torch.randperm(N, generator=generator).to(x.device)
        x, dx = x[order], dx[order]
    idx = torch.arange(N, device=x.device)
    xs, dxs = [x], [dx]
    for k in range(1, copies + 1):
        j = (idx + k) % N
        xs.append(torch.cat([x[j, :n], x[:, n:]], dim=1))
        dxs.append(torch.cat([dx[:, :n], dx[j, n:]], dim=1))
    return torch.cat(xs), torch.cat(dxs)
