"""Kilo's iptables strategy, re-implemented in Python: the baseline.

A port of `squat/kilo`_ ``pkg/iptables`` (``iptables.go``, ``rulecache.go``)
and of the parts of ``coreos/go-iptables`` v0.8.0 (vendored by Kilo) that it
calls, line by line where it matters, so that the processes it spawns and
the order it spawns them in are Kilo's:

- :class:`GoIPTables` is go-iptables' ``IPTables`` for one protocol: one
  process per call, ``iptables [-t TABLE] COMMAND ... --wait`` (go-iptables
  appends ``--wait`` last; Kilo makes its clients with ``Timeout(0)``, so no
  seconds follow). ``Exists`` is ``-C`` (exit status 1 is "no"),
  ``AppendUnique``/``InsertUnique`` are ``-C`` then ``-A``/``-I`` (two
  processes when writing), ``ClearChain`` is ``-N`` then ``-F`` when the
  chain exists, ``List`` is ``-S CHAIN``, ``ListChains`` is ``-S`` (its
  leading ``-P``/``-N`` lines). Kilo's ``metricsClientWrapper`` only counts.
- :class:`KiloRule`, :class:`KiloChain` are Kilo's ``rule`` and ``chain``:
  ``Append`` is ``AppendUnique`` (a chain: ``ClearChain``), ``Prepend`` is
  ``InsertUnique`` at 1, ``Delete`` is ``-D`` whose error is ignored (a chain:
  ``ClearChain`` then ``-X``, error ignored); ``String()`` is
  ``TABLE -A CHAIN SPEC...`` with a comment's value wrapped in double quotes,
  and ``TABLE -N CHAIN`` for a chain.
- :class:`RuleCache` is Kilo's ``ruleCache``: one map per protocol from
  strings to flags. A rule is looked up by its ``String()``; on a miss its
  chain is listed once (``-S CHAIN``: every printed line is stored as
  ``TABLE LINE``), a chain's miss lists the table's chains once (``-S``).
  The comparison is TEXT: a rule is found only if the spec, joined with
  spaces as written, is the very line iptables prints. A chain that does not
  exist reads as populated and empty. No in-flight dedup: Kilo asks its
  cache from one goroutine, sequentially (its Go maps are not safe for
  concurrent use); asked concurrently, this port starts a listing for every
  question that misses before the first listing is back.
- :class:`KiloController` is Kilo's ``Controller``: ``Set`` (append rules
  compared by ``String()`` with what it set before: from the first
  difference, the old rules are deleted one by one, then the new ones
  appended one by one; prepend rules added or removed by membership) and
  ``reconcile`` (a fresh cache per reconcile; every append rule is checked
  for existence, in order, and at the first missing one ``resetFromIndex``
  deletes and re-appends that item and EVERY item after it in the whole
  append list, across chains and tables, three processes per rule:
  ``-D``, ``-C``, ``-A``; then every prepend rule is checked and a missing
  one inserted at the top). Order is not checked: only existence (Kilo's
  own comment: "It does not ensure that the order in the backend is
  correct").

The precondition of text comparison: rules must be written exactly as
iptables prints them (``-s 10.0.0.1/32 -p tcp -m tcp --dport 80 -j ACCEPT``,
not ``-p tcp -s 10.0.0.1 --dport 80 -j ACCEPT``), with every comment's value
quoted by iptables (it quotes any value that is not made of letters, digits,
``_`` and ``-`` only; ``String()`` always quotes). A rule written any other
way never reads as existing: each reconcile then re-does it and everything
after it (an append rule) or spends a ``-C`` on it (a prepend rule), for
ever. The benchmarks feed it printed-form rules only.

Simplified: IPv4 and IPv6 clients are both :class:`GoIPTables` (no fake
client for a kernel without IPv6); go-iptables' fallbacks for iptables older
than 1.4.11 (no ``-C``, no ``--wait``) are left out; errors carry the exit
status and stderr and ``IsNotExist`` reads go-iptables' stderr patterns; the
``Run`` loop (a timer calling ``reconcile``) and logging are left out.
Processes are run with :func:`anyio.run_process`, at most ``max_concurrency``
at a time (only concurrent callers of the cache ever run more than one).

.. _squat/kilo: https://github.com/squat/kilo
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

__all__ = [
    "PROTOCOL_IPV4",
    "PROTOCOL_IPV6",
    "GoIPTables",
    "IPTablesError",
    "KiloChain",
    "KiloController",
    "KiloRule",
    "KiloRuleSet",
    "RuleCache",
]

PROTOCOL_IPV4 = 0
PROTOCOL_IPV6 = 1

# ruleCacheFlag
EXISTS = 1 << 0
POPULATED = 1 << 1

# go-iptables: the exit status of "chain already exists" for -N.
_EXISTS_ERR = 1

# go-iptables' isNotExistPatterns.
_NOT_EXIST_PATTERNS = (
    "Bad rule (does a matching rule exist in that chain?).\n",
    "No chain/target/match by that name.\n",
    "No such file or directory",
    "does not exist",
)


class IPTablesError(Exception):
    """go-iptables' ``*Error``: a command that exited non-zero."""

    def __init__(self, argv: Sequence[str], exit_status: int, stderr: str) -> None:
        super().__init__(f"running {list(argv)}: exit status {exit_status}: {stderr.strip()}")
        self.exit_status = exit_status
        self.stderr = stderr

    def is_not_exist(self) -> bool:
        """``IsNotExist``: the chain or rule does not exist (by stderr)."""
        return any(pattern in self.stderr for pattern in _NOT_EXIST_PATTERNS)


