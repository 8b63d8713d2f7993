"""Running Tayga: which version is installed, a supervised process per instance, its dynamic.map.

Why supervise here rather than leave it to systemd: the gateway must restart Tayga on a config
change in a controlled way (check the new file with the real binary first, keep the old process if
the new one cannot start) and report up/restarts/mappings as metrics; the same code runs as a
DaemonSet where there is no systemd.

The TUN device is created persistent by the gateway (netlink), so addresses and routes on it survive
every Tayga restart; Tayga attaches to it and the link gains carrier, which is how readiness is seen.
Tayga writes dynamic.map on SIGTERM and every 45 s, so a controlled restart keeps every mapping and
a crash loses at most the newest ones (Tayga re-derives most from the same hash of the address).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from ..core.errors import ZonectlError
from ..procs import WaitTimeout, cmdline, kill_pid, wait_until
from ..render.tayga import DEBIAN_12, TaygaVersion
from .host import Host
from . import netlink

log = logging.getLogger(__name__)

MIN_LEASE_S = 7200 + 4 * 60  # Tayga keeps a dynamic mapping usable this long after its last packet


class TaygaError(ZonectlError):
    """Tayga refused a config or would not start; the message carries Tayga's own words."""


# --- version -------------------------------------------------------------------------------------

_HELP_RE = re.compile(r"TAYGA version (\d+\.\d+(?:\.\d+)?)")
_BIN_RE = re.compile(rb"(?:starting TAYGA |TAYGA version )(\d+\.\d+\.\d+)")
_BIN_VERSION_RE = re.compile(rb"\x00(0\.9\.\d+)(?:-[0-9A-Za-z.~+-]+)?\x00")


def detect_version(binary: str = "tayga", host: Host | None = None) -> TaygaVersion:
    """The installed Tayga's version: ``--help`` names it from 0.9.4 on; 0.9.2 only has it in its binary."""
    host = host or Host()
    proc = host.run([binary, "--help"], check=False, timeout=10)
    m = _HELP_RE.search(proc.stdout + proc.stderr)
    if m:
        return TaygaVersion.parse(m[1])
    path = shutil.which(binary)
    if path is None:
        raise TaygaError(f"{binary}: not found (install the tayga package)")
    data = Path(path).read_bytes()
    m2 = _BIN_RE.search(data) or _BIN_VERSION_RE.search(data)
    if m2:
        return TaygaVersion.parse(m2[1].decode())
    log.warning("cannot tell the version of %s; assuming %s (the oldest supported)", path, DEBIAN_12)
    return DEBIAN_12


# --- dynamic.map ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamicMapping:
    ipv4: IPv4Address
    ipv6: IPv6Address
    last_use: int  # unix time of the last translated packet (as of Tayga's last write)


def parse_dynamic_map(text: str) -> list[DynamicMapping]:
    """Entries of a dynamic.map (``IPv4<TAB>IPv6<TAB>last-use``); comments and malformed lines skipped."""
    out: list[DynamicMapping] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) != 3 or words[0].startswith("#"):
            continue
        try:
            out.append(DynamicMapping(IPv4Address(words[0]), IPv6Address(words[1]), int(words[2])))
        except ValueError:
            continue
    return out


def read_dynamic_map(data_dir: Path) -> list[DynamicMapping]:
    try:
        return parse_dynamic_map((data_dir / "dynamic.map").read_text())
    except FileNotFoundError:
        return []


def active_mappings(entries: list[DynamicMapping], now: float | None = None) -> int:
    """Mappings still inside Tayga's guaranteed lease (the rest are dormant and may be reused)."""
    now = time.time() if now is None else now
    return sum(1 for e in entries if now - e.last_use <= MIN_LEASE_S)


# --- supervision ---------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Restart delays: initial, doubling up to maximum; reset once a process stayed up ``stable_s``."""

    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    stable_s: float = 30.0
    _next: float = field(default=0.0, init=False)

    def delay(self, uptime: float) -> float:
        if uptime >= self.stable_s or self._next == 0.0:
            self._next = self.initial
        current = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return current


@dataclass
class TaygaStatus:
    name: str
    up: bool
    pid: int | None
    restarts: int
    dynamic_mappings: int
    active_mappings: int
    last_exit: int | None
    last_error: str


