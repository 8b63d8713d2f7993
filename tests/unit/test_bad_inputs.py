"""Bad inputs through the real command line: each is refused with exit status 2 and one line naming the field.

Every case is one small change to a valid document (a policy, a zone, the config with all its sections)
and the command that reads that document (`zonectl compile`, `render coredns`, `gateway apply --dry-run`,
`operator check-config`), run in-process through ``zonectl.cli.main`` with stdout and stderr captured.
Each must end with exit status 2, nothing on stdout, exactly one line on stderr that names the field
path, and no traceback.

To add a case, add a row to CASES: ``Case(id, target, edits, field)`` where ``edits`` sets (or, with
DEL, removes) values at dotted paths of the target's base document. A new kind of input (published
documents, node files, AdmissionReviews) adds a TARGETS entry: its base document and how to run it.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from zonectl import cli

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
DEL: Any = object()  # remove the key

BASE_POLICY = yaml.safe_load("""
apiVersion: zonectl.io/v1alpha1
kind: SecurityZonePolicy
metadata: {name: p, namespace: zonectl-system}
spec:
  zones: [web]
  priority: 200
  description: base
  defaultAction: {ingress: Deny, egress: Deny}
  ingress:
    - name: from-dmz
      action: Allow
      from: [{zone: dmz, scope: Datacenter}]
      ports: [{protocol: TCP, port: 8080}, {protocol: TCP, port: 8443, endPort: 8444}]
    - name: block
      action: Deny
      from: [{cidr: "2001:db8:bad::/48"}, {zone: db, scope: Cluster}]
      ports: [{protocol: Any}]
  egress:
    - name: to-db
      action: Allow
      to: [{zone: db}]
      ports: [{protocol: TCP, port: 5432}]
    - name: v4
      action: Allow
      to: [{nat64: {cidrs: [198.51.100.0/24]}}]
      ports: [{protocol: ICMPv6, icmpType: 128}, {protocol: UDP, any: true}]
""")
BASE_ZONES = [d for d in yaml.safe_load_all((EX / "zones.yaml").read_text()) if d]
BASE_CONFIG = yaml.safe_load("""
apiVersion: zonectl.io/v1alpha1
kind: ZonectlConfig
layout:
  cluster: fd00:10:244::/48
  nodePrefixLength: 64
  zoneField: {offset: 64, width: 16}
  datacenter: fd00:10:200::/40
  ipamBits: 16
nat64: {prefix: "fd64:ff9b::/96", enabled: true}
dns:
  clusterDomain: cluster.local
  upstreams: [/etc/resolv.conf, "192.0.2.53"]
  nativeZones: [corp.example]
  translateAll: true
  cacheSeconds: 30
  namespace: kube-system
  configMap: coredns
gateway:
  uplink: zt9nosuch0
  stateDir: /var/lib/zonectl-bad-inputs/gateway
  tayga: {binary: tayga, version: "0.9.2", tun: zt64, pool: 100.64.0.0/24, ipv4Address: 100.64.0.1}
  staticMaps: [{ipv4: 198.51.100.80, ipv6: "fd00:10:96::80"}]
  destinations: [192.0.2.0/24]
  marks: {mask: 0x00ff0000}
  routing: {tableBase: 4200, rulePriority: 4200}
  metrics: {listen: "[::1]:9464"}
  restart: {initialDelay: 0.2, maxDelay: 30}
operator:
  labelKey: securityZone
  spoofedHint: replace
  adminNamespaces: [zonectl-system]
  tenantPriorityFloor: 100
  resyncSeconds: 300
  webhook: {addr: "::", port: 8443, insecure: false}
  metrics: {port: 9090}
