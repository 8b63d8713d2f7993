"""The published rules document (pure: its wire format, writer and reader), and the one JSON form of a rule.

The controller publishes the compiled rules: zones with IPv4 egress, the NAT64 rules, and (in OVN
interconnect mode) every other rule for the OVN node agents. Writing the text somewhere (a ConfigMap,
a file) is the operator's I/O (``zonectl.operator.publish``); the gateway and the node agents read it
with ``parse_text`` (``zonectl.inputs.read_published`` reads the file) against a strict schema (below
``parse_document``). ``rule_to_dict`` is also what ``zonectl compile --target ir`` prints.

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
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Iterable, Mapping

from . import fields as f
from .documents import decode, json_document
from .errors import Collector, ValidationError
from .layout import AddrMatch, Layout
from .rules import DEFAULT_ORDER_BASE, Rule, RuleSet, rule_id
from .zones import ZoneRegistry

API_VERSION = "zonectl.io/v1alpha1"
KIND = "GatewayInputs"
DATA_KEY = "gateway.json"


def _match(m: AddrMatch | None) -> str | None:
    return None if m is None else m.text


def rule_to_dict(r: Rule) -> dict[str, Any]:
    """The JSON form of a compiled rule (published documents and ``compile --target ir``); matches are
    normalised ``value/mask`` text, so ``parse_document`` gives back an equal rule."""
    return {
        "id": r.id, "policy": r.policy, "zone": r.zone, "direction": r.direction, "action": r.action,
        "order": r.order, "src": _match(r.src), "dst": _match(r.dst), "protocol": r.protocol,
        "portMin": r.port_min, "portMax": r.port_max, "icmpType": r.icmp_type, "nat64": r.nat64,
        "isDefault": r.is_default, "name": r.name, "generation": r.generation,
    }


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



# --- the reader: a strict schema -----------------------------------------------------------------
# Every field typed and of the exact form the writer above writes it, no key unknown or missing, sizes
# bounded, and each rule consistent with itself (its id is the hash of its content, its local side is its
# zone's match): whatever the file holds, what reaches a renderer is what a controller could have written.
DOC_KEYS = ("apiVersion", "kind", "zones", "rules", "ovn")
OVN_KEYS = ("otherRules", "keepPolicies")
RULE_KEYS = ("id", "policy", "zone", "direction", "action", "order", "src", "dst", "protocol", "portMin", "portMax",
             "icmpType", "nat64", "isDefault", "name", "generation")
MAX_ZONES = 65_536
MAX_RULES = 200_000
MAX_BYTES = 16 << 20  # a ConfigMap holds at most 1 MiB; a file may hold more, but not without bound
RULE_ID = re.compile(r"r[0-9a-f]{15}")
POLICY_KEY = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
MATCH_TEXT = re.compile(r"[0-9a-f:.]{2,45}/[0-9a-f:.]{2,45}")  # value/mask as AddrMatch.text writes it
DIRECTIONS = {"ingress": "ingress", "egress": "egress"}
ACTIONS = {"allow": "allow", "deny": "deny"}
PROTOCOLS = {p: p for p in ("tcp", "udp", "sctp", "icmpv6")}
SOURCE = "published inputs"


def _required(body: Mapping[str, Any], keys: Iterable[str], path: str, errs: Collector) -> bool:
    """Every key present (the writer writes each, null included); False with one problem if not."""
    missing = [k for k in keys if k not in body]
    if missing:
        errs.add(path, f"missing field(s) {', '.join(missing)}")
    return not missing


def _list(value: Any, path: str, errs: Collector, limit: int) -> list[Any]:
    if not isinstance(value, list):
        errs.add(path, f"must be a list, not {f.type_name(value)}")
        return []
    if len(value) > limit:
        errs.add(path, f"has {len(value)} items (at most {limit})")
        return []
    return value


def _canonical(value: Any, path: str, errs: Collector, parse: Any, what: str) -> Any:
    """An address written exactly as ``str()`` writes it (so its text is known before it is rendered)."""
    text = f.string(value, path, errs, pattern=f.ADDRESS_CHARS, max_len=100, what=what)
    if text is None:
        return None
    try:
        parsed = parse(text)
    except ValueError as exc:
        errs.add(path, f"{f.short(text)} is not {what}: {exc}")
        return None
    if (parsed.text if isinstance(parsed, AddrMatch) else str(parsed)) != text:
        errs.add(path, f"{f.short(text)} is not in the form the controller writes it")
        return None
    return parsed


def _zone(body: Any, path: str, errs: Collector) -> dict[str, Any] | None:
    """One zone as a SecurityZone body (for ``parse_zone``), its fields checked against the writer's form."""
    z = f.mapping(body, path, errs, ("metadata", "spec"))
    if z is None or not _required(z, ("metadata", "spec"), path, errs):
        return None
    meta = f.mapping(z["metadata"], f"{path}.metadata", errs, ("name",))
    spec = f.mapping(z["spec"], f"{path}.spec", errs, ("id", "egress"))
    if meta is None or spec is None or not _required(meta, ("name",), f"{path}.metadata", errs) \
            or not _required(spec, ("id",), f"{path}.spec", errs):
        return None
    name = f.name(meta["name"], f"{path}.metadata.name", errs, "a zone name")
    zid = f.integer(spec["id"], f"{path}.spec.id", errs, 1, (1 << 32) - 1)
    out: dict[str, Any] = {"id": zid}
    if "egress" in spec:
        eg = f.mapping(spec["egress"], f"{path}.spec.egress", errs, ("pool", "address"))
        if eg is None or not _required(eg, ("pool", "address"), f"{path}.spec.egress", errs):
            return None
        pool = _canonical(eg["pool"], f"{path}.spec.egress.pool", errs, IPv4Network, "an IPv4 network")
        address = _canonical(eg["address"], f"{path}.spec.egress.address", errs, IPv4Address, "an IPv4 address")
        if pool is None or address is None:
            return None
        out["egress"] = {"pool": str(pool), "address": str(address)}
    if name is None or zid is None:
        return None
    return {"kind": "SecurityZone", "apiVersion": "zonectl.io/v1alpha1", "metadata": {"name": name}, "spec": out}


