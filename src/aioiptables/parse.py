"""Rules from text: ``-S`` listings and iptables-save output.

Everything here is a pure function of strings. :func:`rule_key` is the one
place that decides when two specs are the same rule; the cache and the planner
compare rules only through it. :func:`check_rule` is the one place that
refuses a spec before anything runs.

Foreign lines never break a read. iptables prints a rule whose comment holds
a newline on two lines (or more); the reader joins them back (see
:func:`rule_records`). A rule it still cannot read, or that holds a control
character (which no rule of ours can: :func:`~aioiptables.model.validate_spec`
refuses them), is kept as an *opaque* spec, ``(OPAQUE, text)``: its key holds
:data:`OPAQUE`, which starts with a NUL, so it can never equal the key of a
rule anyone can write, nor reach iptables-restore (which the client refuses
NUL for). It still counts as a rule of its chain, so positions stay right.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar, overload

from .errors import InvalidRuleError
from .extensions import (
    IMPLICIT,
    MATCHES,
    TARGETS,
    Extension,
    Option,
    Options,
    Refused,
    Unsupported,
    check_address,
    check_interface,
    check_protocol,
    normalize_address,
    normalize_protocol,
    printed_v4,
    verbatim,
)
from .model import Protocol, Rule, validate_spec
from .syntax import (
    _RAW_VALUES,
    BAD,
    CLOSED,
    OPEN,
    printed_state,
    scan_printed,
    split_line,
    split_printed,
)

__all__ = [
    "RuleKey",
    "rule_key",
    "parse_listing",
    "read_listing",
    "parse_rule",
    "parse_save",
    "ChainListing",
    "TableSnapshot",
    "Canonical",
    "canonicalize",
    "analyze",
    "check_rule",
    "not_understood",
    "spec_to_write",
    "rule_records",
    "OPAQUE",
]

K = TypeVar("K")
V = TypeVar("V")

#: What two rules must share to be the same rule.
RuleKey = tuple[str, ...]


def rule_key(spec: Iterable[str], proto: Protocol = Protocol.IPV4) -> RuleKey:
    """The comparison key of a rule spec: its :func:`canonicalize` form.

    Two specs are the same rule when their keys are equal, however each was
    spelled.
    """
    return analyze(tuple(spec), proto).tokens


#: The first token of an opaque spec, ``(OPAQUE, text)``: a rule read from a
#: listing that cannot be split into tokens, or that holds a control character.
#: It starts with a NUL, which no token of a Rule can hold, so an opaque key
#: never equals the key of a rule anyone can write.
OPAQUE = "\x00opaque"


def _key(spec: tuple[str, ...], proto: Protocol) -> RuleKey:
    if spec and spec[0] == OPAQUE:
        return spec
    # analyze() inlined: this runs once per rule of every table read.
    fast = _fast_key(spec, proto)
    return fast if fast is not None else _read(spec, proto).tokens


class _Lazy(Generic[V]):
    """functools.cached_property without its lock (Python 3.11's takes one
    per instance read, and a snapshot makes a listing per chain): the value
    is worked out on first use and kept in the instance's ``__dict__``."""

    def __init__(self, func: Callable[[Any], V]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _Lazy[V]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> V: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> V | _Lazy[V]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value


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
    #: The printed text of each rule (see :func:`rule_records`), when the
    #: listing was read from text: their keys are then kept by text.
    records: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @_Lazy
    def keys(self) -> tuple[RuleKey, ...]:
        """The :func:`rule_key` of every rule, in chain order (worked out on
        first use: a snapshot holds many chains nobody asks about)."""
        proto = self.proto
        if len(self.records) != len(self.specs):
            return tuple([_key(spec, proto) for spec in self.specs])
        memo = _PRINTED[proto]
        known_of = memo.get
        keys: list[RuleKey] = []
        # Those read_listing() worked out already, and None for the others.
        given: list[RuleKey | None] = self.__dict__.get("_known_keys") or [None] * len(self.specs)
        for record, spec, key in zip(self.records, self.specs, given, strict=True):
            if key is not None:
                keys.append(key)
                continue
            known = known_of(record)
            if known is not None and known[0] == spec:
                keys.append(known[1])
                continue
            # _key() inlined, and its put() while the memo has room: this runs
            # once per rule of every table read for the first time.
            key = _fast_key(spec, proto) if not spec or spec[0] != OPAQUE else spec
            if key is None:
                key = _read(spec, proto).tokens
            if len(memo) < memo.size:
                memo[record] = (spec, key)
            else:
                memo.put(record, (spec, key))
            keys.append(key)
        return tuple(keys)

    @_Lazy
    def _key_set(self) -> frozenset[RuleKey]:
        return frozenset(self.keys)

    def has(self, spec: Iterable[str]) -> bool:
        """Whether a rule with this spec is in the chain."""
        return rule_key(spec, self.proto) in self._key_set


#: Printed rules seen before, by their text (see :func:`rule_records`): their
#: spec and key. Nearly every line a table prints is printed again, the same,
#: at the next read: it is then looked up, neither split nor canonicalized.
_PRINTED: dict[Protocol, _Memo[str, tuple[tuple[str, ...], RuleKey]]]


def read_listing(
    proto: Protocol, table: str, chain: str, records: Sequence[str], *, printable: bool = False
) -> ChainListing:
    """The listing of a chain from the text of its rules (see
    :func:`rule_records`): a rule printed as before costs a lookup, and one
    in the shape iptables prints nearly every rule in is read a group at a
    time, its key with it (see :func:`_read_printed`). ``printable``: the
    records' text was found by :func:`_printable` to hold no control
    character but newlines (which saves checking each record)."""
    memo = _PRINTED[proto]
    known_of = memo.get
    # A chain name holding a blank or a quote does not print as one word.
    prefix = f"-A {chain} " if chain and " " not in chain and '"' not in chain else None
    specs: list[tuple[str, ...]] = []
    keys: list[RuleKey | None] = []
    unknown = 0  # rules whose key is left to work out
    for record in records:
        known = known_of(record)
        if known is not None:
            specs.append(known[0])
            keys.append(known[1])
            continue
        read = _read_printed(record, prefix, proto, printable) if prefix is not None else None
        if read is None:
            specs.append(_printed_spec(record))  # its key is worked out on first use
            keys.append(None)
            unknown += 1
            continue
        specs.append(read[0])
        keys.append(read[1])
        # Kept only while the memo has room: making room here would push out
        # rules that the listings of the same table, read next, look up (a
        # table larger than the memo would then miss it wholly); put() makes
        # room when keys are worked out on first use.
        if len(memo) < memo.size:
            memo[record] = read
    # Made without the frozen dataclass's __init__, which sets each field
    # through object.__setattr__: a table read makes one listing per chain.
    listing = _new_listing(ChainListing)
    listing.__dict__.update(
        proto=proto, table=table, chain=chain, exists=True, specs=tuple(specs), records=tuple(records)
    )
    if not unknown:
        listing.__dict__["keys"] = tuple(keys)  # every rule known: nothing left to work out
    else:
        listing.__dict__["_known_keys"] = keys
    return listing


_new_listing = object.__new__


def parse_listing(lines: Iterable[str], chain: str) -> tuple[tuple[str, ...], ...]:
    """The rule specs of ``chain`` from ``-S`` (or save) lines, in order; a
    rule that cannot be read is an opaque spec (see the module's doc).

    >>> parse_listing(["-N X", '-A X -m comment --comment "a b" -j ACCEPT'], "X")
    (('-m', 'comment', '--comment', 'a b', '-j', 'ACCEPT'),)
    >>> parse_listing(['-A X -m comment --comment "a', 'b" -j DROP', "-A X -j ACCEPT"], "X")
    (('\\x00opaque', '-A X -m comment --comment "a\\nb" -j DROP'), ('-j', 'ACCEPT'))
    """
    return tuple([_printed_spec(record) for record in rule_records(lines, chain)])


def rule_records(lines: Iterable[str], chain: str) -> tuple[str, ...]:
    """The text of each rule of ``chain`` in ``-S`` (or save) lines, in the
    order and number of :func:`parse_listing`'s specs: a rule iptables
    printed on several lines (a value holding a newline) is one record, its
    lines joined by newlines.

    >>> rule_records(['-A X -m comment --comment "a', 'b" -j DROP', "-A X -j ACCEPT"], "X")
    ('-A X -m comment --comment "a\\nb" -j DROP', '-A X -j ACCEPT')
    """
    head = f"-A {chain}"
    prefix = head + " "
    return tuple([record for record in _records(list(lines)) if record.startswith(prefix) or record == head])


# -- printed lines to records --------------------------------------------------------------------

# Lines that start a record of their own; any other line goes on with the rule
# before it (a raw value, such as an interface name, held a newline).
_RECORD_HEADS = ("-A ", "-I ", "-N ", "-P ", ":", "*", "#", "COMMIT")
# How far past a rule's first line a quoted value is followed before giving up
# (a comment is at most 255 bytes, so it prints in well under 1,000 characters).
_LOOKAHEAD = 4096
# Tokens no rule of ours can hold: such a rule is kept opaque.
_UNWRITABLE = re.compile(r"[\x00-\x1f\x7f]")


def _printed_spec(record: str) -> tuple[str, ...]:
    """The spec of one ``-A CHAIN ...`` record, or an opaque spec."""
    if '"' not in record:  # split_printed's commonest case, inlined
        parts = record.split(" ")
        tokens: list[str] | None = [token for token in parts if token] if "" in parts else parts
    else:
        tokens = split_printed(record)
    if tokens is None or (not record.isprintable() and _UNWRITABLE.search(record) is not None):
        return (OPAQUE, record)
    return tuple(tokens[2:])


def _records(lines: Sequence[str]) -> Iterator[str]:
    """Printed lines as records: each line, except that a rule printed on
    several lines comes as one, joined by newlines.

    A rule goes on on the next line when it ends inside a quoted value (a
    comment holding a newline), or when the next line does not start a
    record (a raw value holding a newline). A quoted value is followed only
    as far as it closes where iptables would close it (before a blank or the
    end of a line), within :data:`_LOOKAHEAD` characters: otherwise the rule
    is its first line (and any lines that cannot start a record), read as
    opaque, and the lines after it are read as they are.
    """
    count = len(lines)
    i = 0
    while i < count:
        line = lines[i]
        i += 1
        if line.startswith("-A ") and _goes_on(line, lines[i] if i < count else ""):
            line, i = _gather(lines, i - 1)
        yield line


def _goes_on(line: str, after: str) -> bool:
    """Whether the rule printed on ``line`` goes on on the lines after it."""
    if after and not after.startswith("-A ") and not after.startswith(_RECORD_HEADS):
        return True
    # An even number of quotes and no escape: closed, but for raw values
    # that start with a quote (see split_printed).
    return '"' in line and (line.count('"') % 2 == 1 or "\\" in line) and printed_state(line) == OPEN


def _gather(lines: Sequence[str], i: int) -> tuple[str, int]:
    """The record that starts at ``lines[i]``, and the index after it."""
    count = len(lines)
    parts = [lines[i]]
    i += 1
    inside = printed_state(parts[0]) == OPEN  # inside a quoted value
    while True:
        if inside:
            end = _closing(lines, i)
            if end is not None:
                parts += lines[i:end]
                i, inside = end, False
        if i >= count or not lines[i] or lines[i].startswith(_RECORD_HEADS):
            return "\n".join(parts), i
        line = lines[i]
        parts.append(line)
        i += 1
        # The newline was inside a value: the line goes on with it ("x" stands
        # for the value so far, so a quote at the start of the line is in a word).
        inside = (_quoted_tail(line) if inside else printed_state("x" + line)) == OPEN


def _closing(lines: Sequence[str], start: int) -> int | None:
    """The index after the line that closes a quoted value open at the end
    of ``lines[start - 1]`` (and any value opened after it), or None."""
    budget = _LOOKAHEAD
    for j in range(start, len(lines)):
        budget -= len(lines[j]) + 1
        if budget < 0:
            return None
        state = _quoted_tail(lines[j])
        if state != OPEN:
            return j + 1 if state == CLOSED else None
    return None


def _quoted_tail(text: str) -> int:
    """:func:`~aioiptables.syntax.scan_printed`'s verdict on ``text`` read
    from inside a quoted value."""
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        if char == "\\":
            i += 2
        elif char == '"':
            rest = text[i + 1 :]
            if rest and rest[0] != " ":
                return BAD
            return scan_printed(rest)[0]
        else:
            i += 1
    return OPEN


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
    """:func:`canonicalize`, also saying whether every token was understood.
    An opaque spec (see :data:`OPAQUE`) is its own form, never understood."""
    if spec and spec[0] == OPAQUE:
        return Canonical(spec, False)
    # The same specs (a controller's rules) come back every reconcile: keep them.
    memo = _ANALYZED[proto]
    known = memo.get(spec)
    if known is None:
        known = memo.put(spec, _by_groups(spec, proto) or _read(spec, proto))
    return known


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


@functools.lru_cache(maxsize=16384)
def spec_to_write(spec: tuple[str, ...], proto: Protocol = Protocol.IPV4) -> tuple[str, ...]:
    """The spec to write a rule with, and to delete it by: ``spec`` itself,
    unless it repeats a tcp or udp match that the canonicalizer folds into
    one (see :func:`_merged`); such a rule is written in its canonical form.

    iptables-nft 1.8.11 on reads such a rule back folded, and its ``-D``
    (``-C``), which compares what it reads back with what it builds from the
    spec, then finds it by no spelling but the folded one: written as
    given, the rule could not be deleted. Written folded, every version
    and backend builds, lists and deletes it alike.

    >>> spec_to_write(("-p", "tcp", "-m", "tcp", "-m", "tcp", "--dport", "1", "-j", "DROP"))
    ('-p', 'tcp', '-m', 'tcp', '--dport', '1', '-j', 'DROP')
    >>> spec_to_write(("-p", "tcp", "--dport", "1", "-j", "DROP"))
    ('-p', 'tcp', '--dport', '1', '-j', 'DROP')
    """
    if (spec and spec[0] == OPAQUE) or _fast_key(spec, proto) is not None:
        return spec  # the fast path reads no repeated tcp or udp match
    reader = _Reader(spec, proto)
    try:
        read = reader.read()
    except _Malformed:
        return spec
    # A rule read only in part is written as given: its canonical form holds
    # text in places not followed here.
    return read.tokens if reader.folded and read.exact else spec


_GROUP_HEADS = frozenset({"-m", "--match", "-j", "--jump", "-g", "--goto"})
_TO_CHAIN = frozenset({"-j", "-g"})
_MERGEABLE = frozenset(name for name, ext in MATCHES.items() if ext.mergeable)


class _Memo(dict[K, V]):
    """A bounded memo: when full, its oldest quarter goes (at once, which
    keeps a put cheap). ``_memo`` marks it for the benchmarks' cache clearing."""

    _memo = True

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: K, value: V) -> V:
        if len(self) >= self.size:
            for old in list(itertools.islice(self, self.size // 4)):
                del self[old]
        self[key] = value
        return value


# _group's verdicts, by protocol: _SAME when the group is already in printed form.
_GROUPS: dict[Protocol, _Memo[tuple[str, ...], tuple[str, ...] | None]] = {
    proto: _Memo(16384) for proto in Protocol
}
_PRINTED = {proto: _Memo(32768) for proto in Protocol}
#: analyze()'s answers, by spec.
_ANALYZED: dict[Protocol, _Memo[tuple[str, ...], Canonical]] = {proto: _Memo(32768) for proto in Protocol}
_SAME: tuple[str, ...] = ("(same)",)
_UNSEEN: tuple[str, ...] = ("(unseen)",)


def _by_groups(spec: tuple[str, ...], proto: Protocol) -> Canonical | None:
    """The fast path, for rules shaped as iptables prints them (see
    :func:`_fast_key`), as a :class:`Canonical`; None for any other shape."""
    tokens = _fast_key(spec, proto)
    return None if tokens is None else Canonical(tokens, True)


def _fast_key(spec: tuple[str, ...], proto: Protocol) -> tuple[str, ...] | None:
    """The fast path, for rules shaped as iptables prints them.

    A rule whose every option follows the ``-m`` or ``-j`` it belongs to
    reads the same one group at a time as all at once; groups recur from
    rule to rule (``-m tcp --dport 80``), so each is read once and kept.
    Returns None for any other shape, which the full reader then takes.

    First it checks whether the spec is already in printed form (nearly every
    rule read back from iptables), without building anything: then the spec
    itself is its key. Otherwise :func:`_regroup` builds the form.
    """
    heads = [i for i, token in enumerate(spec) if token in _GROUP_HEADS]
    if not heads:
        return _base_group(spec, proto)
    first = heads[0]
    if first and not _printed_base(spec, first, proto):
        base = _base_group(spec[:first], proto)
        return None if base is None else _regroup(spec, heads, proto, base)
    memo = _GROUPS[proto]
    target = False
    seen: set[str] | None = None
    heads.append(len(spec))
    start = first
    for end in heads[1:]:
        head = spec[start]
        size = end - start
        if size == 4 and head == "-m" and spec[start + 2] == "--comment" and spec[start + 1] == "comment":
            pass  # the commonest group, and always verbatim
        elif size == 2 and (head == "-j" or head == "-g") and spec[start + 1] not in TARGETS:
            pass  # a jump to a chain
        else:
            group = spec[start:end]
            read = memo.get(group, _UNSEEN)
            if read is _UNSEEN:
                found = _group(group, proto)
                read = memo.put(group, _SAME if found == group else found)
            if read is not _SAME:
                return _regroup(spec, heads[:-1], proto, None)
        if head == "-m":
            name = spec[start + 1]
            if target:
                return _regroup(spec, heads[:-1], proto, None)  # a match after the target
            if name in _MERGEABLE:
                if seen is None:
                    seen = {name}
                elif name in seen:
                    return None  # iptables-nft folds these: the full reader does too
                else:
                    seen.add(name)
        elif target:
            return None  # a second target
        else:
            target = True
        start = end
    return spec


def _regroup(
    spec: tuple[str, ...], heads: list[int], proto: Protocol, base: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    """:func:`_fast_key` for a spec not in printed form: its groups (which
    start at ``heads``) read one at a time, put in printed order after the
    base options (``base``, when already read)."""
    if base is None:
        base = _base_group(spec[: heads[0]], proto)
        if base is None:
            return None
    tokens = list(base)
    target: tuple[str, ...] | None = None
    seen: set[str] = set()
    memo = _GROUPS[proto]
    heads = [*heads, len(spec)]
    start = heads[0]
    for end in heads[1:]:
        group = spec[start:end]
        read = memo.get(group, _UNSEEN)
        if read is _UNSEEN:
            found = _group(group, proto)
            read = memo.put(group, _SAME if found == group else found)
        if read is None:
            return None
        if read is _SAME:
            read = group
        if read[0] == "-m":
            if read[1] in _MERGEABLE:
                if read[1] in seen:
                    return None  # iptables-nft folds these: the full reader does too
                seen.add(read[1])
            tokens += read
        elif target is not None:
            return None
        else:
            target = read
        start = end
    if target is not None:
        tokens += target
    return tuple(tokens)


#: The groups of printed rules (see :func:`_read_printed`), by their text:
#: what follows a ``-m``, or a ``-j``/``-g`` group whole from the blank before
#: it (so the two kinds never meet); the group's tokens when it is in
#: printed form, else None.
_PIECES: dict[Protocol, _Memo[str, tuple[str, ...] | None]] = {proto: _Memo(16384) for proto in Protocol}
#: The base options of printed rules (see :func:`_read_printed`), by their
#: text: their tokens when in printed form, else None.
_BASES: dict[Protocol, _Memo[str, tuple[str, ...] | None]] = {proto: _Memo(16384) for proto in Protocol}
_COMMENT_PIECE = "comment --comment "
_COMMENT_VALUE_AT = len(_COMMENT_PIECE)
# Stands for a quoted value in the text cut into groups (a printable record
# cannot hold it).
_QUOTED = "\x00"


def _read_printed(
    record: str, prefix: str, proto: Protocol, printable: bool = False
) -> tuple[tuple[str, ...], RuleKey] | None:
    """The spec and key of a record (see :func:`rule_records`) that starts
    with ``prefix`` (``-A CHAIN``), read from its text when it has the shape
    iptables prints nearly every rule in; None for any other shape (then
    :func:`_printed_spec` and :func:`_key` read it).

    The shape: base options, ``-m`` groups, then at most one ``-j`` or ``-g``
    group, all in printed form (so the spec is its own key); one blank
    between tokens; no backslash, and quotes only around whole values. Each
    quoted value stands in the text as :data:`_QUOTED` (so that no blank or
    option inside it is cut at).

    Rules differ from rule to rule far more in their values than in their
    shape, so the spec read from a text is kept by that text with what
    varies most left out (:data:`_TEMPLATES`): comments' values, and the
    chain a rule jumps to. A rule whose text reads as another's but for
    those costs a lookup; any other is read a group at a time
    (:func:`_read_text`).

    ``printable``: the record is known to hold no control character but
    newlines (see :func:`_printable`), so only a newline is looked for.
    """
    start = len(prefix) - 1  # the blank after the chain
    if record[: start + 1] != prefix:
        return None
    if not (("\n" not in record) if printable else record.isprintable()):
        return None
    values: list[str] | None = None
    if '"' in record:
        unquoted = _unquote(record, start)
        if unquoted is None:
            return None
        text, values = unquoted
    else:
        text = record[start:]
    if "  " in text or text[-1] == " ":
        return None  # an empty token
    head, addresses = text, None
    if text[1:3] in _ADDRESS_FLAGS or text[1:3] == "! ":
        cut = _cut_addresses(text)
        if cut is not None:
            head, addresses = cut
    before, jump, name = head.rpartition(" -j ")
    if not jump or " " in name or name in TARGETS or name in _GROUP_HEADS:
        name = ""  # not a jump to a chain (a name is never empty: no text ends with a blank)
    else:
        head = before
    templates = _TEMPLATES[proto]
    found = templates.get(head)
    if found is None:
        read = _read_text(text, values, proto)
        if read is None:
            return None
        spec, comments = read
        if comments is not None and (not name or spec[-2:] == ["-j", name]):
            _keep_template(templates, head, spec[:-2] if name else spec[:], comments, addresses)
        tokens = tuple(spec)
        return tokens, tokens
    tokens, places, at = found
    if values is not None or addresses is not None:
        filled = list(tokens)
        if values is not None:
            for index, value in enumerate(values):  # (as many as places: the text says where)
                if value in _GROUP_HEADS:
                    return None  # read as a group's head: the full reader decides
                filled[places[index]] = value
        if addresses is not None:
            printed = _PRINTED_ADDRESSES[proto]
            for index, (value, negated) in enumerate(addresses):
                known = printed.get(value)
                if known is None:
                    known = printed.put(value, _printed_address(value, proto))
                if not known or (not negated and value[-2:] == "/0"):
                    return None
                filled[at[index]] = value
        tokens = tuple(filled)
    if name:
        tokens = (*tokens, "-j", name)
    return tokens, tokens


_ADDRESS_FLAGS = ("-s", "-d")
# Stands for an address in a template (see _TEMPLATES).
_ADDRESS = "\x01"


def _cut_addresses(text: str) -> tuple[str, list[tuple[str, bool]]] | None:
    """A rule's text without the addresses its base options start with, in
    printed order (``[!] -s A [!] -d B``), each written as :data:`_ADDRESS`;
    and those addresses, each with whether it is negated. None when the
    text does not start so."""
    found = _LEADING_ADDRESSES(text)
    if found is None:
        return None
    not_s, source, not_d, destination, not_d_alone, destination_alone = found.groups()
    if source is None:
        not_d, destination = not_d_alone, destination_alone
    if source == _QUOTED or destination == _QUOTED:
        return None  # (a quoted value stays in the text: see _read_printed)
    addresses: list[tuple[str, bool]] = []
    if source is not None:
        addresses.append((source, not_s is not None))
    if destination is not None:
        addresses.append((destination, not_d is not None))
    shape = _ADDRESS_SHAPES[not_s is not None, source is not None, not_d is not None, destination is not None]
    return f"{shape}{text[found.end() :]}", addresses


_LEADING_ADDRESSES = re.compile(r" (! )?-s ([^ ]+)(?: (! )?-d ([^ ]+))?| (! )?-d ([^ ]+)").match
_ADDRESS_SHAPES = {
    (not_s, source, not_d, destination): "".join(
        [
            (" ! -s " if not_s else " -s ") + _ADDRESS if source else "",
            (" ! -d " if not_d else " -d ") + _ADDRESS if destination else "",
        ]
    )
    for not_s in (False, True)
    for source in (False, True)
    for not_d in (False, True)
    for destination in (False, True)
}


def _printed_address(value: str, proto: Protocol) -> bool:
    """Whether ``value`` is a ``-s``/``-d`` address as iptables prints it
    (negated or not: see :func:`_printed_base` for ``/0``)."""
    if proto is Protocol.IPV4 and printed_v4(value):
        return True
    try:
        return "," not in value and normalize_address(value, proto) == value
    except Unsupported:
        return False


def _keep_template(
    templates: _Memo[str, tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]],
    head: str,
    spec: list[str],
    places: list[int],
    addresses: list[tuple[str, bool]] | None,
) -> None:
    """Keep a spec read from a text (see :func:`_read_printed`) as the template
    of the texts that differ from it only in comments' values and in the
    addresses its base options start with (``head`` without them), when
    those addresses are where their text put them."""
    at: list[int] = []
    if addresses is not None:
        index = 0
        for value, negated in addresses:
            index += 2 if negated else 1  # past "!" and the flag
            if index >= len(spec) or spec[index] != value:
                return
            at.append(index)
            spec[index] = _ADDRESS
            index += 1
    for place in places:
        spec[place] = _QUOTED
    templates.put(head, (tuple(spec), tuple(places), tuple(at)))


#: Whether an address is in printed form (see :func:`_printed_address`), by its text.
_PRINTED_ADDRESSES: dict[Protocol, _Memo[str, bool]] = {proto: _Memo(16384) for proto in Protocol}


#: The specs read from printed rules' texts (see :func:`_read_printed`), by
#: their text without a chain jumped to at the end and with its leading
#: addresses as :data:`_ADDRESS`: the spec without that jump, with
#: :data:`_QUOTED` in place of each comment's value and :data:`_ADDRESS`
#: in place of each address, and where those are in the spec.
_TEMPLATES: dict[Protocol, _Memo[str, tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]]] = {
    proto: _Memo(16384) for proto in Protocol
}


def _read_text(
    text: str, values: list[str] | None, proto: Protocol
) -> tuple[list[str], list[int] | None] | None:
    """The spec of a rule's text (see :func:`_read_printed`) read a group at
    a time, when in printed form (else None), and where comments' values
    are in it; those places are None when another quoted value is in the
    spec (checked with its value, it is no template for other values).

    The text is cut at `` -m ``, `` -j `` and `` -g ``, and the base and
    each group are checked to hold no other ``-m``, ``-j`` or ``-g`` token
    (nor ``--match``...): they are then the groups :func:`_fast_key` cuts
    the spec into, and each gets its verdict. A group's text recurs from
    rule to rule far more than a rule does, so its tokens and verdict are
    kept by text (:data:`_PIECES`, :data:`_BASES`): most groups cost a
    lookup, no token of theirs is split out again, and the spec is the
    groups' tokens put together. A group holding a quoted value (other than
    a comment, always verbatim) is checked with its values in place.
    """
    pieces = text.split(" -m ")
    last = pieces[-1]
    at = last.find(" -j ")
    if at < 0:
        at = last.find(" -g ")
    rest = ""
    if at >= 0:
        pieces[-1], rest = last[:at], last[at:]
    spec: list[str] = []
    places: list[int] | None = []
    taken = 0  # the quoted values put in place
    if pieces[0]:
        if values is not None and _QUOTED in pieces[0]:
            return None  # a quoted value among the base options
        base = _BASES[proto].get(pieces[0], _UNSEEN)
        if base is _UNSEEN:
            base = _new_base(pieces[0], proto)
        if base is None:
            return None
        spec += base
    memo = _PIECES[proto]
    seen: set[str] | None = None  # the mergeable matches found
    for piece in pieces[1:]:
        if piece[:_COMMENT_VALUE_AT] == _COMMENT_PIECE:
            value = piece[_COMMENT_VALUE_AT:]
            if " " not in value:
                if value == _QUOTED and values is not None:
                    value = values[taken]
                    taken += 1
                    if places is not None:
                        places.append(len(spec) + 3)
                if value in _GROUP_HEADS:
                    return None
                spec += ("-m", "comment", "--comment", value)
                continue
        if values is not None and _QUOTED in piece:
            found, taken = _quoted_group(("-m", *piece.split(" ")), values, taken, proto)
            places = None
        else:
            found = memo.get(piece, _UNSEEN)
            if found is _UNSEEN:
                found = _new_piece(piece, proto)
        if found is None:
            return None
        if found[1] in _MERGEABLE:
            if seen is None:
                seen = {found[1]}
            elif found[1] in seen:
                return None  # iptables-nft folds these: the full reader does too
            else:
                seen.add(found[1])
        spec += found
    if rest:
        name = rest[4:]
        if values is not None and _QUOTED in rest:
            found, taken = _quoted_group(tuple(rest[1:].split(" ")), values, taken, proto)
            places = None
        elif " " not in name and name not in TARGETS and name not in _GROUP_HEADS:
            found = (rest[1:3], name)  # a jump to a chain
        else:
            found = memo.get(rest, _UNSEEN)
            if found is _UNSEEN:
                found = _new_piece(rest, proto)
        if found is None:
            return None
        spec += found
    if values is not None and taken != len(values):
        return None
    return spec, places


# (each raw-value option is two characters long)
_RAW_ENDS = frozenset(f" {option} " for option in _RAW_VALUES)


def _unquote(record: str, start: int) -> tuple[str, list[str]] | None:
    """The text of a record from ``start`` with each quoted value as
    :data:`_QUOTED`, and the values in order; None unless every quoted value
    is a whole token (a blank or the record's end on either side, and not
    the raw value of an option such as ``-j``) and no backslash escapes
    anything."""
    if "\\" in record:
        return None
    parts = record.split('"')
    if len(parts) == 3:  # one quoted value: the commonest shape
        before, value, after = parts
        if before[-1:] != " " or (after and after[0] != " ") or before[-4:] in _RAW_ENDS:
            return None
        return f"{before[start:]}{_QUOTED}{after}", [value]
    if not len(parts) % 2:
        return None  # a quote left open
    outer = parts[0::2]
    outer[0] = outer[0][start:]
    last = len(outer) - 1
    for index, part in enumerate(outer):
        if (index and part and part[0] != " ") or (index < last and part[-1:] != " "):
            return None
        if index < last and part[-4:] in _RAW_ENDS:
            return None  # a quote at the start of a raw value (see split_printed) is part of it
    return _QUOTED.join(outer), parts[1::2]


def _quoted_group(
    group: tuple[str, ...], values: list[str], taken: int, proto: Protocol
) -> tuple[tuple[str, ...] | None, int]:
    """A group cut out of a record's text (see :func:`_unquote`) with its
    quoted values put in place of their stand-ins, from ``values[taken]``
    on, when it is in printed form (else None); and how many values are
    then taken. Checked with its values, not kept: they seldom recur."""
    filled = list(group)
    for index, token in enumerate(filled):
        if token == _QUOTED:
            filled[index] = values[taken]
            taken += 1
    group = tuple(filled)
    return (group if _printed_group(group, proto) else None), taken


def _new_base(text: str, proto: Protocol) -> tuple[str, ...] | None:
    """The tokens of a rule's base options (their text from the blank
    before them) when in printed form, else None. Kept by text in
    :data:`_BASES`, unless they hold an address (printed with its ``/``):
    those seldom recur, and would only push the others out."""
    tokens = tuple(text[1:].split(" "))
    found = tokens if _GROUP_HEADS.isdisjoint(tokens) and _printed_base(tokens, len(tokens), proto) else None
    return found if "/" in text else _BASES[proto].put(text, found)


def _new_piece(text: str, proto: Protocol) -> tuple[str, ...] | None:
    """The tokens of a group's text (see :data:`_PIECES`) when it is a group
    in printed form, as :func:`_fast_key` reads it; else None. Kept."""
    group = tuple(text[1:].split(" ")) if text[0] == " " else ("-m", *text.split(" "))
    return _PIECES[proto].put(text, group if _printed_group(group, proto) else None)


def _printed_group(group: tuple[str, ...], proto: Protocol) -> bool:
    """Whether :func:`_fast_key` takes ``group`` (cut out of a printed rule)
    as one group, already in printed form."""
    if not _GROUP_HEADS.isdisjoint(group[1:]):
        return False  # it holds more than one group
    if len(group) == 4 and group[0] == "-m" and group[1] == "comment" and group[2] == "--comment":
        return True
    if len(group) == 2 and (group[0] == "-j" or group[0] == "-g") and group[1] not in TARGETS:
        return True
    memo = _GROUPS[proto]
    read = memo.get(group, _UNSEEN)
    if read is _UNSEEN:
        found = _group(group, proto)
        read = memo.put(group, _SAME if found == group else found)
    return read is _SAME


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


_BASE_RANK = {"-s": 0, "-d": 1, "-i": 2, "-o": 3, "-p": 4}


def _base_group(group: tuple[str, ...], proto: Protocol) -> tuple[str, ...] | None:
    """The base options as iptables prints them (``-s A -d B -i I -p P``), read
    without the full reader; None for anything else (implicit matches,
    repeats, ``-f``), which the full reader then takes. ``group`` itself
    when it is already in printed form (checked first, the common case)."""
    if _printed_base(group, len(group), proto):
        return group
    return _base_group_general(group, proto)


def _printed_base(spec: tuple[str, ...], end: int, proto: Protocol) -> bool:
    """Whether ``spec[:end]`` are base options already in printed form: each
    once, in printed order, with printed values. Checked in place (without
    slicing the spec), since nearly every rule read back from iptables is."""
    i, last = 0, -1
    try:
        while i < end:
            flag = spec[i]
            negated = flag == "!"
            if negated:
                i += 1
                flag = spec[i] if i < end else ""
            rank = _BASE_RANK.get(flag, -1)
            if rank <= last or i + 1 >= end:
                return False
            value = spec[i + 1]
            if rank < 2:
                if not (proto is Protocol.IPV4 and printed_v4(value)) and (
                    "," in value or normalize_address(value, proto) != value
                ):
                    return False
                if not negated and value.endswith("/0"):
                    return False
            elif rank == 4:
                if normalize_protocol(value, proto) != value or (not negated and value == "all"):
                    return False
            elif value == "+" or not 0 < len(value) <= 15:
                return False
            last = rank
            i += 2
    except Unsupported:
        return False
    return True


def _base_group_general(group: tuple[str, ...], proto: Protocol) -> tuple[str, ...] | None:
    """The base options as iptables prints them (``-s A -d B -i I -p P``), read
    without the full reader; None for anything else (implicit matches,
    repeats, ``-f``), which the full reader then takes."""
    found: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()  # found, and those that say nothing (-s 0.0.0.0/0, -p all)
    i, count = 0, len(group)
    while i < count:
        flag = group[i]
        negated = flag == "!"
        if negated:
            i += 1
            flag = group[i] if i < count else ""
        if i + 1 >= count or flag in seen:
            return None  # a repeated base option: iptables refuses it
        seen.add(flag)
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

    def __init__(self, spec: tuple[str, ...], proto: Protocol, notes: list[str] | None = None) -> None:
        self.spec = spec
        self.proto = proto
        #: When a list, what was not understood is described in it (not_understood).
        self.notes = notes
        self.base: dict[str, tuple[bool, str]] = {}
        self.loaded: list[_Part] = []  # matches and target, in the order loaded
        self.target: _Part | None = None
        self.exact = True
        #: Whether a repeated tcp or udp match was folded (see _merged).
        self.folded = False

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
            if given.startswith("-"):
                self._note(f"{given} (an option of no extension loaded here that this library knows)")
            elif len(holder.raw) < 2 or not holder.raw[-2].startswith("-"):
                self._note(f"{given} (a word where an option must be)")  # else the value of the one before
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
            self._note(f"{token} (given twice)")
        elif part.exact:
            try:
                if option.normalize is not None:
                    values = option.normalize(values, self.proto)
            except Unsupported:
                part.exact = False
                self._note(f"{token} {' '.join(values)} (a value not read here)")
            part.options[option.name] = (negated, values)
        return i + step

    def _note(self, what: str) -> None:
        if self.notes is not None:
            self.notes.append(what)

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
                except Unsupported as why:
                    part.exact = False
                    self._note(f"{part.flag} {part.name} ({why}: a combination not read here)")
            elif not part.exact and part.flag and part.ext is None:
                kind = "match" if part.flag == "-m" else "target"
                self._note(f"{part.flag} {part.name} (a {kind} this library does not know)")
            self.exact = self.exact and part.exact
        merged = _merged(matches)
        self.folded = len(merged) < len(matches)
        for part in merged:
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
                self._note(f"{flag} {given} (a value not read here)")
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
    """Fold a repeated tcp or udp match into the first, so that every
    listing of the rule reads alike: iptables-legacy and iptables-nft 1.8.7
    print the matches apart; iptables-nft 1.8.8 and 1.8.9 fold those it
    writes as native expressions (ports, flags), and 1.8.10 on folds them
    into an earlier match even without options (``-m tcp -m tcp --dport 1``
    prints as ``-m tcp --dport 1``). Matches that share an option stay apart
    (iptables-nft lists only the last; check_rule refuses them)."""
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
            and not earlier.options.keys() & part.options.keys()
        ):
            earlier.options.update(part.options)
            continue
        first.setdefault(part.name, part)
        result.append(part)
    return result


