"""Shared fixtures (the example configuration, zones and policies every layer tests against), and
``ZONECTL_REQUIRE_ALL=1`` (CI sets it): a test that skips because its layer cannot run fails instead.

The one exception is the kind suite (``tests/e2e``, marked ``e2e``) while ``KUBECONFIG`` is unset: it
needs a cluster of the user's own (manifests/kind/install.sh) that CI does not have, so without one it
keeps skipping; with ``KUBECONFIG`` set it is asked for, and its skips fail too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from zonectl.core.config import Config, parse_config
from zonectl.core.zones import ZoneRegistry
from zonectl.inputs import load_documents, of_kind, read_mapping

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REQUIRE_ALL = "ZONECTL_REQUIRE_ALL"


def _must_run(item: pytest.Item | None) -> bool:
    if os.environ.get(REQUIRE_ALL) != "1":
        return False
    if item is not None and item.get_closest_marker("e2e") and not os.environ.get("KUBECONFIG"):
        return False
    return True


def _reason(longrepr: object) -> str:
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and _must_run(item):
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ALL}=1: this test must run, but it skipped: {_reason(report.longrepr)}"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    """A whole module skipped at import (``pytest.importorskip``) fails the same way."""
    outcome = yield
    report = outcome.get_result()
    e2e = "e2e" in Path(str(collector.path)).parts
    if report.skipped and _must_run(None) and not (e2e and not os.environ.get("KUBECONFIG")):
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ALL}=1: this module must run, but it skipped: {_reason(report.longrepr)}"
    return None


@pytest.fixture(scope="session")
def example_config() -> Config:
    return parse_config(read_mapping(EXAMPLES / "config.yaml"))


@pytest.fixture(scope="session")
def example_zones(example_config: Config) -> ZoneRegistry:
    return ZoneRegistry.from_objects(example_config.layout, of_kind(load_documents([EXAMPLES / "zones.yaml"]), "SecurityZone"))


@pytest.fixture(scope="session")
def example_policy_bodies() -> list[dict]:
    return of_kind(load_documents([EXAMPLES / "policies.yaml"]), "SecurityZonePolicy")


# --- worlds: real state a command must leave byte-identical ---------------------------------------------
WORLD_UPLINK = "zt9up0"  # the uplink a netfilter world has (gateway configs of tests name it)


@dataclass
class NetfilterWorld:
    """A network namespace of the test's own, with an uplink, where gateway commands run (``--netns``)."""

    ns: str
    uplink: str

    def state(self) -> str:
        from zonectl.harness.netns import netfilter_state

        return netfilter_state(self.ns)


@pytest.fixture(scope="module")
def netfilter_world() -> Iterator[NetfilterWorld]:
    """A namespace whose ip6tables/nftables rules tests compare before and after a command that must change
    nothing (``zonectl.harness.netns.netfilter_state``); one per test module, removed after it."""
    import shutil

    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "ip6tables-restore", "nft")):
        pytest.skip("needs root, ip, ip6tables and nft (a network namespace of its own)")
    from zonectl.harness.netns import Netns

    with Netns.create("ztw") as ns:
        ns.run(["ip", "link", "add", WORLD_UPLINK, "type", "veth", "peer", "name", WORLD_UPLINK + "p"])
        for dev in (WORLD_UPLINK, WORLD_UPLINK + "p"):
            ns.run(["ip", "link", "set", dev, "up"])
        yield NetfilterWorld(ns.name, WORLD_UPLINK)
