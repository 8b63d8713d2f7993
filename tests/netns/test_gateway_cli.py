"""`zonectl gateway run|apply|status` as a user runs them, inside the lab's gateway namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promtext import samples
from gwlab import ALLOW_LAB, ZONES, reach, reach_all
from zonectl.harness.gateway_testbed import GATEWAY_V4, Testbed
from zonectl.procs import WaitTimeout, wait_until

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def zonectl(bed: Testbed, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", "netns", "exec", bed.gateway.name, sys.executable, "-m", "zonectl", *args],
                          capture_output=True, text=True, env=ENV, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"zonectl {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
    return proc


def last_apply(state: Path) -> dict:
    try:
        return json.loads((state / "last-apply.json").read_text())
    except (OSError, ValueError):
        return {}


def test_run_apply_status() -> None:
    pods = {"dmz": "fd00:10:244:2:2000::5", "db": "fd00:10:244:2:3000::5"}
    with Testbed.create(pods) as bed:
        state = bed.workdir / "state"
        config = bed.workdir / "config.yaml"
        config.write_text(yaml.safe_dump({
            "layout": {"cluster": "fd00:10:244::/48"}, "nat64": {"prefix": "fd64:ff9b::/96"},
            "gateway": {"uplink": "uplink", "stateDir": str(state), "metrics": {"listen": "127.0.0.1:9464"},
                        "restart": {"initialDelay": 0.1, "maxDelay": 1}},
        }))
        zones, policies = bed.workdir / "zones.yaml", bed.workdir / "policies.yaml"
        zones.write_text(ZONES)
        policies.write_text(ALLOW_LAB)
        common = ["--config", str(config), "--zones", str(zones), "--policies", str(policies)]
        with open(bed.workdir / "run.log", "w") as log:
            daemon = subprocess.Popen(["ip", "netns", "exec", bed.gateway.name, sys.executable, "-m", "zonectl",
                                       "gateway", "run", *common, "--interval", "0.3"],
                                      stdout=log, stderr=subprocess.STDOUT, env=ENV)
        try:
            try:
                wait_until(lambda: last_apply(state).get("seq") == 1, 30, "the first apply")
            except WaitTimeout:
                pytest.fail((bed.workdir / "run.log").read_text())
            assert last_apply(state)["ok"], last_apply(state)
            got = reach_all(bed, ["dmz", "db"])
            assert got["dmz"][0] == str(GATEWAY_V4) and got["db"] == (None, None, None)

            # a broken policy file: refused, logged, and the old rules keep working
            policies.write_text(ALLOW_LAB.replace("action: Allow", "action: Perhaps"))
            wait_until(lambda: last_apply(state).get("ok") is False, 10, "the refused apply")
            assert "Perhaps" in last_apply(state)["error"]
            assert reach(bed, "dmz")[0] == str(GATEWAY_V4)

            # `apply` hands a good change to the running daemon (SIGHUP); the file watcher may have been
            # first, so the report may say "nothing changed", but the change is in force when apply returns
            policies.write_text(ALLOW_LAB.replace("action: Allow", "action: Deny"))
            out = zonectl(bed, "gateway", "apply", *common).stdout
            assert f"applied by the running gateway (pid {daemon.pid})" in out
            assert reach(bed, "dmz", 0.5) == (None, None, None)

            status = json.loads(zonectl(bed, "gateway", "status", "--config", str(config), "-o", "json").stdout)
            assert [t["name"] for t in status["tayga"] if t["up"]] == ["api", "shared", "web"]
            assert status["zones"]["dmz/deny"]["packets"] > 0 and status["daemonPid"] == daemon.pid
            text = zonectl(bed, "gateway", "status", "--config", str(config)).stdout
            assert "shared" in text and "dmz" in text

            metrics = bed.gateway.run([sys.executable, "-c", "import urllib.request;print(urllib.request.urlopen("
                                       "'http://127.0.0.1:9464/metrics',timeout=5).read().decode())"]).stdout
            values = samples(metrics)
            assert 'zonectl_gateway_packets_total{zone="dmz",action="deny"}' in values
            assert values['zonectl_tayga_up{instance="web"}'] == 1
            tayga_pids = [t["pid"] for t in status["tayga"]]
        finally:
            daemon.send_signal(signal.SIGTERM)
            rc = daemon.wait(timeout=20)
        assert rc == 0, (bed.workdir / "run.log").read_text()
        # Tayga ended with the daemon; the zone filter stays (fail closed)
        assert all(not Path(f"/proc/{pid}").exists() for pid in tayga_pids)
        assert "chain zone-egress" in bed.gateway.run(["nft", "list", "table", "ip6", "zonectl"]).stdout
        # bad input on the command line: exit status 2, one clear message, nothing changed
        bad = zonectl(bed, "gateway", "apply", *common, "--uplink", "nosuch0", check=False)
        assert bad.returncode == 2 and "nosuch0 does not exist" in bad.stderr and "Traceback" not in bad.stderr
