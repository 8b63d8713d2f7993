"""The SecurityZonePolicy model: parse and validate a policy object against the zones and layout.

A policy governs one or more zones. Its ingress rules say which peers may reach the zone, its egress
rules where the zone may go; peers are zones (scope cluster or datacenter), IPv6 CIDRs or wildcard
masks, or IPv4 destinations behind the NAT64 prefix. ``defaultAction`` makes a zone fail-closed (or
explicitly open) per direction. Parsing collects every problem with its field path, so one
``kubectl apply`` round trip shows the user everything to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any, Literal, Mapping

from .errors import Collector, ValidationError
from .layout import AddrMatch, Scope
from .zones import NAME_RE, ZoneRegistry

Action = Literal["allow", "deny"]
Direction = Literal["ingress", "egress"]
Protocol = Literal["tcp", "udp", "sctp", "icmpv6"]

ACTIONS = {"Allow": "allow", "Deny": "deny"}
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "ICMPv6": "icmpv6"}
SCOPES = {"Cluster": "cluster", "Datacenter": "datacenter"}
PEER_KINDS = ("zone", "cidr", "nat64")
MAX_PRIORITY = 999
DEFAULT_PRIORITY = 500


@dataclass(frozen=True)
class Peer:
    """The other side of a rule: a zone (by name and scope), an IPv6 match, or IPv4 via NAT64."""

    kind: Literal["zone", "cidr", "nat64"]
    zone: str | None = None
    scope: Scope = "cluster"
    match: AddrMatch | None = None
    ipv4: tuple[IPv4Network, ...] = ()  # nat64 peers: empty = every IPv4 address


@dataclass(frozen=True)
class PortSpec:
    protocol: Protocol
    port: int | None = None
    end_port: int | None = None
    icmp_type: int | None = None


@dataclass(frozen=True)
class PolicyRule:
    name: str
    action: Action
    peers: tuple[Peer, ...]  # empty = any peer
    ports: tuple[PortSpec, ...]  # empty = all traffic


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    zones: tuple[str, ...]
    priority: int = DEFAULT_PRIORITY
    default_ingress: Action | None = None
    default_egress: Action | None = None
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()
    generation: int = 0

    @property
    def key(self) -> str:
        """Owner key used on every OVN row and firewall rule compiled from this policy."""
        return f"{self.namespace}/{self.name}"


def _enum(value: Any, allowed: Mapping[str, str], path: str, errs: Collector, default: str | None = None) -> Any:
    if value is None:
        if default is None:
            errs.add(path, f"is required (one of {', '.join(allowed)})")
        return default
    if value not in allowed:
        errs.add(path, f"{value!r} is not one of {', '.join(allowed)}")
        return default
    return allowed[value]


def _int(value: Any, path: str, errs: Collector, lo: int, hi: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        errs.add(path, f"{value!r} must be an integer from {lo} to {hi}")
        return None
    return value


def _parse_ports(body: Any, path: str, errs: Collector) -> tuple[PortSpec, ...]:
    if body is None:
        return ()
    if not isinstance(body, list):
        errs.add(path, "must be a list")
        return ()
    out: list[PortSpec] = []
    for i, item in enumerate(body):
        p = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            errs.add(p, "must be an object with protocol and port")
            continue
        unknown = set(item) - {"protocol", "port", "endPort", "icmpType"}
        if unknown:
            errs.add(p, f"unknown field(s) {', '.join(sorted(unknown))}")
        proto = _enum(item.get("protocol"), PROTOCOLS, f"{p}.protocol", errs)
        port = _int(item.get("port"), f"{p}.port", errs, 1, 65535)
        end = _int(item.get("endPort"), f"{p}.endPort", errs, 1, 65535)
        icmp = _int(item.get("icmpType"), f"{p}.icmpType", errs, 0, 255)
        if proto == "icmpv6":
            if item.get("port") is not None or item.get("endPort") is not None:
                errs.add(p, "ICMPv6 has no ports (use icmpType)")
        elif icmp is not None:
            errs.add(f"{p}.icmpType", "only applies to protocol ICMPv6")
        if end is not None and port is None and item.get("port") is None:
            errs.add(f"{p}.endPort", "needs port")
        if port is not None and end is not None and end < port:
            errs.add(f"{p}.endPort", f"{end} is lower than port {port}")
        if proto:
            out.append(PortSpec(proto, port, end if end != port else None, icmp))
    return tuple(out)


def _parse_peer(item: Any, path: str, registry: ZoneRegistry, errs: Collector) -> Peer | None:
    if not isinstance(item, Mapping):
        errs.add(path, "must be an object with one of zone, cidr, nat64")
        return None
    kinds = [k for k in PEER_KINDS if k in item]
    unknown = set(item) - set(PEER_KINDS) - {"scope"}
    if unknown:
        errs.add(path, f"unknown field(s) {', '.join(sorted(unknown))}")
    if len(kinds) != 1:
        errs.add(path, "needs exactly one of zone, cidr, nat64")
        return None
    kind = kinds[0]
    if kind != "zone" and "scope" in item:
        errs.add(f"{path}.scope", "only applies to zone peers")
    if kind == "zone":
        name = item["zone"]
        scope = _enum(item.get("scope"), SCOPES, f"{path}.scope", errs, default="cluster")
        if registry.get(name) is None:
            known = ", ".join(sorted(z.name for z in registry.zones)) or "none"
            errs.add(f"{path}.zone", f"unknown zone {name!r} (known zones: {known})")
            return None
        if scope == "datacenter" and registry.layout.datacenter is None:
            errs.add(f"{path}.scope", "Datacenter scope needs a datacenter prefix in the layout config")
            return None
        return Peer("zone", zone=name, scope=scope)
    if kind == "cidr":
        text = item["cidr"]
        try:
            match = AddrMatch.parse(str(text))
        except ValueError as exc:
            hint = " (IPv4 destinations go through the NAT64 prefix: use nat64: {cidrs: [...]})" if "." in str(text) else ""
            errs.add(f"{path}.cidr", f"{text!r} is not an IPv6 CIDR or value/mask: {exc}{hint}")
            return None
        if AddrMatch.parse(str(text).split("/")[0]).value != match.value:
            errs.add(f"{path}.cidr", f"{text!r} has bits set outside its mask; did you mean {match.cidr_or_mask}?")
            return None
        return Peer("cidr", match=match)
    body = item["nat64"]
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        errs.add(f"{path}.nat64", "must be an object, e.g. {cidrs: [198.51.100.0/24]} or {} for any IPv4")
        return None
    nets: list[IPv4Network] = []
    for j, c in enumerate(body.get("cidrs") or []):
        try:
            nets.append(IPv4Network(str(c)))
        except ValueError as exc:
            errs.add(f"{path}.nat64.cidrs[{j}]", f"{c!r} is not an IPv4 CIDR: {exc}")
    return Peer("nat64", ipv4=tuple(nets))


def _parse_rules(body: Any, direction: Direction, registry: ZoneRegistry, errs: Collector) -> tuple[PolicyRule, ...]:
    path = f"spec.{direction}"
    if body is None:
        return ()
    if not isinstance(body, list):
        errs.add(path, "must be a list of rules")
        return ()
    peer_key = "from" if direction == "ingress" else "to"
    out: list[PolicyRule] = []
    names: set[str] = set()
    for i, item in enumerate(body):
        p = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            errs.add(p, "must be a rule object")
            continue
        unknown = set(item) - {"name", "action", peer_key, "ports"}
        if unknown:
            wrong = {"from": "to", "to": "from"}
            hints = [f"{u} (an {direction} rule uses '{peer_key}')" if u in wrong else u for u in sorted(unknown)]
            errs.add(p, f"unknown field(s) {', '.join(hints)}")
        name = item.get("name") or f"{direction}-{i}"
        if not isinstance(name, str) or not NAME_RE.match(name):
            errs.add(f"{p}.name", f"{name!r} is not a DNS label")
        elif name in names:
            errs.add(f"{p}.name", f"rule name {name!r} is used twice in {direction}")
        names.add(str(name))
        action = _enum(item.get("action"), ACTIONS, f"{p}.action", errs)
        peers_body = item.get(peer_key)
        peers: list[Peer] = []
        if peers_body is not None and not isinstance(peers_body, list):
            errs.add(f"{p}.{peer_key}", "must be a list of peers")
        else:
            for j, peer in enumerate(peers_body or []):
                parsed = _parse_peer(peer, f"{p}.{peer_key}[{j}]", registry, errs)
                if parsed:
                    peers.append(parsed)
            if peers_body == []:
                errs.add(f"{p}.{peer_key}", "is empty; omit it to mean any peer")
        ports = _parse_ports(item.get("ports"), f"{p}.ports", errs)
        if action:
            out.append(PolicyRule(str(name), action, tuple(peers), ports))
    return tuple(out)


def parse_policy(body: Mapping[str, Any], registry: ZoneRegistry) -> Policy:
    """A Policy from a SecurityZonePolicy object; raises ValidationError naming every bad field."""
    errs = Collector()
    meta = body.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    source = f"SecurityZonePolicy {namespace}/{name or '?'}"
    if body.get("kind", "SecurityZonePolicy") != "SecurityZonePolicy":
        raise ValidationError(f"kind {body.get('kind')!r} is not SecurityZonePolicy", source=source)
    if not isinstance(name, str) or not NAME_RE.match(name):
        errs.add("metadata.name", f"{name!r} is not a DNS label")
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        errs.raise_now("spec", "is required", source)
    unknown = set(spec) - {"zones", "priority", "defaultAction", "ingress", "egress", "description"}
    if unknown:
        errs.add("spec", f"unknown field(s) {', '.join(sorted(unknown))}")
    zones = spec.get("zones")
    if not isinstance(zones, list) or not zones:
        errs.add("spec.zones", "must list at least one zone this policy applies to")
        zones = []
    for i, z in enumerate(zones):
        if registry.get(z) is None:
            known = ", ".join(sorted(x.name for x in registry.zones)) or "none"
            errs.add(f"spec.zones[{i}]", f"unknown zone {z!r} (known zones: {known})")
    if len(set(map(str, zones))) != len(zones):
        errs.add("spec.zones", "lists a zone twice")
    priority = spec.get("priority", DEFAULT_PRIORITY)
    priority = _int(priority, "spec.priority", errs, 0, MAX_PRIORITY)
    defaults = spec.get("defaultAction") or {}
    d_in = d_out = None
    if not isinstance(defaults, Mapping):
        errs.add("spec.defaultAction", "must be an object: {ingress: Allow|Deny, egress: Allow|Deny}")
    else:
        if set(defaults) - {"ingress", "egress"}:
            errs.add("spec.defaultAction", f"unknown field(s) {', '.join(sorted(set(defaults) - {'ingress', 'egress'}))}")
        d_in = _enum(defaults.get("ingress"), ACTIONS, "spec.defaultAction.ingress", errs, default="") or None
        d_out = _enum(defaults.get("egress"), ACTIONS, "spec.defaultAction.egress", errs, default="") or None
    ingress = _parse_rules(spec.get("ingress"), "ingress", registry, errs)
    egress = _parse_rules(spec.get("egress"), "egress", registry, errs)
    # Judged on the input, not on the parsed rules: a rule dropped for another error must not add this one.
    if not spec.get("ingress") and not spec.get("egress") and d_in is None and d_out is None:
        errs.add("spec", "has no ingress or egress rules and no defaultAction: it would do nothing")
    errs.raise_if_any(source)
    generation = meta.get("generation") or 0
    return Policy(
        namespace=str(namespace),
        name=str(name),
        zones=tuple(str(z) for z in zones),
        priority=priority if priority is not None else DEFAULT_PRIORITY,
        default_ingress=d_in,
        default_egress=d_out,
        ingress=ingress,
        egress=egress,
        generation=int(generation) if isinstance(generation, int) else 0,
    )

