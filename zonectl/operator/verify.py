"""Address verification: does a pod's address carry the zone its label claims?

Two things can break the contract: the allocator ignored the hint (OVN-Kubernetes without the zonectl
patch, or a pod created while the webhook was bypassed), or the label changed on a running pod (its
address cannot follow). Both are found by decoding the pod's addresses with the layout: the addresses
come from ``status.podIPs`` and from OVN-Kubernetes' ``k8s.ovn.org/pod-networks`` annotation (set before
the pod starts, so a mismatch shows even while the container is still pulling its image).

Only addresses inside the cluster prefix count: host-network pods have node addresses.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_interface
from typing import Any, Mapping

from ..core.layout import Layout
from ..core.zones import ZoneRegistry

POD_NETWORKS = "k8s.ovn.org/pod-networks"
TERMINATED = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodView:
    """What verification keeps of a pod: identity, claimed zone, addresses, and the verdict."""

    uid: str
    namespace: str
    name: str
    zone: str | None  # the label's value (None: no label, zone 0)
    addresses: tuple[IPv6Address, ...]
    mismatch: str | None = None  # why the address does not fit, None when it does (or is not known yet)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_addresses(body: Mapping[str, Any], layout: Layout) -> tuple[IPv6Address, ...]:
    """IPv6 addresses of the pod inside the cluster prefix, from podIPs and the OVN-K annotation."""
    found: dict[IPv6Address, None] = {}
    status = body.get("status") or {}
    texts: list[str] = [p.get("ip", "") for p in status.get("podIPs") or [] if isinstance(p, Mapping)]
    if status.get("podIP"):
        texts.append(status["podIP"])
    raw = ((body.get("metadata") or {}).get("annotations") or {}).get(POD_NETWORKS)
    if raw:
        try:
            networks = json.loads(raw)
        except ValueError:
            networks = {}
        default = networks.get("default") if isinstance(networks, Mapping) else None
        if isinstance(default, Mapping):
            texts.extend(str(a) for a in default.get("ip_addresses") or [])
            if default.get("ip_address"):
                texts.append(str(default["ip_address"]))
    for text in texts:
        try:
            addr = ip_interface(text).ip
        except ValueError:
            continue
        if isinstance(addr, IPv6Address) and addr in layout.cluster:
            found[addr] = None
    return tuple(found)


def observe(body: Mapping[str, Any], registry: ZoneRegistry, label_key: str) -> PodView:
    """Decode the pod's addresses and compare each one's zone field with its label."""
    meta = body.get("metadata") or {}
    zone = (meta.get("labels") or {}).get(label_key) or None
    view = PodView(str(meta.get("uid", "")), str(meta.get("namespace", "")), str(meta.get("name", "")), zone,
                   pod_addresses(body, registry.layout))
    return judge(view, registry, label_key)


def judge(view: PodView, registry: ZoneRegistry, label_key: str) -> PodView:
    """The verdict for a pod's addresses against its claimed zone, with the registry of the moment."""
    reason: str | None = None
    if view.addresses:
        reason = _mismatch(view, registry, label_key)
    return PodView(view.uid, view.namespace, view.name, view.zone, view.addresses, reason)


def _mismatch(view: PodView, registry: ZoneRegistry, label_key: str) -> str | None:
    expected = 0
    if view.zone is not None:
        known = registry.get(view.zone)
        if known is None:
            return f"label {label_key}={view.zone} names no SecurityZone"
        expected = known.id
    names = registry.names()
    for addr in view.addresses:
        got = registry.layout.zone_of(addr)
        if got != expected:
            carried = f"zone {names[got]} (0x{got:x})" if got in names else f"zone id 0x{got:x}"
            if got == 0:
                carried = "no zone (0x0)"
            claimed = f"zone {view.zone} (0x{expected:x})" if view.zone else f"no zone ({label_key} label absent)"
            return f"address {addr} carries {carried} but the pod is in {claimed}"
    return None


class PodTracker:
    """Every live pod's verdict, and the per-zone counts derived from them (for zone status and metrics)."""

    def __init__(self) -> None:
        self.pods: dict[str, PodView] = {}
        self._pods_per_zone: Counter[str] = Counter()
        self._mismatch_per_zone: Counter[str] = Counter()

    def update(self, view: PodView) -> bool:
        """Record a pod; True when it has newly become a mismatch (or its reason changed): report it then."""
        old = self.pods.get(view.uid)
        self._count(old, -1)
        self.pods[view.uid] = view
        self._count(view, +1)
        return view.mismatch is not None and (old is None or old.mismatch != view.mismatch)

    def forget(self, uid: str) -> None:
        self._count(self.pods.pop(uid, None), -1)

    def _count(self, view: PodView | None, sign: int) -> None:
        if view is None or view.zone is None:
            return
        self._pods_per_zone[view.zone] += sign
        if view.mismatch is not None:
            self._mismatch_per_zone[view.zone] += sign

    def pods_in(self, zone: str) -> int:
        return self._pods_per_zone[zone]

    def mismatches_in(self, zone: str) -> int:
        return self._mismatch_per_zone[zone]

    def mismatched(self, zone: str, limit: int = 5) -> list[PodView]:
        return sorted((v for v in self.pods.values() if v.zone == zone and v.mismatch), key=lambda v: v.key)[:limit]

    def zones(self) -> set[str]:
        return {z for z, n in self._pods_per_zone.items() if n > 0}

    def reverify(self, registry: ZoneRegistry, label_key: str) -> list[PodView]:
        """Re-judge every tracked pod after a zone change; returns the pods that newly became mismatches."""
        return [v for v in list(self.pods.values()) if self.update(judge(v, registry, label_key))]


def is_terminated(body: Mapping[str, Any]) -> bool:
    return (body.get("status") or {}).get("phase") in TERMINATED
