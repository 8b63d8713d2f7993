"""The gateway's inputs, published by the controller: zones with IPv4 egress and the NAT64 rules.

Why publish compiled rules instead of letting every gateway compile policies itself: the controller is
the one place that decides which generation of each policy is in force (a policy that stops compiling
keeps its previous good rules), so the gateways must enforce exactly what OVN enforces. The document is
plain JSON (a ConfigMap key the gateway DaemonSet mounts, or a file), versioned, and round-trips:
``load_document(document(...))`` gives back the same registry and rules.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

from ..core.errors import ValidationError
from ..core.layout import AddrMatch, Layout
from ..core.rules import Rule, RuleSet
from ..core.zones import ZoneRegistry

API_VERSION = "zonectl.io/v1alpha1"
KIND = "GatewayInputs"
DATA_KEY = "gateway.json"


def _match(m: AddrMatch | None) -> str | None:
    return None if m is None else m.text


def rule_to_dict(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id, "policy": r.policy, "zone": r.zone, "direction": r.direction, "action": r.action,
        "order": r.order, "src": _match(r.src), "dst": _match(r.dst), "protocol": r.protocol,
        "portMin": r.port_min, "portMax": r.port_max, "icmpType": r.icmp_type, "nat64": r.nat64,
        "isDefault": r.is_default, "name": r.name, "generation": r.generation,
    }


def rule_from_dict(d: Mapping[str, Any]) -> Rule:
    def m(v: Any) -> AddrMatch | None:
        return None if v is None else AddrMatch.parse(str(v))

    return Rule(
        id=str(d["id"]), policy=str(d["policy"]), zone=str(d["zone"]), direction=d["direction"], action=d["action"],
        order=int(d["order"]), src=m(d.get("src")), dst=m(d.get("dst")), protocol=d.get("protocol"),
        port_min=d.get("portMin"), port_max=d.get("portMax"), icmp_type=d.get("icmpType"),
        nat64=bool(d.get("nat64")), is_default=bool(d.get("isDefault")), name=str(d.get("name", "")),
        generation=int(d.get("generation", 0)),
    )


def document(rules: Iterable[Rule], registry: ZoneRegistry) -> dict[str, Any]:
    """The gateway inputs: every zone (id, IPv4 egress) and the egress rules towards the NAT64 prefix."""
    ruleset = RuleSet(tuple(sorted(rules, key=lambda r: (r.order, r.id))))
    zones = []
    for z in registry:
        spec: dict[str, Any] = {"id": z.id}
        if z.egress is not None:
            spec["egress"] = {"pool": str(z.egress.pool), "address": str(z.egress.address)}
        zones.append({"metadata": {"name": z.name}, "spec": spec})
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "zones": zones,
        "rules": [rule_to_dict(r) for r in ruleset.for_gateway()],
    }


def render(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def load_document(doc: Mapping[str, Any], layout: Layout) -> tuple[ZoneRegistry, RuleSet]:
    """Parse a published document back (what the gateway does); a foreign or broken one is refused."""
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise ValidationError(f"not a {KIND} document of {API_VERSION}", source="gateway inputs")
    registry = ZoneRegistry.from_objects(layout, [{"kind": "SecurityZone", **z} for z in doc.get("zones") or []])
    try:
        rules = tuple(rule_from_dict(r) for r in doc.get("rules") or [])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"bad rule: {exc}", source="gateway inputs") from None
    return registry, RuleSet(rules, tuple(sorted({r.policy for r in rules})))


class Publisher(Protocol):
    def publish(self, text: str) -> None:
        """Make ``text`` the current gateway inputs (idempotent)."""


class FilePublisher:
    """Writes the document to a file atomically (rename), for a gateway on the same host or for tests."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def publish(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class ConfigMapPublisher:
    """Patches one ConfigMap that ships with the manifests (RBAC allows patching that name only)."""

    def __init__(self, core_api: Any, namespace: str, name: str) -> None:
        self.api = core_api  # kubernetes.client.CoreV1Api, built at start-up (never at import)
        self.namespace = namespace
        self.name = name

    def publish(self, text: str) -> None:
        self.api.patch_namespaced_config_map(self.name, self.namespace, {"data": {DATA_KEY: text}})
