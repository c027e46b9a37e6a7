"""The canonical form of a rule, held to real iptables.

Each :class:`Case` pins one behaviour: one or more spellings of the same rule
(the first is the one added to iptables), what ``iptables -S`` prints for it
(its canonical form: what iptables 1.8.9 prints, on both backends unless the
case says what legacy prints) and near misses, rules a token away that must
not compare equal. Where other releases print the rule otherwise, lose part
of it in the listing, or refuse a spelling, the case says so in ``by_release``
(:class:`On`), keyed by ranges of releases (see tests/iptables_versions.py).

Two kinds of test read the table:

* ``test_case`` (no processes): every spelling canonicalizes like the printed
  form, an exact analysis is the printed form itself, and every near miss
  canonicalizes differently;
* ``test_iptables_agrees`` (real iptables, per backend and per protocol and
  table, in one fresh network namespace): adds every spelling of every case
  and the near misses iptables accepts with ``iptables -A``, reads each chain
  back once with ``-S``, and checks that iptables prints all spellings of a
  case alike and as the table says for its release, prints each near miss as
  another rule, refuses what the table says it refuses (and nothing else),
  and that the checks above hold for what it really printed: every spelling's
  key is the key of what it printed, whatever the release.

A case marked ``parser`` needs a change in parse.py: it is an expected
failure (strict), and its reason says what to change. (``also``, forms some
release prints, and ``since``, which leaves a case out on older releases, say
less than ``by_release``: which releases print what, and what they refuse.)
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pytest

import iptables_versions as rel
from aioiptables.model import Protocol
from aioiptables.parse import analyze, canonicalize
from aioiptables.syntax import split_line
from iptables_versions import Release, Releases

Spec = tuple[str, ...]

_BUILTIN = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
_SET4, _SET6 = "aioipt4", "aioipt6"
# What some cases need in the namespace before they can be added.
_SETUP = {
    _SET4: ("ipset", "create", _SET4, "hash:ip", "family", "inet"),
    _SET6: ("ipset", "create", _SET6, "hash:ip", "family", "inet6"),
}


@dataclass(frozen=True)
class On:
    """What some releases do otherwise for a case: print it otherwise, lose
    part of it in the listing, or refuse spellings of it."""

    releases: Releases
    #: Why, with the change in iptables' history that bounds the releases.
    why: str
    #: What they print instead of the case's printed form.
    printed: Spec | None = None
    #: Their listing loses part of the rule: what they print must read as
    #: another rule (a miss, never a false match), and near misses may print alike.
    lost: bool = False
    #: The spellings they refuse.
    refuses: tuple[Spec, ...] = ()
    #: Whether they refuse every spelling.
    refuses_all: bool = False

    def with_printed(self, printed: str) -> On:
        """The same releases, printing ``printed`` (as iptables quotes it)."""
        return dataclasses.replace(self, printed=tuple(split_line(printed)))

    def refusing(self, *spellings: str | Spec) -> On:
        """The same releases, refusing these spellings."""
        return dataclasses.replace(self, refuses=tuple(_spec(s) for s in spellings), refuses_all=False)


def on(
    releases: Releases,
    why: str,
    printed: str | None = None,
    *,
    lost: bool = False,
    refuses: Iterable[str | Spec] = (),
    refuses_all: bool = False,
) -> On:
    """An :class:`On`: the printed form as iptables quotes it, spellings as a shell would."""
    return On(
        releases,
        why,
        tuple(split_line(printed)) if printed is not None else None,
        lost,
        tuple(_spec(s) for s in refuses),
        refuses_all,
    )


class Expected(NamedTuple):
    """What one release and backend does with a case."""

    printed: Spec
    lost: bool
    refused: frozenset[Spec]


@dataclass(frozen=True)
class Case:
    id: str
    #: What iptables prints after ``-A CHAIN`` (iptables-nft when the backends differ).
    printed: Spec
    #: Spellings of the same rule; the first is the one added to iptables.
    spellings: tuple[Spec, ...]
    #: Other rules, each a token away: they must canonicalize differently.
    near: tuple[Spec, ...] = ()
    proto: int = 4
    table: str = "filter"
    chain: str = "INPUT"
    #: What iptables-legacy prints, when it differs (it keeps repeated matches apart).
    legacy: Spec | None = None
    #: The listing loses part of the rule: the spellings must be inexact and
    #: must not compare equal to what is printed (a miss, never a false match).
    lossy: bool = False
    #: Whether the canonicalizer understands every token (else compared as text).
    understood: bool = True
    #: A parser change this case needs (an expected failure until it is made).
    parser: str | None = None
    #: Names of _SETUP entries this case needs.
    needs: tuple[str, ...] = ()
    #: Other forms some version of iptables prints for the rule (iptables-nft
    #: 1.8.7 prints what from 1.8.9 on only iptables-legacy prints): taken
    #: from real iptables, which must read like the printed form.
    also: tuple[Spec, ...] = ()
    #: The oldest iptables the case holds on: older ones refuse the rule or
    #: make another rule of a spelling, and the oracle leaves it out there.
    since: tuple[int, int, int] = (0, 0, 0)
    #: What some releases do otherwise (the first that says what they print wins).
    by_release: tuple[On, ...] = ()

    @property
    def protocol(self) -> Protocol:
        return Protocol.IPV4 if self.proto == 4 else Protocol.IPV6

    def expected(self, release: Release, backend: str) -> Expected:
        """What ``release`` of ``backend`` prints for the case and refuses of it."""
        printed = self.legacy if backend == "legacy" and self.legacy is not None else self.printed
        said, lost, refused = False, False, set()
        for entry in self.by_release:
            if not entry.releases.holds(release, backend):
                continue
            if entry.printed is not None and not said:
                printed, said = entry.printed, True
            lost |= entry.lost
            refused |= set(self.spellings if entry.refuses_all else entry.refuses)
        return Expected(printed, lost, frozenset(refused))


def _spec(text: str | Spec) -> Spec:
    return tuple(shlex.split(text)) if isinstance(text, str) else text


#: Where a case is added: (protocol, table, chain).
Place = tuple[int, str, str]
FILTER: Place = (4, "filter", "INPUT")
FORWARD: Place = (4, "filter", "FORWARD")
OUTPUT: Place = (4, "filter", "OUTPUT")
JUMPS: Place = (4, "filter", "OTHER2")
V6: Place = (6, "filter", "INPUT")
NAT_POST: Place = (4, "nat", "POSTROUTING")
NAT_PRE: Place = (4, "nat", "PREROUTING")
NAT_POST6: Place = (6, "nat", "POSTROUTING")
NAT_PRE6: Place = (6, "nat", "PREROUTING")
MANGLE: Place = (4, "mangle", "PREROUTING")
MANGLE_FORWARD: Place = (4, "mangle", "FORWARD")
MANGLE_POST: Place = (4, "mangle", "POSTROUTING")
MANGLE6: Place = (6, "mangle", "FORWARD")
OUTPUT6: Place = (6, "filter", "OUTPUT")
RAW: Place = (4, "raw", "PREROUTING")
RAW6: Place = (6, "raw", "PREROUTING")


def C(
    id: str,
    printed: str,
    *spellings: str | Spec,
    near: Iterable[str | Spec] = (),
    legacy: str | None = None,
    at: Place = FILTER,
    lossy: bool = False,
    understood: bool = True,
    parser: str | None = None,
    needs: tuple[str, ...] = (),
    also: Iterable[str] = (),
    since: tuple[int, int, int] = (0, 0, 0),
    by_release: Iterable[On] = (),
) -> Case:
    """A case: the printed form as iptables quotes it, spellings as a shell would."""
    return Case(
        id=id,
        printed=tuple(split_line(printed)),
        spellings=tuple(_spec(s) for s in spellings),
        near=tuple(_spec(n) for n in near),
        proto=at[0],
        table=at[1],
        chain=at[2],
        legacy=tuple(split_line(legacy)) if legacy is not None else None,
        lossy=lossy,
        understood=understood,
        parser=parser,
        needs=needs,
        also=tuple(tuple(split_line(form)) for form in also),
        since=since,
        by_release=tuple(by_release),
    )


# -- what changed from one release to the next ---------------------------------------------------
# Each with the commit of iptables' history that changed it, which sets the
# bound between the releases measured (1.8.7, 1.8.9, 1.8.11, 1.8.13).

_NUMBERED = on(
    rel.since(1, 8, 11),
    "ff57cd48 (1.8.11): -S and iptables-save print a protocol by number unless iptables' own list names it",
)
_MASK_LOST = on(
    rel.until(1, 8, 7, "nft"),
    "iptables-nft 1.8.7 lists a mask that is no prefix as a prefix; 1.8.8 prints addresses as legacy does "
    "(e5fb9f8e)",
    lost=True,
)
_NEGATIVE_PORTS = on(
    rel.since(1, 8, 11), "9d41421a (1.8.11): libxtables refuses a reversed port range", refuses_all=True
)
_DECREASING_RANGES = on(
    rel.since(1, 8, 11), "30a7f112 (1.8.11): libxtables refuses a decreasing range", refuses_all=True
)
_NFT_FOLDS = on(
    rel.until(1, 8, 7, "nft"),
    "6aba94ef (1.8.8): iptables-nft writes tcp and udp ports and flags as native expressions, which it "
    "reads back into one match",
)
_NFT_FOLDS_INTO_ANY = on(
    rel.until(1, 8, 9, "nft"),
    "f5993955 (1.8.10): iptables-nft reads those expressions back into the rule's first tcp (udp) "
    "match, one without options or kept as an xt match included",
)
_NFT_KEEPS_MATCHES = on(
    rel.until(1, 8, 7, "nft"), "6aba94ef (1.8.8): up to 1.8.7 iptables-nft keeps the tcp match as it is"
)
_ICMP_CODE_LISTED = on(
    rel.since(1, 8, 10), "5b5430d6 (1.8.10): libipt_icmp prints type 255 as any only with every code"
)
_ICMP_CODE_RANGES = on(rel.until(1, 8, 7), "be8c6056 (1.8.9) reads a range of codes", refuses_all=True)
_NAT_PORT_NAMES = on(
    rel.until(1, 8, 8), "f30c5edc (1.8.9): SNAT and MASQUERADE read a port as a C number or a service name"
)
_NAT_BASE_DROPPED = on(
    rel.until(1, 8, 8),
    "f30c5edc (1.8.9): SNAT takes a base port after a range; before, it drops it silently",
    lost=True,
)
_DNAT_PORT_NAMES = on(
    rel.until(1, 8, 7), "3f4f1cf0 (1.8.8): DNAT reads a port as a C number or a service name"
)


def _every_port_lost(protocol: str) -> list[On]:
    """How releases before 1.8.11 list ``! --dport 0:65535``, a rule that
    matches nothing: as one without the port test, or even without the
    match (iptables-nft 1.8.8 to 1.8.10 writes none, a rule matching every
    packet)."""
    why = "a86eb41e (1.8.11) lists a negated range over every port"
    return [
        on(rel.until(1, 8, 10, "legacy"), why, f"-p {protocol} -m {protocol} -j ACCEPT", lost=True),
        on(rel.until(1, 8, 7, "nft"), why, f"-p {protocol} -m {protocol} -j ACCEPT", lost=True),
        on(
            rel.between((1, 8, 8), (1, 8, 10), "nft"),
            "4195a89a (1.8.11): iptables-nft writes the port test again",
            f"-p {protocol} -j ACCEPT",
            lost=True,
        ),
    ]


def _default_to(printed: str) -> On:
    """1.8.8 and older print string's default ``--to 65535``."""
    return on(
        rel.until(1, 8, 8),
        "1bfb1d91 (1.8.9): libxt_string prints the default --to no more",
        printed.replace(" -j ", " --to 65535 -j ", 1),
    )


BASE = [
    C(
        "base: source address is masked and gets its prefix",
        "-s 10.0.0.0/8 -j ACCEPT",
        "-s 10.1.2.3/8 -j ACCEPT",
        "--source 10.1.2.3/8 -j ACCEPT",
        "--src 10.0.0.0/255.0.0.0 -j ACCEPT",
        near=[
            "-s 11.0.0.0/8 -j ACCEPT",
            "-s 10.0.0.0/9 -j ACCEPT",
            "! -s 10.0.0.0/8 -j ACCEPT",
            "-d 10.0.0.0/8 -j ACCEPT",
            "-s 10.0.0.0/8 -j DROP",
        ],
    ),
    C(
        "base: a host address gains /32",
        "-s 1.2.3.4/32 -j ACCEPT",
        "-s 1.2.3.4 -j ACCEPT",
        "-s 1.2.3.4/255.255.255.255 -j ACCEPT",
        "-4 -s 1.2.3.4 -j ACCEPT",
        near=["-s 1.2.3.5 -j ACCEPT", "-s 1.2.3.4/31 -j ACCEPT"],
    ),
    C(
        "base: the prefix length is a C number (010 is 8)",
        "-s 10.0.0.0/8 -j ACCEPT",
        "-s 10.0.0.0/010 -j ACCEPT",
        "-s 10.0.0.0/0x8 -j ACCEPT",
        near=["-s 10.0.0.0/10 -j ACCEPT"],
    ),
    C(
        "base: a mask that is no prefix is printed as a mask",
        "-s 10.0.0.0/255.0.255.0 -j ACCEPT",
        "-s 10.1.0.0/255.0.255.0 -j ACCEPT",
        near=["-s 10.0.0.0/255.255.0.0 -j ACCEPT", "-s 10.0.1.0/255.0.255.0 -j ACCEPT"],
        by_release=[_MASK_LOST.with_printed("-s 10.0.0.0/8 -j ACCEPT")],
    ),
    C(
        "base: addresses as libxtables reads them (0/0, 10/8, octal and hex parts)",
        "-s 8.16.0.0/16 -d 10.1.0.0/32 -j ACCEPT",
        "-s 010.0x10/020 -d 10.1 -j ACCEPT",
        "-s 8.16.0.0/0377.0377.0.0 -d 10.1.0.0/32 -j ACCEPT",
        near=["-s 10.16.0.0/16 -d 10.1.0.0 -j ACCEPT", "-s 8.16.0.0/16 -d 10.0.0.1 -j ACCEPT"],
    ),
    C(
        "base: 0/0 is no address",
        "-j ACCEPT",
        "-s 0/0 -j ACCEPT",
        "-d 0/0 -j ACCEPT",
        near=["-s 0/1 -j ACCEPT"],
    ),
    C(
        "base: 0.0.0.0/0 is no address at all",
        "-j ACCEPT",
        "-s 0.0.0.0/0 -j ACCEPT",
        "-s 1.2.3.4/0 -j ACCEPT",
        "-d 0.0.0.0/0 -j ACCEPT",
        "-j ACCEPT",
        near=["-s 0.0.0.0/1 -j ACCEPT", "-j DROP"],
    ),
    C(
        "base: negated source",
        "! -s 10.0.0.1/32 -j ACCEPT",
        "! -s 10.0.0.1 -j ACCEPT",
        "! --source 10.0.0.1/32 -j ACCEPT",
        near=["-s 10.0.0.1 -j ACCEPT", "! -d 10.0.0.1 -j ACCEPT"],
    ),
    C(
        "base: destination and its long names",
        "-d 192.168.1.0/24 -j ACCEPT",
        "-d 192.168.1.7/24 -j ACCEPT",
        "--destination 192.168.1.0/24 -j ACCEPT",
        "--dst 192.168.1.0/255.255.255.0 -j ACCEPT",
        near=[
            "! -d 192.168.1.0/24 -j ACCEPT",
            "-d 192.168.2.0/24 -j ACCEPT",
            "-s 192.168.1.0/24 -j ACCEPT",
        ],
    ),
    C("base: negated destination", "! -d 10.0.0.0/8 -j DROP", "! -d 10.0.0.0/8 -j DROP"),
    C(
        "base: options print in a fixed order",
        "-s 10.0.0.2/32 -d 10.0.0.1/32 -i eth0 -p tcp -j ACCEPT",
        "-p tcp -d 10.0.0.1 -i eth0 -s 10.0.0.2 -j ACCEPT",
        "-i eth0 -s 10.0.0.2 -p 6 -d 10.0.0.1 -j ACCEPT",
        near=["-s 10.0.0.1 -d 10.0.0.2 -i eth0 -p tcp -j ACCEPT"],
    ),
    C(
        "base: in-interface and its long name",
        "-i eth0 -j ACCEPT",
        "-i eth0 -j ACCEPT",
        "--in-interface eth0 -j ACCEPT",
        near=["-i eth1 -j ACCEPT", "! -i eth0 -j ACCEPT", "-i eth0+ -j ACCEPT"],
    ),
    C(
        "base: interface wildcard",
        "-i veth+ -j ACCEPT",
        "-i veth+ -j ACCEPT",
        near=["-i veth -j ACCEPT", "-i vet+ -j ACCEPT"],
    ),
    C("base: negated interface wildcard", "! -i lo+ -j ACCEPT", "! --in-interface lo+ -j ACCEPT"),
    C(
        "base: -i + is any interface and is not printed",
        "-j ACCEPT",
        "-i + -j ACCEPT",
        near=["-i eth+ -j ACCEPT"],
    ),
    C(
        "base: out-interface and its long name",
        "-o wg0 -j ACCEPT",
        "-o wg0 -j ACCEPT",
        "--out-interface wg0 -j ACCEPT",
        near=["! -o wg0 -j ACCEPT", "-o wg1 -j ACCEPT", "-i wg0 -j ACCEPT"],
        at=FORWARD,
    ),
    C("base: negated out-interface wildcard", "! -o eth+ -j ACCEPT", "! -o eth+ -j ACCEPT", at=FORWARD),
    C(
        "base: protocol by name, number and in upper case",
        "-p udp -j ACCEPT",
        "-p udp -j ACCEPT",
        "-p 17 -j ACCEPT",
        "-p UDP -j ACCEPT",
        "--protocol Udp -j ACCEPT",
        near=["-p tcp -j ACCEPT", "! -p udp -j ACCEPT", "-p udplite -j ACCEPT"],
    ),
    C(
        "base: protocol number is a C number (010 is egp)",
        "-p egp -j ACCEPT",
        "-p 010 -j ACCEPT",
        "-p 8 -j ACCEPT",
        "-p 0x8 -j ACCEPT",
        near=["-p 10 -j ACCEPT"],
        by_release=[_NUMBERED.with_printed("-p 8 -j ACCEPT")],
    ),
    C(
        "base: protocol named as /etc/protocols names it (1.8.11 on: by number)",
        "-p gre -j ACCEPT",
        "-p 47 -j ACCEPT",
        "-p GRE -j ACCEPT",
        "-p 0x2f -j ACCEPT",
        near=["-p 46 -j ACCEPT"],
        by_release=[_NUMBERED.with_printed("-p 47 -j ACCEPT")],
    ),
    C(
        "base: protocols of iptables' own list keep their names (dccp and ipcomp from 1.8.11 on)",
        "-p dccp -j ACCEPT",
        "-p 33 -j ACCEPT",
        "-p DCCP -j ACCEPT",
        near=["-p 108 -j ACCEPT"],
    ),
    C(
        "base v6: a protocol without a name of iptables' own (ipv6 is 41)",
        "-p ipv6 -j ACCEPT",
        "-p 41 -j ACCEPT",
        "-p IPV6 -j ACCEPT",
        near=["-p 42 -j ACCEPT"],
        at=V6,
        by_release=[_NUMBERED.with_printed("-p 41 -j ACCEPT")],
    ),
    C(
        "base: mh is the mobility header, named as /etc/protocols names it",
        "-p mobility-header -j ACCEPT",
        "-p mh -j ACCEPT",
        "-p 135 -j ACCEPT",
        "-p ipv6-mh -j ACCEPT",
    ),
    C(
        "base: a protocol without a name stays a number",
        "-p 253 -j ACCEPT",
        "-p 253 -j ACCEPT",
        "-p 0xfd -j ACCEPT",
        near=["-p 254 -j ACCEPT"],
    ),
    C(
        "base: -p all and -p 0 are no protocol",
        "-j ACCEPT",
        "-p all -j ACCEPT",
        "-p 0 -j ACCEPT",
        "-p ALL -j ACCEPT",
        near=["-p tcp -j ACCEPT"],
    ),
    C(
        "base: negated protocol",
        "! -p tcp -j ACCEPT",
        "! -p tcp -j ACCEPT",
        "! -p 6 -j ACCEPT",
        "! --protocol TCP -j ACCEPT",
        near=["-p tcp -j ACCEPT", "! -p udp -j ACCEPT"],
    ),
    C(
        "base: fragment flag and its long name",
        "-f -j ACCEPT",
        "-f -j ACCEPT",
        "--fragment -j ACCEPT",
        near=["! -f -j ACCEPT", "-j ACCEPT"],
    ),
    C("base: negated fragment flag", "! -f -j ACCEPT", "! --fragment -j ACCEPT", near=["-f -j ACCEPT"]),
    C(
        "base v6: address compressed and masked",
        "-s fd00::/64 -j ACCEPT",
        "-s FD00:0:0::1/64 -j ACCEPT",
        "-s fd00::1234/64 -j ACCEPT",
        near=["-s fd00::/48 -j ACCEPT", "-s fd01::/64 -j ACCEPT", "! -s fd00::/64 -j ACCEPT"],
        at=V6,
    ),
    C(
        "base v6: a host address gains /128",
        "-d 2001:db8::1/128 -j ACCEPT",
        "-d 2001:db8::1 -j ACCEPT",
        "-d 2001:DB8:0:0:0:0:0:1/128 -j ACCEPT",
        "-6 --dst 2001:db8::1 -j ACCEPT",
        near=["-d 2001:db8::2 -j ACCEPT", "-d 2001:db8::1/127 -j ACCEPT"],
        at=V6,
    ),
    C(
        "base v6: an IPv4-mapped address is printed as inet_ntop does",
        "-s ::ffff:1.2.3.4/128 -j ACCEPT",
        "-s ::ffff:1.2.3.4 -j ACCEPT",
        "-s ::ffff:102:304 -j ACCEPT",
        near=["-s ::ffff:1.2.3.5 -j ACCEPT", "-s ::1.2.3.4 -j ACCEPT"],
        at=V6,
    ),
    C(
        "base v6: an IPv4-compatible address is printed as inet_ntop does",
        "-s ::1.2.3.4/128 -j ACCEPT",
        "-s ::102:304 -j ACCEPT",
        "-s 0:0::1.2.3.4 -j ACCEPT",
        at=V6,
    ),
    C(
        "base v6: a mask written as an address, or as a C number",
        "-s fd00::/32 -j ACCEPT",
        "-s fd00::/ffff:ffff:: -j ACCEPT",
        "-s fd00::/32 -j ACCEPT",
        "-s fd00::/0x20 -j ACCEPT",
        "-s fd00::/040 -j ACCEPT",
        near=["-s fd00::/40 -j ACCEPT"],
        at=V6,
    ),
    C(
        "base v6: a mask that is no prefix is printed as a mask",
        "-s fd00::/ffff:ff00:ffff:: -j ACCEPT",
        "-s fd00::/ffff:ff00:ffff:: -j ACCEPT",
        near=["-s fd00::/ffff:ffff:ffff:: -j ACCEPT"],
        at=V6,
        by_release=[_MASK_LOST.with_printed("-s fd00::/24 -j ACCEPT")],
    ),
    C("base v6: ::/0 is no address", "-j ACCEPT", "-s ::/0 -j ACCEPT", "-d ::/0 -j ACCEPT", at=V6),
    C(
        "base v6: ipv6-icmp by every name",
        "-p ipv6-icmp -j ACCEPT",
        "-p icmpv6 -j ACCEPT",
        "-p ipv6-icmp -j ACCEPT",
        "-p 58 -j ACCEPT",
        "-p IPv6-ICMP -j ACCEPT",
        near=["-p icmp -j ACCEPT", "! -p ipv6-icmp -j ACCEPT"],
        at=V6,
    ),
]

