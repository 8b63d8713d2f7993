"""The last policy, as uninstalling zonectl meets it: its rows are the last zone rules in OVN, and deleting
them would leave every zone unfiltered, so its deletion waits (the finalizer stays) until the admin says
so with ``ovn.allowEmpty: true``. The policy lives in a tenant namespace that is deleted: the namespace
waits too, and the reason shows where a user looks (the policy's Ready condition: a namespace being
deleted refuses new Events). Deletions while other policies remain never wait (test_reconcile).

Runs after the faults and before the RBAC audit (tests/kube/conftest.py): it deletes every policy and
restarts the controller with the new config; the e2e suite afterwards brings its own policy."""

from __future__ import annotations

import json
from typing import Any

import yaml

from kubekit import acls, conditions, get, tenant
from kubeplane import NS, ZonectlCluster, wait


def owned_rows(cluster: ZonectlCluster) -> list[dict[str, Any]]:
    """Every NB ACL row zonectl owns (rule rows and the node switches' exemption rows)."""
    data = json.loads(cluster.nb.nbctl("--format=json", "--columns=_uuid,external_ids", "list", "ACL"))
    return [r for r in data["data"] if dict(r[1][1]).get("k8s.ovn.org/owner-controller") == "zonectl"]


def test_the_last_policy_and_its_namespace_wait_for_allow_empty(zonectl_cluster: ZonectlCluster,
                                                                 examples_applied: str) -> None:
    cluster = zonectl_cluster
    ns = tenant(cluster, "last")

    # every other policy goes: each leaves the rows of the others, so none of these deletions waits
    listed = json.loads(cluster.kubectl("get", "securityzonepolicies", "-A", "-o", "json").stdout)["items"]
    for p in listed:
        meta = p["metadata"]
        if meta["namespace"] != ns:
            cluster.kubectl("-n", meta["namespace"], "delete", "securityzonepolicy", meta["name"], "--timeout=60s")
    mine = acls(cluster, f"{ns}/own")
    assert mine and acls(cluster) == mine

    cluster.kubectl("delete", "namespace", ns, "--wait=false")

    def waiting() -> Any:
        p = get(cluster, "securityzonepolicy", "own", ns)
        ready = conditions(p).get("Ready") or {}
        return p if p["metadata"].get("deletionTimestamp") and ready.get("reason") == "RemoveFailed" else None

    ready = conditions(wait("the last policy's Ready condition saying why it waits", waiting, timeout=60))["Ready"]
    assert ready["status"] == "False"
    assert "the rule set is empty" in ready["message"] and "ovn.allowEmpty: true" in ready["message"]
    assert acls(cluster, f"{ns}/own") == mine  # enforced until the admin decides
    assert get(cluster, "namespace", ns)["status"]["phase"] == "Terminating"

    # the admin opts in (docs/operator.md: "set it before uninstalling zonectl") and restarts the controller
    cm = cluster.core.read_namespaced_config_map("zonectl-config", NS)
    config = yaml.safe_load(cm.data["zonectl.yaml"])
    config.setdefault("ovn", {})["allowEmpty"] = True
    cluster.core.patch_namespaced_config_map("zonectl-config", NS, {"data": {"zonectl.yaml": yaml.safe_dump(config)}})
    cluster.kubectl("-n", NS, "rollout", "restart", "deployment/zonectl-controller")
    wait(f"namespace {ns} gone", lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode == 1,
         timeout=240, interval=1)
    assert owned_rows(cluster) == []  # no zone rule left, as asked: rule rows and exemptions alike
    cluster.kubectl("-n", NS, "rollout", "status", "deployment/zonectl-controller", "--timeout=120s")
