"""The planner: desired rule set + observed chains -> one restore payload per table.

Every plan is checked by applying its ops to a small model of iptables that
enforces what iptables-restore enforces (``-D`` must match, ``-I`` position in
range, ``-X`` only on an empty, unreferenced chain), so a plan that would fail
on a real system fails here too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioiptables.model import Chain, Protocol, Rule, RuleSet
from aioiptables.parse import ChainListing
from aioiptables.plan import ChainKey, Expected, Op, TablePlan, align, chains_to_read, plan, release_needed

V4, V6 = Protocol.IPV4, Protocol.IPV6
Spec = tuple[str, ...]
# One table's chains as the model of iptables holds them: name -> rules.
State = dict[str, list[Spec]]


def s(n: int) -> Spec:
    """A rule spec, numbered for readability."""
    return ("-s", f"10.0.0.{n}", "-j", "ACCEPT")


def foreign(n: int) -> Spec:
    """A rule somebody else put in the chain."""
    return ("-s", f"192.0.2.{n}", "-j", "DROP")


def jump(target: str) -> Spec:
    return ("-j", target)


def line(kind: str, chain: str, spec: Spec = ()) -> str:
    """The restore line expected for one op, written out by hand."""
    tail = "".join(f" {t}" for t in spec)
    return f"{kind} {chain}{tail}"


def listing(
    chain: str, *specs: Spec, table: str = "filter", proto: Protocol = V4, exists: bool = True
) -> ChainListing:
    return ChainListing(proto, table, chain, exists, tuple(specs))


def missing(chain: str, *, table: str = "filter", proto: Protocol = V4) -> ChainListing:
    return listing(chain, table=table, proto=proto, exists=False)


def observe(*listings: ChainListing) -> dict[ChainKey, ChainListing]:
    return {(item.proto, item.table, item.chain): item for item in listings}


def lines(table_plan: TablePlan) -> list[str]:
    return [op.line() for op in table_plan.ops]


def only_plan(plans: Sequence[TablePlan]) -> TablePlan:
    assert len(plans) == 1, plans
    return plans[0]


def _jumps_to(spec: Spec, chain: str) -> bool:
    return any(flag in ("-j", "-g") and value == chain for flag, value in itertools.pairwise(spec))


def apply(state: State, ops: Iterable[Op]) -> State:
    """Apply ops as iptables-restore --noflush would; AssertionError where it would fail."""
    state = {name: list(rules) for name, rules in state.items()}
    for op in ops:
        if op.kind == "create":
            state[op.chain] = []
            continue
        assert op.chain in state, f"{op.line()}: no chain {op.chain}"
        rules = state[op.chain]
        if op.kind == "append":
            rules.append(op.spec)
        elif op.kind == "insert":
            assert 1 <= op.position <= len(rules) + 1, f"{op.line()}: index of insertion too big"
            rules.insert(op.position - 1, op.spec)
        elif op.kind == "delete" and op.position:
            assert 1 <= op.position <= len(rules), f"{op.line()}: index of deletion too big"
            del rules[op.position - 1]
        elif op.kind == "delete":
            assert op.spec in rules, f"{op.line()}: no such rule"
            rules.remove(op.spec)  # the first match, as -D does
        elif op.kind == "flush":
            rules.clear()
        elif op.kind == "remove":
            assert not rules, f"{op.line()}: chain not empty"
            referrers = [name for name, specs in state.items() if any(_jumps_to(x, op.chain) for x in specs)]
            assert not referrers, f"{op.line()}: still referenced from {referrers}"
            del state[op.chain]
        else:  # pragma: no cover
            raise AssertionError(f"unknown op {op}")
    return state


def state_of(observed: dict[ChainKey, ChainListing], proto: Protocol = V4, table: str = "filter") -> State:
    return {
        key[2]: list(item.specs)
        for key, item in observed.items()
        if key[:2] == (proto, table) and item.exists
    }


def relisted(
    observed: dict[ChainKey, ChainListing], states: dict[tuple[Protocol, str], State]
) -> dict[ChainKey, ChainListing]:
    """The same chains, listed again from the states after applying plans."""
    out = {}
    for (proto, table, chain), _ in observed.items():
        state = states[(proto, table)]
        out[(proto, table, chain)] = (
            listing(chain, *state[chain], table=table, proto=proto)
            if chain in state
            else missing(chain, table=table, proto=proto)
        )
    return out


def converge(
    ruleset: RuleSet, observed: dict[ChainKey, ChainListing], remove: Sequence[Rule | Chain] = ()
) -> tuple[list[TablePlan], dict[tuple[Protocol, str], State]]:
    """Plan, apply every plan to the model, and check a second plan is empty."""
    plans = plan(ruleset, observed, remove)
    states = {(key[0], key[1]): state_of(observed, key[0], key[1]) for key in observed}
    for table_plan in plans:
        key = (table_plan.proto, table_plan.table)
        states[key] = apply(states[key], table_plan.ops)
    assert plan(ruleset, relisted(observed, states), remove) == []
    return plans, states


# -- nothing to do --------------------------------------------------------------

R1, R2, R3, R4 = (Rule.ipv4("filter", "INPUT", *s(n)) for n in (1, 2, 3, 4))


@pytest.mark.parametrize(
    ("ruleset", "observed", "remove"),
    [
        pytest.param(RuleSet(), observe(), [], id="empty-ruleset"),
        pytest.param(
            RuleSet(append=[R1, R2, R3]),
            observe(listing("INPUT", s(1), s(2), s(3))),
            [],
            id="appends-in-order",
        ),
        pytest.param(
            RuleSet(append=[R1, R2]),
            observe(listing("INPUT", foreign(1), s(1), foreign(2), s(2), foreign(3))),
            [],
            id="foreign-rules-between-appends",
        ),
        pytest.param(
            RuleSet(append=[R1, R2]),
            observe(listing("INPUT", s(1), s(1), s(2))),
            [],
            id="duplicate-of-an-in-place-rule-is-left-alone",
        ),
        pytest.param(
            RuleSet(prepend=[R1, R2]),
            observe(listing("INPUT", s(1), s(2), foreign(1))),
            [],
            id="prepends-at-the-top",
        ),
        pytest.param(
            RuleSet(append=[Chain.ipv4("filter", "X"), Rule.ipv4("filter", "X", *s(1))]),
            observe(listing("X", s(1))),
            [],
            id="chain-exists-with-its-rule",
        ),
        pytest.param(
            RuleSet(append=[Chain.ipv4("filter", "INPUT")]),
            observe(listing("INPUT")),
            [],
            id="builtin-chain-is-never-created",
        ),
        pytest.param(RuleSet(), observe(listing("INPUT", s(1))), [R2], id="removed-rule-already-gone"),
        pytest.param(
            RuleSet(), observe(missing("X")), [Chain.ipv4("filter", "X")], id="removed-chain-already-gone"
        ),
        pytest.param(
            RuleSet(),
            observe(listing("INPUT", s(1))),
            [Chain.ipv4("filter", "INPUT")],
            id="builtin-chain-in-remove-is-never-flushed",
        ),
        pytest.param(
            RuleSet(append=[R1]),
            observe(listing("INPUT", s(1))),
            [R1],
            id="retired-rule-still-wanted-is-kept",
        ),
        pytest.param(
            RuleSet(append=[Chain.ipv4("filter", "X")]),
            observe(listing("X", s(1))),
            [Chain.ipv4("filter", "X")],
            id="retired-chain-still-wanted-is-kept",
        ),
    ],
)
def test_everything_in_place_needs_no_plan(
    ruleset: RuleSet, observed: dict[ChainKey, ChainListing], remove: list[Rule | Chain]
) -> None:
    assert plan(ruleset, observed, remove) == []


# -- append rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed", "expected", "result"),
    [
        pytest.param(
            [],
            [line("-A", "INPUT", s(1)), line("-A", "INPUT", s(2)), line("-A", "INPUT", s(3))],
            [s(1), s(2), s(3)],
            id="empty-chain-gets-all-appended-in-order",
        ),
        pytest.param(
            [s(1), s(2)],
            [line("-A", "INPUT", s(3))],
            [s(1), s(2), s(3)],
            id="missing-last-rule-is-just-appended",
        ),
        pytest.param(
            [s(1), s(3)],
            [line("-D", "INPUT", s(3)), line("-A", "INPUT", s(2)), line("-A", "INPUT", s(3))],
            [s(1), s(2), s(3)],
            id="missing-middle-rule-later-rules-deleted-and-appended-again",
        ),
        pytest.param(
            [s(2), s(3)],
            [
                line("-D", "INPUT", s(2)),
                line("-D", "INPUT", s(3)),
                line("-A", "INPUT", s(1)),
                line("-A", "INPUT", s(2)),
                line("-A", "INPUT", s(3)),
            ],
            [s(1), s(2), s(3)],
            id="missing-first-rule-all-deleted-and-appended-again",
        ),
        pytest.param(
            [s(2), s(1), s(3)],
            [
                line("-D", "INPUT", s(2)),
                line("-D", "INPUT", s(3)),
                line("-A", "INPUT", s(2)),
                line("-A", "INPUT", s(3)),
            ],
            [s(1), s(2), s(3)],
            id="rules-out-of-order-are-fixed-from-the-first-out-of-place",
        ),
        pytest.param(
            [s(3), s(2), s(1)],
            [
                line("-D", "INPUT", s(3)),  # top first
                line("-D", "INPUT", s(2)),
                line("-A", "INPUT", s(2)),
                line("-A", "INPUT", s(3)),
            ],
            [s(1), s(2), s(3)],
            id="reversed-rules-are-fixed",
        ),
        pytest.param(
            [foreign(1), s(1), foreign(2), s(3), foreign(3)],
            [line("-D", "INPUT", s(3)), line("-A", "INPUT", s(2)), line("-A", "INPUT", s(3))],
            [foreign(1), s(1), foreign(2), foreign(3), s(2), s(3)],
            id="foreign-rules-interleaved-are-left-alone",
        ),
        pytest.param(
            [s(1), s(3), s(3), s(3)],
            [
                line("-D", "INPUT", s(3)),
                line("-D", "INPUT", s(3)),
                line("-D", "INPUT", s(3)),
                line("-A", "INPUT", s(2)),
                line("-A", "INPUT", s(3)),
            ],
            [s(1), s(2), s(3)],
            id="duplicates-after-the-first-broken-rule-are-all-deleted",
        ),
        pytest.param(
            [s(3), s(1), s(2)],
            [line("-D", "INPUT", s(3)), line("-A", "INPUT", s(3))],
            [s(1), s(2), s(3)],
            id="a-rule-found-only-before-its-predecessor-is-moved-to-the-end",
        ),
    ],
)
def test_append_rules_keep_their_order(observed: list[Spec], expected: list[str], result: list[Spec]) -> None:
    ruleset = RuleSet(append=[R1, R2, R3])
    listed = observe(listing("INPUT", *observed))
    plans, states = converge(ruleset, listed)
    assert lines(only_plan(plans)) == expected
    assert states[(V4, "filter")]["INPUT"] == result


def test_append_rules_of_other_chains_are_untouched() -> None:
    ruleset = RuleSet(
        append=[
            Rule.ipv4("filter", "INPUT", *s(1)),
            Rule.ipv4("filter", "OUTPUT", *s(5)),
            Rule.ipv4("filter", "INPUT", *s(2)),
            Rule.ipv4("filter", "OUTPUT", *s(6)),
            Rule.ipv4("filter", "INPUT", *s(3)),
        ]
    )
    observed = observe(listing("INPUT", s(1), s(3)), listing("OUTPUT", s(5), s(6)))
    plans, _ = converge(ruleset, observed)
    assert lines(only_plan(plans)) == [
        line("-D", "INPUT", s(3)),
        line("-A", "INPUT", s(2)),
        line("-A", "INPUT", s(3)),
    ]


def test_each_chain_is_fixed_on_its_own() -> None:
    ruleset = RuleSet(
        append=[
            Rule.ipv4("filter", "INPUT", *s(1)),
            Rule.ipv4("filter", "OUTPUT", *s(5)),
            Rule.ipv4("filter", "INPUT", *s(2)),
            Rule.ipv4("filter", "OUTPUT", *s(6)),
        ]
    )
    observed = observe(listing("INPUT", s(2)), listing("OUTPUT", s(5)))
    plans, states = converge(ruleset, observed)
    assert sorted(lines(only_plan(plans))) == sorted(
        [
            line("-D", "INPUT", s(2)),
            line("-A", "INPUT", s(1)),
            line("-A", "INPUT", s(2)),
            line("-A", "OUTPUT", s(6)),
        ]
    )
    assert states[(V4, "filter")] == {"INPUT": [s(1), s(2)], "OUTPUT": [s(5), s(6)]}


# -- prepend rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed", "expected", "result"),
    [
        pytest.param(
            [foreign(1)],
            [line("-I", "INPUT", ("1", *s(1))), line("-I", "INPUT", ("2", *s(2)))],
            [s(1), s(2), foreign(1)],
            id="missing-prepends-go-to-position-1-in-order",
        ),
        pytest.param(
            [s(1), foreign(1)],
            [line("-I", "INPUT", ("2", *s(2)))],
            [s(1), s(2), foreign(1)],
            id="missing-second-prepend-goes-right-after-the-first",
        ),
        pytest.param(
            [foreign(1), s(1)],
            [line("-I", "INPUT", ("3", *s(2)))],
            [foreign(1), s(1), s(2)],
            id="missing-second-prepend-follows-the-first-wherever-it-is",
        ),
        pytest.param(
            [s(2), foreign(1)],
            [
                line("-D", "INPUT", s(2)),
                line("-I", "INPUT", ("1", *s(1))),
                line("-I", "INPUT", ("2", *s(2))),
            ],
            [s(1), s(2), foreign(1)],
            id="missing-first-prepend-later-ones-deleted-and-inserted-again",
        ),
        pytest.param(
            [s(2), s(1), foreign(1)],
            [line("-D", "INPUT", s(2)), line("-I", "INPUT", ("2", *s(2)))],
            [s(1), s(2), foreign(1)],
            id="prepends-out-of-order-are-fixed",
        ),
        pytest.param(
            [s(1), s(3), s(3)],
            [
                line("-D", "INPUT", s(3)),
                line("-D", "INPUT", s(3)),
                line("-I", "INPUT", ("2", *s(2))),
                line("-I", "INPUT", ("3", *s(3))),
            ],
            [s(1), s(2), s(3)],
            id="duplicates-of-broken-prepends-are-all-deleted",
        ),
    ],
)
def test_prepend_rules_keep_their_order(
    observed: list[Spec], expected: list[str], result: list[Spec]
) -> None:
    wanted = [R1, R2, R3] if s(3) in observed else [R1, R2]
    listed = observe(listing("INPUT", *observed))
    plans, states = converge(RuleSet(prepend=wanted), listed)
    assert lines(only_plan(plans)) == expected
    assert states[(V4, "filter")]["INPUT"] == result


def test_prepends_and_appends_of_one_chain_both_land() -> None:
    ruleset = RuleSet(append=[R3, R4], prepend=[R1, R2])
    plans, states = converge(ruleset, observe(listing("INPUT", foreign(1))))
    assert lines(only_plan(plans)) == [
        line("-I", "INPUT", ("1", *s(1))),
        line("-I", "INPUT", ("2", *s(2))),
        line("-A", "INPUT", s(3)),
        line("-A", "INPUT", s(4)),
    ]
    assert states[(V4, "filter")]["INPUT"] == [s(1), s(2), foreign(1), s(3), s(4)]


# -- chains ---------------------------------------------------------------------------


def test_missing_chain_is_created_before_rules_that_jump_to_it() -> None:
    ruleset = RuleSet(
        append=[
            Rule.ipv4("filter", "INPUT", *jump("KILO")),
            Chain.ipv4("filter", "KILO"),
            Rule.ipv4("filter", "KILO", *s(1)),
        ]
    )
    plans, states = converge(ruleset, observe(listing("INPUT"), missing("KILO")))
    got = lines(only_plan(plans))
    assert sorted(got) == sorted(["-N KILO", "-A INPUT -j KILO", line("-A", "KILO", s(1))])
    assert got[0] == "-N KILO"
    assert states[(V4, "filter")] == {"INPUT": [jump("KILO")], "KILO": [s(1)]}


def test_missing_chain_without_rules_is_created() -> None:
    plans, states = converge(
        RuleSet(append=[Chain.ipv4("nat", "KILO-NAT")]), observe(missing("KILO-NAT", table="nat"))
    )
    table_plan = only_plan(plans)
    assert (table_plan.proto, table_plan.table) == (V4, "nat")
    assert lines(table_plan) == ["-N KILO-NAT"]
    assert states[(V4, "nat")] == {"KILO-NAT": []}


def test_existing_chain_is_never_declared_again() -> None:
    # ":X - [0:0]" would flush an existing chain, even with --noflush.
    ruleset = RuleSet(append=[Chain.ipv4("filter", "X"), Rule.ipv4("filter", "X", *s(2))])
    plans, states = converge(ruleset, observe(listing("X", foreign(1))))
    assert lines(only_plan(plans)) == [line("-A", "X", s(2))]
    assert states[(V4, "filter")]["X"] == [foreign(1), s(2)]


# -- removing -----------------------------------------------------------------------


def test_removed_rule_is_deleted_with_all_its_duplicates() -> None:
    plans, states = converge(
        RuleSet(), observe(listing("INPUT", s(9), foreign(1), s(9))), [Rule.ipv4("filter", "INPUT", *s(9))]
    )
    assert lines(only_plan(plans)) == [line("-D", "INPUT", s(9)), line("-D", "INPUT", s(9))]
    assert states[(V4, "filter")]["INPUT"] == [foreign(1)]


def test_removed_rule_goes_while_wanted_rules_stay_in_order() -> None:
    ruleset = RuleSet(append=[R1, R2])
    observed = observe(listing("INPUT", s(1), s(9), s(2)))
    plans, states = converge(ruleset, observed, [Rule.ipv4("filter", "INPUT", *s(9))])
    assert lines(only_plan(plans)) == [line("-D", "INPUT", s(9))]
    assert states[(V4, "filter")]["INPUT"] == [s(1), s(2)]


def test_removed_chain_is_flushed_and_deleted_after_rules_that_jump_to_it() -> None:
    remove: list[Rule | Chain] = [
        Chain.ipv4("filter", "KILO"),
        Rule.ipv4("filter", "KILO", *s(1)),
        Rule.ipv4("filter", "KILO", *s(2)),
        Rule.ipv4("filter", "INPUT", *jump("KILO")),
    ]
    observed = observe(listing("INPUT", foreign(1), jump("KILO")), listing("KILO", s(1), s(2)))
    plans, states = converge(RuleSet(), observed, remove)
    assert lines(only_plan(plans)) == ["-D INPUT -j KILO", "-F KILO", "-X KILO"]
    assert states[(V4, "filter")] == {"INPUT": [foreign(1)]}


def test_rules_inside_a_removed_chain_get_no_separate_delete() -> None:
    remove: list[Rule | Chain] = [Rule.ipv4("filter", "KILO", *s(1)), Chain.ipv4("filter", "KILO")]
    plans, _ = converge(RuleSet(), observe(listing("KILO", s(1))), remove)
    assert only_plan(plans).count("delete") == 0
    assert lines(only_plan(plans)) == ["-F KILO", "-X KILO"]


@pytest.mark.parametrize(
    ("inner", "outer"),
    [
        pytest.param("Z-INNER", "B-OUTER", id="target-sorts-after-referrer"),
        pytest.param("A-INNER", "B-OUTER", id="target-sorts-before-referrer"),
    ],
)
def test_removing_a_chain_and_the_chain_that_jumps_to_it(inner: str, outer: str) -> None:
    # As Controller.cleanup retires them: both chains and every rule of the rule set.
    remove: list[Rule | Chain] = [
        Chain.ipv4("filter", outer),
        Rule.ipv4("filter", outer, *jump(inner)),
        Chain.ipv4("filter", inner),
        Rule.ipv4("filter", inner, *s(1)),
    ]
    observed = observe(listing(outer, jump(inner)), listing(inner, s(1)))
    _, states = converge(RuleSet(), observed, remove)
    assert states[(V4, "filter")] == {}


# -- tables and protocols -------------------------------------------------------------


def test_one_plan_per_protocol_and_table_ipv4_before_ipv6() -> None:
    ruleset = RuleSet(
        append=[
            Rule.ipv6("filter", "INPUT", "-j", "ACCEPT"),
            Rule.ipv4("nat", "POSTROUTING", "-j", "MASQUERADE"),
            Rule.ipv4("filter", "INPUT", "-j", "ACCEPT"),
            Rule.ipv4("filter", "OUTPUT", "-j", "ACCEPT"),
        ]
    )
    observed = observe(
        listing("INPUT"),
        listing("OUTPUT"),
        listing("POSTROUTING", table="nat"),
        listing("INPUT", proto=V6),
    )
    plans, _ = converge(ruleset, observed)
    assert [(p.proto, p.table, sorted(lines(p))) for p in plans] == [
        (V4, "filter", ["-A INPUT -j ACCEPT", "-A OUTPUT -j ACCEPT"]),
        (V4, "nat", ["-A POSTROUTING -j MASQUERADE"]),
        (V6, "filter", ["-A INPUT -j ACCEPT"]),
    ]


def test_ipv4_and_ipv6_chains_of_the_same_name_are_separate() -> None:
    ruleset = RuleSet(
        append=[
            Chain.ipv4("filter", "X"),
            Rule.ipv4("filter", "X", "-j", "ACCEPT"),
            Chain.ipv6("filter", "X"),
            Rule.ipv6("filter", "X", "-j", "ACCEPT"),
        ]
    )
    observed = observe(listing("X", ("-j", "ACCEPT")), missing("X", proto=V6))
    plans, _ = converge(ruleset, observed)
    table_plan = only_plan(plans)
    assert table_plan.proto is V6
    assert lines(table_plan) == ["-N X", "-A X -j ACCEPT"]


# -- payload ------------------------------------------------------------------------------


def test_payload_is_one_table_section_ending_in_commit_and_a_newline() -> None:
    ruleset = RuleSet(
        append=[
            Chain.ipv4("filter", "KILO"),
            Rule.ipv4("filter", "KILO", "-m", "comment", "--comment", 'kilo: it\'s "on"', "-j", "ACCEPT"),
        ]
    )
    (table_plan,) = plan(ruleset, observe(missing("KILO")))
    assert table_plan.payload == (
        '*filter\n-N KILO\n-A KILO -m comment --comment "kilo: it\\\'s \\"on\\"" -j ACCEPT\nCOMMIT\n'
    )


@pytest.mark.parametrize(
    ("op", "text"),
    [
        pytest.param(Op("create", "X"), "-N X", id="create-refuses-an-existing-chain"),
        pytest.param(Op("append", "X", ("-j", "ACCEPT")), "-A X -j ACCEPT", id="append"),
        pytest.param(Op("insert", "X", ("-j", "ACCEPT"), 3), "-I X 3 -j ACCEPT", id="insert-with-position"),
        pytest.param(Op("delete", "X", ("-j", "ACCEPT")), "-D X -j ACCEPT", id="delete-by-spec"),
        pytest.param(Op("flush", "X"), "-F X", id="flush"),
        pytest.param(Op("remove", "X"), "-X X", id="remove"),
        pytest.param(Op("append", "X"), "-A X", id="empty-spec-no-trailing-space"),
        pytest.param(
            Op("append", "X", ("--comment", "a b", "--comment", "")),
            '-A X --comment "a b" --comment ""',
            id="tokens-with-spaces-and-empty-tokens-quoted",
        ),
    ],
)
def test_op_line(op: Op, text: str) -> None:
    assert op.line() == text


def test_count_counts_ops_of_one_kind() -> None:
    (table_plan,) = plan(RuleSet(append=[R1, R2, R3]), observe(listing("INPUT", s(2), s(1))))
    assert (table_plan.count("delete"), table_plan.count("append"), table_plan.count("insert")) == (1, 2, 0)


# -- deleting by what we wrote ---------------------------------------------------------


def test_deletes_use_the_spec_as_written_not_as_printed() -> None:
    # Rule keys are canonical: "10.0.0.2/32" (as printed) is the same rule as
    # "10.0.0.2" (as given). -D with the spec we wrote builds the very rule
    # that -A built; some printed forms do not delete at all (-m recent).
    printed = {n: ("-s", f"10.0.0.{n}/32", "-j", "ACCEPT") for n in (1, 2, 9)}
    observed = observe(listing("INPUT", printed[2], printed[9], printed[1]))
    (table_plan,) = plan(RuleSet(append=[R1, R2]), observed, [Rule.ipv4("filter", "INPUT", *s(9))])
    assert lines(table_plan) == [
        line("-D", "INPUT", s(9)),
        line("-D", "INPUT", s(2)),
        line("-A", "INPUT", s(2)),
    ]


# -- after ----------------------------------------------------------------------------------


def test_after_says_how_each_changed_chain_will_read() -> None:
    ruleset = RuleSet(append=[Chain.ipv4("filter", "X"), Rule.ipv4("filter", "X", *s(1)), R1, R2])
    (table_plan,) = plan(ruleset, observe(missing("X"), listing("INPUT", foreign(1), s(2))))
    assert table_plan.after["X"] == listing("X", s(1))
    assert table_plan.after["INPUT"] == listing("INPUT", foreign(1), s(1), s(2))


def test_after_says_a_removed_chain_is_gone() -> None:
    (table_plan,) = plan(RuleSet(), observe(listing("GONE", s(1))), [Chain.ipv4("filter", "GONE")])
    assert lines(table_plan) == ["-F GONE", "-X GONE"]
    assert table_plan.after["GONE"] == missing("GONE")


def test_after_keeps_a_missing_chain_missing() -> None:
    observed = observe(listing("INPUT"), missing("NEVER"))
    (table_plan,) = plan(RuleSet(append=[R1]), observed, [Rule.ipv4("filter", "NEVER", *s(1))])
    assert lines(table_plan) == [line("-A", "INPUT", s(1))]
    assert "NEVER" not in table_plan.after or table_plan.after["NEVER"] == missing("NEVER")


# -- what to read -----------------------------------------------------------------------------


def test_chains_to_read_names_every_chain_of_the_ruleset_and_of_what_is_removed() -> None:
    ruleset = RuleSet(
        append=[Chain.ipv4("nat", "KILO-NAT"), Rule.ipv4("filter", "INPUT", "-j", "ACCEPT")],
        prepend=[Rule.ipv6("filter", "FORWARD", "-j", "DROP")],
    )
    remove: list[Rule | Chain] = [Chain.ipv6("raw", "OLD"), Rule.ipv4("mangle", "OUTPUT", "-j", "MARK")]
    assert chains_to_read(ruleset, remove) == {
        (V4, "nat", "KILO-NAT"),
        (V4, "filter", "INPUT"),
        (V6, "filter", "FORWARD"),
        (V6, "raw", "OLD"),
        (V4, "mangle", "OUTPUT"),
    }


# -- properties -------------------------------------------------------------------------------

POOL = [s(n) for n in range(1, 7)]
OTHERS = [foreign(n) for n in range(1, 4)]


@st.composite
def observed_chain(draw: st.DrawFn, desired: list[Spec]) -> list[Spec]:
    """A chain near ``desired``: some rules lost, moved, duplicated, foreign ones added;
    or any list of pool and foreign rules."""
    if draw(st.booleans()):
        return draw(st.lists(st.sampled_from(POOL + OTHERS), max_size=10))
    chain = list(desired)
    for _ in range(draw(st.integers(0, 4))):
        edit = draw(st.sampled_from(["delete", "insert", "move"]))
        if edit == "insert" or not chain:
            chain.insert(draw(st.integers(0, len(chain))), draw(st.sampled_from(POOL + OTHERS)))
        elif edit == "delete":
            del chain[draw(st.integers(0, len(chain) - 1))]
        else:
            moved = chain.pop(draw(st.integers(0, len(chain) - 1)))
            chain.insert(draw(st.integers(0, len(chain))), moved)
    return chain


def in_order(wanted: Sequence[Spec], chain: Sequence[Spec]) -> bool:
    """Whether ``wanted`` appears in ``chain`` in that order (others may sit between)."""
    rest = iter(chain)
    return all(any(spec == seen for seen in rest) for spec in wanted)


@st.composite
def one_chain_case(draw: st.DrawFn) -> tuple[list[Spec], list[Spec], list[Spec], list[Spec], bool]:
    """(prepends, appends, retired, observed, exists) for the user chain KILO."""
    order = draw(st.permutations(POOL))
    n_pre = draw(st.integers(0, 2))
    n_app = draw(st.integers(0, len(POOL) - n_pre))
    prepends, appends = list(order[:n_pre]), list(order[n_pre : n_pre + n_app])
    retired = [spec for spec in order[n_pre + n_app :] if draw(st.booleans())]
    exists = draw(st.integers(0, 4)) > 0
    observed = draw(observed_chain(prepends + appends)) if exists else []
    return prepends, appends, retired, observed, exists


def kilo(specs: Iterable[Spec]) -> list[Rule]:
    return [Rule.ipv4("filter", "KILO", *spec) for spec in specs]


@settings(max_examples=300, deadline=None)
@given(one_chain_case(), one_chain_case())
def test_applying_the_plan_puts_desired_rules_in_order_and_leaves_nothing_to_do(
    kilo_case: tuple[list[Spec], list[Spec], list[Spec], list[Spec], bool],
    input_case: tuple[list[Spec], list[Spec], list[Spec], list[Spec], bool],
) -> None:
    prepends, appends, retired, observed, exists = kilo_case
    in_prepends, in_appends, in_retired, in_observed, _ = input_case
    ruleset = RuleSet(
        append=[
            Chain.ipv4("filter", "KILO"),
            *kilo(appends),
            *(Rule.ipv4("filter", "INPUT", *spec) for spec in in_appends),
        ],
        prepend=[*kilo(prepends), *(Rule.ipv4("filter", "INPUT", *spec) for spec in in_prepends)],
    )
    remove = [*kilo(retired), *(Rule.ipv4("filter", "INPUT", *spec) for spec in in_retired)]
    listed = observe(
        listing("KILO", *observed, exists=exists),
        listing("INPUT", *in_observed),
    )

    plans, states = converge(ruleset, listed, remove)

    state = states[(V4, "filter")]
    cases = {
        "KILO": (prepends, appends, retired, observed),
        "INPUT": (in_prepends, in_appends, in_retired, in_observed),
    }
    for chain, (pre, app, ret, before) in cases.items():
        after = state[chain]
        assert in_order(pre, after) and in_order(app, after), chain
        assert not set(ret) & set(after), f"retired rules left in {chain}"
        # Foreign rules (neither wanted nor retired) keep their number and order.
        mine = set(pre) | set(app) | set(ret)
        assert [x for x in after if x not in mine] == [x for x in before if x not in mine], chain
        # A chain already right is not touched.
        ops = [op for p in plans for op in p.ops if op.chain == chain]
        if in_order(pre, before) and in_order(app, before) and not set(ret) & set(before):
            assert [op for op in ops if op.kind != "create"] == [], chain
    for table_plan in plans:
        for chain, expected in table_plan.after.items():
            assert expected.exists is (chain in state), f"`after` of {chain} is wrong"
            assert list(expected.specs) == state.get(chain, []), f"`after` of {chain} is wrong"


# -- align: learning how iptables printed what we just wrote ------------------------------


def fresh(*keys: tuple[str, ...]) -> Expected:
    return Expected(keys, keys, (True,) * len(keys), keys)


LOG40 = ("-j", "LOG", "--log-prefix", "p" * 40)
LOG29 = ("-j", "LOG", "--log-prefix", "p" * 29)
FOREIGN = ("-s", "10.9.9.9/32", "-j", "DROP")


@pytest.mark.parametrize(
    ("expected", "observed", "learned", "ours"),
    [
        pytest.param(fresh(LOG40), [LOG29], {LOG40: LOG29}, (True,), id="a-cut-prefix-is-learned"),
        pytest.param(
            fresh(LOG40), [FOREIGN, LOG29], {LOG40: LOG29}, (False, True), id="learned-past-a-foreign-insert"
        ),
        pytest.param(
            fresh(LOG40),
            [("-j", "LOG", "--log-prefix", "another")],
            {},
            (False,),
            id="a-same-shape-rule-with-other-values-is-not-ours",
        ),
        pytest.param(
            fresh(("-s", "10.0.0.1/32", "-j", "LOG")),
            [("-s", "10.0.0.2/32", "-j", "LOG")],
            {},
            (False,),
            id="other-base-options-are-not-ours",
        ),
        pytest.param(
            fresh(("-m", "comment", "--comment", "x", "-j", "ACCEPT")),
            [("-m", "comment", "--comment", "x", "-j", "DROP")],
            {},
            (False,),
            id="another-target-is-not-ours",
        ),
        pytest.param(fresh(LOG40), [], {}, (), id="a-deleted-line-teaches-nothing"),
    ],
)
def test_align_learns_only_what_iptables_could_have_printed_for_ours(
    expected: Expected, observed: list[tuple[str, ...]], learned: dict[Spec, Spec], ours: tuple[bool, ...]
) -> None:
    found = align(expected, observed)
    assert found.learned == learned
    assert found.ours == ours


def test_align_gives_back_a_rule_moved_by_hand_but_never_one_more() -> None:
    a, b = ("-s", "10.0.0.1/32", "-j", "ACCEPT"), ("-s", "10.0.0.2/32", "-j", "ACCEPT")
    expected = Expected((a, b), (a, b), (True, True), (None, None))
    assert align(expected, [b, a]).ours == (True, True)
    assert align(expected, [b, a, a]).ours.count(True) == 2, "the second copy of a is someone else's"


# -- rules some releases write otherwise than asked -------------------------------------------------

SNAT = ("-p", "tcp", "-j", "SNAT")


@pytest.mark.parametrize(
    ("proto", "spec", "needed"),
    [
        pytest.param(Protocol.IPV4, (*SNAT, "--to-source", "1.2.3.4:80-90/70"), True, id="snat-base"),
        pytest.param(Protocol.IPV4, (*SNAT, "--to-source", "1.2.3.4:80-90/0"), True, id="snat-base-0"),
        pytest.param(Protocol.IPV4, (*SNAT, "--to", "1.2.3.4:80-90/70"), True, id="snat-base-abbreviated"),
        pytest.param(Protocol.IPV4, (*SNAT, "--to-source", ":80-90/70"), True, id="snat-base-ports-only"),
        pytest.param(Protocol.IPV6, (*SNAT, "--to-source", "[fd00::1]:80-90/85"), True, id="snat-v6-base"),
        pytest.param(
            Protocol.IPV4, ("-p", "tcp", "--jump", "SNAT", "--to-source", "1.2.3.4:1-9/5"), True, id="jump"
        ),
        pytest.param(
            Protocol.IPV4,
            ("-m", "comment", "--comment", "-j", *SNAT, "--to-source", "1.2.3.4:1-2/3"),
            True,
            id="a-comment-reading-as-a-jump",
        ),
        pytest.param(
            Protocol.IPV4,
            (*SNAT, "--to-source", "1.2.3.4:1-2/3", "-m", "comment", "--comment", "x"),
            True,
            id="a-match-after-the-target",
        ),
        pytest.param(Protocol.IPV4, (*SNAT, "--to-source", "1.2.3.4:80-90"), False, id="snat-without-base"),
        pytest.param(Protocol.IPV4, ("-j", "SNAT", "--to-source", "1.2.3.4"), False, id="snat-address-only"),
        pytest.param(
            Protocol.IPV6, ("-j", "SNAT", "--to-source", "fd00::1"), False, id="snat-v6-address-only"
        ),
        pytest.param(
            Protocol.IPV6, (*SNAT, "--to-source", "[fd00::1]:80-90"), False, id="snat-v6-without-base"
        ),
        pytest.param(
            Protocol.IPV4,
            ("-p", "tcp", "-j", "DNAT", "--to-destination", "1.2.3.4:80-90/70"),
            False,
            id="dnat-keeps-it",
        ),
        pytest.param(
            Protocol.IPV4,
            ("-p", "tcp", "-j", "MASQUERADE", "--to-ports", "80-90/70"),
            False,
            id="masquerade-refused-by-iptables",
        ),
        pytest.param(
            Protocol.IPV4,
            ("-m", "comment", "--comment", "-j SNAT --to-source 1.2.3.4:1-2/3", "-j", "ACCEPT"),
            False,
            id="comment",
        ),
    ],
)
def test_a_snat_base_port_needs_iptables_1_8_9_and_nothing_else_does(
    proto: Protocol, spec: tuple[str, ...], needed: bool
) -> None:
    # Measured: 1.8.7 writes SNAT without its base, DNAT with it, and refuses MASQUERADE's.
    chain = "POSTROUTING" if "DNAT" not in spec else "PREROUTING"
    found = release_needed(Rule("nat", chain, spec, proto))
    if not needed:
        assert found is None
    else:
        assert found == ((1, 8, 9), "drops SNAT's base port and writes the rule without it")
