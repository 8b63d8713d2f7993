"""SecurityZonePolicy validation (field paths) and compilation to the rule IR."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import replace

import pytest

from zonectl.core.config import parse_config
from zonectl.core.errors import ValidationError
from zonectl.core.layout import AddrMatch
from zonectl.core.policy import Peer, Policy, PolicyRule, PortSpec, parse_policy
from zonectl.core.rules import POSITIONS, compile_objects, compile_policies, compile_policy

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


ANY = [{"any": True}]
ALL = [{"protocol": "Any"}]


def spec(**kw) -> dict:
    """A policy spec with the required fields filled in: only what a test is about needs writing."""
    return {"zones": ["dmz"], "priority": 500, "ingress": [], "egress": [], **kw}


def allow_to(*peers: dict, **rule) -> dict:
    return {"action": "Allow", "to": list(peers), "ports": ALL, **rule}


def test_order_priority_position_and_deny_first(compile_one) -> None:
    rules = compile_one(spec(
        zones=["db"], priority=10,
        ingress=[
            {"action": "Allow", "from": [{"zone": "web"}], "ports": ALL},
            {"action": "Deny", "from": [{"zone": "dmz", "scope": "Cluster"}], "ports": ALL},
        ],
        defaultAction={"ingress": "Deny", "egress": "Allow"},
    ))
    orders = {(r.name, r.action): r.order for r in rules}
    assert orders[("ingress-0", "allow")] < orders[("ingress-1", "deny")]
    assert orders[("default-ingress", "deny")] < orders[("default-egress", "allow")]
    assert max(o for (n, _), o in orders.items() if not n.startswith("default")) < orders[("default-ingress", "deny")]


def test_two_policies_same_priority_deny_wins_tie(example_zones, example_config) -> None:
    allow = parse_policy(policy(spec(zones=["db"], ingress=[{"action": "Allow", "from": [{"zone": "web"}], "ports": ALL}]), "a"),
                         example_zones)
    deny = parse_policy(policy(spec(zones=["db"], ingress=[{"action": "Deny", "from": [{"zone": "web", "scope": "Cluster"}],
                                                             "ports": ALL}]), "b"), example_zones)
    rs = compile_policies([allow, deny], example_zones, example_config.nat64)
    assert rs.rules[0].action == "deny"


def test_nat64_peer_any_ipv4(compile_one) -> None:
    rules = compile_one(spec(egress=[allow_to({"nat64": {"any": True}})], defaultAction={"egress": "Allow"}))
    rule = next(r for r in rules if not r.is_default)
    assert rule.dst.cidr_or_mask == "fd64:ff9b::/96" and rule.nat64


def test_cidr_peer_with_wildcard_mask_and_dedup(compile_one) -> None:
    rules = compile_one(spec(egress=[allow_to({"cidr": "2001:db8::/ffff:ffff:0:ffff::"},
                                              {"cidr": "2001:db8::/ffff:ffff:0:ffff::"})]))
    explicit = [r for r in rules if not r.is_default]
    assert len(explicit) == 1 and explicit[0].dst.prefixlen is None and not explicit[0].nat64


def test_any_is_spelled_out_and_compiles_to_any(compile_one) -> None:
    """``{any: true}`` is any address, ``{protocol: Any}`` all traffic, ``{protocol: TCP, any: true}`` every port."""
    rules = compile_one(spec(egress=[allow_to({"any": True}, ports=[{"protocol": "TCP", "any": True},
                                                                    {"protocol": "ICMPv6", "any": True}]),
                                     allow_to({"any": True})]))
    tcp, icmp, everything = [r for r in rules if not r.is_default]
    assert (tcp.dst, tcp.protocol, tcp.port_min) == (None, "tcp", None)
    assert (icmp.protocol, icmp.icmp_type) == ("icmpv6", None)
    assert (everything.dst, everything.protocol) == (None, None)


def test_an_unwritten_default_direction_is_deny(compile_one) -> None:
    rules = compile_one(spec(defaultAction={"egress": "Allow"}))
    assert {(r.direction, r.action) for r in rules if r.is_default} == {("ingress", "deny"), ("egress", "allow")}
    rules = compile_one(spec(egress=[allow_to({"zone": "web"})]))
    assert {(r.direction, r.action) for r in rules if r.is_default} == {("ingress", "deny"), ("egress", "deny")}


def test_hand_made_policies_never_mean_everything(example_zones, example_config) -> None:
    """Objects built in code skip the parser; the compiler still refuses empty lists and defaults to Deny."""
    base = Policy("ns", "p", ("dmz",), 100, default_ingress=None, default_egress=None)
    rules = compile_policy(base, example_zones, example_config.nat64)
    assert {r.action for r in rules} == {"deny"} and len(rules) == 2
    for rule, message in [
        (PolicyRule("r", "allow", (), (PortSpec(None),)), "has no peers"),
        (PolicyRule("r", "allow", (Peer("any"),), ()), "has no ports"),
        (PolicyRule("r", "allow", (Peer("nat64"),), (PortSpec(None),)), "needs at least one IPv4 network"),
        (PolicyRule("r", "allow", (Peer("cidr", match=AddrMatch(0, 0)),), (PortSpec(None),)), "narrower than every address"),
    ]:
        with pytest.raises(ValidationError, match=message):
            compile_policy(replace(base, egress=(rule,)), example_zones, example_config.nat64)


def test_more_rules_than_the_order_formula_holds_are_refused(example_zones, example_config) -> None:
    """(priority * 1000 + position): a 1001st rule would take the next priority's first position."""
    rule = PolicyRule("r", "allow", (Peer("any"),), (PortSpec(None),))
    ok = Policy("ns", "p", ("dmz",), 100, egress=(rule,) * POSITIONS)
    assert len(compile_policy(ok, example_zones, example_config.nat64)) == POSITIONS + 2  # + the two defaults
    with pytest.raises(ValidationError, match=r"spec.egress: has 1001 rules; a policy keeps at most 1000 per direction"):
        compile_policy(replace(ok, egress=(rule,) * (POSITIONS + 1)), example_zones, example_config.nat64)
    with pytest.raises(ValidationError, match=r"spec.priority: 1000 must be an integer from 0 to 999"):
        compile_policy(replace(ok, priority=1000), example_zones, example_config.nat64)


