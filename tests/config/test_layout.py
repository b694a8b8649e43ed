"""The package's layering holds: every room imports only what its ``__init__`` docstring allows,
the declared rooms form one direction (no circles), and no module-level import circle exists.

A room is a top-level module (``model.py``) or folder (``identity/``) of ``otel_processor``.
Its docstring line ``May import: a, b`` is the whole list of other rooms it may use; a
top-level module without such a line may import no other room. Imports inside functions count.
"""

from __future__ import annotations

import ast
import os
import re

import pytest

from paths import PACKAGE
MAY_IMPORT = re.compile(r"^May import:(.*)$", re.M)


def room_of(module: str) -> str:
    """``otel_processor.identity.rules`` -> ``identity``; ``otel_processor.model`` -> ``model``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> dict[str, str]:
    """Dotted module name -> file, for every .py and .pyx in the package."""
    out = {}
    for folder, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith((".py", ".pyx")):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))
                dotted = rel.rsplit(".", 1)[0].replace(os.sep, ".").removesuffix(".__init__")
                out[dotted] = path
    return out


PYX_IMPORT = re.compile(r"^\s*(?:from\s+(\.*)([\w.]*)\s+c?import\s+([\w, ]+)|c?import\s+([\w.]+))", re.M)


def _pyx_as_python(path: str) -> str:
    """Cython is not Python: keep only its import statements, as Python."""
    lines = []
    for m in PYX_IMPORT.finditer(open(path, encoding="utf-8").read()):
        if m.group(4):
            lines.append(f"import {m.group(4)}")
        else:
            lines.append(f"from {m.group(1)}{m.group(2)} import {m.group(3)}")
    return "\n".join(lines)


def imports_of(module: str, path: str) -> set[str]:
    """Every otel_processor module that ``module`` imports, anywhere in the file."""
    text = _pyx_as_python(path) if path.endswith(".pyx") else open(path, encoding="utf-8").read()
    tree = ast.parse(text, path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("otel_processor")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("otel_processor"):
                continue
            found.add(target)
            for alias in node.names:  # "from . import x" may name a submodule
                found.add(f"{target}.{alias.name}")
    return found


def declared() -> dict[str, set[str]]:
    """Room -> the rooms its docstring says it may import."""
    out = {}
    for module, path in modules().items():
        room = room_of(module)
        if module not in (f"otel_processor.{room}", "otel_processor"):
            continue
        doc = ast.get_docstring(ast.parse(open(path, encoding="utf-8").read())) or ""
        found = MAY_IMPORT.search(doc)
        names = re.sub(r"\(.*?\)", "", found.group(1)) if found else ""  # "(no other room)"
        out[room] = {r.strip() for r in names.split(",") if r.strip()}
    return out


def violations(mods: dict[str, str], allowed: dict[str, set[str]]) -> list[str]:
    known = set(mods)
    out = []
    for module, path in sorted(mods.items()):
        room = room_of(module)
        for target in sorted(imports_of(module, path)):
            if target not in known:
                continue  # a name imported from a module, not a module
            other = room_of(target)
            if other and other != room and other not in allowed.get(room, set()):
                out.append(f"{module} imports {target}: room {room!r} may not import {other!r}")
    return out


def test_every_room_opens_with_a_docstring_saying_what_lives_there_and_what_it_may_import():
    rooms = [os.path.join(folder, "__init__.py") for folder, _dirs, files in os.walk(PACKAGE)
             if "__init__.py" in files]
    rooms += [os.path.join(PACKAGE, name) for name in os.listdir(PACKAGE) if name.endswith(".py")]
    for path in rooms:
        doc = ast.get_docstring(ast.parse(open(path, encoding="utf-8").read()))
        assert doc and MAY_IMPORT.search(doc), f"{path}: no docstring with a 'May import:' line"


def test_every_import_stays_within_what_its_room_may_import():
    assert violations(modules(), declared()) == []


def test_declared_rooms_point_one_way():
    graph = declared()
    unknown = {r for deps in graph.values() for r in deps} - set(graph)
    assert not unknown, f"'May import' names rooms that do not exist: {unknown}"
    assert _cycle({room: deps - {room} for room, deps in graph.items()}) is None


def test_no_module_import_circle():
    mods = modules()
    graph = {m: {t for t in imports_of(m, p) if t in mods and t != m} for m, p in mods.items()}
    # A package's __init__ re-exporting its own modules is not a circle of the code.
    graph = {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in graph.items()}
    assert _cycle(graph) is None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_check_catches_an_upward_import(tmp_path):
    """The test above must be able to fail: a lower room importing a higher one is reported."""
    mods = modules()
    bad = tmp_path / "upward.py"
    bad.write_text("from ..hosts.serve import service\n")
    mods["otel_processor.engine.upward"] = str(bad)
    found = violations(mods, declared())
    assert found and all(v.startswith("otel_processor.engine.upward imports otel_processor.hosts.serve")
                         and v.endswith("room 'engine' may not import 'hosts'") for v in found), found
    assert violations(modules(), declared()) == []


@pytest.mark.parametrize("room", ["model", "errors", "anyvalue", "engine", "identity", "observe"])
def test_the_lowest_rooms_import_no_stage_above_them(room):
    assert not declared()[room] & {"pipeline", "hosts", "cli", "config"}
