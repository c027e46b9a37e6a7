"""Never harm, always converge: rules iptables rewrites, foreign rules, refused rules.

Every test runs on the fake and on real iptables (nft and legacy, each in a
private namespace), for IPv4 and IPv6, under asyncio and trio, unless it says
otherwise. The promises pinned here are written up in docs/reliability.md.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Awaitable, Callable, Sequence

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioiptables import (
    Chain,
    Completed,
    Controller,
    FakeClient,
    InvalidRuleError,
    IPTablesError,
    Protocol,
    Rule,
    RuleSet,
    RulesRefusedError,
    Runner,
)
from aioiptables.plan import chain_tag, owner_tag
from conftest import World, controller_for, net

pytestmark = pytest.mark.anyio

V4, V6 = Protocol.IPV4, Protocol.IPV6


# -- 1. nothing is ever injected into a restore payload -------------------------------------------


def attack(tail: str) -> tuple[str, ...]:
    """37 comments of 250 bytes, then one whose end would be cut off by
    iptables-restore's 10,240-byte line buffer and run as its own command."""
    spec: list[str] = []
    for _ in range(37):
        spec += ["-m", "comment", "--comment", "c" * 250]
    return (*spec, "-m", "comment", "--comment", "x" * 40 + tail, "-j", "ACCEPT")


ATTACKS = {
    "flush the table": " -F -m comment --comment ",
    "add an ACCEPT rule": " -A INPUT -s 6.6.6.6/32 -j ACCEPT -m comment --comment ",
}


@pytest.mark.parametrize("tail", list(ATTACKS.values()), ids=list(ATTACKS))
async def test_a_rule_too_long_for_a_restore_line_is_refused_before_any_process(
    world: World, tail: str
) -> None:
    await world.iptables(V4, "-A", "INPUT", "-s", "10.0.0.0/8", "-j", "ACCEPT")
    before = await world.snapshot(V4)
    controller = controller_for(world, V4)
    with pytest.raises(InvalidRuleError, match="cut the line"):
        await controller.set(RuleSet(append=[Rule.ipv4("filter", "FORWARD", *attack(tail))]))
    assert controller.calls == 0
    assert await world.snapshot(V4) == before
    # The controller still works, with its previous (empty) rule set.
    await controller.set(RuleSet(append=[Rule.ipv4("filter", "FORWARD", "-j", "ACCEPT")]))
    assert await world.rules(V4, "filter", "INPUT") == ["-A INPUT -s 10.0.0.0/8 -j ACCEPT"]


# -- 2. no rule set makes a chain grow -------------------------------------------------------------

# Rules iptables prints otherwise than written while the canonicalizer takes
# them for exact: each used to be appended again at every reconcile.
REWRITTEN: dict[str, tuple[str, ...]] = {
    "a log prefix of 40 characters (iptables keeps 29)": ("-j", "LOG", "--log-prefix", "p" * 40),
    "a comment of 256 characters (iptables keeps 255)": (
        "-m",
        "comment",
        "--comment",
        "c" * 256,
        "-j",
        "ACCEPT",
    ),
    "an nflog prefix of 70 characters (legacy keeps 63)": ("-j", "NFLOG", "--nflog-prefix", "n" * 70),
    "a rewritten rule after an exact one": ("-s", "LAN", "-j", "LOG", "--log-prefix", "q" * 33),
}


