"""Every ```python block of README.md and docs/ runs, as its reader would run it.

The conventions, for whoever writes the documents:

- **Found, not listed.** Every ```python (or ```py) fence of README.md and of
  each docs/**/*.md is a block; docs/index.md is left out, as ``make docs``
  copies README.md there.
- **Each block is a program of its own**, run as ``python FILE`` would run it
  (by tests/run_docs_block.py), as root, in a fresh network namespace
  (``unshare --net``, loopback up): it sees no other block's rules, and the
  host's tables are never in reach. It must exit 0 within ``TIMEOUT`` seconds.
- **Backends.** A block that calls ``anyio.run(...)`` runs twice: with
  anyio.run's default backend made asyncio, then trio (the shim reads
  ``DOCS_TEST_ANYIO_BACKEND``, and fails a run that never reached anyio.run).
  A block that calls ``asyncio.run`` runs on asyncio; one that runs no event
  loop, once.
- **Tests.** A block defining a top-level ``def test_...`` (or ``async def``)
  is a pytest module: it is written to a file and run by ``python -m
  pytest``, as its reader would, and every test function in it must pass, an
  async one on asyncio and on trio (anyio's plugin runs a test marked
  ``@pytest.mark.anyio`` on every backend installed).
- **Output.** A comment ``# -> TEXT`` is one line the block prints. A block
  holding such comments must print exactly those lines, in order, and nothing
  else on standard output; one holding none is not checked.
- **Markers.** An HTML comment on the last non-blank line before a fence
  (rendered as nothing) changes how its block runs:

  ``<!-- docs-test: continues -->``: the block runs after the previous
  ```python block of the same file, in the same program (it may use the
  names that one defines); the two are one sample, named by the first.

  ``<!-- docs-test: skip (REASON) -->``: the block does not run, and pytest
  reports it as skipped with REASON (``-ra``). Keep these rare: a block that
  needs a real service, say.

  Any other docs-test comment, a skip without its reason, a ``continues``
  with no block before it, or a marker with no ```python fence after it,
  fails test_every_block_runs_or_says_why_not.
- **Failures** name the file and the line of the block's first line of code,
  and show what it printed; tracebacks name the Markdown file's own lines.
"""

from __future__ import annotations

import ast
import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from run_docs_block import BACKEND_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
SHIM = Path(__file__).resolve().parent / "run_docs_block.py"
TIMEOUT = 60.0  # seconds; a block takes about half a second

_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s*\((?P<reason>.*\S.*)\)$")
_EXPECTED = re.compile(r"^#\s*->\s?(?P<line>.*)$")


def documents() -> list[Path]:
    """The Markdown files whose blocks run: README.md and docs/, recursively."""
    generated = {ROOT / "docs" / "index.md"}  # README.md's copy, made by `make docs`
    return [ROOT / "README.md", *sorted(set((ROOT / "docs").rglob("*.md")) - generated)]


@dataclass(frozen=True)
class Block:
    """One ```python block of a document."""

    path: str  # as named in failures: relative to the repository
    first_line: int  # the line of its first line of code, counted from 1
    code: tuple[str, ...]  # its lines, without the fence's indentation
    marker: str | None = None  # the directive of the docs-test comment before it


