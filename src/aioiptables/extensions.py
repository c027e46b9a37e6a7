"""What aioiptables knows of iptables' match and target extensions.

Each :class:`Extension` lists its options in the order iptables prints them,
with their other spellings and a function that brings a value to the form
iptables prints (``--dport http`` to ``80``, ``--icmp-type echo-request`` to
``8``). A ``finish`` step fills in the defaults iptables adds and drops the
ones it omits (``-j REJECT`` gains ``--reject-with icmp-port-unreachable``,
``--limit-burst 5`` disappears).

Everything here was checked against iptables 1.8.7, 1.8.9, 1.8.11 and 1.8.13
on both backends (tests/test_canonical.py, which scripts/compat/run-tests runs
against each release). Where releases print a rule otherwise (protocols by
number from 1.8.11, icmp type 255 with its code from 1.8.10, repeated tcp and
udp matches folded by iptables-nft), each release's form has the same key,
and the tests record which release prints what. A value a normalizer cannot read raises
:class:`Unsupported`, and the parser then compares that part as text: an
unknown spelling can cost a miss, never a false match. So where we are not
sure how iptables reads something (host names, hex floats), we leave it.

iptables reads the same kind of value differently from one option to the
next, and each normalizer copies the reader its option uses: most numbers are
C numbers (``strtoul(..., 0)``: ``0x10`` is 16, ``010`` is 8), but udp and
conntrack ports are decimal (``010`` is 10); ``-s 10.1`` is 10.1.0.0 but
``--ctorigsrc 10.1`` is 10.0.0.1; see the sections below.
"""

from __future__ import annotations

import datetime
import functools
import grp
import math
import pwd
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .model import Protocol

__all__ = [
    "Unsupported",
    "Refused",
    "Option",
    "Extension",
    "Values",
    "Options",
    "MATCHES",
    "TARGETS",
    "IMPLICIT",
    "normalize_address",
    "normalize_protocol",
    "check_address",
    "check_interface",
    "check_protocol",
    "verbatim",
]


class Unsupported(ValueError):
    """A value or option the canonicalizer does not understand."""


class Refused(ValueError):
    """A value iptables refuses, or takes in a way no listing can show (a
    reversed range, a port it wraps): an option's ``check`` raises it, with
    why, and :func:`~aioiptables.parse.check_rule` names the option and value."""


#: The values of one option, as tokens.
Values = tuple[str, ...]
#: One extension's options: canonical name -> (negated, values), in the order given.
Options = dict[str, tuple[bool, Values]]
Normalizer = Callable[[Values, Protocol], Values]
Finisher = Callable[[Options, Protocol], None]
#: Raises :class:`Refused` for values that must not be written.
Checker = Callable[[Values, Protocol], None]


@dataclass(frozen=True)
class Option:
    """One option of an extension: its printed name, other spellings, how many
    value tokens it takes and how to normalize them."""

    name: str
    aliases: tuple[str, ...] = ()
    nargs: int = 1
    normalize: Normalizer | None = None
    #: Refuses values iptables would refuse or misread (see check_rule).
    check: Checker | None = None
    #: The same for the option negated (``! --dport 0:65535``), where only
    #: the negation makes the rule one that no listing shows as written.
    check_negated: Checker | None = None


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


# -- numbers -------------------------------------------------------------------------------------

_U8, _U16, _U32, _U64 = 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
# strtoul(s, &end, 0): blanks, an optional '+', then hex (0x), octal (0) or decimal digits.
_C_NUMBER = re.compile(r"[ \t\n\v\f\r]*\+?(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))")


def _c_prefix(text: str) -> tuple[int, str] | None:
    """The number strtoul(text, &end, 0) reads at the start of ``text`` and
    what follows it, or None when it reads no digit."""
    match = _C_NUMBER.match(text)
    if match is None:
        return None
    hexa, octal, decimal = match.groups()
    number = int(hexa, 16) if hexa else int(octal, 8) if octal else int(decimal)
    return number, text[match.end() :]


@functools.lru_cache(maxsize=4096)
def _c_uint(text: str, maximum: int = _U32) -> int:
    """``text`` as xtables_strtoui reads it: the whole of it a C number."""
    read = _c_prefix(text)
    if read is None or read[1] or read[0] > maximum:
        raise Unsupported(text)
    return read[0]


def _uint(maximum: int) -> Normalizer:
    def apply(values: Values, proto: Protocol) -> Values:
        return (str(_c_uint(values[0], maximum)),)

    return apply


def _hex(values: Values, proto: Protocol) -> Values:
    return (f"{_c_uint(values[0]):#x}",)


def _uint_range(maximum: int) -> Normalizer:
    """``a:b`` as xtables reads ranges of numbers: ``:b`` from 0, ``a:`` to
    the maximum, ``a:a`` is ``a``; iptables keeps a reversed range as given."""

    def apply(values: Values, proto: Protocol) -> Values:
        low, colon, high = values[0].partition(":")
        first = _c_uint(low, maximum) if low or not colon else 0
        if not colon:
            return (str(first),)
        last = _c_uint(high, maximum) if high else maximum
        return (str(first) if first == last else f"{first}:{last}",)

    return apply


# -- addresses -----------------------------------------------------------------------------------

# A dotted quad in plain decimal, with a plain prefix length: how iptables prints
# an address, and the fast path's shape.
_V4 = re.compile(r"(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})(?:/(0|[1-9]\d?))?")


def _quick_v4(value: str) -> str | None:
    """``a.b.c.d[/len]`` without the general path (ten times faster), or
    None for anything else (dotted masks, other spellings), which goes the long way."""
    match = _V4.fullmatch(value)
    if match is None:
        return None
    a, b, c, d, length = match.groups()
    prefix = int(length) if length is not None else 32
    if prefix > 32 or max(int(a), int(b), int(c), int(d)) > 255:
        return None
    number = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    number &= (_U32 << (32 - prefix)) & _U32
    return f"{number >> 24}.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}/{prefix}"


# iptables reads an IPv4 address three ways, each copied here where it is used:
# - xtables' own reader (-s, -d, iprange): up to four C numbers, the missing
#   ones 0 ("10.1" is 10.1.0.0, "010.0.0.1" is 8.0.0.1, "0/0" is anywhere);
# - getaddrinfo, that is inet_aton (conntrack, recent): the last number fills
#   the rest ("10.1" is 10.0.0.1);
# - inet_pton (the NAT targets): four plain decimal numbers only.
# For IPv6 all three are inet_pton.
_XTABLES, _ATON, _PTON = "xtables", "aton", "pton"


def _pton_v4(text: str) -> int:
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        raise Unsupported(text) from None


def _xtables_v4(text: str, mask: bool = False) -> int:
    """libxtables' __numeric_to_ipaddr; a mask needs all four numbers."""
    parts = text.split(".")
    if len(text) > 19 or len(parts) > 4 or (mask and len(parts) != 4):
        raise Unsupported(text)  # (it copies the text into 20 bytes)
    octets = [_c_uint(part, _U8) for part in parts] + [0] * (4 - len(parts))
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]


def _aton_v4(text: str) -> int:
    # glibc's inet_aton stops at a blank and ignores the rest: not we.
    if not text or any(c.isspace() for c in text):
        raise Unsupported(text)
    try:
        return int.from_bytes(socket.inet_aton(text), "big")
    except OSError:
        raise Unsupported(text) from None


_V4_READERS: dict[str, Callable[[str], int]] = {_XTABLES: _xtables_v4, _ATON: _aton_v4, _PTON: _pton_v4}


def _v6(text: str) -> int:
    # inet_pton is what ip6tables itself calls (ipaddress would also take "%zone").
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        raise Unsupported(text) from None


def _show(number: int, proto: Protocol) -> str:
    """An address as iptables prints it (inet_ntop: ``::ffff:1.2.3.4``)."""
    if proto is Protocol.IPV4:
        return f"{number >> 24}.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"
    return socket.inet_ntop(socket.AF_INET6, number.to_bytes(16, "big"))


def _parse_host(text: str, proto: Protocol, how: str) -> int:
    return _V4_READERS[how](text) if proto is Protocol.IPV4 else _v6(text)


def _width(proto: Protocol) -> int:
    return 32 if proto is Protocol.IPV4 else 128


def _parse_mask(text: str, proto: Protocol, how: str) -> int:
    """A mask after ``/``: a prefix length (a C number, so ``010`` is 8) or
    an address-shaped mask."""
    width = _width(proto)
    if proto is Protocol.IPV6 and ":" in text:
        return _v6(text)
    if proto is Protocol.IPV4 and "." in text:
        return _xtables_v4(text, mask=True) if how == _XTABLES else _pton_v4(text)
    bits = _c_uint(text, width)
    return ((1 << width) - 1) ^ ((1 << (width - bits)) - 1)


def _show_mask(mask: int, proto: Protocol) -> str:
    """``/N`` for a prefix, the mask itself for any other mask (as xtables)."""
    width = _width(proto)
    inverted = ((1 << width) - 1) ^ mask
    if inverted & (inverted + 1):
        return "/" + _show(mask, proto)
    return f"/{width - inverted.bit_length()}"


# The host bits of each IPv4 prefix length, by its text as iptables prints it.
_V4_HOST_BITS = {str(length): (1 << (32 - length)) - 1 for length in range(33)}


def printed_v4(value: str) -> bool:
    """Whether ``value`` is an IPv4 ``-s``/``-d`` exactly as iptables prints
    it (``a.b.c.d/len``, plain decimals, no host bits), that is
    ``normalize_address(value, IPV4) == value``, checked without working the
    form out (a rule read back from iptables: the common case)."""
    host, _, length = value.partition("/")
    bits = _V4_HOST_BITS.get(length)
    if bits is None:
        return False
    try:
        packed = _inet_pton(_AF_INET, host)
    except OSError:
        return False
    if bits and int.from_bytes(packed, "big") & bits:
        return False
    return _inet_ntop(_AF_INET, packed) == host


# printed_v4 runs once per address of every rule read: libc's converters
# bound once, and the family as a plain int (the enum member is converted
# at every call).
_inet_pton, _inet_ntop, _AF_INET = socket.inet_pton, socket.inet_ntop, int(socket.AF_INET)


@functools.lru_cache(maxsize=65536)
def normalize_address(value: str, proto: Protocol) -> str:
    """``-s``/``-d`` as iptables prints them: masked, with the prefix length.

    ``10.1.2.3/8`` -> ``10.0.0.0/8``; ``1.2.3.4`` -> ``1.2.3.4/32``; dotted
    masks to prefixes; IPv6 as inet_ntop writes it.
    """
    if proto is Protocol.IPV4:
        quick = _quick_v4(value)
        if quick is not None:
            return quick
    host, slash, mask_text = value.rpartition("/") if "/" in value else (value, "", "")
    width = _width(proto)
    mask = _parse_mask(mask_text, proto, _XTABLES) if slash else (1 << width) - 1
    return _show(_parse_host(host, proto, _XTABLES) & mask, proto) + _show_mask(mask, proto)


@functools.lru_cache(maxsize=4096)
def _host_mask(value: str, proto: Protocol) -> str:
    """An address with an optional mask as conntrack prints it: the address
    unmasked, no ``/32`` (``/128``)."""
    host, slash, mask_text = value.partition("/")
    width = _width(proto)
    mask = _parse_mask(mask_text, proto, _PTON) if slash else (1 << width) - 1
    shown = "" if mask == (1 << width) - 1 else _show_mask(mask, proto)
    return _show(_parse_host(host, proto, _ATON), proto) + shown


@functools.lru_cache(maxsize=16384)
def _plain_address(value: str, proto: Protocol, how: str) -> str:
    """An address without a prefix, as iprange, recent and NAT print it."""
    if how == _PTON:  # the commonest (a NAT target per endpoint): straight through libc
        family = socket.AF_INET if proto is Protocol.IPV4 else socket.AF_INET6
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, value))
        except (OSError, ValueError):
            raise Unsupported(value) from None
    return _show(_parse_host(value, proto, how), proto)