# -- refusing bad input -------------------------------------------------------------------------

_BLANK = re.compile(r"\s")
_FAMILY = {"-4": Protocol.IPV4, "--ipv4": Protocol.IPV4, "-6": Protocol.IPV6, "--ipv6": Protocol.IPV6}
_BASE_CHECKS = {"-s": check_address, "-d": check_address, "-i": check_interface, "-o": check_interface}
#: An extension that may own an option: one this library does not know.
_UNKNOWN = Extension("?")


def check_rule(spec: tuple[str, ...], proto: Protocol = Protocol.IPV4) -> None:
    """Refuse a spec that iptables would refuse, or would take in a way that
    no listing could show as the rule written, by raising
    :class:`~aioiptables.errors.InvalidRuleError` naming the option (or
    token) and the value, and saying what to write instead.

    It refuses: a port that is no number up to 65535 and no service name of
    /etc/services (``--dport``, ``--sport``, multiport, conntrack ports); a
    reversed range (``--dport 5:3``, ``--length 200:100``: iptables 1.8.9
    takes some and prints them as given, newer ones refuse them); ``--ctproto
    0``; a negated range over every port (``! --dport 0:65535``), a tcp flags
    mask of no flags (``--tcp-flags NONE SYN``) and an option of tcp or udp
    given twice (``--dport 1 -m tcp --dport 2``), which some versions list as
    another rule (or iptables-nft writes as one); an ``-s``/``-d`` of the
    other family, with a bad mask, or holding several addresses (iptables
    makes one rule of each); ``-4``/``-6`` (iptables-restore skips the line
    when they do not match the table's family; when they match they say
    nothing); a whole rule in one token
    (``"-s 10.0.0.0/8 -j ACCEPT"``); an unknown protocol; an interface name
    longer than 15 bytes or holding a blank; a word where an option must be.

    Anything it is not sure of passes: it reads options as iptables does,
    and after an option it does not know (of an extension it does not know),
    it cannot tell values from options, so it refuses nothing more of the
    rule's shape. The tokens are validated first (strings, no control
    characters, UTF-8). Checks are cached: the same spec costs a lookup.

    >>> check_rule(("-p", "tcp", "--dport", "5:3"))
    Traceback (most recent call last):
    ...
    aioiptables.errors.InvalidRuleError: invalid --dport value '5:3': a reversed range (5 > 3): \
write it from low to high, 3:5
    """
    _check(validate_spec(spec), proto)


