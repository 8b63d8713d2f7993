"""The OVN node agent: keep one node's Northbound database equal to the rules the controller published.

Why an agent per node: OVN-Kubernetes in interconnect mode runs one NB per node (a unix socket on the
node), holding only that node's switch. zonectl's rows do not depend on pods, so every node's NB gets
the same rows; the controller compiles once and publishes the complete rule set (the ``ovn`` part of
the GatewayInputs document, see ``zonectl.operator.gatewayfeed``), and ``zonectl ovn run --inputs FILE``
on every node (the ``zonectl-ovn-agent`` DaemonSet) syncs its own NB from that file.

Rules of the loop (``Agent.run``):

* the document is re-read when the file changes (inode, mtime or size: a ConfigMap volume update
  swaps a symlink, an editor or ``FilePublisher`` renames a new file into place), checked every
  ``poll`` seconds;
* a document that cannot be read or parsed, that is not *complete* (no ``ovn`` part: the empty one the
  manifests ship, or one from a controller in central mode) or whose rules do not fit the priority band
  is refused: logged once, counted, and the rules in force stay; before the first good document
  nothing is written at all. A bad document never deletes a row;
* sync (``zonectl.ovn.sync.sync``, one transaction, a set difference) with the document's
  ``keepPolicies`` as ``keep_policies``, exactly as the controller syncs a central NB: after a new
  document, when the NB cache changes (drift repair within ``min_gap`` seconds: a row deleted or edited
  behind zonectl's back comes back), and every ``interval`` seconds;
* a failed sync (NB down, a transaction refused) is logged and retried at the next trigger; the IDL
  reconnects by itself.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zonectl.core.errors import ValidationError, ZonectlError
from zonectl.core.layout import Layout
from zonectl.core.rules import Rule
from zonectl.render.ovn_match import assign_priorities

from .connection import NbClient
from .sync import SyncMode, SyncReport, SyncSettings, sync

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentInputs:
    """A usable published document: the complete rule set, the policies to keep, its fingerprint."""

    rules: tuple[Rule, ...]
    keep: frozenset[str]
    digest: str


class InputsFile:
    """The published document in a file; ``load()`` parses it with the gateway's loader (one loader)."""

    def __init__(self, path: str | Path, layout: Layout) -> None:
        self.path = Path(path)
        self.layout = layout

    def signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()  # follows the ConfigMap volume's ..data symlink
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> AgentInputs:
        from zonectl.operator.gatewayfeed import read_document

        published = read_document(self.path, self.layout)
        if published.complete is None:
            raise ValidationError(
                "the document has no `ovn` part (the complete rule set): it is the empty one the manifests ship, "
                "or the controller does not run with ovn.mode: interconnect", source=f"inputs {self.path}")
        return AgentInputs(published.complete.rules, frozenset(published.keep), published.digest)


@dataclass
class AgentStats:
    loads_ok: int = 0
    loads_refused: int = 0
    syncs_ok: int = 0
    syncs_failed: int = 0
    rows_changed: int = 0  # rows created, updated or deleted by this agent (new inputs and drift repairs)
    last_sync_unix: float = 0.0
    desired_rows: int = 0
    inputs_ok: bool = False  # the file as it is now was accepted
    in_sync: bool = False  # the last sync round succeeded


