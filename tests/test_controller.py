"""Controller: set, reconcile, run, cleanup, on the fake and on real iptables.

Every test runs on FakeClient, iptables-nft and iptables-legacy (real ones in
a private namespace), for IPv4 and IPv6, under asyncio and trio; the process
counts asserted hold on all of them.
"""

from __future__ import annotations

import logging

import anyio
import pytest

from aioiptables import (
    Chain,
    Controller,
    FakeClient,
    InvalidRuleError,
    IPTablesError,
    Protocol,
    Rule,
    RuleSet,
    RulesRefusedError,
    canonicalize,
)
from aioiptables.syntax import join_tokens, split_line
from conftest import World, controller_for

pytestmark = pytest.mark.anyio


def subnet(proto: Protocol) -> str:
    return "10.4.0.0/16" if proto is Protocol.IPV4 else "fd00:4::/64"


def kilo(proto: Protocol) -> RuleSet:
    """A Kilo-like rule set: 4 chains touched in 2 tables."""
    net = subnet(proto)
    return RuleSet(
        append=[
            Chain("nat", "KILO-NAT", proto),
            Rule(
                "nat",
                "KILO-NAT",
                ("-d", net, "-m", "comment", "--comment", "Kilo: mesh", "-j", "RETURN"),
                proto,
            ),
            Rule("nat", "KILO-NAT", ("-s", net, "-j", "MASQUERADE"), proto),
            Rule("nat", "POSTROUTING", ("-s", net, "-j", "KILO-NAT"), proto),
            Chain("filter", "KILO-FWD", proto),
            Rule("filter", "KILO-FWD", ("-s", net, "-j", "ACCEPT"), proto),
            Rule("filter", "KILO-FWD", ("-d", net, "-j", "ACCEPT"), proto),
            Rule("filter", "FORWARD", ("-j", "KILO-FWD"), proto),
        ],
        prepend=[Rule("filter", "INPUT", ("-s", net, "-p", "udp", "-j", "ACCEPT"), proto)],
    )


# Chains touched: nat KILO-NAT, POSTROUTING; filter KILO-FWD, FORWARD, INPUT.
# By default a table with several chains to read is read with one iptables-save.
KILO_READS = 2
KILO_READS_PER_CHAIN = 5


def expected_lines(proto: Protocol, table: str, chain: str) -> list[str]:
    """The -S lines a chain must hold once the Kilo rule set is in place."""
    from aioiptables.syntax import join_tokens

    ruleset = kilo(proto)
    rules = [item for item in [*ruleset.prepend, *ruleset.append] if isinstance(item, Rule)]
    return [f"-A {chain} {join_tokens(r.spec)}" for r in rules if (r.table, r.chain) == (table, chain)]


async def assert_in_place(world: World, proto: Protocol) -> None:
    for table, chain in [
        ("nat", "KILO-NAT"),
        ("nat", "POSTROUTING"),
        ("filter", "KILO-FWD"),
        ("filter", "FORWARD"),
        ("filter", "INPUT"),
    ]:
        lines = await world.rules(proto, table, chain)
        assert lines == expected_lines(proto, table, chain), f"{table} {chain}"


async def test_set_from_empty_reads_each_chain_once_and_writes_each_table_once(
    world: World, proto: Protocol
) -> None:
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    await assert_in_place(world, proto)
    assert controller.calls == KILO_READS + 2
    assert controller.last_stats["writes"] == 2


@pytest.mark.parametrize(
    ("snapshot_from", "reads"),
    [(2, KILO_READS), (0, KILO_READS_PER_CHAIN), (3, 1 + 2), (6, KILO_READS_PER_CHAIN)],
    ids=[
        "a snapshot per table with two chains or more",
        "a listing per chain, as Kilo",
        "a snapshot for filter (3 chains), listings for nat (2)",
        "a threshold above every table reads per chain",
    ],
)
async def test_reading_policy_costs(world: World, proto: Protocol, snapshot_from: int, reads: int) -> None:
    controller = controller_for(world, proto, snapshot_from=snapshot_from)
    await controller.set(kilo(proto))
    assert controller.calls == reads + 2
    await world.iptables(proto, "-t", "nat", "-F", "KILO-NAT")
    before = controller.calls
    await controller.reconcile()
    assert controller.calls - before == reads + 1
    await assert_in_place(world, proto)
    before = controller.calls
    await controller.reconcile()
    assert controller.calls - before == reads


