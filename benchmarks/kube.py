"""A kube-proxy-sized nat table, as kube-proxy (iptables mode) writes it.

``services`` services with ``endpoints`` endpoints each: one KUBE-SERVICES
jump per service, a KUBE-SVC chain that balances over KUBE-SEP chains with
``-m statistic``, and two rules per KUBE-SEP chain (mark for masquerade, DNAT).
"""

from __future__ import annotations


def kube_proxy_payload(services: int, endpoints: int) -> str:
    """An iptables-restore payload for the nat table (rules as kube-proxy spells them)."""
    chains = [":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]", ":KUBE-POSTROUTING - [0:0]"]
    rules = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    for s in range(services):
        name = f"ns{s % 50}/svc{s}:http"
        svc = f"KUBE-SVC-{s:016X}"
        ip = f"10.{96 + s // 65536}.{s // 256 % 256}.{s % 256}"
        chains.append(f":{svc} - [0:0]")
        rules.append(
            f'-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment "{name} cluster IP" '
            f"-m tcp --dport 80 -j {svc}"
        )
        rules.append(
            f'-A {svc} ! -s 10.244.0.0/16 -d {ip}/32 -p tcp -m comment --comment "{name} cluster IP" '
            "-m tcp --dport 80 -j KUBE-MARK-MASQ"
        )
        for e in range(endpoints):
            sep = f"KUBE-SEP-{s:010X}{e:06X}"
            pod = f"10.244.{(s * endpoints + e) // 250 % 250}.{(s * endpoints + e) % 250 + 1}"
            chains.append(f":{sep} - [0:0]")
            left = endpoints - e
            if left > 1:
                rules.append(
                    f'-A {svc} -m comment --comment "{name} -> {pod}:8080" -m statistic --mode random '
                    f"--probability {1 / left:.11f} -j {sep}"
                )
            else:
                rules.append(f'-A {svc} -m comment --comment "{name} -> {pod}:8080" -j {sep}')
            rules.append(f'-A {sep} -s {pod}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ')
            rules.append(
                f'-A {sep} -p tcp -m comment --comment "{name}" -m tcp -j DNAT --to-destination {pod}:8080'
            )
    return "\n".join(["*nat", *chains, *rules, "COMMIT", ""])
