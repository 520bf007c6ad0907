"""Events in the integration loops: :class:`ScalarEvents` (one trajectory, :mod:`.loop_scalar`) and
:class:`BatchEvents` (a batch, :mod:`.loop`), built from the callbacks of :mod:`pysciml.callbacks`.

After each accepted step the loop asks them whether something happened in it. Continuous conditions are evaluated
at the step's end; where one changed sign (in the callback's direction) its root is located on the step's dense
interpolant (``scipy.optimize.brentq`` on Python floats for one trajectory, a vectorised Illinois iteration for a
batch) and the earliest root in the step that acts (``affect`` or ``terminal``) cuts the step there. Roots that only
record (no affect, not terminal) are recorded up to that point and do not cut the step. Discrete conditions are
checked at the end of a step no continuous event cut short. After an ``affect`` the stepper restarts at the new
state (``stepper.init``: ``f`` evaluated again), and a root within a few ``rootfind_tol`` of the restart is the
event just handled, not a new one.

Every event is recorded (callback, trajectory, time, the state just before ``affect``): :class:`EventRecord`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..callbacks import CallbackSet, ContinuousCallback, DiscreteCallback
from ..errors import InputError
from .interpolation import evaluate
from .stepper import Stepper

Tensor = torch.Tensor

__all__ = ["EventSpec", "EventRecord", "ScalarEvents", "BatchEvents", "rescale"]


class EventSpec:
    """The callbacks of one solve in the engine's layout (``t`` ``(B,)``, ``u`` ``(B, n)``), with ``p`` and the
    user's shapes (:meth:`values`, :meth:`fired`, :meth:`affect` call the user's functions as ``f`` is called)."""

    def __init__(self, callbacks: CallbackSet, prob: Any) -> None:
        self.callbacks = list(callbacks)
        self.continuous = [(k, c) for k, c in enumerate(self.callbacks) if isinstance(c, ContinuousCallback)]
        self.discrete = [(k, c) for k, c in enumerate(self.callbacks) if isinstance(c, DiscreteCallback)]
        self.p = prob.p
        self.batched = bool(prob.batched)
        self.state_shape = tuple(prob.state_shape)
        self.owner: list[int] = []  # callback index of each event-function column, set by the first values()
        self.sign: list[int] = []
        self.tol: list[float] = []
        #: samples per step of the conditions (SciML's interp_points): sign changes between them are seen too
        self.points = max([c.interp_points for _, c in self.continuous] + [1])

    def _user(self, t: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        if self.batched:
            return t, u.reshape(u.shape[0], *self.state_shape)
        return t[0], u.reshape(self.state_shape)

    def _call(self, fn: Callable[..., Any], takes_p: bool, t: Tensor, u: Tensor) -> Any:
        tt, uu = self._user(t, u)
        return fn(tt, uu, self.p) if takes_p else fn(tt, uu)

    def values(self, t: Tensor, u: Tensor) -> Tensor:
        """The continuous conditions at ``(t, u)``: ``(B, M)``, ``M`` event functions in all."""
        bsz = u.shape[0]
        parts = []
        for k, cb in self.continuous:
            out = self._call(cb.condition, cb.condition_takes_p, t, u)
            out = torch.as_tensor(out, dtype=u.dtype, device=u.device)
            if self.batched:
                if out.ndim not in (1, 2) or out.shape[0] != bsz:
                    raise InputError(f"callback {k}: condition(t, u) of a batched problem must return (B,) or (B, m) "
                                     f"with B={bsz}, got shape {tuple(out.shape)}")
            elif out.ndim > 1:
                raise InputError(f"callback {k}: condition(t, u) must return a scalar or a 1-D tensor of event "
                                 f"functions, got shape {tuple(out.shape)}")
            parts.append(out.reshape(bsz, -1))
        vals = torch.cat(parts, dim=1) if parts else u.new_zeros((bsz, 0))
        if not self.owner and parts:
            for (k, cb), part in zip(self.continuous, parts, strict=True):
                self.owner += [k] * part.shape[1]
                self.sign += [cb.sign] * part.shape[1]
                self.tol += [cb.rootfind_tol] * part.shape[1]
        elif vals.shape[1] != len(self.owner):
            raise InputError(f"the callbacks' conditions returned {vals.shape[1]} event functions, earlier "
                             f"{len(self.owner)}; a condition must return the same number at every call")
        return vals

    def acts(self, column: int) -> bool:
        cb = self.callbacks[self.owner[column]]
        return cb.affect is not None or cb.terminal

    def fired(self, t: Tensor, u: Tensor) -> list[tuple[int, Tensor]]:
        """``(k, (B,) bool)`` for each discrete callback: where its condition holds at ``(t, u)``."""
        out = []
        for k, cb in self.discrete:
            c = torch.as_tensor(self._call(cb.condition, cb.condition_takes_p, t, u), device=u.device)
            if c.numel() != u.shape[0]:
                raise InputError(f"callback {k}: a DiscreteCallback's condition must return a bool "
                                 f"({'a (B,) bool tensor' if self.batched else 'one value'}), got shape "
                                 f"{tuple(c.shape)}")
            out.append((k, c.reshape(-1).to(torch.bool)))
        return out

    def affect(self, k: int, t: Tensor, u: Tensor) -> Tensor:
        """Callback ``k``'s new state at ``(t, u)`` (engine layout ``(B, n)``; ``u`` itself if it has no affect)."""
        cb = self.callbacks[k]
        if cb.affect is None:
            return u
        new = self._call(cb.affect, cb.affect_takes_p, t, u)
        want = (u.shape[0], *self.state_shape) if self.batched else self.state_shape
        if not isinstance(new, Tensor) or tuple(new.shape) != want:
            got = tuple(new.shape) if isinstance(new, Tensor) else type(new).__name__
            raise InputError(f"callback {k}: affect(t, u) must return the new state, a tensor shaped like u {want}; "
                             f"got {got}")
        return new.to(u.dtype).reshape(u.shape)


