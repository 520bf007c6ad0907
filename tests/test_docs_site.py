"""The documentation site: ``mkdocs build --strict`` succeeds (a broken link, nav entry or cross-reference fails
it), and every ```python block of the guide pages runs.

Code blocks: ``docs/index.md``, ``docs/getting-started.md`` and ``docs/guide/*.md``. The blocks of one page run
in order in one namespace (as a reader would type them), in a temporary working directory, with matplotlib's
Agg backend. A block preceded by ``<!-- docs-test: skip (reason) -->`` (e.g. it needs Julia or a GPU) is only
compiled, and reported as skipped with that reason. One test per block, so a failure names the page and line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [DOCS / "index.md", DOCS / "getting-started.md", *sorted((DOCS / "guide").glob("*.md"))]
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
BUILD_ENV = {"NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2 (not a build warning)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None  # reason, for a block marked docs-test: skip

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(DOCS).as_posix()}:{self.line}"


def python_blocks(page: Path) -> list[Block]:
    """The ```python blocks of a page, with their skip markers (the non-blank line before the fence)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i, previous = [], 0, ""
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        start, indent, body = i, fence["indent"], []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if fence["lang"] in ("python", "py"):
            marker = SKIP.match(previous)
            blocks.append(Block(page, start + 1, "\n".join(body) + "\n", marker["reason"] if marker else None))
        previous, i = "```", i + 1
    return blocks


BLOCKS = [b for page in PAGES for b in python_blocks(page)]
_NAMESPACES: dict[Path, dict] = {}
_FAILED: set[Path] = set()
_PAGE_DTYPES: dict[Path, torch.dtype] = {}


def test_every_guide_page_has_code() -> None:
    assert len(PAGES) >= 8, [p.name for p in PAGES]
    for page in PAGES:
        if page.name != "benchmarks.md":  # plots and numbers, no code to run
            assert python_blocks(page), f"{page.relative_to(ROOT)} has no ```python block"


def test_readme_quick_start_is_the_getting_started_one() -> None:
    """The README's quick start is run here, through its copy in getting-started.md."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1]
    code = quick.split("```python\n", 1)[1].split("```", 1)[0]
    assert code in (DOCS / "getting-started.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_code_block(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    code = compile(block.code, block.id, "exec")  # marked blocks must still be valid Python
    if block.skip is not None:
        pytest.skip(f"marked in the page: {block.skip}")
    if block.page in _FAILED:
        pytest.skip("an earlier block of this page failed")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace = _NAMESPACES.setdefault(block.page, {"__name__": "__docs__"})
    # a page is one script: a default dtype it sets holds for its later blocks, not for other pages or tests
    outside = torch.get_default_dtype()
    torch.set_default_dtype(_PAGE_DTYPES.get(block.page, outside))
    try:
        exec(code, namespace)
    except BaseException:
        _FAILED.add(block.page)
        raise
    finally:
        plt.close("all")
        _PAGE_DTYPES[block.page] = torch.get_default_dtype()
        torch.set_default_dtype(outside)


def _build(config: Path, site: Path, docs_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` in a fresh interpreter (``docs_dir`` overrides the config's)."""
    script = (
        "import logging, sys\n"
        "from mkdocs.commands.build import build\n"
        "from mkdocs.config import load_config\n"
        "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')\n"
        "kw = {'docs_dir': sys.argv[3]} if len(sys.argv) > 3 else {}\n"
        "build(load_config(sys.argv[1], site_dir=sys.argv[2], strict=True, **kw))\n"
    )
    args = [sys.executable, "-c", script, str(config), str(site)] + ([str(docs_dir)] if docs_dir else [])
    return subprocess.run(args, cwd=site.parent, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **BUILD_ENV})


@pytest.mark.heavy
def test_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e .[docs]")
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(site)], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                         env={**os.environ, **BUILD_ENV})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    api = (site / "api" / "solve" / "index.html").read_text(encoding="utf-8")
    assert 'id="pysciml.solve.solve"' in api and "odeint_adjoint" in api
    # docstring roles became links: :class:`ODEProblem` in solve's docstring points to the problems page
    assert 'href="../problem/#pysciml.ODEProblem"' in api
    for page in ("notebooks/quickstart", "notebooks/neural_ode", "notebooks/sinode", "guide/benchmarks"):
        assert (site / page / "index.html").is_file(), page
    assert (site / "benchmarks" / "results" / "stiff_work_precision.png").is_file()
    assert not list(site.rglob("*_smoke.png"))
    assert not (ROOT / "site").exists() and not (ROOT / ".cache").exists()  # nothing written into the repo
    missing = undocumented_public_names(site)
    assert not missing, f"public names without an entry in the API reference (add them to a docs/api page): {missing}"


def undocumented_public_names(site: Path) -> list[str]:
    """Names in the ``__all__`` of pysciml and its public subpackages that no API page has an anchor for (under
    the public name or the defining module's path)."""
    import importlib
    import inspect

    anchors = {m for page in (site / "api").rglob("*.html")
               for m in re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8"))}
    missing = []
    for package in ("pysciml", "pysciml.models", "pysciml.problems", "pysciml.datasets", "pysciml.pinn",
                    "pysciml.analysis"):
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.ismodule(value) or not (inspect.isclass(value) or inspect.isfunction(value)):
                continue  # constants are described in their module's docstring
            paths = {f"{package}.{name}", f"{value.__module__}.{value.__qualname__}",
                     f"{value.__module__.removeprefix('pysciml.')}.{value.__qualname__}"}
            if not paths & anchors:
                missing.append(f"{package}.{name}")
    return missing


@pytest.mark.heavy
def test_broken_reference_fails_the_build(tmp_path: Path) -> None:
    """A cross-reference to a name that does not exist, on a page or in a docstring role, fails --strict."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e .[docs]")
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("*.png"))
    (docs / "index.md").write_text("# x\n\nSee [`nothing`][pysciml.no_such_name].\n", encoding="utf-8")
    run = _build(ROOT / "mkdocs.yml", tmp_path / "site", docs)
    assert run.returncode != 0
    assert "pysciml.no_such_name" in run.stderr, run.stderr


def test_docstring_roles_resolve_or_fail(tmp_path: Path) -> None:
    """The griffe extension: a role naming an existing object becomes an optional link, one naming nothing a
    required (strict-failing) one; multi-name parameter entries are split."""
    griffe = pytest.importorskip("griffe")
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        from griffe_docstrings import SphinxRolesToMarkdown
    finally:
        sys.path.remove(str(DOCS / "hooks"))
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .core import Thing, run\n", encoding="utf-8")
    (pkg / "core.py").write_text(
        'class Thing:\n    """A thing."""\n\n\n'
        'def run(a, b):\n    """Run a :class:`Thing`, not a :func:`~demo.missing`.\n\n'
        '    Args:\n        a, b: the inputs.\n    """\n',
        encoding="utf-8",
    )
    loader = griffe.GriffeLoader(search_paths=[str(tmp_path)], docstring_parser=griffe.Parser.google,
                                 extensions=griffe.load_extensions(SphinxRolesToMarkdown))
    doc = loader.load("demo")["core.run"].docstring
    assert '<autoref identifier="demo.core.Thing" optional hover><code>Thing</code></autoref>' in doc.value
    assert "[`missing`][demo.missing]" in doc.value
    params = [p.name for s in doc.parsed if s.kind.value == "parameters" for p in s.value]
    assert params == ["a", "b"]