def rewritten(proto: Protocol, spec: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(net(proto) if token == "LAN" else token for token in spec)


@pytest.mark.parametrize("owner", [None, "agent"], ids=["no-owner", "owner"])
@pytest.mark.parametrize("spec", list(REWRITTEN.values()), ids=list(REWRITTEN))
async def test_a_rule_iptables_rewrites_never_grows_its_chain_and_cleanup_removes_it(
    world: World, proto: Protocol, spec: tuple[str, ...], owner: str | None
) -> None:
    spec = rewritten(proto, spec)
    exact = Rule("filter", "GROW", ("-s", net(proto, 2), "-j", "RETURN"), proto)
    rules = RuleSet(append=[Chain("filter", "GROW", proto), exact, Rule("filter", "GROW", spec, proto)])
    input_rule = Rule("filter", "INPUT", spec, proto)  # a builtin chain: cleanup cannot just drop it
    controller = controller_for(world, proto, owner=owner)
    await controller.set(RuleSet(append=[*rules.append, input_rule]))
    expected = 2 + (1 if owner else 0)  # the owner's chain marker
    for _ in range(4):
        await controller.reconcile()
        assert controller.last_stats["writes"] == 0, "the read after the write learned the printed form"
        assert len(await world.rules(proto, "filter", "GROW")) == expected
        assert len(await world.rules(proto, "filter", "INPUT")) == 1
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []
    assert "GROW" not in await world.iptables(proto, "-S")


async def test_set_then_cleanup_with_no_reconcile_between_removes_a_rewritten_rule(
    world: World, proto: Protocol
) -> None:
    # cleanup()'s own read is the first after the write: it learns there.
    rule = Rule("filter", "INPUT", ("-j", "LOG", "--log-prefix", "z" * 50), proto)
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[rule]))
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []


async def test_a_set_again_with_owner_keeps_what_was_learned(world: World, proto: Protocol) -> None:
    # The example agent's SIGHUP reload: set() with the same rules.
    rules = RuleSet(append=[Rule("filter", "INPUT", ("-j", "LOG", "--log-prefix", "r" * 45), proto)])
    controller = controller_for(world, proto, owner="agent")
    await controller.set(rules)
    await controller.reconcile()
    for _ in range(3):
        await controller.set(rules)
        assert controller.last_stats["writes"] == 0
    assert len(await world.rules(proto, "filter", "INPUT")) == 1


@pytest.mark.parametrize(
    "spec",
    [
        ("-s", "10.0.0.1,10.0.0.2", "-j", "ACCEPT"),
        ("-d", "10.0.0.0/8,192.168.0.0/16", "-j", "ACCEPT"),
    ],
    ids=["two sources", "two destinations"],
)
async def test_a_rule_iptables_would_split_in_two_is_refused_up_front(
    world: World, spec: tuple[str, ...]
) -> None:
    controller = controller_for(world, V4)
    with pytest.raises(InvalidRuleError, match="one Rule per address"):
        await controller.set(RuleSet(append=[Rule("filter", "INPUT", spec, V4)]))
    assert controller.calls == 0


async def test_rules_whose_printed_form_cannot_delete_are_deleted_as_written(
    world: World, proto: Protocol
) -> None:
    # iptables cannot -D "-m recent ... --mask ... --rsource" as it prints it.
    recent = ("-m", "recent", "--name", "seen", "--rcheck", "--seconds", "60", "-j", "DROP")
    syn = ("-p", "tcp", "--syn", "-m", "connlimit", "--connlimit-above", "10", "-j", "REJECT")
    first = Rule("filter", "INPUT", ("-s", net(proto, 30), "-j", "RETURN"), proto)
    rules = [first, Rule("filter", "INPUT", recent, proto), Rule("filter", "INPUT", syn, proto)]
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=rules))
    await world.iptables(proto, "-D", "INPUT", *first.spec)  # the rest must be rewritten after it
    await controller.reconcile()
    assert len(await world.rules(proto, "filter", "INPUT")) == 3
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []


# Rules that repeat a tcp (udp) match. iptables-nft 1.8.11 on reads them back
# folded into one match (1.8.8 on those with ports or flags), and its -D then
# finds them by the folded spelling only: written as given, cleanup left them.
FOLDED = [
    ("-p", "tcp", "-m", "tcp", "-m", "tcp", "--dport", "1", "-j", "DROP"),
    ("-p", "tcp", "-m", "tcp", "--sport", "1", "-m", "tcp", "--dport", "2", "-j", "DROP"),
    ("-p", "tcp", "--dport", "3", "-m", "tcp", "--sport", "4", "-j", "DROP"),
    ("-p", "udp", "-m", "udp", "--sport", "5", "-m", "udp", "--dport", "6", "-j", "DROP"),
    ("-p", "tcp", "-m", "tcp", "--tcp-option", "5", "-m", "tcp", "--dport", "7", "-j", "DROP"),
]


