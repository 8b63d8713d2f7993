"""Readiness, and the operations endpoint: Prometheus ``/metrics`` and the readiness probe ``/readyz``.

Liveness is kopf's own probe endpoint (``/healthz`` on ``operator.liveness.port``). Readiness is ours
because it means something kopf cannot know: this replica has listed the zones and namespace labels
(the webhook answers from them) and its webhook server is listening. Every replica serves the webhook,
so every ready replica is behind the webhook Service, active for reconciliation or not.

Both are served on one address (``operator.metrics.address`` or ``--metrics-address``; by default
loopback, in the Deployment the pod's own address) by the one metrics server every daemon uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..metrics_server import Listen, MetricsServer
from .metrics import Metrics


@dataclass
class Readiness:
    """Named conditions that must all hold before the replica takes webhook traffic."""

    pending: set[str] = field(default_factory=lambda: {"caches", "webhook"})

    def done(self, what: str) -> None:
        self.pending.discard(what)

    @property
    def ready(self) -> bool:
        return not self.pending


def ops_server(metrics: Metrics, readiness: Readiness, listen: Listen) -> MetricsServer:
    """``/metrics`` and ``/readyz`` on ``listen`` (not started)."""
    return MetricsServer(listen, metrics.registry, {"/readyz": lambda: readiness.ready})
