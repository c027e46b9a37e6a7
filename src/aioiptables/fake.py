"""An in-memory iptables, behind the same runner seam as the real one.

:class:`FakeRunner` emulates the command lines of ``iptables``,
``ip6tables`` (``-A -I -D -C -S -N -F -X -E -P``), their ``-save`` and their
``-restore``, as one iptables version (1.8.7 to 1.8.13; 1.8.9 unless told)
does on one backend (``nft`` or ``legacy``):
exit statuses and messages, values cut to the bytes the kernel keeps, user
chains listed in byte order, ``-i``/``-o`` refused where packets only leave
or only arrive, jump loops refused. :class:`FakeClient` is a plain
:class:`~aioiptables.Client` on that runner, so argv building, error
classification, parsing and process counting are the production code:
``fake.calls`` is what a real client would have spent on the same calls.

Where the backends differ, each is followed (as measured on iptables 1.8.9;
where versions differ, see below):

- ``--nflog-prefix`` keeps 63 bytes on legacy, 127 on nft (``--log-prefix``
  29 and ``--comment`` 255 on both). A value cut inside a UTF-8 character
  keeps the cut bytes, which a listing shows as U+FFFD (the client reads
  iptables' output with ``errors="replace"``), while ``-D`` and ``-C`` compare
  the bytes;
- loops: legacy refuses a table where a walk from a builtin chain can come
  back to a chain it is in (the kernel's walk stops at an unconditional
  ``ACCEPT``, ``DROP``, ``RETURN`` or ``QUEUE``): ``Too many levels of symbolic
  links`` (exit 1), at ``COMMIT`` in a restore (``line N failed``).
  nf_tables refuses a walk that loops or goes through more than 15 user
  chains (exit 4, ``RULE_APPEND failed (Too many links)``); in a restore,
  only when the table it leaves has one, then naming every rule added after
  which the table had one;
- a restore on nft checks its commands at ``COMMIT`` (a jump to a missing
  chain is reported at the ``COMMIT`` line); legacy checks each at its line;
- deleting a user chain that holds rules or is jumped to: legacy says
  ``Directory not empty`` or ``Too many links`` (exit 1), nf_tables
  ``CHAIN_DEL failed (Device or resource busy)`` (exit 4);
- a restore's ``:CHAIN`` line flushes a user chain at once on legacy; on nft
  at commit, iptables-nft seeing the old rules until then (``-C`` finds one,
  ``-I N`` counts them, ``-D`` of one fails in the kernel);
- a rule ``-D`` or ``-C`` does not find: legacy says ``No chain/target/match
  by that name`` when the rule jumps or has a target extension, ``Bad rule``
  otherwise; nft always ``Bad rule``.

Where versions differ, the version given is followed (measured on 1.8.7,
1.8.9, 1.8.11 and 1.8.13; a version between two measured ones is taken to
behave as the older one, a later one as 1.8.13), all of it in one table,
``_DIALECTS``:

- the version in every message (``iptables v1.8.11 (nf_tables): ...``);
- 1.8.7 ends more usage messages with a newline (a blank line before
  ``Try ...``), names the restore line in ``The -t option (seen in line N)``,
  and keeps 63 bytes of ``--nflog-prefix`` on nft too, printed after two
  blanks. Its iptables-nft takes a chain name holding a blank (``-N``) or
  starting with ``-`` (a restore's chain line), prints a rule without a
  target with a blank at its end, deletes a chain by ``CHAIN_USER_DEL``, and
  its iptables-nft-restore reports every line it refuses at the ``COMMIT``
  line, without a reason (``line 7 failed``), and every line the kernel
  refuses at the ``COMMIT`` line too;
- ip6tables-legacy's ``-C`` does not compare a LOG rule's prefix on 1.8.9
  only (1.8.7 and 1.8.11 compare it, as ``-D`` always does);
- from 1.8.11, a refusal names an option by its long name
  (``Illegal option `--jump'``, ``Can't use --out-interface with INPUT``,
  that one without its blank line), and iptables-nft's ``-S`` of a missing
  chain says ``No chain/target/match by that name``, as legacy does.

Not emulated: iptables-nft 1.8.7 printing the rule a ``-C`` finds on stdout
(as ``-L -v`` would), options after a rule's extensions that take no value (a stray
word in a rule spec is kept, where iptables says ``Bad argument``), nft's
lazily created builtin chains (``-X INPUT`` of an empty builtin chain in an
nft restore deletes it there), the nf_tables validation state a refused
restore can leave behind in the kernel (the next restores are then refused
a loop they close and open again), ip6tables-legacy quirks beyond ``-C``
not comparing a LOG rule's prefix, ``-R``, ``-L``, ``-Z``, counters.

Rules are compared by :func:`~aioiptables.parse.rule_key`, the same equality
the cache and controller use.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from .client import Binaries, Client
from .errors import InvalidRuleError
from .model import BUILTIN_CHAINS, Protocol
from .parse import analyze, rule_key
from .runner import Completed, Runner
from .syntax import quote, split_line

__all__ = ["FakeRunner", "FakeClient", "DEFAULT_VERSION"]

Backend = Literal["nft", "legacy"]
#: An iptables version, as ``iptables --version`` prints it: (1, 8, 9) for ``v1.8.9``.
Version = tuple[int, int, int]

#: The version a fake imitates unless told otherwise: the one it was first measured on
#: (Debian 12's), so that tests written against the fake's words keep them.
DEFAULT_VERSION: Version = (1, 8, 9)

_VARIANT: dict[Backend, str] = {"nft": "nf_tables", "legacy": "legacy"}


# -- what differs between iptables versions -------------------------------------------------------

#: Each option a refusal may name, by its short and its long name (-g sets -j's flag).
_OPTION_NAMES: dict[str, tuple[str, str]] = {
    name: names
    for names, aliases in [
        (("-s", "--source"), ("-s", "--source", "--src")),
        (("-d", "--destination"), ("-d", "--destination", "--dst")),
        (("-p", "--protocol"), ("-p", "--protocol")),
        (("-j", "--jump"), ("-j", "--jump", "-g", "--goto")),
        (("-i", "--in-interface"), ("-i", "--in-interface")),
        (("-o", "--out-interface"), ("-o", "--out-interface")),
        (("-f", "--fragment"), ("-f", "--fragment")),
        (("-c", "--set-counters"), ("-c", "--set-counters")),
    ]
    for name in aliases
}

#: Usage messages whose words differ between versions, as 1.8.9 words them. A message
#: ending in a newline is printed with a blank line before ``Try ...``.
_WORDS_1_8_9: dict[str, str] = {
    "illegal option": "Illegal option `{option}' with this command",
    "cannot use": "Can't use {option} with {chain}\n",
    "chain starts with": "chain name not allowed to start with `{char}'",
    "chain is a target": "chain name may not clash with target name",
    "goto no chain": "goto '{target}' is not a chain",
    "policy invalid": "{prog}: line {line} policy invalid",
    "no table name": "{prog}: line {line} table name invalid",
    "table name invalid": "{prog}: line {line} table name '{name}' invalid",
    "table unknown": "{prog}: unable to initialize table '{name}'",
    "restore -t": "The -t option cannot be used in {prog}.\n",
}


@dataclass(frozen=True)
class _Dialect:
    """How a range of iptables versions words and does what differs between versions."""

    words: Mapping[str, str]  # the templates of _WORDS_1_8_9, as these versions word them
    long_options: bool  # a refusal names an option by its long name (--jump, not -j)
    nft_nflog_prefix: int  # bytes of --nflog-prefix nf_tables keeps (legacy: 63 always)
    nflog_prefix_gap: bool  # --nflog-prefix's value printed after two blanks
    nft_trailing_blank: bool  # iptables-nft prints a rule without a target ending in a blank
    nft_chain_del: str  # the nf_tables operation a busy chain's deletion fails in
    nft_checks_chain_names: bool  # iptables-nft refuses -N "a b" and a restore's ":-x"
    nft_lists_missing_as_incompatible: bool  # -S NOPE: "... is incompatible, use 'nft' tool."
    nft_restore_fails_at_commit: bool  # a refused restore line: "line <COMMIT> failed", no reason
    ip6_legacy_check_skips_log_prefix: bool  # ip6tables-legacy -C compares no LOG prefix
    wait_interval: bool  # -W is obeyed (1.8.8 on ignore it, with a warning)
    nft_save_names_backend: bool  # iptables-nft-save's header says "(nf_tables)"


_DIALECT_1_8_9 = _Dialect(
    words=_WORDS_1_8_9,
    long_options=False,
    nft_nflog_prefix=127,
    nflog_prefix_gap=False,
    nft_trailing_blank=False,
    nft_chain_del="CHAIN_DEL",
    nft_checks_chain_names=True,
    nft_lists_missing_as_incompatible=True,
    nft_restore_fails_at_commit=False,
    ip6_legacy_check_skips_log_prefix=True,
    wait_interval=False,
    nft_save_names_backend=True,
)

_BLANK_LINE_ON_1_8_7 = (
    "illegal option",
    "chain starts with",
    "chain is a target",
    "goto no chain",
    "policy invalid",
    "no table name",
    "table name invalid",
    "table unknown",
)

_DIALECT_1_8_7 = _Dialect(
    words={
        **_WORDS_1_8_9,
        **{key: _WORDS_1_8_9[key] + "\n" for key in _BLANK_LINE_ON_1_8_7},
        "restore -t": "The -t option (seen in line {line}) cannot be used in {prog}.\n",
    },
    long_options=False,
    nft_nflog_prefix=63,
    nflog_prefix_gap=True,
    nft_trailing_blank=True,
    nft_chain_del="CHAIN_USER_DEL",
    nft_checks_chain_names=False,
    nft_lists_missing_as_incompatible=True,
    nft_restore_fails_at_commit=True,
    ip6_legacy_check_skips_log_prefix=False,
    wait_interval=True,
    nft_save_names_backend=False,
)

#: Each row holds from its version up to the next row's: measured on 1.8.7, 1.8.9, 1.8.11 and
#: 1.8.13 (which behaves as 1.8.11); 1.8.8, 1.8.10 and 1.8.12 are taken to behave as the
#: version before them, and later ones as 1.8.13.
_DIALECTS: tuple[tuple[Version, _Dialect], ...] = (
    ((1, 8, 7), _DIALECT_1_8_7),
    # 1.8.8 is taken to behave as 1.8.7 but in this, not measured but known
    # from iptables' source: its lock waits in flock(), and -W is ignored
    # with a warning (the change that made -w a timeout with alarm()).
    ((1, 8, 8), replace(_DIALECT_1_8_7, wait_interval=False)),
    ((1, 8, 9), _DIALECT_1_8_9),
    (
        (1, 8, 11),
        replace(
            _DIALECT_1_8_9,
            words={**_WORDS_1_8_9, "cannot use": "Can't use {option} with {chain}"},
            long_options=True,
            nft_lists_missing_as_incompatible=False,
            ip6_legacy_check_skips_log_prefix=False,
        ),
    ),
)


def _checked_version(version: Sequence[int]) -> Version:
    """``version`` as a :data:`Version`, or ValueError when the fake cannot imitate it."""
    numbers = tuple(version)
    if len(numbers) != 3 or not all(type(n) is int and n >= 0 for n in numbers):
        raise ValueError(f"version must be three numbers, as (1, 8, 9), not {version!r}")
    major, minor, patch = numbers
    if (major, minor, patch) < _DIALECTS[0][0]:
        oldest = ".".join(map(str, _DIALECTS[0][0]))
        raise ValueError(f"the fake imitates iptables {oldest} and later, not {major}.{minor}.{patch}")
    return major, minor, patch


def _dialect(version: Version) -> _Dialect:
    """The row of :data:`_DIALECTS` that ``version`` falls in."""
    return [dialect for since, dialect in _DIALECTS if since <= version][-1]


def _say(dialect: _Dialect, key: str, **values: object) -> str:
    return dialect.words[key].format(**values)


def _option_name(dialect: _Dialect, token: str) -> str:
    """How iptables names the option ``token`` in a refusal (a token it does not know as it
    came)."""
    names = _OPTION_NAMES.get(token)
    if names is None:
        return token
    return names[1] if dialect.long_options else names[0]


# Targets that are extensions, not chains; a jump to anything else must name a chain.
_TARGETS = frozenset(
    [
        "ACCEPT",
        "DROP",
        "RETURN",
        "QUEUE",
        "NFQUEUE",
        "REJECT",
        "LOG",
        "NFLOG",
        "ULOG",
        "MASQUERADE",
        "SNAT",
        "DNAT",
        "REDIRECT",
        "MARK",
        "CONNMARK",
        "TCPMSS",
        "NOTRACK",
        "CT",
        "TPROXY",
        "CLASSIFY",
        "DSCP",
        "TOS",
        "TTL",
        "HL",
        "SET",
        "AUDIT",
        "CHECKSUM",
        "CLUSTERIP",
        "CONNSECMARK",
        "SECMARK",
        "IDLETIMER",
        "LED",
        "NETMAP",
        "RATEEST",
        "SYNPROXY",
        "TEE",
        "TRACE",
        "HMARK",
    ]
)

#: How many bytes of each value the kernel keeps (the rest is cut without a word); nf_tables
#: keeps :attr:`_Dialect.nft_nflog_prefix` bytes of an nflog prefix.
_KEPT: dict[str, int] = {"--log-prefix": 29, "--comment": 255, "--nflog-prefix": 63}

#: Standard verdicts: a rule that is one of them and nothing else ends the legacy
#: kernel's walk through a chain, so the jumps after it cannot close a loop.
_VERDICTS = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE"})

#: nf_tables refuses a walk from a builtin chain through more user chains than this.
_NFT_MAX_DEPTH = 15

#: The longest chain name iptables takes (XT_EXTENSION_MAXNAMELEN less the NUL).
_MAX_CHAIN_NAME = 28

# Chains where packets only arrive (-o can match nothing) and only leave (-i neither):
# iptables refuses those options there by the chain's name, in any table.
_NO_OUT = frozenset({"PREROUTING", "INPUT"})
_NO_IN = frozenset({"POSTROUTING", "OUTPUT"})
_OUT_FLAGS = frozenset({"-o", "--out-interface"})
_IN_FLAGS = frozenset({"-i", "--in-interface"})
# The base options that take a value (the rest of a printed rule's head is "!" and -f).
_BASE_VALUED = frozenset({"-s", "-d", "-i", "-o", "-p"})

_LONG_COMMANDS = {
    "--append": "-A",
    "--insert": "-I",
    "--delete": "-D",
    "--check": "-C",
    "--list-rules": "-S",
    "--new-chain": "-N",
    "--new": "-N",
    "--flush": "-F",
    "--delete-chain": "-X",
    "--rename-chain": "-E",
    "--policy": "-P",
}


# -- failures ------------------------------------------------------------------------------------

Kind = Literal["usage", "refused", "kernel", "fatal", "plain"]
_STATUS: dict[Kind, int] = {"usage": 2, "refused": 1, "kernel": 4, "fatal": 1, "plain": 1}


class _Failure(Exception):
    """What iptables refused, and how it says so.

    ``kind`` decides the wording around ``text`` and the exit status:

    - usage: the command line is wrong (exit 2, with the ``Try ... --help``
      hint; in a restore, ``Error occurred at line: N``);
    - refused: the tables refuse it (exit 1, ``iptables: TEXT``; in a restore
      ``line N failed``, plus the text on nft);
    - kernel: nf_tables refused the commit (exit 4), ``lines`` in a restore;
    - fatal: printed with the version and nothing else; plain: printed as is.
    """

    def __init__(
        self,
        kind: Kind,
        text: str,
        *,
        status: int | None = None,
        bare: bool = False,
        lines: Sequence[tuple[int, str]] = (),
    ) -> None:
        super().__init__(text)
        self.kind: Kind = kind
        self.text = text
        self.status = _STATUS[kind] if status is None else status
        self.bare = bare  # usage words iptables prints without its name ("Bad argument `x'")
        self.lines = list(lines)
        self.line: int | None = None  # the restore line it belongs to, once known


def _usage(text: str) -> _Failure:
    return _Failure("usage", text)


def _bad_argument(token: str, dialect: _Dialect) -> _Failure:
    if token.startswith("-"):
        return _usage(_say(dialect, "illegal option", option=_option_name(dialect, token)))
    return _Failure("usage", f"Bad argument `{token}'", bare=True)


def _refused(text: str) -> _Failure:
    return _Failure("refused", text)


def _no_chain() -> _Failure:
    return _refused("No chain/target/match by that name.")


def _bad_rule() -> _Failure:
    return _refused("Bad rule (does a matching rule exist in that chain?).")


# -- the tables ---------------------------------------------------------------------------------


@dataclass
class _Chain:
    policy: str | None  # None for a user chain
    rules: list[tuple[str, ...]] = field(default_factory=list)


_Table = dict[str, _Chain]


class _Ghost(tuple[str, ...]):
    """A rule an nft restore's chain line (``:CHAIN - [0:0]``) flushed: gone from the kernel
    at commit, still in iptables-nft's cache until then (``-C`` finds it, ``-I N`` counts
    it, ``-D`` of it fails in the kernel)."""

    __slots__ = ()


def _live(rules: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The rules the kernel holds (a restore's ghosts left out)."""
    return [spec for spec in rules if not isinstance(spec, _Ghost)]


