"""Running Tayga: a supervised process per instance, restarted when it dies or stops translating.

Why supervise here rather than leave it to systemd: the gateway must restart Tayga on a config
change in a controlled way (check the new file with the real binary first, keep the old process if
the new one cannot start) and report up/restarts/mappings as metrics; the same code runs as a
DaemonSet where there is no systemd.

The TUN device is created persistent by the gateway (netlink), so addresses and routes on it survive
every Tayga restart; Tayga attaches to it and the link gains carrier, which is how readiness is seen.
Tayga writes dynamic.map on SIGTERM and every 45 s, so a controlled restart keeps every mapping and
a crash loses at most the newest ones (Tayga re-derives most from the same hash of the address).
A Tayga that still runs but no longer translates (stopped, hung) is found by a liveness probe through
its TUN (``liveness``) and restarted too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from ..procs import WaitTimeout, cmdline, kill_pid, wait_until
from .host import Host
from . import liveness, netlink
from .tayga_info import TaygaError, active_mappings, read_dynamic_map

log = logging.getLogger(__name__)

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
    last_restart: str = ""  # why it was last restarted (died, or stopped answering), kept after it came back


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
        probe_interval: float = 5.0,
        probe_failures: int = 3,
    ) -> None:
        self.host = host
        self.name = name
        self.workdir = Path(workdir)
        self.tun = tun
        self.binary = binary
        self.backoff = backoff or Backoff()
        self.ready_timeout = ready_timeout
        self.probe_interval = probe_interval
        self.probe_failures = probe_failures
        self.answering = True  # the last liveness probe's outcome (see ``liveness``)
        self._missed = 0
        self._probed_at = 0.0
        self.conf_path = self.workdir / "tayga.conf"
        self.log_path = self.workdir / "tayga.log"
        self.pid_path = self.workdir / "tayga.pid"
        self.conf_text: str | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.last_error = ""
        self.last_restart = ""
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
    def ipv4(self) -> IPv4Address | None:
        """Tayga's own IPv4 address (``ipv4-addr``): where the liveness probe is sent."""
        m = re.search(r"^ipv4-addr\s+(\S+)", self.conf_text or "", re.M)
        return IPv4Address(m[1]) if m else None

    def probe(self, tries: int = 1) -> bool | None:
        """Does this Tayga answer through its TUN? None when it cannot be asked (no address, no route)."""
        addr = self.ipv4
        return None if addr is None else liveness.answers(self.host, addr, min(1.0, self.probe_interval), tries, self.tun)

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

    def repair(self) -> str | None:
        """Restart a Tayga that runs but does not translate (stopped, hung, or its TUN device was replaced
        under it); returns why, or None when it is fine (a dead one is the monitor's to restart)."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return None
            if not netlink.has_carrier(self.host, self.tun):
                why = f"Tayga {self.name} is not attached to {self.tun} (the device was re-created)"
            elif self.probe(tries=2) is False:
                why = f"Tayga {self.name} does not answer through {self.tun} (stopped or hung)"
            else:
                return None
            log.warning("%s: restarting it", why)
            self._kill_now(proc)
            self.restarts += 1
            self.last_restart = why
            self._spawn_ready()
            return why

    def status(self) -> TaygaStatus:
        entries = read_dynamic_map(self.data_dir) if self.data_dir else []
        return TaygaStatus(
            name=self.name,
            up=self.pid is not None and self.answering and netlink.has_carrier(self.host, self.tun),
            pid=self.pid,
            restarts=self.restarts,
            dynamic_mappings=len(entries),
            active_mappings=active_mappings(entries),
            last_exit=self.last_exit,
            last_error=self.last_error,
            last_restart=self.last_restart,
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
        self._probed_at, self._missed, self.answering = self._started_at, 0, True

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

    def _kill_now(self, proc: subprocess.Popen) -> None:
        """SIGKILL: a stopped or hung Tayga never acts on SIGTERM (it would not write dynamic.map anyway)."""
        self._proc = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def _check_alive(self, proc: subprocess.Popen) -> None:
        """Every ``probe_interval`` seconds ask Tayga; after ``probe_failures`` unanswered probes in a row,
        kill it: the monitor then restarts it as it restarts one that died."""
        now = time.monotonic()
        if now - self._probed_at < self.probe_interval:
            return
        self._probed_at = now
        ok = self.probe()
        if ok is None:
            return  # nothing to ask through (a route is missing: drift reports it, an apply repairs it)
        self.answering = ok
        self._missed = 0 if ok else self._missed + 1
        if self._missed >= self.probe_failures:
            with self._lock:
                if proc is self._proc:
                    why = f"did not answer {self._missed} liveness probes through {self.tun} (stopped or hung)"
                    log.warning("Tayga %s %s: killing it", self.name, why)
                    self.last_restart = why
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)

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
                    self._check_alive(proc)
                    continue
                with self._lock:
                    if proc is not self._proc or self._closing.is_set():
                        continue  # replaced or stopped on purpose
                    self._proc = None
                    self.last_exit = rc
                    self.last_error = self._log_tail()
                    if self._missed < self.probe_failures:
                        self.last_restart = f"exited with {rc}: {self.last_error}"
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
