"""The pieces every compiled program is built from (:mod:`.compiled`, :mod:`.compiled_ark`,
:mod:`.compiled_control`, :mod:`.compiled_loop`): the program cache and its backend, the traceable ``f``, Jacobian
and LU factorisation, the control row a step returns, and the ``_Program`` wrapper that compiles and falls back."""

from __future__ import annotations

import copy
import logging
import math
import time
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch.autograd import forward_ad

from ..errors import warn_caller
from ..problem import call_f
from ..solution import Stats
from .compiled_cpp_loop import has_stack_output, stack_output_codegen, stack_output_key
from .linsolve import DenseLUSolver
from .loop_constants import lift_loop_constants
from .loop_records import finite_rows
from .rhs import RHS

Tensor = torch.Tensor

CACHE_SIZE = 64
"""Compiled programs kept (least recently used dropped first)."""

_CACHE: OrderedDict[tuple, _Program] = OrderedDict()
_COUNT = [0]  # graphs handed to the backend so far (one per compile or recompile)
_FRESH_F: dict[tuple, set[int]] = {}  # (signature less f, f's code) -> identities of the functions f seen
FRESH_F_WARNING = 3
"""After this many distinct function objects with the same code as ``f`` (and otherwise the same signature), a
warning says that ``f`` is recreated per solve, so every solve compiles anew."""


def note_fresh_f(f: Any, signature: tuple, what: str = "f") -> None:
    """Warn (once per signature) when ``f`` is a new closure or lambda at every solve: programs are cached by the
    function's identity, so each solve compiles anew. ``signature``: the program's key without ``f``'s identity."""
    if not isinstance(f, types.FunctionType):
        return
    seen = _FRESH_F.setdefault((signature, f.__code__), set())
    seen.add(id(f))
    if len(seen) == FRESH_F_WARNING:
        warn_caller(f"compile=True: {what} ({f.__qualname__}) is a new function object at each solve (a lambda or "
                    "closure made per call), so each solve compiles its program anew; define it once and pass "
                    "what changes through p", RuntimeWarning)


def cached(key: tuple) -> _Program | None:
    """The compiled program cached under ``key``, if any (its place in the cache's order unchanged)."""
    return _CACHE.get(key)


def cached_program(key: tuple, make: Callable[[str], _Program], prefix: str = "") -> _Program:
    """The compiled program cached under ``key`` (marked most recently used), else ``make(tag)``'s, cached (the
    least recently used dropped beyond :data:`CACHE_SIZE`). ``tag``: ``prefix``, the cache's size and the key's
    hash, which name the program's code objects."""
    prog = _CACHE.get(key)
    if prog is not None:
        _CACHE.move_to_end(key)
        return prog
    prog = _CACHE[key] = make(f"{prefix}{len(_CACHE)}_{abs(hash(key)) % 10**8}")
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return prog


def compile_count() -> int:
    """How many graphs the compiled path has compiled in this process (a recompile counts as one more)."""
    return _COUNT[0]


def clear_cache() -> None:
    """Forget every compiled program (the next compiled solve of each signature compiles again)."""
    _CACHE.clear()
    _FRESH_F.clear()


