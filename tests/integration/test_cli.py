"""``aioiptables check``, ``canon``, ``diff`` and ``apply`` on real iptables.

Most tests call :func:`aioiptables.cli.main` in-process and read what it
printed with ``capsys``; a few run ``python -m aioiptables`` as a user would.
Every command that runs iptables is given ``--netns`` with the test's own
namespace (the ``netns`` fixture), on both backends: none of them ever reads
or writes this machine's tables. Missing root, ``ip`` or iptables fail the
test; nothing is skipped.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aioiptables.cli import EXIT_DIFFERS, EXIT_IPTABLES, EXIT_OK, EXIT_USAGE, main

pytestmark = pytest.mark.iptables

TIMEOUT = 60


@dataclass
class Ran:
    """What one command did: its exit status and what it printed."""

    status: int
    out: str
    err: str

    @property
    def rows(self) -> list[list[str]]:
        """The tab-separated rows printed when stdout is not a terminal."""
        return [line.split("\t") for line in self.out.splitlines()]

    @property
    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.out)
        return document


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    """Run the command line in-process; return its exit status and output."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return Ran(status, captured.out, captured.err)


def where(netns: str, backend: str) -> tuple[str, ...]:
    """The options that keep a command inside the test's namespace."""
    return ("--netns", netns, "--backend", backend)


def iptables(netns: str, backend: str, *args: str, ipv6: bool = False) -> str:
    """Run iptables (or ip6tables) inside the test's namespace, behind the CLI's back."""
    program = f"{'ip6tables' if ipv6 else 'iptables'}-{backend}"
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", program, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    if done.returncode != 0:
        raise AssertionError(f"{program} {' '.join(args)} failed in {netns}: {done.stderr.strip()}")
    return done.stdout


def rules(netns: str, backend: str, table: str, *, ipv6: bool = False) -> list[str]:
    """Every chain declaration and rule of one table, as iptables -S prints them."""
    return iptables(netns, backend, "-t", table, "-S", ipv6=ipv6).splitlines()


# -- check ---------------------------------------------------------------------------------


