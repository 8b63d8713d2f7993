"""Is a Tayga still translating? One datagram to its own IPv4 address, answered by Tayga itself.

Why a probe: a stopped (SIGSTOP) or hung Tayga keeps its process and its TUN device, whose carrier
stays up, so neither the pid nor the link tells. Tayga's own IPv4 address lies in its pool, which is
routed into its TUN; Tayga answers a UDP datagram to that address with an ICMP "protocol unreachable"
from the same loop that translates every packet, so an answer proves the loop reads and writes the
TUN. A connected UDP socket receives that ICMP error as an error on ``recv``: no raw socket, so no
CAP_NET_RAW (the DaemonSet has NET_ADMIN only). The probe never leaves the host: the datagram goes
into the TUN and Tayga's answer comes straight back out of it.
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


def answers(host: Host, address: IPv4Address, timeout: float = 1.0, tries: int = 1) -> bool | None:
    """True if Tayga at ``address`` answers within ``timeout`` (each of up to ``tries`` datagrams), False
    if it does not, None if the probe cannot be sent (no route into the TUN: that is not Tayga's fault)."""
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
                continue
            except OSError as exc:
                if exc.errno in ANSWERS:
                    return True
    return False
