"""Reading NB state from the ovsdbapp cache: node switches, and the ACL rows zonectl owns.

Only rows carrying ``k8s.ovn.org/owner-controller = <our controller>`` and a zonectl key are ever
treated as ours; everything else (OVN-Kubernetes' ACLs, port groups, address sets) is read-only here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv6Network
from typing import Any, Iterable, Mapping

from zonectl.render.ovn_match import OWNER_CONTROLLER_KEY, acl_key

ACL_COLUMNS = ("direction", "priority", "match", "action", "name", "external_ids", "tier", "log", "severity", "meter",
               "label", "options")


@dataclass(frozen=True)
class SwitchSelector:
    """Which logical switches are node switches (and carry zonectl's rows).

    Default: every switch whose ``other_config:ipv6_prefix`` (set by OVN-Kubernetes on node switches) lies in
    the cluster prefix. ``names`` pins an explicit list instead; ``node_port_prefix`` names the management
    port (``k8s-<node>``) whose traffic to pods is exempt, as OVN-K's own allow-from-node ACL does.
    """

    cluster: IPv6Network | None = None
    names: tuple[str, ...] | None = None
    node_port_prefix: str = "k8s-"

    def selects(self, row: Any) -> bool:
        if self.names is not None:
            return row.name in self.names
        prefix = (row.other_config or {}).get("ipv6_prefix")
        if not prefix or self.cluster is None:
            return False
        try:
            addr = ipaddress.IPv6Address(prefix.split("/")[0])
        except ValueError:
            return False
        return addr in self.cluster


@dataclass(frozen=True)
class SwitchInfo:
    name: str
    uuid: Any
    router_ports: tuple[str, ...]
    node_ports: tuple[str, ...]


@dataclass
class OwnedAcl:
    """An ACL row zonectl owns, as read: its identity key, columns, and the switches that reference it."""

    uuid: Any
    key: str | None
    columns: dict[str, Any]
    switches: set[str] = field(default_factory=set)

    @property
    def external_ids(self) -> Mapping[str, str]:
        return self.columns.get("external_ids", {})


def _plain(value: Any) -> Any:
    """IDL column values -> plain Python (lists for optional scalars become scalar or None)."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return value[0] if len(value) == 1 else (None if not value else list(value))
    return value


def acl_columns(row: Any, schema_columns: Iterable[str]) -> dict[str, Any]:
    return {c: _plain(getattr(row, c)) for c in ACL_COLUMNS if c in schema_columns}


def node_switches(tables: Mapping[str, Any], selector: SwitchSelector) -> list[SwitchInfo]:
    out: list[SwitchInfo] = []
    for sw in tables["Logical_Switch"].rows.values():
        if not selector.selects(sw):
            continue
        routers: list[str] = []
        nodes: list[str] = []
        for port in sw.ports:
            if port.type == "router":
                routers.append(port.name)
            elif selector.node_port_prefix and port.name.startswith(selector.node_port_prefix):
                nodes.append(port.name)
        out.append(SwitchInfo(sw.name, sw.uuid, tuple(sorted(routers)), tuple(sorted(nodes))))
    return sorted(out, key=lambda s: s.name)


def is_owned(external_ids: Mapping[str, str], controller: str) -> bool:
    return external_ids.get(OWNER_CONTROLLER_KEY) == controller and any(k.startswith("zonectl.io/") for k in external_ids)


def owned_acls(tables: Mapping[str, Any], controller: str) -> list[OwnedAcl]:
    """Every ACL row zonectl owns, with the names of the switches referencing it."""
    acl_table = tables["ACL"]
    cols = acl_table.columns.keys()
    owned: dict[Any, OwnedAcl] = {}
    for row in acl_table.rows.values():
        ids = row.external_ids
        if is_owned(ids, controller):
            owned[row.uuid] = OwnedAcl(row.uuid, acl_key(ids), acl_columns(row, cols))
    if owned:
        for sw in tables["Logical_Switch"].rows.values():
            for acl in sw.acls:
                entry = owned.get(acl.uuid)
                if entry is not None:
                    entry.switches.add(sw.name)
    return list(owned.values())