class TaygaProcess:
    """One supervised Tayga: start, restart with backoff when it dies, controlled restart on change."""

    def __init__(
        self,
        host: Host,
        name: str,
        workdir: Path,
        tun: str,
        *,
        binary: str = "tayga",
        backoff: Backoff | None = None,
        ready_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.name = name
        self.workdir = Path(workdir)
        self.tun = tun
        self.binary = binary
        self.backoff = backoff or Backoff()
        self.ready_timeout = ready_timeout
        self.conf_path = self.workdir / "tayga.conf"
        self.log_path = self.workdir / "tayga.log"
        self.pid_path = self.workdir / "tayga.pid"
        self.conf_text: str | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.last_error = ""
        self._proc: subprocess.Popen | None = None
        self._started_at = 0.0
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._monitor: threading.Thread | None = None
        self._want_running = False

    # -- public -------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def data_dir(self) -> Path | None:
        m = re.search(r"^data-dir\s+(\S+)", self.conf_text or "", re.M)
        return Path(m[1]) if m else None

    def check_config(self, text: str) -> None:
        """Let the installed Tayga parse ``text`` (on a throwaway TUN name); raise with its message if it refuses."""
        probe = f"ztchk{secrets.token_hex(4)}"
        body = re.sub(r"^tun-device\s+\S+", f"tun-device {probe}", text, flags=re.M)
        body = re.sub(r"^data-dir\s+.*$", "", body, flags=re.M)  # --rmtun never touches it
        with tempfile.NamedTemporaryFile("w", prefix="zonectl-tayga-check-", suffix=".conf") as fh:
            fh.write(body)
            fh.flush()
            proc = self.host.run([self.binary, "--rmtun", "-c", fh.name], check=False, timeout=10)
            path = fh.name
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().replace(str(path), "tayga.conf")
            raise TaygaError(f"Tayga ({self.name}) refuses the new config: {msg}")

    def start(self, text: str) -> None:
        """Write the config and start Tayga; raise TaygaError (with its log) if it does not come up."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                raise TaygaError(f"Tayga {self.name} is already running (pid {self._proc.pid})")
            self._write_conf(text)
            self._want_running = True
            try:
                self._spawn_ready()
            except TaygaError:
                self._want_running = False
                raise
            self._ensure_monitor()

    def reconfigure(self, text: str) -> bool:
        """Apply a new config by a controlled restart; False if unchanged. On failure the old one runs again."""
        with self._lock:
            if text == self.conf_text and (self.pid is not None or self._want_running):
                return False  # unchanged; if it died, the monitor is already restarting it
            self.check_config(text)
            old = self.conf_text
            self._stop_proc()
            self._write_conf(text)
            self._want_running = True
            try:
                self._spawn_ready()
            except TaygaError:
                if old is not None:
                    self._write_conf(old)
                    self._spawn_ready()
                raise
            self._ensure_monitor()
            return True

    def write_config(self, text: str) -> bool:
        """Only write tayga.conf (no process); True if it changed."""
        try:
            if self.conf_path.read_text() == text:
                return False
        except OSError:
            pass
        self._write_conf(text)
        return True

    def stop(self) -> None:
        """End Tayga (SIGTERM, so it writes dynamic.map) and the monitor; the TUN device stays."""
        self._closing.set()
        self._wake.set()
        with self._lock:
            self._want_running = False
            self._stop_proc()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)

    def status(self) -> TaygaStatus:
        entries = read_dynamic_map(self.data_dir) if self.data_dir else []
        return TaygaStatus(
            name=self.name,
            up=self.pid is not None and netlink.has_carrier(self.host, self.tun),
            pid=self.pid,
            restarts=self.restarts,
            dynamic_mappings=len(entries),
            active_mappings=active_mappings(entries),
            last_exit=self.last_exit,
            last_error=self.last_error,
        )

    def wait_up(self, timeout: float = 10.0) -> bool:
        """For callers that killed it on purpose (tests): wait until the monitor has it running again."""
        try:
            wait_until(lambda: self.pid is not None and netlink.has_carrier(self.host, self.tun), timeout,
                       f"Tayga {self.name}")
        except WaitTimeout:
            return False
        return True

    # -- internals ------------------------------------------------------------------------------
    def _write_conf(self, text: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.conf_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.conf_path)
        self.conf_text = text
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)

    def _spawn_ready(self) -> None:
        """Start the process and wait until it has attached the TUN (carrier up), or fail with its log."""
        netlink.ensure_tun(self.host, self.tun)
        self._end_stale()
        logf = open(self.log_path, "ab")
        try:
            proc = self.host.popen([self.binary, "-d", "-c", str(self.conf_path), "-p", str(self.pid_path)], stdout=logf,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            logf.close()
        self._proc = proc
        self._started_at = time.monotonic()

        def attached() -> bool:
            rc = proc.poll()
            if rc is not None:
                self._proc = None
                self.last_exit = rc
                self.last_error = self._log_tail()
                raise TaygaError(f"Tayga {self.name} exited with {rc} at start: {self.last_error}")
            return netlink.has_carrier(self.host, self.tun)

        try:
            wait_until(attached, self.ready_timeout, f"Tayga {self.name} to attach {self.tun}", interval=0.02)
        except WaitTimeout:
            kill_pid(proc.pid)
            self._proc = None
            raise TaygaError(f"Tayga {self.name} did not attach {self.tun} within {self.ready_timeout}s") from None
        self.last_error = ""

    def _end_stale(self) -> None:
        """A Tayga left by an earlier zonectl (crashed, or killed with -9) still holds the TUN: end it by its pid."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return
        if comm != Path(self.binary).name or str(self.conf_path) not in cmdline(pid):
            return  # the pid was reused by something else: leave it alone
        log.warning("ending stale Tayga %s (pid %d) left by an earlier run", self.name, pid)
        kill_pid(pid)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def _stop_proc(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            kill_pid(proc.pid)  # SIGTERM first: Tayga writes dynamic.map on it
            proc.poll()

    def _ensure_monitor(self) -> None:
        if self._monitor is None or not self._monitor.is_alive():
            self._closing.clear()
            self._monitor = threading.Thread(target=self._watch, name=f"tayga-{self.name}", daemon=True)
            self._monitor.start()

    def _watch(self) -> None:
        while not self._closing.is_set():
            proc = self._proc
            if proc is not None:
                try:
                    rc = proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                with self._lock:
                    if proc is not self._proc or self._closing.is_set():
                        continue  # replaced or stopped on purpose
                    self._proc = None
                    self.last_exit = rc
                    self.last_error = self._log_tail()
                    uptime = time.monotonic() - self._started_at
                delay = self.backoff.delay(uptime)
                log.warning("Tayga %s died (exit %s) after %.1fs; restarting in %.1fs", self.name, rc, uptime, delay)
            elif self._want_running:
                delay = self.backoff.delay(0.0)  # the last restart failed: keep trying, more slowly
            else:
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            if self._closing.wait(delay):
                return
            with self._lock:
                if self._proc is not None or self._closing.is_set() or not self._want_running:
                    continue
                self.restarts += 1
                try:
                    self._spawn_ready()
                except TaygaError as exc:
                    log.error("%s", exc)
