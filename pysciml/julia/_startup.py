"""Starting Julia: the availability check, juliacall's options, the lazy (or eager) start.

Standard library only: ``pysciml/__init__.py`` may import this module before torch (for
``PYSCIML_JULIA_EAGER=1``), and ``import pysciml`` must never import juliacall.

The check fails fast, without triggering juliapkg's downloads when they cannot work:

1. ``juliacall`` must be importable (``importlib.util.find_spec``; nothing is imported);
2. a Julia executable must be found locally: ``PYTHON_JULIACALL_EXE``/``PYTHON_JULIACALL_BINDIR``,
   juliapkg's own install prefix, juliaup, or ``julia`` on ``PATH`` (juliapkg's finder with installing
   switched off);
3. otherwise juliapkg would download Julia: that needs juliapkg's offline mode off and the Julia
   download server reachable, which is probed once with a short timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import JuliaNotAvailableError

__all__ = [
    "CUDA_MISSING", "CUDA_UUID", "ENV_EAGER", "JULIA_ENTRY_POINTS", "JuliaStatus", "add_cuda", "add_cuda_refusal",
    "configure_juliacall", "deps_file", "julia_package_dir", "julia_status", "maybe_start_eagerly", "require_julia",
    "start",
]

ENV_EAGER = "PYSCIML_JULIA_EAGER"
"""Set to ``1`` to start Julia when pysciml is imported (before torch, if pysciml is imported first)."""

JULIA_ENTRY_POINTS = (
    "solve_ode", "interpolate", "adjoint_gradients", "enable_cuda", "cuda_installed",
    "zero_copy_roundtrip", "algorithm_names", "sensealg_names",
)
"""The PySciML.jl functions the Python side calls (tests check that the Julia package defines them)."""

CUDA_UUID = "052768ef-5323-5732-b1bb-66c8b64840ba"
"""CUDA.jl, added to the Julia environment only on request (:func:`add_cuda`), for CUDA tensors."""

JULIA_VERSIONS_URL = "https://julialang-s3.julialang.org/bin/versions.json"
_PROBE_TIMEOUT_S = 4.0

_INSTALL_HINT = (
    "To use the Julia engine: pip install 'pysciml[julia]' (juliacall and juliapkg). On first use "
    "juliapkg finds Julia (PATH, juliaup) or downloads it, then installs OrdinaryDiffEq, "
    "SciMLSensitivity, DLPack and PySciML.jl from the Julia package server and precompiles them: this "
    "needs internet access once and can take several minutes. Without Julia, backend='torch' (the "
    "default) solves the same problems with the same algorithms and returns the same ODESolution."
)


@dataclass(frozen=True)
class JuliaStatus:
    """Whether the Julia engine can start here, and why not.

    Attributes:
        available: ``True`` if starting Julia can be attempted (it may still have to download).
        reason: what is missing (empty when available).
        executable: the Julia executable found locally, if any.
        will_download: ``True`` if juliapkg will have to download Julia first.
    """

    available: bool
    reason: str = ""
    executable: str | None = None
    will_download: bool = False


def _juliacall_option(name: str) -> str | None:
    """A juliacall option as juliacall reads it: ``-X juliacall-<name>`` or ``PYTHON_JULIACALL_<NAME>``."""
    xkey = "juliacall-" + name.lower().replace("_", "-")
    if xkey in sys._xoptions:
        value = sys._xoptions[xkey]
        return "yes" if value is True else str(value)
    return os.environ.get("PYTHON_JULIACALL_" + name.upper())


def configure_juliacall() -> dict[str, str]:
    """Set juliacall's signal handling and thread options, only where the user has not.

    ``PYTHON_JULIACALL_HANDLE_SIGNALS=yes`` (Julia's own signal handling, required for safe GC with
    threads) and ``PYTHON_JULIACALL_THREADS=auto`` unless ``JULIA_NUM_THREADS`` is set. The Python
    callbacks always run on the calling thread; Julia threads only serve Julia code.

    Returns:
        The environment variables this call set.
    """
    changed: dict[str, str] = {}
    if _juliacall_option("handle_signals") is None:
        changed["PYTHON_JULIACALL_HANDLE_SIGNALS"] = "yes"
    if _juliacall_option("threads") is None and "JULIA_NUM_THREADS" not in os.environ:
        changed["PYTHON_JULIACALL_THREADS"] = "auto"
    os.environ.update(changed)
    return changed


def deps_file() -> Path:
    """pysciml's ``juliapkg.json``: the Julia dependencies juliapkg installs, PySciML.jl among them."""
    return Path(__file__).resolve().parent.parent / "juliapkg.json"


