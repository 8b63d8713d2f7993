"""The cluster configuration: one validated document (a file, or the operator's ConfigMap).

The core validates what it owns (the address layout and the NAT64 prefix) and keeps the sections of
the I/O layers (``ovn``, ``gateway``, ``operator``, ``dns``) as plain mappings that each layer parses
with its own dataclass, so the core never imports them. Errors name the field path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Network
from typing import Any, Mapping

from .errors import Collector, ValidationError
from .layout import Layout
from .nat64 import Nat64Prefix

SECTIONS = ("layout", "nat64", "dns", "ovn", "gateway", "operator")
DEFAULT_NAT64 = "fd64:ff9b::/96"


@dataclass(frozen=True)
class Config:
    layout: Layout
    nat64: Nat64Prefix | None
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> Mapping[str, Any]:
        return self.sections.get(name) or {}


def _net(value: Any, path: str, errs: Collector) -> IPv6Network | None:
    if value is None:
        return None
    try:
        return IPv6Network(str(value))
    except ValueError as exc:
        errs.add(path, f"{value!r} is not an IPv6 network: {exc}")
        return None


def parse_layout(body: Mapping[str, Any]) -> Layout:
    errs = Collector()
    cluster = _net(body.get("cluster"), "layout.cluster", errs)
    if body.get("cluster") is None:
        errs.add("layout.cluster", "is required (the cluster's pod subnet, e.g. fd00:10:244::/48)")
    datacenter = _net(body.get("datacenter"), "layout.datacenter", errs)
    zf = body.get("zoneField") or {}
    if not isinstance(zf, Mapping):
        errs.add("layout.zoneField", "must be an object {offset, width}")
        zf = {}
    ints = {
        "nodePrefixLength": body.get("nodePrefixLength", 64),
        "zoneField.offset": zf.get("offset", 64),
        "zoneField.width": zf.get("width", 16),
        "ipamBits": body.get("ipamBits", 16),
    }
    for key, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool):
            errs.add(f"layout.{key}", f"{value!r} must be an integer")
    unknown = set(body) - {"cluster", "datacenter", "zoneField", "nodePrefixLength", "ipamBits"}
    if unknown:
        errs.add("layout", f"unknown field(s) {', '.join(sorted(unknown))}")
    errs.raise_if_any("config")
    assert cluster is not None
    try:
        return Layout(cluster, ints["nodePrefixLength"], ints["zoneField.offset"], ints["zoneField.width"],
                      datacenter, ints["ipamBits"])
    except ValidationError as exc:
        raise ValidationError(exc.problems, source="config: layout") from None


def parse_config(body: Mapping[str, Any] | None) -> Config:
    """Validate a whole config document; unknown top-level sections are errors (typos fail loudly)."""
    body = dict(body or {})
    body.pop("apiVersion", None)
    body.pop("kind", None)
    errs = Collector()
    unknown = set(body) - set(SECTIONS)
    if unknown:
        errs.add("", f"unknown section(s) {', '.join(sorted(unknown))} (known: {', '.join(SECTIONS)})")
    for name in SECTIONS:
        if body.get(name) is not None and not isinstance(body[name], Mapping):
            errs.add(name, "must be a mapping")
    errs.raise_if_any("config")
    layout = parse_layout(body.get("layout") or {})
    nat_body = body.get("nat64") or {}
    nat64 = None
    if nat_body.get("enabled", True):
        nat64 = Nat64Prefix.parse(str(nat_body.get("prefix", DEFAULT_NAT64)))
        if nat64.network.overlaps(layout.cluster):
            raise ValidationError(f"nat64.prefix {nat64.network} overlaps the cluster prefix {layout.cluster}", source="config")
    sections = {k: dict(body.get(k) or {}) for k in ("dns", "ovn", "gateway", "operator")}
    return Config(layout, nat64, sections)