@pytest.mark.parametrize("owner", [None, "folds"], ids=["no-owner", "owner"])
async def test_rules_iptables_nft_folds_are_kept_once_dropped_and_cleaned_up(
    world: World, proto: Protocol, owner: str | None
) -> None:
    first = Rule(
        "filter", "INPUT", ("-p", "tcp", "-m", "tcp", "-m", "tcp", "--sport", "9", "-j", "RETURN"), proto
    )
    rules = [Rule("filter", "INPUT", spec, proto) for spec in FOLDED]
    if owner is not None:
        # What an earlier run wrote as given (legacy lists it so): a leftover,
        # deleted as listed.
        tag = ("-m", "comment", "--comment", owner_tag(owner))
        await world.iptables(proto, "-A", "INPUT", *FOLDED[0][:-2], *tag, "-j", "ACCEPT")
    controller = controller_for(world, proto, owner=owner)
    await controller.set(RuleSet(append=rules, prepend=[first]))
    for _ in range(2):
        await controller.reconcile()
        assert controller.last_stats["writes"] == 0, "found as written, every one"
    assert len(await world.rules(proto, "filter", "INPUT")) == 1 + len(FOLDED)
    await controller.set(RuleSet(append=rules[1:], prepend=[first]))  # the first one dropped
    assert len(await world.rules(proto, "filter", "INPUT")) == len(FOLDED)
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []


# -- 3. rules that are not ours are never moved or deleted ----------------------------------------


@pytest.mark.parametrize("owner", [None, "agent"], ids=["no-owner", "owner"])
async def test_an_identical_foreign_rule_is_never_moved_or_deleted(
    world: World, proto: Protocol, owner: str | None
) -> None:
    admin = ("-s", net(proto, 10), "-j", "ACCEPT")
    await world.iptables(proto, "-A", "INPUT", *admin)
    await world.iptables(proto, "-A", "INPUT", "-j", "DROP")
    before = await world.rules(proto, "filter", "INPUT")
    ours = [
        Rule("filter", "INPUT", ("-s", net(proto, 20), "-j", "ACCEPT"), proto),
        Rule("filter", "INPUT", admin, proto),  # the admin's rule, after another one of ours
    ]
    controller = controller_for(world, proto, owner=owner)
    await controller.set(RuleSet(append=ours))
    after = await world.rules(proto, "filter", "INPUT")
    assert after[: len(before)] == before, "the admin's rules were moved or deleted"
    assert len(after) == len(before) + 2, "our two rules are appended after them"
    for _ in range(3):
        await controller.reconcile()
        assert controller.last_stats["writes"] == 0
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == before


async def test_a_foreign_rule_that_already_satisfies_the_rule_set_is_used_but_never_cleaned_up(
    world: World, proto: Protocol
) -> None:
    spec = ("-s", net(proto, 11), "-j", "ACCEPT")
    await world.iptables(proto, "-A", "FORWARD", *spec)
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[Rule("filter", "FORWARD", spec, proto)]))
    assert controller.last_stats["writes"] == 0, "no duplicate is written"
    await controller.cleanup()
    assert len(await world.rules(proto, "filter", "FORWARD")) == 1, "cleanup deleted a rule it did not write"


async def test_ours_below_an_identical_foreign_rule_is_deleted_by_position(
    world: World, proto: Protocol
) -> None:
    spec = ("-s", net(proto, 12), "-j", "ACCEPT")
    await world.iptables(proto, "-A", "OUTPUT", *spec)
    await world.iptables(proto, "-A", "OUTPUT", "-j", "DROP")
    before = await world.rules(proto, "filter", "OUTPUT")
    first = Rule("filter", "OUTPUT", ("-d", net(proto, 13), "-j", "RETURN"), proto)
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[first, Rule("filter", "OUTPUT", spec, proto)]))
    assert len(await world.rules(proto, "filter", "OUTPUT")) == 4
    await controller.cleanup()
    # "-D OUTPUT <spec>" would have deleted the foreign copy at the top.
    assert await world.rules(proto, "filter", "OUTPUT") == before
    assert any(
        line.startswith("-D OUTPUT ") and line.split()[2].isdigit()
        for p in controller.last_plans
        for line in p.payload.split("\n")
    )


