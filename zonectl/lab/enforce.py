"""Applying and checking the policies through the operator's own code paths: OVN sync and gateway apply.

The lab adds nothing of its own here: the OVN rows come from ``zonectl.ovn.sync`` against the
sandbox's NB socket (as the operator does against OVN-Kubernetes' NB), and the gateway's state from
``zonectl.gateway``. "Drift" is what those layers report in their log mode: owned rows missing or
edited, the gateway chain not what the plan renders.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


from ..harness import probe
from ..gateway.daemon import DaemonError, read_result, wait_result
from ..gateway.status import RESULT_FILE
from ..gateway.gateway import Gateway
from ..gateway.host import Host
from ..gateway.tayga_info import detect_version
from ..harness.netns import kill_netns_pids
from ..ovn.connection import connect
from ..ovn.sync import SyncMode, SyncReport, SyncSettings, sync
from . import gwd
from .inputs import Compiled
from ..procs import WaitTimeout, alive, cmdline, wait_until
from .state import LabError, LabState, ProcessRecord
from .topology import Topology

GWD_PROGRAM = "zonectl.lab.gwd"  # what the daemon's command line contains (checked before signalling it)

OVN_LAB_KEYS = ("controller", "tier", "allowAction", "denyAction", "priorityMin", "priorityMax", "nodePortPrefix")


@dataclass
class Drift:
    """What differs between the desired and the actual state, per enforcement point (empty = in sync)."""

    ovn: list[str] = field(default_factory=list)
    gateway: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.ovn or self.gateway or self.dns)

    def lines(self) -> list[str]:
        if not self.any:
            return ["in sync: OVN ACLs, the gateway (filter, NAT, Tayga, routes, sysctls) and DNS are what the "
                    "policies and the config make"]
        out: list[str] = []
        if self.ovn:
            out += ["OVN NB drift (owned ACL rows vs compiled rules):", *(f"  {x}" for x in self.ovn)]
        if self.gateway:
            out += ["gateway drift (live state vs plan):", *(f"  {x}" for x in self.gateway)]
        if self.dns:
            out += ["dns:", *(f"  {x}" for x in self.dns)]
        out.append("repair with `zonectl lab sync` (or `zonectl lab test --repair`)")
        return out


def _ovn_section(compiled: Compiled) -> Mapping[str, Any]:
    """The config's ``ovn`` settings that shape the rows; connection settings are the sandbox's."""
    section = compiled.config.section("ovn")
    return {k: v for k, v in section.items() if k in OVN_LAB_KEYS}


def ovn_sync(nb_socket: Path, compiled: Compiled, *, mode: SyncMode = "repair") -> SyncReport:
    """Run the OVN backend's sync (``repair`` writes, ``log`` only reports) against the lab's NB."""
    with connect(f"unix:{nb_socket}", timeout=10.0) as nb:
        settings = SyncSettings.build(_ovn_section(compiled), compiled.config.layout.cluster, nb.has_tier)
        return sync(nb, compiled.ruleset, settings, mode=mode)


# --- gateway --------------------------------------------------------------------------------------


def start_gateway(state: LabState, netns: str) -> dict[str, Any]:
    """Start the gateway daemon in ``netns`` and wait for its first apply; raise if it was refused."""
    (state.state_dir / "gateway" / RESULT_FILE).unlink(missing_ok=True)
    proc = state.spawn_daemon(GWD_PROGRAM, "gateway daemon", "gateway.log", prefix=("ip", "netns", "exec", netns))
    result = _wait_apply(state, 1, proc)
    if not result.get("ok"):
        raise LabError(f"the gateway refused the policies: {result.get('error')}")
    return result


def _daemon(state: LabState) -> ProcessRecord | None:
    """The running gateway daemon (the newest record: `lab sync` may have restarted it), or None."""
    for rec in reversed(state.processes):
        if rec.program == GWD_PROGRAM and alive(rec.pid) and rec.program in cmdline(rec.pid):
            return rec
    return None


def gateway_running(state: LabState) -> bool:
    return _daemon(state) is not None


def clear_gateway_netns(netns: str, timeout: float = 10.0) -> None:
    """End every process left in the (lab-owned) gateway namespace and wait until they are gone, so a
    new Tayga can attach the TUN devices the orphans held."""
    kill_netns_pids(netns)

    def gone() -> bool:
        pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
        return not [p for p in pids if alive(int(p))]

    try:
        wait_until(gone, timeout, f"the processes in {netns} to exit")
    except WaitTimeout as exc:
        raise LabError(str(exc)) from None


def reapply_gateway(state: LabState) -> dict[str, Any]:
    """Ask the running gateway daemon to apply again (SIGHUP) and return what it changed."""
    rec = _daemon(state)
    if rec is None:
        raise LabError("the lab's gateway daemon is not running; run `zonectl lab up` again")
    seq = int(read_result(state.state_dir / "gateway").get("seq", 0))
    os.kill(rec.pid, signal.SIGHUP)
    return _wait_apply(state, seq + 1, None)


def _wait_apply(state: LabState, seq: int, proc: subprocess.Popen | None, timeout: float = 30.0) -> dict[str, Any]:
    try:
        return wait_result(state.state_dir / "gateway", seq, timeout, lambda: proc is None or proc.poll() is None)
    except DaemonError as exc:
        raise LabError(f"{exc}; see {state.state_dir / 'logs' / 'gateway.log'}") from None


def gateway_drift(compiled: Compiled, state_dir: Path, topo: Topology) -> list[str]:
    """Everything the gateway owns in its namespace vs the plan the inputs make (``Gateway.drift``)."""
    cfg = gwd.gateway_config(compiled, state_dir, topo)
    host = Host(topo.gateway.netns)
    gw = Gateway(cfg, host, version=cfg.tayga.version or detect_version(cfg.tayga.binary, host))
    return gw.drift(gw.build(compiled.config.nat64, compiled.registry, compiled.ruleset))


def gateway_metrics(netns: str) -> str:
    """The gateway's own /metrics text (fetched inside its namespace)."""
    proc = subprocess.run(["ip", "netns", "exec", netns, *probe.command("get", f"http://{gwd.METRICS_LISTEN}/metrics")],
                          capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"cannot read the gateway's metrics: {last}")
    return proc.stdout
