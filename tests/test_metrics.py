"""aioiptables.metrics: process and reconcile metrics, on the fake and on real iptables.

Every test reads a fresh ``CollectorRegistry`` of its own. The process counts
are held to the clients' own ``calls`` (one per process, retries included) on
FakeClient, iptables-nft and iptables-legacy (real ones in a private
namespace), for IPv4 and IPv6, under asyncio and trio.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

import anyio
import pytest
from prometheus_client import CollectorRegistry

from aioiptables import (
    Binaries,
    Chain,
    Client,
    Completed,
    Controller,
    FakeClient,
    FakeRunner,
    IPTablesError,
    IPTablesNotFoundError,
    IPTablesTimeoutError,
    Protocol,
    Rule,
    RuleSet,
    Runner,
)
from aioiptables.metrics import ControllerMetrics, MetricsRunner, Operation, instrument, parse_operation
from conftest import World

pytestmark = pytest.mark.anyio

OPERATIONS = "aioiptables_iptables_operations_total"
FAILURES = "aioiptables_iptables_failures_total"
DURATION = "aioiptables_iptables_duration_seconds_count"
V4, V6 = Protocol.IPV4, Protocol.IPV6

# -- helpers -------------------------------------------------------------------------------------


def samples(registry: CollectorRegistry, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """The values of one sample name, summed by the given labels."""
    found: Counter[tuple[str, ...]] = Counter()
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sample.labels[label] for label in labels)] += int(sample.value)
    return found


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """One sample's value, 0 when it was never set."""
    return registry.get_sample_value(name, labels) or 0.0


def measured(client: Client, registry: CollectorRegistry) -> Client:
    """The client, its runner wrapped in a MetricsRunner."""
    client.runner = MetricsRunner(client.runner, registry, backend=client.backend)
    return client


def addresses(proto: Protocol) -> tuple[str, str]:
    return ("10.0.0.1", "10.0.0.2") if proto is V4 else ("fd00::1", "fd00::2")


