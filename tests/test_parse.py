"""The parser's own promises, without iptables: fast path and full reader agree,
nothing is dropped from what is not understood, and whole lines parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioiptables import InvalidRuleError, Protocol, Rule
from aioiptables.parse import _by_groups, _read, analyze, canonicalize, parse_rule, parse_save

V4, V6 = Protocol.IPV4, Protocol.IPV6

VOCABULARY = [
    "!", "-s", "--source", "-d", "-i", "-o", "-p", "-f", "-m", "--match", "-j", "-g", "--jump",
    "tcp", "udp", "icmp", "6", "17", "comment", "--comment", "mark", "--mark", "state", "--state",
    "--dport", "--sport", "--syn", "--icmp-type", "DNAT", "--to-destination", "ACCEPT", "REJECT",
    "--reject-with", "tcp-reset", "MARK", "--set-mark", "LOG", "--log-level", "4", "80", "http",
    "10.0.0.0/8", "1.2.3.4", "eth0", "NEW,ESTABLISHED", "0x1/0xff", "multiport", "--dports", "80,443",
    "foo", "--bar", "CHAIN", "x y", "--dport=80", "--comment=a", "--syn=1",
]  # fmt: skip


@settings(max_examples=3000)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=14), st.sampled_from([V4, V6]))
def test_the_fast_path_reads_every_rule_as_the_full_reader_does(tokens: list[str], proto: Protocol) -> None:
    spec = tuple(tokens)
    fast = _by_groups(spec, proto)
    assert fast is None or fast == _read(spec, proto)


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=14), st.sampled_from([V4, V6]))
def test_what_is_not_understood_is_kept_whole(tokens: list[str], proto: Protocol) -> None:
    # Never a false match: an inexact form still holds every token it was given
    # (base options may be normalized, but nothing disappears unread).
    read = analyze(tuple(tokens), proto)
    if not read.exact:
        for token in tokens:
            if token in ("--foo", "--bar", "foo", "x y"):
                assert token in read.tokens


@given(st.lists(st.sampled_from(VOCABULARY), max_size=14), st.sampled_from([V4, V6]))
def test_canonical_forms_are_fixed_points(tokens: list[str], proto: Protocol) -> None:
    read = analyze(tuple(tokens), proto)
    if read.exact:
        assert canonicalize(read.tokens, proto) == read.tokens


SAME = [
    ("implicit match and long options", "-p tcp --dport 80 -j ACCEPT", "--protocol 6 --destination-port http --jump ACCEPT"),
    ("a base option after the target", "-d 1.2.3.4/32 ! -i eth0 -j ACCEPT", "-j ACCEPT ! -i eth0 -d 1.2.3.4"),
    ("repeated udp folded as iptables-nft does", "-p udp -m udp --sport 53 --dport 53",
     "-p udp -m udp --dport 53 -m udp --sport 53"),
    ("dotted mask and host bits", "-s 10.0.0.0/8", "-s 10.1.2.3/255.0.0.0"),
    ("a negated low port range, as iptables-nft prints it", "-p udp --sport 1024:65535", "-p udp ! --sport :1023"),
    ("an abbreviated option, as getopt reads it", "-p tcp --dport 80", "--proto tcp --dp 80"),
    ("any interface", "-j ACCEPT", "-i + -j ACCEPT"),
    ("a match before the protocol", "-p tcp -m comment --comment x -m tcp --dport 80",
     "-m comment --comment x -p tcp --dport 80"),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b"), [(a, b) for _, a, b in SAME], ids=[name for name, _, _ in SAME])
def test_spellings_of_one_rule_read_alike(a: str, b: str) -> None:
    assert canonicalize(a.split()) == canonicalize(b.split())


DIFFERENT = [
    ("negation", "-s 1.2.3.4 -j ACCEPT", "! -s 1.2.3.4 -j ACCEPT"),
    ("match order", "-m mark --mark 1 -m comment --comment x", "-m comment --comment x -m mark --mark 1"),
    ("an unknown option's value", "-m foo --bar 1", "-m foo --bar 2"),
    ("two addresses and one", "-s 10.1.2.3/8 -s 0.0.0.0/0", "-s 10.0.0.0/8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("a", "b"), [(a, b) for _, a, b in DIFFERENT], ids=[name for name, _, _ in DIFFERENT]
)
def test_different_rules_read_apart(a: str, b: str) -> None:
    assert canonicalize(a.split()) != canonicalize(b.split())


@pytest.mark.parametrize(
    ("line", "chain", "spec"),
    [
        (
            '-A INPUT -m comment --comment "a \\"b\\"" -j ACCEPT',
            "INPUT",
            ("-m", "comment", "--comment", 'a "b"', "-j", "ACCEPT"),
        ),
        ("-I FORWARD 3 -j DROP", "FORWARD", ("-j", "DROP")),
        ("--append X", "X", ()),
    ],
    ids=["-A with quoting", "-I with a position", "long -A and no spec"],
)
def test_rule_lines_parse(line: str, chain: str, spec: tuple[str, ...]) -> None:
    rule = Rule.parse(line, table="nat", proto=V6)
    assert (rule.table, rule.chain, rule.spec, rule.proto) == ("nat", chain, spec, V6)
    assert parse_rule(line, "nat", V6) == rule


@pytest.mark.parametrize("line", ["-P INPUT ACCEPT", "", "-A", '-A X --comment "open'])
def test_other_lines_are_refused(line: str) -> None:
    with pytest.raises(InvalidRuleError):
        Rule.parse(line)


def test_same_as_compares_by_meaning_within_one_chain() -> None:
    a = Rule.ipv4("filter", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT")
    assert a.same_as(Rule.ipv4("filter", "INPUT", "-p", "6", "-m", "tcp", "--dport", "http", "-j", "ACCEPT"))
    assert not a.same_as(Rule.ipv4("filter", "FORWARD", *a.spec))
    assert not a.same_as(Rule.ipv6("filter", "INPUT", *a.spec))
    assert a.canonical == ("-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "ACCEPT")


def test_save_output_parses_into_tables_and_chains() -> None:
    text = (
        "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:KILO-NAT - [0:0]\n"
        '-A KILO-NAT -s 10.4.0.0/16 -m comment --comment "a b" -j MASQUERADE\n'
        "-A PREROUTING -j KILO-NAT\nCOMMIT\n*filter\n:INPUT DROP [1:2]\nCOMMIT\n"
    )
    tables = parse_save(text)
    assert list(tables) == ["nat", "filter"]
    nat = tables["nat"]
    assert list(nat.chains) == ["PREROUTING", "KILO-NAT"]
    assert nat.chains["KILO-NAT"].specs == (
        ("-s", "10.4.0.0/16", "-m", "comment", "--comment", "a b", "-j", "MASQUERADE"),
    )
    assert nat.policies == {"PREROUTING": "ACCEPT"}
    assert tables["filter"].policies == {"INPUT": "DROP"}
    assert nat.chains["PREROUTING"].has(("--jump", "KILO-NAT"))
