"""The ``aioiptables`` command line.

One function per subcommand (``cmd_<name>``), each taking the parsed
arguments and returning the exit status::

    aioiptables check RULE...   # is each rule in its chain, by meaning?
    aioiptables canon RULE      # the canonical form of a rule (no process runs)
    aioiptables diff FILE       # what apply would change
    aioiptables apply FILE      # make the tables hold the rule set, one atomic write per table
    aioiptables demo            # a Controller at work in a throwaway namespace

``check``, ``canon``, ``diff`` and ``apply`` take ``--netns NAME|PATH``,
``--backend {auto,nft,legacy}``, ``-6/--ipv6`` and ``--json``, and act on this
process's own network namespace unless given ``--netns``. Their exit status:
0 for yes/nothing to change, 1 for no/changes (check, diff), 2 for input they
cannot use, 3 when an iptables process failed (or could not start).

The demo never touches this machine's own tables: it creates a private network
namespace, runs every iptables process inside it, and deletes it at the end,
whatever happens.
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ParamSpec, TextIO, TypeVar, cast
from typing import Protocol as TypingProtocol

import anyio

from . import __version__, events
from .cache import RuleCache
from .client import BackendName, Client
from .controller import Controller
from .errors import InvalidRuleError, IPTablesError, RefusedRule, RulesRefusedError
from .events import Generation, Watcher
from .model import (
    Chain,
    Item,
    Protocol,
    Rule,
    RuleSet,
    is_builtin_chain,
    validate_chain_name,
    validate_spec,
    validate_table,
)
from .parse import ChainListing, analyze, parse_listing, rule_key, rule_records
from .plan import TablePlan
from .runner import netns_path
from .syntax import join_tokens, split_line

__all__ = [
    "main",
    "build_parser",
    "cmd_check",
    "cmd_canon",
    "cmd_diff",
    "cmd_apply",
    "cmd_demo",
    "kilo_ruleset",
    "read_rule",
    "load_ruleset",
    "RuleText",
    "UsageError",
    "DEMO_NETNS_PREFIX",
    "EXIT_OK",
    "EXIT_DIFFERS",
    "EXIT_USAGE",
    "EXIT_IPTABLES",
]

#: Every namespace the demo creates is named this followed by a random suffix.
DEMO_NETNS_PREFIX = "aioiptables-demo-"

# Seconds to wait for the xtables lock when tampering: the legacy backend's
# lock file is shared with the host, so another program may hold it briefly.
_TAMPER_WAIT = "5"


# -- entry point -------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        # Warnings (another backend's tables, retries) go to stderr, marked as ours.
        logging.basicConfig(level=logging.WARNING, format="aioiptables: %(message)s")
    handler = cast("Callable[[argparse.Namespace], int]", args.handler)
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (``| head``): say nothing more, and keep Python
        # from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="aioiptables",
        description="Keep iptables and ip6tables rules in a desired state.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_check_parser(commands)
    _add_canon_parser(commands)
    _add_diff_parser(commands)
    _add_apply_parser(commands)
    _add_demo_parser(commands)
    _add_watch_parser(commands)
    return parser


def _add_watch_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser(
        "watch",
        help="print who changes the iptables tables, as it happens (iptables-nft)",
        description="Print each change committed to the iptables tables through nf_tables, as it "
        "happens, with the process that made it: iptables-nft, iptables-nft-restore, nft, "
        "firewalld... iptables-legacy changes are not announced, so they are not seen. "
        "Runs until interrupted.",
    )
    watch.add_argument(
        "--netns", metavar="NAME|PATH", help="watch this network namespace (default: this machine's own)"
    )
    watch.add_argument(
        "--table", action="append", metavar="TABLE", help="only changes to this table (repeatable)"
    )
    watch.add_argument("--count", type=int, metavar="N", help="stop after N changes")
    watch.add_argument("--json", action="store_true", help="print one JSON object per change")
    watch.set_defaults(handler=cmd_watch)


def cmd_watch(args: argparse.Namespace) -> int:
    """``aioiptables watch``: each commit to the iptables tables, with its process."""
    try:
        return anyio.run(_watch, args)
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as exc:
        print(f"aioiptables watch: cannot subscribe to nf_tables' changes: {exc}", file=sys.stderr)
        return 3


async def _watch(args: argparse.Namespace) -> int:
    shown = 0
    async with Watcher(args.netns) as watcher:
        async for generation in watcher:
            changes = [
                c
                for c in generation.changes
                if c.proto is not None and (not args.table or c.table in args.table)
            ]
            if not changes:
                continue
            print(_describe_generation(generation, changes, as_json=args.json), flush=True)
            shown += 1
            if args.count is not None and shown >= args.count:
                return EXIT_OK
    return EXIT_OK


def _describe_generation(generation: Generation, changes: list[events.Change], *, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "generation": generation.id,
                "pid": generation.pid,
                "process": generation.process,
                "changes": [dataclasses.asdict(c) | {"proto": c.proto and c.proto.value} for c in changes],
            }
        )
    parts = [
        f"{'+' if c.added else '-'}{c.what} {c.proto.value if c.proto else '?'} {c.table}"
        + (f" {c.chain}" if c.chain else "")
        for c in changes
    ]
    who = f"{generation.process or '?'} (pid {generation.pid})"
    return f"{time.strftime('%H:%M:%S')} generation {generation.id} by {who}: {', '.join(parts)}"


def _add_demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="keep a small Kilo-like rule set in a throwaway network namespace",
        description=(
            "Create a private network namespace, keep a small Kilo-like rule set in it, "
            "tamper with it, watch it being repaired, clean up, and delete the namespace. "
            "Needs root. Never touches this machine's own tables."
        ),
    )
    demo.add_argument(
        "--backend",
        choices=("auto", "nft", "legacy"),
        default="auto",
        help="iptables binaries to use: the system's default, -nft or -legacy (default: auto)",
    )
    demo.add_argument("-6", "--ipv6", action="store_true", help="keep the IPv6 rules too")
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    demo.add_argument(
        "--anyio-backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    demo.set_defaults(handler=cmd_demo)


# -- check, canon, diff, apply: exit statuses and help ------------------------------

#: Exit status: yes (check), nothing to change (diff), done (apply, canon).
EXIT_OK = 0
#: Exit status: a rule is missing (check), something would change (diff).
EXIT_DIFFERS = 1
#: Exit status: input the command cannot use (a rule, a table, a file); nothing ran.
EXIT_USAGE = 2
#: Exit status: an iptables process failed or could not start (missing binary or namespace).
EXIT_IPTABLES = 3

_MAIN_EPILOG = """\
exit status of check, canon, diff and apply:
  0  yes: every rule found (check), nothing to change (diff), done (canon, apply)
  1  no: a rule is missing (check), something would change (diff)
  2  input the command cannot use: a rule, table, chain or file; nothing ran
  3  an iptables process failed or could not start (missing binary or namespace)

