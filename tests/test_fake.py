"""FakeRunner/FakeClient: the in-memory emulation of the iptables command line."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import pytest

from aioiptables import Client, FakeClient, FakeRunner, IPTablesError, Protocol
from aioiptables.fake import DEFAULT_VERSION
from aioiptables.parse import parse_listing
from aioiptables.runner import Completed
from aioiptables.syntax import join_tokens, split_printed

pytestmark = pytest.mark.anyio

V4, V6 = Protocol.IPV4, Protocol.IPV6
Backend = Literal["nft", "legacy"]
NO_CHAIN = "No chain/target/match by that name."
ACCEPT = ("-j", "ACCEPT")
DROP = ("-j", "DROP")


def s(n: int) -> tuple[str, ...]:
    return ("-s", f"10.0.0.{n}/32", "-j", "ACCEPT")  # already as iptables prints it


def rules(fake: FakeClient, chain: str, table: str = "filter", proto: Protocol = V4) -> list[tuple[str, ...]]:
    return fake.fake.rules(proto, table, chain)


async def fake_with(
    chain: str, *specs: tuple[str, ...], table: str = "filter", backend: Backend = "nft"
) -> FakeClient:
    """A fake whose ``chain`` (created if not builtin) holds ``specs``."""
    fake = FakeClient(backend=backend)
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


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("nft", "iptables v1.8.9 (nf_tables): table 'bogus' does not exist"),
        ("legacy", "iptables v1.8.9 (legacy): can't initialize iptables table `bogus': Table does not exist"),
    ],
)
async def test_unknown_table_fails_with_exit_status_3(backend: Backend, message: str) -> None:
    done = await FakeRunner(backend=backend).run(["iptables", "-t", "bogus", "-S"])
    assert done.exit_status == 3
    assert done.stderr.startswith(message)


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


NFT_BUSY = "CHAIN_DEL failed (Device or resource busy): chain KILO"


@pytest.mark.parametrize(
    ("setup", "chain", "messages"),
    [
        pytest.param(
            [("-A", "KILO", "-j", "DROP")],
            "KILO",
            {"legacy": "Directory not empty", "nft": NFT_BUSY},
            id="chain-not-empty",
        ),
        pytest.param(
            [("-A", "INPUT", "-j", "KILO")],
            "KILO",
            {"legacy": "Too many links", "nft": NFT_BUSY},
            id="chain-still-jumped-to",
        ),
        pytest.param(
            [("-A", "INPUT", "-g", "KILO")],
            "KILO",
            {"legacy": "Too many links", "nft": NFT_BUSY},
            id="chain-still-gone-to",
        ),
        pytest.param(
            [], "INPUT", {"legacy": "Invalid argument", "nft": "Directory not empty"}, id="builtin-chain"
        ),
        pytest.param([], "NOPE", {"legacy": NO_CHAIN, "nft": NO_CHAIN}, id="missing-chain"),
    ],
)
@pytest.mark.parametrize("backend", ["nft", "legacy"])
async def test_delete_chain_refuses(
    setup: list[tuple[str, ...]], chain: str, messages: dict[str, str], backend: Backend
) -> None:
    message = messages[backend]
    fake = await fake_with("KILO", backend=backend)
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


async def test_rename_chain_keeps_its_rules_rewrites_jumps_and_lists_it_by_its_new_name() -> None:
    fake = await fake_with("KILO", DROP)
    await fake.new_chain("filter", "LAST")
    await fake.append("filter", "INPUT", "-j", "KILO")
    await fake.append("filter", "FORWARD", "-g", "KILO")
    await fake.rename_chain("filter", "KILO", "ZULU")
    assert await fake.list_chains("filter") == ["INPUT", "FORWARD", "OUTPUT", "LAST", "ZULU"]
    assert rules(fake, "ZULU") == [DROP]
    assert rules(fake, "INPUT") == [("-j", "ZULU")]
    assert rules(fake, "FORWARD") == [("-g", "ZULU")]


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
        pytest.param("NOPE", "DROP", "Bad built-in chain name", id="missing-chain"),
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
        "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Thu Jan  1 00:00:00 1970\n"
        "*filter\n"
        ":INPUT ACCEPT [0:0]\n"
        ":FORWARD ACCEPT [0:0]\n"
        ":OUTPUT DROP [0:0]\n"
        ":KILO - [0:0]\n"
        "-A INPUT -j KILO\n"
        '-A KILO -m comment --comment "a b" -j DROP\n'
        "COMMIT\n"
        "# Completed on Thu Jan  1 00:00:00 1970\n"
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


async def test_fake_client_builds_its_runner_on_its_backend() -> None:
    assert FakeClient(backend="legacy").fake.backend == "legacy"
    assert FakeClient().fake.backend == "nft"
    with pytest.raises(ValueError, match="backend"):
        FakeRunner(backend="auto")  # type: ignore[arg-type]


# -- as each iptables version does it ---------------------------------------------------------------
#
# Each case runs its steps on the fake and on real iptables of the same backend (in the test's
# own network namespace), the fake imitating the real one's version: every answer (exit status and
# stderr) and every listing must be the same, and the last answer is the one measured and written
# down here, for every version where it differs (measured on 1.8.7, 1.8.9, 1.8.11 and 1.8.13).

Argv = tuple[str, ...]  # argv after the program, or ("restore", payload)
Answer = tuple[int, str]  # exit status, stderr
Version = tuple[int, int, int]
VARIANT = {"nft": "nf_tables", "legacy": "legacy"}
PROGS = {"nft": "iptables-nft-restore", "legacy": "iptables-restore"}
V1_8_7, V1_8_9, V1_8_11, V1_8_13 = (1, 8, 7), (1, 8, 9), (1, 8, 11), (1, 8, 13)
#: Where an expected message holds the version of the iptables that says it.
VERSION = "vVERSION"

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class Since(Generic[T]):
    """What iptables versions differ in: each value holds from the version that keys it on."""

    values: dict[Version, T]

    def at(self, version: Version) -> T:
        return self.values[max(since for since in self.values if since <= version)]

    def map(self, change: Callable[[T], U]) -> Since[U]:
        return Since({since: change(value) for since, value in self.values.items()})


Text = str | Since[str]


def ask_version(backend: str) -> Version:
    """The version of this backend's iptables, as ``iptables-<backend> --version`` prints it."""
    binary = shutil.which(f"iptables-{backend}", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if binary is None:
        pytest.fail(f"iptables-{backend} is missing: apt-get install -y iptables")
    printed = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"\bv(\d+)\.(\d+)\.(\d+)\b", printed)
    if found is None:
        pytest.fail(f"{binary} --version printed no version: {printed!r}")
    major, minor, patch = map(int, found.groups())
    return major, minor, patch


@pytest.fixture(scope="session")
def versions() -> Callable[[str], Version]:
    """Each backend's iptables version, asked once a session (on first use)."""
    return functools.cache(ask_version)


@pytest.fixture
def version(backend: str, versions: Callable[[str], Version]) -> Version:
    """The version of the real iptables this test asks: the fake imitates that one."""
    return versions(backend)


def usage(backend: str, text: Text, prog: str = "iptables") -> Text:
    """A command line iptables refuses before touching any table (exit status 2)."""
    if isinstance(text, Since):
        return text.map(lambda each: str(usage(backend, each, prog)))
    head = text if text.startswith("Bad argument") else f"{prog} {VERSION} ({VARIANT[backend]}): {text}"
    return f"{head}\nTry `{prog} -h' or '{prog} --help' for more information."