def _one(norm: Callable[[str, Protocol], str]) -> Normalizer:
    def apply(values: Values, proto: Protocol) -> Values:
        return (norm(values[0], proto),)

    return apply


def _address_range(values: Values, proto: Protocol) -> Values:
    """iprange: ``a-b``; a single address is the range ``a-a``."""
    low, dash, high = values[0].partition("-")
    first = _plain_address(low, proto, _XTABLES)
    return (f"{first}-{_plain_address(high, proto, _XTABLES) if dash else first}",)


def _recent_mask(values: Values, proto: Protocol) -> Values:
    return (_plain_address(values[0], proto, _ATON),)


# -- protocols -----------------------------------------------------------------------------------

# xtables_chain_protos: the names iptables knows without /etc/protocols, in
# its order (the first name of a number is the one it prints). 1.8.11 added
# dccp and ipcomp; from 1.8.11 on, -S and iptables-save print any other
# protocol as its number (-p 47), where 1.8.10 and older print the name
# /etc/protocols gives it (-p gre). Keys keep the names: both read alike.
_CHAIN_PROTOS = (
    ("tcp", 6), ("sctp", 132), ("udp", 17), ("udplite", 136), ("icmp", 1), ("ipv6-icmp", 58),
    ("icmpv6", 58), ("esp", 50), ("ah", 51), ("mobility-header", 135), ("ipv6-mh", 135),
    ("mh", 135), ("dccp", 33), ("ipcomp", 108), ("all", 0),
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def _etc_protocols() -> tuple[dict[str, int], dict[int, str]]:
    """/etc/protocols as getprotobyname() and getprotobynumber() answer."""
    by_name: dict[str, int] = {}
    by_number: dict[int, str] = {}
    try:
        with open("/etc/protocols") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) < 2 or not fields[1].isdigit():
                    continue
                number = int(fields[1])
                by_number.setdefault(number, fields[0])
                for name in (fields[0], *fields[2:]):
                    by_name.setdefault(name, number)
    except OSError:
        pass
    return by_name, by_number


@functools.lru_cache(maxsize=256)
def _protocol_number(value: str) -> int:
    """xtables_parse_protocol: a C number, ``all``, a name from
    /etc/protocols (case as written there) or one iptables knows itself."""
    read = _c_prefix(value)
    if read is not None and not read[1]:
        if read[0] > _U8:
            raise Unsupported(value)
        return read[0]
    if value == "all":
        return 0
    number = _etc_protocols()[0].get(value)
    if number is None:
        number = next((n for name, n in _CHAIN_PROTOS if name == value), None)
    if number is None:
        raise Unsupported(value)
    return number


@functools.lru_cache(maxsize=256)
def _protocol_name(number: int) -> str:
    """How ``-p`` prints a protocol number up to iptables 1.8.10: its own
    names first (1.8.8 on; 1.8.7 asks /etc/protocols first, which names
    them alike), then /etc/protocols, else the number; 0 is ``all``. (1.8.11
    on prints the number unless the name is its own: see _CHAIN_PROTOS.)"""
    if number == 0:
        return "all"
    name = next((n for n, num in _CHAIN_PROTOS if num == number), None)
    if name is None:
        name = _etc_protocols()[1].get(number, str(number))
    return name


@functools.lru_cache(maxsize=256)
def normalize_protocol(value: str, proto: Protocol = Protocol.IPV4) -> str:
    """A protocol as ``-p`` prints it: ``6``, ``0x6`` and ``TCP`` -> ``tcp``."""
    return _protocol_name(_protocol_number(value.lower()))  # iptables lower-cases -p


def _ct_protocol(values: Values, proto: Protocol) -> Values:
    """conntrack prints ``--ctproto`` as a number, and does not lower-case it."""
    return (str(_protocol_number(values[0])),)


# -- ports ---------------------------------------------------------------------------------------
#
# iptables reads ports two ways:
# - xtables_parse_port (tcp, sctp, multiport, the NAT targets): a C number, so
#   0x50 is 80 and 010 is 8, or a service name for the rule's protocol;
# - getaddrinfo (udp, conntrack, TPROXY): a decimal number, so 010 is 10, or
#   a service name of any protocol (udp accepts "http").


@functools.lru_cache(maxsize=4096)
def _service(name: str, protocols: tuple[str, ...]) -> int:
    """A service name from /etc/services; with several protocols they must agree."""
    found: set[int] = set()
    for protocol in protocols:
        try:
            found.add(socket.getservbyname(name, protocol) if protocol else socket.getservbyname(name))
        except OSError:
            continue
    if len(found) != 1:
        raise Unsupported(name)
    return found.pop()


def _port(value: str, protocols: tuple[str, ...]) -> int:
    """xtables_parse_port: a C number (``0x50``, ``010``) or a service name."""
    read = _c_prefix(value)
    if read is not None and not read[1] and read[0] <= _U16:
        return read[0]
    return _service(value, protocols)


@functools.lru_cache(maxsize=4096)
def _port_range(value: str, protocols: tuple[str, ...]) -> tuple[int, int]:
    """tcp and sctp ``--dport``: ``a``, ``a:b``, ``:b``, ``a:``."""
    if ":" not in value:
        port = _port(value, protocols)
        return port, port
    low, _, high = value.partition(":")
    first = _port(low, protocols) if low else 0
    last = _port(high, protocols) if high else _U16
    if first > last:
        raise Unsupported(value)  # iptables refuses it
    return first, last


def _show_range(first: int, last: int, sep: str = ":") -> str:
    return str(first) if first == last else f"{first}{sep}{last}"


def _ports_for(protocol: str) -> Normalizer:
    protocols = (protocol,)

    def apply(values: Values, proto: Protocol) -> Values:
        return (_show_range(*_port_range(values[0], protocols)),)

    return apply


@functools.lru_cache(maxsize=4096)
def _multiport_list(value: str) -> str:
    """multiport: up to 15 ports, a range ``a:b`` (a < b) counting two."""
    parts = value.split(",")
    shown: list[str] = []
    count = 0
    for part in parts:
        low, colon, high = part.partition(":")
        # Service names are read for the rule's protocol, which a normalizer
        # does not see: take a name only when tcp and udp agree on it.
        first = _port(low, ("tcp", "udp"))
        if colon:
            last = _port(high, ("tcp", "udp"))
            if first >= last:
                raise Unsupported(value)  # "invalid portrange specified"
            shown.append(f"{first}:{last}")
            count += 2
        else:
            shown.append(str(first))
            count += 1
    if count > 15:
        raise Unsupported(value)
    return ",".join(shown)


def _multiport(values: Values, proto: Protocol) -> Values:
    return (_multiport_list(values[0]),)


_DECIMAL_PORT = re.compile(r"[ \t\n\v\f\r]*\+?(\d+)")


@functools.lru_cache(maxsize=4096)
def _gai_port(text: str) -> int:
    """xtables_getportbyname: getaddrinfo(NULL, text), which reads a decimal
    number (strtoul base 10) or a service name, tcp's before udp's."""
    match = _DECIMAL_PORT.fullmatch(text)
    if match is not None:
        number = int(match.group(1))
        if number > _U16:
            raise Unsupported(text)  # getaddrinfo would wrap it
        return number
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        return _service(text, ("udp",))


@functools.lru_cache(maxsize=4096)
def _gai_port_range(value: str) -> str:
    """A port range of the guided parser (udp, conntrack): ``a``, ``a:b``,
    ``:b``, ``a:``; a reversed range is kept as given."""
    parts = value.split(":")
    if len(parts) > 2:
        raise Unsupported(value)  # "Too many components"
    first = _gai_port(parts[0]) if parts[0] or len(parts) == 1 else 0
    last = first if len(parts) == 1 else _gai_port(parts[1]) if parts[1] else _U16
    return _show_range(first, last)


def _gai_ports(values: Values, proto: Protocol) -> Values:
    return (_gai_port_range(values[0]),)


def _nat_port(text: str) -> tuple[int, str]:
    """A port at the start of a NAT port spec and what follows it: a C number
    (as many digits as there are) or, failing that, a whole service name."""
    read = _c_prefix(text)
    if read is not None and read[0] <= _U16:
        return read
    return _service(text, ("",)), ""


@functools.lru_cache(maxsize=4096)
def _nat_ports(text: str, with_base: bool = False) -> str:
    """``--to-ports`` and the part after ``:`` of ``--to-destination``:
    ``a``, ``a-b`` and for DNAT ``a-b/base``."""
    first, rest = _nat_port(text)
    if not rest:
        return str(first)
    if rest[0] != "-":
        raise Unsupported(text)  # iptables refuses "a:b" and other garbage
    last, rest = _nat_port(rest[1:])
    if last < first:
        raise Unsupported(text)
    shown = _show_range(first, last, "-")
    if not rest:
        return shown
    if rest[0] != "/" or not with_base:
        raise Unsupported(text)
    base, rest = _nat_port(rest[1:])
    if rest:
        raise Unsupported(text)
    return f"{shown}/{base}"


def _to_ports(values: Values, proto: Protocol) -> Values:
    return (_nat_ports(values[0]),)


