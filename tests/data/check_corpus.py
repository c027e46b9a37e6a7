#!/usr/bin/env python3
"""Check that every rule of corpus.tsv is accepted by the real iptables binaries.

For each backend (nft, legacy) and each protocol (4, 6) the script creates a
throwaway network namespace, creates there every user chain and every ipset the
rules refer to, then appends each rule with

    nsenter --net=/run/netns/NAME -- iptables-<backend> -w 10 -t TABLE -A CHAIN <spec tokens>

(ip6tables-<backend> for protocol 6) and reports the rules that fail.  The
namespace is deleted afterwards, even on error.  iptables never runs outside
such a namespace, so the host's own tables are never touched.

Needs root, iproute2 (ip netns), util-linux (nsenter), iptables 1.8 with both
backends and ipset.  Exit status: 0 when every rule is accepted everywhere, 1
when some rule fails, 2 on a setup problem (not root, missing tool, bad file).

Usage:
    sudo tests/data/check_corpus.py                  # check everything
    tests/data/check_corpus.py --stats               # only count rules, needs no root
    sudo tests/data/check_corpus.py --backend nft --proto 6 -v
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

HEADER = ["source", "proto", "table", "chain", "spec"]
DEFAULT_CORPUS = Path(__file__).with_name("corpus.tsv")

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}

# Targets that are extensions or verdicts, never user chains.
KNOWN_TARGETS = frozenset(
    {
        "ACCEPT", "DROP", "RETURN", "QUEUE", "REJECT", "LOG", "ULOG", "NFLOG", "MASQUERADE",
        "SNAT", "DNAT", "REDIRECT", "NETMAP", "MARK", "CONNMARK", "CONNSECMARK", "SECMARK",
        "TCPMSS", "TCPOPTSTRIP", "NOTRACK", "CT", "TPROXY", "AUDIT", "DSCP", "TOS", "TTL", "HL",
        "CLASSIFY", "TEE", "NFQUEUE", "SET", "CHECKSUM", "IDLETIMER", "LED", "RATEEST", "TRACE",
        "SYNPROXY", "HMARK", "CLUSTERIP", "ECN", "CONNLABEL",
    }
)  # fmt: skip

JUMP_OPTIONS = frozenset({"-j", "--jump", "-g", "--goto"})
GOTO_OPTIONS = frozenset({"-g", "--goto"})


class CorpusError(Exception):
    """The corpus file is malformed."""


@dataclasses.dataclass(frozen=True)
class Rule:
    lineno: int
    source: str
    proto: int
    table: str
    chain: str
    spec: str
    tokens: tuple[str, ...]

    @property
    def project(self) -> str:
        return self.source.split(":", 1)[0]


@dataclasses.dataclass
class Failure:
    backend: str
    rule: Rule
    message: str


def split_spec(spec: str) -> list[str]:
    """Split a rule spec the way iptables-restore reads an iptables-save line.

    Tokens are separated by blanks.  A double-quoted part may hold blanks; inside
    it a backslash escapes a double quote or a backslash.  Outside double quotes
    every character, single quotes and backslashes included, is literal.
    """
    tokens: list[str] = []
    current: list[str] = []
    started = False
    in_quotes = False
    i = 0
    while i < len(spec):
        char = spec[i]
        if in_quotes:
            if char == "\\" and i + 1 < len(spec) and spec[i + 1] in '"\\':
                current.append(spec[i + 1])
                i += 2
                continue
            if char == '"':
                in_quotes = False
            else:
                current.append(char)
        elif char in " \t":
            if started:
                tokens.append("".join(current))
                current = []
                started = False
        elif char == '"':
            in_quotes = True
            started = True
        else:
            current.append(char)
            started = True
        i += 1
    if in_quotes:
        raise ValueError(f"unterminated double quote in {spec!r}")
    if started:
        tokens.append("".join(current))
    return tokens


def read_corpus(path: Path) -> list[Rule]:
    rules: list[Rule] = []
    header_seen = False
    with path.open(encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if not header_seen:
                if fields != HEADER:
                    raise CorpusError(f"line {lineno}: expected header {HEADER}, got {fields}")
                header_seen = True
                continue
            if len(fields) != len(HEADER):
                raise CorpusError(
                    f"line {lineno}: expected {len(HEADER)} tab-separated fields, got {len(fields)}"
                )
            source, proto, table, chain, spec = fields
            if proto not in ("4", "6"):
                raise CorpusError(f"line {lineno}: proto must be 4 or 6, got {proto!r}")
            if table not in BUILTIN_CHAINS:
                raise CorpusError(f"line {lineno}: unknown table {table!r}")
            if not source or ":" not in source or "/" not in source.split(":", 1)[0]:
                raise CorpusError(f"line {lineno}: source must look like owner/repo:path, got {source!r}")
            if not chain or " " in chain:
                raise CorpusError(f"line {lineno}: bad chain {chain!r}")
            try:
                tokens = split_spec(spec)
            except ValueError as err:
                raise CorpusError(f"line {lineno}: {err}") from err
            if not tokens:
                raise CorpusError(f"line {lineno}: empty spec")
            rules.append(Rule(lineno, source, int(proto), table, chain, spec, tuple(tokens)))
    if not header_seen:
        raise CorpusError("no header line")
    return rules


def jump_targets(rule: Rule) -> Iterator[tuple[str, bool]]:
    """Yield (target, is_goto) for every -j/-g of a rule."""
    tokens = rule.tokens
    for index, token in enumerate(tokens[:-1]):
        if token in JUMP_OPTIONS:
            yield tokens[index + 1], token in GOTO_OPTIONS


def user_chains(rules: Iterable[Rule]) -> dict[str, list[str]]:
    """Every user chain per table, in order of first appearance."""
    chains: dict[str, list[str]] = {table: [] for table in BUILTIN_CHAINS}

    def add(table: str, chain: str) -> None:
        if chain not in BUILTIN_CHAINS[table] and chain not in chains[table]:
            chains[table].append(chain)

    for rule in rules:
        add(rule.table, rule.chain)
        for target, is_goto in jump_targets(rule):
            if is_goto or target not in KNOWN_TARGETS:
                add(rule.table, target)
    return chains


def ipsets(rules: Iterable[Rule]) -> dict[str, int]:
    """Every ipset the rules match on, with its number of dimensions."""
    sets: dict[str, int] = {}
    for rule in rules:
        tokens = rule.tokens
        for index, token in enumerate(tokens):
            if token in ("--match-set", "--add-set", "--del-set") and index + 2 < len(tokens):
                name, flags = tokens[index + 1], tokens[index + 2]
                sets.setdefault(name, len(flags.split(",")))
    return sets


IPSET_TYPES = {1: "hash:net", 2: "hash:ip,port", 3: "hash:ip,port,ip"}


class Namespace:
    """A throwaway network namespace; iptables and ipset run only inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"

    def __enter__(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True, text=True)

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--net={self.path}", "--", *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )


def binary(backend: str, proto: int) -> str:
    return f"{'iptables' if proto == 4 else 'ip6tables'}-{backend}"


def check(rules: list[Rule], backend: str, proto: int, verbose: bool) -> tuple[int, list[Failure]]:
    selected = [rule for rule in rules if rule.proto == proto]
    if not selected:
        return 0, []
    ipt = binary(backend, proto)
    failures: list[Failure] = []
    with Namespace(f"corpus-{os.getpid()}-{backend}-{proto}") as netns:
        family = "inet" if proto == 4 else "inet6"
        for name, dims in ipsets(selected).items():
            result = netns.run(["ipset", "create", name, IPSET_TYPES.get(dims, "hash:net"), "family", family])
            if result.returncode != 0:
                raise RuntimeError(f"ipset create {name} failed: {result.stderr.strip()}")
        for table, chains in user_chains(selected).items():
            for chain in chains:
                result = netns.run([ipt, "-w", "10", "-t", table, "-N", chain])
                if result.returncode != 0:
                    raise RuntimeError(f"{ipt} -t {table} -N {chain} failed: {result.stderr.strip()}")
        for rule in selected:
            argv = [ipt, "-w", "10", "-t", rule.table, "-A", rule.chain, *rule.tokens]
            result = netns.run(argv)
            if result.returncode != 0:
                message = (result.stderr or result.stdout).strip().replace("\n", " | ")
                failures.append(Failure(backend, rule, message))
            elif verbose:
                print(f"ok   {ipt} line {rule.lineno}: -t {rule.table} -A {rule.chain} {rule.spec}")
    return len(selected), failures


def print_stats(rules: list[Rule]) -> None:
    per_project: collections.Counter[tuple[str, int]] = collections.Counter()
    for rule in rules:
        per_project[(rule.project, rule.proto)] += 1
    projects = sorted({project for project, _ in per_project})
    width = max(len(project) for project in projects)
    print(f"{'project':<{width}}  {'v4':>4}  {'v6':>4}  {'total':>5}")
    for project in projects:
        v4, v6 = per_project[(project, 4)], per_project[(project, 6)]
        print(f"{project:<{width}}  {v4:>4}  {v6:>4}  {v4 + v6:>5}")
    v4 = sum(1 for rule in rules if rule.proto == 4)
    v6 = len(rules) - v4
    print(f"{'total':<{width}}  {v4:>4}  {v6:>4}  {len(rules):>5}")
    tables = collections.Counter(rule.table for rule in rules)
    print("per table: " + ", ".join(f"{table} {tables[table]}" for table in BUILTIN_CHAINS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus file (default: %(default)s)"
    )
    parser.add_argument("--backend", choices=["nft", "legacy"], action="append", help="backend(s) to check")
    parser.add_argument("--proto", choices=[4, 6], type=int, action="append", help="protocol(s) to check")
    parser.add_argument("--stats", action="store_true", help="print rule counts and exit (no root needed)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every accepted rule too")
    args = parser.parse_args(argv)

    try:
        rules = read_corpus(args.corpus)
    except (OSError, CorpusError) as err:
        print(f"error: {args.corpus}: {err}", file=sys.stderr)
        return 2
    if args.stats:
        print_stats(rules)
        return 0

    if os.geteuid() != 0:
        print("error: must run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    backends = args.backend or ["nft", "legacy"]
    protos = args.proto or [4, 6]
    tools = ["ip", "nsenter", "ipset"] + [binary(b, p) for b in backends for p in protos]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        print(f"error: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2

    all_failures: list[Failure] = []
    for backend in backends:
        for proto in protos:
            try:
                checked, failures = check(rules, backend, proto, args.verbose)
            except (RuntimeError, subprocess.SubprocessError, OSError) as err:
                print(f"error: {binary(backend, proto)}: {err}", file=sys.stderr)
                return 2
            print(f"{binary(backend, proto)}: {checked - len(failures)}/{checked} rules accepted")
            all_failures.extend(failures)

    for failure in all_failures:
        rule = failure.rule
        print(
            f"FAIL {binary(failure.backend, rule.proto)} line {rule.lineno} ({rule.source}): "
            f"-t {rule.table} -A {rule.chain} {rule.spec}\n     {failure.message}"
        )
    print(f"{len(rules)} rules, {len(all_failures)} failures")
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main())
