"""The gateway daemon loop: apply, supervise Tayga, serve metrics, re-apply on change or SIGHUP.

One loop for every way the gateway runs (``zonectl gateway run`` / ``zonectl run gateway``, and the
lab's gateway daemon). Bad input never replaces good state: a load or apply that fails is logged and
written to the result file, and the previous rules and Tayga keep running. The state dir holds the
daemon's pid (``gateway.pid``) and the outcome of its last apply (``last-apply.json``, with a sequence
number per attempt), which ``zonectl gateway apply`` (SIGHUP, then wait) and ``gateway status`` read.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..core.config import Config
from ..core.errors import ZonectlError
from ..core.rules import RuleSet
from ..core.zones import ZoneRegistry
from ..metrics_server import MetricsServer
from ..procs import WaitTimeout, wait_until
from .config import GatewayConfig
from .gateway import Gateway
from .status import PIDFILE, RESULT_FILE, daemon_pid

log = logging.getLogger("zonectl.gateway")


class DaemonError(ZonectlError):
    """The daemon cannot start, or a running daemon did not answer."""


@dataclass(frozen=True)
class Inputs:
    """Everything one apply needs, loaded and validated."""

    config: Config
    gateway: GatewayConfig
    registry: ZoneRegistry
    ruleset: RuleSet


def read_result(state_dir: Path) -> dict[str, Any]:
    """The last apply's outcome ({} when there is none yet, or it is being replaced)."""
    try:
        body = json.loads((state_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def write_result(state_dir: Path, body: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(body, indent=1))
    os.replace(tmp, state_dir / RESULT_FILE)


def wait_result(state_dir: Path, seq: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
    """The outcome of apply number ``seq`` (or a later one), once the daemon has written it."""
    body: dict[str, Any] = {}

    def written() -> bool:
        nonlocal body
        if not alive():
            raise DaemonError(f"the gateway daemon exited before reporting apply #{seq}")
        body = read_result(state_dir)
        return int(body.get("seq", 0)) >= seq

    try:
        wait_until(written, timeout, f"the running gateway to report apply #{seq}", interval=0.1)
    except WaitTimeout as exc:
        raise DaemonError(str(exc)) from None
    return body


def serve(first: Inputs, load: Callable[[], Inputs], *, gateway: Gateway | None = None,
          changed: Callable[[], bool] = lambda: False, interval: float = 2.0, cleanup: bool = False) -> int:
    """Run the gateway until SIGTERM/SIGINT: apply ``first`` (already loaded: the first load must succeed,
    there is no previous state to keep), then ``load()`` and apply again on SIGHUP, or when ``changed()``
    says an input changed (checked every ``interval`` seconds). SIGTERM stops Tayga; the zone filter stays
    (fail closed) unless ``cleanup``."""
    gw = gateway or Gateway(first.gateway)
    state_dir = Path(first.gateway.state_dir)
    other = daemon_pid(state_dir)
    if other is not None and other != os.getpid():
        raise DaemonError(f"another gateway daemon (pid {other}) already uses {state_dir}")
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / PIDFILE).write_text(f"{os.getpid()}\n")
    wake, stop = threading.Event(), threading.Event()
    seq = 0

    def apply(load_inputs: Callable[[], Inputs]) -> None:
        nonlocal seq
        seq += 1
        body: dict[str, Any] = {"seq": seq, "pid": os.getpid(), "time": time.time()}
        try:
            current = load_inputs()
            gw.cfg = current.gateway
            report = gw.apply_inputs(current.config.nat64, current.registry, current.ruleset)
            body.update(ok=True, changes=report.changes)
        except (ZonectlError, OSError) as exc:  # bad new input: keep enforcing the old one
            log.error("inputs refused, previous state kept: %s", exc)
            body.update(ok=False, error=str(exc), changes=[])
        write_result(state_dir, body)

    def on_stop(*_: object) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGHUP, lambda *_: wake.set())
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    server = None
    try:
        apply(lambda: first)
        if first.gateway.metrics_listen:
            server = MetricsServer(first.gateway.metrics_listen, gw.registry, {"/healthz": gw.healthy}).start()
            log.info("metrics on %s", first.gateway.metrics_listen)
        while not stop.is_set():
            woke = wake.wait(interval)
            wake.clear()
            if stop.is_set():
                break
            moved = changed()  # asked every round, so it tracks the files after a SIGHUP too
            if woke or moved:
                apply(load)
    finally:
        if server is not None:
            server.close()
        gw.close(cleanup=cleanup)
        (state_dir / PIDFILE).unlink(missing_ok=True)
    return 0
