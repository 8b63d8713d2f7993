"""Bad inputs through the real command line: each is refused with exit status 2 and one line naming the field.

Every case is one small change to a valid document (a policy, a zone, the config with all its sections,
the published rules document, a node list) and the command that reads that document (`zonectl compile`,
`render coredns`, `gateway apply`, `operator check-config`, `export --nodes`), run in-process through
``zonectl.cli.main`` with stdout and stderr captured. Each must end with exit status 2, nothing on
stdout, exactly one line on stderr that names the field path, and no traceback. Targets that act on a
real world (``gateway apply`` in a network namespace of the test's own: the ``netfilter_world`` fixture)
must also leave it byte-identical (``zonectl.harness.netns.netfilter_state``: ip6tables, iptables, nft).

To add a case, add a row to CASES: ``Case(id, target, edits, field)`` where ``edits`` sets (or, with
DEL, removes) values at dotted paths of the target's base document, ``raw`` gives the file's bytes
(duplicate keys, encodings, aliases: what a parsed document cannot show) and ``argv`` extra command-line
options (the last of a repeated option wins). A new kind of input adds a TARGETS entry: its base document,
the file it is written to, how to run it, and the world it acts on: ``netfilter`` (``gateway apply`` in a
network namespace of the test's own) or ``nb`` (``ovn sync`` against a real OVN Northbound shaped like
OVN-K's, with zonectl's rows in it, shared by the module; ``harness.ovnk_cluster.nb_dump``). Either must be
byte-identical after every refused input.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from zonectl import cli
from zonectl.core import published
from zonectl.core.config import parse_config
from zonectl.core.rules import compile_objects
from zonectl.core.zones import ZoneRegistry

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
  uplink: zt9up0
  stateDir: /tmp/zonectl-bad-inputs-TOKEN/gateway
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
ovn:
  timeout: 5
  ssl: {key: /etc/zonectl/ovn/key.pem, cert: /etc/zonectl/ovn/cert.pem, ca: /etc/zonectl/ovn/ca.pem}
  controller: zonectl
  tier: 1
  allowAction: allow-related
  denyAction: drop
  priorityMin: 1100
  priorityMax: 1999
  nodePortPrefix: k8s-
  mode: central
  drift: repair
  snat: report
  resyncSeconds: 60
  maxSwitchDrop: 0
  allowEmpty: false
""".replace("TOKEN", secrets.token_hex(4)))
BASE_NODES = yaml.safe_load((EX / "nodes.yaml").read_text())


def _published() -> dict[str, Any]:
    """The document the controller publishes for the base policy and zones (with the node agents' part)."""
    config = parse_config(BASE_CONFIG)
    registry = ZoneRegistry.from_objects(config.layout, BASE_ZONES)
    rules = compile_objects([BASE_POLICY], registry, config.nat64)
    return published.document(rules, registry, complete=True, keep=["zonectl-system/kept"])


BASE_PUBLISHED = _published()


@dataclass(frozen=True)
class Target:
    """A kind of input: its base document, the file it goes to, the command that reads it (argv from the
    written files) and the world it acts on (a fixture giving extra argv and a state to compare)."""

    base: Callable[[], Any]
    argv: Callable[[dict[str, Path]], list[str]]
    file: str = "config"  # which of the files the edited document replaces
    world: str | None = None  # "netfilter" or "nb": the world the command acts on (see WORLDS)


def _compile(files: dict[str, Any]) -> list[str]:
    return ["compile", "--config", str(files["config"]), "--zones", str(files["zones"]), "-f", str(files["policies"]),
            "--target", "ir"]


def _gateway(files: dict[str, Path]) -> list[str]:
    return ["gateway", "apply", "--config", str(files["config"]), "--zones", str(files["zones"]),
            "--policies", str(files["policies"])]


TARGETS: dict[str, Target] = {
    "policy": Target(lambda: BASE_POLICY, _compile, "policies"),
    "zone": Target(lambda: BASE_ZONES, _compile, "zones"),
    "config": Target(lambda: BASE_CONFIG, _compile),
    "dns": Target(lambda: BASE_CONFIG, lambda f: ["render", "coredns", "--config", str(f["config"])]),
    "gateway": Target(lambda: BASE_CONFIG, _gateway, world="netfilter"),
    "operator": Target(lambda: BASE_CONFIG, lambda f: ["operator", "check-config", "--config", str(f["config"])]),
    # `zonectl ovn sync` against a real NB that already holds the base policy's rows: the `ovn` section, the
    # layout as NB sees it, and the command's options. Every refusal leaves NB byte-identical.
    "ovn": Target(lambda: BASE_CONFIG, lambda f: ["ovn", "sync", "--config", str(f["config"]), "--zones",
                                                  str(f["zones"]), "-f", str(f["policies"])], world="nb"),
    "published": Target(lambda: BASE_PUBLISHED, lambda f: ["gateway", "apply", "--config", str(f["config"]),
                                                           "--inputs", str(f["inputs"])], "inputs", world="netfilter"),
    "nodes": Target(lambda: BASE_NODES, lambda f: ["export", "--format", "csv", "--config", str(f["config"]),
                                                   "--zones", str(f["zones"]), "--nodes", str(f["nodes"])], "nodes"),
    # "admission": AdmissionReviews through the webhook over HTTP (HTTP 400 or a denial): added with the
    # webhook's own bad-input work, as a target whose run posts the review instead of calling the CLI.
}
WORLDS = {"netfilter": "netfilter_world", "nb": "bad_inputs_nb"}  # world name -> fixture


