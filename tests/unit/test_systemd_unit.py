"""manifests/systemd/zonectl-gateway.service: its command line is one zonectl accepts, its sandbox leaves
the gateway what it needs, and systemd itself finds nothing wrong with it (when systemd-analyze exists)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zonectl.cli import build_parser
from zonectl.gateway.config import GatewayConfig

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "manifests" / "systemd" / "zonectl-gateway.service"


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read_string(UNIT.read_text())
    return cp


def test_exec_start_parses_with_zonectls_own_parser() -> None:
    from zonectl.gateway.cli import cmd_run

    svc = unit()["Service"]
    argv = shlex.split(svc["ExecStart"])
    assert argv[0] == "/usr/local/bin/zonectl"
    args = build_parser(argv[1:]).parse_args(argv[1:])
    assert args.func is cmd_run
    assert args.config == "/etc/zonectl/zonectl.yaml"
    assert args.zones == ["/etc/zonectl/zones"] and args.policies == ["/etc/zonectl/policies"]
    assert args.netns is None and args.state_dir is None  # the real host; gateway.stateDir from the config


def test_service_keeps_what_the_gateway_needs() -> None:
    svc = unit()["Service"]
    assert svc["Type"] == "simple" and svc["Restart"] == "on-failure"
    assert set(svc["CapabilityBoundingSet"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    # the writable state directory is the default gateway.stateDir
    assert "/var/lib/" + svc["StateDirectory"] == GatewayConfig.state_dir
    assert svc["ProtectSystem"] == "strict"
    # forwarding sysctls must stay writable, and Tayga needs its TUN device
    assert "ProtectKernelTunables" not in svc and "PrivateDevices" not in svc
    assert svc["DeviceAllow"] == "/dev/net/tun rw"
    assert svc["KillMode"] == "mixed"  # SIGTERM to zonectl only: it stops Tayga itself
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"  # `run` re-applies on SIGHUP
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own check (unknown keys, bad values, a missing ExecStart binary): no complaint at all.
    ExecStart points at this checkout's zonectl, as /usr/local/bin/zonectl does not exist here."""
    zonectl = Path(sys.executable).parent / "zonectl"
    if not zonectl.exists():
        pytest.skip("no zonectl console script next to this Python")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/zonectl", str(zonectl)))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stderr == proc.stdout == "", proc.stderr + proc.stdout
