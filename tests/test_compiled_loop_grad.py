"""Gradients through the whole compiled loop (engine/compiled_loop.py, issue 17): ``torch.while_loop``'s autograd.

A differentiated explicit RK solve with ``compile=True`` (a batch, or one float64 trajectory, saving at fixed times)
runs as one loop program whose backward is torch's reverse ``while_loop``; its values and gradients must equal the
eager discrete adjoint's to round-off. So must a differentiated Rosenbrock solve's, whose loop evaluates the
Jacobian by a reverse-mode graph traced ahead of the loop (engine/compiled_loop_jac.py); a plain-torch test shows
why (reverse-mode autodiff inside the differentiated loop body gives a zero Jacobian). The first test reproduces,
in plain torch, the ``while_loop`` backward
behaviour the loop works around (a carry whose initial value does not require grad drops the cotangents of later
iterations); if it fails, torch changed and ``compiled_loop._requiring_grad`` may be unnecessary. The solves compile
programs of their own (minutes each on a cold inductor cache on a small, loaded CPU), so they are ``exhaustive``
(``pytest -m exhaustive tests/test_compiled_loop_grad.py``); the default run checks the dispatch only.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from loop_programs import counting_calls
from torch._higher_order_ops.while_loop import while_loop
from torch.fx.experimental.proxy_tensor import make_fx

import pysciml as ps
from pysciml.engine import compiled_loop
from pysciml.engine.compiled_loop_jac import unsupported
from pysciml.engine.compiled_parts import compile_count

F64, F32 = torch.float64, torch.float32


def _looped(y0: torch.Tensor, A: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """``y_n`` for ``y_{k+1} = y_k + 0.1 tanh(y_k A + b)`` as a ``while_loop`` (``A``, ``b``: closed over)."""
    def body(k: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return k + 1, y + 0.1 * torch.tanh(y @ A + b)

    return while_loop(lambda k, y: k < n, body, (torch.zeros((), dtype=torch.long), y0))[1]


def _unrolled(y0: torch.Tensor, A: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    y = y0
    for _ in range(n):
        y = y + 0.1 * torch.tanh(y @ A + b)
    return y


def _loop_and_unrolled(n: int, y0_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``d/dA sum(y_n^2)`` through ``while_loop`` and unrolled; ``y0_grad``: the initial carry requires grad."""
    gen = torch.Generator().manual_seed(0)
    A0, b0, y0 = (torch.randn(*s, dtype=F64, generator=gen) for s in ((2, 2), (2,), (3, 2)))
    grads = []
    for run in (_looped, _unrolled):
        A, b = A0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        run(y0.clone().requires_grad_(y0_grad), A, b, n).pow(2).sum().backward()
        grads.append(A.grad)
    return grads[0], grads[1]


def test_torch_while_loop_backward_needs_carries_requiring_grad() -> None:
    """Why the loop hands ``while_loop`` carries that require grad (``compiled_loop._requiring_grad``): with an
    initial carry that does not, the parameter gradient of three iterations is wrong (only the last iteration's
    share: off by about 20 % here); with one that does, it is the unrolled loop's. If the first assertion fails,
    torch's backward changed."""
    looped, unrolled = _loop_and_unrolled(3, y0_grad=False)
    assert (looped - unrolled).abs().max() > 1e-3 * unrolled.abs().max()
    looped, unrolled = _loop_and_unrolled(3, y0_grad=True)
    torch.testing.assert_close(looped, unrolled, rtol=1e-12, atol=1e-12)