async def test_steady_reconcile_writes_nothing(world: World, proto: Protocol) -> None:
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    before = controller.calls
    await controller.reconcile()
    assert controller.calls - before == KILO_READS
    assert controller.last_stats["writes"] == 0
    await controller.set(kilo(proto))
    assert controller.last_stats["writes"] == 0, "setting the same rules again writes nothing"


TAMPERING: dict[str, list[tuple[str, ...]]] = {
    "a middle rule deleted": [
        (
            "-t",
            "nat",
            "-D",
            "KILO-NAT",
            "-d",
            "NET",
            "-m",
            "comment",
            "--comment",
            "Kilo: mesh",
            "-j",
            "RETURN",
        )
    ],
    "the last rule deleted": [("-t", "nat", "-D", "KILO-NAT", "-s", "NET", "-j", "MASQUERADE")],
    "a chain flushed": [("-t", "nat", "-F", "KILO-NAT")],
    "two tables flushed": [("-t", "nat", "-F", "KILO-NAT"), ("-t", "filter", "-F", "KILO-FWD")],
    "a chain deleted": [
        ("-t", "filter", "-D", "FORWARD", "-j", "KILO-FWD"),
        ("-t", "filter", "-F", "KILO-FWD"),
        ("-t", "filter", "-X", "KILO-FWD"),
    ],
    "rules reordered": [
        ("-t", "filter", "-D", "KILO-FWD", "-s", "NET", "-j", "ACCEPT"),
        ("-t", "filter", "-A", "KILO-FWD", "-s", "NET", "-j", "ACCEPT"),
    ],
    "the prepend rule deleted": [("-t", "filter", "-D", "INPUT", "-s", "NET", "-p", "udp", "-j", "ACCEPT")],
    "builtin chains flushed": [("-t", "filter", "-F"), ("-t", "nat", "-F", "POSTROUTING")],
}
# Tables that need a write after each tampering.
WRITES = {
    "a middle rule deleted": 1,
    "the last rule deleted": 1,
    "a chain flushed": 1,
    "two tables flushed": 2,
    "a chain deleted": 1,
    "rules reordered": 1,
    "the prepend rule deleted": 1,
    "builtin chains flushed": 2,
}


@pytest.mark.parametrize("tampering", list(TAMPERING), ids=list(TAMPERING))
async def test_reconcile_repairs_in_order(world: World, proto: Protocol, tampering: str) -> None:
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    for command in TAMPERING[tampering]:
        await world.iptables(proto, *(subnet(proto) if t == "NET" else t for t in command))
    before = controller.calls
    await controller.reconcile()
    await assert_in_place(world, proto)
    assert controller.calls - before == KILO_READS + WRITES[tampering]
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0, "repaired for good"


async def settle(controller: Controller) -> list[str]:
    """Three reconciles: after a write, the first learns how iptables printed
    what was written, the second finds nothing to do and changes nothing (a
    fixed point), so the third may stop at its read. Returns what the third
    planned (nothing, once settled)."""
    planned: list[str] = []
    real_plan = controller._plan

    def counting(*args: object, **kwargs: object) -> object:
        planned.append("plan")
        return real_plan(*args, **kwargs)  # type: ignore[arg-type]

    controller._plan = counting  # type: ignore[method-assign,assignment]
    try:
        for _ in range(3):
            planned.clear()
            await controller.reconcile()
    finally:
        del controller._plan
    return planned


async def test_a_settled_reconcile_stops_at_its_read(world: World, proto: Protocol) -> None:
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    assert await settle(controller) == [], "nothing planned: the inputs are those of a no-op"
    assert controller.last_stats == {**controller.last_stats, "processes": KILO_READS, "writes": 0}
    assert set(controller.state) >= {(proto, "nat", "KILO-NAT"), (proto, "filter", "KILO-FWD")}


@pytest.mark.parametrize("tampering", list(TAMPERING), ids=list(TAMPERING))
async def test_a_settled_controller_repairs_every_tampering(
    world: World, proto: Protocol, tampering: str
) -> None:
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    await settle(controller)
    for command in TAMPERING[tampering]:
        await world.iptables(proto, *(subnet(proto) if t == "NET" else t for t in command))
    await controller.reconcile()
    await assert_in_place(world, proto)
    assert controller.last_stats["processes"] == KILO_READS + WRITES[tampering]


