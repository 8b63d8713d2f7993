"""Reading the YAML the user hands zonectl: multi-document files, `kubectl get -o yaml` lists, node dumps."""

from __future__ import annotations

import json
from ipaddress import IPv6Network
from pathlib import Path
from typing import Any, Iterable

import yaml

from .core.errors import ValidationError


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
    for path in paths:
        p = Path(path)
        files = sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")) if p.is_dir() else [p]
        for f in files:
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
                    raise ValidationError(f"node {doc.get('metadata', {}).get('name')}: bad k8s.ovn.org/node-subnets")
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
