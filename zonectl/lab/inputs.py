"""The lab's inputs: config, zones and policies files, validated and compiled before anything is made.

Kept apart from the runner so that every step (up, test, sync) compiles the same way, and so that bad
input is refused with every problem named before a single namespace exists.

The lab adds two policies of its own to the user's (``lab_policies``; `lab up` writes them to
``<state>/lab-policies.yaml``), as every cluster has its own: every governed zone may ask the DNS64
server (UDP and TCP 53), and the first governed zone's published pod may be reached from the IPv4
internet host on TCP 80 (through its static map). Their defaults are Allow, so they never decide for a
zone: each zone they name has a policy of the user's, whose Deny default sorts before an Allow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..core.config import Config, parse_config
from ..core.errors import ValidationError
from ..core.rules import RuleSet, compile_objects
from ..core.zones import ZoneRegistry
from ..inputs import load_documents, of_kind, read_mapping
from .expect import Service, services_of
from .topology import GATEWAY_ADDRESS, INTERNET_V4

LAB_NAMESPACE = "zonectl-lab"
LAB_POLICIES = "lab-policies.yaml"  # in the state dir: the lab's own policies, for doctor, kubectl and reading
PUBLISHED_PORT = 80

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class Inputs:
    config: Path
    zones: Path
    policies: Path

    @classmethod
    def defaults(cls) -> "Inputs":
        return cls(EXAMPLES / "config.yaml", EXAMPLES / "zones.yaml", EXAMPLES / "policies.yaml")

    def as_dict(self) -> dict[str, str]:
        return {"config": str(self.config.resolve()), "zones": str(self.zones.resolve()),
                "policies": str(self.policies.resolve())}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> "Inputs":
        return cls(Path(d["config"]), Path(d["zones"]), Path(d["policies"]))


@dataclass(frozen=True)
class Compiled:
    """The inputs after validation: what every later step works from."""

    config: Config
    registry: ZoneRegistry
    policies: list[dict]
    ruleset: RuleSet
    services: tuple[Service, ...]

    def with_policies(self, policies: list[dict]) -> "Compiled":
        """The same zones and config with ``policies`` instead (a lab with Kubernetes: the objects as stored,
        whose generation the controller writes into every OVN row)."""
        ruleset = compile_objects(policies, self.registry, self.config.nat64)
        return replace(self, policies=policies, ruleset=ruleset, services=services_of(ruleset))


def compile_inputs(inputs: Inputs) -> Compiled:
    """Load and compile config, zones and policies; a ValidationError names every problem."""
    for label, path in (("--config", inputs.config), ("--zones", inputs.zones), ("--policies", inputs.policies)):
        if not path.exists():
            raise ValidationError(f"{label} {path}: no such file")
    config = parse_config(read_mapping(inputs.config))
    zone_docs = of_kind(load_documents([inputs.zones]), "SecurityZone")
    if not zone_docs:
        raise ValidationError(f"{inputs.zones}: no SecurityZone objects")
    registry = ZoneRegistry.from_objects(config.layout, zone_docs)
    policies = of_kind(load_documents([inputs.policies]), "SecurityZonePolicy")
    compile_objects(policies, registry, config.nat64)  # the user's policies alone must compile: errors name them
    policies = policies + lab_policies(policies, [z.name for z in registry])
    ruleset = compile_objects(policies, registry, config.nat64)
    return Compiled(config, registry, policies, ruleset, services_of(ruleset))


def lab_policies(policies: list[dict], zones: list[str]) -> list[dict]:
    """The lab's own policies (see the module docstring) for the zones the user's policies govern."""
    governed = [z for z in zones if any(z in (p.get("spec") or {}).get("zones", []) for p in policies)]
    if not governed:
        return []
    allow = {"ingress": "Allow", "egress": "Allow"}

    def policy(name: str, zones: list[str], ingress: list, egress: list) -> dict:
        return {"apiVersion": "zonectl.io/v1alpha1", "kind": "SecurityZonePolicy",
                "metadata": {"name": name, "namespace": LAB_NAMESPACE},
                "spec": {"zones": zones, "priority": 0, "defaultAction": allow, "ingress": ingress, "egress": egress}}

    dns = {"name": "dns64", "action": "Allow", "to": [{"cidr": f"{GATEWAY_ADDRESS}/128"}],
           "ports": [{"protocol": "UDP", "port": 53, "endPort": 53}, {"protocol": "TCP", "port": 53, "endPort": 53}]}
    published = {"name": "from-ipv4-internet", "action": "Allow", "from": [{"nat64": {"cidrs": [f"{INTERNET_V4}/32"]}}],
                 "ports": [{"protocol": "TCP", "port": PUBLISHED_PORT, "endPort": PUBLISHED_PORT}]}
    return [policy("lab-dns", governed, [], [dns]), policy("lab-published", governed[:1], [published], [])]
