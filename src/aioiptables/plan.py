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
  is flushed and deleted after the rules that may jump to it, unless a rule
  of the rule set still lives in it or jumps to it (then only the rules no
  longer wanted leave it).
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from .errors import InvalidRuleError
from .extensions import TARGETS
from .model import BUILTIN_CHAINS, Chain, Protocol, Rule, RuleSet
from .parse import ChainListing, RuleKey, TableSnapshot, analyze, rule_key, spec_to_write
from .syntax import join_tokens

__all__ = [
    "Op",
    "Expected",
    "TablePlan",
    "align",
    "Alignment",
    "plan",
    "chains_to_read",
    "chains_in_use",
    "jump_target",
    "loop_closers",
    "default_key",
    "decorate",
    "leftovers",
    "owner_tag",
    "validate_owner",
    "tagged",
    "chain_tag",
    "marker_spec",
    "CANARY_COMMENT",
    "ChainKey",
    "KeyFunction",
]

ChainKey = tuple[Protocol, str, str]
TableKey = tuple[Protocol, str]
KeyFunction = Callable[[Rule], RuleKey]


@dataclass(frozen=True)
class Op:
    """One change to a chain, as one line of a restore payload.

    A delete names the rule by its spec, or by ``position`` when the spec
    would match a rule that is not ours first (an identical foreign rule
    above ours). ``rule`` is the rule an append or insert writes, so an error
    iptables reports for that line can be traced back to it.
    """

    kind: Literal["create", "delete", "insert", "append", "flush", "remove"]
    chain: str
    spec: tuple[str, ...] = ()
    position: int = 0
    rule: Rule | None = field(default=None, compare=False)
    #: For a delete: the key of the line it deletes.
    key: RuleKey | None = field(default=None, compare=False)

    def line(self) -> str:
        """The iptables-restore line for this change."""
        spec = f" {join_tokens(self.spec)}" if self.spec else ""
        if self.kind == "create":
            # Not ":CHAIN - [0:0]", which flushes the chain if it exists after
            # all: created since it was read, or (iptables-nft 1.8.7 to 1.8.10)
            # holding rules made by nft, which those print as a missing chain.
            # "-N" refuses an existing chain, and with it the whole table.
            return f"-N {self.chain}"
        if self.kind == "insert":
            return f"-I {self.chain} {self.position}{spec}"
        if self.kind == "delete" and self.position:
            return f"-D {self.chain} {self.position}"
        flag = {"delete": "-D", "append": "-A", "flush": "-F", "remove": "-X"}[self.kind]
        return f"{flag} {self.chain}{spec}"


@dataclass(frozen=True)
class Expected:
    """A chain as a plan predicts it will read once its payload has landed.

    ``keys`` are the keys each line will be found under (for a line we write,
    the key the planner looked for); ``ours`` says which lines this
    controller wrote; ``fresh`` holds, for each line the payload writes, the
    rule's own canonical key (None elsewhere), so the next read can learn how
    iptables printed it (see :func:`align`).
    """

    specs: tuple[tuple[str, ...], ...]
    keys: tuple[RuleKey, ...]
    ours: tuple[bool, ...]
    fresh: tuple[RuleKey | None, ...]

    @classmethod
    def of(cls, listing: ChainListing, ours: Sequence[bool]) -> Expected:
        """A chain as read, with nothing freshly written."""
        return cls(listing.specs, listing.keys, tuple(ours), (None,) * len(listing.specs))


@dataclass(frozen=True)
class TablePlan:
    """The changes one table needs, applied as one atomic restore payload."""

    proto: Protocol
    table: str
    ops: tuple[Op, ...]
    #: How each chain touched will read once the payload has landed.
    after: Mapping[str, ChainListing] = field(default_factory=dict, compare=False)
    #: The same, with which lines are ours and which were just written.
    expected: Mapping[str, Expected] = field(default_factory=dict, compare=False)

    @functools.cached_property
    def payload(self) -> str:
        """The ``iptables-restore --noflush`` input for these changes
        (rendered once: it is checked, then written)."""
        lines = [f"*{self.table}", *(op.line() for op in self.ops), "COMMIT", ""]
        return "\n".join(lines)

    def count(self, kind: str) -> int:
        """How many changes of one kind (``"append"``, ``"delete"``...)."""
        return sum(1 for op in self.ops if op.kind == kind)

    def op_at(self, line: int) -> Op | None:
        """The change on line ``line`` (1-based) of :attr:`payload`, if any."""
        index = line - 2  # line 1 is "*table"
        return self.ops[index] if 0 <= index < len(self.ops) else None


