"""``python -m benchmarks [TASK ...] [--size full|smoke]``: run benchmark tasks, write benchmarks/results/."""

from __future__ import annotations

import argparse
import importlib

TASKS = {"rober": "benchmarks.rober", "neural_ode": "benchmarks.neural_ode"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("tasks", nargs="*", default=list(TASKS), help=f"any of {sorted(TASKS)} (default: all)")
    parser.add_argument("--size", choices=("full", "smoke"), default="full")
    args = parser.parse_args()
    for name in args.tasks:
        if name not in TASKS:
            parser.error(f"unknown task {name!r}; choose from {sorted(TASKS)}")
        print(importlib.import_module(TASKS[name]).main(args.size))


if __name__ == "__main__":
    main()
