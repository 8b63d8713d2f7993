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

from .errors import Collector, Problem, ValidationError
from .layout import AddrMatch, Layout, Scope

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


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
        if body is None:
            return None
        if not isinstance(body, Mapping):
            errs.add(path, "must be a label selector object")
            return None
        labels = body.get("matchLabels") or {}
        if not isinstance(labels, Mapping):
            errs.add(f"{path}.matchLabels", "must be a map of strings")
            labels = {}
        exprs: list[Requirement] = []
        for i, expr in enumerate(body.get("matchExpressions") or []):
            p = f"{path}.matchExpressions[{i}]"
            if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str):
                errs.add(p, "needs a key")
                continue
            op = expr.get("operator")
            values = tuple(str(v) for v in expr.get("values") or ())
            if op not in SELECTOR_OPERATORS:
                errs.add(f"{p}.operator", f"{op!r} is not one of {', '.join(SELECTOR_OPERATORS)}")
            elif op in ("In", "NotIn") and not values:
                errs.add(f"{p}.values", f"operator {op} needs at least one value")
            elif op in ("Exists", "DoesNotExist") and values:
                errs.add(f"{p}.values", f"operator {op} takes no values")
            exprs.append(Requirement(expr["key"], str(op), values))
        return cls(tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(exprs))

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


def parse_zone(body: Mapping[str, Any], layout: Layout) -> Zone:
    """A Zone from a SecurityZone object (dict as the API server returns it); all problems at once."""
    errs = Collector()
    meta = body.get("metadata") or {}
    name = meta.get("name")
    source = f"SecurityZone {name or '?'}"
    if body.get("kind", "SecurityZone") != "SecurityZone":
        raise ValidationError(f"kind {body.get('kind')!r} is not SecurityZone", source=source)
    if not isinstance(name, str) or not NAME_RE.match(name):
        errs.add("metadata.name", f"{name!r} is not a DNS label (lowercase letters, digits, '-')")
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        errs.raise_now("spec", "is required", source)
    zid = spec.get("id")
    if isinstance(zid, str):
        try:
            zid = int(zid, 0)
        except ValueError:
            errs.add("spec.id", f"{zid!r} is not an integer")
    if not isinstance(zid, int) or isinstance(zid, bool):
        errs.add("spec.id", "is required and must be an integer (e.g. 0x2000)")
        zid = -1
    elif zid == 0:
        errs.add("spec.id", "0 is reserved for 'no zone'")
    elif not 0 < zid <= layout.max_zone_id:
        errs.add("spec.id", f"{zid:#x} does not fit the {layout.zone_width}-bit zone field (1..0x{layout.max_zone_id:x})")
    namespaces = spec.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) and NAME_RE.match(n) for n in namespaces):
        errs.add("spec.namespaces", "must be a list of namespace names")
        namespaces = []
    selector = LabelSelector.parse(spec.get("namespaceSelector"), "spec.namespaceSelector", errs)
    egress = None
    if spec.get("egress") is not None:
        egress = _parse_egress(spec["egress"], errs)
    errs.raise_if_any(source)
    return Zone(str(name), zid, tuple(namespaces), selector, egress, str(spec.get("description") or ""))


def _parse_egress(body: Any, errs: Collector) -> ZoneEgress | None:
    if not isinstance(body, Mapping):
        errs.add("spec.egress", "must be an object with pool and address")
        return None
    try:
        pool = IPv4Network(body.get("pool"))
    except (ValueError, TypeError) as exc:
        errs.add("spec.egress.pool", f"{body.get('pool')!r} is not an IPv4 CIDR ({exc})")
        return None
    try:
        address = IPv4Address(body.get("address"))
    except (ValueError, TypeError):
        errs.add("spec.egress.address", f"{body.get('address')!r} is not an IPv4 address")
        return None
    if pool.num_addresses < 4:
        errs.add("spec.egress.pool", f"{pool} is too small for a Tayga pool (at least a /30)")
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
        for z in sorted(self.zones, key=lambda z: z.name):
            if z.name in self._by_name:
                problems.append(Problem(f"zones.{z.name}", f"zone name {z.name!r} is defined twice"))
            elif z.id in self._by_id:
                other = self._by_id[z.id]
                problems.append(Problem(f"zones.{z.name}", f"zones {other.name!r} and {z.name!r} both use id {z.id:#x}"))
            else:
                self._by_name[z.name] = z
                self._by_id[z.id] = z
        if problems:
            raise ValidationError(problems, source="zones")

    @classmethod
    def from_objects(cls, layout: Layout, objects: Iterable[Mapping[str, Any]]) -> "ZoneRegistry":
        """Build from SecurityZone objects; every invalid object is reported, none is skipped silently."""
        zones: list[Zone] = []
        problems: list[Problem] = []
        for obj in objects:
            try:
                zones.append(parse_zone(obj, layout))
            except ValidationError as exc:
                problems.extend(exc.attributed())
        if problems:
            raise ValidationError(problems, source="zones")
        return cls(layout, tuple(zones))

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
