"""The read a reconcile picks for a table (aioiptables.reads), by the sizes it last read."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from aioiptables.reads import COSTS, TableSize, cheapest_read


@dataclass(frozen=True)
class Case:
    id: str
    backend: str
    needed: dict[str, int]
    table: TableSize | None
    read: str


KILO = {"KILO-NAT": 3, "POSTROUTING": 2}
OURS_20K = {f"BN-{c:02d}": 1_000 for c in range(10)} | {"POSTROUTING": 10}

CASES = [
    Case("a table never read, two chains needed: one save tells its size", "nft", KILO, None, "save"),
    Case("a table never read, one chain needed: one listing", "nft", {"KILO-NAT": 3}, None, "list"),
    Case("legacy, never read: the same rule", "legacy", KILO, None, "save"),
    Case(
        "nft, a few chains of ours in a small table: one save",
        "nft",
        KILO,
        TableSize(rules=40, chains=8),
        "save",
    ),
    Case(
        "nft, a few chains of ours beside kube-proxy's 33,000 rules: listings",
        "nft",
        KILO,
        TableSize(rules=33_000, chains=9_000),
        "list",
    ),
    Case(
        "nft, many chains but few rules (save grows with chains squared): listings",
        "nft",
        KILO,
        TableSize(rules=2_000, chains=2_000),
        "list",
    ),
    Case(
        "nft, our 10,000 rules are the whole table: one save reads no more than listings",
        "nft",
        OURS_20K,
        TableSize(rules=10_010, chains=15),
        "save",
    ),
    Case(
        "legacy, beside kube-proxy's 33,000 rules: a listing reads the whole table anyway",
        "legacy",
        KILO,
        TableSize(rules=33_000, chains=9_000),
        "save",
    ),
    Case(
        "legacy, a single chain: one listing costs less than a save",
        "legacy",
        {"KILO-NAT": 3},
        TableSize(rules=33_000, chains=9_000),
        "list",
    ),
    Case("an unknown backend: by count alone", "other", KILO, TableSize(33_000, 9_000), "save"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_cheapest_read(case: Case) -> None:
    assert cheapest_read(case.backend, case.needed, case.table) == case.read


@pytest.mark.parametrize("backend", sorted(COSTS))
def test_a_save_costs_more_as_the_table_grows(backend: str) -> None:
    costs = COSTS[backend]
    small, more_rules, more_chains = TableSize(100, 10), TableSize(10_000, 10), TableSize(100, 5_000)
    assert costs.save(small) < costs.save(more_rules)
    assert costs.save(small) <= costs.save(more_chains)


def test_an_nft_listing_reads_its_chain_alone() -> None:
    costs = COSTS["nft"]
    assert costs.listing(5, TableSize(100, 10)) == costs.listing(5, TableSize(60_000, 16_000))
