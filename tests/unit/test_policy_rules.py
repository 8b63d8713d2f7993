"""SecurityZonePolicy validation (field paths) and compilation to the rule IR."""

from __future__ import annotations

import copy

import pytest

from zonectl.core.config import parse_config
from zonectl.core.errors import ValidationError
from zonectl.core.layout import AddrMatch
from zonectl.core.policy import parse_policy
from zonectl.core.rules import compile_objects, compile_policies, compile_policy

DMZ = "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::"
WEB = "fd00:10:244:0:2100::/ffff:ffff:ffff:0:ffff::"
DB = "fd00:10:244:0:3000::/ffff:ffff:ffff:0:ffff::"


def policy(spec: dict, name: str = "p", namespace: str = "zonectl-system") -> dict:
    return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
            "metadata": {"name": name, "namespace": namespace, "generation": 3}, "spec": spec}


@pytest.fixture
def compile_one(example_zones, example_config):
    def run(spec: dict):
        return compile_policy(parse_policy(policy(spec), example_zones), example_zones, example_config.nat64)
    return run


def test_examples_compile(example_zones, example_config, example_policy_bodies) -> None:
    rs = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
    assert rs.policies == ("zonectl-system/dmz", "zonectl-system/web", "zonectl-system/db")
    web_to_db = [r for r in rs if r.policy == "zonectl-system/web" and r.name == "to-db"]
    assert len(web_to_db) == 1
    r = web_to_db[0]
    assert (r.direction, r.action, r.src.text, r.dst.text, r.protocol, r.port_min) == ("egress", "allow", WEB, DB, "tcp", 5432)
    # datacenter scope: the value keeps only the /40 bits
    from_dmz = [r for r in rs if r.name == "from-dmz"]
    assert {r.src.text for r in from_dmz} == {"fd00:10:200:0:2000::/ffff:ffff:ff00:0:ffff::"}
    assert {(r.port_min, r.port_max) for r in from_dmz} == {(8080, 8080), (8443, 8444)}
    # every zone is fail-closed both ways
    defaults = {(r.zone, r.direction, r.action) for r in rs if r.is_default}
    assert defaults == {(z, d, "deny") for z in ("dmz", "web", "db") for d in ("ingress", "egress")}
    # the gateway gets the NAT64-bound egress rules, including the defaults
    gw = rs.for_gateway()
    assert {r.zone for r in gw if not r.is_default} == {"dmz", "web"}
    assert all(r.dst is None or r.dst.text.startswith("fd64:ff9b::") for r in gw)


def test_ids_are_stable_and_content_addressed(example_zones, example_config, example_policy_bodies) -> None:
    a = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
    b = compile_objects(copy.deepcopy(example_policy_bodies), example_zones, example_config.nat64)
    assert a.ids == b.ids and len(a.ids) == len(a)
    changed = copy.deepcopy(example_policy_bodies)
    changed[1]["spec"]["egress"][0]["ports"][0]["port"] = 5433
    c = compile_objects(changed, example_zones, example_config.nat64)
    assert len(a.ids - c.ids) == 1 and len(c.ids - a.ids) == 1  # exactly one rule replaced
    assert a.for_policy("zonectl-system/dmz") == c.for_policy("zonectl-system/dmz")


def test_order_priority_position_and_deny_first(compile_one) -> None:
    rules = compile_one({
        "zones": ["db"], "priority": 10,
        "ingress": [
            {"action": "Allow", "from": [{"zone": "web"}]},
            {"action": "Deny", "from": [{"zone": "dmz"}]},
        ],
        "defaultAction": {"ingress": "Deny", "egress": "Allow"},
    })
    orders = {(r.name, r.action): r.order for r in rules}
    assert orders[("ingress-0", "allow")] < orders[("ingress-1", "deny")]
    assert orders[("default-ingress", "deny")] < orders[("default-egress", "allow")]
    assert max(o for (n, _), o in orders.items() if not n.startswith("default")) < orders[("default-ingress", "deny")]


