"""The CRDs in a real API server: kubectl apply of crds/ and examples/, every broken CR of the unit
layer refused by kube-apiserver itself (structural schema and CEL evaluated by the API server, not a
library) with the message it prints, and the printer columns as ``kubectl get`` shows them."""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeplane import ROOT, ZonectlCluster, wait, zone_id

# the unit layer's table of broken CRs (one source: a case added there is sent to the API server too)
_spec = importlib.util.spec_from_file_location("unit_test_crds", ROOT / "tests" / "unit" / "test_crds.py")
assert _spec is not None and _spec.loader is not None
unit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(unit)

NOT_CHECKED = "some validation rules were not checked because the object was invalid"
# What kube-apiserver answers (a substring of its message), per case of unit.BROKEN.
API_MESSAGES = {
    "zone id 0": "spec.id: Invalid value: 0: spec.id in body should be greater than or equal to 1",
    "zone id as string": 'spec.id: Invalid value: "string": spec.id in body must be of type integer: "string"',
    "zone id above 32 bits": "spec.id in body should be less than or equal to 4294967295",
    "zone without id": "spec.id: Required value",
    "zone without spec": "spec: Required value",
    "zone name not a DNS label": "metadata.name: Invalid value: \"DMZ_1\": a lowercase RFC 1123 subdomain",
    "namespace listed twice": 'spec.namespaces[1]: Duplicate value: "a"',
    "bad namespace name": "spec.namespaces[0] in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
    "egress pool too small": 'spec.egress.pool: Invalid value: "100.64.21.0/31"',
    "egress pool IPv6": 'spec.egress.pool: Invalid value: "fd00::/64"',
    "egress address missing": "spec.egress.address: Required value",
    "egress address bad": 'spec.egress.address: Invalid value: "198.51.100.256"',
    "selector operator": ('matchExpressions[0].operator: Unsupported value: "Equals": '
                          'supported values: "In", "NotIn", "Exists", "DoesNotExist"'),
    "In without values": "matchExpressions[0]: Invalid value: operators In and NotIn need at least one value",
    "Exists with values": "matchExpressions[0]: Invalid value: operators Exists and DoesNotExist take no values",
    "policy without zones": "spec.zones in body should have at least 1 items",
    "zone listed twice": 'spec.zones[1]: Duplicate value: "dmz"',
    "priority too high": "spec.priority in body should be less than or equal to 999",
    "priority negative": "spec.priority in body should be greater than or equal to 0",
    "default action case": 'spec.defaultAction.ingress: Unsupported value: "deny": supported values: "Allow", "Deny"',
    "policy that does nothing": "spec: Invalid value: has no ingress or egress rules and no defaultAction; it would do nothing",
    "rule without action": "spec.ingress[0].action: Required value",
    "action case": 'spec.ingress[0].action: Unsupported value: "allow"',
    "rule name twice": "spec.ingress: Invalid value: rule names must be unique",
    "empty peer list": "spec.ingress[0].from in body should have at least 1 items",
    "peer with two kinds": "spec.ingress[0].from[0]: Invalid value: a peer needs exactly one of zone, cidr, nat64",
    "empty peer": "spec.ingress[0].from[0]: Invalid value: a peer needs exactly one of zone, cidr, nat64",
    "scope on a cidr": "spec.ingress[0].from[0]: Invalid value: scope only applies to zone peers",
    "scope case": 'spec.ingress[0].from[0].scope: Unsupported value: "datacenter"',
    "IPv4 cidr": 'spec.egress[0].to[0].cidr: Invalid value: "10.0.0.0/8"',
    "prefix length 129": 'spec.egress[0].to[0].cidr: Invalid value: "2001:db8::/129"',
    "nat64 IPv6 cidr": 'spec.egress[0].to[0].nat64.cidrs[0]: Invalid value: "2001:db8::/32"',
    "protocol case": 'spec.ingress[0].ports[0].protocol: Unsupported value: "tcp": supported values: "TCP", "UDP", "SCTP", "ICMPv6"',
    "port 0": "spec.ingress[0].ports[0].port in body should be greater than or equal to 1",
    "port 70000": "spec.ingress[0].ports[0].port in body should be less than or equal to 65535",
    "port as string": "spec.ingress[0].ports[0].port in body must be of type integer",
    "ICMPv6 with a port": "spec.ingress[0].ports[0]: Invalid value: ICMPv6 has no ports (use icmpType)",
    "icmpType on TCP": "spec.ingress[0].ports[0]: Invalid value: icmpType only applies to protocol ICMPv6",
    "icmpType 256": "spec.ingress[0].ports[0].icmpType in body should be less than or equal to 255",
    "endPort without port": "spec.ingress[0].ports[0]: Invalid value: endPort needs port",
    "endPort below port": "spec.ingress[0].ports[0]: Invalid value: endPort must not be lower than port",
    "ports without protocol": "spec.ingress[0].ports[0].protocol: Required value",
    "nat64 cidr typo": "spec.egress[0].to[0].nat64: Invalid value: nat64 needs exactly one of cidrs (a non-empty list) or any: true",
    "peer key typo": "spec.ingress[0].from[0]: Invalid value: a peer needs exactly one of zone, cidr, nat64, any",
    "port key typo": "spec.ingress[0].ports[0]: Invalid value: a port entry needs exactly one of port, icmpType or any: true",
    "Port: 22 (a typo of port)": "spec.ingress[0].ports[0]: Invalid value: a port entry needs exactly one of port, icmpType or any: true",
}

