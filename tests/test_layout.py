"""The house stays clean: no import circles in gateway/, small modules, every room says what it owns.

Imports are read from the source (``ast``), the lazy ones inside functions
included: a circle hidden in a function is still a circle, it only fails later.
Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import gateway

PACKAGE = Path(gateway.__file__).resolve().parent
MAX_LINES = 400


def modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(sub) for sub in ast.walk(node))
    return hidden


def _imported(node: ast.AST, root: str, known: Mapping[str, Path]) -> Iterator[str]:
    """The modules of ``root`` an import statement names: ``from a import b`` names ``a.b`` when that is a module."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name.split(".")[0] == root)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == root:
        for alias in node.names:
            submodule = f"{node.module}.{alias.name}"
            yield submodule if submodule in known else node.module


def import_graph(known: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (``from a import b`` names ``a.b`` when it is one)."""
    root = next(iter(known)).split(".")[0]

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hidden = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            for target in filter(None, (owner(imported) for imported in _imported(node, root, known))):
                if target != name:
                    graph[name].add(target)
    return graph


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_gateway_has_no_import_circles():
    assert circles(import_graph(modules(PACKAGE))) == []


def test_the_circle_finder_sees_a_circle_hidden_in_a_function(tmp_path):
    package = tmp_path / "house"
    package.mkdir()
    (package / "__init__.py").write_text('"""A house."""\n')
    (package / "a.py").write_text("from house import b\n")
    (package / "b.py").write_text("def later():\n    from house.c import thing\n")
    (package / "c.py").write_text("import house.a\nthing = 1\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from house import a\n")
    assert circles(import_graph(modules(package))) == [["house.a", "house.b", "house.c"]]


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, path in modules(PACKAGE).items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"


@pytest.mark.parametrize("package", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_every_room_says_what_it_owns(package):
    docstring = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert docstring and len(docstring.split()) >= 8, (
        f"gateway/{package}/__init__.py needs a docstring saying what it owns"
    )
