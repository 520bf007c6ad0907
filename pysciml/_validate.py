"""Input checks for ``solve``: each raises :class:`InputError` naming the argument and the fix."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from .algorithms import Algorithm, ESDIRKAlgorithm, ExplicitAlgorithm, IMEXAlgorithm, RosenbrockAlgorithm
from .errors import InputError
from .problem import ODEProblem, SplitODEProblem

Tensor = torch.Tensor


def check_algorithm(alg: Any, prob: ODEProblem, unsplit: bool) -> Algorithm:
    if isinstance(alg, type) and issubclass(alg, Algorithm):
        raise InputError(f"alg must be an algorithm object: write {alg.__name__}() with parentheses")
    if isinstance(alg, str):
        raise InputError(
            f"alg={alg!r} is a string; pass an algorithm object such as Tsit5() or Rodas5P() "
            "(torchdiffeq method strings are accepted by pysciml.odeint)"
        )
    if not isinstance(alg, Algorithm):
        raise InputError(f"alg must be a pysciml algorithm such as Rodas5P(), got {type(alg).__name__}")
    if not isinstance(prob, ODEProblem):
        raise InputError(f"prob must be an ODEProblem or SplitODEProblem, got {type(prob).__name__}")
    if isinstance(prob, SplitODEProblem) and not isinstance(alg, IMEXAlgorithm) and not unsplit:
        raise InputError(
            f"{alg.name}() cannot treat a SplitODEProblem additively; use an IMEX method (KenCarp3(), KenCarp4(), "
            "KenCarp5()), or pass unsplit=True to solve the sum f_implicit + f_explicit as one function"
        )
    if prob.mass_matrix is not None and not isinstance(alg, RosenbrockAlgorithm):
        raise InputError(
            f"{alg.name}() does not support a mass matrix; use a Rosenbrock method (Rodas5P(), Rodas4(), "
            "ROS3P(), Rosenbrock23())"
        )
    if isinstance(alg, ESDIRKAlgorithm):
        if alg.max_newton_iters < 1:
            raise InputError(f"max_newton_iters must be >= 1, got {alg.max_newton_iters}")
        if not 0 < alg.newton_kappa < 1:
            raise InputError(f"newton_kappa must lie in (0, 1), got {alg.newton_kappa}")
    return alg


def check_tolerances(rtol: Any, atol: Any, prob: ODEProblem) -> tuple[float, Tensor]:
    """Returns ``rtol`` as a float and ``atol`` as ``(1, n)`` or ``(B, n)``."""
    dtype, device = prob.u0.dtype, prob.u0.device
    if isinstance(rtol, Tensor):
        if rtol.numel() != 1:
            raise InputError("rtol must be a scalar; give per-component scales through atol")
        rtol = float(rtol)
    if not isinstance(rtol, (int, float)) or not math.isfinite(rtol) or rtol <= 0:
        raise InputError(f"rtol must be a positive finite number, got {rtol!r}")
    eps = torch.finfo(dtype).eps
    if rtol < 0.5 * eps:  # odeint's default 1e-7 on float32 is within rounding of eps: no warning
        warnings.warn(
            f"rtol={rtol:g} is below the resolution of {dtype} (eps={eps:.2g}); using rtol={eps:.2g}. "
            "Use float64 for tighter tolerances.", UserWarning, stacklevel=3,
        )
        rtol = eps
    a = torch.as_tensor(atol, dtype=dtype, device=device)
    if not bool(torch.isfinite(a).all()) or bool((a <= 0).any()):
        raise InputError(f"atol must be positive and finite everywhere, got {atol!r}")
    n = prob.state_size
    if a.numel() == 1:
        return float(rtol), a.reshape(1, 1).expand(1, n)
    if tuple(a.shape) == prob.state_shape:
        return float(rtol), a.reshape(1, n)
    if prob.batched and tuple(a.shape) == tuple(prob.u0.shape):
        return float(rtol), a.reshape(prob.u0.shape[0], n)
    raise InputError(
        f"atol must be a scalar or have the state's shape {prob.state_shape}, got shape {tuple(a.shape)}"
    )


def check_saveat(saveat: Any, prob: ODEProblem) -> Tensor | None:
    if saveat is None:
        return None
    t0, t1 = prob.tspan
    dtype, device = prob.u0.dtype, prob.u0.device
    if isinstance(saveat, int) and not isinstance(saveat, bool):
        if saveat < 2:
            raise InputError(f"saveat as a number of points must be >= 2, got {saveat}")
        return torch.linspace(t0, t1, saveat, dtype=dtype, device=device)
    s = torch.as_tensor(saveat, dtype=dtype, device=device).detach()
    if s.ndim == 0:
        s = s.reshape(1)
    if s.ndim != 1 or s.numel() == 0:
        raise InputError(f"saveat must be a 1-D sequence of times, got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise InputError("saveat contains NaN or Inf")
    lo, hi = min(t0, t1), max(t0, t1)
    if bool(((s < lo) | (s > hi)).any()):
        bad = s[(s < lo) | (s > hi)][0].item()
        raise InputError(f"saveat time {bad:g} lies outside tspan ({t0:g}, {t1:g}); every save time must be inside")
    direction = 1.0 if t1 > t0 else -1.0
    if s.numel() > 1 and not bool((direction * (s[1:] - s[:-1]) > 0).all()):
        order = "increasing" if direction > 0 else "decreasing (t1 < t0)"
        raise InputError(f"saveat must be strictly {order}, in the direction of integration")
    return s


def check_tstops(tstops: Any, prob: ODEProblem, adaptive: bool) -> list[float] | None:
    if tstops is None:
        return None
    if prob.batched:
        raise InputError("tstops is not supported for batched problems yet; solve the trajectories separately")
    if not adaptive:
        raise InputError("tstops needs adaptive=True (with fixed steps, choose dt so steps hit the stops)")
    vals = torch.as_tensor(tstops, dtype=torch.float64).detach().reshape(-1)
    if not bool(torch.isfinite(vals).all()):
        raise InputError("tstops contains NaN or Inf")
    t0, t1 = prob.tspan
    direction = 1.0 if t1 > t0 else -1.0
    return sorted({float(v) for v in vals}, key=lambda v: direction * v)


def check_steps(alg: Algorithm, adaptive: bool | None, dt: Any, maxiters: Any, dtmin: Any,
                dtmax: Any) -> tuple[bool, float | None]:
    if adaptive is None:
        adaptive = alg.is_adaptive
    if adaptive and not alg.is_adaptive:
        raise InputError(f"{alg.name}() has no error estimator; pass adaptive=False with a fixed dt")
    if dt is not None:
        if isinstance(dt, Tensor):
            dt = float(dt)
        if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt == 0:
            raise InputError(f"dt must be a nonzero finite number, got {dt!r}")
        dt = abs(float(dt))
    elif not adaptive:
        raise InputError(f"{alg.name}() with adaptive=False needs a step size: pass dt=...")
    if not isinstance(maxiters, int) or maxiters < 1:
        raise InputError(f"maxiters must be a positive integer, got {maxiters!r}")
    if not isinstance(dtmin, (int, float)) or dtmin < 0 or not math.isfinite(dtmin):
        raise InputError(f"dtmin must be a finite number >= 0, got {dtmin!r}")
    if dtmax is not None and (not isinstance(dtmax, (int, float)) or dtmax <= 0):
        raise InputError(f"dtmax must be a positive number, got {dtmax!r}")
    return bool(adaptive), dt


def advice(alg: Algorithm, code: str) -> str:
    """What to try next after a numerical failure with ``code`` (a ReturnCode value)."""
    explicit = isinstance(alg, ExplicitAlgorithm)
    if code == "MaxIters":
        if explicit:
            return ("Many tiny steps with an explicit method: the problem looks stiff; try Rodas5P() or "
                    "KenCarp4(). Otherwise increase maxiters.")
        return "Increase maxiters, loosen rtol/atol, or check whether the solution blows up."
    if code == "ConvergenceFailure":
        return "Newton did not converge with the fixed step: use a smaller dt or adaptive=True."
    if code == "Unstable":
        return ("The solution became NaN/Inf: check f near this t (division by zero, overflow, a finite-time "
                "blow-up) or tighten rtol.")
    tail = " If the solution stays bounded there, the problem may be stiff: try Rodas5P()." if explicit else ""
    return ("The step size collapsed: f likely has a singularity or the solution blows up near this t; check f "
            "or loosen rtol/atol." + tail)
