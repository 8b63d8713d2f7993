"""The nftables zone filter gives every packet the verdict the ip6tables filter gives it, in the kernel.

Random zone rule lists (tests/filtermodel.py: overlapping networks, port ranges, protocols, ICMPv6
types, wildcards the verdict maps cannot hold, catch-alls, dead rules) are rendered both ways and
loaded, one after the other, into a namespace this test creates. Hundreds of packets aimed at the
rules' edges, from every zone, from an unknown zone and from no zone, are sent through each ruleset:
the kernel's verdict is read per packet from the send itself (a raw socket gets EPERM when netfilter
drops what it sends), so nothing but the rules decides. Both rulesets are hooked at output instead of
forward for that (the chains and maps are exactly the rendered ones). Every verdict must equal the
other backend's and the ordered rule list's (the pure evaluator of tests/unit/test_partition.py).
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from ipaddress import IPv6Address

import pytest

from filtermodel import Packet, random_packets, random_rules, reference
from zonectl.core.config import parse_config
from zonectl.core.layout import AddrMatch
from zonectl.core.nat64 import Nat64Prefix
from zonectl.gateway.host import Host
from zonectl.harness.netns import Netns
from zonectl.render import ip6tables, nftables

LAYOUT = parse_config({"layout": {"cluster": "fd00:10:244::/48"}}).layout
ZONE_IDS = {"a": 0x2000, "b": 0x2100, "c": 0x3000, "d": 0x3100}
NEXT_HOP = "fe80::99"

SENDER = r"""
import errno, json, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
out = []
for hexpkt in json.load(sys.stdin):
    data = bytes.fromhex(hexpkt)
    dst = socket.inet_ntop(socket.AF_INET6, data[24:40])
    try:
        s.sendto(data, (dst, 0))
        out.append(True)
    except PermissionError:
        out.append(False)
json.dump(out, sys.stdout)
"""


def l4(p: Packet) -> bytes:
    if p.proto == "tcp":
        return struct.pack("!HHIIBBHHH", 40000, p.port, 0, 0, 5 << 4, 2, 1024, 0, 0)
    if p.proto == "udp":
        return struct.pack("!HHHH", 40000, p.port, 8, 0)
    if p.proto == "sctp":
        return struct.pack("!HHII", 40000, p.port, 0, 0)
    if p.proto == "icmpv6":
        return struct.pack("!BBHI", p.port, 0, 0, 0)
    return b"\0" * 8


def packet_bytes(src: IPv6Address, p: Packet) -> bytes:
    body = l4(p)
    return (struct.pack("!IHBB", 6 << 28, len(body), p.number, 64) + src.packed + IPv6Address(p.daddr).packed + body)


@pytest.fixture(scope="module")
def ns():
    with Netns.create("zteq") as n:
        n.run(["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        for dev in ("v0", "v1"):
            n.run(["ip", "link", "set", dev, "up"])
        n.run(["ip", "-6", "neigh", "add", NEXT_HOP, "lladdr", "02:00:00:00:00:99", "dev", "v0", "nud", "permanent"])
        yield n


def verdicts(ns: Netns, packets: list[bytes]) -> list[bool]:
    run = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", SENDER],
                         input=json.dumps([b.hex() for b in packets]), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("prefix", ["fd64:ff9b::/96", "fd64:ff9b:0:1::/64", "2001:db8:100::/40"])
@pytest.mark.parametrize("seed", range(10))
def test_both_backends_give_the_ordered_verdict(ns: Netns, prefix: str, seed: int) -> None:
    rnd = random.Random(seed * 7919 + len(prefix))
    nat64 = Nat64Prefix.parse(prefix)
    layout = LAYOUT
    zones = [ip6tables.ZoneMatch(z, layout.zone_match(i)) for z, i in ZONE_IDS.items()]
    rules_by_zone = {z: random_rules(rnd, nat64, rnd.randrange(0, 30), zone=z) for z in ZONE_IDS if z != "d"}
    rules = [r for rs in rules_by_zone.values() for r in rs]  # zone d: known, no rules (closed)
    sources = {z: layout.encode("fd00:10:244:7::/64", i, 5) for z, i in ZONE_IDS.items()}
    sources["unknown"] = layout.encode("fd00:10:244:7::/64", 0x4000, 5)
    sources["none"] = IPv6Address("fd00:10:244:7::5")
    cases: list[tuple[str, Packet]] = []
    for z in sources:
        for p in random_packets(rnd, nat64, rules_by_zone.get(z, rules), 60):
            cases.append((z, p))
    want = [reference(rules_by_zone[z], p) == "allow" if z in rules_by_zone else False for z, p in cases]
    wire = [packet_bytes(sources[z], p) for z, p in cases]
    ns.run(["ip", "-6", "route", "replace", prefix, "via", NEXT_HOP, "dev", "v0"])
    prefix_match = AddrMatch.from_network(nat64.network)

    text = ip6tables.render_restore(rules, prefix_match, zones, jumps=("FORWARD",))
    Host(ns.name).run(["ip6tables-restore", "--noflush"], input=text.replace("-I FORWARD 1", "-I OUTPUT 1"))
    try:
        by_ip6tables = verdicts(ns, wire)
    finally:
        save = ns.run(["ip6tables-save", "-t", "filter"]).stdout
        ns.run(["ip6tables", "-D", "OUTPUT", "-d", prefix_match.cidr_or_mask, "-m", "comment", "--comment",
                "zonectl jump", "-j", ip6tables.FWD_CHAIN])
        for argv in ip6tables.render_cleanup(prefix_match, [c for c in ip6tables.owned_chains(save)
                                                            if c.startswith(ip6tables.ZONE_CHAIN_PREFIX)]):
            ns.run(["ip6tables", *argv], check=False)
    text = nftables.render_filter(rules, prefix_match, zones)
    Host(ns.name).run(["nft", "-f", "-"], input=text.replace("hook forward", "hook output"))
    try:
        by_nft = verdicts(ns, wire)
    finally:
        Host(ns.name).run(["nft", "-f", "-"], input=nftables.render_delete("ip6", nftables.FILTER_TABLE))
    ns.run(["ip", "-6", "route", "del", prefix], check=False)

    assert sum(want) and not all(want)  # both verdicts occur: the comparison means something
    diff_ip6t = [(cases[i], want[i]) for i in range(len(cases)) if by_ip6tables[i] != want[i]]
    diff_nft = [(cases[i], want[i]) for i in range(len(cases)) if by_nft[i] != want[i]]
    assert not diff_ip6t, diff_ip6t[:5]
    assert not diff_nft, diff_nft[:5]