@dataclass(frozen=True)
class Case:
    id: str
    target: str
    edits: tuple[tuple[str, Any], ...]
    field: str  # the field path the one-line message must name
    raw: bytes | None = None  # the file's bytes instead of the edited document
    argv: tuple[str, ...] = ()  # extra command-line options (the last of a repeated option wins)


def R(id: str, target: str, raw: str | bytes, field: str) -> Case:
    """A case written as raw file content (duplicate keys, encodings, aliases, kinds of whole documents)."""
    return Case(id, target, (), field, raw.encode() if isinstance(raw, str) else raw)


def P(id: str, path: str, value: Any, field: str | None = None, *more: tuple[str, Any]) -> Case:
    return Case(id, "policy", ((path, value), *more), field or path)


def Z(id: str, path: str, value: Any, field: str | None = None, *more: tuple[str, Any]) -> Case:
    return Case(id, "zone", ((path, value), *more), field or path.split(".", 1)[1])


def C(id: str, target: str, path: str, value: Any, field: str | None = None, *more: tuple[str, Any]) -> Case:
    return Case(id, target, ((path, value), *more), field or path)


def N(id: str, path: str, value: Any, field: str | None = None, *more: tuple[str, Any]) -> Case:
    """A case of the `ovn` section, refused by `zonectl ovn sync` (NB untouched) and `operator check-config`."""
    return Case(id, "ovn", ((path, value), *more), field or path)


