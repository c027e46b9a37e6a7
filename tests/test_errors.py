"""Reading iptables' stderr: "does not exist", "already exists", "resource problem",
"incompatible", and where and why a restore was refused.

The texts are what iptables 1.8.7, 1.8.9, 1.8.11 and 1.8.13 print, word for
word (tests/integration/test_versions.py checks them against the real ones).
"""

from __future__ import annotations

import pytest

from aioiptables.errors import (
    InvalidRuleError,
    IPTablesError,
    IPTablesNotFoundError,
    IPTablesTimeoutError,
)

ARGV = ("iptables", "-w", "5", "-t", "filter", "-S", "NOPE")


@pytest.mark.parametrize(
    ("stderr", "exit_status", "not_exist", "resource", "already"),
    [
        pytest.param(
            "iptables v1.8.9 (nf_tables): chain `NOPE' in table `filter' is incompatible, use 'nft' tool.",
            1,
            True,
            False,
            False,
            id="nft-list-missing-chain-is-not-exist",
        ),
        pytest.param(
            "iptables: No chain/target/match by that name.",
            1,
            True,
            False,
            False,
            id="legacy-missing-chain-is-not-exist",
        ),
        pytest.param(
            "iptables: Bad rule (does a matching rule exist in that chain?).",
            1,
            True,
            False,
            False,
            id="check-missing-rule-is-not-exist",
        ),
        pytest.param(
            "iptables v1.8.9 (nf_tables): Chain 'Y' does not exist",
            2,
            True,
            False,
            False,
            id="nft-delete-missing-jump-target-is-not-exist",
        ),
        pytest.param(
            "iptables v1.8.9 (legacy): Couldn't load target `Y':No such file or directory",
            2,
            True,
            False,
            False,
            id="legacy-missing-jump-target-is-not-exist",
        ),
        pytest.param(
            "iptables v1.8.10 (nf_tables): Incompatible with this kernel",
            1,
            True,
            False,
            False,
            id="nft-1.8.10-incompatible-is-not-exist",
        ),
        pytest.param(
            "Another app is currently holding the xtables lock. Stopped waiting after 5s.",
            4,
            False,
            True,
            False,
            id="lock-held-is-resource-problem-not-not-exist",
        ),
        pytest.param(
            "iptables v1.8.9 (nf_tables):  CHAIN_DEL failed (Device or resource busy): chain X",
            4,
            False,
            True,
            False,
            id="nft-busy-is-resource-problem",
        ),
        pytest.param(
            "iptables: No chain/target/match by that name.",
            4,
            False,
            True,
            False,
            id="exit-4-is-never-not-exist-whatever-the-text",
        ),
        pytest.param(
            "iptables: Chain already exists.",
            1,
            False,
            False,
            True,
            id="chain-already-exists",
        ),
        pytest.param(
            "iptables: File exists.",
            1,
            False,
            False,
            True,
            id="file-exists-is-already-exists",
        ),
        pytest.param(
            'iptables v1.8.9 (nf_tables): unknown option "--bogus"',
            2,
            False,
            False,
            False,
            id="bad-option-is-none-of-them",
        ),
        pytest.param("", 1, False, False, False, id="no-output-is-none-of-them"),
    ],
)
def test_classification_of_real_stderr(
    stderr: str, exit_status: int, not_exist: bool, resource: bool, already: bool
) -> None:
    error = IPTablesError(ARGV, exit_status, stderr + "\n")
    assert error.is_not_exist is not_exist
    assert error.is_resource_problem is resource
    assert error.is_already_exists is already


def test_error_keeps_argv_exit_status_and_stripped_stderr_and_names_them() -> None:
    error = IPTablesError(list(ARGV), 1, "  iptables: No chain/target/match by that name.\n")
    assert error.argv == ARGV
    assert error.exit_status == 1
    assert error.stderr == "iptables: No chain/target/match by that name."
    assert str(error) == (
        "iptables -w 5 -t filter -S NOPE: exit status 1: iptables: No chain/target/match by that name."
    )


def test_error_message_says_when_there_was_no_output() -> None:
    assert str(IPTablesError(["iptables", "-S"], 3, "  \n")).endswith("exit status 3: (no output)")


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("iptables not found: install iptables", id="plain-message"),
        pytest.param("no such network namespace: /run/netns/x does not exist", id="message-with-marker"),
    ],
)
def test_not_found_error_is_never_not_exist(message: str) -> None:
    error = IPTablesNotFoundError(["iptables", "-S"], message)
    assert error.is_not_exist is False
    assert error.is_resource_problem is False
    assert isinstance(error, FileNotFoundError)
    assert isinstance(error, IPTablesError)
    assert error.exit_status == 127
    assert error.stderr == message


