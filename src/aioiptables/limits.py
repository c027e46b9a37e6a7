"""What one ``iptables-restore`` line may hold, and the checks that keep us inside it.

iptables-restore (nft and legacy, 1.8.7 to 1.8.13) reads its input with
``fgets`` into a buffer of 10,240 bytes. A longer line is not refused: it is
cut, and its tail is read as a line of its own, so a rule that is too long
turns into *another command*. A rule made of 37 ``-m comment --comment
<250 x c>`` pairs and a last comment ending in ``-A INPUT -s 6.6.6.6/32 -j
ACCEPT -m comment --comment`` adds that ACCEPT rule; ending it in ``-F -m
comment --comment`` flushes every chain of the table. Two more limits end a
rule line with an error rather than an injection: at most 254 arguments per
command (the restore program's name, ``-t`` and the table come first) and at
most 1,023 bytes per argument.

The sources behind each figure (identical at tags v1.8.7, v1.8.9, v1.8.11 and
v1.8.13 of git://git.netfilter.org/iptables, so nothing here depends on the
version):

- ``iptables/iptables-restore.c`` (legacy) and ``iptables/xtables-restore.c``
  (nft): ``char buffer[10240]`` read by ``fgets(buffer, sizeof(buffer), in)``:
  at most 10,239 bytes per read, the newline included;
- ``iptables/xshared.h``: ``#define MAX_ARGC 255``, and ``add_argv`` in
  ``iptables/xshared.c`` fails with "Parser cannot handle more arguments" when
  ``store->argc + 1 >= MAX_ARGC``: at most 254 arguments, three of which
  (``argv[0]``, ``-t``, the table) each restore program adds before the line's
  own, as long as neither ``-c`` nor ``-v`` is passed (this library passes
  neither);
- ``iptables/xshared.c``: ``struct xt_param_buf { char buffer[1024]; ... }``
  and ``add_param`` fails with "Parameter too long!" once 1,024 bytes are
  stored: at most 1,023 bytes per argument.

Measured on 1.8.9 (nft and legacy, IPv4 and IPv6): a line of 10,239 bytes with
its newline is applied whole; at 10,240 bytes the newline alone spills into a
second read, read as a blank line (the rule lands, but the line was cut); at
10,241 bytes the last byte of the rule runs as a command of its own. 251
arguments on a rule line are taken, 252 are refused; an argument of 1,023
bytes is taken, 1,024 is refused.

The line is split into arguments as ``add_param_to_argv`` does (which is not
quite :func:`~aioiptables.syntax.split_line`): blanks are space, tab and
newline; ``"`` opens a quoted stretch anywhere, in which a backslash makes the
next byte literal and is not stored; the closing ``"`` always ends the
argument (so ``"a"b`` is two arguments and ``""`` is one, empty); outside
quotes a backslash is an ordinary byte.
"""

from __future__ import annotations

import itertools

from .errors import InvalidRuleError
from .syntax import join_tokens

__all__ = [
    "RESTORE_BUFFER_BYTES",
    "MAX_RESTORE_LINE_BYTES",
    "MAX_ARGC",
    "RESTORE_PREFIX_ARGS",
    "MAX_RESTORE_LINE_ARGS",
    "MAX_PARAM_BYTES",
    "MAX_RULE_POSITION",
    "GROWTH_ARGS_FIXED",
    "GROWTH_ARGS_PER_EXTENSION",
    "GROWTH_BYTES_FIXED",
    "GROWTH_BYTES_PER_EXTENSION",
    "check_restore_payload",
    "check_restore_rule",
    "restore_line_args",
]

