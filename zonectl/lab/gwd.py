"""The lab's egress gateway process: zonectl.gateway.Gateway running inside the gateway namespace.

Why a process of its own: the gateway supervises Tayga and serves metrics from the process that
applied the plan (as its DaemonSet does), while ``lab up``/``sync``/``test`` are short-lived commands.
So the lab starts this daemon in the gateway namespace and talks to it the Unix way:

* start: load the lab's inputs, compile them, publish them as the controller does (the gateway inputs
  document; in a lab with Kubernetes the real controller publishes it, and ``lab/kube.py`` copies its
  ConfigMap to the same file, as a kubelet mounts it), load that document as the gateway DaemonSet
  does, then the gateway's own daemon loop (``zonectl.gateway.daemon``): apply, supervise Tayga, serve
  /metrics;
* SIGHUP: load the inputs again and re-apply (the gateway repairs whatever differs: a flushed chain
  comes back); the outcome goes to ``<state>/gateway/last-apply.json`` with a sequence number;
* SIGTERM: stop Tayga and exit (the namespace, with its rules, is deleted by ``lab down``).

Being the gateway's daemon loop, it keeps ``gateway.pid`` and ``last-apply.json`` in the gateway's state
dir, so ``zonectl gateway status`` and ``zonectl doctor --gateway`` (with ``--netns`` and
``--state-dir``, as ``lab up`` prints them) see it as they see a gateway DaemonSet.

Run as: ``ip netns exec <gateway-ns> python3 -m zonectl.lab.gwd --state-dir DIR``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ..core import published
from ..core.errors import ZonectlError
from ..gateway import daemon
from ..gateway.config import GatewayConfig, parse_gateway
from ..inputs import change_check, read_published, signature
from ..operator.publish import FilePublisher
from .inputs import Compiled, Inputs, compile_inputs
from .state import LabState, daemon_main
from .topology import Topology

UPLINK = "uplink"
METRICS_LISTEN = "127.0.0.1:9464"  # inside the gateway namespace: reachable only from there
PUBLISHED_FILE = "gateway.json"  # the controller's published inputs (ConfigMap zonectl-gateway-rules)

log = logging.getLogger("zonectl.lab.gwd")


def gateway_config(compiled: Compiled, state_dir: Path, topo: Topology) -> GatewayConfig:
    """The config's ``gateway`` section with what the lab decides: its uplink, state dir, metrics address and
    the static maps that publish one pod of each zone to the IPv4 internet."""
    section: dict[str, Any] = dict(compiled.config.section("gateway"))
    section.update({"uplink": UPLINK, "stateDir": str(state_dir / "gateway"), "metrics": {"listen": METRICS_LISTEN}})
    section["staticMaps"] = [*section.get("staticMaps", []),
                             *({"ipv4": str(v4), "ipv6": str(topo.pod(pod).address)} for v4, pod in topo.internet.maps)]
    return parse_gateway(section)


def published_file(state_dir: Path) -> Path:
    """The file the gateway reads its published document from (where the ConfigMap would be mounted)."""
    return state_dir / "gateway" / PUBLISHED_FILE


def load(inputs: Inputs, state_dir: Path, topo: Topology, *, publish: bool = True) -> daemon.Inputs:
    """Compile the lab's inputs and read the controller's published document, as the gateway DaemonSet
    receives it: the file the ConfigMap mounts, the gateway's one loader. ``publish``: the lab writes the
    document itself with the controller's writer (a lab without Kubernetes; with it, the controller does)."""
    current = compile_inputs(inputs)
    cfg = gateway_config(current, state_dir, topo)
    path = published_file(state_dir)
    if publish:
        FilePublisher(path).publish(published.render(published.document(current.ruleset, current.registry)))
    doc = read_published(path, current.config.layout)
    return daemon.Inputs(current.config, cfg, doc.registry, doc.gateway)


def serve(state_dir: Path) -> int:
    state = LabState.load(state_dir)
    if state is None:
        raise ZonectlError(f"no lab ledger in {state_dir}")
    inputs = Inputs.from_dict(state.inputs)
    topo = Topology.from_dict(state.topology)
    if not state.kube:  # `lab sync` sends SIGHUP
        return daemon.serve(load(inputs, state_dir, topo), lambda: load(inputs, state_dir, topo), interval=3600)
    # with Kubernetes, the controller republishes: re-apply when the mounted document changes, as `gateway run`
    path = published_file(state_dir)
    changed = change_check(lambda: signature(path))
    return daemon.serve(load(inputs, state_dir, topo, publish=False),
                        lambda: load(inputs, state_dir, topo, publish=False), changed=changed, interval=1.0)


if __name__ == "__main__":
    sys.exit(daemon_main("zonectl lab gateway daemon (runs inside the gateway namespace)", serve))
