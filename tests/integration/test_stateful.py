"""A state machine drives a Controller while a foreign actor works behind its back.

Part of ``make test`` (the CI profile below); ``make stateful`` runs the
longer profile.

Hypothesis' rule-based state machine (:class:`ControllerMachine`) generates
sequences of steps, on the fake and on real iptables (nft and legacy, each in
the test's private network namespace), for IPv4 and IPv6, with and without
``owner``. Each step runs under its own ``anyio.run`` (asyncio): the
Controller and its clients live across event loops.

Steps of the controller:

- ``set()`` a generated rule set (user chains ``SM-A``, ``SM-B``, ``SM-C`` in
  filter and now and then ``SM-N`` in nat; append and prepend rules from a
  pool of plain rules, rules iptables rewrites (a log prefix of 30-60
  characters, a comment of 200-300, an nflog prefix of 60-80), comments with
  quotes, blanks, ``#`` and unicode, jumps between our chains, and rules
  iptables refuses), or a variant of the rule set in force (rules swapped,
  dropped, flipped between prepend and append, respelled into duplicates, a
  chain no longer declared while its rules stay, jumps closing a loop);
- ``reconcile()`` and ``cleanup()``.

Steps of the foreign actor, with the backend's own iptables binary (the
fake's runner in the fake world): add a foreign rule anywhere (``-A``,
``-I N``, into our chains and builtin ones: plain rules, jumps to our chains,
rules shaped like our rewritten ones, long and odd comments, a comment with a
newline given through argv), insert a copy identical to one of our rules,
delete one of our rules, flush a chain, move a rule to the top or the bottom,
delete one of our chains (the jumps to it, ``-F``, ``-X``), create a chain
before the controller does. Any step may be followed by a convergence check.

What is checked, reading the tables behind the controller's back
(``iptables-save`` through a separate client):

- after every step: each foreign rule the actor added (and did not remove
  itself) is still there, in the same order among the foreign rules of its
  chain; a copy identical to one of ours counts by number (identical lines
  cannot be told apart, by the controller or by anyone); a foreign rule may
  only go with a whole chain the controller created (or, with ``owner``,
  marked);
- no growth: beyond the foreign rules, a chain holds no line but those the
  rule set in force asks for, each at most as often as asked;
- after every ``set()`` and ``reconcile()``: every rule of the rule set is in
  place, prepend and append rules each in their order, except the rules
  reported by :class:`RulesRefusedError`, and those must be rules iptables
  could refuse;
- convergence: two ``reconcile()`` calls leave everything in place, and a
  third writes nothing;
- only documented errors: :class:`InvalidRuleError` from ``set()`` (before any
  process, the previous rule set still in force) and
  :class:`RulesRefusedError`; any :class:`IPTablesError` fails (the steps are
  sequential: nothing races the controller);
- after ``cleanup()``: none of our lines is left, every foreign rule is, and
  a chain of ours stays only while a foreign rule jumps to it (and goes at
  the next reconcile once the jump is gone);
- with ``owner``, a chain carries the marker only while it is the
  controller's: a chain the actor made first is never marked;
- a chain the rule set stops declaring stays while rules of the set live in
  it or jump to it.

How iptables prints each of our rules (a truncated log prefix or comment) is
asked of the backend itself, once per spec: a scratch chain in the ``raw``
table (which no rule set here uses), or a scratch fake.

:func:`test_the_fake_lists_what_iptables_lists` replays generated iptables
command lines (and restore payloads) on :class:`FakeRunner` and on real
iptables (of the same backend) and compares the exact exit status and stderr,
and the ``-S`` listing of every chain. The one normalization: rules are compared as tokens, because the fake
quotes only what needs quoting while iptables quotes every comment or prefix
that holds anything beyond letters, digits, ``_`` and ``-``.

A foreign step never poses a riddle nobody could solve: the actor deletes or
moves only a line whose rule is alone in its chain, and inserts no copy of a
rule of ours in a chain where, since the controller last read, it deleted or
moved (or flushed away) one of our copies of that rule, and makes no chain the
controller made and has not read gone since. Otherwise neither the controller
nor anyone could tell whose line (or chain) is left.

Profiles (environment variables):

- default (CI): derandomized, no example database; 20 examples of up to 12
  steps per machine combination (12 combinations: fake, nft, legacy x IPv4,
  IPv6 x no owner, owner), 15 replays per fake-vs-real combination (4); one
  failure shrunk per test, for at most 45 s. Measured on 2 cores with every
  known failure steered around: 101 s for the file; each failing test adds
  up to about a minute;
- ``AIOIPTABLES_STATEFUL=long``: the nightly run: random seeds, 150 examples of
  up to 25 steps per combination and 150 replays, every distinct failure
  reported (measured: 24 minutes of test time, 15 in two parallel halves);
- ``AIOIPTABLES_STATEFUL_EXAMPLES=N`` / ``AIOIPTABLES_STATEFUL_STEPS=N``
  override the number of examples / steps of either profile;
  ``AIOIPTABLES_STATEFUL_SHRINK=0`` reports failures unshrunk (faster, to
  explore); ``AIOIPTABLES_STATEFUL_SHRINK_SECONDS=N`` bounds the shrinking of
  each failure (default 45 s, 300 in the long profile).

Failures this test found, each fixed and pinned by a test of its own in
``test_found_by_machine.py`` or ``test_never_harm.py``: a value iptables cut
inside a UTF-8 character was never recognized; a rule with no options raised
ValueError; a chain dropped from the rule set was deleted with a rule the set
still held; a chain of ours read gone and made again by someone else was
still taken for ours; what was learned of a rule iptables rewrites was
forgotten before the rule was deleted; such a rule, moved before the
controller read it back, was written again; with an owner, an untagged copy
of it was taken for ours; iptables-legacy refused a whole table for a loop of
jumps; and the fake differed from iptables (values it did not cut, ``-o`` in
INPUT, chain order, loops).

``pytest -s`` prints the figures of each run: examples, steps, distinct states.

Run::

    PATH=$PATH:/usr/sbin unshare --net -- .venv/bin/python -m pytest -q tests/integration/test_stateful.py
"""

from __future__ import annotations

import functools
import itertools
import os
import string
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import hypothesis.internal.conjecture.engine
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from aioiptables import (
    Chain,
    Client,
    Controller,
    FakeClient,
    FakeRunner,
    InvalidRuleError,
    IPTablesError,
    Protocol,
    Rule,
    RuleSet,
    RulesRefusedError,
)
from aioiptables.parse import OPAQUE, ChainListing, RuleKey, parse_save, rule_records
from aioiptables.plan import chain_tag, owner_tag
from aioiptables.syntax import join_tokens, split_printed
from conftest import World

V4, V6 = Protocol.IPV4, Protocol.IPV6
LONG = os.environ.get("AIOIPTABLES_STATEFUL", "") == "long"
EXAMPLES = int(os.environ.get("AIOIPTABLES_STATEFUL_EXAMPLES", "150" if LONG else "20"))
STEPS = int(os.environ.get("AIOIPTABLES_STATEFUL_STEPS", "25" if LONG else "12"))
REPLAYS = int(os.environ.get("AIOIPTABLES_STATEFUL_EXAMPLES", "150" if LONG else "15"))
SHRINK = os.environ.get("AIOIPTABLES_STATEFUL_SHRINK", "1") != "0"
#: Shrinking a failure replays its steps hundreds of times (half a second each on real
#: iptables): give up after this long (hypothesis' own limit is 5 minutes per failure).
SHRINK_SECONDS = int(os.environ.get("AIOIPTABLES_STATEFUL_SHRINK_SECONDS", "300" if LONG else "45"))


