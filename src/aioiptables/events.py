"""nf_tables change announcements: who changed which table, as it happens.

iptables-nft writes through nf_tables, and the kernel announces every
committed change on the netlink multicast group ``NFNLGRP_NFTABLES`` (what
``nft monitor`` prints): one message per table, chain or rule added or
deleted, then a "new generation" message naming the process that committed
them. :class:`Watcher` subscribes to that group from Python, in any network
namespace, with no child process, and yields one :class:`Generation` per
commit.

A small decoder of our own rather than a netlink library: four message
types and a handful of attributes are all it reads, and it keeps anyio the
only dependency. iptables-legacy changes are not announced: there is nothing
to subscribe to on that backend.

Example::

    async with Watcher(netns="test") as watcher:
        async for generation in watcher:
            print(generation.process, generation.pid, generation.tables)
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

import anyio

from .errors import IPTablesError
from .model import Protocol
from .runner import netns_path

__all__ = ["Change", "EventsLostError", "Generation", "Watcher"]

_NETLINK_NETFILTER = 12
_NFNLGRP_NFTABLES = 7
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
_NFNL_SUBSYS_NFTABLES = 10
_CLONE_NEWNET = 0x40000000
# nf_tables message types, and the attribute naming the table (and chain) in each.
_WHAT = {0: "table", 2: "table", 3: "chain", 5: "chain", 6: "rule", 8: "rule", 9: "set", 11: "set"}
_WHAT.update({12: "set element", 14: "set element", 18: "object", 20: "object"})
_NEW = frozenset({0, 3, 6, 9, 12, 18})
_CHAIN_ATTR = {"chain": 3, "rule": 2}  # NFTA_CHAIN_NAME, NFTA_RULE_CHAIN
_NEWGEN = 15
_FAMILIES = {2: Protocol.IPV4, 10: Protocol.IPV6}  # NFPROTO_IPV4, NFPROTO_IPV6
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, resource id (generation)
_ATTR = struct.Struct("=HH")


class EventsLostError(IPTablesError):
    """Announcements were lost (the socket's buffer overran): what changed
    meanwhile is unknown, so everything must be read again."""

    def __init__(self, message: str) -> None:
        super().__init__(("netlink", "NFNLGRP_NFTABLES"), 0, message)


@dataclass(frozen=True)
class Change:
    """One table, chain, rule or set added or deleted.

    ``proto`` is None for families iptables does not write (``inet``,
    ``arp``, ``bridge``: native nft tables); ``chain`` is None where the
    change is not to one chain."""

    proto: Protocol | None
    table: str
    chain: str | None
    what: str
    added: bool


@dataclass(frozen=True)
class Generation:
    """One commit: its changes, and the process that made it."""

    id: int
    pid: int
    process: str
    changes: tuple[Change, ...]

    @property
    def tables(self) -> frozenset[tuple[Protocol | None, str]]:
        """Every (protocol, table) this commit changed."""
        return frozenset((c.proto, c.table) for c in self.changes)


class Watcher:
    """A subscription to nf_tables' change announcements in one network
    namespace (the current one when ``netns`` is None), as an async iterator
    of :class:`Generation`. Raises :class:`EventsLostError` when
    announcements were lost; the subscription stays usable."""

    def __init__(self, netns: str | None = None, *, buffer: int = 4 << 20) -> None:
        self.netns = netns_path(netns) if netns else None
        self.buffer = buffer
        self._socket: socket.socket | None = None
        self._pending: list[Change] = []

    async def __aenter__(self) -> Watcher:
        self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Subscribe now (no process, no await): changes committed from here
        on are seen."""
        if self._socket is None:
            self._socket = _subscribe(self.netns, self.buffer)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __aiter__(self) -> AsyncIterator[Generation]:
        return self._generations()

    async def _generations(self) -> AsyncIterator[Generation]:
        self.open()
        assert self._socket is not None
        while True:
            await anyio.wait_readable(self._socket)
            for generation in self._drain():
                yield generation

    def _drain(self) -> list[Generation]:
        assert self._socket is not None
        found: list[Generation] = []
        while True:
            try:
                data = self._socket.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return found
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._pending.clear()
                    raise EventsLostError("nf_tables announcements were lost (buffer overrun)") from None
                raise
            found += self._decode(data)

    def _decode(self, data: bytes) -> list[Generation]:
        found = []
        for kind, family, _generation_id, attrs in _messages(data):
            if kind == _NEWGEN:
                found.append(_generation(attrs, self._pending))
                self._pending = []
            elif kind in _WHAT:
                what = _WHAT[kind]
                chain = attrs.get(_CHAIN_ATTR.get(what, -1))
                self._pending.append(
                    Change(
                        _FAMILIES.get(family),
                        _text(attrs.get(1, b"")),
                        _text(chain) if chain is not None else None,
                        what,
                        added=kind in _NEW,
                    )
                )
        return found


def _generation(attrs: dict[int, bytes], changes: list[Change]) -> Generation:
    def number(attr: int) -> int:
        value = attrs.get(attr, b"")
        return int.from_bytes(value, "big") if len(value) == 4 else 0

    return Generation(number(1), number(2), _text(attrs.get(3, b"")), tuple(changes))


def _messages(data: bytes) -> list[tuple[int, int, int, dict[int, bytes]]]:
    """Each nf_tables message: (type, family, resource id, attributes)."""
    out = []
    at = 0
    while at + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, at)
        if length < _HEADER.size or at + length > len(data):
            break
        if kind >> 8 == _NFNL_SUBSYS_NFTABLES and length >= _HEADER.size + _NFGEN.size:
            family, _version, resource = _NFGEN.unpack_from(data, at + _HEADER.size)
            body = data[at + _HEADER.size + _NFGEN.size : at + length]
            out.append((kind & 0xFF, family, socket.ntohs(resource), _attributes(body)))
        at += (length + 3) & ~3
    return out


def _attributes(body: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    at = 0
    while at + _ATTR.size <= len(body):
        length, kind = _ATTR.unpack_from(body, at)
        if length < _ATTR.size:
            break
        attrs.setdefault(kind & 0x7FFF, body[at + _ATTR.size : at + length])
        at += (length + 3) & ~3
    return attrs


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def _subscribe(netns: str | None, buffer: int) -> socket.socket:
    """A netlink socket subscribed to NFNLGRP_NFTABLES in ``netns``. A socket
    belongs to the namespace it was made in, so it is made by a thread of
    its own that enters the namespace and leaves it again."""
    if netns is None:
        return _make_socket(buffer)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def inside() -> None:
        try:
            made.append(_in_namespace(netns, buffer))
        except BaseException as exc:  # reported to the caller below
            failed.append(exc)

    worker = threading.Thread(target=inside, name="aioiptables-netns", daemon=True)
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    return made[0]


def _in_namespace(netns: str, buffer: int) -> socket.socket:
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns, os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"cannot enter the network namespace {netns}: {os.strerror(code)}")
        finally:
            os.close(target)
        try:
            return _make_socket(buffer)
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:  # pragma: no cover - the thread ends anyway
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
    finally:
        os.close(home)


def _make_socket(buffer: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        sock.bind((0, 0))
        sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTABLES)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
