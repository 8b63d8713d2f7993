"""What ``zonectl gateway status`` shows, read from the host and the state dir (no daemon needed).

Why not ask the daemon: status must work when the daemon is down, which is when it matters most.
Everything here is read-only.
"""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Mapping

from ..procs import alive, cmdline
from . import liveness, metrics, netlink
from .config import GatewayConfig, parse_gateway
from .firewall import Ip6tables, NftFilter, Nftables
from .host import CommandError, Host
from .tayga_info import active_mappings, detect_version, read_dynamic_map

PIDFILE = "gateway.pid"
RESULT_FILE = "last-apply.json"


def recorded_pid(pid_file: Path, needle: str) -> int | None:
    """The pid in ``pid_file`` if that process still runs and its command line contains ``needle``."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) and needle in cmdline(pid) else None


def daemon_pid(state_dir: Path) -> int | None:
    """The pid of a live ``zonectl gateway run`` (or the lab's gateway daemon) using this state dir."""
    pid = recorded_pid(state_dir / PIDFILE, "zonectl")
    if pid is None:
        return None
    line = cmdline(pid)
    return pid if ("gateway" in line and "run" in line) or "zonectl.lab.gwd" in line else None


def status_config(section: Mapping[str, Any], state_dir: str | None = None) -> GatewayConfig:
    """The ``gateway`` section as status reads it: its state dir (or ``state_dir``) and Tayga binary.
    The uplink is never used here, so a section without one (a lab, a config for other hosts) will do."""
    body = {"uplink": "unused", **section}
    if state_dir:
        body["stateDir"] = state_dir
    return parse_gateway(body)


def read_status(cfg: GatewayConfig, host: Host) -> dict:
    state = Path(cfg.state_dir)
    instances = []
    for d in sorted((state / "tayga").glob("*/")):
        conf = d / "tayga.conf"
        if not conf.exists():
            continue
        text = conf.read_text()
        tun_m = re.search(r"^tun-device\s+(\S+)", text, re.M)
        data_m = re.search(r"^data-dir\s+(\S+)", text, re.M)
        v4_m = re.search(r"^ipv4-addr\s+(\S+)", text, re.M)
        tun = tun_m[1] if tun_m else "?"
        pid = recorded_pid(d / "tayga.pid", str(conf))
        entries = read_dynamic_map(Path(data_m[1])) if data_m else []
        attached = pid is not None and netlink.has_carrier(host, tun)
        # a stopped or hung Tayga keeps its pid and carrier: only an answer through its TUN shows it works
        answering = attached and v4_m is not None and liveness.answers(host, IPv4Address(v4_m[1]), tries=2, tun=tun) is not False
        instances.append({
            "name": d.name, "tun": tun, "pid": pid, "answering": answering,
            "up": attached and answering,
            "dynamicMappings": len(entries), "activeMappings": active_mappings(entries),
        })
    try:
        backend = NftFilter(Nftables(host, state)) if cfg.filter == "nftables" else Ip6tables(host)
        totals = metrics.zone_totals(backend.counters())
    except CommandError:
        totals = {}
    try:
        last = json.loads((state / RESULT_FILE).read_text())
    except (OSError, ValueError):
        last = None
    return {
        "taygaVersion": str(cfg.tayga.version or detect_version(cfg.tayga.binary, host)),
        "stateDir": str(state),
        "daemonPid": daemon_pid(state),
        "lastApply": last,
        "tayga": instances,
        "filter": cfg.filter,
        "zones": {f"{z}/{a}": {"packets": p, "bytes": b} for (z, a), (p, b) in sorted(totals.items())},
    }
