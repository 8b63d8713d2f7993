"""A mistyped key never widens anything, even after the API server prunes it.

Without strict field validation (many clients and GitOps tools) the API server silently drops fields its
schema does not know, so the controller sees a mistyped key as an absent one. For every key of a set of
policies and zones, this test misspells the key, prunes the object exactly as the API server would (the
CRD's own schema), and then requires one of three outcomes:

* the API server refuses the pruned object (schema or CEL rule),
* the controller's parser refuses it (the policy keeps its previous good state), or
* it compiles to rules that allow nothing more: every Allow rule of the result lies inside an Allow rule
  of the original at the same position, and whatever an earlier Deny rule of the original refused there
  is refused by an earlier Deny rule of the result too (so, evaluated in order, no packet the original
  refused is accepted).
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import pytest
import yaml

from test_crds import CONFIG, REGISTRY, examples, openapi, validate
from zonectl.core.errors import ValidationError
from zonectl.core.rules import Rule, compile_objects
from zonectl.core.zones import parse_zone

RICH_POLICY = yaml.safe_load("""
apiVersion: zonectl.io/v1alpha1
kind: SecurityZonePolicy
metadata: {name: rich, namespace: zonectl-system}
spec:
  zones: [web]
  priority: 150
  description: every kind of field
  defaultAction: {ingress: Deny, egress: Allow}
  ingress:
    - name: deny-dc-dmz
      action: Deny
      from: [{zone: dmz, scope: Datacenter}, {cidr: "2001:db8:bad::/48"}]
      ports: [{protocol: TCP, port: 8000, endPort: 8099}, {protocol: ICMPv6, icmpType: 128}]
    - name: allow-dmz
      action: Allow
      from: [{zone: dmz, scope: Datacenter}]
      ports: [{protocol: TCP, port: 8000, endPort: 8999}, {protocol: UDP, any: true}]
    - name: ping
      action: Allow
      from: [{any: true}]
      ports: [{protocol: ICMPv6, icmpType: 128}, {protocol: TCP, port: 8000, endPort: 8999}]
  egress:
    - name: deny-bad-v4
      action: Deny
      to: [{nat64: {cidrs: [192.0.2.0/24]}}]
      ports: [{protocol: Any}]
    - name: v4
      action: Allow
      to: [{nat64: {any: true}}]
      ports: [{protocol: TCP, port: 443}]
    - name: db
      action: Allow
      to: [{zone: db}, {cidr: "fd00:10:244:0:3000::/ffff:ffff:ffff:0:ffff::"}]
      ports: [{protocol: TCP, any: true}]
""")
RICH_ZONE = yaml.safe_load("""
apiVersion: zonectl.io/v1alpha1
kind: SecurityZone
metadata: {name: rich}
spec:
  id: 0x2200
  description: every kind of field
  namespaces: [a, b]
  namespaceSelector:
    matchLabels: {team: x}
    matchExpressions: [{key: env, operator: In, values: [prod]}]
  egress: {pool: 100.64.22.0/24, address: 198.51.100.22}
