"""Rule-set files: the rules a :class:`~aioiptables.Controller` keeps, written down.

One format is read and written: TOML, with ``[[chain]]``, ``[[append]]`` and
``[[prepend]]`` entries (docs/files.md describes it). iptables' own
iptables-save text is read too. ``aioiptables diff`` and ``aioiptables
apply`` read these files, and so can your agent::

    from aioiptables import RuleSet, files

    ruleset = RuleSet.load("/etc/mesh/rules.toml")   # the same as files.load(...)
    await controller.set(ruleset)

Whatever is wrong in a file raises :class:`~aioiptables.RuleSetFileError`,
which names the file and the line, before any process runs.

>>> ruleset = loads('''
... [[chain]]
... table = "nat"
... name = "KILO-NAT"
...
... [[append]]
... rule = "-t nat -A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE"
... ''')
>>> for item in ruleset:
...     print(item)
nat -N KILO-NAT
nat -A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE
>>> print(dumps(ruleset), end="")
proto = "ipv4"
<BLANKLINE>
[[chain]]
table = "nat"
name = "KILO-NAT"
<BLANKLINE>
[[append]]
rule = "-t nat -A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE"
>>> loads(dumps(ruleset)) == ruleset
True
"""

from __future__ import annotations

import collections
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, ParamSpec, TypeVar, cast

from .errors import InvalidRuleError, RuleSetFileError
from .model import Chain, Item, Protocol, Rule, RuleSet, is_builtin_chain, validate_table
from .ruletext import RuleText, read_rule
from .syntax import join_tokens, split_line

__all__ = ["Format", "RuleSetFile", "load", "loads", "read", "reads", "dump", "dumps"]

#: How a file is written: ``toml``, ``save`` (iptables-save text), or
#: ``auto``: TOML when the path ends in ``.toml`` or the first line that is
#: not blank or a ``#`` comment does not start with ``*``, else iptables-save.
Format = Literal["auto", "toml", "save"]

_PROTOCOLS: dict[str, tuple[Protocol, ...]] = {
    "ipv4": (Protocol.IPV4,),
    "ipv6": (Protocol.IPV6,),
    "both": (Protocol.IPV4, Protocol.IPV6),
}
_TOP_KEYS = ("proto", "chain", "append", "prepend")
_CHAIN_KEYS = ("table", "name", "proto")
_RULE_KEYS = ("rule", "table", "chain", "spec", "proto")
# iptables-save -c prints "[packets:bytes]" before each rule.
_COUNTERS = re.compile(r"^\[\d+:\d+\]\s+")
_P = ParamSpec("_P")
_T = TypeVar("_T")


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSetFile:
    """A rule set read from a file, and where each of its items was written.

    >>> found = reads('[[append]]\\nrule = "-A INPUT -j ACCEPT"\\n', path="rules.toml")
    >>> rule = found.ruleset.append[0]
    >>> found.lines[rule], found.where(rule)
    (1, 'rules.toml:1: [[append]] #1')
    """

    path: str
    ruleset: RuleSet
    #: The line each item was read from (a TOML entry's ``[[...]]`` line).
    lines: Mapping[Item, int]
    #: The TOML entry each item was read from (``[[append]] #2``); none for
    #: iptables-save text.
    entries: Mapping[Item, str]

    def where(self, item: Item) -> str:
        """Where ``item`` was written, for a message: ``PATH:LINE``, and its
        TOML entry; only the path for an item not read from this file."""
        line = self.lines.get(item)
        if line is None:
            return self.path
        entry = self.entries.get(item)
        return f"{self.path}:{line}: {entry}" if entry else f"{self.path}:{line}"


def load(
    path: str | os.PathLike[str], *, proto: Protocol = Protocol.IPV4, format: Format = "auto"
) -> RuleSet:
    """The rule set in a file (see :func:`read`).

    Example::

        ruleset = files.load("rules.toml")
    """
    return read(path, proto=proto, format=format).ruleset


