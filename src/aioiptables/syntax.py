"""iptables' own quoting rules, for one line of text at a time.

``iptables -S``, ``iptables-save`` and ``iptables-restore`` share one lexical
convention: tokens are separated by blanks; a token holding anything outside
``[A-Za-z0-9_-]`` is printed inside double quotes, with ``"``, ``'`` and ``\\``
escaped by a backslash; inside quotes a backslash makes the next character
literal. It imports only the errors, so the model can print rules and the parser
can read them with the same two functions.
"""

from __future__ import annotations

import re

from .errors import InvalidRuleError

__all__ = ["quote", "split_line", "join_tokens"]

# Characters iptables prints without quoting (xtables_save_string).
_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
# Characters that must be escaped inside a quoted token.
_ESCAPED = frozenset("\"'\\")
# Characters that force quoting when we write a payload ourselves. Looser than
# what iptables prints (an address like 10.0.0.0/8 needs no quotes), but every
# token that could split or end a restore line is quoted.
_NEEDS_QUOTES = re.compile(r"[\s\"'\\#]")


def quote(token: str, *, as_iptables_prints: bool = False) -> str:
    """Return ``token`` as it must appear on a restore or ``-S`` line.

    With ``as_iptables_prints`` the rule is iptables' own (anything but
    letters, digits, ``_`` and ``-`` is quoted); otherwise only what would
    break the line is quoted.

    >>> quote("a b")
    '"a b"'
    >>> quote("10.0.0.0/8")
    '10.0.0.0/8'
    >>> quote("10.0.0.0/8", as_iptables_prints=True)
    '"10.0.0.0/8"'
    """
    if as_iptables_prints:
        plain = _PLAIN.fullmatch(token) is not None
    else:
        plain = token != "" and _NEEDS_QUOTES.search(token) is None
    if plain:
        return token
    escaped = "".join("\\" + c if c in _ESCAPED else c for c in token)
    return f'"{escaped}"'


def join_tokens(tokens: tuple[str, ...] | list[str]) -> str:
    """Join tokens into one line that :func:`split_line` reads back exactly."""
    return " ".join(quote(t) for t in tokens)


def split_line(line: str) -> list[str]:
    """Split one ``-S``/save/restore line into tokens, as iptables-restore does.

    >>> split_line('-A X -m comment --comment "a \\\\"b\\\\"" -j ACCEPT')
    ['-A', 'X', '-m', 'comment', '--comment', 'a "b"', '-j', 'ACCEPT']
    """
    if "\t" in line or "\r" in line or "\n" in line:
        return _split_slowly(line)
    if '"' not in line:
        # The common case. str.split() would also split at U+00A0 and the like.
        return list(filter(None, line.split(" ")))
    quotes = line.count('"')
    if quotes == 2 and "\\" not in line:
        return _split_one_quoted(line)
    if "\\" not in line and quotes % 2 == 0:
        # Quotes but no escapes: quoted and unquoted stretches alternate.
        return _split_at_quotes(line)
    return _split_slowly(line)


def _split_one_quoted(line: str) -> list[str]:
    # The shape of nearly every quoted line iptables prints: one quoted value
    # standing alone (a comment, a log prefix).
    before, _, rest = line.partition('"')
    inside, _, after = rest.partition('"')
    if (before and before[-1] != " ") or (after and after[0] != " "):
        return _split_at_quotes(line)  # glued to its neighbours
    tokens = list(filter(None, before.split(" ")))
    tokens.append(inside)
    tokens += filter(None, after.split(" "))
    return tokens


def _split_at_quotes(line: str) -> list[str]:
    tokens: list[str] = []
    current: str | None = None  # the token being built, quotes and all
    for index, part in enumerate(line.split('"')):
        if index % 2:
            current = (current or "") + part  # a quoted stretch, blanks and all
            continue
        pieces = part.split(" ")
        if pieces[0]:
            current = (current or "") + pieces[0]
        if len(pieces) > 1:
            if current is not None:
                tokens.append(current)
            tokens.extend(filter(None, pieces[1:-1]))
            current = pieces[-1] or None
    if current is not None:
        tokens.append(current)
    return tokens


def _split_slowly(line: str) -> list[str]:
    tokens: list[str] = []
    current: list[str] = []
    in_token = False
    quoted = False
    escaped = False
    for char in line:
        if quoted:
            if escaped:
                current.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            else:
                current.append(char)
        elif char == '"':
            quoted = True
            in_token = True
        elif char in " \t\r\n":
            if in_token:
                tokens.append("".join(current))
                current = []
                in_token = False
        else:
            current.append(char)
            in_token = True
    if quoted:
        raise InvalidRuleError("line", line, "unterminated quote")
    if in_token:
        tokens.append("".join(current))
    return tokens