def _new_table(name: str) -> _Table:
    return {chain: _Chain("ACCEPT") for chain in BUILTIN_CHAINS[name]}


def _user_chains(table: _Table) -> list[str]:
    # iptables (both backends) lists user chains by strcmp() of their names.
    return sorted((n for n, c in table.items() if c.policy is None), key=_wire_bytes)


def _order(table_name: str, table: _Table) -> list[str]:
    """The chains as iptables lists them: builtin ones in hook order, then user chains."""
    return [c for c in BUILTIN_CHAINS[table_name] if c in table] + _user_chains(table)


def _jump_flag(spec: Sequence[str]) -> tuple[str, str] | None:
    """A rule's jump or goto: the flag and where to."""
    for flag, value in itertools.pairwise(spec):
        if flag in ("-j", "--jump", "-g", "--goto"):
            return flag, value
    return None


def _jump(spec: Sequence[str]) -> str | None:
    found = _jump_flag(spec)
    return found[1] if found is not None else None


def _ends_walk(spec: tuple[str, ...]) -> bool:
    """Whether the legacy kernel's walk stops at this rule (an unconditional verdict)."""
    return len(spec) == 2 and spec[0] == "-j" and spec[1] in _VERDICTS


def _chain_jumps(chain: _Chain, *, legacy: bool) -> list[str]:
    """Where a chain's jumps and gotos lead, those a walk can reach (legacy: before the
    chain's first unconditional verdict; nft: all), each once."""
    targets: dict[str, None] = {}
    for spec in _live(chain.rules):
        if legacy and _ends_walk(spec):
            break
        target = _jump(spec)
        if target is not None:
            targets[target] = None
    return list(targets)


