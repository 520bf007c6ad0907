"""Static checks of the Julia engine, which run without Julia.

Every ``.jl`` file of PySciML.jl must parse with tree-sitter-julia without error or missing nodes, and
the names the Python side relies on (entry points, keyword arguments, callback methods, dependencies)
must be defined in the parsed Julia source. ``test_julia_mapping.py`` reuses :func:`julia_source`.
"""

from __future__ import annotations

import ast
import json
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

import pysciml
from pysciml.julia import JULIA_ENTRY_POINTS
from pysciml.julia._callbacks import TorchCallbacks
from pysciml.julia._startup import julia_package_dir

ts = pytest.importorskip("tree_sitter")
tsj = pytest.importorskip("tree_sitter_julia")

PACKAGE = Path(pysciml.__file__).resolve().parent
JULIA_PKG = julia_package_dir()  # julia/PySciML of the checkout (pysciml/julia_pkg/PySciML in a wheel)
STDLIB = {"LinearAlgebra", "Test"}


def _text(node) -> str:
    return node.text.decode()


def _strings(node) -> list[str]:
    """Contents of the string literals directly inside ``node`` (tuple/vector elements)."""
    out = []
    for child in node.named_children:
        if child.type == "string_literal":
            out.append("".join(_text(c) for c in child.named_children if c.type == "content"))
    return out


def _call_of(node):
    """The call expression of a signature (``f(args) where {...}`` and ``f(args)::T`` unwrapped)."""
    while node is not None and node.type in ("signature", "where_expression", "typed_expression"):
        node = node.named_children[0] if node.named_children else None
    return node if node is not None and node.type == "call_expression" else None


def _callee_name(call) -> str | None:
    head = call.named_children[0]
    if head.type == "identifier":
        return _text(head)
    if head.type == "field_expression":  # Base.f(...) = ...
        return _text(head.named_children[-1])
    return None  # functor definitions such as (cb::PyCallback)(...)


@dataclass(frozen=True)
class KeywordParam:
    """One keyword parameter of a Julia method: whether it has no default, and its declared type."""

    required: bool
    type: str | None


def _keyword_params(call) -> dict[str, KeywordParam]:
    """Keyword parameters (after ``;``) of a definition's call expression; a splat is ``name...``."""
    args = next(c for c in call.children if c.type == "argument_list")
    after = False
    params: dict[str, KeywordParam] = {}
    for child in args.children:
        if child.type == ";":
            after = True
        elif not after or not child.is_named or child.type == "comment":
            continue
        elif child.type == "splat_expression":
            params[_text(child.named_children[0]) + "..."] = KeywordParam(False, None)
        else:
            required = child.type != "named_argument"
            target = child if required else child.named_children[0]
            typ = None
            if target.type == "typed_expression":
                typ = _text(target.named_children[-1])
                target = target.named_children[0]
            params[_text(target)] = KeywordParam(required, typ)
    return params


def _keywords(call) -> set[str]:
    """Names of the keyword parameters of a definition's call expression; ``name...`` for a splat."""
    return set(_keyword_params(call))


def _positional(call) -> int:
    """Number of positional parameters of a definition's call expression."""
    args = next(c for c in call.children if c.type == "argument_list")
    count = 0
    for child in args.children:
        if child.type == ";":
            break
        if child.is_named and child.type not in ("named_argument", "comment"):
            count += 1
    return count


