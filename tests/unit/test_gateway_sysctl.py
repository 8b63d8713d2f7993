"""Forwarding sysctls that cannot be set: a message naming the key, the value and where to set it.

No root needed: the failing write is simulated. tests/netns/test_read_only_proc_sys.py does the same with a
really read-only /proc/sys in a namespace.
"""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from zonectl.core.config import parse_config
from zonectl.core.rules import RuleSet
from zonectl.core.zones import ZoneRegistry
from zonectl.gateway import host as hostmod
from zonectl.gateway.config import parse_gateway
from zonectl.gateway.gateway import Gateway, GatewayError
from zonectl.gateway.host import CommandError, Host, SysctlError
from zonectl.render.tayga import DEBIAN_12


class SysctlFails(Host):
    """A namespace Host whose `sysctl -w` fails the way sysctl(8) does on a read-only /proc/sys."""

    def run(self, cmd, *, input=None, check=True, timeout=60.0):  # noqa: A002 - Host's signature
        if cmd[:2] == ["sysctl", "-n"]:
            return subprocess.CompletedProcess(cmd, 0, "0\n", "")
        if cmd[:2] == ["sysctl", "-qw"]:
            raise CommandError(cmd, 255, f'sysctl: permission denied on key "{cmd[2].split("=")[0]}"\n')
        raise AssertionError(f"unexpected command {cmd}")


def test_failing_sysctl_command_names_key_value_and_the_node() -> None:
    with pytest.raises(SysctlError) as info:
        SysctlFails("gw").sysctl_set("net.ipv6.conf.all.forwarding", "1")
    msg = str(info.value)
    assert msg.startswith("cannot set sysctl net.ipv6.conf.all.forwarding=1 (it is 0): sysctl: permission denied")
    assert "'net.ipv6.conf.all.forwarding = 1' in /etc/sysctl.d/" in msg
    assert "manifests/components/gateway-sysctl" in msg
    assert isinstance(info.value.__cause__, CommandError)


def test_proc_sys_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real-host path reads and writes /proc/sys itself (the gateway image has no sysctl binary)."""
    monkeypatch.setattr(hostmod, "PROC_SYS", tmp_path)
    assert hostmod.sysctl_path("net.ipv4.ip_forward") == tmp_path / "net/ipv4/ip_forward"
    assert hostmod.sysctl_path("net/ipv6/conf/eth0.100/accept_ra") == tmp_path / "net/ipv6/conf/eth0.100/accept_ra"
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/ipv4/ip_forward").write_text("0\n")
    host = Host()
    assert host.sysctl_set("net.ipv4.ip_forward", "1") is True
    assert host.sysctl_get("net.ipv4.ip_forward") == "1"
    assert host.sysctl_set("net.ipv4.ip_forward", "1") is False  # already set: nothing written
    with pytest.raises(SysctlError, match=r"cannot read sysctl net.ipv6.conf.all.forwarding: "):
        host.sysctl_get("net.ipv6.conf.all.forwarding")  # no such key (IPv6 disabled)


def test_read_only_proc_sys_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "net/ipv4").mkdir(parents=True)
    (tmp_path / "net/ipv4/ip_forward").write_text("0\n")
    monkeypatch.setattr(hostmod, "PROC_SYS", tmp_path)

    def erofs(self, *_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", erofs)
    with pytest.raises(SysctlError, match=r"=1 \(it is 0\): /proc/sys is read-only here .*set it on the node"):
        Host().sysctl_set("net.ipv4.ip_forward", "1")


def test_gateway_apply_wraps_it_and_changes_nothing_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_gateway({"uplink": "eth1", "stateDir": str(tmp_path)})
    gw = Gateway(cfg, SysctlFails("gw"), version=DEBIAN_12)
    config = parse_config({"layout": {"cluster": "fd00:10:244::/48"}, "nat64": {"prefix": "fd64:ff9b::/96"}})
    plan = gw.build(config.nat64, ZoneRegistry([]), RuleSet(()))
    monkeypatch.setattr(gw, "preflight", lambda _plan: None)  # checked with the real tools elsewhere
    with pytest.raises(GatewayError) as info:
        gw.apply(plan)
    msg = str(info.value)
    assert msg.startswith("apply failed part-way (nothing changed): cannot set sysctl net.ipv4.ip_forward=1")
    assert gw.stats.applies_failed == 1 and "set it on the node" in gw.stats.last_error
