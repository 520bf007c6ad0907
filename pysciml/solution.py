"""The result of a solve: save points, return code, statistics and the dense interpolant."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import torch

from .errors import InputError, SolverError

if TYPE_CHECKING:
    from .engine.interpolation import DenseOutput

__all__ = ["ReturnCode", "Stats", "ODESolution", "raise_if_failed"]

Tensor = torch.Tensor


class ReturnCode(StrEnum):
    """How a solve ended (SciML's ``ReturnCode`` names)."""

    Success = "Success"
    MaxIters = "MaxIters"
    DtLessThanMin = "DtLessThanMin"
    Unstable = "Unstable"
    ConvergenceFailure = "ConvergenceFailure"
    #: a terminal callback ended the solve (a success, as SciML's ``successful_retcode`` says)
    Terminated = "Terminated"

    @property
    def successful(self) -> bool:
        """``Success`` or ``Terminated``."""
        return self is ReturnCode.Success or self is ReturnCode.Terminated

    def __bool__(self) -> bool:  # ``if sol.retcode:`` reads as "succeeded"
        return self.successful


@dataclass
class Stats:
    """Work counters (SciML's ``DEStats``). In a batched solve every counter is for the whole batch:
    one call of ``f`` on ``B`` trajectories counts once; ``naccept``/``nreject`` are summed over trajectories.

    Attributes:
        nf: right-hand-side calls (finite-difference Jacobian columns included).
        njac: Jacobian evaluations.
        nlu: LU factorizations.
        nsolve: linear solves.
        naccept: accepted steps.
        nreject: rejected steps.
        nnonliniter: Newton iterations.
        nnonlinconvfail: Newton failures (each rejects the step).
        nloop: iterations of the step loop.
        compile_time: seconds spent compiling steps during this solve (``compile=True``; 0.0 when every program
            came from the cache, or for eager solves).
    """

    nf: int = 0
    njac: int = 0
    nlu: int = 0
    nsolve: int = 0
    naccept: int = 0
    nreject: int = 0
    nnonliniter: int = 0
    nnonlinconvfail: int = 0
    nloop: int = 0
    compile_time: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)

    def __iadd__(self, other: Stats) -> Stats:
        """Add ``other``'s counts into these (the work of several solves, or segments of one)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def __add__(self, other: Stats) -> Stats:
        total = Stats(**asdict(self))
        total += other
        return total

    def __str__(self) -> str:
        return ", ".join(f"{k}={v:.3g}" if k == "compile_time" else f"{k}={v}" for k, v in asdict(self).items()
                         if k != "compile_time" or v)


class ODESolution:
    """Solution of an :class:`~pysciml.ODEProblem`.

    Attributes:
        t: save times, shape ``(S,)``, the problem's dtype and device.
        u: states at ``t``, shape ``(S, *u0.shape)`` (for batched problems ``(S, B, *state)``).
        retcode: :class:`ReturnCode` of the solve (the first failure among trajectories, if any; else ``Terminated``
            if a terminal callback ended some trajectory, else ``Success``).
        retcodes: per-trajectory return codes (a tuple of length ``B``; length 1 when unbatched).
        message: what happened, with ``t``, ``dt`` and advice when the solve failed.
        stats: :class:`Stats`.
        alg: the algorithm object.
        prob: the problem.

    Call ``sol(t)`` for dense interpolation (scalar ``t`` -> ``u0.shape``; ``(M,)`` -> ``(M, *u0.shape)``).
    """

    def __init__(
        self,
        t: Tensor,
        u: Tensor,
        retcodes: tuple[ReturnCode, ...],
        message: str,
        stats: Stats,
        alg: Any,
        prob: Any,
        dense: DenseOutput | None,
        engine: str = "torch",
    ) -> None:
        self.t, self.u, self.retcodes = t, u, retcodes
        failed = [r for r in retcodes if not r.successful]
        ended = ReturnCode.Terminated if ReturnCode.Terminated in retcodes else ReturnCode.Success
        self.retcode = failed[0] if failed else ended
        self.message, self.stats, self.alg, self.prob, self.engine = message, stats, alg, prob, engine
        self._dense = dense
        #: step size the controller had planned when the solve reached t1 (unbatched native solves), a good
        #: initial ``dt`` for continuing the integration; ``None`` otherwise.
        self.dt_next: float | None = None
        #: with ``callback=``: per callback (in :class:`~pysciml.CallbackSet` order) the event times, a ``(E,)``
        #: tensor (batched: a list over trajectories of them); ``None`` without callbacks. A terminal event's time
        #: carries the implicit-function-theorem gradient in a solve differentiated through its steps.
        self.t_events: list[Any] | None = None
        #: the states just before each event's ``affect``, ``(E, *state)`` per callback (batched: lists over
        #: trajectories), matching :attr:`t_events`.
        self.u_events: list[Any] | None = None

    @property
    def success(self) -> bool:
        return self.retcode.successful

    @property
    def dense(self) -> bool:
        return self._dense is not None

    def __call__(self, t: Tensor | float) -> Tensor:
        if self._dense is None:
            raise InputError(
                "this solution holds no dense output; solve with dense=True (the default when saveat is not "
                "given) to interpolate with sol(t)"
            )
        tt = torch.as_tensor(t, dtype=self.t.dtype, device=self.t.device)
        scalar = tt.ndim == 0
        flat = tt.reshape(-1)
        ended = self.retcodes == (ReturnCode.Terminated,) and len(self.t)  # an unbatched solve ended by an event
        lo, hi = sorted((self.prob.tspan[0], float(self.t[-1]) if ended else self.prob.tspan[1]))
        if bool(((flat < lo) | (flat > hi)).any()):
            what = "the span the solve covered (a terminal event ended it)" if ended else "tspan"
            raise InputError(f"sol(t) needs t inside {what} [{lo}, {hi}]; got values outside it")
        vals = self._dense(flat)  # (M, B, n)
        shape = self.prob.u0.shape if self.prob.batched else self.prob.state_shape
        out = vals.reshape(flat.shape[0], *shape)
        return out[0] if scalar else out.reshape(*tt.shape, *shape)

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def __repr__(self) -> str:
        return (
            f"ODESolution(retcode={self.retcode.value}, alg={self.alg!r}, engine={self.engine}, "
            f"t: {tuple(self.t.shape)}, u: {tuple(self.u.shape)}, stats: {self.stats})"
        )

    def plot(self, ax: Any = None, *, idxs: list[int] | None = None, dense_points: int = 400,
             labels: list[str] | None = None, logx: bool = False, **kwargs: Any) -> Any:
        """Plot the components against ``t`` with matplotlib; returns the Axes.

        With dense output the curves are drawn from ``dense_points`` interpolated times (on a log grid
        when ``logx``), otherwise from the save points. Batched solutions draw every trajectory.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        t0, t1 = self.t[0].item(), self.t[-1].item()
        if self._dense is not None and self.success and len(self) > 1:
            if logx and min(t0, t1) > 0:
                ts = torch.logspace(torch.log10(torch.tensor(t0)), torch.log10(torch.tensor(t1)), dense_points)
            elif logx:
                lo = max(abs(float(self.t[1])), 1e-12 * max(abs(t1), 1.0))
                ts = torch.cat((self.t[:1].cpu(), torch.logspace(torch.log10(torch.tensor(lo)),
                                                                 torch.log10(torch.tensor(abs(t1))), dense_points)))
            else:
                ts = torch.linspace(t0, t1, dense_points)
            ts = ts.to(dtype=self.t.dtype, device=self.t.device)
            us = self(ts)
        else:
            ts, us = self.t, self.u
        tsn = ts.detach().cpu().numpy()
        flat = us.detach().cpu().reshape(us.shape[0], -1).numpy()
        chosen = idxs if idxs is not None else list(range(flat.shape[1]))
        for k, i in enumerate(chosen):
            label = labels[k] if labels is not None else f"u[{i}]"
            ax.plot(tsn, flat[:, i], label=label if flat.shape[1] <= 12 else None, **kwargs)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel("t")
        ax.set_title(f"{self.alg!r} ({self.retcode.value})")
        if len(chosen) <= 12:
            ax.legend(loc="best", fontsize="small")
        return ax


def raise_if_failed(sol: ODESolution, what: str = "") -> ODESolution:
    """Return ``sol`` if it succeeded, else raise :class:`SolverError` with its return code and message
    (prefixed by ``"<what> failed: "`` when ``what`` names the solve)."""
    if not sol.success:
        raise SolverError(f"{what} failed: {sol.message}" if what else sol.message, sol.retcode)
    return sol
