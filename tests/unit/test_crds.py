"""The CRDs: structural schemas, the example CRs validate, broken CRs fail with the expected messages,
and the schema and the core parser agree on what is valid.

The openAPIV3Schema is checked with jsonschema after a faithful conversion of the Kubernetes
extensions (strict field validation = unknown fields are errors, as `kubectl apply` reports them;
``x-kubernetes-list-type: set`` = unique items; map lists = unique keys) and the
``x-kubernetes-validations`` CEL rules are evaluated with a real CEL interpreter (cel-python).
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

from zonectl.core.config import parse_config
from zonectl.core.errors import ValidationError
from zonectl.core.policy import parse_policy
from zonectl.core.zones import ZoneRegistry, parse_zone

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
try:
    import celpy  # cel-python: a real CEL interpreter for the x-kubernetes-validations rules
except ImportError:  # pragma: no cover - the test extra installs it
    celpy = None


def _need_cel() -> None:
    if celpy is None:
        pytest.skip("the CRDs' CEL rules need cel-python (pip install cel-python)")


# --- loading and converting ---------------------------------------------------------------------------
def load_crd(name: str) -> dict:
    return yaml.safe_load((CRDS / name).read_text())


CRD_FILES = {"SecurityZone": "securityzone.yaml", "SecurityZonePolicy": "securityzonepolicy.yaml"}


def crd_for(kind: str) -> dict:
    return load_crd(CRD_FILES[kind])


def openapi(kind: str) -> dict:
    return crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def to_jsonschema(node: dict, path: tuple[str, ...] = ()) -> dict:
    """An OpenAPI v3 (Kubernetes structural) schema as JSON Schema, with the K8s extensions applied."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: to_jsonschema(v, path + (k,)) for k, v in value.items()}
        elif key == "items":
            out[key] = to_jsonschema(value, path + ("[]",))
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = to_jsonschema(value, path + ("*",))
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [to_jsonschema(v, path) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "default"):
            continue
        else:
            out[key] = value
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    # Strict field validation (kubectl's default): unknown fields are errors, except under metadata,
    # whose fields the API server validates itself.
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") and path != ("metadata",):
        out.setdefault("additionalProperties", False)
    return out


def fmt_path(parts) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


