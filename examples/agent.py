"""An agent that keeps a few Kilo-like iptables rules in place, the way a mesh
or CNI daemon embeds aioiptables.

    python examples/agent.py --config agent.toml [--netns NAME] [--metrics-port 9100]

It reads the rules from a TOML file, keeps them in place with a
:class:`~aioiptables.Controller` (repairing what others change at each
resync), and:

- on SIGHUP reloads the file and applies the new rules (a file that does not
  parse is logged and the rules in place are kept);
- serves Prometheus metrics on http://127.0.0.1:PORT/metrics (``0`` turns
  them off; they need ``pip install 'aioiptables[metrics]'``);
- on SIGTERM or SIGINT deletes every rule and chain it made and exits 0
  (1 when that cleanup fails).

Without ``--netns`` it changes this machine's own tables: try it in a
namespace of your own first (``ip netns add agent-demo``), as root.

The config file::

    resync = 30          # seconds between checks of every rule (default 30)
    backend = "auto"     # "auto" (default), "nft" or "legacy"; read at start only
    owner = "agent"      # optional, read at start only: tag every rule, and
                         # remove what an earlier run left behind when starting

    # One section per protocol (ipv4, ipv6) and table (filter, nat, mangle, raw,
    # security). "chains" are user chains to keep; "rules" are iptables -S lines:
    # "-A CHAIN ..." keeps the rule in that order at the end of the chain,
    # "-I CHAIN ..." keeps it at the top.
    [ipv4.nat]
    chains = ["KILO-NAT"]
    rules = [
        '-A KILO-NAT -d 10.4.0.0/16 -m comment --comment "Kilo: do not NAT packets destined for the mesh" -j RETURN',
        '-A KILO-NAT -s 10.4.0.0/16 -m comment --comment "Kilo: NAT packets from the pod subnet" -j MASQUERADE',
        '-A POSTROUTING -s 10.4.0.0/16 -m comment --comment "Kilo: jump to KILO-NAT chain" -j KILO-NAT',
    ]

    [ipv4.filter]
    rules = [
        '-A FORWARD -s 10.5.0.0/16 -m comment --comment "Kilo: forward packets from the mesh" -j ACCEPT',
        '-A FORWARD -d 10.5.0.0/16 -m comment --comment "Kilo: forward packets to the mesh" -j ACCEPT',
    ]

The protocols the file names at start get a client each; adding the other one
later needs a restart.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from aioiptables import Chain, Client, Controller, InvalidRuleError, IPTablesError, Protocol, Rule, RuleSet

logger = logging.getLogger("agent")

Backend = Literal["auto", "nft", "legacy"]
TABLES = ("filter", "nat", "mangle", "raw", "security")
PROTOCOLS = {"ipv4": Protocol.IPV4, "ipv6": Protocol.IPV6}
# Seconds the cleanup at exit may take before the agent gives up (exit 1).
CLEANUP_TIMEOUT = 60.0


# -- the config file -----------------------------------------------------------------------------


class ConfigError(Exception):
    """The config file cannot be read or says something wrong."""


@dataclass(frozen=True)
class Config:
    """What the config file asks for."""

    resync: float
    backend: Backend
    owner: str | None
    ruleset: RuleSet
    protocols: frozenset[Protocol]


async def read_config(path: str) -> Config:
    """Read and check the config file."""
    try:
        text = await anyio.Path(path).read_text()
        document = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return parse_config(document)
    except (ConfigError, InvalidRuleError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def parse_config(document: Mapping[str, Any]) -> Config:
    """The config in a parsed TOML document."""
    unknown = set(document) - {"resync", "backend", "owner", *PROTOCOLS}
    if unknown:
        raise ConfigError(f"unknown keys: {', '.join(sorted(unknown))}")
    resync = document.get("resync", 30)
    if isinstance(resync, bool) or not isinstance(resync, int | float) or resync <= 0:
        raise ConfigError(f"resync must be a positive number of seconds, not {resync!r}")
    backend = document.get("backend", "auto")
    if backend not in ("auto", "nft", "legacy"):
        raise ConfigError(f"backend must be 'auto', 'nft' or 'legacy', not {backend!r}")
    owner = document.get("owner")
    if owner is not None and not isinstance(owner, str):
        raise ConfigError(f"owner must be a string, not {owner!r}")
    append: list[Rule | Chain] = []
    prepend: list[Rule] = []
    protocols = set()
    for key, proto in PROTOCOLS.items():
        if key in document:
            protocols.add(proto)
            for table, section in _sections(document[key], key):
                _add_table(proto, table, section, append, prepend)
    return Config(float(resync), backend, owner, RuleSet(append, prepend), frozenset(protocols))


def _sections(tables: object, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The ``[ipv4.TABLE]`` sections, checked."""
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{where} must hold tables such as [{where}.nat]")
    for table, section in tables.items():
        if table not in TABLES:
            raise ConfigError(f"[{where}.{table}]: no such table (one of {', '.join(TABLES)})")
        if not isinstance(section, Mapping) or set(section) - {"chains", "rules"}:
            raise ConfigError(f"[{where}.{table}] may hold 'chains' and 'rules' only")
    return list(tables.items())


