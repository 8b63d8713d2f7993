"""The gateway's Prometheus metrics, read at scrape time from the kernel's rule counters and Tayga.

Per-zone counters come straight from the kernel's rule counters (each rule's comment names its zone
and action), so they cost nothing on the packet path and survive a zonectl restart. Metric names and
labels are public (README, dashboards): ``zonectl_gateway_*`` and ``zonectl_tayga_*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..metrics_server import registry_of
from ..render.ip6tables import Counter
from .tayga import TaygaStatus


@dataclass(frozen=True)
class ApplyStats:
    applies_ok: int = 0
    applies_failed: int = 0
    last_success_unix: float = 0.0
    rules: int = 0
    last_error: str = ""


def zone_totals(counters: Iterable[Counter]) -> dict[tuple[str, str], tuple[int, int]]:
    """(zone, action) -> (packets, bytes), summed over the rules of that zone."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for c in counters:
        zone, action = c.field("zone") or "-", c.field("action") or "?"
        p, b = out.get((zone, action), (0, 0))
        out[(zone, action)] = (p + c.packets, b + c.bytes)
    return out


def families(counters: Iterable[Counter], taygas: Iterable[TaygaStatus], stats: ApplyStats,
             zones: Iterable[str] = ()) -> list[Metric]:
    """Every metric of one scrape. Every known zone appears (with zeros) so dashboards need no special cases."""
    totals = zone_totals(counters)
    for z in zones:
        for action in ("allow", "deny"):
            totals.setdefault((z, action), (0, 0))
    packets = CounterMetricFamily("zonectl_gateway_packets_total",
                                  "Packets to the NAT64 prefix by source zone and verdict (rule counters).",
                                  labels=["zone", "action"])
    octets = CounterMetricFamily("zonectl_gateway_bytes_total",
                                 "Bytes to the NAT64 prefix by source zone and verdict (rule counters).",
                                 labels=["zone", "action"])
    for (zone, action), (p, b) in sorted(totals.items()):
        packets.add_metric([zone, action], p)
        octets.add_metric([zone, action], b)
    out: list[Metric] = [packets, octets]
    ts = sorted(taygas, key=lambda t: t.name)
    per_instance: tuple[tuple[str, str, type, Callable[[TaygaStatus], float]], ...] = (
        ("zonectl_tayga_up", "1 if the Tayga instance runs and holds its TUN device.", GaugeMetricFamily,
         lambda t: int(t.up)),
        ("zonectl_tayga_restarts_total", "Restarts after Tayga died (not counting controlled restarts).",
         CounterMetricFamily, lambda t: t.restarts),
        ("zonectl_tayga_dynamic_mappings", "Entries in Tayga's dynamic.map (as of its last write).", GaugeMetricFamily,
         lambda t: t.dynamic_mappings),
        ("zonectl_tayga_active_mappings", "Dynamic mappings used within Tayga's guaranteed lease (2h4m).",
         GaugeMetricFamily, lambda t: t.active_mappings),
    )
    for name, help_, kind, get in per_instance:
        family = kind(name, help_, labels=["instance"])
        for t in ts:
            family.add_metric([t.name], get(t))
        out.append(family)
    applies = CounterMetricFamily("zonectl_gateway_applies_total", "Apply attempts by result.", labels=["result"])
    applies.add_metric(["ok"], stats.applies_ok)
    applies.add_metric(["error"], stats.applies_failed)
    out += [
        applies,
        GaugeMetricFamily("zonectl_gateway_last_apply_success_timestamp_seconds",
                          "When the running state was last applied.", value=stats.last_success_unix),
        GaugeMetricFamily("zonectl_gateway_rules", "Compiled rules the gateway enforces.", value=stats.rules),
    ]
    return out


def render(counters: Iterable[Counter], taygas: Iterable[TaygaStatus], stats: ApplyStats,
           zones: Iterable[str] = ()) -> str:
    """The /metrics body for these readings (Prometheus text format)."""
    counters, taygas, zones = list(counters), list(taygas), list(zones)
    return generate_latest(registry_of(lambda: families(counters, taygas, stats, zones))).decode()