@dataclass
class JuliaSource:
    """The parsed PySciML.jl sources and what the tests need from them."""

    trees: dict[Path, object]
    functions: dict[str, list[object]] = field(default_factory=dict)  # name -> call expressions
    exports: set[str] = field(default_factory=set)
    imports: dict[str, set[str]] = field(default_factory=dict)  # package -> imported names
    structs: dict[str, list[str]] = field(default_factory=dict)  # struct -> field names
    consts: dict[str, object] = field(default_factory=dict)  # const name -> value node
    short_values: dict[str, object] = field(default_factory=dict)  # short function -> body node

    def arities(self, name: str) -> set[int]:
        return {_positional(c) for c in self.functions[name]}

    def keywords(self, name: str) -> set[str]:
        return set().union(*(_keywords(c) for c in self.functions[name]))

    def keyword_params(self, name: str) -> dict[str, KeywordParam]:
        """Keyword parameters of the (single) method ``name`` that declares keywords."""
        found = [params for c in self.functions[name] if (params := _keyword_params(c))]
        assert len(found) == 1, f"{name}: expected one method with keywords, found {len(found)}"
        return found[0]

    def string_keys(self, const: str) -> set[str]:
        """Keys of a ``const X = Dict("a" => ..., ...)`` or elements of a tuple/vector of strings."""
        value = self.consts[const]
        if value.type in ("tuple_expression", "vector_expression"):
            return set(_strings(value))
        keys = set()
        for pair in value.named_children[-1].named_children:  # argument_list of Dict(...)
            if pair.type == "binary_expression" and pair.named_children[0].type == "string_literal":
                keys |= set(_strings(pair)[:1])
        return keys

    def returned_strings(self, name: str) -> set[str]:
        return set(_strings(self.short_values[name]))

    def _visit(self, node) -> None:
        kind = node.type
        if kind == "function_definition":
            call = _call_of(next((c for c in node.named_children if c.type == "signature"), None))
            if call is not None and (name := _callee_name(call)):
                self.functions.setdefault(name, []).append(call)
        elif kind == "assignment" and node.parent is not None and node.parent.type != "const_statement":
            call = _call_of(node.named_children[0])
            if call is not None and (name := _callee_name(call)):
                self.functions.setdefault(name, []).append(call)
                self.short_values[name] = node.named_children[-1]
        elif kind == "const_statement":
            assign = node.named_children[0]
            self.consts[_text(assign.named_children[0])] = assign.named_children[-1]
        elif kind == "export_statement":
            self.exports |= {_text(c) for c in node.named_children if c.type == "identifier"}
        elif kind == "using_statement":
            for item in node.named_children:
                if item.type == "selected_import":
                    ids = [_text(c) for c in item.named_children if c.type == "identifier"]
                    self.imports.setdefault(ids[0], set()).update(ids[1:])
                elif item.type == "identifier":
                    self.imports.setdefault(_text(item), set())
        elif kind == "struct_definition":
            head = next(c for c in node.named_children if c.type == "type_head")
            ident = head.named_children[0]
            name = _text(ident if ident.type == "identifier" else ident.named_children[0])
            fields = []
            for child in node.named_children:
                if child.type == "typed_expression":
                    fields.append(_text(child.named_children[0]))
                elif child.type == "identifier":
                    fields.append(_text(child))
            self.structs[name] = fields
        for child in node.named_children:
            self._visit(child)


def _bad_nodes(node, found: list) -> list:
    if node.type == "ERROR" or node.is_missing:
        found.append(f"{node.type} at line {node.start_point[0] + 1}: {_text(node)[:60]!r}")
    for child in node.children:
        _bad_nodes(child, found)
    return found


def jl_files() -> list[Path]:
    return sorted(JULIA_PKG.rglob("*.jl"))


@cache
def julia_source() -> JuliaSource:
    """Parse every .jl file under ``src/`` once."""
    parser = ts.Parser(ts.Language(tsj.language()))
    src = JuliaSource({p: parser.parse(p.read_bytes()) for p in sorted((JULIA_PKG / "src").glob("*.jl"))})
    for tree in src.trees.values():
        src._visit(tree.root_node)
    return src


def project_toml() -> dict:
    return tomllib.loads((JULIA_PKG / "Project.toml").read_text())


# ----------------------------------------------------------------------------------------------- tests
def test_julia_package_layout():
    assert (JULIA_PKG / "Project.toml").is_file()
    assert (JULIA_PKG / "src" / "PySciML.jl").is_file()
    names = {p.name for p in (JULIA_PKG / "src").glob("*.jl")}
    assert {"views.jl", "callbacks.jl", "solve.jl", "sensitivities.jl", "precompile.jl"} <= names
    included = {_strings(c.named_children[-1])[0]
                for c in _calls(julia_source().trees[JULIA_PKG / "src" / "PySciML.jl"].root_node, "include")}
    assert included == names - {"PySciML.jl"}, "every source file is included by the module exactly once"


def _calls(node, name: str) -> list:
    out = []
    if node.type == "call_expression" and _callee_name(node) == name:
        out.append(node)
    for child in node.named_children:
        out.extend(_calls(child, name))
    return out


@pytest.mark.parametrize("path", jl_files(), ids=lambda p: str(p.relative_to(JULIA_PKG)))
def test_every_jl_file_parses_without_errors(path):
    parser = ts.Parser(ts.Language(tsj.language()))
    tree = parser.parse(path.read_bytes())
    bad = _bad_nodes(tree.root_node, [])
    assert not bad, f"{path.name}: " + "; ".join(bad[:5])
    assert tree.root_node.named_child_count > 0


def test_entry_points_are_defined_and_exported():
    src = julia_source()
    for name in JULIA_ENTRY_POINTS:
        assert name in src.functions, f"PySciML.jl defines no function {name}"
        assert name in src.exports, f"PySciML.jl does not export {name}"


