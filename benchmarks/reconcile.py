"""Reconcile strategies side by side, on real iptables in private namespaces.

For each backend and each size, N rules over 20 chains (10 in filter, 10 in
nat, each jumped to from FORWARD or POSTROUTING) are kept by a Controller.
Measured in one run, each strategy on the same rules:

1. steady state (nothing changed): this library (a snapshot per table) vs the
   seed's way (one ``iptables -S`` per chain) vs per-rule ``iptables -C``
   (at sizes above --naive-max, measured on a sample of --naive-sample rules
   and scaled, and marked so) vs python-iptables (libiptc in-process,
   legacy only, ``iptc.easy.has_rule`` per rule, also sampled);
2. a cold-cache burst: 500 concurrent ``exists()`` across the 20 chains;
3. applying from empty (one atomic restore per table vs one ``-A`` per rule,
   the latter only up to --append-max rules) and repairing one chain flushed
   by someone else (reconcile vs re-appending that chain's rules one by one).

Prints a table, writes the figures as JSON, and draws reconcile wall time
against rule count (docs/benchmarks.png).

    python benchmarks/reconcile.py [--sizes 1000 5000 20000] [--backends nft legacy]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
from _netns import Stopwatch, private_netns

from aioiptables import Chain, Client, Controller, Protocol, Rule, RuleCache, RuleSet

CHAINS = 20


@dataclass
class Row:
    backend: str
    rules: int
    scenario: str
    strategy: str
    processes: float
    seconds: float
    note: str = ""


def ruleset(count: int) -> RuleSet:
    items: list[Rule | Chain] = []
    tables = [("filter", "FORWARD", "BF"), ("nat", "POSTROUTING", "BN")]
    for c in range(CHAINS):
        table, builtin, prefix = tables[c % 2]
        chain = f"{prefix}-{c:02d}"
        items.append(Chain.ipv4(table, chain))
        items.append(Rule.ipv4(table, builtin, "-m", "comment", "--comment", f"jump {c}", "-j", chain))
    for i in range(count - 2 * (CHAINS // 2)):
        c = i % CHAINS
        table, _, prefix = tables[c % 2]
        target = "ACCEPT" if table == "filter" else "RETURN"
        port = 1024 + i // 250 % 60000
        items.append(
            Rule.ipv4(
                table,
                f"{prefix}-{c:02d}",
                "-s",
                f"10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250}/32",
                "-p",
                "tcp",
                "--dport",
                str(port),
                "-j",
                target,
            )
        )
    return RuleSet(append=items)


def client(backend: str, netns: str) -> Client:
    return Client(Protocol.IPV4, backend=backend, netns=netns, wait=30, timeout=120)  # type: ignore[arg-type]


def rule_count(rules: RuleSet) -> int:
    return sum(isinstance(item, Rule) for item in rules.append)


async def steady(backend: str, netns: str, rules: RuleSet, args: argparse.Namespace) -> list[Row]:
    count = rule_count(rules)
    out: list[Row] = []
    for strategy, snapshot_from in (("aioiptables (snapshot per table)", 2), ("per-chain -S (seed)", 0)):
        controller = Controller(client(backend, netns), snapshot_from=snapshot_from)
        controller._ruleset = rules  # already in place: measure the reconcile alone
        with Stopwatch() as watch:
            await controller.reconcile()
        assert controller.last_stats["writes"] == 0, strategy
        out.append(Row(backend, count, "steady", strategy, controller.calls, watch.seconds))
    plain = [r for r in rules.append if isinstance(r, Rule)]
    sample = plain if count <= args.naive_max else random.Random(1).sample(plain, args.naive_sample)
    checker = client(backend, netns)
    with Stopwatch() as watch:
        for rule in sample:
            assert await checker.exists(rule.table, rule.chain, *rule.spec), rule
    scale = len(plain) / len(sample)
    note = "" if scale == 1 else f"measured on {len(sample)} rules, scaled x{scale:.0f}"
    out.append(
        Row(
            backend,
            count,
            "steady",
            "per-rule -C (naive)",
            checker.calls * scale,
            watch.seconds * scale,
            note,
        )
    )
    if backend == "legacy" and not args.skip_iptc:
        out.append(iptc_row(netns, plain, count, args))
    return out


IPTC_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import iptc
    rules = json.load(sys.stdin)
    started = time.perf_counter()
    for table, chain, src, port, target in rules:
        spec = {"src": src, "protocol": "tcp", "tcp": {"dport": port}, "target": target}
        assert iptc.easy.has_rule(table, chain, spec), (table, chain, src)
    print(time.perf_counter() - started)
    """
)


