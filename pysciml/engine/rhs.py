"""The right-hand side as the engine sees it: flat batched states ``(B, n)``, times ``(B,)``, with counters.

:class:`RHS` adapts the user's ``f(t, u, p)`` (or ``f(t, u)``) to the engine's layout, checks its first
output, re-raises its errors with the time at which they happened, and provides the Jacobian (user
``jac``, reverse-mode autodiff with forward-mode and finite-difference fallbacks), Jacobian-vector products and
``df/dt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .._versions import version_of
from ..errors import InputError, RHSError, warn_caller
from ..problem import call_f
from ..solution import Stats
from .graph_check import ensure_differentiable

Tensor = torch.Tensor

__all__ = ["RHS", "RHSError"]

# exceptions that are not the user's error: ours, and torch.utils.checkpoint's signal that a recomputation
# has produced what the backward pass needs (raised from inside f, it must reach the checkpoint machinery)
_PASS_THROUGH: tuple[type[BaseException], ...] = (InputError,) + tuple(
    e for e in (getattr(torch.utils.checkpoint, "_StopRecomputationError", None),) if e is not None)


# autodiff Jacobians, cheapest first; a mode that fails once is dropped for the rest of the solve (RHS.jac)
JAC_MODES = ("reverse", "vmap_reverse", "forward")


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
        tgrad_takes_p: bool = True,
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
        self.tgrad_takes_p = tgrad_takes_p
        self.linear = linear
        self.autodiff = autodiff
        self.name = name
        # the Jacobian's sparsity pattern, as the problem holds it (None: dense); read by engine/linsolve_sparse.py
        self.jac_prototype = getattr(prob, "jac_prototype", None)
        # compiled autodiff Jacobians by reverse mode (the problem's f is itself a gradient: HamiltonianProblem)
        self.reverse_jacobian = bool(getattr(prob, "reverse_jacobian", False))
        self.checked = False
        self.jac_modes = list(JAC_MODES)  # autodiff Jacobians: what this solve tries, in order
        self.jac_checked = False
        self.graph_checked = False  # f checked differentiable (before the first autodiff Jacobian)
        self._basis_cache: Tensor | None = None
        self.tgrad_checked = False
        self._last: tuple[Tensor, int | None] | None = None  # the latest output and its version counter
        # in-place writes are detected by version counters, which the tensors a solve makes under
        # torch.inference_mode() lack: decided once per solve, not at every call of f
        self._versioned = not torch.is_inference_mode_enabled()
        #: whether a tensor in ``p`` or a parameter of an ``nn.Module`` ``f`` requires grad (``None``: not asked yet;
        #: :func:`~.compiled_parts.tracks_grad` answers it once per solve)
        self.leaves_require_grad: bool | None = None
        self.flat = len(self.shape) == 1  # state is a vector: no reshapes needed
        self.dtype = prob.u0.dtype
        self.device = prob.u0.device

    # ------------------------------------------------------------------ evaluation
    def _user_call(self, fn: Callable[..., Tensor], takes_p: bool, t: Tensor, u: Tensor) -> Tensor:
        if self.batched:
            tu, uu = t, (u if self.flat else u.reshape(u.shape[0], *self.shape))
        else:
            tu, uu = t[0], (u[0] if self.flat else u[0].reshape(self.shape))
        return call_f(fn, takes_p, self.p, tu, uu)

    def _guarded(self, what: str, fn: Callable[..., Tensor], takes_p: bool, t: Tensor, u: Tensor) -> Any:
        """Call the user's ``fn`` in engine layout; its errors come back as :class:`RHSError` with the time,
        and an ``fn`` that writes into ``u`` in place is refused (the engine's stages share that tensor)."""
        try:
            version = version_of(u) if self._versioned else None
            out = self._user_call(fn, takes_p, t, u)
        except _PASS_THROUGH:
            raise
        except Exception as exc:  # re-raise with where it happened
            tv = float(t.detach().reshape(-1)[0]) if t.numel() else float("nan")
            raise RHSError(f"{what}(t, u, p) raised {type(exc).__name__} at t={tv:.6g}: {exc}") from exc
        if version is not None and u._version != version:
            raise InputError(
                f"{what} modified its input u in place (u += ..., u[i] = ..., u.mul_(...)); the solver's stages "
                f"share that tensor, so the answer would be wrong. {what} must leave u unchanged and return a "
                "new tensor (du = ...; return du)"
            )
        return out

    def raw(self, t: Tensor, u: Tensor) -> Tensor:
        """``f`` at engine-layout ``t (B,)``, ``u (B, n)`` -> ``(B, n)``, without counting."""
        if not self.checked:  # the first call sees a copy: an f that writes into u cannot touch the caller's u0
            out = self._guarded(self.name, self.f, self.takes_p, t, u.clone())
            self._check_output(out, t, u)
        else:
            out = self._guarded(self.name, self.f, self.takes_p, t, u)
        if self.flat:
            return out if self.batched else out.unsqueeze(0)
        return out.reshape(u.shape[0], self.n)

    def __call__(self, t: Tensor, u: Tensor) -> Tensor:
        self.stats.nf += 1
        out = self.raw(t, u)
        last = self._last
        if last is not None and last[1] is not None and last[0]._version != last[1]:
            raise InputError(
                f"{self.name} changed a tensor it returned earlier (it fills one buffer in place and returns it "
                "each call); the solver keeps earlier results as stages, so they must not change. Return a new "
                "tensor from every call"
            )
        self._last = (out, version_of(out) if self._versioned else None)
        return out

    def _check_output(self, out: Any, t: Tensor, u: Tensor) -> None:
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
        if torch.is_grad_enabled() and (u.requires_grad or out.requires_grad) and self.linear is None:
            ensure_differentiable(self.f, self._counted_raw, t, u, self.name)

    def _ensure_checked(self, t: Tensor, u: Tensor) -> None:
        """Check ``f``'s first output (:meth:`_check_output`) outside any torch.func transform: a solver part
        whose first use of ``f`` is a Jacobian would otherwise run the checks on transformed tensors."""
        if not self.checked:
            self(t, u)

    def _counted_raw(self, t: Tensor, u: Tensor) -> Tensor:
        """:meth:`raw`, counted in ``stats.nf`` (the differentiability check's calls are calls of f too)."""
        self.stats.nf += 1
        return self.raw(t, u)

    # ------------------------------------------------------------------ derivatives
    def jac(self, t: Tensor, u: Tensor, f0: Tensor | None = None) -> Tensor:
        """Jacobian ``df/du`` per trajectory: ``(B, n, n)``, ``f0 = f(t, u)`` if the caller has it.

        Sources, in order: the constant ``linear`` operator; the problem's ``jac``; autodiff, exact to
        round-off, trying the modes of ``JAC_MODES`` in turn (a mode that fails is dropped for the rest of the
        solve): :meth:`_jac_reverse` (the default: one recorded call of ``f`` and one batched backward pass),
        :meth:`_jac_vmap_reverse` (torch.func VJPs), :meth:`_jac_forward_mode` (inside
        ``torch.utils.checkpoint``, where both reverse modes are refused); finally finite differences, with
        one warning when autodiff of ``f`` fails altogether. Every call adds 1 to ``stats.njac``; autodiff
        Jacobians add nothing to ``stats.nf`` (its calls of ``f`` are counted as this one Jacobian), finite
        differences add ``n`` (``n + 1`` without ``f0``)."""
        self.stats.njac += 1
        b, n = u.shape
        if self.linear is not None:  # a sparse operator is densified here; use GMRES() to keep it sparse
            L = self.linear.to_dense() if self.linear.is_sparse else self.linear
            return L.expand(b, n, n)
        if self.user_jac is not None:
            return self._user_jacobian(t, u)
        if self.autodiff and not self.graph_checked and (failure := self._check_graph(t, u)) is not None:
            self._give_up_autodiff(failure)
        if self.autodiff:
            for mode in self.jac_modes[:]:
                try:
                    if mode == "reverse":
                        return self._jac_reverse(t, u, f0)
                    return self._jac_vmap_reverse(t, u) if mode == "vmap_reverse" else self._jac_forward_mode(t, u)
                except _PASS_THROUGH:  # ours, and a checkpoint's recomputation stopping early inside f
                    raise
                except Exception as exc:  # noqa: PERF203  (the next mode, for the rest of this solve)
                    self.jac_modes.remove(mode)
                    failure = exc
            self._give_up_autodiff(failure)
        return self._jac_fd(t, u, f0)

    def _check_graph(self, t: Tensor, u: Tensor) -> InputError | None:
        """Once per solve, before the first autodiff Jacobian: does ``f`` stay in autograd's graph? An ``f``
        that leaves it (numpy, ``.item()``, ``.detach()``) would give :meth:`_jac_reverse` a silently wrong
        Jacobian; it gets finite differences instead. The check (:func:`ensure_differentiable`: three calls of
        ``f`` and one backward pass, not counted in ``stats.nf``) runs once per function and process. Returns
        the reason to give up autodiff, or ``None``."""
        self._ensure_checked(t, u)
        self.graph_checked = True
        try:
            ensure_differentiable(self.f, self.raw, t, u, self.name)
        except InputError as exc:
            return exc
        return None

    def _give_up_autodiff(self, failure: Exception) -> None:
        """``f`` is not differentiable by autodiff: finite differences from now on, said once."""
        self.autodiff = False
        warn_caller(
            f"autodiff of {self.name} failed ({type(failure).__name__}: {failure}); "
            "using finite-difference Jacobians instead (pass autodiff=False to silence this, "
            "or give the problem a jac)",
            RuntimeWarning,
        )

    def _user_jacobian(self, t: Tensor, u: Tensor) -> Tensor:
        assert self.user_jac is not None
        b, n = u.shape
        out = self._guarded("jac", self.user_jac, self.jac_takes_p, t, u)
        if isinstance(out, Tensor) and out.layout != torch.strided:  # a torch sparse Jacobian, for a dense solver
            out = out.to_dense()
        if not self.jac_checked:
            want = (b, n, n) if self.batched else (n, n)
            if not isinstance(out, Tensor) or tuple(out.shape) != want:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise InputError(f"jac must return a tensor of shape {want} (n = {n} state values), got {got}")
            if not bool(torch.isfinite(out.detach()).all()):
                raise InputError(f"jac returned NaN or Inf at t={float(t.reshape(-1)[0]):.6g} (the first call, at "
                                 "the initial state): check jac's formula there")
            self.jac_checked = True
        return out.reshape(b, n, n).to(self.dtype)

    def _jac_reverse(self, t: Tensor, u: Tensor, f0: Tensor | None) -> Tensor:
        """Rows of ``df/du`` by reverse mode on an ordinary autograd graph: ``f`` once with autograd recording,
        then one backward pass vectorised over the ``n`` cotangents ``e_i`` (``torch.autograd.grad(...,
        is_grads_batched=True)``), each trajectory's cotangent hitting only its own outputs.

        Cost: one call of ``f`` plus one batched backward pass, whatever ``n`` (up to the backward's own
        vectorisation): on 3-state problems (ROBER, Oregonator) about 7 calls of ``f`` in time, against 11 for
        torch.func's vmapped VJPs (:meth:`_jac_vmap_reverse`) and 35 for its vmapped JVPs; per-operation
        dispatch, not arithmetic, is what a tiny ``f`` costs, and this mode has the fewest operations (no
        functorch wrappers on the forward call). The result is differentiable (``create_graph``) when grad mode
        is on and ``u`` or ``f``'s parameters require grad (``f0.requires_grad`` says so; without ``f0`` it is
        assumed), so discrete adjoints differentiate through it. Saved-tensor hooks are refused (inside
        ``torch.utils.checkpoint`` every backward pass here would recompute the segment so far): the
        forward-mode fallback serves there."""
        b, n = u.shape
        self._ensure_checked(t, u)
        graph = torch.is_grad_enabled() and (u.requires_grad or f0 is None or f0.requires_grad)
        with torch.enable_grad(), torch.autograd.graph.disable_saved_tensors_hooks(
                "saved-tensor hooks (torch.utils.checkpoint) are active: use the forward-mode Jacobian"):
            x = u if graph and u.requires_grad else u.detach().requires_grad_(True)
            out = self.raw(t, x)
            if not out.requires_grad:  # f does not depend on u
                return torch.zeros(b, n, n, dtype=self.dtype, device=u.device)
            rows = torch.autograd.grad(out, x, self._basis(u), create_graph=graph, is_grads_batched=True,
                                       allow_unused=True, materialize_grads=True)[0]
        return rows.transpose(0, 1).to(self.dtype)  # (n_i, B, n_j) -> (B, n_i, n_j) = dF_i/du_j

    def _basis(self, u: Tensor) -> Tensor:
        """The unit vectors ``e_i`` for every trajectory, ``(n, B, n)``: the same at every step, so cached."""
        b, n = u.shape
        basis = self._basis_cache
        if basis is None or basis.shape[1] != b or basis.dtype != u.dtype or basis.device != u.device:
            basis = self._basis_cache = torch.eye(n, dtype=u.dtype, device=u.device)[:, None, :].expand(n, b, n)
        return basis

    def _jac_vmap_reverse(self, t: Tensor, u: Tensor) -> Tensor:
        """Rows of ``df/du`` by torch.func: one VJP per output component, vmapped; the fallback where the
        batched backward pass of :meth:`_jac_reverse` fails (a backward formula without a batching rule)."""
        self._ensure_checked(t, u)
        _, pullback = torch.func.vjp(lambda x: self.raw(t, x), u)
        rows = torch.func.vmap(lambda v: pullback(v)[0])(self._basis(u))  # (n_i, B, n_j) = dF_i/du_j
        return rows.permute(1, 0, 2).to(self.dtype)

    def _jac_forward_mode(self, t: Tensor, u: Tensor) -> Tensor:
        """Columns of ``df/du`` by forward mode (vmapped JVPs): the fallback where both reverse modes are
        refused, inside ``torch.utils.checkpoint`` (saved-tensor hooks; forward mode saves nothing), so
        checkpointed discrete adjoints keep exact Jacobians. About 35 calls of ``f`` in time on 3 states."""
        self._ensure_checked(t, u)
        cols = torch.func.vmap(lambda v: torch.func.jvp(lambda x: self.raw(t, x), (u,), (v,))[1])(self._basis(u))
        return cols.permute(1, 2, 0).to(self.dtype)  # (n_j, B, n_i) -> (B, n_i, n_j)

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
            self._ensure_checked(t, u)
            return torch.func.jvp(lambda x: self.raw(t, x), (u,), (v,))[1].to(self.dtype)
        if f0 is None:
            f0 = self(t, u)
        vn = v.norm(dim=1).clamp(min=torch.finfo(u.dtype).tiny)
        h = math.sqrt(torch.finfo(u.dtype).eps) * (1.0 + u.norm(dim=1)) / vn
        return (self(t, u + h[:, None] * v) - f0) / h[:, None]

    def jvps(self, t: Tensor, u: Tensor, seeds: Tensor, f0: Tensor | None = None) -> Tensor:
        """``J s`` for every seed row of ``seeds (k, n)`` and trajectory: ``(k, B, n)``, counted as one Jacobian
        (``stats.njac``). Autodiff: forward-mode JVPs vmapped over the seeds (differentiable when ``u`` or
        ``f``'s parameters carry a graph); otherwise, or where autodiff of ``f`` fails (said once), forward
        differences along each seed with step ``sqrt(eps) max(1, max |u_j| over the seed's columns)`` (``k``
        calls of ``f``, ``k + 1`` without ``f0``). For compressed sparse Jacobians (engine/sparsity.py)."""
        self.stats.njac += 1
        k, b = seeds.shape[0], u.shape[0]
        if self.autodiff and not self.graph_checked and (failure := self._check_graph(t, u)) is not None:
            self._give_up_autodiff(failure)
        if self.autodiff:
            try:
                return torch.func.vmap(lambda v: torch.func.jvp(lambda x: self.raw(t, x), (u,), (v,))[1])(
                    seeds[:, None, :].expand(k, b, self.n)).to(self.dtype)
            except _PASS_THROUGH:
                raise
            except Exception as exc:  # finite differences for the rest of the solve
                self._give_up_autodiff(exc)
        if f0 is None:
            f0 = self(t, u)
        eps = math.sqrt(torch.finfo(u.dtype).eps)
        out = []
        for s in seeds:
            h = eps * (u.abs() * s).amax(dim=1).clamp(min=1.0)  # (B,)
            out.append((self(t, u + h[:, None] * s) - f0) / h[:, None])
        return torch.stack(out)

    def tgrad(self, t: Tensor, u: Tensor, f0: Tensor, dt: Tensor | None = None) -> Tensor:
        """``df/dt`` per trajectory, ``(B, n)``: the problem's ``tgrad``, else one forward difference (one extra
        call of ``f``) with a step relative to the solver's step ``dt`` (``sqrt(eps) |dt|``, at least
        ``100 eps |t|`` so ``t + h`` differs from ``t``; the step actually taken is ``(t + h) - t``): a step
        relative to ``|t|`` would be far too coarse at large ``t`` (``t0 = 1e8``: ``h = 1.5``). Its error enters
        a Rosenbrock step only through the ``dt d f_t`` term. Without ``dt`` (callers outside the step
        loop) the scale is ``max(|t|, 1)``."""
        if self.linear is not None:
            return torch.zeros_like(u)
        if self.user_tgrad is not None:
            out = self._guarded("tgrad", self.user_tgrad, self.tgrad_takes_p, t, u)
            if not self.tgrad_checked:
                want = (u.shape[0], *self.shape) if self.batched else self.shape
                if not isinstance(out, Tensor) or tuple(out.shape) != tuple(want):
                    got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                    raise InputError(f"tgrad must return df/dt shaped like u {tuple(want)}, got {got}")
                self.tgrad_checked = True
            return out.reshape(u.shape[0], self.n).to(self.dtype)
        eps = torch.finfo(t.dtype).eps
        scale = t.abs().clamp(min=1.0) if dt is None else dt.abs()
        h = torch.maximum(math.sqrt(eps) * scale, 100 * eps * t.abs()).clamp(min=torch.finfo(t.dtype).tiny)
        h = (t + h) - t
        return (self(t + h, u) - f0) / h[:, None]
