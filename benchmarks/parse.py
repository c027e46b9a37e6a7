"""Parsing and canonicalizing large tables, as iptables-save prints them.

Two kinds of table, each loaded into a private namespace and dumped with
iptables-save by real iptables:

- ``kube``: a kube-proxy nat table (by default 3,000 services with 3
  endpoints each: 33,007 rules, 45,000 lines), uniform;
- ``mixed``: the IPv4 rules of the real-world corpus (tests/data/corpus.tsv:
  Kilo, kube-proxy, Calico, Docker, ufw, firewalld, istio... some 30 match
  and target extensions, all four tables) copied ``--copies`` times (by
  default 100: about 34,000 rules), each copy with its own user chains,
  addresses and comments, so that most lines are distinct.

Each dump is parsed with ``parse_save`` (tokenize every line, canonicalize
every rule) with cold caches, best of N runs, on one core. It also checks
that every rule iptables printed is already in canonical form.

With ``--baseline REV`` the library as it was at git revision REV is loaded
too (under another name) and timed on the same text, alternating with the
current one, each in fresh interpreters of its own (``--runs`` rounds of 3
cold parses each), so both rows come from one run on one (noisy) machine.

    python benchmarks/parse.py [--kinds kube mixed] [--services 3000] [--copies 100]
                               [--runs 7] [--baseline HEAD]
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from _netns import private_netns, restore
from kube import kube_proxy_payload

import aioiptables
from aioiptables import Protocol
from aioiptables.syntax import join_tokens

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data"


def clear_caches(library: ModuleType) -> None:
    """Forget every cached canonical form, so each run reads as if for the first time."""
    for module in (library.parse, library.extensions):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
    for value in vars(library.parse).values():
        if isinstance(value, dict):
            for memo in [value, *value.values()]:
                if getattr(memo, "_memo", False):
                    memo.clear()  # the parser's own bounded memos


def baseline(rev: str) -> ModuleType:
    """The library as it was at ``rev``, as a package of another name."""
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", rev, "src/aioiptables/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    where = Path(tempfile.mkdtemp(prefix="aioiptables-baseline-"))
    package = where / "aioiptables_baseline"
    package.mkdir()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{rev}:{name}"], capture_output=True, text=True, check=True
            ).stdout
            (package / Path(name).name).write_text(text)
    sys.path.insert(0, str(where))
    library = importlib.import_module("aioiptables_baseline")
    for sub in ("parse", "extensions"):
        importlib.import_module(f"aioiptables_baseline.{sub}")
    return library


# -- the tables -----------------------------------------------------------------------------------


def _load_corpus() -> ModuleType:
    """tests/data/check_corpus.py, which reads the corpus (not a package: found by its folder)."""
    if str(CORPUS) not in sys.path:
        sys.path.insert(0, str(CORPUS))
    return importlib.import_module("check_corpus")


_ADDRESS_OPTIONS = frozenset({"-s", "-d", "--source", "--destination", "--to-destination", "--to-source"})
_QUAD = re.compile(r"^(\d+)\.(\d+)\.")


def mixed_payload(copies: int) -> tuple[dict[str, str], list[str]]:
    """Restore payloads (by table) for ``copies`` copies of the corpus's IPv4
    rules, and the ipsets they need."""
    corpus = _load_corpus()
    rules = [r for r in corpus.read_corpus(CORPUS / "corpus.tsv") if r.proto == 4]
    user = corpus.user_chains(rules)
    tables: dict[str, list[str]] = {table: [f"*{table}"] for table in corpus.BUILTIN_CHAINS}
    rows: dict[str, list[str]] = {table: [] for table in corpus.BUILTIN_CHAINS}
    for k in range(copies):
        renamed: dict[str, dict[str, str]] = {}
        for table, chains in user.items():
            names = renamed[table] = {}
            for index, chain in enumerate(chains):
                suffix = f"-{k}"
                name = chain[: 28 - len(suffix)] + suffix
                if name in names.values():
                    name = f"C{index}{suffix}"
                names[chain] = name
                tables[table].append(f":{name} - [0:0]")
        for rule in rules:
            names = renamed[rule.table]
            tokens = list(rule.tokens)
            for i in range(1, len(tokens)):
                before, token = tokens[i - 1], tokens[i]
                if before in ("-j", "--jump", "-g", "--goto") and token in names:
                    tokens[i] = names[token]
                elif before in _ADDRESS_OPTIONS and "-" not in token:
                    tokens[i] = _QUAD.sub(lambda m, k=k: f"{m[1]}.{(int(m[2]) + k) % 256}.", token)
                elif before == "--comment" and len(token) < 240:
                    tokens[i] = f"{token} #{k}"
            rows[rule.table].append(f"-A {names.get(rule.chain, rule.chain)} {join_tokens(tuple(tokens))}")
    payloads = {table: "\n".join([*tables[table], *rows[table], "COMMIT", ""]) for table in tables}
    return payloads, list(corpus.ipsets(rules))


def saved(backend: str, payloads: dict[str, str], sets: list[str]) -> str:
    with private_netns() as netns:
        enter = ["nsenter", f"--net=/run/netns/{netns}", "--"]
        for name in sets:
            subprocess.run([*enter, "ipset", "create", name, "hash:net"], check=True)
        for payload in payloads.values():
            restore(netns, f"iptables-{backend}", payload)
        done = subprocess.run(
            [*enter, f"iptables-{backend}-save", *(["-t", "nat"] if list(payloads) == ["nat"] else [])],
            capture_output=True,
            text=True,
            check=True,
        )
    return done.stdout


# -- measuring ------------------------------------------------------------------------------------


def read_all(library: ModuleType, text: str) -> int:
    """Parse the save output and canonicalize every rule of every chain."""
    count = 0
    for table in library.parse.parse_save(text, library.Protocol.IPV4).values():
        for listing in table.chains.values():
            count += len(listing.keys)
    return count


def keys_of(library: ModuleType, text: str) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for table in library.parse.parse_save(text, library.Protocol.IPV4).values():
        for listing in table.chains.values():
            keys += listing.keys
    return keys


def measure(libraries: list[ModuleType], text: str, runs: int) -> list[tuple[float, float, float]]:
    """For each library: best wall and CPU seconds of a cold parse, and the
    best warm wall seconds; runs alternate between the libraries."""
    times: list[list[list[float]]] = [[[], [], []] for _ in libraries]
    for _ in range(runs):
        for library, (wall, cpu, warm) in zip(libraries, times, strict=True):
            clear_caches(library)
            started, started_cpu = time.perf_counter(), time.process_time()
            read_all(library, text)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            started = time.perf_counter()
            read_all(library, text)
            warm.append(time.perf_counter() - started)
    return [(min(wall), min(cpu), min(warm)) for wall, cpu, warm in times]


def canonical_share(text: str) -> tuple[int, int]:
    """How many printed rules are their own canonical form, out of how many."""
    same = total = 0
    for table in aioiptables.parse.parse_save(text, Protocol.IPV4).values():
        for listing in table.chains.values():
            for spec, key in zip(listing.specs, listing.keys, strict=True):
                total += 1
                same += spec == key
    return same, total


def worker(library_name: str, path: str, text_file: str, runs: int) -> None:
    """Measure one library in this (fresh) interpreter; print its best figures as JSON."""
    if path:
        sys.path.insert(0, path)
    library = importlib.import_module(library_name)
    for sub in ("parse", "extensions"):
        importlib.import_module(f"{library_name}.{sub}")
    text = Path(text_file).read_text()
    print(json.dumps(measure([library], text, runs)[0]))


def measure_apart(labels: list[str], where: str, text: str, rounds: int) -> list[tuple[float, float, float]]:
    """Each library measured in interpreters of its own (one library's caches
    and heap slow the other's down), alternating, ``rounds`` times."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as handle:
        handle.write(text)
        handle.flush()
        best: list[list[float]] = [[math.inf] * 3 for _ in labels]
        for _ in range(rounds):
            for index, label in enumerate(labels):
                name = "aioiptables" if label == "current" else "aioiptables_baseline"
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        name,
                        where if name != "aioiptables" else "",
                        handle.name,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                figures = json.loads(done.stdout)
                best[index] = [min(a, b) for a, b in zip(best[index], figures, strict=True)]
    return [(wall, cpu, warm) for wall, cpu, warm in best]


def main() -> int:
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3], sys.argv[4], 3)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=["kube", "mixed"], default=["kube", "mixed"])
    parser.add_argument("--services", type=int, default=3000)
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--backends", nargs="+", default=["nft", "legacy"])
    parser.add_argument("--baseline", metavar="REV", help="also time the library of this git revision")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one cold parse")
    args = parser.parse_args()
    libraries: list[Any] = [aioiptables]
    labels = ["current"]
    where = ""
    if args.baseline:
        old = baseline(args.baseline)
        where = str(Path(old.__file__).parent.parent)
        libraries.insert(0, old)
        labels.insert(0, args.baseline)
    print(
        f"{'kind':6} {'backend':8} {'library':>8} {'lines':>7} {'rules':>7} {'cold lines/s':>13} "
        f"{'cpu lines/s':>12} {'warm lines/s':>13} {'already canonical':>18}"
    )
    for kind in args.kinds:
        if kind == "kube":
            payloads, sets = {"nat": kube_proxy_payload(args.services, args.endpoints)}, []
        else:
            payloads, sets = mixed_payload(args.copies)
        for backend in args.backends:
            text = saved(backend, payloads, sets)
            lines = text.count("\n")
            if len(libraries) > 1 and keys_of(libraries[0], text) != keys_of(libraries[1], text):
                print(f"{kind} {backend}: the keys differ from the baseline's", file=sys.stderr)
                return 1
            if args.profile:
                import cProfile
                import pstats

                clear_caches(aioiptables)
                profile = cProfile.Profile()
                profile.runcall(read_all, aioiptables, text)
                pstats.Stats(profile).sort_stats("tottime").print_stats(25)
            same, rules = canonical_share(text)
            if len(libraries) > 1:
                figures = measure_apart(labels, where, text, args.runs)
            else:
                figures = measure(libraries, text, args.runs)
            for label, (wall, cpu, warm) in zip(labels, figures, strict=True):
                print(
                    f"{kind:6} {backend:8} {label[:8]:>8} {lines:7d} {rules:7d} {lines / wall:13,.0f} "
                    f"{lines / cpu:12,.0f} {lines / warm:13,.0f} {same:>9d}/{rules:<8d}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
