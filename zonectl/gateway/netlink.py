"""Links, addresses, routes and policy rules through netlink (pyroute2), each call idempotent.

Every ``ensure_*`` returns True only when it changed something, so a re-apply of the same state can
prove it changed nothing. Routes and rules zonectl adds carry its own routing protocol number
(``RTPROT_ZONECTL``), which is how it finds and removes only its own stale entries.
"""

from __future__ import annotations

import errno
import socket
from ipaddress import ip_interface, ip_network

from .host import Host
from .plan import RouteSpec, RuleSpec

RTPROT_ZONECTL = 0x5A  # not in /etc/iproute2/rt_protos; "ip route show proto 90" lists ours


def _netlink_error_code(exc: Exception) -> int | None:
    return getattr(exc, "code", None)


def link_index(sock, name: str) -> int | None:  # sock: pyroute2 IPRoute/NetNS
    found = sock.link_lookup(ifname=name)
    return found[0] if found else None


def ensure_tun(host: Host, name: str) -> bool:
    """A persistent TUN device, up. Persistent so Tayga restarts keep its addresses and routes."""
    with host.iproute() as ip:
        idx = link_index(ip, name)
        changed = False
        if idx is None:
            ip.link("add", ifname=name, kind="tuntap", mode="tun")
            idx = link_index(ip, name)
            changed = True
        link = ip.get_links(index=idx)[0]
        if not link["flags"] & 1:  # IFF_UP
            ip.link("set", index=idx, state="up")
            changed = True
        return changed


def delete_link(host: Host, name: str) -> bool:
    with host.iproute() as ip:
        idx = link_index(ip, name)
        if idx is None:
            return False
        ip.link("del", index=idx)
        return True


def list_links(host: Host, prefix: str = "") -> list[str]:
    with host.iproute() as ip:
        names = [link.get_attr("IFLA_IFNAME") for link in ip.get_links()]
    return sorted(n for n in names if n and n.startswith(prefix))


def link_state(host: Host, name: str) -> tuple[bool, bool] | None:
    """(administratively up, carrier) of a link, or None if there is no such link. A TUN has carrier
    while a process holds it open (Tayga attached)."""
    with host.iproute() as ip:
        idx = link_index(ip, name)
        if idx is None:
            return None
        link = ip.get_links(index=idx)[0]
        return bool(link["flags"] & 1), bool(link.get_attr("IFLA_CARRIER"))


def has_carrier(host: Host, name: str) -> bool:
    """True when some process holds the TUN open (Tayga attached) and the link is up."""
    return link_state(host, name) == (True, True)


def ensure_address(host: Host, ifname: str, address: str) -> bool:
    """Add ``address`` (``addr/len``) to ``ifname`` unless present; IPv6 without DAD (it is ours)."""
    iface = ip_interface(address)
    with host.iproute() as ip:
        idx = link_index(ip, ifname)
        if idx is None:
            raise LookupError(f"interface {ifname} does not exist")
        family = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
        for a in ip.get_addr(family=family, index=idx):
            if a.get_attr("IFA_ADDRESS") == str(iface.ip) and a["prefixlen"] == iface.network.prefixlen:
                return False
        kwargs = {"flags": 0x02} if iface.version == 6 else {}  # IFA_F_NODAD
        ip.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen, **kwargs)
        return True


def remove_address(host: Host, ifname: str, address: str) -> bool:
    iface = ip_interface(address)
    with host.iproute() as ip:
        idx = link_index(ip, ifname)
        if idx is None:
            return False
        try:
            ip.addr("del", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except Exception as exc:  # pyroute2 NetlinkError
            if _netlink_error_code(exc) in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH):
                return False
            raise
        return True


def owned_routes(host: Host) -> set[RouteSpec]:
    out: set[RouteSpec] = set()
    with host.iproute() as ip:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in ip.get_routes(family=family):  # every table
                if r["proto"] != RTPROT_ZONECTL:
                    continue
                dst = r.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
                table = r.get_attr("RTA_TABLE") or r["table"]
                net = str(ip_network(f"{dst}/{r['dst_len']}"))
                hops = r.get_attr("RTA_MULTIPATH")
                if hops:
                    gws = {nh.get_attr("RTA_GATEWAY") for nh in hops}
                    out.add(RouteSpec(net, "", table, gws.pop() if len(gws) == 1 else "?",
                                      tuple(sorted(names.get(nh["oif"], "?") for nh in hops))))
                else:
                    out.add(RouteSpec(net, names.get(r.get_attr("RTA_OIF"), "?"), table, r.get_attr("RTA_GATEWAY")))
    return out


def sync_routes(host: Host, desired: set[RouteSpec]) -> int:
    """Make zonectl's routes exactly ``desired`` (set difference); returns how many changed."""
    actual = owned_routes(host)
    changes = 0
    with host.iproute() as ip:
        for r in sorted(actual - desired):
            _route(ip, "del", r)
            changes += 1
        for r in sorted(desired - actual):
            _route(ip, "replace", r)
            changes += 1
    return changes


def _route(ip, op: str, r: RouteSpec) -> None:
    kwargs: dict = {"dst": r.dst, "table": r.table, "proto": RTPROT_ZONECTL, "family": r.family}
    if r.ecmp:
        hops = []
        for dev in r.ecmp:
            idx = link_index(ip, dev)
            if idx is None and op != "del":
                raise LookupError(f"route {r.dst}: interface {dev} does not exist")
            if idx is not None:
                hops.append({"oif": idx, "gateway": r.gateway})
        if op != "del":
            kwargs["multipath"] = hops
    else:
        idx = link_index(ip, r.dev)
        if idx is None and op != "del":
            raise LookupError(f"route {r.dst}: interface {r.dev} does not exist")
        if idx is not None:
            kwargs["oif"] = idx
        if r.gateway:
            kwargs["gateway"] = r.gateway
    try:
        ip.route(op, **kwargs)
    except Exception as exc:
        if op == "del" and _netlink_error_code(exc) in (errno.ESRCH, errno.ENOENT):
            return
        raise


def owned_rules(host: Host) -> set[RuleSpec]:
    out: set[RuleSpec] = set()
    with host.iproute() as ip:
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in ip.get_rules(family=family):
                if r.get_attr("FRA_PROTOCOL") != RTPROT_ZONECTL:
                    continue
                out.add(RuleSpec(r.get_attr("FRA_PRIORITY") or 0, r.get_attr("FRA_FWMARK") or 0,
                                 r.get_attr("FRA_FWMASK") or 0, r.get_attr("FRA_TABLE") or r["table"], family))
    return out


def sync_rules(host: Host, desired: set[RuleSpec]) -> int:
    actual = owned_rules(host)
    changes = 0
    with host.iproute() as ip:
        for r in sorted(actual - desired):
            ip.rule("del", family=r.family, priority=r.priority, fwmark=r.fwmark, fwmask=r.mask, table=r.table,
                    protocol=RTPROT_ZONECTL)
            changes += 1
        for r in sorted(desired - actual):
            ip.rule("add", family=r.family, priority=r.priority, fwmark=r.fwmark, fwmask=r.mask, table=r.table,
                    protocol=RTPROT_ZONECTL)
            changes += 1
    return changes
