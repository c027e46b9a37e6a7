"""Which read of a table costs least: one ``iptables-save``, or one
``iptables -S CHAIN`` per chain a reconcile needs.

A pure cost model, from what iptables 1.8.9 costs as measured by
``benchmarks/reads.py`` (figures in docs/benchmarks.md, "Reads that scale"):

- ``iptables-nft-save -t T`` reads the whole table, and its time grows with
  the square of the table's chain count: about 3 ms, plus 13 us per rule,
  plus 16 ns per chain squared (10,000 chains: 2 s whatever the rules). A
  kube-proxy nat table of 33,000 rules in 9,000 chains takes a second.
- ``iptables-nft -S CHAIN`` reads that chain alone: about 3.5 ms plus 15 us
  per rule of the chain, whatever else the table holds.
- iptables-legacy fetches the whole table from the kernel for any command:
  ``-S CHAIN`` costs half to all of a save, so two listings never beat one
  save.

The cost counted is the work a read makes the machine do (the processes'
time, summed), not how soon parallel listings could finish on idle cores:
a node agent shares its node, and processes are this library's currency.
Listings win where they read much less than the table: a few chains of
ours beside a large foreign table, or a table of many chains on nf_tables.
The ratios, not the absolute figures, decide, and they hold across machines
of different speeds.

>>> size = TableSize(rules=33_000, chains=9_000)
>>> cheapest_read("nft", {"KILO-NAT": 3, "POSTROUTING": 2}, size)
'list'
>>> cheapest_read("legacy", {"KILO-NAT": 3, "POSTROUTING": 2}, size)
'save'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["ReadCosts", "TableSize", "cheapest_read", "COSTS", "Read"]

Read = Literal["save", "list"]


@dataclass(frozen=True)
class TableSize:
    """A table as its last save showed it."""

    rules: int
    chains: int


@dataclass(frozen=True)
class ReadCosts:
    """What reads cost on one backend, in seconds."""

    #: Starting any iptables process and reading the table's chains.
    process: float
    #: iptables-save, per rule of the table.
    save_per_rule: float
    #: iptables-save, per chain of the table, squared.
    save_per_chain_squared: float
    #: ``-S CHAIN``, per rule of that chain.
    list_per_rule: float
    #: ``-S CHAIN`` as a share of a whole save, where listing a chain reads
    #: the whole table (legacy); 0 where it reads the chain alone (nft).
    list_share_of_save: float

    def save(self, table: TableSize) -> float:
        """What one iptables-save of the table costs."""
        return (
            self.process
            + self.save_per_rule * table.rules
            + self.save_per_chain_squared * table.chains * table.chains
        )

    def listing(self, rules: int, table: TableSize) -> float:
        """What one ``-S CHAIN`` of a chain of ``rules`` rules costs."""
        if self.list_share_of_save:
            return self.list_share_of_save * self.save(table)
        return self.process + self.list_per_rule * rules


#: Per backend, as measured on iptables 1.8.9 (benchmarks/reads.py).
COSTS: dict[str, ReadCosts] = {
    "nft": ReadCosts(
        process=3.5e-3,
        save_per_rule=13e-6,
        save_per_chain_squared=16e-9,
        list_per_rule=15e-6,
        list_share_of_save=0.0,
    ),
    "legacy": ReadCosts(
        process=5e-3,
        save_per_rule=3.3e-6,
        save_per_chain_squared=0.0,
        list_per_rule=0.0,
        list_share_of_save=0.6,
    ),
}


def cheapest_read(backend: str, needed: Mapping[str, int], table: TableSize | None) -> Read:
    """``"save"`` or ``"list"``: how to read the chains ``needed`` (each with
    the number of rules it held when last read; 0 if never read) of a table
    last seen at ``table`` (None when never saved).

    A table never saved is saved when two chains or more are needed (one
    process, and it tells the table's size); a single chain is listed.
    Either way the processes stay within the number of chains needed.
    """
    if table is None or backend not in COSTS:
        return "save" if len(needed) >= 2 else "list"
    costs = COSTS[backend]
    listings = sum(costs.listing(rules, table) for rules in needed.values())
    return "list" if listings < costs.save(table) else "save"