check, diff and apply act on this machine's own tables unless given --netns.
"""

_RULE_HELP = """\
a rule is one argument, quoted for the shell, in iptables' own syntax:
  [-t TABLE | TABLE] -A CHAIN SPEC...      (-I, -C and -D are read like -A)
the table defaults to filter; inside the rule, quote a value holding blanks
with double quotes, as iptables-save prints it:
  '-t nat -A POSTROUTING -s 10.4.0.0/16 -m comment --comment "pod NAT" -j MASQUERADE'
"""

_CHECK_EPILOG = f"""\
{_RULE_HELP}
Rules are compared by meaning (canonical form), so '-p tcp --dport 80' is found
as '-p tcp -m tcp --dport 80'. Each chain is listed once (one process), however
many rules are checked in it; a missing chain holds no rules.

exit status:
  0  every rule was found
  1  at least one rule was not found
  2  a rule, table or chain cannot be read; nothing ran
  3  an iptables process failed or could not start
"""

_CANON_EPILOG = f"""\
{_RULE_HELP}
The chain may be left out ('-p tcp --dport 80'). Prints the spec in canonical
form: the same however the rule is spelled, and (for the extensions this
library knows) what iptables -S prints, and names each option it did not
understand (with --json: "not_understood", when "exact" is false). A rule
iptables would refuse or misread (a reversed port range, '-s a,b', ...) is
refused with what to write instead. No process runs.

exit status:
  0  printed
  2  the rule cannot be read
"""

_RULESET_HELP = """\
rule set files:
  TOML (FILE ends in .toml, or does not look like iptables-save output):

    proto = "ipv4"     # optional: "ipv4", "ipv6" or "both", for every entry that
                       # names none (default: ipv4, or ipv6 with -6)

    [[chain]]          # a user chain: created when missing
    table = "nat"
    name = "KILO-NAT"

    [[append]]         # kept in this order at the end of its chain
    rule = "-t nat -A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE"

    [[append]]         # the same shape, as table, chain and spec
    table = "nat"      # default: filter
    chain = "POSTROUTING"
    spec = ["-s", "10.4.0.0/16", "-j", "KILO-NAT"]   # or one string

    [[prepend]]        # kept at the top of its chain, in this order
    chain = "INPUT"
    spec = "-i kilo0 -j ACCEPT"
    proto = "both"     # one rule for iptables, one for ip6tables

  iptables-save output (the first line that is not blank or a # comment starts
  with *TABLE): each :CHAIN line of a user chain is a [[chain]], each -A line
  an [[append]] rule and each -I line a [[prepend]] rule, in file order;
  policies and counters are ignored. Its rules are IPv4, or IPv6 with -6.

FILE - reads standard input. Rules already in the chains that the file does not
name are left alone: the file says what must be there, in what order.
"""

_DIFF_EPILOG = f"""\
{_RULESET_HELP}
Reads every chain the file touches as apply would (one iptables-save per table
where it needs two chains or more, one iptables -S CHAIN where it needs one)
and prints the changes apply would make, as iptables-restore lines.

exit status:
  0  nothing to change
  1  apply would change something
  2  the file cannot be used; nothing ran
  3  an iptables process failed or could not start
"""

_APPLY_EPILOG = f"""\
{_RULESET_HELP}
Writes each table's changes as one iptables-restore --noflush payload: a
table's changes land whole or not at all. A rule iptables refuses (an ipset
or a chain that does not exist yet) is left out and named with its file and
line and iptables' message; every other rule is written. Applying the same
file again changes nothing.

exit status:
  0  the tables hold the rule set (changed or not)
  2  the file cannot be used; nothing ran
  3  an iptables process failed or could not start (a table whose write
     failed is unchanged), or iptables refused some rules (the rest landed)
"""


def _add_common_options(parser: argparse.ArgumentParser, ipv6_help: str) -> None:
    """The options every table command takes: where, which binaries, which family, what output."""
    parser.add_argument(
        "--netns",
        metavar="NAME|PATH",
        help="run iptables inside this network namespace: a name from 'ip netns' or a path "
        "such as /proc/PID/ns/net (default: this machine's own tables)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "nft", "legacy"),
        default="auto",
        help="iptables binaries to use: the system's default, -nft or -legacy (default: auto)",
    )
    parser.add_argument("-6", "--ipv6", action="store_true", help=ipv6_help)
    parser.add_argument("--json", action="store_true", help="print one JSON object, for scripts")


def _command_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str, epilog: str
) -> argparse.ArgumentParser:
    """A subcommand's parser, its epilog printed as written."""
    return commands.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_check_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = _command_parser(
        commands, "check", "say whether each rule is in its chain, compared by meaning", _CHECK_EPILOG
    )
    check.add_argument("rules", nargs="+", metavar="RULE", help="a rule, as one argument (see below)")
    _add_common_options(check, "the rules are IPv6 (ip6tables)")
    check.set_defaults(handler=cmd_check)


def _add_canon_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    canon = _command_parser(commands, "canon", "print the canonical form of a rule", _CANON_EPILOG)
    canon.add_argument("rule", metavar="RULE", help="a rule, as one argument (see below)")
    _add_common_options(canon, "the rule is IPv6 (ip6tables)")
    canon.set_defaults(handler=cmd_canon)


def _add_ruleset_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    epilog: str,
    handler: Callable[[argparse.Namespace], int],
) -> None:
    parser = _command_parser(commands, name, help, epilog)
    parser.add_argument("file", metavar="FILE", help="the rule set: TOML or iptables-save output (see below)")
    parser.add_argument(
        "--format",
        choices=("auto", "toml", "save"),
        default="auto",
        help="how FILE is written (default: auto, from its name and first line)",
    )
    parser.add_argument(
        "--owner",
        metavar="NAME",
        help="tag every rule written with NAME, and remove rules tagged NAME that FILE no longer "
        "holds (without it, rules are only added: none is ever moved or deleted, since rules "
        "written by an earlier run cannot be told from others')",
    )
    _add_common_options(
        parser, "rules that name no protocol are IPv6 (an iptables-save FILE is ip6tables-save output)"
    )
    parser.set_defaults(handler=handler)