""")


@dataclass(frozen=True)
class Target:
    """A kind of input: its base document and the command that reads it (argv from the written files)."""

    base: Callable[[], Any]
    argv: Callable[[dict[str, Path]], list[str]]


def _compile(files: dict[str, Path]) -> list[str]:
    return ["compile", "--config", str(files["config"]), "--zones", str(files["zones"]), "-f", str(files["policies"]),
            "--target", "ir"]


TARGETS: dict[str, Target] = {
    "policy": Target(lambda: BASE_POLICY, _compile),
    "zone": Target(lambda: BASE_ZONES, _compile),
    "config": Target(lambda: BASE_CONFIG, _compile),
    "dns": Target(lambda: BASE_CONFIG, lambda f: ["render", "coredns", "--config", str(f["config"])]),
    "gateway": Target(lambda: BASE_CONFIG, lambda f: ["gateway", "apply", "--dry-run", "--config", str(f["config"]),
                                                      "--zones", str(f["zones"]), "--policies", str(f["policies"])]),
    "operator": Target(lambda: BASE_CONFIG, lambda f: ["operator", "check-config", "--config", str(f["config"])]),
}
DOCUMENT = {"policy": "policies", "zone": "zones"}  # the other targets change the config


@dataclass(frozen=True)
class Case:
    id: str
    target: str
    edits: tuple[tuple[str, Any], ...]
    field: str  # the field path the one-line message must name


def P(id: str, path: str, value: Any, field: str | None = None, *more: tuple[str, Any]) -> Case:
    return Case(id, "policy", ((path, value), *more), field or path)


def Z(id: str, path: str, value: Any, field: str | None = None, *more: tuple[str, Any]) -> Case:
    return Case(id, "zone", ((path, value), *more), field or path.split(".", 1)[1])


def C(id: str, target: str, path: str, value: Any, field: str | None = None, *more: tuple[str, Any]) -> Case:
    return Case(id, target, ((path, value), *more), field or path)


def _keys(path: str) -> list[Any]:
    return [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]


def _get(doc: Any, path: str) -> Any:
    for k in _keys(path):
        doc = doc[k]
    return doc


def renamed(target: str, path: str, new: str, field: str | None = None) -> Case:
    """A mistyped key: ``path``'s last key replaced by ``new`` (what a user typo looks like in the file)."""
    parent, _, key = path.rpartition(".")
    value = _get(TARGETS[target].base(), path)
    edits = ((f"{parent}.{new}" if parent else new, value), (path, DEL))
    if target == "zone":
        return Case(f"typo {path} -> {new}", target, edits, field or parent.split(".", 1)[1])
    return Case(f"typo {path} -> {new}", target, edits, field or parent)


