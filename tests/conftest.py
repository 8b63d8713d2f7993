"""Shared fixtures: the example configuration, zones and policies every layer tests against."""

from __future__ import annotations

from pathlib import Path

import pytest

from zonectl.core.config import Config, parse_config
from zonectl.core.zones import ZoneRegistry
from zonectl.files import load_documents, of_kind

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
