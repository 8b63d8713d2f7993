"""Nodes without a kubelet: Node objects with OVN-Kubernetes' annotations, pods bound by the real
scheduler, addresses allocated as OVN-K would (node-3's allocator lacks zonectl's patch), and address
verification reading k8s.ovn.org/pod-networks: Event, zone status, metric."""

from __future__ import annotations

import ipaddress
import json
import secrets
import urllib.request
from typing import Any, Iterator

import pytest
import yaml

from kubeplane import NS, UPSTREAM_TOLERATION, ZonectlCluster, wait, zone_id

HINT = "zonectl.io/ipam-hint"


@pytest.fixture(scope="module")
def world(zonectl_cluster: ZonectlCluster) -> Iterator[dict[str, Any]]:
    sfx = secrets.token_hex(3)
    w = {"ns": f"nodes-{sfx}", "zone": f"nz-{sfx}", "id": zone_id()}
    zonectl_cluster.kubectl("create", "namespace", w["ns"])
    zonectl_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZone", "metadata": {"name": w["zone"]},
         "spec": {"id": w["id"], "namespaces": [w["ns"]]}}))
    yield w
    zonectl_cluster.kubectl("delete", "namespace", w["ns"], "--wait=false")


def run_pod(cluster: ZonectlCluster, w: dict[str, Any], name: str, *, upstream: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    if upstream:
        spec.update(tolerations=[UPSTREAM_TOLERATION], nodeSelector={"kubernetes.io/hostname": "node-3"})
    body = {"apiVersion": "v1", "kind": "Pod", "spec": spec,
            "metadata": {"name": name, "namespace": w["ns"], "labels": {"securityZone": w["zone"]}}}
    wait(f"pod {name} created", lambda: cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False).returncode == 0)

    def running() -> Any:
        pod = json.loads(cluster.kubectl("-n", w["ns"], "get", "pod", name, "-o", "json").stdout)
        return pod if (pod.get("status") or {}).get("podIP") else None

    return wait(f"pod {name} running", running)


def zone_status(cluster: ZonectlCluster, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "securityzone", name, "-o", "json").stdout).get("status") or {}


def metrics(cluster: ZonectlCluster) -> str:
    """/metrics of every controller replica, concatenated (only the active one verifies addresses)."""
    out = []
    for key, run in cluster.kubelet.running().items():
        if key.startswith(f"{NS}/zonectl-controller-") and run.launch is not None and run.ready:
            port = getattr(run.launch, "ports", {}).get("metrics")
            with urllib.request.urlopen(f"http://[{run.ip}]:{port}/metrics", timeout=5) as resp:
                out.append(resp.read().decode())
    return "\n".join(out)


def test_nodes_look_like_ovn_kubernetes_nodes(zonectl_cluster: ZonectlCluster) -> None:
    nodes = json.loads(zonectl_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["node-1", "node-2", "node-3"]
    for node in nodes:
        subnets = json.loads(node["metadata"]["annotations"]["k8s.ovn.org/node-subnets"])["default"]
        assert subnets == [node["spec"]["podCIDR"]]
        assert ipaddress.ip_network(subnets[0]).subnet_of(ipaddress.ip_network("fd00:10:244::/48"))
        assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"


def test_scheduler_binds_and_the_patched_allocator_honours_the_hint(zonectl_cluster: ZonectlCluster, world) -> None:
    pod = run_pod(zonectl_cluster, world, "patched")
    assert pod["spec"]["nodeName"] in ("node-1", "node-2")  # node-3 is tainted; the real scheduler chose
    bound = json.loads(zonectl_cluster.kubectl("-n", world["ns"], "get", "events", "--field-selector",
                                               "involvedObject.name=patched,reason=Scheduled", "-o", "json").stdout)["items"]
    assert bound and bound[0]["source"].get("component", bound[0].get("reportingComponent")) in ("default-scheduler", None)
    addr = ipaddress.IPv6Address(pod["status"]["podIP"])
    assert (int(addr) >> 48) & 0xFFFF == world["id"]  # the zone in the 5th hextet
    networks = json.loads(pod["metadata"]["annotations"]["k8s.ovn.org/pod-networks"])
    assert networks["default"]["ip_addresses"] == [f"{addr}/64"]
    status = wait("the zone to count the pod", lambda: (s := zone_status(zonectl_cluster, world["zone"])).get("podCount") and s)
    assert status["podCount"] >= 1 and status["mismatchCount"] == 0


def test_an_address_without_its_zone_is_reported(zonectl_cluster: ZonectlCluster, world) -> None:
    pod = run_pod(zonectl_cluster, world, "upstream", upstream=True)
    assert pod["spec"]["nodeName"] == "node-3"
    assert pod["metadata"]["annotations"][HINT] == f"::{world['id']:x}:0:0:0"  # the webhook did its part
    ip = pod["status"]["podIP"]
    assert (int(ipaddress.IPv6Address(ip)) >> 48) & 0xFFFF == 0  # ... the allocator ignored it

    def mismatch_events() -> list[dict[str, Any]]:
        evs = json.loads(zonectl_cluster.kubectl("-n", world["ns"], "get", "events", "--field-selector",
                                                 "involvedObject.name=upstream", "-o", "json").stdout)["items"]
        return [e for e in evs if e["reason"] == "ZoneAddressMismatch"]

    (event,) = wait("a ZoneAddressMismatch Event", mismatch_events)
    assert event["type"] == "Warning" and ip in event["message"]
    status = wait("mismatchCount 1", lambda: (s := zone_status(zonectl_cluster, world["zone"])).get("mismatchCount") and s,
                  timeout=60)
    assert status["mismatchCount"] == 1
    line = f'zonectl_zone_address_mismatches{{zone="{world["zone"]}"}} 1.0'
    assert wait("the mismatch gauge", lambda: line in metrics(zonectl_cluster))
    row = zonectl_cluster.kubectl("get", "securityzone", world["zone"]).stdout.splitlines()[1].split()
    assert row[3:5] == [str(status["podCount"]), "1"]  # PODS, MISMATCH columns


def test_verification_reads_pod_networks_before_the_pod_runs(zonectl_cluster: ZonectlCluster, world) -> None:
    """OVN-K writes k8s.ovn.org/pod-networks before the pod starts: a pod with no status.podIPs yet (it
    names a scheduler that does not exist, so nothing binds or runs it) is judged by that annotation."""
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "unbound", "namespace": world["ns"], "labels": {"securityZone": world["zone"]}},
            "spec": {"schedulerName": "nobody", "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}
    zonectl_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    wrong = "fd00:10:244:77::9"  # zone field 0: not the pod's zone
    networks = json.dumps({"default": {"ip_addresses": [f"{wrong}/64"], "mac_address": "0a:58:00:00:00:09"}})
    zonectl_cluster.kubectl("-n", world["ns"], "annotate", "pod", "unbound", f"k8s.ovn.org/pod-networks={networks}")

    def mismatch() -> list[dict[str, Any]]:
        evs = json.loads(zonectl_cluster.kubectl("-n", world["ns"], "get", "events", "--field-selector",
                                                 "involvedObject.name=unbound", "-o", "json").stdout)["items"]
        return [e for e in evs if e["reason"] == "ZoneAddressMismatch"]

    (event,) = wait("a ZoneAddressMismatch Event from the annotation alone", mismatch)
    assert wrong in event["message"]
    pod = json.loads(zonectl_cluster.kubectl("-n", world["ns"], "get", "pod", "unbound", "-o", "json").stdout)
    assert not (pod.get("status") or {}).get("podIPs")
