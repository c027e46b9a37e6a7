"""FakeRunner/FakeClient: the in-memory emulation of the iptables command line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from aioiptables import FakeClient, FakeRunner, IPTablesError, Protocol
from aioiptables.parse import parse_listing
from aioiptables.syntax import join_tokens

pytestmark = pytest.mark.anyio

V4, V6 = Protocol.IPV4, Protocol.IPV6
ACCEPT = ("-j", "ACCEPT")
DROP = ("-j", "DROP")


def s(n: int) -> tuple[str, ...]:
    return ("-s", f"10.0.0.{n}/32", "-j", "ACCEPT")  # already as iptables prints it


def rules(fake: FakeClient, chain: str, table: str = "filter", proto: Protocol = V4) -> list[tuple[str, ...]]:
    return fake.fake.rules(proto, table, chain)


async def fake_with(chain: str, *specs: tuple[str, ...], table: str = "filter") -> FakeClient:
    """A fake whose ``chain`` (created if not builtin) holds ``specs``."""
    fake = FakeClient()
    if chain not in ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"):
        await fake.new_chain(table, chain)
    for spec in specs:
        await fake.append(table, chain, *spec)
    return fake


# -- rules: -A -I -D -C ---------------------------------------------------------------


async def test_append_adds_rules_at_the_end_in_order() -> None:
    fake = await fake_with("INPUT", s(1), s(2), s(1))
    assert rules(fake, "INPUT") == [s(1), s(2), s(1)]


@pytest.mark.parametrize(
    ("position", "result"),
    [
        pytest.param(1, [s(9), s(1), s(2)], id="position-1-is-the-top"),
        pytest.param(2, [s(1), s(9), s(2)], id="position-2-after-the-first"),
        pytest.param(3, [s(1), s(2), s(9)], id="one-past-the-end-appends"),
    ],
)
async def test_insert_at_position(position: int, result: list[tuple[str, ...]]) -> None:
    fake = await fake_with("INPUT", s(1), s(2))
    await fake.insert("filter", "INPUT", position, *s(9))
    assert rules(fake, "INPUT") == result


async def test_insert_without_position_goes_to_the_top() -> None:
    fake = await fake_with("INPUT", s(1))
    done = await fake.fake.run(["iptables", "-t", "filter", "-I", "INPUT", *s(9)])
    assert done.exit_status == 0
    assert rules(fake, "INPUT") == [s(9), s(1)]


@pytest.mark.parametrize(
    "position", [pytest.param(4, id="two-past-the-end"), pytest.param(99, id="far-past")]
)
async def test_insert_position_too_big_is_refused_and_changes_nothing(position: int) -> None:
    fake = await fake_with("INPUT", s(1), s(2))
    with pytest.raises(IPTablesError) as caught:
        await fake.insert("filter", "INPUT", position, *s(9))
    assert caught.value.exit_status == 1
    assert "Index of insertion too big" in caught.value.stderr
    assert rules(fake, "INPUT") == [s(1), s(2)]


async def test_delete_removes_only_the_first_matching_rule() -> None:
    fake = await fake_with("INPUT", s(1), s(2), s(1))
    await fake.delete("filter", "INPUT", *s(1))
    assert rules(fake, "INPUT") == [s(2), s(1)]


@pytest.mark.parametrize(
    ("number", "result"),
    [pytest.param("1", [s(2), s(3)], id="first"), pytest.param("3", [s(1), s(2)], id="last")],
)
async def test_delete_by_rule_number(number: str, result: list[tuple[str, ...]]) -> None:
    fake = await fake_with("INPUT", s(1), s(2), s(3))
    done = await fake.fake.run(["iptables", "-t", "filter", "-D", "INPUT", number])
    assert done.exit_status == 0
    assert rules(fake, "INPUT") == result


async def test_delete_by_rule_number_past_the_end_is_refused() -> None:
    fake = await fake_with("INPUT", s(1))
    done = await fake.fake.run(["iptables", "-t", "filter", "-D", "INPUT", "2"])
    assert done.exit_status == 1
    assert "Index of deletion too big" in done.stderr
    assert rules(fake, "INPUT") == [s(1)]


@pytest.mark.parametrize(
    ("chain", "spec"),
    [
        pytest.param("INPUT", s(9), id="missing-rule"),
        pytest.param("NOPE", s(1), id="missing-chain"),
        pytest.param("INPUT", ("-j", "NOPE"), id="missing-jump-target"),
    ],
)
async def test_deleting_what_does_not_exist_is_not_exist(chain: str, spec: tuple[str, ...]) -> None:
    fake = await fake_with("INPUT", s(1))
    with pytest.raises(IPTablesError) as caught:
        await fake.delete("filter", chain, *spec)
    assert caught.value.is_not_exist
    assert await fake.delete_if_exists("filter", chain, *spec) is False
    assert rules(fake, "INPUT") == [s(1)]


async def test_delete_if_exists_deletes_and_says_so() -> None:
    fake = await fake_with("INPUT", s(1))
    assert await fake.delete_if_exists("filter", "INPUT", *s(1)) is True
    assert rules(fake, "INPUT") == []


@pytest.mark.parametrize(
    ("chain", "spec", "found"),
    [
        pytest.param("INPUT", s(1), True, id="present-rule"),
        pytest.param("INPUT", s(2), False, id="absent-rule"),
        pytest.param("INPUT", ("-s", "10.0.0.1"), False, id="prefix-of-a-rule-is-not-the-rule"),
        pytest.param("NOPE", s(1), False, id="missing-chain"),
        pytest.param("INPUT", ("-j", "NOPE"), False, id="missing-jump-target"),
    ],
)
async def test_check(chain: str, spec: tuple[str, ...], found: bool) -> None:
    fake = await fake_with("INPUT", s(1))
    assert await fake.exists("filter", chain, *spec) is found


async def test_append_jumping_to_a_missing_chain_is_not_exist_and_adds_nothing() -> None:
    fake = FakeClient()
    with pytest.raises(IPTablesError) as caught:
        await fake.append("filter", "INPUT", "-j", "KILO")
    assert caught.value.is_not_exist
    assert caught.value.exit_status == 2
    assert rules(fake, "INPUT") == []


async def test_append_jumping_to_a_user_chain_or_a_target_works() -> None:
    fake = await fake_with("KILO")
    await fake.append("filter", "INPUT", "-j", "KILO")
    await fake.append("filter", "INPUT", "-g", "KILO")
    await fake.append("nat", "POSTROUTING", "-j", "MASQUERADE")
    assert rules(fake, "INPUT") == [("-j", "KILO"), ("-g", "KILO")]
    assert rules(fake, "POSTROUTING", "nat") == [("-j", "MASQUERADE")]


async def test_append_to_a_missing_chain_is_not_exist() -> None:
    fake = FakeClient()
    with pytest.raises(IPTablesError) as caught:
        await fake.append("filter", "NOPE", *ACCEPT)
    assert caught.value.is_not_exist


async def test_unknown_table_fails_with_exit_status_3() -> None:
    done = await FakeRunner().run(["iptables", "-t", "bogus", "-S"])
    assert done.exit_status == 3
    assert "Table does not exist" in done.stderr


# -- listing: -S ------------------------------------------------------------------------


async def test_list_of_a_user_chain_starts_with_its_declaration() -> None:
    fake = await fake_with("KILO", ("-m", "comment", "--comment", "a b", *ACCEPT), DROP)
    assert await fake.list("filter", "KILO") == [
        "-N KILO",
        '-A KILO -m comment --comment "a b" -j ACCEPT',
        "-A KILO -j DROP",
    ]


async def test_list_of_a_builtin_chain_starts_with_its_policy() -> None:
    fake = await fake_with("INPUT", ACCEPT)
    assert await fake.list("filter", "INPUT") == ["-P INPUT ACCEPT", "-A INPUT -j ACCEPT"]


async def test_list_reads_back_through_parse_listing() -> None:
    spec = ("-m", "comment", "--comment", 'it\'s "x" \\ y', *ACCEPT)
    fake = await fake_with("KILO", spec)
    assert parse_listing(await fake.list("filter", "KILO"), "KILO") == (spec,)


async def test_list_of_a_missing_chain_is_not_exist() -> None:
    fake = FakeClient()
    with pytest.raises(IPTablesError) as caught:
        await fake.list("filter", "NOPE")
    assert caught.value.is_not_exist
    assert caught.value.exit_status == 1


async def test_list_chains_names_builtin_chains_first_then_user_chains() -> None:
    fake = FakeClient()
    await fake.new_chain("nat", "KILO-NAT")
    assert await fake.list_chains("nat") == ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "KILO-NAT"]
    assert await fake.chain_exists("nat", "KILO-NAT") is True
    assert await fake.chain_exists("filter", "KILO-NAT") is False


async def test_list_without_a_chain_lists_declarations_then_rules() -> None:
    fake = await fake_with("KILO", DROP)
    await fake.append("filter", "INPUT", "-j", "KILO")
    done = await fake.fake.run(["iptables", "-t", "filter", "-S"])
    assert done.stdout.splitlines() == [
        "-P INPUT ACCEPT",
        "-P FORWARD ACCEPT",
        "-P OUTPUT ACCEPT",
        "-N KILO",
        "-A INPUT -j KILO",
        "-A KILO -j DROP",
    ]


# -- chains: -N -F -X -E -P -------------------------------------------------------------


async def test_new_chain_twice_is_already_exists() -> None:
    fake = await fake_with("KILO", DROP)
    with pytest.raises(IPTablesError) as caught:
        await fake.new_chain("filter", "KILO")
    assert caught.value.is_already_exists
    assert rules(fake, "KILO") == [DROP]


async def test_flush_empties_one_chain() -> None:
    fake = await fake_with("KILO", DROP, ACCEPT)
    await fake.append("filter", "INPUT", *ACCEPT)
    done = await fake.fake.run(["iptables", "-t", "filter", "-F", "KILO"])
    assert done.exit_status == 0
    assert rules(fake, "KILO") == []
    assert rules(fake, "INPUT") == [ACCEPT]


async def test_flush_without_a_chain_empties_every_chain_of_the_table_only() -> None:
    fake = await fake_with("KILO", DROP)
    await fake.append("filter", "INPUT", *ACCEPT)
    await fake.append("nat", "POSTROUTING", "-j", "MASQUERADE")
    done = await fake.fake.run(["iptables", "-t", "filter", "-F"])
    assert done.exit_status == 0
    assert (rules(fake, "KILO"), rules(fake, "INPUT")) == ([], [])
    assert await fake.list_chains("filter") == ["INPUT", "FORWARD", "OUTPUT", "KILO"]
    assert rules(fake, "POSTROUTING", "nat") == [("-j", "MASQUERADE")]


async def test_flush_of_a_missing_chain_is_not_exist() -> None:
    done = await FakeRunner().run(["iptables", "-t", "filter", "-F", "NOPE"])
    assert done.exit_status == 1
    assert "No chain/target/match by that name" in done.stderr


async def test_clear_chain_creates_a_missing_user_chain_and_empties_an_existing_one() -> None:
    fake = await fake_with("KILO", DROP)
    await fake.append("filter", "INPUT", *ACCEPT)
    await fake.clear_chain("filter", "KILO")
    await fake.clear_chain("filter", "NEW")
    await fake.clear_chain("filter", "INPUT")
    assert await fake.list_chains("filter") == ["INPUT", "FORWARD", "OUTPUT", "KILO", "NEW"]
    assert (rules(fake, "KILO"), rules(fake, "NEW"), rules(fake, "INPUT")) == ([], [], [])


async def test_delete_chain_removes_an_empty_unreferenced_chain() -> None:
    fake = await fake_with("KILO")
    await fake.delete_chain("filter", "KILO")
    assert await fake.chain_exists("filter", "KILO") is False


@pytest.mark.parametrize(
    ("setup", "chain", "message"),
    [
        pytest.param([("-A", "KILO", "-j", "DROP")], "KILO", "Directory not empty", id="chain-not-empty"),
        pytest.param([("-A", "INPUT", "-j", "KILO")], "KILO", "Too many links", id="chain-still-jumped-to"),
        pytest.param([("-A", "INPUT", "-g", "KILO")], "KILO", "Too many links", id="chain-still-gone-to"),
        pytest.param([], "INPUT", "Can't delete built-in chain", id="builtin-chain"),
        pytest.param([], "NOPE", "No chain/target/match by that name", id="missing-chain"),
    ],
)
async def test_delete_chain_refuses(setup: list[tuple[str, ...]], chain: str, message: str) -> None:
    fake = await fake_with("KILO")
    for args in setup:
        await fake.fake.run(["iptables", "-t", "filter", *args])
    before = await fake.save("filter")
    with pytest.raises(IPTablesError) as caught:
        await fake.delete_chain("filter", chain)
    assert message in caught.value.stderr
    assert await fake.save("filter") == before


async def test_delete_chain_without_a_name_removes_every_user_chain() -> None:
    fake = await fake_with("KILO")
    await fake.new_chain("filter", "OTHER")
    done = await fake.fake.run(["iptables", "-t", "filter", "-X"])
    assert done.exit_status == 0
    assert await fake.list_chains("filter") == ["INPUT", "FORWARD", "OUTPUT"]


async def test_rename_chain_keeps_its_place_and_rules_and_rewrites_jumps() -> None:
    fake = await fake_with("KILO", DROP)
    await fake.new_chain("filter", "LAST")
    await fake.append("filter", "INPUT", "-j", "KILO")
    await fake.append("filter", "FORWARD", "-g", "KILO")
    await fake.rename_chain("filter", "KILO", "KILO2")
    assert await fake.list_chains("filter") == ["INPUT", "FORWARD", "OUTPUT", "KILO2", "LAST"]
    assert rules(fake, "KILO2") == [DROP]
    assert rules(fake, "INPUT") == [("-j", "KILO2")]
    assert rules(fake, "FORWARD") == [("-g", "KILO2")]


@pytest.mark.parametrize(
    ("old", "new", "check"),
    [
        pytest.param("KILO", "LAST", "is_already_exists", id="to-an-existing-name"),
        pytest.param("NOPE", "NEW", "is_not_exist", id="missing-chain"),
    ],
)
async def test_rename_chain_refuses(old: str, new: str, check: str) -> None:
    fake = await fake_with("KILO")
    await fake.new_chain("filter", "LAST")
    with pytest.raises(IPTablesError) as caught:
        await fake.rename_chain("filter", old, new)
    assert getattr(caught.value, check) is True
    assert await fake.list_chains("filter") == ["INPUT", "FORWARD", "OUTPUT", "KILO", "LAST"]


async def test_set_policy_shows_in_list_and_save() -> None:
    fake = FakeClient()
    await fake.set_policy("filter", "FORWARD", "DROP")
    assert await fake.list("filter", "FORWARD") == ["-P FORWARD DROP"]
    assert ":FORWARD DROP [0:0]" in (await fake.save("filter")).splitlines()


@pytest.mark.parametrize(
    ("chain", "policy", "message"),
    [
        pytest.param("KILO", "DROP", "Bad built-in chain name", id="user-chain-has-no-policy"),
        pytest.param("INPUT", "REJECT", "Bad policy name", id="policy-must-be-accept-or-drop"),
        pytest.param("NOPE", "DROP", "No chain/target/match by that name", id="missing-chain"),
    ],
)
async def test_set_policy_refuses(chain: str, policy: str, message: str) -> None:
    fake = await fake_with("KILO")
    with pytest.raises(IPTablesError) as caught:
        await fake.set_policy("filter", chain, policy)
    assert message in caught.value.stderr
    assert await fake.list("filter", "INPUT") == ["-P INPUT ACCEPT"]


# -- save --------------------------------------------------------------------------------


async def test_save_prints_declarations_then_rules_of_one_table() -> None:
    fake = await fake_with("KILO", ("-m", "comment", "--comment", "a b", *DROP))
    await fake.append("filter", "INPUT", "-j", "KILO")
    await fake.set_policy("filter", "OUTPUT", "DROP")
    await fake.append("nat", "POSTROUTING", "-j", "MASQUERADE")
    assert await fake.save("filter") == (
        "# Generated by aioiptables FakeRunner\n"
        "*filter\n"
        ":INPUT ACCEPT [0:0]\n"
        ":FORWARD ACCEPT [0:0]\n"
        ":OUTPUT DROP [0:0]\n"
        ":KILO - [0:0]\n"
        "-A INPUT -j KILO\n"
        '-A KILO -m comment --comment "a b" -j DROP\n'
        "COMMIT\n"
        "# Completed\n"
    )


async def test_save_without_a_table_prints_every_table_used() -> None:
    fake = FakeClient()
    await fake.append("filter", "INPUT", *ACCEPT)
    await fake.append("nat", "POSTROUTING", "-j", "MASQUERADE")
    done = await fake.fake.run(["iptables-save"])
    heads = [line for line in done.stdout.splitlines() if line.startswith("*")]
    assert heads == ["*filter", "*nat"]


# -- restore -------------------------------------------------------------------------------


async def test_restore_with_noflush_adds_to_what_is_there() -> None:
    fake = await fake_with("INPUT", s(1))
    await fake.append("filter", "OUTPUT", *DROP)
    await fake.restore(
        "*filter\n:KILO - [0:0]\n-A KILO -j DROP\n-A INPUT -j KILO\n-I INPUT 1 -j ACCEPT\nCOMMIT\n"
    )
    assert rules(fake, "INPUT") == [ACCEPT, s(1), ("-j", "KILO")]
    assert rules(fake, "KILO") == [DROP]
    assert rules(fake, "OUTPUT") == [DROP]


async def test_restore_without_noflush_replaces_the_tables_it_names_only() -> None:
    fake = await fake_with("KILO", DROP)
    await fake.append("filter", "INPUT", "-j", "KILO")
    await fake.set_policy("filter", "FORWARD", "DROP")
    await fake.append("nat", "POSTROUTING", "-j", "MASQUERADE")
    await fake.restore("*filter\n:OUTPUT DROP [0:0]\n-A OUTPUT -j ACCEPT\nCOMMIT\n", noflush=False)
    assert await fake.list_chains("filter") == ["INPUT", "FORWARD", "OUTPUT"]
    assert (rules(fake, "INPUT"), rules(fake, "OUTPUT")) == ([], [ACCEPT])
    assert await fake.list("filter", "FORWARD") == ["-P FORWARD ACCEPT"]
    assert await fake.list("filter", "OUTPUT") == ["-P OUTPUT DROP", "-A OUTPUT -j ACCEPT"]
    assert rules(fake, "POSTROUTING", "nat") == [("-j", "MASQUERADE")]


async def test_restore_declaring_an_existing_chain_flushes_it_even_with_noflush() -> None:
    fake = await fake_with("KILO", DROP)
    await fake.restore("*filter\n:KILO - [0:0]\nCOMMIT\n")
    assert await fake.list("filter", "KILO") == ["-N KILO"]


async def test_restore_declaring_a_builtin_chain_with_dash_keeps_its_policy_and_rules() -> None:
    fake = await fake_with("INPUT", DROP)
    await fake.set_policy("filter", "INPUT", "DROP")
    await fake.restore("*filter\n:INPUT - [0:0]\nCOMMIT\n")
    assert await fake.list("filter", "INPUT") == ["-P INPUT DROP", "-A INPUT -j DROP"]


async def test_restore_reads_quoted_tokens() -> None:
    fake = FakeClient()
    await fake.restore('*filter\n-A INPUT -m comment --comment "it\\\'s a \\"b\\"" -j ACCEPT\nCOMMIT\n')
    assert rules(fake, "INPUT") == [("-m", "comment", "--comment", 'it\'s a "b"', *ACCEPT)]


async def test_restore_skips_comments_and_blank_lines() -> None:
    fake = FakeClient()
    await fake.restore("# made by hand\n\n*filter\n\n# a rule\n-A INPUT -j ACCEPT\nCOMMIT\n# end\n")
    assert rules(fake, "INPUT") == [ACCEPT]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        pytest.param("-D INPUT -j DROP", "Bad rule", id="delete-of-missing-rule"),
        pytest.param("-A NOPE -j ACCEPT", "No chain/target/match", id="append-to-missing-chain"),
        pytest.param("-A INPUT -j NOPE", "Couldn't load target", id="jump-to-missing-chain"),
        pytest.param("-X INPUT", "Can't delete built-in chain", id="delete-builtin-chain"),
        pytest.param("-I INPUT 9 -j ACCEPT", "Index of insertion too big", id="insert-too-far"),
    ],
)
async def test_a_failing_restore_line_leaves_the_table_as_it_was(bad_line: str, message: str) -> None:
    fake = await fake_with("INPUT", s(1))
    before = await fake.save("filter")
    payload = f"*filter\n:KILO - [0:0]\n-A INPUT -j KILO\n-F INPUT\n{bad_line}\n-A INPUT -j ACCEPT\nCOMMIT\n"
    with pytest.raises(IPTablesError) as caught:
        await fake.restore(payload)
    assert message in caught.value.stderr
    assert "line 5 failed" in caught.value.stderr
    assert await fake.save("filter") == before


async def test_restore_is_atomic_per_table_a_table_committed_before_the_failure_stays() -> None:
    fake = FakeClient()
    payload = (
        "*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n*filter\n-A INPUT -j ACCEPT\n-A NOPE -j DROP\nCOMMIT\n"
    )
    with pytest.raises(IPTablesError):
        await fake.restore(payload)
    assert rules(fake, "POSTROUTING", "nat") == [("-j", "MASQUERADE")]
    assert rules(fake, "INPUT") == []


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("*filter\n-A INPUT -j ACCEPT\n", id="no-commit"),
        pytest.param("-A INPUT -j ACCEPT\nCOMMIT\n", id="no-table-line"),
        pytest.param("*bogus\n-A INPUT -j ACCEPT\nCOMMIT\n", id="unknown-table"),
    ],
)
async def test_malformed_restore_payload_fails_and_changes_nothing(payload: str) -> None:
    fake = FakeClient()
    with pytest.raises(IPTablesError):
        await fake.restore(payload)
    assert rules(fake, "INPUT") == []


async def test_restore_line_with_an_unterminated_quote_fails_like_iptables_restore() -> None:
    fake = await fake_with("INPUT", s(1))
    with pytest.raises(IPTablesError) as caught:
        await fake.restore('*filter\n-A INPUT -m comment --comment "open -j ACCEPT\nCOMMIT\n')
    assert "line 2 failed" in caught.value.stderr
    assert rules(fake, "INPUT") == [s(1)]


async def test_restore_keeps_a_token_holding_a_unicode_line_separator_whole() -> None:
    spec = ("-m", "comment", "--comment", "a\u2028b", *ACCEPT)
    fake = FakeClient()
    await fake.restore(f"*filter\n-A INPUT {join_tokens(spec)}\nCOMMIT\n")
    assert rules(fake, "INPUT") == [spec]


async def test_list_keeps_a_rule_holding_a_unicode_line_separator_whole() -> None:
    spec = ("-m", "comment", "--comment", "a\u2028b", *ACCEPT)
    fake = await fake_with("INPUT", spec)
    assert rules(fake, "INPUT") == [spec]
    assert await fake.list("filter", "INPUT") == ["-P INPUT ACCEPT", f"-A INPUT {join_tokens(spec)}"]


# -- processes ---------------------------------------------------------------------------------

Step = Callable[[FakeClient], Awaitable[object]]


async def _fail_quietly(call: Awaitable[object]) -> None:
    with pytest.raises(IPTablesError):
        await call


@pytest.mark.parametrize(
    ("step", "processes"),
    [
        pytest.param(lambda f: f.append("filter", "INPUT", *DROP), 1, id="append"),
        pytest.param(lambda f: f.insert("filter", "INPUT", 1, *DROP), 1, id="insert"),
        pytest.param(lambda f: f.exists("filter", "INPUT", *ACCEPT), 1, id="check-present"),
        pytest.param(lambda f: f.exists("filter", "INPUT", *DROP), 1, id="check-absent"),
        pytest.param(lambda f: f.append_unique("filter", "INPUT", *ACCEPT), 1, id="append-unique-present"),
        pytest.param(lambda f: f.append_unique("filter", "INPUT", *DROP), 2, id="append-unique-absent"),
        pytest.param(lambda f: f.insert_unique("filter", "INPUT", 1, *DROP), 2, id="insert-unique-absent"),
        pytest.param(lambda f: f.delete_if_exists("filter", "INPUT", *DROP), 1, id="delete-if-exists-absent"),
        pytest.param(lambda f: f.list("filter", "INPUT"), 1, id="list"),
        pytest.param(lambda f: f.chain_exists("filter", "KILO"), 1, id="chain-exists"),
        pytest.param(lambda f: f.clear_chain("filter", "KILO"), 1, id="clear-user-chain"),
        pytest.param(lambda f: f.clear_chain("filter", "INPUT"), 1, id="clear-builtin-chain"),
        pytest.param(lambda f: f.save("filter"), 1, id="save"),
        pytest.param(
            lambda f: f.restore("*filter\n-A INPUT -j DROP\n-A INPUT -j DROP\nCOMMIT\n"), 1, id="restore"
        ),
        pytest.param(lambda f: _fail_quietly(f.delete("filter", "INPUT", *DROP)), 1, id="failing-delete"),
    ],
)
async def test_calls_count_one_per_process(step: Step, processes: int) -> None:
    fake = await fake_with("KILO")
    await fake.append("filter", "INPUT", *ACCEPT)
    client_before, runner_before = fake.calls, fake.fake.calls
    await step(fake)
    assert fake.calls - client_before == processes
    assert fake.fake.calls - runner_before == processes


async def test_one_runner_shared_by_ipv4_and_ipv6_keeps_their_tables_apart() -> None:
    runner = FakeRunner()
    v4 = FakeClient(V4, runner=runner)
    v6 = FakeClient(V6, runner=runner)
    await v4.append("filter", "INPUT", *ACCEPT)
    await v6.append("filter", "INPUT", *DROP)
    assert runner.rules(V4, "filter", "INPUT") == [ACCEPT]
    assert runner.rules(V6, "filter", "INPUT") == [DROP]
    assert (v4.calls, v6.calls, runner.calls) == (1, 1, 2)


@pytest.mark.parametrize(
    ("proto", "backend", "names"),
    [
        pytest.param(V4, "nft", ("iptables-nft", "iptables-nft-save", "iptables-nft-restore"), id="v4-nft"),
        pytest.param(
            V6,
            "legacy",
            ("ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore"),
            id="v6-legacy",
        ),
    ],
)
async def test_fake_client_runs_the_binaries_of_its_protocol_and_backend(
    proto: Protocol, backend: str, names: tuple[str, str, str]
) -> None:
    fake = FakeClient(proto, backend=backend)
    binaries = fake.binaries
    assert (binaries.iptables, binaries.save, binaries.restore) == names
    assert fake.backend == backend
    await fake.append("filter", "INPUT", *ACCEPT)
    assert fake.fake.rules(proto, "filter", "INPUT") == [ACCEPT]


async def test_rules_of_a_missing_chain_read_as_empty() -> None:
    assert FakeRunner().rules(V4, "filter", "NOPE") == []


async def test_the_fake_prints_rules_as_iptables_does() -> None:
    fake = FakeClient()
    await fake.append(
        "filter", "INPUT", "--protocol", "6", "--dport", "http", "-s", "10.1.2.3/8", "-j", "REJECT"
    )
    assert await fake.list("filter", "INPUT") == [
        "-P INPUT ACCEPT",
        "-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable",
    ]
    assert await fake.exists(
        "filter", "INPUT", "-s", "10.0.0.0/8", "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "REJECT"
    )
