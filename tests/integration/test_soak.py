"""Soak: another actor tampers with the controller's chains while ``run()`` goes on.

A rule set of four user chains and three builtin chains in ``filter`` and
``nat`` (append rules, several per chain, and prepend rules) is kept in place
by ``Controller.run()`` with a small resync. Meanwhile a seeded tamperer, a
bounded number of times, deletes owned rules, flushes chains, reorders rules
(to the end, or to the top), deletes whole owned chains (the jumps to them,
then the chain), and inserts foreign rules of its own (``foreign-N``
comments) anywhere, often at the top; sometimes several of these at once.

Each step is applied as one ``iptables-restore --noflush`` payload per table,
computed from the converged state before it, so a step lands atomically per
table and never races with its own parts. After each step the test waits,
bounded, until the controller has converged:

- every chain the rule set touches exists and holds each wanted rule exactly
  once, the prepend rules in their order and the append rules in theirs;
- every foreign rule put there (and not flushed away by the tamperer itself)
  is still there, in the same order among foreign rules: the controller
  never deletes or moves a rule it does not own.

It then runs one reconcile itself, which waits for any reconcile in flight
and must write nothing. Each reconcile reads both tables with one
``iptables-save`` each, plus one ``iptables-restore`` per table it writes; each
step needs at most one write per table it tampered with.

Reproduce a failure with the seed given in its message::

    AIOIPTABLES_SOAK_SEED=<seed> .venv/bin/python -m pytest -s tests/integration/test_soak.py -k '<id>'

``pytest -s`` shows the figures of each run (convergence median and max,
processes per reconcile).
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import time
import typing
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from aioiptables import Chain, Client, Controller, Protocol, Rule, RuleSet, canonicalize
from aioiptables.model import is_builtin_chain
from aioiptables.syntax import join_tokens, split_line

pytestmark = [pytest.mark.anyio, pytest.mark.iptables]

RESYNC = 0.05
#: Tampering operations per test (a step of several operations counts each).
OPERATIONS = 40
#: Every step must converge within this; past GIVE_UP the test fails.
CONVERGE_WITHIN = 2.0
GIVE_UP = 5.0
#: The whole test, however slow the machine: a hang fails, it never blocks.
DEADLINE = 120.0
POLL = 0.01
#: A reconcile reads each of the two tables with one iptables-save.
READS = 2
TABLES = ("filter", "nat")


class World(typing.Protocol):
    """What this test uses of conftest's ``world`` fixture (a World of the
    fake, of iptables-nft or of iptables-legacy in the test's namespace)."""

    kind: str

    def client(self, proto: Protocol = ..., **kwargs: Any) -> Client: ...

    async def iptables(self, proto: Protocol, *args: str) -> str: ...


Spec = tuple[str, ...]
#: table -> chain -> the specs of its rules, in order; a chain is there iff it exists.
State = dict[str, dict[str, list[Spec]]]
ChainRef = tuple[str, str]


def subnets(proto: Protocol) -> tuple[str, str]:
    if proto is Protocol.IPV4:
        return "10.4.0.0/16", "10.5.0.0/16"
    return "fd00:4::/64", "fd00:5::/64"