LONG = "x" * 5000
INJECT = "x\n-A INPUT -j ACCEPT"
I0, I1, E0, E1 = "spec.ingress[0]", "spec.ingress[1]", "spec.egress[0]", "spec.egress[1]"
CASES: list[Case] = [
    # --- policy: document and metadata ------------------------------------------------------------------
    # (A mistyped kind, e.g. `securityzonepolicy`, is the document loader's to refuse: not a field of the model.)
    P("apiVersion", "apiVersion", "zonectl.io/v2", "apiVersion"),
    P("top-level typo", "sepc", {}, ""),
    P("metadata not an object", "metadata", "p", "metadata"),
    P("name missing", "metadata.name", DEL),
    P("name upper case", "metadata.name", "Web"),
    P("name with newline", "metadata.name", "p\n-A INPUT"),
    P("name too long", "metadata.name", "a" * 64),
    P("name a number", "metadata.name", 7),
    P("namespace injection", "metadata.namespace", INJECT),
    P("namespace a list", "metadata.namespace", ["a"]),
    P("generation negative", "metadata.generation", -1),
    P("generation a string", "metadata.generation", "3"),
    P("spec not an object", "spec", ["zones"], "spec"),
    P("spec unknown key", "spec.egres", [], "spec"),
    P("description a dict", "spec.description", {"a": 1}),
    P("description with newline", "spec.description", "a\nb"),
    P("description too long", "spec.description", LONG),
    # --- policy: zones, priority, defaults ------------------------------------------------------------------
    P("zones empty", "spec.zones", []),
    P("zones missing", "spec.zones", DEL),
    P("zones a string", "spec.zones", "web"),
    P("zone unknown", "spec.zones", ["web", "nope"], "spec.zones[1]"),
    P("zone twice", "spec.zones", ["web", "web"]),
    P("zone a dict", "spec.zones", [{"name": "web"}], "spec.zones[0]"),
    P("zone null", "spec.zones", [None], "spec.zones[0]"),
    P("65 zones", "spec.zones", ["web"] * 65),
    P("priority missing", "spec.priority", DEL),
    P("priority too high", "spec.priority", 1000),
    P("priority negative", "spec.priority", -1),
    P("priority a float", "spec.priority", 1.5),
    P("priority NaN", "spec.priority", float("nan")),
    P("priority a string", "spec.priority", "100"),
    P("priority true", "spec.priority", True),
    P("priority huge", "spec.priority", 10**100),
    P("defaultAction a string", "spec.defaultAction", "Deny"),
    P("defaultAction typo", "spec.defaultAction.ingres", "Allow", "spec.defaultAction"),
    P("defaultAction lower case", "spec.defaultAction.egress", "deny"),
    P("defaultAction a list", "spec.defaultAction.ingress", ["Deny"]),
    P("nothing at all", "spec.ingress", [], "spec", ("spec.egress", []), ("spec.defaultAction", DEL)),
    # --- policy: rule lists and rules --------------------------------------------------------------------
    P("ingress missing", "spec.ingress", DEL),
    P("egress missing", "spec.egress", DEL),
    P("ingress null", "spec.ingress", None),
    P("ingress an object", "spec.ingress", {"name": "x"}),
    P("201 rules", "spec.egress", [BASE_POLICY["spec"]["egress"][0]] * 201),
    P("rule a string", I0, "allow", I0),
    P("rule unknown key", f"{I0}.prots", [], I0),
    P("from in egress", f"{E0}.from", [{"any": True}], E0),
    P("action missing", f"{I0}.action", DEL),
    P("action lower case", f"{I0}.action", "allow"),
    P("action null", f"{I0}.action", None),
    P("rule name twice", f"{I1}.name", "from-dmz"),
    P("rule name injection", f"{I0}.name", INJECT),
    P("rule name empty", f"{I0}.name", ""),
    P("peers missing", f"{I0}.from", DEL),
    P("peers empty", f"{I0}.from", []),
    P("peers a dict", f"{I0}.from", {"zone": "dmz"}),
    P("ports missing", f"{I0}.ports", DEL),
    P("ports empty", f"{I0}.ports", []),
    P("ports a string", f"{I0}.ports", "443"),
    P("101 ports", f"{E0}.ports", [{"protocol": "TCP", "port": 1}] * 101),
    # --- policy: peers -------------------------------------------------------------------------------------
    P("peer empty", f"{I0}.from[0]", {}, f"{I0}.from[0]"),
    P("peer a string", f"{I0}.from[0]", "dmz"),
    P("peer two kinds", f"{I0}.from[0].cidr", "2001:db8::/32", f"{I0}.from[0]"),
    P("peer unknown key", f"{I0}.from[0].zones", "web", f"{I0}.from[0]"),
    P("zone peer unknown", f"{I0}.from[0].zone", "nope"),
    P("zone peer a number", f"{I0}.from[0].zone", 5),
    P("zone peer injection", f"{I0}.from[0].zone", INJECT),
    P("scope lower case", f"{I0}.from[0].scope", "datacenter"),
    P("scope a bool", f"{I0}.from[0].scope", True),
    P("scope on a cidr", f"{I1}.from[0].scope", "Cluster"),
    P("Deny zone peer without scope", f"{I1}.from[1].scope", DEL),
    P("any false", f"{I0}.from", [{"any": False}], f"{I0}.from[0].any"),
    P("any a string", f"{I0}.from", [{"any": "true"}], f"{I0}.from[0].any"),
    P("any with others", f"{I0}.from", [{"any": True}, {"zone": "dmz"}], f"{I0}.from"),
    P("cidr IPv4", f"{I1}.from[0].cidr", "10.0.0.0/8"),
    P("cidr ::/0", f"{I1}.from[0].cidr", "::/0"),
    P("cidr zero mask", f"{I1}.from[0].cidr", "::/::"),
    P("cidr host bits", f"{I1}.from[0].cidr", "2001:db8::1/32"),
    P("cidr length 129", f"{I1}.from[0].cidr", "2001:db8::/129"),
    P("cidr scope id", f"{I1}.from[0].cidr", "fd00::%eth0/64"),
    P("cidr newline", f"{I1}.from[0].cidr", "2001:db8::/32\n"),
    P("cidr a list", f"{I1}.from[0].cidr", ["2001:db8::/32"]),
    P("cidr too long", f"{I1}.from[0].cidr", LONG),
    P("cidr garbage", f"{I1}.from[0].cidr", "not-an-address"),
    P("nat64 empty", f"{E1}.to[0].nat64", {}),
    P("nat64 null", f"{E1}.to[0].nat64", None),
    P("nat64 cidrs empty", f"{E1}.to[0].nat64.cidrs", []),
    P("nat64 cidrs a string", f"{E1}.to[0].nat64.cidrs", "198.51.100.0/24"),
    P("nat64 cidr typo", f"{E1}.to[0].nat64", {"cidr": ["198.51.100.0/24"]}),
    P("nat64 both", f"{E1}.to[0].nat64.any", True, f"{E1}.to[0].nat64"),
    P("nat64 any false", f"{E1}.to[0].nat64", {"any": False}, f"{E1}.to[0].nat64.any"),
    P("nat64 0.0.0.0/0", f"{E1}.to[0].nat64.cidrs", ["0.0.0.0/0"], f"{E1}.to[0].nat64.cidrs[0]"),
    P("nat64 IPv6 cidr", f"{E1}.to[0].nat64.cidrs", ["2001:db8::/32"], f"{E1}.to[0].nat64.cidrs[0]"),
    P("nat64 host bits", f"{E1}.to[0].nat64.cidrs", ["198.51.100.1/24"], f"{E1}.to[0].nat64.cidrs[0]"),
    P("nat64 cidr a number", f"{E1}.to[0].nat64.cidrs", [3232235520], f"{E1}.to[0].nat64.cidrs[0]"),
    # --- policy: ports -------------------------------------------------------------------------------------
    P("port entry empty", f"{I0}.ports[0]", {}, f"{I0}.ports[0].protocol"),
    P("port entry a number", f"{I0}.ports[0]", 443),
    P("protocol missing", f"{I0}.ports[0].protocol", DEL),
    P("protocol lower case", f"{I0}.ports[0].protocol", "tcp"),
    P("protocol ICMP", f"{I0}.ports[0].protocol", "ICMP"),
    P("port missing", f"{I0}.ports[0].port", DEL, f"{I0}.ports[0]"),
    P("port 0", f"{I0}.ports[0].port", 0),
    P("port 70000", f"{I0}.ports[0].port", 70000),
    P("port a string", f"{I0}.ports[0].port", "https"),
    P("port a float", f"{I0}.ports[0].port", 80.0),
    P("port infinity", f"{I0}.ports[0].port", float("inf")),
    P("port huge", f"{I0}.ports[0].port", 2**64),
    P("endPort below port", f"{I0}.ports[1].endPort", 8000),
    P("endPort a string", f"{I0}.ports[1].endPort", "8444"),
    P("endPort without port", f"{I0}.ports[1].port", DEL, f"{I0}.ports[1]"),
    P("port unknown key", f"{I0}.ports[0].prot", 1, f"{I0}.ports[0]"),
    P("port and any", f"{I0}.ports[0].any", True, f"{I0}.ports[0]"),
    P("any without protocol", f"{I0}.ports", [{"any": True}], f"{I0}.ports[0].protocol"),
    P("Any with a port", f"{I1}.ports", [{"protocol": "Any", "port": 1}], f"{I1}.ports[0]"),
    P("Any with others", f"{I1}.ports", [{"protocol": "Any"}, {"protocol": "TCP", "port": 1, "endPort": 1}], f"{I1}.ports"),
    P("ICMPv6 with a port", f"{E1}.ports[0].port", 1, f"{E1}.ports[0]"),
    P("ICMPv6 without type", f"{E1}.ports[0].icmpType", DEL, f"{E1}.ports[0]"),
    P("icmpType on TCP", f"{I0}.ports[0].icmpType", 1, f"{I0}.ports[0]"),
    P("icmpType 256", f"{E1}.ports[0].icmpType", 256),
    P("icmpType a string", f"{E1}.ports[0].icmpType", "echo"),
    P("port any false", f"{E1}.ports[1].any", False),
    P("Deny port without endPort", f"{I1}.ports", [{"protocol": "TCP", "port": 22}], f"{I1}.ports[0].endPort"),
    # --- zones ---------------------------------------------------------------------------------------------
    Z("zone unknown spec key", "0.spec.namespace", ["a"], "spec"),
    Z("zone name upper case", "0.metadata.name", "DMZ"),
    Z("zone name injection", "0.metadata.name", INJECT),
    Z("zone name twice", "1.metadata.name", "dmz", "zones.dmz"),
    Z("zone id missing", "0.spec.id", DEL),
    Z("zone id 0", "0.spec.id", 0),
    Z("zone id too big", "0.spec.id", 0x10000),
    Z("zone id negative", "0.spec.id", -5),
    Z("zone id a float", "0.spec.id", 8192.0),
    Z("zone id true", "0.spec.id", True),
    Z("zone id garbage", "0.spec.id", "0xZZ"),
    Z("zone id twice", "1.spec.id", 0x2000, "both use id 0x2000"),
    Z("namespaces empty", "0.spec.namespaces", []),
    Z("namespaces a string", "0.spec.namespaces", "dmz-apps"),
    Z("namespace upper case", "0.spec.namespaces", ["Apps"], "spec.namespaces[0]"),
    Z("namespace twice", "0.spec.namespaces", ["a", "a"], "spec.namespaces"),
    Z("selector empty", "0.spec.namespaceSelector", {}),
    Z("selector a string", "0.spec.namespaceSelector", "all"),
    Z("selector typo", "0.spec.namespaceSelector", {"matchLabel": {"a": "b"}}),
    Z("matchLabels empty", "0.spec.namespaceSelector", {"matchLabels": {}}, "spec.namespaceSelector.matchLabels"),
    Z("matchLabels a list", "0.spec.namespaceSelector", {"matchLabels": ["a"]}, "spec.namespaceSelector.matchLabels"),
    Z("label value a number", "0.spec.namespaceSelector", {"matchLabels": {"a": 1}}, "spec.namespaceSelector.matchLabels.a"),
    Z("label value newline", "0.spec.namespaceSelector", {"matchLabels": {"a": "b\nc"}}, "spec.namespaceSelector.matchLabels.a"),
    Z("matchExpressions empty", "0.spec.namespaceSelector", {"matchExpressions": []}, "spec.namespaceSelector.matchExpressions"),
    Z("operator unknown", "0.spec.namespaceSelector", {"matchExpressions": [{"key": "k", "operator": "Equals"}]},
      "spec.namespaceSelector.matchExpressions[0].operator"),
    Z("In without values", "0.spec.namespaceSelector", {"matchExpressions": [{"key": "k", "operator": "In"}]},
      "spec.namespaceSelector.matchExpressions[0].values"),
    Z("Exists with values", "0.spec.namespaceSelector",
      {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["v"]}]}, "spec.namespaceSelector.matchExpressions[0].values"),
    Z("expression key missing", "0.spec.namespaceSelector", {"matchExpressions": [{"operator": "Exists"}]},
      "spec.namespaceSelector.matchExpressions[0].key"),
    Z("egress empty", "1.spec.egress", {}),
    Z("egress a string", "1.spec.egress", "198.51.100.21"),
    Z("egress unknown key", "1.spec.egress.addr", "198.51.100.22", "spec.egress"),
    Z("egress pool IPv6", "1.spec.egress.pool", "fd00::/64"),
    Z("egress pool /31", "1.spec.egress.pool", "100.64.21.0/31"),
    Z("egress pool host bits", "1.spec.egress.pool", "100.64.21.1/24"),
    Z("egress pool loopback", "1.spec.egress.pool", "127.0.0.0/24"),
    Z("egress address loopback", "1.spec.egress.address", "127.0.0.1"),
    Z("egress address unspecified", "1.spec.egress.address", "0.0.0.0"),
    Z("egress address multicast", "1.spec.egress.address", "224.0.0.1"),
    Z("egress address link-local", "1.spec.egress.address", "169.254.0.1"),
    Z("egress address broadcast", "1.spec.egress.address", "255.255.255.255"),
    Z("egress address in its pool", "1.spec.egress.address", "100.64.21.7"),
    Z("egress address a number", "1.spec.egress.address", 3325256725),
    Z("egress address shared", "0.spec.egress", {"pool": "100.64.20.0/24", "address": "198.51.100.21"}, "zones.web.egress.address"),
    Z("zone description newline", "0.spec.description", "a\nb"),
    # --- config: document, layout, nat64 ---------------------------------------------------------------------
    C("config unknown section", "config", "gatway", {}, ""),
    C("config kind", "config", "kind", "ConfigMap"),
    C("section a list", "config", "layout", ["fd00::/48"]),
    C("layout typo", "config", "layout.clustr", "fd00::/48", "layout"),
    C("cluster missing", "config", "layout.cluster", DEL),
    C("cluster a number", "config", "layout.cluster", 48),
    C("cluster IPv4", "config", "layout.cluster", "10.0.0.0/8"),
    C("cluster scope id", "config", "layout.cluster", "fd00:10:244::%x/48"),
    C("zoneField offset 120", "config", "layout.zoneField", {"offset": 120, "width": 16}, "layout.zoneField.offset"),
    C("zoneField a list", "config", "layout.zoneField", [64, 16]),
    C("zoneField typo", "config", "layout.zoneField", {"offest": 80}),
    C("zoneField width 0", "config", "layout.zoneField.width", 0),
    C("zoneField width 33", "config", "layout.zoneField.width", 33),
    C("zoneField offset negative", "config", "layout.zoneField.offset", -1),
    C("zoneField overlaps node prefix", "config", "layout.zoneField.offset", 48, "layout.zoneField"),
    C("nodePrefixLength a string", "config", "layout.nodePrefixLength", "64"),
    C("nodePrefixLength 200", "config", "layout.nodePrefixLength", 200),
    C("ipamBits huge", "config", "layout.ipamBits", 10**9),
    C("ipamBits overlap", "config", "layout.ipamBits", 64, "layout.zoneField"),
    C("datacenter does not contain", "config", "layout.datacenter", "fd00:20::/40", "layout.datacenter"),
    C("nat64 typo", "config", "nat64.prefx", "fd64:ff9b::/96", "nat64"),
    C("nat64 enabled a string", "config", "nat64.enabled", "false"),
    C("nat64 prefix /80", "config", "nat64.prefix", "fd64:ff9b::/80"),
    C("nat64 prefix overlaps cluster", "config", "nat64.prefix", "fd00:10:244:1::/96", "nat64.prefix"),
    C("nat64 prefix scope", "config", "nat64.prefix", "fd64::%x\nevil/96"),
    # --- config: dns (zonectl render coredns) ---------------------------------------------------------------
    C("dns typo", "dns", "dns.upstream", ["192.0.2.53"], "dns"),
    C("dns upstreams empty", "dns", "dns.upstreams", []),
    C("dns upstream newline", "dns", "dns.upstreams", ["192.0.2.53\n}"], "dns.upstreams[0]"),
    C("dns upstream a hostname", "dns", "dns.upstreams", ["dns.example"], "dns.upstreams[0]"),
    C("dns upstream port 99999", "dns", "dns.upstreams", ["192.0.2.53:99999"], "dns.upstreams[0]"),
    C("dns upstream a number", "dns", "dns.upstreams", [53], "dns.upstreams[0]"),
    C("dns clusterDomain space", "dns", "dns.clusterDomain", "cluster local"),
    C("dns clusterDomain newline", "dns", "dns.clusterDomain", "cluster.local\n"),
    C("dns nativeZones a string", "dns", "dns.nativeZones", "corp.example"),
    C("dns cacheSeconds negative", "dns", "dns.cacheSeconds", -1),
    C("dns translateAll a string", "dns", "dns.translateAll", "yes"),
    C("dns namespace", "dns", "dns.namespace", "Kube System"),
    # --- config: gateway (zonectl gateway apply --dry-run) ---------------------------------------------------
    C("gateway typo", "gateway", "gateway.uplnk", "eth1", "gateway"),
    C("uplink missing", "gateway", "gateway.uplink", DEL),
    C("uplink newline", "gateway", "gateway.uplink", "eth0\n"),
    C("uplink too long", "gateway", "gateway.uplink", "a" * 16),
    C("uplink lo", "gateway", "gateway.uplink", "lo"),
    C("stateDir /", "gateway", "gateway.stateDir", "/"),
    C("stateDir /etc", "gateway", "gateway.stateDir", "/etc"),
    C("stateDir /var/lib", "gateway", "gateway.stateDir", "/var/lib"),
    C("stateDir under /proc", "gateway", "gateway.stateDir", "/proc/zonectl"),
    C("stateDir relative", "gateway", "gateway.stateDir", "var/lib/zonectl"),
    C("stateDir dot-dot", "gateway", "gateway.stateDir", "/var/lib/zonectl/../../etc"),
    C("stateDir space", "gateway", "gateway.stateDir", "/var/lib/zone ctl"),
    C("tayga typo", "gateway", "gateway.tayga.pol", "100.64.0.0/24", "gateway.tayga"),
    C("tayga pool /31", "gateway", "gateway.tayga.pool", "100.64.0.0/31"),
    C("tayga pool multicast", "gateway", "gateway.tayga.pool", "224.0.0.0/24"),
    C("tayga pool a number", "gateway", "gateway.tayga.pool", 24),
    C("tayga ipv4Address outside pool", "gateway", "gateway.tayga.ipv4Address", "100.65.0.1"),
    C("tayga tun too long", "gateway", "gateway.tayga.tun", "zt64abcdefg"),
    C("tayga binary newline", "gateway", "gateway.tayga.binary", "tayga\n--evil"),
    C("tayga version garbage", "gateway", "gateway.tayga.version", "latest"),
    C("static map inside the pool", "gateway", "gateway.staticMaps", [{"ipv4": "100.64.0.80", "ipv6": "fd00:10:96::80"}],
      "gateway.staticMaps[0].ipv4"),
    C("static map typo", "gateway", "gateway.staticMaps", [{"ip4": "198.51.100.80", "ipv6": "fd00:10:96::80"}],
      "gateway.staticMaps[0]"),
    C("static map loopback", "gateway", "gateway.staticMaps", [{"ipv4": "127.0.0.2", "ipv6": "fd00:10:96::80"}],
      "gateway.staticMaps[0].ipv4"),
    C("destinations an object", "gateway", "gateway.destinations", {"a": "192.0.2.0/24"}),
    C("marks mask zero", "gateway", "gateway.marks.mask", 0),
    C("marks mask not contiguous", "gateway", "gateway.marks.mask", 0xF0F0),
    C("routing tableBase low", "gateway", "gateway.routing.tableBase", 10),
    C("routing rulePriority a string", "gateway", "gateway.routing.rulePriority", "4200"),
    C("metrics port 99999", "gateway", "gateway.metrics.listen", "[::]:99999"),
    C("metrics port 0", "gateway", "gateway.metrics.listen", "127.0.0.1:0"),
    C("metrics host a name", "gateway", "gateway.metrics.listen", "localhost:9464"),
    C("restart NaN", "gateway", "gateway.restart.initialDelay", float("nan")),
    C("restart order", "gateway", "gateway.restart.initialDelay", 60, "gateway.restart"),
    C("restart probeInterval 0", "gateway", "gateway.restart.probeInterval", 0),
    C("restart probeFailures 0", "gateway", "gateway.restart.probeFailures", 0),
    C("filter backend typo", "gateway", "gateway.filter", "iptables"),
    C("filter backend a list", "gateway", "gateway.filter", ["nftables"]),
    C("tayga instances 0", "gateway", "gateway.tayga.instances", 0),
    C("tayga instances 17", "gateway", "gateway.tayga.instances", 17),
    C("tayga instances a string", "gateway", "gateway.tayga.instances", "2"),
    C("tayga zoneInstances negative", "gateway", "gateway.tayga.zoneInstances", -1),
    C("tayga hash typo", "gateway", "gateway.tayga.hash", "round-robin"),
    # --- config: operator (zonectl operator check-config) --------------------------------------------------
    C("operator typo", "operator", "operator.labelkey", "x", "operator"),
    C("operator insecure a string", "operator", "operator.webhook.insecure", "false"),
    C("operator webhook port 0", "operator", "operator.webhook.port", 0),
    C("operator webhook addr", "operator", "operator.webhook.addr", "any"),
    C("operator metrics port huge", "operator", "operator.metrics.port", 10**10),
    C("operator spoofedHint", "operator", "operator.spoofedHint", "Replace"),
    C("operator adminNamespaces a string", "operator", "operator.adminNamespaces", "zonectl-system"),
    C("operator adminNamespaces empty", "operator", "operator.adminNamespaces", []),
    C("operator resyncSeconds NaN", "operator", "operator.resyncSeconds", float("nan")),
    C("operator labelKey newline", "operator", "operator.labelKey", "zone\n"),
    C("operator section a list", "operator", "operator", ["x"]),
] + [
    renamed("policy", p, p.rsplit(".", 1)[1] + "s" if not p.endswith("s") else p.rsplit(".", 1)[1][:-1]) for p in (
        "spec.priority", "spec.ingress", "spec.egress", "spec.zones", f"{I0}.from", f"{I0}.ports", f"{E0}.to",
        f"{I0}.ports[0].port", f"{E1}.to[0].nat64.cidrs", f"{I1}.ports[0].protocol", f"{E1}.ports[0].icmpType")
]


