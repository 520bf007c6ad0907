"""Static checks of PySciML.jl's own test suite, its compat bounds and the CUDA set-up, without Julia.

``test/runtests.jl`` is read against SciMLBase's types (``SplitODEProblem`` is a tag in ``problem_type``:
its constructor returns an ``ODEProblem``) and against PySciML.jl's parsed source (imported names exist,
keyword calls match the signatures). The ``[compat]`` bounds are checked for the versions the engine relies
on; the CUDA path must never modify the Julia environment while Julia runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_julia_static import JULIA_PKG, PACKAGE, _callee_name, _text, julia_source, project_toml

from pysciml.julia import _startup

ts = pytest.importorskip("tree_sitter")
tsj = pytest.importorskip("tree_sitter_julia")

RUNTESTS = JULIA_PKG / "test" / "runtests.jl"
ODE_SUBLIBRARIES = ("OrdinaryDiffEqLowOrderRK", "OrdinaryDiffEqNonlinearSolve", "OrdinaryDiffEqRosenbrock",
                    "OrdinaryDiffEqSDIRK", "OrdinaryDiffEqTsit5", "OrdinaryDiffEqVerner")


def _runtests_tree():
    return ts.Parser(ts.Language(tsj.language())).parse(RUNTESTS.read_bytes()).root_node


def _walk(node):
    yield node
    for child in node.named_children:
        yield from _walk(child)


def _isa_checks(root) -> list[tuple[str, str]]:
    """``(lhs, rhs)`` source text of every ``lhs isa rhs`` expression."""
    out = []
    for node in _walk(root):
        if node.type == "binary_expression":
            ops = [c for c in node.children if not c.is_named or c.type == "operator"]
            if any(_text(op) == "isa" for op in ops):
                out.append((_text(node.named_children[0]), _text(node.named_children[-1])))
    return out


def test_runtests_never_expects_a_split_problem_type_from_a_constructor():
    """``SplitODEProblem(...)`` returns an ``ODEProblem`` whose ``problem_type`` is a ``SplitODEProblem``
    instance, so ``x isa SplitODEProblem`` is always false unless ``x`` is that ``problem_type``."""
    checks = _isa_checks(_runtests_tree())
    split = [(lhs, rhs) for lhs, rhs in checks if rhs == "SplitODEProblem"]
    assert split, "runtests.jl should check that the split problem is tagged as one"
    for lhs, _ in split:
        assert lhs.endswith(".problem_type"), f"`{lhs} isa SplitODEProblem` is always false (SciMLBase tag type)"


def test_runtests_imports_names_the_package_defines():
    src = julia_source()
    defined = set(src.functions) | set(src.consts) | set(src.structs)
    imported: set[str] = set()
    for node in _walk(_runtests_tree()):
        if node.type == "selected_import":
            ids = [_text(c) for c in node.named_children if c.type == "identifier"]
            if ids[0] == "PySciML":
                imported |= set(ids[1:])
    assert {"make_algorithm", "build_problem", "solve_kwargs"} <= imported
    assert imported <= defined, f"runtests.jl imports undefined names {imported - defined}"


def test_runtests_keyword_calls_match_the_signatures():
    """Every keyword runtests.jl passes to a PySciML.jl function exists, and every required keyword is given."""
    src = julia_source()
    seen = 0
    for node in _walk(_runtests_tree()):
        if node.type != "call_expression" or _callee_name(node) not in ("make_algorithm", "solve_kwargs",
                                                                          "make_sensealg"):
            continue
        name = _callee_name(node)
        params = src.keyword_params(name)
        args = next(c for c in node.children if c.type == "argument_list")
        passed = {_text(c.named_children[0]) for c in args.named_children if c.type == "named_argument"}
        passed |= {_text(c) for c in args.named_children if c.type == "identifier" and
                   any(_text(x) == ";" for x in args.children[:list(args.children).index(c)])}
        assert passed <= set(params), f"{name}: no keywords {passed - set(params)}"
        required = {k for k, v in params.items() if v.required}
        assert required <= passed, f"{name}: required keywords {required - passed} missing"
        seen += 1
    assert seen >= 6


def _lower_bounds(spec: str) -> list[tuple[int, ...]]:
    """Lower bounds of a Julia ``[compat]`` entry of caret specifiers (``"0.9.24"``, ``"1, 2"``)."""
    return [tuple(int(x) for x in part.strip().split(".")) for part in spec.split(",")]


def _majors(spec: str) -> set[int]:
    """The breaking-version groups a caret ``[compat]`` entry admits (``0.x`` counts by its minor)."""
    return {b[0] if b[0] else 1000 + b[1] for b in _lower_bounds(spec)}


def test_pythoncall_compat_is_thread_safe():
    """PythonCall before 0.9.22 is not thread-safe (finalizers), and torch runs CUDA backward passes on its
    own threads; the bound also matches the juliacall that pyproject's ``julia`` extra requires."""
    compat = project_toml()["compat"]["PythonCall"]
    assert min(_lower_bounds(compat)) >= (0, 9, 22), compat
    pyproject = (PACKAGE.parent / "pyproject.toml")
    if pyproject.is_file():
        text = pyproject.read_text()
        required = text.split('"juliacall>=', 1)[1].split('"', 1)[0] if '"juliacall>=' in text else "0"
        assert min(_lower_bounds(compat)) >= tuple(int(x) for x in required.split(".")), (compat, required)