def soak_rules(proto: Protocol) -> RuleSet:
    """Four user chains (two per table, one jumping to the other), three
    builtin chains, append rules (several per chain) and prepend rules, some
    of them in the same chain as append rules."""
    net, other = subnets(proto)

    def rule(table: str, chain: str, *spec: str) -> Rule:
        return Rule(table, chain, spec, proto)

    return RuleSet(
        append=[
            Chain("nat", "SOAK-NAT", proto),
            Chain("nat", "SOAK-NAT2", proto),
            rule("nat", "SOAK-NAT", "-d", net, "-m", "comment", "--comment", "soak: mesh", "-j", "RETURN"),
            rule("nat", "SOAK-NAT", "-s", net, "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "RETURN"),
            rule("nat", "SOAK-NAT", "-s", net, "-j", "SOAK-NAT2"),
            rule("nat", "SOAK-NAT", "-s", net, "-j", "MASQUERADE"),
            rule("nat", "SOAK-NAT2", "-p", "udp", "-m", "udp", "--dport", "53", "-j", "RETURN"),
            rule("nat", "SOAK-NAT2", "-d", other, "-j", "RETURN"),
            rule("nat", "SOAK-NAT2", "-s", other, "-j", "MASQUERADE"),
            rule("nat", "POSTROUTING", "-s", net, "-j", "SOAK-NAT"),
            rule("nat", "POSTROUTING", "-s", other, "-j", "SOAK-NAT"),
            Chain("filter", "SOAK-FWD", proto),
            Chain("filter", "SOAK-IN", proto),
            rule("filter", "SOAK-FWD", "-s", net, "-j", "ACCEPT"),
            rule("filter", "SOAK-FWD", "-d", net, "-j", "ACCEPT"),
            rule("filter", "SOAK-FWD", "-i", "wg0", "-o", "wg0", "-j", "ACCEPT"),
            rule("filter", "SOAK-FWD", "-p", "tcp", "-m", "tcp", "--dport", "443", "-j", "ACCEPT"),
            rule(
                "filter", "SOAK-IN", "-i", "wg0", "-p", "udp", "-m", "udp", "--dport", "51820", "-j", "ACCEPT"
            ),
            rule("filter", "SOAK-IN", "-s", net, "-j", "ACCEPT"),
            rule("filter", "SOAK-IN", "-i", "wg0", "-j", "DROP"),
            rule("filter", "FORWARD", "-s", net, "-j", "SOAK-FWD"),
            rule("filter", "FORWARD", "-d", net, "-j", "SOAK-FWD"),
            rule("filter", "INPUT", "-j", "SOAK-IN"),
        ],
        prepend=[
            rule("nat", "POSTROUTING", "-o", "lo", "-j", "RETURN"),
            rule("nat", "POSTROUTING", "-d", other, "-o", "wg0", "-j", "RETURN"),
            rule("filter", "INPUT", "-i", "lo", "-j", "ACCEPT"),
            rule("filter", "INPUT", "-s", net, "-p", "udp", "-m", "udp", "--dport", "51820", "-j", "ACCEPT"),
            rule("filter", "FORWARD", "-o", "lo", "-j", "ACCEPT"),
        ],
    )


@dataclass(frozen=True)
class Wanted:
    """What each chain the rule set touches must hold, as canonical keys."""

    proto: Protocol
    prepend: dict[ChainRef, list[Spec]]
    append: dict[ChainRef, list[Spec]]
    user_chains: list[ChainRef]

    @classmethod
    def of(cls, ruleset: RuleSet, proto: Protocol) -> Wanted:
        prepend: dict[ChainRef, list[Spec]] = {}
        append: dict[ChainRef, list[Spec]] = {}
        user_chains: list[ChainRef] = []
        for item in ruleset.append:
            if isinstance(item, Chain):
                user_chains.append((item.table, item.name))
                append.setdefault((item.table, item.name), [])
            else:
                append.setdefault((item.table, item.chain), []).append(item.canonical)
        for rule in ruleset.prepend:
            prepend.setdefault((rule.table, rule.chain), []).append(rule.canonical)
        return cls(proto, prepend, append, user_chains)

    @property
    def chains(self) -> list[ChainRef]:
        """Every chain touched, user chains first."""
        return list(dict.fromkeys([*self.user_chains, *self.append, *self.prepend]))


def foreign_name(spec: Spec) -> str | None:
    """The ``foreign-N`` comment of a rule the tamperer owns, else None."""
    for flag, value in itertools.pairwise(spec):
        if flag == "--comment" and value.startswith("foreign-"):
            return value
    return None


def jump_target(spec: Spec) -> str | None:
    for flag, value in itertools.pairwise(spec):
        if flag in ("-j", "-g"):
            return value
    return None


def problems(state: State, wanted: Wanted, foreign: dict[ChainRef, list[str]]) -> list[str]:
    """What keeps ``state`` from being converged (empty when it is)."""
    found: list[str] = []
    for ref in wanted.chains:
        table, chain = ref
        if chain not in state[table]:
            found.append(f"{table} {chain}: missing")
            continue
        specs = state[table][chain]
        theirs = [name for spec in specs if (name := foreign_name(spec)) is not None]
        ours = [canonicalize(spec, wanted.proto) for spec in specs if foreign_name(spec) is None]
        prepend, append = wanted.prepend.get(ref, []), wanted.append.get(ref, [])
        listing = " | ".join(join_tokens(spec) for spec in specs)
        if Counter(ours) != Counter(prepend + append):
            found.append(f"{table} {chain}: our rules are not each there once: {listing}")
        elif [k for k in ours if k in prepend] != prepend:
            found.append(f"{table} {chain}: prepend rules out of order: {listing}")
        elif [k for k in ours if k in append] != append:
            found.append(f"{table} {chain}: append rules out of order: {listing}")
        if theirs != foreign.get(ref, []):
            found.append(f"{table} {chain}: foreign rules {theirs}, expected {foreign.get(ref, [])}")
    return found


async def read_state(world: World, proto: Protocol) -> State:
    """Both tables, one ``-S`` each (a consistent view of each table)."""
    state: State = {}
    for table in TABLES:
        chains: dict[str, list[Spec]] = {}
        for line in (await world.iptables(proto, "-w", "-t", table, "-S")).splitlines():
            if not line or line.startswith("#"):
                continue
            tokens = split_line(line)
            if tokens[0] in ("-P", "-N"):
                chains.setdefault(tokens[1], [])
            elif tokens[0] == "-A":
                chains.setdefault(tokens[1], []).append(tuple(tokens[2:]))
            else:
                raise AssertionError(f"unexpected line in {table}: {line!r}")
        state[table] = chains
    return state


def foreign_in(state: State, wanted: Wanted) -> dict[ChainRef, list[str]]:
    """The foreign rules of each touched chain, in order."""
    return {
        (table, chain): [n for spec in state[table].get(chain, []) if (n := foreign_name(spec)) is not None]
        for table, chain in wanted.chains
    }


@dataclass
class Tamperer:
    """Chooses tampering operations, applies them to a copy of the state (to
    know what must come of them) and writes them as restore lines."""

    rng: random.Random
    wanted: Wanted
    foreign_made: int = 0
    lines: dict[str, list[str]] = field(default_factory=dict)
    #: Chain deletions, written last in their table's payload, as the
    #: controller does: iptables-nft 1.8.9 drops a ``-D C <jump to X>`` when
    #: a later line flushes C, so ``-X X`` between them fails (EBUSY).
    removals: dict[str, list[str]] = field(default_factory=dict)

    def step(self, state: State, operations: int) -> list[str]:
        """Tamper ``operations`` times with ``state`` (changed in place);
        :meth:`payloads` then says how, and the result names each operation."""
        self.lines, self.removals = {}, {}
        kinds = ["delete rule", "flush chain", "reorder", "delete chain", "foreign rule", "wipe table"]
        weights = [6, 4, 6, 2, 6, 1]
        return [
            getattr(self, kind.replace(" ", "_"))(state)
            for kind in self.rng.choices(kinds, weights, k=operations)
        ]

    def _emit(self, table: str, line: str) -> None:
        self.lines.setdefault(table, []).append(line)

    def _remove(self, table: str, chain: str) -> None:
        self.lines.setdefault(table, [])
        self.removals.setdefault(table, []).append(f"-X {chain}")

    def payloads(self) -> dict[str, str]:
        """One restore payload per table tampered with in this step."""
        return {
            table: "\n".join([f"*{table}", *lines, *self.removals.get(table, []), "COMMIT", ""])
            for table, lines in self.lines.items()
        }

    def _existing(self, state: State) -> list[ChainRef]:
        return [(t, c) for t, c in self.wanted.chains if c in state[t]]

    def delete_rule(self, state: State) -> str:
        ours = [
            (table, chain, spec)
            for table, chain in self._existing(state)
            for spec in state[table][chain]
            if foreign_name(spec) is None
        ]
        if not ours:
            return self.foreign_rule(state)
        table, chain, spec = self.rng.choice(ours)
        state[table][chain].remove(spec)
        self._emit(table, f"-D {chain} {join_tokens(spec)}")
        return f"delete {table} {chain} {join_tokens(spec)}"

    def flush_chain(self, state: State) -> str:
        table, chain = self.rng.choice(self._existing(state))
        state[table][chain].clear()
        self._emit(table, f"-F {chain}")
        return f"flush {table} {chain}"

    def reorder(self, state: State) -> str:
        """Move any rule (ours or foreign) to the end, or to the top."""
        candidates = [(t, c) for t, c in self._existing(state) if len(state[t][c]) >= 2]
        if not candidates:
            return self.foreign_rule(state)
        table, chain = self.rng.choice(candidates)
        rules = state[table][chain]
        spec = self.rng.choice(rules)
        rules.remove(spec)
        self._emit(table, f"-D {chain} {join_tokens(spec)}")
        if self.rng.random() < 0.5:
            rules.append(spec)
            self._emit(table, f"-A {chain} {join_tokens(spec)}")
            return f"move to the end of {table} {chain}: {join_tokens(spec)}"
        rules.insert(0, spec)
        self._emit(table, f"-I {chain} 1 {join_tokens(spec)}")
        return f"move to the top of {table} {chain}: {join_tokens(spec)}"

    def delete_chain(self, state: State) -> str:
        """Delete an owned user chain: the jumps to it, its rules, the chain."""
        chains = [(t, c) for t, c in self.wanted.user_chains if c in state[t]]
        if not chains:
            return self.foreign_rule(state)
        table, chain = self.rng.choice(chains)
        for other, rules in state[table].items():
            for spec in [s for s in rules if jump_target(s) == chain]:
                rules.remove(spec)
                self._emit(table, f"-D {other} {join_tokens(spec)}")
        del state[table][chain]
        self._emit(table, f"-F {chain}")
        self._remove(table, chain)
        return f"delete chain {table} {chain}"

    def wipe_table(self, state: State) -> str:
        """Flush every chain of a table and delete every user chain in it."""
        table = self.rng.choice(TABLES)
        if table in self.lines:
            for chain in state[table]:
                self._emit(table, f"-F {chain}")
                if not is_builtin_chain(table, chain):
                    self._remove(table, chain)
        else:
            self._emit(table, "-F")
            self._emit(table, "-X")
        state[table] = {chain: [] for chain in state[table] if is_builtin_chain(table, chain)}
        return f"wipe {table}"

    def foreign_rule(self, state: State) -> str:
        """Insert a rule of our own anywhere in a touched chain, often at the top."""
        table, chain = self.rng.choice(self._existing(state))
        rules = state[table][chain]
        self.foreign_made += 1
        name = f"foreign-{self.foreign_made}"
        if self.wanted.proto is Protocol.IPV4:
            source = f"192.0.2.{self.foreign_made % 250 + 1}/32"
        else:
            source = f"2001:db8::{self.foreign_made:x}/128"
        spec: Spec = ("-s", source, "-m", "comment", "--comment", name, "-j", "ACCEPT")
        where = self.rng.random()
        position = (
            1 if where < 0.4 else len(rules) + 1 if where < 0.55 else self.rng.randint(1, len(rules) + 1)
        )
        rules.insert(position - 1, spec)
        self._emit(table, f"-I {chain} {position} {join_tokens(spec)}")
        return f"insert {name} at {position} of {table} {chain}"


class RecordingController(Controller):
    """A controller that keeps the stats of every reconcile its loop runs."""

    def __init__(self, v4: Client | None, v6: Client | None, *, resync: float) -> None:
        super().__init__(v4, v6, resync=resync)
        self.history: list[dict[str, float]] = []

    async def reconcile(self) -> None:
        await super().reconcile()
        self.history.append(dict(self.last_stats))


@dataclass(frozen=True)
class Step:
    operations: list[str]
    tables: int  # tables tampered with (one restore each)
    seconds: float  # from the last payload written to convergence seen
    reconciles: int  # by the run loop
    writes: int
    processes: int  # spent by the run loop's reconciles


def seed_for(world: World, proto: Protocol) -> int:
    chosen = os.environ.get("AIOIPTABLES_SOAK_SEED")
    if chosen is not None:
        return int(chosen)
    return zlib.crc32(f"soak/{world.kind}/{proto.value}".encode())


def summary(world: World, proto: Protocol, seed: int, steps: Sequence[Step]) -> str:
    seconds = [s.seconds for s in steps]
    reconciles = sum(s.reconciles for s in steps)
    return (
        f"soak {world.kind} {proto.value} seed={seed}: "
        f"{sum(len(s.operations) for s in steps)} operations in {len(steps)} steps; "
        f"converged median {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms; "
        f"{reconciles} reconciles, {sum(s.processes for s in steps) / max(reconciles, 1):.2f} processes each; "
        f"{sum(s.writes for s in steps)} writes for {sum(s.tables for s in steps)} tables tampered"
    )


@dataclass
class Soak:
    """One soak run: the controller, the tamperer, and what each step cost."""

    world: World
    proto: Protocol
    seed: int
    controller: RecordingController
    tamper: Client
    tamperer: Tamperer
    rng: random.Random
    state: State
    steps: list[Step] = field(default_factory=list)

    def context(self, what: str) -> str:
        """``what``, with how to run this very soak again."""
        return f"{what} [{self.world.kind} {self.proto.value}, rerun with AIOIPTABLES_SOAK_SEED={self.seed}]"

    def check_errors(self) -> None:
        try:
            error = self.controller.errors.receive_nowait()
        except anyio.WouldBlock:
            return
        raise AssertionError(self.context(f"after step {len(self.steps)}, a reconcile failed: {error!r}"))

    async def run(self) -> None:
        """Tamper OPERATIONS times, in steps of one to four operations, and
        wait after each step until the controller has converged."""
        wanted = self.tamperer.wanted
        done = 0
        while done < OPERATIONS:
            count = 1 if self.rng.random() < 0.8 else min(self.rng.randint(2, 4), OPERATIONS - done)
            done += count
            history_from, calls_from = len(self.controller.history), self.controller.calls
            operations = self.tamperer.step(self.state, count)
            label = f"step {len(self.steps)} {operations}"
            expected_foreign = foreign_in(self.state, wanted)
            payloads = self.tamperer.payloads()
            tables = sorted(payloads)
            self.rng.shuffle(tables)
            for table in tables:
                payload = payloads[table]
                try:
                    await self.tamper.restore(payload)
                except Exception as exc:
                    raise AssertionError(
                        self.context(f"{label}: tampering failed: {exc}\n{payload}")
                    ) from exc
            tampered = time.monotonic()

            left: list[str] = []
            with anyio.move_on_after(GIVE_UP):
                while True:
                    self.check_errors()
                    self.state = await read_state(self.world, self.proto)
                    left = problems(self.state, wanted, expected_foreign)
                    if not left:
                        break
                    await anyio.sleep(POLL)
            seconds = time.monotonic() - tampered
            if left:
                raise AssertionError(self.context(f"{label}: not converged after {seconds:.1f} s: {left}"))

            # Wait for any reconcile in flight; one more must find all in place.
            await Controller.reconcile(self.controller)  # the base method: not in the history
            stats = self.controller.last_stats
            if (stats["processes"], stats["writes"]) != (READS, 0):
                raise AssertionError(self.context(f"{label}: converged, yet a reconcile did {stats}"))
            ran = self.controller.history[history_from:]
            self.steps.append(
                Step(
                    operations,
                    len(tables),
                    seconds,
                    len(ran),
                    int(sum(r["writes"] for r in ran)),
                    self.controller.calls - READS - calls_from,
                )
            )
            self.state = await read_state(self.world, self.proto)


async def test_soak_tampering_while_running(world: World, proto: Protocol) -> None:
    seed = seed_for(world, proto)
    rng = random.Random(seed)
    ruleset = soak_rules(proto)
    wanted = Wanted.of(ruleset, proto)

    # Someone else was there first, in a builtin chain the rule set touches.
    await world.iptables(proto, "-t", "filter", "-A", "INPUT", "-m", "comment", "--comment", "foreign-0")
    client = world.client(proto)
    v4, v6 = (client, None) if proto is Protocol.IPV4 else (None, client)
    controller = RecordingController(v4, v6, resync=RESYNC)
    await controller.set(ruleset)
    state = await read_state(world, proto)
    soak = Soak(world, proto, seed, controller, world.client(proto), Tamperer(rng, wanted), rng, state)
    expected_foreign = foreign_in(state, wanted)
    assert expected_foreign[("filter", "INPUT")] == ["foreign-0"], soak.context(str(state))
    assert not problems(state, wanted, expected_foreign), soak.context(str(state))

    # A failure is raised here, not wrapped in the task group's exception group.
    failure: AssertionError | None = None
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            try:
                await soak.run()
            except AssertionError as exc:
                failure = exc
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure

    steps = soak.steps
    report = summary(world, proto, seed, steps)
    print(report)
    soak.check_errors()
    for number, step in enumerate(steps):
        assert step.seconds <= CONVERGE_WITHIN, soak.context(f"step {number} too slow: {step}; {report}")
        assert step.writes <= step.tables, soak.context(f"step {number} wrote more than it tampered: {step}")
    for stats in controller.history:
        assert stats["processes"] == READS + stats["writes"], soak.context(
            f"a reconcile cost {stats}; {report}"
        )
    assert sum(len(s.operations) for s in steps) == OPERATIONS
    await controller.reconcile()
    assert (controller.last_stats["processes"], controller.last_stats["writes"]) == (READS, 0), report