@functools.lru_cache(maxsize=32768)
def _check(spec: tuple[str, ...], proto: Protocol) -> None:
    loaded: list[Extension] = []  # in the order loaded; _UNKNOWN for what we do not know
    protocol: str | None = None  # what -p named, when not negated
    lost = False  # after an option we do not know: its values look like options
    negated = False
    given: set[str] = set()  # the options of tcp and udp matches given (see _MERGEABLE_SLOTS)
    i, count = 0, len(spec)
    while i < count:
        token = spec[i]
        i += 1
        # The common tokens first, spelled as they are printed.
        flag = _BASE.get(token)
        if flag is not None:
            if flag != "-f":
                if i >= count:
                    return  # iptables says the value is missing
                _check_base(token, flag, spec[i], proto)
                if flag == "-p" and not negated:
                    protocol = normalize_protocol(spec[i], proto)
                i += 1
            lost = negated = False
            continue
        head = _LOADERS.get(token)
        if head is not None:
            name = spec[i] if i < count else ""
            i += 1
            loaded.append(_loaded(head, name))
            lost = negated = False
            continue
        if token == "!":
            negated = True
            continue
        option = _option_of(token, loaded, protocol, proto)
        if option is not None:
            values = spec[i : i + option.nargs]
            i = _check_option(option, token, values, proto, i + option.nargs, negated, given)
            lost = negated = False
            continue
        # Everything else: --option=value, abbreviations, -4/-6, stray words.
        name, inline = token, None
        if token.startswith("--") and "=" in token:
            name, _, inline = token.partition("=")  # getopt's --option=value
        if not lost and token[:1] in ("-", "!") and _has_blank(name):
            raise _one_token_rule(token)
        if name.startswith("--"):
            name = _long_option(name, loaded, protocol, proto)
        if name in _FAMILY:
            raise _family_error(name, proto)
        flag, head = _BASE.get(name), _LOADERS.get(name)
        option = None if flag or head else _option_of(name, loaded, protocol, proto)
        if flag is not None or head is not None or option is not None:
            nargs = 0 if flag == "-f" else 1 if option is None else option.nargs
            values = spec[i : i + nargs] if inline is None else (inline, *spec[i : i + nargs - 1])
            i += nargs if inline is None else max(nargs - 1, 0)
            if flag is not None and values:
                _check_base(token, flag, values[0], proto)
                if flag == "-p" and not negated:
                    protocol = normalize_protocol(values[0], proto)
            elif head is not None:
                loaded.append(_loaded(head, values[0] if values else ""))
            elif option is not None:
                _check_option(option, token, values, proto, i, negated, given)
            lost = negated = False
            continue
        if name in _COUNTERS:
            i += 2
            continue
        if not lost and not token.startswith(("-", "!")):
            raise InvalidRuleError(
                "spec token",
                token,
                "is not an option, nor the value of the option before it (iptables refuses it: "
                "'Bad argument'); a value belongs right after its option, one value per option",
            )
        lost, negated = True, False


