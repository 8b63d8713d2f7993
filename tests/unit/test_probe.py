"""zonectl.harness.probe on loopback: the server, the batch the lab sends, the one-probe command line the gateway
testbed and the OVN sandbox run. Loopback only (no namespaces); the ICMP cases need root (raw sockets)."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from zonectl.harness import probe

ROOT = os.geteuid() == 0


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    tcp, udp, closed = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    pidfile = tmp_path / "probe.pid"
    proc = subprocess.Popen(probe.command("serve", "--bind", "127.0.0.1", "--tcp", str(tcp), "--udp", str(udp),
                                          "--pidfile", str(pidfile)), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pidfile.read_text().strip() == str(proc.pid)
        yield tcp, udp, closed
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_batch_serves_and_probes_on_loopback(server):
    tcp, udp, closed = server
    probes = [{"id": "t", "proto": "tcp", "host": "127.0.0.1", "port": tcp, "timeout": 2},
              {"id": "u", "proto": "udp", "host": "127.0.0.1", "port": udp, "timeout": 2},
              {"id": "c", "proto": "tcp", "host": "127.0.0.1", "port": closed, "timeout": 0.5},
              {"id": "h", "proto": "connect", "host": "127.0.0.1", "port": tcp, "timeout": 2},
              {"id": "hc", "proto": "connect", "host": "127.0.0.1", "port": closed, "timeout": 0.5, "tries": 2}]
    if ROOT:  # raw ICMP sockets need root
        probes.append({"id": "i", "proto": "ping", "host": "::1", "timeout": 2})
        probes.append({"id": "i4", "proto": "ping", "host": "127.0.0.1", "timeout": 2})
    results = {r["id"]: r for r in probe.probe_batch(probes)}
    assert results["t"]["ok"] and results["t"]["answer"] == "127.0.0.1"
    assert results["u"]["ok"] and results["u"]["answer"] == "127.0.0.1"
    assert not results["c"]["ok"]
    assert results["h"]["ok"] and not results["hc"]["ok"]
    if ROOT:
        assert results["i"]["ok"] and results["i"]["answer"] == "::1"
        assert results["i4"]["ok"] and results["i4"]["answer"] == "127.0.0.1"


@pytest.mark.skipif(not ROOT, reason="raw ICMP sockets need root")
def test_concurrent_pings_in_one_process_each_get_their_own_reply():
    """One process, many pings at once, to two addresses: each is answered by the address it pinged."""
    probes = [{"id": f"{i}", "proto": "ping", "host": "::1" if i % 2 else "127.0.0.1", "timeout": 2} for i in range(40)]
    results = probe.probe_batch(probes)
    assert len(results) == 40
    for r in results:
        assert r["ok"] and r["answer"] == ("::1" if int(r["id"]) % 2 else "127.0.0.1"), r


def test_one_probe_command_line(server):
    tcp, udp, closed = server

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(probe.command(*args), capture_output=True, text=True, timeout=30)

    ok = run("tcp", "127.0.0.1", str(tcp), "--timeout", "2")
    assert (ok.returncode, ok.stdout.strip()) == (0, "127.0.0.1")
    assert run("udp", "127.0.0.1", str(udp)).stdout.strip() == "127.0.0.1"
    assert run("connect", "127.0.0.1", str(tcp), "--tries", "2").returncode == 0
    refused = run("tcp", "127.0.0.1", str(closed), "--timeout", "0.5")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert run("connect", "127.0.0.1", str(closed), "--timeout", "0.5", "--tries", "3").returncode == 2
    if ROOT:
        assert run("ping", "::1").stdout.strip() == "::1"
        assert run("ping", "2001:db8::1", "--timeout", "0.3").returncode == 2  # no route / no answer
