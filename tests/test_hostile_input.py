"""Never harm (issue #9, points 5 and 6), without iptables.

Point 5: foreign lines never break a read. iptables prints a rule whose
comment (or interface name) holds a newline on several lines; such a rule,
and any line the reader cannot make sense of, is kept as one opaque rule,
while the rest of the chain, and the rest of the table, are read as usual.
The printed texts below are what iptables 1.8.9 prints (nft and legacy alike).

Point 6: bad input is caught before any process, by check_rule, with a
message that names the option and the value; what iptables takes stays
accepted (tests/integration/test_hostile_input_iptables.py holds both against real
iptables).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioiptables import FakeClient, FakeRunner, InvalidRuleError, Protocol, Rule, RuleCache
from aioiptables.cli import EXIT_OK, EXIT_USAGE, main
from aioiptables.model import validate_chain_name, validate_spec
from aioiptables.parse import (
    OPAQUE,
    ChainListing,
    analyze,
    canonicalize,
    check_rule,
    not_understood,
    parse_listing,
    parse_rule,
    parse_save,
    rule_key,
    rule_records,
)
from aioiptables.syntax import split_printed

pytestmark = pytest.mark.anyio

V4, V6 = Protocol.IPV4, Protocol.IPV6

# -- point 5: foreign lines never break a read ------------------------------------------------------

FIRST = "-A INPUT -j ACCEPT"
LAST = "-A INPUT -s 1.2.3.4/32 -j ACCEPT"
#: Our rules around the foreign one: they must be found, in their places.
OURS = (("-j", "ACCEPT"), ("-s", "1.2.3.4/32", "-j", "ACCEPT"))


def opaque(text: str) -> tuple[str, ...]:
    return (OPAQUE, text)


# (the lines iptables prints for one foreign rule, the spec it must read as)
FOREIGN = [
    pytest.param(
        ['-A INPUT -m comment --comment "a', 'b" -j DROP'],
        opaque('-A INPUT -m comment --comment "a\nb" -j DROP'),
        id="a-comment-holding-a-newline-is-one-opaque-rule",
    ),
    pytest.param(
        ['-A INPUT -p tcp -m comment --comment "x', 'y \\"q\\" z" -m tcp --dport 22 -j ACCEPT'],
        opaque('-A INPUT -p tcp -m comment --comment "x\ny \\"q\\" z" -m tcp --dport 22 -j ACCEPT'),
        id="escaped-quotes-after-the-newline",
    ),
    pytest.param(
        ['-A INPUT -m comment --comment "x', "-A INPUT -s 10.9.9.9/32 -j ACCEPT", '" -j DROP'],
        opaque('-A INPUT -m comment --comment "x\n-A INPUT -s 10.9.9.9/32 -j ACCEPT\n" -j DROP'),
        id="a-comment-line-that-looks-like-a-rule-is-not-a-rule",
    ),
    pytest.param(
        ['-A INPUT -m comment --comment "items:', "* one", "# two", ":three", "COMMIT", "", '*nat" -j DROP'],
        opaque('-A INPUT -m comment --comment "items:\n* one\n# two\n:three\nCOMMIT\n\n*nat" -j DROP'),
        id="comment-lines-that-look-like-save-syntax",
    ),
    pytest.param(
        ['-A INPUT -m comment --comment "', '" -j DROP'],
        opaque('-A INPUT -m comment --comment "\n" -j DROP'),
        id="a-comment-that-is-only-a-newline",
    ),
    pytest.param(
        ["-A INPUT -i a", "b -j ACCEPT"],
        opaque("-A INPUT -i a\nb -j ACCEPT"),
        id="an-interface-name-holding-a-newline-printed-raw",
    ),
    pytest.param(
        ['-A INPUT -i a"b -j ACCEPT'],
        ("-i", 'a"b', "-j", "ACCEPT"),
        id="an-interface-name-holding-a-quote-printed-raw",
    ),
    pytest.param(['-A INPUT -j "ab'], ("-j", '"ab'), id="a-jump-to-a-chain-named-with-a-leading-quote"),
    pytest.param(
        ['-A INPUT -m comment --comment "u\u2028v\x85w" -j ACCEPT'],
        ("-m", "comment", "--comment", "u\u2028v\x85w", "-j", "ACCEPT"),
        id="unicode-line-separators-do-not-split-a-line",
    ),
    pytest.param(
        ['-A INPUT -m comment --comment "t\tt" -j ACCEPT'],
        opaque('-A INPUT -m comment --comment "t\tt" -j ACCEPT'),
        id="a-control-character-makes-a-rule-opaque",
    ),
    pytest.param(
        ['-A INPUT -m comment --comment "a'],
        opaque('-A INPUT -m comment --comment "a'),
        id="a-quote-that-never-closes-is-one-opaque-line",
    ),
    pytest.param(
        ['-A INPUT -m comment --comment "a"b" -j DROP'],
        opaque('-A INPUT -m comment --comment "a"b" -j DROP'),
        id="a-quote-iptables-would-never-print",
    ),
]


@pytest.mark.parametrize(("printed", "spec"), FOREIGN)
def test_a_chain_listing_reads_around_a_foreign_rule(printed: list[str], spec: tuple[str, ...]) -> None:
    lines = ["-P INPUT ACCEPT", FIRST, *printed, LAST]
    assert parse_listing(lines, "INPUT") == (OURS[0], spec, OURS[1])
    listing = ChainListing(V4, "filter", "INPUT", True, parse_listing(lines, "INPUT"))
    assert all(listing.has(ours) for ours in OURS)
    assert not listing.has(("-s", "10.9.9.9/32", "-j", "ACCEPT"))  # a comment's line is no rule
    assert len(rule_records(lines, "INPUT")) == 3  # positions stay right


@pytest.mark.parametrize(("printed", "spec"), FOREIGN)
def test_a_save_reads_around_a_foreign_rule_and_keeps_going(
    printed: list[str], spec: tuple[str, ...]
) -> None:
    text = "\n".join(
        [
            "# Generated by iptables-nft-save v1.8.9 (nf_tables)",
            "*filter",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD DROP [0:0]",
            FIRST,
            *printed,
            LAST,
            "-A FORWARD -j ACCEPT",
            "COMMIT",
            "*nat",
            ":POSTROUTING ACCEPT [0:0]",
            "-A POSTROUTING -j MASQUERADE",
            "COMMIT",
            "# Completed",
            "",
        ]
    )
    tables = parse_save(text)
    assert tables["filter"].chain("INPUT").specs == (OURS[0], spec, OURS[1])
    assert tables["filter"].chain("FORWARD").specs == (("-j", "ACCEPT"),)
    assert tables["filter"].policies == {"INPUT": "ACCEPT", "FORWARD": "DROP"}
    assert tables["nat"].chain("POSTROUTING").has(("-j", "MASQUERADE"))


@pytest.mark.parametrize(("printed", "spec"), FOREIGN)
def test_no_rule_anyone_can_write_has_the_key_of_an_opaque_rule(
    printed: list[str], spec: tuple[str, ...]
) -> None:
    if spec[0] != OPAQUE:
        return
    listing = ChainListing(V4, "filter", "INPUT", True, (spec,))
    assert listing.keys == (spec,) and not analyze(spec).exact
    with pytest.raises(InvalidRuleError, match="control characters"):
        Rule.ipv4("filter", "INPUT", *spec)  # the marker starts with a NUL


@given(st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12), max_size=8))
def test_a_canonical_key_never_carries_the_opaque_marker(tokens: list[str]) -> None:
    assert OPAQUE not in rule_key(tokens, V4) and OPAQUE not in rule_key(tokens, V6)


def test_a_rule_holding_unicode_line_separators_is_found_as_ours() -> None:
    spec = ("-m", "comment", "--comment", "u\u2028v\x85w", "-j", "ACCEPT")
    text = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment "u\u2028v\x85w" -j ACCEPT\nCOMMIT\n'
    assert parse_save(text)["filter"].chain("INPUT").has(Rule.ipv4("filter", "INPUT", *spec).spec)


def test_a_quote_that_never_closes_costs_one_rule_not_the_chain() -> None:
    # Followed only so far (a comment is at most 255 bytes): the rest is read as usual.
    ours = [f"-A INPUT -s 10.0.{n // 256}.{n % 256}/32 -j ACCEPT" for n in range(5000)]
    text = "\n".join(
        ["*filter", ":INPUT ACCEPT [0:0]", '-A INPUT -m comment --comment "open', *ours, "COMMIT", ""]
    )
    specs = parse_save(text)["filter"].chain("INPUT").specs
    assert specs[0] == opaque('-A INPUT -m comment --comment "open')
    assert specs[1:] == tuple(tuple(line.split()[2:]) for line in ours)


def test_a_raw_value_holding_a_quote_is_not_the_start_of_a_quoted_one() -> None:
    # -i "x prints raw; the quoted comment after it closes where iptables closes it.
    lines = ['-A INPUT -i "x -m comment --comment "a b" -j ACCEPT', LAST]
    assert parse_listing(lines, "INPUT") == (
        ("-i", '"x', "-m", "comment", "--comment", "a b", "-j", "ACCEPT"),
        OURS[1],
    )


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        pytest.param('-A X -m comment --comment "a b" -j Y', ["-A", "X", "-m", "comment", "--comment", "a b", "-j", "Y"], id="one-quoted-value"),
        pytest.param('-A X --comment "a \\"b\\" \\\\ \\\'c\\\'"', ["-A", "X", "--comment", "a \"b\" \\ 'c'"], id="escapes"),
        pytest.param("-A X -i a\tb -j Y", ["-A", "X", "-i", "a\tb", "-j", "Y"], id="only-a-blank-ends-a-token"),
        pytest.param('-A X -i a"b', ["-A", "X", "-i", 'a"b'], id="a-quote-inside-a-word-is-part-of-it"),
        pytest.param('-A "x -j "y', ["-A", '"x', "-j", '"y'], id="chain-names-are-raw"),
        pytest.param('-A X --comment ""', ["-A", "X", "--comment", ""], id="empty-quoted-value"),
        pytest.param('-A X --comment "a', None, id="unterminated"),
        pytest.param('-A X --comment "a"b', None, id="glued-closing-quote"),
    ],
)  # fmt: skip
def test_split_printed(line: str, tokens: list[str] | None) -> None:
    assert split_printed(line) == tokens


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["iptables", "-A"], id="append-without-a-chain"),
        pytest.param(["iptables", "-I"], id="insert-without-a-chain"),
        pytest.param(["iptables", "-C"], id="check-without-a-chain"),
        pytest.param(["iptables", "-N"], id="new-chain-without-a-name"),
        pytest.param(["iptables", "-E", "X"], id="rename-without-a-new-name"),
        pytest.param(["iptables", "-P", "INPUT"], id="policy-without-a-target"),
        pytest.param(["iptables", "-t"], id="table-option-without-a-table"),
        pytest.param(["iptables-save", "-t"], id="save-table-option-without-a-table"),
    ],
)
async def test_the_fake_answers_a_command_missing_an_argument_as_an_error(argv: list[str]) -> None:
    done = await FakeRunner().run(argv)
    # iptables' words: 'option "-A" requires an argument', "-E requires old-chain-name and ..."
    assert done.exit_status == 2 and "requires" in done.stderr


async def test_the_fake_answers_a_payload_that_is_not_utf8() -> None:
    done = await FakeRunner().run(["iptables-restore", "--noflush"], input=b"\xff\xfe*filter\nCOMMIT\n")
    assert done.exit_status == 1


FOREIGN_ARGV = [
    ("-m", "comment", "--comment", "a\nb", "-j", "DROP"),
    ("-m", "comment", "--comment", "x\n-A INPUT -j DROP\n", "-j", "DROP"),
    ("-m", "comment", "--comment", "items:\n* one\n# two\nCOMMIT\n*nat", "-j", "DROP"),
    ("-i", "a\nb", "-j", "ACCEPT"),
    ("-i", 'a"b', "-j", "ACCEPT"),
    ("-m", "comment", "--comment", "u\u2028v", "-j", "ACCEPT"),
]


@pytest.mark.parametrize("proto", [V4, V6], ids=["v4", "v6"])
async def test_the_fake_prints_foreign_rules_as_iptables_does_and_ours_are_found(proto: Protocol) -> None:
    fake = FakeClient(proto)
    await fake.append("filter", "INPUT", "-j", "ACCEPT")
    for spec in FOREIGN_ARGV:  # behind the library's back, as another tool would
        assert (await fake.fake.run([proto.command, "-A", "INPUT", *spec])).exit_status == 0
    await fake.append("filter", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    cache = RuleCache(fake)
    assert await cache.exists(Rule("filter", "INPUT", ("-j", "ACCEPT"), proto))
    assert await cache.exists(Rule("filter", "INPUT", ("-p", "tcp", "--dport", "22", "-j", "ACCEPT"), proto))
    assert not await cache.exists(Rule("filter", "INPUT", ("-j", "DROP"), proto))  # a comment's line
    listing = await cache.listing(proto, "filter", "INPUT")
    snapshot = parse_save(await fake.save("filter"), proto)["filter"].chain("INPUT")
    for read in (listing, snapshot):
        assert len(read.specs) == 2 + len(FOREIGN_ARGV)  # every rule in its place
        opaque_places = [n for n, spec in enumerate(read.specs) if spec[0] == OPAQUE]
        assert opaque_places == [1, 2, 3, 4]  # the comments holding newlines; -i a"b and U+2028 read


# -- point 6: bad input is caught before any process --------------------------------------------------

# (protocol, spec, the option the message names, the value it names)
REFUSED = [
    pytest.param(V4, ("-p", "tcp", "--dport", "abc"), "--dport", "abc", id="tcp-port-neither-number-nor-service"),
    pytest.param(V4, ("-p", "tcp", "--dport", "SSH"), "--dport", "SSH", id="service-names-are-case-sensitive"),
    pytest.param(V4, ("-p", "tcp", "--sport", "65536"), "--sport", "65536", id="tcp-port-out-of-range"),
    pytest.param(V4, ("-p", "tcp", "--dport", "80x"), "--dport", "80x", id="tcp-port-with-trailing-junk"),
    pytest.param(V4, ("-p", "tcp", "--dport", "5:3"), "--dport", "5:3", id="reversed-tcp-range"),
    pytest.param(V4, ("-p", "tcp", "--dport", "1:2:3"), "--dport", "1:2:3", id="tcp-range-of-three"),
    pytest.param(V4, ("-p", "udp", "--dport", "65536"), "--dport", "65536", id="udp-port-iptables-wraps-to-0"),
    pytest.param(V4, ("-p", "udp", "--dport", "5:3"), "--dport", "5:3", id="reversed-udp-range-iptables-takes"),
    pytest.param(V4, ("-p", "udp", "--dport", "0x50"), "--dport", "0x50", id="udp-ports-are-decimal"),
    pytest.param(V4, ("-p", "udp", "--source-port", "nosuchservice"), "--source-port", "nosuchservice", id="udp-unknown-service-by-long-name"),
    pytest.param(V4, ("-p", "tcp", "-m", "multiport", "--dports", "80,abc"), "--dports", "80,abc", id="multiport-unknown-service"),
    pytest.param(V4, ("-p", "tcp", "-m", "multiport", "--dports", "5:3"), "--dports", "5:3", id="multiport-reversed-range"),
    pytest.param(V4, ("-p", "tcp", "-m", "multiport", "--dports", ",".join(map(str, range(1, 17)))), "--dports", ",".join(map(str, range(1, 17))), id="multiport-more-than-15-ports"),
    pytest.param(V4, ("-m", "length", "--length", "200:100"), "--length", "200:100", id="reversed-length-range"),
    pytest.param(V4, ("-m", "conntrack", "--ctexpire", "9:1"), "--ctexpire", "9:1", id="reversed-ctexpire-range"),
    pytest.param(V4, ("-m", "conntrack", "--ctorigdstport", "70000"), "--ctorigdstport", "70000", id="conntrack-port-out-of-range"),
    pytest.param(V4, ("-m", "conntrack", "--ctproto", "0"), "--ctproto", "0", id="ctproto-0"),
    pytest.param(V4, ("-m", "conntrack", "!", "--ctproto", "all"), "--ctproto", "all", id="ctproto-all-negated"),
    pytest.param(V4, ("-s", "::1"), "-s", "::1", id="ipv6-address-in-an-ipv4-rule"),
    pytest.param(V6, ("-d", "10.0.0.1"), "-d", "10.0.0.1", id="ipv4-address-in-an-ipv6-rule"),
    pytest.param(V4, ("-d", "10.0.0.0/33"), "-d", "10.0.0.0/33", id="ipv4-prefix-over-32"),
    pytest.param(V6, ("-s", "fd00::/129"), "-s", "fd00::/129", id="ipv6-prefix-over-128"),
    pytest.param(V4, ("-s", "10.0.0.1/"), "-s", "10.0.0.1/", id="empty-mask"),
    pytest.param(V4, ("-s", "10.0.0.1/08"), "-s", "10.0.0.1/08", id="mask-is-a-c-number-08-is-not"),
    pytest.param(V4, ("-s", "256.1.1.1"), "-s", "256.1.1.1", id="octet-over-255"),
    pytest.param(V6, ("-s", "fd00::g"), "-s", "fd00::g", id="malformed-ipv6-address"),
    pytest.param(V4, ("--source", "10.0.0.1,10.0.0.2", "-j", "ACCEPT"), "--source", "10.0.0.1,10.0.0.2", id="several-addresses-make-several-rules"),
    pytest.param(V6, ("-d", "fd00::1,fd00::2"), "-d", "fd00::1,fd00::2", id="several-ipv6-addresses"),
    pytest.param(V4, ("-4", "-j", "ACCEPT"), "option", "-4", id="ipv4-flag-in-an-ipv4-rule-says-nothing"),
    pytest.param(V4, ("-j", "ACCEPT", "--ipv6"), "option", "--ipv6", id="ipv6-flag-in-an-ipv4-rule-restore-skips-it"),
    pytest.param(V6, ("-4", "-j", "ACCEPT"), "option", "-4", id="ipv4-flag-in-an-ipv6-rule"),
    pytest.param(V6, ("--ipv6", "-j", "ACCEPT"), "option", "--ipv6", id="ipv6-flag-in-an-ipv6-rule"),
    pytest.param(V4, ("-s 10.0.0.0/8 -j ACCEPT",), "spec token", "-s 10.0.0.0/8 -j ACCEPT", id="a-whole-rule-in-one-token"),
    pytest.param(V4, ("-p", "tcp", "--dport 22"), "spec token", "--dport 22", id="an-option-and-its-value-in-one-token"),
    pytest.param(V4, ("! -s 10.0.0.1",), "spec token", "! -s 10.0.0.1", id="a-negated-option-in-one-token"),
    pytest.param(V4, ("-s", "10.0.0.1", "10.0.0.2"), "spec token", "10.0.0.2", id="a-word-where-an-option-must-be"),
    pytest.param(V4, ("-j", "ACCEPT", "extra"), "spec token", "extra", id="a-word-after-the-target"),
    pytest.param(V4, ("-p", "bogus"), "-p", "bogus", id="unknown-protocol"),
    pytest.param(V4, ("-i", "abcdefghijklmnop"), "-i", "abcdefghijklmnop", id="interface-name-over-15-bytes"),
    pytest.param(V4, ("-o", "a b"), "-o", "a b", id="interface-name-with-a-blank"),
]  # fmt: skip


@pytest.mark.parametrize(("proto", "spec", "option", "value"), REFUSED)
def test_check_rule_refuses_naming_the_option_and_the_value(
    proto: Protocol, spec: tuple[str, ...], option: str, value: str
) -> None:
    with pytest.raises(InvalidRuleError) as caught:
        check_rule(spec, proto)
    assert caught.value.value == value
    assert str(caught.value).startswith(f"invalid {option}") and repr(value) in str(caught.value)
    # Rules are checked when they are built: bad input never reaches a process.
    with pytest.raises(InvalidRuleError):
        Rule("filter", "INPUT", spec, proto)


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        pytest.param(("-p", "tcp", "--dport", "5:3"), "3:5", id="reversed-range-says-the-order"),
        pytest.param(("-s", "10.0.0.1,10.0.0.2"), "one Rule per address", id="several-addresses"),
        pytest.param(("-s 10.0.0.0/8 -j ACCEPT",), "'-s', '10.0.0.0/8', '-j', 'ACCEPT'", id="one-token-shows-the-split"),
        pytest.param(("-6", "-j", "ACCEPT"), "skips such a line", id="family-mismatch-says-why"),
        pytest.param(("-m", "conntrack", "--ctproto", "0"), "leave --ctproto out", id="ctproto-0"),
    ],
)  # fmt: skip
def test_refusals_say_what_to_write_instead(spec: tuple[str, ...], hint: str) -> None:
    with pytest.raises(InvalidRuleError, match=hint.replace("(", r"\(")) as caught:
        check_rule(spec, V4)
    assert hint in str(caught.value)


ACCEPTED = [
    pytest.param(V4, ("-p", "tcp", "--dport", "ssh"), id="service-name"),
    pytest.param(V4, ("-p", "udp", "--dport", "domain"), id="udp-service-name"),
    pytest.param(V4, ("-p", "tcp", "--dport", "1:1"), id="range-of-one-port"),
    pytest.param(V4, ("-p", "tcp", "--dport", ":1023"), id="open-low-range"),
    pytest.param(V4, ("-p", "tcp", "--dport", "1024:"), id="open-high-range"),
    pytest.param(V4, ("-p", "tcp", "--dport", "0x50"), id="tcp-ports-are-c-numbers"),
    pytest.param(V4, ("-p", "tcp", "--dport", "65535"), id="highest-port"),
    pytest.param(V4, ("-p", "tcp", "--destination-port=80"), id="getopt-inline-value"),
    pytest.param(V4, ("-p", "tcp", "--dp", "80"), id="getopt-abbreviation"),
    pytest.param(V4, ("-p", "tcp", "-m", "multiport", "--dports", "22,80:90,https"), id="multiport-list"),
    pytest.param(V4, ("-m", "comment", "--comment", "-x y"), id="comment-with-a-leading-dash-and-a-blank"),
    pytest.param(V4, ("-m", "comment", "--comment=-x y"), id="inline-comment-with-a-blank"),
    pytest.param(V4, ("-j", "LOG", "--log-prefix", "- a"), id="log-prefix-with-a-leading-dash"),
    pytest.param(V4, ("-m", "comment", "--comment", "--dport 5:3"), id="a-comment-that-reads-like-an-option"),
    pytest.param(V4, ("-m", "comment", "--comment", "-4"), id="a-comment-that-reads-like-a-family-flag"),
    pytest.param(V4, ("-m", "length", "--length", "100:200"), id="ordered-length-range"),
    pytest.param(V4, ("-m", "conntrack", "--ctproto", "tcp", "--ctorigdstport", "53"), id="ctproto-named"),
    pytest.param(V4, ("-s", "localhost"), id="host-names-are-resolved-by-iptables"),
    pytest.param(V4, ("-s", "10.1"), id="short-dotted-address"),
    pytest.param(V4, ("-s", "1.2.3.4/255.0.255.0"), id="non-contiguous-dotted-mask"),
    pytest.param(V4, ("-s", "10.0.0.1/0x10"), id="mask-as-a-c-number"),
    pytest.param(V6, ("-d", "::ffff:10.0.0.1/128"), id="ipv4-mapped-ipv6"),
    pytest.param(V6, ("-d", "::1/ffff::"), id="ipv6-mask"),
    pytest.param(V4, ("-i", "eth0.100", "-o", "wg+"), id="interface-names-and-wildcard"),
    pytest.param(V4, ("-p", "icmp", "--icmp-type", "255/0"), id="icmp-type-255-with-a-code"),
    pytest.param(V4, ("-m", "foo", "--bar", "-x y"), id="an-unknown-match-may-take-any-value"),
    pytest.param(V4, ("-j", "NFQUEUE", "--queue-num", "1", "--queue-bypass"), id="an-unknown-target-may-take-any-option"),
    pytest.param(V4, ("-j", "SET", "--add-set", "s", "src"), id="an-unknown-target-may-take-several-values"),
    pytest.param(V4, ("-m", "set", "--match-set", "s", "src,dst"), id="an-option-with-two-values"),
    pytest.param(V4, ("!", "-p", "tcp", "-m", "tcp", "!", "--syn"), id="negations"),
    pytest.param(V4, (), id="an-empty-spec"),
]  # fmt: skip


@pytest.mark.parametrize(("proto", "spec"), ACCEPTED)
def test_check_rule_accepts_what_iptables_takes(proto: Protocol, spec: tuple[str, ...]) -> None:
    check_rule(spec, proto)
    assert Rule("filter", "INPUT", spec, proto).spec == spec


def test_a_multiport_range_of_one_port_is_left_to_iptables() -> None:
    # iptables refuses "3:3" out loud ("invalid portrange specified"): no rule
    # is half-written for it, so check_rule leaves it to iptables.
    check_rule(("-p", "tcp", "-m", "multiport", "--ports", "3:3"), V4)


def _load_corpus() -> ModuleType:
    data = Path(__file__).resolve().parent / "data"
    found = importlib.util.spec_from_file_location("check_corpus", data / "check_corpus.py")
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    sys.modules["check_corpus"] = module
    found.loader.exec_module(module)
    return module


def test_every_real_world_rule_of_the_corpus_is_accepted() -> None:
    corpus = _load_corpus()
    rules = corpus.read_corpus(Path(__file__).resolve().parent / "data" / "corpus.tsv")
    assert len(rules) == 508
    for rule in rules:
        check_rule(rule.tokens, V4 if rule.proto == 4 else V6)


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(
            "-A INPUT -p udp -m udp --dport 5:3 -j ACCEPT", id="reversed-udp-range-as-1.8.9-prints-it"
        ),
        pytest.param("-A INPUT -m conntrack --ctproto 0 -j ACCEPT", id="ctproto-0-as-printed"),
        pytest.param("-A INPUT -i a b -j ACCEPT", id="an-interface-name-with-a-blank-as-printed"),
    ],
)
def test_printed_rules_are_never_refused(line: str) -> None:
    # What iptables printed must stay usable (to delete it, say): not checked.
    rule = parse_rule(line)
    assert Rule.from_printed(rule.table, rule.chain, rule.spec) == rule


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        pytest.param("\udcff", "lone surrogate", id="os-fsdecode-of-a-byte-that-is-not-utf8"),
        pytest.param("a\ud800b", "lone surrogate", id="lone-high-surrogate"),
        pytest.param("a\x00b", "control characters", id="nul"),
    ],
)
def test_text_that_cannot_reach_iptables_is_refused_before_any_process(bad: str, why: str) -> None:
    for call in (
        lambda: validate_spec(["-m", "comment", "--comment", bad]),
        lambda: validate_chain_name(f"X{bad}"),
        lambda: Rule.ipv4("filter", "INPUT", "-m", "comment", "--comment", bad),
        lambda: Rule.ipv4("filter", f"X{bad}", "-j", "ACCEPT"),
    ):
        with pytest.raises(InvalidRuleError, match=why):
            call()


# Type 255 is every ICMP packet to the kernel whatever the codes
# (icmp_type_code_match), and iptables up to 1.8.9 lists every such rule as
# "any": one key for them all, so that each version's listing reads as the
# rule given (1.8.10 on lists 255/0 as such).
@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param("255/0", "any", True, id="icmp-255-code-0-is-any"),
        pytest.param("255/3", "any", True, id="icmp-255-code-3-is-any"),
        pytest.param("255/0", "255/3", True, id="icmp-255-codes-do-not-matter"),
        pytest.param("255", "any", True, id="icmp-255-alone-is-any"),
        pytest.param("254/0", "254", False, id="icmp-another-type-keeps-its-code"),
    ],
)
def test_icmp_type_255_is_any_whatever_its_code(a: str, b: str, same: bool) -> None:
    def form(value: str) -> tuple[str, ...]:
        return canonicalize(("-p", "icmp", "--icmp-type", value, "-j", "ACCEPT"))

    assert (form(a) == form(b)) is same


def test_icmpv6_type_255_and_255_0_stay_apart() -> None:
    def form(value: str) -> tuple[str, ...]:
        return canonicalize(("-p", "ipv6-icmp", "--icmpv6-type", value), V6)

    assert form("255") != form("255/0")


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        pytest.param(("-p", "tcp", "--dport", "80", "-m", "foo", "--bar", "1"), "-m foo", id="unknown-match"),
        pytest.param(("-p", "tcp", "--frob", "1"), "--frob", id="unknown-option"),
        pytest.param(("-p", "tcp", "--dport", "80", "--dport", "81"), "--dport (given twice)", id="repeated-option"),
        pytest.param(("-s", "host.example",), "-s host.example", id="value-not-read"),
    ],
)  # fmt: skip
def test_not_understood_names_what_was_kept_as_text(spec: tuple[str, ...], named: str) -> None:
    assert not analyze(spec).exact
    assert any(named in note for note in not_understood(spec))


def test_not_understood_is_empty_when_everything_is_understood() -> None:
    assert not_understood(["-p", "tcp", "--dport", "80", "-j", "ACCEPT"]) == ()


def test_canon_names_what_it_did_not_understand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["canon", "-p tcp --dport 80 -m no-such-match --frob 1"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "not understood" in err and "-m no-such-match" in err


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        pytest.param("-A INPUT -p tcp --dport 5:3 -j ACCEPT", "--dport value '5:3'", id="reversed-range"),
        pytest.param("-A INPUT -s 10.0.0.1,10.0.0.2 -j ACCEPT", "-s value '10.0.0.1,10.0.0.2'", id="several-addresses"),
        pytest.param("-A INPUT --ipv6 -j ACCEPT", "option '--ipv6'", id="family-flag"),
    ],
)  # fmt: skip
def test_canon_refuses_bad_input_with_its_message(
    capsys: pytest.CaptureFixture[str], rule: str, named: str
) -> None:
    assert main(["canon", rule]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and named in captured.err


# -- generated specs that are valid are never refused -------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
_PORT = st.integers(0, 65535)
_SERVICE = st.sampled_from(["ssh", "http", "https", "domain", "ntp"])


@st.composite
def _ports(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["number", "service", "range", "open-low", "open-high"]))
    if kind == "number":
        return str(draw(_PORT))
    if kind == "service":
        return draw(_SERVICE)
    low, high = sorted((draw(_PORT), draw(_PORT)))
    return {"range": f"{low}:{high}", "open-low": f":{high}", "open-high": f"{low}:"}[kind]


@st.composite
def _multiport(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 7))):
        low = draw(st.integers(0, 65534))
        parts.append(draw(st.sampled_from([str(low), f"{low}:{draw(st.integers(low + 1, 65535))}"])))
    return ",".join(parts)


@st.composite
def _address(draw: st.DrawFn, proto: Protocol) -> str:
    width = 32 if proto is V4 else 128
    number = draw(st.integers(0, 2**width - 1))
    address = ipaddress.IPv4Address(number) if proto is V4 else ipaddress.IPv6Address(number)
    prefix = draw(st.none() | st.integers(0, width))
    return str(address) if prefix is None else str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@st.composite
def valid_specs(draw: st.DrawFn, proto: Protocol) -> tuple[str, ...]:
    spec: list[str] = []

    def maybe_negated(*tokens: str) -> None:
        spec.extend(("!", *tokens) if draw(st.booleans()) else tokens)

    if draw(st.booleans()):
        maybe_negated(draw(st.sampled_from(["-s", "--source", "-d", "--dst"])), draw(_address(proto)))
    if draw(st.booleans()):
        maybe_negated(
            draw(st.sampled_from(["-i", "-o"])), draw(st.sampled_from(["eth0", "wg+", "br-1.100", "lo"]))
        )
    protocol = draw(st.sampled_from(["", "tcp", "udp", "6", "17", "all", "sctp"]))
    if protocol:
        spec += ["-p", protocol]
    if protocol in ("tcp", "udp", "6", "17") and draw(st.booleans()):
        option = (draw(st.sampled_from(["--dport", "--sport", "--destination-port"])), draw(_ports()))
        if option[1] in ("0:", ":65535", "0:65535"):
            spec += option  # (negated, every port is no port: refused, and rightly)
        else:
            maybe_negated(*option)
    if protocol in ("tcp", "udp") and draw(st.booleans()):
        spec += ["-m", "multiport"]
        maybe_negated(draw(st.sampled_from(["--dports", "--sports", "--ports"])), draw(_multiport()))
    for _ in range(draw(st.integers(0, 2))):
        match = draw(st.sampled_from(["comment", "conntrack", "length", "mark", "state", "limit"]))
        spec += ["-m", match]
        if match == "comment":
            spec += ["--comment", draw(_TEXT)]
        elif match == "conntrack":
            spec += ["--ctstate", draw(st.sampled_from(["NEW", "ESTABLISHED,RELATED", "INVALID"]))]
            if draw(st.booleans()):
                spec += ["--ctproto", draw(st.sampled_from(["tcp", "udp", "17", "icmp"]))]
            if draw(st.booleans()):
                spec += ["--ctorigdstport", draw(_ports())]
        elif match == "length":
            low, high = sorted((draw(_PORT), draw(_PORT)))
            spec += ["--length", f"{low}:{high}"]
        elif match == "mark":
            maybe_negated("--mark", hex(draw(st.integers(0, 2**32 - 1))))
        elif match == "state":
            spec += ["--state", "ESTABLISHED"]
        else:
            spec += ["--limit", f"{draw(st.integers(1, 1000))}/sec"]
    target = draw(st.sampled_from(["", "ACCEPT", "DROP", "LOG", "REJECT", "KUBE-SVC-X", "MARK"]))
    if target:
        spec += ["-j", target]
    if target == "LOG" and draw(st.booleans()):
        spec += ["--log-prefix", draw(_TEXT)]
    if target == "MARK":
        spec += ["--set-mark", str(draw(st.integers(0, 2**32 - 1)))]
    return tuple(spec)


@settings(max_examples=500)
@given(st.sampled_from([V4, V6]).flatmap(lambda proto: st.tuples(st.just(proto), valid_specs(proto))))
def test_generated_valid_specs_are_never_refused(case: tuple[Protocol, tuple[str, ...]]) -> None:
    proto, spec = case
    check_rule(spec, proto)
    Rule("filter", "INPUT", spec, proto)
