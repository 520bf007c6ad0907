"""Build hook: the wheel carries the Julia package ``julia/PySciML`` as ``pysciml/julia_pkg/PySciML``.

The package has one real location, ``julia/PySciML`` at the top of the repository, which is where a checkout
or an editable install uses it: ``pysciml/juliapkg.json`` points juliapkg at ``../julia/PySciML``. A wheel has
no ``julia/`` next to ``pysciml/``, so building one copies the package's ``Project.toml``, ``src/*.jl`` and
``test/*.jl`` into ``pysciml/julia_pkg/PySciML`` of the build tree and points that tree's ``juliapkg.json`` at
the copy. Everything else is configured in ``pyproject.toml``; ``MANIFEST.in`` puts ``julia/`` in the sdist.
"""

from __future__ import annotations

import json
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path("julia") / "PySciML"
SHIPPED = "julia_pkg/PySciML"  # relative to the pysciml package of the wheel
PATTERNS = ("Project.toml", "src/*.jl", "test/*.jl")


class BuildPyWithJulia(build_py):
    """``build_py`` plus the Julia package and the wheel's ``juliapkg.json`` (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # editable: the checkout's julia/PySciML is used in place
            return
        root = Path(__file__).resolve().parent
        source = root / SOURCE
        if not (source / "Project.toml").is_file():
            raise FileNotFoundError(f"the Julia package {source} is missing: the wheel could not carry it")
        target = Path(self.build_lib) / "pysciml"
        for pattern in PATTERNS:
            for path in sorted(source.glob(pattern)):
                dest = target / SHIPPED / path.relative_to(source)
                self.mkpath(str(dest.parent))
                self.copy_file(str(path), str(dest))
        deps = target / "juliapkg.json"
        spec = json.loads(deps.read_text())
        spec["packages"]["PySciML"]["path"] = SHIPPED
        deps.unlink()  # never write through a link to the source file
        deps.write_text(json.dumps(spec, indent=4) + "\n")


setup(cmdclass={"build_py": BuildPyWithJulia})