def test_rule_ids_hash_a_canonical_text(example_zones, example_config, example_policy_bodies) -> None:
    """Each id is the hash of a canonical text built from the rule's public fields (computed here
    independently), so it does not depend on how any dataclass prints itself."""
    rs = compile_objects(example_policy_bodies, example_zones, example_config.nat64)

    def independent(r) -> str:
        text = "[" + ",".join(json.dumps(v) for v in (
            r.policy, r.zone, r.direction, r.action, r.order, r.src.text if r.src else None,
            r.dst.text if r.dst else None, r.protocol, r.port_min, r.port_max, r.icmp_type)) + "]"
        return "r" + hashlib.sha256(text.encode()).hexdigest()[:15]

    assert [r.id for r in rs] == [independent(r) for r in rs]


def test_a_new_dataclass_field_changes_no_rule_id(example_zones, example_config, example_policy_bodies, monkeypatch) -> None:
    before = [r.id for r in compile_objects(example_policy_bodies, example_zones, example_config.nat64)]
    # What adding a field with a default does to repr(): every object prints differently.
    for cls in (AddrMatch, PortSpec, Peer, PolicyRule, Policy):
        monkeypatch.setattr(cls, "__repr__", lambda self: f"{type(self).__name__}(..., added=None)")
    after = [r.id for r in compile_objects(example_policy_bodies, example_zones, example_config.nat64)]
    assert after == before


