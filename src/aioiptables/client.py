"""iptables operations as argv lists, results as values.

A :class:`Client` speaks to one protocol's binaries (``iptables`` or
``ip6tables``) through one :class:`~aioiptables.runner.Runner`. Every method
validates its arguments before any process runs, spawns exactly the processes
its docstring says, and raises :class:`IPTablesError` for a failure.
"""

from __future__ import annotations

import builtins
import logging
import math
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import anyio
from anyio.lowlevel import RunVar

from .errors import IPTablesError
from .limits import check_restore_payload
from .model import (
    Protocol,
    is_builtin_chain,
    validate_chain_name,
    validate_position,
    validate_spec,
    validate_table,
)
from .runner import Completed, ProcessRunner, Runner

__all__ = ["Client", "Binaries", "BackendName", "IPTablesVersion", "Operation", "parse_operation"]

logger = logging.getLogger("aioiptables")

BackendName = Literal["auto", "nft", "legacy"]

# Where iptables lives when root's PATH is not set up (cron, systemd units).
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


@dataclass(frozen=True)
class Binaries:
    """The three programs a client runs for one protocol and backend."""

    iptables: str
    save: str
    restore: str

    @classmethod
    def for_backend(cls, proto: Protocol, backend: BackendName) -> Binaries:
        """The standard names, e.g. ``ip6tables-legacy-save`` for IPv6 legacy."""
        base = proto.command
        infix = "" if backend == "auto" else f"-{backend}"
        return cls(
            _which(f"{base}{infix}"),
            _which(f"{base}{infix}-save"),
            _which(f"{base}{infix}-restore"),
        )


def _which(name: str) -> str:
    path = os.environ.get("PATH", "")
    found = shutil.which(name, path=os.pathsep.join([path, *_SBIN]))
    return found or name


# The names iptables gives to programs of one backend only: its multi
# binaries, which its commands are links to ("xtables-multi" is the only one
# before 1.8, legacy only), and the commands named for their backend
# ("ip6tables-nft-save").
_ONE_BACKEND_NAME = re.compile(r"^(?:xtables-(nft|legacy)-multi|ip6?tables-(nft|legacy)(?:-save|-restore)?)$")


def _detect_backend(binary: str) -> Literal["nft", "legacy"] | None:
    """Which backend a binary drives, from the name of the file it resolves
    to; None when that name is not one iptables gives to one backend only.

    ``iptables`` is a link (often through update-alternatives) to
    ``xtables-nft-multi`` or ``xtables-legacy-multi``: that costs no
    process. A wrapper script installed as ``iptables`` (as container images
    do, to pick a backend at run time), or a program of any other name, says
    nothing by its name: only its ``--version`` does.
    """
    name = os.path.basename(os.path.realpath(binary))
    if name == "xtables-multi":
        return "legacy"
    found = _ONE_BACKEND_NAME.match(name)
    if found is None:
        return None
    return "nft" if "nft" in found.groups() else "legacy"


# "iptables v1.8.11 (nf_tables)", "ip6tables v1.8.7 (legacy)"; before 1.8
# (legacy only) "iptables v1.6.1".
_VERSION_LINE = re.compile(r"^\S*tables\S* v(\d+)\.(\d+)\.(\d+)\S*(?: \((nf_tables|legacy)\))?\s*$")


