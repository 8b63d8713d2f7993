"""CoreDNS configuration for DNS64: the cluster zone answers natively, everything else is synthesised.

Why two kinds of server blocks: names inside the cluster (and any zone listed as native IPv6) must
keep their real AAAA records, while every other name is answered with ``dns64`` + ``translate_all``,
so pods always get an address inside the NAT64 prefix and their traffic reaches the gateway, where
the zone filter applies (an external AAAA would bypass NAT64 in an IPv6-only cluster with no IPv6
route to the outside). The prefix comes from the same config the gateway uses, so they cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Mapping

import yaml

from ..core import fields
from ..core.errors import Collector
from ..core.nat64 import Nat64Prefix
from . import checks

DOMAIN_RE = re.compile(r"([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.?")


@dataclass(frozen=True)
class DnsConfig:
    """The ``dns`` section of the zonectl config."""

    cluster_domain: str = "cluster.local"
    upstreams: tuple[str, ...] = ("/etc/resolv.conf",)
    native_zones: tuple[str, ...] = ()  # zones with real IPv6 (no dns64), e.g. a corporate domain
    translate_all: bool = True
    cache_seconds: int = 30
    namespace: str = "kube-system"
    configmap: str = "coredns"


DNS_KEYS = ("clusterDomain", "upstreams", "nativeZones", "translateAll", "cacheSeconds", "namespace", "configMap")
UPSTREAM_SCHEMES = ("", "dns://", "tls://")


def check_upstream(value: Any) -> str | None:
    """Why ``value`` is not a resolver CoreDNS's ``forward`` takes (None: it is): an IP address with an
    optional port (``[v6]:port``), optionally ``dns://`` or ``tls://``, or a resolv.conf path."""
    if not isinstance(value, str):
        return f"must be a string, not {fields.type_name(value)}"
    if value.startswith("/"):
        return None if checks.PATH.fullmatch(value) else f"{fields.short(value)} is not a plain absolute path"
    scheme = next(s for s in reversed(UPSTREAM_SCHEMES) if value.startswith(s))
    host, port = value[len(scheme):], None
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?|([0-9.]+)(?::([0-9]{1,5}))?|([0-9A-Fa-f:.]+)", host)
    if m is None:
        return f"{fields.short(value)} is not an IP address (with an optional :port), dns:// or tls:// one, or a path"
    addr, port = (m[1], m[2]) if m[1] else (m[3], m[4]) if m[3] else (m[5], None)
    try:
        ip_address(addr)
    except ValueError:
        return f"{fields.short(value)}: {addr!r} is not an IP address"
    if port is not None and not 1 <= int(port) <= 65535:
        return f"{fields.short(value)}: port {int(port)} is not from 1 to 65535"
    return None


def parse_dns(body: Mapping[str, Any] | None) -> DnsConfig:
    """DnsConfig from the config's ``dns`` mapping; every problem reported with its path."""
    errs = Collector()
    body, _ = fields.section(body, "dns", errs, DNS_KEYS)
    domain = fields.string(body.get("clusterDomain", "cluster.local"), "dns.clusterDomain", errs, pattern=DOMAIN_RE,
                           max_len=253, what="a domain name (lowercase)")
    ups: list[str] = []
    for i, u in enumerate(fields.items(body.get("upstreams", ["/etc/resolv.conf"]), "dns.upstreams", errs, max_items=15,
                                       what="a list of resolvers", empty="list resolvers, or /etc/resolv.conf")):
        why = check_upstream(u)
        if why:
            errs.add(f"dns.upstreams[{i}]", why)
        else:
            ups.append(u)
    native: list[str] = []
    raw = body.get("nativeZones", [])
    if not isinstance(raw, list):
        errs.add("dns.nativeZones", f"must be a list of domain names, not {fields.type_name(raw)}")
        raw = []
    for i, z in enumerate(raw):
        zone = fields.string(z, f"dns.nativeZones[{i}]", errs, pattern=DOMAIN_RE, max_len=253, what="a domain name")
        if zone is not None:
            native.append(zone.rstrip("."))
    cache = fields.integer(body.get("cacheSeconds", 30), "dns.cacheSeconds", errs, 0, 86400)
    translate = fields.boolean(body.get("translateAll", True), "dns.translateAll", errs)
    namespace = fields.name(body.get("namespace", "kube-system"), "dns.namespace", errs, "a namespace name")
    cm = fields.string(body.get("configMap", "coredns"), "dns.configMap", errs, pattern=DOMAIN_RE, max_len=253,
                       what="a ConfigMap name")
    errs.raise_if_any("config")
    assert domain is not None and cache is not None and translate is not None and namespace and cm
    return DnsConfig(domain.rstrip("."), tuple(ups), tuple(native), translate, cache, namespace, cm)