def test_two_policies_same_priority_deny_wins_tie(example_zones, example_config) -> None:
    allow = parse_policy(policy({"zones": ["db"], "ingress": [{"action": "Allow", "from": [{"zone": "web"}]}]}, "a"), example_zones)
    deny = parse_policy(policy({"zones": ["db"], "ingress": [{"action": "Deny", "from": [{"zone": "web"}]}]}, "b"), example_zones)
    rs = compile_policies([allow, deny], example_zones, example_config.nat64)
    assert rs.rules[0].action == "deny"


def test_nat64_peer_any_ipv4(compile_one) -> None:
    rules = compile_one({"zones": ["dmz"], "egress": [{"action": "Allow", "to": [{"nat64": {}}]}]})
    assert [r.dst.cidr_or_mask for r in rules] == ["fd64:ff9b::/96"] and rules[0].nat64


def test_cidr_peer_with_wildcard_mask_and_dedup(compile_one) -> None:
    rules = compile_one({"zones": ["dmz"], "egress": [{"action": "Allow", "to": [
        {"cidr": "2001:db8::/ffff:ffff:0:ffff::"}, {"cidr": "2001:db8::/ffff:ffff:0:ffff::"}]}]})
    assert len(rules) == 1 and rules[0].dst.prefixlen is None and not rules[0].nat64


BAD = [
    ({"zones": []}, "spec.zones: must list at least one zone"),
    ({"zones": ["nope"], "defaultAction": {"ingress": "Deny"}}, "spec.zones[0]: unknown zone 'nope' (known zones: db, dmz, web)"),
    ({"zones": ["dmz"]}, "it would do nothing"),
    ({"zones": ["dmz"], "priority": 5000, "defaultAction": {"egress": "Deny"}}, "spec.priority: 5000 must be an integer from 0 to 999"),
    ({"zones": ["dmz"], "defaultAction": {"egress": "Block"}}, "spec.defaultAction.egress: 'Block' is not one of Allow, Deny"),
    ({"zones": ["dmz"], "egress": [{"action": "Allow", "to": [{"zone": "dbx"}]}]}, "spec.egress[0].to[0].zone: unknown zone 'dbx'"),
    ({"zones": ["dmz"], "egress": [{"action": "Allow", "from": [{"zone": "db"}]}]}, "spec.egress[0]: unknown field(s) from (an egress rule uses 'to')"),
    ({"zones": ["dmz"], "egress": [{"to": [{"zone": "db"}]}]}, "spec.egress[0].action: is required"),
    ({"zones": ["dmz"], "ingress": [{"action": "Allow", "ports": [{"protocol": "TCP", "port": 0}]}]}, "spec.ingress[0].ports[0].port: 0 must be an integer from 1 to 65535"),
    ({"zones": ["dmz"], "ingress": [{"action": "Allow", "ports": [{"protocol": "TCP", "port": 90, "endPort": 80}]}]}, "spec.ingress[0].ports[0].endPort: 80 is lower than port 90"),
    ({"zones": ["dmz"], "ingress": [{"action": "Allow", "ports": [{"protocol": "ICMP"}]}]}, "spec.ingress[0].ports[0].protocol: 'ICMP' is not one of TCP, UDP, SCTP, ICMPv6"),
    ({"zones": ["dmz"], "ingress": [{"action": "Allow", "ports": [{"protocol": "ICMPv6", "port": 1}]}]}, "spec.ingress[0].ports[0]: ICMPv6 has no ports"),
    ({"zones": ["dmz"], "ingress": [{"action": "Allow", "from": [{"cidr": "10.0.0.0/8"}]}]}, "use nat64: {cidrs: [...]}"),
    ({"zones": ["dmz"], "ingress": [{"action": "Allow", "from": [{"cidr": "2001:db8::1/32"}]}]}, "has bits set outside its mask; did you mean 2001:db8::/32?"),
    ({"zones": ["dmz"], "ingress": [{"action": "Allow", "from": [{"cidr": "2001:db8::/32", "zone": "db"}]}]}, "needs exactly one of zone, cidr, nat64"),
    ({"zones": ["dmz"], "egress": [{"action": "Allow", "to": [{"nat64": {"cidrs": ["198.51.100.0/33"]}}]}]}, "spec.egress[0].to[0].nat64.cidrs[0]"),
    ({"zones": ["dmz"], "egress": [{"action": "Allow", "to": [{"cidr": "2001:db8::/32", "scope": "Cluster"}]}]}, "spec.egress[0].to[0].scope: only applies to zone peers"),
    ({"zones": ["dmz"], "egress": [{"name": "a", "action": "Allow"}, {"name": "a", "action": "Deny"}]}, "rule name 'a' is used twice"),
    ({"zones": ["dmz"], "egress": [{"action": "Allow", "to": []}]}, "is empty; omit it to mean any peer"),
    ({"zones": ["dmz"], "egres": []}, "spec: unknown field(s) egres"),
]


