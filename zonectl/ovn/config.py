"""The ``ovn`` section of the zonectl config, parsed once for every user of it.

The CLI (``zonectl ovn``, ``compile --target ovn``), the controller, the node agent, ``doctor`` and
``operator check-config`` all read this one section through ``parse_ovn``; parsing it in one place,
typed and strict (``core.fields`` readers: no coercion, no NaN, no unknown key), means a typo is
refused the same way everywhere, with the field named, before anything connects. Pure: nothing here
connects (``connection`` and ``sync`` turn it into NB settings and sync settings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping, cast

from zonectl.core import fields
from zonectl.core.errors import Collector
from zonectl.render.checks import OVN_NAME, TOKEN
from zonectl.render.ovn_match import ALLOW_ACTIONS, DENY_ACTIONS

DriftMode = Literal["off", "log", "repair"]
# What a sync does with differences: nothing, report them, or repair them (the one definition).
DRIFT_MODES: tuple[DriftMode, ...] = ("off", "log", "repair")
# ovn.mode: who writes NB. central: the controller syncs the one NB (ovn.nb); interconnect: OVN-K runs one NB
# per node, the controller only publishes the rules and every node's agent (zonectl ovn run --inputs) syncs.
TOPOLOGIES: tuple[str, ...] = ("central", "interconnect")
SNAT_MODES: tuple[str, ...] = ("report", "remove")
# Only "drop" (render.ovn_match.DENY_ACTIONS): OVN-Kubernetes' services controller deletes every `reject` ACL
# it finds on a logical switch, so a zonectl Deny written as reject would vanish behind zonectl's back and the
# zone would be open until the next drift repair.
REJECT_WHY = ("is not allowed: OVN-Kubernetes deletes every `reject` ACL on logical switches (its services "
              "repair), which would silently remove zonectl's Deny rules; use drop (the default)")
FIELDS = frozenset({"nb", "timeout", "ssl", "controller", "tier", "allowAction", "denyAction", "priorityMin",
                    "priorityMax", "switches", "nodePortPrefix", "snat", "drift", "resyncSeconds", "mode",
                    "maxSwitchDrop", "allowEmpty"})
SSL_FIELDS = ("key", "cert", "ca")
MAX_SECONDS = 3600.0
PORT_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{0,63}")
_PATH = re.compile(r"[A-Za-z0-9._/~@+=-]{1,400}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
REMOTE_FORMS = "unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT (IPv6 in brackets: tcp:[fd00::1]:6641)"


@dataclass(frozen=True)
class OvnConfig:
    """The validated ``ovn`` section, typed. Defaults are the documented production values."""

    nb: str = ""  # the NB remote(s); "" when unset (the CLI's --nb, or interconnect mode: the agents')
    timeout: float = 10.0  # connect and per-transaction deadline, seconds
    ssl_key: str | None = None
    ssl_cert: str | None = None
    ssl_ca: str | None = None
    controller: str = "zonectl"  # k8s.ovn.org/owner-controller of zonectl's rows
    tier: int = 1  # ACL tier where the NB schema has tiers (OVN >= 23.06)
    allow_action: str = "allow-related"
    deny_action: str = "drop"
    priority_min: int = 1100
    priority_max: int = 1999
    switches: tuple[str, ...] | None = None  # explicit node switches; None: selected by their pod prefix
    node_port_prefix: str = "k8s-"  # the management port of switch <node> is <prefix><node>
    mode: str = "central"  # TOPOLOGIES
    drift: DriftMode = "repair"  # what the controller, ``ovn run`` and the node agents do about drift
    snat: str = "report"  # SNAT_MODES: report hiding SNAT rows, or remove them (and keep them removed)
    resync_seconds: float = 60.0  # periodic resync of ``ovn run`` and the node agents
    # A sync that would detach zonectl's rows from more than this fraction of the node switches carrying
    # them now (switches that still exist, no longer selected) is refused: 0 refuses any such drop.
    max_switch_drop: float = 0.0
    # Whether a sync may delete every row zonectl owns (an empty rule set): the most open state there is.
    allow_empty: bool = False

    @property
    def interconnect(self) -> bool:
        return self.mode == "interconnect"

    def as_dict(self) -> dict[str, Any]:
        """The effective settings in the config's own spelling (``operator check-config`` prints them)."""
        return {
            "nb": self.nb, "timeout": self.timeout,
            "ssl": {"key": self.ssl_key, "cert": self.ssl_cert, "ca": self.ssl_ca},
            "controller": self.controller, "tier": self.tier, "allowAction": self.allow_action,
            "denyAction": self.deny_action, "priorityMin": self.priority_min, "priorityMax": self.priority_max,
            "switches": list(self.switches) if self.switches is not None else None,
            "nodePortPrefix": self.node_port_prefix, "mode": self.mode, "drift": self.drift, "snat": self.snat,
            "resyncSeconds": self.resync_seconds, "maxSwitchDrop": self.max_switch_drop, "allowEmpty": self.allow_empty,
        }


def check_remote(value: Any, path: str, errs: Collector) -> str:
    """An NB remote as ovn-nbctl --db takes it (a comma-separated list for a clustered NB); "" if invalid."""
    text = fields.string(value, path, errs, max_len=2000, what="an NB remote")
    if text is None:
        return ""
    remotes = [r.strip() for r in text.split(",")]
    if not text.strip() or any(not r for r in remotes):
        errs.add(path, f"{fields.short(text)} has an empty remote: each is {REMOTE_FORMS}")
        return ""
    bad = [r for r in remotes if not _remote_ok(r)]
    if bad:
        errs.add(path, f"{fields.short(bad[0])} is not {REMOTE_FORMS}")
        return ""
    return ",".join(remotes)


