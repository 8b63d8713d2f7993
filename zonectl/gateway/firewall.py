"""Applying the rendered firewall: ip6tables-restore for the zone filter, nft -f for the NAT table.

Both are atomic (one kernel transaction per call) and both are skipped when the live state already
equals the desired state, so re-applying changes no rule and keeps the counters the metrics read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..render import ip6tables, nftables
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

    def test(self, text: str) -> None:
        """Let ip6tables-restore parse the file without committing it (raises CommandError with why)."""
        self.host.run(["ip6tables-restore", "-w", "--test", "--noflush"], input=text)

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

    def counters(self) -> list[ip6tables.Counter]:
        return ip6tables.parse_counters(self.host.run(["ip6tables-save", "-c", "-t", "filter"]).stdout)

    def remove(self, plan: GatewayPlan) -> None:
        zone_chains = [c for c in self.live_chains() if c.startswith(ip6tables.ZONE_CHAIN_PREFIX)]
        for argv in ip6tables.render_cleanup(plan.nat64, zone_chains):
            self.host.run(["ip6tables", "-w", *argv], check=False)


class Nftables:
    """zonectl's nftables tables; what was last applied is remembered (per table) in the state dir."""

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
        digest = hashlib.sha256(text.encode()).hexdigest()
        state = self._load()
        seen = state.get(f"{family} {table}")
        live = self.listing(family, table)
        if seen and seen.get("digest") == digest and live is not None and seen.get("listing") == live:
            return False
        self.host.run(["nft", "-f", "-"], input=text)
        state[f"{family} {table}"] = {"digest": digest, "listing": self.listing(family, table) or ""}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)
        return True

    def delete(self, family: str, table: str) -> None:
        try:
            self.host.run(["nft", "-f", "-"], input=nftables.render_delete(family, table))
        except CommandError:
            pass
