"""A pysciml problem solved by ``scipy.integrate.solve_ivp`` (for the developer tools' SciPy method names).

The problem's own torch ``f`` (and ``jac`` when it has one, for the implicit methods Radau, BDF and LSODA) is
called on float64 NumPy views, so SciPy integrates exactly the same equations. The state is flattened to 1-D
for SciPy and reshaped back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..problem import ODEProblem, call_f

__all__ = ["solve_ivp_states"]

Tensor = torch.Tensor
_IMPLICIT = ("Radau", "BDF", "LSODA")


def _numpy_fns(prob: ODEProblem) -> tuple[Any, Any]:
    shape, p = prob.u0.shape, prob.p

    def f(t: float, y: np.ndarray) -> np.ndarray:
        u = torch.from_numpy(np.ascontiguousarray(y)).reshape(shape)
        with torch.no_grad():
            return call_f(prob.f, prob.f_takes_p, p, torch.tensor(t, dtype=torch.float64), u).reshape(-1).numpy()

    if prob.jac is None:
        return f, None

    def jac(t: float, y: np.ndarray) -> np.ndarray:
        u = torch.from_numpy(np.ascontiguousarray(y)).reshape(shape)
        with torch.no_grad():
            J = call_f(prob.jac, prob.jac_takes_p, p, torch.tensor(t, dtype=torch.float64), u)
        return J.reshape(y.size, y.size).numpy()

    return f, jac


def solve_ivp_states(prob: ODEProblem, method: str, ts: Tensor, rtol: float | None, atol: float | Tensor | None,
                     **options: Any) -> tuple[np.ndarray | None, bool, str, int, int]:
    """``solve_ivp(method=...)`` of ``prob`` (float64, CPU, unbatched) saving at ``ts``.

    The save points are read from SciPy's dense output; the final one is the last step's value itself.
    ``options`` go to ``solve_ivp`` (e.g. ``first_step``, ``max_step``).

    Returns:
        ``(states (S, *u0.shape) or None, success, message, nfev, steps)``.
    """
    from scipy.integrate import solve_ivp

    if prob.batched or prob.mass_matrix is not None:
        raise InputError(f"solver={method!r}: SciPy methods take unbatched problems without a mass matrix; "
                         "solve each trajectory as its own problem or use a pysciml algorithm")
    if rtol is None:
        raise InputError(f"solver={method!r} needs rtol (SciPy's methods are adaptive)")
    f, jac = _numpy_fns(prob.remake(u0=prob.u0.detach().to("cpu", torch.float64)))
    a = atol.detach().cpu().double().reshape(-1).numpy() if isinstance(atol, Tensor) else atol
    kw = {"jac": jac} if method in _IMPLICIT and jac is not None else {}
    y0 = prob.u0.detach().to("cpu", torch.float64).reshape(-1).numpy()
    sol = solve_ivp(f, prob.tspan, y0, method=method, rtol=rtol, atol=1e-6 if a is None else a,
                    dense_output=True, **kw, **options)
    steps = len(sol.t) - 1
    if not sol.success:
        return None, False, f"SciPy {method}: {sol.message} (t={float(sol.t[-1]):.6g})", int(sol.nfev), steps
    t = ts.numpy()
    y = sol.sol(t).T.copy()  # (S, n)
    y[t == sol.t[-1]] = sol.y[:, -1]  # the end point exactly, not through the interpolant
    return y.reshape(len(t), *prob.u0.shape), True, "", int(sol.nfev), steps
