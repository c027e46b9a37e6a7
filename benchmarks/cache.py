"""Existence checks: per-rule ``iptables -C`` against the lazy RuleCache.

For each backend, N rules spread over C chains are loaded into a private
namespace; then every rule is checked three ways, side by side in one run:

- naive: one ``iptables -C`` process per rule (``Client.exists``);
- cache, sequential: ``RuleCache.exists`` one rule after another;
- cache, concurrent: all checks at once on a cold cache (in-flight dedup).

Prints processes spawned and wall time for each, and the ratios.

    python benchmarks/cache.py [--rules 1000] [--chains 5] [--backends nft legacy]
"""

from __future__ import annotations

import argparse
import sys

import anyio
from _netns import Stopwatch, private_netns, restore

from aioiptables import Client, Protocol, Rule, RuleCache


def make_rules(count: int, chains: int) -> list[Rule]:
    return [
        Rule.ipv4(
            "filter", f"BENCH-{i % chains}", "-s", f"10.{i // 250 % 250}.{i % 250}.0/24", "-j", "ACCEPT"
        )
        for i in range(count)
    ]


def payload(rules: list[Rule], chains: int) -> str:
    lines = ["*filter", *(f":BENCH-{c} - [0:0]" for c in range(chains))]
    lines += [f"-A {r.chain} {' '.join(r.spec)}" for r in rules]
    return "\n".join([*lines, "COMMIT", ""])


async def measure(backend: str, count: int, chains: int) -> dict[str, tuple[int, float]]:
    rules = make_rules(count, chains)
    results: dict[str, tuple[int, float]] = {}
    with private_netns() as netns:
        restore(netns, f"iptables-{backend}", payload(rules, chains))

        client = Client(Protocol.IPV4, backend=backend, netns=netns)  # type: ignore[arg-type]
        with Stopwatch() as watch:
            for rule in rules:
                assert await client.exists(rule.table, rule.chain, *rule.spec)
        results["naive -C per rule"] = (client.calls, watch.seconds)

        client = Client(Protocol.IPV4, backend=backend, netns=netns)  # type: ignore[arg-type]
        cache = RuleCache(client)
        with Stopwatch() as watch:
            for rule in rules:
                assert await cache.exists(rule)
        results["cache, sequential"] = (client.calls, watch.seconds)

        client = Client(Protocol.IPV4, backend=backend, netns=netns)  # type: ignore[arg-type]
        cache = RuleCache(client)

        async def check(rule: Rule) -> None:
            assert await cache.exists(rule)

        with Stopwatch() as watch:
            async with anyio.create_task_group() as tg:
                for rule in rules:
                    tg.start_soon(check, rule)
        results["cache, concurrent"] = (client.calls, watch.seconds)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["nft", "legacy"])
    args = parser.parse_args()
    print(f"{args.rules} rules over {args.chains} chains, every rule checked once\n")
    print(f"{'backend':8} {'strategy':22} {'processes':>9} {'wall ms':>9} {'x fewer':>8} {'x faster':>8}")
    for backend in args.backends:
        results = anyio.run(measure, backend, args.rules, args.chains)
        base_calls, base_time = results["naive -C per rule"]
        for name, (calls, seconds) in results.items():
            print(
                f"{backend:8} {name:22} {calls:9d} {seconds * 1000:9.1f} "
                f"{base_calls / calls:8.0f} {base_time / seconds:8.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
