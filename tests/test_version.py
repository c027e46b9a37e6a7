"""The version is written once: ``__version__`` in ``src/aioiptables/__init__.py``.

pyproject.toml declares the version dynamic and has setuptools read that
assignment without importing the package, so a wheel's metadata can only say
what ``__version__`` says. That the built and installed wheel and sdist agree
is checked where they exist, by ``make package`` (scripts/check_package.py);
the metadata of the development install was written when it was installed,
so comparing with it here would test the install, not the source.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import aioiptables

ROOT = Path(__file__).resolve().parents[1]
# PEP 440's public versions, as a release would be numbered: 1.2.3, 1.2.3rc1, 1.2.3.post1, 1.2.3.dev4.
RELEASE = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


def test_pyproject_reads_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "aioiptables.__version__"}


def test_the_package_assigns_its_version_once_as_a_literal() -> None:
    # One module-level assignment of a string literal: what setuptools reads
    # without importing the package (and so without its dependencies).
    tree = ast.parse((ROOT / "src" / "aioiptables" / "__init__.py").read_text())
    values = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and any(isinstance(t, ast.Name) and t.id == "__version__" for t in _targets(node))
    ]
    assert len(values) == 1
    assert isinstance(values[0], ast.Constant) and values[0].value == aioiptables.__version__


def test_the_version_is_a_release_number() -> None:
    assert RELEASE.fullmatch(aioiptables.__version__), aioiptables.__version__


def test_the_changelog_has_an_entry_for_the_version() -> None:
    headings = re.findall(r"^## \[?([^\]\s]+)\]?", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings[0] == "Unreleased" or headings[0] == aioiptables.__version__
    assert aioiptables.__version__ in headings


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return node.targets if isinstance(node, ast.Assign) else [node.target]