TCP = [
    C(
        "tcp: service name becomes port number",
        "-p tcp -m tcp --dport 80 -j ACCEPT",
        "-p tcp --dport http -j ACCEPT",
        "-p tcp --dport 80 -j ACCEPT",
        "-p tcp -m tcp --destination-port 80 -j ACCEPT",
        "-p 6 --dport www -j ACCEPT",
        "-m tcp -p tcp --dport 80 -j ACCEPT",
        near=[
            "-p tcp --dport 81 -j ACCEPT",
            "-p tcp --sport 80 -j ACCEPT",
            "-p tcp ! --dport 80 -j ACCEPT",
            "-p udp --dport 80 -j ACCEPT",
            "-p tcp --dport 80 -j DROP",
        ],
    ),
    C(
        "tcp: a port is a C number (0x50 is 80, 010 is 8)",
        "-p tcp -m tcp --dport 8 -j ACCEPT",
        "-p tcp --dport 010 -j ACCEPT",
        "-p tcp --dport 0x8 -j ACCEPT",
        "-p tcp --dport 8 -j ACCEPT",
        near=["-p tcp --dport 10 -j ACCEPT"],
    ),
    C(
        "tcp: source port and its long name, open range to 65535",
        "-p tcp -m tcp --sport 1024:65535 -j ACCEPT",
        "-p tcp --sport 1024:65535 -j ACCEPT",
        "-p tcp --source-port 1024: -j ACCEPT",
        "-p tcp --sport 0x400: -j ACCEPT",
        near=["-p tcp --sport 1024:65534 -j ACCEPT", "-p tcp --sport 1025: -j ACCEPT"],
    ),
    C(
        "tcp: open range from zero",
        "-p tcp -m tcp --dport 0:100 -j ACCEPT",
        "-p tcp --dport :100 -j ACCEPT",
        "-p tcp --dport 0:100 -j ACCEPT",
        near=["-p tcp --dport 1:100 -j ACCEPT"],
    ),
    C(
        "tcp: a range of one port is the port",
        "-p tcp -m tcp --dport 22 -j ACCEPT",
        "-p tcp --dport 22:22 -j ACCEPT",
        "-p tcp --dport ssh -j ACCEPT",
        "-p tcp --dport ssh:22 -j ACCEPT",
        near=["-p tcp --dport 22:23 -j ACCEPT"],
    ),
    C(
        "tcp: a range over every port is not printed",
        "-p tcp -m tcp --dport 80 -j ACCEPT",
        "-p tcp --sport 0:65535 --dport 80 -j ACCEPT",
        "-p tcp --sport : --dport 80 -j ACCEPT",
        "-p tcp --sport 0: --dport 80 -j ACCEPT",
        near=["-p tcp --sport 1: --dport 80 -j ACCEPT"],
    ),
    C(
        "tcp: negated port",
        "-p tcp -m tcp ! --dport 22 -j ACCEPT",
        "-p tcp ! --dport 22 -j ACCEPT",
        "-p tcp ! --destination-port ssh -j ACCEPT",
        near=["-p tcp --dport 22 -j ACCEPT"],
    ),
    C(
        "tcp: a negated range over every port matches nothing, listed so from 1.8.11 on",
        "-p tcp -m tcp ! --dport 0:65535 -j ACCEPT",
        "-p tcp ! --dport 0:65535 -j ACCEPT",
        "-p tcp ! --destination-port : -j ACCEPT",
        "-p tcp -m tcp ! --dport 0x0: -j ACCEPT",
        near=["-p tcp -m tcp -j ACCEPT", "-p tcp -j ACCEPT", "-p tcp ! --dport 0:65534 -j ACCEPT"],
        by_release=_every_port_lost("tcp"),
    ),
    C(
        "tcp: flags ALL and NONE are spelled out",
        "-p tcp -m tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE -j DROP",
        "-p tcp --tcp-flags ALL NONE -j DROP",
        "-p tcp --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE -j DROP",
        "-p tcp --tcp-flags all none -j DROP",
        near=["-p tcp --tcp-flags ALL ALL -j DROP", "-p tcp --tcp-flags SYN NONE -j DROP"],
    ),
    C(
        "tcp: flags are reordered and deduplicated",
        "-p tcp -m tcp --tcp-flags SYN,ACK SYN -j ACCEPT",
        "-p tcp --tcp-flags ack,syn,syn SYN -j ACCEPT",
        "-p tcp --tcp-flags SYN,ACK syn -j ACCEPT",
        near=["-p tcp --tcp-flags SYN,ACK ACK -j ACCEPT", "-p tcp ! --tcp-flags SYN,ACK SYN -j ACCEPT"],
    ),
    C(
        "tcp: --syn is its flags",
        "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
        "-p tcp --syn -j ACCEPT",
        "-p tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
        "-p tcp --tcp-flags SYN,RST,ACK,FIN SYN -j ACCEPT",
        near=["-p tcp ! --syn -j ACCEPT", "-p tcp --tcp-flags SYN,RST SYN -j ACCEPT"],
    ),
    C(
        "tcp: ! --syn is its flags negated",
        "-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
        "-p tcp ! --syn -j ACCEPT",
        "-p tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT",
        near=["-p tcp --syn -j ACCEPT"],
    ),
    C(
        "tcp: a mask of no flags tests nothing and is not printed",
        "-p tcp -m tcp -j ACCEPT",
        "-p tcp --tcp-flags NONE NONE -j ACCEPT",
        "-p tcp -m tcp --tcp-flags none none -j ACCEPT",
        "-p tcp -m tcp -j ACCEPT",
        near=["-p tcp --tcp-flags SYN NONE -j ACCEPT"],
    ),
    C(
        "tcp: a mask of no flags with flags to find never matches, and the listing loses it",
        "-p tcp -j ACCEPT",
        "-p tcp --tcp-flags NONE SYN -j ACCEPT",
        legacy="-p tcp -m tcp -j ACCEPT",
        lossy=True,
        by_release=[_NFT_KEEPS_MATCHES.with_printed("-p tcp -m tcp -j ACCEPT")],
    ),
    C(
        "tcp: --tcp-option is printed before --tcp-flags, as a C number",
        "-p tcp -m tcp --tcp-option 2 --tcp-flags SYN SYN -j ACCEPT",
        "-p tcp --tcp-flags SYN SYN --tcp-option 2 -j ACCEPT",
        "-p tcp --tcp-option 0x2 --tcp-flags SYN SYN -j ACCEPT",
        near=[
            "-p tcp --tcp-option 3 --tcp-flags SYN SYN -j ACCEPT",
            "-p tcp ! --tcp-option 2 --tcp-flags SYN SYN -j ACCEPT",
        ],
    ),
    C(
        "tcp: options print as sport, dport, option, flags",
        "-p tcp -m tcp --sport 1000 --dport 22 --tcp-flags SYN,RST SYN -j ACCEPT",
        "-p tcp --tcp-flags SYN,RST SYN --dport 22 --sport 1000 -j ACCEPT",
        near=["-p tcp --tcp-flags SYN,RST SYN --dport 1000 --sport 22 -j ACCEPT"],
    ),
    C(
        "tcp: repeated tcp matches fold into one (as iptables-nft does)",
        "-p tcp -m tcp --sport 1 --dport 2 -j ACCEPT",
        "-p tcp -m tcp --sport 1 -m tcp --dport 2 -j ACCEPT",
        near=["-p tcp -m tcp --sport 2 -m tcp --dport 1 -j ACCEPT"],
        legacy="-p tcp -m tcp --sport 1 -m tcp --dport 2 -j ACCEPT",
        by_release=[_NFT_FOLDS.with_printed("-p tcp -m tcp --sport 1 -m tcp --dport 2 -j ACCEPT")],
    ),
    C(
        "tcp: an implicit tcp match folds with a later one",
        "-p tcp -m tcp --sport 2 --dport 1 -j ACCEPT",
        "-p tcp --dport 1 -m tcp --sport 2 -j ACCEPT",
        near=["-p tcp --dport 2 -m tcp --sport 1 -j ACCEPT"],
        legacy="-p tcp -m tcp --dport 1 -m tcp --sport 2 -j ACCEPT",
        by_release=[_NFT_FOLDS.with_printed("-p tcp -m tcp --dport 1 -m tcp --sport 2 -j ACCEPT")],
    ),
    C(
        "tcp: a tcp match without options folds into the next (as iptables-nft does from 1.8.10 on)",
        "-p tcp -m tcp --dport 80 -j ACCEPT",
        "-p tcp -m tcp -m tcp --dport 80 -j ACCEPT",
        near=["-p tcp -m tcp -m tcp --dport 81 -j ACCEPT", "-p tcp -m tcp -m tcp -j ACCEPT"],
        legacy="-p tcp -m tcp -m tcp --dport 80 -j ACCEPT",
        by_release=[_NFT_FOLDS_INTO_ANY.with_printed("-p tcp -m tcp -m tcp --dport 80 -j ACCEPT")],
    ),
    C(
        "tcp: a match iptables-nft keeps as an xt match takes a later one's ports from 1.8.10 on",
        "-p tcp -m tcp --dport 1 --tcp-option 5 -j ACCEPT",
        "-p tcp -m tcp --tcp-option 5 -m tcp --dport 1 -j ACCEPT",
        near=["-p tcp -m tcp --tcp-option 5 -m tcp --dport 2 -j ACCEPT"],
        legacy="-p tcp -m tcp --tcp-option 5 -m tcp --dport 1 -j ACCEPT",
        by_release=[
            _NFT_FOLDS_INTO_ANY.with_printed("-p tcp -m tcp --tcp-option 5 -m tcp --dport 1 -j ACCEPT")
        ],
    ),
    C(
        "getopt: an option may be abbreviated while it is unambiguous",
        "-p tcp -m tcp --dport 80 -j ACCEPT",
        "--proto tcp --dp 80 -j ACCEPT",
        near=["--proto tcp --sp 80 -j ACCEPT"],
    ),
    C(
        "tcp: an implicit match is printed where its first option was given",
        "-p tcp -m comment --comment x -m tcp --dport 22 -j ACCEPT",
        "-p tcp -m comment --comment x --dport 22 -j ACCEPT",
        "-m comment --comment x -p tcp --dport 22 -j ACCEPT",
        near=["-p tcp -m tcp --dport 22 -m comment --comment x -j ACCEPT"],
    ),
]

UDP_SCTP = [
    C(
        "udp: service name and long option names",
        "-p udp -m udp --dport 53 -j ACCEPT",
        "-p udp --dport domain -j ACCEPT",
        "-p udp --destination-port 53 -j ACCEPT",
        "-p 17 -m udp --dport 053 -j ACCEPT",
        near=["-p udp --dport 54 -j ACCEPT", "-p tcp --dport 53 -j ACCEPT", "-p udp --sport 53 -j ACCEPT"],
    ),
    C(
        "udp: a port is decimal (010 is 10), unlike tcp's",
        "-p udp -m udp --dport 10 -j ACCEPT",
        "-p udp --dport 010 -j ACCEPT",
        "-p udp --dport +10 -j ACCEPT",
        near=["-p udp --dport 8 -j ACCEPT", "-p tcp --dport 010 -j ACCEPT"],
    ),
    C(
        "udp: a service name of any protocol (http is tcp's)",
        "-p udp -m udp --sport 67:80 -j ACCEPT",
        "-p udp --sport bootps:http -j ACCEPT",
        near=["-p udp --sport 67:81 -j ACCEPT"],
    ),
    C(
        "udp: a reversed range is kept (1.8.11 on: refused)",
        "-p udp -m udp --dport 5:3 -j ACCEPT",
        "-p udp --dport 5:3 -j ACCEPT",
        near=["-p udp --dport 3:5 -j ACCEPT"],
        by_release=[_NEGATIVE_PORTS],
    ),
    C(
        "udp: negated source port range",
        "-p udp -m udp ! --sport 1:1023 -j ACCEPT",
        "-p udp ! --sport 1:1023 -j ACCEPT",
        "-p udp ! --source-port 1:1023 -j ACCEPT",
        near=["-p udp --sport 1:1023 -j ACCEPT", "-p udp ! --sport 0:1023 -j ACCEPT"],
    ),
    C(
        "udp: a range over every port is not printed",
        "-p udp -m udp -j ACCEPT",
        "-p udp --dport 0:65535 -j ACCEPT",
        "-p udp -m udp -j ACCEPT",
        near=["-p udp --dport 0:65534 -j ACCEPT"],
    ),
    C(
        "udp: repeated udp matches fold into one (as iptables-nft does)",
        "-p udp -m udp --sport 5 --dport 6 -j ACCEPT",
        "-p udp -m udp --sport 5 -m udp --dport 6 -j ACCEPT",
        legacy="-p udp -m udp --sport 5 -m udp --dport 6 -j ACCEPT",
        by_release=[_NFT_FOLDS.with_printed("-p udp -m udp --sport 5 -m udp --dport 6 -j ACCEPT")],
    ),
    C(
        "udp: a negated range over every port matches nothing, listed so from 1.8.11 on",
        "-p udp -m udp ! --sport 0:65535 -j ACCEPT",
        "-p udp ! --sport 0:65535 -j ACCEPT",
        "-p udp ! --source-port : -j ACCEPT",
        near=["-p udp -m udp -j ACCEPT", "-p udp ! --sport 0:65534 -j ACCEPT"],
        by_release=_every_port_lost("udp"),
    ),
    C(
        "sctp: ports, names and C numbers",
        "-p sctp -m sctp --dport 80 -j ACCEPT",
        "-p sctp --dport 80 -j ACCEPT",
        "-p sctp -m sctp --destination-port 0x50 -j ACCEPT",
        "-p 132 --dport 80:80 -j ACCEPT",
        near=["-p sctp --dport 81 -j ACCEPT", "-p sctp --sport 80 -j ACCEPT"],
    ),
    C(
        "sctp: a range over every port is printed (unlike tcp)",
        "-p sctp -m sctp --sport 0:65535 -j ACCEPT",
        "-p sctp --sport 0:65535 -j ACCEPT",
        "-p sctp --sport : -j ACCEPT",
        near=["-p sctp -m sctp -j ACCEPT"],
    ),
    C(
        "sctp: negated range",
        "-p sctp -m sctp ! --dport 1:2 -j ACCEPT",
        "-p sctp ! --dport 1:2 -j ACCEPT",
        near=["-p sctp --dport 1:2 -j ACCEPT"],
    ),
]

