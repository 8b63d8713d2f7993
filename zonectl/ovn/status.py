"""What zonectl has in OVN right now: owned rows per policy, drift against the rules, hiding SNAT rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from zonectl.core.layout import Layout
from zonectl.core.rules import Rule
from zonectl.core.zones import ZoneRegistry
from zonectl.render.ovn_match import POLICY_KEY, ROLE_KEY

from .connection import NbClient
from .snat import SnatFinding, find_hiding_nats
from .guards import SelectionError
from .state import node_switches, owned_acls, switch_reasons
from .sync import SyncReport, SyncSettings, sync


@dataclass
class OvnStatus:
    remote: str
    schema_version: str
    has_tier: bool
    switches: list[str]
    rows_by_policy: dict[str, int]
    exemptions: int
    drift: SyncReport | None = None  # None when no rules were given to compare with
    snat: list[SnatFinding] = field(default_factory=list)
    not_selected: dict[str, str] = field(default_factory=dict)  # switch -> why zonectl does not write to it
    refused: str | None = None  # a sync to the rules would be refused (guards): why

    def lines(self) -> list[str]:
        out = [
            f"NB {self.remote} (schema {self.schema_version}, ACL tiers: {'yes' if self.has_tier else 'no'})",
            f"node switches: {len(self.switches)}" + (f" ({', '.join(self.switches[:8])}"
                                                     f"{', ...' if len(self.switches) > 8 else ''})" if self.switches else ""),
            *(f"  not selected: {n} ({why})" for n, why in list(self.not_selected.items())[:20] if not self.switches),
            f"owned ACL rows: {sum(self.rows_by_policy.values()) + self.exemptions} "
            f"({self.exemptions} router/node exemptions)",
        ]
        out += [f"  {policy}: {n}" for policy, n in sorted(self.rows_by_policy.items())]
        if self.refused is not None:
            out.append(f"drift: not checked, a sync would be refused: {self.refused}")
        elif self.drift is None:
            out.append("drift: not checked (pass --zones and -f POLICY to compare)")
        elif self.drift.in_sync:
            out.append("drift: none, NB matches the policies")
        else:
            out += ["drift: " + self.drift.lines()[0].split(": ", 1)[1], *self.drift.lines()[1:]]
        if self.snat:
            out.append(f"SNAT rows hiding zone pods: {len(self.snat)}")
            out += [f"  {f}" for f in self.snat]
        else:
            out.append("SNAT rows hiding zone pods: none")
        return out

    def as_dict(self) -> dict:
        return {
            "remote": self.remote,
            "schemaVersion": self.schema_version,
            "aclTiers": self.has_tier,
            "switches": self.switches,
            "rowsByPolicy": self.rows_by_policy,
            "exemptions": self.exemptions,
            "drift": self.drift.as_dict() if self.drift is not None else None,
            "notSelected": self.not_selected,
            "refused": self.refused,
            "snat": [f.as_dict() for f in self.snat],
        }


def status(nb: NbClient, settings: SyncSettings, layout: Layout, zones: ZoneRegistry | None = None,
           rules: Iterable[Rule] | None = None, gateway_prefix: str = "GR_") -> OvnStatus:
    with nb.locked():
        tables = nb.api.tables
        owned = owned_acls(tables, settings.acl.controller)
        switches = [s.name for s in node_switches(tables, settings.switches)]
        not_selected = switch_reasons(tables, settings.switches)
        snat = find_hiding_nats(tables, layout, zones, gateway_prefix)
    per_policy = Counter(r.external_ids.get(POLICY_KEY) for r in owned if r.external_ids.get(ROLE_KEY) == "rule")
    exemptions = sum(1 for r in owned if r.external_ids.get(ROLE_KEY) == "exempt")
    drift, refused = None, None
    if rules is not None:
        try:
            drift = sync(nb, rules, settings, mode="log")
        except SelectionError as exc:
            refused = "; ".join(str(p) for p in exc.problems)
    return OvnStatus(nb.settings.remote, nb.schema_version, nb.has_tier, switches,
                     {str(k): v for k, v in per_policy.items()}, exemptions, drift, snat, not_selected, refused)