def find_blocks(path: str, text: str) -> tuple[list[Block], list[str]]:
    """The ```python blocks of a Markdown text, and what is wrong with its markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marker: tuple[int, str] | None = None  # (line, directive) waiting for its fence
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line.strip():
            continue
        if found := _MARKER.match(line):
            if marker is not None:
                problems.append(f"{path}:{marker[0]}: a docs-test marker followed by another, not a block")
            marker = (number, found["directive"])
            continue
        opening = _OPENING.match(line)
        if opening is None:
            if marker is not None:
                problems.append(f"{path}:{marker[0]}: a docs-test marker not followed by a ```python block")
                marker = None
            continue
        # A fence: its body runs to a closing fence of the same kind, at least as long.
        fence, indent = opening["fence"], opening["indent"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        start = number
        while number < len(lines) and not closing.match(lines[number]):
            number += 1
        body = lines[start:number]
        closed = number < len(lines)
        number += 1
        is_python = opening["info"].split()[:1] in (["python"], ["py"])
        if not is_python:
            if marker is not None:
                problems.append(f"{path}:{marker[0]}: a docs-test marker not followed by a ```python block")
                marker = None
            continue
        if not closed:
            problems.append(f"{path}:{start}: a ```python block that is never closed")
        code = tuple(row[len(indent) :] if row.startswith(indent) else row.lstrip() for row in body)
        blocks.append(Block(path, start + 1, code, marker[1] if marker else None))
        marker = None
    if marker is not None:
        problems.append(f"{path}:{marker[0]}: a docs-test marker not followed by a ```python block")
    return blocks, problems


@dataclass(frozen=True)
class Sample:
    """One program: a block, and the blocks that continue it."""

    blocks: tuple[Block, ...]
    skip: str | None = None  # why it does not run

    @property
    def name(self) -> str:
        return f"{self.blocks[0].path}:{self.blocks[0].first_line}"

    @property
    def title(self) -> str:
        """Its name, with the lines of the blocks that continue it."""
        more = ", ".join(str(block.first_line) for block in self.blocks[1:])
        return f"{self.name} (continued at line {more})" if more else self.name

    @property
    def source(self) -> str:
        """The code, each block at its own lines of the document (the others blank)."""
        rows: list[str] = []
        for block in self.blocks:
            rows += [""] * (block.first_line - 1 - len(rows))
            rows += block.code
        return "\n".join(rows) + "\n"

    def tree(self) -> ast.Module | None:
        try:
            return ast.parse(self.source)
        except SyntaxError:
            return None  # running it says where

    def test_functions(self) -> dict[str, bool]:
        """The test functions it defines, each with whether it is async."""
        tree = self.tree()
        return {
            node.name: isinstance(node, ast.AsyncFunctionDef)
            for node in (tree.body if tree else [])
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
        }

    def calls(self) -> set[str]:
        """The ``module.function`` names it calls (``anyio.run``, ...)."""
        tree = self.tree()
        return {
            f"{node.func.value.id}.{node.func.attr}"
            for node in (ast.walk(tree) if tree else ())
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        }

    def runs(self) -> list[str]:
        """How it runs: "pytest", or once per backend ("asyncio", "trio"), or once ("")."""
        if self.test_functions():
            return ["pytest"]
        called = self.calls()
        if "anyio.run" in called:
            return ["asyncio", "trio"]
        if "asyncio.run" in called:
            return ["asyncio"]
        return ["trio"] if "trio.run" in called else [""]

    def expected(self) -> list[str] | None:
        """The lines its ``# ->`` comments say it prints, or None when it says nothing."""
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(self.source).readline))
        except (tokenize.TokenError, SyntaxError):
            return None
        said = [
            found["line"]
            for token in tokens
            if token.type == tokenize.COMMENT and (found := _EXPECTED.match(token.string))
        ]
        return said or None


def samples_of(blocks: list[Block]) -> tuple[list[Sample], list[str]]:
    """Group a document's blocks into programs, by their markers."""
    samples: list[Sample] = []
    problems: list[str] = []
    for block in blocks:
        where = f"{block.path}:{block.first_line}"
        if block.marker is None:
            samples.append(Sample((block,)))
        elif block.marker == "continues":
            if not samples:
                problems.append(f"{where}: 'continues', but no ```python block comes before it")
                samples.append(Sample((block,)))
            else:
                samples[-1] = Sample((*samples[-1].blocks, block), samples[-1].skip)
        elif found := _SKIP.match(block.marker):
            samples.append(Sample((block,), found["reason"].strip()))
        else:
            problems.append(f"{where}: docs-test marker {block.marker!r}: use 'continues' or 'skip (REASON)'")
            samples.append(Sample((block,)))
    return samples, problems


