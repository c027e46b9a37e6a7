"""Failures the stateful test (test_stateful.py) found, each pinned as a spec.

Every test runs on the fake and on real iptables (nft and legacy, each in a
private namespace), for IPv4 and IPv6, under asyncio and trio, unless it says
otherwise. docs/reliability.md tells the story of each.
"""

from __future__ import annotations

import logging

import anyio
import pytest

from aioiptables import Chain, Controller, FakeClient, FakeRunner, Protocol, Rule, RuleSet, RulesRefusedError
from aioiptables.plan import chain_tag
from aioiptables.syntax import split_printed
from conftest import World, controller_for, net

pytestmark = pytest.mark.anyio

V4, V6 = Protocol.IPV4, Protocol.IPV6
OWNERS = pytest.mark.parametrize("owner", [None, "agent"], ids=["no-owner", "owner"])


def rule(proto: Protocol, chain: str, *spec: str) -> Rule:
    return Rule("filter", chain, spec, proto)


def log_rule(proto: Protocol, chain: str, letter: str) -> Rule:
    """A rule iptables prints otherwise: it keeps 29 bytes of a log prefix."""
    return rule(proto, chain, "-j", "LOG", "--log-prefix", letter * 40)


async def chains(world: World, proto: Protocol) -> list[str]:
    return [
        line.split()[1] for line in (await world.iptables(proto, "-S")).splitlines() if line.startswith("-N")
    ]


# -- a chain the rule set drops while a rule of it still needs the chain --------------------------


@OWNERS
async def test_a_chain_dropped_from_the_rule_set_stays_while_a_rule_of_the_set_lives_in_it(
    world: World, proto: Protocol, owner: str | None
) -> None:
    inside = rule(proto, "KEPT", "-s", net(proto), "-j", "ACCEPT")
    controller = controller_for(world, proto, owner=owner)
    await controller.set(RuleSet(append=[Chain("filter", "KEPT", proto), inside]))
    await controller.set(RuleSet(append=[inside]))  # the chain is no longer declared
    lines = await world.rules(proto, "filter", "KEPT")
    assert len(lines) == (2 if owner else 1), "the rule is still in place (with the chain's marker)"
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0, "nothing refused, nothing to repair"
    await controller.set(RuleSet())
    assert "KEPT" not in await chains(world, proto), "the chain goes once no rule needs it"


@OWNERS
async def test_a_chain_dropped_from_the_rule_set_stays_while_a_rule_of_the_set_jumps_to_it(
    world: World, proto: Protocol, owner: str | None
) -> None:
    jump = rule(proto, "INPUT", "-j", "TARGET")
    inside = rule(proto, "TARGET", "-s", net(proto), "-j", "RETURN")
    controller = controller_for(world, proto, owner=owner)
    await controller.set(RuleSet(append=[Chain("filter", "TARGET", proto), inside, jump]))
    calls = controller.calls
    await controller.set(RuleSet(append=[jump]))
    assert controller.calls - calls == 2, "one read, one write: no delete of the chain tried and refused"
    assert "TARGET" in await chains(world, proto)
    assert len(await world.rules(proto, "filter", "TARGET")) == (1 if owner else 0), "only its marker stays"
    await controller.cleanup()
    assert "TARGET" not in await chains(world, proto)
    assert await world.rules(proto, "filter", "INPUT") == []


async def test_a_kept_chain_a_foreign_rule_jumps_to_loses_our_marker_at_cleanup(
    world: World, proto: Protocol
) -> None:
    jump = rule(proto, "INPUT", "-p", "udp", "-j", "TARGET")
    controller = controller_for(world, proto, owner="agent")
    await controller.set(RuleSet(append=[Chain("filter", "TARGET", proto)]))
    await controller.set(RuleSet(append=[jump]))  # TARGET is kept: our jump needs it
    await world.iptables(proto, "-A", "FORWARD", "-j", "TARGET")  # theirs
    await controller.cleanup()
    assert await world.rules(proto, "filter", "TARGET") == [], "nothing of ours is left in it"
    assert await world.rules(proto, "filter", "INPUT") == []
    await world.iptables(proto, "-D", "FORWARD", "-j", "TARGET")
    await controller.reconcile()
    assert "TARGET" not in await chains(world, proto), "it goes once nothing jumps to it"


# -- a chain of ours, deleted and created again by someone else, is theirs ------------------------


@OWNERS
async def test_a_chain_of_ours_deleted_and_made_again_by_someone_else_is_theirs(
    world: World, proto: Protocol, owner: str | None
) -> None:
    controller = controller_for(world, proto, owner=owner)
    ours = rule(proto, "SHARED", "-s", net(proto, 1), "-j", "ACCEPT")
    await controller.set(RuleSet(append=[Chain("filter", "SHARED", proto), ours]))
    await world.iptables(proto, "-F", "SHARED")
    await world.iptables(proto, "-X", "SHARED")
    await controller.set(RuleSet())  # reads the chain gone
    await world.iptables(proto, "-N", "SHARED")
    await world.iptables(proto, "-A", "SHARED", "-s", net(proto, 2), "-j", "DROP")
    await controller.set(RuleSet(append=[Chain("filter", "SHARED", proto), ours]))
    await controller.cleanup()
    assert await world.rules(proto, "filter", "SHARED") == [f"-A SHARED -s {net(proto, 2)} -j DROP"]