def profile(examples: int, **kwargs: Any) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not LONG,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
        phases=list(Phase) if SHRINK else [p for p in Phase if p is not Phase.shrink],
        report_multiple_bugs=LONG,  # CI shrinks one failure per test: minutes, not tens of them
        **kwargs,
    )


ChainRef = tuple[str, str]
USER_CHAINS: dict[str, tuple[str, ...]] = {"filter": ("SM-A", "SM-B", "SM-C"), "nat": ("SM-N",)}
BUILTINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}
#: The builtin chains rules go into (nat's INPUT and OUTPUT are left alone).
HOMES: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "POSTROUTING"),
}
ORACLE = "SM-ORACLE"
T = TypeVar("T")
P = ParamSpec("P")


def run(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """One step's async work, in an event loop of its own."""
    return anyio.run(functools.partial(fn, *args, **kwargs), backend="asyncio")


# -- the rules: blueprints, spelled without addresses so one blueprint serves both protocols -----

_ADDRESS_FLAGS = frozenset({"-s", "--source", "-d", "--destination"})


def address(token: str, proto: Protocol) -> str:
    """``@net1`` (a /16 or /64), ``@host1`` (one address), ``@host1/32`` (the same, spelled with
    its prefix length) in the given protocol."""
    kind, _, rest = token[1:].partition("/")
    n = int(kind[-1])
    if kind.startswith("net"):
        return f"10.{n}.0.0/16" if proto is V4 else f"fd00:{n}::/64"
    host = f"10.{n}.0.1" if proto is V4 else f"fd00:{n}::1"
    return f"{host}/{32 if proto is V4 else 128}" if rest else host


def materialize(spec: Sequence[str], proto: Protocol) -> tuple[str, ...]:
    out = list(spec)
    for i in range(1, len(out)):
        if out[i - 1] in _ADDRESS_FLAGS and out[i].startswith("@"):
            out[i] = address(out[i], proto)
    return tuple(out)


@dataclass(frozen=True)
class RuleBP:
    """One rule of a generated rule set, before it has a protocol."""

    where: str  # "append" or "prepend"
    table: str
    chain: str
    spec: tuple[str, ...]


@dataclass(frozen=True)
class SetBP:
    """A generated rule set: user chains, then rules (append or prepend), in order."""

    chains: tuple[ChainRef, ...]
    rules: tuple[RuleBP, ...]

    def ruleset(self, proto: Protocol) -> RuleSet:
        """The rule set (raises InvalidRuleError for what the model refuses)."""
        append: list[Rule | Chain] = [Chain(t, c, proto) for t, c in self.chains]
        prepend: list[Rule] = []
        for bp in self.rules:
            made = Rule(bp.table, bp.chain, materialize(bp.spec, proto), proto)
            (append if bp.where == "append" else prepend).append(made)
        return RuleSet(append=append, prepend=prepend)


_PRINTABLE = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))
_ASCII = st.sampled_from(string.ascii_letters + string.digits + " -_.:#'\"\\/")


def texts(low: int, high: int) -> st.SearchStrategy[str]:
    """Printable text, any script: iptables may cut a long value inside a character."""
    return st.text(_PRINTABLE, min_size=low, max_size=high)


SHORT_COMMENTS = (
    "mesh",
    "a b",
    'it\'s "quoted"',
    "# not a comment",
    "ünïcödé ☃ 😀",
    "back\\slash",
    "  blanks around  ",
    "COMMIT",
    "-j DROP",
    "a\u2028b",
)
COMMENTS = st.one_of(st.sampled_from(SHORT_COMMENTS), texts(1, 30), texts(200, 300))
PLACES = ("@net1", "@net2", "@host1", "@host2", "@host1/32")
IFACES = ("wg0", "eth0", "lo")
PORTS = ("22", "80", "443")


@st.composite
def rule_specs(draw: st.DrawFn, table: str, chain: str) -> tuple[str, ...]:
    tokens: list[str] = []
    if draw(st.booleans()):
        tokens += [draw(st.sampled_from(("-s", "--source"))), draw(st.sampled_from(PLACES))]
    if draw(st.integers(0, 3)) == 3:
        tokens += ["-d", draw(st.sampled_from(PLACES))]
    iface = draw(st.integers(0, 5))
    if iface == 4:
        tokens += ["-i", draw(st.sampled_from(IFACES))]
    elif iface == 5:
        tokens += ["-o", draw(st.sampled_from(IFACES))]
    port = draw(st.integers(0, 5))
    if port == 3:
        tokens += ["-p", "tcp", "--dport", draw(st.sampled_from(PORTS))]
    elif port == 4:
        tokens += ["-p", "tcp", "-m", "tcp", "--dport", draw(st.sampled_from(PORTS))]
    elif port == 5:
        tokens += ["-p", "udp", "--dport", draw(st.sampled_from(PORTS))]
    if draw(st.integers(0, 2)) == 2:
        tokens += ["-m", "comment", "--comment", draw(COMMENTS)]
    target = draw(st.sampled_from(("ACCEPT", "DROP", "RETURN", "LOG", "NFLOG", "jump", "none")))
    if target == "LOG":
        tokens += ["-j", "LOG", "--log-prefix", draw(st.one_of(texts(1, 20), texts(30, 60)))]
    elif target == "NFLOG":
        tokens += ["-j", "NFLOG", "--nflog-prefix", draw(st.one_of(texts(1, 20), texts(60, 80)))]
    elif target == "jump":
        others = [c for c in USER_CHAINS[table] if c != chain]
        if others:
            tokens += [draw(st.sampled_from(("-j", "--jump"))), draw(st.sampled_from(others))]
    elif target != "none":
        tokens += ["-j", target]
    return tuple(tokens)


@st.composite
def set_bps(draw: st.DrawFn) -> SetBP:
    nat = draw(st.integers(0, 4)) == 4
    user = draw(st.lists(st.sampled_from(USER_CHAINS["filter"]), unique=True, max_size=3))
    chains: list[ChainRef] = [("filter", c) for c in user]
    if nat and draw(st.booleans()):
        chains.append(("nat", "SM-N"))
    homes = [("filter", c) for c in HOMES["filter"]] + chains
    if nat:
        homes += [("nat", c) for c in HOMES["nat"]]
    # Now and then a chain nobody creates: iptables refuses the rules in it.
    strays = [("filter", c) for c in USER_CHAINS["filter"] if c not in user]
    places = (
        st.sampled_from(homes + strays) if strays and draw(st.integers(0, 5)) == 5 else st.sampled_from(homes)
    )
    count = draw(st.integers(0, 7))
    rules: list[RuleBP] = []
    for _ in range(count):
        table, chain = draw(places)
        where = draw(st.sampled_from(("append", "prepend")))
        rules.append(RuleBP(where, table, chain, draw(rule_specs(table, chain))))
    return SetBP(tuple(chains), tuple(rules))


