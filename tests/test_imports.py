"""Imports: no circle among pysciml's modules, every module importable first in a fresh interpreter, and the
subpackages reachable as lazy attributes of ``pysciml``.

The static check parses every module (ast) and follows its module-level imports (not those inside functions
or under ``if TYPE_CHECKING:``): ``import a.b`` depends on ``a.b``; ``from m import x`` depends on ``m.x`` when
that is a module, else on ``m``. Parent packages are not counted (Python initialises them first anyway).
The dynamic check runs in one subprocess: for every module, it forgets all of pysciml, imports that module
first and then all the others (in sorted order after every other first module, in reversed order after the
rest), and reports every error.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pysciml

PACKAGE = Path(pysciml.__file__).resolve().parent
TIMEOUT_S = 120


def modules() -> dict[str, Path]:
    """Every module of pysciml by dotted name (walking files: ``pysciml.engine`` has no ``__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements executed when the module is imported: the body, including ``if``/``try``/``with``
    blocks and class bodies, but not function bodies or ``if TYPE_CHECKING:`` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _module_level_imports(node.body)
            found += _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                found += _module_level_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef, ast.For, ast.While)):
            found += _module_level_imports(node.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the pysciml modules its module-level imports need."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                deps.add(sub if sub in mods else base)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_static_graph_sees_known_edges():
    graph = import_graph()
    assert "pysciml.engine.stages" in graph["pysciml.engine.rosenbrock"]  # from .stages import StageSum
    assert "pysciml.julia._eager" in graph["pysciml"]  # from .julia import _eager (a submodule)
    assert "pysciml.algorithms" in graph["pysciml.algorithms_native"]
    assert "pysciml.models" not in graph["pysciml"]  # only under TYPE_CHECKING / on first access


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYSCIML_JULIA_EAGER"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env, cwd=PACKAGE.parent)


def test_every_module_imports_first_in_any_order():
    names = sorted(modules())
    code = f"""
        import importlib, json, sys, traceback
        names = {names!r}
        errors = []
        def fresh_import(sequence, label, keep=frozenset()):
            for key in [m for m in sys.modules if (m == "pysciml" or m.startswith("pysciml.")) and m not in keep]:
                del sys.modules[key]
            for name in sequence:
                try:
                    importlib.import_module(name)
                except Exception as exc:
                    line = traceback.format_exception_only(exc)[-1].strip()
                    errors.append(f"{{name}} ({{label}}): {{line}}")
                    return
        # each module first into a fresh pysciml (what an import cycle breaks), then all of them in both orders.
        # Python runs pysciml/__init__ before any submodule, so a module that `import pysciml` loads is imported in
        # the same order whichever comes first: one fresh import of the package covers those (importing every module
        # first, and every other after it, grew as n^2 and took minutes at 150 modules)
        fresh_import(["pysciml"], "the package")
        eager = {{m for m in sys.modules if m == "pysciml" or m.startswith("pysciml.")}}
        for first in names:  # the package itself stays loaded, as it always is before a submodule
            if first not in eager:
                fresh_import([first], "imported first", keep=eager)
        fresh_import(names, "all, in order")
        fresh_import(names[::-1], "all, in reverse order")
        print(json.dumps(errors))
    """
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not errors, "\n".join(errors[:20])
    assert "juliacall" not in proc.stdout


def test_subpackages_are_lazy_attributes():
    code = """
        import json, sys
        import pysciml as ps
        before = sorted(m for m in ("pysciml.models", "pysciml.datasets", "pysciml.problems") if m in sys.modules)
        listed = all(name in dir(ps) for name in ("models", "problems", "analysis", "datasets", "sensitivity", "julia"))
        found = {
            "models": ps.models.NeuralODE.__name__,
            "problems": ps.problems.rober.__name__,
            "analysis": ps.analysis.__name__,
            "datasets": ps.datasets.__name__,
            "sensitivity": ps.sensitivity.__name__,
            "julia": ps.julia.julia_status.__name__,
        }
        try:
            ps.no_such_thing
            missing = None
        except AttributeError as exc:
            missing = str(exc)
        print(json.dumps({"before": before, "listed": listed, "found": found, "missing": missing,
                          "juliacall": "juliacall" in sys.modules,
                          "models_loaded": "pysciml.models" in sys.modules}))
    """
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["before"] == [], "import pysciml must not import these until they are used"
    assert report["listed"] and report["models_loaded"]
    assert report["found"] == {"models": "NeuralODE", "problems": "rober", "analysis": "pysciml.analysis",
                               "datasets": "pysciml.datasets", "sensitivity": "pysciml.sensitivity",
                               "julia": "julia_status"}
    assert report["missing"] is not None and "no_such_thing" in report["missing"]
    assert not report["juliacall"]
