"""What Julia calls back: the right-hand side and its derivatives, written in place into Julia memory.

Every array argument Julia passes is a torch tensor viewing the solver's own memory (DLPack, zero
copy: see PySciML.jl's ``views.jl``); results are written into the first argument with ``copy_``. The
right-hand side, its Jacobian and ``df/dt`` go through the native engine's :class:`~pysciml.engine.rhs.RHS`
(the same shapes, checks, error messages, user ``jac``/``tgrad``, torch.func Jacobians or finite
differences), so both engines evaluate the user's ``f`` identically; so does the Jacobian-vector product
that Julia's matrix-free GMRES applies (:meth:`~pysciml.engine.rhs.RHS.jvp`, as the native GMRES). The
vector-Jacobian products for SciMLSensitivity are the native continuous adjoints' own
(:func:`pysciml.sensitivity.vjp.vjp`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from ..engine.rhs import RHS
from ..errors import InputError
from ..sensitivity.vjp import vjp

__all__ = ["DLPackView", "TorchCallbacks", "to_julia"]

Tensor = torch.Tensor


class DLPackView:
    """A tensor handed to Julia through the DLPack protocol only.

    juliacall converts arguments with ``__array__`` into ``PyArray`` via numpy (which fails for CUDA
    tensors and for tensors that require grad); this wrapper exposes nothing but ``__dlpack__``, so
    Julia receives a plain ``Py`` and views it with ``DLPack.from_dlpack`` (zero copy).
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __dlpack__(self, **kwargs: Any) -> Any:
        capsule = self.tensor.__dlpack__(**kwargs)
        if self.tensor.is_cuda:  # Julia reads it on its own stream
            torch.cuda.current_stream(self.tensor.device).synchronize()
        return capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.tensor.__dlpack_device__()


def to_julia(x: Tensor) -> DLPackView:
    """Wrap ``x`` (float32/float64, any device) for Julia: detached, contiguous (a copy only if it was not).

    Returns:
        A :class:`DLPackView`; Julia sees a row-major ``(d1, ..., dk)`` tensor as a ``dk × ... × d1`` array.
    """
    if x.dtype not in (torch.float32, torch.float64):
        raise InputError(f"the Julia engine works on float32 or float64 tensors, got {x.dtype}")
    return DLPackView(x.detach().contiguous())