_RESPELL = {"-s": "--source", "--source": "-s", "-j": "--jump", "--jump": "-j", "-d": "--destination"}


def respelled(spec: tuple[str, ...]) -> tuple[str, ...]:
    """The same rule by meaning, spelled otherwise where the spec allows it."""
    out: list[str] = []
    for i, token in enumerate(spec):
        before = spec[i - 1] if i else ""
        if before == "--comment" or before.endswith("-prefix"):
            out.append(token)
        elif token in _RESPELL:
            out.append(_RESPELL[token])
        elif token.startswith("@host") and "/" not in token:
            out.append(token + "/32")
        elif token == "--dport" and "-m" not in spec:
            out += ["-m", spec[spec.index("-p") + 1], "--dport"]
        else:
            out.append(token)
    return tuple(out)


def variant(bp: SetBP, kind: str, i: int, j: int) -> SetBP:
    """A rule set close to ``bp``: what an agent's next ``set()`` often looks like."""
    rules = list(bp.rules)
    chains = list(bp.chains)
    if not rules:
        return bp
    i, j = i % len(rules), j % len(rules)
    if kind == "swap":
        rules[i], rules[j] = rules[j], rules[i]
    elif kind == "drop":
        del rules[i]
    elif kind == "reverse":
        rules.reverse()
    elif kind == "flip":
        r = rules[i]
        rules[i] = RuleBP("prepend" if r.where == "append" else "append", r.table, r.chain, r.spec)
    elif kind == "respell":  # the same rule twice by meaning: refused
        r = rules[i]
        rules.insert(j, RuleBP(r.where, r.table, r.chain, respelled(r.spec)))
    elif kind == "unchain" and chains:  # its rules stay: so does the chain, while they need it
        chains.pop(i % len(chains))
    elif kind == "rotate":
        rules = rules[i:] + rules[:i]
    elif kind == "loop":  # jumps in a circle, reachable from INPUT
        users = [c for t, c in chains if t == "filter"] or ["SM-A"]
        first, second = users[i % len(users)], users[j % len(users)]
        chains += [("filter", c) for c in (first, second) if ("filter", c) not in chains]
        rules += [
            RuleBP("append", "filter", first, ("-s", "@net1", "-j", second)),
            RuleBP("append", "filter", second, ("-s", "@net2", "-j", first)),
            RuleBP("append", "filter", "INPUT", ("-j", first)),
        ]
    return SetBP(tuple(chains), tuple(rules))


VARIANTS = ("swap", "drop", "reverse", "flip", "respell", "unchain", "rotate", "loop", "same")


# -- what is read behind the controller's back ------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """Every chain of the tables in play, as read behind the controller's back."""

    chains: dict[ChainRef, ChainListing]

    def keys(self, ref: ChainRef) -> tuple[RuleKey, ...]:
        listing = self.chains.get(ref)
        return listing.keys if listing is not None else ()

    def specs(self, ref: ChainRef) -> tuple[tuple[str, ...], ...]:
        listing = self.chains.get(ref)
        return listing.specs if listing is not None else ()

    def show(self, ref: ChainRef) -> str:
        lines = [
            f"  {n + 1}: {spec[1]!r}" if spec and spec[0] == OPAQUE else f"  {n + 1}: {join_tokens(spec)}"
            for n, spec in enumerate(self.specs(ref))
        ]
        return f"{ref[0]} {ref[1]}:\n" + ("\n".join(lines) or "  (empty)")

    def fingerprint(self) -> int:
        return hash(tuple(sorted((ref, listing.specs) for ref, listing in self.chains.items())))


def jump_of(spec: Sequence[str]) -> str | None:
    for flag, value in itertools.pairwise(spec):
        if flag in ("-j", "--jump", "-g", "--goto"):
            return value
    return None


def subsequence(wanted: Sequence[RuleKey], keys: Sequence[RuleKey]) -> bool:
    it = iter(keys)
    return all(any(key == k for k in it) for key in wanted)


@dataclass
class Printer:
    """How the backend prints each rule, asked of the backend itself: a scratch chain in the
    raw table (never used by a rule set here), or a scratch fake."""

    client: Client
    proto: Protocol
    known: dict[tuple[str, ...], RuleKey] = field(default_factory=dict)

    async def learn(self, specs: Iterable[tuple[str, ...]]) -> None:
        todo = list(dict.fromkeys(s for s in specs if s not in self.known))
        if not todo:
            return
        try:
            await self._print(todo)
        except IPTablesError:  # one of them is refused even in a user chain: one at a time
            for spec in todo:
                try:
                    await self._print([spec])
                except IPTablesError:
                    self.known[spec] = Rule.from_printed("raw", ORACLE, spec, self.proto).canonical

    async def _print(self, specs: list[tuple[str, ...]]) -> None:
        targets = [c for chains in USER_CHAINS.values() for c in chains]
        lines = ["*raw", f":{ORACLE} - [0:0]", *(f":{c} - [0:0]" for c in targets)]
        lines += [f"-A {ORACLE} {join_tokens(spec)}" for spec in specs]
        await self.client.restore("\n".join([*lines, "COMMIT", ""]))
        keys = parse_save(await self.client.save("raw"), self.proto)["raw"].chain(ORACLE).keys
        assert len(keys) == len(specs), f"the oracle chain holds {len(keys)} rules, not {len(specs)}"
        self.known.update(zip(specs, keys, strict=True))

    def __getitem__(self, spec: tuple[str, ...]) -> RuleKey:
        return self.known[spec]


@dataclass(frozen=True)
class Wanted:
    """What the rule set in force asks of each chain, as the backend prints it: (rule as
    given or None for a chain marker, printed key) in order, prepend and append apart."""

    prepend: dict[ChainRef, list[tuple[Rule | None, RuleKey]]]
    append: dict[ChainRef, list[tuple[Rule | None, RuleKey]]]
    chains: frozenset[ChainRef]
    #: Chains the rule set no longer declares, kept while its rules live in them or jump to them.
    kept: frozenset[ChainRef] = frozenset()
    #: With an owner, how the backend prints the owner's chain marker.
    marker: RuleKey | None = None

    def counts(self, ref: ChainRef, marked: bool = False) -> Counter[RuleKey]:
        found = Counter(k for _, k in [*self.prepend.get(ref, []), *self.append.get(ref, [])])
        if marked and self.marker is not None and ref in self.chains | self.kept:
            found[self.marker] += 1
        return found


def tag(rule: Rule, owner: str | None) -> Rule:
    if owner is None:
        return rule
    return Rule(
        rule.table, rule.chain, (*rule.spec, "-m", "comment", "--comment", owner_tag(owner)), rule.proto
    )


