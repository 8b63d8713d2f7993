"""The lab's traffic agent: a multi-port TCP/UDP server and a batch prober, standard library only.

Why a batch prober rather than one process per probe: ``lab test`` sends a few hundred probes, and a
denied probe costs its whole timeout. One process per source pod runs every probe of that pod at the
same time, so the matrix takes about one timeout, not hundreds. Why not ``ping``/``nc``: the lab needs
no extra packages, and every probe tags its packets (ICMPv6 identifier, per-probe socket) so that
concurrent probes can never take each other's replies for their own.

Run as a plain script inside a namespace (``ip netns exec NS python3 agent.py ...``)::

    agent.py serve --tcp 80,443 --udp 53 [--bind ADDR,...] [--pidfile F]   # answers with the peer address
    agent.py probe < probes.json                                     # prints results as JSON
    agent.py get http://127.0.0.1:9464/metrics                       # an HTTP GET, body to stdout

A probe is ``{"id": "...", "proto": "tcp"|"udp"|"icmpv6", "host": "...", "port": N, "timeout": S}``;
a result is ``{"id": ..., "ok": bool, "answer": "address the far side saw" | null, "ms": float}``.
TCP and UDP servers answer with the address they saw, so a probe through NAT64 shows the IPv4
source the "internet" saw (the zone's egress address).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

ICMP_ECHO_REQUEST_V6 = 128
ICMP_ECHO_REPLY_V6 = 129
ICMP_ECHO_REQUEST_V4 = 8
ICMP_ECHO_REPLY_V4 = 0

_ident_lock = threading.Lock()
_ident_next = [os.getpid() & 0x7FFF]


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _new_ident() -> int:
    """A distinct ICMP identifier per probe, so concurrent pings never share replies."""
    with _ident_lock:
        _ident_next[0] = (_ident_next[0] + 1) & 0xFFFF
        return _ident_next[0]


# --- server ---------------------------------------------------------------------------------------


def _tcp_loop(sock: socket.socket) -> None:
    while True:
        try:
            conn, peer = sock.accept()
        except OSError:
            continue
        with conn:
            try:
                conn.settimeout(2)
                conn.sendall(f"{peer[0]}\n".encode())
            except OSError:
                pass


def _udp_loop(sock: socket.socket) -> None:
    while True:
        try:
            _, peer = sock.recvfrom(2048)
            sock.sendto(f"{peer[0]}\n".encode(), peer)
        except OSError:
            continue


def serve(binds: list[str], tcp_ports: list[int], udp_ports: list[int], pidfile: str | None) -> None:
    """Listen on every address and port given and answer each connection/datagram with the peer's address.

    One UDP socket per address, not one on the wildcard: a wildcard socket answers from whatever source
    the route picks, and a NAT (the gateway's masquerade) drops a reply from the wrong address.
    """
    threads: list[threading.Thread] = []
    for bind in binds:
        fam = _family(bind)
        for port in tcp_ports:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind, port))
            s.listen(128)
            threads.append(threading.Thread(target=_tcp_loop, args=(s,), daemon=True))
        for port in udp_ports:
            u = socket.socket(fam, socket.SOCK_DGRAM)
            u.bind((bind, port))
            threads.append(threading.Thread(target=_udp_loop, args=(u,), daemon=True))
    for t in threads:
        t.start()
    if pidfile:  # written only once every socket is bound: its presence means "ready"
        tmp = f"{pidfile}.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(tmp, pidfile)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    threading.Event().wait()


# --- probes ---------------------------------------------------------------------------------------


def probe_tcp(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(256).decode().strip() or None
    except OSError:
        return None


def probe_udp(host: str, port: int, timeout: float) -> str | None:
    """Up to three datagrams within ``timeout``: the first of a new flow may be lost while OVN's
    userspace datapath or Tayga set it up."""
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        deadline = time.monotonic() + timeout
        for _ in range(3):
            try:
                s.sendto(b"zonectl-probe", (host, port))
            except OSError:
                return None
            step = min(deadline, time.monotonic() + timeout / 3)
            while (left := step - time.monotonic()) > 0:
                ready, _, _ = select.select([s], [], [], left)
                if not ready:
                    break
                try:
                    data, _ = s.recvfrom(256)
                except OSError:  # ICMP unreachable surfaces as ECONNREFUSED on the next call
                    return None
                return data.decode().strip()
    return None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def probe_ping(host: str, timeout: float) -> str | None:
    """ICMP(v6) echo with an identifier of its own; a reply counts only from ``host`` with that id."""
    v6 = _family(host) == socket.AF_INET6
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    ident = _new_ident()
    want = socket.inet_pton(_family(host), host)
    deadline = time.monotonic() + timeout
    with socket.socket(_family(host), socket.SOCK_RAW, proto) as s:
        for seq in range(1, 4):
            payload = b"zonectl-probe"
            kind = ICMP_ECHO_REQUEST_V6 if v6 else ICMP_ECHO_REQUEST_V4
            csum = 0 if v6 else _checksum(struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload)
            s.sendto(struct.pack("!BBHHH", kind, 0, csum, ident, seq) + payload, (host, 0))
            step = min(deadline, time.monotonic() + timeout / 3)
            while (left := step - time.monotonic()) > 0:
                ready, _, _ = select.select([s], [], [], left)
                if not ready:
                    break
                data, peer = s.recvfrom(2048)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if len(icmp) < 8:
                    continue
                rkind, _, _, rid, _ = struct.unpack("!BBHHH", icmp[:8])
                reply = ICMP_ECHO_REPLY_V6 if v6 else ICMP_ECHO_REPLY_V4
                if rkind == reply and rid == ident and socket.inet_pton(_family(host), peer[0]) == want:
                    return peer[0]
    return None


def run_probe(p: dict[str, Any]) -> dict[str, Any]:
    start = time.monotonic()
    timeout = float(p.get("timeout", 1.0))
    proto = p["proto"]
    if proto == "tcp":
        answer = probe_tcp(p["host"], int(p["port"]), timeout)
    elif proto == "udp":
        answer = probe_udp(p["host"], int(p["port"]), timeout)
    elif proto == "icmpv6":
        answer = probe_ping(p["host"], timeout)
    else:
        raise ValueError(f"unknown probe protocol {proto!r}")
    return {"id": p["id"], "ok": answer is not None, "answer": answer, "ms": round((time.monotonic() - start) * 1000, 1)}


def probe_batch(probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every probe at once, one thread each (a few dozen per pod)."""
    results: list[dict[str, Any] | None] = [None] * len(probes)

    def work(i: int) -> None:
        try:
            results[i] = run_probe(probes[i])
        except Exception as exc:  # reported per probe: one bad probe must not hide the others
            results[i] = {"id": probes[i].get("id"), "ok": False, "answer": None, "error": str(exc), "ms": 0.0}

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(probes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def _ports(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="zonectl lab traffic agent")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", default="::", help="comma-separated addresses")
    s.add_argument("--tcp", default="")
    s.add_argument("--udp", default="")
    s.add_argument("--pidfile")
    sub.add_parser("probe")
    g = sub.add_parser("get")
    g.add_argument("url")
    args = ap.parse_args(argv)
    if args.cmd == "get":  # the gateway's /metrics, from inside its namespace
        import urllib.request

        with urllib.request.urlopen(args.url, timeout=5) as resp:
            sys.stdout.write(resp.read().decode())
        return 0
    if args.cmd == "serve":
        serve([b for b in args.bind.split(",") if b], _ports(args.tcp), _ports(args.udp), args.pidfile)
        return 0
    probes = json.load(sys.stdin)
    json.dump(probe_batch(probes), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
