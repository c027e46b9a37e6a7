"""Rules, chains and rule sets: what is accepted, what is refused, how they print."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aioiptables.errors import InvalidRuleError
from aioiptables.model import (
    TABLES,
    Chain,
    Protocol,
    Rule,
    RuleSet,
    is_builtin_chain,
    validate_chain_name,
    validate_position,
    validate_spec,
    validate_table,
)


def refused(call: Callable[[], object], bad: object) -> InvalidRuleError:
    """Run ``call``, expecting an InvalidRuleError that names ``bad``."""
    with pytest.raises(InvalidRuleError) as caught:
        call()
    assert isinstance(caught.value, ValueError)
    assert caught.value.value == bad
    assert repr(bad) in str(caught.value)
    return caught.value


# -- tables -------------------------------------------------------------------


@pytest.mark.parametrize("table", ["filter", "nat", "mangle", "raw", "security"])
def test_every_iptables_table_is_accepted(table: str) -> None:
    assert validate_table(table) == table
    assert table in TABLES
    assert Rule.ipv4(table, "X", "-j", "ACCEPT").table == table


@pytest.mark.parametrize(
    "table",
    [
        pytest.param("Filter", id="case-matters"),
        pytest.param("broute", id="ebtables-table"),
        pytest.param("", id="empty"),
        pytest.param(" filter", id="leading-space"),
        pytest.param(None, id="none"),
        pytest.param(1, id="int"),
    ],
)
def test_unknown_table_is_refused(table: Any) -> None:
    error = refused(lambda: validate_table(table), table)
    assert error.what == "table"
    refused(lambda: Rule(table, "INPUT", ("-j", "ACCEPT")), table)
    refused(lambda: Chain(table, "X"), table)


# -- chain names --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("X", id="one-character"),
        pytest.param("C" * 28, id="28-characters"),
        pytest.param("é" * 14, id="28-bytes-of-utf8"),
        pytest.param("KILO-NAT", id="dash-inside"),
        pytest.param("kilo_nat.v4:1", id="punctuation"),
        pytest.param("INPUT", id="builtin-name"),
        pytest.param("X-", id="dash-at-end"),
    ],
)
def test_valid_chain_name_is_accepted(name: str) -> None:
    assert validate_chain_name(name) == name
    assert Chain.ipv4("filter", name).name == name
    assert Rule.ipv4("filter", name).chain == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("C" * 29, id="29-characters"),
        pytest.param("é" * 15, id="15-characters-but-30-bytes-iptables-counts-bytes"),
        pytest.param("A B", id="space"),
        pytest.param("A\tB", id="tab"),
        pytest.param("A\nB", id="newline"),
        pytest.param("A\x00", id="nul"),
        pytest.param("A\u00a0B", id="unicode-space"),
        pytest.param("-X", id="starts-with-dash"),
        pytest.param("--", id="only-dashes"),
        pytest.param("!X", id="starts-with-bang"),
        pytest.param('A"B', id="double-quote"),
        pytest.param("A'B", id="single-quote"),
        pytest.param("A\\B", id="backslash"),
        pytest.param(None, id="none"),
        pytest.param(7, id="int"),
    ],
)
def test_invalid_chain_name_is_refused(name: Any) -> None:
    error = refused(lambda: validate_chain_name(name), name)
    assert error.what == "chain"
    refused(lambda: Chain("filter", name), name)
    refused(lambda: Rule("filter", name, ("-j", "ACCEPT")), name)


# -- spec tokens ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "stored"),
    [
        pytest.param([], (), id="empty-list"),
        pytest.param(["-j", "ACCEPT"], ("-j", "ACCEPT"), id="list"),
        pytest.param(("-j", "ACCEPT"), ("-j", "ACCEPT"), id="tuple"),
        pytest.param(iter(["-j", "ACCEPT"]), ("-j", "ACCEPT"), id="iterator"),
        pytest.param(["--comment", ""], ("--comment", ""), id="empty-token"),
        pytest.param(
            ["--comment", "a b \"c\" 'd' \\e #f"], ("--comment", "a b \"c\" 'd' \\e #f"), id="quotes"
        ),
        pytest.param(["--comment", "héllo ☃"], ("--comment", "héllo ☃"), id="non-ascii"),
    ],
)
def test_valid_spec_is_stored_as_a_tuple(spec: Any, stored: tuple[str, ...]) -> None:
    assert validate_spec(spec) == stored


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        pytest.param("-j ACCEPT", "-j ACCEPT", id="one-string-instead-of-tokens"),
        pytest.param("", "", id="empty-string-instead-of-tokens"),
        pytest.param(["-j", 1], 1, id="int-token"),
        pytest.param(["-j", None], None, id="none-token"),
        pytest.param(["-j", b"ACCEPT"], b"ACCEPT", id="bytes-token"),
        pytest.param(["--comment", "a\x00b"], "a\x00b", id="nul"),
        pytest.param(["--comment", "a\nb"], "a\nb", id="newline"),
        pytest.param(["--comment", "a\rb"], "a\rb", id="carriage-return"),
        pytest.param(["--comment", "a\tb"], "a\tb", id="tab"),
        pytest.param(["--comment", "\x1b[0m"], "\x1b[0m", id="escape"),
        pytest.param(["--comment", "a\x7f"], "a\x7f", id="delete"),
    ],
)
def test_invalid_spec_is_refused(spec: Any, bad: object) -> None:
    refused(lambda: validate_spec(spec), bad)
    refused(lambda: Rule("filter", "INPUT", spec), bad)


def test_rule_refuses_a_bad_token_given_as_varargs() -> None:
    refused(lambda: Rule.ipv4("filter", "INPUT", "-j", "ACC\nEPT"), "ACC\nEPT")
    refused(lambda: Rule.ipv6("filter", "INPUT", "-j", "ACC\x00EPT"), "ACC\x00EPT")


# -- positions -----------------------------------------------------------------


@pytest.mark.parametrize("position", [1, 2, 10_000])
def test_position_of_one_or_more_is_accepted(position: int) -> None:
    assert validate_position(position) == position


@pytest.mark.parametrize(
    "position",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(True, id="bool-true"),
        pytest.param(False, id="bool-false"),
        pytest.param(1.0, id="float"),
        pytest.param("1", id="string"),
        pytest.param(None, id="none"),
    ],
)
def test_invalid_position_is_refused(position: Any) -> None:
    error = refused(lambda: validate_position(position), position)
    assert error.what == "position"


# -- protocol ------------------------------------------------------------------


@pytest.mark.parametrize(("proto", "command"), [(Protocol.IPV4, "iptables"), (Protocol.IPV6, "ip6tables")])
def test_protocol_names_its_command(proto: Protocol, command: str) -> None:
    assert proto.command == command


@pytest.mark.parametrize("proto", [pytest.param("ipv4", id="string"), pytest.param(4, id="int")])
def test_rule_and_chain_refuse_a_protocol_that_is_not_a_protocol(proto: Any) -> None:
    refused(lambda: Rule("filter", "INPUT", ("-j", "ACCEPT"), proto), proto)
    refused(lambda: Chain("filter", "X", proto), proto)


# -- rules and chains as values -------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        pytest.param(
            Rule.ipv4("nat", "KILO-NAT", "-s", "10.4.0.0/16", "-j", "MASQUERADE"),
            "nat -A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE",
            id="plain-tokens",
        ),
        pytest.param(
            Rule.ipv4("filter", "INPUT", "-m", "comment", "--comment", "a b", "-j", "ACCEPT"),
            'filter -A INPUT -m comment --comment "a b" -j ACCEPT',
            id="token-with-space-quoted",
        ),
        pytest.param(
            Rule.ipv4("filter", "INPUT", "--comment", 'say "hi"'),
            'filter -A INPUT --comment "say \\"hi\\""',
            id="double-quote-escaped",
        ),
        pytest.param(Rule.ipv4("filter", "X"), "filter -A X", id="empty-spec-no-trailing-space"),
        pytest.param(
            Rule.ipv6("filter", "INPUT", "-s", "fd00::/8", "-j", "DROP"),
            "filter -A INPUT -s fd00::/8 -j DROP",
            id="ipv6-same-format",
        ),
    ],
)
def test_str_of_rule(rule: Rule, text: str) -> None:
    assert str(rule) == text


@pytest.mark.parametrize(
    ("chain", "text"),
    [
        pytest.param(Chain.ipv4("nat", "KILO-NAT"), "nat -N KILO-NAT", id="ipv4"),
        pytest.param(Chain.ipv6("filter", "X"), "filter -N X", id="ipv6"),
    ],
)
def test_str_of_chain(chain: Chain, text: str) -> None:
    assert str(chain) == text


def test_rule_spec_is_stored_as_a_tuple_and_rules_are_hashable_values() -> None:
    from_list = Rule("filter", "INPUT", ["-j", "ACCEPT"])
    from_varargs = Rule.ipv4("filter", "INPUT", "-j", "ACCEPT")
    assert from_list.spec == ("-j", "ACCEPT")
    assert isinstance(from_list.spec, tuple)
    assert from_list == from_varargs
    assert hash(from_list) == hash(from_varargs)
    assert len({from_list, from_varargs}) == 1


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(
            Rule.ipv4("filter", "INPUT", "-j", "ACCEPT"),
            Rule.ipv6("filter", "INPUT", "-j", "ACCEPT"),
            id="proto",
        ),
        pytest.param(
            Rule.ipv4("filter", "INPUT", "-j", "ACCEPT"),
            Rule.ipv4("raw", "OUTPUT", "-j", "ACCEPT"),
            id="table",
        ),
        pytest.param(
            Rule.ipv4("filter", "INPUT", "-j", "ACCEPT"),
            Rule.ipv4("filter", "OUTPUT", "-j", "ACCEPT"),
            id="chain",
        ),
        pytest.param(
            Rule.ipv4("filter", "INPUT", "-j", "ACCEPT"),
            Rule.ipv4("filter", "INPUT", "-j", "DROP"),
            id="spec",
        ),
        pytest.param(Chain.ipv4("filter", "X"), Chain.ipv6("filter", "X"), id="chain-proto"),
        pytest.param(Chain.ipv4("filter", "X"), Chain.ipv4("nat", "X"), id="chain-table"),
    ],
)
def test_items_differing_in_one_field_are_different(one: Rule | Chain, other: Rule | Chain) -> None:
    assert one != other
    assert len({one, other}) == 2


def test_rules_and_chains_are_frozen() -> None:
    rule = Rule.ipv4("filter", "INPUT", "-j", "ACCEPT")
    chain = Chain.ipv4("filter", "X")
    with pytest.raises(AttributeError):
        rule.chain = "OUTPUT"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        chain.name = "Y"  # type: ignore[misc]


def test_default_protocol_is_ipv4() -> None:
    assert Rule("filter", "INPUT", ("-j", "ACCEPT")).proto is Protocol.IPV4
    assert Chain("filter", "X").proto is Protocol.IPV4
    assert Rule.ipv6("filter", "INPUT").proto is Protocol.IPV6
    assert Chain.ipv6("filter", "X").proto is Protocol.IPV6


@pytest.mark.parametrize(
    ("table", "chain", "builtin"),
    [
        ("filter", "INPUT", True),
        ("filter", "FORWARD", True),
        ("nat", "POSTROUTING", True),
        ("raw", "PREROUTING", True),
        ("filter", "POSTROUTING", False),
        ("raw", "INPUT", False),
        ("nat", "KILO-NAT", False),
        ("filter", "input", False),
    ],
)
def test_builtin_chains_per_table(table: str, chain: str, builtin: bool) -> None:
    assert is_builtin_chain(table, chain) is builtin
    assert Chain.ipv4(table, chain).builtin is builtin


# -- rule sets -----------------------------------------------------------------

ACCEPT = Rule.ipv4("filter", "INPUT", "-j", "ACCEPT")
DROP = Rule.ipv4("filter", "INPUT", "-j", "DROP")
CHAIN = Chain.ipv4("filter", "X")


def test_ruleset_stores_tuples_and_iterates_appends_then_prepends() -> None:
    ruleset = RuleSet(append=[CHAIN, ACCEPT], prepend=[DROP])
    assert ruleset.append == (CHAIN, ACCEPT)
    assert ruleset.prepend == (DROP,)
    assert list(ruleset) == [CHAIN, ACCEPT, DROP]
    items: list[Rule | Chain] = [CHAIN, ACCEPT]
    assert RuleSet(append=iter(items), prepend=iter([DROP])) == ruleset


def test_empty_ruleset() -> None:
    assert list(RuleSet()) == []


def test_same_rule_in_both_protocols_is_not_a_duplicate() -> None:
    v6 = Rule.ipv6("filter", "INPUT", "-j", "ACCEPT")
    assert RuleSet(append=[ACCEPT, v6]).append == (ACCEPT, v6)


@pytest.mark.parametrize(
    ("kwargs", "bad", "what"),
    [
        pytest.param({"append": [ACCEPT, DROP, ACCEPT]}, ACCEPT, "append item", id="rule-appended-twice"),
        pytest.param(
            {"append": [ACCEPT, Rule.ipv4("filter", "INPUT", "-j", "ACCEPT")]},
            ACCEPT,
            "append item",
            id="equal-rule-appended-twice",
        ),
        pytest.param({"append": [CHAIN, CHAIN]}, CHAIN, "append item", id="chain-twice"),
        pytest.param({"prepend": [DROP, DROP]}, DROP, "prepend rule", id="rule-prepended-twice"),
        pytest.param({"append": [ACCEPT], "prepend": [ACCEPT]}, ACCEPT, "rule", id="appended-and-prepended"),
        pytest.param({"prepend": [CHAIN]}, CHAIN, "prepend rule", id="chain-in-prepend"),
        pytest.param(
            {"append": ["filter -A INPUT -j ACCEPT"]}, "filter -A INPUT -j ACCEPT", "append item", id="str"
        ),
        pytest.param({"append": [("filter", "INPUT")]}, ("filter", "INPUT"), "append item", id="tuple"),
        pytest.param({"append": [None]}, None, "append item", id="none"),
    ],
)
def test_ruleset_refuses(kwargs: dict[str, Any], bad: object, what: str) -> None:
    error = refused(lambda: RuleSet(**kwargs), bad)
    assert error.what == what
