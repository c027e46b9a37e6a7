"""Reads that scale: how a Controller reads a table it shares with a large
foreign one, on real iptables (nft and legacy) and on the fake.

On nf_tables a listing reads its chain alone while a save reads the whole
table (its time growing with the square of the chain count), so beside a
large foreign table the controller lists its own chains; on legacy any
command reads the whole table, so it keeps one save.
"""

from __future__ import annotations

import pytest

from aioiptables import Chain, Protocol, Rule, RuleSet
from conftest import World, controller_for, net

pytestmark = pytest.mark.anyio

FOREIGN_CHAINS = 2_000


def ours(proto: Protocol) -> RuleSet:
    """Two chains of nat: MINE, and POSTROUTING jumping to it."""
    return RuleSet(
        append=[
            Chain("nat", "MINE", proto),
            Rule("nat", "MINE", ("-s", net(proto), "-j", "RETURN"), proto),
            Rule("nat", "MINE", ("-d", net(proto), "-j", "RETURN"), proto),
            Rule("nat", "POSTROUTING", ("-j", "MINE"), proto),
        ]
    )


async def grow_foreign(world: World, proto: Protocol) -> None:
    """A kube-proxy-like crowd in nat: many chains of one rule each."""
    lines = ["*nat", *(f":F-{i:05d} - [0:0]" for i in range(FOREIGN_CHAINS))]
    lines += [f"-A F-{i:05d} -j RETURN" for i in range(FOREIGN_CHAINS)]
    await world.client(proto).restore("\n".join([*lines, "COMMIT", ""]))


def reads(world: World) -> int:
    """Processes per steady-state read of nat beside the crowd."""
    return 2 if world.kind in ("fake", "nft") else 1  # fake: as nft


async def test_beside_a_large_foreign_table_nft_lists_its_chains_and_legacy_saves(
    world: World, proto: Protocol
) -> None:
    await grow_foreign(world, proto)
    controller = controller_for(world, proto)
    await controller.set(ours(proto))
    assert controller.last_stats["processes"] == 1 + 1, "never read: one save tells the size, one write"
    await controller.reconcile()
    assert controller.last_stats["processes"] == reads(world)
    await world.iptables(proto, "-t", "nat", "-F", "MINE")
    await controller.reconcile()
    assert controller.last_stats["processes"] == reads(world) + 1, "read, then one write"
    assert await world.rules(proto, "nat", "MINE") == [
        f"-A MINE -s {net(proto)} -j RETURN",
        f"-A MINE -d {net(proto)} -j RETURN",
    ]
    await controller.reconcile()
    assert controller.last_stats == {**controller.last_stats, "processes": reads(world), "writes": 0}


async def test_a_table_that_grows_past_the_crossover_is_listed_from_the_next_read(
    world: World, proto: Protocol
) -> None:
    controller = controller_for(world, proto)
    await controller.set(ours(proto))
    await controller.reconcile()
    assert controller.last_stats["processes"] == 1, "small: one save"
    await grow_foreign(world, proto)
    await controller.reconcile()
    assert controller.last_stats["processes"] == 1, "this save sees the table grown"
    await controller.reconcile()
    assert controller.last_stats["processes"] == reads(world)


async def test_a_fixed_snapshot_from_overrides_the_model(world: World, proto: Protocol) -> None:
    await grow_foreign(world, proto)
    controller = controller_for(world, proto, snapshot_from=2)
    await controller.set(ours(proto))
    await controller.reconcile()
    assert controller.last_stats["processes"] == 1
