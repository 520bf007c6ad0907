"""The built wheel carries the Julia package, and juliapkg finds the deps file from an installed copy.

The Julia package lives at ``julia/PySciML`` (its one real location); ``setup.py``'s ``build_py`` copies it
into the wheel as ``pysciml/julia_pkg/PySciML`` and points the wheel's ``juliapkg.json`` at the copy, and
``MANIFEST.in`` puts it in the sdist. The wheel is built offline from a copy of the working tree (``pip wheel
--no-deps --no-build-isolation``, so the tree itself gets no ``build/`` directory). juliapkg (when installed)
is then asked, through its own deps-file collection (``juliapkg.deps.deps_files`` / ``find_requirements``,
which read files and resolve nothing), what it would install, in a fresh interpreter that sees only the
unpacked wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import pysciml

PACKAGE_DATA_HINT = (
    "the wheel must carry the Julia package: setup.py's build_py copies julia/PySciML/{Project.toml,src/*.jl,"
    "test/*.jl} to pysciml/julia_pkg/PySciML and points the wheel's juliapkg.json there; pyproject.toml's "
    '[tool.setuptools.package-data] ships pysciml = ["juliapkg.json"]'
)
PACKAGE = Path(pysciml.__file__).resolve().parent
ROOT = PACKAGE.parent
JULIA_PKG = ROOT / "julia" / "PySciML"
SHIPPED = "pysciml/julia_pkg/PySciML"



def _julia_files(prefix: str = SHIPPED) -> set[str]:
    """Files of the Julia package that must ship, as archive paths under ``prefix``."""
    files = [JULIA_PKG / "Project.toml", *sorted((JULIA_PKG / "src").glob("*.jl")),
             *sorted((JULIA_PKG / "test").glob("*.jl"))]
    return {f"{prefix}/{p.relative_to(JULIA_PKG).as_posix()}" for p in files}


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The build inputs of the working tree: top-level files, the Python package and the Julia package."""
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not running from a source checkout")
    src = tmp_path_factory.mktemp("src")
    for entry in ROOT.iterdir():
        if entry.is_file():
            shutil.copy2(entry, src / entry.name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "Manifest.toml")
    shutil.copytree(PACKAGE, src / "pysciml", ignore=skip)
    shutil.copytree(JULIA_PKG, src / "julia" / "PySciML", ignore=skip)
    return src


@pytest.fixture(scope="module")
def wheel(source_copy, tmp_path_factory) -> Path:
    src = source_copy
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
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert "pysciml/juliapkg.json" in names
    missing = _julia_files() - names
    assert not missing, f"the wheel lacks {sorted(missing)}; {PACKAGE_DATA_HINT}"
    assert not any(n.endswith("Manifest.toml") for n in names), "a Manifest.toml must never ship"
    assert not any(n.startswith("julia/") for n in names), "the Julia package ships inside pysciml only"
    for name in _julia_files():  # copied, not changed
        assert archive.read(name) == (JULIA_PKG / name.removeprefix(SHIPPED + "/")).read_bytes(), name
    shipped = json.loads(archive.read("pysciml/juliapkg.json"))
    source = json.loads((PACKAGE / "juliapkg.json").read_text())
    assert shipped["packages"]["PySciML"].pop("path") == "julia_pkg/PySciML"
    assert source["packages"]["PySciML"].pop("path") == "../julia/PySciML"
    assert shipped == source, "the wheel's juliapkg.json differs from the source's only in PySciML's path"


def test_sdist_carries_the_julia_package(source_copy, tmp_path):
    """``MANIFEST.in`` puts julia/PySciML in the sdist, so a wheel built from the sdist can carry it."""
    proc = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=source_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sdist,) = tmp_path.glob("pysciml-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = _julia_files("julia/PySciML") - names
    assert not missing, f"the sdist lacks {sorted(missing)}: MANIFEST.in must include julia/PySciML"
    assert {"setup.py", "pysciml/juliapkg.json"} <= names


def test_juliapkg_resolves_pysciml_from_the_unpacked_wheel(wheel, tmp_path):
    pytest.importorskip("juliapkg")
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
    pysciml/juliapkg.json, and its PySciML path must be the repository's julia/PySciML."""
    deps = pytest.importorskip("juliapkg.deps")

    ours = os.path.normcase(os.path.normpath(PACKAGE / "juliapkg.json"))
    if ours not in deps.deps_files():
        pytest.skip("pysciml is neither installed editable nor importable from a sys.path entry here")
    spec = json.loads((PACKAGE / "juliapkg.json").read_text())
    path = Path(os.path.normpath(PACKAGE / spec["packages"]["PySciML"]["path"]))
    assert path == JULIA_PKG and (path / "Project.toml").is_file()
