"""Connecting to the OVN Northbound database the way OVN-Kubernetes does: unix, tcp or ssl remotes.

Why a wrapper around ovsdbapp: its schema fetch blocks without a deadline and its errors say little
about which remote failed. Here every step has a timeout, SSL files are checked before use, only the
tables and columns zonectl reads are monitored (an OVN-K NB holds a row per pod; we never load the
columns we do not need), and the ovs IDL's own reconnect (with backoff) keeps the cache fresh after
an ``ovsdb-server`` restart. Nothing connects at import time.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from zonectl.core.errors import Collector, ZonectlError

if TYPE_CHECKING:
    from .config import OvnConfig

LOG = logging.getLogger(__name__)

SCHEMA = "OVN_Northbound"
# table -> columns zonectl monitors (None = all columns of the table)
MONITORED: dict[str, list[str] | None] = {
    "ACL": None,
    "Logical_Switch": ["name", "acls", "ports", "other_config", "external_ids"],
    "Logical_Switch_Port": ["name", "type"],
    "Logical_Router_Port": ["name", "networks"],
    "Logical_Router": ["name", "nat", "options", "external_ids"],
    "NAT": None,
    "NB_Global": ["nb_cfg", "sb_cfg", "hv_cfg"],
}


class OvnError(ZonectlError):
    """Talking to OVN failed (connection, timeout, or a transaction OVSDB refused); nothing was half-applied."""


def brief(exc: BaseException, limit: int = 300) -> str:
    """A short reason from an ovsdbapp exception.

    ovsdbapp's messages embed the whole command list of the transaction (tens of KB for a large
    sync); status conditions, Events and logs want the cause, which it puts after "cause:".
    """
    try:
        text = str(exc) or type(exc).__name__
    except Exception:  # ovsdbapp's TimeoutException() raised without arguments has no message to show
        text = f"{type(exc).__name__} (no answer in time)"
    if "cause:" in text:
        text = f"{type(exc).__name__}: {text.rsplit('cause:', 1)[1].strip()}"
    elif len(text) > limit and text.startswith("Commands ["):
        text = f"{type(exc).__name__}: {text[text.rfind(']') + 1:].strip()}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class NbSettings:
    """Where and how to reach the NB database.

    ``remote`` is what ovn-nbctl --db takes: ``unix:/path``, ``tcp:host:port``, ``ssl:host:port``, or a
    comma-separated list of them (a clustered NB). ``timeout`` bounds the connect and each transaction.
    """

    remote: str
    timeout: float = 10.0
    private_key: str | None = None
    certificate: str | None = None
    ca_cert: str | None = None
    probe_interval_ms: int | None = None
    leader_only: bool = True

    @property
    def remotes(self) -> list[str]:
        return [r.strip() for r in self.remote.split(",") if r.strip()]

    def validate(self) -> None:
        """The remote's syntax (``config.check_remote``, as for ``ovn.nb``), the timeout, the SSL files."""
        from .config import MAX_SECONDS, check_remote

        errs = Collector()
        remote = check_remote(self.remote, "--nb", errs)
        uses_ssl = any(r.startswith("ssl:") for r in remote.split(","))
        files = {"private key": self.private_key, "certificate": self.certificate, "CA certificate": self.ca_cert}
        if uses_ssl:
            for what, path in files.items():
                if not path:
                    errs.add("", f"an ssl: remote needs a {what} file")
                elif not os.access(path, os.R_OK):
                    errs.add("", f"{what} {path} is not readable")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) \
                or not 0 < self.timeout <= MAX_SECONDS:  # NaN fails the range test too
            errs.add("timeout", f"{self.timeout!r} must be a number of seconds from 0.1 to {MAX_SECONDS:g}")
        errs.raise_if_any("ovn connection")

    @classmethod
    def from_config(cls, ovn: "OvnConfig", remote: str | None = None) -> "NbSettings":
        """From the parsed ``ovn`` section (``nb``, ``timeout``, ``ssl: {key, cert, ca}``); ``remote`` wins."""
        return cls(remote=remote or ovn.nb, timeout=ovn.timeout, private_key=ovn.ssl_key,
                   certificate=ovn.ssl_cert, ca_cert=ovn.ssl_ca)

    @classmethod
    def from_section(cls, section: Mapping[str, Any], remote: str | None = None) -> "NbSettings":
        """From the config's raw ``ovn`` section, parsed (and refused) as everywhere else."""
        from .config import parse_ovn

        return cls.from_config(parse_ovn(section), remote)


def _configure_ssl(settings: NbSettings) -> None:
    from ovs import stream

    if not any(r.startswith("ssl:") for r in settings.remotes):
        return
    stream.Stream.ssl_set_private_key_file(settings.private_key)
    stream.Stream.ssl_set_certificate_file(settings.certificate)
    stream.Stream.ssl_set_ca_cert_file(settings.ca_cert)


