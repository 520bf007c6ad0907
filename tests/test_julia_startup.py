"""Julia start-up, checked in fresh interpreters (subprocesses), without Julia.

``import pysciml`` must never import juliacall; ``backend="julia"`` without Julia must fail fast with a
clear message (what is missing, how to install, that backend="torch" works) and no urllib traceback;
``PYSCIML_JULIA_EAGER=1`` without Julia gives the same clear error at import. The real start-up (both
import orders of torch and juliacall) is in ``test_julia_e2e.py``, which runs where Julia exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pysciml
from pysciml.julia import _startup

PACKAGE_PARENT = Path(pysciml.__file__).resolve().parent.parent
HAVE_JULIACALL = _startup.importlib.util.find_spec("juliacall") is not None


# Loads pysciml.julia under a bare parent package, skipping pysciml/__init__.py and so torch (whose
# import costs seconds per interpreter). Only for code that needs nothing but pysciml.julia.
BARE_PYSCIML = f"""
import sys, types
_parent = types.ModuleType("pysciml")
_parent.__path__ = [{str(Path(pysciml.__file__).resolve().parent)!r}]
sys.modules["pysciml"] = _parent
"""


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 60.0,
               extra_path: list[str] | None = None, bare: bool = False) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; juliacall/Julia variables of this process are not inherited.
    ``bare``: load pysciml.julia without pysciml/__init__.py (no torch)."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON_JULIACALL_", "PYTHON_JULIAPKG_", "PYSCIML_JULIA"))}
    paths = [*(extra_path or []), str(PACKAGE_PARENT), base.get("PYTHONPATH", "")]
    base["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    base.update(env or {})
    source = (BARE_PYSCIML if bare else "") + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=base,
                          timeout=timeout)


def test_import_pysciml_does_not_import_juliacall():
    proc = run_python("""
        import sys
        import pysciml
        import pysciml.julia
        from pysciml.julia import JULIA_ALGORITHMS, julia_status
        import torch
        prob = pysciml.ODEProblem(lambda t, u, p: -u, torch.ones(2, dtype=torch.float64), (0.0, 1.0))
        pysciml.solve(prob, pysciml.Tsit5())
        bad = [m for m in ("juliacall", "juliapkg") if m in sys.modules]
        print("LOADED", bad)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_julia_subpackage_imports_without_torch():
    """pysciml/__init__.py may import pysciml.julia before torch (eager start): it must not need torch."""
    proc = run_python("""
        import pysciml.julia
        assert callable(pysciml.julia.maybe_start_eagerly)
        print("TORCH", "torch" in sys.modules, "JULIACALL", "juliacall" in sys.modules)
    """, bare=True)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False JULIACALL False" in proc.stdout


@pytest.mark.skipif(HAVE_JULIACALL, reason="juliacall is installed here: the missing-Julia path cannot be seen")
def test_backend_julia_without_julia_fails_fast_and_clearly():
    proc = run_python("""
        import time, torch, pysciml
        prob = pysciml.ODEProblem(lambda t, u, p: -u, torch.ones(3, dtype=torch.float64), (0.0, 1.0))
        began = time.perf_counter()
        try:
            pysciml.solve(prob, pysciml.Rodas5P(), backend="julia")
        except pysciml.JuliaNotAvailableError as exc:
            print("ELAPSED", time.perf_counter() - began)
            print("MESSAGE", exc)
        pysciml.solve(prob, pysciml.Rodas5P(), backend="julia")  # uncaught: the traceback users see
    """, timeout=30)
    assert proc.returncode != 0
    elapsed = float(proc.stdout.split("ELAPSED")[1].split()[0])
    assert elapsed < 10.0
    message = proc.stdout.split("MESSAGE", 1)[1]
    assert "juliacall is not installed" in message
    assert "pip install 'pysciml[julia]'" in message
    assert "juliapkg" in message and "backend='torch'" in message
    assert "JuliaNotAvailableError" in proc.stderr
    assert "urllib" not in proc.stderr + proc.stdout
    assert proc.stderr.count("Traceback") == 1


