"""Rules as people write them: one line of iptables' own syntax.

``[iptables | ip6tables] [-t TABLE | TABLE] -A CHAIN SPEC...``, quoted as
iptables-save quotes (``-m comment --comment "a b"``). This is how the command
line takes a rule and how a rule-set file's ``rule = "..."`` entries are
written; a rule copied from a shell history, ``iptables`` and all, reads too.

>>> text = read_rule('ip6tables -t nat -A POSTROUTING -s fd00:4::/64 -j MASQUERADE')
>>> text.table, text.chain, text.spec, text.proto
('nat', 'POSTROUTING', ('-s', 'fd00:4::/64', '-j', 'MASQUERADE'), <Protocol.IPV6: 'ipv6'>)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from .errors import InvalidRuleError
from .model import Protocol, Rule, validate_chain_name, validate_spec, validate_table
from .syntax import split_line

__all__ = ["RuleText", "read_rule", "PROGRAMS"]

#: The programs a rule may start with, and the protocol each one speaks.
PROGRAMS: dict[str, Protocol] = {
    f"{proto.command}{flavour}": proto for proto in Protocol for flavour in ("", "-nft", "-legacy")
}

_RULE_COMMANDS = {
    "-A": "append", "--append": "append",
    "-I": "insert", "--insert": "insert",
    "-C": "check", "--check": "check",
    "-D": "delete", "--delete": "delete",
}  # fmt: skip
_TABLE_OPTIONS = ("-t", "--table")


@dataclasses.dataclass(frozen=True)
class RuleText:
    """One rule as written, checked but not yet tied to a protocol unless it
    names its program (``iptables`` or ``ip6tables``).

    >>> read_rule('-t nat -A POSTROUTING -s 10.4.0.0/16 -j MASQUERADE').spec
    ('-s', '10.4.0.0/16', '-j', 'MASQUERADE')
    """

    text: str
    table: str
    #: None when the rule names no chain (a bare spec).
    chain: str | None
    spec: tuple[str, ...]
    #: The protocol its program speaks; None when it names no program.
    proto: Protocol | None = None

    def rule(self, default: Protocol = Protocol.IPV4) -> Rule:
        """The rule, for the protocol its program speaks, else ``default``;
        refused when it names no chain.

        >>> read_rule("-A INPUT -j ACCEPT").rule(Protocol.IPV6).proto
        <Protocol.IPV6: 'ipv6'>
        >>> read_rule("iptables -A INPUT -j ACCEPT").rule(Protocol.IPV6).proto
        <Protocol.IPV4: 'ipv4'>
        """
        if self.chain is None:
            raise InvalidRuleError(
                "rule", self.text, "names no chain: write it as '[-t TABLE] -A CHAIN SPEC...'"
            )
        return Rule(self.table, self.chain, self.spec, self.proto or default)


def read_rule(text: str) -> RuleText:
    """Read one rule written ``[PROGRAM] [-t TABLE | TABLE] [-A CHAIN] SPEC...``
    with iptables' quoting: ``-I CHAIN N``, ``-C`` and ``-D`` read like ``-A``,
    and PROGRAM is one of :data:`PROGRAMS` (a path to one too). Raises
    :class:`InvalidRuleError` for anything it cannot use."""
    tokens = split_line(text)
    proto = PROGRAMS.get(os.path.basename(tokens[0])) if tokens else None
    if proto is not None:
        tokens = tokens[1:]
    table, i = _read_table(tokens, text)
    chain: str | None = None
    command = _RULE_COMMANDS.get(tokens[i]) if i < len(tokens) else None
    if command is not None:
        if i + 1 >= len(tokens):
            raise InvalidRuleError("rule", text, f"{tokens[i]} needs a chain name")
        chain, i = tokens[i + 1], i + 2
        if command == "insert" and i < len(tokens) and tokens[i].isdigit():
            i += 1  # the position: a rule is the same rule wherever it is
    spec = validate_spec(tokens[i:])
    stray = _misplaced(spec)
    if stray is not None:
        raise InvalidRuleError(
            "rule", text, f"{stray} must come before the spec: '[-t TABLE] -A CHAIN SPEC...'"
        )
    return RuleText(
        text,
        validate_table(table or "filter"),
        None if chain is None else validate_chain_name(chain),
        spec,
        proto,
    )


def _read_table(tokens: list[str], text: str) -> tuple[str | None, int]:
    """The table a rule names up front (``nat ...``, ``-t nat ...``, ``--table=nat ...``),
    and the index of the first token after it."""
    if tokens and not tokens[0].startswith(("-", "!")):
        return tokens[0], 1
    table: str | None = None
    i = 0
    while i < len(tokens) and (tokens[i] in _TABLE_OPTIONS or tokens[i].startswith("--table=")):
        if table is not None:
            raise InvalidRuleError("rule", text, "names its table twice")
        if tokens[i].startswith("--table="):
            table, i = tokens[i].partition("=")[2], i + 1
        elif i + 1 < len(tokens):
            table, i = tokens[i + 1], i + 2
        else:
            raise InvalidRuleError("rule", text, f"{tokens[i]} needs a table name")
    return table, i


def _misplaced(spec: Sequence[str]) -> str | None:
    """A table or command option inside the spec, where iptables would still
    read it but this reader would take it for a match option; None if none.
    A token right after a long option is its value (``--comment -t``), not an option."""
    for before, token in zip(("", *spec), spec, strict=False):
        is_option = token in _TABLE_OPTIONS or token in _RULE_COMMANDS or token.startswith("--table=")
        if is_option and not before.startswith("--"):
            return token
    return None
