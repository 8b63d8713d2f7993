"""The plumbing alone (no zonectl filter): a pod reaches an IPv4 server through Tayga and masquerade.

Also shows why the renderer refuses the well-known prefix for non-global IPv4: with 64:ff9b::/96 the
same lab drops traffic to the documentation address, with fd64:ff9b::/96 it flows.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pytest

from zonectl.gateway import netlink
from zonectl.gateway.host import Host
from zonectl.gateway.tayga import TaygaProcess
from zonectl.gateway.tayga_info import detect_version, read_dynamic_map
from zonectl.harness.gateway_testbed import GATEWAY_V4, SERVER_V4, UPLINK, Testbed
from zonectl.render.tayga import TaygaConfig, render

POD = "fd00:10:244:2:2000::5"
POOL = IPv4Network("100.64.0.0/24")


def plumb(bed: Testbed, prefix: str) -> TaygaProcess:
    host = Host(bed.gateway.name)
    version = detect_version("tayga", host)
    cfg = TaygaConfig("zt64", IPv4Address("100.64.0.1"), IPv6Network(prefix), dynamic_pool=POOL,
                      data_dir=str(bed.workdir / "data"))
    tayga = TaygaProcess(host, "shared", bed.workdir / "shared", "zt64")
    tayga.start(render(cfg, version))
    netlink.sync_routes(host, {netlink.RouteSpec(prefix, "zt64"), netlink.RouteSpec(str(POOL), "zt64")})
    host.sysctl_set("net.ipv4.ip_forward", "1")
    host.sysctl_set("net.ipv6.conf.all.forwarding", "1")
    host.run(["nft", "-f", "-"], input=(
        "table ip zonectl-test {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n"
        f'  ip saddr {POOL} oifname "{UPLINK}" masquerade\n }}\n}}\n'))
    return tayga


@pytest.fixture
def bed():
    with Testbed.create({"dmz": POD}) as b:
        yield b


def test_tcp_udp_icmp_reach_ipv4_through_nat64(bed: Testbed) -> None:
    tayga = plumb(bed, "fd64:ff9b::/96")
    try:
        target = f"fd64:ff9b::{SERVER_V4}"
        assert bed.probe("dmz", "tcp", target) == str(GATEWAY_V4)  # the server sees the masquerade address
        assert bed.probe("dmz", "udp", target) == str(GATEWAY_V4)
        assert bed.probe("dmz", "ping", target) == "fd64:ff9b::c000:20a"
        assert bed.probe("dmz", "tcp", target, port=9) is None  # nothing listens there: not a false positive
    finally:
        tayga.stop()
    # SIGTERM made Tayga write its dynamic map: the pod got one address from the pool
    (entry,) = read_dynamic_map(bed.workdir / "data")
    assert str(entry.ipv6) == POD and entry.ipv4 in POOL


def test_well_known_prefix_drops_non_global_ipv4(bed: Testbed) -> None:
    tayga = plumb(bed, "64:ff9b::/96")
    try:
        assert bed.probe("dmz", "tcp", f"64:ff9b::{SERVER_V4}", timeout=1.0) is None
    finally:
        tayga.stop()
