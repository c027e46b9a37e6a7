"""Check the built wheel and sdist (``make package``, after ``python -m build``).

Usage: ``python scripts/check_package.py DIST``. DIST must hold exactly the
wheel and the sdist of the version ``src/aioiptables/__init__.py`` declares.

What is checked:

- the wheel holds every file of ``src/aioiptables`` (``py.typed`` included)
  and nothing else but its metadata, which names that version;
- the sdist holds every file of ``src/aioiptables``, ``tests`` and
  ``examples`` and the Markdown of ``docs`` (the suite runs from it, docs
  blocks included), README.md, CHANGELOG.md and pyproject.toml, and no
  bytecode;
- each installs into a fresh virtual environment (no access to the source
  tree: another directory, no PYTHONPATH) where ``importlib.metadata`` and
  ``aioiptables.__version__`` both say that version, every module imports
  with the required dependencies alone (or fails only for an optional
  one's), ``py.typed`` is installed, and the ``aioiptables`` command answers
  ``--help`` and ``--version``.

New modules are covered without editing this script: the lists come from
the source tree.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "aioiptables"
# The sdist carries the test suite and what it reads besides the package: trees, with
# the files of each it must hold. docs/index.md is made from README.md by make docs.
SDIST_TREES = (("src/aioiptables", "*"), ("tests", "*"), ("examples", "*"), ("docs", "*.md"))
SDIST_FILES = ("pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE")
GENERATED = ("docs/index.md",)
# Modules an optional extra provides (aioiptables.metrics needs the metrics extra).
OPTIONAL_MODULES = ("prometheus_client",)


class PackageError(Exception):
    """What a built package lacks or gets wrong."""


def declared_version() -> str:
    """``__version__`` as written in the source, read as setuptools reads it."""
    tree = ast.parse((ROOT / "src" / NAME / "__init__.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise PackageError("src/aioiptables/__init__.py assigns no __version__ literal")


def source_files(tree: str, pattern: str = "*") -> set[str]:
    """The files under ``tree`` matching ``pattern`` (relative to the repository),
    bytecode and generated files left out."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / tree).rglob(pattern)
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    } - set(GENERATED)


def _require(absent: Iterable[str], what: str) -> None:
    """Fail naming ``absent``, if anything is."""
    names = sorted(absent)
    if names:
        raise PackageError(f"{what}: " + ", ".join(names))


def check_wheel(wheel: Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
        dist_info = f"{NAME}-{version}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    package = {name.removeprefix("src/") for name in source_files(f"src/{NAME}")}
    _require(package - members, f"{wheel.name} lacks")
    _require(
        {m for m in members - package if not m.startswith(f"{dist_info}/")},
        f"{wheel.name} holds more than the package",
    )
    if f"\nVersion: {version}\n" not in metadata:
        raise PackageError(f"{wheel.name}'s METADATA does not say Version: {version}")


def check_sdist(sdist: Path, version: str) -> None:
    prefix = f"{NAME}-{version}/"
    with tarfile.open(sdist) as archive:
        members = {m.name.removeprefix(prefix) for m in archive.getmembers() if m.isfile()}
    wanted = set(SDIST_FILES).union(*(source_files(tree, pattern) for tree, pattern in SDIST_TREES))
    _require(wanted - members, f"{sdist.name} lacks")
    _require({m for m in members if "__pycache__" in m or m.endswith(".pyc")}, f"{sdist.name} holds bytecode")


# Run inside the fresh environment: what an installed package must do.
_INSTALLED = textwrap.dedent(
    """
    import importlib, importlib.metadata, pathlib, pkgutil, sys
    import aioiptables
    version, optional = sys.argv[1], set(sys.argv[2:])
    where = pathlib.Path(aioiptables.__file__).parent
    assert where.parent.name == "site-packages", f"imported from {where}, not the environment"
    found = (importlib.metadata.version("aioiptables"), aioiptables.__version__)
    assert found == (version, version), f"metadata and __version__ say {found}, not {version}"
    assert (where / "py.typed").is_file(), "py.typed is not installed"
    for module in pkgutil.iter_modules(aioiptables.__path__, "aioiptables."):
        try:
            importlib.import_module(module.name)
        except ImportError as exc:  # aioiptables.metrics says which extra, from the missing module
            missing = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
            if not (isinstance(missing, ModuleNotFoundError) and missing.name in optional):
                raise
    """
)


def _run(argv: list[str], cwd: Path) -> str:
    # No PYTHONPATH: the package must come from the environment, not the tree.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackageError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def check_install(artifact: Path, version: str) -> None:
    """Install ``artifact`` into a fresh environment and use it there."""
    with tempfile.TemporaryDirectory(prefix="aioiptables-package-") as tmp:
        where = Path(tmp)
        venv = where / "venv"
        # Without pip of its own (this pip installs into it): saves seconds per environment.
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], where)
        python, script = venv / "bin" / "python", venv / "bin" / NAME
        _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(artifact)], where)
        _run([str(python), "-c", _INSTALLED, version, *OPTIONAL_MODULES], where)
        if "usage:" not in _run([str(script), "--help"], where):
            raise PackageError(f"`{NAME} --help` printed no usage")
        said = _run([str(script), "--version"], where).strip()
        if said != f"{NAME} {version}":
            raise PackageError(f"`{NAME} --version` said {said!r}, not {NAME} {version!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    dist = Path(argv[0]).resolve()
    version = declared_version()
    wheel, sdist = dist / f"{NAME}-{version}-py3-none-any.whl", dist / f"{NAME}-{version}.tar.gz"
    try:
        found = sorted(path.name for path in dist.iterdir())
        if found != sorted([wheel.name, sdist.name]):
            raise PackageError(f"{dist} holds {found}, not the wheel and sdist of {version}")
        check_wheel(wheel, version)
        check_sdist(sdist, version)
        for artifact in (wheel, sdist):
            check_install(artifact, version)
            print(f"check_package: {artifact.name} installs, imports and runs as {NAME} {version}")
    except PackageError as exc:
        print(f"check_package: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
