"""Prometheus metrics for clients and controllers (the ``metrics`` extra).

Needs ``prometheus-client`` (``pip install 'aioiptables[metrics]'``); the rest
of aioiptables never imports it.

- :class:`MetricsRunner` wraps any :class:`~aioiptables.runner.Runner` and
  counts every process it runs, as Kilo's ``kilo_iptables_operations_total``
  does, with the operation, table and chain read from the argv;
- :func:`instrument` wraps every client of a :class:`~aioiptables.Controller`
  that way and listens to its reconciles.

Every metric lives in one registry (the default one unless given), created
once per registry and shared by every runner and client using it:

=============================================  =========  =================================================
name                                           type       labels
=============================================  =========  =================================================
``aioiptables_iptables_operations_total``      counter    operation, table, chain, protocol, backend
``aioiptables_iptables_failures_total``        counter    operation, table, protocol, backend, exit_status
``aioiptables_iptables_duration_seconds``      histogram  operation, protocol, backend
``aioiptables_reconciles_total``               counter
``aioiptables_reconcile_errors_total``         counter
``aioiptables_reconcile_duration_seconds``     histogram
``aioiptables_rules_repaired_total``           counter
``aioiptables_rules_desired``                  gauge
=============================================  =========  =================================================

>>> import anyio
>>> from prometheus_client import CollectorRegistry
>>> from aioiptables import FakeClient
>>> registry = CollectorRegistry()
>>> fake = FakeClient()
>>> fake.runner = MetricsRunner(fake.runner, registry, backend=fake.backend)
>>> anyio.run(fake.append_unique, "filter", "INPUT", "-j", "ACCEPT")
>>> labels = {"table": "filter", "chain": "INPUT", "protocol": "iptables", "backend": "nft"}
>>> registry.get_sample_value("aioiptables_iptables_operations_total", {"operation": "check", **labels})
1.0
>>> registry.get_sample_value("aioiptables_iptables_operations_total", {"operation": "append", **labels})
1.0
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable, Sequence

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "aioiptables.metrics needs prometheus-client: pip install 'aioiptables[metrics]'",
        name=exc.name,
    ) from exc

from .client import Client, Operation, parse_operation
from .controller import Controller
from .errors import IPTablesNotFoundError, IPTablesTimeoutError
from .model import Rule
from .runner import Completed, Runner

__all__ = ["ControllerMetrics", "MetricsRunner", "Operation", "instrument", "parse_operation"]

# iptables processes take milliseconds; a busy xtables lock makes them take seconds.
_PROCESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _client_backend(client: Client) -> str:
    return client.backend


def _backend_of(program: str) -> str:
    """``nft`` or ``legacy``, from the program's name or the file it resolves
    to (``iptables`` is usually a link to ``xtables-nft-multi``)."""
    name = os.path.basename(program)
    for backend in ("nft", "legacy"):
        if f"-{backend}" in name:
            return backend
    found = shutil.which(program, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    real = os.path.basename(os.path.realpath(found or program))
    return "nft" if "nft" in real else "legacy"


class _RunnerCollectors:
    """The process metrics of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.operations = Counter(
            "aioiptables_iptables_operations_total",
            "iptables processes run, by operation, table and chain (as kilo_iptables_operations_total).",
            ["operation", "table", "chain", "protocol", "backend"],
            registry=registry,
        )
        self.failures = Counter(
            "aioiptables_iptables_failures_total",
            "iptables processes that failed, by exit status ('timeout' when killed, 'not_found' when missing).",
            ["operation", "table", "protocol", "backend", "exit_status"],
            registry=registry,
        )
        self.duration = Histogram(
            "aioiptables_iptables_duration_seconds",
            "Wall-clock seconds each iptables process took, lock waits included.",
            ["operation", "protocol", "backend"],
            buckets=_PROCESS_BUCKETS,
            registry=registry,
        )


