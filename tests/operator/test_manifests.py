"""Every manifest validates offline against the Kubernetes schemas, and says what zonectl promises.

Schemas: the ``kubernetes-validate`` package (the upstream OpenAPI schemas as JSON schema, strict mode:
unknown fields fail). Custom resources (ClusterKopfPeering, the examples) are validated against the
CRDs in the same bundle. The bundle is ``kubectl kustomize manifests`` when kubectl is installed, and
a small reader of the kustomization's ``resources`` otherwise (the two are compared when both exist).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from opkit import EXAMPLES, ROOT
from zonectl.files import load_documents
from zonectl.operator import gatewayfeed
from zonectl.operator.config import parse_controller_config
from zonectl.operator.handlers import POD_WEBHOOK, POLICY_WEBHOOK, ZONE_WEBHOOK

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (offline Kubernetes schemas)")

MANIFESTS = ROOT / "manifests"
K8S_VERSION = "1.30.0"  # oldest Kubernetes zonectl supports (kind's node image for OVN-Kubernetes is newer)


def read_kustomization(directory: Path) -> list[dict[str, Any]]:
    """The objects a kustomization's ``resources`` name, recursively (no transformers)."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out: list[dict[str, Any]] = []
    for res in k.get("resources") or []:
        path = (directory / res).resolve()
        if path.is_dir():
            out.extend(read_kustomization(path))
        else:
            out.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return out


def ident(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@pytest.fixture(scope="module")
def bundle() -> list[dict[str, Any]]:
    objects = read_kustomization(MANIFESTS)
    if shutil.which("kubectl"):
        built = list(yaml.safe_load_all(subprocess.run(["kubectl", "kustomize", str(MANIFESTS)], check=True,
                                                       capture_output=True, text=True, timeout=60).stdout))
        assert sorted(map(ident, built)) == sorted(map(ident, objects))
        objects = built
    return objects


def by_kind(bundle: list[dict], kind: str) -> list[dict]:
    return [o for o in bundle if o["kind"] == kind]


def one(bundle: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in bundle if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def crd_schemas(bundle: list[dict]) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the served version's openAPIV3Schema."""
    out = {}
    for crd in by_kind(bundle, "CustomResourceDefinition"):
        spec = crd["spec"]
        for v in spec["versions"]:
            out[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return out


def test_every_object_validates_against_the_kubernetes_schemas(bundle: list[dict]) -> None:
    schemas = crd_schemas(bundle)
    checked = 0
    for obj in bundle:
        key = (obj["apiVersion"], obj["kind"])
        if key in schemas:
            jsonschema.validate(obj, schemas[key])
        else:
            kv.validate(obj, K8S_VERSION, strict=True)  # raises with the field path
        checked += 1
    assert checked == len(bundle) >= 20


def test_validation_catches_a_broken_manifest(bundle: list[dict]) -> None:
    """The check above can fail: a typo'd field in the Deployment is rejected."""
    import copy

    dep = copy.deepcopy(one(bundle, "Deployment", "zonectl-controller"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, K8S_VERSION, strict=True)


def test_crds_accept_the_examples(bundle: list[dict]) -> None:
    schemas = crd_schemas(bundle)
    docs = load_documents([EXAMPLES / "zones.yaml", EXAMPLES / "policies.yaml"])
    assert len(docs) == 6
    for doc in docs:
        jsonschema.validate(doc, schemas[(doc["apiVersion"], doc["kind"])])


def test_controller_runs_locked_down(bundle: list[dict]) -> None:
    dep = one(bundle, "Deployment", "zonectl-controller")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert c["args"] == ["operator", "run", "--config", "/etc/zonectl/zonectl.yaml"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert not c.get("env")  # settings come from the one config file only
    assert c["image"] == "localhost/zonectl:dev" or c["image"] == "zonectl"


def test_gateway_runs_with_net_admin_only(bundle: list[dict]) -> None:
    ds = one(bundle, "DaemonSet", "zonectl-gateway")
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["hostNetwork"] is True and pod["nodeSelector"] == {"zonectl.io/gateway": "true"}
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert not c["securityContext"].get("privileged") and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert c["args"][:2] == ["gateway", "run"]


def test_webhooks_point_at_the_handlers_and_never_lock_out_the_system(bundle: list[dict]) -> None:
    mwc = one(bundle, "MutatingWebhookConfiguration", "zonectl")
    vwc = one(bundle, "ValidatingWebhookConfiguration", "zonectl")
    svc = one(bundle, "Service", "zonectl-webhook")
    paths = {w["clientConfig"]["service"]["path"] for w in mwc["webhooks"] + vwc["webhooks"]}
    assert paths == {f"/{POD_WEBHOOK}", f"/{POLICY_WEBHOOK}", f"/{ZONE_WEBHOOK}"}
    (pod_hook,) = mwc["webhooks"]
    assert pod_hook["failurePolicy"] == "Fail" and "objectSelector" not in pod_hook
    (expr,) = pod_hook["namespaceSelector"]["matchExpressions"]
    assert expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "NotIn"
    assert {"kube-system", "zonectl-system"} <= set(expr["values"])
    for w in mwc["webhooks"] + vwc["webhooks"]:
        ref = w["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["port"]) == ("zonectl-webhook", "zonectl-system", svc["spec"]["ports"][0]["port"])
        assert w["timeoutSeconds"] <= 10 and w["sideEffects"] == "None"


def test_rbac_is_least_privilege(bundle: list[dict]) -> None:
    rules = [r for o in by_kind(bundle, "ClusterRole") + by_kind(bundle, "Role") for r in o["rules"]]
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r.get("apiGroups", [])
        assert "secrets" not in r["resources"]
        if "pods" in r["resources"] or "namespaces" in r["resources"]:
            assert set(r["verbs"]) == {"get", "list", "watch"}
        if "configmaps" in r["resources"]:
            assert r["resourceNames"] == ["zonectl-gateway-rules"] and "create" not in r["verbs"]
    (binding,) = by_kind(bundle, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "zonectl-controller", "namespace": "zonectl-system"}]


def test_config_map_is_a_valid_zonectl_config(bundle: list[dict]) -> None:
    from zonectl.gateway.config import parse_gateway

    body = yaml.safe_load(one(bundle, "ConfigMap", "zonectl-config")["data"]["zonectl.yaml"])
    config = parse_controller_config(body)
    assert config.operator.webhook.cert_file == "/etc/zonectl/tls/tls.crt"
    assert config.operator.gateway_configmap == "zonectl-gateway-rules" and config.ovn["nb"].startswith("tcp:")
    parse_gateway(config.core.section("gateway"))
    inputs = json.loads(one(bundle, "ConfigMap", "zonectl-gateway-rules")["data"][gatewayfeed.DATA_KEY])
    registry, ruleset = gatewayfeed.load_document(inputs, config.core.layout)
    assert len(registry) == 0 and len(ruleset) == 0


def test_kind_config_is_ipv6_only() -> None:
    cfg = yaml.safe_load((MANIFESTS / "kind" / "kind-ipv6.yaml").read_text())
    assert cfg["kind"] == "Cluster" and cfg["networking"]["ipFamily"] == "ipv6"
    assert cfg["networking"]["disableDefaultCNI"] is True
    assert cfg["networking"]["podSubnet"] == "fd00:10:244::/48"
