"""ROBER (Robertson 1966) to t = 1e5, rtol 1e-6, atol 1e-10: pysciml vs SciPy with the same analytic Jacobian.

Two parts, measured in one run on one machine:
1. one trajectory: pysciml Rodas5P / KenCarp4 / Rodas4 vs SciPy Radau, BDF, LSODA;
2. a batch of B trajectories with rate constants perturbed by up to +-10%: one batched pysciml Rodas5P solve
   vs a Python loop of SciPy BDF (and Radau) solves.
Error: max over components of |u - ref| / |ref| at t = 1e5, against ``pysciml.problems.reference``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from scipy.integrate import solve_ivp

import pysciml as ps
from pysciml import problems

from .common import environment, markdown_table, time_call, write_result

T1, RTOL, ATOL = 1e5, 1e-6, 1e-10


def rober_numpy(k: np.ndarray):
    k1, k2, k3 = k

    def f(t, y):
        y1, y2, y3 = y
        return np.array([-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 * y2 - k3 * y2 * y3, k2 * y2 * y2])

    def jac(t, y):
        y1, y2, y3 = y
        return np.array([[-k1, k3 * y3, k3 * y2], [k1, -2 * k2 * y2 - k3 * y3, -k3 * y2], [0.0, 2 * k2 * y2, 0.0]])

    return f, jac


def scipy_solve(method: str, k: np.ndarray, t1: float = T1):
    f, jac = rober_numpy(k)
    return solve_ivp(f, (0.0, t1), [1.0, 0.0, 0.0], method=method, rtol=RTOL, atol=ATOL, jac=jac)


def rel_err(u: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(u - ref) / np.abs(ref)))


def single(repeats: int, t1: float) -> tuple[str, dict[str, float]]:
    ref = problems.reference("rober", t1).numpy()
    prob = problems.rober((0.0, t1))
    rows, times = [], {}
    for alg in (ps.Rodas5P(), ps.Rodas4(), ps.KenCarp4()):
        timing, sol = time_call(lambda alg=alg: ps.solve(prob, alg, rtol=RTOL, atol=ATOL, saveat=[t1]), repeats)
        s = sol.stats
        rows.append([f"pysciml {alg.name}", timing.median * 1e3, s.naccept + s.nreject, s.nf, s.njac, s.nlu,
                     rel_err(sol.u[-1].numpy(), ref)])
        times[alg.name] = timing.median
    k = np.array([0.04, 3e7, 1e4])
    for method in ("Radau", "BDF", "LSODA"):
        timing, sol = time_call(lambda m=method: scipy_solve(m, k, t1), repeats)
        rows.append([f"SciPy {method}", timing.median * 1e3, len(sol.t) - 1, sol.nfev, sol.njev, sol.nlu,
                     rel_err(sol.y[:, -1], ref)])
        times[method] = timing.median
    table = markdown_table(["solver", "time [ms]", "steps", "f evals", "Jacobians", "LUs", "max rel. error"], rows)
    return table, times


def work_precision(repeats: int, t1: float, rtols: list[float]) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """Time and error over a tolerance sweep (atol = 1e-4 rtol) for every solver: the fair comparison is time
    at matched error, since methods land at different errors for the same rtol."""
    ref = problems.reference("rober", t1).numpy()
    k = np.array([0.04, 3e7, 1e4])
    prob = problems.rober((0.0, t1))
    curves: dict[str, list[tuple[float, float]]] = {}
    rows = []
    for rtol in rtols:
        atol = rtol * 1e-4
        for alg in (ps.Rodas5P(), ps.Rodas4(), ps.KenCarp4()):
            timing, sol = time_call(partial(ps.solve, prob, alg, rtol=rtol, atol=atol, saveat=[t1]), repeats)
            err = rel_err(sol.u[-1].numpy(), ref)
            curves.setdefault(f"pysciml {alg.name}", []).append((err, timing.median))
            rows.append([f"pysciml {alg.name}", rtol, timing.median * 1e3, err])
        for method in ("Radau", "BDF", "LSODA"):
            f, jac = rober_numpy(k)
            timing, sol = time_call(partial(solve_ivp, f, (0.0, t1), [1.0, 0.0, 0.0], method=method, rtol=rtol,
                                            atol=atol, jac=jac), repeats)
            err = rel_err(sol.y[:, -1], ref)
            curves.setdefault(f"SciPy {method}", []).append((err, timing.median))
            rows.append([f"SciPy {method}", rtol, timing.median * 1e3, err])
    return markdown_table(["solver", "rtol", "time [ms]", "max rel. error"], rows), curves


def time_at_error(curve: list[tuple[float, float]], target: float) -> float | None:
    """The fastest measured run of a solver whose error is at most ``target`` (None if none reached it)."""
    times = [t for e, t in curve if e <= target]
    return min(times) if times else None


def plot_curves(curves: dict[str, list[tuple[float, float]]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, pts in curves.items():
        e, t = zip(*sorted(pts), strict=True)
        ax.loglog(e, np.array(t) * 1e3, "o-" if name.startswith("pysciml") else "s--", label=name)
    ax.set_xlabel("max relative error at t = 1e5")
    ax.set_ylabel("wall time [ms]")
    ax.set_title("ROBER work-precision (rtol 1e-4 .. 1e-8, atol = 1e-4 rtol)")
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def batch(n: int, repeats: int, t1: float) -> tuple[str, dict[str, float]]:
    g = torch.Generator().manual_seed(0)
    k = torch.tensor([0.04, 3e7, 1e4], dtype=torch.float64) * (1 + 0.2 * (torch.rand(n, 3, generator=g,
                                                                                        dtype=torch.float64) - 0.5))
    prob = problems.rober((0.0, t1), k=k)
    timing, sol = time_call(lambda: ps.solve(prob, ps.Rodas5P(), rtol=RTOL, atol=ATOL, saveat=[t1]), repeats)
    rows = [[f"pysciml Rodas5P, one batched solve of {n} (median of {repeats})", timing.median, sol.stats.nloop, "-"]]
    times = {"batched": timing.median}
    knp = k.numpy()
    for method in ("BDF", "Radau"):
        def loop(m=method):
            return [scipy_solve(m, knp[i], t1).y[:, -1] for i in range(n)]

        t_loop, ys = time_call(loop, repeats=1, warmup=0)  # one pass of n timed solves (minutes)
        diff = float(np.max(np.abs(np.array(ys) - sol.u[-1].numpy()) / np.abs(np.array(ys))))
        rows.append([f"SciPy {method}, Python loop of {n} (one pass)", t_loop.median, "-", diff])
        times[method] = t_loop.median
    table = markdown_table(["solver", "time [s]", "loop iterations", "max rel. diff. vs pysciml"], rows)
    return table, times


def main(size: str = "full") -> str:
    torch.set_num_threads(1)
    repeats = 5 if size == "full" else 1
    nbatch = 1024 if size == "full" else 8
    t1 = T1
    t_single, s = single(repeats, t1)
    t_batch, b = batch(nbatch, repeats, t1)
    rtols = [1e-4, 1e-5, 1e-6, 1e-7, 1e-8] if size == "full" else [1e-5, 1e-7]
    t_wp, curves = work_precision(repeats, t1, rtols)
    from .common import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / ("rober_work_precision.png" if size == "full" else "rober_work_precision_smoke.png")
    plot_curves(curves, png)
    matched = []
    for name in ("SciPy Radau", "SciPy BDF", "SciPy LSODA"):
        for err, t_scipy in sorted(curves[name]):
            ours = time_at_error(curves["pysciml Rodas5P"], err)
            matched.append([name, err, t_scipy * 1e3, "not reached" if ours is None else ours * 1e3,
                            "-" if ours is None else t_scipy / ours])
    t_matched = markdown_table(["peer", "peer's error", "peer time [ms]",
                                "fastest Rodas5P run with error <= that [ms]", "speed-up"], matched)
    best_scipy = min(s["Radau"], s["BDF"])
    text = (
        f"# ROBER to t = {t1:g}, rtol = {RTOL:g}, atol = {ATOL:g} (analytic Jacobian everywhere)\n\n"
        f"Machine: {environment()}. Torch limited to 1 thread. Medians of {repeats} runs after a warm-up.\n\n"
        f"## One trajectory\n\n{t_single}\n\n"
        f"Rodas5P time / best of SciPy Radau and BDF: {s['Rodas5P'] / best_scipy:.2f}x; "
        f"/ LSODA: {s['Rodas5P'] / s['LSODA']:.2f}x.\n\n"
        f"## Work-precision (time vs error, rtol {rtols[0]:g} .. {rtols[-1]:g}, atol = 1e-4 rtol)\n\n"
        f"![work-precision]({png.name})\n\n{t_wp}\n\n"
        f"### Rodas5P at matched error\n\n{t_matched}\n\n"
        f"## Batch of {nbatch} trajectories, rate constants perturbed by up to +-10%\n\n{t_batch}\n\n"
        f"Speed-up of the batched solve over the SciPy BDF loop: {b['BDF'] / b['batched']:.1f}x; "
        f"over the Radau loop: {b['Radau'] / b['batched']:.1f}x.\n"
    )
    write_result("rober" if size == "full" else "rober_smoke", text)
    return text


if __name__ == "__main__":
    print(main())