def restore_usage(backend: str, text: Text, line: int) -> Text:
    """A restore line iptables-restore refuses while reading it (exit status 2)."""
    if isinstance(text, Since):
        return text.map(lambda each: str(restore_usage(backend, each, line)))
    prog = PROGS[backend]
    head = text if text.startswith("Bad argument") else f"{prog} {VERSION} ({VARIANT[backend]}): {text}"
    return f"{head}\nError occurred at line: {line}\nTry `{prog} -h' or '{prog} --help' for more information."


def blank_line_on_1_8_7(text: str) -> Since[str]:
    """A usage message 1.8.7 ends with a newline: a blank line before ``Try ...``."""
    return Since({V1_8_7: text + "\n", V1_8_9: text})


#: -j where a command takes no rule; since 1.8.11 an option is named by its long name.
ILLEGAL_JUMP = Since(
    {
        V1_8_7: "Illegal option `-j' with this command\n",
        V1_8_9: "Illegal option `-j' with this command",
        V1_8_11: "Illegal option `--jump' with this command",
    }
)


def cant_use(flag: str, chain: str) -> Since[str]:
    """-i or -o where packets cannot have one: since 1.8.11 by its long name, without the
    blank line."""
    long = {"-i": "--in-interface", "-o": "--out-interface"}[flag]
    return Since({V1_8_7: f"Can't use {flag} with {chain}\n", V1_8_11: f"Can't use {long} with {chain}"})


def nft_refused(line: int, why: str, commit: int) -> Since[Answer]:
    """iptables-nft-restore's words for a line it refuses: its number and why; on 1.8.7 the
    ``COMMIT`` line's number and no reason."""
    return Since(
        {
            V1_8_7: (1, f"iptables-nft-restore: line {commit} failed"),
            V1_8_9: (1, f"iptables-nft-restore: line {line} failed: {why}"),
        }
    )


NFT_RESTORE = f"iptables-nft-restore {VERSION} (nf_tables): "


def nft_kernel(*refused: tuple[int, str], commit: int) -> Since[Answer]:
    """iptables-nft-restore's words for the lines nf_tables refused (exit status 4): each by
    its number; on 1.8.7 by the ``COMMIT`` line's."""
    return Since(
        {
            V1_8_7: (4, NFT_RESTORE + "".join(f"\nline {commit}: {what}" for _, what in refused)),
            V1_8_9: (4, NFT_RESTORE + "".join(f"\nline {n}: {what}" for n, what in refused)),
        }
    )


def nft_busy(chain: str) -> Since[Answer]:
    """iptables-nft's words for deleting a chain that holds rules or is jumped to."""
    head = f"iptables {VERSION} (nf_tables): "
    return Since(
        {
            V1_8_7: (4, f"{head} CHAIN_USER_DEL failed (Device or resource busy): chain {chain}"),
            V1_8_9: (4, f"{head} CHAIN_DEL failed (Device or resource busy): chain {chain}"),
        }
    )


#: iptables-nft 1.8.7 prints the rule a -C finds, as -L -v would: the fake does not.
NFT_CHECK_PRINTS_THE_RULE = Since({V1_8_7: True, V1_8_9: False})


def expected(value: Any, backend: str, version: Version) -> Any:
    """What ``value`` expects of this backend and version: a :class:`Since` read at
    ``version``, a dict by ``backend``, :data:`VERSION` written out, in an answer at any depth."""
    if isinstance(value, Since):
        return expected(value.at(version), backend, version)
    if isinstance(value, dict):
        return expected(value[backend], backend, version)
    if isinstance(value, tuple):
        return tuple(expected(part, backend, version) for part in value)
    if isinstance(value, str):
        return value.replace(VERSION, "v" + ".".join(map(str, version)))
    return value


def said(done: Completed) -> Answer:
    return done.exit_status, done.stderr.strip()


def listed(done: Completed) -> list[list[str] | str]:
    """A listing as tokens: the fake quotes only what needs quoting, iptables more."""
    return [split_printed(line) or line for line in done.stdout.splitlines() if not line.startswith("#")]


def checks(step: Argv) -> bool:
    """Whether a step runs a -C (alone or in a restore)."""
    return step[0] == "-C" or (step[0] == "restore" and "\n-C " in step[1])


async def on_both(
    netns: str, backend: str, proto: Protocol, steps: list[Argv], version: Version
) -> list[Completed]:
    """Run ``steps`` on real iptables and on a fake of the same backend and version; every
    answer must be the same. Returns the fake's answers."""
    real = Client(proto, backend=backend, netns=netns)  # type: ignore[arg-type]
    fake = FakeRunner(backend="nft" if backend == "nft" else "legacy", version=version)
    program = proto.command
    printing_check = backend == "nft" and NFT_CHECK_PRINTS_THE_RULE.at(version)
    answers = []
    for step in [*steps, ("-S",)]:
        if step[0] == "restore":
            payload = step[1].encode()
            theirs = await real.runner.run([real.binaries.restore, "--noflush"], input=payload)
            ours = await fake.run([f"{program}-restore", "--noflush"], input=payload)
        else:
            theirs = await real.runner.run([real.binaries.iptables, "-w", "5", *step])
            ours = await fake.run([program, *step])
        assert said(ours) == said(theirs), f"{step}: iptables-{backend} and the fake answer otherwise"
        if printing_check and checks(step):
            # What it printed is not compared: only that it printed exactly when it found the rule.
            assert (ours.stdout, bool(theirs.stdout)) == ("", theirs.exit_status == 0), step
        else:
            assert listed(ours) == listed(theirs), f"{step}: iptables-{backend} and the fake list otherwise"
        answers.append(ours)
    return answers[:-1]


OK: Answer = (0, "")
ON_BOTH = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # one event loop is enough here


# -- values the kernel cuts ------------------------------------------------------------------------


@ON_BOTH
@pytest.mark.parametrize(
    ("option", "value", "kept"),
    [
        pytest.param("--log-prefix", "p" * 40, 29, id="log-prefix-29-bytes"),
        pytest.param("--comment", "c" * 300, 255, id="comment-255-bytes"),
        pytest.param(
            "--nflog-prefix",
            "n" * 100,
            {"nft": Since({V1_8_7: 63, V1_8_9: 100}), "legacy": 63},
            id="nflog-prefix-63-on-legacy-and-nft-1.8.7",
        ),
        pytest.param(
            "--nflog-prefix",
            "n" * 150,
            {"nft": Since({V1_8_7: 63, V1_8_9: 127}), "legacy": 63},
            id="nflog-prefix-127-on-nft-since-1.8.9",
        ),
    ],
)
async def test_the_kernel_keeps_so_many_bytes_of_a_value(
    netns: str,
    backend: str,
    proto: Protocol,
    version: Version,
    option: str,
    value: str,
    kept: int | dict[str, int | Since[int]],
) -> None:
    target = {"--log-prefix": ("-j", "LOG"), "--nflog-prefix": ("-j", "NFLOG")}.get(option, ACCEPT)
    head = ("-m", "comment") if option == "--comment" else ()
    spec = (*head, option, value) if option == "--comment" else (*target, option, value)
    spec = (*spec, *target) if option == "--comment" else spec
    answers = await on_both(netns, backend, proto, [("-A", "INPUT", *spec), ("-S", "INPUT")], version)
    printed = split_printed(answers[-1].stdout.splitlines()[-1])
    assert printed is not None
    assert printed[printed.index(option) + 1] == value[: expected(kept, backend, version)]