def test_ordinarydiffeq_resolves_to_one_major():
    """v1 and v2 of the OrdinaryDiffEq sublibraries initialize DAEs differently (v2's CheckInit raises
    where v1 adjusted u0); one major, with SciMLSensitivity and SciMLBase versions that support it."""
    compat = project_toml()["compat"]
    for lib in ODE_SUBLIBRARIES:
        assert _majors(compat[lib]) == {2}, (lib, compat[lib])
    assert min(_lower_bounds(compat["SciMLSensitivity"])) >= (7, 110), "first SciMLSensitivity for sublibraries v2"
    assert _majors(compat["SciMLBase"]) == {3}


def test_solve_starts_from_u0_unchanged():
    """``initializealg = NoInit()`` in the solve keywords: the DAE behaviour is pysciml's (a consistency
    check in Python), not whichever OrdinaryDiffEq default resolved."""
    src = julia_source()
    assert "NoInit" in src.imports["SciMLBase"]
    body = next(t for p, t in src.trees.items() if p.name == "solve.jl").root_node
    solve_kwargs = next(n for n in _walk(body) if n.type == "function_definition"
                        and "solve_kwargs(" in _text(n).split("\n", 1)[0])
    assert "initializealg = NoInit()" in _text(solve_kwargs)


def _calls_in(path: Path) -> dict[str, set[str]]:
    """``{function: {"module.attr", ...}}``: attribute calls made inside each function of a Python file."""
    out: dict[str, set[str]] = {}
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, ast.FunctionDef):
            out[fn.name] = {f"{n.func.value.id}.{n.func.attr}" for n in ast.walk(fn)
                            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                            and isinstance(n.func.value, ast.Name)}
    return out


def test_cuda_path_never_resolves_the_julia_environment_while_julia_runs():
    """juliapkg's ``add``/``resolve`` rewrite the manifest: only :func:`add_cuda`, which refuses to run once
    juliacall is loaded, may call them; the solve path (``ensure_cuda``) only loads CUDA.jl."""
    callers = {}
    for path in sorted((PACKAGE / "julia").glob("*.py")):
        for fn, calls in _calls_in(path).items():
            if calls & {"juliapkg.add", "juliapkg.resolve"}:
                callers[fn] = calls
    assert set(callers) == {"add_cuda"}, set(callers)
    assert "ensure_cuda" in _calls_in(PACKAGE / "julia" / "_cuda.py")


def test_add_cuda_refuses_once_julia_runs():
    message = _startup.add_cuda_refusal({"juliacall", "torch"})
    assert message is not None and "fresh Python process" in message and "add_cuda()" in message
    assert _startup.add_cuda_refusal({"torch", "sys"}) is None
    assert "add_cuda()" in _startup.CUDA_MISSING and "backend='torch'" in _startup.CUDA_MISSING


def test_enable_cuda_checks_dlpack_sharing():
    """DLPack.jl 0.3's CUDA extension names CUDA.Mem.DeviceBuffer (deprecated since CUDA.jl 5.4): the Julia
    side must test it and fail with a clear message instead of in the middle of a solve."""
    src = julia_source()
    cuda = next(t for p, t in src.trees.items() if p.name == "cuda.jl").root_node
    enable = next(n for n in _walk(cuda) if n.type == "function_definition"
                  and "enable_cuda()" in _text(n).split("\n", 1)[0])
    text = _text(enable)
    assert "DLPack.dldevice" in text and "kDLCUDA" in text and "backend='torch'" in text
