"""Never harm (issue #9, points 5 and 6), on real iptables: both backends,
IPv4 and IPv6, each test in its own network namespace.

Point 5: rules another tool adds with a newline in a comment (or an
interface name) are printed over several lines; reads through the RuleCache
(``iptables -S``), through ``iptables-save`` and through a Controller still
find our rules, in their places, and never mistake a comment's line for a rule.

Point 6: what check_rule accepts, iptables takes; and for each refusal, what
iptables itself does with the rule is written down here and checked, for
each release where releases differ (the one under test says which it is):
it refuses it too, or takes it and prints another rule, or splits it into
several rules, or (iptables-restore) skips the line without a word.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

from aioiptables import Client, Controller, InvalidRuleError, Protocol, Rule, RuleCache, RuleSet
from aioiptables.parse import OPAQUE, check_rule, parse_save
from aioiptables.syntax import split_line
from conftest import ClientFactory, ns_exec
from iptables_versions import Releases, between, release_of, since

pytestmark = [pytest.mark.anyio, pytest.mark.iptables]

V4, V6 = Protocol.IPV4, Protocol.IPV6


# -- point 5: foreign lines never break a read ------------------------------------------------------

#: Foreign rules, as another tool adds them (argv, not a restore line).
FOREIGN = [
    ("-m", "comment", "--comment", "a\nb", "-j", "DROP"),
    ("-p", "tcp", "-m", "comment", "--comment", 'x\ny "q" z', "-m", "tcp", "--dport", "22", "-j", "ACCEPT"),
    ("-m", "comment", "--comment", "x\n-A INPUT -j DROP\n", "-j", "DROP"),
    ("-m", "comment", "--comment", "items:\n* one\n# two\n:three\nCOMMIT\n\n*nat", "-j", "DROP"),
    ("-m", "comment", "--comment", "\n", "-j", "DROP"),
    ("-i", "a\nb", "-j", "ACCEPT"),
    ("-i", 'a"b', "-j", "ACCEPT"),
    ("-m", "comment", "--comment", "u\u2028v\x85w", "-j", "ACCEPT"),
]
#: Where they are read as opaque rules (a newline, or a control character).
OPAQUE_AT = [1, 2, 3, 4, 5, 6]


def ours(proto: Protocol) -> list[Rule]:
    address = "10.1.2.3" if proto is V4 else "fd00::3"
    return [
        Rule("filter", "INPUT", ("-j", "ACCEPT"), proto),
        Rule("filter", "INPUT", ("-s", address, "-p", "tcp", "--dport", "80", "-j", "ACCEPT"), proto),
        Rule(
            "filter",
            "INPUT",
            ("-m", "comment", "--comment", "ours: after the foreign ones", "-j", "RETURN"),
            proto,
        ),
    ]


async def _with_foreign_rules(netns: str, backend: str, client: Client) -> list[Rule]:
    """INPUT: one of ours, every foreign rule, then the rest of ours."""
    first, *rest = ours(client.proto)
    await client.append(first.table, first.chain, *first.spec)
    program = f"{client.proto.command}-{backend}"
    for spec in FOREIGN:
        ns_exec(netns, program, "-A", "INPUT", *spec)
    for rule in rest:
        await client.append(rule.table, rule.chain, *rule.spec)
    return ours(client.proto)


async def test_the_rule_cache_finds_our_rules_around_multiline_foreign_ones(
    netns: str, backend: str, proto: Protocol, make_client: ClientFactory
) -> None:
    client = make_client(proto)
    wanted = await _with_foreign_rules(netns, backend, client)
    cache = RuleCache(client)
    for rule in wanted:
        assert await cache.exists(rule), rule
    # A comment's line is not a rule, though it reads like one.
    assert not await cache.exists(Rule("filter", "INPUT", ("-j", "DROP"), proto))
    listing = await cache.listing(proto, "filter", "INPUT")
    assert len(listing.specs) == 1 + len(FOREIGN) + 2  # every rule in its place
    assert [n for n, spec in enumerate(listing.specs) if spec[0] == OPAQUE] == OPAQUE_AT
    assert listing.specs[7] == ("-i", 'a"b', "-j", "ACCEPT")
    assert listing.specs[8] == ("-m", "comment", "--comment", "u\u2028v\x85w", "-j", "ACCEPT")


async def test_a_table_snapshot_finds_our_rules_around_multiline_foreign_ones(
    netns: str, backend: str, proto: Protocol, make_client: ClientFactory
) -> None:
    client = make_client(proto)
    wanted = await _with_foreign_rules(netns, backend, client)
    await client.append("filter", "FORWARD", "-j", "ACCEPT")
    await client.append("nat", "POSTROUTING", "-j", "MASQUERADE")
    text = await client.save("filter") + await client.save("nat")
    tables = parse_save(text, proto)
    chain = tables["filter"].chain("INPUT")
    assert all(chain.has(rule.spec) for rule in wanted)
    assert not chain.has(("-j", "DROP"))
    assert [n for n, spec in enumerate(chain.specs) if spec[0] == OPAQUE] == OPAQUE_AT
    assert len(chain.specs) == 1 + len(FOREIGN) + 2
    # The save goes on after them: the next chain, and the next table.
    assert tables["filter"].chain("FORWARD").has(("-j", "ACCEPT"))
    assert tables["nat"].chain("POSTROUTING").has(("-j", "MASQUERADE"))
    cache = RuleCache(client)
    snapshot = await cache.snapshot(proto, "filter")
    assert all([await cache.exists(rule) for rule in wanted]) and snapshot.chain("INPUT").specs == chain.specs


@pytest.mark.parametrize("owner", [None, "hostile-test"], ids=["no-owner", "owner"])
async def test_a_controller_converges_beside_multiline_foreign_rules(
    netns: str, backend: str, proto: Protocol, make_client: ClientFactory, owner: str | None
) -> None:
    client = make_client(proto)
    program = f"{proto.command}-{backend}"
    for spec in FOREIGN:
        ns_exec(netns, program, "-A", "INPUT", *spec)
    before = ns_exec(netns, program, "-S", "INPUT")
    controller = Controller(*((client, None) if proto is V4 else (None, client)), owner=owner)
    await controller.set(RuleSet(append=ours(proto)))
    assert controller.last_plans  # written once
    await controller.reconcile()
    assert controller.last_plans == []  # and then found, not written again
    assert ns_exec(netns, program, "-S", "INPUT").count("ours: after the foreign ones") == 1
    await controller.cleanup()
    assert ns_exec(netns, program, "-S", "INPUT") == before  # the foreign rules untouched


# -- point 6: what check_rule accepts, iptables takes ---------------------------------------------------

ACCEPTED = [
    (V4, "-p tcp --dport ssh -j ACCEPT"),
    (V4, "-p tcp --dport 1:1 -j ACCEPT"),
    (V4, "-p tcp --dport 0x50 -j ACCEPT"),
    (V4, "-p tcp --dport :1023 -j ACCEPT"),
    (V4, "-p udp --dport domain -j ACCEPT"),
    (V4, "-p tcp -m multiport --dports 22,80:90,https -j ACCEPT"),
    (V4, '-m comment --comment "-x y" -j ACCEPT'),
    (V4, '-j LOG --log-prefix "- a"'),
    (V4, "-m length --length 100:200 -j ACCEPT"),
    (V4, "-m conntrack --ctproto tcp --ctorigdstport 53 -j ACCEPT"),
    (V4, "-m conntrack --ctexpire 1:9 -j ACCEPT"),
    (V4, "-s 10.1 -j ACCEPT"),
    (V4, "-s 1.2.3.4/255.0.255.0 -j ACCEPT"),
    (V4, "-s 10.0.0.1/0x10 -j ACCEPT"),
    (V4, "-s localhost -j ACCEPT"),
    (V4, "-i eth0.100 -j ACCEPT"),
    (V4, "-p icmp --icmp-type 255/0 -j ACCEPT"),
    (V4, "-p tcp --destination-port=80 -j ACCEPT"),
    (V4, "-p tcp --dp 80 -j ACCEPT"),
    (V6, "-d ::ffff:10.0.0.1/128 -j ACCEPT"),
    (V6, "-d ::1/ffff:: -j ACCEPT"),
    (V6, "-s fd00::/64 -p udp --sport 1024: -j ACCEPT"),
    (V6, "-p ipv6-icmp --icmpv6-type 255/0 -j ACCEPT"),
]


def _run(netns: str, *argv: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("proto", [V4, V6], ids=["v4", "v6"])
def test_iptables_takes_what_check_rule_accepts(netns: str, backend: str, proto: Protocol) -> None:
    program = f"{proto.command}-{backend}"
    for spec_proto, text in ACCEPTED:
        if spec_proto is not proto:
            continue
        spec = tuple(split_line(text))
        check_rule(spec, proto)
        done = _run(netns, program, "-A", "INPUT", *spec)
        assert done.returncode == 0, f"{program} refused {text}: {done.stderr}"


# What iptables does with each rule check_rule refuses (1.8.9's, unless
# the entry says what other releases do).
REFUSES = "refuses"  # exits with an error
TAKES = "takes"  # takes it, and prints it as the rule given
SPLITS = "splits"  # makes several rules of it
SKIPS = "skips"  # iptables-restore skips the line and says nothing


@dataclass(frozen=True)
class Otherwise:
    """What some releases do instead, and why (the change in iptables' history)."""

    releases: Releases
    behaviour: str
    printed: tuple[str, ...]
    why: str


def B(
    proto: Protocol,
    given: str | tuple[str, ...],
    behaviour: str,
    printed: tuple[str, ...],
    *otherwise: Otherwise,
    id: str,
) -> object:
    """One entry: what iptables 1.8.9 does, then what other releases do instead."""
    return pytest.param(proto, given, behaviour, printed, otherwise, id=id)


_NEGATIVE = "9d41421a (1.8.11): libxtables refuses a reversed port range"
_DECREASING = "30a7f112 (1.8.11): libxtables refuses a decreasing range"
_CTPROTO_0 = "2e704f6d (1.8.10): conntrack refuses protocol 0"
_FULL_RANGE = "a86eb41e and 4195a89a (1.8.11): a negated range over every port is written and listed"
_NFT_NATIVE = "6aba94ef (1.8.8): iptables-nft writes tcp ports and flags as native expressions"

# (protocol, spec, what iptables does, the rules it prints when it takes the
# spec, what other releases do)
BEHAVIOUR = [
    B(V4, "-p tcp --dport abc", REFUSES, (), id="tcp-port-neither-number-nor-service"),
    B(V4, "-p tcp --dport SSH", REFUSES, (), id="service-names-are-case-sensitive"),
    B(V4, "-p tcp --sport 65536", REFUSES, (), id="tcp-port-out-of-range"),
    B(V4, "-p tcp --dport 80x", REFUSES, (), id="tcp-port-with-trailing-junk"),
    B(V4, "-p tcp --dport 5:3", REFUSES, (), id="reversed-tcp-range"),
    B(V4, "-p tcp --dport 1:2:3", REFUSES, (), id="tcp-range-of-three"),
    B(V4, "-p udp --dport 65536", TAKES, ("-p udp -m udp --dport 0",), id="udp-port-out-of-range-wraps-to-0"),
    B(V4, "-p udp --dport 5:3", TAKES, ("-p udp -m udp --dport 5:3",), Otherwise(since(1, 8, 11), REFUSES, (), _NEGATIVE), id="reversed-udp-range-matches-nothing"),
    B(V4, "-p udp --dport 0x50", REFUSES, (), id="udp-ports-are-decimal"),
    B(V4, "-p udp --sport nosuchservice", REFUSES, (), id="udp-unknown-service"),
    B(V4, "-p tcp -m multiport --dports 80,abc", REFUSES, (), id="multiport-unknown-service"),
    B(V4, "-p tcp -m multiport --dports 5:3", REFUSES, (), id="multiport-reversed-range"),
    B(V4, "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", REFUSES, (), id="multiport-more-than-15-ports"),
    B(V4, "-m length --length 200:100", TAKES, ("-m length --length 200:100",), Otherwise(since(1, 8, 11), REFUSES, (), _DECREASING), id="reversed-length-range-matches-nothing"),
    B(V4, "-m conntrack --ctexpire 9:1", TAKES, ("-m conntrack --ctexpire 9:1",), Otherwise(since(1, 8, 11), REFUSES, (), _DECREASING), id="reversed-ctexpire-range"),
    B(V4, "-m conntrack --ctorigdstport 70000", TAKES, ("-m conntrack --ctorigdstport 4464",), id="conntrack-port-out-of-range-wraps"),
    B(V4, "-m conntrack --ctproto 0", TAKES, ("-m conntrack --ctproto 0",), Otherwise(since(1, 8, 10), REFUSES, (), _CTPROTO_0), id="ctproto-0-matches-no-connection"),
    B(V4, "-m conntrack ! --ctproto all", TAKES, ("-m conntrack ! --ctproto 0",), Otherwise(since(1, 8, 10), REFUSES, (), _CTPROTO_0), id="ctproto-all-is-0"),
    B(V4, "-p tcp ! --dport 0:65535", TAKES, ("-p tcp -m tcp",),
      Otherwise(since(1, 8, 11), TAKES, ("-p tcp -m tcp ! --dport 0:65535",), _FULL_RANGE),
      Otherwise(between((1, 8, 8), (1, 8, 10), "nft"), TAKES, ("-p tcp",), _NFT_NATIVE + ", and none for this (a rule matching every packet)"),
      id="negated-range-over-every-port-matches-nothing"),
    B(V6, "-p udp ! --sport :", TAKES, ("-p udp -m udp",),
      Otherwise(since(1, 8, 11), TAKES, ("-p udp -m udp ! --sport 0:65535",), _FULL_RANGE),
      Otherwise(between((1, 8, 8), (1, 8, 10), "nft"), TAKES, ("-p udp",), _NFT_NATIVE + ", and none for this (a rule matching every packet)"),
      id="negated-udp-range-over-every-port-matches-nothing"),
    B(V4, "-p tcp --tcp-flags NONE SYN", TAKES, ("-p tcp -m tcp",),
      Otherwise(since(1, 8, 8, "nft"), TAKES, ("-p tcp",), _NFT_NATIVE + ", and no test of no flag (a rule matching every packet)"),
      id="a-mask-of-no-flags-matches-nothing"),
    B(V4, "-p tcp ! --tcp-flags NONE NONE", TAKES, ("-p tcp -m tcp ! --tcp-flags NONE NONE",),
      Otherwise(since(1, 8, 8, "nft"), TAKES, ("-p tcp",), _NFT_NATIVE + ", and no test of no flag (a rule matching every packet)"),
      id="a-negated-mask-of-no-flags-matches-nothing"),
    B(V4, "-p tcp --dport 1 -m tcp --dport 1:100", TAKES, ("-p tcp -m tcp --dport 1 -m tcp --dport 1:100",),
      Otherwise(since(1, 8, 8, "nft"), TAKES, ("-p tcp -m tcp --dport 1:100",), _NFT_NATIVE + ", and lists only the last"),
      id="a-port-in-two-tcp-matches"),
    B(V4, "-p tcp --syn -m tcp --tcp-flags SYN SYN", TAKES, ("-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m tcp --tcp-flags SYN SYN",),
      Otherwise(since(1, 8, 8, "nft"), TAKES, ("-p tcp -m tcp --tcp-flags SYN SYN",), _NFT_NATIVE + ", and lists only the last"),
      id="flags-in-two-tcp-matches"),
    B(V4, "-p tcp --dport 1 --dport 2", REFUSES, (), id="a-port-twice-in-one-tcp-match"),
    B(V4, "-s ::1", REFUSES, (), id="ipv6-address-in-an-ipv4-rule"),
    B(V6, "-d 10.0.0.1", REFUSES, (), id="ipv4-address-in-an-ipv6-rule"),
    B(V4, "-d 10.0.0.0/33", REFUSES, (), id="ipv4-prefix-over-32"),
    B(V6, "-s fd00::/129", REFUSES, (), id="ipv6-prefix-over-128"),
    B(V4, "-s 10.0.0.1/", REFUSES, (), id="empty-mask"),
    B(V4, "-s 10.0.0.1/08", REFUSES, (), id="mask-08-is-no-c-number"),
    B(V4, "-s 256.1.1.1", REFUSES, (), id="octet-over-255"),
    B(V6, "-s fd00::g", REFUSES, (), id="malformed-ipv6-address"),
    B(V4, "-s 10.0.0.1,10.0.0.2 -j ACCEPT", SPLITS, ("-s 10.0.0.1/32 -j ACCEPT", "-s 10.0.0.2/32 -j ACCEPT"), id="several-addresses"),
    B(V6, "-d fd00::1,fd00::2", SPLITS, ("-d fd00::1/128", "-d fd00::2/128"), id="several-ipv6-addresses"),
    B(V4, "-4 -j ACCEPT", TAKES, ("-j ACCEPT",), id="ipv4-flag-in-an-ipv4-rule-says-nothing"),
    B(V6, "--ipv6 -j ACCEPT", TAKES, ("-j ACCEPT",), id="ipv6-flag-in-an-ipv6-rule-says-nothing"),
    B(V4, "-j ACCEPT --ipv6", SKIPS, (), id="ipv6-flag-in-an-ipv4-rule"),
    B(V6, "-4 -j ACCEPT", SKIPS, (), id="ipv4-flag-in-an-ipv6-rule"),
    B(V4, ("-s 10.0.0.0/8 -j ACCEPT",), REFUSES, (), id="a-whole-rule-in-one-token"),
    B(V4, ("-p", "tcp", "--dport 22"), REFUSES, (), id="an-option-and-its-value-in-one-token"),
    B(V4, "-s 10.0.0.1 10.0.0.2", REFUSES, (), id="a-word-where-an-option-must-be"),
    B(V4, "-j ACCEPT extra", REFUSES, (), id="a-word-after-the-target"),
    B(V4, "-p bogus", REFUSES, (), id="unknown-protocol"),
    B(V4, "-i abcdefghijklmnop", REFUSES, (), id="interface-name-over-15-bytes"),
    B(V4, ("-i", "a b"), TAKES, ("-i a b",), id="interface-name-with-a-blank-prints-as-two-words"),
]  # fmt: skip


@pytest.mark.parametrize(("proto", "given", "behaviour", "printed", "otherwise"), BEHAVIOUR)
def test_what_iptables_does_with_each_refusal(
    netns: str,
    backend: str,
    proto: Protocol,
    given: str | tuple[str, ...],
    behaviour: str,
    printed: tuple[str, ...],
    otherwise: tuple[Otherwise, ...],
) -> None:
    spec = tuple(split_line(given)) if isinstance(given, str) else given
    with pytest.raises(InvalidRuleError):
        check_rule(spec, proto)
    program = f"{proto.command}-{backend}"
    release = release_of(program, netns)
    for other in otherwise:
        if other.releases.holds(release, backend):
            behaviour, printed = other.behaviour, other.printed
            break
    if behaviour == SKIPS:
        done = _run(netns, f"{program}-restore", "--noflush", input=f"*filter\n-A INPUT {given}\nCOMMIT\n")
        assert done.returncode == 0, done.stderr
    else:
        done = _run(netns, program, "-A", "INPUT", *spec)
        assert (done.returncode != 0) is (behaviour == REFUSES), done.stderr
    # Compared as tokens: iptables-nft 1.8.7 ends some lines with a blank.
    rules = [tuple(split_line(line)) for line in ns_exec(netns, program, "-S", "INPUT").splitlines()[1:]]
    assert rules == [tuple(split_line(f"-A INPUT {rule}")) for rule in printed], release