def chains_to_read(ruleset: RuleSet, remove: Iterable[Rule | Chain] = ()) -> set[ChainKey]:
    """Every chain :func:`plan` needs a listing of."""
    keys: set[ChainKey] = set()
    for item in [*ruleset, *remove]:
        if isinstance(item, Chain):
            keys.add((item.proto, item.table, item.name))
        else:
            keys.add((item.proto, item.table, item.chain))
    return keys


def jump_target(key: RuleKey) -> str | None:
    """The chain a rule jumps or goes to, read from its key: a jump to a
    user chain is a target with no options, so a canonical or printed key
    ends with it.

    >>> jump_target(("-s", "10.0.0.0/8", "-j", "KILO-NAT")), jump_target(("-j", "ACCEPT",))
    ('KILO-NAT', None)
    """
    if len(key) >= 2 and key[-2] in ("-j", "--jump", "-g", "--goto") and key[-1] not in TARGETS:
        return key[-1]
    return None


def chains_in_use(ruleset: RuleSet) -> set[ChainKey]:
    """The chains the rules of ``ruleset`` live in or jump to: a chain the
    rule set no longer declares stays while one of them needs it."""
    used: set[ChainKey] = set()
    for rule in ruleset:
        if isinstance(rule, Rule):
            used.add((rule.proto, rule.table, rule.chain))
            target = jump_target(default_key(rule))
            if target is not None:
                used.add((rule.proto, rule.table, target))
    return used


def loop_closers(table_plan: TablePlan, observed: Mapping[ChainKey, ChainListing]) -> list[Op]:
    """The appends and inserts of ``table_plan`` that iptables would refuse
    because they close a loop of jumps reachable from a built-in chain.

    Both backends refuse such a rule (iptables-nft names its line;
    iptables-legacy fails the whole table at COMMIT, naming no rule), so the
    planner finds it first, the way iptables-nft does: each change in
    payload order, a rule refused when the jumps it adds make a loop
    reachable. Jumps in chains that were not read are unknown and not
    counted.
    """
    proto, table = table_plan.proto, table_plan.table
    edges: dict[str, Counter[str]] = {
        key[2]: Counter(t for t in map(jump_target, listing.keys) if t is not None)
        for key, listing in observed.items()
        if key[:2] == (proto, table)
    }
    roots = BUILTIN_CHAINS.get(table, ())
    closers: list[Op] = []
    for op in table_plan.ops:
        out = edges.setdefault(op.chain, Counter())
        if op.kind in ("flush", "remove"):
            out.clear()
        elif op.kind == "delete" and op.key is not None:
            target = jump_target(op.key)
            if target is not None and out[target] > 0:
                out[target] -= 1
        elif op.kind in ("append", "insert"):
            target = jump_target(rule_key(op.spec, proto))
            if target is None:
                continue
            out[target] += 1
            if _loops(edges, roots):
                out[target] -= 1
                closers.append(op)
    return closers


def _loops(edges: Mapping[str, Counter[str]], roots: Iterable[str]) -> bool:
    """Whether a loop of jumps is reachable from ``roots``."""
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(chain: str) -> bool:
        state[chain] = 1
        for target, count in edges.get(chain, Counter()).items():
            if count <= 0:
                continue
            seen = state.get(target)
            if seen == 1 or (seen is None and walk(target)):
                return True
        state[chain] = 2
        return False

    return any(state.get(root) is None and walk(root) for root in roots)


