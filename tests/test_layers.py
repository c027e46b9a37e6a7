"""Imports inside the package point one way.

Every module of ``src/aioiptables`` is read with :mod:`ast` (found by walking
the directory, so a new module is covered as soon as it exists) and its
module-level imports of the package's own modules make a graph, which must
have no cycle. Only imports that run when the module is imported count:
imports inside functions run later, once every module is loaded, and those
under ``if TYPE_CHECKING:`` never run (``errors`` names ``model.Rule`` in its
annotations that way while ``model`` imports ``errors``). So ``model.py`` may
reach up to the parser inside ``Rule.canonical``, as it does, and still sit
below it.

The core also keeps the order README.md's "Layout" paragraph describes: each
module of :data:`LAYOUT` imports only modules before it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "aioiptables"

#: The core, bottom first: a module listed here may import, at module level,
#: only modules listed before it. Modules not listed (``__init__``,
#: ``__main__``, new ones) are held to the no-cycle rule only.
LAYOUT = (
    "errors",  # what every module may raise
    "reads",  # arithmetic on table sizes, imports nothing
    "syntax",  # quoting and splitting iptables' words
    "limits",  # iptables-restore's line and argument limits
    "model",  # values and their validation
    "ruletext",  # a rule as one line of text
    "files",  # rule-set files
    "runner",  # the one process seam
    "events",  # nf_tables' change announcements
    "client",  # operations as argv
    "extensions",  # what iptables' matches and targets print
    "parse",  # listings to rules, canonical forms
    "plan",  # desired against observed, as restore payloads
    "cache",
    "controller",
    "fake",
    "metrics",
    "output",  # what the command line prints
    "demo",
    "cli",
)


@dataclass
class Imports:
    """A module's imports of the package's own modules, by when they run."""

    runtime: set[str] = field(default_factory=set)
    #: Under ``if TYPE_CHECKING:``: read by type checkers, never run.
    type_only: set[str] = field(default_factory=set)


def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name (``aioiptables.model``;
    the package itself is ``aioiptables``, its ``__init__.py``)."""
    package = package_dir.name
    modules: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_statements(body: Iterable[ast.stmt], type_only: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """The import statements that run when the module is imported, each with
    whether it sits under ``if TYPE_CHECKING:``. Blocks that run at import
    (``if``, ``try``, ``with``, class bodies) are entered; function bodies are
    not: they run when called."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_only
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_statements(node.body, True)
            yield from _import_statements(node.orelse, type_only)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _import_statements([child], type_only)
            if isinstance(node, ast.Try | ast.TryStar):
                for handler in node.handlers:
                    yield from _import_statements(handler.body, type_only)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules one import statement loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        # Relative to the module's package: the module itself for an __init__.
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    found: set[str] = set()
    for alias in node.names:
        # `from pkg import name`: a submodule when one has that name, else an
        # attribute of pkg (its __init__ must then have run far enough).
        submodule = f"{source}.{alias.name}"
        if submodule in known:
            found.add(submodule)
        elif source in known:
            found.add(source)
    return found


def imports_of(module: str, source: str, known: set[str], *, is_package: bool = False) -> Imports:
    """What ``module`` (whose text is ``source``) imports of ``known``, at module level."""
    imports = Imports()
    for node, type_only in _import_statements(ast.parse(source).body):
        assert isinstance(node, ast.Import | ast.ImportFrom)
        targets = _targets(node, module, is_package, known) - {module}
        (imports.type_only if type_only else imports.runtime).update(targets)
    return imports


def import_graph(package_dir: Path) -> dict[str, Imports]:
    """Each module of the package, with what it imports of the others."""
    modules = module_names(package_dir)
    known = set(modules)
    return {
        name: imports_of(name, path.read_text(), known, is_package=path.name == "__init__.py")
        for name, path in modules.items()
    }


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle of ``graph`` as the path around it (first name repeated at the
    end), or None when the graph has none. Deterministic: nodes are visited in
    sorted order."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor in on_path:
                return [*path[path.index(successor) :], successor]
            if successor not in done:
                cycle = visit(successor)
                if cycle is not None:
                    return cycle
        on_path.discard(path.pop())
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def _runtime_graph(package_dir: Path) -> dict[str, set[str]]:
    return {name: imports.runtime for name, imports in import_graph(package_dir).items()}


def _short(name: str) -> str:
    return name.removeprefix("aioiptables.")


# -- the package ---------------------------------------------------------------------------------


def test_the_package_has_no_module_level_import_cycle() -> None:
    cycle = find_cycle(_runtime_graph(PACKAGE_DIR))
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


def test_the_core_imports_only_what_comes_before_it_in_the_layout() -> None:
    graph = _runtime_graph(PACKAGE_DIR)
    rank = {name: index for index, name in enumerate(LAYOUT)}
    upward = sorted(
        f"{_short(module)} imports {_short(target)}"
        for module, targets in graph.items()
        if _short(module) in rank
        for target in targets
        if _short(target) in rank and rank[_short(target)] >= rank[_short(module)]
    )
    assert upward == [], "imports against the layout (LAYOUT, bottom first): " + "; ".join(upward)


def test_the_layout_names_modules_that_exist() -> None:
    # A module renamed or removed must leave LAYOUT too, or its place would go unchecked.
    modules = {_short(name) for name in module_names(PACKAGE_DIR)}
    assert set(LAYOUT) - modules == set()


def test_the_graph_covers_every_module_of_the_package() -> None:
    found = {path.stem for path in PACKAGE_DIR.glob("*.py")}
    graph = {_short(name) for name in import_graph(PACKAGE_DIR)}
    assert graph == (found - {"__init__"}) | {"aioiptables"}
    assert {"model", "parse", "controller", "cli"} <= graph


# -- what counts as an import, and finding a cycle -----------------------------------------------

KNOWN = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"}


@pytest.mark.parametrize(
    ("source", "runtime", "type_only"),
    [
        ("from . import b", {"pkg.b"}, set()),
        ("from . import b, a", {"pkg.b"}, set()),  # a module importing itself is no edge
        ("from .b import x", {"pkg.b"}, set()),
        ("from .sub.c import x", {"pkg.sub.c"}, set()),
        ("from .sub import c", {"pkg.sub.c"}, set()),
        ("from . import __version__", {"pkg"}, set()),  # an attribute: the package's __init__
        ("import pkg.b", {"pkg.b"}, set()),
        ("import pkg.b as bee", {"pkg.b"}, set()),
        ("from pkg import b", {"pkg.b"}, set()),
        ("from pkg.b import x", {"pkg.b"}, set()),
        ("import os\nfrom collections import abc", set(), set()),
        ("def f():\n    from . import b", set(), set()),
        ("async def f():\n    from . import b", set(), set()),
        ("class C:\n    def m(self):\n        from . import b", set(), set()),
        ("class C:\n    from . import b", {"pkg.b"}, set()),
        (
            "try:\n    from . import b\nexcept ImportError:\n    from . import sub",
            {"pkg.b", "pkg.sub"},
            set(),
        ),
        ("if True:\n    from . import b\nelse:\n    from . import sub", {"pkg.b", "pkg.sub"}, set()),
        ("with x:\n    from . import b", {"pkg.b"}, set()),
        ("if TYPE_CHECKING:\n    from . import b", set(), {"pkg.b"}),
        ("if typing.TYPE_CHECKING:\n    from .b import x", set(), {"pkg.b"}),
        ("if TYPE_CHECKING:\n    from . import b\nelse:\n    from . import sub", {"pkg.sub"}, {"pkg.b"}),
    ],
)
def test_imports_of_a_module(source: str, runtime: set[str], type_only: set[str]) -> None:
    found = imports_of("pkg.a", source, KNOWN)
    assert (found.runtime, found.type_only) == (runtime, type_only)


def test_relative_imports_resolve_from_the_importing_module_s_package() -> None:
    assert imports_of("pkg.sub.c", "from .. import b", KNOWN).runtime == {"pkg.b"}
    assert imports_of("pkg.sub", "from . import c", KNOWN, is_package=True).runtime == {"pkg.sub.c"}
    assert imports_of("pkg", "from .a import x", KNOWN, is_package=True).runtime == {"pkg.a"}


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({}, None),
        ({"a": []}, None),
        ({"a": ["b", "c"], "b": ["c"], "c": []}, None),  # a diamond's two ways down are no cycle
        ({"a": ["a"]}, ["a", "a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"top": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
        ({"a": ["z"], "z": [], "b": ["c"], "c": ["b"]}, ["b", "c", "b"]),
    ],
)
def test_find_cycle(graph: dict[str, list[str]], cycle: list[str] | None) -> None:
    assert find_cycle(graph) == cycle


def test_a_package_with_an_import_cycle_is_caught(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    files = {
        "__init__.py": "from .top import run\n",
        "top.py": "from .a import x\n",
        "a.py": "from typing import TYPE_CHECKING\nfrom . import b\nx = 1\n",
        "b.py": "from .a import x  # the cycle: a imports b, b imports a\n",
        "c.py": "def late():\n    from . import top  # inside a function: no edge\n",
    }
    package.mkdir()
    for name, text in files.items():
        (package / name).write_text(text)
    assert find_cycle(_runtime_graph(package)) == ["pkg.a", "pkg.b", "pkg.a"]
