"""The gateway zone filter's meaning, written independently of both renderings, for the equivalence tests.

* ``reference``: what ip6tables does with a zone's chain: the rules in order, the first that matches
  decides, none = closed (dropped). This is also the semantics the compiler documents.
* ``run_program``: what the nftables rendering does: each step in order (a lookup in the disjoint
  elements, or a rule as written), then the zone's final action.
* random zone rule lists and packets that hit their edges (interval ends +-1, overlapping networks,
  wildcards the maps cannot hold, rules that match everything, dead rules).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address

from zonectl.core.layout import AddrMatch, prefix_mask
from zonectl.core.nat64 import Nat64Prefix
from zonectl.core.rules import Rule, rule_id
from zonectl.render.partition import Lookup, Space, ZoneProgram

PROTOS = ("tcp", "udp", "sctp", "icmpv6")
OTHER = 47  # GRE: a protocol no rule names
UNIVERSE = IPv4Network("192.0.2.0/24")  # small, so that random networks overlap


@dataclass(frozen=True)
class Packet:
    daddr: int  # inside the NAT64 prefix
    proto: str | int  # a name of PROTOS, or a protocol number
    port: int  # destination port, or ICMPv6 type

    @property
    def number(self) -> int:
        return {"tcp": 6, "udp": 17, "sctp": 132, "icmpv6": 58}.get(self.proto, self.proto)  # type: ignore[arg-type]


def matches(rule: Rule, p: Packet) -> bool:
    if rule.dst is not None and not rule.dst.matches(p.daddr):
        return False
    if rule.protocol is None:
        return True
    if rule.protocol != p.proto:
        return False
    if rule.protocol == "icmpv6":
        return rule.icmp_type is None or rule.icmp_type == p.port
    return rule.port_min is None or rule.port_min <= p.port <= (rule.port_max or rule.port_min)


def reference(rules: list[Rule], p: Packet) -> str:
    return next((r.action for r in rules if matches(r, p)), "deny")


def run_program(prog: ZoneProgram, space: Space, p: Packet) -> str:
    v4 = int(space.nat64.extract(IPv6Address(p.daddr)))
    for step in prog.steps:
        if isinstance(step, Lookup):
            planes = ([p.proto] if p.proto in ("tcp", "udp", "sctp") else []) + (["icmpv6"] if p.proto == "icmpv6" else [])
            for plane in [*planes, "any"]:  # the order the chain consults the maps
                hits = [e for e in step.of(plane) if e.lo <= v4 <= e.hi and (plane == "any" or e.plo <= p.port <= e.phi)]
                assert len(hits) <= 1, f"overlapping elements {hits}"  # the kernel would refuse them
                if hits:
                    return hits[0].action
        elif matches(step, p):
            return step.action
    return prog.final or "deny"


def random_rules(rnd: random.Random, nat64: Nat64Prefix, n: int, zone: str = "z") -> list[Rule]:
    """``n`` rules of one zone, in evaluation order, shaped like compiled gateway rules (and worse)."""
    out: list[Rule] = []
    for i in range(n):
        kind = rnd.choices(["net", "any", "wide", "wild", "dead"], weights=[80, 6, 4, 6, 4])[0]
        dst: AddrMatch | None
        if kind == "net":
            length = rnd.choice([24, 25, 26, 28, 30, 31, 32, 16, 0])
            base = int(UNIVERSE.network_address) + rnd.randrange(256)
            dst = nat64.embed_network(IPv4Network((base >> (32 - length) << (32 - length) if length else 0, length)))
        elif kind == "any":
            dst = None
        elif kind == "wide":
            dst = AddrMatch(int(nat64.network.network_address), prefix_mask(rnd.choice([8, 16, nat64.network.prefixlen])))
        elif kind == "wild":  # a hand-written wildcard inside the prefix: one bit of the IPv4 part left out
            base = int(nat64.network.network_address)
            net = nat64.embed_network(IPv4Network(UNIVERSE))
            low, hole = int(nat64.embed("0.0.0.255")) ^ base, int(nat64.embed("0.0.0.16")) ^ base
            dst = AddrMatch(net.value | (int(nat64.embed(f"0.0.0.{rnd.randrange(256)}")) ^ base), net.mask | (low & ~hole))
        else:  # outside the prefix: can never match
            dst = AddrMatch.from_network("fd99::/64")
        proto = rnd.choice([None, None, *PROTOS, "tcp", "tcp"])
        pmin = pmax = icmp = None
        if proto in ("tcp", "udp", "sctp") and rnd.random() < 0.85:
            pmin = rnd.choice([22, 53, 80, 443, 1000, rnd.randrange(1, 65536)])
            pmax = pmin + rnd.choice([0, 0, 1, 10, 1000]) if pmin < 64000 else pmin
        elif proto == "icmpv6" and rnd.random() < 0.7:
            icmp = rnd.choice([1, 128, 129, 135])
        action = rnd.choice(["allow", "deny"])
        out.append(Rule(rule_id("t", zone, i), "t/p", zone, "egress", action, i, None, dst, proto, pmin, pmax, icmp,
                        True, False, f"r{i}"))
    if rnd.random() < 0.5:  # usually a default at the end
        out.append(Rule(rule_id("t", zone, "default"), "t/p", zone, "egress", rnd.choice(["allow", "deny"]), n, None,
                        None, None, None, None, None, True, True, "default-egress"))
    return out


def random_packets(rnd: random.Random, nat64: Nat64Prefix, rules: list[Rule], n: int) -> list[Packet]:
    """Packets aimed at the rules' edges: interval ends and their neighbours, port range ends +-1."""
    space = Space(AddrMatch.from_network(nat64.network))
    v4s = {int(UNIVERSE.network_address) + rnd.randrange(256) for _ in range(8)} | {0, 2**32 - 1}
    ports = {1, 22, 53, 80, 443, 65535}
    for r in rules:
        interval = space.ipv4_interval(r.dst)
        if interval is not None:
            v4s |= {max(0, interval[0] - 1), interval[0], interval[1], min(2**32 - 1, interval[1] + 1)}
        if r.port_min is not None and r.port_max is not None:
            ports |= {max(1, r.port_min - 1), r.port_min, r.port_max, min(65535, r.port_max + 1)}
        if r.icmp_type is not None:
            ports.add(r.icmp_type)
    host = ~prefix_mask(nat64.network.prefixlen) & (2**128 - 1)
    v4bits = space.v4bits
    out = []
    for _ in range(n):
        v4 = rnd.choice(sorted(v4s))
        daddr = int(nat64.embed(v4))
        if rnd.random() < 0.3:  # u-octet and suffix bits the rules do not look at
            daddr |= rnd.getrandbits(128) & host & ~v4bits
        proto = rnd.choice([*PROTOS, "tcp", OTHER])
        port = rnd.choice(sorted(ports)) if proto != "icmpv6" else rnd.choice([1, 128, 129, 135, 136])
        out.append(Packet(daddr, proto, port))
    return out