#: ``char buffer[10240]`` in iptables-restore.c and xtables-restore.c.
RESTORE_BUFFER_BYTES = 10240
#: The longest line, newline included, that one ``fgets`` reads whole (10,239).
MAX_RESTORE_LINE_BYTES = RESTORE_BUFFER_BYTES - 1
#: ``#define MAX_ARGC 255`` in xshared.h.
MAX_ARGC = 255
#: What the restore program stores before a line's own arguments: its name,
#: ``-t`` and the table (more with ``-c`` or ``-v``, which we never pass).
RESTORE_PREFIX_ARGS = 3
#: The most arguments one rule line may hold (251): ``add_argv`` refuses to
#: store an argument once ``argc + 1 >= MAX_ARGC``.
MAX_RESTORE_LINE_ARGS = MAX_ARGC - 1 - RESTORE_PREFIX_ARGS
#: The longest argument, in bytes once unquoted (1,023): ``char buffer[1024]``
#: in ``struct xt_param_buf``, refused when full.
MAX_PARAM_BYTES = 1024 - 1

#: The position :func:`check_restore_rule` assumes for an ``-I`` line: the
#: largest rule number iptables takes (an unsigned 32-bit integer), so a chain
#: of any length can have a rule inserted anywhere.
MAX_RULE_POSITION = 2**32 - 1

# -- the margin for how iptables prints a rule back ------------------------------------------------
#
# The planner deletes a rule by the spec iptables printed for it, and iptables
# prints more than it was given. Measured on 1.8.9 (nft and legacy), the
# largest growths per extension loaded (each -p, -m and -j):
#
#   -m recent --set               +5 arguments, +72 bytes (IPv6: --name DEFAULT
#                                 --mask ffff:...:ffff --rsource)
#   -m time --timestart 10:00     +4 arguments, +54 bytes (--timestop, --datestop)
#   -j CONNMARK --save-mark       +4 arguments, +40 bytes (--nfmask, --ctmask)
#   -j TPROXY --on-port 1         +4 arguments, +38 bytes (--on-ip, --tproxy-mark)
#   -p tcp --syn                  +4 arguments, +33 bytes (-m tcp --tcp-flags ...)
#   -m connlimit --connlimit-above 10   +3 arguments, +39 bytes
#   -j REJECT                     +2 arguments, +37 bytes (--reject-with ...)
#   -j MARK --set-mark 5          +0 arguments, +14 bytes (--set-xmark 0x5/0xffffffff)
#
# and outside any extension an address gains its prefix length (/32, /128).
# (-m recent and -m connlimit cannot be deleted by their printed form at all:
# iptables 1.8.9 answers "Bad rule", nft and legacy alike, whatever the length.)
# So a rule is accepted only if its line still fits after growing by
# GROWTH_*_FIXED plus GROWTH_*_PER_EXTENSION for every -p, -m, -j or -g in it
# (but -m comment, -j ACCEPT, -j DROP and -j RETURN, printed as given):
# at least one more argument and a third more bytes per extension than the
# largest growth measured. This is a margin, not a proof: an extension could
# print more (a --string with bytes outside ASCII is printed as a longer
# --hex-string). If it ever does, the delete line is refused by
# check_restore_payload before any process runs, never cut: the rule stays,
# and the error names the line.

#: Arguments kept free for whatever the rule's extensions do not explain.
GROWTH_ARGS_FIXED = 4
#: Arguments kept free per extension the rule loads.
GROWTH_ARGS_PER_EXTENSION = 6
#: Bytes kept free for whatever the rule's extensions do not explain
#: (addresses gaining /32 or /128, numbers printed in another base).
GROWTH_BYTES_FIXED = 64
#: Bytes kept free per extension the rule loads.
GROWTH_BYTES_PER_EXTENSION = 96

# The options that load an extension (a protocol loads its match implicitly).
_EXTENSION_OPTIONS = frozenset({"-p", "--protocol", "-m", "--match", "-j", "--jump", "-g", "--goto"})
# Extensions iptables prints exactly as given (a comment is printed as written,
# cut to 255 bytes at most): they need no margin.
_PRINTED_AS_GIVEN = frozenset({"comment", "ACCEPT", "DROP", "RETURN"})
# A line this long or shorter breaks no limit: every argument takes at least
# two bytes (one of its own and the blank or quote that ends it) but the last,
# so such a line holds at most 251 arguments, each shorter than 1,024 bytes.
_ALWAYS_FITS = 2 * MAX_RESTORE_LINE_ARGS
# How much of an offending line an error shows.
_SHOWN = 60