def _deepest_walk(graph: dict[str, list[str]], roots: Sequence[str]) -> float:
    """How many chains the longest walk from a root goes through (infinite when a walk
    can come back to a chain it is in). Iterative: a long chain of jumps must not
    exhaust Python's stack."""
    height: dict[str, float] = {}
    on_path: set[str] = set()
    for root in roots:
        if root in height:
            continue
        stack = [(root, iter(graph.get(root, ())))]
        on_path.add(root)
        while stack:
            node, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                stack.pop()
                on_path.discard(node)
                height[node] = 1 + max((height[t] for t in graph.get(node, ())), default=0)
            elif target in on_path:
                return float("inf")
            elif target not in height:
                on_path.add(target)
                stack.append((target, iter(graph.get(target, ()))))
    return max((height[r] for r in roots), default=0)


def _walk_refused(
    table: _Table, *, legacy: bool, jumps: Callable[[str, _Chain], list[str]] | None = None
) -> bool:
    """Whether the kernel refuses this table: legacy for a loop reachable from a builtin
    chain, nf_tables also for a walk deeper than its jump stack. ``jumps`` may answer
    :func:`_chain_jumps` from a cache."""
    jumps = jumps or (lambda _, chain: _chain_jumps(chain, legacy=legacy))
    graph = {name: [t for t in jumps(name, chain) if t in table] for name, chain in table.items()}
    roots = [name for name, chain in table.items() if chain.policy is not None]
    depth = _deepest_walk(graph, roots)
    if legacy:
        return depth == float("inf")
    return depth - 1 > _NFT_MAX_DEPTH  # the builtin chain itself is not a jump


# -- bytes: what the kernel keeps and what a reader sees ---------------------------------------


def _wire_bytes(text: str) -> bytes:
    """``text`` as the bytes iptables handles (lone surrogates stand for raw bytes, as
    os.fsencode gives them to a real process)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # no process could be given it; keep it comparable
        return text.encode("utf-8", "surrogatepass")


def _as_read(text: str) -> str:
    """What a client reads of output holding raw bytes: the real runner decodes
    iptables' output with ``errors="replace"``."""
    if text.isascii():
        return text
    return _wire_bytes(text).decode("utf-8", "replace")


def _cut(value: str, kept: int) -> str:
    """``value`` as the kernel keeps it: at most ``kept`` bytes, even inside a character
    (the cut bytes are kept as lone surrogates, and read back as U+FFFD)."""
    raw = _wire_bytes(value)
    if len(raw) <= kept:
        return value
    return raw[:kept].decode("utf-8", "surrogateescape")


def _kept(spec: tuple[str, ...], limits: dict[str, int]) -> tuple[str, ...]:
    out = list(spec)
    for i in range(1, len(out)):
        limit = limits.get(out[i - 1])
        if limit is not None:
            out[i] = _cut(out[i], limit)
    return tuple(out)