class Scripted(Runner):
    """Answers each run with the next of ``answers``: an exit status, or an exception to raise."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        stderr = "Another app is currently holding the xtables lock." if answer == 4 else ""
        return Completed(tuple(argv), answer, "", stderr)


class Hanging(Runner):
    """Never answers."""

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        self.calls += 1
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


def scripted_client(runner: Runner, registry: CollectorRegistry) -> Client:
    binaries = Binaries("iptables-nft", "iptables-nft-save", "iptables-nft-restore")
    return Client(V4, binaries=binaries, runner=MetricsRunner(runner, registry))


# -- parsing argv --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["iptables", "-w", "5", "-t", "nat", "-A", "X", "-j", "ACCEPT"], ("append", "nat", "X")),
        (["iptables", "-t", "nat", "-I", "X", "1", "-j", "ACCEPT"], ("insert", "nat", "X")),
        (["iptables", "-w", "-D", "FORWARD", "-j", "ACCEPT"], ("delete", "filter", "FORWARD")),
        (
            ["iptables", "-w", "5", "-t", "raw", "-C", "PREROUTING", "-j", "CT"],
            ("check", "raw", "PREROUTING"),
        ),
        (["iptables", "-t", "mangle", "-S", "OUTPUT"], ("list", "mangle", "OUTPUT")),
        (["iptables", "-w", "5", "-t", "nat", "-S"], ("list_chains", "nat", "")),
        (["iptables", "--table=nat", "--new-chain", "Y"], ("new_chain", "nat", "Y")),
        (["iptables", "-tnat", "-F"], ("flush", "nat", "")),
        (["iptables", "-t", "nat", "-X", "Y"], ("delete_chain", "nat", "Y")),
        (["iptables", "-t", "nat", "-E", "OLD", "NEW"], ("rename_chain", "nat", "OLD")),
        (["iptables", "-P", "FORWARD", "DROP"], ("policy", "filter", "FORWARD")),
        (["/usr/sbin/iptables-legacy-save", "-t", "nat"], ("save", "nat", "")),
        (["iptables-save"], ("save", "", "")),
        (["iptables", "--version"], ("other", "filter", "")),
    ],
)
def test_parse_operation(argv: list[str], expected: tuple[str, str, str]) -> None:
    assert parse_operation(argv) == Operation(*expected, "iptables")


def test_parse_restore_names_the_tables_of_its_payload() -> None:
    payload = b"*nat\n:X - [0:0]\n-A X -j RETURN\nCOMMIT\n*filter\nCOMMIT\n"
    assert parse_operation(["ip6tables-restore", "-w", "5", "--noflush"], payload) == Operation(
        "restore", "filter,nat", "", "ip6tables"
    )
    assert parse_operation(["ip6tables-nft-restore"]) == Operation("restore", "", "", "ip6tables")


# -- MetricsRunner -------------------------------------------------------------------------------


async def run_sequence(client: Client, proto: Protocol) -> None:
    """One call of every kind; EXPECTED says the processes each spends."""
    one, two = addresses(proto)
    await client.new_chain("filter", "M-TEST")
    await client.append_unique("filter", "M-TEST", "-s", one, "-j", "ACCEPT")  # check fails, append
    await client.append_unique("filter", "M-TEST", "-s", one, "-j", "ACCEPT")  # check
    await client.insert("filter", "M-TEST", 1, "-s", two, "-j", "DROP")
    await client.list("filter", "M-TEST")
    await client.list_chains("filter")
    await client.delete("filter", "M-TEST", "-s", two, "-j", "DROP")
    assert not await client.delete_if_exists("filter", "M-TEST", "-s", two, "-j", "DROP")
    await client.clear_chain("nat", "M-NAT")  # a user chain: one restore
    await client.clear_chain("filter", "INPUT")  # a builtin chain: -F
    await client.rename_chain("nat", "M-NAT", "M-NAT2")
    await client.set_policy("filter", "FORWARD", "DROP")
    await client.set_policy("filter", "FORWARD", "ACCEPT")
    await client.save("nat")
    await client.delete_chain("nat", "M-NAT2")
    await client.restore("*filter\n-A M-TEST -j RETURN\nCOMMIT\n")


EXPECTED = Counter(
    {
        ("new_chain", "filter", "M-TEST"): 1,
        ("check", "filter", "M-TEST"): 2,
        ("append", "filter", "M-TEST"): 1,
        ("insert", "filter", "M-TEST"): 1,
        ("list", "filter", "M-TEST"): 1,
        ("list_chains", "filter", ""): 1,
        ("delete", "filter", "M-TEST"): 2,
        ("restore", "nat", ""): 1,
        ("flush", "filter", "INPUT"): 1,
        ("rename_chain", "nat", "M-NAT"): 1,
        ("policy", "filter", "FORWARD"): 2,
        ("save", "nat", ""): 1,
        ("delete_chain", "nat", "M-NAT2"): 1,
        ("restore", "filter", ""): 1,
    }
)


async def test_counts_per_operation_table_and_chain_equal_the_calls(world: World, proto: Protocol) -> None:
    registry = CollectorRegistry()
    client = measured(world.client(proto), registry)
    await run_sequence(client, proto)
    assert samples(registry, OPERATIONS, "operation", "table", "chain") == EXPECTED
    assert sum(EXPECTED.values()) == client.calls == client.runner.calls
    backend = "nft" if world.kind == "fake" else world.kind
    assert samples(registry, OPERATIONS, "protocol", "backend") == {(proto.command, backend): client.calls}
    assert sum(samples(registry, DURATION, "operation").values()) == client.calls
    # -C and -D of a missing rule exit 1, and are counted as such.
    assert samples(registry, FAILURES, "operation", "table", "exit_status") == {
        ("check", "filter", "1"): 1,
        ("delete", "filter", "1"): 1,
    }


async def test_each_retry_is_a_process_of_its_own() -> None:
    registry = CollectorRegistry()
    client = scripted_client(Scripted(4, 4, 0), registry)
    await client.append("filter", "INPUT", "-j", "ACCEPT")
    labels = {"operation": "append", "table": "filter", "chain": "INPUT", "protocol": "iptables"}
    assert value(registry, OPERATIONS, backend="nft", **labels) == 3 == client.calls
    assert samples(registry, FAILURES, "operation", "exit_status") == {("append", "4"): 2}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (IPTablesTimeoutError(["iptables"], 1.0), "timeout"),
        (IPTablesNotFoundError(["iptables"], "iptables not found"), "not_found"),
    ],
)
async def test_a_runner_error_is_counted_and_raised(error: IPTablesError, status: str) -> None:
    registry = CollectorRegistry()
    client = scripted_client(Scripted(error), registry)
    with pytest.raises(type(error)):
        await client.list("nat", "POSTROUTING")
    assert samples(registry, OPERATIONS, "operation", "chain") == {("list", "POSTROUTING"): 1}
    assert samples(registry, FAILURES, "operation", "exit_status") == {("list", status): 1}
    assert client.calls == 1


async def test_a_cancelled_process_is_counted_not_failed() -> None:
    registry = CollectorRegistry()
    client = scripted_client(Hanging(), registry)
    with anyio.move_on_after(0.01):
        await client.save("nat")
    assert samples(registry, OPERATIONS, "operation") == {("save",): 1}
    assert samples(registry, FAILURES, "operation") == {}
    assert client.calls == 1


def test_the_backend_comes_from_the_program_name_when_not_given() -> None:
    registry = CollectorRegistry()
    runner = MetricsRunner(FakeRunner(), registry)
    for program in ("iptables-legacy", "ip6tables-nft-save"):
        anyio.run(runner.run, [program, "-t", "nat", "-S"])
    assert samples(registry, OPERATIONS, "protocol", "backend") == {
        ("iptables", "legacy"): 1,
        ("ip6tables", "nft"): 1,
    }
    assert runner.calls == 2


def test_runners_of_both_protocols_share_one_registry() -> None:
    registry = CollectorRegistry()
    shared = FakeRunner()
    v4 = measured(FakeClient(V4, runner=shared), registry)
    v6 = measured(FakeClient(V6, runner=shared), registry)
    anyio.run(v4.list_chains, "nat")
    anyio.run(v6.list_chains, "nat")
    assert samples(registry, OPERATIONS, "protocol") == {("iptables",): 1, ("ip6tables",): 1}


# -- Controller metrics --------------------------------------------------------------------------


def kilo(proto: Protocol) -> RuleSet:
    """4 rules and 2 chains in 2 tables."""
    net = "10.4.0.0/16" if proto is V4 else "fd00:4::/64"
    return RuleSet(
        append=[
            Chain("nat", "KILO-NAT", proto),
            Rule("nat", "KILO-NAT", ("-d", net, "-j", "RETURN"), proto),
            Rule("nat", "KILO-NAT", ("-s", net, "-j", "MASQUERADE"), proto),
            Rule("nat", "POSTROUTING", ("-s", net, "-j", "KILO-NAT"), proto),
            Chain("filter", "KILO-FWD", proto),
            Rule("filter", "KILO-FWD", ("-s", net, "-j", "ACCEPT"), proto),
        ]
    )


class Reconciles:
    """The controller metrics of one registry, read at once."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = value(registry, "aioiptables_reconciles_total")
        self.errors = value(registry, "aioiptables_reconcile_errors_total")
        self.repaired = value(registry, "aioiptables_rules_repaired_total")
        self.desired = value(registry, "aioiptables_rules_desired")
        self.observed = value(registry, "aioiptables_reconcile_duration_seconds_count")


