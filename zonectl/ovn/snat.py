"""SNAT rows that hide a zone pod's source address on the way out of the cluster.

OVN-Kubernetes' ``--disable-snat-multiple-gws`` does not remove SNAT: it replaces the one cluster-wide
SNAT row per gateway router (``GR_<node>``, logical_ip = cluster subnet) with one row per pod (a /128).
Either way an external firewall then sees the node's address, not the pod's, and the zone encoded in
the address is lost. zonectl reports every such row (default) and, only when asked (``remove``),
deletes them and keeps them deleted by watching the NAT table, logging each removal. Rows are OVN-K's:
removal is an explicit opt-in, the one place zonectl writes to rows it does not own.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from ipaddress import IPv6Network
from typing import Any, Literal, Mapping

from zonectl.core.layout import Layout
from zonectl.core.zones import ZoneRegistry

from .connection import NbClient, OvnError, brief
from .watch import NbWatchLoop

LOG = logging.getLogger(__name__)

SnatMode = Literal["report", "remove"]
SNAT_MODES = ("report", "remove")
HIDING_TYPES = ("snat", "dnat_and_snat")


@dataclass(frozen=True)
class SnatFinding:
    router: str
    nat_uuid: Any
    type: str
    logical_ip: str
    external_ip: str
    zones: tuple[str, ...]  # zone names hidden ("*" = every zone)
    reason: str

    def __str__(self) -> str:
        return f"{self.router}: {self.type} {self.logical_ip} -> {self.external_ip}: {self.reason}"

    def as_dict(self) -> dict:
        return {"router": self.router, "uuid": str(self.nat_uuid), "type": self.type, "logicalIp": self.logical_ip,
                "externalIp": self.external_ip, "zones": list(self.zones), "reason": self.reason}


def is_gateway_router(row: Any, prefix: str = "GR_") -> bool:
    """OVN-K names gateway routers GR_<node>; any router pinned to a chassis is a gateway router too."""
    return row.name.startswith(prefix) or bool((row.options or {}).get("chassis"))


def hidden_zones(net: IPv6Network, layout: Layout, zones: ZoneRegistry | None) -> tuple[str, ...] | None:
    """Zones whose pods ``net`` (a NAT logical_ip) covers; None if it covers no zone pod of this cluster."""
    if not net.overlaps(layout.cluster):
        return None
    fixed = layout.field_mask & int(net.netmask)
    if fixed != layout.field_mask:  # the prefix leaves (part of) the zone field free: it covers every zone
        return ("*",)
    zone_id = layout.zone_of(int(net.network_address))
    if zone_id == 0:
        return None
    zone = zones.by_id(zone_id) if zones is not None else None
    return (zone.name if zone else f"0x{zone_id:x}",)


def find_hiding_nats(
    tables: Mapping[str, Any], layout: Layout, zones: ZoneRegistry | None = None, gateway_prefix: str = "GR_"
) -> list[SnatFinding]:
    out: list[SnatFinding] = []
    for router in tables["Logical_Router"].rows.values():
        if not is_gateway_router(router, gateway_prefix):
            continue
        for nat in router.nat:
            if nat.type not in HIDING_TYPES:
                continue
            try:
                net = ipaddress.ip_network(nat.logical_ip, strict=False)
            except ValueError:
                continue
            if not isinstance(net, IPv6Network):
                continue
            hidden = hidden_zones(net, layout, zones)
            if hidden is None:
                continue
            if hidden == ("*",):
                reason = f"hides the source of every zone pod in {net}"
            elif net.prefixlen == 128:
                reason = f"hides the source of zone {hidden[0]} pod {net.network_address}"
            else:
                reason = f"hides the source of zone {hidden[0]} pods in {net}"
            out.append(SnatFinding(router.name, nat.uuid, nat.type, nat.logical_ip, nat.external_ip, hidden, reason))
    return sorted(out, key=lambda f: (f.router, f.logical_ip))


def remove_nats(nb: NbClient, layout: Layout, zones: ZoneRegistry | None = None,
                gateway_prefix: str = "GR_") -> list[SnatFinding]:
    """Delete every hiding NAT row in one transaction (found again inside it); returns what was removed."""
    from ovsdbapp.backend.ovs_idl import command

    removed: list[SnatFinding] = []

    class _Remove(command.BaseCommand):
        def run_idl(self, txn) -> None:
            removed.clear()
            tables = self.api.tables
            routers = {r.name: r for r in tables["Logical_Router"].rows.values()}
            for finding in find_hiding_nats(tables, layout, zones, gateway_prefix):
                nat = tables["NAT"].rows.get(finding.nat_uuid)
                if nat is not None:
                    routers[finding.router].delvalue("nat", nat)
                    removed.append(finding)

    try:
        with nb.api.transaction(check_error=True, log_errors=False) as txn:
            txn.add(_Remove(nb.api))
    except Exception as exc:
        raise OvnError(f"removing SNAT rows failed: {brief(exc)}") from exc
    for finding in removed:
        LOG.warning("removed SNAT row that hid zone pods: %s", finding)
    return removed


class SnatGuard(NbWatchLoop):
    """Keeps hiding SNAT rows removed: re-checks whenever the NB cache changes, and every ``interval`` s.

    OVN-K re-adds a per-pod SNAT row for every new pod; the guard deletes it within one IDL update.
    ``removed`` keeps every removal (also logged) for status and tests.
    """

    thread_name = "zonectl-snat-guard"

    def __init__(self, nb: NbClient, layout: Layout, zones: ZoneRegistry | None = None, *,
                 interval: float = 30.0, gateway_prefix: str = "GR_") -> None:
        super().__init__(nb, interval=interval)
        self.layout = layout
        self.zones = zones
        self.gateway_prefix = gateway_prefix
        self.removed: list[SnatFinding] = []
        self.errors: list[str] = []

    def run_once(self) -> None:
        try:
            with self.nb.locked():
                pending = find_hiding_nats(self.nb.api.tables, self.layout, self.zones, self.gateway_prefix)
            if pending:
                self.removed.extend(remove_nats(self.nb, self.layout, self.zones, self.gateway_prefix))
        except Exception as exc:  # keep guarding; the error is logged and kept for status
            LOG.error("SNAT guard: %s", brief(exc))
            self.errors.append(brief(exc))