def _backend(gm: torch.fx.GraphModule, example_inputs: list[Any], cpp_wrapper: bool = True,
             cpp_backward: bool = False, lift: bool = False) -> Any:
    """Inductor with its C++ wrapper (the generated Python wrapper's own overhead was a third of a small step:
    150 -> 95 us per Rodas5P step on the Oregonator), counted (``compile_count``). ``cpp_wrapper=False``
    (:func:`python_wrapper_backend`): the Python wrapper, for differentiated ``while_loop`` programs, whose forward
    (``while_loop_stack_output``) torch 2.13's C++ wrapper cannot generate; with ``cpp_backward``
    (:func:`split_wrapper_backend`) their backward graph gets the C++ wrapper, and their forward graph too where
    :mod:`.compiled_cpp_loop` generates it (``CPP_FORWARD``). ``lift``: the loop constants lifted on the Python
    wrapper too (:func:`python_lifted_backend`)."""
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner

    _refuse_grad_in_loop(gm, example_inputs)
    _COUNT[0] += 1
    quiet = logging.getLogger("torch._inductor.ir")  # "lu_factor_ex has no c-shim, using the proxy executor"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        cpp_forward = CPP_FORWARD and cpp_backward and not cpp_wrapper
        patches: dict[str, Any] = {"cpp_wrapper": cpp_wrapper,
                                   "unsafe_marked_cacheable_functions": _cacheable_hops(cpp_forward)}
        # the C++ wrapper leaves while_loop bodies' tensor constants undeclared, and the Python wrapper passes those of
        # a loop nested in a loop's body to its kernel as non-tensors: loop_constants lifts them
        if cpp_wrapper or lift:
            patches["post_grad_custom_pre_pass"] = lift_loop_constants()
        inner = _cpp_backward_inner if cpp_backward and not cpp_wrapper else compile_fx_inner
        return compile_fx(gm, example_inputs, inner_compile=inner, config_patches=patches)
    finally:
        quiet.setLevel(level)


# The control-flow operators of pysciml's programs. torch 2.13's FX graph cache and AOTAutograd cache skip every graph
# holding a higher-order operator unless it is marked cacheable: the marking opts these three in, so that a second
# process loads a whole-loop program from inductor's disk cache instead of lowering it again. Their bodies are
# subgraphs of the cached graph, pickled into its cache key with it (a changed loop body, e.g. another f, misses:
# tests/test_compiled_disk_cache.py); the value keys the entries by torch's version and by the forward graphs' wrapper
# where :mod:`.compiled_cpp_loop` may generate them (``CPP_FORWARD``; its source's hash: AOTAutograd's cache key does
# not see the inner compile function, so without it a program compiled with another setting or version of that
# module would be loaded).
_CACHEABLE_HOPS = ("torch.ops.higher_order.while_loop", "torch.ops.higher_order.while_loop_stack_output",
                   "torch.ops.higher_order.cond")


def _cacheable_hops(cpp_forward: bool = False) -> dict[str, str]:
    """inductor's ``unsafe_marked_cacheable_functions`` with pysciml's control-flow operators added (the user's own
    markings kept); ``cpp_forward``: for a program whose forward graph may take :mod:`.compiled_cpp_loop`."""
    from torch._inductor import config

    version = f"{torch.__version__} {stack_output_key()}" if cpp_forward else torch.__version__
    return {**config.unsafe_marked_cacheable_functions, **dict.fromkeys(_CACHEABLE_HOPS, version)}


CPP_FORWARD = True
"""A differentiated loop program's forward graph (``while_loop_stack_output``) on inductor's C++ wrapper, generated
by :mod:`.compiled_cpp_loop` (the default; the Python wrapper where that fails). ``False``: the Python wrapper (for
comparisons; programs compiled before keep their wrapper)."""


def _cpp_backward_inner(gm: torch.fx.GraphModule, example_inputs: list[Any], **kwargs: Any) -> Any:
    """Inductor's ``compile_fx_inner`` with the C++ wrapper (and the loop constants lifted, as :func:`_backend`
    lifts them) for a backward graph and, with ``CPP_FORWARD``, for a forward graph running
    ``while_loop_stack_output`` (:func:`~.compiled_cpp_loop.stack_output_codegen`); a forward graph that fails
    there, or holds no such loop, compiles on the Python wrapper."""
    from torch._inductor import config
    from torch._inductor.compile_fx import compile_fx_inner

    if kwargs.get("is_backward"):
        with config.patch(post_grad_custom_pre_pass=lift_loop_constants()):
            return compile_fx_inner(gm, example_inputs, **{**kwargs, "cpp_wrapper": True})
    if CPP_FORWARD and has_stack_output(gm):
        original = copy.deepcopy(gm)  # inductor's graph passes rewrite gm in place: the fallback starts afresh
        try:
            with stack_output_codegen(), config.patch(post_grad_custom_pre_pass=lift_loop_constants()):
                return compile_fx_inner(gm, example_inputs, **{**kwargs, "cpp_wrapper": True})
        except Exception as exc:  # noqa: BLE001 - any failure of the C++ form: the Python wrapper's form below
            logging.getLogger(__name__).info("while_loop_stack_output on the C++ wrapper failed (%s): Python "
                                             "wrapper", _first_line(exc))
        gm = original
    return compile_fx_inner(gm, example_inputs, **kwargs)


