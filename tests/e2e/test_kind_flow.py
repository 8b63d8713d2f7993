"""The whole flow on a real cluster with zonectl installed (manifests/kind/install.sh).

With KUBECONFIG set, it runs against that cluster (a kind cluster: zonectl's CRDs and controller must be
installed, else every test skips with the reason). Without it, it runs against the kube layer's control
plane (tests/kubeplane.py: real kube-apiserver, controller-manager and scheduler, zonectl installed by
manifests/install.sh, the controller as real processes); there the pod address comes from the
harness' stand-in for the kubelet and OVN-Kubernetes' patched allocator, not from a CNI. Everything it
creates has a random suffix and is deleted at the end, so it can run against a shared cluster and run twice.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from ipaddress import IPv6Address
from typing import Any, Callable, Iterator

import pytest

pytestmark = pytest.mark.e2e

GROUP, VERSION = "zonectl.io", "v1alpha1"
NS = "zonectl-system"
HINT = "zonectl.io/ipam-hint"


class Kube:
    def __init__(self, kubeconfig: str) -> None:
        import kubernetes

        api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
        self.k = kubernetes
        self.core = kubernetes.client.CoreV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.ApiException = kubernetes.client.exceptions.ApiException

    def wait(self, what: str, fn: Callable[[], Any], timeout: float = 90.0, interval: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = fn()
            except self.ApiException as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(interval)
        pytest.fail(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def kube(request: pytest.FixtureRequest) -> Kube:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:  # no kind cluster: the kube layer's control plane (skips, or fails under REQUIRE_ALL)
        kubeconfig = str(request.getfixturevalue("zonectl_cluster").plane.kubeconfig)
    try:
        k = Kube(kubeconfig)
        k.core.list_namespace(limit=1, _request_timeout=5)
    except Exception as exc:
        pytest.skip(f"cluster not reachable with KUBECONFIG={kubeconfig}: {exc}")
    try:
        dep = k.apps.read_namespaced_deployment("zonectl-controller", NS)
        k.custom.list_cluster_custom_object(GROUP, VERSION, "securityzones", limit=1)
    except k.ApiException as exc:
        pytest.skip(f"zonectl is not installed ({exc.status}): run manifests/kind/install.sh --zonectl-only")
    if not (dep.status.ready_replicas or 0):
        pytest.skip("the zonectl controller has no ready replica")
    return k


@pytest.fixture(scope="module")
def world(kube: Kube) -> Iterator[dict[str, Any]]:
    """Two namespaces (one allowed in the zone, one not), a zone, an admin policy; all removed afterwards."""
    sfx = secrets.token_hex(3)
    used = {z["spec"]["id"] for z in kube.custom.list_cluster_custom_object(GROUP, VERSION, "securityzones")["items"]}
    zone_id = random.choice([i for i in range(0x7000, 0x7fff) if i not in used])
    w = {"sfx": sfx, "allowed": f"e2e-in-{sfx}", "denied": f"e2e-out-{sfx}", "zone": f"e2e-{sfx}", "id": zone_id,
         "policy": f"e2e-{sfx}"}
    for ns in (w["allowed"], w["denied"]):
        kube.core.create_namespace({"metadata": {"name": ns}})
    kube.custom.create_cluster_custom_object(GROUP, VERSION, "securityzones", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SecurityZone", "metadata": {"name": w["zone"]},
        "spec": {"id": zone_id, "namespaces": [w["allowed"]]}})
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "securityzonepolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SecurityZonePolicy", "metadata": {"name": w["policy"]},
        "spec": {"zones": [w["zone"]], "priority": 900, "defaultAction": {"ingress": "Deny", "egress": "Allow"},
                 "ingress": [{"name": "same-zone", "action": "Allow", "from": [{"zone": w["zone"]}],
                              "ports": [{"protocol": "TCP", "port": 8080}]}], "egress": []}})
    try:
        yield w
    finally:
        for ns in (w["allowed"], w["denied"]):
            try:
                kube.core.delete_namespace(ns)
            except kube.ApiException:
                pass
        try:
            kube.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "securityzonepolicies", w["policy"])
        except kube.ApiException:
            pass

        def zone_gone() -> bool:
            try:
                kube.custom.delete_cluster_custom_object(GROUP, VERSION, "securityzones", w["zone"])
            except kube.ApiException as exc:
                return exc.status == 404
            return False

        kube.wait("the e2e zone to go", zone_gone, timeout=120, interval=3)


def pod(name: str, ns: str, labels: dict | None = None, annotations: dict | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}],
                     "terminationGracePeriodSeconds": 0}}


def condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def get_policy(kube: Kube, name: str) -> dict:
    return kube.custom.get_namespaced_custom_object(GROUP, VERSION, NS, "securityzonepolicies", name)


def test_policy_becomes_ready(kube: Kube, world) -> None:
    def ready():
        p = get_policy(kube, world["policy"])
        c = condition(p, "Ready")
        return p if c and c["status"] == "True" else None

    p = kube.wait("policy Ready", ready)
    # the ingress rule and one default per direction (ingress Deny, egress Allow): every direction is written
    assert p["status"]["observedGeneration"] == p["metadata"]["generation"] and p["status"]["ruleCount"] == 3
    assert "zonectl.io/finalizer" in p["metadata"]["finalizers"]


def test_pod_gets_the_hint_and_its_address_is_verified(kube: Kube, world) -> None:
    created = kube.core.create_namespaced_pod(world["allowed"], pod("a", world["allowed"], {"securityZone": world["zone"]}))
    hint = created.metadata.annotations[HINT]
    assert int(IPv6Address(hint)) >> 48 == world["id"]
    ip = kube.wait("a pod IP", lambda: kube.core.read_namespaced_pod("a", world["allowed"]).status.pod_ip, timeout=120)
    carries = (int(IPv6Address(ip)) >> 48) & 0xFFFF == world["id"]
    if carries:  # an allocator that honours the hint: the zone sees no mismatch
        zone = kube.wait("zone status", lambda: (z := kube.custom.get_cluster_custom_object(
            GROUP, VERSION, "securityzones", world["zone"])).get("status", {}).get("podCount") and z)
        assert zone["status"]["mismatchCount"] == 0
    else:  # upstream OVN-Kubernetes ignores the hint: zonectl must say so
        def mismatch_event():
            evs = kube.core.list_namespaced_event(world["allowed"], field_selector="involvedObject.name=a").items
            return [e for e in evs if e.reason == "ZoneAddressMismatch"]

        (event, *_) = kube.wait("a ZoneAddressMismatch event", mismatch_event)
        assert ip in event.message


def test_admission_denials_and_spoofing(kube: Kube, world) -> None:
    with pytest.raises(kube.ApiException) as err:
        kube.core.create_namespaced_pod(world["denied"], pod("b", world["denied"], {"securityZone": world["zone"]}))
    assert err.value.status == 403 and world["zone"] in err.value.body and world["denied"] in err.value.body
    with pytest.raises(kube.ApiException) as err:
        kube.core.create_namespaced_pod(world["allowed"], pod("c", world["allowed"], {"securityZone": "no-such-zone"}))
    assert err.value.status == 400 and "unknown security zone" in err.value.body
    spoofed = kube.core.create_namespaced_pod(world["allowed"], pod("d", world["allowed"], annotations={HINT: "::2000:0:0:0"}))
    assert HINT not in (spoofed.metadata.annotations or {})
    dry = kube.core.create_namespaced_pod(world["allowed"], pod("e", world["allowed"], {"securityZone": world["zone"]}),
                                          dry_run="All")
    assert HINT in dry.metadata.annotations
    with pytest.raises(kube.ApiException) as err:
        kube.core.read_namespaced_pod("e", world["allowed"])
    assert err.value.status == 404


def test_tenant_may_not_govern_a_foreign_zone(kube: Kube, world) -> None:
    with pytest.raises(kube.ApiException) as err:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, world["denied"], "securityzonepolicies", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SecurityZonePolicy", "metadata": {"name": "grab"},
            "spec": {"zones": [world["zone"]], "priority": 900, "defaultAction": {"ingress": "Allow"},
                     "ingress": [], "egress": []}})
    assert err.value.status == 403 and "may not place pods in zone" in err.value.body


def test_zone_in_use_cannot_be_deleted(kube: Kube, world) -> None:
    with pytest.raises(kube.ApiException) as err:
        kube.custom.delete_cluster_custom_object(GROUP, VERSION, "securityzones", world["zone"])
    assert err.value.status == 403 and world["policy"] in err.value.body


def test_bad_policy_update_keeps_previous_rules(kube: Kube, world) -> None:
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "securityzonepolicies", world["policy"], {
        "spec": {"ingress": [{"name": "same-zone", "action": "Allow", "from": [{"zone": "no-such-zone"}],
                              "ports": [{"protocol": "TCP", "port": 8080}]}]}})

    def failed():
        p = get_policy(kube, world["policy"])
        c = condition(p, "Compiled")
        return p if c and c["status"] == "False" and p["status"]["observedGeneration"] == p["metadata"]["generation"] else None

    p = kube.wait("Compiled=False", failed)
    assert "unknown zone 'no-such-zone'" in condition(p, "Compiled")["message"]
    assert condition(p, "Programmed")["reason"] == "PreviousGeneration" and p["status"]["ruleCount"] == 3


def test_policy_delete_removes_it(kube: Kube, world) -> None:
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "securityzonepolicies", world["policy"])

    def gone() -> bool:
        try:
            get_policy(kube, world["policy"])
        except kube.ApiException as exc:
            return exc.status == 404
        return False

    kube.wait("the policy's finalizer to run", gone)
