"""aioiptables: keep Linux iptables and ip6tables rules in a desired state, asynchronously.

Works under asyncio and trio (through anyio), runs the real iptables binaries
as subprocesses, and counts every process it spawns.

Start with :class:`Client` for single commands and :class:`Controller` to keep
a :class:`RuleSet` in place; README.md has a quick start for each.
"""

from . import files
from .cache import RuleCache
from .client import Binaries, Client, IPTablesVersion
from .controller import Controller
from .errors import (
    InvalidRuleError,
    IPTablesError,
    IPTablesNotFoundError,
    IPTablesPermissionError,
    IPTablesTimeoutError,
    RefusedRule,
    RuleSetFileError,
    RulesRefusedError,
)
from .events import Change, EventsLostError, Generation, Watcher
from .fake import FakeClient, FakeRunner
from .model import Chain, Protocol, Rule, RuleSet
from .parse import Canonical, ChainListing, TableSnapshot, analyze, canonicalize, check_rule, parse_save
from .plan import TablePlan, plan
from .runner import Completed, ProcessRunner, Runner

__all__ = [
    "Binaries",
    "Canonical",
    "Chain",
    "Change",
    "ChainListing",
    "Client",
    "Completed",
    "Controller",
    "EventsLostError",
    "FakeClient",
    "FakeRunner",
    "Generation",
    "IPTablesError",
    "IPTablesNotFoundError",
    "IPTablesPermissionError",
    "IPTablesTimeoutError",
    "IPTablesVersion",
    "InvalidRuleError",
    "ProcessRunner",
    "RefusedRule",
    "Protocol",
    "Rule",
    "RuleCache",
    "RuleSet",
    "RuleSetFileError",
    "RulesRefusedError",
    "Runner",
    "TablePlan",
    "TableSnapshot",
    "Watcher",
    "analyze",
    "canonicalize",
    "check_rule",
    "files",
    "parse_save",
    "plan",
]

__version__ = "0.1.0"