BAD = [
    ({"zones": []}, "spec.zones: is empty: list at least one zone"),
    ({"zones": ["nope"], "defaultAction": {"ingress": "Deny"}}, "spec.zones[0]: unknown zone 'nope' (known zones: db, dmz, web)"),
    ({}, "add rules, or write defaultAction"),
    ({"priority": 5000, "defaultAction": {"egress": "Deny"}}, "spec.priority: 5000 must be an integer from 0 to 999"),
    ({"defaultAction": {"egress": "Block"}}, "spec.defaultAction.egress: 'Block' is not one of Allow, Deny"),
    ({"egress": [allow_to({"zone": "dbx"})]}, "spec.egress[0].to[0].zone: unknown zone 'dbx'"),
    ({"egress": [{"action": "Allow", "from": [{"zone": "db"}], "to": ANY, "ports": ALL}]},
     "spec.egress[0]: unknown field(s) from (an egress rule uses 'to')"),
    ({"egress": [{"to": [{"zone": "db"}], "ports": ALL}]}, "spec.egress[0].action: is required"),
    ({"ingress": [{"action": "Allow", "from": ANY, "ports": [{"protocol": "TCP", "port": 0}]}]},
     "spec.ingress[0].ports[0].port: 0 must be an integer from 1 to 65535"),
    ({"ingress": [{"action": "Allow", "from": ANY, "ports": [{"protocol": "TCP", "port": 90, "endPort": 80}]}]},
     "spec.ingress[0].ports[0].endPort: 80 is lower than port 90"),
    ({"ingress": [{"action": "Allow", "from": ANY, "ports": [{"protocol": "ICMP", "any": True}]}]},
     "spec.ingress[0].ports[0].protocol: 'ICMP' is not one of TCP, UDP, SCTP, ICMPv6, Any"),
    ({"ingress": [{"action": "Allow", "from": ANY, "ports": [{"protocol": "ICMPv6", "port": 1}]}]},
     "spec.ingress[0].ports[0]: ICMPv6 has no ports (use icmpType)"),
    ({"ingress": [{"action": "Allow", "from": ANY, "ports": [{"protocol": "ICMPv6"}]}]},
     "spec.ingress[0].ports[0]: needs exactly one of icmpType (e.g. 128, echo request) or `any: true`"),
    ({"ingress": [{"action": "Allow", "from": [{"cidr": "10.0.0.0/8"}], "ports": ALL}]}, "use nat64: {cidrs: [...]}"),
    ({"ingress": [{"action": "Allow", "from": [{"cidr": "2001:db8::1/32"}], "ports": ALL}]},
     "has bits set outside its mask; did you mean 2001:db8::/32?"),
    ({"ingress": [{"action": "Allow", "from": [{"cidr": "2001:db8::/32", "zone": "db"}], "ports": ALL}]},
     "needs exactly one of zone, cidr, nat64, any"),
    ({"egress": [allow_to({"nat64": {"cidrs": ["198.51.100.0/33"]}})]}, "spec.egress[0].to[0].nat64.cidrs[0]"),
    ({"egress": [allow_to({"cidr": "2001:db8::/32", "scope": "Cluster"})]}, "spec.egress[0].to[0].scope: only applies to zone peers"),
    ({"egress": [allow_to({"any": True}, name="a"), allow_to({"any": True}, name="a")]}, "rule name 'a' is used twice"),
    ({"egress": [allow_to()]}, "spec.egress[0].to: is empty: list the peers, or write [{any: true}] for any peer"),
    ({"egres": []}, "spec: unknown field(s) egres"),
    # Class 3: nothing absent or empty means "everything".
    ({"egress": [allow_to({"nat64": {}})]}, "spec.egress[0].to[0].nat64: needs exactly one of cidrs"),
    ({"egress": [allow_to({"nat64": {"cidrs": []}})]}, "spec.egress[0].to[0].nat64.cidrs: is empty"),
    ({"egress": [allow_to({"nat64": {"cidr": ["198.51.100.0/24"]}})]}, "spec.egress[0].to[0].nat64: unknown field(s) cidr"),
    ({"egress": [allow_to({"nat64": {"cidrs": ["0.0.0.0/0"]}})]}, "is every IPv4 address: write nat64: {any: true}"),
    ({"egress": [allow_to({"nat64": {"any": False}})]}, "spec.egress[0].to[0].nat64.any: False is not allowed"),
    ({"egress": [allow_to({"cidr": "::/0"})]}, "matches every address: write the peer as {any: true}"),
    ({"egress": [allow_to({"any": True}, {"zone": "web"})]}, "{any: true} matches every peer; it cannot be combined"),
    ({"egress": [allow_to({"any": True}, ports=[])]}, "spec.egress[0].ports: is empty"),
    ({"egress": [{"action": "Allow", "to": ANY}]}, "spec.egress[0].ports: is required"),
    ({"egress": [{"action": "Allow", "ports": ALL}]}, "spec.egress[0].to: is required"),
    ({"egress": [allow_to({"any": True}, ports=[{"protocol": "TCP"}])]}, "spec.egress[0].ports[0]: needs exactly one of port"),
    ({"egress": [allow_to({"any": True}, ports=[{"any": True}])]}, "spec.egress[0].ports[0].protocol: is required"),
    ({"egress": [allow_to({"any": True}, ports=[{"protocol": "Any"}, {"protocol": "UDP", "port": 53}])]},
     "{protocol: Any} means all traffic; it cannot be combined"),
    ({"egress": [{"action": "Deny", "to": [{"zone": "web"}], "ports": ALL}]}, "spec.egress[0].to[0].scope: is required in a Deny rule"),
    ({"egress": [{"action": "Deny", "to": ANY, "ports": [{"protocol": "TCP", "port": 22}]}]},
     "spec.egress[0].ports[0].endPort: is required in a Deny rule (endPort: 22 for one port)"),
    ({"priority": None}, "spec.priority: None must be an integer"),
    ({"ingress": None}, "spec.ingress: must be a list of rules, not null"),
]