@ON_BOTH
@pytest.mark.parametrize(
    ("option", "value", "printed"),
    [
        pytest.param("--log-prefix", "a" * 28 + "é", "a" * 28 + "\ufffd", id="log-prefix-cut-in-e-acute"),
        pytest.param("--log-prefix", "a" * 27 + "☃", "a" * 27 + "\ufffd", id="log-prefix-cut-in-a-snowman"),
        pytest.param("--comment", "c" * 254 + "é", "c" * 254 + "\ufffd", id="comment-cut-in-e-acute"),
    ],
)
async def test_a_value_cut_inside_a_character_reads_back_with_a_replacement_character(
    netns: str, backend: str, version: Version, option: str, value: str, printed: str
) -> None:
    target = ("-j", "LOG") if option == "--log-prefix" else ACCEPT
    spec = (*target, option, value) if option == "--log-prefix" else ("-m", "comment", option, value, *ACCEPT)
    as_read = tuple(printed if token == value else token for token in spec)
    steps: list[Argv] = [
        ("-A", "INPUT", *spec),
        ("-S", "INPUT"),
        ("-C", "INPUT", *as_read),  # what was read back is not what the kernel holds
        ("-C", "INPUT", *spec),  # what was given is cut again the same way: found
        ("-D", "INPUT", *spec),
    ]
    answers = await on_both(netns, backend, V4, steps, version)
    listing = split_printed(answers[1].stdout.splitlines()[-1])
    assert listing is not None and printed in listing
    assert answers[2].exit_status == 1
    assert [said(a) for a in (answers[3], answers[4])] == [OK, OK]


# -- interface options where packets cannot have them -----------------------------------------------


@ON_BOTH
@pytest.mark.parametrize(
    ("steps", "answer"),
    [
        pytest.param([("-A", "INPUT", "-o", "eth0", *ACCEPT)], cant_use("-o", "INPUT"), id="out-in-input"),
        pytest.param([("-A", "OUTPUT", "-i", "eth0", *ACCEPT)], cant_use("-i", "OUTPUT"), id="in-in-output"),
        pytest.param(
            [("-t", "nat", "-A", "PREROUTING", "-o", "eth0", *ACCEPT)],
            cant_use("-o", "PREROUTING"),
            id="out-in-prerouting",
        ),
        pytest.param(
            [("-t", "nat", "-A", "POSTROUTING", "-i", "eth0", *ACCEPT)],
            cant_use("-i", "POSTROUTING"),
            id="in-in-postrouting",
        ),
        pytest.param([("-A", "INPUT", "!", "-o", "eth0", *ACCEPT)], cant_use("-o", "INPUT"), id="negated"),
        pytest.param(
            [("-A", "INPUT", "--out-interface", "eth0", *ACCEPT)], cant_use("-o", "INPUT"), id="long-option"
        ),
        pytest.param([("-I", "INPUT", "1", "-o", "eth0", *ACCEPT)], cant_use("-o", "INPUT"), id="insert"),
        pytest.param([("-C", "INPUT", "-o", "eth0", *ACCEPT)], cant_use("-o", "INPUT"), id="check"),
        pytest.param([("-D", "INPUT", "-o", "eth0", *ACCEPT)], cant_use("-o", "INPUT"), id="delete"),
        pytest.param([("-A", "NOPE", "-o", "eth0", *ACCEPT)], None, id="any-other-chain-name-is-not-judged"),
        pytest.param([("-A", "INPUT", "-i", "eth0", *ACCEPT)], OK, id="in-in-input"),
        pytest.param([("-A", "FORWARD", "-i", "eth0", "-o", "eth1", *ACCEPT)], OK, id="both-in-forward"),
        pytest.param(
            [("-A", "INPUT", "-m", "comment", "--comment", "-o", *ACCEPT)], OK, id="a-comment-saying-o"
        ),
        pytest.param(
            [("-N", "SM-A"), ("-A", "SM-A", "-o", "eth0", *ACCEPT), ("-A", "INPUT", "-j", "SM-A")],
            OK,
            id="user-chain-jumped-to-from-input",
        ),
    ],
)
async def test_an_interface_option_where_packets_cannot_have_one_is_refused_by_the_chain_name(
    netns: str,
    backend: str,
    proto: Protocol,
    version: Version,
    steps: list[Argv],
    answer: Since[str] | Answer | None,
) -> None:
    answers = await on_both(netns, backend, proto, steps, version)
    if answer is None:  # not a builtin chain's name: only the missing chain is refused
        assert answers[-1].exit_status == 1
    elif isinstance(answer, Since):
        refusal = (2, usage(backend, answer, proto.command))
        assert said(answers[-1]) == expected(refusal, backend, version)
    else:
        assert said(answers[-1]) == OK


@ON_BOTH
async def test_an_interface_option_refused_in_a_restore_names_its_line(
    netns: str, backend: str, version: Version
) -> None:
    payload = "*filter\n-A INPUT -s 10.0.0.1 -j ACCEPT\n-A INPUT -o eth0 -j ACCEPT\nCOMMIT\n"
    answers = await on_both(netns, backend, V4, [("restore", payload)], version)
    refusal = (2, restore_usage(backend, cant_use("-o", "INPUT"), 3))
    assert said(answers[0]) == expected(refusal, backend, version)


# -- the order chains are listed in ------------------------------------------------------------------


@ON_BOTH
async def test_user_chains_are_listed_and_saved_in_byte_order(
    netns: str, backend: str, version: Version
) -> None:
    made = ["b", "B", "a-b", "a_b", "a.b", "SM-C", "SM-A", "_x", "1", "aa", "a", "a+"]
    answers = await on_both(
        netns, backend, V4, [*(("-N", name) for name in made), ("-S",), ("-E", "SM-A", "zz")], version
    )
    order = ["1", "B", "SM-A", "SM-C", "_x", "a", "a+", "a-b", "a.b", "a_b", "aa", "b"]
    assert [line.split()[1] for line in answers[-2].stdout.splitlines()][3:] == order
    real = Client(V4, backend=backend, netns=netns)  # type: ignore[arg-type]
    fake = FakeClient(backend=backend, version=version)
    for name in made:
        await fake.new_chain("filter", name)
    await fake.rename_chain("filter", "SM-A", "zz")  # as on the real side: listed by its new name
    saved = [await client.save("filter") for client in (fake, real)]
    declared = [[line.split()[0][1:] for line in text.splitlines() if line.startswith(":")] for text in saved]
    renamed = [name for name in order if name != "SM-A"] + ["zz"]
    assert declared[0] == declared[1] == ["INPUT", "FORWARD", "OUTPUT", *renamed]


# -- loops -------------------------------------------------------------------------------------------

LOOP: list[Argv] = [
    ("-N", "SM-A"),
    ("-N", "SM-B"),
    ("-A", "SM-A", "-j", "SM-B"),
    ("-A", "SM-B", "-j", "SM-A"),
]
#: SM-A and SM-B, INPUT jumping to SM-A, SM-A to SM-B: no loop yet.
REACHED: list[Argv] = [
    ("-N", "SM-A"),
    ("-N", "SM-B"),
    ("-A", "INPUT", "-j", "SM-A"),
    ("-A", "SM-A", "-j", "SM-B"),
]
LEGACY_LOOP: Answer = (1, "iptables: Too many levels of symbolic links.")


def nft_loop(command: str, chain: str) -> Answer:
    return 4, f"iptables {VERSION} (nf_tables):  {command} failed (Too many links): rule in chain {chain}"


def nested(depth: int) -> list[Argv]:
    """User chains C1 ... C<depth>, each jumping to the next."""
    made: list[Argv] = [("-N", f"C{i}") for i in range(1, depth + 1)]
    return made + [("-A", f"C{i}", "-j", f"C{i + 1}") for i in range(1, depth)]