class GoIPTables:
    """go-iptables' ``IPTables`` for one protocol and backend: one process per call.

    Args:
        backend: ``"nft"`` or ``"legacy"``: runs ``iptables-nft`` or ``iptables-legacy``.
        netns: a namespace name (``/run/netns/NAME``); every process then
            runs through ``nsenter --net=... --``.
        proto: :data:`PROTOCOL_IPV4` or :data:`PROTOCOL_IPV6`.
        max_concurrency: at most this many processes at once (as
            aioiptables' runner; Kilo itself never runs two at once).

    ``calls`` counts processes; ``spans`` holds each one's (start, end) in
    :func:`time.perf_counter` seconds.
    """

    def __init__(
        self,
        backend: str = "nft",
        netns: str | None = None,
        proto: int = PROTOCOL_IPV4,
        max_concurrency: int = 4,
    ) -> None:
        command = ("iptables" if proto == PROTOCOL_IPV4 else "ip6tables") + f"-{backend}"
        path = shutil.which(command, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
        self.proto = proto
        self.path = path or command
        self.prefix = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
        self.calls = 0
        self.spans: list[tuple[float, float]] = []
        self.max_concurrency = max_concurrency
        self._limiter: anyio.CapacityLimiter | None = None

    # -- running (runWithOutput) --------------------------------------------

    async def _run(self, *args: str) -> str:
        argv = [*self.prefix, self.path, *args, "--wait"]
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrency)
        async with self._limiter:
            self.calls += 1
            started = time.perf_counter()
            try:
                done = await anyio.run_process(argv, check=False, env={**os.environ, "LC_ALL": "C"})
            finally:
                self.spans.append((started, time.perf_counter()))
        if done.returncode != 0:
            raise IPTablesError(argv, done.returncode, done.stderr.decode("utf-8", "replace"))
        return done.stdout.decode("utf-8", "replace")

    async def _list(self, *args: str) -> list[str]:
        # executeList: split at "\n", drop the trailing empty string. (Its
        # filterRuleOutput rewrites "[0:0]" counter prefixes, which -S
        # without -v never prints.)
        rules = (await self._run(*args)).split("\n")
        if rules and rules[-1] == "":
            rules.pop()
        return rules

    # -- the Client interface Kilo uses --------------------------------------

    async def exists(self, table: str, chain: str, *spec: str) -> bool:
        """``Exists``: ``-C`` (one process); exit status 1 is False."""
        try:
            await self._run("-t", table, "-C", chain, *spec)
        except IPTablesError as exc:
            if exc.exit_status == 1:
                return False
            raise
        return True

    async def append(self, table: str, chain: str, *spec: str) -> None:
        """``Append``: ``-A`` (one process)."""
        await self._run("-t", table, "-A", chain, *spec)

    async def insert(self, table: str, chain: str, pos: int, *spec: str) -> None:
        """``Insert``: ``-I CHAIN POS`` (one process)."""
        await self._run("-t", table, "-I", chain, str(pos), *spec)

    async def append_unique(self, table: str, chain: str, *spec: str) -> None:
        """``AppendUnique``: ``-C``, then ``-A`` if missing (one or two processes)."""
        if not await self.exists(table, chain, *spec):
            await self.append(table, chain, *spec)

    async def insert_unique(self, table: str, chain: str, pos: int, *spec: str) -> None:
        """``InsertUnique``: ``-C``, then ``-I`` if missing anywhere in the chain."""
        if not await self.exists(table, chain, *spec):
            await self.insert(table, chain, pos, *spec)

    async def delete(self, table: str, chain: str, *spec: str) -> None:
        """``Delete``: ``-D`` (one process)."""
        await self._run("-t", table, "-D", chain, *spec)

    async def list(self, table: str, chain: str) -> list[str]:
        """``List``: the lines of ``-S CHAIN`` (one process)."""
        return await self._list("-t", table, "-S", chain)

    async def list_chains(self, table: str) -> builtins.list[str]:
        """``ListChains``: the chains named by the leading ``-P``/``-N`` lines of ``-S``."""
        chains: builtins.list[str] = []
        for line in await self._list("-t", table, "-S"):
            if line.startswith(("-P", "-N")):
                chains.append(line.split()[1])
            else:
                break
        return chains

    async def new_chain(self, table: str, chain: str) -> None:
        """``NewChain``: ``-N`` (one process)."""
        await self._run("-t", table, "-N", chain)

    async def clear_chain(self, table: str, chain: str) -> None:
        """``ClearChain``: ``-N``, and ``-F`` when it already exists (one or two processes)."""
        try:
            await self.new_chain(table, chain)
        except IPTablesError as exc:
            if exc.exit_status != _EXISTS_ERR:
                raise
            await self._run("-t", table, "-F", chain)

    async def delete_chain(self, table: str, chain: str) -> None:
        """``DeleteChain``: ``-X`` (one process)."""
        await self._run("-t", table, "-X", chain)


