"""Reading iptables' stderr: "does not exist", "already exists", "resource problem"."""

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
