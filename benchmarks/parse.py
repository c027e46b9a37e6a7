"""Parsing and canonicalizing a kube-proxy-sized table, as iptables-save prints it.

For each backend: a kube-proxy nat table (by default 3,000 services with 3
endpoints each: 33,007 rules, 45,000 lines) is loaded into a private namespace,
dumped with iptables-save, and then parsed with ``parse_save`` (tokenize every
line, canonicalize every rule) with cold caches, best of N runs, on one core.
It also checks that every rule iptables printed is already in canonical form.

    python benchmarks/parse.py [--services 3000] [--endpoints 3] [--runs 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _netns import private_netns, restore
from kube import kube_proxy_payload

from aioiptables import Protocol, parse
from aioiptables import extensions as ext


def clear_caches() -> None:
    """Forget every cached canonical form, so each run reads as if for the first time."""
    for cached in (parse._read, parse._group, ext.normalize_address, ext.normalize_protocol):
        cached.cache_clear()


def saved(backend: str, payload: str) -> str:
    with private_netns() as netns:
        restore(netns, f"iptables-{backend}", payload)
        done = subprocess.run(
            ["nsenter", f"--net=/run/netns/{netns}", "--", f"iptables-{backend}-save", "-t", "nat"],
            capture_output=True,
            text=True,
            check=True,
        )
    return done.stdout


def read_all(text: str) -> int:
    """Parse the save output and canonicalize every rule of every chain."""
    count = 0
    for table in parse.parse_save(text, Protocol.IPV4).values():
        for listing in table.chains.values():
            count += len(listing.keys)
    return count


def measure(text: str, runs: int) -> tuple[float, float, float]:
    """Best wall and CPU seconds of a cold parse, and the best warm wall seconds."""
    wall, cpu, warm = [], [], []
    for _ in range(runs):
        clear_caches()
        started, started_cpu = time.perf_counter(), time.process_time()
        read_all(text)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        started = time.perf_counter()
        read_all(text)
        warm.append(time.perf_counter() - started)
    return min(wall), min(cpu), min(warm)


def canonical_share(text: str) -> tuple[int, int]:
    """How many printed rules are their own canonical form, out of how many."""
    same = total = 0
    for table in parse.parse_save(text).values():
        for listing in table.chains.values():
            for spec, key in zip(listing.specs, listing.keys, strict=True):
                total += 1
                same += spec == key
    return same, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=3000)
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--backends", nargs="+", default=["nft", "legacy"])
    args = parser.parse_args()
    payload = kube_proxy_payload(args.services, args.endpoints)
    print(
        f"{'backend':8} {'lines':>7} {'rules':>7} {'cold lines/s':>13} {'cpu lines/s':>12} "
        f"{'warm lines/s':>13} {'already canonical':>18}"
    )
    for backend in args.backends:
        text = saved(backend, payload)
        lines = text.count("\n")
        wall, cpu, warm = measure(text, args.runs)
        same, rules = canonical_share(text)
        print(
            f"{backend:8} {lines:7d} {rules:7d} {lines / wall:13,.0f} {lines / cpu:12,.0f} "
            f"{lines / warm:13,.0f} {same:>9d}/{rules:<8d}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
