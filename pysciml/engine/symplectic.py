"""Steppers of the symplectic methods: explicit splitting (drift-kick) methods on partitioned states, and the
implicit midpoint rule on any state.

Both are fixed-step only and keep the engine's conventions (flat batched states ``(B, N)``, times ``(B,)``). The
splitting stepper works on the user's layout ``(..., 2n) = cat([q, p], -1)``: it reshapes the engine's state and
calls the problem's ``velocity(t, q, p)`` and ``force(t, q, p)`` (``dH/dp`` and ``-dH/dq``, or ``v`` and the
acceleration of a second-order problem). Dense output is cubic Hermite from the full vector field at both ends of
a step, evaluated only for steps that are interpolated (its error is ``O(h^4)`` locally, so ``sol(t)`` converges
at order ``min(p, 4)`` for a method of order ``p``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..solution import Stats
from .fixed_step_check import FixedStepCheck
from .interpolation import hermite_coefficients
from .rhs import RHS
from .stage_gradient import attach_stage_gradient
from .stepper import Stepper, StepResult, select
from .symplectic_check import OscillationCheck, oscillation_stability_limit
from .tableaus.symplectic import GaussTableau, SymplecticTableau

Tensor = torch.Tensor

__all__ = ["SplittingStepper", "ImplicitMidpointStepper"]


def _all(mask: Tensor | bool) -> bool:
    return mask if isinstance(mask, bool) else bool(mask.all())


def _none(mask: Tensor | bool) -> bool:
    return (not mask) if isinstance(mask, bool) else not bool(mask.any())


def drift_kick(plan: list[tuple[float, float, float]], t: Any, dt: Any, h: Any, q: Any, p: Any, v: Any, f: Any,
               velocity: Callable[..., Any], force: Callable[..., Any]) -> tuple[Any, Any, tuple[Any, ...]]:
    """One splitting step ``D(a_1) K(b_1) ... D(a_s) K(b_s)`` (``plan``: ``(a_i, b_i, c_i)``, ``c_i`` the drift sum
    so far, the time of the ``i``-th force) from ``(q, p)`` at time ``t`` (engine layout ``(B,)``) by ``dt`` (``h``:
    ``dt`` broadcastable over ``q``). ``v``, ``f``: the velocity and force at ``(q, p)`` when known, else ``None``;
    a missing one is evaluated by ``velocity(t, q, p)`` / ``force(t + c dt, q, p)`` only where the plan needs it
    (first-same-as-last). Returns the new ``(q, p)`` and ``(v_start, f_start, v_end, f_end)``, each ``None`` where
    the step did not evaluate it. The eager :class:`SplittingStepper`, its compiled program
    (:mod:`.compiled_symplectic`) and the program's evaluation count (run on Python floats) share it."""
    v_start, f_start = v, f
    moved_q = moved_p = False
    for a, b, c in plan:
        if a != 0.0:
            if v is None:
                v = velocity(t, q, p)
                if not moved_p:
                    v_start = v
            q = q + (a * h) * v
            f, moved_q = None, True
        if b != 0.0:
            if f is None:
                f = force(t + c * dt, q, p)
                if not moved_q:
                    f_start = f
            p = p + (b * h) * f
            v, moved_p = None, True
    return q, p, (v_start, f_start, v, f)


class _LazyEnds(Stepper):
    """The full vector field at the current state, kept when known and computed only for interpolated steps."""

    adaptive = False
    checks_fixed_steps = False  # ImplicitMidpoint: stable for any dt on oscillations (Newton failures end a solve)
    stability_boundary = None

    def _field(self, t: Tensor, u: Tensor) -> Tensor:
        raise NotImplementedError

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        self._accepted = accepted

    def _hermite(self, u: Tensor, dt: Tensor, res: StepResult, f_a: Tensor | None, f_b: Tensor | None) -> Tensor:
        assert res.t_start is not None
        if f_a is None:
            f_a = self._field(res.t_start, u)
        if f_b is None:
            f_b = self._field(res.t_start + dt, res.u_new)
        return hermite_coefficients(u, res.u_new, f_a, f_b, dt)


