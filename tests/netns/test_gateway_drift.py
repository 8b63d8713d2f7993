"""Liveness and drift on a real gateway: a stopped Tayga is found and restarted; every piece of state the
gateway owns, removed or changed by hand, shows in the drift report, and one apply puts each back.

Tampering is done as an operator (or an attacker) would do it, with ip, nft, ip6tables, sysctl and kill,
never through zonectl, so detection and repair are proven against the real state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from gwlab import ALLOW_LAB, CONFIG, reach, reach_all, registry, ruleset, running
from promtext import samples
from zonectl.gateway.status import read_status
from zonectl.harness.gateway_testbed import GATEWAY_V4
from zonectl.procs import wait_until

SERVER_ECHO = "fd64:ff9b::c000:20a"
WEB_V4 = "198.51.100.21"


def test_a_stopped_tayga_is_found_by_its_liveness_probe_and_restarted() -> None:
    fast = {"restart": {"initialDelay": 0.1, "maxDelay": 1, "probeInterval": 0.3, "probeFailures": 2}}
    with running({"dmz": 0x2000}, gateway=fast) as (bed, gw):
        assert reach(bed, "dmz")[0] == str(GATEWAY_V4)
        shared = gw.taygas["shared"]
        old = shared.pid
        os.kill(old, signal.SIGSTOP)  # hung: the process and its TUN's carrier stay
        try:
            wait_until(lambda: shared.pid not in (None, old), 15, "the stopped Tayga to be replaced")
        finally:
            os.kill(old, signal.SIGCONT) if os.path.exists(f"/proc/{old}") else None
        assert shared.restarts == 1 and "did not answer 2 liveness probes" in shared.status().last_restart
        assert shared.wait_up(10)
        assert reach(bed, "dmz") == (str(GATEWAY_V4), str(GATEWAY_V4), SERVER_ECHO)
        assert samples(gw.metrics_text())['zonectl_tayga_restarts_total{instance="shared"}'] == 1


def test_a_stopped_tayga_is_drift_status_says_down_and_an_apply_restarts_it() -> None:
    slow = {"restart": {"probeInterval": 3600}}  # the monitor will not notice in time: drift and apply must
    with running({"dmz": 0x2000}, gateway=slow) as (bed, gw):
        shared = gw.taygas["shared"]
        old = shared.pid
        assert gw.drift() == []
        os.kill(old, signal.SIGSTOP)
        try:
            assert reach(bed, "dmz", 0.5)[0] is None  # NAT64 is dead ...
            assert any("tayga shared: does not answer" in d for d in gw.drift())  # ... drift says so ...
            status = {t["name"]: t for t in read_status(gw.cfg, gw.host)["tayga"]}
            assert status["shared"]["pid"] == old and not status["shared"]["up"]  # ... and status: down
            reg = registry()
            report = gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB, reg))
        finally:
            os.kill(old, signal.SIGCONT) if os.path.exists(f"/proc/{old}") else None
        assert report.changes == ["tayga shared restarted: Tayga shared does not answer through zt64 (stopped or hung)"]
        assert shared.pid != old and gw.drift() == []
        assert reach(bed, "dmz")[0] == str(GATEWAY_V4)


# (what to break, by hand; a phrase the drift report must contain)
TAMPER = {
    "filter table deleted": (["nft", "delete", "table", "ip6", "zonectl"], "nft table ip6 zonectl is missing"),
    "filter map element deleted": (["nft", "flush", "map", "ip6", "zonectl", "ports.dmz.1.24"],
                                   "nft table ip6 zonectl changed since it was applied"),
    "nat table deleted": (["nft", "delete", "table", "ip", "zonectl-nat"], "nft table ip zonectl-nat is missing"),
    "nat64 route deleted": (["ip", "-6", "route", "del", "fd64:ff9b::/96", "dev", "zt64"],
                            "route fd64:ff9b::/96 dev zt64 is missing"),
    "zone table route deleted": (["ip", "-6", "route", "flush", "table", "4200"], "table 4200 is missing"),
    "policy rule deleted": (["ip", "-6", "rule", "del", "priority", "4200"], "policy rule 4200"),
    "egress address deleted": (["ip", "addr", "del", f"{WEB_V4}/32", "dev", "uplink"],
                               f"egress address {WEB_V4}/32 is missing"),
    "forwarding off": (["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"],
                       "sysctl net.ipv6.conf.all.forwarding is 0"),
    "zone TUN deleted": (["ip", "link", "del", "zt64-2100"], "TUN device zt64-2100 is missing"),
    "TUN down": (["ip", "link", "set", "zt64", "down"], "TUN device zt64 is down"),
    "foreign route in our protocol": (["ip", "-6", "route", "add", "2001:db8:99::/48", "dev", "uplink", "proto", "90"],
                                      "route 2001:db8:99::/48 dev uplink is not the plan's"),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_drift_shows_each_piece_of_state_and_one_apply_repairs_it(case: str) -> None:
    cmd, phrase = TAMPER[case]
    with running({"dmz": 0x2000, "web": 0x2100, "db": 0x3000}) as (bed, gw):
        assert gw.drift() == []
        bed.gateway.run(cmd)
        found = gw.drift()
        assert any(phrase in d for d in found), found
        reg = registry()
        report = gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB, reg))
        assert report.changes, f"{case}: the apply changed nothing"
        deadline = time.monotonic() + 10
        while gw.drift() and time.monotonic() < deadline:  # a re-created TUN: the monitor may still be at it
            time.sleep(0.2)
        assert gw.drift() == []
        got = reach_all(bed, ["dmz", "web", "db"])
        assert got["dmz"][0] == str(GATEWAY_V4) and got["web"][0] == WEB_V4 and got["db"] == (None, None, None)


def test_ip6tables_backend_drift_and_repair() -> None:
    with running({"dmz": 0x2000, "db": 0x3000}, gateway={"filter": "ip6tables"}) as (bed, gw):
        assert gw.drift() == []
        bed.gateway.run(["ip6tables", "-F", "ZONECTL-FWD"])
        bed.gateway.run(["nft", "add", "table", "ip6", "zonectl"])  # and a stray table of the other backend
        found = gw.drift()
        assert any("ip6tables chain ZONECTL-FWD" in d and "missing" in d for d in found), found
        assert "zone filter (nftables) is present although gateway.filter is ip6tables" in found
        assert reach(bed, "db", 0.5)[0] is not None  # the flushed chain let the closed zone out
        reg = registry()
        report = gw.apply_inputs(CONFIG.nat64, reg, ruleset(ALLOW_LAB, reg))
        assert report.changes == ["zone filter (ip6tables)", "zone filter (nftables) removed"]
        assert gw.drift() == [] and reach(bed, "db", 0.5)[0] is None


def test_a_busy_tayga_is_not_mistaken_for_a_stopped_one() -> None:
    """Saturated by 8 TCP streams, Tayga may not answer a probe in time (its TUN queue is full), but it
    keeps writing translated packets into its TUN: that counts as alive, so it is never restarted."""
    policies = ALLOW_LAB.replace("port: 8080, endPort: 8080", "port: 5201, endPort: 5201")
    fast = {"restart": {"probeInterval": 0.2, "probeFailures": 2}}
    with running({"dmz": 0x2000}, policies=policies, gateway=fast) as (bed, gw):
        server = bed.internet.popen(["iperf3", "-s", "-B", "192.0.2.10"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            run = bed.pods["dmz"].ns.run(["iperf3", "-c", "fd64:ff9b::c000:20a", "-P", "8", "-t", "6", "-J"],
                                         check=False, timeout=60)
            assert run.returncode == 0, run.stdout[-500:]
            assert json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"] > 1e6
        finally:
            server.terminate()
            server.wait(timeout=10)
        assert gw.taygas["shared"].restarts == 0, gw.taygas["shared"].status().last_restart
