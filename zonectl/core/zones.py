"""Security zones and their registry, built from SecurityZone objects.

A zone is a name, an id that fits the layout's zone field (0 is reserved for "no zone"), the
namespaces allowed to place pods in it, and optionally an IPv4 egress pool/address of its own (so
IPv4-only firewalls still see the zone after NAT64). The registry refuses duplicates by name and by
id and names both zones, since two zones with one id would be indistinguishable on the wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Iterable, Mapping

from . import fields as f
from .errors import Collector, Problem, ValidationError, parse_each
from .layout import AddrMatch, Layout, Scope

NAME_RE = f.DNS_LABEL
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector (matchLabels + matchExpressions), evaluated without an API server."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, body: Any, path: str, errs: Collector) -> "LabelSelector | None":
        """A selector that selects something specific: ``{}`` (every namespace, in Kubernetes) is refused.

        "Every namespace" is written out: ``matchExpressions: [{key: kubernetes.io/metadata.name,
        operator: Exists}]`` (the API server puts that label on every namespace).
        """
        if body is None:
            return None
        sel = f.mapping(body, path, errs, ("matchLabels", "matchExpressions"), what="a label selector object")
        if sel is None:
            return None
        if not sel:
            errs.add(path, "is empty, which would select every namespace: give matchLabels or matchExpressions")
            return None
        labels: list[tuple[str, str]] = []
        if "matchLabels" in sel:
            raw = f.mapping(sel["matchLabels"], f"{path}.matchLabels", errs, what="a map of label keys to values")
            if raw is not None and not raw:
                errs.add(f"{path}.matchLabels", "is empty: give at least one label, or leave matchLabels out")
            for k, v in (raw or {}).items():
                key = f.string(k, f"{path}.matchLabels", errs, pattern=LABEL_KEY, max_len=317, what="a label key")
                value = f.string(v, f"{path}.matchLabels.{key or '?'}", errs, pattern=LABEL_VALUE, max_len=63,
                                 what="a label value")
                if key is not None and value is not None:
                    labels.append((key, value))
        exprs: list[Requirement] = []
        if "matchExpressions" in sel:
            for i, expr in enumerate(f.items(sel["matchExpressions"], f"{path}.matchExpressions", errs, max_items=64,
                                             empty="give at least one expression, or leave matchExpressions out")):
                req = _requirement(expr, f"{path}.matchExpressions[{i}]", errs)
                if req is not None:
                    exprs.append(req)
        return cls(tuple(sorted(labels)), tuple(exprs))

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for r in self.expressions:
            present = r.key in labels
            if r.operator == "In" and (not present or labels[r.key] not in r.values):
                return False
            if r.operator == "NotIn" and present and labels[r.key] in r.values:
                return False
            if r.operator == "Exists" and not present:
                return False
            if r.operator == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True)
class ZoneEgress:
    """A zone's own IPv4 egress: its Tayga pool and the address its traffic is SNATed to."""

    pool: IPv4Network
    address: IPv4Address


@dataclass(frozen=True)
class Zone:
    name: str
    id: int
    namespaces: tuple[str, ...] = ()
    namespace_selector: LabelSelector | None = None
    egress: ZoneEgress | None = None
    description: str = ""

    def allows_namespace(self, namespace: str, labels: Mapping[str, str] | None = None) -> bool:
        """Whether pods of ``namespace`` may be placed in this zone (listed, or selected by labels)."""
        if namespace in self.namespaces:
            return True
        return self.namespace_selector is not None and self.namespace_selector.matches(labels or {})

    @property
    def hex_id(self) -> str:
        return f"0x{self.id:x}"


def _requirement(body: Any, path: str, errs: Collector) -> Requirement | None:
    expr = f.mapping(body, path, errs, ("key", "operator", "values"), what="an object {key, operator, values}")
    if expr is None:
        return None
    key = f.string(expr.get("key"), f"{path}.key", errs, pattern=LABEL_KEY, max_len=317, what="a label key")
    op = expr.get("operator")
    if op not in SELECTOR_OPERATORS:
        errs.add(f"{path}.operator", f"{f.short(op)} is not one of {', '.join(SELECTOR_OPERATORS)}")
        return None
    values: list[str] = []
    if op in ("In", "NotIn"):
        for j, v in enumerate(f.items(expr.get("values"), f"{path}.values", errs, max_items=256,
                                      what="a list of label values", empty=f"operator {op} needs at least one value")):
            value = f.string(v, f"{path}.values[{j}]", errs, pattern=LABEL_VALUE, max_len=63, what="a label value")
            if value is not None:
                values.append(value)
        if not values:
            return None
    elif expr.get("values"):
        errs.add(f"{path}.values", f"operator {op} takes no values")
        return None
    return Requirement(key, str(op), tuple(values)) if key is not None else None


