"""The sandbox's ovsdb-servers: OVN Northbound and Southbound (unix, optional tcp and ssl listeners), and
the chassis' Open_vSwitch database; with a throwaway PKI for the ssl listener.

Listeners on port 0 let the kernel choose, so there is no race for "free" ports; the chosen port is read
from the server's log. A restart (``kill_nb``/``start_nb``, for fault-injection tests) keeps the ports.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl as ssl_mod
from pathlib import Path

from ..procs import alive, reap, wait_until
from .daemons import DaemonDir, SandboxError

NB_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
SB_SCHEMA = Path("/usr/share/ovn/ovn-sb.ovsschema")
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _speaks_tls(port: int) -> bool:
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


class Databases(DaemonDir):
    """NB/SB (and the chassis' OVS) ovsdb-server processes of one sandbox."""

    tcp: bool
    ssl: bool
    nb_schema: Path | None
    nb_tcp_port: int | None
    nb_ssl_port: int | None
    sb_tcp_port: int | None

    # ----- remotes -----------------------------------------------------------------------------------

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

    # ----- servers -----------------------------------------------------------------------------------

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

    # ----- restart (for fault-injection tests) -------------------------------------------------------

    def kill_nb(self) -> None:
        """SIGKILL the NB ovsdb-server (a crash, not a clean stop); ``start_nb()`` brings it back on the same socket."""
        pid = self._pid("nb")
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not alive(pid), 5, "nb to die")
            reap(pid)
        self.path("nb.pid").unlink(missing_ok=True)
        self.path("nb.sock").unlink(missing_ok=True)

    def start_nb(self) -> None:
        # Same tcp port as before, so clients with a tcp remote reconnect to the new server.
        self._start_db("nb", self.nb_schema or NB_SCHEMA, tcp_port=self.nb_tcp_port)

    # ----- clients -----------------------------------------------------------------------------------

    def nbctl(self, *args: str, timeout: float = 60.0) -> str:
        return self.run(["ovn-nbctl", f"--db={self.nb_remote}", f"--timeout={int(timeout)}", *args], timeout=timeout + 5)

    def sbctl(self, *args: str, timeout: float = 60.0) -> str:
        return self.run(["ovn-sbctl", f"--db={self.sb_remote}", f"--timeout={int(timeout)}", *args], timeout=timeout + 5)