@ON_BOTH
@pytest.mark.parametrize(
    ("steps", "answer"),
    [
        pytest.param(
            [*LOOP, ("-A", "INPUT", "-j", "SM-A")],
            {"legacy": LEGACY_LOOP, "nft": nft_loop("RULE_APPEND", "INPUT")},
            id="a-jump-from-input-reaches-a-loop",
        ),
        pytest.param(
            [*LOOP, ("-I", "INPUT", "-j", "SM-B")],
            {"legacy": LEGACY_LOOP, "nft": nft_loop("RULE_INSERT", "INPUT")},
            id="inserted-at-the-top",
        ),
        pytest.param(
            [*LOOP, ("-A", "INPUT", "-s", "10.9.0.1", *DROP), ("-I", "INPUT", "2", "-j", "SM-A")],
            {"legacy": LEGACY_LOOP, "nft": nft_loop("RULE_APPEND", "INPUT")},
            id="inserted-one-past-the-end-is-an-append-on-nft",
        ),
        pytest.param(
            [*LOOP, ("-A", "OUTPUT", "-g", "SM-B")],
            {"legacy": LEGACY_LOOP, "nft": nft_loop("RULE_APPEND", "OUTPUT")},
            id="a-goto",
        ),
        pytest.param(
            [*REACHED, ("-A", "SM-B", "-s", "10.9.0.1", "-j", "SM-A")],
            {"legacy": LEGACY_LOOP, "nft": nft_loop("RULE_APPEND", "SM-B")},
            id="closed-in-a-chain-input-reaches",
        ),
        pytest.param(
            [("-N", "SM-A"), ("-A", "FORWARD", "-j", "SM-A"), ("-A", "SM-A", "-j", "SM-A")],
            {"legacy": LEGACY_LOOP, "nft": nft_loop("RULE_APPEND", "SM-A")},
            id="a-chain-jumping-to-itself",
        ),
        pytest.param(LOOP, OK, id="a-loop-no-builtin-chain-reaches-is-taken"),
        pytest.param(
            [*LOOP, ("-A", "INPUT", *ACCEPT), ("-A", "INPUT", "-j", "SM-A")],
            {"legacy": OK, "nft": nft_loop("RULE_APPEND", "INPUT")},
            id="legacy-walks-no-further-than-an-unconditional-accept",
        ),
        pytest.param(
            [*LOOP, ("-A", "INPUT", "-s", "10.9.0.1", *ACCEPT), ("-A", "INPUT", "-j", "SM-A")],
            {"legacy": LEGACY_LOOP, "nft": nft_loop("RULE_APPEND", "INPUT")},
            id="a-conditional-accept-stops-no-walk",
        ),
        pytest.param(
            [*LOOP, ("-A", "INPUT", "-j", "RETURN"), ("-A", "INPUT", "-j", "SM-A"), ("-D", "INPUT", "1")],
            {"legacy": LEGACY_LOOP, "nft": OK},
            id="legacy-refuses-deleting-the-return-that-hid-a-loop",
        ),
        pytest.param(
            [*nested(16), ("-A", "INPUT", "-j", "C1")],
            {"legacy": OK, "nft": nft_loop("RULE_APPEND", "INPUT")},
            id="nft-refuses-a-walk-16-user-chains-deep",
        ),
        pytest.param([*nested(16), ("-A", "INPUT", "-j", "C2")], OK, id="15-user-chains-deep-is-taken"),
    ],
)
async def test_a_rule_that_lets_a_builtin_chain_reach_a_loop_is_refused(
    netns: str, backend: str, version: Version, steps: list[Argv], answer: Answer | dict[str, Answer]
) -> None:
    answers = await on_both(netns, backend, V4, steps, version)
    assert said(answers[-1]) == expected(answer, backend, version)


LOOP_PAYLOAD = (
    "*filter\n:SM-A - [0:0]\n:SM-B - [0:0]\n-A SM-A -s 10.0.0.1 -j SM-B\n-A SM-B -s 10.0.0.2 -j SM-A\n"
)


@ON_BOTH
@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        pytest.param(
            LOOP_PAYLOAD + "-A INPUT -j SM-A\nCOMMIT\n",
            {
                "legacy": (1, "iptables-restore: line 7 failed"),
                "nft": nft_kernel((6, "RULE_APPEND failed (Too many links): rule in chain INPUT"), commit=7),
            },
            id="legacy-names-the-commit-nft-the-rule",
        ),
        pytest.param(
            LOOP_PAYLOAD + "-A INPUT -j SM-A\n-A OUTPUT -j ACCEPT\nCOMMIT\n",
            {
                "legacy": (1, "iptables-restore: line 8 failed"),
                "nft": nft_kernel(
                    (6, "RULE_APPEND failed (Too many links): rule in chain INPUT"),
                    (7, "RULE_APPEND failed (Too many links): rule in chain OUTPUT"),
                    commit=8,
                ),
            },
            id="nft-refuses-every-rule-added-after",
        ),
        pytest.param(
            LOOP_PAYLOAD + "-I INPUT -j SM-A\n-D INPUT -j SM-A\n-A OUTPUT -j ACCEPT\nCOMMIT\n",
            OK,
            id="a-loop-reached-and-left-again-within-the-payload-passes",
        ),
        pytest.param(LOOP_PAYLOAD + "COMMIT\n", OK, id="a-loop-nothing-reaches"),
    ],
)
async def test_a_restore_that_lets_a_builtin_chain_reach_a_loop_is_refused_whole(
    netns: str,
    backend: str,
    version: Version,
    payload: str,
    answer: dict[str, Answer | Since[Answer]] | Answer,
) -> None:
    answers = await on_both(netns, backend, V4, [("-A", "FORWARD", *DROP), ("restore", payload)], version)
    assert said(answers[-1]) == expected(answer, backend, version)


# -- words a command does not take --------------------------------------------------------------------

EXTRA_SETUP: list[Argv] = [("-N", "SM-A"), ("-A", "INPUT", *ACCEPT)]


@ON_BOTH
@pytest.mark.parametrize(
    ("step", "text"),
    [
        pytest.param(("-F", "INPUT", "extra"), "Bad argument `extra'", id="flush"),
        pytest.param(("-F", "INPUT", "SM-A"), "Bad argument `SM-A'", id="flush-of-two-chains"),
        pytest.param(("-X", "SM-A", "extra"), "Bad argument `extra'", id="delete-chain"),
        pytest.param(("-N", "SM-B", "extra"), "Bad argument `extra'", id="new-chain"),
        pytest.param(("-E", "SM-A", "SM-B", "extra"), "Bad argument `extra'", id="rename"),
        pytest.param(("-P", "INPUT", "DROP", "extra"), "Bad argument `extra'", id="policy"),
        pytest.param(("-D", "INPUT", "1", "extra"), "Bad argument `extra'", id="delete-by-number"),
        pytest.param(("-D", "INPUT", "1", *ACCEPT), ILLEGAL_JUMP, id="number-and-rule"),
        pytest.param(("-F", "INPUT", *ACCEPT), ILLEGAL_JUMP, id="flush-and-rule"),
        pytest.param(("-F", "INPUT", "--jump", "ACCEPT"), ILLEGAL_JUMP, id="flush-and-long-jump"),
        pytest.param(("-F", "INPUT", "-g", "SM-A"), ILLEGAL_JUMP, id="flush-and-goto"),
        pytest.param(("-S", "INPUT", "extra"), "Invalid rule number `extra'", id="list-takes-a-rule-number"),
        pytest.param(("-S", "INPUT", "0"), "Invalid rule number `0'", id="rule-numbers-start-at-1"),
        pytest.param(("-S", "INPUT", "1", "2"), "Bad argument `2'", id="list-of-two-rules"),
        pytest.param(("-I", "INPUT", "x", *ACCEPT), "Invalid rule number `x'", id="insert-at-a-word"),
    ],
)
async def test_a_word_a_command_does_not_take_is_refused(
    netns: str, backend: str, version: Version, step: Argv, text: Text
) -> None:
    answers = await on_both(netns, backend, V4, [*EXTRA_SETUP, step], version)
    assert said(answers[-1]) == expected((2, usage(backend, text)), backend, version)


