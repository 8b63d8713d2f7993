"""The ``ovn`` section of the zonectl config, parsed once for every user of it.

The CLI (``zonectl ovn``, ``compile --target ovn``), the controller, the node agent, ``doctor`` and
``operator check-config`` all read this one section; parsing it in one place means a typo is refused
the same way everywhere, with the field named. Pure: nothing here connects (``connection`` and ``sync``
turn it into NB settings and sync settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal, Mapping, cast

from zonectl.core.errors import Collector

DriftMode = Literal["off", "log", "repair"]
# What a sync does with differences: nothing, report them, or repair them (the one definition).
DRIFT_MODES: tuple[DriftMode, ...] = ("off", "log", "repair")
# ovn.mode: who writes NB. central: the controller syncs the one NB (ovn.nb); interconnect: OVN-K runs one NB
# per node, the controller only publishes the rules and every node's agent (zonectl ovn run --inputs) syncs.
TOPOLOGIES: tuple[str, ...] = ("central", "interconnect")
SNAT_MODES: tuple[str, ...] = ("report", "remove")
FIELDS = frozenset({"nb", "timeout", "ssl", "controller", "tier", "allowAction", "denyAction", "priorityMin",
                    "priorityMax", "switches", "nodePortPrefix", "snat", "drift", "resyncSeconds", "mode"})


@dataclass(frozen=True)
class OvnConfig(Mapping[str, Any]):
    """The validated ``ovn`` section, typed; still readable as the mapping it came from (``section``)."""

    section: Mapping[str, Any]
    mode: str = "central"  # TOPOLOGIES
    drift: DriftMode = "repair"  # what the controller, ``ovn run`` and the node agents do about drift
    snat: str = "report"  # SNAT_MODES: report hiding SNAT rows, or remove them (and keep them removed)
    resync_seconds: float = 60.0  # periodic resync of ``ovn run`` and the node agents

    def __getitem__(self, key: str) -> Any:
        return self.section[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.section)

    def __len__(self) -> int:
        return len(self.section)

    @property
    def interconnect(self) -> bool:
        return self.mode == "interconnect"

    @property
    def nb(self) -> str:
        """The NB remote of the config (``ovn.nb``; "" when unset)."""
        return str(self.section.get("nb") or "")


def parse_ovn(section: Mapping[str, Any] | None) -> OvnConfig:
    """Validate the section's keys and modes; every problem is reported at once, under ``config``."""
    body = dict(section or {})
    errs = Collector()
    unknown = set(body) - FIELDS
    if unknown:
        errs.add("ovn", f"unknown field(s) {', '.join(sorted(unknown))}")
    for key, allowed in (("drift", DRIFT_MODES), ("snat", SNAT_MODES), ("mode", TOPOLOGIES)):
        if key in body and body[key] not in allowed:
            errs.add(f"ovn.{key}", f"{body[key]!r} is not one of {', '.join(allowed)}")
    resync = body.get("resyncSeconds", 60)
    if isinstance(resync, bool) or not isinstance(resync, (int, float)) or resync <= 0:
        errs.add("ovn.resyncSeconds", f"{resync!r} must be a positive number of seconds")
        resync = 60
    names = body.get("switches")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        errs.add("ovn.switches", "must be a list of logical switch names")
    elif names == []:  # leaving the key out selects the node switches; an empty list never means "all"
        errs.add("ovn.switches", "is empty: list switch names, or leave it out for the node switches")
    errs.raise_if_any("config")
    return OvnConfig(body, mode=str(body.get("mode", "central")), drift=cast(DriftMode, body.get("drift", "repair")),
                     snat=str(body.get("snat", "report")), resync_seconds=float(resync))
