"""Desired rules versus observed chains: the changes, as restore payloads.

A pure function of values. :func:`plan` takes the rule set to keep, the chains
as listed, and what is no longer wanted, and returns one :class:`TablePlan`
per (protocol, table) that needs a change. Each plan renders as one
``iptables-restore --noflush`` payload, so a table's changes land together or
not at all.

The ordering rules:

- order matters within a chain: the append rules of a chain must appear in the
  chain in the order given (other rules may sit between them). From the first
  that is missing or out of order, it and every later append rule *of the same
  chain* are deleted and appended again; other chains are not touched;
- prepend rules of a chain keep their order too; a missing one is inserted
  just after the prepend rule before it, or at position 1 for the first;
- a chain in the rule set that is missing is created; a chain no longer wanted
  is flushed and deleted after the rules that may jump to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .model import Chain, Protocol, Rule, RuleSet
from .parse import ChainListing, RuleKey, TableSnapshot, rule_key
from .syntax import join_tokens

__all__ = [
    "Op",
    "TablePlan",
    "plan",
    "chains_to_read",
    "default_key",
    "decorate",
    "leftovers",
    "owner_tag",
    "chain_tag",
    "CANARY_COMMENT",
    "ChainKey",
    "KeyFunction",
]

ChainKey = tuple[Protocol, str, str]
TableKey = tuple[Protocol, str]
KeyFunction = Callable[[Rule], RuleKey]


@dataclass(frozen=True)
class Op:
    """One change to a chain, as one line of a restore payload."""

    kind: Literal["create", "delete", "insert", "append", "flush", "remove"]
    chain: str
    spec: tuple[str, ...] = ()
    position: int = 0

    def line(self) -> str:
        """The iptables-restore line for this change."""
        spec = f" {join_tokens(self.spec)}" if self.spec else ""
        if self.kind == "create":
            return f":{self.chain} - [0:0]"
        if self.kind == "insert":
            return f"-I {self.chain} {self.position}{spec}"
        flag = {"delete": "-D", "append": "-A", "flush": "-F", "remove": "-X"}[self.kind]
        return f"{flag} {self.chain}{spec}"


@dataclass(frozen=True)
class TablePlan:
    """The changes one table needs, applied as one atomic restore payload."""

    proto: Protocol
    table: str
    ops: tuple[Op, ...]
    #: How each chain touched will read once the payload has landed.
    after: Mapping[str, ChainListing] = field(default_factory=dict, compare=False)

    @property
    def payload(self) -> str:
        """The ``iptables-restore --noflush`` input for these changes."""
        lines = [f"*{self.table}", *(op.line() for op in self.ops), "COMMIT", ""]
        return "\n".join(lines)

    def count(self, kind: str) -> int:
        """How many changes of one kind (``"append"``, ``"delete"``...)."""
        return sum(1 for op in self.ops if op.kind == kind)


def chains_to_read(ruleset: RuleSet, remove: Iterable[Rule | Chain] = ()) -> set[ChainKey]:
    """Every chain :func:`plan` needs a listing of."""
    keys: set[ChainKey] = set()
    for item in [*ruleset, *remove]:
        if isinstance(item, Chain):
            keys.add((item.proto, item.table, item.name))
        else:
            keys.add((item.proto, item.table, item.chain))
    return keys


@dataclass
class _Work:
    """A chain's rules as the payload will have changed them so far."""

    listing: ChainListing
    keys: list[RuleKey]
    specs: list[tuple[str, ...]]
    ops: list[Op]

    def delete_all(self, key: RuleKey) -> None:
        while key in self.keys:
            at = self.keys.index(key)
            # Delete by the spec iptables printed: it is sure to match.
            self.ops.append(Op("delete", self.listing.chain, self.specs[at]))
            del self.keys[at], self.specs[at]

    def insert(self, position: int, key: RuleKey, spec: tuple[str, ...]) -> None:
        self.ops.append(Op("insert", self.listing.chain, spec, position))
        self.keys.insert(position - 1, key)
        self.specs.insert(position - 1, spec)

    def append(self, key: RuleKey, spec: tuple[str, ...]) -> None:
        self.ops.append(Op("append", self.listing.chain, spec))
        self.keys.append(key)
        self.specs.append(spec)

    def done(self, exists: bool) -> ChainListing:
        return ChainListing(
            self.listing.proto, self.listing.table, self.listing.chain, exists, tuple(self.specs)
        )