class _ControllerCollectors:
    """The reconcile metrics of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reconciles = Counter(
            "aioiptables_reconciles_total", "Reconciles run, failed ones included.", registry=registry
        )
        self.errors = Counter(
            "aioiptables_reconcile_errors_total", "Reconciles that raised an error.", registry=registry
        )
        self.duration = Histogram(
            "aioiptables_reconcile_duration_seconds",
            "Seconds each reconcile took, reads and writes included.",
            buckets=_RECONCILE_BUCKETS,
            registry=registry,
        )
        self.repaired = Counter(
            "aioiptables_rules_repaired_total",
            "Changes (rules and chains added, moved or removed) written by successful reconciles.",
            registry=registry,
        )
        self.desired = Gauge(
            "aioiptables_rules_desired", "Rules in the controller's rule set.", registry=registry
        )
        #: The controller these metrics describe (one per registry).
        self.owner: weakref.ref[Controller] | None = None


# Each registry gets its collectors once: registering a name twice is an error.
_lock = threading.Lock()
_runner_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _RunnerCollectors] = (
    weakref.WeakKeyDictionary()
)
_controller_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _ControllerCollectors] = (
    weakref.WeakKeyDictionary()
)


def _collectors_for(registry: CollectorRegistry) -> _RunnerCollectors:
    with _lock:
        if registry not in _runner_collectors:
            _runner_collectors[registry] = _RunnerCollectors(registry)
        return _runner_collectors[registry]


class MetricsRunner(Runner):
    """A runner that counts every process the ``inner`` runner runs.

    Each call to :meth:`run` is one process of the inner runner (retries of a
    busy lock are separate calls, so separate counts): it adds one to
    ``aioiptables_iptables_operations_total``, observes its duration, and
    when it exits non-zero, times out or finds no program, adds one to
    ``aioiptables_iptables_failures_total``. A call is counted when it ends,
    however it ends (cancelled calls included), so the counts always equal
    the client's ``calls``, and the inner runner's but for calls it refuses
    before starting a process (a :class:`~aioiptables.ProcessRunner` given a
    namespace that does not exist, or cancelled while queued for its
    concurrency limit).

    Args:
        inner: the runner that runs the processes.
        registry: where the metrics live (default: prometheus_client's
            global ``REGISTRY``).
        backend: the ``backend`` label, or a function giving it at each
            process (a client's backend, learned at its first process when
            its binary is a wrapper script); by default read from each
            program's name (``iptables-nft``), or the file it resolves to.
    """

    def __init__(
        self,
        inner: Runner,
        registry: CollectorRegistry | None = None,
        *,
        backend: str | Callable[[], str] | None = None,
    ) -> None:
        self.inner = inner
        self.registry = registry if registry is not None else REGISTRY
        self.backend = backend
        self._metrics = _collectors_for(self.registry)
        self._backends: dict[str, str] = {}

    @property
    def calls(self) -> int:
        """The inner runner's count: this wrapper spawns nothing itself."""
        return self.inner.calls

    @calls.setter
    def calls(self, value: int) -> None:
        self.inner.calls = value

    def __repr__(self) -> str:
        return f"MetricsRunner({self.inner!r})"

    def _backend(self, program: str) -> str:
        if callable(self.backend):
            return self.backend()
        if self.backend is not None:
            return self.backend
        if program not in self._backends:
            self._backends[program] = _backend_of(program)
        return self._backends[program]

    async def run(
        self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        """Run ``argv`` through the inner runner and count it."""
        op = parse_operation(argv, input)
        backend = self._backend(argv[0] if argv else "")
        started = time.monotonic()
        status: str | None = None
        try:
            done = await self.inner.run(argv, input=input, timeout=timeout)
            status = str(done.exit_status) if done.exit_status else None
            return done
        except IPTablesTimeoutError:
            status = "timeout"
            raise
        except IPTablesNotFoundError:
            status = "not_found"
            raise
        finally:
            self._count(op, backend, status, time.monotonic() - started)

    def _count(self, op: Operation, backend: str, status: str | None, seconds: float) -> None:
        metrics = self._metrics
        metrics.operations.labels(op.operation, op.table, op.chain, op.protocol, backend).inc()
        metrics.duration.labels(op.operation, op.protocol, backend).observe(seconds)
        if status is not None:
            metrics.failures.labels(op.operation, op.table, op.protocol, backend, status).inc()


class ControllerMetrics:
    """The reconcile metrics of one controller, kept up to date by a listener.

    Made by :func:`instrument`, which registers it in the controller's
    ``listeners``; every reconcile (through ``set``, ``reconcile``, ``run``
    or ``cleanup``) then counts itself, observes its duration, and adds the
    changes it wrote to ``aioiptables_rules_repaired_total``. The
    ``aioiptables_rules_desired`` gauge follows the rule set.
    """

    def __init__(self, controller: Controller, registry: CollectorRegistry) -> None:
        self.controller = controller
        self.registry = registry
        self._metrics = _claim(registry, controller)
        self._metrics.desired.set(desired_rules(controller))

    def __call__(self, controller: Controller, seconds: float, error: Exception | None) -> None:
        """The listener: one reconcile ended, in ``seconds``, raising ``error``."""
        metrics = self._metrics
        metrics.reconciles.inc()
        metrics.duration.observe(seconds)
        metrics.desired.set(desired_rules(controller))
        if error is not None:
            metrics.errors.inc()  # last_stats still describe the reconcile before
            return
        if controller.last_stats.get("writes", 0) > 0:
            metrics.repaired.inc(controller.last_stats.get("changes", 0))

    def close(self) -> None:
        """Stop listening to the controller (the metrics stay registered)."""
        if self in self.controller.listeners:
            self.controller.listeners.remove(self)


def _claim(registry: CollectorRegistry, controller: Controller) -> _ControllerCollectors:
    """The registry's reconcile metrics, for ``controller`` alone."""
    with _lock:
        metrics = _controller_collectors.get(registry)
        if metrics is None:
            metrics = _controller_collectors[registry] = _ControllerCollectors(registry)
        owner = metrics.owner() if metrics.owner is not None else None
        if owner is not None and owner is not controller:
            raise ValueError(
                f"this registry already holds the reconcile metrics of {owner!r}; "
                "pass another CollectorRegistry for another controller"
            )
        metrics.owner = weakref.ref(controller)
        return metrics


def desired_rules(controller: Controller) -> int:
    """How many rules (not chains) the controller keeps."""
    return sum(isinstance(item, Rule) for item in (*controller.append_rules, *controller.prepend_rules))


def instrument(controller: Controller, registry: CollectorRegistry | None = None) -> ControllerMetrics:
    """Count the processes and reconciles of ``controller`` in ``registry``.

    Wraps each client's runner in a :class:`MetricsRunner` (labelled with the
    client's backend) and adds a :class:`ControllerMetrics` listener.
    Instrumenting the same controller again returns the same object and
    changes nothing. The reconcile metrics of a registry describe one
    controller: another controller raises :class:`ValueError` (give it
    another registry).
    """
    registry = registry if registry is not None else REGISTRY
    for listener in controller.listeners:
        if isinstance(listener, ControllerMetrics) and listener.registry is registry:
            return listener
    metrics = ControllerMetrics(controller, registry)  # raises for a second controller
    for client in controller.clients:
        if not (isinstance(client.runner, MetricsRunner) and client.runner.registry is registry):
            # Read at each process: an "auto" client behind a wrapper script
            # learns its backend at its first one.
            client.runner = MetricsRunner(
                client.runner, registry, backend=functools.partial(_client_backend, client)
            )
    controller.listeners.append(metrics)
    return metrics
