"""The gateway's pure parts: config validation, the plan, metrics text, Tayga helpers."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest
import yaml

from zonectl.core.config import parse_config
from zonectl.core.errors import ValidationError
from zonectl.core.rules import compile_objects
from zonectl.core.zones import ZoneRegistry
from promtext import samples
from zonectl.gateway import metrics
from zonectl.gateway.config import MarkSettings, check_zone_egress, parse_gateway
from zonectl.gateway.plan import RouteSpec, RuleSpec, build_plan
from zonectl.gateway.tayga import Backoff, TaygaStatus
from zonectl.gateway.tayga_info import active_mappings, parse_dynamic_map
from zonectl.render.ip6tables import Counter
from zonectl.render.tayga import DEBIAN_12, TaygaVersion

CONFIG = parse_config({"layout": {"cluster": "fd00:10:244::/48"}, "nat64": {"prefix": "fd64:ff9b::/96"}})
ZONES = list(yaml.safe_load_all("""
kind: SecurityZone
metadata: {name: dmz}
spec: {id: 0x2000}
---
kind: SecurityZone
metadata: {name: web}
spec: {id: 0x2100, egress: {pool: 100.64.21.0/24, address: 198.51.100.21}}
---
kind: SecurityZone
metadata: {name: api}
spec: {id: 0x2200, egress: {pool: 100.64.22.0/24, address: 198.51.100.22}}
"""))
POLICY = {"kind": "SecurityZonePolicy", "metadata": {"name": "p", "namespace": "t"}, "spec": {
    "zones": ["dmz", "web"], "priority": 500, "defaultAction": {"egress": "Deny"}, "ingress": [],
    "egress": [{"name": "web", "action": "Allow", "to": [{"nat64": {"cidrs": ["198.51.100.0/24"]}}],
                "ports": [{"protocol": "TCP", "port": 443}]}]}}


def reg(zones=ZONES) -> ZoneRegistry:
    return ZoneRegistry.from_objects(CONFIG.layout, zones)


def plan(gateway: dict | None = None, zones=ZONES, nat64=CONFIG.nat64, version=DEBIAN_12):
    r = reg(zones)
    rules = compile_objects([POLICY], r, nat64)
    return build_plan(parse_gateway({"uplink": "eth1", **(gateway or {})}), nat64, r, rules, version)


def test_config_defaults_and_errors() -> None:
    cfg = parse_gateway({"uplink": "eth1"})
    assert cfg.tayga.pool == IPv4Network("100.64.0.0/24") and cfg.marks.mask == 0xFF0000
    with pytest.raises(ValidationError) as exc:
        parse_gateway({"uplink": "this-name-is-too-long", "tayga": {"pool": "100.64.0.0/31", "typo": 1},
                       "marks": {"mask": "0xf0f0"}, "staticMaps": [{"ipv4": "x", "ipv6": "fd00::1"}],
                       "routing": {"tableBase": 10}, "metrics": {"listen": "nowhere"}, "bogus": True})
    msg = str(exc.value)
    for path in ("gateway.uplink", "gateway.tayga.pool", "gateway.tayga: unknown field(s) typo", "gateway.marks.mask",
                 "gateway.staticMaps[0].ipv4", "gateway.routing.tableBase", "gateway.metrics.listen",
                 "gateway: unknown field(s) bogus"):
        assert path in msg, path


def test_mark_settings() -> None:
    m = MarkSettings(0x00FF0000)
    assert (m.shift, m.capacity, m.value(0), m.value(1)) == (16, 255, 0x10000, 0x20000)
    assert MarkSettings(0x3).capacity == 3


def test_zone_pools_must_be_disjoint_and_fit_the_marks() -> None:
    overlapping = [dict(z) for z in ZONES]
    overlapping[2] = {**ZONES[2], "spec": {"id": 0x2200, "egress": {"pool": "100.64.21.128/25", "address": "198.51.100.22"}}}
    with pytest.raises(ValidationError, match="100.64.21.128/25 overlaps 100.64.21.0/24 of zone web"):
        check_zone_egress(parse_gateway({"uplink": "eth1"}), reg(overlapping))
    with pytest.raises(ValidationError, match="room for 1 own-pool zones, 2 zones"):
        check_zone_egress(parse_gateway({"uplink": "eth1", "marks": {"mask": 1}}), reg())
    inside = [ZONES[0], {**ZONES[1], "spec": {"id": 0x2100, "egress": {"pool": "100.64.21.0/24", "address": "100.64.21.9"}}}]
    with pytest.raises(ValidationError, match="100.64.21.9 is inside the zone's own pool 100.64.21.0/24"):
        reg(inside)
    shared = [ZONES[0], {**ZONES[1], "spec": {"id": 0x2100, "egress": {"pool": "100.64.21.0/24", "address": "100.64.0.9"}}}]
    with pytest.raises(ValidationError, match="inside a Tayga pool"):
        check_zone_egress(parse_gateway({"uplink": "eth1"}), reg(shared))


def test_plan_per_zone_egress() -> None:
    p = plan()
    assert [(i.name, i.tun, str(i.pool), i.mark, i.table) for i in p.instances] == [
        ("shared", "zt64", "100.64.0.0/24", None, None),
        ("web", "zt64-2100", "100.64.21.0/24", 0x10000, 4200),
        ("api", "zt64-2200", "100.64.22.0/24", 0x20000, 4201),
    ]
    web = p.instance("web")
    assert web.snat_to == IPv4Address("198.51.100.21") and "dynamic-pool 100.64.21.0/24" in web.conf_text
    assert RouteSpec("fd64:ff9b::/96", "zt64-2100", web.table) in p.routes
    assert RouteSpec("100.64.21.0/24", "zt64-2100") in p.routes
    assert p.policy_rules == {RuleSpec(4200, 0x10000, 0xFF0000, 4200), RuleSpec(4201, 0x20000, 0xFF0000, 4201)}
    assert "198.51.100.21/32" in p.uplink_addresses
    assert "snat to 198.51.100.21" in p.nat_text and "masquerade" in p.nat_text
    assert "zone=web egress=own-pool\" -j MARK --set-xmark 0x10000/0xff0000" in p.ip6tables_text()
    assert "zone=api egress=own-pool\" -j MARK --set-xmark 0x20000/0xff0000" in p.ip6tables_text()
    # same inputs, same plan (what makes a re-apply a no-op)
    assert plan() == p


def test_plan_with_several_instances_per_pool() -> None:
    """Slices of each pool, one TUN each, an ECMP route of the prefix per pool, the hash sysctls; the NAT
    stays per pool (a zone leaves from its one address); static maps in every shared instance."""
    maps = [{"ipv4": "198.51.100.80", "ipv6": "fd00:10:96::80"}]
    p = plan({"tayga": {"instances": 3, "zoneInstances": 2}, "staticMaps": maps})
    assert [(i.name, i.tun, str(i.pool)) for i in p.instances if i.zone in (None, "web")] == [
        ("shared", "zt64", "100.64.0.0/26"), ("shared.1", "zt64.1", "100.64.0.64/26"),
        ("shared.2", "zt64.2", "100.64.0.128/26"),
        ("web", "zt64-2100", "100.64.21.0/25"), ("web.1", "zt64-2100.1", "100.64.21.128/25")]
    assert all("map 198.51.100.80 fd00:10:96::80" in i.conf_text for i in p.instances if i.zone is None)
    assert RouteSpec("fd64:ff9b::/96", "", 254, "fe80::64", ("zt64", "zt64.1", "zt64.2")) in p.routes
    assert RouteSpec("fd64:ff9b::/96", "", 4200, "fe80::64", ("zt64-2100", "zt64-2100.1")) in p.routes
    assert RouteSpec("100.64.0.64/26", "zt64.1") in p.routes and RouteSpec("198.51.100.80/32", "zt64") in p.routes
    assert ("net.ipv6.fib_multipath_hash_policy", "3") in p.sysctls
    assert p.nat_text.count("masquerade") == 1 and p.nat_text.count("snat to 198.51.100.21") == 1
    assert ("net.ipv6.fib_multipath_hash_fields", "55") in plan({"tayga": {"instances": 2, "hash": "flow"}}).sysctls
    assert not [k for k, _ in plan().sysctls if "multipath" in k]  # one instance: the host's hashing is left alone
    with pytest.raises(ValidationError, match=r"gateway.tayga.instances: 8 instances need slices of 100.64.0.0/28"):
        plan({"tayga": {"pool": "100.64.0.0/28", "instances": 8}})
    with pytest.raises(ValidationError, match=r"gateway.tayga.tun: 'zt64abcdef-2100.1' \(instance web.1\) is longer"):
        plan({"tayga": {"tun": "zt64abcdef", "zoneInstances": 2}})


def test_plan_refuses_wkpf_with_private_destination() -> None:
    from zonectl.core.nat64 import Nat64Prefix

    wkpf = Nat64Prefix.parse("64:ff9b::/96")
    with pytest.raises(ValidationError, match=r"tayga\[shared\]\.prefix: .*198.51.100.0/24"):
        plan(nat64=wkpf)


def test_plan_needs_ipv6_addr_for_private_pool_behind_wkpf() -> None:
    from zonectl.core.nat64 import Nat64Prefix

    wkpf = Nat64Prefix.parse("64:ff9b::/96")
    no_dest = {**POLICY, "spec": {**POLICY["spec"], "egress": []}}
    r = reg()
    args = (wkpf, r, compile_objects([no_dest], r, wkpf), DEBIAN_12)
    with pytest.raises(ValidationError, match=r"tayga\[shared\]\.ipv6-addr: is required"):
        build_plan(parse_gateway({"uplink": "eth1", "tayga": {"pool": "192.0.2.0/24"}}), *args)
    ok = build_plan(parse_gateway({"uplink": "eth1", "tayga": {"pool": "192.0.2.0/24", "ipv6Address": "fd42::1"}}), *args)
    assert "ipv6-addr fd42::1" in ok.instance("shared").conf_text
    assert "For TAYGA 0.9.6" in plan(version=TaygaVersion(0, 9, 6)).instance("shared").conf_text


def test_metrics_text() -> None:
    counters = [Counter("ZONECTL-Z-dmz", "zonectl rule=r1 zone=dmz action=allow", 10, 1000),
                Counter("ZONECTL-Z-dmz", "zonectl zone=dmz action=deny closed", 2, 120),
                Counter("ZONECTL-FWD", "zonectl zone=- action=deny fail-closed", 3, 180)]
    taygas = [TaygaStatus("shared", True, 42, 1, 5, 3, None, "")]
    text = metrics.render(counters, taygas, metrics.ApplyStats(applies_ok=2, rules=7), zones=["dmz", "web"])
    values = samples(text)
    assert values['zonectl_gateway_packets_total{zone="dmz",action="allow"}'] == 10
    assert values['zonectl_gateway_bytes_total{zone="dmz",action="deny"}'] == 120
    assert values['zonectl_gateway_packets_total{zone="web",action="allow"}'] == 0  # known zones always listed
    assert values['zonectl_gateway_packets_total{zone="-",action="deny"}'] == 3
    assert values['zonectl_tayga_restarts_total{instance="shared"}'] == 1
    assert values['zonectl_tayga_active_mappings{instance="shared"}'] == 3
    assert values["zonectl_gateway_rules"] == 7
    for line in text.splitlines():  # every sample line is NAME{labels} VALUE
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_dynamic_map_parsing() -> None:
    text = "###\n### TAYGA dynamic map database\n100.64.0.123\tfd00:10:244:2:2000::5\t1000\nbogus line\n" \
           "100.64.0.9\tfd00::9\t9000\n"
    entries = parse_dynamic_map(text)
    assert [(str(e.ipv4), e.last_use) for e in entries] == [("100.64.0.123", 1000), ("100.64.0.9", 9000)]
    assert entries[0].ipv6 == IPv6Address("fd00:10:244:2:2000::5")
    assert active_mappings(entries, now=9000 + 60) == 1


def test_backoff_doubles_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=4, stable_s=30)
    assert [b.delay(1) for _ in range(5)] == [0.5, 1.0, 2.0, 4, 4]
    assert b.delay(60) == 0.5  # it had been up long enough: start over


def test_version_from_help_text_of_newer_tayga(tmp_path) -> None:
    """0.9.4+ names its version in --help (0.9.2 does not; tests/netns checks the real 0.9.2 binary)."""
    from zonectl.gateway.tayga_info import detect_version

    fake = tmp_path / "tayga"
    fake.write_text("#!/bin/sh\necho 'TAYGA version 0.9.6' >&2\necho 'Usage:' >&2\nexit 1\n")
    fake.chmod(0o755)
    assert detect_version(str(fake)) == TaygaVersion(0, 9, 6)
    assert "offlink-mtu" in detect_version(str(fake)).directives
