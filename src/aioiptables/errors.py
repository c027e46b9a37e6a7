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
    "RulesRefusedError",
]

# Exit status iptables uses for "resource problem": the xtables lock is held,
# the kernel refused (EBUSY, ENOMEM). Never a sign that something is missing.
RESOURCE_EXIT_STATUS = 4

# Fragments of stderr meaning "the chain, rule or target does not exist", as
# printed by iptables-nft and iptables-legacy from 1.6 to 1.8.10.
# iptables-nft-restore names the line the kernel refused ("line 6:
# RULE_APPEND failed (Too many links)") and exits 4, as for a held lock:
# a refusal, which trying again cannot change.
_REFUSED_LINE = re.compile(r"^line \d+: \S+ failed", re.MULTILINE)
_NOT_EXIST_MARKERS = (
    "does not exist",
    "No chain/target/match by that name",
    "does a matching rule exist in that chain",
    "' is incompatible, use 'nft' tool",  # "chain `X' in table `T' is incompatible"
    "Incompatible with this kernel",
    "Couldn't load target",
)

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

    Example:
        >>> err = IPTablesError(["iptables", "-S", "X"], 1,
        ...     "iptables: No chain/target/match by that name.")
        >>> err.is_not_exist
        True
    """

    def __init__(self, argv: Sequence[str], exit_status: int, stderr: str) -> None:
        self.argv: tuple[str, ...] = tuple(argv)
        self.exit_status = exit_status
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(self.argv)}: exit status {exit_status}: {self.stderr or '(no output)'}")

    @property
    def is_not_exist(self) -> bool:
        """True when the chain, rule or target named does not exist.

        Exit status 4 (lock held, resource problem) is never "not exist", so a
        busy system is not mistaken for a missing rule.
        """
        if self.exit_status in (0, RESOURCE_EXIT_STATUS):
            return False  # 0: output we refused although iptables did not fail
        if "Table `" in self.stderr:
            return False  # a whole table iptables cannot show: not a missing chain
        return any(marker in self.stderr for marker in _NOT_EXIST_MARKERS)

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

    @classmethod
    def from_result(cls, argv: Sequence[str], exit_status: int, stderr: str) -> IPTablesError:
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
            return IPTablesPermissionError(argv, exit_status, stderr)
        return cls(argv, exit_status, stderr)


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

    def __init__(self, argv: Sequence[str], exit_status: int, stderr: str) -> None:
        IPTablesError.__init__(self, argv, exit_status, stderr)
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
