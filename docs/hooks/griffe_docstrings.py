"""Griffe extension for the API reference: reads pysciml's docstrings as written and renders them as Markdown.

The docstrings are Google style with a few reStructuredText habits, which mkdocstrings would otherwise print
literally. Before the Google parser sees a docstring (the source files are not touched), this extension

* turns Sphinx roles (``:class:`ODEProblem```, ``:func:`~pysciml.solve```, ``:mod:`.explicit```) into
  cross-references: the name is looked up the way Python would see it from the docstring's scope (the
  object, its class, its module's names and imports, the subpackages around it, the package's public
  names, and at last by importing it). A name that resolves becomes an *optional* link
  (a link where the target is documented on the site, code text where it is not, e.g. private helpers); a
  name that resolves to nothing is a broken reference and becomes a *required* link, which fails
  ``mkdocs build --strict``;
* splits a parameter entry naming several parameters (``rtol, atol: tolerances ...``) into one entry per
  name with the same description, so each gets its type and default from the signature;
* turns a ``.. math::`` directive into a fenced block, so formulas keep their lines.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?P<kind>class|func|meth|mod|data|attr|exc|obj):`(?P<target>[^`]+)`")
SECTION = re.compile(r"^(?P<indent>\s*)(?:Args|Arguments|Parameters|Attributes|Other Parameters):\s*$")
MULTI_NAME = re.compile(r"^(?P<indent>\s+)(?P<names>[A-Za-z_]\w*(?:, [A-Za-z_]\w*)+)(?P<rest>(?: \([^)]*\))?:.*)$")
MATH = re.compile(r"^(?P<indent>\s*)\.\. math::\s*$")


def _lookup(scope: griffe.Object, dotted: str) -> griffe.Object | griffe.Alias | None:
    head, _, tail = dotted.partition(".")
    obj: Any = scope.members.get(head)
    if obj is None:
        return None
    for part in tail.split(".") if tail else ():
        try:
            obj = obj.members.get(part)
        except griffe.AliasResolutionError:
            return None
        if obj is None:
            return None
    return obj


def _submodules(module: griffe.Module) -> list[griffe.Module]:
    found, todo = [], [module]
    while todo:
        mod = todo.pop(0)
        subs = [m for m in mod.members.values() if not m.is_alias and m.is_module]
        found += subs
        todo += subs
    return found


def _resolve(name: str, obj: griffe.Object) -> str | None:
    """The canonical path ``name`` means inside ``obj``'s docstring, or ``None`` if it names nothing."""
    collection = obj.modules_collection
    if name.startswith("."):  # relative module: ".explicit" from pysciml.engine.tableaus.ark
        level = len(name) - len(name.lstrip("."))
        package = obj.module.path if obj.module.is_package else obj.module.parent.path
        base = package.rsplit(".", level - 1)[0] if level > 1 else package
        name = f"{base}.{name.lstrip('.')}"
    candidates: list[Any] = []
    if "." in name:
        try:
            candidates.append(collection.get_member(name))
        except (KeyError, ValueError, griffe.AliasResolutionError):
            pass
    scopes = [obj, obj.parent, obj.module] if obj.parent is not None else [obj, obj.module]
    candidates += [_lookup(s, name) for s in scopes if s is not None and not s.is_alias]
    # as Sphinx would: a name the module does not import (a lazy export, a type named only in prose) is
    # looked up in the module's own subpackages, then among the package's public names (pysciml.<name>)
    package: Any = obj.module
    while package is not None:
        candidates += [_lookup(m, name) for m in _submodules(package)]
        package = package.parent
    candidates.append(_lookup(obj.package, name))
    for found in candidates:
        if found is None:
            continue
        try:
            return found.final_target.path if found.is_alias else found.path
        except griffe.AliasResolutionError:
            return found.target_path  # imported from outside the loaded packages (torch, ...)
    # what static analysis cannot see (a module-level __getattr__, a folder without __init__.py) is looked up
    # by importing: only in the docstring's own package, and without starting anything (pysciml.julia is lazy)
    return _runtime_path(name if "." in name else f"{obj.module.path}.{name}", obj.package.path)


def _runtime_path(name: str, package: str) -> str | None:
    if name.split(".", 1)[0] != package:
        return None
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for part in parts[i:]:
                value = getattr(value, part)
        except AttributeError:
            return None
        if inspect.ismodule(value):
            return value.__name__
        module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        return f"{module}.{qualname}" if module and qualname else name
    return None


EXTERNAL = ("torch", "scipy", "numpy", "matplotlib")
"""Packages whose API the site does not link to (no inventory is loaded): roles naming them render as code."""


def _role_to_markdown(match: re.Match[str], obj: griffe.Object) -> str:
    target = match["target"].strip()
    short = target.startswith("~")
    name = target.lstrip("~")
    title = name.rsplit(".", 1)[-1] if short else name.lstrip(".")
    if name.split(".", 1)[0] in EXTERNAL:
        return f"`{title}`"
    path = _resolve(name, obj)
    if path is None:  # names nothing: a required reference, so --strict reports it
        return f"[`{title}`][{name}]"
    return f'<autoref identifier="{path}" optional hover><code>{title}</code></autoref>'


def _split_names_and_math(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    in_section: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if (sec := SECTION.match(line)) is not None:
            in_section = sec["indent"]
        elif line.strip() and in_section is not None and len(line) - len(line.lstrip()) <= len(in_section):
            in_section = None
        if (m := MATH.match(line)) is not None:
            block, i = [], i + 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(m["indent"] + " ")):
                block.append(lines[i])
                i += 1
            body = [b.strip() for b in block if b.strip()]
            out += [f"{m['indent']}```text", *[m["indent"] + b for b in body], f"{m['indent']}```", ""]
            continue
        if in_section is not None and (m := MULTI_NAME.match(line)) is not None:
            cont, j = [], i + 1
            while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) > len(m["indent"]):
                cont.append(lines[j])
                j += 1
            for name in m["names"].split(", "):
                out += [f"{m['indent']}{name}{m['rest']}", *cont]
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite each docstring once the object tree is complete (names can then be resolved)."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        doc = obj.docstring
        if doc is None or obj.is_alias:
            return
        text = _split_names_and_math(doc.value)
        doc.value = ROLE.sub(lambda m: _role_to_markdown(m, obj), text)
        doc.__dict__.pop("parsed", None)  # parsed lazily; drop a cached parse of the old text
