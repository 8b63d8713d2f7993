"""A directory of detached OVS/OVN daemons: each one's pidfile, control socket and log live in it.

Why a directory per sandbox rather than the system's /var/run: tests run in parallel with other people's
tests on one machine, so every path a daemon uses is inside the state directory and every daemon is
ended by the pid it recorded there (checked against its binary and directory: pids are reused). The
daemon-specific parts build on this: ``ovsdb`` (the database servers), ``chassis`` (ovs-vswitchd and
ovn-controller) and ``sandbox`` (ovn-northd and the whole lifecycle).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Sequence

from ..procs import alive, cmdline, wait_until
from .netns import Netns

# Daemons in start order (stop walks it backwards) and the binary each one runs.
DAEMONS = ("nb", "sb", "northd", "ovs", "vswitchd", "controller")
BINARIES = {
    "nb": "ovsdb-server",
    "sb": "ovsdb-server",
    "ovs": "ovsdb-server",
    "northd": "ovn-northd",
    "vswitchd": "ovs-vswitchd",
    "controller": "ovn-controller",
}


class SandboxError(RuntimeError):
    """A daemon did not start or a command against the sandbox failed (message carries the log tail)."""


class DaemonDir:
    """Paths, environment, pidfiles and commands of the daemons in ``state_dir`` (set by the subclass)."""

    state_dir: Path | None
    start_timeout: float

    def path(self, name: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / name

    def env(self) -> dict[str, str]:
        """Environment pointing every OVS/OVN default directory at the state dir."""
        env = dict(os.environ)
        d = str(self.state_dir)
        for proj in ("OVS", "OVN"):
            for kind in ("RUNDIR", "LOGDIR", "DBDIR", "SYSCONFDIR", "PKIDIR"):
                env[f"{proj}_{kind}"] = d
        return env

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60.0) -> str:
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and proc.returncode != 0:
            raise SandboxError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def _pid(self, daemon: str) -> int | None:
        try:
            return int(self.path(f"{daemon}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _live_pid(self, daemon: str) -> int | None:
        """The daemon's pid if it still runs that daemon's binary for this state dir (pids are reused)."""
        pid = self._pid(daemon)
        if pid is not None and BINARIES[daemon] in cmdline(pid) and str(self.state_dir) in cmdline(pid):
            return pid
        return None

    def _daemon_args(self, daemon: str) -> list[str]:
        args = [
            "--detach",
            "--no-chdir",
            f"--pidfile={self.path(daemon + '.pid')}",
            f"--log-file={self.path(daemon + '.log')}",
        ]
        if daemon != "controller":
            # ovn-controller 23.03 has no --unixctl; with OVN_RUNDIR set its socket is
            # <state_dir>/ovn-controller.<pid>.ctl (see ctl_path()).
            args.append(f"--unixctl={self.path(daemon + '.ctl')}")
        return args

    def ctl_path(self, daemon: str) -> Path:
        if daemon == "controller":
            return self.path(f"ovn-controller.{self._pid('controller')}.ctl")
        return self.path(daemon + ".ctl")

    def appctl(self, daemon: str, *args: str) -> str:
        return self.run(["ovs-appctl", "-t", str(self.ctl_path(daemon)), *args])

    def _spawn(self, daemon: str, argv: list[str], *, netns: Netns | None = None) -> None:
        if netns is not None:
            argv = ["ip", "netns", "exec", netns.name, *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env(), timeout=self.start_timeout)
        if proc.returncode != 0:
            raise SandboxError(
                f"{daemon} failed to start ({proc.returncode}): {proc.stderr.strip()}\n{self.log_tail(daemon)}"
            )
        wait_until(lambda: (p := self._pid(daemon)) is not None and alive(p), self.start_timeout, f"{daemon} pidfile")

    def log_tail(self, daemon: str, lines: int = 20) -> str:
        try:
            text = self.path(f"{daemon}.log").read_text(errors="replace").splitlines()
        except (FileNotFoundError, TypeError):
            return ""
        return "\n".join(text[-lines:])
