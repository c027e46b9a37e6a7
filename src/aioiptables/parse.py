"""Rules from text: ``-S`` listings and iptables-save output.

Everything here is a pure function of strings. :func:`rule_key` is the one
place that decides when two specs are the same rule; the cache and the planner
compare rules only through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .model import Protocol
from .syntax import split_line

__all__ = ["RuleKey", "rule_key", "parse_listing", "ChainListing"]

#: What two rules must share to be the same rule.
RuleKey = tuple[str, ...]


def rule_key(spec: Iterable[str], proto: Protocol = Protocol.IPV4) -> RuleKey:
    """The comparison key of a rule spec.

    Two specs are the same rule when their keys are equal. Today the key is
    the token sequence itself (quoting is already undone by the tokenizer).
    """
    del proto  # the key will depend on it once addresses are canonicalized
    return tuple(spec)


@dataclass(frozen=True)
class ChainListing:
    """One chain as ``iptables -S CHAIN`` showed it.

    ``exists`` is False when iptables said the chain does not exist; such a
    chain reads as empty. ``specs`` are the rules in order, as tokens.
    """

    proto: Protocol
    table: str
    chain: str
    exists: bool
    specs: tuple[tuple[str, ...], ...] = ()

    keys: tuple[RuleKey, ...] = field(init=False, repr=False, compare=False)
    _key_set: frozenset[RuleKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = tuple(rule_key(spec, self.proto) for spec in self.specs)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "_key_set", frozenset(keys))

    def has(self, spec: Iterable[str]) -> bool:
        """Whether a rule with this spec is in the chain."""
        return rule_key(spec, self.proto) in self._key_set


def parse_listing(lines: Iterable[str], chain: str) -> tuple[tuple[str, ...], ...]:
    """The rule specs of ``chain`` from ``-S`` (or save) lines, in order.

    >>> parse_listing(["-N X", '-A X -m comment --comment "a b" -j ACCEPT'], "X")
    (('-m', 'comment', '--comment', 'a b', '-j', 'ACCEPT'),)
    """
    specs = []
    for line in lines:
        if not line.startswith("-A "):
            continue
        tokens = split_line(line)
        if len(tokens) >= 2 and tokens[1] == chain:
            specs.append(tuple(tokens[2:]))
    return tuple(specs)