def marker(owner: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", chain_tag(owner))


def needed_by(ruleset: RuleSet) -> set[ChainRef]:
    """The chains the rules of ``ruleset`` live in or jump to."""
    used = set()
    for item in ruleset:
        if isinstance(item, Rule):
            used.add((item.table, item.chain))
            target = jump_of(item.spec)
            if target is not None:
                used.add((item.table, target))
    return used


def chains_of(ruleset: RuleSet) -> set[ChainRef]:
    """Every chain a reconcile of ``ruleset`` reads."""
    return {(i.table, i.name) if isinstance(i, Chain) else (i.table, i.chain) for i in ruleset}


def could_be_refused(rule: Rule, seen: Seen) -> bool:
    """Whether iptables may refuse ``rule``: ``-i`` where packets only leave, ``-o`` where they
    only arrive, DROP in nat, a jump to a user chain (missing, going away, or closing a loop),
    or a chain that does not exist."""
    if rule.chain in ("OUTPUT", "POSTROUTING") and "-i" in rule.spec:
        return True
    if rule.chain in ("INPUT", "PREROUTING") and "-o" in rule.spec:
        return True
    target = jump_of(rule.spec)
    if rule.table == "nat" and target == "DROP":
        return True
    if target is not None and target in USER_CHAINS.get(rule.table, ()):
        return True
    return (rule.table, rule.chain) not in seen.chains


# -- the machine ----------------------------------------------------------------------------------


@dataclass
class Figures:
    examples: int = 0
    steps: int = 0
    states: set[int] = field(default_factory=set)
    kinds: Counter[str] = field(default_factory=Counter)

    def line(self, name: str) -> str:
        top = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
        return f"{name}: {self.examples} examples, {self.steps} steps, {len(self.states)} distinct states ({top})"


@dataclass(frozen=True)
class Config:
    kind: str
    netns: str | None
    proto: Protocol
    owner: str | None
    figures: Figures


def step(
    fn: Callable[Concatenate[ControllerMachine, P], None],
) -> Callable[Concatenate[ControllerMachine, P], None]:
    """Count the step, mark the machine busy while it runs (teardown skips its checks after a
    failed step), and check convergence after it when asked to."""

    @functools.wraps(fn)
    def wrapper(machine: ControllerMachine, /, *args: P.args, **kwargs: P.kwargs) -> None:
        machine.busy = True
        machine.figures.steps += 1
        machine.figures.kinds[fn.__name__] += 1
        fn(machine, *args, **kwargs)
        if kwargs.get("then_converge"):
            machine.converge()
        machine.figures.states.add(machine.seen.fingerprint())
        machine.busy = False

    return wrapper


THEN = st.booleans()
FOREIGN_KINDS = ("plain", "jump", "log", "nflog", "comment", "odd", "newline")
NEWLINE_TAILS = st.one_of(
    st.sampled_from(("b", "-A INPUT -j DROP", '" -j ACCEPT', "COMMIT", "")), texts(1, 20)
)


class ControllerMachine(RuleBasedStateMachine):
    """A Controller, a foreign actor, and a model of what each of them may do."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.proto = config.proto
        self.owner = config.owner
        self.figures = config.figures
        self.figures.examples += 1
        self.busy = False
        if config.kind == "fake":
            self.world = World("fake")
            oracle: Client = FakeClient(self.proto, runner=FakeRunner())
        else:
            self.world = World(config.kind, config.netns)
            oracle = self.world.client(self.proto)
        self.observer = self.world.client(self.proto)
        if self.world.real:
            # A fresh start in the test's one namespace: cheaper than a namespace per example.
            run(self.observer.restore, "*filter\nCOMMIT\n*nat\nCOMMIT\n*raw\nCOMMIT\n", noflush=False)
        self.printer = Printer(oracle, self.proto)
        client = self.world.client(self.proto)
        self.controller = (
            Controller(client, owner=self.owner)
            if self.proto is V4
            else Controller(None, client, owner=self.owner)
        )
        self.tables = {"filter"}
        self.ruleset = RuleSet()
        self.bp: SetBP | None = None
        self.wanted = Wanted({}, {}, frozenset())
        # The foreign actor's rules: distinct ones (a key of their own) in order per chain,
        # copies identical to one of ours by number, and the argv each was written with.
        self.distinct: dict[ChainRef, list[RuleKey]] = {}
        self.copies: dict[ChainRef, Counter[RuleKey]] = {}
        self.argv_of: dict[RuleKey, tuple[str, ...]] = {}
        self.next_id = 1
        # Chains the controller created (it may delete them) and chains the actor created.
        self.ctl_chains: set[ChainRef] = set()
        self.actor_chains: set[ChainRef] = set()
        # Lines of ours the actor deleted or moved since the controller last read: a copy of
        # one of them now would be a riddle nobody can solve (ours, or the copy?).
        self.touched: set[tuple[ChainRef, RuleKey]] = set()
        self.seen = self.observe()

    # -- reading and checking --------------------------------------------------------------------

    def observe(self) -> Seen:
        chains: dict[ChainRef, ChainListing] = {}
        for table in sorted(self.tables):
            snapshot = parse_save(run(self.observer.save, table), self.proto)[table]
            for name in snapshot.names:
                chains[(table, name)] = snapshot.chain(name)
        return Seen(chains)

    def existing(self, *, user_only: bool = False) -> list[ChainRef]:
        return [
            ref
            for ref in sorted(self.seen.chains)
            if (ref[1] in USER_CHAINS.get(ref[0], ()) or (not user_only and ref[1] in HOMES[ref[0]]))
        ]

    def may_remove(self, ref: ChainRef, before: Seen) -> bool:
        if ref in self.ctl_chains:
            return True
        return self.owner is not None and self.printer[marker(self.owner)] in before.keys(ref)

    def forget(self, ref: ChainRef, *, by_controller: bool) -> None:
        """A chain is gone: so are the foreign rules in it. When the actor deleted it, the
        controller may go on taking it for its own until it reads it and finds it gone."""
        self.distinct.pop(ref, None)
        self.copies.pop(ref, None)
        self.actor_chains.discard(ref)
        if by_controller:
            self.ctl_chains.discard(ref)

    def check(
        self, before: Seen, after: Seen, what: str, *, controller: bool, read: Iterable[ChainRef] = ()
    ) -> None:
        for ref in before.chains:
            if ref not in after.chains:
                if controller:
                    assert self.may_remove(ref, before), (
                        f"{what} deleted the chain {ref}, which it did not create\n{before.show(ref)}"
                    )
                self.forget(ref, by_controller=controller)
        # A chain of ours the actor deleted, read by the controller and found gone: no longer ours.
        self.ctl_chains -= {ref for ref in read if ref not in after.chains}
        for ref in after.chains:
            if ref[1] in BUILTINS[ref[0]]:
                continue
            if controller and ref not in before.chains:
                self.ctl_chains.add(ref)
            if ref[1] != ORACLE:
                assert ref in self.ctl_chains | self.actor_chains, f"{what}: where does {ref} come from?"
        for ref in after.chains:
            keys = after.keys(ref)
            distinct = self.distinct.get(ref, [])
            known = set(distinct)
            found = [k for k in keys if k in known]
            assert found == distinct, (
                f"{what}: the foreign rules of {ref} changed: expected, in this order,\n"
                + "\n".join(f"  {k}" for k in distinct)
                + f"\n{after.show(ref)}\nbefore: {before.show(ref)}"
            )
            counts = Counter(keys)
            copies = self.copies.get(ref, Counter())
            for key, n in copies.items():
                assert counts[key] >= n, (
                    f"{what}: {n} foreign copies of {key} were in {ref}, {counts[key]} are left\n"
                    f"{after.show(ref)}\nbefore: {before.show(ref)}"
                )
            ours = counts - Counter(distinct) - copies
            extra = ours - self.wanted.counts(ref, self.marked(ref))
            assert not extra, (
                f"{what}: {ref} holds lines nobody asked for (or more copies than asked): "
                f"{dict(extra)}\n{after.show(ref)}\nbefore: {before.show(ref)}"
            )

    def check_in_place(self, seen: Seen, refused: set[Rule], what: str) -> None:
        for ref in self.wanted.chains:
            assert ref in seen.chains, f"after {what}, the chain {ref} of the rule set is missing"
        for group in (self.wanted.prepend, self.wanted.append):
            refs = set(group)
            if group is self.wanted.prepend:
                refs |= {ref for ref in self.wanted.chains if self.marked(ref)}
            for ref in refs:
                keys = [k for given, k in group.get(ref, []) if given is None or given not in refused]
                if group is self.wanted.prepend and self.marked(ref) and ref in self.wanted.chains:
                    assert self.wanted.marker is not None
                    keys.insert(0, self.wanted.marker)  # decorate() puts it before the prepend rules
                assert subsequence(keys, seen.keys(ref)), (
                    f"after {what}, the rules of {ref} are not in place and in order "
                    f"({'prepend' if group is self.wanted.prepend else 'append'}; refused: {refused}):\n"
                    + "\n".join(f"  {join_tokens(k)}" for k in keys)
                    + f"\n{seen.show(ref)}"
                )

    # -- the controller --------------------------------------------------------------------------

    def expect(self, ruleset: RuleSet, kept: frozenset[ChainRef] = frozenset()) -> Wanted:
        """What ``ruleset`` asks of each chain, printed as the backend prints it (chain markers
        apart: a chain is marked only while it is the controller's)."""
        prepend: dict[ChainRef, list[tuple[Rule | None, RuleKey]]] = {}
        append: dict[ChainRef, list[tuple[Rule | None, RuleKey]]] = {}
        pairs: list[
            tuple[dict[ChainRef, list[tuple[Rule | None, RuleKey]]], ChainRef, Rule | None, Rule]
        ] = []
        chains = set()
        for item in ruleset.append:
            if isinstance(item, Chain):
                chains.add((item.table, item.name))
            else:
                pairs.append((append, (item.table, item.chain), item, tag(item, self.owner)))
        pairs += [(prepend, (r.table, r.chain), r, tag(r, self.owner)) for r in ruleset.prepend]
        marked = [] if self.owner is None else [marker(self.owner)]
        run(self.printer.learn, [*marked, *(written.spec for *_, written in pairs)])
        for group, ref, as_given, written in pairs:
            group.setdefault(ref, []).append((as_given, self.printer[written.spec]))
        printed_marker = self.printer[marked[0]] if marked else None
        return Wanted(prepend, append, frozenset(chains), kept, printed_marker)

    def marked(self, ref: ChainRef) -> bool:
        """Whether the controller's marker belongs in ``ref``: a chain of the rule set (or kept
        for it) that the controller made; a chain that was there before it is never marked."""
        return self.owner is not None and ref in self.ctl_chains

    def call(self, what: str, fn: Callable[..., Awaitable[None]], *args: Any) -> set[Rule]:
        """Run a controller method; the rules it reports refused (as given)."""
        try:
            run(fn, *args)
        except RulesRefusedError as exc:
            self.touched.clear()
            for refused in exc.refused:
                assert "could not be recognized" not in refused.message, f"{what}: {exc}"
            return {r.rule for r in exc.refused}
        except InvalidRuleError:
            raise
        except Exception as exc:
            exc.add_note(f"raised by {what} ({self.config.kind} {self.proto.value} owner={self.owner})")
            raise
        self.touched.clear()  # the controller has read every chain of ours since
        return set()

    def after_controller(
        self, before: Seen, refused: set[Rule], what: str, read: Iterable[ChainRef], *, in_place: bool = True
    ) -> None:
        after = self.observe()
        self.check(before, after, what, controller=True, read=read)
        for r in refused:
            assert could_be_refused(r, after), f"{what}: iptables cannot have refused {r}"
        if in_place:
            self.check_in_place(after, refused, what)
        self.seen = after

    def apply(self, ruleset: RuleSet, bp: SetBP | None) -> None:
        for item in ruleset:
            self.tables.add(item.table)
        previous = self.ruleset
        declared = {(c.table, c.name) for c in ruleset if isinstance(c, Chain)}
        kept = frozenset((self.wanted.chains | self.wanted.kept) & needed_by(ruleset) - declared)
        wanted = self.expect(ruleset, kept)
        self.seen = self.observe() if self.tables != {t for t, _ in self.seen.chains} else self.seen
        before = self.seen
        calls = self.controller.calls
        try:
            refused = self.call("set()", self.controller.set, ruleset)
        except InvalidRuleError:
            assert self.controller.calls == calls, "set() ran processes before refusing the rule set"
            assert (self.controller.append_rules, self.controller.prepend_rules) == (
                previous.append,
                previous.prepend,
            ), "a refused rule set replaced the one in force"
            return
        self.ruleset, self.wanted, self.bp = ruleset, wanted, bp
        self.after_controller(before, refused, "set()", chains_of(previous) | chains_of(ruleset))

    @initialize(bp=set_bps(), then_converge=THEN)
    @step
    def start(self, bp: SetBP, then_converge: bool) -> None:
        """Every run starts with a rule set."""
        self.set_rules_now(bp)

    @rule(bp=set_bps(), then_converge=THEN)
    @step
    def set_rules(self, bp: SetBP, then_converge: bool) -> None:
        self.set_rules_now(bp)

    def set_rules_now(self, bp: SetBP) -> None:
        try:
            ruleset = bp.ruleset(self.proto)
        except InvalidRuleError:
            return  # refused by the model, before the controller sees it
        self.apply(ruleset, bp)

    @precondition(lambda self: self.bp is not None and bool(self.bp.rules))
    @rule(
        kind=st.sampled_from(VARIANTS),
        i=st.integers(0, 100),
        j=st.integers(0, 100),
        then_converge=THEN,
    )
    @step
    def set_variant(self, kind: str, i: int, j: int, then_converge: bool) -> None:
        assert self.bp is not None
        bp = variant(self.bp, kind, i, j)
        try:
            ruleset = bp.ruleset(self.proto)
        except InvalidRuleError:
            return
        self.apply(ruleset, bp)

    @rule(then_converge=THEN)
    @step
    def reconcile(self, then_converge: bool) -> None:
        before = self.seen
        refused = self.call("reconcile()", self.controller.reconcile)
        self.after_controller(before, refused, "reconcile()", chains_of(self.ruleset))

    @rule(then_converge=THEN)
    @step
    def cleanup(self, then_converge: bool) -> None:
        self.do_cleanup()

    def do_cleanup(self) -> None:
        before = self.seen
        refused = self.call("cleanup()", self.controller.cleanup)
        assert not refused, f"cleanup() reported refused rules: {refused}"
        read = chains_of(self.ruleset)
        self.ruleset, self.wanted, self.bp = RuleSet(), Wanted({}, {}, frozenset()), None
        self.after_controller(before, set(), "cleanup()", read, in_place=False)
        jumped = {(t, jump_of(s)) for (t, c) in self.seen.chains for s in self.seen.specs((t, c))}
        for ref in self.seen.chains:
            if ref in self.ctl_chains:
                assert ref in jumped, f"cleanup() left the chain {ref}, and nothing jumps to it"

    def converge(self) -> None:
        """Two reconciles leave every rule in place; a third writes nothing."""
        refused: set[Rule] = set()
        for n in (1, 2):
            before = self.seen
            refused = self.call(f"reconcile() #{n} of a convergence check", self.controller.reconcile)
            self.after_controller(
                before, refused, f"reconcile() #{n} of a convergence check", chains_of(self.ruleset)
            )
        self.call("reconcile() #3 of a convergence check", self.controller.reconcile)
        assert self.controller.last_stats["writes"] == 0, (
            f"a third reconcile still wrote: {[p.payload for p in self.controller.last_plans]}"
        )

    # -- the foreign actor -----------------------------------------------------------------------

    def actor(self, *args: str) -> None:
        run(self.world.iptables, self.proto, *args)

    def actor_may_fail(self, *args: str) -> bool:
        """An actor's write iptables may refuse (a copy of a rule it refused from us)."""
        try:
            self.actor(*args)
        except AssertionError:
            return False
        return True

    def foreign_address(self, n: int) -> str:
        return f"192.0.2.{n % 250 + 1}/32" if self.proto is V4 else f"2001:db8::{n:x}/128"

    def foreign_spec(self, kind: str, n: int, ref: ChainRef, text: str, tail: str) -> tuple[str, ...]:
        tag = f"fx{n}"
        if kind == "jump" and ref[1] in BUILTINS[ref[0]]:
            targets = [c for t, c in self.existing(user_only=True) if t == ref[0]]
            if targets:
                return ("-s", self.foreign_address(n), "-j", targets[n % len(targets)])
        if kind == "log":
            return ("-j", "LOG", "--log-prefix", f"{tag}-{text}{'l' * 60}"[: 30 + n % 31])
        if kind == "nflog":
            return ("-j", "NFLOG", "--nflog-prefix", f"{tag}-{text}{'n' * 80}"[: 60 + n % 21])
        if kind == "comment":
            return ("-m", "comment", "--comment", f"{tag} {text}{'c' * 300}"[: 200 + n % 101], "-j", "ACCEPT")
        if kind == "odd":
            return ("-m", "comment", "--comment", f'{tag} it\'s "odd" # {text}')
        if kind == "newline":
            return ("-m", "comment", "--comment", f"{tag}\n{tail}", "-j", "ACCEPT")
        verdicts = ("ACCEPT", "RETURN") if ref[0] == "nat" else ("ACCEPT", "DROP", "RETURN")  # no DROP in nat
        return ("-s", self.foreign_address(n), "-j", verdicts[n % len(verdicts)])

    def insert(self, ref: ChainRef, at: int, spec: tuple[str, ...]) -> tuple[Seen, int] | None:
        """Write ``spec`` into ``ref`` (``at`` 0: append, else a position); the new state and
        the index of the new line (None when iptables refused it)."""
        table, chain = ref
        count = len(self.seen.specs(ref))
        if at == 0:
            done = self.actor_may_fail("-t", table, "-A", chain, *spec)
            index = count
        else:
            position = at % (count + 1) + 1
            done = self.actor_may_fail("-t", table, "-I", chain, str(position), *spec)
            index = position - 1
        if not done:
            return None
        after = self.observe()
        assert len(after.specs(ref)) == count + 1, f"the actor's rule is not one line\n{after.show(ref)}"
        return after, index

    @rule(
        kind=st.sampled_from(FOREIGN_KINDS),
        text=texts(0, 40),
        tail=NEWLINE_TAILS,
        where=st.integers(0, 1000),
        at=st.integers(0, 1000),
        then_converge=THEN,
    )
    @step
    def foreign_rule(self, kind: str, text: str, tail: str, where: int, at: int, then_converge: bool) -> None:
        refs = self.existing()
        ref = refs[where % len(refs)]
        n, self.next_id = self.next_id, self.next_id + 1
        spec = self.foreign_spec(kind, n, ref, text, tail)
        before = self.seen
        inserted = self.insert(ref, at, spec)
        if inserted is None and kind == "jump":
            return  # the jump would make a loop of ours reachable: iptables refuses it too
        assert inserted is not None, f"iptables refused the foreign rule {spec}"
        after, index = inserted
        key = after.keys(ref)[index]
        distinct = self.distinct.setdefault(ref, [])
        assert key not in distinct and key not in self.copies.get(ref, ()), f"not distinct: {key}"
        above = sum(1 for k in after.keys(ref)[:index] if k in set(distinct))
        distinct.insert(above, key)
        self.argv_of[key] = spec
        self.check(before, after, f"foreign rule {kind} into {ref}", controller=False)
        self.seen = after

    @precondition(lambda self: any(isinstance(i, Rule) for i in self.ruleset))
    @rule(pick=st.integers(0, 1000), at=st.integers(0, 1000), then_converge=THEN)
    @step
    def foreign_copy(self, pick: int, at: int, then_converge: bool) -> None:
        # With an owner, ours carry its tag: the copy is the rule as the user gave it.
        rules = [r for r in self.ruleset if isinstance(r, Rule) and (r.table, r.chain) in self.seen.chains]
        if not rules:
            return
        original = rules[pick % len(rules)]
        ref = (original.table, original.chain)
        run(self.printer.learn, [original.spec])
        if (ref, self.printer[original.spec]) in self.touched:
            return
        before = self.seen
        inserted = self.insert(ref, at, original.spec)
        if inserted is None:
            return  # iptables refuses the rule (as it refused ours)
        after, index = inserted
        key = after.keys(ref)[index]
        self.copies.setdefault(ref, Counter())[key] += 1
        self.argv_of[key] = original.spec
        self.check(before, after, f"foreign copy of {original}", controller=False)
        self.seen = after

    def lone_lines(self) -> list[tuple[ChainRef, int]]:
        """Lines whose key is alone in its chain: deleting or moving one of them is no riddle."""
        found = []
        for ref in self.existing():
            counts = Counter(self.seen.keys(ref))
            found += [(ref, i) for i, k in enumerate(self.seen.keys(ref)) if counts[k] == 1]
        return found

    def touch(self, ref: ChainRef, indexes: Iterable[int]) -> None:
        """Lines of ours the actor is about to delete: no copy of them until the controller reads."""
        keys = self.seen.keys(ref)
        self.touched |= {(ref, keys[i]) for i in indexes if not self.is_foreign(ref, keys[i])}

    def is_foreign(self, ref: ChainRef, key: RuleKey) -> bool:
        return key in self.distinct.get(ref, ()) or self.copies.get(ref, Counter())[key] > 0

    @rule(pick=st.integers(0, 1000), then_converge=THEN)
    @step
    def delete_ours(self, pick: int, then_converge: bool) -> None:
        lines = [(ref, i) for ref, i in self.lone_lines() if not self.is_foreign(ref, self.seen.keys(ref)[i])]
        if not lines:
            return
        (table, chain), index = lines[pick % len(lines)]
        before = self.seen
        self.touched.add(((table, chain), self.seen.keys((table, chain))[index]))
        self.actor("-t", table, "-D", chain, str(index + 1))
        after = self.observe()
        self.check(before, after, f"deleting line {index + 1} of {table} {chain}", controller=False)
        self.seen = after

    @rule(where=st.integers(0, 1000), then_converge=THEN)
    @step
    def flush_chain(self, where: int, then_converge: bool) -> None:
        refs = self.existing()
        ref = refs[where % len(refs)]
        before = self.seen
        self.touch(ref, range(len(self.seen.keys(ref))))
        self.actor("-t", ref[0], "-F", ref[1])
        self.distinct.pop(ref, None)
        self.copies.pop(ref, None)
        after = self.observe()
        self.check(before, after, f"flushing {ref}", controller=False)
        self.seen = after

    @rule(pick=st.integers(0, 1000), top=st.booleans(), then_converge=THEN)
    @step
    def reorder(self, pick: int, top: bool, then_converge: bool) -> None:
        lines = self.lone_lines()
        if not lines:
            return
        ref, index = lines[pick % len(lines)]
        key = self.seen.keys(ref)[index]
        spec = self.argv_of[key] if self.is_foreign(ref, key) else self.seen.specs(ref)[index]
        if spec and spec[0] == OPAQUE:
            return
        if any("\ufffd" in token for token in spec):
            # Read back with half a character cut off: written again it would be another
            # rule (U+FFFD in place of the byte). Moving it needs its bytes (iptables-save).
            return
        self.touch(ref, [index])
        before = self.seen
        table, chain = ref
        self.actor("-t", table, "-D", chain, str(index + 1))
        if top:
            self.actor("-t", table, "-I", chain, "1", *spec)
        else:
            self.actor("-t", table, "-A", chain, *spec)
        distinct = self.distinct.get(ref, [])
        if key in distinct:
            distinct.remove(key)
            distinct.insert(0 if top else len(distinct), key)
        after = self.observe()
        self.check(
            before,
            after,
            f"moving line {index + 1} of {ref} to the {'top' if top else 'bottom'}",
            controller=False,
        )
        self.seen = after

    @rule(where=st.integers(0, 1000), then_converge=THEN)
    @step
    def delete_chain(self, where: int, then_converge: bool) -> None:
        refs = self.existing(user_only=True)
        if not refs:
            return
        table, doomed = refs[where % len(refs)]
        before = self.seen
        for ref in self.existing():
            if ref[0] != table or ref[1] == doomed:
                continue
            jumps = [i for i, spec in enumerate(self.seen.specs(ref)) if jump_of(spec) == doomed]
            self.touch(ref, jumps)
            for index in reversed(jumps):
                key = self.seen.keys(ref)[index]
                if key in self.distinct.get(ref, []):
                    self.distinct[ref].remove(key)
                self.copies.get(ref, Counter()).pop(key, None)
                self.actor("-t", table, "-D", ref[1], str(index + 1))
        self.touch((table, doomed), range(len(self.seen.keys((table, doomed)))))
        self.actor("-t", table, "-F", doomed)
        self.actor("-t", table, "-X", doomed)
        after = self.observe()
        self.check(before, after, f"deleting the chain {table} {doomed}", controller=False)
        self.seen = after

    @rule(name=st.sampled_from([*USER_CHAINS["filter"], *USER_CHAINS["nat"]]), then_converge=THEN)
    @step
    def foreign_chain(self, name: str, then_converge: bool) -> None:
        table = "nat" if name in USER_CHAINS["nat"] else "filter"
        if table not in self.tables or (table, name) in self.seen.chains:
            return
        if (table, name) in self.ctl_chains:
            # Deleted behind the controller's back and not read since: a chain made again
            # now is a riddle (nobody can tell it from the one the controller made).
            return
        before = self.seen
        self.actor("-t", table, "-N", name)
        self.actor_chains.add((table, name))
        after = self.observe()
        self.check(before, after, f"creating the chain {table} {name}", controller=False)
        self.seen = after

    def teardown(self) -> None:
        """Converge, clean up, and check nothing of ours is left once the foreign jumps to a
        chain of ours are gone (skipped after a failed step: that failure is the report)."""
        if self.busy:
            return
        self.converge()
        self.do_cleanup()
        stuck = [ref for ref in self.seen.chains if ref in self.ctl_chains]
        if not stuck:
            return
        for ref in self.existing():
            for index in reversed(
                [i for i, spec in enumerate(self.seen.specs(ref)) if (ref[0], jump_of(spec)) in stuck]
            ):
                key = self.seen.keys(ref)[index]
                if key in self.distinct.get(ref, []):
                    self.distinct[ref].remove(key)
                self.copies.get(ref, Counter()).pop(key, None)
                self.actor("-t", ref[0], "-D", ref[1], str(index + 1))
        self.seen = self.observe()
        before = self.seen
        self.call("reconcile() after cleanup()", self.controller.reconcile)
        self.after_controller(before, set(), "reconcile() after cleanup()", (), in_place=False)
        left = [ref for ref in self.seen.chains if ref in self.ctl_chains]
        assert not left, f"chains of ours still there once nothing jumps to them: {left}"


@pytest.mark.parametrize("owner", [None, "sm"], ids=["no-owner", "owner"])
def test_controller_against_a_foreign_actor(
    world: World, proto: Protocol, owner: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hypothesis.internal.conjecture.engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)
    figures = Figures()
    config = Config(world.kind, world.netns, proto, owner, figures)

    class Machine(ControllerMachine):
        def __init__(self) -> None:
            super().__init__(config)

    try:
        run_state_machine_as_test(Machine, settings=profile(EXAMPLES, stateful_step_count=STEPS))
    finally:
        print(figures.line(f"stateful {world.kind} {proto.value} owner={owner}"))


# -- the fake against real iptables ---------------------------------------------------------------

Command = tuple[str, ...]

FILTER_CHAINS = ("INPUT", "FORWARD", "OUTPUT", *USER_CHAINS["filter"])
#: Words no command takes where they are put: "Bad argument", "Invalid rule number".
EXTRA_WORDS = ("extra", "0", "x1")
#: Each replay starts from empty tables with the builtin chains' policies reset.
RESET = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


@st.composite
def replay_rules(draw: st.DrawFn, proto: Protocol) -> tuple[str, tuple[str, ...]]:
    """A chain and a rule for it: drawn as the controller's rules are, or a jump or goto
    between chains (the pieces of loops, reachable from a builtin chain or not), an
    unconditional verdict (where the legacy kernel's walk stops looking for loops), an
    interface option where packets only arrive or only leave."""
    kind = draw(st.sampled_from(("rule", "rule", "jump", "verdict", "hook")))
    chain = draw(st.sampled_from(FILTER_CHAINS))
    if kind == "jump":
        head = materialize(("-s", "@host1"), proto) if draw(st.booleans()) else ()
        target = draw(st.sampled_from(USER_CHAINS["filter"]))
        return chain, (*head, draw(st.sampled_from(("-j", "-g"))), target)
    if kind == "verdict":
        return chain, ("-j", draw(st.sampled_from(("ACCEPT", "DROP", "RETURN"))))
    if kind == "hook":
        flag = draw(st.sampled_from(("-i", "-o", "--in-interface", "--out-interface")))
        negated = ("!",) if draw(st.integers(0, 3)) == 3 else ()
        return chain, (*negated, flag, draw(st.sampled_from(IFACES)), "-j", "ACCEPT")
    return chain, materialize(draw(rule_specs("filter", chain)), proto)


@st.composite
def with_extra_words(draw: st.DrawFn, chain: str, n: str) -> Command:
    """A command given a word it does not take."""
    word = draw(st.sampled_from(EXTRA_WORDS))
    first, second = draw(st.permutations(USER_CHAINS["filter"]))[:2]
    return draw(
        st.sampled_from(
            (
                ("-F", chain, word),
                ("-X", first, word),
                ("-N", first, word),
                ("-E", first, second, word),
                ("-P", "INPUT", "DROP", word),
                ("-D", chain, n, word),
                ("-S", chain, word),
                ("-S", chain, n, word),
                ("-I", chain, word, "-j", "ACCEPT"),
            )
        )
    )


@st.composite
def payloads(draw: st.DrawFn, proto: Protocol) -> str:
    """A restore payload: lines as the controller writes them (rules added and deleted,
    user chains declared, which flushes them, flushed and deleted), builtin chains
    declared with a policy, and lines with words iptables-restore does not read or refuses."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        line = draw(
            st.sampled_from(("-A", "-I", "-D", ":", ":", ":policy", ":extra", "-F", "-X", "-N", "extra"))
        )
        user = draw(st.sampled_from(USER_CHAINS["filter"]))
        chain, spec = draw(replay_rules(proto))
        if line in ("-A", "-I", "-D"):
            at = f" {draw(st.integers(1, 3))}" if line == "-I" else ""
            lines.append(f"{line} {chain}{at} {join_tokens(spec)}".rstrip())
        elif line == ":":
            lines.append(f":{user} - [0:0]")
        elif line == ":policy":
            builtin = draw(st.sampled_from(HOMES["filter"]))
            lines.append(f":{builtin} {draw(st.sampled_from(('ACCEPT', 'DROP', '-')))} [0:0]")
        elif line == ":extra":  # iptables-restore reads no further than the policy
            lines.append(f":{user} - [0:0] {draw(st.sampled_from(EXTRA_WORDS))}")
        elif line == "extra":
            lines.append(f"{draw(st.sampled_from(('-F', '-X')))} {user} {draw(st.sampled_from(EXTRA_WORDS))}")
        else:
            lines.append(f"{line} {user}")
    return "\n".join(["*filter", *lines, "COMMIT", ""])


@st.composite
def commands(draw: st.DrawFn, proto: Protocol) -> Command:
    """One iptables command line (argv after the program), or ``("restore", payload)``."""
    kind = draw(
        st.sampled_from(
            (
                *("-A", "-A", "-I", "-D spec", "-D n", "-N", "-X", "-F", "-S", "-C", "-E", "-P"),
                *("extra", "restore", "restore", "newline"),
            )
        )
    )
    chain, spec = draw(replay_rules(proto))
    n = str(draw(st.integers(1, 4)))
    if kind in ("-A", "-C", "-D spec"):
        return (kind[:2], chain, *spec)
    if kind == "-I":
        return ("-I", chain, n, *spec) if draw(st.booleans()) else ("-I", chain, *spec)
    if kind == "-D n":
        return ("-D", chain, n)
    if kind == "-E":  # renaming a user chain (a builtin one cannot be)
        return ("-E", *draw(st.permutations(USER_CHAINS["filter"]))[:2])
    if kind in ("-N", "-X"):
        return (kind, draw(st.sampled_from(USER_CHAINS["filter"])))
    if kind == "-F":
        return ("-F", chain) if draw(st.booleans()) else ("-F",)
    if kind == "-S":
        return draw(st.sampled_from((("-S", chain), ("-S",), ("-S", chain, n))))
    if kind == "-P":
        return ("-P", draw(st.sampled_from(HOMES["filter"])), draw(st.sampled_from(("ACCEPT", "DROP"))))
    if kind == "extra":
        return draw(with_extra_words(chain, n))
    if kind == "newline":
        return ("-A", chain, "-m", "comment", "--comment", f"a\n{draw(NEWLINE_TAILS)}")
    return ("restore", draw(payloads(proto)))


def listing_tokens(text: str) -> list[list[str] | str]:
    """A ``-S`` listing as records: each rule split into tokens (quoting aside), other lines as
    they are."""
    lines = text.split("\n")
    chains = [line.split(" ")[1] for line in lines if line.startswith(("-P ", "-N "))]
    out: list[list[str] | str] = [line for line in lines if line.startswith(("-P ", "-N "))]
    for chain in chains or dict.fromkeys(line.split(" ")[1] for line in lines if line.startswith("-A ")):
        for record in rule_records(lines, chain):
            tokens = split_printed(record)
            out.append(tokens if tokens is not None else record)
    return out


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_the_fake_lists_what_iptables_lists(
    netns: str, backend: str, proto: Protocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake, on the same backend, answers each command as iptables does: the same exit
    status and the same words on stderr, and the same ``-S`` listings."""
    monkeypatch.setattr(hypothesis.internal.conjecture.engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)
    real = Client(proto, backend=backend, netns=netns)  # type: ignore[arg-type]
    program = proto.command
    # The fake imitates the version of the iptables it is held to ("iptables v1.8.9 (nf_tables)").
    printed = run(real.runner.run, [real.binaries.iptables, "--version"]).stdout.split()[1]
    major, minor, patch = (int(number) for number in printed.removeprefix("v").split("."))

    @given(script=st.lists(commands(proto), min_size=1, max_size=12))
    @profile(REPLAYS)
    def replay(script: list[Command]) -> None:
        run(real.restore, RESET, noflush=False)
        fake = FakeRunner(backend="nft" if backend == "nft" else "legacy", version=(major, minor, patch))
        for command in script:
            if command[0] == "restore":
                payload = command[1].encode()
                theirs = run(real.runner.run, [real.binaries.restore, "--noflush"], input=payload)
                ours = run(fake.run, [f"{program}-restore", "--noflush"], input=payload)
            else:
                theirs = run(real.runner.run, [real.binaries.iptables, "-w", "5", *command])
                ours = run(fake.run, [program, *command])
            said = (theirs.exit_status, theirs.stderr.strip())
            assert (ours.exit_status, ours.stderr.strip()) == said, (
                f"{join_tokens(list(command))!r}: iptables-{backend} exit {theirs.exit_status} "
                f"({theirs.stderr.strip()}), the fake exit {ours.exit_status} ({ours.stderr.strip()})"
            )
            if command[0] == "-S" and theirs.exit_status == 0:
                assert listing_tokens(ours.stdout) == listing_tokens(theirs.stdout), (
                    f"{command}: iptables-{backend} listed\n{theirs.stdout}the fake\n{ours.stdout}"
                )
        theirs = run(real.runner.run, [real.binaries.iptables, "-S"])
        ours = run(fake.run, [program, "-S"])
        assert listing_tokens(ours.stdout) == listing_tokens(theirs.stdout), (
            f"iptables-{backend} lists\n{theirs.stdout}the fake lists\n{ours.stdout}"
        )

    replay()
