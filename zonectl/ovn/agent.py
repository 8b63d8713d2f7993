"""The OVN node agent: keep one node's Northbound database equal to the rules the controller published.

Why an agent per node: OVN-Kubernetes in interconnect mode runs one NB per node (a unix socket on the
node), holding only that node's switch. zonectl's rows do not depend on pods, so every node's NB gets
the same rows; the controller compiles once and publishes the complete rule set (the ``ovn`` part of
the GatewayInputs document, see ``zonectl.core.published``), and ``zonectl ovn run --inputs FILE``
on every node (the ``zonectl-ovn-agent`` DaemonSet) syncs its own NB from that file.

Rules of the agent (``serve`` runs it):

* the document is re-read when the file changes (``zonectl.inputs.signature``: inode, mtime or size),
  checked every ``poll`` seconds;
* a document that cannot be read or parsed, that is not *complete* (no ``ovn`` part: the empty one the
  manifests ship, or one from a controller in central mode) or whose rules do not fit the priority band
  is refused: logged once, counted, and the rules in force stay; before the first good document
  nothing is written at all. A bad document never deletes a row;
* the syncing is the one NB drift loop (``resync.Resyncer``, one transaction, a set difference) with the
  document's ``keepPolicies``, exactly as the controller syncs a central NB: after a new document, when
  the NB cache changes (drift repair within ``min_gap`` seconds: a row deleted or edited behind
  zonectl's back comes back), and every ``interval`` seconds;
* a failed sync (NB down, a transaction refused) is logged and retried at the next trigger; the IDL
  reconnects by itself, and an NB that is not there yet at start is retried with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from zonectl.core.errors import ValidationError, ZonectlError
from zonectl.core.layout import Layout
from zonectl.core.rules import Rule
from zonectl.inputs import read_published, signature
from zonectl.metrics_server import Listen, MetricsServer, registry_of
from zonectl.render.ovn_match import assign_priorities

from .connection import NbClient, OvnError
from .resync import Resyncer
from .state import owned_acls
from .sync import SyncMode, SyncReport, SyncSettings

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentInputs:
    """A usable published document: the complete rule set, the policies to keep, its fingerprint."""

    rules: tuple[Rule, ...]
    keep: frozenset[str]
    digest: str


class IncompleteInputs(ValidationError):
    """A document without the complete rule set: the placeholder the manifests ship, until the controller
    (in interconnect mode) publishes; the agent waits for it rather than failing."""


class InputsFile:
    """The published document in a file; ``load()`` parses it with the gateway's loader (one loader)."""

    def __init__(self, path: str | Path, layout: Layout) -> None:
        self.path = Path(path)
        self.layout = layout

    def signature(self) -> tuple[int, int, int] | None:
        return signature(self.path)

    def load(self) -> AgentInputs:
        published = read_published(self.path, self.layout)
        if published.complete is None:
            raise IncompleteInputs(
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


class Agent:
    """The published document in force, the drift loop that enforces it, and what it reports."""

    def __init__(self, nb: NbClient, source: InputsFile, settings: SyncSettings, mode: SyncMode = "repair", *,
                 interval: float = 60.0, poll: float = 2.0, min_gap: float = 1.0) -> None:
        self.nb = nb
        self.source = source
        self.settings = settings
        self.mode = mode
        self.poll = poll  # inputs file check
        self.current: AgentInputs | None = None
        self.stats = AgentStats()
        self._signature: Any = 0  # 0: never looked (None means "file missing")
        self._new_inputs = False  # the next round follows a new document (logged as such, not as drift)
        self._beat = time.monotonic()
        self.loop = Resyncer(nb, self._rules, settings, mode=mode, interval=interval, min_gap=min_gap,
                             keep=self._keep, on_report=self._synced, on_error=self._failed)
        self.registry = registry_of(self._metric_families)

    @property
    def last_error(self) -> str | None:
        return self.loop.last_error

    @property
    def last_report(self) -> SyncReport | None:
        return self.loop.last_report

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
            self._refuse_emptying(inputs)
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

    def _refuse_emptying(self, inputs: AgentInputs) -> None:
        """A document with no rule and no kept policy deletes every row zonectl owns in this NB: the most open
        state there is. Only with ``ovn.allowEmpty: true`` (the same config the controller reads)."""
        if inputs.rules or inputs.keep or self.settings.limits.allow_empty:
            return
        with self.nb.locked():
            owned = len(owned_acls(self.nb.api.tables, self.settings.acl.controller))
        if owned:
            raise ValidationError(f"the document holds no rule and keeps no policy: applied, it would delete all {owned} "
                                  "rows zonectl owns in this NB and leave every zone unfiltered (if every policy was "
                                  "deleted on purpose: ovn.allowEmpty: true)", source=f"inputs {self.source.path}")

    def _rules(self) -> tuple[Rule, ...] | None:
        return self.current.rules if self.current is not None else None

    def _keep(self) -> frozenset[str]:
        return self.current.keep if self.current is not None else frozenset()

    # --- sync --------------------------------------------------------------------------------------
    def sync_once(self, *, new_inputs: bool = False) -> SyncReport | None:
        """One sync round with the inputs in force, in the caller's thread (none yet: nothing to do)."""
        self._new_inputs = new_inputs
        return self.loop.run_once()

    def _synced(self, report: SyncReport) -> None:
        """zonectl.ovn.sync logs every change; here one summary line: INFO for a new document, WARNING for
        changes with the same document (drift: someone edited or deleted zonectl's rows)."""
        new_inputs, self._new_inputs = self._new_inputs, False
        s = self.stats
        s.syncs_ok += 1
        s.in_sync = True
        s.last_sync_unix = time.time()
        s.desired_rows = report.desired
        if report.changes:
            s.rows_changed += len(report.changes)
            if new_inputs:
                LOG.info("inputs %s: %s", self.current.digest if self.current else "-", report.lines()[0])
            else:
                LOG.warning("drift repaired: %s", report.lines()[0])

    def _failed(self, _: str) -> None:
        self.stats.syncs_failed += 1
        self.stats.in_sync = False

    def run(self, stop: threading.Event) -> None:
        """Check the inputs file every ``poll`` seconds until ``stop`` is set; the drift loop syncs."""
        self.loop.start()
        try:
            while True:
                self._beat = time.monotonic()
                if self.check_inputs():
                    self._new_inputs = True
                    self.loop.trigger()
                if stop.wait(self.poll):
                    return
        finally:
            self.loop.stop()

    # --- health and metrics -------------------------------------------------------------------------
    def healthy(self) -> bool:
        """The inputs loop is turning and the drift loop runs (a sync is bounded by the NB timeout)."""
        turning = time.monotonic() - self._beat < max(30.0, 3 * self.poll) + self.nb.settings.timeout
        return turning and (self.mode == "off" or self.loop.running)

    def _metric_families(self) -> list[Metric]:
        s = self.stats
        syncs = CounterMetricFamily("zonectl_ovn_agent_syncs_total", "Sync rounds against this node's NB by result.",
                                    labels=["result"])
        syncs.add_metric(["ok"], s.syncs_ok)
        syncs.add_metric(["error"], s.syncs_failed)
        loads = CounterMetricFamily("zonectl_ovn_agent_inputs_loads_total", "Loads of the published document by result.",
                                    labels=["result"])
        loads.add_metric(["ok"], s.loads_ok)
        loads.add_metric(["refused"], s.loads_refused)
        info = GaugeMetricFamily("zonectl_ovn_agent_inputs_info", "The document in force (digest as the controller "
                                 "logs it).", labels=["digest"])
        if self.current is not None:
            info.add_metric([self.current.digest], 1)
        return [
            syncs, loads,
            CounterMetricFamily("zonectl_ovn_agent_row_changes_total",
                                "NB rows this agent created, updated or deleted (new inputs and drift repairs).",
                                value=s.rows_changed),
            GaugeMetricFamily("zonectl_ovn_agent_in_sync", "1 if the last sync round succeeded.", value=int(s.in_sync)),
            GaugeMetricFamily("zonectl_ovn_agent_inputs_ok",
                              "1 if the current file was accepted (0: refused, old rules kept).", value=int(s.inputs_ok)),
            GaugeMetricFamily("zonectl_ovn_agent_rules", "Compiled rules in force (from the last accepted document).",
                              value=len(self.current.rules) if self.current else 0),
            GaugeMetricFamily("zonectl_ovn_agent_desired_rows", "ACL rows the last sync wanted (rules and exemptions).",
                              value=s.desired_rows),
            GaugeMetricFamily("zonectl_ovn_agent_last_sync_success_timestamp_seconds",
                              "When the last sync round succeeded.", value=s.last_sync_unix),
            info,
        ]

    def metrics_text(self) -> str:
        return generate_latest(self.registry).decode()


def open_retrying(open_nb: Callable[[], Any], stop: threading.Event) -> Any:
    """``open_nb()`` until it succeeds or ``stop`` is set (then None): a node agent starts before (or while)
    OVN-K restarts the node's NB. Config mistakes (a ValidationError) fail at once; only OVN errors are retried."""
    delay = 1.0
    while True:
        try:
            return open_nb()
        except OvnError as exc:
            LOG.warning("NB not reachable yet, retrying in %.0fs: %s", delay, exc)
        if stop.wait(delay):
            return None
        delay = min(delay * 2, 30.0)


def serve(agent: Agent, stop: threading.Event, *, metrics_listen: Listen | None = None,
          snat_guard: Any = None) -> int:
    """Run ``agent`` until ``stop`` is set, with its metrics server and an optional (started) SNAT guard;
    closes the agent's NB connection at the end."""
    server = None
    try:
        if metrics_listen:
            server = MetricsServer(metrics_listen, agent.registry, {"/healthz": agent.healthy}).start()
            LOG.info("metrics on %s", metrics_listen)
        agent.run(stop)
    finally:
        if server is not None:
            server.close()
        if snat_guard is not None:
            snat_guard.stop()
        agent.nb.close()
    return 0