@dataclass
class _Work:
    """A chain's rules as the payload will have changed them so far."""

    listing: ChainListing
    keys: list[RuleKey]
    specs: list[tuple[str, ...]]
    ours: list[bool]
    fresh: list[RuleKey | None]
    ops: list[Op]

    @classmethod
    def start(cls, listing: ChainListing, ours: Sequence[bool] | None) -> _Work:
        count = len(listing.specs)
        owned = [True] * count if ours is None else list(ours)
        if len(owned) != count:
            raise ValueError(f"ownership of {listing.chain} has {len(owned)} lines, the listing {count}")
        return cls(listing, list(listing.keys), list(listing.specs), owned, [None] * count, [])

    def delete_at(self, at: int, spec: tuple[str, ...] | None = None) -> None:
        """Delete line ``at`` (0-based), by ``spec`` (the rule as we wrote it:
        iptables builds the very rule it built then, where its printed form
        may not delete, as with ``-m recent``), else by the printed spec."""
        key = self.keys[at]
        if key in self.keys[:at]:
            # -D by spec would delete the identical line above it: name ours by number.
            self.ops.append(Op("delete", self.listing.chain, position=at + 1, key=key))
        else:
            self.ops.append(Op("delete", self.listing.chain, spec or self.specs[at], key=key))
        del self.keys[at], self.specs[at], self.ours[at], self.fresh[at]

    def delete_ours(self, key: RuleKey, spec: tuple[str, ...] | None = None) -> None:
        """Delete every line of ours with this key; lines not ours stay."""
        self.delete_where(lambda at: self.keys[at] == key and self.ours[at], {key: spec} if spec else {})

    def delete_where(self, doomed: Callable[[int], bool], specs: Mapping[RuleKey, tuple[str, ...]]) -> None:
        """Delete the lines for which ``doomed(index)`` holds, top first, so a
        delete by spec never meets an identical line of ours above it;
        ``specs`` gives the spec to delete a key by, where we know it."""
        at = 0
        while at < len(self.keys):
            if doomed(at):
                self.delete_at(at, specs.get(self.keys[at]))
            else:
                at += 1

    def insert(self, position: int, key: RuleKey, rule: Rule) -> None:
        spec = written_spec(rule)
        self.ops.append(Op("insert", self.listing.chain, spec, position, rule))
        at = position - 1
        self.keys.insert(at, key)
        self.specs.insert(at, spec)
        self.ours.insert(at, True)
        self.fresh.insert(at, default_key(rule))

    def append(self, key: RuleKey, rule: Rule) -> None:
        spec = written_spec(rule)
        self.ops.append(Op("append", self.listing.chain, spec, rule=rule))
        self.keys.append(key)
        self.specs.append(spec)
        self.ours.append(True)
        self.fresh.append(default_key(rule))

    def done(self, exists: bool) -> ChainListing:
        return ChainListing(
            self.listing.proto, self.listing.table, self.listing.chain, exists, tuple(self.specs)
        )

    def expected(self) -> Expected:
        return Expected(tuple(self.specs), tuple(self.keys), tuple(self.ours), tuple(self.fresh))


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


def _clear_from_broken(work: _Work, wanted: Sequence[RuleKey], rules: Sequence[Rule]) -> int | None:
    """Delete our copies of the first wanted rule that is missing or out of
    place and of every wanted rule after it; return its index (None when all
    are in place). Lines that are not ours are never deleted: a foreign rule
    identical to a wanted one may satisfy it, but is never moved."""
    broken = len(_in_order(wanted, work.keys))
    if broken == len(wanted):
        return None
    # One pass over the chain for all of them, top first (a pass per rule
    # would cost the chain's length times the rules after the break).
    specs = dict(zip(wanted[broken:], (written_spec(r) for r in rules[broken:]), strict=True))
    work.delete_where(lambda at: work.ours[at] and work.keys[at] in specs, specs)
    return broken


def _drop_extra_copies(work: _Work, orders: Sequence[tuple[Sequence[Rule], Sequence[RuleKey]]]) -> None:
    """Delete our copies of wanted rules beyond the one that satisfies each
    (``orders``: the chain's prepend rules and append rules, each with
    their keys), so a chain never holds more of our copies than the rule
    set asks for."""
    specs = {k: written_spec(rule) for rules, keys in orders for rule, k in zip(rules, keys, strict=True)}
    used = {at for _, keys in orders for at in _in_order(keys, work.keys)}
    doomed = [work.ours[i] and k in specs and i not in used for i, k in enumerate(work.keys)]
    if any(doomed):
        work.delete_where(lambda at: doomed[at - len(work.keys)], specs)  # counted from the end: stable


def _keep_prepends(work: _Work, rules: Sequence[Rule], wanted: Sequence[RuleKey]) -> None:
    broken = _clear_from_broken(work, wanted, rules)
    if broken is None:
        return
    # Deleting may have shifted the rules that stay: find them again.
    kept = _in_order(wanted[:broken], work.keys)
    position = kept[-1] + 2 if kept else 1
    for offset, rule in enumerate(rules[broken:]):
        work.insert(position + offset, wanted[broken + offset], rule)