TOP_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
SPEC_KEYS = ("id", "description", "namespaces", "namespaceSelector", "egress")
API_VERSION = "zonectl.io/v1alpha1"


def _zone_id(value: Any, layout: Layout, errs: Collector) -> int:
    if value is None:
        errs.add("spec.id", "is required (an integer such as 0x2000)")
        return -1
    if isinstance(value, str) and len(value) <= 12:
        try:
            value = int(value, 0)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int):
        errs.add("spec.id", f"{f.short(value)} must be an integer (e.g. 0x2000)")
        return -1
    if value == 0:
        errs.add("spec.id", "0 is reserved for 'no zone'")
    elif not 0 < value <= layout.max_zone_id:
        errs.add("spec.id", f"{f.short(value)} does not fit the {layout.zone_width}-bit zone field "
                            f"(1..0x{layout.max_zone_id:x})")
    return value


def _source(body: Any) -> str:
    meta = body.get("metadata") if isinstance(body, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return f"SecurityZone {name if isinstance(name, str) and NAME_RE.fullmatch(name) else '?'}"


def parse_zone(body: Mapping[str, Any], layout: Layout) -> Zone:
    """A Zone from a SecurityZone object (dict as the API server returns it); all problems at once."""
    errs = Collector()
    source = _source(body)
    if not isinstance(body, Mapping):
        raise ValidationError(f"must be an object, not {f.type_name(body)}", source=source)
    if body.get("kind", "SecurityZone") != "SecurityZone":
        raise ValidationError(f"kind {f.short(body.get('kind'))} is not SecurityZone", source=source)
    if f.check_keys(body, TOP_KEYS, "", errs) is not None:
        errs.raise_if_any(source)
    if body.get("apiVersion", API_VERSION) != API_VERSION:
        errs.add("apiVersion", f"{f.short(body.get('apiVersion'))} is not {API_VERSION}")
    meta = f.metadata(body, errs, "an object with a name")
    name = f.name(meta.get("name"), "metadata.name", errs) if meta is not None else None
    if meta is not None and meta.get("namespace") is not None:  # cluster-scoped: ignored, but of its form
        f.name(meta["namespace"], "metadata.namespace", errs, "a namespace name")
    spec = f.mapping(body.get("spec"), "spec", errs)
    if spec is None:
        errs.raise_if_any(source)
        raise AssertionError("unreachable")
    meant = f.check_keys(spec, SPEC_KEYS, "spec", errs) or set()
    zid = _zone_id(spec.get("id"), layout, errs) if "id" not in meant else -1
    description = f.string(spec.get("description", ""), "spec.description", errs) or ""
    namespaces: list[str] = []
    if "namespaces" in spec:
        for i, n in enumerate(f.items(spec["namespaces"], "spec.namespaces", errs, max_items=1024,
                                      what="a list of namespace names", empty="list namespaces, or leave it out")):
            ns = f.name(n, f"spec.namespaces[{i}]", errs, "a namespace name")
            if ns in namespaces:
                errs.add("spec.namespaces", f"lists namespace {ns!r} twice")
            elif ns is not None:
                namespaces.append(ns)
    selector = LabelSelector.parse(spec.get("namespaceSelector"), "spec.namespaceSelector", errs)
    egress = None
    if spec.get("egress") is not None:
        egress = _parse_egress(spec["egress"], errs)
    errs.raise_if_any(source)
    assert name is not None
    return Zone(name, zid, tuple(namespaces), selector, egress, description)


def not_unicast(addr: IPv4Address) -> str | None:
    """Why an address cannot be a zone's public source address (None: it can)."""
    for test, why in ((addr.is_unspecified, "unspecified"), (addr.is_loopback, "loopback"),
                      (addr.is_multicast, "multicast"), (addr.is_link_local, "link-local"),
                      (addr == IPv4Address("255.255.255.255"), "broadcast"), (addr.is_reserved, "reserved (240/4)"),
                      (addr in IPv4Network("0.0.0.0/8"), "in 0.0.0.0/8 ('this network')")):
        if test:
            return why
    return None


def _parse_egress(body: Any, errs: Collector) -> ZoneEgress | None:
    eg = f.mapping(body, "spec.egress", errs, ("pool", "address"), what="an object with pool and address")
    if eg is None:
        return None
    missing = [k for k in ("pool", "address") if eg.get(k) is None]
    if missing:
        errs.add("spec.egress", f"needs pool and address (missing: {', '.join(missing)}); leave egress out for the "
                                "shared pool")
        return None
    pool_text = f.string(eg.get("pool"), "spec.egress.pool", errs, max_len=18, what="an IPv4 CIDR string")
    addr_text = f.string(eg.get("address"), "spec.egress.address", errs, max_len=15, what="an IPv4 address string")
    if pool_text is None or addr_text is None:
        return None
    try:
        pool = IPv4Network(pool_text)
    except ValueError as exc:
        errs.add("spec.egress.pool", f"{f.short(pool_text)} is not an IPv4 CIDR ({exc})")
        return None
    try:
        address = IPv4Address(addr_text)
    except ValueError:
        errs.add("spec.egress.address", f"{f.short(addr_text)} is not an IPv4 address")
        return None
    if pool.num_addresses < 4:
        errs.add("spec.egress.pool", f"{pool} is too small for a Tayga pool (at least a /30)")
    bad = not_unicast(pool.network_address) or not_unicast(pool.broadcast_address)
    if bad:
        errs.add("spec.egress.pool", f"{pool} is {bad}: a Tayga pool must be unicast IPv4")
    bad = not_unicast(address)
    if bad:
        errs.add("spec.egress.address", f"{address} is {bad}: the zone's traffic must leave with a unicast address")
    elif address in pool:
        errs.add("spec.egress.address", f"{address} is inside the zone's own pool {pool}; it must be routable outside")
    return ZoneEgress(pool, address)


@dataclass(frozen=True)
class ZoneRegistry:
    """All zones, unique by name and id; the one source the compiler and the webhook look zones up in."""

    layout: Layout
    zones: tuple[Zone, ...] = ()
    _by_name: dict[str, Zone] = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_id: dict[int, Zone] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        egress: dict[IPv4Address, str] = {}
        for z in sorted(self.zones, key=lambda z: z.name):
            if z.name in self._by_name:
                problems.append(Problem(f"zones.{z.name}", f"zone name {z.name!r} is defined twice"))
            elif z.id in self._by_id:
                other = self._by_id[z.id]
                problems.append(Problem(f"zones.{z.name}", f"zones {other.name!r} and {z.name!r} both use id {z.id:#x}"))
            elif z.egress is not None and z.egress.address in egress:
                holder = egress[z.egress.address]
                problems.append(Problem(f"zones.{z.name}.egress.address", f"zones {holder!r} and {z.name!r} both leave "
                                        f"with {z.egress.address}: an IPv4 firewall could not tell them apart"))
            else:
                self._by_name[z.name] = z
                self._by_id[z.id] = z
                if z.egress is not None:
                    egress[z.egress.address] = z.name
        if problems:
            raise ValidationError(problems, source="zones")

    @classmethod
    def from_objects(cls, layout: Layout, objects: Iterable[Mapping[str, Any]]) -> "ZoneRegistry":
        """Build from SecurityZone objects; every invalid object is reported, none is skipped silently."""
        return cls(layout, tuple(parse_each(objects, lambda obj: parse_zone(obj, layout), "zones")))

    def get(self, name: str) -> Zone | None:
        return self._by_name.get(name)

    def by_id(self, zone_id: int) -> Zone | None:
        return self._by_id.get(zone_id)

    def require(self, name: str) -> Zone:
        zone = self._by_name.get(name)
        if zone is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ValidationError(f"unknown zone {name!r} (known zones: {known})")
        return zone

    def names(self) -> dict[int, str]:
        return {z.id: z.name for z in self.zones}

    def match(self, name: str, scope: Scope = "cluster") -> AddrMatch:
        return self.layout.zone_match(self.require(name).id, scope)

    def with_zone(self, zone: Zone) -> "ZoneRegistry":
        """A new registry with ``zone`` added or replaced (by name); raises if its id clashes."""
        return ZoneRegistry(self.layout, tuple(z for z in self.zones if z.name != zone.name) + (zone,))

    def without(self, name: str) -> "ZoneRegistry":
        return ZoneRegistry(self.layout, tuple(z for z in self.zones if z.name != name))

    def __iter__(self):
        return iter(sorted(self.zones, key=lambda z: z.id))

    def __len__(self) -> int:
        return len(self.zones)