def test_check_found_not_found_and_by_meaning(
    netns: str, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    iptables(netns, backend, "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT")
    iptables(netns, backend, "-t", "nat", "-N", "KILO-NAT")
    iptables(netns, backend, "-t", "nat", "-A", "KILO-NAT", "-s", "10.4.0.0/16", "-j", "MASQUERADE")
    printed = "-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT"

    found = cli(capsys, "check", *where(netns, backend), "-A INPUT -p tcp --dport 80 -j ACCEPT")
    assert (found.status, found.rows) == (EXIT_OK, [["found", "filter", printed]]), found
    assert found.err == "1 of 1 found; 1 process\n"

    # Written otherwise, same meaning: found, shown as iptables printed it.
    respelled = "--table filter --append INPUT --protocol 6 --destination-port http --jump ACCEPT"
    again = cli(capsys, "check", *where(netns, backend), respelled)
    assert (again.status, again.rows) == (EXIT_OK, [["found", "filter", printed]]), again

    # A table given as a bare word, and a netmask and long options for the same rule.
    nat = cli(
        capsys, "check", *where(netns, backend), "nat -A KILO-NAT --source 10.4.1.2/255.255.0.0 -j MASQUERADE"
    )
    assert nat.rows == [["found", "nat", "-A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE"]], nat

    missing = cli(capsys, "check", *where(netns, backend), "-A INPUT -p tcp --dport 81 -j ACCEPT")
    assert (missing.status, missing.rows) == (
        EXIT_DIFFERS,
        [["not found", "filter", "-A INPUT -p tcp --dport 81 -j ACCEPT"]],
    )


def test_check_several_rules_one_listing_per_chain(
    netns: str, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    iptables(netns, backend, "-A", "FORWARD", "-s", "10.4.0.0/16", "-j", "ACCEPT")
    iptables(netns, backend, "-A", "FORWARD", "-d", "10.4.0.0/16", "-j", "ACCEPT")
    checked = [
        "-A FORWARD -s 10.4.0.0/16 -j ACCEPT",
        "-A FORWARD --destination 10.4.0.0/16 --jump ACCEPT",
        "-A FORWARD -s 10.5.0.0/16 -j ACCEPT",
        "-t nat -A NO-SUCH-CHAIN -j RETURN",  # a missing chain holds no rules
    ]
    ran = cli(capsys, "check", *where(netns, backend), "--json", *checked)
    assert ran.status == EXIT_DIFFERS, ran
    document = ran.json
    assert document["ok"] is False
    assert [r["found"] for r in document["rules"]] == [True, True, False, False]
    assert [r["rule"] for r in document["rules"]] == checked
    assert document["rules"][1]["line"] == "-A FORWARD -d 10.4.0.0/16 -j ACCEPT"
    assert document["rules"][2]["line"] is None
    assert document["rules"][3] == {
        "rule": checked[3],
        "proto": "ipv4",
        "table": "nat",
        "chain": "NO-SUCH-CHAIN",
        "found": False,
        "line": None,
    }
    assert document["processes"] == 2, "one listing of FORWARD, one of NO-SUCH-CHAIN"
    assert ran.err == "", "nothing but the JSON object with --json"


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ("-t natt -A POSTROUTING -j ACCEPT", "invalid table 'natt'"),
        ("bogus -A INPUT -j ACCEPT", "invalid table 'bogus'"),
        ("-A " + "X" * 29 + " -j ACCEPT", "must be 1 to 28 bytes long"),
        ('-A INPUT -j ACCEPT -m comment --comment "unterminated', "unterminated quote"),
        ("-p tcp --dport 80 -j ACCEPT", "names no chain"),
        ("-A INPUT -s 10.0.0.1 -t nat -j ACCEPT", "-t must come before the spec"),
        ("-t", "-t needs a table name"),
        ("-A", "-A needs a chain name"),
    ],
)
def test_check_bad_input_exits_2(
    netns: str, rule: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every rule is read before any process runs: the good one is never listed.
    # ("--" lets a rule of one word, such as "-t", through argparse.)
    ran = cli(capsys, "check", "--netns", netns, "--", "-A INPUT -j ACCEPT", rule)
    assert ran.status == EXIT_USAGE, ran
    assert ran.out == ""
    assert ran.err.startswith("aioiptables check: error: ") and complaint in ran.err, ran.err


def test_check_usage_errors_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check"])  # no RULE: argparse's own usage error
    assert exited.value.code == EXIT_USAGE
    with pytest.raises(SystemExit) as helped:
        main(["check", "--help"])
    assert helped.value.code == 0
    text = capsys.readouterr().out
    assert "exit status:" in text and "3  an iptables process failed" in text


def test_check_aligned_table_on_a_terminal(
    netns: str, backend: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    iptables(netns, backend, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("NO_COLOR", "1")
    status = main(["check", *where(netns, backend), "-A INPUT -i lo -j ACCEPT", "-t nat -A OUTPUT -j DROP"])
    assert status == EXIT_DIFFERS
    assert terminal.getvalue().splitlines() == [
        "result     table   rule",
        "found      filter  -A INPUT -i lo -j ACCEPT",
        "not found  nat     -A OUTPUT -j DROP",
        "1 of 2 found; 2 processes",
    ]
    assert capsys.readouterr().err == ""


#: canon runs no process: a namespace that does not exist is never entered
#: (and were one run, it would fail there rather than reach this machine's tables).
ABSENT = ("--netns", f"aioipt-absent-{uuid.uuid4().hex[:8]}")


# -- canon -----------------------------------------------------------------------------------


def test_canon_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    rule = "-t nat -A KILO-NAT --protocol 6 --destination-port http --jump ACCEPT"
    ran = cli(capsys, "canon", *ABSENT, rule)
    assert (ran.status, ran.out, ran.err) == (EXIT_OK, "-p tcp -m tcp --dport 80 -j ACCEPT\n", "")

    as_json = cli(capsys, "canon", *ABSENT, "--json", rule)
    assert as_json.status == EXIT_OK
    assert as_json.json == {
        "canonical": ["-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "ACCEPT"],
        "exact": True,
        "proto": "ipv4",
        "table": "nat",
        "chain": "KILO-NAT",
    }

    # A bare spec, with quoting: the comment comes back quoted, as iptables-restore reads it.
    quoted = cli(capsys, "canon", *ABSENT, '-m comment --comment "a b" -s 10.1.2.3/8 -j REJECT')
    assert (
        quoted.out
        == '-s 10.0.0.0/8 -m comment --comment "a b" -j REJECT --reject-with icmp-port-unreachable\n'
    )

    six = cli(capsys, "canon", *ABSENT, "-6", "--json", "-A INPUT -s fd00:4::1/64 -j ACCEPT")
    assert six.json["canonical"] == ["-s", "fd00:4::/64", "-j", "ACCEPT"] and six.json["proto"] == "ipv6"


def test_canon_not_exact_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    unknown = cli(capsys, "canon", *ABSENT, "--json", "-p tcp --dport 80 -m no-such-match --frob 1")
    assert unknown.status == EXIT_OK
    assert unknown.json["exact"] is False
    assert unknown.json["canonical"][:6] == ["-p", "tcp", "-m", "tcp", "--dport", "80"]
    text = cli(capsys, "canon", *ABSENT, "-p tcp --dport 80 -m no-such-match --frob 1")
    assert "not understood" in text.err

    bad = cli(capsys, "canon", *ABSENT, "--json", "-t filtre -A INPUT -j ACCEPT")
    assert bad.status == EXIT_USAGE
    assert bad.json["exit_status"] == EXIT_USAGE and "invalid table 'filtre'" in bad.json["error"]


# -- diff and apply: TOML ------------------------------------------------------------------------

KILO_TOML = """\
# A Kilo-like rule set.
[[chain]]
table = "nat"
name = "KILO-NAT"

[[append]]
rule = '-t nat -A KILO-NAT -d 10.4.0.0/16 -m comment --comment "Kilo: do not NAT the mesh" -j RETURN'

[[append]]
table = "nat"
chain = "KILO-NAT"
spec = ["-s", "10.4.0.0/16", "-j", "MASQUERADE"]

[[append]]
table = "nat"
chain = "POSTROUTING"
spec = "-s 10.4.0.0/16 -j KILO-NAT"

[[prepend]]
chain = "INPUT"
spec = "--protocol tcp --dport 22 -j ACCEPT"
"""

KILO_CHANGES = [
    ["ipv4", "filter", "insert", "-I INPUT 1 --protocol tcp --dport 22 -j ACCEPT"],
    ["ipv4", "nat", "create", "-N KILO-NAT"],
    [
        "ipv4",
        "nat",
        "append",
        '-A KILO-NAT -d 10.4.0.0/16 -m comment --comment "Kilo: do not NAT the mesh" -j RETURN',
    ],
    ["ipv4", "nat", "append", "-A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE"],
    ["ipv4", "nat", "append", "-A POSTROUTING -s 10.4.0.0/16 -j KILO-NAT"],
]


def test_diff_and_apply_toml(
    netns: str, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kilo.toml"
    path.write_text(KILO_TOML)
    opts = where(netns, backend)

    diff = cli(capsys, "diff", *opts, str(path))
    assert (diff.status, diff.rows) == (EXIT_DIFFERS, KILO_CHANGES), diff
    # Reads only: nat needs two chains (one iptables-save), filter one (-S INPUT).
    assert diff.err == "5 changes in 2 tables; 2 processes\n"
    assert rules(netns, backend, "nat") == [
        f"-P {c} ACCEPT" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
    ]

    applied = cli(capsys, "apply", *opts, str(path))
    assert (applied.status, applied.rows) == (EXIT_OK, KILO_CHANGES), applied
    assert applied.err == "applied 5 changes in 2 writes; 4 processes\n"
    assert rules(netns, backend, "nat")[-3:] == [
        "-A POSTROUTING -s 10.4.0.0/16 -j KILO-NAT",
        '-A KILO-NAT -d 10.4.0.0/16 -m comment --comment "Kilo: do not NAT the mesh" -j RETURN',
        "-A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE",
    ]
    assert "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT" in rules(netns, backend, "filter")

    # Applying again changes nothing: two reads, no write.
    twice = cli(capsys, "apply", *opts, "--json", str(path))
    assert twice.status == EXIT_OK
    assert twice.json == {"changed": False, "changes": [], "writes": 0, "refused": [], "processes": 2}

    after = cli(capsys, "diff", *opts, str(path))
    assert (after.status, after.out, after.err) == (EXIT_OK, "", "nothing to change; 2 processes\n")


def test_diff_json_and_repair(
    netns: str, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kilo.toml"
    path.write_text(KILO_TOML)
    opts = where(netns, backend)
    assert cli(capsys, "apply", *opts, str(path)).status == EXIT_OK

    # Behind the CLI's back: the MASQUERADE rule goes, and a rule not ours is added.
    iptables(netns, backend, "-t", "nat", "-D", "KILO-NAT", "-s", "10.4.0.0/16", "-j", "MASQUERADE")
    iptables(netns, backend, "-t", "nat", "-A", "KILO-NAT", "-s", "192.168.0.0/24", "-j", "RETURN")
    diff = cli(capsys, "diff", *opts, "--json", str(path))
    assert diff.status == EXIT_DIFFERS
    assert diff.json["changes"] == [
        {
            "proto": "ipv4",
            "table": "nat",
            "kind": "append",
            "line": "-A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE",
        }
    ]
    assert diff.json["payloads"] == [
        {
            "proto": "ipv4",
            "table": "nat",
            "payload": "*nat\n-A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE\nCOMMIT\n",
        }
    ]
    repaired = cli(capsys, "apply", *opts, str(path))
    assert repaired.rows == [["ipv4", "nat", "append", "-A KILO-NAT -s 10.4.0.0/16 -j MASQUERADE"]]
    assert "-A KILO-NAT -s 192.168.0.0/24 -j RETURN" in rules(netns, backend, "nat"), (
        "a rule not ours was touched"
    )
    assert cli(capsys, "diff", *opts, str(path)).status == EXIT_OK


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('[[append]]\nchain = "INPUT"\nspek = []\n', ":3: [[append]] #1: unknown key 'spek'"),
        ("[[append]\n", ":1: not valid TOML"),
        ('\n[[chain]]\ntable = "nat"\nname = "ACCEPT"\n', ":2: [[chain]] #1: invalid chain 'ACCEPT'"),
        (
            '[[prepend]]\nchain = "INPUT"\nspec = "-j ACCEPT"\nproto = "ipv5"\n',
            ":4: [[prepend]] #1: proto must",
        ),
        ('[[append]]\nrule = "-A INPUT -j ACCEPT"\nchain = "INPUT"\n', ":1: [[append]] #1: give either rule"),
        ('[[append]]\nspec = "-j ACCEPT"\n', ":1: [[append]] #1: chain is missing"),
        ('append = "-A INPUT -j ACCEPT"\n', ":1: append must be written as [[append]] tables"),
        (
            '[[append]]\nrule = "-A INPUT -j ACCEPT"\n[[append]]\nrule = "-A INPUT -j ACCEPT"\n',
            ":3: [[append]] #2: filter -A INPUT -j ACCEPT appears twice: line 1 has it too",
        ),
        (
            '[[append]]\nrule = "ip6tables -A INPUT -j ACCEPT"\nproto = "ipv4"\n',
            ":3: [[append]] #1: the rule",
        ),
    ],
)
def test_bad_toml_exits_2_naming_file_and_line(
    netns: str, text: str, complaint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for command in ("diff", "apply"):
        ran = cli(capsys, command, "--netns", netns, str(path))
        assert ran.status == EXIT_USAGE, ran
        assert ran.err.startswith(f"aioiptables {command}: error: {path}{complaint}"), ran.err


def test_missing_file_exits_2(netns: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ran = cli(capsys, "diff", "--netns", netns, str(tmp_path / "absent.toml"))
    assert ran.status == EXIT_USAGE and "No such file or directory" in ran.err


# -- diff and apply: iptables-save files -------------------------------------------------------------

SAVED = """\
# Generated by iptables-save v1.8.9 on Thu Jan  1 00:00:00 1970
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KILO-NAT - [0:0]
[3:180] -A POSTROUTING -s 10.5.0.0/16 -m comment --comment "Kilo: jump to KILO-NAT" -j KILO-NAT
-A KILO-NAT -s 10.5.0.0/16 -m comment --comment "[1:2] kept" -j MASQUERADE
COMMIT
# Completed on Thu Jan  1 00:00:00 1970
*filter
:INPUT DROP [0:0]
:KILO-FORWARD - [0:0]
-A KILO-FORWARD -s 10.5.0.0/16 -j ACCEPT
-A KILO-FORWARD -d 10.5.0.0/16 -j ACCEPT
-A FORWARD -j KILO-FORWARD
COMMIT
"""


def test_diff_and_apply_save_file(
    netns: str, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kilo.rules"
    path.write_text(SAVED)
    opts = where(netns, backend)

    diff = cli(capsys, "diff", *opts, str(path))
    assert diff.status == EXIT_DIFFERS, diff
    assert diff.rows == [
        ["ipv4", "filter", "create", "-N KILO-FORWARD"],
        ["ipv4", "filter", "append", "-A KILO-FORWARD -s 10.5.0.0/16 -j ACCEPT"],
        ["ipv4", "filter", "append", "-A KILO-FORWARD -d 10.5.0.0/16 -j ACCEPT"],
        ["ipv4", "filter", "append", "-A FORWARD -j KILO-FORWARD"],
        ["ipv4", "nat", "create", "-N KILO-NAT"],
        [
            "ipv4",
            "nat",
            "append",
            '-A KILO-NAT -s 10.5.0.0/16 -m comment --comment "[1:2] kept" -j MASQUERADE',
        ],
        [
            "ipv4",
            "nat",
            "append",
            '-A POSTROUTING -s 10.5.0.0/16 -m comment --comment "Kilo: jump to KILO-NAT" -j KILO-NAT',
        ],
    ]

    applied = cli(capsys, "apply", *opts, "--json", str(path))
    assert applied.status == EXIT_OK
    assert [change["line"] for change in applied.json["changes"]] == [row[3] for row in diff.rows]
    assert applied.json["writes"] == 2
    saved = rules(netns, backend, "filter")
    assert "-P INPUT ACCEPT" in saved, "policies in the file are ignored"
    assert saved[-3:] == [
        "-A FORWARD -j KILO-FORWARD",
        "-A KILO-FORWARD -s 10.5.0.0/16 -j ACCEPT",
        "-A KILO-FORWARD -d 10.5.0.0/16 -j ACCEPT",
    ]
    assert cli(capsys, "diff", *opts, str(path)).status == EXIT_OK

    # The live tables' own iptables-save output, fed back on standard input by a
    # separate process, as a user would: nothing to change either.
    live = iptables_save(netns, backend)
    done = run_module("diff", *opts, "-", input=live)
    assert (done.returncode, done.stdout) == (EXIT_OK, ""), done.stderr


def test_bad_save_file_exits_2(netns: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "*nat\n-N X\nCOMMIT\n": ":2: invalid rule line '-N X'",
        "*natt\nCOMMIT\n": ":1: invalid table 'natt'",
        "*nat\nCOMMIT\n-A POSTROUTING -j ACCEPT\n": ":3: '-A POSTROUTING -j ACCEPT' is outside a *TABLE",
    }
    for text, complaint in cases.items():
        path = tmp_path / "bad.rules"
        path.write_text(text)
        ran = cli(capsys, "diff", "--netns", netns, str(path))
        assert ran.status == EXIT_USAGE and complaint in ran.err, (text, ran)
    # --format overrides the detection: the same text read as TOML is not valid TOML.
    ran = cli(capsys, "diff", "--netns", netns, "--format", "toml", str(tmp_path / "bad.rules"))
    assert ran.status == EXIT_USAGE and "not valid TOML" in ran.err


def iptables_save(netns: str, backend: str, *, ipv6: bool = False) -> str:
    """The whole iptables-save output of the test's namespace."""
    program = f"{'ip6tables' if ipv6 else 'iptables'}-{backend}-save"
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", program],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    )
    return done.stdout


def run_module(*argv: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m aioiptables ARGV`` in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "aioiptables", *argv],
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


# -- IPv6 -----------------------------------------------------------------------------------------


def test_ipv6_check_and_apply_both_families(
    netns: str, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "both.toml"
    path.write_text(
        'proto = "both"\n'
        '[[chain]]\ntable = "filter"\nname = "MESH"\n'
        '[[append]]\nchain = "MESH"\nspec = "-p udp --dport 51820 -j ACCEPT"\n'
        '[[append]]\nchain = "MESH"\nspec = "-s fd00:4::1/64 -j ACCEPT"\nproto = "ipv6"\n'
    )
    opts = where(netns, backend)
    applied = cli(capsys, "apply", *opts, str(path))
    assert applied.status == EXIT_OK, applied
    assert [row[:3] for row in applied.rows] == [
        ["ipv4", "filter", "create"],
        ["ipv4", "filter", "append"],
        ["ipv6", "filter", "create"],
        ["ipv6", "filter", "append"],
        ["ipv6", "filter", "append"],
    ]
    assert rules(netns, backend, "filter", ipv6=True)[-2:] == [
        "-A MESH -p udp -m udp --dport 51820 -j ACCEPT",
        "-A MESH -s fd00:4::/64 -j ACCEPT",
    ]
    assert "-A MESH -s fd00:4::/64 -j ACCEPT" not in rules(netns, backend, "filter")

    six = cli(capsys, "check", *opts, "-6", "-A MESH --source fd00:4::/ffff:ffff:ffff:ffff:: -j ACCEPT")
    assert (six.status, six.rows) == (EXIT_OK, [["found", "filter", "-A MESH -s fd00:4::/64 -j ACCEPT"]])
    four = cli(capsys, "check", *opts, "-A MESH -s 10.0.0.0/8 -j ACCEPT")
    assert four.status == EXIT_DIFFERS

    # An ip6tables-save file, read as IPv6 with -6: the live table is what it says.
    live = tmp_path / "six.rules"
    live.write_text(iptables_save(netns, backend, ipv6=True))
    assert cli(capsys, "diff", *opts, "-6", str(live)).status == EXIT_OK
    # One chain per family: one iptables -S MESH each, and no write.
    assert cli(capsys, "apply", *opts, str(path)).err == "nothing to change; 2 processes\n"


# -- iptables errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "diff", "apply"])
def test_missing_namespace_exits_3(backend: str, command: str, tmp_path: Path) -> None:
    absent = f"aioipt-absent-{uuid.uuid4().hex[:8]}"
    assert not Path("/run/netns", absent).exists()
    path = tmp_path / "one.toml"
    path.write_text('[[append]]\nchain = "INPUT"\nspec = "-j ACCEPT"\n')
    target = "-A INPUT -j ACCEPT" if command == "check" else str(path)
    done = run_module(command, "--netns", absent, "--backend", backend, target)
    assert done.returncode == EXIT_IPTABLES, done
    assert done.stdout == ""
    # Said plainly, naming it; not as the iptables process that could not start there.
    assert done.stderr == (
        f"aioiptables {command}: error: network namespace {absent} does not exist "
        f"(no /run/netns/{absent}; create it with: ip netns add {absent})\n"
    ), done.stderr

    as_json = run_module(command, "--netns", absent, "--backend", backend, "--json", target)
    assert as_json.returncode == EXIT_IPTABLES
    assert json.loads(as_json.stdout)["exit_status"] == EXIT_IPTABLES


REFUSING = {
    "save": (
        "refusing.rules",
        "*filter\n"
        "-A INPUT -s 10.6.1.0/24 -j ACCEPT\n"
        "-A INPUT -m set --match-set cli-nosuch src -j DROP\n"
        "-A INPUT -s 10.6.2.0/24 -j ACCEPT\n"
        "COMMIT\n",
        ":3: filter -A INPUT -m set --match-set cli-nosuch src -j DROP: ",
    ),
    "toml": (
        "refusing.toml",
        '[[append]]\nrule = "-A INPUT -s 10.6.1.0/24 -j ACCEPT"\n\n'
        '[[append]]\nrule = "-A INPUT -m set --match-set cli-nosuch src -j DROP"\n\n'
        '[[append]]\nrule = "-A INPUT -s 10.6.2.0/24 -j ACCEPT"\n',
        ":4: [[append]] #2: filter -A INPUT -m set --match-set cli-nosuch src -j DROP: ",
    ),
}


@pytest.mark.parametrize("kind", list(REFUSING))
def test_apply_names_the_file_and_line_of_a_rule_iptables_refused_and_writes_the_rest(
    netns: str, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    name, text, located = REFUSING[kind]
    path = tmp_path / name
    path.write_text(text)
    applied = cli(capsys, "apply", *where(netns, backend), str(path))
    assert applied.status == EXIT_IPTABLES, applied
    assert f"{path}{located}" in applied.err, applied.err
    assert "cli-nosuch" in applied.err.split(located, 1)[1], "iptables' own message follows"
    saved = rules(netns, backend, "filter")
    assert saved[-2:] == ["-A INPUT -s 10.6.1.0/24 -j ACCEPT", "-A INPUT -s 10.6.2.0/24 -j ACCEPT"]


def test_apply_refuses_a_rule_that_would_overflow_a_restore_line(
    netns: str, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    comments = " ".join(f"-m comment --comment {'c' * 250}" for _ in range(37))
    tail = "x" * 40 + " -F -m comment --comment "
    path = tmp_path / "attack.toml"
    path.write_text(
        f"[[append]]\nchain = 'FORWARD'\nspec = '{comments} -m comment --comment \"{tail}\" -j ACCEPT'\n"
    )
    iptables(netns, backend, "-A", "INPUT", "-j", "ACCEPT")
    before = rules(netns, backend, "filter")
    applied = cli(capsys, "apply", *where(netns, backend), str(path))
    assert applied.status == EXIT_USAGE, applied
    assert "cut the line" in applied.err, applied.err
    assert rules(netns, backend, "filter") == before


@pytest.mark.parametrize("owner", [None, "cli"], ids=["no-owner", "owner"])
def test_apply_removes_what_a_file_dropped_only_for_its_owner(
    netns: str, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], owner: str | None
) -> None:
    iptables(netns, backend, "-A", "INPUT", "-s", "10.7.0.0/16", "-j", "ACCEPT")  # someone else's
    first = tmp_path / "first.rules"
    first.write_text(
        "*filter\n-A INPUT -s 10.7.0.0/16 -j ACCEPT\n-A INPUT -s 10.8.0.0/16 -j ACCEPT\nCOMMIT\n"
    )
    second = tmp_path / "second.rules"
    second.write_text("*filter\n-A INPUT -s 10.9.0.0/16 -j ACCEPT\nCOMMIT\n")
    opts = (*where(netns, backend), *(("--owner", owner) if owner else ()))
    assert cli(capsys, "apply", *opts, str(first)).status == EXIT_OK
    diff = cli(capsys, "diff", *opts, str(second))
    assert cli(capsys, "apply", *opts, str(second)).status == EXIT_OK
    tag = ' -m comment --comment "aioiptables:owner=cli"'
    lines = [line.replace(tag, "") for line in rules(netns, backend, "filter") if line.startswith("-A")]
    if owner:
        assert sorted({row[2] for row in diff.rows}) == ["append", "delete"]
        assert lines == ["-A INPUT -s 10.7.0.0/16 -j ACCEPT", "-A INPUT -s 10.9.0.0/16 -j ACCEPT"]
    else:
        assert [row[2] for row in diff.rows] == ["append"], "nothing is ever deleted without --owner"
        assert lines == [
            "-A INPUT -s 10.7.0.0/16 -j ACCEPT",
            "-A INPUT -s 10.8.0.0/16 -j ACCEPT",
            "-A INPUT -s 10.9.0.0/16 -j ACCEPT",
        ]


@pytest.mark.parametrize("comment", ["a\nb", "a\n# b", "a\n\nb", "a\n-A INPUT -j DROP"])
def test_check_reads_past_a_foreign_rule_printed_on_several_lines(
    netns: str, backend: str, capsys: pytest.CaptureFixture[str], comment: str
) -> None:
    iptables(netns, backend, "-A", "INPUT", "-m", "comment", "--comment", comment, "-j", "ACCEPT")
    iptables(netns, backend, "-A", "INPUT", "-s", "10.4.0.0/16", "-j", "ACCEPT")
    found = cli(capsys, "check", *where(netns, backend), "-A INPUT -s 10.4.0.0/16 -j ACCEPT")
    assert (found.status, found.rows) == (EXIT_OK, [["found", "filter", "-A INPUT -s 10.4.0.0/16 -j ACCEPT"]])
    fake = cli(capsys, "check", *where(netns, backend), "-A INPUT -j DROP")
    assert fake.status == EXIT_DIFFERS, "a line inside a comment is not a rule"


# -- the command line speaks shell, not Python ----------------------------------------------------


@pytest.mark.parametrize(
    ("pasted", "proto", "table"),
    [
        ("iptables -A INPUT -s 10.9.0.0/16 -j ACCEPT", "ipv4", "filter"),
        ("iptables -t nat -A POSTROUTING -s 10.9.0.0/16 -j MASQUERADE", "ipv4", "nat"),
        ("ip6tables -A INPUT -s fd00:9::/64 -j ACCEPT", "ipv6", "filter"),
        ("iptables-legacy -A INPUT -s 10.9.0.0/16 -j ACCEPT", "ipv4", "filter"),
        ("/usr/sbin/ip6tables-nft -t mangle -A PREROUTING -s fd00:9::/64 -j ACCEPT", "ipv6", "mangle"),
    ],
)
def test_a_rule_pasted_with_its_program_reads_and_the_program_says_the_protocol(
    netns: str, backend: str, capsys: pytest.CaptureFixture[str], pasted: str, proto: str, table: str
) -> None:
    rule = shlex.split(pasted)[1:]
    iptables(netns, backend, *rule, ipv6=proto == "ipv6")
    ran = cli(capsys, "check", *where(netns, backend), "--json", pasted)
    assert ran.status == EXIT_OK, ran
    [checked] = ran.json["rules"]
    assert (checked["proto"], checked["table"], checked["found"]) == (proto, table, True)
    canon = cli(capsys, "canon", *ABSENT, "--json", pasted)
    assert (canon.status, canon.json["proto"], canon.json["table"]) == (EXIT_OK, proto, table)


def test_check_takes_rules_of_both_protocols_at_once(
    netns: str, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    iptables(netns, backend, "-A", "INPUT", "-s", "fd00:9::/64", "-j", "ACCEPT", ipv6=True)
    ran = cli(
        capsys,
        "check",
        *where(netns, backend),
        "iptables -A INPUT -s 10.9.0.0/16 -j ACCEPT",
        "ip6tables -A INPUT -s fd00:9::/64 -j ACCEPT",
    )
    assert ran.status == EXIT_DIFFERS
    assert ran.rows == [
        ["not found", "filter", "-A INPUT -s 10.9.0.0/16 -j ACCEPT"],
        ["found", "filter", "-A INPUT -s fd00:9::/64 -j ACCEPT"],
    ]
    assert ran.err == "1 of 2 found; 2 processes\n", "one listing per protocol"


def test_minus_6_and_a_pasted_iptables_contradict(capsys: pytest.CaptureFixture[str]) -> None:
    ran = cli(capsys, "canon", *ABSENT, "-6", "iptables -A INPUT -j ACCEPT")
    assert ran.status == EXIT_USAGE
    assert "names iptables (IPv4), but -6 asks for IPv6" in ran.err


@pytest.mark.parametrize(
    ("argv", "quoted"),
    [
        (["check", "-A", "INPUT", "-j", "ACCEPT"], "aioiptables check '-A INPUT -j ACCEPT'"),
        (
            ["check", "--netns", "NS", "-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE"],
            "aioiptables check --netns NS '-t nat -A POSTROUTING -j MASQUERADE'",
        ),
        (
            ["canon", "-6", "-A", "INPUT", "-m", "comment", "--comment", "a b", "-j", "ACCEPT"],
            """aioiptables canon -6 '-A INPUT -m comment --comment "a b" -j ACCEPT'""",
        ),
        (
            ["canon", "iptables", "-A", "INPUT", "-j", "ACCEPT"],
            "aioiptables canon 'iptables -A INPUT -j ACCEPT'",
        ),
    ],
)
def test_a_rule_the_shell_split_gets_a_hint_to_quote_it(argv: list[str], quoted: str) -> None:
    done = run_module(*argv)
    assert done.returncode == EXIT_USAGE, done
    assert "unrecognized arguments" in done.stderr
    assert f"a rule is one argument: quote it for the shell, as in\n  {quoted}\n" in done.stderr, done.stderr


def test_the_hint_to_quote_a_rule_is_a_command_that_works(netns: str, backend: str) -> None:
    split = run_module("check", *where(netns, backend), "-A", "INPUT", "-j", "ACCEPT")
    hint = split.stderr.splitlines()[-1].strip()
    assert hint == f"aioiptables check --netns {netns} --backend {backend} '-A INPUT -j ACCEPT'"
    done = run_module(*shlex.split(hint)[1:])
    assert (done.returncode, done.stdout) == (EXIT_DIFFERS, "not found\tfilter\t-A INPUT -j ACCEPT\n"), done


def test_a_warning_names_the_option_to_type_not_the_python_argument(netns: str) -> None:
    # Rules in the legacy tables, checked with iptables-nft: it warns, and so does the client.
    iptables(netns, "legacy", "-A", "INPUT", "-s", "10.9.0.0/16", "-j", "ACCEPT")
    done = run_module("check", "--netns", netns, "--backend", "nft", "-A INPUT -s 10.9.0.0/16 -j ACCEPT")
    assert done.returncode == EXIT_DIFFERS, done
    assert "aioiptables: iptables-legacy tables are present" in done.stderr, done.stderr
    assert "pass --backend legacy if they are yours" in done.stderr
    assert "backend='" not in done.stderr


def test_watch_names_a_missing_namespace() -> None:
    absent = f"aioipt-absent-{uuid.uuid4().hex[:8]}"
    done = run_module("watch", "--netns", absent, "--count", "1")
    assert done.returncode == EXIT_IPTABLES
    assert done.stderr == (
        f"aioiptables watch: error: network namespace {absent} does not exist "
        f"(no /run/netns/{absent}; create it with: ip netns add {absent})\n"
    )


def test_an_unreadable_rule_file_is_named_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[[append]]\nrule = "-A INPUT -m comment --comment caf\xe9 -j ACCEPT"\n')
    ran = cli(capsys, "diff", *ABSENT, str(path))
    assert ran.status == EXIT_USAGE
    assert ran.err == f"aioiptables diff: error: {path}:2: not UTF-8 text (byte 0xe9)\n"