def check_form(nat64: Nat64Prefix, cfg: DnsConfig) -> None:
    """Every value in the exact form its Corefile line takes (a DnsConfig may be built in code)."""
    if not isinstance(nat64, Nat64Prefix) or not isinstance(cfg, DnsConfig):
        raise checks.refuse("coredns", cfg, "needs a Nat64Prefix and a DnsConfig")
    checks.ipv6_net(nat64.network, "dns64 prefix")
    checks.pattern(cfg.cluster_domain, checks.DOMAIN, "clusterDomain", "a domain name")
    if not cfg.upstreams:
        raise checks.refuse("upstreams", cfg.upstreams, "is empty")
    for u in cfg.upstreams:
        why = check_upstream(u)
        if why:
            raise checks.refuse("upstream", u, why)
    for z in cfg.native_zones:
        checks.pattern(z, checks.DOMAIN, "nativeZones", "a domain name")
    checks.integer(cfg.cache_seconds, "cacheSeconds", 0, 86400)
    if not isinstance(cfg.translate_all, bool):
        raise checks.refuse("translateAll", cfg.translate_all, "is not true or false")
    checks.name(cfg.namespace, "namespace")
    checks.pattern(cfg.configmap, checks.DOMAIN, "configMap", "a ConfigMap name")


def _block(zones: list[str], body: list[str]) -> list[str]:
    return [" ".join(f"{z}:53" for z in zones) + " {", *[f"    {line}" for line in body], "}"]


def _common(cfg: DnsConfig, health: bool) -> list[str]:
    lines = ["errors"]
    if health:
        lines += ["health {", "    lameduck 5s", "}", "ready"]
    return lines


def render_corefile(nat64: Nat64Prefix, cfg: DnsConfig = DnsConfig(), *, cluster_file: str | None = None) -> str:
    """The Corefile: cluster (and native) zones without dns64, the root zone with dns64 + translate_all.

    ``cluster_file`` serves the cluster zone from a zone file instead of the ``kubernetes`` plugin, which
    needs the Kubernetes API: for a server outside a cluster (the lab, the tests). Nothing else changes.
    """
    check_form(nat64, cfg)
    domain = cfg.cluster_domain
    forward = ["forward . " + " ".join(cfg.upstreams) + " {", "    max_concurrent 1000", "}"]
    cache = [f"cache {cfg.cache_seconds}"] if cfg.cache_seconds else []  # 0: no cache (CoreDNS refuses "cache 0")
    records = [
        f"kubernetes {domain} in-addr.arpa ip6.arpa {{",
        "    pods insecure",
        "    fallthrough in-addr.arpa ip6.arpa",
        "    ttl 30",
        "}",
    ]
    if cluster_file is not None:
        records = [f"file {checks.pattern(cluster_file, checks.PATH, 'cluster zone file', 'an absolute path')} {domain}"]
    out: list[str] = ["# Generated by zonectl: DNS64 for the NAT64 prefix " + str(nat64.network)]
    out += _block([domain, "in-addr.arpa", "ip6.arpa"], [
        *_common(cfg, health=False),
        *records,
        "prometheus :9153",
        *forward,
        *cache,
        "loadbalance",
    ])
    if cfg.native_zones:
        out += _block(list(cfg.native_zones), [*_common(cfg, health=False), "prometheus :9153", *forward,
                                               *cache, "loadbalance"])
    dns64 = ["dns64 {", f"    prefix {nat64.network}"]
    if cfg.translate_all:
        dns64.append("    translate_all")
    dns64.append("}")
    out += _block(["."], [
        *_common(cfg, health=True),
        "prometheus :9153",
        *forward,
        *dns64,
        *cache,
        "reload",
        "loadbalance",
    ])
    return "\n".join(out) + "\n"


class _Literal(str):
    """A string YAML writes as a ``|`` block, so the Corefile stays readable in the manifest."""


def _literal_representer(dumper: yaml.SafeDumper, data: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal_representer)


def configmap(nat64: Nat64Prefix, cfg: DnsConfig = DnsConfig()) -> dict[str, Any]:
    check_form(nat64, cfg)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cfg.configmap,
            "namespace": cfg.namespace,
            "labels": {"app.kubernetes.io/managed-by": "zonectl"},
        },
        "data": {"Corefile": _Literal(render_corefile(nat64, cfg))},
    }


def render_configmap(nat64: Nat64Prefix, cfg: DnsConfig = DnsConfig()) -> str:
    """The CoreDNS ConfigMap as YAML (``kubectl apply -f -``)."""
    return yaml.dump(configmap(nat64, cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
