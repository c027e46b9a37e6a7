"""iptables' own quoting rules, for one line of text at a time.

``iptables -S``, ``iptables-save`` and ``iptables-restore`` share one lexical
convention: tokens are separated by blanks; a token holding anything outside
``[A-Za-z0-9_-]`` is printed inside double quotes, with ``"``, ``'`` and ``\\``
escaped by a backslash; inside quotes a backslash makes the next character
literal. It imports only the errors, so the model can print rules and the parser
can read them with the same two functions.

What iptables *prints* follows a stricter shape than what iptables-restore
*reads*, and :func:`split_printed` reads that shape: only some values
(comments, log prefixes) are quoted, while others (interface and chain names)
are printed raw whatever they hold, quotes, tabs and newlines included.
"""

from __future__ import annotations

import re

from .errors import InvalidRuleError

__all__ = ["quote", "split_line", "split_printed", "scan_printed", "printed_state", "join_tokens"]

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
    if all(tokens) and _NEEDS_QUOTES.search("".join(tokens)) is None:
        return " ".join(tokens)  # nothing to quote (most rules): one search, not one per token
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


# Options whose value iptables prints raw, never quoted: a double quote at the
# start of their value is part of it (a chain may be named '"x').
_RAW_VALUES = frozenset({"-A", "-I", "-N", "-P", "-j", "-g", "-i", "-o"})

#: What :func:`scan_printed` says of a text.
CLOSED, OPEN, BAD = 0, 1, 2


def split_printed(line: str) -> list[str] | None:
    """Split a rule as ``iptables -S`` or iptables-save printed it; None when
    the text cannot be what iptables printed (an unterminated quote, or a
    closing quote glued to what follows).

    iptables separates tokens by one blank and quotes some values (comments,
    log prefixes): a quoted value starts with ``"`` and has ``"``, ``'`` and
    ``\\`` escaped by a backslash. Other values (interface and chain names)
    are printed raw, whatever they hold. So only a blank ends a token: a tab,
    a newline or a double quote inside a raw value is part of it, and a quote
    opens a quoted value only at the start of a token. A rule whose comment
    holds a newline spans two lines; joined with a newline they read back as
    one rule.

    >>> split_printed('-A X -i a"b -m comment --comment "x\\ny z" -j ACCEPT')
    ['-A', 'X', '-i', 'a"b', '-m', 'comment', '--comment', 'x\\ny z', '-j', 'ACCEPT']
    >>> split_printed('-A X -m comment --comment "open') is None
    True
    """
    if '"' not in line:
        tokens = line.split(" ")
        return [token for token in tokens if token] if "" in tokens else tokens
    if "\\" not in line:
        quoted = _split_quoted(line.split('"'))
        if quoted is not None:
            return quoted
    state, tokens = scan_printed(line)
    return tokens if state == CLOSED else None


def _split_quoted(pieces: list[str]) -> list[str] | None:
    """:func:`split_printed` of a line without backslashes, from its pieces
    between double quotes, when every quote opens or closes a quoted value
    standing alone (the shape of nearly every quoted line iptables prints:
    a comment, a log prefix); None for any other shape (scan it)."""
    last = len(pieces) - 1
    if last == 2:
        return _split_one_quoted_value(*pieces)
    if last % 2:
        return None  # an odd number of quotes
    tokens: list[str] = []
    for k in range(0, last, 2):
        before = pieces[k]
        size = len(before)
        if k and (not size or before[0] != " "):
            return None  # a closing quote glued to what follows
        if size and before[-1] != " ":
            return None  # an opening quote inside a word
        words = before.split(" ")
        tokens += [word for word in words if word] if "" in words[:-1] else words[:-1]
        if tokens and tokens[-1] in _RAW_VALUES:
            return None  # the raw value of an option such as -j, that starts with a quote
        tokens.append(pieces[k + 1])
    after = pieces[last]
    if after:
        if after[0] != " ":
            return None
        words = after.split(" ")
        tokens += [word for word in words if word] if "" in words[1:] else words[1:]
    return tokens


def _split_one_quoted_value(before: str, inside: str, after: str) -> list[str] | None:
    """:func:`_split_quoted` of a line with one quoted value (a comment, a log
    prefix: the commonest shape), without its loop."""
    if (before and before[-1] != " ") or (after and after[0] != " "):
        return None  # a quote inside a word, or a closing quote glued to what follows
    tokens = before.split(" ")
    tokens.pop()  # the blank before the quote
    if "" in tokens:
        tokens = [token for token in tokens if token]
    if tokens and tokens[-1] in _RAW_VALUES:
        return None  # the raw value of an option such as -j, that starts with a quote
    tokens.append(inside)
    if after:
        words = after.split(" ")
        del words[0]  # the blank after the quote
        tokens += [word for word in words if word] if "" in words else words
    return tokens


def printed_state(line: str) -> int:
    """:func:`scan_printed`'s verdict alone (:data:`CLOSED`, :data:`OPEN` or
    :data:`BAD`), quickly for the lines iptables prints most."""
    if '"' not in line or _one_quoted_value(line) is not None:
        return CLOSED
    return scan_printed(line)[0]


def _one_quoted_value(line: str) -> tuple[int, int] | None:
    """Where the quotes are when ``line`` has the shape of nearly every quoted
    line iptables prints: one quoted value standing alone (a comment, a log
    prefix), without escapes; None for any other shape."""
    first = line.find('"')
    last = line.find('"', first + 1)
    if last < 0 or line.find('"', last + 1) >= 0 or "\\" in line:
        return None
    if (first and line[first - 1] != " ") or (last + 1 < len(line) and line[last + 1] != " "):
        return None
    # Not the raw value of an option such as -j (every such option is two characters long).
    if first >= 3 and line[first - 3 : first - 1] in _RAW_VALUES and (first == 3 or line[first - 4] == " "):
        return None
    return first, last


def scan_printed(text: str) -> tuple[int, list[str]]:
    """Read ``text`` as iptables prints a rule (see :func:`split_printed`):
    :data:`CLOSED` and its tokens, :data:`OPEN` when it ends inside a quoted
    value (the value holds a newline: the rule goes on on the next line), or
    :data:`BAD` when it cannot be what iptables printed."""
    tokens: list[str] = []
    i, size = 0, len(text)
    while i < size:
        if text[i] == " ":
            i += 1
            continue
        if text[i] != '"' or (tokens and tokens[-1] in _RAW_VALUES):
            end = text.find(" ", i)
            end = size if end < 0 else end
            tokens.append(text[i:end])
            i = end
            continue
        chars: list[str] = []
        i += 1
        while True:
            if i >= size:
                return OPEN, tokens
            char = text[i]
            if char == "\\":
                if i + 1 >= size:
                    return OPEN, tokens
                chars.append(text[i + 1])
                i += 2
            elif char == '"':
                i += 1
                break
            else:
                chars.append(char)
                i += 1
        if i < size and text[i] != " ":
            return BAD, tokens  # iptables always prints a blank after a quoted value
        tokens.append("".join(chars))
    return CLOSED, tokens