def restore_line_args(line: bytes) -> list[bytes]:
    """The arguments iptables-restore stores for one rule line, as
    ``add_param_to_argv`` splits it (see the module's docstring).

    >>> restore_line_args(b'-A X -m comment --comment "a \\\\"b\\\\"" -j ACCEPT\\n')
    [b'-A', b'X', b'-m', b'comment', b'--comment', b'a "b"', b'-j', b'ACCEPT']
    >>> restore_line_args(b'"a"b ""')
    [b'a', b'b', b'']
    """
    args: list[bytes] = []
    param = bytearray()
    quoted = escaped = False
    for byte in line:
        if quoted:
            if escaped:
                param.append(byte)
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # the closing quote always ends the argument
                quoted = False
                args.append(bytes(param))
                param.clear()
            else:
                param.append(byte)
        elif byte == 0x22:
            quoted = True
        elif byte in (0x20, 0x09, 0x0A):
            if param:
                args.append(bytes(param))
                param.clear()
        else:
            param.append(byte)
    if param:
        args.append(bytes(param))
    return args


def check_restore_payload(payload: str) -> None:
    """Refuse a restore payload that iptables-restore would not read as written.

    Raises :class:`InvalidRuleError` naming the first offending line (its
    number, counted from 1 as iptables counts, and its start) when the payload
    holds a NUL, cannot be encoded as UTF-8, or holds a line that

    - is longer than :data:`MAX_RESTORE_LINE_BYTES` bytes with its newline
      (the last line is counted as if it had one): iptables-restore would cut
      it and run its tail as a command of its own;
    - holds more than :data:`MAX_RESTORE_LINE_ARGS` arguments, or an argument
      longer than :data:`MAX_PARAM_BYTES` bytes once unquoted.

    Comment lines (``#`` first) and blank lines are only measured: iptables
    skips them, but a comment line that is cut runs its tail all the same.

    >>> check_restore_payload("*filter\\n-A INPUT -j ACCEPT\\nCOMMIT\\n")
    >>> check_restore_payload("*filter\\n-A INPUT" + " -j ACCEPT" * 1100 + "\\nCOMMIT\\n")
    Traceback (most recent call last):
    ...
    aioiptables.errors.InvalidRuleError: invalid restore line 2 '-A INPUT -j ACCEPT -j ACCEPT -j ACCEPT -j ACCEPT -j ACCEPT -...': is 11,009 bytes long with its newline; iptables-restore reads at most 10,239 (it would cut the line and run its tail as a command of its own)
    """
    if "\0" in payload:
        number = payload.count("\n", 0, payload.index("\0")) + 1
        raise InvalidRuleError(
            f"restore line {number}",
            _start(payload.split("\n")[number - 1]),
            "holds a NUL (iptables-restore would drop the rest of the line)",
        )
    try:
        data = payload.encode("utf-8")
    except UnicodeEncodeError as exc:
        number = payload.count("\n", 0, exc.start) + 1
        raise InvalidRuleError(
            f"restore line {number}", _start(payload.split("\n")[number - 1]), "cannot be encoded as UTF-8"
        ) from None
    lines = data.split(b"\n")
    if max(map(len, lines)) <= _ALWAYS_FITS:
        return  # the common case, at C speed
    for number, line in enumerate(lines, 1):
        if len(line) <= _ALWAYS_FITS:
            continue
        _check_line(
            f"restore line {number}",
            line,
            max_bytes=MAX_RESTORE_LINE_BYTES,
            max_args=MAX_RESTORE_LINE_ARGS,
            bytes_why=f"iptables-restore reads at most {MAX_RESTORE_LINE_BYTES:,}",
            args_why="iptables-restore: Parser cannot handle more arguments",
        )