def collect() -> tuple[list[Sample], list[str]]:
    samples: list[Sample] = []
    problems: list[str] = []
    for document in documents():
        blocks, wrong = find_blocks(str(document.relative_to(ROOT)), document.read_text(encoding="utf-8"))
        grouped, wrong_markers = samples_of(blocks)
        samples += grouped
        problems += wrong + wrong_markers
    return samples, problems


SAMPLES, PROBLEMS = collect()


def _runs() -> list[object]:
    params: list[object] = []
    for sample in SAMPLES:
        marks = [pytest.mark.skip(reason=f"{sample.name}: {sample.skip}")] if sample.skip else []
        for run in sample.runs():
            name = f"{sample.name}-{run}" if run else sample.name
            params.append(pytest.param(sample, run, id=name, marks=marks))
    return params


# -- the blocks, run ------------------------------------------------------------------------------


@pytest.fixture
def private_namespace() -> list[str]:
    """The command prefix that runs a program in a fresh network namespace."""
    if os.geteuid() != 0:
        pytest.fail("the docs' blocks run as root, each in its own network namespace (unshare --net)")
    for program, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(program, path=_path()) is None:
            pytest.fail(f"{program} is missing: apt-get install -y {package}")
    return ["unshare", "--net", "--"]


def _path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _environment(backend: str | None) -> dict[str, str]:
    """This process's environment (PYTHONPATH included, so the package tested is
    this tree's), without what would change how the block runs."""
    env = {**os.environ, "PATH": _path()}
    for name in (BACKEND_VARIABLE, "PYTEST_ADDOPTS"):
        env.pop(name, None)
    if backend:
        env[BACKEND_VARIABLE] = backend
    return env


@dataclass(frozen=True)
class Ran:
    status: int | None  # None: killed at the timeout
    stdout: str
    stderr: str

    def report(self, title: str, problem: str | None = None) -> str:
        """``title``: ``problem`` (by default, how it ended), then what it printed."""
        if problem is None:
            problem = f"killed after {TIMEOUT:g} s" if self.status is None else f"exited {self.status}"
        return f"{title}: {problem}\n--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> Ran:
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as timeout:
        return Ran(None, _text(timeout.stdout), _text(timeout.stderr))
    return Ran(done.returncode, done.stdout, done.stderr)


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


@pytest.mark.iptables
@pytest.mark.parametrize(("sample", "run"), _runs())
def test_block_runs_as_written(
    sample: Sample, run: str, private_namespace: list[str], tmp_path: Path
) -> None:
    if run == "pytest":
        _check_pytest_module(sample, private_namespace, tmp_path)
        return
    source = tmp_path / "block.py"
    source.write_text(sample.source)
    ran = _run(
        [*private_namespace, sys.executable, str(SHIM), str(source), str(ROOT / sample.blocks[0].path)],
        tmp_path,
        # Only anyio.run takes its backend from the shim; asyncio.run and trio.run name theirs.
        _environment(run if "anyio.run" in sample.calls() else None),
    )
    title = f"{sample.title} ({run or 'no event loop'})"
    if ran.status != 0:
        pytest.fail(ran.report(title), pytrace=False)
    expected = sample.expected()
    if expected is not None and ran.stdout.splitlines() != expected:
        shown = "".join(f"{line}\n" for line in expected)
        problem = "printed otherwise than its # -> comments say"
        pytest.fail(f"{ran.report(title, problem)}--- its # -> comments say ---\n{shown}", pytrace=False)