# More than the unit layer can judge: limits and names only the API server applies.
MORE = [
    ("policy name not a DNS subdomain", unit.renamed(unit.policy(), "Web_Policy"),
     'metadata.name: Invalid value: "Web_Policy": a lowercase RFC 1123 subdomain'),
    ("unknown top-level field", {**unit.zone(), "specs": {}}, 'strict decoding error: unknown field "specs"'),
    ("zone id not a whole number", unit.zone(id=8192.5), "spec.id in body must be of type int64"),
    ("too many governed zones", unit.policy(zones=[f"z{i}" for i in range(65)]), "spec.zones: Too many: 65: must have at most 64 items"),
    ("zone name in a policy too long", unit.policy(zones=["z" * 64]), "spec.zones[0]: Too long: may not be more than 63"),
    ("too many rules", unit.policy(ingress=[{"name": f"r{i}", "action": "Allow"} for i in range(201)]),
     "spec.ingress: Too many: 201: must have at most 200 items"),
    ("namespace name too long", unit.zone(namespaces=["n" * 64]), "spec.namespaces[0]: Too long: may not be more than 63"),
    ("priority as string", unit.policy(priority="100"), "spec.priority in body must be of type integer"),
]

CASES = [(name, obj, API_MESSAGES.get(name)) for name, obj, _ in unit.BROKEN] + MORE


def create(cluster: ZonectlCluster, obj: dict[str, Any], **kw: Any) -> Any:
    """Create a zonectl CR with kubectl's defaults (strict field validation), optionally as a dry run."""
    custom = cluster.custom
    if obj["kind"] == "SecurityZone":
        return custom.create_cluster_custom_object("zonectl.io", "v1alpha1", "securityzones", obj,
                                                   field_validation="Strict", **kw)
    return custom.create_namespaced_custom_object("zonectl.io", "v1alpha1", obj["metadata"]["namespace"],
                                                  "securityzonepolicies", obj, field_validation="Strict", **kw)


def test_crds_apply_and_are_structural(zonectl_cluster: ZonectlCluster) -> None:
    out = zonectl_cluster.kubectl("apply", "-k", str(ROOT / "crds")).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/securityzones.zonectl.io" in out
    for name in ("securityzones.zonectl.io", "securityzonepolicies.zonectl.io"):
        crd = json.loads(zonectl_cluster.kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
        assert "NonStructuralSchema" not in conditions, crd["status"]["conditions"]
    explained = zonectl_cluster.kubectl("explain", "securityzonepolicy.spec.ingress.ports.protocol").stdout
    assert "ICMPv6" in explained  # the schema is published to clients (OpenAPI v3)


def test_examples_apply(examples_applied: str) -> None:
    for line in ("securityzone.zonectl.io/dmz", "securityzone.zonectl.io/web", "securityzone.zonectl.io/db"):
        assert line in examples_applied


@pytest.mark.parametrize("name,obj,expected", [pytest.param(n, o, e, id=n) for n, o, e in CASES])
def test_broken_cr_refused_by_the_api_server(zonectl_cluster: ZonectlCluster, name: str, obj: dict, expected: str | None) -> None:
    from kubernetes.client.exceptions import ApiException

    obj = copy.deepcopy(obj)
    with pytest.raises(ApiException) as err:
        create(zonectl_cluster, obj, dry_run="All")
    message = json.loads(err.value.body)["message"]
    assert err.value.status in (400, 422), message
    if expected is None:  # a case the unit layer added since: at least the same field must be named
        expected = next(e for n, _, e in unit.BROKEN if n == name).split(":")[0]
    assert expected in message


def test_kubectl_prints_the_refusal(zonectl_cluster: ZonectlCluster, tmp_path: Path) -> None:
    name, obj, _ = next(c for c in unit.BROKEN if c[0] == "ICMPv6 with a port")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(obj))
    proc = zonectl_cluster.kubectl("apply", "-f", str(path), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'The SecurityZonePolicy "p" is invalid: spec.ingress[0].ports[0]: Invalid value: '
        "ICMPv6 has no ports (use icmpType)"), proc.stderr


