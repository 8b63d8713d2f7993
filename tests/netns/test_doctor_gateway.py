"""``zonectl doctor`` on a real gateway in a namespace: Tayga up, NAT64 routed into it, forwarding on."""

from __future__ import annotations

import os
import signal

from zonectl.core.config import parse_config
from zonectl.doctor import check_forwarding, check_tayga
from zonectl.gateway.config import parse_gateway
from zonectl.gateway.gateway import Gateway
from zonectl.gateway.host import Host
from zonectl.harness.gateway_testbed import Testbed

from gwlab import CONFIG, pods, registry, ruleset


def test_doctor_sees_tayga_route_and_forwarding_then_a_stopped_gateway() -> None:
    with Testbed.create(pods({"dmz": 0x2000}), server=False) as bed:
        section = {"uplink": "uplink", "stateDir": str(bed.workdir / "state"), "metrics": {"listen": None},
                   "restart": {"probeInterval": 3600}}  # the supervisor must not restart it first
        config = parse_config({"layout": CONFIG.layout.as_dict() | {"datacenter": str(CONFIG.layout.datacenter)},
                               "nat64": {"prefix": str(CONFIG.nat64.network)}, "gateway": section})
        host = Host(bed.gateway.name)
        assert check_forwarding(host).status == "fail"  # a fresh namespace forwards nothing
        assert check_tayga(config, host)[0].status == "fail"  # nothing applied yet
        gw = Gateway(parse_gateway(section), host)
        try:
            reg = registry()
            gw.apply_inputs(CONFIG.nat64, reg, ruleset(reg=reg))
            assert check_forwarding(host).status == "ok"
            checks = {c.name: c for c in check_tayga(config, host)}
            taygas = [c for n, c in checks.items() if n.startswith("tayga ")]
            assert taygas and all(c.status == "ok" for c in taygas), checks
            assert checks["nat64 route"].status == "ok" and "fd64:ff9b::/96 ->" in checks["nat64 route"].detail
            shared = gw.taygas["shared"]
            os.kill(shared.pid, signal.SIGSTOP)  # hung: its pid and its TUN's carrier stay
            try:
                stopped = {c.name: c for c in check_tayga(config, host)}["tayga shared"]
            finally:
                os.kill(shared.pid, signal.SIGCONT)
            assert stopped.status == "fail" and "does not answer through zt64 (stopped or hung)" in stopped.detail
        finally:
            gw.close()
        after = {c.name: c for c in check_tayga(config, host)}
        assert any(c.status == "fail" for n, c in after.items() if n.startswith("tayga")), after