async def test_what_a_settled_controller_does_not_skip(world: World, proto: Protocol) -> None:
    """Each change below alters an input of the plan: the reconcile after it
    plans again (and writes what it must), and settles once more."""
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    await settle(controller)
    # A foreign rule in our chain: planned, left alone, nothing written.
    foreign = ("-m", "comment", "--comment", "foreign", "-j", "ACCEPT")
    await world.iptables(proto, "-t", "filter", "-A", "KILO-FWD", *foreign)
    assert await settle(controller) == []
    assert controller.last_stats["writes"] == 0
    assert (await world.rules(proto, "filter", "KILO-FWD"))[-1] == f"-A KILO-FWD {join_tokens(foreign)}"
    # A new rule set: planned and written at set(), then settled.
    smaller = RuleSet(append=kilo(proto).append[:4])
    await controller.set(smaller)
    assert controller.last_stats["writes"] == 1
    assert await settle(controller) == []
    # Back to the whole set.
    await controller.set(kilo(proto))
    assert controller.last_stats["writes"] == 1
    assert await settle(controller) == []


async def test_repair_leaves_other_chains_and_foreign_rules_alone(world: World, proto: Protocol) -> None:
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    net = subnet(proto)
    # A foreign rule sits between ours; another agent inserts at the top of INPUT.
    await world.iptables(proto, "-t", "filter", "-I", "KILO-FWD", "2", "-i", "lo", "-j", "ACCEPT")
    await world.iptables(proto, "-t", "filter", "-I", "INPUT", "1", "-i", "lo", "-j", "ACCEPT")
    await world.iptables(proto, "-t", "filter", "-D", "KILO-FWD", "-d", net, "-j", "ACCEPT")
    await controller.reconcile()
    assert await world.rules(proto, "filter", "KILO-FWD") == [
        f"-A KILO-FWD -s {net} -j ACCEPT",
        "-A KILO-FWD -i lo -j ACCEPT",
        f"-A KILO-FWD -d {net} -j ACCEPT",
    ]
    assert (await world.rules(proto, "filter", "INPUT"))[0] == "-A INPUT -i lo -j ACCEPT"
    assert controller.last_stats["writes"] == 1, "nat was not touched"


async def test_set_replaces_the_rules_set_before(world: World, proto: Protocol) -> None:
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    net = subnet(proto)
    smaller = RuleSet(
        append=[
            Chain("nat", "KILO-NAT", proto),
            Rule("nat", "KILO-NAT", ("-s", net, "-j", "MASQUERADE"), proto),
            Rule("nat", "KILO-NAT", ("-s", net, "-j", "RETURN"), proto),
            Rule("nat", "POSTROUTING", ("-s", net, "-j", "KILO-NAT"), proto),
        ]
    )
    await controller.set(smaller)
    assert await world.rules(proto, "nat", "KILO-NAT") == [
        f"-A KILO-NAT -s {net} -j MASQUERADE",
        f"-A KILO-NAT -s {net} -j RETURN",
    ]
    assert await world.rules(proto, "filter", "FORWARD") == []
    assert await world.rules(proto, "filter", "INPUT") == []
    chains = await world.iptables(proto, "-t", "filter", "-S")
    assert "KILO-FWD" not in chains
    assert controller.append_rules == smaller.append
    assert controller.prepend_rules == ()


