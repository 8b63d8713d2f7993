"""The SecurityZonePolicy model: parse and validate a policy object against the zones and layout.

A policy governs one or more zones. Its ingress rules say which peers may reach the zone, its egress
rules where the zone may go; peers are zones (scope cluster or datacenter), IPv6 CIDRs or wildcard
masks, or IPv4 destinations behind the NAT64 prefix. Parsing collects every problem with its field
path, so one ``kubectl apply`` round trip shows the user everything to fix.

Fail closed, also against the API server: it would *prune* unknown fields when a client does not ask
for strict validation, so a mistyped key would arrive as an absent one. The CRDs keep unknown fields
under spec, and this parser (in the validating webhooks and the controller) refuses them by name. And
still nothing that is absent or empty ever means "everything", nor loses a Deny: both rule lists are
required (``[]`` for none), every rule lists its peers and its ports, "any" is spelled out (``{any:
true}``; all traffic is ``{protocol: Any}``); a missing ``defaultAction`` direction is Deny;
``priority`` is required (a default would silently reorder a policy against the others); and in a Deny
rule the fields whose absence would deny less (a zone peer's ``scope``, a port's ``endPort``) must be
written out.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any, Literal, Mapping

from . import fields as f
from .errors import Collector, ValidationError
from .layout import AddrMatch, Scope
from .zones import ZoneRegistry

Action = Literal["allow", "deny"]
Direction = Literal["ingress", "egress"]
Protocol = Literal["tcp", "udp", "sctp", "icmpv6"]

API_VERSION = "zonectl.io/v1alpha1"
ACTIONS: dict[str, Action] = {"Allow": "allow", "Deny": "deny"}
PROTOCOLS: dict[str, Protocol] = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "ICMPv6": "icmpv6"}
SCOPES: dict[str, Scope] = {"Cluster": "cluster", "Datacenter": "datacenter"}
PEER_KINDS = ("zone", "cidr", "nat64", "any")
MAX_PRIORITY = 999
# Mirrored from the CRD (crds/securityzonepolicy.yaml), so `zonectl compile` and the API server agree.
MAX_ZONES, MAX_RULES, MAX_PEERS, MAX_PORTS, MAX_CIDRS = 64, 200, 100, 100, 100
TOP_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
SPEC_KEYS = ("zones", "priority", "defaultAction", "ingress", "egress", "description")
PORT_KEYS = ("protocol", "port", "endPort", "icmpType", "any")
ANY_IPV4 = IPv4Network("0.0.0.0/0")


@dataclass(frozen=True)
class Peer:
    """The other side of a rule: a zone (by name and scope), an IPv6 match, IPv4 via NAT64, or any address."""

    kind: Literal["zone", "cidr", "nat64", "any"]
    zone: str | None = None
    scope: Scope = "cluster"
    match: AddrMatch | None = None
    ipv4: tuple[IPv4Network, ...] = ()  # nat64 peers: never empty; 0.0.0.0/0 for `nat64: {any: true}`


@dataclass(frozen=True)
class PortSpec:
    """``protocol`` None: all traffic; ``port``/``icmp_type`` None: every port (type) of the protocol."""

    protocol: Protocol | None
    port: int | None = None
    end_port: int | None = None
    icmp_type: int | None = None


@dataclass(frozen=True)
class PolicyRule:
    name: str
    action: Action
    peers: tuple[Peer, ...]  # never empty: "any peer" is Peer("any")
    ports: tuple[PortSpec, ...]  # never empty: "all traffic" is PortSpec(None)


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    zones: tuple[str, ...]
    priority: int
    default_ingress: Action | None = "deny"  # None (hand-made objects only) compiles as Deny
    default_egress: Action | None = "deny"
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()
    generation: int = 0

    @property
    def key(self) -> str:
        """Owner key used on every OVN row and firewall rule compiled from this policy."""
        return f"{self.namespace}/{self.name}"


def _parse_port(item: Any, path: str, deny: bool, errs: Collector) -> PortSpec | None:
    body = f.mapping(item, path, errs, PORT_KEYS, what="an object such as {protocol: TCP, port: 443}")
    if body is None:
        return None
    if "protocol" not in body:
        errs.add(f"{path}.protocol", f"is required (one of {', '.join(PROTOCOLS)}, or Any for all traffic)")
        return None
    if body["protocol"] == "Any":
        extra = [k for k in ("port", "endPort", "icmpType", "any") if k in body]
        if extra:
            errs.add(path, f"protocol Any (all traffic) takes no {', '.join(extra)}")
            return None
        return PortSpec(None)
    proto = f.enum(body["protocol"], {**PROTOCOLS, "Any": None}, f"{path}.protocol", errs)
    given = [k for k in ("port", "icmpType", "any") if k in body]
    if proto is not None and len(given) != 1:
        what = "icmpType (e.g. 128, echo request)" if proto == "icmpv6" else "port"
        errs.add(path, f"needs exactly one of {what} or `any: true` (every {body['protocol']} "
                       f"{'type' if proto == 'icmpv6' else 'port'})" + (f", not {' and '.join(given)}" if given else ""))
        return None
    if "any" in body:
        if not f.only_true(body["any"], f"{path}.any", errs) or proto is None:
            return None
        if "endPort" in body:
            errs.add(f"{path}.endPort", "needs port (any: true is every port already)")
            return None
        return PortSpec(proto)
    port = f.integer(body["port"], f"{path}.port", errs, 1, 65535) if "port" in body else None
    end = f.integer(body["endPort"], f"{path}.endPort", errs, 1, 65535) if "endPort" in body else None
    icmp = f.integer(body["icmpType"], f"{path}.icmpType", errs, 0, 255) if "icmpType" in body else None
    if proto is None:
        return None
    if proto == "icmpv6":
        if "port" in body or "endPort" in body:
            errs.add(path, "ICMPv6 has no ports (use icmpType)")
            return None
        return PortSpec(proto, icmp_type=icmp) if icmp is not None else None
    if "icmpType" in body:
        errs.add(f"{path}.icmpType", "only applies to protocol ICMPv6")
        return None
    if "endPort" not in body and deny:
        errs.add(f"{path}.endPort", f"is required in a Deny rule (endPort: {f.short(body['port'])} for one port): "
                                    "a mistyped endPort dropped by the API server would deny fewer ports")
        return None
    if port is None or ("endPort" in body and end is None):
        return None
    if end is not None and end < port:
        errs.add(f"{path}.endPort", f"{end} is lower than port {port}")
        return None
    return PortSpec(proto, port, end if end != port else None)


def _parse_ports(value: Any, path: str, deny: bool, errs: Collector) -> tuple[PortSpec, ...]:
    if value is f.MISSING:
        errs.add(path, "is required: list protocols and ports, or write [{protocol: Any}] for all traffic")
        return ()
    entries = f.items(value, path, errs, max_items=MAX_PORTS, what="a list of ports",
                      empty="list protocols and ports, or write [{protocol: Any}] for all traffic")
    out = [p for i, item in enumerate(entries) if (p := _parse_port(item, f"{path}[{i}]", deny, errs)) is not None]
    if len(entries) > 1 and any(isinstance(e, Mapping) and e.get("protocol") == "Any" for e in entries):
        errs.add(path, "{protocol: Any} means all traffic; it cannot be combined with other entries")
    return tuple(out)


def _parse_cidr(value: Any, path: str, errs: Collector) -> AddrMatch | None:
    text = f.string(value, path, errs, pattern=f.ADDRESS_CHARS, max_len=100,
                    what="an IPv6 CIDR or value/mask string (hex digits, ':', '.', '/')")
    if text is None:
        return None
    try:
        match = AddrMatch.parse(text)
    except ValueError as exc:
        hint = " (IPv4 destinations go through the NAT64 prefix: use nat64: {cidrs: [...]})" if "." in text else ""
        errs.add(path, f"{f.short(text)} is not an IPv6 CIDR or value/mask: {exc}{hint}")
        return None
    if AddrMatch.parse(text.split("/")[0]).value != match.value:
        errs.add(path, f"{f.short(text)} has bits set outside its mask; did you mean {match.cidr_or_mask}?")
        return None
    if match.is_any:
        errs.add(path, f"{f.short(text)} matches every address: write the peer as {{any: true}} if that is meant")
        return None
    return match


def _parse_nat64(value: Any, path: str, errs: Collector) -> tuple[IPv4Network, ...]:
    body = f.mapping(value, path, errs, ("cidrs", "any"), what="an object: {cidrs: [198.51.100.0/24]} or {any: true}")
    if body is None:
        return ()
    if ("cidrs" in body) == ("any" in body):
        errs.add(path, "needs exactly one of cidrs (a non-empty list of IPv4 CIDRs) or `any: true` (every IPv4 address)")
        return ()
    if "any" in body:
        return (ANY_IPV4,) if f.only_true(body["any"], f"{path}.any", errs) else ()
    nets: list[IPv4Network] = []
    for j, c in enumerate(f.items(body["cidrs"], f"{path}.cidrs", errs, max_items=MAX_CIDRS,
                                  what="a list of IPv4 CIDRs", empty="list IPv4 CIDRs, or write nat64: {any: true}")):
        p = f"{path}.cidrs[{j}]"
        text = f.string(c, p, errs, max_len=18, what="an IPv4 CIDR string")
        if text is None:
            continue
        try:
            net = IPv4Network(text)
        except ValueError as exc:
            errs.add(p, f"{f.short(text)} is not an IPv4 CIDR: {exc}")
            continue
        if net.prefixlen == 0:
            errs.add(p, f"{text} is every IPv4 address: write nat64: {{any: true}} if that is meant")
            continue
        nets.append(net)
    return tuple(nets)


def _parse_peer(item: Any, path: str, deny: bool, registry: ZoneRegistry | None, errs: Collector) -> Peer | None:
    body = f.mapping(item, path, errs, (*PEER_KINDS, "scope"), what="an object with one of zone, cidr, nat64, any")
    if body is None:
        return None
    kinds = [k for k in PEER_KINDS if k in body]
    if len(kinds) != 1:
        errs.add(path, "needs exactly one of zone, cidr, nat64, any")
        return None
    kind = kinds[0]
    if kind != "zone":
        if "scope" in body:
            errs.add(f"{path}.scope", "only applies to zone peers")
        if kind == "any":
            return Peer("any") if f.only_true(body["any"], f"{path}.any", errs) else None
        if kind == "cidr":
            match = _parse_cidr(body["cidr"], f"{path}.cidr", errs)
            return Peer("cidr", match=match) if match is not None else None
        nets = _parse_nat64(body["nat64"], f"{path}.nat64", errs)
        return Peer("nat64", ipv4=nets) if nets else None
    name = f.name(body["zone"], f"{path}.zone", errs, "a zone name")
    scope: Scope | None = "cluster"
    if "scope" in body:
        scope = f.enum(body["scope"], SCOPES, f"{path}.scope", errs)
    elif deny:
        errs.add(f"{path}.scope", "is required in a Deny rule (Cluster or Datacenter): "
                                  "a mistyped scope dropped by the API server would deny less")
        return None
    if name is None or scope is None:
        return None
    if registry is None:  # names only (see parse_policy)
        return Peer("zone", zone=name, scope=scope)
    if registry.get(name) is None:
        known = ", ".join(sorted(z.name for z in registry.zones)) or "none"
        errs.add(f"{path}.zone", f"unknown zone {name!r} (known zones: {known})")
        return None
    if scope == "datacenter" and registry.layout.datacenter is None:
        errs.add(f"{path}.scope", "Datacenter scope needs a datacenter prefix in the layout config")
        return None
    return Peer("zone", zone=name, scope=scope)


def _parse_peers(value: Any, path: str, deny: bool, registry: ZoneRegistry | None, errs: Collector) -> tuple[Peer, ...]:
    if value is f.MISSING:
        errs.add(path, "is required: list the peers, or write [{any: true}] for any peer")
        return ()
    entries = f.items(value, path, errs, max_items=MAX_PEERS, what="a list of peers",
                      empty="list the peers, or write [{any: true}] for any peer")
    out = [p for j, item in enumerate(entries) if (p := _parse_peer(item, f"{path}[{j}]", deny, registry, errs))]
    if len(entries) > 1 and any(isinstance(e, Mapping) and "any" in e for e in entries):
        errs.add(path, "{any: true} matches every peer; it cannot be combined with other peers")
    return tuple(out)


def _parse_rules(value: Any, direction: Direction, registry: ZoneRegistry | None, errs: Collector) -> tuple[PolicyRule, ...]:
    path = f"spec.{direction}"
    if value is f.MISSING:
        errs.add(path, f"is required ({direction}: [] for no rules): a mistyped list that the API server "
                       "drops would take its Deny rules with it")
        return ()
    if not isinstance(value, list):
        errs.add(path, f"must be a list of rules, not {f.type_name(value)}")
        return ()
    if len(value) > MAX_RULES:
        errs.add(path, f"has {len(value)} rules (at most {MAX_RULES})")
        return ()
    peer_key = "from" if direction == "ingress" else "to"
    out: list[PolicyRule] = []
    names: set[str] = set()
    for i, item in enumerate(value):
        p = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            errs.add(p, f"must be a rule object, not {f.type_name(item)}")
            continue
        wrong = {"from": "to", "to": "from"}
        if wrong.get(peer_key) in item:
            errs.add(p, f"unknown field(s) {wrong[peer_key]} (an {direction} rule uses '{peer_key}')")
            continue
        if f.check_keys(item, ("name", "action", peer_key, "ports"), p, errs) is not None:
            continue
        name = f"{direction}-{i}"
        if "name" in item:
            name = f.name(item["name"], f"{p}.name", errs, "a rule name") or name
            if name in names:
                errs.add(f"{p}.name", f"rule name {name!r} is used twice in {direction}")
            names.add(name)
        if "action" not in item:
            errs.add(f"{p}.action", "is required (one of Allow, Deny)")
            continue
        action = f.enum(item["action"], ACTIONS, f"{p}.action", errs)
        deny = action == "deny"
        peers = _parse_peers(item.get(peer_key, f.MISSING), f"{p}.{peer_key}", deny, registry, errs)
        ports = _parse_ports(item.get("ports", f.MISSING), f"{p}.ports", deny, errs)
        if action and peers and ports:
            out.append(PolicyRule(name, action, peers, ports))
    return tuple(out)


def _parse_zones(value: Any, registry: ZoneRegistry | None, errs: Collector) -> tuple[str, ...]:
    out: list[str] = []
    for i, z in enumerate(f.items(value, "spec.zones", errs, max_items=MAX_ZONES, what="a list of zone names",
                                  empty="list at least one zone this policy applies to")):
        name = f.name(z, f"spec.zones[{i}]", errs, "a zone name")
        if name is None:
            continue
        if registry is not None and registry.get(name) is None:
            known = ", ".join(sorted(x.name for x in registry.zones)) or "none"
            errs.add(f"spec.zones[{i}]", f"unknown zone {name!r} (known zones: {known})")
        elif name in out:
            errs.add("spec.zones", f"lists zone {name!r} twice")
        else:
            out.append(name)
    return tuple(out)


def _parse_defaults(spec: Mapping[str, Any], errs: Collector) -> tuple[Action | None, Action | None, bool]:
    """(ingress, egress, whether any direction was written); an absent direction is Deny."""
    body = f.optional_mapping(spec, "defaultAction", "spec.defaultAction", errs, ("ingress", "egress"))
    out: list[Action | None] = []
    for d in ("ingress", "egress"):
        value = body.get(d)
        out.append("deny" if value is None else f.enum(value, ACTIONS, f"spec.defaultAction.{d}", errs))
    return out[0], out[1], any(body.get(d) is not None for d in ("ingress", "egress"))


def _metadata(body: Mapping[str, Any], errs: Collector) -> tuple[str | None, str | None, int]:
    meta = f.metadata(body, errs, "an object with name and namespace")
    if meta is None:
        return None, None, 0
    name = f.name(meta.get("name"), "metadata.name", errs)
    namespace = f.name(meta.get("namespace", "default"), "metadata.namespace", errs, "a namespace name")
    generation = meta.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int) or not 0 <= generation < 2**63:
        errs.add("metadata.generation", f"{f.short(generation)} must be a non-negative integer")
        generation = 0
    return name, namespace, generation


def _source(body: Any) -> str:
    """``SecurityZonePolicy ns/name`` for messages, from whatever the metadata holds (shown, never trusted)."""
    meta = body.get("metadata") if isinstance(body, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    ns, name = meta.get("namespace", "default"), meta.get("name")
    ns = ns if isinstance(ns, str) and f.DNS_LABEL.fullmatch(ns) else "?"
    name = name if isinstance(name, str) and f.DNS_LABEL.fullmatch(name) else "?"
    return f"SecurityZonePolicy {ns}/{name}"


def parse_policy(body: Mapping[str, Any], registry: ZoneRegistry | None) -> Policy:
    """A Policy from a SecurityZonePolicy object; raises ValidationError naming every bad field.

    ``registry`` None checks the object on its own: zone names are not looked up (the validating
    webhook: a policy may arrive in the same ``kubectl apply`` as its zones, before the webhook's
    cache has them; compiling checks them against the zones)."""
    source = _source(body)
    errs = Collector()
    if not isinstance(body, Mapping):
        raise ValidationError(f"must be an object, not {f.type_name(body)}", source=source)
    if body.get("kind", "SecurityZonePolicy") != "SecurityZonePolicy":
        raise ValidationError(f"kind {f.short(body.get('kind'))} is not SecurityZonePolicy", source=source)
    if f.check_keys(body, TOP_KEYS, "", errs) is not None:
        errs.raise_if_any(source)
    if body.get("apiVersion", API_VERSION) != API_VERSION:
        errs.add("apiVersion", f"{f.short(body.get('apiVersion'))} is not {API_VERSION}")
    name, namespace, generation = _metadata(body, errs)
    spec = f.mapping(body.get("spec"), "spec", errs)
    if spec is None:
        errs.raise_if_any(source)
        raise AssertionError("unreachable")
    meant = f.check_keys(spec, SPEC_KEYS, "spec", errs) or set()  # a typo'd key is not also "required"
    if "description" in spec:
        f.string(spec["description"], "spec.description", errs)
    zones = _parse_zones(spec.get("zones"), registry, errs) if "zones" not in meant else ()
    priority = None
    if "priority" in spec:
        priority = f.integer(spec["priority"], "spec.priority", errs, 0, MAX_PRIORITY)
    elif "priority" not in meant:
        errs.add("spec.priority", f"is required (0-{MAX_PRIORITY}, lower first): a default would silently "
                                  "reorder this policy against the others")
    d_in, d_out, explicit = _parse_defaults(spec, errs)
    ingress = _parse_rules(spec.get("ingress", f.MISSING), "ingress", registry, errs) if "ingress" not in meant else ()
    egress = _parse_rules(spec.get("egress", f.MISSING), "egress", registry, errs) if "egress" not in meant else ()
    # Judged on the input, not on the parsed rules: a rule dropped for another error must not add this one.
    if spec.get("ingress") == [] and spec.get("egress") == [] and not explicit:
        errs.add("spec", "has no ingress or egress rules and no defaultAction: add rules, or write "
                         "defaultAction (e.g. {ingress: Deny, egress: Deny}) to close the zones")
    errs.raise_if_any(source)
    assert name is not None and namespace is not None and priority is not None
    return Policy(namespace=namespace, name=name, zones=zones, priority=priority, default_ingress=d_in,
                  default_egress=d_out, ingress=ingress, egress=egress, generation=generation)