@dataclass(frozen=True)
class IPTablesVersion:
    """The iptables userspace a client runs, as its ``--version`` names it.

    Orders by release, and compares with a tuple as well::

        version = await client.version()
        if version >= (1, 8, 11): ...

    Attributes:
        major, minor, patch: the release, e.g. 1, 8, 11.
        backend: ``"nft"`` (``(nf_tables)``) or ``"legacy"`` (``(legacy)``,
            or no backend named: releases before 1.8 had only legacy).
        text: the line iptables printed, e.g. ``iptables v1.8.11 (nf_tables)``.
    """

    major: int
    minor: int
    patch: int
    backend: Literal["nft", "legacy"]
    text: str

    @classmethod
    def parse(cls, text: str) -> IPTablesVersion:
        """Read what ``iptables --version`` printed.

        >>> IPTablesVersion.parse("iptables v1.8.7 (legacy)\\n")
        IPTablesVersion(major=1, minor=8, patch=7, backend='legacy', text='iptables v1.8.7 (legacy)')

        Raises :class:`ValueError` when it is not an iptables version line.
        """
        line = text.strip()
        found = _VERSION_LINE.match(line)
        if found is None:
            raise ValueError(f"not an iptables version: {text!r}")
        major, minor, patch, mode = found.groups()
        backend: Literal["nft", "legacy"] = "nft" if mode == "nf_tables" else "legacy"
        return cls(int(major), int(minor), int(patch), backend, line)

    @property
    def release(self) -> tuple[int, int, int]:
        """``(major, minor, patch)``."""
        return (self.major, self.minor, self.patch)

    def _other(self, other: object) -> tuple[int, ...] | None:
        if isinstance(other, IPTablesVersion):
            return other.release
        if isinstance(other, tuple) and all(isinstance(part, int) for part in other):
            return other
        return None

    def __lt__(self, other: IPTablesVersion | tuple[int, ...]) -> bool:
        release = self._other(other)
        return NotImplemented if release is None else self.release < release

    def __le__(self, other: IPTablesVersion | tuple[int, ...]) -> bool:
        release = self._other(other)
        return NotImplemented if release is None else self.release <= release

    def __gt__(self, other: IPTablesVersion | tuple[int, ...]) -> bool:
        release = self._other(other)
        return NotImplemented if release is None else self.release > release

    def __ge__(self, other: IPTablesVersion | tuple[int, ...]) -> bool:
        release = self._other(other)
        return NotImplemented if release is None else self.release >= release

    def __str__(self) -> str:
        return self.text


