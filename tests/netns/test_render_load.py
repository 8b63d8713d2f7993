"""Every generated ruleset loads in the real tools: ip6tables-restore --test and nft -c -f, and for
real (then read back) inside a namespace this test creates."""

from __future__ import annotations

import random
import re
from ipaddress import IPv4Address, IPv4Network

import pytest

from zonectl.core.config import parse_config
from zonectl.core.rules import compile_objects
from zonectl.core.zones import ZoneRegistry
from zonectl.gateway.firewall import expected_lines
from zonectl.gateway.host import Host
from zonectl.harness.netns import Netns
from zonectl.render import ip6tables, nftables

LAYOUTS = {
    "default-/96": ("fd00:10:244::/48", 64, "fd64:ff9b::/96"),
    "low-field-/64-prefix": ("fd00:10:244::/48", 96, "fd64:ff9b:0:1::/64"),  # IPv4 embedded around the u-octet
    "/40-prefix": ("fd00:abcd::/32", 80, "2001:db8:100::/40"),
}


def random_inputs(seed: int, cluster: str, offset: int, prefix: str, n_zones: int = 8, n_policies: int = 12):
    rnd = random.Random(seed)
    cfg = parse_config({"layout": {"cluster": cluster, "zoneField": {"offset": offset, "width": 16}},
                        "nat64": {"prefix": prefix}})
    zones = [{"kind": "SecurityZone", "metadata": {"name": f"z{i}"}, "spec": {"id": rnd.randrange(1, 0xFFFF)}}
             for i in range(n_zones)]
    ids = {z["spec"]["id"] for z in zones}
    zones = [z for z in zones if z["spec"]["id"] in ids and not ids.discard(z["spec"]["id"])]
    reg = ZoneRegistry.from_objects(cfg.layout, zones)
    names = [z["metadata"]["name"] for z in zones]
    policies = []
    for p in range(n_policies):
        rules = []
        for r in range(rnd.randrange(1, 6)):
            proto = rnd.choice(["TCP", "UDP", "SCTP", "ICMPv6", "Any"])
            action = rnd.choice(["Allow", "Deny"])
            port = {"protocol": proto}
            if proto == "ICMPv6":
                port["icmpType"] = rnd.choice([128, 1, 3])
            elif proto != "Any":
                port["port"] = rnd.randrange(1, 60000)
                if rnd.random() < 0.3 or action == "Deny":
                    port["endPort"] = port["port"] + rnd.randrange(0, 100)
            cidrs = [str(IPv4Network((rnd.randrange(0, 2**32) & ~((1 << (32 - l)) - 1), l)))
                     for l in rnd.sample([8, 16, 24, 28, 32], 2)]
            rules.append({"name": f"r{r}", "action": action, "to": [{"nat64": {"cidrs": cidrs}}], "ports": [port]})
        policies.append({"kind": "SecurityZonePolicy", "metadata": {"name": f"p{p}", "namespace": "t"},
                         "spec": {"zones": rnd.sample(names, 2), "priority": rnd.randrange(0, 999),
                                  "defaultAction": {"egress": rnd.choice(["Allow", "Deny"])}, "ingress": [],
                                  "egress": rules}})
    rules = compile_objects(policies, reg, cfg.nat64)
    zm = [ip6tables.ZoneMatch(z.name, reg.match(z.name)) for z in reg]
    marks = [ip6tables.ZoneMark(z.name, reg.match(z.name), (i + 1) << 16, 0xFF0000) for i, z in enumerate(list(reg)[:3])]
    return cfg, rules.for_gateway(), zm, marks


@pytest.fixture(scope="module")
def host():
    ns = Netns.create("ztrl")
    try:
        yield Host(ns.name)
    finally:
        ns.close()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("seed", [1, 2])
def test_ip6tables_restore_loads_and_reads_back(host: Host, name: str, seed: int) -> None:
    cfg, rules, zones, marks = random_inputs(seed, *LAYOUTS[name])
    assert len(rules) > 20
    text = ip6tables.render_restore(rules, cfg.nat64.match(), zones, marks)
    host.run(["ip6tables-restore", "--test", "--noflush"], input=text)
    host.run(["ip6tables-restore", "--noflush"], input=text)
    try:
        save = host.run(["ip6tables-save", "-t", "filter"]).stdout + host.run(["ip6tables-save", "-t", "mangle"]).stdout
        live = {}
        for line in ip6tables.owned_lines(save):
            live.setdefault(line.split()[1], []).append(line)
        # what we render is exactly what ip6tables-save prints back: drift detection compares them
        assert live == expected_lines(text)
        # replacing it with a smaller set drops the zone chains no longer wanted, atomically
        smaller = [r for r in rules if r.zone == rules[0].zone]
        host.run(["ip6tables-restore", "--noflush"], input=ip6tables.render_restore(
            smaller, cfg.nat64.match(), zones, jumps=(), stale_chains=ip6tables.owned_chains(save)))
        chains = ip6tables.owned_chains(host.run(["ip6tables-save", "-t", "filter"]).stdout)
        assert chains == list(ip6tables.chain_lines(smaller, zones))
    finally:
        live = ip6tables.owned_chains(host.run(["ip6tables-save", "-t", "filter"]).stdout)
        for argv in ip6tables.render_cleanup(cfg.nat64.match(), [c for c in live if c.startswith("ZONECTL-Z-")]):
            host.run(["ip6tables", *argv], check=False)
        assert "ZONECTL" not in host.run(["ip6tables-save"]).stdout


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_nft_checks_and_loads(host: Host, name: str) -> None:
    cfg, rules, zones, marks = random_inputs(3, *LAYOUTS[name])
    text = nftables.render_filter(rules, cfg.nat64.match(), zones, marks)
    nat = nftables.render_nat([nftables.NatPool("shared", IPv4Network("100.64.0.0/24")),
                               nftables.NatPool("z", IPv4Network("100.64.1.0/24"), IPv4Address("198.51.100.9"))], "eth0")
    for t in (text, nat):
        host.run(["nft", "-c", "-f", "-"], input=t)
        host.run(["nft", "-f", "-"], input=t)
        host.run(["nft", "-f", "-"], input=t)  # replacing an existing table is the same one transaction
    listing = host.run(["nft", "list", "table", "ip6", "zonectl"]).stdout
    # an allow and a deny counter per zone and the fail-closed one; the dispatch is one verdict map
    # (goto zone-...), each zone's rules one to three lookups, never a rule per compiled rule
    assert len(re.findall(r"^\tcounter ", listing, re.M)) == 2 * len(zones) + 1
    assert listing.count("goto zone-") == len(zones)
    for chain in listing.split("chain zone-")[1:]:  # each zone consults its own maps, each once
        name = chain.split()[0]
        if name != "egress":
            consulted = re.findall(r"vmap @(\S+)", chain.split("\n\t}")[0])
            declared = re.findall(rf"map ((?:ports|icmp|any)\.{re.escape(name)}\.\S+) {{", listing)
            assert sorted(consulted) == sorted(declared)
    assert listing.count(" vmap @") < len(rules) / 2  # lookups, not a rule walk
    counters = nftables.parse_counters(host.run(["nft", "-j", "list", "counters", "table", "ip6", "zonectl"]).stdout)
    assert sorted(c.field("zone") or "" for c in counters) == sorted(["-", *[z.name for z in zones] * 2])
    host.run(["nft", "-f", "-"], input=nftables.render_delete("ip6", "zonectl") + nftables.render_delete("ip", "zonectl-nat"))
