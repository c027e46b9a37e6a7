"""The corpus: 508 real-world rules, found however they are spelled, on real iptables.

Every rule of tests/data/corpus.tsv (gathered from Kilo, kube-proxy, Calico,
Docker, flannel, ufw, firewalld, istio, wg-quick and others) is added to a
private namespace on each backend; then the RuleCache must find it through
its original spelling and through respellings, and must not find near misses
(another port, address, prefix length, negation, interface, comment, mark or
target option). One listing per chain, however many questions.
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from aioiptables import Client, Protocol, Rule, RuleCache
from aioiptables.parse import canonicalize
from aioiptables.syntax import join_tokens

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parent.parent / "data"


def _load_corpus_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_corpus", DATA / "check_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_corpus"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus_module()
RULES = corpus.read_corpus(DATA / "corpus.tsv")
Spec = tuple[str, ...]

# -- respellings: the same rule written another way ---------------------------------------------

LONG = {
    "-s": "--source", "-d": "--destination", "-p": "--protocol", "-j": "--jump", "-g": "--goto",
    "-i": "--in-interface", "-o": "--out-interface", "-m": "--match",
    "--dport": "--destination-port", "--sport": "--source-port",
    "--dports": "--destination-ports", "--sports": "--source-ports",
}  # fmt: skip
IMPLICIT_OPTIONS = {
    "tcp": ("tcp", {"--dport", "--sport", "--tcp-flags", "--syn", "--destination-port", "--source-port"}),
    "udp": ("udp", {"--dport", "--sport", "--destination-port", "--source-port"}),
    "icmp": ("icmp", {"--icmp-type"}),
    "ipv6-icmp": ("icmp6", {"--icmpv6-type"}),
    "icmpv6": ("icmp6", {"--icmpv6-type"}),
}
PROTO_NUMBERS = {"tcp": "6", "udp": "17", "icmp": "1", "icmpv6": "58", "ipv6-icmp": "58", "sctp": "132"}
ICMP_NAMES = {"8": "echo-request", "0": "echo-reply", "3": "destination-unreachable", "11": "time-exceeded"}
ICMP6_NAMES = {
    "128": "echo-request",
    "129": "echo-reply",
    "135": "neighbour-solicitation",
    "1": "destination-unreachable",
}
MASKS = {
    str(n): ".".join(str((0xFFFFFFFF << (32 - n) >> s) & 255) for s in (24, 16, 8, 0)) for n in range(1, 33)
}


def long_options(spec: Spec, proto: Protocol) -> Spec:
    return tuple(LONG.get(t, t) if i == 0 or spec[i - 1] != "--comment" else t for i, t in enumerate(spec))


def explicit_match(spec: Spec, proto: Protocol) -> Spec:
    if "-p" not in spec:
        return spec
    protocol = spec[spec.index("-p") + 1]
    if protocol not in IMPLICIT_OPTIONS:
        return spec
    match, options = IMPLICIT_OPTIONS[protocol]
    if ("-m", match) in itertools.pairwise(spec):
        return spec
    for i, token in enumerate(spec):
        if token in options:
            at = i - 1 if i and spec[i - 1] == "!" else i
            return (*spec[:at], "-m", match, *spec[at:])
    return spec


def address_forms(spec: Spec, proto: Protocol) -> Spec:
    out = list(spec)
    for i in range(len(out) - 1):
        if out[i] not in ("-s", "-d"):
            continue
        value = out[i + 1]
        if "," in value:
            continue
        address, _, length = value.partition("/")
        if proto is Protocol.IPV4:
            if not length:
                out[i + 1] = f"{address}/32"
            elif length == "32":
                out[i + 1] = address
            elif length.isdigit():
                out[i + 1] = f"{address}/{MASKS[length]}" if length != "0" else "0.0.0.0/0"
        else:
            out[i + 1] = value.upper() if length else f"{value}/128"
    return tuple(out)


def protocol_numbers(spec: Spec, proto: Protocol) -> Spec:
    out = list(spec)
    for i in range(len(out) - 1):
        if out[i] == "-p" and out[i + 1] in PROTO_NUMBERS:
            out[i + 1] = PROTO_NUMBERS[out[i + 1]]
    return tuple(out)


def icmp_names(spec: Spec, proto: Protocol) -> Spec:
    out = list(spec)
    for i in range(len(out) - 1):
        names = ICMP_NAMES if out[i] == "--icmp-type" else ICMP6_NAMES if out[i] == "--icmpv6-type" else None
        if names is None:
            continue
        value = out[i + 1]
        by_name = {name: number for number, name in names.items()}
        out[i + 1] = names.get(value) or by_name.get(value) or value
    return tuple(out)


RESPELLINGS: dict[str, Callable[[Spec, Protocol], Spec]] = {
    "long options": long_options,
    "explicit -m for the protocol": explicit_match,
    "/32, bare addresses, dotted masks, IPv6 upper case": address_forms,
    "protocol numbers": protocol_numbers,
    "icmp names and numbers": icmp_names,
}

# -- near misses: one value changed -------------------------------------------------------------


def _change_after(flags: set[str], change: Callable[[str], str | None]) -> Callable[[Spec], Spec | None]:
    def mutate(spec: Spec) -> Spec | None:
        for i in range(len(spec) - 1):
            if spec[i] in flags:
                new = change(spec[i + 1])
                if new is not None and new != spec[i + 1]:
                    return (*spec[: i + 1], new, *spec[i + 2 :])
        return None

    return mutate


def _other_port(value: str) -> str | None:
    head = value.split(",")[0].split(":")[0]
    return value.replace(head, str(int(head) + 1), 1) if head.isdigit() and int(head) < 65535 else None


def _other_prefix(value: str) -> str | None:
    address, _, length = value.partition("/")
    if "," in value:
        return None
    bits = 32 if ":" not in address else 128
    size = int(length) if length.isdigit() else bits
    return f"{address}/{size - 1}" if size > 8 else None


def _other_address(value: str) -> str | None:
    address, slash, length = value.partition("/")
    if (
        "," in value
        or not (length.isdigit() or not length)
        or (length and int(length) < 24 and ":" not in address)
    ):
        return None
    if ":" in address:
        return f"fd99::{slash}{length}" if address != "fd99::" else None
    octets = address.split(".")
    octets[-1] = str((int(octets[-1]) + 1) % 256) if length in ("", "32") else octets[-1]
    octets[0] = octets[0] if length in ("", "32") else str((int(octets[0]) + 1) % 224)
    return ".".join(octets) + (f"/{length}" if slash else "")


def _toggle_negation(spec: Spec) -> Spec | None:
    for i, token in enumerate(spec):
        if token in ("-s", "-d", "-i", "-o"):
            if i and spec[i - 1] == "!":
                return (*spec[: i - 1], *spec[i:])
            return (*spec[:i], "!", *spec[i:])
    return None


def _other_mark(value: str) -> str | None:
    mark, slash, mask = value.partition("/")
    try:
        number = int(mark, 0)
    except ValueError:
        return None
    return f"{number + 1:#x}{slash}{mask}"


NEAR_MISSES: dict[str, Callable[[Spec], Spec | None]] = {
    "another port": _change_after({"--dport", "--sport", "--dports", "--sports", "--to-ports"}, _other_port),
    "another prefix length": _change_after({"-s", "-d"}, _other_prefix),
    "another address": _change_after({"-s", "-d", "--to-destination", "--to-source"}, _other_address),
    "negation toggled": _toggle_negation,
    "another interface": _change_after({"-i", "-o", "--physdev-in", "--physdev-out"}, lambda v: "zz9"),
    "another comment": _change_after({"--comment"}, lambda v: v + " (changed)"),
    "another mark": _change_after(
        {"--mark", "--set-mark", "--set-xmark", "--or-mark", "--xor-mark"}, _other_mark
    ),
    "another target option": _change_after(
        {"--reject-with", "--log-prefix", "--log-level"},
        lambda v: (
            {"tcp-reset": "icmp-port-unreachable"}.get(v, "tcp-reset")
            if ("-" in v and "unreach" in v) or v == "tcp-reset"
            else (v + "x" if not v.isdigit() else str((int(v) + 1) % 8))
        ),
    ),
    "another target": _change_after(
        {"-j"}, lambda v: {"ACCEPT": "DROP", "DROP": "ACCEPT", "RETURN": "ACCEPT"}.get(v)
    ),
}

# -- loading the corpus ---------------------------------------------------------------------------


def load(netns: str, backend: str, proto: int) -> list[Any]:
    selected = [rule for rule in RULES if rule.proto == proto]
    program = f"{'iptables' if proto == 4 else 'ip6tables'}-{backend}"
    family = "inet" if proto == 4 else "inet6"
    for name, dims in corpus.ipsets(selected).items():
        kind = corpus.IPSET_TYPES.get(dims, "hash:net")
        run(netns, "ipset", "create", name, kind, "family", family)
    lines: list[str] = []
    for table, chains in corpus.user_chains(selected).items():
        rules = [r for r in selected if r.table == table]
        if not rules and not chains:
            continue
        lines += [f"*{table}", *(f":{chain} - [0:0]" for chain in chains)]
        lines += [f"-A {r.chain} {join_tokens(r.tokens)}" for r in rules]
        lines.append("COMMIT")
    run(netns, f"{program}-restore", "--noflush", input="\n".join(lines) + "\n")
    return selected


def run(netns: str, *argv: str, input: str | None = None) -> str:
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", *argv], input=input, capture_output=True, text=True
    )
    if done.returncode:
        pytest.fail(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def variants(spec: Spec, proto: Protocol) -> Iterator[tuple[str, Spec]]:
    for name, respell in RESPELLINGS.items():
        changed = respell(spec, proto)
        if changed != spec:
            yield name, changed


@pytest.mark.parametrize("proto", [4, 6], ids=["v4", "v6"])
async def test_every_corpus_rule_is_found_however_spelled_and_near_misses_are_not(
    netns: str, backend: str, proto: int
) -> None:
    selected = load(netns, backend, proto)
    family = Protocol.IPV4 if proto == 4 else Protocol.IPV6
    client = Client(family, backend=backend, netns=netns)  # type: ignore[arg-type]
    cache = RuleCache(client)
    problems: list[str] = []
    respelled = missed = 0
    by_chain: dict[tuple[str, str], set[Spec]] = {}
    for rule in selected:
        by_chain.setdefault((rule.table, rule.chain), set()).add(canonicalize(rule.tokens, family))

    for rule in selected:
        where = f"line {rule.lineno} ({rule.source}): -t {rule.table} -A {rule.chain} {rule.spec}"
        if not await cache.exists(Rule(rule.table, rule.chain, rule.tokens, family)):
            listing = await cache.listing(family, rule.table, rule.chain)
            problems.append(f"not found as written: {where}\n    listed: {listing.specs}")
            continue
        for name, spec in variants(rule.tokens, family):
            respelled += 1
            if not await cache.exists(Rule(rule.table, rule.chain, spec, family)):
                problems.append(f"not found respelled ({name}): {where}\n    as: {' '.join(spec)}")
        for name, mutate in NEAR_MISSES.items():
            miss = mutate(rule.tokens)
            if miss is None or canonicalize(miss, family) in by_chain[(rule.table, rule.chain)]:
                continue  # not applicable, or it is another rule of the corpus
            missed += 1
            if await cache.exists(Rule(rule.table, rule.chain, miss, family)):
                problems.append(f"near miss found ({name}): {where}\n    as: {' '.join(miss)}")

    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
    assert client.calls == len(by_chain), "one listing per chain"
    assert respelled > len(selected) // 2 and missed > len(selected), (respelled, missed)