class EventRecord:
    """Every event of a solve: per callback and trajectory, the times and the states just before ``affect``."""

    def __init__(self, n_callbacks: int, bsz: int) -> None:
        self.t: list[list[list[Tensor]]] = [[[] for _ in range(bsz)] for _ in range(n_callbacks)]
        self.u: list[list[list[Tensor]]] = [[[] for _ in range(bsz)] for _ in range(n_callbacks)]

    def add(self, k: int, b: int, t: Tensor, u: Tensor) -> None:
        self.t[k][b].append(t.reshape(()))
        self.u[k][b].append(u)

    def result(self, batched: bool, shape: tuple[int, ...], like: Tensor) -> tuple[list[Any], list[Any]]:
        """``(t_events, u_events)``: unbatched, per callback a ``(E,)`` tensor and a ``(E, *shape)`` tensor;
        batched, per callback a list over trajectories of those."""
        def stack(ts: list[Tensor], us: list[Tensor]) -> tuple[Tensor, Tensor]:
            if not ts:
                return like.new_zeros((0,)), like.new_zeros((0, *shape))
            return torch.stack(ts), torch.stack(us).reshape(len(us), *shape)

        t_ev: list[Any] = []
        u_ev: list[Any] = []
        for ts_k, us_k in zip(self.t, self.u, strict=True):
            pairs = [stack(ts, us) for ts, us in zip(ts_k, us_k, strict=True)]
            t_ev.append([a for a, _ in pairs] if batched else pairs[0][0])
            u_ev.append([b for _, b in pairs] if batched else pairs[0][1])
        return t_ev, u_ev


def rescale(coeffs: Tensor, ratio: Tensor) -> Tensor:
    """The interpolant ``(q+1, B, n)`` of a step cut to ``ratio`` (``(B,)``) of its length, in the cut step's own
    ``theta``: ``P_j ratio**j``."""
    powers = ratio[None, :] ** torch.arange(coeffs.shape[0], dtype=coeffs.dtype, device=coeffs.device)[:, None]
    return coeffs * powers[:, :, None]


