"""Events: nf_tables' change announcements wake the controller, and say who.

Real iptables-nft (and nft) in the test's private namespace, under asyncio
and trio. docs/reliability.md ("Others' changes are repaired") tells the
story; benchmarks/events.py measures it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from aioiptables import Chain, Client, Controller, ProcessRunner, Protocol, Rule, RuleSet
from aioiptables.events import EventsLostError, Generation, Watcher
from conftest import World

pytestmark = pytest.mark.anyio

V4 = Protocol.IPV4
OURS = Rule.ipv4("filter", "EV-OURS", "-s", "10.7.0.0/16", "-j", "ACCEPT")
JUMP = Rule.ipv4("filter", "INPUT", "-j", "EV-OURS")
RULES = RuleSet(append=[Chain.ipv4("filter", "EV-OURS"), OURS, JUMP])


@pytest.fixture
def nft(netns: str) -> World:
    return World("nft", netns)


def nft_cli(netns: str, *args: str, input: str | None = None) -> None:
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", "nft", *args],
        input=input,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def restore(netns: str, payload: str) -> None:
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", "iptables-nft-restore", "--noflush"],
        input=payload,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


async def test_the_watcher_reports_each_commit_with_its_process(nft: World) -> None:
    async with Watcher(nft.netns) as watcher:
        await nft.iptables(V4, "-N", "EV-W")
        await nft.iptables(V4, "-A", "EV-W", "-j", "ACCEPT")
        seen: list[Generation] = []
        with anyio.fail_after(5):
            async for generation in watcher:
                seen.append(generation)
                if len(seen) == 2:
                    break
    assert [g.process for g in seen] == ["iptables-nft", "iptables-nft"]
    assert all(g.pid > 0 for g in seen) and seen[0].pid != seen[1].pid
    assert seen[0].id + 1 == seen[1].id
    assert {(c.what, c.chain, c.added) for c in seen[1].changes} == {("rule", "EV-W", True)}
    assert seen[1].tables == {(V4, "filter")}


async def running(
    controller: Controller, check: Callable[[], Awaitable[bool]], *, within: float = 5
) -> float:
    """Run the controller until ``check()`` holds; how long that took."""
    started = anyio.current_time()
    with anyio.fail_after(within):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            while not await check():
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    return anyio.current_time() - started


def controller(world: World) -> Controller:
    # resync and safety net an hour away: only an event can explain a repair.
    return Controller(world.client(V4), resync=3600, safety_resync=3600)


TAMPERINGS: dict[str, Callable[[World], Awaitable[None]]] = {}


def tampering(
    name: str,
) -> Callable[[Callable[[World], Awaitable[None]]], Callable[[World], Awaitable[None]]]:
    def register(fn: Callable[[World], Awaitable[None]]) -> Callable[[World], Awaitable[None]]:
        TAMPERINGS[name] = fn
        return fn

    return register


@tampering("iptables -D")
async def _delete(world: World) -> None:
    await world.iptables(V4, "-D", "EV-OURS", *OURS.spec)


@tampering("iptables -F")
async def _flush(world: World) -> None:
    await world.iptables(V4, "-F", "EV-OURS")


@tampering("iptables -X")
async def _remove(world: World) -> None:
    # In one commit: a controller this fast puts the jump back between two commands.
    assert world.netns is not None
    restore(world.netns, "*filter\n-D INPUT -j EV-OURS\n-F EV-OURS\n-X EV-OURS\nCOMMIT\n")


@tampering("iptables-restore")
async def _restore(world: World) -> None:
    assert world.netns is not None
    restore(world.netns, "*filter\n-D EV-OURS -s 10.7.0.0/16 -j ACCEPT\nCOMMIT\n")


@tampering("nft flush ruleset")
async def _flush_ruleset(world: World) -> None:
    assert world.netns is not None
    nft_cli(world.netns, "flush", "ruleset")


@pytest.mark.parametrize("tamper", list(TAMPERINGS), ids=list(TAMPERINGS))
async def test_a_foreign_change_is_repaired_at_once_and_its_process_named(
    nft: World, tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctl = controller(nft)
    await ctl.set(RULES)

    async def repaired() -> bool:
        try:
            ours = await nft.rules(V4, "filter", "EV-OURS")
            jumps = await nft.rules(V4, "filter", "INPUT")
        except AssertionError:  # the chain is not back yet
            return False
        return ours == ["-A EV-OURS -s 10.7.0.0/16 -j ACCEPT"] and jumps == ["-A INPUT -j EV-OURS"]

    with caplog.at_level(logging.INFO, logger="aioiptables"), anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctl.run)
            await anyio.sleep(0.3)  # its first reconcile is done
            assert ctl.following_events
            await TAMPERINGS[tamper](nft)
            while not await repaired():
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert ctl.last_change is not None and ctl.last_change.pid > 0, "an event woke the repair"
    process = {
        "nft flush ruleset": "nft",
        "iptables-restore": "iptables-nft-restore",
        "iptables -X": "iptables-nft-restore",
    }.get(tamper, "iptables-nft")
    process = process[:15]  # the kernel names a task by its first 15 bytes
    assert ctl.last_change.process == process
    assert f"{process} (pid {ctl.last_change.pid}) changed ipv4 filter: reconciling" in caplog.text


async def test_nothing_is_read_while_nothing_changes_and_our_own_writes_wake_nothing(nft: World) -> None:
    ctl = controller(nft)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await ctl.set(RULES)
            tg.start_soon(ctl.run)
            await anyio.sleep(0.3)  # the first reconcile
            assert ctl.following_events
            calls = ctl.calls
            await ctl.set(RuleSet(append=[*RULES.append, Rule.ipv4("filter", "FORWARD", "-j", "ACCEPT")]))
            calls_after_set = ctl.calls
            await anyio.sleep(1.0)
            tg.cancel_scope.cancel()
    assert calls_after_set == calls + 2, "set(): one read, one write"
    assert ctl.calls == calls_after_set, "neither our write nor idling woke a reconcile"


async def test_a_change_to_a_table_we_do_not_manage_wakes_nothing(nft: World) -> None:
    assert nft.netns is not None
    ctl = controller(nft)
    await ctl.set(RULES)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctl.run)
            await anyio.sleep(0.3)
            calls = ctl.calls
            await nft.iptables(V4, "-t", "raw", "-A", "PREROUTING", "-j", "ACCEPT")
            await nft.iptables(Protocol.IPV6, "-A", "INPUT", "-j", "ACCEPT")  # ip6 filter: not ours
            nft_cli(nft.netns, "add", "table", "inet", "theirs")
            await anyio.sleep(0.5)
            tg.cancel_scope.cancel()
    assert ctl.calls == calls
    assert ctl.last_change is None


async def test_lost_announcements_bring_a_full_reconcile(
    nft: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert nft.netns is not None
    netns = nft.netns

    class TinyBuffer(Watcher):
        def __init__(self, netns: str | None = None) -> None:
            super().__init__(netns, buffer=2048)

    monkeypatch.setattr("aioiptables.controller.Watcher", TinyBuffer)
    ctl = controller(nft)
    await ctl.set(RULES)
    flood = "*raw\n" + "".join(f"-A PREROUTING -s 10.9.{i // 250}.{i % 250} -j ACCEPT\n" for i in range(3000))
    with caplog.at_level(logging.WARNING, logger="aioiptables"), anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctl.run)
            await anyio.sleep(0.3)
            calls = ctl.calls
            # A table we do not manage, while the event loop is held up: the socket overruns.
            restore(netns, flood + "COMMIT\n")
            while ctl.calls == calls:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert "were lost" in caplog.text


async def test_the_watcher_says_when_announcements_were_lost(nft: World) -> None:
    assert nft.netns is not None
    flood = "*raw\n" + "".join(f"-A PREROUTING -s 10.9.{i // 250}.{i % 250} -j ACCEPT\n" for i in range(3000))
    async with Watcher(nft.netns, buffer=2048) as watcher:
        restore(nft.netns, flood + "COMMIT\n")
        with pytest.raises(EventsLostError), anyio.fail_after(5):
            async for _ in watcher:
                pass


async def test_on_iptables_legacy_there_are_no_events_and_the_resync_does_the_work(netns: str) -> None:
    legacy = World("legacy", netns)
    ctl = Controller(legacy.client(V4), resync=0.1)
    await ctl.set(RULES)

    async def repaired() -> bool:
        if not flushed:
            await legacy.iptables(V4, "-F", "EV-OURS")
            flushed.append(True)
            return False
        return await legacy.rules(V4, "filter", "EV-OURS") == ["-A EV-OURS -s 10.7.0.0/16 -j ACCEPT"]

    flushed: list[bool] = []
    await running(ctl, repaired)
    assert ctl.last_change is None


async def test_events_can_be_switched_off(nft: World) -> None:
    ctl = Controller(nft.client(V4), resync=0.05, events=False)
    await ctl.set(RULES)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctl.run)
            await anyio.sleep(0.3)
            assert not ctl.following_events
            tg.cancel_scope.cancel()


async def test_aioiptables_watch_prints_each_change_with_its_process(nft: World) -> None:
    assert nft.netns is not None
    argv = [sys.executable, "-m", "aioiptables", "watch", "--netns", nft.netns, "--json", "--table", "filter"]
    async with await anyio.open_process(argv) as process:
        try:
            with anyio.fail_after(20):
                lines = LineReader(process)
                # Subscribed once a probe change is shown (a fixed sleep was
                # not always enough on a loaded machine: both changes went by).
                probes = 0
                while True:
                    probes += 1
                    await nft.iptables(V4, "-N", f"EV-PROBE{probes}")
                    with anyio.move_on_after(0.5):
                        await lines.until(lambda change: "EV-PROBE" in str(change["changes"]))
                        break
                await nft.iptables(V4, "-t", "raw", "-A", "PREROUTING", "-j", "ACCEPT")  # not shown: --table
                await nft.iptables(V4, "-N", "EV-SEEN")
                await nft.iptables(Protocol.IPV6, "-A", "INPUT", "-j", "ACCEPT")
                first = await lines.until(lambda change: "EV-PROBE" not in str(change["changes"]))
                second = await lines.until(lambda change: True)
        finally:
            process.kill()
    assert (first["process"], second["process"]) == ("iptables-nft", "ip6tables-nft")
    assert first["changes"][-1] == {
        "proto": "ipv4",
        "table": "filter",
        "chain": "EV-SEEN",
        "what": "chain",
        "added": True,
    }
    assert second["changes"][-1]["proto"] == "ipv6" and second["pid"] > 0


class LineReader:
    """The JSON lines a process prints, one at a time."""

    def __init__(self, process: Process) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.buffer = b""

    async def line(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            self.buffer += await self.stream.receive()
        line, self.buffer = self.buffer.split(b"\n", 1)
        found: dict[str, Any] = json.loads(line)
        return found

    async def until(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next line ``wanted`` accepts (the lines before it are dropped)."""
        while True:
            line = await self.line()
            if wanted(line):
                return line


async def test_a_pid_is_taken_for_ours_only_while_it_is_recent(nft: World) -> None:
    client = nft.client(V4)
    runner = client.runner
    assert isinstance(runner, ProcessRunner)
    await client.list("filter", "INPUT")
    (pid,) = runner.recent_pids()
    assert runner.recent_pids(within=0.0) == frozenset(), "an old pid may be another process's by now"
    assert pid > 0


async def test_clients_in_two_namespaces_are_polled_not_half_heard(
    nft: World, caplog: pytest.LogCaptureFixture
) -> None:
    """One subscription hears one namespace: with the IPv6 client in another
    (here the process's own; RULES are IPv4 only, so it never runs),
    events are off and resync does the work, rather than hearing one
    namespace and missing changes in the other."""
    v6 = Client(Protocol.IPV6, backend="nft")
    ctl = Controller(nft.client(V4), v6, resync=0.05, events=True)
    await ctl.set(RULES)
    with caplog.at_level(logging.WARNING, logger="aioiptables"), anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ctl.run)
            await anyio.sleep(0.2)
            assert not ctl.following_events
            tg.cancel_scope.cancel()
    assert "clients are in different namespaces" in caplog.text
