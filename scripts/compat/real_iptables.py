"""pytest plugin: keep only the tests that run real iptables (the compat matrix).

Loaded by scripts/compat/run-tests as ``-p real_iptables`` (with this directory
on PYTHONPATH). The fake-only and pure tests do not depend on which iptables
userspace is installed, so the matrix does not run them three more times.

A test runs real iptables exactly when it needs a network namespace to run
it in (conftest's rule: every real-iptables test gets a fresh one), so a test
is kept when any of these holds:

1. it is marked ``iptables`` (tests that make their own namespaces: the CLI,
   the demo, the agent, ...);
2. ``netns`` is in its fixture closure (asked for by the test or by one of
   its fixtures' signatures);
3. it is parametrized through a fixture that takes ``netns`` at run time
   (``request.getfixturevalue("netns")``, invisible to the closure) with a
   value other than ``"fake"``: conftest's ``world`` and test_never_harm's
   ``real``. A fixture of that kind added later must be named in
   ``DYNAMIC_NETNS_FIXTURES``;
4. it is one of ``UNDECLARED``: tests that take a namespace, or run an
   iptables program, without a fixture above saying so. Today that is one
   test, which takes ``netns`` at run time for one of its parameters.

``scripts/compat/check-selection`` proves the rules complete: it runs the
deselected tests with iptables (and nft, ipset, ip, nsenter) replaced by
programs that record which test ran them, and fails on any record.

Everything else is deselected (reported by pytest as "deselected"). Set
``AIOIPTABLES_COMPAT_SELECT=invert`` to keep the complement instead (used by
check-selection), or ``=all`` to keep everything.

With ``AIOIPTABLES_COMPAT_RESULTS=PREFIX`` the plugin also writes, at the end
of the session, ``PREFIX-failed.txt`` (every node id that failed or errored,
one a line, sorted) and ``PREFIX-counts.txt`` (``passed=N failed=N errors=N
skipped=N deselected=N seconds=N``), which scripts/compat/matrix reads; the
node ids are exact, not cut from the terminal summary.
"""

from __future__ import annotations

import os
import time

import pytest

# Fixtures that call request.getfixturevalue("netns") for every parameter but "fake".
DYNAMIC_NETNS_FIXTURES = ("world", "real")

# Test functions (node ids without parameters) that take a namespace or run
# iptables without a fixture above saying so (check-selection finds them).
UNDECLARED = frozenset(
    {
        # request.getfixturevalue("netns") for its "in a namespace" parameter.
        "tests/test_client.py::test_missing_binary_names_what_to_install",
    }
)


def runs_real_iptables(item: pytest.Item) -> bool:
    if item.get_closest_marker("iptables") is not None:
        return True
    if "netns" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        for name in DYNAMIC_NETNS_FIXTURES:
            if name in callspec.params and callspec.params[name] != "fake":
                return True
    return item.nodeid.split("[", 1)[0] in UNDECLARED


def pytest_report_header(config: pytest.Config) -> str:
    mode = os.environ.get("AIOIPTABLES_COMPAT_SELECT", "real")
    return f"real_iptables plugin: selection={mode} (scripts/compat/real_iptables.py)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = os.environ.get("AIOIPTABLES_COMPAT_SELECT", "real")
    if mode == "all":
        return
    if mode not in ("real", "invert"):
        raise pytest.UsageError(f"AIOIPTABLES_COMPAT_SELECT must be real, invert or all, not {mode!r}")
    keep_real = mode == "real"
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (kept if runs_real_iptables(item) == keep_real else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class _Results:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.start = time.monotonic()
        self.passed: set[str] = set()
        self.failed: set[str] = set()
        self.errors: set[str] = set()
        self.skipped: set[str] = set()
        self.deselected = 0

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:  # a module that cannot be collected: its tests never ran
            self.errors.add(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            (self.failed if report.when == "call" else self.errors).add(report.nodeid)
        elif report.skipped:
            self.skipped.add(report.nodeid)
        elif report.passed and report.when == "call":
            self.passed.add(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        bad = self.failed | self.errors
        passed = self.passed - bad
        with open(f"{self.prefix}-failed.txt", "w") as out:
            out.writelines(f"{nodeid}\n" for nodeid in sorted(bad))
        with open(f"{self.prefix}-counts.txt", "w") as out:
            out.write(
                f"passed={len(passed)} failed={len(self.failed)} errors={len(self.errors - self.failed)} "
                f"skipped={len(self.skipped - bad)} deselected={self.deselected} "
                f"seconds={time.monotonic() - self.start:.0f}\n"
            )


def pytest_configure(config: pytest.Config) -> None:
    prefix = os.environ.get("AIOIPTABLES_COMPAT_RESULTS")
    if prefix:
        config.pluginmanager.register(_Results(prefix), "real_iptables_results")