async def test_cleanup_leaves_the_namespace_as_it_found_it(world: World, proto: Protocol) -> None:
    await world.iptables(proto, "-t", "filter", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    before = await world.snapshot(proto)
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    assert await world.snapshot(proto) != before
    await controller.cleanup()
    assert await world.snapshot(proto) == before
    assert controller.append_rules == ()
    await controller.cleanup()
    assert controller.last_stats["writes"] == 0


async def test_run_goes_on_after_a_failing_reconcile(world: World, proto: Protocol) -> None:
    # The rule's chain is managed by someone else and does not exist yet.
    rule = Rule("filter", "OTHER", ("-j", "ACCEPT"), proto)
    controller = controller_for(world, proto, resync=0.05)
    with pytest.raises(IPTablesError):
        await controller.set(RuleSet(append=[rule]))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            first = await controller.errors.receive()
            assert isinstance(first, IPTablesError)
            await world.iptables(proto, "-t", "filter", "-N", "OTHER")
            while await world.rules(proto, "filter", "OTHER") != ["-A OTHER -j ACCEPT"]:
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


async def test_run_repairs_at_each_resync(world: World, proto: Protocol) -> None:
    controller = controller_for(world, proto, resync=0.05)
    await controller.set(kilo(proto))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            for _ in range(3):
                await world.iptables(proto, "-t", "nat", "-F", "KILO-NAT")
                while await world.rules(proto, "nat", "KILO-NAT") != expected_lines(proto, "nat", "KILO-NAT"):
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    await assert_in_place(world, proto)


async def test_failing_reconcile_is_logged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    controller = controller_for(world, Protocol.IPV4, resync=0.05)
    with pytest.raises(IPTablesError):
        await controller.set(RuleSet(append=[Rule.ipv4("filter", "NOPE", "-j", "ACCEPT")]))
    with caplog.at_level(logging.WARNING, logger="aioiptables"), anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            await controller.errors.receive()
            tg.cancel_scope.cancel()
    assert any("reconcile failed" in record.getMessage() for record in caplog.records)


async def test_rules_of_a_protocol_without_client_are_refused_before_any_process(world: World) -> None:
    controller = controller_for(world, Protocol.IPV4)
    with pytest.raises(InvalidRuleError, match="no ipv6 client"):
        await controller.set(RuleSet(append=[Rule.ipv6("filter", "INPUT", "-j", "ACCEPT")]))
    assert controller.calls == 0


async def test_both_protocols_in_one_rule_set(world: World) -> None:
    controller = Controller(world.client(Protocol.IPV4), world.client(Protocol.IPV6))
    both = RuleSet(
        append=[*kilo(Protocol.IPV4).append, *kilo(Protocol.IPV6).append],
        prepend=[*kilo(Protocol.IPV4).prepend, *kilo(Protocol.IPV6).prepend],
    )
    await controller.set(both)
    assert controller.calls == 2 * (KILO_READS + 2)
    for proto in Protocol:
        await assert_in_place(world, proto)
    await controller.cleanup()
    for proto in Protocol:
        assert "KILO" not in " ".join(await world.snapshot(proto))


@pytest.mark.parametrize("has_ipv6", [True, False], ids=["ipv6 on", "ipv6 off"])
async def test_default_clients_follow_the_kernel(
    netns: str, backend: str, has_ipv6: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aioiptables.controller

    monkeypatch.setattr(aioiptables.controller, "ipv6_enabled", lambda: has_ipv6)
    controller = Controller(backend=backend, netns=netns)  # type: ignore[arg-type]
    assert [c.proto for c in controller.clients] == [Protocol.IPV4, Protocol.IPV6][: 2 if has_ipv6 else 1]
    assert all(c.netns == netns and c.backend == backend for c in controller.clients)
    await controller.set(kilo(Protocol.IPV4))
    assert controller.last_stats["writes"] == 2
    await controller.cleanup()


async def test_a_failed_listing_raises_the_error_itself_not_a_group() -> None:
    from aioiptables import Binaries, Client, IPTablesNotFoundError

    missing = Binaries("/nonexistent/iptables", "/nonexistent/save", "/nonexistent/restore")
    controller = Controller(Client(binaries=missing))
    with pytest.raises(IPTablesNotFoundError):
        await controller.set(kilo(Protocol.IPV4))


UNKNOWN_TO_US = {
    # Extensions not in our tables, which iptables prints otherwise than written:
    # "--timestart 08:00:00 --timestop 23:59:59 --datestop 2038-01-19T03:14:07".
    "time, with defaults iptables adds": ("-m", "time", "--timestart", "8:00", "-j", "ACCEPT"),
    # "--tos 0x10/0xff".
    "tos, with a mask iptables adds": ("-m", "tos", "--tos", "0x10", "-j", "ACCEPT"),
}


@pytest.mark.parametrize("spec", list(UNKNOWN_TO_US.values()), ids=list(UNKNOWN_TO_US))
async def test_rules_we_cannot_canonicalize_are_learned_not_rewritten(
    world: World, proto: Protocol, spec: tuple[str, ...]
) -> None:
    rules = RuleSet(append=[Chain("filter", "MINE", proto), Rule("filter", "MINE", spec, proto)])
    controller = controller_for(world, proto)
    await controller.set(rules)
    assert controller.calls == 1 + 1, "one read, one write: nothing is read back"
    before = controller.calls
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0, "the next read learned the printed form"
    assert controller.calls - before == 1, "the steady state reads and writes nothing else"
    # A rule deleted behind our back is still repaired, and learned again.
    await world.iptables(proto, "-t", "filter", "-F", "MINE")
    await controller.reconcile()
    assert controller.last_stats["writes"] == 1
    assert len(await world.rules(proto, "filter", "MINE")) == 1
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0


async def test_steady_state_writes_nothing_however_rules_are_spelled(world: World, proto: Protocol) -> None:
    net = subnet(proto)
    icmp = (
        ("-p", "icmp", "--icmp-type", "echo-request")
        if proto is Protocol.IPV4
        else ("-p", "icmpv6", "--icmpv6-type", "echo-request")
    )
    spellings = [
        ("--protocol", "tcp", "--destination-port", "http", "--jump", "ACCEPT"),
        ("--source", net.split("/")[0], "-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
        (*icmp, "-j", "REJECT"),
        ("-m", "comment", "--comment", 'say "hi" \\ there', "-j", "LOG", "--log-level", "warning"),
        ("-p", "udp", "-m", "multiport", "--dports", "53,domain,100:200", "-j", "RETURN"),
    ]
    rules = RuleSet(
        append=[Chain("filter", "SPELL", proto), *(Rule("filter", "SPELL", s, proto) for s in spellings)]
    )
    controller = controller_for(world, proto)
    await controller.set(rules)
    assert controller.calls == 2, "one read and one write: nothing needed learning"
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0
    assert controller.calls == 3


async def test_after_its_writes_the_controller_knows_the_chains_without_listing(
    world: World, proto: Protocol
) -> None:
    controller = controller_for(world, proto)
    await controller.set(kilo(proto))
    calls = controller.calls
    for (_, table, chain), listing in controller.state.items():
        printed = [line.split(" ", 2)[2] for line in await world.rules(proto, table, chain)]
        assert listing.keys == tuple(canonicalize(split_line(line), proto) for line in printed), chain
    assert controller.calls == calls, "the state came from the plan"


async def test_repair_rewrites_only_the_broken_chain(world: World, proto: Protocol) -> None:
    # Append rules of two chains of one table, interleaved in the RuleSet:
    # a missing rule of A rewrites A's later rules, never B's.
    net = subnet(proto)
    a = [
        Rule("filter", "A", ("-s", net, "-p", "tcp", "--dport", str(p), "-j", "ACCEPT"), proto)
        for p in (1, 2, 3)
    ]
    b = [
        Rule("filter", "B", ("-d", net, "-p", "udp", "--dport", str(p), "-j", "DROP"), proto)
        for p in (1, 2, 3)
    ]
    interleaved: list[Rule | Chain] = [Chain("filter", "A", proto), Chain("filter", "B", proto)]
    for ra, rb in zip(a, b, strict=True):
        interleaved += [ra, rb]
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=interleaved))
    await world.iptables(proto, "-t", "filter", "-D", "A", *a[1].spec)
    await controller.reconcile()
    # Deleted a[1]: delete a[2], append a[1] and a[2]. B untouched.
    assert controller.last_stats["changes"] == 3
    assert controller.last_stats["writes"] == 1
    assert [line.split(" ", 2)[2] for line in await world.rules(proto, "filter", "A")] == [
        join_tokens(canonicalize(r.spec, proto)) for r in a
    ]


SMUGGLERS = [
    'a" -j ACCEPT "b',
    'x\\" -A INPUT -j DROP',
    "# not a comment line",
    "COMMIT",
    "two  spaces  ",
    "'single' and \"double\" and \\back\\slash",
]


@pytest.mark.parametrize(
    "comment", SMUGGLERS, ids=["quotes", "escaped quote", "hash", "COMMIT", "spaces", "all quotes"]
)
async def test_no_token_can_break_the_restore_payload(world: World, proto: Protocol, comment: str) -> None:
    rule = Rule("filter", "INPUT", ("-m", "comment", "--comment", comment, "-j", "ACCEPT"), proto)
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[rule]))
    lines = await world.rules(proto, "filter", "INPUT")
    assert len(lines) == 1, "one rule, nothing smuggled in"
    assert split_line(lines[0])[2:] == list(canonicalize(rule.spec, proto))
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0, "and it is found again"