@pytest.mark.parametrize("spec, message", BAD)
def test_bad_policies_name_field_and_reason(example_zones, spec: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_policy(policy(spec), example_zones)
    assert message in str(err.value)
    assert "SecurityZonePolicy zonectl-system/p" in str(err.value)


def test_compile_set_is_all_or_nothing(example_zones, example_config, example_policy_bodies) -> None:
    broken = copy.deepcopy(example_policy_bodies) + [policy({"zones": ["ghost"], "defaultAction": {"ingress": "Deny"}}, "bad")]
    with pytest.raises(ValidationError) as err:
        compile_objects(broken, example_zones, example_config.nat64)
    assert "zonectl-system/bad" in str(err.value)


def test_datacenter_scope_needs_datacenter(example_zones) -> None:
    cfg = parse_config({"layout": {"cluster": "fd00:10:244::/48"}})
    from zonectl.core.zones import ZoneRegistry
    reg = ZoneRegistry(cfg.layout, example_zones.zones)
    with pytest.raises(ValidationError, match="Datacenter scope needs a datacenter prefix"):
        parse_policy(policy({"zones": ["web"], "ingress": [{"action": "Allow", "from": [{"zone": "dmz", "scope": "Datacenter"}]}]}), reg)


def test_nat64_peer_without_prefix(example_zones) -> None:
    pol = parse_policy(policy({"zones": ["dmz"], "egress": [{"action": "Allow", "to": [{"nat64": {}}]}]}), example_zones)
    with pytest.raises(ValidationError, match=r"spec.egress\[0\].to\[0\]: nat64 peers need a NAT64 prefix"):
        compile_policy(pol, example_zones, None)


@pytest.mark.parametrize("body, message", [
    ({"layout": {}}, "layout.cluster: is required"),
    ({"layout": {"cluster": "fd00:10:244::/48", "zoneField": {"offset": 48}}}, "overlaps the node prefix"),
    ({"layout": {"cluster": "fd00:10:244::/48"}, "nat64": {"prefix": "fd00:10:244:1::/96"}}, "overlaps the cluster prefix"),
    ({"layout": {"cluster": "fd00:10:244::/48"}, "gatway": {}}, "unknown section(s) gatway"),
])
def test_bad_config(body: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_config(body)
    assert message in str(err.value)


def test_rule_matches_real_addresses(example_zones, example_config, example_policy_bodies) -> None:
    """The compiled masks select the pod addresses the layout encodes, and nothing of another zone."""
    rs = compile_objects(example_policy_bodies, example_zones, example_config.nat64)
    layout = example_config.layout
    web_pod = layout.encode("fd00:10:244:7::/64", 0x2100, 0x42)
    db_pod = layout.encode("fd00:10:244:9::/64", 0x3000, 0x9)
    rule = next(r for r in rs if r.name == "to-db")
    assert rule.src.matches(web_pod) and rule.dst.matches(db_pod)
    assert not rule.src.matches(db_pod)
    assert isinstance(rule.src, AddrMatch)
