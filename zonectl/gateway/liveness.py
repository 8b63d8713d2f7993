"""Is a Tayga still translating? One datagram to its own IPv4 address, answered by Tayga itself.

Why a probe: a stopped (SIGSTOP) or hung Tayga keeps its process and its TUN device, whose carrier
stays up, so neither the pid nor the link tells. Tayga's own IPv4 address lies in its pool, which is
routed into its TUN; Tayga answers a UDP datagram to that address with an ICMP "protocol unreachable"
from the same loop that translates every packet, so an answer proves the loop reads and writes the
TUN. A connected UDP socket receives that ICMP error as an error on ``recv``: no raw socket, so no
CAP_NET_RAW (the DaemonSet has NET_ADMIN only). The probe never leaves the host: the datagram goes
into the TUN and Tayga's answer comes straight back out of it.

A Tayga saturated with traffic may not answer in time (its TUN queue full, the probe dropped), so
a probe also counts as answered when the TUN's received-packet counter (what Tayga wrote into it:
translated packets) moved while it waited: a stopped Tayga writes nothing, a busy one keeps writing.
"""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address

from .host import Host

PORT = 9  # discard: nothing is meant to listen
PAYLOAD = b"zonectl liveness probe"
# ICMP errors a connected UDP socket reports: Tayga 0.9.2 sends protocol unreachable (ENOPROTOOPT)
ANSWERS = frozenset({errno.ENOPROTOOPT, errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


def written(host: Host, tun: str) -> int | None:
    """Packets Tayga has written into its TUN (the link's rx counter), None if there is no such link."""
    with host.iproute() as ip:
        links = ip.get_links(ifname=tun)
        return int(links[0].get_attr("IFLA_STATS64")["rx_packets"]) if links else None


def answers(host: Host, address: IPv4Address, timeout: float = 1.0, tries: int = 1, tun: str | None = None) -> bool | None:
    """True if Tayga at ``address`` answers within ``timeout`` (each of up to ``tries`` datagrams) or, given its
    ``tun``, wrote packets into it meanwhile; False if not; None if the probe cannot be sent (no route into
    the TUN: that is not Tayga's fault)."""
    before = written(host, tun) if tun else None
    for _ in range(max(tries, 1)):
        with host.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            try:
                s.connect((str(address), PORT))
                s.send(PAYLOAD)
            except OSError:
                return None
            try:
                s.recv(64)
                return True
            except socket.timeout:
                pass
            except OSError as exc:
                if exc.errno in ANSWERS:
                    return True
        if tun is not None and before is not None and (written(host, tun) or 0) > before:
            return True  # busy translating: the probe waited in (or fell off) a full queue
    return False