_LOADERS = {"-m": "-m", "--match": "-m", "-j": "-j", "--jump": "-j", "-g": "-g", "--goto": "-g"}


def _loaded(head: str, name: str) -> Extension:
    """The extension ``-m NAME``, ``-j NAME`` or ``-g NAME`` loads."""
    if head == "-m":
        return MATCHES.get(name, _UNKNOWN)
    if head == "-g":
        return _JUMP_TO_CHAIN
    return TARGETS.get(name, _UNKNOWN)  # else a chain, or a target we do not know


def _check_base(token: str, flag: str, value: str, proto: Protocol) -> None:
    try:
        _BASE_CHECKS.get(flag, check_protocol)(value, proto)
    except Refused as why:
        raise InvalidRuleError(f"{token} value", value, str(why)) from None


def _check_option(
    option: Option,
    token: str,
    values: tuple[str, ...],
    proto: Protocol,
    after: int,
    negated: bool = False,
    given: set[str] | None = None,
) -> int:
    """Check an option's values (``negated``: after a ``!``); the index after
    them. ``given`` collects the tcp and udp options of the rule."""
    name = token.partition("=")[0]
    slot = _MERGEABLE_SLOTS.get(id(option))
    if slot is not None and given is not None:
        if slot in given:
            raise InvalidRuleError(
                "option",
                name,
                f"is given twice in {slot.partition(' ')[0]} matches: iptables refuses that in "
                "one match, and across two, where a packet must pass both, iptables-nft lists "
                "only the last (and deletes the rule by no spelling but that one); give it "
                "once, with what both allow",
            )
        given.add(slot)
    if len(values) != option.nargs:
        return after
    for check in (option.check, option.check_negated if negated else None):
        if check is not None:
            try:
                check(values, proto)
            except Refused as why:
                raise InvalidRuleError(f"{name} value", " ".join(values), str(why)) from None
    return after


