"""The Controller: keeps a rule set in place.

Each reconcile reads every chain the rule set touches through a fresh
:class:`RuleCache` (one listing per chain, all at once), asks the planner what
must change, and writes each table's changes as one atomic
``iptables-restore --noflush`` process. A reconcile that finds everything in
place writes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import NamedTuple, TypeGuard

import anyio
from anyio.lowlevel import RunVar
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .cache import RuleCache, run_all
from .client import BackendName, Client
from .errors import InvalidRuleError, IPTablesError, RefusedRule, RulesRefusedError
from .events import EventsLostError, Generation, Watcher
from .limits import check_restore_payload, check_restore_rule
from .model import Chain, Item, Protocol, Rule, RuleSet, validate_chain_name
from .parse import ChainListing, RuleKey, TableSnapshot, parse_save, rule_key
from .plan import (
    Alignment,
    ChainKey,
    Expected,
    Release,
    TablePlan,
    align,
    chain_tag,
    chains_in_use,
    chains_to_read,
    decorate,
    default_key,
    jump_target,
    leftovers,
    loop_closers,
    marker_spec,
    owner_tag,
    plan,
    release_needed,
    tagged,
    validate_owner,
)
from .reads import TableSize, cheapest_read
from .runner import ProcessRunner

__all__ = ["Controller", "ipv6_enabled"]

_ERROR_BUFFER = 64


class _Facts(NamedTuple):
    """What a reconcile needs to know of a rule set itself."""

    desired: RuleSet
    in_use: frozenset[ChainKey]  # the chains its rules live in or jump to
    to_read: frozenset[ChainKey]  # the chains a reconcile reads
    needs: tuple[tuple[Rule, tuple[Release, str]], ...]  # rules some releases write otherwise


# Each client's argument name, for repr().
_ARG = {Protocol.IPV4: "v4", Protocol.IPV6: "v6"}
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
        snapshot_from: how a reconcile reads a table. None (the default):
            the cheaper of one ``iptables-save`` of the table and one
            ``iptables -S CHAIN`` per chain it needs, by the sizes last read
            (see :mod:`aioiptables.reads`; a table never read is saved when
            two chains or more are needed). A number: one save when at
            least this many of its chains are needed, listings below (0:
            never a save, one listing per chain, as Kilo does). See
            docs/benchmarks.md for the measurements.
        owner: opt in to ownership across restarts: every rule written
            carries the comment ``aioiptables:owner=OWNER`` and every chain a
            marker rule (``aioiptables:chain=OWNER``), and the first
            reconcile reads every table once and removes what an earlier run
            of the same owner left behind. OWNER is 1 to 64 letters, digits,
            ``_``, ``.`` or ``-``. Without it, rules are written exactly as
            given.
        canary: the name of a canary chain to keep in every table the rule
            set uses; :meth:`run` then lists it every ``canary_interval``
            seconds (one process per table per poll) and reconciles at once
            when it is gone or emptied, so a firewall reload or an
            ``iptables -F`` is repaired within about a second instead of at
            the next resync.
        canary_interval: seconds between two looks at the canaries.
        events: wake on nf_tables' change announcements (see
            :mod:`aioiptables.events`): :meth:`run` then reconciles as soon as
            another process changes a table of the rule set, logs which
            process did, and reads nothing while nothing changes. None (the
            default): on wherever it works, that is when every client drives
            iptables-nft through a :class:`ProcessRunner`; False: off.
            iptables-legacy announces nothing (there, ``resync`` and the
            canary do the work).
        safety_resync: with events on, seconds between the full reconciles
            kept as a safety net (in place of ``resync``, after a reconcile
            that succeeded): events cover every change committed through
            nf_tables, so this only catches what no announcement can tell (a
            lost subscription is noticed and answered at once). A reconcile
            that failed is tried again every ``resync``.

    Attributes:
        errors: the exceptions of the reconciles that failed in :meth:`run`,
            which logs each and goes on (``async for exc in
            controller.errors``). Up to 64 wait while nobody reads; later
            ones are dropped (they are still logged).
        state: every chain the last reconcile read, keyed by ``(protocol,
            table, chain)``, as it reads after that reconcile's writes: known
            from its plans, not listed again.
        last_plans: what the last reconcile wrote, one :class:`TablePlan`
            per table it changed (``plan.payload`` is what iptables-restore
            was given); empty when it changed nothing.
        last_stats: what the last reconcile cost: ``processes`` run,
            ``writes`` (one per table changed), ``changes`` (the operations
            in them) and ``seconds``. Empty before the first; a reconcile
            that failed (but for refused rules, :class:`RulesRefusedError`)
            leaves the figures of the one before.
        listeners: called after every reconcile (through :meth:`set`,
            :meth:`reconcile`, :meth:`cleanup` or :meth:`run`) with the
            controller, the seconds it took and the exception it raised (or
            None); ``last_stats`` then describes it. A listener that raises
            is logged, and the others are still called. For metrics
            (:func:`aioiptables.metrics.instrument` adds one) and the like.
        last_change: the last foreign change to a table of the rule set
            that events reported (None until one does): which process,
            which tables.
        following_events: whether :meth:`run` is following events right now.
        canary_trips: how often a canary was found gone or emptied.

    What is ours. The controller deletes, moves or de-duplicates only the
    rules it wrote, and flushes or deletes only the chains it created:

    - without ``owner``, "wrote" means written by this controller object and
      followed through every read since (a rule found in place when it
      starts satisfies the rule set, so nothing is duplicated, but is never
      moved, deleted or cleaned up: a restarted agent leaves its earlier
      run's rules to the next run, which finds them in place);
    - with ``owner``, every rule carrying the owner's tag and every chain
      holding its marker is ours, across restarts.

    Either way a rule identical to one of ours that we did not write may
    satisfy the rule set, but is never moved or deleted; when our order
    needs it elsewhere, our own copy is written instead.
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
        snapshot_from: int | None = None,
        owner: str | None = None,
        canary: str | None = None,
        canary_interval: float = 1.0,
        events: bool | None = None,
        safety_resync: float = 900.0,
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
            validate_owner(owner)
        if canary is not None:
            validate_chain_name(canary)
        self.owner = owner
        self.canary = canary
        self.canary_interval = canary_interval
        self.events = events
        self.safety_resync = safety_resync
        # The public attributes below are described in the class docstring
        # (its Attributes section), where help() and the API reference find them.
        self.last_change: Generation | None = None
        self.following_events = False
        self.canary_trips = 0
        self._adopted = owner is None  # leftovers of earlier runs looked for yet?
        self._wake: anyio.Event | None = None
        self._decorated: tuple[RuleSet, str | None, str | None, RuleSet] | None = None
        # One cache for every reconcile, invalidated at the start of each: a
        # table that prints what it printed last time is not parsed again.
        self._cache = RuleCache(*self._clients.values())
        # Everything a reconcile's plan depends on, as it was when a reconcile
        # found nothing to change and changed nothing (see _fingerprint).
        self._settled: tuple[object, ...] | None = None
        self._facts: _Facts | None = None  # of the rule set last reconciled
        # Each table's size when last saved: what the next read will cost.
        self._sizes: dict[tuple[Protocol, str], TableSize] = {}
        self.logger = logger or logging.getLogger("aioiptables")
        self._ruleset = RuleSet()
        self._retired: dict[Item, None] = {}  # ordered set of what to remove
        # How iptables printed rules the canonicalizer cannot fully read:
        # (proto, table, chain, our canonical form) -> the printed form's key.
        self._learned: dict[tuple[Protocol, str, str, RuleKey], RuleKey] = {}
        # Rules whose fresh copy came back as something nobody could pair with it.
        self._unrecognized: dict[tuple[Protocol, str, str, RuleKey], int] = {}
        # Each chain as our last read or write left it: which lines are ours,
        # which were just written (the next read learns from it).
        self._expected: dict[ChainKey, Expected] = {}
        # Chains this controller created (and so may delete).
        self._own_chains: set[ChainKey] = set()
        # One lock per event loop: an anyio lock belongs to the loop that made it.
        self._locks: RunVar[anyio.Lock] = RunVar(f"aioiptables-controller-{id(self):x}")
        self._errors_in: MemoryObjectSendStream[Exception]
        self.errors: MemoryObjectReceiveStream[Exception]
        self._errors_in, self.errors = anyio.create_memory_object_stream[Exception](_ERROR_BUFFER)
        self.last_stats: dict[str, float] = {}
        self.last_plans: list[TablePlan] = []
        self.state: dict[ChainKey, ChainListing] = {}
        self.listeners: list[Callable[[Controller, float, Exception | None], None]] = []

    def __repr__(self) -> str:
        # Said as it would be made, from what tells two controllers apart:
        # their clients (which name their namespace) and the options that
        # change what they write. Cheap: no process, no lock.
        parts = [f"{_ARG[proto]}={client!r}" for proto, client in self._clients.items()]
        parts.append(f"resync={self.resync!r}")
        parts += [
            f"{name}={value!r}"
            for name, value in (("owner", self.owner), ("canary", self.canary))
            if value is not None
        ]
        return f"Controller({', '.join(parts)})"

    @property
    def _lock(self) -> anyio.Lock:
        lock = self._locks.get(None)
        if lock is None:
            lock = anyio.Lock()
            self._locks.set(lock)
        return lock

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

    def _check(self, ruleset: RuleSet) -> RuleSet:
        """Everything :meth:`set` refuses, before any process and before any
        state changes: the rule set as it will be written."""
        if not isinstance(ruleset, RuleSet):
            raise TypeError(f"expected a RuleSet, not {ruleset!r}")
        for item in ruleset:
            if item.proto not in self._clients:
                raise InvalidRuleError("item", str(item), f"this controller has no {item.proto.value} client")
            if self.canary is not None and self.canary == (
                item.name if isinstance(item, Chain) else item.chain
            ):
                raise InvalidRuleError("item", str(item), f"uses the canary chain {self.canary!r}")
        desired = decorate(ruleset, owner=self.owner, canary=self.canary)
        seen: dict[tuple[Protocol, str, str, RuleKey], Rule] = {}
        for item in desired:
            if isinstance(item, Rule):
                check_restore_rule(item.chain, item.spec)
                where = (item.proto, item.table, item.chain, default_key(item))
                if where in seen:
                    raise InvalidRuleError(
                        "rule",
                        str(item),
                        f"is the same rule as {seen[where]} (iptables would hold one of them)",
                    )
                seen[where] = item
        return desired

    async def preview(self, ruleset: RuleSet) -> list[TablePlan]:
        """What :meth:`set` would write now, without writing anything: the
        tables are read exactly as a reconcile reads them, and one plan comes
        back per table that would change (``plan.payload`` is the restore
        input), leftovers of an earlier run of the same ``owner`` included.
        """
        desired = self._check(ruleset)
        async with self._lock:
            kept = set(desired)
            cache = RuleCache(*self._clients.values())
            found = [] if self._adopted else await self._leftovers(cache, desired)
            retired = [
                item
                for item in self._retirement(chains_in_use(desired), [*self._desired(), *found])
                if item not in kept
            ]
            observed = await self._read(cache, chains_to_read(desired, retired))
            ours = self._ownership(observed, learn=False)
            return self._plan(self._writable(desired), observed, retired, ours)

    async def set(self, ruleset: RuleSet) -> None:
        """Replace the rule set: add what is new, delete what is no longer
        wanted, and keep the rest. Idempotent: setting the same rules again
        writes nothing.

        Checks every item before any process runs; a rule set it refuses
        (:class:`InvalidRuleError`, :class:`TypeError`) leaves the previous
        one in force. Rules iptables refuses are reported together by
        :class:`RulesRefusedError` once every other rule is written.
        """
        desired = self._check(ruleset)
        async with self._lock:
            kept = set(desired)
            in_use = chains_in_use(desired)
            for item in self._desired():
                if item not in kept:
                    self._retired[item] = None
                    if isinstance(item, Chain) and (item.proto, item.table, item.name) in in_use:
                        self.logger.info(
                            "chain %s %s %s left the rule set, but rules of the set live in it or "
                            "jump to it: it stays until none does",
                            item.proto.value, item.table, item.name,
                            extra={"table": item.table, "chain": item.name},
                        )  # fmt: skip
            for item in kept:
                self._retired.pop(item, None)
            self._ruleset = ruleset
            await self._reconcile()

    async def reconcile(self) -> None:
        """Check every rule (one read per table, or per chain) and repair what
        is missing or out of order, one atomic write per table that needs one.

        Raises :class:`RulesRefusedError` when iptables refused some rules
        (every other rule is written)."""
        async with self._lock:
            await self._reconcile()

    def _tell(self, seconds: float, error: Exception | None) -> None:
        for listener in list(self.listeners):
            try:
                listener(self, seconds, error)
            except Exception:  # a broken listener must not break the loop
                self.logger.exception("reconcile listener failed")

    async def cleanup(self) -> None:
        """Delete every rule and chain this controller wrote, and forget them.

        Rules and chains it did not write stay (see the class docs for what
        counts as written, with and without ``owner``)."""
        async with self._lock:
            for item in self._desired():
                self._retired[item] = None
            self._ruleset = RuleSet()
            await self._reconcile()

    def _desired(self) -> RuleSet:
        """The rule set as written: with owner tags and canaries if asked for
        (worked out once per rule set, so that an unchanged rule set is the
        same object from one reconcile to the next)."""
        made = self._decorated
        if made is None or made[0] is not self._ruleset or made[1:3] != (self.owner, self.canary):
            desired = decorate(self._ruleset, owner=self.owner, canary=self.canary)
            made = self._decorated = (self._ruleset, self.owner, self.canary, desired)
        return made[3]

    async def run(self) -> None:
        """Reconcile now and every ``resync`` seconds, until cancelled; with a
        canary, also as soon as a canary is found gone or emptied; with
        events (on by default on iptables-nft), as soon as another process
        changes a table of the rule set, and otherwise only every
        ``safety_resync`` seconds.

        A failing reconcile is logged and sent on :attr:`errors` (dropped if
        nobody reads and the buffer is full); the loop goes on.
        """
        for client in self.clients:
            # Events need nft: an "auto" client behind a wrapper script learns
            # its backend first (one --version, none when already known); a
            # failure here is the first reconcile's to report.
            with contextlib.suppress(IPTablesError):
                await client.detect_backend()
        watcher = self._open_watcher()
        async with anyio.create_task_group() as tg:
            if watcher is not None:
                tg.start_soon(self._follow_events, watcher)
            elif self.canary is not None:
                tg.start_soon(self._watch_canaries)
            try:
                while True:
                    self._wake = anyio.Event()
                    failed = False
                    try:
                        await self.reconcile()
                    except Exception as exc:
                        failed = True
                        self.logger.warning("reconcile failed: %s", exc, extra={"error": exc})
                        try:
                            self._errors_in.send_nowait(exc)
                        except anyio.WouldBlock:
                            self.logger.debug("errors stream full; dropped %r", exc)
                    # A failed reconcile (a rule refused until its ipset exists...) is
                    # tried again every resync: what it waits for may announce nothing.
                    quiet = self.following_events and not failed
                    period = self.safety_resync if quiet else self.resync
                    with anyio.move_on_after(period):
                        await self._wake.wait()
            finally:
                self.following_events = False
                if watcher is not None:
                    watcher.close()

    def _open_watcher(self) -> Watcher | None:
        """Subscribe to nf_tables' announcements before the first read, so
        that no change between that read and the subscription goes unseen;
        None where events are off or cannot work."""
        if self.events is False:
            return None
        clients = list(self._clients.values())
        runners = [c.runner for c in clients]
        usable = all(c.backend == "nft" for c in clients) and all(
            isinstance(r, ProcessRunner) for r in runners
        )
        if not usable:
            if self.events:
                self.logger.warning("events asked for, but they need iptables-nft: polling instead")
            return None
        namespaces = {r.netns for r in runners if isinstance(r, ProcessRunner)}
        if len(namespaces) != 1:
            # One subscription hears one namespace: with clients in two,
            # changes in the other would go unheard.
            if self.events:
                self.logger.warning("events asked for, but the clients are in different namespaces: polling")
            return None
        watcher = Watcher(namespaces.pop())
        try:
            watcher.open()
        except OSError as exc:
            self.logger.warning("cannot follow nf_tables events (%s): polling instead", exc)
            return None
        self.following_events = True
        return watcher

    async def _follow_events(self, watcher: Watcher) -> None:
        """Wake the run loop when a process other than ours changes a table
        of the rule set, and say who it was; when announcements were lost,
        wake it anyway (a full reconcile answers any doubt)."""
        while True:
            try:
                async for generation in watcher:
                    self._on_generation(generation)
            except EventsLostError as exc:
                self.logger.warning("%s: reconciling now", exc)
                if self._wake is not None:
                    self._wake.set()
            except OSError as exc:
                self.logger.warning("lost the nf_tables subscription (%s): polling instead", exc)
                self.following_events = False
                if self._wake is not None:
                    self._wake.set()
                if self.canary is not None:
                    await self._watch_canaries()
                return

    def _on_generation(self, generation: Generation) -> None:
        ours = {
            pid
            for client in self._clients.values()
            if isinstance(client.runner, ProcessRunner)
            for pid in client.runner.recent_pids()
        }
        if generation.pid in ours:
            return  # our own write
        managed = {(item.proto, item.table) for item in self._desired()}
        touched = sorted(
            {
                f"{proto.value} {table}"
                for proto, table in generation.tables
                if proto and (proto, table) in managed
            }
        )
        if not touched:
            return
        self.last_change = generation
        self.logger.info(
            "%s (pid %d) changed %s: reconciling",
            generation.process or "a process", generation.pid, ", ".join(touched),
            extra={"pid": generation.pid, "changed_by": generation.process, "tables": touched},
        )  # fmt: skip
        if self._wake is not None:
            self._wake.set()

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
        cache = self._cache
        cache.invalidate()
        if not self._adopted:
            await self._adopt_leftovers(cache, desired)
        in_use, to_read = self._chains_of(desired)
        retired = self._retirement(in_use)
        observed = await self._read(cache, to_read | chains_to_read(RuleSet(), retired))
        before = self._fingerprint(desired, observed)
        if before == self._settled:
            # The very inputs of a reconcile that found nothing to do and
            # changed nothing: this one would do the same.
            self.state = dict(observed)
            self.last_plans = []
            self._tell_stats(started, calls_before, [])
            return
        # A chain read gone is no longer ours, whoever creates it next.
        self._own_chains -= {key for key, listing in observed.items() if not listing.exists}
        ours = self._ownership(observed, learn=True)
        self.state = dict(observed)
        self._expected = {key: Expected.of(observed[key], ours[key]) for key in observed}
        refused, stuck, plans = await self._write_all(desired, observed, retired, ours)
        self.last_plans = plans
        # A chain our rules left stays retired until it can go: while the rule
        # set still needs it, or something else still jumps to it.
        self._retired = {
            item: None
            for item in self._retired
            if (isinstance(item, Chain) and (item.proto, item.table, item.name) in in_use)
            or (self._is_marker(item) and (item.proto, item.table, item.chain) in in_use)
        }
        for chain in stuck:
            self._retired[chain] = None
        self._forget_unwanted(desired)
        self._adopted = True
        quiet = not (plans or refused or stuck)
        self._settled = before if quiet and self._fingerprint(desired, observed) == before else None
        self._tell_stats(started, calls_before, plans)
        self._report(refused)

    def _facts_of(self, desired: RuleSet) -> _Facts:
        """What a reconcile needs to know of the rule set itself (worked out
        once per rule set: a steady-state reconcile has no time for a pass
        over every rule)."""
        facts = self._facts
        if facts is None or facts.desired is not desired:
            rules = (item for item in desired if isinstance(item, Rule))
            facts = self._facts = _Facts(
                desired,
                frozenset(chains_in_use(desired)),
                frozenset(chains_to_read(desired)),
                tuple((rule, need) for rule in rules if (need := release_needed(rule)) is not None),
            )
        return facts

    def _chains_of(self, desired: RuleSet) -> tuple[frozenset[ChainKey], frozenset[ChainKey]]:
        """The chains the rule set uses and the chains it reads."""
        facts = self._facts_of(desired)
        return facts.in_use, facts.to_read

    def _fingerprint(self, desired: RuleSet, observed: dict[ChainKey, ChainListing]) -> tuple[object, ...]:
        """Every input of a reconcile once its chains are read: a reconcile
        is a function of these alone. One that wrote nothing and left them as
        it found them is a fixed point, so the next reconcile that finds them
        again may stop at its read. (Values only: listings and what was
        learned are immutable, the dicts holding them are copied.)"""
        return (
            desired,
            self.owner,
            self._adopted,
            tuple(self._retired),
            frozenset(self._own_chains),
            dict(observed),
            dict(self._expected),
            dict(self._learned),
            dict(self._unrecognized),
        )

    def _tell_stats(self, started: float, calls_before: int, plans: list[TablePlan]) -> None:
        self.last_stats = {
            "processes": self.calls - calls_before,
            "writes": len(plans),
            "changes": sum(len(p.ops) for p in plans),
            "seconds": time.monotonic() - started,
        }
        self.logger.debug("reconciled", extra=dict(self.last_stats))

    def _retirement(self, in_use: Collection[ChainKey], more: Iterable[Item] = ()) -> list[Item]:
        """What to remove now: what is retired, except the marker of a
        retired chain the rule set still needs (``in_use``: the chain stays,
        and stays marked as ours until it can go)."""
        return [
            item
            for item in dict.fromkeys([*self._retired, *more])
            if not (self._is_marker(item) and (item.proto, item.table, item.chain) in in_use)
        ]

    def _is_marker(self, item: Item) -> TypeGuard[Rule]:
        """Whether ``item`` is the rule marking one of our chains."""
        return self.owner is not None and isinstance(item, Rule) and item.spec == marker_spec(self.owner)

    def _ownership(
        self, observed: dict[ChainKey, ChainListing], *, learn: bool
    ) -> dict[ChainKey, tuple[bool, ...]]:
        """Which lines of each chain read are ours; with ``learn``, also learn
        how iptables printed what the last write wrote (see :func:`align`).

        With ``owner``, a line is ours when it carries the owner's tag;
        without, when it is a line this controller wrote and has followed
        since (through every read, by :func:`align`)."""
        ours: dict[ChainKey, tuple[bool, ...]] = {}
        for key, listing in observed.items():
            expected = self._expected.get(key)
            if expected is None:
                found = Alignment((False,) * len(listing.specs), {})
            else:
                found = align(expected, listing.keys, key[0], self.owner)
            if learn:
                self._learn(key, found)
            ours[key] = tagged(listing.keys, self.owner) if self.owner is not None else found.ours
        return ours

    def _learn(self, chain: ChainKey, found: Alignment) -> None:
        for own, printed in found.learned.items():
            self._learned[(*chain, own)] = printed
            self._unrecognized.pop((*chain, own), None)
            if printed != own:
                self.logger.debug(
                    "learned how iptables prints a rule of %s", chain[2], extra={"chain": chain[2]}
                )
        for own in found.confirmed:
            self._unrecognized.pop((*chain, own), None)
        for own in found.unrecognized:
            count = self._unrecognized.get((*chain, own), 0) + 1
            self._unrecognized[(*chain, own)] = count

    def _plan(
        self,
        desired: RuleSet,
        observed: dict[ChainKey, ChainListing],
        retired: list[Item],
        ours: dict[ChainKey, tuple[bool, ...]],
        stuck: Iterable[ChainKey] = (),
    ) -> list[TablePlan]:
        own_chains = set(self._own_chains)
        if self.owner is not None:
            marker = (chain_tag(self.owner),)
            own_chains |= {
                key for key, listing in observed.items() if any(marker[0] in spec for spec in listing.specs)
            }
        own_chains -= set(stuck)
        if self.owner is not None:
            desired = _unmark_foreign(desired, observed, own_chains, marker_spec(self.owner))
        facts = self._facts
        in_use = facts.in_use if facts is not None and facts.desired is desired else None
        return plan(
            desired, observed, retired, key=self._key, ours=ours, own_chains=own_chains, in_use=in_use
        )

    def _writable(self, desired: RuleSet, refused: Iterable[Rule] = ()) -> RuleSet:
        """The rule set without the rules that must not be written now:
        those iptables refused in this reconcile, and those it printed beyond
        recognition twice (writing them again would only add copies)."""
        left_out = {*refused, *self._diverging(desired)}
        if not left_out:
            return desired
        return RuleSet(
            append=[i for i in desired.append if i not in left_out],
            prepend=[r for r in desired.prepend if r not in left_out],
        )

    async def _beyond_release(self, desired: RuleSet) -> dict[Rule, str]:
        """The rules the iptables of their client would write otherwise than
        asked (see :func:`~aioiptables.plan.release_needed`): refused here,
        before any write, as iptables refuses a rule. Asks a client its
        version only when the rule set holds such a rule (free once a save
        has named it)."""
        refused: dict[Rule, str] = {}
        for rule, (release, what) in self._facts_of(desired).needs:
            version = await self._clients[rule.proto].version()
            if version < release:
                release_text = ".".join(map(str, release))
                running = ".".join(map(str, version.release))
                refused[rule] = (
                    f"iptables {running} ({version.backend}) {what}: this rule needs iptables {release_text} or later"
                )
        return refused

    def _where(self, rule: Rule) -> tuple[Protocol, str, str, RuleKey]:
        return (rule.proto, rule.table, rule.chain, default_key(rule))

    async def _write_all(
        self,
        desired: RuleSet,
        observed: dict[ChainKey, ChainListing],
        retired: list[Item],
        ours: dict[ChainKey, tuple[bool, ...]],
    ) -> tuple[dict[Rule, str], list[Chain], list[TablePlan]]:
        """Plan and write every table; when iptables refuses a line, leave
        out what it belongs to and write the rest of that table again.

        Returns the rules refused (with iptables' message), the chains that
        could not be deleted, and the plans written."""
        refused = await self._beyond_release(desired)
        stuck: dict[ChainKey, str] = {}
        done: dict[tuple[Protocol, str], TablePlan] = {}
        while True:
            plans = [
                p
                for p in self._plan(self._writable(desired, refused), observed, retired, ours, stuck)
                if (p.proto, p.table) not in done
            ]
            looping = {
                op.rule: _LOOP for p in plans for op in loop_closers(p, observed) if op.rule is not None
            }
            if looping:
                refused.update(looping)
                continue  # plan again without them
            for table_plan in plans:
                check_restore_payload(table_plan.payload)  # every table, before writing any
            for table_plan in plans:
                try:
                    await self._write(table_plan)
                except IPTablesError as exc:
                    if not (
                        self._blame(table_plan, exc, refused, stuck, ours)
                        or await self._blame_loops(table_plan, exc, refused)
                        or await self._blame_unexplained(table_plan, exc, refused, ours)
                    ):
                        raise
                    break  # plan the tables left again, without what was refused
                done[(table_plan.proto, table_plan.table)] = table_plan
            else:
                break
        for key, reason in stuck.items():
            self.logger.info(
                "chain %s %s %s is still referenced: our rules left it, it stays until nothing jumps to it (%s)",
                key[0].value, key[1], key[2], reason,
                extra={"table": key[1], "chain": key[2]},
            )  # fmt: skip
        return refused, [Chain(t, c, p) for p, t, c in stuck], list(done.values())

    def _blame(
        self,
        table_plan: TablePlan,
        error: IPTablesError,
        refused: dict[Rule, str],
        stuck: dict[ChainKey, str],
        ours: dict[ChainKey, tuple[bool, ...]],
    ) -> bool:
        """Find what a failed restore refused; False when it is not one of
        our rules, deletes or chain deletions (then the whole error is raised)."""
        message = _iptables_message(error.stderr)
        op = table_plan.op_at(error.line or 0)
        busy = _BUSY_CHAIN.search(error.stderr)
        if op is None and busy is not None:
            # iptables-nft-restore 1.8.7 names the COMMIT line, not the -X line;
            # the kernel's message names the chain.
            op = next((o for o in table_plan.ops if o.kind == "remove" and o.chain == busy[1]), None)
        if op is not None and op.rule is not None:
            refused[op.rule] = message
            return True
        if op is not None and op.kind == "delete" and op.key is not None:
            # No such rule: what we took for ours is not (someone deleted it
            # since our read, or put another in its place). Believe iptables.
            self._disown((table_plan.proto, table_plan.table, op.chain), op.key, ours)
            return True
        if op is not None and op.kind == "remove":
            key = (table_plan.proto, table_plan.table, op.chain)
            if key not in stuck:
                stuck[key] = message
                return True
            return False
        missing = _MISSING_CHAIN.search(error.stderr)
        if missing is not None:
            # iptables-nft names a missing jump target at COMMIT, not at its line.
            culprits = [
                o.rule
                for o in table_plan.ops
                if o.rule is not None and jump_target(rule_key(o.spec, table_plan.proto)) == missing[1]
            ]
            for rule in culprits:
                refused[rule] = message
            return bool(culprits)
        return False

    async def _blame_loops(
        self, table_plan: TablePlan, error: IPTablesError, refused: dict[Rule, str]
    ) -> bool:
        """iptables-legacy refuses a loop of jumps at COMMIT, naming no rule,
        and the loop may pass through chains the reconcile did not read: read
        the whole table (one process, on this failure only) and find the
        rules that close it."""
        proto, table = table_plan.proto, table_plan.table
        if _failed_line(error.stderr) != len(table_plan.ops) + 2:  # not the COMMIT line
            return False
        if not any(op.rule is not None and jump_target(rule_key(op.spec, proto)) for op in table_plan.ops):
            return False  # no jump added: no loop to look for
        snapshot = parse_save(await self._clients[proto].save(table), proto)[table]
        whole = {(proto, table, name): snapshot.chain(name) for name in snapshot.names}
        closers = [op.rule for op in loop_closers(table_plan, whole) if op.rule is not None]
        for rule in closers:
            refused[rule] = _LOOP
        return bool(closers)

    async def _blame_unexplained(
        self,
        table_plan: TablePlan,
        error: IPTablesError,
        refused: dict[Rule, str],
        ours: dict[ChainKey, tuple[bool, ...]],
    ) -> bool:
        """iptables-nft-restore 1.8.7 refuses a table at its COMMIT line,
        naming neither the line nor why (``line 4 failed``): read the whole
        table (one process, on this failure only) and find the changes that
        cannot apply to it, which 1.8.9 would have named; a delete is
        checked with ``-C`` (one process each)."""
        if not error.is_unexplained_refusal:
            return False
        proto, table = table_plan.proto, table_plan.table
        client = self._clients[proto]
        # Only iptables-nft-restore before 1.8.9 keeps a refusal's reason to
        # itself; elsewhere a bare "line N failed" at COMMIT (the kernel
        # refusing the whole batch) has no one change to blame. The version
        # costs no process once a save has named it (the read before this
        # write, as a rule), else one, once per client.
        if client.backend == "legacy" or await client.version() >= (1, 8, 9):
            return False
        snapshot = parse_save(await client.save(table), proto)[table]
        sizes = {name: len(snapshot.chain(name).specs) for name in snapshot.names}
        said = f"(iptables said only {error.stderr!r}; found by reading the table again)"
        found = False
        for op in table_plan.ops:
            size = sizes.get(op.chain)
            if op.kind in ("create", "flush"):
                sizes[op.chain] = 0 if op.kind == "flush" or size is None else size
            elif op.kind == "remove":
                sizes.pop(op.chain, None)
            elif op.kind in ("append", "insert") and op.rule is not None:
                if size is None:
                    refused[op.rule] = f"No chain/target/match by that name. {said}"
                    found = True
                elif op.kind == "insert" and op.position > size + 1:
                    refused[op.rule] = f"Index of insertion too big. {said}"
                    found = True
                else:
                    sizes[op.chain] = size + 1
            elif op.kind == "delete" and op.key is not None:
                # A delete by spec finds what iptables' own comparison finds,
                # which -C shares (one process each, on this failure only).
                if size is None or (
                    op.position > size if op.position else not await client.exists(table, op.chain, *op.spec)
                ):
                    self._disown((proto, table, op.chain), op.key, ours)
                    found = True
                else:
                    sizes[op.chain] = size - 1
        return found

    def _disown(self, chain: ChainKey, key: RuleKey, ours: dict[ChainKey, tuple[bool, ...]]) -> None:
        """Stop taking the lines with ``key`` in ``chain`` for ours, and forget
        that any rule of ours prints as ``key``."""
        listing = self.state[chain]
        ours[chain] = tuple(
            mine and found != key for mine, found in zip(ours[chain], listing.keys, strict=True)
        )
        for learned in [k for k, printed in self._learned.items() if k[:3] == chain and printed == key]:
            del self._learned[learned]
        self.logger.info("a rule of ours in %s was not there to delete; replanning", chain[2])

    def _report(self, refused: dict[Rule, str]) -> None:
        """Raise :class:`RulesRefusedError` for the rules left out of this
        reconcile, named as the user gave them."""
        diverging: dict[Rule, str] = dict.fromkeys(
            self._diverging(self._desired()),
            f"iptables printed it in a form that could not be recognized {_MAX_UNRECOGNIZED} times; "
            "not written again (report this rule to aioiptables)",
        )
        found = {**refused, **diverging}
        if found:
            raise RulesRefusedError([RefusedRule(self._as_given(r), m) for r, m in found.items()])

    def _diverging(self, desired: RuleSet) -> tuple[Rule, ...]:
        """The rules iptables printed beyond recognition too often to write again."""
        if not any(count >= _MAX_UNRECOGNIZED for count in self._unrecognized.values()):
            return ()  # the common case: no pass over every rule
        return tuple(
            r
            for r in desired
            if isinstance(r, Rule) and self._unrecognized.get(self._where(r), 0) >= _MAX_UNRECOGNIZED
        )

    def _as_given(self, rule: Rule) -> Rule:
        """A written rule as the user gave it: without our owner tag."""
        if self.owner is None:
            return rule
        tag = ("-m", "comment", "--comment", owner_tag(self.owner))
        if rule.spec[-4:] == tag:
            return Rule(rule.table, rule.chain, rule.spec[:-4], rule.proto)
        return rule

    async def _adopt_leftovers(self, cache: RuleCache, desired: RuleSet) -> None:
        """Retire what an earlier run of the same owner left behind (first
        reconcile only, with ``owner``)."""
        for item in await self._leftovers(cache, desired):
            self._retired.setdefault(item, None)

    async def _leftovers(self, cache: RuleCache, desired: RuleSet) -> list[Rule | Chain]:
        """Read every table once and find what an earlier run of the same
        owner left behind and ``desired`` lacks."""
        assert self.owner is not None
        snapshots = []
        for proto in self._clients:
            for table in _SCANNED_TABLES:
                try:
                    snapshots.append(await self._snapshot(cache, proto, table))
                except IPTablesError as exc:
                    self.logger.debug("cannot read %s %s for leftovers: %s", proto.value, table, exc)
        return leftovers(snapshots, desired, self.owner)

    async def _read(self, cache: RuleCache, keys: Iterable[ChainKey]) -> dict[ChainKey, ChainListing]:
        """Every chain the plan needs, as few processes as the policy allows:
        one iptables-save for a table where several chains are read, one
        ``-S CHAIN`` where only one is; all at once."""
        by_table: dict[tuple[Protocol, str], list[ChainKey]] = {}
        for key in sorted(keys, key=lambda k: (k[0].value, k[1], k[2])):
            by_table.setdefault((key[0], key[1]), []).append(key)
        observed: dict[ChainKey, ChainListing] = {}

        async def read(table: tuple[Protocol, str], chains: list[ChainKey], whole: bool) -> None:
            if whole:
                await self._snapshot(cache, *table)
            for key in chains:
                observed[key] = await cache.listing(*key)

        reads: list[Callable[[], Awaitable[None]]] = []
        for table, chains in by_table.items():
            if self._reads_whole(table, chains):
                reads.append(functools.partial(read, table, chains, True))
            else:  # one listing each, concurrently
                reads += [functools.partial(read, table, [key], False) for key in chains]
        await run_all(reads)
        return observed

    def _reads_whole(self, table: tuple[Protocol, str], chains: list[ChainKey]) -> bool:
        """Whether to read these chains of ``table`` with one save (else one
        listing each): by ``snapshot_from`` if set, else by what each read
        would cost, from the sizes read last time."""
        if self.snapshot_from is not None:
            return bool(self.snapshot_from) and len(chains) >= self.snapshot_from
        needed = {key[2]: len(self.state[key].specs) if key in self.state else 0 for key in chains}
        return cheapest_read(self._clients[table[0]].backend, needed, self._sizes.get(table)) == "save"

    async def _snapshot(self, cache: RuleCache, proto: Protocol, table: str) -> TableSnapshot:
        """The whole table, from one save; its size is noted for the next read."""
        snapshot = await cache.snapshot(proto, table)
        self._sizes[(proto, table)] = TableSize(snapshot.rule_count, len(snapshot.names))
        return snapshot

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
        proto, table = table_plan.proto, table_plan.table
        # Our own writes need no listing to be known: the plan says what they made.
        for chain, listing in table_plan.after.items():
            self.state[(proto, table, chain)] = listing
            self._expected[(proto, table, chain)] = table_plan.expected[chain]
        for op in table_plan.ops:
            if op.kind == "create":
                self._own_chains.add((proto, table, op.chain))
            elif op.kind == "remove":
                self._own_chains.discard((proto, table, op.chain))

    def _key(self, rule: Rule) -> RuleKey:
        own = default_key(rule)
        if not self._learned:
            return own
        return self._learned.get((rule.proto, rule.table, rule.chain, own), own)

    def _forget_unwanted(self, desired: RuleSet) -> None:
        """Forget what was learned of rules neither wanted nor still to
        delete (compared as they are written, owner tags included): a rule
        retired is found by its printed form until it is gone."""
        if not (self._learned or self._unrecognized):
            return  # nothing learned to forget: no pass over every rule
        wanted = {self._where(r) for r in [*desired, *self._retired] if isinstance(r, Rule)}
        for memory in (self._learned, self._unrecognized):
            for stale in [k for k in memory if k not in wanted]:
                del memory[stale]


_LOOP = "closes a loop of jumps reachable from a built-in chain (iptables refuses it: Too many links)"
# How many times a rule may come back from iptables in a form nobody can
# pair with it before it is no longer written: each time left one copy.
_MAX_UNRECOGNIZED = 2
# Where iptables-restore says which line it refused: "Error occurred at
# line: 3" (parse errors), "line 3 failed" (legacy commit), "line 3: CHAIN_DEL
# failed" (nft commit).
_FAILED_LINE = re.compile(r"(?:Error occurred at line: |\bline )(\d+)")
_MISSING_CHAIN = re.compile(r"Chain '([^']+)' does not exist")
# The kernel refusing to delete a chain still jumped to: "CHAIN_DEL failed" on
# 1.8.9 and later, "CHAIN_USER_DEL failed" on 1.8.7 (which names the COMMIT line).
_BUSY_CHAIN = re.compile(r"CHAIN_(?:USER_)?DEL failed \(Device or resource busy\): chain (\S+)")
# "iptables-restore v1.8.9 (legacy): " and the like, before iptables' message.
_PROGRAM_PREFIX = re.compile(r"^\S*tables\S* v[\d.]+ \([^)]*\):\s*")


def _unmark_foreign(
    desired: RuleSet,
    observed: dict[ChainKey, ChainListing],
    own_chains: set[ChainKey],
    marker: tuple[str, ...],
) -> RuleSet:
    """``desired`` without the marker of a chain that was there before us
    and is not ours: marking it would hand it to us, and a later cleanup
    would delete it with its owner's rules. Our rules in it stay tagged."""

    def foreign(rule: Rule) -> bool:
        key = (rule.proto, rule.table, rule.chain)
        return rule.spec == marker and observed[key].exists and key not in own_chains

    if not any(foreign(r) for r in desired.prepend):
        return desired
    return RuleSet(append=desired.append, prepend=[r for r in desired.prepend if not foreign(r)])


def _failed_line(stderr: str) -> int | None:
    found = _FAILED_LINE.search(stderr)
    return int(found[1]) if found else None


def _iptables_message(stderr: str) -> str:
    """iptables' own words about what it refused, without the program name,
    the line number or the usage hint."""
    words = []
    for line in stderr.split("\n"):
        line = _PROGRAM_PREFIX.sub("", line.strip())
        if not line or line.startswith(("Error occurred at line", "Try `")):
            continue
        words.append(line)
    return " ".join(words) or stderr.strip()
