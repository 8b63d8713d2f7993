"""The published rules document (pure: its wire format, writer and reader), and the one JSON form of a rule.

The controller publishes the compiled rules: zones with IPv4 egress, the NAT64 rules, and (in OVN
interconnect mode) every other rule for the OVN node agents. Writing the text somewhere (a ConfigMap,
a file) is the operator's I/O (``zonectl.operator.publish``); the gateway and the node agents read it
with ``read_document``. ``rule_to_dict`` is also what ``zonectl compile --target ir`` prints.

Why publish compiled rules instead of letting every gateway or node compile policies itself: the
controller is the one place that decides which generation of each policy is in force (a policy that
stops compiling keeps its previous good rules), so the gateways and the node agents must enforce exactly
what the controller decided. The document is plain JSON (a ConfigMap key the DaemonSets mount, or a
file), versioned, and round-trips: ``parse_document(document(...))`` gives back the same registry and rules.

    {"apiVersion": "zonectl.io/v1alpha1", "kind": "GatewayInputs",
     "zones": [...],                      every zone: id, IPv4 egress
     "rules": [...],                      the NAT64-bound egress rules: what the gateway enforces
     "ovn": {"otherRules": [...],         every other rule: rules + ovn.otherRules = the complete rule set
             "keepPolicies": [...]}}      policies whose OVN rows stay exactly as they are (see below)

The ``ovn`` part is a compatible extension: gateways ignore it, and it is only written when the
controller runs with ``ovn.mode: interconnect`` (it would only take ConfigMap space otherwise). Its
presence is what makes a document *complete*: the node agents (``zonectl ovn run --inputs``) refuse a
document without it (the empty one the manifests ship, or one from a controller in central mode),
because syncing NB to the NAT64 subset would delete every other rule. ``keepPolicies`` carries the
controller's keep semantics to the nodes: policies it has seen but holds no good generation of (e.g. one
that does not compile after a controller restart) keep whatever rows they have; rows of any policy that
is neither in the rules nor kept are deleted (the policy was deleted, or its namespace lost the right).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ValidationError
from .layout import AddrMatch, Layout
from .rules import Rule, RuleSet
from .zones import ZoneRegistry

API_VERSION = "zonectl.io/v1alpha1"
KIND = "GatewayInputs"
DATA_KEY = "gateway.json"


def _match(m: AddrMatch | None) -> str | None:
    return None if m is None else m.text


def rule_to_dict(r: Rule) -> dict[str, Any]:
    """The JSON form of a compiled rule (published documents and ``compile --target ir``); matches are
    normalised ``value/mask`` text, so ``rule_from_dict`` gives back an equal rule."""
    return {
        "id": r.id, "policy": r.policy, "zone": r.zone, "direction": r.direction, "action": r.action,
        "order": r.order, "src": _match(r.src), "dst": _match(r.dst), "protocol": r.protocol,
        "portMin": r.port_min, "portMax": r.port_max, "icmpType": r.icmp_type, "nat64": r.nat64,
        "isDefault": r.is_default, "name": r.name, "generation": r.generation,
    }


def rule_from_dict(d: Mapping[str, Any]) -> Rule:
    """A rule from its JSON form; a missing or malformed field raises KeyError/TypeError/ValueError."""

    def m(v: Any) -> AddrMatch | None:
        return None if v is None else AddrMatch.parse(str(v))

    return Rule(
        id=str(d["id"]), policy=str(d["policy"]), zone=str(d["zone"]), direction=d["direction"], action=d["action"],
        order=int(d["order"]), src=m(d.get("src")), dst=m(d.get("dst")), protocol=d.get("protocol"),
        port_min=d.get("portMin"), port_max=d.get("portMax"), icmp_type=d.get("icmpType"),
        nat64=bool(d.get("nat64")), is_default=bool(d.get("isDefault")), name=str(d.get("name", "")),
        generation=int(d.get("generation", 0)),
    )


def document(rules: Iterable[Rule], registry: ZoneRegistry, *, complete: bool = False,
             keep: Iterable[str] = ()) -> dict[str, Any]:
    """The published inputs: every zone (id, IPv4 egress) and the egress rules towards the NAT64 prefix;
    with ``complete`` also every other rule and the policies to keep (the ``ovn`` part, for node agents)."""
    ruleset = RuleSet(tuple(sorted(rules, key=lambda r: (r.order, r.id))))
    zones = []
    for z in registry:
        spec: dict[str, Any] = {"id": z.id}
        if z.egress is not None:
            spec["egress"] = {"pool": str(z.egress.pool), "address": str(z.egress.address)}
        zones.append({"metadata": {"name": z.name}, "spec": spec})
    gateway = ruleset.for_gateway()
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "zones": zones,
        "rules": [rule_to_dict(r) for r in gateway],
    }
    if complete:
        ids = {r.id for r in gateway}
        doc["ovn"] = {
            "otherRules": [rule_to_dict(r) for r in ruleset if r.id not in ids],
            "keepPolicies": sorted(set(keep)),
        }
    return doc


def render(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Published:
    """A parsed document: the zones, the gateway's rules and, if the document is complete, every rule."""

    registry: ZoneRegistry
    gateway: RuleSet  # the NAT64-bound egress rules (what the gateway enforces)
    complete: RuleSet | None  # every compiled rule; None when the document has no ``ovn`` part
    keep: tuple[str, ...] = ()  # policies whose OVN rows stay as they are
    digest: str = ""  # short sha256 of the document text (the controller logs the same when publishing)


