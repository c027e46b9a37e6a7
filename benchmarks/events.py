"""Repairs woken by events, side by side with canary polling and plain resync.

A Controller keeps 20 rules in a user chain jumped to from INPUT, on real
iptables in a private namespace. Someone flushes the filter table
(``iptables -F``: every chain, the canary's too), again and again; measured
for each way of noticing, in one run:

- events (iptables-nft only): nf_tables' announcement wakes the controller;
- canary polling every second (``canary_interval=1``), both backends;
- plain resync every ``--resync`` seconds (5 by default), both backends.

For each: the time from the flush to the chain read back whole (median, 99th
percentile, worst) over --rounds tamperings, and the processes an idle
controller spends per hour (counted over --idle seconds and scaled; with
events, only the safety-net resync every 15 minutes).

    python benchmarks/events.py [--rounds 100] [--idle 20] [--backends nft legacy]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio
from _netns import private_netns

from aioiptables import Chain, Client, Controller, Protocol, Rule, RuleSet

V4 = Protocol.IPV4
RULES = RuleSet(
    append=[
        Chain.ipv4("filter", "BENCH-EV"),
        *(Rule.ipv4("filter", "BENCH-EV", "-s", f"10.8.{i}.0/24", "-j", "ACCEPT") for i in range(20)),
        Rule.ipv4("filter", "INPUT", "-j", "BENCH-EV"),
    ]
)
WHOLE = 20


def iptables(netns: str, backend: str, *args: str) -> str:
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", f"iptables-{backend}", "-w", "5", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


def whole(netns: str, backend: str) -> bool:
    listing = iptables(netns, backend, "-S", "BENCH-EV")
    return sum(1 for line in listing.splitlines() if line.startswith("-A")) == WHOLE


async def measure(
    netns: str, backend: str, mode: str, rounds: int, idle: float, resync: float
) -> dict[str, object]:
    client = Client(V4, backend=backend, netns=netns)  # type: ignore[arg-type]
    kwargs: dict[str, object] = {"resync": resync, "events": mode == "events"}
    if mode == "canary":
        kwargs.update(canary="BENCH-CANARY", canary_interval=1.0)
    controller = Controller(client, **kwargs)  # type: ignore[arg-type]
    await controller.set(RULES)
    delays: list[float] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(controller.run)
        await anyio.sleep(0.5)
        calls = controller.calls
        await anyio.sleep(idle)
        per_hour = (controller.calls - calls) * 3600 / idle
        if mode == "events":
            per_hour += 3600 / controller.safety_resync * 2  # the safety net: one read per table, 2 processes
        for _ in range(rounds):
            await anyio.to_thread.run_sync(iptables, netns, backend, "-F")
            flushed = time.perf_counter()
            while not await anyio.to_thread.run_sync(whole, netns, backend):
                await anyio.sleep(0.001)
            delays.append(time.perf_counter() - flushed)
        tg.cancel_scope.cancel()
    delays.sort()
    return {
        "backend": backend,
        "mode": mode,
        "rounds": rounds,
        "median_ms": round(statistics.median(delays) * 1000, 1),
        "p99_ms": round(delays[min(len(delays) - 1, int(len(delays) * 0.99))] * 1000, 1),
        "worst_ms": round(delays[-1] * 1000, 1),
        "idle_processes_per_hour": round(per_hour),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--resync", type=float, default=5.0)
    parser.add_argument("--backends", nargs="+", default=["nft", "legacy"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for backend in args.backends:
        for mode in ("events", "canary", "resync") if backend == "nft" else ("canary", "resync"):
            rounds = args.rounds if mode != "resync" else max(5, args.rounds // 10)
            with private_netns() as netns:
                result = anyio.run(measure, netns, backend, mode, rounds, args.idle, args.resync)
            results.append(result)
            print(
                f"{backend:7} {mode:7} repair after -F: median {result['median_ms']:>7} ms, "
                f"p99 {result['p99_ms']:>7} ms, worst {result['worst_ms']:>7} ms over {rounds} rounds; "
                f"idle: {result['idle_processes_per_hour']} processes/hour",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