def julia_package_dir() -> Path:
    """Where PySciML.jl is, as juliapkg finds it: the ``path`` of ``juliapkg.json``, relative to that file.

    ``julia/PySciML`` of the repository for a checkout or an editable install; ``pysciml/julia_pkg/PySciML``
    inside an installed wheel (``setup.py`` copies the package there and rewrites the path).
    """
    spec = json.loads(deps_file().read_text())
    return (deps_file().parent / spec["packages"]["PySciML"]["path"]).resolve()


def _julia_compat() -> Any:
    """The ``"julia"`` compat of pysciml's juliapkg.json, parsed by juliapkg (``None`` if unavailable)."""
    try:
        from juliapkg.compat import Compat

        spec = json.loads(deps_file().read_text())
        return Compat.parse(spec["julia"]) if "julia" in spec else None
    except Exception:
        return None


def _find_local_julia() -> str | None:
    """A compatible Julia executable on this machine, found without installing or downloading anything."""
    exe = _juliacall_option("exe")
    if exe:
        return shutil.which(exe)
    bindir = os.environ.get("PYTHON_JULIACALL_BINDIR")
    if bindir:
        return shutil.which(os.path.join(bindir, "julia"))
    try:  # juliapkg's finder, with installing and upgrading switched off (no network)
        from juliapkg.find_julia import find_julia
        from juliapkg.state import STATE

        found, _version = find_julia(compat=_julia_compat(), prefix=STATE["install"], install=False,
                                     upgrade=False)
        return str(found)
    except Exception:
        return shutil.which("julia")


def _juliapkg_offline() -> bool:
    value = sys._xoptions.get("juliapkg-offline", os.environ.get("PYTHON_JULIAPKG_OFFLINE", "no"))
    return value is True or value == "yes"


def _probe_download_server() -> str | None:
    """``None`` if Julia's download server answers within a few seconds, else why not (one line)."""
    import urllib.request

    result: list[str | None] = [f"timed out after {_PROBE_TIMEOUT_S:.0f} s"]

    def probe() -> None:
        try:
            request = urllib.request.Request(JULIA_VERSIONS_URL, method="HEAD")
            with urllib.request.urlopen(request, timeout=_PROBE_TIMEOUT_S):
                result[0] = None
        except Exception as exc:  # any failure means: no download
            reason = getattr(exc, "reason", exc)
            result[0] = f"{type(exc).__name__}: {reason}"

    thread = threading.Thread(target=probe, daemon=True)  # DNS lookups ignore socket timeouts
    thread.start()
    thread.join(_PROBE_TIMEOUT_S + 1.0)
    return result[0]


_STATUS: JuliaStatus | None = None


def julia_status(refresh: bool = False) -> JuliaStatus:
    """Check (once, then cached) whether the Julia engine can start here. Never starts Julia."""
    global _STATUS
    if _STATUS is not None and not refresh:
        return _STATUS
    if "juliacall" in sys.modules:
        _STATUS = JuliaStatus(True)
    elif importlib.util.find_spec("juliacall") is None:
        _STATUS = JuliaStatus(False, "the Python package juliacall is not installed")
    elif (exe := _find_local_julia()) is not None:
        _STATUS = JuliaStatus(True, executable=exe)
    elif _juliapkg_offline():
        _STATUS = JuliaStatus(False, "no Julia executable was found and juliapkg is in offline mode "
                                     "(PYTHON_JULIAPKG_OFFLINE=yes), so it cannot download one")
    elif (why := _probe_download_server()) is not None:
        _STATUS = JuliaStatus(False, "no Julia executable was found (PATH, juliaup, juliapkg's prefix) and "
                                     f"Julia's download server {JULIA_VERSIONS_URL} cannot be reached ({why})")
    else:
        _STATUS = JuliaStatus(True, will_download=True)
    return _STATUS


def require_julia() -> JuliaStatus:
    """Raise :class:`~pysciml.JuliaNotAvailableError` (what is missing, how to install, the torch
    alternative) unless the Julia engine can start here."""
    status = julia_status()
    if not status.available:
        tip = "" if "juliacall is not installed" in status.reason else (
            " With juliacall already installed, Julia itself is what is missing: install it (juliaup, "
            "https://julialang.org/downloads) so that `julia` is on PATH, or point PYTHON_JULIACALL_EXE at "
            "it, or let juliapkg download it from a machine with internet access.")
        raise JuliaNotAvailableError(
            f"backend='julia' cannot run here: {status.reason}.\n{_INSTALL_HINT}{tip}"
        )
    return status


_PKG: Any = None
_LOCK = threading.Lock()