async def test_controller_metrics_follow_set_reconcile_and_failures(world: World, proto: Protocol) -> None:
    registry = CollectorRegistry()
    client = world.client(proto)
    controller = Controller(client) if proto is V4 else Controller(None, client)
    instrument(controller, registry)
    start = Reconciles(registry)
    assert (start.total, start.errors, start.repaired, start.desired) == (0, 0, 0, 0)

    await controller.set(kilo(proto))
    after_set = Reconciles(registry)
    assert controller.last_stats["writes"] == 2
    assert (after_set.total, after_set.errors, after_set.observed) == (1, 0, 1)
    assert after_set.repaired == controller.last_stats["changes"] > 0
    assert after_set.desired == 4

    await controller.reconcile()  # steady: writes nothing
    steady = Reconciles(registry)
    assert (steady.total, steady.repaired) == (2, after_set.repaired)

    net = "10.4.0.0/16" if proto is V4 else "fd00:4::/64"
    await world.iptables(proto, "-t", "nat", "-D", "KILO-NAT", "-s", net, "-j", "MASQUERADE")
    await controller.reconcile()
    repaired = Reconciles(registry)
    assert repaired.total == 3
    assert (
        repaired.repaired == after_set.repaired + controller.last_stats["changes"] == after_set.repaired + 1
    )

    # A rule in a chain nobody made: the write fails, the reconcile raises.
    with pytest.raises(IPTablesError):
        await controller.set(RuleSet(append=[Rule("filter", "NOPE", ("-j", "ACCEPT"), proto)]))
    failed = Reconciles(registry)
    assert (failed.total, failed.errors, failed.observed, failed.desired) == (4, 1, 4, 1)
    assert failed.repaired == repaired.repaired
    assert sum(samples(registry, FAILURES, "operation").values()) >= 1
    assert samples(registry, FAILURES, "operation")[("restore",)] == 1

    await controller.set(RuleSet())
    await controller.cleanup()
    done = Reconciles(registry)
    assert (done.total, done.errors, done.desired) == (6, 1, 0)
    assert sum(samples(registry, OPERATIONS, "protocol").values()) == controller.calls
    assert samples(registry, OPERATIONS, "protocol") == {(proto.command,): controller.calls}
    assert [line for line in await world.snapshot(proto) if not line.startswith("-P")] == []