async def test_a_chain_that_existed_before_keeps_its_foreign_rules_at_cleanup(
    world: World, proto: Protocol
) -> None:
    await world.iptables(proto, "-N", "SHARED")
    await world.iptables(proto, "-A", "SHARED", "-s", net(proto, 14), "-j", "RETURN")
    controller = controller_for(world, proto)
    await controller.set(
        RuleSet(append=[Chain("filter", "SHARED", proto), Rule("filter", "SHARED", ("-j", "ACCEPT"), proto)])
    )
    assert len(await world.rules(proto, "filter", "SHARED")) == 2
    await controller.cleanup()
    assert await world.rules(proto, "filter", "SHARED") == [f"-A SHARED -s {net(proto, 14)} -j RETURN"]


class ForeignWriteFirst(Runner):
    """Runs ``before`` once, just before the first restore: someone else's
    write landing between a controller's read and its write."""

    def __init__(self, inner: Runner, before: Callable[[], Awaitable[object]]) -> None:
        self.inner = inner
        self.before: Callable[[], Awaitable[object]] | None = before

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        if argv[0].endswith("-restore") and self.before is not None:
            before, self.before = self.before, None
            await before()
        return await self.inner.run(argv, input=input, timeout=timeout)


async def test_a_chain_created_by_someone_else_after_the_read_is_never_flushed(
    world: World, proto: Protocol
) -> None:
    # The plan creates a chain it read as missing with "-N", never with
    # ":X - [0:0]", which would flush the chain that now exists: the write
    # fails whole, and the next reconcile finds the chain as it is.
    foreign = f"-A LATE -s {net(proto, 15)} -j RETURN"

    async def create_it() -> None:
        await world.iptables(proto, "-N", "LATE")
        await world.iptables(proto, *foreign.split())

    controller = controller_for(world, proto)
    client = controller.clients[0] if proto is Protocol.IPV4 else controller.clients[-1]
    client.runner = ForeignWriteFirst(client.runner, create_it)
    wanted = RuleSet([Chain("filter", "LATE", proto), Rule("filter", "LATE", ("-j", "ACCEPT"), proto)])
    with pytest.raises(IPTablesError) as caught:
        await controller.set(wanted)
    assert not caught.value.is_not_exist
    assert await world.rules(proto, "filter", "LATE") == [foreign], "nothing of the table was written"
    await controller.reconcile()
    assert await world.rules(proto, "filter", "LATE") == [foreign, "-A LATE -j ACCEPT"]


async def test_a_rule_moved_by_hand_is_still_ours(world: World, proto: Protocol) -> None:
    a = Rule("filter", "INPUT", ("-s", net(proto, 15), "-j", "ACCEPT"), proto)
    b = Rule("filter", "INPUT", ("-s", net(proto, 16), "-j", "ACCEPT"), proto)
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[a, b]))
    await world.iptables(proto, "-D", "INPUT", *a.spec)
    await world.iptables(proto, "-A", "INPUT", *a.spec)
    await controller.reconcile()
    assert len(await world.rules(proto, "filter", "INPUT")) == 2, "no copy was left behind"
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []


OWNERS = [("x", "x.chain"), ("x", "x-y"), ("a.b", "a")]


@pytest.mark.parametrize(("one", "other"), OWNERS, ids=[f"{a}-vs-{b}" for a, b in OWNERS])
async def test_owners_never_take_each_others_rules_or_chains(world: World, one: str, other: str) -> None:
    first = controller_for(world, V4, owner=one)
    second = controller_for(world, V4, owner=other)
    await first.set(RuleSet(append=[Chain.ipv4("filter", "ONE"), Rule.ipv4("filter", "ONE", "-j", "RETURN")]))
    await second.set(
        RuleSet(append=[Chain.ipv4("filter", "TWO"), Rule.ipv4("filter", "TWO", "-j", "RETURN")])
    )
    await first.cleanup()
    assert len(await world.rules(V4, "filter", "TWO")) == 2, "the other owner's chain lost its rules"
    # A new controller of the first owner finds no leftovers in the other's chain.
    again = controller_for(world, V4, owner=one)
    await again.set(RuleSet())
    assert len(await world.rules(V4, "filter", "TWO")) == 2