def _say(message: str) -> None:
    print(f"[pysciml] {message}", file=sys.stderr, flush=True)


def start() -> Any:
    """Start Julia (once) and return the PySciML Julia module.

    The first start resolves the Julia environment (juliapkg), which can take minutes the first time
    (downloads, package installs, precompilation); it says so on stderr.

    Raises:
        JuliaNotAvailableError: Julia cannot be started here, or starting it failed.
    """
    global _PKG
    if _PKG is not None:
        return _PKG
    with _LOCK:
        if _PKG is not None:
            return _PKG
        status = require_julia()
        configure_juliacall()
        fresh = "juliacall" not in sys.modules
        if fresh:
            what = "downloading Julia, then " if status.will_download else ""
            _say(f"starting Julia for backend='julia' ({what}resolving packages and loading PySciML.jl). "
                 "The first start can take several minutes (installs and precompilation); later starts "
                 "take seconds.")
        began = time.perf_counter()
        try:
            from juliacall import Main

            Main.seval("using PySciML")
            pkg = Main.PySciML
        except Exception as exc:
            error = JuliaNotAvailableError(
                f"backend='julia': starting Julia failed ({type(exc).__name__}: {_summary(exc)}).\n"
                f"{_INSTALL_HINT}"
            )
            # network failures (juliapkg downloading) add nothing but a long traceback; keep the rest
            raise error from (None if isinstance(exc, OSError) else exc)
        if fresh:
            _say(f"Julia is ready ({time.perf_counter() - began:.1f} s).")
        _PKG = pkg
        return pkg


def _summary(exc: BaseException, max_lines: int = 12) -> str:
    lines = str(exc).strip().splitlines() or [repr(exc)]
    more = f"\n... ({len(lines) - max_lines} more lines)" if len(lines) > max_lines else ""
    return "\n".join(lines[:max_lines]) + more


def maybe_start_eagerly() -> None:
    """Start Julia now if ``PYSCIML_JULIA_EAGER`` is set (to anything but ``0``/``no``/empty).

    For users hit by the torch/juliacall import-order crashes (PythonCall.jl issues 215, 384, 435):
    ``pysciml/__init__.py`` calls this before it imports torch, so juliacall loads first.

    Raises:
        JuliaNotAvailableError: the variable is set but Julia cannot start here.
    """
    if os.environ.get(ENV_EAGER, "").strip().lower() in ("", "0", "no", "false"):
        return
    start()


CUDA_MISSING = (
    "backend='julia' with CUDA tensors needs CUDA.jl in the Julia environment, and it is not installed. "
    "Add it once, in a fresh Python process (before Julia starts; juliapkg's resolve rewrites the Julia "
    "manifest, which must not happen under packages already loaded):\n"
    "    python -c \"import pysciml.julia as j; j.add_cuda()\"\n"
    "(it downloads the CUDA runtime and precompiles, which can take many minutes), then restart Python. Or "
    "solve on the CPU (u0.cpu()), or use backend='torch', which runs on CUDA natively."
)
"""What a CUDA solve says when CUDA.jl is not installed."""


def add_cuda_refusal(loaded_modules: Any) -> str | None:
    """Why :func:`add_cuda` must not run now (``None`` if it may): Julia already runs in this process when
    ``juliacall`` is among ``loaded_modules`` (the names of ``sys.modules``)."""
    if "juliacall" in loaded_modules:
        return ("add_cuda() must run before Julia starts in this process: juliapkg's resolve rewrites the Julia "
                "manifest, and packages already loaded (SciMLBase, PythonCall, ...) would no longer match it. "
                "Run it in a fresh Python process: python -c \"import pysciml.julia as j; j.add_cuda()\", "
                "then restart Python.")
    return None


def add_cuda() -> None:
    """Add CUDA.jl to the Julia environment of this Python environment (juliapkg), once, before Julia starts.

    Run it in a fresh Python process (``python -c "import pysciml.julia as j; j.add_cuda()"``): it writes
    CUDA.jl into juliapkg's project file and resolves the environment (downloads, precompilation).

    Raises:
        JuliaNotAvailableError: Julia already runs in this process, juliapkg is not installed, or resolving
            failed.
    """
    refusal = add_cuda_refusal(sys.modules)
    if refusal is not None:
        raise JuliaNotAvailableError(refusal)
    require_julia()
    try:
        import juliapkg

        juliapkg.add("CUDA", CUDA_UUID)
        juliapkg.resolve()
    except Exception as exc:
        raise JuliaNotAvailableError(f"adding CUDA.jl failed ({type(exc).__name__}: {_summary(exc)})") from exc
