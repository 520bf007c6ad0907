"""GRAND-style graph neural diffusion (Chamberlain et al., "GRAND: Graph Neural Diffusion", ICML 2021) for node
classification, split for a semi-implicit (IMEX) solve as in Zhang, Liu & Maulik, "Semi-Implicit Neural
Ordinary Differential Equations" (AAAI 2025, arXiv 2412.11301).

The node features ``X (N, d)`` evolve by linear-attention diffusion

    dX/dt = alpha (A(X) - I) X  [+ beta X(0)],

``A(X)`` the row-stochastic attention over each node's neighbours and itself (scaled dot products of learned
queries ``W_Q x_i`` and keys ``W_K x_j``, a softmax over ``j``, averaged over heads). SINODE's split (the
authors' GRAND code, ``block_pnode.py``): the linear decay ``-alpha X`` is the implicit part, the attention
transport ``alpha A(X) X`` (+ the source term) the explicit part. ``alpha > 0`` is learned (log-parametrised;
the authors use ``sigmoid``, i.e. ``alpha < 1``); a large ``alpha`` makes the decay stiff.

No torch_geometric: the attention is computed per edge with ``index_add`` / ``scatter_reduce`` on an
``(2, E)`` edge index (row 0 source ``j``, row 1 target ``i``; self loops are added here).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..algorithms import RK4, Algorithm, KenCarp4
from ..errors import InputError
from ..linsolve_options import GMRES
from ..sensealg import SensitivityAlgorithm
from .neural_ode import NeuralODE
from .sinode import SemiImplicitNeuralODE

__all__ = ["LinearDecay", "AttentionTransport", "GRANDVectorField", "GRAND", "train_epoch", "evaluate"]

Tensor = torch.Tensor


class _CountVJP(torch.autograd.Function):
    """Identity whose backward counts one vector-Jacobian product of the wrapped evaluation."""

    @staticmethod
    def forward(ctx: Any, out: Tensor, owner: AttentionTransport) -> Tensor:  # type: ignore[override]
        ctx.owner = owner
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        ctx.owner.nvjp += 1
        return g, None


class LinearDecay(nn.Module):
    """The implicit part ``u -> -alpha u`` with a learnable ``alpha = exp(log_alpha) > 0``.

    Args:
        alpha: initial value (a positive float).
        learn_alpha: make ``alpha`` a parameter (else a buffer).
    """

    def __init__(self, alpha: float = 1.0, learn_alpha: bool = True) -> None:
        super().__init__()
        if not alpha > 0:
            raise InputError(f"alpha must be positive (the decay -alpha X), got {alpha}")
        log_alpha = torch.tensor(math.log(alpha))
        if learn_alpha:
            self.log_alpha = nn.Parameter(log_alpha)
        else:
            self.register_buffer("log_alpha", log_alpha)

    @property
    def alpha(self) -> Tensor:
        """0-d tensor ``alpha``."""
        return self.log_alpha.exp()

    def forward(self, u: Tensor) -> Tensor:
        return -self.alpha.to(u.dtype) * u


class AttentionTransport(nn.Module):
    """The explicit part ``alpha A(X) X [+ beta X0]`` of GRAND's linear-attention diffusion.

    Args:
        edge_index: ``(2, E)`` int64 edges ``j -> i`` (row 0 source, row 1 target) of an ``num_nodes``-node
            graph; self loops are removed and one per node is added.
        num_nodes: ``N``.
        dim: feature size ``d`` of the diffused state ``X (N, d)``.
        decay: the :class:`LinearDecay` whose ``alpha`` scales the transport (shared parameter).
        heads: attention heads (their attention matrices are averaged, as in GRAND).
        attention_dim: total query/key size over the heads (default ``dim``; a multiple of ``heads``).
        source: add ``beta X0`` with a learned ``beta`` (GRAND's ``add_source``); set ``x0`` before solving.

    Attributes:
        nfe: forward evaluations since the last :meth:`reset_counts`.
        nvjp: vector-Jacobian products (backward evaluations) since the last :meth:`reset_counts`.
        x0: ``(N, d)`` source state (used when ``source=True``).
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, dim: int, decay: LinearDecay, *, heads: int = 1,
                 attention_dim: int | None = None, source: bool = False) -> None:
        super().__init__()
        if not isinstance(edge_index, Tensor) or edge_index.ndim != 2 or edge_index.shape[0] != 2:
            got = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__
            raise InputError(f"edge_index must be a (2, E) integer tensor, got {got}")
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
            raise InputError(f"edge_index holds node indices outside [0, {num_nodes}); check num_nodes")
        attention_dim = dim if attention_dim is None else attention_dim
        if heads < 1 or attention_dim % heads:
            raise InputError(f"attention_dim ({attention_dim}) must be a positive multiple of heads ({heads})")
        ei = edge_index.long()
        ei = ei[:, ei[0] != ei[1]]
        loops = torch.arange(num_nodes, device=ei.device)
        self.register_buffer("src", torch.cat((ei[0], loops)), persistent=False)
        self.register_buffer("dst", torch.cat((ei[1], loops)), persistent=False)
        self.num_nodes, self.dim, self.heads = int(num_nodes), int(dim), int(heads)
        self.d_k = attention_dim // heads
        self.query = nn.Linear(dim, attention_dim)
        self.key = nn.Linear(dim, attention_dim)
        self.decay = decay
        self.beta = nn.Parameter(torch.tensor(0.0)) if source else None
        self.x0: Tensor | None = None
        self.nfe = 0
        self.nvjp = 0

    def reset_counts(self) -> None:
        self.nfe = 0
        self.nvjp = 0

    def attention(self, x: Tensor) -> Tensor:
        """Attention weights ``a_e = A[dst_e, src_e]`` per edge (self loops last): ``(E + N,)``, each target
        node's weights summing to 1 (softmax over its incoming edges, averaged over the heads)."""
        n, h, dk = self.num_nodes, self.heads, self.d_k
        q = self.query(x).view(n, h, dk)
        k = self.key(x).view(n, h, dk)
        scores = (q[self.dst] * k[self.src]).sum(dim=-1) / math.sqrt(dk)  # (E, h)
        idx = self.dst[:, None].expand(-1, h)
        # the shift only stabilises exp; softmax does not depend on it, so it carries no gradient
        shift = torch.full((n, h), -torch.inf, dtype=x.dtype, device=x.device).scatter_reduce(
            0, idx, scores.detach(), reduce="amax", include_self=True)
        w = torch.exp(scores - shift[self.dst])
        denom = torch.zeros((n, h), dtype=x.dtype, device=x.device).index_add(0, self.dst, w)
        return (w / denom[self.dst]).mean(dim=1)

    def attention_matrix(self, x: Tensor) -> Tensor:
        """Dense ``(N, N)`` ``A(X)`` (rows sum to 1); for inspection and tests on small graphs."""
        a = self.attention(x)
        return torch.zeros((self.num_nodes, self.num_nodes), dtype=x.dtype, device=x.device).index_put(
            (self.dst, self.src), a, accumulate=True)

    def propagate(self, x: Tensor) -> Tensor:
        """``A(X) X``: ``(N, d)``."""
        a = self.attention(x)
        return torch.zeros_like(x).index_add(0, self.dst, a[:, None] * x[self.src])

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        if x.shape != (self.num_nodes, self.dim):
            raise InputError(f"the diffused state must have shape ({self.num_nodes}, {self.dim}), got "
                             f"{tuple(x.shape)}")
        self.nfe += 1
        out = self.decay.alpha.to(x.dtype) * self.propagate(x)
        if self.beta is not None:
            if self.x0 is None:
                raise InputError("source=True needs the source state: set transport.x0 = X0 before solving")
            out = out + self.beta.to(x.dtype) * self.x0
        return _CountVJP.apply(out, self) if out.requires_grad else out