def _rule(body: Any, path: str, errs: Collector, registry: ZoneRegistry, gateway: bool) -> Rule | None:
    """One rule; each field of its exact form, then the rule as a whole (one problem per bad field, and the
    consistency checks only once every field is good, so one edit never reads as several problems)."""
    d = f.mapping(body, path, errs, RULE_KEYS)
    if d is None or not _required(d, RULE_KEYS, path, errs):
        return None
    n = len(errs.problems)

    def opt(key: str, read: Any, *args: Any) -> Any:
        return None if d[key] is None else read(d[key], f"{path}.{key}", errs, *args)

    rid = f.string(d["id"], f"{path}.id", errs, pattern=RULE_ID, what="a rule id (r + 15 hex digits)")
    policy = f.string(d["policy"], f"{path}.policy", errs, pattern=POLICY_KEY, what="namespace/name")
    zone = f.name(d["zone"], f"{path}.zone", errs, "a zone name")
    direction = f.enum(d["direction"], DIRECTIONS, f"{path}.direction", errs)
    action = f.enum(d["action"], ACTIONS, f"{path}.action", errs)
    order = f.integer(d["order"], f"{path}.order", errs, 0, DEFAULT_ORDER_BASE + 1)
    src, dst = (opt(k, _canonical, AddrMatch.parse, "an address match (value/mask)") for k in ("src", "dst"))
    protocol = None if d["protocol"] is None else f.enum(d["protocol"], PROTOCOLS, f"{path}.protocol", errs)
    port_min, port_max = opt("portMin", f.integer, 1, 65535), opt("portMax", f.integer, 1, 65535)
    icmp = opt("icmpType", f.integer, 0, 255)
    nat64, default = f.boolean(d["nat64"], f"{path}.nat64", errs), f.boolean(d["isDefault"], f"{path}.isDefault", errs)
    name = d["name"] if d["name"] == "" else f.name(d["name"], f"{path}.name", errs, "a rule name")
    generation = f.integer(d["generation"], f"{path}.generation", errs, 0, 2**63 - 1)
    if len(errs.problems) > n:
        return None
    values: list[Any] = [rid, policy, zone, direction, action, order, src, dst, protocol, port_min, port_max, icmp,
                         nat64, default, name, generation]  # each of its form (no problem was added)
    rule = Rule(*values)
    why = _inconsistent(rule, registry, gateway)
    if why:
        errs.add(path, why)
        return None
    return rule


def _inconsistent(r: Rule, registry: ZoneRegistry, gateway: bool) -> str | None:
    """Why a rule of well-formed fields cannot have been compiled by zonectl (None: it can)."""
    zone = registry.get(r.zone)
    local, remote = (r.dst, r.src) if r.direction == "ingress" else (r.src, r.dst)
    if zone is None:
        return f"zone {r.zone!r} is not in the document's zones"
    if local != registry.match(r.zone, "cluster"):
        return f"its local side ({'dst' if r.direction == 'ingress' else 'src'}) is not zone {r.zone}'s match"
    if (r.port_min is None) != (r.port_max is None) or (r.port_min or 0) > (r.port_max or 0):
        return "portMin and portMax are not a port range"
    if r.port_min is not None and r.protocol not in ("tcp", "udp", "sctp"):
        return f"ports with protocol {r.protocol}"
    if r.icmp_type is not None and r.protocol != "icmpv6":
        return f"icmpType with protocol {r.protocol}"
    if r.is_default != (r.order >= DEFAULT_ORDER_BASE) or r.is_default and (
            remote is not None or r.protocol is not None or r.order != DEFAULT_ORDER_BASE + (r.action == "allow")):
        return "isDefault does not fit its order, peer and protocol"
    if gateway != (r.direction == "egress" and r.nat64):
        return "rules holds the NAT64-bound egress rules, ovn.otherRules every other rule"
    if r.id != rule_id(r.policy, r.zone, r.direction, r.action, r.order, r.src, r.dst, r.protocol, r.port_min,
                       r.port_max, r.icmp_type):
        return f"id {r.id} is not the hash of the rule's content"
    return None


