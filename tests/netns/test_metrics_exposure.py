"""The gateway daemon (host network in its DaemonSet) does not serve /metrics beyond loopback by default.

`zonectl gateway run` with a config that says nothing about metrics, inside the lab's gateway
namespace: /healthz answers on [::1]:9464, and no other address of the namespace (the uplink's IPv4
and an IPv6 address the test adds to it) accepts a connection on that port, from inside the
namespace or from the "internet" on the other end of the uplink. The same probe sees a server that
listens on every address, so it would see an exposed one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gwlab import ALLOW_LAB, ZONES
from zonectl.harness.gateway_testbed import GATEWAY_V4, UPLINK, Testbed
from zonectl.harness.netns import Netns
from zonectl.procs import WaitTimeout, wait_until

REPO = Path(__file__).resolve().parents[2]
UPLINK_V6 = "fd00:db8:9464::1"
PORT = 9464
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("open")
except OSError as exc:
    print(type(exc).__name__)
"""


def connects(ns: Netns, host: str, port: int = PORT) -> str:
    """"open", or why a TCP connection from inside ``ns`` to ``host:port`` failed."""
    return ns.run([sys.executable, "-c", CONNECT, host, str(port)]).stdout.strip()


def healthz(ns: Netns) -> bool:
    code = ("import urllib.request;print(urllib.request.urlopen('http://[::1]:%d/healthz',timeout=2).status)" % PORT)
    return ns.run([sys.executable, "-c", code], check=False).stdout.strip() == "200"


def test_gateway_metrics_stay_on_loopback_by_default() -> None:
    with Testbed.create({"dmz": "fd00:10:244:2:2000::5"}) as bed:
        bed.gateway.run(["ip", "-6", "addr", "add", f"{UPLINK_V6}/64", "dev", UPLINK, "nodad"])
        bed.internet.run(["ip", "-6", "addr", "add", "fd00:db8:9464::2/64", "dev", "eth0", "nodad"])
        state, config = bed.workdir / "state", bed.workdir / "config.yaml"
        config.write_text(yaml.safe_dump({  # no `metrics`: the default
            "layout": {"cluster": "fd00:10:244::/48"}, "nat64": {"prefix": "fd64:ff9b::/96"},
            "gateway": {"uplink": UPLINK, "stateDir": str(state), "restart": {"initialDelay": 0.1, "maxDelay": 1}},
        }))
        (bed.workdir / "zones.yaml").write_text(ZONES)
        (bed.workdir / "policies.yaml").write_text(ALLOW_LAB)
        log = open(bed.workdir / "run.log", "w")
        daemon = bed.gateway.popen([sys.executable, "-m", "zonectl", "gateway", "run", "--config", str(config),
                                    "--zones", str(bed.workdir / "zones.yaml"), "--policies",
                                    str(bed.workdir / "policies.yaml")], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=REPO)
        try:
            try:
                wait_until(lambda: healthz(bed.gateway), 30, "/healthz on [::1]:9464")
            except WaitTimeout:
                pytest.fail((bed.workdir / "run.log").read_text())
            assert connects(bed.gateway, "::1") == "open"
            for host in (str(GATEWAY_V4), UPLINK_V6):
                assert connects(bed.gateway, host) == "ConnectionRefusedError", host
            assert connects(bed.internet, str(GATEWAY_V4)) == "ConnectionRefusedError"
            assert connects(bed.internet, UPLINK_V6) == "ConnectionRefusedError"
        finally:
            daemon.send_signal(signal.SIGTERM)
            rc = daemon.wait(timeout=20)
            log.close()
        assert rc == 0, (bed.workdir / "run.log").read_text()

        # the probe does see a server on every address (what the old default [::]:9464 was)
        wide = bed.gateway.popen([sys.executable, "-c", "import socket,time;s=socket.create_server(('::', %d), "
                                  "family=socket.AF_INET6, dualstack_ipv6=True);time.sleep(60)" % PORT])
        try:
            wait_until(lambda: connects(bed.gateway, "::1") == "open", 10, "the wildcard server")
            assert connects(bed.internet, str(GATEWAY_V4)) == "open"
            assert connects(bed.internet, UPLINK_V6) == "open"
        finally:
            wide.kill()
            wide.wait(timeout=10)