class GRANDVectorField(nn.Module):
    """The whole GRAND field ``alpha (A(X) - I) X [+ beta X0]`` (for explicit methods), with its SINODE parts
    ``.decay`` (implicit, ``-alpha X``) and ``.transport`` (explicit, ``alpha A(X) X [+ beta X0]``).

    Args: as :class:`AttentionTransport`, plus ``alpha`` and ``learn_alpha`` of :class:`LinearDecay`.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, dim: int, *, alpha: float = 1.0,
                 learn_alpha: bool = True, heads: int = 1, attention_dim: int | None = None,
                 source: bool = False) -> None:
        super().__init__()
        self.decay = LinearDecay(alpha, learn_alpha)
        self.transport = AttentionTransport(edge_index, num_nodes, dim, self.decay, heads=heads,
                                            attention_dim=attention_dim, source=source)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.transport(t, x) + self.decay(x)


class GRAND(nn.Module):
    """GRAND node classifier: dropout + linear encoder, diffusion on ``[0, T]``, ReLU + dropout + linear decoder.

    Args:
        num_features, num_classes: input feature size and number of classes.
        edge_index, num_nodes: the graph (see :class:`AttentionTransport`).
        hidden: size ``d`` of the diffused features.
        time: integration horizon ``T`` (GRAND's Cora setting: 18.29).
        solver: ``"imex"`` (SINODE: decay implicit, transport explicit, :class:`SemiImplicitNeuralODE`) or
            ``"explicit"`` (the whole field by an explicit method, :class:`NeuralODE`).
        alg: the algorithm (default ``KenCarp4()`` for ``"imex"``, ``RK4()`` for ``"explicit"``).
        dt: fixed step size (``adaptive=True`` in ``solve_kwargs`` makes it the first step).
        alpha, learn_alpha, heads, attention_dim, source: see :class:`GRANDVectorField`.
        matrix_free: IMEX only. ``False`` (default): the decay is handed over as the ``(d, d)`` matrix
            ``-alpha I`` acting on the feature dimension (rebuilt each forward so ``alpha`` stays learnable; with
            fixed steps one batched LU per solve). ``True``: as the module ``u -> -alpha u`` (GMRES on JVPs;
            several times slower here, where ``L`` is a multiple of the identity).
        input_dropout, dropout: dropout before the encoder and before the decoder.
        sensealg: gradients (default: the discrete adjoint, backpropagation through the steps).
        save_points: the solve saves at this many equally spaced times after 0 (only ``X(T)`` is used); with
            ``sensealg=DiscreteAdjoint(checkpoints=save_points)`` they are the checkpoint segments that bound
            the memory of long explicit solves.
        **solve_kwargs: passed on to the neural-ODE module (``rtol``, ``atol``, ``linsolve``, ``maxiters`` ...).

    Forward: ``x (N, num_features) -> logits (N, num_classes)`` on the parameters' dtype and device.

    Attributes:
        ode: the neural-ODE module of the last forward (its ``last_solution`` has the solver's statistics).
    """

    def __init__(self, num_features: int, num_classes: int, edge_index: Tensor, num_nodes: int, *,
                 hidden: int = 16, time: float = 3.0, solver: str = "imex", alg: Algorithm | None = None,
                 dt: float | None = 0.25, alpha: float = 1.0, learn_alpha: bool = True, heads: int = 1,
                 attention_dim: int | None = None, source: bool = True, matrix_free: bool = False,
                 input_dropout: float = 0.5, dropout: float = 0.0, sensealg: SensitivityAlgorithm | None = None,
                 save_points: int = 1, **solve_kwargs: Any) -> None:
        super().__init__()
        if not time > 0:
            raise InputError(f"time must be positive (the diffusion runs on [0, time]), got {time}")
        if solver not in ("imex", "explicit"):
            raise InputError(f"solver must be 'imex' or 'explicit', got {solver!r}")
        if save_points < 1:
            raise InputError(f"save_points must be at least 1 (the end time), got {save_points}")
        self.encoder = nn.Linear(num_features, hidden)
        self.decoder = nn.Linear(hidden, num_classes)
        self.field = GRANDVectorField(edge_index, num_nodes, hidden, alpha=alpha, learn_alpha=learn_alpha,
                                      heads=heads, attention_dim=attention_dim, source=source)
        self.time = float(time)
        self.save_points = int(save_points)
        self.input_dropout, self.dropout = float(input_dropout), float(dropout)
        self.solver, self.matrix_free = solver, bool(matrix_free)
        self._alg = alg or (KenCarp4() if solver == "imex" else RK4())
        self._ode_kw: dict[str, Any] = dict(solve_kwargs, dt=dt, sensealg=sensealg)
        if solver == "imex" and self.matrix_free:
            # -alpha X is a multiple of I: GMRES solves I/(gamma h) + alpha I in one iteration; its default
            # rtol (1e-10) is out of float32's reach, so ask only for what float32 can give
            self._ode_kw.setdefault("linsolve", GMRES(rtol=1e-6))
        self._last_ode: list[nn.Module] = []  # a list, so the per-forward solver is not a registered submodule

    @property
    def ode(self) -> nn.Module | None:
        """The neural-ODE module of the last forward (``None`` before the first)."""
        return self._last_ode[0] if self._last_ode else None

    @property
    def transport(self) -> AttentionTransport:
        return self.field.transport

    def _make_ode(self, h: Tensor) -> nn.Module:
        if self.solver == "explicit":
            return NeuralODE(self.field, self._alg, **self._ode_kw)
        if self.matrix_free:
            linear: Tensor | nn.Module = self.field.decay
        else:
            eye = torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
            linear = -self.field.decay.alpha.to(h.dtype) * eye
        return SemiImplicitNeuralODE(linear, self.transport, self._alg, **self._ode_kw)

    def diffuse(self, h: Tensor) -> Tensor:
        """Solve the diffusion from the encoded features ``h (N, hidden)``; returns ``X(T)``.

        ``save_points > 1`` saves at that many equally spaced times (what checkpointed discrete adjoints
        split at); only ``X(T)`` is used."""
        self.transport.x0 = h.detach()  # GRAND's source term uses the encoded input as a constant
        t = torch.linspace(0.0, self.time, self.save_points + 1, dtype=h.dtype, device=h.device)
        ode = self._make_ode(h)
        self._last_ode[:] = [ode]
        return ode(h, t)[-1]

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder(F.dropout(x, self.input_dropout, training=self.training))
        z = F.relu(self.diffuse(h))
        return self.decoder(F.dropout(z, self.dropout, training=self.training))


def train_epoch(model: GRAND, data: Any, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """One full-batch step of cross-entropy on ``data.train_mask``.

    Returns ``loss``, ``nfe_forward`` (transport evaluations in the forward solve), ``nfe_backward``
    (its vector-Jacobian products in the backward pass, plus any re-evaluations) and ``seconds``.
    """
    model.train()
    model.transport.reset_counts()
    start = time.perf_counter()
    optimizer.zero_grad()
    logits = model(data.x)
    n_fwd = model.transport.nfe
    loss = F.cross_entropy(logits[data.train_mask], data.y[data.train_mask])
    loss.backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    n_bwd = model.transport.nvjp + (model.transport.nfe - n_fwd)
    return {"loss": float(loss.detach()), "nfe_forward": float(n_fwd), "nfe_backward": float(n_bwd),
            "seconds": seconds}


@torch.no_grad()
def evaluate(model: GRAND, data: Any) -> dict[str, float]:
    """Accuracy on the train, val and test masks (``model.eval()``, no dropout)."""
    model.eval()
    pred = model(data.x).argmax(dim=1)
    out = {}
    for split in ("train", "val", "test"):
        mask = getattr(data, f"{split}_mask")
        out[split] = float((pred[mask] == data.y[mask]).double().mean()) if bool(mask.any()) else float("nan")
    return out