def loads(
    text: str, *, path: str = "<string>", proto: Protocol = Protocol.IPV4, format: Format = "auto"
) -> RuleSet:
    """The rule set in ``text`` (see :func:`reads`).

    >>> loads("*filter\\n-A INPUT -i lo -j ACCEPT\\nCOMMIT\\n").append
    (Rule(table='filter', chain='INPUT', spec=('-i', 'lo', '-j', 'ACCEPT'), proto=<Protocol.IPV4: 'ipv4'>),)
    """
    return reads(text, path=path, proto=proto, format=format).ruleset


def read(
    path: str | os.PathLike[str], *, proto: Protocol = Protocol.IPV4, format: Format = "auto"
) -> RuleSetFile:
    """Read a rule-set file (UTF-8), TOML or iptables-save text (see :data:`Format`).

    ``proto`` is the protocol of every entry that names none (and of all of
    iptables-save text, which cannot). Raises :class:`OSError` when the file
    cannot be read and :class:`~aioiptables.RuleSetFileError` (naming the
    line) when what it says cannot be used.
    """
    name = os.fspath(path)
    with open(name, "rb") as file:
        data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RuleSetFileError(name, line, f"not UTF-8 text (byte {data[exc.start]:#04x})") from None
    return reads(text, path=name, proto=proto, format=format)


def reads(
    text: str, *, path: str = "<string>", proto: Protocol = Protocol.IPV4, format: Format = "auto"
) -> RuleSetFile:
    """Read a rule set from ``text``; ``path`` names it in errors and in
    :meth:`RuleSetFile.where`.

    A user chain is created when missing; append rules are kept in order at
    the end of their chains, prepend rules at the top. The rule set lists
    the chains first, then the append rules, in the order written.

    >>> reads('[[prepend]]\\nchain = "INPUT"\\nspec = "-j DROP"\\nproto = "ipv5"\\n', path="x.toml")
    Traceback (most recent call last):
    ...
    aioiptables.errors.RuleSetFileError: x.toml:4: [[prepend]] #1: proto must be one of 'ipv4', 'ipv6', 'both', not 'ipv5'
    """
    kind = _detect_format(text, path) if format == "auto" else format
    found = _Found(path)
    if kind == "save":
        _read_save(text, proto, found)
    elif kind == "toml":
        _read_toml(text, proto, found)
    else:
        raise ValueError(f"format must be 'auto', 'toml' or 'save', not {format!r}")
    return found.result()


def _detect_format(text: str, path: str) -> Literal["toml", "save"]:
    if path.endswith(".toml"):
        return "toml"
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return "save" if stripped.startswith("*") else "toml"
    return "toml"