def OPT(id: str, *argv: str, field: str) -> Case:
    """A bad option of `zonectl ovn sync` (the config is the valid base)."""
    return Case(id, "ovn", (), field, argv=argv)


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
    # --- config: ovn (zonectl ovn sync against a real NB; also operator check-config) ------------------------
    N("ovn section a list", "ovn", ["nb"]),
    N("ovn typo", "ovn.timout", 5, "ovn: unknown field(s) timout (did you mean timeout?)", ("ovn.timeout", DEL)),
    N("ovn timeout a string", "ovn.timeout", "abc"),
    N("ovn timeout NaN", "ovn.timeout", float("nan")),
    N("ovn timeout infinite", "ovn.timeout", float("inf")),
    N("ovn timeout negative", "ovn.timeout", -1),
    N("ovn timeout 0", "ovn.timeout", 0),
    N("ovn timeout true", "ovn.timeout", True),
    N("ovn timeout a year", "ovn.timeout", 3.2e7),
    N("ovn nb not a remote", "ovn.nb", "http://nb.example:6641"),
    N("ovn nb without port", "ovn.nb", "tcp:127.0.0.1"),
    N("ovn nb port 99999", "ovn.nb", "tcp:127.0.0.1:99999"),
    N("ovn nb IPv6 without brackets", "ovn.nb", "tcp:fd00::1:6641"),
    N("ovn nb unix without path", "ovn.nb", "unix:"),
    N("ovn nb newline", "ovn.nb", "tcp:127.0.0.1:6641\n"),
    N("ovn nb empty in a list", "ovn.nb", "tcp:127.0.0.1:6641,,tcp:127.0.0.2:6641"),
    N("ovn nb a number", "ovn.nb", 6641),
    N("ovn nb a list", "ovn.nb", ["tcp:127.0.0.1:6641"]),
    N("ovn ssl a string", "ovn.ssl", "/etc/zonectl/ovn"),
    N("ovn ssl typo", "ovn.ssl.certfile", "/x.pem", "ovn.ssl"),
    N("ovn ssl key a number", "ovn.ssl.key", 1),
    N("ovn ssl key newline", "ovn.ssl.key", "/k.pem\n"),
    N("ovn controller space", "ovn.controller", "zone ctl"),
    N("ovn controller empty", "ovn.controller", ""),
    N("ovn tier 4", "ovn.tier", 4),
    N("ovn tier a string", "ovn.tier", "1"),
    N("ovn tier a float", "ovn.tier", 1.0),
    N("ovn tier null", "ovn.tier", None),
    N("ovn allowAction Allow", "ovn.allowAction", "Allow"),
    N("ovn allowAction drop", "ovn.allowAction", "drop"),
    N("ovn denyAction reject", "ovn.denyAction", "reject"),
    N("ovn denyAction deny", "ovn.denyAction", "deny"),
    N("ovn priorityMin a float", "ovn.priorityMin", 1.5),
    N("ovn priorityMin a string", "ovn.priorityMin", "1100"),
    N("ovn priorityMin negative", "ovn.priorityMin", -1),
    N("ovn priorityMax too high", "ovn.priorityMax", 40000),
    N("ovn priorityMax NaN", "ovn.priorityMax", float("nan")),
    N("ovn priority band upside down", "ovn.priorityMin", 2500, "ovn.priorityMin"),
    N("ovn switches empty", "ovn.switches", []),
    N("ovn switches a string", "ovn.switches", "node1"),
    N("ovn switches a number", "ovn.switches", [1], "ovn.switches[0]"),
    N("ovn switches twice", "ovn.switches", ["node1", "node1"]),
    N("ovn switches space", "ovn.switches", ["node 1"], "ovn.switches[0]"),
    N("ovn nodePortPrefix space", "ovn.nodePortPrefix", "k8s -"),
    N("ovn nodePortPrefix a number", "ovn.nodePortPrefix", 8),
    N("ovn mode Central", "ovn.mode", "Central"),
    N("ovn drift fix", "ovn.drift", "fix"),
    N("ovn snat delete", "ovn.snat", "delete"),
    N("ovn resyncSeconds 0", "ovn.resyncSeconds", 0),
    N("ovn resyncSeconds NaN", "ovn.resyncSeconds", float("nan")),
    N("ovn maxSwitchDrop above 1", "ovn.maxSwitchDrop", 1.5),
    N("ovn maxSwitchDrop negative", "ovn.maxSwitchDrop", -0.1),
    N("ovn maxSwitchDrop a string", "ovn.maxSwitchDrop", "0.5"),
    N("ovn allowEmpty a string", "ovn.allowEmpty", "true"),
    N("ovn allowEmpty a number", "ovn.allowEmpty", 1),
    # --- ovn: inputs that match nothing in NB (refused by the sync itself, NB untouched) -------------------
    *(NB_LEVEL := [Case("another cluster's prefix", "ovn", (("layout.cluster", "fd00:10:245::/48"),), "layout.cluster"),
    Case("a datacenter that is not this cluster's", "ovn", (("layout.cluster", "fd00:20:244::/48"),
                                                            ("layout.datacenter", "fd00:20:200::/40")), "layout.cluster"),
    Case("switches naming one NB lacks", "ovn", (("ovn.switches", ["node1", "node9"]),), "ovn.switches"),
    Case("switches naming join", "ovn", (("ovn.switches", ["node1", "join"]),), "ovn.switches"),
    Case("switches naming fewer than carry the rows", "ovn", (("ovn.switches", ["node1"]),), "--allow-switch-drop"),
    Case("zone field inside the node subnets", "ovn", (("layout.nodePrefixLength", 56), ("layout.zoneField.offset", 56)),
         "layout.zoneField")]),
    # --- ovn sync options ----------------------------------------------------------------------------------
    OPT("--timeout nan", "--timeout", "nan", field="--timeout"),
    OPT("--timeout inf", "--timeout", "inf", field="--timeout"),
    OPT("--timeout -1", "--timeout", "-1", field="--timeout"),
    OPT("--timeout 0", "--timeout", "0", field="--timeout"),
    OPT("--timeout abc", "--timeout", "abc", field="--timeout"),
    OPT("--nb http", "--nb", "http://nb.example:6641", field="--nb"),
    OPT("--nb without port", "--nb", "tcp:127.0.0.1", field="--nb"),
    OPT("--nb bracket", "--nb", "tcp:[::1:6641", field="--nb"),
    OPT("--nb unix without path", "--nb", "unix:", field="--nb"),
    OPT("--nb newline", "--nb", "unix:/run/nb.sock\nx", field="--nb"),
    OPT("--nb empty", "--nb", " , ", field="--nb"),
] + [
    renamed("policy", p, p.rsplit(".", 1)[1] + "s" if not p.endswith("s") else p.rsplit(".", 1)[1][:-1]) for p in (
        "spec.priority", "spec.ingress", "spec.egress", "spec.zones", f"{I0}.from", f"{I0}.ports", f"{E0}.to",
        f"{I0}.ports[0].port", f"{E1}.to[0].nat64.cidrs", f"{I1}.ports[0].protocol", f"{E1}.ports[0].icmpType")
]


# --- the published rules document (gateway apply --inputs, in a namespace) ------------------------------
G0, G1, O0 = "rules[0]", "rules[1]", "ovn.otherRules[0]"
W = "zones[1].spec.egress"  # web's own IPv4 egress