class SplittingStepper(_LazyEnds):
    """``D(a_1) K(b_1) ... D(a_s) K(b_s)`` (see :mod:`.tableaus.symplectic`) on ``u = cat([q, p], -1)``.

    A velocity or force known at the current state is reused (first-same-as-last): velocity Verlet costs one force
    evaluation per step. ``stats.nf`` counts each evaluation of ``velocity`` and of ``force`` (a gradient of ``H``,
    or a call of the acceleration), except the free velocity ``v`` of a second-order problem.

    Args:
        tab: the method's coefficients.
        prob: the problem (``velocity``, ``force``, ``n``, ``state_shape``, ``batched``).
        stats: counters; count_velocity: whether a velocity evaluation costs (``False`` for ``v`` itself).
    """

    def __init__(self, tab: SymplecticTableau, prob: Any, stats: Stats, *, count_velocity: bool = True) -> None:
        self.rhs = None  # type: ignore[assignment]  (the problem's own velocity and force are used instead)
        self.f0: Tensor | None = None
        self.tab = tab
        self.name = tab.name
        self.order = tab.order
        self.prob = prob
        self.stats = stats
        self.count_velocity = count_velocity
        self.n = int(prob.n)
        self.batched = bool(prob.batched)
        self.shape = tuple(prob.state_shape)
        sums, c = [], 0.0
        for a in tab.drift:
            c += a
            sums.append(c)
        sums = [1.0 if abs(s - 1.0) < 1e-12 else s for s in sums]
        self._plan = list(zip(tab.drift, tab.kick, sums, strict=True))
        self._v: Tensor | None = None  # velocity and force at the current state (user layout), when known
        self._f: Tensor | None = None
        self._step: tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None] = (None, None, None, None)
        self._accepted: Tensor | bool = False
        self._t_end: Tensor | None = None
        self.stability_boundary = oscillation_stability_limit(tab)
        self.checks_fixed_steps = True

    # ------------------------------------------------------------------ fixed-step check
    def fixed_step_check(self, bsz: int, atol: Tensor, dtype: torch.dtype,
                         device: torch.device) -> FixedStepCheck | None:
        """:class:`.symplectic_check.OscillationCheck`: growth beyond the method's ``dt * omega`` limit."""
        assert self.stability_boundary is not None
        return OscillationCheck(bsz, self.stability_boundary, atol, dtype, device, self._halves)

    def _halves(self, u: Tensor) -> tuple[Tensor, Tensor]:
        q, p = self._split(u)
        bsz = u.shape[0]
        return q.reshape(bsz, -1), p.reshape(bsz, -1)

    def check_fields(self, u: Tensor, res: StepResult) -> tuple[Tensor, Tensor]:
        """``(v, F)`` at both ends of the step from ``u`` (engine layout), computing the ones not known."""
        return self._end_fields(u, res)

    def _end_fields(self, u: Tensor, res: StepResult) -> tuple[Tensor, Tensor]:
        """The full field ``(v, F)`` at the start and the end of the last step from ``u`` (engine layout), each
        velocity or force computed only if the step did not already know it; the end ones are kept for the next
        step when every trajectory accepted."""
        assert res.t_start is not None and self._t_end is not None
        v0, f0, v1, f1 = self._step
        q0, p0 = self._split(u)
        q1, p1 = self._split(res.u_new)
        v0 = self._velocity(res.t_start, q0, p0) if v0 is None else v0
        f0 = self._force(res.t_start, q0, p0) if f0 is None else f0
        v1 = self._velocity(self._t_end, q1, p1) if v1 is None else v1
        f1 = self._force(self._t_end, q1, p1) if f1 is None else f1
        self._step = (v0, f0, v1, f1)
        if _all(self._accepted):
            self._v, self._f = v1, f1
        bsz = u.shape[0]
        return self._join(v0, f0, bsz), self._join(v1, f1, bsz)

    # ------------------------------------------------------------------ layout
    def _split(self, u: Tensor) -> tuple[Tensor, Tensor]:
        x = u.reshape(u.shape[0], *self.shape) if self.batched else u[0].reshape(self.shape)
        return x[..., : self.n], x[..., self.n:]

    def _join(self, a: Tensor, b: Tensor, bsz: int) -> Tensor:
        return torch.cat([a, b], dim=-1).reshape(bsz, -1)

    def _scalar(self, x: Tensor) -> Tensor:
        """A per-trajectory ``(B,)`` quantity in the user's layout: broadcastable over ``(B, *state)``, or 0-d."""
        return x.reshape(x.shape[0], *([1] * len(self.shape))) if self.batched else x[0]

    def _time(self, t: Tensor) -> Tensor:
        return t if self.batched else t[0]

    def _velocity(self, t: Tensor, q: Tensor, p: Tensor) -> Tensor:
        if self.count_velocity:
            self.stats.nf += 1
        return self.prob.velocity(self._time(t), q, p)

    def _force(self, t: Tensor, q: Tensor, p: Tensor) -> Tensor:
        self.stats.nf += 1
        return self.prob.force(self._time(t), q, p)

    def _field(self, t: Tensor, u: Tensor) -> Tensor:
        q, p = self._split(u)
        return self._join(self._velocity(t, q, p), self._force(t, q, p), u.shape[0])

    # ------------------------------------------------------------------ stepping
    def init(self, t: Tensor, u: Tensor) -> None:
        q, p = self._split(u)
        self._v, self._f = self._velocity(t, q, p), self._force(t, q, p)
        self.f0 = self._join(self._v, self._f, u.shape[0])

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        q, p = self._split(u)
        q, p, self._step = drift_kick(self._plan, t, dt, self._scalar(dt), q, p, self._v, self._f, self._velocity,
                                      self._force)
        self._t_end = t + dt
        return StepResult(u_new=self._join(q, p, u.shape[0]), err=None, ok=None, stages=[], f_start=u.new_empty(0),
                          t_start=t)

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        self._accepted = accepted
        if _all(accepted):
            self._v, self._f = self._step[2], self._step[3]
        elif not _none(accepted):  # part of a batch moved: recompute at the next step
            self._v = self._f = None

    def interpolant(self, u: Tensor, dt: Tensor, res: StepResult) -> Tensor:
        """Cubic Hermite coefficients ``(4, B, N)`` of the step from ``u``; computes the missing velocities and
        forces at its ends (and keeps those at the new state for the next step)."""
        return self._hermite(u, dt, res, *self._end_fields(u, res))