class _Found:
    """The items read so far, with their lines; a repeated item is refused
    on the line that repeats it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.chains: list[Item] = []
        self.append: list[Item] = []
        self.prepend: list[Rule] = []
        self.lines: dict[Item, int] = {}
        self.entries: dict[Item, str] = {}

    def fail(self, line: int, entry: str, reason: str) -> NoReturn:
        raise RuleSetFileError(self.path, line, f"{entry}: {reason}" if entry else reason)

    def located(
        self, line: int, entry: str, build: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """``build(*args)``, its InvalidRuleError said to be on ``line``."""
        try:
            return build(*args, **kwargs)
        except InvalidRuleError as exc:
            self.fail(line, entry, str(exc))

    def add(self, item: Item, line: int, entry: str, section: str) -> None:
        first = self.lines.get(item)
        if first is not None:
            self.fail(line, entry, f"{item} appears twice: line {first} has it too")
        self.lines[item] = line
        if entry:
            self.entries[item] = entry
        if section == "chain":
            self.chains.append(item)
        elif section == "append":
            self.append.append(item)
        else:
            self.prepend.append(cast("Rule", item))

    def result(self) -> RuleSetFile:
        ruleset = RuleSet(append=[*self.chains, *self.append], prepend=self.prepend)
        return RuleSetFile(self.path, ruleset, self.lines, self.entries)


# -- reading iptables-save text ---------------------------------------------------------------


def _read_save(text: str, proto: Protocol, found: _Found) -> None:
    """User chains (``:CHAIN``), ``-A`` and ``-I`` lines; policies and counters are ignored."""
    table: str | None = None
    for number, raw in enumerate(text.split("\n"), 1):
        line = _COUNTERS.sub("", raw.strip(), count=1)
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = found.located(number, "", validate_table, line[1:].strip())
        elif line == "COMMIT":
            table = None
        elif table is None:
            found.fail(number, "", f"{line!r} is outside a *TABLE ... COMMIT section")
        elif line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if not is_builtin_chain(table, name):
                found.add(found.located(number, "", Chain, table, name, proto), number, "", "chain")
        else:
            rule = found.located(number, "", Rule.parse, line, table, proto)
            section = "prepend" if line.split(" ", 1)[0] in ("-I", "--insert") else "append"
            found.add(rule, number, "", section)


# -- reading TOML ---------------------------------------------------------------------------------


class _TomlLines:
    """Where things are in TOML text: the TOML reader keeps no line numbers."""

    _ERROR_AT = re.compile(r" \(at line (\d+), column (\d+)\)$")

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self._headers: dict[str, list[int]] = {}

    def entry(self, section: str, index: int) -> int:
        """The line of the ``index``-th (from 1) ``[[section]]`` header; for
        entries written as an inline array, the line of the array's key."""
        headers = self._headers.get(section)
        if headers is None:  # once per section: a file of many entries asks for each
            header = re.compile(rf"^\s*\[\[\s*{re.escape(section)}\s*\]\]")
            headers = self._headers[section] = [
                n for n, line in enumerate(self.lines, 1) if header.match(line)
            ]
        return headers[index - 1] if index <= len(headers) else self.key(0, section)

    def key(self, start: int, key: str) -> int:
        """The line of ``key`` in the table whose header is on line ``start``
        (0: the top level, where a key may be a table of its own); ``start``
        when it cannot be found."""
        name = rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
        assignment = re.compile(rf"^\s*{name}\s*[=.]")
        for number, line in enumerate(self.lines[start:], start + 1):
            if assignment.match(line):
                return number
            if re.match(r"^\s*\[", line):
                break
        if start == 0:
            table = re.compile(rf"^\s*\[\[?\s*{name}\s*[\].]")
            return next((n for n, line in enumerate(self.lines, 1) if table.match(line)), 1)
        return start

    def error(self, message: str) -> tuple[int, str]:
        """The line a TOML syntax error names, and the error without it."""
        at = self._ERROR_AT.search(message)
        if at is not None:
            return int(at[1]), f"{message[: at.start()]} (column {at[2]})"
        end = " (at end of document)"
        if message.endswith(end):
            return len(self.lines), message.removesuffix(end) + " (at the end)"
        return 1, message