def D(id: str, path: str, value: Any, field: str | None = None, *more: tuple[str, Any]) -> Case:
    return Case(id, "published", ((path, value), *more), field or path)


CASES += [
    D("apiVersion other", "apiVersion", "zonectl.io/v1"),
    D("kind plural", "kind", "GatewayInputss"),
    D("kind lower case", "kind", "gatewayinputs"),
    D("kind missing", "kind", DEL, "missing field(s) kind"),
    D("unknown top-level key", "extra", 1, "unknown field(s) extra"),
    D("zones an object", "zones", {"dmz": 1}),
    D("rules missing", "rules", DEL, "missing field(s) rules"),
    D("rules a string", "rules", "[]"),
    D("zone unknown key", "zones[0].spec.namespaces", ["a"], "zones[0].spec"),
    D("zone name injection", "zones[0].metadata.name", INJECT),
    D("zone name upper case", "zones[0].metadata.name", "DMZ"),
    D("zone id a string", "zones[0].spec.id", "0x2000"),
    D("zone id a float", "zones[0].spec.id", 8192.0),
    D("zone id 0", "zones[0].spec.id", 0),
    D("zone id too big for the field", "zones[0].spec.id", 0x10000, "spec.id"),
    D("zone id twice", "zones[1].spec.id", 0x2000, "both use id 0x2000"),
    D("egress pool not canonical", f"{W}.pool", "100.64.21.0/255.255.255.0"),
    D("egress pool newline", f"{W}.pool", "100.64.21.0/24\n"),
    D("egress address injection", f"{W}.address", "198.51.100.21\nmap 1.2.3.4 ::1"),
    D("egress address loopback", f"{W}.address", "127.0.0.1", "spec.egress.address"),
    D("egress address missing", f"{W}.address", DEL, W),
    D("rule not an object", G0, "allow", G0),
    D("rule unknown key", f"{G0}.comment", "x", G0),
    D("rule field missing", f"{G0}.name", DEL, G0),
    D("portMin injection", f"{G0}.portMin", "53\n-A INPUT -s ::/0 -j ACCEPT"),
    D("portMin 0", f"{G0}.portMin", 0),
    D("portMin 70000", f"{G0}.portMin", 70000),
    D("portMin a float", f"{G0}.portMin", 53.0),
    D("portMin true", f"{G0}.portMin", True),
    D("portMax below portMin", f"{G0}.portMax", 52, G0),
    D("protocol upper case", f"{G0}.protocol", "UDP"),
    D("protocol injection", f"{G0}.protocol", "udp -j ACCEPT"),
    D("direction capitalised", f"{G0}.direction", "Egress"),
    D("action ACCEPT", f"{G0}.action", "ACCEPT"),
    D("policy injection", f"{G0}.policy", "zonectl-system/p\n-A INPUT -j ACCEPT"),
    D("policy without namespace", f"{G0}.policy", "p"),
    D("zone not in zones", f"{G0}.zone", "nosuch", G0),
    D("src any", f"{G0}.src", "::/0"),
    D("src not the zone", f"{G0}.src", "fd00:10:244:0:3000::/ffff:ffff:ffff:0:ffff::", G0),
    D("dst a prefix length", f"{G0}.dst", "fd64:ff9b::c000:200/120"),
    D("dst injection", f"{G0}.dst", "fd64:ff9b::/96 -j ACCEPT"),
    D("dst a list", f"{G0}.dst", ["fd64:ff9b::/96"]),
    D("name injection", f"{G0}.name", INJECT),
    D("name upper case", f"{G0}.name", "V4"),
    D("generation negative", f"{G0}.generation", -1),
    D("order too big", f"{G0}.order", 2**62),
    D("id not a rule id", f"{G0}.id", "r1"),
    D("id of other content", f"{G0}.id", "r000000000000000", G0),
    D("id twice", f"{G1}.id", BASE_PUBLISHED["rules"][0]["id"], G1),
    D("nat64 a string", f"{G0}.nat64", "true"),
    D("nat64 false in rules", f"{G0}.nat64", False, G0),
    D("isDefault 1", f"{G0}.isDefault", 1),
    D("icmpType 256", f"{O0}.icmpType", 256),
    D("ovn a list", "ovn", []),
    D("ovn unknown key", "ovn.rules", [], "ovn"),
    D("keepPolicies a string", "ovn.keepPolicies", "zonectl-system/kept"),
    D("keepPolicies injection", "ovn.keepPolicies", ["ns/p\nx"], "ovn.keepPolicies[0]"),
    D("keepPolicies twice", "ovn.keepPolicies", ["ns/p", "ns/p"]),
    D("otherRules a NAT64 rule", "ovn.otherRules", [BASE_PUBLISHED["rules"][0]], O0),
    R("published: duplicate key", "published", '{"apiVersion": "zonectl.io/v1alpha1", "apiVersion": "x"}',
      "duplicate key 'apiVersion'"),
    R("published: NaN", "published", json.dumps({**BASE_PUBLISHED, "rules": [float("nan")]}), "NaN"),
    R("published: not JSON", "published", "apiVersion: zonectl.io/v1alpha1\n", "line 1, column 1"),
    R("published: UTF-16", "published", json.dumps(BASE_PUBLISHED).encode("utf-16"), "UTF-16"),
    R("published: deep", "published", "[" * 50_000 + "]" * 50_000, "nested too deeply"),
    R("published: empty file", "published", "", "line 1, column 1"),
]