class _Asking:
    """One ``--version`` process in flight, which later callers wait for."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: Exception | None = None


class Client:
    """Runs iptables (or ip6tables) commands for one protocol.

    Example::

        client = Client(Protocol.IPV4, netns="test")
        await client.append_unique("filter", "INPUT", "-j", "ACCEPT")
        client.calls  # 2: the check, then the append

    Args:
        proto: IPv4 runs ``iptables``, IPv6 runs ``ip6tables``.
        backend: ``"auto"`` (the system's default binaries), ``"nft"`` or
            ``"legacy"`` (the ``-nft``/``-legacy`` binaries). Which backend
            ``"auto"`` drives is :attr:`backend`.
        netns: a network namespace name (as ``ip netns`` names it) or a path
            to a namespace file; every process then runs inside it.
        wait: seconds to wait for the xtables lock (``-w``, rounded up), kept
            under ``timeout`` so that a held lock is reported as such (exit
            status 4, "Another app is currently holding the xtables lock")
            rather than as a timeout. ``None`` or 0 waits as little as every
            iptables version can: ``-w 1``, since iptables-legacy 1.8.9 reads
            ``-w 0`` (and no ``-w``) as "wait for ever". Only iptables-legacy
            takes the lock; iptables-nft accepts ``-w`` and ignores it.
        timeout: each process is killed past this many seconds.
        runner: the process runner (default: a :class:`ProcessRunner`).
        binaries: the programs to run, overriding ``backend``'s names.
        retries: how often a command that failed with exit status 4 (lock
            held, resource busy) is tried again, with a short backoff.

    An ``"auto"`` client whose binary does not say its backend by its name (a
    wrapper script) runs ``iptables --version`` once, before its first
    command: see :attr:`backend`.
    """

    def __init__(
        self,
        proto: Protocol = Protocol.IPV4,
        *,
        backend: BackendName = "auto",
        netns: str | None = None,
        wait: float | None = 5.0,
        timeout: float = 30.0,
        runner: Runner | None = None,
        binaries: Binaries | None = None,
        retries: int = 2,
        max_concurrency: int = 4,
    ) -> None:
        if not isinstance(proto, Protocol):
            raise ValueError(f"proto must be a Protocol, not {proto!r}")
        if backend not in ("auto", "nft", "legacy"):
            raise ValueError(f"backend must be 'auto', 'nft' or 'legacy', not {backend!r}")
        self.proto = proto
        self.netns = netns
        self.wait = wait
        self.timeout = timeout
        self.retries = retries
        self.binaries = binaries or Binaries.for_backend(proto, backend)
        self._backend: BackendName = backend
        if backend == "auto":
            self._backend = _detect_backend(self.binaries.iptables) or "auto"
        self.runner = runner or ProcessRunner(netns=netns, max_concurrency=max_concurrency)
        self.calls = 0
        self._warned_backend = False
        # An auto client that lands on legacy looks once for nft rules.
        self._look_for_nft_tables = backend == "auto" and runner is None
        self._version: IPTablesVersion | None = None
        # The --version process in flight, per event loop (a client may be
        # used from several, one after another or in two threads at once).
        self._asking: RunVar[_Asking | None] = RunVar(f"aioiptables-version-{id(self):x}")

    def __repr__(self) -> str:
        where = f", netns={self.netns!r}" if self.netns else ""
        return f"Client({self.proto}, backend={self.backend!r}{where})"

    # -- the userspace -----------------------------------------------------

    @property
    def backend(self) -> BackendName:
        """The backend this client drives: ``"nft"`` or ``"legacy"``.

        Known from the start for an explicit backend, and for ``"auto"``
        when the binary resolves to a file iptables names for one backend:
        ``xtables-nft-multi`` or ``xtables-legacy-multi``, which ``iptables``
        is a link to as iptables installs it, or ``iptables-nft``... Any
        other binary (a wrapper script installed as ``iptables``, say) says
        which only through ``--version``: until the client has run that
        (once, before its first command, or in :meth:`version` or
        :meth:`detect_backend`), this is ``"auto"``, meaning "not known
        yet", never a guess.
        """
        return self._backend

    async def detect_backend(self) -> Literal["nft", "legacy"]:
        """:attr:`backend`, learning it first when it is not known yet (one
        ``--version`` process, shared with :meth:`version`); no process
        when it is known."""
        if self._backend == "auto":
            return (await self.version()).backend
        return self._backend

    async def version(self) -> IPTablesVersion:
        """The iptables userspace this client runs, from ``iptables
        --version``: one process, and none once it has answered.

        Callers asking at the same time share one process. A failure is not
        kept: the next call tries again. A caller cancelled while the process
        runs kills it, and a caller still waiting runs it again.

        For an ``"auto"`` client whose :attr:`backend` was not known yet,
        this tells it. Raises :class:`IPTablesError` when the program fails
        or prints no iptables version.
        """
        while self._version is None:
            asking = self._asking.get(None)
            if asking is not None:
                await asking.done.wait()
                if asking.error is not None:
                    raise asking.error
                continue  # got it, or the one asking was cancelled: look again
            asking = _Asking()
            self._asking.set(asking)
            try:
                self._learned(await self._ask_version())
            except Exception as exc:
                asking.error = exc
                raise
            finally:
                # Also on cancellation: whoever still waits asks again.
                self._asking.set(None)
                asking.done.set()
        return self._version

    async def _ask_version(self) -> IPTablesVersion:
        argv = [self.binaries.iptables, "--version"]
        self.calls += 1
        done = await self.runner.run(argv, timeout=self.timeout)
        logger.debug(
            "%s: exit %d: %s", " ".join(argv), done.exit_status, done.stdout.strip(),
            extra={"argv": done.argv, "exit_status": done.exit_status, "processes": 1},
        )  # fmt: skip
        if done.exit_status != 0:
            raise IPTablesError.from_result(done.argv, done.exit_status, done.stderr)
        try:
            return IPTablesVersion.parse(done.stdout)
        except ValueError:
            raise IPTablesError(
                done.argv, 0, f"printed no iptables version: {done.stdout.strip()!r}"
            ) from None

    def _learned(self, version: IPTablesVersion) -> None:
        self._version = version
        if self._backend == "auto":
            self._backend = version.backend

    # -- running -----------------------------------------------------------

    async def _run(self, argv: Sequence[str], *, input: bytes | None = None) -> Completed:
        """Run one command, retrying exit status 4, raising on failure.

        An ``"auto"`` client whose backend is not known yet learns it first
        (:meth:`version`), so that everything about this command (its log
        fields, the look for the other backend's rules) has it.
        """
        if self._backend == "auto":
            await self.version()
        if self._look_for_nft_tables:
            self._look_for_nft_tables = False
            if self._backend == "legacy":
                await self._warn_if_nft_tables()
        fields = _fields(argv, input, self.proto, self.backend)
        for attempt in range(self.retries + 1):
            self.calls += 1
            done = await self.runner.run(argv, input=input, timeout=self.timeout)
            logger.debug(
                "%s %s %s: exit %d", fields["operation"], fields["table"], fields["chain"], done.exit_status,
                extra={**fields, "exit_status": done.exit_status, "processes": 1, "attempt": attempt},
            )  # fmt: skip
            self._notice_other_backend(done.stderr)
            if done.exit_status == 0:
                return done
            payload = input.decode("utf-8", "surrogateescape") if input is not None else None
            error = IPTablesError.from_result(done.argv, done.exit_status, done.stderr, payload=payload)
            if not error.is_resource_problem or attempt == self.retries:
                raise error
            logger.info("%s; retrying", error, extra={"argv": done.argv, "attempt": attempt + 1})
            await anyio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _warn_if_nft_tables(self) -> None:
        # The reverse of _notice_other_backend: this auto client drives legacy,
        # but the nf_tables side holds rules too. One process, once.
        program = self.binaries.iptables.replace("-legacy", "") + "-nft-save"
        program = _which(os.path.basename(program))
        self.calls += 1
        try:
            done = await self.runner.run([program], timeout=self.timeout)
        except IPTablesError:
            return  # no nft tools installed: nothing to compare with
        if any(line.startswith("-A ") for line in done.stdout.split("\n")):
            logger.warning(
                "rules exist in the nf_tables backend while this client uses legacy: "
                "they are invisible to it; pass backend='nft' if they are yours",
                extra={"backend": self.backend, "netns": self.netns},
            )

    def _notice_other_backend(self, stderr: str) -> None:
        # iptables-nft says so when legacy tables hold rules too: rules this
        # client neither sees nor manages, which usually means two tools on
        # the node disagree on the backend (kube-proxy warns the same way).
        if self._warned_backend or "iptables-legacy tables present" not in stderr:
            return
        self._warned_backend = True
        logger.warning(
            "iptables-legacy tables are present while this client uses the nft backend: "
            "rules there are invisible to it; pass backend='legacy' if they are yours",
            extra={"backend": self.backend, "netns": self.netns},
        )

    def _wait_args(self) -> list[str]:
        # Always a bounded wait. Without -w, or with -w 0, iptables-legacy
        # 1.8.8 to 1.8.10 block on a held lock for ever (alarm(0), then a
        # blocking flock: commit 07e2107e, fixed by 63ab5b89 in 1.8.11), while
        # 1.8.7 and 1.8.11 on give up at once. "-w N" gives up after N seconds
        # with exit status 4 in every 1.8 release.
        seconds = math.ceil(self.wait or 0)
        if math.isfinite(self.timeout):
            # Give up before the process is killed, so the error names the lock.
            seconds = min(seconds, math.ceil(self.timeout) - 1)
        return ["-w", str(max(1, seconds))]

    def _argv(self, table: str, *args: str) -> list[str]:
        return [self.binaries.iptables, *self._wait_args(), "-t", validate_table(table), *args]

    async def _command(self, table: str, *args: str) -> Completed:
        return await self._run(self._argv(table, *args))

    # -- rules -------------------------------------------------------------

    async def exists(self, table: str, chain: str, *spec: str) -> bool:
        """Whether the rule exists (``-C``; one process).

        False only when iptables says the rule, chain or target does not
        exist; a busy lock or any other failure raises.

        ``-C`` is iptables' own comparison, and it has bugs: ip6tables-legacy
        1.8.9 ignores match and target option values (``--dport 81`` "exists"
        when only 80 is in the chain). :class:`RuleCache` compares canonical
        forms instead, and lists each chain once.
        """
        try:
            await self._command(table, "-C", validate_chain_name(chain), *validate_spec(spec))
        except IPTablesError as exc:
            if exc.is_not_exist:
                return False
            raise
        return True

    async def append(self, table: str, chain: str, *spec: str) -> None:
        """Append the rule to the chain (``-A``; one process)."""
        await self._command(table, "-A", validate_chain_name(chain), *validate_spec(spec))

    async def append_unique(self, table: str, chain: str, *spec: str) -> None:
        """Append the rule unless it exists (one process, two when appending)."""
        if not await self.exists(table, chain, *spec):
            await self.append(table, chain, *spec)

    async def insert(self, table: str, chain: str, pos: int, *spec: str) -> None:
        """Insert the rule at position ``pos`` (1 is the top; ``-I``; one process)."""
        await self._command(
            table, "-I", validate_chain_name(chain), str(validate_position(pos)), *validate_spec(spec)
        )

    async def insert_unique(self, table: str, chain: str, pos: int, *spec: str) -> None:
        """Insert the rule at ``pos`` unless it exists anywhere in the chain."""
        validate_position(pos)
        if not await self.exists(table, chain, *spec):
            await self.insert(table, chain, pos, *spec)

    async def delete(self, table: str, chain: str, *spec: str) -> None:
        """Delete the first rule matching ``spec`` (``-D``; one process)."""
        await self._command(table, "-D", validate_chain_name(chain), *validate_spec(spec))

    async def delete_if_exists(self, table: str, chain: str, *spec: str) -> bool:
        """Delete the rule if it exists; True if it did. One process: the
        delete itself, whose "does not exist" answer is the check."""
        try:
            await self.delete(table, chain, *spec)
        except IPTablesError as exc:
            if exc.is_not_exist:
                return False
            raise
        return True

    async def list(self, table: str, chain: str) -> list[str]:
        """The lines of ``iptables -t TABLE -S CHAIN`` (one process).

        The first line is ``-N CHAIN`` for a user chain or ``-P CHAIN POLICY``
        for a builtin one; the others are ``-A CHAIN ...`` rules.
        """
        done = await self._command(table, "-S", validate_chain_name(chain))
        return _lines(done.stdout)

    # -- chains ------------------------------------------------------------

    async def list_chains(self, table: str) -> builtins.list[str]:
        """The names of every chain in the table, builtin first (one process)."""
        done = await self._command(table, "-S")
        names: builtins.list[str] = []
        for line in _lines(done.stdout):
            head, _, rest = line.partition(" ")
            if head in ("-P", "-N"):
                names.append(rest.split(" ", 1)[0])
        return names

    async def chain_exists(self, table: str, chain: str) -> bool:
        """Whether the chain exists (one process: the table's chain list)."""
        return validate_chain_name(chain) in await self.list_chains(table)

    async def new_chain(self, table: str, chain: str) -> None:
        """Create a user chain (``-N``; one process); fails if it exists."""
        await self._command(table, "-N", validate_chain_name(chain))

    async def clear_chain(self, table: str, chain: str) -> None:
        """Empty the chain, creating it if missing (one process).

        A user chain is declared in an iptables-restore ``--noflush`` payload,
        which creates it or flushes it in one step; a builtin chain is flushed.
        """
        validate_chain_name(chain)
        if is_builtin_chain(validate_table(table), chain):
            await self._command(table, "-F", chain)
        else:
            await self.restore(f"*{table}\n:{chain} - [0:0]\nCOMMIT\n")

    async def delete_chain(self, table: str, chain: str) -> None:
        """Delete an empty, unreferenced user chain (``-X``; one process)."""
        await self._command(table, "-X", validate_chain_name(chain))

    async def rename_chain(self, table: str, old: str, new: str) -> None:
        """Rename a user chain (``-E``; one process)."""
        await self._command(table, "-E", validate_chain_name(old), validate_chain_name(new))

    async def set_policy(self, table: str, chain: str, target: str) -> None:
        """Set a builtin chain's policy (``-P``; one process)."""
        await self._command(table, "-P", validate_chain_name(chain), *validate_spec([target]))

    # -- whole tables ------------------------------------------------------

    async def save(self, table: str) -> str:
        """The ``iptables-save -t TABLE`` text of one table (one process).

        A table the tool cannot represent (rules written by ``nft`` itself,
        or by a newer iptables) raises rather than reading as empty.
        """
        argv = [self.binaries.save, "-t", validate_table(table)]
        done = await self._run(argv)
        # Split at \n only: a comment may hold U+2028 or U+0085, which
        # str.splitlines() breaks at, and could then pass for a header line.
        for line in done.stdout.split("\n"):
            if line.startswith("# Table") and "incompatible" in line:
                raise IPTablesError(argv, done.exit_status, line)
        return done.stdout

    async def restore(self, payload: str, *, noflush: bool = True) -> None:
        """Feed ``payload`` to one ``iptables-restore`` process.

        Each table section (``*table`` ... ``COMMIT``) is applied atomically.
        With ``noflush`` (the default) tables are changed, not replaced.

        The payload is checked first (:func:`~aioiptables.limits.check_restore_payload`):
        a line iptables-restore would cut (and whose tail it would run as a
        command of its own), or split into too many or too long arguments,
        or a NUL, raises :class:`~aioiptables.errors.InvalidRuleError` and no
        process runs.
        """
        check_restore_payload(payload)
        argv = [self.binaries.restore, *self._wait_args()]
        if noflush:
            argv.append("--noflush")
        await self._run(argv, input=payload.encode())


def _fields(argv: Sequence[str], input: bytes | None, proto: Protocol, backend: str) -> dict[str, str]:
    """Structured logging fields for one command: operation, table, chain."""
    op = parse_operation(argv, input)
    return {
        "operation": op.operation,
        "table": op.table,
        "chain": op.chain,
        "protocol": proto.value,
        "backend": backend,
    }


# -- reading a command line back (for logs and metrics) ------------------------------------------

# The command flag of an iptables command line, and the operation it names.
_COMMANDS = {
    "-A": "append", "--append": "append",
    "-I": "insert", "--insert": "insert",
    "-D": "delete", "--delete": "delete",
    "-C": "check", "--check": "check",
    "-S": "list", "--list-rules": "list",
    "-L": "list", "--list": "list",
    "-N": "new_chain", "--new-chain": "new_chain",
    "-F": "flush", "--flush": "flush",
    "-X": "delete_chain", "--delete-chain": "delete_chain",
    "-E": "rename_chain", "--rename-chain": "rename_chain",
    "-P": "policy", "--policy": "policy",
    "-Z": "zero", "--zero": "zero",
}  # fmt: skip
# Options before the command that take a separate value.
_VALUED = frozenset(["-w", "--wait", "-W", "--wait-interval", "-t", "--table", "-M", "--modprobe"])
_RESTORE_TABLE = re.compile(rb"^\*(\S+)", re.MULTILINE)


class Operation(NamedTuple):
    """What one iptables-family command line does, as metric labels."""

    operation: str
    table: str
    chain: str
    protocol: str


def parse_operation(argv: Sequence[str], input: bytes | None = None) -> Operation:
    """The operation, table, chain and protocol of one command line.

    The program's name gives the protocol and, for ``*-save`` and
    ``*-restore``, the operation (their table is the ``-t`` value, or the
    ``*table`` lines of the restore payload joined by commas); otherwise the
    command flag does. Without ``-t`` the table is ``filter``, as iptables
    has it; the chain is empty when the command names none, and ``-S``
    without a chain is ``list_chains``. Unknown commands are ``other``.

    >>> parse_operation(["iptables", "-w", "5", "-t", "nat", "-A", "KILO-NAT", "-j", "MASQUERADE"])
    Operation(operation='append', table='nat', chain='KILO-NAT', protocol='iptables')
    >>> parse_operation(["/usr/sbin/ip6tables-nft-restore", "-w", "5", "--noflush"], b"*nat\\nCOMMIT\\n")
    Operation(operation='restore', table='nat', chain='', protocol='ip6tables')
    """
    program = os.path.basename(argv[0]) if argv else ""
    protocol = "ip6tables" if program.startswith("ip6") else "iptables"
    if program.endswith("-save"):
        return Operation("save", _table_option(argv[1:]) or "", "", protocol)
    if program.endswith("-restore"):
        tables = sorted({name.decode("utf-8", "replace") for name in _RESTORE_TABLE.findall(input or b"")})
        return Operation("restore", ",".join(tables), "", protocol)
    operation, chain = _command(argv[1:])
    return Operation(operation, _table_option(argv[1:]) or "filter", chain, protocol)


def _table_option(args: Sequence[str]) -> str | None:
    """The value of ``-t``/``--table`` (separate, ``-tnat`` or ``--table=nat``)."""
    for i, arg in enumerate(args):
        if arg in ("-t", "--table"):
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith("--table="):
            return arg.partition("=")[2]
        if arg.startswith("-t") and not arg.startswith("--") and len(arg) > 2:
            return arg[2:]
    return None


def _command(args: Sequence[str]) -> tuple[str, str]:
    """The operation named by the first command flag, and the chain after it."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _COMMANDS:
            operation = _COMMANDS[arg]
            following = args[i + 1] if i + 1 < len(args) else ""
            chain = "" if following.startswith("-") else following
            if operation == "list" and not chain:
                operation = "list_chains"
            return operation, chain
        # -w takes an optional number; -t and the others a value.
        skip_value = arg in _VALUED and i + 1 < len(args) and not args[i + 1].startswith("-")
        i += 2 if skip_value else 1
    return "other", ""


def _lines(text: str) -> list[str]:
    # Split at \n only: a comment may hold U+2028 or U+0085, which splitlines()
    # breaks at. Keep empty and "#" lines (a comment holding a newline goes on
    # on the next line, which may be either) but the trailing newline and
    # iptables' own warnings ("# Warning: iptables-legacy tables present").
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return [line for line in lines if not line.startswith("# Warning: ")]
