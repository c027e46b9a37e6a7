"""What the command line prints: rows, summaries, JSON, and errors and
warnings worded for a shell user.

The library speaks Python to its callers (``pass backend='legacy'``); a person
at a shell sees the same advice as the option to type (``--backend legacy``),
and an error as one line, never as a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .errors import IPTablesNotFoundError

__all__ = ["Output", "ShellLogHandler", "describe", "leaves", "plural", "shell_words"]


class Output:
    """Where a command's results go.

    To a terminal: a header and aligned columns, the summary below them.
    Piped: only the rows, fields separated by tabs, for ``cut`` and ``grep``;
    the summary goes to standard error. With ``--json``: one object, nothing else.
    """

    def __init__(self, json_mode: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json = json_mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.terminal = self.out.isatty()
        self.styled = self.terminal and "NO_COLOR" not in os.environ

    def rows(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Print rows of fields (nothing with --json)."""
        if self.json or not rows:
            return
        if not self.terminal:
            for row in rows:
                print("\t".join(row), file=self.out)
            return
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

        def line(fields: Sequence[str]) -> str:
            return "  ".join([*(f.ljust(w) for f, w in zip(fields, widths, strict=False)), fields[-1]])

        head = line(header)
        print(f"\033[1m{head}\033[0m" if self.styled else head, file=self.out)
        for row in rows:
            print(line(row), file=self.out)

    def summary(self, text: str) -> None:
        """Print the closing line (nothing with --json)."""
        if not self.json:
            print(text, file=self.out if self.terminal else self.err)

    def document(self, document: dict[str, Any]) -> None:
        """Print the JSON object (only with --json)."""
        if self.json:
            json.dump(document, self.out, indent=2)
            self.out.write("\n")

    def error(self, command: str, message: str, status: int) -> None:
        """Report a failure on standard error, and as JSON with --json."""
        print(f"aioiptables {command}: error: {message}", file=self.err)
        if self.json:
            self.document({"error": message, "exit_status": status})


def plural(count: int, word: str) -> str:
    """``1 process``, ``2 processes``.

    >>> plural(1, "process"), plural(2, "process"), plural(0, "change")
    ('1 process', '2 processes', '0 changes')
    """
    return f"{count} {word}" if count == 1 else f"{count} {word}{'es' if word.endswith('s') else 's'}"


def leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside ``exc``: the library reads chains in task groups,
    so one failing listing can arrive wrapped in an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def describe(exc: BaseException) -> str:
    """One line for an error: the first inside it, and how many more there were.

    A missing program or namespace is said as its message alone, without
    the command and the exit status 127 that stand for it.

    >>> describe(IPTablesNotFoundError(["iptables-nft", "-S"], "iptables-nft not found: install iptables"))
    'iptables-nft not found: install iptables'
    """
    found = leaves(exc)
    first = found[0]
    text = first.stderr if isinstance(first, IPTablesNotFoundError) else str(first) or type(first).__name__
    text = shell_words(text)
    return text if len(found) == 1 else f"{text} (and {len(found) - 1} more)"


# The library's advice names a Client argument; the command line's option says the same.
_BACKEND_ARGUMENT = re.compile(r"\bbackend='(auto|nft|legacy)'")


def shell_words(text: str) -> str:
    """The library's advice reworded for the command line.

    >>> shell_words("rules there are invisible to it; pass backend='legacy' if they are yours")
    'rules there are invisible to it; pass --backend legacy if they are yours'
    """
    return _BACKEND_ARGUMENT.sub(r"--backend \1", text)


class ShellLogHandler(logging.Handler):
    """Prints the library's warnings on standard error as ``aioiptables:
    MESSAGE``, in shell words; drops every other logger's records (asyncio's
    included): they speak of the event loop, not of anything a user did."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        """Print one record, if it is the library's."""
        if record.name != "aioiptables" and not record.name.startswith("aioiptables."):
            return
        try:
            message = shell_words(record.getMessage())
        except Exception:  # a record that cannot be formatted must not stop the command
            self.handleError(record)
            return
        # sys.stderr as it is now, not as it was when the handler was made.
        print(f"aioiptables: {message}", file=sys.stderr, flush=True)
