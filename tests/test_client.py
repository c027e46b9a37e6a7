"""Client: every operation, its process cost and its errors.

Runs on the fake and on both real backends (in a private namespace), for IPv4
and IPv6, under asyncio and trio.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from aioiptables import (
    Binaries,
    Client,
    Completed,
    FakeClient,
    FakeRunner,
    InvalidRuleError,
    IPTablesError,
    IPTablesNotFoundError,
    Protocol,
)
from aioiptables.client import IPTablesVersion
from conftest import World

pytestmark = pytest.mark.anyio


def net(proto: Protocol) -> str:
    return "10.1.0.0/16" if proto is Protocol.IPV4 else "fd00:1::/64"


async def test_rule_operations_cost_one_process_each(world: World, proto: Protocol) -> None:
    client = world.client(proto)
    a = ("-s", net(proto), "-j", "ACCEPT")
    b = ("-d", net(proto), "-j", "DROP")
    steps = [
        (client.exists("filter", "INPUT", *a), False, 1),
        (client.append("filter", "INPUT", *a), None, 1),
        (client.exists("filter", "INPUT", *a), True, 1),
        (client.append_unique("filter", "INPUT", *a), None, 1),  # present: only the check
        (client.append_unique("filter", "INPUT", *b), None, 2),  # missing: check + append
        (client.insert_unique("filter", "INPUT", 1, *b), None, 1),
        (client.delete_if_exists("filter", "INPUT", *b), True, 1),
        (client.delete_if_exists("filter", "INPUT", *b), False, 1),
        (client.insert_unique("filter", "INPUT", 1, *b), None, 2),
        (client.insert("filter", "INPUT", 3, "-j", "ACCEPT"), None, 1),
        (client.delete("filter", "INPUT", "-j", "ACCEPT"), None, 1),
    ]
    for index, (call, expected, cost) in enumerate(steps):
        before = client.calls
        assert await call == expected, f"step {index}"
        assert client.calls - before == cost, f"step {index}"
    assert await client.list("filter", "INPUT") == [
        "-P INPUT ACCEPT",
        f"-A INPUT -d {net(proto)} -j DROP",
        f"-A INPUT -s {net(proto)} -j ACCEPT",
    ]


async def test_chain_operations(world: World, proto: Protocol) -> None:
    client = world.client(proto)
    await client.new_chain("nat", "MINE")
    assert await client.chain_exists("nat", "MINE")
    assert await client.list_chains("nat") == ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "MINE"]
    await client.append("nat", "MINE", "-j", "RETURN")
    before = client.calls
    await client.clear_chain("nat", "MINE")  # exists: flushed
    await client.clear_chain("nat", "FRESH")  # missing: created
    assert client.calls - before == 2
    assert await client.list("nat", "MINE") == ["-N MINE"]
    assert await client.list("nat", "FRESH") == ["-N FRESH"]
    await client.rename_chain("nat", "FRESH", "RENAMED")
    assert await client.chain_exists("nat", "RENAMED")
    assert not await client.chain_exists("nat", "FRESH")
    await client.delete_chain("nat", "RENAMED")
    await client.append("filter", "FORWARD", "-j", "ACCEPT")
    await client.clear_chain("filter", "FORWARD")
    assert await client.list("filter", "FORWARD") == ["-P FORWARD ACCEPT"]
    await client.set_policy("filter", "FORWARD", "DROP")
    assert await client.list("filter", "FORWARD") == ["-P FORWARD DROP"]


async def test_save_and_restore(world: World, proto: Protocol) -> None:
    client = world.client(proto)
    payload = (
        "*filter\n:MINE - [0:0]\n"
        '-A MINE -s NET -m comment --comment "two words \\"quoted\\"" -j ACCEPT\n'
        "-A INPUT -j MINE\nCOMMIT\n"
    ).replace("NET", net(proto))
    before = client.calls
    await client.restore(payload)
    assert client.calls - before == 1
    saved = await client.save("filter")
    assert client.calls - before == 2
    assert ":MINE - [0:0]" in saved
    assert "-A INPUT -j MINE" in saved
    assert (await client.list("filter", "MINE"))[1].endswith('--comment "two words \\"quoted\\"" -j ACCEPT')
    # Without --noflush the table is replaced.
    await client.restore("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", noflush=False)
    assert await client.list_chains("filter") == ["INPUT", "FORWARD", "OUTPUT"]


async def test_a_bad_restore_changes_nothing(world: World, proto: Protocol) -> None:
    client = world.client(proto)
    await client.append("filter", "INPUT", "-j", "ACCEPT")
    with pytest.raises(IPTablesError):
        await client.restore("*filter\n-D INPUT -j ACCEPT\n-A NOPE -j DROP\nCOMMIT\n")
    assert await client.list("filter", "INPUT") == ["-P INPUT ACCEPT", "-A INPUT -j ACCEPT"]


NOT_EXIST = {
    "listing a missing chain": lambda c: c.list("filter", "NOPE"),
    "deleting a missing rule": lambda c: c.delete("filter", "INPUT", "-j", "DROP"),
    "deleting from a missing chain": lambda c: c.delete("filter", "NOPE", "-j", "DROP"),
    "deleting a missing chain": lambda c: c.delete_chain("filter", "NOPE"),
    "appending to a missing chain": lambda c: c.append("filter", "NOPE", "-j", "DROP"),
    "jumping to a missing chain": lambda c: c.append("filter", "INPUT", "-j", "NOPE"),
    "renaming a missing chain": lambda c: c.rename_chain("filter", "NOPE", "OTHER"),
}


@pytest.mark.parametrize("what", list(NOT_EXIST), ids=list(NOT_EXIST))
async def test_missing_things_are_not_exist_errors(world: World, proto: Protocol, what: str) -> None:
    client = world.client(proto)
    with pytest.raises(IPTablesError) as caught:
        await NOT_EXIST[what](client)
    error = caught.value
    assert error.is_not_exist, error.stderr
    assert error.argv[0].endswith(("tables-" + world.kind, "tables-nft", "tables-legacy", "tables"))
    assert error.exit_status in (1, 2)


async def test_missing_chain_or_rule_reads_as_false(world: World, proto: Protocol) -> None:
    client = world.client(proto)
    assert await client.exists("filter", "NOPE", "-j", "ACCEPT") is False
    assert await client.exists("filter", "INPUT", "-j", "NOPE") is False
    assert await client.chain_exists("filter", "NOPE") is False


async def test_other_failures_are_not_not_exist(world: World, proto: Protocol) -> None:
    client = world.client(proto)
    await client.new_chain("filter", "MINE")
    with pytest.raises(IPTablesError) as caught:
        await client.new_chain("filter", "MINE")
    assert caught.value.is_already_exists
    assert not caught.value.is_not_exist
    await client.append("filter", "MINE", "-j", "ACCEPT")
    with pytest.raises(IPTablesError) as busy:
        await client.delete_chain("filter", "MINE")
    assert not busy.value.is_not_exist


BAD_INPUT = {
    "an unknown table": lambda c: c.append("filters", "INPUT", "-j", "ACCEPT"),
    "a chain name with a space": lambda c: c.append("filter", "MY CHAIN", "-j", "ACCEPT"),
    "a chain name starting with -": lambda c: c.new_chain("filter", "-X"),
    "a chain name too long": lambda c: c.new_chain("filter", "C" * 29),
    "a newline in a token": lambda c: c.append("filter", "INPUT", "-j", "ACCEPT\n-A INPUT -j DROP"),
    "a NUL in a token": lambda c: c.exists("filter", "INPUT", "-j", "ACC\0EPT"),
    "position 0": lambda c: c.insert("filter", "INPUT", 0, "-j", "ACCEPT"),
    "position 0 for insert_unique": lambda c: c.insert_unique("filter", "INPUT", 0, "-j", "ACCEPT"),
}


@pytest.mark.parametrize("what", list(BAD_INPUT), ids=list(BAD_INPUT))
async def test_bad_input_is_refused_before_any_process(world: World, what: str) -> None:
    client = world.client(Protocol.IPV4)
    with pytest.raises(InvalidRuleError):
        await BAD_INPUT[what](client)
    assert client.calls == 0


@pytest.mark.parametrize("in_namespace", [False, True], ids=["host", "in a namespace"])
async def test_missing_binary_names_what_to_install(
    in_namespace: bool, request: pytest.FixtureRequest
) -> None:
    # Nothing runs in the host namespace: the binary does not exist.
    where = request.getfixturevalue("netns") if in_namespace else None
    client = Client(
        netns=where, binaries=Binaries("/nonexistent/iptables", "/nonexistent/s", "/nonexistent/r")
    )
    with pytest.raises(IPTablesNotFoundError, match="apt-get install -y iptables") as caught:
        await client.list("filter", "INPUT")
    assert isinstance(caught.value, FileNotFoundError)
    assert not caught.value.is_not_exist


async def test_missing_namespace_is_a_clear_error() -> None:
    client = Client(netns="aioipt-no-such-namespace")
    with pytest.raises(IPTablesNotFoundError, match="no such network namespace"):
        await client.list("filter", "INPUT")


@pytest.mark.parametrize("backend_name", ["nft", "legacy"])
def test_backend_is_known_without_a_process(backend_name: str) -> None:
    client = Client(Protocol.IPV6, backend=backend_name)  # type: ignore[arg-type]
    assert client.backend == backend_name
    assert client.binaries.iptables.endswith(f"ip6tables-{backend_name}")
    assert client.binaries.restore.endswith(f"ip6tables-{backend_name}-restore")
    assert Client().backend in ("nft", "legacy")
    assert client.calls == 0


# What an "auto" client knows of its backend before any process, by the file
# its iptables resolves to: the names iptables gives to one backend's programs
# only say it; anything else (a wrapper script, a program of another name)
# does not, and "auto" then means "not known yet".
LINKED = {
    "a link to xtables-nft-multi": ("xtables-nft-multi", "nft"),
    "a link to xtables-legacy-multi": ("xtables-legacy-multi", "legacy"),
    "a link to xtables-multi (before 1.8)": ("xtables-multi", "legacy"),
    "a link to iptables-nft": ("iptables-nft", "nft"),
    "a link to ip6tables-legacy": ("ip6tables-legacy", "legacy"),
    "a link to a wrapper script": ("iptables-wrapper", "auto"),
    "a link to a program only partly named for nft": ("iptables-nft-wrapper", "auto"),
    "a link to another iptables-family program": ("arptables-nft", "auto"),
    "a script installed as iptables": (None, "auto"),
}


@pytest.mark.parametrize("what", list(LINKED), ids=list(LINKED))
def test_auto_knows_its_backend_for_no_process_only_from_a_name_iptables_gives_one_backend(
    tmp_path: Path, what: str
) -> None:
    target, known = LINKED[what]
    binary = tmp_path / "iptables"
    if target is None:
        binary.write_text('#!/bin/sh\nexec iptables-nft "$@"\n')
    else:
        (tmp_path / target).write_text("#!/bin/sh\n")
        binary.symlink_to(tmp_path / target)
    client = Client(binaries=Binaries(str(binary), f"{binary}-save", f"{binary}-restore"))
    assert client.backend == known
    assert client.calls == 0


# What "iptables --version" prints, and what it reads as.
VERSIONS = {
    "iptables v1.8.7 (nf_tables)": ((1, 8, 7), "nft"),
    "iptables v1.8.9 (legacy)": ((1, 8, 9), "legacy"),
    "ip6tables v1.8.11 (nf_tables)": ((1, 8, 11), "nft"),
    "iptables v1.8.13 (legacy)\n": ((1, 8, 13), "legacy"),
    "iptables v1.6.1": ((1, 6, 1), "legacy"),  # before 1.8: legacy only, not named
}


@pytest.mark.parametrize("printed", list(VERSIONS), ids=[v.strip() for v in VERSIONS])
def test_a_version_line_reads_as_release_and_backend(printed: str) -> None:
    version = IPTablesVersion.parse(printed)
    assert (version.release, version.backend) == VERSIONS[printed]
    assert version.text == str(version) == printed.strip()


@pytest.mark.parametrize(
    "printed",
    ["", "hello", "iptables", "iptables v1.8", "iptables v1.8.9 (bpf)", "nft v1.0.6 (Lester Gooch #5)"],
)
def test_what_is_not_a_version_line_is_refused(printed: str) -> None:
    with pytest.raises(ValueError, match="not an iptables version"):
        IPTablesVersion.parse(printed)


def test_versions_order_by_release_and_compare_with_tuples() -> None:
    old, new = (
        IPTablesVersion.parse("iptables v1.8.9 (nf_tables)"),
        IPTablesVersion.parse("iptables v1.8.11 (legacy)"),
    )
    assert old < new and new > old and old <= old and new >= old
    assert old < (1, 8, 11) <= new
    assert new >= (1, 8) and not old >= (1, 8, 10)
    assert sorted([new, old]) == [old, new]
    assert old == IPTablesVersion.parse("iptables v1.8.9 (nf_tables)")
    assert old.release == (1, 8, 9)
    with pytest.raises(TypeError):
        assert old < "1.8.11"  # type: ignore[operator]


# The first line of iptables-save output, as each release prints it (measured), and the
# client's backend: (release, backend) learned, or None.
SAVE_HEADERS = [
    ("# Generated by iptables-save v1.8.7 on Mon Nov 30 06:16:29 2026", "legacy", ((1, 8, 7), "legacy")),
    ("# Generated by iptables-nft-save v1.8.7 on Mon Nov 30 06:16:29 2026", "nft", ((1, 8, 7), "nft")),
    ("# Generated by ip6tables-save v1.8.11 on Mon Nov 30 06:16:29 2026", "legacy", ((1, 8, 11), "legacy")),
    (
        "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Mon Nov 30 06:17:18 2026",
        "auto",
        ((1, 8, 9), "nft"),
    ),
    ("# Generated by iptables-save v1.8.9 on Mon Nov 30 06:17:18 2026", "auto", None),  # says no backend
    ("*filter", "legacy", None),  # no header
    ("# Generated by aioiptables FakeRunner", "nft", None),
]


@pytest.mark.parametrize(("header", "backend", "learned"), SAVE_HEADERS)
def test_a_save_header_names_the_version(
    header: str, backend: Literal["auto", "nft", "legacy"], learned: tuple[tuple[int, int, int], str] | None
) -> None:
    version = IPTablesVersion._from_save(header + "\n*filter\nCOMMIT\n", backend)
    assert (None if version is None else (version.release, version.backend)) == learned


class Recorded(FakeRunner):
    """A fake that notes every argv it answers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.argvs: list[tuple[str, ...]] = []

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        self.argvs.append(tuple(argv))
        return await super().run(argv, input=input, timeout=timeout)


