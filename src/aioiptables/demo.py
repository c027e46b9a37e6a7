"""``aioiptables demo``: a Controller at work, in a network namespace of its own.

The demo creates a private network namespace, keeps a small Kilo-like rule
set in it with a :class:`~aioiptables.Controller`, tampers with the rules
behind the controller's back with plain iptables, watches each reconcile
repair them, removes everything with ``cleanup()``, and deletes the namespace.
Every step shows what it cost: iptables processes, writes, changes, time.

It never touches this machine's own tables: every iptables process runs
inside the namespace, which goes at the end whatever happens: a failure, or
Ctrl-C (exit status 130; SIGTERM: 143).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TextIO
from typing import Protocol as TypingProtocol

import anyio

from .client import BackendName, Client
from .controller import Controller
from .errors import IPTablesError
from .model import Chain, Item, Protocol, Rule, RuleSet
from .output import describe, leaves
from .parse import parse_listing
from .runner import netns_path
from .syntax import join_tokens

__all__ = [
    "run",
    "kilo_ruleset",
    "Demo",
    "DemoFailure",
    "DemoInfo",
    "StepResult",
    "Reporter",
    "TextReporter",
    "JsonReporter",
    "DEMO_NETNS_PREFIX",
    "INTERRUPTED",
]

#: Every namespace the demo creates is named this followed by a random suffix.
DEMO_NETNS_PREFIX = "aioiptables-demo-"

# Seconds to wait for the xtables lock when tampering: the legacy backend's
# lock file is shared with the host, so another program may hold it briefly.
_TAMPER_WAIT = "5"


# -- rules -----------------------------------------------------------

_SUBNETS = {Protocol.IPV4: "10.4.0.0/16", Protocol.IPV6: "fd00:4::/64"}
_NAT_CHAIN = "KILO-NAT"
_FORWARD_CHAIN = "KILO-FORWARD"


def _masquerade_spec(subnet: str) -> tuple[str, ...]:
    # Named on its own: the demo deletes this exact rule by hand in step 3.
    comment = "Kilo: NAT packets from the pod subnet"
    return ("-s", subnet, "-m", "comment", "--comment", comment, "-j", "MASQUERADE")


def _kilo_items(proto: Protocol) -> list[Item]:
    subnet = _SUBNETS[proto]

    def rule(table: str, chain: str, *spec: str) -> Rule:
        return Rule(table, chain, spec, proto)

    return [
        Chain("nat", _NAT_CHAIN, proto),
        rule(
            "nat", _NAT_CHAIN,
            "-d", subnet, "-m", "comment", "--comment", "Kilo: do not NAT packets destined for the mesh",
            "-j", "RETURN",
        ),
        rule("nat", _NAT_CHAIN, *_masquerade_spec(subnet)),
        rule(
            "nat", "POSTROUTING",
            "-s", subnet, "-m", "comment", "--comment", "Kilo: jump to KILO-NAT chain", "-j", _NAT_CHAIN,
        ),
        Chain("filter", _FORWARD_CHAIN, proto),
        rule("filter", _FORWARD_CHAIN, "-s", subnet, "-j", "ACCEPT"),
        rule("filter", _FORWARD_CHAIN, "-d", subnet, "-j", "ACCEPT"),
        rule("filter", "FORWARD", "-j", _FORWARD_CHAIN),
    ]  # fmt: skip


def kilo_ruleset(protos: Sequence[Protocol]) -> RuleSet:
    """A small rule set shaped like Kilo's (a WireGuard mesh for Kubernetes):
    masquerade the pod subnet except towards the mesh, and accept forwarded
    mesh traffic, for each protocol in ``protos``."""
    return RuleSet(append=tuple(item for proto in protos for item in _kilo_items(proto)))


ChainKey = tuple[Protocol, str, str]


def _expected_chains(ruleset: RuleSet) -> dict[ChainKey, list[tuple[str, ...]]]:
    """Every chain the rule set touches, with the specs it must hold in order."""
    chains: dict[ChainKey, list[tuple[str, ...]]] = {}
    for item in ruleset:
        if isinstance(item, Chain):
            chains.setdefault((item.proto, item.table, item.name), [])
        else:
            chains.setdefault((item.proto, item.table, item.chain), []).append(item.spec)
    return chains


# -- reporting ------------------------------------------------------


class DemoFailure(Exception):
    """The demo saw something other than what the library promises."""


@dataclasses.dataclass
class StepResult:
    """What one step cost, and what it showed."""

    number: int
    name: str
    title: str
    processes: int
    writes: int
    changes: int
    ms: float
    stats: dict[str, float]
    #: Labelled groups of lines shown under the step (listings, commands run).
    details: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The step as a JSON-ready dict."""
        return {
            "step": self.number,
            "name": self.name,
            "title": self.title,
            "processes": self.processes,
            "writes": self.writes,
            "changes": self.changes,
            "ms": round(self.ms, 3),
            "stats": self.stats,
            "details": self.details,
        }