def _keep_appends(work: _Work, rules: Sequence[Rule], wanted: Sequence[RuleKey]) -> None:
    broken = _clear_from_broken(work, wanted, rules)
    if broken is None:
        return
    for wanted_key, rule in zip(wanted[broken:], rules[broken:], strict=True):
        work.append(wanted_key, rule)


def default_key(rule: Rule) -> RuleKey:
    """How the planner recognizes a rule in a listing: its canonical spec.

    Worked out once per Rule object and kept on it (a rule is immutable, and
    a reconcile asks for the key of every rule of the set several times).
    """
    known: RuleKey | None = rule.__dict__.get(_KEY)
    if known is None:
        known = rule.__dict__[_KEY] = rule_key(rule.spec, rule.proto)
    return known


# Where default_key keeps a rule's key: outside the dataclass's fields, so
# equality, hashing and repr never see it.
_KEY = "_aioiptables_key"


def written_spec(rule: Rule) -> tuple[str, ...]:
    """The spec a rule is written with, and deleted by: its own, unless
    iptables-nft would read it back in a form its ``-D`` no longer finds by
    that spec (see :func:`~aioiptables.parse.spec_to_write`). Kept on the
    rule, as its key is."""
    known: tuple[str, ...] | None = rule.__dict__.get(_WRITTEN)
    if known is None:
        known = rule.__dict__[_WRITTEN] = spec_to_write(rule.spec, rule.proto)
    return known


_WRITTEN = "_aioiptables_written"


#: A release, as ``(1, 8, 9)``.
Release = tuple[int, int, int]


def release_needed(rule: Rule) -> tuple[Release, str] | None:
    """The first iptables release that writes ``rule`` as it is asked, when
    older ones silently write another rule; with what those do. None when
    every supported release (1.8.7 on) writes it as asked.

    >>> release_needed(Rule.ipv4("nat", "POSTROUTING", "-p", "tcp", "-j", "SNAT", "--to-source", "1.2.3.4:80-90/70"))
    ((1, 8, 9), "drops SNAT's base port and writes the rule without it")
    >>> release_needed(Rule.ipv4("nat", "POSTROUTING", "-j", "SNAT", "--to-source", "1.2.3.4:80-90")) is None
    True
    """
    if _snat_base(analyze(rule.spec, rule.proto).tokens):
        return (1, 8, 9), "drops SNAT's base port and writes the rule without it"
    return None


def _snat_base(tokens: Sequence[str]) -> bool:
    """Whether a SNAT target's ``--to-source`` gives a base port after its
    port range (``1.2.3.4:80-90/70``, ``[fd00::1]:80-90/70``). ``tokens``
    are canonical: the target and its options come last, options by their
    full names (a spec not understood is kept as given, and read the same)."""
    jump = max((i for i, token in enumerate(tokens) if token in ("-j", "--jump")), default=-2)
    if list(tokens[jump + 1 : jump + 2]) != ["SNAT"]:
        return False
    for option, value in itertools.pairwise(tokens[jump + 2 :]):
        # iptables takes any unambiguous abbreviation of a long option.
        if len(option) > 3 and "--to-source".startswith(option):
            _, bracket, after = value.rpartition("]")
            ports = after if bracket else value.partition(":")[2] if value.count(":") == 1 else ""
            if "/" in ports:
                return True
    return False


