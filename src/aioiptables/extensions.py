"""What aioiptables knows of iptables' match and target extensions.

Each :class:`Extension` lists its options in the order iptables prints them,
with their other spellings and a function that brings a value to the form
iptables prints (``--dport http`` to ``80``, ``--icmp-type echo-request`` to
``8``). A ``finish`` step fills in the defaults iptables adds and drops the
ones it omits (``-j REJECT`` gains ``--reject-with icmp-port-unreachable``,
``--limit-burst 5`` disappears).

Everything here was checked against iptables 1.8.9 on both backends (see
tests/test_canonical.py). A value a normalizer cannot read raises
:class:`Unsupported`, and the parser then compares that part as text: an
unknown spelling can cost a miss, never a false match.
"""

from __future__ import annotations

import functools
import grp
import ipaddress
import pwd
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .model import Protocol

__all__ = [
    "Unsupported",
    "Option",
    "Extension",
    "Values",
    "Options",
    "MATCHES",
    "TARGETS",
    "IMPLICIT",
    "normalize_address",
    "normalize_protocol",
    "verbatim",
]


class Unsupported(ValueError):
    """A value or option the canonicalizer does not understand."""


#: The values of one option, as tokens.
Values = tuple[str, ...]
#: One extension's options: canonical name -> (negated, values).
Options = dict[str, tuple[bool, Values]]
Normalizer = Callable[[Values, Protocol], Values]
Finisher = Callable[[Options, Protocol], None]


@dataclass(frozen=True)
class Option:
    """One option of an extension: its printed name, other spellings, how many
    value tokens it takes and how to normalize them."""

    name: str
    aliases: tuple[str, ...] = ()
    nargs: int = 1
    normalize: Normalizer | None = None


@dataclass(frozen=True)
class Extension:
    """A match (``-m NAME``) or target (``-j NAME``) and its options."""

    name: str
    options: tuple[Option, ...] = ()
    finish: Finisher | None = None
    #: iptables-nft folds a repeated match of this kind into one; so do we.
    mergeable: bool = False
    by_flag: Mapping[str, Option] = field(init=False, repr=False, compare=False)
    order: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flags: dict[str, Option] = {}
        for option in self.options:
            for flag in (option.name, *option.aliases):
                flags[flag] = option
        object.__setattr__(self, "by_flag", flags)
        object.__setattr__(self, "order", {o.name: i for i, o in enumerate(self.options)})


# -- values --------------------------------------------------------------------------------------


def _one(norm: Callable[[str, Protocol], str]) -> Normalizer:
    def apply(values: Values, proto: Protocol) -> Values:
        return (norm(values[0], proto),)

    return apply


@functools.lru_cache(maxsize=65536)
def normalize_address(value: str, proto: Protocol) -> str:
    """``10.1.2.3/8`` -> ``10.0.0.0/8``; ``1.2.3.4`` -> ``1.2.3.4/32``;
    dotted masks to prefixes; IPv6 lower-cased and compressed."""
    try:
        if proto is Protocol.IPV4:
            quick = _quick_v4(value)
            if quick is not None:
                return quick
            net4 = ipaddress.IPv4Network(value, strict=False)
            return f"{net4.network_address}/{net4.prefixlen}"
        net6 = ipaddress.IPv6Network(value, strict=False)
    except ValueError:
        raise Unsupported(value) from None
    if net6.network_address.ipv4_mapped is not None:
        raise Unsupported(value)  # inet_ntop prints these its own way
    return f"{net6.network_address}/{net6.prefixlen}"


_V4 = re.compile(r"(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})(?:/(\d{1,2}))?")