@ON_BOTH
@pytest.mark.parametrize(
    ("steps", "answer"),
    [
        pytest.param([("-S", "INPUT", "1")], (0, ""), id="list-one-rule"),
        pytest.param([("-S", "INPUT", "+2")], (0, ""), id="list-past-the-end-lists-nothing"),
        pytest.param([("-I", "INPUT", "01", *DROP)], (0, ""), id="a-rule-number-with-a-leading-zero"),
    ],
)
async def test_a_rule_number_is_read_as_iptables_reads_it(
    netns: str, backend: str, version: Version, steps: list[Argv], answer: Answer
) -> None:
    answers = await on_both(netns, backend, V4, [*EXTRA_SETUP, *steps], version)
    assert said(answers[-1]) == answer


@ON_BOTH
@pytest.mark.parametrize(
    ("line", "answer"),
    [
        pytest.param(":SM-A - [0:0] extra", OK, id="a-chain-line-is-read-no-further-than-its-policy"),
        pytest.param(":SM-A -", OK, id="a-chain-line-without-counters"),
        pytest.param(":INPUT DROP", OK, id="a-policy-without-counters"),
        pytest.param(
            ":SM-A",
            {
                b: (2, restore_usage(b, blank_line_on_1_8_7(f"{p}: line 2 policy invalid"), 2))
                for b, p in PROGS.items()
            },
            id="a-chain-line-without-a-policy",
        ),
        pytest.param(
            ":SM-A ACCEPT [0:0]",
            {
                "nft": OK,
                "legacy": (
                    1,
                    f"iptables-restore {VERSION} (legacy): Can't set policy `ACCEPT' on `SM-A' line 2: "
                    "Bad built-in chain name",
                ),
            },
            id="a-user-chain-with-a-policy",
        ),
        pytest.param(
            ":INPUT BOGUS [0:0]",
            {
                "nft": nft_refused(2, "Bad policy name.", commit=3),
                "legacy": (
                    1,
                    f"iptables-restore {VERSION} (legacy): Can't set policy `BOGUS' on `INPUT' line 2: Bad policy name",
                ),
            },
            id="a-policy-iptables-does-not-know",
        ),
        pytest.param(
            "-F SM-A extra",
            {b: (2, restore_usage(b, "Bad argument `extra'", 2)) for b in PROGS},
            id="a-flush-with-a-word-more",
        ),
        pytest.param(
            "COMMIT extra",
            {b: (2, restore_usage(b, "Bad argument `COMMIT'", 2)) for b in PROGS},
            id="commit-with-a-word-more",
        ),
        pytest.param(
            "*filter",
            {b: (2, restore_usage(b, "Bad argument `*filter'", 2)) for b in PROGS},
            id="a-table-inside-a-table",
        ),
    ],
)
async def test_a_restore_line_is_read_as_iptables_restore_reads_it(
    netns: str, backend: str, version: Version, line: str, answer: Answer | dict[str, Any]
) -> None:
    answers = await on_both(netns, backend, V4, [("restore", f"*filter\n{line}\nCOMMIT\n")], version)
    assert said(answers[-1]) == expected(answer, backend, version)


# -- what else iptables says otherwise than one would guess ------------------------------------------------

NOT_FOUND = (1, "iptables: " + NO_CHAIN)
BAD_RULE = (1, "iptables: Bad rule (does a matching rule exist in that chain?).")


@ON_BOTH
@pytest.mark.parametrize(
    ("steps", "answer"),
    [
        pytest.param([("-D", "OUTPUT", *ACCEPT)], BAD_RULE, id="a-verdict"),
        pytest.param([("-D", "OUTPUT", "-p", "tcp")], BAD_RULE, id="no-target"),
        pytest.param([("-C", "OUTPUT", "-j", "LOG")], {"legacy": NOT_FOUND, "nft": BAD_RULE}, id="a-target"),
        pytest.param(
            [("-N", "SM-A"), ("-D", "OUTPUT", "-j", "SM-A")],
            {"legacy": NOT_FOUND, "nft": BAD_RULE},
            id="a-jump",
        ),
        pytest.param([("-D", "NOPE", "-j", "LOG")], BAD_RULE, id="in-a-missing-chain"),
        pytest.param([("-D", "NOPE", "1")], NOT_FOUND, id="by-number-in-a-missing-chain"),
    ],
)
async def test_a_rule_looked_for_in_vain_is_worded_by_backend_and_target(
    netns: str, backend: str, version: Version, steps: list[Argv], answer: Answer | dict[str, Answer]
) -> None:
    answers = await on_both(netns, backend, V4, steps, version)
    assert said(answers[-1]) == expected(answer, backend, version)


@ON_BOTH
@pytest.mark.parametrize("target", ["NOPE", "ACCEPT"])
async def test_a_goto_must_name_a_chain(netns: str, backend: str, version: Version, target: str) -> None:
    answers = await on_both(netns, backend, V4, [("-A", "INPUT", "-g", target)], version)
    text: Text = (
        blank_line_on_1_8_7(f"goto '{target}' is not a chain")
        if backend == "legacy"
        else f"Chain '{target}' does not exist"
    )
    assert said(answers[-1]) == expected((2, usage(backend, text)), backend, version)


@ON_BOTH
@pytest.mark.parametrize(
    ("steps", "answer"),
    [
        pytest.param(
            [("-N", "X"), ("-N", "Y"), ("-A", "INPUT", "-j", "Y"), ("-X",)],
            {"legacy": (1, "iptables: Too many links."), "nft": nft_busy("Y")},
            id="one-chain-referenced-keeps-them-all",
        ),
        pytest.param(
            [("-N", "X"), ("-N", "Y"), ("-A", "Y", *DROP), ("-X",)],
            {"legacy": (1, "iptables: Directory not empty."), "nft": nft_busy("Y")},
            id="one-chain-not-empty-keeps-them-all",
        ),
        pytest.param(
            [("-P", "NOPE", "DROP")],
            (1, "iptables: Bad built-in chain name."),
            id="policy-of-a-missing-chain",
        ),
        pytest.param([("-E", "INPUT", "X")], NOT_FOUND, id="renaming-a-builtin-chain-finds-no-user-chain"),
        pytest.param(
            [("-S", "NOPE")],
            {
                "legacy": NOT_FOUND,
                "nft": Since(
                    {
                        V1_8_7: (
                            1,
                            f"iptables {VERSION} (nf_tables): chain `NOPE' in table `filter' is incompatible, "
                            "use 'nft' tool.",
                        ),
                        V1_8_11: NOT_FOUND,
                    }
                ),
            },
            id="listing-a-missing-chain",
        ),
    ],
)
async def test_chain_commands_answer_as_iptables_does(
    netns: str, backend: str, version: Version, steps: list[Argv], answer: Answer | dict[str, Any]
) -> None:
    answers = await on_both(netns, backend, V4, steps, version)
    assert said(answers[-1]) == expected(answer, backend, version)


SETUP_KILO: list[Argv] = [("-A", "INPUT", "-s", "10.0.0.1", *ACCEPT)]
FAILING_RESTORE = "*filter\n:KILO - [0:0]\n-A INPUT -j KILO\n-F INPUT\n{}\n-A INPUT -j ACCEPT\nCOMMIT\n"