def _as_printed(spec: Sequence[str], proto: Protocol) -> tuple[str, ...]:
    # Store a rule the way iptables prints it back (-p tcp --dport 80 becomes
    # -p tcp -m tcp --dport 80), where the canonicalizer knows how.
    read = analyze(tuple(spec), proto)
    return read.tokens if read.exact else tuple(spec)


# -- reading command lines ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Op:
    """One parsed command: ``-A`` ... ``-P``, or ``:`` for a restore chain line."""

    command: str
    chain: str | None = None
    spec: tuple[str, ...] = ()
    number: int | None = None
    other: str | None = None  # -E's new name, -P's and ":"'s policy


def _rule_number(token: str) -> int:
    digits = token[1:] if token.startswith("+") else token
    if not digits.isdecimal() or not digits.isascii() or int(digits) == 0:
        raise _usage(f"Invalid rule number `{token}'")
    return int(digits)


def _takes_rule_number(rest: Sequence[str]) -> bool:
    # As iptables reads it: a word after the chain that is no option is a rule number.
    return bool(rest) and not rest[0].startswith(("-", "!"))


def _no_more(rest: Sequence[str], dialect: _Dialect) -> None:
    if rest:
        raise _bad_argument(rest[0], dialect)


def _required(command: str, rest: Sequence[str]) -> str:
    if not rest:
        raise _usage(f'option "{command}" requires an argument')
    return rest[0]


def _hook_flag(chain: str, spec: tuple[str, ...], proto: Protocol) -> str | None:
    """``-o`` in a chain where packets only arrive, ``-i`` where they only leave: the flag
    iptables refuses there, or None."""
    banned = _OUT_FLAGS if chain in _NO_OUT else _IN_FLAGS if chain in _NO_IN else None
    if banned is None:
        return None
    read = analyze(spec, proto)
    found = _base_flags(read.tokens) if read.exact else _loose_flags(spec)
    return ("-o" if "-o" in banned else "-i") if found & banned else None


def _base_flags(tokens: tuple[str, ...]) -> set[str]:
    """The base options of a rule in printed form (they come first, before ``-m``)."""
    flags: set[str] = set()
    i = 0
    while i < len(tokens):
        if tokens[i] in _BASE_VALUED:
            flags.add(tokens[i])
            i += 2
        elif tokens[i] in ("!", "-f"):
            i += 1
        else:
            break
    return flags


def _loose_flags(spec: Sequence[str]) -> set[str]:
    # A rule the canonicalizer cannot read: a flag counts unless it follows an option
    # (then it is most likely that option's value, as in --comment -o).
    flags: set[str] = set()
    for i, token in enumerate(spec):
        before = spec[i - 1] if i else ""
        if (token in _OUT_FLAGS or token in _IN_FLAGS) and (before == "!" or not before.startswith("-")):
            flags.add(token)
    return flags


def _chain_name_problem(name: str, dialect: _Dialect, backend: Backend) -> str | None:
    """Why iptables refuses ``name`` for a new chain, or None."""
    if name.startswith(("-", "!")):
        return _say(dialect, "chain starts with", char=name[0])
    if len(_wire_bytes(name)) > _MAX_CHAIN_NAME:
        return f"chain name `{name}' too long (must be under {_MAX_CHAIN_NAME + 1} chars)"
    if name in _TARGETS:
        return _say(dialect, "chain is a target")
    blank = any(c in " \t\n\v\f\r" for c in name)
    if blank and (backend == "legacy" or dialect.nft_checks_chain_names):
        return f"Invalid chain name `{name}'"
    return None


@dataclass(frozen=True)
class _Reader:
    """How one iptables reads a command line: its protocol, backend and version."""

    proto: Protocol
    backend: Backend
    dialect: _Dialect

    def parse(self, args: list[str]) -> _Op:
        """One command (after the table option), as iptables reads it before touching any
        table: what is wrong with the command line itself is found here."""
        if not args:
            raise _usage("no command specified")
        command, rest = _LONG_COMMANDS.get(args[0], args[0]), args[1:]
        if not command.startswith("-"):
            raise _Failure("usage", f"Bad argument `{command}'", bare=True)
        if command in ("-A", "-I", "-D", "-C"):
            return self._rule(command, rest)
        if command == "-S":
            return self._list(command, rest)
        if command in ("-N", "-F", "-X"):
            return self._chain(command, rest)
        if command in ("-E", "-P"):
            return self._pair(command, rest)
        raise _usage(f'unknown option "{command}"')

    def _rule(self, command: str, rest: list[str]) -> _Op:
        chain = _required(command, rest)
        rest = rest[1:]
        number = None
        if command in ("-I", "-D") and _takes_rule_number(rest):
            number, rest = _rule_number(rest[0]), rest[1:]
            if command == "-D":
                _no_more(rest, self.dialect)
                return _Op(command, chain, number=number)
        flag = _hook_flag(chain, tuple(rest), self.proto)
        if flag is not None:
            option = _option_name(self.dialect, flag)
            raise _usage(_say(self.dialect, "cannot use", option=option, chain=chain))
        return _Op(command, chain, tuple(rest), number)

    def _list(self, command: str, rest: list[str]) -> _Op:
        chain = rest[0] if rest and not rest[0].startswith("-") else None
        rest = rest[1:] if chain is not None else rest
        number = None
        if chain is not None and rest and not rest[0].startswith("-"):
            number, rest = _rule_number(rest[0]), rest[1:]
        _no_more(rest, self.dialect)
        return _Op(command, chain, number=number)

    def _chain(self, command: str, rest: list[str]) -> _Op:
        """-N CHAIN, -F [CHAIN], -X [CHAIN]."""
        if command == "-N":
            _required(command, rest)
            problem = _chain_name_problem(rest[0], self.dialect, self.backend)
            if problem is not None:
                raise _usage(problem)
        chain = rest[0] if rest and not rest[0].startswith("-") else None
        _no_more(rest[1:] if chain is not None else rest, self.dialect)
        return _Op(command, chain)

    def _pair(self, command: str, rest: list[str]) -> _Op:
        """-E OLD NEW, -P CHAIN POLICY."""
        if len(rest) < 2:
            raise _usage(
                "-E requires old-chain-name and new-chain-name"
                if command == "-E"
                else "-P requires a chain and a policy"
            )
        _no_more(rest[2:], self.dialect)
        return _Op(command, rest[0], other=rest[1])


# -- printing ------------------------------------------------------------------------------------

# Options whose value iptables prints raw, never quoted (interface and chain names).
_RAW = frozenset({"-i", "-o", "-j", "-g"})


def _printed(chain: str, spec: Sequence[str], *, nflog_gap: bool = False, trailing: bool = False) -> str:
    """One ``-A`` line as iptables prints it: values of -i, -o, -j and -g
    raw (even when they hold a quote or a blank), others quoted when they
    need it; a value holding a newline spans two lines, as with iptables.
    ``nflog_gap``: an nflog prefix after two blanks; ``trailing``: a blank
    after a rule without a target (iptables 1.8.7's quirks)."""
    words = [f"-A {chain}"]
    for before, token in zip(("", *spec), spec, strict=False):
        word = token if before in _RAW and token else quote(token)
        words.append(" " + word if nflog_gap and before == "--nflog-prefix" else word)
    line = " ".join(words)
    return line + " " if trailing and _jump_flag(spec) is None else line


