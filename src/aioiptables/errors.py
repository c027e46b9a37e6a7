"""The error types callers act on.

This module sits below everything else: it imports nothing from the package, so
the model can raise :class:`InvalidRuleError` and the client can raise
:class:`IPTablesError` without any cycle.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model imports this module; a type-only import makes no cycle
    from .model import Rule

__all__ = [
    "IPTablesError",
    "IPTablesNotFoundError",
    "IPTablesPermissionError",
    "IPTablesTimeoutError",
    "InvalidRuleError",
    "RefusedRule",
    "RuleSetFileError",
    "RulesRefusedError",
]

# Exit status iptables uses for "resource problem": the xtables lock is held,
# the kernel refused (EBUSY, ENOMEM). Never a sign that something is missing.
RESOURCE_EXIT_STATUS = 4

# Fragments of stderr meaning "the chain, rule or target does not exist", as
# printed by iptables-nft and iptables-legacy from 1.6 to 1.8.13 (for "-S" of
# a missing chain, iptables-nft 1.8.7 to 1.8.10 print _CHAIN_INCOMPATIBLE's
# words instead).
# iptables-nft-restore names the line the kernel refused ("line 6:
# RULE_APPEND failed (Too many links)") and exits 4, as for a held lock:
# a refusal, which trying again cannot change.
_REFUSED_LINE = re.compile(r"^line \d+: \S+ failed", re.MULTILINE)
_NOT_EXIST_MARKERS = (
    "does not exist",
    "No chain/target/match by that name",
    "does a matching rule exist in that chain",
    "Incompatible with this kernel",
    "Couldn't load target",
)

# iptables-nft refuses to list a chain that holds rules it cannot show (made
# by nft, or by a newer iptables): "ip6tables v1.8.11 (nf_tables): chain `X'
# in table `filter' is incompatible, use 'nft' tool." 1.8.7 to 1.8.10 say
# exactly that for a chain that does not exist too (measured on 1.8.7 and
# 1.8.9; cilium/cilium#21096, moby/moby#51642), so there the words cannot
# tell the two apart and read, as they mostly mean, "does not exist". Before
# and since, a missing chain is "No chain/target/match by that name." (1.8.11:
# iptables commit 82ccfb48) and these words mean what they say. The version
# comes from the message itself: from the process that printed it.
_CHAIN_INCOMPATIBLE = re.compile(
    r"^(?:\S*tables\S* v(?P<version>\d+(?:\.\d+)*)\S* \([^)]*\): )?"
    r"chain `.*' in table `.*' is incompatible, use 'nft' tool",
    re.MULTILINE,
)
_MISSING_CHAIN_READS_INCOMPATIBLE = ((1, 8, 7), (1, 8, 11))  # from, up to (not included)
# A whole table iptables-nft cannot show: "table `filter' is incompatible"
# (-S, -L) or "# Table `filter' is incompatible" (iptables-nft-save, exit 0).
# Never a missing chain, on any version.
_TABLE_INCOMPATIBLE = re.compile(
    r"^(?:# |\S*tables\S* v\S+ \([^)]*\): )?[Tt]able `[^']*' is incompatible, use 'nft' tool", re.MULTILINE
)

# Where iptables-restore says which line of its input it refused:
#   "Error occurred at line: 3"                           a line it cannot parse;
#   "iptables-restore: line 3 failed"                     legacy, no reason given;
#   "iptables-nft-restore: line 3 failed: Bad rule (...)" nft 1.8.9 and later;
#   "iptables-nft-restore: line 4 failed"                 nft 1.8.7: any refusal, at COMMIT;
#   "line 3: CHAIN_DEL failed (Device or resource busy)"  nft, refused by the kernel;
#   "Can't set policy `FOO' on `INPUT' line 2: Bad policy name"  legacy.
_RESTORE_LINE = re.compile(r"(?:Error occurred at line: |\bline )(\d+)")
# What is not iptables' reason in its stderr: the program and version
# ("iptables-restore v1.8.9 (legacy): "), a bare "line N failed", the line
# number, the usage hint and iptables-nft's warning about legacy tables.
_PROGRAM_PREFIX = re.compile(r"^\S*tables\S* v[\d.]+\S* \([^)]*\):\s*")
_BARE_FAILED_LINE = re.compile(r"^(?:\S+: )?line \d+ failed:?\s*")
_NOT_A_REASON = ("Error occurred at line", "Try `", "# Warning: ")
_KERNEL_LINE = re.compile(r"^line \d+:\s*")

_ALREADY_EXISTS_MARKERS = ("Chain already exists", "File exists")

_PERMISSION_HINT = (
    "permission denied: run as root (iptables needs CAP_NET_ADMIN; "
    "entering a network namespace needs CAP_SYS_ADMIN)"
)


def _is_permission_problem(stderr: str) -> bool:
    """Whether stderr says the process lacked privilege, as printed by
    iptables 1.8 (nft and legacy, every tool) and by nsenter."""
    if "you must be root" in stderr:
        # "Permission denied (you must be root)": iptables, -save, -restore.
        return True
    if "lock file" in stderr and "Permission denied" in stderr:
        # legacy: "Fatal: can't open lock file /run/xtables.lock: Permission denied" (status 4).
        return True
    # nsenter: "reassociate to namespace 'ns/net' failed: Operation not permitted"
    # or "cannot open /run/netns/NAME: Permission denied".
    return "nsenter: " in stderr and ("Operation not permitted" in stderr or "Permission denied" in stderr)


class IPTablesError(Exception):
    """An iptables process failed.

    Attributes:
        argv: the command that ran (without any namespace prefix).
        exit_status: its exit status.
        stderr: what it printed on standard error, stripped.
        payload: what it read on standard input (an iptables-restore
            payload), or None.

    Example:
        >>> err = IPTablesError(["iptables", "-S", "X"], 1,
        ...     "iptables: No chain/target/match by that name.")
        >>> err.is_not_exist
        True
    """

    def __init__(
        self, argv: Sequence[str], exit_status: int, stderr: str, *, payload: str | None = None
    ) -> None:
        self.argv: tuple[str, ...] = tuple(argv)
        self.exit_status = exit_status
        self.stderr = stderr.strip()
        self.payload = payload
        super().__init__(f"{' '.join(self.argv)}: exit status {exit_status}: {self.stderr or '(no output)'}")

    @property
    def is_not_exist(self) -> bool:
        """True when the chain, rule or target named does not exist.

        Exit status 4 (lock held, resource problem) is never "not exist", so a
        busy system is not mistaken for a missing rule; nor is a chain or
        table iptables-nft cannot show (:attr:`is_incompatible`).

        iptables-nft 1.8.7 to 1.8.10 list a chain that does not exist as
        "chain `X' in table `T' is incompatible, use 'nft' tool", the words
        they also use for a chain holding rules made by ``nft``: from those
        versions, the words read as "does not exist". From 1.8.11 on (and
        before 1.8.7), which say "No chain/target/match by that name." of a
        missing chain, they read as :attr:`is_incompatible`. The version is
        read from the message.
        """
        if self.exit_status in (0, RESOURCE_EXIT_STATUS):
            return False  # 0: output we refused although iptables did not fail
        if _TABLE_INCOMPATIBLE.search(self.stderr):
            return False  # a whole table iptables cannot show: not a missing chain
        chain = _CHAIN_INCOMPATIBLE.search(self.stderr)
        if chain is not None:
            return not _incompatible_for_sure(chain)
        return any(marker in self.stderr for marker in _NOT_EXIST_MARKERS)

    @property
    def is_incompatible(self) -> bool:
        """True when iptables-nft would not show a chain or table because it
        holds rules iptables cannot represent, made by ``nft`` itself (or by a
        newer iptables).

        Such a chain exists and is someone else's: never read it as missing
        (declaring it in a restore payload, ``:X - [0:0]``, would flush it).
        For a chain this is known except from iptables 1.8.7 to 1.8.10, which
        print the same words for a chain that does not exist: there they read
        as :attr:`is_not_exist`, and :attr:`may_be_incompatible` says so. A whole table that cannot be
        shown (``-S`` without a chain, or :meth:`Client.save`) is known on
        every version.

        Example:
            >>> words = "chain `X' in table `filter' is incompatible, use 'nft' tool."
            >>> new = IPTablesError(["iptables", "-S", "X"], 1, f"iptables v1.8.11 (nf_tables): {words}")
            >>> old = IPTablesError(["iptables", "-S", "X"], 1, f"iptables v1.8.9 (nf_tables): {words}")
            >>> new.is_incompatible, new.is_not_exist, new.may_be_incompatible
            (True, False, False)
            >>> old.is_incompatible, old.is_not_exist, old.may_be_incompatible
            (False, True, True)
        """
        if _TABLE_INCOMPATIBLE.search(self.stderr):
            return True
        chain = _CHAIN_INCOMPATIBLE.search(self.stderr)
        return chain is not None and _incompatible_for_sure(chain)

    @property
    def may_be_incompatible(self) -> bool:
        """True when this reads as :attr:`is_not_exist` from words that may
        also mean :attr:`is_incompatible`: "chain `X' in table `T' is
        incompatible", printed by iptables-nft 1.8.7 to 1.8.10.

        Those versions print it for a chain that does not exist, and for one
        holding rules made by ``nft``; a build that took 1.8.11's fix (Ubuntu
        24.04's 1.8.10) prints it only for the latter. So never declare such
        a chain (``:X - [0:0]`` flushes a chain that exists): create it with
        ``-N X``, which iptables refuses for a chain that exists, as the
        controller does. Listing the whole table also tells: it fails with
        :attr:`is_incompatible` when any chain holds rules made by ``nft``.
        """
        if self.exit_status in (0, RESOURCE_EXIT_STATUS) or _TABLE_INCOMPATIBLE.search(self.stderr):
            return False
        chain = _CHAIN_INCOMPATIBLE.search(self.stderr)
        return chain is not None and not _incompatible_for_sure(chain)

    @property
    def is_already_exists(self) -> bool:
        """True when a chain being created exists already."""
        return any(marker in self.stderr for marker in _ALREADY_EXISTS_MARKERS)

    @property
    def is_resource_problem(self) -> bool:
        """True for exit status 4: the xtables lock is held or the kernel is busy.

        iptables-nft also exits 4 when it lacks privilege; that is a permission
        problem, which retrying cannot fix, so it is not a resource problem;
        nor is a line of a restore payload the kernel refused.
        """
        return (
            self.exit_status == RESOURCE_EXIT_STATUS
            and not self.is_permission_problem
            and _REFUSED_LINE.search(self.stderr) is None
        )

    @property
    def is_permission_problem(self) -> bool:
        """True when the process lacked privilege (not root, no CAP_NET_ADMIN,
        or no right to enter the network namespace)."""
        return _is_permission_problem(self.stderr)

    # -- what a failed iptables-restore refused ------------------------------

    @property
    def line(self) -> int | None:
        """The line (1-based) of the restore payload iptables-restore named
        as failing, or None when it named none.

        It is the refused line itself, except when iptables only found out
        while committing the table: then it is that table's ``COMMIT`` line
        (:attr:`at_commit`).
        """
        found = _RESTORE_LINE.search(self.stderr)
        return int(found[1]) if found else None

    @property
    def at_commit(self) -> bool:
        """True when the line named is a ``COMMIT`` line of :attr:`payload`:
        the table's changes were refused as a whole when committed, and the
        line number points at none of them.

        iptables-legacy-restore does this for a loop of jumps; iptables-nft-restore
        1.8.7 for every refusal found at commit (a rule for a chain that is
        gone, a delete of a rule that is gone, an insert past the end, a chain
        still in use), where 1.8.9 and later name the refused line.
        """
        line = self.line
        if line is None or self.payload is None:
            return False
        lines = self.payload.split("\n")
        return 0 < line <= len(lines) and lines[line - 1].strip() == "COMMIT"

    @property
    def reason(self) -> str | None:
        """iptables' own words about what went wrong, without the program
        name, version, line number or usage hint; None when it gave none
        (``iptables-restore: line 3 failed``).

        Example:
            >>> IPTablesError(["iptables-nft-restore"], 1,
            ...     "iptables-nft-restore: line 3 failed: Bad rule (does a matching rule exist in that chain?).").reason
            'Bad rule (does a matching rule exist in that chain?).'
        """
        words = []
        for raw in self.stderr.split("\n"):
            line = _PROGRAM_PREFIX.sub("", raw.strip())
            if line.startswith(_NOT_A_REASON):
                continue
            line = _KERNEL_LINE.sub("", _BARE_FAILED_LINE.sub("", line))
            if line:
                words.append(line)
        return " ".join(words) or None

    @property
    def is_unexplained_refusal(self) -> bool:
        """True when iptables-restore refused a table's changes at its
        ``COMMIT`` line and said nothing more (``iptables-nft-restore: line 4
        failed``, from iptables-nft 1.8.7).

        The table is unchanged, and neither the refused line nor the reason
        can be known from the message: it blames no rule. What usually causes
        it is a read gone stale (a chain or rule deleted since): read the
        table again and compare each change with it, or write fewer changes
        to find the one refused.
        """
        return self.at_commit and self.reason is None

    @classmethod
    def from_result(
        cls, argv: Sequence[str], exit_status: int, stderr: str, *, payload: str | None = None
    ) -> IPTablesError:
        """The error for a process that failed: an
        :class:`IPTablesPermissionError` when it lacked privilege.

        Example:
            >>> err = IPTablesError.from_result(["iptables", "-S"], 4,
            ...     "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: "
            ...     "Permission denied (you must be root)")
            >>> type(err).__name__, err.is_resource_problem
            ('IPTablesPermissionError', False)
        """
        if _is_permission_problem(stderr):
            return IPTablesPermissionError(argv, exit_status, stderr, payload=payload)
        return cls(argv, exit_status, stderr, payload=payload)


def _incompatible_for_sure(found: re.Match[str]) -> bool:
    """Whether "chain `X' ... is incompatible" means just that: printed by an
    iptables that does not say so of a missing chain too (1.8.7 to 1.8.10).
    A message without its version (not as iptables prints it) is taken at
    its word: misread as missing, a chain holding someone's nft rules would
    be declared, and so flushed."""
    version = found["version"]
    if version is None:
        return True
    since, until = _MISSING_CHAIN_READS_INCOMPATIBLE
    return not since <= tuple(int(part) for part in version.split(".")) < until


class IPTablesNotFoundError(IPTablesError, FileNotFoundError):
    """The iptables binary (or nsenter, or the namespace) is missing.

    The message names what to install or create.
    """

    def __init__(self, argv: Sequence[str], message: str) -> None:
        IPTablesError.__init__(self, argv, 127, message)

    @property
    def is_not_exist(self) -> bool:
        # A missing program says nothing about rules; never read it as "no rule".
        return False


class IPTablesPermissionError(IPTablesError, PermissionError):
    """iptables or nsenter was refused for lack of privilege.

    The message says so and names what is needed (root, or CAP_NET_ADMIN and,
    to enter a network namespace, CAP_SYS_ADMIN); :attr:`stderr` keeps what
    the process printed. Never retried, never read as "does not exist".
    """

    def __init__(
        self, argv: Sequence[str], exit_status: int, stderr: str, *, payload: str | None = None
    ) -> None:
        IPTablesError.__init__(self, argv, exit_status, stderr, payload=payload)
        self.args = (f"{' '.join(self.argv)}: {_PERMISSION_HINT}: exit status {exit_status}: {self.stderr}",)

    @property
    def is_not_exist(self) -> bool:
        return False


class IPTablesTimeoutError(IPTablesError, TimeoutError):
    """An iptables process ran past the client's timeout; it was killed and reaped."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        self.timeout = timeout
        IPTablesError.__init__(self, argv, -9, f"killed after {timeout:g}s")

    @property
    def is_not_exist(self) -> bool:
        return False