# The options of the matches iptables-nft folds (tcp, udp), by id: what each
# sets in the match (--syn sets the flags). Given twice in one rule, through
# two matches, the rule's listing by iptables-nft keeps only the last.
_MERGEABLE_SLOTS = {
    id(option): f"{ext.name} {'--tcp-flags' if option.name == '--syn' else option.name}"
    for ext in MATCHES.values()
    if ext.mergeable
    for option in ext.options
}


def _has_blank(name: str) -> bool:
    return " " in name or "\t" in name or (not name.isascii() and _BLANK.search(name) is not None)


def _option_of(name: str, loaded: list[Extension], protocol: str | None, proto: Protocol) -> Option | None:
    """The option ``name`` is, as iptables finds it: in the extension loaded
    last that has it, then in the match ``-p`` loads; None when none has it
    or an extension we do not know could."""
    for ext in reversed(loaded):
        if ext is _UNKNOWN:
            return None
        option = ext.by_flag.get(name)
        if option is not None:
            return option
    implicit = IMPLICIT.get((proto, protocol)) if protocol is not None else None
    return implicit.by_flag.get(name) if implicit is not None else None


def _long_option(name: str, loaded: list[Extension], protocol: str | None, proto: Protocol) -> str:
    """The long option ``name`` abbreviates, as getopt reads it, or ``name``."""
    if name in _GETOPT_BASE or _UNKNOWN in loaded:
        return name
    extensions = list(loaded)
    implicit = IMPLICIT.get((proto, protocol)) if protocol is not None else None
    if implicit is not None:
        extensions.append(implicit)
    if any(name in ext.by_flag for ext in extensions):
        return name
    meanings: dict[object, str] = {}
    for full, meaning in _GETOPT_BASE.items():
        if full.startswith(name):
            meanings.setdefault(meaning, full)
    for ext in extensions:
        for flag, option in ext.by_flag.items():
            if flag.startswith(name):
                meanings.setdefault((ext.name, option.name), flag)
    return next(iter(meanings.values())) if len(meanings) == 1 else name


