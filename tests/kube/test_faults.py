"""Faults against the installed cluster: two replicas (one reconciles, both answer the webhook), the
active controller killed mid-reconcile, kube-apiserver restarted, etcd paused. After each, changes
still reach the NB exactly once (no duplicate rows) and the webhook still answers.

These run after every other kube test (tests/kube/conftest.py): they disturb the shared cluster."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest
import yaml

from kubeplane import NS, ZonectlCluster, wait, zone_id
from kubekit import acls, apply, conditions, policy, settled, zone


def replicas(cluster: ZonectlCluster) -> dict[str, Any]:
    """The controller replicas the kubelet runs and reports Ready, by pod name."""
    return {key.split("/")[1]: run for key, run in cluster.kubelet.running().items()
            if key.startswith(f"{NS}/zonectl-controller-") and run.launch is not None and run.ready}


def counter(run: Any, name: str, **labels: str) -> float:
    """Sum of a counter's samples on one replica whose labels include ``labels``."""
    with urllib.request.urlopen(f"http://[{run.ip}]:{run.launch.ports['metrics']}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for m in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def reconciles(cluster: ZonectlCluster) -> dict[str, float]:
    return {name: counter(run, "zonectl_reconcile_total", kind="policy") for name, run in replicas(cluster).items()}


def no_duplicate_rows(cluster: ZonectlCluster) -> None:
    rows = acls(cluster)
    seen = Counter((r["ids"].get("zonectl.io/rule"), r["match"], r["priority"], r["action"]) for r in rows)
    assert [k for k, n in seen.items() if n > 1] == []


@pytest.fixture(scope="module")
def subject(zonectl_cluster: ZonectlCluster) -> dict[str, Any]:
    sfx = secrets.token_hex(3)
    w = {"zone": f"fz-{sfx}", "policy": f"fz-{sfx}", "ns": f"faults-{sfx}", "id": zone_id()}
    zonectl_cluster.kubectl("create", "namespace", w["ns"])
    apply(zonectl_cluster, zone(w["zone"], w["id"], [w["ns"]]),
          policy(w["policy"], NS, [w["zone"]], [{"name": "p", "action": "Allow", "from": [{"zone": w["zone"]}],
                                                 "ports": [{"protocol": "TCP", "port": 1000}]}]))
    settled(zonectl_cluster, w["policy"])
    w["port"] = 1000
    return w


def edit_and_check(cluster: ZonectlCluster, w: dict[str, Any], timeout: float = 60) -> None:
    """Change the policy's port; the NB must get exactly the new rows (watches work, writes happen once)."""
    w["port"] += 1
    cluster.kubectl("-n", NS, "patch", "securityzonepolicy", w["policy"], "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/ingress/0/ports/0/port", "value": w["port"]}]), timeout=timeout)
    key = f"{NS}/{w['policy']}"
    wait(f"port {w['port']} in NB", lambda: all(f"== {w['port']}" in r["match"] for r in acls(cluster, key)
                                               if "tcp" in r["match"]) and acls(cluster, key), timeout=timeout)
    p = settled(cluster, w["policy"])
    assert conditions(p)["Ready"]["status"] == "True"
    assert len(acls(cluster, key)) == p["status"]["ruleCount"]
    no_duplicate_rows(cluster)


def webhook_answers(cluster: ZonectlCluster, w: dict[str, Any], name: str) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": w["ns"], "labels": {"securityZone": w["zone"]}},
           "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}
    out = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump(pod))
    return json.loads(out.stdout)


def leader(cluster: ZonectlCluster, w: dict[str, Any]) -> str:
    """Make an edit; the one replica whose reconcile counter grows is the active one."""
    before = reconciles(cluster)
    edit_and_check(cluster, w)
    grew = [n for n, v in reconciles(cluster).items() if v > before.get(n, 0)]
    assert len(grew) == 1, (before, reconciles(cluster))  # exactly one replica reconciles
    return grew[0]


def reviews(cluster: ZonectlCluster) -> dict[str, float]:
    return {n: counter(r, "zonectl_admission_duration_seconds_count", webhook="pod-zone-hint")
            for n, r in replicas(cluster).items()}


