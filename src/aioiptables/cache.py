"""A lazy cache of what iptables holds, with in-flight dedup.

Rather than one ``iptables -C`` process per rule, the cache lists a chain once
(``iptables -S CHAIN``) and a table's chains once (``iptables -S``), and
answers every later question from those listings.

Concurrent callers that need the same listing share one in-flight
:class:`anyio.Future`: one process however many callers. A failed listing
reaches every waiter and is not cached. If the caller that started a listing
is cancelled, its process is killed and one of the waiters starts the listing
again, so nobody hangs and nothing stale is stored.

A cache kept across :meth:`RuleCache.invalidate` remembers what each read
printed: when a re-read prints the same text again (the common case, nothing
changed), what was made of it is reused, and no line is parsed twice.
"""

from __future__ import annotations

import builtins
import functools
import re
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, TypeVar
from typing import Protocol as TypingProtocol

import anyio

from .errors import IPTablesError
from .model import Chain, Protocol, Rule
from .parse import ChainListing, TableSnapshot, parse_save, read_listing, rule_records

__all__ = ["RuleCache", "ListingClient"]

T = TypeVar("T")
K = TypeVar("K")


class ListingClient(TypingProtocol):
    """What the cache needs of a client (a :class:`~aioiptables.Client` or
    :class:`~aioiptables.FakeClient`)."""

    proto: Protocol

    async def list(self, table: str, chain: str) -> builtins.list[str]:
        """The ``-S`` lines of one chain."""
        ...

    async def list_chains(self, table: str) -> builtins.list[str]:
        """The names of a table's chains."""
        ...

    async def save(self, table: str) -> str:
        """The iptables-save text of one table."""
        ...