@pytest.mark.skipif(HAVE_JULIACALL, reason="juliacall is installed here: the missing-Julia path cannot be seen")
def test_eager_start_without_julia_gives_the_clear_error():
    proc = run_python("""
        from pysciml.julia import maybe_start_eagerly
        maybe_start_eagerly()
    """, env={"PYSCIML_JULIA_EAGER": "1"}, timeout=30, bare=True)
    assert proc.returncode != 0
    assert "JuliaNotAvailableError" in proc.stderr and "juliacall is not installed" in proc.stderr
    assert "urllib" not in proc.stderr
    off = run_python("""
        from pysciml.julia import maybe_start_eagerly
        maybe_start_eagerly()
        print("NOT STARTED")
    """, env={"PYSCIML_JULIA_EAGER": "0"}, bare=True)
    assert off.returncode == 0 and "NOT STARTED" in off.stdout


@pytest.mark.skipif(HAVE_JULIACALL, reason="juliacall is installed here: the missing-Julia path cannot be seen")
def test_eager_env_var_at_import_without_julia():
    init = (Path(pysciml.__file__)).read_text()
    if "_eager" not in init:
        pytest.skip("pysciml/__init__.py does not import pysciml.julia._eager first yet "
                    "(requested from the lead: the PYSCIML_JULIA_EAGER hook before `import torch`)")
    proc = run_python("import pysciml", env={"PYSCIML_JULIA_EAGER": "1"}, timeout=30)
    assert proc.returncode != 0
    assert "JuliaNotAvailableError" in proc.stderr and "pip install 'pysciml[julia]'" in proc.stderr
    assert "urllib" not in proc.stderr


def test_installed_juliacall_without_julia_is_detected_before_import(tmp_path):
    """With juliacall installed but no Julia executable and no way to download one, the check must
    fail fast and must not import juliacall (whose import would make juliapkg try to download Julia).

    The directory put first on the path holds a stand-in named ``juliacall`` that raises if it is ever
    imported: it only makes ``find_spec("juliacall")`` succeed. It is not a fake Julia.
    """
    stand_in = tmp_path / "site" / "juliacall"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text("raise ImportError('the availability check imported juliacall')\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = """
        import time, sys
        import pysciml.julia._startup as s
        s.JULIA_VERSIONS_URL = "https://julia-download.invalid/bin/versions.json"  # RFC 2606: never resolves
        began = time.perf_counter()
        status = s.julia_status()
        print("ELAPSED", time.perf_counter() - began)
        print("STATUS", status.available, "|", status.reason)
        print("IMPORTED", "juliacall" in sys.modules)
        try:
            s.require_julia()
        except Exception as exc:
            print("ERROR", type(exc).__name__, exc)
    """
    env = {"PATH": str(empty), "JULIA_DEPOT_PATH": str(empty), "JULIAUP_DEPOT_PATH": str(empty),
           "HOME": str(empty)}
    for offline in ("no", "yes"):
        proc = run_python(code, env={**env, "PYTHON_JULIAPKG_OFFLINE": offline}, timeout=30,
                          extra_path=[str(tmp_path / "site")], bare=True)
        assert proc.returncode == 0, proc.stderr
        assert "IMPORTED False" in proc.stdout
        assert float(proc.stdout.split("ELAPSED")[1].split()[0]) < 10.0
        status = proc.stdout.split("STATUS", 1)[1].splitlines()[0]
        assert status.startswith(" False |")
        assert "no Julia executable was found" in status
        assert ("offline mode" in status) if offline == "yes" else ("cannot be reached" in status)
        assert "ERROR JuliaNotAvailableError" in proc.stdout and "backend='torch'" in proc.stdout
        assert "urllib" not in proc.stdout + proc.stderr


def test_configure_juliacall_respects_user_settings(monkeypatch):
    for var in ("PYTHON_JULIACALL_HANDLE_SIGNALS", "PYTHON_JULIACALL_THREADS", "JULIA_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "_xoptions", {})
    assert _startup.configure_juliacall() == {"PYTHON_JULIACALL_HANDLE_SIGNALS": "yes",
                                              "PYTHON_JULIACALL_THREADS": "auto"}
    assert os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "yes"
    assert _startup.configure_juliacall() == {}  # now set: left alone

    monkeypatch.setenv("PYTHON_JULIACALL_HANDLE_SIGNALS", "no")
    monkeypatch.delenv("PYTHON_JULIACALL_THREADS")
    monkeypatch.setenv("JULIA_NUM_THREADS", "4")
    assert _startup.configure_juliacall() == {}
    assert os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "no"
    assert "PYTHON_JULIACALL_THREADS" not in os.environ

    monkeypatch.delenv("JULIA_NUM_THREADS")
    monkeypatch.setattr(sys, "_xoptions", {"juliacall-threads": "2"})
    assert _startup.configure_juliacall() == {}