""")
NAMESPACES = {  # name -> labels, to compare which namespaces a zone lets in
    "a": {}, "b": {"team": "x"}, "c": {"team": "x", "env": "prod"}, "d": {"env": "prod"}, "e": {"team": "y", "env": "prod"},
    "f": {"team": "x"},
}


def prune(value: Any, schema: dict, top: bool = True) -> Any:
    """What the API server stores: fields its structural schema does not know are dropped (recursively),
    except under ``x-kubernetes-preserve-unknown-fields`` and in metadata (ObjectMeta has its own rules)."""
    if top:
        return {k: v if k == "metadata" else prune(v, schema["properties"][k], False) for k, v in value.items()
                if k in schema["properties"]}
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            return {k: prune(v, extra, False) if isinstance(extra, dict) else v for k, v in value.items()}
        keep = schema.get("x-kubernetes-preserve-unknown-fields", False)
        return {k: prune(v, props[k], False) if k in props else v for k, v in value.items() if k in props or keep}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"], False) for v in value]
    return value


def key_paths(node: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,)
            yield from key_paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from key_paths(v, path + (i,))


def misspelled(obj: dict, path: tuple) -> dict:
    """``obj`` with the key at ``path`` misspelled (a letter doubled), in place of the original key."""
    obj = copy.deepcopy(obj)
    node = obj
    for p in path[:-1]:
        node = node[p]
    key = path[-1]
    node[key[:-1] + key[-1] * 2] = node.pop(key)
    return obj


def typo_cases(objs: list[dict]) -> list[Any]:
    return [pytest.param(obj, path, id=f"{obj['metadata']['name']}:{'.'.join(map(str, path))}")
            for obj in objs for path in key_paths(obj["spec"], ("spec",))]


def _match_covers(outer, inner) -> bool:
    return outer is None or (inner is not None and outer.covers(inner))


def covers(outer: Rule, inner: Rule) -> bool:
    """Every packet ``inner`` matches, ``outer`` matches too."""
    if not (_match_covers(outer.src, inner.src) and _match_covers(outer.dst, inner.dst)):
        return False
    if outer.protocol is None:
        return True
    if outer.protocol != inner.protocol:
        return False
    if outer.protocol == "icmpv6":
        return outer.icmp_type is None or outer.icmp_type == inner.icmp_type
    if outer.port_min is None:
        return True
    return inner.port_min is not None and outer.port_min <= inner.port_min and inner.port_max <= outer.port_max


def _match_overlaps(a, b) -> bool:
    return a is None or b is None or not (a.value ^ b.value) & a.mask & b.mask


def overlaps(a: Rule, b: Rule) -> bool:
    """Some packet matches both."""
    if not (_match_overlaps(a.src, b.src) and _match_overlaps(a.dst, b.dst)):
        return False
    if a.protocol is None or b.protocol is None:
        return True
    if a.protocol != b.protocol:
        return False
    if a.protocol == "icmpv6":
        return a.icmp_type is None or b.icmp_type is None or a.icmp_type == b.icmp_type
    if a.port_min is None or b.port_min is None:
        return True
    return a.port_min <= b.port_max and b.port_min <= a.port_max


def never_wider(before: tuple[Rule, ...], after: tuple[Rule, ...]) -> list[str]:
    """Why ``after`` may accept a packet ``before`` refused (empty: it may not).

    Rules are evaluated per zone and direction in ``order``. A packet ``after`` accepts meets an Allow
    rule A first; A must lie inside an Allow rule of ``before`` at the same order, and every Deny rule of
    ``before`` ordered earlier that shares packets with A must be covered by a Deny rule of ``after``
    ordered earlier than A (else that packet went from refused to accepted).
    """
    def same(a: Rule, b: Rule) -> bool:
        return (a.zone, a.direction) == (b.zone, b.direction)

    problems = []
    for a in after:
        if a.action != "allow":
            continue
        if not any(b.action == "allow" and same(a, b) and b.order == a.order and covers(b, a) for b in before):
            problems.append(f"allows more: {a.describe()}")
        for d in before:
            if d.action == "deny" and same(a, d) and d.order < a.order and overlaps(d, a) and not any(
                    x.action == "deny" and same(x, d) and x.order < a.order and covers(x, d) for x in after):
                problems.append(f"denies less: {d.describe()} (before {a.describe()})")
    return problems


def compiled(obj: dict, *others: dict) -> tuple[Rule, ...]:
    return compile_objects([obj, *others], REGISTRY, CONFIG.nat64).rules


def permissive(obj: dict) -> dict:
    """Another policy of the same zones that allows everything after the others (explicit rules at
    priority 999, so before every policy's defaultAction): what a lost Deny rule would let through."""
    allow_all = [{"action": "Allow", "from": [{"any": True}], "ports": [{"protocol": "Any"}]}]
    return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
            "metadata": {"name": "later-allow-all", "namespace": "zonectl-system"},
            "spec": {"zones": obj["spec"]["zones"], "priority": 999, "ingress": allow_all,
                     "egress": [{"action": "Allow", "to": [{"any": True}], "ports": [{"protocol": "Any"}]}]}}


