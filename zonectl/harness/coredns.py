"""Real CoreDNS for the tests and the lab: the binary built from its pinned Go module, run in a namespace.

The binary comes from ``scripts/testbin.sh`` (it builds the Go modules pinned in ``testbin/`` into a
cache outside the repository, keyed by version, and prints ``NAME PATH`` per binary). A checkout
without that script looks in the cache directly (``$ZONECTL_TESTBIN``, default
/var/cache/zonectl-testbin, ``coredns-<version>/coredns``). ``CoreDns`` runs one server with a Corefile
of the caller's inside a network namespace and ends it by its pid; ``zone_file`` writes the zone files
the "internet" server and the lab's cluster zone are served from.
"""

from __future__ import annotations

import os
import re
import json
import subprocess
from pathlib import Path
from typing import Iterable

from ..procs import WaitTimeout, kill_pid, wait_until
from . import probe

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ZONECTL_TESTBIN", "/var/cache/zonectl-testbin"))


class CoreDnsError(RuntimeError):
    """No CoreDNS binary, or a server that did not come up (the message carries its log)."""


def binary(root: Path = ROOT) -> Path:
    """The CoreDNS binary: what ``scripts/testbin.sh`` builds and prints, else the newest one cached."""
    script = root / "scripts" / "testbin.sh"
    if script.exists():
        proc = subprocess.run([str(script)], stdout=subprocess.PIPE, stderr=None, text=True, timeout=3600)
        found = [line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("coredns ")]
        if proc.returncode != 0 or not found:
            raise CoreDnsError(f"{script} built no coredns (exit {proc.returncode}; its output is above)")
        return Path(found[0])
    cached = sorted(CACHE.glob("coredns-v*/coredns"), key=lambda p: _version(p.parent.name))
    if not cached:
        raise CoreDnsError(f"no CoreDNS binary: run scripts/testbin.sh (it builds testbin/coredns into {CACHE})")
    return cached[-1]


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def zone_file(path: Path, origin: str, records: Iterable[tuple[str, str, str]], ttl: int = 30) -> Path:
    """A zone file for CoreDNS's ``file`` plugin: ``records`` are (name relative to ``origin``, type, data)."""
    origin = origin.rstrip(".") + "."
    lines = [f"$ORIGIN {origin}", f"$TTL {ttl}",
             f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 {ttl}", f"@ IN NS ns.{origin}"]
    lines += [f"{name} IN {rtype} {data}" for name, rtype, data in records]
    path.write_text("\n".join(lines) + "\n")
    return path


class CoreDns:
    """One CoreDNS process in a network namespace, serving ``corefile`` from ``workdir``."""

    def __init__(self, netns: str, workdir: Path, corefile: str, *, binary_path: Path | None = None) -> None:
        self.netns = netns
        self.workdir = Path(workdir)
        self.corefile = corefile
        self.binary = binary_path or binary()
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "coredns.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, ready: tuple[str, str, str], timeout: float = 20.0) -> "CoreDns":
        """Start it and wait until it answers ``ready`` = (server address, name, type) with any response."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "Corefile"
        conf.write_text(self.corefile)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, str(self.binary), "-conf", str(conf)],
                                         cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        server, name, rtype = ready

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise CoreDnsError(f"CoreDNS exited with {self.proc.returncode}: {self._tail()}")
            return query(self.netns, server, name, rtype, timeout=0.5) is not None

        try:
            wait_until(answers, timeout, f"CoreDNS in {self.netns} to answer", interval=0.1)
        except WaitTimeout:
            self.stop()
            raise CoreDnsError(f"CoreDNS in {self.netns} did not answer within {timeout:.0f}s: {self._tail()}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            kill_pid(self.proc.pid)
            self.proc = None

    def _tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-8:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "CoreDns":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def query(netns: str, server: str, name: str, rtype: str = "AAAA", timeout: float = 2.0) -> dict | None:
    """One DNS query from inside ``netns``: {"rcode": int, "answers": [[type, data], ...]}, None if no answer."""
    proc = subprocess.run(["ip", "netns", "exec", netns, *probe.command("dns", name, rtype, "--server", server,
                                                                         "--timeout", str(timeout))],
                          capture_output=True, text=True, timeout=timeout + 20)
    return json.loads(proc.stdout) if proc.returncode == 0 else None