def _one_token_rule(token: str) -> InvalidRuleError:
    try:
        words = split_line(token)
    except InvalidRuleError:
        words = token.split()
    return InvalidRuleError(
        "spec token",
        token,
        "holds a whole rule (or several options) in one token; pass each word as its own token: "
        + ", ".join(repr(word) for word in words),
    )


def _family_error(token: str, proto: Protocol) -> InvalidRuleError:
    family = _FAMILY[token]
    if family is proto:
        why = (
            f"says again that the rule is {proto.value}, which the Rule already says "
            "(Rule.ipv4, Rule.ipv6): leave it out"
        )
    else:
        why = (
            f"says {family.value} in an {proto.value} rule: iptables-restore skips such a line "
            f"without a word, so the rule would never be written; make it an {family.value} "
            "rule instead, without this option"
        )
    return InvalidRuleError("option", token, why)


def not_understood(spec: Iterable[str], proto: Protocol = Protocol.IPV4) -> tuple[str, ...]:
    """What the canonicalizer keeps as text in ``spec``, one phrase per part
    (empty when it understands every token): the parts where a listing may
    print the rule otherwise than :func:`canonicalize` expects.

    >>> not_understood(["-p", "tcp", "--dport", "80", "-m", "foo", "--bar", "1"])
    ('-m foo (a match this library does not know)',)
    """
    spec = tuple(spec)
    if spec and spec[0] == OPAQUE:
        return ("the whole rule (it could not be read)",)
    reader = _Reader(spec, proto, notes=[])
    try:
        reader.read()
    except _Malformed:
        return ("the rule as a whole (iptables would refuse it, or read it in a way not followed here)",)
    return tuple(dict.fromkeys(reader.notes or ()))


