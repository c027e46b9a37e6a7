"""The iptables userspace a client runs: its version, its backend behind any
wrapper, and what each version's messages mean (issue 11).

Runs against whatever iptables is first in ``PATH``: the host's, or another
userspace through ``scripts/compat/run-tests WRAPDIR tests/integration/test_versions.py``.
Where versions differ, each test reads the version from the client and
states what that version does, as measured on 1.8.7, 1.8.9, 1.8.11 and
1.8.13. Every test runs in its own network namespace, under asyncio and trio.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
import pytest

from aioiptables import (
    Chain,
    Client,
    Completed,
    Controller,
    IPTablesError,
    Protocol,
    Rule,
    RuleSet,
    RulesRefusedError,
    Runner,
)
from conftest import net, ns_exec

pytestmark = pytest.mark.anyio

SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
OTHER = {"nft": "legacy", "legacy": "nft"}


@pytest.fixture(autouse=True)
def private_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """iptables-legacy's xtables lock in a file of this test's own: other
    users of the machine's lock never make these tests wait."""
    monkeypatch.setenv("XTABLES_LOCKFILE", str(tmp_path / "xtables.lock"))


def program(name: str) -> str:
    found = shutil.which(name, path=SBIN_PATH)
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install -y iptables nftables")
    return found