@dataclasses.dataclass
class DemoInfo:
    """What the demo runs on."""

    netns: str
    backend: str
    version: str
    ipv6: bool
    anyio_backend: str


class Reporter(TypingProtocol):
    """Where the demo's progress goes."""

    def start(self, info: DemoInfo) -> None:
        """The demo is about to run its first step."""

    def step(self, result: StepResult) -> None:
        """A step has run (its checks may still fail)."""

    def finish(self, error: str | None, netns_deleted: bool) -> None:
        """The demo is over, the namespace deleted (or not); ``error`` is None on success."""


_COLUMNS = "{:>2}  {:<34}{:>10}{:>8}{:>9}{:>10}"


class TextReporter:
    """An aligned table, one row per step as it completes, details under each row."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        # Bold and colour only for a person at a terminal; plain text when piped.
        self.styled = out.isatty() and "NO_COLOR" not in os.environ
        self.steps: list[StepResult] = []

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.styled else text

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def start(self, info: DemoInfo) -> None:
        """Print what the demo runs on and the table header."""
        family = "IPv4 and IPv6" if info.ipv6 else "IPv4"
        self._print(f"aioiptables demo: {info.version}, {family}, anyio on {info.anyio_backend}")
        self._print(f"network namespace {info.netns} (deleted at the end)")
        self._print()
        self._print(self._style(_COLUMNS.format("#", "step", "processes", "writes", "changes", "ms"), "1"))

    def step(self, result: StepResult) -> None:
        """Print the step's row, then its details indented below it."""
        self.steps.append(result)
        ms = f"{result.ms:.1f}"
        self._print(
            _COLUMNS.format(result.number, result.title, result.processes, result.writes, result.changes, ms)
        )
        for label, lines in result.details.items():
            self._print(f"      {self._style(label, '2')}")
            for line in lines:
                self._print(f"        {line}")

    def finish(self, error: str | None, netns_deleted: bool) -> None:
        """Print the outcome (errors go to standard error)."""
        if error is not None:
            _print_failure(error, netns_deleted)
            return
        total = sum(step.processes for step in self.steps)
        self._print()
        self._print(
            self._style("ok", "32;1")
            + f": {len(self.steps)} steps, {total} iptables processes; namespace deleted"
        )