def apply(doc: Any, edits: tuple[tuple[str, Any], ...]) -> Any:
    doc = copy.deepcopy(doc)
    for path, value in edits:
        keys = _keys(path)
        node = doc
        for k in keys[:-1]:
            node = node[k]
        if value is DEL:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return doc


def write(tmp: Path, target: str, doc: Any) -> dict[str, Path]:
    docs = {"policies": [BASE_POLICY], "zones": BASE_ZONES, "config": BASE_CONFIG}
    docs[DOCUMENT.get(target, "config")] = doc if isinstance(doc, list) and target == "zone" else \
        ([doc] if target == "policy" else doc)
    files = {}
    for name, content in docs.items():
        path = tmp / f"{name}.yaml"
        if name == "config":
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        else:
            path.write_text(yaml.safe_dump_all(content, sort_keys=False))
        files[name] = path
    return files


def run(capsys, tmp: Path, target: str, doc: Any) -> tuple[int, str, str]:
    code = cli.main(TARGETS[target].argv(write(tmp, target, doc)))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.target}: {c.id}")
def test_bad_input_is_one_line_naming_the_field(capsys, tmp_path: Path, case: Case) -> None:
    code, out, err = run(capsys, tmp_path, case.target, apply(TARGETS[case.target].base(), case.edits))
    assert "Traceback" not in err
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith("zonectl: error: "), err
    assert case.field in err, err


