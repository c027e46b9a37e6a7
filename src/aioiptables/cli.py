"""The ``aioiptables`` command line.

One function per subcommand (``cmd_<name>``), each taking the parsed
arguments and returning the exit status::

    aioiptables check RULE...   # is each rule in its chain, by meaning?
    aioiptables canon RULE      # the canonical form of a rule (no process runs)
    aioiptables diff FILE       # what apply would change
    aioiptables apply FILE      # make the tables hold the rule set, one atomic write per table
    aioiptables demo            # a Controller at work in a throwaway namespace
    aioiptables watch           # who changes the tables, as it happens (iptables-nft)

``check``, ``canon``, ``diff`` and ``apply`` take ``--netns NAME|PATH``,
``--backend {auto,nft,legacy}``, ``-6/--ipv6`` and ``--json``, and act on this
process's own network namespace unless given ``--netns``. Their exit status:
0 for yes/nothing to change, 1 for no/changes (check, diff), 2 for input they
cannot use, 3 when an iptables process failed (or could not start), 130 when
interrupted. Whatever goes wrong is said in one line, in the shell's words.

Rule-set files are read by :mod:`aioiptables.files`, what is printed is
shaped by :mod:`aioiptables.output`, and the demo is :mod:`aioiptables.demo`:
this module only parses arguments and runs commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import anyio

from . import __version__, demo, events, files
from .cache import RuleCache
from .client import BackendName, Client
from .controller import Controller
from .errors import InvalidRuleError, IPTablesError, RefusedRule, RulesRefusedError
from .events import Generation, Watcher
from .model import Protocol, Rule, RuleSet
from .output import Output, ShellLogHandler, describe, leaves, plural
from .parse import ChainListing, analyze, rule_key
from .plan import TablePlan
from .ruletext import RuleText, read_rule
from .runner import netns_path
from .syntax import join_tokens

__all__ = [
    "main",
    "build_parser",
    "cmd_check",
    "cmd_canon",
    "cmd_diff",
    "cmd_apply",
    "cmd_demo",
    "cmd_watch",
    "CommandError",
    "UsageError",
    "MissingNamespaceError",
    "EXIT_OK",
    "EXIT_DIFFERS",
    "EXIT_USAGE",
    "EXIT_IPTABLES",
    "EXIT_INTERRUPTED",
]


# -- entry point -------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print("aioiptables: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): say nothing more, and keep Python
        # from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command_parser = cast("argparse.ArgumentParser", getattr(args, "command_parser", parser))
        command_parser.error(_unrecognized(args, argv, unknown))
    if not logging.getLogger().handlers:
        # The library's warnings (another backend's tables...) go to stderr,
        # marked as ours and worded for the shell.
        logging.getLogger().addHandler(ShellLogHandler())
    handler = cast("Callable[[argparse.Namespace], int]", args.handler)
    return handler(args)


# The options of check and canon, with how many values each takes: what is
# left of the arguments, in order, is the rule the user meant.
_OWN_OPTIONS = {"--netns": 1, "--backend": 1, "-6": 0, "--ipv6": 0, "--json": 0, "--": 0}


def _unrecognized(args: argparse.Namespace, argv: Sequence[str], unknown: Sequence[str]) -> str:
    """argparse's complaint, and for a rule given as several arguments (the
    shell split it), how to quote it."""
    message = f"unrecognized arguments: {' '.join(unknown)}"
    if args.command not in ("check", "canon") or args.command not in argv:
        return message
    after = list(argv[argv.index(args.command) + 1 :])
    own: list[str] = []
    rule: list[str] = []
    while after:
        token = after.pop(0)
        name = token.partition("=")[0]
        if name in _OWN_OPTIONS:
            own.append(token)
            if "=" not in token:
                own += [after.pop(0) for _ in range(min(_OWN_OPTIONS[name], len(after)))]
        else:
            rule.append(token)
    own = [token for token in own if token != "--"]
    example = shlex.join(["aioiptables", args.command, *own]) + " " + shlex.quote(join_tokens(rule))
    return f"{message}\na rule is one argument: quote it for the shell, as in\n  {example}"


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
        _require_netns(args.netns)
        return anyio.run(_watch, args)
    except KeyboardInterrupt:
        return EXIT_OK
    except MissingNamespaceError as exc:
        print(f"aioiptables watch: error: {exc}", file=sys.stderr)
        return EXIT_IPTABLES
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"aioiptables watch: cannot subscribe to nf_tables' changes: {reason}", file=sys.stderr)
        return EXIT_IPTABLES


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
    parser = commands.add_parser(
        "demo",
        help="keep a small Kilo-like rule set in a throwaway network namespace",
        description=(
            "Create a private network namespace, keep a small Kilo-like rule set in it, "
            "tamper with it, watch it being repaired, clean up, and delete the namespace. "
            "Needs root. Never touches this machine's own tables."
        ),
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "nft", "legacy"),
        default="auto",
        help="iptables binaries to use: the system's default, -nft or -legacy (default: auto)",
    )
    parser.add_argument("-6", "--ipv6", action="store_true", help="keep the IPv6 rules too")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--anyio-backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (default: asyncio)",
    )
    parser.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """``aioiptables demo``: keep, tamper with, repair and remove a Kilo-like
    rule set in a throwaway network namespace (see :mod:`aioiptables.demo`).
    Returns 0 on success, 1 on failure, 130 when interrupted (143 on SIGTERM)."""
    return demo.run(backend=args.backend, ipv6=args.ipv6, as_json=args.json, anyio_backend=args.anyio_backend)


# -- check, canon, diff, apply: exit statuses and help ------------------------------

#: Exit status: yes (check), nothing to change (diff), done (apply, canon).
EXIT_OK = 0
#: Exit status: a rule is missing (check), something would change (diff).
EXIT_DIFFERS = 1
#: Exit status: input the command cannot use (a rule, a table, a file); nothing ran.
EXIT_USAGE = 2
#: Exit status: an iptables process failed or could not start (missing binary or namespace).
EXIT_IPTABLES = 3
#: Exit status: interrupted by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130

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
a rule copied with its program reads too, and ip6tables makes it IPv6:
  'ip6tables -A INPUT -s fd00:4::/64 -j ACCEPT'
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
name are left alone: the file says what must be there, in what order. An error
in the file names its line. docs/files.md describes the format in full; in
Python, aioiptables.files reads and writes it.
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
    check.set_defaults(handler=cmd_check, command_parser=check)


def _add_canon_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    canon = _command_parser(commands, "canon", "print the canonical form of a rule", _CANON_EPILOG)
    canon.add_argument("rule", metavar="RULE", help="a rule, as one argument (see below)")
    _add_common_options(canon, "the rule is IPv6 (ip6tables)")
    canon.set_defaults(handler=cmd_canon, command_parser=canon)


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


# -- errors the commands report --------------------------------------------------------------


class CommandError(Exception):
    """An error a command reports as one line and its exit status."""

    status = EXIT_USAGE


class UsageError(CommandError):
    """Input a command cannot use: a rule file it cannot read, a rule that
    contradicts an option. Exit status 2; nothing has run."""


class MissingNamespaceError(CommandError):
    """The network namespace given with ``--netns`` does not exist. Exit
    status 3, as for any iptables process that could not start."""

    status = EXIT_IPTABLES


def _require_netns(netns: str | None) -> None:
    """Refuse a ``--netns`` that names no namespace, in those words (rather
    than as the iptables process that could not be started in it)."""
    if netns is None:
        return
    path = netns_path(netns)
    if not os.path.exists(path):
        create = "" if "/" in netns else f"; create it with: ip netns add {netns}"
        raise MissingNamespaceError(f"network namespace {netns} does not exist (no {path}{create})")


def _status_of(exc: BaseException) -> int | None:
    """The exit status for an error this command reports as a message (None
    for anything else, which is a bug and keeps its traceback)."""
    statuses = []
    for leaf in leaves(exc):
        if isinstance(leaf, IPTablesError):
            statuses.append(EXIT_IPTABLES)
        elif isinstance(leaf, InvalidRuleError):
            statuses.append(EXIT_USAGE)
        elif isinstance(leaf, CommandError):
            statuses.append(leaf.status)
        else:
            return None
    return max(statuses)


def _guarded(args: argparse.Namespace, action: Callable[[Output], int]) -> int:
    """Run one command, turning the errors it expects into a message and an exit status."""
    output = Output(args.json)
    try:
        return action(output)
    except Exception as exc:
        status = _status_of(exc)
        if status is None:
            raise
        output.error(args.command, describe(exc), status)
        return status


# -- running the table commands ------------------------------------------------------------


def _default_proto(args: argparse.Namespace) -> Protocol:
    return Protocol.IPV6 if args.ipv6 else Protocol.IPV4


def _read_rule(args: argparse.Namespace, text: str) -> RuleText:
    """A rule of the command line: one that names ``iptables`` is refused with ``-6``."""
    read = read_rule(text)
    if args.ipv6 and read.proto is Protocol.IPV4:
        raise UsageError(f"{text!r} names iptables (IPv4), but -6 asks for IPv6: drop one of them")
    return read


def _clients(args: argparse.Namespace, protos: Iterable[Protocol]) -> dict[Protocol, Client]:
    """One client per protocol, IPv4 first, on the chosen backend and namespace."""
    backend = cast("BackendName", args.backend)
    chosen = sorted(set(protos), key=lambda proto: proto.value)
    return {proto: Client(proto, backend=backend, netns=args.netns) for proto in chosen}


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


def _printed_line(listing: ChainListing, rule: Rule) -> str | None:
    """The line iptables printed for ``rule``, or None if the chain does not hold it."""
    try:
        index = listing.keys.index(rule_key(rule.spec, rule.proto))
    except ValueError:
        return None
    if len(listing.records) == len(listing.specs):
        return listing.records[index]  # as printed (a rule printed on several lines is one record)
    return f"-A {rule.chain} {join_tokens(listing.specs[index])}"  # pragma: no cover - defensive


async def _check(rules: Sequence[tuple[str, Rule]], cache: RuleCache) -> list[CheckResult]:
    """Check each rule against one listing of its chain (shared through the cache)."""
    results = []
    for text, rule in rules:
        listing = await cache.listing(rule.proto, rule.table, rule.chain)
        results.append(CheckResult(text, rule, _printed_line(listing, rule)))
    return results


def cmd_check(args: argparse.Namespace) -> int:
    """``aioiptables check RULE...``: whether each rule is in its chain, by
    meaning. Exit 0 if all are, 1 if any is missing, 2 or 3 on errors."""

    def run(output: Output) -> int:
        default = _default_proto(args)
        # Every rule is read before any process runs.
        rules = [(text, _read_rule(args, text).rule(default)) for text in args.rules]
        _require_netns(args.netns)
        clients = _clients(args, [rule.proto for _, rule in rules])
        results = anyio.run(_check, rules, RuleCache(*clients.values()))
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
        processes = sum(client.calls for client in clients.values())
        output.summary(f"{found} of {len(results)} found; {plural(processes, 'process')}")
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
        text = _read_rule(args, args.rule)
        proto = text.proto or _default_proto(args)
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


def _changes(plans: Sequence[TablePlan]) -> list[Change]:
    """Every line of the plans' payloads, as changes."""
    return [Change(p.proto, p.table, op.kind, op.line()) for p in plans for op in p.ops]