# --- node lists (export --nodes) --------------------------------------------------------------------------
N0, N1, N2 = "items[0]", "items[1]", "items[2]"
ANN = f"{N2}.metadata.annotations"


def subnets(value: Any) -> dict[str, Any]:
    return {"k8s.ovn.org/node-subnets": value}


def ND(id: str, path: str, value: Any, field: str, *more: tuple[str, Any]) -> Case:
    return Case(id, "nodes", ((path, value), *more), field)


CASES += [
    ND("kind plural", f"{N0}.kind", "Nodes", "items[0]: kind: 'Nodes'"),
    ND("kind missing", f"{N0}.kind", DEL, "items[0]: kind: is missing"),
    ND("apiVersion other", f"{N0}.apiVersion", "v2", "items[0]: apiVersion"),
    ND("items a string", "items", "nodes", "items: must be a list"),
    ND("item a string", N0, "ovn-control-plane", "items[0]: is not an object"),
    ND("item null", N0, None, "items[0]: is not an object"),
    ND("podCIDRs a string", f"{N0}.spec.podCIDRs", "fd00:10:244:1::/64", "spec.podCIDRs: must be a list"),
    ND("podCIDRs empty", f"{N0}.spec.podCIDRs", [], "spec.podCIDRs: is empty"),
    ND("IPv4 only", f"{N0}.spec.podCIDRs", ["10.244.1.0/24"], "spec.podCIDRs: no IPv6 CIDRs",
      (f"{N0}.spec.podCIDR", "10.244.1.0/24")),
    ND("two IPv6", f"{N0}.spec.podCIDRs", ["fd00:10:244:1::/64", "fd00:10:244:9::/64"], "spec.podCIDRs: 2 IPv6 CIDRs"),
    ND("podCIDR not podCIDRs[0]", f"{N0}.spec.podCIDR", "fd00:10:244:9::/64", "spec.podCIDR:"),
    ND("podCIDR a number", f"{N1}.spec.podCIDRs", [42], "spec.podCIDRs[0]: must be a CIDR string",
      (f"{N1}.spec.podCIDR", DEL)),
    ND("podCIDR outside the cluster", f"{N1}.spec.podCIDRs", ["fd00:99::/64"], "spec.podCIDRs[0]: node CIDR fd00:99::/64 "
      "is not inside the cluster", (f"{N1}.spec.podCIDR", DEL)),
    ND("podCIDR a /80", f"{N1}.spec.podCIDRs", ["fd00:10:244:2:1::/80"], "spec.podCIDRs[0]: node CIDR", (f"{N1}.spec.podCIDR", DEL)),
    ND("podCIDR host bits", f"{N1}.spec.podCIDRs", ["fd00:10:244:2::1/64"], "spec.podCIDRs[0]: 'fd00:10:244:2::1/64' is not",
      (f"{N1}.spec.podCIDR", DEL)),
    ND("podCIDR scope", f"{N1}.spec.podCIDRs", ["fd00:10:244:2::%eth0/64"], "spec.podCIDRs[0]", (f"{N1}.spec.podCIDR", DEL)),
    ND("podCIDR newline", f"{N1}.spec.podCIDRs", ["fd00:10:244:2::/64\n"], "spec.podCIDRs[0]", (f"{N1}.spec.podCIDR", DEL)),
    ND("two nodes one CIDR", f"{N1}.spec.podCIDRs", ["fd00:10:244:1::/64"], "is also the podCIDR of",
      (f"{N1}.spec.podCIDR", DEL)),
    ND("annotation not JSON", ANN, subnets("{default: x}"), "node-subnets]: is not JSON"),
    ND("annotation a list", ANN, subnets('["fd00:10:244:3::/64"]'), "node-subnets]: must be a JSON object"),
    ND("annotation without default", ANN, subnets('{"red": ["fd00:10:244:3::/64"]}'), 'has no "default" network'),
    ND("annotation default a number", ANN, subnets('{"default": 7}'), "node-subnets].default: must be a list"),
    ND("annotation a number", ANN, subnets(7), "node-subnets]: must be a JSON string"),
    ND("annotations a list", f"{N2}.metadata.annotations", ["a"], "metadata.annotations: must be"),
    ND("no podCIDR at all", f"{N2}.metadata.annotations", {}, "the node has no podCIDR"),
    ND("name missing", f"{N0}.metadata.name", DEL, "metadata.name"),
    ND("name newline", f"{N0}.metadata.name", "n\n-A INPUT", "metadata.name"),
    ND("metadata a string", f"{N0}.metadata", "x", "metadata: must be"),
    ND("spec a list", f"{N0}.spec", ["x"], "spec: must be"),
    R("nodes: cidrs with host bits", "nodes", "cidrs: [fd00:10:244:1::1/64]\n", "cidrs[0]"),
    R("nodes: cidrs a string", "nodes", "cidrs: fd00:10:244:1::/64\n", "cidrs: must be a list"),
    R("nodes: cidrs twice", "nodes", "cidrs: [fd00:10:244:1::/64, fd00:10:244:1::/64]\n", "is also the podCIDR of"),
    R("nodes: cidrs and a key", "nodes", "cidrs: [fd00:10:244:1::/64]\nnodes: 1\n", "kind: is missing"),
    R("nodes: duplicate key", "nodes", "apiVersion: v1\nkind: Node\nkind: Node\nmetadata: {name: a}\n", "duplicate key 'kind'"),
    R("nodes: JSON duplicate key", "nodes", '{"cidrs": ["fd00:10:244:1::/64"], "cidrs": []}', "duplicate key 'cidrs'"),
    R("nodes: binary", "nodes", bytes(range(256)), "binary"),
]