def _in_order(wanted: Sequence[RuleKey], keys: Sequence[RuleKey]) -> list[int]:
    """Positions (0-based) of the longest prefix of ``wanted`` found in ``keys``
    in that order; its length is the index of the first rule out of place."""
    found: list[int] = []
    start = 0
    for key in wanted:
        try:
            at = keys.index(key, start)
        except ValueError:
            break
        found.append(at)
        start = at + 1
    return found


def _clear_from_broken(work: _Work, wanted: Sequence[RuleKey]) -> int | None:
    """Delete the first wanted rule that is missing or out of place and every
    wanted rule after it; return its index (None when all are in place)."""
    broken = len(_in_order(wanted, work.keys))
    if broken == len(wanted):
        return None
    for stale in wanted[broken:]:
        work.delete_all(stale)
    return broken


def _keep_prepends(work: _Work, rules: Sequence[Rule], key: KeyFunction) -> None:
    wanted = [key(r) for r in rules]
    broken = _clear_from_broken(work, wanted)
    if broken is None:
        return
    # Deleting may have shifted the rules that stay: find them again.
    kept = _in_order(wanted[:broken], work.keys)
    position = kept[-1] + 2 if kept else 1
    for offset, rule in enumerate(rules[broken:]):
        work.insert(position + offset, wanted[broken + offset], rule.spec)


def _keep_appends(work: _Work, rules: Sequence[Rule], key: KeyFunction) -> None:
    wanted = [key(r) for r in rules]
    broken = _clear_from_broken(work, wanted)
    if broken is None:
        return
    for wanted_key, rule in zip(wanted[broken:], rules[broken:], strict=True):
        work.append(wanted_key, rule.spec)


def default_key(rule: Rule) -> RuleKey:
    """How the planner recognizes a rule in a listing: its canonical spec."""
    return rule_key(rule.spec, rule.proto)


def plan(
    ruleset: RuleSet,
    observed: Mapping[ChainKey, ChainListing],
    remove: Iterable[Rule | Chain] = (),
    *,
    key: KeyFunction = default_key,
) -> list[TablePlan]:
    """The changes that make the chains hold ``ruleset`` and nothing of ``remove``.

    ``observed`` must hold a listing of every chain in
    :func:`chains_to_read`. ``key`` says which listed rule a wanted rule is
    (by default its canonical spec; the controller adds what it learned of
    rules it cannot canonicalize). Returns one plan per (protocol, table)
    that needs a change, in a stable order; an empty list means all is in
    place.
    """
    wanted_keys = {
        (item.proto, item.table, item.chain, key(item)) for item in ruleset if isinstance(item, Rule)
    }
    wanted_chains = {item for item in ruleset if isinstance(item, Chain)}
    removed_chains = {
        (c.proto, c.table, c.name)
        for c in remove
        if isinstance(c, Chain) and c not in wanted_chains and not c.builtin
    }
    works: dict[ChainKey, _Work] = {}
    order: list[ChainKey] = []
    creates: dict[TableKey, list[Op]] = {}

    def work_for(chain: ChainKey) -> _Work:
        if chain not in works:
            listing = observed[chain]
            works[chain] = _Work(listing, list(listing.keys), list(listing.specs), [])
            order.append(chain)
        return works[chain]

    for item in ruleset.append:
        if isinstance(item, Chain) and not item.builtin:
            chain = (item.proto, item.table, item.name)
            if not work_for(chain).listing.exists and chain not in removed_chains:
                creates.setdefault((item.proto, item.table), []).append(Op("create", item.name))

    for item in remove:
        if isinstance(item, Rule):
            chain = (item.proto, item.table, item.chain)
            rkey = key(item)
            if chain in removed_chains or (*chain, rkey) in wanted_keys:
                continue  # the chain goes as a whole, or the rule is still wanted
            work_for(chain).delete_all(rkey)

    for chain, rules in _by_chain(ruleset.prepend).items():
        _keep_prepends(work_for(chain), rules, key)
    appended = [r for r in ruleset.append if isinstance(r, Rule)]
    for chain, rules in _by_chain(appended).items():
        _keep_appends(work_for(chain), rules, key)

    plans: dict[TableKey, list[Op]] = {tkey: list(ops) for tkey, ops in creates.items()}
    for chain in order:
        if works[chain].ops:
            plans.setdefault((chain[0], chain[1]), []).extend(works[chain].ops)
    # Flush every removed chain before deleting any: one may jump to another.
    gone = [chain for chain in sorted(removed_chains, key=_order) if observed[chain].exists]
    for kind in ("flush", "remove"):
        for proto, table, name in gone:
            plans.setdefault((proto, table), []).append(Op(kind, name))

    def after(chain: ChainKey) -> ChainListing:
        if chain in removed_chains:
            return ChainListing(*chain, exists=False)
        work = works[chain]
        made = creates.get((chain[0], chain[1]), [])
        created = any(op.kind == "create" and op.chain == chain[2] for op in made)
        return work.done(exists=work.listing.exists or created)

    return [
        TablePlan(
            proto,
            table,
            tuple(ops),
            {chain[2]: after(chain) for chain in [*order, *gone] if chain[:2] == (proto, table)},
        )
        for (proto, table), ops in sorted(plans.items(), key=lambda kv: (kv[0][0].value, kv[0][1]))
    ]