def _read_file(args: argparse.Namespace) -> files.RuleSetFile:
    """The rule-set file of diff and apply (``-``: standard input)."""
    proto, fmt = _default_proto(args), cast("files.Format", args.format)
    try:
        if args.file == "-":
            return files.reads(sys.stdin.read(), path="<stdin>", proto=proto, format=fmt)
        return files.read(args.file, proto=proto, format=fmt)
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError("cannot read standard input: it is not UTF-8 text") from None


def _controller(args: argparse.Namespace, ruleset: RuleSet) -> Controller:
    """A controller with a client for each protocol the rule set uses (the
    default one for an empty set)."""
    clients = _clients(args, {item.proto for item in ruleset} or {_default_proto(args)})
    controller = Controller(clients.get(Protocol.IPV4), clients.get(Protocol.IPV6), owner=args.owner)
    _require_netns(args.netns)
    return controller


_CHANGE_HEADER = ("proto", "table", "change", "line")


def _report_changes(
    output: Output, changes: list[Change], summary: str, processes: int, extra: dict[str, object]
) -> None:
    """The rows, the summary line and the JSON document of diff and apply."""
    output.rows(_CHANGE_HEADER, [change.row() for change in changes])
    if changes:
        output.summary(f"{summary}; {plural(processes, 'process')}")
    else:
        output.summary(f"nothing to change; {plural(processes, 'process')}")
    output.document(
        {
            "changed": bool(changes),
            "changes": [change.as_json() for change in changes],
            **extra,
            "processes": processes,
        }
    )