@dataclass
class _Entry:
    """One table of a TOML rule set (the top level, or one ``[[...]]``
    entry) and how to point at its lines."""

    data: dict[str, Any]
    #: ``[[append]] #2``; empty for the top level.
    label: str
    #: The entry's header line (0 for the top level).
    line: int
    text: _TomlLines
    found: _Found

    def fail(self, reason: str, key: str | None = None) -> NoReturn:
        """Refuse the entry, on the line of ``key`` when given."""
        line = self.line if key is None else self.text.key(self.line, key)
        self.found.fail(max(line, 1), self.label, reason)

    def located(self, build: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return self.found.located(self.line, self.label, build, *args, **kwargs)

    def only_keys(self, allowed: Sequence[str]) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            self.fail(f"unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})", unknown[0])

    def protos(self, default: tuple[Protocol, ...]) -> tuple[Protocol, ...]:
        value = self.data.get("proto")
        if value is None:
            return default
        if not isinstance(value, str) or value not in _PROTOCOLS:
            self.fail(f"proto must be one of {', '.join(map(repr, _PROTOCOLS))}, not {value!r}", "proto")
        return _PROTOCOLS[value]

    def string(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            self.fail(f"{key} is missing")
        if not isinstance(value, str):
            self.fail(f"{key} must be a string, not {value!r}", key)
        return value

    def entries(self, section: str) -> list[_Entry]:
        """The ``[[section]]`` entries of the top level."""
        value = self.data.get(section, [])
        if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
            self.fail(f"{section} must be written as [[{section}]] tables", section)
        return [
            _Entry(entry, f"[[{section}]] #{index}", self.text.entry(section, index), self.text, self.found)
            for index, entry in enumerate(cast("list[dict[str, Any]]", value), 1)
        ]


def _read_toml(text: str, default: Protocol, found: _Found) -> None:
    lines = _TomlLines(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = lines.error(str(exc))
        found.fail(line, "", f"not valid TOML: {message}")
    top = _Entry(data, "", 0, lines, found)
    top.only_keys(_TOP_KEYS)
    protos = top.protos((default,))
    for entry in top.entries("chain"):
        entry.only_keys(_CHAIN_KEYS)
        table, name = entry.string("table", "filter"), entry.string("name")
        for proto in entry.protos(protos):
            found.add(entry.located(Chain, table, name, proto), entry.line, entry.label, "chain")
    for section in ("append", "prepend"):
        for entry in top.entries(section):
            for rule in _rules(entry, protos):
                found.add(rule, entry.line, entry.label, section)


def _rules(entry: _Entry, default: tuple[Protocol, ...]) -> list[Rule]:
    """The rules of one ``[[append]]`` or ``[[prepend]]`` entry: one per protocol."""
    entry.only_keys(_RULE_KEYS)
    if "rule" in entry.data:
        if {"table", "chain", "spec"} & entry.data.keys():
            entry.fail("give either rule or table, chain and spec, not both")
        text = entry.located(read_rule, entry.string("rule"))
    else:
        text = RuleText("", entry.string("table", "filter"), entry.string("chain"), _spec(entry))
    return [entry.located(text.rule, proto) for proto in _rule_protos(entry, text, default)]


def _rule_protos(entry: _Entry, text: RuleText, default: tuple[Protocol, ...]) -> tuple[Protocol, ...]:
    """The protocols of a rule: the one its program speaks (``ip6tables -A
    ...``), which an explicit ``proto`` must agree with, else ``proto``."""
    if text.proto is None:
        return entry.protos(default)
    if "proto" in entry.data and entry.protos(default) != (text.proto,):
        program = text.proto.command
        entry.fail(f"the rule names {program}, so proto must be {text.proto.value!r} or left out", "proto")
    return (text.proto,)


def _spec(entry: _Entry) -> tuple[str, ...]:
    spec = entry.data.get("spec", [])
    if isinstance(spec, str):
        return tuple(entry.located(split_line, spec))
    if isinstance(spec, list) and all(isinstance(token, str) for token in spec):
        return tuple(spec)
    entry.fail(f"spec must be a string or a list of strings, not {spec!r}", "spec")


# -- writing --------------------------------------------------------------------------------------


def dumps(ruleset: RuleSet) -> str:
    """The rule set as TOML that :func:`loads` reads back.

    Its chains are written first, then its append rules, then its prepend
    rules, each in order; so a rule set whose chains come first (as every
    rule set read from a file does) reads back equal. An IPv4 item followed
    by the same item for IPv6 is written once, as ``proto = "both"``.

    >>> print(dumps(RuleSet(prepend=[Rule.ipv4("filter", "INPUT", "-i", "wg0", "-j", "ACCEPT"),
    ...                              Rule.ipv6("filter", "INPUT", "-i", "wg0", "-j", "ACCEPT")])), end="")
    proto = "both"
    <BLANKLINE>
    [[prepend]]
    rule = "-I INPUT -i wg0 -j ACCEPT"
    """
    sections: list[tuple[str, Sequence[Item]]] = [
        ("chain", [item for item in ruleset.append if isinstance(item, Chain)]),
        ("append", [item for item in ruleset.append if isinstance(item, Rule)]),
        ("prepend", ruleset.prepend),
    ]
    entries = [
        (section, fields, proto)
        for section, items in sections
        for fields, proto in _paired(items, "-I" if section == "prepend" else "-A")
    ]
    counted = collections.Counter(proto for _, _, proto in entries)
    top = counted.most_common(1)[0][0] if counted else Protocol.IPV4.value
    out = [f'proto = "{top}"']
    for section, fields, proto in entries:
        out += ["", f"[[{section}]]", *(f"{key} = {value}" for key, value in fields)]
        if proto != top:
            out.append(f'proto = "{proto}"')
    return "\n".join(out) + "\n"


def dump(ruleset: RuleSet, path: str | os.PathLike[str]) -> None:
    """Write the rule set to ``path`` as TOML (see :func:`dumps`).

    Example::

        files.dump(ruleset, "rules.toml")
        assert files.load("rules.toml") == ruleset
    """
    with open(os.fspath(path), "w", encoding="utf-8") as file:
        file.write(dumps(ruleset))


Fields = list[tuple[str, str]]


def _paired(items: Sequence[Item], command: str) -> Iterator[tuple[Fields, str]]:
    """Each item's TOML fields and ``proto``: an IPv4 item and its IPv6 twin
    right after it are one entry, ``both``, which reads back as the two."""
    index = 0
    while index < len(items):
        item = items[index]
        twin = items[index + 1] if index + 1 < len(items) else None
        paired = twin is not None and item.proto is Protocol.IPV4 and _twins(item, twin)
        yield _fields(item, command), "both" if paired else item.proto.value
        index += 2 if paired else 1


def _twins(item: Item, other: Item) -> bool:
    if other.proto is not Protocol.IPV6:
        return False
    if isinstance(item, Chain) and isinstance(other, Chain):
        return (item.table, item.name) == (other.table, other.name)
    if isinstance(item, Rule) and isinstance(other, Rule):
        return (item.table, item.chain, item.spec) == (other.table, other.chain, other.spec)
    return False


def _fields(item: Item, command: str) -> Fields:
    """An entry's fields; a rule as one line, ``-A CHAIN`` (``-I`` for a
    prepend rule) and its spec, when that line reads back as the rule."""
    if isinstance(item, Chain):
        return [("table", _string(item.table)), ("name", _string(item.name))]
    text = ("" if item.table == "filter" else f"-t {item.table} ") + f"{command} {item.chain}"
    if item.spec:
        text += f" {join_tokens(item.spec)}"
    if _reads_back(text, item):
        return [("rule", _string(text))]
    # A spec that the one-line form would read otherwise: its tokens as they are.
    spec = ", ".join(_string(token) for token in item.spec)
    return [("table", _string(item.table)), ("chain", _string(item.chain)), ("spec", f"[{spec}]")]


def _reads_back(text: str, rule: Rule) -> bool:
    try:
        read = read_rule(text)
    except InvalidRuleError:
        return False
    return (read.table, read.chain, read.spec, read.proto) == (rule.table, rule.chain, rule.spec, None)


# What a TOML string cannot hold unescaped (a tab it can), and what a
# literal string ('...', which has no escapes) cannot hold at all.
_TOML_ESCAPED = re.compile(r'[\x00-\x08\x0a-\x1f\x7f"\\]')
_TOML_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _string(text: str) -> str:
    """``text`` as a TOML string: a literal one (``'...'``) for text holding
    double quotes or backslashes, as rules with comments do, so it reads as
    written; a basic one (``"..."``) otherwise."""
    if ('"' in text or "\\" in text) and "'" not in text and _TOML_CONTROL.search(text) is None:
        return f"'{text}'"
    return '"' + _TOML_ESCAPED.sub(_escape, text) + '"'


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    return "\\" + char if char in '"\\' else f"\\u{ord(char):04x}"
