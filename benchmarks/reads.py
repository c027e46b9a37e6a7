"""Reads that scale: what one ``iptables-save`` of a table and one
``iptables -S CHAIN`` cost, by the table's size, on real iptables.

Two parts, each on both backends, in private namespaces:

1. the grid: a filter table of C chains and N rules (plus a small chain of
   ours), for each (C, N): the save, a listing of the small chain and a
   listing of a large one, each the median of --repeats runs; next to them
   what ``aioiptables.reads`` predicts, and whether the read it picks for
   "our two small chains" was the cheaper one measured;
2. a controller keeping a Kilo-like rule set (two chains in nat) beside a
   kube-proxy nat table of --services services (33,000 rules by default):
   a steady-state reconcile with the cost model (the default) and with one
   save per table (``snapshot_from=2``), side by side, alternating.

    python benchmarks/reads.py [--backends nft legacy] [--repeats 3] [--services 3000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from _netns import Stopwatch, private_netns, restore
from kube import kube_proxy_payload

from aioiptables import Chain, Client, Controller, Protocol, Rule, RuleSet
from aioiptables.reads import COSTS, TableSize, cheapest_read

GRID = [(10, 1_000), (10, 10_000), (10, 30_000), (1_000, 10_000), (4_000, 10_000), (10_000, 10_000)]


def grid_payload(chains: int, rules: int) -> str:
    lines = ["*filter", *(f":C{c:05d} - [0:0]" for c in range(chains))]
    lines += [":MINE - [0:0]", ":MINE2 - [0:0]", "-A MINE -j RETURN", "-A MINE2 -j RETURN"]
    lines += [
        f"-A C{i % chains:05d} -s 10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250}/32 "
        f"-p tcp -m tcp --dport {1024 + i // 250} -j ACCEPT"
        for i in range(rules)
    ]
    return "\n".join([*lines, "COMMIT", ""])


def timed(netns: str, argv: list[str], repeats: int) -> float:
    """Median wall time of a command in the namespace, in seconds."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "--", *argv], check=True, capture_output=True)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def grid(backend: str, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for chains, rules in GRID:
        with private_netns() as netns:
            restore(netns, f"iptables-{backend}", grid_payload(chains, rules))
            iptables = [f"iptables-{backend}", "-w", "-t", "filter", "-S"]
            save = timed(netns, [f"iptables-{backend}-save", "-t", "filter"], repeats)
            small = timed(netns, [*iptables, "MINE"], repeats)
            large = timed(netns, [*iptables, "C00000"], repeats)
        size = TableSize(rules + 2, chains + 2)
        costs = COSTS[backend]
        picked = cheapest_read(backend, {"MINE": 1, "MINE2": 1}, size)
        cheaper = "list" if 2 * small < save else "save"
        rows.append(
            {
                "backend": backend,
                "chains": chains,
                "rules": rules,
                "save_ms": save * 1000,
                "list_small_ms": small * 1000,
                "list_large_ms": large * 1000,
                "large_rules": rules // chains,
                "model_save_ms": costs.save(size) * 1000,
                "model_list_small_ms": costs.listing(1, size) * 1000,
                "picked": picked,
                "cheaper": cheaper,
            }
        )
        print(f"done: {backend} {chains} chains {rules} rules", file=sys.stderr)
    return rows


def kilo_beside_kube(proto: Protocol) -> RuleSet:
    return RuleSet(
        append=[
            Chain("nat", "KILO-NAT", proto),
            Rule("nat", "KILO-NAT", ("-d", "10.4.0.0/16", "-j", "RETURN"), proto),
            Rule("nat", "KILO-NAT", ("-s", "10.4.0.0/16", "-j", "MASQUERADE"), proto),
            Rule("nat", "POSTROUTING", ("-s", "10.4.0.0/16", "-j", "KILO-NAT"), proto),
        ]
    )


async def beside_kube(backend: str, services: int, repeats: int) -> list[dict[str, Any]]:
    rules = kilo_beside_kube(Protocol.IPV4)
    with private_netns() as netns:
        restore(netns, f"iptables-{backend}", kube_proxy_payload(services, 3))
        controllers = {
            "cost model (default)": Controller(
                Client(Protocol.IPV4, backend=backend, netns=netns, timeout=120)  # type: ignore[arg-type]
            ),
            "one save per table": Controller(
                Client(Protocol.IPV4, backend=backend, netns=netns, timeout=120),  # type: ignore[arg-type]
                snapshot_from=2,
            ),
        }
        for controller in controllers.values():
            await controller.set(rules)
            await controller.reconcile()
        times: dict[str, list[float]] = {name: [] for name in controllers}
        processes: dict[str, float] = {}
        for _ in range(repeats):
            for name, controller in controllers.items():
                with Stopwatch() as watch:
                    await controller.reconcile()
                assert controller.last_stats["writes"] == 0
                times[name].append(watch.seconds)
                processes[name] = controller.last_stats["processes"]
    return [
        {
            "backend": backend,
            "services": services,
            "strategy": name,
            "processes": processes[name],
            "median_ms": statistics.median(runs) * 1000,
        }
        for name, runs in times.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["nft", "legacy"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--services", type=int, default=3000)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/reads.json"))
    args = parser.parse_args()
    rows = [row for backend in args.backends for row in grid(backend, args.repeats)]
    print("| backend | chains | rules | save | -S small chain | -S large chain (rules) "
          "| model: save / -S small | picks (2 small chains) | cheaper measured |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['chains']:,} | {r['rules']:,} | {r['save_ms']:.1f} ms "
            f"| {r['list_small_ms']:.1f} ms | {r['list_large_ms']:.1f} ms ({r['large_rules']:,}) "
            f"| {r['model_save_ms']:.1f} / {r['model_list_small_ms']:.1f} ms | {r['picked']} | {r['cheaper']} |"
        )
    kube = [row for backend in args.backends for row in anyio.run(beside_kube, backend, args.services, 5)]
    print("\n| backend | kube-proxy services | strategy | processes | steady-state reconcile |")
    print("|---|---|---|---|---|")
    for k in kube:
        print(
            f"| {k['backend']} | {k['services']:,} | {k['strategy']} | {k['processes']:.0f} "
            f"| {k['median_ms']:.1f} ms |"
        )
    args.json.write_text(json.dumps({"grid": rows, "beside_kube": kube}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