class JsonReporter:
    """Collects everything and prints one JSON object at the end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.info: DemoInfo | None = None
        self.steps: list[StepResult] = []

    def start(self, info: DemoInfo) -> None:
        """Remember what the demo runs on."""
        self.info = info

    def step(self, result: StepResult) -> None:
        """Remember one step."""
        self.steps.append(result)

    def finish(self, error: str | None, netns_deleted: bool) -> None:
        """Print the JSON object (and the error on standard error too, for people)."""
        document: dict[str, Any] = {
            "ok": error is None,
            "error": error,
            "netns_deleted": netns_deleted,
            **(dataclasses.asdict(self.info) if self.info else {}),
            "steps": [step.as_json() for step in self.steps],
            "total_processes": sum(step.processes for step in self.steps),
        }
        json.dump(document, self.out, indent=2)
        self.out.write("\n")
        self.out.flush()
        if error is not None:
            _print_failure(error, netns_deleted)


#: The error of a demo stopped by Ctrl-C or SIGTERM.
INTERRUPTED = "interrupted"


def _print_failure(error: str, netns_deleted: bool) -> None:
    """One line on standard error: why the demo stopped."""
    if error == INTERRUPTED:
        gone = "; its network namespace is deleted" if netns_deleted else ""
        print(f"aioiptables demo: interrupted{gone}", file=sys.stderr, flush=True)
    else:
        print(f"aioiptables demo: FAILED: {error}", file=sys.stderr, flush=True)


# -- the namespace -------------------------------------------------------


def _create_netns() -> str:
    """Create a fresh, empty network namespace; return its name."""
    if os.geteuid() != 0:
        raise DemoFailure("the demo needs root: it creates a network namespace")
    if shutil.which("ip") is None:
        raise DemoFailure("the 'ip' command is missing: install iproute2")
    name = f"{DEMO_NETNS_PREFIX}{uuid.uuid4().hex[:8]}"
    done = _ip("netns", "add", name)
    if done.returncode != 0:
        raise DemoFailure(f"cannot create network namespace {name}: {done.stderr.strip()}")
    return name


def _delete_netns(name: str) -> bool:
    """Delete the namespace; every table in it goes with it. True if it is gone."""
    done = _ip("netns", "delete", name)
    if done.returncode != 0:
        reason = done.stderr.strip() or f"ip exited with status {done.returncode}"
        print(
            f"aioiptables demo: could not delete network namespace {name}: {reason} "
            f"(remove it with 'ip netns delete {name}')",
            file=sys.stderr,
        )
    return done.returncode == 0


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    # A session of its own: Ctrl-C at the terminal signals the whole
    # foreground group, and must not stop the namespace being made or deleted.
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False, start_new_session=True)


@contextlib.contextmanager
def _signals_noted() -> Iterator[list[int]]:
    """SIGINT and SIGTERM are noted meanwhile, not raised: the namespace is
    made or deleted whole, and whoever sent them is answered afterwards."""
    noted: list[int] = []

    def note(signum: int, frame: object) -> None:
        noted.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def _ns_run(netns: str, argv: Sequence[str]) -> str:
    """Run ``argv`` inside the namespace (argv list, no shell); return its output."""
    full = ["nsenter", f"--net={netns_path(netns)}", "--", *argv]
    done = await anyio.run_process(full, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise IPTablesError.from_result(argv, done.returncode, done.stderr.decode(errors="replace"))
    return done.stdout.decode(errors="replace")


# -- the steps ------------------------------------------------------------


def _indented(label: str, lines: Sequence[str]) -> str:
    """A labelled block of lines for an error message."""
    return f"\n  {label}" + "".join(f"\n    {line}" for line in lines)


def _display(argv: Sequence[str]) -> str:
    """A command as a person would type it: the program's base name, shell quoting."""
    return shlex.join([os.path.basename(argv[0]), *argv[1:]])