@pytest.mark.parametrize(
    ("backend", "version", "interval"),
    [
        pytest.param(
            "legacy", (1, 8, 7), True, id="legacy-1.8.7-retries-a-held-lock-once-a-second-unless-told"
        ),
        pytest.param("legacy", (1, 8, 8), False, id="legacy-1.8.8-waits-in-flock-and-warns-of-W"),
        pytest.param("legacy", (1, 8, 11), False, id="legacy-1.8.11"),
        pytest.param("nft", (1, 8, 7), False, id="nft-takes-no-lock"),
    ],
)
async def test_a_wait_interval_is_passed_to_legacy_before_1_8_8_once_the_version_is_known(
    backend: Literal["nft", "legacy"], version: tuple[int, int, int], interval: bool
) -> None:
    runner = Recorded(backend=backend, version=version)
    client = FakeClient(runner=runner, backend=backend, version=version)
    await client.append("filter", "INPUT", "-j", "ACCEPT")  # before: unknown, so not passed
    await client.save("filter")  # its header names the version
    assert (await client.version()).release == version
    await client.append("filter", "INPUT", "-j", "DROP")
    await client.restore("*filter\n-A INPUT -j RETURN\nCOMMIT\n")
    first, _save, *after = runner.argvs
    assert "-W" not in first
    assert all(("-W" in argv) is interval for argv in after), after
    assert len(runner.argvs) == 4, "no --version: the save named it"
    assert all(argv[argv.index("-W") + 1] == "10000" for argv in after if "-W" in argv), "10 ms"