ICMP = [
    C(
        "icmp: type name becomes its number",
        "-p icmp -m icmp --icmp-type 8 -j ACCEPT",
        "-p icmp --icmp-type echo-request -j ACCEPT",
        "-p icmp --icmp-type ping -j ACCEPT",
        "-p icmp --icmp-type 8 -j ACCEPT",
        "-p 1 --icmp-type Echo-Request -j ACCEPT",
        near=[
            "-p icmp --icmp-type 0 -j ACCEPT",
            "-p icmp --icmp-type 8/0 -j ACCEPT",
            "-p icmp ! --icmp-type 8 -j ACCEPT",
        ],
    ),
    C(
        "icmp: a name may be abbreviated while it is unambiguous",
        "-p icmp -m icmp --icmp-type 8 -j ACCEPT",
        "-p icmp --icmp-type echo-req -j ACCEPT",
        near=["-p icmp --icmp-type echo-rep -j ACCEPT"],
    ),
    C(
        "icmp: a name with a code becomes type/code",
        "-p icmp -m icmp --icmp-type 3/3 -j ACCEPT",
        "-p icmp --icmp-type port-unreachable -j ACCEPT",
        "-p icmp --icmp-type 3/3 -j ACCEPT",
        "-p icmp --icmp-type 0x3/03 -j ACCEPT",
        near=["-p icmp --icmp-type 3/4 -j ACCEPT", "-p icmp --icmp-type 3 -j ACCEPT"],
    ),
    C(
        "icmp: a type with code 0 keeps its code",
        "-p icmp -m icmp --icmp-type 8/0 -j ACCEPT",
        "-p icmp --icmp-type 8/0 -j ACCEPT",
        near=["-p icmp --icmp-type 8 -j ACCEPT"],
    ),
    C(
        "icmp: any, and type 255 is any",
        "-p icmp -m icmp --icmp-type any -j ACCEPT",
        "-p icmp --icmp-type any -j ACCEPT",
        "-p icmp --icmp-type 255 -j ACCEPT",
        "-p icmp --icmp-type ANY -j ACCEPT",
        near=["-p icmp --icmp-type 254 -j ACCEPT", "-p icmp ! --icmp-type any -j ACCEPT"],
    ),
    C(
        # Type 255 is every ICMP packet to the kernel whatever its codes
        # (icmp_type_code_match), though iptables -C tells 255/0 from any:
        # 1.8.9 prints both as any, 1.8.10 on prints 255/0. One key for both.
        "icmp: type 255 with a code is any (1.8.10 on: listed with its code)",
        "-p icmp -m icmp --icmp-type any -j ACCEPT",
        "-p icmp --icmp-type 255/0 -j ACCEPT",
        near=["-p icmp --icmp-type 254/0 -j ACCEPT", "-p icmp ! --icmp-type 255/0 -j ACCEPT"],
        by_release=[_ICMP_CODE_LISTED.with_printed("-p icmp -m icmp --icmp-type 255/0 -j ACCEPT")],
    ),
    C(
        "icmp: type 255 with a code range is any (1.8.10 on: listed with its lowest code)",
        "-p icmp -m icmp ! --icmp-type any -j ACCEPT",
        "-p icmp ! --icmp-type 255/3:4 -j ACCEPT",
        near=["-p icmp --icmp-type 255/3:4 -j ACCEPT"],
        by_release=[
            _ICMP_CODE_RANGES,
            _ICMP_CODE_LISTED.with_printed("-p icmp -m icmp ! --icmp-type 255/3 -j ACCEPT"),
        ],
    ),
    C(
        "icmp: a range of one code is the code, of every code none",
        "-p icmp -m icmp --icmp-type 3/1 -j ACCEPT",
        "-p icmp --icmp-type 3/1:1 -j ACCEPT",
        "-p icmp --icmp-type host-unreachable -j ACCEPT",
        near=["-p icmp --icmp-type 3/0:255 -j ACCEPT", "-p icmp --icmp-type 3/2 -j ACCEPT"],
        by_release=[_ICMP_CODE_RANGES.refusing("-p icmp --icmp-type 3/1:1 -j ACCEPT")],
    ),
    C(
        "icmp: info-request and info-reply are names from 1.8.12 on",
        "-p icmp -m icmp --icmp-type 15 -j ACCEPT",
        "-p icmp --icmp-type info-request -j ACCEPT",
        "-p icmp --icmp-type 15 -j ACCEPT",
        near=["-p icmp --icmp-type info-reply -j ACCEPT", "-p icmp --icmp-type i -j ACCEPT"],
        by_release=[
            on(
                rel.until(1, 8, 11),
                "1e6a2812 (1.8.12) named types 15 and 16",
                refuses=["-p icmp --icmp-type info-request -j ACCEPT"],
            )
        ],
    ),
    C(
        "icmp: negated type, by alias",
        "-p icmp -m icmp ! --icmp-type 0 -j ACCEPT",
        "-p icmp ! --icmp-type echo-reply -j ACCEPT",
        "-p icmp ! --icmp-type pong -j ACCEPT",
        near=["-p icmp --icmp-type 0 -j ACCEPT"],
    ),
    C(
        "icmp: numbers are C numbers (010 is 8)",
        "-p icmp -m icmp --icmp-type 8 -j ACCEPT",
        "-p icmp --icmp-type 010 -j ACCEPT",
        near=["-p icmp --icmp-type 10 -j ACCEPT"],
    ),
    C(
        "icmp: ttl-exceeded is time-exceeded",
        "-p icmp -m icmp --icmp-type 11 -j ACCEPT",
        "-p icmp --icmp-type ttl-exceeded -j ACCEPT",
        "-p icmp --icmp-type time-exceeded -j ACCEPT",
        near=["-p icmp --icmp-type 11/0 -j ACCEPT"],
    ),
    C(
        "icmp: TOS names in any case",
        "-p icmp -m icmp --icmp-type 5/3 -j ACCEPT",
        "-p icmp --icmp-type TOS-host-redirect -j ACCEPT",
        "-p icmp --icmp-type tos-host-redirect -j ACCEPT",
        near=["-p icmp --icmp-type 5/2 -j ACCEPT"],
    ),
    C(
        "icmp6: -p icmpv6, ipv6-icmp and 58 load the same match",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT",
        "-p icmpv6 --icmpv6-type echo-request -j ACCEPT",
        "-p ipv6-icmp --icmpv6-type 128 -j ACCEPT",
        "-p 58 --icmpv6-type ping -j ACCEPT",
        "-p icmpv6 -m icmp6 --icmpv6-type 0x80 -j ACCEPT",
        "-p icmpv6 --icmpv6-type Echo-Req -j ACCEPT",
        near=[
            "-p icmpv6 --icmpv6-type 129 -j ACCEPT",
            "-p icmpv6 ! --icmpv6-type 128 -j ACCEPT",
            "-p icmpv6 --icmpv6-type 128/0 -j ACCEPT",
        ],
        at=V6,
    ),
    C(
        "icmp6: names with a code and type/code",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 1/3 -j ACCEPT",
        "-p icmpv6 --icmpv6-type address-unreachable -j ACCEPT",
        "-p icmpv6 --icmpv6-type 1/3 -j ACCEPT",
        "-p icmpv6 --icmpv6-type 01/03 -j ACCEPT",
        near=["-p icmpv6 --icmpv6-type 1/4 -j ACCEPT", "-p icmpv6 --icmpv6-type 1 -j ACCEPT"],
        at=V6,
    ),
    C(
        "icmp6: type 255 stays 255 (icmp6 has no any)",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 255 -j ACCEPT",
        "-p icmpv6 --icmpv6-type 255 -j ACCEPT",
        near=["-p icmpv6 --icmpv6-type 255/0 -j ACCEPT"],
        at=V6,
    ),
    C(
        "icmp6: neighbor and neighbour, negated",
        "-p ipv6-icmp -m icmp6 ! --icmpv6-type 135 -j ACCEPT",
        "-p icmpv6 ! --icmpv6-type neighbor-solicitation -j ACCEPT",
        "-p icmpv6 ! --icmpv6-type neighbour-solicitation -j ACCEPT",
        near=["-p icmpv6 ! --icmpv6-type 136 -j ACCEPT"],
        at=V6,
    ),
]

MULTIPORT = [
    C(
        "multiport: names and the long option name",
        "-p tcp -m multiport --dports 80,443 -j ACCEPT",
        "-p tcp -m multiport --dports http,https -j ACCEPT",
        "-p tcp -m multiport --destination-ports 80,443 -j ACCEPT",
        near=[
            "-p tcp -m multiport --dports 80,444 -j ACCEPT",
            "-p tcp -m multiport --sports 80,443 -j ACCEPT",
            "-p tcp -m multiport ! --dports 80,443 -j ACCEPT",
            "-p tcp -m multiport --ports 80,443 -j ACCEPT",
            "-p udp -m multiport --dports 80,443 -j ACCEPT",
        ],
    ),
    C(
        "multiport: the order given is kept",
        "-p tcp -m multiport --dports 443,80 -j ACCEPT",
        "-p tcp -m multiport --dports https,80 -j ACCEPT",
    ),
    C(
        "multiport: source ports with a range",
        "-p tcp -m multiport --sports 1:1023,8080 -j ACCEPT",
        "-p tcp -m multiport --sports 1:1023,8080 -j ACCEPT",
        "-p tcp -m multiport --source-ports 1:1023,http-alt -j ACCEPT",
        near=["-p tcp -m multiport --sports 1:1024,8080 -j ACCEPT"],
    ),
    C(
        "multiport: --ports",
        "-p tcp -m multiport --ports 22,80:90 -j ACCEPT",
        "-p tcp -m multiport --ports ssh,80:90 -j ACCEPT",
        near=["-p tcp -m multiport --ports 22,80:91 -j ACCEPT"],
    ),
    C(
        "multiport: udp service names",
        "-p udp -m multiport --dports 53,123 -j ACCEPT",
        "-p udp -m multiport --dports domain,ntp -j ACCEPT",
    ),
    C(
        "multiport: negated",
        "-p tcp -m multiport ! --dports 22,23 -j ACCEPT",
        "-p tcp -m multiport ! --dports ssh,telnet -j ACCEPT",
        near=["-p tcp -m multiport --dports 22,23 -j ACCEPT"],
    ),
    C(
        "multiport: ports are C numbers (0x50 is 80, 010 is 8)",
        "-p tcp -m multiport --dports 80,8 -j ACCEPT",
        "-p tcp -m multiport --dports 0x50,010 -j ACCEPT",
        near=["-p tcp -m multiport --dports 80,10 -j ACCEPT"],
    ),
    C(
        "multiport: fifteen ports",
        "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j ACCEPT",
        "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j ACCEPT",
    ),
    C(
        "multiport: with sctp",
        "-p sctp -m multiport --dports 80,81 -j ACCEPT",
        "-p sctp -m multiport --dports 80,0x51 -j ACCEPT",
    ),
]

CONNTRACK = [
    C(
        "state: states in iptables' order, any case, once",
        "-m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-m state --state ESTABLISHED,RELATED -j ACCEPT",
        "-m state --state related,established -j ACCEPT",
        "-m state --state RELATED,ESTABLISHED,RELATED -j ACCEPT",
        near=[
            "-m state --state ESTABLISHED -j ACCEPT",
            "-m state ! --state RELATED,ESTABLISHED -j ACCEPT",
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ],
    ),
    C(
        "state: every state",
        "-m state --state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED -j ACCEPT",
        "-m state --state UNTRACKED,ESTABLISHED,RELATED,NEW,INVALID -j ACCEPT",
    ),
    C(
        "state: negated",
        "-m state ! --state INVALID -j DROP",
        "-m state ! --state invalid -j DROP",
        near=["-m state --state INVALID -j DROP"],
    ),
    C(
        "conntrack: ctstate order with SNAT and DNAT",
        "-m conntrack --ctstate NEW,SNAT,DNAT -j ACCEPT",
        "-m conntrack --ctstate DNAT,NEW,SNAT -j ACCEPT",
        "-m conntrack --ctstate new,snat,dnat -j ACCEPT",
        near=[
            "-m conntrack --ctstate NEW,SNAT -j ACCEPT",
            "-m conntrack ! --ctstate NEW,SNAT,DNAT -j ACCEPT",
        ],
    ),
    C(
        "conntrack: negated ctstate",
        "-m conntrack ! --ctstate INVALID -j ACCEPT",
        "-m conntrack ! --ctstate INVALID -j ACCEPT",
        near=["-m conntrack --ctstate INVALID -j ACCEPT"],
    ),
    C(
        "conntrack: --ctproto is printed as a number",
        "-m conntrack --ctproto 6 -j ACCEPT",
        "-m conntrack --ctproto tcp -j ACCEPT",
        "-m conntrack --ctproto 6 -j ACCEPT",
        "-m conntrack --ctproto TCP -j ACCEPT",
        "-m conntrack --ctproto 0x6 -j ACCEPT",
        near=["-m conntrack --ctproto 17 -j ACCEPT", "-m conntrack ! --ctproto 6 -j ACCEPT"],
    ),
    C(
        "conntrack: --ctproto all is 0 (1.8.10 on: refused)",
        "-m conntrack --ctproto 0 -j ACCEPT",
        "-m conntrack --ctproto all -j ACCEPT",
        "-m conntrack --ctproto 0 -j ACCEPT",
        near=["-j ACCEPT"],
        by_release=[
            on(
                rel.since(1, 8, 10),
                "2e704f6d (1.8.10): conntrack refuses protocol 0, which no connection has",
                refuses_all=True,
            )
        ],
    ),
    C(
        "conntrack: an address keeps its host bits",
        "-m conntrack --ctorigsrc 10.1.2.3/8 -j ACCEPT",
        "-m conntrack --ctorigsrc 10.1.2.3/8 -j ACCEPT",
        "-m conntrack --ctorigsrc 10.1.2.3/255.0.0.0 -j ACCEPT",
        "-m conntrack --ctorigsrc 10.1.2.3/010 -j ACCEPT",
        near=[
            "-m conntrack --ctorigsrc 10.1.2.3/9 -j ACCEPT",
            "-m conntrack --ctorigdst 10.1.2.3/8 -j ACCEPT",
            "-m conntrack ! --ctorigsrc 10.1.2.3/8 -j ACCEPT",
        ],
    ),
    C(
        "conntrack: addresses as inet_aton reads them (10.1 is 10.0.0.1)",
        "-m conntrack --ctorigsrc 10.0.0.1 --ctorigdst 8.0.0.1/8 -j ACCEPT",
        "-m conntrack --ctorigsrc 10.1 --ctorigdst 010.0.0.1/8 -j ACCEPT",
        near=["-m conntrack --ctorigsrc 10.1.0.0 --ctorigdst 10.0.0.1/8 -j ACCEPT"],
    ),
    C(
        "conntrack: a host address has no /32",
        "-m conntrack --ctorigdst 10.0.0.1 -j ACCEPT",
        "-m conntrack --ctorigdst 10.0.0.1 -j ACCEPT",
        "-m conntrack --ctorigdst 10.0.0.1/32 -j ACCEPT",
        near=[
            "-m conntrack --ctorigdst 10.0.0.2 -j ACCEPT",
            "-m conntrack --ctorigdst 10.0.0.1/31 -j ACCEPT",
        ],
    ),
    C(
        "conntrack: /0 is printed",
        "-m conntrack --ctreplsrc 10.0.0.0/0 -j ACCEPT",
        "-m conntrack --ctreplsrc 10.0.0.0/0 -j ACCEPT",
        "-m conntrack --ctreplsrc 10.0.0.0/0.0.0.0 -j ACCEPT",
        near=["-j ACCEPT"],
    ),
    C(
        "conntrack: reply addresses, negated",
        "-m conntrack ! --ctreplsrc 10.0.0.1/24 --ctrepldst 10.0.0.0/8 -j ACCEPT",
        "-m conntrack --ctrepldst 10.0.0.0/255.0.0.0 ! --ctreplsrc 10.0.0.1/24 -j ACCEPT",
        near=["-m conntrack --ctreplsrc 10.0.0.1/24 --ctrepldst 10.0.0.0/8 -j ACCEPT"],
    ),
    C(
        "conntrack: ports are decimal (010 is 10)",
        "-m conntrack --ctorigsrcport 10 -j ACCEPT",
        "-m conntrack --ctorigsrcport 010 -j ACCEPT",
        "-m conntrack --ctorigsrcport 10:10 -j ACCEPT",
        near=["-m conntrack --ctorigsrcport 8 -j ACCEPT", "-m conntrack --ctorigdstport 10 -j ACCEPT"],
    ),
    C(
        "conntrack: port by service name",
        "-m conntrack --ctreplsrcport 80 -j ACCEPT",
        "-m conntrack --ctreplsrcport http -j ACCEPT",
        near=["-m conntrack --ctrepldstport 80 -j ACCEPT"],
    ),
    C(
        "conntrack: port ranges, open and reversed (1.8.11 on: reversed refused)",
        "-m conntrack --ctorigdstport 0:100 --ctrepldstport 5:3 -j ACCEPT",
        "-m conntrack --ctorigdstport :100 --ctrepldstport 5:3 -j ACCEPT",
        near=["-m conntrack --ctorigdstport 0:100 --ctrepldstport 3:5 -j ACCEPT"],
        by_release=[_NEGATIVE_PORTS],
    ),
    C(
        "conntrack: an open port range",
        "-m conntrack --ctorigdstport 0:100 --ctrepldstport 3:65535 -j ACCEPT",
        "-m conntrack --ctorigdstport :100 --ctrepldstport 3: -j ACCEPT",
        near=["-m conntrack --ctorigdstport 1:100 --ctrepldstport 3: -j ACCEPT"],
    ),
    C(
        "conntrack: ctstatus order, NONE only alone",
        "-m conntrack --ctstatus SEEN_REPLY,CONFIRMED -j ACCEPT",
        "-m conntrack --ctstatus seen_reply,confirmed,none -j ACCEPT",
        "-m conntrack --ctstatus CONFIRMED,SEEN_REPLY -j ACCEPT",
        near=["-m conntrack --ctstatus SEEN_REPLY -j ACCEPT", "-m conntrack --ctstatus NONE -j ACCEPT"],
    ),
    C(
        "conntrack: ctstatus NONE and negation",
        "-m conntrack ! --ctstatus NONE -j ACCEPT",
        "-m conntrack ! --ctstatus none -j ACCEPT",
        near=["-m conntrack --ctstatus NONE -j ACCEPT"],
    ),
    C(
        "conntrack: ctexpire a:a is a, numbers are C numbers",
        "-m conntrack --ctexpire 10 -j ACCEPT",
        "-m conntrack --ctexpire 10:10 -j ACCEPT",
        "-m conntrack --ctexpire 0xa -j ACCEPT",
        "-m conntrack --ctexpire 012 -j ACCEPT",
        near=["-m conntrack --ctexpire 10:11 -j ACCEPT", "-m conntrack ! --ctexpire 10 -j ACCEPT"],
    ),
    C(
        "conntrack: ctexpire open ranges",
        "-m conntrack --ctexpire 0:5 -j ACCEPT",
        "-m conntrack --ctexpire :5 -j ACCEPT",
        near=["-m conntrack --ctexpire 5: -j ACCEPT"],
    ),
    C(
        "conntrack: ctexpire open to the largest number",
        "-m conntrack --ctexpire 5:4294967295 -j ACCEPT",
        "-m conntrack --ctexpire 5: -j ACCEPT",
    ),
    C(
        "conntrack: ctdir in any case",
        "-m conntrack --ctdir REPLY -j ACCEPT",
        "-m conntrack --ctdir reply -j ACCEPT",
        near=["-m conntrack --ctdir ORIGINAL -j ACCEPT"],
    ),
    C(
        "conntrack: options print in iptables' order",
        "-m conntrack --ctstate NEW --ctproto 6 --ctorigsrc 10.0.0.1 --ctorigdstport 22 "
        "--ctstatus ASSURED --ctexpire 5 --ctdir ORIGINAL -j ACCEPT",
        "-m conntrack --ctdir ORIGINAL --ctexpire 5 --ctstatus ASSURED --ctorigdstport 22 "
        "--ctorigsrc 10.0.0.1 --ctproto tcp --ctstate NEW -j ACCEPT",
    ),
    C(
        "conntrack v6: addresses compressed, host bits kept, no /128",
        "-m conntrack --ctorigsrc fd00::1/64 --ctorigdst fd00::2 -j ACCEPT",
        "-m conntrack --ctorigsrc FD00:0::1/64 --ctorigdst fd00::2/128 -j ACCEPT",
        near=["-m conntrack --ctorigsrc fd00::/64 --ctorigdst fd00::2 -j ACCEPT"],
        at=V6,
    ),
]

COMMENT_MARK = [
    C(
        "comment: a word",
        "-m comment --comment hello -j ACCEPT",
        "-m comment --comment hello -j ACCEPT",
        near=["-m comment --comment Hello -j ACCEPT", "-j ACCEPT", "-m comment --comment hello -j DROP"],
    ),
    C(
        "comment: spaces are kept and quoted",
        '-m comment --comment "two  words " -j ACCEPT',
        ("-m", "comment", "--comment", "two  words ", "-j", "ACCEPT"),
        near=['-m comment --comment "two words" -j ACCEPT'],
    ),
    C(
        "comment: quotes and backslashes are escaped",
        r'-m comment --comment "it\'s \"q\" back\\slash" -j ACCEPT',
        ("-m", "comment", "--comment", 'it\'s "q" back\\slash', "-j", "ACCEPT"),
        near=[("-m", "comment", "--comment", 'it\'s "q" backslash', "-j", "ACCEPT")],
    ),
    C(
        "comment: an empty comment",
        '-m comment --comment "" -j ACCEPT',
        ("-m", "comment", "--comment", "", "-j", "ACCEPT"),
        near=["-j ACCEPT", '-m comment --comment " " -j ACCEPT'],
    ),
    C(
        "comment: a tab and a hash",
        '-m comment --comment "a\tb #c" -j ACCEPT',
        ("-m", "comment", "--comment", "a\tb #c", "-j", "ACCEPT"),
        near=[("-m", "comment", "--comment", "a b #c", "-j", "ACCEPT")],
    ),
    C(
        "comment: two comments keep their order",
        "-m comment --comment a -m comment --comment b -j ACCEPT",
        "-m comment --comment a -m comment --comment b -j ACCEPT",
        near=["-m comment --comment b -m comment --comment a -j ACCEPT"],
    ),
    C(
        "comment: a target given first is printed last",
        "-m comment --comment x -j ACCEPT",
        "-j ACCEPT -m comment --comment x",
        "--match comment --comment x --jump ACCEPT",
    ),
    C(
        "mark: decimal becomes hex, a full mask is not printed",
        "-m mark --mark 0x1 -j ACCEPT",
        "-m mark --mark 1 -j ACCEPT",
        "-m mark --mark 0x01/0xffffffff -j ACCEPT",
        "-m mark --mark 1/4294967295 -j ACCEPT",
        near=[
            "-m mark --mark 2 -j ACCEPT",
            "-m mark --mark 0x1/0xff -j ACCEPT",
            "-m mark ! --mark 1 -j ACCEPT",
            "-m connmark --mark 1 -j ACCEPT",
        ],
    ),
    C(
        "mark: with a mask, in lower-case hex",
        "-m mark --mark 0xff/0xf0 -j ACCEPT",
        "-m mark --mark 0xFF/0xF0 -j ACCEPT",
        "-m mark --mark 255/240 -j ACCEPT",
        near=["-m mark --mark 0xff/0xf1 -j ACCEPT"],
    ),
    C(
        "mark: octal is octal (010 is 8)",
        "-m mark --mark 0x8 -j ACCEPT",
        "-m mark --mark 010 -j ACCEPT",
        near=["-m mark --mark 10 -j ACCEPT"],
    ),
    C(
        "mark: zero with a zero mask",
        "-m mark --mark 0x0/0x0 -j ACCEPT",
        "-m mark --mark 0/0 -j ACCEPT",
        near=["-m mark --mark 0 -j ACCEPT"],
    ),
    C("mark: largest mark", "-m mark --mark 0xffffffff -j ACCEPT", "-m mark --mark 4294967295 -j ACCEPT"),
    C(
        "mark: negated with a mask",
        "-m mark ! --mark 0x10/0x10 -j ACCEPT",
        "-m mark ! --mark 16/16 -j ACCEPT",
        near=["-m mark --mark 0x10/0x10 -j ACCEPT"],
    ),
    C(
        "connmark: mark and mask",
        "-m connmark --mark 0x2/0x3 -j ACCEPT",
        "-m connmark --mark 2/3 -j ACCEPT",
        near=["-m connmark ! --mark 2/3 -j ACCEPT", "-m mark --mark 2/3 -j ACCEPT"],
    ),
    C(
        "connmark: negated, full mask",
        "-m connmark ! --mark 0x1 -j ACCEPT",
        "-m connmark ! --mark 1/0xffffffff -j ACCEPT",
    ),
]

