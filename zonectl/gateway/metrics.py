"""Prometheus text exposition for the gateway, and a small HTTP server for it.

Per-zone counters come straight from the kernel's rule counters (each rule's comment names its zone
and action), so they cost nothing on the packet path and survive a zonectl restart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

from ..render.ip6tables import Counter
from .tayga import TaygaStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class ApplyStats:
    applies_ok: int = 0
    applies_failed: int = 0
    last_success_unix: float = 0.0
    rules: int = 0
    last_error: str = ""


def _labels(**kv: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def zone_totals(counters: Iterable[Counter]) -> dict[tuple[str, str], tuple[int, int]]:
    """(zone, action) -> (packets, bytes), summed over the rules of that zone."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for c in counters:
        zone, action = c.field("zone") or "-", c.field("action") or "?"
        p, b = out.get((zone, action), (0, 0))
        out[(zone, action)] = (p + c.packets, b + c.bytes)
    return out


def render(counters: Iterable[Counter], taygas: Iterable[TaygaStatus], stats: ApplyStats,
           zones: Iterable[str] = ()) -> str:
    """The /metrics body. Every known zone appears (with zeros) so dashboards need no special cases."""
    totals = zone_totals(counters)
    for z in zones:
        for action in ("allow", "deny"):
            totals.setdefault((z, action), (0, 0))
    lines = [
        "# HELP zonectl_gateway_packets_total Packets to the NAT64 prefix by source zone and verdict (rule counters).",
        "# TYPE zonectl_gateway_packets_total counter",
    ]
    for (zone, action), (p, _) in sorted(totals.items()):
        lines.append(f"zonectl_gateway_packets_total{_labels(zone=zone, action=action)} {p}")
    lines += [
        "# HELP zonectl_gateway_bytes_total Bytes to the NAT64 prefix by source zone and verdict (rule counters).",
        "# TYPE zonectl_gateway_bytes_total counter",
    ]
    for (zone, action), (_, b) in sorted(totals.items()):
        lines.append(f"zonectl_gateway_bytes_total{_labels(zone=zone, action=action)} {b}")
    ts = sorted(taygas, key=lambda t: t.name)
    for name, help_, kind, get in (
        ("zonectl_tayga_up", "1 if the Tayga instance runs and holds its TUN device.", "gauge", lambda t: int(t.up)),
        ("zonectl_tayga_restarts_total", "Restarts after Tayga died (not counting controlled restarts).", "counter",
         lambda t: t.restarts),
        ("zonectl_tayga_dynamic_mappings", "Entries in Tayga's dynamic.map (as of its last write).", "gauge",
         lambda t: t.dynamic_mappings),
        ("zonectl_tayga_active_mappings", "Dynamic mappings used within Tayga's guaranteed lease (2h4m).", "gauge",
         lambda t: t.active_mappings),
    ):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_labels(instance=t.name)} {get(t)}" for t in ts]
    lines += [
        "# HELP zonectl_gateway_applies_total Apply attempts by result.",
        "# TYPE zonectl_gateway_applies_total counter",
        f'zonectl_gateway_applies_total{{result="ok"}} {stats.applies_ok}',
        f'zonectl_gateway_applies_total{{result="error"}} {stats.applies_failed}',
        "# HELP zonectl_gateway_last_apply_success_timestamp_seconds When the running state was last applied.",
        "# TYPE zonectl_gateway_last_apply_success_timestamp_seconds gauge",
        f"zonectl_gateway_last_apply_success_timestamp_seconds {stats.last_success_unix:.3f}",
        "# HELP zonectl_gateway_rules Compiled rules the gateway enforces.",
        "# TYPE zonectl_gateway_rules gauge",
        f"zonectl_gateway_rules {stats.rules}",
    ]
    return "\n".join(lines) + "\n"


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "::", int(port)


class MetricsServer:
    """Serves ``GET /metrics`` (and ``/healthz``) from a callback, in a daemon thread."""

    def __init__(self, listen: str, body: Callable[[], str], healthy: Callable[[], bool] = lambda: True) -> None:
        host, port = parse_listen(listen)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path.split("?")[0] == "/metrics":
                    data, code, ctype = body().encode(), 200, CONTENT_TYPE
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

        family_server = type("Server", (ThreadingHTTPServer,), {"address_family": 10 if ":" in host else 2,
                                                                 "daemon_threads": True})
        self.server = family_server((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