def iptc_row(netns: str, plain: list[Rule], count: int, args: argparse.Namespace) -> Row:
    """python-iptables checking the rules in-process (libiptc: legacy only, no processes)."""
    chosen = [r for r in plain if r.chain.startswith(("BF", "BN"))]
    sample = chosen if len(chosen) <= args.naive_max else random.Random(2).sample(chosen, args.naive_sample)
    payload = [(r.table, r.chain, r.spec[1], r.spec[5], r.spec[7]) for r in sample]
    env = {**os.environ, "XTABLES_LIBDIR": "/usr/lib/x86_64-linux-gnu/xtables"}
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", sys.executable, "-c", IPTC_SCRIPT],
        input=json.dumps(payload), capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    scale = len(chosen) / len(sample)
    note = "in-process, no iptables processes" + (
        "" if scale == 1 else f"; {len(sample)} rules, scaled x{scale:.0f}"
    )
    return Row("legacy", count, "steady", "python-iptables has_rule", 0, float(done.stdout) * scale, note)


async def burst(backend: str, netns: str, rules: RuleSet) -> Row:
    plain = [r for r in rules.append if isinstance(r, Rule) and r.chain.startswith(("BF", "BN"))]
    asked = random.Random(3).sample(plain, 500)
    checker = client(backend, netns)
    cache = RuleCache(checker)

    async def ask(rule: Rule) -> None:
        assert await cache.exists(rule)

    with Stopwatch() as watch:
        async with anyio.create_task_group() as tg:
            for rule in asked:
                tg.start_soon(ask, rule)
    return Row(backend, rule_count(rules), "burst", "500 concurrent exists()", checker.calls, watch.seconds)


async def apply_and_repair(backend: str, rules: RuleSet, args: argparse.Namespace) -> list[Row]:
    count = rule_count(rules)
    out: list[Row] = []
    with private_netns() as netns:
        controller = Controller(client(backend, netns))
        with Stopwatch() as watch:
            await controller.set(rules)
        out.append(
            Row(
                backend,
                count,
                "apply",
                "aioiptables (one restore per table)",
                controller.calls,
                watch.seconds,
            )
        )
        out += await steady(backend, netns, rules, args)
        out.append(await burst(backend, netns, rules))
        flushed = "BF-00"
        await tamper(netns, backend, "-t", "filter", "-F", flushed)
        before = controller.calls
        with Stopwatch() as watch:
            await controller.reconcile()
        out.append(
            Row(backend, count, "repair", "aioiptables reconcile", controller.calls - before, watch.seconds)
        )
        await tamper(netns, backend, "-t", "filter", "-F", flushed)
        appender = client(backend, netns)
        chain_rules = [r for r in rules.append if isinstance(r, Rule) and r.chain == flushed]
        with Stopwatch() as watch:
            for rule in chain_rules:
                await appender.append(rule.table, rule.chain, *rule.spec)
        out.append(Row(backend, count, "repair", "per-rule -A of the chain", appender.calls, watch.seconds))
    if count <= args.append_max:
        with private_netns() as netns:
            appender = client(backend, netns)
            with Stopwatch() as watch:
                for item in rules.append:
                    if isinstance(item, Chain):
                        await appender.new_chain(item.table, item.name)
                    else:
                        await appender.append(item.table, item.chain, *item.spec)
            out.append(Row(backend, count, "apply", "per-rule -A (naive)", appender.calls, watch.seconds))
    return out


async def tamper(netns: str, backend: str, *args: str) -> None:
    await anyio.run_process(["nsenter", f"--net=/run/netns/{netns}", "--", f"iptables-{backend}", *args])


