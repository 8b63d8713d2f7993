"""Traffic probes for the tests, the benchmarks and the lab: a TCP/UDP server and TCP/UDP/ICMP clients.

Standard library only, and run as a plain script inside a namespace (``ip netns exec NS`` + ``command()``),
so nothing needs ping/nc/socat and the namespace needs no zonectl import path. Every probe tags its
packets so that concurrent probes never take each other's replies for their own: a TCP connection or a
UDP socket of its own, and an ICMP identifier of its own with the reply counted only from the address
pinged. Servers answer every TCP connection and UDP datagram with the address they saw, so a probe
through NAT64 shows the IPv4 source the far side saw (what the masquerade or the zone's egress made of it).

    probe.py serve --bind ADDR[,ADDR] --tcp PORT[,PORT] --udp PORT[,PORT] [--pidfile F]
    probe.py tcp|udp HOST PORT [--timeout S] [--tries N]   # prints the far side's answer
    probe.py connect HOST PORT [--timeout S] [--tries N]   # the TCP handshake only
    probe.py ping HOST [--timeout S] [--tries N]           # ICMP(v6) echo; prints the replier
    probe.py batch < probes.json                           # many probes at once, results as JSON
    probe.py get URL                                       # an HTTP GET, body to stdout
    probe.py dns NAME TYPE --server ADDR                   # one DNS query, the answer as JSON

HOST may be a name: it is resolved first with the system resolver (an IPv6 address wanted, as a pod in
an IPv6-only cluster asks; ``ip netns exec`` gives the namespace /etc/netns/NS/resolv.conf), and the
probe result says what it resolved to.

One probe exits 0 when answered (the answer is printed), 2 when not (timeout, refused, unreachable).
``--tries`` sends that many attempts, evenly spread over ``--timeout`` (defaults: 1 for TCP, 3 for UDP
and ping, whose first packet of a new flow may be lost while OVN's userspace datapath or Tayga set it up).

A batch probe is ``{"id": "...", "proto": "tcp"|"udp"|"connect"|"ping", "host": "...", "port": N,
"timeout": S, "tries": N}``; its result ``{"id": ..., "ok": bool, "answer": str | null, "ms": float}``.
Why a batch: the lab sends a few hundred probes and a denied one costs its whole timeout; one process
per source namespace runs all of its probes at the same time, so the matrix takes about one timeout.
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
from typing import Any, Iterator

SCRIPT = os.path.abspath(__file__)
PROGRAM = os.path.basename(SCRIPT)  # what the command line of a running probe contains

ICMP_ECHO_REQUEST_V6 = 128
ICMP_ECHO_REPLY_V6 = 129
ICMP_ECHO_REQUEST_V4 = 8
ICMP_ECHO_REPLY_V4 = 0
PAYLOAD = b"zonectl-probe"

_ident_lock = threading.Lock()
_ident_next = [os.getpid() & 0x7FFF]


def command(*args: str) -> list[str]:
    """The argv that runs this file as a script with this interpreter. ``-P``: the script's directory
    (zonectl/, with its ``operator`` package) must not shadow the standard library."""
    return [sys.executable, "-P", SCRIPT, *args]


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _new_ident() -> int:
    """A distinct ICMP identifier per probe, so concurrent pings never share replies."""
    with _ident_lock:
        _ident_next[0] = (_ident_next[0] + 1) & 0xFFFF
        return _ident_next[0]


def _slices(timeout: float, tries: int) -> Iterator[float]:
    """The end of each attempt: ``tries`` equal slices of ``timeout``, none past the overall deadline."""
    deadline = time.monotonic() + timeout
    for _ in range(max(tries, 1)):
        yield min(deadline, time.monotonic() + timeout / max(tries, 1))


def _readable(sock: socket.socket, end: float) -> bool:
    left = end - time.monotonic()
    return left > 0 and bool(select.select([sock], [], [], left)[0])


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


def serve(binds: list[str], tcp_ports: list[int], udp_ports: list[int], pidfile: str | None = None) -> None:
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


def probe_tcp(host: str, port: int, timeout: float, tries: int = 1, *, answer: bool = True) -> str | None:
    """Connect to host:port and return the far side's answer (None if none came); with ``answer=False``
    only the handshake counts and "" means it completed."""
    for end in _slices(timeout, tries):
        try:
            with socket.create_connection((host, port), timeout=max(end - time.monotonic(), 0.001)) as s:
                if not answer:
                    return ""
                s.settimeout(timeout)
                return s.recv(256).decode().strip() or None
        except OSError:
            continue
    return None


def probe_udp(host: str, port: int, timeout: float, tries: int = 3) -> str | None:
    """Up to ``tries`` datagrams within ``timeout``; the first answer, or None."""
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        for end in _slices(timeout, tries):
            try:
                s.sendto(PAYLOAD, (host, port))
            except OSError:
                return None
            if _readable(s, end):
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


def probe_ping(host: str, timeout: float, tries: int = 3) -> str | None:
    """Up to ``tries`` ICMP(v6) echo requests within ``timeout``, with an identifier of this probe's own;
    a reply counts only from ``host`` with that identifier. Returns the replying address or None."""
    fam = _family(host)
    v6 = fam == socket.AF_INET6
    kind = ICMP_ECHO_REQUEST_V6 if v6 else ICMP_ECHO_REQUEST_V4
    reply = ICMP_ECHO_REPLY_V6 if v6 else ICMP_ECHO_REPLY_V4
    ident = _new_ident()
    want = socket.inet_pton(fam, host)
    with socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP) as s:
        for seq, end in enumerate(_slices(timeout, tries), start=1):
            # the kernel fills the ICMPv6 checksum on raw ICMPv6 sockets, not the ICMPv4 one
            csum = 0 if v6 else _checksum(struct.pack("!BBHHH", kind, 0, 0, ident, seq) + PAYLOAD)
            try:
                s.sendto(struct.pack("!BBHHH", kind, 0, csum, ident, seq) + PAYLOAD, (host, 0))
            except OSError:  # e.g. no route
                return None
            while _readable(s, end):
                data, peer = s.recvfrom(2048)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if len(icmp) < 8:
                    continue
                rkind, _, _, rid, _ = struct.unpack("!BBHHH", icmp[:8])
                if rkind == reply and rid == ident and socket.inet_pton(fam, peer[0]) == want:
                    return peer[0]
    return None


def resolve(host: str) -> str | None:
    """An IP literal as it is; a name through the system resolver, IPv6 wanted (None: no such address)."""
    try:
        socket.inet_pton(_family(host), host)
        return host
    except OSError:
        pass
    try:
        return str(socket.getaddrinfo(host, None, socket.AF_INET6, socket.SOCK_STREAM)[0][4][0])
    except (OSError, IndexError):
        return None


def run_probe(p: dict[str, Any]) -> dict[str, Any]:
    start = time.monotonic()
    timeout = float(p.get("timeout", 1.0))
    proto = p["proto"]
    tries = p.get("tries")
    host = resolve(p["host"])
    if host is None:
        answer = None
    elif proto in ("tcp", "connect"):
        answer = probe_tcp(host, int(p["port"]), timeout, int(tries or 1), answer=proto == "tcp")
    elif proto == "udp":
        answer = probe_udp(host, int(p["port"]), timeout, int(tries or 3))
    elif proto == "ping":
        answer = probe_ping(host, timeout, int(tries or 3))
    else:
        raise ValueError(f"unknown probe protocol {proto!r}")
    out = {"id": p.get("id"), "ok": answer is not None, "answer": answer, "ms": round((time.monotonic() - start) * 1000, 1)}
    if host != p["host"]:
        out["resolved"] = host
    return out


# --- DNS ------------------------------------------------------------------------------------------

RTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "AAAA": 28}


def _dns_name(data: bytes, pos: int) -> tuple[str, int]:
    """A (possibly compressed) name at ``pos``: the name and the position after it."""
    labels: list[str] = []
    end = None
    for _ in range(128):  # a bound on pointer chains
        length = data[pos]
        if length >= 0xC0:
            end = pos + 2 if end is None else end
            pos = (length & 0x3F) << 8 | data[pos + 1]
            continue
        if length == 0:
            return ".".join(labels) + ".", (pos + 1 if end is None else end)
        labels.append(data[pos + 1:pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    raise ValueError("DNS name pointer loop")


def dns_query(name: str, rtype: str, server: str, port: int = 53, timeout: float = 2.0, tries: int = 3) -> dict | None:
    """One query over UDP: {"rcode": 0 (NOERROR) / 3 (NXDOMAIN) / ..., "answers": [[type, data], ...]}."""
    ident = os.getpid() & 0xFFFF
    question = b"".join(bytes([len(lb)]) + lb.encode() for lb in name.rstrip(".").split(".") if lb) + b"\0"
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", RTYPES[rtype], 1)
    names = {v: k for k, v in RTYPES.items()}
    with socket.socket(_family(server), socket.SOCK_DGRAM) as s:
        for end in _slices(timeout, tries):
            s.sendto(packet, (server, port))
            while _readable(s, end):
                data, _ = s.recvfrom(4096)
                rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
                if rid != ident:
                    continue
                pos = 12
                for _ in range(qd):
                    pos = _dns_name(data, pos)[1] + 4
                answers = []
                for _ in range(an):
                    pos = _dns_name(data, pos)[1]
                    atype, _, _, length = struct.unpack("!HHIH", data[pos:pos + 10])
                    rdata = data[pos + 10:pos + 10 + length]
                    if atype in (1, 28):
                        answers.append([names[atype], socket.inet_ntop(socket.AF_INET if atype == 1 else socket.AF_INET6,
                                                                        rdata)])
                    elif atype == 5:
                        answers.append(["CNAME", _dns_name(data, pos + 10)[0]])
                    pos += 10 + length
                return {"rcode": flags & 0xF, "answers": answers}
    return None


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
    ap = argparse.ArgumentParser(description="zonectl traffic probes")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", default="::", help="comma-separated addresses")
    s.add_argument("--tcp", default="", help="comma-separated ports")
    s.add_argument("--udp", default="", help="comma-separated ports")
    s.add_argument("--pidfile")
    for name in ("tcp", "udp", "connect", "ping"):
        c = sub.add_parser(name)
        c.add_argument("host")
        if name != "ping":
            c.add_argument("port", type=int)
        c.add_argument("--timeout", type=float, default=2.0)
        c.add_argument("--tries", type=int)
    sub.add_parser("batch")
    g = sub.add_parser("get")
    g.add_argument("url")
    d = sub.add_parser("dns")
    d.add_argument("name")
    d.add_argument("type", choices=sorted(RTYPES))
    d.add_argument("--server", required=True)
    d.add_argument("--port", type=int, default=53)
    d.add_argument("--timeout", type=float, default=2.0)
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        serve([b for b in args.bind.split(",") if b], _ports(args.tcp), _ports(args.udp), args.pidfile)
        return 0
    if args.cmd == "batch":
        json.dump(probe_batch(json.load(sys.stdin)), sys.stdout)
        return 0
    if args.cmd == "dns":
        reply = dns_query(args.name, args.type, args.server, args.port, args.timeout)
        if reply is None:
            return 2
        json.dump(reply, sys.stdout)
        return 0
    if args.cmd == "get":  # e.g. the gateway's /metrics, from inside its namespace
        import urllib.request

        with urllib.request.urlopen(args.url, timeout=5) as resp:
            sys.stdout.write(resp.read().decode())
        return 0
    result = run_probe({"proto": args.cmd, "host": args.host, "port": getattr(args, "port", None),
                        "timeout": args.timeout, "tries": args.tries})
    if not result["ok"]:
        return 2
    print(result["answer"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