@functools.lru_cache(maxsize=16384)
def _nat_to(value: str, proto: Protocol, with_base: bool) -> str:
    """``--to-source``/``--to-destination`` as libxt_NAT parses and prints
    them: ``a[-b][:p[-q]]``, IPv6 in brackets when there are ports."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or proto is Protocol.IPV4:
            raise Unsupported(value)
        hosts, after = value[1:end], value[end + 1 :]
        if after and not after.startswith(":"):
            raise Unsupported(value)
        ports = after[1:] if after else None
    elif value.count(":") == 1:  # one colon is ports; more is an IPv6 address
        hosts, _, ports = value.partition(":")
    else:
        hosts, ports = value, None
    shown_ports = "" if ports is None else ":" + _nat_ports(ports, with_base)
    if not hosts:
        if ports is None:
            raise Unsupported(value)
        return shown_ports
    low, dash, high = hosts.partition("-")
    first = _plain_address(low, proto, _PTON)
    last = _plain_address(high, proto, _PTON) if dash else first
    shown = first if first == last else f"{first}-{last}"
    if proto is Protocol.IPV6 and ports is not None:
        shown = f"[{shown}]"
    return shown + shown_ports


def _zero_base(shown: str) -> str:
    """SNAT and MASQUERADE take a base port after a port range (iptables 1.8.9
    on) but keep only that there was one: any base is printed as ``/0``.
    (1.8.7 drops the base, SNAT's silently: of its rules the base cannot be
    read back, and one spelled with a base is another rule there.)"""
    kept, slash, _ = shown.rpartition("/")
    return f"{kept}/0" if slash else shown


def _snat_to(values: Values, proto: Protocol) -> Values:
    return (_zero_base(_nat_to(values[0], proto, True)),)


def _masquerade_ports(values: Values, proto: Protocol) -> Values:
    return (_zero_base(_nat_ports(values[0], True)),)


def _dnat_to(values: Values, proto: Protocol) -> Values:
    return (_nat_to(values[0], proto, True),)


# -- words ---------------------------------------------------------------------------------------


def _set_of(order: tuple[str, ...], empty: str | None = None) -> Normalizer:
    """A comma list of names (any case), printed in iptables' order, each once.
    ``empty`` is the name that means "none of them" and is printed alone."""
    index = {name: i for i, name in enumerate(order)}

    def apply(values: Values, proto: Protocol) -> Values:
        items = {v.upper() for v in values[0].split(",")}
        if not items <= index.keys():
            raise Unsupported(values[0])
        if empty is not None and len(items) > 1:
            items.discard(empty)
        return (",".join(sorted(items, key=index.__getitem__)),)

    return apply


def _upper(values: Values, proto: Protocol) -> Values:
    return tuple(v.upper() for v in values)


def verbatim(values: Values, proto: Protocol) -> Values:
    """The normalizer of values iptables prints as given (the parser's fast
    path skips extensions made only of these)."""
    return values


def _prefix_lookup(table: tuple[tuple[str, ...], ...], value: str, first_wins: bool) -> int | None:
    """The row whose names start with ``value`` (any case), as iptables
    matches abbreviations: the first such row, or None when there is none or
    (unless ``first_wins``) when there are several."""
    lower = value.lower()
    rows = [i for i, names in enumerate(table) if any(n.lower().startswith(lower) for n in names)]
    if not rows or (len(rows) > 1 and not first_wins):
        return None
    return rows[0]


# -- tcp -----------------------------------------------------------------------------------------

_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")


def _flag_list(value: str) -> str:
    names = set(value.upper().split(","))
    if "ALL" in names:
        names = set(_TCP_FLAGS)
    names.discard("NONE")
    if not names <= set(_TCP_FLAGS):
        raise Unsupported(value)
    return ",".join(f for f in _TCP_FLAGS if f in names) or "NONE"


def _tcp_flags(values: Values, proto: Protocol) -> Values:
    return (_flag_list(values[0]), _flag_list(values[1]))


_ALL_PORTS = "0:65535"


def _drop_all_ports(options: Options, names: tuple[str, ...]) -> None:
    """tcp and udp print no port range that covers every port. Negated, the
    range matches no packet: it is kept as iptables 1.8.11 on prints it
    (``! --dport 0:65535``). Older listings lose it (legacy prints ``-m tcp``,
    iptables-nft 1.8.8 to 1.8.10 wrote no port test at all, a rule matching
    every packet), and read as another rule; check_rule refuses it."""
    for name in names:
        found = options.get(name)
        if found is not None and not found[0] and found[1] == (_ALL_PORTS,):
            del options[name]


def _every_port_negated(normalize: Normalizer) -> Checker:
    """Refuses ``! --dport 0:65535``, however every port is spelled."""

    def check(values: Values, proto: Protocol) -> None:
        try:
            shown = normalize(values, proto)
        except Unsupported:
            return  # not ours to judge
        if shown == (_ALL_PORTS,):
            raise Refused(
                "negated, a range over every port matches no packet, and up to iptables "
                "1.8.10 it is listed as a rule without it (iptables-nft 1.8.8 to 1.8.10 even "
                "writes a rule matching every packet); leave the rule out"
            )

    return check


def _fold_negated_low_ranges(options: Options) -> None:
    """``! --sport 0:1023`` is ``--sport 1024:65535``: iptables-nft prints the
    latter, legacy the former; read both as the latter."""
    for name in ("--sport", "--dport"):
        found = options.get(name)
        if found is None or not found[0]:
            continue
        low, colon, high = found[1][0].partition(":")
        if colon and low == "0" and high.isdigit() and 0 < int(high) < _U16:
            start = int(high) + 1
            options[name] = (False, (f"{start}:{_U16}" if start < _U16 else str(_U16),))


def _finish_tcp(options: Options, proto: Protocol) -> None:
    syn = options.pop("--syn", None)
    if syn is not None:
        if "--tcp-flags" in options:
            raise Unsupported("--syn with --tcp-flags")
        options["--tcp-flags"] = (syn[0], ("FIN,SYN,RST,ACK", "SYN"))
    _drop_all_ports(options, ("--sport", "--dport"))
    _fold_negated_low_ranges(options)
    flags = options.get("--tcp-flags")
    if flags is not None and flags[1][0] == "NONE":
        # A test of no flag: "NONE NONE" always matches and is not printed;
        # anything else never matches, and the listing loses it (nft drops
        # the whole match, legacy prints "-m tcp"): not ours to read, and
        # check_rule refuses it.
        if flags[0] or flags[1][1] != "NONE":
            raise Unsupported("--tcp-flags NONE")
        del options["--tcp-flags"]


def _check_flags(values: Values, proto: Protocol, negated: bool = False) -> None:
    """A mask of no flags tests nothing: iptables-nft (1.8.8 on) writes no
    flag test at all, a rule matching every tcp packet, where legacy's
    matches none (``NONE SYN``, ``! NONE NONE``) or all (``! NONE SYN``)."""
    try:
        mask, wanted = _flag_list(values[0]), _flag_list(values[1])
    except Unsupported:
        return  # not ours to judge
    if mask == "NONE" and (negated or wanted != "NONE"):
        raise Refused(
            "a mask of no flags tests no flag: iptables-legacy then matches no packet (or, "
            "negated, every one), iptables-nft every one, and the listing shows neither; "
            "name the flags to test in the mask"
        )


_check_flags_negated: Checker = functools.partial(_check_flags, negated=True)


def _finish_udp(options: Options, proto: Protocol) -> None:
    _drop_all_ports(options, ("--sport", "--dport"))
    _fold_negated_low_ranges(options)


# -- icmp ----------------------------------------------------------------------------------------

# libxt_icmp's table in its order: names (any case, any unique prefix) -> "type[/code]".
_ICMP_TYPES = (
    ("any", "any"), ("echo-reply", "0"), ("pong", "0"), ("destination-unreachable", "3"),
    ("network-unreachable", "3/0"), ("host-unreachable", "3/1"), ("protocol-unreachable", "3/2"),
    ("port-unreachable", "3/3"), ("fragmentation-needed", "3/4"), ("source-route-failed", "3/5"),
    ("network-unknown", "3/6"), ("host-unknown", "3/7"), ("network-prohibited", "3/9"),
    ("host-prohibited", "3/10"), ("TOS-network-unreachable", "3/11"),
    ("TOS-host-unreachable", "3/12"), ("communication-prohibited", "3/13"),
    ("host-precedence-violation", "3/14"), ("precedence-cutoff", "3/15"), ("source-quench", "4"),
    ("redirect", "5"), ("network-redirect", "5/0"), ("host-redirect", "5/1"),
    ("TOS-network-redirect", "5/2"), ("TOS-host-redirect", "5/3"), ("echo-request", "8"),
    ("ping", "8"), ("router-advertisement", "9"), ("router-solicitation", "10"),
    ("time-exceeded", "11"), ("ttl-exceeded", "11"), ("ttl-zero-during-transit", "11/0"),
    ("ttl-zero-during-reassembly", "11/1"), ("parameter-problem", "12"),
    ("ip-header-bad", "12/0"), ("required-option-missing", "12/1"), ("timestamp-request", "13"),
    ("timestamp-reply", "14"), ("info-request", "15"), ("info-reply", "16"),
    ("address-mask-request", "17"), ("address-mask-reply", "18"),
)  # fmt: skip
# (info-request and info-reply are names from iptables 1.8.12 on: older ones
# refuse them, and read "i" as ip-header-bad where 1.8.12 finds it ambiguous.)

# libip6t_icmp6's table (it has no "any"; the MLD names are 1.8.10's).
_ICMP6_TYPES = (
    ("destination-unreachable", "1"), ("no-route", "1/0"), ("communication-prohibited", "1/1"),
    ("beyond-scope", "1/2"), ("address-unreachable", "1/3"), ("port-unreachable", "1/4"),
    ("failed-policy", "1/5"), ("reject-route", "1/6"), ("packet-too-big", "2"),
    ("time-exceeded", "3"), ("ttl-exceeded", "3"), ("ttl-zero-during-transit", "3/0"),
    ("ttl-zero-during-reassembly", "3/1"), ("parameter-problem", "4"), ("bad-header", "4/0"),
    ("unknown-header-type", "4/1"), ("unknown-option", "4/2"), ("echo-request", "128"),
    ("ping", "128"), ("echo-reply", "129"), ("pong", "129"), ("mld-listener-query", "130"),
    ("mld-listener-report", "131"), ("mld-listener-done", "132"),
    ("mld-listener-reduction", "132"), ("router-solicitation", "133"),
    ("router-advertisement", "134"), ("neighbour-solicitation", "135"),
    ("neighbor-solicitation", "135"), ("neighbour-advertisement", "136"),
    ("neighbor-advertisement", "136"), ("redirect", "137"),
)  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _icmp_type_of(value: str, table: tuple[tuple[str, str], ...], any_type: bool) -> str:
    row = _prefix_lookup(tuple((name,) for name, _ in table), value, first_wins=False)
    if row is not None:
        return table[row][1]
    if any(name.lower().startswith(value.lower()) for name, _ in table):
        raise Unsupported(value)  # ambiguous: iptables refuses it
    kind_text, slash, code_text = value.partition("/")
    kind = _c_uint(kind_text, _U8)
    # Codes may be a range, low:high (iptables 1.8.9 on).
    low_text, colon, high_text = code_text.partition(":")
    low = _c_uint(low_text, _U8) if slash else 0
    high = _c_uint(high_text, _U8) if colon else low if slash else _U8
    if any_type and kind == _U8:
        # Type 255 is every ICMP packet to the kernel, whatever the codes
        # (icmp_type_code_match): iptables up to 1.8.9 prints every such rule
        # as "any", 1.8.10 on as 255/LOW unless its codes are 0:255. One key
        # for them all, so each version's listing reads as the rule given.
        return "any"
    if low == 0 and high == _U8:
        return str(kind)
    if low != high:
        raise Unsupported(value)  # iptables prints the lowest code alone: the range is lost
    return f"{kind}/{low}"


def _icmp_type(values: Values, proto: Protocol) -> Values:
    return (_icmp_type_of(values[0], _ICMP_TYPES, True),)


def _icmp6_type(values: Values, proto: Protocol) -> Values:
    return (_icmp_type_of(values[0], _ICMP6_TYPES, False),)


# -- marks ---------------------------------------------------------------------------------------


def _mark_pair(value: str) -> tuple[int, int | None]:
    mark, slash, mask = value.partition("/")
    return _c_uint(mark), (_c_uint(mask) if slash else None)


def _mark_value(values: Values, proto: Protocol) -> Values:
    """``--mark 1`` -> ``0x1``; a full mask is not printed."""
    mark, mask = _mark_pair(values[0])
    if mask is None or mask == _U32:
        return (f"{mark:#x}",)
    return (f"{mark:#x}/{mask:#x}",)


def _mark_operation(name: str, value: str) -> tuple[int, int]:
    """One way of setting a mark as the (value, mask) of --set-xmark."""
    mark, mask = _mark_pair(value)
    if name == "--set-xmark":
        return mark, _U32 if mask is None else mask
    if name == "--set-mark":
        return mark, mark | (_U32 if mask is None else mask)  # X/Y is --set-xmark X/(X|Y)
    if mask is not None:
        raise Unsupported(value)
    if name == "--and-mark":
        return 0, ~mark & _U32
    if name == "--or-mark":
        return mark, mark
    return mark, 0  # --xor-mark


_MARK_OPERATIONS = ("--set-xmark", "--set-mark", "--and-mark", "--or-mark", "--xor-mark")


def _finish_mark_target(options: Options, proto: Protocol) -> None:
    """MARK prints every way of setting a mark as --set-xmark."""
    ops = [name for name in _MARK_OPERATIONS if name in options]
    if len(ops) != 1:
        raise Unsupported("MARK needs one mark operation")
    mark, mask = _mark_operation(ops[0], options.pop(ops[0])[1][0])
    options["--set-xmark"] = (False, (f"{mark:#x}/{mask:#x}",))


def _finish_connmark_target(options: Options, proto: Protocol) -> None:
    """CONNMARK, replayed in the order the options were given, as libxt_CONNMARK
    reads them: ``--mask`` sets both masks, after a mark operation it
    replaces that operation's mask."""
    mode: str | None = None
    mark, ctmask, nfmask = 0, _U32, _U32
    for name, (negated, values) in list(options.items()):
        del options[name]
        if negated:
            raise Unsupported(name)
        if name in _MARK_OPERATIONS:
            if mode is not None:
                raise Unsupported(name)
            mode = "set"
            mark, ctmask = _mark_operation(name, values[0])
        elif name in ("--save-mark", "--restore-mark"):
            if mode is not None:
                raise Unsupported(name)
            mode = name
        elif name == "--mask":
            ctmask = nfmask = int(values[0], 16)
        elif name == "--ctmask":
            ctmask = int(values[0], 16)
        else:  # --nfmask
            nfmask = int(values[0], 16)
    if mode is None:
        raise Unsupported("CONNMARK needs a mode")
    if mode == "set":
        options["--set-xmark"] = (False, (f"{mark:#x}/{ctmask:#x}",))
        return
    options[mode] = (False, ())
    options["--nfmask"] = (False, (f"{nfmask:#x}",))
    options["--ctmask"] = (False, (f"{ctmask:#x}",))


