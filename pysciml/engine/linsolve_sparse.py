"""Sparse linear solves with ``W = M/(gamma dt) - J``: SuperLU factorizations and GMRES preconditioners.

:class:`SparseLUSolver` has :class:`~.linsolve.DenseLUSolver`'s interface (``set_jacobian``, ``factor``,
``solve``): the Jacobian comes as values on a fixed sparsity structure (:class:`SparseJacobian`: a sparse
``jac``, a sparse matrix implicit part, or a ``jac_prototype`` with the Jacobian compressed by column colouring,
engine/sparsity.py), ``W`` is assembled in CSC and factored by SciPy's SuperLU (``scipy.sparse.linalg.splu``),
one factorization per trajectory (one for the batch when a constant operator and one step size are shared).
Solves are differentiable: :class:`_FactorSolve` returns ``x = W^{-1} b`` and its backward pass is a solve with
``W^T`` through the same factors (``dL/db = W^{-T} g``, ``dL/dW_ij = -(W^{-T} g)_i x_j`` on the pattern; ``W^H``
and ``conj(x_j)`` for complex ``W``), so discrete adjoints through a Rosenbrock step differentiate ``J``'s values
as the dense path does. :func:`superlu` and :func:`apply_factors` serve the fully implicit RK steps
(engine/firk_sparse.py), which factor real and complex ``W`` on one :class:`WAssembly`.
:class:`Preconditioner` gives GMRES the diagonal of ``W`` (Jacobi), SciPy's incomplete LU (``spilu``) or one
algebraic-multigrid V-cycle (pyamg's Ruge-Stuben hierarchy, engine/amg.py). CPU only: CUDA tensors are
refused with an :class:`~pysciml.errors.InputError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..linsolve_options import SparseLU
from ..solution import Stats
from .amg import AMGFactor, require_pyamg
from .rhs import RHS
from .sparsity import Structure, as_pattern, decompress, seeds, structure_of, torch_sparse_entries

Tensor = torch.Tensor

__all__ = ["Preconditioner", "SparseJacobian", "SparseLUSolver", "WAssembly", "apply_factors", "factor_solve",
           "superlu"]


def _cpu_only(u: Tensor, what: str) -> None:
    if u.device.type != "cpu":
        raise InputError(
            f"{what} runs on the CPU (SciPy's SuperLU, spilu or pyamg); the state is on {u.device}. torch's CUDA "
            "sparse solve (torch.sparse.spsolve, cuDSS builds) is not wired in: it could not be tested here. On a "
            "GPU use GMRES(precondition='jacobi') or DenseLU(), or solve on the CPU")


class SparseJacobian:
    """``J``'s values ``(B, nnz)`` (``(1, nnz)`` for a constant operator) on one fixed :class:`Structure`.

    Sources, in order: the split problem's constant matrix (sparse: its stored entries; dense: its nonzeros);
    the problem's ``jac`` (a torch sparse tensor for unbatched problems: its structure, which must not change;
    a dense one: read on ``jac_prototype``); otherwise ``jac_prototype`` with one JVP per colour
    (:meth:`RHS.jvps`). Without any of these there is no structure: :class:`InputError`."""

    def __init__(self, rhs: RHS) -> None:
        self.rhs = rhs
        self.structure: Structure | None = None
        self._seeds: Tensor | None = None
        self._checked = False

    def _prototype(self) -> Structure | None:
        proto = self.rhs.jac_prototype
        return None if proto is None else structure_of(as_pattern(proto, self.rhs.n))

    def evaluate(self, t: Tensor, u: Tensor, f0: Tensor | None) -> Tensor:
        rhs, n = self.rhs, self.rhs.n
        if rhs.linear is not None:
            rhs.stats.njac += 1
            L = rhs.linear
            if L.layout != torch.strided:
                rows, cols, vals = torch_sparse_entries(L, n, "f_implicit")
            else:
                rows, cols = (a.cpu().numpy() for a in torch.nonzero(L, as_tuple=True))
                vals = L[torch.as_tensor(rows), torch.as_tensor(cols)]
            self.structure = Structure(n, rows.astype(np.int64), cols.astype(np.int64))
            return vals[None]
        if rhs.user_jac is not None:
            return self._user(t, u)
        if self.structure is None:
            self.structure = self._prototype()
            if self.structure is None:
                raise InputError(
                    "SparseLU() and GMRES(precondition=...) need the Jacobian's sparsity: give the problem "
                    "jac_prototype=... (a scipy.sparse matrix, torch sparse tensor or boolean mask; "
                    "pysciml.sparsity_pattern(f, u0, p) detects one), or a jac returning a torch sparse tensor")
        s = self.structure
        if s.ncolors == 0:  # an all-zero pattern
            return torch.zeros(u.shape[0], 0, dtype=u.dtype, device=u.device)
        if self._seeds is None:
            self._seeds = seeds(s, u.dtype, u.device)
        return decompress(rhs.jvps(t, u, self._seeds, f0), s)

    def _user(self, t: Tensor, u: Tensor) -> Tensor:
        rhs, n, b = self.rhs, self.rhs.n, u.shape[0]
        assert rhs.user_jac is not None
        rhs.stats.njac += 1
        out = rhs._guarded("jac", rhs.user_jac, rhs.jac_takes_p, t, u)
        if not isinstance(out, Tensor):
            raise InputError(f"jac must return a tensor (dense or torch sparse), got {type(out).__name__}")
        if out.layout != torch.strided:
            if rhs.batched:
                raise InputError("jac returned a sparse tensor for a batched problem; return a dense (B, n, n) "
                                 "Jacobian with jac_prototype=..., or solve the trajectories one by one")
            rows, cols, vals = torch_sparse_entries(out, n)
            if self.structure is None:
                self.structure = Structure(n, rows.astype(np.int64), cols.astype(np.int64))
            elif not (np.array_equal(rows, self.structure.rows) and np.array_equal(cols, self.structure.cols)):
                raise InputError("jac returned a sparse tensor whose structure differs from its first one; keep the "
                                 "same structure at every call (store explicit zeros)")
            vals = vals[None].to(rhs.dtype)
        else:
            if self.structure is None:
                self.structure = self._prototype()
                if self.structure is None:
                    raise InputError("SparseLU() with a dense jac needs jac_prototype=... (the pattern to read "
                                     "it on), or make jac return a torch sparse tensor")
            want = (b, n, n) if rhs.batched else (n, n)
            if tuple(out.shape) != want:
                raise InputError(f"jac must return a tensor of shape {want} (n = {n} state values), "
                                 f"got {tuple(out.shape)}")
            s = self.structure
            vals = out.reshape(b, n, n)[:, torch.as_tensor(s.rows), torch.as_tensor(s.cols)].to(rhs.dtype)
        if not self._checked:
            if not bool(torch.isfinite(vals.detach()).all()):
                raise InputError(f"jac returned NaN or Inf at t={float(t.reshape(-1)[0]):.6g} (the first call, "
                                 "at the initial state): check jac's formula there")
            self._checked = True
        return vals


class WAssembly:
    """``W = M inv - J`` on the union of ``J``'s and ``M``'s (or the identity's) patterns, in CSC order:
    ``indptr``, ``indices`` for SciPy, and the positions of ``J``'s and ``M``'s entries in ``W``'s data."""

    def __init__(self, s: Structure, mass: Tensor | None, dtype: torch.dtype, device: torch.device) -> None:
        n = s.n
        if mass is None:
            mr = mc = np.arange(n, dtype=np.int64)
            mvals = torch.ones(n, dtype=dtype, device=device)
        else:
            mr, mc = (a.cpu().numpy().astype(np.int64) for a in torch.nonzero(mass, as_tuple=True))
            mvals = mass[torch.as_tensor(mr), torch.as_tensor(mc)].to(dtype)
        jkey = s.cols * n + s.rows  # column-major keys: CSC order
        mkey = mc * n + mr
        keys = np.union1d(jkey, mkey)
        self.n = n
        self.rows = keys % n
        self.cols = keys // n
        self.indices = self.rows.astype(np.int32)
        self.indptr = np.searchsorted(self.cols, np.arange(n + 1)).astype(np.int32)
        self.jpos = torch.as_tensor(np.searchsorted(keys, jkey), device=device)
        self.mpos = torch.as_tensor(np.searchsorted(keys, mkey), device=device)
        self.dpos = torch.as_tensor(np.searchsorted(keys, np.arange(n) * (n + 1)), device=device)
        self.has_diag = np.isin(np.arange(n) * (n + 1), keys)
        self.mvals = mvals

    def values(self, jvals: Tensor, inv: Tensor) -> Tensor:
        """``W``'s data ``(B, nnzW)`` from ``J``'s values ``(Bj, nnz)`` and ``inv (B,)`` (``Bj`` 1 or ``B``)."""
        b = inv.shape[0]
        w = torch.zeros(b, self.rows.size, dtype=jvals.dtype, device=jvals.device)
        w = w.index_add(1, self.mpos, inv[:, None] * self.mvals)
        return w.index_add(1, self.jpos, -jvals.expand(b, -1))

    def matrix(self, data: np.ndarray) -> Any:
        import scipy.sparse as sp

        return sp.csc_array((data, self.indices, self.indptr), shape=(self.n, self.n))


def _factorize(w: WAssembly, data: Tensor, factor: Any) -> tuple[list[Any], Tensor]:
    """``factor(csc)`` per row of ``data``; ``(factors, ok)``, a factor ``None`` where ``W`` was singular or
    not finite."""
    arr = data.detach().cpu().numpy()
    factors: list[Any] = []
    ok = []
    for row in arr:
        lu = None
        if np.isfinite(row).all():
            try:
                lu = factor(w.matrix(row))
            except RuntimeError:  # SuperLU: "Factor is exactly singular"
                lu = None
        factors.append(lu)
        ok.append(lu is not None)
    return factors, torch.tensor(ok, device=data.device)


def superlu(w: WAssembly, data: Tensor, permc_spec: str) -> tuple[list[Any], Tensor]:
    """SciPy SuperLU factors of ``W`` per row of ``data (B, nnzW)`` (real or complex values on ``w``'s pattern);
    ``(factors, ok)`` as :func:`_factorize`."""

    def splu(a: Any) -> Any:
        from scipy.sparse.linalg import splu as factor

        return factor(a, permc_spec=permc_spec)

    return _factorize(w, data, splu)


def apply_factors(factors: list[Any], b: Tensor, trans: str) -> Tensor:
    """``A^{-1} b`` (``trans="T"``: ``A^{-T} b``) per row of ``b (B, n)`` (real or complex); one factor serves every
    row. No autograd (:func:`factor_solve` differentiates)."""
    arr = b.detach().cpu().numpy()
    if len(factors) == 1:
        lu = factors[0]
        out = np.zeros_like(arr) if lu is None else lu.solve(np.ascontiguousarray(arr.T), trans=trans).T
    else:
        out = np.stack([np.zeros_like(r) if lu is None else lu.solve(r, trans=trans)
                        for lu, r in zip(factors, arr, strict=True)])
    return torch.from_numpy(np.ascontiguousarray(out)).to(dtype=b.dtype, device=b.device)


class _FactorSolve(torch.autograd.Function):
    """``x = W^{-1} b`` through SciPy factors; backward: ``W^{-T} g`` and ``-(W^{-T} g)_i x_j`` on the pattern
    (complex ``W``: ``W^{-H} g`` and ``-(W^{-H} g)_i conj(x_j)``, torch's convention for complex gradients)."""

    @staticmethod
    def forward(ctx: Any, wvals: Tensor, b: Tensor, factors: list[Any], w: WAssembly) -> Tensor:
        x = apply_factors(factors, b, "N")
        ctx.factors, ctx.w = factors, w
        ctx.save_for_backward(x)
        ctx.shared = wvals.shape[0] == 1 and b.shape[0] > 1
        return x

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        (x,) = ctx.saved_tensors
        gb = apply_factors(ctx.factors, g, "H" if x.is_complex() else "T")  # torch's complex convention: W^{-H} g
        gw = None
        if ctx.needs_input_grad[0]:
            rows = torch.as_tensor(ctx.w.rows, device=g.device)
            cols = torch.as_tensor(ctx.w.cols, device=g.device)
            gw = -(gb[:, rows] * x[:, cols].conj())
            if ctx.shared:
                gw = gw.sum(dim=0, keepdim=True)
        return gw, gb, None, None


def factor_solve(wvals: Tensor, b: Tensor, factors: list[Any], w: WAssembly) -> Tensor:
    """``W^{-1} b``, through autograd only when ``wvals`` or ``b`` require grad."""
    if torch.is_grad_enabled() and (wvals.requires_grad or b.requires_grad):
        return _FactorSolve.apply(wvals, b, factors, w)
    return apply_factors(factors, b, "N")


class SparseLUSolver:
    """SuperLU of ``W`` per trajectory; ``factor`` once per step, ``solve`` per stage (see the module)."""

    def __init__(self, stats: Stats, mass: Tensor | None, opts: SparseLU) -> None:
        self.stats = stats
        self.mass = mass
        self.opts = opts
        self.jac: SparseJacobian | None = None
        self.jvals: Tensor | None = None
        self.live: Tensor | None = None  # J's values as evaluated (with their graph), for J v
        self.w: WAssembly | None = None
        self.wvals: Tensor | None = None
        self.factors: list[Any] = []
        self._factored_at: Tensor | None = None
        self._ok: Tensor | None = None

    def set_jacobian(self, rhs: RHS, t: Tensor, u: Tensor, f0: Tensor) -> None:
        _cpu_only(u, "SparseLU()")
        if self.jac is None:
            self.jac = SparseJacobian(rhs)
        elif rhs.linear is not None:  # constant operator: read once
            return
        self.jvals = self.jac.evaluate(t, u, f0)
        if self.w is None:
            assert self.jac.structure is not None
            self.w = WAssembly(self.jac.structure, self.mass, u.dtype, u.device)
        self._factored_at = None

    def factor(self, inv_gamma_dt: Tensor) -> Tensor:
        """Factor ``W = M inv_gamma_dt - J``; ``(B,)`` True where SuperLU succeeded (``W`` finite, nonsingular).
        Reuses the factors while neither ``J`` nor the step size changed."""
        assert self.jvals is not None and self.w is not None
        inv = inv_gamma_dt
        if (self._factored_at is not None and self._ok is not None and self._factored_at.shape == inv.shape
                and torch.allclose(self._factored_at, inv, rtol=1e-13, atol=0.0)):
            return self._ok
        shared = self.jvals.shape[0] == 1 and bool((inv == inv[0]).all())
        self.wvals = self.w.values(self.jvals, inv[:1] if shared else inv)
        self.stats.nlu += 1
        self.factors, ok = superlu(self.w, self.wvals, self.opts.permc_spec)
        self._ok = ok.expand(inv.shape[0]) if shared else ok
        self._factored_at = inv
        return self._ok

    def solve(self, rhs_vec: Tensor) -> tuple[Tensor, Tensor | None]:
        assert self.wvals is not None and self.w is not None
        self.stats.nsolve += 1
        return factor_solve(self.wvals, rhs_vec, self.factors, self.w), None


class Preconditioner:
    """Right preconditioner ``P ~ W^{-1}`` for GMRES: ``"jacobi"`` (``1 / diag(W)``, torch ops, any device),
    ``"ilu"`` (SciPy ``spilu`` of ``W`` per trajectory, CPU) or ``"amg"`` (one V-cycle of a Ruge-Stuben hierarchy
    of ``W`` per trajectory, :class:`~.amg.AMGFactor`, CPU, needs pyamg). ILU and AMG are rebuilt at every
    ``factor`` and applied through :class:`_FactorSolve` with the factors as constants, so gradients pass through
    ``P v`` as through a fixed matrix; a trajectory whose ILU or AMG setup fails gets no preconditioning."""

    def __init__(self, kind: str, mass: Tensor | None) -> None:
        if kind == "amg":
            require_pyamg()  # fail at the start of the solve, naming the fix
        self.kind = kind
        self.mass = mass
        self.jac: SparseJacobian | None = None
        self.jvals: Tensor | None = None
        self.live: Tensor | None = None  # J's values as evaluated (with their graph), for J v
        self.w: WAssembly | None = None
        self.diag: Tensor | None = None
        self.factors: list[Any] = []
        self.wvals: Tensor | None = None
        self._scipy: dict[bool, tuple[Tensor, Callable[[Tensor], Tensor]]] = {}  # per transpose: (values, J v)

    def set_jacobian(self, rhs: RHS, t: Tensor, u: Tensor, f0: Tensor) -> None:
        if self.kind in ("ilu", "amg"):
            _cpu_only(u, f"GMRES(precondition={self.kind!r})")
        if self.jac is None:
            self.jac = SparseJacobian(rhs)
        elif rhs.linear is not None:
            return
        self.live = self.jac.evaluate(t, u, f0)
        self.jvals = self.live.detach()
        if self.w is None:
            assert self.jac.structure is not None
            self.w = WAssembly(self.jac.structure, self.mass, u.dtype, u.device)

    def factor(self, inv: Tensor) -> None:
        assert self.jvals is not None and self.w is not None
        wvals = self.w.values(self.jvals, inv.detach())
        if self.kind == "jacobi":
            d = wvals[:, self.w.dpos] * torch.as_tensor(self.w.has_diag, device=wvals.device)
            self.diag = torch.where(d == 0, torch.ones_like(d), d)
            return

        def spilu(a: Any) -> Any:
            from scipy.sparse.linalg import spilu as incomplete

            return incomplete(a)

        self.wvals = wvals
        self.factors, _ = _factorize(self.w, wvals, AMGFactor if self.kind == "amg" else spilu)
        identity = [f is None for f in self.factors]
        if any(identity):  # spilu or AMG failed there: no preconditioning for those trajectories
            self.factors = [_Identity() if f is None else f for f in self.factors]

    def jac_product(self, transpose: bool = False) -> Callable[[Tensor], Tensor] | None:
        """``v -> J v`` ``(B, n)`` by the formed sparse Jacobian (differentiable through its values; ``transpose``:
        ``v -> J^T v``, without a graph), or ``None`` before one is formed. The same product as a JVP at the
        Jacobian's point, for one sparse multiply in place of a forward-mode pass through ``f`` (92 % of GMRES's
        time on the 2-D Brusselator)."""
        vals = self.jvals if transpose else self.live
        if vals is None or self.jac is None or self.jac.structure is None:
            return None
        s = self.jac.structure
        rows = torch.as_tensor(s.rows, device=vals.device)
        cols = torch.as_tensor(s.cols, device=vals.device)
        src, dst = (rows, cols) if transpose else (cols, rows)
        fast = None
        if vals.device.type == "cpu":  # SciPy's matrices built once per Jacobian, not at every factor (new h)
            kept = self._scipy.get(transpose)
            if kept is None or kept[0] is not vals:
                kept = self._scipy[transpose] = (vals, _scipy_product(s, vals, transpose))
            fast = kept[1]

        def product(v: Tensor) -> Tensor:
            if fast is not None and not (torch.is_grad_enabled() and (v.requires_grad or vals.requires_grad)):
                return fast(v)
            return torch.zeros_like(v).index_add_(1, dst, vals.to(v.dtype) * v[:, src])

        return product

    def transposed_now(self) -> Callable[[Tensor], Tensor]:
        """``v -> P^T v`` (no graph) for the current ``P``, kept for the backward's transposed solve."""
        if self.kind == "jacobi":
            diag = self.diag
            assert diag is not None
            return lambda v: v / diag
        factors = self.factors
        return lambda v: apply_factors(factors, v, "T")

    def __call__(self, v: Tensor) -> Tensor:
        if self.kind == "jacobi":
            assert self.diag is not None
            return v / self.diag
        assert self.wvals is not None and self.w is not None
        return factor_solve(self.wvals, v, self.factors, self.w)


def _scipy_product(s: Structure, vals: Tensor, transpose: bool) -> Callable[[Tensor], Tensor]:
    """``v -> J v`` (``J^T v``) ``(B, n)`` through SciPy CSR matrices of ``vals`` ``(Bj, nnz)`` on ``s`` (``Bj`` 1
    or ``B``), no graph: used where none is needed (under ``no_grad``, or when neither ``v`` nor ``J`` has one).
    The same product as the index-add in :meth:`Preconditioner.jac_product`, 4.8x faster on the 2-D Brusselator
    at N = 128 (1.5 against 7.1 ms per product, one thread, loaded machine, 2026-12-01), where the index-add cost
    as much as an AMG V-cycle."""
    import scipy.sparse as sp

    r, c = (s.cols, s.rows) if transpose else (s.rows, s.cols)
    arr = vals.detach().cpu().numpy()
    mats = [sp.csr_matrix((row, (r, c)), shape=(s.n, s.n)) for row in arr]

    def product(v: Tensor) -> Tensor:
        x = v.detach().cpu().numpy()
        out = mats[0] @ x.T if len(mats) == 1 else np.stack([m @ xi for m, xi in zip(mats, x, strict=True)]).T
        return torch.from_numpy(np.ascontiguousarray(out.T)).to(dtype=v.dtype, device=v.device)

    return product


class _Identity:
    """A stand-in factor that solves nothing (``x = b``)."""

    def solve(self, b: np.ndarray, trans: str = "N") -> np.ndarray:
        return b.copy()