@pytest.mark.parametrize("owner", ["x:chain", "", "a b", "x" * 65, "ünïcode"])
def test_an_owner_that_could_be_mistaken_for_another_tag_is_refused(owner: str) -> None:
    with pytest.raises(InvalidRuleError, match="owner"):
        Controller(FakeClient(), owner=owner)


def test_owner_tags_are_unambiguous() -> None:
    tags = {owner_tag(o) for o in ("x", "x.chain", "chain", "canary")} | {
        chain_tag(o) for o in ("x", "chain")
    }
    assert len(tags) == 6
    assert "aioiptables:canary" not in tags


# -- 4. one bad rule never stops the rest ---------------------------------------------------------


def ipset(world: World, proto: Protocol, *args: str) -> None:
    assert world.netns is not None
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{world.netns}", "--", "ipset", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(params=["nft", "legacy"])
def real(request: pytest.FixtureRequest) -> World:
    return World(str(request.param), request.getfixturevalue("netns"))


async def test_a_rule_iptables_refuses_is_reported_by_name_and_the_rest_is_written(
    real: World, proto: Protocol
) -> None:
    good1 = Rule("filter", "INPUT", ("-s", net(proto, 1), "-j", "ACCEPT"), proto)
    bad = Rule("filter", "INPUT", ("-m", "set", "--match-set", "later", "src", "-j", "ACCEPT"), proto)
    good2 = Rule("filter", "INPUT", ("-s", net(proto, 2), "-j", "ACCEPT"), proto)
    other_table = Rule("nat", "POSTROUTING", ("-s", net(proto, 3), "-j", "MASQUERADE"), proto)
    controller = controller_for(real, proto)
    with pytest.raises(RulesRefusedError) as caught:
        await controller.set(RuleSet(append=[good1, bad, good2, other_table]))
    (refused,) = caught.value.refused
    assert refused.rule == bad
    assert "later" in refused.message and "line" not in refused.message, refused.message
    assert "later" in str(caught.value)
    assert len(await real.rules(proto, "filter", "INPUT")) == 2
    assert len(await real.rules(proto, "nat", "POSTROUTING")) == 1
    # Every reconcile tries the refused rule again, and only it.
    with pytest.raises(RulesRefusedError):
        await controller.reconcile()
    assert controller.last_stats["writes"] == 0
    ipset(real, proto, "create", "later", "hash:ip", "family", "inet" if proto is V4 else "inet6")
    await controller.reconcile()
    lines = await real.rules(proto, "filter", "INPUT")
    assert len(lines) == 3 and "later" in lines[1], "the rule landed in its place"
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0


async def test_a_jump_to_a_chain_nobody_creates_is_refused_alone(real: World, proto: Protocol) -> None:
    good = Rule("filter", "FORWARD", ("-s", net(proto, 4), "-j", "ACCEPT"), proto)
    bad = Rule("filter", "FORWARD", ("-j", "NOBODY-MAKES-IT"), proto)
    controller = controller_for(real, proto)
    with pytest.raises(RulesRefusedError) as caught:
        await controller.set(RuleSet(append=[bad, good]))
    assert [r.rule for r in caught.value.refused] == [bad]
    assert await real.rules(proto, "filter", "FORWARD") == [f"-A FORWARD -s {net(proto, 4)} -j ACCEPT"]


async def test_run_reports_refused_rules_on_errors_and_keeps_the_rest_in_place(real: World) -> None:
    good = Rule.ipv4("filter", "INPUT", "-s", "10.9.0.0/16", "-j", "ACCEPT")
    bad = Rule.ipv4("filter", "INPUT", "-m", "set", "--match-set", "nosuch", "src", "-j", "DROP")
    controller = controller_for(real, V4, resync=0.05)
    received: list[Exception] = []
    with pytest.raises(RulesRefusedError):
        await controller.set(RuleSet(append=[good, bad]))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            async for error in controller.errors:
                received.append(error)
                if len(received) == 2:
                    break
            tg.cancel_scope.cancel()
    assert all(isinstance(e, RulesRefusedError) and e.refused[0].rule == bad for e in received)
    assert len(await real.rules(V4, "filter", "INPUT")) == 1