def _rename_jump(spec: tuple[str, ...], old: str, new: str) -> tuple[str, ...]:
    out = list(spec)
    for i in range(len(out) - 1):
        if out[i] in ("-j", "--jump", "-g", "--goto") and out[i + 1] == old:
            out[i + 1] = new
    return _Ghost(out) if isinstance(spec, _Ghost) else tuple(out)


def _restore_tokens(line: str, newline: bool) -> list[str]:
    """A restore line's words as iptables-restore reads them: an unterminated quote runs
    to the end of the line, the newline included."""
    try:
        return split_line(line)
    except InvalidRuleError:
        return split_line(line + ('"' if not newline else '\n"'))


# -- one process ---------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A restore's table between its ``*table`` line and ``COMMIT``."""

    name: str
    table: _Table
    ops: list[tuple[int, _Op]] = field(default_factory=list)  # nft: applied at COMMIT


@dataclass
class _Batch:
    """What nf_tables refuses, line by line, while a restore's commands are applied.

    ``errors`` are messages the kernel refuses as it reads the batch (a busy chain
    deleted, a rule deleted twice): any of them and nothing is committed. Without any,
    the kernel validates the table the batch leaves; when that fails, it goes through
    the batch again validating after each rule added: ``refusals`` are those lines."""

    errors: list[tuple[int, str]] = field(default_factory=list)
    refusals: list[tuple[int, str]] = field(default_factory=list)
    invalid: bool = False  # the table as it stands makes the kernel refuse rule adds
    recheck: bool = False  # something was removed since: it may be valid again
    line: int = 0
    # Each chain's jumps (see _chain_jumps), kept while the chain does not change: a
    # payload adding many jumps is validated after each, against every chain.
    jumps: dict[str, list[str]] = field(default_factory=dict)

    def changed(self, op: _Op) -> None:
        """Forget the jumps of the chains ``op`` may have changed (a rule added adds its
        jump: nf_tables looks at every rule of a chain, in any order)."""
        known = self.jumps.get(str(op.chain))
        if op.command in ("-A", "-I") and known is not None:
            target = _jump(op.spec)
            if target is not None and target not in known:
                known.append(target)
        elif op.command in ("-A", "-I", "-D", ":") or (op.command == "-F" and op.chain is not None):
            self.jumps.pop(str(op.chain), None)
        elif op.command in ("-F", "-X", "-E"):  # every chain, or jumps rewritten anywhere
            self.jumps.clear()

    def chain_jumps(self, name: str, chain: _Chain) -> list[str]:
        if name not in self.jumps:
            self.jumps[name] = _chain_jumps(chain, legacy=False)
        return self.jumps[name]


