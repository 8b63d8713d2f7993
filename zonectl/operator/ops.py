"""The operations endpoint: Prometheus ``/metrics`` and the readiness probe ``/readyz``.

Liveness is kopf's own probe endpoint (``/healthz`` on ``operator.liveness.port``). Readiness is ours
because it means something kopf cannot know: this replica has listed the zones and namespace labels
(the webhook answers from them) and its webhook server is listening. Every replica serves the webhook,
so every ready replica is behind the webhook Service, active for reconciliation or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp.web

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


class OpsServer:
    def __init__(self, metrics: Metrics, readiness: Readiness, host: str = "::", port: int = 9090) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.host = host
        self.port = port
        self._runner: aiohttp.web.AppRunner | None = None

    async def _metrics(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=self.metrics.exposition(), content_type="text/plain", charset="utf-8")

    async def _ready(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        if self.readiness.ready:
            return aiohttp.web.Response(text="ready\n")
        return aiohttp.web.Response(status=503, text="waiting for: " + ", ".join(sorted(self.readiness.pending)) + "\n")

    async def start(self) -> int:
        """Start listening; returns the bound port (``port=0`` lets the kernel choose)."""
        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.get("/metrics", self._metrics), aiohttp.web.get("/readyz", self._ready)])
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