@pytest.mark.parametrize("target", ["policy", "zone", "config", "dns", "operator"])
def test_the_base_documents_are_accepted(capsys, tmp_path: Path, target: str) -> None:
    """Every case is one change away from a document the same command accepts."""
    code, out, err = run(capsys, tmp_path, target, TARGETS[target].base())
    assert (code, err) == (0, "") and out


def test_the_base_gateway_section_is_accepted() -> None:
    """The gateway command also needs the host (it stops at the missing uplink); its section parses."""
    from zonectl.core.config import parse_config
    from zonectl.gateway.config import parse_gateway

    assert parse_gateway(parse_config(BASE_CONFIG).section("gateway")).uplink == "zt9nosuch0"


def test_enough_cases_and_unique_ids() -> None:
    assert len(CASES) >= 150
    assert len({(c.target, c.id) for c in CASES}) == len(CASES)


SUBPROCESS = ["policy: nat64 empty", "policy: ports missing", "zone: selector empty", "config: zoneField offset 120",
              "gateway: stateDir /", "dns: dns upstream newline"]


@pytest.mark.parametrize("case", [c for c in CASES if f"{c.target}: {c.id}" in SUBPROCESS], ids=lambda c: c.id)
def test_bad_input_through_a_real_process(tmp_path: Path, case: Case) -> None:
    """The same as a separate `python -m zonectl` process: exit status, streams and message are the real ones."""
    argv = TARGETS[case.target].argv(write(tmp_path, case.target, apply(TARGETS[case.target].base(), case.edits)))
    proc = subprocess.run([sys.executable, "-m", "zonectl", *argv], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr.count("\n") == 1 and case.field in proc.stderr and "Traceback" not in proc.stderr


def test_the_subprocess_sample_exists() -> None:
    assert {f"{c.target}: {c.id}" for c in CASES} >= set(SUBPROCESS)
