"""What a Controller keeping N rules holds in memory, on real iptables.

The rule set of benchmarks/reconcile.py (N rules over 20 chains in filter and
nat) is applied in a private namespace, then reconciled twice (the steady
state, with every memo warm). Measured with tracemalloc: the Python memory
the rule set, the controller and the library's memos hold afterwards, and
the peak during a steady-state reconcile; and the process's peak resident
set (inflated by tracemalloc's own bookkeeping). The memos are per process:
measure one backend and size per run for figures that do not depend on what
ran before.

    python benchmarks/memory.py [--sizes 5000 33000] [--backends nft legacy]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tracemalloc

import anyio
from _netns import private_netns
from reconcile import client, ruleset

from aioiptables import Controller


async def measure(backend: str, netns: str, size: int) -> dict[str, float]:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    controller = Controller(client(backend, netns))
    await controller.set(ruleset(size))
    await controller.reconcile()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    await controller.reconcile()
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return {"held_mb": held / 2**20, "reconcile_peak_mb": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 33000])
    parser.add_argument("--backends", nargs="+", default=["nft", "legacy"])
    args = parser.parse_args()
    for backend in args.backends:
        for size in args.sizes:
            with private_netns() as netns:
                found = anyio.run(measure, backend, netns, size)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{backend:7} {size:>6} rules: held {found['held_mb']:6.1f} MiB after two reconciles, "
                f"a steady-state reconcile peaks {found['reconcile_peak_mb']:6.1f} MiB above that; "
                f"process peak RSS so far {rss:6.1f} MiB",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