@dataclass(frozen=True)
class KiloRule:
    """Kilo's ``rule``: a spec appended to (or prepended to) a chain."""

    table: str
    chain: str
    spec: tuple[str, ...]
    proto: int = PROTOCOL_IPV4
    # String(), built once (Go builds it on every call; same text).
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [self.table, "-A", self.chain]
        for i, s in enumerate(self.spec):
            # "If this is the content of a comment, wrap the value in quotes."
            parts.append(f'"{s}"' if i > 0 and self.spec[i - 1] == "--comment" else s)
        object.__setattr__(self, "text", " ".join(parts))

    @classmethod
    def ipv4(cls, table: str, chain: str, *spec: str) -> KiloRule:
        """``NewIPv4Rule``."""
        return cls(table, chain, spec, PROTOCOL_IPV4)

    def string(self) -> str:
        """``String()``: ``TABLE -A CHAIN SPEC...``, comment values in double quotes."""
        return self.text

    async def append(self, client: GoIPTables) -> None:
        await client.append_unique(self.table, self.chain, *self.spec)

    async def prepend(self, client: GoIPTables) -> None:
        await client.insert_unique(self.table, self.chain, 1, *self.spec)

    async def delete(self, client: GoIPTables) -> None:
        # "Ignore the returned error as an error likely means that the rule
        # doesn't exist, which is fine."
        with contextlib.suppress(IPTablesError):
            await client.delete(self.table, self.chain, *self.spec)

    async def exists(self, client: GoIPTables) -> bool:
        return await client.exists(self.table, self.chain, *self.spec)