@pytest.mark.parametrize("bad", ["iptables", "nftables", ""])
def test_unknown_backend_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="backend"):
        Client(backend=bad)  # type: ignore[arg-type]


async def test_legacy_tables_beside_nft_ones_are_warned_about_once(
    netns: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import subprocess

    subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "--", "iptables-legacy", "-N", "OLD"], check=True)
    client = Client(backend="nft", netns=netns)
    with caplog.at_level(logging.WARNING, logger="aioiptables"):
        await client.list("filter", "INPUT")
        await client.list("filter", "INPUT")
    warnings = [r for r in caplog.records if "legacy tables are present" in r.getMessage()]
    assert len(warnings) == 1


async def test_save_refuses_a_table_it_cannot_represent(tmp_path: Path) -> None:
    script = tmp_path / "iptables-save"
    script.write_text("#!/bin/sh\necho \"# Table \\`filter' is incompatible, use 'nft' tool.\"\nexit 0\n")
    script.chmod(0o755)
    client = Client(
        backend="nft", binaries=Binaries("/nonexistent/iptables", str(script), "/nonexistent/restore")
    )
    with pytest.raises(IPTablesError, match="incompatible") as caught:
        await client.save("filter")
    assert caught.value.is_incompatible
    assert not caught.value.is_not_exist


