"""Values: protocols, rules, chains, rule sets, and their validation.

Everything here is a frozen value checked when it is built, so bad input is
refused before any process runs and nothing can be half-applied because of it.
"""

from __future__ import annotations

import enum
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from .errors import InvalidRuleError
from .syntax import join_tokens

__all__ = [
    "Protocol",
    "Rule",
    "Chain",
    "RuleSet",
    "Item",
    "TABLES",
    "BUILTIN_CHAINS",
    "is_builtin_chain",
    "validate_table",
    "validate_chain_name",
    "validate_spec",
    "validate_position",
]


class Protocol(enum.Enum):
    """The IP family a rule belongs to: ``iptables`` or ``ip6tables``."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"

    # Members are singletons: hash by identity, in C. Enum's own __hash__ is
    # Python code, and protocols are part of every cache key on the hot path.
    __hash__ = object.__hash__

    @property
    def command(self) -> str:
        """The base command name: ``iptables`` or ``ip6tables``."""
        return "iptables" if self is Protocol.IPV4 else "ip6tables"


#: The tables iptables knows, with their builtin chains.
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
TABLES = frozenset(BUILTIN_CHAINS)

# Names iptables refuses for a user chain ("chain name may not clash with target name").
_VERDICTS = frozenset(
    {"ACCEPT", "DROP", "QUEUE", "RETURN", "NFQUEUE", "REJECT", "LOG", "MARK", "DNAT", "SNAT"}
)
# XT_EXTENSION_MAXNAMELEN is 29 with the terminating NUL.
_MAX_CHAIN_LEN = 28
# Control characters (NUL, newline, DEL...) would end or split a restore line;
# lone surrogates (os.fsdecode's stand-ins for bytes that are not UTF-8) cannot
# be written to iptables at all.
_UNWRITABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _unwritable(text: str) -> str | None:
    """Why ``text`` cannot be written to iptables, or None."""
    found = _UNWRITABLE.search(text)
    if found is None:
        return None
    if found.group() >= "\ud800":
        return (
            "must be UTF-8 text: it holds a lone surrogate (bytes that are not UTF-8, "
            "as os.fsdecode gives them), which iptables cannot be given"
        )
    return "must not hold control characters"


def validate_table(table: str) -> str:
    """Return ``table`` if iptables has such a table, else raise InvalidRuleError."""
    if not isinstance(table, str) or table not in TABLES:
        raise InvalidRuleError("table", table, f"must be one of {', '.join(sorted(TABLES))}")
    return table


def validate_chain_name(name: str) -> str:
    """Return ``name`` if it is a valid chain name: 1 to 28 bytes of printable text,
    no whitespace or quotes, not starting with ``-`` or ``!``."""
    if not isinstance(name, str):
        raise InvalidRuleError("chain", name, "must be a string")
    _valid_chain_name(name)
    return name


# Rules name a few chains many times over: each name is checked once.
@functools.lru_cache(maxsize=4096)
def _valid_chain_name(name: str) -> None:
    why = _unwritable(name)
    if why is not None and "surrogate" in why:
        raise InvalidRuleError("chain", name, why)
    # iptables counts bytes, not characters.
    if not 1 <= len(name.encode("utf-8")) <= _MAX_CHAIN_LEN:
        raise InvalidRuleError("chain", name, f"must be 1 to {_MAX_CHAIN_LEN} bytes long")
    if why is not None or any(c.isspace() or c in "\"'\\" for c in name):
        raise InvalidRuleError("chain", name, "must not hold whitespace, quotes or control characters")
    if name[0] in "-!":
        raise InvalidRuleError("chain", name, "must not start with '-' or '!'")


def validate_spec(spec: Iterable[str]) -> tuple[str, ...]:
    """Return ``spec`` as a tuple of tokens, refusing anything that is not a
    string, that holds a control character (NUL, newline, ...) or a lone
    surrogate (bytes that are not UTF-8, as ``os.fsdecode`` gives them)."""
    if isinstance(spec, str):
        raise InvalidRuleError("spec", spec, "must be a sequence of tokens, not one string")
    tokens = tuple(spec)
    try:
        joined = "".join(tokens)  # one search for the whole spec: Rule() is on the hot path
    except TypeError:
        joined = "\x00"
    if _UNWRITABLE.search(joined) is not None:
        for token in tokens:
            if not isinstance(token, str):
                raise InvalidRuleError("spec token", token, "must be a string")
            why = _unwritable(token)
            if why is not None:
                raise InvalidRuleError("spec token", token, why)
    return tokens


def validate_position(position: int) -> int:
    """Return ``position`` if it is a rule number iptables accepts (1 or more)."""
    if isinstance(position, bool) or not isinstance(position, int) or position < 1:
        raise InvalidRuleError("position", position, "must be an integer of at least 1")
    return position


def is_builtin_chain(table: str, chain: str) -> bool:
    """True for chains iptables creates itself, such as ``filter INPUT``."""
    return chain in BUILTIN_CHAINS.get(table, ())


def _proto(value: Protocol) -> Protocol:
    if not isinstance(value, Protocol):
        raise InvalidRuleError("protocol", value, "must be Protocol.IPV4 or Protocol.IPV6")
    return value


# parse.check_rule for tokens validate_spec has passed, bound on first use:
# the parser sits above the model.
_check_rule: Callable[[tuple[str, ...], Protocol], None] | None = None


def _load_check_rule() -> Callable[[tuple[str, ...], Protocol], None]:
    global _check_rule
    from .parse import _check

    _check_rule = _check
    return _check


@dataclass(frozen=True, init=False)
class Rule:
    """One rule: ``spec`` appended to (or inserted into) ``chain`` of ``table``.

    ``spec`` is the list of argv tokens after the chain, exactly as you would
    pass them to iptables; it is stored as a tuple, so rules are hashable.
    It is checked when the rule is built (:func:`~aioiptables.parse.check_rule`):
    bad input raises :class:`InvalidRuleError` naming the option and value.

    >>> r = Rule.ipv4("nat", "KILO-NAT", "-s", "10.4.0.0/16", "-j", "MASQUERADE")
    >>> str(r)
    'nat -A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE'
    """

    table: str
    chain: str
    spec: tuple[str, ...]
    proto: Protocol = Protocol.IPV4

    def __init__(self, table: str, chain: str, spec: Iterable[str], proto: Protocol = Protocol.IPV4) -> None:
        self._fill(table, chain, spec, proto)
        (_check_rule or _load_check_rule())(self.spec, self.proto)

    def _fill(self, table: str, chain: str, spec: Iterable[str], proto: Protocol) -> None:
        object.__setattr__(self, "table", validate_table(table))
        object.__setattr__(self, "chain", validate_chain_name(chain))
        object.__setattr__(self, "spec", validate_spec(spec))
        object.__setattr__(self, "proto", _proto(proto))

    @classmethod
    def from_printed(
        cls, table: str, chain: str, spec: Iterable[str], proto: Protocol = Protocol.IPV4
    ) -> Rule:
        """A rule as iptables printed it (in a listing or iptables-save
        output): its table, chain and tokens are validated, but it is not put
        through :func:`~aioiptables.parse.check_rule`, because iptables
        prints some rules in forms it would not take as input (a reversed udp
        port range, from iptables 1.8.9), and a rule read from a listing must
        stay usable (to delete it, say).

        >>> Rule.from_printed("filter", "INPUT", ["-p", "udp", "-m", "udp", "--dport", "5:3"]).spec
        ('-p', 'udp', '-m', 'udp', '--dport', '5:3')
        """
        rule = object.__new__(cls)
        rule._fill(table, chain, spec, proto)
        return rule

    @classmethod
    def ipv4(cls, table: str, chain: str, *spec: str) -> Rule:
        """An IPv4 rule: ``Rule.ipv4("filter", "INPUT", "-j", "ACCEPT")``."""
        return cls(table, chain, spec, Protocol.IPV4)

    @classmethod
    def ipv6(cls, table: str, chain: str, *spec: str) -> Rule:
        """An IPv6 rule: ``Rule.ipv6("filter", "INPUT", "-j", "ACCEPT")``."""
        return cls(table, chain, spec, Protocol.IPV6)

    @property
    def canonical(self) -> tuple[str, ...]:
        """The spec in canonical form: the same however the rule was spelled.

        >>> Rule.ipv4("filter", "INPUT", "-p", "tcp", "--dport", "80").canonical
        ('-p', 'tcp', '-m', 'tcp', '--dport', '80')
        """
        # The parser sits above the model (it needs Protocol); import it late.
        from .parse import canonicalize

        return canonicalize(self.spec, self.proto)

    def same_as(self, other: Rule) -> bool:
        """Whether ``other`` is the same rule, by meaning: same protocol, table
        and chain, and the same canonical spec.

        >>> Rule.ipv4("nat", "X", "-s", "1.2.3.4", "-j", "ACCEPT").same_as(
        ...     Rule.ipv4("nat", "X", "--source", "1.2.3.4/32", "--jump", "ACCEPT"))
        True
        """
        if (self.proto, self.table, self.chain) != (other.proto, other.table, other.chain):
            return False
        return self.canonical == other.canonical

    @classmethod
    def parse(cls, line: str, table: str = "filter", proto: Protocol = Protocol.IPV4) -> Rule:
        """A rule from one ``iptables -S`` or iptables-save line.

        >>> Rule.parse('-A INPUT -m comment --comment "a b" -j ACCEPT', table="filter").spec
        ('-m', 'comment', '--comment', 'a b', '-j', 'ACCEPT')
        """
        from .parse import parse_rule

        return parse_rule(line, table, proto)

    def __str__(self) -> str:
        head = f"{self.table} -A {self.chain}"
        return f"{head} {join_tokens(self.spec)}" if self.spec else head


@dataclass(frozen=True)
class Chain:
    """A user-defined chain ``name`` in ``table``.

    >>> str(Chain.ipv4("nat", "KILO-NAT"))
    'nat -N KILO-NAT'
    """

    table: str
    name: str
    proto: Protocol = Protocol.IPV4

    def __post_init__(self) -> None:
        validate_table(self.table)
        validate_chain_name(self.name)
        if self.name in _VERDICTS:
            raise InvalidRuleError("chain", self.name, "clashes with a builtin target")
        _proto(self.proto)

    @classmethod
    def ipv4(cls, table: str, name: str) -> Chain:
        """An IPv4 chain."""
        return cls(table, name, Protocol.IPV4)

    @classmethod
    def ipv6(cls, table: str, name: str) -> Chain:
        """An IPv6 chain."""
        return cls(table, name, Protocol.IPV6)

    @property
    def builtin(self) -> bool:
        """True for a chain iptables creates itself (``INPUT``, ``POSTROUTING``...)."""
        return is_builtin_chain(self.table, self.name)

    def __str__(self) -> str:
        return f"{self.table} -N {self.name}"


#: What a RuleSet's ``append`` holds.
Item = Rule | Chain


def _tuple_of(items: Iterable[object], allowed: tuple[type, ...], what: str) -> tuple[Item, ...]:
    result: list[Item] = []
    seen: set[Item] = set()
    for item in items:
        if not isinstance(item, allowed) or not isinstance(item, Rule | Chain):
            raise InvalidRuleError(what, item, f"must be {' or '.join(t.__name__ for t in allowed)}")
        if item in seen:
            raise InvalidRuleError(what, item, "appears twice")
        seen.add(item)
        result.append(item)
    return tuple(result)


@dataclass(frozen=True, init=False)
class RuleSet:
    """The rules a :class:`Controller` keeps in place.

    ``append`` holds rules and chains, in order: each rule is kept after the
    ones before it in the same chain. ``prepend`` holds rules inserted at the
    top of their chains when missing (position 1, or just after the prepend
    rule before them), and kept in the order given; rules others insert above
    them later are left alone.

    >>> RuleSet(append=[Chain.ipv4("nat", "KILO-NAT"),
    ...                 Rule.ipv4("nat", "KILO-NAT", "-j", "MASQUERADE")])
    ... # doctest: +ELLIPSIS
    RuleSet(append=(...), prepend=())
    """

    append: tuple[Item, ...]
    prepend: tuple[Rule, ...]

    def __init__(self, append: Iterable[Item] = (), prepend: Iterable[Rule] = ()) -> None:
        appended = _tuple_of(append, (Rule, Chain), "append item")
        prepended = _tuple_of(prepend, (Rule,), "prepend rule")
        both = set(appended) & set(prepended)
        if both:
            raise InvalidRuleError("rule", next(iter(both)), "is both appended and prepended")
        object.__setattr__(self, "append", appended)
        object.__setattr__(self, "prepend", cast("tuple[Rule, ...]", prepended))

    def __iter__(self) -> Iterator[Item]:
        """Every item: the append items in order, then the prepend rules."""
        yield from self.append
        yield from self.prepend

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, proto: Protocol = Protocol.IPV4) -> RuleSet:
        """The rule set in a rule-set file: TOML, or iptables-save text (see
        :mod:`aioiptables.files`, which reads and writes them). ``proto`` is
        the protocol of every entry that names none.

        Raises :class:`OSError` when the file cannot be read, and
        :class:`~aioiptables.RuleSetFileError`, naming the line, when what it
        says cannot be used.

        Example::

            controller = Controller()
            await controller.set(RuleSet.load("/etc/mesh/rules.toml"))
        """
        # The files module sits above the model (it builds rule sets); import it late.
        from .files import load

        return load(path, proto=proto)