def _strings(section: Mapping[str, Any], key: str) -> list[str]:
    values = section.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key} must be a list of strings")
    return values


def _add_table(
    proto: Protocol, table: str, section: Mapping[str, Any], append: list[Rule | Chain], prepend: list[Rule]
) -> None:
    """Add one section's chains (first) and rules to the rule set being built."""
    append.extend(Chain(table, name, proto) for name in _strings(section, "chains"))
    for line in _strings(section, "rules"):
        rule = Rule.parse(line, table, proto)
        (prepend if line.lstrip().startswith(("-I", "--insert")) else append).append(rule)


# -- the agent -----------------------------------------------------------------------------------


def build_controller(config: Config, netns: str | None) -> Controller:
    """A controller with one client for each protocol the config names."""
    clients = {
        proto: Client(proto, backend=config.backend, netns=netns)
        for proto in config.protocols or {Protocol.IPV4}
    }
    return Controller(
        clients.get(Protocol.IPV4),
        clients.get(Protocol.IPV6),
        resync=config.resync,
        owner=config.owner,
    )


def start_metrics(controller: Controller, port: int) -> Callable[[], None]:
    """Serve the controller's metrics on 127.0.0.1:``port``; returns how to stop."""
    try:
        from prometheus_client import start_http_server

        from aioiptables.metrics import instrument
    except ImportError as exc:
        raise ConfigError(f"{exc} (or pass --metrics-port 0)") from exc
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
    """SIGHUP: read the config again and apply its rules and resync period."""
    try:
        config = await read_config(path)
    except ConfigError as exc:
        logger.error("reload failed, keeping the rules in place: %s", exc)
        return
    controller.resync = config.resync
    try:
        await apply(controller, config.ruleset)
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
        config = await read_config(args.config)
        controller = build_controller(config, args.netns)
        stop_metrics = start_metrics(controller, args.metrics_port) if args.metrics_port else None
    except (ConfigError, OSError) as exc:
        logger.error("%s", exc)
        return 2
    try:
        with anyio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                await apply(controller, config.ruleset)
                tg.start_soon(controller.run)
                async for signum in signals:
                    if signum != signal.SIGHUP:
                        logger.info("%s: cleaning up", signal.Signals(signum).name)
                        break
                    await reload(controller, args.config)
                tg.cancel_scope.cancel()
            # Still receiving signals: a second SIGTERM does not cut the cleanup short.
            return await cleanup(controller)
    finally:
        if stop_metrics is not None:
            await anyio.to_thread.run_sync(stop_metrics)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--config", required=True, help="the TOML file of rules (see the top of this file)")
    parser.add_argument("--netns", help="keep the rules in this network namespace (ip netns name or path)")
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