def _mlp_jacobian_loop(how: str) -> tuple[torch.Tensor, ...]:
    """Three linearly implicit Euler steps ``y + h (I - h J)^{-1} f(y)`` of a 2-8-2 tanh MLP ``f``, ``J`` its
    Jacobian by ``how``: ``"unrolled"`` (a Python loop, ``torch.autograd.grad`` with ``create_graph``), ``"vjp"``
    (``torch.func`` VJPs vmapped over the unit vectors, inside a ``while_loop``) or ``"traced"`` (the same VJPs
    traced by ``make_fx`` ahead of the ``while_loop``, the parameters as inputs). Returns the last ``J``, ``y`` and
    the gradients of ``sum(y^2) + sum(J)`` in ``y0`` and the first weight."""
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(F64)
    with torch.no_grad():
        for q in net.parameters():
            q.copy_(torch.randn(q.shape, dtype=F64, generator=gen))
    names = [name for name, _ in net.named_parameters()]
    y0 = torch.randn(3, 2, dtype=F64, generator=gen).requires_grad_(True)
    eye = torch.eye(2, dtype=F64)

    def f(params: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(net, dict(zip(names, params, strict=True)), (y**3,)) - 5.0 * y

    def jac_vjp(params: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
        _, pullback = torch.func.vjp(lambda x: f(params, x), y)
        return torch.func.vmap(lambda v: pullback(v)[0])(eye[:, None, :].expand(2, 3, 2)).permute(1, 0, 2)

    def jac_autograd(params: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
        out = f(params, y)
        rows = [torch.autograd.grad(out, y, eye[i].expand_as(out), create_graph=True)[0] for i in range(2)]
        return torch.stack(rows, 1)

    jac = {"unrolled": jac_autograd, "vjp": jac_vjp}.get(how)
    if how == "traced":
        jac = make_fx(jac_vjp)(tuple(q.detach() for q in net.parameters()), y0.detach())

    def body(k: torch.Tensor, y: torch.Tensor, J: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params = tuple(net.parameters())
        J = jac(params, y).contiguous()
        lu, piv, _ = torch.linalg.lu_factor_ex(eye - 0.1 * J)
        step = torch.linalg.lu_solve(lu, piv, f(params, y).unsqueeze(2)).squeeze(2)
        return k + 1, y + 0.1 * step, J

    start = (torch.zeros((), dtype=torch.long), y0, torch.zeros(3, 2, 2, dtype=F64, requires_grad=True))
    if how == "unrolled":
        y, J = y0, start[2]
        for _ in range(3):
            _, y, J = body(start[0], y, J)
    else:
        _, y, J = while_loop(lambda k, y, J: k < 3, body, start)
    y.pow(2).sum().add(J.sum()).backward()
    return J.detach(), y.detach(), y0.grad, next(net.parameters()).grad


def test_torch_while_loop_reverse_jacobian_in_body_is_zero() -> None:
    """Why the differentiated Rosenbrock loop traces its Jacobian ahead of the loop (engine/compiled_loop_jac.py):
    reverse-mode autodiff of ``f`` inside a differentiated ``while_loop`` body returns a zero Jacobian, silently
    (torch 2.13), so the steps and gradients are wrong; the same VJPs traced by ``make_fx`` outside the loop give
    the unrolled loop's Jacobian, values and gradients to round-off. If the first assertion fails, torch changed
    and the plain VJPs may serve."""
    unrolled = _mlp_jacobian_loop("unrolled")
    vjp = _mlp_jacobian_loop("vjp")
    assert float(vjp[0].abs().max()) == 0.0 < float(unrolled[0].abs().max())
    assert (vjp[1] - unrolled[1]).abs().max() > 1e-3
    for a, b in zip(_mlp_jacobian_loop("traced"), unrolled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


class Field(torch.nn.Module):
    """The spiral benchmark's field, smaller: ``net(y^3)`` with a 2-8-2 tanh MLP (parameters of an ``nn.Module``
    captured by the solve, not passed as ``p``)."""

    def __init__(self, dtype: torch.dtype, decay: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(dtype)
        self.decay = decay

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y**3) - self.decay * y if self.decay else self.net(y**3)


def _taken(prob: ps.ODEProblem, alg: ps.Algorithm, ready: bool | None = None) -> bool:
    """Whether ``solve(prob, alg, compile=True, saveat=...)`` runs the whole-loop program (compiles nothing:
    differentiated Rosenbrock solves, whose dispatch compiles, only with ``ready``, the answer it is given)."""
    from pysciml._validate import SolveOptions, check_solve
    from pysciml.engine.compiled import compile_stepper
    from pysciml.native import _loop_options, make_stepper
    from pysciml.solution import Stats

    opts = SolveOptions(rtol=1e-6, atol=1e-8, saveat=[0.0, 0.5, 1.0], compile=True)
    c = check_solve(prob, alg, opts)
    stats = Stats()
    stepper = make_stepper(c.alg, prob, stats, c.atol, c.rtol, False)
    u0 = prob.u0.reshape(prob.u0.shape[0] if prob.batched else 1, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # differentiated Rosenbrock: "solving eagerly"
        stepper = compile_stepper(stepper, stats, u0.shape[0], c.atol, c.rtol, c.dense, u0)
    real = compiled_loop._rosenbrock_grad_ready
    if ready is not None:  # its first check, without the compile
        compiled_loop._rosenbrock_grad_ready = lambda stepper, *_: ready and unsupported(stepper.rhs) is None
    try:
        return compiled_loop.handles_whole(stepper, _loop_options(prob, c, opts, False), u0)
    finally:
        compiled_loop._rosenbrock_grad_ready = real


def test_differentiated_dispatch() -> None:
    """Differentiated explicit RK solves (parameters of an ``nn.Module`` ``f``, or ``u0``, requiring grad) run as
    one loop program, batched or one trajectory (float32 too, its time kept in float64); with
    ``GRADIENTS`` off, and for ARK, differentiated solves keep the per-step programs. Differentiated Rosenbrock
    solves take it where their program compiles (``ready``: what ``_rosenbrock_grad_ready``, which compiles it,
    answers), else run eagerly; not with a supplied ``jac`` or a ``p`` holding Python numbers."""
    field = Field(F64)
    y0 = torch.tensor([[2.0, 0.0], [1.0, 0.5]], dtype=F64)
    for module_grad, u0_grad in ((True, False), (False, True), (True, True)):
        field.requires_grad_(module_grad)
        one = ps.ODEProblem(field, y0.clone().requires_grad_(u0_grad), (0.0, 1.0))
        batch = ps.ODEProblem(field, y0.clone().requires_grad_(u0_grad), (0.0, 1.0), batched=True)
        assert _taken(one, ps.DP5()) and _taken(batch, ps.Tsit5())
        assert _taken(batch, ps.Rodas5P(), ready=True) and _taken(one, ps.Rosenbrock23(), ready=True)
        assert not _taken(batch, ps.Rodas5P(), ready=False) and not _taken(batch, ps.KenCarp4())
        compiled_loop.GRADIENTS = False
        try:
            assert not _taken(one, ps.DP5()) and not _taken(batch, ps.Tsit5())
            assert not _taken(batch, ps.Rodas5P(), ready=True)
        finally:
            compiled_loop.GRADIENTS = True
    field.requires_grad_(True)

    def with_p(t: torch.Tensor, u: torch.Tensor, p: object) -> torch.Tensor:
        return field(t, u)

    def jac(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.zeros(u.shape[0], 2, 2, dtype=F64)

    yg = y0.clone().requires_grad_(True)
    assert not _taken(ps.ODEProblem(with_p, yg, (0.0, 1.0), p=(1.0,), batched=True), ps.Rodas5P(), ready=True)
    assert _taken(ps.ODEProblem(with_p, yg, (0.0, 1.0), p=(torch.ones(1),), batched=True), ps.Rodas5P(), ready=True)
    assert not _taken(ps.ODEProblem(field, yg, (0.0, 1.0), jac=jac, batched=True), ps.Rodas5P(), ready=True)
    field32 = Field(F32)
    assert _taken(ps.ODEProblem(field32, y0.to(F32), (0.0, 1.0)), ps.DP5())
    assert _taken(ps.ODEProblem(field32, y0.to(F32), (0.0, 1.0), batched=True), ps.DP5())


W_GLOBAL = torch.tensor([[0.3, -1.0], [1.2, -0.2]], dtype=F64, requires_grad=True)


def _reads_global(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return torch.tanh(u @ W_GLOBAL)


def test_captured_tensors_requiring_grad_are_seen() -> None:
    """A tensor requiring grad that ``f`` reads from a closure cell or a global (or a module with such
    parameters, or through a wrapper function one level down) makes the solve a differentiated one before
    compiling; the same tensors without grad, or grad mode off, do not."""
    from pysciml.engine.compiled_parts import _captures_grad

    W = W_GLOBAL.detach().clone().requires_grad_(True)
    field = Field(F64)

    def closure(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(u @ W)

    def module_closure(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return field(t, u)

    def wrapper(fn: object) -> object:
        return lambda t, u: fn(t, u)  # type: ignore[operator]

    for f in (closure, module_closure, _reads_global, wrapper(closure), wrapper(_reads_global)):
        assert _captures_grad(f)
    plain = W.detach()

    def no_grad_closure(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(u @ plain)

    assert not _captures_grad(no_grad_closure) and not _captures_grad(wrapper(no_grad_closure))
    y0 = torch.tensor([[2.0, 0.0], [1.0, 0.5]], dtype=F64)
    assert _taken(ps.ODEProblem(closure, y0, (0.0, 1.0), batched=True), ps.DP5())
    assert _taken(ps.ODEProblem(no_grad_closure, y0, (0.0, 1.0), batched=True), ps.DP5())  # the plain program
    with torch.no_grad():
        assert _taken(ps.ODEProblem(closure, y0, (0.0, 1.0), batched=True), ps.DP5())


SAVE = [0.0, 0.3, 1.0, 1.02, 2.0]  # at t0, inside steps, two in one step, at t1


def _solve_grads(field: Field, y0: torch.Tensor, batched: bool, compile: bool,
                 alg: ps.Algorithm | None = None) -> tuple[torch.Tensor, ...]:
    """Values at ``SAVE`` and the gradients of ``sum(u^2)`` (parameters, then ``y0``), ``alg`` (DP5), discrete
    adjoint."""
    field.zero_grad()
    u0 = y0.clone().requires_grad_(True)
    prob = ps.ODEProblem(field, u0, (0.0, 2.0), batched=batched)
    sol = ps.solve(prob, alg or ps.DP5(), saveat=SAVE, rtol=1e-6, atol=1e-8, sensealg=ps.DiscreteAdjoint(),
                   compile=compile)
    sol.u.pow(2).sum().backward()
    return (sol.u.detach(), *(q.grad for q in field.parameters()), u0.grad)


Y0 = [[2.0, 0.0], [1.0, 0.5], [-1.5, 0.3]]


@pytest.mark.exhaustive
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("dtype", "batched"), [(F64, False), (F64, True), (F32, True)])
def test_whole_loop_gradients_equal_eager(dtype: torch.dtype, batched: bool) -> None:
    """DP5 with an MLP ``f`` through the loop program: values and gradients (parameters and ``u0``) equal the
    eager discrete adjoint's to round-off, the gradient in one weight is within 1e-4 of a central difference of
    the same solve (float64), and a second solve with new parameters and ``u0`` compiles nothing."""
    field = Field(dtype)
    y0 = torch.tensor(Y0, dtype=dtype)
    eager = _solve_grads(field, y0, batched, False)
    with counting_calls(compiled_loop, "integrate_batched_whole") as calls:
        whole = _solve_grads(field, y0, batched, True)
    assert calls == [1]
    tol = 1e-9 if dtype == F64 else 2e-4
    for a, b in zip(whole, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    if dtype == F64:
        fd = _fd_weight(field, y0, batched, ps.DP5())
        # the difference quotient also sees the step sizes move with the weight (the adjoint holds them fixed):
        # 1.8e-5 relative here
        assert abs(float(whole[1][0, 0]) - fd) < 1e-4 * (1.0 + abs(fd))
    before = compile_count()
    with torch.no_grad():
        for q in field.parameters():
            q.mul_(1.1)
    y1 = y0 * 0.9
    eager = _solve_grads(field, y1, batched, False)
    with counting_calls(compiled_loop, "integrate_batched_whole") as calls:
        whole = _solve_grads(field, y1, batched, True)
    assert calls == [1] and compile_count() == before
    for a, b in zip(whole, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _fd_weight(field: Field, y0: torch.Tensor, batched: bool, alg: ps.Algorithm) -> float:
    """A central difference (``h = 1e-6``) of ``sum(u^2)`` at ``SAVE`` in the first weight ``[0, 0]``."""
    w, h = field.net[0].weight, 1e-6
    losses = []
    with torch.no_grad():
        for step in (h, -2 * h):
            w[0, 0] += step
            prob = ps.ODEProblem(field, y0, (0.0, 2.0), batched=batched)
            losses.append(float(ps.solve(prob, alg, saveat=SAVE, rtol=1e-6, atol=1e-8).u.pow(2).sum()))
        w[0, 0] += h
    return (losses[0] - losses[1]) / (2 * h)


@pytest.mark.exhaustive
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("batched", [True, False])
def test_rosenbrock_whole_loop_gradients_equal_eager(batched: bool) -> None:
    """Rodas5P with an MLP ``f`` plus ``-5 y`` through the loop program (a batch of 3, or one float64 trajectory of
    6 values): values and gradients (parameters and ``u0``) equal the eager discrete adjoint's to round-off (with
    the Jacobian traced ahead of the loop; last session's reverse-mode Jacobian inside the body was zero and gave
    1.3e-2), the weight's gradient is within 1e-4 relative of a central difference (1.0e-5 and 1.4e-5 measured),
    and a second solve with new parameters and ``u0`` compiles nothing."""
    field, alg = Field(F64, decay=5.0), ps.Rodas5P()
    y0 = torch.tensor(Y0, dtype=F64)
    eager = _solve_grads(field, y0, batched, False, alg)
    with counting_calls(compiled_loop, "integrate_batched_whole") as calls:
        whole = _solve_grads(field, y0, batched, True, alg)
    assert calls == [1]
    for a, b in zip(whole, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    fd = _fd_weight(field, y0, batched, alg)
    assert abs(float(whole[1][0, 0]) - fd) < 1e-4 * abs(fd)
    before = compile_count()
    with torch.no_grad():
        for q in field.parameters():
            q.mul_(1.1)
    y1 = y0 * 0.9
    eager = _solve_grads(field, y1, batched, False, alg)
    with counting_calls(compiled_loop, "integrate_batched_whole") as calls:
        whole = _solve_grads(field, y1, batched, True, alg)
    assert calls == [1] and compile_count() == before
    for a, b in zip(whole, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.exhaustive
@pytest.mark.timeout(1800)
def test_odeint_one_float32_trajectory_per_step_gradients() -> None:
    """odeint(dopri5, compile=True) of one float32 trajectory (the spiral benchmark's case; the whole loop, its
    time in float64): values and gradients equal the eager ones to float32 round-off."""
    field = Field(F32)
    y0 = torch.tensor(Y0, dtype=F32)
    t = torch.linspace(0.0, 2.0, 5)
    out = []
    for compile in (False, True):
        field.zero_grad()
        ys = ps.odeint(field, y0, t, method="dopri5", rtol=1e-6, atol=1e-8, compile=compile)
        ys.pow(2).sum().backward()
        out.append((ys.detach(), *(q.grad for q in field.parameters())))
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.exhaustive
@pytest.mark.timeout(1800)
def test_closure_parameter_takes_the_differentiated_loop() -> None:
    """A parameter captured by a closure is seen before compiling (:func:`~pysciml.engine.compiled_parts.
    _captures_grad`): the differentiated loop program runs, without a warning, with the eager gradient. (Unseen,
    as before, the plain program's compile failed, one warning, and the per-step programs ran.)"""
    W = torch.tensor([[0.3, -1.0], [1.2, -0.2]], dtype=F64, requires_grad=True)

    def f(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(u @ W)

    y0 = torch.tensor(Y0, dtype=F64)
    grads = []
    for compile in (False, True):
        W.grad = None
        prob = ps.ODEProblem(f, y0, (0.0, 2.0), batched=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sol = ps.solve(prob, ps.DP5(), saveat=SAVE, rtol=1e-6, atol=1e-8, sensealg=ps.DiscreteAdjoint(),
                           compile=compile)
        sol.u.pow(2).sum().backward()
        grads.append(W.grad)
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-10)