async def test_run_counts_each_resync() -> None:
    registry = CollectorRegistry()
    controller = Controller(FakeClient(), resync=0.01)
    instrument(controller, registry)
    await controller.set(kilo(V4))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            while value(registry, "aioiptables_reconciles_total") < 5:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert value(registry, "aioiptables_rules_repaired_total") == 6  # 2 chains and 4 rules, once
    assert value(registry, "aioiptables_reconcile_errors_total") == 0


async def test_both_protocols_are_counted_apart() -> None:
    registry = CollectorRegistry()
    shared = FakeRunner()
    controller = Controller(FakeClient(V4, runner=shared), FakeClient(V6, runner=shared))
    instrument(controller, registry)
    await controller.set(RuleSet(append=[*kilo(V4).append, *kilo(V6).append]))
    by_protocol = samples(registry, OPERATIONS, "protocol")
    assert set(by_protocol) == {("iptables",), ("ip6tables",)}
    assert sum(by_protocol.values()) == controller.calls
    assert value(registry, "aioiptables_rules_desired") == 8


def test_instrumenting_twice_changes_nothing() -> None:
    registry = CollectorRegistry()
    controller = Controller(FakeClient())
    first = instrument(controller, registry)
    runner = controller.clients[0].runner
    assert instrument(controller, registry) is first
    assert controller.clients[0].runner is runner
    assert isinstance(runner, MetricsRunner) and not isinstance(runner.inner, MetricsRunner)
    assert controller.listeners.count(first) == 1
    anyio.run(controller.reconcile)
    assert value(registry, "aioiptables_reconciles_total") == 1


def test_another_controller_needs_another_registry() -> None:
    registry = CollectorRegistry()
    instrument(Controller(FakeClient()), registry)
    other = Controller(FakeClient())
    with pytest.raises(ValueError, match="another CollectorRegistry"):
        instrument(other, registry)
    assert other.listeners == [] and not isinstance(other.clients[0].runner, MetricsRunner)
    assert isinstance(instrument(other, CollectorRegistry()), ControllerMetrics)


def test_close_stops_listening() -> None:
    registry = CollectorRegistry()
    controller = Controller(FakeClient())
    instrument(controller, registry).close()
    anyio.run(controller.reconcile)
    assert controller.listeners == []
    assert value(registry, "aioiptables_reconciles_total") == 0


# -- the optional dependency ---------------------------------------------------------------------


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_importing_aioiptables_does_not_import_prometheus_client() -> None:
    done = python("import sys, aioiptables; assert 'prometheus_client' not in sys.modules")
    assert done.returncode == 0, done.stderr


def test_without_prometheus_client_the_error_names_the_extra() -> None:
    done = python("import sys; sys.modules['prometheus_client'] = None; import aioiptables.metrics")
    assert done.returncode == 1
    assert "ImportError: aioiptables.metrics needs prometheus-client" in done.stderr
    assert "aioiptables[metrics]" in done.stderr
