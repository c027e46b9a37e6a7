"""iptables-restore's line limits on real iptables (nft and legacy, IPv4 and IPv6).

Each boundary of tests/test_limits.py is held against the real programs: what
the library accepts, iptables-restore applies as written; what it refuses,
iptables-restore would have cut or refused (shown by feeding the same payload
to it directly), and through :meth:`Client.restore` it runs no process and
leaves ``iptables-save`` as it was. Every test runs in its own namespace.
"""

from __future__ import annotations

import math
import re
import subprocess

import pytest

from aioiptables import Client, InvalidRuleError, Protocol
from aioiptables.limits import MAX_RESTORE_LINE_BYTES, check_restore_rule
from aioiptables.syntax import join_tokens, split_line
from conftest import ClientFactory, ns_exec

pytestmark = pytest.mark.anyio

GROUP = " -m comment --comment "


def comments(size: int) -> tuple[str, ...]:
    """Comment matches of at most 250 bytes each whose joined form (each with
    its leading blank) is exactly ``size`` bytes."""
    count = math.ceil(size / (len(GROUP) + 250))
    letters = size - len(GROUP) * count
    spec: list[str] = []
    for i in range(count):
        spec += ["-m", "comment", "--comment", "c" * (letters // count + (i < letters % count))]
    return tuple(spec)


def rule_line(size: int) -> str:
    """``-A INPUT <comments> -j ACCEPT``, exactly ``size`` bytes with its newline."""
    line = "-A INPUT " + join_tokens(comments(size - 1 - len("-A INPUT -j ACCEPT"))) + " -j ACCEPT"
    assert len(line.encode()) + 1 == size
    return line


def payload(line: str) -> str:
    return f"*filter\n{line}\nCOMMIT\n"


def save(netns: str, backend: str, proto: Protocol) -> list[str]:
    """Every table as iptables-save prints it, without comments and counters."""
    out = ns_exec(netns, f"{proto.command}-{backend}-save")
    return [re.sub(r"\[\d+:\d+\]", "[-]", line) for line in out.split("\n") if not line.startswith("#")]


def rules(netns: str, backend: str, proto: Protocol, chain: str = "INPUT") -> list[str]:
    out = ns_exec(netns, f"{proto.command}-{backend}", "-S", chain)
    return [line for line in out.split("\n") if line.startswith("-A ")]


def restore_raw(netns: str, backend: str, proto: Protocol, text: str) -> subprocess.CompletedProcess[str]:
    """Feed ``text`` to iptables-restore directly, bypassing the library."""
    argv = [f"{proto.command}-{backend}-restore", "--noflush"]
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )


async def refused_without_a_process(
    client: Client, netns: str, backend: str, proto: Protocol, text: str
) -> None:
    before, calls = save(netns, backend, proto), client.calls
    with pytest.raises(InvalidRuleError):
        await client.restore(text)
    assert client.calls == calls, "a process ran"
    assert save(netns, backend, proto) == before


# -- the line, its arguments, each argument ------------------------------------------------------

# Three arguments that fit any protocol: no address, and INPUT takes -i.
NOT_LO = ("!", "-i", "lo")
COMMENT_X = ("-m", "comment", "--comment", "x")

BOUNDARIES = [
    pytest.param(rule_line(10238), True, id="a line of 10,238 bytes"),
    pytest.param(rule_line(10239), True, id="a line of 10,239 bytes"),
    pytest.param(rule_line(10240), False, id="a line of 10,240 bytes"),
    pytest.param(rule_line(10241), False, id="a line of 10,241 bytes"),
    pytest.param(
        join_tokens(["-A", "INPUT", *COMMENT_X * 61, *NOT_LO, "-j", "ACCEPT"]), True, id="251 arguments"
    ),
    pytest.param(join_tokens(["-A", "INPUT", *COMMENT_X * 62, "-j", "ACCEPT"]), False, id="252 arguments"),
    pytest.param(
        join_tokens(["-A", "INPUT", "-m", "comment", "--comment", "c" * 1023]), True, id="1,023 bytes"
    ),
    pytest.param(
        join_tokens(["-A", "INPUT", "-m", "comment", "--comment", "c" * 1024]), False, id="1,024 bytes"
    ),
]


@pytest.mark.parametrize(("line", "accepted"), BOUNDARIES)
async def test_restore_takes_exactly_what_iptables_restore_reads_whole(
    make_client: ClientFactory, netns: str, backend: str, proto: Protocol, line: str, accepted: bool
) -> None:
    client = make_client(proto)
    if accepted:
        await client.restore(payload(line))
        assert client.calls == 1
        assert len(rules(netns, backend, proto)) == 1, "exactly one rule applied"
        return
    await refused_without_a_process(client, netns, backend, proto, payload(line))
    # Not too strict: fed directly, iptables-restore fails on the line, or
    # reads a line that is not the one written (the cut at 10,240 bytes is
    # harmless by luck: only the newline spills).
    raw = restore_raw(netns, backend, proto, payload(line))
    if len(line.encode()) + 1 == MAX_RESTORE_LINE_BYTES + 1:
        assert raw.returncode == 0 and len(rules(netns, backend, proto)) == 1
    else:
        assert raw.returncode != 0, raw.stderr
        assert rules(netns, backend, proto) == []


# -- the injections the check exists for ---------------------------------------------------------


def injection_line(ending: str) -> str:
    """``-A INPUT`` with 37 comments of 250 bytes and a last comment whose
    ``ending`` and closing quote land just past byte 10,239, where
    iptables-restore cuts the line."""
    spec = ["-m", "comment", "--comment", "c" * 250] * 37
    for size in range(256):
        line = join_tokens(["-A", "INPUT", *spec, "-m", "comment", "--comment", "c" * size + ending])
        if line.encode()[MAX_RESTORE_LINE_BYTES:] == ending.encode() + b'"':
            return line
    raise AssertionError("no comment size puts the ending past the cut")


def seed(netns: str, backend: str, proto: Protocol) -> None:
    """A rule in each of INPUT and OUTPUT, for a flush to remove."""
    for chain in ("INPUT", "OUTPUT"):
        ns_exec(netns, f"{proto.command}-{backend}", "-A", chain, "-j", "DROP")


async def test_a_rule_too_long_cannot_inject_an_accept_rule(
    make_client: ClientFactory, netns: str, backend: str, proto: Protocol
) -> None:
    seed(netns, backend, proto)
    address = "6.6.6.6/32" if proto is Protocol.IPV4 else "6::6/128"
    attack = payload(injection_line(f" -A INPUT -s {address} -j ACCEPT -m comment --comment "))
    await refused_without_a_process(make_client(proto), netns, backend, proto, attack)
    # What it would have done: iptables-restore takes the tail for a rule.
    assert restore_raw(netns, backend, proto, attack).returncode == 0
    # Its comment is the newline: iptables prints the rule over two lines.
    assert f'-A INPUT -s {address} -m comment --comment "' in rules(netns, backend, proto)


async def test_a_rule_too_long_cannot_inject_a_flush(
    make_client: ClientFactory, netns: str, backend: str, proto: Protocol
) -> None:
    seed(netns, backend, proto)
    attack = payload(injection_line(" -F -m comment --comment "))
    await refused_without_a_process(make_client(proto), netns, backend, proto, attack)
    # What it would have done: every chain of the table flushed.
    assert restore_raw(netns, backend, proto, attack).returncode == 0
    assert rules(netns, backend, proto, "INPUT") == rules(netns, backend, proto, "OUTPUT") == []


# -- the margin: a rule accepted up front is deleted by its printed form ---------------------------

# (-m recent and -m connlimit grow most, but iptables cannot delete them by
# their printed form whatever its length: "Bad rule", nft and legacy alike.)
GROWING = [
    pytest.param(
        ("-m", "hashlimit", "--hashlimit-upto", "5/sec", "--hashlimit-name", "x"),
        id="hashlimit (+2 arguments, +20 bytes)",
    ),
    pytest.param(("-m", "time", "--timestart", "10:00"), id="time (+4 arguments, +54 bytes)"),
    pytest.param(("-p", "tcp", "--syn", "-j", "REJECT"), id="tcp --syn and REJECT (+6 arguments)"),
    pytest.param(
        ("-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "NFQUEUE"),
        id="statistic and NFQUEUE (+2 arguments, +24 bytes)",
    ),
]


def largest_accepted(given: tuple[str, ...]) -> tuple[str, ...]:
    """``given`` padded with comments to the longest spec check_restore_rule takes."""
    low, high = 0, MAX_RESTORE_LINE_BYTES
    while low < high:  # the largest padding accepted
        middle = (low + high + 1) // 2
        try:
            check_restore_rule("INPUT", given + comments(middle))
        except InvalidRuleError:
            high = middle - 1
        else:
            low = middle
    return given + comments(low)


@pytest.mark.parametrize("given", GROWING)
async def test_the_largest_rule_accepted_is_deleted_by_its_printed_form(
    make_client: ClientFactory, netns: str, backend: str, proto: Protocol, given: tuple[str, ...]
) -> None:
    spec = largest_accepted(given)
    client = make_client(proto)
    await client.restore(payload(f"-A INPUT {join_tokens(spec)}"))
    (printed,) = [line for line in await client.list("filter", "INPUT") if line.startswith("-A ")]
    grown = len(printed.encode()) - len(f"-A INPUT {join_tokens(spec)}".encode())
    assert grown > 0, "iptables printed the rule as given: nothing to test"
    delete = f"-D INPUT {join_tokens(split_line(printed)[2:])}"
    await client.restore(payload(delete))
    assert rules(netns, backend, proto) == []
    print(f"figures: {given[:2]} grew by {grown} bytes; -D line {len(delete.encode()) + 1} bytes")