class Demo:
    """The demo's five steps against one namespace.

    The controller's clients do the work; separate *inspector* clients (same
    backend, same namespace) do the checking, so the process counts shown are
    the controller's alone.
    """

    def __init__(self, netns: str, backend: BackendName, ipv6: bool, reporter: Reporter) -> None:
        self.netns = netns
        self.reporter = reporter
        protos = [Protocol.IPV4, Protocol.IPV6] if ipv6 else [Protocol.IPV4]
        self.ruleset = kilo_ruleset(protos)
        self.expected = _expected_chains(self.ruleset)
        clients = {proto: Client(proto, backend=backend, netns=netns) for proto in protos}
        # resync is unused: the demo calls reconcile itself, never run().
        self.controller = Controller(v4=clients[Protocol.IPV4], v6=clients.get(Protocol.IPV6), resync=30.0)
        self.inspectors = {proto: Client(proto, backend=backend, netns=netns) for proto in protos}
        self.v4 = clients[Protocol.IPV4]
        #: The signal (SIGINT, SIGTERM) that stopped the demo, if one did.
        self.stopped_by: int | None = None

    async def run_until_stopped(self, anyio_backend: str, noted: Sequence[int] = ()) -> None:
        """Run every step, unless SIGINT or SIGTERM comes first: then stop,
        every process killed and reaped, and say which in ``stopped_by``.
        ``noted`` holds the signals that came before the loop could take them.

        The signals are taken inside the event loop rather than raised as
        KeyboardInterrupt through it: a loop torn down by one leaves child
        processes unreaped, and asyncio's child watcher complains of them
        ("Unknown child process pid ...") after it is gone."""
        async with anyio.create_task_group() as tg:
            await tg.start(self._stop_on_signal, tg.cancel_scope)
            if noted:
                self.stopped_by = noted[0]
            else:
                await self.run(anyio_backend)
            tg.cancel_scope.cancel()

    async def _stop_on_signal(
        self, scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.stopped_by = signum
                scope.cancel()
                return

    async def _version(self) -> str:
        """What the iptables the demo runs says it is (an inspector asks, so
        that the controller's process counts stay its own)."""
        inspector = self.inspectors[Protocol.IPV4]
        try:
            return str(await inspector.version())
        except IPTablesError:
            # Leave the error to the controller's first call, which says what to install.
            return os.path.basename(inspector.binaries.iptables)

    async def run(self, anyio_backend: str) -> None:
        """Run every step, checking after each one."""
        self.reporter.start(
            DemoInfo(
                netns=self.netns,
                backend=self.v4.backend,
                version=await self._version(),
                ipv6=Protocol.IPV6 in self.inspectors,
                anyio_backend=anyio_backend,
            )
        )
        await self.step_set()
        await self.step_steady()
        await self.step_delete_rule()
        await self.step_flush_chain()
        await self.step_cleanup()

    # -- measuring and checking --

    async def _measure(
        self, number: int, name: str, title: str, action: Callable[[], Awaitable[None]]
    ) -> StepResult:
        """Run one controller operation; what it cost is the difference of
        ``controller.calls`` (processes) and the wall time around it."""
        calls = self.controller.calls
        started = time.perf_counter()
        await action()
        ms = (time.perf_counter() - started) * 1000
        stats = dict(self.controller.last_stats)
        return StepResult(
            number, name, title,
            processes=self.controller.calls - calls,
            writes=int(stats.get("writes", 0)),
            changes=int(stats.get("changes", 0)),
            ms=ms,
            stats=stats,
        )  # fmt: skip

    async def _listing(self, proto: Protocol, table: str, chain: str) -> list[str]:
        return await self.inspectors[proto].list(table, chain)

    async def _verify(self, when: str) -> None:
        """Every chain of the rule set holds exactly its rules, in order."""
        for (proto, table, chain), specs in self.expected.items():
            lines = await self._listing(proto, table, chain)
            if list(parse_listing(lines, chain)) != specs:
                wanted = [f"-A {chain} {join_tokens(spec)}" for spec in specs]
                raise DemoFailure(
                    f"{when}: {proto.command} -t {table} -S {chain} does not hold the expected rules"
                    + _indented("expected (rules, in order):", wanted)
                    + _indented("found:", lines)
                )

    async def _tamper(self, *args: str) -> str:
        """Change KILO-NAT behind the controller's back with plain iptables."""
        argv = [self.v4.binaries.iptables, "-w", _TAMPER_WAIT, "-t", "nat", *args]
        await _ns_run(self.netns, argv)
        return _display(argv)

    # -- the steps --

    async def _set(self) -> None:
        await self.controller.set(self.ruleset)

    async def step_set(self) -> None:
        """1: set the rule set in empty tables."""
        result = await self._measure(1, "set", "set rules (from empty)", self._set)
        for proto, table, chain in self.expected:
            label = f"{os.path.basename(self.inspectors[proto].binaries.iptables)} -t {table} -S {chain}:"
            result.details[label] = await self._listing(proto, table, chain)
        self.reporter.step(result)
        await self._verify("after set")

    async def step_steady(self) -> None:
        """2: reconcile with nothing changed: reads only."""
        result = await self._measure(2, "steady", "reconcile, nothing changed", self.controller.reconcile)
        self.reporter.step(result)
        if result.writes:
            raise DemoFailure(f"a reconcile with nothing changed wrote {result.writes} times")
        await self._verify("after the steady-state reconcile")

    async def step_delete_rule(self) -> None:
        """3: delete the MASQUERADE rule by hand; reconcile puts it back in place."""
        spec = _masquerade_spec(_SUBNETS[Protocol.IPV4])
        command = await self._tamper("-D", _NAT_CHAIN, *spec)
        gone = await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN)
        if spec in parse_listing(gone, _NAT_CHAIN):
            raise DemoFailure(f"{command} did not delete the rule")
        await self._repair(3, "repair-deleted-rule", "MASQUERADE deleted", command, gone, "the deleted rule")

    async def step_flush_chain(self) -> None:
        """4: flush KILO-NAT by hand; reconcile refills it."""
        command = await self._tamper("-F", _NAT_CHAIN)
        flushed = await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN)
        if parse_listing(flushed, _NAT_CHAIN):
            raise DemoFailure(f"{command} left rules in {_NAT_CHAIN}")
        await self._repair(
            4, "repair-flushed-chain", f"{_NAT_CHAIN} flushed", command, flushed, "the flushed chain"
        )

    async def _repair(
        self, number: int, name: str, what: str, command: str, before: list[str], repaired: str
    ) -> None:
        """A reconcile after the tampering ``command``, reported with the
        chain as it read before and after, then the whole rule set checked."""
        result = await self._measure(number, name, f"{what}: reconcile", self.controller.reconcile)
        result.details = {
            "tampered:": [command],
            "before the reconcile:": before,
            "after:": await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN),
        }
        self.reporter.step(result)
        await self._verify(f"after repairing {repaired}")

    async def step_cleanup(self) -> None:
        """5: cleanup() removes every rule and chain; iptables-save shows no trace."""
        result = await self._measure(5, "cleanup", "cleanup()", self.controller.cleanup)
        for inspector in self.inspectors.values():
            for table in ("nat", "filter"):
                command = f"{os.path.basename(inspector.binaries.save)} -t {table}:"
                saved = await inspector.save(table)
                result.details[command] = [line for line in saved.splitlines() if not line.startswith("#")]
        self.reporter.step(result)
        leftovers = [line for lines in result.details.values() for line in lines if "KILO" in line]
        if leftovers:
            raise DemoFailure(f"after cleanup, iptables-save still shows {leftovers}")


