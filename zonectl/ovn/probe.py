"""Tiny probe programs run inside pod namespaces with ``python -c`` (ICMPv6 echo, TCP connect, TCP listen).

Why not ping/nc: the tests must not depend on iputils-ping or netcat being installed; a raw ICMPv6 socket
and the socket module are always there. Each script exits 0 on success, 1 on failure.
"""

PING6 = r"""
import os, socket, struct, sys, time
dst, count, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
ident = os.getpid() & 0xFFFF
for seq in range(count):
    # kernel fills the ICMPv6 checksum on raw ICMPv6 sockets
    s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"zonectl", (dst, 0))
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        if addr[0] == dst and data[0] == 129 and struct.unpack("!HH", data[4:8]) == (ident, seq):
            sys.exit(0)
sys.exit(1)
"""

TCP6 = r"""
import socket, sys
dst, count, wait, port = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
for _ in range(count):
    try:
        socket.create_connection((dst, port), timeout=wait).close()
        sys.exit(0)
    except OSError:
        pass
sys.exit(1)
"""

LISTEN6 = r"""
import socket, sys
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("::", int(sys.argv[1])))
srv.listen(16)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    conn.close()
"""
