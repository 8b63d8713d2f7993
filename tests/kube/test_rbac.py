"""manifests/rbac.yaml is sufficient and minimal, proven by the API server's audit log of every request
the controller made with its ServiceAccount token during the whole kube session (this module runs
last: tests/kube/conftest.py)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

import yaml

from kubeplane import NS, ROOT, ZonectlCluster

SA = f"system:serviceaccount:{NS}:zonectl-controller"


def granted() -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, from the controller's Roles and ClusterRoles in manifests/rbac.yaml."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()) if d]
    bound = {d["roleRef"]["name"] for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
             and any(s.get("name") == "zonectl-controller" for s in d["subjects"])}
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole") and doc["metadata"]["name"] in bound:
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        out[(group, resource)] |= set(rule["verbs"])
    return out


def _not_about_rbac_yaml(message: str, when: float, unready: list[tuple[float, float]], margin: float = 0) -> bool:
    """403s that say nothing about what rbac.yaml grants: the namespace lifecycle refusing an Event in a
    namespace being deleted, and a kube-apiserver just restarted (test_faults) whose RBAC authorizer has
    not loaded the roles and bindings yet: it answers before it is Ready ("clusterrole ... not found", or
    no binding at all). ``margin``: how much later than the request its log line may come."""
    return ("being terminated" in message or 'clusterrole.rbac.authorization.k8s.io "zonectl-controller" not found' in message
            or any(start <= when <= end + margin for start, end in unready))


def used(cluster: ZonectlCluster) -> tuple[dict[tuple[str, str], set[str]], list[dict[str, Any]]]:
    """(apiGroup, resource[/subresource]) -> verbs the controller used, and every request refused."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    refused = []
    for event in cluster.plane.audit_events():
        if event["user"]["username"] != SA or "objectRef" not in event:
            continue
        ref = event["objectRef"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out[(ref.get("apiGroup", ""), resource)].add(event["verb"])
        status = event.get("responseStatus") or {}
        received = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        if status.get("code") == 401 or (status.get("code") == 403 and not _not_about_rbac_yaml(
                status.get("message", ""), received, cluster.plane.unready)):
            refused.append({k: event.get(k) for k in ("verb", "requestURI", "responseStatus")})
    return out, refused


def test_the_controller_was_never_refused(zonectl_cluster: ZonectlCluster) -> None:
    uses, refused = used(zonectl_cluster)
    assert uses, "no request of the controller's ServiceAccount in the audit log"
    assert refused == []
    logs = zonectl_cluster.controller_logs().splitlines()
    logged = [line for line in logs if "is forbidden: User" in line  # how an RBAC refusal reads
              and not _not_about_rbac_yaml(line, _stamp(line), zonectl_cluster.plane.unready, margin=10)]
    assert logged == []


def _stamp(line: str) -> float:
    """When the controller logged ``line`` (its JSON log's timestamp; 0 if it has none)."""
    try:
        return datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
    except (ValueError, KeyError, TypeError):
        return 0.0


def test_every_granted_verb_was_needed(zonectl_cluster: ZonectlCluster) -> None:
    uses, _ = used(zonectl_cluster)
    unused = {f"{g or 'core'}/{r}": sorted(v - uses.get((g, r), set())) for (g, r), v in granted().items()}
    assert {k: v for k, v in unused.items() if v} == {}, f"granted but never used: {unused}; used: {dict(uses)}"


def test_the_token_can_do_exactly_what_rbac_yaml_grants(zonectl_cluster: ZonectlCluster) -> None:
    """Nothing else grants the controller more (kubectl auth can-i --list as the ServiceAccount)."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": NS}}
    answer = zonectl_cluster.kubectl("create", f"--as={SA}", "-o", "json", "-f", "-", input=json.dumps(review))
    rules: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rule in json.loads(answer.stdout)["status"]["resourceRules"]:
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or []:
                rules[(group, resource)] |= set(rule["verbs"])
    expected = granted()
    # what every authenticated user may do anyway (selfsubject reviews)
    extra = {k: v for k, v in rules.items() if k not in expected and not k[1].startswith("selfsubject")}
    assert extra == {}
    assert all(rules[k] >= v for k, v in expected.items())