@dataclass(frozen=True)
class KiloChain:
    """Kilo's ``chain``: a user chain, created by ``ClearChain``."""

    table: str
    name: str
    proto: int = PROTOCOL_IPV4

    @classmethod
    def ipv4(cls, table: str, name: str) -> KiloChain:
        """``NewIPv4Chain``."""
        return cls(table, name, PROTOCOL_IPV4)

    def string(self) -> str:
        """``chainToString``: ``TABLE -N CHAIN``."""
        return f"{self.table} -N {self.name}"

    async def append(self, client: GoIPTables) -> None:
        # "Note: `ClearChain` creates a chain if it does not exist."
        await client.clear_chain(self.table, self.name)

    async def prepend(self, client: GoIPTables) -> None:
        await self.append(client)

    async def delete(self, client: GoIPTables) -> None:
        # "The chain must be empty before it can be deleted."
        await client.clear_chain(self.table, self.name)
        with contextlib.suppress(IPTablesError):
            await client.delete_chain(self.table, self.name)

    async def exists(self, client: GoIPTables) -> bool:
        # Kilo checks a chain by trying to create it (and deleting it again).
        try:
            await client.new_chain(self.table, self.name)
        except IPTablesError as exc:
            if exc.exit_status == _EXISTS_ERR:
                return True
            raise
        with contextlib.suppress(IPTablesError):
            await client.delete_chain(self.table, self.name)
        return False


KiloItem = KiloRule | KiloChain


def chain_to_string(table: str, chain: str) -> str:
    return f"{table} -N {chain}"


@dataclass
class KiloRuleSet:
    """Kilo's ``RuleSet``: append rules (order matters) and prepend rules (order does not)."""

    append_rules: list[KiloItem] = field(default_factory=list)
    prepend_rules: list[KiloItem] = field(default_factory=list)


class RuleCache:
    """Kilo's ``ruleCache``: ``[2]map[string]ruleCacheFlag``, filled lazily."""

    def __init__(self) -> None:
        self.maps: list[dict[str, int] | None] = [None, None]

    def _flag(self, proto: int, key: str) -> int:
        # Reading a nil Go map yields the zero value.
        found = self.maps[proto]
        return 0 if found is None else found.get(key, 0)

    async def populate_table(self, client: GoIPTables, proto: int, table: str) -> None:
        m = self.maps[proto]
        assert m is not None
        # "If the table already exists in the destination map, exit early
        # since it has already been populated."
        if m.get(table, 0) & POPULATED:
            return
        chains = await client.list_chains(table)
        m[table] = EXISTS | POPULATED
        for name in chains:
            key = chain_to_string(table, name)
            m[key] = m.get(key, 0) | EXISTS

    async def populate_chain(self, client: GoIPTables, proto: int, table: str, chain: str) -> None:
        m = self.maps[proto]
        assert m is not None
        chain_key = chain_to_string(table, chain)
        # "If the destination chain true, then it has already been populated."
        if m.get(chain_key, 0) & POPULATED:
            return
        try:
            lines = await client.list(table, chain)
        except IPTablesError as exc:
            if exc.is_not_exist():
                m[chain_key] = POPULATED
                return
            raise
        prefix = table + " "
        for line in lines:
            m[prefix + line] = EXISTS
        # "If there are rules on the chain, then the chain exists too."
        if lines:
            m[chain_key] = EXISTS
        m[chain_key] = m.get(chain_key, 0) | POPULATED

    async def populate_rules(self, client: GoIPTables, item: KiloItem) -> None:
        # "Ensure a map for the proto exists."
        if self.maps[item.proto] is None:
            self.maps[item.proto] = {}
        if isinstance(item, KiloChain):
            await self.populate_table(client, item.proto, item.table)
            return
        await self.populate_chain(client, item.proto, item.table, item.chain)

    async def exists(self, client: GoIPTables, item: KiloItem) -> bool:
        # "Exit early if the exact rule exists by name."
        if self._flag(item.proto, item.string()) & EXISTS:
            return True
        # "Otherwise, populate the respective rules."
        await self.populate_rules(client, item)
        return bool(self._flag(item.proto, item.string()) & EXISTS)


