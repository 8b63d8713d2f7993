"""Any value in any field of a policy, zone or config document: a one-line ValidationError or success.

Hypothesis puts an arbitrary JSON-like value (null, booleans, huge integers, NaN, infinities, strings
with newlines, quotes, non-ASCII or 10,000 characters, lists, objects with non-string keys) at a random
place of a valid document - replacing a value, or adding a key - and runs the real parser. Whatever it
does, the parser either succeeds or raises a ValidationError whose message is one line; no other
exception. Documents that parse are compiled and rendered for every target, which must hold the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docedits import mutated, paths
from zonectl.core.config import parse_config
from zonectl.core.errors import ValidationError
from zonectl.core.rules import compile_objects
from zonectl.core.zones import ZoneRegistry, parse_zone
from zonectl.gateway.config import check_zone_egress, parse_gateway
from zonectl.operator.config import parse_operator
from zonectl.render import export, ip6tables, nftables, ovn_match
from zonectl.render.coredns import parse_dns, render_configmap
from zonectl.render.ir import render_ir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONFIG = parse_config(yaml.safe_load((EXAMPLES / "config.yaml").read_text()))
ZONE_DOCS = [d for d in yaml.safe_load_all((EXAMPLES / "zones.yaml").read_text()) if d]
POLICY_DOCS = [d for d in yaml.safe_load_all((EXAMPLES / "policies.yaml").read_text()) if d]
REGISTRY = ZoneRegistry.from_objects(CONFIG.layout, ZONE_DOCS)
RICH_POLICY = {
    "apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
    "metadata": {"name": "rich", "namespace": "ns", "generation": 2},
    "spec": {"zones": ["web", "db"], "priority": 10, "description": "d", "defaultAction": {"ingress": "Deny", "egress": "Allow"},
             "ingress": [{"name": "a", "action": "Deny", "from": [{"zone": "dmz", "scope": "Datacenter"}, {"cidr": "2001:db8::/32"}],
                          "ports": [{"protocol": "TCP", "port": 1, "endPort": 2}, {"protocol": "ICMPv6", "icmpType": 1}]}],
             "egress": [{"action": "Allow", "to": [{"nat64": {"cidrs": ["192.0.2.0/24"]}}, {"nat64": {"any": True}}],
                         "ports": [{"protocol": "UDP", "any": True}, {"protocol": "SCTP", "port": 9}]},
                        {"action": "Allow", "to": [{"any": True}], "ports": [{"protocol": "Any"}]}]}}
FULL_CONFIG = {
    "apiVersion": "zonectl.io/v1alpha1", "kind": "ZonectlConfig",
    "layout": {"cluster": "fd00:10:244::/48", "nodePrefixLength": 64, "zoneField": {"offset": 64, "width": 16},
               "datacenter": "fd00:10:200::/40", "ipamBits": 16},
    "nat64": {"prefix": "fd64:ff9b::/96", "enabled": True},
    "dns": {"clusterDomain": "cluster.local", "upstreams": ["/etc/resolv.conf", "192.0.2.53:53", "tls://[2001:db8::53]"],
            "nativeZones": ["corp.example"], "translateAll": True, "cacheSeconds": 30, "namespace": "kube-system",
            "configMap": "coredns"},
    "gateway": {"uplink": "eth1", "stateDir": "/var/lib/zonectl/gateway",
                "tayga": {"binary": "tayga", "version": "0.9.2", "tun": "zt64", "pool": "100.64.0.0/24",
                          "ipv4Address": "100.64.0.1", "ipv6Address": "fd42::1"},
                "staticMaps": [{"ipv4": "198.51.100.80", "ipv6": "fd00:10:96::80"}], "destinations": ["192.0.2.0/24"],
                "marks": {"mask": "0x00ff0000"}, "routing": {"tableBase": 4200, "rulePriority": 4200},
                "metrics": {"listen": "[::1]:9464"}, "restart": {"initialDelay": 0.2, "maxDelay": 30}},
    "operator": {"labelKey": "securityZone", "spoofedHint": "deny", "adminNamespaces": ["zonectl-system"],
                 "tenantPriorityFloor": 100, "resyncSeconds": 300, "webhook": {"port": 8443, "insecure": False},
                 "metrics": {"port": 9090}, "gateway": {"configMap": "zonectl-gateway-rules"}},
}
STRINGS = ["", " ", "\n", "a\nb", "x\"y", "Allow", "Deny", "TCP", "Any", "web", "0x2000", "::/0", "::/::", "0.0.0.0/0",
           "fd00::%eth0\n-A INPUT -j ACCEPT/64", "198.51.100.0/24", "fd00:10:244::/48", "-1", "nan", "ü", "𝔘", "x" * 10_000,
           "/", "/etc", "127.0.0.1", "[::]:99999", "1e999"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.sampled_from([10**100, -(10**100), 2**63, 0, 1, 65536])
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30) | st.sampled_from(STRINGS))
JSON_LIKE = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.text(max_size=8) | st.integers(0, 3), inner, max_size=3), max_leaves=8)


def one_line(exc: ValidationError) -> None:
    assert "\n" not in str(exc) and "\r" not in str(exc), str(exc)
    assert all(str(p).isprintable() for p in exc.problems), exc.problems


def render_everything(ruleset, registry) -> None:
    render_ir(ruleset)
    ovn_match.render_ruleset(ruleset, ovn_match.AclSettings())
    zones = tuple(ip6tables.ZoneMatch(z.name, registry.layout.zone_match(z.id)) for z in registry)
    ip6tables.render_restore(ruleset.for_gateway(), CONFIG.nat64.match(), zones)
    nftables.render_filter(ruleset.for_gateway(), CONFIG.nat64.match(), zones)


def mutation(doc: Any):
    return st.tuples(st.sampled_from(paths(doc)), JSON_LIKE, st.none() | st.text(max_size=8) | st.integers(0, 2))


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("base", POLICY_DOCS + [RICH_POLICY], ids=lambda d: d["metadata"]["name"])
@PROPERTY
@given(data=st.data())
def test_any_value_in_a_policy(base: dict, data) -> None:
    path, value, key = data.draw(mutation(base))
    doc = mutated(base, path, value, key)
    try:
        ruleset = compile_objects([doc], REGISTRY, CONFIG.nat64)
    except ValidationError as exc:
        one_line(exc)
        return
    render_everything(ruleset, REGISTRY)


@pytest.mark.parametrize("base", ZONE_DOCS, ids=lambda d: d["metadata"]["name"])
@PROPERTY
@given(data=st.data())
def test_any_value_in_a_zone(base: dict, data) -> None:
    path, value, key = data.draw(mutation(base))
    doc = mutated(base, path, value, key)
    try:
        zone = parse_zone(doc, CONFIG.layout)
        registry = REGISTRY.with_zone(zone)
        check_zone_egress(parse_gateway({"uplink": "eth1"}), registry)
        data_ = export.build(registry, nodes=["fd00:10:244:1::/64"])
        for fmt in export.FORMATS:
            export.render(fmt, data_)
        zone.allows_namespace("web-apps", {"zonectl.io/zone-dmz": "allowed"})
    except ValidationError as exc:
        one_line(exc)


@PROPERTY
@given(data=st.data())
def test_any_value_in_a_config(data) -> None:
    path, value, key = data.draw(mutation(FULL_CONFIG))
    doc = mutated(FULL_CONFIG, path, value, key)
    try:
        cfg = parse_config(doc)
        dns = parse_dns(cfg.section("dns"))
        if cfg.nat64 is not None:
            render_configmap(cfg.nat64, dns)
        parse_gateway(cfg.section("gateway"))
        parse_operator(cfg.section("operator"))
        ZoneRegistry.from_objects(cfg.layout, ZONE_DOCS)
    except ValidationError as exc:
        one_line(exc)


def test_the_bases_are_valid() -> None:
    """The property tests start from documents that pass, so their mutations test the parsers' edges."""
    cfg = parse_config(FULL_CONFIG)
    parse_dns(cfg.section("dns")), parse_gateway(cfg.section("gateway")), parse_operator(cfg.section("operator"))
    render_everything(compile_objects(POLICY_DOCS + [RICH_POLICY], REGISTRY, CONFIG.nat64), REGISTRY)
    assert json.dumps(FULL_CONFIG)  # plain JSON: what a ConfigMap can carry