# -- owner ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _owner_id(value: str, group: bool) -> str:
    """libxt_owner: a user (group) name first, else ``a`` or ``a-b`` in C numbers."""
    try:
        return str(grp.getgrnam(value).gr_gid if group else pwd.getpwnam(value).pw_uid)
    except KeyError:
        pass
    read = _c_prefix(value)
    if read is None or read[0] > _U32 - 1:
        raise Unsupported(value)
    first, rest = read
    last = first
    if rest[:1] in ("-", ":"):
        second = _c_prefix(rest[1:])
        if second is None or second[0] > _U32 - 1:
            raise Unsupported(value)
        last, rest = second
    if rest:
        raise Unsupported(value)
    return str(first) if first == last else f"{first}-{last}"


def _user(values: Values, proto: Protocol) -> Values:
    return (_owner_id(values[0], False),)


def _group(values: Values, proto: Protocol) -> Values:
    return (_owner_id(values[0], True),)


# -- set -----------------------------------------------------------------------------------------


def _match_set(values: Values, proto: Protocol) -> Values:
    flags = values[1]
    parts = flags.split(",")
    if not 1 <= len(parts) <= 6 or any(p not in ("src", "dst") for p in parts):
        raise Unsupported(flags)
    return values


def _finish_set(options: Options, proto: Protocol) -> None:
    # Counters are updated unless told not to: only "! --update-counters" shows.
    for name in ("--update-counters", "--update-subcounters"):
        found = options.get(name)
        if found is not None and not found[0]:
            del options[name]
    for kind in ("--packets-", "--bytes-"):
        given = [f"{kind}{op}" for op in ("eq", "lt", "gt") if f"{kind}{op}" in options]
        if len(given) > 1 or any(options[g][0] for g in given if not g.endswith("eq")):
            raise Unsupported(kind)  # iptables refuses both


# -- rates ---------------------------------------------------------------------------------------

_RATE_UNITS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))


def _rate_parts(value: str) -> tuple[int, int]:
    """``N[/unit]``: the count and the unit in seconds; a unit is any prefix
    of second, minute, hour or day, in any case (``1/s``, ``2/Min``)."""
    number, slash, unit = value.partition("/")
    if not number.isdigit() or int(number) == 0:
        raise Unsupported(value)
    if not slash:
        return int(number), 1
    lower = unit.lower()
    seconds = next((s for name, s in _RATE_UNITS if unit and name.startswith(lower)), None)
    if seconds is None:
        raise Unsupported(value)
    return int(number), seconds


_LIMIT_SCALE = 10000  # XT_LIMIT_SCALE
_HASHLIMIT_SCALE = 1000000  # XT_HASHLIMIT_SCALE_v2


def _print_rate(period: int, scale: int) -> tuple[str, int]:
    """libxt_limit's print_rate (hashlimit's, with its scale): the rate and
    the length of its unit in milliseconds."""
    units = (("day", 86400), ("hour", 3600), ("min", 60), ("sec", 1))
    chosen = 0
    for index in range(1, len(units)):
        mult = units[index][1] * scale
        if period > mult or mult // period < mult % period:
            break
        chosen = index
    name, seconds = units[chosen]
    return f"{seconds * scale // period}/{name}", seconds * 1000


@functools.lru_cache(maxsize=1024)
def _limit_rate(value: str) -> str:
    number, seconds = _rate_parts(value)
    period = seconds * _LIMIT_SCALE // number
    if period == 0:
        raise Unsupported(value)  # "Rate too fast"
    return _print_rate(period, _LIMIT_SCALE)[0]


def _rate(values: Values, proto: Protocol) -> Values:
    """A rate the way libxt_limit prints it: ``60/min`` -> ``1/sec``."""
    return (_limit_rate(values[0]),)


def _finish_limit(options: Options, proto: Protocol) -> None:
    _drop_if(options, "--limit-burst", ("5",))
    if "--limit" not in options:
        options["--limit"] = (False, ("3/hour",))


@functools.lru_cache(maxsize=1024)
def _hashlimit_rate(value: str) -> tuple[str, int, int]:
    """A packet rate as hashlimit prints it, the unit it prints (ms) and the
    unit it was given in (ms, the default --hashlimit-htable-expire)."""
    if "b/s" in value:
        raise Unsupported(value)  # byte rates are printed another way
    number, seconds = _rate_parts(value)
    period = seconds * _HASHLIMIT_SCALE // number
    if period == 0:
        raise Unsupported(value)
    shown, quantum = _print_rate(period, _HASHLIMIT_SCALE)
    return shown, quantum, seconds * 1000


_HASHLIMIT_MAX_BURST = 1000000  # XT_HASHLIMIT_BURST_MAX
_BYTE_RATE = re.compile(r"(\d+)([km]?)b/s", re.ASCII)
# libxt_hashlimit's units of bytes, largest first.
_BYTE_UNITS = (("m", 1 << 20), ("k", 1 << 10), ("", 1))
_BYTE_UNIT_SIZE = dict(_BYTE_UNITS)


def _hashlimit_burst(values: Values, proto: Protocol) -> Values:
    """libxt_hashlimit's parse_burst: a C number from 1, times 1024 or
    1048576 after ``k`` or ``m`` (``b`` may follow), in packets or bytes
    (which of the two the finishing step knows)."""
    read = _c_prefix(values[0])
    if read is None or read[0] == 0 or read[1] not in ("", "b", "k", "kb", "m", "mb"):
        raise Unsupported(values[0])
    number, unit = read
    if not unit and number > _HASHLIMIT_MAX_BURST:
        raise Unsupported(values[0])  # iptables refuses it
    return (str(number * _BYTE_UNIT_SIZE.get(unit[:1], 1)),)  # "b" alone: bytes


def _bytes_to_cost(number: int) -> int:
    """libxt_hashlimit's bytes_to_cost: a byte rate as the kernel keeps it."""
    return _U32 // ((number >> 4) + 1)