class KiloController:
    """Kilo's ``Controller``: ``Set``, ``reconcile`` and ``CleanUp``.

    ``calls`` sums the processes of its clients.
    """

    def __init__(self, v4: GoIPTables, v6: GoIPTables | None = None) -> None:
        self.v4 = v4
        self.v6 = v6
        self.append_rules: list[KiloItem] = []
        self.prepend_rules: list[KiloItem] = []
        self._lock = anyio.Lock()

    @property
    def calls(self) -> int:
        return self.v4.calls + (self.v6.calls if self.v6 is not None else 0)

    def client(self, proto: int) -> GoIPTables:
        if proto == PROTOCOL_IPV4:
            return self.v4
        if proto == PROTOCOL_IPV6 and self.v6 is not None:
            return self.v6
        raise ValueError("unknown protocol")

    # -- reconcile ------------------------------------------------------------

    async def reconcile(self) -> None:
        """Make sure every rule is still there; from the first missing
        append rule on, re-add every append rule; add missing prepend rules."""
        async with self._lock:
            # Go: `var rc ruleCache` is passed BY VALUE ([2]map is an array)
            # and the maps are made in the callee's copy, so the caller's rc
            # stays empty: each pass starts with a cold cache of its own.
            await self.reconcile_append_rules(RuleCache())
            await self.reconcile_prepend_rules(RuleCache())

    async def reconcile_append_rules(self, rc: RuleCache) -> None:
        for i, item in enumerate(self.append_rules):
            if not await rc.exists(self.client(item.proto), item):
                await self.reset_from_index(i, self.append_rules)
                break

    async def reconcile_prepend_rules(self, rc: RuleCache) -> None:
        for item in self.prepend_rules:
            if not await rc.exists(self.client(item.proto), item):
                await item.prepend(self.client(item.proto))

    async def reset_from_index(self, i: int, rules: Sequence[KiloItem]) -> None:
        """``resetFromIndex``: delete and re-add every item from ``i`` on."""
        for item in rules[i:]:
            client = self.client(item.proto)
            await item.delete(client)
            await item.append(client)

    async def delete_from_index(self, i: int, rules: list[KiloItem]) -> None:
        """``deleteFromIndex``: delete every item from ``i`` on, and forget it."""
        for j in range(i, len(rules)):
            try:
                await rules[j].delete(self.client(rules[j].proto))
            except IPTablesError:
                del rules[i:j]
                raise
        del rules[i:]

    # -- Set ------------------------------------------------------------------

    async def set(self, rules: KiloRuleSet) -> None:
        """Idempotently overwrite the rules set before with these."""
        async with self._lock:
            await self.set_append_rules(rules.append_rules)
            await self.set_prepend_rules(rules.prepend_rules)

    async def set_append_rules(self, append_rules: Sequence[KiloItem]) -> None:
        i = 0
        while i < len(append_rules):
            if i < len(self.append_rules) and append_rules[i].string() != self.append_rules[i].string():
                await self.delete_from_index(i, self.append_rules)
            if i >= len(self.append_rules):
                await append_rules[i].append(self.client(append_rules[i].proto))
                self.append_rules.append(append_rules[i])
            i += 1
        await self.delete_from_index(i, self.append_rules)

    async def set_prepend_rules(self, prepend_rules: Sequence[KiloItem]) -> None:
        for item in prepend_rules:
            if not _contains(self.prepend_rules, item):
                await item.prepend(self.client(item.proto))
                self.prepend_rules.append(item)
        for existing in list(self.prepend_rules):
            if not _contains(prepend_rules, existing):
                await existing.delete(self.client(existing.proto))
                self.prepend_rules = [r for r in self.prepend_rules if r.string() != existing.string()]

    async def cleanup(self) -> None:
        """``CleanUp``: delete every prepend rule, then every append rule."""
        async with self._lock:
            await self.delete_from_index(0, self.prepend_rules)
            await self.delete_from_index(0, self.append_rules)


def _contains(haystack: Sequence[KiloItem], needle: KiloItem) -> bool:
    text = needle.string()
    return any(item.string() == text for item in haystack)
