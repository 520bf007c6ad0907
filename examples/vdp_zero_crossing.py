"""Van der Pol (mu = 1000) with Rodas5P: the times where x crosses 0 upward, found by a ContinuousCallback.

``x'' - mu (1 - x^2) x' + x = 0`` (``pysciml.problems.van_der_pol``, from ``(sqrt(3), 0)``) relaxes slowly along
the slow manifold and jumps across ``x = 0`` in a layer of width ~1/mu, so the crossings are where the step size
changes by orders of magnitude. A recording event (no affect, not terminal) with ``direction="up"`` locates each
upward crossing on Rodas5P's dense output; the reference is SciPy's ``solve_ivp`` (Radau, rtol 1e-12) with its own
event location, an independent solver and root finder.

Run:  python examples/vdp_zero_crossing.py   (prints the crossing times and their differences from SciPy's)
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml import problems

MU = 1000.0
T_END = 6000.0


def reference_crossings(mu: float, t_end: float, u0: list[float]) -> np.ndarray:
    """Upward zero crossings of x by SciPy's Radau at rtol 1e-12 (its event location on its dense output)."""
    def f(t: float, u: np.ndarray) -> list[float]:
        return [u[1], mu * (1 - u[0] ** 2) * u[1] - u[0]]

    def jac(t: float, u: np.ndarray) -> list[list[float]]:
        return [[0.0, 1.0], [-2 * mu * u[0] * u[1] - 1.0, mu * (1 - u[0] ** 2)]]

    def x(t: float, u: np.ndarray) -> float:
        return u[0]

    x.direction = 1.0  # upward
    sol = solve_ivp(f, (0.0, t_end), u0, method="Radau", rtol=1e-12, atol=1e-12, jac=jac, events=x)
    return sol.t_events[0]


def main(rtol: float = 1e-8) -> dict[str, float]:
    prob = problems.van_der_pol(mu=MU, tspan=(0.0, T_END))
    cb = ps.ContinuousCallback(lambda t, u: u[0], direction="up")
    sol = ps.solve(prob, ps.Rodas5P(), rtol=rtol, atol=rtol, dense=False, callback=cb)
    times = sol.t_events[0].numpy()
    ref = reference_crossings(MU, T_END, prob.u0.tolist())
    print(f"Rodas5P rtol={rtol:g}: {sol.retcode.value}, {sol.stats.naccept} steps")
    print(" crossing   t (pysciml)          t (SciPy Radau, rtol 1e-12)   relative difference")
    n = min(len(times), len(ref))
    rel = np.abs(times[:n] - ref[:n]) / np.abs(ref[:n])
    for k in range(n):
        print(f"  {k + 1:>3}      {times[k]:.10f}   {ref[k]:.10f}              {rel[k]:.1e}")
    print(f"{len(times)} upward crossings found, {len(ref)} in the reference")
    return {"found": float(len(times)), "reference": float(len(ref)),
            "max_rel_difference": float(rel.max()) if n else float("nan")}


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