@dataclass
class Agent:
    nb: NbClient
    source: InputsFile
    settings: SyncSettings
    mode: SyncMode = "repair"
    interval: float = 60.0  # periodic resync
    poll: float = 2.0  # inputs file check
    min_gap: float = 1.0  # at most one NB-change-triggered sync per min_gap seconds

    current: AgentInputs | None = field(default=None, init=False)
    last_error: str | None = field(default=None, init=False)
    last_report: SyncReport | None = field(default=None, init=False)
    stats: AgentStats = field(default_factory=AgentStats, init=False)
    _signature: Any = field(default=0, init=False)  # 0: never looked (None means "file missing")
    _beat: float = field(default_factory=time.monotonic, init=False)

    # --- inputs ------------------------------------------------------------------------------------
    def check_inputs(self) -> bool:
        """Re-read the document if the file changed; True when a new document was accepted."""
        sig = self.source.signature()
        if sig == self._signature:
            return False
        self._signature = sig
        try:
            inputs = self.source.load()
            # Fail before it is in force if the rules cannot be placed (the priority band is too small).
            assign_priorities(list(inputs.rules), self.settings.acl)
        except (ZonectlError, OSError) as exc:
            self.stats.loads_refused += 1
            self.stats.inputs_ok = False
            kept = (f"keeping the {len(self.current.rules)} rules of inputs {self.current.digest}" if self.current
                    else "nothing is synced until a usable document arrives")
            LOG.error("inputs refused, %s: %s", kept, exc)
            return False
        self.stats.loads_ok += 1
        self.stats.inputs_ok = True
        if self.current is not None and self.current.rules == inputs.rules and self.current.keep == inputs.keep:
            self.current = inputs
            return False  # e.g. the same document rewritten, or only the zones' egress changed
        LOG.info("inputs %s accepted: %d rules, %d kept policies", inputs.digest, len(inputs.rules), len(inputs.keep))
        self.current = inputs
        return True

    # --- sync --------------------------------------------------------------------------------------
    def sync_once(self, *, new_inputs: bool = False) -> SyncReport | None:
        """One sync round with the inputs in force (none yet: nothing to do).

        zonectl.ovn.sync logs every change; here one summary line: INFO for a new document, WARNING for
        changes with the same document (drift: someone edited or deleted zonectl's rows)."""
        if self.current is None:
            return None
        try:
            report = sync(self.nb, self.current.rules, self.settings, mode=self.mode,
                          keep_policies=self.current.keep)
        except ZonectlError as exc:
            self.stats.syncs_failed += 1
            self.stats.in_sync = False
            self.last_error = str(exc)
            LOG.error("ovn sync failed, NB left as it was: %s", exc)
            return None
        self.stats.syncs_ok += 1
        self.stats.in_sync = True
        self.stats.last_sync_unix = time.time()
        self.stats.desired_rows = report.desired
        self.last_error = None
        self.last_report = report
        if report.changes:
            self.stats.rows_changed += len(report.changes)
            if new_inputs:
                LOG.info("inputs %s: %s", self.current.digest, report.lines()[0])
            else:
                LOG.warning("drift repaired: %s", report.lines()[0])
        return report

    def run(self, stop: threading.Event) -> None:
        """The loop, in the caller's thread, until ``stop`` is set."""
        next_poll = 0.0
        last_sync = -math.inf
        seqno: int | None = None
        while not stop.is_set():
            now = self._beat = time.monotonic()
            changed = False
            if now >= next_poll:
                changed = self.check_inputs()
                next_poll = now + self.poll
            if self.current is not None and self.mode != "off":
                nb_changed = seqno is not None and self.nb.idl.change_seqno != seqno
                if changed or now - last_sync >= self.interval or (nb_changed and now - last_sync >= self.min_gap):
                    self.sync_once(new_inputs=changed)
                    # Our own write bumps it too; the round after that finds nothing to do (a cache read).
                    seqno = self.nb.idl.change_seqno
                    last_sync = time.monotonic()
            stop.wait(0.1)

    # --- health and metrics -------------------------------------------------------------------------
    def healthy(self) -> bool:
        """The loop is turning (a sync is bounded by the NB timeout)."""
        return time.monotonic() - self._beat < max(30.0, 3 * self.poll) + self.nb.settings.timeout

    def metrics_text(self) -> str:
        s = self.stats
        digest = self.current.digest if self.current else ""
        lines = []
        for name, kind, help_, samples in (
            ("zonectl_ovn_agent_syncs_total", "counter", "Sync rounds against this node's NB by result.",
             [('{result="ok"}', s.syncs_ok), ('{result="error"}', s.syncs_failed)]),
            ("zonectl_ovn_agent_inputs_loads_total", "counter", "Loads of the published document by result.",
             [('{result="ok"}', s.loads_ok), ('{result="refused"}', s.loads_refused)]),
            ("zonectl_ovn_agent_row_changes_total", "counter",
             "NB rows this agent created, updated or deleted (new inputs and drift repairs).", [("", s.rows_changed)]),
            ("zonectl_ovn_agent_in_sync", "gauge", "1 if the last sync round succeeded.", [("", int(s.in_sync))]),
            ("zonectl_ovn_agent_inputs_ok", "gauge", "1 if the current file was accepted (0: refused, old rules kept).",
             [("", int(s.inputs_ok))]),
            ("zonectl_ovn_agent_rules", "gauge", "Compiled rules in force (from the last accepted document).",
             [("", len(self.current.rules) if self.current else 0)]),
            ("zonectl_ovn_agent_desired_rows", "gauge", "ACL rows the last sync wanted (rules and exemptions).",
             [("", s.desired_rows)]),
            ("zonectl_ovn_agent_last_sync_success_timestamp_seconds", "gauge", "When the last sync round succeeded.",
             [("", f"{s.last_sync_unix:.3f}")]),
            ("zonectl_ovn_agent_inputs_info", "gauge", "The document in force (digest as the controller logs it).",
             [(f'{{digest="{digest}"}}', 1)] if digest else []),
        ):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            lines += [f"{name}{labels} {value}" for labels, value in samples]
        return "\n".join(lines) + "\n"