# -- ownership across restarts ------------------------------------------------------------------


def owned(proto: Protocol, *ports: int, chain: str = "OWNED") -> RuleSet:
    net = subnet(proto)
    return RuleSet(
        append=[
            Chain("filter", chain, proto),
            *(
                Rule("filter", chain, ("-s", net, "-p", "tcp", "--dport", str(p), "-j", "ACCEPT"), proto)
                for p in ports
            ),
            Rule("filter", "FORWARD", ("-j", chain), proto),
        ]
    )


async def test_a_restarted_owner_removes_what_its_earlier_run_left_behind(
    world: World, proto: Protocol
) -> None:
    earlier = controller_for(world, proto, owner="kilo")
    await earlier.set(RuleSet(append=[*owned(proto, 1, 2).append, *owned(proto, 7, chain="GONE").append]))
    # Someone else's rules: an identical rule without our tag, and another owner's.
    net = subnet(proto)
    foreign = ("-s", net, "-p", "tcp", "--dport", "1", "-j", "ACCEPT")
    await world.iptables(proto, "-t", "filter", "-A", "FORWARD", *foreign)
    other = controller_for(world, proto, owner="other")
    await other.set(RuleSet(append=[Rule("filter", "INPUT", ("-s", net, "-j", "DROP"), proto)]))
    before_foreign = await world.rules(proto, "filter", "INPUT")

    # A new process of the same owner, with a smaller rule set: it never saw GONE.
    restarted = controller_for(world, proto, owner="kilo")
    await restarted.set(owned(proto, 2))
    listing = " ".join(await world.snapshot(proto))
    assert "GONE" not in listing, "a chain of the earlier run is deleted"
    assert "--dport 1 -m comment" not in listing, "a tagged rule no longer wanted is deleted"
    assert await world.rules(proto, "filter", "INPUT") == before_foreign, "another owner's rules stay"
    forward = await world.rules(proto, "filter", "FORWARD")
    assert any("--dport 1" in line and "aioiptables" not in line for line in forward), "untagged rules stay"
    await restarted.reconcile()
    assert restarted.last_stats["writes"] == 0