ADDRTYPE_PHYSDEV_SET = [
    C(
        "addrtype: a list in iptables' order, any case",
        "-m addrtype --dst-type UNICAST,LOCAL -j ACCEPT",
        "-m addrtype --dst-type local,unicast -j ACCEPT",
        "-m addrtype --dst-type UNICAST,Local -j ACCEPT",
        near=[
            "-m addrtype --dst-type LOCAL -j ACCEPT",
            "-m addrtype --src-type UNICAST,LOCAL -j ACCEPT",
            "-m addrtype ! --dst-type UNICAST,LOCAL -j ACCEPT",
        ],
    ),
    C(
        "addrtype: source before destination, both negated",
        "-m addrtype ! --src-type LOCAL ! --dst-type LOCAL -j ACCEPT",
        "-m addrtype ! --dst-type LOCAL ! --src-type LOCAL -j ACCEPT",
        near=["-m addrtype --src-type LOCAL ! --dst-type LOCAL -j ACCEPT"],
    ),
    C(
        "addrtype: every type",
        "-m addrtype --src-type UNSPEC,UNICAST,LOCAL,BROADCAST,ANYCAST,MULTICAST,BLACKHOLE,"
        "UNREACHABLE,PROHIBIT,THROW,NAT,XRESOLVE -j ACCEPT",
        "-m addrtype --src-type XRESOLVE,NAT,THROW,PROHIBIT,UNREACHABLE,BLACKHOLE,MULTICAST,"
        "ANYCAST,BROADCAST,LOCAL,UNICAST,UNSPEC -j ACCEPT",
    ),
    C(
        "addrtype: --limit-iface-in",
        "-m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT",
        "-m addrtype --limit-iface-in --dst-type LOCAL -j ACCEPT",
        near=["-m addrtype --dst-type LOCAL -j ACCEPT"],
    ),
    C(
        "addrtype: --limit-iface-out",
        "-m addrtype --src-type LOCAL --limit-iface-out -j ACCEPT",
        "-m addrtype --limit-iface-out --src-type local -j ACCEPT",
        near=["-m addrtype --src-type LOCAL -j ACCEPT"],
        at=OUTPUT,
    ),
    C(
        "physdev: in before out",
        "-m physdev --physdev-in eth0 --physdev-out eth1 -j ACCEPT",
        "-m physdev --physdev-out eth1 --physdev-in eth0 -j ACCEPT",
        near=[
            "-m physdev --physdev-in eth1 --physdev-out eth0 -j ACCEPT",
            "-m physdev ! --physdev-in eth0 --physdev-out eth1 -j ACCEPT",
        ],
        at=FORWARD,
    ),
    C(
        "physdev: --physdev-is-bridged",
        "-m physdev --physdev-is-bridged -j ACCEPT",
        "-m physdev --physdev-is-bridged -j ACCEPT",
        near=["-m physdev ! --physdev-is-bridged -j ACCEPT", "-m physdev --physdev-is-in -j ACCEPT"],
        at=FORWARD,
    ),
    C(
        "physdev: ! --physdev-is-bridged",
        "-m physdev ! --physdev-is-bridged -j ACCEPT",
        "-m physdev ! --physdev-is-bridged -j ACCEPT",
        at=FORWARD,
    ),
    C(
        "physdev: is-in, is-out, is-bridged in order",
        "-m physdev --physdev-is-in --physdev-is-out --physdev-is-bridged -j ACCEPT",
        "-m physdev --physdev-is-bridged --physdev-is-out --physdev-is-in -j ACCEPT",
        near=["-m physdev --physdev-is-in --physdev-is-out -j ACCEPT"],
        at=FORWARD,
    ),
    C(
        "physdev: negated wildcard",
        "-m physdev ! --physdev-in veth+ -j ACCEPT",
        "-m physdev ! --physdev-in veth+ -j ACCEPT",
        near=["-m physdev ! --physdev-in veth -j ACCEPT", "-m physdev --physdev-in veth+ -j ACCEPT"],
        at=FORWARD,
    ),
    C(
        "set: --match-set and the old --set",
        f"-m set --match-set {_SET4} src -j ACCEPT",
        f"-m set --match-set {_SET4} src -j ACCEPT",
        f"-m set --set {_SET4} src -j ACCEPT",
        near=[
            f"-m set --match-set {_SET4} dst -j ACCEPT",
            f"-m set --match-set {_SET4} src,dst -j ACCEPT",
            f"-m set ! --match-set {_SET4} src -j ACCEPT",
            "-m set --match-set other src -j ACCEPT",
        ],
        needs=(_SET4,),
    ),
    C(
        "set: negated, two directions",
        f"-m set ! --match-set {_SET4} src,dst -j DROP",
        f"-m set ! --match-set {_SET4} src,dst -j DROP",
        needs=(_SET4,),
    ),
    C(
        "set: flags and counters in print order",
        f"-m set --match-set {_SET4} src --return-nomatch ! --update-counters ! --update-subcounters "
        "--packets-eq 5 --bytes-gt 100 -j ACCEPT",
        f"-m set --match-set {_SET4} src --bytes-gt 100 ! --update-subcounters --packets-eq 5 "
        "! --update-counters --return-nomatch -j ACCEPT",
        near=[
            f"-m set --match-set {_SET4} src --return-nomatch ! --update-counters "
            "! --update-subcounters --packets-eq 6 --bytes-gt 100 -j ACCEPT",
            f"-m set --match-set {_SET4} src --return-nomatch ! --update-counters "
            "! --update-subcounters --packets-lt 5 --bytes-gt 100 -j ACCEPT",
        ],
        needs=(_SET4,),
    ),
    C(
        "set: --update-counters without ! is the default",
        f"-m set --match-set {_SET4} src -j ACCEPT",
        f"-m set --match-set {_SET4} src --update-counters --update-subcounters -j ACCEPT",
        near=[f"-m set --match-set {_SET4} src ! --update-counters -j ACCEPT"],
        needs=(_SET4,),
    ),
    C(
        "set: counter values are C numbers",
        f"-m set --match-set {_SET4} src ! --packets-eq 16 --bytes-lt 8 -j ACCEPT",
        f"-m set --match-set {_SET4} src ! --packets-eq 0x10 --bytes-lt 010 -j ACCEPT",
        near=[f"-m set --match-set {_SET4} src --packets-eq 16 --bytes-lt 8 -j ACCEPT"],
        needs=(_SET4,),
    ),
    C(
        "set v6: a set of the inet6 family",
        f"-m set --match-set {_SET6} dst -j ACCEPT",
        f"-m set --match-set {_SET6} dst -j ACCEPT",
        needs=(_SET6,),
        at=V6,
    ),
]

OWNER = [
    C(
        "owner: a user name becomes its uid",
        "-m owner --uid-owner 0 -j ACCEPT",
        "-m owner --uid-owner root -j ACCEPT",
        "-m owner --uid-owner 0 -j ACCEPT",
        near=[
            "-m owner --uid-owner 1 -j ACCEPT",
            "-m owner --gid-owner 0 -j ACCEPT",
            "-m owner ! --uid-owner 0 -j ACCEPT",
        ],
    ),
    C(
        "owner: uid ranges with - or :",
        "-m owner --uid-owner 1000-2000 -j ACCEPT",
        "-m owner --uid-owner 1000-2000 -j ACCEPT",
        "-m owner --uid-owner 1000:2000 -j ACCEPT",
        near=["-m owner --uid-owner 1000-2001 -j ACCEPT"],
    ),
    C(
        "owner: a range of one is its number",
        "-m owner --uid-owner 5 -j ACCEPT",
        "-m owner --uid-owner 5-5 -j ACCEPT",
        near=["-m owner --uid-owner 5-6 -j ACCEPT"],
    ),
    C(
        "owner: ids are C numbers (010 is 8)",
        "-m owner --uid-owner 8 --gid-owner 16 -j ACCEPT",
        "-m owner --uid-owner 010 --gid-owner 0x10 -j ACCEPT",
        near=["-m owner --uid-owner 10 --gid-owner 16 -j ACCEPT"],
    ),
    C(
        "owner: a group name becomes its gid",
        "-m owner --gid-owner 0 -j ACCEPT",
        "-m owner --gid-owner root -j ACCEPT",
        near=["-m owner ! --gid-owner 0 -j ACCEPT"],
    ),
    C(
        "owner: socket-exists first, then uid, gid, suppl-groups",
        "-m owner --socket-exists --uid-owner 0 --gid-owner 10 --suppl-groups -j ACCEPT",
        "-m owner --gid-owner 10 --suppl-groups --uid-owner 0 --socket-exists -j ACCEPT",
        near=["-m owner --socket-exists --uid-owner 0 --gid-owner 10 -j ACCEPT"],
    ),
    C(
        "owner: negated socket-exists",
        "-m owner ! --socket-exists -j ACCEPT",
        "-m owner ! --socket-exists -j ACCEPT",
        near=["-m owner --socket-exists -j ACCEPT"],
    ),
]
OWNER = [dataclasses.replace(c, chain="OUTPUT") for c in OWNER]

STATISTIC_LIMIT = [
    C(
        "statistic: a probability is printed as stored (0.5)",
        "-m statistic --mode random --probability 0.50000000000 -j ACCEPT",
        "-m statistic --mode random --probability 0.5 -j ACCEPT",
        "-m statistic --probability .5 --mode random -j ACCEPT",
        "-m statistic --mode random --probability 5e-1 -j ACCEPT",
        "-m statistic --mode random --probability 0.500000000001 -j ACCEPT",
        near=[
            "-m statistic --mode random --probability 0.25 -j ACCEPT",
            "-m statistic --mode random ! --probability 0.5 -j ACCEPT",
        ],
    ),
    C(
        "statistic: a probability is rounded to 31 bits (0.1)",
        "-m statistic --mode random --probability 0.10000000009 -j ACCEPT",
        "-m statistic --mode random --probability 0.1 -j ACCEPT",
        near=["-m statistic --mode random --probability 0.09999999962 -j ACCEPT"],
    ),
    C(
        "statistic: a probability is rounded up (0.7)",
        "-m statistic --mode random --probability 0.70000000019 -j ACCEPT",
        "-m statistic --mode random --probability 0.7 -j ACCEPT",
    ),
    C(
        "statistic: a probability of 0.33333",
        "-m statistic --mode random --probability 0.33332999982 -j ACCEPT",
        "-m statistic --mode random --probability 0.33333 -j ACCEPT",
    ),
    C(
        "statistic: a probability of 1",
        "-m statistic --mode random --probability 1.00000000000 -j ACCEPT",
        "-m statistic --mode random --probability 1 -j ACCEPT",
        "-m statistic --mode random --probability 0.99999999999 -j ACCEPT",
        near=["-m statistic --mode random --probability 0.9999999 -j ACCEPT"],
    ),
    C(
        "statistic: a probability of 0",
        "-m statistic --mode random --probability 0.00000000000 -j ACCEPT",
        "-m statistic --mode random --probability 0 -j ACCEPT",
        "-m statistic --mode random --probability 0.00000000001 -j ACCEPT",
    ),
    C(
        "statistic: nth",
        "-m statistic --mode nth --every 3 --packet 0 -j ACCEPT",
        "-m statistic --mode nth --every 3 --packet 0 -j ACCEPT",
        "-m statistic --packet 0 --every 0x3 --mode nth -j ACCEPT",
        near=[
            "-m statistic --mode nth --every 4 --packet 0 -j ACCEPT",
            "-m statistic --mode nth --every 3 --packet 1 -j ACCEPT",
        ],
    ),
    C(
        "statistic: negated nth",
        "-m statistic --mode nth ! --every 3 --packet 2 -j ACCEPT",
        "-m statistic --mode nth ! --every 3 --packet 2 -j ACCEPT",
        near=["-m statistic --mode nth --every 3 --packet 2 -j ACCEPT"],
    ),
    C(
        "limit: no options is 3/hour",
        "-m limit --limit 3/hour -j ACCEPT",
        "-m limit -j ACCEPT",
        "-m limit --limit 3/hour -j ACCEPT",
        "-m limit --limit 3/h --limit-burst 5 -j ACCEPT",
        near=["-m limit --limit 4/hour -j ACCEPT", "-m limit --limit-burst 6 -j ACCEPT"],
    ),
    C(
        "limit: 60/min is 1/sec",
        "-m limit --limit 1/sec -j ACCEPT",
        "-m limit --limit 60/min -j ACCEPT",
        "-m limit --limit 1/s -j ACCEPT",
        "-m limit --limit 1/second -j ACCEPT",
        "-m limit --limit 1/SEC -j ACCEPT",
        "-m limit --limit 1 -j ACCEPT",
        "-m limit --limit 3600/hour -j ACCEPT",
        "-m limit --limit 86400/day -j ACCEPT",
        near=["-m limit --limit 2/sec -j ACCEPT", "-m limit --limit 1/min -j ACCEPT"],
    ),
    C(
        "limit: 3/second",
        "-m limit --limit 3/sec -j ACCEPT",
        "-m limit --limit 3/second -j ACCEPT",
        "-m limit --limit 3 -j ACCEPT",
    ),
    C(
        "limit: 1/h is an hour",
        "-m limit --limit 1/hour -j ACCEPT",
        "-m limit --limit 1/h -j ACCEPT",
        "-m limit --limit 1/Hou -j ACCEPT",
        "-m limit --limit 24/day -j ACCEPT",
        near=["-m limit --limit 1/day -j ACCEPT"],
    ),
    C(
        "limit: 100/day",
        "-m limit --limit 100/day -j ACCEPT",
        "-m limit --limit 100/day -j ACCEPT",
        "-m limit --limit 100/d -j ACCEPT",
    ),
    C(
        "limit: 2/m is per minute",
        "-m limit --limit 2/min -j ACCEPT",
        "-m limit --limit 2/m -j ACCEPT",
        "-m limit --limit 2/minute -j ACCEPT",
        "-m limit --limit 2/Mi -j ACCEPT",
        near=["-m limit --limit 2/hour -j ACCEPT"],
    ),
    C("limit: 120/min is 2/sec", "-m limit --limit 2/sec -j ACCEPT", "-m limit --limit 120/min -j ACCEPT"),
    C("limit: 61/min stays", "-m limit --limit 61/min -j ACCEPT", "-m limit --limit 61/minute -j ACCEPT"),
    C(
        "limit: a count is decimal (010 is 10)",
        "-m limit --limit 10/sec -j ACCEPT",
        "-m limit --limit 010/sec -j ACCEPT",
        near=["-m limit --limit 8/sec -j ACCEPT"],
    ),
    C(
        "limit: the default burst 5 is not printed",
        "-m limit --limit 1/sec -j ACCEPT",
        "-m limit --limit 1/sec --limit-burst 5 -j ACCEPT",
        "-m limit --limit-burst 0x5 --limit 1/sec -j ACCEPT",
    ),
    C(
        "limit: other bursts are printed",
        "-m limit --limit 1/sec --limit-burst 10 -j ACCEPT",
        "-m limit --limit-burst 10 --limit 1/s -j ACCEPT",
        "-m limit --limit 1/sec --limit-burst 0xa -j ACCEPT",
        "-m limit --limit 1/sec --limit-burst 012 -j ACCEPT",
        near=["-m limit --limit 1/sec --limit-burst 11 -j ACCEPT", "-m limit --limit 1/sec -j ACCEPT"],
    ),
    C(
        "limit: a burst alone gains the default rate",
        "-m limit --limit 3/hour --limit-burst 1 -j ACCEPT",
        "-m limit --limit-burst 1 -j ACCEPT",
    ),
]