async def test_a_chain_we_stop_using_stays_while_a_foreign_rule_jumps_to_it(
    real: World, proto: Protocol, caplog: pytest.LogCaptureFixture
) -> None:
    controller = controller_for(real, proto)
    await controller.set(
        RuleSet(
            append=[
                Chain("filter", "OURS", proto),
                Rule("filter", "OURS", ("-s", net(proto, 5), "-j", "ACCEPT"), proto),
                Rule("filter", "FORWARD", ("-s", net(proto, 6), "-j", "ACCEPT"), proto),
            ]
        )
    )
    await real.iptables(proto, "-A", "INPUT", "-j", "OURS")  # someone else's jump
    keep = Rule("filter", "FORWARD", ("-s", net(proto, 7), "-j", "ACCEPT"), proto)
    with caplog.at_level(logging.INFO, logger="aioiptables"):
        await controller.set(RuleSet(append=[keep]))  # no error: the rest of the table is written
    assert "still referenced" in caplog.text
    assert await real.rules(proto, "filter", "OURS") == [], "our rules left the chain"
    assert await real.rules(proto, "filter", "FORWARD") == [f"-A FORWARD -s {net(proto, 7)} -j ACCEPT"]
    await real.iptables(proto, "-D", "INPUT", "-j", "OURS")
    await controller.reconcile()
    assert "OURS" not in await real.iptables(proto, "-S"), "the chain goes once nothing jumps to it"


# -- set() is all-or-nothing about its own state --------------------------------------------------


def refused_rule_sets(proto: Protocol) -> dict[str, RuleSet]:
    return {
        "the same rule twice, spelled two ways": RuleSet(
            append=[
                Rule("filter", "INPUT", ("-p", "tcp", "--dport", "80", "-j", "ACCEPT"), proto),
                Rule("filter", "INPUT", ("-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "ACCEPT"), proto),
            ]
        ),
        "a chain named like the canary": RuleSet(append=[Chain("filter", "CANARY", proto)]),
        "a rule in the canary chain": RuleSet(append=[Rule("filter", "CANARY", ("-j", "RETURN"), proto)]),
        "a rule for a protocol without a client": RuleSet(
            append=[Rule("filter", "INPUT", ("-j", "ACCEPT"), V6 if proto is V4 else V4)]
        ),
    }


@pytest.mark.parametrize(
    "case",
    list(refused_rule_sets(V4)),
)
async def test_a_refused_rule_set_leaves_the_previous_one_in_force(
    world: World, proto: Protocol, case: str
) -> None:
    controller = controller_for(world, proto, canary="CANARY")
    first = RuleSet(append=[Rule("filter", "INPUT", ("-s", net(proto, 8), "-j", "ACCEPT"), proto)])
    await controller.set(first)
    calls = controller.calls
    with pytest.raises(InvalidRuleError):
        await controller.set(refused_rule_sets(proto)[case])
    assert controller.calls == calls, "refused before any process"
    assert controller.append_rules == first.append
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0
    await controller.set(RuleSet())
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []


# -- 2, by machine: generated rules, rewriting families included ----------------------------------


def _text(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=st.sampled_from("abcxyz019 _-:.\"'#/"), min_size=low, max_size=high)


@st.composite
def specs(draw: st.DrawFn, proto: Protocol) -> tuple[str, ...]:
    """One rule spec, from families iptables prints as written and families it
    rewrites (lengths straddle each limit: log prefix 29, comment 255, nflog 63)."""
    family = draw(st.sampled_from(["log", "comment", "nflog", "port", "address", "merged"]))
    if family == "log":
        return ("-j", "LOG", "--log-prefix", draw(_text(20, 60)))
    if family == "comment":
        return (
            "-m",
            "comment",
            "--comment",
            draw(_text(240, 300)),
            "-j",
            draw(st.sampled_from(["ACCEPT", "RETURN"])),
        )
    if family == "nflog":
        return ("-j", "NFLOG", "--nflog-prefix", draw(_text(50, 100)))
    port = str(draw(st.integers(1, 65535)))
    if family == "port":
        return ("-p", draw(st.sampled_from(["tcp", "udp"])), "--dport", port, "-j", "ACCEPT")
    if family == "merged":
        return ("-p", "tcp", "-m", "tcp", "-m", "tcp", "--dport", port, "-j", "DROP")
    return ("-s", net(proto, draw(st.integers(1, 250))), "-j", "RETURN")


RECONCILES = 3


@pytest.mark.parametrize("owner", [None, "prop"], ids=["no-owner", "owner"])
def test_generated_rule_sets_never_grow_a_chain(
    netns: str, backend: str, proto: Protocol, owner: str | None
) -> None:
    """Generated rules, every rewriting family among them, reconciled again
    and again: every chain holds exactly one line per rule, the second read
    after a write writes nothing, and cleanup leaves nothing behind."""
    world = World(backend, netns)
    examples: list[int] = []

    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        chain_specs = data.draw(st.lists(specs(proto), min_size=1, max_size=4), label="GROW")
        input_specs = data.draw(st.lists(specs(proto), max_size=2), label="INPUT")
        rules = [Rule("filter", "GROW", s, proto) for s in chain_specs]
        rules += [Rule("filter", "INPUT", s, proto) for s in input_specs]
        controller = controller_for(world, proto, owner=owner)

        async def run() -> None:
            try:
                await controller.set(RuleSet(append=[Chain("filter", "GROW", proto), *rules]))
            except InvalidRuleError:
                return  # refused up front (two rules the same by meaning): nothing written
            examples.append(len(rules))
            for _ in range(RECONCILES):
                await controller.reconcile()
            assert controller.last_stats["writes"] == 0
            marker = 1 if owner else 0
            assert len(await world.rules(proto, "filter", "GROW")) == len(chain_specs) + marker
            assert len(await world.rules(proto, "filter", "INPUT")) == len(input_specs)
            await controller.cleanup()
            assert await world.rules(proto, "filter", "INPUT") == []
            assert "GROW" not in await world.iptables(proto, "-S")

        anyio.run(run)

    check()
    assert len(examples) >= 6, f"too few rule sets were accepted: {examples}"


async def replace_fresh_log_rule(world: World, proto: Protocol, prefix: str) -> Controller:
    """Write a log rule, then, before the controller reads again, put a log
    rule with ``prefix`` in its place behind its back."""
    ours = Rule("filter", "INPUT", ("-j", "LOG", "--log-prefix", "p" * 40), proto)
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[ours]))
    await world.iptables(proto, "-D", "INPUT", *ours.spec)
    await world.iptables(proto, "-A", "INPUT", "-j", "LOG", "--log-prefix", prefix)
    return controller


