"""Admission through kube-apiserver over TLS: pods created and updated with kubectl, the webhook reached
through its Service (an EndpointSlice of the controller's Ready pods), and the ValidatingAdmissionPolicy
evaluated by the API server where the webhook does not look."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from kubeplane import ZonectlCluster, wait, zone_id

HINT = "zonectl.io/ipam-hint"


class World:
    def __init__(self, cluster: ZonectlCluster, tmp: Path) -> None:
        sfx = secrets.token_hex(3)
        self.cluster = cluster
        self.tmp = tmp
        self.allowed, self.denied, self.zone = f"adm-in-{sfx}", f"adm-out-{sfx}", f"adm-{sfx}"
        self.zone_id = zone_id()
        self.hint = f"::{self.zone_id:x}:0:0:0"

    def kubectl(self, *args: str, **kw: Any) -> Any:
        return self.cluster.kubectl(*args, **kw)

    def pod_file(self, name: str, ns: str, labels: dict | None = None, annotations: dict | None = None) -> str:
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}
        path = self.tmp / f"{ns}-{name}.yaml"
        path.write_text(yaml.safe_dump(body))
        return str(path)

    def create(self, name: str, ns: str, labels: dict | None = None, annotations: dict | None = None, *extra: str) -> Any:
        return self.kubectl("create", "-f", self.pod_file(name, ns, labels, annotations), "-o", "json", *extra, check=False)

    def annotations(self, name: str, ns: str) -> dict[str, str]:
        pod = json.loads(self.kubectl("-n", ns, "get", "pod", name, "-o", "json").stdout)
        return pod["metadata"].get("annotations") or {}


@pytest.fixture(scope="module")
def world(zonectl_cluster: ZonectlCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(zonectl_cluster, tmp_path_factory.mktemp("admission"))
    w.kubectl("create", "namespace", w.allowed)
    w.kubectl("create", "namespace", w.denied)
    zone = {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": w.zone},
            "spec": {"id": w.zone_id, "namespaces": [w.allowed]}}
    w.kubectl("apply", "-f", "-", input=yaml.safe_dump(zone))
    # every replica's admission cache must have the zone before its answers count
    wait("the zone in both replicas' webhook caches", lambda: w.create("probe", w.allowed, {"securityZone": w.zone},
                                                                        None, "--dry-run=server").returncode == 0)
    yield w
    w.kubectl("delete", "namespace", w.allowed, w.denied, "--wait=false")


def test_pod_in_an_allowed_namespace_gets_the_hint(world: World) -> None:
    proc = world.create("a", world.allowed, {"securityZone": world.zone})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metadata"]["annotations"][HINT] == world.hint
    assert world.annotations("a", world.allowed)[HINT] == world.hint  # stored, not just answered


def test_pod_without_the_label_is_left_alone(world: World) -> None:
    proc = world.create("plain", world.allowed)
    assert proc.returncode == 0 and proc.stderr == ""
    assert HINT not in (json.loads(proc.stdout)["metadata"].get("annotations") or {})


def test_zone_not_allowed_in_the_namespace_is_refused(world: World) -> None:
    proc = world.create("b", world.denied, {"securityZone": world.zone})
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error from server: error when creating")  # the webhook sets code 403, no reason
    assert (f'admission webhook "pod-zone-hint.zonectl.io" denied the request: security zone {world.zone!r} is not '
            f"allowed in namespace {world.denied!r}") in proc.stderr
    assert world.kubectl("-n", world.denied, "get", "pod", "b", check=False).returncode == 1


def test_unknown_zone_is_refused_with_the_known_ones(world: World) -> None:
    proc = world.create("c", world.allowed, {"securityZone": "no-such-zone"})
    assert proc.returncode == 1
    assert "unknown security zone 'no-such-zone' in label securityZone (known zones: " in proc.stderr
    assert world.zone in proc.stderr


def test_spoofed_hint_without_label_is_removed_and_kubectl_says_so(world: World) -> None:
    proc = world.create("d", world.allowed, None, {HINT: "::3000:0:0:0"})
    assert proc.returncode == 0
    assert proc.stderr.strip() == (f"Warning: zonectl removed annotation {HINT}: it is set by zonectl only "
                                   "(this pod has no securityZone label, so no zone)")
    assert HINT not in world.annotations("d", world.allowed)


def test_spoofed_hint_with_label_is_replaced(world: World) -> None:
    proc = world.create("e", world.allowed, {"securityZone": world.zone}, {HINT: "::3000:0:0:0"})
    assert proc.returncode == 0
    assert f"Warning: zonectl replaced annotation {HINT}='::3000:0:0:0' with {world.hint!r}" in proc.stderr
    assert world.annotations("e", world.allowed)[HINT] == world.hint


def test_update_of_the_hint_is_undone(world: World) -> None:
    assert world.create("f", world.allowed, {"securityZone": world.zone}).returncode == 0
    proc = world.kubectl("-n", world.allowed, "annotate", "pod", "f", f"{HINT}=::3000:0:0:0", "--overwrite", check=False)
    assert proc.returncode == 0
    assert f"Warning: zonectl restored annotation {HINT}: it is immutable and set by zonectl only" in proc.stderr
    assert world.annotations("f", world.allowed)[HINT] == world.hint
    proc = world.kubectl("-n", world.allowed, "annotate", "pod", "f", f"{HINT}-", check=False)
    assert world.annotations("f", world.allowed)[HINT] == world.hint  # removing it is undone too


def test_label_change_is_allowed_with_a_warning(world: World) -> None:
    assert world.create("g", world.allowed, {"securityZone": world.zone}).returncode == 0
    proc = world.kubectl("-n", world.allowed, "label", "pod", "g", "securityZone-", check=False)
    assert proc.returncode == 0
    assert "but a running pod keeps its address and so its zone" in proc.stderr
    assert world.annotations("g", world.allowed)[HINT] == world.hint


def test_server_dry_run_answers_the_same_and_creates_nothing(world: World) -> None:
    proc = world.create("h", world.allowed, {"securityZone": world.zone}, None, "--dry-run=server")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["metadata"]["annotations"][HINT] == world.hint
    assert world.kubectl("-n", world.allowed, "get", "pod", "h", check=False).returncode == 1
    refused = world.create("h", world.denied, {"securityZone": world.zone}, None, "--dry-run=server")
    assert refused.returncode == 1 and "is not allowed in namespace" in refused.stderr


def test_pods_of_a_deployment_get_the_hint(world: World) -> None:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": world.allowed},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web", "securityZone": world.zone}},
                                    "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}}}
    world.kubectl("apply", "-f", "-", input=yaml.safe_dump(deploy))

    def hinted() -> list[str]:
        pods = json.loads(world.kubectl("-n", world.allowed, "get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
        hints = [p["metadata"].get("annotations", {}).get(HINT) for p in pods]
        return hints if len(hints) == 2 else []

    assert wait("the Deployment's two pods", hinted) == [world.hint, world.hint]


# ----- the ValidatingAdmissionPolicy, evaluated by the API server ------------------------------------

def test_policy_refuses_a_hint_where_the_webhook_does_not_look(world: World) -> None:
    proc = world.create(f"vap-{world.zone}", "kube-system", None, {HINT: "::2000:0:0:0"})
    assert proc.returncode == 1
    assert ('pods "vap-' in proc.stderr and 'is forbidden: ValidatingAdmissionPolicy \'zonectl-ipam-hint\' with binding '
            "'zonectl-ipam-hint' denied request: annotation zonectl.io/ipam-hint is set by zonectl only, and namespace "
            "kube-system is outside its pod webhook") in proc.stderr, proc.stderr
    plain = world.create(f"vap-{world.zone}", "kube-system")  # without the hint: allowed, untouched
    assert plain.returncode == 0, plain.stderr
    world.kubectl("-n", "kube-system", "delete", "pod", f"vap-{world.zone}", "--wait=false")


@pytest.mark.parametrize("patch", [
    {"metadata": {"annotations": {HINT: "::3000:0:0:0"}}},  # changed
    {"metadata": {"annotations": {HINT: None}}},  # removed
], ids=["change", "remove"])
def test_policy_refuses_hint_writes_through_pods_status(world: World, patch: dict) -> None:
    name = f"st-{secrets.token_hex(2)}"
    assert world.create(name, world.allowed, {"securityZone": world.zone}).returncode == 0
    proc = world.kubectl("-n", world.allowed, "patch", "pod", name, "--subresource=status", "--type=merge",
                         "-p", json.dumps(patch), check=False)
    assert proc.returncode == 1
    assert "annotation zonectl.io/ipam-hint cannot be added, changed or removed through pods/status" in proc.stderr
    assert world.annotations(name, world.allowed)[HINT] == world.hint


def test_policy_refuses_adding_a_hint_through_pods_status(world: World) -> None:
    name = f"st-{secrets.token_hex(2)}"
    assert world.create(name, world.allowed).returncode == 0
    proc = world.kubectl("-n", world.allowed, "patch", "pod", name, "--subresource=status", "--type=merge",
                         "-p", json.dumps({"metadata": {"annotations": {HINT: "::3000:0:0:0"}}}), check=False)
    assert proc.returncode == 1 and "through pods/status" in proc.stderr
    assert HINT not in world.annotations(name, world.allowed)
