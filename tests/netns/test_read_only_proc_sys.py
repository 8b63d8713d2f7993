"""The gateway where /proc/sys is read-only, as in a container that is not privileged (the DaemonSet).

Each case runs zonectl in a fresh network namespace (forwarding off) and a private mount namespace whose
/proc/sys is bind-mounted read-only, the way container runtimes mount it: the apply must stop before
changing anything, with a message naming the sysctl, the value needed and where to set it instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from gwlab import ALLOW_LAB, ZONES
from zonectl.harness.netns import Netns

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
RO_PROC_SYS = "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec \"$@\""


def read_only_proc_sys(*cmd: str) -> list[str]:
    """``cmd`` in a private mount namespace where /proc/sys is read-only."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", RO_PROC_SYS, "sh", *cmd]


@pytest.fixture
def ns() -> Iterator[Netns]:
    with Netns.create("zsys") as n:
        n.run(["ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer"])  # no dummy module here
        n.run(["ip", "link", "set", "uplink", "up"])
        yield n


def forwarding(ns: Netns) -> tuple[str, str]:
    return (ns.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip(),
            ns.run(["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]).stdout.strip())


SCRIPT = """
import sys
from zonectl.gateway.host import Host, SysctlError
host = Host(sys.argv[1] or None)
try:
    host.sysctl_set("net.ipv6.conf.all.forwarding", "1")
except SysctlError as exc:
    print(exc)
    sys.exit(3)
print("set")
"""


@pytest.mark.parametrize("where", ["inside", "named"])
def test_sysctl_on_read_only_proc_sys_says_where_to_set_it(ns: Netns, where: str) -> None:
    """Both Host paths: /proc/sys itself (the DaemonSet: Host() inside the node's namespace) and
    ``ip netns exec NS sysctl`` (Host("NS"), labs and tests)."""
    assert forwarding(ns) == ("0", "0")  # a fresh namespace forwards nothing
    script = [sys.executable, "-c", SCRIPT]
    if where == "inside":
        cmd = ["ip", "netns", "exec", ns.name, *read_only_proc_sys(*script, "")]
    else:
        cmd = read_only_proc_sys(*script, ns.name)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    msg = proc.stdout
    assert "cannot set sysctl net.ipv6.conf.all.forwarding=1 (it is 0)" in msg
    assert "set it on the node" in msg and "/etc/sysctl.d/" in msg and "gateway-sysctl" in msg
    if where == "inside":
        assert "/proc/sys is read-only here" in msg
    else:
        assert "permission denied" in msg  # sysctl(8)'s words for EROFS
    assert forwarding(ns) == ("0", "0")

    # the same call with /proc/sys writable turns it on: the read-only mount was the only obstacle
    ok = ["ip", "netns", "exec", ns.name, *script, ""] if where == "inside" else [*script, ns.name]
    assert subprocess.run(ok, capture_output=True, text=True, env=ENV, timeout=60).stdout.strip() == "set"
    assert forwarding(ns)[1] == "1"


def test_gateway_apply_stops_before_changing_anything(ns: Netns, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "layout": {"cluster": "fd00:10:244::/48"}, "nat64": {"prefix": "fd64:ff9b::/96"},
        "gateway": {"uplink": "uplink", "stateDir": str(tmp_path / "state")},
    }))
    (tmp_path / "zones.yaml").write_text(ZONES)
    (tmp_path / "policies.yaml").write_text(ALLOW_LAB)
    apply = [sys.executable, "-m", "zonectl", "gateway", "apply", "--config", str(config),
             "--zones", str(tmp_path / "zones.yaml"), "--policies", str(tmp_path / "policies.yaml")]

    proc = subprocess.run(["ip", "netns", "exec", ns.name, *read_only_proc_sys(*apply)],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr
    assert "apply failed part-way (nothing changed)" in err and "Traceback" not in err
    assert "cannot set sysctl net.ipv4.ip_forward=1 (it is 0): /proc/sys is read-only here" in err
    assert "'net.ipv4.ip_forward = 1' in /etc/sysctl.d/" in err
    assert forwarding(ns) == ("0", "0")
    assert "ZONECTL" not in ns.run(["ip6tables-save"]).stdout  # the zone filter was not half-installed
    assert "zonectl" not in ns.run(["nft", "list", "tables"]).stdout
    assert "zt64" not in ns.run(["ip", "link"]).stdout

    # writable /proc/sys: the same apply goes through and turns forwarding on
    proc = subprocess.run(["ip", "netns", "exec", ns.name, *apply], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert forwarding(ns) == ("1", "1")
    assert "chain zone-egress" in ns.run(["nft", "list", "table", "ip6", "zonectl"]).stdout