class ImplicitMidpointStepper(_LazyEnds):
    """``Y = u_n + h/2 f(t_n + h/2, Y)``, ``u_{n+1} = 2 Y - u_n``: simplified Newton with the Jacobian at ``u_n``.

    Newton stops per trajectory when the estimated remaining error ``eta theta / (1 - theta)`` (``eta`` the last
    update relative to the stage's largest component, ``theta`` the contraction rate) is below ``tol`` (default: a
    tenth of the dtype's epsilon, so that quadratic invariants are kept to round-off), or ``eta`` itself is below
    ``tol`` or two epsilons (an update at round-off level); a trajectory not converged after ``max_iters`` gets
    ``ok = False`` (the loop ends it with ``ConvergenceFailure``). The iterations run without a graph; the converged
    stage carries the exact derivative of the stage equation (:func:`.stage_gradient.attach_stage_gradient`,
    ``gamma h = h/2``).
    """

    def __init__(self, tab: GaussTableau, rhs: RHS, stats: Stats, *, tol: float | None, max_iters: int) -> None:
        super().__init__(rhs)
        self.tab = tab
        self.name = tab.name
        self.order = tab.order
        self.stats = stats
        eps = torch.finfo(rhs.dtype).eps
        self.tol = 0.1 * eps if tol is None else float(tol)
        self.floor = 2 * eps  # an update this small is round-off: the iteration has nothing left to gain
        self.max_iters = int(max_iters)
        self._cur: Tensor | None = None  # f at the current state, when known
        self._ends: tuple[Tensor | None, Tensor | None] = (None, None)
        self._accepted: Tensor | bool = False

    def init(self, t: Tensor, u: Tensor) -> None:
        self.f0 = self._cur = self.rhs(t, u)

    def _field(self, t: Tensor, u: Tensor) -> Tensor:
        return self.rhs(t, u)

    def _newton(self, tm: Tensor, u: Tensor, gh: Tensor) -> tuple[Tensor, Tensor]:
        stats = self.stats
        jac = self.rhs.jac(tm, u)
        eye = torch.eye(u.shape[1], dtype=u.dtype, device=u.device)
        lu, piv = torch.linalg.lu_factor(eye - gh[:, :, None] * jac)
        stats.nlu += 1
        y = u
        done = torch.zeros(u.shape[0], dtype=torch.bool, device=u.device)
        eta_prev = torch.full((u.shape[0],), math.inf, dtype=u.dtype, device=u.device)
        tiny = torch.finfo(u.dtype).tiny
        for _ in range(self.max_iters):
            g = y - u - gh * self.rhs(tm, y)
            dy = -torch.linalg.lu_solve(lu, piv, g[..., None])[..., 0]
            stats.nnonliniter += 1
            stats.nsolve += 1
            y = torch.where(done[:, None], y, y + dy)
            eta = dy.abs().amax(dim=1) / y.abs().amax(dim=1).clamp(min=tiny)
            theta = eta / eta_prev
            remaining = torch.where(torch.isfinite(eta_prev) & (theta < 1), eta * theta / (1 - theta), math.inf)
            done = done | ((eta <= max(self.tol, self.floor)) | (remaining <= self.tol)) & torch.isfinite(eta)
            if bool(done.all()):
                break
            eta_prev = eta
        stats.nnonlinconvfail += int((~done).sum())
        return y, done

    def step(self, t: Tensor, u: Tensor, dt: Tensor) -> StepResult:
        return self.step_with(self._newton, t, u, dt)

    def step_with(self, newton: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]], t: Tensor, u: Tensor,
                  dt: Tensor) -> StepResult:
        """The step with the stage solved by ``newton(t_mid, u, gh) -> (y, converged)`` (without a graph): this
        stepper's :meth:`_newton`, or a compiled program's (:mod:`.compiled_midpoint`)."""
        h = dt[:, None]
        gh = 0.5 * h
        tm = t + 0.5 * dt
        with torch.no_grad():
            y, ok = newton(tm.detach(), u.detach(), gh.detach())
            z = y - u.detach()
        if torch.is_grad_enabled():
            z = attach_stage_gradient(self.rhs, tm, u, z, gh, None)
        self._ends = (self._cur, None)
        return StepResult(u_new=u + 2 * z, err=None, ok=ok, stages=[], f_start=u.new_empty(0), t_start=t)

    def accept(self, accepted: Tensor | bool, t: Tensor, u: Tensor, res: StepResult) -> None:
        self._accepted = accepted
        if not _none(accepted):
            self._cur = None

    def interpolant(self, u: Tensor, dt: Tensor, res: StepResult) -> Tensor:
        """Cubic Hermite coefficients ``(4, B, N)``; ``f`` at the step's ends is computed when not known."""
        assert res.t_start is not None
        f_a, f_b = self._ends
        f_a = self._field(res.t_start, u) if f_a is None else f_a
        f_b = self._field(res.t_start + dt, res.u_new) if f_b is None else f_b
        self._ends = (f_a, f_b)
        if _all(self._accepted):
            self._cur = f_b
        elif not _none(self._accepted):
            self._cur = select(self._accepted, f_b, f_a)
        return self._hermite(u, dt, res, f_a, f_b)