def _quick_v4(value: str) -> str | None:
    """``a.b.c.d[/len]`` without the ipaddress module (ten times faster), or
    None for anything else (dotted masks, leading zeros), which goes the long way."""
    match = _V4.fullmatch(value)
    if match is None:
        return None
    a, b, c, d, length = match.groups()
    prefix = int(length) if length is not None else 32
    number = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    if prefix > 32 or number > 0xFFFFFFFF or max(int(a), int(b), int(c), int(d)) > 255:
        return None
    number &= (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return f"{number >> 24}.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}/{prefix}"


def _address(value: str, proto: Protocol) -> str:
    return normalize_address(value, proto)


def _plain_address(value: str, proto: Protocol) -> str:
    """An address without a prefix, as iprange and conntrack print it."""
    try:
        if proto is Protocol.IPV4:
            return str(ipaddress.IPv4Address(value))
        address = ipaddress.IPv6Address(value)
    except ValueError:
        raise Unsupported(value) from None
    return str(address)


_PROTO_NAMES = {
    "0": "all", "1": "icmp", "2": "igmp", "4": "ipencap", "6": "tcp", "17": "udp", "33": "dccp",
    "41": "ipv6", "47": "gre", "50": "esp", "51": "ah", "58": "ipv6-icmp", "103": "pim",
    "112": "vrrp", "132": "sctp", "135": "ipv6-mh", "136": "udplite",
}  # fmt: skip
_PROTO_ALIASES = {"icmpv6": "ipv6-icmp", "mh": "ipv6-mh"}


@functools.lru_cache(maxsize=1)
def _etc_protocols() -> dict[str, str]:
    """Number -> name from /etc/protocols, as getprotobynumber() would answer."""
    names: dict[str, str] = {}
    try:
        with open("/etc/protocols") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and fields[1].isdigit():
                    names.setdefault(fields[1], fields[0])
    except OSError:
        pass
    return names


@functools.lru_cache(maxsize=256)
def normalize_protocol(value: str, proto: Protocol = Protocol.IPV4) -> str:
    """A protocol as iptables prints it: ``6`` and ``TCP`` -> ``tcp``."""
    lower = value.lower()
    lower = _PROTO_ALIASES.get(lower, lower)
    if lower.isdigit():
        number = str(int(lower))
        if not 0 <= int(number) <= 255:
            raise Unsupported(value)
        return _PROTO_NAMES.get(number) or _etc_protocols().get(number) or number
    known = set(_PROTO_NAMES.values()) | set(_etc_protocols().values())
    if lower not in known:
        raise Unsupported(value)
    return lower


@functools.lru_cache(maxsize=4096)
def _port(value: str, proto: str) -> str:
    if value.isdigit():
        number = int(value)
    else:
        try:
            number = socket.getservbyname(value, proto)
        except OSError:
            raise Unsupported(value) from None
    if not 0 <= number <= 65535:
        raise Unsupported(value)
    return str(number)


def _port_range(value: str, proto: str) -> str:
    if ":" not in value:
        return _port(value, proto)
    low, _, high = value.partition(":")
    low = _port(low, proto) if low else "0"
    high = _port(high, proto) if high else "65535"
    return low if low == high else f"{low}:{high}"


def _ports_for(protocol: str) -> Normalizer:
    def apply(values: Values, proto: Protocol) -> Values:
        return (_port_range(values[0], protocol),)

    return apply


def _multiport(values: Values, proto: Protocol) -> Values:
    # multiport resolves service names as tcp whatever the protocol.
    parts = values[0].split(",")
    return (",".join(_port_range(part, "tcp") for part in parts),)


def _set_of(order: tuple[str, ...], upper: bool = True) -> Normalizer:
    index = {name: i for i, name in enumerate(order)}

    def apply(values: Values, proto: Protocol) -> Values:
        items = [v.upper() if upper else v for v in values[0].split(",")]
        if any(item not in index for item in items):
            raise Unsupported(values[0])
        return (",".join(sorted(set(items), key=index.__getitem__)),)

    return apply


def _hex_mark(value: str) -> tuple[int, int | None]:
    mark, _, mask = value.partition("/")
    try:
        return int(mark, 0), (int(mask, 0) if mask else None)
    except ValueError:
        raise Unsupported(value) from None


def _mark_value(values: Values, proto: Protocol) -> Values:
    """``--mark 1`` -> ``0x1``; a full mask is not printed."""
    mark, mask = _hex_mark(values[0])
    if mask is None or mask == 0xFFFFFFFF:
        return (f"{mark:#x}",)
    return (f"{mark:#x}/{mask:#x}",)


def _integer(values: Values, proto: Protocol) -> Values:
    try:
        return (str(int(values[0], 0)),)
    except ValueError:
        raise Unsupported(values[0]) from None


def _upper(values: Values, proto: Protocol) -> Values:
    return tuple(v.upper() for v in values)


def verbatim(values: Values, proto: Protocol) -> Values:
    """The normalizer of values iptables prints as given (the parser's fast
    path skips extensions made only of these)."""
    return values


_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")


def _flag_list(value: str) -> str:
    names = set(value.upper().split(","))
    if "ALL" in names:
        names = set(_TCP_FLAGS)
    if "NONE" in names:
        names.discard("NONE")
        if not names:
            return "NONE"
    if not names <= set(_TCP_FLAGS):
        raise Unsupported(value)
    return ",".join(f for f in _TCP_FLAGS if f in names) or "NONE"


def _tcp_flags(values: Values, proto: Protocol) -> Values:
    return (_flag_list(values[0]), _flag_list(values[1]))


# ICMP types by name, as libxt_icmp knows them: name -> "type" or "type/code".
_ICMP_TYPES = {
    "any": "any", "echo-reply": "0", "pong": "0", "destination-unreachable": "3",
    "network-unreachable": "3/0", "host-unreachable": "3/1", "protocol-unreachable": "3/2",
    "port-unreachable": "3/3", "fragmentation-needed": "3/4", "source-route-failed": "3/5",
    "network-unknown": "3/6", "host-unknown": "3/7", "network-prohibited": "3/9",
    "host-prohibited": "3/10", "TOS-network-unreachable": "3/11", "TOS-host-unreachable": "3/12",
    "communication-prohibited": "3/13", "host-precedence-violation": "3/14",
    "precedence-cutoff": "3/15", "source-quench": "4", "redirect": "5", "network-redirect": "5/0",
    "host-redirect": "5/1", "TOS-network-redirect": "5/2", "TOS-host-redirect": "5/3",
    "echo-request": "8", "ping": "8", "router-advertisement": "9", "router-solicitation": "10",
    "time-exceeded": "11", "ttl-exceeded": "11", "ttl-zero-during-transit": "11/0",
    "ttl-zero-during-reassembly": "11/1", "parameter-problem": "12", "ip-header-bad": "12/0",
    "required-option-missing": "12/1", "timestamp-request": "13", "timestamp-reply": "14",
    "address-mask-request": "17", "address-mask-reply": "18",
}  # fmt: skip

_ICMP6_TYPES = {
    "destination-unreachable": "1", "no-route": "1/0", "communication-prohibited": "1/1",
    "beyond-scope": "1/2", "address-unreachable": "1/3", "port-unreachable": "1/4",
    "failed-policy": "1/5", "reject-route": "1/6", "packet-too-big": "2", "time-exceeded": "3",
    "ttl-exceeded": "3", "ttl-zero-during-transit": "3/0", "ttl-zero-during-reassembly": "3/1",
    "parameter-problem": "4", "bad-header": "4/0", "unknown-header-type": "4/1",
    "unknown-option": "4/2", "echo-request": "128", "ping": "128", "echo-reply": "129",
    "pong": "129", "mld-listener-query": "130", "mld-listener-report": "131",
    "mld-listener-done": "132", "mld-listener-reduction": "132", "router-solicitation": "133",
    "router-advertisement": "134", "neighbour-solicitation": "135",
    "neighbor-solicitation": "135", "neighbour-advertisement": "136",
    "neighbor-advertisement": "136", "redirect": "137",
}  # fmt: skip


def _icmp_type(table: Mapping[str, str]) -> Normalizer:
    def apply(values: Values, proto: Protocol) -> Values:
        value = values[0]
        named = table.get(value)
        if named is not None:
            return (named,)
        kind, slash, code = value.partition("/")
        if not kind.isdigit() or (slash and not code.isdigit()):
            raise Unsupported(value)
        if int(kind) > 255 or (slash and int(code) > 255):
            raise Unsupported(value)
        return (f"{int(kind)}/{int(code)}" if slash else str(int(kind)),)

    return apply


def _user(values: Values, proto: Protocol) -> Values:
    return (_id_range(values[0], lambda name: pwd.getpwnam(name).pw_uid),)


def _group(values: Values, proto: Protocol) -> Values:
    return (_id_range(values[0], lambda name: grp.getgrnam(name).gr_gid),)


def _id_range(value: str, lookup: Callable[[str], int]) -> str:
    def one(part: str) -> str:
        if part.isdigit():
            return str(int(part))
        try:
            return str(lookup(part))
        except KeyError:
            raise Unsupported(part) from None

    low, dash, high = value.partition("-")
    if not dash:
        return one(low)
    low, high = one(low), one(high)
    return low if low == high else f"{low}-{high}"


def _mac(values: Values, proto: Protocol) -> Values:
    parts = values[0].split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise Unsupported(values[0])
    try:
        return (":".join(f"{int(p, 16):02X}" for p in parts),)
    except ValueError:
        raise Unsupported(values[0]) from None


def _address_range(values: Values, proto: Protocol) -> Values:
    low, dash, high = values[0].partition("-")
    if not dash:
        raise Unsupported(values[0])
    return (f"{_plain_address(low, proto)}-{_plain_address(high, proto)}",)


def _length(values: Values, proto: Protocol) -> Values:
    low, colon, high = values[0].partition(":")
    if not low.isdigit() or (colon and high and not high.isdigit()):
        raise Unsupported(values[0])
    if not colon:
        return (str(int(low)),)
    top = str(int(high)) if high else "65535"
    return (str(int(low)) if str(int(low)) == top else f"{int(low)}:{top}",)


_RATE_UNITS = {
    "s": "sec", "sec": "sec", "second": "sec", "m": "min", "min": "min", "minute": "min",
    "h": "hour", "hour": "hour", "d": "day", "day": "day",
}  # fmt: skip
_SCALE = 10000  # XT_LIMIT_SCALE
_UNIT_SECONDS = {"day": 86400, "hour": 3600, "min": 60, "sec": 1}


def _rate(values: Values, proto: Protocol) -> Values:
    """A rate the way libxt_limit prints it: ``60/min`` -> ``1/sec``."""
    value = values[0]
    number, slash, unit = value.partition("/")
    if not number.isdigit() or int(number) == 0:
        raise Unsupported(value)
    name = _RATE_UNITS.get(unit.lower() if slash else "sec")
    if name is None:
        raise Unsupported(value)
    period = _UNIT_SECONDS[name] * _SCALE // int(number)
    return (_print_rate(period),)


def _print_rate(period: int) -> str:
    units = [("day", 86400 * _SCALE), ("hour", 3600 * _SCALE), ("min", 60 * _SCALE), ("sec", _SCALE)]
    chosen = 0
    for index in range(1, len(units)):
        mult = units[index][1]
        if period > mult or mult // period < mult % period:
            break
        chosen = index
    name, mult = units[chosen]
    return f"{mult // period}/{name}"


def _probability(values: Values, proto: Protocol) -> Values:
    try:
        probability = float(values[0])
    except ValueError:
        raise Unsupported(values[0]) from None
    if not 0 <= probability <= 1:
        raise Unsupported(values[0])
    # The kernel keeps 31 bits; iptables prints what it reads back.
    stored = int(probability * 0x80000000) & 0x7FFFFFFF if probability < 1 else 0x7FFFFFFF
    return (f"{stored / 0x80000000:.11f}",)


# -- finishing touches ---------------------------------------------------------------------------


def _drop_if(options: Options, name: str, default: Values) -> None:
    found = options.get(name)
    if found is not None and not found[0] and found[1] == default:
        del options[name]


def _finish_tcp(options: Options, proto: Protocol) -> None:
    syn = options.pop("--syn", None)
    if syn is not None:
        if "--tcp-flags" in options:
            raise Unsupported("--syn with --tcp-flags")
        options["--tcp-flags"] = (syn[0], ("FIN,SYN,RST,ACK", "SYN"))


def _finish_limit(options: Options, proto: Protocol) -> None:
    _drop_if(options, "--limit-burst", ("5",))
    if "--limit" not in options:
        options["--limit"] = (False, ("3/hour",))


def _finish_recent(options: Options, proto: Protocol) -> None:
    options.setdefault("--name", (False, ("DEFAULT",)))
    full = "255.255.255.255" if proto is Protocol.IPV4 else "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    options.setdefault("--mask", (False, (full,)))
    if "--rdest" not in options:
        options.setdefault("--rsource", (False, ()))


def _finish_log(options: Options, proto: Protocol) -> None:
    _drop_if(options, "--log-level", ("4",))


_LOG_LEVELS = {
    "emerg": "0", "panic": "0", "alert": "1", "crit": "2", "err": "3", "error": "3",
    "warning": "4", "warn": "4", "notice": "5", "info": "6", "debug": "7",
}  # fmt: skip


def _log_level(values: Values, proto: Protocol) -> Values:
    value = values[0].lower()
    level = _LOG_LEVELS.get(value, value)
    if not level.isdigit() or int(level) > 7:
        raise Unsupported(values[0])
    return (level,)


def _finish_reject(options: Options, proto: Protocol) -> None:
    default = "icmp-port-unreachable" if proto is Protocol.IPV4 else "icmp6-port-unreachable"
    options.setdefault("--reject-with", (False, (default,)))


_REJECT4 = {
    "icmp-net-unreachable": "icmp-net-unreachable", "net-unreach": "icmp-net-unreachable",
    "icmp-host-unreachable": "icmp-host-unreachable", "host-unreach": "icmp-host-unreachable",
    "icmp-proto-unreachable": "icmp-proto-unreachable", "proto-unreach": "icmp-proto-unreachable",
    "icmp-port-unreachable": "icmp-port-unreachable", "port-unreach": "icmp-port-unreachable",
    "icmp-net-prohibited": "icmp-net-prohibited", "net-prohib": "icmp-net-prohibited",
    "icmp-host-prohibited": "icmp-host-prohibited", "host-prohib": "icmp-host-prohibited",
    "icmp-admin-prohibited": "icmp-admin-prohibited", "admin-prohib": "icmp-admin-prohibited",
    "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset",
}  # fmt: skip
_REJECT6 = {
    "icmp6-no-route": "icmp6-no-route", "no-route": "icmp6-no-route",
    "icmp6-adm-prohibited": "icmp6-adm-prohibited", "adm-prohibited": "icmp6-adm-prohibited",
    "icmp6-addr-unreachable": "icmp6-addr-unreachable", "addr-unreach": "icmp6-addr-unreachable",
    "icmp6-port-unreachable": "icmp6-port-unreachable", "port-unreach": "icmp6-port-unreachable",
    "icmp6-policy-fail": "icmp6-policy-fail", "policy-fail": "icmp6-policy-fail",
    "icmp6-reject-route": "icmp6-reject-route", "reject-route": "icmp6-reject-route",
    "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset",
}  # fmt: skip


def _reject_with(values: Values, proto: Protocol) -> Values:
    table = _REJECT4 if proto is Protocol.IPV4 else _REJECT6
    found = table.get(values[0])
    if found is None:
        raise Unsupported(values[0])
    return (found,)


def _finish_mark_target(options: Options, proto: Protocol) -> None:
    """MARK and CONNMARK print every way of setting a mark as --set-xmark."""
    names = ("--set-mark", "--set-xmark", "--and-mark", "--or-mark", "--xor-mark")
    ops = [name for name in names if name in options]
    if len(ops) > 1:
        raise Unsupported("two mark operations")
    if not ops:
        return
    name = ops[0]
    _, (value,) = options.pop(name)
    mark, mask = _hex_mark(value)
    if name in ("--set-mark", "--set-xmark"):
        result = (mark, 0xFFFFFFFF if mask is None else mask)
        if name == "--set-mark" and mask is not None:
            result = (mark, mask | mark)  # --set-mark X/Y is --set-xmark X/(X|Y)
    elif mask is not None:
        raise Unsupported(value)
    elif name == "--and-mark":
        result = (0, ~mark & 0xFFFFFFFF)
    elif name == "--or-mark":
        result = (mark, mark)
    else:
        result = (mark, 0)
    options["--set-xmark"] = (False, (f"{result[0]:#x}/{result[1]:#x}",))


def _finish_connmark_target(options: Options, proto: Protocol) -> None:
    _finish_mark_target(options, proto)
    for mode in ("--save-mark", "--restore-mark"):
        if mode in options:
            mask = options.pop("--mask", None)
            default = mask[1] if mask else ("0xffffffff",)
            options.setdefault("--nfmask", (False, default))
            options.setdefault("--ctmask", (False, default))


def _hex(values: Values, proto: Protocol) -> Values:
    try:
        return (f"{int(values[0], 0):#x}",)
    except ValueError:
        raise Unsupported(values[0]) from None


# -- the extensions ------------------------------------------------------------------------------

_tcp_ports = _ports_for("tcp")
_udp_ports = _ports_for("udp")
_sctp_ports = _ports_for("sctp")

_CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
_CT_STATUS = ("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")
_ADDR_TYPES = (
    "UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
    "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
)  # fmt: skip

_MATCH_LIST = [
    Extension(
        "tcp",
        (
            Option("--sport", ("--source-port",), normalize=_tcp_ports),
            Option("--dport", ("--destination-port",), normalize=_tcp_ports),
            Option("--tcp-flags", nargs=2, normalize=_tcp_flags),
            Option("--syn", nargs=0),
            Option("--tcp-option", normalize=_integer),
        ),
        finish=_finish_tcp,
        mergeable=True,
    ),
    Extension(
        "udp",
        (
            Option("--sport", ("--source-port",), normalize=_udp_ports),
            Option("--dport", ("--destination-port",), normalize=_udp_ports),
        ),
        mergeable=True,
    ),
    Extension(
        "sctp",
        (
            Option("--sport", ("--source-port",), normalize=_sctp_ports),
            Option("--dport", ("--destination-port",), normalize=_sctp_ports),
        ),
    ),
    Extension("icmp", (Option("--icmp-type", normalize=_icmp_type(_ICMP_TYPES)),)),
    Extension("icmp6", (Option("--icmpv6-type", normalize=_icmp_type(_ICMP6_TYPES)),)),
    Extension(
        "multiport",
        (
            Option("--sports", ("--source-ports",), normalize=_multiport),
            Option("--dports", ("--destination-ports",), normalize=_multiport),
            Option("--ports", normalize=_multiport),
        ),
    ),
    Extension("state", (Option("--state", normalize=_set_of(_CT_STATES[:5])),)),
    Extension(
        "conntrack",
        (
            Option("--ctstate", normalize=_set_of(_CT_STATES)),
            Option("--ctproto", normalize=_one(normalize_protocol)),
            Option("--ctorigsrc", normalize=_one(_address)),
            Option("--ctorigdst", normalize=_one(_address)),
            Option("--ctreplsrc", normalize=_one(_address)),
            Option("--ctrepldst", normalize=_one(_address)),
            Option("--ctorigsrcport", normalize=_tcp_ports),
            Option("--ctorigdstport", normalize=_tcp_ports),
            Option("--ctreplsrcport", normalize=_tcp_ports),
            Option("--ctrepldstport", normalize=_tcp_ports),
            Option("--ctstatus", normalize=_set_of(_CT_STATUS)),
            Option("--ctexpire", normalize=verbatim),
            Option("--ctdir", normalize=_upper),
        ),
    ),
    Extension("comment", (Option("--comment", normalize=verbatim),)),
    Extension("mark", (Option("--mark", normalize=_mark_value),)),
    Extension("connmark", (Option("--mark", normalize=_mark_value),)),
    Extension(
        "addrtype",
        (
            Option("--src-type", normalize=_set_of(_ADDR_TYPES)),
            Option("--dst-type", normalize=_set_of(_ADDR_TYPES)),
            Option("--limit-iface-in", nargs=0),
            Option("--limit-iface-out", nargs=0),
        ),
    ),
    Extension(
        "physdev",
        (
            Option("--physdev-in", normalize=verbatim),
            Option("--physdev-out", normalize=verbatim),
            Option("--physdev-is-in", nargs=0),
            Option("--physdev-is-out", nargs=0),
            Option("--physdev-is-bridged", nargs=0),
        ),
    ),
    Extension("set", (Option("--match-set", nargs=2, normalize=verbatim),)),
    Extension(
        "owner",
        (
            Option("--uid-owner", normalize=_user),
            Option("--gid-owner", normalize=_group),
            Option("--socket-exists", nargs=0),
        ),
    ),
    Extension(
        "statistic",
        (
            Option("--mode", normalize=verbatim),
            Option("--probability", normalize=_probability),
            Option("--every", normalize=_integer),
            Option("--packet", normalize=_integer),
        ),
    ),
    Extension(
        "limit",
        (Option("--limit", normalize=_rate), Option("--limit-burst", normalize=_integer)),
        finish=_finish_limit,
    ),
    Extension(
        "recent",
        (
            Option("--set", nargs=0),
            Option("--rcheck", nargs=0),
            Option("--update", nargs=0),
            Option("--remove", nargs=0),
            Option("--seconds", normalize=_integer),
            Option("--reap", nargs=0),
            Option("--hitcount", normalize=_integer),
            Option("--rttl", nargs=0),
            Option("--name", normalize=verbatim),
            Option("--mask", normalize=_one(_plain_address)),
            Option("--rsource", nargs=0),
            Option("--rdest", nargs=0),
        ),
        finish=_finish_recent,
    ),
    Extension(
        "iprange",
        (
            Option("--src-range", normalize=_address_range),
            Option("--dst-range", normalize=_address_range),
        ),
    ),
    Extension("length", (Option("--length", normalize=_length),)),
    Extension("mac", (Option("--mac-source", normalize=_mac),)),
]

_TARGET_LIST = [
    Extension("ACCEPT"),
    Extension("DROP"),
    Extension("RETURN"),
    Extension("QUEUE"),
    Extension("REJECT", (Option("--reject-with", normalize=_reject_with),), finish=_finish_reject),
    Extension(
        "LOG",
        (
            Option("--log-prefix", normalize=verbatim),
            Option("--log-level", normalize=_log_level),
            Option("--log-tcp-sequence", nargs=0),
            Option("--log-tcp-options", nargs=0),
            Option("--log-ip-options", nargs=0),
            Option("--log-uid", nargs=0),
            Option("--log-macdecode", nargs=0),
        ),
        finish=_finish_log,
    ),
    Extension(
        "MASQUERADE",
        (
            Option("--to-ports", normalize=verbatim),
            Option("--random", nargs=0),
            Option("--random-fully", nargs=0),
        ),
    ),
    Extension(
        "SNAT",
        (
            Option("--to-source", ("--to",), normalize=verbatim),
            Option("--random", nargs=0),
            Option("--random-fully", nargs=0),
            Option("--persistent", nargs=0),
        ),
    ),
    Extension(
        "DNAT",
        (
            Option("--to-destination", ("--to",), normalize=verbatim),
            Option("--random", nargs=0),
            Option("--persistent", nargs=0),
        ),
    ),
    Extension("REDIRECT", (Option("--to-ports", normalize=verbatim), Option("--random", nargs=0))),
    Extension(
        "MARK",
        (
            Option("--set-xmark", normalize=verbatim),
            Option("--set-mark", normalize=verbatim),
            Option("--and-mark", normalize=verbatim),
            Option("--or-mark", normalize=verbatim),
            Option("--xor-mark", normalize=verbatim),
        ),
        finish=_finish_mark_target,
    ),
    Extension(
        "CONNMARK",
        (
            Option("--set-xmark", normalize=verbatim),
            Option("--save-mark", nargs=0),
            Option("--restore-mark", nargs=0),
            Option("--nfmask", normalize=_hex),
            Option("--ctmask", normalize=_hex),
            Option("--set-mark", normalize=verbatim),
            Option("--and-mark", normalize=verbatim),
            Option("--or-mark", normalize=verbatim),
            Option("--xor-mark", normalize=verbatim),
            Option("--mask", normalize=_hex),
        ),
        finish=_finish_connmark_target,
    ),
    Extension(
        "TCPMSS",
        (Option("--set-mss", normalize=_integer), Option("--clamp-mss-to-pmtu", nargs=0)),
    ),
    Extension("NOTRACK"),
    Extension(
        "CT",
        (
            Option("--notrack", nargs=0),
            Option("--helper", normalize=verbatim),
            Option("--zone", normalize=_integer),
        ),
    ),
]

#: Matches by name (``-m NAME``).
MATCHES: dict[str, Extension] = {ext.name: ext for ext in _MATCH_LIST}
#: Targets by name (``-j NAME``).
TARGETS: dict[str, Extension] = {ext.name: ext for ext in _TARGET_LIST}
#: The match ``-p PROTO`` loads by itself when one of its options is used.
IMPLICIT: dict[tuple[Protocol, str], Extension] = {
    (proto, name): MATCHES[match]
    for proto in Protocol
    for name, match in {"tcp": "tcp", "udp": "udp", "sctp": "sctp"}.items()
} | {(Protocol.IPV4, "icmp"): MATCHES["icmp"], (Protocol.IPV6, "ipv6-icmp"): MATCHES["icmp6"]}