async def test_a_near_copy_put_in_place_of_a_fresh_rule_is_never_deleted(
    world: World, proto: Protocol
) -> None:
    # Their prefix is a cut of ours, as iptables itself would print ours: we
    # take it for ours, but a delete that finds nothing undoes that belief.
    controller = await replace_fresh_log_rule(world, proto, "p" * 10)
    await controller.reconcile()
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == [f"-A INPUT -j LOG --log-prefix {'p' * 10}"]


async def test_a_rule_replaced_by_another_of_the_same_shape_is_written_again(
    world: World, proto: Protocol
) -> None:
    controller = await replace_fresh_log_rule(world, proto, "theirs")
    await controller.reconcile()
    await controller.reconcile()
    assert controller.last_stats["writes"] == 0
    assert await world.rules(proto, "filter", "INPUT") == [
        "-A INPUT -j LOG --log-prefix theirs",
        f"-A INPUT -j LOG --log-prefix {'p' * 29}",  # iptables (and the fake) keep 29 bytes
    ]
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == ["-A INPUT -j LOG --log-prefix theirs"]


async def test_a_comment_cut_in_the_middle_of_a_character_is_learned(world: World, proto: Protocol) -> None:
    # iptables keeps 255 bytes of a comment: here the cut falls inside "é",
    # and the printed comment ends in half a character.
    rule = Rule("filter", "INPUT", ("-m", "comment", "--comment", "0" * 254 + "é" * 5, "-j", "ACCEPT"), proto)
    controller = controller_for(world, proto)
    await controller.set(RuleSet(append=[rule]))
    for _ in range(3):
        await controller.reconcile()
        assert len(await world.rules(proto, "filter", "INPUT")) == 1
    assert controller.last_stats["writes"] == 0
    await controller.cleanup()
    assert await world.rules(proto, "filter", "INPUT") == []