def test_timeout_error_is_a_timeout_and_never_not_exist() -> None:
    error = IPTablesTimeoutError(["iptables", "-C", "INPUT", "-j", "ACCEPT"], 2.5)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, IPTablesError)
    assert error.is_not_exist is False
    assert error.is_resource_problem is False
    assert error.timeout == 2.5
    assert "killed after 2.5s" in str(error)


def test_invalid_rule_error_is_a_value_error_naming_the_value() -> None:
    error = InvalidRuleError("chain", "bad name", "must not hold whitespace")
    assert isinstance(error, ValueError)
    assert error.what == "chain"
    assert error.value == "bad name"
    assert str(error) == "invalid chain 'bad name': must not hold whitespace"


@pytest.mark.parametrize(
    ("stderr", "status"),
    [
        (
            "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
            4,
        ),
        ("Fatal: can't open lock file /run/xtables.lock: Permission denied", 4),
        ("nsenter: reassociate to namespace 'ns/net' failed: Operation not permitted", 1),
        ("nsenter: cannot open /run/netns/x: Permission denied", 1),
    ],
    ids=["nft not root", "legacy lock file", "nsenter refused", "nsenter cannot open"],
)
def test_permission_problems_are_their_own_error_never_retried_nor_missing(stderr: str, status: int) -> None:
    from aioiptables import IPTablesPermissionError

    error = IPTablesError.from_result(["iptables", "-S"], status, stderr)
    assert isinstance(error, IPTablesPermissionError) and isinstance(error, PermissionError)
    assert error.is_permission_problem
    assert not error.is_resource_problem and not error.is_not_exist
    assert "run as root" in str(error)


# What iptables-nft prints for "-S X" when X is missing and when X holds a rule
# made by nft ("nft add rule ip filter X quota 10 mbytes"), and for "-S" of a
# table holding such a chain; as printed by each version. 1.8.7 to 1.8.10 say
# the same of a missing chain, unless the build took 1.8.11's fix (Ubuntu
# 24.04's 1.8.10 did); 1.8.6 was not run here.
CHAIN_WORDS = "chain `X' in table `filter' is incompatible, use 'nft' tool."
TABLE_WORDS = "table `filter' is incompatible, use 'nft' tool."


@pytest.mark.parametrize(
    ("stderr", "exit_status", "not_exist", "incompatible", "may_be"),
    [
        pytest.param(f"iptables v1.8.6 (nf_tables): {CHAIN_WORDS}", 1, False, True, False, id="1.8.6-chain-holds-nft-rules"),
        pytest.param(f"iptables v1.8.7 (nf_tables): {CHAIN_WORDS}", 1, True, False, True, id="1.8.7-chain-missing-or-nft"),
        pytest.param(f"iptables v1.8.9 (nf_tables): {CHAIN_WORDS}", 1, True, False, True, id="1.8.9-chain-missing-or-nft"),
        pytest.param(f"iptables v1.8.10 (nf_tables): {CHAIN_WORDS}", 1, True, False, True, id="1.8.10-chain-missing-or-nft"),
        pytest.param(f"iptables v1.8.11 (nf_tables): {CHAIN_WORDS}", 1, False, True, False, id="1.8.11-chain-holds-nft-rules"),
        pytest.param(f"ip6tables v1.8.13 (nf_tables): {CHAIN_WORDS}", 1, False, True, False, id="1.8.13-v6-chain-holds-nft-rules"),
        pytest.param("iptables: No chain/target/match by that name.", 1, True, False, False, id="1.8.11-chain-missing"),
        pytest.param(
            "# Warning: iptables-legacy tables present, use iptables-legacy to see them\n"
            f"iptables v1.8.11 (nf_tables): {CHAIN_WORDS}",
            1, False, True, False,
            id="1.8.11-after-the-legacy-tables-warning",
        ),
        pytest.param(CHAIN_WORDS, 1, False, True, False, id="without-a-version-taken-at-its-word"),
        pytest.param(f"iptables v1.8.9 (nf_tables): {TABLE_WORDS}", 1, False, True, False, id="1.8.9-table"),
        pytest.param(f"iptables v1.8.13 (nf_tables): {TABLE_WORDS}", 1, False, True, False, id="1.8.13-table"),
        pytest.param("# Table `filter' is incompatible, use 'nft' tool.", 0, False, True, False, id="save-header"),
    ],
)  # fmt: skip
def test_incompatible_chains_and_tables_by_version(
    stderr: str, exit_status: int, not_exist: bool, incompatible: bool, may_be: bool
) -> None:
    error = IPTablesError(ARGV, exit_status, stderr + "\n")
    assert (error.is_not_exist, error.is_incompatible, error.may_be_incompatible) == (
        not_exist,
        incompatible,
        may_be,
    )
    assert not error.is_resource_problem


