"""``/metrics`` and ``/healthz`` over HTTP for the threaded daemons (the gateway, the OVN node agent).

One metrics stack: every daemon's metrics are prometheus_client collectors in a registry of its own;
this serves such a registry (in the format the scraper asks for) from a daemon thread. The controller
serves its registry from its aiohttp operations server instead, as it already runs an event loop.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder


class ScrapeCollector:
    """A prometheus_client collector whose metrics are computed by ``collect`` at every scrape."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()


def registry_of(collect: Callable[[], Iterable[Metric]]) -> CollectorRegistry:
    """A registry of its own (never the global one: tests run several daemons in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(collect))
    return registry


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` (an empty host means every address)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "::", int(port)


class MetricsServer:
    """Serves ``GET /metrics`` from ``registry`` and ``GET /healthz`` from ``healthy``, in a daemon thread."""

    def __init__(self, listen: str, registry: CollectorRegistry, healthy: Callable[[], bool] = lambda: True) -> None:
        host, port = parse_listen(listen)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path.split("?")[0] == "/metrics":
                    encode, ctype = choose_encoder(self.headers.get("Accept", ""))
                    data, code = encode(registry), 200
                elif self.path == "/healthz":
                    ok = healthy()
                    data, code, ctype = (b"ok\n" if ok else b"unhealthy\n"), (200 if ok else 503), "text/plain"
                else:
                    data, code, ctype = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        self.server = server_class((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
