"""``LagrangianNN``: a learned Lagrangian ``L(q, qdot)`` whose Euler-Lagrange equations give the accelerations.

With ``u = (q, qdot)`` the Euler-Lagrange equations ``d/dt dL/dqdot = dL/dq`` read

    (d2L/dqdot2) qddot = dL/dq - (d2L/dqdot dq) qdot,

solved for ``qddot`` at every state (M. Cranmer, S. Greydanus, S. Hoyer, P. Battaglia, D. Spergel, S. Ho,
"Lagrangian Neural Networks", ICLR 2020 workshop, eq. 6). The gradient and Hessian of ``L`` come from
:func:`pysciml.models.hnn.hessian` (reverse passes over the whole batch; ``vmap(jacfwd(grad))`` inside
``torch.func`` transforms), and the ``n x n`` systems are solved by one batched ``torch.linalg.solve``: no Python
loop over samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import InputError
from .hnn import _check_hidden, hessian, mlp, vector_field_loss

__all__ = ["LagrangianNN"]

Tensor = torch.Tensor


class LagrangianNN(nn.Module):
    """A Lagrangian neural network: ``L(q, qdot)`` (an MLP on ``cat([q, qdot], -1)``) and its dynamics.

    Args:
        n: degrees of freedom; states are ``u = cat([q, qdot], -1)`` of shape ``(..., 2n)``.
        hidden: hidden widths of the MLP.
        activation: hidden activation; it must be twice differentiable with a non-zero second derivative
            (softplus, tanh): the accelerations need ``d2L/dqdot2``.
        dtype: parameter dtype; states must come in the same dtype.
        lagrangian: optional callable ``L(q, qdot) -> (...)`` (``q``, ``qdot`` of shape ``(..., n)``) used in place
            of the network: an analytic Lagrangian, or a custom architecture.

    ``forward(t, u)`` returns ``(qdot, qddot)`` concatenated, the shape of ``u``, so the module is a right-hand
    side for :func:`pysciml.solve`, :func:`pysciml.odeint` and :class:`pysciml.models.NeuralODE`. Where
    ``d2L/dqdot2`` is singular the accelerations are undefined (``torch.linalg.solve`` raises or returns
    non-finite values); a learned ``L`` has no built-in guarantee against that.
    """

    def __init__(self, n: int, hidden: Sequence[int] = (64, 64), activation: Callable[[], nn.Module] = nn.Softplus,
                 dtype: torch.dtype = torch.float64, *,
                 lagrangian: Callable[[Tensor, Tensor], Tensor] | None = None) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n must be a positive int (degrees of freedom; states have size 2n), got {n!r}")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise InputError(f"dtype must be a floating torch.dtype such as torch.float64, got {dtype!r}")
        self.n = n
        self.dtype = dtype
        if lagrangian is None:
            self.net: nn.Module | None = mlp(2 * n, _check_hidden(hidden), 1, activation, dtype)
            self._lagrangian = None
        elif callable(lagrangian):
            self.net = None
            self._lagrangian = lagrangian
        else:
            raise InputError(f"lagrangian must be a callable L(q, qdot) -> (...), got {type(lagrangian).__name__}")

    def _L(self, u: Tensor) -> Tensor:
        n = self.n
        if self._lagrangian is not None:
            return self._lagrangian(u[..., :n], u[..., n:])
        return self.net(u).squeeze(-1)

    def _check_u(self, u: object, name: str = "u") -> Tensor:
        if not isinstance(u, Tensor) or u.ndim == 0 or u.shape[-1] != 2 * self.n:
            raise InputError(f"{name} must be a tensor of shape (..., {2 * self.n}) = cat([q, qdot], -1), got "
                             f"{tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__}")
        if not u.dtype.is_floating_point or (self.net is not None and u.dtype != self.dtype):
            raise InputError(f"{name} has dtype {u.dtype}; the model's is {self.dtype}: convert with "
                             f"{name}.to({self.dtype})")
        return u

    def lagrangian(self, u: Tensor) -> Tensor:
        """``L(q, qdot)`` of states ``(..., 2n)``, shape ``(...)``."""
        return self._L(self._check_u(u))

    def acceleration(self, u: Tensor) -> Tensor:
        """``qddot`` from the Euler-Lagrange equations, shape ``(..., n)``, differentiable in ``u`` and the
        parameters."""
        u = self._check_u(u)
        n = self.n

        g, hess = hessian(self._L, u)
        A = hess[..., n:, n:]  # d2L / dqdot dqdot
        B = hess[..., n:, :n]  # d2L / dqdot dq  (row qdot_i, column q_j)
        qd = u[..., n:]
        rhs = g[..., :n] - (B @ qd.unsqueeze(-1)).squeeze(-1)
        return torch.linalg.solve(A, rhs)

    def forward(self, t: Tensor, u: Tensor) -> Tensor:
        """``du/dt = (qdot, qddot)``, the shape of ``u``; ``t`` is ignored."""
        return torch.cat([u[..., self.n:], self.acceleration(u)], dim=-1)

    def loss(self, u: Tensor, du: Tensor) -> Tensor:
        """:func:`~pysciml.models.hnn.vector_field_loss` of ``(qdot, qddot)`` against observed ``du``."""
        return vector_field_loss(self.forward(None, u), self._check_u(du, "du"))