def cmd_diff(args: argparse.Namespace) -> int:
    """``aioiptables diff FILE``: the changes apply would make. Exit 0 if none, 1 if some."""

    def run(output: Output) -> int:
        ruleset = _read_file(args).ruleset
        controller = _controller(args, ruleset)
        # Read and planned exactly as a reconcile would, and nothing written.
        plans = anyio.run(controller.preview, ruleset)
        changes = _changes(plans)
        payloads = [{"proto": p.proto.value, "table": p.table, "payload": p.payload} for p in plans]
        summary = f"{plural(len(changes), 'change')} in {plural(len(plans), 'table')}"
        _report_changes(output, changes, summary, controller.calls, {"payloads": payloads})
        return EXIT_DIFFERS if changes else EXIT_OK

    return _guarded(args, run)


def cmd_apply(args: argparse.Namespace) -> int:
    """``aioiptables apply FILE``: make the tables hold the rule set. Exit 0 on success."""

    def run(output: Output) -> int:
        read = _read_file(args)
        controller = _controller(args, read.ruleset)
        refused: tuple[RefusedRule, ...] = ()
        try:
            # One read and one atomic write per table.
            anyio.run(controller.set, read.ruleset)
        except RulesRefusedError as exc:
            refused = exc.refused  # every other rule was written: report both
        written = controller.last_plans
        changes = _changes(written)
        summary = f"applied {plural(len(changes), 'change')} in {plural(len(written), 'write')}"
        lines = [f"{read.where(r.rule)}: {r.rule}: {r.message}" for r in refused]
        extra: dict[str, object] = {"writes": len(written), "refused": lines}
        _report_changes(output, changes, summary, controller.calls, extra)
        for line in lines:
            print(f"aioiptables apply: refused: {line}", file=output.err)
        return EXIT_IPTABLES if refused else EXIT_OK

    return _guarded(args, run)