@pytest.mark.parametrize("spec_, message", BAD)
def test_bad_policies_name_field_and_reason(example_zones, spec_: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_policy(policy(spec(**spec_)), example_zones)
    assert message in str(err.value)
    assert "SecurityZonePolicy zonectl-system/p" in str(err.value)


@pytest.mark.parametrize("key", ["priority", "ingress", "egress"])
def test_required_keys(example_zones, key: str) -> None:
    body = spec(defaultAction={"ingress": "Deny"})
    del body[key]
    with pytest.raises(ValidationError, match=rf"spec.{key}: is required"):
        parse_policy(policy(body), example_zones)


def test_compile_set_is_all_or_nothing(example_zones, example_config, example_policy_bodies) -> None:
    broken = copy.deepcopy(example_policy_bodies) + [policy(spec(zones=["ghost"], defaultAction={"ingress": "Deny"}), "bad")]
    with pytest.raises(ValidationError) as err:
        compile_objects(broken, example_zones, example_config.nat64)
    assert "zonectl-system/bad" in str(err.value)


def test_datacenter_scope_needs_datacenter(example_zones) -> None:
    cfg = parse_config({"layout": {"cluster": "fd00:10:244::/48"}})
    from zonectl.core.zones import ZoneRegistry
    reg = ZoneRegistry(cfg.layout, example_zones.zones)
    with pytest.raises(ValidationError, match="Datacenter scope needs a datacenter prefix"):
        parse_policy(policy(spec(zones=["web"], ingress=[{"action": "Allow", "from": [{"zone": "dmz", "scope": "Datacenter"}],
                                                          "ports": ALL}])), reg)


def test_nat64_peer_without_prefix(example_zones) -> None:
    pol = parse_policy(policy(spec(egress=[allow_to({"nat64": {"any": True}})])), example_zones)
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