class _Process:
    """One iptables, -save or -restore process: its protocol, backend and words."""

    def __init__(self, runner: FakeRunner, proto: Protocol) -> None:
        self.proto = proto
        self.backend: Backend = runner.backend
        self.legacy = runner.backend == "legacy"
        self.version_text = ".".join(map(str, runner.version))
        self.dialect = runner.dialect
        self.reader = _Reader(proto, runner.backend, runner.dialect)
        self.kept = {**_KEPT, "--nflog-prefix": 63 if self.legacy else self.dialect.nft_nflog_prefix}
        self.tables = runner.tables[proto]
        self.prog = proto.command  # "iptables" or "ip6tables", as iptables names itself
        self.restore_prog = f"{self.prog}-restore" if self.legacy else f"{self.prog}-nft-restore"
        self.save_prog = f"{self.prog}-save" if self.legacy else f"{self.prog}-nft-save"
        self.batch: _Batch | None = None  # while an nft restore's commands run at COMMIT
        self.warnings: list[str] = []  # printed on stderr, whatever the outcome

    # -- words ---------------------------------------------------------------------------------

    def _banner(self, prog: str) -> str:
        """How this iptables names itself: ``iptables v1.8.9 (nf_tables)``."""
        return f"{prog} v{self.version_text} ({_VARIANT[self.backend]})"

    def _head(self, prog: str) -> str:
        return f"{self._banner(prog)}: "

    def printed(self, chain: str, spec: Sequence[str]) -> str:
        """One ``-A`` line as this iptables prints it."""
        trailing = self.dialect.nft_trailing_blank and not self.legacy
        return _printed(chain, spec, nflog_gap=self.dialect.nflog_prefix_gap, trailing=trailing)

    def describe(self, failure: _Failure) -> str:
        """A failure's stderr, as the iptables command prints it."""
        prog, head = self.prog, self._head(self.prog)
        if failure.kind == "usage":
            first = failure.text if failure.bare else head + failure.text
            return f"{first}\nTry `{prog} -h' or '{prog} --help' for more information."
        if failure.kind == "refused":
            return f"{prog}: {failure.text}"
        if failure.kind == "kernel":
            return f"{head} {failure.text}"
        if failure.kind == "fatal":
            return head + failure.text
        return failure.text

    def describe_restore(self, failure: _Failure, line: int) -> _Failure:
        """A failure's stderr, as iptables-restore prints it."""
        prog, head = self.restore_prog, self._head(self.restore_prog)
        if failure.kind == "usage":
            first = failure.text if failure.bare else head + failure.text
            text = f"{first}\nError occurred at line: {line}\nTry `{prog} -h' or '{prog} --help' for more information."
        elif failure.kind == "refused":
            # legacy never gives the reason, nor iptables-nft-restore when it reports at COMMIT
            terse = self.legacy or self.dialect.nft_restore_fails_at_commit
            why = f": {failure.text}" if failure.text and not terse else ""
            text = f"{prog}: line {line} failed{why}"
        elif failure.kind == "kernel":
            text = head + "\n" + "\n".join(f"line {n}: {what}" for n, what in failure.lines)
        elif failure.kind == "fatal":
            text = head + failure.text
        else:
            text = failure.text
        return _Failure("plain", text, status=failure.status)

    # -- tables ---------------------------------------------------------------------------------

    def table(self, name: str) -> _Table:
        if name not in BUILTIN_CHAINS:
            prog = self.prog
            text = (
                f"can't initialize {prog} table `{name}': Table does not exist (do you need to insmod?)"
                if self.legacy
                else f"table '{name}' does not exist"
            )
            raise _Failure("fatal", f"{text}\nPerhaps {prog} or your kernel needs to be upgraded.", status=3)
        if name not in self.tables:
            self.tables[name] = _new_table(name)
        return self.tables[name]

    def stored(self, spec: Sequence[str]) -> tuple[str, ...]:
        """A rule as the kernel holds it: printed form, long values cut."""
        return _kept(_as_printed(spec, self.proto), self.kept)

    def check_target(self, table: _Table, spec: Sequence[str]) -> None:
        """A jump must name a target or a chain of the table, a goto a chain."""
        found = _jump_flag(spec)
        if found is None:
            return
        flag, target = found
        goto = flag in ("-g", "--goto")
        if target in table or (target in _TARGETS and not goto):
            return
        if not self.legacy:
            raise _usage(f"Chain '{target}' does not exist")
        if goto:
            raise _usage(_say(self.dialect, "goto no chain", target=target))
        raise _usage(f"Couldn't load target `{target}':No such file or directory\n")

    def walk_refused(self, table: _Table) -> bool:
        jumps = self.batch.chain_jumps if self.batch is not None else None
        return _walk_refused(table, legacy=self.legacy, jumps=jumps)

    # -- the iptables command line --------------------------------------------------------------

    def command(self, args: list[str]) -> str:
        table_name = "filter"
        while args and args[0] in ("-w", "--wait", "-t", "--table", "-W", "--wait-interval"):
            flag = args.pop(0)
            if flag in ("-t", "--table"):
                table_name = _required(flag, args)
                args.pop(0)
            elif flag in ("-W", "--wait-interval"):
                self.wait_interval(args)
            elif args and args[0].isdigit():
                args.pop(0)
        if args[:1] in (["--version"], ["-V"]):
            return self.version_line(self.prog)
        op = self.reader.parse(args)
        table = self.table(table_name)
        if op.command in ("-A", "-I", "-D") and self._may_change_walks(op, table_name):
            return self._walk_checked(op, table_name, table)
        return self.apply(op, table_name, table)

    def _may_change_walks(self, op: _Op, table_name: str) -> bool:
        # Only a jump to a chain can close a loop or deepen a walk; on legacy, a rule deleted
        # can also open the rest of a chain to the kernel's walk.
        if op.command == "-D":
            return self.legacy
        return _jump(op.spec) in self.tables.get(table_name, {})

    def _walk_checked(self, op: _Op, table_name: str, table: _Table) -> str:
        """Apply a rule command alone, then undo it when the kernel would refuse the table."""
        assert op.chain is not None
        before = list(table[op.chain].rules) if op.chain in table else []
        out = self.apply(op, table_name, table)
        if not self.walk_refused(table):
            return out
        table[op.chain].rules = before
        if self.legacy:
            raise _refused("Too many levels of symbolic links.")
        raise _Failure("kernel", _too_many_links(op, len(before)))

    def apply(self, op: _Op, table_name: str, table: _Table, *, line: int = 0) -> str:
        """Do one parsed command on ``table``; what the tables refuse raises."""
        handlers: dict[str, Callable[[_Op, _Table], str]] = {
            "-A": self._append,
            "-I": self._insert,
            "-D": self._delete,
            "-C": self._check,
            "-N": self._new,
            "-F": self._flush,
            "-E": self._rename,
            "-P": self._policy,
        }
        if op.command == "-S":
            return self._list(op, table_name, table)
        if op.command == "-X":
            return self._remove(op, table)
        if op.command == ":":
            return self._declare(op, table, line)
        return handlers[op.command](op, table)

    def _chain(self, table: _Table, name: str | None) -> _Chain:
        if name is None or name not in table:
            raise _no_chain()
        return table[name]

    def _find(
        self,
        chain: _Chain | None,
        spec: tuple[str, ...],
        same: Callable[[tuple[str, ...]], object] | None = None,
    ) -> int:
        """Where a rule is, compared by ``same`` (default: its rule key)."""
        same = same or (lambda rule: rule_key(rule, self.proto))
        wanted = same(spec)
        for index, existing in enumerate(chain.rules if chain is not None else ()):
            if same(existing) == wanted:
                return index
        target = _jump(spec)
        if self.legacy and chain is not None and target is not None and target not in _VERDICTS:
            # legacy's words when the rule jumps or has a target extension
            raise _no_chain()
        raise _bad_rule()

    def _append(self, op: _Op, table: _Table) -> str:
        self.check_target(table, op.spec)
        self._chain(table, op.chain).rules.append(self.stored(op.spec))
        return ""

    def _insert(self, op: _Op, table: _Table) -> str:
        self.check_target(table, op.spec)
        chain = self._chain(table, op.chain)
        position = op.number or 1
        if position > len(chain.rules) + 1:
            raise _refused("Index of insertion too big.")
        chain.rules.insert(position - 1, self.stored(op.spec))
        return ""

    def _delete(self, op: _Op, table: _Table) -> str:
        if op.number is not None:
            chain = self._chain(table, op.chain)
            if op.number > len(chain.rules):
                raise _refused("Index of deletion too big.")
            index = op.number - 1
        else:
            self.check_target(table, op.spec)
            # A rule looked for in a missing chain is just not found ("Bad rule").
            index = self._find(table.get(str(op.chain)), self.stored(op.spec))
            chain = table[str(op.chain)]
        if isinstance(chain.rules[index], _Ghost) and self.batch is not None:
            text = f"RULE_DELETE failed (No such file or directory): rule in chain {op.chain}"
            self.batch.errors.append((self.batch.line, text))
        del chain.rules[index]
        return ""

    def _check(self, op: _Op, table: _Table) -> str:
        self.check_target(table, op.spec)
        quirk = self.legacy and self.proto is Protocol.IPV6 and self.dialect.ip6_legacy_check_skips_log_prefix
        same = _key_without_log_prefix(self.proto) if quirk else None
        self._find(table.get(str(op.chain)), self.stored(op.spec), same)
        return ""

    def _list(self, op: _Op, table_name: str, table: _Table) -> str:
        if op.chain is not None and op.chain not in table:
            if self.legacy or not self.dialect.nft_lists_missing_as_incompatible:
                raise _no_chain()
            text = f"chain `{op.chain}' in table `{table_name}' is incompatible, use 'nft' tool."
            raise _Failure("fatal", text)
        if op.number is not None:  # one rule, without the chain's head line
            held = table[str(op.chain)].rules
            return self.printed(str(op.chain), held[op.number - 1]) + "\n" if op.number <= len(held) else ""
        names = [op.chain] if op.chain is not None else _order(table_name, table)
        heads = [f"-P {n} {table[n].policy}" if table[n].policy else f"-N {n}" for n in names]
        rules = [self.printed(n, spec) for n in names for spec in table[n].rules]
        return "".join(line + "\n" for line in heads + rules)

    def _new(self, op: _Op, table: _Table) -> str:
        assert op.chain is not None
        if op.chain in table:
            raise _refused("Chain already exists.")
        table[op.chain] = _Chain(None)
        return ""

    def _flush(self, op: _Op, table: _Table) -> str:
        for name in [op.chain] if op.chain is not None else list(table):
            self._chain(table, name).rules.clear()
        return ""

    def _busy(self, table: _Table, name: str) -> _Failure | None:
        """Why the chain cannot be deleted, or None."""
        chain = self._chain(table, name)
        if chain.policy is not None:
            return _refused(
                "Invalid argument. Run `dmesg' for more information."
                if self.legacy
                else "Directory not empty."
            )
        held = _live(chain.rules) if not self.legacy else chain.rules
        referenced = any(_jump(spec) == name for each in table.values() for spec in _live(each.rules))
        if not referenced and not held:
            return None
        if not self.legacy:  # the kernel refuses it at commit
            operation = self.dialect.nft_chain_del
            return _Failure("kernel", f"{operation} failed (Device or resource busy): chain {name}")
        return _refused("Too many links." if referenced else "Directory not empty.")

    def _remove(self, op: _Op, table: _Table) -> str:
        # All or nothing: without a name, every user chain must be deletable.
        names = [op.chain] if op.chain is not None else _user_chains(table)
        for name in names:
            failure = self._busy(table, name)
            if failure is None:
                continue
            if failure.kind != "kernel" or self.batch is None:
                raise failure
            self.batch.errors.append((self.batch.line, failure.text))  # reported with the rest
        for name in names:
            del table[name]
        return ""

    def _rename(self, op: _Op, table: _Table) -> str:
        old, new = str(op.chain), str(op.other)
        if new in table:
            raise _refused("File exists.")
        if self._chain(table, old).policy is not None:
            raise _no_chain()
        table[new] = table.pop(old)
        for each in table.values():
            each.rules = [_rename_jump(spec, old, new) for spec in each.rules]
        return ""

    def _policy(self, op: _Op, table: _Table) -> str:
        chain = table.get(str(op.chain))
        bad_policy = op.other not in ("ACCEPT", "DROP")
        if bad_policy and not self.legacy:  # nft looks at the policy first
            raise _refused("Bad policy name. Run `dmesg' for more information.")
        if chain is None or chain.policy is None:
            raise _refused("Bad built-in chain name.")
        if bad_policy:
            raise _refused("Bad policy name. Run `dmesg' for more information.")
        chain.policy = op.other
        return ""

    # -- save and restore -----------------------------------------------------------------------

    def wait_interval(self, args: list[str]) -> None:
        """Take -W's value (microseconds) off ``args``: obeyed before 1.8.8,
        ignored with a warning from then on. The fake never waits either way."""
        if not args or not args[0].isdigit():
            raise _usage("wait interval not numeric")
        if int(args.pop(0)) > 999_999:
            raise _usage("too long usec wait")
        if not self.dialect.wait_interval:
            self.warnings.append("Ignoring deprecated --wait-interval option.\n")

    def version_line(self, prog: str) -> str:
        """What ``--version`` prints."""
        return f"{self._banner(prog)}\n"

    def save(self, args: list[str]) -> str:
        if "--version" in args or "-V" in args:
            return self.version_line(self.save_prog)
        names = list(self.tables)
        if "-t" in args:
            if args.index("-t") + 1 >= len(args):
                raise _Failure("plain", f"{self.prog}-save: option requires an argument -- 't'", status=2)
            names = [args[args.index("-t") + 1]]
        variant = " (nf_tables)" if not self.legacy and self.dialect.nft_save_names_backend else ""
        # iptables-save dates each table; the fake always at the epoch, so
        # that two saves of the same tables read the same.
        now = "Thu Jan  1 00:00:00 1970"
        lines = []
        for name in names:
            table = self.table(name)
            lines.append(f"# Generated by {self.save_prog} v{self.version_text}{variant} on {now}")
            lines.append(f"*{name}")
            order = _order(name, table)
            lines.extend(f":{c} {table[c].policy or '-'} [0:0]" for c in order)
            lines.extend(self.printed(c, spec) for c in order for spec in table[c].rules)
            lines.append("COMMIT")
            lines.append(f"# Completed on {now}")
        return "\n".join(lines) + "\n"

    def restore(self, args: list[str], payload: str) -> str:
        if "--version" in args or "-V" in args:
            return self.version_line(self.restore_prog)
        for flag in ("-W", "--wait-interval"):
            if flag in args and self.legacy:  # iptables-nft-restore takes -W and says nothing
                self.wait_interval(args[args.index(flag) + 1 :])
        noflush = "--noflush" in args or "-n" in args
        out: list[str] = []
        pending: _Pending | None = None
        # iptables-restore splits lines at \n only (not at U+2028 and the like).
        lines = payload.split("\n")
        for number, line in enumerate(lines, 1):
            try:
                pending = self._restore_line(pending, number, line, number < len(lines), noflush, out)
            except _Failure as failure:
                if failure.kind == "plain":
                    raise
                raise self.describe_restore(failure, failure.line or number) from None
        if pending is not None:
            ends = len(lines) if payload.endswith("\n") else len(lines) + 1
            raise _Failure("plain", f"{self.restore_prog}: COMMIT expected at line {ends}")
        return "".join(out)

    def _restore_line(
        self, pending: _Pending | None, number: int, line: str, newline: bool, noflush: bool, out: list[str]
    ) -> _Pending | None:
        """Read one line; returns the table being written after it."""
        if not line or line.startswith("#"):
            return pending
        # legacy takes "COMMIT\n" only: a last line without its newline is a command
        if line == "COMMIT" and (newline or not self.legacy):
            if pending is None:
                raise _refused("")
            out.append(self._commit(pending, number))
            return None
        if line.startswith("*"):
            if pending is not None:
                raise _Failure("usage", f"Bad argument `{line.split()[0]}'", bare=True)
            return self._begin(line, number, noflush)
        if pending is None:
            raise _refused("")
        op = self._restore_op(line, number, newline)
        if self.legacy:
            out.append(self.apply(op, pending.name, pending.table, line=number))
        else:
            pending.ops.append((number, op))  # nft checks and applies them at COMMIT
        return pending

    def _begin(self, line: str, number: int, noflush: bool) -> _Pending:
        words = line[1:].split()
        prog = self.restore_prog
        if not words:
            raise _usage(_say(self.dialect, "no table name", prog=prog, line=number))
        name = words[0]
        if name not in BUILTIN_CHAINS:
            unknown = "table unknown" if self.legacy else "table name invalid"
            raise _usage(_say(self.dialect, unknown, prog=prog, line=number, name=name))
        table = copy.deepcopy(self.table(name)) if noflush else _new_table(name)
        return _Pending(name, table)

    def _restore_op(self, line: str, number: int, newline: bool) -> _Op:
        if line.startswith(":"):
            return self._declaration(line, number)
        words = _restore_tokens(line, newline)
        if words and words[0] in ("-t", "--table"):
            raise _usage(_say(self.dialect, "restore -t", prog=self.restore_prog, line=number))
        if words and words[0] in ("-w", "--wait"):
            raise _usage("You cannot use `-w' from iptables-restore")
        return self.reader.parse(words)

    def _declaration(self, line: str, number: int) -> _Op:
        # ":CHAIN POLICY [packets:bytes]": what follows the policy is not read at all.
        words = line[1:].split()
        if len(words) < 2:
            raise _usage(_say(self.dialect, "policy invalid", prog=self.restore_prog, line=number))
        if not self.legacy and self.dialect.nft_checks_chain_names and words[0].startswith("-"):
            raise _usage(_say(self.dialect, "chain starts with", char="-"))
        return _Op(":", words[0], other=words[1])

    def _declare(self, op: _Op, table: _Table, line: int) -> str:
        name, policy = str(op.chain), str(op.other)
        chain = table.get(name)
        if chain is None:
            chain = table[name] = _Chain(None)
        elif chain.policy is None and self.batch is not None:
            chain.rules = [_Ghost(spec) for spec in chain.rules]
        elif chain.policy is None:
            chain.rules.clear()  # as iptables-restore does, even with --noflush
        if policy == "-":
            return ""
        if chain.policy is None:
            if self.legacy:  # nft takes and ignores a user chain's policy
                raise _Failure(
                    "fatal", f"Can't set policy `{policy}' on `{name}' line {line}: Bad built-in chain name"
                )
            return ""
        if policy not in ("ACCEPT", "DROP"):
            if self.legacy:
                raise _Failure(
                    "fatal", f"Can't set policy `{policy}' on `{name}' line {line}: Bad policy name"
                )
            raise _refused("Bad policy name.")
        chain.policy = policy
        return ""

    def _commit(self, pending: _Pending, number: int) -> str:
        """Write the table: legacy's kernel checks the whole table now; nft runs the commands
        it read and its kernel checks each rule added."""
        out = "" if self.legacy else self._run_batch(pending, number)
        if self.legacy and self.walk_refused(pending.table):
            raise _refused("Too many levels of symbolic links.")
        self.tables[pending.name] = pending.table
        return out

    def _run_batch(self, pending: _Pending, commit_line: int) -> str:
        batch = self.batch = _Batch()
        try:
            out = [self._batched(op, number, pending, commit_line) for number, op in pending.ops]
        finally:
            self.batch = None
        if batch.errors:
            raise _Failure("kernel", "", lines=self._reported(batch.errors, commit_line))
        for chain in pending.table.values():
            chain.rules = _live(chain.rules)
        # A loop closed and opened again within the batch passes: only the end is validated.
        if batch.refusals and self.walk_refused(pending.table):
            raise _Failure("kernel", "", lines=self._reported(batch.refusals, commit_line))
        return "".join(out)

    def _reported(self, lines: list[tuple[int, str]], commit_line: int) -> list[tuple[int, str]]:
        """The kernel's refusals with the lines iptables-nft-restore names them by."""
        if self.dialect.nft_restore_fails_at_commit:
            return [(commit_line, what) for _, what in lines]
        return lines

    def _batched(self, op: _Op, number: int, pending: _Pending, commit_line: int) -> str:
        assert self.batch is not None
        self.batch.line = number
        before = len(pending.table[op.chain].rules) if op.chain in pending.table else 0
        try:
            out = self.apply(op, pending.name, pending.table, line=number)
        except _Failure as failure:
            # nft reads every line first: a usage problem found now is the COMMIT line's
            # (and any problem, for an iptables-nft-restore that reports at COMMIT)
            at_commit = failure.kind == "usage" or self.dialect.nft_restore_fails_at_commit
            failure.line = commit_line if at_commit else number
            raise
        finally:
            self.batch.changed(op)
        self._kernel_check(op, pending.table, self.batch, before)
        return out

    def _kernel_check(self, op: _Op, table: _Table, batch: _Batch, before: int) -> None:
        """Note the rule adds nf_tables refuses when it goes through the batch again: it
        validates the table after each, the refused rule staying in: once a walk loops,
        every later rule add fails too."""
        if op.command not in ("-A", "-I"):
            batch.recheck = batch.recheck or batch.invalid
            return
        if _jump(op.spec) in table or batch.recheck:
            batch.invalid = self.walk_refused(table)
            batch.recheck = False
        if batch.invalid:
            batch.refusals.append((batch.line, _too_many_links(op, before)))