class InvalidRuleError(ValueError):
    """A table, chain, spec token or position is not acceptable.

    Raised before any process runs. ``value`` holds the offending value.
    """

    def __init__(self, what: str, value: object, why: str) -> None:
        self.what = what
        self.value = value
        super().__init__(f"invalid {what} {value!r}: {why}")


class RuleSetFileError(InvalidRuleError):
    """A rule-set file that cannot be used, and where: it is neither TOML nor
    iptables-save text, an entry has a key it should not have or lacks one it
    needs, or a rule, chain or table in it is invalid.

    Raised by :mod:`aioiptables.files` before any process runs; an
    :class:`InvalidRuleError` like any other, so code that catches that
    catches this too.

    Attributes:
        path: the file, as given (``<string>`` for text that came from no file).
        line: the line at fault, counted from 1.
        reason: what is wrong there, without the place.

    Example:
        >>> err = RuleSetFileError("rules.toml", 3, "[[append]] #1: unknown key 'spek'")
        >>> str(err)
        "rules.toml:3: [[append]] #1: unknown key 'spek'"
        >>> err.path, err.line
        ('rules.toml', 3)
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        ValueError.__init__(self, f"{path}:{line}: {reason}")
        self.what = "rule set file"
        self.value = path
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class RefusedRule:
    """One rule iptables would not take, and why.

    ``message`` is iptables' own words (``Set nosuch doesn't exist.``, or
    ours when iptables took the rule but printed it in a form that could
    not be recognized).
    """

    rule: Rule
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


class RulesRefusedError(IPTablesError):
    """iptables refused some rules of a rule set; every other rule was written.

    Raised by :meth:`Controller.set` and :meth:`Controller.reconcile` (and
    sent on ``controller.errors`` by ``run()``) after the rest of the rule set
    is in place. The refused rules stay in the rule set and are tried again at
    every reconcile, so a rule waiting for an ipset or a chain someone else
    creates lands as soon as it can.

    Attributes:
        refused: each refused rule with iptables' message, in rule-set order.
    """

    def __init__(
        self, refused: Sequence[RefusedRule], argv: Sequence[str] = (), exit_status: int = 1
    ) -> None:
        self.refused: tuple[RefusedRule, ...] = tuple(refused)
        listed = "; ".join(str(r) for r in self.refused)
        IPTablesError.__init__(self, argv, exit_status, listed)
        count = len(self.refused)
        self.args = (f"iptables refused {count} rule{'s' if count != 1 else ''}: {listed}",)

    @property
    def is_not_exist(self) -> bool:
        return False
