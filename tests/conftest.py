"""Shared fixtures: both async backends, private network namespaces, real clients.

Tests that need real iptables take the ``netns`` fixture, which creates a
fresh network namespace for that one test and removes it afterwards, so no
test ever reads or writes the machine's own tables. They fail (never skip)
when iptables or namespaces are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from aioiptables import Client, Controller, FakeClient, FakeRunner, IPTablesVersion, Protocol


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh, empty network namespace for one test, by name."""
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (they create network namespaces)")
    if shutil.which("ip") is None:
        pytest.fail("the 'ip' command is missing: apt-get install -y iproute2")
    name = f"aioipt-{uuid.uuid4().hex[:10]}"
    made = _run("ip", "netns", "add", name)
    if made.returncode != 0:
        pytest.fail(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        yield name
    finally:
        _run("ip", "netns", "delete", name)


@pytest.fixture(params=["nft", "legacy"])
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    for binary in (f"iptables-{name}", f"ip6tables-{name}-restore"):
        if shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.fail(f"{binary} is missing: apt-get install -y iptables")
    return name


@pytest.fixture(params=[Protocol.IPV4, Protocol.IPV6], ids=["v4", "v6"])
def proto(request: pytest.FixtureRequest) -> Protocol:
    value: Protocol = request.param
    return value


ClientFactory = Callable[..., Client]


@pytest.fixture
def make_client(netns: str, backend: str) -> ClientFactory:
    """Build real clients inside this test's namespace on this test's backend."""

    def make(proto: Protocol = Protocol.IPV4, **kwargs: object) -> Client:
        return Client(proto, backend=backend, netns=netns, **kwargs)  # type: ignore[arg-type]

    return make


def ns_exec(netns: str, *argv: str, input: str | None = None) -> str:
    """Run a command inside the test namespace (for tampering and checks)."""
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed in {netns}: {done.stderr.strip()}")
    return done.stdout


class World:
    """Where a test's iptables lives: the in-memory fake, or real iptables on
    one backend inside the test's own namespace. Tests written against a
    World run unchanged on all three, which is how the fake's process counts
    are held to the real ones."""

    def __init__(self, kind: str, netns: str | None = None) -> None:
        self.kind = kind
        self.netns = netns
        self.fake = FakeRunner() if kind == "fake" else None
        self._wait_args: list[str] | None = None

    @property
    def real(self) -> bool:
        return self.fake is None

    def client(self, proto: Protocol = Protocol.IPV4, **kwargs: Any) -> Client:
        """A client of this world (counted in its own ``calls``)."""
        if self.fake is not None:
            return FakeClient(proto, runner=self.fake, **kwargs)
        return Client(proto, backend=self.kind, netns=self.netns, **kwargs)  # type: ignore[arg-type]

    async def iptables(self, proto: Protocol, *args: str) -> str:
        """Run an iptables command behind the library's back (not counted)."""
        program = proto.command
        if self.fake is not None:
            done = await self.fake.run([program, *args])
            self.fake.calls -= 1
            if done.exit_status:
                raise AssertionError(f"{program} {' '.join(args)}: {done.stderr}")
            return done.stdout
        argv = [
            "nsenter",
            f"--net=/run/netns/{self.netns}",
            "--",
            f"{program}-{self.kind}",
            *self.wait_args(),
            *args,
        ]
        result = await anyio.run_process(argv, check=False)
        if result.returncode:
            raise AssertionError(f"{' '.join(argv)}: {result.stderr.decode()}")
        return result.stdout.decode("utf-8", "replace")  # as the client reads it

    def wait_args(self) -> list[str]:
        """How this world's iptables waits for the xtables lock, as the client
        does: -w, since 1.8.11 (and on 1.8.7) iptables-legacy without it
        exits 4 at once when another process holds the lock, even to read;
        and before 1.8.8, -W, or iptables-legacy tries a held lock again only
        once a second."""
        if self._wait_args is None:
            self._wait_args = ["-w"]
            if self.kind == "legacy":
                printed = subprocess.run(["iptables-legacy", "--version"], capture_output=True, text=True)
                if IPTablesVersion.parse(printed.stdout) < (1, 8, 8):
                    self._wait_args += ["-W", "10000"]
        return self._wait_args

    async def rules(self, proto: Protocol, table: str, chain: str) -> list[str]:
        """The ``-S`` lines of one chain, read behind the library's back."""
        out = await self.iptables(proto, "-t", table, "-S", chain)
        return [line for line in out.splitlines() if line.startswith("-A")]

    async def snapshot(self, proto: Protocol) -> list[str]:
        """Every table's chains and rules, without counters or comments."""
        lines: list[str] = []
        for table in ("filter", "nat", "mangle", "raw"):
            lines.extend(
                line
                for line in (await self.iptables(proto, "-t", table, "-S")).splitlines()
                if not line.startswith("#")
            )
        return lines


def controller_for(world: World, proto: Protocol, **kwargs: Any) -> Controller:
    """A Controller of ``world`` holding one client, of ``proto``."""
    client = world.client(proto)
    if proto is Protocol.IPV4:
        return Controller(client, **kwargs)
    return Controller(None, client, **kwargs)


def net(proto: Protocol, n: int = 1) -> str:
    """A network of ``proto`` for the tests' rules: 10.N.0.0/16 or fd00:N::/64."""
    return f"10.{n}.0.0/16" if proto is Protocol.IPV4 else f"fd00:{n}::/64"


@pytest.fixture(params=["fake", "nft", "legacy"])
def world(request: pytest.FixtureRequest) -> World:
    kind = str(request.param)
    if kind == "fake":
        return World(kind)
    for binary in (f"iptables-{kind}", f"ip6tables-{kind}-restore"):
        if shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.fail(f"{binary} is missing: apt-get install -y iptables")
    return World(kind, request.getfixturevalue("netns"))