def _crosses(g0: Tensor, g1: Tensor, sign: Tensor) -> Tensor:
    """Where an event function went from ``g0`` to ``g1`` across zero in its direction (``sign`` 1 up, -1 down,
    0 both): up from negative to non-negative, down from positive to non-positive."""
    up = (g0 < 0) & (g1 >= 0)
    down = (g0 > 0) & (g1 <= 0)
    return torch.where(sign > 0, up, torch.where(sign < 0, down, up | down))


def _crosses_one(g0: float, g1: float, sign: int) -> bool:
    """:func:`_crosses` for one pair of floats."""
    up = g0 < 0 <= g1
    down = g0 > 0 >= g1
    return up if sign > 0 else down if sign < 0 else up or down


def _window(tol: float, t: float, dt: float, dtype: torch.dtype) -> float:
    """How close to a restart a root is the event just handled (the root finder's tolerance and round-off)."""
    return 4.0 * tol + 16.0 * torch.finfo(dtype).eps * max(abs(t), abs(dt))


@dataclass
class Hit:
    """An event that acts on one trajectory: the step is cut at ``t`` (``theta`` of it), ``u_pre`` the state there,
    ``u_post`` after ``affect``; ``coeffs`` the step's interpolant in the cut step's own ``theta``."""

    t: float
    theta: float
    u_pre: Tensor
    u_post: Tensor
    terminal: bool
    coeffs: Tensor
    save_pre: bool
    save_post: bool
    k: int


