"""What the command line says of the library's warnings and errors: one line
each, in the words of the shell that ran it, never Python's."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from aioiptables import IPTablesError, IPTablesNotFoundError
from aioiptables.output import ShellLogHandler, describe

LEGACY_PRESENT = (
    "iptables-legacy tables are present while this client uses the nft backend: "
    "rules there are invisible to it; pass backend='legacy' if they are yours"
)

LOGGED = [
    (
        "the library's advice, as the option to type",
        "aioiptables",
        logging.WARNING,
        LEGACY_PRESENT,
        "aioiptables: " + LEGACY_PRESENT.replace("backend='legacy'", "--backend legacy") + "\n",
    ),
    ("a module of the library", "aioiptables.client", logging.ERROR, "lost", "aioiptables: lost\n"),
    ("below a warning: nothing", "aioiptables", logging.INFO, "retrying", ""),
    (
        "another logger's words: nothing",
        "asyncio",
        logging.WARNING,
        "Unknown child process pid 4242, will report returncode 255",
        "",
    ),
    ("a name that only starts alike: nothing", "aioiptablesx", logging.WARNING, "x", ""),
]


@pytest.fixture
def handler() -> Iterator[ShellLogHandler]:
    made = ShellLogHandler()
    root = logging.getLogger()
    root.addHandler(made)
    try:
        yield made
    finally:
        root.removeHandler(made)


@pytest.mark.parametrize(
    ("case", "logger", "level", "message", "printed"), LOGGED, ids=[case for case, *_ in LOGGED]
)
def test_what_the_command_line_prints_of_a_log_record(
    handler: ShellLogHandler,
    capsys: pytest.CaptureFixture[str],
    case: str,
    logger: str,
    level: int,
    message: str,
    printed: str,
) -> None:
    logging.getLogger(logger).log(level, message)
    assert capsys.readouterr().err == printed


ERRORS = [
    (
        "a missing program: its message alone, no exit status 127",
        IPTablesNotFoundError(["iptables-nft", "-S"], "iptables-nft not found: install iptables"),
        "iptables-nft not found: install iptables",
    ),
    (
        "a failed process: the command, its status and its words",
        IPTablesError(["iptables", "-S", "X"], 1, "iptables: No chain/target/match by that name."),
        "iptables -S X: exit status 1: iptables: No chain/target/match by that name.",
    ),
    (
        "several at once: the first, and how many more",
        ExceptionGroup("reads", [IPTablesError(["iptables-save"], 4, "busy"), ValueError("x")]),
        "iptables-save: exit status 4: busy (and 1 more)",
    ),
    (
        "advice in an error, as the option to type",
        IPTablesError(["iptables", "-S"], 1, "try backend='nft'"),
        "iptables -S: exit status 1: try --backend nft",
    ),
]


@pytest.mark.parametrize(("case", "error", "said"), ERRORS, ids=[case for case, *_ in ERRORS])
def test_an_error_is_said_in_one_line(case: str, error: BaseException, said: str) -> None:
    assert describe(error) == said