def _check_pytest_module(sample: Sample, private_namespace: list[str], tmp_path: Path) -> None:
    """Run the sample as a test module of its own, and require every test in it to pass
    (an async one on asyncio and on trio)."""
    module = tmp_path / f"test_{re.sub(r'[^A-Za-z0-9]+', '_', sample.name)}.py"
    module.write_text(sample.source)  # at the document's line numbers, as tracebacks show
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the rootdir: no configuration but pytest's
    report = tmp_path / "report.xml"
    ran = _run(
        [
            *private_namespace,
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--junitxml",
            str(report),
            module.name,
        ],
        tmp_path,
        _environment(None),
    )
    title = f"{sample.title} (pytest; lines of {module.name} are the document's)"
    if ran.status != 0 or not report.exists():
        pytest.fail(ran.report(title), pytrace=False)
    passed = {
        case.get("name", "")
        for case in ET.parse(report).iter("testcase")
        if not any(child.tag in ("failure", "error", "skipped") for child in case)
    }
    missing = [
        f"{function}[{backend}]" if is_async else function
        for function, is_async in sample.test_functions().items()
        for backend in (("asyncio", "trio") if is_async else ("",))
        if not any(_is_run_of(name, function, backend) for name in passed)
    ]
    if missing:
        problem = f"did not pass: {', '.join(missing)}"
        pytest.fail(ran.report(title, problem), pytrace=False)


def _is_run_of(name: str, function: str, backend: str) -> bool:
    """Whether a test id (``test_x[trio]``, ``test_x[1-asyncio]``) is a run of ``function`` on ``backend``."""
    base, _, params = name.partition("[")
    return base == function and (not backend or backend in re.split(r"[-\]]", params))


# -- the conventions ------------------------------------------------------------------------------


def test_every_block_runs_or_says_why_not() -> None:
    assert PROBLEMS == []


def test_the_readme_blocks_are_found() -> None:
    """A guard against a parser that finds nothing, and so fails nothing."""
    fences = (ROOT / "README.md").read_text(encoding="utf-8").count("\n```python\n")
    readme = [block for sample in SAMPLES for block in sample.blocks if block.path == "README.md"]
    assert fences > 0
    assert len(readme) == fences


MARKDOWN = "intro\n\n```python\nprint(1)  # -> 1\n```\n"


@pytest.mark.parametrize(
    ("markdown", "found", "problems"),
    [
        pytest.param(MARKDOWN, [(4, ("print(1)  # -> 1",), None)], [], id="a block, its first line of code"),
        pytest.param("```py\nx = 1\n```\n", [(2, ("x = 1",), None)], [], id="py for python"),
        pytest.param("```sh\nls\n```\n```toml\na = 1\n```\n", [], [], id="other languages are not run"),
        pytest.param(
            "- item\n\n    ```python\n    if x:\n        y()\n    ```\n",
            [(4, ("if x:", "    y()"), None)],
            [],
            id="an indented fence, dedented",
        ),
        pytest.param(
            "````markdown\n```python\nnot run\n```\n````\n",
            [],
            [],
            id="a fence inside a longer fence is text",
        ),
        pytest.param(
            "<!-- docs-test: skip (needs a real VPN) -->\n\n```python\nx\n```\n",
            [(4, ("x",), "skip (needs a real VPN)")],
            [],
            id="a marker, blank lines between",
        ),
        pytest.param(
            "<!-- docs-test: continues -->\ntext\n\n```python\nx\n```\n",
            [(5, ("x",), None)],
            ["t.md:1: a docs-test marker not followed by a ```python block"],
            id="a marker before prose",
        ),
        pytest.param(
            "<!-- docs-test: continues -->\n```sh\nls\n```\n",
            [],
            ["t.md:1: a docs-test marker not followed by a ```python block"],
            id="a marker before another language",
        ),
        pytest.param(
            "```python\nx\n",
            [(2, ("x",), None)],
            ["t.md:1: a ```python block that is never closed"],
            id="unclosed",
        ),
    ],
)
def test_blocks_are_found_as_written(
    markdown: str, found: list[tuple[int, tuple[str, ...], str | None]], problems: list[str]
) -> None:
    blocks, wrong = find_blocks("t.md", markdown)
    assert [(block.first_line, block.code, block.marker) for block in blocks] == found
    assert wrong == problems


