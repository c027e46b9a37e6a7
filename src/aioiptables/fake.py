"""An in-memory iptables, behind the same runner seam as the real one.

:class:`FakeRunner` emulates the command lines of ``iptables``,
``ip6tables`` (``-A -I -D -C -S -N -F -X -E -P``), their ``-save`` and their
``-restore``. :class:`FakeClient` is a plain :class:`~aioiptables.Client` on
that runner, so argv building, error classification, parsing and process
counting are the production code: ``fake.calls`` is what a real client would
have spent on the same calls.

Rules are compared by :func:`~aioiptables.parse.rule_key`, the same equality
the cache and controller use.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from .client import Binaries, Client
from .errors import InvalidRuleError
from .model import BUILTIN_CHAINS, Protocol
from .parse import analyze, rule_key
from .runner import Completed, Runner
from .syntax import quote, split_line

__all__ = ["FakeRunner", "FakeClient"]

# Targets that are extensions, not chains; a jump to anything else must name a chain.
_TARGETS = frozenset(
    [
        "ACCEPT",
        "DROP",
        "RETURN",
        "QUEUE",
        "NFQUEUE",
        "REJECT",
        "LOG",
        "NFLOG",
        "ULOG",
        "MASQUERADE",
        "SNAT",
        "DNAT",
        "REDIRECT",
        "MARK",
        "CONNMARK",
        "TCPMSS",
        "NOTRACK",
        "CT",
        "TPROXY",
        "CLASSIFY",
        "DSCP",
        "TOS",
        "TTL",
        "HL",
        "SET",
        "AUDIT",
        "CHECKSUM",
        "CLUSTERIP",
        "CONNSECMARK",
        "SECMARK",
        "IDLETIMER",
        "LED",
        "NETMAP",
        "RATEEST",
        "SYNPROXY",
        "TEE",
        "TRACE",
        "NETMAP",
        "HMARK",
    ]
)


class _Failure(Exception):
    def __init__(self, exit_status: int, message: str) -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.message = message


def _no_chain() -> _Failure:
    return _Failure(1, "iptables: No chain/target/match by that name.")


def _bad_rule() -> _Failure:
    return _Failure(1, "iptables: Bad rule (does a matching rule exist in that chain?).")


@dataclass
class _Chain:
    policy: str | None  # None for a user chain
    rules: list[tuple[str, ...]] = field(default_factory=list)


_Table = dict[str, _Chain]


def _new_table(name: str) -> _Table:
    return {chain: _Chain("ACCEPT") for chain in BUILTIN_CHAINS[name]}


def _jump(spec: Sequence[str]) -> str | None:
    for flag, value in itertools.pairwise(spec):
        if flag in ("-j", "--jump", "-g", "--goto"):
            return value
    return None


class FakeRunner(Runner):
    """Emulates iptables in memory for both protocols.

    ``calls`` counts the processes a real runner would have spawned.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.tables: dict[Protocol, dict[str, _Table]] = {Protocol.IPV4: {}, Protocol.IPV6: {}}

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        """Answer ``argv`` from the in-memory tables, as iptables would."""
        self.calls += 1
        program = os.path.basename(argv[0])
        proto = Protocol.IPV6 if program.startswith("ip6") else Protocol.IPV4
        try:
            if program.endswith("-save"):
                out = self._save(proto, list(argv[1:]))
            elif program.endswith("-restore"):
                # iptables-restore reads bytes; what is not UTF-8 cannot name anything here.
                out = self._restore(proto, list(argv[1:]), (input or b"").decode("utf-8", "replace"))
            else:
                out = self._command(proto, self.tables[proto], list(argv[1:]))
        except _Failure as failure:
            return Completed(tuple(argv), failure.exit_status, "", failure.message + "\n")
        return Completed(tuple(argv), 0, out, "")

    # -- the iptables command line ------------------------------------------

    def _table(self, tables: dict[str, _Table], name: str) -> _Table:
        if name not in BUILTIN_CHAINS:
            raise _Failure(
                3, f"iptables v1.8.9: can't initialize iptables table `{name}': Table does not exist"
            )
        if name not in tables:
            tables[name] = _new_table(name)
        return tables[name]

    def _command(self, proto: Protocol, tables: dict[str, _Table], args: list[str]) -> str:
        given = " ".join(args)
        try:
            return self._command_line(proto, tables, args)
        except IndexError:
            # A command or option missing its argument (-A without a chain, ...).
            raise _Failure(2, f"iptables v1.8.9: {given}: option requires an argument") from None

    def _command_line(self, proto: Protocol, tables: dict[str, _Table], args: list[str]) -> str:
        table_name = "filter"
        while args and args[0] in ("-w", "--wait", "-t", "--table"):
            flag = args.pop(0)
            if flag in ("-t", "--table"):
                table_name = args.pop(0)
            elif args and args[0].isdigit():
                args.pop(0)
        if not args:
            raise _Failure(2, "iptables v1.8.9: no command specified")
        table = self._table(tables, table_name)
        command, rest = args[0], args[1:]
        handler = {
            "-A": self._append,
            "-I": self._insert,
            "-D": self._delete,
            "-C": self._check,
            "-S": self._list,
            "-N": self._new,
            "-F": self._flush,
            "-X": self._remove,
            "-E": self._rename,
            "-P": self._policy,
        }.get(command)
        if handler is None:
            raise _Failure(2, f"iptables v1.8.9: unknown command {command!r}")
        return handler(proto, table, rest)

    def _chain(self, table: _Table, name: str) -> _Chain:
        if name not in table:
            raise _no_chain()
        return table[name]

    def _check_target(self, table: _Table, spec: Sequence[str]) -> None:
        target = _jump(spec)
        if target is not None and target not in table and target not in _TARGETS:
            raise _Failure(2, f"iptables v1.8.9: Couldn't load target `{target}':No such file or directory")

    def _find(self, proto: Protocol, chain: _Chain, spec: Sequence[str]) -> int:
        key = rule_key(spec, proto)
        for index, existing in enumerate(chain.rules):
            if rule_key(existing, proto) == key:
                return index
        raise _bad_rule()

    def _append(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        chain = self._chain(table, args[0])
        self._check_target(table, args[1:])
        chain.rules.append(_as_printed(args[1:], proto))
        return ""

    def _insert(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        chain = self._chain(table, args[0])
        position, spec = 1, args[1:]
        if spec and spec[0].isdigit():
            position, spec = int(spec[0]), spec[1:]
        if position < 1 or position > len(chain.rules) + 1:
            raise _Failure(1, "iptables: Index of insertion too big.")
        self._check_target(table, spec)
        chain.rules.insert(position - 1, _as_printed(spec, proto))
        return ""

    def _delete(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        chain = self._chain(table, args[0])
        if len(args) == 2 and args[1].isdigit():
            index = int(args[1]) - 1
            if not 0 <= index < len(chain.rules):
                raise _Failure(1, "iptables: Index of deletion too big.")
        else:
            self._check_target(table, args[1:])
            index = self._find(proto, chain, args[1:])
        del chain.rules[index]
        return ""

    def _check(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        self._check_target(table, args[1:])
        self._find(proto, self._chain(table, args[0]), args[1:])
        return ""

    def _list(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        names = [args[0]] if args else list(table)
        if args:
            self._chain(table, args[0])
        heads: list[str] = []
        rules: list[str] = []
        for name in names:
            chain = table[name]
            heads.append(f"-P {name} {chain.policy}" if chain.policy else f"-N {name}")
            rules.extend(_printed(name, spec) for spec in chain.rules)
        return "".join(line + "\n" for line in heads + rules)

    def _new(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        if args[0] in table:
            raise _Failure(1, "iptables: Chain already exists.")
        table[args[0]] = _Chain(None)
        return ""

    def _flush(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        for name in args[:1] or list(table):
            self._chain(table, name).rules.clear()
        return ""

    def _references(self, table: _Table, name: str) -> int:
        return sum(1 for chain in table.values() for spec in chain.rules if _jump(spec) == name)

    def _remove(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        names = args[:1] or [n for n, c in table.items() if c.policy is None]
        for name in names:
            chain = self._chain(table, name)
            if chain.policy is not None:
                raise _Failure(2, "iptables v1.8.9: Can't delete built-in chain")
            if self._references(table, name):
                raise _Failure(1, "iptables: Too many links.")
            if chain.rules:
                raise _Failure(1, "iptables: Directory not empty.")
            del table[name]
        return ""

    def _rename(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        old, new = args[0], args[1]
        chain = self._chain(table, old)
        if new in table:
            raise _Failure(1, "iptables: File exists.")
        if chain.policy is not None:
            raise _Failure(1, "iptables: Invalid argument.")
        # Keep the chain's place in the table and rewrite jumps to it.
        items = [(new if n == old else n, c) for n, c in table.items()]
        table.clear()
        table.update(items)
        for each in table.values():
            each.rules = [_rename_jump(spec, old, new) for spec in each.rules]
        return ""

    def _policy(self, proto: Protocol, table: _Table, args: list[str]) -> str:
        chain = self._chain(table, args[0])
        if chain.policy is None:
            raise _Failure(1, "iptables: Bad built-in chain name.")
        if args[1] not in ("ACCEPT", "DROP"):
            raise _Failure(1, "iptables: Bad policy name.")
        chain.policy = args[1]
        return ""

    # -- save and restore ---------------------------------------------------

    def _save(self, proto: Protocol, args: list[str]) -> str:
        names = list(self.tables[proto])
        if "-t" in args:
            if args.index("-t") + 1 >= len(args):
                raise _Failure(2, "iptables-save: option requires an argument -- 't'")
            names = [args[args.index("-t") + 1]]
        lines = ["# Generated by aioiptables FakeRunner"]
        for name in names:
            table = self._table(self.tables[proto], name)
            lines.append(f"*{name}")
            for chain_name, chain in table.items():
                lines.append(f":{chain_name} {chain.policy or '-'} [0:0]")
            for chain_name, chain in table.items():
                lines.extend(_printed(chain_name, spec) for spec in chain.rules)
            lines.append("COMMIT")
        lines.append("# Completed")
        return "\n".join(lines) + "\n"

    def _restore(self, proto: Protocol, args: list[str], payload: str) -> str:
        noflush = "--noflush" in args or "-n" in args
        tables = self.tables[proto]
        pending: dict[str, _Table] | None = None
        name = ""
        # iptables-restore splits lines at \n only (not at U+2028 and the like).
        for number, line in enumerate(payload.split("\n"), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("*"):
                    name = line[1:]
                    pending = {name: copy.deepcopy(self._table(tables, name))}
                    if not noflush:
                        pending[name] = _new_table(name)
                elif pending is None:
                    raise _Failure(1, "no table specified")
                elif line == "COMMIT":
                    tables[name] = pending[name]
                    pending = None
                elif line.startswith(":"):
                    self._declare(pending[name], line[1:].split())
                else:
                    self._command(proto, pending, ["-t", name, *_tokens(line)])
            except _Failure as failure:
                raise _Failure(
                    failure.exit_status if failure.exit_status != 0 else 1,
                    f"{failure.message}\niptables-restore: line {number} failed",
                ) from None
        if pending is not None:
            raise _Failure(1, "iptables-restore: COMMIT expected at line end")
        return ""

    def _declare(self, table: _Table, fields: list[str]) -> None:
        name, policy = fields[0], fields[1] if len(fields) > 1 else "-"
        if name in table and table[name].policy is not None:
            if policy != "-":
                table[name].policy = policy
        elif name in table:
            table[name].rules.clear()  # as iptables-restore does, even with --noflush
        else:
            table[name] = _Chain(None)

    # -- inspection for tests -----------------------------------------------

    def rules(self, proto: Protocol, table: str, chain: str) -> list[tuple[str, ...]]:
        """The specs in a chain, in order (empty if the chain does not exist)."""
        found = self.tables[proto].get(table, {}).get(chain)
        return list(found.rules) if found else []


# Options whose value iptables prints raw, never quoted (interface and chain names).
_RAW = frozenset({"-i", "-o", "-j", "-g"})


def _printed(chain: str, spec: Sequence[str]) -> str:
    """One ``-A`` line as iptables prints it: values of -i, -o, -j and -g
    raw (even when they hold a quote or a blank), others quoted when they
    need it; a value holding a newline spans two lines, as with iptables."""
    words = [f"-A {chain}"]
    for before, token in zip(("", *spec), spec, strict=False):
        words.append(token if before in _RAW and token else quote(token))
    return " ".join(words)


def _as_printed(spec: Sequence[str], proto: Protocol) -> tuple[str, ...]:
    # Store a rule the way iptables prints it back (-p tcp --dport 80 becomes
    # -p tcp -m tcp --dport 80), where the canonicalizer knows how.
    read = analyze(tuple(spec), proto)
    return read.tokens if read.exact else tuple(spec)


def _tokens(line: str) -> list[str]:
    try:
        return split_line(line)
    except InvalidRuleError as exc:
        raise _Failure(2, f"iptables-restore: {exc}") from None


def _rename_jump(spec: tuple[str, ...], old: str, new: str) -> tuple[str, ...]:
    out = list(spec)
    for i in range(len(out) - 1):
        if out[i] in ("-j", "--jump", "-g", "--goto") and out[i + 1] == old:
            out[i + 1] = new
    return tuple(out)


class FakeClient(Client):
    """A :class:`Client` backed by an in-memory iptables.

    >>> fake = FakeClient()
    >>> import anyio
    >>> anyio.run(fake.append, "filter", "INPUT", "-j", "ACCEPT")
    >>> anyio.run(fake.list, "filter", "INPUT")
    ['-P INPUT ACCEPT', '-A INPUT -j ACCEPT']
    >>> fake.calls
    2

    Pass one ``runner`` to several fakes (IPv4 and IPv6) to share one state.
    """

    def __init__(
        self,
        proto: Protocol = Protocol.IPV4,
        *,
        runner: FakeRunner | None = None,
        backend: str = "nft",
        wait: float | None = 5.0,
    ) -> None:
        base = proto.command
        infix = f"-{backend}" if backend in ("nft", "legacy") else ""
        self.fake: FakeRunner = runner or FakeRunner()
        super().__init__(
            proto,
            backend="nft" if backend == "nft" else "legacy",
            wait=wait,
            runner=self.fake,
            binaries=Binaries(f"{base}{infix}", f"{base}{infix}-save", f"{base}{infix}-restore"),
        )
