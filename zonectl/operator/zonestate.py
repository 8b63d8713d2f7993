"""What the controller knows about zones and namespaces, and the admission table derived from it.

Why a precomputed table: the pod webhook sits on every pod creation, so the per-request work must be a
dict lookup. Every (namespace, zone) answer is computed here when a SecurityZone or a namespace's
labels change (rare), never while a pod waits. The table is an immutable snapshot replaced as a
whole, so a request always sees one consistent version.

Both kopf operators of the process (the admission one on every replica and the reconciling one on the
active replica) feed the same ZoneState; every update is idempotent (an upsert of what the API server
says), so the order in which the two see an event does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from ..core.errors import ValidationError
from ..core.layout import Layout
from ..core.zones import Zone, ZoneRegistry, parse_zone

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class HintTable:
    """The admission answers, precomputed.

    ``rows[namespace][zone]`` is the hint annotation value for a zone the namespace may use (namespaces
    whose labels are known). For a namespace not seen yet (a pod created right after its namespace,
    before the watch event arrived), ``explicit`` still answers for zones that list it by name; a zone
    that would need its labels is refused with a "retry" message rather than guessed: an empty label
    set would wrongly satisfy ``NotIn``/``DoesNotExist`` selectors.
    """

    hints: Mapping[str, str] = field(default_factory=dict)
    rows: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    explicit: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    selector_zones: frozenset[str] = frozenset()

    def row(self, namespace: str) -> Mapping[str, str] | None:
        return self.rows.get(namespace)


def hint_value(layout: Layout, zone_id: int) -> str:
    """The annotation value: the zone id already shifted into the zone field, as IPv6 text.

    The allocator ORs this value into the address it computed from the node prefix and the IPAM offset
    (``fd00:10:244:2::5 | ::2000:0:0:0 = fd00:10:244:2:2000::5``). Shipping the shifted value rather than
    the bare id keeps the allocator ignorant of where the field sits.
    """
    layout.check_zone_id(zone_id)
    return str(IPv6Address(zone_id << layout.field_shift))


def zones_referenced(body: Mapping[str, Any]) -> frozenset[str]:
    """Every zone name a SecurityZonePolicy body mentions (governed zones and zone peers); no validation."""
    spec = body.get("spec") or {}
    names: set[str] = set()
    if isinstance(spec, Mapping):
        for z in spec.get("zones") or []:
            if isinstance(z, str):
                names.add(z)
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(direction) or []:
                if not isinstance(rule, Mapping):
                    continue
                for peer in rule.get(key) or []:
                    if isinstance(peer, Mapping) and isinstance(peer.get("zone"), str):
                        names.add(peer["zone"])
    return frozenset(names)


class ZoneState:
    """Zones, namespace labels, policy -> zone references, and the admission table built from them."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.registry = ZoneRegistry(layout)
        self.namespaces: dict[str, Mapping[str, str]] = {}
        self.zone_errors: dict[str, ValidationError] = {}
        self.policy_refs: dict[str, frozenset[str]] = {}
        self.table = HintTable()
        self.revision = 0

    # --- zones -----------------------------------------------------------------------------------
    def upsert_zone(self, body: Mapping[str, Any]) -> Zone:
        """Add or replace a zone; on any problem raise and leave the state exactly as it was."""
        name = (body.get("metadata") or {}).get("name") or "?"
        try:
            zone = parse_zone(body, self.layout)
            registry = self.registry.with_zone(zone)
        except ValidationError as exc:
            self.zone_errors[name] = exc
            raise
        self.zone_errors.pop(name, None)
        if self.registry.get(zone.name) != zone:
            self.registry = registry
            self._rebuild()
        return zone

    def remove_zone(self, name: str) -> bool:
        self.zone_errors.pop(name, None)
        if self.registry.get(name) is None:
            return False
        self.registry = self.registry.without(name)
        self._rebuild()
        return True

    # --- namespaces ------------------------------------------------------------------------------
    def set_namespace(self, name: str, labels: Mapping[str, str] | None) -> bool:
        """Record a namespace's labels; True if that changed anything (its table row is then rebuilt)."""
        labels = dict(labels or {})
        if self.namespaces.get(name) == labels:
            return False
        self.namespaces[name] = labels
        rows = dict(self.table.rows)
        rows[name] = self._row(name, labels)
        self._publish(rows)
        return True

    def remove_namespace(self, name: str) -> bool:
        if self.namespaces.pop(name, None) is None:
            return False
        rows = dict(self.table.rows)
        rows.pop(name, None)
        self._publish(rows)
        return True

    def allows(self, namespace: str, zone_name: str) -> bool | None:
        """May pods of ``namespace`` use ``zone_name``? None when that needs labels not known yet."""
        row = self.table.row(namespace)
        if row is not None:
            return zone_name in row
        if zone_name in self.table.explicit.get(namespace, _EMPTY):
            return True
        return None if zone_name in self.table.selector_zones else False

    # --- policies --------------------------------------------------------------------------------
    def set_policy(self, key: str, body: Mapping[str, Any]) -> None:
        self.policy_refs[key] = zones_referenced(body)

    def remove_policy(self, key: str) -> None:
        self.policy_refs.pop(key, None)

    def policies_referencing(self, zone_name: str) -> list[str]:
        return sorted(k for k, zones in self.policy_refs.items() if zone_name in zones)

    # --- the table -------------------------------------------------------------------------------
    def _row(self, namespace: str, labels: Mapping[str, str]) -> Mapping[str, str]:
        return MappingProxyType(
            {z.name: self.table.hints[z.name] for z in self.registry.zones if z.allows_namespace(namespace, labels)}
        )

    def _rebuild(self) -> None:
        hints = {z.name: hint_value(self.layout, z.id) for z in self.registry.zones}
        explicit: dict[str, dict[str, str]] = {}
        for z in self.registry.zones:
            for ns in z.namespaces:
                explicit.setdefault(ns, {})[z.name] = hints[z.name]
        self.table = HintTable(
            hints=MappingProxyType(hints),
            rows=self.table.rows,
            explicit=MappingProxyType({k: MappingProxyType(v) for k, v in explicit.items()}),
            selector_zones=frozenset(z.name for z in self.registry.zones if z.namespace_selector is not None),
        )
        self._publish({ns: self._row(ns, labels) for ns, labels in self.namespaces.items()})

    def _publish(self, rows: Mapping[str, Mapping[str, str]]) -> None:
        t = self.table
        self.table = HintTable(t.hints, MappingProxyType(dict(rows)), t.explicit, t.selector_zones)
        self.revision += 1

    def zones(self) -> Iterable[Zone]:
        return iter(self.registry)