def _rules(value: Any, path: str, errs: Collector, registry: ZoneRegistry, gateway: bool,
           seen: set[str]) -> tuple[Rule, ...]:
    out = []
    for i, body in enumerate(_list(value, path, errs, MAX_RULES)):
        rule = _rule(body, f"{path}[{i}]", errs, registry, gateway)
        if rule is not None and rule.id in seen:
            errs.add(f"{path}[{i}].id", f"{rule.id} appears twice")
        elif rule is not None:
            seen.add(rule.id)
            out.append(rule)
    return tuple(out)


def parse_document(doc: Any, layout: Layout, fingerprint: str = "") -> Published:
    """Parse a published document (the one reader of the gateway and the OVN node agents).

    A foreign, broken or inconsistent document is refused with a ValidationError naming every bad field;
    nothing is half-parsed."""
    errs = Collector()
    body = f.mapping(doc, "", errs, DOC_KEYS, what=f"a {KIND} object")
    if body is None or not _required(body, ("apiVersion", "kind", "zones", "rules"), "", errs):
        errs.raise_if_any(SOURCE)
    assert body is not None
    if body["apiVersion"] != API_VERSION:
        errs.add("apiVersion", f"{f.short(body['apiVersion'])} is not {API_VERSION}")
    if body["kind"] != KIND:
        errs.add("kind", f"{f.short(body['kind'])} is not {KIND}")
    zones = [_zone(z, f"zones[{i}]", errs) for i, z in enumerate(_list(body["zones"], "zones", errs, MAX_ZONES))]
    errs.raise_if_any(SOURCE)  # the rules are checked against the zones
    try:
        registry = ZoneRegistry.from_objects(layout, [z for z in zones if z is not None])
    except ValidationError as exc:
        raise exc.prefixed(SOURCE) from None
    seen: set[str] = set()
    gateway = _rules(body["rules"], "rules", errs, registry, True, seen)
    complete: RuleSet | None = None
    keep: tuple[str, ...] = ()
    if "ovn" in body:
        ovn = f.mapping(body["ovn"], "ovn", errs, OVN_KEYS)
        if ovn is not None and _required(ovn, OVN_KEYS, "ovn", errs):
            others = _rules(ovn["otherRules"], "ovn.otherRules", errs, registry, False, seen)
            for i, key in enumerate(raw := _list(ovn["keepPolicies"], "ovn.keepPolicies", errs, MAX_RULES)):
                f.string(key, f"ovn.keepPolicies[{i}]", errs, pattern=POLICY_KEY, what="namespace/name")
            if len(set(map(repr, raw))) != len(raw):
                errs.add("ovn.keepPolicies", "lists a policy twice")
            keep = tuple(sorted(k for k in raw if isinstance(k, str)))
            every = tuple(sorted(gateway + others, key=lambda r: (r.order, r.id)))
            complete = RuleSet(every, tuple(sorted({r.policy for r in every})))
    errs.raise_if_any(SOURCE)
    return Published(registry, RuleSet(gateway, tuple(sorted({r.policy for r in gateway}))), complete, keep, fingerprint)


def load_document(doc: Mapping[str, Any], layout: Layout) -> tuple[ZoneRegistry, RuleSet]:
    """The gateway's view of a published document: the zones and the NAT64-bound rules."""
    parsed = parse_document(doc, layout)
    return parsed.registry, parsed.gateway


def digest(text: str | bytes) -> str:
    """The short fingerprint logged by the controller (publishing) and the consumers (loading)."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:12]


def parse_text(data: bytes, layout: Layout) -> Published:
    """A document from the bytes of a file or ConfigMap key: UTF-8 JSON, bounded in size, then the schema."""
    if len(data) > MAX_BYTES:
        raise ValidationError(f"is {len(data)} bytes (at most {MAX_BYTES})", source=SOURCE)
    try:
        doc = json_document(decode(data))
    except ValidationError as exc:
        raise ValidationError(f"not a JSON document: {exc}", source=SOURCE) from None
    return parse_document(doc, layout, digest(data))
