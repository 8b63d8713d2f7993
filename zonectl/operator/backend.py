"""The enforcement backend as the reconciler sees it: OVN (central NB), or publish-only (interconnect).

Why a protocol: the reconciler only needs "make the owned rows equal to these rules, leave those
policies' rows alone" and "remove exactly this policy's rows"; keeping that surface small keeps the
kopf layer independent of ovsdbapp (imported only when an OvnBackend is built).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Mapping, Protocol, Sequence

from ..core.errors import ValidationError
from ..core.layout import Layout
from ..core.rules import Rule
from ..ovn.config import DRIFT_MODES, DriftMode, OvnConfig, parse_ovn

if TYPE_CHECKING:
    from ..ovn.connection import NbClient
    from ..ovn.resync import Resyncer
    from ..ovn.sync import SyncReport, SyncSettings

PUBLISH = "publish"  # the mode of PublishedBackend's reports: nothing written here, the node agents sync


@dataclass(frozen=True)
class BackendReport:
    """What one sync did (``applied``) or would do (mode log): counts for status, summary for events."""

    mode: str
    applied: bool = False
    created: int = 0
    updated: int = 0
    deleted: int = 0
    rows: int = 0
    summary: str = ""

    @property
    def changes(self) -> int:
        return self.created + self.updated + self.deleted


class Backend(Protocol):
    @property
    def mode(self) -> str:
        """How this backend writes: ``off``, ``log`` or ``repair`` (OVN), or ``publish`` (interconnect mode)."""

    @property
    def drift(self) -> DriftMode:
        """``ovn.drift`` where the rows are written: by this backend (OVN) or by the node agents (publish)."""

    def owned_policies(self) -> set[str]:
        """Keys ("namespace/name") of every policy that has rows in the backend now."""

    def sync(self, rules: Sequence[Rule], keep: Collection[str]) -> BackendReport:
        """Make the owned rows equal to ``rules``; rows of policies in ``keep`` stay exactly as they are."""

    def remove(self, policy: str) -> BackendReport:
        """Delete exactly the rows of ``policy``; everything else stays."""

    def stop_drift(self) -> None:
        """Stop repairing drift at once (SIGTERM): from here on, the next leader's changes are not drift."""

    def close(self) -> None:
        """Release the backend's connection (the controller's shutdown)."""


def _report(r: "SyncReport") -> BackendReport:
    return BackendReport(
        mode=r.mode,
        applied=r.applied,
        created=r.count("create") + r.count("attach"),
        updated=r.count("update"),
        deleted=r.count("delete") + r.count("duplicate") + r.count("detach"),
        rows=r.desired,
        summary=r.lines()[0] if r.mode != "off" else "ovn sync is off",
    )