@lru_cache(maxsize=None)
def _program(rule: str):
    _need_cel()
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel_errors(schema: dict, value: Any, path: list) -> Iterator[str]:
    """Evaluate every x-kubernetes-validations rule (and map-list key uniqueness) where data exists."""
    for v in schema.get("x-kubernetes-validations", ()):
        result = _program(v["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        if not isinstance(result, celpy.celtypes.BoolType):  # an evaluation error fails the rule too
            yield f"{fmt_path(path)}: rule {v['rule']!r} did not evaluate to a bool: {result!r}"
        elif not result:
            yield f"{fmt_path(path)}: {v.get('message', 'failed rule: ' + v['rule'])}"
    if schema.get("x-kubernetes-list-type") == "map" and isinstance(value, list):
        keys = [tuple(i.get(k) for k in schema["x-kubernetes-list-map-keys"]) for i in value if isinstance(i, dict)]
        if len(keys) != len(set(keys)):
            yield f"{fmt_path(path)}: duplicate entries for key {schema['x-kubernetes-list-map-keys']}"
    if isinstance(value, dict):
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                yield from _cel_errors(sub, value[k], path + [k])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k, item in value.items():
                yield from _cel_errors(extra, item, path + [k])
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _cel_errors(schema["items"], item, path + [i])


def validate(obj: dict) -> list[str]:
    """Every schema and CEL error of a CR, as ``path: message`` (empty = valid)."""
    _need_cel()
    schema = openapi(obj["kind"])
    validator = jsonschema.Draft7Validator(to_jsonschema(schema))
    errors = [f"{fmt_path(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
    if not errors:  # CEL rules run only on data that passed the schema (as in the API server)
        errors = list(_cel_errors(schema, obj, []))
    return errors


def examples(kind: str) -> list[dict]:
    name = {"SecurityZone": "zones.yaml", "SecurityZonePolicy": "policies.yaml"}[kind]
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


# --- structural schema rules (what the API server refuses before any CR is created) -----------------
def walk(node: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    yield path, node
    for k, v in node.get("properties", {}).items():
        yield from walk(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("kind", CRD_FILES)
def test_crd_is_structural(kind: str) -> None:
    crd = crd_for(kind)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["spec"]["group"] == "zonectl.io"
    plural = crd["spec"]["names"]["plural"]
    assert crd["metadata"]["name"] == f"{plural}.zonectl.io"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    problems = []
    for path, node in walk(schema):
        if "type" not in node and not node.get("x-kubernetes-int-or-string") and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: no type")
        if "$ref" in node or "definitions" in node or "$defs" in node:
            problems.append(f"{path}: $ref/definitions are not allowed in CRDs")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false is not structural (unknown fields are pruned)")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties are mutually exclusive")
        if node.get("x-kubernetes-list-type") == "map":
            for key in node["x-kubernetes-list-map-keys"]:
                if key not in node["items"].get("required", []):
                    problems.append(f"{path}: map key {key} must be required")
        for junctor in ("anyOf", "oneOf", "allOf", "not"):
            if junctor in node and "type" in str(node[junctor]):
                problems.append(f"{path}: no types inside {junctor}")
        if node.get("type") == "array" and "maxItems" not in node and not path.startswith(".status"):
            problems.append(f"{path}: lists under spec need maxItems (CEL cost estimation)")
        if node.get("type") == "string" and "maxLength" not in node and "enum" not in node and ".spec." in path + ".":
            problems.append(f"{path}: strings under spec need maxLength (CEL cost estimation)")
    meta = schema["properties"]["metadata"]
    assert set(meta.get("properties", {})) <= {"name", "generateName"}, "metadata may only restrict name/generateName"
    assert problems == []


@pytest.mark.parametrize("kind,scope", [("SecurityZone", "Cluster"), ("SecurityZonePolicy", "Namespaced")])
def test_scope_names_and_printer_columns(kind: str, scope: str) -> None:
    crd = crd_for(kind)
    assert crd["spec"]["scope"] == scope
    assert crd["spec"]["names"]["kind"] == kind
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    for col in columns:
        # Every column points at a field the schema (or ObjectMeta) has.
        field = re.match(r"^\.([a-zA-Z.]+)", col["jsonPath"]).group(1).split(".")
        node = schema
        if field[0] == "metadata":
            continue
        for part in field:
            node = node["properties"][part]
            node = node.get("items", node) if node.get("type") == "array" and part != field[-1] else node
        assert col["type"] in ("integer", "string", "date", "boolean", "number")
    names = [c["name"] for c in columns]
    expected = {"SecurityZone": ["ID", "Namespaces", "Pods", "Mismatch"], "SecurityZonePolicy": ["Zones", "Rules", "Ready"]}
    assert all(n in names for n in expected[kind])


def test_cel_rules_compile() -> None:
    compiled = {kind: 0 for kind in CRD_FILES}
    for kind in CRD_FILES:
        for _, node in walk(openapi(kind)):
            for v in node.get("x-kubernetes-validations", ()):
                _program(v["rule"])  # raises on a syntax error
                compiled[kind] += 1
    # every rule was found and compiled (ingress and egress share their peer and port schemas: counted twice)
    assert compiled == {"SecurityZone": 2, "SecurityZonePolicy": 29}


# --- the examples --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CRD_FILES)
def test_examples_validate(kind: str) -> None:
    objs = examples(kind)
    assert objs
    for obj in objs:
        assert validate(obj) == [], obj["metadata"]["name"]


# --- broken CRs ------------------------------------------------------------------------------------------
def zone(**spec) -> dict:
    base = {"id": 0x2000, "namespaces": ["dmz-apps"]}
    base.update(spec)
    return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": "dmz"}, "spec": base}


ANY = [{"any": True}]  # any peer
ALL = [{"protocol": "Any"}]  # all traffic


def policy(**spec) -> dict:
    base: dict[str, Any] = {"zones": ["dmz"], "priority": 500,
                            "ingress": [{"name": "r", "action": "Allow", "from": ANY, "ports": ALL}], "egress": []}
    base.update(spec)
    return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
            "metadata": {"name": "p", "namespace": "default"}, "spec": base}


def ingress(**rule) -> dict:
    return policy(ingress=[{"name": "r", "action": "Allow", "from": ANY, "ports": ALL, **rule}])


def egress(**rule) -> dict:
    return policy(ingress=[], egress=[{"name": "r", "action": "Allow", "to": ANY, "ports": ALL, **rule}])


def without(obj: dict, *path: Any) -> dict:
    """A copy of ``obj`` without the key at ``path`` (what the API server leaves of a mistyped key)."""
    obj = copy.deepcopy(obj)
    node = obj
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return obj


def renamed(obj: dict, name: str) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"]["name"] = name
    return obj


BROKEN = [
    ("zone id 0", zone(id=0), "spec.id: 0 is less than the minimum of 1"),
    ("zone id as string", zone(id="0x2000"), "spec.id: '0x2000' is not of type 'integer'"),
    ("zone id above 32 bits", zone(id=1 << 32), "spec.id: 4294967296 is greater than the maximum"),
    ("zone without id", {**zone(), "spec": {"namespaces": ["a"]}}, "spec: 'id' is a required property"),
    ("zone without spec", {**zone(), "spec": None}, "spec: None is not of type 'object'"),
    ("zone name not a DNS label", renamed(zone(), "DMZ_1"), "metadata.name: 'DMZ_1' does not match"),
    ("namespace listed twice", zone(namespaces=["a", "a"]), "spec.namespaces: ['a', 'a'] has non-unique elements"),
    ("bad namespace name", zone(namespaces=["Web"]), "spec.namespaces[0]: 'Web' does not match"),
    ("egress pool too small", zone(egress={"pool": "100.64.21.0/31", "address": "198.51.100.21"}),
     "spec.egress.pool: '100.64.21.0/31' does not match"),
    ("egress pool IPv6", zone(egress={"pool": "fd00::/64", "address": "198.51.100.21"}), "spec.egress.pool: 'fd00::/64' does not match"),
    ("egress address missing", zone(egress={"pool": "100.64.21.0/24"}), "spec.egress: 'address' is a required property"),
    ("egress address bad", zone(egress={"pool": "100.64.21.0/24", "address": "198.51.100.256"}), "spec.egress.address: '198.51.100.256' does not match"),
    ("selector operator", zone(namespaceSelector={"matchExpressions": [{"key": "k", "operator": "Equals"}]}),
     "spec.namespaceSelector.matchExpressions[0].operator: 'Equals' is not one of"),
    ("In without values", zone(namespaceSelector={"matchExpressions": [{"key": "k", "operator": "In"}]}),
     "spec.namespaceSelector.matchExpressions[0]: operators In and NotIn need at least one value"),
    ("Exists with values", zone(namespaceSelector={"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["v"]}]}),
     "spec.namespaceSelector.matchExpressions[0]: operators Exists and DoesNotExist take no values"),
    ("policy without zones", policy(zones=[]), "spec.zones: [] should be non-empty"),
    ("zone listed twice", policy(zones=["dmz", "dmz"]), "spec.zones: ['dmz', 'dmz'] has non-unique elements"),
    ("priority too high", policy(priority=1000), "spec.priority: 1000 is greater than the maximum of 999"),
    ("priority negative", policy(priority=-1), "spec.priority: -1 is less than the minimum of 0"),
    ("default action case", policy(defaultAction={"ingress": "deny"}), "spec.defaultAction.ingress: 'deny' is not one of ['Allow', 'Deny']"),
    ("policy that does nothing", policy(ingress=[]), "spec: has no ingress or egress rules and no defaultAction; it would do nothing"),
    ("rule without action", policy(ingress=[{"name": "r"}]), "spec.ingress[0]: 'action' is a required property"),
    ("action case", ingress(action="allow"), "spec.ingress[0].action: 'allow' is not one of ['Allow', 'Deny']"),
    ("rule name twice", policy(ingress=[{"name": "a", "action": "Allow", "from": ANY, "ports": ALL},
                                        {"name": "a", "action": "Deny", "from": ANY, "ports": ALL}]),
     "spec.ingress: rule names must be unique"),
    ("empty peer list", ingress(**{"from": []}), "spec.ingress[0].from: [] should be non-empty"),
    ("peer with two kinds", ingress(**{"from": [{"zone": "web", "cidr": "2001:db8::/32"}]}),
     "spec.ingress[0].from[0]: a peer needs exactly one of zone, cidr, nat64, any"),
    ("empty peer", ingress(**{"from": [{}]}), "spec.ingress[0].from[0]: a peer needs exactly one of zone, cidr, nat64, any"),
    ("scope on a cidr", ingress(**{"from": [{"cidr": "2001:db8::/32", "scope": "Cluster"}]}),
     "spec.ingress[0].from[0]: scope only applies to zone peers"),
    ("scope case", ingress(**{"from": [{"zone": "web", "scope": "datacenter"}]}), "spec.ingress[0].from[0].scope: 'datacenter' is not one of"),
    ("IPv4 cidr", egress(to=[{"cidr": "10.0.0.0/8"}]), "spec.egress[0].to[0].cidr: '10.0.0.0/8' does not match"),
    ("prefix length 129", egress(to=[{"cidr": "2001:db8::/129"}]), "spec.egress[0].to[0].cidr: '2001:db8::/129' does not match"),
    ("nat64 IPv6 cidr", egress(to=[{"nat64": {"cidrs": ["2001:db8::/32"]}}]), "spec.egress[0].to[0].nat64.cidrs[0]: '2001:db8::/32' does not match"),
    ("protocol case", ingress(ports=[{"protocol": "tcp", "port": 80}]), "spec.ingress[0].ports[0].protocol: 'tcp' is not one of"),
    ("port 0", ingress(ports=[{"protocol": "TCP", "port": 0}]), "spec.ingress[0].ports[0].port: 0 is less than the minimum of 1"),
    ("port 70000", ingress(ports=[{"protocol": "UDP", "port": 70000}]), "spec.ingress[0].ports[0].port: 70000 is greater than the maximum of 65535"),
    ("port as string", ingress(ports=[{"protocol": "TCP", "port": "https"}]), "spec.ingress[0].ports[0].port: 'https' is not of type 'integer'"),
    ("ICMPv6 with a port", ingress(ports=[{"protocol": "ICMPv6", "port": 1}]), "spec.ingress[0].ports[0]: ICMPv6 has no ports (use icmpType)"),
    ("icmpType on TCP", ingress(ports=[{"protocol": "TCP", "icmpType": 128}]), "spec.ingress[0].ports[0]: icmpType only applies to protocol ICMPv6"),
    ("icmpType 256", ingress(ports=[{"protocol": "ICMPv6", "icmpType": 256}]), "spec.ingress[0].ports[0].icmpType: 256 is greater than the maximum of 255"),
    ("endPort without port", ingress(ports=[{"protocol": "TCP", "endPort": 90}]), "spec.ingress[0].ports[0]: endPort needs port"),
    ("endPort below port", ingress(ports=[{"protocol": "TCP", "port": 90, "endPort": 80}]), "spec.ingress[0].ports[0]: endPort must not be lower than port"),
    ("ports without protocol", ingress(ports=[{"port": 80}]), "spec.ingress[0].ports[0]: 'protocol' is a required property"),
    # Class 3: nothing absent or empty means "everything" (once a pruned typo arrived as an absent key).
    ("nat64 {} (a pruned `cidr:` typo)", egress(to=[{"nat64": {}}]),
     "spec.egress[0].to[0].nat64: nat64 needs exactly one of cidrs (a non-empty list) or any: true"),
    ("nat64 empty cidrs", egress(to=[{"nat64": {"cidrs": []}}]), "spec.egress[0].to[0].nat64.cidrs: [] should be non-empty"),
    ("nat64 cidr typo", egress(to=[{"nat64": {"cidr": ["192.0.2.0/24"]}}]),
     "spec.egress[0].to[0].nat64: nat64 needs exactly one of cidrs (a non-empty list) or any: true"),
    ("nat64 any false", egress(to=[{"nat64": {"any": False}}]), "spec.egress[0].to[0].nat64.any: False is not one of [True]"),
    ("nat64 cidrs and any", egress(to=[{"nat64": {"any": True, "cidrs": ["192.0.2.0/24"]}}]),
     "spec.egress[0].to[0].nat64: nat64 needs exactly one of cidrs (a non-empty list) or any: true"),
    ("nat64 0.0.0.0/0", egress(to=[{"nat64": {"cidrs": ["0.0.0.0/0"]}}]), "spec.egress[0].to[0].nat64.cidrs[0]: '0.0.0.0/0' does not match"),
    ("cidr ::/0", egress(to=[{"cidr": "::/0"}]), "spec.egress[0].to[0].cidr: '::/0' does not match"),
    ("empty ports", ingress(ports=[]), "spec.ingress[0].ports: [] should be non-empty"),
    ("ports left out (a pruned `port:` typo)", without(ingress(), "spec", "ingress", 0, "ports"),
     "spec.ingress[0]: 'ports' is a required property"),
    ("from left out (a pruned `form:` typo)", without(ingress(), "spec", "ingress", 0, "from"),
     "spec.ingress[0]: 'from' is a required property"),
    ("to left out", without(egress(), "spec", "egress", 0, "to"), "spec.egress[0]: 'to' is a required property"),
    ("priority left out", without(policy(), "spec", "priority"), "spec: 'priority' is a required property"),
    ("ingress list left out (a pruned `ingres:` typo)", without(policy(), "spec", "ingress"),
     "spec: 'ingress' is a required property"),
    ("egress list left out", without(policy(), "spec", "egress"), "spec: 'egress' is a required property"),
    ("any peer false", ingress(**{"from": [{"any": False}]}), "spec.ingress[0].from[0].any: False is not one of [True]"),
    ("any peer with others", ingress(**{"from": [{"any": True}, {"zone": "web"}]}),
     "spec.ingress[0].from: {any: true} matches every peer; it cannot be combined with other peers"),
    ("any peer with a zone", ingress(**{"from": [{"any": True, "zone": "web"}]}),
     "spec.ingress[0].from[0]: a peer needs exactly one of zone, cidr, nat64, any"),
    ("all traffic with other ports", ingress(ports=[{"protocol": "Any"}, {"protocol": "TCP", "port": 1}]),
     "spec.ingress[0].ports: {protocol: Any} means all traffic; it cannot be combined with other entries"),
    ("all traffic with a port", ingress(ports=[{"protocol": "Any", "port": 1}]),
     "spec.ingress[0].ports[0]: protocol Any (all traffic) takes no port, endPort, icmpType or any"),
    ("any without protocol (a pruned `protocol` typo)", ingress(ports=[{"any": True}]),
     "spec.ingress[0].ports[0]: 'protocol' is a required property"),
    ("TCP without port (a pruned `port` typo)", ingress(ports=[{"protocol": "TCP"}]),
     "spec.ingress[0].ports[0]: a port entry needs exactly one of port, icmpType or any: true"),
    ("ICMPv6 without type", ingress(ports=[{"protocol": "ICMPv6"}]),
     "spec.ingress[0].ports[0]: a port entry needs exactly one of port, icmpType or any: true"),
    ("port and any", ingress(ports=[{"protocol": "TCP", "port": 80, "any": True}]),
     "spec.ingress[0].ports[0]: a port entry needs exactly one of port, icmpType or any: true"),
    ("empty port entry", ingress(ports=[{}]), "spec.ingress[0].ports[0]: 'protocol' is a required property"),
    ("port any false", ingress(ports=[{"protocol": "UDP", "any": False}]), "spec.ingress[0].ports[0].any: False is not one of [True]"),
    ("Deny without scope", ingress(action="Deny", **{"from": [{"zone": "web"}]}),
     "spec.ingress[0]: a Deny rule writes the scope of its zone peers"),
    ("Deny without endPort", ingress(action="Deny", ports=[{"protocol": "TCP", "port": 22}]),
     "spec.ingress[0]: a Deny rule writes endPort on its ports"),
    ("peer key typo", ingress(**{"from": [{"zones": "web"}]}),
     "spec.ingress[0].from[0]: a peer needs exactly one of zone, cidr, nat64, any"),
    ("port key typo", ingress(ports=[{"protocol": "TCP", "prot": 443}]),
     "spec.ingress[0].ports[0]: a port entry needs exactly one of port, icmpType or any: true"),
    ("Port: 22 (a typo of port)", ingress(ports=[{"protocol": "TCP", "Port": 22}]),
     "spec.ingress[0].ports[0]: a port entry needs exactly one of port, icmpType or any: true"),
    ("empty namespaceSelector", zone(namespaceSelector={}), "spec.namespaceSelector: {} should be non-empty"),
    ("empty matchLabels", zone(namespaceSelector={"matchLabels": {}}), "spec.namespaceSelector.matchLabels: {} should be non-empty"),
    ("empty matchExpressions", zone(namespaceSelector={"matchExpressions": []}),
     "spec.namespaceSelector.matchExpressions: [] should be non-empty"),
    ("empty namespaces", zone(namespaces=[]), "spec.namespaces: [] should be non-empty"),
    ("zone egress {}", zone(egress={}), "spec.egress: 'pool' is a required property"),
]


@pytest.mark.parametrize("obj,expected", [pytest.param(o, e, id=i) for i, o, e in BROKEN])
def test_broken_crs_fail_with_message(obj: dict, expected: str) -> None:
    errors = validate(obj)
    assert any(expected in e for e in errors), errors


# Mistyped keys the schema alone accepts: every object of the spec keeps unknown fields
# (x-kubernetes-preserve-unknown-fields), so the API server stores them as written, whatever the
# client's field validation, and the controller's webhooks and parser refuse them (with the key meant).
# Nothing under spec is ever pruned (tests/unit/test_pruning.py).
TYPOS = [
    ("typo in a zone field", zone(namespace=["a"]), "spec: unknown field(s) namespace"),
    ("zone egress typo", {**zone(), "spec": {"id": 0x2000, "namespaces": ["a"],
                                             "egres": {"pool": "100.64.21.0/24", "address": "198.51.100.21"}}},
     "spec: unknown field(s) egres (did you mean egress?)"),
    ("zone egress address typo", zone(egress={"pool": "100.64.21.0/24", "address": "198.51.100.21", "adress": "x"}),
     "spec.egress: unknown field(s) adress"),
    ("selector expression typo", zone(namespaceSelector={"matchExpressions": [{"key": "k", "operator": "Exists", "valeus": []}]}),
     "spec.namespaceSelector.matchExpressions[0]: unknown field(s) valeus (did you mean values?)"),
    ("from in an egress rule", egress(**{"from": [{"zone": "web"}]}), "spec.egress[0]: unknown field(s) from (an egress rule uses 'to')"),
    ("defaultAction typo", policy(defaultAction={"ingres": "Allow"}),
     "spec.defaultAction: unknown field(s) ingres (did you mean ingress?)"),
    ("defaultAction key typo", policy(defaultActon={"ingress": "Allow"}),
     "spec: unknown field(s) defaultActon (did you mean defaultAction?)"),
    ("description typo", policy(descripton="x"), "spec: unknown field(s) descripton (did you mean description?)"),
    ("rule name typo", ingress(nmae="web"), "spec.ingress[0]: unknown field(s) nmae"),
    ("scope key typo", ingress(**{"from": [{"zone": "web", "scop": "Datacenter"}]}),
     "spec.ingress[0].from[0]: unknown field(s) scop (did you mean scope?)"),
    ("endPort typo in an Allow rule", ingress(ports=[{"protocol": "TCP", "port": 8000, "endport": 8999}]),
     "spec.ingress[0].ports[0]: unknown field(s) endport (did you mean endPort?)"),
    ("Port beside port", ingress(ports=[{"protocol": "TCP", "port": 22, "Port": 23}]),
     "spec.ingress[0].ports[0]: unknown field(s) Port"),
    ("nat64 key typo beside cidrs", egress(to=[{"nat64": {"cidrs": ["192.0.2.0/24"], "ayn": True}}]),
     "spec.egress[0].to[0].nat64: unknown field(s) ayn (did you mean any?)"),
]


@pytest.mark.parametrize("obj,expected", [pytest.param(o, e, id=i) for i, o, e in TYPOS])
def test_typos_are_kept_by_the_schema_and_refused_by_the_parser(obj: dict, expected: str) -> None:
    assert validate(obj) == []
    with pytest.raises(ValidationError) as err:
        if obj["kind"] == "SecurityZone":
            parse_zone(obj, CONFIG.layout)
        else:
            parse_policy(obj, None)  # as the webhook checks it: without looking zones up
    assert expected in str(err.value)


# --- schema and core parser agree ---------------------------------------------------------------------
CONFIG = parse_config(yaml.safe_load((EXAMPLES / "config.yaml").read_text()))
REGISTRY = ZoneRegistry.from_objects(CONFIG.layout, examples("SecurityZone"))


def core_ok(obj: dict) -> bool:
    try:
        if obj["kind"] == "SecurityZone":
            parse_zone(obj, CONFIG.layout)
        else:
            parse_policy(obj, REGISTRY)
    except ValidationError:
        return False
    return True


GOOD = [
    zone(),
    zone(egress={"pool": "100.64.21.0/24", "address": "198.51.100.21"}, description="x"),
    zone(namespaceSelector={"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["v"]}]}),
    policy(defaultAction={"egress": "Deny"}, ingress=[]),
    ingress(**{"from": [{"zone": "web", "scope": "Datacenter"}, {"cidr": "fd00:10:244:0:2000::/ffff:ffff:ffff:0:ffff::"}]}),
    egress(to=[{"nat64": {"any": True}}, {"nat64": {"cidrs": ["198.51.100.0/24", "192.0.2.1"]}}, {"cidr": "2001:db8::1"}]),
    ingress(ports=[{"protocol": "SCTP", "port": 1, "endPort": 65535}, {"protocol": "ICMPv6", "any": True},
                   {"protocol": "UDP", "port": 53, "endPort": 53}, {"protocol": "TCP", "any": True}]),
    policy(priority=0, zones=["dmz", "web"], ingress=[{"action": "Deny", "from": ANY, "ports": ALL},
                                                      {"action": "Allow", "from": ANY, "ports": ALL}]),
    ingress(action="Deny", ports=[{"protocol": "TCP", "port": 22, "endPort": 22}, {"protocol": "ICMPv6", "icmpType": 128}],
            **{"from": [{"zone": "web", "scope": "Cluster"}, {"cidr": "2001:db8::/32"}]}),
    zone(namespaceSelector={"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "Exists"}]}),
]
# Objects both must refuse (a sample of BROKEN, each a different reason).
BAD = [o for i, o, _ in BROKEN if i in {
    "zone id 0", "zone name not a DNS label", "egress pool IPv6", "In without values", "policy without zones",
    "zone listed twice", "priority too high", "policy that does nothing", "rule without action", "action case",
    "rule name twice", "empty peer list", "peer with two kinds", "scope on a cidr",
    "IPv4 cidr", "protocol case", "port 70000", "ICMPv6 with a port", "icmpType on TCP", "endPort below port",
    "endPort without port", "egress pool too small", "bad namespace name",
    "nat64 {} (a pruned `cidr:` typo)", "nat64 empty cidrs", "nat64 cidr typo", "nat64 any false", "nat64 cidrs and any",
    "nat64 0.0.0.0/0", "cidr ::/0", "empty ports", "ports left out (a pruned `port:` typo)",
    "from left out (a pruned `form:` typo)", "to left out", "priority left out",
    "ingress list left out (a pruned `ingres:` typo)", "egress list left out", "any peer false", "any peer with others",
    "any peer with a zone", "all traffic with other ports", "TCP without port (a pruned `port` typo)",
    "ICMPv6 without type", "port and any", "empty port entry", "all traffic with a port",
    "any without protocol (a pruned `protocol` typo)", "port any false", "Deny without scope",
    "Deny without endPort", "peer key typo", "port key typo", "Port: 22 (a typo of port)",
    "empty namespaceSelector", "empty matchLabels", "empty matchExpressions", "empty namespaces", "zone egress {}",
}]
# Where they differ, on purpose: the schema cannot know the layout, the other zones or mask bits;
# the core is lenient where the API server has already normalised the input.
ONLY_CORE_REFUSES = [
    ingress(**{"from": [{"zone": "no-such-zone"}]}),  # zone names are checked against the registry
    egress(to=[{"cidr": "fd00:10:244:0:2000::1/ffff:ffff:ffff:0:ffff::"}]),  # bits outside the mask
    egress(to=[{"nat64": {"cidrs": ["198.51.100.1/24"]}}]),  # host bits set in an IPv4 CIDR
    zone(id=0x1_0000),  # does not fit the configured 16-bit zone field
    zone(egress={"pool": "100.64.21.1/24", "address": "198.51.100.21"}),  # host bits in the pool
    egress(to=[{"cidr": "::/::"}]),  # a zero wildcard mask: every address (write {any: true})
    zone(egress={"pool": "100.64.21.0/24", "address": "127.0.0.1"}),  # loopback: not a source address
    zone(egress={"pool": "100.64.21.0/24", "address": "224.0.0.1"}),  # multicast
    zone(egress={"pool": "100.64.21.0/24", "address": "0.0.0.0"}),  # unspecified
    zone(egress={"pool": "127.0.0.0/24", "address": "198.51.100.21"}),  # a loopback pool
    # Unknown keys are kept by the API server (preserve-unknown-fields), so that the controller refuses
    # them (more in TYPOS): pruned, matchLabels alone would select more namespaces than meant.
    zone(namespaceSelector={"matchLabels": {"a": "b"}, "matchExpresions": [{"key": "k", "operator": "Exists"}]}),
    zone(namespaceSelector={"matchLabel": {"a": "b"}}),
]
ONLY_SCHEMA_REFUSES = [
    zone(id="0x2000"),  # core accepts hex strings from files; the API stores integers (YAML 0x2000 is one)
]


@pytest.mark.parametrize("obj", GOOD)
def test_good_inputs_pass_both(obj: dict) -> None:
    assert validate(obj) == []
    assert core_ok(obj)


@pytest.mark.parametrize("obj", BAD)
def test_bad_inputs_fail_both(obj: dict) -> None:
    assert validate(obj) != []
    assert not core_ok(obj)


def test_known_differences_stay_known() -> None:
    assert len(BAD) == 58
    for obj in ONLY_CORE_REFUSES:
        assert validate(obj) == [] and not core_ok(obj), obj["spec"]
    for obj in ONLY_SCHEMA_REFUSES:
        assert validate(obj) != [] and core_ok(obj), obj["spec"]