def _order(key: ChainKey) -> tuple[str, str, str]:
    return (key[0].value, key[1], key[2])


def _by_chain(rules: Iterable[Rule]) -> dict[ChainKey, list[Rule]]:
    grouped: dict[ChainKey, list[Rule]] = {}
    for rule in rules:
        grouped.setdefault((rule.proto, rule.table, rule.chain), []).append(rule)
    return grouped


# -- ownership tags and canaries -----------------------------------------------------------------

#: The comment of the rule a canary chain holds.
CANARY_COMMENT = "aioiptables:canary"


def owner_tag(owner: str) -> str:
    """The comment every rule of ``owner`` carries."""
    return f"aioiptables:{owner}"


def chain_tag(owner: str) -> str:
    """The comment of the rule that marks a chain as ``owner``'s."""
    return f"aioiptables:{owner}:chain"


def _comment(text: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", text)


def decorate(ruleset: RuleSet, *, owner: str | None = None, canary: str | None = None) -> RuleSet:
    """The rule set as it is written: with ``owner``, every rule gains an
    owner comment and every user chain a marker rule at its top (a rule with
    no target does nothing); with ``canary``, every table used gains a chain of
    that name holding one marker rule. With neither, the rule set as given.
    """
    if owner is None and canary is None:
        return ruleset
    append: list[Rule | Chain] = []
    prepend: list[Rule] = []
    tag = _comment(owner_tag(owner)) if owner else ()
    for item in ruleset.append:
        if isinstance(item, Chain):
            append.append(item)
            if owner and not item.builtin:
                prepend.append(Rule(item.table, item.name, _comment(chain_tag(owner)), item.proto))
        else:
            append.append(Rule(item.table, item.chain, (*item.spec, *tag), item.proto))
    prepend += [Rule(r.table, r.chain, (*r.spec, *tag), r.proto) for r in ruleset.prepend]
    if canary:
        tables = sorted({(item.proto, item.table) for item in ruleset}, key=lambda t: (t[0].value, t[1]))
        for proto, table in tables:
            append += [Chain(table, canary, proto), Rule(table, canary, _comment(CANARY_COMMENT), proto)]
    return RuleSet(append=append, prepend=prepend)


def leftovers(tables: Iterable[TableSnapshot], desired: RuleSet, owner: str) -> list[Rule | Chain]:
    """What an earlier run of ``owner`` left behind and ``desired`` (decorated)
    no longer holds: its tagged rules, and the chains it marked."""
    tag = owner_tag(owner)
    marker = rule_key(_comment(chain_tag(owner)))
    wanted_rules = {
        (r.proto, r.table, r.chain, rule_key(r.spec, r.proto)) for r in desired if isinstance(r, Rule)
    }
    wanted_chains = {(c.proto, c.table, c.name) for c in desired if isinstance(c, Chain)}
    found: list[Rule | Chain] = []
    for snapshot in tables:
        proto, table = snapshot.proto, snapshot.table
        for name in snapshot.names:
            listing = snapshot.chain(name)
            if marker in listing.keys and (proto, table, name) not in wanted_chains:
                found.append(Chain(table, name, proto))  # its rules go with it
                continue
            for spec, key in zip(listing.specs, listing.keys, strict=True):
                if _carries(key, tag) and (proto, table, name, key) not in wanted_rules:
                    found.append(Rule(table, name, spec, proto))
    return found


def _carries(key: RuleKey, comment: str) -> bool:
    return any(a == "--comment" and b == comment for a, b in itertools.pairwise(key))
