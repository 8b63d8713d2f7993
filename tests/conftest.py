"""Shared fixtures: the example configuration, zones and policies every layer tests against."""

from __future__ import annotations

from pathlib import Path

import pytest

from zonectl.core.config import Config, parse_config
from zonectl.core.zones import ZoneRegistry
from zonectl.files import load_documents, of_kind

# The real control plane, shared by tests/kube and tests/e2e (one per session; see kubeplane.py).
from kubeplane import examples_applied, kube_binaries, zonectl_cluster  # noqa: E402,F401

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def example_config() -> Config:
    return parse_config(load_documents([EXAMPLES / "config.yaml"])[0])


@pytest.fixture(scope="session")
def example_zones(example_config: Config) -> ZoneRegistry:
    return ZoneRegistry.from_objects(example_config.layout, of_kind(load_documents([EXAMPLES / "zones.yaml"]), "SecurityZone"))


@pytest.fixture(scope="session")
def example_policy_bodies() -> list[dict]:
    return of_kind(load_documents([EXAMPLES / "policies.yaml"]), "SecurityZonePolicy")