def check_restore_rule(chain: str, spec: tuple[str, ...]) -> None:
    """Refuse a rule whose restore lines could break iptables-restore's limits.

    Checks the longest line the planner writes for the rule, ``-I CHAIN
    POSITION SPEC`` (with :data:`MAX_RULE_POSITION`; ``-A`` and ``-D`` lines are
    shorter), quoted by :func:`~aioiptables.syntax.join_tokens`, against the
    limits of :func:`check_restore_payload` less a margin for the longer form
    iptables may print the rule in (and the planner then deletes it by):
    :data:`GROWTH_ARGS_FIXED` arguments and :data:`GROWTH_BYTES_FIXED` bytes,
    plus :data:`GROWTH_ARGS_PER_EXTENSION` arguments and
    :data:`GROWTH_BYTES_PER_EXTENSION` bytes for each ``-p``, ``-m``, ``-j``
    or ``-g`` in ``spec`` (but ``-m comment``, ``-j ACCEPT``, ``-j DROP`` and
    ``-j RETURN``, which iptables prints as given). Each argument must fit :data:`MAX_PARAM_BYTES`.
    Raises :class:`InvalidRuleError`; runs no process.

    >>> check_restore_rule("INPUT", ("-p", "tcp", "--dport", "22", "-j", "ACCEPT"))
    >>> check_restore_rule("INPUT", ("-m", "recent", "--set") * 40)
    Traceback (most recent call last):
    ...
    aioiptables.errors.InvalidRuleError: invalid rule '-I INPUT 4294967295 -m recent --set -m recent --set -m recen...': holds 123 arguments on its restore line; at most 7 fit (251 less a margin of 244 for the longer form iptables may print it in)
    """
    extensions = sum(
        1
        for option, name in itertools.pairwise((*spec, ""))
        if option in _EXTENSION_OPTIONS and name not in _PRINTED_AS_GIVEN
    )
    args_margin = GROWTH_ARGS_FIXED + GROWTH_ARGS_PER_EXTENSION * extensions
    bytes_margin = GROWTH_BYTES_FIXED + GROWTH_BYTES_PER_EXTENSION * extensions
    line = f"-I {chain} {MAX_RULE_POSITION}"
    if spec:
        line = f"{line} {join_tokens(spec)}"
    try:
        data = line.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRuleError("rule", _start(line), "cannot be encoded as UTF-8") from None
    kept = "for the longer form iptables may print it in"
    _check_line(
        "rule",
        data,
        max_bytes=max(0, MAX_RESTORE_LINE_BYTES - bytes_margin),
        max_args=max(0, MAX_RESTORE_LINE_ARGS - args_margin),
        bytes_why=f"{MAX_RESTORE_LINE_BYTES:,} less a margin of {bytes_margin:,} {kept}",
        args_why=f"{MAX_RESTORE_LINE_ARGS} less a margin of {args_margin} {kept}",
    )


def _check_line(
    what: str, line: bytes, *, max_bytes: int, max_args: int, bytes_why: str, args_why: str
) -> None:
    """Raise InvalidRuleError if ``line`` (without its newline) breaks a limit."""
    size = len(line) + 1  # with its newline
    if size > max_bytes:
        raise InvalidRuleError(
            what,
            _start(line),
            f"is {size:,} bytes long with its newline; {bytes_why}"
            " (it would cut the line and run its tail as a command of its own)",
        )
    if not line or line[0] == 0x23:  # blank, or a comment: iptables splits it no further
        return
    # Every argument ends at a blank, a closing quote or the end of the line,
    # and none is longer than the line: most lines need no closer look.
    if len(line) <= MAX_PARAM_BYTES and line.count(b" ") + line.count(b"\t") + line.count(b'"') < max_args:
        return
    args = restore_line_args(line)
    if len(args) > max_args:
        raise InvalidRuleError(
            what,
            _start(line),
            f"holds {len(args)} arguments on its restore line; at most {max_args} fit ({args_why})",
        )
    for arg in args:
        if len(arg) > MAX_PARAM_BYTES:
            raise InvalidRuleError(
                what,
                _start(line),
                f"holds an argument of {len(arg):,} bytes ({_start(arg)!r}); "
                f"iptables-restore takes at most {MAX_PARAM_BYTES:,} (Parameter too long!)",
            )


def _start(line: str | bytes) -> str:
    """The start of an offending line, short enough for an error message."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