def _refuse_grad_in_loop(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> None:
    """Raise where a subgraph (a ``while_loop`` body) of a program with inputs requiring grad calls
    ``torch.func.grad`` (an HNN's vector field, :class:`~pysciml.HamiltonianProblem` under ``compile=True``): torch
    2.13 computes such a loop's values wrongly when the parameters ``grad``'s function closes over require grad (under
    the ``aot_eager`` backend too; ``tests/test_compiled_hamiltonian.py``), so the solve falls back to the per-step
    programs, which are right."""
    if not torch.is_grad_enabled() or not any(getattr(x, "requires_grad", False) for x in example_inputs):
        return  # (Dynamo compiles in the caller's grad mode: no_grad programs are not differentiated)
    grad_calls = ("_grad_increment_nesting",)
    for name, module in gm.named_modules():
        if name and isinstance(module, torch.fx.GraphModule) and any(
                node.op == "call_function" and getattr(node.target, "__name__", "") in grad_calls
                for node in module.graph.nodes):
            raise NotImplementedError("torch.func.grad inside a differentiated while_loop (wrong values in torch "
                                      f"{torch.__version__})")


def python_wrapper_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
    """:func:`_backend` with inductor's Python wrapper."""
    return _backend(gm, example_inputs, cpp_wrapper=False)


def python_lifted_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
    """:func:`_backend` with inductor's Python wrapper and the loop constants lifted (:mod:`.loop_constants`): the
    Python wrapper passes a constant of a loop nested in a loop's body to its kernel as a non-tensor (torch 2.13)."""
    return _backend(gm, example_inputs, cpp_wrapper=False, lift=True)


def split_wrapper_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
    """:func:`_backend` with inductor's C++ wrapper for the backward graph and for the forward graph where
    :mod:`.compiled_cpp_loop` generates it (``CPP_FORWARD``; else the Python wrapper): a differentiated explicit-RK
    ``while_loop`` program's loops then run their bodies without the Python wrapper's per-call work (spiral
    training: see ``docs/benchmarks.md``)."""
    return _backend(gm, example_inputs, cpp_wrapper=False, cpp_backward=True)


_ITEM_DTYPES = (torch.float64, torch.int64, torch.int32, torch.int16, torch.int8)


def _is_item_scalar(x: Any) -> bool:
    """A 0-d CPU tensor of a dtype for which Dynamo (torch 2.13) records the value as a symbol (``item_memo``)."""
    return isinstance(x, Tensor) and x.dim() == 0 and x.dtype in _ITEM_DTYPES and x.device.type == "cpu"


def _own_code(fn: Callable[..., Any], tag: str, backend: Callable[..., Any] | None = None,
              per_solve: bool = False) -> Callable[..., Any]:
    """``fn`` compiled with a code object of its own: Dynamo keeps its compiled entries (and its recompile limit)
    per code object, so each cached program must not share one with programs of other signatures. ``backend``:
    default :func:`_backend`.

    ``per_solve`` (a program called once per solve: a whole loop): the 0-d CPU float64 and integer tensors among
    the arguments (the BDF loops' scalar carries, a scalar in ``p``) reach the program as one-element views,
    reshaped back to 0-d inside it. Dynamo gives such an input a symbol for its value, and torch 2.13's pass that
    turns float symbols back into tensors then restarts the whole trace once (``TensorifyScalarRestartAnalysis``):
    on the compiled FBDF loop of the 128-state Brusselator that threw away 9.4 s of a 39 s compile. The program's
    arithmetic is the same. Per-step programs are called without this (flattening the arguments at every call cost
    a Tsit5 step ~17 us here); with a scalar in ``p`` their first compile still traces twice."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    new = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    if not per_solve:
        return torch.compile(new, fullgraph=True, dynamic=False, backend=backend or _backend)

    def entry(scalars: tuple[bool, ...], *args: Any) -> Any:  # traced: the marked leaves back to 0-d, then fn
        leaves, spec = pytree.tree_flatten(args)
        return new(*pytree.tree_unflatten([x.reshape(()) if s else x for x, s in zip(leaves, scalars, strict=True)],
                                          spec))

    name = f"entry_{fn.__name__}_{tag}"  # a code object of its own for the traced entry too
    traced = types.FunctionType(entry.__code__.replace(co_name=name), entry.__globals__, name, None,
                                entry.__closure__)
    compiled = torch.compile(traced, fullgraph=True, dynamic=False, backend=backend or _backend)

    def call(*args: Any) -> Any:
        leaves, spec = pytree.tree_flatten(args)
        scalars = tuple(_is_item_scalar(x) for x in leaves)
        if not any(scalars):
            return compiled(scalars, *args)
        return compiled(scalars, *pytree.tree_unflatten([x.reshape(1) if s else x for x, s in
                                                         zip(leaves, scalars, strict=True)], spec))

    return call


class CompileFailure(Exception):
    """A program could not be compiled; the eager stepper takes over."""


# ---------------------------------------------------------------------------------------------------- pieces
def _user_f(rhs: RHS) -> Callable[[Any, Tensor, Tensor], Tensor]:
    """The traceable ``f(p, t, u)`` in engine layout (``RHS.raw`` without its eager-only checks and counters)."""
    f, takes_p, batched, flat, shape, n = rhs.f, rhs.takes_p, rhs.batched, rhs.flat, rhs.shape, rhs.n

    def F(p: Any, t: Tensor, u: Tensor) -> Tensor:
        b = u.shape[0]
        if batched:
            out = call_f(f, takes_p, p, t, u if flat else u.reshape(b, *shape))
        else:
            out = call_f(f, takes_p, p, t[0], u[0] if flat else u[0].reshape(shape))
        if flat:
            return out if batched else out.unsqueeze(0)
        return out.reshape(b, n)

    return F


def _control(err: Tensor | None, u: Tensor, u_new: Tensor, ok: Tensor | None, atol_n: Tensor,
             rtol_n: Tensor) -> Tensor:
    """``(B, 3)``: the scaled RMS error norm (``inf`` where the step is unusable; ``0`` without an estimator),
    whether ``u_new`` is finite, whether the step's solves succeeded: what the loop reads, in one transfer."""
    u_new = u_new.detach()
    finite = finite_rows(u_new)
    good = finite if ok is None else finite & ok
    if err is None:
        eest = torch.zeros_like(u_new[:, 0])
    else:
        ud = u.detach()
        scale = atol_n + rtol_n * torch.maximum(ud.abs(), u_new.abs())
        eest = torch.linalg.vector_norm(err.detach() / scale, dim=1)
    eest = torch.where(good, eest, math.inf).nan_to_num(nan=math.inf, posinf=math.inf)
    ok_f = torch.ones_like(eest) if ok is None else ok.to(eest.dtype)
    return torch.stack((eest, finite.to(eest.dtype), ok_f), dim=1)


# ---------------------------------------------------------------------------------------------------- programs
class _Program:
    """One family's compiled step(s) for one signature; ``run`` calls a variant, counting compile time."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.variants: dict[str, Callable[..., Any]] = {}  # compiled
        self.raw: dict[str, Callable[..., Any]] = {}  # the same functions uncompiled (for torch._dynamo.explain)
        self.ran: set[str] = set()
        self.fused: dict[tuple, _Program] = {}  # batched loops: this step with the control (.compiled_control)
        self.family: Any = None  # a whole-loop program's family (.compiled_loop._Family)
        self.failed: str | None = None  # why it failed to compile: later solves of the signature run eagerly at once

    def add(self, variant: str, fn: Callable[..., Any], backend: Callable[..., Any] | None = None,
            per_solve: bool = False) -> None:
        """``fn`` as the compiled ``variant`` (``per_solve``: a whole-loop program, see :func:`_own_code`)."""
        self.raw[variant] = fn
        self.variants[variant] = _own_code(fn, self.tag, backend, per_solve)

    def with_variants(self, step: Callable[..., Any]) -> _Program:
        """``step`` as the ``fresh`` and ``reuse`` variants: one compiled function, in which Dynamo compiles one
        graph per variant (the Jacobian computed inside, or given)."""
        self.add("fresh", step)
        self.raw["reuse"], self.variants["reuse"] = step, self.variants["fresh"]
        return self

    def run(self, variant: str, stats: Stats, *args: Any) -> Any:
        if self.failed is not None and variant not in self.ran:  # no second trace (0.1-2 s per solve) of what failed
            raise CompileFailure(self.failed)
        fn = self.variants[variant]
        before, start, level = _COUNT[0], time.perf_counter(), forward_ad._current_level
        try:
            out = fn(*args)
        except Exception as exc:
            _exit_dual_levels(level)
            compiler_error = type(exc).__module__.startswith(("torch._dynamo", "torch._inductor"))
            if variant in self.ran and not compiler_error:
                raise
            hint = ""
            if isinstance(exc, torch._dynamo.exc.FailOnRecompileLimitHit):
                hint = ("; every new value of a Python number in p, or of anything else f reads that is not a tensor, "
                        "recompiles: keep what changes between solves in tensors")
            self.failed = f"{type(exc).__name__}: {_first_line(exc)}{hint}"
            raise CompileFailure(self.failed) from exc
        if _COUNT[0] != before:
            stats.compile_time += time.perf_counter() - start
        self.ran.add(variant)
        return out

    def attempt(self, variant: str, stats: Stats, *args: Any, what: str, instead: str) -> Any | None:
        """:meth:`run`, or ``None`` where the program does not compile: at once and silently when an earlier solve of
        the signature failed (``failed``), else after the one warning ``compile=True: compiling {what} failed (why);
        {instead}``."""
        if self.failed is not None:
            return None
        try:
            return self.run(variant, stats, *args)
        except CompileFailure as exc:
            warn_caller(f"compile=True: compiling {what} failed ({exc}); {instead}", RuntimeWarning)
            return None


def _exit_dual_levels(level: int) -> None:
    """Leave the forward-AD level a failed trace left entered: Dynamo enters ``torch.func.jvp``'s dual level in
    torch's C++ state while it traces, and a trace that fails inside a ``while_loop`` body holding the autodiff
    Jacobian's JVPs left it entered (torch 2.13), so every later JVP, the eager fallback's included, failed with
    "Nested forward mode AD is not supported". ``level``: ``forward_ad._current_level`` before the call (a caller
    inside a dual level of its own, ``>= 0``, keeps it)."""
    if level >= 0:
        return
    try:
        torch._C._exit_dual_level(level=0)
    except RuntimeError:  # none held
        return
    forward_ad._current_level = -1


def _first_line(exc: BaseException) -> str:
    """The message's first line; with the next one where it only says which backend raised, e.g.
    ``backend='python_wrapper_backend' raised: NotImplementedError: ...``."""
    text = [line for line in str(exc).strip().splitlines() if line.strip()]
    if len(text) > 1 and text[0].rstrip().endswith("raised:"):
        return f"{text[0].rstrip()} {text[1].strip()}"
    return text[0] if text else ""

def _user_call(rhs: RHS) -> Callable[..., Tensor]:
    """``call(fn, takes_p, p, t, u)``: one of the problem's functions (``jac``, ``tgrad``) in engine layout."""
    batched, flat, shape = rhs.batched, rhs.flat, rhs.shape

    def call(fn: Callable[..., Tensor], takes_p: bool, p: Any, t: Tensor, u: Tensor) -> Tensor:
        if batched:
            return call_f(fn, takes_p, p, t, u if flat else u.reshape(u.shape[0], *shape))
        return call_f(fn, takes_p, p, t[0], u[0] if flat else u[0].reshape(shape))

    return call


def jacobian_fn(rhs: RHS) -> Callable[[Any, Tensor, Tensor], Tensor]:
    """The traceable ``J(p, t, u)``, ``(B, n, n)``: the problem's ``jac``, else forward-mode autodiff (columns by
    JVPs vmapped over the unit basis, each trajectory's tangent in its own row), or reverse mode (rows by VJPs)
    where ``f`` is itself a gradient (``rhs.reverse_jacobian``: a ``HamiltonianProblem``, whose ``torch.func.grad``
    under a JVP fails to trace inside a ``while_loop`` body in torch 2.13)."""
    F, call, user_jac, takes_p, dtype = _user_f(rhs), _user_call(rhs), rhs.user_jac, rhs.jac_takes_p, rhs.dtype
    reverse = rhs.reverse_jacobian

    def jacobian(p: Any, t: Tensor, u: Tensor) -> Tensor:
        b, n = u.shape
        if user_jac is not None:
            return call(user_jac, takes_p, p, t, u).reshape(b, n, n).to(dtype)
        basis = torch.eye(n, dtype=u.dtype, device=u.device)[:, None, :].expand(n, b, n)
        if reverse:
            pullback = torch.func.vjp(lambda x: F(p, t, x), u)[1]
            rows = torch.func.vmap(lambda v: pullback(v)[0])(basis).permute(1, 0, 2)
            return rows.to(dtype).clone(memory_format=torch.contiguous_format)  # a loop carry's strides
        cols = torch.func.vmap(lambda v: torch.func.jvp(lambda x: F(p, t, x), (u,), (v,))[1])(basis)
        return cols.permute(1, 2, 0).to(dtype)

    return jacobian


def tgrad_fn(rhs: RHS) -> Callable[[Any, Tensor, Tensor, Tensor, Tensor], Tensor]:
    """The traceable ``df/dt(p, t, u, dt)``, ``(B, n)``: the problem's ``tgrad``, else the forward difference
    :meth:`~.rhs.RHS.tgrad` takes (its increment scaled by the step ``dt``), of two ``f`` values computed in the
    program: the carried ``f(t, u)`` (the eager first call, or ``f`` fused differently) can differ from the
    program's in the last bits, which over ``h ~ 1.5e-8 dt`` gave an autonomous ``f`` (an ``nn.Module``'s
    ``addmm``) a ``df/dt`` of ~1e-8 ``|f| / dt`` where the eager step gets exactly 0, and other step sizes (issue
    17). That extra call is not counted in ``sol.stats.nf`` (the eager solve's one call per ``df/dt`` is)."""
    F, call, user_tgrad, takes_p, dtype = _user_f(rhs), _user_call(rhs), rhs.user_tgrad, rhs.tgrad_takes_p, rhs.dtype

    def time_derivative(p: Any, t: Tensor, u: Tensor, dt: Tensor) -> Tensor:
        if user_tgrad is not None:
            return call(user_tgrad, takes_p, p, t, u).reshape(u.shape[0], -1).to(dtype)
        eps = torch.finfo(t.dtype).eps
        h = torch.maximum(math.sqrt(eps) * dt.abs(), 100 * eps * t.abs()).clamp(min=torch.finfo(t.dtype).tiny)
        h = (t + h) - t
        return (F(p, t + h, u) - F(p, t, u)) / h[:, None]

    return time_derivative


def lu_parts(J: Tensor, inv: Tensor, mass: Tensor | None,
             inverse_max: int = DenseLUSolver.SMALL) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """LU of ``W = M inv - J`` as tensors (:class:`~.linsolve.DenseLUSolver`'s arithmetic): the ``(B,)`` usable
    mask, the factors ``(lu, piv)`` and, for ``n <= inverse_max``, ``W^{-1}`` (else ``None``); :func:`lu_apply`
    solves."""
    b, n, _ = J.shape
    W = torch.diag_embed(inv[:, None].expand(b, n)) - J if mass is None else inv[:, None, None] * mass - J
    lu, piv, info = torch.linalg.lu_factor_ex(W)
    diag = lu.diagonal(dim1=-2, dim2=-1)
    ok = (info == 0) & torch.isfinite(diag).all(dim=1) & (diag != 0).all(dim=1)
    inverse = None
    if n <= inverse_max:
        eye = torch.eye(n, dtype=W.dtype, device=W.device).expand(b, n, n)
        inverse = torch.linalg.lu_solve(lu, piv, eye)
    return ok, lu, piv, inverse


def mass_times(v: Tensor, mass: Tensor | None) -> Tensor:
    """``M v`` for each row of ``v`` ``(B, n)`` (``v`` itself without a mass matrix), for a program's loop body: an
    ``einsum``, not ``v @ mass.T``, because inside a ``torch.while_loop`` the view ``mass.T`` is a second body input
    aliasing ``mass``, which torch refuses (every Rosenbrock and BDF loop with a mass matrix fell back)."""
    return v if mass is None else torch.einsum("bj,ij->bi", v, mass)


def lu_apply(lu: Tensor, piv: Tensor, inverse: Tensor | None, v: Tensor) -> Tensor:
    """``W^{-1} v`` ``(B, n)`` from :func:`lu_parts`' factors."""
    if inverse is not None:
        return torch.bmm(inverse, v.unsqueeze(2)).squeeze(2)
    return torch.linalg.lu_solve(lu, piv, v.unsqueeze(2)).squeeze(2)


def factor(J: Tensor, inv: Tensor, mass: Tensor | None) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """LU of ``W = M inv - J`` (:func:`lu_parts`); returns the ``(B,)`` usable mask and ``solve(v)``."""
    ok, lu, piv, inverse = lu_parts(J, inv, mass)

    def solve(v: Tensor) -> Tensor:
        return lu_apply(lu, piv, inverse, v)

    return ok, solve



def tracks_grad(rhs: RHS, u0: Tensor | None = None) -> bool:
    """Whether a solve of ``rhs`` may be differentiated: grad mode on and ``u0``, a tensor in ``p`` or a parameter
    of ``f`` (an ``nn.Module``) requiring grad, or one that ``f``'s code reads from outside (a closure's cell or a
    global it names, :func:`_captures_grad`). What ``p`` and ``f`` answer is asked once per :class:`~.rhs.RHS`, that
    is per solve (a module's parameter scan: ~17 us)."""
    if not torch.is_grad_enabled():
        return False
    if u0 is not None and u0.requires_grad:
        return True
    if rhs.leaves_require_grad is None:
        rhs.leaves_require_grad = _leaves_require_grad(rhs.f, rhs.p)
    return rhs.leaves_require_grad


def _leaves_require_grad(f: Any, p: Any) -> bool:
    """Whether a parameter of an ``nn.Module`` ``f`` (or of the modules a problem's own vector field calls, its
    ``closure_modules()``) or a tensor in ``p`` requires grad (stops at the first)."""
    from torch.utils._pytree import tree_leaves

    owner = getattr(f, "__self__", None)  # a problem's own vector field (HamiltonianProblem): its energy modules
    modules = (f, *owner.closure_modules()) if hasattr(owner, "closure_modules") else (f,)
    if any(_requires_grad(m) for m in modules) or _captures_grad(f):
        return True
    if p is None or isinstance(p, (int, float)):
        return False
    if isinstance(p, Tensor):
        return p.requires_grad
    return any(isinstance(x, Tensor) and x.requires_grad for x in tree_leaves(p))


def _requires_grad(x: Any) -> bool:
    """A tensor requiring grad, or an ``nn.Module`` with a parameter that does."""
    if isinstance(x, Tensor):
        return x.requires_grad
    return isinstance(x, torch.nn.Module) and any(q.requires_grad for q in x.parameters())


def _captures_grad(f: Any, depth: int = 2) -> bool:
    """Whether ``f``'s code reads a tensor requiring grad (or a module with such parameters) from outside: a cell of
    its closure or a global it names, looking ``depth`` functions deep into the functions found there (a wrapper's
    ``fn``). A differentiated solve of such an ``f`` then takes the differentiated loop program at once, instead of
    failing to compile the plain one first."""
    fn = getattr(f, "__func__", f)  # a bound method: its function
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    found: list[Any] = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            found.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    names = getattr(fn, "__globals__", {})
    found += [names[name] for name in code.co_names if name in names]
    if any(_requires_grad(x) for x in found):
        return True
    return depth > 0 and any(_captures_grad(x, depth - 1) for x in found if isinstance(x, types.FunctionType))