def _key_without_log_prefix(proto: Protocol) -> Callable[[tuple[str, ...]], object]:
    """ip6tables-legacy's ``-C`` (not its ``-D``) does not compare a LOG rule's prefix."""

    def key(spec: tuple[str, ...]) -> object:
        tokens = list(rule_key(spec, proto))
        if _jump(tokens) == "LOG" and "--log-prefix" in tokens[:-1]:
            at = tokens.index("--log-prefix")
            del tokens[at : at + 2]
        return tuple(tokens)

    return key


def _too_many_links(op: _Op, count: int) -> str:
    """nf_tables' words for a rule add its kernel refused (a loop, or a walk too deep);
    ``count`` is how many rules the chain held before. An insert one past the end is
    an append there."""
    insert = op.command == "-I" and (op.number in (None, 1) or op.number != count + 1)
    return f"{'RULE_INSERT' if insert else 'RULE_APPEND'} failed (Too many links): rule in chain {op.chain}"


class FakeRunner(Runner):
    """Emulates one iptables version in memory for both protocols, on one backend.

    ``backend`` picks where iptables-nft and iptables-legacy differ (what the
    kernel keeps of an nflog prefix, how loops and busy chains are refused,
    when a restore checks its lines; see the module's doc). ``version``, as
    ``(1, 8, 11)``, is the iptables whose words (its version string included,
    as ``--version`` prints it) and quirks the fake follows: 1.8.7 or later
    (default :data:`DEFAULT_VERSION`, 1.8.9; ValueError for an older one).
    ``calls`` counts the processes a real runner would have spawned.
    """

    def __init__(self, *, backend: Backend = "nft", version: Version = DEFAULT_VERSION) -> None:
        if backend not in ("nft", "legacy"):
            raise ValueError(f"backend must be 'nft' or 'legacy', not {backend!r}")
        self.backend: Backend = backend
        self.version: Version = _checked_version(version)
        self.dialect = _dialect(self.version)
        self.calls = 0
        self.tables: dict[Protocol, dict[str, _Table]] = {Protocol.IPV4: {}, Protocol.IPV6: {}}

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        """Answer ``argv`` from the in-memory tables, as iptables would."""
        self.calls += 1
        program = os.path.basename(argv[0])
        process = _Process(self, Protocol.IPV6 if program.startswith("ip6") else Protocol.IPV4)
        args = list(argv[1:])
        try:
            if program.endswith("-save"):
                out = process.save(args)
            elif program.endswith("-restore"):
                # Bytes that are not UTF-8 are kept as they came, as iptables-restore keeps them.
                out = process.restore(args, (input or b"").decode("utf-8", "surrogateescape"))
            else:
                out = process.command(args)
        except _Failure as failure:
            stderr = "".join(process.warnings) + process.describe(failure)
            return Completed(tuple(argv), failure.status, "", _as_read(stderr) + "\n")
        return Completed(tuple(argv), 0, _as_read(out), "".join(process.warnings))

    # -- inspection for tests -----------------------------------------------

    def rules(self, proto: Protocol, table: str, chain: str) -> list[tuple[str, ...]]:
        """The specs in a chain, in order (empty if the chain does not exist), as the
        kernel holds them: in printed form, long values cut (a value cut inside a
        character ends in lone surrogates, the bytes a listing shows as U+FFFD)."""
        found = self.tables[proto].get(table, {}).get(chain)
        return list(found.rules) if found else []