class TorchCallbacks:
    """The Python side of one Julia solve: ``rhs``, ``jac``, ``tgrad``, ``jvp``, ``vjp``, ``vjp_p``.

    Julia calls each method with torch views (1-D ``(n,)`` for states, ``(n, n)`` for the Jacobian
    buffer) and the time as a float. A raised exception is remembered in :attr:`error` before it
    propagates through Julia, so the caller can re-raise the original instead of a ``JuliaError``.

    Args:
        rhs: the function in engine layout (``t (1,)``, ``u (1, n)``) for one trajectory.
        params: tensors that ``vjp_p`` differentiates, in the order of the flat parameter vector.
        strict: ``params`` were discovered (not given): a vector-Jacobian product through a tensor requiring grad
            outside them is refused (:func:`~pysciml.sensitivity.vjp.refuse_new_leaves`), never a lost gradient.
    """

    def __init__(self, rhs: RHS, params: Sequence[Tensor] = (), *, strict: bool = False) -> None:
        self._rhs = rhs
        self._params = tuple(params)
        self._strict = strict
        self._sync = rhs.device.type == "cuda"
        self._vjp_cache: tuple[float, Tensor, Tensor, Tensor, Tensor] | None = None
        self.error: BaseException | None = None

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self._params)

    def _time(self, t: float) -> Tensor:
        return torch.full((1,), t, dtype=self._rhs.dtype, device=self._rhs.device)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """Run one callback body: remember an exception before it propagates into Julia; on CUDA, finish
        torch's stream before returning (Julia reads the results on its own stream)."""
        try:
            yield
            if self._sync:
                torch.cuda.current_stream(self._rhs.device).synchronize()
        except BaseException as exc:
            self._fail(exc)
            raise

    def evaluate(self, t: float, u: Tensor) -> Tensor:
        """``f(t, u, p)`` for a flat state ``u (n,)`` outside any solve (the same checks as in a solve)."""
        with torch.no_grad():
            return self._rhs.raw(self._time(t), u.reshape(1, -1)).reshape(-1)

    def rhs(self, du: Tensor, u: Tensor, t: float) -> None:
        """``du <- f(t, u, p)``."""
        with self._guarded():
            with torch.no_grad():
                du.copy_(self._rhs.raw(self._time(t), u.view(1, -1)).reshape(-1))

    def jac(self, jt: Tensor, u: Tensor, t: float) -> None:
        """``jt <- (df/du)^T``: ``jt`` views Julia's column-major ``J``, which reads transposed in torch."""
        with self._guarded():
            with torch.no_grad():
                jt.copy_(self._rhs.jac(self._time(t), u.view(1, -1))[0].T)

    def tgrad(self, dT: Tensor, u: Tensor, t: float) -> None:
        """``dT <- df/dt`` (user ``tgrad``, forward-mode autodiff, or a finite difference in ``t``)."""
        with self._guarded():
            tt, uu = self._time(t), u.view(1, -1)
            with torch.no_grad():
                f0 = self._rhs.raw(tt, uu)
                dT.copy_(self._rhs.tgrad(tt, uu, f0).reshape(-1))

    def jvp(self, out: Tensor, v: Tensor, u: Tensor, t: float) -> None:
        """``out <- (df/du) v``: the ``ODEFunction``'s ``jvp`` hook, which OrdinaryDiffEq's matrix-free
        GMRES applies (forward-mode autodiff, a finite difference in torch with ``autodiff=False``, or
        ``L v`` for a matrix ``f_implicit``: the native GMRES's product)."""
        with self._guarded():
            with torch.no_grad():
                out.copy_(self._rhs.jvp(self._time(t), u.view(1, -1), v.view(1, -1)).reshape(-1))

    def _vjps(self, lam: Tensor, u: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """``((df/du)^T lam, (df/dp)^T lam)`` from one backward pass, cached for the pair of calls
        SciMLSensitivity makes with the same ``(t, u, lam)``."""
        cached = self._vjp_cache
        if cached is not None and cached[0] == t and torch.equal(cached[1], u) and torch.equal(cached[2], lam):
            return cached[3], cached[4]
        _, gu, grads, _ = vjp(lambda tt, x: self._rhs.raw(tt, x.view(1, -1)).reshape(-1), False, None,
                              self._time(t), u.detach().clone(), lam.to(self._rhs.dtype), self._params,
                              known=self._params if self._strict else None)
        pieces = [(g if g is not None else torch.zeros_like(p)).reshape(-1).to(u.dtype)
                  for g, p in zip(grads, self._params, strict=True)]
        gp = torch.cat(pieces) if pieces else u.new_zeros(0)
        self._vjp_cache = (t, u.detach().clone(), lam.detach().clone(), gu.detach(), gp.detach())
        return gu, gp

    def vjp(self, out: Tensor, lam: Tensor, u: Tensor, t: float) -> None:
        """``out <- (df/du)^T lam`` (SciMLSensitivity's ``ODEFunction(vjp=...)`` hook)."""
        with self._guarded():
            out.copy_(self._vjps(lam, u, t)[0])

    def vjp_p(self, out: Tensor, lam: Tensor, u: Tensor, t: float) -> None:
        """``out <- (df/dp)^T lam`` over the flat parameter vector (the ``vjp_p`` hook)."""
        with self._guarded():
            out.copy_(self._vjps(lam, u, t)[1])


def reraise_callback_error(exc: BaseException, *callbacks: TorchCallbacks | None) -> None:
    """If a callback failed, raise its exception (with its own cause) in place of Julia's wrapper."""
    for cb in callbacks:
        if cb is not None and cb.error is not None:
            err = cb.error
            err.__suppress_context__ = True  # hide the JuliaError it travelled through
            raise err
