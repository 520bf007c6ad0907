"""Shared benchmark utilities: timing (median of repeats after a warm-up), environment, markdown tables."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    median: float
    runs: list[float] = field(default_factory=list)


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[Timing, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs; returns the last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return Timing(statistics.median(runs), runs), out


def environment() -> str:
    import numpy
    import scipy
    import torch

    return (f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"numpy {numpy.__version__}, scipy {scipy.__version__}, {blas_threads()}, malloc {allocator()}, "
            f"date {time.strftime('%Y-%m-%d')}")


def one_thread() -> None:
    """Limit torch and NumPy's / SciPy's BLAS libraries to one thread each (threadpoolctl, the ``bench`` extra), so
    that process CPU times compare one thread with one thread: SciPy's BDF on a 128-state system otherwise ran its
    BLAS on two threads, counting twice its wall time as CPU time."""
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    import numpy.linalg  # noqa: F401  (threadpoolctl limits the BLAS libraries loaded so far: load SciPy's own too)
    import scipy.linalg  # noqa: F401

    threadpool_limits(1)


def allocator() -> str:
    """The C allocator this process runs on: ``tcmalloc`` or ``jemalloc`` where one is loaded (``LD_PRELOAD``, as
    ``python -m torch.backends.xeon.run_cpu --enable-tcmalloc`` sets it), else ``glibc``. It moves small-system
    timings a lot: inductor's loop programs create and free every buffer and tensor handle at every iteration (with
    tcmalloc the compiled ROBER whole loops ran 1.35-1.7x faster here), NumPy's and torch's eager operations less."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "not known"
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if f"lib{name}" in maps:
            return f"{name} (preloaded)"
    return "glibc" if platform.system() == "Linux" else "system"


def blas_threads() -> str:
    """NumPy's / SciPy's BLAS thread counts for the machine line (``BLAS threads not known`` without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS threads not known (threadpoolctl not installed: not limited)"
    counts = sorted({i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"})
    return f"BLAS {'/'.join(map(str, counts)) or '-'} thread{'s' if counts != [1] else ''}"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    return path


def result_name(task: str, size: str, device: str) -> str:
    """``<task>[_small|_smoke][_cuda]``: the results file stem for a run (smoke files are gitignored)."""
    return task + ("" if size == "full" else f"_{size}") + ("_cuda" if device == "cuda" else "")


def cuda_skip(task: str, device: str) -> str | None:
    """A skip notice when ``device == "cuda"`` but torch sees no CUDA device, else ``None``."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return f"# {task}: skipped\n\n--device cuda requested but torch.cuda.is_available() is False on this machine.\n"
    return None


def synced(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """``fn`` followed by ``torch.cuda.synchronize()`` when ``device`` is CUDA, so wall times include the
    queued kernels; ``fn`` itself on CPU."""
    if not str(device).startswith("cuda"):
        return fn
    import torch

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def start_task(task: str, device: str) -> str | None:
    """The prelude of a task's ``main``: the skip notice (printed, then returned) when ``device`` is CUDA and
    none is present; otherwise ``None``, after limiting torch to one thread on the CPU (the tables' setting)."""

    skip = cuda_skip(task, device)
    if skip is not None:
        print(skip)
        return skip
    if device == "cpu":
        one_thread()
    return None
