"""Rules from text: ``-S`` listings and iptables-save output.

Everything here is a pure function of strings. :func:`rule_key` is the one
place that decides when two specs are the same rule; the cache and the planner
compare rules only through it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .errors import InvalidRuleError
from .extensions import (
    IMPLICIT,
    MATCHES,
    TARGETS,
    Extension,
    Options,
    Unsupported,
    normalize_address,
    normalize_protocol,
    verbatim,
)
from .model import Protocol, Rule
from .syntax import split_line

__all__ = [
    "RuleKey",
    "rule_key",
    "parse_listing",
    "parse_rule",
    "parse_save",
    "ChainListing",
    "TableSnapshot",
    "Canonical",
    "canonicalize",
    "analyze",
]

#: What two rules must share to be the same rule.
RuleKey = tuple[str, ...]


def rule_key(spec: Iterable[str], proto: Protocol = Protocol.IPV4) -> RuleKey:
    """The comparison key of a rule spec: its :func:`canonicalize` form.

    Two specs are the same rule when their keys are equal, however each was
    spelled.
    """
    return analyze(tuple(spec), proto).tokens


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

    @functools.cached_property
    def keys(self) -> tuple[RuleKey, ...]:
        """The :func:`rule_key` of every rule, in chain order (worked out on
        first use: a snapshot holds many chains nobody asks about)."""
        proto = self.proto
        # analyze() inlined: this runs once per rule of every table read.
        return tuple((_by_groups(spec, proto) or _read(spec, proto)).tokens for spec in self.specs)

    @functools.cached_property
    def _key_set(self) -> frozenset[RuleKey]:
        return frozenset(self.keys)

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


# -- canonical forms -----------------------------------------------------------------------------

_BASE = {
    "-s": "-s", "--source": "-s", "--src": "-s",
    "-d": "-d", "--destination": "-d", "--dst": "-d",
    "-i": "-i", "--in-interface": "-i",
    "-o": "-o", "--out-interface": "-o",
    "-p": "-p", "--protocol": "-p",
    "-f": "-f", "--fragment": "-f",
}  # fmt: skip
_BASE_ORDER = ("-s", "-d", "-i", "-o", "-p", "-f")
# Every long option of the iptables command line, by meaning: getopt resolves
# an abbreviation against all of them (commands included, which a rule spec
# cannot use: an abbreviation of one stays unresolved).
_GETOPT_BASE = {
    "--source": "-s", "--src": "-s", "--destination": "-d", "--dst": "-d",
    "--in-interface": "-i", "--out-interface": "-o", "--protocol": "-p", "--fragment": "-f",
    "--match": "-m", "--jump": "-j", "--goto": "-g", "--ipv4": "-4", "--ipv6": "-6",
    "--set-counters": "-c",
} | {
    f"--{name}": f"command {name}"
    for name in (
        "append", "delete", "check", "insert", "replace", "list", "list-rules", "flush", "zero",
        "new-chain", "delete-chain", "rename-chain", "policy", "table", "numeric", "verbose",
        "wait", "wait-interval", "exact", "version", "help", "line-numbers", "modprobe",
    )
}  # fmt: skip
_JUMPS = {"-j": "-j", "--jump": "-j", "-g": "-g", "--goto": "-g"}
_MATCH = frozenset({"-m", "--match"})
_NO_OPS = frozenset({"-4", "--ipv4", "-6", "--ipv6"})
_COUNTERS = frozenset({"-c", "--set-counters"})


class _Part:
    """One match or target of a rule being read."""

    __slots__ = ("exact", "ext", "flag", "name", "options", "raw")

    def __init__(self, flag: str, name: str, ext: Extension | None) -> None:
        self.flag = flag  # "-m", "-j" or "-g"
        self.name = name
        self.ext = ext
        self.options: Options = {}
        self.raw: list[str] = []  # its tokens as given, for when it is compared as text
        self.exact = ext is not None

    def tokens(self) -> list[str]:
        head = [self.flag, self.name]
        if not self.exact or self.ext is None:
            return head + self.raw
        for option in self.ext.options:
            found = self.options.get(option.name)
            if found is not None:
                negated, values = found
                head += ["!", option.name, *values] if negated else [option.name, *values]
        return head


class Canonical(NamedTuple):
    """A rule spec in canonical form.

    ``exact`` is True when every token was understood, so the form is what
    iptables prints; otherwise the parts not understood were kept as text.
    (A named tuple rather than a frozen dataclass: one is made per rule read,
    and a tuple is several times cheaper to build.)
    """

    tokens: tuple[str, ...]
    exact: bool


def canonicalize(spec: Iterable[str], proto: Protocol = Protocol.IPV4) -> tuple[str, ...]:
    """The canonical form of a rule spec: the same tuple however the rule was
    spelled, and (for the extensions this library knows) the tokens iptables
    itself prints for it.

    >>> canonicalize(["--protocol", "6", "--dport", "80", "--jump", "ACCEPT"])
    ('-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', 'ACCEPT')
    >>> canonicalize(["-s", "10.1.2.3/255.0.0.0", "-j", "REJECT"])
    ('-s', '10.0.0.0/8', '-j', 'REJECT', '--reject-with', 'icmp-port-unreachable')
    """
    return analyze(tuple(spec), proto).tokens


def analyze(spec: tuple[str, ...], proto: Protocol = Protocol.IPV4) -> Canonical:
    """:func:`canonicalize`, also saying whether every token was understood."""
    return _by_groups(spec, proto) or _read(spec, proto)


# Rules spelled other ways than iptables prints them (users' own specs) take
# the full reader; the same specs come back every reconcile, so keep them.
@functools.lru_cache(maxsize=16384)
def _read(spec: tuple[str, ...], proto: Protocol) -> Canonical:
    try:
        return _Reader(spec, proto).read()
    except _Malformed:
        # Something iptables itself would refuse or read in a way we cannot
        # follow: compare the whole rule as text.
        return Canonical(spec, False)


_GROUP_HEADS = frozenset({"-m", "--match", "-j", "--jump", "-g", "--goto"})
_MERGEABLE = frozenset(name for name, ext in MATCHES.items() if ext.mergeable)


def _by_groups(spec: tuple[str, ...], proto: Protocol) -> Canonical | None:
    """The fast path, for rules shaped as iptables prints them.

    A rule whose every option follows the ``-m`` or ``-j`` it belongs to
    reads the same one group at a time as all at once; groups recur from
    rule to rule (``-m tcp --dport 80``), so each is read once and cached.
    Returns None for any other shape, which the full reader then takes.
    """
    heads = [i for i, token in enumerate(spec) if token in _GROUP_HEADS]
    if not heads:
        alone = _base_group(spec, proto)
        return None if alone is None else Canonical(alone, True)
    base = _base_group(spec[: heads[0]], proto)
    if base is None:
        return None
    tokens = list(base)
    target: tuple[str, ...] | None = None
    seen: set[str] = set()
    heads.append(len(spec))
    start = heads[0]
    for end in heads[1:]:
        group = _group(spec[start:end], proto)
        if group is None:
            return None
        if group[0] == "-m":
            if group[1] in _MERGEABLE:
                if group[1] in seen:
                    return None  # iptables-nft folds these: the full reader does too
                seen.add(group[1])
            tokens += group
        elif target is not None:
            return None
        else:
            target = group
        start = end
    if target is not None:
        tokens += target
    return Canonical(tuple(tokens), True)


# Extensions whose options are each normalized on their own (no finishing
# step that adds or drops options): a group of them is in printed form when
# every option is under its printed name, once, in printed order, and its
# values are already normal.
_PLAIN_EXTENSIONS = {("-m", name): ext for name, ext in MATCHES.items() if ext.finish is None} | {
    ("-j", name): ext for name, ext in TARGETS.items() if ext.finish is None
}


def _already_printed(group: tuple[str, ...], proto: Protocol) -> bool:
    """Whether a group is already in the form iptables prints (see above)."""
    ext = _PLAIN_EXTENSIONS.get((group[0], group[1]))
    if ext is None:
        return False
    i, last = 2, -1
    while i < len(group):
        option = ext.by_flag.get(group[i])
        if option is None or option.name != group[i] or ext.order[option.name] <= last:
            return False
        last = ext.order[option.name]
        values = group[i + 1 : i + 1 + option.nargs]
        if len(values) != option.nargs:
            return False
        if option.normalize is not None and option.normalize is not verbatim:
            try:
                if option.normalize(values, proto) != values:
                    return False
            except Unsupported:
                return False
        i += 1 + option.nargs
    return True


def _base_group(group: tuple[str, ...], proto: Protocol) -> tuple[str, ...] | None:
    """The base options as iptables prints them (``-s A -d B -i I -p P``), read
    without the full reader; None for anything else (implicit matches,
    repeats, ``-f``), which the full reader then takes."""
    found: dict[str, tuple[str, ...]] = {}
    i, count = 0, len(group)
    while i < count:
        flag = group[i]
        negated = flag == "!"
        if negated:
            i += 1
            flag = group[i] if i < count else ""
        if i + 1 >= count or flag in found:
            return None
        value = group[i + 1]
        i += 2
        try:
            if flag == "-s" or flag == "-d":
                if "," in value:
                    return None
                value = normalize_address(value, proto)
                if not negated and value.endswith("/0"):
                    continue
            elif flag == "-p":
                value = normalize_protocol(value, proto)
                if not negated and value == "all":
                    continue
            elif flag == "-i" or flag == "-o":
                if value == "+" or not 0 < len(value) <= 15:
                    return None
            else:
                return None
        except Unsupported:
            return None
        found[flag] = ("!", flag, value) if negated else (flag, value)
    if len(found) < 2:
        return next(iter(found.values()), ())
    ordered: list[str] = []
    for flag in _BASE_ORDER:
        if flag in found:
            ordered += found[flag]
    return tuple(ordered)


@functools.lru_cache(maxsize=16384)
def _group(group: tuple[str, ...], proto: Protocol) -> tuple[str, ...] | None:
    """One group read on its own, or None unless it is wholly understood."""
    if len(group) < 2:
        return None
    if len(group) == 4 and group[0] == "-m" and group[1] == "comment" and group[2] == "--comment":
        return group  # the commonest group, and always verbatim
    if len(group) == 2 and group[0] in ("-j", "-g") and group[1] not in TARGETS:
        return group  # a jump to a chain
    if _already_printed(group, proto):
        return group
    if not _BASE.keys().isdisjoint(group):
        return None  # a base option after a match or target: its place is up front
    read = _read(group, proto)
    return read.tokens if read.exact else None


class _Malformed(Exception):
    pass


class _Reader:
    """Reads a spec the way iptables' option parser does."""

    def __init__(self, spec: tuple[str, ...], proto: Protocol) -> None:
        self.spec = spec
        self.proto = proto
        self.base: dict[str, tuple[bool, str]] = {}
        self.loaded: list[_Part] = []  # matches and target, in the order loaded
        self.target: _Part | None = None
        self.exact = True

    def read(self) -> Canonical:
        spec, i, negated = self.spec, 0, False
        swallow: _Part | None = None  # an unknown extension takes every option that follows
        while i < len(spec):
            token = spec[i]
            if token == "!":
                if negated:
                    raise _Malformed
                if swallow is not None and _BASE.get(_at(spec, i + 1)) is None:
                    swallow.raw.append(token)
                else:
                    negated = True
                i += 1
                continue
            if token.startswith("--") and swallow is None:
                token = self._full_name(token)
            flag = _BASE.get(token)
            if flag is not None:
                i = self._base(flag, negated, i)
                swallow, negated = None, False
                continue
            if token in _MATCH or token in _JUMPS:
                if negated or i + 1 >= len(spec):
                    raise _Malformed
                part = self._load(_JUMPS.get(token, "-m"), _at(spec, i + 1))
                swallow = part if part.ext is None else None
                i, negated = i + 2, False
                continue
            if token in _NO_OPS:
                i += 1
                continue
            if token in _COUNTERS:
                i += 3
                continue
            if swallow is not None:
                swallow.raw.append(token)
                i += 1
                continue
            i = self._option(token, negated, i)
            negated = False
        if negated:
            raise _Malformed
        return self._result()

    def _full_name(self, token: str) -> str:
        """The option ``token`` abbreviates: getopt_long takes any unambiguous
        prefix of a long option (``--proto`` is ``--protocol``). Ambiguous or
        unknown prefixes stay as they are, to be kept as text."""
        if "=" in token or token in _GETOPT_BASE or self._knows(token):
            return token
        meanings: dict[object, str] = {}
        for name, meaning in _GETOPT_BASE.items():
            if name.startswith(token):
                meanings.setdefault(meaning, name)
        for ext in self._extensions():
            for flag, option in ext.by_flag.items():
                if flag.startswith(token):
                    meanings.setdefault((ext.name, option.name), flag)
        if len(meanings) != 1:
            return token
        return next(iter(meanings.values()))

    def _extensions(self) -> list[Extension]:
        loaded = [part.ext for part in self.loaded if part.ext is not None]
        protocol = self.base.get("-p")
        if protocol is not None and not protocol[0]:
            try:
                implicit = IMPLICIT.get((self.proto, normalize_protocol(protocol[1], self.proto)))
            except Unsupported:
                implicit = None
            if implicit is not None:
                loaded.append(implicit)
        return loaded

    def _knows(self, token: str) -> bool:
        return any(token in ext.by_flag for ext in self._extensions())

    def _base(self, flag: str, negated: bool, i: int) -> int:
        if flag == "-f":
            value, step = "", 1
        else:
            value, step = _at(self.spec, i + 1), 2
            if i + 1 >= len(self.spec):
                raise _Malformed
        if flag in self.base:
            raise _Malformed  # iptables refuses a repeated base option
        self.base[flag] = (negated, value)
        return i + step

    def _load(self, flag: str, name: str) -> _Part:
        if flag == "-m":
            part = _Part(flag, name, MATCHES.get(name))
        else:
            if self.target is not None:
                raise _Malformed  # a second target: iptables refuses it
            part = _Part(flag, name, TARGETS.get(name) if flag == "-j" else None)
            if part.ext is None:
                part.exact = True  # a jump to a chain: nothing more to understand
                part.ext = _JUMP_TO_CHAIN
            self.target = part
        self.loaded.append(part)
        return part

    def _owner(self, token: str) -> _Part | None:
        # The most recently loaded extension that knows the option takes it,
        # as in iptables' merged option table.
        for part in reversed(self.loaded):
            if part.ext is not None and token in part.ext.by_flag:
                return part
        protocol = self.base.get("-p")
        if protocol is None or protocol[0]:
            return None
        try:
            name = normalize_protocol(protocol[1], self.proto)
        except Unsupported:
            return None
        implicit = IMPLICIT.get((self.proto, name))
        if implicit is None or token not in implicit.by_flag:
            return None
        part = _Part("-m", implicit.name, implicit)
        self.loaded.insert(len(self.loaded) - (1 if self.target in self.loaded else 0), part)
        return part

    def _option(self, token: str, negated: bool, i: int) -> int:
        given, inline = token, None
        if token.startswith("--") and "=" in token:
            token, _, inline = token.partition("=")  # getopt's --option=value
        part = self._owner(token)
        if part is None or part.ext is None:
            # Not ours to read: keep it, and what follows it, as text.
            self.exact = False
            holder = self.loaded[-1] if self.loaded else self._orphans()
            holder.exact = False
            holder.raw += ["!", given] if negated else [given]
            return i + 1
        option = part.ext.by_flag[token]
        if inline is None:
            values, step = self.spec[i + 1 : i + 1 + option.nargs], 1 + option.nargs
        elif option.nargs == 0:
            raise _Malformed  # getopt refuses a value for a flag
        else:
            values, step = (inline, *self.spec[i + 1 : i + option.nargs]), option.nargs
        part.raw += [*(["!"] if negated else []), token, *values]
        if len(values) < option.nargs:
            raise _Malformed
        if option.name in part.options:
            part.exact = False
        elif part.exact:
            try:
                if option.normalize is not None:
                    values = option.normalize(values, self.proto)
            except Unsupported:
                part.exact = False
            part.options[option.name] = (negated, values)
        return i + step

    def _orphans(self) -> _Part:
        part = _Part("", "", None)
        self.loaded.append(part)
        return part

    def _result(self) -> Canonical:
        tokens: list[str] = self._base_tokens()
        matches = [p for p in self.loaded if p is not self.target]
        for part in matches + ([self.target] if self.target else []):
            if part.exact and part.ext is not None and part.ext.finish is not None:
                try:
                    part.ext.finish(part.options, self.proto)
                except Unsupported:
                    part.exact = False
            self.exact = self.exact and part.exact
        for part in _merged(matches):
            tokens += part.tokens() if part.flag else part.raw
        if self.target is not None:
            tokens += self.target.tokens()
        return Canonical(tuple(tokens), self.exact)

    def _base_tokens(self) -> list[str]:
        tokens: list[str] = []
        for flag in _BASE_ORDER:
            found = self.base.get(flag)
            if found is None:
                continue
            negated, given = found
            value: str | None = given
            try:
                value = self._base_value(flag, given, negated)
            except Unsupported:
                self.exact = False
            if value is None:
                continue
            head = ["!", flag] if negated else [flag]
            tokens += head if flag == "-f" else [*head, value]
        return tokens

    def _base_value(self, flag: str, value: str, negated: bool) -> str | None:
        if flag in ("-s", "-d"):
            if "," in value:
                raise Unsupported(value)  # iptables makes one rule per address
            value = normalize_address(value, self.proto)
            return None if value.endswith("/0") and not negated else value
        if flag == "-p":
            value = normalize_protocol(value, self.proto)
            return None if value == "all" and not negated else value
        if flag == "-f" and self.proto is Protocol.IPV6:
            raise Unsupported(flag)
        if flag in ("-i", "-o"):
            if value == "+":
                # Any interface: iptables prints nothing for it (and, negated,
                # the two backends print different things).
                if negated:
                    raise Unsupported(value)
                return None
            if not 1 <= len(value) <= 15:
                raise Unsupported(value)
        return value