POLICIES = examples("SecurityZonePolicy") + [RICH_POLICY]
SCHEMA = {"SecurityZonePolicy": openapi("SecurityZonePolicy"), "SecurityZone": openapi("SecurityZone")}


@pytest.mark.parametrize("obj", POLICIES, ids=lambda o: o["metadata"]["name"])
def test_samples_are_valid_and_pruning_keeps_them(obj: dict) -> None:
    assert validate(obj) == []
    assert prune(obj, SCHEMA[obj["kind"]]) == obj
    assert compiled(obj)


@pytest.mark.parametrize("obj,path", typo_cases(POLICIES))
def test_a_pruned_policy_typo_never_widens(obj: dict, path: tuple) -> None:
    stored = prune(misspelled(obj, path), SCHEMA["SecurityZonePolicy"])
    if validate(stored):
        return  # refused by the API server
    try:
        after = compiled(stored)
    except ValidationError:
        return  # refused by the controller: the previous good rules stay
    assert never_wider(compiled(obj), after) == []
    # ...also when another policy of the zone allows what this one's explicit rules do not decide.
    assert never_wider(compiled(obj, permissive(obj)), compiled(stored, permissive(obj))) == []


def allowed(zone) -> set[str]:
    return {ns for ns, labels in NAMESPACES.items() if zone.allows_namespace(ns, labels)}


ZONES = examples("SecurityZone") + [RICH_ZONE]
# The one accepted change that is not "less": a zone whose `egress` key is lost leaves through the shared
# pool's address. zonectl's own filters are unchanged (they match IPv6 zone masks); an external IPv4
# firewall sees the shared address instead of the zone's (docs/gateway.md says to never allow the shared
# address more than a zone's own).
EGRESS_FALLBACK = {("spec", "egress")}


@pytest.mark.parametrize("obj,path", typo_cases(ZONES))
def test_a_pruned_zone_typo_never_widens(obj: dict, path: tuple) -> None:
    stored = prune(misspelled(obj, path), SCHEMA["SecurityZone"])
    if validate(stored):
        return
    try:
        after = parse_zone(stored, CONFIG.layout)
    except ValidationError:
        return
    before = parse_zone(obj, CONFIG.layout)
    assert after.id == before.id
    assert allowed(after) <= allowed(before)
    if after.egress != before.egress:
        assert after.egress is None and path in EGRESS_FALLBACK


def test_the_checks_can_fail() -> None:
    """never_wider and the zone comparison do object to a wider result."""
    wide = copy.deepcopy(RICH_POLICY)
    wide["spec"]["ingress"][1]["ports"][0] = {"protocol": "TCP", "any": True}
    assert never_wider(compiled(RICH_POLICY), compiled(wide))
    less = copy.deepcopy(RICH_POLICY)
    less["spec"]["ingress"][0]["ports"][0]["endPort"] = 8000  # 8001-8099 from dmz: now allowed by the next rule
    assert never_wider(compiled(RICH_POLICY), compiled(less))
    reordered = copy.deepcopy(RICH_POLICY)
    reordered["spec"]["priority"] = 999  # after the other policy's allow-all: its Deny rules come too late
    assert never_wider(compiled(RICH_POLICY, permissive(RICH_POLICY)), compiled(reordered, permissive(RICH_POLICY)))
    no_denies = copy.deepcopy(RICH_POLICY)
    no_denies["spec"]["egress"] = []  # the Deny rule is gone: the other policy's Allow takes its packets
    assert never_wider(compiled(RICH_POLICY, permissive(RICH_POLICY)), compiled(no_denies, permissive(RICH_POLICY)))
    open_zone = copy.deepcopy(RICH_ZONE)
    del open_zone["spec"]["namespaceSelector"]["matchExpressions"]
    assert not allowed(parse_zone(open_zone, CONFIG.layout)) <= allowed(parse_zone(RICH_ZONE, CONFIG.layout))