def _rules(items: Any, where: str) -> tuple[Rule, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ValidationError(f"{where} must be a list", source="published inputs")
    try:
        return tuple(rule_from_dict(r) for r in items)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValidationError(f"{where}: bad rule: {exc}", source="published inputs") from None


def parse_document(doc: Any, layout: Layout, fingerprint: str = "") -> Published:
    """Parse a published document (the one loader of the gateway and the OVN node agents).

    A foreign or broken document is refused with a ValidationError; nothing is half-parsed."""
    if not isinstance(doc, Mapping) or doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise ValidationError(f"not a {KIND} document of {API_VERSION}", source="published inputs")
    zones = doc.get("zones") or []
    if not isinstance(zones, list) or not all(isinstance(z, Mapping) for z in zones):
        raise ValidationError("zones must be a list of SecurityZone-like objects", source="published inputs")
    registry = ZoneRegistry.from_objects(layout, [{"kind": "SecurityZone", **z} for z in zones])
    gateway = _rules(doc.get("rules"), "rules")
    complete: RuleSet | None = None
    keep: tuple[str, ...] = ()
    ovn = doc.get("ovn")
    if ovn is not None:
        if not isinstance(ovn, Mapping):
            raise ValidationError("ovn must be a mapping", source="published inputs")
        others = _rules(ovn.get("otherRules"), "ovn.otherRules")
        raw_keep = ovn.get("keepPolicies") or []
        if not isinstance(raw_keep, list) or not all(isinstance(k, str) for k in raw_keep):
            raise ValidationError("ovn.keepPolicies must be a list of policy keys", source="published inputs")
        keep = tuple(sorted(set(raw_keep)))
        every = tuple(sorted(gateway + others, key=lambda r: (r.order, r.id)))
        complete = RuleSet(every, tuple(sorted({r.policy for r in every})))
    return Published(registry, RuleSet(gateway, tuple(sorted({r.policy for r in gateway}))), complete, keep, fingerprint)


def load_document(doc: Mapping[str, Any], layout: Layout) -> tuple[ZoneRegistry, RuleSet]:
    """The gateway's view of a published document: the zones and the NAT64-bound rules."""
    parsed = parse_document(doc, layout)
    return parsed.registry, parsed.gateway


def digest(text: str | bytes) -> str:
    """The short fingerprint logged by the controller (publishing) and the consumers (loading)."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:12]


def read_document(path: str | Path, layout: Layout) -> Published:
    """Read and parse the document from a file (a mounted ConfigMap key); errors name the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read: {exc.strerror or exc}", source=f"inputs {path}") from None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ValidationError(f"not JSON: {exc}", source=f"inputs {path}") from None
    try:
        return parse_document(doc, layout, digest(data))
    except ValidationError as exc:
        raise exc.prefixed(f"inputs {path}") from None
