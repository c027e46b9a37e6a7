"""The one seam every process goes through, and the real process runner.

A :class:`Runner` takes an argv (and optional standard input) and returns a
:class:`Completed`. The client builds argv lists and classifies results; it
never knows whether a real process, a fault-injecting wrapper or the in-memory
fake (:mod:`aioiptables.fake`) answered.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import logging
import math
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import anyio.abc
from anyio.lowlevel import RunVar

from .errors import IPTablesNotFoundError, IPTablesTimeoutError

__all__ = ["Completed", "Runner", "ProcessRunner", "netns_path"]

logger = logging.getLogger("aioiptables")

_INSTALL_HINT = (
    "install iptables (Debian/Ubuntu: apt-get install -y iptables; Fedora: dnf install iptables-nft)"
)


@dataclass(frozen=True)
class Completed:
    """What a process did: its argv, exit status and output."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str


class Runner(abc.ABC):
    """Runs one iptables-family command.

    Implementations must honour cancellation (leaving no process behind) and
    must count every process in :attr:`calls`.
    """

    calls: int = 0

    @abc.abstractmethod
    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        """Run ``argv`` to completion and return what it did.

        Raises :class:`IPTablesTimeoutError` past ``timeout`` and
        :class:`IPTablesNotFoundError` when the program is missing; a non-zero
        exit status is not an error here.
        """


def netns_path(netns: str) -> str:
    """The namespace file for ``netns``: a name as ``ip netns`` knows it
    (``/run/netns/NAME``) or a path such as ``/proc/PID/ns/net``."""
    if "/" in netns:
        return netns
    return os.path.join("/run/netns", netns)


class ProcessRunner(Runner):
    """Runs real processes with :func:`anyio.run_process` (argv only, no shell).

    - ``netns``: run every process inside that network namespace, through
      ``nsenter --net=PATH --``;
    - ``max_concurrency``: at most this many processes at once, so a burst of
      callers never queues dozens of processes on the xtables lock. The bound
      holds per event loop: a runner (and its client) may be used under
      asyncio, then trio, then asyncio again, or from two event loops in two
      threads, each with a limiter of its own.

    On timeout or cancellation the process is killed and reaped by anyio
    before the exception propagates.
    """

    def __init__(self, *, netns: str | None = None, max_concurrency: int = 4) -> None:
        self.netns = netns_path(netns) if netns else None
        self.max_concurrency = max_concurrency
        self.calls = 0
        # (pid, when it started) of the latest processes run, newest last.
        self._started: collections.deque[tuple[int, float]] = collections.deque(maxlen=256)
        # A CapacityLimiter belongs to the event loop it was first used in:
        # keep one per event loop run.
        self._limiter: RunVar[anyio.CapacityLimiter] = RunVar(f"aioiptables-limiter-{id(self):x}")

    def recent_pids(self, within: float = 120.0) -> frozenset[int]:
        """The pids of the processes this runner started in the last
        ``within`` seconds: a change nf_tables announces from one of them is
        ours (an older pid may have been reused by another process since)."""
        since = time.monotonic() - within
        return frozenset(pid for pid, started in self._started if started >= since)

    async def _run_process(self, argv: list[str], input: bytes | None) -> subprocess.CompletedProcess[bytes]:
        """:func:`anyio.run_process`, keeping the pid: nf_tables names the
        process behind each change it announces (see :mod:`aioiptables.events`),
        and our own changes are known by it. ``nsenter`` execs the program
        in place, so its pid is the program's."""
        process = await anyio.open_process(
            argv,
            stdin=subprocess.PIPE if input else subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )
        self._started.append((process.pid, time.monotonic()))
        output: dict[int, bytes] = {}

        async def drain(stream: anyio.abc.ByteReceiveStream | None, key: int) -> None:
            chunks = []
            if stream is not None:
                async for chunk in stream:
                    chunks.append(chunk)
            output[key] = b"".join(chunks)

        async with process:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain, process.stdout, 1)
                    tg.start_soon(drain, process.stderr, 2)
                    if process.stdin is not None:
                        await process.stdin.send(input or b"")
                        await process.stdin.aclose()
                    returncode = await process.wait()
            except BaseException:
                # Cancelled or timed out: no process is left behind.
                with anyio.CancelScope(shield=True):
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
                raise
        return subprocess.CompletedProcess(argv, returncode, output.get(1, b""), output.get(2, b""))

    def _prefix(self, argv: Sequence[str]) -> list[str]:
        if self.netns is None:
            return list(argv)
        if not os.path.exists(self.netns):
            raise IPTablesNotFoundError(
                argv, f"no such network namespace: {self.netns} (create it with 'ip netns add NAME')"
            )
        return ["nsenter", f"--net={self.netns}", "--", *argv]

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        full = self._prefix(argv)
        limiter = self._limiter.get(None)
        if limiter is None:
            limiter = anyio.CapacityLimiter(self.max_concurrency)
            self._limiter.set(limiter)
        async with limiter:
            self.calls += 1
            started = time.monotonic()
            try:
                with anyio.fail_after(timeout if timeout is not None else math.inf):
                    done = await self._run_process(full, input)
            except TimeoutError:
                raise IPTablesTimeoutError(argv, timeout or 0.0) from None
            except FileNotFoundError as exc:
                missing = exc.filename or full[0]
                hint = _INSTALL_HINT if "tables" in str(missing) else "install util-linux (nsenter)"
                raise IPTablesNotFoundError(argv, f"{missing} not found: {hint}") from None
        if done.returncode == 127 and self.netns is not None and b"failed to execute" in done.stderr:
            # nsenter could not exec the program: report it like a local miss.
            raise IPTablesNotFoundError(argv, f"{argv[0]} not found: {_INSTALL_HINT}")
        completed = Completed(
            tuple(argv),
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )
        logger.debug(
            "ran %s: exit %d in %.1f ms",
            " ".join(argv),
            completed.exit_status,
            (time.monotonic() - started) * 1000,
            extra={"argv": completed.argv, "exit_status": completed.exit_status},
        )
        return completed
