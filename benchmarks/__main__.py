"""``python -m benchmarks [TASK ...] [--size full|small|smoke] [--device cpu|cuda]``: run benchmark tasks, write
markdown tables and PNG plots to benchmarks/results/.

Each task module exposes ``main(size: str, device: str) -> str`` returning its markdown report (also written to
``benchmarks/results/<task>[_smoke][_cuda].md``). Peers missing from the environment are skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib

TASKS = {
    "stiff": "benchmarks.stiff",  # 1. stiff work-precision: ROBER, HIRES, VdP, Oregonator, Brusselator-1D
    "overhead": "benchmarks.overhead",  # 2. per-step solver overhead, VdP mu=2, batch 256
    "ensemble": "benchmarks.ensemble",  # 3. batched stiff ensemble: 1024 perturbed ROBER
    "neural_ode": "benchmarks.neural_ode",  # 4. neural-ODE training: spiral + stiff surrogate
    "floor": "benchmarks.floor",  # 5. solver overhead over the f/Jacobian/LU floor, MLP right-hand side
    "hnn": "benchmarks.hnn",  # 6. HNN training iteration vs torchdyn and plain autograd, batch 512, d = 4, 20
    "pinn": "benchmarks.pinn",  # 7. PINN time per iteration and error after a fixed budget vs DeepXDE (PyTorch)
    "ntk": "benchmarks.ntk",  # 8. time to form a 5,000 x 5,000 operator NTK
    "stiff_bdf": "benchmarks.stiff_bdf",  # multistep FBDF/QNDF vs SciPy BDF and Rodas5P, ROBER/HIRES/VdP/Oregonator
    "stiff_sparse": "benchmarks.stiff_sparse",  # 2-D Brusselator, Gray-Scott N = 32..128, SparseLU vs SciPy
    "stiff_tight": "benchmarks.stiff_tight",  # RadauIIA5, FBDF, QNDF vs Rodas5P, SciPy, diffrax, rtol 1e-8..1e-10
    "stiff_loop": "benchmarks.stiff_loop",  # compiled Rodas5P per step: eager vs per-step program vs whole loop
    "stiff_fshare": "benchmarks.stiff_fshare",  # eager RadauIIA5 vs SciPy Radau: time inside f and jac
    "symplectic_loop": "benchmarks.symplectic_loop",  # fixed-step splitting: eager vs per-step vs loop program
    "hnn_compile": "benchmarks.hnn_compile",  # learned Hamiltonians: eager vs compile=True, rollout and training
}
SMALL = {"stiff", "neural_ode"}  # the tasks with a --size small


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("tasks", nargs="*", default=list(TASKS), help=f"any of {sorted(TASKS)} (default: all)")
    parser.add_argument("--size", choices=("full", "small", "smoke"), default="full",
                        help="small: the stiff task (its problems at three tolerances, no diffrax) and neural_ode "
                             "(20 spiral iterations, the stiff surrogate to T = 100 with 4)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    for name in args.tasks:
        if name not in TASKS:
            parser.error(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    if args.size == "small" and not set(args.tasks) <= SMALL:
        parser.error(f"--size small exists for the tasks {sorted(SMALL)} only, e.g. python -m benchmarks stiff "
                     "--size small")
    for name in args.tasks:
        module = importlib.import_module(TASKS[name])
        print(module.main(args.size, args.device))


if __name__ == "__main__":
    main()