async def test_with_owner_a_chain_that_was_there_before_is_never_marked(
    world: World, proto: Protocol
) -> None:
    await world.iptables(proto, "-N", "THEIRS")
    await world.iptables(proto, "-A", "THEIRS", "-s", net(proto, 3), "-j", "DROP")
    controller = controller_for(world, proto, owner="agent")
    await controller.set(
        RuleSet(append=[Chain("filter", "THEIRS", proto), rule(proto, "THEIRS", "-j", "RETURN")])
    )
    assert not any(chain_tag("agent") in line for line in await world.rules(proto, "filter", "THEIRS"))
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0
    # A later run of the same owner finds no marker: the chain is not its to delete.
    again = controller_for(world, proto, owner="agent")
    await again.cleanup()
    assert await world.rules(proto, "filter", "THEIRS") == [f"-A THEIRS -s {net(proto, 3)} -j DROP"]


# -- what was learned of a rule is kept until the rule is gone ------------------------------------


@OWNERS
async def test_a_rewritten_rule_dropped_by_set_is_deleted(
    world: World, proto: Protocol, owner: str | None
) -> None:
    controller = controller_for(world, proto, owner=owner)
    await controller.set(RuleSet(append=[log_rule(proto, "INPUT", "f")]))
    await controller.reconcile()  # learns how iptables printed it
    await controller.set(RuleSet())
    assert await world.rules(proto, "filter", "INPUT") == []
    await controller.set(RuleSet(append=[log_rule(proto, "INPUT", "g")]))
    await controller.set(RuleSet(append=[log_rule(proto, "INPUT", "h")]))  # no reconcile between
    await controller.reconcile()
    assert len(await world.rules(proto, "filter", "INPUT")) == 1
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []


# -- a fresh rewritten rule moved before the controller reads it back -----------------------------


async def move_to_top(world: World, proto: Protocol, chain: str, index: int) -> None:
    """Move line ``index`` (1-based) of ``chain`` to the top, as an admin would."""
    line = (await world.rules(proto, "filter", chain))[index - 1]
    await world.iptables(proto, "-D", chain, str(index))
    spec = line.split(" ", 2)[2]
    await world.iptables(proto, "-I", chain, "1", *split(spec))


def split(printed: str) -> list[str]:
    tokens = split_printed(printed)
    assert tokens is not None, printed
    return list(tokens)


@OWNERS
@pytest.mark.parametrize("first", [True, False], ids=["rewritten-first", "rewritten-last"])
async def test_a_fresh_rewritten_rule_moved_before_the_next_read_is_still_ours(
    world: World, proto: Protocol, owner: str | None, first: bool
) -> None:
    logged = log_rule(proto, "INPUT", "m")
    exact = rule(proto, "INPUT", "-s", net(proto), "-j", "ACCEPT")
    controller = controller_for(world, proto, owner=owner)
    await controller.set(RuleSet(append=[logged, exact] if first else [exact, logged]))
    await move_to_top(world, proto, "INPUT", 2)  # before any read of ours
    for _ in range(3):
        await controller.reconcile()
        assert len(await world.rules(proto, "filter", "INPUT")) == 2, "no second copy"
    assert controller.last_stats["writes"] == 0
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []


# -- with owner, an untagged near copy is never taken for ours ------------------------------------


async def test_with_owner_an_untagged_copy_beside_a_fresh_rewritten_rule_is_never_taken_for_ours(
    world: World, proto: Protocol
) -> None:
    logged = log_rule(proto, "INPUT", "n")
    controller = controller_for(world, proto, owner="agent")
    await controller.set(RuleSet(append=[logged]))
    await world.iptables(proto, "-I", "INPUT", "1", *logged.spec)  # theirs, above ours, before our read
    for _ in range(2):
        await controller.reconcile()
        assert len(await world.rules(proto, "filter", "INPUT")) == 2
    await controller.cleanup()
    left = await world.rules(proto, "filter", "INPUT")
    assert len(left) == 1 and "aioiptables" not in left[0], left


# -- a loop of jumps is refused by name, on both backends alike -----------------------------------


def loop(proto: Protocol) -> list[Rule | Chain]:
    return [
        Chain("filter", "LOOP-A", proto),
        Chain("filter", "LOOP-B", proto),
        rule(proto, "LOOP-A", "-s", net(proto, 1), "-j", "LOOP-B"),
        rule(proto, "LOOP-B", "-s", net(proto, 2), "-g", "LOOP-A"),
    ]


