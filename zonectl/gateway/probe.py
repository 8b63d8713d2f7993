"""Tiny traffic probes for the netns lab: a TCP/UDP echo server that answers with the peer address
it saw, and TCP/UDP/ICMP clients. Standard library only and runnable as a plain script
(``python3 probe.py ...``) inside any namespace, so the lab needs no ping/nc/socat packages.

Exit codes of the clients: 0 answered (the answer is printed), 2 no answer (timeout/refused).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import sys
import threading
import time


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def serve(bind: str, tcp_port: int, udp_port: int) -> None:
    """Answer every TCP connection and UDP datagram with the peer's address (what NAT left of it)."""
    fam = _family(bind)
    tcp = socket.socket(fam, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((bind, tcp_port))
    tcp.listen(64)
    udp = socket.socket(fam, socket.SOCK_DGRAM)
    udp.bind((bind, udp_port))

    def tcp_loop() -> None:
        while True:
            conn, peer = tcp.accept()
            with conn:
                conn.settimeout(2)
                try:
                    conn.sendall(f"{peer[0]}\n".encode())
                except OSError:
                    pass

    threading.Thread(target=tcp_loop, daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        data, peer = udp.recvfrom(2048)
        udp.sendto(f"{peer[0]}\n".encode(), peer)


def tcp_client(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(256).decode().strip() or None
    except OSError:
        return None


def udp_client(host: str, port: int, timeout: float) -> str | None:
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        s.settimeout(timeout / 3)
        for _ in range(3):  # UDP may lose the first datagram while a mapping is created
            try:
                s.sendto(b"hello", (host, port))
                data, _ = s.recvfrom(256)
                return data.decode().strip()
            except OSError:
                continue
    return None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(host: str, timeout: float) -> str | None:
    """One ICMP(v6) echo; returns the replying address or None."""
    v6 = _family(host) == socket.AF_INET6
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    ident = os.getpid() & 0xFFFF
    deadline = time.monotonic() + timeout
    with socket.socket(_family(host), socket.SOCK_RAW, proto) as s:
        for seq in range(1, 4):
            header = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq)
            payload = b"zonectl-probe"
            packet = header + payload
            if not v6:  # the kernel fills the ICMPv6 checksum, not the ICMPv4 one
                packet = struct.pack("!BBHHH", 8, 0, _checksum(packet), ident, seq) + payload
            s.sendto(packet, (host, 0))
            step = min(deadline, time.monotonic() + timeout / 3)
            while (left := step - time.monotonic()) > 0:
                ready, _, _ = select.select([s], [], [], left)
                if not ready:
                    break
                data, peer = s.recvfrom(2048)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                kind, _, _, rid, _ = struct.unpack("!BBHHH", icmp[:8])
                if kind == (129 if v6 else 0) and rid == ident:
                    return peer[0]
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--tcp", type=int, default=8080)
    s.add_argument("--udp", type=int, default=8053)
    for name in ("tcp", "udp", "ping"):
        c = sub.add_parser(name)
        c.add_argument("host")
        if name != "ping":
            c.add_argument("port", type=int)
        c.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve(args.bind, args.tcp, args.udp)
        return 0
    if args.cmd == "tcp":
        answer = tcp_client(args.host, args.port, args.timeout)
    elif args.cmd == "udp":
        answer = udp_client(args.host, args.port, args.timeout)
    else:
        answer = ping(args.host, args.timeout)
    if answer is None:
        return 2
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