_HL = "--hashlimit-name h1"
HASHLIMIT = [
    C(
        "hashlimit: the default burst 5 is printed",
        f"-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 5 {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 10/sec {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit 10/s {_HL} -j ACCEPT",
        f"-m hashlimit {_HL} --hashlimit-upto 10 --hashlimit-burst 5 -j ACCEPT",
        near=[
            f"-m hashlimit --hashlimit-above 10/sec {_HL} -j ACCEPT",
            f"-m hashlimit --hashlimit-upto 11/sec {_HL} -j ACCEPT",
            "-m hashlimit --hashlimit-upto 10/sec --hashlimit-name h2 -j ACCEPT",
            f"-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 6 {_HL} -j ACCEPT",
        ],
    ),
    C(
        "hashlimit: ! --hashlimit-upto is --hashlimit-above",
        f"-m hashlimit --hashlimit-above 10/sec --hashlimit-burst 5 {_HL} -j DROP",
        f"-m hashlimit --hashlimit-above 10/sec {_HL} -j DROP",
        f"-m hashlimit ! --hashlimit-upto 10/sec {_HL} -j DROP",
        near=[f"-m hashlimit --hashlimit-upto 10/sec {_HL} -j DROP"],
    ),
    C(
        "hashlimit: a rate given per minute expires per minute",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 5 {_HL} --hashlimit-htable-expire 60000 -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 60/min {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 1/s {_HL} --hashlimit-htable-expire 60000 -j ACCEPT",
        near=[f"-m hashlimit --hashlimit-upto 1/sec {_HL} -j ACCEPT"],
    ),
    C(
        "hashlimit: an expiry equal to the printed unit is not printed",
        f"-m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 5 {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 1/h {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 1/hour {_HL} --hashlimit-htable-expire 3600000 -j ACCEPT",
        near=[f"-m hashlimit --hashlimit-upto 1/hour {_HL} --hashlimit-htable-expire 3600001 -j ACCEPT"],
    ),
    C(
        "hashlimit: 24/day is 1/hour that expires in a day",
        f"-m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 5 {_HL} "
        "--hashlimit-htable-expire 86400000 -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 24/d {_HL} -j ACCEPT",
        near=[f"-m hashlimit --hashlimit-upto 1/hour {_HL} -j ACCEPT"],
    ),
    C(
        "hashlimit: a count is decimal (010 is 10), units any case",
        f"-m hashlimit --hashlimit-upto 10/min --hashlimit-burst 5 {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 010/MINUTE {_HL} -j ACCEPT",
        near=[f"-m hashlimit --hashlimit-upto 8/min {_HL} -j ACCEPT"],
    ),
    C(
        "hashlimit: mode order and separators",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-mode srcip,srcport,dstip,dstport "
        f"{_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode dstport,srcip|dstip,srcport {_HL} -j ACCEPT",
        near=[f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode srcip {_HL} -j ACCEPT"],
    ),
    C(
        "hashlimit: an empty mode is no mode",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 5 {_HL} -j ACCEPT",
        (
            "-m",
            "hashlimit",
            "--hashlimit-upto",
            "1/sec",
            "--hashlimit-mode",
            "",
            *_HL.split(),
            "-j",
            "ACCEPT",
        ),
        near=[f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode dstip {_HL} -j ACCEPT"],
    ),
    C(
        "hashlimit: masks, the default /32 not printed",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-mode srcip {_HL} "
        "--hashlimit-srcmask 24 -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode srcip --hashlimit-srcmask 24 "
        f"--hashlimit-dstmask 32 {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode srcip --hashlimit-srcmask 0x18 {_HL} -j ACCEPT",
        near=[
            f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode srcip --hashlimit-srcmask 25 {_HL} -j ACCEPT",
            f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode srcip --hashlimit-dstmask 24 {_HL} -j ACCEPT",
        ],
    ),
    C(
        "hashlimit: table sizes and intervals in print order",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 3 {_HL} --hashlimit-htable-size 1024 "
        "--hashlimit-htable-max 2048 --hashlimit-htable-gcinterval 500 --hashlimit-htable-expire 10000 -j ACCEPT",
        f"-m hashlimit {_HL} --hashlimit-htable-expire 10000 --hashlimit-htable-gcinterval 500 "
        "--hashlimit-htable-max 2048 --hashlimit-htable-size 1024 --hashlimit-burst 3 --hashlimit-upto 1/sec -j ACCEPT",
        near=[
            f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 3 {_HL} --hashlimit-htable-size 1024 "
            "--hashlimit-htable-max 2049 --hashlimit-htable-gcinterval 500 --hashlimit-htable-expire 10000 -j ACCEPT",
        ],
    ),
    C(
        "hashlimit: the kernel cuts table sizes down to 1048576",
        "-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-name big "
        "--hashlimit-htable-size 1048576 --hashlimit-htable-max 1048576 -j ACCEPT",
        "-m hashlimit --hashlimit-upto 1/sec --hashlimit-name big --hashlimit-htable-size 1310000 "
        "--hashlimit-htable-max 2000000 -j ACCEPT",
        near=[
            "-m hashlimit --hashlimit-upto 1/sec --hashlimit-name big --hashlimit-htable-size 1048575 "
            "--hashlimit-htable-max 2000000 -j ACCEPT"
        ],
    ),
    C(
        "hashlimit: table defaults are not printed",
        f"-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 5 {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 1/sec {_HL} --hashlimit-htable-size 0 --hashlimit-htable-max 0 "
        "--hashlimit-htable-gcinterval 1000 --hashlimit-htable-expire 1000 -j ACCEPT",
    ),
    C(
        "hashlimit: rate-match with an interval",
        "-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 5 --hashlimit-name rm --hashlimit-rate-match "
        "--hashlimit-rate-interval 5 -j ACCEPT",
        "-m hashlimit --hashlimit-rate-interval 5 --hashlimit-rate-match --hashlimit-upto 10/s --hashlimit-name rm -j ACCEPT",
        near=[
            "-m hashlimit --hashlimit-upto 10/sec --hashlimit-name rm --hashlimit-rate-match -j ACCEPT",
            "-m hashlimit --hashlimit-upto 10/sec --hashlimit-name rm --hashlimit-rate-interval 5 -j ACCEPT",
        ],
    ),
    C(
        "hashlimit: rate-interval 1, or without rate-match, is not printed",
        "-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 5 --hashlimit-name rm --hashlimit-rate-match -j ACCEPT",
        "-m hashlimit --hashlimit-upto 10/sec --hashlimit-name rm --hashlimit-rate-match --hashlimit-rate-interval 1 -j ACCEPT",
    ),
    C(
        "hashlimit: an interval without rate-match is not printed",
        f"-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 5 {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 10/sec {_HL} --hashlimit-rate-interval 5 -j ACCEPT",
    ),
    C(
        "hashlimit: a byte rate has no burst, and is printed in the largest unit that reads back alike",
        f"-m hashlimit --hashlimit-upto 10kb/s {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 10kb/s {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit 10240b/s {_HL} --hashlimit-htable-expire 15000 -j ACCEPT",
        near=[
            f"-m hashlimit --hashlimit-upto 11kb/s {_HL} -j ACCEPT",
            f"-m hashlimit --hashlimit-above 10kb/s {_HL} -j ACCEPT",
            f"-m hashlimit --hashlimit-upto 10kb/s --hashlimit-burst 20kb {_HL} -j ACCEPT",
            f"-m hashlimit --hashlimit-upto 10kb/s {_HL} --hashlimit-htable-expire 60000 -j ACCEPT",
        ],
    ),
    C(
        "hashlimit: a byte rate is printed as the kernel keeps it (16 bytes a step)",
        f"-m hashlimit --hashlimit-above 96b/s {_HL} -j DROP",
        f"-m hashlimit --hashlimit-above 100b/s {_HL} -j DROP",
        f"-m hashlimit ! --hashlimit-upto 97b/s {_HL} -j DROP",
        near=[f"-m hashlimit --hashlimit-above 112b/s {_HL} -j DROP"],
    ),
    C(
        "hashlimit: a fast byte rate is printed as the kernel keeps it",
        f"-m hashlimit --hashlimit-upto 3120mb/s {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 3000mb/s {_HL} -j ACCEPT",
        near=[f"-m hashlimit --hashlimit-upto 1000mb/s {_HL} -j ACCEPT"],
    ),
    C(
        "hashlimit: a byte burst is a whole number of the rate's bytes, expiring in 60 s",
        f"-m hashlimit --hashlimit-upto 10kb/s --hashlimit-burst 20kb {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 10kb/s --hashlimit-burst 10241 {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 10kb/s --hashlimit-burst 20k {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 10kb/s --hashlimit-burst 20480b {_HL} --hashlimit-htable-expire 60000 -j ACCEPT",
        near=[
            f"-m hashlimit --hashlimit-upto 10kb/s --hashlimit-burst 30kb {_HL} -j ACCEPT",
            f"-m hashlimit --hashlimit-upto 10kb/s --hashlimit-burst 20kb {_HL} --hashlimit-htable-expire 15000 -j ACCEPT",
        ],
    ),
    C(
        "hashlimit: a byte burst in megabytes",
        f"-m hashlimit --hashlimit-upto 5mb/s --hashlimit-burst 1000mb {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 5120kb/s --hashlimit-burst 1000m {_HL} -j ACCEPT",
        near=[f"-m hashlimit --hashlimit-upto 5mb/s --hashlimit-burst 1005mb {_HL} -j ACCEPT"],
    ),
    C(
        "hashlimit: a byte burst printed coarser than the rate is compared as text",
        f"-m hashlimit --hashlimit-above 512kb/s --hashlimit-burst 1mb {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-above 512kb/s --hashlimit-burst 1mb {_HL} -j ACCEPT",
        understood=False,
    ),
    C(
        "hashlimit: a packet burst may be given in k (times 1024)",
        f"-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 2048 {_HL} -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 2k {_HL} -j ACCEPT",
        near=[f"-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 2 {_HL} -j ACCEPT"],
    ),
    C(
        "hashlimit v6: masks default to /128",
        f"-m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 5 {_HL} --hashlimit-srcmask 64 -j ACCEPT",
        f"-m hashlimit --hashlimit-upto 10/s {_HL} --hashlimit-srcmask 64 --hashlimit-dstmask 128 -j ACCEPT",
        near=[
            f"-m hashlimit --hashlimit-upto 10/s {_HL} --hashlimit-srcmask 64 --hashlimit-dstmask 64 -j ACCEPT"
        ],
        at=V6,
    ),
]

_FULL4 = "--mask 255.255.255.255"
RECENT_ETC = [
    C(
        "recent: name, mask and rsource are filled in",
        f"-m recent --set --name DEFAULT {_FULL4} --rsource -j ACCEPT",
        "-m recent --set -j ACCEPT",
        f"-m recent --set --name DEFAULT {_FULL4} --rsource -j ACCEPT",
        "-m recent --rsource --set -j ACCEPT",
        near=[
            "-m recent --rcheck -j ACCEPT",
            "-m recent --set --name other -j ACCEPT",
            "-m recent --set --rdest -j ACCEPT",
            "-m recent --set --mask 255.255.255.0 -j ACCEPT",
        ],
    ),
    C(
        "recent: options in print order",
        f"-m recent --rcheck --seconds 5 --reap --hitcount 2 --rttl --name x {_FULL4} --rdest -j DROP",
        "-m recent --name x --rdest --rcheck --rttl --hitcount 2 --seconds 5 --reap -j DROP",
        near=["-m recent --name x --rdest --rcheck --hitcount 2 --seconds 5 --reap -j DROP"],
    ),
    C(
        "recent: numbers are C numbers",
        f"-m recent --rcheck --seconds 8 --hitcount 5 --name DEFAULT {_FULL4} --rsource -j DROP",
        "-m recent --rcheck --seconds 010 --hitcount 0x5 -j DROP",
        near=["-m recent --rcheck --seconds 10 --hitcount 5 -j DROP"],
    ),
    C(
        "recent: a mask",
        "-m recent --update --name DEFAULT --mask 255.255.255.0 --rsource -j DROP",
        "-m recent --update --mask 255.255.255.0 -j DROP",
    ),
    C(
        "recent: a mask as inet_aton reads it",
        "-m recent --update --name DEFAULT --mask 255.255.255.0 --rsource -j DROP",
        "-m recent --update --mask 0377.255.255.0 -j DROP",
        "-m recent --update --mask 0xffffff00 -j DROP",
        near=["-m recent --update --mask 255.255.0.0 -j DROP"],
    ),
    C(
        "recent: negated check, remove",
        f"-m recent ! --rcheck --name x {_FULL4} --rsource -j DROP",
        "-m recent ! --rcheck --name x -j DROP",
        near=["-m recent --rcheck --name x -j DROP", "-m recent ! --remove --name x -j DROP"],
    ),
    C(
        "recent: the last of --rsource and --rdest wins",
        f"-m recent --set --name DEFAULT {_FULL4} --rdest -j ACCEPT",
        "-m recent --set --rsource --rdest -j ACCEPT",
        "-m recent --set --rdest -j ACCEPT",
        near=["-m recent --set --rdest --rsource -j ACCEPT"],
    ),
    C(
        "recent v6: the full mask",
        "-m recent --set --name DEFAULT --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource -j ACCEPT",
        "-m recent --set -j ACCEPT",
        near=["-m recent --set --mask ffff:ffff:ffff:ffff:: -j ACCEPT"],
        at=V6,
    ),
    C(
        "recent v6: a mask is compressed",
        "-m recent --set --name DEFAULT --mask ffff:ffff:: --rsource -j ACCEPT",
        "-m recent --set --mask FFFF:FFFF:0:0:0:0:0:0 -j ACCEPT",
        at=V6,
    ),
    C(
        "iprange: a range as given",
        "-m iprange --src-range 10.0.0.1-10.0.0.5 -j ACCEPT",
        "-m iprange --src-range 10.0.0.1-10.0.0.5 -j ACCEPT",
        near=[
            "-m iprange --src-range 10.0.0.1-10.0.0.6 -j ACCEPT",
            "-m iprange --dst-range 10.0.0.1-10.0.0.5 -j ACCEPT",
            "-m iprange ! --src-range 10.0.0.1-10.0.0.5 -j ACCEPT",
        ],
    ),
    C(
        "iprange: addresses as libxtables reads them (10.1 is 10.1.0.0)",
        "-m iprange --src-range 10.1.0.0-10.2.0.0 --dst-range 8.0.0.1-10.0.0.9 -j ACCEPT",
        "-m iprange --src-range 10.1-10.2 --dst-range 010.0.0.1-10.0.0.9 -j ACCEPT",
        near=["-m iprange --src-range 10.0.0.1-10.0.0.2 --dst-range 10.0.0.1-10.0.0.9 -j ACCEPT"],
    ),
    C(
        "iprange: one address is a range of one",
        "-m iprange --dst-range 10.0.0.1-10.0.0.1 -j ACCEPT",
        "-m iprange --dst-range 10.0.0.1 -j ACCEPT",
        near=["-m iprange --dst-range 10.0.0.1-10.0.0.2 -j ACCEPT"],
    ),
    C(
        "iprange: source before destination, negated",
        "-m iprange ! --src-range 10.0.0.3-10.0.0.4 --dst-range 10.0.0.1-10.0.0.2 -j ACCEPT",
        "-m iprange --dst-range 10.0.0.1-10.0.0.2 ! --src-range 10.0.0.3-10.0.0.4 -j ACCEPT",
    ),
    C(
        "iprange v6: compressed",
        "-m iprange --src-range fd00::1-fd00::5 -j ACCEPT",
        "-m iprange --src-range fd00::1-FD00:0::5 -j ACCEPT",
        near=["-m iprange --src-range fd00::1-fd00::6 -j ACCEPT"],
        at=V6,
    ),
    C(
        "length: a range of one is its number",
        "-m length --length 100 -j ACCEPT",
        "-m length --length 100:100 -j ACCEPT",
        "-m length --length 0x64 -j ACCEPT",
        near=["-m length --length 100:101 -j ACCEPT", "-m length ! --length 100 -j ACCEPT"],
    ),
    C(
        "length: open ranges",
        "-m length --length 0:200 -j ACCEPT",
        "-m length --length :200 -j ACCEPT",
        near=["-m length --length 200: -j ACCEPT"],
    ),
    C("length: open to 65535", "-m length --length 100:65535 -j ACCEPT", "-m length --length 100: -j ACCEPT"),
    C(
        "length: a reversed range is kept (1.8.11 on: refused)",
        "-m length --length 200:100 -j ACCEPT",
        "-m length --length 200:100 -j ACCEPT",
        near=["-m length --length 100:200 -j ACCEPT"],
        by_release=[_DECREASING_RANGES],
    ),
    C(
        "length: negated full range is printed",
        "-m length ! --length 0:65535 -j ACCEPT",
        "-m length ! --length : -j ACCEPT",
    ),
    C(
        "mac: lower case, two digits each",
        "-m mac --mac-source aa:bb:cc:00:01:02 -j ACCEPT",
        "-m mac --mac-source AA:BB:CC:0:1:2 -j ACCEPT",
        "-m mac --mac-source aa:bb:cc:00:01:02 -j ACCEPT",
        near=[
            "-m mac --mac-source aa:bb:cc:00:01:03 -j ACCEPT",
            "-m mac ! --mac-source aa:bb:cc:00:01:02 -j ACCEPT",
        ],
    ),
]

CONNLIMIT_RPFILTER = [
    C(
        "connlimit: the mask and --connlimit-saddr are filled in",
        "-p tcp -m connlimit --connlimit-above 10 --connlimit-mask 32 --connlimit-saddr -j DROP",
        "-p tcp -m connlimit --connlimit-above 10 -j DROP",
        "-p tcp -m connlimit --connlimit-saddr --connlimit-mask 32 --connlimit-above 0xa -j DROP",
        near=[
            "-p tcp -m connlimit --connlimit-upto 10 -j DROP",
            "-p tcp -m connlimit --connlimit-above 11 -j DROP",
            "-p tcp -m connlimit --connlimit-above 10 --connlimit-mask 24 -j DROP",
            "-p tcp -m connlimit --connlimit-above 10 --connlimit-daddr -j DROP",
        ],
    ),
    C(
        "connlimit: ! --connlimit-upto is --connlimit-above, and back",
        "-p tcp -m connlimit --connlimit-upto 8 --connlimit-mask 0 --connlimit-daddr -j DROP",
        "-p tcp -m connlimit ! --connlimit-above 010 --connlimit-daddr --connlimit-mask 0 -j DROP",
        "-p tcp -m connlimit --connlimit-upto 8 --connlimit-mask 0 --connlimit-daddr -j DROP",
        near=["-p tcp -m connlimit --connlimit-above 8 --connlimit-mask 0 --connlimit-daddr -j DROP"],
    ),
    C(
        "connlimit v6: the full mask is 128",
        "-p tcp -m connlimit --connlimit-upto 10 --connlimit-mask 128 --connlimit-saddr -j DROP",
        "-p tcp -m connlimit --connlimit-upto 10 -j DROP",
        near=["-p tcp -m connlimit --connlimit-upto 10 --connlimit-mask 64 -j DROP"],
        at=V6,
    ),
    C(
        "rpfilter: flags in print order",
        "-m rpfilter --loose --validmark --accept-local --invert -j DROP",
        "-m rpfilter --invert --accept-local --validmark --loose -j DROP",
        near=["-m rpfilter --loose --validmark --accept-local -j DROP", "-m rpfilter --invert -j DROP"],
        at=RAW,
    ),
    C(
        "rpfilter: plain",
        "-m rpfilter -j DROP",
        "-m rpfilter -j DROP",
        near=["-m rpfilter --loose -j DROP"],
        at=RAW,
    ),
]

STRING = [
    C(
        "string: the pattern is printed first, quoted",
        '-m string --string "foo" --algo bm -j ACCEPT',
        "-m string --algo bm --string foo -j ACCEPT",
        "-m string --string foo --algo bm -j ACCEPT",
        "-m string --algo bm --hex-string |666f6f| -j ACCEPT",
        near=[
            "-m string --algo kmp --string foo -j ACCEPT",
            "-m string --algo bm --string fop -j ACCEPT",
            "-m string --algo bm ! --string foo -j ACCEPT",
            "-m string --algo bm --string foo --icase -j ACCEPT",
            "-m string --algo bm --string FOO -j ACCEPT",
        ],
        by_release=[_default_to('-m string --string "foo" --algo bm -j ACCEPT')],
    ),
    C(
        "string: hex of printable bytes is printed as text",
        '-m string --string "AB" --algo bm -j ACCEPT',
        "-m string --algo bm --hex-string '|41 42|' -j ACCEPT",
        "-m string --algo bm --hex-string '| 4142|' -j ACCEPT",
        "-m string --algo bm --hex-string 'A|42|' -j ACCEPT",
        by_release=[_default_to('-m string --string "AB" --algo bm -j ACCEPT')],
    ),
    C(
        "string: non-printable bytes are printed as hex",
        '-m string --hex-string "|610062|" --algo bm -j ACCEPT',
        "-m string --algo bm --hex-string 'a|00|b' -j ACCEPT",
        "-m string --algo bm --hex-string '|61 00 62|' -j ACCEPT",
        near=["-m string --algo bm --hex-string 'a|01|b' -j ACCEPT"],
        by_release=[_default_to('-m string --hex-string "|610062|" --algo bm -j ACCEPT')],
    ),
    C(
        "string: non-ASCII is printed as hex",
        '-m string --hex-string "|c3a9|" --algo bm -j ACCEPT',
        "-m string --algo bm --string é -j ACCEPT",
        "-m string --algo bm --hex-string |c3a9| -j ACCEPT",
        by_release=[_default_to('-m string --hex-string "|c3a9|" --algo bm -j ACCEPT')],
    ),
    C(
        "string: a tab is printed as hex",
        '-m string --hex-string "|7461620978|" --algo bm -j ACCEPT',
        ("-m", "string", "--algo", "bm", "--string", "tab\tx", "-j", "ACCEPT"),
        by_release=[_default_to('-m string --hex-string "|7461620978|" --algo bm -j ACCEPT')],
    ),
    C(
        "string: a trailing backslash is printed as hex",
        '-m string --hex-string "|615c|" --algo bm -j ACCEPT',
        ("-m", "string", "--algo", "bm", "--string", "a\\", "-j", "ACCEPT"),
        by_release=[_default_to('-m string --hex-string "|615c|" --algo bm -j ACCEPT')],
    ),
    C(
        "string: quotes and backslashes inside",
        r'-m string --string "a\"b\\c|d\'" --algo bm -j ACCEPT',
        ("-m", "string", "--algo", "bm", "--string", "a\"b\\c|d'", "-j", "ACCEPT"),
        near=[("-m", "string", "--algo", "bm", "--string", 'a"b\\c|d', "-j", "ACCEPT")],
        by_release=[_default_to(r'-m string --string "a\"b\\c|d\'" --algo bm -j ACCEPT')],
    ),
    C(
        "string: a literal in a hex string",
        '-m string --string "|x" --algo bm -j ACCEPT',
        "-m string --algo bm --hex-string '\\|x' -j ACCEPT",
        "-m string --algo bm --hex-string '|7c|x' -j ACCEPT",
        by_release=[_default_to('-m string --string "|x" --algo bm -j ACCEPT')],
    ),
    C(
        "string: default offsets are not printed",
        '-m string --string "foo" --algo kmp -j ACCEPT',
        "-m string --algo kmp --string foo --from 0 --to 65535 -j ACCEPT",
        near=["-m string --algo kmp --string foo --from 1 -j ACCEPT"],
        by_release=[_default_to('-m string --string "foo" --algo kmp -j ACCEPT')],
    ),
    C(
        "string: offsets are C numbers",
        '-m string --string "foo" --algo bm --from 10 --to 100 -j ACCEPT',
        "-m string --to 0144 --from 0xa --algo bm --string foo -j ACCEPT",
        near=["-m string --algo bm --string foo --from 10 --to 99 -j ACCEPT"],
    ),
    C(
        "string: icase last, negated hex",
        '-m string ! --hex-string "|00|" --algo bm --to 50 --icase -j ACCEPT',
        "-m string --icase --algo bm ! --hex-string |00| --to 50 -j ACCEPT",
        near=["-m string --algo bm ! --hex-string |00| --to 50 -j ACCEPT"],
    ),
]

TARGET_CASES = [
    C("verdict: DROP", "-j DROP", "-j DROP", "--jump DROP", near=["-j ACCEPT", "-j RETURN"]),
    C("verdict: ACCEPT", "-j ACCEPT", "-j ACCEPT", "--jump ACCEPT", near=["-j DROP"]),
    C("verdict: RETURN", "-j RETURN", "-j RETURN", near=["-j ACCEPT"]),
    C(
        "jump: to a user chain",
        "-j OTHER",
        "-j OTHER",
        "--jump OTHER",
        near=["-g OTHER", "-j OTHER2"],
        at=JUMPS,
        needs=("OTHER",),
    ),
    C(
        "jump: goto a user chain",
        "-g OTHER",
        "-g OTHER",
        "--goto OTHER",
        near=["-j OTHER"],
        at=JUMPS,
        needs=("OTHER",),
    ),
    C(
        "REJECT: the default reject-with is filled in (v4)",
        "-j REJECT --reject-with icmp-port-unreachable",
        "-j REJECT",
        "-j REJECT --reject-with icmp-port-unreachable",
        "-j REJECT --reject-with port-unreach",
        "-j REJECT --reject-with ICMP-PORT",
        near=["-j DROP", "-j REJECT --reject-with icmp-host-unreachable"],
    ),
    C(
        "REJECT: net-unreach",
        "-j REJECT --reject-with icmp-net-unreachable",
        "-j REJECT --reject-with icmp-net-unreachable",
        "-j REJECT --reject-with net-unreach",
        "-j REJECT --reject-with icmp-",
        near=["-j REJECT --reject-with icmp-net-prohibited"],
    ),
    C(
        "REJECT: host-unreach (icmp-host is its prefix)",
        "-j REJECT --reject-with icmp-host-unreachable",
        "-j REJECT --reject-with host-unreach",
        "-j REJECT --reject-with icmp-host",
        near=["-j REJECT --reject-with icmp-host-prohibited"],
    ),
    C(
        "REJECT: proto-unreach (icmp-p is its prefix)",
        "-j REJECT --reject-with icmp-proto-unreachable",
        "-j REJECT --reject-with proto-unreach",
        "-j REJECT --reject-with icmp-p",
        near=["-j REJECT --reject-with icmp-port-unreachable"],
    ),
    C(
        "REJECT: net-prohib, any case",
        "-j REJECT --reject-with icmp-net-prohibited",
        "-j REJECT --reject-with Net-Prohib",
        "-j REJECT --reject-with icmp-net-prohibited",
    ),
    C(
        "REJECT: host-prohib",
        "-j REJECT --reject-with icmp-host-prohibited",
        "-j REJECT --reject-with host-prohib",
        "-j REJECT --reject-with ICMP-HOST-PROHIBITED",
    ),
    C(
        "REJECT: admin-prohib",
        "-j REJECT --reject-with icmp-admin-prohibited",
        "-j REJECT --reject-with admin-prohib",
        "-j REJECT --reject-with icmp-admin-prohibited",
    ),
    C(
        "REJECT: tcp-rst is tcp-reset",
        "-p tcp -j REJECT --reject-with tcp-reset",
        "-p tcp -j REJECT --reject-with tcp-rst",
        "-p tcp -j REJECT --reject-with tcp-reset",
        "-p tcp -j REJECT --reject-with t",
        near=["-p tcp -j REJECT"],
    ),
    C(
        "REJECT: the default reject-with is filled in (v6)",
        "-j REJECT --reject-with icmp6-port-unreachable",
        "-j REJECT",
        "-j REJECT --reject-with port-unreach",
        "-j REJECT --reject-with ICMP6-P",
        near=["-j REJECT --reject-with icmp6-policy-fail", "-j DROP"],
        at=V6,
    ),
    C(
        "REJECT v6: no-route",
        "-j REJECT --reject-with icmp6-no-route",
        "-j REJECT --reject-with no-route",
        "-j REJECT --reject-with icmp6-no-route",
        "-j REJECT --reject-with no",
        at=V6,
    ),
    C(
        "REJECT v6: adm-prohibited (icmp6-a is its prefix)",
        "-j REJECT --reject-with icmp6-adm-prohibited",
        "-j REJECT --reject-with adm-prohibited",
        "-j REJECT --reject-with icmp6-a",
        near=["-j REJECT --reject-with icmp6-addr-unreachable"],
        at=V6,
    ),
    C(
        "REJECT v6: addr-unreach",
        "-j REJECT --reject-with icmp6-addr-unreachable",
        "-j REJECT --reject-with addr-unreach",
        "-j REJECT --reject-with icmp6-addr",
        at=V6,
    ),
    C(
        "REJECT v6: policy-fail",
        "-j REJECT --reject-with icmp6-policy-fail",
        "-j REJECT --reject-with policy-fail",
        at=V6,
    ),
    C(
        "REJECT v6: reject-route",
        "-j REJECT --reject-with icmp6-reject-route",
        "-j REJECT --reject-with reject-route",
        at=V6,
    ),
    C(
        "REJECT v6: tcp-reset",
        "-p tcp -j REJECT --reject-with tcp-reset",
        "-p tcp -j REJECT --reject-with tcp-reset",
        at=V6,
    ),
    C(
        "LOG: level 4 is the default and is not printed",
        "-j LOG",
        "-j LOG",
        "-j LOG --log-level 4",
        "-j LOG --log-level warning",
        "-j LOG --log-level 0x4",
        near=["-j LOG --log-level 5", "-j LOG --log-prefix x"],
    ),
    C(
        "LOG: emerg and panic are 0",
        "-j LOG --log-level 0",
        "-j LOG --log-level emerg",
        "-j LOG --log-level panic",
    ),
    C("LOG: alert is 1", "-j LOG --log-level 1", "-j LOG --log-level alert", near=["-j LOG --log-level 2"]),
    C("LOG: crit is 2", "-j LOG --log-level 2", "-j LOG --log-level crit"),
    C("LOG: error is 3", "-j LOG --log-level 3", "-j LOG --log-level error"),
    C("LOG: notice is 5", "-j LOG --log-level 5", "-j LOG --log-level notice"),
    C("LOG: info is 6", "-j LOG --log-level 6", "-j LOG --log-level info"),
    C("LOG: debug is 7", "-j LOG --log-level 7", "-j LOG --log-level debug", "-j LOG --log-level 07"),
    C(
        "LOG: a prefix with spaces",
        '-j LOG --log-prefix "my prefix: "',
        ("-j", "LOG", "--log-prefix", "my prefix: "),
        near=['-j LOG --log-prefix "my prefix:"'],
    ),
    C(
        "LOG: prefix, level, then the flags in order",
        "-j LOG --log-prefix x --log-level 1 --log-tcp-sequence --log-tcp-options --log-ip-options "
        "--log-uid --log-macdecode",
        "-j LOG --log-macdecode --log-uid --log-ip-options --log-tcp-options --log-tcp-sequence "
        "--log-level alert --log-prefix x",
        near=[
            "-j LOG --log-prefix x --log-level 1 --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid",
        ],
    ),
    C(
        "TCPMSS: clamp to PMTU",
        "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        "-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        near=["-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400"],
        at=MANGLE_FORWARD,
    ),
    C(
        "TCPMSS: set an MSS, a C number",
        "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 256",
        "-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 0x100",
        near=["-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 100"],
        at=MANGLE_FORWARD,
    ),
]

NAT = [
    C("MASQUERADE: plain", "-j MASQUERADE", "-j MASQUERADE", near=["-j MASQUERADE --random"], at=NAT_POST),
    C(
        "MASQUERADE: a port range",
        "-p tcp -j MASQUERADE --to-ports 1000-2000",
        "-p tcp -j MASQUERADE --to-ports 1000-2000",
        near=["-p tcp -j MASQUERADE --to-ports 1000-2001", "-p udp -j MASQUERADE --to-ports 1000-2000"],
        at=NAT_POST,
    ),
    C(
        "MASQUERADE: a range of one port, names and C numbers",
        "-p tcp -j MASQUERADE --to-ports 80",
        "-p tcp -j MASQUERADE --to-ports 80-80",
        "-p tcp -j MASQUERADE --to-ports http",
        "-p tcp -j MASQUERADE --to-ports 0x50",
        near=["-p tcp -j MASQUERADE --to-ports 81"],
        at=NAT_POST,
        by_release=[_NAT_PORT_NAMES.refusing("-p tcp -j MASQUERADE --to-ports http")],
    ),
    C(
        "MASQUERADE: ports, --random, --random-fully in order",
        "-p tcp -j MASQUERADE --to-ports 5 --random --random-fully",
        "-p tcp -j MASQUERADE --random-fully --random --to-ports 5",
        near=["-p tcp -j MASQUERADE --to-ports 5 --random"],
        at=NAT_POST,
    ),
    C(
        "SNAT: --to is --to-source",
        "-j SNAT --to-source 1.2.3.4",
        "-j SNAT --to-source 1.2.3.4",
        "-j SNAT --to 1.2.3.4",
        "-j SNAT --to-source 1.2.3.4-1.2.3.4",
        near=["-j SNAT --to-source 1.2.3.5", "-j SNAT --to-source 1.2.3.4-1.2.3.5", "-j MASQUERADE"],
        at=NAT_POST,
    ),
    C(
        "SNAT: an address range with a port range",
        "-p tcp -j SNAT --to-source 1.2.3.4-1.2.3.5:80-90",
        "-p tcp -j SNAT --to-source 1.2.3.4-1.2.3.5:80-90",
        near=["-p tcp -j SNAT --to-source 1.2.3.4-1.2.3.5:80-91"],
        at=NAT_POST,
    ),
    C(
        "SNAT: one port, a name or a C number",
        "-p tcp -j SNAT --to-source 1.2.3.4:80",
        "-p tcp -j SNAT --to-source 1.2.3.4:80-80",
        "-p tcp -j SNAT --to-source 1.2.3.4:http",
        "-p tcp -j SNAT --to-source 1.2.3.4:0x50",
        near=["-p tcp -j SNAT --to-source 1.2.3.4:81", "-p tcp -j SNAT --to-source 1.2.3.4"],
        at=NAT_POST,
        by_release=[
            _NAT_PORT_NAMES.refusing(
                "-p tcp -j SNAT --to-source 1.2.3.4:http", "-p tcp -j SNAT --to-source 1.2.3.4:0x50"
            )
        ],
    ),
    C(
        "SNAT: --random, --random-fully, --persistent in order",
        "-j SNAT --to-source 1.2.3.4 --random --random-fully --persistent",
        "-j SNAT --persistent --random-fully --random --to-source 1.2.3.4",
        near=["-j SNAT --to-source 1.2.3.4 --random --persistent"],
        at=NAT_POST,
        by_release=[
            on(
                rel.until(1, 8, 7),
                "libipt_SNAT, rewritten in 1.8.8 (30b178b9), lists no --persistent",
                "-j SNAT --to-source 1.2.3.4 --random --random-fully",
                lost=True,
            )
        ],
    ),
    C(
        "SNAT: any base port is printed as 0 (1.8.7 drops it)",
        "-p tcp -j SNAT --to-source 1.2.3.4:80-90/0",
        "-p tcp -j SNAT --to-source 1.2.3.4:80-90/70",
        "-p tcp -j SNAT --to-source 1.2.3.4:80-90/http",
        "-p tcp -j SNAT --to-source 1.2.3.4:0x50-90/0x55",
        near=["-p tcp -j SNAT --to-source 1.2.3.4:80-90", "-p tcp -j SNAT --to-source 1.2.3.4:80-91/70"],
        at=NAT_POST,
        by_release=[
            _NAT_BASE_DROPPED.with_printed("-p tcp -j SNAT --to-source 1.2.3.4:80-90").refusing(
                "-p tcp -j SNAT --to-source 1.2.3.4:0x50-90/0x55"
            )
        ],
    ),
    C(
        "SNAT v6: a base port",
        "-p tcp -j SNAT --to-source [fd00::1]:80-90/0",
        "-p tcp -j SNAT --to-source [fd00::1]:80-90/85",
        near=["-p tcp -j SNAT --to-source [fd00::1]:80-90"],
        at=NAT_POST6,
        by_release=[_NAT_BASE_DROPPED.with_printed("-p tcp -j SNAT --to-source [fd00::1]:80-90")],
    ),
    C(
        "MASQUERADE: any base port is printed as 0 (1.8.7 refuses it)",
        "-p tcp -j MASQUERADE --to-ports 80-90/0",
        "-p tcp -j MASQUERADE --to-ports 80-90/85",
        near=["-p tcp -j MASQUERADE --to-ports 80-90"],
        at=NAT_POST,
        by_release=[
            on(rel.until(1, 8, 8), "f30c5edc (1.8.9): MASQUERADE takes a base port", refuses_all=True)
        ],
    ),
    C(
        "SNAT v6: an address without ports has no brackets",
        "-j SNAT --to-source fd00::1",
        "-j SNAT --to-source FD00:0::1",
        "-j SNAT --to-source [fd00::1]",
        at=NAT_POST6,
    ),
    C(
        "SNAT v6: ports put the address in brackets",
        "-p tcp -j SNAT --to-source [fd00::1]:1000-2000",
        "-p tcp -j SNAT --to-source [FD00::1]:1000-2000",
        near=["-p tcp -j SNAT --to-source [fd00::1]:1000-2001"],
        at=NAT_POST6,
    ),
    C(
        "DNAT: an address, --to is --to-destination",
        "-j DNAT --to-destination 10.0.0.1",
        "-j DNAT --to-destination 10.0.0.1",
        "-j DNAT --to 10.0.0.1",
        near=["-j DNAT --to-destination 10.0.0.2", "-j SNAT --to-source 10.0.0.1"],
        at=NAT_PRE,
    ),
    C(
        "DNAT: a port, by udp service name",
        "-p udp -j DNAT --to-destination 10.0.0.1:53",
        "-p udp -j DNAT --to-destination 10.0.0.1:domain",
        "-p udp -j DNAT --to-destination 10.0.0.1:53-53",
        near=["-p udp -j DNAT --to-destination 10.0.0.1:54", "-p udp -j DNAT --to-destination 10.0.0.1"],
        at=NAT_PRE,
        by_release=[_DNAT_PORT_NAMES.refusing("-p udp -j DNAT --to-destination 10.0.0.1:domain")],
    ),
    C(
        "DNAT: a service name with a dash is one port",
        "-p tcp -j DNAT --to-destination 10.0.0.1:8080",
        "-p tcp -j DNAT --to-destination 10.0.0.1:http-alt",
        at=NAT_PRE,
        by_release=[_DNAT_PORT_NAMES.refusing("-p tcp -j DNAT --to-destination 10.0.0.1:http-alt")],
    ),
    C(
        "DNAT: ports only",
        "-p tcp -j DNAT --to-destination :80",
        "-p tcp -j DNAT --to-destination :80",
        "-p tcp -j DNAT --to-destination :0x50",
        "-p tcp -j DNAT --to-destination :80-80",
        near=["-p tcp -j DNAT --to-destination :81"],
        at=NAT_PRE,
        by_release=[_DNAT_PORT_NAMES.refusing("-p tcp -j DNAT --to-destination :0x50")],
    ),
    C(
        "DNAT: a reversed address range is kept",
        "-j DNAT --to-destination 10.0.0.5-10.0.0.1",
        "-j DNAT --to-destination 10.0.0.5-10.0.0.1",
        near=["-j DNAT --to-destination 10.0.0.1-10.0.0.5"],
        at=NAT_PRE,
    ),
    C(
        "DNAT: a port range with a base port",
        "-p tcp -j DNAT --to-destination 10.0.0.1:80-90/85",
        "-p tcp -j DNAT --to-destination 10.0.0.1:80-90/85",
        near=["-p tcp -j DNAT --to-destination 10.0.0.1:80-90"],
        at=NAT_PRE,
    ),
    C(
        "DNAT: --random before --persistent",
        "-j DNAT --to-destination 10.0.0.1 --random --persistent",
        "-j DNAT --persistent --random --to-destination 10.0.0.1",
        near=["-j DNAT --to-destination 10.0.0.1 --random"],
        at=NAT_PRE,
    ),
    C(
        "DNAT v6: brackets without ports are dropped",
        "-j DNAT --to-destination fd00::1-fd00::5",
        "-j DNAT --to-destination [fd00::1-fd00::5]",
        "-j DNAT --to-destination fd00::1-FD00::5",
        near=["-j DNAT --to-destination fd00::1-fd00::6"],
        at=NAT_PRE6,
    ),
    C(
        "DNAT v6: an address in brackets with ports",
        "-p tcp -j DNAT --to-destination [fd00::1]:80-90",
        "-p tcp -j DNAT --to-destination [FD00:0::1]:80-90",
        near=["-p tcp -j DNAT --to-destination [fd00::1]:80", "-p tcp -j DNAT --to-destination fd00::1"],
        at=NAT_PRE6,
    ),
    C(
        "DNAT v6: an IPv4-mapped address",
        "-p tcp -j DNAT --to-destination [::ffff:1.2.3.4]:80",
        "-p tcp -j DNAT --to-destination [::ffff:102:304]:80",
        at=NAT_PRE6,
    ),
    C(
        "DNAT v6: ports only",
        "-p tcp -j DNAT --to-destination :80",
        "-p tcp -j DNAT --to-destination []:80",
        "-p tcp -j DNAT --to-destination :80",
        at=NAT_PRE6,
    ),
    C(
        "REDIRECT: a port, by name",
        "-p tcp -j REDIRECT --to-ports 80",
        "-p tcp -j REDIRECT --to-ports http",
        "-p tcp -j REDIRECT --to-ports 80-80",
        near=["-p tcp -j REDIRECT --to-ports 81", "-p tcp -j REDIRECT"],
        at=NAT_PRE,
    ),
    C(
        "REDIRECT: a range, then --random",
        "-p tcp -j REDIRECT --to-ports 8080-8090 --random",
        "-p tcp -j REDIRECT --random --to-ports 8080-8090",
        near=["-p tcp -j REDIRECT --to-ports 8080-8090"],
        at=NAT_PRE,
    ),
    C("REDIRECT: plain", "-j REDIRECT", "-j REDIRECT", at=NAT_PRE),
    C(
        "REDIRECT: --to-port is --to-ports",
        "-p udp -j REDIRECT --to-ports 15053",
        "-p udp -j REDIRECT --to-port 15053",
        near=["-p udp -j REDIRECT --to-ports 15054"],
        at=NAT_PRE,
    ),
]

MARKS = [
    C(
        "MARK: --set-mark is --set-xmark with a full mask",
        "-j MARK --set-xmark 0x1/0xffffffff",
        "-j MARK --set-mark 1",
        "-j MARK --set-xmark 1",
        "-j MARK --set-xmark 0x1/0xffffffff",
        near=["-j MARK --set-mark 2", "-j MARK --or-mark 1", "-j MARK --set-xmark 0x1/0xfffffffe"],
        at=MANGLE,
    ),
    C(
        "MARK: --set-mark X/Y is --set-xmark X/(X|Y)",
        "-j MARK --set-xmark 0x1/0x3",
        "-j MARK --set-mark 1/2",
        "-j MARK --set-mark 1/3",
        "-j MARK --set-xmark 1/3",
        at=MANGLE,
    ),
    C(
        "MARK: --set-xmark keeps its mask",
        "-j MARK --set-xmark 0x1/0xff",
        "-j MARK --set-xmark 0x1/0xff",
        "-j MARK --set-mark 1/0xfe",
        at=MANGLE,
    ),
    C(
        "MARK: --and-mark",
        "-j MARK --set-xmark 0x0/0xffffff00",
        "-j MARK --and-mark 0xff",
        near=["-j MARK --and-mark 0xfe"],
        at=MANGLE,
    ),
    C(
        "MARK: --or-mark",
        "-j MARK --set-xmark 0x10/0x10",
        "-j MARK --or-mark 0x10",
        "-j MARK --or-mark 16",
        near=["-j MARK --xor-mark 0x10"],
        at=MANGLE,
    ),
    C(
        "MARK: --xor-mark",
        "-j MARK --set-xmark 0x10/0x0",
        "-j MARK --xor-mark 0x10",
        "-j MARK --xor-mark 020",
        near=["-j MARK --or-mark 0x10"],
        at=MANGLE,
    ),
    C(
        "MARK: values are C numbers (010 is 8)",
        "-j MARK --set-xmark 0x8/0xffffffff",
        "-j MARK --set-mark 010",
        near=["-j MARK --set-mark 10"],
        at=MANGLE,
    ),
    C(
        "CONNMARK: --set-mark",
        "-j CONNMARK --set-xmark 0x1/0xffffffff",
        "-j CONNMARK --set-mark 1",
        "-j CONNMARK --set-xmark 0x1",
        near=["-j CONNMARK --set-mark 2", "-j MARK --set-mark 1"],
        at=MANGLE,
    ),
    C(
        "CONNMARK: --and-mark, --or-mark, --xor-mark",
        "-j CONNMARK --set-xmark 0x0/0xffffff00",
        "-j CONNMARK --and-mark 0xff",
        at=MANGLE,
    ),
    C(
        "CONNMARK: --save-mark gains both masks",
        "-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff",
        "-j CONNMARK --save-mark",
        "-j CONNMARK --save-mark --mask 0xffffffff",
        near=["-j CONNMARK --restore-mark", "-j CONNMARK --save-mark --mask 0xff"],
        at=MANGLE,
    ),
    C(
        "CONNMARK: --restore-mark with --mask sets both",
        "-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff",
        "-j CONNMARK --restore-mark --mask 0xff",
        "-j CONNMARK --restore-mark --mask 255",
        "-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff",
        near=["-j CONNMARK --restore-mark --nfmask 0xff"],
        at=MANGLE,
    ),
    C(
        "CONNMARK: one mask alone keeps the other full",
        "-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xf0",
        "-j CONNMARK --save-mark --ctmask 0xf0",
        near=["-j CONNMARK --save-mark --nfmask 0xf0"],
        at=MANGLE,
    ),
    C(
        "CONNMARK: masks are C numbers",
        "-j CONNMARK --save-mark --nfmask 0x8 --ctmask 0x8",
        "-j CONNMARK --save-mark --mask 010",
        at=MANGLE,
    ),
    C(
        "CONNMARK: --mask after --set-mark replaces its mask",
        "-j CONNMARK --set-xmark 0x1/0xff",
        "-j CONNMARK --set-mark 0x1 --mask 0xff",
        "-j CONNMARK --set-xmark 0x1/0xf --ctmask 0xff",
        near=["-j CONNMARK --mask 0xff --set-mark 0x1"],
        at=MANGLE,
    ),
    C(
        "CONNMARK: --mask before --set-mark is overridden",
        "-j CONNMARK --set-xmark 0x1/0xffffffff",
        "-j CONNMARK --mask 0xff --set-mark 0x1",
        at=MANGLE,
    ),
]

LOGGING_PROXY = [
    C(
        "NFLOG: plain",
        "-j NFLOG",
        "-j NFLOG",
        "-j NFLOG --nflog-group 0 --nflog-threshold 0",
        near=["-j LOG"],
    ),
    C(
        "NFLOG: prefix, group, size, threshold in order",
        '-j NFLOG --nflog-prefix "a b" --nflog-group 16 --nflog-size 80 --nflog-threshold 2',
        (
            "-j",
            "NFLOG",
            "--nflog-threshold",
            "2",
            "--nflog-size",
            "0x50",
            "--nflog-group",
            "0x10",
            "--nflog-prefix",
            "a b",
        ),
        near=['-j NFLOG --nflog-prefix "a b" --nflog-group 16 --nflog-size 81 --nflog-threshold 2'],
    ),
    C(
        "NFLOG: size 0 is printed",
        "-j NFLOG --nflog-size 0",
        "-j NFLOG --nflog-size 0",
        near=["-j NFLOG"],
    ),
    C(
        "NFLOG: --nflog-range is no part of the rule (the kernel ignores it; iptables-nft drops it)",
        "-j NFLOG --nflog-group 5",
        "-j NFLOG --nflog-range 40 --nflog-group 5",
        "-j NFLOG --nflog-group 0x5 --nflog-range 0x28",
        near=["-j NFLOG --nflog-group 6 --nflog-range 40", "-j NFLOG --nflog-group 5 --nflog-size 40"],
        legacy="-j NFLOG --nflog-group 5 --nflog-range 40",
        by_release=[
            on(
                rel.until(1, 8, 7, "nft"),
                "db99f601 (1.8.8): iptables-nft writes NFLOG as nft's own log, without the range",
                "-j NFLOG --nflog-group 5 --nflog-range 40",
            )
        ],
    ),
    C(
        "NFLOG: a range of 0 is not printed",
        "-j NFLOG --nflog-group 5",
        "-j NFLOG --nflog-range 0 --nflog-group 5",
        "-j NFLOG --nflog-group 5",
        near=["-j NFLOG --nflog-group 5 --nflog-size 0"],
    ),
    C(
        "TPROXY: the address and mark are filled in",
        "-p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x0/0x0",
        "-p tcp -j TPROXY --on-port 15006",
        near=[
            "-p tcp -j TPROXY --on-port 15007",
            "-p tcp -j TPROXY --on-port 15006 --on-ip 127.0.0.1",
            "-p tcp -j TPROXY --on-port 15006 --tproxy-mark 1",
        ],
        at=MANGLE,
    ),
    C(
        "TPROXY: a mark without a mask has the full mask",
        "-p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff",
        "-p tcp -j TPROXY --tproxy-mark 1337 --on-port 15006",
        "-p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006",
        near=["-p tcp -j TPROXY --tproxy-mark 1337/0xfff --on-port 15006"],
        at=MANGLE,
    ),
    C(
        "TPROXY: port by name, address as inet_aton reads it",
        "-p tcp -j TPROXY --on-port 80 --on-ip 8.0.0.1 --tproxy-mark 0x111/0xfff",
        "-p tcp -j TPROXY --on-ip 010.0.0.1 --tproxy-mark 0x111/0xfff --on-port http",
        at=MANGLE,
    ),
    C(
        "TPROXY v6: the address is ::",
        "-p tcp -j TPROXY --on-port 15006 --on-ip :: --tproxy-mark 0x5/0xffffffff",
        "-p tcp -j TPROXY --on-port 15006 --tproxy-mark 5",
        near=["-p tcp -j TPROXY --on-port 15006 --on-ip fd00::1 --tproxy-mark 5"],
        at=(6, "mangle", "PREROUTING"),
    ),
]

RAW_TARGETS = [
    C("NOTRACK: plain", "-j NOTRACK", "-j NOTRACK", near=["-j CT --notrack"], at=RAW),
    C("CT: --notrack", "-j CT --notrack", "-j CT --notrack", near=["-j CT", "-j NOTRACK"], at=RAW),
    C(
        "CT: a zone, a C number",
        "-j CT --zone 1",
        "-j CT --zone 1",
        "-j CT --zone 0x1",
        near=["-j CT --zone 2", "-j CT --zone-orig 1", "-j CT --zone-reply 1", "-j CT"],
        at=RAW,
    ),
    C("CT: zone 0 is no zone", "-j CT", "-j CT --zone 0", "-j CT --zone-orig 0", "-j CT", at=RAW),
    C(
        "CT: --notrack before the zone",
        "-j CT --notrack --zone 1",
        "-j CT --zone 1 --notrack",
        near=["-j CT --zone 1"],
        at=RAW,
    ),
    C(
        "CT: a helper",
        "-p tcp -m tcp --dport 21 -j CT --helper ftp",
        "-p tcp --dport 21 -j CT --helper ftp",
        near=["-p tcp --dport 21 -j CT"],
        at=RAW,
    ),
    C(
        "CT: helper before zone",
        "-p tcp -m tcp --dport 21 -j CT --helper ftp --zone 5",
        "-p tcp --dport 21 -j CT --zone 5 --helper ftp",
        at=RAW,
    ),
    C(
        "CT: directional zones",
        "-j CT --zone-orig 1",
        "-j CT --zone-orig 1",
        near=["-j CT --zone-reply 1"],
        at=RAW,
    ),
    C("CT: reply zone, a C number", "-j CT --zone-reply 16", "-j CT --zone-reply 0x10", at=RAW),
    C(
        "CT: a zone from the mark",
        "-j CT --zone mark",
        "-j CT --zone mark",
        "-j CT --zone MARK",
        near=["-j CT --zone-orig mark"],
        at=RAW,
    ),
    C(
        "CT: events in iptables' order",
        "-j CT --ctevents new,related,destroy",
        "-j CT --ctevents related,new,destroy",
        "-j CT --ctevents destroy,new,related,new",
        near=["-j CT --ctevents new,related"],
        at=RAW,
    ),
    C(
        "CT: expectation events",
        "-j CT --ctevents new --expevents new",
        "-j CT --expevents new --ctevents new",
        near=["-j CT --ctevents new"],
        at=RAW,
    ),
    C(
        "CT v6: a zone",
        "-j CT --notrack --zone 7",
        "-j CT --zone 7 --notrack",
        at=RAW6,
    ),
]

OTHER = [
    C(
        "unknown target: compared as text",
        "-j NFQUEUE --queue-num 3",
        "-j NFQUEUE --queue-num 3",
        near=["-j NFQUEUE --queue-num 4"],
        understood=False,
    ),
    C(
        "mixed: base options, an implicit match after an explicit one, a target",
        "-s 10.0.0.0/8 -i eth0 -p tcp -m conntrack --ctstate NEW -m tcp --dport 22 "
        "-m comment --comment ssh -j ACCEPT",
        "-m conntrack --ctstate new -p tcp --dport ssh -i eth0 -s 10.9.9.9/8 -m comment --comment ssh -j ACCEPT",
        near=[
            "-s 10.0.0.0/8 -i eth0 -p tcp --dport 22 -m conntrack --ctstate NEW -m comment --comment sshd -j ACCEPT",
            "-s 10.0.0.0/8 -i eth0 -p tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT",
        ],
    ),
]

_NO_STOP = "--datestop 2038-01-19T03:14:07"
TIME = [
    C(
        "time: a time gains its seconds, the other end the day's, and --datestop its default",
        f"-m time --timestart 09:00:00 --timestop 23:59:59 {_NO_STOP} -j ACCEPT",
        "-m time --timestart 09:00 -j ACCEPT",
        "-m time --timestart 9:0:0 --utc -j ACCEPT",
        f"-m time --timestart 09:00:00 --timestop 23:59:59 {_NO_STOP} -j ACCEPT",
        near=[
            "-m time --timestart 09:01 -j ACCEPT",
            "-m time --timestart 09:00 --timestop 17:00 -j ACCEPT",
            "-m time --timestart 09:00 --kerneltz -j ACCEPT",
            "-m time --timestart 09:00 --datestop 2038-01-19T03:14:06 -j ACCEPT",
        ],
    ),
    C(
        "time: the whole day, every day and no date are not printed",
        f"-m time {_NO_STOP} -j ACCEPT",
        "-m time --timestart 00:00 --timestop 23:59:59 -j ACCEPT",
        "-m time --utc -j ACCEPT",
        "-m time --datestart 1970-01-01 --weekdays 1,2,3,4,5,6,7 -j ACCEPT",
        f"-m time {_NO_STOP} -j ACCEPT",
        near=["-m time --timestop 23:59 -j ACCEPT", "-m time --weekdays 1,2,3,4,5,6 -j ACCEPT"],
    ),
    C(
        "time: week days by number or first two letters, printed in order",
        f"-m time --weekdays Mon,Tue,Wed,Fri,Sun {_NO_STOP} -j ACCEPT",
        "-m time --weekdays Sun,1,Tuesday,We,Fr -j ACCEPT",
        "-m time --weekdays 0x3,Mo,Mon,Tu,5,07 -j ACCEPT",
        "-m time ! --weekdays Thu,Sat -j ACCEPT",
        near=[
            "-m time --weekdays Mon,Tue,Wed,Fri -j ACCEPT",
            "-m time ! --weekdays Mon,Tue,Wed,Fri,Sun -j ACCEPT",
        ],
    ),
    C(
        "time: month days are C numbers, printed in order",
        f"-m time --monthdays 1,7,31 {_NO_STOP} -j ACCEPT",
        "-m time --monthdays 31,07,1,1 -j ACCEPT",
        "-m time --monthdays 1,7,31 -j ACCEPT",
        near=["-m time --monthdays 1,7,30 -j ACCEPT", "-m time --monthdays 1,31 -j ACCEPT"],
    ),
    C(
        "time: negated days are printed as the days they leave",
        "-m time --monthdays 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31 "
        f"{_NO_STOP} -j ACCEPT",
        "-m time ! --monthdays 1,2 -j ACCEPT",
        near=["-m time --monthdays 1,2 -j ACCEPT", "-m time ! --monthdays 1 -j ACCEPT"],
    ),
    C(
        "time: dates in full, a day past the month's end or a month 0 carried over as mktime does",
        "-m time --datestart 2020-03-01T00:00:00 --datestop 2021-06-15T10:20:00 -j ACCEPT",
        "-m time --datestart 2020-02-30 --datestop 2021-06-15T10:20 -j ACCEPT",
        "-m time --datestop 2021-6-15T10:20:0 --datestart 2020-3 -j ACCEPT",
        "-m time --datestart 2020-03-01T00:00:00 --datestop 2021-06-15T10:20:00 -j ACCEPT",
        near=[
            "-m time --datestart 2020-03-02 --datestop 2021-06-15T10:20 -j ACCEPT",
            "-m time --datestart 2020-03-01 -j ACCEPT",
        ],
    ),
    C(
        "time: month 0 is December of the year before",
        f"-m time --datestart 2020-12-10T00:00:00 {_NO_STOP} -j ACCEPT",
        "-m time --datestart 2021-00-10 -j ACCEPT",
        "-m time --datestart 2020-12-10 -j ACCEPT",
        near=["-m time --datestart 2021-01-10 -j ACCEPT"],
    ),
    C(
        "time: --localtz is --kerneltz, --contiguous comes last",
        f"-m time --timestart 22:00:00 --timestop 06:00:00 --weekdays Mon {_NO_STOP} --kerneltz --contiguous -j ACCEPT",
        "-m time --contiguous --localtz --weekdays Mon --timestop 6:00 --timestart 22:00 -j ACCEPT",
        "-m time --timestart 22:00 --timestop 06:00 --contiguous --kerneltz --weekdays Monday -j ACCEPT",
        near=[
            "-m time --timestart 22:00 --timestop 06:00 --kerneltz --weekdays Mon -j ACCEPT",
            "-m time --timestart 22:00 --timestop 06:00 --contiguous --weekdays Mon -j ACCEPT",
        ],
    ),
    C(
        "time: every option, a --datestop past 2038-01-19T03:14:07 (puppetlabs-firewall's)",
        "-p tcp -m tcp --dport 8080 -m time --timestart 06:00:00 --timestop 17:00:00 --monthdays 7 --weekdays Tue "
        "--datestart 2016-01-19T04:17:07 --datestop 2038-01-19T04:17:07 --kerneltz -j ACCEPT",
        "-p tcp --dport 8080 -m time --datestart 2016-01-19T04:17:07 --datestop 2038-01-19T04:17:07 "
        "--timestart 6:00 --timestop 17:00:00 --monthdays 7 --weekdays Tue --kerneltz -j ACCEPT",
        near=[
            "-p tcp --dport 8080 -m time --datestart 2016-01-19T04:17:07 --timestart 6:00 --timestop 17:00:00 "
            "--monthdays 7 --weekdays Tue --kerneltz -j ACCEPT",
        ],
        at=OUTPUT,
    ),
    C(
        "time v6: the same",
        f"-m time --timestart 06:00:00 --timestop 17:00:00 --weekdays Sat,Sun {_NO_STOP} -j ACCEPT",
        "-m time --timestart 6:00 --timestop 17:00 ! --weekdays 1,2,3,4,5 -j ACCEPT",
        near=["-m time --timestart 6:00 --timestop 17:00 --weekdays 1,2,3,4,5 -j ACCEPT"],
        at=V6,
    ),
]

U32_CONNBYTES = [
    C(
        "u32: numbers in lower-case hex, blanks dropped",
        '-m u32 --u32 "0x0>>0x16&0x3c@0xc>>0x1a&0x3c@0x0=0x52464220" -j ACCEPT',
        "-m u32 --u32 '0>>22&0x3C@ 12>>26&0x3C@ 0=0x52464220' -j ACCEPT",
        "-m u32 --u32 0x0>>0x16&0x3c@0xc>>0x1a&0x3c@0x0=0x52464220 -j ACCEPT",
        near=["-m u32 --u32 '0>>22&0x3C@12>>26&0x3C@0=0x52464221' -j ACCEPT"],
    ),
    C(
        "u32: tests, value lists and ranges, a range of one value is that value",
        '-m u32 ! --u32 "0x6&0xff=0x1,0x5:0x9,0x8&&0x4&0x3fff=0x0" -j ACCEPT',
        "-m u32 ! --u32 '6 & 0xFF = 1, 5:9, 010 && 4 & 0x3FFF = 0:0' -j ACCEPT",
        near=[
            "-m u32 --u32 '6&0xff=1,5:9,8&&4&0x3fff=0' -j ACCEPT",
            "-m u32 ! --u32 '6&0xff=1,5:9,8' -j ACCEPT",
        ],
    ),
    C(
        "u32: a reversed range is kept",
        '-m u32 --u32 "0x0<<0x1=0x9:0x3" -j ACCEPT',
        "-m u32 --u32 '0<<1=9:3' -j ACCEPT",
        near=["-m u32 --u32 '0<<1=3:9' -j ACCEPT"],
    ),
    C(
        "u32 v6: the same",
        '-m u32 --u32 "0x4&0xffff=0x1f40" -j DROP',
        "-m u32 --u32 '4&0xFFFF=8000' -j DROP",
        near=["-m u32 --u32 '4&0xFFFF=8001' -j DROP"],
        at=V6,
    ),
    C(
        "connbytes: count, mode, direction in that order; a range to the end is its start",
        "-m connbytes --connbytes 10000 --connbytes-mode bytes --connbytes-dir both -j ACCEPT",
        "-m connbytes --connbytes 10000: --connbytes-dir both --connbytes-mode bytes -j ACCEPT",
        "-m connbytes --connbytes-dir both --connbytes-mode bytes --connbytes 10000:18446744073709551615 -j ACCEPT",
        "-m connbytes --connbytes-dir=both --connbytes-mode=bytes --connbytes=0x2710 -j ACCEPT",
        near=[
            "-m connbytes --connbytes 10000:20000 --connbytes-dir both --connbytes-mode bytes -j ACCEPT",
            "-m connbytes --connbytes 10000 --connbytes-dir original --connbytes-mode bytes -j ACCEPT",
            "-m connbytes --connbytes 10000 --connbytes-dir both --connbytes-mode packets -j ACCEPT",
            "-m connbytes ! --connbytes 10000 --connbytes-dir both --connbytes-mode bytes -j ACCEPT",
        ],
    ),
    C(
        "connbytes: a range from 0, C numbers",
        "-m connbytes --connbytes 0:100 --connbytes-mode packets --connbytes-dir original -j ACCEPT",
        "-m connbytes --connbytes :100 --connbytes-mode packets --connbytes-dir original -j ACCEPT",
        "-m connbytes --connbytes 0:0x64 --connbytes-mode packets --connbytes-dir original -j ACCEPT",
        near=["-m connbytes --connbytes 1:100 --connbytes-mode packets --connbytes-dir original -j ACCEPT"],
    ),
    C(
        "connbytes: a range of one value is printed as a range",
        "-m connbytes --connbytes 5:5 --connbytes-mode avgpkt --connbytes-dir reply -j ACCEPT",
        "-m connbytes --connbytes 5:5 --connbytes-dir reply --connbytes-mode avgpkt -j ACCEPT",
        near=["-m connbytes --connbytes 5 --connbytes-dir reply --connbytes-mode avgpkt -j ACCEPT"],
    ),
    C(
        "connbytes: negated",
        "-m connbytes ! --connbytes 10:20 --connbytes-mode avgpkt --connbytes-dir reply -j ACCEPT",
        "-m connbytes ! --connbytes 10:20 --connbytes-dir reply --connbytes-mode avgpkt -j ACCEPT",
        near=["-m connbytes --connbytes 10:20 --connbytes-dir reply --connbytes-mode avgpkt -j ACCEPT"],
    ),
    C(
        "connbytes: iptables drops the negation of a range of one value",
        "-m connbytes --connbytes 5:5 --connbytes-mode packets --connbytes-dir original -j ACCEPT",
        "-m connbytes ! --connbytes 5:5 --connbytes-dir original --connbytes-mode packets -j ACCEPT",
        lossy=True,
    ),
    C(
        "connbytes: 0:0 is printed as 0, which is 0 and up",
        "-m connbytes --connbytes 0 --connbytes-mode packets --connbytes-dir original -j ACCEPT",
        "-m connbytes --connbytes 0:0 --connbytes-dir original --connbytes-mode packets -j ACCEPT",
        lossy=True,
    ),
    C(
        "connbytes v6: the same",
        "-m connbytes --connbytes 1:9 --connbytes-mode packets --connbytes-dir original -j ACCEPT",
        "-m connbytes --connbytes-dir=original --connbytes-mode=packets --connbytes 1:9 -j ACCEPT",
        near=["-m connbytes --connbytes 1:10 --connbytes-mode packets --connbytes-dir original -j ACCEPT"],
        at=V6,
    ),
]

DSCP_TOS = [
    C(
        "dscp: two hex digits, a class as its number",
        "-m dscp --dscp 0x0a -j ACCEPT",
        "-m dscp --dscp 10 -j ACCEPT",
        "-m dscp --dscp 0xA -j ACCEPT",
        "-m dscp --dscp 012 -j ACCEPT",
        "-m dscp --dscp-class AF11 -j ACCEPT",
        "-m dscp --dscp-class af11 -j ACCEPT",
        near=[
            "-m dscp --dscp 11 -j ACCEPT",
            "-m dscp ! --dscp 10 -j ACCEPT",
            "-m dscp --dscp-class AF12 -j ACCEPT",
        ],
    ),
    C(
        "dscp: a negated class; the first class a word starts with",
        "-m dscp ! --dscp 0x2e -j ACCEPT",
        "-m dscp ! --dscp-class ef -j ACCEPT",
        "-m dscp ! --dscp-class EFx -j ACCEPT",
        "-m dscp ! --dscp 46 -j ACCEPT",
        near=["-m dscp --dscp 0x2e -j ACCEPT"],
    ),
    C(
        "dscp: BE and CS0 are 0",
        "-m dscp --dscp 0x00 -j ACCEPT",
        "-m dscp --dscp-class BE -j ACCEPT",
        "-m dscp --dscp-class cs0 -j ACCEPT",
        "-m dscp --dscp 0 -j ACCEPT",
        near=["-m dscp --dscp-class CS1 -j ACCEPT"],
    ),
    C(
        "dscp v6: the same",
        "-m dscp --dscp 0x22 -j ACCEPT",
        "-m dscp --dscp-class AF41 -j ACCEPT",
        near=["-m dscp --dscp-class AF42 -j ACCEPT"],
        at=V6,
    ),
    C(
        "DSCP: two hex digits, a class as its number",
        "-j DSCP --set-dscp 0x2e",
        "-j DSCP --set-dscp-class EF",
        "-j DSCP --set-dscp 46",
        "-j DSCP --set-dscp 0x2E",
        near=["-j DSCP --set-dscp 0x2f", "-j DSCP --set-dscp-class AF41"],
        at=MANGLE,
    ),
    C(
        "DSCP: 0x01 (puppetlabs-firewall's)",
        "-p tcp -m multiport --ports 997 -j DSCP --set-dscp 0x01",
        "-p tcp -m multiport --ports 997 -j DSCP --set-dscp 0x01",
        "-p tcp -m multiport --ports 997 -j DSCP --set-dscp 1",
        near=["-p tcp -m multiport --ports 997 -j DSCP --set-dscp 0x02"],
        at=(4, "mangle", "OUTPUT"),
    ),
    C(
        "DSCP v6: a class",
        "-j DSCP --set-dscp 0x0c",
        "-j DSCP --set-dscp-class af12",
        near=["-j DSCP --set-dscp-class af13"],
        at=MANGLE6,
    ),
    C(
        "tos: a number has the mask 0xff",
        "-m tos --tos 0x10/0xff -j ACCEPT",
        "-m tos --tos 16 -j ACCEPT",
        "-m tos --tos 0x10/255 -j ACCEPT",
        "-m tos --tos 020 -j ACCEPT",
        near=["-m tos --tos 0x10/0x3f -j ACCEPT", "-m tos --tos 17 -j ACCEPT"],
    ),
    C(
        "tos: a name (any case) has the mask 0x3f",
        "-m tos --tos 0x10/0x3f -j ACCEPT",
        "-m tos --tos Minimize-Delay -j ACCEPT",
        "-m tos --tos minimize-delay -j ACCEPT",
        "-m tos --tos 0x10/0x3f -j ACCEPT",
        near=["-m tos --tos Maximize-Throughput -j ACCEPT"],
    ),
    C(
        "tos: negated, the value is not masked",
        "-m tos ! --tos 0xff/0x0f -j ACCEPT",
        "-m tos ! --tos 255/15 -j ACCEPT",
        near=["-m tos ! --tos 0x0f/0x0f -j ACCEPT", "-m tos --tos 0xff/0x0f -j ACCEPT"],
    ),
    C(
        "tos v6: names",
        "-m tos ! --tos 0x00/0x3f -j ACCEPT",
        "-m tos ! --tos normal-service -j ACCEPT",
        near=["-m tos ! --tos 0 -j ACCEPT"],
        at=V6,
    ),
    C(
        "TOS: --set-tos, a name with the mask 0x3f",
        "-j TOS --set-tos 0x10/0x3f",
        "-j TOS --set-tos Minimize-Delay",
        "-j TOS --set-tos 16/0x3f",
        near=["-j TOS --set-tos 16"],
        at=MANGLE,
    ),
    C(
        "TOS: --and-tos is --set-tos 0/the other bits",
        "-j TOS --set-tos 0x00/0xf0",
        "-j TOS --and-tos 0x0f",
        "-j TOS --and-tos 15",
        "-j TOS --set-tos 0/0xf0",
        near=["-j TOS --and-tos 0xf0"],
        at=MANGLE,
    ),
    C(
        "TOS: --or-tos is --set-tos bits/bits",
        "-j TOS --set-tos 0x10/0x10",
        "-j TOS --or-tos 0x10",
        "-j TOS --set-tos 16/16",
        near=["-j TOS --xor-tos 0x10"],
        at=MANGLE,
    ),
    C(
        "TOS: --xor-tos is --set-tos bits/0",
        "-j TOS --set-tos 0x10/0x00",
        "-j TOS --xor-tos 16",
        "-j TOS --set-tos 0x10/0",
        near=["-j TOS --xor-tos 17"],
        at=MANGLE,
    ),
    C(
        "TOS v6: the same",
        "-j TOS --set-tos 0x03/0x03",
        "-j TOS --or-tos 3",
        near=["-j TOS --or-tos 2"],
        at=MANGLE6,
    ),
]

OTHER_ISSUE_11 = [
    C(
        "CLASSIFY: four hex digits each",
        "-j CLASSIFY --set-class 0001:0010",
        "-j CLASSIFY --set-class 1:10",
        "-j CLASSIFY --set-class 0x1:0x10",
        "-j CLASSIFY --set-class 01:010",
        near=["-j CLASSIFY --set-class 1:11", "-j CLASSIFY --set-class 10:1"],
        at=MANGLE_POST,
    ),
    C(
        "CLASSIFY: lower-case hex",
        "-j CLASSIFY --set-class ffff:000a",
        "-j CLASSIFY --set-class FFFF:A",
        "-j CLASSIFY --set-class 0xffff:0XA",
        near=["-j CLASSIFY --set-class ffff:b"],
        at=MANGLE_POST,
    ),
    C(
        "CLASSIFY v6: the same",
        "-j CLASSIFY --set-class 0001:0001",
        "-j CLASSIFY --set-class 1:1",
        near=["-j CLASSIFY --set-class 1:2"],
        at=MANGLE6,
    ),
    C(
        "ipv6header: headers as /etc/protocols names them, in libip6t_ipv6header's order",
        "-m ipv6header --header hop-by-hop,ipv6-frag -j ACCEPT",
        "-m ipv6header --header frag,hop -j ACCEPT",
        "-m ipv6header --header ipv6-frag,hop-by-hop -j ACCEPT",
        "-m ipv6header --header 44,0 -j ACCEPT",
        "-m ipv6header --header IPv6-Frag,hopopt,frag -j ACCEPT",
        near=[
            "-m ipv6header --header frag -j ACCEPT",
            "-m ipv6header ! --header frag,hop -j ACCEPT",
            "-m ipv6header --header frag,hop --soft -j ACCEPT",
        ],
        at=V6,
    ),
    C(
        "ipv6header: every header, by name and number",
        "-m ipv6header --header hop-by-hop,ipv6-opts,ipv6-route,ipv6-frag,ah,esp,ipv6-nonxt,protocol --soft -j ACCEPT",
        "-m ipv6header --soft --header prot,none,esp,auth,frag,route,dst,hop -j ACCEPT",
        "-m ipv6header --header 0,60,43,44,51,50,59,255 --soft -j ACCEPT",
        near=["-m ipv6header --header 0,60,43,44,51,50,59 --soft -j ACCEPT"],
        at=V6,
    ),
    C(
        "ipv6header: negated",
        "-m ipv6header ! --header ipv6-frag --soft -j ACCEPT",
        "-m ipv6header ! --header frag --soft -j ACCEPT",
        near=["-m ipv6header --header frag --soft -j ACCEPT"],
        at=V6,
    ),
    C(
        "pkttype: names in any case, aliases",
        "-m pkttype --pkt-type unicast -j ACCEPT",
        "-m pkttype --pkt-type host -j ACCEPT",
        "-m pkttype --pkt-type Unicast -j ACCEPT",
        "-m pkttype --pkt-type HOST -j ACCEPT",
        near=["-m pkttype --pkt-type broadcast -j ACCEPT", "-m pkttype ! --pkt-type unicast -j ACCEPT"],
    ),
    C(
        "pkttype: negated",
        "-m pkttype ! --pkt-type broadcast -j ACCEPT",
        "-m pkttype ! --pkt-type bcast -j ACCEPT",
        "-m pkttype ! --pkt-type BROADCAST -j ACCEPT",
        near=["-m pkttype ! --pkt-type multicast -j ACCEPT"],
    ),
    C(
        "pkttype v6: mcast is multicast",
        "-m pkttype --pkt-type multicast -j ACCEPT",
        "-m pkttype --pkt-type mcast -j ACCEPT",
        near=["-m pkttype --pkt-type unicast -j ACCEPT"],
        at=V6,
    ),
    C(
        "tcpmss: a range",
        "-p tcp -m tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1361:1541 -j ACCEPT",
        "-p tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1361:1541 -j ACCEPT",
        "-p tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 0x551:1541 -j ACCEPT",
        near=[
            "-p tcp --tcp-flags SYN,RST SYN -m tcpmss --mss 1361:1540 -j ACCEPT",
            "-p tcp --tcp-flags SYN,RST SYN -m tcpmss ! --mss 1361:1541 -j ACCEPT",
        ],
        at=MANGLE_FORWARD,
    ),
    C(
        "tcpmss: a range of one value is that value",
        "-p tcp -m tcpmss ! --mss 100 -j ACCEPT",
        "-p tcp -m tcpmss ! --mss 100:100 -j ACCEPT",
        "-p tcp -m tcpmss ! --mss 0144 -j ACCEPT",
        near=["-p tcp -m tcpmss --mss 100 -j ACCEPT"],
    ),
    C(
        "tcpmss: a range from 0",
        "-p tcp -m tcpmss --mss 0:100 -j ACCEPT",
        "-p tcp -m tcpmss --mss :100 -j ACCEPT",
        near=["-p tcp -m tcpmss --mss 1:100 -j ACCEPT"],
    ),
    C(
        "tcpmss: a range to 65535",
        "-p tcp -m tcpmss --mss 100:65535 -j ACCEPT",
        "-p tcp -m tcpmss --mss 100: -j ACCEPT",
        near=["-p tcp -m tcpmss --mss 100:65534 -j ACCEPT"],
    ),
    C(
        "tcpmss v6: the same",
        "-p tcp -m tcpmss --mss 1000 -j ACCEPT",
        "-p tcp -m tcpmss --mss 1000:1000 -j ACCEPT",
        near=["-p tcp -m tcpmss --mss 1001 -j ACCEPT"],
        at=V6,
    ),
    C(
        "policy: --pol ipsec is printed when left out",
        "-m policy --dir out --pol ipsec -j ACCEPT",
        "-m policy --dir out -j ACCEPT",
        "-m policy --pol ipsec --dir out -j ACCEPT",
        near=[
            "-m policy --dir out --pol none -j ACCEPT",
            "-m policy --dir out --strict --proto esp -j ACCEPT",
        ],
        at=OUTPUT,
    ),
    C(
        "policy: an element in print order, the spi in hex, the protocol by name",
        "-m policy --dir out --pol ipsec --strict --reqid 5 --spi 0x100 --proto esp --mode tunnel "
        "--tunnel-dst 10.0.0.1 --tunnel-src 10.0.0.0/8 -j ACCEPT",
        "-m policy --dir out --strict --proto 50 --mode tunnel --tunnel-dst 10.0.0.1/32 "
        "--tunnel-src 10.0.0.0/255.0.0.0 --reqid 5 --spi 256 -j ACCEPT",
        near=[
            "-m policy --dir out --strict --proto esp --mode tunnel --tunnel-dst 10.0.0.1 "
            "--tunnel-src 10.0.0.0/8 --reqid 5 --spi 257 -j ACCEPT",
            "-m policy --dir out --strict --proto ah --mode tunnel --tunnel-dst 10.0.0.1 "
            "--tunnel-src 10.0.0.0/8 --reqid 5 --spi 256 -j ACCEPT",
            "-m policy --dir out --strict --proto esp --mode tunnel --tunnel-dst 10.0.0.1 "
            "--tunnel-src 10.0.0.0/8 --reqid 6 --spi 256 -j ACCEPT",
        ],
        at=OUTPUT,
    ),
    C(
        "policy: negated element options; ipcomp",
        "-m policy --dir in --pol ipsec ! --reqid 8 ! --spi 0x10 ! --proto ipcomp ! --mode transport -j ACCEPT",
        "-m policy --dir in ! --proto 108 ! --mode transport ! --reqid 010 ! --spi 16 -j ACCEPT",
        near=["-m policy --dir in ! --proto 108 ! --mode transport --reqid 010 ! --spi 16 -j ACCEPT"],
    ),
    C(
        "policy: a tunnel address is not masked, and read as inet_aton reads it",
        "-m policy --dir out --pol ipsec --mode tunnel --tunnel-src 10.0.0.1 -j ACCEPT",
        "-m policy --dir out --mode tunnel --tunnel-src 10.1 -j ACCEPT",
        near=["-m policy --dir out --mode tunnel --tunnel-src 10.1.0.0 -j ACCEPT"],
        at=OUTPUT,
    ),
    C(
        "policy: --pol none",
        "-m policy --dir in --pol none -j REJECT --reject-with icmp-net-unreachable",
        "-m policy --pol none --dir in -j REJECT --reject-with icmp-net-unreachable",
        near=["-m policy --pol ipsec --dir in -j REJECT --reject-with icmp-net-unreachable"],
    ),
    C(
        "policy: --next is compared as text",
        "-m policy --dir out --pol ipsec --strict --proto esp --next --proto ah -j ACCEPT",
        "-m policy --dir out --pol ipsec --strict --proto esp --next --proto ah -j ACCEPT",
        understood=False,
        at=OUTPUT,
    ),
    C(
        "policy v6: tunnel addresses",
        "-m policy --dir out --pol ipsec --proto esp --mode tunnel --tunnel-dst fd00::2 --tunnel-src fd00::1/64 -j ACCEPT",
        "-m policy --dir out --mode tunnel --tunnel-src FD00::1/64 --tunnel-dst fd00::2/128 --proto esp -j ACCEPT",
        near=[
            "-m policy --dir out --mode tunnel --tunnel-src fd00::/64 --tunnel-dst fd00::2 --proto esp -j ACCEPT"
        ],
        at=OUTPUT6,
    ),
    C(
        "AUDIT: the type in lower case",
        "-j AUDIT --type drop",
        "-j AUDIT --type DROP",
        "-j AUDIT --type Drop",
        near=["-j AUDIT --type accept", "-j AUDIT --type reject"],
    ),
    C(
        "AUDIT v6: the same",
        "-j AUDIT --type accept",
        "-j AUDIT --type ACCEPT",
        near=["-j AUDIT --type reject"],
        at=V6,
    ),
]

CASES: list[Case] = [
    *BASE,
    *TCP,
    *UDP_SCTP,
    *ICMP,
    *MULTIPORT,
    *CONNTRACK,
    *COMMENT_MARK,
    *ADDRTYPE_PHYSDEV_SET,
    *OWNER,
    *STATISTIC_LIMIT,
    *HASHLIMIT,
    *RECENT_ETC,
    *CONNLIMIT_RPFILTER,
    *STRING,
    *TARGET_CASES,
    *NAT,
    *MARKS,
    *LOGGING_PROXY,
    *RAW_TARGETS,
    *TIME,
    *U32_CONNBYTES,
    *DSCP_TOS,
    *OTHER_ISSUE_11,
    *OTHER,
]


# -- the checks ----------------------------------------------------------------------------------


def _show(spec: Sequence[str]) -> str:
    return shlex.join(spec)


def check(case: Case, printed: Spec, *, lost: bool = False) -> list[str]:
    """What is wrong with the canonicalizer for this case, given what some
    iptables printed for it: every spelling must have the key of what was
    printed (whichever release printed it), and an exact analysis must be
    the case's printed form, the canonical one. ``lost``: that listing lost
    part of the rule, so what it printed must read as another rule."""
    proto = case.protocol
    problems: list[str] = []
    key = canonicalize(printed, proto)
    if case.understood and not case.lossy and not lost and not analyze(printed, proto).exact:
        problems.append(f"the printed form is not understood: {_show(printed)}")
    for spelling in case.spellings:
        read = analyze(spelling, proto)
        if case.lossy or lost:
            if (case.lossy and read.exact) or read.tokens == key:
                problems.append(
                    f"a lossy listing must not match {_show(spelling)} (read {_show(read.tokens)})"
                )
            continue
        if case.understood and not read.exact:
            problems.append(f"not understood: {_show(spelling)} (read {_show(read.tokens)})")
        if read.tokens != key:
            problems.append(f"{_show(spelling)} reads {_show(read.tokens)}, the printed form {_show(key)}")
        elif read.exact and read.tokens != case.printed:
            problems.append(
                f"{_show(spelling)} is exact but reads {_show(read.tokens)}, not {_show(case.printed)}"
            )
    if not lost:  # (a listing that loses part of the rule may print a near miss alike)
        for near in case.near:
            if canonicalize(near, proto) == key:
                problems.append(f"near miss {_show(near)} reads like {_show(printed)}")
    return problems


def _param(case: Case) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=case.parser)] if case.parser else []
    return pytest.param(case, id=case.id, marks=marks)


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case(case: Case) -> None:
    """The recorded printed forms against the canonicalizer (no iptables
    needed): the canonical one, legacy's, and each other release's."""
    problems = check(case, case.printed)
    if case.legacy is not None:
        problems += check(case, case.legacy)
    for form in case.also:
        problems += check(case, form)
    for entry in case.by_release:
        if entry.printed is not None:
            problems += [f"[{entry.releases}] {p}" for p in check(case, entry.printed, lost=entry.lost)]
    assert not problems, "\n".join(problems)


# -- real iptables -------------------------------------------------------------------------------

_SBIN = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def _in_ns(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", *argv], capture_output=True, text=True, check=False
    )


def _prepare(netns: str, program: str, table: str, cases: list[Case]) -> None:
    """Create the ipsets and user chains the cases need."""
    chains = {c.chain for c in cases if c.chain not in _BUILTIN[table]}
    chains |= {need for c in cases for need in c.needs if need not in _SETUP}
    for chain in sorted(chains):
        done = _in_ns(netns, program, "-t", table, "-N", chain)
        if done.returncode:
            pytest.fail(f"{program} -t {table} -N {chain}: {done.stderr.strip()}")
    for name in sorted({need for c in cases for need in c.needs if need in _SETUP}):
        if shutil.which("ipset", path=_SBIN) is None:
            pytest.fail("ipset is missing: apt-get install -y ipset")
        done = _in_ns(netns, *_SETUP[name])
        if done.returncode:
            pytest.fail(f"{' '.join(_SETUP[name])}: {done.stderr.strip()}")


_GROUPS = sorted({(c.proto, c.table) for c in CASES})


@pytest.mark.iptables
@pytest.mark.parametrize(("proto", "table"), _GROUPS, ids=[f"v{p}-{t}" for p, t in _GROUPS])
def test_iptables_agrees(backend: str, netns: str, proto: int, table: str) -> None:
    """Every case of one protocol and table, added to real iptables in one
    namespace and read back once per chain: every spelling, which iptables
    must print alike (and as the table says for its release), or refuse
    where the table says its release refuses it, then the near misses, which
    it must print as other rules (when it takes them at all)."""
    program = f"{'ip6tables' if proto == 6 else 'iptables'}-{backend}"
    if shutil.which(program, path=_SBIN) is None:
        pytest.fail(f"{program} is missing: apt-get install -y iptables")
    release = rel.release_of(program, netns)
    cases = [c for c in CASES if (c.proto, c.table) == (proto, table) and release >= c.since]
    _prepare(netns, program, table, cases)
    problems: dict[str, list[str]] = {case.id: [] for case in cases}
    expected = {case.id: case.expected(release, backend) for case in cases}
    # What was added to each chain, in order: (case, spec, whether it is a near miss).
    added: dict[str, list[tuple[Case, Spec, bool]]] = {}
    for case in cases:
        for spelling in case.spellings:
            done = _in_ns(netns, program, "-t", table, "-A", case.chain, *spelling)
            refused = spelling in expected[case.id].refused
            if done.returncode and not refused:
                problems[case.id].append(f"iptables refused {_show(spelling)}: {done.stderr.strip()}")
            elif not done.returncode and refused:
                problems[case.id].append(f"iptables took {_show(spelling)}, which the table says it refuses")
            if not done.returncode:
                added.setdefault(case.chain, []).append((case, spelling, False))
        for near in case.near:
            # Near misses iptables refuses (a set that does not exist) are
            # still checked against the canonicalizer, in check().
            if _in_ns(netns, program, "-t", table, "-A", case.chain, *near).returncode == 0:
                added.setdefault(case.chain, []).append((case, near, True))
    printed: dict[str, Spec] = {}
    for chain, entries in added.items():
        for (case, spec, is_near), line in zip(entries, _listing(netns, program, table, chain), strict=True):
            first = printed.get(case.id)
            if first is None and is_near:
                continue  # every spelling refused: no form to tell a near miss from
            if first is None:
                first = printed[case.id] = line
                problems[case.id] += _against(case, expected[case.id], line)
            elif not is_near and line != first:
                problems[case.id].append(
                    f"iptables prints {_show(spec)} as {_show(line)}, not {_show(first)}"
                )
            elif (
                is_near
                and not expected[case.id].lost
                and canonicalize(line, case.protocol) == canonicalize(first, case.protocol)
            ):
                problems[case.id].append(f"iptables prints near miss {_show(spec)} as {_show(line)}")
    report = []
    for case in cases:
        if case.parser and not problems[case.id]:
            report.append(f"[{case.id}] passes now: remove its parser mark ({case.parser})")
        elif not case.parser:
            report += [f"[{case.id}] {problem}" for problem in problems[case.id]]
    if report:
        where = f"{program} {'.'.join(map(str, release))} -t {table}"
        pytest.fail(f"{len(report)} problems on {where}:\n" + "\n".join(report))


def _listing(netns: str, program: str, table: str, chain: str) -> list[Spec]:
    """The rules of one chain as ``-S`` prints them, after ``-A CHAIN``."""
    done = _in_ns(netns, program, "-t", table, "-S", chain)
    assert done.returncode == 0, done.stderr
    return [
        tuple(split_line(line)[2:]) for line in done.stdout.splitlines() if line.startswith(f"-A {chain} ")
    ]


def _against(case: Case, expected: Expected, printed: Spec) -> list[str]:
    problems = []
    if printed != expected.printed and printed not in case.also:
        problems.append(f"iptables printed {_show(printed)}, the table says {_show(expected.printed)}")
    return problems + check(case, printed, lost=expected.lost)