class ScalarEvents:
    """The events of one trajectory (``B = 1``, times as Python floats)."""

    def __init__(self, spec: EventSpec, stepper: Stepper, t0: float, u0: Tensor) -> None:
        self.spec, self.stepper = spec, stepper
        self.dtype, self.device = u0.dtype, u0.device
        self.record = EventRecord(len(spec.callbacks), 1)
        self.g = self._values(t0, u0)
        self.restarted = False

    def _vec(self, x: float) -> Tensor:
        return torch.full((1,), x, dtype=self.dtype, device=self.device)

    def _values(self, t: float, u: Tensor) -> list[float]:
        with torch.no_grad():
            return self.spec.values(self._vec(t), u.detach())[0].tolist()

    def after_step(self, t_prev: float, u_prev: Tensor, t: float, u: Tensor, dt: float,
                   interp: Callable[[], Tensor]) -> Hit | None:
        """What happened in the accepted step ``(t_prev, u_prev) -> (t, u)`` of size ``dt`` (signed); ``interp()``
        builds its interpolant. Returns the event that acts on it (cuts it, changes ``u`` or ends the solve), if
        any; events that only record are recorded here."""
        spec = self.spec
        g1 = self._values(t, u)
        roots: list[tuple[float, int]] = []
        coeffs = None
        if g1:
            n = spec.points
            thetas = [j / n for j in range(n + 1)]
            samples = [self.g]
            if n > 1 or self.restarted:
                coeffs = interp()
            if self.restarted:  # the sign just past the event handled at the step's start (its root excluded)
                thetas[0] = min(_window(max(spec.tol), t, dt, self.dtype) / abs(dt), 0.5 * thetas[1])
                samples = [self._values(t_prev + thetas[0] * dt, evaluate(coeffs, self._vec(thetas[0])))]
            if n > 1:
                assert coeffs is not None
                samples += self._samples(thetas[1:-1], t_prev, dt, coeffs)
            samples.append(g1)
            for c in range(len(g1)):
                for j in range(n):  # the first sign change of each event function in the step
                    if _crosses_one(samples[j][c], samples[j + 1][c], spec.sign[c]):
                        coeffs = interp() if coeffs is None else coeffs
                        roots.append((self._root(c, t_prev, dt, thetas[j], thetas[j + 1], samples[j + 1][c],
                                                 coeffs), c))
                        break
        roots.sort()
        acting = next(((th, c) for th, c in roots if spec.acts(c)), None)
        for th, c in roots:
            if acting is not None and th > acting[0]:
                break
            if not spec.acts(c):
                assert coeffs is not None
                self.record.add(spec.owner[c], 0, torch.tensor(t_prev + th * dt, dtype=self.dtype, device=self.device),
                                evaluate(coeffs, self._vec(th))[0].detach())
        self.restarted = False
        if acting is not None:
            assert coeffs is not None
            return self._act(acting[0], spec.owner[acting[1]], acting[1], t_prev, t, dt, coeffs)
        for k, fired in spec.fired(self._vec(t), u):
            if bool(fired[0]):  # the interpolant before a restart changes the stepper's f at the step's end
                return self._act(1.0, k, None, t_prev, t, dt, interp(), u)
        self.g = g1
        return None

    def _samples(self, thetas: list[float], t_prev: float, dt: float, coeffs: Tensor) -> list[list[float]]:
        """The conditions at ``thetas`` inside the step: the states from one evaluation of the interpolant, the
        values read back in one transfer."""
        th = torch.tensor(thetas, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            states = evaluate(coeffs.detach(), th[:, None])  # (len(thetas), 1, n)
            vals = [self.spec.values(self._vec(t_prev + x * dt), states[j]) for j, x in enumerate(thetas)]
            return torch.cat(vals).tolist()

    def _root(self, c: int, t_prev: float, dt: float, a: float, b: float, gb: float, coeffs: Tensor) -> float:
        """The root of event function ``c`` in ``[a, b]`` (``theta``; ``gb`` its value at ``b``) by Brent's method
        on the interpolant."""
        if gb == 0.0:
            return b

        def h(theta: float) -> float:
            if theta == b:  # the sample the sign change was seen with (at the step's end: the step's own state)
                return gb
            with torch.no_grad():
                return self._values(t_prev + theta * dt, evaluate(coeffs, self._vec(theta)))[c]

        from scipy.optimize import brentq  # here, not at import: scipy.optimize takes 1-2 s to import

        xtol = max(self.spec.tol[c] / abs(dt), 1e-15)
        try:
            return float(brentq(h, a, b, xtol=xtol, maxiter=200))
        except ValueError:  # no sign change on the interpolant at a (round-off between samples): b is the root
            return b

    def _act(self, theta: float, k: int, column: int | None, t_prev: float, t: float, dt: float,
             coeffs: Tensor, u_end: Tensor | None = None) -> Hit:
        """Callback ``k`` acts at ``theta`` of the step (``column``: its event function, ``None`` for a discrete
        callback, which acts at the step's end ``(t, u_end)``)."""
        cb = self.spec.callbacks[k]
        t_e = t_prev + theta * dt if theta < 1.0 else t
        u_pre = u_end if u_end is not None else evaluate(coeffs, self._vec(theta))
        t_rec = torch.tensor(t_e, dtype=self.dtype, device=self.device)
        if (cb.terminal and column is not None and isinstance(cb, ContinuousCallback) and cb.event_gradient
                and torch.is_grad_enabled()):
            t_rec, u_pre = self._ift(column, t_rec, u_pre)
        self.record.add(k, 0, t_rec, u_pre[0])
        u_post = u_pre if cb.terminal else self.spec.affect(k, self._vec(t_e), u_pre)
        cut = coeffs if theta >= 1.0 else rescale(coeffs, self._vec(theta))
        if not cb.terminal:
            self.stepper.init(self._vec(t_e), u_post)
            self.g = self._values(t_e, u_post)
            self.restarted = True
        return Hit(t_e, theta, u_pre, u_post, cb.terminal, cut, cb.save_positions[0], cb.save_positions[1], k)

    def _ift(self, column: int, t_e: Tensor, u_e: Tensor) -> tuple[Tensor, Tensor]:
        """The event time with the gradient of one Newton correction taken with the graph attached,
        ``t_e - g / (dg/du . f + dg/dt)``: the implicit function theorem's (its value stays the located ``t_e``,
        where ``g`` is zero to the root finder's tolerance), and the state moved along ``f`` with it."""
        g = self.spec.values(t_e.reshape(1), u_e)[0, column]
        if not g.requires_grad:
            return t_e, u_e
        with torch.enable_grad():
            tv = t_e.detach().clone().requires_grad_(True)
            uv = u_e.detach().clone().requires_grad_(True)
            gv = self.spec.values(tv.reshape(1), uv)[0, column]
            dg_dt, dg_du = torch.autograd.grad(gv, (tv, uv), allow_unused=True)
        with torch.no_grad():
            f = self.stepper.f_total(tv.detach().reshape(1), uv.detach())
            slope = (dg_du * f).sum() if dg_du is not None else f.new_zeros(())
            if dg_dt is not None:
                slope = slope + dg_dt
        if not bool(torch.isfinite(slope)) or float(slope) == 0.0:
            return t_e, u_e  # a tangential crossing: the event time is not differentiable there
        t_new = t_e - (g - g.detach()) / slope  # the located value, the implicit function theorem's gradient
        return t_new, u_e + f * (t_new - t_e)


@dataclass
class BatchHit:
    """Events that act on a batch's step: ``mask`` (``(B,)``) the trajectories hit, ``cut`` those whose step ends
    early (at ``ratio`` of it, ``(B,)``), ``terminal`` those that end; ``t``, ``u_pre``, ``u_post`` every
    trajectory's time and state (unchanged where not hit); ``coeffs`` the uncut interpolant if it was built."""

    mask: Tensor
    cut: Tensor
    terminal: Tensor
    ratio: Tensor
    t: Tensor
    u_pre: Tensor
    u_post: Tensor
    coeffs: Tensor | None


class BatchEvents:
    """The events of a batch: each trajectory its own roots, cuts, restarts and terminal events."""

    def __init__(self, spec: EventSpec, stepper: Stepper, t0: Tensor, u0: Tensor) -> None:
        self.spec, self.stepper = spec, stepper
        self.record = EventRecord(len(spec.callbacks), u0.shape[0])
        with torch.no_grad():
            self.g = spec.values(t0, u0.detach())
        dev = u0.device
        self.sign = torch.tensor(spec.sign, dtype=torch.long, device=dev)
        self.acting = torch.tensor([spec.acts(c) for c in range(len(spec.owner))], dtype=torch.bool, device=dev)
        self.tol = torch.tensor(spec.tol, dtype=u0.dtype, device=dev)
        self.restarted = torch.zeros(u0.shape[0], dtype=torch.bool, device=dev)

    def after_step(self, accepted: Tensor, t_prev: Tensor, u_prev: Tensor, t: Tensor, u: Tensor, dt: Tensor,
                   interp: Callable[[], Tensor]) -> BatchHit | None:
        spec = self.spec
        with torch.no_grad():
            g1 = spec.values(t, u.detach())
        inf = math.inf
        theta = torch.full_like(g1, inf)
        coeffs = None
        if g1.shape[1]:
            n = spec.points
            grid = torch.linspace(0.0, 1.0, n + 1, dtype=t.dtype, device=t.device)[:, None].expand(n + 1, t.shape[0])
            samples = [self.g]
            restarted = self.restarted & accepted
            if n > 1 or bool(restarted.any()):
                coeffs = interp()
            if bool(restarted.any()):  # the sign just past the event handled at the step's start (root excluded)
                eps = torch.finfo(u.dtype).eps
                window = 4.0 * self.tol.max() + 16.0 * eps * torch.maximum(t.abs(), dt.abs())
                th0 = torch.where(restarted, torch.minimum(window / dt.abs(), 0.5 * grid[1]), 0.0)
                grid = torch.cat((th0[None], grid[1:]))
                samples = [torch.where(restarted[:, None], self._at(th0, t_prev, dt, coeffs), self.g)]
            samples += [self._at(grid[j], t_prev, dt, coeffs) for j in range(1, n)]
            samples.append(g1)
            g = torch.stack(samples)  # (n+1, B, M)
            cross = _crosses(g[:-1], g[1:], self.sign) & accepted[None, :, None]  # (n, B, M)
            for c in range(g1.shape[1]):
                has = cross[:, :, c].any(dim=0)
                if not bool(has.any()):
                    continue
                coeffs = interp() if coeffs is None else coeffs
                j = cross[:, :, c].to(torch.uint8).argmax(dim=0)[None]  # the first sign change in the step
                a, b = grid.gather(0, j)[0], grid.gather(0, j + 1)[0]
                fa, fb = g[:, :, c].gather(0, j)[0], g[:, :, c].gather(0, j + 1)[0]
                theta[:, c] = torch.where(has, self._roots(c, t_prev, dt, a, b, fa, fb, coeffs), inf)
        if theta.shape[1]:
            theta_act, col_act = torch.where(self.acting[None, :], theta, inf).min(dim=1)
        else:  # discrete callbacks only
            theta_act, col_act = t.new_full(t.shape, inf), torch.zeros_like(accepted, dtype=torch.long)
        cut = torch.isfinite(theta_act)
        if coeffs is not None:
            self._record_passive(theta, theta_act, t_prev, dt, coeffs)
        fired_k = torch.full_like(accepted, -1, dtype=torch.long)
        for k, fired in spec.fired(t, u):
            fired_k = torch.where(accepted & ~cut & fired & (fired_k < 0), k, fired_k)
        mask = cut | (fired_k >= 0)
        self.restarted = self.restarted & ~accepted
        if not bool(mask.any()):
            self.g = torch.where(accepted[:, None], g1, self.g)
            return None
        owner = torch.tensor(spec.owner or [0], dtype=torch.long, device=u.device)
        k_of = torch.where(cut, owner[col_act.clamp(max=owner.numel() - 1)], fired_k)
        ratio = torch.where(cut, theta_act, torch.ones_like(theta_act))
        t_e = torch.where(cut, t_prev + ratio * dt, t)
        u_pre = u if coeffs is None else torch.where(cut[:, None], evaluate(coeffs, ratio), u)
        terminal = torch.zeros_like(mask)
        gradient = torch.zeros_like(mask)  # terminal continuous events whose time gets the IFT gradient
        for k, cb in enumerate(spec.callbacks):
            rows = mask & (k_of == k)
            terminal = terminal | (rows if cb.terminal else torch.zeros_like(rows))
            if cb.terminal and isinstance(cb, ContinuousCallback) and cb.event_gradient:
                gradient = gradient | (rows & cut)
        if torch.is_grad_enabled() and bool(gradient.any()):
            t_e, u_pre = self._ift(gradient, col_act, t_e, u_pre)
        u_post = u_pre
        for k, cb in enumerate(spec.callbacks):
            rows = mask & (k_of == k)
            if not bool(rows.any()):
                continue
            if not cb.terminal:
                u_post = torch.where(rows[:, None], spec.affect(k, t_e, u_pre), u_post)
            for b in rows.nonzero().flatten().tolist():
                keep = bool(gradient[b])  # a terminal event's time and state keep their gradient
                self.record.add(k, b, t_e[b] if keep else t_e[b].detach(), u_pre[b] if keep else u_pre[b].detach())
        restart = mask & ~terminal
        if bool(restart.any()):
            if coeffs is None:  # built before the restart changes the stepper's f at the step's end
                coeffs = interp()
            self._restart(restart, t_e, u_post)
            with torch.no_grad():
                g_new = spec.values(t_e, u_post.detach())
        else:
            g_new = g1
        self.g = torch.where(restart[:, None], g_new, torch.where(accepted[:, None], g1, self.g))
        self.restarted = self.restarted | restart
        return BatchHit(mask, cut, terminal, ratio, t_e, u_pre, u_post, coeffs)

    def _ift(self, rows: Tensor, col: Tensor, t_e: Tensor, u_e: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`ScalarEvents._ift` for the ``rows`` of a batch (event function ``col`` of each row): the located
        times keep their values and get the implicit function theorem's gradient, the states move along ``f``."""
        g = self.spec.values(t_e, u_e).gather(1, col[:, None])[:, 0]
        if not g.requires_grad:
            return t_e, u_e
        with torch.enable_grad():
            tv = t_e.detach().clone().requires_grad_(True)
            uv = u_e.detach().clone().requires_grad_(True)
            gv = self.spec.values(tv, uv).gather(1, col[:, None])[:, 0]
            dg_dt, dg_du = torch.autograd.grad(gv.sum(), (tv, uv), allow_unused=True)  # rows are independent
        with torch.no_grad():
            f = self.stepper.f_total(tv.detach(), uv.detach())
            slope = (dg_du * f).sum(dim=1) if dg_du is not None else torch.zeros_like(tv)
            if dg_dt is not None:
                slope = slope + dg_dt
            ok = rows & torch.isfinite(slope) & (slope != 0)  # a tangential crossing gets no gradient
            safe = torch.where(ok, slope, torch.ones_like(slope))
        t_new = torch.where(ok, t_e - (g - g.detach()) / safe, t_e)
        return t_new, torch.where(ok[:, None], u_e + f * (t_new - t_e)[:, None], u_e)

    def _record_passive(self, theta: Tensor, theta_act: Tensor, t_prev: Tensor, dt: Tensor, coeffs: Tensor) -> None:
        passive = torch.isfinite(theta) & ~self.acting[None, :] & (theta <= theta_act[:, None])
        for b, c in passive.nonzero().tolist():
            th = theta[b, c]
            u_e = evaluate(coeffs[:, b:b + 1], th.reshape(1))[0]
            self.record.add(self.spec.owner[c], b, (t_prev[b] + th * dt[b]).detach(), u_e.detach())

    def _at(self, theta: Tensor, t_prev: Tensor, dt: Tensor, coeffs: Tensor) -> Tensor:
        """The conditions ``(B, M)`` on the interpolant at ``theta`` (``(B,)``) of each trajectory's step."""
        with torch.no_grad():
            return self.spec.values(t_prev + theta * dt, evaluate(coeffs, theta).detach())

    def _roots(self, c: int, t_prev: Tensor, dt: Tensor, a: Tensor, b: Tensor, fa: Tensor, fb: Tensor,
               coeffs: Tensor) -> Tensor:
        """Illinois (regula falsi with halving of a retained end's value), vectorised over the batch, on ``theta``
        in each row's ``[a, b]`` (values ``fa``, ``fb``); rows without a sign change get a meaningless value."""
        def h(theta: Tensor) -> Tensor:
            return self._at(theta, t_prev, dt, coeffs)[:, c]

        a, b, fa, fb = a.clone(), b.clone(), fa.clone(), fb.clone()
        xtol = self.tol[c] / dt.abs()
        side = torch.zeros_like(fa)
        for _ in range(100):
            done = (b - a <= xtol) | (fb == 0) | (fa == 0)
            if bool(done.all()):
                break
            denom = fb - fa
            x = torch.where(denom != 0, (a * fb - b * fa) / torch.where(denom != 0, denom, 1.0), 0.5 * (a + b))
            x = torch.minimum(torch.maximum(x, a), b)
            fx = h(x)
            left = torch.sign(fx) == torch.sign(fa)  # the root lies in [x, b]: x replaces a
            fb = torch.where(left & (side > 0), 0.5 * fb, fb)  # Illinois: b retained twice, halve its value
            fa = torch.where(~left & (side < 0), 0.5 * fa, fa)
            a, fa = torch.where(done, a, torch.where(left, x, a)), torch.where(done, fa, torch.where(left, fx, fa))
            b, fb = torch.where(done, b, torch.where(left, b, x)), torch.where(done, fb, torch.where(left, fb, fx))
            side = torch.where(left, 1.0, -1.0)
        return torch.where(fb == 0, b, torch.where(fa == 0, a, 0.5 * (a + b)))

    def _restart(self, rows: Tensor, t: Tensor, u: Tensor) -> None:
        """``stepper.init`` at the new states of ``rows``; the other rows keep the stepper's per-trajectory state
        (every tensor attribute with a leading batch dimension, merged row by row)."""
        bsz = u.shape[0]
        before = {name: v for name, v in vars(self.stepper).items()
                  if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == bsz}
        self.stepper.init(t, u)
        for name, old in before.items():
            new = getattr(self.stepper, name)
            if isinstance(new, Tensor) and new is not old and new.shape == old.shape:
                setattr(self.stepper, name, torch.where(rows.reshape(-1, *([1] * (old.ndim - 1))), new, old))
