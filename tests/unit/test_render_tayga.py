"""tayga.conf rendering: directives per Tayga version, and the combinations Tayga refuses (with a fix)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from golden_gw import assert_golden
from zonectl.core.errors import ValidationError
from zonectl.render.tayga import (
    DEBIAN_12, StaticMap, TaygaConfig, TaygaVersion, render, unsupported_directives, validate,
)

V096 = TaygaVersion(0, 9, 6)
BASE = TaygaConfig(
    tun_device="zt64",
    ipv4_addr=IPv4Address("100.64.0.1"),
    prefix=IPv6Network("fd64:ff9b::/96"),
    dynamic_pool=IPv4Network("100.64.0.0/24"),
    data_dir="/var/lib/zonectl/tayga/shared",
    maps=(StaticMap(IPv4Address("198.51.100.80"), IPv6Address("fd00:10:96::80")),),
    comment="instance shared",
)


def errors(cfg: TaygaConfig, version: TaygaVersion = DEBIAN_12) -> str:
    with pytest.raises(ValidationError) as exc:
        validate(cfg, version)
    return str(exc.value)


def test_golden_debian_092() -> None:
    assert_golden("tayga-0.9.2.conf", render(BASE, DEBIAN_12))


def test_golden_096_with_new_directives() -> None:
    cfg = replace(BASE, wkpf_strict=True, udp_cksum_mode="calc", log=("drop", "dyn"), offlink_mtu=1400)
    assert_golden("tayga-0.9.6.conf", render(cfg, V096))


@pytest.mark.parametrize("field,value,directive", [
    ("wkpf_strict", False, "wkpf-strict"),
    ("udp_cksum_mode", "drop", "udp-cksum-mode"),
    ("log", ("drop",), "log"),
    ("offlink_mtu", 1400, "offlink-mtu"),
])
def test_newer_directives_refused_for_092(field: str, value: object, directive: str) -> None:
    msg = errors(replace(BASE, **{field: value}))
    assert directive in msg and "0.9.2 aborts on an unknown directive" in msg


def test_version_parsing_and_directives() -> None:
    assert TaygaVersion.parse("0.9.2") == DEBIAN_12
    assert TaygaVersion.parse("0.9.6-rc1") == V096
    assert "offlink-mtu" not in TaygaVersion.parse("0.9.5").directives
    assert "wkpf-strict" in TaygaVersion.parse("0.9.4").directives
    assert unsupported_directives("tun-device x\nwkpf-strict on # c\n# log drop\n", DEBIAN_12) == ["wkpf-strict"]
    with pytest.raises(ValueError):
        TaygaVersion.parse("latest")


def test_wkpf_with_private_destinations_is_refused_with_a_fix() -> None:
    cfg = replace(BASE, prefix=IPv6Network("64:ff9b::/96"), maps=(),
                  ipv4_destinations=(IPv4Network("203.0.113.0/24"), IPv4Network("8.8.8.0/24")))
    msg = errors(cfg)
    assert "203.0.113.0/24" in msg and "8.8.8.0/24" not in msg
    assert "fd64:ff9b::/96" in msg
    assert "64:ff9b:1::/48 needs Tayga >= 0.9.4" in msg  # the 0.9.2 binary calls it reserved
    # a global destination is fine behind the well-known prefix
    validate(replace(cfg, ipv4_destinations=(IPv4Network("8.8.8.0/24"),)))


def test_wkpf_with_rfc1918_ipv4_addr_needs_ipv6_addr() -> None:
    cfg = replace(BASE, prefix=IPv6Network("64:ff9b::/96"), ipv4_addr=IPv4Address("192.0.2.1"),
                  dynamic_pool=IPv4Network("192.0.2.0/24"), maps=())
    msg = errors(cfg)
    assert "ipv6-addr: is required" in msg and "non-global" in msg
    validate(replace(cfg, ipv6_addr=IPv6Address("fd42::1")))
    # 100.64.0.0/10 is global to 0.9.2 but not to 0.9.4+ (which added RFC 6598 to its list)
    cgn = replace(cfg, ipv4_addr=IPv4Address("100.64.0.1"), dynamic_pool=IPv4Network("100.64.0.0/24"))
    validate(cgn, DEBIAN_12)
    assert "non-global" in errors(cgn, V096)
    validate(replace(cgn, wkpf_strict=False), V096)  # 0.9.4+ can lift the restriction


def test_local_use_prefix_depends_on_version() -> None:
    cfg = replace(BASE, prefix=IPv6Network("64:ff9b:1::/48"), ipv6_addr=IPv6Address("fd42::1"))
    assert "reserved address to Tayga 0.9.2" in errors(cfg)
    validate(cfg, V096)


@pytest.mark.parametrize("change,expected", [
    ({"prefix": IPv6Network("fd64:ff9b::/80")}, "only /32, /40, /48, /56, /64 or /96"),
    ({"dynamic_pool": IPv4Network("100.64.0.7/32")}, "/31 or shorter"),
    ({"ipv6_addr": IPv6Address("fd64:ff9b::5")}, "inside the NAT64 prefix"),
    ({"ipv6_addr": IPv6Address("64:ff9b::5")}, "well-known prefix"),
    ({"ipv4_addr": IPv4Address("127.0.0.1")}, "reserved"),
    ({"tun_device": "a-name-far-too-long"}, "not a valid interface name"),
    ({"data_dir": "relative/dir"}, "absolute path"),
    ({"maps": (StaticMap(IPv4Address("100.64.0.1"), IPv6Address("fd00::1")),)}, "Tayga's own address"),
    ({"maps": (StaticMap(IPv4Address("192.0.2.1"), IPv6Address("fd64:ff9b::1")),)}, "overlaps the NAT64 prefix"),
    ({"prefix": None}, "ipv6-addr: is required when no NAT64 prefix"),
])
def test_refusals(change: dict, expected: str) -> None:
    assert expected in errors(replace(BASE, **change))


def test_every_problem_is_reported_at_once() -> None:
    msg = errors(replace(BASE, tun_device="", offlink_mtu=1400, dynamic_pool=IPv4Network("100.64.0.0/32")))
    assert "tun-device" in msg and "offlink-mtu" in msg and "dynamic-pool" in msg
