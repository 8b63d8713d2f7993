"""The cluster configuration: one validated document (a file, or the operator's ConfigMap).

The core validates what it owns (the address layout and the NAT64 prefix) and keeps the sections of
the I/O layers (``ovn``, ``gateway``, ``operator``, ``dns``) as plain mappings that each layer parses
with its own dataclass, so the core never imports them. Errors name the field path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Network
from typing import Any, Mapping

from . import fields as f
from .errors import Collector, Problem, ValidationError
from .layout import Layout
from .nat64 import Nat64Prefix

SECTIONS = ("layout", "nat64", "dns", "ovn", "gateway", "operator")
API_VERSION = "zonectl.io/v1alpha1"
KIND = "ZonectlConfig"
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
    return f.address(value, path, errs, IPv6Network, "an IPv6 network (e.g. fd00:10:244::/48)")


LAYOUT_KEYS = ("cluster", "datacenter", "zoneField", "nodePrefixLength", "ipamBits")
NAT64_KEYS = ("prefix", "enabled")


def parse_layout(body: Mapping[str, Any]) -> Layout:
    errs = Collector()
    body, meant = f.section(body, "layout", errs, LAYOUT_KEYS)
    cluster = _net(body.get("cluster"), "layout.cluster", errs)
    if body.get("cluster") is None and "cluster" not in meant:
        errs.add("layout.cluster", "is required (the cluster's pod subnet, e.g. fd00:10:244::/48)")
    datacenter = _net(body.get("datacenter"), "layout.datacenter", errs)
    zf = f.optional_mapping(body, "zoneField", "layout.zoneField", errs, ("offset", "width"))
    ints = {
        "nodePrefixLength": f.integer(body.get("nodePrefixLength", 64), "layout.nodePrefixLength", errs, 0, 128),
        "zoneField.offset": f.integer(zf.get("offset", 64), "layout.zoneField.offset", errs, 0, 127),
        "zoneField.width": f.integer(zf.get("width", 16), "layout.zoneField.width", errs, 1, 32),
        "ipamBits": f.integer(body.get("ipamBits", 16), "layout.ipamBits", errs, 0, 64),
    }
    errs.raise_if_any("config")
    node_len, offset, width, ipam = ints.values()
    assert cluster is not None and node_len is not None and offset is not None and width is not None
    assert ipam is not None
    try:
        return Layout(cluster, node_len, offset, width, datacenter, ipam)
    except ValidationError as exc:
        raise ValidationError([Problem(f"layout.{p.path}" if p.path else "layout", p.reason) for p in exc.problems],
                              source="config") from None


def parse_nat64(body: Mapping[str, Any], cluster: IPv6Network) -> Nat64Prefix | None:
    """The ``nat64`` section: the prefix (default fd64:ff9b::/96), or None with ``enabled: false``."""
    errs = Collector()
    body, _ = f.section(body, "nat64", errs, NAT64_KEYS)
    enabled = f.boolean(body.get("enabled", True), "nat64.enabled", errs)
    prefix = f.address(body.get("prefix", DEFAULT_NAT64), "nat64.prefix", errs, IPv6Network, "an IPv6 network")
    errs.raise_if_any("config")
    if not enabled or prefix is None:
        return None
    try:
        nat64 = Nat64Prefix(prefix)
    except ValidationError as exc:
        raise ValidationError([Problem("nat64.prefix", p.reason) for p in exc.problems], source="config") from None
    if nat64.network.overlaps(cluster):
        raise ValidationError(f"nat64.prefix {nat64.network} overlaps the cluster prefix {cluster}", source="config")
    return nat64


def parse_config(body: Mapping[str, Any] | None) -> Config:
    """Validate a whole config document; unknown sections and keys are errors (typos fail loudly).

    The I/O layers' sections stay plain mappings here (each layer parses its own), but a section that is
    not a mapping is refused here, for every command alike.
    """
    errs = Collector()
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ValidationError(f"must be a mapping of sections, not {f.type_name(body)}", source="config")
    body = dict(body)
    if body.get("apiVersion", API_VERSION) != API_VERSION:
        errs.add("apiVersion", f"{f.short(body.get('apiVersion'))} is not {API_VERSION}")
    if body.get("kind", KIND) != KIND:
        errs.add("kind", f"{f.short(body.get('kind'))} is not {KIND}")
    body.pop("apiVersion", None)
    body.pop("kind", None)
    unknown = [k for k in body if k not in SECTIONS]
    if unknown:
        errs.add("", f"unknown section(s) {f.keys_text(unknown)} (known: {', '.join(SECTIONS)})")
        errs.raise_if_any("config")
    for name in SECTIONS:
        if body.get(name) is not None and not isinstance(body[name], Mapping):
            errs.add(name, f"must be a mapping, not {f.type_name(body[name])}")
    errs.raise_if_any("config")
    layout = parse_layout(body.get("layout") or {})
    nat64 = parse_nat64(body.get("nat64") or {}, layout.cluster)
    sections = {k: dict(body.get(k) or {}) for k in ("dns", "ovn", "gateway", "operator")}
    return Config(layout, nat64, sections)
