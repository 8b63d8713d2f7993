"""NAT64 beyond one core: several Tayga instances per pool behind an ECMP route, with real packets.

Each instance has its own slice of the pool and its own TUN; the kernel hashes every packet to the
NAT64 prefix onto one of them (by source address by default, so a pod keeps one instance; or by flow).
Whatever instance translated it, the IPv4 side sees the zone's one egress address (the shared pool's
masquerade address, or the zone's own), so IPv4 firewalls can still attribute every zone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network

import pytest

from gwlab import ALLOW_LAB, CONFIG, TARGET, registry, ruleset
from zonectl.gateway.config import parse_gateway
from zonectl.gateway.gateway import Gateway
from zonectl.gateway.host import Host
from zonectl.harness.gateway_testbed import GATEWAY_V4, Testbed

WEB_V4 = "198.51.100.21"


def tun_tx(host: Host, tun: str) -> int:
    """Packets the kernel handed to this TUN's Tayga (it counts them when Tayga reads them)."""
    with host.iproute() as ip:
        (link,) = ip.get_links(ifname=tun)
        return int(link.get_attr("IFLA_STATS64")["tx_packets"])


def pods(zone_ids: dict[str, int], per_zone: int) -> dict[str, str]:
    return {f"{z}-{k}": str(CONFIG.layout.encode("fd00:10:244:2::/64", zid, 5 + k))
            for z, zid in zone_ids.items() for k in range(per_zone)}


@pytest.mark.parametrize("spread", ["source", "flow"])
def test_instances_share_the_load_and_each_zone_keeps_its_egress_address(spread: str) -> None:
    labels = pods({"dmz": 0x2000, "web": 0x2100}, 16)  # a zone all on one instance by chance: 1 in 32,768
    with Testbed.create(labels) as bed:
        cfg = parse_gateway({"uplink": "uplink", "stateDir": str(bed.workdir / "state"), "metrics": {"listen": None},
                             "tayga": {"instances": 2, "zoneInstances": 2, "hash": spread}})
        gw = Gateway(cfg, Host(bed.gateway.name))
        try:
            reg = registry()
            gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB, reg))
            assert sorted(gw.taygas) == ["api", "api.1", "shared", "shared.1", "web", "web.1"]
            pools = {n: gw.plan.instance(n).pool for n in gw.taygas}
            assert pools["shared"] == IPv4Network("100.64.0.0/25") and pools["shared.1"] == IPv4Network("100.64.0.128/25")
            assert pools["web"] == IPv4Network("100.64.21.0/25") and pools["web.1"] == IPv4Network("100.64.21.128/25")
            route = bed.gateway.run(["ip", "-6", "route", "show", "fd64:ff9b::/96"]).stdout
            assert "nexthop via fe80::64 dev zt64 " in route and "nexthop via fe80::64 dev zt64.1 " in route
            fields = bed.gateway.run(["sysctl", "-n", "net.ipv6.fib_multipath_hash_fields"]).stdout.strip()
            assert bed.gateway.run(["sysctl", "-n", "net.ipv6.fib_multipath_hash_policy"]).stdout.strip() == "3"
            assert fields == ("1" if spread == "source" else "55")
            host = gw.host
            before = {t: tun_tx(host, t) for t in ("zt64", "zt64.1", "zt64-2100", "zt64-2100.1")}

            def tcp(label: str) -> str | None:
                return bed.probe(label, "tcp", TARGET, timeout=2)

            with ThreadPoolExecutor(max_workers=10) as pool:
                seen = dict(zip(labels, pool.map(tcp, labels), strict=True))
            # the IPv4 side sees each zone's one address, whichever instance translated the packet
            assert {seen[l] for l in labels if l.startswith("dmz")} == {str(GATEWAY_V4)}
            assert {seen[l] for l in labels if l.startswith("web")} == {WEB_V4}
            used = {t: tun_tx(host, t) - before[t] for t in before}
            assert all(used.values()), used  # every instance translated some of the 32 pods' traffic
            assert gw.drift() == []

            # one pod, 30 connections: source hashing keeps it on one instance, flow hashing spreads it (all on one
            # instance by chance: 1 in 2**29)
            before = {t: tun_tx(host, t) for t in ("zt64", "zt64.1")}
            with ThreadPoolExecutor(max_workers=10) as pool:
                assert set(pool.map(lambda _: tcp("dmz-0"), range(30))) == {str(GATEWAY_V4)}
            used = [tun_tx(host, t) - before[t] for t in before]
            assert (min(used) == 0) == (spread == "source"), used
        finally:
            gw.close()