# -- whole lines and whole tables ----------------------------------------------------------------


def parse_rule(line: str, table: str = "filter", proto: Protocol = Protocol.IPV4) -> Rule:
    """A :class:`Rule` from one ``-S`` or iptables-save line (``-A CHAIN ...``,
    or ``-I CHAIN [N] ...``), with iptables' quoting rules.

    The rule is what iptables printed, so it is not put through
    :func:`check_rule` (iptables prints some forms it would not take as
    input, such as a reversed udp port range); the table, chain and tokens
    are still validated.

    >>> parse_rule('-A INPUT -m comment --comment "a b" -j ACCEPT').spec
    ('-m', 'comment', '--comment', 'a b', '-j', 'ACCEPT')
    """
    tokens = split_line(line)
    if len(tokens) < 2 or tokens[0] not in ("-A", "--append", "-I", "--insert"):
        raise InvalidRuleError("rule line", line, "must start with -A CHAIN or -I CHAIN")
    spec = tokens[2:]
    if tokens[0] in ("-I", "--insert") and spec and spec[0].isdigit():
        spec = spec[1:]
    return Rule.from_printed(table, tokens[1], spec, proto)


class TableSnapshot:
    """One table as iptables-save printed it: every chain, in order.

    Reading a snapshot only sorts lines by chain; a chain's rules are split
    into tokens and canonicalized when that chain is first asked for, so a
    large table costs little when only a few of its chains matter. ``lines``
    holds each chain's rule records (see :func:`rule_records`).
    """

    def __init__(
        self,
        proto: Protocol,
        table: str,
        lines: dict[str, list[str]],
        policies: dict[str, str],
        *,
        printable: bool = False,
    ) -> None:
        self.proto = proto
        self.table = table
        self.policies = policies
        self._lines = lines
        self._listings: dict[str, ChainListing] = {}
        # The text the lines came from holds no control character but newlines.
        self._printable = printable

    @property
    def names(self) -> tuple[str, ...]:
        """Every chain in the table, in the order iptables-save printed them."""
        return tuple(self._lines)

    @property
    def rule_count(self) -> int:
        """How many rules the table holds, in every chain."""
        return sum(map(len, self._lines.values()))

    def chain(self, name: str) -> ChainListing:
        """One chain's rules; a chain the table does not hold reads as missing."""
        listing = self._listings.get(name)
        if listing is None:
            lines = self._lines.get(name)
            if lines is None:
                return ChainListing(self.proto, self.table, name, exists=False)
            listing = self._listings[name] = read_listing(
                self.proto, self.table, name, lines, printable=self._printable
            )
        return listing

    @property
    def chains(self) -> dict[str, ChainListing]:
        """Every chain's rules, by name."""
        return {name: self.chain(name) for name in self._lines}