def plan(
    ruleset: RuleSet,
    observed: Mapping[ChainKey, ChainListing],
    remove: Iterable[Rule | Chain] = (),
    *,
    key: KeyFunction = default_key,
    ours: Mapping[ChainKey, Sequence[bool]] | None = None,
    own_chains: Container[ChainKey] | None = None,
    in_use: Container[ChainKey] | None = None,
) -> list[TablePlan]:
    """The changes that make the chains hold ``ruleset`` and nothing of ``remove``.

    ``observed`` must hold a listing of every chain in
    :func:`chains_to_read`. ``key`` says which listed rule a wanted rule is
    (by default its canonical spec; the controller adds what it learned of
    rules it cannot canonicalize).

    ``ours`` says, per chain, which listed lines are ours: only those are
    ever deleted (to remove, reorder or de-duplicate), and a wanted rule
    that is missing or out of order is written anew rather than moving a
    line that is not ours. ``own_chains`` says which chains are ours: only
    those are flushed and deleted when no longer wanted. With ``ours``, our
    extra copies of a wanted rule are deleted too. Left out, every line and
    chain counts as ours and extra copies are left alone (Kilo's semantics).

    ``in_use`` is :func:`chains_in_use` of ``ruleset``, for a caller that
    knows it already.

    Returns one plan per (protocol, table) that needs a change, in a stable
    order; an empty list means all is in place.
    """
    # Every rule is keyed once, chain by chain, in order.
    prepended = {
        chain: (rules, [key(r) for r in rules]) for chain, rules in _by_chain(ruleset.prepend).items()
    }
    appended = {
        chain: (rules, [key(r) for r in rules])
        for chain, rules in _by_chain(r for r in ruleset.append if isinstance(r, Rule)).items()
    }
    removing_rules = any(isinstance(item, Rule) for item in remove)
    wanted_keys = {
        (*chain, k)
        for grouped in (prepended, appended)
        for chain, (_, keys) in grouped.items()
        for k in (keys if removing_rules else ())
    }
    wanted_chains = {item for item in ruleset if isinstance(item, Chain)}
    if in_use is None:
        in_use = chains_in_use(ruleset)
    removed_chains = {
        (c.proto, c.table, c.name)
        for c in remove
        if isinstance(c, Chain)
        and c not in wanted_chains
        and not c.builtin
        and (c.proto, c.table, c.name) not in in_use
        and (own_chains is None or (c.proto, c.table, c.name) in own_chains)
    }
    works: dict[ChainKey, _Work] = {}
    order: list[ChainKey] = []
    creates: dict[TableKey, list[Op]] = {}

    def work_for(chain: ChainKey) -> _Work:
        if chain not in works:
            works[chain] = _Work.start(observed[chain], None if ours is None else ours.get(chain))
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
            work_for(chain).delete_ours(rkey, written_spec(item))

    orders: dict[ChainKey, list[tuple[list[Rule], list[RuleKey]]]] = {}
    for chain, (rules, keys) in prepended.items():
        _keep_prepends(work_for(chain), rules, keys)
        orders.setdefault(chain, []).append((rules, keys))
    for chain, (rules, keys) in appended.items():
        _keep_appends(work_for(chain), rules, keys)
        orders.setdefault(chain, []).append((rules, keys))
    if ours is not None:  # without ownership a copy may be anybody's: leave it
        for chain, wanted in orders.items():
            _drop_extra_copies(works[chain], wanted)

    plans: dict[TableKey, list[Op]] = {tkey: list(ops) for tkey, ops in creates.items()}
    for chain in order:
        if works[chain].ops:
            plans.setdefault((chain[0], chain[1]), []).extend(works[chain].ops)
    # Flush every removed chain before deleting any: one may jump to another.
    gone = [chain for chain in sorted(removed_chains, key=_order) if observed[chain].exists]
    for kind in ("flush", "remove"):
        for proto, table, name in gone:
            plans.setdefault((proto, table), []).append(Op(kind, name))

    def created(chain: ChainKey) -> bool:
        made = creates.get((chain[0], chain[1]), [])
        return any(op.kind == "create" and op.chain == chain[2] for op in made)

    def after(chain: ChainKey) -> ChainListing:
        if chain in removed_chains:
            return ChainListing(*chain, exists=False)
        work = works[chain]
        return work.done(exists=work.listing.exists or created(chain))

    def expected(chain: ChainKey) -> Expected:
        if chain in removed_chains:
            return Expected((), (), (), ())
        return works[chain].expected()

    return [
        TablePlan(
            proto,
            table,
            tuple(ops),
            {chain[2]: after(chain) for chain in [*order, *gone] if chain[:2] == (proto, table)},
            {chain[2]: expected(chain) for chain in [*order, *gone] if chain[:2] == (proto, table)},
        )
        for (proto, table), ops in sorted(plans.items(), key=lambda kv: (kv[0][0].value, kv[0][1]))
    ]


class Alignment(NamedTuple):
    """What :func:`align` found."""

    #: Which observed lines are ours.
    ours: tuple[bool, ...]
    #: Own canonical key -> printed key, for fresh lines printed otherwise.
    learned: dict[RuleKey, RuleKey]
    #: Own keys of fresh lines replaced by something no line could be paired with.
    unrecognized: tuple[RuleKey, ...] = ()
    #: Own keys of fresh lines found as predicted.
    confirmed: tuple[RuleKey, ...] = ()


