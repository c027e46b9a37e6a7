"""The parser's own promises, without iptables: fast path and full reader agree,
nothing is dropped from what is not understood, and whole lines parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioiptables import InvalidRuleError, Protocol, Rule
from aioiptables.extensions import Unsupported, normalize_address, printed_v4
from aioiptables.parse import (
    OPAQUE,
    ChainListing,
    _by_groups,
    _fast_key,
    _key,
    _printed_spec,
    _read,
    _read_printed,
    analyze,
    canonicalize,
    parse_rule,
    parse_save,
    read_listing,
    rule_records,
    spec_to_write,
)
from aioiptables.syntax import CLOSED, scan_printed, split_printed

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
    # How other releases print a rule that 1.8.9 prints as the first.
    ("a protocol by number, as 1.8.11 on prints it", "-p gre -j ACCEPT", "-p 47 -j ACCEPT"),
    ("icmp type 255 with a code, as 1.8.10 on prints it", "-p icmp -m icmp --icmp-type any",
     "-p icmp -m icmp --icmp-type 255/0"),
    ("a tcp match without options, folded as iptables-nft 1.8.10 on prints it",
     "-p tcp -m tcp -m tcp --dport 1 -j DROP", "-p tcp -m tcp --dport 1 -j DROP"),
    ("a tcp match kept as an xt match, with a later one's port (iptables-nft 1.8.10 on)",
     "-p tcp -m tcp --tcp-option 5 -m tcp --dport 1", "-p tcp -m tcp --dport 1 --tcp-option 5"),
    ("two tcp matches without options", "-p tcp -m tcp -m tcp", "-p tcp -m tcp"),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b"), [(a, b) for _, a, b in SAME], ids=[name for name, _, _ in SAME])
def test_spellings_of_one_rule_read_alike(a: str, b: str) -> None:
    assert canonicalize(a.split()) == canonicalize(b.split())


DIFFERENT = [
    ("negation", "-s 1.2.3.4 -j ACCEPT", "! -s 1.2.3.4 -j ACCEPT"),
    ("match order", "-m mark --mark 1 -m comment --comment x", "-m comment --comment x -m mark --mark 1"),
    ("an unknown option's value", "-m foo --bar 1", "-m foo --bar 2"),
    ("two addresses and one", "-s 10.1.2.3/8 -s 0.0.0.0/0", "-s 10.0.0.0/8"),
    # A listing up to 1.8.10 loses the negated range (a rule matching no packet).
    ("a negated range over every port and its loss", "-p tcp ! --dport 0:65535", "-p tcp -m tcp"),
    ("an option in two tcp matches, and the last, which iptables-nft lists",
     "-p tcp --dport 1 -m tcp --dport 1:100", "-p tcp --dport 1:100"),
    ("a match without options and none", "-p tcp -m tcp", "-p tcp"),
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


# -- the fast paths for printed rules (issue 10): the same answers as the general ones ----------

BASES = [
    ("-s", "10.0.0.0/8"), ("-s", "10.1.0.0/8"), ("!", "-s", "1.2.3.4/32"), ("-s", "1.2.3.4"), ("-d", "0.0.0.0/0"),
    ("!", "-d", "0.0.0.0/0"), ("-d", "fd00::/64"), ("-d", "fd00::1/64"), ("-s", "010.0.0.0/8"), ("-s", "1.2.3.0/24"),
    ("-i", "eth0"), ("!", "-i", "cali+"), ("-i", "+"), ("-o", "lo"), ("-p", "tcp"), ("-p", "6"), ("-p", "all"),
    ("!", "-p", "udp"), ("-p", "ipv6-icmp"), ("-f",), ("-s", "1.2.3.4/32,5.6.7.8/32"), ("-p", "47"),
    ("-p", "gre"), ("-p", "icmp"),
]  # fmt: skip
GROUPS = [
    ("-m", "comment", "--comment", "a b"), ("-m", "comment", "--comment", "-m"), ("--match", "comment", "--comment", "x"),
    ("-m", "tcp", "--dport", "80"), ("-m", "tcp", "--dport", "http"), ("-m", "tcp", "--sport", "53"),
    ("-m", "tcp", "!", "--dport", "0:65535"), ("-m", "icmp", "--icmp-type", "255/0"),
    ("-m", "udp", "--dport", "53"), ("-m", "tcp", "--dport", "80", "--sport", "1"),
    ("-m", "tcp", "--sport", "1", "--dport", "80"), ("-m", "mark", "--mark", "0x1/0xff"), ("-m", "mark", "--mark", "1"),
    ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"), ("-m", "state", "--state", "NEW"),
    ("-m", "multiport", "--dports", "80,443"), ("-m", "statistic", "--mode", "random", "--probability", "0.5"),
    ("-m", "foo", "--bar", "1"), ("-m", "addrtype", "--dst-type", "LOCAL"), ("-m", "tcp"), ("-m",),
    ("-j", "ACCEPT"), ("-j", "KUBE-SVC-X"), ("-g", "CHAIN"), ("--jump", "DROP"), ("-j", "REJECT"),
    ("-j", "REJECT", "--reject-with", "icmp-port-unreachable"), ("-j", "DNAT", "--to-destination", "10.0.0.1:80"),
    ("-j", "DNAT", "--to-destination", "010.0.0.1:80"), ("-j", "MARK", "--set-xmark", "0x4000/0x4000"),
    ("-j", "MARK", "--or-mark", "0x4000"), ("-j", "MASQUERADE", "--random-fully"), ("-j", "LOG", "--log-prefix", "x "),
    ("-j", "CHAIN", "-s", "1.2.3.4/32"), ("-j",),
]  # fmt: skip


@settings(max_examples=3000)
@given(
    st.lists(st.sampled_from(BASES), max_size=3),
    st.lists(st.sampled_from(GROUPS), max_size=4),
    st.sampled_from([V4, V6]),
)
def test_the_printed_form_fast_path_reads_as_the_full_reader(
    bases: list[tuple[str, ...]], groups: list[tuple[str, ...]], proto: Protocol
) -> None:
    # Specs shaped as iptables prints them, or nearly (a value not in printed
    # form, options out of order, a target in the middle, a repeated match):
    # the fast path (verbatim check, then regrouping) agrees with the full
    # reader whenever it answers, and keeps nothing from one spec to the next.
    spec = tuple(token for part in [*bases, *groups] for token in part)
    fast = _by_groups(spec, proto)
    assert fast is None or fast == _read(spec, proto)
    assert _by_groups(spec, proto) == fast  # again, from the memo
    if fast is not None and fast.tokens == spec:
        assert _fast_key(spec, proto) is spec  # its own key: nothing built


@settings(max_examples=1000)
@given(st.integers(0, 2**32 - 1), st.integers(0, 40), st.sampled_from(["", "0", "/", "+", " "]))
def test_a_printed_address_is_recognised_without_normalizing(number: int, length: int, noise: str) -> None:
    host = ".".join(str(number >> shift & 255) for shift in (24, 16, 8, 0))
    for value in (f"{host}/{length}", f"{noise}{host}/{length}", f"{host}/{noise}{length}", host):
        try:
            printed = normalize_address(value, V4) == value
        except Unsupported:
            printed = False
        assert printed_v4(value) == printed, value


PIECES = ["a", "b c", "", "-j", "-i", '"', "x\ty", "\\", "-m", "comment", "--comment", "'q'", "  "]


@settings(max_examples=3000)
@given(st.lists(st.tuples(st.sampled_from(PIECES), st.booleans()), max_size=8))
def test_printed_lines_split_as_the_scanner_reads_them(parts: list[tuple[str, bool]]) -> None:
    # Lines with quoted values anywhere, glued or not: the quick splitter
    # (pieces between quotes) agrees with the character-by-character scanner.
    line = "-A X" + "".join(
        (f' "{text}"' if quoted else f" {text}") if index % 3 else (f'"{text}"' if quoted else text)
        for index, (text, quoted) in enumerate(parts)
    )
    state, tokens = scan_printed(line)
    assert split_printed(line) == (tokens if state == CLOSED else None)


def test_a_listing_read_again_reads_alike_from_the_memo() -> None:
    records = [
        '-A X -s 10.0.0.0/8 -p tcp -m comment --comment "a b" -m tcp --dport 80 -j ACCEPT',
        "-A X -m tcp -p tcp --dport 80 -j ACCEPT",  # not in printed form
        "-A X -j DROP -m comment --comment x",
        '-A X -m comment --comment "open',
    ]
    first = read_listing(V4, "filter", "X", records)
    plain = ChainListing(V4, "filter", "X", True, first.specs)
    assert first.keys == plain.keys
    again = read_listing(V4, "filter", "X", [*records, records[0]])
    assert again.specs == (*first.specs, first.specs[0])
    assert again.keys == (*plain.keys, plain.keys[0])
    assert again == ChainListing(V4, "filter", "X", True, again.specs)  # the records are not compared


PRINTED_WORDS = [
    "-s", "10.0.0.0/8", "10.1.2.3/8", "-d", "!", "-i", "eth0", "+", "-p", "tcp", "6", "-m", "-j", "-g",
    "--match", "--jump", "comment", "--comment", "tcp", "--dport", "80", "http", "udp", "mark", "--mark",
    "0x1", "ACCEPT", "REJECT", "--reject-with", "tcp-reset", "DNAT", "--to-destination", "1.2.3.4:80",
    "CHAIN", "", " ", "\\", "a b", "x\ty", "é", "\u00a0", "LOG", "--log-prefix", "--log-level", "4",
    "NFLOG", "--nflog-prefix", "string", "--string", "--algo", "bm", "--to", "65535", "-o", "-i",
    "47", "gre", "icmp", "--icmp-type", "255/0", "any", "0:65535",
]  # fmt: skip


@settings(max_examples=3000)
@given(
    st.lists(st.tuples(st.sampled_from(PRINTED_WORDS), st.booleans()), max_size=12),
    st.sampled_from(["X", "-m", "comment", "a-b"]),
    st.sampled_from([V4, V6]),
)
def test_a_printed_line_read_a_group_at_a_time_reads_as_split_and_keyed(
    words: list[tuple[str, bool]], chain: str, proto: Protocol
) -> None:
    # The text fast path (groups cut out of the line, kept by text) gives the
    # spec split_printed gives and the key _key gives, or leaves the line alone.
    record = " ".join(["-A", chain, *(f'"{word}"' if quoted else word for word, quoted in words)])
    for line in (record, record.replace('"', "")):
        read = _read_printed(line, f"-A {chain} ", proto)
        if read is not None:
            spec = _printed_spec(line)
            assert read == (spec, _key(spec, proto))


# iptables-nft 1.8.7 ends the -S and iptables-save line of a rule without a
# target with a blank; so do other releases' lines of the same rules without.
ENDING_IN_A_BLANK = [
    (V4, "-A INPUT -p udp -m udp --dport 0 "),
    (V4, "-A INPUT -m length --length 200:100 "),
    (V4, "-A INPUT -m conntrack --ctproto 0 "),
    (V6, "-A INPUT -d fd00::1/128 "),
    (V4, "-A INPUT -i a b "),
    (V4, '-A INPUT -m comment --comment "x y" '),
    (V4, '-A INPUT -s 10.0.0.0/8 -m comment --comment "x" -m comment --comment "y z" '),
]


@pytest.mark.parametrize(("proto", "line"), ENDING_IN_A_BLANK)
def test_a_line_ending_in_a_blank_reads_as_without_it(proto: Protocol, line: str) -> None:
    bare = line.rstrip(" ")
    for record in (line, bare):  # the second time from the memo
        (read,) = read_listing(proto, "filter", "INPUT", rule_records([record], "INPUT")).specs
        assert read == _printed_spec(bare) and read[0] != OPAQUE
    listing = read_listing(proto, "filter", "INPUT", rule_records([line, bare], "INPUT"))
    assert listing.keys[0] == listing.keys[1] == _key(_printed_spec(bare), proto)
    assert parse_rule(line, proto=proto) == parse_rule(bare, proto=proto)
    save = "*filter\n:INPUT ACCEPT [0:0]\n{}\nCOMMIT\n"
    chain = parse_save(save.format(line), proto)["filter"].chain("INPUT")
    assert chain.specs == parse_save(save.format(bare), proto)["filter"].chain("INPUT").specs


def test_a_value_holding_a_newline_printed_with_a_blank_after_it_is_one_opaque_rule() -> None:
    # iptables-nft 1.8.7 prints the closing quote on the next line with a blank.
    for tail in ('" ', '"'):
        lines = ['-A INPUT -m comment --comment "open -j ACCEPT', tail, "-A INPUT -j DROP"]
        listing = read_listing(V4, "filter", "INPUT", rule_records(lines, "INPUT"))
        assert [spec[0] for spec in listing.specs] == [OPAQUE, "-j"]


WRITTEN = [
    ("as given", "-p tcp --dport 1 -j DROP", "-p tcp --dport 1 -j DROP"),
    ("as given, a match of each kind", "-p tcp -m tcp --dport 1 -m comment --comment x -j DROP",
     "-p tcp -m tcp --dport 1 -m comment --comment x -j DROP"),
    ("a tcp match without options, folded", "-p tcp -m tcp -m tcp --dport 1 -j DROP",
     "-p tcp -m tcp --dport 1 -j DROP"),
    ("an implicit tcp match and a later one, folded", "-p tcp --dport 1 -m tcp --sport 2 -j DROP",
     "-p tcp -m tcp --sport 2 --dport 1 -j DROP"),
    ("repeated udp matches, folded", "-p udp -m udp --sport 5 -m udp --dport 6 -j ACCEPT",
     "-p udp -m udp --sport 5 --dport 6 -j ACCEPT"),
    ("folded, the rest in canonical form", "-p tcp -m tcp -m tcp --dport http -j REJECT",
     "-p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"),
    ("an option in two matches: not folded, as given", "-p tcp --dport 1 -m tcp --dport 2 -j DROP",
     "-p tcp --dport 1 -m tcp --dport 2 -j DROP"),
    ("a rule not read whole: as given", "-p tcp -m tcp -m tcp --dport 1 -m foo --bar -j DROP",
     "-p tcp -m tcp -m tcp --dport 1 -m foo --bar -j DROP"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("given", "written"), [(g, w) for _, g, w in WRITTEN], ids=[n for n, _, _ in WRITTEN]
)
def test_a_rule_iptables_nft_reads_back_folded_is_written_folded(given: str, written: str) -> None:
    # iptables-nft 1.8.11 on deletes (and -C finds) such a rule by its folded
    # spelling only: the controller writes it, and deletes it, by that one.
    spec = tuple(given.split())
    assert spec_to_write(spec) == tuple(written.split())
    assert canonicalize(spec_to_write(spec)) == canonicalize(spec)