@ON_BOTH
@pytest.mark.parametrize(
    ("bad_line", "answer"),
    [
        pytest.param(
            "-D INPUT -j DROP",
            {"nft": nft_refused(5, "Bad rule (does a matching rule exist in that chain?).", commit=7)},
            id="delete-of-missing-rule",
        ),
        pytest.param(
            "-A NOPE -j ACCEPT",
            {"nft": nft_refused(5, NO_CHAIN, commit=7)},
            id="append-to-missing-chain",
        ),
        pytest.param(
            "-A INPUT -j NOPE",
            {
                "nft": (2, restore_usage("nft", "Chain 'NOPE' does not exist", 7)),
                "legacy": (
                    2,
                    restore_usage("legacy", "Couldn't load target `NOPE':No such file or directory\n", 5),
                ),
            },
            id="nft-checks-a-jump-at-commit-legacy-at-its-line",
        ),
        pytest.param(
            "-N KILO",
            {"nft": nft_refused(5, "Chain already exists.", commit=7)},
            id="new-chain-declared-already",
        ),
        pytest.param(
            "-I INPUT 9 -j ACCEPT",
            {"nft": nft_refused(5, "Index of insertion too big.", commit=7)},
            id="insert-too-far",
        ),
    ],
)
async def test_a_failing_restore_line_leaves_the_table_as_it_was(
    netns: str, backend: str, version: Version, bad_line: str, answer: dict[str, Any]
) -> None:
    steps: list[Argv] = [*SETUP_KILO, ("-S",), ("restore", FAILING_RESTORE.format(bad_line)), ("-S",)]
    answers = await on_both(netns, backend, V4, steps, version)
    legacy: Answer = (1, "iptables-restore: line 5 failed")
    assert said(answers[2]) == expected(answer.get(backend, legacy), backend, version)
    assert answers[3].stdout == answers[1].stdout


@ON_BOTH
@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        pytest.param(
            "*filter\n:SM-B - [0:0]\n-I SM-B 2 -j ACCEPT\nCOMMIT\n",
            {"nft": OK},
            id="an-insert-counts-the-rules-flushed",
        ),
        pytest.param(
            "*filter\n:SM-B - [0:0]\n-D SM-B -j DROP\nCOMMIT\n",
            {
                "nft": nft_kernel(
                    (3, "RULE_DELETE failed (No such file or directory): rule in chain SM-B"), commit=4
                )
            },
            id="deleting-a-rule-flushed-fails-in-the-kernel",
        ),
        pytest.param(
            "*filter\n:SM-B - [0:0]\n-C SM-B -j DROP\n-A SM-B -j ACCEPT\nCOMMIT\n",
            {"nft": OK},
            id="check-finds-it",
        ),
        pytest.param(
            "*filter\n-F SM-B\n-I SM-B 2 -j ACCEPT\nCOMMIT\n",
            {
                "nft": nft_refused(3, "Index of insertion too big.", commit=4),
                "legacy": (1, "iptables-restore: line 3 failed"),
            },
            id="a-flush-flushes-at-once",
        ),
    ],
)
async def test_an_nft_restore_flushes_a_declared_chain_only_at_commit(
    netns: str, backend: str, version: Version, payload: str, answer: dict[str, Any]
) -> None:
    setup: list[Argv] = [("-N", "SM-B"), ("-A", "SM-B", *DROP)]
    answers = await on_both(netns, backend, V4, [*setup, ("restore", payload)], version)
    legacy: Answer = (1, "iptables-restore: line 3 failed")
    assert said(answers[-1]) == expected(answer.get(backend, legacy), backend, version)


@ON_BOTH
@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        pytest.param(
            '*filter\n-A INPUT -m comment --comment "open -j ACCEPT\nCOMMIT\n',
            OK,
            id="an-unterminated-quote-runs-to-the-end-of-the-line",
        ),
        pytest.param(
            "*filter\n-A INPUT -j ACCEPT\n",
            {b: (1, f"{p}: COMMIT expected at line 3") for b, p in PROGS.items()},
            id="no-commit",
        ),
        pytest.param(
            "*filter\n-A INPUT -j ACCEPT\nCOMMIT",
            {"nft": OK, "legacy": (2, restore_usage("legacy", "Bad argument `COMMIT'", 3))},
            id="legacy-wants-a-newline-after-commit",
        ),
        pytest.param(
            "*filter\n  # not a comment\nCOMMIT\n",
            {b: (2, restore_usage(b, "Bad argument `#'", 2)) for b in PROGS},
            id="a-comment-must-start-its-line",
        ),
        pytest.param(
            "*bogus\nCOMMIT\n",
            {
                "nft": (
                    2,
                    restore_usage(
                        "nft",
                        blank_line_on_1_8_7("iptables-nft-restore: line 1 table name 'bogus' invalid"),
                        1,
                    ),
                ),
                "legacy": (
                    2,
                    restore_usage(
                        "legacy",
                        blank_line_on_1_8_7("iptables-restore: unable to initialize table 'bogus'"),
                        1,
                    ),
                ),
            },
            id="an-unknown-table",
        ),
        pytest.param(
            "-A INPUT -j ACCEPT\nCOMMIT\n",
            {b: (1, f"{p}: line 1 failed") for b, p in PROGS.items()},
            id="no-table-line",
        ),
    ],
)
async def test_a_restore_payload_is_read_as_iptables_restore_reads_it(
    netns: str, backend: str, version: Version, payload: str, answer: Answer | dict[str, Any]
) -> None:
    answers = await on_both(netns, backend, V4, [("restore", payload)], version)
    assert said(answers[-1]) == expected(answer, backend, version)


@ON_BOTH
async def test_a_client_sees_the_same_loop_refusal_on_the_fake_as_on_iptables(
    netns: str, backend: str, version: Version
) -> None:
    # The same error, and as many processes (nft exits 4, which a client may try again).
    real = Client(V4, backend=backend, netns=netns)  # type: ignore[arg-type]
    fake = FakeClient(backend=backend, version=version)
    caught = []
    for client in (real, fake):
        with pytest.raises(IPTablesError) as error:
            await client.restore(LOOP_PAYLOAD + "-A INPUT -j SM-A\nCOMMIT\n")
        caught.append((error.value.exit_status, error.value.stderr, client.calls))
    assert caught[0] == caught[1]


@ON_BOTH
async def test_only_ip6tables_legacy_1_8_9_checks_a_log_rule_without_its_prefix(
    netns: str, backend: str, proto: Protocol, version: Version
) -> None:
    steps: list[Argv] = [
        ("-A", "OUTPUT", "-j", "LOG", "--log-prefix", "a"),
        ("-C", "OUTPUT", "-j", "LOG", "--log-prefix", "b"),
        ("-D", "OUTPUT", "-j", "LOG", "--log-prefix", "b"),
    ]
    answers = await on_both(netns, backend, proto, steps, version)
    quirk = (
        backend == "legacy"
        and proto is V6
        and Since({V1_8_7: False, V1_8_9: True, V1_8_11: False}).at(version)
    )
    assert [a.exit_status for a in answers] == [0, 0 if quirk else 1, 1]


# -- the version imitated ----------------------------------------------------------------------------


@ON_BOTH
@pytest.mark.parametrize(
    "specs",
    [
        pytest.param(
            [("-p", "tcp"), ("-p", "tcp", *ACCEPT), ("-i", "eth0")], id="rules-with-and-without-a-target"
        ),
        pytest.param([()], id="a-rule-of-nothing"),
        pytest.param(
            [("-j", "NFLOG", "--nflog-prefix", "abc"), ("-m", "comment", "--comment", "x")], id="nflog"
        ),
    ],
)
async def test_a_listing_is_printed_blank_for_blank_as_iptables_prints_it(
    netns: str, backend: str, proto: Protocol, version: Version, specs: list[Argv]
) -> None:
    # on_both compares listings as tokens; here every blank counts (1.8.7's are not 1.8.9's).
    steps: list[Argv] = [*(("-A", "INPUT", *spec) for spec in specs), ("-S", "INPUT")]
    answers = await on_both(netns, backend, proto, steps, version)
    real = Client(proto, backend=backend, netns=netns)  # type: ignore[arg-type]
    theirs = await real.runner.run([real.binaries.iptables, "-w", "5", "-S", "INPUT"])
    assert answers[-1].stdout == theirs.stdout


