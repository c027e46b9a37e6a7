"""examples/agent.py end to end, on real iptables in a private namespace.

Each test writes a rule-set file (with :func:`aioiptables.files.dumps`, as a
program of yours may), starts the agent on it as its own process (as a daemon
would run), and watches the namespace's tables with iptables behind the
agent's back: the rules come, follow a SIGHUP reload, are repaired when
deleted, and are gone after SIGTERM or SIGINT, with exit status 0. Metrics
are scraped from the namespace's own 127.0.0.1. Every wait is bounded; missing root, ``ip`` or
iptables fail the test, never skip it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aioiptables import Chain, Protocol, Rule, RuleSet, files
from conftest import ns_exec

pytestmark = pytest.mark.iptables

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AGENT = EXAMPLES / "agent.py"
# Seconds any one wait may take; the agent needs well under one for each step.
WAIT = 30.0

POD, MESH = "10.4.0.0/16", "10.5.0.0/16"
JUMP = f'-A POSTROUTING -s {POD} -m comment --comment "Kilo: jump to KILO-NAT chain" -j KILO-NAT'
RETURN = (
    f'-A KILO-NAT -d {POD} -m comment --comment "Kilo: do not NAT packets destined for the mesh" -j RETURN'
)
MASQUERADE = (
    f'-A KILO-NAT -s {POD} -m comment --comment "Kilo: NAT packets from the pod subnet" -j MASQUERADE'
)
FROM_MESH = f"-A FORWARD -s {MESH} -j ACCEPT"
TO_MESH = f"-A FORWARD -d {MESH} -j ACCEPT"
OTHER_MESH = "-A FORWARD -s 10.6.0.0/16 -j ACCEPT"


def rule_set(nat: list[str], forward: list[str], *, prepend_v6: tuple[str, ...] = ()) -> str:
    """A rule-set file of KILO-NAT, these ``-S`` lines of nat and filter, and
    IPv6 rules kept at the top of their chains."""
    ruleset = RuleSet(
        append=[
            Chain.ipv4("nat", "KILO-NAT"),
            *(Rule.parse(line, "nat") for line in nat),
            *(Rule.parse(line, "filter") for line in forward),
        ],
        prepend=[Rule.parse(line, "filter", Protocol.IPV6) for line in prepend_v6],
    )
    return files.dumps(ruleset)


# Run inside the namespace: what a URL there answers.
SCRAPE = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"


class Agent:
    """The agent as a separate process, its output in a file.

    It runs inside the test's namespace, as a daemon in a pod's namespace
    would: its metrics port is that namespace's 127.0.0.1, which no other
    test and no service of this machine can take (nor reach); and the suite
    may itself run without a loopback (``make test`` runs it in ``unshare
    --net``). Its iptables processes enter the same namespace (``--netns``).
    """

    def __init__(self, tmp_path: Path, netns: str, backend: str, metrics_port: int) -> None:
        self.rules = tmp_path / "rules.toml"
        self.backend = backend
        self.log_path = tmp_path / "agent.log"
        self.netns = netns
        self.port = metrics_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *options: str) -> None:
        argv = [
            *self._inside,
            sys.executable,
            str(AGENT),
            "--rules",
            str(self.rules),
            "--netns",
            self.netns,
            "--backend",
            self.backend,
            "--resync",
            "0.3",
            "--metrics-port",
            str(self.port),
            *options,
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    @property
    def _inside(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--"]

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def send(self, signum: signal.Signals) -> None:
        assert self.process is not None and self.process.poll() is None, f"the agent is gone:\n{self.log}"
        self.process.send_signal(signum)

    def exit_status(self) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the agent did not exit within {WAIT} s:\n{self.log}") from None

    def stop(self) -> None:
        """Kill the agent if a test left it running (its rules die with the namespace)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)

    def wait_for(self, what: str, read: Callable[[], object], expected: object = True) -> None:
        """Poll ``read()`` until it returns ``expected``, for at most WAIT seconds."""
        deadline = time.monotonic() + WAIT
        while (got := read()) != expected:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the agent exited {self.process.returncode} waiting for {what}:\n{self.log}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {WAIT} s: {got!r} != {expected!r}\n{self.log}")
            time.sleep(0.05)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample on /metrics, by name and labels."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        argv = [*self._inside, sys.executable, "-c", SCRAPE, url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)
        assert done.returncode == 0, f"scraping {url} failed: {done.stderr}\n{self.log}"
        text = done.stdout
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture
def agent(tmp_path: Path, netns: str, backend: str) -> Iterator[Agent]:
    ns_exec(netns, "ip", "link", "set", "lo", "up")  # the namespace's own loopback, for the metrics
    started = Agent(tmp_path, netns, backend, 9100)
    try:
        yield started
    finally:
        started.stop()


def rules(netns: str, backend: str, table: str, proto: str = "iptables") -> list[str]:
    """The ``-S`` lines of a table (chains and rules), read behind the agent's back."""
    out = ns_exec(netns, f"{proto}-{backend}", "-w", "5", "-t", table, "-S")
    return [line for line in out.splitlines() if line.startswith(("-N", "-A"))]


def nat_lines(nat: list[str]) -> list[str]:
    """What ``-S`` prints for these rules, as iptables orders a table."""
    by_chain = sorted(nat, key=lambda rule: not rule.startswith("-A POSTROUTING "))  # a stable sort
    return ["-N KILO-NAT", *by_chain]


