"""What users hand the CLI and the daemons: the config file, zones, policies and node files.

One place for every command's input loading (``zonectl``, ``zonectl ovn``, ``zonectl gateway``, doctor,
the lab): multi-document YAML, `kubectl get -o yaml` lists, node dumps, and the file signature the
daemons re-read their inputs by. Below every command (it imports only the core), so no layer reaches
up into ``zonectl.cli`` for it.
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import yaml

from .core.errors import ValidationError, ZonectlError

if TYPE_CHECKING:
    from .core.config import Config
    from .core.layout import Layout
    from .core.zones import ZoneRegistry

CONFIG_ENV = "ZONECTL_CONFIG"
DEFAULT_CONFIG = "zonectl.yaml"
CONFIG_HELP = (
    f"zonectl config file (layout, nat64, ...); default: ${CONFIG_ENV} if set, else ./{DEFAULT_CONFIG}. "
    "Example: examples/config.yaml"
)


class UsageError(ZonectlError):
    """A usage problem found after parsing (missing config, unavailable part, nothing to do)."""


def read_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """One YAML mapping from a file (an empty file is an empty mapping); errors name the file."""
    p = Path(path)
    try:
        body = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationError(f"cannot read {what} {p}: {exc}") from None
    if body is not None and not isinstance(body, dict):
        raise ValidationError(f"{what} {p} is not a mapping")
    return body or {}


def load_documents(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every object in the files (or directories of *.yaml) given; `kind: List` is flattened."""
    docs: list[dict[str, Any]] = []
    for f in expand(paths):
        try:
            loaded = list(yaml.safe_load_all(f.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise ValidationError(f"{f}: {exc}") from None
        for doc in loaded:
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValidationError(f"{f}: a document is not a mapping")
            if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
                docs.extend(i for i in doc.get("items") or [] if isinstance(i, dict))
            else:
                docs.append(doc)
    return docs


def of_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def node_cidrs(docs: Iterable[dict[str, Any]]) -> list[IPv6Network]:
    """IPv6 podCIDRs of Node objects (spec.podCIDRs / spec.podCIDR), or plain `cidrs:` lists / strings."""
    out: list[IPv6Network] = []
    for doc in docs:
        candidates: list[str] = []
        if doc.get("kind") == "Node":
            spec = doc.get("spec") or {}
            candidates = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
            ann = (doc.get("metadata") or {}).get("annotations") or {}
            if not candidates and "k8s.ovn.org/node-subnets" in ann:
                try:
                    subnets = json.loads(ann["k8s.ovn.org/node-subnets"]).get("default", [])
                    candidates = [subnets] if isinstance(subnets, str) else list(subnets)
                except (ValueError, AttributeError):
                    raise ValidationError(f"node {doc.get('metadata', {}).get('name')}: bad k8s.ovn.org/node-subnets") from None
        elif isinstance(doc.get("cidrs"), list):
            candidates = [str(c) for c in doc["cidrs"]]
        for c in candidates:
            if "." in c:
                continue  # an IPv4 podCIDR on a dual-stack node: not ours
            try:
                out.append(IPv6Network(c))
            except ValueError as exc:
                raise ValidationError(f"node CIDR {c!r}: {exc}") from None
    return out


# --- what every command loads -------------------------------------------------------------------
def config_path(arg: str | None) -> Path:
    """--config, else $ZONECTL_CONFIG, else ./zonectl.yaml (read at call time, never at import)."""
    if arg:
        return Path(arg)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    path = Path(DEFAULT_CONFIG)
    if not path.exists():
        raise UsageError(f"no config: pass --config FILE or set ${CONFIG_ENV} (./{DEFAULT_CONFIG} does not exist)")
    return path


def load_config(arg: str | None) -> "Config":
    """The validated config from --config, $ZONECTL_CONFIG or ./zonectl.yaml; errors name the file."""
    from .core.config import parse_config

    path = config_path(arg)
    body = read_mapping(path)
    try:
        return parse_config(body)
    except ValidationError as exc:
        raise ValidationError(exc.problems, source=f"{path}: {exc.source}" if exc.source else str(path)) from None


def load_registry(layout: "Layout", paths: Sequence[str] | None) -> "ZoneRegistry":
    """The zone registry from SecurityZone objects in the given files (an empty one without files)."""
    from .core.zones import ZoneRegistry

    if not paths:
        return ZoneRegistry(layout)
    zones = of_kind(load_documents(paths), "SecurityZone")
    if not zones:
        raise UsageError(f"no SecurityZone object in {', '.join(paths)}")
    return ZoneRegistry.from_objects(layout, zones)


def load_policies(paths: Sequence[str]) -> list[dict[str, Any]]:
    """The SecurityZonePolicy objects in the given files; none at all is a usage error."""
    policies = of_kind(load_documents(paths), "SecurityZonePolicy")
    if not policies:
        raise UsageError(f"no SecurityZonePolicy object in {', '.join(paths)}")
    return policies


def load_nodes(paths: Sequence[str] | None) -> list[IPv6Network] | None:
    """Node podCIDRs from `kubectl get nodes -o yaml` dumps or `cidrs:` lists (None without files)."""
    if not paths:
        return None
    nodes = node_cidrs(load_documents(paths))
    if not nodes:
        raise UsageError(f"no IPv6 node podCIDR in {', '.join(paths)} (expected Node objects or a `cidrs:` list)")
    return nodes


def signature(path: str | Path) -> tuple[int, int, int] | None:
    """What changes when a file is replaced or edited: inode, mtime, size (None: it does not exist).

    The inode matters: a ConfigMap volume update swaps a symlink and ``FilePublisher`` renames a new file
    into place, either of which may keep mtime and size. ``stat`` follows the ConfigMap's ..data symlink."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files as ``load_documents`` reads them: a directory stands for its *.yaml and *.yml files."""
    out: list[Path] = []
    for path in map(Path, paths):
        out += sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
    return out
