"""A throwaway OVN deployment in a directory of its own, for tests and benchmarks.

Why a class of our own rather than ``ovs-sandbox``: tests here run in parallel with other helpers' tests on
one machine, so every daemon gets its pidfile, control socket, log and database inside the state directory,
every name that the kernel sees is random, and ``stop()`` ends exactly the processes this sandbox started.

Layout of ``state_dir``::

    nb.db nb.sock nb.pid nb.ctl nb.log          OVN Northbound ovsdb-server
    sb.db sb.sock ...                           OVN Southbound ovsdb-server
    northd.pid northd.ctl northd.log            ovn-northd
    ovs.db ovs.sock ovs.pid ...                 chassis: Open_vSwitch ovsdb-server
    vswitchd.pid vswitchd.ctl br-int.mgmt ...   chassis: ovs-vswitchd (userspace "netdev" datapath)
    controller.pid controller.ctl ...           chassis: ovn-controller
    netns                                       name of the chassis network namespace

``OvnSandbox.attach(state_dir)`` is a handle on a sandbox that another process started there (the
lab's ``up`` starts it, ``test``/``sync``/``down`` attach). Pods are network namespaces whose eth0 is
one end of a veth created directly in the pod namespace, the other end directly in the chassis
namespace, plugged into br-int: no link of a sandbox ever exists in the root namespace.

The chassis' ``ovs-vswitchd`` runs inside a network namespace of its own: the userspace datapath creates
tap devices named after the bridge (``br-int``) and the datapath (``ovs-netdev``), which would collide
between two sandboxes in one namespace. Inside its own namespace each sandbox has its own, so any number
of sandboxes with a chassis run side by side (tested in tests/ovn/test_sandbox.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zonectl import netns as nslib
from zonectl import probe
from zonectl.procs import alive as _alive
from zonectl.procs import become_subreaper, kill_pid, reap, wait_until
from zonectl.procs import cmdline as _cmdline

NB_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
SB_SCHEMA = Path("/usr/share/ovn/ovn-sb.ovsschema")
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")

# Daemons in start order; stop() walks this backwards.
_DAEMONS = ("nb", "sb", "northd", "ovs", "vswitchd", "controller")
_BINARIES = {
    "nb": "ovsdb-server",
    "sb": "ovsdb-server",
    "ovs": "ovsdb-server",
    "northd": "ovn-northd",
    "vswitchd": "ovs-vswitchd",
    "controller": "ovn-controller",
}


class SandboxError(RuntimeError):
    """A daemon did not start or a command against the sandbox failed (message carries the log tail)."""


@dataclass
class Pod:
    """A "pod": a network namespace whose eth0 is a veth plugged into br-int as a logical switch port."""

    lport: str
    mac: str
    ip: str
    ns: nslib.Netns
    ovs_port: str

    def run(self, cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.ns.run(cmd, check=check, timeout=timeout)

    def ping(self, dst: str, *, count: int = 1, wait: float = 1.0) -> bool:
        """True when ``dst`` answers one of ``count`` ICMPv6 echo requests, each within ``wait`` seconds
        (``zonectl.probe``, so the tests do not need iputils-ping installed)."""
        return self._probe("ping", dst, count=count, wait=wait)

    def tcp_connect(self, dst: str, port: int, *, count: int = 1, wait: float = 1.0) -> bool:
        """True when a TCP handshake to [dst]:port completes (a listener must run there, see ``tcp_listen``)."""
        return self._probe("connect", dst, str(port), count=count, wait=wait)

    def tcp_listen(self, port: int) -> subprocess.Popen:
        """Start a TCP server on [::]:port inside the pod (it answers with the peer's address and closes);
        the netns close ends it."""
        proc = self.ns.popen(probe.command("serve", "--bind", "::", "--tcp", str(port)), stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        return proc

    def _probe(self, kind: str, *args: str, count: int, wait: float) -> bool:
        cmd = probe.command(kind, *args, "--timeout", str(count * wait), "--tries", str(count))
        return self.ns.run(cmd, check=False, timeout=count * wait + 15).returncode == 0


def _accepts(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _speaks_tls(port: int) -> bool:
    import socket
    import ssl as ssl_mod

    ctx = ssl_mod.SSLContext(ssl_mod.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl_mod.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with ctx.wrap_socket(raw) as tls:
                tls.do_handshake()
        return True
    except (OSError, ssl_mod.SSLError):
        return False


@dataclass
class OvnSandbox:
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

    # ----- paths and remotes -------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / name

    @property
    def nb_remote(self) -> str:
        return f"unix:{self.path('nb.sock')}"

    @property
    def sb_remote(self) -> str:
        return f"unix:{self.path('sb.sock')}"

    @property
    def nb_tcp_remote(self) -> str:
        if self.nb_tcp_port is None:
            raise SandboxError("sandbox started without tcp=True")
        return f"tcp:127.0.0.1:{self.nb_tcp_port}"

    @property
    def nb_ssl_remote(self) -> str:
        if self.nb_ssl_port is None:
            raise SandboxError("sandbox started without ssl=True")
        return f"ssl:127.0.0.1:{self.nb_ssl_port}"

    def ssl_files(self, who: str = "client") -> dict[str, str]:
        """Key, certificate and CA certificate (as NbSettings takes them) of the client or server."""
        return {"private_key": str(self.path(f"{who}.key")), "certificate": str(self.path(f"{who}.crt")),
                "ca_cert": str(self.path("ca.crt"))}

    def _make_pki(self) -> None:
        """A throwaway CA and server/client certificates (EC P-256: fast to generate)."""
        def openssl(*args: str) -> None:
            self.run(["openssl", *args])

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *ec, "-keyout", str(self.path("ca.key")), "-out", str(self.path("ca.crt")),
                "-subj", "/CN=zonectl-sandbox-ca", "-days", "2")
        for who in ("server", "client"):
            openssl("req", *ec, "-keyout", str(self.path(f"{who}.key")), "-out", str(self.path(f"{who}.csr")),
                    "-subj", f"/CN=zonectl-sandbox-{who}")
            openssl("x509", "-req", "-in", str(self.path(f"{who}.csr")), "-CA", str(self.path("ca.crt")),
                    "-CAkey", str(self.path("ca.key")), "-CAcreateserial", "-out", str(self.path(f"{who}.crt")),
                    "-days", "2")

    @property
    def br_int_target(self) -> str:
        """ovs-ofctl target for br-int (its management socket lives in our rundir, not /var/run)."""
        return f"unix:{self.path('br-int.mgmt')}"

    def env(self) -> dict[str, str]:
        """Environment pointing every OVS/OVN default directory at the state dir."""
        env = dict(os.environ)
        d = str(self.state_dir)
        for proj in ("OVS", "OVN"):
            for kind in ("RUNDIR", "LOGDIR", "DBDIR", "SYSCONFDIR", "PKIDIR"):
                env[f"{proj}_{kind}"] = d
        return env

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
        for daemon in reversed(_DAEMONS):
            pid = self._pid(daemon)
            if pid is not None and daemon in _BINARIES and _BINARIES[daemon] in _cmdline(pid):
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
        for daemon in reversed(_DAEMONS):
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

    def _pid(self, daemon: str) -> int | None:
        try:
            return int(self.path(f"{daemon}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _live_pid(self, daemon: str) -> int | None:
        """The daemon's pid if it still runs that daemon's binary for this state dir (pids are reused)."""
        pid = self._pid(daemon)
        if pid is not None and _BINARIES[daemon] in _cmdline(pid) and str(self.state_dir) in _cmdline(pid):
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

    def _spawn(self, daemon: str, argv: list[str], *, netns: nslib.Netns | None = None) -> None:
        if netns is not None:
            argv = ["ip", "netns", "exec", netns.name, *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env(), timeout=self.start_timeout)
        if proc.returncode != 0:
            raise SandboxError(
                f"{daemon} failed to start ({proc.returncode}): {proc.stderr.strip()}\n{self.log_tail(daemon)}"
            )
        wait_until(lambda: (p := self._pid(daemon)) is not None and _alive(p), self.start_timeout, f"{daemon} pidfile")

    def _start_db(self, db: str, schema: Path, *, tcp_port: int | None = None) -> None:
        """Start one ovsdb-server; with ``tcp`` on, listen on ``tcp_port`` or on a port the kernel picks."""
        dbfile = self.path(f"{db}.db")
        if not dbfile.exists():
            self.run(["ovsdb-tool", "create", str(dbfile), str(schema)])
        argv = ["ovsdb-server", *self._daemon_args(db), f"--remote=punix:{self.path(db + '.sock')}"]
        want_tcp = self.tcp and db in ("nb", "sb")
        if want_tcp:
            argv.append(f"--remote=ptcp:{tcp_port or 0}:127.0.0.1")
        want_ssl = self.ssl and db == "nb"
        if want_ssl:
            files = self.ssl_files("server")
            argv += [f"--private-key={files['private_key']}", f"--certificate={files['certificate']}",
                     f"--ca-cert={files['ca_cert']}", f"--remote=pssl:{self.nb_ssl_port or 0}:127.0.0.1"]
        if db == "ovs":
            argv.append("--remote=db:Open_vSwitch,Open_vSwitch,manager_options")
        argv.append(str(dbfile))
        log = self.path(f"{db}.log")
        log_start = log.stat().st_size if log.exists() else 0
        self._spawn(db, argv)
        wait_until(lambda: self.path(f"{db}.sock").exists(), self.start_timeout, f"{db} socket")
        known = [p for p in (tcp_port if want_tcp else None, self.nb_ssl_port if want_ssl else None) if p]
        if known:  # a restart on known ports: ovsdb-server logs only the ports the kernel chose
            wait_until(lambda: all(_accepts(p) for p in known), self.start_timeout, f"{db} listeners on {known}")
            return
        ports = self._listening_ports(db, log_start, int(want_tcp) + int(want_ssl)) if want_tcp or want_ssl else []
        if want_ssl:
            # The log does not say which listener is which: the one that completes a TLS handshake is pssl.
            self.nb_ssl_port = next(p for p in ports if _speaks_tls(p)) if len(ports) > 1 else ports[0]
            ports.remove(self.nb_ssl_port)
        if want_tcp:
            setattr(self, f"{db}_tcp_port", ports.pop(0))

    def _listening_ports(self, db: str, log_start: int, count: int) -> list[int]:
        """Ports ovsdb-server reports in its log ("...: listening on port N"), in --remote order, this start only."""
        pattern = re.compile(r"127\.0\.0\.1: listening on port (\d+)")
        found: list[int] = []

        def seen() -> bool:
            with open(self.path(f"{db}.log"), "rb") as fh:
                fh.seek(log_start)
                found[:] = [int(p) for p in pattern.findall(fh.read().decode(errors="replace"))]
            return len(found) >= count

        wait_until(seen, self.start_timeout, f"{db} tcp/ssl listeners")
        return found[:count]

    def _start_northd(self) -> None:
        self._spawn(
            "northd",
            ["ovn-northd", *self._daemon_args("northd"), f"--ovnnb-db={self.nb_remote}", f"--ovnsb-db={self.sb_remote}"],
        )
        # northd creates NB_Global/SB_Global rows lazily; make sure the NB has one before anyone writes.
        self.nbctl("init")

    def _start_chassis(self) -> None:
        self.chassis_name = f"{self.name}-ch"
        self.chassis_ns = nslib.Netns.create(prefix="zsch")
        self.path("netns").write_text(self.chassis_ns.name + "\n")
        self._start_db("ovs", OVS_SCHEMA)
        self.vsctl("--no-wait", "init")
        self.vsctl(
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            f"external_ids:system-id={self.chassis_name}",
            f"external_ids:hostname={self.chassis_name}",
            f"external_ids:ovn-remote={self.sb_remote}",
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:ovn-bridge=br-int",
            "external_ids:ovn-bridge-datapath-type=netdev",
        )
        self.vsctl(
            "--no-wait",
            "add-br",
            "br-int",
            "--",
            "set",
            "Bridge",
            "br-int",
            "datapath_type=netdev",
            "fail-mode=secure",
            "other_config:disable-in-band=true",
        )
        self._spawn(
            "vswitchd",
            [
                "ovs-vswitchd",
                f"unix:{self.path('ovs.sock')}",
                *self._daemon_args("vswitchd"),
                "--disable-system",
                "--disable-system-route",
            ],
            netns=self.chassis_ns,
        )
        wait_until(lambda: self.path("br-int.mgmt").exists(), self.start_timeout, "br-int management socket")
        self._spawn("controller", ["ovn-controller", f"unix:{self.path('ovs.sock')}", *self._daemon_args("controller")])
        wait_until(
            lambda: self.chassis_name in self.sbctl("--bare", "--columns=name", "list", "Chassis"),
            self.start_timeout,
            "chassis registration in SB",
        )

    # ----- restart (for fault-injection tests) -------------------------------------------------------

    def kill_nb(self) -> None:
        """SIGKILL the NB ovsdb-server (a crash, not a clean stop); ``start_nb()`` brings it back on the same socket."""
        pid = self._pid("nb")
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), 5, "nb to die")
            reap(pid)
        self.path("nb.pid").unlink(missing_ok=True)
        self.path("nb.sock").unlink(missing_ok=True)

    def start_nb(self) -> None:
        # Same tcp port as before, so clients with a tcp remote reconnect to the new server.
        self._start_db("nb", self.nb_schema or NB_SCHEMA, tcp_port=self.nb_tcp_port)

    # ----- commands ----------------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60.0) -> str:
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and proc.returncode != 0:
            raise SandboxError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def nbctl(self, *args: str, timeout: float = 60.0) -> str:
        return self.run(["ovn-nbctl", f"--db={self.nb_remote}", f"--timeout={int(timeout)}", *args], timeout=timeout + 5)

    def sbctl(self, *args: str, timeout: float = 60.0) -> str:
        return self.run(["ovn-sbctl", f"--db={self.sb_remote}", f"--timeout={int(timeout)}", *args], timeout=timeout + 5)

    def vsctl(self, *args: str, timeout: float = 60.0) -> str:
        return self.run(["ovs-vsctl", f"--db=unix:{self.path('ovs.sock')}", "--timeout=30", *args], timeout=timeout)

    def ofctl(self, *args: str, timeout: float = 60.0) -> str:
        """ovs-ofctl against br-int; pass the sub-command and its args, the bridge target is added."""
        cmd, *rest = args
        return self.run(["ovs-ofctl", "-O", "OpenFlow15", cmd, self.br_int_target, *rest], timeout=timeout)

    def appctl(self, daemon: str, *args: str) -> str:
        return self.run(["ovs-appctl", "-t", str(self.ctl_path(daemon)), *args])

    def trace(self, *args: str) -> str:
        """ovn-trace against this sandbox's SB (args: datapath and microflow, plus options such as --ct new)."""
        return self.run(["ovn-trace", f"--db={self.sb_remote}", *args])

    def log_tail(self, daemon: str, lines: int = 20) -> str:
        try:
            text = self.path(f"{daemon}.log").read_text(errors="replace").splitlines()
        except (FileNotFoundError, TypeError):
            return ""
        return "\n".join(text[-lines:])

    # ----- sync and measurement ----------------------------------------------------------------------

    def wait_sb(self, timeout: float = 60.0) -> None:
        """Block until northd has turned the current NB contents into SB logical flows."""
        self.nbctl("--wait=sb", "sync", timeout=timeout)

    def wait_hv(self, timeout: float = 60.0) -> None:
        """Block until every chassis' ovn-controller has installed the current NB contents as OpenFlow."""
        self.nbctl("--wait=hv", "sync", timeout=timeout)

    def flow_count(self) -> int:
        """OpenFlow flows on br-int (all tables), as ovs-ofctl counts them."""
        out = self.run(["ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", self.br_int_target])
        m = re.search(r"flow_count=(\d+)", out)
        if not m:
            raise SandboxError(f"unexpected dump-aggregate output: {out!r}")
        return int(m.group(1))

    def lflow_count(self) -> int:
        """SB Logical_Flow rows."""
        return len(self.sbctl("--bare", "--columns=_uuid", "list", "Logical_Flow").split())

    # ----- pods --------------------------------------------------------------------------------------

    def add_pod(self, switch: str, lport: str, mac: str, ip: str, *, prefix_len: int = 64, gateway: str | None = None) -> Pod:
        """Create the logical port (addresses + port security), a netns with eth0 (mac, ip) and plug it into br-int.

        Returns once ovn-controller has bound the port (``Port_Binding.chassis`` set) and flows are installed.
        """
        if self.chassis_ns is None:
            raise SandboxError("add_pod needs a sandbox started with chassis=True")
        self.nbctl(
            "--may-exist",
            "lsp-add",
            switch,
            lport,
            "--",
            "lsp-set-addresses",
            lport,
            f"{mac} {ip}",
            "--",
            "lsp-set-port-security",
            lport,
            f"{mac} {ip}",
        )
        pod_ns = nslib.Netns.create(prefix="zspod")
        try:
            host_end = self.plug(pod_ns, lport, mac, ip, prefix_len=prefix_len, gateway=gateway)
        except BaseException:
            pod_ns.close()
            raise
        pod = Pod(lport=lport, mac=mac, ip=ip, ns=pod_ns, ovs_port=host_end)
        self._pods.append(pod)
        self.wait_bound([lport])
        self.wait_hv()
        return pod

    def plug(self, ns: nslib.Netns, lport: str, mac: str, ip: str, *, prefix_len: int = 64,
             gateway: str | None = None, host_if: str | None = None) -> str:
        """Give ``ns`` an eth0 (``mac``, ``ip``, default route via ``gateway``) whose veth peer, in the
        chassis namespace, is a br-int port for logical port ``lport``; returns that port's name.

        Both ends are created in place (see ``netns.veth``). Does not wait for OVN: see ``wait_bound``.
        """
        if self.chassis_ns is None:
            raise SandboxError("plugging a pod needs a sandbox started with chassis=True")
        host_if = host_if or nslib.unique_name("zsv")
        # No duplicate address detection: OVN answers nothing, so addresses would stay tentative for a
        # while. Set before eth0 exists, which inherits "default".
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
        nslib.veth(host_if, "eth0", self.chassis_ns, ns, mac_b=mac)
        ns.run(["ip", "-6", "addr", "add", f"{ip}/{prefix_len}", "dev", "eth0", "nodad"])
        if gateway:
            ns.run(["ip", "-6", "route", "add", "default", "via", gateway, "dev", "eth0"])
        self.vsctl("add-port", "br-int", host_if, "--", "set", "Interface", host_if, f"external_ids:iface-id={lport}")
        return host_if

    def wait_bound(self, lports: Sequence[str], timeout: float | None = None) -> None:
        """Block until ovn-controller has bound every one of ``lports`` here (``Port_Binding.chassis`` set)."""
        def bound() -> bool:
            out = self.sbctl("--bare", "--columns=logical_port,chassis", "find", "Port_Binding", "chassis!=[]")
            return set(lports) <= set(out.split())

        wait_until(bound, timeout or self.start_timeout, f"port binding of {', '.join(lports)}")

    def remove_pod(self, pod: Pod) -> None:
        self.vsctl("--if-exists", "del-port", "br-int", pod.ovs_port)
        pod.ns.close()
        self._pods.remove(pod)
        self.nbctl("--if-exists", "lsp-del", pod.lport)
