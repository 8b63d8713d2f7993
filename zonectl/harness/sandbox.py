"""A throwaway OVN deployment in a directory of its own, for tests, benchmarks and the lab.

Why a class of our own rather than ``ovs-sandbox``: tests here run in parallel with other helpers' tests on
one machine, so every daemon gets its pidfile, control socket, log and database inside the state directory,
every name that the kernel sees is random, and ``stop()`` ends exactly the processes this sandbox started.
The daemons are split by kind: ``ovsdb`` (NB, SB and OVS database servers), ``chassis`` (ovs-vswitchd,
ovn-controller, pods); ovn-northd and the lifecycle are here.

Layout of ``state_dir``::

    nb.db nb.sock nb.pid nb.ctl nb.log          OVN Northbound ovsdb-server
    sb.db sb.sock ...                           OVN Southbound ovsdb-server
    northd.pid northd.ctl northd.log            ovn-northd
    ovs.db ovs.sock ovs.pid ...                 chassis: Open_vSwitch ovsdb-server
    vswitchd.pid vswitchd.ctl br-int.mgmt ...   chassis: ovs-vswitchd (userspace "netdev" datapath)
    controller.pid controller.ctl ...           chassis: ovn-controller
    netns                                       name of the chassis network namespace

``OvnSandbox.attach(state_dir)`` is a handle on a sandbox that another process started there (the
lab's ``up`` starts it, ``test``/``sync``/``down`` attach).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..procs import become_subreaper, cmdline, kill_pid
from . import netns as nslib
from .chassis import Chassis, Pod
from .daemons import BINARIES, DAEMONS, SandboxError
from .ovsdb import NB_SCHEMA, SB_SCHEMA

__all__ = ["NB_SCHEMA", "OvnSandbox", "Pod", "SandboxError"]


@dataclass
class OvnSandbox(Chassis):
    """NB + SB ovsdb-server and ovn-northd, optionally one chassis (OVS + ovn-controller), in ``state_dir``.

    ``tcp=True`` adds a ``ptcp:0:127.0.0.1`` listener to NB (and SB) and records the port the kernel chose,
    so there is no race for "free" ports. Use as a context manager, or call ``start()``/``stop()``.
    """

    state_dir: Path | None = None
    tcp: bool = False
    chassis: bool = False
    ssl: bool = False  # NB also listens on pssl:<port>:127.0.0.1 with a throwaway CA (see ssl_files)
    nb_schema: Path | None = None  # e.g. a schema with ACL.tier to exercise the OVN >= 23.06 path
    name: str = field(default_factory=lambda: "zs" + secrets.token_hex(3))
    start_timeout: float = 20.0

    nb_tcp_port: int | None = field(default=None, init=False)
    nb_ssl_port: int | None = field(default=None, init=False)
    sb_tcp_port: int | None = field(default=None, init=False)
    chassis_ns: nslib.Netns | None = field(default=None, init=False)
    chassis_name: str = field(default="", init=False)
    _own_dir: bool = field(default=False, init=False)
    _pods: list[Pod] = field(default_factory=list, init=False)

    # ----- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> "OvnSandbox":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def attach(cls, state_dir: Path) -> "OvnSandbox":
        """A handle on the sandbox another process started in ``state_dir`` and left running.

        It knows the unix remotes and the chassis (namespace and name), not the tcp/ssl ports; ``stop()``
        on it stops that sandbox. Raises SandboxError when no sandbox runs there.
        """
        sandbox = cls(state_dir=Path(state_dir))
        if sandbox._live_pid("nb") is None:
            raise SandboxError(f"{state_dir}: no running OVN sandbox here")
        ns_file = sandbox.path("netns")
        if ns_file.exists():
            sandbox.chassis = True
            sandbox.chassis_ns = nslib.Netns.adopt(ns_file.read_text().split()[0])
            sandbox.chassis_name = sandbox.vsctl("get", "Open_vSwitch", ".", "external_ids:system-id").strip().strip('"')
        return sandbox

    def start(self) -> "OvnSandbox":
        become_subreaper()
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="zonectl-ovn-"))
            self._own_dir = True
        else:
            self.state_dir = Path(self.state_dir)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.cleanup_stale()
        try:
            if self.ssl:
                self._make_pki()
            self._start_db("nb", self.nb_schema or NB_SCHEMA)
            self._start_db("sb", SB_SCHEMA)
            self._start_northd()
            if self.chassis:
                self._start_chassis()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End every daemon by its own pid (reverse start order), remove pods, the netns and our temp dir."""
        if self.state_dir is None:
            return
        for pod in reversed(self._pods):
            pod.ns.close()
        self._pods.clear()
        for daemon in reversed(DAEMONS):
            pid = self._pid(daemon)
            if pid is not None and BINARIES[daemon] in cmdline(pid):
                kill_pid(pid)
            with contextlib.suppress(FileNotFoundError):
                self.path(f"{daemon}.pid").unlink()
        if self.chassis_ns is not None:
            self.chassis_ns.close()
            self.chassis_ns = None
        with contextlib.suppress(FileNotFoundError):
            self.path("netns").unlink()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def cleanup_stale(self) -> None:
        """Clean a state dir left by a crashed run: kill its daemons (pid + binary checked), drop its netns."""
        assert self.state_dir is not None
        for daemon in reversed(DAEMONS):
            pid = self._live_pid(daemon)
            if pid is not None:
                kill_pid(pid)
        ns_file = self.path("netns")
        if ns_file.exists():
            for name in ns_file.read_text().split():
                if name in nslib.list_netns():
                    nslib.Netns.adopt(name).close()
        for child in self.state_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def _start_northd(self) -> None:
        self._spawn(
            "northd",
            ["ovn-northd", *self._daemon_args("northd"), f"--ovnnb-db={self.nb_remote}", f"--ovnsb-db={self.sb_remote}"],
        )
        # northd creates NB_Global/SB_Global rows lazily; make sure the NB has one before anyone writes.
        self.nbctl("init")

    # ----- northd's output ---------------------------------------------------------------------------

    def trace(self, *args: str) -> str:
        """ovn-trace against this sandbox's SB (args: datapath and microflow, plus options such as --ct new)."""
        return self.run(["ovn-trace", f"--db={self.sb_remote}", *args])

    def wait_sb(self, timeout: float = 60.0) -> None:
        """Block until northd has turned the current NB contents into SB logical flows."""
        self.nbctl("--wait=sb", "sync", timeout=timeout)

    def lflow_count(self) -> int:
        """SB Logical_Flow rows."""
        return len(self.sbctl("--bare", "--columns=_uuid", "list", "Logical_Flow").split())