def test_two_replicas_one_reconciles_both_answer(zonectl_cluster: ZonectlCluster, subject: dict[str, Any]) -> None:
    assert len(replicas(zonectl_cluster)) == 2
    leader(zonectl_cluster, subject)
    # The API server keeps its connection to one endpoint; when that replica dies, the Service's
    # EndpointSlice loses it and the other replica answers: pod creation never depends on one replica.
    before = reviews(zonectl_cluster)
    for i in range(5):
        webhook_answers(zonectl_cluster, subject, f"two-{i}")
    (answering,) = [n for n, v in reviews(zonectl_cluster).items() if v > before[n]]
    proc = zonectl_cluster.kubelet.process(NS, answering)
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    wait("a pod admitted while one replica is dead", lambda: webhook_answers(zonectl_cluster, subject, "failover"),
         timeout=30)
    # only the survivor's counter: the kubelet may not have seen the killed replica die yet
    (other,) = [run for n, run in replicas(zonectl_cluster).items() if n != answering]
    before_other = counter(other, "zonectl_admission_duration_seconds_count", webhook="pod-zone-hint")
    for i in range(5):
        assert webhook_answers(zonectl_cluster, subject, f"other-{i}")["metadata"]["annotations"]["zonectl.io/ipam-hint"]
    assert counter(other, "zonectl_admission_duration_seconds_count", webhook="pod-zone-hint") >= before_other + 5
    wait("both replicas Ready again", lambda: len(replicas(zonectl_cluster)) == 2, timeout=60)


def test_active_controller_killed_mid_reconcile(zonectl_cluster: ZonectlCluster, subject: dict[str, Any]) -> None:
    active = leader(zonectl_cluster, subject)
    proc = zonectl_cluster.kubelet.process(NS, active)
    assert proc is not None
    subject["port"] += 1
    zonectl_cluster.kubectl("-n", NS, "patch", "securityzonepolicy", subject["policy"], "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/ingress/0/ports/0/port", "value": subject["port"]}]))
    os.kill(proc.pid, signal.SIGKILL)  # no goodbye: its peering record stays until it expires
    # the kubelet restarts it; the other replica takes over once the dead leader's record expires (60 s)
    key = f"{NS}/{subject['policy']}"
    wait("the edit reconciled after the leader died", lambda: acls(zonectl_cluster, key) and all(
        f"== {subject['port']}" in r["match"] for r in acls(zonectl_cluster, key) if "tcp" in r["match"]), timeout=150)
    p = settled(zonectl_cluster, subject["policy"])
    assert conditions(p)["Ready"]["status"] == "True" and len(acls(zonectl_cluster, key)) == p["status"]["ruleCount"]
    no_duplicate_rows(zonectl_cluster)
    wait("both replicas Ready again", lambda: len(replicas(zonectl_cluster)) == 2, timeout=60)
    edit_and_check(zonectl_cluster, subject)


def test_apiserver_restart(zonectl_cluster: ZonectlCluster, subject: dict[str, Any]) -> None:
    zonectl_cluster.plane.restart("kube-apiserver")
    edit_and_check(zonectl_cluster, subject, timeout=120)  # the controller's watches resumed
    assert webhook_answers(zonectl_cluster, subject, "after-restart")["metadata"]["annotations"]["zonectl.io/ipam-hint"]


def test_etcd_paused(zonectl_cluster: ZonectlCluster, subject: dict[str, Any]) -> None:
    wait("both replicas Ready", lambda: len(replicas(zonectl_cluster)) == 2, timeout=60)
    restarts = {n: r.restarts for n, r in replicas(zonectl_cluster).items()}
    with zonectl_cluster.plane.paused("etcd"):
        time.sleep(6)
    edit_and_check(zonectl_cluster, subject, timeout=120)
    assert webhook_answers(zonectl_cluster, subject, "after-pause")["metadata"]["annotations"]["zonectl.io/ipam-hint"]
    assert {n: r.restarts for n, r in replicas(zonectl_cluster).items()} == restarts  # nobody crashed