def parse_save(text: str, proto: Protocol = Protocol.IPV4) -> dict[str, TableSnapshot]:
    """Every table in iptables-save output, by name. Lines are split at
    ``\\n`` only (a comment may hold U+2028), and a rule printed on several
    lines is one rule (see :func:`rule_records`)."""
    tables: dict[str, TableSnapshot] = {}
    table = ""
    lines: dict[str, list[str]] = {}
    policies: dict[str, str] = {}
    printable = _printable(text)
    printed = text.split("\n")
    count = len(printed)
    i = 0
    # "-A CHAIN " of the chain the rule before went to, and its list:
    # iptables-save prints a chain's rules together, so a rule that starts
    # with it goes there without its chain being cut out and looked up.
    prefix, rules = "\n", []  # (no line starts with a newline)
    size = 1  # len(prefix)
    # (Slices are compared rather than str.startswith() called: on Python
    # 3.11 its arguments are parsed from a tuple at each call, which costs
    # more than a short slice; this loop runs once per line of the table.)
    while i < count:
        line = printed[i]
        i += 1
        if line[:3] == "-A ":
            # _goes_on inlined, its cheap tests first: a line with an even
            # number of quotes and no backslash, followed by a line that
            # starts a rule or another record, is a whole rule.
            after = printed[i] if i < count else ""
            if (
                ('"' in line and (line.count('"') % 2 or "\\" in line))
                or (after and after[:3] != "-A " and not after.startswith(_RECORD_HEADS))
            ) and _goes_on(line, after):
                line, i = _gather(printed, i - 1)
            if line[:size] == prefix:
                rules.append(line)
                continue
            chain = line[3:].partition(" ")[0]
            if "\n" in chain:  # the rule's first line holds only its chain
                chain = chain.partition("\n")[0]
            rules = lines.setdefault(chain, [])
            rules.append(line)
            prefix = f"-A {chain} "
            size = len(prefix)
        elif line[:1] == ":":
            name, _, rest = line[1:].partition(" ")
            lines.setdefault(name, [])
            policy = rest.split(" ", 1)[0]
            if policy != "-":
                policies[name] = policy
        elif line[:1] == "*":
            table, lines, policies = line[1:].strip(), {}, {}
            prefix, size = "\n", 1
        elif line[:6] == "COMMIT":
            tables[table] = TableSnapshot(proto, table, lines, policies, printable=printable)
    return tables


# The bytes str.isprintable() refuses in ASCII text, but the newline.
_CONTROL = bytes([*range(0x0A), *range(0x0B, 0x20), 0x7F])


def _printable(text: str) -> bool:
    """Whether every line of ``text`` is printable (``str.isprintable()``),
    checked over the whole text at once: iptables prints ASCII nearly
    always, and deleting the control bytes from its encoding (a C loop)
    costs half of checking each rule's characters in the Unicode
    database."""
    if not text.isascii():
        return False
    encoded = text.encode("ascii")
    return len(encoded.translate(None, _CONTROL)) == len(encoded)