def fetch_schema(remote: str, timeout: float, schema: str = SCHEMA) -> dict:
    """The schema JSON the server serves (its columns decide e.g. whether ACL has ``tier``), with a deadline."""
    import ovs.poller
    import ovs.timeval
    from ovs import jsonrpc, stream

    failures: list[str] = []
    for r in [x.strip() for x in remote.split(",") if x.strip()]:
        deadline = ovs.timeval.msec() + int(timeout * 1000)
        err, strm = stream.Stream.open_block(stream.Stream.open(r), int(timeout * 1000))
        if err:
            failures.append(f"{r}: {os.strerror(err)}")
            continue
        rpc = jsonrpc.Connection(strm)
        try:
            req = jsonrpc.Message.create_request("get_schema", [schema])
            err = rpc.send(req)
            reply = None
            while not err:
                err, msg = rpc.recv()
                if err == errno.EAGAIN:
                    if ovs.timeval.msec() >= deadline:
                        err = errno.ETIMEDOUT
                        break
                    rpc.run()
                    poller = ovs.poller.Poller()
                    rpc.wait(poller)
                    rpc.recv_wait(poller)
                    poller.timer_wait_until(deadline)
                    poller.block()
                    err = 0
                    continue
                if msg is not None and msg.id == req.id:
                    reply = msg
                    break
            if err:
                failures.append(f"{r}: {os.strerror(err)}")
                continue
            assert reply is not None
            if reply.error:
                failures.append(f"{r}: {reply.error}")
                continue
            return reply.result
        finally:
            rpc.close()
    raise OvnError(f"cannot read the {schema} schema: " + "; ".join(failures))


class NbClient:
    """An open, monitored NB connection. ``api`` is ovsdbapp's OVN NB API; close() stops its thread."""

    def __init__(self, settings: NbSettings) -> None:
        settings.validate()
        self.settings = settings
        _configure_ssl(settings)
        self._open(fetch_schema(settings.remote, settings.timeout))
        self._session_seqno = self.idl._session.get_seqno()

    def _open(self, schema: dict) -> None:
        """Monitor what zonectl reads, as far as this server's schema has it, and wait for the first cache."""
        from ovsdbapp.backend.ovs_idl import connection, idlutils
        from ovsdbapp.schema.ovn_northbound import impl_idl

        helper = idlutils.create_schema_helper(schema)
        for table, columns in MONITORED.items():
            if table not in schema["tables"]:
                continue
            if columns is None:
                helper.register_table(table)
            else:
                helper.register_columns(table, [c for c in columns if c in schema["tables"][table]["columns"]])
        self.has_tier = "tier" in schema["tables"]["ACL"]["columns"]
        self.schema_version = str(schema.get("version", ""))
        kwargs: dict[str, Any] = {"leader_only": self.settings.leader_only}
        if self.settings.probe_interval_ms is not None:
            kwargs["probe_interval"] = self.settings.probe_interval_ms
        idl = connection.OvsdbIdl(self.settings.remote, helper, **kwargs)
        self._conn = connection.Connection(idl, timeout=self.settings.timeout)
        # ovsdbapp keeps one connection per Backend *class*; a subclass per client lets one process
        # hold several NB connections (two sandboxes in a test, the benchmark's two databases).
        api_cls = type("ZonectlNbApi", (impl_idl.OvnNbApiIdlImpl,), {"_ovsdb_connection": None})
        try:
            self.api = api_cls(self._conn)
        except Exception as exc:  # ovsdbapp raises its own TimeoutException, among others
            self._conn.stop(timeout=1)
            raise OvnError(f"cannot connect to {self.settings.remote}: {brief(exc)}") from exc

    def refresh_schema(self) -> bool:
        """After the IDL reconnected (a restarted, perhaps upgraded ovsdb-server), read the schema again.

        Why: an OVN upgrade adds columns (23.06 added ACL ``tier``), and the IDL only monitors the columns of
        the schema it was built from. When ``has_tier`` changes, the connection is rebuilt for the new schema.
        Cheap when nothing reconnected (one attribute read). True if ``has_tier`` changed."""
        seqno = self.idl._session.get_seqno()  # moves on every connect and disconnect
        if seqno == self._session_seqno or not self.connected:
            return False
        schema = fetch_schema(self.settings.remote, self.settings.timeout)
        self._session_seqno = seqno
        self.schema_version = str(schema.get("version", ""))
        if ("tier" in schema["tables"]["ACL"]["columns"]) == self.has_tier:
            return False
        LOG.warning("NB schema %s %s ACL tiers: reconnecting to monitor it", self.schema_version,
                    "has" if not self.has_tier else "no longer has")
        self._conn.stop(timeout=self.settings.timeout)
        self._open(schema)
        self._session_seqno = self.idl._session.get_seqno()
        return True

    @property
    def idl(self):
        return self.api.idl

    @property
    def lock(self):
        """Held while the connection thread updates the cache; hold it to read a consistent snapshot."""
        return self._conn.lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``lock`` to read a consistent snapshot, waiting at most ``timeout``: the connection thread holds it
        while a transaction waits for its answer, which a hung server never sends."""
        if not self._conn.lock.acquire(timeout=self.settings.timeout):
            raise OvnError(f"NB {self.settings.remote}: the connection is busy with a transaction that got no answer "
                           f"for {self.settings.timeout:g}s (is the server hung?)")
        try:
            yield
        finally:
            self._conn.lock.release()

    @property
    def connected(self) -> bool:
        return bool(self.idl._session.is_connected())

    def close(self, timeout: float | None = None) -> None:
        """Stop the connection thread, waiting at most ``timeout`` (default: the NB timeout) for it."""
        self._conn.stop(timeout=self.settings.timeout if timeout is None else timeout)

    def __enter__(self) -> "NbClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(remote: str | NbSettings, *, timeout: float = 10.0, **kwargs: Any) -> NbClient:
    """Open the NB database at ``remote`` (see NbSettings) and wait for the first full cache."""
    settings = remote if isinstance(remote, NbSettings) else NbSettings(remote, timeout=timeout, **kwargs)
    return NbClient(settings)
