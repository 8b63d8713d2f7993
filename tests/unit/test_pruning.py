"""A mistyped key is never pruned: the API server keeps it, and the controller refuses it by name.

Without strict field validation (many client libraries and GitOps tools) the API server drops fields its
schema does not know, so a mistyped key would arrive as an absent one: ``Port: 22`` would leave a port
entry without its port, a lost ``egress`` would send a zone out with the shared address. So every object
of the CRDs' spec keeps unknown fields (``x-kubernetes-preserve-unknown-fields``), and the controller's
webhooks (and its parser, for objects stored while no webhook answered) refuse them. For every key of a
set of policies and zones this test misspells the key, prunes the object exactly as the API server would
(the CRD's own schema), and requires that nothing was dropped and that the parser refuses the object,
naming the misspelled key. tests/kube/test_crd_validation.py sends the same objects to kube-apiserver.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import pytest
import yaml

from test_crds import CONFIG, REGISTRY, examples, openapi, validate
from zonectl.core.errors import ValidationError
from zonectl.core.policy import parse_policy
from zonectl.core.rules import compile_objects
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
    """(object, path) for every key of every object's spec; label keys are data, not fields."""
    return [pytest.param(obj, path, id=f"{obj['kind']}:{obj['metadata']['name']}:{'.'.join(map(str, path))}")
            for obj in objs for path in key_paths(obj["spec"], ("spec",)) if "matchLabels" not in path[:-1]]


def typo_key(path: tuple) -> str:
    """What ``misspelled`` makes of the key at ``path``."""
    return path[-1][:-1] + path[-1][-1] * 2


def refusal(obj: dict) -> str:
    """The controller's parser's answer to ``obj`` (as the webhooks run it): its message, or "" if valid."""
    try:
        if obj["kind"] == "SecurityZone":
            parse_zone(obj, CONFIG.layout)
        else:
            parse_policy(obj, None)
    except ValidationError as exc:
        return str(exc)
    return ""


POLICIES = examples("SecurityZonePolicy") + [RICH_POLICY]
ZONES = examples("SecurityZone") + [RICH_ZONE]
SCHEMA = {"SecurityZonePolicy": openapi("SecurityZonePolicy"), "SecurityZone": openapi("SecurityZone")}
TYPO_CASES = typo_cases(POLICIES + ZONES)


@pytest.mark.parametrize("obj", POLICIES + ZONES, ids=lambda o: f"{o['kind']}:{o['metadata']['name']}")
def test_samples_are_valid_and_pruning_keeps_them(obj: dict) -> None:
    assert validate(obj) == []
    assert prune(obj, SCHEMA[obj["kind"]]) == obj
    assert refusal(obj) == ""
    if obj["kind"] == "SecurityZonePolicy":
        assert compile_objects([obj], REGISTRY, CONFIG.nat64).rules


@pytest.mark.parametrize("obj,path", TYPO_CASES)
def test_a_typo_is_kept_and_refused_by_name(obj: dict, path: tuple) -> None:
    typo = misspelled(obj, path)
    assert prune(typo, SCHEMA[obj["kind"]]) == typo  # stored as written, whatever the client's field validation
    assert f"unknown field(s) {typo_key(path)}" in refusal(typo)


def test_the_checks_can_fail() -> None:
    """``prune`` does drop what the schema does not keep (a top-level typo, a nested one without
    preserve-unknown-fields), and a label key is not a field (a misspelled one is a valid selector)."""
    zone = copy.deepcopy(RICH_ZONE)
    assert "specc" not in prune({**zone, "specc": {}}, SCHEMA["SecurityZone"])
    strict = copy.deepcopy(SCHEMA["SecurityZonePolicy"])
    del strict["properties"]["spec"]["properties"]["ingress"]["items"]["x-kubernetes-preserve-unknown-fields"]
    path = ("spec", "ingress", 0, "name")
    assert prune(misspelled(RICH_POLICY, path), strict) != misspelled(RICH_POLICY, path)
    assert refusal(misspelled(RICH_ZONE, ("spec", "namespaceSelector", "matchLabels", "team"))) == ""