@ON_BOTH
async def test_the_fake_prints_the_version_of_the_iptables_it_imitates(
    netns: str, backend: str, proto: Protocol, version: Version
) -> None:
    async def printed(client: Client) -> list[str]:
        binaries = (client.binaries.iptables, client.binaries.save, client.binaries.restore)
        return [
            (await client.runner.run([binary, flag])).stdout
            for binary in binaries
            for flag in ("--version", "-V")
        ]

    real = Client(proto, backend=backend, netns=netns)  # type: ignore[arg-type]
    assert await printed(FakeClient(proto, backend=backend, version=version)) == await printed(real)


async def test_the_fake_saves_under_the_header_and_answers_wait_interval_as_iptables_does(
    netns: str, backend: str, proto: Protocol, version: Version
) -> None:
    real = Client(proto, backend=backend, netns=netns)  # type: ignore[arg-type]
    fake = FakeClient(proto, backend=backend, version=version)
    for client in (real, fake):
        await client.append("filter", "INPUT", *ACCEPT)
    assert (await fake.save("filter")).split(" on ")[0] == (await real.save("filter")).split(" on ")[0]
    # -W: obeyed before 1.8.8, ignored with a warning from then on (the
    # client passes it only where it is obeyed).
    steps = [
        ((real.binaries.iptables, "-w", "5", "-W", "10000", "-S", "INPUT"), None),
        (
            (real.binaries.restore, "-w", "5", "-W", "10000", "--noflush"),
            b"*filter\n-A INPUT -j DROP\nCOMMIT\n",
        ),
        ((real.binaries.iptables, "-w", "5", "-W", "x", "-S", "INPUT"), None),
    ]
    for argv, payload in steps:
        theirs = await real.runner.run(argv, input=payload)
        ours = await fake.runner.run(
            [proto.command if "-restore" not in argv[0] else f"{proto.command}-restore", *argv[1:]],
            input=payload,
        )
        assert said(ours) == said(theirs), argv
        assert ours.stdout == theirs.stdout, argv


async def test_a_fake_imitates_iptables_1_8_9_unless_told() -> None:
    assert FakeRunner().version == FakeClient().fake.version == DEFAULT_VERSION == (1, 8, 9)
    assert (await FakeRunner().run(["iptables", "--version"])).stdout == "iptables v1.8.9 (nf_tables)\n"


@pytest.mark.parametrize(
    ("backend", "argv", "version", "printed"),
    [
        pytest.param("nft", ["iptables", "--version"], V1_8_11, "iptables v1.8.11 (nf_tables)\n", id="nft"),
        pytest.param("legacy", ["ip6tables", "-V"], V1_8_7, "ip6tables v1.8.7 (legacy)\n", id="legacy-v6"),
        pytest.param(
            "legacy",
            ["iptables", "-w", "5", "--version"],
            V1_8_9,
            "iptables v1.8.9 (legacy)\n",
            id="after-wait",
        ),
        pytest.param(
            "nft",
            ["iptables-save", "--version"],
            V1_8_13,
            "iptables-nft-save v1.8.13 (nf_tables)\n",
            id="nft-save",
        ),
        pytest.param(
            "legacy", ["ip6tables-save", "-V"], V1_8_9, "ip6tables-save v1.8.9 (legacy)\n", id="legacy-save"
        ),
        pytest.param(
            "nft",
            ["ip6tables-restore", "-V"],
            V1_8_9,
            "ip6tables-nft-restore v1.8.9 (nf_tables)\n",
            id="nft-restore",
        ),
        pytest.param(
            "legacy",
            ["iptables-restore", "--version"],
            V1_8_7,
            "iptables-restore v1.8.7 (legacy)\n",
            id="legacy-restore",
        ),
    ],
)
async def test_version_prints_the_version_imitated_as_each_program_names_itself(
    backend: Backend, argv: list[str], version: Version, printed: str
) -> None:
    done = await FakeRunner(backend=backend, version=version).run(argv)
    assert (done.exit_status, done.stdout, done.stderr) == (0, printed, "")


@pytest.mark.parametrize(
    "version",
    [
        pytest.param((1, 8, 6), id="older-than-1.8.7"),
        pytest.param((1, 6, 1), id="far-older"),
        pytest.param((1, 8), id="two-numbers"),
        pytest.param((1, 8, 9, 0), id="four-numbers"),
        pytest.param(("1", "8", "9"), id="words"),
        pytest.param((1, 8, -9), id="negative"),
    ],
)
async def test_a_version_the_fake_cannot_imitate_is_refused(version: Any) -> None:
    with pytest.raises(ValueError, match=r"version|imitates"):
        FakeRunner(version=version)
    with pytest.raises(ValueError, match=r"version|imitates"):
        FakeClient(version=version)


async def test_a_fake_client_on_a_runner_imitates_the_runners_version_and_no_other() -> None:
    runner = FakeRunner(version=V1_8_7)
    assert (
        FakeClient(runner=runner).fake.version
        == FakeClient(runner=runner, version=V1_8_7).fake.version
        == V1_8_7
    )
    with pytest.raises(ValueError, match="runner"):
        FakeClient(runner=runner, version=V1_8_9)


MEASURED = [V1_8_7, V1_8_9, V1_8_11, V1_8_13]


