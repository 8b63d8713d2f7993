"""``/metrics`` and the probes over HTTP for every daemon (the gateway, the OVN node agent, the controller).

One metrics stack: every daemon's metrics are prometheus_client collectors in a registry of its own;
this serves such a registry (in the format the scraper asks for) and the daemon's probe paths
(``/healthz``, ``/readyz``) from a daemon thread.

One binding rule (``check_address``, ``parse_listen``): /metrics has no authentication, so a daemon
listens on one named address, by default loopback. An unspecified address (``::``, ``0.0.0.0``: every
address of the host, on a hostNetwork gateway its uplink too) is refused unless the config or the
command line says so explicitly (``anyAddress: true``, ``--metrics-any-address``). docs/operator.md
("Metrics") says where each daemon listens and how it is scraped.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

from .core import fields as f
from .core.errors import Collector, ZonectlError

LOOPBACK = "::1"
LISTEN_RE = re.compile(r"\[(?P<bracketed>[0-9A-Fa-f:.]{1,45})\]:(?P<port>[0-9]{1,5})|(?P<v4>[0-9.]{7,15}):(?P<port4>[0-9]{1,5})")


@dataclass(frozen=True)
class Listen:
    """Where a daemon serves /metrics: an IP address of this host and a TCP port (0: any free one, tests)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ListenError(ZonectlError):
    """The metrics address cannot be bound (not an address of this host, in use ...)."""


def check_address(value: Any, path: str, errs: Collector, *, any_address: bool = False,
                  allow: str = "anyAddress: true") -> IPv4Address | IPv6Address | None:
    """An IP address to listen on: not multicast, and not unspecified unless ``any_address``.

    ``allow`` is how the user says "every address, on purpose" where this value comes from."""
    text = f.string(value, path, errs, max_len=45, what="an IP address")
    if text is None:
        return None
    try:
        address = ip_address(text)
    except ValueError:
        errs.add(path, f"{f.short(text)} is not an IP address")
        return None
    if address.is_multicast:
        errs.add(path, f"{text} is a multicast address, not an address of this host")
        return None
    if address.is_unspecified and not any_address:
        errs.add(path, f"{text} listens on every address of the host (on a host-network gateway, its uplink too) and "
                       f"/metrics has no authentication: name one address, e.g. {LOOPBACK} or the pod's own, or set "
                       f"{allow} to accept that")
        return None
    return address


def parse_listen(value: Any, path: str, errs: Collector, *, any_address: bool = False,
                 allow: str = "anyAddress: true") -> Listen | None:
    """``[ADDRESS]:PORT`` (brackets for IPv6, optional for IPv4) with a port from 1 to 65535, by ``check_address``'s rule."""
    text = f.string(value, path, errs, max_len=60, what="[ADDRESS]:PORT")
    if text is None:
        return None
    m = LISTEN_RE.fullmatch(text)
    if m is None:
        errs.add(path, f"{f.short(text)} must be [ADDRESS]:PORT, e.g. [::1]:9464 or 127.0.0.1:9464")
        return None
    port = int(m["port"] or m["port4"])
    if not 1 <= port <= 65535:
        errs.add(path, f"{text!r}: port {port} is not from 1 to 65535")
        return None
    address = check_address(m["bracketed"] or m["v4"], path, errs, any_address=any_address, allow=allow)
    return None if address is None else Listen(str(address), port)


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


Probe = Callable[[], bool]


class MetricsServer:
    """Serves ``GET /metrics`` from ``registry`` and each of ``probes`` (path -> healthy?) in a daemon thread."""

    def __init__(self, listen: Listen, registry: CollectorRegistry, probes: Mapping[str, Probe] | None = None) -> None:
        routes = dict(probes if probes is not None else {"/healthz": lambda: True})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = self.path.split("?")[0]
                if path == "/metrics":
                    encode, ctype = choose_encoder(self.headers.get("Accept", ""))
                    data, code = encode(registry), 200
                elif path in routes:
                    ok = routes[path]()
                    data, code, ctype = (b"ok\n" if ok else b"not ok\n"), (200 if ok else 503), "text/plain"
                else:
                    data, code, ctype = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        try:
            self.server = server_class((listen.host, listen.port), Handler)
        except OSError as exc:
            raise ListenError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None
        self.port = self.server.server_address[1]
        self.listen = Listen(listen.host, self.port)
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