def _cost_to_bytes(cost: int) -> int:
    """libxt_hashlimit's cost_to_bytes: the bytes per second a kept rate
    stands for (what it prints)."""
    return (_U32 // cost - 1) << 4


@functools.lru_cache(maxsize=1024)
def _byte_rate(value: str) -> int:
    """``N[k|m]b/s`` as the kernel keeps it."""
    match = _BYTE_RATE.fullmatch(value)
    if match is None or int(match[1]) == 0:
        raise Unsupported(value)
    number = int(match[1]) * _BYTE_UNIT_SIZE[match[2]]
    if number >> 4 >= _U32:
        raise Unsupported(value)  # libxt_hashlimit's 32-bit arithmetic would wrap
    return _bytes_to_cost(number)


@functools.lru_cache(maxsize=1024)
def _show_byte_rate(cost: int) -> str:
    """libxt_hashlimit's print_bytes: the bytes per second a kept rate stands
    for, in the largest unit that reads back as the same rate."""
    rate = _cost_to_bytes(cost)
    for name, size in _BYTE_UNITS[:-1]:
        if rate >= size and _bytes_to_cost(rate & ~(size - 1)) == cost:
            return f"{rate // size}{name}b/s"
    return f"{rate}b/s"


def _hashlimit_bytes(rate: str, options: Options) -> tuple[str, int, int]:
    """A byte rate as hashlimit prints it (``10240b/s`` -> ``10kb/s``,
    ``100b/s`` -> ``96b/s``) with its burst, a whole number of the rate's
    bytes printed in the largest unit it reaches, and the expiry (ms) the
    listing leaves out and the one the rule gets by default."""
    cost = _byte_rate(rate)
    shown = _show_byte_rate(cost)
    if _byte_rate(shown) != cost:
        raise Unsupported(rate)  # printed as another rate (or as 0b/s, which iptables refuses)
    burst = options.pop("--hashlimit-burst", None)
    if burst is None:
        return shown, 15000, 15000  # XT_HASHLIMIT_BYTE_EXPIRE
    per_second, size = _cost_to_bytes(cost), int(burst[1][0])
    if burst[0] or not per_second <= size <= _U32:
        raise Unsupported("--hashlimit-burst")  # iptables refuses it, or keeps 32 bits of it
    total = per_second * -(-size // per_second)
    name, unit = next((name, unit) for name, unit in _BYTE_UNITS if total >= unit)
    if unit > per_second:
        # Printed so coarsely that bursts of other sizes print the same.
        raise Unsupported("--hashlimit-burst")
    options["--hashlimit-burst"] = (False, (f"{total // unit}{name}b",))
    return shown, 60000, 60000  # XT_HASHLIMIT_BYTE_EXPIRE_BURST


_HASHLIMIT_MODES = ("srcip", "srcport", "dstip", "dstport")


def _hashlimit_mode(values: Values, proto: Protocol) -> Values:
    items = {item for item in re.split(r"[,|]", values[0]) if item}
    if not items <= set(_HASHLIMIT_MODES):
        raise Unsupported(values[0])
    return (",".join(m for m in _HASHLIMIT_MODES if m in items),)


def _finish_hashlimit(options: Options, proto: Protocol) -> None:
    upto = options.pop("--hashlimit-upto", None)
    above = options.pop("--hashlimit-above", None)
    given = upto or above
    if given is None or (upto and above) or "--hashlimit-name" not in options:
        raise Unsupported("hashlimit needs one rate and a name")
    if "b/s" in given[1][0]:
        shown, quantum, expire = _hashlimit_bytes(given[1][0], options)
    else:
        shown, quantum, expire = _hashlimit_rate(given[1][0])
        burst = options.setdefault("--hashlimit-burst", (False, ("5",)))  # printed even when default
        if int(burst[1][0]) > _HASHLIMIT_MAX_BURST:
            raise Unsupported("--hashlimit-burst")  # iptables refuses it
    inverted = (above is not None) != given[0]  # "! --hashlimit-upto" is --hashlimit-above
    rates = {"--hashlimit-above" if inverted else "--hashlimit-upto": (False, (shown,))}
    options.update(rates)
    if options.get("--hashlimit-mode", (False, ("",)))[1] == ("",):
        options.pop("--hashlimit-mode", None)
    _drop_if(options, "--hashlimit-htable-size", ("0",))
    _drop_if(options, "--hashlimit-htable-max", ("0",))
    _drop_if(options, "--hashlimit-htable-gcinterval", ("1000",))
    # The default expiry is the unit the rate was given in; the printed one
    # is left out when it equals the unit the rate is printed in.
    options.setdefault("--hashlimit-htable-expire", (False, (str(expire),)))
    _drop_if(options, "--hashlimit-htable-expire", (str(quantum),))
    full = (str(_width(proto)),)
    _drop_if(options, "--hashlimit-srcmask", full)
    _drop_if(options, "--hashlimit-dstmask", full)
    if "--hashlimit-rate-match" in options:
        _drop_if(options, "--hashlimit-rate-interval", ("1",))
    else:
        options.pop("--hashlimit-rate-interval", None)  # only printed with --hashlimit-rate-match


_HASHLIMIT_MAX_SIZE = 1048576


def _htable_size(values: Values, proto: Protocol) -> Values:
    # The kernel cuts --hashlimit-htable-size and -max down to this, and
    # iptables prints what the kernel kept.
    return (str(min(_c_uint(values[0]), _HASHLIMIT_MAX_SIZE)),)


def _plen(values: Values, proto: Protocol) -> Values:
    return (str(_c_uint(values[0], _width(proto))),)


# -- statistic -----------------------------------------------------------------------------------

_DECIMAL = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@functools.lru_cache(maxsize=1024)
def _probability_of(value: str) -> str:
    if _DECIMAL.fullmatch(value) is None:
        raise Unsupported(value)
    probability = float(value)
    if not 0 <= probability <= 1:
        raise Unsupported(value)
    # libxt_statistic keeps lround(p * 2^31) and prints it back over 2^31.
    stored = math.floor(probability * 0x80000000 + 0.5)
    return f"{stored / 0x80000000:.11f}"


def _probability(values: Values, proto: Protocol) -> Values:
    return (_probability_of(values[0]),)


# -- string --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _hex_pattern(text: str) -> bytes:
    """libxt_string's parse_hex_string, step for step (its quirks included):
    ``|41 42|`` are bytes, ``\\x`` a literal x, anything else itself."""
    out = bytearray()
    i, size, in_hex = 0, len(text), False
    while i < size:
        char = text[i]
        if char == "\\":
            if in_hex or i + 1 >= size:
                raise Unsupported(text)
            out += text[i + 1].encode()
            i += 2
            continue
        if char == "|":
            in_hex = not in_hex
            while in_hex and i + 1 < size and text[i + 1] == " ":
                i += 1
            if i + 1 >= size:
                break
            i += 1
            char = text[i]
        if in_hex:
            pair = text[i : i + 2]
            if i + 2 >= size or len(pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in pair):
                raise Unsupported(text)
            out.append(int(pair, 16))
            i += 3 if text[i + 2] == " " else 2
        else:
            out += char.encode()
            i += 1
    return bytes(out)


def _show_pattern(pattern: bytes) -> tuple[str, str]:
    """How libxt_string prints a pattern: as text when every byte is printable
    ASCII and it does not end in a backslash, else as hex."""
    if all(0x20 <= b <= 0x7E for b in pattern) and not pattern.endswith(b"\\"):
        return "--string", pattern.decode("ascii")
    return "--hex-string", f"|{pattern.hex()}|"


def _finish_string(options: Options, proto: Protocol) -> None:
    text = options.pop("--string", None)
    hexed = options.pop("--hex-string", None)
    if (text is None) == (hexed is None) or "--algo" not in options:
        raise Unsupported("string needs one pattern and --algo")
    if text is not None:
        negated, pattern = text[0], text[1][0].encode()
    elif hexed is not None:
        negated, pattern = hexed[0], _hex_pattern(hexed[1][0])
    if not 1 <= len(pattern) <= 128:  # XT_STRING_MAX_PATTERN_SIZE
        raise Unsupported("string pattern size")
    name, shown = _show_pattern(pattern)
    options[name] = (negated, (shown,))
    _drop_if(options, "--from", ("0",))
    _drop_if(options, "--to", ("65535",))


# -- other finishing touches ---------------------------------------------------------------------


def _drop_if(options: Options, name: str, default: Values) -> None:
    found = options.get(name)
    if found is not None and not found[0] and found[1] == default:
        del options[name]


def _finish_conntrack(options: Options, proto: Protocol) -> None:
    if "--ctdir" in options and options["--ctdir"][1][0] not in ("ORIGINAL", "REPLY"):
        raise Unsupported("--ctdir")


def _finish_recent(options: Options, proto: Protocol) -> None:
    options.setdefault("--name", (False, ("DEFAULT",)))
    options.setdefault("--mask", (False, (_show((1 << _width(proto)) - 1, proto),)))
    sides = [name for name in options if name in ("--rsource", "--rdest")]
    for name in sides[:-1]:
        del options[name]  # the last one given wins
    if not sides:
        options["--rsource"] = (False, ())


def _finish_log(options: Options, proto: Protocol) -> None:
    _drop_if(options, "--log-level", ("4",))


# xtables' syslog level names (exact, case and all) and their numbers.
_LOG_LEVELS = {
    "emerg": 0, "panic": 0, "alert": 1, "crit": 2, "error": 3, "warning": 4, "notice": 5,
    "info": 6, "debug": 7,
}  # fmt: skip


def _log_level(values: Values, proto: Protocol) -> Values:
    value = values[0]
    try:
        return (str(_c_uint(value, 7)),)
    except Unsupported:
        level = _LOG_LEVELS.get(value)
    if level is None:
        raise Unsupported(value)
    return (str(level),)


def _finish_reject(options: Options, proto: Protocol) -> None:
    default = "icmp-port-unreachable" if proto is Protocol.IPV4 else "icmp6-port-unreachable"
    options.setdefault("--reject-with", (False, (default,)))


# libipt_REJECT and libip6t_REJECT: (name, alias) in table order; the first row
# either of whose names starts with the value (any case) wins.
_REJECT4 = (
    ("icmp-net-unreachable", "net-unreach"), ("icmp-host-unreachable", "host-unreach"),
    ("icmp-proto-unreachable", "proto-unreach"), ("icmp-port-unreachable", "port-unreach"),
    ("icmp-net-prohibited", "net-prohib"), ("icmp-host-prohibited", "host-prohib"),
    ("tcp-reset", "tcp-rst"), ("icmp-admin-prohibited", "admin-prohib"),
)  # fmt: skip
_REJECT6 = (
    ("icmp6-no-route", "no-route"), ("icmp6-adm-prohibited", "adm-prohibited"),
    ("icmp6-addr-unreachable", "addr-unreach"), ("icmp6-port-unreachable", "port-unreach"),
    ("tcp-reset", "tcp-reset"), ("icmp6-policy-fail", "policy-fail"),
    ("icmp6-reject-route", "reject-route"),
)  # fmt: skip


@functools.lru_cache(maxsize=256)
def _reject_name(value: str, proto: Protocol) -> str:
    table = _REJECT4 if proto is Protocol.IPV4 else _REJECT6
    row = _prefix_lookup(table, value, first_wins=True)
    if row is None:
        raise Unsupported(value)
    return table[row][0]


def _reject_with(values: Values, proto: Protocol) -> Values:
    return (_reject_name(values[0], proto),)


_CT_EVENTS = (
    "new", "related", "destroy", "reply", "assured", "protoinfo", "helper", "mark",
    "natseqinfo", "secmark",
)  # fmt: skip


def _events(order: tuple[str, ...]) -> Normalizer:
    def apply(values: Values, proto: Protocol) -> Values:
        items = set(values[0].split(","))
        if not items <= set(order):
            raise Unsupported(values[0])
        return (",".join(e for e in order if e in items),)

    return apply


def _zone(values: Values, proto: Protocol) -> Values:
    if values[0].lower() == "mark":
        return ("mark",)
    return (str(_c_uint(values[0], _U16)),)


def _finish_ct(options: Options, proto: Protocol) -> None:
    zones = [name for name in ("--zone", "--zone-orig", "--zone-reply") if name in options]
    if len(zones) > 1:
        raise Unsupported("two zones")
    if zones:
        _drop_if(options, zones[0], ("0",))  # zone 0 is no zone


def _mac(values: Values, proto: Protocol) -> Values:
    parts = values[0].split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise Unsupported(values[0])
    try:
        return (":".join(f"{int(p, 16):02x}" for p in parts),)
    except ValueError:
        raise Unsupported(values[0]) from None


def _finish_connlimit(options: Options, proto: Protocol) -> None:
    upto = options.pop("--connlimit-upto", None)
    above = options.pop("--connlimit-above", None)
    given = upto or above
    if given is None or (upto and above):
        raise Unsupported("connlimit needs one count")
    inverted = (above is not None) != given[0]  # "! --connlimit-upto" is --connlimit-above
    options["--connlimit-above" if inverted else "--connlimit-upto"] = (False, given[1])
    options.setdefault("--connlimit-mask", (False, (str(_width(proto)),)))  # printed even when full
    if "--connlimit-daddr" not in options:
        options.setdefault("--connlimit-saddr", (False, ()))


def _finish_nflog(options: Options, proto: Protocol) -> None:
    _drop_if(options, "--nflog-group", ("0",))
    _drop_if(options, "--nflog-threshold", ("0",))
    found = options.pop("--nflog-range", None)
    if found is not None and (found[0] or "--nflog-size" in options):
        raise Unsupported("--nflog-range")  # iptables refuses it
    # Otherwise it is no part of the rule: "--nflog-range has never worked",
    # the kernel copies a length only with --nflog-size's flag, and of the
    # same rule iptables-legacy (and iptables-nft up to 1.8.7) prints the
    # range while iptables-nft from 1.8.9 on drops it.


def _mark_mask(values: Values, proto: Protocol) -> Values:
    """``value[/mask]`` as xtables prints a mark and mask: both in hex, the
    mask full when not given."""
    mark, mask = _mark_pair(values[0])
    return (f"{mark:#x}/{_U32 if mask is None else mask:#x}",)


def _tproxy_port(values: Values, proto: Protocol) -> Values:
    return (str(_gai_port(values[0])),)


def _tproxy_ip(values: Values, proto: Protocol) -> Values:
    return (_plain_address(values[0], proto, _ATON),)


def _finish_tproxy(options: Options, proto: Protocol) -> None:
    if "--on-port" not in options:
        raise Unsupported("TPROXY needs --on-port")
    options.setdefault("--on-ip", (False, (_show(0, proto),)))
    options.setdefault("--tproxy-mark", (False, ("0x0/0x0",)))


# -- time ----------------------------------------------------------------------------------------
#
# libxt_time reads times and dates with strtoul(..., 10) and days with
# strtoul(..., 0) into buffers of two (month days) or three (week days)
# characters, cutting longer ones short ("010" is day 1): what it would cut
# or read past is not read here.

_DAYTIME = re.compile(r"(\d+):(\d+)(?::(\d+))?", re.ASCII)
_DATE = re.compile(r"(\d+)(?:-(\d+)(?:-(\d+)(?:T(\d+)(?::(\d+)(?::(\d+))?)?)?)?)?", re.ASCII)
_EPOCH = datetime.datetime(1970, 1, 1)
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
#: What libxt_time prints for a date left out: 0 is not printed, INT32_MAX is.
_NO_DATESTART, _NO_DATESTOP = "1970-01-01T00:00:00", "2038-01-19T03:14:07"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _daytime(values: Values, proto: Protocol) -> Values:
    """``hh:mm[:ss]`` as libxt_time prints it, ``9:0`` -> ``09:00:00``."""
    match = _DAYTIME.fullmatch(values[0])
    if match is None:
        raise Unsupported(values[0])
    hour, minute, second = (int(part or 0) for part in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise Unsupported(values[0])
    return (f"{hour:02}:{minute:02}:{second:02}",)


@functools.lru_cache(maxsize=256)
def _date_of(text: str) -> str:
    match = _DATE.fullmatch(text)
    if match is None:
        raise Unsupported(text)
    year, month, day, hour, minute, second = (int(part) if part else 0 for part in match.groups())
    month, day = month if match[2] else 1, day if match[3] else 1
    if not 1970 <= year <= 2038 or month > 12 or day > 31 or hour > 23 or minute > 59 or second > 59:
        raise Unsupported(text)
    # mktime (in UTC) carries a month 0, a day 0 or the 30th of February over
    # into the month before or after: so does this.
    year, month = divmod(year * 12 + month - 1, 12)
    start = datetime.datetime(year, month + 1, 1)
    moment = start + datetime.timedelta(days=day - 1, hours=hour, minutes=minute, seconds=second)
    if moment < _EPOCH:
        raise Unsupported(text)  # "mktime returned an error"
    return moment.strftime(_DATE_FORMAT)


def _date(values: Values, proto: Protocol) -> Values:
    """``YYYY[-MM[-DD[Thh[:mm[:ss]]]]]`` as libxt_time prints it, in full."""
    return (_date_of(values[0]),)


def _monthdays(values: Values, proto: Protocol) -> Values:
    """A comma list of days of the month, printed in order, each once."""
    days = set()
    for part in values[0].split(","):
        if not 1 <= len(part) <= 2:
            raise Unsupported(values[0])
        day = _c_uint(part, 31)
        if day == 0:
            raise Unsupported(values[0])  # a bit no day has, not printed
        days.add(day)
    return (",".join(map(str, sorted(days))),)


def _weekdays(values: Values, proto: Protocol) -> Values:
    """A comma list of days of the week, by number (1 is Monday) or by
    name, which libxt_time knows by its first two letters (``Tuesday``,
    ``Tu``), printed in order, each once."""
    days = set()
    for part in values[0].split(","):
        read = _c_prefix(part[:3])
        if read is not None and not read[1]:
            if len(part) > 3 or not 1 <= read[0] <= 7:
                raise Unsupported(values[0])
            days.add(read[0])
            continue
        day = next((i for i, name in enumerate(_WEEKDAYS, 1) if part[:2] == name[:2]), None)
        if day is None or len(part) < 2:
            raise Unsupported(values[0])
        days.add(day)
    return (",".join(_WEEKDAYS[day - 1] for day in sorted(days)),)


def _finish_time(options: Options, proto: Protocol) -> None:
    if any(negated for name, (negated, _) in options.items() if name not in ("--monthdays", "--weekdays")):
        raise Unsupported("time")  # iptables refuses it
    if options.pop("--utc", None) is not None and "--kerneltz" in options:
        raise Unsupported("--utc with --kerneltz")  # iptables refuses it
    if "--timestart" in options or "--timestop" in options:
        # Both are printed when either is not the default (the whole day).
        options.setdefault("--timestart", (False, ("00:00:00",)))
        options.setdefault("--timestop", (False, ("23:59:59",)))
        if options["--timestart"][1] == ("00:00:00",) and options["--timestop"][1] == ("23:59:59",):
            del options["--timestart"], options["--timestop"]
    # A negated list of days is printed as the days it leaves; all days as none.
    for name, every in (("--monthdays", [str(d) for d in range(1, 32)]), ("--weekdays", list(_WEEKDAYS))):
        found = options.get(name)
        if found is None:
            continue
        given = found[1][0].split(",")
        days = [day for day in every if (day in given) != found[0]]
        if not days:
            raise Unsupported(name)  # no day: printed as nothing, which reads as another rule
        if len(days) == len(every):
            del options[name]
        else:
            options[name] = (False, (",".join(days),))
    _drop_if(options, "--datestart", (_NO_DATESTART,))
    if options.get("--datestop", (False, ("",)))[1] == (_NO_DATESTART,):
        raise Unsupported("--datestop")  # 0, which libxt_time does not print
    options.setdefault("--datestop", (False, (_NO_DATESTOP,)))


# -- u32 -----------------------------------------------------------------------------------------

_U32_MAX_PARTS = 10  # XT_U32_MAXSIZE: numbers of a location, values of a test, tests
_U32_OPERATORS = ("&", "<<", ">>", "@")


@functools.lru_cache(maxsize=1024)
def _u32_tests(text: str) -> str:
    """libxt_u32's parser, step for step: blanks between the parts, numbers
    in C, and the test printed back with every number in lower-case hex."""
    tests: list[str] = []
    location: list[str] = []
    ranges: list[str] = []
    at, reading_values = 0, False

    def number() -> int:
        nonlocal at
        read = _c_prefix(text[at:])
        if read is None or read[0] > _U32:
            raise Unsupported(text)
        at = len(text) - len(read[1])
        return read[0]

    while True:
        while at < len(text) and text[at] in " \t\n\v\f\r":
            at += 1
        if at == len(text):
            if not (reading_values and ranges) or len(tests) >= _U32_MAX_PARTS:
                raise Unsupported(text)
            tests.append(f"{''.join(location)}={','.join(ranges)}")
            return "&&".join(tests)
        if not reading_values:
            if text[at] == "=" and location:
                at, reading_values = at + 1, True
                continue
            operator = ""
            if location:
                operator = next((op for op in _U32_OPERATORS if text.startswith(op, at)), "")
                if not operator:
                    raise Unsupported(text)
                at += len(operator)
            location.append(f"{operator}{number():#x}")
            if len(location) > _U32_MAX_PARTS:
                raise Unsupported(text)
        elif text.startswith("&&", at) and ranges:
            tests.append(f"{''.join(location)}={','.join(ranges)}")
            location, ranges, reading_values, at = [], [], False, at + 2
        else:
            if ranges:
                if text[at] != ",":
                    raise Unsupported(text)
                at += 1
            low = number()
            while at < len(text) and text[at] in " \t\n\v\f\r":
                at += 1
            high = low
            if text.startswith(":", at):
                at += 1
                high = number()
            ranges.append(f"{low:#x}" if low == high else f"{low:#x}:{high:#x}")
            if len(ranges) > _U32_MAX_PARTS:
                raise Unsupported(text)


def _u32_match(values: Values, proto: Protocol) -> Values:
    return (_u32_tests(values[0]),)


# -- connbytes -----------------------------------------------------------------------------------


def _connbytes_range(values: Values, proto: Protocol) -> Values:
    """``a[:b]``, C numbers up to 2^64-1, as ``a:b`` (the finishing step
    shapes it as printed)."""
    low, colon, high = values[0].partition(":")
    if not low and not colon:
        raise Unsupported(values[0])
    first = _c_uint(low, _U64) if low else 0
    last = _c_uint(high, _U64) if high else _U64
    if first > last:
        raise Unsupported(values[0])  # iptables refuses it
    return (f"{first}:{last}",)


def _one_of(*names: str) -> Normalizer:
    """A word iptables knows exactly so (no other case, no abbreviation)."""

    def apply(values: Values, proto: Protocol) -> Values:
        if values[0] not in names:
            raise Unsupported(values[0])
        return values

    return apply


def _finish_connbytes(options: Options, proto: Protocol) -> None:
    if len(options) != 3 or options["--connbytes-mode"][0] or options["--connbytes-dir"][0]:
        raise Unsupported("connbytes needs a count, a mode and a direction")  # as iptables
    negated, (span,) = options["--connbytes"]
    first, last = (int(part) for part in span.split(":"))
    if last == 0 or (negated and first == last):
        # 0:0 is printed as 0, which reads back as 0 and up; the kernel has no
        # way to hold the negation of a:a, and iptables drops it.
        raise Unsupported("--connbytes")
    options["--connbytes"] = (negated, (str(first) if last == _U64 else f"{first}:{last}",))


# -- dscp and tos --------------------------------------------------------------------------------

# dscp_helper.c's classes in its order: the first whose name starts the value
# (in any case) wins, so "EFx" is EF.
_DSCP_CLASSES = (
    ("CS0", 0x00), ("CS1", 0x08), ("CS2", 0x10), ("CS3", 0x18), ("CS4", 0x20), ("CS5", 0x28),
    ("CS6", 0x30), ("CS7", 0x38), ("BE", 0x00), ("AF11", 0x0A), ("AF12", 0x0C), ("AF13", 0x0E),
    ("AF21", 0x12), ("AF22", 0x14), ("AF23", 0x16), ("AF31", 0x1A), ("AF32", 0x1C), ("AF33", 0x1E),
    ("AF41", 0x22), ("AF42", 0x24), ("AF43", 0x26), ("EF", 0x2E),
)  # fmt: skip


def _dscp(values: Values, proto: Protocol) -> Values:
    """A DSCP as printed: two hex digits (``10`` -> ``0x0a``)."""
    return (f"{_c_uint(values[0], 0x3F):#04x}",)


def _dscp_class(values: Values, proto: Protocol) -> Values:
    upper = values[0].upper() if values[0].isascii() else ""  # strncasecmp: ASCII only
    value = next((value for name, value in _DSCP_CLASSES if upper.startswith(name)), None)
    if value is None:
        raise Unsupported(values[0])
    return (f"{value:#04x}",)


def _finish_dscp(number: str, by_class: str) -> Finisher:
    """A class is printed as its number."""

    def apply(options: Options, proto: Protocol) -> None:
        given = options.pop(by_class, None)
        if (given is None) == (number not in options):
            raise Unsupported(number)  # iptables takes exactly one of them
        if given is not None:
            options[number] = given

    return apply


# libxt_tos' names (any case); a name stands for its value with the mask 0x3f.
_TOS_NAMES = {
    "minimize-delay": 0x10, "maximize-throughput": 0x08, "maximize-reliability": 0x04,
    "minimize-cost": 0x02, "normal-service": 0x00,
}  # fmt: skip


@functools.lru_cache(maxsize=256)
def _tos_value_mask(text: str) -> str:
    """``value[/mask]`` (C numbers up to 0xff, the mask 0xff when left out)
    or a name, as printed: ``0x10/0x3f``."""
    read = _c_prefix(text)
    if read is not None and read[0] <= _U8:
        value, rest = read
        mask = _c_uint(rest[1:], _U8) if rest[:1] == "/" else _U8
        if rest and rest[:1] != "/":
            raise Unsupported(text)
    else:
        found = _TOS_NAMES.get(text.lower()) if text.isascii() else None  # strcasecmp
        if found is None:
            raise Unsupported(text)
        value, mask = found, 0x3F
    return f"{value:#04x}/{mask:#04x}"


def _tos(values: Values, proto: Protocol) -> Values:
    return (_tos_value_mask(values[0]),)


def _finish_tos_target(options: Options, proto: Protocol) -> None:
    """TOS prints every operation as --set-tos value/mask."""
    if len(options) != 1 or any(negated for negated, _ in options.values()):
        raise Unsupported("TOS needs one operation")  # as iptables
    name, (_, (given,)) = options.popitem()
    if name == "--set-tos":
        options[name] = (False, (given,))
        return
    bits = int(given)
    value, mask = {"--and-tos": (0, ~bits & _U8), "--or-tos": (bits, bits), "--xor-tos": (bits, 0)}[name]
    options["--set-tos"] = (False, (f"{value:#04x}/{mask:#04x}",))


# -- CLASSIFY ------------------------------------------------------------------------------------

_CLASS = re.compile(r"((?:0[xX])?[0-9a-fA-F]+):((?:0[xX])?[0-9a-fA-F]+)")


def _class(values: Values, proto: Protocol) -> Values:
    """``major:minor`` in hex, printed with four digits each (``1:10`` ->
    ``0001:0010``). sscanf takes more (blanks, signs, what follows the
    minor) and the kernel keeps 16 bits of each: not read here."""
    match = _CLASS.fullmatch(values[0])
    if match is None:
        raise Unsupported(values[0])
    major, minor = int(match[1], 16), int(match[2], 16)
    if major > _U16 or minor > _U16:
        raise Unsupported(values[0])
    return (f"{major:04x}:{minor:04x}",)


# -- ipv6header ----------------------------------------------------------------------------------

# The headers libip6t_ipv6header knows, by number, in the order it prints them.
_IPV6_HEADERS = (0, 60, 43, 44, 51, 50, 59, 255)
# Its own names and numbers, for those getprotobyname does not know, in its order.
_IPV6_HEADER_NAMES = (
    ("hop-by-hop", 0), ("protocol", 255), ("hop", 0), ("dst", 60), ("route", 43), ("frag", 44),
    ("auth", 51), ("esp", 50), ("none", 59), ("prot", 255), ("0", 0), ("60", 60), ("43", 43),
    ("44", 44), ("51", 51), ("50", 50), ("59", 59), ("255", 255),
)  # fmt: skip


def _ipv6_header(name: str) -> int:
    """A header by name: /etc/protocols first (names and aliases, case as
    written there), then libip6t_ipv6header's own names."""
    number = _etc_protocols()[0].get(name)
    if number is None:
        number = next((n for known, n in _IPV6_HEADER_NAMES if known == name), None)
    if number is None or number not in _IPV6_HEADERS:
        raise Unsupported(name)
    return number


def _ipv6_header_name(number: int) -> str:
    """How a header is printed: its name in /etc/protocols (but for 0),
    else libip6t_ipv6header's first name for it."""
    name = _etc_protocols()[1].get(number) if number else None
    return name or next(known for known, n in _IPV6_HEADER_NAMES if n == number)


def _ipv6_headers(values: Values, proto: Protocol) -> Values:
    if proto is not Protocol.IPV6:
        raise Unsupported(values[0])  # an ip6tables match
    numbers = {_ipv6_header(name) for name in values[0].split(",") if name}
    if not numbers:
        raise Unsupported(values[0])  # iptables refuses it
    return (",".join(_ipv6_header_name(n) for n in _IPV6_HEADERS if n in numbers),)


# -- policy --------------------------------------------------------------------------------------

_POLICY_PROTOCOLS = (50, 51, 108)  # esp, ah, ipcomp: the only ones libxt_policy takes
# What libxt_policy takes "!" before (iptables refuses it before the others).
_POLICY_NEGATABLE = frozenset(("--reqid", "--spi", "--proto", "--mode", "--tunnel-src", "--tunnel-dst"))


def _policy_protocol(values: Values, proto: Protocol) -> Values:
    """xtables_parse_protocol's reading (case as in /etc/protocols), printed
    by getprotobynumber: the name there, else the number."""
    number = _protocol_number(values[0])
    if number not in _POLICY_PROTOCOLS:
        raise Unsupported(values[0])
    return (_etc_protocols()[1].get(number, str(number)),)


def _finish_policy(options: Options, proto: Protocol) -> None:
    # One policy element only: with --next the options repeat, which these
    # options cannot hold.
    if "--next" in options or "--dir" not in options:
        raise Unsupported("policy")
    if any(negated and name not in _POLICY_NEGATABLE for name, (negated, _) in options.items()):
        raise Unsupported("policy")
    options.setdefault("--pol", (False, ("ipsec",)))
    if options["--pol"][1] == ("none",) and len(options) > 2:
        raise Unsupported("policy none with an element")  # iptables refuses it


# -- AUDIT ---------------------------------------------------------------------------------------


def _audit_type(values: Values, proto: Protocol) -> Values:
    lower = values[0].lower() if values[0].isascii() else ""  # strcasecmp
    if lower not in ("accept", "drop", "reject"):
        raise Unsupported(values[0])
    return (lower,)


# -- pkttype -------------------------------------------------------------------------------------

# libxt_pkttype's names (any case) and the name printed for each.
_PACKET_TYPES = {
    "unicast": "unicast", "host": "unicast", "broadcast": "broadcast", "bcast": "broadcast",
    "multicast": "multicast", "mcast": "multicast", "otherhost": "otherhost",
}  # fmt: skip


def _packet_type(values: Values, proto: Protocol) -> Values:
    shown = _PACKET_TYPES.get(values[0].lower()) if values[0].isascii() else None  # strcasecmp
    if shown is None:
        raise Unsupported(values[0])
    return (shown,)


# -- checks: what check_rule refuses --------------------------------------------------------------
#
# Normalizers say what iptables prints and shrug (Unsupported) at what they do
# not know. Checks are stricter and narrower: each refuses only values that
# iptables 1.8.9 refuses, or takes and prints in a form that is not the rule
# written (a reversed range, a udp port it wraps to 0), so a rule holding one
# could never be written, or never be found once written. Anything else
# passes, names iptables resolves (services) included.

_PORT_HELP = "a port is a number from 0 to 65535 or a service name from /etc/services"


@functools.lru_cache(maxsize=1024)
def _service_port(name: str) -> int | None:
    """The port of a service name of any protocol, or None when the machine
    knows no such service (as getservbyname, case and all)."""
    try:
        return socket.getservbyname(name)
    except (OSError, UnicodeError):
        return None


def _checked_port(text: str, decimal: bool) -> int:
    """A port as iptables reads it: a C number (``decimal``: a decimal
    number, as getaddrinfo reads it) up to 65535, or a service name."""
    if decimal:
        match = _DECIMAL_PORT.fullmatch(text)
        number = int(match.group(1)) if match is not None else None
    else:
        read = _c_prefix(text)
        number = read[0] if read is not None and not read[1] else None
    if number is not None:
        if number > _U16:
            raise Refused(f"port {number} is out of range: {_PORT_HELP}")
        return number
    port = _service_port(text)
    if port is None:
        raise Refused(f"{text!r} is not a port: {_PORT_HELP}")
    return port


def _in_order(first: int, last: int, low: str, high: str) -> None:
    if first > last:
        raise Refused(f"a reversed range ({low} > {high}): write it from low to high, {high}:{low}")


def _check_ports(decimal: bool) -> Checker:
    """tcp and sctp (``decimal`` False: C numbers) or udp and conntrack
    (``decimal``: getaddrinfo) ports: ``a``, ``a:b``, ``:b``, ``a:``."""

    def check(values: Values, proto: Protocol) -> None:
        text = values[0]
        if decimal and text.count(":") > 1:
            raise Refused("more than one ':': a range is low:high")
        low, colon, high = text.partition(":")
        first = _checked_port(low, decimal) if low or not colon else 0
        if colon:
            last = _checked_port(high, decimal) if high else _U16
            _in_order(first, last, low, high)

    return check


def _check_multiport(values: Values, proto: Protocol) -> None:
    """multiport: up to 15 ports, each range ``a:b`` with a <= b counting two."""
    count = 0
    for part in values[0].split(","):
        low, colon, high = part.partition(":")
        first = _checked_port(low, False)
        count += 1
        if colon:
            # (iptables also refuses a range of one port, "3:3"; that one is
            # left to it: it refuses it out loud, and nothing else is harmed.)
            _in_order(first, _checked_port(high, False), low, high)
            count += 1
    if count > 15:
        raise Refused(f"{count} ports: multiport takes at most 15 (a range counts two)")


def _check_ordered(maximum: int) -> Checker:
    """A range of numbers ``a:b`` (--length, --ctexpire): refused reversed."""

    def check(values: Values, proto: Protocol) -> None:
        low, colon, high = values[0].partition(":")
        if not (colon and low and high):
            return
        try:
            first, last = _c_uint(low, maximum), _c_uint(high, maximum)
        except Unsupported:
            return  # not ours to judge
        _in_order(first, last, low, high)

    return check


def _check_ctproto(values: Values, proto: Protocol) -> None:
    try:
        number = _protocol_number(values[0])
    except Unsupported:
        return
    if number == 0:
        raise Refused(
            "protocol 0 is no protocol: no connection has it, so the rule matches "
            "nothing (or, negated, everything); leave --ctproto out to match any protocol"
        )


_tcp_ports, _gai_checked = _check_ports(False), _check_ports(True)
_tcp_port_names = _ports_for("tcp")
_tcp_every_port_negated = _every_port_negated(_tcp_port_names)
_udp_every_port_negated = _every_port_negated(_gai_ports)


_DOTTED = re.compile(r"\d+(?:\.\d+){1,3}")


def check_address(value: str, proto: Protocol) -> None:
    """Refuse an ``-s``/``-d`` value iptables refuses or splits: several
    addresses, an address of the other family, a mask out of range, a
    dotted quad that is no address. Host names pass: iptables resolves them.

    >>> check_address("10.0.0.0/33", Protocol.IPV4)
    Traceback (most recent call last):
    ...
    aioiptables.extensions.Refused: mask '33' is not a prefix length from 0 to 32 or a dotted mask
    """
    if proto is Protocol.IPV4:
        match = _V4.fullmatch(value)
        if match is not None and max(map(int, match.groups("0"))) <= 255 and int(match[5] or 0) <= 32:
            return  # the common case: a dotted quad, perhaps with a prefix length
    if "," in value:
        raise Refused(
            "several addresses: iptables adds one rule per address, so the rule could "
            "never be found as written; make one Rule per address"
        )
    host, slash, mask = value.rpartition("/") if "/" in value else (value, "", "")
    if proto is Protocol.IPV4 and ":" in host:
        raise Refused("an IPv6 address in an IPv4 rule: make it an IPv6 rule (ip6tables)")
    if proto is Protocol.IPV6 and _DOTTED.fullmatch(host):
        raise Refused("an IPv4 address in an IPv6 rule: make it an IPv4 rule (iptables)")
    if slash:
        try:
            _parse_mask(mask, proto, _XTABLES)
        except Unsupported:
            other = "a dotted mask" if proto is Protocol.IPV4 else "an IPv6 mask"
            raise Refused(
                f"mask {mask!r} is not a prefix length from 0 to {_width(proto)} or {other}"
            ) from None
    try:
        _parse_host(host, proto, _XTABLES)
    except Unsupported:
        if proto is Protocol.IPV4 and _DOTTED.fullmatch(host):
            raise Refused(f"{host!r} is not an IPv4 address: four numbers from 0 to 255") from None
        if proto is Protocol.IPV6 and ":" in host and "%" not in host:
            raise Refused(f"{host!r} is not an IPv6 address") from None


def check_interface(value: str, proto: Protocol) -> None:
    """Refuse an ``-i``/``-o`` value iptables refuses (longer than 15 bytes)
    or prints so that it reads back as other tokens (a blank)."""
    if len(value.encode("utf-8", "surrogatepass")) > 15:
        raise Refused("an interface name is at most 15 bytes long (IFNAMSIZ)")
    if any(char.isspace() for char in value):
        raise Refused(
            "an interface name cannot hold a blank (the kernel allows none, and "
            "iptables prints the name unquoted, so it would read back as two tokens)"
        )


def check_protocol(value: str, proto: Protocol) -> None:
    """Refuse a ``-p`` value iptables does not know."""
    try:
        normalize_protocol(value, proto)
    except Unsupported:
        raise Refused(
            "unknown protocol: a number from 0 to 255, 'all', or a name from /etc/protocols"
        ) from None


# -- the extensions ------------------------------------------------------------------------------

_u8, _u16, _u32, _u64 = _uint(_U8), _uint(_U16), _uint(_U32), _uint(_U64)

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
            Option(
                "--sport",
                ("--source-port",),
                normalize=_tcp_port_names,
                check=_tcp_ports,
                check_negated=_tcp_every_port_negated,
            ),
            Option(
                "--dport",
                ("--destination-port",),
                normalize=_tcp_port_names,
                check=_tcp_ports,
                check_negated=_tcp_every_port_negated,
            ),
            Option("--tcp-option", normalize=_u8),
            Option(
                "--tcp-flags",
                nargs=2,
                normalize=_tcp_flags,
                check=_check_flags,
                check_negated=_check_flags_negated,
            ),
            Option("--syn", nargs=0),
        ),
        finish=_finish_tcp,
        mergeable=True,
    ),
    Extension(
        "udp",
        (
            Option(
                "--sport",
                ("--source-port",),
                normalize=_gai_ports,
                check=_gai_checked,
                check_negated=_udp_every_port_negated,
            ),
            Option(
                "--dport",
                ("--destination-port",),
                normalize=_gai_ports,
                check=_gai_checked,
                check_negated=_udp_every_port_negated,
            ),
        ),
        finish=_finish_udp,
        mergeable=True,
    ),
    Extension(
        "sctp",
        (
            Option("--sport", ("--source-port",), normalize=_ports_for("sctp"), check=_tcp_ports),
            Option("--dport", ("--destination-port",), normalize=_ports_for("sctp"), check=_tcp_ports),
        ),
    ),
    Extension("icmp", (Option("--icmp-type", normalize=_icmp_type),)),
    Extension("icmp6", (Option("--icmpv6-type", normalize=_icmp6_type),)),
    Extension(
        "multiport",
        (
            Option("--sports", ("--source-ports",), normalize=_multiport, check=_check_multiport),
            Option("--dports", ("--destination-ports",), normalize=_multiport, check=_check_multiport),
            Option("--ports", normalize=_multiport, check=_check_multiport),
        ),
    ),
    Extension("state", (Option("--state", normalize=_set_of(_CT_STATES[:5])),)),
    Extension(
        "conntrack",
        (
            Option("--ctstate", normalize=_set_of(_CT_STATES)),
            Option("--ctproto", normalize=_ct_protocol, check=_check_ctproto),
            Option("--ctorigsrc", normalize=_one(_host_mask)),
            Option("--ctorigdst", normalize=_one(_host_mask)),
            Option("--ctreplsrc", normalize=_one(_host_mask)),
            Option("--ctrepldst", normalize=_one(_host_mask)),
            Option("--ctorigsrcport", normalize=_gai_ports, check=_gai_checked),
            Option("--ctorigdstport", normalize=_gai_ports, check=_gai_checked),
            Option("--ctreplsrcport", normalize=_gai_ports, check=_gai_checked),
            Option("--ctrepldstport", normalize=_gai_ports, check=_gai_checked),
            Option("--ctstatus", normalize=_set_of(_CT_STATUS, empty="NONE")),
            Option("--ctexpire", normalize=_uint_range(_U32), check=_check_ordered(_U32)),
            Option("--ctdir", normalize=_upper),
        ),
        finish=_finish_conntrack,
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
    Extension(
        "set",
        (
            Option("--match-set", ("--set",), nargs=2, normalize=_match_set),
            Option("--return-nomatch", nargs=0),
            Option("--update-counters", nargs=0),
            Option("--update-subcounters", nargs=0),
            Option("--packets-eq", normalize=_u64),
            Option("--packets-lt", normalize=_u64),
            Option("--packets-gt", normalize=_u64),
            Option("--bytes-eq", normalize=_u64),
            Option("--bytes-lt", normalize=_u64),
            Option("--bytes-gt", normalize=_u64),
        ),
        finish=_finish_set,
    ),
    Extension(
        "owner",
        (
            Option("--socket-exists", nargs=0),
            Option("--uid-owner", normalize=_user),
            Option("--gid-owner", normalize=_group),
            Option("--suppl-groups", nargs=0),
        ),
    ),
    Extension(
        "statistic",
        (
            Option("--mode", normalize=verbatim),
            Option("--probability", normalize=_probability),
            Option("--every", normalize=_u32),
            Option("--packet", normalize=_u32),
        ),
    ),
    Extension(
        "limit",
        (Option("--limit", normalize=_rate), Option("--limit-burst", normalize=_u32)),
        finish=_finish_limit,
    ),
    Extension(
        "hashlimit",
        (
            Option("--hashlimit-upto", ("--hashlimit",), normalize=verbatim),
            Option("--hashlimit-above", normalize=verbatim),
            Option("--hashlimit-burst", normalize=_hashlimit_burst),
            Option("--hashlimit-mode", normalize=_hashlimit_mode),
            Option("--hashlimit-name", normalize=verbatim),
            Option("--hashlimit-htable-size", normalize=_htable_size),
            Option("--hashlimit-htable-max", normalize=_htable_size),
            Option("--hashlimit-htable-gcinterval", normalize=_u32),
            Option("--hashlimit-htable-expire", normalize=_u32),
            Option("--hashlimit-srcmask", normalize=_plen),
            Option("--hashlimit-dstmask", normalize=_plen),
            Option("--hashlimit-rate-match", nargs=0),
            Option("--hashlimit-rate-interval", normalize=_u32),
        ),
        finish=_finish_hashlimit,
    ),
    Extension(
        "recent",
        (
            Option("--set", nargs=0),
            Option("--rcheck", nargs=0),
            Option("--update", nargs=0),
            Option("--remove", nargs=0),
            Option("--seconds", normalize=_u32),
            Option("--reap", nargs=0),
            Option("--hitcount", normalize=_u32),
            Option("--rttl", nargs=0),
            Option("--name", normalize=verbatim),
            Option("--mask", normalize=_recent_mask),
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
    Extension(
        "string",
        (
            Option("--string", normalize=verbatim),
            Option("--hex-string", normalize=verbatim),
            Option("--algo", normalize=verbatim),
            Option("--from", normalize=_u16),
            Option("--to", normalize=_u16),
            Option("--icase", nargs=0),
        ),
        finish=_finish_string,
    ),
    Extension("length", (Option("--length", normalize=_uint_range(_U16), check=_check_ordered(_U16)),)),
    Extension(
        "connlimit",
        (
            Option("--connlimit-upto", normalize=_u32),
            Option("--connlimit-above", normalize=_u32),
            Option("--connlimit-mask", normalize=_plen),
            Option("--connlimit-saddr", nargs=0),
            Option("--connlimit-daddr", nargs=0),
        ),
        finish=_finish_connlimit,
    ),
    Extension(
        "rpfilter",
        (
            Option("--loose", nargs=0),
            Option("--validmark", nargs=0),
            Option("--accept-local", nargs=0),
            Option("--invert", nargs=0),
        ),
    ),
    Extension("mac", (Option("--mac-source", normalize=_mac),)),
    Extension(
        "time",
        (
            Option("--timestart", normalize=_daytime),
            Option("--timestop", normalize=_daytime),
            Option("--monthdays", normalize=_monthdays),
            Option("--weekdays", normalize=_weekdays),
            Option("--datestart", normalize=_date),
            Option("--datestop", normalize=_date),
            # --localtz is the old name (iptables warns of it).
            Option("--kerneltz", ("--localtz",), nargs=0),
            Option("--contiguous", nargs=0),
            Option("--utc", nargs=0),  # the default: never printed
        ),
        finish=_finish_time,
    ),
    Extension("u32", (Option("--u32", normalize=_u32_match),)),
    Extension(
        "connbytes",
        (
            Option("--connbytes", normalize=_connbytes_range),
            Option("--connbytes-mode", normalize=_one_of("packets", "bytes", "avgpkt")),
            Option("--connbytes-dir", normalize=_one_of("original", "reply", "both")),
        ),
        finish=_finish_connbytes,
    ),
    Extension(
        "dscp",
        (Option("--dscp", normalize=_dscp), Option("--dscp-class", normalize=_dscp_class)),
        finish=_finish_dscp("--dscp", "--dscp-class"),
    ),
    Extension("tos", (Option("--tos", normalize=_tos),)),
    Extension("ipv6header", (Option("--header", normalize=_ipv6_headers), Option("--soft", nargs=0))),
    Extension("pkttype", (Option("--pkt-type", normalize=_packet_type),)),
    Extension("tcpmss", (Option("--mss", normalize=_uint_range(_U16), check=_check_ordered(_U16)),)),
    Extension(
        "policy",
        (
            Option("--dir", normalize=_one_of("in", "out")),
            Option("--pol", normalize=_one_of("none", "ipsec")),
            Option("--strict", nargs=0),
            Option("--reqid", normalize=_u32),
            Option("--spi", normalize=_hex),
            Option("--proto", normalize=_policy_protocol),
            Option("--mode", normalize=_one_of("transport", "tunnel")),
            Option("--tunnel-dst", normalize=_one(_host_mask)),
            Option("--tunnel-src", normalize=_one(_host_mask)),
            Option("--next", nargs=0),
        ),
        finish=_finish_policy,
    ),
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
            # iptables takes any unambiguous prefix of an option (getopt); this one is common.
            Option("--to-ports", ("--to-port",), normalize=_masquerade_ports),
            Option("--random", nargs=0),
            Option("--random-fully", nargs=0),
        ),
    ),
    Extension(
        "SNAT",
        (
            Option("--to-source", ("--to",), normalize=_snat_to),
            Option("--random", nargs=0),
            Option("--random-fully", nargs=0),
            Option("--persistent", nargs=0),
        ),
    ),
    Extension(
        "DNAT",
        (
            Option("--to-destination", ("--to",), normalize=_dnat_to),
            Option("--random", nargs=0),
            Option("--persistent", nargs=0),
        ),
    ),
    Extension(
        "REDIRECT",
        (Option("--to-ports", ("--to-port",), normalize=_to_ports), Option("--random", nargs=0)),
    ),
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
        (Option("--set-mss", normalize=_u16), Option("--clamp-mss-to-pmtu", nargs=0)),
    ),
    Extension(
        "NFLOG",
        (
            Option("--nflog-prefix", normalize=verbatim),
            Option("--nflog-group", normalize=_u16),
            Option("--nflog-size", normalize=_u32),
            Option("--nflog-range", normalize=_u32),
            Option("--nflog-threshold", normalize=_u16),
        ),
        finish=_finish_nflog,
    ),
    Extension(
        "TPROXY",
        (
            Option("--on-port", normalize=_tproxy_port),
            Option("--on-ip", normalize=_tproxy_ip),
            Option("--tproxy-mark", normalize=_mark_mask),
        ),
        finish=_finish_tproxy,
    ),
    Extension("NOTRACK"),
    Extension(
        "CT",
        (
            Option("--notrack", nargs=0),
            Option("--helper", normalize=verbatim),
            Option("--timeout", normalize=verbatim),
            Option("--ctevents", normalize=_events(_CT_EVENTS)),
            Option("--expevents", normalize=_events(("new",))),
            Option("--zone", normalize=_zone),
            Option("--zone-orig", normalize=_zone),
            Option("--zone-reply", normalize=_zone),
        ),
        finish=_finish_ct,
    ),
    Extension(
        "DSCP",
        (Option("--set-dscp", normalize=_dscp), Option("--set-dscp-class", normalize=_dscp_class)),
        finish=_finish_dscp("--set-dscp", "--set-dscp-class"),
    ),
    Extension(
        "TOS",
        (
            Option("--set-tos", normalize=_tos),
            Option("--and-tos", normalize=_u8),
            Option("--or-tos", normalize=_u8),
            Option("--xor-tos", normalize=_u8),
        ),
        finish=_finish_tos_target,
    ),
    Extension("CLASSIFY", (Option("--set-class", normalize=_class),)),
    Extension("AUDIT", (Option("--type", normalize=_audit_type),)),
]

#: Matches by name (``-m NAME``).
MATCHES: dict[str, Extension] = {ext.name: ext for ext in _MATCH_LIST}
#: Targets by name (``-j NAME``).
TARGETS: dict[str, Extension] = {ext.name: ext for ext in _TARGET_LIST}
#: The match ``-p PROTO`` loads by itself when one of its options is used, by
#: the protocol's name as :func:`normalize_protocol` gives it.
IMPLICIT: dict[tuple[Protocol, str], Extension] = {
    (proto, _protocol_name(number)): MATCHES[match]
    for proto in Protocol
    for number, match in ((6, "tcp"), (17, "udp"), (132, "sctp"))
} | {
    (Protocol.IPV4, _protocol_name(1)): MATCHES["icmp"],
    (Protocol.IPV6, _protocol_name(58)): MATCHES["icmp6"],
}
