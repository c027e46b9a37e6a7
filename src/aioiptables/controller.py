"""The Controller: keeps a rule set in place.

Each reconcile reads every chain the rule set touches through a fresh
:class:`RuleCache` (one listing per chain, all at once), asks the planner what
must change, and writes each table's changes as one atomic
``iptables-restore --noflush`` process. A reconcile that finds everything in
place writes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .cache import RuleCache
from .client import BackendName, Client
from .errors import InvalidRuleError, IPTablesError
from .model import Item, Protocol, Rule, RuleSet, validate_chain_name, validate_spec
from .parse import ChainListing, RuleKey, analyze, parse_listing, rule_key
from .plan import ChainKey, TablePlan, chains_to_read, decorate, leftovers, owner_tag, plan

__all__ = ["Controller", "ipv6_enabled"]

_ERROR_BUFFER = 64
# Where leftovers of an earlier run are looked for.
_SCANNED_TABLES = ("filter", "nat", "mangle", "raw")


def ipv6_enabled() -> bool:
    """Whether this kernel has IPv6 (``/proc/net/if_inet6`` exists and IPv6 is
    not disabled by sysctl)."""
    if not os.path.exists("/proc/net/if_inet6"):
        return False
    try:
        with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as f:
            return f.read().strip() == "0"
    except OSError:
        return True


class Controller:
    """Keeps a :class:`RuleSet` in place: adds what is missing, restores order,
    removes what is no longer wanted.

    Example::

        controller = Controller(Client(netns="test"), resync=30)
        await controller.set(RuleSet(append=[Chain.ipv4("nat", "KILO-NAT"),
            Rule.ipv4("nat", "KILO-NAT", "-j", "MASQUERADE")]))
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)

    Args:
        v4: the IPv4 client. With neither client given, the controller
            makes real ones (``backend`` and ``netns`` are passed on), and no
            IPv6 client when the kernel has IPv6 disabled.
        v6: the IPv6 client.
        resync: seconds between reconciles in :meth:`run`.
        logger: where to log (default: the ``aioiptables`` logger).
        backend: the backend of the clients made when none are given.
        netns: the network namespace of the clients made when none are given.
        snapshot_from: read a table with one ``iptables-save`` when a
            reconcile needs at least this many of its chains (0: never; then
            one ``iptables -S CHAIN`` per chain, as Kilo does). See
            docs/benchmarks.md for the measurements behind the default.
        owner: opt in to ownership across restarts: every rule written
            carries the comment ``aioiptables:OWNER`` and every chain a
            marker rule, and the first reconcile reads every table once and
            removes what an earlier run of the same owner left behind. Without
            it, rules are written exactly as given.
        canary: the name of a canary chain to keep in every table the rule
            set uses; :meth:`run` then lists it every ``canary_interval``
            seconds (one process per table per poll) and reconciles at once
            when it is gone or emptied, so a firewall reload or an
            ``iptables -F`` is repaired within about a second instead of at
            the next resync.
        canary_interval: seconds between two looks at the canaries.
    """

    def __init__(
        self,
        v4: Client | None = None,
        v6: Client | None = None,
        *,
        resync: float = 30.0,
        logger: logging.Logger | None = None,
        backend: BackendName = "auto",
        netns: str | None = None,
        snapshot_from: int = 2,
        owner: str | None = None,
        canary: str | None = None,
        canary_interval: float = 1.0,
    ) -> None:
        if v4 is None and v6 is None:
            v4 = Client(Protocol.IPV4, backend=backend, netns=netns)
            if ipv6_enabled():
                v6 = Client(Protocol.IPV6, backend=backend, netns=netns)
        self._clients: dict[Protocol, Client] = {}
        for proto, client in ((Protocol.IPV4, v4), (Protocol.IPV6, v6)):
            if client is not None:
                if client.proto is not proto:
                    raise ValueError(f"the {proto.value} client speaks {client.proto.value}")
                self._clients[proto] = client
        self.resync = resync
        self.snapshot_from = snapshot_from
        if owner is not None:
            validate_spec(["--comment", owner_tag(owner)])
        if canary is not None:
            validate_chain_name(canary)
        self.owner = owner
        self.canary = canary
        self.canary_interval = canary_interval
        #: How often a canary was found gone or emptied.
        self.canary_trips = 0
        self._adopted = owner is None  # leftovers of earlier runs looked for yet?
        self._wake: anyio.Event | None = None
        self.logger = logger or logging.getLogger("aioiptables")
        self._ruleset = RuleSet()
        self._retired: dict[Item, None] = {}  # ordered set of what to remove
        # How iptables printed rules the canonicalizer cannot fully read:
        # (proto, table, chain, our canonical form) -> the printed form's key.
        self._learned: dict[tuple[Protocol, str, str, RuleKey], RuleKey] = {}
        self._lock = anyio.Lock()
        self._errors_in: MemoryObjectSendStream[Exception]
        self.errors: MemoryObjectReceiveStream[Exception]
        self._errors_in, self.errors = anyio.create_memory_object_stream[Exception](_ERROR_BUFFER)
        #: Processes spent and changes made by the last reconcile.
        self.last_stats: dict[str, float] = {}
        #: What the last reconcile planned to write, one plan per table changed.
        self.last_plans: list[TablePlan] = []
        #: Every chain the last reconcile touched, as it reads after that
        #: reconcile's writes (known from the plan, not listed again).
        self.state: dict[ChainKey, ChainListing] = {}
        #: Called after every reconcile (through reconcile() or run()) with
        #: the controller, the seconds it took and the error it raised (or
        #: None); ``last_stats`` then describes it. For metrics and the like.
        self.listeners: list[Callable[[Controller, float, Exception | None], None]] = []

    @property
    def clients(self) -> tuple[Client, ...]:
        """The clients in use, IPv4 first."""
        return tuple(self._clients.values())

    @property
    def append_rules(self) -> tuple[Item, ...]:
        """The rules and chains kept in order at the end of their chains."""
        return self._ruleset.append

    @property
    def prepend_rules(self) -> tuple[Rule, ...]:
        """The rules kept at the top of their chains."""
        return self._ruleset.prepend

    @property
    def calls(self) -> int:
        """Processes run by this controller's clients so far."""
        return sum(client.calls for client in self._clients.values())

    def _check(self, ruleset: RuleSet) -> None:
        if not isinstance(ruleset, RuleSet):
            raise TypeError(f"expected a RuleSet, not {ruleset!r}")
        for item in ruleset:
            if item.proto not in self._clients:
                raise InvalidRuleError("item", str(item), f"this controller has no {item.proto.value} client")

    async def preview(self, ruleset: RuleSet) -> list[TablePlan]:
        """What :meth:`set` would write now, without writing anything: the
        tables are read exactly as a reconcile reads them, and one plan comes
        back per table that would change (``plan.payload`` is the restore
        input). Leftovers of earlier runs (``owner``) are not looked for.
        """
        self._check(ruleset)
        async with self._lock:
            desired = decorate(ruleset, owner=self.owner, canary=self.canary)
            kept = set(desired)
            retired = [item for item in [*self._desired(), *self._retired] if item not in kept]
            cache = RuleCache(*self._clients.values())
            observed = await self._read(cache, chains_to_read(desired, retired))
            return plan(desired, observed, retired, key=self._key)

    async def set(self, ruleset: RuleSet) -> None:
        """Replace the rule set: add what is new, delete what is no longer
        wanted, and keep the rest. Idempotent: setting the same rules again
        writes nothing. Checks every item before any process runs.
        """
        self._check(ruleset)
        async with self._lock:
            before = self._desired()
            self._ruleset = ruleset
            after = self._desired()
            kept = set(after)
            for item in before:
                if item not in kept:
                    self._retired[item] = None
            for item in kept:
                self._retired.pop(item, None)
            self._forget_unwanted()
            await self._reconcile()

    async def reconcile(self) -> None:
        """Check every rule (one read per table, or per chain) and repair what
        is missing or out of order, one atomic write per table that needs one."""
        async with self._lock:
            await self._reconcile()

    def _tell(self, seconds: float, error: Exception | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(self, seconds, error)
            except Exception:  # a broken listener must not break the loop
                self.logger.exception("reconcile listener failed")

    async def cleanup(self) -> None:
        """Delete every rule and chain this controller keeps, and forget them."""
        async with self._lock:
            for item in self._desired():
                self._retired[item] = None
            self._ruleset = RuleSet()
            await self._reconcile()

    def _desired(self) -> RuleSet:
        """The rule set as written: with owner tags and canaries if asked for."""
        return decorate(self._ruleset, owner=self.owner, canary=self.canary)

    async def run(self) -> None:
        """Reconcile now and every ``resync`` seconds, until cancelled; with a
        canary, also as soon as a canary is found gone or emptied.

        A failing reconcile is logged and sent on :attr:`errors` (dropped if
        nobody reads and the buffer is full); the loop goes on.
        """
        async with anyio.create_task_group() as tg:
            if self.canary is not None:
                tg.start_soon(self._watch_canaries)
            while True:
                self._wake = anyio.Event()
                try:
                    await self.reconcile()
                except Exception as exc:
                    self.logger.warning("reconcile failed: %s", exc, extra={"error": exc})
                    try:
                        self._errors_in.send_nowait(exc)
                    except anyio.WouldBlock:
                        self.logger.debug("errors stream full; dropped %r", exc)
                with anyio.move_on_after(self.resync):
                    await self._wake.wait()

    async def _watch_canaries(self) -> None:
        """List each table's canary chain every ``canary_interval`` seconds
        (one process each) and wake the run loop when one is gone or empty."""
        assert self.canary is not None
        while True:
            await anyio.sleep(self.canary_interval)
            for proto, table in sorted(
                {(i.proto, i.table) for i in self._ruleset}, key=lambda t: (t[0].value, t[1])
            ):
                try:
                    lines = await self._clients[proto].list(table, self.canary)
                except IPTablesError as exc:
                    if not exc.is_not_exist:
                        self.logger.warning("canary check failed: %s", exc)
                        continue
                    lines = []
                if not any(line.startswith("-A ") for line in lines):
                    self.canary_trips += 1
                    self.logger.info("canary in %s %s is gone: reconciling now", proto.value, table)
                    if self._wake is not None:
                        self._wake.set()
                    break

    async def _reconcile(self) -> None:
        started = time.monotonic()
        try:
            await self._reconcile_once()
        except Exception as exc:
            self._tell(time.monotonic() - started, exc)
            raise
        self._tell(time.monotonic() - started, None)

    async def _reconcile_once(self) -> None:
        started = time.monotonic()
        calls_before = self.calls
        desired = self._desired()
        cache = RuleCache(*self._clients.values())
        if not self._adopted:
            await self._adopt_leftovers(cache, desired)
        retired = list(self._retired)
        observed = await self._read(cache, chains_to_read(desired, retired))
        plans = plan(desired, observed, retired, key=self._key)
        self.last_plans = plans
        self.state = dict(observed)
        for table_plan in plans:
            await self._write(table_plan)
            # Our own writes need no listing to be known: the plan says what they made.
            for chain, listing in table_plan.after.items():
                self.state[(table_plan.proto, table_plan.table, chain)] = listing
        self._retired.clear()
        self._adopted = True
        self.last_stats = {
            "processes": self.calls - calls_before,
            "writes": len(plans),
            "changes": sum(len(p.ops) for p in plans),
            "seconds": time.monotonic() - started,
        }
        self.logger.debug("reconciled", extra=dict(self.last_stats))

    async def _adopt_leftovers(self, cache: RuleCache, desired: RuleSet) -> None:
        """Read every table once and retire what an earlier run of the same
        owner left behind (first reconcile only, with ``owner``)."""
        assert self.owner is not None
        snapshots = []
        for proto in self._clients:
            for table in _SCANNED_TABLES:
                try:
                    snapshots.append(await cache.snapshot(proto, table))
                except IPTablesError as exc:
                    self.logger.debug("cannot read %s %s for leftovers: %s", proto.value, table, exc)
        for item in leftovers(snapshots, desired, self.owner):
            self._retired.setdefault(item, None)

    async def _read(self, cache: RuleCache, keys: Iterable[ChainKey]) -> dict[ChainKey, ChainListing]:
        """Every chain the plan needs, as few processes as the policy allows:
        one iptables-save for a table where several chains are read, one
        ``-S CHAIN`` where only one is; all at once."""
        by_table: dict[tuple[Protocol, str], list[ChainKey]] = {}
        for key in sorted(keys, key=lambda k: (k[0].value, k[1], k[2])):
            by_table.setdefault((key[0], key[1]), []).append(key)
        observed: dict[ChainKey, ChainListing] = {}
        failures: list[Exception] = []

        async def read(table: tuple[Protocol, str], chains: list[ChainKey], scope: anyio.CancelScope) -> None:
            try:
                if self.snapshot_from and len(chains) >= self.snapshot_from:
                    await cache.snapshot(*table)
                for key in chains:
                    observed[key] = await cache.listing(*key)
            except Exception as exc:
                # Stop the other reads and raise this error itself, not
                # wrapped in an exception group, so callers can catch it.
                failures.append(exc)
                scope.cancel()

        async with anyio.create_task_group() as tg:
            for table, chains in by_table.items():
                if self.snapshot_from and len(chains) >= self.snapshot_from:
                    tg.start_soon(read, table, chains, tg.cancel_scope)
                else:
                    for key in chains:  # one listing each, concurrently
                        tg.start_soon(read, table, [key], tg.cancel_scope)
        if failures:
            raise failures[0]
        return observed

    async def _write(self, table_plan: TablePlan) -> None:
        client = self._clients[table_plan.proto]
        self.logger.info(
            "writing %d changes to %s %s",
            len(table_plan.ops),
            table_plan.proto.value,
            table_plan.table,
            extra={"table": table_plan.table, "changes": len(table_plan.ops)},
        )
        await client.restore(table_plan.payload)
        await self._learn(client, table_plan)

    def _key(self, rule: Rule) -> RuleKey:
        own = rule_key(rule.spec, rule.proto)
        return self._learned.get((rule.proto, rule.table, rule.chain, own), own)

    def _forget_unwanted(self) -> None:
        wanted = {
            (r.proto, r.table, r.chain, rule_key(r.spec, r.proto))
            for r in self._ruleset
            if isinstance(r, Rule)
        }
        for stale in [k for k in self._learned if k not in wanted]:
            del self._learned[stale]

    async def _learn(self, client: Client, table_plan: TablePlan) -> None:
        """Read back the chains where rules the canonicalizer cannot fully
        read were just written, and remember how iptables printed them, so
        later reconciles find them instead of writing them again.

        Costs one listing per such chain, only when such a rule is written.
        """
        proto, table = table_plan.proto, table_plan.table
        chains = sorted(
            {
                op.chain
                for op in table_plan.ops
                if op.kind in ("append", "insert") and not analyze(op.spec, proto).exact
            }
        )
        for chain in chains:
            printed = parse_listing(await client.list(table, chain), chain)
            learned = _align(table_plan.after[chain].specs, printed, proto)
            if learned is None:
                self.logger.debug("%s %s changed while written; will learn later", table, chain)
                continue
            self._learned.update({(proto, table, chain, k): v for k, v in learned.items()})


def _align(
    predicted: tuple[tuple[str, ...], ...], printed: tuple[tuple[str, ...], ...], proto: Protocol
) -> dict[RuleKey, RuleKey] | None:
    """Pair the rules a plan predicted with the rules iptables printed, by
    position; None when the chain is not what the plan predicted."""
    if len(predicted) != len(printed):
        return None
    learned: dict[RuleKey, RuleKey] = {}
    for want, got in zip(predicted, printed, strict=True):
        wanted = analyze(want, proto)
        if wanted.exact:
            if wanted.tokens != rule_key(got, proto):
                return None  # someone else changed the chain in between
        else:
            learned[wanted.tokens] = rule_key(got, proto)
    return learned
