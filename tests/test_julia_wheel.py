"""The built wheel carries the Julia package, and juliapkg finds the deps file from an installed copy.

The wheel is built offline from a copy of the working tree (``pip wheel --no-deps --no-build-isolation``,
so the tree itself gets no ``build/`` directory). juliapkg is then asked, through its own deps-file
collection (``juliapkg.deps.deps_files`` / ``find_requirements``, which read files and resolve nothing),
what it would install, in a fresh interpreter that sees only the unpacked wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import pysciml

PACKAGE_DATA_HINT = (
    'pyproject.toml must ship the Julia package: [tool.setuptools.package-data] pysciml = ["juliapkg.json", '
    '"julia_pkg/PySciML/Project.toml", "julia_pkg/PySciML/src/*.jl", "julia_pkg/PySciML/test/*.jl"]'
)
PACKAGE = Path(pysciml.__file__).resolve().parent
ROOT = PACKAGE.parent
JULIA_PKG = PACKAGE / "julia_pkg" / "PySciML"

pytest.importorskip("juliapkg")


def _julia_files() -> set[str]:
    """Files of the Julia package that must ship, as wheel paths."""
    files = [JULIA_PKG / "Project.toml", *sorted((JULIA_PKG / "src").glob("*.jl")),
             *sorted((JULIA_PKG / "test").glob("*.jl"))]
    return {p.relative_to(ROOT).as_posix() for p in files}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not running from a source checkout")
    src = tmp_path_factory.mktemp("src")
    for entry in ROOT.iterdir():  # top-level build inputs, and the package
        if entry.is_file():
            shutil.copy2(entry, src / entry.name)
    shutil.copytree(PACKAGE, src / "pysciml", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=300, cwd=src,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("pysciml-*.whl")
    return whl


def test_wheel_contains_juliapkg_json_and_the_julia_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pysciml/juliapkg.json" in names
    missing = _julia_files() - names
    assert not missing, f"the wheel lacks {sorted(missing)}; {PACKAGE_DATA_HINT}"
    assert not any(n.endswith("Manifest.toml") for n in names), "a Manifest.toml must never ship"


def test_juliapkg_resolves_pysciml_from_the_unpacked_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = textwrap.dedent(f"""
        import json, os, sys
        # see only the unpacked wheel: drop the source tree and editable-install finders
        sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != {str(ROOT)!r}]
        sys.path.insert(0, {str(site)!r})
        sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")
                            and not getattr(f, "__module__", "").startswith("__editable__")]
        import juliapkg.deps as deps
        files = deps.deps_files()
        compat, pkgs = deps.find_requirements()
        me = [p for p in pkgs if p.name == "PySciML"]
        print(json.dumps({{"files": files, "julia": str(compat),
                          "pysciml": me[0].dict() if me else None,
                          "names": sorted(p.name for p in pkgs)}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON_JULIAPKG")}
    env["PYTHON_JULIAPKG_PROJECT"] = str(tmp_path / "julia_env")  # juliapkg's own deps file goes here
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    deps_file = os.path.normcase(os.path.normpath(site / "pysciml" / "juliapkg.json"))
    assert deps_file in report["files"]
    me = report["pysciml"]
    assert me is not None and me["dev"] is True
    shipped = Path(me["path"])
    assert shipped == (site / "pysciml" / "julia_pkg" / "PySciML")
    assert (shipped / "Project.toml").is_file() and (shipped / "src" / "PySciML.jl").is_file(), PACKAGE_DATA_HINT
    spec = json.loads((PACKAGE / "juliapkg.json").read_text())
    assert me["uuid"] == spec["packages"]["PySciML"]["uuid"]
    assert set(spec["packages"]) <= set(report["names"])
    assert report["julia"] != "None"


def test_juliapkg_finds_the_deps_file_of_this_installation():
    """In this environment (an editable install or a plain checkout on sys.path) juliapkg must find
    pysciml/juliapkg.json, and its PySciML path must be the Julia package next to it."""
    import juliapkg.deps as deps

    ours = os.path.normcase(os.path.normpath(PACKAGE / "juliapkg.json"))
    if ours not in deps.deps_files():
        pytest.skip("pysciml is neither installed editable nor importable from a sys.path entry here")
    spec = json.loads((PACKAGE / "juliapkg.json").read_text())
    path = Path(os.path.normpath(PACKAGE / spec["packages"]["PySciML"]["path"]))
    assert path == JULIA_PKG and (path / "Project.toml").is_file()
