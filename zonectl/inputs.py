"""What users hand the CLI and the daemons: the config file, zones, policies and node files.

One place for every command's input loading (``zonectl``, ``zonectl ovn``, ``zonectl gateway``, doctor,
the lab): multi-document YAML, `kubectl get -o yaml` lists, node dumps, the published rules document,
the option values, and the file signature the daemons re-read their inputs by. Below every command (it
imports only the core), so no layer reaches up into ``zonectl.cli`` for it.

Fail closed: a file is read only if it is a regular file within its size limit, as strict UTF-8 YAML or
JSON (``core.documents``); an object of a kind or version zonectl does not read here is an error, never
skipped (a skipped policy is a policy deleted: sync is a set difference); a node list names every node's
one IPv6 podCIDR. Every refusal is one ValidationError naming the file and the field.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from difflib import get_close_matches
from ipaddress import IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from .core import fields as f
from .core.documents import decode, json_document, yaml_documents
from .core.errors import Collector, ValidationError, ZonectlError

if TYPE_CHECKING:
    from .core.config import Config
    from .core.layout import Layout
    from .core.published import Published
    from .core.zones import ZoneRegistry

CONFIG_ENV = "ZONECTL_CONFIG"
DEFAULT_CONFIG = "zonectl.yaml"
CONFIG_HELP = (
    f"zonectl config file (layout, nat64, ...); default: ${CONFIG_ENV} if set, else ./{DEFAULT_CONFIG}. "
    "Example: examples/config.yaml"
)


class UsageError(ZonectlError):
    """A usage problem found after parsing (missing config, unavailable part, nothing to do)."""


# What each kind of file may weigh: enough for any real one, but never "read a disk image into memory".
LIMITS = {"config": 4 << 20, "objects": 64 << 20, "nodes": 1 << 30}
API_VERSION = "zonectl.io/v1alpha1"
OBJECT_KINDS = {"SecurityZone": API_VERSION, "SecurityZonePolicy": API_VERSION}  # what --zones and -f files hold
NODE_KINDS = {"Node": "v1"}
NODE_SUBNETS = "k8s.ovn.org/node-subnets"


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The content of a regular file, at most ``limit`` bytes; anything else is one message naming the file.

    Opened without blocking and checked with fstat before reading: a FIFO or a device would block or
    never end, a directory is not a document, and a file larger than the limit is refused unread."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ValidationError(f"cannot read: {exc.strerror or exc}", source=f"{what} {p}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ValidationError("is a directory, not a file", source=f"{what} {p}")
        if not stat.S_ISREG(mode):
            raise ValidationError("is not a regular file (a FIFO, socket or device)", source=f"{what} {p}")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ValidationError(f"cannot read: {exc.strerror or exc}", source=f"{what} {p}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValidationError(f"is larger than {limit >> 20} MiB, the limit for a {what} file", source=f"{what} {p}")
    return data


def read_yaml(path: str | Path, what: str, limit: int) -> list[Any]:
    """Every document of a YAML file (or a JSON one: ``{``/``[`` first is read by the faster JSON parser),
    strictly (``core.documents``); errors name the file and the line."""
    try:
        text = decode(read_bytes(path, what, limit))
        if text.lstrip()[:1] in ("{", "["):
            return [json_document(text)]
        return yaml_documents(text)
    except ValidationError as exc:
        raise exc if exc.source else exc.prefixed(f"{what} {path}") from None


def read_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """One YAML mapping from a file (an empty file is an empty mapping); errors name the file."""
    docs = [d for d in read_yaml(path, what, LIMITS["config"]) if d is not None]
    if len(docs) > 1:
        raise ValidationError(f"holds {len(docs)} documents; a {what} file holds one", source=f"{what} {path}")
    body = docs[0] if docs else {}
    if not isinstance(body, dict):
        raise ValidationError(f"is not a mapping (a {f.type_name(body)})", source=f"{what} {path}")
    return body


def _objects(paths: Iterable[str | Path], what: str, limit: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) for every object in the files: documents, and the items of `kind: List` dumps."""
    for file in expand(paths):
        for i, doc in enumerate(read_yaml(file, what, limit)):
            where = f"{file}: document {i + 1}"
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValidationError(f"is not an object (a {f.type_name(doc)})", source=where)
            kind = doc.get("kind")
            if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
                items = doc["items"]
                if not isinstance(items, list):
                    raise ValidationError(f"items: must be a list, not {f.type_name(items)}", source=where)
                for j, item in enumerate(items):
                    if not isinstance(item, dict):
                        raise ValidationError(f"items[{j}]: is not an object (a {f.type_name(item)})", source=where)
                    yield f"{where}: items[{j}]", item
            else:
                yield where, doc


def check_kind(doc: Mapping[str, Any], kinds: Mapping[str, str], where: str) -> str:
    """The object's kind if it is one of ``kinds`` with its exact apiVersion; anything else is refused, never
    skipped: a mistyped kind skipped would be a policy silently dropped (and its rules deleted)."""
    kind, version = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or kind not in kinds:
        known = ", ".join(kinds)
        hint = get_close_matches(kind, list(kinds), 1, 0.6) if isinstance(kind, str) else []
        said = "is missing" if kind is None else f"{f.short(kind)} is not one zonectl reads here"
        raise ValidationError(f"kind: {said} ({known}{'; did you mean ' + hint[0] + '?' if hint else ''})",
                              source=where)
    if version != kinds[kind]:
        raise ValidationError(f"apiVersion: {'is missing' if version is None else f.short(version) + ' is not'} "
                              f"{kinds[kind]} (for kind {kind})", source=where)
    return kind


def load_documents(paths: Iterable[str | Path], kinds: Mapping[str, str] = OBJECT_KINDS) -> list[dict[str, Any]]:
    """Every object in the files (or directories of *.yaml) given, each of one of ``kinds``; `kind: List`
    is flattened. An object of any other kind (or apiVersion) is an error, not skipped."""
    docs = []
    for where, doc in _objects(paths, "objects", LIMITS["objects"]):
        check_kind(doc, kinds, where)
        docs.append(doc)
    return docs


def of_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def node_cidrs(paths: Iterable[str | Path], layout: "Layout") -> list[IPv6Network]:
    """The IPv6 podCIDR of every Node in `kubectl get nodes -o yaml|json` dumps (spec.podCIDRs, else OVN-K's
    node-subnets annotation), or of plain ``cidrs:`` lists; each must be a node prefix of the cluster.

    Every node must have exactly one, and no two the same: an export that silently left a node out (an
    IPv4-only node, a broken annotation) would leave that node's pods out of a firewall's Deny rule."""
    out: dict[IPv6Network, str] = {}
    for where, doc in _objects(paths, "nodes", LIMITS["nodes"]):
        if "kind" not in doc and set(doc) == {"cidrs"}:
            errs = Collector()
            for i, c in enumerate(f.items(doc["cidrs"], "cidrs", errs, max_items=1 << 20, what="a list of CIDRs")):
                _add_node(out, c, f"cidrs[{i}]", where, layout, errs)
            errs.raise_if_any(where)
            continue
        check_kind(doc, NODE_KINDS, where)
        errs = Collector()
        meta = f.mapping(doc.get("metadata"), "metadata", errs, what="an object with a name")
        name = f.string(meta.get("name"), "metadata.name", errs, pattern=NODE_NAME, max_len=253,
                        what="a node name") if meta is not None else None
        errs.raise_if_any(where)
        where = f"{where} (node {name})"
        field, cidrs = _node_subnets(doc, meta or {}, errs)
        errs.raise_if_any(where)
        v6 = [(i, c) for i, c in enumerate(cidrs) if ":" in c]
        if not cidrs:
            errs.add("spec.podCIDRs", f"the node has no podCIDR (spec.podCIDRs) and no {NODE_SUBNETS} annotation")
        elif len(v6) != 1:
            errs.add(field, f"{'no' if not v6 else len(v6)} IPv6 CIDRs in {f.short(cidrs)}: a node has exactly one "
                            "(IPv4 entries of dual-stack nodes are ignored)")
        else:
            _add_node(out, v6[0][1], f"{field}[{v6[0][0]}]", where, layout, errs)
        errs.raise_if_any(where)
    return sorted(out)


NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _node_subnets(doc: Mapping[str, Any], meta: Mapping[str, Any], errs: Collector) -> tuple[str, list[str]]:
    """Where a Node's podCIDRs are (the field path) and what they are, as strings."""
    spec = f.mapping(doc.get("spec", {}), "spec", errs) or {}
    if "podCIDRs" in spec:
        cidrs = [f.string(c, f"spec.podCIDRs[{i}]", errs, max_len=50, what="a CIDR string")
                 for i, c in enumerate(f.items(spec["podCIDRs"], "spec.podCIDRs", errs, max_items=2))]
        if "podCIDR" in spec and cidrs and spec["podCIDR"] != cidrs[0]:
            errs.add("spec.podCIDR", f"{f.short(spec['podCIDR'])} is not spec.podCIDRs[0] {f.short(cidrs[0])}")
        return "spec.podCIDRs", [c for c in cidrs if c is not None]
    if "podCIDR" in spec:
        cidr = f.string(spec["podCIDR"], "spec.podCIDR", errs, max_len=50, what="a CIDR string")
        return "spec.podCIDR", [cidr] if cidr is not None else []
    annotations = f.mapping(meta.get("annotations", {}), "metadata.annotations", errs) or {}
    path = f"metadata.annotations[{NODE_SUBNETS}]"
    if NODE_SUBNETS not in annotations:
        return path, []
    raw = f.string(annotations[NODE_SUBNETS], path, errs, max_len=4096, what="a JSON string")
    if raw is None:
        return path, []
    try:
        subnets = json_document(raw)
    except ValidationError as exc:
        errs.add(path, f"is not JSON: {exc}")
        return path, []
    body = f.mapping(subnets, path, errs, what='a JSON object such as {"default": ["fd00:10:244:2::/64"]}')
    if body is None or "default" not in body:
        if body is not None:
            errs.add(path, "has no \"default\" network")
        return path, []
    value = body["default"]
    items = [value] if isinstance(value, str) else f.items(value, f"{path}.default", errs, max_items=2)
    cidrs = [f.string(c, f"{path}.default[{i}]", errs, max_len=50, what="a CIDR string") for i, c in enumerate(items)]
    return f"{path}.default", [c for c in cidrs if c is not None]


def _add_node(out: dict[IPv6Network, str], cidr: Any, path: str, where: str, layout: "Layout", errs: Collector) -> None:
    net = f.address(cidr, path, errs, IPv6Network, "an IPv6 CIDR")
    if net is None:
        return
    try:
        net = layout.check_node(net)
    except ValidationError as exc:
        errs.add(path, str(exc))
        return
    if net in out:
        errs.add(path, f"{net} is also the podCIDR of {out[net]}")
    out[net] = where


# --- values on the command line ------------------------------------------------------------------
MAX_SECONDS = 86_400.0


def seconds(text: str) -> float:
    """An argparse type for ``--timeout``, ``--interval``, ``--poll``: finite seconds above 0, at most a day
    (``float()`` alone takes ``nan``, ``inf`` and ``-1``, which would wait forever or never)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{f.short(text)} is not a number of seconds") from None
    if not 0 < value <= MAX_SECONDS:  # NaN fails this test too
        raise argparse.ArgumentTypeError(f"{f.short(text)} must be a number of seconds above 0, at most {MAX_SECONDS:g}")
    return value


def count(lo: int, hi: int) -> Any:
    """An argparse type: an integer from ``lo`` to ``hi``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{f.short(text)} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is not from {lo} to {hi}")
        return value

    parse.__name__ = "integer"
    return parse


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


def load_nodes(paths: Sequence[str] | None, layout: "Layout") -> list[IPv6Network] | None:
    """Node podCIDRs from `kubectl get nodes -o yaml|json` dumps or `cidrs:` lists (None without files)."""
    if not paths:
        return None
    nodes = node_cidrs(paths, layout)
    if not nodes:
        raise UsageError(f"no IPv6 node podCIDR in {', '.join(paths)} (expected Node objects or a `cidrs:` list)")
    return nodes


def read_pem(path: str | Path, what: str) -> str:
    """A PEM file (key or certificate) handed to a library: read here first, so a FIFO, a directory or a binary
    file is one message naming it rather than a hang or a failure deep inside the TLS code."""
    try:
        text = decode(read_bytes(path, what, LIMITS["config"]))
    except ValidationError as exc:
        raise exc if exc.source else exc.prefixed(f"{what} {path}") from None
    if "-----BEGIN " not in text:
        raise ValidationError("is not a PEM file (no -----BEGIN line)", source=f"{what} {path}")
    return text


def read_published(path: str | Path, layout: "Layout") -> "Published":
    """The published rules document in a file (a mounted ConfigMap key), through its strict reader: the one
    loader of the gateway (``--inputs``) and the OVN node agents. Errors name the file and the field."""
    from .core import published

    data = read_bytes(path, "inputs", published.MAX_BYTES)
    try:
        return published.parse_text(data, layout)
    except ValidationError as exc:
        raise exc.prefixed(f"inputs {path}") from None


def signature(path: str | Path) -> tuple[int, int, int] | None:
    """What changes when a file is replaced or edited: inode, mtime, size (None: it does not exist).

    The inode matters: a ConfigMap volume update swaps a symlink and ``FilePublisher`` renames a new file
    into place, either of which may keep mtime and size. ``stat`` follows the ConfigMap's ..data symlink."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def change_check(signature_of: Callable[[], object]) -> Callable[[], bool]:
    """A check that says whether ``signature_of()`` differs from its previous answer (the first: from now):
    daemons re-apply when one of their input files changed."""
    last = signature_of()

    def changed() -> bool:
        nonlocal last
        now = signature_of()
        moved, last = now != last, now
        return moved
    return changed


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files as ``load_documents`` reads them: a directory stands for its *.yaml and *.yml files."""
    out: list[Path] = []
    for path in map(Path, paths):
        out += sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
    return out