async def test_without_an_owner_rules_are_written_exactly_as_given(world: World, proto: Protocol) -> None:
    controller = controller_for(world, proto)
    await controller.set(owned(proto, 1))
    assert "aioiptables" not in " ".join(await world.snapshot(proto))
    assert controller.calls == 1 + 1, "one read, one write: no scan for leftovers"


async def test_an_owner_costs_one_scan_of_every_table_once(world: World, proto: Protocol) -> None:
    controller = controller_for(world, proto, owner="kilo")
    await controller.set(owned(proto, 1, 2))
    # 4 tables read once (filter's snapshot serves the plan too), 1 write.
    assert controller.calls == 4 + 1
    before = controller.calls
    await controller.reconcile()
    assert controller.calls - before == 1, "then reads as usual: one snapshot of filter"
    await controller.cleanup()
    assert "aioiptables" not in " ".join(await world.snapshot(proto))


# -- canaries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reload",
    [
        [("-t", "filter", "-F")],
        [("-t", "filter", "-F"), ("-t", "filter", "-X")],
        [("-t", "nat", "-F"), ("-t", "nat", "-X")],
    ],
    ids=["iptables -F", "a reload: -F and -X", "the other table reloaded"],
)
async def test_a_canary_brings_repairs_within_a_second(
    world: World, proto: Protocol, reload: list[tuple[str, ...]]
) -> None:
    controller = controller_for(
        world, proto, resync=60, canary="AIOIPT-CANARY", canary_interval=0.1, events=False
    )
    await controller.set(kilo(proto))
    async with anyio.create_task_group() as tg:
        tg.start_soon(controller.run)
        await anyio.sleep(0.05)
        for command in reload:
            await world.iptables(proto, *command)
        with anyio.fail_after(5):  # the resync is 60 s: only the canary can explain a repair
            while True:
                try:
                    await assert_in_place(world, proto)
                    break
                except AssertionError:
                    await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert controller.canary_trips >= 1
    await controller.cleanup()
    assert "AIOIPT-CANARY" not in " ".join(await world.snapshot(proto))