async def test_an_auto_client_on_legacy_warns_of_nft_rules_once(
    netns: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import shutil
    import subprocess

    subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", "iptables-nft", "-A", "INPUT", "-j", "ACCEPT"],
        check=True,
    )
    legacy = shutil.which("iptables-legacy", path="/usr/sbin:/sbin") or "iptables-legacy"
    binaries = Binaries(legacy, legacy + "-save", legacy + "-restore")
    client = Client(backend="auto", netns=netns, binaries=binaries)
    assert client.backend == "legacy"
    with caplog.at_level(logging.WARNING, logger="aioiptables"):
        await client.list("filter", "INPUT")
        await client.list("filter", "INPUT")
    assert [r for r in caplog.records if "nf_tables backend" in r.getMessage()]
    assert client.calls == 3, "one look at the nft side, once, counted"
    explicit = Client(backend="legacy", netns=netns)
    await explicit.list("filter", "INPUT")
    assert explicit.calls == 1, "an explicit backend does not look"


async def test_every_process_is_logged_with_structured_fields(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    client = world.client(Protocol.IPV4)
    with caplog.at_level(logging.DEBUG, logger="aioiptables"):
        await client.new_chain("nat", "MINE")
        await client.append("nat", "MINE", "-j", "RETURN")
        await client.save("nat")
    records = [r for r in caplog.records if hasattr(r, "operation")]
    got = [(r.operation, r.table, r.chain, r.processes) for r in records]  # type: ignore[attr-defined]
    assert got == [("new_chain", "nat", "MINE", 1), ("append", "nat", "MINE", 1), ("save", "nat", "", 1)]
    assert all(r.protocol == "ipv4" and r.exit_status == 0 for r in records)  # type: ignore[attr-defined]