@pytest.mark.parametrize("version", MEASURED, ids=lambda v: ".".join(map(str, v)))
@pytest.mark.parametrize(
    ("backend", "proto", "steps", "answer"),
    [
        pytest.param(
            "nft", V4, [("-F", "INPUT", *ACCEPT)], (2, usage("nft", ILLEGAL_JUMP)), id="illegal-option"
        ),
        pytest.param(
            "legacy",
            V4,
            [("-F", "INPUT", "--goto", "X")],
            (2, usage("legacy", ILLEGAL_JUMP)),
            id="illegal-goto",
        ),
        pytest.param(
            "legacy",
            V6,
            [("-A", "OUTPUT", "--in-interface", "eth0")],
            (2, usage("legacy", cant_use("-i", "OUTPUT"), "ip6tables")),
            id="cannot-use",
        ),
        pytest.param(
            "legacy",
            V4,
            [("-A", "INPUT", "-g", "NOPE")],
            (2, usage("legacy", blank_line_on_1_8_7("goto 'NOPE' is not a chain"))),
            id="goto",
        ),
        pytest.param(
            "nft",
            V4,
            [("-N", "!x")],
            (2, usage("nft", blank_line_on_1_8_7("chain name not allowed to start with `!'"))),
            id="chain-name-start",
        ),
        pytest.param(
            "legacy",
            V4,
            [("-N", "LOG")],
            (2, usage("legacy", blank_line_on_1_8_7("chain name may not clash with target name"))),
            id="chain-name-of-a-target",
        ),
        pytest.param(
            "nft",
            V4,
            [("-N", "a b")],
            Since({V1_8_7: OK, V1_8_9: (2, usage("nft", "Invalid chain name `a b'"))}),
            id="nft-1.8.7-takes-a-blank-in-a-chain-name",
        ),
        pytest.param(
            "legacy",
            V4,
            [("-N", "a b")],
            (2, usage("legacy", "Invalid chain name `a b'")),
            id="legacy-does-not",
        ),
        pytest.param(
            "nft",
            V4,
            [("restore", "*filter\n:SM-A\nCOMMIT\n")],
            (2, restore_usage("nft", blank_line_on_1_8_7("iptables-nft-restore: line 2 policy invalid"), 2)),
            id="policy-invalid",
        ),
        pytest.param(
            "legacy",
            V4,
            [("restore", "*\nCOMMIT\n")],
            (
                2,
                restore_usage(
                    "legacy", blank_line_on_1_8_7("iptables-restore: line 1 table name invalid"), 1
                ),
            ),
            id="no-table-name",
        ),
        pytest.param(
            "legacy",
            V4,
            [("restore", "*bogus\nCOMMIT\n")],
            (
                2,
                restore_usage(
                    "legacy", blank_line_on_1_8_7("iptables-restore: unable to initialize table 'bogus'"), 1
                ),
            ),
            id="unknown-table",
        ),
        pytest.param(
            "nft",
            V4,
            [("restore", "*filter\n-t filter -A INPUT -j ACCEPT\nCOMMIT\n")],
            (
                2,
                restore_usage(
                    "nft",
                    Since(
                        {
                            V1_8_7: "The -t option (seen in line 2) cannot be used in iptables-nft-restore.\n",
                            V1_8_9: "The -t option cannot be used in iptables-nft-restore.\n",
                        }
                    ),
                    2,
                ),
            ),
            id="table-option-in-a-restore",
        ),
        pytest.param(
            "nft",
            V4,
            [("restore", "*filter\n:-x - [0:0]\nCOMMIT\n")],
            Since(
                {V1_8_7: OK, V1_8_9: (2, restore_usage("nft", "chain name not allowed to start with `-'", 2))}
            ),
            id="nft-1.8.7-declares-a-chain-starting-with-a-dash",
        ),
        pytest.param(
            "nft", V4, [("-N", "X"), ("-A", "INPUT", "-j", "X"), ("-X", "X")], nft_busy("X"), id="busy"
        ),
        pytest.param(
            "nft",
            V4,
            [("-S", "NOPE")],
            Since(
                {
                    V1_8_7: (
                        1,
                        f"iptables {VERSION} (nf_tables): chain `NOPE' in table `filter' is incompatible, use 'nft' tool.",
                    ),
                    V1_8_11: NOT_FOUND,
                }
            ),
            id="listing-a-missing-chain",
        ),
        pytest.param(
            "nft",
            V4,
            [("restore", FAILING_RESTORE.format("-A NOPE -j ACCEPT"))],
            nft_refused(5, NO_CHAIN, commit=7),
            id="a-refused-restore-line",
        ),
        pytest.param(
            "nft",
            V4,
            [("restore", LOOP_PAYLOAD + "-A INPUT -j SM-A\n-A OUTPUT -j ACCEPT\nCOMMIT\n")],
            nft_kernel(
                (6, "RULE_APPEND failed (Too many links): rule in chain INPUT"),
                (7, "RULE_APPEND failed (Too many links): rule in chain OUTPUT"),
                commit=8,
            ),
            id="restore-lines-the-kernel-refused",
        ),
        pytest.param(
            "legacy",
            V6,
            [
                ("-A", "OUTPUT", "-j", "LOG", "--log-prefix", "a"),
                ("-C", "OUTPUT", "-j", "LOG", "--log-prefix", "b"),
            ],
            Since(
                {V1_8_7: (1, "ip6tables: " + NO_CHAIN), V1_8_9: OK, V1_8_11: (1, "ip6tables: " + NO_CHAIN)}
            ),
            id="ip6tables-legacy-1.8.9-checks-no-log-prefix",
        ),
    ],
)
async def test_each_version_answers_in_its_own_words(
    version: Version, backend: Backend, proto: Protocol, steps: list[Argv], answer: Any
) -> None:
    # As measured on each version by the comparisons above: pinned here for every version, on
    # any machine, whatever iptables it has.
    fake = FakeRunner(backend=backend, version=version)
    for step in steps:
        if step[0] == "restore":
            done = await fake.run([f"{proto.command}-restore", "--noflush"], input=step[1].encode())
        else:
            done = await fake.run([proto.command, *step])
    assert said(done) == expected(answer, backend, version)


@pytest.mark.parametrize("version", MEASURED, ids=lambda v: ".".join(map(str, v)))
@pytest.mark.parametrize(
    ("backend", "spec", "printed"),
    [
        pytest.param(
            "nft",
            ("-j", "NFLOG", "--nflog-prefix", "n" * 100),
            Since(
                {
                    V1_8_7: "-A INPUT -j NFLOG --nflog-prefix  " + "n" * 63,
                    V1_8_9: "-A INPUT -j NFLOG --nflog-prefix " + "n" * 100,
                }
            ),
            id="nft-nflog-prefix",
        ),
        pytest.param(
            "legacy",
            ("-j", "NFLOG", "--nflog-prefix", "n" * 100),
            Since(
                {
                    V1_8_7: "-A INPUT -j NFLOG --nflog-prefix  " + "n" * 63,
                    V1_8_9: "-A INPUT -j NFLOG --nflog-prefix " + "n" * 63,
                }
            ),
            id="legacy-nflog-prefix",
        ),
        pytest.param(
            "nft",
            ("-p", "tcp"),
            Since({V1_8_7: "-A INPUT -p tcp ", V1_8_9: "-A INPUT -p tcp"}),
            id="nft-without-a-target",
        ),
        pytest.param("nft", (), Since({V1_8_7: "-A INPUT ", V1_8_9: "-A INPUT"}), id="nft-of-nothing"),
        pytest.param("legacy", ("-p", "tcp"), "-A INPUT -p tcp", id="legacy-without-a-target"),
        pytest.param("nft", ("-p", "tcp", *ACCEPT), "-A INPUT -p tcp -j ACCEPT", id="nft-with-a-target"),
    ],
)
async def test_each_version_prints_a_rule_in_its_own_way(
    version: Version, backend: Backend, spec: Argv, printed: Text
) -> None:
    fake = FakeRunner(backend=backend, version=version)
    await fake.run(["iptables", "-A", "INPUT", *spec])
    listing = (await fake.run(["iptables", "-S", "INPUT"])).stdout
    assert listing == f"-P INPUT ACCEPT\n{expected(printed, backend, version)}\n"


@pytest.mark.parametrize(
    ("version", "as_version"),
    [
        pytest.param((1, 8, 8), V1_8_7, id="1.8.8-as-1.8.7"),
        pytest.param((1, 8, 10), V1_8_9, id="1.8.10-as-1.8.9"),
        pytest.param((1, 8, 12), V1_8_11, id="1.8.12-as-1.8.11"),
        pytest.param((1, 9, 0), V1_8_13, id="later-ones-as-1.8.13"),
    ],
)
async def test_a_version_not_measured_is_imitated_as_the_one_measured_before_it(
    version: Version, as_version: Version
) -> None:
    steps = [
        ["iptables", "-F", "INPUT", *ACCEPT],
        ["iptables", "-A", "INPUT", "-o", "eth0"],
        ["iptables", "-S", "X"],
    ]
    for backend in ("nft", "legacy"):
        ours, theirs = (
            FakeRunner(backend=backend, version=version),
            FakeRunner(backend=backend, version=as_version),
        )
        for argv in steps:
            done, measured = await ours.run(argv), await theirs.run(argv)
            written = ".".join(map(str, version)), ".".join(map(str, as_version))
            assert said(done) == (
                measured.exit_status,
                measured.stderr.strip().replace(f"v{written[1]} ", f"v{written[0]} "),
            )