@OWNERS
async def test_a_rule_that_closes_a_loop_of_jumps_is_refused_alone(
    world: World, proto: Protocol, owner: str | None
) -> None:
    entry = rule(proto, "INPUT", "-j", "LOOP-A")
    good = rule(proto, "FORWARD", "-s", net(proto, 4), "-j", "ACCEPT")
    controller = controller_for(world, proto, owner=owner)
    calls = controller.calls
    with pytest.raises(RulesRefusedError) as caught:
        await controller.set(RuleSet(append=[*loop(proto), entry, good]))
    assert [r.rule for r in caught.value.refused] == [entry]
    assert "loop" in caught.value.refused[0].message
    assert controller.last_stats["writes"] == 1, "planned around: no restore failed"
    assert controller.calls - calls == (5 if owner else 2), "its reads (every table, with owner), one write"
    assert len(await world.rules(proto, "filter", "LOOP-B")) == (2 if owner else 1)
    assert len(await world.rules(proto, "filter", "FORWARD")) == 1
    assert await world.rules(proto, "filter", "INPUT") == []
    await controller.set(RuleSet(append=[good]))  # the loop is dropped: all is well again
    assert await chains(world, proto) == []


async def test_a_loop_closed_through_chains_never_read_is_refused(world: World, proto: Protocol) -> None:
    # The loop runs through their chain, which the controller does not read:
    # iptables-nft names the rule, iptables-legacy fails the whole table at
    # COMMIT; then one read of the table finds the rule that closes the loop.
    await world.iptables(proto, "-N", "LOOP-C")
    await world.iptables(proto, "-A", "INPUT", "-j", "LOOP-C")
    first = rule(proto, "LOOP-D", "-s", net(proto, 9), "-j", "RETURN")
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[Chain("filter", "LOOP-D", proto), first]))
    await world.iptables(proto, "-A", "LOOP-C", "-j", "LOOP-D")
    closer = rule(proto, "LOOP-D", "-s", net(proto), "-j", "LOOP-C")
    good = rule(proto, "FORWARD", "-j", "ACCEPT")
    with pytest.raises(RulesRefusedError) as caught:
        await controller.set(RuleSet(append=[Chain("filter", "LOOP-D", proto), first, closer, good]))
    assert [r.rule for r in caught.value.refused] == [closer]
    assert await world.rules(proto, "filter", "FORWARD") == ["-A FORWARD -j ACCEPT"]


async def test_a_loop_behind_an_unconditional_return_is_what_the_backend_says(
    world: World, proto: Protocol
) -> None:
    # The kernel's legacy walk stops at an unconditional RETURN and so never
    # meets a loop behind it; nf_tables follows every jump. Whatever the
    # backend says, nothing else of the table is lost.
    await world.iptables(proto, "-N", "LOOP-E")
    await world.iptables(proto, "-A", "INPUT", "-j", "LOOP-E")
    first = rule(proto, "LOOP-F", "-j", "RETURN")
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[Chain("filter", "LOOP-F", proto), first]))
    await world.iptables(proto, "-A", "LOOP-E", "-j", "LOOP-F")
    closer = rule(proto, "LOOP-F", "-s", net(proto), "-j", "LOOP-E")
    good = rule(proto, "FORWARD", "-j", "ACCEPT")
    try:
        await controller.set(RuleSet(append=[Chain("filter", "LOOP-F", proto), first, closer, good]))
    except RulesRefusedError as caught:
        assert world.kind != "legacy", "iptables-legacy takes it"
        assert [r.rule for r in caught.refused] == [closer]
    else:
        assert world.kind == "legacy", "iptables-nft refuses it"
    assert await world.rules(proto, "filter", "FORWARD") == ["-A FORWARD -j ACCEPT"]


def test_the_fake_refuses_what_iptables_refuses_in_a_loop() -> None:
    async def main() -> None:
        fake = FakeClient(V4, runner=FakeRunner())
        await fake.restore("*filter\n:LOOP-A - [0:0]\n-A INPUT -j LOOP-A\nCOMMIT\n")
        with pytest.raises(Exception):  # noqa: B017 - the fake's error is the real one's
            await fake.restore("*filter\n-A LOOP-A -j LOOP-A\nCOMMIT\n")

    anyio.run(main)


# -- one controller, any event loop ---------------------------------------------------------------


def test_a_controller_first_used_under_asyncio_works_under_trio(netns: str) -> None:
    for kind in ("fake", "nft"):
        world = World(kind, netns)
        controller = Controller(world.client(V4))
        rules = RuleSet(append=[rule(V4, "INPUT", "-s", net(V4, 8), "-j", "ACCEPT")])
        anyio.run(controller.set, rules, backend="asyncio")
        anyio.run(controller.reconcile, backend="trio")
        assert controller.last_stats["writes"] == 0
        anyio.run(controller.cleanup, backend="trio")
        anyio.run(controller.reconcile, backend="asyncio")


async def test_keeping_a_chain_is_logged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    inside = rule(V4, "KEPT", "-j", "RETURN")
    controller = controller_for(world, V4)
    await controller.set(RuleSet(append=[Chain("filter", "KEPT", V4), inside]))
    with caplog.at_level(logging.INFO, logger="aioiptables"):
        await controller.set(RuleSet(append=[inside]))
    assert "KEPT" in caplog.text and "stays" in caplog.text