def scraped(agent: Agent, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(
        value for (sample, have), value in agent.metrics().items() if sample == name and wanted <= have
    )


def test_agent_applies_reloads_repairs_and_cleans_up(agent: Agent, netns: str, backend: str) -> None:
    agent.rules.write_text(rule_set([RETURN, MASQUERADE, JUMP], [FROM_MESH, TO_MESH]))
    agent.start()
    want_nat = nat_lines([RETURN, MASQUERADE, JUMP])
    agent.wait_for("rules in nat", lambda: rules(netns, backend, "nat"), want_nat)
    assert rules(netns, backend, "filter") == [FROM_MESH, TO_MESH]

    # Metrics: the processes by operation, and the reconciles.
    agent.wait_for("reconciles in the metrics", lambda: scraped(agent, "aioiptables_reconciles_total") >= 1)
    assert scraped(agent, "aioiptables_iptables_operations_total", operation="restore", table="nat") >= 1
    assert scraped(agent, "aioiptables_iptables_operations_total", backend=backend, protocol="iptables") >= 2
    assert scraped(agent, "aioiptables_reconcile_duration_seconds_count") >= 1
    assert scraped(agent, "aioiptables_rules_desired") == 5
    assert scraped(agent, "aioiptables_reconcile_errors_total") == 0

    # A deleted rule comes back at the next resync.
    ns_exec(netns, f"iptables-{backend}", "-w", "5", "-t", "filter", *TO_MESH.replace("-A", "-D", 1).split())
    agent.wait_for("the deleted rule back", lambda: rules(netns, backend, "filter"), [FROM_MESH, TO_MESH])

    # SIGHUP: one rule added, one removed.
    agent.rules.write_text(rule_set([RETURN, MASQUERADE, JUMP], [FROM_MESH, OTHER_MESH]))
    agent.send(signal.SIGHUP)
    agent.wait_for("the reloaded rules", lambda: rules(netns, backend, "filter"), [FROM_MESH, OTHER_MESH])
    assert rules(netns, backend, "nat") == want_nat
    # A file that cannot be used changes nothing; the error names its line.
    agent.rules.write_text('[[append]]\nrule = "-A FORWARD -j ACCEPT"\n[[append]\n')
    agent.send(signal.SIGHUP)
    agent.wait_for("the reload error", lambda: "reload failed" in agent.log)
    assert f"{agent.rules}:3: not valid TOML" in agent.log
    assert rules(netns, backend, "filter") == [FROM_MESH, OTHER_MESH]
    assert scraped(agent, "aioiptables_rules_repaired_total") >= 6 + 1 + 2

    agent.send(signal.SIGTERM)
    assert agent.exit_status() == 0, agent.log
    assert "cleaned up" in agent.log
    assert rules(netns, backend, "nat") == [] and rules(netns, backend, "filter") == []


def test_sigint_cleans_up_both_protocols_without_metrics(agent: Agent, netns: str, backend: str) -> None:
    v6 = ("-I INPUT -s fd00:5::/64 -p udp --dport 51820 -j ACCEPT",)
    agent.rules.write_text(rule_set([MASQUERADE], [FROM_MESH], prepend_v6=v6))
    agent.port = 0  # metrics off: prometheus-client is not needed then
    agent.start("--owner", "agent")
    tagged = "aioiptables:owner=agent"
    agent.wait_for(
        "the IPv6 rule",
        lambda: any(tagged in line for line in rules(netns, backend, "filter", "ip6tables")),
    )
    assert any(tagged in line and "MASQUERADE" in line for line in rules(netns, backend, "nat"))
    agent.send(signal.SIGINT)
    assert agent.exit_status() == 0, agent.log
    assert "metrics on" not in agent.log
    for proto, table in [("iptables", "nat"), ("iptables", "filter"), ("ip6tables", "filter")]:
        assert rules(netns, backend, table, proto) == [], f"{proto} {table} left behind"


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ('[[append]]\nrule = "-A X -j ACCEPT"\n', ("--resync", "-1"), "must be a positive number of seconds"),
        ('\n[[append]]\nrule = "-t natt -A X -j ACCEPT"\n', (), ":2: [[append]] #1: invalid table 'natt'"),
        ('[[append]]\nrule = "KILO-NAT -j MASQUERADE"\n', (), ":1: [[append]] #1: invalid table 'KILO-NAT'"),
        ("[[append]\n", (), ":1: not valid TOML"),
        ('[[append]]\nrule = "-A X -j ACCEPT"\n', ("--owner", "x:y"), "invalid owner 'x:y'"),
    ],
)
def test_a_bad_start_exits_2_before_any_process(
    agent: Agent, netns: str, text: str, options: tuple[str, ...], message: str
) -> None:
    agent.rules.write_text(text)
    agent.start(*options)
    assert agent.exit_status() == 2, agent.log
    assert message in agent.log
    assert rules(netns, "nft", "nat") == [] and rules(netns, "legacy", "nat") == []


def test_the_rules_shipped_with_the_agent_are_a_valid_rule_set_file() -> None:
    ruleset = files.load(EXAMPLES / "kilo.toml")
    assert ruleset.append[0] == Chain.ipv4("nat", "KILO-NAT")
    assert Rule.parse(MASQUERADE, "nat") in ruleset.append
    assert len(ruleset.append) == 6
    wireguard = ("-p", "udp", "--dport", "51820", "-j", "ACCEPT")
    assert ruleset.prepend == (
        Rule.ipv4("filter", "INPUT", *wireguard),
        Rule.ipv6("filter", "INPUT", *wireguard),
    )