def columns(text: str) -> tuple[list[str], list[list[str]]]:
    head, *rows = text.strip().splitlines()
    return head.split(), [r.split() for r in rows]


def test_printer_columns(zonectl_cluster: ZonectlCluster, examples_applied: str) -> None:
    def zones_counted() -> Any:
        head, rows = columns(zonectl_cluster.kubectl("get", "securityzones").stdout)
        by_name = {r[0]: dict(zip(head, r, strict=True)) for r in rows}
        return by_name if all(by_name.get(z, {}).get("READY") == "True" for z in ("dmz", "web", "db")) else None

    zones = wait("the example zones Ready", zones_counted, timeout=60)
    head = columns(zonectl_cluster.kubectl("get", "securityzones").stdout)[0]
    assert head == ["NAME", "ID", "NAMESPACES", "PODS", "MISMATCH", "READY", "AGE"]
    assert zones["dmz"]["ID"] == "8192" and zones["dmz"]["NAMESPACES"] == '["dmz-apps"]'
    assert zones["web"]["NAMESPACES"] == '["web-apps","dmz-apps"]'

    def policies_ready() -> Any:
        head, rows = columns(zonectl_cluster.kubectl("get", "securityzonepolicies", "-A").stdout)
        got = [dict(zip(head, r, strict=True)) for r in rows if r[0] == "zonectl-system"]
        return got if got and all(p["READY"] == "True" for p in got) else None

    policies = wait("the example policies Ready", policies_ready, timeout=60)
    head = columns(zonectl_cluster.kubectl("get", "securityzonepolicies", "-A").stdout)[0]
    assert head == ["NAMESPACE", "NAME", "ZONES", "PRIORITY", "RULES", "READY", "AGE"]
    for row in policies:
        body = json.loads(zonectl_cluster.kubectl("-n", "zonectl-system", "get", "securityzonepolicy", row["NAME"],
                                                  "-o", "json").stdout)
        assert row["RULES"] == str(body["status"]["ruleCount"]) and int(row["RULES"]) > 0
        assert row["PRIORITY"] == str(body["spec"].get("priority", 500)) or row["PRIORITY"] == "<none>"


# Every key of the example and rich objects misspelled (tests/unit/test_pruning.py), and the typos the
# schema alone accepts (unit.TYPOS): sent by a client without strict field validation, which the API
# server would once have pruned (`Port: 22` made an allow-all-TCP port entry).
sys.modules.setdefault("test_crds", unit)  # test_pruning imports it by that name
_pspec = importlib.util.spec_from_file_location("unit_test_pruning", ROOT / "tests" / "unit" / "test_pruning.py")
assert _pspec is not None and _pspec.loader is not None
pruning = importlib.util.module_from_spec(_pspec)
_pspec.loader.exec_module(pruning)
TYPOS = ([(name, obj, expected) for name, obj, expected in unit.TYPOS]
         + [(p.id, pruning.misspelled(*p.values), f"unknown field(s) {pruning.typo_key(p.values[1])}")
            for p in pruning.TYPO_CASES])
_typo_names = itertools.count()


def renamed(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` under a name (and zone id) of its own: what is judged is the typo, not a clash."""
    obj = copy.deepcopy(obj)
    obj["metadata"]["name"] = f"typo-{next(_typo_names)}"
    if obj["kind"] == "SecurityZonePolicy":
        obj["metadata"]["namespace"] = "zonectl-system"
    elif "id" in obj["spec"]:
        obj["spec"]["id"] = zone_id()
    return obj


@pytest.mark.parametrize("validation", ["Ignore", "Strict"])
@pytest.mark.parametrize("name,obj,expected", [pytest.param(*t, id=t[0]) for t in TYPOS])
def test_a_typo_is_refused_from_every_client(zonectl_cluster: ZonectlCluster, name: str, obj: dict,
                                             expected: str, validation: str) -> None:
    """kubectl asks for strict field validation, many clients do not (Ignore): the answer is the same."""
    from kubernetes.client.exceptions import ApiException

    obj = renamed(obj)
    custom = zonectl_cluster.custom
    with pytest.raises(ApiException) as err:
        if obj["kind"] == "SecurityZone":
            custom.create_cluster_custom_object("zonectl.io", "v1alpha1", "securityzones", obj,
                                                field_validation=validation, dry_run="All")
        else:
            custom.create_namespaced_custom_object("zonectl.io", "v1alpha1", "zonectl-system", "securityzonepolicies",
                                                   obj, field_validation=validation, dry_run="All")
    message = json.loads(err.value.body)["message"]
    if unit.validate(obj):  # the schema or a CEL rule refuses what is left without the key meant
        assert err.value.status == 422, message
    else:  # kept as written, so the controller's webhook sees it and names it
        assert err.value.status == 400, message
        assert "denied the request" in message and expected in message, message