# -- the command --------------------------------------------------------------------


def _stopping_signal(exc: BaseException) -> int | None:
    """The signal behind an error, if one is: Ctrl-C reaches the demo's
    iptables processes too, and one may be seen dying of it first."""
    for leaf in leaves(exc):
        if isinstance(leaf, KeyboardInterrupt):
            return signal.SIGINT
        if isinstance(leaf, IPTablesError) and -leaf.exit_status in (signal.SIGINT, signal.SIGTERM):
            return -leaf.exit_status
    return None


def _is_expected(exc: BaseException) -> bool:
    """Failures the demo reports as a message, not a traceback."""
    # A broken pipe is left to the command line: there is nobody to report it to.
    return all(
        isinstance(leaf, DemoFailure | IPTablesError | OSError) and not isinstance(leaf, BrokenPipeError)
        for leaf in leaves(exc)
    )


def run(
    *,
    backend: BackendName = "auto",
    ipv6: bool = False,
    as_json: bool = False,
    anyio_backend: str = "asyncio",
    out: TextIO | None = None,
) -> int:
    """Run the demo, reporting to ``out`` (default: standard output) as a
    table or, with ``as_json``, one JSON object. Returns the exit status: 0
    when every step did what the library promises, 1 when one did not (or
    the demo could not run), 128 + the signal number when SIGINT (130) or
    SIGTERM (143) stopped it. The namespace is deleted in every case.
    """
    stream = out or sys.stdout
    reporter: Reporter = JsonReporter(stream) if as_json else TextReporter(stream)
    # The namespace is made and deleted outside the event loop, so it goes
    # even if the loop itself dies; a signal is noted until the loop takes it.
    with _signals_noted() as noted:
        try:
            netns = _create_netns()
        except DemoFailure as exc:
            reporter.finish(INTERRUPTED if noted else str(exc), netns_deleted=True)
            return 128 + noted[0] if noted else 1
        error: str | None = None
        stopped: int | None = None
        try:
            error, stopped = _steps(Demo(netns, backend, ipv6, reporter), anyio_backend, noted)
        finally:
            with _signals_noted() as late:
                deleted = _delete_netns(netns)
    stopped = stopped or next(iter([*noted, *late]), None)
    if stopped is not None:
        reporter.finish(INTERRUPTED, deleted)
        return 128 + stopped
    if error is None and not deleted:
        error = f"could not delete network namespace {netns}"
    reporter.finish(error, deleted)
    return 0 if error is None else 1


def _steps(demo: Demo, anyio_backend: str, noted: Sequence[int]) -> tuple[str | None, int | None]:
    """Run the steps: the failure that stopped them, or the signal that did
    (None and None when they all ran)."""
    try:
        anyio.run(demo.run_until_stopped, anyio_backend, noted, backend=anyio_backend)
    except BaseException as exc:
        stopped = demo.stopped_by or _stopping_signal(exc)
        if stopped is not None:
            return None, stopped
        if _is_expected(exc):
            return describe(exc), None
        raise  # a bug: its traceback is worth seeing (the namespace goes all the same)
    return None, demo.stopped_by
