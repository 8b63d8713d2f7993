"""The lab's egress gateway process: zonectl.gateway.Gateway running inside the gateway namespace.

Why a process of its own: the gateway supervises Tayga and serves metrics from the process that
applied the plan (as its DaemonSet does), while ``lab up``/``sync``/``test`` are short-lived commands.
So the lab starts this daemon in the gateway namespace and talks to it the Unix way:

* start: load the lab's inputs, compile them, publish them as the controller does (the gateway inputs
  document), load that document as the gateway DaemonSet does, ``Gateway.apply_inputs``, serve /metrics;
* SIGHUP: load the inputs again and re-apply (the gateway repairs whatever differs: a flushed chain
  comes back), then write the outcome to ``<state>/gateway/apply.json`` with a sequence number;
* SIGTERM: stop Tayga and exit (the namespace, with its rules, is deleted by ``lab down``).

Run as: ``ip netns exec <gateway-ns> python3 -m zonectl.lab.gwd --state-dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..core.errors import ZonectlError
from ..gateway.config import GatewayConfig, parse_gateway
from ..gateway.gateway import Gateway
from ..gateway.metrics import MetricsServer
from ..operator import gatewayfeed
from .inputs import Compiled, Inputs, compile_inputs
from .state import LabState

UPLINK = "uplink"
METRICS_LISTEN = "127.0.0.1:9464"  # inside the gateway namespace: reachable only from there
APPLY_FILE = "apply.json"
PUBLISHED_FILE = "gateway.json"  # the controller's published inputs (ConfigMap zonectl-gateway-rules)

log = logging.getLogger("zonectl.lab.gwd")


def gateway_config(compiled: Compiled, state_dir: Path) -> GatewayConfig:
    """The config's ``gateway`` section with what the lab decides: its uplink, state dir and metrics address."""
    section: dict[str, Any] = dict(compiled.config.section("gateway"))
    section.update({"uplink": UPLINK, "stateDir": str(state_dir / "gateway"), "metrics": {"listen": METRICS_LISTEN}})
    return parse_gateway(section)


def _write(path: Path, body: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=1))
    os.replace(tmp, path)


def serve(state_dir: Path) -> int:
    state = LabState.load(state_dir)
    if state is None:
        raise ZonectlError(f"no lab ledger in {state_dir}")
    inputs = Inputs.from_dict(state.inputs)
    compiled = compile_inputs(inputs)
    cfg = gateway_config(compiled, state_dir)
    out = Path(cfg.state_dir)
    out.mkdir(parents=True, exist_ok=True)
    gw = Gateway(cfg)
    wake = threading.Event()
    stop = threading.Event()
    seq = 0

    def apply_once() -> None:
        nonlocal seq
        seq += 1
        body: dict[str, Any] = {"seq": seq, "pid": os.getpid(), "time": time.time()}
        try:
            current = compile_inputs(inputs)
            # Through the controller's published document, as the gateway DaemonSet receives it: the
            # controller's writer, the file the ConfigMap mounts, the gateway's one loader.
            published_file = out / PUBLISHED_FILE
            gatewayfeed.FilePublisher(published_file).publish(
                gatewayfeed.render(gatewayfeed.document(current.ruleset, current.registry)))
            published = gatewayfeed.read_document(published_file, current.config.layout)
            report = gw.apply_inputs(current.config.nat64, published.registry, published.gateway)
            body.update(ok=True, changes=report.changes)
        except ZonectlError as exc:  # a refused apply keeps the previous state; say so, keep serving
            body.update(ok=False, error=str(exc), changes=[])
        log.info("apply %d: %s", seq, body)
        _write(out / APPLY_FILE, body)

    def on_term(*_: object) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGHUP, lambda *_: wake.set())
    signal.signal(signal.SIGTERM, on_term)
    apply_once()
    server = MetricsServer(cfg.metrics_listen or METRICS_LISTEN, gw.metrics_text, gw.healthy).start()
    try:
        while not stop.is_set():
            wake.wait()
            wake.clear()
            if not stop.is_set():
                apply_once()
    finally:
        server.close()
        gw.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="zonectl lab gateway daemon (runs inside the gateway namespace)")
    ap.add_argument("--state-dir", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return serve(Path(args.state_dir))


if __name__ == "__main__":
    sys.exit(main())