class FakeClient(Client):
    """A :class:`Client` backed by an in-memory iptables.

    >>> fake = FakeClient()
    >>> import anyio
    >>> anyio.run(fake.append, "filter", "INPUT", "-j", "ACCEPT")
    >>> anyio.run(fake.list, "filter", "INPUT")
    ['-P INPUT ACCEPT', '-A INPUT -j ACCEPT']
    >>> fake.calls
    2

    Pass one ``runner`` to several fakes (IPv4 and IPv6) to share one state;
    without one, the fake builds a :class:`FakeRunner` on its ``backend``
    imitating ``version`` (default :data:`DEFAULT_VERSION`):

    >>> FakeClient(version=(1, 8, 11)).fake.version
    (1, 8, 11)

    A ``version`` other than the ``runner``'s is a ValueError.
    """

    def __init__(
        self,
        proto: Protocol = Protocol.IPV4,
        *,
        runner: FakeRunner | None = None,
        backend: str = "nft",
        wait: float | None = 5.0,
        version: Version | None = None,
    ) -> None:
        base = proto.command
        infix = f"-{backend}" if backend in ("nft", "legacy") else ""
        if runner is not None and version is not None and _checked_version(version) != runner.version:
            raise ValueError(f"version {version!r} is not the runner's, {runner.version!r}")
        self.fake: FakeRunner = runner or FakeRunner(
            backend="nft" if backend == "nft" else "legacy", version=version or DEFAULT_VERSION
        )
        super().__init__(
            proto,
            backend="nft" if backend == "nft" else "legacy",
            wait=wait,
            runner=self.fake,
            binaries=Binaries(f"{base}{infix}", f"{base}{infix}-save", f"{base}{infix}-restore"),
        )

    def __repr__(self) -> str:
        # Said as it is made: a fake must not pass for a real client in a log line.
        return f"FakeClient({self.proto}, backend={self.backend!r}, version={self.fake.version!r})"
