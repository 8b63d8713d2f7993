"""Object names for firewalls: deterministic, unique, within each vendor's length and character limits.

Names derive from the zone and the CIDR, never from a position in a list, so re-exporting after a
node is added changes only the objects of that node (firewall diffs stay readable).
"""

from __future__ import annotations

import hashlib

PREFIX = "zonectl-"


def cidr_token(cidr: str) -> str:
    """``fd00:10:244:2:2000::/80`` -> ``fd00-10-244-2-2000--_80`` (letters, digits, '-' and '_' only)."""
    return cidr.replace(":", "-").replace("/", "_")


def object_name(*parts: str, limit: int, prefix: str = PREFIX) -> str:
    """``prefix`` + parts joined by '-'; too long names keep their start and end in a short hash."""
    name = prefix + "-".join(filter(None, parts))
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - len(digest) - 1]}-{digest}"


def ident(text: str) -> str:
    """An identifier for nftables and shell-ish contexts: zone names are DNS labels, so '-' -> '_' is safe."""
    return text.replace("-", "_")