class OvnBackend:
    """OVN Northbound through zonectl.ovn: one transaction per sync, rows owned via external_ids.

    ``watch()`` adds the NB drift loop (``ovn.resync.Resyncer``, as the node agents run it): the last full sync is
    replayed within a second of any NB change, so a row deleted behind zonectl's back, or a node switch OVN-K
    deleted and re-created, gets its rows back without waiting for the policies' resync timer. One sync at a
    time (a lock shared with the loop), so the loop never replays an older set after a newer one."""

    def __init__(self, nb: "NbClient", settings: "SyncSettings", mode: DriftMode = "repair") -> None:
        if mode not in DRIFT_MODES:
            raise ValidationError(f"ovn.drift {mode!r} is not one of {', '.join(DRIFT_MODES)}", source="config")
        self.nb = nb
        self.settings = settings
        self.mode: DriftMode = mode
        self._lock = threading.Lock()
        self._last: tuple[tuple[Rule, ...], frozenset[str]] | None = None  # the last full sync that went through
        self.loop: "Resyncer | None" = None

    def watch(self, interval: float) -> "OvnBackend":
        """Start the drift loop (nothing is replayed before the first full sync); ``close()`` stops it."""
        from ..ovn.resync import Resyncer

        self.loop = Resyncer(self.nb, lambda: self._last[0] if self._last else None, self.settings, mode=self.mode,
                             interval=interval, keep=lambda: self._last[1] if self._last else frozenset(),
                             lock=self._lock).start()
        return self

    @property
    def drift(self) -> DriftMode:
        return self.mode

    @classmethod
    def connect(cls, ovn: OvnConfig | Mapping[str, Any], layout: Layout, remote: str | None = None) -> "OvnBackend":
        """Open NB from the config's ``ovn`` section (``nb`` remote, ``drift`` mode off/log/repair, ...)."""
        from ..ovn.connection import NbSettings, connect
        from ..ovn.sync import SyncSettings

        ovn = ovn if isinstance(ovn, OvnConfig) else parse_ovn(ovn)
        nb = connect(NbSettings.from_config(ovn, remote))
        try:
            settings = SyncSettings.from_config(ovn, layout, nb.has_tier)
            return cls(nb, settings, ovn.drift)
        except BaseException:
            nb.close()
            raise

    def owned_policies(self) -> set[str]:
        from ..ovn.state import owned_acls
        from ..render.ovn_match import POLICY_KEY

        with self.nb.locked():
            owned = owned_acls(self.nb.api.tables, self.settings.acl.controller)
        return {k for k in (r.external_ids.get(POLICY_KEY) for r in owned) if k}

    def sync(self, rules: Sequence[Rule], keep: Collection[str]) -> BackendReport:
        from ..ovn.sync import sync

        with self._lock:
            report = _report(sync(self.nb, list(rules), self.settings, mode=self.mode, keep_policies=keep))
            self._last = (tuple(rules), frozenset(keep))
            return report

    def remove(self, policy: str) -> BackendReport:
        from ..ovn.sync import remove_policy

        with self._lock:
            report = _report(remove_policy(self.nb, policy, self.settings, mode=self.mode))
            if self._last is not None:
                rules, keep = self._last
                self._last = (tuple(r for r in rules if r.policy != policy), keep - {policy})
            return report

    def stop_drift(self) -> None:
        if self.loop is not None:
            self.loop.stop(wait=False)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.stop()
        self.nb.close()


class PublishedBackend:
    """OVN interconnect mode (``ovn.mode: interconnect``): one NB per node, none for the controller to write.

    The controller still compiles every policy and keeps the union of their good rules; the reconciler
    publishes it (the ``ovn`` part of the GatewayInputs document) and every node's ``zonectl ovn run
    --inputs`` syncs its own NB from it. This backend only remembers what was handed over, so status and
    Events can say what changed; writing the document is the reconciler's publisher (a failed publish
    is reported as ``Programmed=False, reason PublishFailed`` and retried).
    """

    mode = PUBLISH

    def __init__(self, drift: DriftMode = "repair") -> None:
        if drift not in DRIFT_MODES:
            raise ValidationError(f"ovn.drift {drift!r} is not one of {', '.join(DRIFT_MODES)}", source="config")
        self.drift: DriftMode = drift  # what the node agents do with the rules (ovn.drift): the status says so
        self._rules: dict[str, frozenset[str]] = {}  # policy -> rule ids handed over

    def owned_policies(self) -> set[str]:
        return set(self._rules)

    def sync(self, rules: Sequence[Rule], keep: Collection[str]) -> BackendReport:
        wanted: dict[str, set[str]] = {}
        for r in rules:
            wanted.setdefault(r.policy, set()).add(r.id)
        for k in keep:
            if k in self._rules and k not in wanted:
                wanted[k] = set(self._rules[k])
        before = {i for ids in self._rules.values() for i in ids}
        after = {i for ids in wanted.values() for i in ids}
        self._rules = {k: frozenset(v) for k, v in wanted.items()}
        return self._report(len(after - before), len(before - after), len(after))

    def remove(self, policy: str) -> BackendReport:
        gone = self._rules.pop(policy, frozenset())
        return self._report(0, len(gone), sum(len(v) for v in self._rules.values()))

    @staticmethod
    def _report(created: int, deleted: int, rows: int) -> BackendReport:
        return BackendReport(mode=PUBLISH, applied=bool(created or deleted), created=created, deleted=deleted,
                             rows=rows, summary=f"{rows} rules for the node agents: {created} added, {deleted} removed")

    def stop_drift(self) -> None:
        pass  # the node agents repair drift

    def close(self) -> None:
        pass
