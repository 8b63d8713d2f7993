"""Every manifest validates offline against the Kubernetes schemas, and says what zonectl promises.

Schemas: the ``kubernetes-validate`` package (the upstream OpenAPI schemas as JSON schema, strict mode:
unknown fields fail). Custom resources (ClusterKopfPeering, the examples) are validated against the
CRDs in the same bundle. The bundle is ``kubectl kustomize`` of manifests/ and manifests/webhooks/ when
kubectl is installed, and a small reader of the kustomizations' ``resources`` otherwise (the two are
compared when both exist). The optional components (cert-manager, gateway-sysctl, gateway-metrics-proxy)
and the systemd unit are checked too; manifests/install.sh is run against a recording fake kubectl
(test_install_script.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from opkit import EXAMPLES, ROOT
from zonectl.inputs import load_documents
from zonectl.core import published
from zonectl.operator.config import parse_controller_config
from zonectl.operator.handlers import POD_WEBHOOK, POLICY_WEBHOOK, ZONE_WEBHOOK

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (offline Kubernetes schemas)")

MANIFESTS = ROOT / "manifests"
KUSTOMIZATIONS = (MANIFESTS, MANIFESTS / "webhooks")  # in apply order: webhooks last (manifests/install.sh)
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


def kustomize(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def build(directory: Path) -> list[dict[str, Any]]:
    objects = read_kustomization(directory)
    if shutil.which("kubectl"):
        built = kustomize(directory)
        assert sorted(map(ident, built)) == sorted(map(ident, objects))
        objects = built
    return objects


@pytest.fixture(scope="module")
def bundle() -> list[dict[str, Any]]:
    return [o for d in KUSTOMIZATIONS for o in build(d)]


def overlay(tmp_path: Path, base: Path, *components: str) -> list[dict[str, Any]]:
    """``base`` with optional components, built by kubectl kustomize (as manifests/install.sh does)."""
    if not shutil.which("kubectl"):
        pytest.skip("kustomize components need kubectl")
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(base, tmp_path)],
        "components": [os.path.relpath(MANIFESTS / "components" / c, tmp_path) for c in components]}))
    return kustomize(tmp_path)


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
    assert c["args"] == ["operator", "run", "--config", "/etc/zonectl/zonectl.yaml", "--metrics-address", "$(POD_IP)"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # settings come from the one config file; only the pod's own address (where /metrics listens) does not
    assert c["env"] == [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
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
    assert "initContainers" not in pod  # the privileged forwarding init container is opt-in (component)


def test_metrics_listen_on_loopback_or_the_pods_own_address(bundle: list[dict]) -> None:
    """No daemon serves /metrics on every address: the host-network gateway on loopback (its default,
    which the kubelet probes there), the controller on its pod address."""
    from zonectl.gateway.config import DEFAULT_METRICS, parse_gateway

    config = parse_controller_config(yaml.safe_load(one(bundle, "ConfigMap", "zonectl-config")["data"]["zonectl.yaml"]))
    assert config.operator.metrics_address == "::1"  # what --metrics-address $(POD_IP) overrides
    gw = one(bundle, "DaemonSet", "zonectl-gateway")["spec"]["template"]["spec"]
    (c,) = gw["containers"]
    assert "--metrics-listen" not in c["args"] and "ports" not in c
    assert parse_gateway({"uplink": "eth1"}).metrics_listen == DEFAULT_METRICS
    probe = c["livenessProbe"]["httpGet"]
    assert (probe["host"], probe["port"]) == (DEFAULT_METRICS.host, DEFAULT_METRICS.port) == ("::1", 9464)
    ctl = one(bundle, "Deployment", "zonectl-controller")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in ctl["ports"]}
    assert ports["metrics"] == config.operator.metrics_port and ports["health"] == config.operator.liveness_port


def test_gateway_metrics_proxy_component(tmp_path: Path) -> None:
    from zonectl.gateway.config import DEFAULT_METRICS

    objects = overlay(tmp_path, MANIFESTS, "gateway-metrics-proxy")
    ds = one(objects, "DaemonSet", "zonectl-gateway")
    for obj in (ds, *[o for o in objects if o["metadata"]["name"].startswith("zonectl-metrics-")]):
        kv.validate(obj, K8S_VERSION, strict=True)
    pod = ds["spec"]["template"]["spec"]
    gateway, proxy = pod["containers"]
    args = dict(a.split("=", 1) for a in proxy["args"])
    assert args["--secure-listen-address"] == f"[$(HOST_IP)]:{DEFAULT_METRICS.port}"  # the node's address only
    assert proxy["env"] == [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]
    assert args["--upstream"] == f"http://{DEFAULT_METRICS}/" and args["--allow-paths"] == "/metrics"
    assert proxy["securityContext"]["runAsUser"] != 0 and proxy["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # the token reaches the proxy only: the gateway container (root, NET_ADMIN) still has no API credentials
    assert pod["automountServiceAccountToken"] is False
    (token,) = [v for v in pod["volumes"] if "projected" in v]
    assert [m["name"] for m in proxy["volumeMounts"]] == [token["name"]]
    assert token["name"] not in {m["name"] for m in gateway["volumeMounts"]}
    binding = one(objects, "ClusterRoleBinding", "zonectl-metrics-proxy")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                    "namespace": ds["metadata"]["namespace"]}]
    assert one(objects, "ClusterRole", "zonectl-metrics-reader")["rules"] == [{"nonResourceURLs": ["/metrics"],
                                                                              "verbs": ["get"]}]


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
            assert set(r["verbs"]) == {"list", "watch"}  # tests/kube/test_rbac.py: all the controller uses
        if "configmaps" in r["resources"]:
            assert r["resourceNames"] == ["zonectl-gateway-rules"] and "create" not in r["verbs"]
    (binding,) = by_kind(bundle, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "zonectl-controller", "namespace": "zonectl-system"}]


def test_config_map_is_a_valid_zonectl_config(bundle: list[dict]) -> None:
    from zonectl.gateway.config import parse_gateway

    body = yaml.safe_load(one(bundle, "ConfigMap", "zonectl-config")["data"]["zonectl.yaml"])
    config = parse_controller_config(body)
    assert config.operator.webhook.cert_file == "/etc/zonectl/tls/tls.crt"
    assert config.operator.gateway_configmap == "zonectl-gateway-rules" and config.ovn.nb.startswith("tcp:")
    parse_gateway(config.core.section("gateway"))
    inputs = json.loads(one(bundle, "ConfigMap", "zonectl-gateway-rules")["data"][published.DATA_KEY])
    registry, ruleset = published.load_document(inputs, config.core.layout)
    assert len(registry) == 0 and len(ruleset) == 0


def test_kind_config_is_ipv6_only() -> None:
    cfg = yaml.safe_load((MANIFESTS / "kind" / "kind-ipv6.yaml").read_text())
    assert cfg["kind"] == "Cluster" and cfg["networking"]["ipFamily"] == "ipv6"
    assert cfg["networking"]["disableDefaultCNI"] is True
    assert cfg["networking"]["podSubnet"] == "fd00:10:244::/48"


# --- install order, the admission policy, the optional components ---------------------------------------
def test_webhook_configurations_come_last_and_alone() -> None:
    """`kubectl apply -k manifests/` cannot block pod creation: the webhook configurations are not in it,
    they are their own kustomization, applied by install.sh once the controller is Ready."""
    webhook_kinds = {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    main, hooks = build(MANIFESTS), build(MANIFESTS / "webhooks")
    assert not [o for o in main if o["kind"] in webhook_kinds]
    assert sorted(map(ident, hooks)) == [("MutatingWebhookConfiguration", "", "zonectl"),
                                         ("ValidatingWebhookConfiguration", "", "zonectl")]
    for hook in (w for o in hooks for w in o["webhooks"]):
        assert "caBundle" not in hook["clientConfig"]  # added at install time from the TLS Secret's CA
    assert (MANIFESTS / "install.sh").stat().st_mode & 0o111


def _cel_list(expression: str) -> list[str]:
    inner = expression[expression.index("[") + 1:expression.index("]")]
    return [s.strip().strip("'") for s in inner.split(",")]


def test_admission_policy_covers_what_the_webhook_leaves_out(bundle: list[dict]) -> None:
    vap = one(bundle, "ValidatingAdmissionPolicy", "zonectl-ipam-hint")
    binding = one(bundle, "ValidatingAdmissionPolicyBinding", "zonectl-ipam-hint")
    assert vap["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"  # GA in 1.30
    assert binding["spec"] == {"policyName": "zonectl-ipam-hint", "validationActions": ["Deny"]}
    spec = vap["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["pods", "pods/status"] and rule["operations"] == ["CREATE", "UPDATE"]
    # exactly the namespaces the pod webhook excludes
    (pod_hook,) = one(bundle, "MutatingWebhookConfiguration", "zonectl")["webhooks"]
    (expr,) = pod_hook["namespaceSelector"]["matchExpressions"]
    (outside,) = [v for v in spec["variables"] if v["name"] == "outsideWebhook"]
    assert sorted(_cel_list(outside["expression"])) == sorted(expr["values"])
    # the pod webhook does not see pods/status (which can rewrite annotations): the policy does
    assert pod_hook["rules"][0]["resources"] == ["pods"]
    # the annotation the controller writes, and no other
    config = parse_controller_config(yaml.safe_load(one(bundle, "ConfigMap", "zonectl-config")["data"]["zonectl.yaml"]))
    key = config.operator.hint_annotation
    texts = [v["expression"] for v in spec["variables"] + spec["validations"]]
    texts += [v.get("message", "") + v.get("messageExpression", "") for v in spec["validations"]]
    assert all(key in x for x in texts if "annotations" in x or "annotation " in x)
    assert {k.split("'")[0] for x in texts for k in x.split("annotations['")[1:]} == {key}


def test_gateway_sysctl_component(tmp_path: Path) -> None:
    from zonectl.gateway.plan import SYSCTLS

    objects = overlay(tmp_path, MANIFESTS, "gateway-sysctl")
    ds = one(objects, "DaemonSet", "zonectl-gateway")
    kv.validate(ds, K8S_VERSION, strict=True)
    pod = ds["spec"]["template"]["spec"]
    (init,), (main,) = pod["initContainers"], pod["containers"]
    assert init["securityContext"]["privileged"] is True and init["image"] == main["image"] == "localhost/zonectl-gateway:dev"
    script = init["command"][-1]
    for key, value in SYSCTLS:  # exactly what the gateway needs
        assert f"echo {value} > /proc/sys/{key.replace('.', '/')}" in script
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}  # still
    assert pod["hostNetwork"] is True  # so /proc/sys/net is the node's


def test_cert_manager_component(tmp_path: Path) -> None:
    (tmp_path / "main").mkdir()
    (tmp_path / "hooks").mkdir()
    main = overlay(tmp_path / "main", MANIFESTS, "cert-manager")
    hooks = overlay(tmp_path / "hooks", MANIFESTS / "webhooks", "cert-manager")
    cert = one(main, "Certificate", "zonectl-webhook")
    dep = one(main, "Deployment", "zonectl-controller")
    (tls,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    assert cert["spec"]["secretName"] == tls["secret"]["secretName"] == "zonectl-webhook-tls"
    svc = one(main, "Service", "zonectl-webhook")
    assert f"zonectl-webhook.{svc['metadata']['namespace']}.svc" in cert["spec"]["dnsNames"]
    issuer = one(main, "Issuer", cert["spec"]["issuerRef"]["name"])
    ca = one(main, "Certificate", "zonectl-webhook-ca")
    assert issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"] and ca["spec"]["isCA"] is True
    want = f"{cert['metadata']['namespace']}/{cert['metadata']['name']}"
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert one(hooks, kind, "zonectl")["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == want
        assert not [o for o in main if o["kind"] == kind]  # the patch adds nothing to manifests/