class Recording(Runner):
    """A runner that notes every argv before a real runner runs it."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner
        self.argvs: list[tuple[str, ...]] = []
        self.stderr: list[str] = []

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        self.argvs.append(tuple(argv))
        done = await self.inner.run(argv, input=input, timeout=timeout)
        self.stderr.append(done.stderr)
        return done

    @property
    def asked_version(self) -> int:
        return sum(argv[1:] == ("--version",) for argv in self.argvs)


def recorded(client: Client) -> Recording:
    """Record what ``client`` runs (after construction: an auto client made
    without a runner keeps its one look at the other backend)."""
    recording = Recording(client.runner)
    client.runner = recording
    return recording


def install(directory: Path, commands: dict[str, str]) -> None:
    """Shell scripts in ``directory``, by name, and ``directory`` first in PATH."""
    directory.mkdir(exist_ok=True)
    for name, body in commands.items():
        script = directory / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)


def wrappers(directory: Path, backend: str, *, version_prelude: str = "") -> Path:
    """``iptables``, ``ip6tables`` and their ``-save``/``-restore`` as
    wrapper scripts exec'ing the ``-nft`` or ``-legacy`` program, as
    container images install them."""
    commands = {}
    for base in ("iptables", "ip6tables"):
        for suffix in ("", "-save", "-restore"):
            target = program(f"{base}-{backend}{suffix}")
            prelude = version_prelude if suffix == "" else ""
            commands[f"{base}{suffix}"] = f'{prelude}exec {target} "$@"'
    install(directory, commands)
    return directory


def first_in_path(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")


def rules_in(netns: str, proto: Protocol, backend: str, chain: str, table: str = "filter") -> list[str]:
    """The ``-S`` lines of a chain on one backend, as iptables itself prints them."""
    iptables = program(f"{proto.command}-{backend}")
    argv = ["nsenter", f"--net=/run/netns/{netns}", "--", iptables, "-w", "5", "-t", table, "-S", chain]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return [line for line in done.stdout.split("\n") if line.startswith(("-N", "-A"))]


# -- the version ----------------------------------------------------------------------------------


async def test_the_version_is_what_the_binary_prints_asked_once(
    netns: str, backend: str, proto: Protocol
) -> None:
    binary = program(f"{proto.command}-{backend}")
    printed = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    client = Client(proto, backend=backend, netns=netns)  # type: ignore[arg-type]
    version = await client.version()
    assert version.text == printed.strip()
    assert version.backend == backend
    assert version.release >= (1, 8, 7)
    assert await client.version() is version
    await client.list("filter", "INPUT")
    assert client.calls == 2, "one --version, one listing"


async def test_a_save_names_the_version_so_none_is_asked(netns: str, backend: str, proto: Protocol) -> None:
    client = Client(proto, backend=backend, netns=netns)  # type: ignore[arg-type]
    recording = recorded(client)
    await client.save("filter")
    version = await client.version()
    assert recording.asked_version == 0 and client.calls == 1, "the save's header named it"
    binary = program(f"{proto.command}-{backend}")
    printed = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    asked = await Client(proto, backend=backend, netns=netns).version()  # type: ignore[arg-type]
    assert (version.release, version.backend) == (asked.release, asked.backend), printed


#: How long a test holds the xtables lock: a little over a second, so that
#: iptables-legacy retrying once a second (1.8.7's default) would try again
#: only about a second after the lock is free.
LOCK_HELD = 1.05
#: How soon after the lock is free a waiting command must be done.
DONE_WITHIN = 0.5


@pytest.mark.parametrize("backend", ["legacy"])  # nft takes no xtables lock
async def test_legacy_commands_take_a_freed_lock_at_once_on_every_release(
    netns: str, backend: str, proto: Protocol, tmp_path: Path
) -> None:
    lock = tmp_path / "xtables.lock"  # private_lock's
    client = Client(proto, backend="legacy", netns=netns)
    recording = recorded(client)
    await client.save("filter")  # the version is known from here on
    old = await client.version() < (1, 8, 8)
    done_after: dict[str, float] = {}

    async def timed(name: str, command: Awaitable[None]) -> None:
        await command
        done_after[name] = anyio.current_time() - released

    released = float("inf")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                fcntl.flock(fd, fcntl.LOCK_EX)
                tg.start_soon(
                    timed, "append", client.append("filter", "INPUT", "-s", net(proto), "-j", "ACCEPT")
                )
                tg.start_soon(timed, "restore", client.restore("*filter\n:HELD - [0:0]\nCOMMIT\n"))
                await anyio.sleep(LOCK_HELD)
                assert done_after == {}, "a command finished while the lock was held"
                released = anyio.current_time()
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    written = [argv for argv in recording.argvs if "-w" in argv]
    assert len(written) == 2
    # Before 1.8.8 the library says how often to try (-W); later releases
    # wait in flock itself and warn about -W, so they never get it.
    assert all(("-W" in argv) == old for argv in written), written
    assert not any("deprecated" in stderr for stderr in recording.stderr), recording.stderr
    assert max(done_after.values()) < DONE_WITHIN, f"done {done_after} s after the lock was freed"
    # Figures (1.8.7): 0.96 s after the lock was freed without -W, 3 to 20 ms with it
    # (1.8.11, which waits in flock: 2 ms).
    print(f"figures: done {max(done_after.values()) * 1000:.0f} ms after the lock was freed")
    assert rules_in(netns, proto, backend, "INPUT") == [f"-A INPUT -s {net(proto)} -j ACCEPT"]
    assert rules_in(netns, proto, backend, "HELD") == ["-N HELD"]


# -- the backend behind a wrapper -----------------------------------------------------------------


async def test_auto_sees_through_a_wrapper_script_and_writes_where_it_runs(
    netns: str, backend: str, proto: Protocol, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_in_path(monkeypatch, wrappers(tmp_path / "bin", backend))
    client = Client(proto, backend="auto", netns=netns)
    assert client.binaries.iptables == str(tmp_path / "bin" / proto.command)
    before = client.backend
    assert before == "auto", "not known before --version: never a guess"
    recording = recorded(client)
    await client.append("filter", "INPUT", "-s", net(proto), "-j", "ACCEPT")
    assert client.backend == backend
    await client.restore("*filter\n:WRAPPED - [0:0]\n-A WRAPPED -j RETURN\nCOMMIT\n")
    assert ":WRAPPED - [0:0]" in await client.save("filter")
    assert recording.asked_version == 1
    # Three commands and the --version; an auto client on legacy also looks
    # once at the nft side for rules it would not see.
    assert client.calls == len(recording.argvs) == (4 if backend == "nft" else 5)
    assert rules_in(netns, proto, backend, "INPUT") == [f"-A INPUT -s {net(proto)} -j ACCEPT"]
    assert rules_in(netns, proto, backend, "WRAPPED") == ["-N WRAPPED", "-A WRAPPED -j RETURN"]
    assert rules_in(netns, proto, OTHER[backend], "INPUT") == []


async def test_a_link_to_a_multi_binary_tells_the_backend_for_no_process(
    netns: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = tmp_path / "bin"
    links.mkdir()
    for suffix in ("", "-save", "-restore"):
        (links / f"iptables{suffix}").symlink_to(os.path.realpath(program(f"iptables-{backend}{suffix}")))
    first_in_path(monkeypatch, links)
    client = Client(backend="auto", netns=netns)
    assert client.binaries.iptables == str(links / "iptables")
    assert client.backend == backend
    recording = recorded(client)
    await client.append("filter", "INPUT", "-s", net(Protocol.IPV4), "-j", "ACCEPT")
    assert recording.asked_version == 0
    assert rules_in(netns, Protocol.IPV4, backend, "INPUT") == [f"-A INPUT -s {net(Protocol.IPV4)} -j ACCEPT"]


async def test_first_commands_at_once_share_one_version_process(
    netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_in_path(monkeypatch, wrappers(tmp_path / "bin", "nft"))
    client = Client(backend="auto", netns=netns)
    recording = recorded(client)
    listings: list[list[str]] = []

    async def list_input() -> None:
        listings.append(await client.list("filter", "INPUT"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(list_input)
    assert listings == [["-P INPUT ACCEPT"]] * 20
    assert recording.asked_version == 1
    assert client.calls == 21


async def test_a_cancelled_asker_leaves_no_one_waiting(
    netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = 'if [ "$1" = --version ]; then sleep 0.4; fi\n'
    first_in_path(monkeypatch, wrappers(tmp_path / "bin", "nft", version_prelude=slow))
    client = Client(backend="auto", netns=netns)
    recording = recorded(client)
    answers: list[object] = []

    async def cancelled() -> None:
        with anyio.move_on_after(0.15):
            answers.append(await client.version())

    async def waiting() -> None:
        await anyio.sleep(0.05)  # asks while the first one's process runs
        answers.append((await client.version()).backend)

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancelled)
        tg.start_soon(waiting)
    assert answers == ["nft"]
    assert recording.asked_version == 2, "the cancelled asker's process was killed; the waiter ran its own"
    assert client.backend == "nft"


async def test_a_failed_version_is_shared_by_those_waiting_and_not_kept(
    netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "failed-once"
    once = (
        f'if [ "$1" = --version ] && [ ! -e {flag} ]; then\n'
        f"  touch {flag}; sleep 0.2; echo 'cannot run today' >&2; exit 3\nfi\n"
    )
    first_in_path(monkeypatch, wrappers(tmp_path / "bin", "legacy", version_prelude=once))
    client = Client(backend="auto", netns=netns)
    recording = recorded(client)
    failures: list[IPTablesError] = []

    async def ask() -> None:
        try:
            await client.version()
        except IPTablesError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(ask)
    assert len(failures) == 5 and {id(f) for f in failures} == {id(failures[0])}
    assert (failures[0].exit_status, failures[0].stderr) == (3, "cannot run today")
    assert recording.asked_version == 1
    before = client.backend
    assert before == "auto"
    assert (await client.version()).backend == "legacy", "the failure was not kept"
    assert client.backend == "legacy"
    assert recording.asked_version == 2


async def test_a_program_printing_no_version_fails_every_command_naming_it(
    netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path / "bin", {"iptables": 'echo "hello from a wrapper"'})
    first_in_path(monkeypatch, tmp_path / "bin")
    client = Client(backend="auto", netns=netns)
    for _ in range(2):
        with pytest.raises(IPTablesError, match="printed no iptables version: 'hello from a wrapper'"):
            await client.list("filter", "INPUT")
    assert client.backend == "auto"
    assert client.calls == 2, "each command asked again, and ran nothing else"


# -- a chain holding rules made by nft ---------------------------------------------------------------

# What iptables-nft answers about a chain that does not exist, a chain holding
# a rule made by nft, and their table, as (is_not_exist, is_incompatible,
# may_be_incompatible): on 1.8.7 to 1.8.10, which print the same words for the
# first two (None: either, as a build that took 1.8.11's fix words a missing
# chain as 1.8.11 does), and on the others.
Call = Callable[[Client], Awaitable[object]]
Expect = tuple[bool, bool, bool | None]
NATIVE: dict[str, tuple[Call, Expect, Expect]] = {
    "listing a missing chain": (
        lambda c: c.list("filter", "NOPE"),
        (True, False, None),
        (True, False, False),
    ),
    "listing a chain holding an nft rule": (
        lambda c: c.list("filter", "NATIVE"),
        (True, False, True),
        (False, True, False),
    ),
    "listing the table's chains": (
        lambda c: c.list_chains("filter"),
        (False, True, False),
        (False, True, False),
    ),
    "saving the table": (lambda c: c.save("filter"), (False, True, False), (False, True, False)),
}
AMBIGUOUS = ((1, 8, 7), (1, 8, 11))  # the versions whose words can mean either


def native_chain(netns: str, proto: Protocol) -> None:
    """Chain NATIVE in the filter table, made by iptables-nft, holding a rule
    made by nft that iptables cannot show."""
    family = "ip" if proto is Protocol.IPV4 else "ip6"
    ns_exec(netns, program(f"{proto.command}-nft"), "-N", "NATIVE")
    ns_exec(netns, program("nft"), "add", "rule", family, "filter", "NATIVE", "quota", "10", "mbytes")


@pytest.mark.parametrize("what", list(NATIVE), ids=list(NATIVE))
async def test_a_chain_holding_nft_rules_never_reads_as_missing_unless_the_words_are_the_same(
    netns: str, proto: Protocol, what: str
) -> None:
    native_chain(netns, proto)
    client = Client(proto, backend="nft", netns=netns)
    call, ambiguous, otherwise = NATIVE[what]
    version = await client.version()
    with pytest.raises(IPTablesError) as caught:
        await call(client)
    error = caught.value
    expected = ambiguous if AMBIGUOUS[0] <= version.release < AMBIGUOUS[1] else otherwise
    found = (error.is_not_exist, error.is_incompatible, error.may_be_incompatible)
    assert found[:2] == expected[:2], error.stderr
    # A missing chain may be said in either words from 1.8.7 to 1.8.10.
    assert expected[2] is None or found[2] is expected[2], error.stderr


async def test_what_iptables_nft_says_of_a_missing_chain_and_of_one_holding_nft_rules(
    netns: str, proto: Protocol
) -> None:
    native_chain(netns, proto)
    client = Client(proto, backend="nft", netns=netns)
    version = await client.version()
    printed: dict[str, str] = {}
    for chain in ("NATIVE", "NOPE"):
        with pytest.raises(IPTablesError) as caught:
            await client.list("filter", chain)
        printed[chain] = caught.value.stderr.split("\n")[-1]  # after any warning about legacy tables
    words = f"{version}: chain `NATIVE' in table `filter' is incompatible, use 'nft' tool."
    no_chain = f"{proto.command}: No chain/target/match by that name."
    assert printed["NATIVE"] == words
    if AMBIGUOUS[0] <= version.release < AMBIGUOUS[1]:
        # The same words, unless this build took 1.8.11's fix (Ubuntu 24.04's 1.8.10).
        assert printed["NOPE"] in (words.replace("NATIVE", "NOPE"), no_chain)
    else:
        assert printed["NOPE"] == no_chain


def nft_rules_of(netns: str, proto: Protocol, chain: str) -> str:
    family = "ip" if proto is Protocol.IPV4 else "ip6"
    return ns_exec(netns, program("nft"), "list", "chain", family, "filter", chain)


@pytest.mark.parametrize("wanted", ["NATIVE", "OURS"])
async def test_a_controller_never_flushes_a_chain_holding_nft_rules(
    netns: str, proto: Protocol, wanted: str
) -> None:
    # iptables-nft 1.8.7 to 1.8.10 say of a chain holding nft rules what they
    # say of a missing chain, and ":NATIVE - [0:0]" in a restore flushes it
    # (measured on 1.8.7 and 1.8.9: the nft rule was gone). The controller
    # creates a chain it read as missing with "-N", which iptables refuses
    # for a chain that exists: an error, and the nft rule stays. Another
    # chain of the same table is created as usual.
    native_chain(netns, proto)
    client = Client(proto, backend="nft", netns=netns)
    controller = Controller(client) if proto is Protocol.IPV4 else Controller(None, client)
    rules = RuleSet([Chain("filter", wanted, proto), Rule("filter", wanted, ("-j", "ACCEPT"), proto)])
    if wanted == "NATIVE":
        with pytest.raises(IPTablesError) as caught:
            await controller.set(rules)
        assert not caught.value.is_not_exist, caught.value
    else:
        await controller.set(rules)
        assert rules_in(netns, proto, "nft", wanted) == [f"-N {wanted}", f"-A {wanted} -j ACCEPT"]
    assert "quota 10 mbytes" in nft_rules_of(netns, proto, "NATIVE"), "the nft rule is still there"


# -- what a refused restore says ----------------------------------------------------------------------

# Payloads with one line iptables-restore refuses, after "-N HAVE; -A HAVE -j ACCEPT":
# (payload, the refused line, is_not_exist when iptables says why).
REFUSED = {
    "a rule for a missing chain": (
        "*filter\n-A HAVE -s 10.1.1.1 -j ACCEPT\n-A NOPE -j ACCEPT\n-A HAVE -s 10.2.2.2 -j ACCEPT\nCOMMIT\n",
        3,
        True,
    ),
    "deleting a missing rule": (
        "*filter\n-A HAVE -s 10.1.1.1 -j ACCEPT\n-D HAVE -s 10.9.9.9 -j ACCEPT\nCOMMIT\n",
        3,
        True,
    ),
    "inserting past the end": ("*filter\n-I HAVE 5 -j DROP\nCOMMIT\n", 2, False),
}


@pytest.mark.parametrize("what", list(REFUSED), ids=list(REFUSED))
async def test_a_refused_restore_line_is_named_or_the_refusal_is_unexplained(
    netns: str, backend: str, what: str
) -> None:
    payload, refused_line, not_exist = REFUSED[what]
    client = Client(backend=backend, netns=netns)  # type: ignore[arg-type]
    await client.new_chain("filter", "HAVE")
    await client.append("filter", "HAVE", "-j", "ACCEPT")
    with pytest.raises(IPTablesError) as caught:
        await client.restore(payload)
    error = caught.value
    commit_line = payload.split("\n").index("COMMIT") + 1
    assert error.payload == payload
    assert not error.is_resource_problem
    if backend == "legacy":
        # Every version: the refused line, no reason.
        assert (error.line, error.reason, error.is_unexplained_refusal) == (refused_line, None, False)
    elif await client.version() < (1, 8, 9):
        # iptables-nft-restore 1.8.7: "line N failed", N being COMMIT; nothing more.
        assert error.stderr == f"iptables-nft-restore: line {commit_line} failed"
        assert (error.line, error.at_commit, error.reason) == (commit_line, True, None)
        assert error.is_unexplained_refusal and not error.is_not_exist
    else:
        # 1.8.9 on: the refused line and why.
        assert (error.line, error.at_commit, error.is_unexplained_refusal) == (refused_line, False, False)
        assert error.reason is not None and error.is_not_exist is not_exist
    assert await client.list("filter", "HAVE") == ["-N HAVE", "-A HAVE -j ACCEPT"], "the table is unchanged"


# -- rules a release would write otherwise than asked -------------------------------------------------


async def test_a_snat_base_port_is_written_from_1_8_9_and_refused_before_it(
    netns: str, backend: str, proto: Protocol
) -> None:
    # 1.8.7 (and 1.8.8) write SNAT without its base port, saying nothing: a
    # rule other than the one asked for. From 1.8.9 the base is kept (as /0).
    to = "1.2.3.4:80-90" if proto is Protocol.IPV4 else "[fd00::1]:80-90"
    snat = Rule("nat", "POSTROUTING", ("-p", "tcp", "-j", "SNAT", "--to-source", f"{to}/70"), proto)
    other = Rule("nat", "POSTROUTING", ("-p", "udp", "-j", "ACCEPT"), proto)
    client = Client(proto, backend=backend, netns=netns)  # type: ignore[arg-type]
    controller = Controller(client) if proto is Protocol.IPV4 else Controller(None, client)
    version = await Client(proto, backend=backend, netns=netns).version()  # type: ignore[arg-type]
    if version >= (1, 8, 9):
        await controller.set(RuleSet([snat, other]))
        assert rules_in(netns, proto, backend, "POSTROUTING", "nat") == [
            f"-A POSTROUTING -p tcp -j SNAT --to-source {to}/0",
            "-A POSTROUTING -p udp -j ACCEPT",
        ]
        await controller.reconcile()
        assert controller.last_stats["writes"] == 0
        return
    running = ".".join(map(str, version.release))
    for attempt in range(2):  # refused at every reconcile, before any write
        with pytest.raises(RulesRefusedError) as caught:
            await controller.set(RuleSet([snat, other]))
        assert [(r.rule, r.message) for r in caught.value.refused] == [
            (
                snat,
                f"iptables {running} ({backend}) drops SNAT's base port and writes the rule without it: "
                "this rule needs iptables 1.8.9 or later",
            )
        ]
        assert rules_in(netns, proto, backend, "POSTROUTING", "nat") == ["-A POSTROUTING -p udp -j ACCEPT"]
        assert controller.last_stats["writes"] == (1 if attempt == 0 else 0), "every other rule is written"
