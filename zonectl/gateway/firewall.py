"""Applying the rendered firewall: the zone filter (nftables, or ip6tables) and the nft NAT table.

Every change is atomic (one kernel transaction per call) and skipped when the live state already
equals the desired state, so re-applying changes no rule and keeps the counters the metrics read.
Each backend also says how the live state differs from a plan (``drift``), so drift reports and
repairs cover exactly what an apply would change.

Two zone filter backends, one chosen by ``gateway.filter``:

* ``nftables`` (default): zonectl's own ``ip6 zonectl`` table, a zone's rules resolved into verdict
  maps, so a packet costs the same with 10 or 10,000 rules (``zonectl.render.nftables``);
* ``ip6tables``: zonectl's chains, walked rule by rule; for hosts whose firewall tooling only knows
  iptables (the rules are then where ``ip6tables -L`` and iptables-based audits look).

Switching backends installs the new filter first and removes the old one after, so for a moment both
filter (never neither).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path

from ..render import ip6tables, nftables
from ..render.ip6tables import Counter
from .host import CommandError, Host
from .plan import GatewayPlan

JUMPS = (("filter", "FORWARD", ip6tables.FWD_CHAIN), ("mangle", "PREROUTING", ip6tables.MARK_CHAIN))


def _by_chain(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        words = line.split()
        out.setdefault(words[1], []).append(" ".join(words))
    return out


def expected_lines(restore_text: str) -> dict[str, list[str]]:
    """What ``ip6tables-save`` will list for our rules once ``restore_text`` is loaded."""
    lines = []
    for line in restore_text.splitlines():
        if line.startswith("-I "):
            words = line.split()
            lines.append(" ".join(["-A", words[1], *words[3:]]))
        elif line.startswith("-A "):
            lines.append(line)
    return _by_chain(lines)


class Ip6tables:
    """zonectl's chains in ip6tables (iptables-nft or legacy, whichever ``ip6tables`` is)."""

    name = "ip6tables"

    def __init__(self, host: Host) -> None:
        self.host = host

    def missing_jumps(self, plan: GatewayPlan) -> tuple[str, ...]:
        missing = []
        for table, builtin, chain in JUMPS:
            proc = self.host.run(["ip6tables", "-w", "-t", table, "-C", *ip6tables.jump_spec(builtin, plan.nat64, chain)],
                                 check=False)
            if proc.returncode != 0:
                missing.append(builtin)
        return tuple(missing)

    def _save(self) -> str:
        return self.host.run(["ip6tables-save", "-t", "filter"]).stdout + self.host.run(["ip6tables-save", "-t", "mangle"]).stdout

    def live(self) -> dict[str, list[str]]:
        return _by_chain(ip6tables.owned_lines(self._save()))

    def live_chains(self) -> list[str]:
        return ip6tables.owned_chains(self._save())

    def present(self) -> bool:
        """Does any of zonectl's ip6tables state exist (a chain or a jump)? False where ip6tables is absent."""
        try:
            save = self._save()
        except (CommandError, OSError):
            return False
        return bool(ip6tables.owned_chains(save) or ip6tables.owned_lines(save))

    def test(self, plan: GatewayPlan) -> None:
        """Let ip6tables-restore parse the file without committing it (raises CommandError with why)."""
        self.host.run(["ip6tables-restore", "-w", "--test", "--noflush"], input=plan.ip6tables_text())

    def apply(self, plan: GatewayPlan) -> bool:
        """Make zonectl's chains equal the plan in one ip6tables-restore; False if they already were."""
        jumps = self.missing_jumps(plan)
        save = self._save()
        chains = ip6tables.owned_chains(save)
        stale = tuple(c for c in chains if c not in plan.filter_chains() and c != ip6tables.MARK_CHAIN)
        text = plan.ip6tables_text(jumps, stale)
        if not jumps and not stale and _by_chain(ip6tables.owned_lines(save)) == expected_lines(plan.ip6tables_text()):
            return False
        self.host.run(["ip6tables-restore", "-w", "--noflush"], input=text)
        return True

    def drift(self, plan: GatewayPlan) -> list[str]:
        """How the live chains differ from the plan's (empty: they are the plan's)."""
        out: list[str] = []
        want = expected_lines(plan.ip6tables_text())  # with the jumps from the built-in chains
        live = self.live()
        for chain in sorted(set(want) | set(live)):
            missing = [x for x in want.get(chain, []) if x not in live.get(chain, [])]
            extra = [x for x in live.get(chain, []) if x not in want.get(chain, [])]
            if missing and chain in ("FORWARD", "PREROUTING"):
                out.append(f"ip6tables chain {chain}: the jump to zonectl's chain is missing")
            elif missing:
                out.append(f"ip6tables chain {chain}: {len(missing)} of {len(want.get(chain, []))} rules missing")
            if extra:
                out.append(f"ip6tables chain {chain}: {len(extra)} rules not in the plan")
            if not missing and not extra and want.get(chain) != live.get(chain):
                out.append(f"ip6tables chain {chain}: rules out of order")
        return out

    def counters(self) -> list[Counter]:
        return ip6tables.parse_counters(self.host.run(["ip6tables-save", "-c", "-t", "filter"]).stdout)

    def remove(self, plan: GatewayPlan) -> None:
        zone_chains = [c for c in self.live_chains() if c.startswith(ip6tables.ZONE_CHAIN_PREFIX)]
        for argv in ip6tables.render_cleanup(plan.nat64, zone_chains):
            self.host.run(["ip6tables", "-w", *argv], check=False)