#: A jump to a user chain: a target with no options.
_JUMP_TO_CHAIN = Extension("")


def _at(spec: tuple[str, ...], i: int) -> str:
    return spec[i] if i < len(spec) else ""


def _merged(matches: list[_Part]) -> list[_Part]:
    """Fold a repeated tcp or udp match into the first, as iptables-nft does,
    so that both backends' listings read alike."""
    result: list[_Part] = []
    first: dict[str, _Part] = {}
    for part in matches:
        earlier = first.get(part.name)
        if (
            earlier is not None
            and part.ext is not None
            and part.ext.mergeable
            and part.exact
            and earlier.exact
            and earlier.options
            and part.options  # iptables-nft folds only matches that have options
            and not earlier.options.keys() & part.options.keys()
        ):
            earlier.options.update(part.options)
            continue
        first.setdefault(part.name, part)
        result.append(part)
    return result


# -- whole lines and whole tables ----------------------------------------------------------------


def parse_rule(line: str, table: str = "filter", proto: Protocol = Protocol.IPV4) -> Rule:
    """A :class:`Rule` from one ``-S`` or iptables-save line (``-A CHAIN ...``,
    or ``-I CHAIN [N] ...``), with iptables' quoting rules.

    >>> parse_rule('-A INPUT -m comment --comment "a b" -j ACCEPT').spec
    ('-m', 'comment', '--comment', 'a b', '-j', 'ACCEPT')
    """
    tokens = split_line(line)
    if len(tokens) < 2 or tokens[0] not in ("-A", "--append", "-I", "--insert"):
        raise InvalidRuleError("rule line", line, "must start with -A CHAIN or -I CHAIN")
    spec = tokens[2:]
    if tokens[0] in ("-I", "--insert") and spec and spec[0].isdigit():
        spec = spec[1:]
    return Rule(table, tokens[1], spec, proto)


