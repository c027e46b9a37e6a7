"""In-flight listings on real iptables, with a binary that fails or hangs on purpose.

The client's iptables binary is a shell script we control: the first run
misbehaves (fails, or hangs), later runs exec the real iptables of the
backend under test, inside the test's namespace.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import anyio
import pytest

from aioiptables import Binaries, Client, IPTablesError, IPTablesTimeoutError, Protocol, Rule, RuleCache

pytestmark = pytest.mark.anyio

V4 = Protocol.IPV4
RULE = Rule.ipv4("filter", "INPUT", "-s", "10.0.0.0/8", "-j", "ACCEPT")


def script(tmp_path: Path, backend: str, first_run: str) -> tuple[Binaries, str]:
    """A binary whose first run does ``first_run`` and whose later runs are
    the real iptables. Returns the binaries and a marker unique to this test."""
    marker = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**3}"
    state = tmp_path / "ran-once"
    path = tmp_path / "iptables"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e "{state}" ]; then\n'
        f'  touch "{state}"\n'
        f"  {first_run.replace('MARKER', marker)}\n"
        "fi\n"
        f'exec iptables-{backend} "$@"\n'
    )
    path.chmod(0o755)
    return Binaries(str(path), f"iptables-{backend}-save", f"iptables-{backend}-restore"), marker


def seed(netns: str, backend: str) -> None:
    """Add RULE with plain iptables in the namespace."""
    subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", f"iptables-{backend}", "-A", "INPUT", *RULE.spec],
        check=True,
    )


def running(marker: str) -> list[str]:
    """Processes whose command line carries the marker (there must be none left)."""
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


async def test_failed_listing_reaches_every_waiter_and_is_not_cached(
    tmp_path: Path, netns: str, backend: str
) -> None:
    binaries, _ = script(
        tmp_path, backend, "sleep 0.3; echo 'iptables: Permission denied (you must be root).' >&2; exit 1"
    )
    seed(netns, backend)
    client = Client(V4, backend=backend, netns=netns, binaries=binaries)  # type: ignore[arg-type]
    cache = RuleCache(client)
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await cache.exists(RULE)
        except IPTablesError as exc:
            errors.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(ask)
    assert client.calls == 1
    assert len(errors) == 20
    assert all(e is errors[0] for e in errors), "every waiter gets the same error"
    assert isinstance(errors[0], IPTablesError) and not errors[0].is_not_exist
    # Not cached: the next question lists again, and now succeeds.
    assert await cache.exists(RULE) is True
    assert client.calls == 2


async def test_cancelled_leader_does_not_strand_the_waiters(tmp_path: Path, netns: str, backend: str) -> None:
    binaries, marker = script(tmp_path, backend, "exec sleep MARKER")
    seed(netns, backend)
    client = Client(V4, backend=backend, netns=netns, binaries=binaries)  # type: ignore[arg-type]
    cache = RuleCache(client)
    answers: list[bool] = []

    async def ask() -> None:
        answers.append(await cache.exists(RULE))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            leader_scope = anyio.CancelScope()
            tg.start_soon(_lead, cache, leader_scope)
            await anyio.sleep(0.2)  # the leader's listing is now hanging
            for _ in range(10):
                tg.start_soon(ask)
            await anyio.sleep(0.2)
            assert answers == [], "waiters share the hanging listing"
            leader_scope.cancel()
    assert answers == [True] * 10
    assert client.calls == 2, "the hung listing, then one listing for all the waiters"
    assert running(marker) == [], "the hung process was killed and reaped"


async def _lead(cache: RuleCache, scope: anyio.CancelScope) -> None:
    with scope:
        await cache.exists(RULE)
        raise AssertionError("the leader should have been cancelled")


async def test_hung_iptables_is_killed_at_timeout(tmp_path: Path, netns: str, backend: str) -> None:
    binaries, marker = script(tmp_path, backend, "exec sleep MARKER")
    client = Client(V4, backend=backend, netns=netns, binaries=binaries, timeout=0.5)  # type: ignore[arg-type]
    started = anyio.current_time()
    with pytest.raises(IPTablesTimeoutError) as caught:
        await client.list("filter", "INPUT")
    assert anyio.current_time() - started < 5
    assert isinstance(caught.value, TimeoutError)
    assert not caught.value.is_not_exist
    assert running(marker) == []
    # The next call runs the real iptables and succeeds.
    assert await client.list("filter", "INPUT") == ["-P INPUT ACCEPT"]


async def test_a_held_lock_is_retried_then_raised_never_read_as_missing(
    tmp_path: Path, netns: str, backend: str
) -> None:
    path = tmp_path / "iptables"
    path.write_text(
        "#!/bin/sh\necho 'Another app is currently holding the xtables lock. Stopped waiting after 5s.' >&2\nexit 4\n"
    )
    path.chmod(0o755)
    binaries = Binaries(str(path), f"iptables-{backend}-save", f"iptables-{backend}-restore")
    client = Client(V4, backend=backend, netns=netns, binaries=binaries, retries=2)  # type: ignore[arg-type]
    with pytest.raises(IPTablesError) as caught:
        await client.exists("filter", "INPUT", *RULE.spec)
    assert caught.value.exit_status == 4
    assert caught.value.is_resource_problem and not caught.value.is_not_exist
    assert client.calls == 3, "tried, then retried twice with a backoff"
    with pytest.raises(IPTablesError):
        await RuleCache(client).exists(RULE)
