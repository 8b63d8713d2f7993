"""Shared inputs for the gateway lab tests: zones, policies, pods, and a running gateway."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import yaml

from zonectl.core.config import parse_config
from zonectl.core.rules import RuleSet, compile_objects
from zonectl.core.zones import ZoneRegistry
from zonectl.gateway.config import parse_gateway
from zonectl.gateway.gateway import Gateway
from zonectl.gateway.host import Host
from zonectl.harness.gateway_testbed import SERVER_V4, Testbed

CONFIG = parse_config(yaml.safe_load("""
layout: {cluster: "fd00:10:244::/48", datacenter: "fd00:10:200::/40"}
nat64: {prefix: "fd64:ff9b::/96"}
"""))
ZONES = """
apiVersion: zonectl.io/v1alpha1
kind: SecurityZone
metadata: {name: dmz}
spec: {id: 0x2000}
---
apiVersion: zonectl.io/v1alpha1
kind: SecurityZone
metadata: {name: web}
spec: {id: 0x2100, egress: {pool: 100.64.21.0/24, address: 198.51.100.21}}
---
apiVersion: zonectl.io/v1alpha1
kind: SecurityZone
metadata: {name: api}
spec: {id: 0x2200, egress: {pool: 100.64.22.0/24, address: 198.51.100.22}}
---
apiVersion: zonectl.io/v1alpha1
kind: SecurityZone
metadata: {name: db}
spec: {id: 0x3000}
---
apiVersion: zonectl.io/v1alpha1
kind: SecurityZone
metadata: {name: batch}
spec: {id: 0x3100}
"""
ALLOW_LAB = """
apiVersion: zonectl.io/v1alpha1
kind: SecurityZonePolicy
metadata: {name: internet, namespace: t}
spec:
  zones: [dmz, web, api]
  priority: 500
  defaultAction: {egress: Deny}
  ingress: []
  egress:
    - name: lab-server
      action: Allow
      to: [{nat64: {cidrs: [192.0.2.0/24]}}]
      ports: [{protocol: TCP, port: 8080, endPort: 8080}, {protocol: UDP, port: 8053, endPort: 8053},
              {protocol: ICMPv6, icmpType: 128}]
---
apiVersion: zonectl.io/v1alpha1
kind: SecurityZonePolicy
metadata: {name: db, namespace: t}
spec:
  zones: [db]
  priority: 500
  defaultAction: {egress: Deny}
  ingress: []
  egress: []
"""
# pods: one per zone; "batch" has no policy at all; "rogue" carries a zone id nobody defined
POD_ZONES = {"dmz": 0x2000, "web": 0x2100, "api": 0x2200, "db": 0x3000, "batch": 0x3100, "rogue": 0x4000}
TARGET = f"fd64:ff9b::{SERVER_V4}"


def registry(zones: str = ZONES) -> ZoneRegistry:
    return ZoneRegistry.from_objects(CONFIG.layout, list(yaml.safe_load_all(zones)))


def ruleset(policies: str = ALLOW_LAB, reg: ZoneRegistry | None = None, nat64=CONFIG.nat64) -> RuleSet:
    return compile_objects(list(yaml.safe_load_all(policies)), reg or registry(), nat64)


def pods(labels=POD_ZONES) -> dict[str, str]:
    return {label: str(CONFIG.layout.encode("fd00:10:244:2::/64", zid, 5)) for label, zid in labels.items()}


@contextlib.contextmanager
def running(labels=POD_ZONES, policies: str = ALLOW_LAB, zones: str = ZONES,
            gateway: dict | None = None) -> Iterator[tuple[Testbed, Gateway]]:
    """A lab with a gateway applied; Tayga, namespaces and temp dirs are removed on exit."""
    with Testbed.create(pods(labels)) as bed:
        body = {"uplink": "uplink", "stateDir": str(bed.workdir / "state"), "metrics": {"listen": None},
                "restart": {"initialDelay": 0.1, "maxDelay": 1}}
        body.update(gateway or {})
        gw = Gateway(parse_gateway(body), Host(bed.gateway.name))
        try:
            reg = registry(zones)
            gw.apply_inputs(CONFIG.nat64, reg, ruleset(policies, reg))
            yield bed, gw
        finally:
            gw.close()


def reach_all(bed: Testbed, labels, timeout: float = 1.0) -> dict[str, tuple[str | None, str | None, str | None]]:
    """{label: (tcp, udp, ping)} answers from each pod to the lab server, all probes run in parallel."""
    kinds = ("tcp", "udp", "ping")
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {(label, kind): pool.submit(bed.probe, label, kind, TARGET, None, timeout)
                   for label in labels for kind in kinds}
        return {label: tuple(futures[(label, k)].result() for k in kinds) for label in labels}  # type: ignore[misc]


def reach(bed: Testbed, label: str, timeout: float = 1.0) -> tuple[str | None, str | None, str | None]:
    return reach_all(bed, [label], timeout)[label]
