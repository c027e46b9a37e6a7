"""An agent that keeps a few Kilo-like iptables rules in place, the way a mesh
or CNI daemon embeds aioiptables.

    python examples/agent.py --rules examples/kilo.toml [--netns NAME] [--owner NAME]
                             [--resync 30] [--backend auto] [--metrics-port 9100]

It reads its rules from a rule-set file, the one format ``aioiptables diff``
and ``aioiptables apply`` read too (docs/files.md describes it;
examples/kilo.toml is one), through :mod:`aioiptables.files`. It keeps them in
place with a :class:`~aioiptables.Controller` (repairing what others change at
each resync), and:

- on SIGHUP reads the file again and applies its rules (a file it cannot use
  is logged, with the line at fault, and the rules in place are kept);
- serves Prometheus metrics on http://127.0.0.1:PORT/metrics (``0`` turns
  them off; they need ``pip install 'aioiptables[metrics]'``);
- on SIGTERM or SIGINT deletes every rule and chain it made and exits 0
  (1 when that cleanup fails).

With ``--owner`` it tags every rule it writes, and removes what an earlier run
left behind when it starts. To see what it would change before running it::

    aioiptables diff --netns agent-demo --owner agent examples/kilo.toml

Without ``--netns`` it changes this machine's own tables: try it in a
namespace of your own first (``ip netns add agent-demo``), as root.

The protocols the file uses at start get a client each; adding the other one
later needs a restart.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

import anyio

from aioiptables import (
    Client,
    Controller,
    InvalidRuleError,
    IPTablesError,
    Protocol,
    RuleSet,
    RuleSetFileError,
    files,
)
from aioiptables.client import BackendName

logger = logging.getLogger("agent")

# Seconds the cleanup at exit may take before the agent gives up (exit 1).
CLEANUP_TIMEOUT = 60.0


async def read_rules(path: str) -> RuleSet:
    """The rule set in the file; OSError or RuleSetFileError (which names the line)."""
    return await anyio.to_thread.run_sync(files.load, path)


def build_controller(
    ruleset: RuleSet, *, backend: BackendName, netns: str | None, resync: float, owner: str | None
) -> Controller:
    """A controller with one client for each protocol the rule set uses."""
    protocols = {item.proto for item in ruleset} or {Protocol.IPV4}
    clients = {proto: Client(proto, backend=backend, netns=netns) for proto in protocols}
    return Controller(clients.get(Protocol.IPV4), clients.get(Protocol.IPV6), resync=resync, owner=owner)


def start_metrics(controller: Controller, port: int) -> Callable[[], None]:
    """Serve the controller's metrics on 127.0.0.1:``port``; returns how to stop."""
    try:
        from prometheus_client import start_http_server

        from aioiptables.metrics import instrument
    except ImportError as exc:
        raise ImportError(f"{exc} (or pass --metrics-port 0)") from exc
    instrument(controller)
    server, thread = start_http_server(port, addr="127.0.0.1")
    logger.info("metrics on http://127.0.0.1:%d/metrics", server.server_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop


async def apply(controller: Controller, ruleset: RuleSet) -> None:
    """Make ``ruleset`` the one kept. A failing reconcile is logged: the rules
    are kept all the same, and the next resync tries again."""
    try:
        await controller.set(ruleset)
    except IPTablesError as exc:
        logger.warning("applying the rules failed, retrying at the next resync: %s", exc)
    else:
        logger.info("rules in place: %s", _stats(controller))


async def reload(controller: Controller, path: str) -> None:
    """SIGHUP: read the rules again and apply them."""
    try:
        ruleset = await read_rules(path)
    except (OSError, RuleSetFileError) as exc:
        logger.error("reload failed, keeping the rules in place: %s", exc)
        return
    try:
        await apply(controller, ruleset)
    except InvalidRuleError as exc:  # rules of a protocol without a client
        logger.error("reload failed, keeping the rules in place (restart to add a protocol): %s", exc)
        return
    logger.info("reloaded %s", path)


async def cleanup(controller: Controller) -> int:
    """Delete every rule and chain of the agent; the exit status."""
    try:
        with anyio.fail_after(CLEANUP_TIMEOUT):
            await controller.cleanup()
    except (IPTablesError, TimeoutError) as exc:
        logger.error("cleanup failed, rules may be left behind: %s", str(exc) or "timed out")
        return 1
    logger.info("cleaned up: %s", _stats(controller))
    return 0


def _stats(controller: Controller) -> str:
    stats = controller.last_stats
    return " ".join(f"{key}={stats[key]:g}" for key in ("processes", "writes", "changes") if key in stats)


async def serve(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM or SIGINT; the exit status."""
    try:
        ruleset = await read_rules(args.rules)
        controller = build_controller(
            ruleset, backend=args.backend, netns=args.netns, resync=args.resync, owner=args.owner
        )
        stop_metrics = start_metrics(controller, args.metrics_port) if args.metrics_port else None
    except (OSError, ImportError, InvalidRuleError) as exc:  # RuleSetFileError is an InvalidRuleError
        logger.error("%s", exc)
        return 2
    try:
        with anyio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                await apply(controller, ruleset)
                tg.start_soon(controller.run)
                async for signum in signals:
                    if signum != signal.SIGHUP:
                        logger.info("%s: cleaning up", signal.Signals(signum).name)
                        break
                    await reload(controller, args.rules)
                tg.cancel_scope.cancel()
            # Still receiving signals: a second SIGTERM does not cut the cleanup short.
            return await cleanup(controller)
    finally:
        if stop_metrics is not None:
            await anyio.to_thread.run_sync(stop_metrics)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rules", required=True, metavar="FILE", help="the rule-set file (docs/files.md)")
    parser.add_argument("--netns", help="keep the rules in this network namespace (ip netns name or path)")
    parser.add_argument("--owner", help="tag every rule with NAME, and remove an earlier run's leftovers")
    parser.add_argument(
        "--resync", type=_seconds, default=30.0, metavar="SECONDS", help="seconds between checks (default 30)"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "nft", "legacy"),
        default="auto",
        help="iptables binaries (default auto)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9100, help="serve metrics on 127.0.0.1:PORT (0: off)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every process")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return anyio.run(serve, args)


if __name__ == "__main__":
    sys.exit(main())
