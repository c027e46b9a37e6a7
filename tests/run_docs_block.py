"""Run the Python of a document as ``python FILE`` would: tests/test_docs.py's shim.

    python tests/run_docs_block.py SOURCE MARKDOWN

SOURCE holds the code of one or more blocks of the file MARKDOWN, each at its
own line numbers (every other line blank), so that a traceback names the
Markdown file and the line in it. test_docs.py starts this inside a fresh
network namespace, where the loopback is down: it is brought up first, as it
is on any machine a reader would try the block on. Then the code runs as
``__main__``, from the working directory.

With ``DOCS_TEST_ANYIO_BACKEND=asyncio`` (or ``trio``), ``anyio.run``'s default
backend becomes that one, and the run fails unless the code called
``anyio.run`` on it: that is how a block written as ``anyio.run(main)`` is
proved on both backends without a word about backends in the document.
"""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

BACKEND_VARIABLE = "DOCS_TEST_ANYIO_BACKEND"

T = TypeVar("T")


def default_anyio_backend(backend: str) -> list[str]:
    """Make ``backend`` anyio.run's default; returns the list of runs made on it."""
    runs: list[str] = []
    original = anyio.run

    def run(
        func: Callable[..., Awaitable[T]],
        *args: object,
        backend: str = backend,
        backend_options: dict[str, Any] | None = None,
    ) -> T:
        runs.append(backend)
        return original(func, *args, backend=backend, backend_options=backend_options)

    anyio.run = run
    return runs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, markdown = argv
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Imports resolve as for a script in the working directory, not in tests/.
    sys.path[0] = os.getcwd()
    backend = os.environ.get(BACKEND_VARIABLE)
    runs = default_anyio_backend(backend) if backend else []
    code = compile(Path(source).read_text(), markdown, "exec")
    exec(code, {"__name__": "__main__", "__file__": source, "__builtins__": builtins})
    if backend and backend not in runs:
        print(f"run_docs_block: the code never called anyio.run on {backend}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
