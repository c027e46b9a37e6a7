"""RuleCache: what each question costs, on the fake and on real iptables.

Every scenario runs three times: on FakeClient, on iptables-nft and on
iptables-legacy (each in a private namespace), under asyncio and under trio,
and must cost exactly the same number of processes everywhere.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

import anyio
import pytest

from aioiptables import Binaries, Chain, Client, IPTablesNotFoundError, Protocol, Rule, RuleCache
from conftest import World

pytestmark = pytest.mark.anyio

V4, V6 = Protocol.IPV4, Protocol.IPV6


def r(table: str, chain: str, *spec: str, proto: Protocol = V4) -> Rule:
    return Rule(table, chain, spec, proto)


def c(table: str, name: str, proto: Protocol = V4) -> Chain:
    return Chain(table, name, proto)


ACCEPT_10 = ("-s", "10.0.0.0/8", "-j", "ACCEPT")
DROP_11 = ("-s", "11.0.0.0/8", "-j", "DROP")

# What every scenario starts from: two user chains, one rule each in X and INPUT.
SEED_V4 = [
    ("-t", "filter", "-N", "X"),
    ("-t", "filter", "-A", "X", *ACCEPT_10),
    ("-t", "filter", "-A", "INPUT", *DROP_11),
    ("-t", "nat", "-N", "N"),
]


@dataclass(frozen=True)
class Case:
    id: str
    queries: list[tuple[Rule | Chain, bool]]
    processes: int
    invalidate_after: int | None = None  # invalidate the whole cache after this query
    seed_v6: list[tuple[str, ...]] = field(default_factory=list)


CASES = [
    Case(
        "two rules on one chain cost one listing",
        [(r("filter", "X", *ACCEPT_10), True), (r("filter", "X", *DROP_11), False)],
        1,
    ),
    Case("a repeated question costs nothing", [(r("filter", "X", *ACCEPT_10), True)] * 5, 1),
    Case(
        "rules in three chains cost three listings",
        [
            (r("filter", "X", *ACCEPT_10), True),
            (r("filter", "INPUT", *DROP_11), True),
            (r("nat", "N", "-j", "MASQUERADE"), False),
        ],
        3,
    ),
    Case(
        "chain questions on one table cost one listing",
        [(c("filter", "X"), True), (c("filter", "Y"), False), (c("filter", "INPUT"), True)],
        1,
    ),
    Case(
        "a chain question in another table costs one more",
        [(c("filter", "X"), True), (c("nat", "N"), True), (c("nat", "X"), False)],
        2,
    ),
    Case(
        "a chain shown by its rule listing needs no table listing",
        [(r("filter", "X", *DROP_11), False), (c("filter", "X"), True)],
        1,
    ),
    Case(
        "a missing chain reads as an empty, populated chain",
        [(r("filter", "MISSING", *ACCEPT_10), False), (r("filter", "MISSING", *DROP_11), False)],
        1,
    ),
    Case(
        "checking a rule does not make the table's chains known",
        [
            (r("filter", "MISSING", *ACCEPT_10), False),
            (c("filter", "MISSING"), False),
            (c("filter", "X"), True),
        ],
        2,
    ),
    Case(
        "an empty user chain exists", [(r("nat", "N", "-j", "MASQUERADE"), False), (c("nat", "N"), True)], 1
    ),
    Case(
        "ipv4 and ipv6 are listed apart",
        [
            (r("filter", "INPUT", *DROP_11), True),
            (r("filter", "INPUT", "-s", "fd00:11::/32", "-j", "DROP", proto=V6), False),
            (c("filter", "X", V6), False),
        ],
        3,
    ),
    Case(
        "invalidate forgets what was listed",
        [(r("filter", "X", *ACCEPT_10), True), (r("filter", "X", *ACCEPT_10), True)],
        2,
        invalidate_after=0,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_cache_costs(world: World, case: Case) -> None:
    for command in SEED_V4:
        await world.iptables(V4, *command)
    v4, v6 = world.client(V4), world.client(V6)
    cache = RuleCache(v4, v6)
    for index, (item, expected) in enumerate(case.queries):
        assert await cache.exists(item) is expected, f"query {index}: {item}"
        if case.invalidate_after == index:
            cache.invalidate()
    assert v4.calls + v6.calls == case.processes


@pytest.mark.parametrize(
    ("table", "chain", "kept_table", "kept_chain", "relisted"),
    [
        ("filter", None, "nat", "N", False),
        ("filter", "X", "filter", "INPUT", False),
        ("filter", "X", "filter", "X", True),
        (None, None, "nat", "N", True),
    ],
    ids=["a table", "one chain keeps its neighbours", "one chain", "everything"],
)
async def test_invalidate_forgets_only_what_it_names(
    world: World, table: str | None, chain: str | None, kept_table: str, kept_chain: str, relisted: bool
) -> None:
    for command in SEED_V4:
        await world.iptables(V4, *command)
    client = world.client(V4)
    cache = RuleCache(client)
    for key in [("filter", "X"), ("filter", "INPUT"), ("nat", "N")]:
        await cache.listing(V4, *key)
    cache.invalidate(table, chain)
    before = client.calls
    await cache.listing(V4, kept_table, kept_chain)
    assert client.calls - before == (1 if relisted else 0)


async def test_listing_keeps_rule_order_and_exists_flag(world: World) -> None:
    for command in SEED_V4:
        await world.iptables(V4, *command)
    await world.iptables(V4, "-t", "filter", "-A", "X", *DROP_11)
    cache = RuleCache(world.client(V4))
    listing = await cache.listing(V4, "filter", "X")
    assert listing.exists
    assert listing.specs == (ACCEPT_10, DROP_11)
    missing = await cache.listing(V4, "filter", "NOPE")
    assert not missing.exists
    assert missing.specs == ()


async def five_chains(world: World) -> list[str]:
    """Chains C0 to C4 in filter, each holding one rule (ACCEPT_10)."""
    chains = [f"C{i}" for i in range(5)]
    for chain in chains:
        await world.iptables(V4, "-N", chain)
        await world.iptables(V4, "-A", chain, *ACCEPT_10)
    return chains


async def test_200_concurrent_questions_over_5_chains_make_5_listings(world: World) -> None:
    chains = await five_chains(world)
    client = world.client(V4)
    cache = RuleCache(client)
    answers: list[bool] = []

    async def ask(i: int) -> None:
        spec = ACCEPT_10 if i % 2 == 0 else DROP_11
        answers.append(await cache.exists(r("filter", chains[i % 5], *spec)))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(ask, i)
    assert client.calls == 5
    assert answers.count(True) == 100
    assert answers.count(False) == 100


async def test_exists_all_answers_in_order_with_one_listing_per_chain_and_table(world: World) -> None:
    chains = await five_chains(world)
    client = world.client(V4)
    cache = RuleCache(client)
    asked: list[Rule | Chain] = [
        r("filter", chains[i % 5], *(ACCEPT_10 if i % 2 == 0 else DROP_11)) for i in range(200)
    ]
    asked += [c("filter", "C3"), c("filter", "MISSING"), r("filter", "MISSING", *ACCEPT_10)]
    with anyio.fail_after(30):
        answers = await cache.exists_all(asked)
    assert client.calls == 5 + 1 + 1, "five chains, one missing chain, the table's chain names"
    assert answers == [i % 2 == 0 for i in range(200)] + [True, False, False]
    assert answers == [await RuleCache(world.client(V4)).exists(item) for item in asked]


async def test_exists_all_raises_a_failed_listing_itself_not_a_group() -> None:
    missing = Binaries("/nonexistent/iptables", "/nonexistent/save", "/nonexistent/restore")
    cache = RuleCache(Client(binaries=missing))
    with pytest.raises(IPTablesNotFoundError):
        await cache.exists_all([r("filter", chain, *ACCEPT_10) for chain in ("INPUT", "X", "Y")])


def test_cache_needs_a_client_per_protocol() -> None:
    from aioiptables import FakeClient

    with pytest.raises(ValueError, match="two clients"):
        RuleCache(FakeClient(V4), FakeClient(V4))


async def test_a_protocol_without_client_is_refused(world: World) -> None:
    cache = RuleCache(world.client(V4))
    with pytest.raises(ValueError, match="no client for"):
        await cache.exists(r("filter", "INPUT", "-j", "ACCEPT", proto=V6))


async def test_a_snapshot_answers_every_chain_of_its_table_with_one_process(world: World) -> None:
    for command in SEED_V4:
        await world.iptables(V4, *command)
    client = world.client(V4)
    cache = RuleCache(client)
    snapshots = []

    async def snap() -> None:
        snapshots.append(await cache.snapshot(V4, "filter"))

    async def ask(item: Rule | Chain, expected: bool) -> None:
        assert await cache.exists(item) is expected

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(snap)
        await anyio.sleep(0)  # the first snapshot is in flight: listings wait for it
        tg.start_soon(ask, r("filter", "X", *ACCEPT_10), True)
        tg.start_soon(ask, r("filter", "INPUT", *DROP_11), True)
        tg.start_soon(ask, r("filter", "MISSING", *DROP_11), False)
    assert client.calls == 1
    assert all(s is snapshots[0] for s in snapshots)
    assert await cache.exists(c("filter", "X")) is True
    assert await cache.exists(c("filter", "MISSING")) is False
    assert client.calls == 1, "the snapshot knows the table's chains too"
    assert (await cache.listing(V4, "filter", "X")).specs == (ACCEPT_10,)
    assert await cache.exists(r("nat", "N", "-j", "ACCEPT")) is False
    assert client.calls == 2, "another table is listed apart"
    cache.invalidate("filter", "X")
    assert await cache.exists(r("filter", "INPUT", *DROP_11)) is True
    assert client.calls == 2, "what was read of other chains is kept"
    assert await cache.exists(r("filter", "X", *ACCEPT_10)) is True
    assert client.calls == 3, "the forgotten chain is read again, and not from the old snapshot"


async def test_a_reread_that_prints_the_same_text_reuses_what_was_made_of_it(world: World) -> None:
    """After invalidate(), every question lists again (one process each), but
    a snapshot or listing printed as before is the same object: nothing is
    parsed twice. A change to any rule makes a new one."""
    for command in SEED_V4:
        await world.iptables(V4, *command)
    client = world.client(V4)
    cache = RuleCache(client)
    snapshot = await cache.snapshot(V4, "filter")
    listing = await cache.listing(V4, "nat", "N")
    cache.invalidate()
    assert await cache.snapshot(V4, "filter") is snapshot
    assert await cache.listing(V4, "nat", "N") is listing
    assert client.calls == 4, "each read is still a process"
    await world.iptables(V4, "-t", "filter", "-A", "X", *DROP_11)
    await world.iptables(V4, "-t", "nat", "-A", "N", "-j", "RETURN")
    cache.invalidate()
    again = await cache.snapshot(V4, "filter")
    assert again is not snapshot
    assert again.chain("X").specs == (ACCEPT_10, DROP_11)
    assert (await cache.listing(V4, "nat", "N")).specs == (("-j", "RETURN"),)


class _SavingClient:
    """A client whose iptables-save text is given by the test."""

    proto = V4

    def __init__(self, text: str) -> None:
        self.text = text

    async def list(self, table: str, chain: str) -> builtins.list[str]:
        raise AssertionError("not listed")

    async def list_chains(self, table: str) -> builtins.list[str]:
        raise AssertionError("not listed")

    async def save(self, table: str) -> str:
        return self.text


SAVED = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 30 00:00:01 2026
*filter
:INPUT ACCEPT [{packets}:{bytes}]
:FORWARD DROP [0:0]
:X - [0:0]
-A INPUT -s 10.0.0.0/8 -j ACCEPT
-A X -j {target}
COMMIT
# Completed on Mon Nov 30 00:00:0{second} 2026
"""


@pytest.mark.parametrize(
    ("then", "reused"),
    [
        pytest.param({"second": "9"}, True, id="another timestamp: reused"),
        pytest.param({"packets": "7", "bytes": "420"}, True, id="policy counters moved: reused"),
        pytest.param({"target": "DROP"}, False, id="a rule changed: parsed again"),
    ],
)
async def test_what_a_save_prints_that_is_not_a_rule_does_not_count_as_a_change(
    then: dict[str, str], reused: bool
) -> None:
    first = {"packets": "0", "bytes": "0", "target": "ACCEPT", "second": "1"}
    client = _SavingClient(SAVED.format(**first))
    cache = RuleCache(client)
    snapshot = await cache.snapshot(V4, "filter")
    client.text = SAVED.format(**{**first, **then})
    cache.invalidate()
    assert (await cache.snapshot(V4, "filter") is snapshot) is reused