def _python_bridge_calls() -> dict[str, list[ast.Call]]:
    """Calls the Python side makes on the PySciML module handle (``pkg.x(...)``, ``self._pkg.x(...)``)."""
    calls: dict[str, list[ast.Call]] = {}
    for path in sorted((PACKAGE / "julia").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                handle = (isinstance(owner, ast.Name) and owner.id == "pkg") or (
                    isinstance(owner, ast.Attribute) and owner.attr in ("pkg", "_pkg"))
                if handle:
                    calls.setdefault(node.func.attr, []).append(node)
    return calls


def test_python_calls_only_entry_points():
    calls = _python_bridge_calls()
    assert {"solve_ode", "interpolate", "adjoint_gradients", "enable_cuda", "cuda_installed"} <= set(calls)
    assert set(calls) <= set(JULIA_ENTRY_POINTS), set(calls) - set(JULIA_ENTRY_POINTS)


def test_python_calls_match_julia_signatures():
    """Every call the Python side makes has a Julia method with that many positional arguments, and
    every keyword it passes by name is a keyword of that Julia function."""
    src = julia_source()
    built = 0
    for name, nodes in _python_bridge_calls().items():
        accepted = src.keywords(name)
        for call in nodes:
            if any(isinstance(a, ast.Starred) for a in call.args):  # built by pysciml.julia._arguments
                built += 1
                continue
            assert len(call.args) in src.arities(name), f"{name}: no Julia method takes {len(call.args)} arguments"
            passed = {k.arg for k in call.keywords if k.arg is not None}
            assert passed <= accepted, f"{name}: Julia lacks keywords {passed - accepted}"
    # solve_ode (twice) and adjoint_gradients: their arguments are checked in test_julia_arguments.py
    assert built == 3


def test_algorithm_options_reach_make_algorithm():
    from pysciml.algorithms_firk import FIRKAlgorithm
    from pysciml.julia._mapping import ALL_ALGORITHMS, algorithm_options
    from pysciml.linsolve_options import GMRES

    src = julia_source()
    assert "algorithm_options..." in src.keywords("solve_ode")
    assert "algorithm_options..." in src.keywords("adjoint_gradients")
    accepted = src.keywords("make_algorithm")
    for cls in ALL_ALGORITHMS.values():
        if not cls.julia_name:
            continue
        variants = [cls()]
        if "linsolve" in cls.__dataclass_fields__ and not issubclass(cls, FIRKAlgorithm):  # FIRK: dense LU only
            variants.append(cls(linsolve=GMRES(restart=7)))
        for alg in variants:
            assert set(algorithm_options(alg)) <= accepted, (alg, accepted)


def test_sensealg_options_reach_adjoint_gradients():
    from pysciml.julia._mapping import JULIA_SENSEALGS, SENSEALG_CLASSES, julia_sensealg

    accepted = julia_source().keywords("adjoint_gradients")
    for name in JULIA_SENSEALGS:
        _, opts = julia_sensealg(SENSEALG_CLASSES[name]())
        assert set(opts) <= accepted, (name, opts)


def test_callback_methods_exist_in_python():
    """Julia looks up these bound methods on the Python TorchCallbacks object."""
    fields = julia_source().structs["CallbackSet"]
    assert fields == ["rhs", "jac", "tgrad", "jvp", "vjp", "vjp_p"]
    for name in fields:
        assert callable(getattr(TorchCallbacks, name, None)), name


def test_dependencies_are_declared_with_compat():
    proj = project_toml()
    deps, compat = proj["deps"], proj["compat"]
    for package in julia_source().imports:
        if package in ("Base", "Core"):
            continue
        assert package in deps, f"`using {package}` but {package} is not in Project.toml [deps]"
        assert package in compat, f"{package} has no [compat] entry"
    assert "julia" in compat
    assert "CUDA" not in deps, "CUDA.jl is added on demand, never a hard dependency"


def test_juliapkg_json_matches_project_toml():
    spec = json.loads((PACKAGE / "juliapkg.json").read_text())
    proj = project_toml()
    assert spec["julia"] == proj["compat"]["julia"]
    pkgs = spec["packages"]
    me = pkgs["PySciML"]
    assert me["uuid"] == proj["uuid"] and me["dev"] is True
    assert (PACKAGE / me["path"]).resolve() == JULIA_PKG
    if (PACKAGE.parent / "pyproject.toml").is_file():  # a checkout: the package's one real location
        assert JULIA_PKG == (PACKAGE.parent / "julia" / "PySciML").resolve()
        assert not JULIA_PKG.is_symlink() and not (PACKAGE / "julia_pkg").exists()
    for name, entry in pkgs.items():
        if name == "PySciML":
            continue
        assert entry["uuid"] == proj["deps"][name], name
        assert entry["version"] == proj["compat"][name], name


def test_juliapkg_json_is_valid_for_juliapkg():
    juliapkg = pytest.importorskip("juliapkg")
    from juliapkg.compat import Compat

    spec = json.loads((PACKAGE / "juliapkg.json").read_text())
    assert Compat.parse(spec["julia"])
    for name, entry in spec["packages"].items():
        juliapkg.PkgSpec(name=name, **entry)  # validates name, uuid, types
        if "version" in entry:
            assert Compat.parse(entry["version"]), name
