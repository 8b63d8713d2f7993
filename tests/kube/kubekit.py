"""Helpers of the kube layer's tests: NB rows, objects, conditions, Events (the fixtures are in tests/kubeplane.py)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import yaml

from kubeplane import NS, ZonectlCluster, wait, zone_id

GROUP = "zonectl.io"


def acls(cluster: ZonectlCluster, key: str | None = None) -> list[dict[str, Any]]:
    """zonectl's NB ACL rows (uuid, match, action, external_ids), all or one policy's."""
    data = json.loads(cluster.nb.nbctl("--format=json", "--columns=_uuid,match,action,priority,external_ids", "list", "ACL"))
    rows = [dict(zip(data["headings"], r, strict=True)) for r in data["data"]]
    out = [{"uuid": r["_uuid"][1], "match": r["match"], "action": r["action"], "priority": r["priority"],
            "ids": dict(r["external_ids"][1])} for r in rows]
    return [r for r in out if r["ids"].get("zonectl.io/policy") and (key is None or r["ids"]["zonectl.io/policy"] == key)]


def get(cluster: ZonectlCluster, kind: str, name: str, ns: str | None = None) -> dict[str, Any]:
    args = ["-n", ns] if ns else []
    return json.loads(cluster.kubectl(*args, "get", kind, name, "-o", "json").stdout)


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def settled(cluster: ZonectlCluster, name: str, ns: str = NS) -> Any:
    """The policy once the controller has handled its current generation."""
    def done() -> Any:
        p = get(cluster, "securityzonepolicy", name, ns)
        return p if (p.get("status") or {}).get("observedGeneration") == p["metadata"]["generation"] else None
    return wait(f"policy {ns}/{name} handled", done, timeout=60)


def events(cluster: ZonectlCluster, ns: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return json.loads(out.stdout)["items"]


def apply(cluster: ZonectlCluster, *docs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def zone(name: str, zid: int, namespaces: list[str]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "SecurityZone", "metadata": {"name": name},
            "spec": {"id": zid, "namespaces": namespaces}}


def policy(name: str, ns: str, zones: list[str], ingress: list[dict], priority: int = 500,
           egress: list[dict] | None = None) -> dict[str, Any]:
    """A policy of ``zones`` with these ingress rules; egress left open (``defaultAction.egress: Allow``)."""
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "SecurityZonePolicy", "metadata": {"name": name, "namespace": ns},
            "spec": {"zones": zones, "priority": priority, "defaultAction": {"ingress": "Deny", "egress": "Allow"},
                     "ingress": ingress, "egress": egress or []}}


def tenant(cluster: ZonectlCluster, prefix: str) -> str:
    """A new namespace ``<prefix>-<random>`` with a zone of its own and its policy ``own`` (TCP 8080 from
    the zone, priority 150), Ready; returns the namespace.

    A tenant may only write policies for zones the webhook already knows; its cache follows a watch, so a
    policy applied in the same breath as its new zone can be refused: retried, as a user would."""
    sfx = secrets.token_hex(3)
    ns, zname = f"{prefix}-{sfx}", f"{prefix[0]}z-{sfx}"
    cluster.kubectl("create", "namespace", ns)
    apply(cluster, zone(zname, zone_id(), [ns]))
    own = policy("own", ns, [zname], [{"name": "self", "action": "Allow", "from": [{"zone": zname}],
                                       "ports": [{"protocol": "TCP", "port": 8080}]}], priority=150)
    wait("the tenant policy admitted", lambda: cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(own),
                                                               check=False).returncode == 0, timeout=30)
    assert conditions(settled(cluster, "own", ns))["Ready"]["status"] == "True"
    return ns
