"""The right-hand side as the engine sees it: flat batched states ``(B, n)``, times ``(B,)``, with counters.

:class:`RHS` adapts the user's ``f(t, u, p)`` (or ``f(t, u)``) to the engine's layout, checks its first
output, re-raises its errors with the time at which they happened, and provides the Jacobian (user
``jac``, forward-mode autodiff, or finite differences), Jacobian-vector products and ``df/dt``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..errors import InputError
from ..solution import Stats

Tensor = torch.Tensor


class RHSError(RuntimeError):
    """The user's function raised; the message says at which ``t``."""


class RHS:
    """One right-hand side (the whole ``f``, or one part of a split problem) in engine layout.

    Args:
        f: user function; ``takes_p`` says whether it takes ``p``.
        prob: the problem (for ``p``, shapes, batching).
        stats: counters to update.
        jac: user Jacobian (or ``None``); ``linear`` a constant ``(n, n)`` matrix if ``f(u) = L u``.
        autodiff: use torch.func for Jacobians and JVPs; otherwise finite differences.
        name: how messages call this function ("f", "f_implicit", ...).
    """

    def __init__(
        self,
        f: Callable[..., Tensor],
        takes_p: bool,
        prob: Any,
        stats: Stats,
        *,
        jac: Callable[..., Tensor] | None = None,
        jac_takes_p: bool = True,
        tgrad: Callable[..., Tensor] | None = None,
        linear: Tensor | None = None,
        autodiff: bool = True,
        name: str = "f",
    ) -> None:
        self.f = f
        self.takes_p = takes_p
        self.p = prob.p
        self.batched = prob.batched
        self.shape = prob.state_shape
        self.n = prob.state_size
        self.stats = stats
        self.user_jac = jac
        self.jac_takes_p = jac_takes_p
        self.user_tgrad = tgrad
        self.linear = linear
        self.autodiff = autodiff
        self.name = name
        self.checked = False
        self.flat = len(self.shape) == 1  # state is a vector: no reshapes needed
        self.dtype = prob.u0.dtype
        self.device = prob.u0.device

    # ------------------------------------------------------------------ evaluation
    def _user_call(self, fn: Callable[..., Tensor], takes_p: bool, t: Tensor, u: Tensor) -> Tensor:
        if self.batched:
            tu, uu = t, (u if self.flat else u.reshape(u.shape[0], *self.shape))
        else:
            tu, uu = t[0], (u[0] if self.flat else u[0].reshape(self.shape))
        return fn(tu, uu, self.p) if takes_p else fn(tu, uu)

    def raw(self, t: Tensor, u: Tensor) -> Tensor:
        """``f`` at engine-layout ``t (B,)``, ``u (B, n)`` -> ``(B, n)``, without counting."""
        try:
            out = self._user_call(self.f, self.takes_p, t, u)
        except InputError:
            raise
        except Exception as exc:  # re-raise with where it happened
            tv = float(t.detach().reshape(-1)[0]) if t.numel() else float("nan")
            raise RHSError(f"{self.name}(t, u, p) raised {type(exc).__name__} at t={tv:.6g}: {exc}") from exc
        if not self.checked:
            self._check_output(out, u)
        if self.flat:
            return out if self.batched else out.unsqueeze(0)
        return out.reshape(u.shape[0], self.n)

    def __call__(self, t: Tensor, u: Tensor) -> Tensor:
        self.stats.nf += 1
        return self.raw(t, u)

    def _check_output(self, out: Any, u: Tensor) -> None:
        want = (u.shape[0], *self.shape) if self.batched else self.shape
        if not isinstance(out, Tensor):
            raise InputError(f"{self.name} must return a torch.Tensor shaped like u {want}, got {type(out).__name__}")
        if tuple(out.shape) != tuple(want):
            raise InputError(
                f"{self.name} returned shape {tuple(out.shape)} but u has shape {tuple(want)}; "
                f"{self.name} must return du/dt with the same shape as u"
            )
        if out.dtype != self.dtype:
            raise InputError(
                f"{self.name} returned dtype {out.dtype} but u0 is {self.dtype}; keep the state's dtype "
                "(create constants with dtype=u.dtype)"
            )
        if out.device != self.device:
            raise InputError(
                f"{self.name} returned a tensor on {out.device} but u0 is on {self.device}; "
                "create tensors inside f on u.device"
            )
        self.checked = True

    # ------------------------------------------------------------------ derivatives
    def jac(self, t: Tensor, u: Tensor, f0: Tensor | None = None) -> Tensor:
        """Jacobian ``df/du`` per trajectory: ``(B, n, n)``."""
        self.stats.njac += 1
        b, n = u.shape
        if self.linear is not None:  # a sparse operator is densified here; use GMRES() to keep it sparse
            L = self.linear.to_dense() if self.linear.is_sparse else self.linear
            return L.expand(b, n, n)
        if self.user_jac is not None:
            return self._user_jacobian(t, u)
        if self.autodiff:
            try:
                return self._jac_forward(t, u)
            except InputError:
                raise
            except Exception as exc:  # f is not torch.func-compatible: fall back, once, and say so
                self.autodiff = False
                warnings.warn(
                    f"forward-mode autodiff of {self.name} failed ({type(exc).__name__}: {exc}); "
                    "using finite-difference Jacobians instead (pass autodiff=False to silence this, "
                    "or give the problem a jac)", RuntimeWarning, stacklevel=4,
                )
        return self._jac_fd(t, u, f0)

    def _user_jacobian(self, t: Tensor, u: Tensor) -> Tensor:
        assert self.user_jac is not None
        b, n = u.shape
        out = self._user_call(self.user_jac, self.jac_takes_p, t, u)
        want = (b, n, n) if self.batched else (n, n)
        if not isinstance(out, Tensor) or tuple(out.shape) != want:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InputError(f"jac must return a tensor of shape {want} (n = {n} state values), got {got}")
        return out.reshape(b, n, n).to(self.dtype)

    def _jac_forward(self, t: Tensor, u: Tensor) -> Tensor:
        """Rows of ``df/du`` by reverse mode: one VJP per output component, vmapped (torch.func), each
        trajectory's cotangent hitting only its own outputs. Reverse mode is several times cheaper than
        torch.func's forward mode through ``nn.Module``s for the small-to-moderate ``n`` of stiff problems."""
        b, n = u.shape
        _, pullback = torch.func.vjp(lambda x: self.raw(t, x), u)
        basis = torch.eye(n, dtype=u.dtype, device=u.device)[:, None, :].expand(n, b, n)
        rows = torch.func.vmap(lambda v: pullback(v)[0])(basis)  # (n_i, B, n_j) = dF_i/du_j
        return rows.permute(1, 0, 2).to(self.dtype)

    def _fd_step(self, x: Tensor) -> Tensor:
        eps = math.sqrt(torch.finfo(x.dtype).eps)
        return eps * torch.clamp(x.abs(), min=1.0)

    def _jac_fd(self, t: Tensor, u: Tensor, f0: Tensor | None) -> Tensor:
        b, n = u.shape
        if f0 is None:
            f0 = self(t, u)
        cols = []
        for j in range(n):
            h = self._fd_step(u[:, j])
            up = u.clone()
            up[:, j] = u[:, j] + h
            cols.append((self(t, up) - f0) / h[:, None])
        return torch.stack(cols, dim=2)

    def jvp(self, t: Tensor, u: Tensor, v: Tensor, f0: Tensor | None = None) -> Tensor:
        """``J v`` per trajectory (``(B, n)``), by autodiff or a finite-difference directional derivative."""
        if self.linear is not None:
            return (self.linear @ v.T).T
        if self.autodiff:
            return torch.func.jvp(lambda x: self.raw(t, x), (u,), (v,))[1].to(self.dtype)
        if f0 is None:
            f0 = self(t, u)
        vn = v.norm(dim=1).clamp(min=torch.finfo(u.dtype).tiny)
        h = math.sqrt(torch.finfo(u.dtype).eps) * (1.0 + u.norm(dim=1)) / vn
        return (self(t, u + h[:, None] * v) - f0) / h[:, None]

    def tgrad(self, t: Tensor, u: Tensor, f0: Tensor) -> Tensor:
        """``df/dt`` per trajectory, ``(B, n)``: the problem's ``tgrad``, else one forward difference (one
        extra call of ``f``; its O(sqrt(eps)) error enters a Rosenbrock step only through the ``h d f_t``
        term)."""
        if self.linear is not None:
            return torch.zeros_like(u)
        if self.user_tgrad is not None:
            out = self._user_call(self.user_tgrad, True, t, u)
            return out.reshape(u.shape[0], self.n).to(self.dtype)
        h = self._fd_step(t)
        return (self(t + h, u) - f0) / h[:, None]