# --- whole documents: kinds, duplicate keys, encodings, aliases --------------------------------------------
POLICY_TEXT = yaml.safe_dump(BASE_POLICY, sort_keys=False)
ZONES_TEXT = yaml.safe_dump_all(BASE_ZONES, sort_keys=False)
CONFIG_TEXT = yaml.safe_dump(BASE_CONFIG, sort_keys=False)
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
CASES += [
    R("policy: kind plural", "policy", POLICY_TEXT.replace("kind: SecurityZonePolicy", "kind: SecurityZonePolicys"),
      "kind: 'SecurityZonePolicys' is not one zonectl reads here (SecurityZone, SecurityZonePolicy; did you mean "
      "SecurityZonePolicy?)"),
    R("policy: kind lower case", "policy", POLICY_TEXT.replace("kind: SecurityZonePolicy", "kind: securityzonepolicy"),
      "kind: 'securityzonepolicy'"),
    R("policy: kind missing", "policy", POLICY_TEXT.replace("kind: SecurityZonePolicy\n", ""), "kind: is missing"),
    R("policy: other apiVersion", "policy", POLICY_TEXT.replace("zonectl.io/v1alpha1", "zonectl.io/v1beta1"),
      "apiVersion: 'zonectl.io/v1beta1' is not zonectl.io/v1alpha1"),
    R("policy: apiVersion missing", "policy", POLICY_TEXT.replace("apiVersion: zonectl.io/v1alpha1\n", ""),
      "apiVersion: is missing"),
    R("policy: a Namespace too", "policy", POLICY_TEXT + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
      "document 2: kind: 'Namespace'"),
    R("policy: List of strings", "policy", "apiVersion: v1\nkind: List\nitems: [a, b]\n", "items[0]: is not an object"),
    R("policy: List items an object", "policy", "apiVersion: v1\nkind: List\nitems: {a: 1}\n", "items: must be a list"),
    R("policy: a document a list", "policy", "- a\n- b\n", "document 1: is not an object"),
    R("policy: duplicate key", "policy", POLICY_TEXT.replace("  priority: 200\n", "  priority: 200\n  priority: 900\n"),
      "duplicate key 'priority'"),
    R("policy: duplicate rule key", "policy", POLICY_TEXT.replace("    action: Deny\n", "    action: Deny\n    action: Allow\n"),
      "duplicate key 'action'"),
    R("policy: metadata typo", "policy", POLICY_TEXT.replace("namespace:", "namspace:"),
      "metadata: unknown field(s) namspace (did you mean namespace?)"),
    R("policy: labels not strings", "policy", POLICY_TEXT.replace("metadata:\n", "metadata:\n  labels: {a: 1}\n"),
      "metadata.labels"),
    R("policy: UTF-16", "policy", POLICY_TEXT.encode("utf-16"), "is UTF-16 text"),
    R("policy: Latin-1", "policy", (POLICY_TEXT + "# Büro\n").encode("latin-1"), "is not UTF-8 text"),
    R("policy: NUL byte", "policy", POLICY_TEXT + "\0", "binary"),
    R("policy: deep", "policy", "a: " + "[" * 1000 + "]" * 1000, "nested deeper than 100 levels"),
    R("policy: alias bomb", "policy", BOMB, "an alias bomb"),
    R("policy: python tag", "policy", "!!python/object/apply:os.system [true]\n", "could not determine a constructor"),
    R("policy: huge integer", "policy", POLICY_TEXT.replace("priority: 200", "priority: " + "9" * 5000),
      "invalid value"),
    R("policy: tab", "policy", POLICY_TEXT.replace("  priority", "\tpriority"), "line "),
    R("zone: kind plural", "zone", ZONES_TEXT.replace("kind: SecurityZone", "kind: SecurityZones", 1), "kind: 'SecurityZones'"),
    R("zone: duplicate key", "zone", ZONES_TEXT.replace("  id: 8192\n", "  id: 8192\n  id: 12\n", 1), "duplicate key 'id'"),
    R("zone: namespace of a zone", "zone", ZONES_TEXT.replace("  name: dmz\n", "  name: dmz\n  namespace: A B\n"),
      "metadata.namespace"),
    R("config: duplicate key", "config", CONFIG_TEXT.replace("  ipamBits: 16\n", "  ipamBits: 16\n  ipamBits: 0\n"),
      "duplicate key 'ipamBits'"),
    R("config: two documents", "config", CONFIG_TEXT + "---\n" + CONFIG_TEXT, "holds 2 documents"),
    R("config: a list", "config", "- layout\n", "is not a mapping (a a list)"),
    R("config: binary", "config", bytes(range(256)), "binary"),
    R("config: UTF-16", "config", CONFIG_TEXT.encode("utf-16"), "UTF-16"),
    R("config: alias bomb", "config", BOMB, "an alias bomb"),
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


FILES = {"policies": "policies.yaml", "zones": "zones.yaml", "config": "config.yaml", "inputs": "gateway.json",
         "nodes": "nodes.yaml"}


def write(tmp: Path, target: str, doc: Any, raw: bytes | None = None) -> dict[str, Path]:
    """Every file a command may read: the target's own with ``doc`` (or ``raw``), the others the bases."""
    docs = {"policies": [BASE_POLICY], "zones": BASE_ZONES, "config": BASE_CONFIG, "inputs": BASE_PUBLISHED,
            "nodes": BASE_NODES}
    own = TARGETS[target].file
    docs[own] = [doc] if own == "policies" else doc
    files = {}
    for name, content in docs.items():
        path = files[name] = tmp / FILES[name]
        if name == own and raw is not None:
            path.write_bytes(raw)
        elif name == "inputs":
            path.write_text(json.dumps(content))
        elif name in ("policies", "zones"):
            path.write_text(yaml.safe_dump_all(content, sort_keys=False))
        else:
            path.write_text(yaml.safe_dump(content, sort_keys=False))
    return files


@dataclass(frozen=True)
class NbWorld:
    """The module's real NB as a world: ``ovn sync`` gets ``--nb`` to it; its state is the whole NB dump."""

    sandbox: Any

    @property
    def argv(self) -> list[str]:
        return ["--nb", self.sandbox.nb_remote]

    def state(self) -> str:
        from zonectl.harness.ovnk_cluster import nb_dump

        return nb_dump(self.sandbox)


@pytest.fixture(scope="module")
def bad_inputs_nb(tmp_path_factory) -> Iterator[NbWorld]:
    """A real NB (ovsdb-server + northd) shaped like OVN-K's (two node switches, join, gateway routers, pods,
    OVN-K's own ACLs, port groups and address sets), holding the base policy's rows, synced by the base command."""
    from zonectl.harness.ovnk_cluster import Cluster
    from zonectl.harness.sandbox import OvnSandbox

    missing = [b for b in ("ovsdb-server", "ovsdb-client", "ovn-northd", "ovn-nbctl") if shutil.which(b) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"the ovn target needs root and {', '.join(missing) or 'OVN'} (apt-get install ovn-central)")
    with OvnSandbox(state_dir=tmp_path_factory.mktemp("nb") / "ovn") as sb:
        cluster = Cluster(sb.nbctl, parse_config(BASE_CONFIG).layout, node_count=2).build()
        cluster.add_pods([cluster.pod(1, 0x2000, 5), cluster.pod(2, 0x2100, 6)], per_pod_snat=True)
        cluster.add_ovnk_rows()
        world = NbWorld(sb)
        assert cli.main(TARGETS["ovn"].argv(write(tmp_path_factory.mktemp("base"), "ovn", BASE_CONFIG))
                        + world.argv) == 0
        yield world


@pytest.fixture(scope="module")
def worlds(request) -> Iterator[dict[str, Any]]:
    """The worlds this module's targets act on, made lazily; in each, the base documents are applied once
    first, so that a case has real state to leave alone (and the bases change nothing more)."""
    made: dict[str, Any] = {}
    yield made
    shutil.rmtree(Path(BASE_CONFIG["gateway"]["stateDir"]).parent, ignore_errors=True)


def world(request, worlds: dict[str, Any], target: str, tmp: Path) -> Any:
    name = TARGETS[target].world
    if name is None:
        return None
    if name not in worlds:
        w = request.getfixturevalue(WORLDS[name])
        if name == "netfilter":
            assert w.uplink == BASE_CONFIG["gateway"]["uplink"]
            argv = TARGETS["gateway"].argv(write(tmp / "base", "gateway", BASE_CONFIG)) + w.argv
            assert cli.main(argv) == 0, "the base documents are applied in the world first"
            assert "table ip6 zonectl {" in w.state() and "zonectl-nat" in w.state()
        worlds[name] = w
    return worlds[name]


def run(request, worlds, capsys, tmp: Path, target: str, doc: Any, raw: bytes | None = None,
        extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    (tmp / "base").mkdir(exist_ok=True)
    w = world(request, worlds, target, tmp)
    capsys.readouterr()
    before = w.state() if w else None
    argv = TARGETS[target].argv(write(tmp, target, doc, raw)) + (w.argv if w else []) + list(extra)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # a usage error, printed by argparse as one line
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    if w:
        assert w.state() == before, f"{target}: the world changed"
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.target}: {c.id}")
def test_bad_input_is_one_line_naming_the_field(request, worlds, capsys, tmp_path: Path, case: Case) -> None:
    doc = apply(TARGETS[case.target].base(), case.edits)
    code, out, err = run(request, worlds, capsys, tmp_path, case.target, doc, case.raw, case.argv)
    assert "Traceback" not in err
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith("zonectl: error: "), err
    assert case.field in err, err


OVN_SECTION = [c for c in CASES if c.target == "ovn" and not c.argv and c not in NB_LEVEL]


@pytest.mark.parametrize("case", OVN_SECTION, ids=lambda c: c.id)
def test_check_config_refuses_the_ovn_section_as_the_daemons_do(request, worlds, capsys, tmp_path: Path,
                                                                case: Case) -> None:
    """`operator check-config` parses the `ovn` section with the one parser the CLI, controller and agents use."""
    code, out, err = run(request, worlds, capsys, tmp_path, "operator", apply(BASE_CONFIG, case.edits))
    assert (code, out) == (2, "") and err.count("\n") == 1 and case.field in err, err


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_base_documents_are_accepted(request, worlds, capsys, tmp_path: Path, target: str) -> None:
    """Every case is one change away from a document the same command accepts (in a world: changing nothing
    more, since the bases were applied there first; the ovn target: in sync already)."""
    code, out, err = run(request, worlds, capsys, tmp_path, target, TARGETS[target].base())
    assert (code, err) == (0, "") and out
    if target == "ovn":
        assert "nothing to do" in out


def test_the_world_sees_a_change(request, worlds, capsys, tmp_path: Path) -> None:
    """The byte-identical check can fail: a valid document with one rule less changes the world's rules."""
    run(request, worlds, capsys, tmp_path, "published", BASE_PUBLISHED)
    w = worlds["netfilter"]
    before = w.state()
    fewer = {**BASE_PUBLISHED, "rules": BASE_PUBLISHED["rules"][1:]}
    try:
        assert cli.main(TARGETS["published"].argv(write(tmp_path, "published", fewer)) + ["--netns", w.ns]) == 0
        assert w.state() != before
    finally:
        assert cli.main(TARGETS["published"].argv(write(tmp_path, "published", BASE_PUBLISHED)) + ["--netns", w.ns]) == 0
    assert w.state() == before


def test_enough_cases_and_unique_ids() -> None:
    assert len(CASES) >= 300
    assert {c.target for c in CASES} >= {"policy", "zone", "config", "published", "nodes"}
    assert len({(c.target, c.id) for c in CASES}) == len(CASES)


SUBPROCESS = ["policy: nat64 empty", "policy: ports missing", "zone: selector empty", "config: zoneField offset 120",
              "dns: dns upstream newline", "nodes: IPv4 only", "policy: policy: UTF-16"]


@pytest.mark.parametrize("case", [c for c in CASES if f"{c.target}: {c.id}" in SUBPROCESS], ids=lambda c: c.id)
def test_bad_input_through_a_real_process(tmp_path: Path, case: Case) -> None:
    """The same as a separate `python -m zonectl` process: exit status, streams and message are the real ones."""
    argv = TARGETS[case.target].argv(write(tmp_path, case.target, apply(TARGETS[case.target].base(), case.edits),
                                           case.raw))
    proc = subprocess.run([sys.executable, "-m", "zonectl", *argv], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert proc.stderr.count("\n") == 1 and case.field in proc.stderr and "Traceback" not in proc.stderr


def test_the_subprocess_sample_exists() -> None:
    assert {f"{c.target}: {c.id}" for c in CASES} >= set(SUBPROCESS)