async def test_a_quiet_canary_costs_one_process_per_table_per_poll(
    world: World, proto: Protocol, caplog: pytest.LogCaptureFixture
) -> None:
    controller = controller_for(
        world, proto, resync=60, canary="AIOIPT-CANARY", canary_interval=0.05, events=False
    )
    await controller.set(kilo(proto))
    with caplog.at_level(logging.DEBUG, logger="aioiptables"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            with anyio.fail_after(10):
                while sum(getattr(r, "chain", "") == "AIOIPT-CANARY" for r in caplog.records) < 6:
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    processes = [r for r in caplog.records if hasattr(r, "operation")]
    polls = [r for r in processes if getattr(r, "chain", "") == "AIOIPT-CANARY"]
    others = [r for r in processes if r not in polls]
    assert controller.canary_trips == 0
    assert all(r.operation == "list" for r in polls)
    assert {getattr(r, "table", "") for r in polls} == {"filter", "nat"}
    # Nothing changed: besides the polls (one -S per table per poll), only the
    # run loop's first reconcile ran, reading each table once.
    assert [r.operation for r in others] == ["save"] * KILO_READS


async def test_listeners_hear_of_every_reconcile_and_its_error(world: World) -> None:
    heard: list[tuple[float, Exception | None, float]] = []
    controller = controller_for(world, Protocol.IPV4)
    controller.listeners.append(
        lambda c, seconds, error: heard.append((seconds, error, c.last_stats.get("writes", -1)))
    )

    def broken(c: Controller, seconds: float, error: Exception | None) -> None:
        raise ZeroDivisionError  # a broken listener changes nothing

    controller.listeners.append(broken)
    await controller.set(kilo(Protocol.IPV4))
    await controller.reconcile()
    with pytest.raises(IPTablesError):
        await controller.set(RuleSet(append=[Rule.ipv4("filter", "NOPE", "-j", "ACCEPT")]))
    assert [(error is None, writes) for _, error, writes in heard[:2]] == [(True, 2), (True, 0)]
    assert isinstance(heard[2][1], IPTablesError)
    assert all(seconds >= 0 for seconds, _, _ in heard)


async def test_preview_reads_like_a_reconcile_and_writes_nothing(world: World, proto: Protocol) -> None:
    controller = controller_for(world, proto)
    plans = await controller.preview(kilo(proto))
    assert [(p.table, p.count("append"), p.count("insert")) for p in plans] == [
        ("filter", 3, 1),
        ("nat", 3, 0),
    ]
    assert controller.calls == KILO_READS, "reads only"
    assert await world.rules(proto, "filter", "FORWARD") == []
    await controller.set(kilo(proto))
    assert await controller.preview(kilo(proto)) == []
    smaller = RuleSet(
        append=[r for r in kilo(proto).append if not (isinstance(r, Rule) and r.chain == "KILO-FWD")],
        prepend=kilo(proto).prepend,
    )
    (changed,) = await controller.preview(smaller)
    assert changed.table == "filter" and changed.count("delete") == 2


# -- rules a release would write otherwise than asked -------------------------------------------------


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        pytest.param((1, 8, 7), True, id="1.8.7-drops-the-base"),
        pytest.param((1, 8, 8), True, id="1.8.8-drops-the-base"),
        pytest.param((1, 8, 9), False, id="1.8.9-keeps-it"),
        pytest.param((1, 8, 13), False, id="1.8.13-keeps-it"),
    ],
)
async def test_a_rule_the_running_iptables_would_write_otherwise_is_refused_before_writing(
    version: tuple[int, int, int], refused: bool
) -> None:
    fake = FakeClient(version=version)
    controller = Controller(fake)
    snat = Rule.ipv4("nat", "POSTROUTING", "-p", "tcp", "-j", "SNAT", "--to-source", "1.2.3.4:80-90/70")
    other = Rule.ipv4("nat", "POSTROUTING", "-j", "ACCEPT")
    if not refused:
        await controller.set(RuleSet([snat, other]))
        assert len(fake.fake.rules(Protocol.IPV4, "nat", "POSTROUTING")) == 2
        return
    with pytest.raises(RulesRefusedError) as caught:
        await controller.set(RuleSet([snat, other]))
    assert [r.rule for r in caught.value.refused] == [snat]
    assert "this rule needs iptables 1.8.9 or later" in caught.value.refused[0].message
    assert fake.fake.rules(Protocol.IPV4, "nat", "POSTROUTING") == [("-j", "ACCEPT")]