class RuleCache:
    """Answers "does this rule or chain exist?" from as few listings as possible.

    Example::

        cache = RuleCache(v4_client, v6_client)
        await cache.exists(Rule.ipv4("filter", "INPUT", "-j", "ACCEPT"))  # one listing of INPUT

    - A rule query lists its chain once (one process per chain); a chain that
      does not exist reads as an empty chain.
    - A chain query lists its table's chains once (one process per table),
      unless a listing of that chain has already shown it exists.
    - Listing a chain says nothing about the table's other chains: a later
      chain query on that table still lists the table.
    - After :meth:`invalidate`, questions list again (one process each), but
      a listing or snapshot that prints what it printed before is not parsed
      again: the result made of that text is reused.
    """

    def __init__(self, *clients: ListingClient) -> None:
        self._clients: dict[Protocol, ListingClient] = {}
        for client in clients:
            if client.proto in self._clients:
                raise ValueError(f"two clients for {client.proto}")
            self._clients[client.proto] = client
        self._tables: dict[tuple[Protocol, str], frozenset[str]] = {}
        self._chains: dict[tuple[Protocol, str, str], ChainListing] = {}
        self._snapshots: dict[tuple[Protocol, str], TableSnapshot] = {}
        # ("chain", proto, table, chain) or ("table", proto, table, None)
        self._inflight: dict[tuple[Any, ...], anyio.Future[Any]] = {}
        # What the last read of each chain and table printed, and what was
        # made of it: kept through invalidate(), since it is keyed by the text.
        self._printed_chains: dict[tuple[Protocol, str, str], tuple[list[str], ChainListing]] = {}
        self._printed_tables: dict[tuple[Protocol, str], tuple[str, TableSnapshot]] = {}

    def client(self, proto: Protocol) -> ListingClient:
        """The client this cache uses for ``proto``."""
        try:
            return self._clients[proto]
        except KeyError:
            raise ValueError(f"this cache has no client for {proto}") from None

    async def exists(self, item: Rule | Chain) -> bool:
        """Whether the rule (by its spec) or the chain exists."""
        if isinstance(item, Chain):
            known = self._chains.get((item.proto, item.table, item.name))
            if known is not None and known.exists:
                return True
            return item.name in await self.table_chains(item.proto, item.table)
        if isinstance(item, Rule):
            listing = await self.listing(item.proto, item.table, item.chain)
            return listing.has(item.spec)
        raise TypeError(f"expected a Rule or a Chain, not {item!r}")

    async def exists_all(self, items: Iterable[Rule | Chain]) -> builtins.list[bool]:
        """Whether each rule or chain exists, in order: every listing they
        need is taken at once (one process per chain or table, as many
        concurrent :meth:`exists` calls would cost), without a task per
        question.

        Example::

            present = await cache.exists_all(rules)  # one listing per chain
            missing = [rule for rule, found in zip(rules, present) if not found]
        """
        asked = builtins.list(items)
        needs: dict[tuple[Any, ...], Callable[[], Awaitable[object]]] = {}
        for item in asked:
            if isinstance(item, Rule):
                needs[(item.proto, item.table, item.chain)] = functools.partial(
                    self.listing, item.proto, item.table, item.chain
                )
            elif isinstance(item, Chain):
                known = self._chains.get((item.proto, item.table, item.name))
                if known is None or not known.exists:
                    needs[(item.proto, item.table)] = functools.partial(
                        self.table_chains, item.proto, item.table
                    )
            else:
                raise TypeError(f"expected a Rule or a Chain, not {item!r}")
        await run_all(needs.values())
        return [await self.exists(item) for item in asked]  # answered from the cache

    async def listing(self, proto: Protocol, table: str, chain: str) -> ChainListing:
        """The rules of one chain, listed at most once (one process).

        Once the table has been snapshotted (or while a snapshot of it is in
        flight), the chain is read from the snapshot: no process.
        """
        key = (proto, table, chain)
        if key not in self._chains and (
            (proto, table) in self._snapshots or ("save", proto, table, None) in self._inflight
        ):
            snapshot = await self.snapshot(proto, table)
            listing = snapshot.chain(chain)
            if self._snapshots.get((proto, table)) is snapshot:
                # Only from the snapshot the cache holds: one that was in
                # flight when its table was invalidated is not stored, and
                # nothing taken from it may be.
                self._chains.setdefault(key, listing)
            return listing

        async def fetch() -> ChainListing:
            client = self.client(proto)
            try:
                lines = await client.list(table, chain)
            except IPTablesError as exc:
                if exc.is_not_exist:
                    return ChainListing(proto, table, chain, exists=False)
                raise
            seen = self._printed_chains.get(key)
            if seen is not None and seen[0] == lines:
                return seen[1]
            listing = read_listing(proto, table, chain, rule_records(lines, chain))
            self._printed_chains[key] = (lines, listing)
            return listing

        return await self._shared(("chain", *key), self._chains, key, fetch)

    async def table_chains(self, proto: Protocol, table: str) -> frozenset[str]:
        """The names of every chain in a table, listed at most once (one process)."""
        key = (proto, table)
        snapshot = self._snapshots.get(key)
        if snapshot is not None:
            return frozenset(snapshot.names)

        async def fetch() -> frozenset[str]:
            return frozenset(await self.client(proto).list_chains(table))

        return await self._shared(("table", *key, None), self._tables, key, fetch)

    async def snapshot(self, proto: Protocol, table: str) -> TableSnapshot:
        """The whole table from one ``iptables-save -t TABLE`` process: every
        chain and every rule, taken once however many callers ask."""
        key = (proto, table)

        async def fetch() -> TableSnapshot:
            text = await self.client(proto).save(table)
            printed = _comparable(text)
            seen = self._printed_tables.get(key)
            if seen is not None and seen[0] == printed:
                return seen[1]
            found = parse_save(text, proto).get(table)
            snapshot = found if found is not None else TableSnapshot(proto, table, {}, {})
            self._printed_tables[key] = (printed, snapshot)
            return snapshot

        return await self._shared(("save", *key, None), self._snapshots, key, fetch)

    def invalidate(
        self, table: str | None = None, chain: str | None = None, *, proto: Protocol | None = None
    ) -> None:
        """Forget what is known: everything, one table, or one chain of a table.

        Listings and snapshots in flight for what is forgotten still answer
        their waiters, but neither they nor any chain read from them is
        stored: the next question lists again.
        """

        def hit(p: Protocol, t: str, c: str | None) -> bool:
            # c is None for what concerns a whole table (its chain names).
            return (
                (proto is None or p is proto)
                and (table is None or t == table)
                and (chain is None or c is None or c == chain)
            )

        _drop(self._tables, lambda k: hit(k[0], k[1], None))
        _drop(self._snapshots, lambda k: hit(k[0], k[1], None))
        _drop(self._chains, lambda k: hit(*k))
        _drop(self._inflight, lambda k: hit(k[1], k[2], k[3]))

    async def _shared(
        self,
        flight_key: tuple[Any, ...],
        store: dict[Any, T],
        key: Hashable,
        fetch: Callable[[], Awaitable[T]],
    ) -> T:
        """Return ``store[key]``, fetching it once however many callers ask."""
        while True:
            if key in store:
                return store[key]
            future = self._inflight.get(flight_key)
            if future is None:
                return await self._lead(flight_key, store, key, fetch)
            await future.wait()
            if future.status is anyio.Future.Status.CANCELLED:
                continue  # its leader was cancelled: the next caller leads
            error = future.exception
            if error is not None:
                raise error
            result: T = future.return_value
            return result

    async def _lead(
        self,
        flight_key: tuple[Any, ...],
        store: dict[Any, T],
        key: Hashable,
        fetch: Callable[[], Awaitable[T]],
    ) -> T:
        future: anyio.Future[T] = anyio.Future()
        self._inflight[flight_key] = future
        try:
            value = await fetch()
        except Exception as exc:
            future.exception = exc
            raise
        except BaseException:
            # Cancelled: wake the waiters so one of them lists again.
            future.cancel()
            raise
        finally:
            current = self._inflight.get(flight_key) is future
            if current:
                del self._inflight[flight_key]
        if current:
            store[key] = value
        future.return_value = value
        return value


async def run_all(calls: Iterable[Callable[[], Awaitable[object]]]) -> None:
    """Await every call at once; the first error is raised as itself (not in
    an exception group, so callers can catch it) and cancels the others.
    (Not public: the controller reads its chains through it too.)"""
    failures: builtins.list[Exception] = []

    async def one(call: Callable[[], Awaitable[object]], scope: anyio.CancelScope) -> None:
        try:
            await call()
        except Exception as exc:
            failures.append(exc)
            scope.cancel()

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(one, call, tg.cancel_scope)
    if failures:
        raise failures[0]


def _comparable(save: str) -> str:
    """iptables-save text without what changes when the rules do not: its
    comments (a timestamp) and the built-in chains' policy counters.

    Only the head (up to the first rule) is rewritten: rules carry no
    counters without ``-c``, and a large table is all rules.
    """
    start = save.find("\n-A ")
    head, body = (save, "") if start < 0 else (save[:start], save[start:])
    head = _HEAD_NOISE.sub("", head)
    end = body.rfind("\nCOMMIT")
    return head + (body if end < 0 else body[:end])


# A comment line, or a policy's packet and byte counters (":INPUT ACCEPT [12:3456]").
_HEAD_NOISE = re.compile(r"^#[^\n]*\n?| \[\d+:\d+\]$", re.MULTILINE)


def _drop(mapping: dict[K, Any], doomed: Callable[[K], bool]) -> None:
    # In place: a listing in flight holds a reference to the dict it fills.
    for key in [k for k in mapping if doomed(k)]:
        del mapping[key]
