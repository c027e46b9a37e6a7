"""The ``aioiptables`` command line.

One function per subcommand (``cmd_<name>``), each taking the parsed
arguments and returning the exit status. Only ``demo`` exists so far::

    aioiptables demo [--backend {auto,nft,legacy}] [-6] [--json] [--anyio-backend {asyncio,trio}]

The demo never touches this machine's own tables: it creates a private network
namespace, runs every iptables process inside it, and deletes it at the end,
whatever happens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO, cast
from typing import Protocol as TypingProtocol

import anyio

from . import __version__
from .client import BackendName, Client
from .controller import Controller
from .errors import IPTablesError
from .model import Chain, Item, Protocol, Rule, RuleSet
from .parse import parse_listing
from .runner import netns_path
from .syntax import join_tokens

if sys.version_info < (3, 11):  # pragma: no cover - anyio pulls in the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["main", "build_parser", "cmd_demo", "kilo_ruleset", "DEMO_NETNS_PREFIX"]

#: Every namespace the demo creates is named this followed by a random suffix.
DEMO_NETNS_PREFIX = "aioiptables-demo-"

# Seconds to wait for the xtables lock when tampering: the legacy backend's
# lock file is shared with the host, so another program may hold it briefly.
_TAMPER_WAIT = "5"


# -- entry point -------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    handler = cast("Callable[[argparse.Namespace], int]", args.handler)
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (``| head``): say nothing more, and keep Python
        # from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="aioiptables",
        description="Keep iptables and ip6tables rules in a desired state.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo_parser(commands)
    return parser


def _add_demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="keep a small Kilo-like rule set in a throwaway network namespace",
        description=(
            "Create a private network namespace, keep a small Kilo-like rule set in it, "
            "tamper with it, watch it being repaired, clean up, and delete the namespace. "
            "Needs root. Never touches this machine's own tables."
        ),
    )
    demo.add_argument(
        "--backend",
        choices=("auto", "nft", "legacy"),
        default="auto",
        help="iptables binaries to use: the system's default, -nft or -legacy (default: auto)",
    )
    demo.add_argument("-6", "--ipv6", action="store_true", help="keep the IPv6 rules too")
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    demo.add_argument(
        "--anyio-backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    demo.set_defaults(handler=cmd_demo)


# -- the demo: rules -----------------------------------------------------------

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


# -- the demo: reporting ------------------------------------------------------


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
        self._print()
        if error is not None:
            print(f"aioiptables demo: FAILED: {error}", file=sys.stderr, flush=True)
            return
        total = sum(step.processes for step in self.steps)
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
            print(f"aioiptables demo: FAILED: {error}", file=sys.stderr, flush=True)


# -- the demo: namespace -------------------------------------------------------


def _create_netns() -> str:
    """Create a fresh, empty network namespace; return its name."""
    if os.geteuid() != 0:
        raise DemoFailure("the demo needs root: it creates a network namespace")
    if shutil.which("ip") is None:
        raise DemoFailure("the 'ip' command is missing: install iproute2")
    name = f"{DEMO_NETNS_PREFIX}{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DemoFailure(f"cannot create network namespace {name}: {done.stderr.strip()}")
    return name


def _delete_netns(name: str) -> bool:
    """Delete the namespace; every table in it goes with it. True if it is gone."""
    done = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(
            f"aioiptables demo: could not delete network namespace {name}: {done.stderr.strip()} "
            f"(remove it with 'ip netns delete {name}')",
            file=sys.stderr,
        )
    return done.returncode == 0


async def _ns_run(netns: str, argv: Sequence[str]) -> str:
    """Run ``argv`` inside the namespace (argv list, no shell); return its output."""
    full = ["nsenter", f"--net={netns_path(netns)}", "--", *argv]
    done = await anyio.run_process(full, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise DemoFailure(f"{shlex.join(argv)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode(errors="replace")


async def _version(binary: str) -> str:
    # Outside the namespace: --version reads no table.
    try:
        done = await anyio.run_process([binary, "--version"], check=False)
    except OSError:
        # Leave the error to the controller's first call, which says what to install.
        return os.path.basename(binary)
    return done.stdout.decode(errors="replace").strip() or os.path.basename(binary)


# -- the demo: steps ------------------------------------------------------------


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

    async def run(self, anyio_backend: str) -> None:
        """Run every step, checking after each one."""
        self.reporter.start(
            DemoInfo(
                netns=self.netns,
                backend=self.v4.backend,
                version=await _version(self.v4.binaries.iptables),
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
        title = "MASQUERADE deleted: reconcile"
        result = await self._measure(3, "repair-deleted-rule", title, self.controller.reconcile)
        result.details = {
            "tampered:": [command],
            "before the reconcile:": gone,
            "after:": await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN),
        }
        self.reporter.step(result)
        await self._verify("after repairing the deleted rule")

    async def step_flush_chain(self) -> None:
        """4: flush KILO-NAT by hand; reconcile refills it."""
        command = await self._tamper("-F", _NAT_CHAIN)
        flushed = await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN)
        if parse_listing(flushed, _NAT_CHAIN):
            raise DemoFailure(f"{command} left rules in {_NAT_CHAIN}")
        title = f"{_NAT_CHAIN} flushed: reconcile"
        result = await self._measure(4, "repair-flushed-chain", title, self.controller.reconcile)
        result.details = {
            "tampered:": [command],
            "before the reconcile:": flushed,
            "after:": await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN),
        }
        self.reporter.step(result)
        await self._verify("after repairing the flushed chain")

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


# -- the demo: command ------------------------------------------------------------


def _leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside ``exc``: the controller reads chains in a task group,
    so one failing listing reaches us wrapped in an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: BaseException) -> str:
    """One message for an error: the first inside it, and how many more there were."""
    leaves = _leaves(exc)
    first = str(leaves[0]) or type(leaves[0]).__name__
    return first if len(leaves) == 1 else f"{first} (and {len(leaves) - 1} more)"


def _is_expected(exc: BaseException) -> bool:
    """Failures the demo reports as a message, not a traceback."""
    # A broken pipe is left to main(): there is nobody to report it to.
    return all(
        isinstance(leaf, DemoFailure | IPTablesError | OSError) and not isinstance(leaf, BrokenPipeError)
        for leaf in _leaves(exc)
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """``aioiptables demo``: keep, tamper with, repair and remove a Kilo-like
    rule set in a throwaway network namespace. Returns 0 on success."""
    out = sys.stdout
    reporter: Reporter = JsonReporter(out) if args.json else TextReporter(out)
    try:
        netns = _create_netns()
    except DemoFailure as exc:
        reporter.finish(str(exc), netns_deleted=True)
        return 1
    error: str | None = None
    status = 0
    # The namespace is made and deleted outside the event loop, so it goes
    # even if the loop itself dies or the user presses Ctrl-C.
    try:
        demo = Demo(netns, args.backend, args.ipv6, reporter)
        anyio.run(demo.run, args.anyio_backend, backend=args.anyio_backend)
    except BaseException as exc:
        # Under trio, Ctrl-C can arrive wrapped in an exception group too.
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in _leaves(exc)):
            error, status = "interrupted", 130
        elif _is_expected(exc):
            error, status = _describe(exc), 1
        else:
            raise
    finally:
        deleted = _delete_netns(netns)
    if not deleted and error is None:
        error, status = f"could not delete network namespace {netns}", 1
    reporter.finish(error, deleted)
    return status