async def split(backend: str, rules: RuleSet, repeats: int) -> dict[str, float]:
    """A steady-state reconcile by one controller, again and again (the same
    rules, nothing changed): where its wall time goes, per reconcile, in ms.

    - ``save``: waiting for the iptables-save processes;
    - ``parse``: parsing their output, splitting and canonicalizing the lines;
    - ``rest``: everything else (the expected keys, alignment, planning).
    """
    import time

    import aioiptables.cache
    from aioiptables import parse

    spent = {"save": 0.0, "parse": 0.0}

    def timed(kind: str, func: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[kind] += time.perf_counter() - started

        return wrapper

    class TimedKeys:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __get__(self, instance: Any, owner: Any = None) -> Any:
            if instance is None or "keys" in instance.__dict__:
                return self.inner.__get__(instance, owner)
            started = time.perf_counter()
            try:
                return self.inner.__get__(instance, owner)
            finally:
                spent["parse"] += time.perf_counter() - started

    saved_parse = aioiptables.cache.parse_save
    saved_chain = parse.TableSnapshot.chain
    saved_keys = parse.ChainListing.__dict__["keys"]
    aioiptables.cache.parse_save = timed("parse", saved_parse)  # type: ignore[assignment]
    parse.TableSnapshot.chain = timed("parse", saved_chain)  # type: ignore[method-assign]
    parse.ChainListing.keys = TimedKeys(saved_keys)  # type: ignore[assignment,method-assign]
    try:
        with private_netns() as netns:
            controller = Controller(client(backend, netns))
            await controller.set(rules)
            real_save = controller._clients[Protocol.IPV4].save

            async def save(table: str) -> str:
                started = time.perf_counter()
                try:
                    return await real_save(table)
                finally:
                    spent["save"] += time.perf_counter() - started

            controller._clients[Protocol.IPV4].save = save  # type: ignore[method-assign]
            await controller.reconcile()  # the first read after writing
            spent["save"] = spent["parse"] = 0.0
            with Stopwatch() as watch:
                for _ in range(repeats):
                    await controller.reconcile()
                    assert controller.last_stats["writes"] == 0
    finally:
        aioiptables.cache.parse_save = saved_parse
        parse.TableSnapshot.chain = saved_chain  # type: ignore[method-assign]
        parse.ChainListing.keys = saved_keys  # type: ignore[method-assign]
    each = {kind: seconds * 1000 / repeats for kind, seconds in spent.items()}
    each["total"] = watch.seconds * 1000 / repeats
    each["rest"] = each["total"] - each["save"] - each["parse"]
    return each


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, backend in zip(axes, ("nft", "legacy"), strict=True):
        steady_rows = [r for r in rows if r.scenario == "steady" and r.backend == backend]
        for strategy in dict.fromkeys(r.strategy for r in steady_rows):
            points = sorted((r.rules, r.seconds) for r in steady_rows if r.strategy == strategy)
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=strategy)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(f"steady-state reconcile, iptables-{backend}")
        axis.set_xlabel("rules kept (20 chains, filter and nat)")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("wall time (s)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--backends", nargs="+", default=["nft", "legacy"])
    parser.add_argument("--naive-max", type=int, default=5000, help="check every rule up to this size")
    parser.add_argument("--naive-sample", type=int, default=1000)
    parser.add_argument("--append-max", type=int, default=5000)
    parser.add_argument("--skip-iptc", action="store_true")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/benchmarks.png"))
    parser.add_argument(
        "--split",
        type=int,
        metavar="REPEATS",
        help="only time REPEATS steady-state reconciles by one controller, split into save/parse/rest",
    )
    args = parser.parse_args()
    if args.split:
        print(
            "| backend | rules | reconcile | iptables-save | parsing | the rest |\n|---|---|---|---|---|---|"
        )
        for backend in args.backends:
            for size in args.sizes:
                each = anyio.run(split, backend, ruleset(size), args.split)
                print(
                    f"| {backend} | {size:,} | {each['total']:.1f} ms | {each['save']:.1f} ms | "
                    f"{each['parse']:.1f} ms | {each['rest']:.1f} ms |"
                )
        return 0
    rows: list[Row] = []
    for backend in args.backends:
        for size in args.sizes:
            rows += anyio.run(apply_and_repair, backend, ruleset(size), args)
            print(f"done: {backend} {size}", file=sys.stderr)
    print(f"| backend | rules | scenario | strategy | processes | wall time | note |\n|{'---|' * 7}")
    for r in rows:
        print(f"| {r.backend} | {r.rules:,} | {r.scenario} | {r.strategy} | {r.processes:,.0f} | "
              f"{r.seconds * 1000:,.1f} ms | {r.note} |")  # fmt: skip
    args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