def _add_diff_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_ruleset_parser(
        commands,
        "diff",
        "show what apply would change to make the tables hold a rule set",
        _DIFF_EPILOG,
        cmd_diff,
    )


def _add_apply_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_ruleset_parser(
        commands,
        "apply",
        "make the tables hold a rule set, one atomic write per table",
        _APPLY_EPILOG,
        cmd_apply,
    )


# -- reading rules ---------------------------------------------------------------------


class UsageError(Exception):
    """Input a command cannot use: a rule it cannot read, a rule set file
    that is missing or malformed. Exit status 2; nothing has run."""


_RULE_COMMANDS = {
    "-A": "append", "--append": "append",
    "-I": "insert", "--insert": "insert",
    "-C": "check", "--check": "check",
    "-D": "delete", "--delete": "delete",
}  # fmt: skip
_TABLE_OPTIONS = ("-t", "--table")


@dataclasses.dataclass(frozen=True)
class RuleText:
    """One rule as written on the command line or in a file, checked but
    not yet tied to a protocol.

    >>> read_rule('-t nat -A POSTROUTING -s 10.4.0.0/16 -j MASQUERADE').spec
    ('-s', '10.4.0.0/16', '-j', 'MASQUERADE')
    """

    text: str
    table: str
    #: None when the rule names no chain (``canon`` accepts a bare spec).
    chain: str | None
    spec: tuple[str, ...]

    def rule(self, proto: Protocol) -> Rule:
        """The rule for one protocol; refused when it names no chain."""
        if self.chain is None:
            raise InvalidRuleError(
                "rule", self.text, "names no chain: write it as '[-t TABLE] -A CHAIN SPEC...'"
            )
        return Rule(self.table, self.chain, self.spec, proto)


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


def read_rule(text: str) -> RuleText:
    """Read one rule written ``[-t TABLE | TABLE] [-A CHAIN] SPEC...`` with
    iptables' quoting (``-I CHAIN N``, ``-C`` and ``-D`` are read like ``-A``).
    Raises :class:`InvalidRuleError` for anything it cannot use."""
    tokens = split_line(text)
    table, i = _read_table(tokens, text)
    chain: str | None = None
    command = _RULE_COMMANDS.get(tokens[i]) if i < len(tokens) else None
    if command is not None:
        if i + 1 >= len(tokens):
            raise InvalidRuleError("rule", text, f"{tokens[i]} needs a chain name")
        chain, i = tokens[i + 1], i + 2
        if command == "insert" and i < len(tokens) and tokens[i].isdigit():
            i += 1  # the position: check asks whether the rule is anywhere in the chain
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
    )


# -- reading rule set files ----------------------------------------------------------

_PROTOCOLS: dict[str, tuple[Protocol, ...]] = {
    "ipv4": (Protocol.IPV4,),
    "ipv6": (Protocol.IPV6,),
    "both": (Protocol.IPV4, Protocol.IPV6),
}
_TOP_KEYS = ("proto", "chain", "append", "prepend")
_CHAIN_KEYS = ("table", "name", "proto")
_RULE_KEYS = ("rule", "table", "chain", "spec", "proto")
_P = ParamSpec("_P")
_T = TypeVar("_T")
# iptables-save -c prints "[packets:bytes]" before each rule.
_COUNTERS = re.compile(r"^\[\d+:\d+\]\s+")


def _read_text(path: str) -> str:
    """The file's text (``-``: standard input)."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {path}: {reason}") from None


def _detect_format(path: str, text: str) -> str:
    """``toml`` for a ``.toml`` file; otherwise ``save`` when the first line
    that is not blank or a ``#`` comment starts with ``*TABLE``, else ``toml``."""
    if path.endswith(".toml"):
        return "toml"
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return "save" if stripped.startswith("*") else "toml"
    return "toml"


def load_ruleset(
    path: str, default: Protocol = Protocol.IPV4, fmt: str = "auto", sources: dict[Rule, str] | None = None
) -> RuleSet:
    """The rule set in a file, TOML or iptables-save output (see ``aioiptables diff --help``).

    ``default`` is the protocol of rules that name none. Raises
    :class:`UsageError` for a file it cannot read or use. ``sources``, when
    given, is filled with where each rule came from (``FILE:LINE``), so an
    error about a rule can point at its line.
    """
    text = _read_text(path)
    kind = _detect_format(path, text) if fmt == "auto" else fmt
    found: dict[Rule, str] = {} if sources is None else sources
    try:
        if kind == "save":
            return _save_ruleset(text, default, path, found)
        return _toml_ruleset(text, default, path, found)
    except InvalidRuleError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _save_ruleset(text: str, proto: Protocol, path: str, sources: dict[Rule, str]) -> RuleSet:
    """A rule set from iptables-save output: user chains, -A and -I lines."""
    chains: list[Item] = []
    append: list[Item] = []
    prepend: list[Rule] = []
    table: str | None = None
    for number, raw in enumerate(text.split("\n"), 1):
        line = _COUNTERS.sub("", raw.strip(), count=1)
        where = f"{path}:{number}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = _located(where, validate_table, line[1:].strip())
        elif line == "COMMIT":
            table = None
        elif table is None:
            raise UsageError(f"{where}: {line!r} is outside a *TABLE ... COMMIT section")
        elif line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if not is_builtin_chain(table, name):
                chains.append(_located(where, Chain, table, name, proto))
        else:
            rule = _located(where, Rule.parse, line, table, proto)
            sources.setdefault(rule, where)
            head = line.split(" ", 1)[0]
            (prepend if head in ("-I", "--insert") else append).append(rule)
    return RuleSet(append=[*chains, *append], prepend=prepend)