def _blocks(*markers: str | None) -> list[Block]:
    return [Block("t.md", 10 * n + 2, (f"x{n} = {n}",), marker) for n, marker in enumerate(markers)]


@pytest.mark.parametrize(
    ("markers", "samples", "problems"),
    [
        pytest.param([None, None], [([2], None), ([12], None)], [], id="each block on its own"),
        pytest.param(
            [None, "continues", "continues"], [([2, 12, 22], None)], [], id="continues: one program"
        ),
        pytest.param(["skip (needs a VPN)"], [([2], "needs a VPN")], [], id="skip, with its reason"),
        pytest.param(
            ["skip (needs a VPN)", "continues"],
            [([2, 12], "needs a VPN")],
            [],
            id="what continues a skip is skipped",
        ),
        pytest.param(
            ["skip"],
            [([2], None)],
            ["t.md:2: docs-test marker 'skip': use 'continues' or 'skip (REASON)'"],
            id="a skip without its reason is refused",
        ),
        pytest.param(
            ["skip ( )"],
            [([2], None)],
            ["t.md:2: docs-test marker 'skip ( )': use 'continues' or 'skip (REASON)'"],
            id="a blank reason is refused",
        ),
        pytest.param(
            ["continues"],
            [([2], None)],
            ["t.md:2: 'continues', but no ```python block comes before it"],
            id="continues with nothing before",
        ),
        pytest.param(
            ["run twice"],
            [([2], None)],
            ["t.md:2: docs-test marker 'run twice': use 'continues' or 'skip (REASON)'"],
            id="an unknown marker is refused",
        ),
    ],
)
def test_markers_group_blocks_into_programs(
    markers: list[str | None], samples: list[tuple[list[int], str | None]], problems: list[str]
) -> None:
    grouped, wrong = samples_of(_blocks(*markers))
    assert [([block.first_line for block in sample.blocks], sample.skip) for sample in grouped] == samples
    assert wrong == problems


def test_a_program_keeps_each_block_at_its_lines() -> None:
    sample = Sample(tuple(_blocks(None, "continues")))
    assert sample.source.splitlines()[1] == "x0 = 0"
    assert sample.source.splitlines()[11] == "x1 = 1"
    assert sample.title == "t.md:2 (continued at line 12)"


@pytest.mark.parametrize(
    ("code", "runs"),
    [
        pytest.param("import anyio\nanyio.run(main)", ["asyncio", "trio"], id="anyio.run: both backends"),
        pytest.param("import asyncio\nasyncio.run(main())", ["asyncio"], id="asyncio.run: asyncio"),
        pytest.param("import trio\ntrio.run(main)", ["trio"], id="trio.run: trio"),
        pytest.param("print(1)", [""], id="no event loop: once"),
        pytest.param("async def test_x() -> None:\n    pass", ["pytest"], id="a test function: pytest"),
        pytest.param("def test_x() -> None:\n    pass", ["pytest"], id="a sync test function: pytest"),
    ],
)
def test_how_a_block_runs_follows_what_it_calls(code: str, runs: list[str]) -> None:
    assert Sample((Block("t.md", 1, tuple(code.splitlines())),)).runs() == runs


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("print(1)  # -> 1", ["1"], id="a trailing comment"),
        pytest.param("print([1])\n# -> [1]\nprint(2)  # ->  2", ["[1]", " 2"], id="in order, blanks kept"),
        pytest.param("print('# -> no')", None, id="not inside a string"),
        pytest.param("print(1)  # prints 1", None, id="other comments say nothing"),
    ],
)
def test_expected_output_is_read_from_arrow_comments(code: str, expected: list[str] | None) -> None:
    assert Sample((Block("t.md", 1, tuple(code.splitlines())),)).expected() == expected