class Nftables:
    """zonectl's nftables tables; what was last applied is remembered (per table) in the state dir:
    the digest of the text and the listing the kernel gave back, which is what drift compares."""

    def __init__(self, host: Host, state_dir: Path) -> None:
        self.host = host
        self.state_file = Path(state_dir) / "nft-applied.json"

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def listing(self, family: str, table: str) -> str | None:
        proc = self.host.run(["nft", "list", "table", family, table], check=False)
        return nftables.strip_counters(proc.stdout) if proc.returncode == 0 else None

    def check(self, text: str) -> None:
        self.host.run(["nft", "-c", "-f", "-"], input=text)

    def apply(self, family: str, table: str, text: str) -> bool:
        """Replace the table atomically unless it already holds exactly this text's rules."""
        if not self.drift(family, table, text):
            return False
        self.host.run(["nft", "-f", "-"], input=text)
        state = self._load()
        state[f"{family} {table}"] = {"digest": _digest(text), "listing": self.listing(family, table) or ""}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)
        return True

    def drift(self, family: str, table: str, text: str) -> list[str]:
        """How the live table differs from ``text`` as last applied (empty: it is exactly that)."""
        live = self.listing(family, table)
        if live is None:
            return [f"nft table {family} {table} is missing"]
        seen = self._load().get(f"{family} {table}") or {}
        if seen.get("digest") != _digest(text):
            return [f"nft table {family} {table} was not applied from these inputs (or its record is gone)"]
        if seen.get("listing") != live:
            changed = [line for line in difflib.unified_diff(seen.get("listing", "").splitlines(), live.splitlines(),
                                                             lineterm="", n=0) if line[:1] in "+-" and line[:3] not in
                       ("+++", "---")]
            return [f"nft table {family} {table} changed since it was applied ({len(changed)} lines differ)"]
        return []

    def delete(self, family: str, table: str) -> bool:
        """Remove the table if it exists (True if it did)."""
        if self.listing(family, table) is None:
            return False
        try:
            self.host.run(["nft", "-f", "-"], input=nftables.render_delete(family, table))
        except CommandError:
            return False
        return True

    def counters(self, family: str, table: str) -> list[Counter]:
        proc = self.host.run(["nft", "-j", "list", "counters", "table", family, table], check=False)
        return nftables.parse_counters(proc.stdout) if proc.returncode == 0 else []


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class NftFilter:
    """The zone filter as nftables table ``ip6 zonectl`` (the default backend)."""

    name = "nftables"

    def __init__(self, nft: Nftables) -> None:
        self.nft = nft

    def test(self, plan: GatewayPlan) -> None:
        self.nft.check(plan.nft_filter_text())

    def apply(self, plan: GatewayPlan) -> bool:
        return self.nft.apply("ip6", nftables.FILTER_TABLE, plan.nft_filter_text())

    def drift(self, plan: GatewayPlan) -> list[str]:
        return self.nft.drift("ip6", nftables.FILTER_TABLE, plan.nft_filter_text())

    def counters(self) -> list[Counter]:
        return self.nft.counters("ip6", nftables.FILTER_TABLE)

    def present(self) -> bool:
        return self.nft.listing("ip6", nftables.FILTER_TABLE) is not None

    def remove(self, plan: GatewayPlan) -> None:
        self.nft.delete("ip6", nftables.FILTER_TABLE)


ZoneFilter = Ip6tables | NftFilter
