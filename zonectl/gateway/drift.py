"""Desired vs actual, for every piece of state the gateway owns: what drift reports show and an apply repairs.

One list, so that nothing the gateway makes can go missing unseen: the sysctls it sets, the zone filter
(and a leftover of the other backend), the NAT table, the TUN devices, each Tayga (its config, its
process, its TUN attachment, and whether it still translates: a stopped Tayga keeps its pid and its
carrier), the routes and policy rules it owns, and the egress addresses on the uplink. It reads the
host and the state dir only, so another process (``zonectl lab test``, ``gateway status``) can ask it
about a gateway it does not run.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, ip_interface
from pathlib import Path
from typing import Mapping

from ..render import nftables
from . import liveness, netlink
from .firewall import Nftables, ZoneFilter
from .host import Host, SysctlError
from .plan import GatewayPlan, TaygaInstance
from .status import recorded_pid


def drift(plan: GatewayPlan, host: Host, state_dir: Path, filters: Mapping[str, ZoneFilter], nft: Nftables) -> list[str]:
    """Every difference between ``plan`` and the host, one line each (empty: the host is the plan)."""
    out: list[str] = []
    for key, value in plan.sysctls:
        try:
            live = host.sysctl_get(key)
        except SysctlError as exc:
            live = f"unreadable ({exc})"
        if live != value:
            out.append(f"sysctl {key} is {live}, the gateway needs {value}")
    out += filters[plan.filter_backend].drift(plan)
    out += [f"zone filter ({name}) is present although gateway.filter is {plan.filter_backend}"
            for name, other in filters.items() if name != plan.filter_backend and other.present()]
    out += nft.drift("ip", nftables.NAT_TABLE, plan.nat_text)
    for inst in plan.instances:
        out += _tayga(inst, host, state_dir)
    live_routes = netlink.owned_routes(host)
    out += [f"route {r.describe()} is missing" for r in sorted(plan.routes - live_routes)]
    out += [f"route {r.describe()} is not the plan's" for r in sorted(live_routes - plan.routes)]
    live_rules = netlink.owned_rules(host)
    out += [f"policy rule {r.priority} (fwmark {r.fwmark:#x}/{r.mask:#x} lookup {r.table}) is missing"
            for r in sorted(plan.policy_rules - live_rules)]
    out += [f"policy rule {r.priority} (lookup {r.table}) is not the plan's" for r in sorted(live_rules - plan.policy_rules)]
    present = _addresses(host, plan.uplink)
    out += [f"egress address {a} is missing on {plan.uplink}" for a in plan.uplink_addresses if a not in present]
    return out


def _tayga(inst: TaygaInstance, host: Host, state_dir: Path) -> list[str]:
    where = state_dir / "tayga" / inst.name
    conf = where / "tayga.conf"
    try:
        if conf.read_text() != inst.conf_text:
            return [f"tayga {inst.name}: {conf} is not the plan's config"]
    except OSError:
        return [f"tayga {inst.name}: no {conf} (never started)"]
    state = netlink.link_state(host, inst.tun)
    if state is None:
        return [f"tayga {inst.name}: TUN device {inst.tun} is missing"]
    if not state[0]:
        return [f"tayga {inst.name}: TUN device {inst.tun} is down"]
    if recorded_pid(where / "tayga.pid", str(conf)) is None:
        return [f"tayga {inst.name}: not running"]
    if not state[1]:
        return [f"tayga {inst.name}: not attached to {inst.tun} (the device was re-created)"]
    addr = inst.conf.ipv4_addr
    if liveness.answers(host, IPv4Address(addr), timeout=1.0, tries=2, tun=inst.tun) is False:
        return [f"tayga {inst.name}: does not answer through {inst.tun} (stopped or hung)"]
    return []


def _addresses(host: Host, ifname: str) -> set[str]:
    with host.iproute() as ip:
        idx = netlink.link_index(ip, ifname)
        if idx is None:
            return set()
        return {str(ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"))
                for a in ip.get_addr(family=socket.AF_INET, index=idx)}
