"""What the renderer claims about Tayga, checked against the installed binary.

Each refused config is rendered without validation and handed to the real Tayga (``--rmtun`` on a
throwaway TUN name parses the whole file and exits): it must refuse it too, for the same reason. And
each config the renderer accepts, Tayga must accept.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from zonectl.core.errors import ValidationError
from zonectl.gateway.host import Host
from zonectl.gateway.tayga import TaygaProcess
from zonectl.gateway.tayga_info import TaygaError, detect_version
from zonectl.harness.netns import Netns
from zonectl.render.tayga import TaygaConfig, render, validate

BASE = TaygaConfig("zt64", IPv4Address("100.64.0.1"), IPv6Network("fd64:ff9b::/96"),
                   dynamic_pool=IPv4Network("100.64.0.0/24"))

REFUSED = {
    "unknown-directive": (replace(BASE, wkpf_strict=False), "Unknown directive"),
    "wkpf-private-ipv4-addr": (replace(BASE, prefix=IPv6Network("64:ff9b::/96"), ipv4_addr=IPv4Address("192.0.2.1"),
                                       dynamic_pool=IPv4Network("192.0.2.0/24")), "ipv6-addr directive must be specified"),
    "local-use-prefix": (replace(BASE, prefix=IPv6Network("64:ff9b:1::/48"), ipv6_addr=IPv6Address("fd42::1")),
                         "reserved address"),
    "prefix-length": (replace(BASE, prefix=IPv6Network("fd64:ff9b::/80")), "NAT prefix length"),
    "ipv6-addr-in-wkpf": (replace(BASE, ipv6_addr=IPv6Address("64:ff9b::1")), "Well-Known Prefix"),
    "ipv6-addr-in-prefix": (replace(BASE, ipv6_addr=IPv6Address("fd64:ff9b::5")), "cannot reside within"),
    "pool-too-long": (replace(BASE, dynamic_pool=IPv4Network("100.64.0.0/32")), "longer than /31"),
}
ACCEPTED = {
    "network-specific": BASE,
    "wkpf-cgnat-ipv4-addr": replace(BASE, prefix=IPv6Network("64:ff9b::/96")),
    "wkpf-private-with-ipv6-addr": replace(BASE, prefix=IPv6Network("64:ff9b::/96"), ipv4_addr=IPv4Address("192.0.2.1"),
                                           ipv6_addr=IPv6Address("fd42::1"), dynamic_pool=IPv4Network("192.0.2.0/24")),
}


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    ns = Netns.create("zttc")
    try:
        host = Host(ns.name)
        yield TaygaProcess(host, "check", tmp_path_factory.mktemp("tayga-check"), "zt64"), detect_version("tayga", host)
    finally:
        ns.close()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_tayga_refuses_what_the_renderer_refuses(probe, name: str) -> None:
    proc, version = probe
    cfg, tayga_says = REFUSED[name]
    if name == "local-use-prefix" and version.accepts_local_use_prefix:
        pytest.skip(f"Tayga {version} accepts the local-use prefix")
    with pytest.raises(ValidationError):
        validate(cfg, version)
    with pytest.raises(TaygaError, match=tayga_says):
        proc.check_config(render(cfg, version, check=False))


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_tayga_accepts_what_the_renderer_accepts(probe, name: str) -> None:
    proc, version = probe
    proc.check_config(render(ACCEPTED[name], version))


def test_check_leaves_no_device_behind(probe) -> None:
    proc, version = probe
    proc.check_config(render(BASE, version))
    out = proc.host.run(["ip", "-o", "link"]).stdout
    assert "ztchk" not in out


def test_version_detected() -> None:
    assert str(detect_version()).startswith("0.9.")