def align(
    expected: Expected,
    observed: Sequence[RuleKey],
    proto: Protocol = Protocol.IPV4,
    owner: str | None = None,
) -> Alignment:
    """Pair a chain as a plan predicted it with the chain as read.

    Returns which observed lines are ours, and what was learned: for each
    line written by the last payload that iptables printed in another form
    than predicted, its own canonical key mapped to the key of the printed
    line; and which fresh lines were replaced by something unrecognizable.

    Lines are paired by content where they are equal. A freshly written line
    that is not found is paired with a line of the same shape that nothing
    else explains: the same base options, matches and target, and, where
    the canonicalizer read the rule whole, tokens that are ours cut short or
    with some left out (a truncated prefix or comment, a merged match), or
    ours with some added (a default); with ``owner``, the owner's tag
    whole. First in its place (the run of lines that differ from the
    prediction where it was written), then anywhere in the chain, when just
    one line fits (it was moved, or a neighbour was). Another agent
    replacing a line we just wrote, within one resync, by such a near copy
    (tagged as ours, with ``owner``) is the only way to fool it; a delete
    that then finds nothing to delete undoes the belief. No extra process:
    this read happens anyway.

    >>> e = Expected((("-j", "LOG"),), (("-j", "LOG", "--log-prefix", "x" * 40),), (True,),
    ...              (("-j", "LOG", "--log-prefix", "x" * 40),))
    >>> found = align(e, [("-j", "LOG", "--log-prefix", "x" * 29)])
    >>> found.ours, list(found.learned.values())
    ((True,), [('-j', 'LOG', '--log-prefix', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxx')])
    """
    observed = tuple(observed)
    if expected.keys == observed:
        return Alignment(expected.ours, {}, (), tuple(k for k in expected.fresh if k is not None))
    fits = functools.partial(_printed_as, proto=proto, tag=None if owner is None else owner_tag(owner))
    owned = [False] * len(observed)
    explained = [False] * len(observed)  # paired by content, or with a fresh line
    learned: dict[RuleKey, RuleKey] = {}
    unpaired: list[RuleKey] = []
    replaced: set[RuleKey] = set()  # unpaired, yet something else stands in their place
    confirmed: list[RuleKey] = []
    matcher = difflib.SequenceMatcher(None, expected.keys, observed, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            owned[j1:j2] = expected.ours[i1:i2]
            explained[j1:j2] = [True] * (j2 - j1)
            confirmed += [k for k in expected.fresh[i1:i2] if k is not None]
            continue
        j = j1 if tag == "replace" else j2
        for own in (k for k in expected.fresh[i1:i2] if k is not None):
            at = next((c for c in range(j, j2) if fits(own, observed[c])), None)
            if at is None:
                unpaired.append(own)
                if tag == "replace":
                    replaced.add(own)
            else:
                learned[own] = observed[at]
                owned[at] = explained[at] = True
                j = at + 1
    left = _pair_moved(unpaired, observed, explained, fits, learned, owned)
    # A fresh line simply gone was deleted, not printed beyond recognition.
    unrecognized = [own for own in left if own in replaced]
    _conserve(expected, observed, owned)
    return Alignment(tuple(owned), learned, tuple(unrecognized), tuple(confirmed))


def _pair_moved(
    unpaired: list[RuleKey],
    observed: tuple[RuleKey, ...],
    explained: list[bool],
    fits: Callable[[RuleKey, RuleKey], bool],
    learned: dict[RuleKey, RuleKey],
    owned: list[bool],
) -> list[RuleKey]:
    """Pair fresh lines not found in their place with a line elsewhere that
    nothing else explains, when exactly one fits and it fits no other fresh
    line (two candidates are a riddle: better one more copy, reported, than
    a foreign line taken for ours). Returns the fresh lines left unpaired."""
    free = [at for at, done in enumerate(explained) if not done]
    candidates = {own: [at for at in free if fits(own, observed[at])] for own in unpaired}
    claims = Counter(at for found in candidates.values() for at in found)
    left: list[RuleKey] = []
    for own in unpaired:
        found = candidates[own]
        if len(found) == 1 and claims[found[0]] == 1:
            learned[own] = observed[found[0]]
            owned[found[0]] = explained[found[0]] = True
        else:
            left.append(own)
    return left


def _printed_as(own: RuleKey, printed: RuleKey, proto: Protocol, tag: str | None = None) -> bool:
    """Whether ``printed`` can be how iptables printed the rule ``own``
    (with ``tag``, an owner's tag, that ``own`` carries it only if
    ``printed`` does: iptables never cuts so short a comment)."""
    if tag is not None and _carries(own, tag) and not _carries(printed, tag):
        return False
    if _shape(own) != _shape(printed):
        return False
    if not analyze(own, proto).exact:
        return True  # parts kept as text: iptables may print them any way
    return _within(printed, own) or _within(own, printed)


def _within(short: RuleKey, long: RuleKey) -> bool:
    """Whether each token of ``short`` begins a token of ``long``, in order.
    A value iptables cut at a byte limit may end in half a character, read
    back as U+FFFD: what comes before it must begin ours."""
    tokens = iter(long)
    return all(any(token.startswith(part.rstrip("\ufffd")) for token in tokens) for part in short)


def _conserve(expected: Expected, observed: tuple[RuleKey, ...], owned: list[bool]) -> None:
    """Ownership is conserved per rule: we own as many copies of a rule as
    we wrote and still see, whatever moved. Identical lines cannot be told
    apart, so when ours was deleted and an identical line added elsewhere
    (a rule moved by hand), the pairing above may have called ours foreign;
    give it back, never more than we had. Copies not ours stay not ours."""
    had = Counter(k for k, mine in zip(expected.keys, expected.ours, strict=True) if mine)
    have = Counter(k for k, mine in zip(observed, owned, strict=True) if mine)
    for index, key in enumerate(observed):
        if not owned[index] and have[key] < had[key]:
            owned[index] = True
            have[key] += 1


def _shape(key: RuleKey) -> tuple[tuple[str, ...], frozenset[str], str | None]:
    """What iptables never rewrites in a rule it prints: the base options
    (addresses, interfaces, protocol), which matches it loads (as a set: a
    repeated match may be merged), and its target. Values of match and
    target options may be cut or reformatted (a long log prefix, a comment)."""
    heads = [i for i, token in enumerate(key) if token in ("-m", "-j", "-g")]
    base = key[: heads[0]] if heads else key
    matches = frozenset(key[i + 1] for i in heads if key[i] == "-m" and i + 1 < len(key))
    target = next((key[i + 1] for i in heads if key[i] != "-m" and i + 1 < len(key)), None)
    return base, matches, target


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


# An owner names an agent in a comment: a short word, so that no owner's tag
# can be another owner's, or a chain marker, or the canary's comment.
_OWNER = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def validate_owner(owner: str) -> str:
    """Return ``owner`` if it can name an owner: 1 to 64 letters, digits,
    ``_``, ``.`` or ``-``.

    >>> validate_owner("x:chain")
    Traceback (most recent call last):
    ...
    aioiptables.errors.InvalidRuleError: invalid owner 'x:chain': must be 1 to 64 letters, digits, '_', '.' or '-'
    """
    if not isinstance(owner, str) or _OWNER.fullmatch(owner) is None:
        raise InvalidRuleError("owner", owner, "must be 1 to 64 letters, digits, '_', '.' or '-'")
    return owner


def owner_tag(owner: str) -> str:
    """The comment every rule of ``owner`` carries: ``aioiptables:owner=NAME``."""
    return f"aioiptables:owner={validate_owner(owner)}"


def chain_tag(owner: str) -> str:
    """The comment of the rule that marks a chain as ``owner``'s:
    ``aioiptables:chain=NAME``. No owner tag can equal it."""
    return f"aioiptables:chain={validate_owner(owner)}"


def marker_spec(owner: str) -> tuple[str, ...]:
    """The spec of the rule that marks a chain as ``owner``'s."""
    return _comment(chain_tag(owner))


def tagged(keys: Iterable[RuleKey], owner: str) -> tuple[bool, ...]:
    """Which of these lines carry ``owner``'s rule tag or chain marker."""
    tags = {owner_tag(owner), chain_tag(owner)}
    return tuple(any(a == "--comment" and b in tags for a, b in itertools.pairwise(key)) for key in keys)


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
                prepend.append(Rule(item.table, item.name, marker_spec(owner), item.proto))
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
                    rule = Rule.from_printed(table, name, spec, proto)
                    # Deleted as printed, never refolded: iptables-legacy prints
                    # a repeated tcp match as written, and deletes it so only.
                    rule.__dict__[_WRITTEN] = rule.spec
                    found.append(rule)
    return found


def _carries(key: RuleKey, comment: str) -> bool:
    return any(a == "--comment" and b == comment for a, b in itertools.pairwise(key))