def _located(where: str, build: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``build(*args)``, an InvalidRuleError becoming a UsageError that says where."""
    try:
        return build(*args, **kwargs)
    except InvalidRuleError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _toml_ruleset(text: str, default: Protocol, path: str, sources: dict[Rule, str]) -> RuleSet:
    """A rule set from the TOML format described in ``aioiptables diff --help``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    _only_keys(data, _TOP_KEYS, path)
    protos = _toml_protos(data, (default,), path)
    chains: list[Item] = []
    for index, entry in enumerate(_toml_entries(data, "chain", path), 1):
        chains += _toml_chains(entry, protos, f"{path}: [[chain]] #{index}")
    rules: dict[str, list[Rule]] = {"append": [], "prepend": []}
    for section, found in rules.items():
        headers = _toml_headers(text, section)
        for index, entry in enumerate(_toml_entries(data, section, path), 1):
            line = f":{headers[index - 1]}" if index <= len(headers) else ""
            where = f"{path}{line}: [[{section}]] #{index}"
            made = _toml_rules(entry, protos, where)
            for rule in made:
                sources.setdefault(rule, where)
            found += made
    return RuleSet(append=[*chains, *rules["append"]], prepend=rules["prepend"])


def _toml_headers(text: str, section: str) -> list[int]:
    """The line numbers of the ``[[section]]`` headers, in order (the TOML
    reader keeps none)."""
    header = re.compile(rf"^\s*\[\[\s*{section}\s*\]\]")
    return [n for n, line in enumerate(text.split("\n"), 1) if header.match(line)]


def _only_keys(entry: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")


def _toml_entries(data: dict[str, Any], section: str, where: str) -> list[dict[str, Any]]:
    entries = data.get(section, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"{where}: {section} must be written as [[{section}]] tables")
    return cast("list[dict[str, Any]]", entries)


def _toml_protos(entry: dict[str, Any], default: tuple[Protocol, ...], where: str) -> tuple[Protocol, ...]:
    value = entry.get("proto")
    if value is None:
        return default
    if not isinstance(value, str) or value not in _PROTOCOLS:
        raise UsageError(f"{where}: proto must be one of {', '.join(map(repr, _PROTOCOLS))}, not {value!r}")
    return _PROTOCOLS[value]


def _toml_string(entry: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if value is None:
        raise UsageError(f"{where}: {key} is missing")
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key} must be a string, not {value!r}")
    return value


def _toml_chains(entry: dict[str, Any], protos: tuple[Protocol, ...], where: str) -> list[Item]:
    _only_keys(entry, _CHAIN_KEYS, where)
    table = _toml_string(entry, "table", where, "filter")
    name = _toml_string(entry, "name", where)
    return [_located(where, Chain, table, name, proto) for proto in _toml_protos(entry, protos, where)]


def _toml_spec(entry: dict[str, Any], where: str) -> tuple[str, ...]:
    spec = entry.get("spec", [])
    if isinstance(spec, str):
        return tuple(_located(where, split_line, spec))
    if isinstance(spec, list) and all(isinstance(token, str) for token in spec):
        return tuple(spec)
    raise UsageError(f"{where}: spec must be a string or a list of strings, not {spec!r}")


def _toml_rules(entry: dict[str, Any], protos: tuple[Protocol, ...], where: str) -> list[Rule]:
    _only_keys(entry, _RULE_KEYS, where)
    if "rule" in entry:
        if {"table", "chain", "spec"} & entry.keys():
            raise UsageError(f"{where}: give either rule or table, chain and spec, not both")
        text = _located(where, read_rule, _toml_string(entry, "rule", where))
    else:
        table = _toml_string(entry, "table", where, "filter")
        text = RuleText("", table, _toml_string(entry, "chain", where), _toml_spec(entry, where))
    return [_located(where, text.rule, proto) for proto in _toml_protos(entry, protos, where)]


# -- output ------------------------------------------------------------------------------


class Output:
    """Where a command's results go.

    To a terminal: a header and aligned columns, the summary below them.
    Piped: only the rows, fields separated by tabs, for ``cut`` and ``grep``;
    the summary goes to standard error. With ``--json``: one object, nothing else.
    """

    def __init__(self, json_mode: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json = json_mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.terminal = self.out.isatty()
        self.styled = self.terminal and "NO_COLOR" not in os.environ

    def rows(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Print rows of fields (nothing with --json)."""
        if self.json or not rows:
            return
        if not self.terminal:
            for row in rows:
                print("\t".join(row), file=self.out)
            return
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

        def line(fields: Sequence[str]) -> str:
            return "  ".join([*(f.ljust(w) for f, w in zip(fields, widths, strict=False)), fields[-1]])

        head = line(header)
        print(f"\033[1m{head}\033[0m" if self.styled else head, file=self.out)
        for row in rows:
            print(line(row), file=self.out)

    def summary(self, text: str) -> None:
        """Print the closing line (nothing with --json)."""
        if not self.json:
            print(text, file=self.out if self.terminal else self.err)

    def document(self, document: dict[str, Any]) -> None:
        """Print the JSON object (only with --json)."""
        if self.json:
            json.dump(document, self.out, indent=2)
            self.out.write("\n")

    def error(self, command: str, message: str, status: int) -> None:
        """Report a failure on standard error, and as JSON with --json."""
        print(f"aioiptables {command}: error: {message}", file=self.err)
        if self.json:
            self.document({"error": message, "exit_status": status})


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}{'es' if word.endswith('s') else 's'}"


# -- running the table commands ------------------------------------------------------------


class RecordingClient(Client):
    """A :class:`Client` that keeps what the command shows: the lines each
    chain listing printed (to show a found rule as iptables printed it) and
    every restore payload written (to show what apply changed)."""

    def __init__(self, proto: Protocol, *, backend: BackendName, netns: str | None) -> None:
        super().__init__(proto, backend=backend, netns=netns)
        self.printed: dict[tuple[str, str], builtins.list[str]] = {}
        self.written: builtins.list[str] = []

    async def list(self, table: str, chain: str) -> builtins.list[str]:
        """``iptables -S CHAIN``, its lines kept."""
        lines = await super().list(table, chain)
        self.printed[(table, chain)] = lines
        return lines

    async def restore(self, payload: str, *, noflush: bool = True) -> None:
        """``iptables-restore``, its payload kept once it has landed."""
        await super().restore(payload, noflush=noflush)
        self.written.append(payload)


def _clients(args: argparse.Namespace, protos: Iterable[Protocol]) -> dict[Protocol, RecordingClient]:
    """One client per protocol, IPv4 first, on the chosen backend and namespace."""
    backend = cast("BackendName", args.backend)
    chosen = sorted(set(protos), key=lambda proto: proto.value)
    return {proto: RecordingClient(proto, backend=backend, netns=args.netns) for proto in chosen}


def _processes(clients: dict[Protocol, RecordingClient]) -> int:
    return sum(client.calls for client in clients.values())


def _default_proto(args: argparse.Namespace) -> Protocol:
    return Protocol.IPV6 if args.ipv6 else Protocol.IPV4


def _status_of(exc: BaseException) -> int | None:
    """The exit status for an error this command reports as a message (None
    for anything else, which is a bug and keeps its traceback)."""
    leaves = _leaves(exc)
    if not all(isinstance(leaf, IPTablesError | InvalidRuleError | UsageError) for leaf in leaves):
        return None
    return EXIT_IPTABLES if any(isinstance(leaf, IPTablesError) for leaf in leaves) else EXIT_USAGE


def _guarded(args: argparse.Namespace, action: Callable[[Output], int]) -> int:
    """Run one command, turning the errors it expects into a message and an exit status."""
    output = Output(args.json)
    try:
        return action(output)
    except Exception as exc:
        status = _status_of(exc)
        if status is None:
            raise
        output.error(args.command, _describe(exc), status)
        return status


# -- check ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One rule checked: the line iptables printed for it, or None."""

    text: str
    rule: Rule
    line: str | None

    def as_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return {
            "rule": self.text,
            "proto": self.rule.proto.value,
            "table": self.rule.table,
            "chain": self.rule.chain,
            "found": self.line is not None,
            "line": self.line,
        }


def _printed_line(client: RecordingClient, listing: ChainListing, rule: Rule) -> str | None:
    """The line iptables printed for ``rule``, or None if the chain does not hold it."""
    key = rule_key(rule.spec, rule.proto)
    if key not in listing.keys:
        return None
    index = listing.keys.index(key)
    # The same records parse_listing read, in the same order (a rule printed
    # on several lines is one record).
    rules = rule_records(client.printed.get((rule.table, rule.chain), []), rule.chain)
    if index < len(rules):
        return rules[index]
    return f"-A {rule.chain} {join_tokens(listing.specs[index])}"  # pragma: no cover - defensive


async def _check(rules: Sequence[tuple[str, Rule]], client: RecordingClient) -> list[CheckResult]:
    """Check each rule against one listing of its chain (shared through a RuleCache)."""
    cache = RuleCache(client)
    results = []
    for text, rule in rules:
        listing = await cache.listing(rule.proto, rule.table, rule.chain)
        results.append(CheckResult(text, rule, _printed_line(client, listing, rule)))
    return results


def cmd_check(args: argparse.Namespace) -> int:
    """``aioiptables check RULE...``: whether each rule is in its chain, by
    meaning. Exit 0 if all are, 1 if any is missing, 2 or 3 on errors."""

    def run(output: Output) -> int:
        proto = _default_proto(args)
        rules = [(text, read_rule(text).rule(proto)) for text in args.rules]  # all checked first
        clients = _clients(args, [proto])
        results = anyio.run(_check, rules, clients[proto])
        found = sum(1 for result in results if result.line is not None)
        output.rows(
            ("result", "table", "rule"),
            [
                (
                    "found" if r.line is not None else "not found",
                    r.rule.table,
                    r.line if r.line is not None else str(r.rule).partition(" ")[2],
                )
                for r in results
            ],
        )
        processes = _processes(clients)
        output.summary(f"{found} of {len(results)} found; {_plural(processes, 'process')}")
        output.document(
            {
                "ok": found == len(results),
                "rules": [result.as_json() for result in results],
                "processes": processes,
            }
        )
        return EXIT_OK if found == len(results) else EXIT_DIFFERS

    return _guarded(args, run)


# -- canon ------------------------------------------------------------------------------------


def cmd_canon(args: argparse.Namespace) -> int:
    """``aioiptables canon RULE``: print the rule's canonical form. No process runs."""

    from .parse import check_rule, not_understood

    def run(output: Output) -> int:
        proto = _default_proto(args)
        text = read_rule(args.rule)
        check_rule(text.spec, proto)  # bad input: its InvalidRuleError, exit status 2
        canonical = analyze(text.spec, proto)
        unread = () if canonical.exact else not_understood(text.spec, proto)
        if not output.json:
            print(join_tokens(canonical.tokens), file=output.out)
            if not canonical.exact:
                print(
                    "aioiptables canon: note: not understood, so kept as written (iptables may "
                    f"print it otherwise): {'; '.join(unread) or 'the rule'}",
                    file=output.err,
                )
        document: dict[str, Any] = {
            "canonical": list(canonical.tokens),
            "exact": canonical.exact,
            "proto": proto.value,
            "table": text.table,
            "chain": text.chain,
        }
        if not canonical.exact:
            document["not_understood"] = list(unread)
        output.document(document)
        return EXIT_OK

    return _guarded(args, run)


# -- diff and apply ----------------------------------------------------------------------------

_KINDS = {
    ":": "create",
    "-N": "create",
    "-A": "append",
    "-I": "insert",
    "-D": "delete",
    "-F": "flush",
    "-X": "remove",
}


@dataclasses.dataclass(frozen=True)
class Change:
    """One line of a restore payload, with where it goes."""

    proto: Protocol
    table: str
    kind: str
    line: str

    def row(self) -> tuple[str, str, str, str]:
        """The change as output fields."""
        return (self.proto.value, self.table, self.kind, self.line)

    def as_json(self) -> dict[str, str]:
        """The change as a JSON-ready dict."""
        return {"proto": self.proto.value, "table": self.table, "kind": self.kind, "line": self.line}


def _planned_changes(plans: Sequence[TablePlan]) -> list[Change]:
    return [Change(p.proto, p.table, op.kind, op.line()) for p in plans for op in p.ops]


def _written_changes(clients: dict[Protocol, RecordingClient]) -> list[Change]:
    """The changes every restore payload made, read back from the payloads."""
    changes = []
    for proto, client in clients.items():
        for payload in client.written:
            table = ""
            for line in payload.split("\n"):
                if line.startswith("*"):
                    table = line[1:]
                elif line and line != "COMMIT":
                    kind = _KINDS.get(":" if line.startswith(":") else line.split(" ", 1)[0], "other")
                    changes.append(Change(proto, table, kind, line))
    return changes


def _ruleset_protos(ruleset: RuleSet, default: Protocol) -> set[Protocol]:
    """The protocols a rule set uses (the default one for an empty set)."""
    return {item.proto for item in ruleset} or {default}


def _controller(clients: dict[Protocol, RecordingClient], owner: str | None) -> Controller:
    return Controller(v4=clients.get(Protocol.IPV4), v6=clients.get(Protocol.IPV6), owner=owner)


async def _diff(
    ruleset: RuleSet, clients: dict[Protocol, RecordingClient], owner: str | None = None
) -> list[TablePlan]:
    """What apply would change: read and planned exactly as the Controller does."""
    return await _controller(clients, owner).preview(ruleset)


_CHANGE_HEADER = ("proto", "table", "change", "line")


def _report_changes(
    output: Output, changes: list[Change], summary: str, processes: int, extra: dict[str, object]
) -> None:
    """The rows, the summary line and the JSON document of diff and apply."""
    output.rows(_CHANGE_HEADER, [change.row() for change in changes])
    if changes:
        output.summary(f"{summary}; {_plural(processes, 'process')}")
    else:
        output.summary(f"nothing to change; {_plural(processes, 'process')}")
    output.document(
        {
            "changed": bool(changes),
            "changes": [change.as_json() for change in changes],
            **extra,
            "processes": processes,
        }
    )


def _load(
    args: argparse.Namespace, sources: dict[Rule, str] | None = None
) -> tuple[RuleSet, dict[Protocol, RecordingClient]]:
    default = _default_proto(args)
    ruleset = load_ruleset(args.file, default, args.format, sources)
    return ruleset, _clients(args, _ruleset_protos(ruleset, default))


def cmd_diff(args: argparse.Namespace) -> int:
    """``aioiptables diff FILE``: the changes apply would make. Exit 0 if none, 1 if some."""

    def run(output: Output) -> int:
        ruleset, clients = _load(args)
        plans = anyio.run(_diff, ruleset, clients, args.owner)
        changes = _planned_changes(plans)
        payloads = [{"proto": p.proto.value, "table": p.table, "payload": p.payload} for p in plans]
        summary = f"{_plural(len(changes), 'change')} in {_plural(len(plans), 'table')}"
        _report_changes(output, changes, summary, _processes(clients), {"payloads": payloads})
        return EXIT_DIFFERS if changes else EXIT_OK

    return _guarded(args, run)


async def _apply(
    ruleset: RuleSet, clients: dict[Protocol, RecordingClient], owner: str | None = None
) -> None:
    """Set the rule set through a Controller: one read and one atomic write per table."""
    await _controller(clients, owner).set(ruleset)


def cmd_apply(args: argparse.Namespace) -> int:
    """``aioiptables apply FILE``: make the tables hold the rule set. Exit 0 on success."""

    def run(output: Output) -> int:
        sources: dict[Rule, str] = {}
        ruleset, clients = _load(args, sources)
        refused: tuple[RefusedRule, ...] = ()
        try:
            anyio.run(_apply, ruleset, clients, args.owner)
        except RulesRefusedError as exc:
            refused = exc.refused  # every other rule was written: report both
        changes = _written_changes(clients)
        writes = sum(len(client.written) for client in clients.values())
        summary = f"applied {_plural(len(changes), 'change')} in {_plural(writes, 'write')}"
        lines = [f"{sources.get(r.rule, args.file)}: {r.rule}: {r.message}" for r in refused]
        extra: dict[str, object] = {"writes": writes, "refused": lines}
        _report_changes(output, changes, summary, _processes(clients), extra)
        for line in lines:
            print(f"aioiptables apply: refused: {line}", file=output.err)
        return EXIT_IPTABLES if refused else EXIT_OK

    return _guarded(args, run)


# -- the demo: rules -----------------------------------------------------------

_SUBNETS = {Protocol.IPV4: "10.4.0.0/16", Protocol.IPV6: "fd00:4::/64"}
_NAT_CHAIN = "KILO-NAT"
_FORWARD_CHAIN = "KILO-FORWARD"


def _masquerade_spec(subnet: str) -> tuple[str, ...]:
    # Named on its own: the demo deletes this exact rule by hand in step 3.
    comment = "Kilo: NAT packets from the pod subnet"
    return ("-s", subnet, "-m", "comment", "--comment", comment, "-j", "MASQUERADE")


def _kilo_items(proto: Protocol) -> list[Item]:
    subnet = _SUBNETS[proto]

    def rule(table: str, chain: str, *spec: str) -> Rule:
        return Rule(table, chain, spec, proto)

    return [
        Chain("nat", _NAT_CHAIN, proto),
        rule(
            "nat", _NAT_CHAIN,
            "-d", subnet, "-m", "comment", "--comment", "Kilo: do not NAT packets destined for the mesh",
            "-j", "RETURN",
        ),
        rule("nat", _NAT_CHAIN, *_masquerade_spec(subnet)),
        rule(
            "nat", "POSTROUTING",
            "-s", subnet, "-m", "comment", "--comment", "Kilo: jump to KILO-NAT chain", "-j", _NAT_CHAIN,
        ),
        Chain("filter", _FORWARD_CHAIN, proto),
        rule("filter", _FORWARD_CHAIN, "-s", subnet, "-j", "ACCEPT"),
        rule("filter", _FORWARD_CHAIN, "-d", subnet, "-j", "ACCEPT"),
        rule("filter", "FORWARD", "-j", _FORWARD_CHAIN),
    ]  # fmt: skip


def kilo_ruleset(protos: Sequence[Protocol]) -> RuleSet:
    """A small rule set shaped like Kilo's (a WireGuard mesh for Kubernetes):
    masquerade the pod subnet except towards the mesh, and accept forwarded
    mesh traffic, for each protocol in ``protos``."""
    return RuleSet(append=tuple(item for proto in protos for item in _kilo_items(proto)))


ChainKey = tuple[Protocol, str, str]


def _expected_chains(ruleset: RuleSet) -> dict[ChainKey, list[tuple[str, ...]]]:
    """Every chain the rule set touches, with the specs it must hold in order."""
    chains: dict[ChainKey, list[tuple[str, ...]]] = {}
    for item in ruleset:
        if isinstance(item, Chain):
            chains.setdefault((item.proto, item.table, item.name), [])
        else:
            chains.setdefault((item.proto, item.table, item.chain), []).append(item.spec)
    return chains


# -- the demo: reporting ------------------------------------------------------


class DemoFailure(Exception):
    """The demo saw something other than what the library promises."""


@dataclasses.dataclass
class StepResult:
    """What one step cost, and what it showed."""

    number: int
    name: str
    title: str
    processes: int
    writes: int
    changes: int
    ms: float
    stats: dict[str, float]
    #: Labelled groups of lines shown under the step (listings, commands run).
    details: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The step as a JSON-ready dict."""
        return {
            "step": self.number,
            "name": self.name,
            "title": self.title,
            "processes": self.processes,
            "writes": self.writes,
            "changes": self.changes,
            "ms": round(self.ms, 3),
            "stats": self.stats,
            "details": self.details,
        }


@dataclasses.dataclass
class DemoInfo:
    """What the demo runs on."""

    netns: str
    backend: str
    version: str
    ipv6: bool
    anyio_backend: str


class Reporter(TypingProtocol):
    """Where the demo's progress goes."""

    def start(self, info: DemoInfo) -> None:
        """The demo is about to run its first step."""

    def step(self, result: StepResult) -> None:
        """A step has run (its checks may still fail)."""

    def finish(self, error: str | None, netns_deleted: bool) -> None:
        """The demo is over, the namespace deleted (or not); ``error`` is None on success."""


_COLUMNS = "{:>2}  {:<34}{:>10}{:>8}{:>9}{:>10}"


class TextReporter:
    """An aligned table, one row per step as it completes, details under each row."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        # Bold and colour only for a person at a terminal; plain text when piped.
        self.styled = out.isatty() and "NO_COLOR" not in os.environ
        self.steps: list[StepResult] = []

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.styled else text

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def start(self, info: DemoInfo) -> None:
        """Print what the demo runs on and the table header."""
        family = "IPv4 and IPv6" if info.ipv6 else "IPv4"
        self._print(f"aioiptables demo: {info.version}, {family}, anyio on {info.anyio_backend}")
        self._print(f"network namespace {info.netns} (deleted at the end)")
        self._print()
        self._print(self._style(_COLUMNS.format("#", "step", "processes", "writes", "changes", "ms"), "1"))

    def step(self, result: StepResult) -> None:
        """Print the step's row, then its details indented below it."""
        self.steps.append(result)
        ms = f"{result.ms:.1f}"
        self._print(
            _COLUMNS.format(result.number, result.title, result.processes, result.writes, result.changes, ms)
        )
        for label, lines in result.details.items():
            self._print(f"      {self._style(label, '2')}")
            for line in lines:
                self._print(f"        {line}")

    def finish(self, error: str | None, netns_deleted: bool) -> None:
        """Print the outcome (errors go to standard error)."""
        self._print()
        if error is not None:
            print(f"aioiptables demo: FAILED: {error}", file=sys.stderr, flush=True)
            return
        total = sum(step.processes for step in self.steps)
        self._print(
            self._style("ok", "32;1")
            + f": {len(self.steps)} steps, {total} iptables processes; namespace deleted"
        )


class JsonReporter:
    """Collects everything and prints one JSON object at the end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.info: DemoInfo | None = None
        self.steps: list[StepResult] = []

    def start(self, info: DemoInfo) -> None:
        """Remember what the demo runs on."""
        self.info = info

    def step(self, result: StepResult) -> None:
        """Remember one step."""
        self.steps.append(result)

    def finish(self, error: str | None, netns_deleted: bool) -> None:
        """Print the JSON object (and the error on standard error too, for people)."""
        document: dict[str, Any] = {
            "ok": error is None,
            "error": error,
            "netns_deleted": netns_deleted,
            **(dataclasses.asdict(self.info) if self.info else {}),
            "steps": [step.as_json() for step in self.steps],
            "total_processes": sum(step.processes for step in self.steps),
        }
        json.dump(document, self.out, indent=2)
        self.out.write("\n")
        self.out.flush()
        if error is not None:
            print(f"aioiptables demo: FAILED: {error}", file=sys.stderr, flush=True)


# -- the demo: namespace -------------------------------------------------------


def _create_netns() -> str:
    """Create a fresh, empty network namespace; return its name."""
    if os.geteuid() != 0:
        raise DemoFailure("the demo needs root: it creates a network namespace")
    if shutil.which("ip") is None:
        raise DemoFailure("the 'ip' command is missing: install iproute2")
    name = f"{DEMO_NETNS_PREFIX}{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DemoFailure(f"cannot create network namespace {name}: {done.stderr.strip()}")
    return name


def _delete_netns(name: str) -> bool:
    """Delete the namespace; every table in it goes with it. True if it is gone."""
    done = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(
            f"aioiptables demo: could not delete network namespace {name}: {done.stderr.strip()} "
            f"(remove it with 'ip netns delete {name}')",
            file=sys.stderr,
        )
    return done.returncode == 0


async def _ns_run(netns: str, argv: Sequence[str]) -> str:
    """Run ``argv`` inside the namespace (argv list, no shell); return its output."""
    full = ["nsenter", f"--net={netns_path(netns)}", "--", *argv]
    done = await anyio.run_process(full, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise DemoFailure(f"{shlex.join(argv)} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode(errors="replace")


async def _version(binary: str) -> str:
    # Outside the namespace: --version reads no table.
    try:
        done = await anyio.run_process([binary, "--version"], check=False)
    except OSError:
        # Leave the error to the controller's first call, which says what to install.
        return os.path.basename(binary)
    return done.stdout.decode(errors="replace").strip() or os.path.basename(binary)


# -- the demo: steps ------------------------------------------------------------


def _indented(label: str, lines: Sequence[str]) -> str:
    """A labelled block of lines for an error message."""
    return f"\n  {label}" + "".join(f"\n    {line}" for line in lines)


def _display(argv: Sequence[str]) -> str:
    """A command as a person would type it: the program's base name, shell quoting."""
    return shlex.join([os.path.basename(argv[0]), *argv[1:]])


class Demo:
    """The demo's five steps against one namespace.

    The controller's clients do the work; separate *inspector* clients (same
    backend, same namespace) do the checking, so the process counts shown are
    the controller's alone.
    """

    def __init__(self, netns: str, backend: BackendName, ipv6: bool, reporter: Reporter) -> None:
        self.netns = netns
        self.reporter = reporter
        protos = [Protocol.IPV4, Protocol.IPV6] if ipv6 else [Protocol.IPV4]
        self.ruleset = kilo_ruleset(protos)
        self.expected = _expected_chains(self.ruleset)
        clients = {proto: Client(proto, backend=backend, netns=netns) for proto in protos}
        # resync is unused: the demo calls reconcile itself, never run().
        self.controller = Controller(v4=clients[Protocol.IPV4], v6=clients.get(Protocol.IPV6), resync=30.0)
        self.inspectors = {proto: Client(proto, backend=backend, netns=netns) for proto in protos}
        self.v4 = clients[Protocol.IPV4]

    async def run(self, anyio_backend: str) -> None:
        """Run every step, checking after each one."""
        self.reporter.start(
            DemoInfo(
                netns=self.netns,
                backend=self.v4.backend,
                version=await _version(self.v4.binaries.iptables),
                ipv6=Protocol.IPV6 in self.inspectors,
                anyio_backend=anyio_backend,
            )
        )
        await self.step_set()
        await self.step_steady()
        await self.step_delete_rule()
        await self.step_flush_chain()
        await self.step_cleanup()

    # -- measuring and checking --

    async def _measure(
        self, number: int, name: str, title: str, action: Callable[[], Awaitable[None]]
    ) -> StepResult:
        """Run one controller operation; what it cost is the difference of
        ``controller.calls`` (processes) and the wall time around it."""
        calls = self.controller.calls
        started = time.perf_counter()
        await action()
        ms = (time.perf_counter() - started) * 1000
        stats = dict(self.controller.last_stats)
        return StepResult(
            number, name, title,
            processes=self.controller.calls - calls,
            writes=int(stats.get("writes", 0)),
            changes=int(stats.get("changes", 0)),
            ms=ms,
            stats=stats,
        )  # fmt: skip

    async def _listing(self, proto: Protocol, table: str, chain: str) -> list[str]:
        return await self.inspectors[proto].list(table, chain)

    async def _verify(self, when: str) -> None:
        """Every chain of the rule set holds exactly its rules, in order."""
        for (proto, table, chain), specs in self.expected.items():
            lines = await self._listing(proto, table, chain)
            if list(parse_listing(lines, chain)) != specs:
                wanted = [f"-A {chain} {join_tokens(spec)}" for spec in specs]
                raise DemoFailure(
                    f"{when}: {proto.command} -t {table} -S {chain} does not hold the expected rules"
                    + _indented("expected (rules, in order):", wanted)
                    + _indented("found:", lines)
                )

    async def _tamper(self, *args: str) -> str:
        """Change KILO-NAT behind the controller's back with plain iptables."""
        argv = [self.v4.binaries.iptables, "-w", _TAMPER_WAIT, "-t", "nat", *args]
        await _ns_run(self.netns, argv)
        return _display(argv)

    # -- the steps --

    async def _set(self) -> None:
        await self.controller.set(self.ruleset)

    async def step_set(self) -> None:
        """1: set the rule set in empty tables."""
        result = await self._measure(1, "set", "set rules (from empty)", self._set)
        for proto, table, chain in self.expected:
            label = f"{os.path.basename(self.inspectors[proto].binaries.iptables)} -t {table} -S {chain}:"
            result.details[label] = await self._listing(proto, table, chain)
        self.reporter.step(result)
        await self._verify("after set")

    async def step_steady(self) -> None:
        """2: reconcile with nothing changed: reads only."""
        result = await self._measure(2, "steady", "reconcile, nothing changed", self.controller.reconcile)
        self.reporter.step(result)
        if result.writes:
            raise DemoFailure(f"a reconcile with nothing changed wrote {result.writes} times")
        await self._verify("after the steady-state reconcile")

    async def step_delete_rule(self) -> None:
        """3: delete the MASQUERADE rule by hand; reconcile puts it back in place."""
        spec = _masquerade_spec(_SUBNETS[Protocol.IPV4])
        command = await self._tamper("-D", _NAT_CHAIN, *spec)
        gone = await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN)
        if spec in parse_listing(gone, _NAT_CHAIN):
            raise DemoFailure(f"{command} did not delete the rule")
        title = "MASQUERADE deleted: reconcile"
        result = await self._measure(3, "repair-deleted-rule", title, self.controller.reconcile)
        result.details = {
            "tampered:": [command],
            "before the reconcile:": gone,
            "after:": await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN),
        }
        self.reporter.step(result)
        await self._verify("after repairing the deleted rule")

    async def step_flush_chain(self) -> None:
        """4: flush KILO-NAT by hand; reconcile refills it."""
        command = await self._tamper("-F", _NAT_CHAIN)
        flushed = await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN)
        if parse_listing(flushed, _NAT_CHAIN):
            raise DemoFailure(f"{command} left rules in {_NAT_CHAIN}")
        title = f"{_NAT_CHAIN} flushed: reconcile"
        result = await self._measure(4, "repair-flushed-chain", title, self.controller.reconcile)
        result.details = {
            "tampered:": [command],
            "before the reconcile:": flushed,
            "after:": await self._listing(Protocol.IPV4, "nat", _NAT_CHAIN),
        }
        self.reporter.step(result)
        await self._verify("after repairing the flushed chain")

    async def step_cleanup(self) -> None:
        """5: cleanup() removes every rule and chain; iptables-save shows no trace."""
        result = await self._measure(5, "cleanup", "cleanup()", self.controller.cleanup)
        for inspector in self.inspectors.values():
            for table in ("nat", "filter"):
                command = f"{os.path.basename(inspector.binaries.save)} -t {table}:"
                saved = await inspector.save(table)
                result.details[command] = [line for line in saved.splitlines() if not line.startswith("#")]
        self.reporter.step(result)
        leftovers = [line for lines in result.details.values() for line in lines if "KILO" in line]
        if leftovers:
            raise DemoFailure(f"after cleanup, iptables-save still shows {leftovers}")


# -- the demo: command ------------------------------------------------------------


def _leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside ``exc``: the controller reads chains in a task group,
    so one failing listing reaches us wrapped in an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: BaseException) -> str:
    """One message for an error: the first inside it, and how many more there were."""
    leaves = _leaves(exc)
    first = str(leaves[0]) or type(leaves[0]).__name__
    return first if len(leaves) == 1 else f"{first} (and {len(leaves) - 1} more)"