# iptables-restore's refusals, as each version prints them, for the payload
# they were given (line 1 is "*filter").
PAYLOAD = "*filter\n-A HAVE -s 1.1.1.1 -j ACCEPT\n-A NOPE -j ACCEPT\nCOMMIT\n"
LOOP = "*filter\n:L1 - [0:0]\n:L2 - [0:0]\n-A INPUT -j L1\n-A L1 -j L2\n-A L2 -j L1\nCOMMIT\n"


@pytest.mark.parametrize(
    ("stderr", "exit_status", "payload", "line", "at_commit", "reason", "unexplained"),
    [
        pytest.param(
            "iptables-nft-restore: line 3 failed: No chain/target/match by that name.",
            1, PAYLOAD, 3, False, "No chain/target/match by that name.", False,
            id="nft-1.8.9-names-the-line-and-why",
        ),
        pytest.param(
            "iptables-nft-restore: line 4 failed",
            1, PAYLOAD, 4, True, None, True,
            id="nft-1.8.7-names-only-commit",
        ),
        pytest.param(
            "iptables-restore: line 3 failed",
            1, PAYLOAD, 3, False, None, False,
            id="legacy-names-the-line-not-why",
        ),
        pytest.param(
            "iptables-restore: line 7 failed",
            1, LOOP, 7, True, None, True,
            id="legacy-loop-names-only-commit",
        ),
        pytest.param(
            "iptables-nft-restore v1.8.9 (nf_tables): \nline 6: RULE_APPEND failed (Too many links): rule in chain L2",
            4, LOOP, 6, False, "RULE_APPEND failed (Too many links): rule in chain L2", False,
            id="nft-1.8.9-kernel-refusal",
        ),
        pytest.param(
            "iptables-nft-restore v1.8.7 (nf_tables): \nline 7: RULE_APPEND failed (Too many links): rule in chain L2",
            4, LOOP, 7, True, "RULE_APPEND failed (Too many links): rule in chain L2", False,
            id="nft-1.8.7-kernel-refusal-at-commit-with-a-reason",
        ),
        pytest.param(
            "iptables-nft-restore v1.8.11 (nf_tables): Chain 'NOPE' does not exist\n"
            "Error occurred at line: 3\n"
            "Try `iptables-nft-restore -h' or 'iptables-nft-restore --help' for more information.",
            2, "*filter\n:HAVE - [0:0]\n-A INPUT -j NOPE\nCOMMIT\n", 3, False, "Chain 'NOPE' does not exist", False,
            id="parse-error-names-its-line",
        ),
        pytest.param(
            "iptables-restore v1.8.9 (legacy): Can't set policy `FOO' on `INPUT' line 2: Bad policy name",
            1, "*filter\n:INPUT FOO [0:0]\nCOMMIT\n", 2, False,
            "Can't set policy `FOO' on `INPUT' line 2: Bad policy name", False,
            id="legacy-bad-policy",
        ),
        pytest.param(
            "iptables-nft-restore: line 4 failed",
            1, None, 4, False, None, False,
            id="without-the-payload-commit-cannot-be-told",
        ),
        pytest.param(
            "iptables v1.8.9 (nf_tables): Chain 'Y' does not exist",
            2, None, None, False, "Chain 'Y' does not exist", False,
            id="not-a-restore",
        ),
    ],
)  # fmt: skip
def test_where_and_why_a_restore_was_refused(
    stderr: str,
    exit_status: int,
    payload: str | None,
    line: int | None,
    at_commit: bool,
    reason: str | None,
    unexplained: bool,
) -> None:
    error = IPTablesError.from_result(
        ["iptables-nft-restore", "--noflush"], exit_status, stderr + "\n", payload=payload
    )
    assert error.payload == payload
    assert (error.line, error.at_commit, error.reason) == (line, at_commit, reason)
    assert error.is_unexplained_refusal is unexplained
    assert not error.is_resource_problem, "a refusal is never retried"
