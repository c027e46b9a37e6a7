"""Defects found by review (issue #9, point 7), each pinned by the behaviour it broke.

- a) an invalidate while a snapshot or listing is in flight: nothing read
  from it may be stored, or the cache answers from the past until the next
  invalidate;
- b) ``wait=None`` or ``wait=0``: iptables-legacy 1.8.9 waits for a held
  xtables lock for ever without ``-w`` (and with ``-w 0``), 1.8.7 and 1.8.11
  not at all; the client always passes a bounded ``-w`` and reports the lock;
- c) one client used under asyncio, then trio, then asyncio again;
- d) ``Client.save()`` splits at newlines only, not at U+2028 and the like.

Tests on the ``world`` fixture run on the fake and on real iptables (nft and
legacy); the others on real iptables, each in its own namespace. Lock tests
point ``XTABLES_LOCKFILE`` at a private file: the host's lock is never held.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from aioiptables import (
    Client,
    Completed,
    IPTablesError,
    IPTablesTimeoutError,
    Protocol,
    Rule,
    RuleCache,
    Runner,
)
from aioiptables.client import BackendName
from aioiptables.syntax import split_line
from conftest import World, ns_exec

pytestmark = pytest.mark.anyio

V4 = Protocol.IPV4
RULE = Rule.ipv4("filter", "INPUT", "-s", "10.9.9.9/32", "-j", "ACCEPT")


# -- a) invalidate while a read is in flight -------------------------------------------------------


class HoldingRunner(Runner):
    """Runs every command through ``inner``; the answer of the first command
    ``hold`` picks is kept back until :attr:`release` is set. By then the
    command has read iptables: what it returns is the past."""

    def __init__(self, inner: Runner, hold: Callable[[Sequence[str]], bool]) -> None:
        self.calls = 0
        self.inner = inner
        self.hold = hold
        self.answered = anyio.Event()  # the held command has run
        self.release = anyio.Event()

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        self.calls += 1
        done = await self.inner.run(argv, input=input, timeout=timeout)
        if not self.answered.is_set() and self.hold(argv):
            self.answered.set()
            await self.release.wait()
        return done


def is_save(argv: Sequence[str]) -> bool:
    return os.path.basename(argv[0]).endswith("-save")


def is_listing(argv: Sequence[str]) -> bool:
    return "-S" in argv


IN_FLIGHT = [
    pytest.param(is_save, lambda cache: cache.snapshot(V4, "filter"), id="a snapshot of the table"),
    pytest.param(is_listing, lambda cache: cache.listing(V4, "filter", "INPUT"), id="a listing of the chain"),
]


@pytest.mark.parametrize(("hold", "read"), IN_FLIGHT)
async def test_nothing_read_in_flight_across_an_invalidate_is_kept(
    world: World,
    hold: Callable[[Sequence[str]], bool],
    read: Callable[[RuleCache], Coroutine[Any, Any, object]],
) -> None:
    client = world.client(V4)
    holding = HoldingRunner(client.runner, hold)
    client.runner = holding
    cache = RuleCache(client)
    answers: list[bool] = []

    async def ask() -> None:
        answers.append(await cache.exists(RULE))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, cache)
            await holding.answered.wait()  # it has read the chain, without RULE
            tg.start_soon(ask)  # joins the read in flight
            await anyio.wait_all_tasks_blocked()
            await world.iptables(V4, "-A", "INPUT", *RULE.spec)  # behind the cache's back...
            cache.invalidate("filter")  # ...and said so
            holding.release.set()
    assert client.calls == 1
    assert answers == [False], "the waiter answers from the read it waited for"
    assert await cache.exists(RULE), "but nothing from that read was kept"
    assert client.calls == 2, "the chain was listed again"


# -- b) the xtables lock ---------------------------------------------------------------------------


class RecordingRunner(Runner):
    """Answers every command with success, and keeps each argv."""

    def __init__(self) -> None:
        self.calls = 0
        self.argvs: list[tuple[str, ...]] = []

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        self.calls += 1
        self.argvs.append(tuple(argv))
        return Completed(tuple(argv), 0, "", "")


@pytest.mark.parametrize(
    ("wait", "timeout", "expected"),
    [
        pytest.param(None, 30.0, "1", id="None: the shortest wait every version bounds"),
        pytest.param(0, 30.0, "1", id="0: the same (-w 0 waits for ever on 1.8.8 to 1.8.10)"),
        pytest.param(0.2, 30.0, "1", id="0.2 s: rounded up"),
        pytest.param(5.0, 30.0, "5", id="5 s"),
        pytest.param(60.0, 30.0, "29", id="past the timeout: kept under it"),
        pytest.param(60.0, 2.5, "2", id="past a fractional timeout: kept under it"),
        pytest.param(60.0, 1.0, "1", id="a timeout of 1 s: never less than 1"),
        pytest.param(60.0, math.inf, "60", id="no timeout"),
    ],
)
async def test_every_command_waits_a_bounded_time_for_the_lock(
    wait: float | None, timeout: float, expected: str
) -> None:
    runner = RecordingRunner()
    client = Client(V4, backend="legacy", wait=wait, timeout=timeout, runner=runner)
    await client.append("filter", "INPUT", "-j", "ACCEPT")
    await client.restore("*filter\nCOMMIT\n")
    await client.save("filter")
    command, restore, save = runner.argvs
    assert command[1:3] == ("-w", expected)
    assert restore[1:3] == ("-w", expected)
    assert "-w" not in save, "iptables-save takes no lock"


@pytest.fixture
def held_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private xtables lock file, held (flock, as iptables-legacy takes it)
    for the whole test. Every iptables this test runs uses it, never the
    host's /run/xtables.lock."""
    lock = tmp_path / "xtables.lock"
    monkeypatch.setenv("XTABLES_LOCKFILE", str(lock))
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield lock
    finally:
        os.close(fd)