class TableSnapshot:
    """One table as iptables-save printed it: every chain, in order.

    Reading a snapshot only sorts lines by chain; a chain's rules are split
    into tokens and canonicalized when that chain is first asked for, so a
    large table costs little when only a few of its chains matter.
    """

    def __init__(
        self, proto: Protocol, table: str, lines: dict[str, list[str]], policies: dict[str, str]
    ) -> None:
        self.proto = proto
        self.table = table
        self.policies = policies
        self._lines = lines
        self._listings: dict[str, ChainListing] = {}

    @property
    def names(self) -> tuple[str, ...]:
        """Every chain in the table, in the order iptables-save printed them."""
        return tuple(self._lines)

    def chain(self, name: str) -> ChainListing:
        """One chain's rules; a chain the table does not hold reads as missing."""
        listing = self._listings.get(name)
        if listing is None:
            lines = self._lines.get(name)
            if lines is None:
                return ChainListing(self.proto, self.table, name, exists=False)
            specs = tuple([tuple(split_line(line)[2:]) for line in lines])
            listing = self._listings[name] = ChainListing(self.proto, self.table, name, True, specs)
        return listing

    @property
    def chains(self) -> dict[str, ChainListing]:
        """Every chain's rules, by name."""
        return {name: self.chain(name) for name in self._lines}


def parse_save(text: str, proto: Protocol = Protocol.IPV4) -> dict[str, TableSnapshot]:
    """Every table in iptables-save output, by name."""
    tables: dict[str, TableSnapshot] = {}
    table = ""
    lines: dict[str, list[str]] = {}
    policies: dict[str, str] = {}
    for line in text.split("\n"):
        if line.startswith("-A "):
            end = line.find(" ", 3)
            lines.setdefault(line[3:] if end < 0 else line[3:end], []).append(line)
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            lines.setdefault(name, [])
            policy = rest.split(" ", 1)[0]
            if policy != "-":
                policies[name] = policy
        elif line.startswith("*"):
            table, lines, policies = line[1:].strip(), {}, {}
        elif line.startswith("COMMIT"):
            tables[table] = TableSnapshot(proto, table, lines, policies)
    return tables
