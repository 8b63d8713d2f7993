"""Prometheus metrics of the controller, in a registry of their own (never the global default one).

Why an instance and not module-level metrics: tests and the benchmark create several controllers in one
process; module-level collectors would be shared between them and registered twice.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Admission must stay far below the API server's webhook timeout; the buckets resolve the 0.1-10 ms range.
ADMISSION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Every metric zonectl's controller exports (names are part of the public interface)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.admission_seconds = Histogram(
            "zonectl_admission_duration_seconds", "Time to answer one AdmissionReview (kopf admission engine "
            "included, HTTP excluded)", ["webhook"], buckets=ADMISSION_BUCKETS, registry=r)
        self.admission_total = Counter(
            "zonectl_admission_reviews_total", "AdmissionReviews answered, by webhook and outcome",
            ["webhook", "outcome"], registry=r)
        self.reconcile_total = Counter(
            "zonectl_reconcile_total", "Reconciliations, by kind and result", ["kind", "result"], registry=r)
        self.reconcile_errors = Counter(
            "zonectl_reconcile_errors_total", "Failed reconciliations, by kind and reason", ["kind", "reason"],
            registry=r)
        self.sync_seconds = Histogram(
            "zonectl_ovn_sync_duration_seconds", "Time of one OVN NB sync (plan and transaction)", registry=r)
        self.policy_rules = Gauge(
            "zonectl_policy_rules", "Compiled rules currently enforced, per policy", ["policy"], registry=r)
        self.zone_pods = Gauge("zonectl_zone_pods", "Pods labelled with a zone", ["zone"], registry=r)
        self.zone_mismatches = Gauge(
            "zonectl_zone_address_mismatches", "Pods of a zone whose address does not carry its id", ["zone"],
            registry=r)
        self.mismatch_events = Counter(
            "zonectl_address_mismatches_total", "Pods found with an address that does not carry their zone",
            ["zone"], registry=r)
        self.zones = Gauge("zonectl_zones", "Valid SecurityZones known to the controller", registry=r)

        self._admitted: dict[tuple[str, str], Any] = {}

    def admitted(self, webhook: str, outcome: str) -> None:
        """Count one answered review; the labelled child is cached (this runs on every pod creation)."""
        child = self._admitted.get((webhook, outcome))
        if child is None:
            child = self._admitted[(webhook, outcome)] = self.admission_total.labels(webhook, outcome)
        child.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