OPERATIONS = [
    pytest.param(lambda c: c.append("filter", "INPUT", "-j", "ACCEPT"), id="an append"),
    pytest.param(lambda c: c.restore("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n"), id="a restore"),
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("wait", "timeout", "gives_up_after"),
    [
        pytest.param(None, 10.0, 1, id="wait None"),
        pytest.param(0, 10.0, 1, id="wait 0"),
        pytest.param(30.0, 3.0, 2, id="wait 30 s, timeout 3 s"),
    ],
)
async def test_a_held_lock_is_reported_as_such_never_as_a_timeout(
    netns: str,
    held_lock: Path,
    operation: Callable[[Client], Awaitable[None]],
    wait: float | None,
    timeout: float,
    gives_up_after: int,
) -> None:
    client = Client(V4, backend="legacy", netns=netns, wait=wait, timeout=timeout, retries=0)
    started = time.monotonic()
    with pytest.raises(IPTablesError) as caught:
        await operation(client)
    elapsed = time.monotonic() - started
    assert not isinstance(caught.value, IPTablesTimeoutError)
    assert caught.value.exit_status == 4 and caught.value.is_resource_problem
    assert "holding the xtables lock" in str(caught.value)
    assert f"Stopped waiting after {gives_up_after}s" in str(caught.value)
    assert gives_up_after - 0.1 < elapsed < gives_up_after + 1.5
    assert client.calls == 1
    print(f"figures: wait={wait} timeout={timeout}: lock reported after {elapsed:.2f}s")


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_nft_takes_no_lock_and_ignores_the_wait(
    netns: str, held_lock: Path, operation: Callable[[Client], Awaitable[None]]
) -> None:
    client = Client(V4, backend="nft", netns=netns, wait=None, timeout=10.0, retries=0)
    with anyio.fail_after(5):
        await operation(client)
    assert len([line for line in await client.list("filter", "INPUT") if line.startswith("-A")]) == 1


# -- c) one client, several event loops ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_one_client_serves_asyncio_then_trio_then_asyncio(netns: str, backend: str) -> None:
    client = Client(V4, backend=cast(BackendName, backend), netns=netns, max_concurrency=2)
    loops = ["asyncio", "trio", "asyncio", "trio"]

    async def use(tag: str) -> None:
        # More callers than the limiter lets through at once, under this loop.
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(client.list, "filter", "INPUT")
        await client.append("filter", "INPUT", "-m", "comment", "--comment", tag, "-j", "ACCEPT")

    for i, loop in enumerate(loops):
        anyio.run(use, f"{i}-{loop}", backend=loop)
    out = ns_exec(netns, f"iptables-{backend}", "-S", "INPUT")
    assert [line.split()[5] for line in out.split("\n") if line.startswith("-A")] == [
        f"{i}-{loop}" for i, loop in enumerate(loops)
    ]
    assert client.calls == 5 * len(loops)


# -- d) save splits at newlines only -------------------------------------------------------------

LOOKALIKE = "# Table `filter' is incompatible, use 'nft' tool."


@pytest.mark.parametrize(
    "separator",
    [
        pytest.param("\u2028", id="U+2028 line separator"),
        pytest.param("\u2029", id="U+2029 paragraph separator"),
        pytest.param("\x85", id="U+0085 next line"),
    ],
)
async def test_save_is_not_fooled_by_a_comment_holding_a_line_separator(world: World, separator: str) -> None:
    # str.splitlines() would break the comment there and read what follows
    # as a header line saying the table cannot be shown.
    comment = f"x{separator}{LOOKALIKE}"
    client = world.client(V4)
    await world.iptables(V4, "-A", "INPUT", "-m", "comment", "--comment", comment, "-j", "ACCEPT")
    saved = await client.save("filter")
    (line,) = [line for line in saved.split("\n") if line.startswith("-A INPUT")]
    assert split_line(line) == ["-A", "INPUT", "-m", "comment", "--comment", comment, "-j", "ACCEPT"]
    assert client.calls == 1