def _is_expected(exc: BaseException) -> bool:
    """Failures the demo reports as a message, not a traceback."""
    # A broken pipe is left to main(): there is nobody to report it to.
    return all(
        isinstance(leaf, DemoFailure | IPTablesError | OSError) and not isinstance(leaf, BrokenPipeError)
        for leaf in _leaves(exc)
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """``aioiptables demo``: keep, tamper with, repair and remove a Kilo-like
    rule set in a throwaway network namespace. Returns 0 on success."""
    out = sys.stdout
    reporter: Reporter = JsonReporter(out) if args.json else TextReporter(out)
    try:
        netns = _create_netns()
    except DemoFailure as exc:
        reporter.finish(str(exc), netns_deleted=True)
        return 1
    error: str | None = None
    status = 0
    # The namespace is made and deleted outside the event loop, so it goes
    # even if the loop itself dies or the user presses Ctrl-C.
    try:
        demo = Demo(netns, args.backend, args.ipv6, reporter)
        anyio.run(demo.run, args.anyio_backend, backend=args.anyio_backend)
    except BaseException as exc:
        # Under trio, Ctrl-C can arrive wrapped in an exception group too.
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in _leaves(exc)):
            error, status = "interrupted", 130
        elif _is_expected(exc):
            error, status = _describe(exc), 1
        else:
            raise
    finally:
        deleted = _delete_netns(netns)
    if not deleted and error is None:
        error, status = f"could not delete network namespace {netns}", 1
    reporter.finish(error, deleted)
    return status