def _remote_ok(remote: str) -> bool:
    kind, _, rest = remote.partition(":")
    if kind == "unix":
        return bool(_PATH.fullmatch(rest))
    if kind not in ("tcp", "ssl"):
        return False
    host, _, port = rest.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536 or len(port) > 5:
        return False
    if host.startswith("[") and host.endswith("]"):
        from ipaddress import IPv6Address

        try:
            IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return bool(_HOST.fullmatch(host))


def seconds(value: Any, path: str, errs: Collector, default: float, lo: float = 0.1, hi: float = MAX_SECONDS) -> float:
    """A finite number of seconds from ``lo`` to ``hi`` (NaN, infinities, booleans and strings refused)."""
    got = fields.number(value, path, errs, lo, hi)
    return default if got is None else got


def parse_ovn(section: Mapping[str, Any] | None) -> OvnConfig:
    """Validate the whole section; every problem is reported at once, under ``config``."""
    errs = Collector()
    body, _ = fields.section(section, "ovn", errs, FIELDS)
    d = OvnConfig()
    nb = check_remote(body["nb"], "ovn.nb", errs) if body.get("nb") is not None else ""
    timeout = seconds(body.get("timeout", d.timeout), "ovn.timeout", errs, d.timeout)
    ssl = fields.optional_mapping(body, "ssl", "ovn.ssl", errs, SSL_FIELDS)
    ssl_files: dict[str, str | None] = {}
    for key in SSL_FIELDS:
        value = ssl.get(key)
        ssl_files[key] = None if value is None else fields.string(value, f"ovn.ssl.{key}", errs, pattern=_PATH,
                                                                   max_len=400, what="a file path")
    controller = fields.string(body.get("controller", d.controller), "ovn.controller", errs, pattern=TOKEN,
                               max_len=63, what="1-63 of A-Z a-z 0-9 _ . -") or d.controller
    tier = fields.integer(body.get("tier", d.tier), "ovn.tier", errs, 0, 3)
    allow = fields.enum(body.get("allowAction", d.allow_action), {a: a for a in ALLOW_ACTIONS}, "ovn.allowAction", errs)
    deny = body.get("denyAction", d.deny_action)
    if deny == "reject":
        errs.add("ovn.denyAction", f"'reject' {REJECT_WHY}")
        deny = None
    else:
        deny = fields.enum(deny, {a: a for a in DENY_ACTIONS}, "ovn.denyAction", errs)
    pmin = fields.integer(body.get("priorityMin", d.priority_min), "ovn.priorityMin", errs, 0, 32767)
    pmax = fields.integer(body.get("priorityMax", d.priority_max), "ovn.priorityMax", errs, 0, 32767)
    if pmin is not None and pmax is not None and pmin >= pmax:
        errs.add("ovn.priorityMin", f"{pmin} must be below ovn.priorityMax ({pmax})")
    switches = None
    if "switches" in body:  # leaving the key out selects the node switches; an empty list never means "all"
        names = fields.items(body["switches"], "ovn.switches", errs, max_items=10000, what="a list of logical switch names",
                             empty="list switch names, or leave the key out to select the node switches")
        checked = [fields.string(n, f"ovn.switches[{i}]", errs, pattern=OVN_NAME, max_len=253,
                                 what="a logical switch name") for i, n in enumerate(names)]
        if names and None not in checked:
            if len(set(checked)) != len(checked):
                errs.add("ovn.switches", "names a switch twice")
            switches = tuple(cast(list[str], checked))
    prefix = fields.string(body.get("nodePortPrefix", d.node_port_prefix), "ovn.nodePortPrefix", errs,
                           pattern=PORT_PREFIX, max_len=63, what="a port name prefix (e.g. k8s-)")
    mode = fields.enum(body.get("mode", d.mode), {m: m for m in TOPOLOGIES}, "ovn.mode", errs)
    drift = fields.enum(body.get("drift", d.drift), {m: m for m in DRIFT_MODES}, "ovn.drift", errs)
    snat = fields.enum(body.get("snat", d.snat), {m: m for m in SNAT_MODES}, "ovn.snat", errs)
    resync = seconds(body.get("resyncSeconds", d.resync_seconds), "ovn.resyncSeconds", errs, d.resync_seconds,
                     lo=1, hi=86400)
    drop = fields.number(body.get("maxSwitchDrop", d.max_switch_drop), "ovn.maxSwitchDrop", errs, 0, 1)
    allow_empty = fields.boolean(body.get("allowEmpty", d.allow_empty), "ovn.allowEmpty", errs)
    errs.raise_if_any("config")
    return OvnConfig(
        nb=nb, timeout=timeout, ssl_key=ssl_files["key"], ssl_cert=ssl_files["cert"], ssl_ca=ssl_files["ca"],
        controller=controller, tier=cast(int, tier), allow_action=cast(str, allow), deny_action=cast(str, deny),
        priority_min=cast(int, pmin), priority_max=cast(int, pmax), switches=switches,
        node_port_prefix=cast(str, prefix), mode=cast(str, mode), drift=cast(DriftMode, drift), snat=cast(str, snat),
        resync_seconds=resync, max_switch_drop=cast(float, drop), allow_empty=cast(bool, allow_empty),
    )
