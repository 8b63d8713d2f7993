"""The egress gateway: make the host match a GatewayPlan, keep Tayga running, report metrics.

Order of an apply, and why:
1. pre-flight, touching nothing: nft -c (or ip6tables-restore --test), and the installed Tayga parses
   every new tayga.conf. Any refusal -> GatewayError, previous rules and Tayga keep running.
2. sysctls and the zone filter first, so NAT64 traffic is never forwarded unfiltered (a filter of the
   other backend left from an earlier config is removed only once the new one is in place);
3. TUN devices and Tayga instances (controlled restart only where the config changed);
4. routes, policy rules and egress addresses (netlink), then the NAT table;
5. instances, routes and addresses no longer wanted are removed.
Every step reports only real changes, so re-applying the same plan returns an empty report.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.core import Metric

from ..core.errors import ValidationError, ZonectlError
from ..core.nat64 import Nat64Prefix
from ..core.rules import RuleSet
from ..core.zones import ZoneRegistry
from ..metrics_server import registry_of
from ..render import nftables
from ..render.tayga import TaygaVersion
from . import drift, metrics, netlink
from .config import GatewayConfig
from .firewall import Ip6tables, NftFilter, Nftables, ZoneFilter
from .host import CommandError, Host, SysctlError
from .plan import GatewayPlan, build_plan
from .tayga import Backoff, TaygaProcess, TaygaStatus
from .tayga_info import TaygaError, detect_version

log = logging.getLogger(__name__)


class GatewayError(ZonectlError):
    """An apply was refused or failed; the message says why and that the previous state was kept."""


@dataclass
class ApplyReport:
    changes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def add(self, what: str, changed: bool | int) -> None:
        if changed:
            self.changes.append(what if changed is True else f"{what} ({changed})")


@dataclass(frozen=True)
class GatewayStatus:
    version: TaygaVersion
    taygas: tuple[TaygaStatus, ...]
    zone_totals: dict[tuple[str, str], tuple[int, int]]
    rules: int
    stats: metrics.ApplyStats

    def as_dict(self) -> dict:
        return {
            "taygaVersion": str(self.version),
            "rules": self.rules,
            "tayga": [t.__dict__ for t in self.taygas],
            "zones": {f"{z}/{a}": {"packets": p, "bytes": b} for (z, a), (p, b) in sorted(self.zone_totals.items())},
            "applies": {"ok": self.stats.applies_ok, "error": self.stats.applies_failed,
                        "lastError": self.stats.last_error},
        }


class Gateway:
    """One gateway on one host (or network namespace)."""

    def __init__(self, cfg: GatewayConfig, host: Host | None = None, *, version: TaygaVersion | None = None) -> None:
        self.cfg = cfg
        self.host = host or Host()
        self.version = version or cfg.tayga.version or detect_version(cfg.tayga.binary, self.host)
        self.state_dir = Path(cfg.state_dir)
        self.ip6t = Ip6tables(self.host)
        self.nft = Nftables(self.host, self.state_dir)
        self.filters: dict[str, ZoneFilter] = {"nftables": NftFilter(self.nft), "ip6tables": self.ip6t}
        self.taygas: dict[str, TaygaProcess] = {}
        self.plan: GatewayPlan | None = None
        self.stats = metrics.ApplyStats()
        self._lock = threading.RLock()
        self.registry = registry_of(self._metric_families)  # what /metrics serves (read at scrape time)

    @property
    def filter(self) -> ZoneFilter:
        """The zone filter backend the current config selects (``gateway.filter``)."""
        return self.filters[self.cfg.filter]

    # -- desired state ---------------------------------------------------------------------------
    def build(self, nat64: Nat64Prefix | None, registry: ZoneRegistry, ruleset: RuleSet) -> GatewayPlan:
        return build_plan(self.cfg, nat64, registry, ruleset, self.version)

    def apply_inputs(self, nat64: Nat64Prefix | None, registry: ZoneRegistry, ruleset: RuleSet) -> ApplyReport:
        """Plan and apply; a bad input raises GatewayError and changes nothing."""
        try:
            plan = self.build(nat64, registry, ruleset)
        except ValidationError as exc:
            self._failed(str(exc))
            raise GatewayError(f"refused, previous state kept: {exc}") from exc
        return self.apply(plan)

    # -- apply -----------------------------------------------------------------------------------
    def apply(self, plan: GatewayPlan, *, tayga: bool = True) -> ApplyReport:
        """Make the host match ``plan``. ``tayga=False`` writes the Tayga configs but starts no process
        (a one-shot ``zonectl gateway apply``; supervision belongs to ``zonectl gateway run``)."""
        with self._lock:
            try:
                self.preflight(plan)
            except GatewayError as exc:
                self._failed(str(exc.__cause__ or exc))
                raise
            report = ApplyReport()
            try:
                self._apply(plan, report, tayga)
            except (CommandError, SysctlError, TaygaError, LookupError, OSError) as exc:
                self._failed(str(exc))
                raise GatewayError(f"apply failed part-way ({', '.join(report.changes) or 'nothing changed'}): "
                                   f"{exc}") from exc
            self.plan = plan
            self.stats = replace(self.stats, applies_ok=self.stats.applies_ok + 1, last_success_unix=time.time(),
                                 rules=len(plan.gateway_rules), last_error="")
            if report.changed:
                log.info("gateway applied: %s", "; ".join(report.changes))
            return report

    def _failed(self, why: str) -> None:
        self.stats = replace(self.stats, applies_failed=self.stats.applies_failed + 1, last_error=why)
        log.error("gateway apply refused: %s", why)

    def _process(self, name: str, tun: str) -> TaygaProcess:
        proc = self.taygas.get(name)
        if proc is None or proc.tun != tun:
            backoff = Backoff(self.cfg.restart.initial_delay, self.cfg.restart.max_delay)
            proc = TaygaProcess(self.host, name, self.state_dir / "tayga" / name, tun,
                                binary=self.cfg.tayga.binary, backoff=backoff,
                                probe_interval=self.cfg.restart.probe_interval,
                                probe_failures=self.cfg.restart.probe_failures)
        return proc

    def preflight(self, plan: GatewayPlan) -> None:
        """Check the plan with the real tools without changing anything; GatewayError says why not."""
        try:
            self._preflight(plan)
        except (CommandError, TaygaError, LookupError) as exc:
            raise GatewayError(f"refused, previous state kept: {exc}") from exc

    def _preflight(self, plan: GatewayPlan) -> None:
        self.filters[plan.filter_backend].test(plan)
        self.nft.check(plan.nat_text)
        with self.host.iproute() as ip:
            if netlink.link_index(ip, plan.uplink) is None:
                raise LookupError(f"uplink interface {plan.uplink} does not exist")
        for inst in plan.instances:
            current = self.taygas.get(inst.name)
            if current is None or current.conf_text != inst.conf_text:
                self._process(inst.name, inst.tun).check_config(inst.conf_text)

    def _apply(self, plan: GatewayPlan, report: ApplyReport, tayga: bool = True) -> None:
        # First, so that nothing else changes when forwarding cannot be turned on (a read-only /proc/sys
        # in a container): SysctlError then names the key and says to set it on the node. Failing here
        # is closed: without forwarding nothing reaches the NAT64 prefix, filtered or not.
        for key, value in plan.sysctls:
            report.add(f"sysctl {key}={value}", self.host.sysctl_set(key, value))
        zone_filter = self.filters[plan.filter_backend]
        report.add(f"zone filter ({zone_filter.name})", zone_filter.apply(plan))
        for other in self.filters.values():  # a backend switch: the old filter goes once the new one is in
            if other is not zone_filter and other.present():
                other.remove(plan)
                report.add(f"zone filter ({other.name}) removed", True)
        for inst in plan.instances:
            old = self.taygas.get(inst.name)
            if tayga and old is not None and old.tun != inst.tun:  # renamed TUN: end the old instance first
                old.stop()
                netlink.delete_link(self.host, old.tun)
                del self.taygas[inst.name]
                report.add(f"tayga {inst.name} moved from {old.tun}", True)
            report.add(f"tun {inst.tun}", netlink.ensure_tun(self.host, inst.tun))
            proc = self._process(inst.name, inst.tun)
            if not tayga:
                report.add(f"tayga {inst.name} config written", proc.write_config(inst.conf_text))
                continue
            if proc.pid is None and proc.conf_text is None:
                proc.start(inst.conf_text)
                report.add(f"tayga {inst.name} started", True)
            else:
                report.add(f"tayga {inst.name} restarted with new config", proc.reconfigure(inst.conf_text))
            self.taygas[inst.name] = proc
        report.add("routes", netlink.sync_routes(self.host, set(plan.routes)))
        report.add("policy rules", netlink.sync_rules(self.host, set(plan.policy_rules)))
        report.add("egress addresses", self._sync_addresses(plan))
        report.add("nftables nat", self.nft.apply("ip", nftables.NAT_TABLE, plan.nat_text))
        for inst in plan.instances if tayga else ():  # routes are in place now: a probe can reach each Tayga
            why = self.taygas[inst.name].repair()
            report.add(f"tayga {inst.name} restarted: {why}", why is not None)
        wanted = {i.name for i in plan.instances}
        for name in sorted(set(self.taygas) - wanted) if tayga else ():
            proc = self.taygas.pop(name)
            proc.stop()
            netlink.delete_link(self.host, proc.tun)
            report.add(f"tayga {name} removed", True)

    def _sync_addresses(self, plan: GatewayPlan) -> int:
        """Egress addresses on the uplink: add wanted, remove the ones zonectl added before and no longer wants."""
        owned_file = self.state_dir / "uplink-addresses.json"
        try:
            owned = set(json.loads(owned_file.read_text()))
        except (OSError, ValueError):
            owned = set()
        wanted = set(plan.uplink_addresses)
        changes = 0
        for addr in sorted(owned - wanted):
            changes += netlink.remove_address(self.host, plan.uplink, addr)
        for addr in sorted(wanted):
            changes += netlink.ensure_address(self.host, plan.uplink, addr)
        if owned != wanted or not owned_file.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            owned_file.write_text(json.dumps(sorted(wanted)))
        return changes

    # -- observe ---------------------------------------------------------------------------------
    def drift(self, plan: GatewayPlan | None = None) -> list[str]:
        """How the host differs from ``plan`` (default: the last one applied); empty when it is the plan."""
        plan = plan or self.plan
        if plan is None:
            return ["nothing applied yet"]
        return drift.drift(plan, self.host, self.state_dir, self.filters, self.nft)

    def status(self) -> GatewayStatus:
        counters = self.filter.counters()
        return GatewayStatus(self.version, tuple(p.status() for p in list(self.taygas.values())),
                             metrics.zone_totals(counters), len(self.plan.gateway_rules) if self.plan else 0, self.stats)

    def _metric_families(self) -> list[Metric]:
        zones = [z.name for z in self.plan.zones] if self.plan else []
        taygas = list(self.taygas.values())  # a snapshot: the HTTP thread may run during an apply
        return metrics.families(self.filter.counters(), [p.status() for p in taygas], self.stats, zones)

    def metrics_text(self) -> str:
        return generate_latest(self.registry).decode()

    def healthy(self) -> bool:
        taygas = list(self.taygas.values())
        return bool(taygas) and all(p.pid is not None for p in taygas)

    # -- shutdown --------------------------------------------------------------------------------
    def close(self, *, cleanup: bool = False) -> None:
        """Stop Tayga. The filter stays (fail closed) unless ``cleanup`` removes everything zonectl added."""
        with self._lock:
            for proc in self.taygas.values():
                proc.stop()
            if cleanup and self.plan is not None:
                for zone_filter in self.filters.values():
                    zone_filter.remove(self.plan)
                self.nft.delete("ip", nftables.NAT_TABLE)
                netlink.sync_routes(self.host, set())
                netlink.sync_rules(self.host, set())
                for addr in self.plan.uplink_addresses:
                    netlink.remove_address(self.host, self.plan.uplink, addr)
                for proc in self.taygas.values():
                    netlink.delete_link(self.host, proc.tun)
                for name in ("uplink-addresses.json", "nft-applied.json"):
                    (self.state_dir / name).unlink(missing_ok=True)
            self.taygas.clear()
